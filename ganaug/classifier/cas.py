"""The classification accuracy score (CAS, Ravuri & Vinyals 2019): a fresh classifier trained only on a generator's
samples, tested on real images, beside the same classifier trained on as many real images (cas_ratio); per class
and by shot group (cas_report), which says whether a generator teaches the rare classes of long-tailed data."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from ganaug.classifier.accuracy import group_accuracies, score
from ganaug.classifier.labeling import LABELERS
from ganaug.classifier.models import build_classifier
from ganaug.classifier.recipe import LearningRate, build_optimizer
from ganaug.data import as_float_images, sample_balanced


def classification_accuracy_score(cfg, spec, gan, val_x: torch.Tensor, val_y: torch.Tensor,
                                  device: torch.device, epochs: int,
                                  rng: torch.Generator | None = None) -> float:
    """CAS: accuracy on (val_x, val_y) of a fresh cfg.classifier trained only on GAN samples.

    Each batch is freshly sampled and class-balanced; the budget is _fresh_classifier_score's.
    Compare it with real_accuracy_score (cas_ratio = CAS / real accuracy, ~1 = as useful as real data).
    """
    return _synthetic_score(cfg, spec, gan, val_x, val_y, device, epochs, rng)["acc"]


def real_accuracy_score(cfg, spec, train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor,
                        val_y: torch.Tensor, device: torch.device, epochs: int,
                        rng: torch.Generator | None = None) -> float:
    """The reference for CAS: accuracy on (val_x, val_y) of a fresh cfg.classifier trained on real images
    (train_x, train_y) with exactly CAS's budget; only where each batch's images come from differs.

    Each epoch is a shuffled pass over the real images (repeated passes if spec.class_counts sums to more).
    """
    return _real_score(cfg, spec, train_x, train_y, val_x, val_y, device, epochs, rng)["acc"]


def cas_report(cfg, spec, gan, train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor,
               val_y: torch.Tensor, device: torch.device, epochs: int, rng: torch.Generator | None = None,
               real_rng: torch.Generator | None = None) -> dict:
    """CAS and its real reference (real_accuracy_score's, trained on (train_x, train_y)), whole and by class.

    Returns the scalars "cas", "cas_ratio" and, for each shot group of spec.class_counts (accuracy.shot_groups:
    many / medium / few), "cas_<group>" (the group's mean per-class CAS) and "cas_ratio_<group>" (over the real
    reference's mean on the same classes; nan for a group without classes), plus the lists "cas_per_class" and
    "real_per_class". On long-tailed data CAS trains on class-balanced samples and the reference on the tail as it
    is, so cas_ratio_few > 1 means the generator teaches a rare class more than its few real images do.
    """
    synthetic = _synthetic_score(cfg, spec, gan, val_x, val_y, device, epochs, rng)
    real = _real_score(cfg, spec, train_x, train_y, val_x, val_y, device, epochs, real_rng)
    report: dict = {"cas": synthetic["acc"], "cas_ratio": synthetic["acc"] / max(real["acc"], 1e-8)}
    theirs = group_accuracies(real["per_class"], spec.class_counts)
    for name, ours in group_accuracies(synthetic["per_class"], spec.class_counts).items():
        report[f"cas_{name}"] = ours
        report[f"cas_ratio_{name}"] = ours / max(theirs[name], 1e-8) if not math.isnan(ours) else math.nan
    return {**report, "cas_per_class": synthetic["per_class"], "real_per_class": real["per_class"]}


def _synthetic_score(cfg, spec, gan, val_x, val_y, device, epochs, rng) -> dict:
    """score() on (val_x, val_y) of a fresh classifier trained on freshly sampled, class-balanced GAN batches."""
    epoch_batches = lambda sizes: (sample_balanced(gan, size, rng) for size in sizes)
    return _fresh_classifier_score(cfg, spec, val_x, val_y, device, epochs, epoch_batches, synthetic=True)


def _real_score(cfg, spec, train_x, train_y, val_x, val_y, device, epochs, rng) -> dict:
    """score() on (val_x, val_y) of the same classifier trained on shuffled passes over the real images."""
    if len(train_x) == 0:
        raise ValueError("real_accuracy_score: train_x holds no images; valid: at least one")

    def epoch_batches(sizes: list[int]) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        rows = _shuffled_rows(len(train_x), sum(sizes), rng).to(train_x.device)
        return ((train_x[part], train_y[part]) for part in rows.split(sizes))

    return _fresh_classifier_score(cfg, spec, val_x, val_y, device, epochs, epoch_batches, synthetic=False)


def _fresh_classifier_score(
    cfg,                                # TrialConfig: classifier (+ _width, _kwargs, _dropout), its recipe, batch_size.
    spec,                               # DataSpec: shapes, and class_counts (their sum = images per epoch).
    val_x: torch.Tensor,                # Real images the classifier is scored on, uint8 or float [-1, 1].
    val_y: torch.Tensor,
    device: torch.device,
    epochs: int,
    epoch_batches: Callable[[list[int]], Iterable[tuple[torch.Tensor, torch.Tensor]]],  # sizes -> (x, y) batches.
    synthetic: bool,                    # Whether the batches are GAN samples (labelled by their conditioning).
) -> dict:
    """score() (acc, per_class, ...) on (val_x, val_y) of a fresh cfg.classifier trained for `epochs` epochs on
    epoch_batches.

    Each epoch shows as many images as the real train split holds (sum(spec.class_counts)), in batches of
    about cfg.batch_size, with pseudo labels and the trial's recipe (its optimizer, its learning-rate schedule over
    these epochs, its label smoothing and dropout; no mixing). Batches are split evenly (never a
    batch of one, which BatchNorm cannot train on). Pseudo labels make synthetic and real rows both plain
    cross-entropy on their (conditioning) class, so the two sources are trained identically.
    """
    num_classes = spec.num_classes
    labeler = LABELERS["pseudo"]
    model = build_classifier(cfg.classifier, spec, labeler.num_outputs(num_classes), cfg.classifier_width,
                             kwargs=cfg.classifier_kwargs, dropout=cfg.classifier_dropout)
    model = model.to(device)
    sizes = _even_batch_sizes(sum(spec.class_counts), cfg.batch_size)
    optimizer = build_optimizer(cfg, model.parameters())
    learning_rate = LearningRate(optimizer, cfg, len(sizes), epochs=epochs)
    step = 0
    for _ in range(epochs):
        for x, y in epoch_batches(sizes):
            x, y = as_float_images(x.to(device)), y.to(device)
            loss = labeler.loss(model(x), y, synthetic=torch.full_like(y, synthetic, dtype=torch.bool),
                                label_smoothing=cfg.label_smoothing)
            learning_rate.set(step)
            step += 1
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return score(model, val_x, val_y, labeler, num_classes)


def _even_batch_sizes(total: int, batch_size: int) -> list[int]:
    """Sizes of about batch_size summing to total, differing by at most one."""
    num_batches = max(1, math.ceil(total / batch_size))
    small, extra = divmod(total, num_batches)
    return [small + 1] * extra + [small] * (num_batches - extra)


def _shuffled_rows(available: int, count: int, rng: torch.Generator | None) -> torch.Tensor:
    """count row indices from shuffled passes over `available` rows, so every row is seen equally often."""
    device = rng.device if rng is not None else torch.device("cpu")
    passes = [torch.randperm(available, generator=rng, device=device) for _ in range(-(-count // available))]
    return torch.cat(passes)[:count]
