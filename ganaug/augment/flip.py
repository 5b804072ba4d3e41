"""Random horizontal flip and translation of a whole batch in one gather (airbench style): the flip_translate
choice of traditional_aug, and the first step of TrivialAugment and RandAugment."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganaug.data import DataError


def flip_translate(x: torch.Tensor, rng: torch.Generator | None = None, translate: int = 4) -> torch.Tensor:
    """Random horizontal flip (p = 0.5) and translation by up to `translate` px in x and y, per image.

    Both are one gather over the whole batch (no per-image Python loop). Uncovered pixels are filled with
    -1 (black), as torchvision's RandomCrop(padding=4) fills with 0 = black: reflect padding would invent
    mirrored structure at the borders that the test images never show.
    """
    if not x.is_floating_point() or x.dim() != 4:
        raise DataError(f"flip_translate expects float images [N, C, H, W] in [-1, 1], got {x.dtype} "
                        f"{tuple(x.shape)}")
    if translate < 0:
        raise DataError(f"flip_translate: translate={translate} is out of range; valid: an integer >= 0")
    n, c, h, w = x.shape
    device = x.device
    flip = torch.rand(n, generator=rng, device=device) < 0.5
    shift = torch.randint(0, 2 * translate + 1, (2, n), generator=rng, device=device)
    # Source pixel of every output pixel in the padded image; a flip just reverses the column order.
    cols = torch.arange(w, device=device)
    cols = torch.where(flip[:, None], cols.flip(0), cols) + shift[1][:, None]        # [n, w]
    rows = torch.arange(h, device=device) + shift[0][:, None]                        # [n, h]
    padded = F.pad(x, (translate,) * 4, value=-1.0)
    index = rows[:, :, None] * (w + 2 * translate) + cols[:, None, :]                 # [n, h, w]
    index = index.view(n, 1, h * w).expand(n, c, h * w)
    return padded.flatten(2).gather(2, index).view(n, c, h, w)
