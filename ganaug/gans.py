"""Class-conditional GANs for data augmentation: CGAN and ACGAN families on MLP and DCGAN architectures.

The two families share one Generator, one Discriminator and one loss class; they differ only by D's
conditioning (a projection term for CGAN) and D's auxiliary class head plus its cross-entropy (ACGAN).
`GAN` bundles G, D, an optional EMA of G and both Adam optimizers, and takes the joint loop's steps:

    gan = GAN(TrialConfig(gan="acgan", gan_arch="dcgan"), data.spec, device)
    losses = gan.train_step(real_x, real_y, real_fraction=0.5)      # d_steps D steps + one G step
    images = gan.sample(balanced_labels(64, data.spec.num_classes))  # float in [-1, 1], NCHW
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ganaug.config import ConfigError, TrialConfig


class StateDictError(ValueError):
    """A GAN state dict does not fit the GAN built from the current config."""


def balanced_labels(n: int, num_classes: int, generator: torch.Generator | None = None,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """n class labels with per-class counts differing by at most one, starting at a random class.

    The random start spreads the remainder (and the classes of batches smaller than num_classes)
    evenly over successive calls.
    """
    start = torch.randint(num_classes, (1,), generator=generator, device=device)
    return (start + torch.arange(n, device=device)) % num_classes


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


# ----------------------------------------------------------------------------------------------
# DiffAugment (Zhao et al. 2020, mit-han-lab/data-efficient-gans): differentiable augmentations
# applied to every discriminator input, real and fake, in both D and G steps. Unlike the
# original, the colour functions clamp to [-1, 1] so D never sees values no real image can have
# (the gradient is zero only on clipped pixels); translation and cutout fill with 0 as the
# original does.

def _rand(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device, generator=generator)


def rand_brightness(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    return (x + (_rand(x, generator) - 0.5)).clamp(-1, 1)


def rand_saturation(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    x_mean = x.mean(dim=1, keepdim=True)
    return ((x - x_mean) * (_rand(x, generator) * 2) + x_mean).clamp(-1, 1)


def rand_contrast(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    x_mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return ((x - x_mean) * (_rand(x, generator) + 0.5) + x_mean).clamp(-1, 1)


def rand_translation(x: torch.Tensor, generator: torch.Generator | None = None,
                     ratio: float = 0.125) -> torch.Tensor:
    batch, _, height, width = x.shape
    shift_y, shift_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    kwargs = dict(device=x.device, generator=generator)
    translation_y = torch.randint(-shift_y, shift_y + 1, size=(batch, 1, 1), **kwargs)
    translation_x = torch.randint(-shift_x, shift_x + 1, size=(batch, 1, 1), **kwargs)
    grid_batch, grid_y, grid_x = torch.meshgrid(
        torch.arange(batch, device=x.device), torch.arange(height, device=x.device),
        torch.arange(width, device=x.device), indexing="ij",
    )
    # One pixel of zero padding: every shifted-in pixel reads it (clamped index), in one gather.
    grid_y = torch.clamp(grid_y + translation_y + 1, 0, height + 1)
    grid_x = torch.clamp(grid_x + translation_x + 1, 0, width + 1)
    x_pad = F.pad(x, [1, 1, 1, 1])
    return x_pad.permute(0, 2, 3, 1)[grid_batch, grid_y, grid_x].permute(0, 3, 1, 2)


def rand_cutout(x: torch.Tensor, generator: torch.Generator | None = None,
                ratio: float = 0.5) -> torch.Tensor:
    batch, _, height, width = x.shape
    cut_y, cut_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    kwargs = dict(device=x.device, generator=generator)
    offset_y = torch.randint(0, height + (1 - cut_y % 2), size=(batch, 1, 1), **kwargs)
    offset_x = torch.randint(0, width + (1 - cut_x % 2), size=(batch, 1, 1), **kwargs)
    grid_batch, grid_y, grid_x = torch.meshgrid(
        torch.arange(batch, device=x.device), torch.arange(cut_y, device=x.device),
        torch.arange(cut_x, device=x.device), indexing="ij",
    )
    grid_y = torch.clamp(grid_y + offset_y - cut_y // 2, min=0, max=height - 1)
    grid_x = torch.clamp(grid_x + offset_x - cut_x // 2, min=0, max=width - 1)
    mask = torch.ones(batch, height, width, dtype=x.dtype, device=x.device)
    mask[grid_batch, grid_y, grid_x] = 0
    return x * mask.unsqueeze(1)


def parse_policy(policy: str) -> tuple[str, ...]:
    """'color, translation' -> ('color', 'translation'); unknown parts raise ConfigError."""
    parts = tuple(part.strip() for part in policy.split(",") if part.strip())
    for part in parts:
        if part not in DIFFAUGMENT:
            raise ConfigError(
                f"diffaugment={policy!r} has unknown part {part!r}; "
                f"valid: a comma-separated subset of {', '.join(DIFFAUGMENT)}, or ''"
            )
    return parts


def diff_augment(x: torch.Tensor, policy: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the DiffAugment policy (e.g. "color,translation,cutout") to a batch; "" returns x."""
    for part in parse_policy(policy):
        for fn in DIFFAUGMENT[part]:
            x = fn(x, generator)
    return x


