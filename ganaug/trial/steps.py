"""The two updates of the joint loop, per real batch: the GAN's (gan_steps_per_batch of them) and the classifier's
(real rows and synthetic rows in one forward pass), and the per-pass sums they add to, kept on the device."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

from ganaug.augment import MIXES, mix_targets
from ganaug.classifier import LABELERS, LearningRate, balanced_cross_entropy, class_balance_loss, synthetic_rows
from ganaug.config import TrialConfig, registry
from ganaug.data import DataSpec, ImageData, to_float
from ganaug.trial.runtime import Runtime
from ganaug.trial.state import TrialState
from ganaug.trial.synthetic import SyntheticBatch

# What every pass sums: the GAN's two losses and the classifier's loss, correct predictions and rows on real
# images, and (filter_candidates) the scorer's confidence in the kept synthetic images and their number.
SUMS = ("d_loss", "g_loss", "loss", "correct", "seen", "kept_score", "kept")


class RunningSums:
    """A pass's running sums as 0-dim device tensors: one host sync per pass (`totals`), not per step."""

    def __init__(self, device: torch.device):
        self.sums = {key: torch.zeros((), device=device) for key in SUMS}
        self.gan_keys: tuple[str, ...] = ()  # the keys of the GAN's last train_step: d_loss, g_loss, a family's own

    def add(self, values: Mapping[str, torch.Tensor | int]) -> None:
        """Add each value to its sum (a count may be a Python int); a key outside SUMS (a family's own loss) starts
        its sum."""
        for key, value in values.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else torch.as_tensor(value)

    def totals(self) -> dict[str, float]:
        return {key: value.item() for key, value in self.sums.items()}


def gan_updates(gan, data: ImageData, index: torch.Tensor, x: torch.Tensor, y: torch.Tensor, real_fraction: float,
                runtime: Runtime, sums: RunningSums) -> None:
    """gan_steps_per_batch GAN updates (each d_steps discriminator steps on mixed real/fake batches and one generator
    step).

    The first uses the classifier's real batch (x, y: rows `index` of the training split); each further one draws
    its own real batch of the same size, so a larger GAN budget sees more data instead of fitting one batch
    several times. gan_conditions: the GAN also gets each batch's continuous attributes.
    """
    for update in range(gan.cfg.gan_steps_per_batch):
        if update > 0:
            index = torch.randint(len(data.train_y), (len(y),), generator=runtime.rng, device=y.device)
            x, y = to_float(data.train_x[index]), data.train_y[index]
        attributes = {"real_attributes": data.train_attributes[index]} if gan.cfg.gan_conditions else {}
        losses = gan.train_step(x, y, real_fraction, runtime.rng, runtime.autocast, **attributes)
        sums.add(losses)
        sums.gan_keys = tuple(losses)


def real_fraction(cfg: TrialConfig, number: int) -> float:
    """The share of real rows in the discriminator's batches in pass `number` (d_mix_schedule)."""
    return D_MIX_SCHEDULES[cfg.d_mix_schedule](cfg.d_real_fraction, number)


def balancing(cfg: TrialConfig, epoch: int) -> bool:
    """Whether class_balance acts in classifier epoch `epoch` (from 1): after class_balance_start_epoch plain epochs
    (DRW / DRS, Cao et al. 2019: plain training first, then re-weighting or re-sampling; 0 = from the start)."""
    return cfg.class_balance != "none" and epoch > cfg.class_balance_start_epoch


