"""Labeling methods for synthetic images: classifier targets and loss for mixed real + synthetic batches.

Real rows always get their true class. Synthetic rows get, by method:
  pseudo      the class the generator was conditioned on;
  lsro        the uniform distribution over the K classes (LSRO, Zheng et al. 2017, eq. 6 with Z = 1);
  all_in_one  an extra class K (the classifier has K + 1 outputs; the extra one is ignored at evaluation);
  distill     a teacher's soft label mixed with the conditioning class (Gowal et al. 2021, He et al. 2023):
              distill_weight x softmax(teacher(x) / distill_temperature) + (1 - distill_weight) x one-hot(y),
              computed by the trial (trial.synthetic, with distill_target) and passed in as `soft`.
Every method is one soft-target cross-entropy, so they differ only by the synthetic rows' target.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ganaug.config import ConfigError, registry

SYNTHETIC_TARGETS = ("conditioning", "uniform", "extra_class", "teacher")


@dataclass(frozen=True)
class Labeler:
    """Targets and loss of one labeling method; `synthetic_target` is one of SYNTHETIC_TARGETS."""

    name: str
    synthetic_target: str

    def __post_init__(self):
        if self.synthetic_target not in SYNTHETIC_TARGETS:
            raise ValueError(f"Labeler {self.name!r}: synthetic_target={self.synthetic_target!r}; "
                             f"valid: {', '.join(SYNTHETIC_TARGETS)}")

    def num_outputs(self, num_classes: int) -> int:
        """Classifier outputs: K, or K + 1 when synthetic images form their own class."""
        return num_classes + (self.synthetic_target == "extra_class")

    def targets(self, y: torch.Tensor, synthetic: torch.Tensor, num_outputs: int,
                soft: torch.Tensor | None = None) -> torch.Tensor:
        """Target distribution [B, num_outputs]: one-hot of y for real rows, the method's target otherwise.

        soft: [B, num_outputs] target rows for the synthetic rows of the `teacher` method (distill_target).
        """
        if self.synthetic_target == "extra_class":
            y = torch.where(synthetic, num_outputs - 1, y)
        target = F.one_hot(y, num_outputs).to(torch.float32)
        if self.synthetic_target == "uniform":
            uniform = torch.full_like(target, 1.0 / num_outputs)
            target = torch.where(synthetic.unsqueeze(1), uniform, target)
        if self.synthetic_target == "teacher":
            if soft is None:
                raise ValueError(f"labeling={self.name!r}: the synthetic rows' soft targets are missing")
            target = torch.where(synthetic.unsqueeze(1), soft.to(torch.float32), target)
        return target

    def loss(self, logits: torch.Tensor, y: torch.Tensor, synthetic: torch.Tensor,
             soft: torch.Tensor | None = None, label_smoothing: float = 0.0) -> torch.Tensor:
        """Mean cross-entropy between softmax(logits) and the targets, smoothed by `label_smoothing` s:
        (1 - s) x target + s / num_outputs, as F.cross_entropy(label_smoothing=s).

        logits: [B, num_outputs]; y: int64 [B], the true class for real rows and the conditioning
        class for synthetic rows; synthetic: bool [B]; soft: see targets (distill only).
        For lsro this is, per row, -(1 - Z) log p(y) - Z / K sum_k log p(k) with Z = synthetic.
        """
        target = self.targets(y, synthetic.to(torch.bool), logits.shape[1], soft)
        return F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing)

    def predict_logits(self, logits: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Logits over the K real classes only (all_in_one's extra class is never predicted)."""
        return logits[:, :num_classes]


def distill_target(teacher_logits: torch.Tensor, y: torch.Tensor, weight: float,
                   temperature: float) -> torch.Tensor:
    """The distill label of synthetic rows: weight x softmax(teacher_logits / T) + (1 - weight) x one-hot(y)."""
    soft = torch.softmax(teacher_logits.float() / temperature, dim=1)
    return weight * soft + (1 - weight) * F.one_hot(y, teacher_logits.shape[1]).to(torch.float32)


class Teacher:
    """An exponential moving average of the classifier (teacher_ema; Mean Teacher, Tarvainen & Valpola 2017),
    always in eval mode: it scores candidates (filter_candidates) and gives soft labels (labeling: distill)."""

    def __init__(self, model: nn.Module, decay: float):
        self.model = copy.deepcopy(model).requires_grad_(False).eval()
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards the classifier's weights; BatchNorm running statistics are copied."""
        self.updates += 1
        # Early on a plain EMA would stay near the random initialisation for ~1/(1-decay) steps: warm the decay
        # up as TensorFlow's ExponentialMovingAverage(num_updates) does.
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(list(self.model.parameters()), list(model.parameters()), 1 - decay)
        for mine, theirs in zip(self.model.buffers(), model.buffers()):
            mine.copy_(theirs)

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        return torch.softmax(self.model(x).float() / temperature, dim=1)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])


def keep_best_candidates(scores: torch.Tensor, candidate_y: torch.Tensor, wanted_y: torch.Tensor,
                         num_classes: int) -> torch.Tensor:
    """Indices into the candidates: for every class c, the top-n_c scored candidates of class c, where n_c is
    how often c occurs in wanted_y. The candidates hold k x n_c of each class (wanted_y repeated k times), so
    the kept set has wanted_y's size and class counts exactly. Sorted by class; no loop over classes."""
    by_score = torch.argsort(scores, descending=True, stable=True)
    order = by_score[torch.argsort(candidate_y[by_score], stable=True)]  # by class, best first within a class
    wanted = torch.bincount(wanted_y, minlength=num_classes)
    offered = torch.bincount(candidate_y, minlength=num_classes)
    first = torch.cumsum(offered, 0) - offered  # where each class starts in `order`
    sorted_y = candidate_y[order]
    rank = torch.arange(len(order), device=order.device) - first[sorted_y]
    return order[rank < wanted[sorted_y]]


def get_labeler(name: str) -> Labeler:
    if name not in LABELERS:
        raise ConfigError(f"labeling={name!r} is not one of {', '.join(LABELERS)}")
    return LABELERS[name]


LABELERS = registry("labeling", {
    "pseudo": Labeler("pseudo", "conditioning"),
    "lsro": Labeler("lsro", "uniform"),
    "all_in_one": Labeler("all_in_one", "extra_class"),
    "distill": Labeler("distill", "teacher"),
})
