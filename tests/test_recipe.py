"""The classifier's training recipe: the learning-rate schedules at chosen steps (warm-up included), SGD and AdamW
through a checkpoint (a resumed trial equals an uninterrupted one), mixup and cutmix (targets, lambdas, boxes),
label smoothing, and what each labeling's target becomes under mixing."""

import math

import pytest
import torch
import torch.nn.functional as F

from ganaug.augment import MIXES, Mix, mix_targets
from ganaug.augment.mix import cutmix, mixup
from ganaug.classifier import LABELERS, LearningRate, build_optimizer, lr_factor
from ganaug.config import TrialConfig
from ganaug.data import load_data
from ganaug.trial import run


@pytest.fixture(scope="module")
def digits():
    return load_data({"name": "digits", "samples_per_class": 40, "val_fraction": 0.25})


@pytest.mark.parametrize(("schedule", "step", "expected"), [
    # 100 steps, 10 of warm-up: (step + 1) / 10 first, then the decay over the other 90 at q = (step - 10) / 90.
    ("constant", 0, 0.1), ("constant", 9, 1.0), ("constant", 10, 1.0), ("constant", 99, 1.0),
    ("cosine", 4, 0.5), ("cosine", 10, 1.0), ("cosine", 55, 0.5),
    ("cosine", 99, 0.5 * (1 + math.cos(math.pi * 89 / 90))),
    ("onecycle", 0, 0.1), ("onecycle", 10, 1.0), ("onecycle", 55, 0.5), ("onecycle", 82, 0.2),
])
def test_each_schedule_at_chosen_steps_equals_its_formula(schedule, step, expected):
    assert lr_factor(schedule, step, total_steps=100, warmup_steps=10) == pytest.approx(expected)


def test_no_warmup_starts_at_the_peak_and_the_schedule_spans_the_whole_trial():
    assert lr_factor("cosine", 0, 40, 0) == 1.0 and lr_factor("onecycle", 0, 40, 0) == 1.0
    cfg = TrialConfig(classifier_lr=0.2, lr_schedule="onecycle", warmup_epochs=1.5, epochs=4)
    model = torch.nn.Linear(2, 2)
    learning_rate = LearningRate(build_optimizer(cfg, model.parameters()), cfg, batches_per_epoch=10)
    assert (learning_rate.total_steps, learning_rate.warmup_steps) == (40, 15)
    assert learning_rate.set(0) == pytest.approx(0.2 / 15) and learning_rate.at(14) == pytest.approx(0.2)
    assert learning_rate.at(39) == pytest.approx(0.2 * (1 - 24 / 25))
    assert learning_rate.optimizer.param_groups[0]["lr"] == pytest.approx(0.2 / 15)
    # A CAS classifier of 2 epochs keeps the warm-up's share of the trial (1.5 of 4 epochs).
    short = LearningRate(build_optimizer(cfg, model.parameters()), cfg, batches_per_epoch=10, epochs=2)
    assert (short.total_steps, short.warmup_steps) == (20, 8)


def test_the_optimizers_are_nesterov_sgd_and_adamw():
    model = torch.nn.Linear(2, 2)
    sgd = build_optimizer(TrialConfig(optimizer="sgd", classifier_lr=0.05, weight_decay=5e-4), model.parameters())
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    assert sgd.defaults["weight_decay"] == 5e-4 and sgd.defaults["lr"] == 0.05
    assert isinstance(build_optimizer(TrialConfig(), model.parameters()), torch.optim.AdamW)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_a_parameter_whose_first_gradient_comes_late_steps_as_in_the_unfused_optimizer(optimizer):
    """Split BatchNorm's synthetic-row layers get no gradient until synthetic rows start (gan_warmup_epochs): torch's
    fused SGD refused that step ("expected Tensor ... got NoneType"); ours matches torch's unfused one."""
    cfg = TrialConfig(optimizer=optimizer, classifier_lr=0.05, weight_decay=5e-4)
    early, late = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    reference = [torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)]
    for copy, module in zip(reference, (early, late)):
        copy.load_state_dict(module.state_dict())
    ours = build_optimizer(cfg, [*early.parameters(), *late.parameters()])
    unfused = (torch.optim.SGD if optimizer == "sgd" else torch.optim.AdamW)(
        [*reference[0].parameters(), *reference[1].parameters()],
        **{key: value for key, value in ours.defaults.items() if key not in ("decoupled_weight_decay", "fused")},
        fused=False)
    x = torch.randn(4, 3)
    for step in range(4):
        for (a, b), opt in (((early, late), ours), (reference, unfused)):
            opt.zero_grad(set_to_none=True)
            loss = a(x).square().mean() + (b(x).square().mean() if step >= 2 else 0)  # late's first gradient: step 2
            loss.backward()
            opt.step()
    for module, copy in zip((early, late), reference):
        for mine, theirs in zip(module.parameters(), copy.parameters()):
            torch.testing.assert_close(mine, theirs)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_a_resumed_trial_equals_an_uninterrupted_one(digits, optimizer):
    """The optimizer's state (momentum buffers, Adam's moments) and the schedule's position survive a checkpoint."""
    cfg = TrialConfig(optimizer=optimizer, classifier_lr=0.05 if optimizer == "sgd" else 2e-3, lr_schedule="onecycle",
                      warmup_epochs=1, label_smoothing=0.1, mix="mixup", mix_alpha=0.4, epochs=4, batch_size=32,
                      classifier_width=0.25, checkpoint_every=2, cas_epochs=0)
    rows, checkpoints = [], []

    def report(metrics, checkpoint=None, images=None):
        rows.append(metrics)
        if checkpoint is not None:
            from ganaug.trial import load_checkpoint
            checkpoints.append(load_checkpoint(checkpoint, cfg))

    run(cfg, digits, report)
    resumed = []
    run(cfg, digits, lambda metrics, **_: resumed.append(metrics), checkpoint=checkpoints[0])
    drop = ("epoch_seconds", "images_per_second")
    assert [{k: v for k, v in r.items() if k not in drop} for r in rows[2:]] == \
        [{k: v for k, v in r.items() if k not in drop} for r in resumed]
    assert [r["lr"] for r in rows] == sorted((r["lr"] for r in rows), reverse=True)  # onecycle decays after epoch 1


