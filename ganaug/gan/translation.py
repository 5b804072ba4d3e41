"""Class-to-class translation (StarGAN, Choi et al. 2018; CycleGAN, Zhu et al. 2017, when there are two classes):
synthetic images are REAL training images of one class translated into another, labelled with the target class.

One image-to-image generator G(x, target class) serves every pair of classes; D is the project's discriminator
(gan_arch picks it) with an auxiliary class head, as in ACGAN. The losses, with a = the source class and b a
target drawn uniformly among the other classes:

    D: adversarial(real x, fake G(x, b)) + acgan_weight * CE(class head(x), a)                 (real rows only)
    G: adversarial(G(x, b)) + acgan_weight * CE(class head(G(x, b)), b)
       + cycle_weight * L1(G(G(x, b), a), x) + identity_weight * L1(G(x, a), x)

    gan = TranslationTrainer(TrialConfig(gan="translation", gan_arch="dcgan"), data.spec, device, data=data)
    losses = gan.train_step(real_x, real_y, real_fraction=0.5)   # {"d_loss", "g_loss", "cycle_loss"}
    images = gan.sample(torch.tensor([3, 7]))   # a real non-3 image made a 3, a real non-7 image made a 7

Differences from StarGAN, and why:
- The adversarial loss is the project's bce or hinge (cfg.gan_loss), not WGAN-GP: every family shares D's losses,
  DiffAugment, label smoothing and minibatch features; d_steps plays the part of StarGAN's n_critic.
- The target class enters through conditional instance norm (a per-class gain and bias after every instance
  norm of G), not as one-hot maps concatenated to the image: behind an instance norm a spatially constant input
  channel is subtracted away with the mean, so concatenated labels reach G only through the zero padding at the
  image border; and one-hot maps would add 100 input channels for CIFAR-100.
- Instance norm without running statistics (StarGAN's normalisation): a translation never depends on the other
  images of its batch, so sampling needs no batch-statistics mode and batches of one work.
- Fewer residual blocks (3, not 6) and down-samplings sized to the image: our images are 8-64 px, not 128 px.
- D's class loss is on real images only (StarGAN), whatever acgan_fake_class_loss says.
latent_dim is unused: the variation comes from the source image, not from noise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ganaug.augment import diff_augment
from ganaug.config import ConfigError, TrialConfig
from ganaug.data import ClassIndex, to_float
from ganaug.gan.networks import ConditionalBatchNorm, Conditioned, build_discriminator, dcgan_channels
from ganaug.gan.trainer import Fakes, GANTrainer, descend, frozen

RESIDUAL_BLOCKS = 3  # at G's lowest resolution; StarGAN and CycleGAN use 6 on 128 px images
MAX_DOWNSAMPLINGS = 2  # StarGAN's two stride-2 convs
MIN_MAP_SIZE = 8  # px: G down-samples only while its feature maps stay at least this large


# ----------------------------------------------------------------------------------------------
# Generator: conv 7x7, stride-2 convs down, residual blocks, transposed convs up, conv 7x7 + tanh (StarGAN's G).

class ConditionalInstanceNorm(ConditionalBatchNorm):
    """ConditionalBatchNorm with per-image statistics: instance norm, then the target class's gain and bias."""

    def __init__(self, num_features: int, num_classes: int):
        super().__init__(num_features, num_classes)
        self.norm = nn.InstanceNorm2d(num_features)  # no affine part (the class supplies it), no running stats


class ResidualBlock(nn.Module):
    """x + [conv3x3-CIN-ReLU-conv3x3-CIN](x, y): StarGAN's residual block with class-conditional norms."""

    takes_labels = True

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.body = Conditioned(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), ConditionalInstanceNorm(channels, num_classes),
            nn.ReLU(), nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            ConditionalInstanceNorm(channels, num_classes),
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + self.body(x, y)


def translation_levels(spec) -> int:
    """Stride-2 down-samplings of G: while both sides are even and stay >= MIN_MAP_SIZE, at most two.

    8x8 -> 0 (G works at full resolution), 28x28 -> 1 (14x14), 32x32 -> 2 (8x8), 64x64 -> 2 (16x16); odd sizes
    -> 0, so G translates any image size (D's architecture may still restrict it, see gans.dcgan_levels).
    """
    def halvings(size: int) -> int:
        k = 0
        while k < MAX_DOWNSAMPLINGS and size % 2 == 0 and size // 2 >= MIN_MAP_SIZE:
            size, k = size // 2, k + 1
        return k

    return min(halvings(spec.height), halvings(spec.width))


def build_translator(spec, width: float) -> Conditioned:
    """G: forward(x [B, C, H, W] in [-1, 1], target y int64 [B]) -> [B, C, H, W] in [-1, 1].

    Channels 64, 128, 256 (x width) per level as gans' dcgan networks; every norm conditional on the target.
    """
    K, levels = spec.num_classes, translation_levels(spec)
    channels = dcgan_channels(width, 0)
    layers = [nn.Conv2d(spec.channels, channels, 7, 1, 3, bias=False), ConditionalInstanceNorm(channels, K), nn.ReLU()]
    for level in range(1, levels + 1):
        c_out = dcgan_channels(width, level)
        layers += [nn.Conv2d(channels, c_out, 4, 2, 1, bias=False), ConditionalInstanceNorm(c_out, K), nn.ReLU()]
        channels = c_out
    layers += [ResidualBlock(channels, K) for _ in range(RESIDUAL_BLOCKS)]
    for level in range(levels - 1, -1, -1):
        c_out = dcgan_channels(width, level)
        layers += [nn.ConvTranspose2d(channels, c_out, 4, 2, 1, bias=False), ConditionalInstanceNorm(c_out, K),
                   nn.ReLU()]
        channels = c_out
    layers += [nn.Conv2d(channels, spec.channels, 7, 1, 3), nn.Tanh()]
    return Conditioned(*layers)


