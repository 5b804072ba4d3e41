"""GAN sample quality in a fixed random feature space: per-class diversity (collapse shows as ~0) and the Frechet
distance to real images; no download, no training, the same network in every trial."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganaug.data import as_float_images, sample_balanced
from ganaug.gan.trainer import GANTrainer

FEATURE_SEED = 0                    # Seed of the feature network's weights: the same network everywhere, always.
FEATURE_WIDTHS = (64, 128, 256)     # Output channels of the three conv3x3 + ReLU stages.
FEATURE_PIXELS_PER_BATCH = 2 ** 18  # Images per batch = this / (H * W): 256 at 32x32, ~64 MiB per activation.
REAL_SUBSET_SEED = 0                # Picks the real images a Fréchet distance compares with: fixed, so trials agree.


class RandomFeatures(nn.Module):
    """conv3x3 + ReLU stages with fixed random weights (2x2 average pooling between stages while the map is at
    least 2 px); the features are each stage's global average, concatenated: colour and edges from the first
    stage, texture and shape from the later ones (multi-scale)."""

    def __init__(self, channels: int, widths: tuple[int, ...] = FEATURE_WIDTHS, seed: int = FEATURE_SEED):
        super().__init__()
        # Its own generator: building the network neither reads nor advances torch's global RNG.
        rng = torch.Generator().manual_seed(seed)
        self.convs = nn.ModuleList()
        for width in widths:
            # skip_init: nn.Conv2d's default init would draw from the global RNG.
            conv = nn.utils.skip_init(nn.Conv2d, channels, width, 3, padding=1, bias=False)
            with torch.no_grad():
                # He-normal weights keep activations at one scale through the ReLUs.
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=rng) * math.sqrt(2 / (9 * channels)))
            self.convs.append(conv)
            channels = width
        self.num_features = sum(widths)
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = []
        for index, conv in enumerate(self.convs):
            if index > 0 and min(x.shape[-2:]) >= 2:
                x = F.avg_pool2d(x, 2)
            x = F.relu(conv(x))
            pooled.append(x.mean(dim=(2, 3)))
        return torch.cat(pooled, dim=1)


_FEATURE_NETWORKS: dict[tuple[int, str], RandomFeatures] = {}


def _feature_network(channels: int, device: torch.device) -> RandomFeatures:
    # Built on the CPU (same weights on every machine), then one copy per device.
    key = (channels, str(device))
    if key not in _FEATURE_NETWORKS:
        _FEATURE_NETWORKS[key] = RandomFeatures(channels).to(device)
    return _FEATURE_NETWORKS[key]


@torch.no_grad()
def image_features(x: torch.Tensor) -> torch.Tensor:
    """Features float32 [N, 448] of uint8 or float [-1, 1] images [N, C, H, W], on x's device.

    The network is a randomly initialised CNN with fixed weights (RandomFeatures, FEATURE_SEED), one per channel
    count. Random-network embeddings are a published choice for evaluating generative models where no pretrained
    network fits (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative Models"). We use one
    because it needs no download (the standard Inception FID cannot be computed offline), costs no training (the
    quickstart budget is ~3 minutes for 24 trials), and is identical across trials and experiments, so numbers
    compare. On CUDA, convolutions may run in TF32 (PyTorch's cuDNN default): round-off, not a different space.
    """
    if x.dim() != 4:
        raise ValueError(f"image_features: x has shape {tuple(x.shape)}; valid: images [N, C, H, W]")
    network = _feature_network(x.shape[1], x.device)
    batch_size = max(1, FEATURE_PIXELS_PER_BATCH // (x.shape[2] * x.shape[3]))
    # float32 even inside a caller's autocast: features must not depend on the trial's precision.
    with torch.autocast(x.device.type, enabled=False):
        chunks = [network(as_float_images(batch).float()) for batch in x.split(batch_size)]
    return torch.cat(chunks) if chunks else torch.empty(0, network.num_features, device=x.device)


def _standardize(features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """features in float64 on the CPU, minus the reference's per-dimension mean, over its standard deviation.

    So that no single feature dominates a distance. A feature constant over the reference (a ReLU unit those
    images never activate) has no scale of its own and stays in raw units rather than being divided by ~0.
    """
    reference = reference.detach().double().cpu()
    mean, std = reference.mean(dim=0), reference.std(dim=0, correction=0)  # defined for a single row too
    scale = torch.where(std > 1e-8, std, torch.ones_like(std))
    return (features.detach().double().cpu() - mean) / scale


def feature_diversity(features_a: torch.Tensor, labels_a: torch.Tensor, features_b: torch.Tensor,
                      labels_b: torch.Tensor, num_classes: int) -> float:
    """Mean over classes of: mean pairwise Euclidean distance among a's rows of class c, over the same in b.

    b is the reference (the real images): both sets are standardised by b's per-dimension mean and std, all
    classes pooled. ~0 = every row of a class identical (collapse), ~1 = as varied as b. Classes with fewer than
    2 rows in either set, or whose b rows are all identical, are skipped; nan when no class is left.
    """
    a, b = _standardize(features_a, features_b), _standardize(features_b, features_b)
    labels_a, labels_b = labels_a.cpu(), labels_b.cpu()
    ratios = []
    for label in range(num_classes):
        rows_a, rows_b = a[labels_a == label], b[labels_b == label]
        if len(rows_a) < 2 or len(rows_b) < 2:
            continue
        spread_b = torch.pdist(rows_b).mean().item()
        if spread_b > 0:
            ratios.append(torch.pdist(rows_a).mean().item() / spread_b)
    return sum(ratios) / len(ratios) if ratios else math.nan


@torch.no_grad()
def synthetic_diversity(gan: GANTrainer, real_x: torch.Tensor, real_y: torch.Tensor, num_classes: int,
                        per_class: int = 64, rng: torch.Generator | None = None) -> float:
    """Per-class diversity of GAN samples relative to the real images (feature_diversity in image_features
    space): ~0 = a collapsed generator (one that ignores z gives exactly 0), ~1 = as varied as the real data.

    per_class samples of each class, drawn class-balanced in mixed batches (the generator's BatchNorm uses batch
    statistics, so single-class batches would not be the images the classifier sees), against the first
    per_class real images of each class (the same reference in every trial and epoch).
    """
    if per_class < 2:
        raise ValueError(f"synthetic_diversity: per_class={per_class}; valid: per_class >= 2")
    rows = torch.cat([(real_y == label).nonzero().squeeze(1)[:per_class] for label in range(num_classes)])
    fake_x, fake_y = sample_balanced(gan, per_class * num_classes, rng)
    return feature_diversity(image_features(fake_x), fake_y, image_features(real_x[rows]), real_y[rows],
                             num_classes)


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussians fitted to two feature sets [N, d].

    In float64; S are unbiased covariances; the trace of the root comes from eigenvalues (_trace_sqrt_product).
    """
    for name, features in (("features_a", features_a), ("features_b", features_b)):
        if features.dim() != 2 or len(features) < 2:
            raise ValueError(f"frechet_distance: {name} has shape {tuple(features.shape)}; valid: [N, d], N >= 2")
    if features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"frechet_distance: features_a has {features_a.shape[1]} dimensions, features_b "
                         f"{features_b.shape[1]}; valid: the same")
    a, b = (f.detach().double().cpu().numpy() for f in (features_a, features_b))
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    distance = (np.sum((a.mean(axis=0) - b.mean(axis=0)) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                - 2 * _trace_sqrt_product(cov_a, cov_b))
    return max(float(distance), 0.0)  # round-off can leave identical sets a hair below 0


def _trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """Tr((cov_a cov_b)^(1/2)) as the sum of the square roots of the eigenvalues of A^(1/2) cov_b A^(1/2)
    (A = cov_a): the same number as the trace of scipy.linalg.sqrtm(cov_a @ cov_b), since the two matrices are
    similar, but from two symmetric eigendecompositions: real by construction and finite for the singular
    covariances of fewer samples than dimensions, where sqrtm needs a ridge and drops an imaginary part."""
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    product = root_a @ cov_b @ root_a
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)  # symmetric up to round-off
    return float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())  # clip: round-off makes ~0 values slightly < 0


