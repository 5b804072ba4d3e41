"""The joint trial: train a class-conditional GAN and the downstream classifier together, once.

`run(cfg, data, report)` is the whole experiment of one augmentation policy. It never imports ray:
Tune, tests, notebooks and `ganaug evaluate` all call it directly and receive one `report(...)`
per pass over the training split: per classifier epoch, and per GAN pretraining pass (`epoch: 0`,
`gan_pretrain_epoch: N`) when gan_pretrain_epochs > 0.

    from ganaug.config import TrialConfig
    from ganaug.data import load_data
    from ganaug.trial import run
    run(TrialConfig(synthetic_ratio=0.5, epochs=10), load_data({"name": "digits"}), print)

The steps of a pass live beside it: steps.py (the GAN's and the classifier's updates), synthetic.py (the synthetic
rows of a batch), measure.py (what a pass reports), state.py (what a checkpoint holds).
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ganaug.augment import traditional_augment
from ganaug.classifier import LABELERS, LearningRate, Teacher, build_classifier, build_optimizer
from ganaug.config import TrialConfig, check_cutout, trains_gan
from ganaug.data import ClassIndex, ImageData, balanced_batch_indices, batch_indices, pick_device, to_float
from ganaug.gan import build_gan
from ganaug.trial.bank import BankedPretraining, GeneratorBank
from ganaug.trial.measure import PassMetrics, diverged, finite
from ganaug.trial.reporter import sample_grid
from ganaug.trial.state import CHECKPOINT_FILE, TrialState, load_checkpoint, save_checkpoint
from ganaug.trial.steps import ClassifierStep, RunningSums, balancing, gan_updates
from ganaug.trial.synthetic import SyntheticImages

Report = Callable[..., None]


class Pass(NamedTuple):
    """One pass over the training split: GAN pretraining pass `number` (the classifier waits, epoch 0), or
    classifier epoch `number`; `last`: the last of its phase (it always writes a sample grid and a checkpoint)."""

    pretraining: bool
    number: int
    last: bool

    @property
    def epoch(self) -> int:
        """ASHA's time attribute: classifier epochs only."""
        return 0 if self.pretraining else self.number


def passes(cfg: TrialConfig, state: TrialState) -> Iterator[Pass]:
    """The passes a trial still has to make: the GAN pretraining passes after state.pretrain_epoch, then the
    classifier epochs after state.epoch."""
    for number in range(state.pretrain_epoch + 1, state.pretrain_epochs + 1):
        yield Pass(True, number, number == state.pretrain_epochs)
    for number in range(state.epoch + 1, cfg.epochs + 1):
        yield Pass(False, number, number == cfg.epochs)