def other_classes(y: torch.Tensor, num_classes: int, rng: torch.Generator | None = None) -> torch.Tensor:
    """For each label, a class drawn uniformly among the other num_classes - 1 (two classes: the other one)."""
    shift = torch.randint(1, num_classes, y.shape, generator=rng, device=y.device)
    return (y + shift) % num_classes


# ----------------------------------------------------------------------------------------------
# Trainer.

class TranslationTrainer(GANTrainer):
    """G (the translator), its optional EMA, D with a class head, both Adam optimizers, and the training images
    that sample() translates. state_dict, load_state_dict, update_ema and class_scores are GAN's."""

    min_batch = 1  # instance norm: a translated image never depends on its batch
    min_real = 1  # the class loss of a D batch needs a real row
    family_loss = "acgan"  # an auxiliary class head, no projection term

    def __init__(self, cfg: TrialConfig, spec, device: torch.device, data=None):
        if spec.num_classes < 2:
            raise ConfigError(f"gan='translation' translates images of one class into another, but this dataset has "
                              f"{spec.num_classes} class; valid: a dataset of two or more classes, or gan='acgan'")
        if data is None:
            raise ConfigError("gan='translation' translates the training images and needs them: build it with "
                              "families.build_gan(cfg, spec, device, data) (data: the trial's ImageData)")
        super().__init__(cfg, spec, device)
        self.class_on_fakes = False  # a translated image's label is its target class, which D must not learn

        # The source images of sample(): the training split, and its rows by class, to draw "any image not of
        # class t" from.
        self.source_x = data.train_x.to(self.device)  # uint8, as the trial holds it (no float copy)
        self.sources = ClassIndex(data.train_y.to(self.device), self.num_classes)
        if int((self.sources.count > 0).sum()) < 2:
            present = [spec.class_names[k] for k in self.sources.count.nonzero().flatten().tolist()]
            raise ConfigError(f"gan='translation' needs training images of at least two classes to translate "
                              f"between; the training split holds only {present}; valid: a dataset whose training "
                              f"split has two or more classes, or gan='acgan'")

    def generator_update(self, real_x: torch.Tensor, real_y: torch.Tensor, rng: torch.Generator | None = None,
                         autocast: Callable = contextlib.nullcontext) -> dict[str, torch.Tensor]:
        """GANTrainer.train_step's G side: one translation_step on the whole batch as sources. Returns {"g_loss"
        (G's whole loss, cycle term included), "cycle_loss" (the L1 reconstruction error, unweighted)}."""
        g_loss, cycle_loss = self.translation_step(real_x, real_y, rng, autocast)
        return {"g_loss": g_loss, "cycle_loss": cycle_loss}

    def networks(self, spec, predictions: int = 0) -> tuple[nn.Module, nn.Module]:
        """The translator G(x, target) and an unconditional D with an auxiliary class head."""
        G = build_translator(spec, self.cfg.gan_width)
        D = build_discriminator(self.cfg.gan_arch, spec, self.cfg.gan_width, conditional=False,
                                aux_classes=spec.num_classes, spectral_norm=self.cfg.d_spectral_norm,
                                minibatch=self.cfg.d_minibatch)
        return G, D

    def fakes_for(self, dropped_x: torch.Tensor, dropped_y: torch.Tensor, rng: torch.Generator | None = None,
                  rows: torch.Tensor | None = None) -> Fakes:
        """GANTrainer.discriminator_step's fakes: the dropped real images translated to other classes, labelled
        with their targets (no codes: G draws none)."""
        target = other_classes(dropped_y, self.num_classes, rng)
        return Fakes(self.G(dropped_x, target) if len(dropped_x) else dropped_x, target)

    def translation_step(self, real_x: torch.Tensor, real_y: torch.Tensor, rng: torch.Generator | None = None,
                         autocast: Callable = contextlib.nullcontext) -> tuple[torch.Tensor, torch.Tensor]:
        """One G update translating every image of the batch to another class: adversarial + target-class CE +
        cycle_weight * L1(G(G(x, b), a), x) (+ identity_weight * L1(G(x, a), x)). Returns (loss, cycle L1)."""
        target = other_classes(real_y, self.num_classes, rng)
        with frozen(self.D):
            with autocast():
                fake = self.G(real_x, target)
                logit, class_logits = self.D(diff_augment(fake, self.diffaugment, rng), target)
                loss = self.loss.generator_loss(logit, class_logits, target, adversarial=self.adversarial,
                                                class_weight=self.cfg.acgan_weight)
                cycle = F.l1_loss(self.G(fake, real_y).float(), real_x.float())
                loss = loss + self.cfg.cycle_weight * cycle
                if self.cfg.identity_weight > 0:
                    loss = loss + self.cfg.identity_weight * F.l1_loss(self.G(real_x, real_y).float(), real_x.float())
            return descend(loss, self.opt_G), cycle.detach()

    @torch.no_grad()
    def sample(self, y: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        """For each label y_i, a real training image of another class (drawn uniformly among their images, so a
        source class in proportion to its image count) translated into class y_i, in [-1, 1]; by G_ema when enabled
        else G. Sources are drawn with `rng`; no batch statistics are involved."""
        y = y.to(self.device)
        G = self.sampling_generator
        return G(to_float(self.source_x[self.sources.row_of_other_class(y, rng)]), y)