# ----------------------------------------------------------------------------------------------
# Networks. An architecture supplies two bodies; the conditioning and the heads live in the
# shared Generator / Discriminator below, so CGAN vs ACGAN never touches an architecture.

class Generator(nn.Module):
    """forward(z [B, latent_dim], y int64 [B]) -> images [B, C, H, W] in [-1, 1].

    The label enters as a learned embedding concatenated to z (one-hot into the first layer,
    in effect), the conditioning of both CGAN and ACGAN generators.
    """

    def __init__(self, body: nn.Module, num_classes: int, latent_dim: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, latent_dim)
        self.body = body

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([z, self.embed(y).to(z.dtype)], dim=1))


class Discriminator(nn.Module):
    """forward(x [B, C, H, W], y int64 [B]) -> (real/fake logit [B], class logits [B, K] or None).

    conditional: adds the projection term <embed(y), features> to the logit (Miyato & Koyama 2018),
    the label conditioning of CGAN. aux_classes > 0: an auxiliary class head of that many logits
    (ACGAN). Classic ACGAN's D is not label-conditioned, and neither is ours (GANS['acgan']).
    """

    def __init__(self, body: nn.Module, feature_dim: int, num_classes: int, conditional: bool,
                 aux_classes: int):
        super().__init__()
        self.body = body
        self.adversarial_head = nn.Linear(feature_dim, 1)
        self.projection = nn.Embedding(num_classes, feature_dim) if conditional else None
        if self.projection is not None:
            nn.init.normal_(self.projection.weight, std=0.02)  # start near unconditional: stable early steps
        self.class_head = nn.Linear(feature_dim, aux_classes) if aux_classes > 0 else None

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.body(x)
        logit = self.adversarial_head(features).squeeze(1)
        if self.projection is not None:
            logit = logit + (self.projection(y).to(features.dtype) * features).sum(dim=1)
        class_logits = self.class_head(features) if self.class_head is not None else None
        return logit, class_logits


def mlp_generator_body(spec, in_dim: int, width: float) -> nn.Module:
    """512-1024-2048 (x width), BatchNorm1d + ReLU, tanh output reshaped to the image."""
    shape = (spec.channels, spec.height, spec.width)
    layers, previous = [], in_dim
    for hidden in (512, 1024, 2048):
        hidden = _scaled(hidden, width)
        layers += [nn.Linear(previous, hidden), nn.BatchNorm1d(hidden), nn.ReLU()]
        previous = hidden
    layers += [nn.Linear(previous, shape[0] * shape[1] * shape[2]), nn.Tanh(), nn.Unflatten(1, shape)]
    return nn.Sequential(*layers)


