"""What one pass of a trial reports (DESIGN.md's names): the classifier on validation (the objective) and on the
training batches it saw, the GAN's losses, the generator's quality and its agreement with the classifier, and
after the last epoch the test split (reported, never optimised) and the classification accuracy score."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ganaug.classifier import (
    LABELERS,
    cas_report,
    group_accuracies,
    score,
    synthetic_agreement,
)
from ganaug.config import TrialConfig, adds_synthetic
from ganaug.data import ImageData
from ganaug.gan import SampleQuality
from ganaug.trial.runtime import Runtime
from ganaug.trial.state import TrialState


class PassMetrics:
    """The metrics of a trial's passes, for one classifier and teacher, and the sources of its synthetic images (its
    GAN while it pretrains, then whatever source its classifier draws from; none for the no-GAN baseline)."""

    def __init__(self, cfg: TrialConfig, data: ImageData, state: TrialState, runtime: Runtime):
        self.cfg, self.data, self.runtime = cfg, data, runtime
        self.classifier, self.teacher, self.gan = state.classifier, state.teacher, state.gan
        self.labeler, self.num_classes = LABELERS[cfg.labeling], data.spec.num_classes
        self.device = data.train_y.device
        # Generator quality against a fixed real reference (~1,000 images at most, so it stays a small share of an
        # epoch); its own noise seed, so measuring never changes what the trial draws and epochs compare.
        self.quality = SampleQuality(data.train_x, data.train_y, self.num_classes,
                                     per_class=max(8, min(64, 1000 // self.num_classes))) \
            if adds_synthetic(cfg) else None
        self._unchanging: dict[str, float] | None = None  # the figures of a source that does not change

    def untrained(self) -> dict[str, float]:
        """The untrained classifier's scores, which every GAN pretraining pass repeats (it does not change then, and
        Tune needs the objective in every result): on the first training images, not a random draw, so that no RNG
        is used and a run resumed mid-pretraining measures the same."""
        data = self.data
        val = self._score(self.classifier, data.val_x, data.val_y)
        train = self._score(self.classifier, data.train_x[:1024], data.train_y[:1024])
        return {"val_acc": val["acc"], "val_balanced_acc": val["balanced"], "val_top5": val["top5"],
                "val_loss": val["loss"], "train_acc": train["acc"]}

    def classifier_epoch(self, totals: dict[str, float], batches: int, timing: dict[str, float]) -> dict[str, float]:
        """A classifier epoch's scores: validation once (the search objective: val_acc, or on long-tailed data
        val_balanced_acc, the mean per-class accuracy), the training batches' accuracy and
        loss, then `timing` (the pass's seconds and phase), the teacher's validation accuracy (beside the objective,
        never instead of it) and filter_candidates' mean confidence in the kept samples' conditioning classes."""
        val = self._score(self.classifier, self.data.val_x, self.data.val_y)
        metrics = {"val_acc": val["acc"], "val_balanced_acc": val["balanced"], "val_top5": val["top5"],
                   "val_loss": val["loss"],
                   "train_acc": totals["correct"] / max(totals["seen"], 1),
                   "train_loss": totals["loss"] / max(batches, 1), **timing}
        if self.teacher is not None:
            metrics["val_acc_teacher"] = self._score(self.teacher.model, self.data.val_x, self.data.val_y)["acc"]
        if totals["kept"] > 0:
            metrics["filter_confidence"] = totals["kept_score"] / totals["kept"]
        return metrics

    def sample_quality(self, source, pretraining: bool = False, changing: bool = True) -> dict[str, float]:
        """The source's share of a pass's metrics: how often the classifier assigns fresh samples to their
        conditioning class (classifier epochs), diversity and Frechet distance (collapse shows here, not in the
        objective: synthetic_diversity ~0 = one image per class), and a GAN family's own figures (ali's
        reconstruction error, conditions' condition_error), which draw no training randomness. A source that is not
        `changing` (a frozen GAN, a pool, a folder, the real pool, the user's generator) is measured once and its
        figures repeated; an unlabelled one (a flat folder) has classes for neither agreement nor diversity."""
        if source is None or self.quality is None:  # the no-GAN baseline
            return {}
        metrics = {}
        if not pretraining and source.labelled:
            metrics["synthetic_agreement"] = synthetic_agreement(
                self.classifier, source, self.labeler, self.num_classes, n=min(1000, 50 * self.num_classes),
                rng=self.runtime.rng)
        if changing or self._unchanging is None:
            figures = self.quality(source, torch.Generator(self.device).manual_seed(self.cfg.seed + 54321))
            if not source.labelled:
                figures.pop("synthetic_diversity")
            if source is self.gan:
                figures.update(self.gan.epoch_metrics())
            if not changing:
                self._unchanging = figures
        else:
            figures = self._unchanging
        metrics.update(figures)
        return metrics

    def final(self, source) -> tuple[dict[str, float], dict[str, Any]]:
        """After the last epoch: (test_acc, test_top5, test_balanced_acc (mean per-class accuracy) and the
        many / medium / few-shot groups' (test_many_acc, ...: classes by their training count, accuracy.shot_groups;
        nan for a group without classes), plus the source's cas_report (cas, cas_ratio and their shot groups'); the test
        loss and the per-class accuracies (test, CAS, its real reference), which run returns but does not report).
        The test runs in fp32 whatever cfg.precision: the score of the final classifier itself, as evaluate reports
        it."""
        cfg, data = self.cfg, self.data
        test = score(self.classifier, data.test_x, data.test_y, self.labeler, self.num_classes)
        groups = group_accuracies(test["per_class"], data.spec.class_counts)
        metrics = {"test_acc": test["acc"], "test_top5": test["top5"], "test_balanced_acc": test["balanced"],
                   **{f"test_{name}_acc": value for name, value in groups.items()}}
        extras = {"test_loss": test["loss"], "test_per_class_acc": test["per_class"]}
        if source is not None and source.labelled and cfg.cas_epochs > 0:
            # Beside the same classifier and budget on real images: cas_ratio 1 = samples teach as much as real data;
            # by shot group, whether they teach the rare classes (cas_ratio_few > 1: more than their real images).
            cas = cas_report(cfg, data.spec, source, data.train_x, data.train_y, data.val_x, data.val_y,
                             self.device, cfg.cas_epochs, rng=self.runtime.rng,
                             real_rng=torch.Generator(self.device).manual_seed(cfg.seed))
            extras.update(cas_per_class=cas.pop("cas_per_class"), real_per_class=cas.pop("real_per_class"))
            metrics.update(cas)
        return metrics, extras

    def _score(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        return score(model, x, y, self.labeler, self.num_classes, autocast=self.runtime.autocast)


class Diverged(Exception):
    """A pass's losses were not finite: the trial ends at once with `metrics` (diverged's) as its last report."""

    def __init__(self, metrics: dict[str, float]):
        super().__init__(f"losses not finite at epoch {metrics['epoch']}")
        self.metrics = metrics


def diverged(epoch: int, phase: dict[str, float], seconds: float, images: int) -> dict[str, float]:
    """The metrics of a pass whose losses were not finite: the objective at its worst value, `diverged` set."""
    return {"epoch": epoch, **phase, "val_acc": 0.0, "val_balanced_acc": 0.0, "val_top5": 0.0,
            "val_loss": float("inf"), "train_acc": 0.0, "diverged": 1, "epoch_seconds": seconds,
            "images_per_second": images / seconds}


def finite(totals: dict[str, float]) -> bool:
    return all(math.isfinite(value) for value in totals.values())


def timing(seconds: float, images: int) -> dict[str, float]:
    """A pass's wall time and throughput over the `images` of its split, and `diverged` 0: every finite pass's."""
    return {"epoch_seconds": seconds, "images_per_second": images / seconds, "diverged": 0}


def gan_losses(totals: dict[str, float], keys: tuple[str, ...], updates: int) -> dict[str, float]:
    """The GAN's losses of a pass (`keys`: those its train_step returns), averaged over its `updates`."""
    return {key: totals[key] / max(updates, 1) for key in keys}
