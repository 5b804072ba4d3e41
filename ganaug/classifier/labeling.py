"""Labeling methods for synthetic images: classifier targets and loss for mixed real + synthetic batches.

Real rows always get their true class. Synthetic rows get, by method:
  pseudo      the class the generator was conditioned on;
  lsro        the uniform distribution over the K classes (LSRO, Zheng et al. 2017, eq. 6 with Z = 1);
  all_in_one  an extra class K (the classifier has K + 1 outputs; the extra one is ignored at evaluation);
  distill     a teacher's soft label mixed with the conditioning class (Gowal et al. 2021, He et al. 2023):
              distill_weight x softmax(teacher(x) / distill_temperature) + (1 - distill_weight) x one-hot(y),
              computed by the trial (trial.synthetic, with distill_target) and passed in as `soft`.
Every method is one soft-target cross-entropy, so they differ only by the synthetic rows' target.

ClassBalance (class_balance: reweight | logit_adjust) changes that loss on the real rows only: per-row weights or a
logit offset from the training split's class counts (balanced_cross_entropy).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ganaug.config import registry

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
                soft: torch.Tensor | None = None, logits: torch.Tensor | None = None) -> torch.Tensor:
        """Target distribution [B, num_outputs]: one-hot of y for real rows, the method's target otherwise.

        soft: [B, num_outputs] target rows for the synthetic rows of the `teacher` method (distill_target).
        A synthetic row of an unlabelled source has y = -1: `conditioning` then takes the class the classifier's own
        `logits` predict for it (pseudo-labelling, Lee 2013); the other methods' targets need no class.
        """
        if logits is not None:
            classes = num_outputs - (self.synthetic_target == "extra_class")
            y = torch.where(y < 0, logits.detach()[:, :classes].argmax(1), y)
        y = y.clamp(min=0)  # unlabelled rows without logits: their target is the method's, whatever y says
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
             soft: torch.Tensor | None = None, label_smoothing: float = 0.0,
             balance: ClassBalance | None = None) -> torch.Tensor:
        """Mean cross-entropy between softmax(logits) and the targets, smoothed by `label_smoothing` s:
        (1 - s) x target + s / num_outputs, as F.cross_entropy(label_smoothing=s).

        logits: [B, num_outputs]; y: int64 [B], the true class for real rows and the conditioning
        class for synthetic rows; synthetic: bool [B]; soft: see targets (distill only).
        For lsro this is, per row, -(1 - Z) log p(y) - Z / K sum_k log p(k) with Z = synthetic.
        balance: class_balance's change to the real rows' loss (balanced_cross_entropy); None = plain.
        """
        target = self.targets(y, synthetic.to(torch.bool), logits.shape[1], soft, logits)
        if balance is not None:
            return balanced_cross_entropy(logits.float(), target, synthetic.to(torch.bool), balance, label_smoothing)
        return F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing)

    def predict_logits(self, logits: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Logits over the K real classes only (all_in_one's extra class is never predicted)."""
        return logits[:, :num_classes]


@dataclass(frozen=True)
class ClassBalance:
    """What class_balance changes in the loss of the real rows: per-class weights [K] (reweight) or a logit offset
    [K] (logit_adjust); build it with class_balance_loss."""

    weights: torch.Tensor | None = None
    offset: torch.Tensor | None = None


def effective_number_weights(class_counts, beta: float, device=None) -> torch.Tensor:
    """Cui et al. 2019's class-balanced weights: w_c = (1 - beta) / (1 - beta^n_c), the inverse of the effective
    number of samples (1 - beta^n) / (1 - beta), scaled to mean 1 over the classes (their sum is K, as in the
    paper and LDAM-DRW's code). beta 0 weighs every class 1; as beta -> 1 the weights approach inverse frequency, so
    beta = 1 is taken as that limit, 1 / n_c. A class without images counts as one."""
    counts = torch.tensor(class_counts, dtype=torch.float64, device=device).clamp(min=1)
    weights = 1 / counts if beta >= 1 else (1 - beta) / (1 - beta ** counts)
    return (weights / weights.mean()).to(torch.float32)


