"""Labeling methods: losses equal hand-computed values; evaluation never predicts all_in_one's extra class."""

import math

import pytest
import torch

from ganaug.classifier.labeling import LABELERS
from ganaug.config import ConfigError, TrialConfig

# Logits = log of probabilities, so every log-softmax below is a number written out by hand.
PROBS_K3 = [[0.5, 0.25, 0.25], [0.2, 0.3, 0.5], [0.1, 0.6, 0.3]]
PROBS_K4 = [[0.5, 0.2, 0.2, 0.1], [0.1, 0.1, 0.1, 0.7], [0.4, 0.3, 0.2, 0.1]]
Y = torch.tensor([0, 2, 1])                       # true class (row 0), conditioning classes (rows 1, 2)
SYNTHETIC = torch.tensor([False, True, True])
log = math.log


def logits_of(probs):
    return torch.tensor(probs).log()


def test_pseudo_loss_is_cross_entropy_with_the_conditioning_class():
    loss = LABELERS["pseudo"].loss(logits_of(PROBS_K3), Y, SYNTHETIC)
    assert loss.item() == pytest.approx(-(log(0.5) + log(0.5) + log(0.6)) / 3, rel=1e-6)


def test_lsro_loss_uses_the_uniform_target_for_synthetic_rows():
    loss = LABELERS["lsro"].loss(logits_of(PROBS_K3), Y, SYNTHETIC)
    real = -log(0.5)
    synthetic_1 = -(log(0.2) + log(0.3) + log(0.5)) / 3  # -1/K sum_k log p(k), Z = 1
    synthetic_2 = -(log(0.1) + log(0.6) + log(0.3)) / 3
    assert loss.item() == pytest.approx((real + synthetic_1 + synthetic_2) / 3, rel=1e-6)


def test_all_in_one_loss_targets_the_extra_class_for_synthetic_rows():
    loss = LABELERS["all_in_one"].loss(logits_of(PROBS_K4), Y, SYNTHETIC)
    assert loss.item() == pytest.approx(-(log(0.5) + log(0.7) + log(0.1)) / 3, rel=1e-6)


@pytest.mark.parametrize("name", list(LABELERS))
def test_real_rows_get_plain_cross_entropy_for_every_labeler(name):
    labeler = LABELERS[name]
    probs = PROBS_K4 if labeler.num_outputs(3) == 4 else PROBS_K3
    soft = torch.full((3, len(probs[0])), 1.0 / len(probs[0]))  # distill's soft targets: never read for real rows
    loss = labeler.loss(logits_of(probs), Y, torch.zeros(3, dtype=torch.bool), soft)
    expected = -sum(log(probs[row][Y[row]]) for row in range(3)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", list(LABELERS))
def test_loss_goes_down_under_gradient_steps(name):
    labeler = LABELERS[name]
    logits = torch.zeros(6, labeler.num_outputs(3), requires_grad=True)
    y, synthetic = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([False, False, False, True, True, True])
    optimizer = torch.optim.SGD([logits], lr=1.0)
    losses = []
    soft = torch.tensor([[0.8, 0.1, 0.1]] * 6)  # distill: a teacher's soft label for the synthetic rows
    for _ in range(10):
        loss = labeler.loss(logits, y, synthetic, soft)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] and all(math.isfinite(v) for v in losses)


def test_num_outputs():
    assert [LABELERS[n].num_outputs(10) for n in ("pseudo", "lsro", "all_in_one", "distill")] == [10, 10, 11, 10]


@pytest.mark.parametrize("name", list(LABELERS))
def test_predict_logits_never_yield_the_extra_class(name):
    labeler = LABELERS[name]
    logits = torch.randn(5, labeler.num_outputs(3))
    logits[:, -1] = 100.0  # the last output is the largest everywhere
    kept = labeler.predict_logits(logits, 3)
    assert kept.shape == (5, 3)
    assert torch.equal(kept, logits[:, :3])
    if name == "all_in_one":
        assert (kept.argmax(dim=1) < 3).all() and (logits.argmax(dim=1) == 3).all()


def test_unknown_labeler_names_the_valid_ones():
    with pytest.raises(ConfigError, match="labeling='soft' is not one of pseudo, lsro, all_in_one"):
        TrialConfig(labeling="soft").validate()