def mlp_discriminator_body(spec, width: float) -> tuple[nn.Module, int]:
    """1024-512-256 (x width) with LeakyReLU(0.2) and no BatchNorm.

    No BatchNorm in D (here and in dcgan): real and fake images share one D forward pass, and
    batch statistics would let D read the batch's real/fake composition instead of each image.
    """
    layers, previous = [nn.Flatten()], spec.channels * spec.height * spec.width
    for hidden in (1024, 512, 256):
        layers += [nn.Linear(previous, _scaled(hidden, width)), nn.LeakyReLU(0.2)]
        previous = _scaled(hidden, width)
    return nn.Sequential(*layers), previous


def dcgan_levels(spec) -> tuple[int, int, int]:
    """(k, start_h, start_w): k stride-2 levels from a start map of >= 4 px to the image size.

    8 -> 4 (k=1), 28 -> 7 (k=2), 32 -> 4 (k=3), 64 -> 4 (k=4). Sizes that cannot be halved at
    least once to >= 4 px raise ConfigError.
    """
    def halvings(size: int) -> int:
        k = 0
        while size % 2 == 0 and size // 2 >= 4:
            size, k = size // 2, k + 1
        return k

    k = min(halvings(spec.height), halvings(spec.width))
    if k == 0:
        raise ConfigError(
            f"gan_arch='dcgan' cannot build {spec.height}x{spec.width} images; valid: sizes that halve at "
            f"least once to >= 4 px (e.g. 8, 28, 32, 64) — resize the data or use gan_arch='mlp'"
        )
    return k, spec.height >> k, spec.width >> k


def _dcgan_channels(width: float, level: int) -> int:
    """Channels `level` stride-2 steps below the image resolution: 64, 128, 256, 512, 512, ... (x width)."""
    return _scaled(64 * 2 ** min(level, 3), width)


def dcgan_generator_body(spec, in_dim: int, width: float) -> nn.Module:
    """Linear to a start map, k x [ConvTranspose2d(4, 2, 1) + BN + ReLU] doubling it, 3x3 conv + tanh."""
    k, start_h, start_w = dcgan_levels(spec)
    start_channels = _dcgan_channels(width, k)
    layers = [
        nn.Linear(in_dim, start_channels * start_h * start_w, bias=False),
        nn.Unflatten(1, (start_channels, start_h, start_w)),
        nn.BatchNorm2d(start_channels), nn.ReLU(),
    ]
    for level in range(k, 0, -1):
        c_in, c_out = _dcgan_channels(width, level), _dcgan_channels(width, level - 1)
        layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    layers += [nn.Conv2d(_dcgan_channels(width, 0), spec.channels, 3, 1, 1), nn.Tanh()]
    return nn.Sequential(*layers)


def dcgan_discriminator_body(spec, width: float) -> tuple[nn.Module, int]:
    """k x [Conv2d(4, 2, 1) + LeakyReLU(0.2)] down to the start map, one 3x3 conv there, flatten.

    The extra 3x3 conv gives small images (8x8: one stride-2 level) a second layer of depth.
    """
    k, start_h, start_w = dcgan_levels(spec)
    layers, previous = [], spec.channels
    for level in range(1, k + 1):
        layers += [nn.Conv2d(previous, _dcgan_channels(width, level - 1), 4, 2, 1), nn.LeakyReLU(0.2)]
        previous = _dcgan_channels(width, level - 1)
    layers += [nn.Conv2d(previous, previous, 3, 1, 1), nn.LeakyReLU(0.2), nn.Flatten()]
    return nn.Sequential(*layers), previous * start_h * start_w


class Architecture(NamedTuple):
    generator_body: Callable[..., nn.Module]                         # (spec, in_dim, width) -> module
    discriminator_body: Callable[..., tuple[nn.Module, int]]         # (spec, width) -> (module, feature_dim)


