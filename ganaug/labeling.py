"""Labeling methods for synthetic images: classifier targets and loss for mixed real + synthetic batches.

Real rows always get their true class. Synthetic rows get, by method:
  pseudo      the class the generator was conditioned on;
  lsro        the uniform distribution over the K classes (LSRO, Zheng et al. 2017, eq. 6 with Z = 1);
  all_in_one  an extra class K (the classifier has K + 1 outputs; the extra one is ignored at evaluation).
Every method is one soft-target cross-entropy, so they differ only by the synthetic rows' target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ganaug.config import ConfigError

SYNTHETIC_TARGETS = ("conditioning", "uniform", "extra_class")


@dataclass(frozen=True)
class Labeler:
    """Targets and loss of one labeling method; `synthetic_target` is one of SYNTHETIC_TARGETS."""

    name: str
    synthetic_target: str

    def __post_init__(self):
        if self.synthetic_target not in SYNTHETIC_TARGETS:
            raise ValueError(f"Labeler {self.name!r}: synthetic_target={self.synthetic_target!r}; "
                             f"valid: {', '.join(SYNTHETIC_TARGETS)}")

    def num_outputs(self, num_classes: int) -> int:
        """Classifier outputs: K, or K + 1 when synthetic images form their own class."""
        return num_classes + (self.synthetic_target == "extra_class")

    def targets(self, y: torch.Tensor, synthetic: torch.Tensor, num_outputs: int) -> torch.Tensor:
        """Target distribution [B, num_outputs]: one-hot of y for real rows, the method's target otherwise."""
        if self.synthetic_target == "extra_class":
            y = torch.where(synthetic, num_outputs - 1, y)
        target = F.one_hot(y, num_outputs).to(torch.float32)
        if self.synthetic_target == "uniform":
            uniform = torch.full_like(target, 1.0 / num_outputs)
            target = torch.where(synthetic.unsqueeze(1), uniform, target)
        return target

    def loss(self, logits: torch.Tensor, y: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy between softmax(logits) and the targets.

        logits: [B, num_outputs]; y: int64 [B], the true class for real rows and the conditioning
        class for synthetic rows; synthetic: bool [B].
        For lsro this is, per row, -(1 - Z) log p(y) - Z / K sum_k log p(k) with Z = synthetic.
        """
        target = self.targets(y, synthetic.to(torch.bool), logits.shape[1])
        return F.cross_entropy(logits.float(), target)

    def predict_logits(self, logits: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Logits over the K real classes only (all_in_one's extra class is never predicted)."""
        return logits[:, :num_classes]


def get_labeler(name: str) -> Labeler:
    if name not in LABELERS:
        raise ConfigError(f"labeling={name!r} is not one of {', '.join(LABELERS)}")
    return LABELERS[name]


LABELERS = {
    "pseudo": Labeler("pseudo", "conditioning"),
    "lsro": Labeler("lsro", "uniform"),
    "all_in_one": Labeler("all_in_one", "extra_class"),
}
