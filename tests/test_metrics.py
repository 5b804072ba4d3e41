"""Metrics: hand-checkable accuracy / top-k / per-class examples, predict over the K real classes,
synthetic agreement, the classification accuracy score (train on synthetic, test on real) and its real-data
reference, and the GAN quality metrics (random-feature space, per-class diversity, Fréchet distance)."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganaug.classifier.accuracy import (
    accuracy,
    per_class_accuracy,
    predict,
    score,
    synthetic_agreement,
    topk_accuracy,
)
from ganaug.classifier.cas import cas_report, classification_accuracy_score, real_accuracy_score
from ganaug.classifier.labeling import LABELERS
from ganaug.config import TrialConfig
from ganaug.data.splits import load_data
from ganaug.gan import quality as metrics
from ganaug.gan.quality import (
    feature_diversity,
    frechet_distance,
    image_features,
    synthetic_diversity,
    synthetic_frechet_distance,
)
from ganaug.gan.trainer import GANTrainer

LOGITS = torch.tensor([
    [0.9, 0.1, 0.0],   # predicts 0, ranking 0 > 1 > 2
    [0.2, 0.7, 0.1],   # predicts 1, ranking 1 > 0 > 2
    [0.5, 0.1, 0.4],   # predicts 0, ranking 0 > 2 > 1
    [0.1, 0.3, 0.6],   # predicts 2, ranking 2 > 1 > 0
])
Y = torch.tensor([0, 1, 2, 1])  # rows 0, 1 right; row 2 (class 2) second; row 3 (class 1) second


def make_spec(channels=1, height=8, width=8, num_classes=3, per_class=40):
    """Stand-in for ganaug.data.DataSpec."""
    return SimpleNamespace(channels=channels, height=height, width=width, num_classes=num_classes,
                           class_names=tuple(str(k) for k in range(num_classes)),
                           class_counts=(per_class,) * num_classes)


def test_accuracy_topk_and_per_class_by_hand():
    assert accuracy(LOGITS, Y) == pytest.approx(0.5)
    assert topk_accuracy(LOGITS, Y, k=1) == pytest.approx(0.5)
    assert topk_accuracy(LOGITS, Y, k=2) == pytest.approx(1.0)
    assert topk_accuracy(LOGITS[:, [0, 2, 1]], torch.tensor([1, 2, 1, 0]), k=2) == pytest.approx(0.5)
    assert topk_accuracy(LOGITS, Y, k=5) == pytest.approx(1.0)  # k clipped to the 3 classes
    assert per_class_accuracy(LOGITS, Y, 3) == pytest.approx([1.0, 0.5, 0.0])
    absent = per_class_accuracy(LOGITS, Y, 5)
    assert absent[:3] == pytest.approx([1.0, 0.5, 0.0]) and all(math.isnan(v) for v in absent[3:])


class Scripted(nn.Module):
    """Returns fixed logits per image, read from the image's first pixel (its index); has BN and dropout
    so that eval mode matters."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.norm = nn.BatchNorm1d(1)
        self.drop = nn.Dropout(0.9)
        self.seen = []

    def forward(self, x):
        self.seen.append((self.training, x.dtype, x.min().item(), x.max().item()))
        index = ((x[:, 0, 0, 0] + 1) * 127.5).round().long()
        return self.logits[index] + 0 * self.drop(self.norm(x.flatten(1)[:, :1]))


def test_predict_drops_the_extra_class_batches_converts_uint8_and_restores_mode():
    n, num_classes = 10, 3
    logits = torch.randn(n, num_classes + 1)
    logits[:, -1] = 50.0  # the extra (synthetic) class is the largest everywhere
    model = Scripted(logits).train()
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    out = predict(model, x, LABELERS["all_in_one"], num_classes, batch_size=3)
    assert out.shape == (n, num_classes) and out.dtype == torch.float32
    assert torch.allclose(out, logits[:, :num_classes])
    assert (out.argmax(dim=1) < num_classes).all()
    assert len(model.seen) == 4  # batches of 3, 3, 3, 1
    assert all(not training and dtype == torch.float32 and lo >= -1 and hi <= 1
               for training, dtype, lo, hi in model.seen)
    assert model.training  # mode restored
    # Float input is taken as already in [-1, 1].
    assert torch.allclose(predict(model, x.float() / 127.5 - 1, LABELERS["all_in_one"], num_classes), out)