class ClassifierStep:
    """One optimizer step of the classifier on a real batch and its synthetic rows, in ONE forward pass: BatchNorm
    statistics then always describe the mixed batch the classifier is trained on (with synthetic_bn: split, the
    synthetic rows are normalised by their own BatchNorm in that same pass); then the teacher's EMA update.

    The recipe: the learning rate of the step from the schedule, cfg.mix on the real rows (and on the synthetic ones,
    among themselves, with augment_synthetic), label smoothing; and class_balance's reweight or logit_adjust on the
    real rows' loss from the training split's `class_counts` once it starts (balancing)."""

    def __init__(self, cfg: TrialConfig, state: TrialState, spec: DataSpec, runtime: Runtime, batches_per_epoch: int):
        self.cfg, self.runtime, self.batches_per_epoch = cfg, runtime, batches_per_epoch
        self.classifier, self.optimizer, self.teacher = state.classifier, state.optimizer, state.teacher
        self.learning_rate = LearningRate(state.optimizer, cfg, batches_per_epoch)
        self.labeler, self.num_classes = LABELERS[cfg.labeling], spec.num_classes
        self.mix = MIXES[cfg.mix]
        self.balance = class_balance_loss(cfg.class_balance, spec.class_counts, cfg.reweight_beta, cfg.logit_adjust_tau,
                                          runtime.device)

    def __call__(self, epoch: int, batch: int, x: torch.Tensor, y: torch.Tensor, fake: SyntheticBatch | None,
                 sums: RunningSums) -> None:
        """The step of batch `batch` (from 0) of classifier epoch `epoch` (from 1); x, y: the (augmented) real batch;
        fake: its synthetic rows, or None."""
        balance = self.balance if balancing(self.cfg, epoch) else None
        n_real, device = len(y), y.device
        mixes = []  # (rows, Mix) of each group of rows mixed among themselves
        if self.mix is not None:
            mixed = self.mix(x, self.cfg.mix_alpha, self.runtime.rng)
            x, mixes = mixed.x, [(slice(0, n_real), mixed)]
        images, targets = x, y
        synthetic = torch.zeros(n_real, dtype=torch.bool, device=device)
        # distill's soft targets of every row (a real row's is never read: it keeps its one-hot label)
        soft = torch.zeros(n_real, self.num_classes, device=device) if self.labeler.name == "distill" else None
        if fake is not None:
            fake_x = fake.x
            if self.mix is not None and self.cfg.augment_synthetic:
                mixed = self.mix(fake_x, self.cfg.mix_alpha, self.runtime.rng)
                fake_x, mixes = mixed.x, [*mixes, (slice(n_real, None), mixed)]
            images, targets = torch.cat([x, fake_x]), torch.cat([y, fake.y])
            synthetic = torch.cat([synthetic, torch.ones(len(fake.y), dtype=torch.bool, device=device)])
            if soft is not None:
                assert fake.soft is not None, "distill draws its synthetic rows with their soft targets"
                soft = torch.cat([soft, fake.soft])
            if fake.kept_score is not None:
                sums.add({"kept_score": fake.kept_score, "kept": len(fake.y)})
        # synthetic_bn: split normalises rows from n_real on with their own BatchNorm (a no-op when shared).
        with self.runtime.autocast(), synthetic_rows(self.classifier, n_real):
            logits = self.classifier(images.contiguous(memory_format=self.runtime.memory_format))
        if mixes:  # each row's target mixed as its image was
            target = self.labeler.targets(targets, synthetic, logits.shape[1], soft, logits)
            for rows, mixed in mixes:
                target[rows] = mix_targets(target[rows], mixed)
            loss = F.cross_entropy(logits.float(), target, label_smoothing=self.cfg.label_smoothing) \
                if balance is None else balanced_cross_entropy(logits.float(), target, synthetic, balance,
                                                               self.cfg.label_smoothing)
        else:
            loss = self.labeler.loss(logits.float(), targets, synthetic, soft, self.cfg.label_smoothing, balance)
        self.learning_rate.set((epoch - 1) * self.batches_per_epoch + batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.teacher is not None:
            self.teacher.update(self.classifier)
        with torch.no_grad():
            real_logits = self.labeler.predict_logits(logits[:n_real].float(), self.num_classes)
            sums.add({"correct": (real_logits.argmax(1) == y).sum(), "seen": n_real, "loss": loss.detach()})


# ----------------------------------------------------------------------------------------------
# Registry: d_mix_schedule -> (d_real_fraction, pass number) -> the discriminator batches' real share in that pass.
D_MIX_SCHEDULES: dict[str, Callable[[float, int], float]] = registry("d_mix_schedule", {
    "fixed": lambda fraction, number: fraction,
    "hybrid": lambda fraction, number: 0.5 if number % 3 == 0 else fraction,  # balanced every third pass
})
