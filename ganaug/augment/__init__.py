"""Traditional augmentation of classifier batches (AUGMENTATIONS: flip/translate, TrivialAugment, RandAugment; cutout)
and DiffAugment of every discriminator input: whole-batch tensor ops on the device, a choice per image.

    from ganaug.augment import traditional_augment
    x = traditional_augment(to_float(images), "trivialaugment", rng, cutout=16)
"""

from ganaug.augment.diffaugment import DIFFAUGMENT, diff_augment
from ganaug.augment.flip import flip_translate
from ganaug.augment.mix import MIXES, Mix, mix_targets
from ganaug.augment.traditional import AUGMENTATIONS, apply_cutout, traditional_augment

__all__ = ["AUGMENTATIONS", "DIFFAUGMENT", "MIXES", "Mix", "apply_cutout", "diff_augment", "flip_translate",
           "mix_targets", "traditional_augment"]
