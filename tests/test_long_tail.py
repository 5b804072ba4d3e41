"""Long-tailed data and the baselines long-tail work demands: data.long_tail's profile and its balanced validation
split, class_balance (reweight, logit_adjust, resample, deferred: DRW), synthetic_spread, the balanced and shot-group
accuracies, and a real run on long-tailed digits."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganaug.classifier import (
    LABELERS,
    balanced_cross_entropy,
    class_balance_loss,
    effective_number_weights,
    group_accuracies,
    logit_adjustment,
    per_class_accuracy,
    score,
    shot_groups,
)
from ganaug.config import TrialConfig
from ganaug.data import (
    ClassIndex,
    DataConfig,
    DataError,
    balanced_batch_indices,
    batch_indices,
    load_data,
    long_tail_counts,
)
from ganaug.space.spec import load_space
from ganaug.trial import run
from ganaug.trial.runtime import Runtime
from ganaug.trial.steps import ClassifierStep, RunningSums, balancing
from ganaug.trial.synthetic import synthetic_class_weights


def digits(**data):
    return load_data({"name": "digits", **data})


# ----------------------------------------------------------------------------------------------
# data.long_tail: the profile, the balanced validation split, train + val.

@pytest.mark.parametrize("ratio", [1, 2.5, 10, 50, 100])
@pytest.mark.parametrize("classes", [2, 3, 10])
def test_profile_counts_follow_the_formula(ratio, classes):
    counts = long_tail_counts(450, ratio, classes)
    assert counts == [math.floor(450 * ratio ** (-i / (classes - 1)) + 1e-9) for i in range(classes)]
    assert counts[0] == 450 and counts[-1] == math.floor(450 / ratio) and counts == sorted(counts, reverse=True)
    assert long_tail_counts(450, 10, 10)[-1] == 45  # 450 x 10^-1 is 45.000...01 or 44.999...: rounded down, still 45


@pytest.mark.parametrize("ratio, classes, order, positions", [
    (10, None, None, list(range(10))),
    (4, [3, 8, 5], ["8", 0, "5"], [1, 0, 2]),  # names or indices (of the classes kept, in their listed order)
    (2, [1, 7], None, [0, 1]),
    (20, None, list(range(9, -1, -1)), list(range(9, -1, -1)))])
def test_load_data_cuts_the_train_split_only_and_keeps_validation_balanced(ratio, classes, order, positions):
    long_tail = {"ratio": ratio, **({"order": order} if order is not None else {})}
    plain = digits(samples_per_class=100, **({"classes": classes} if classes else {}))
    data = digits(samples_per_class=100, long_tail=long_tail, **({"classes": classes} if classes else {}))
    k = data.spec.num_classes
    # samples_per_class 100, val_fraction 0.1: 10 validation images of every class, n_max = 90 for training
    assert torch.bincount(data.val_y, minlength=k).tolist() == [10] * k
    expected = [0] * k
    for position, label in enumerate(positions):
        expected[label] = long_tail_counts(90, ratio, k)[position]
    assert list(data.spec.class_counts) == expected == torch.bincount(data.train_y, minlength=k).tolist()
    assert data.spec.long_tail_ratio == ratio and list(data.spec.long_tail_order) == positions
    assert torch.equal(data.test_y, plain.test_y) and torch.equal(data.test_x, plain.test_x)  # test untouched
    # no validation image is a training image (digits has no duplicate images)
    train = {bytes(row) for row in data.train_x.flatten(1).numpy()}
    assert not any(bytes(row) in train for row in data.val_x.flatten(1).numpy())
    # train + val (evaluate) keeps the ratio: the head adds its 10 validation images, the tail 10 / ratio of them
    merged = data.train_and_val().spec.class_counts
    assert merged[positions[0]] == 100 and merged[positions[-1]] == expected[positions[-1]] + math.floor(10 / ratio)


def test_every_dataset_kind_takes_a_long_tail(tmp_path):
    from test_data import ids, write_cifar, write_image_folder

    cifar = load_data({"name": "cifar10", "root": str(write_cifar(tmp_path / "cifar")), "long_tail": {"ratio": 2}})
    # 20 training images per class: 2 for validation, n_max 18
    assert list(cifar.spec.class_counts) == long_tail_counts(18, 2, 10)
    assert torch.bincount(cifar.val_y).tolist() == [2] * 10 and not ids(cifar.val_x) & ids(cifar.train_x)
    folder = load_data({"name": "imagefolder", "root": str(write_image_folder(tmp_path / "images")),
                        "long_tail": {"ratio": 7, "order": ["sky", "apple", "grass"]}})
    # 10 images per class, 8 after the test split, 1 for validation: n_max 7 -> 7, 2, 1 in the order given
    names = folder.spec.class_names
    assert {names[c]: n for c, n in enumerate(folder.spec.class_counts)} == {"sky": 7, "apple": 2, "grass": 1}
    assert torch.bincount(folder.val_y).tolist() == [1, 1, 1]


def test_without_samples_per_class_n_max_is_the_smallest_class():
    data = digits(long_tail={"ratio": 5})
    held = torch.bincount(data.val_y).tolist()
    assert len(set(held)) == 1  # the same count of every class, balanced whatever the source's classes
    smallest = min(digits().spec.class_counts[c] + torch.bincount(digits().val_y)[c].item() for c in range(10))
    assert data.spec.class_counts[0] == smallest - held[0]


@pytest.mark.parametrize("long_tail, fragment", [
    ({"ratio": 0.5}, "data.long_tail.ratio=0.5 is out of range; valid: a number >= 1"),
    ({"ratio": True}, "data.long_tail.ratio=True is out of range"),
    ({"order": [0, 1]}, "data.long_tail={'order': [0, 1]} is not valid"),
    ({"ratio": 10, "shape": "step"}, "data.long_tail: unknown key 'shape'"),
    ({"ratio": 10, "order": "0,1"}, "data.long_tail.order='0,1' is not valid"),
])
def test_bad_long_tail_values(long_tail, fragment):
    with pytest.raises(DataError, match=re.escape(fragment)):
        DataConfig(long_tail=long_tail)


def test_long_tail_with_imbalance_and_ratios_the_data_cannot_supply_are_refused():
    with pytest.raises(DataError, match="data.long_tail and data.imbalance"):
        DataConfig(long_tail={"ratio": 10}, imbalance={"0": 0.5})
    with pytest.raises(DataError, match=r"leaves class '9' with 27 / 100 < 1 training image .*valid: 1 <= ratio <= 27"):
        digits(samples_per_class=30, long_tail={"ratio": 100})
    with pytest.raises(DataError, match="does not name every class exactly once"):
        digits(samples_per_class=30, long_tail={"ratio": 2, "order": [0, 1, 2]})
    with pytest.raises(DataError, match="data.long_tail.order: 'ten' is not a class"):
        digits(samples_per_class=30, long_tail={"ratio": 2, "order": ["ten"]})


# ----------------------------------------------------------------------------------------------
# class_balance's losses, by hand.

COUNTS = (4, 2, 1)
LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0], [1.0, -1.0, 0.5], [0.3, 0.2, 0.1]])
Y = torch.tensor([0, 1, 2, 2])


def cross_entropy(row: list[float], label: int) -> float:
    return -row[label] + math.log(sum(math.exp(v) for v in row))


def test_effective_number_weights_by_hand():
    raw = [(1 - 0.5) / (1 - 0.5 ** n) for n in COUNTS]  # 0.5333, 0.6667, 1
    expected = [w / (sum(raw) / 3) for w in raw]
    assert effective_number_weights(COUNTS, 0.5).tolist() == pytest.approx(expected)
    assert effective_number_weights(COUNTS, 0.0).tolist() == pytest.approx([1, 1, 1])  # beta 0: uniform
    inverse = [1 / n / ((1 / 4 + 1 / 2 + 1) / 3) for n in COUNTS]
    assert effective_number_weights(COUNTS, 1.0).tolist() == pytest.approx(inverse)  # beta 1: the limit, 1 / n_c
    assert effective_number_weights(COUNTS, 0.999999).tolist() == pytest.approx(inverse, rel=1e-4)
    assert effective_number_weights((5, 5, 5), 0.9999).tolist() == pytest.approx([1, 1, 1])  # equal counts


def test_reweighted_loss_by_hand():
    beta = 0.5
    weights = effective_number_weights(COUNTS, beta).tolist()
    synthetic = torch.tensor([False, False, False, True])  # the last row is synthetic: weight 1
    loss = balanced_cross_entropy(LOGITS, F.one_hot(Y, 3).float(), synthetic, class_balance_loss(
        "reweight", COUNTS, beta, 1.0))
    rows = [cross_entropy(LOGITS[i].tolist(), int(Y[i])) for i in range(4)]
    expected = (sum(weights[int(Y[i])] * rows[i] for i in range(3)) + rows[3]) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # through the labeler, as ClassifierStep calls it; and a mixup target weighs its classes as it mixes them
    labeled = LABELERS["pseudo"].loss(LOGITS, Y, synthetic, balance=class_balance_loss("reweight", COUNTS, beta, 1.0))
    assert labeled.item() == pytest.approx(expected, rel=1e-6)
    mixed = torch.tensor([[0.25, 0.75, 0.0]])
    one = balanced_cross_entropy(LOGITS[:1], mixed, torch.tensor([False]), class_balance_loss("reweight", COUNTS,
                                                                                             beta, 1.0))
    manual = (0.25 * weights[0] + 0.75 * weights[1]) * -(mixed[0] * torch.log_softmax(LOGITS[0], 0)).sum().item()
    assert one.item() == pytest.approx(manual, rel=1e-6)


@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0])
def test_logit_adjusted_loss_by_hand(tau):
    prior = [n / sum(COUNTS) for n in COUNTS]
    synthetic = torch.tensor([False, False, False, True])
    balance = class_balance_loss("logit_adjust", COUNTS, 0.9999, tau)
    loss = balanced_cross_entropy(LOGITS, F.one_hot(Y, 3).float(), synthetic, balance)
    rows = [cross_entropy([v + tau * math.log(p) for v, p in zip(LOGITS[i].tolist(), prior)], int(Y[i]))
            for i in range(3)]
    rows.append(cross_entropy(LOGITS[3].tolist(), int(Y[3])))  # synthetic: plain logits
    assert loss.item() == pytest.approx(sum(rows) / 4, rel=1e-6)
    # the offset is tau x log prior up to a constant (its maximum, 0 for the head): the same softmax
    assert logit_adjustment(COUNTS, tau).tolist() == pytest.approx([tau * math.log(p / prior[0]) for p in prior])
    # all_in_one's extra output keeps offset 0; equal counts change nothing
    extra = torch.cat([LOGITS, torch.zeros(4, 1)], 1)
    target = F.one_hot(Y, 4).float()
    shifted = balanced_cross_entropy(extra, target, torch.zeros(4, dtype=torch.bool), balance)
    manual = sum(cross_entropy([*(v + tau * math.log(p / prior[0]) for v, p in zip(LOGITS[i].tolist(), prior)), 0.0],
                               int(Y[i])) for i in range(4)) / 4
    assert shifted.item() == pytest.approx(manual, rel=1e-6)
    equal = class_balance_loss("logit_adjust", (3, 3, 3), 0.9999, tau)
    plain = F.cross_entropy(LOGITS, Y)
    assert balanced_cross_entropy(LOGITS, F.one_hot(Y, 3).float(), synthetic, equal).item() == \
        pytest.approx(plain.item(), rel=1e-6)


def test_label_smoothing_matches_cross_entropy_and_none_and_resample_leave_the_loss_alone():
    target = F.one_hot(Y, 3).float()
    trivial = class_balance_loss("reweight", COUNTS, 0.0, 1.0)  # beta 0: every weight 1
    assert balanced_cross_entropy(LOGITS, target, torch.zeros(4, dtype=torch.bool), trivial, 0.1).item() == \
        pytest.approx(F.cross_entropy(LOGITS, target, label_smoothing=0.1).item(), rel=1e-6)
    assert class_balance_loss("none", COUNTS, 0.9, 1.0) is None and class_balance_loss("resample", COUNTS, 0.9, 1.0) \
        is None


# ----------------------------------------------------------------------------------------------
# class_balance resample: the sampler.

def test_resampled_batches_are_class_balanced_seeded_and_sized_as_the_plain_ones():
    labels = torch.tensor([0] * 500 + [1] * 50 + [2] * 5 + [3] * 0)
    index = ClassIndex(labels, 4)
    batches = balanced_batch_indices(index, 64, torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [len(b) for b in batch_indices(len(labels), 64, None, "cpu")]
    again = balanced_batch_indices(index, 64, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))
    rng = torch.Generator().manual_seed(1)
    rows = torch.cat([torch.cat(balanced_batch_indices(index, 64, rng)) for _ in range(40)])
    frequencies = torch.bincount(labels[rows], minlength=4).double() / len(rows)
    sigma = math.sqrt(1 / 3 * 2 / 3 / len(rows))
    assert frequencies[3] == 0  # a class without images is never drawn
    assert (frequencies[:3] - 1 / 3).abs().max() < 4 * sigma, frequencies
    assert len(set(rows[labels[rows] == 2].tolist())) == 5  # the tail's images repeat, every one of them drawn


# ----------------------------------------------------------------------------------------------
# Deferred re-balancing (DRW / DRS) switches at class_balance_start_epoch.

def test_balancing_starts_after_class_balance_start_epoch():
    cfg = TrialConfig(class_balance="reweight", class_balance_start_epoch=3, epochs=6)
    assert [balancing(cfg, epoch) for epoch in range(0, 7)] == [False] * 4 + [True] * 3
    assert not any(balancing(TrialConfig(), epoch) for epoch in range(1, 5))  # class_balance none
    assert all(balancing(TrialConfig(class_balance="resample"), epoch) for epoch in range(1, 5))


def test_classifier_step_uses_the_plain_loss_until_the_start_epoch():
    torch.manual_seed(0)
    cfg = TrialConfig(class_balance="logit_adjust", logit_adjust_tau=1.0, class_balance_start_epoch=2, epochs=4,
                      classifier_lr=1e-9)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-9)
    runtime = Runtime(torch.device("cpu"), torch.Generator().manual_seed(0), False, torch.contiguous_format)
    state = SimpleNamespace(classifier=model, optimizer=optimizer, teacher=None)
    step = ClassifierStep(cfg, state, SimpleNamespace(num_classes=3, class_counts=COUNTS), runtime, 1)
    x = torch.randn(4, 1, 2, 2)
    losses = []
    for epoch in (1, 2, 3):
        sums = RunningSums(torch.device("cpu"))
        step(epoch, 0, x, Y, None, sums)
        losses.append(sums.totals()["loss"])
    with torch.no_grad():
        logits = model(x)
    plain = F.cross_entropy(logits, Y).item()
    adjusted = balanced_cross_entropy(logits, F.one_hot(Y, 3).float(), torch.zeros(4, dtype=torch.bool),
                                      class_balance_loss("logit_adjust", COUNTS, 0.9999, 1.0)).item()
    assert losses == pytest.approx([plain, plain, adjusted], rel=1e-5) and adjusted != pytest.approx(plain)


def test_run_resamples_only_after_the_start_epoch(monkeypatch):
    import ganaug.trial.training as training

    calls = []
    original = training.balanced_batch_indices
    monkeypatch.setattr(training, "balanced_batch_indices", lambda *args: calls.append(1) or original(*args))
    data = digits(samples_per_class=40, long_tail={"ratio": 10})
    epochs = []
    cfg = TrialConfig(class_balance="resample", class_balance_start_epoch=1, epochs=3, classifier_width=0.25,
                      batch_size=64, cas_epochs=0)
    run(cfg, data, lambda metrics, checkpoint=None, images=None: epochs.append((metrics["epoch"], len(calls))))
    assert epochs == [(1, 0), (2, 1), (3, 2)]  # epoch 1 plain, then one resampled epoch each


# ----------------------------------------------------------------------------------------------
# synthetic_spread.

def test_synthetic_spread_weights():
    counts = (90, 45, 9)
    minority = synthetic_class_weights(counts, "cpu")  # the default: today's inverse frequency
    assert minority.tolist() == pytest.approx([w / sum([1, 2, 10]) for w in [1, 2, 10]])
    assert synthetic_class_weights(counts, "cpu", "minority").tolist() == minority.tolist()
    assert synthetic_class_weights(counts, "cpu", "balance").tolist() == pytest.approx([0, 45 / 126, 81 / 126])
    assert synthetic_class_weights(counts, "cpu", "uniform").tolist() == pytest.approx([1 / 3] * 3)
    for spread in ("minority", "balance", "uniform"):  # balanced data: every spread is uniform
        assert synthetic_class_weights((7, 7, 7, 7), "cpu", spread).tolist() == pytest.approx([0.25] * 4)
    assert TrialConfig().synthetic_spread == "minority"


# ----------------------------------------------------------------------------------------------
# Balanced and shot-group accuracy.

def test_group_accuracies_on_a_hand_made_prediction_table():
    counts = (500, 150, 100, 60, 20, 19, 10)  # many > 100, few < 20 at n_max 500
    assert shot_groups(counts) == {"many": [0, 1], "medium": [2, 3, 4], "few": [5, 6]}
    assert shot_groups((450, 100, 90, 18, 17)) == {"many": [0, 1], "medium": [2, 3], "few": [4]}  # scaled: 90, 18
    # true class -> predicted class, two rows per class: per-class accuracy 1, .5, 0, 1, .5, 1, 0
    table = [(0, 0), (0, 0), (1, 1), (1, 3), (2, 0), (2, 1), (3, 3), (3, 3), (4, 4), (4, 0), (5, 5), (5, 5), (6, 0),
             (6, 1)]
    y = torch.tensor([t for t, _ in table])
    logits = F.one_hot(torch.tensor([p for _, p in table]), 7).float()
    per_class = per_class_accuracy(logits, y, 7)
    assert per_class == [1.0, 0.5, 0.0, 1.0, 0.5, 1.0, 0.0]
    assert group_accuracies(per_class, counts) == pytest.approx({"many": 0.75, "medium": 0.5, "few": 0.5})
    assert math.isnan(group_accuracies(per_class, (5,) * 7)["few"])  # balanced data: no few-shot class
    model = nn.Sequential(nn.Flatten(), nn.Linear(1, 7))
    with torch.no_grad():  # a model that predicts the table's column from a one-pixel image of its row's prediction
        model[1].weight.copy_(torch.arange(7.0).unsqueeze(1) * 10)
        model[1].bias.copy_(-torch.arange(7.0) ** 2 * 5)
    x = torch.tensor([p for _, p in table], dtype=torch.float32).view(-1, 1, 1, 1)
    scored = score(model, x, y, LABELERS["pseudo"], 7)
    assert scored["per_class"] == per_class and scored["balanced"] == pytest.approx(4 / 7)
    assert scored["acc"] == pytest.approx(8 / 14)


# ----------------------------------------------------------------------------------------------
# The search: baselines and a real run.

def test_baseline_points_enqueue_one_no_gan_policy_per_class_balance_choice(tmp_path):
    path = tmp_path / "lt.yaml"
    path.write_text("""experiment: {name: lt}
