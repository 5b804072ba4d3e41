"""Downstream image classifiers (mlp, cnn, small resnet) built from the dataset's DataSpec.

Input: float images in [-1, 1], NCHW (channels_last memory works too); output: logits [B, num_outputs].
Real and synthetic images share one forward pass (see DESIGN.md), so every BatchNorm sees both, unless the
classifier is built with split_bn: then synthetic rows get their own BatchNorm (SplitBatchNorm, synthetic_rows).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import nn

from ganaug.config import ConfigError


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def mlp_classifier(spec, num_outputs: int, width: float = 1.0) -> nn.Module:
    """Flatten -> 512-1024-2048 (x width), each BatchNorm1d + ReLU + dropout 0.2 -> logits."""
    layers, previous = [nn.Flatten()], spec.channels * spec.height * spec.width
    for hidden in (512, 1024, 2048):
        hidden = _scaled(hidden, width)
        layers += [nn.Linear(previous, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(0.2)]
        previous = hidden
    layers.append(nn.Linear(previous, num_outputs))
    return nn.Sequential(*layers)


def cnn_classifier(spec, num_outputs: int, width: float = 1.0) -> nn.Module:
    """Three [3x3 conv + BN + ReLU + 2x2 max-pool + dropout 0.25] blocks (32-64-128 x width), dense 256.

    A block pools only while its map is >= 2 px, so 8x8 digits go 8 -> 4 -> 2 -> 1 and nothing smaller fails.
    """
    layers, previous, height, width_px = [], spec.channels, spec.height, spec.width
    for channels in (32, 64, 128):
        channels = _scaled(channels, width)
        layers += [nn.Conv2d(previous, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                   nn.ReLU()]
        if min(height, width_px) >= 2:
            layers.append(nn.MaxPool2d(2))
            height, width_px = height // 2, width_px // 2
        layers.append(nn.Dropout(0.25))
        previous = channels
    dense = _scaled(256, width)
    layers += [
        nn.Flatten(), nn.Linear(previous * height * width_px, dense), nn.BatchNorm1d(dense), nn.ReLU(),
        nn.Dropout(0.5), nn.Linear(dense, num_outputs),
    ]
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """x + block(x)."""

    def __init__(self, *block: nn.Module):
        super().__init__()
        self.block = nn.Sequential(*block)

    def forward(self, x):
        return x + self.block(x)


class Scale(nn.Module):
    """Multiply by a constant (ResNet-9's 0.125 logit scale keeps the initial softmax soft)."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def _conv_bn(c_in: int, c_out: int, pool: bool = False) -> list[nn.Module]:
    # Pool before BN (airbench order): same function as after ReLU, on 4x fewer pixels.
    pool_layers = [nn.MaxPool2d(2)] if pool else []
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), *pool_layers, nn.BatchNorm2d(c_out), nn.ReLU()]


def resnet_classifier(spec, num_outputs: int, width: float = 1.0) -> nn.Module:
    """ResNet-9 (Page's DAWNBench net, airbench's ancestor): prep conv 64, stages of 128 / 256 / 512 (x width)
    each halving the map, residual blocks in stages 1 and 3, global max pool, linear, x0.125.

    Stages pool only while the map is >= 2 px, so 8x8 and 28x28 inputs work as well as 32x32.
    """
    prep = _scaled(64, width)
    layers, previous, size = _conv_bn(spec.channels, prep), prep, min(spec.height, spec.width)
    for channels, residual in ((128, True), (256, False), (512, True)):
        channels = _scaled(channels, width)
        layers += _conv_bn(previous, channels, pool=size >= 2)
        size = size // 2 if size >= 2 else size
        if residual:
            layers.append(Residual(*_conv_bn(channels, channels), *_conv_bn(channels, channels)))
        previous = channels
    layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(previous, num_outputs, bias=False),
               Scale(0.125)]
    return nn.Sequential(*layers)


class SplitBatchNorm(nn.Module):
    """A BatchNorm layer and its twin for synthetic images (AdvProp, Xie et al. 2020).

    In training, inside `synthetic_rows(model, start)`, rows [0, start) are normalised by the main layer's
    batch statistics and affine parameters and rows [start, B) by the twin's, in the same forward pass; each
    layer updates only its own running statistics. Evaluation, and any forward outside synthetic_rows, uses the
    main layer alone: the classifier is judged as a classifier of real images. A part with fewer than two rows
    cannot form batch statistics and joins the other part.
    """

    def __init__(self, main: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        self.main = main
        self.synthetic = copy.deepcopy(main)
        self.start: int | None = None  # first synthetic row of the current batch; None = no synthetic rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        start, n = self.start, len(x)
        if not self.training or start is None or n - start < 2:
            return self.main(x)
        if start < 2:
            return self.synthetic(x)
        return torch.cat([self.main(x[:start]), self.synthetic(x[start:])])


def split_batchnorm(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm layer of `model` (in place) by a SplitBatchNorm holding it; returns model."""
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(model, name, SplitBatchNorm(child))
        else:
            split_batchnorm(child)
    return model


@contextlib.contextmanager
def synthetic_rows(model: nn.Module, start: int) -> Iterator[None]:
    """Within the block, the model's SplitBatchNorm layers treat rows from `start` on as synthetic."""
    layers = [module for module in model.modules() if isinstance(module, SplitBatchNorm)]
    for layer in layers:
        layer.start = start
    try:
        yield
    finally:
        for layer in layers:
            layer.start = None


def build_classifier(name: str, spec, num_outputs: int, width: float = 1.0, split_bn: bool = False) -> nn.Module:
    """The classifier `name` for the spec's image shape, with num_outputs logits (labeler.num_outputs(K));
    split_bn: every BatchNorm gets a twin for synthetic rows (synthetic_bn: split)."""
    if name not in CLASSIFIERS:
        raise ConfigError(f"classifier={name!r} is not one of {', '.join(CLASSIFIERS)}")
    model = CLASSIFIERS[name](spec, num_outputs, width)
    return split_batchnorm(model) if split_bn else model


CLASSIFIERS = {
    "mlp": mlp_classifier,
    "cnn": cnn_classifier,
    "resnet": resnet_classifier,
}