def test_mixup_targets_are_convex_combinations_that_sum_to_one():
    rng = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 8, 8, generator=rng), torch.arange(16) % 4
    mixed = mixup(x, 0.4, rng)
    lam = mixed.weight[0]
    assert torch.all(mixed.weight == lam) and 0 <= lam <= 1
    assert torch.allclose(mixed.x, lam * x + (1 - lam) * x[mixed.partner])
    targets = mix_targets(F.one_hot(y, 4).float(), mixed)
    assert torch.allclose(targets.sum(1), torch.ones(16))
    assert torch.allclose(targets, lam * F.one_hot(y, 4) + (1 - lam) * F.one_hot(y[mixed.partner], 4))


def test_cutmix_lambda_is_the_kept_area_and_each_image_gets_its_own_box():
    rng = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    x = torch.zeros(32, 1, 16, 16)
    x += torch.arange(32).float()[:, None, None, None]  # image i is filled with the value i
    mixed = cutmix(x, 1.0, rng)
    own = (mixed.x == x).flatten(1).float().mean(1)
    moved = mixed.partner != torch.arange(32)  # an image drawn as its own partner keeps its pixels under the box
    assert torch.allclose(mixed.weight[moved], own[moved])  # lambda_i = the share of image i's own pixels
    boxes = (mixed.x != x)[:, 0]
    different = [not torch.equal(boxes[i], boxes[j]) for i in range(32) for j in range(i) if boxes[i].any()]
    assert any(different)  # two images of one batch have their boxes in different places
    pasted = mixed.x[~(mixed.x == x)].unique()
    assert set(pasted.long().tolist()) <= set(mixed.partner.tolist())


def test_label_smoothing_matches_cross_entropy_label_smoothing():
    logits, y = torch.randn(8, 5, generator=torch.Generator().manual_seed(1)), torch.arange(8) % 5
    ours = LABELERS["pseudo"].loss(logits, y, torch.zeros(8, dtype=torch.bool), label_smoothing=0.1)
    assert ours == pytest.approx(F.cross_entropy(logits, y, label_smoothing=0.1).item())


def test_each_labelings_target_under_mixing():
    """Real rows mix with real rows, synthetic rows with synthetic rows: pseudo mixes the two (conditioning) classes;
    lsro's synthetic rows stay uniform; all_in_one's stay the extra class; distill's mix the teacher's soft labels."""
    y, synthetic = torch.tensor([0, 1, 2, 3]), torch.tensor([False, False, True, True])
    real, fake = Mix(None, torch.tensor([1, 0]), torch.tensor([0.7, 0.7])), \
        Mix(None, torch.tensor([1, 0]), torch.tensor([0.6, 0.6]))
    soft = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0], [0.1, 0.1, 0.7, 0.1], [0.2, 0.2, 0.2, 0.4]])

    def mixed(name):
        labeler = LABELERS[name]
        target = labeler.targets(y, synthetic, labeler.num_outputs(4), soft)
        target[:2], target[2:] = mix_targets(target[:2], real), mix_targets(target[2:], fake)
        assert torch.allclose(target.sum(1), torch.ones(4))
        return target

    assert torch.allclose(mixed("pseudo")[0], torch.tensor([0.7, 0.3, 0, 0]))
    assert torch.allclose(mixed("pseudo")[2], torch.tensor([0, 0, 0.6, 0.4]))
    assert torch.allclose(mixed("lsro")[2:], torch.full((2, 4), 0.25))
    assert torch.allclose(mixed("all_in_one")[2:], F.one_hot(torch.tensor([4, 4]), 5).float())
    assert torch.allclose(mixed("distill")[2], 0.6 * soft[2] + 0.4 * soft[3])


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_a_mixed_recipe_learns_digits(digits, mix):
    cfg = TrialConfig(optimizer="sgd", classifier_lr=0.05, lr_schedule="onecycle", warmup_epochs=1,
                      label_smoothing=0.1, mix=mix, traditional_aug="flip_translate", classifier="cnn",
                      classifier_dropout=0, epochs=6, batch_size=32, cas_epochs=0)
    final = run(cfg, digits, lambda metrics, **_: None)
    assert final["val_acc"] > 0.6  # chance: 0.1
    assert MIXES[mix] is not None and MIXES["none"] is None