class SampleQuality:
    """The per-epoch quality figures of a trial's generator: `synthetic_diversity` and `frechet_distance`.

    The real reference is built once per trial: the first `per_class` training images of each class, so the
    reference is class-balanced like the samples and the same in every epoch (real features computed once). Each
    call draws per_class class-balanced samples per class in mixed batches, embeds them once (image_features) and
    scores them both ways: feature_diversity against the reference's classes, and the Fréchet distance against
    the whole reference, both standardised by the reference's per-dimension spread.
    """

    def __init__(self, real_x: torch.Tensor, real_y: torch.Tensor, num_classes: int, per_class: int = 64):
        if per_class < 2:
            raise ValueError(f"SampleQuality: per_class={per_class}; valid: per_class >= 2")
        rows = torch.cat([(real_y == label).nonzero().squeeze(1)[:per_class] for label in range(num_classes)])
        self.num_classes, self.per_class = num_classes, per_class
        self.real_features, self.real_labels = image_features(real_x[rows]), real_y[rows]
        self._real_standardised = _standardize(self.real_features, self.real_features)

    @torch.no_grad()
    def __call__(self, gan: GANTrainer, rng: torch.Generator | None = None) -> dict[str, float]:
        fake_x, fake_y = sample_balanced(gan, self.per_class * self.num_classes, rng)
        features = image_features(fake_x)
        return {
            "synthetic_diversity": feature_diversity(features, fake_y, self.real_features, self.real_labels,
                                                     self.num_classes),
            "frechet_distance": frechet_distance(_standardize(features, self.real_features), self._real_standardised),
        }


@torch.no_grad()
def synthetic_frechet_distance(gan: GANTrainer, real_x: torch.Tensor, n: int,
                               rng: torch.Generator | None = None) -> float:
    """Fréchet distance between n class-balanced GAN samples and (up to) n real images in image_features space.

    Both sets are standardised by the real features' per-dimension mean and std (as in feature_diversity), so the
    distance is in units of the real data's spread per feature: 0 = the same Gaussian. The real images are a fixed
    random subset (REAL_SUBSET_SEED); their class mix is the split's, so class imbalance adds to the distance.
    Like every FID it is biased upward at small n (448 dimensions; on digits, two real halves of ~575 images are
    ~100 apart): compare values at the same n only.
    """
    if n < 2:
        raise ValueError(f"synthetic_frechet_distance: n={n}; valid: n >= 2")
    if len(real_x) < 2:
        raise ValueError(f"synthetic_frechet_distance: real_x holds {len(real_x)} image(s); valid: at least 2")
    subset = torch.randperm(len(real_x), generator=torch.Generator().manual_seed(REAL_SUBSET_SEED))[:n]
    real = image_features(real_x[subset.to(real_x.device)])
    fake = image_features(sample_balanced(gan, n, rng)[0])
    return frechet_distance(_standardize(fake, real), _standardize(real, real))
