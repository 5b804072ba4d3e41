"""gan: ali — ALI, then an ACGAN on codes of real images (the ETH report's ACGAN_ALI, after Dumoulin et al. 2017).

Two phases, counted in GAN updates (train_step calls) so that a checkpoint resumes exactly:

1. ALI (the first cfg.ali_epochs passes over the training split): an encoder E(x) -> z, the class-conditional
   G(z, y) and a joint discriminator D(x, z, y) that tells (x, E(x)) pairs of real images from (G(z, y), z)
   pairs of N(0, 1) codes; G and E are trained together to fool it, plus cfg.ali_reconstruction_weight *
   L1(G(E(x), y), x) (ALICE's explicit cycle term, Li et al. 2017). At ALI's optimum E inverts G, but on digits
   adversarial training alone left G(E(x)) no closer to x than a random sample of the class (tests/test_ali.py).
2. ACGAN: E is frozen; G trains against an ACGAN discriminator (gans.build_discriminator with the auxiliary
   class head) on a mix of codes: a share cfg.ali_train_encoded_share are E(x) of real images of the row's
   class, the rest N(0, 1). With cfg.ali_mask_encoded (the default, the report's masked variant) the images of
   encoded codes get no real/fake loss, in D or in G: only the class loss and, with
   cfg.ali_reconstruction_weight > 0, the same L1 term, which keeps G(E(x)) near x so that "near a real image"
   keeps its meaning while the adversarial loss moves G. Unmasked, they are judged like every fake too.
   (The issue calls the masked variant the report's v1; the report's code README names it V2, V1 unmasked.)

Both phases train through GANTrainer's train_step and discriminator_step (one D batch split, rotation and min_real
clamp for every family); ALITrainer supplies its seams: active_discriminator (the joint D, its optimizer and a
real/fake-only loss in the ALI phase), real_codes and fakes_for (the codes the joint D pairs with images; the ACGAN
phase's fakes from mixed codes, the encoded ones masked out of the real/fake loss) and generator_update (the ALI
phase's own G and E step, ali_generator_step; the ACGAN phase's GANTrainer.generator_step on the batch's labels and
mixed codes, with the mask and the L1 term).

Sampling draws a share cfg.ali_encoded_share of images near real images of the requested class, from
E(x) + N(0, cfg.ali_code_noise^2), and the rest from N(0, 1) codes. Every epoch reports `ali_reconstruction`
(mean |G(E(x), y) - x| over a fixed batch of real training images, pixels in [-1, 1]) beside
`ali_reconstruction_random` (the same distance for random codes of the same classes): the encoder is useful when
the first is well below the second.

    gan = ALITrainer(TrialConfig(gan="ali", gan_arch="dcgan"), data.spec, device, data=data)
    losses = gan.train_step(real_x, real_y, real_fraction=0.5)   # ALI step, later ACGAN step
    images = gan.sample(balanced_labels(64, data.spec.num_classes))

Choices: E is deterministic (BiGAN's encoder; ALI's reparametrised Gaussian adds noise that only blurs
reconstructions here); E's body is the architecture's discriminator body plus a linear layer to the code, the
joint D reads x through another such body and z through a two-layer MLP, and shares gans.Discriminator's heads
(label projection as CGAN, optional minibatch features). D and E take no BatchNorm, so E(x) of an image does
not depend on its batch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
from torch import nn

from ganaug.augment import diff_augment
from ganaug.config import TrialConfig
from ganaug.data import ClassIndex, to_float
from ganaug.gan.losses import FAMILY_LOSSES, FamilyLoss, masked_mean
from ganaug.gan.networks import ARCHITECTURES, MINIBATCH_FEATURES, Discriminator, scaled, spectral_normalised
from ganaug.gan.trainer import Fakes, GANTrainer, StateDictError, descend, frozen, sampling_mode

RECONSTRUCTION_IMAGES = 256  # Real training images in the fixed batch behind ali_reconstruction.


def build_encoder(arch: str, spec, latent_dim: int, width: float) -> nn.Module:
    """E(x [B, C, H, W] in [-1, 1]) -> codes [B, latent_dim]: the architecture's discriminator body (no
    normalisation, so a code never depends on its batch) and a linear layer."""
    body, feature_dim = ARCHITECTURES[arch].discriminator_body(spec, width)
    return nn.Sequential(body, nn.Linear(feature_dim, latent_dim))


class JointBody(nn.Module):
    """forward((x, z)) -> features of the pair: x through an image body, z through a two-layer MLP, then one
    joint layer over both. As a Discriminator's body it gets that class's heads and label projection."""

    def __init__(self, image_body: nn.Module, image_features: int, latent_dim: int, hidden: int):
        super().__init__()
        self.image_body = image_body
        self.code_body = nn.Sequential(nn.Linear(latent_dim, hidden), nn.LeakyReLU(0.2),
                                       nn.Linear(hidden, hidden), nn.LeakyReLU(0.2))
        self.joint = nn.Sequential(nn.Linear(image_features + hidden, hidden), nn.LeakyReLU(0.2))

    def forward(self, pair: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, z = pair
        return self.joint(torch.cat([self.image_body(x), self.code_body(z.to(x.dtype))], dim=1))


def build_joint_discriminator(arch: str, spec, latent_dim: int, width: float, spectral_norm: bool = False,
                              minibatch: str = "none") -> Discriminator:
    """ALI's D: forward((x, z), y, groups=None) -> (logit [B], None); y enters through the projection term."""
    architecture = ARCHITECTURES[arch]
    image_body, image_features = architecture.discriminator_body(spec, width)
    hidden = scaled(512, width)
    D = Discriminator(JointBody(image_body, image_features, latent_dim, hidden), hidden, spec.num_classes,
                      conditional=True, aux_classes=0, minibatch=MINIBATCH_FEATURES[minibatch])
    return spectral_normalised(D) if spectral_norm or architecture.spectral_norm else D


