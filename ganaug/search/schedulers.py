"""ASHA as a search uses it: Ray's ASHAScheduler (or, in a deterministic search, search.ordered.OrderedASHA), except
that the no-GAN baselines the search runs first (SearchSpec.baseline_points) are never stopped at a rung when
scheduler.full_baselines is on (the default).

Why: the headline compares the best GAN policy with the best no-GAN policy the search tuned, so each baseline must be
trained as long as the policy it is compared with. ASHA's rung at a third of the epochs ranks policies by how fast
they start, and heavier augmentation starts slow: in both long-tail searches of docs/long-tail.md TrivialAugment was
stopped at epoch 10 of 30 and then tied or beat the others when trained to the end; docs/searcher.md has the
measurement on the long-tail space (every baseline to the end, ASHA's decisions replayed on their curves).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

__all__ = ["FullBaselinesASHA", "is_baseline"]


def is_baseline(params: dict[str, Any], baselines: Collection[dict[str, Any]]) -> bool:
    """Whether a trial's params are one of the baseline points (the same keys, the same values)."""
    return any(params.keys() == point.keys() and all(_same(params[key], point[key]) for key in point)
               for point in baselines)


def _same(a: Any, b: Any) -> bool:
    """Equal, with numbers compared as numbers (an enqueued 0 comes back from Optuna as 0 or 0.0)."""
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return a == b


class FullBaselinesASHA(ASHAScheduler):
    """Ray's ASHA, except that a baseline (is_baseline) is never stopped before its last epoch: its value still counts
    at each rung it reaches, against the trials after it."""

    def __init__(self, *, baselines: Collection[dict] = (), **kwargs: Any):
        super().__init__(**kwargs)
        self.baselines = list(baselines)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP and result.get(self._time_attr, 0) < self._max_t and \
                is_baseline(trial.config, self.baselines):
            self._num_stopped -= 1  # Ray counted it as stopped
            return TrialScheduler.CONTINUE
        return decision
