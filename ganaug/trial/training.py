"""Phase two of a trial: the classifier. cfg.epochs passes over the training split; per real batch, the GAN's updates
when it trains jointly (a frozen one only samples), then one classifier step on the real batch, augmented, and its
fresh synthetic rows from the trial's source (trial.sources) in one forward pass; per epoch, validation (the
objective), the source's quality, a report; after the last, the test split and CAS.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from ganaug.augment import traditional_augment
from ganaug.classifier import CLASS_BALANCES
from ganaug.config import TrialConfig
from ganaug.data import ClassIndex, ImageData, balanced_batch_indices, batch_indices, to_float
from ganaug.trial.measure import Diverged, PassMetrics, diverged, finite, gan_losses, timing
from ganaug.trial.reporter import report_pass
from ganaug.trial.runtime import Runtime
from ganaug.trial.sources import Source
from ganaug.trial.state import TrialState
from ganaug.trial.steps import ClassifierStep, RunningSums, balancing, gan_updates, real_fraction
from ganaug.trial.synthetic import SyntheticImages


def train_classifier(
    cfg: TrialConfig,                   # The policy: its classifier, recipe, augmentation and synthetic-data keys.
    state: TrialState,                  # The trial's networks and progress (its GAN pretrained, if it has one).
    data: ImageData,                    # The splits, on the trial's device.
    runtime: Runtime,                   # Device, RNG, autocast, memory format.
    measure: PassMetrics,               # Validation, the source's quality, the final test split and CAS.
    report: Callable[..., None],        # report(metrics, checkpoint=dir | None, images=dict | None) once per epoch.
    source: Source | None,              # Where synthetic rows come from (trial.sources); None = the no-GAN baseline.
    generator_row: dict[str, Any],      # What each epoch reports of the generator's bank entry ({} without one).
) -> dict[str, Any]:
    """Train the classifier from epoch state.epoch + 1 to cfg.epochs and return the last epoch's metrics with the
    test split's test_loss and test_per_class_acc (a list, one accuracy per class), which run returns but does not
    report. Raises Diverged (its metrics not yet reported) when an epoch's losses are not finite."""
    classifier, gan, num_train = state.classifier, state.gan, len(data.train_y)
    batches_per_epoch = -(-num_train // cfg.batch_size)
    classifier_step = ClassifierStep(cfg, state, data.spec, runtime, batches_per_epoch)
    synthetic = SyntheticImages(cfg, source, state.teacher, data.spec.class_counts, runtime)
    train_gan = gan is not None and not cfg.gan_freeze  # a frozen GAN stopped training with pretraining
    augmenting = cfg.traditional_aug != "none" or cfg.cutout > 0
    # class_balance resample (after class_balance_start_epoch): class-balanced real batches, as many and as large (the
    # GAN's first update of each batch sees that batch too; its extra updates draw from the whole split).
    classes = ClassIndex(data.train_y, data.spec.num_classes) if CLASS_BALANCES[cfg.class_balance].resample else None
    final_test: dict[str, Any] = {}

    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        started, sums = time.perf_counter(), RunningSums(runtime.device)
        classifier.train()
        batches = balanced_batch_indices(classes, cfg.batch_size, runtime.rng) \
            if classes is not None and balancing(cfg, epoch) else \
            batch_indices(num_train, cfg.batch_size, runtime.rng, runtime.device)
        for batch, index in enumerate(batches):
            x, y = to_float(data.train_x[index]), data.train_y[index]
            if train_gan:
                gan_updates(gan, data, index, x, y, real_fraction(cfg, epoch), runtime, sums)
            # The real batch (one traditional augmentation drawn per image) and fresh synthetic rows.
            if augmenting:
                x = augment(x, cfg, runtime.rng)
            rows = synthetic.count(epoch, len(y))
            fake = synthetic.draw(rows) if rows > 0 else None
            if fake is not None and augmenting and cfg.augment_synthetic:
                fake = fake._replace(x=augment(fake.x, cfg, runtime.rng))
            classifier_step(epoch, batch, x, y, fake, sums)
        totals, seconds = sums.totals(), time.perf_counter() - started
        # Each epoch's row carries pretraining's total wall time, so its cost shows in every row (0.0 without it).
        phase = {"gan_pretrain_seconds": state.pretrain_seconds}
        if not finite(totals):
            raise Diverged(diverged(epoch, phase, seconds, num_train))

        # Metrics: validation, the GAN's losses per update when it trained, the generator's quality; the test split
        # and CAS after the last epoch; the bank entry.
        metrics = {"epoch": epoch, **measure.classifier_epoch(totals, len(batches), {**timing(seconds, num_train),
                                                                                    **phase}),
                   "lr": state.optimizer.param_groups[0]["lr"]}
        if train_gan:
            metrics.update(gan_losses(totals, sums.gan_keys, len(batches) * cfg.gan_steps_per_batch))
        metrics.update(measure.sample_quality(source, changing=train_gan and source is gan))
        if epoch == cfg.epochs:
            final, final_test = measure.final(source)
            metrics.update(final)
        metrics.update(generator_row)
        state.epoch = epoch
        report_pass(report, state, metrics, epoch, epoch == cfg.epochs, source=source)
    return {**state.metrics, **final_test}


def augment(images: torch.Tensor, cfg: TrialConfig, rng: torch.Generator) -> torch.Tensor:
    """cfg's traditional augmentation of a classifier batch: one op (or N for RandAugment) drawn per image, then
    cutout."""
    return traditional_augment(images, cfg.traditional_aug, rng, cutout=cfg.cutout,
                               randaugment_ops=cfg.randaugment_ops, randaugment_magnitude=cfg.randaugment_magnitude)
