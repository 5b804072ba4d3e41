"""The synthetic rows of a classifier batch: how many (synthetic_ratio, its schedule, the warm-up), their conditioning
labels (synthetic_spread: class-balanced, or minority classes first on imbalanced data), the generator's images (with
filter_candidates, the best-scored of k candidates per image) and distill's soft targets."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from ganaug.classifier import Teacher, distill_target, keep_best_candidates
from ganaug.config import TrialConfig


class SyntheticBatch(NamedTuple):
    """Synthetic rows for one classifier batch: images in [-1, 1], their conditioning labels, distill's soft targets
    (None for the other labelings) and, with filtering, the scorer's summed confidence in the kept images."""

    x: torch.Tensor
    y: torch.Tensor
    soft: torch.Tensor | None
    kept_score: torch.Tensor | None


class SyntheticImages:
    """Draws the synthetic rows of each classifier batch from a trial's GAN (`draw`), scored by its teacher when it has
    one, else by the GAN's auxiliary class head."""

    def __init__(self, cfg: TrialConfig, gan, teacher: Teacher | None, class_counts: tuple[int, ...],
                 rng: torch.Generator, autocast: Callable):
        self.cfg, self.gan, self.teacher = cfg, gan, teacher
        self.generator, self.autocast = rng, autocast
        self.num_classes = len(class_counts)
        self.weights = synthetic_class_weights(class_counts, rng.device, cfg.synthetic_spread)

    def count(self, epoch: int, real_rows: int) -> int:
        """Synthetic rows beside `real_rows` real ones in classifier epoch `epoch`: none before gan_warmup_epochs,
        then round(ratio x real_rows) with the ratio of synthetic_schedule."""
        if self.gan is None or epoch <= self.cfg.gan_warmup_epochs:
            return 0
        ratio = self.cfg.synthetic_ratio * synthetic_share(self.cfg.synthetic_schedule, epoch, self.cfg.epochs)
        return round(ratio * real_rows)

    def draw(self, n: int) -> SyntheticBatch:
        """n synthetic rows: their labels follow the class weights exactly (synthetic_labels); with
        filter_candidates k > 1, k candidates per row and, class by class, the best-scored kept (same size and class
        counts)."""
        cfg, gan, teacher, rng = self.cfg, self.gan, self.teacher, self.generator
        y = synthetic_labels(n, self.weights, rng)
        kept_score = None
        if cfg.filter_candidates > 1:
            candidates_y = y.repeat(cfg.filter_candidates)
            candidates = gan.sample(candidates_y, rng)
            with self.autocast():
                scores = (teacher.probabilities(candidates).gather(1, candidates_y[:, None]).squeeze(1)
                          if teacher is not None else gan.class_scores(candidates, candidates_y))
            keep = keep_best_candidates(scores.float(), candidates_y, y, self.num_classes)
            x, y = candidates[keep], candidates_y[keep]
            kept_score = scores[keep].float().sum()
        else:
            x = gan.sample(y, rng)
        soft = None
        if cfg.labeling == "distill":
            assert teacher is not None, "labeling distill needs teacher_ema > 0 (TrialConfig.validate)"
            with self.autocast():
                teacher_logits = teacher.model(x)
            soft = distill_target(teacher_logits, y, cfg.distill_weight, cfg.distill_temperature)
        return SyntheticBatch(x, y, soft, kept_score)


def synthetic_share(schedule: str, epoch: int, epochs: int) -> float:
    """The share of synthetic_ratio used in `epoch` of `epochs` (synthetic_schedule).

    constant: 1 throughout; front: 1 in the first half, 0 after (first GAN images, then real ones); anneal:
    1 in the first half, then linearly down to 0 at the last epoch (the classifier ends on real data).
    """
    half = epochs // 2
    if schedule == "constant" or epoch <= half:
        return 1.0
    if schedule == "front":
        return 0.0
    return (epochs - epoch) / (epochs - half)


def synthetic_class_weights(class_counts, device, spread: str = "minority") -> torch.Tensor:
    """Conditioning weights (synthetic_spread), uniform for balanced data in every spread: minority, weights
    n_max / n_c (inverse frequency, minority classes first); balance, weights n_max - n_c (SYNAuG, Ye-Bin et al.
    2023: each class topped up toward the head's count, which gets none; uniform when all counts are equal);
    uniform."""
    counts = torch.tensor(class_counts, dtype=torch.float64, device=device).clamp(min=1)
    if spread == "uniform":
        weights = torch.ones_like(counts)
    elif spread == "balance":
        gap = counts.max() - counts
        weights = gap if gap.sum() > 0 else torch.ones_like(counts)
    else:
        weights = counts.max() / counts
    return weights / weights.sum()


def synthetic_labels(n: int, weights: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """n class labels whose counts follow `weights` as closely as integers allow, in random order.

    Exact quotas (not i.i.d. draws) keep every classifier batch class-balanced; the remainder goes to
    the classes with the largest weights first, i.e. the minority classes of an imbalanced dataset.
    """
    quotas = weights * n
    counts = quotas.floor().long()
    # Everything stays on the device (no int(...) of a device tensor): this runs every step, and a host
    # sync per step would stall a GPU. The remainder goes to the top-`remainder` fractional parts.
    remainder = n - counts.sum()
    # Break ties randomly so no class is always first among equals.
    jitter = torch.rand(len(weights), generator=rng, device=weights.device, dtype=weights.dtype) * 1e-6
    rank = torch.argsort(torch.argsort(quotas - counts + jitter, descending=True))
    counts = counts + (rank < remainder).long()
    labels = torch.repeat_interleave(torch.arange(len(weights), device=weights.device), counts, output_size=n)
    return labels[torch.randperm(n, generator=rng, device=weights.device)]
