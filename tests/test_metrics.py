"""Metrics: hand-checkable accuracy / top-k / per-class examples, predict over the K real classes,
synthetic agreement and the classification accuracy score (train on synthetic, test on real)."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from ganaug.config import TrialConfig
from ganaug.gans import GAN
from ganaug.labeling import LABELERS
from ganaug.metrics import (
    accuracy,
    classification_accuracy_score,
    evaluate,
    per_class_accuracy,
    predict,
    synthetic_agreement,
    topk_accuracy,
)

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


def test_evaluate_reports_accuracy_top5_loss_and_per_class():
    model = Scripted(LOGITS)
    x = torch.arange(4, dtype=torch.uint8).view(4, 1, 1, 1)
    result = evaluate(model, x, Y, LABELERS["pseudo"], 3)
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

    def sample(self, y, generator=None):
        self.requests.append(y.clone())
        noise = self.noise * torch.randn(len(y), *self.prototypes.shape[1:], generator=generator)
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
                               generator=g) == pytest.approx(1.0)
    assert torch.bincount(gan.requests[-1], minlength=3).tolist() == [10, 10, 10]  # class-balanced
    constant = Scripted(torch.tensor([[1.0, 0.0, 0.0]]).expand(256, 3))  # always class 0
    gan = PatternGAN(spec, prototypes)
    gan.sample = lambda y, generator=None: torch.full((len(y), 1, 8, 8), -1.0)  # index 0 -> class 0
    assert synthetic_agreement(constant, gan, LABELERS["pseudo"], 3, n=30, generator=g) == pytest.approx(1 / 3)


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


def test_metrics_run_on_a_real_gan():
    spec = make_spec(num_classes=3, per_class=10)
    cfg = TrialConfig(gan="cgan", latent_dim=8, gan_width=0.125, classifier_width=0.125, batch_size=16)
    gan = GAN(cfg, spec, torch.device("cpu"))
    model = FirstPixelClassifier(prototypes_for(spec))
    agreement = synthetic_agreement(model, gan, LABELERS["lsro"], 3, n=7)
    assert 0.0 <= agreement <= 1.0
    val_x, val_y = torch.randint(0, 256, (9, 1, 8, 8), dtype=torch.uint8), torch.arange(9) % 3
    cas = classification_accuracy_score(cfg, spec, gan, val_x, val_y, torch.device("cpu"), 1)
    assert 0.0 <= cas <= 1.0
