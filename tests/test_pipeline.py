"""The joint trial on real data (sklearn's bundled digits, CPU): learning, GAN samples, divergence, resume."""

import math

import pytest
import torch

from ganaug.classifiers import build_classifier
from ganaug.config import ConfigError, TrialConfig
from ganaug.data import load_data
from ganaug.gans import GAN
from ganaug.labeling import LABELERS
from ganaug.pipeline import CHECKPOINT_FILE, CheckpointError, load_checkpoint, run, save_checkpoint


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
    cfg = TrialConfig(gan="acgan", gan_arch="mlp", synthetic_ratio=0.5, labeling="pseudo", epochs=20,
                      batch_size=64, gan_lr=5e-4, sample_every=10, cas_epochs=1, seed=1)
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
    gan = GAN(cfg, digits.spec, torch.device("cpu"))
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
])
def test_trial_config_rejects_bad_values_naming_the_key(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrialConfig.from_dict(values)


def test_labelers_cover_the_registry():
    assert set(LABELERS) == {"pseudo", "lsro", "all_in_one"}