def test_score_reports_accuracy_top5_loss_and_per_class():
    model = Scripted(LOGITS)
    x = torch.arange(4, dtype=torch.uint8).view(4, 1, 1, 1)
    result = score(model, x, Y, LABELERS["pseudo"], 3)
    assert result["acc"] == pytest.approx(0.5) and result["top5"] == pytest.approx(1.0)
    expected_loss = -sum(torch.log_softmax(LOGITS[i], 0)[Y[i]].item() for i in range(4)) / 4
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert result["per_class"] == pytest.approx([1.0, 0.5, 0.0])


class PatternGAN:
    """A stand-in GAN whose samples are class prototypes plus noise (or pure noise when informative=False)."""

    def __init__(self, spec, prototypes, informative=True, noise=0.2):
        self.num_classes, self.device = spec.num_classes, torch.device("cpu")
        self.prototypes, self.informative, self.noise = prototypes, informative, noise
        self.requests = []

    def sample(self, y, rng=None):
        self.requests.append(y.clone())
        noise = self.noise * torch.randn(len(y), *self.prototypes.shape[1:], generator=rng)
        base = self.prototypes[y] if self.informative else self.prototypes[torch.zeros_like(y)]
        return (base + noise).clamp(-1, 1)


class FirstPixelClassifier(nn.Module):
    """Predicts class k when the first pixel is closest to prototype k's first pixel."""

    def __init__(self, prototypes):
        super().__init__()
        self.anchor = nn.Parameter(prototypes[:, 0, 0, 0].clone())

    def forward(self, x):
        return -(x[:, 0, 0, 0, None] - self.anchor[None]).abs() * 100


def prototypes_for(spec, seed=0):
    g = torch.Generator().manual_seed(seed)
    levels = torch.linspace(-0.8, 0.8, spec.num_classes).view(-1, 1, 1, 1)
    texture = torch.rand(spec.num_classes, spec.channels, spec.height, spec.width, generator=g) * 0.4 - 0.2
    return (levels + texture).clamp(-1, 1)


def test_synthetic_agreement_counts_samples_assigned_to_their_conditioning_class():
    spec = make_spec(num_classes=3)
    prototypes = prototypes_for(spec)
    g = torch.Generator().manual_seed(0)
    gan = PatternGAN(spec, prototypes, noise=0.02)
    assert synthetic_agreement(FirstPixelClassifier(prototypes), gan, LABELERS["pseudo"], 3, n=30,
                               rng=g) == pytest.approx(1.0)
    assert torch.bincount(gan.requests[-1], minlength=3).tolist() == [10, 10, 10]  # class-balanced
    constant = Scripted(torch.tensor([[1.0, 0.0, 0.0]]).expand(256, 3))  # always class 0
    gan = PatternGAN(spec, prototypes)
    gan.sample = lambda y, generator=None: torch.full((len(y), 1, 8, 8), -1.0)  # index 0 -> class 0
    assert synthetic_agreement(constant, gan, LABELERS["pseudo"], 3, n=30, rng=g) == pytest.approx(1 / 3)


def test_cas_is_high_for_class_informative_samples_and_chance_for_label_blind_ones():
    spec = make_spec(num_classes=3, per_class=40)
    prototypes = prototypes_for(spec)
    g = torch.Generator().manual_seed(1)
    val_y = torch.arange(60) % 3
    val_x = ((prototypes[val_y] + 0.2 * torch.randn(60, 1, 8, 8, generator=g)).clamp(-1, 1) + 1) * 127.5
    val_x = val_x.round().to(torch.uint8)  # stored format: uint8
    cfg = TrialConfig(classifier="mlp", classifier_width=0.25, classifier_lr=3e-3, batch_size=32)
    torch.manual_seed(0)
    informative = PatternGAN(spec, prototypes)
    good = classification_accuracy_score(cfg, spec, informative, val_x, val_y, torch.device("cpu"), 2, g)
    # Each epoch shows as many synthetic images as the real train split holds, in even batches.
    sizes = [len(y) for y in informative.requests]
    assert sum(sizes) == 2 * sum(spec.class_counts) and max(sizes) <= cfg.batch_size and min(sizes) >= 2
    blind = classification_accuracy_score(cfg, spec, PatternGAN(spec, prototypes, informative=False),
                                          val_x, val_y, torch.device("cpu"), 2, g)
    assert good >= 0.9
    assert blind <= 0.5


