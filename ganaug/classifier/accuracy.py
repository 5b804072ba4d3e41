"""How well a classifier does: logits over the K real classes, accuracy, top-k, per-class accuracy, balanced accuracy
(their mean) and many / medium / few-shot group accuracies, `score` (all of them and the loss on one split), and
synthetic_agreement (how often it assigns fresh synthetic images to their
conditioning class; `gan` is any sampler data.sample_balanced takes).

Every classifier metric is over the K real classes: all_in_one's extra output is dropped before any argmax.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ganaug.classifier.labeling import Labeler
from ganaug.data import as_float_images, sample_balanced


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, labeler: Labeler, num_classes: int, batch_size: int = 1024,
            autocast: Callable = contextlib.nullcontext) -> torch.Tensor:
    """Logits [N, num_classes] float32 over the real classes, in eval mode (the model's mode is restored).

    x: uint8 or float [-1, 1] images, on any device; batches move to the model's device.
    """
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        chunks = []
        for start in range(0, len(x), batch_size):
            batch = as_float_images(x[start:start + batch_size].to(device, non_blocking=True))
            with autocast():
                logits = model(batch)
            chunks.append(labeler.predict_logits(logits, num_classes).float())
    finally:
        model.train(was_training)
    return torch.cat(chunks) if chunks else torch.empty(0, num_classes, device=device)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Share of rows whose argmax is y (nan for no rows)."""
    if len(y) == 0:
        return math.nan
    return (logits.argmax(dim=1) == y.to(logits.device)).float().mean().item()


def topk_accuracy(logits: torch.Tensor, y: torch.Tensor, k: int = 5) -> float:
    """Share of rows whose y is among the k largest logits; k is clipped to the number of classes."""
    if len(y) == 0:
        return math.nan
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return (top == y.to(logits.device).unsqueeze(1)).any(dim=1).float().mean().item()


def per_class_accuracy(logits: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[float]:
    """Accuracy of each true class; nan for classes with no rows."""
    y = y.to(logits.device)
    correct = (logits.argmax(dim=1) == y).double()
    hits = torch.bincount(y, weights=correct, minlength=num_classes)
    counts = torch.bincount(y, minlength=num_classes).double()
    return (hits / counts).tolist()  # 0 / 0 = nan for absent classes


def balanced_accuracy(per_class: list[float]) -> float:
    """Mean per-class accuracy over the classes that have rows (nan for none): every class weighs the same, however
    many rows it has."""
    present = [value for value in per_class if not math.isnan(value)]
    return sum(present) / len(present) if present else math.nan


# Many / medium / few-shot classes by their training count n_c, as shares of the head's n_max: the long-tail
# convention (Liu et al. 2019's OLTR, used for CIFAR-LT) is many > 100 and few < 20 training images at n_max 500,
# scaled here by n_max / 500 so that the groups follow the data's own head (n_max 450: many > 90, few < 18).
SHOT_GROUPS = {"many": 100 / 500, "few": 20 / 500}


def shot_groups(class_counts) -> dict[str, list[int]]:
    """Class indices per group: many n_c > 0.2 n_max, few n_c < 0.04 n_max, medium the rest (SHOT_GROUPS)."""
    n_max = max(class_counts)
    groups: dict[str, list[int]] = {"many": [], "medium": [], "few": []}
    for label, count in enumerate(class_counts):
        many, few = count > SHOT_GROUPS["many"] * n_max, count < SHOT_GROUPS["few"] * n_max
        groups["many" if many else "few" if few else "medium"].append(label)
    return groups


def group_accuracies(per_class: list[float], class_counts) -> dict[str, float]:
    """{"many", "medium", "few"}: the balanced accuracy of each group's classes (shot_groups of the training
    counts); nan for a group without classes (ratio 10 on CIFAR-10 leaves no class under 0.04 n_max)."""
    return {name: balanced_accuracy([per_class[label] for label in labels])
            for name, labels in shot_groups(class_counts).items()}


def score(model: nn.Module, x: torch.Tensor, y: torch.Tensor, labeler: Labeler, num_classes: int,
             batch_size: int = 1024, autocast: Callable = contextlib.nullcontext) -> dict:
    """{"acc", "top5", "loss" (cross-entropy over the K real classes), "per_class", "balanced" (their mean)} on
    (x, y)."""
    logits = predict(model, x, labeler, num_classes, batch_size, autocast)
    y = y.to(logits.device)
    per_class = per_class_accuracy(logits, y, num_classes)
    return {
        "acc": accuracy(logits, y),
        "top5": topk_accuracy(logits, y, 5),
        "loss": F.cross_entropy(logits, y).item() if len(y) else math.nan,
        "per_class": per_class,
        "balanced": balanced_accuracy(per_class),
    }


@torch.no_grad()
def synthetic_agreement(model: nn.Module, gan, labeler: Labeler, num_classes: int, n: int,
                        rng: torch.Generator | None = None) -> float:
    """Share of n fresh class-balanced samples the model assigns to their conditioning class."""
    if n < 1:
        raise ValueError(f"synthetic_agreement: n={n}; valid: n >= 1")
    x, y = sample_balanced(gan, n, rng)
    return accuracy(predict(model, x, labeler, num_classes), y)


# ----------------------------------------------------------------------------------------------
# GAN quality: a fixed random feature space, per-class diversity and the Fréchet distance.


