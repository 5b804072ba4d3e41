"""DiffAugment (Zhao et al. 2020, mit-han-lab/data-efficient-gans): differentiable augmentations applied to every
discriminator input, real and fake, in both D and G steps, chosen by a policy string (TrialConfig.diffaugment):

    d_input = diff_augment(torch.cat([real_x, fake]), "color,translation,cutout", rng)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganaug.config import ConfigError, policy_parts, registry


def diff_augment(x: torch.Tensor, policy: str, rng: torch.Generator | None = None) -> torch.Tensor:
    """Apply the DiffAugment policy (e.g. "color,translation,cutout") to a batch; "" returns x."""
    for part in policy_parts(policy):
        if part not in DIFFAUGMENT:  # TrialConfig validates it; a direct caller gets the same message
            raise ConfigError(f"diffaugment={policy!r} has unknown part {part!r}; valid: a comma-separated subset "
                              f"of {', '.join(DIFFAUGMENT)}, or ''")
        for fn in DIFFAUGMENT[part]:
            x = fn(x, rng)
    return x


# Unlike the original, the colour functions clamp to [-1, 1] so D never sees values no real image can have
# (the gradient is zero only on clipped pixels); translation and cutout fill with 0 as the original does.

def _rand(x: torch.Tensor, rng: torch.Generator | None) -> torch.Tensor:
    return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device, generator=rng)


def rand_brightness(x: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
    return (x + (_rand(x, rng) - 0.5)).clamp(-1, 1)


def rand_saturation(x: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
    x_mean = x.mean(dim=1, keepdim=True)
    return ((x - x_mean) * (_rand(x, rng) * 2) + x_mean).clamp(-1, 1)


def rand_contrast(x: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
    x_mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return ((x - x_mean) * (_rand(x, rng) + 0.5) + x_mean).clamp(-1, 1)


def rand_translation(x: torch.Tensor, rng: torch.Generator | None = None,
                     ratio: float = 0.125) -> torch.Tensor:
    batch, _, height, width = x.shape
    shift_y, shift_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    translation_y = torch.randint(-shift_y, shift_y + 1, size=(batch, 1, 1), device=x.device, generator=rng)
    translation_x = torch.randint(-shift_x, shift_x + 1, size=(batch, 1, 1), device=x.device, generator=rng)
    grid_batch, grid_y, grid_x = torch.meshgrid(
        torch.arange(batch, device=x.device), torch.arange(height, device=x.device),
        torch.arange(width, device=x.device), indexing="ij",
    )
    # One pixel of zero padding: every shifted-in pixel reads it (clamped index), in one gather.
    grid_y = torch.clamp(grid_y + translation_y + 1, 0, height + 1)
    grid_x = torch.clamp(grid_x + translation_x + 1, 0, width + 1)
    x_pad = F.pad(x, [1, 1, 1, 1])
    return x_pad.permute(0, 2, 3, 1)[grid_batch, grid_y, grid_x].permute(0, 3, 1, 2)


def rand_cutout(x: torch.Tensor, rng: torch.Generator | None = None,
                ratio: float = 0.5) -> torch.Tensor:
    batch, _, height, width = x.shape
    cut_y, cut_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    offset_y = torch.randint(0, height + (1 - cut_y % 2), size=(batch, 1, 1), device=x.device, generator=rng)
    offset_x = torch.randint(0, width + (1 - cut_x % 2), size=(batch, 1, 1), device=x.device, generator=rng)
    grid_batch, grid_y, grid_x = torch.meshgrid(
        torch.arange(batch, device=x.device), torch.arange(cut_y, device=x.device),
        torch.arange(cut_x, device=x.device), indexing="ij",
    )
    grid_y = torch.clamp(grid_y + offset_y - cut_y // 2, min=0, max=height - 1)
    grid_x = torch.clamp(grid_x + offset_x - cut_x // 2, min=0, max=width - 1)
    mask = torch.ones(batch, height, width, dtype=x.dtype, device=x.device)
    mask[grid_batch, grid_y, grid_x] = 0
    return x * mask.unsqueeze(1)


DIFFAUGMENT = registry("diffaugment", {
    "color": [rand_brightness, rand_saturation, rand_contrast],
    "translation": [rand_translation],
    "cutout": [rand_cutout],
})