class HeadOnlyGAN(PatternGAN):
    """Class prototypes for the classes in `learnt`, class 0's prototype for every other class: a generator that
    never learnt the tail."""

    def __init__(self, spec, prototypes, learnt):
        super().__init__(spec, prototypes)
        self.learnt = torch.tensor(learnt)

    def sample(self, y, rng=None):
        shown = torch.where(torch.isin(y, self.learnt), y, torch.zeros_like(y))
        return super().sample(shown, rng)


def test_cas_report_by_shot_group_finds_a_generator_that_never_learnt_the_tail():
    # Training counts 100, 100, 10, 2: many (> 20) = classes 0 and 1, medium = class 2, few (< 4) = class 3.
    spec = make_spec(num_classes=4)
    spec.class_counts = (100, 100, 10, 2)
    prototypes = prototypes_for(spec)
    g = torch.Generator().manual_seed(3)
    to_uint8 = lambda x: ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # noqa: E731
    train_y = torch.cat([torch.full((n,), label) for label, n in enumerate(spec.class_counts)])
    train_x = to_uint8(prototypes[train_y] + 0.2 * torch.randn(len(train_y), 1, 8, 8, generator=g))
    val_y = torch.arange(80) % 4  # balanced, as long-tail validation is
    val_x = to_uint8(prototypes[val_y] + 0.2 * torch.randn(80, 1, 8, 8, generator=g))
    cfg = TrialConfig(classifier="mlp", classifier_width=0.25, classifier_lr=3e-3, batch_size=32)
    cpu = torch.device("cpu")
    gan = HeadOnlyGAN(spec, prototypes, learnt=[0, 1])

    torch.manual_seed(0)
    report = cas_report(cfg, spec, gan, train_x, train_y, val_x, val_y, cpu, 3,
                        rng=torch.Generator().manual_seed(1), real_rng=torch.Generator().manual_seed(2))
    assert len(report["cas_per_class"]) == len(report["real_per_class"]) == 4
    ours, real = report["cas_per_class"], report["real_per_class"]
    assert report["cas_many"] == pytest.approx((ours[0] + ours[1]) / 2)
    assert report["cas_medium"] == pytest.approx(ours[2]) and report["cas_few"] == pytest.approx(ours[3])
    assert report["cas_ratio_few"] == pytest.approx(ours[3] / real[3])
    assert report["cas_ratio_many"] == pytest.approx((ours[0] + ours[1]) / (real[0] + real[1]))
    # The head is taught (class 0 is also what every tail sample shows, so class 1 is the clean figure) ...
    assert ours[1] >= 0.9 and report["cas_ratio_many"] >= 0.5
    # ... the tail never: its samples show class 0, so no val image of classes 2 and 3 is classified right.
    assert report["cas_medium"] == 0.0 and report["cas_few"] == 0.0 and report["cas_ratio_few"] == 0.0
    # The whole figures are CAS and real_accuracy_score's, on the same seeds.
    torch.manual_seed(0)
    cas = classification_accuracy_score(cfg, spec, gan, val_x, val_y, cpu, 3, torch.Generator().manual_seed(1))
    real_acc = real_accuracy_score(cfg, spec, train_x, train_y, val_x, val_y, cpu, 3, torch.Generator().manual_seed(2))
    assert report["cas"] == pytest.approx(cas) and report["cas_ratio"] == pytest.approx(cas / real_acc)

    # Balanced data: every class is many-shot; the other groups are nan, not 0.
    balanced = make_spec(num_classes=4, per_class=20)
    report = cas_report(cfg, balanced, PatternGAN(balanced, prototypes), train_x, train_y, val_x, val_y, cpu, 1)
    assert report["cas_many"] == pytest.approx(report["cas"])  # balanced validation: the mean per class = accuracy
    assert math.isnan(report["cas_medium"]) and math.isnan(report["cas_ratio_few"])


