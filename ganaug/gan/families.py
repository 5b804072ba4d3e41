"""The `gan` axis: one trainer class per GAN family, and `build_gan`, which the joint loop and `generate` call.

Every trainer has the interface of `GANTrainer`: train_step(real_x, real_y, real_fraction, rng, autocast)
-> dict of 0-dim losses, sample(y, rng) -> images in [-1, 1], class_scores(x, y), state_dict() and
load_state_dict(state). Families that need the training data itself (source images, attributes) take it from
`data`.
"""

from __future__ import annotations

import torch

from ganaug.config import ConfigError, TrialConfig, registry
from ganaug.gan.ali import ALITrainer
from ganaug.gan.conditions import ConditionedTrainer
from ganaug.gan.trainer import GANTrainer
from ganaug.gan.translation import TranslationTrainer


def build_gan(cfg: TrialConfig, spec, device: torch.device | str, data=None):
    """The trainer of family cfg.gan for a dataset of shape `spec`; `data` is the trial's ImageData."""
    if cfg.gan not in FAMILIES:
        raise ConfigError(f"gan={cfg.gan!r} is not one of {', '.join(FAMILIES)}")
    if cfg.gan_conditions:  # continuous attributes besides the class (cgan, acgan; TrialConfig checks the family)
        return ConditionedTrainer(cfg, spec, torch.device(device), data=data)
    return FAMILIES[cfg.gan](cfg, spec, torch.device(device), data=data)


FAMILIES = registry("gan", {
    "cgan": GANTrainer,
    "acgan": GANTrainer,
    "ali": ALITrainer,     # ALI (encoder + joint D), then ACGAN on random and encoded codes: ganaug/gan/ali.py
    "translation": TranslationTrainer,  # StarGAN / CycleGAN: real images of one class translated into another
})
