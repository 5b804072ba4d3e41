"""The synthetic rows of a classifier batch: how many (synthetic_ratio, its schedule, the warm-up), their conditioning
labels (synthetic_spread: class-balanced, or minority classes first on imbalanced data), the source's images (with
filter_candidates, the best-scored of k candidates per image) and distill's soft targets."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from ganaug.classifier import Teacher, distill_target, keep_best_candidates
from ganaug.config import TrialConfig, registry
from ganaug.trial.runtime import Runtime


class SyntheticBatch(NamedTuple):
    """Synthetic rows for one classifier batch: images in [-1, 1], their conditioning labels, distill's soft targets
    (None for the other labelings) and, with filtering, the scorer's summed confidence in the kept images."""

    x: torch.Tensor
    y: torch.Tensor
    soft: torch.Tensor | None
    kept_score: torch.Tensor | None


class SyntheticImages:
    """Draws the synthetic rows of each classifier batch from a trial's source (trial.sources: its GAN, a pool, a
    folder, the real pool, the user's generator), scored for filtering by the teacher when there is one, else by the
    source itself (a GAN's auxiliary class head, or a pool's scores computed once).

    An unlabelled source (a flat folder) has no classes to spread over: its rows are drawn uniformly from it, carry
    label -1 and get their targets from the labeling (pseudo: the classifier's own prediction, lsro: uniform, distill:
    the teacher's soft label alone, all_in_one: the extra class); filtering keeps the candidates the teacher is most
    confident about, in any class."""

    def __init__(self, cfg: TrialConfig, source, teacher: Teacher | None, class_counts: tuple[int, ...],
                 runtime: Runtime):
        self.cfg, self.source, self.teacher, self.runtime = cfg, source, teacher, runtime
        self.num_classes = len(class_counts)
        weights = synthetic_class_weights(class_counts, runtime.device, cfg.synthetic_spread)
        # A pool without images of some class (the real pool of a long tail's head) is never asked for that class.
        present = getattr(source, "present", None)
        self.weights = weights if present is None else weights * present / (weights * present).sum()

    def count(self, epoch: int, real_rows: int) -> int:
        """Synthetic rows beside `real_rows` real ones in classifier epoch `epoch`: none before gan_warmup_epochs,
        then round(ratio x real_rows) with the ratio of synthetic_schedule."""
        if self.source is None or epoch <= self.cfg.gan_warmup_epochs:
            return 0
        ratio = self.cfg.synthetic_ratio * synthetic_share(self.cfg.synthetic_schedule, epoch, self.cfg.epochs)
        return round(ratio * real_rows)

    def draw(self, n: int) -> SyntheticBatch:
        """n synthetic rows: their labels follow the class weights exactly (synthetic_labels); with
        filter_candidates k > 1, k candidates per row and, class by class, the best-scored kept (same size and class
        counts)."""
        cfg, source, teacher, rng = self.cfg, self.source, self.teacher, self.runtime.rng
        labelled = source.labelled
        y = synthetic_labels(n, self.weights, rng) if labelled else \
            torch.full((n,), -1, dtype=torch.long, device=self.runtime.device)
        kept_score = None
        if cfg.filter_candidates > 1:
            candidates_y = y.repeat(cfg.filter_candidates)
            if teacher is not None:
                candidates = source.sample(candidates_y, rng)
                with self.runtime.autocast():
                    probabilities = teacher.probabilities(candidates)
                scores = probabilities.gather(1, candidates_y[:, None]).squeeze(1) if labelled else \
                    probabilities[:, :self.num_classes].max(1).values
            else:
                candidates, scores = source.scored(candidates_y, rng, self.runtime.autocast)
            keep = keep_best_candidates(scores.float(), candidates_y, y, self.num_classes) if labelled else \
                scores.float().topk(n).indices
            x, y = candidates[keep], candidates_y[keep]
            kept_score = scores[keep].float().sum()
        else:
            x = source.sample(y, rng)
        soft = None
        if cfg.labeling == "distill":
            assert teacher is not None, "labeling distill needs teacher_ema > 0 (TrialConfig.validate)"
            with self.runtime.autocast():
                teacher_logits = teacher.model(x)
            # An unlabelled row has no conditioning class to mix in: the teacher's label alone.
            soft = distill_target(teacher_logits, y.clamp(min=0), cfg.distill_weight if labelled else 1.0,
                                  cfg.distill_temperature)
        return SyntheticBatch(x, y, soft, kept_score)


def synthetic_share(schedule: str, epoch: int, epochs: int) -> float:
    """The share of synthetic_ratio used in `epoch` of `epochs` (synthetic_schedule, SYNTHETIC_SCHEDULES): 1 in the
    first half of training in every schedule; after it, constant 1, anneal linearly down to 0 at the last epoch (the
    classifier ends on real data), front 0 (first GAN images, then real ones)."""
    half = epochs // 2
    return 1.0 if epoch <= half else SYNTHETIC_SCHEDULES[schedule](epoch, epochs, half)


def synthetic_class_weights(class_counts, device, spread: str = "minority") -> torch.Tensor:
    """The conditioning weights of synthetic_spread (SYNTHETIC_SPREADS) for the training counts, summing to 1;
    uniform for balanced data in every spread."""
    counts = torch.tensor(class_counts, dtype=torch.float64, device=device).clamp(min=1)
    weights = SYNTHETIC_SPREADS[spread](counts)
    return weights / weights.sum()


def _balance(counts: torch.Tensor) -> torch.Tensor:
    gap = counts.max() - counts
    return gap if gap.sum() > 0 else torch.ones_like(counts)  # all counts equal: every class alike


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


# ----------------------------------------------------------------------------------------------
# Registries. synthetic_schedule: (epoch, epochs, half) -> the share of synthetic_ratio in an epoch of the second half.
SYNTHETIC_SCHEDULES: dict[str, Callable[[int, int, int], float]] = registry("synthetic_schedule", {
    "constant": lambda epoch, epochs, half: 1.0,
    "anneal": lambda epoch, epochs, half: (epochs - epoch) / (epochs - half),
    "front": lambda epoch, epochs, half: 0.0,
})
# synthetic_spread: training counts n_c (at least 1) -> unnormalised conditioning weights.
SYNTHETIC_SPREADS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = registry("synthetic_spread", {
    "minority": lambda counts: counts.max() / counts,  # inverse frequency: minority classes first
    "balance": _balance,  # n_max - n_c: each class topped up toward the head's count, which gets none (SYNAuG, 2023)
    "uniform": torch.ones_like,
})
