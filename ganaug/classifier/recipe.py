"""The classifier's training recipe: its optimizer (OPTIMIZERS: AdamW, or SGD with Nesterov momentum) and its learning
rate, set before every step from the schedule (SCHEDULES: constant, cosine, one-cycle, each after a linear warm-up).

The schedule spans the trial's whole `epochs`, stepped per batch: an ASHA rung at epoch 4 of 12 compares every
trial at the same point of the same schedule, and `ganaug evaluate --epochs N` spans it over N epochs.

    optimizer = build_optimizer(cfg, classifier.parameters())
    learning_rate = LearningRate(optimizer, cfg, batches_per_epoch=len(batches))
    learning_rate.set(step)      # before optimizer.step(); step counts classifier steps from 0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from ganaug.config import TrialConfig, registry

SGD_MOMENTUM = 0.9  # Nesterov momentum of `optimizer: sgd` (every peer's supervised baseline uses 0.9)


def _adamw(parameters: Iterable[torch.nn.Parameter], cfg: TrialConfig) -> torch.optim.Optimizer:
    # fused: one kernel updates every parameter, instead of a Python loop over them per step; a quickstart
    # trial is ~18 % faster on the CPU (benchmarks/README.md), and it is the fast path on CUDA too.
    return torch.optim.AdamW(parameters, lr=cfg.classifier_lr, weight_decay=cfg.weight_decay, fused=True)


def _sgd(parameters: Iterable[torch.nn.Parameter], cfg: TrialConfig) -> torch.optim.Optimizer:
    optimizer = torch.optim.SGD(parameters, lr=cfg.classifier_lr, momentum=SGD_MOMENTUM, nesterov=True,
                                weight_decay=cfg.weight_decay, fused=True)
    optimizer.register_step_pre_hook(start_late_momentum)
    return optimizer


def start_late_momentum(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    """Step pre-hook of the fused SGD: a parameter whose first gradient comes after the others' starts from a zero
    momentum buffer. Some do: split BatchNorm's synthetic-row layers (`synthetic_bn: split`) get none until synthetic
    rows start at `gan_warmup_epochs`, and torch's fused kernel refuses a step where some buffers exist and others
    not ("expected Tensor ... but got NoneType"). With dampening 0 a zero buffer's first update is buf = grad, what
    torch's own first step sets, so the result is the unfused SGD's."""
    state = optimizer.state
    if not state:  # the first step: torch starts every buffer itself
        return
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            if parameter.grad is not None and "momentum_buffer" not in state[parameter]:
                state[parameter]["momentum_buffer"] = torch.zeros_like(parameter)


def build_optimizer(cfg: TrialConfig, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer cfg.optimizer names, at cfg.classifier_lr (the schedule's peak) and cfg.weight_decay."""
    return OPTIMIZERS[cfg.optimizer](parameters, cfg)


def lr_factor(schedule: str, step: int, total_steps: int, warmup_steps: int) -> float:
    """The share of the peak learning rate at classifier step `step` (0-based) of `total_steps`: (step + 1) /
    warmup_steps during the warm-up, then the schedule's decay over the rest, evaluated at the step's progress
    q = (step - warmup_steps) / (total_steps - warmup_steps) in [0, 1)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return SCHEDULES[schedule](min(progress, 1.0))


class LearningRate:
    """Sets the optimizer's learning rate before each classifier step: cfg.classifier_lr x lr_factor(...), with the
    schedule spread over `epochs` (default cfg.epochs) epochs of `batches_per_epoch` steps, and the warm-up over
    cfg.warmup_epochs of cfg.epochs, the same share of a shorter run (CAS's classifiers)."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: TrialConfig, batches_per_epoch: int,
                 epochs: int | None = None):
        self.optimizer, self.cfg = optimizer, cfg
        epochs = cfg.epochs if epochs is None else epochs
        self.total_steps = epochs * batches_per_epoch
        self.warmup_steps = round(cfg.warmup_epochs / cfg.epochs * epochs * batches_per_epoch)

    def at(self, step: int) -> float:
        return self.cfg.classifier_lr * lr_factor(self.cfg.lr_schedule, step, self.total_steps, self.warmup_steps)

    def set(self, step: int) -> float:
        """Set (and return) the learning rate of classifier step `step`."""
        lr = self.at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = registry("optimizer", {
    "adamw": _adamw,
    "sgd": _sgd,
})

# The decay after the warm-up, as a function of progress q in [0, 1): 1 at q = 0.
SCHEDULES: dict[str, Callable[[float], float]] = registry("lr_schedule", {
    "constant": lambda progress: 1.0,
    "cosine": lambda progress: 0.5 * (1.0 + math.cos(math.pi * progress)),
    "onecycle": lambda progress: 1.0 - progress,
})
