"""The joint trial: train a class-conditional GAN and the downstream classifier together, once.

`run(cfg, data, report)` is the whole experiment of one augmentation policy. It never imports ray:
Tune, tests, notebooks and `ganaug.evaluate` all call it directly and receive one `report(...)`
per epoch (and per GAN pretraining pass, with `epoch: 0`, when gan_pretrain_epochs > 0).

    from ganaug.config import TrialConfig
    from ganaug.data import load_data
    from ganaug.pipeline import run
    run(TrialConfig(synthetic_ratio=0.5, epochs=10), load_data({"name": "digits"}), print)
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ganaug.augment import traditional_augment
from ganaug.classifier import (
    LABELERS,
    Teacher,
    build_classifier,
    classification_accuracy_score,
    distill_target,
    keep_best_candidates,
    real_accuracy_score,
    score,
    synthetic_agreement,
    synthetic_rows,
)
from ganaug.config import ConfigError, TrialConfig, trains_gan
from ganaug.data import ImageData, batch_indices, pick_device, to_float, to_uint8
from ganaug.gan import SampleQuality, build_gan
from ganaug.trial.reporter import make_grid
from ganaug.trial.state import CHECKPOINT_FILE, load_checkpoint, save_checkpoint

Report = Callable[..., None]


def run(
    cfg: TrialConfig,                   # The augmentation policy and training budget.
    data: ImageData,                    # uint8 images + DataSpec; moved to the trial's device here.
    report: Report | None = None,       # report(metrics, checkpoint=dir | None, images=dict | None) once per pass.
    checkpoint: str | Path | dict | None = None,  # Checkpoint directory (or its loaded state) to resume from.
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
    torch.manual_seed(cfg.seed)
    generator = torch.Generator(device).manual_seed(cfg.seed)
    data = data.to(device)
    spec = data.spec
    num_classes = spec.num_classes
    if cfg.cutout > min(spec.height, spec.width):
        raise ConfigError(f"cutout={cfg.cutout} is out of range for {spec.height}x{spec.width} images; valid: "
                          f"0 (off) to {min(spec.height, spec.width)} px")
    # Traditional augmentation of a classifier batch: one op (or N for RandAugment) drawn per image.
    traditional = (lambda images: traditional_augment(
        images, cfg.traditional_aug, generator, cutout=cfg.cutout, randaugment_ops=cfg.randaugment_ops,
        randaugment_magnitude=cfg.randaugment_magnitude))
    augmenting = cfg.traditional_aug != "none" or cfg.cutout > 0

    # Construct networks.
    labeler = LABELERS[cfg.labeling]
    classifier = build_classifier(cfg.classifier, spec, labeler.num_outputs(num_classes), cfg.classifier_width,
                                  split_bn=cfg.synthetic_bn == "split", kwargs=cfg.classifier_kwargs)
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    classifier = classifier.to(device, memory_format=memory_format)
    teacher = Teacher(classifier, cfg.teacher_ema) if cfg.teacher_ema > 0 else None
    # fused: one kernel updates every parameter, instead of a Python loop over them per step; a quickstart
    # trial is ~18 % faster on the CPU (benchmarks/README.md), and it is the fast path on CUDA too.
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=cfg.classifier_lr, weight_decay=cfg.weight_decay,
                                  fused=True)
    # synthetic_ratio 0 is the no-GAN baseline inside the search space: no GAN is built or trained.
    gan = build_gan(cfg, spec, device, data) if trains_gan(cfg) else None
    synthetic_weights = _synthetic_class_weights(spec.class_counts, device)
    grid_labels = torch.arange(num_classes, device=device).repeat_interleave(8 if num_classes > 20 else 10)
    # Generator quality against a fixed real reference (~1,000 images at most, so it stays a small share of an
    # epoch); its own noise seed, so measuring never changes what the trial draws and epochs compare.
    quality = SampleQuality(data.train_x, data.train_y, num_classes, per_class=max(8, min(64, 1000 // num_classes))
                            ) if gan is not None else None

    # Resume: from a classifier epoch, or from the middle of GAN pretraining (classifier epoch still 0).
    start_epoch, metrics, final_test = 0, {}, {}
    # Pretraining trains a GAN; the no-GAN baseline has none to pretrain.
    pretrain_epochs = cfg.gan_pretrain_epochs if gan is not None else 0
    pretrained, pretrain_seconds = 0, 0.0
    if checkpoint is not None:
        state = checkpoint
        classifier.load_state_dict(state["classifier"])
        optimizer.load_state_dict(state["optimizer"])
        if gan is not None:
            gan.load_state_dict(state["gan"])
        if teacher is not None:
            teacher.load_state_dict(state["teacher"])
        torch.set_rng_state(state["torch_rng"])
        generator.set_state(state["generator_rng"].to(generator.get_state().device))
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"])
        start_epoch, metrics = state["epoch"], state["metrics"]
        # Checkpoints from before GAN pretraining existed lack these keys: their classifier had already started.
        pretrained = state.get("pretrain_epoch", pretrain_epochs)
        pretrain_seconds = state.get("gan_pretrain_seconds", 0.0)

    # Measure the untrained classifier once: it does not change during pretraining, and Tune needs the
    # objective in every result. The first training images, not a random draw: no RNG is used, so a run
    # resumed mid-pretraining measures the same.
    untrained = {}
    if pretrained < pretrain_epochs:
        val = score(classifier, data.val_x, data.val_y, labeler, num_classes, autocast=autocast)
        train = score(classifier, data.train_x[:1024], data.train_y[:1024], labeler, num_classes,
                         autocast=autocast)
        untrained = {"val_acc": val["acc"], "val_top5": val["top5"], "val_loss": val["loss"],
                     "train_acc": train["acc"]}

    # Passes over the training split: GAN-only pretraining passes first (classifier epoch 0, counted by
    # gan_pretrain_epoch), then classifier epochs. Both share the batches, the GAN updates, the divergence
    # check and the checkpoints; ASHA's time attribute `epoch` counts classifier epochs only.
    num_train = len(data.train_y)
    passes = [(0, p) for p in range(pretrained + 1, pretrain_epochs + 1)]
    passes += [(epoch, pretrain_epochs) for epoch in range(start_epoch + 1, cfg.epochs + 1)]
    for epoch, pretrain_epoch in passes:
        started = time.perf_counter()
        pretraining = epoch == 0
        number = pretrain_epoch if pretraining else epoch  # of this pass within its phase
        classifier.train()
        # Hybrid schedule: every third epoch the discriminator sees balanced batches.
        real_fraction = 0.5 if cfg.d_mix_schedule == "hybrid" and number % 3 == 0 else cfg.d_real_fraction
        use_synthetic = gan is not None and not pretraining and epoch > cfg.gan_warmup_epochs
        # synthetic_schedule: this epoch's share of synthetic_ratio (anneal / front end on real data).
        ratio = cfg.synthetic_ratio * synthetic_share(cfg.synthetic_schedule, epoch, cfg.epochs)
        # A frozen GAN stops training once the classifier starts and only samples from then on.
        train_gan = gan is not None and (pretraining or not cfg.gan_freeze)
        # Running sums stay on the device: one host sync per epoch, not per step.
        sums = {k: torch.zeros((), device=device) for k in ("d_loss", "g_loss", "loss", "correct", "seen",
                                                           "kept_score", "kept")}
        batches = batch_indices(num_train, cfg.batch_size, generator, device)
        for index in batches:
            x, y = to_float(data.train_x[index]), data.train_y[index]

            # GAN updates, each d_steps discriminator steps on mixed real/fake batches and one generator step.
            # The first uses the classifier's real batch; each further one draws its own real batch of the
            # same size, so a larger GAN budget sees more data instead of fitting one batch several times.
            if train_gan:
                gan_x, gan_y, gan_index = x, y, index
                for update in range(cfg.gan_steps_per_batch):
                    if update > 0:
                        gan_index = torch.randint(num_train, (len(y),), generator=generator, device=device)
                        gan_x, gan_y = to_float(data.train_x[gan_index]), data.train_y[gan_index]
                    # gan_conditions: the GAN also gets the batch's continuous attributes (ganaug.conditions).
                    attributes = {"real_attributes": data.train_attributes[gan_index]} if cfg.gan_conditions else {}
                    losses = gan.train_step(gan_x, gan_y, real_fraction, generator, autocast, **attributes)
                    for key, value in losses.items():  # d_loss, g_loss and a family's own (translation: cycle_loss)
                        sums[key] = sums[key] + value if key in sums else value
            if pretraining:
                continue  # the classifier, its BatchNorm buffers and its optimizer wait for pretraining

            # Classifier step: real batch (+ traditional augmentation) and fresh synthetic images in ONE forward
            # pass, so BatchNorm statistics always describe the mixed batch the classifier is trained on.
            if augmenting:
                x = traditional(x)
            images, targets, synthetic = x, y, torch.zeros(len(y), dtype=torch.bool, device=device)
            # distill's soft targets of the rows (a real row's is never read: it keeps its one-hot label).
            soft = torch.zeros(len(y), num_classes, device=device) if cfg.labeling == "distill" else None
            n_synthetic = round(ratio * len(y)) if use_synthetic else 0
            if n_synthetic > 0:
                fake_y = _synthetic_labels(n_synthetic, synthetic_weights, generator)
                if cfg.filter_candidates > 1:
                    # Draw k candidates per image and keep, class by class, the best-scored: same size and
                    # class counts. The teacher scores when there is one, else ACGAN's auxiliary head.
                    candidates_y = fake_y.repeat(cfg.filter_candidates)
                    candidates = gan.sample(candidates_y, generator)
                    with autocast():
                        scores = (teacher.probabilities(candidates).gather(1, candidates_y[:, None]).squeeze(1)
                                  if teacher is not None else gan.class_scores(candidates, candidates_y))
                    keep = keep_best_candidates(scores.float(), candidates_y, fake_y, num_classes)
                    fake_x, fake_y = candidates[keep], candidates_y[keep]
                    sums["kept_score"] += scores[keep].float().sum()
                    sums["kept"] += n_synthetic
                else:
                    fake_x = gan.sample(fake_y, generator)
                if cfg.labeling == "distill":
                    with autocast():
                        teacher_logits = teacher.model(fake_x)
                    soft = torch.cat([soft, distill_target(teacher_logits, fake_y, cfg.distill_weight,
                                                           cfg.distill_temperature)])
                images = torch.cat([x, traditional(fake_x) if augmenting and cfg.augment_synthetic else fake_x])
                targets = torch.cat([y, fake_y])
                synthetic = torch.cat([synthetic, torch.ones(n_synthetic, dtype=torch.bool, device=device)])
            # synthetic_bn: split normalises rows from len(y) on with their own BatchNorm (a no-op when shared).
            with autocast(), synthetic_rows(classifier, len(y)):
                logits = classifier(images.contiguous(memory_format=memory_format))
            loss = labeler.loss(logits.float(), targets, synthetic, soft)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if teacher is not None:
                teacher.update(classifier)
            with torch.no_grad():
                real_logits = labeler.predict_logits(logits[: len(y)].float(), num_classes)
                sums["correct"] += (real_logits.argmax(1) == y).sum()
                sums["seen"] += len(y)
                sums["loss"] += loss.detach()

        # Non-finite losses end the trial here with the objective at its worst value.
        totals = {k: v.item() for k, v in sums.items()}
        epoch_seconds = time.perf_counter() - started
        # A pretraining row names its pass; a classifier epoch's row carries pretraining's total wall time, so
        # its cost shows in every row (0.0 without pretraining).
        phase = {"gan_pretrain_epoch": pretrain_epoch} if pretraining else {"gan_pretrain_seconds": pretrain_seconds}
        if not all(math.isfinite(v) for v in totals.values()):
            metrics = {"epoch": epoch, **phase, "val_acc": 0.0, "val_top5": 0.0, "val_loss": float("inf"),
                       "train_acc": 0.0, "diverged": 1, "epoch_seconds": epoch_seconds,
                       "images_per_second": num_train / epoch_seconds}
            report(metrics)
            return metrics

        # Metrics: a pretraining pass repeats the untrained classifier's; a classifier epoch is validated
        # (the search objective) once. Both carry the GAN losses when the GAN trained, averaged per update.
        if pretraining:
            pretrain_seconds += epoch_seconds
            metrics = {"epoch": 0, **phase, **untrained, "epoch_seconds": epoch_seconds,
                       "images_per_second": num_train / epoch_seconds, "diverged": 0}
        else:
            val = score(classifier, data.val_x, data.val_y, labeler, num_classes, autocast=autocast)
            metrics = {
                "epoch": epoch,
                "val_acc": val["acc"],
                "val_top5": val["top5"],
                "val_loss": val["loss"],
                "train_acc": totals["correct"] / max(totals["seen"], 1),
                "train_loss": totals["loss"] / max(len(batches), 1),
                "epoch_seconds": epoch_seconds,
                "images_per_second": num_train / epoch_seconds,
                "diverged": 0,
                **phase,
            }
            if teacher is not None:  # reported beside the objective, never instead of it
                metrics["val_acc_teacher"] = score(teacher.model, data.val_x, data.val_y, labeler, num_classes,
                                                      autocast=autocast)["acc"]
            if totals["kept"] > 0:  # the scorer's mean confidence in the kept samples' conditioning classes
                metrics["filter_confidence"] = totals["kept_score"] / totals["kept"]
        if train_gan:
            gan_updates = max(len(batches) * cfg.gan_steps_per_batch, 1)
            metrics.update({key: totals[key] / gan_updates for key in losses})  # the GAN's keys, as train_step's
        if gan is not None and not pretraining:
            metrics["synthetic_agreement"] = synthetic_agreement(
                classifier, gan, labeler, num_classes, n=min(1000, 50 * num_classes), generator=generator)
        if gan is not None:
            # Collapse shows here, not in the objective: synthetic_diversity ~0 = one image per class.
            metrics.update(quality(gan, torch.Generator(device).manual_seed(cfg.seed + 54321)))
            # A family's own figures (ali's reconstruction error, conditions' condition_error); they draw no
            # training randomness.
            metrics.update(gan.epoch_metrics())

        # Final epoch: test accuracy (reported, never optimised) and the train-on-synthetic score. The test
        # runs in fp32 whatever cfg.precision: the score of the final classifier itself, as evaluate reports it.
        last = epoch == cfg.epochs
        if last:
            test = score(classifier, data.test_x, data.test_y, labeler, num_classes)
            metrics.update(test_acc=test["acc"], test_top5=test["top5"])
            final_test = {"test_loss": test["loss"], "test_per_class_acc": test["per_class"]}
            if gan is not None and cfg.cas_epochs > 0:
                metrics["cas"] = classification_accuracy_score(
                    cfg, spec, gan, data.val_x, data.val_y, device, cfg.cas_epochs, generator=generator)
                # The same classifier and budget on real images: cas_ratio 1 = samples teach as much as real data.
                real = real_accuracy_score(cfg, spec, data.train_x, data.train_y, data.val_x, data.val_y, device,
                                           cfg.cas_epochs, generator=torch.Generator(device).manual_seed(cfg.seed))
                metrics["cas_ratio"] = metrics["cas"] / max(real, 1e-8)

        # Report, with a sample grid (rows = classes) and a checkpoint when due. Pretraining passes count on
        # their own, and the last one always writes both: it holds the GAN the classifier starts with.
        phase_ends = pretrain_epoch == pretrain_epochs if pretraining else last
        images = None
        if gan is not None and (phase_ends or number % cfg.sample_every == 0):
            fixed_noise = torch.Generator(device).manual_seed(cfg.seed + 12345)
            samples = gan.sample(grid_labels, fixed_noise)
            nrow = len(grid_labels) // num_classes
            images = {"samples": to_uint8(make_grid(samples.float(), nrow=nrow, padding=1)).cpu()}
        if phase_ends or number % cfg.checkpoint_every == 0:
            state = {
                "config": cfg.to_dict(),
                "epoch": epoch,
                "pretrain_epoch": pretrain_epoch,  # pretraining passes done; the classifier starts after all
                "gan_pretrain_seconds": pretrain_seconds,
                "metrics": metrics,
                "classifier": classifier.state_dict(),
                "optimizer": optimizer.state_dict(),
                "gan": gan.state_dict() if gan is not None else {},
                "teacher": teacher.state_dict() if teacher is not None else {},
                "torch_rng": torch.get_rng_state(),
                "generator_rng": generator.get_state(),
            }
            if device.type == "cuda":
                state["cuda_rng"] = torch.cuda.get_rng_state()
            with tempfile.TemporaryDirectory(prefix="ganaug_ckpt_") as directory:
                save_checkpoint(Path(directory) / CHECKPOINT_FILE, state)
                report(metrics, checkpoint=directory, images=images)
        else:
            report(metrics, images=images)
    return {**metrics, **final_test}


def synthetic_share(schedule: str, epoch: int, epochs: int) -> float:
    """The share of synthetic_ratio used in `epoch` of `epochs` (synthetic_schedule).

    constant: 1 throughout; front: 1 in the first half, 0 after (first GAN images, then real ones); anneal:
    1 in the first half, then linearly down to 0 at the last epoch (the classifier ends on real data).
    """
    half = epochs // 2
    if schedule == "constant" or epoch <= half:
        return 1.0
    if schedule == "front":
        return 0.0
    return (epochs - epoch) / (epochs - half)


def _synthetic_class_weights(class_counts, device) -> torch.Tensor:
    """Conditioning weights: uniform for balanced data, inverse-frequency (minority classes first) otherwise."""
    counts = torch.tensor(class_counts, dtype=torch.float64, device=device).clamp(min=1)
    weights = counts.max() / counts
    return weights / weights.sum()


def _synthetic_labels(n: int, weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """n class labels whose counts follow `weights` as closely as integers allow, in random order.

    Exact quotas (not i.i.d. draws) keep every classifier batch class-balanced; the remainder goes to
    the classes with the largest weights first, i.e. the minority classes of an imbalanced dataset.
    """
    quotas = weights * n
    counts = quotas.floor().long()
    # Everything stays on the device (no int(...) of a device tensor): this runs every step, and a host
    # sync per step would stall a GPU. The remainder goes to the top-`remainder` fractional parts.
    remainder = n - counts.sum()
    # Break ties randomly so no class is always first among equals.
    jitter = torch.rand(len(weights), generator=generator, device=weights.device, dtype=weights.dtype) * 1e-6
    rank = torch.argsort(torch.argsort(quotas - counts + jitter, descending=True))
    counts = counts + (rank < remainder).long()
    labels = torch.repeat_interleave(torch.arange(len(weights), device=weights.device), counts, output_size=n)
    return labels[torch.randperm(n, generator=generator, device=weights.device)]


def _print_report(metrics: dict, checkpoint: str | None = None, images: dict | None = None) -> None:
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
    print(shown, flush=True)
