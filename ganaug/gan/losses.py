"""The GAN losses: the real/fake part (ADVERSARIAL_LOSSES: bce, non-saturating; hinge, SNGAN / BigGAN) and the
family part (FAMILY_LOSSES: CGAN's none, ACGAN's auxiliary class cross-entropy), one FamilyLoss per family of
ganaug.gan.networks' discriminators; and masked_mean, the mean over the rows a loss judges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ganaug.config import registry


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of values over the rows where mask (bool) is True; 0 when there is none (never nan)."""
    return (values * mask).sum() / mask.sum().clamp(min=1)


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
                           class_on_fakes: bool = True, judged: torch.Tensor | None = None) -> torch.Tensor:
        """Mean real/fake loss over the mixed batch's `judged` rows (bool; None: every row; real target
        `real_target` for bce) + the class CE, times aux_weight * class_weight, on every row (class_on_fakes,
        Odena et al. 2017) or on the real rows only (0 for a batch without real rows)."""
        adversarial = adversarial or ADVERSARIAL_LOSSES["bce"]
        loss = _judged_mean(adversarial.discriminator(logit.float(), is_real, real_target), judged)
        if self.aux_weight > 0:
            if class_on_fakes:
                class_loss = F.cross_entropy(class_logits.float(), y)
            else:  # a masked mean: a D batch of fakes only (round(real_fraction * n) == 0) has no real row
                class_loss = masked_mean(F.cross_entropy(class_logits.float(), y, reduction="none"), is_real)
            loss = loss + self.aux_weight * class_weight * class_loss
        return loss

    def generator_loss(self, logit, class_logits, y, adversarial: AdversarialLoss | None = None,
                       class_weight: float = 1.0, judged: torch.Tensor | None = None) -> torch.Tensor:
        """The adversarial generator loss over the `judged` rows (None: every row) + class CE of the conditioning
        labels on every row (times aux_weight * class_weight)."""
        adversarial = adversarial or ADVERSARIAL_LOSSES["bce"]
        loss = _judged_mean(adversarial.generator(logit.float()), judged)
        if self.aux_weight > 0:
            loss = loss + self.aux_weight * class_weight * F.cross_entropy(class_logits.float(), y)
        return loss


def _judged_mean(losses: torch.Tensor, judged: torch.Tensor | None) -> torch.Tensor:
    return losses.mean() if judged is None else masked_mean(losses, judged)


ADVERSARIAL_LOSSES = registry("gan_loss", {
    "bce": AdversarialLoss(_bce_discriminator, _bce_generator),
    "hinge": AdversarialLoss(_hinge_discriminator, _hinge_generator),
})

FAMILY_LOSSES = {
    "cgan": FamilyLoss(aux_weight=0.0, conditional_d=True),
    "acgan": FamilyLoss(aux_weight=1.0, conditional_d=False),
}
