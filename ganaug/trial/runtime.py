"""Where and how a trial computes, decided once from its config: the device, the torch RNG every random draw of the
trial takes (batch order, augmentation, noise), bf16 autocast and the memory format. One argument for every part of
the loop instead of four."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch

from ganaug.config import TrialConfig, registry
from ganaug.data import pick_device


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rng: torch.Generator                # the trial's one stream of random draws (checkpointed with its state)
    bf16: bool                          # autocast convs and matmuls to bfloat16
    memory_format: torch.memory_format  # channels_last on CUDA: faster convolutions there

    @classmethod
    def of(cls, cfg: TrialConfig) -> Runtime:
        """cfg's device and precision, and an RNG seeded with cfg.seed on that device."""
        device = pick_device(cfg.device)
        memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
        return cls(device, torch.Generator(device).manual_seed(cfg.seed), PRECISIONS[cfg.precision](device),
                   memory_format)

    def autocast(self) -> AbstractContextManager:
        """The forward passes' context: bf16 autocast, or nothing. BatchNorm runs in fp32 under autocast by design."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()


# ----------------------------------------------------------------------------------------------
# Registry: the `precision` choices -> whether the forward passes on `device` run under bf16 autocast.
PRECISIONS = registry("precision", {
    "auto": lambda device: device.type == "cuda",  # bf16 where it is fast; the CPU's bf16 is slower than fp32
    "fp32": lambda device: False,
    "bf16": lambda device: True,
})