def test_metrics_run_on_a_real_gan():
    spec = make_spec(num_classes=3, per_class=10)
    cfg = TrialConfig(gan="cgan", latent_dim=8, gan_width=0.125, classifier_width=0.125, batch_size=16)
    gan = GANTrainer(cfg, spec, torch.device("cpu"))
    model = FirstPixelClassifier(prototypes_for(spec))
    agreement = synthetic_agreement(model, gan, LABELERS["lsro"], 3, n=7)
    assert 0.0 <= agreement <= 1.0
    val_x, val_y = torch.randint(0, 256, (9, 1, 8, 8), dtype=torch.uint8), torch.arange(9) % 3
    cas = classification_accuracy_score(cfg, spec, gan, val_x, val_y, torch.device("cpu"), 1)
    assert 0.0 <= cas <= 1.0
    assert synthetic_diversity(gan, val_x, val_y, 3, per_class=4) >= 0.0


# ----------------------------------------------------------------------------------------------
# GAN quality: random features, diversity, Fréchet distance, and CAS against its real-data reference.


@pytest.fixture(scope="module")
def digits():
    return load_data({"name": "digits", "val_fraction": 0.2, "seed": 0})


class FixedImageGAN:
    """A generator that ignores z: one fixed image per class (its real class mean), plus `noise` x z."""

    def __init__(self, data, noise=0.0):
        images = data.train_x.float() / 127.5 - 1
        self.prototypes = torch.stack([images[data.train_y == k].mean(0) for k in range(data.spec.num_classes)])
        self.num_classes, self.device, self.noise = data.spec.num_classes, torch.device("cpu"), noise
        self.requests = []

    def sample(self, y, rng=None):
        self.requests.append(y.clone())
        z = torch.randn(len(y), *self.prototypes.shape[1:], generator=rng)
        return (self.prototypes[y] + self.noise * z).clamp(-1, 1)


class RealImageGAN:
    """A perfect generator: a random real train image of the conditioning class (drawn with replacement)."""

    def __init__(self, data):
        order = torch.argsort(data.train_y, stable=True)
        self.images = data.train_x[order].float() / 127.5 - 1
        self.counts = torch.bincount(data.train_y, minlength=data.spec.num_classes)
        self.starts = self.counts.cumsum(0) - self.counts
        self.num_classes, self.device = data.spec.num_classes, torch.device("cpu")

    def sample(self, y, rng=None):
        offset = (torch.rand(len(y), generator=rng) * self.counts[y]).long()
        return self.images[self.starts[y] + offset]


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64)])
def test_image_features_are_float32_fixed_and_independent_of_the_global_rng(shape):
    x = torch.randint(0, 256, (5, *shape), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    metrics._FEATURE_NETWORKS.clear()  # so the network is built inside the calls below
    torch.manual_seed(123)
    features = image_features(x)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after)  # building and running the network drew nothing from torch's RNG
    assert features.shape == (5, 448) and features.dtype == torch.float32 and torch.isfinite(features).all()
    metrics._FEATURE_NETWORKS.clear()
    torch.manual_seed(999)  # a different global seed builds the same network
    assert torch.equal(image_features(x), features)
    assert torch.allclose(image_features(x.float() / 127.5 - 1), features, atol=1e-5)  # uint8 == scaled float
    assert torch.allclose(image_features(x[:2]), features[:2], atol=1e-5)  # an image's features ignore its batch


def test_diversity_is_zero_for_a_generator_that_ignores_z(digits):
    gan = FixedImageGAN(digits)
    diversity = synthetic_diversity(gan, digits.train_x, digits.train_y, 10, per_class=20,
                                    rng=torch.Generator().manual_seed(0))
    assert diversity < 0.05
    assert torch.bincount(torch.cat(gan.requests), minlength=10).tolist() == [20] * 10
    assert len(gan.requests) == 1  # one class-mixed batch, as the classifier sees the generator's output


