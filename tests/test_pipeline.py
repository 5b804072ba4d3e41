"""The joint trial on real data (sklearn's bundled digits, CPU): learning, GAN samples, divergence, resume."""

import math
import re

import pytest
import torch

from ganaug.classifier.accuracy import score
from ganaug.classifier.labeling import LABELERS
from ganaug.classifier.models import build_classifier
from ganaug.config import ConfigError, TrialConfig
from ganaug.data.splits import load_data
from ganaug.data.tensors import batch_indices, to_float
from ganaug.gan.trainer import GANTrainer
from ganaug.trial.loop import run
from ganaug.trial.state import CHECKPOINT_FILE, CheckpointError, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def digits():
    return load_data({"name": "digits", "val_fraction": 0.2, "seed": 0})


class Recorder:
    """A report callback that keeps every epoch's metrics and the last checkpoint's state."""

    def __init__(self):
        self.metrics, self.state, self.images = [], None, []

    def __call__(self, metrics, checkpoint=None, images=None):
        self.metrics.append(dict(metrics))
        if checkpoint is not None:
            self.state = load_checkpoint(checkpoint)
        if images:
            self.images.append(images)


def test_classifier_alone_learns_digits(digits):
    recorder = Recorder()
    cfg = TrialConfig(synthetic_ratio=0.0, epochs=12, batch_size=64, classifier_lr=2e-3, cas_epochs=0)
    final = run(cfg, digits, recorder)
    assert final["val_acc"] >= 0.90
    assert final["test_acc"] >= 0.88
    losses = [m["train_loss"] for m in recorder.metrics]
    assert losses[-1] < 0.5 * losses[0]
    assert [m["epoch"] for m in recorder.metrics] == list(range(1, 13))
    for key in ("val_acc", "val_top5", "val_loss", "train_acc", "epoch", "epoch_seconds",
                "images_per_second", "diverged"):
        assert key in final
    assert "d_loss" not in final  # no GAN is trained for the no-GAN baseline


def test_acgan_samples_are_recognised_by_a_real_data_classifier(digits):
    torch.manual_seed(0)
    joint = Recorder()
    # Half width, 12 epochs: the real-data classifier agrees on 0.85-0.87 of its samples (seeds 1, 2; full width
    # and 20 epochs: 0.91-0.93 in 2.5x the time), far above the 0.5 asked.
    cfg = TrialConfig(gan="acgan", gan_arch="mlp", synthetic_ratio=0.5, labeling="pseudo", epochs=12,
                      batch_size=64, gan_lr=5e-4, gan_width=0.5, sample_every=6, cas_epochs=1, seed=1)
    final = run(cfg, digits, joint)
    for key in ("d_loss", "g_loss", "synthetic_agreement", "cas", "test_acc"):
        assert math.isfinite(final[key])
    assert joint.images and joint.images[-1]["samples"].dtype == torch.uint8
    # Samples rows = classes: 10 classes x 10 columns of 8x8 images (+1 px padding).
    assert joint.images[-1]["samples"].shape[-2:] == (10 * 9 + 1, 10 * 9 + 1)

    real_only = Recorder()
    run(TrialConfig(synthetic_ratio=0.0, epochs=8, batch_size=64, classifier_lr=2e-3, cas_epochs=0), digits,
        real_only)
    classifier = build_classifier("mlp", digits.spec, 10)
    classifier.load_state_dict(real_only.state["classifier"])
    classifier.eval()
    gan = GANTrainer(cfg, digits.spec, torch.device("cpu"))
    gan.load_state_dict(joint.state["gan"])
    labels = torch.arange(10).repeat_interleave(50)
    with torch.no_grad():
        predicted = classifier(gan.sample(labels, torch.Generator().manual_seed(3))).argmax(1)
    agreement = (predicted == labels).float().mean().item()
    assert agreement >= 0.5, f"real-data classifier agrees with the conditioning class on {agreement:.2f}"


def test_absurd_learning_rate_ends_in_diverged_without_exception(digits):
    recorder = Recorder()
    cfg = TrialConfig(synthetic_ratio=1.0, gan_lr=1e30, classifier_lr=1e30, epochs=5, batch_size=64)
    final = run(cfg, digits, recorder)
    assert final["diverged"] == 1
    assert final["val_acc"] == 0.0  # the objective at its worst value
    assert len(recorder.metrics) < 5 and recorder.metrics[-1]["diverged"] == 1