data: {name: digits, long_tail: {ratio: 10}}
metric: {name: val_balanced_acc}
scheduler: {max_epochs: 4}
search:
  synthetic_ratio: {choice: [0.0, 0.5]}
  synthetic_spread: {choice: [minority, balance]}
  traditional_aug: {choice: [none, flip_translate]}
  class_balance: {choice: [none, resample, reweight, logit_adjust]}
  reweight_beta: {choice: [0.99, 0.9999]}
  logit_adjust_tau: {uniform: [0.5, 2.0]}
  class_balance_start_epoch: {choice: [0, 2]}
""")
    spec = load_space(path)
    assert spec.metric.mode == "max"
    points = [point for point in spec.baseline_points() if point["synthetic_ratio"] == 0]  # the twins: test_space
    # On long-tailed data each augmentation baseline trains with logit adjustment (the long-tail method that wins
    # there), so flips on it is already the logit_adjust baseline; then the other methods on flips.
    assert [(p["traditional_aug"], p["class_balance"]) for p in points] == [
        ("none", "logit_adjust"), ("flip_translate", "logit_adjust"), ("flip_translate", "resample"),
        ("flip_translate", "reweight")]
    assert all(p["synthetic_ratio"] == 0 and "synthetic_spread" not in p for p in points)
    assert points[3]["reweight_beta"] == 0.9999 and points[1]["logit_adjust_tau"] == 1.0  # their defaults
    assert "reweight_beta" not in points[2] and points[2]["class_balance_start_epoch"] == 0
    assert points[0]["class_balance_start_epoch"] == 0  # from the first epoch, as the paper


def test_a_short_real_run_on_long_tailed_digits_reports_balanced_accuracy():
    data = digits(samples_per_class=60, long_tail={"ratio": 10})
    reports = []
    cfg = TrialConfig(epochs=2, synthetic_ratio=0.5, synthetic_spread="balance", class_balance="reweight",
                      classifier_width=0.25, gan_width=0.25, batch_size=64, cas_epochs=0)
    final = run(cfg, data, lambda metrics, checkpoint=None, images=None: reports.append(metrics))
    assert [r["epoch"] for r in reports] == [1, 2]
    assert all(0 <= r["val_balanced_acc"] <= 1 and r["diverged"] == 0 for r in reports)
    # validation is balanced (6 of every class): its balanced accuracy is its accuracy
    assert reports[-1]["val_balanced_acc"] == pytest.approx(reports[-1]["val_acc"])
    assert final["test_balanced_acc"] == pytest.approx(sum(final["test_per_class_acc"]) / 10)
    assert list(data.spec.class_counts) == [54, 41, 32, 25, 19, 15, 11, 9, 6, 5]  # n_max = 60 - 6 for validation
    groups = shot_groups(data.spec.class_counts)  # many > 10.8, few < 2.16 images
    assert groups == {"many": list(range(7)), "medium": [7, 8, 9], "few": []}
    per_class = final["test_per_class_acc"]
    assert final["test_many_acc"] == pytest.approx(sum(per_class[:7]) / 7)
    assert final["test_medium_acc"] == pytest.approx(sum(per_class[7:]) / 3) and math.isnan(final["test_few_acc"])
