"""One trial: `run(cfg, data, report)`, the whole experiment of one augmentation policy, in two phases that each read
on their own: the generator (trial.pretraining: its GAN pretrained, or loaded from the generator bank) and the
classifier (trial.training: trained with the generator's fresh samples, the GAN updated jointly unless frozen).

run never imports ray: Tune, tests, notebooks and `ganaug evaluate` all call it directly and receive one
`report(...)` per pass over the training split: per GAN pretraining pass (`epoch: 0`, `gan_pretrain_epoch: N`) when
gan_pretrain_epochs > 0, then per classifier epoch.

    from ganaug.config import TrialConfig
    from ganaug.data import load_data
    from ganaug.trial import run
    run(TrialConfig(synthetic_ratio=0.5, epochs=10), load_data({"name": "digits"}), print)

Beside it: runtime.py (device, RNG, precision), state.py (what a checkpoint holds), steps.py (the GAN's and the
classifier's updates), synthetic.py (the synthetic rows of a batch), measure.py (what a pass reports), reporter.py
(where reports go), bank.py (the generator bank).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ganaug.classifier import LABELERS, SYNTHETIC_BN, Teacher, build_classifier, build_optimizer
from ganaug.config import TrialConfig, trains_gan
from ganaug.data import ImageData, check_cutout
from ganaug.trial.bank import GeneratorBank
from ganaug.trial.measure import Diverged, PassMetrics
from ganaug.trial.pretraining import pretrain_generator, seeded_gan
from ganaug.trial.runtime import Runtime
from ganaug.trial.sources import build_source
from ganaug.trial.state import TrialState, load_checkpoint
from ganaug.trial.training import train_classifier

Report = Callable[..., None]


def run(
    cfg: TrialConfig,                   # The augmentation policy and training budget.
    data: ImageData,                    # uint8 images + DataSpec; moved to the trial's device here.
    report: Report | None = None,       # report(metrics, checkpoint=dir | None, images=dict | None) once per pass.
    checkpoint: str | Path | dict | None = None,  # Checkpoint directory (or its loaded state) to resume from.
    bank: GeneratorBank | None = None,  # Where pretrained GANs are shared (trial.bank); None = every trial pretrains.
) -> dict[str, Any]:
    """Pretrain the GAN for cfg.gan_pretrain_epochs, train the classifier (and, unless frozen, the GAN with it) for
    cfg.epochs, and return the last epoch's metrics.

    After the final epoch they also hold the test split's test_loss and test_per_class_acc (a list, one
    accuracy per class), which are returned only: a report carries test_acc and test_top5, Tune's scalars.
    A pass whose losses are not finite ends the trial at once: its metrics (diverged 1, the objective at its worst)
    are the last report and what run returns.
    """
    report = report or _print_report
    if checkpoint is not None and not isinstance(checkpoint, dict):
        checkpoint = load_checkpoint(checkpoint, cfg)
    runtime = Runtime.of(cfg)
    torch.manual_seed(cfg.seed)
    data = data.to(runtime.device)
    check_cutout(cfg.cutout, data.spec.height, data.spec.width)

    # Construct networks, and put them back where a checkpoint left them.
    state = build_state(cfg, data, runtime)
    if checkpoint is not None:  # resume: from a classifier epoch, or from the middle of GAN pretraining
        state.load_state_dict(checkpoint)
    measure = PassMetrics(cfg, data, state, runtime)

    # The two phases: the generator (over the search's training split, data.pretraining()), then the classifier,
    # which draws its synthetic rows from the policy's source (the GAN, a pool drawn once from it, a folder, ...).
    try:
        generator_row = pretrain_generator(cfg, state, data.pretraining(), runtime, measure, report, bank) \
            if state.pretrain_epochs > 0 else {}
        source = build_source(cfg, state.gan, data, runtime, bank, generator_row.get("generator_key", ""))
        final = train_classifier(cfg, state, data, runtime, measure, report, source, generator_row)
    except Diverged as ended:
        report(ended.metrics)
        return ended.metrics
    if bank is not None and generator_row and cfg.gan_freeze:  # a frozen generator is still the entry's own
        bank.record_final(generator_row["generator_key"], final)
    return final


def build_state(cfg: TrialConfig, data: ImageData, runtime: Runtime) -> TrialState:
    """A new trial's networks, as cfg and the dataset's shape say: the GAN first, on its own stream (synthetic_ratio 0
    is the no-GAN baseline inside the search space: no GAN is built or trained), then the classifier with its outputs
    as its labeling needs, its optimizer and EMA teacher."""
    spec = data.spec
    gan = seeded_gan(cfg, spec, data, runtime) if trains_gan(cfg) else None
    classifier = build_classifier(cfg.classifier, spec, LABELERS[cfg.labeling].num_outputs(spec.num_classes),
                                  cfg.classifier_width, split_bn=SYNTHETIC_BN[cfg.synthetic_bn],
                                  kwargs=cfg.classifier_kwargs, dropout=cfg.classifier_dropout)
    # ignore: torch's overloads of Module.to lack (device, memory_format) together, which it takes (_parse_to).
    classifier = classifier.to(runtime.device, memory_format=runtime.memory_format)  # type: ignore[call-overload]
    teacher = Teacher(classifier, cfg.teacher_ema) if cfg.teacher_ema > 0 else None
    return TrialState(cfg, classifier, build_optimizer(cfg, classifier.parameters()), gan, teacher, runtime.rng)


def _print_report(metrics: dict, checkpoint: str | None = None, images: dict | None = None) -> None:
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
    print(shown, flush=True)