def test_seeded_runs_repeat_and_resume_matches_uninterrupted(digits, tmp_path):
    cfg = TrialConfig(gan="cgan", synthetic_ratio=0.5, labeling="lsro", epochs=4, batch_size=128,
                      checkpoint_every=2, gan_width=0.5, cas_epochs=0, seed=7)
    full = Recorder()
    run(cfg, digits, full)
    again = Recorder()
    run(cfg, digits, again)
    strip = lambda ms: [{k: v for k, v in m.items() if k not in ("epoch_seconds", "images_per_second")}
                        for m in ms]
    assert strip(full.metrics) == strip(again.metrics)

    # Stop after epoch 2 (its checkpoint), then resume to the end.
    class StopAfterTwo(Recorder):
        def __call__(self, metrics, checkpoint=None, images=None):
            super().__call__(metrics, checkpoint, images)
            if metrics["epoch"] == 2:
                save_checkpoint(tmp_path / CHECKPOINT_FILE, load_checkpoint(checkpoint))
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(cfg, digits, StopAfterTwo())
    resumed = Recorder()
    run(cfg, digits, resumed, checkpoint=tmp_path)
    assert [m["epoch"] for m in resumed.metrics] == [3, 4]
    assert strip(resumed.metrics) == strip(full.metrics[2:])


# ----------------------------------------------------------------------------------------------
# The GAN's own training budget: gan_steps_per_batch, gan_pretrain_epochs, gan_freeze.

class AllStates(Recorder):
    """A Recorder that keeps every checkpoint's state, in order."""

    def __init__(self):
        super().__init__()
        self.states = []

    def __call__(self, metrics, checkpoint=None, images=None):
        super().__call__(metrics, checkpoint, images)
        if checkpoint is not None:
            self.states.append(self.state)


TIMING_KEYS = ("epoch_seconds", "images_per_second", "gan_pretrain_seconds")


def strip_timing(metrics):
    return [{k: v for k, v in m.items() if k not in TIMING_KEYS} for m in metrics]


def budget_config(**changes):
    """A small GAN trial on digits: quarter-width networks, no CAS, a checkpoint every pass."""
    values = dict(gan="acgan", synthetic_ratio=0.5, epochs=2, batch_size=128, gan_width=0.25,
                  classifier_width=0.25, checkpoint_every=1, sample_every=1, cas_epochs=0, seed=5)
    return TrialConfig(**{**values, **changes})


def fresh_networks(cfg, spec):
    """The classifier and GAN exactly as pipeline.run initialises them for cfg.seed (same order of draws)."""
    torch.manual_seed(cfg.seed)
    classifier = build_classifier(cfg.classifier, spec, LABELERS[cfg.labeling].num_outputs(spec.num_classes),
                                  cfg.classifier_width)
    return classifier, GANTrainer(cfg, spec, torch.device("cpu"))


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_gan_steps_per_batch_takes_more_updates_on_fresh_real_batches(digits, monkeypatch):
    seen = []
    train_step = GANTrainer.train_step

    def recording_train_step(self, real_x, real_y, *args, **kwargs):
        seen.append(real_x.clone())
        return train_step(self, real_x, real_y, *args, **kwargs)

    monkeypatch.setattr(GANTrainer, "train_step", recording_train_step)
    steps = {}
    for k in (1, 3):
        recorder = Recorder()
        seen.clear()
        final = run(budget_config(gan_steps_per_batch=k, epochs=1), digits, recorder)
        assert math.isfinite(final["d_loss"]) and math.isfinite(final["g_loss"])
        steps[k] = {name: recorder.state["gan"][name]["state"][0]["step"].item() for name in ("opt_G", "opt_D")}
    assert steps[3] == {name: 3 * steps[1][name] for name in steps[1]}

    # The first update of each classifier step uses the classifier's own batch (the first batch of the
    # seeded shuffle); the two extra ones each draw a different real batch of the same size.
    num_batches = math.ceil(len(digits.train_y) / 128)
    assert len(seen) == 3 * num_batches
    first = batch_indices(len(digits.train_y), 128, torch.Generator().manual_seed(5), "cpu")[0]
    assert torch.equal(seen[0], to_float(digits.train_x[first]))
    for group in range(num_batches):
        own, *extra = seen[3 * group: 3 * group + 3]
        assert all(batch.shape == own.shape for batch in extra)
        assert not torch.equal(own, extra[0]) and not torch.equal(own, extra[1])
        assert not torch.equal(extra[0], extra[1])


