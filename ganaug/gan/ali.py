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
import torch.nn.functional as F
from torch import nn

from ganaug.augment import diff_augment
from ganaug.config import TrialConfig
from ganaug.data import to_float
from ganaug.gan.networks import ARCHITECTURES, MINIBATCH_FEATURES, Discriminator, scaled, spectral_normalised
from ganaug.gan.trainer import GANTrainer, StateDictError, descend, frozen, sampling_mode

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


def _masked_mean(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Mean of values over the selected rows; 0 when none is selected (never nan)."""
    rows = rows.to(values.dtype)
    return (values * rows).sum() / rows.sum().clamp(min=1)


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
        betas = (cfg.gan_beta1, 0.999)
        self.opt_E = torch.optim.Adam(self.E.parameters(), lr=cfg.gan_lr, betas=betas, fused=True)
        self.opt_D_joint = torch.optim.Adam(self.D_joint.parameters(), lr=cfg.gan_lr, betas=betas, fused=True)
        updates_per_epoch = math.ceil(sum(spec.class_counts) / cfg.batch_size) * cfg.gan_steps_per_batch
        self.ali_updates = cfg.ali_epochs * updates_per_epoch
        self.updates = 0
        # Real images by class, for sampling near them: rows of class c are order[start[c]:start[c] + count[c]].
        self.train_x = None
        if data is not None:
            self.train_x = data.train_x.to(self.device)
            train_y = data.train_y.to(self.device)
            self.order = torch.argsort(train_y, stable=True)
            self.class_count = torch.bincount(train_y, minlength=self.num_classes)
            self.class_start = torch.cumsum(self.class_count, 0) - self.class_count
            self.reconstruction_x = to_float(self.train_x[:RECONSTRUCTION_IMAGES])
            self.reconstruction_y = train_y[:RECONSTRUCTION_IMAGES]

    @property
    def in_ali_phase(self) -> bool:
        return self.updates < self.ali_updates

    # ------------------------------------------------------------------------------------------
    # Training.

    def train_step(self, real_x: torch.Tensor, real_y: torch.Tensor, real_fraction: float,
                   generator: torch.Generator | None = None,
                   autocast: Callable = contextlib.nullcontext) -> dict[str, torch.Tensor]:
        """cfg.d_steps discriminator steps and one generator step of the current phase, then the EMA update.

        ALI phase: d_loss is the joint D's, g_loss G's and E's together. ACGAN phase: as GANTrainer, on mixed codes.
        """
        self.check_batch(real_x, real_fraction)
        ali = self.in_ali_phase
        d_step = self.ali_discriminator_step if ali else self.acgan_discriminator_step
        g_step = self.ali_generator_step if ali else self.acgan_generator_step
        d_losses = [d_step(real_x, real_y, real_fraction, generator, autocast, offset=step)
                    for step in range(self.cfg.d_steps)]
        g_loss = g_step(real_x, real_y, generator, autocast)
        self.update_ema()
        self.updates += 1
        return {"d_loss": torch.stack(d_losses).mean(), "g_loss": g_loss}

    def _split(self, real_x, real_y, real_fraction, offset):
        """(real_x, real_y, n_real) with the batch rotated by `offset` real slices, as GANTrainer.discriminator_step:
        the first n_real rows are the real share, the rest give the fakes their labels (and codes)."""
        n = len(real_x)
        n_real = round(real_fraction * n)
        shift = (offset * n_real) % n
        if shift:
            real_x, real_y = real_x.roll(-shift, 0), real_y.roll(-shift, 0)
        return real_x, real_y, n_real

    def ali_discriminator_step(self, real_x, real_y, real_fraction: float, generator=None,
                               autocast: Callable = contextlib.nullcontext, offset: int = 0) -> torch.Tensor:
        """One joint-D update: round(real_fraction * n) pairs (x, E(x)) labelled real, the rest (G(z, y), z)
        labelled fake, with y the dropped real images' labels (the label mix of both kinds is the same)."""
        real_x, real_y, n_real = self._split(real_x, real_y, real_fraction, offset)
        n, n_fake = len(real_x), len(real_x) - n_real
        with torch.no_grad(), autocast():
            real_z = self.E(real_x[:n_real])
            if n_fake == 0:
                fake, fake_z = real_x[:0], real_z[:0]
            else:  # a single fake would break BatchNorm1d's batch statistics: draw two, keep one
                fake_y = real_y[n_real:] if n_fake > 1 else real_y[n_real:].repeat(2)
                fake_z = self.noise(len(fake_y), generator)
                fake, fake_z = self.G(fake_z, fake_y)[:n_fake], fake_z[:n_fake]
        with autocast():
            x = diff_augment(torch.cat([real_x[:n_real], fake]), self.diffaugment, generator)
            z = torch.cat([real_z, fake_z.to(real_z.dtype)])
            is_real = torch.arange(n, device=real_x.device) < n_real
            logit, _ = self.D_joint((x, z), real_y, groups=is_real.long())
            loss = self.adversarial.discriminator(logit.float(), is_real, 1.0 - self.cfg.d_label_smoothing).mean()
        return descend(loss, self.opt_D_joint)

    def ali_generator_step(self, real_x, real_y, generator=None,
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
                fake_z = self.noise(n, generator)
                real_z = self.E(real_x)
                if weight > 0:
                    images = self.G(torch.cat([real_z.float(), fake_z]), real_y.repeat(2))
                    reconstruction, fake = images[:n], images[n:]
                else:
                    fake = self.G(fake_z, real_y)
                x = diff_augment(torch.cat([real_x, fake]), self.diffaugment, generator)
                is_real = torch.arange(2 * n, device=real_x.device) < n
                logit, _ = self.D_joint((x, torch.cat([real_z, fake_z.to(real_z.dtype)])), real_y.repeat(2),
                                        groups=is_real.long())
                logit = logit.float()
                loss = self.adversarial.generator(-logit[:n]).mean() + self.adversarial.generator(logit[n:]).mean()
                if weight > 0:
                    loss = loss + weight * (reconstruction.float() - real_x.float()).abs().mean()
            return descend(loss, self.opt_G, self.opt_E)

    def mixed_codes(self, x: torch.Tensor, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes for G's rows in the ACGAN phase: the first round(ali_train_encoded_share * n) are E(x) of the
        row's real image x (E frozen), the rest N(0, 1); and the bool mask of the encoded rows. The rows are a
        shuffled batch's, so their position carries no meaning."""
        n = len(x)
        k = round(self.cfg.ali_train_encoded_share * n)
        with torch.no_grad():
            codes = torch.cat([self.E(x[:k]).float(), self.noise(n - k, generator)])
        return codes, torch.arange(n, device=x.device) < k

    def _acgan_class_loss(self, class_logits, y, rows) -> torch.Tensor:
        return self.cfg.acgan_weight * _masked_mean(F.cross_entropy(class_logits.float(), y, reduction="none"), rows)

    def acgan_discriminator_step(self, real_x, real_y, real_fraction: float, generator=None,
                                 autocast: Callable = contextlib.nullcontext, offset: int = 0) -> torch.Tensor:
        """One ACGAN D update as GANTrainer.discriminator_step, with the fakes drawn from mixed codes (the encoded ones
        from the dropped real images, so each keeps its image's label); masked: encoded fakes get only the class
        loss (when acgan_fake_class_loss), never the real/fake one."""
        real_x, real_y, n_real = self._split(real_x, real_y, real_fraction, offset)
        n, n_fake = len(real_x), len(real_x) - n_real
        with torch.no_grad(), autocast():
            if n_fake == 0:
                fake, encoded = real_x[:0], torch.zeros(0, dtype=torch.bool, device=real_x.device)
            else:
                pick = slice(n_real, None) if n_fake > 1 else [n_real, n_real]
                codes, encoded = self.mixed_codes(real_x[pick], generator)
                fake, encoded = self.G(codes, real_y[pick])[:n_fake], encoded[:n_fake]
        with autocast():
            x = diff_augment(torch.cat([real_x[:n_real], fake]), self.diffaugment, generator)
            is_real = torch.arange(n, device=real_x.device) < n_real
            logit, class_logits = self.D(x, real_y, groups=is_real.long())
            encoded = torch.cat([torch.zeros(n_real, dtype=torch.bool, device=real_x.device), encoded])
            judged = ~encoded if self.cfg.ali_mask_encoded else torch.ones_like(encoded)
            real_target = 1.0 - self.cfg.d_label_smoothing
            loss = _masked_mean(self.adversarial.discriminator(logit.float(), is_real, real_target), judged)
            class_rows = torch.ones_like(is_real) if self.cfg.acgan_fake_class_loss else is_real
            loss = loss + self._acgan_class_loss(class_logits, real_y, class_rows)
        return descend(loss, self.opt_D)

    def acgan_generator_step(self, real_x, real_y, generator=None,
                             autocast: Callable = contextlib.nullcontext) -> torch.Tensor:
        """One G update on n fakes from mixed codes with the batch's labels: the adversarial loss (on the random
        rows only when masked), the class loss on all rows, and ali_reconstruction_weight * L1 to the encoded
        rows' real images."""
        codes, encoded = self.mixed_codes(real_x, generator)
        with frozen(self.D):
            with autocast():
                fake = self.G(codes, real_y)
                logit, class_logits = self.D(diff_augment(fake, self.diffaugment, generator), real_y)
                judged = ~encoded if self.cfg.ali_mask_encoded else torch.ones_like(encoded)
                loss = _masked_mean(self.adversarial.generator(logit.float()), judged)
                loss = loss + self._acgan_class_loss(class_logits, real_y, torch.ones_like(encoded))
                if self.cfg.ali_reconstruction_weight > 0:
                    distance = (fake.float() - real_x.float()).abs().flatten(1).mean(1)
                    loss = loss + self.cfg.ali_reconstruction_weight * _masked_mean(distance, encoded)
            return descend(loss, self.opt_G)

    # ------------------------------------------------------------------------------------------
    # Sampling and metrics.

    @torch.no_grad()
    def sample(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in [-1, 1] for labels y: round(ali_encoded_share * n) random rows from E(x) + N(0, noise^2) of a
        random real image x of the row's class (N(0, 1) for a class without images, or without data), the rest
        from N(0, 1) codes; G_ema when enabled, batch statistics as GANTrainer.sample."""
        y = y.to(self.device)
        n = len(y)
        codes = self.noise(n, generator)
        k = round(self.cfg.ali_encoded_share * n) if self.train_x is not None else 0
        if k > 0:
            rows = torch.randperm(n, generator=generator, device=self.device)[:k]
            labels = y[rows]
            count = self.class_count[labels]
            pick = (torch.rand(k, generator=generator, device=self.device) * count).long()
            index = self.order[(self.class_start[labels] + pick).clamp(max=len(self.order) - 1)]
            near = self.E(to_float(self.train_x[index])).float()
            near = near + self.cfg.ali_code_noise * self.noise(k, generator)
            codes[rows] = torch.where((count > 0)[:, None], near, codes[rows])
        G = self.G_ema if self.G_ema is not None else self.G
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
        G = self.G_ema if self.G_ema is not None else self.G
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