def _architecture(arch: str) -> Architecture:
    if arch not in ARCHITECTURES:
        raise ConfigError(f"gan_arch={arch!r} is not one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch]


def build_generator(arch: str, spec, latent_dim: int, width: float) -> Generator:
    """G for the spec's image shape and classes; forward(z, y) -> images in [-1, 1]."""
    body = _architecture(arch).generator_body(spec, 2 * latent_dim, width)
    return Generator(body, spec.num_classes, latent_dim)


def build_discriminator(arch: str, spec, width: float, conditional: bool, aux_classes: int) -> Discriminator:
    """D for the spec's image shape; forward(x, y) -> (logit [B], class_logits [B, aux_classes] or None)."""
    body, feature_dim = _architecture(arch).discriminator_body(spec, width)
    return Discriminator(body, feature_dim, spec.num_classes, conditional, aux_classes)


# ----------------------------------------------------------------------------------------------
# Losses and training.

@dataclass(frozen=True)
class GANLoss:
    """Non-saturating GAN loss; aux_weight > 0 adds ACGAN's class cross-entropy to both players."""

    aux_weight: float      # Weight of the auxiliary class loss; 0 = no class head (CGAN).
    conditional_d: bool    # D gets the label through a projection term (CGAN).

    def discriminator_loss(self, logit, class_logits, y, is_real, real_target: float) -> torch.Tensor:
        """BCE over the mixed batch (real target `real_target`, fake 0) + class CE on real and fake rows."""
        target = is_real.to(torch.float32) * real_target
        loss = F.binary_cross_entropy_with_logits(logit.float(), target)
        if self.aux_weight > 0:
            loss = loss + self.aux_weight * F.cross_entropy(class_logits.float(), y)
        return loss

    def generator_loss(self, logit, class_logits, y) -> torch.Tensor:
        """-log D(G(z)) (non-saturating) + class CE of the conditioning labels."""
        loss = F.softplus(-logit.float()).mean()
        if self.aux_weight > 0:
            loss = loss + self.aux_weight * F.cross_entropy(class_logits.float(), y)
        return loss


@contextlib.contextmanager
def _sampling_mode(G: nn.Module, batch_size: int):
    """Batch statistics without touching the running statistics (batches of one: running statistics).

    Why batch statistics: G always trains in train mode, so these are the activations D has
    judged; running statistics lag the fast-moving weights early in training (washed-out
    samples), and for the EMA generator they belong to the live G's weights, not the EMA's.
    """
    was_training = G.training
    norms = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    tracked = [m.track_running_stats for m in norms]
    if batch_size > 1:
        G.train()
        for m in norms:
            m.track_running_stats = False  # train mode + untracked: batch stats, buffers left alone
    else:
        G.eval()  # BatchNorm1d cannot normalise a batch of one
    try:
        yield
    finally:
        for m, was_tracked in zip(norms, tracked):
            m.track_running_stats = was_tracked
        G.train(was_training)


class GAN:
    """G, D, optional EMA of G, their Adam optimizers and the family loss, for one trial.

    Both optimizers are Adam(lr=cfg.gan_lr, betas=(cfg.gan_beta1, 0.999)). `device` must hold the
    batches and any torch.Generator passed to the methods.
    """

    def __init__(self, cfg: TrialConfig, spec, device: torch.device):
        if cfg.gan not in GANS:
            raise ConfigError(f"gan={cfg.gan!r} is not one of {', '.join(GANS)}")
        self.cfg = cfg
        self.device = torch.device(device)
        self.num_classes = spec.num_classes
        self.latent_dim = cfg.latent_dim
        self.loss = GANS[cfg.gan]
        self.diffaugment = ",".join(parse_policy(cfg.diffaugment))  # validated once, not per step
        self.G = build_generator(cfg.gan_arch, spec, cfg.latent_dim, cfg.gan_width).to(self.device)
        self.D = build_discriminator(
            cfg.gan_arch, spec, cfg.gan_width, conditional=self.loss.conditional_d,
            aux_classes=spec.num_classes if self.loss.aux_weight > 0 else 0,
        ).to(self.device)
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False) if cfg.g_ema > 0 else None
        self.ema_updates = 0
        betas = (cfg.gan_beta1, 0.999)
        # fused: one kernel updates every parameter (see pipeline.run's optimizer).
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.gan_lr, betas=betas, fused=True)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.gan_lr, betas=betas, fused=True)

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, device=self.device, generator=generator)

    def train_step(self, real_x: torch.Tensor, real_y: torch.Tensor, real_fraction: float,
                   generator: torch.Generator | None = None,
                   autocast: Callable = contextlib.nullcontext) -> dict[str, torch.Tensor]:
        """cfg.d_steps discriminator steps, one generator step, the EMA update.

        real_x: float [n, C, H, W] in [-1, 1] on the GAN's device; real_y: int64 [n].
        Returns 0-dim detached {"d_loss" (mean over the D steps), "g_loss"}; never syncs.
        """
        if not real_x.is_floating_point():
            raise TypeError(f"GAN.train_step: real_x must be float images in [-1, 1], got {real_x.dtype}")
        if len(real_x) < 2:
            raise ValueError(
                f"GAN.train_step needs batches of at least 2 images (BatchNorm in G), got {len(real_x)}"
            )
        if not 0 <= real_fraction <= 1:
            raise ValueError(
                f"GAN.train_step: real_fraction={real_fraction!r}; valid: 0 <= real_fraction <= 1"
            )
        d_losses = [
            self.discriminator_step(real_x, real_y, real_fraction, generator, autocast, offset=step)
            for step in range(self.cfg.d_steps)
        ]
        g_loss = self.generator_step(len(real_x), generator, autocast)
        self.update_ema()
        return {"d_loss": torch.stack(d_losses).mean(), "g_loss": g_loss}

    def discriminator_step(self, real_x: torch.Tensor, real_y: torch.Tensor, real_fraction: float,
                           generator: torch.Generator | None = None,
                           autocast: Callable = contextlib.nullcontext, offset: int = 0) -> torch.Tensor:
        """One D update on a batch of len(real_x) images, round(real_fraction * n) of them real.

        The real share is a slice of real_x (rotated by `offset` slices, so that successive D steps
        on one batch see different real images); its dropped slots are filled with fakes conditioned
        on the dropped images' labels. Reusing those labels keeps the label mix of real and fake
        rows identical, so a label-conditioned D cannot tell real from fake by the label alone
        (uniform fake labels on imbalanced data would mark minority labels as fake).
        """
        n = len(real_x)
        n_real = round(real_fraction * n)
        n_fake = n - n_real
        shift = (offset * n_real) % n
        if shift:
            real_x, real_y = real_x.roll(-shift, 0), real_y.roll(-shift, 0)
        with torch.no_grad(), autocast():
            if n_fake == 0:
                fake = real_x[:0]
            else:
                # A single fake would break BatchNorm1d's batch statistics: draw two, keep one.
                fake_y = real_y[n_real:] if n_fake > 1 else real_y[n_real:].repeat(2)
                fake = self.G(self.noise(len(fake_y), generator), fake_y)[:n_fake]
        with autocast():
            d_input = diff_augment(torch.cat([real_x[:n_real], fake]), self.diffaugment, generator)
            logit, class_logits = self.D(d_input, real_y)  # one pass over the mixed batch
            is_real = torch.arange(n, device=real_x.device) < n_real
            loss = self.loss.discriminator_loss(
                logit, class_logits, real_y, is_real, real_target=1.0 - self.cfg.d_label_smoothing,
            )
        self.opt_D.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_D.step()
        return loss.detach()

    def generator_step(self, n: int, generator: torch.Generator | None = None,
                       autocast: Callable = contextlib.nullcontext) -> torch.Tensor:
        """One G update, non-saturating loss on n fresh fakes with class-balanced labels."""
        y = balanced_labels(n, self.num_classes, generator, self.device)
        self.D.requires_grad_(False)  # gradients flow through D to G without filling D's .grad
        try:
            with autocast():
                fake = self.G(self.noise(n, generator), y)
                logit, class_logits = self.D(diff_augment(fake, self.diffaugment, generator), y)
                loss = self.loss.generator_loss(logit, class_logits, y)
            self.opt_G.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_G.step()
        finally:
            self.D.requires_grad_(True)
        return loss.detach()

    @torch.no_grad()
    def update_ema(self) -> None:
        """G_ema <- decay * G_ema + (1 - decay) * G; BN buffers copied.

        The decay ramps up as min(g_ema, (1 + t) / (10 + t)) so that early samples follow G instead
        of lingering near the random initialisation.
        """
        if self.G_ema is None:
            return
        self.ema_updates += 1
        decay = min(self.cfg.g_ema, (1 + self.ema_updates) / (10 + self.ema_updates))
        torch._foreach_lerp_(list(self.G_ema.parameters()), list(self.G.parameters()), 1.0 - decay)
        for ema_buffer, buffer in zip(self.G_ema.buffers(), self.G.buffers()):
            ema_buffer.copy_(buffer)

    @torch.no_grad()
    def sample(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in [-1, 1] for labels y, from G_ema when enabled else G; noise from `generator`.

        Uses batch statistics (see _sampling_mode), so an image depends on its batch; running
        statistics are never updated.
        """
        G = self.G_ema if self.G_ema is not None else self.G
        with _sampling_mode(G, len(y)):
            return G(self.noise(len(y), generator), y.to(self.device))

    def state_dict(self) -> dict:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "ema_updates": self.ema_updates,
        }

    def load_state_dict(self, state: dict) -> None:
        expected = {"G", "D", "G_ema", "opt_G", "opt_D", "ema_updates"}
        if not isinstance(state, dict) or set(state) != expected:
            found = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise StateDictError(f"GAN state: expected keys {sorted(expected)}, found {found}")
        if (state["G_ema"] is None) != (self.G_ema is None):
            has = "lacks" if state["G_ema"] is None else "has"
            raise StateDictError(
                f"GAN state: g_ema={self.cfg.g_ema} but the state {has} an EMA generator; "
                f"resume with the g_ema the state was saved with"
            )
        try:
            self.G.load_state_dict(state["G"])
            self.D.load_state_dict(state["D"])
            if self.G_ema is not None:
                self.G_ema.load_state_dict(state["G_ema"])
            self.opt_G.load_state_dict(state["opt_G"])
            self.opt_D.load_state_dict(state["opt_D"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise StateDictError(
                f"GAN state does not fit gan={self.cfg.gan!r}, gan_arch={self.cfg.gan_arch!r}, "
                f"gan_width={self.cfg.gan_width}, latent_dim={self.cfg.latent_dim} and this dataset's "
                f"shape/classes: {str(error).splitlines()[0]}"
            ) from None
        self.ema_updates = int(state["ema_updates"])


DIFFAUGMENT = {
    "color": [rand_brightness, rand_saturation, rand_contrast],
    "translation": [rand_translation],
    "cutout": [rand_cutout],
}

ARCHITECTURES = {
    "mlp": Architecture(mlp_generator_body, mlp_discriminator_body),
    "dcgan": Architecture(dcgan_generator_body, dcgan_discriminator_body),
}

GANS = {
    "cgan": GANLoss(aux_weight=0.0, conditional_d=True),
    "acgan": GANLoss(aux_weight=1.0, conditional_d=False),
}

ADVERSARIAL_LOSSES = {"bce": None, "hinge": None}  # filled in below (work in progress)
MINIBATCH_FEATURES = {"none": None, "stddev": None, "discrimination": None}