def test_gan_pretraining_comes_first_and_leaves_the_classifier_untouched(digits):
    cfg = budget_config(gan_pretrain_epochs=2, epochs=2)
    recorder = AllStates()
    run(cfg, digits, recorder)
    assert [(m["epoch"], m.get("gan_pretrain_epoch")) for m in recorder.metrics] == [
        (0, 1), (0, 2), (1, None), (2, None)]
    pretraining, classifying = recorder.metrics[:2], recorder.metrics[2:]

    # Pretraining passes report the GAN's losses and the untrained classifier's (constant) metrics.
    classifier, gan = fresh_networks(cfg, digits.spec)
    untrained = score(classifier, digits.val_x, digits.val_y, LABELERS[cfg.labeling], 10)
    for m in pretraining:
        assert m["val_acc"] == untrained["acc"] and m["val_loss"] == untrained["loss"]
        assert 0 <= m["train_acc"] <= 1 and 0 <= m["val_top5"] <= 1 and m["diverged"] == 0
        assert math.isfinite(m["d_loss"]) and math.isfinite(m["g_loss"]) and m["epoch_seconds"] > 0
        assert "gan_pretrain_seconds" not in m
    for m in classifying:
        assert m["gan_pretrain_seconds"] == pytest.approx(sum(p["epoch_seconds"] for p in pretraining))
        assert math.isfinite(m["d_loss"])  # without gan_freeze the GAN keeps training
    assert len(recorder.images) == 4  # sample_every=1: a grid after every pass

    # The checkpoint at the end of pretraining: classifier epoch 0, the classifier bit for bit as
    # initialised (parameters and BatchNorm buffers), its optimizer untouched; G has trained.
    pretrained = recorder.states[1]
    assert (pretrained["epoch"], pretrained["pretrain_epoch"]) == (0, 2)
    assert same_tensors(pretrained["classifier"], classifier.state_dict())
    assert pretrained["optimizer"]["state"] == {}
    assert not same_tensors(pretrained["gan"]["G"], gan.G.state_dict())
    assert not same_tensors(recorder.states[2]["classifier"], classifier.state_dict())


