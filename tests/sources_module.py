"""A generator of the user's own for the tests (synthetic_source: sources_module:make): each class a flat grey level
with a little noise, so its samples are recognisably of the class they were asked for. `no_sample` returns an
object without a sample method (bad input)."""

import torch


class GreyLevels:
    def __init__(self, num_classes: int, in_channels: int, image_size: int):
        self.shape = (in_channels, image_size, image_size)
        self.levels = torch.linspace(-0.9, 0.9, num_classes)
        self.calls = 0

    def sample(self, labels: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        self.calls += 1
        noise = torch.rand(len(labels), *self.shape, generator=rng, device=labels.device) * 0.05
        return (self.levels.to(labels.device)[labels].view(-1, 1, 1, 1) + noise).clamp(-1, 1)


def make(num_classes: int, in_channels: int, image_size: int) -> GreyLevels:
    return GreyLevels(num_classes, in_channels, image_size)


def no_sample(num_classes: int, in_channels: int, image_size: int) -> object:
    return object()
