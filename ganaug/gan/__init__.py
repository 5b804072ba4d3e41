"""The generators: FAMILIES (the `gan` axis: one trainer per family) and build_gan; the trainer of cgan / acgan and
the seams the other families (ALI, translation, continuous conditions) override; the networks (ARCHITECTURES,
MINIBATCH_FEATURES), the losses (ADVERSARIAL_LOSSES, FAMILY_LOSSES) and sample quality (diversity, Frechet distance).

    from ganaug.gan import build_gan
    gan = build_gan(TrialConfig(gan="acgan", gan_arch="dcgan"), data.spec, device, data)
    losses = gan.train_step(real_x, real_y, real_fraction=0.5)
    images, labels = gan.sample_balanced(100)
"""

from ganaug.gan.ali import ALITrainer
from ganaug.gan.conditions import ConditionedTrainer
from ganaug.gan.families import FAMILIES, build_gan
from ganaug.gan.losses import ADVERSARIAL_LOSSES, FAMILY_LOSSES
from ganaug.gan.networks import ARCHITECTURES, MINIBATCH_FEATURES, build_discriminator, build_generator
from ganaug.gan.quality import (
    SampleQuality,
    frechet_distance,
    image_features,
    synthetic_diversity,
    synthetic_frechet_distance,
)
from ganaug.gan.trainer import GANTrainer, StateDictError
from ganaug.gan.translation import TranslationTrainer

__all__ = ["ADVERSARIAL_LOSSES", "ALITrainer", "ARCHITECTURES", "ConditionedTrainer", "FAMILIES", "FAMILY_LOSSES",
           "GANTrainer", "MINIBATCH_FEATURES", "SampleQuality", "StateDictError", "TranslationTrainer",
           "build_discriminator", "build_gan", "build_generator", "frechet_distance", "image_features",
           "synthetic_diversity", "synthetic_frechet_distance"]