def test_gan_freeze_keeps_the_pretrained_generator_and_still_feeds_the_classifier(digits, monkeypatch):
    calls = {"train_step": 0, "sample": 0}
    train_step, sample = GANTrainer.train_step, GANTrainer.sample

    def counting(name, method):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return method(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(GANTrainer, "train_step", counting("train_step", train_step))
    monkeypatch.setattr(GANTrainer, "sample", counting("sample", sample))
    cfg = budget_config(gan_pretrain_epochs=1, epochs=2, gan_freeze=True, g_ema=0.9, gan_steps_per_batch=2)
    recorder = AllStates()
    run(cfg, digits, recorder)
    num_batches = math.ceil(len(digits.train_y) / 128)
    assert calls["train_step"] == 2 * num_batches  # pretraining only
    assert calls["sample"] >= cfg.epochs * num_batches  # synthetic images in every classifier step

    pretrained, final = recorder.states[0]["gan"], recorder.states[-1]["gan"]
    assert recorder.states[0]["pretrain_epoch"] == 1 and recorder.states[-1]["epoch"] == 2
    for network in ("G", "G_ema", "D"):
        assert same_tensors(pretrained[network], final[network]), network
    assert "d_loss" in recorder.metrics[0]
    for m in recorder.metrics[1:]:
        assert "d_loss" not in m and "g_loss" not in m  # no GAN update: no loss, rather than NaN
        assert 0 <= m["synthetic_agreement"] <= 1


def test_resume_in_the_middle_of_pretraining_matches_uninterrupted(digits, tmp_path):
    cfg = budget_config(gan="cgan", labeling="lsro", gan_pretrain_epochs=3, epochs=2, gan_steps_per_batch=2,
                        d_mix_schedule="hybrid", sample_every=2, seed=11)
    full = AllStates()
    run(cfg, digits, full)

    # Stop after pretraining pass 2 (its checkpoint), then resume: pass 3, then classifier epochs 1 and 2.
    class StopAfterPassTwo(Recorder):
        def __call__(self, metrics, checkpoint=None, images=None):
            super().__call__(metrics, checkpoint, images)
            if metrics.get("gan_pretrain_epoch") == 2:
                save_checkpoint(tmp_path / CHECKPOINT_FILE, load_checkpoint(checkpoint))
                raise KeyboardInterrupt

    stopped = StopAfterPassTwo()
    with pytest.raises(KeyboardInterrupt):
        run(cfg, digits, stopped)
    resumed = Recorder()
    run(cfg, digits, resumed, checkpoint=tmp_path)
    assert [(m["epoch"], m.get("gan_pretrain_epoch")) for m in resumed.metrics] == [(0, 3), (1, None), (2, None)]
    assert strip_timing(resumed.metrics) == strip_timing(full.metrics[2:])
    # Pretraining's wall time adds up across the interruption.
    pretrain_seconds = sum(m["epoch_seconds"] for m in stopped.metrics + resumed.metrics[:1])
    assert resumed.metrics[-1]["gan_pretrain_seconds"] == pytest.approx(pretrain_seconds)

    # A checkpoint written before pretraining existed (no pretrain_epoch) resumes as if pretraining was done.
    old = {k: v for k, v in full.states[3].items() if k not in ("pretrain_epoch", "gan_pretrain_seconds")}
    assert old["epoch"] == 1
    save_checkpoint(tmp_path / CHECKPOINT_FILE, old)
    resumed_old = Recorder()
    run(cfg, digits, resumed_old, checkpoint=tmp_path)
    assert strip_timing(resumed_old.metrics) == strip_timing(full.metrics[4:])
    assert resumed_old.metrics[0]["gan_pretrain_seconds"] == 0.0


def test_non_finite_gan_losses_in_pretraining_end_the_trial(digits):
    recorder = Recorder()
    final = run(budget_config(gan_lr=1e30, gan_pretrain_epochs=3, epochs=2), digits, recorder)
    assert final["diverged"] == 1 and final["val_acc"] == 0.0
    assert final["epoch"] == 0 and final["gan_pretrain_epoch"] <= 3
    assert all(m["epoch"] == 0 for m in recorder.metrics)


def test_checkpoint_errors_name_the_file(digits, tmp_path):
    cfg = TrialConfig(synthetic_ratio=0.0, epochs=1, batch_size=256, cas_epochs=0)
    recorder = Recorder()
    run(cfg, digits, recorder)
    save_checkpoint(tmp_path / CHECKPOINT_FILE, recorder.state)
    with pytest.raises(CheckpointError, match="different configuration.*classifier_lr"):
        load_checkpoint(tmp_path, cfg.replace(classifier_lr=0.5))
    load_checkpoint(tmp_path, cfg.replace(epochs=9))  # a longer budget may resume
    data = (tmp_path / CHECKPOINT_FILE).read_bytes()
    (tmp_path / CHECKPOINT_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=CHECKPOINT_FILE):
        load_checkpoint(tmp_path, cfg)


class Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_with_a_pickle_payload_is_refused(tmp_path):
    torch.save({"config": {}, "epoch": 1, "classifier": Payload()}, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(CheckpointError, match="refused: it holds Python objects beyond tensors"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("values, message", [
    ({"gan_lr": -1.0}, "gan_lr"),
    ({"gan": "stylegan"}, "gan='stylegan' is not one of cgan, acgan"),
    ({"labeling": "soft"}, "labeling"),
    ({"classifer": "mlp"}, "did you mean 'classifier'"),
    ({"d_real_fraction": 1.0}, "d_real_fraction"),
    ({"batch_size": "big"}, "batch_size='big' has the wrong type"),
    ({"diffaugment": "color,blur"}, "unknown part 'blur'"),
    ({"traditional_aug": "autoaugment"}, "traditional_aug='autoaugment' is not one of none, flip_translate, "
                                         "trivialaugment, randaugment"),
    ({"randaugment_magnitude": 40}, r"randaugment_magnitude=40 is out of range; valid: an integer in [0, 30]"),
    ({"cutout": -1}, "cutout=-1 is out of range"),
])
def test_trial_config_rejects_bad_values_naming_the_key(values, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        TrialConfig.from_dict(values)


@pytest.mark.parametrize("choice", ["trivialaugment", "randaugment"])
def test_strong_traditional_augmentation_trains_real_and_synthetic_images(digits, monkeypatch, choice):
    """The classifier sees augmented real images (and, with augment_synthetic, augmented fakes) and still
    learns digits well above chance."""
    import ganaug.trial.training

    calls = []
    augment = ganaug.trial.training.traditional_augment

    def recording(x, method, *args, **kwargs):
        calls.append((method, len(x), kwargs["cutout"]))
        return augment(x, method, *args, **kwargs)

    monkeypatch.setattr(ganaug.trial.training, "traditional_augment", recording)
    cfg = TrialConfig(synthetic_ratio=0.5, traditional_aug=choice, cutout=2, augment_synthetic=True, epochs=3,
                      batch_size=64, classifier_lr=2e-3, cas_epochs=0, gan_width=0.25, classifier_width=0.5)
    final = run(cfg, digits, Recorder())
    assert final["val_acc"] > 0.5  # chance is 0.1
    batches = math.ceil(len(digits.train_y) / 64)
    assert len(calls) == 2 * 3 * batches  # real and synthetic images of every classifier step
    assert {method for method, _, _ in calls} == {choice} and {cut for *_, cut in calls} == {2}
    assert {n for _, n, _ in calls} >= {64, 32}  # a real batch and its half-size synthetic share


def test_cutout_larger_than_the_images_is_refused(digits):
    with pytest.raises(ConfigError,
                       match=r"cutout=9 is out of range for 8x8 images; valid: an integer in \[0, 8\] \(0 = off\)"):
        run(TrialConfig(cutout=9, epochs=1, cas_epochs=0), digits, Recorder())


def test_labelers_cover_the_registry():
    assert set(LABELERS) == {"pseudo", "lsro", "all_in_one", "distill"}