def logit_adjustment(class_counts, tau: float, device=None) -> torch.Tensor:
    """The offset of Menon et al. 2021's logit-adjusted softmax cross-entropy (the loss variant, google-research's
    logit_adjustment mode 'loss'; not the post-hoc one): training logits + tau x log prior, prior_c = n_c / n, so
    that the loss asks for a larger margin on rare classes;
    predictions use the plain logits. Shifted by its maximum (the head's offset is 0): the softmax over the K classes
    is the same, and all_in_one's extra output (offset 0) keeps its place beside the head class. A class without
    images counts as one, so that no offset is -inf."""
    counts = torch.tensor(class_counts, dtype=torch.float64, device=device).clamp(min=1)
    offset = tau * torch.log(counts / counts.sum())
    return (offset - offset.max()).to(torch.float32)


def class_balance_loss(method: str, class_counts, beta: float, tau: float, device=None) -> ClassBalance | None:
    """The ClassBalance of a class_balance value (CLASS_BALANCES; None for none and resample, which leave the loss
    alone)."""
    loss = CLASS_BALANCES[method].loss
    return None if loss is None else loss(class_counts, beta, tau, device)


class BalanceMethod(NamedTuple):
    """What a class_balance choice changes: the real batches (`resample`: class-balanced) and the real rows' loss
    (`loss`: (class counts, reweight_beta, logit_adjust_tau, device) -> its ClassBalance; None = plain)."""

    resample: bool
    loss: Callable[..., ClassBalance] | None


def balanced_cross_entropy(logits: torch.Tensor, target: torch.Tensor, synthetic: torch.Tensor,
                           balance: ClassBalance, label_smoothing: float = 0.0) -> torch.Tensor:
    """The soft-target cross-entropy of F.cross_entropy(logits, target, label_smoothing=s), changed on the real rows
    (synthetic: bool [B]) by `balance`: its offset is added to their K class logits (an extra all_in_one output
    unchanged), or each one's loss is multiplied by the weight of its target (one-hot: w_y; a mixup target: the
    target-weighted mean of the weights). Synthetic rows keep weight 1 and plain logits: synthetic_spread, not the
    real prior, sets their classes. The mean is over rows, as Cui et al. normalise (not over the batch's summed
    weights, as F.cross_entropy(weight=) does), so the loss keeps its scale when DRW switches the weights on."""
    real = ~synthetic
    held = balance.offset if balance.offset is not None else balance.weights
    if held is None:
        raise ValueError("ClassBalance holds neither weights nor an offset; build it with class_balance_loss")
    num_classes = len(held)
    if balance.offset is not None:
        offset = F.pad(balance.offset, (0, logits.shape[1] - num_classes))
        logits = logits + real.unsqueeze(1) * offset
    smoothed = target * (1 - label_smoothing) + label_smoothing / logits.shape[1]
    rows = -(smoothed * F.log_softmax(logits, dim=1)).sum(dim=1)
    if balance.weights is not None:
        weight = target[:, :num_classes] @ balance.weights
        rows = rows * torch.where(real, weight, torch.ones_like(weight))
    return rows.mean()


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


LABELERS = registry("labeling", {
    "pseudo": Labeler("pseudo", "conditioning"),
    "lsro": Labeler("lsro", "uniform"),
    "all_in_one": Labeler("all_in_one", "extra_class"),
    "distill": Labeler("distill", "teacher"),
})


CLASS_BALANCES = registry("class_balance", {
    "none": BalanceMethod(resample=False, loss=None),
    "resample": BalanceMethod(resample=True, loss=None),
    "reweight": BalanceMethod(resample=False, loss=lambda counts, beta, tau, device: ClassBalance(
        weights=effective_number_weights(counts, beta, device))),
    "logit_adjust": BalanceMethod(resample=False, loss=lambda counts, beta, tau, device: ClassBalance(
        offset=logit_adjustment(counts, tau, device))),
})