class ALITrainer(GANTrainer):
    """G, the ACGAN D, their EMA and optimizers (all from GANTrainer), plus E, the joint D and their optimizers.

    `data` (the trial's ImageData) supplies the real images that sampling encodes and the fixed batch behind
    ali_reconstruction; without it (a trainer built for a bare export) every sample uses N(0, 1) codes and
    epoch_metrics() is empty. The ALI phase lasts ali_epochs * ceil(sum(spec.class_counts) / batch_size) *
    gan_steps_per_batch updates: the GAN updates of ali_epochs passes of the joint loop.
    """

    family_loss = "acgan"  # GANTrainer builds G, the ACGAN D (auxiliary class head), G's EMA and both optimizers

    def __init__(self, cfg: TrialConfig, spec, device: torch.device, data=None):
        super().__init__(cfg, spec, device)
        self.E = build_encoder(cfg.gan_arch, spec, cfg.latent_dim, cfg.gan_width).to(self.device)
        self.D_joint = build_joint_discriminator(
            cfg.gan_arch, spec, cfg.latent_dim, cfg.gan_width, spectral_norm=cfg.d_spectral_norm,
            minibatch=cfg.d_minibatch).to(self.device)
        self.opt_E, self.opt_D_joint = self.optimizer_for(self.E), self.optimizer_for(self.D_joint)
        updates_per_epoch = math.ceil(sum(spec.class_counts) / cfg.batch_size) * cfg.gan_steps_per_batch
        self.ali_updates = cfg.ali_epochs * updates_per_epoch
        self.updates = 0
        # The real images and their rows by class, for sampling near them.
        self.train_x = None
        if data is not None:
            self.train_x = data.train_x.to(self.device)
            train_y = data.train_y.to(self.device)
            self.train_classes = ClassIndex(train_y, self.num_classes)
            self.reconstruction_x = to_float(self.train_x[:RECONSTRUCTION_IMAGES])
            self.reconstruction_y = train_y[:RECONSTRUCTION_IMAGES]

    @property
    def in_ali_phase(self) -> bool:
        return self.updates < self.ali_updates

    # ------------------------------------------------------------------------------------------
    # Training: GANTrainer's steps, through the seams the module docstring lists.

    def train_step(self, real_x: torch.Tensor, real_y: torch.Tensor, real_fraction: float,
                   rng: torch.Generator | None = None,
                   autocast: Callable = contextlib.nullcontext) -> dict[str, torch.Tensor]:
        """GANTrainer.train_step in the current phase, counted. ALI phase: d_loss is the joint D's, g_loss G's and
        E's together. ACGAN phase: as GANTrainer, on mixed codes."""
        losses = super().train_step(real_x, real_y, real_fraction, rng, autocast)
        self.updates += 1
        return losses

    def active_discriminator(self) -> tuple[nn.Module, torch.optim.Optimizer, FamilyLoss]:
        """ALI phase: the joint D, its optimizer and a real/fake loss only (no class head: cgan's family loss).
        ACGAN phase: GANTrainer's ACGAN D."""
        if self.in_ali_phase:
            return self.D_joint, self.opt_D_joint, FAMILY_LOSSES["cgan"]
        return super().active_discriminator()

    def real_codes(self, real_x: torch.Tensor) -> torch.Tensor | None:
        """ALI phase: E(x), the codes the joint D pairs with real images; the ACGAN D reads images only."""
        return self.E(real_x) if self.in_ali_phase else None

    def fakes_for(self, dropped_x: torch.Tensor, dropped_y: torch.Tensor, rng: torch.Generator | None = None,
                  rows: torch.Tensor | None = None) -> Fakes:
        """ALI phase: GANTrainer's (G's images from N(0, 1) codes, which the joint D pairs them with). ACGAN phase:
        G's images from mixed codes, the encoded ones from the dropped real images (so each keeps its image's
        label); masked, the encoded ones are not judged real or fake."""
        n = len(dropped_x)
        if self.in_ali_phase or n == 0:
            return super().fakes_for(dropped_x, dropped_y, rng, rows)
        repeat = 1 if n > 1 else 2  # a single fake would break BatchNorm1d's batch statistics: draw two, keep one
        codes, encoded = self.mixed_codes(dropped_x.repeat(repeat, 1, 1, 1), rng)
        return Fakes(self.G(codes, dropped_y.repeat(repeat))[:n], dropped_y, judged=self.judged_rows(encoded[:n]))

    def generator_update(self, real_x: torch.Tensor, real_y: torch.Tensor, rng: torch.Generator | None = None,
                         autocast: Callable = contextlib.nullcontext) -> dict[str, torch.Tensor]:
        """train_step's G side: ALI phase, ali_generator_step. ACGAN phase, GANTrainer.generator_step on the batch's
        labels and mixed codes: the adversarial loss (on the random rows only when masked), the class loss on all
        rows, and ali_reconstruction_weight * L1 to the encoded rows' real images."""
        if self.in_ali_phase:
            return {"g_loss": self.ali_generator_step(real_x, real_y, rng, autocast)}
        codes, encoded = self.mixed_codes(real_x, rng)
        weight = self.cfg.ali_reconstruction_weight

        def reconstruction(fake: torch.Tensor) -> torch.Tensor:
            return weight * masked_mean((fake.float() - real_x.float()).abs().flatten(1).mean(1), encoded)

        return {"g_loss": self.generator_step(len(real_x), rng, autocast, y=real_y, codes=codes,
                                              judged=self.judged_rows(encoded),
                                              extra_loss=reconstruction if weight > 0 else None)}

    def ali_generator_step(self, real_x: torch.Tensor, real_y: torch.Tensor, rng: torch.Generator | None = None,
                           autocast: Callable = contextlib.nullcontext) -> torch.Tensor:
        """One update of G and E: G wants (G(z, y), z) called real, E wants (x, E(x)) called fake (each player's
        non-saturating loss, or hinge's -logit: the generator loss of the negated logit for E's rows), plus
        ali_reconstruction_weight * L1(G(E(x), y), x) on both (ALICE's explicit cycle term, Li et al. 2017:
        adversarial training alone leaves E(x) a poor code of x). With the term, G draws the reconstructions
        and the fakes in one pass, so its batch statistics mix encoded and random codes as in the ACGAN phase."""
        n = len(real_x)
        weight = self.cfg.ali_reconstruction_weight
        with frozen(self.D_joint):
            with autocast():
                fake_z = self.noise(n, rng)
                real_z = self.E(real_x)
                if weight > 0:
                    images = self.G(torch.cat([real_z.float(), fake_z]), real_y.repeat(2))
                    reconstruction, fake = images[:n], images[n:]
                else:
                    fake = self.G(fake_z, real_y)
                x = diff_augment(torch.cat([real_x, fake]), self.diffaugment, rng)
                is_real = torch.arange(2 * n, device=real_x.device) < n
                logit, _ = self.D_joint((x, torch.cat([real_z, fake_z.to(real_z.dtype)])), real_y.repeat(2),
                                        groups=is_real.long())
                logit = logit.float()
                loss = self.adversarial.generator(-logit[:n]).mean() + self.adversarial.generator(logit[n:]).mean()
                if weight > 0:
                    loss = loss + weight * (reconstruction.float() - real_x.float()).abs().mean()
            return descend(loss, self.opt_G, self.opt_E)

    def mixed_codes(self, x: torch.Tensor, rng=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes for G's rows in the ACGAN phase: the first round(ali_train_encoded_share * n) are E(x) of the
        row's real image x (E frozen), the rest N(0, 1); and the bool mask of the encoded rows. The rows are a
        shuffled batch's, so their position carries no meaning."""
        n = len(x)
        k = round(self.cfg.ali_train_encoded_share * n)
        with torch.no_grad():
            codes = torch.cat([self.E(x[:k]).float(), self.noise(n - k, rng)])
        return codes, torch.arange(n, device=x.device) < k

    def judged_rows(self, encoded: torch.Tensor) -> torch.Tensor | None:
        """The rows of mixed codes that the real/fake loss judges: masked (ali_mask_encoded), the random ones only;
        else every one (None)."""
        return ~encoded if self.cfg.ali_mask_encoded else None

    # ------------------------------------------------------------------------------------------
    # Sampling and metrics.

    @torch.no_grad()
    def sample(self, y: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        """Images in [-1, 1] for labels y: round(ali_encoded_share * n) random rows from E(x) + N(0, noise^2) of a
        random real image x of the row's class (N(0, 1) for a class without images, or without data), the rest
        from N(0, 1) codes; G_ema when enabled, batch statistics as GANTrainer.sample."""
        y = y.to(self.device)
        n = len(y)
        codes = self.noise(n, rng)
        k = round(self.cfg.ali_encoded_share * n) if self.train_x is not None else 0
        if k > 0 and self.train_x is not None:  # (k is 0 without data)
            rows = torch.randperm(n, generator=rng, device=self.device)[:k]
            labels = y[rows]
            index = self.train_classes.row_of_class(labels, rng)
            near = self.E(to_float(self.train_x[index])).float()
            near = near + self.cfg.ali_code_noise * self.noise(k, rng)
            # A class without training images keeps its N(0, 1) codes (row_of_class drew another class's image).
            codes[rows] = torch.where((self.train_classes.count[labels] > 0)[:, None], near, codes[rows])
        G = self.sampling_generator
        with sampling_mode(G, n):
            return G(codes, y)

    @torch.no_grad()
    def epoch_metrics(self) -> dict[str, float]:
        """ali_reconstruction: mean |G(E(x), y) - x| over the first RECONSTRUCTION_IMAGES training images;
        ali_reconstruction_random: the same for N(0, 1) codes (a fixed seed, so epochs compare); ali_phase: 1
        when the last update was an ALI one (or none was made), 0 once the ACGAN phase has begun. Empty without
        data."""
        if self.train_x is None:
            return {}
        x, y = self.reconstruction_x, self.reconstruction_y
        G = self.sampling_generator
        random_codes = torch.randn(len(y), self.latent_dim, device=self.device,
                                   generator=torch.Generator(self.device).manual_seed(0))
        with sampling_mode(G, len(y)):
            reconstruction = G(self.E(x).float(), y)
            random = G(random_codes, y)
        return {"ali_reconstruction": (reconstruction.float() - x).abs().mean().item(),
                "ali_reconstruction_random": (random.float() - x).abs().mean().item(),
                "ali_phase": float(self.updates <= self.ali_updates)}

    # ------------------------------------------------------------------------------------------
    # State.

    OWN_STATE = ("E", "D_joint", "opt_E", "opt_D_joint", "updates")

    def state_dict(self) -> dict:
        return {**super().state_dict(), "E": self.E.state_dict(), "D_joint": self.D_joint.state_dict(),
                "opt_E": self.opt_E.state_dict(), "opt_D_joint": self.opt_D_joint.state_dict(),
                "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or not set(self.OWN_STATE) <= set(state):
            found = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise StateDictError(f"gan='ali' state: expected GANTrainer's keys plus {list(self.OWN_STATE)}, found "
                                 f"{found} (a checkpoint of another gan family?)")
        super().load_state_dict({k: v for k, v in state.items() if k not in self.OWN_STATE})
        self.load_parts({"E": self.E, "D_joint": self.D_joint, "opt_E": self.opt_E, "opt_D_joint": self.opt_D_joint},
                        state, "gan='ali'")
        self.updates = int(state["updates"])