def run(
    cfg: TrialConfig,                   # The augmentation policy and training budget.
    data: ImageData,                    # uint8 images + DataSpec; moved to the trial's device here.
    report: Report | None = None,       # report(metrics, checkpoint=dir | None, images=dict | None) once per pass.
    checkpoint: str | Path | dict | None = None,  # Checkpoint directory (or its loaded state) to resume from.
    bank: GeneratorBank | None = None,  # Where pretrained GANs are shared (trial.bank); None = every trial pretrains.
) -> dict[str, Any]:
    """Pretrain the GAN for cfg.gan_pretrain_epochs, train GAN + classifier jointly for cfg.epochs, and return
    the last epoch's metrics.

    After the final epoch they also hold the test split's test_loss and test_per_class_acc (a list, one
    accuracy per class), which are returned only: a report carries test_acc and test_top5, Tune's scalars.
    """
    report = report or _print_report
    if checkpoint is not None and not isinstance(checkpoint, dict):
        checkpoint = load_checkpoint(checkpoint, cfg)

    # Choose device and precision.
    device = pick_device(cfg.device)
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    # Autocast covers convs and matmuls; BatchNorm runs in fp32 under autocast by design.
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    torch.manual_seed(cfg.seed)
    rng = torch.Generator(device).manual_seed(cfg.seed)
    data = data.to(device)
    spec, num_classes, num_train = data.spec, data.spec.num_classes, len(data.train_y)
    check_cutout(cfg.cutout, spec.height, spec.width)

    # Construct networks: the classifier (its outputs as its labeling needs), its optimizer and EMA teacher, and
    # the GAN (synthetic_ratio 0 is the no-GAN baseline inside the search space: no GAN is built or trained).
    labeler = LABELERS[cfg.labeling]
    classifier = build_classifier(cfg.classifier, spec, labeler.num_outputs(num_classes), cfg.classifier_width,
                                  split_bn=cfg.synthetic_bn == "split", kwargs=cfg.classifier_kwargs,
                                  dropout=cfg.classifier_dropout)
    # ignore: torch's overloads of Module.to lack (device, memory_format) together, which it takes (_parse_to).
    classifier = classifier.to(device, memory_format=memory_format)  # type: ignore[call-overload]
    teacher = Teacher(classifier, cfg.teacher_ema) if cfg.teacher_ema > 0 else None
    optimizer = build_optimizer(cfg, classifier.parameters())
    # The GAN draws its initial weights from its own stream, so that they depend on its keys and the seed only (not
    # on the classifier built before it): what the generator bank's key says.
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        gan = build_gan(cfg, spec, device, data) if trains_gan(cfg) else None
    state = TrialState(cfg, classifier, optimizer, gan, teacher, rng)
    if checkpoint is not None:  # resume: from a classifier epoch, or from the middle of GAN pretraining
        state.load_state_dict(checkpoint)
    # GAN pretraining passes over the search's training split (data.pretraining()); with a generator bank, a GAN
    # pretrained before with the same key is loaded instead and the passes are skipped.
    pretrain = data.pretraining()
    banked = BankedPretraining(bank, cfg, gan, state, pretrain, device, use_bf16) \
        if bank is not None and state.pretrain_epochs > 0 else None
    if banked is not None:
        banked.start()
    batches_per_epoch = math.ceil(num_train / cfg.batch_size)
    learning_rate = LearningRate(optimizer, cfg, batches_per_epoch)
    classifier_step = ClassifierStep(cfg, classifier, optimizer, learning_rate, labeler, teacher, num_classes,
                                     rng, autocast, memory_format, spec.class_counts)
    synthetic = SyntheticImages(cfg, gan, teacher, spec.class_counts, rng, autocast)
    measure = PassMetrics(cfg, data, labeler, classifier, teacher, gan, rng, autocast)
    untrained = measure.untrained() if state.pretrain_epoch < state.pretrain_epochs else {}
    augmenting = cfg.traditional_aug != "none" or cfg.cutout > 0
    train_classes = ClassIndex(data.train_y, num_classes) if cfg.class_balance == "resample" else None
    final_test: dict[str, Any] = {}

    for current in passes(cfg, state):
        started = time.perf_counter()
        classifier.train()
        # Hybrid schedule: every third pass the discriminator sees balanced batches.
        real_fraction = 0.5 if cfg.d_mix_schedule == "hybrid" and current.number % 3 == 0 else cfg.d_real_fraction
        # A frozen GAN stops training once the classifier starts and only samples from then on.
        train_gan = gan is not None and (current.pretraining or not cfg.gan_freeze)
        sums = RunningSums(device)
        source = pretrain if current.pretraining else data
        # class_balance resample (after class_balance_start_epoch): class-balanced real batches, as many and as large
        # (the GAN's first update of each batch sees that batch too; its extra updates draw from the whole split).
        batches = balanced_batch_indices(train_classes, cfg.batch_size, rng) if train_classes is not None and \
            balancing(cfg, current.epoch) else batch_indices(len(source.train_y), cfg.batch_size, rng, device)
        for batch, index in enumerate(batches):
            x, y = to_float(source.train_x[index]), source.train_y[index]
            if train_gan:
                gan_updates(gan, source, index, x, y, cfg.gan_steps_per_batch, real_fraction, rng, autocast,
                            sums)
            if current.pretraining:
                if banked is not None:
                    banked.tick()
                continue  # the classifier, its BatchNorm buffers and its optimizer wait for pretraining
            # Classifier step: the real batch (one traditional augmentation drawn per image) and fresh synthetic rows.
            if augmenting:
                x = augment(x, cfg, rng)
            n_synthetic = synthetic.count(current.epoch, len(y))
            fake = synthetic.draw(n_synthetic) if n_synthetic > 0 else None
            if fake is not None and augmenting and cfg.augment_synthetic:
                fake = fake._replace(x=augment(fake.x, cfg, rng))
            classifier_step((current.epoch - 1) * batches_per_epoch + batch, x, y, fake, sums, current.epoch)

        # Non-finite losses end the trial here with the objective at its worst value.
        totals, seconds = sums.totals(), time.perf_counter() - started
        # A pretraining row names its pass; a classifier epoch's row carries pretraining's total wall time, so
        # its cost shows in every row (0.0 without pretraining).
        phase: dict[str, float] = {"gan_pretrain_epoch": current.number} if current.pretraining else \
            {"gan_pretrain_seconds": state.pretrain_seconds}
        if not finite(totals):
            metrics = diverged(current.epoch, phase, seconds, num_train)
            if banked is not None:
                banked.release()
            report(metrics)
            return metrics

        # Metrics: a pretraining pass repeats the untrained classifier's, a classifier epoch is validated; both carry
        # the GAN's losses (averaged per update) when it trained, and the generator's quality.
        timing = {"epoch_seconds": seconds, "images_per_second": num_train / seconds, "diverged": 0}
        if current.pretraining:
            state.pretrain_seconds += seconds
            metrics = {"epoch": 0, **phase, **untrained, **timing}
        else:
            metrics = {"epoch": current.epoch, **measure.classifier_epoch(totals, len(batches), {**timing, **phase}),
                       "lr": optimizer.param_groups[0]["lr"]}
        if train_gan:
            updates = max(len(batches) * cfg.gan_steps_per_batch, 1)
            metrics.update({key: totals[key] / updates for key in sums.gan_keys})
        metrics.update(measure.sample_quality(current.pretraining))
        if current.last and not current.pretraining:
            final, final_test = measure.final()
            metrics.update(final)
        if banked is not None:  # its key, whether it was reused; a new entry after the last pretraining pass
            if current.pretraining:
                banked.after_pass(current.last, metrics)
            else:
                metrics.update(banked.row())
                if current.last:
                    banked.after_final(metrics)

        # Report, with a sample grid (rows = classes) and a checkpoint when due: pretraining passes count on their
        # own, and the last one always writes both, as it holds the GAN the classifier starts with.
        if current.pretraining:
            state.pretrain_epoch = current.number
        else:
            state.epoch = current.number
        state.metrics = metrics
        images = {"samples": sample_grid(gan, num_classes, cfg.seed + 12345)} \
            if gan is not None and (current.last or current.number % cfg.sample_every == 0) else None
        if current.last or current.number % cfg.checkpoint_every == 0:
            with tempfile.TemporaryDirectory(prefix="ganaug_ckpt_") as directory:
                save_checkpoint(Path(directory) / CHECKPOINT_FILE, state.state_dict())
                report(metrics, checkpoint=directory, images=images)
        else:
            report(metrics, images=images)
    return {**state.metrics, **final_test}


def augment(images: torch.Tensor, cfg: TrialConfig, rng: torch.Generator) -> torch.Tensor:
    """cfg's traditional augmentation of a classifier batch: one op (or N for RandAugment) drawn per image, then
    cutout."""
    return traditional_augment(images, cfg.traditional_aug, rng, cutout=cfg.cutout,
                               randaugment_ops=cfg.randaugment_ops, randaugment_magnitude=cfg.randaugment_magnitude)


def _print_report(metrics: dict, checkpoint: str | None = None, images: dict | None = None) -> None:
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
    print(shown, flush=True)
