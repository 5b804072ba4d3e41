"""Making synthetic data count: candidate filtering, teacher (EMA) labels, split BatchNorm, the synthetic schedule."""

import math

import pytest
import torch
from torch import nn

import ganaug.trial.synthetic
from ganaug.classifier.labeling import LABELERS, Teacher, distill_target, keep_best_candidates
from ganaug.classifier.models import CLASSIFIERS, SplitBatchNorm, build_classifier, synthetic_rows
from ganaug.config import ConfigError, TrialConfig
from ganaug.data.splits import load_data
from ganaug.data.tensors import DataSpec
from ganaug.gan.trainer import GANTrainer
from ganaug.trial import run, synthetic_share
from ganaug.trial.state import CHECKPOINT_FILE, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def digits():
    return load_data({"name": "digits", "val_fraction": 0.2, "seed": 0})


class Recorder:
    def __init__(self):
        self.metrics = []

    def __call__(self, metrics, checkpoint=None, images=None):
        self.metrics.append(dict(metrics))


def small(**changes):
    values = dict(gan="acgan", synthetic_ratio=0.5, epochs=2, batch_size=128, gan_width=0.25, classifier_width=0.25,
                  checkpoint_every=1, sample_every=10, cas_epochs=0, seed=3)
    return TrialConfig.from_dict({**values, **changes})


# ----------------------------------------------------------------------------------------------
# Filtering.

def test_the_filter_keeps_the_top_scored_candidates_of_each_class_and_the_class_counts():
    rng = torch.Generator().manual_seed(0)
    wanted = torch.tensor([2, 0, 2, 1, 2, 0])            # 2 x class 0, 1 x class 1, 3 x class 2
    k = 4
    candidate_y = wanted.repeat(k)
    scores = torch.rand(len(candidate_y), generator=rng)
    keep = keep_best_candidates(scores, candidate_y, wanted, num_classes=3)
    assert len(keep) == len(wanted) and len(set(keep.tolist())) == len(keep)
    assert torch.equal(torch.bincount(candidate_y[keep], minlength=3), torch.bincount(wanted, minlength=3))
    for c in range(3):  # exactly the top-n_c of class c, by hand
        of_class = (candidate_y == c).nonzero().squeeze(1)
        top = of_class[scores[of_class].argsort(descending=True)[: int((wanted == c).sum())]]
        assert set(keep[candidate_y[keep] == c].tolist()) == set(top.tolist())


def test_filtered_trial_reports_the_kept_samples_confidence_and_keeps_the_batch(digits, monkeypatch):
    sizes = []
    sample = GANTrainer.sample

    def recording(self, y, rng=None):
        sizes.append(len(y))
        return sample(self, y, rng)

    monkeypatch.setattr(GANTrainer, "sample", recording)
    final = run(small(filter_candidates=3, epochs=1), digits, Recorder())  # scored by ACGAN's class head
    assert 0 < final["filter_confidence"] <= 1
    batches = math.ceil(len(digits.train_y) / 128)
    draws = sizes[:batches]  # the first draws are the classifier's (quality metrics sample after the epoch)
    assert draws[0] == 3 * 64  # k candidates for each of round(0.5 x 128) images


# ----------------------------------------------------------------------------------------------
# Teacher labels.

def test_distill_targets_sum_to_one_and_match_a_hand_computed_case():
    teacher_logits = torch.tensor([[math.log(0.7), math.log(0.2), math.log(0.1)]])
    target = distill_target(teacher_logits, torch.tensor([1]), weight=0.5, temperature=1.0)
    assert target.tolist()[0] == pytest.approx([0.35, 0.6, 0.05])
    # Temperature 2: softmax(log p / 2) = sqrt(p) / sum sqrt(p).
    roots = [math.sqrt(p) for p in (0.7, 0.2, 0.1)]
    hot = distill_target(teacher_logits, torch.tensor([0]), weight=0.25, temperature=2.0)
    expected = [0.25 * r / sum(roots) + 0.75 * (i == 0) for i, r in enumerate(roots)]
    assert hot.tolist()[0] == pytest.approx(expected, rel=1e-5)
    batch = distill_target(torch.randn(16, 10), torch.randint(10, (16,)), weight=0.7, temperature=3.0)
    assert torch.allclose(batch.sum(1), torch.ones(16))