def test_diversity_of_real_against_real_is_about_one(digits):
    features, labels = image_features(digits.train_x), digits.train_y
    half = len(labels) // 2
    assert 0.85 <= feature_diversity(features[:half], labels[:half], features[half:], labels[half:], 10) <= 1.15
    assert 0.85 <= feature_diversity(features[half:], labels[half:], features[:half], labels[:half], 10) <= 1.15
    # Classes with fewer than two rows are skipped; with none left the diversity is undefined.
    assert math.isnan(feature_diversity(features[:1], labels[:1], features[:1], labels[:1], 10))


def test_diversity_is_lower_for_a_nearly_collapsed_generator_than_for_real_images(digits):
    g = torch.Generator().manual_seed(0)
    score = lambda gan: synthetic_diversity(gan, digits.train_x, digits.train_y, 10, per_class=40, rng=g)
    nearly_collapsed, real = score(FixedImageGAN(digits, noise=0.05)), score(RealImageGAN(digits))
    assert 0.85 <= real <= 1.15
    assert nearly_collapsed < 0.5 * real
    with pytest.raises(ValueError, match="per_class"):
        synthetic_diversity(RealImageGAN(digits), digits.train_x, digits.train_y, 10, per_class=1)


def diagonal_gaussian_set(mean, std):
    """4 points per axis pair whose mean and unbiased covariance are exactly `mean` and diag(std ** 2)."""
    mean, std = torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
    offsets = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    return mean + offsets * std * math.sqrt(1.5)  # unbiased variance per axis: 2 (1.5 s^2) / 3 = s^2


def test_frechet_distance_by_hand_symmetric_and_growing_with_a_shift():
    a = diagonal_gaussian_set([0.0, 0.0], [1.0, 2.0])
    b = diagonal_gaussian_set([3.0, -1.0], [2.0, 0.5])
    # Diagonal Gaussians: |mu_a - mu_b|^2 + sum (s_a - s_b)^2 = (9 + 1) + (1 + 2.25).
    assert frechet_distance(a, b) == pytest.approx(13.25, rel=1e-9)
    assert frechet_distance(b, a) == pytest.approx(13.25, rel=1e-9)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(400, 3, generator=g), torch.randn(400, 3, generator=g)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(x, y) == pytest.approx(frechet_distance(y, x), rel=1e-6)
    assert frechet_distance(x, y + 1.0) > 2.0 > 0.2 > frechet_distance(x, y)  # a shift of 1 per axis adds 3
    with pytest.raises(ValueError, match="features_a"):
        frechet_distance(x[:1], y)
    with pytest.raises(ValueError, match="features_b"):
        frechet_distance(x, y[:, :2])


def test_synthetic_frechet_distance_is_larger_for_a_collapsed_generator(digits, monkeypatch):
    # 16 features (4x4 average pool) instead of image_features' 448: scipy's sqrtm of a 448 x 448 matrix takes
    # seconds on a busy CPU, and the feature network has its own test above; this one checks the sampling,
    # the real subset and the standardisation around it.
    monkeypatch.setattr(metrics, "image_features", lambda x: F.avg_pool2d(metrics.as_float_images(x), 2).flatten(1))
    g = torch.Generator().manual_seed(0)
    collapsed = synthetic_frechet_distance(FixedImageGAN(digits), digits.train_x, 500, g)
    real = synthetic_frechet_distance(RealImageGAN(digits), digits.train_x, 500, g)
    assert 0 <= real < 0.2 * collapsed
    with pytest.raises(ValueError, match="n="):
        synthetic_frechet_distance(RealImageGAN(digits), digits.train_x, 1, g)
    with pytest.raises(ValueError, match="real_x"):
        synthetic_frechet_distance(RealImageGAN(digits), digits.train_x[:1], 10, g)


def test_cas_of_a_generator_that_returns_real_images_matches_real_accuracy(digits):
    cfg = TrialConfig(classifier="mlp", classifier_width=0.125, classifier_lr=3e-3, batch_size=64)
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    real = real_accuracy_score(cfg, digits.spec, digits.train_x, digits.train_y, digits.val_x, digits.val_y, cpu,
                               2, g)
    cas = classification_accuracy_score(cfg, digits.spec, RealImageGAN(digits), digits.val_x, digits.val_y, cpu,
                                        2, g)
    assert real > 0.5  # chance is 0.1
    assert abs(cas - real) < 0.1  # cas_ratio = CAS / real accuracy ~ 1: the samples are as useful as real data
