"""Class-conditional GANs for data augmentation: CGAN and ACGAN networks on MLP, DCGAN and
SNGAN-style ResNet architectures, optional spectral norm and minibatch features in D.

The two families share one Generator and one Discriminator; they differ only by D's conditioning (a projection
term for CGAN) and D's auxiliary class head (ACGAN), whose losses are in losses.py. G takes the label through
conditional BatchNorm (see "Networks" for why not concatenated to z). GANTrainer holds the networks and
optimizers of one trial and takes the joint loop's steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from ganaug.config import ConfigError, registry


def scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


# ----------------------------------------------------------------------------------------------
# Networks. An architecture supplies two bodies; the shared Generator / Discriminator below hold the
# conditioning-free parts (D's heads, its minibatch features), so CGAN vs ACGAN never touches an
# architecture.
#
# How the label enters G: through class-conditional BatchNorm gains and biases in every normalised
# layer (de Vries et al. 2017; the conditioning of SNGAN and BigGAN), never concatenated to z. An
# earlier design concatenated a learned embedding of the label (as large as z) to z: measured on the
# 500-per-class CIFAR-10 subset, that dcgan generator's output varied with z by only 9-15 % of how much
# real images of a class vary (pixel std across samples of one class), for 800 steps, with the
# reference D as well as ours, while the same generator with a one-hot label reached 65 % and a
# textbook conditional DCGAN 80 % by step 300. The cause: G's first BatchNorm normalises a mixed-class
# batch, so z and the label share one unit of variance per channel; D rewards class-specific output,
# the label's share of that variance grows, and normalisation shrinks z's share until G ignores z.
# Conditional BatchNorm normalises first and adds the class afterwards, so the label cannot crowd z out.

class ConditionalBatchNorm(nn.Module):
    """BatchNorm without affine parameters, then a per-class gain (initialised to 1) and bias (to 0).

    forward(x [B, C] or [B, C, H, W], y int64 [B]). The inner BatchNorm is an ordinary _BatchNorm module,
    so sampling with batch statistics (trainer.sampling_mode) and the EMA's buffer copy treat it like any other.
    """

    takes_labels = True

    def __init__(self, num_features: int, num_classes: int, image: bool = True):
        super().__init__()
        # nn.Module: translation's ConditionalInstanceNorm puts an InstanceNorm2d here.
        self.norm: nn.Module = (nn.BatchNorm2d if image else nn.BatchNorm1d)(num_features, affine=False)
        self.gain = nn.Embedding(num_classes, num_features)
        self.bias = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shape = (len(y), -1) + (1,) * (x.dim() - 2)
        return self.norm(x) * self.gain(y).view(shape).to(x.dtype) + self.bias(y).view(shape).to(x.dtype)


class Conditioned(nn.Sequential):
    """nn.Sequential whose forward(x, y) hands the labels to the layers that take them (`takes_labels`)."""

    # ignore: nn.Sequential.forward takes one input; this one takes the labels too (Liskov, on purpose).
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, y) if getattr(layer, "takes_labels", False) else layer(x)
        return x


class Generator(nn.Module):
    """forward(z [B, latent_dim], y int64 [B]) -> images [B, C, H, W] in [-1, 1]; y enters through the
    body's ConditionalBatchNorm layers (the conditioning of both CGAN and ACGAN generators)."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.body(z, y)


