"""Classifier metrics: accuracy, top-k, per-class accuracy, agreement with synthetic labels, and the
classification accuracy score (CAS: train a fresh classifier on synthetic images only, test it on real ones).

Every metric is over the K real classes: all_in_one's extra output is dropped before any argmax.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ganaug.classifiers import build_classifier
from ganaug.gans import GAN, balanced_labels
from ganaug.labeling import LABELERS, Labeler


def _as_float_images(x: torch.Tensor) -> torch.Tensor:
    # uint8 data (the stored format) -> float in [-1, 1]; float input is taken as already scaled.
    return x.float() / 127.5 - 1 if x.dtype == torch.uint8 else x


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
            batch = _as_float_images(x[start:start + batch_size].to(device, non_blocking=True))
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


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, labeler: Labeler, num_classes: int,
             batch_size: int = 1024, autocast: Callable = contextlib.nullcontext) -> dict:
    """{"acc", "top5", "loss" (cross-entropy over the K real classes), "per_class"} on (x, y)."""
    logits = predict(model, x, labeler, num_classes, batch_size, autocast)
    y = y.to(logits.device)
    return {
        "acc": accuracy(logits, y),
        "top5": topk_accuracy(logits, y, 5),
        "loss": F.cross_entropy(logits, y).item() if len(y) else math.nan,
        "per_class": per_class_accuracy(logits, y, num_classes),
    }


def _sample_balanced(gan: GAN, n: int, generator: torch.Generator | None,
                     chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """n class-balanced synthetic images and their conditioning labels, sampled in chunks."""
    y = balanced_labels(n, gan.num_classes, generator, gan.device)
    x = torch.cat([gan.sample(part, generator) for part in y.split(chunk)]) if n else None
    return x, y


@torch.no_grad()
def synthetic_agreement(model: nn.Module, gan: GAN, labeler: Labeler, num_classes: int, n: int,
                        generator: torch.Generator | None = None) -> float:
    """Share of n fresh class-balanced samples the model assigns to their conditioning class."""
    if n < 1:
        raise ValueError(f"synthetic_agreement: n={n}; valid: n >= 1")
    x, y = _sample_balanced(gan, n, generator)
    return accuracy(predict(model, x, labeler, num_classes), y)


def classification_accuracy_score(cfg, spec, gan: GAN, val_x: torch.Tensor, val_y: torch.Tensor,
                                  device: torch.device, epochs: int,
                                  generator: torch.Generator | None = None) -> float:
    """CAS: accuracy on (val_x, val_y) of a fresh cfg.classifier trained only on GAN samples.

    Each epoch shows as many class-balanced synthetic images as the real train split holds
    (sum(spec.class_counts)), in batches of about cfg.batch_size, with pseudo labels and Adam at
    cfg.classifier_lr. Batches are split evenly (never a batch of one, which BatchNorm cannot train on).
    """
    num_classes = spec.num_classes
    labeler = LABELERS["pseudo"]
    model = build_classifier(cfg.classifier, spec, labeler.num_outputs(num_classes), cfg.classifier_width)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.classifier_lr, fused=True)
    images_per_epoch = sum(spec.class_counts)
    num_batches = max(1, math.ceil(images_per_epoch / cfg.batch_size))
    small, extra = divmod(images_per_epoch, num_batches)
    sizes = [small + 1] * extra + [small] * (num_batches - extra)
    for _ in range(epochs):
        for size in sizes:
            x, y = _sample_balanced(gan, size, generator)
            x, y = x.to(device), y.to(device)
            loss = labeler.loss(model(x), y, synthetic=torch.ones_like(y, dtype=torch.bool))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return evaluate(model, val_x, val_y, labeler, num_classes)["acc"]
