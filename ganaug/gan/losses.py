"""The GAN losses: the real/fake part (ADVERSARIAL_LOSSES: bce, non-saturating; hinge, SNGAN / BigGAN) and the
family part (FAMILY_LOSSES: CGAN's none, ACGAN's auxiliary class cross-entropy), one FamilyLoss per family of gans.py's
networks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ganaug.config import registry


class AdversarialLoss(NamedTuple):
    """Per-row real/fake losses: discriminator(logit, is_real, real_target) and generator(logit)."""

    discriminator: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
    generator: Callable[[torch.Tensor], torch.Tensor]


def _bce_discriminator(logit, is_real, real_target):
    return F.binary_cross_entropy_with_logits(logit, is_real.to(logit.dtype) * real_target, reduction="none")


def _bce_generator(logit):
    return F.softplus(-logit)  # -log D(G(z)): the non-saturating loss of Goodfellow et al. 2014


def _hinge_discriminator(logit, is_real, real_target):
    # SNGAN / BigGAN: max(0, 1 - D(x)) on real rows, max(0, 1 + D(G(z))) on fake rows.
    return torch.where(is_real, F.relu(1 - logit), F.relu(1 + logit))


def _hinge_generator(logit):
    return -logit


@dataclass(frozen=True)
class FamilyLoss:
    """A GAN family: aux_weight > 0 adds ACGAN's class cross-entropy to both players; conditional_d gives D
    the label through a projection term (CGAN). The real/fake part is an AdversarialLoss (bce | hinge)."""

    aux_weight: float      # Weight of the auxiliary class loss; 0 = no class head (CGAN).
    conditional_d: bool    # D gets the label through a projection term (CGAN).

    def discriminator_loss(self, logit, class_logits, y, is_real, real_target: float = 1.0,
                           adversarial: AdversarialLoss | None = None, class_weight: float = 1.0,
                           class_on_fakes: bool = True) -> torch.Tensor:
        """Mean real/fake loss over the mixed batch (real target `real_target` for bce) + the class CE, times
        aux_weight * class_weight, on every row (class_on_fakes, Odena et al. 2017) or on the real rows only."""
        adversarial = adversarial or ADVERSARIAL_LOSSES["bce"]
        loss = adversarial.discriminator(logit.float(), is_real, real_target).mean()
        if self.aux_weight > 0:
            rows = slice(None) if class_on_fakes else is_real
            loss = loss + self.aux_weight * class_weight * F.cross_entropy(class_logits[rows].float(), y[rows])
        return loss

    def generator_loss(self, logit, class_logits, y, adversarial: AdversarialLoss | None = None,
                       class_weight: float = 1.0) -> torch.Tensor:
        """The adversarial generator loss + class CE of the conditioning labels (times aux_weight * class_weight)."""
        adversarial = adversarial or ADVERSARIAL_LOSSES["bce"]
        loss = adversarial.generator(logit.float()).mean()
        if self.aux_weight > 0:
            loss = loss + self.aux_weight * class_weight * F.cross_entropy(class_logits.float(), y)
        return loss


ADVERSARIAL_LOSSES = registry("gan_loss", {
    "bce": AdversarialLoss(_bce_discriminator, _bce_generator),
    "hinge": AdversarialLoss(_hinge_discriminator, _hinge_generator),
})

FAMILY_LOSSES = {
    "cgan": FamilyLoss(aux_weight=0.0, conditional_d=True),
    "acgan": FamilyLoss(aux_weight=1.0, conditional_d=False),
}
