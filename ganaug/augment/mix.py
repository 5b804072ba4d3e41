"""mixup (Zhang et al. 2018) and cutmix (Yun et al. 2019) of a classifier batch, whole-batch on the device (MIXES,
the `mix` axis): each batch draws one lambda ~ Beta(alpha, alpha) and a partner for every image (a permutation);
mixup blends each image with its partner, cutmix pastes a box of its partner into it. A Mix says how much of each
image is its own (`weight`), so its target can be mixed the same way (`mix_targets`).

    mixed = MIXES["cutmix"](x, alpha=1.0, rng=rng)
    targets = mix_targets(one_hot_targets, mixed)   # rows still sum to 1
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from ganaug.config import registry


class Mix(NamedTuple):
    """A mixed batch: the images, each image's partner (a row of the batch) and its own share of the mix."""

    x: torch.Tensor        # [n, C, H, W] mixed images
    partner: torch.Tensor  # int64 [n]: the row each image was mixed with
    weight: torch.Tensor   # float [n]: lambda_i, the share of image i's own target in its mixed target


def beta_sample(alpha: float, device: torch.device) -> torch.Tensor:
    """One lambda ~ Beta(alpha, alpha) as a 0-dim tensor on `device`, with no host sync. From torch's global RNG
    (seeded by the trial, saved in its checkpoints, as dropout's): torch.distributions takes no Generator."""
    concentration = torch.full((), float(alpha), device=device)
    return torch.distributions.Beta(concentration, concentration).sample()


def mixup(x: torch.Tensor, alpha: float, rng: torch.Generator | None = None) -> Mix:
    """lambda x + (1 - lambda) x[partner], one lambda for the batch (Zhang et al. 2018, the paper's choice)."""
    lam = beta_sample(alpha, x.device)
    partner = torch.randperm(len(x), generator=rng, device=x.device)
    mixed = lam.to(x.dtype) * x + (1 - lam.to(x.dtype)) * x[partner]
    return Mix(mixed, partner, lam.expand(len(x)).float())


def cutmix(x: torch.Tensor, alpha: float, rng: torch.Generator | None = None) -> Mix:
    """A box of x[partner] pasted into each image: the box's sides are sqrt(1 - lambda) of the image's (one lambda
    for the batch, Yun et al. 2019), its centre drawn per image, and the box clipped to the image; each image's
    weight is the share of its own pixels it keeps (so a clipped box leaves it more of itself)."""
    n, _, height, width = x.shape
    lam = beta_sample(alpha, x.device)
    partner = torch.randperm(n, generator=rng, device=x.device)
    side = torch.sqrt(1 - lam)
    box_h, box_w = (side * height).round().long(), (side * width).round().long()
    centre_y = torch.randint(height, (n,), generator=rng, device=x.device)
    centre_x = torch.randint(width, (n,), generator=rng, device=x.device)
    top, bottom = (centre_y - box_h // 2).clamp(0, height), (centre_y - box_h // 2 + box_h).clamp(0, height)
    left, right = (centre_x - box_w // 2).clamp(0, width), (centre_x - box_w // 2 + box_w).clamp(0, width)
    rows = torch.arange(height, device=x.device)[None, :, None]
    cols = torch.arange(width, device=x.device)[None, None, :]
    inside = (rows >= top[:, None, None]) & (rows < bottom[:, None, None]) & \
        (cols >= left[:, None, None]) & (cols < right[:, None, None])          # [n, H, W]
    mixed = torch.where(inside[:, None], x[partner], x)
    kept = 1 - inside.flatten(1).float().mean(1)
    return Mix(mixed, partner, kept)


def mix_targets(targets: torch.Tensor, mix: Mix) -> torch.Tensor:
    """Each row's target mixed as its image was: weight x target + (1 - weight) x the partner's target. Rows of
    probability targets stay probability rows (convex combinations)."""
    weight = mix.weight.to(targets.dtype)[:, None]
    return weight * targets + (1 - weight) * targets[mix.partner]


MIXES: dict[str, Callable[..., Mix] | None] = registry("mix", {
    "none": None,
    "mixup": mixup,
    "cutmix": cutmix,
})