def test_distill_loss_uses_the_soft_target_for_synthetic_rows_only():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]]))
    soft = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.6, 0.3]])
    loss = LABELERS["distill"].loss(logits, torch.tensor([0, 2]), torch.tensor([False, True]), soft)
    expected = (-math.log(0.5) - (0.1 * math.log(0.2) + 0.6 * math.log(0.3) + 0.3 * math.log(0.5))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_teacher_is_an_ema_of_the_classifier_with_a_warm_up():
    student = nn.Linear(3, 2)
    teacher = Teacher(student, decay=0.9)
    before = teacher.model.weight.clone()
    with torch.no_grad():
        student.weight.add_(1.0)
    teacher.update(student)  # decay min(0.9, 2/11): the first updates move most of the way
    step = 1 - 2 / 11
    assert torch.allclose(teacher.model.weight, before + step * (student.weight - before))
    assert not teacher.model.training and not any(p.requires_grad for p in teacher.model.parameters())


# ----------------------------------------------------------------------------------------------
# Split BatchNorm.

@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_split_batchnorm_keeps_real_and_synthetic_statistics_apart(name):
    spec = DataSpec(channels=3, height=16, width=16, num_classes=4, class_names=tuple("abcd"),
                    class_counts=(1, 1, 1, 1))
    model = build_classifier(name, spec, 4, width=0.25, split_bn=True).train()
    layers = [m for m in model.modules() if isinstance(m, SplitBatchNorm)]
    assert layers and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(
        parent, SplitBatchNorm) for parent in model.modules() for m in parent.children())
    stats = lambda part: [getattr(layer, part).running_mean.clone() for layer in layers]
    x = torch.randn(8, 3, 16, 16) * 3 + 1

    main = stats("main")
    with synthetic_rows(model, 0):  # a synthetic-only batch
        model(x)
    assert all(torch.equal(a, b) for a, b in zip(main, stats("main")))
    synthetic = stats("synthetic")
    assert not all(torch.equal(a, b) for a, b in zip(synthetic, [torch.zeros_like(t) for t in synthetic]))

    with synthetic_rows(model, len(x)):  # a real-only batch
        model(x)
    assert all(torch.equal(a, b) for a, b in zip(synthetic, stats("synthetic")))
    assert not all(torch.equal(a, b) for a, b in zip(main, stats("main")))

    # Evaluation ignores synthetic_rows: the main layers' running statistics alone.
    model.eval()
    with torch.no_grad(), synthetic_rows(model, 4):
        split = model(x)
    for layer in layers:
        layer.synthetic.running_mean.fill_(100.0)  # would change the output if the twin were used
    with torch.no_grad():
        assert torch.allclose(model(x), split)


@pytest.mark.parametrize("recipe", [
    {"classifier_lr": 2e-3},
    # The SGD recipe with synthetic rows from epoch 2: the synthetic-row layers' first gradient comes late, which
    # torch's fused SGD refused (classifier.recipe.start_late_momentum).
    {"optimizer": "sgd", "classifier_lr": 0.05, "gan_warmup_epochs": 1},
], ids=["adamw", "sgd-late-synthetic"])
def test_split_batchnorm_trial_learns_and_evaluates_with_the_main_statistics(digits, recipe):
    final = run(small(synthetic_bn="split", classifier="cnn", classifier_width=0.5, epochs=3, batch_size=64,
                      **recipe), digits, Recorder())
    assert final["val_acc"] > 0.5  # chance 0.1


# ----------------------------------------------------------------------------------------------
# Schedule.

def test_anneal_reaches_zero_at_the_last_epoch_and_front_stops_at_half():
    epochs = 10
    anneal = [synthetic_share("anneal", e, epochs) for e in range(1, epochs + 1)]
    assert anneal[:5] == [1.0] * 5 and anneal[-1] == 0.0
    assert all(a > b for a, b in zip(anneal[4:], anneal[5:]))  # strictly down over the second half
    assert [synthetic_share("front", e, epochs) for e in range(1, epochs + 1)] == [1.0] * 5 + [0.0] * 5
    assert {synthetic_share("constant", e, epochs) for e in range(1, epochs + 1)} == {1.0}


def test_front_schedule_feeds_no_synthetic_image_in_the_second_half(digits, monkeypatch):
    drawn = []
    labels = ganaug.trial.synthetic.synthetic_labels

    def recording(n, weights, rng):
        drawn.append(n)
        return labels(n, weights, rng)

    monkeypatch.setattr(ganaug.trial.synthetic, "synthetic_labels", recording)
    run(small(synthetic_schedule="front", epochs=4), digits, Recorder())
    batches = math.ceil(len(digits.train_y) / 128)
    assert len(drawn) == 2 * batches  # epochs 1 and 2 only


# ----------------------------------------------------------------------------------------------
# Rules and checkpoints.

@pytest.mark.parametrize("values, keys", [
    ({"labeling": "distill"}, ("labeling='distill'", "teacher_ema=0")),
    ({"filter_candidates": 4, "gan": "cgan"}, ("filter_candidates=4", "teacher_ema=0", "gan='cgan'")),
])
def test_a_policy_without_its_teacher_is_refused_naming_both_keys(values, keys):
    with pytest.raises(ConfigError) as error:
        TrialConfig.from_dict(values)
    assert all(key in str(error.value) for key in keys)
    TrialConfig.from_dict({**values, "teacher_ema": 0.99})  # valid with a teacher


def test_checkpoints_carry_the_teacher_and_resume_matches_uninterrupted(digits, tmp_path):
    cfg = small(teacher_ema=0.95, labeling="distill", filter_candidates=2, synthetic_bn="split",
                synthetic_schedule="anneal", epochs=4)
    full = Recorder()
    run(cfg, digits, full)

    class StopAfterTwo(Recorder):
        def __call__(self, metrics, checkpoint=None, images=None):
            super().__call__(metrics, checkpoint, images)
            if metrics["epoch"] == 2:
                state = load_checkpoint(checkpoint)
                assert state["teacher"]["updates"] > 0 and state["teacher"]["model"]
                save_checkpoint(tmp_path / CHECKPOINT_FILE, state)
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(cfg, digits, StopAfterTwo())
    resumed = Recorder()
    run(cfg, digits, resumed, checkpoint=tmp_path)
    strip = lambda ms: [{k: v for k, v in m.items() if k not in ("epoch_seconds", "images_per_second")}
                        for m in ms]
    assert [m["epoch"] for m in resumed.metrics] == [3, 4]
    assert strip(resumed.metrics) == strip(full.metrics[2:])
    assert "val_acc_teacher" in full.metrics[-1]