class MinibatchStdDev(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018, ProGAN): one extra feature, the standard deviation
    of each feature over the group, averaged over features. A collapsed generator's batch has ~0 there.

    Karras computes it over groups of 4 images of one batch; here a group is every row of one kind (the
    real rows, or the fake rows, of the mixed D batch), because statistics over rows of both kinds would
    let D read the batch's real/fake composition instead of judging diversity.
    """

    extra_features = 1

    def __init__(self, feature_dim: int):
        super().__init__()

    def forward(self, features: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(groups).to(features.dtype)                      # [B, G]
        counts = one_hot.sum(0).clamp(min=1)                                # [G]
        mean = (one_hot.T @ features) / counts[:, None]                     # [G, F]
        deviation = features - mean[groups]
        variance = (one_hot.T @ deviation.square()) / (counts - 1).clamp(min=1)[:, None]
        std = (variance + 1e-8).sqrt().mean(dim=1)                          # [G]
        return torch.cat([features, std[groups].unsqueeze(1)], dim=1)


class MinibatchDiscrimination(nn.Module):
    """Minibatch discrimination (Salimans et al. 2016, eq. in section 3.2; openai/improved-gan's
    MinibatchLayer: 100 kernels of 5 dimensions, tensor T initialised N(0, 0.05)).

    Each row's features are projected to `kernels` vectors; for each kernel, the row gets the closeness
    exp(-L1 distance) to the other rows of its group, which is high when the generator repeats itself.
    Groups as in MinibatchStdDev. The original sums over the other rows; we average, so that a group's
    size (16 real vs 48 fake rows at d_real_fraction 0.25) does not tell D which group it is.
    """

    def __init__(self, feature_dim: int, kernels: int = 100, kernel_dim: int = 5):
        super().__init__()
        self.kernels, self.kernel_dim = kernels, kernel_dim
        self.T = nn.Parameter(torch.randn(feature_dim, kernels * kernel_dim) * 0.05)
        self.extra_features = kernels

    def forward(self, features: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        M = (features @ self.T.to(features.dtype)).view(len(features), self.kernels, self.kernel_dim)
        distance = torch.cdist(M.transpose(0, 1).float(), M.transpose(0, 1).float(), p=1)   # [kernels, B, B]
        same_group = groups[:, None] == groups[None, :]
        others = same_group & ~torch.eye(len(groups), dtype=torch.bool, device=groups.device)
        closeness = (torch.exp(-distance) * others).sum(dim=2)              # [kernels, B]
        closeness = closeness / others.sum(dim=1).clamp(min=1)
        return torch.cat([features, closeness.T.to(features.dtype)], dim=1)


class Discriminator(nn.Module):
    """forward(x [B, C, H, W], y int64 [B], groups int64 [B] | None) -> (real/fake logit [B],
    class logits [B, K] or None).

    conditional: adds the projection term <embed(y), features> to the logit (Miyato & Koyama 2018),
    the label conditioning of CGAN. aux_classes > 0: an auxiliary class head of that many logits
    (ACGAN). Classic ACGAN's D is not label-conditioned, and neither is ours (FAMILY_LOSSES['acgan']).
    minibatch: a MINIBATCH_FEATURES entry; its statistics are taken within each `groups` value (None: the
    whole batch is one group). predictions > 0: a head regressing that many continuous attributes
    (gan_conditions, ganaug.gan.conditions), returned third when forward is called with_predictions.
    """

    def __init__(self, body: nn.Module, feature_dim: int, num_classes: int, conditional: bool,
                 aux_classes: int, minibatch: type[MinibatchStdDev | MinibatchDiscrimination] | None = None,
                 predictions: int = 0):
        super().__init__()
        self.body = body
        self.minibatch = minibatch(feature_dim) if minibatch is not None else None
        if self.minibatch is not None:
            feature_dim += self.minibatch.extra_features
        self.adversarial_head = nn.Linear(feature_dim, 1)
        self.projection = nn.Embedding(num_classes, feature_dim) if conditional else None
        if self.projection is not None:
            nn.init.normal_(self.projection.weight, std=0.02)  # start near unconditional: stable early steps
        self.class_head = nn.Linear(feature_dim, aux_classes) if aux_classes > 0 else None
        self.predictor_head = nn.Linear(feature_dim, predictions) if predictions > 0 else None

    def forward(self, x: torch.Tensor, y: torch.Tensor, groups: torch.Tensor | None = None,
                with_predictions: bool = False) -> tuple[torch.Tensor | None, ...]:
        features = self.body(x)
        if self.minibatch is not None:
            if groups is None:
                groups = torch.zeros(len(x), dtype=torch.long, device=x.device)
            features = self.minibatch(features, groups)
        logit = self.adversarial_head(features).squeeze(1)
        if self.projection is not None:
            logit = logit + (self.projection(y).to(features.dtype) * features).sum(dim=1)
        class_logits = self.class_head(features) if self.class_head is not None else None
        if with_predictions:
            if self.predictor_head is None:
                raise ValueError("with_predictions needs a Discriminator built with predictions > 0")
            return logit, class_logits, self.predictor_head(features)
        return logit, class_logits


def mlp_generator_body(spec, latent_dim: int, width: float) -> nn.Module:
    """512-1024-2048 (x width), conditional BatchNorm1d + ReLU, tanh output reshaped to the image."""
    shape = (spec.channels, spec.height, spec.width)
    layers, previous = [], latent_dim
    for hidden in (512, 1024, 2048):
        hidden = scaled(hidden, width)
        layers += [nn.Linear(previous, hidden), ConditionalBatchNorm(hidden, spec.num_classes, image=False),
                   nn.ReLU()]
        previous = hidden
    layers += [nn.Linear(previous, shape[0] * shape[1] * shape[2]), nn.Tanh(), nn.Unflatten(1, shape)]
    return Conditioned(*layers)


def mlp_discriminator_body(spec, width: float) -> tuple[nn.Module, int]:
    """1024-512-256 (x width) with LeakyReLU(0.2) and no BatchNorm.

    No BatchNorm in D (here and in dcgan, resnet): real and fake images share one D forward pass, and
    batch statistics would let D read the batch's real/fake composition instead of each image.
    """
    layers: list[nn.Module] = [nn.Flatten()]
    previous = spec.channels * spec.height * spec.width
    for hidden in (1024, 512, 256):
        layers += [nn.Linear(previous, scaled(hidden, width)), nn.LeakyReLU(0.2)]
        previous = scaled(hidden, width)
    return nn.Sequential(*layers), previous


def dcgan_levels(spec, arch: str = "dcgan") -> tuple[int, int, int]:
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
            f"gan_arch={arch!r} cannot build {spec.height}x{spec.width} images; valid: sizes that halve at "
            f"least once to >= 4 px (e.g. 8, 28, 32, 64) — resize the data or use gan_arch='mlp'"
        )
    return k, spec.height >> k, spec.width >> k


def dcgan_channels(width: float, level: int) -> int:
    """Channels `level` stride-2 steps below the image resolution: 64, 128, 256, 512, 512, ... (x width)."""
    return scaled(64 * 2 ** min(level, 3), width)


def dcgan_generator_body(spec, latent_dim: int, width: float) -> nn.Module:
    """Linear to a start map, k x [ConvTranspose2d(4, 2, 1) + BN + ReLU] doubling it, 3x3 conv + tanh
    (every BN conditional)."""
    k, start_h, start_w = dcgan_levels(spec)
    start_channels = dcgan_channels(width, k)
    layers = [
        nn.Linear(latent_dim, start_channels * start_h * start_w, bias=False),
        nn.Unflatten(1, (start_channels, start_h, start_w)),
        ConditionalBatchNorm(start_channels, spec.num_classes), nn.ReLU(),
    ]
    for level in range(k, 0, -1):
        c_in, c_out = dcgan_channels(width, level), dcgan_channels(width, level - 1)
        layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                   ConditionalBatchNorm(c_out, spec.num_classes), nn.ReLU()]
    layers += [nn.Conv2d(dcgan_channels(width, 0), spec.channels, 3, 1, 1), nn.Tanh()]
    return Conditioned(*layers)


def dcgan_discriminator_body(spec, width: float) -> tuple[nn.Module, int]:
    """k x [Conv2d(4, 2, 1) + LeakyReLU(0.2)] down to the start map, one 3x3 conv there, flatten.

    The extra 3x3 conv gives small images (8x8: one stride-2 level) a second layer of depth.
    """
    k, start_h, start_w = dcgan_levels(spec)
    layers, previous = [], spec.channels
    for level in range(1, k + 1):
        layers += [nn.Conv2d(previous, dcgan_channels(width, level - 1), 4, 2, 1), nn.LeakyReLU(0.2)]
        previous = dcgan_channels(width, level - 1)
    layers += [nn.Conv2d(previous, previous, 3, 1, 1), nn.LeakyReLU(0.2), nn.Flatten()]
    return nn.Sequential(*layers), previous * start_h * start_w


# The SNGAN / BigGAN residual networks (Miyato et al. 2018, appendix B.4 "ResNet" for CIFAR-10: G of
# 256 channels with three up-blocks from 4x4, D of 128 channels: an optimised first block and three
# blocks, the first two down-sampling, ReLU and global sum pooling; pfnet-research/sngan_projection).

class GeneratorBlock(nn.Module):
    """CBN-ReLU-upsample-conv3x3-CBN-ReLU-conv3x3, plus an upsampled 1x1-conv shortcut."""

    takes_labels = True

    def __init__(self, c_in: int, c_out: int, num_classes: int):
        super().__init__()
        self.norm1, self.norm2 = ConditionalBatchNorm(c_in, num_classes), ConditionalBatchNorm(c_out, num_classes)
        self.conv1, self.conv2 = nn.Conv2d(c_in, c_out, 3, 1, 1), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)
        for conv in (self.conv1, self.conv2):  # SNGAN's init: xavier with gain sqrt(2) on the residual path
            nn.init.xavier_uniform_(conv.weight, math.sqrt(2))
        nn.init.xavier_uniform_(self.shortcut.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.norm1(x, y)), scale_factor=2)
        h = self.conv2(F.relu(self.norm2(self.conv1(h), y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2))


class DiscriminatorBlock(nn.Module):
    """ReLU-conv3x3-ReLU-conv3x3 (first=True: no leading ReLU, SNGAN's optimised first block), 2x2 average
    pooling when down-sampling; the shortcut is a 1x1 conv (pooled) when the shape changes."""

    def __init__(self, c_in: int, c_out: int, down: bool, first: bool = False):
        super().__init__()
        self.down, self.first = down, first
        self.conv1, self.conv2 = nn.Conv2d(c_in, c_out, 3, 1, 1), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if (c_in != c_out or down) else None
        for conv in (self.conv1, self.conv2):
            nn.init.xavier_uniform_(conv.weight, math.sqrt(2))
        if self.shortcut is not None:
            nn.init.xavier_uniform_(self.shortcut.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        if self.down:
            h = F.avg_pool2d(h, 2)
        shortcut = x
        if self.shortcut is not None:
            # The optimised first block pools before its 1x1 conv (cheaper, and what SNGAN does).
            shortcut = self.shortcut(F.avg_pool2d(x, 2)) if self.first else self.shortcut(x)
            if self.down and not self.first:
                shortcut = F.avg_pool2d(shortcut, 2)
        return h + shortcut


class SumPool(nn.Module):
    """ReLU, then the sum over pixels (SNGAN's D ends this way, rather than with a mean)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).sum(dim=(2, 3))


def resnet_generator_body(spec, latent_dim: int, width: float) -> nn.Module:
    """Linear to a 256-channel (x width) start map, k up-blocks to the image size, BN-ReLU-conv3x3-tanh.

    k and the start map as dcgan_levels: 32x32 -> 4x4 start and three blocks, as SNGAN's CIFAR G.
    """
    k, start_h, start_w = dcgan_levels(spec, "resnet")
    channels = scaled(256, width)
    layers = [nn.Linear(latent_dim, channels * start_h * start_w), nn.Unflatten(1, (channels, start_h, start_w))]
    layers += [GeneratorBlock(channels, channels, spec.num_classes) for _ in range(k)]
    layers += [nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, spec.channels, 3, 1, 1), nn.Tanh()]
    return Conditioned(*layers)


def resnet_discriminator_body(spec, width: float) -> tuple[nn.Module, int]:
    """128 channels (x width): an optimised down-sampling block, more down-sampling blocks until the map is
    twice the generator's start map (32x32 -> 8x8, as SNGAN), two plain blocks, ReLU, sum over pixels."""
    k, _, _ = dcgan_levels(spec, "resnet")
    channels = scaled(128, width)
    blocks = [DiscriminatorBlock(spec.channels, channels, down=True, first=True)]
    blocks += [DiscriminatorBlock(channels, channels, down=True) for _ in range(max(1, k - 1) - 1)]
    blocks += [DiscriminatorBlock(channels, channels, down=False) for _ in range(2)]
    return nn.Sequential(*blocks, SumPool()), channels


_Module = TypeVar("_Module", bound=nn.Module)


def spectral_normalised(module: _Module) -> _Module:
    """Spectral normalisation (Miyato et al. 2018) of every conv, linear and embedding weight in `module`:
    each weight is divided by its largest singular value (conv kernels as [out, in*k*k] matrices, one
    power iteration per training forward, as the paper), bounding D's Lipschitz constant."""
    for layer in list(module.modules()):
        if isinstance(layer, (nn.Conv2d, nn.Linear, nn.Embedding)) and not hasattr(layer, "parametrizations"):
            torch.nn.utils.parametrizations.spectral_norm(layer)
    return module


class Architecture(NamedTuple):
    generator_body: Callable[..., nn.Module]                         # (spec, latent_dim, width) -> module
    discriminator_body: Callable[..., tuple[nn.Module, int]]         # (spec, width) -> (module, feature_dim)
    spectral_norm: bool = False                                      # D always spectrally normalised


def _architecture(arch: str) -> Architecture:
    if arch not in ARCHITECTURES:
        raise ConfigError(f"gan_arch={arch!r} is not one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch]


def build_generator(arch: str, spec, latent_dim: int, width: float) -> Generator:
    """G for the spec's image shape and classes; forward(z, y) -> images in [-1, 1]."""
    return Generator(_architecture(arch).generator_body(spec, latent_dim, width))


def build_discriminator(arch: str, spec, width: float, conditional: bool, aux_classes: int,
                        spectral_norm: bool = False, minibatch: str = "none", predictions: int = 0) -> Discriminator:
    """D for the spec's image shape; forward(x, y, groups=None) -> (logit [B], class_logits [B, aux] or None).

    spectral_norm: normalise every layer, heads included (always on for architectures that require it).
    minibatch: a key of MINIBATCH_FEATURES. predictions: outputs of the attribute predictor head (0 = none).
    """
    if minibatch not in MINIBATCH_FEATURES:
        raise ConfigError(f"d_minibatch={minibatch!r} is not one of {', '.join(MINIBATCH_FEATURES)}")
    architecture = _architecture(arch)
    body, feature_dim = architecture.discriminator_body(spec, width)
    D = Discriminator(body, feature_dim, spec.num_classes, conditional, aux_classes, MINIBATCH_FEATURES[minibatch],
                      predictions)
    return spectral_normalised(D) if spectral_norm or architecture.spectral_norm else D


ARCHITECTURES = registry("gan_arch", {
    "mlp": Architecture(mlp_generator_body, mlp_discriminator_body),
    "dcgan": Architecture(dcgan_generator_body, dcgan_discriminator_body),
    "resnet": Architecture(resnet_generator_body, resnet_discriminator_body, spectral_norm=True),
})

MINIBATCH_FEATURES = registry("d_minibatch", {
    "none": None,
    "stddev": MinibatchStdDev,
    "discrimination": MinibatchDiscrimination,
})
