"""Every metric a trial reports, declared once: its name, which direction is better, when it is reported and by which
part of the trial, what it means, and where else it goes. The search's objective choices, the Optuna study's
user_attrs, summary.csv's columns, best_policy.yaml's metrics, evaluation.csv's test columns and docs/outputs.md's
table (rendered by `python -m ganaug.space.keys metrics`) all take their names from METRICS. Imports nothing of ganaug.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Mode = Literal["max", "min"]
# When a metric is reported: every pass (GAN pretraining passes too), every classifier epoch, after the last epoch
# only, or never (run returns it; evaluate reads it).
WHEN = {"pass": "every pass", "epoch": "every classifier epoch", "final": "the last epoch", "returned": "returned"}
# Which part of a trial measures it.
PARTS = ("classifier", "generator", "bank", "run")
SHOT_GROUPS = ("many", "medium", "few")  # classes by training count (classifier.accuracy.shot_groups)
# Where a metric goes besides every trial's result.json, progress.csv, metrics.jsonl and TensorBoard.
DESTINATIONS = {
    "objective": "a search may optimise it (metric.name)",
    "study": "each finished Optuna trial carries it as a user_attr",
    "summary": "a column of summary.csv (its last value)",
    "policy": "best_policy.yaml keeps it",
    "evaluation": "a test column of evaluation.csv: each evaluate run's score",
}


@dataclass(frozen=True)
class Metric:
    name: str
    mode: Mode | None               # which value is better; None: neither (a time, a count, a name)
    when: str                       # WHEN
    part: str                       # PARTS
    doc: str                        # what it means (a line of docs/outputs.md's table)
    goes: tuple[str, ...] = ()      # DESTINATIONS

    def __post_init__(self):
        if self.when not in WHEN or self.part not in PARTS or not set(self.goes) <= set(DESTINATIONS):
            raise AssertionError(f"metric {self.name}: when {self.when!r}, part {self.part!r} or goes {self.goes} "
                                 f"not among {list(WHEN)}, {list(PARTS)}, {list(DESTINATIONS)}")


def _groups(template: str, when: str, part: str, doc: str, goes: tuple[str, ...]) -> tuple[Metric, ...]:
    return tuple(Metric(template.format(group=group), "max", when, part, doc.format(group=group), goes)
                 for group in SHOT_GROUPS)


KEPT = ("policy",)
METRICS: tuple[Metric, ...] = (
    # The classifier on validation (the objective) and on the training batches it saw.
    Metric("val_acc", "max", "pass", "classifier", "validation accuracy: the objective (GAN pretraining passes: the "
           "untrained classifier's)", ("objective", "policy")),
    Metric("val_balanced_acc", "max", "pass", "classifier", "mean per-class validation accuracy: the objective on "
           "long-tailed data", ("objective", "policy")),
    Metric("val_top5", "max", "pass", "classifier", "top-5 validation accuracy", ("objective", "policy")),
    Metric("val_loss", "min", "pass", "classifier", "validation cross-entropy", ("objective", "policy")),
    Metric("train_acc", "max", "pass", "classifier", "accuracy on the real rows of the epoch's training batches",
           ("objective", "policy")),
    Metric("train_loss", "min", "epoch", "classifier", "the classifier's training loss, mean over the epoch's batches",
           KEPT),
    Metric("val_acc_teacher", "max", "epoch", "classifier", "validation accuracy of the EMA teacher (teacher_ema > 0)",
           KEPT),
    Metric("filter_confidence", "max", "epoch", "classifier", "filter_candidates > 1: the scorer's mean confidence in "
           "the kept samples' conditioning classes", KEPT),
    Metric("lr", None, "epoch", "classifier", "the classifier's learning rate at the epoch's end"),
    # The test split, once, after the last epoch: reported, never optimised.
    Metric("test_acc", "max", "final", "classifier", "test accuracy of the final classifier",
           ("study", "summary", "policy", "evaluation")),
    Metric("test_top5", "max", "final", "classifier", "top-5 test accuracy", ("policy", "evaluation")),
    Metric("test_balanced_acc", "max", "final", "classifier", "mean per-class test accuracy",
           ("summary", "policy", "evaluation")),
    *_groups("test_{group}_acc", "final", "classifier", "mean test accuracy of the {group}-shot classes (nan for a "
             "group without classes)", ("policy", "evaluation")),
    Metric("test_loss", "min", "returned", "classifier", "test cross-entropy (evaluation.csv)"),
    Metric("test_per_class_acc", None, "returned", "classifier", "test accuracy of each class (evaluation.csv's "
           "per_class_acc)"),
    # The generator: its losses, its quality, CAS.
    Metric("d_loss", None, "pass", "generator", "the discriminator's loss, mean per GAN update", KEPT),
    Metric("g_loss", None, "pass", "generator", "the generator's loss, mean per GAN update", KEPT),
    Metric("cycle_loss", None, "pass", "generator", "gan: translation: the L1 cycle error, unweighted", KEPT),
    Metric("ali_reconstruction", "min", "pass", "generator", "gan: ali: mean |G(E(x), y) - x| on training images",
           KEPT),
    Metric("ali_reconstruction_random", None, "pass", "generator", "gan: ali: the same for random codes", KEPT),
    Metric("ali_phase", None, "pass", "generator", "gan: ali: 1 while the ALI phase lasts, 0 in the ACGAN phase"),
    Metric("condition_error", "min", "pass", "generator", "gan_conditions: how far samples' predicted attributes are "
           "from those they were conditioned on", KEPT),
    Metric("cas", "max", "final", "generator", "classification accuracy score: a classifier trained on samples only, "
           "tested on real validation images", ("study", "summary", "policy")),
    Metric("cas_ratio", "max", "final", "generator", "cas over the same classifier trained on as many real images: "
           "1 = samples teach as much as real data", ("study", "summary", "policy")),
    *_groups("cas_{group}", "final", "generator", "cas of the {group}-shot classes", KEPT),
    *_groups("cas_ratio_{group}", "final", "generator", "cas_ratio of the {group}-shot classes", KEPT),
    Metric("cas_per_class", None, "returned", "generator", "cas of each class"),
    Metric("real_per_class", None, "returned", "generator", "the real-trained reference of each class"),
    Metric("synthetic_agreement", "max", "epoch", "generator", "share of fresh samples the current classifier assigns "
           "to their conditioning class", KEPT),
    Metric("synthetic_diversity", "max", "pass", "generator", "within-class spread of samples over that of real "
           "images: ~0 = collapse, ~1 = as varied as the data", ("summary", "policy")),
    Metric("frechet_distance", "min", "pass", "generator", "Fréchet distance of samples to real training images in a "
           "fixed random-CNN feature space", ("summary", "policy")),
    # The generator bank (trials that pretrain a GAN with a bank).
    Metric("generator_key", None, "epoch", "bank", "the bank entry of the trial's generator",
           ("summary", "policy")),
    Metric("generator_reused", None, "epoch", "bank", "1: loaded from the bank, 0: trained by this trial",
           ("summary", "policy")),
    Metric("generator_train_seconds", None, "epoch", "bank", "the entry's own pretraining time", KEPT),
    # The run: where it is, how long it took, whether it diverged.
    Metric("epoch", None, "pass", "run", "classifier epochs done (ASHA's time; 0 in GAN pretraining passes)", KEPT),
    Metric("gan_pretrain_epoch", None, "pass", "run", "GAN pretraining passes only: the pass's number"),
    Metric("gan_pretrain_seconds", None, "epoch", "run", "the trial's own GAN pretraining wall time (0 when it loaded "
           "its generator)", KEPT),
    Metric("epoch_seconds", None, "pass", "run", "the pass's wall time"),
    Metric("images_per_second", None, "pass", "run", "real training images per second of the pass"),
    Metric("diverged", None, "pass", "run", "1: a loss was not finite, the trial ended with the objective at its worst",
           ("study",)),
)
BY_NAME = {metric.name: metric for metric in METRICS}


def names(goes: str) -> tuple[str, ...]:
    """The metrics that go to `goes` (DESTINATIONS), in table order."""
    if goes not in DESTINATIONS:
        raise KeyError(f"{goes!r} is not among {', '.join(DESTINATIONS)}")
    return tuple(metric.name for metric in METRICS if goes in metric.goes)


# The metrics a search may optimise, with the direction that is better (space.schema: metric.mode may not contradict).
OBJECTIVES: dict[str, Mode] = {metric.name: metric.mode for metric in METRICS
                               if "objective" in metric.goes and metric.mode is not None}
