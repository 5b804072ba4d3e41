"""gan: translation (StarGAN / CycleGAN): the contract every family meets (shapes, ranges, losses that go down,
state round trips, resume equal to an uninterrupted run) and translation's own promises: a translation keeps its
input's shape and range, the cycle loss goes down on a two-class image folder, and sampled images are real
images of another class, labelled with the target class."""

import math
from pathlib import Path
from types import SimpleNamespace

import PIL.Image
import pytest
import torch
from conftest import seeded

from ganaug.config import ConfigError, TrialConfig
from ganaug.data.splits import load_data
from ganaug.data.tensors import DataSpec, ImageData, batch_indices, to_float
from ganaug.gan.families import FAMILIES, build_gan
from ganaug.gan.networks import ARCHITECTURES
from ganaug.gan.trainer import StateDictError
from ganaug.gan.translation import TranslationTrainer, translation_levels
from ganaug.trial.loop import run
from ganaug.trial.state import CHECKPOINT_FILE, load_checkpoint, save_checkpoint

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64)]



def small_config(**changes):
    return TrialConfig(**{**dict(gan="translation", gan_arch="dcgan", gan_width=0.25, gan_lr=1e-3), **changes})


def make_data(shape=(1, 8, 8), counts=(6, 6, 6, 6), seed=0):
    """ImageData whose training images are class prototypes plus noise; image i is unique (its index is written
    into its first pixels), so a sampled source can be traced back to its class."""
    g = seeded(seed)
    y = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    prototypes = torch.randint(40, 216, (len(counts), *shape), generator=g)
    x = (prototypes[y] + torch.randint(-30, 31, (len(y), *shape), generator=g)).clamp(0, 255).to(torch.uint8)
    x.view(len(y), -1)[:, 0] = torch.arange(len(y)) % 256
    x.view(len(y), -1)[:, 1] = torch.arange(len(y)) // 256
    spec = DataSpec(*shape, num_classes=len(counts), class_names=tuple(f"c{k}" for k in range(len(counts))),
                    class_counts=tuple(counts))
    return ImageData(x, y, x[:2], y[:2], x[:2], y[:2], spec)


def test_registered_with_its_keys():
    assert FAMILIES["translation"] is TranslationTrainer
    assert TrialConfig().cycle_weight == 10.0 and TrialConfig().identity_weight == 0.0
    for key, value in (("cycle_weight", -1.0), ("identity_weight", 101.0)):
        with pytest.raises(ConfigError, match=f"{key}=.*valid: 0 <= {key} <= 100"):
            TrialConfig.from_dict({key: value})
    # D's class head scores candidates, as ACGAN's does.
    TrialConfig.from_dict({"gan": "translation", "filter_candidates": 4})


# G is the same network whatever gan_arch says (it picks D): every image size with one D, every D on two sizes.
CASES = [("dcgan", shape) for shape in SHAPES] + [(arch, shape) for arch in ARCHITECTURES if arch != "dcgan"
                                                  for shape in ((1, 8, 8), (3, 32, 32))]


@pytest.mark.parametrize("arch, shape", CASES, ids=[f"{a}-{'x'.join(map(str, s))}" for a, s in CASES])
def test_translation_contract(arch, shape):
    """Shapes and ranges of G, D and samples; finite detached losses; D's loss down with G frozen."""
    torch.manual_seed(0)
    data = make_data(shape, counts=(3, 3, 3, 3))
    gan = build_gan(small_config(gan_arch=arch), data.spec, "cpu", data)
    real_x, real_y = to_float(data.train_x[:6]), data.train_y[:6]

    assert translation_levels(data.spec) == {8: 0, 28: 1, 32: 2, 64: 2}[shape[1]]
    translated = gan.G(real_x, (real_y + 1) % 4)
    assert translated.shape == real_x.shape and translated.min() >= -1 and translated.max() <= 1
    samples = gan.sample(real_y, seeded(1))
    assert samples.shape == (6, *shape) and samples.min() >= -1 and samples.max() <= 1
    logit, class_logits = gan.D(real_x, real_y)
    assert logit.shape == (6,) and class_logits.shape == (6, 4)

    for step in range(2):
        losses = gan.train_step(real_x, real_y, 0.5, seeded(step))
        assert set(losses) == {"d_loss", "g_loss", "cycle_loss"}
        for value in losses.values():
            assert value.dim() == 0 and not value.requires_grad and math.isfinite(value.item())

    d_losses = [gan.discriminator_step(real_x, real_y, 0.5, seeded(7)).item() for _ in range(15)]
    assert d_losses[-1] < 0.8 * d_losses[0], d_losses


def test_generator_loss_goes_down_with_d_frozen_and_options_run():
    """G's whole loss (adversarial + target class + cycle + identity) on a fixed batch; every D option and bf16."""
    torch.manual_seed(0)
    data = make_data()
    cfg = small_config(identity_weight=1.0, gan_loss="hinge", d_minibatch="stddev", d_spectral_norm=True,
                       diffaugment="color,translation", g_ema=0.5, d_steps=2)
    gan = build_gan(cfg, data.spec, "cpu", data)
    real_x, real_y = to_float(data.train_x[:8]), data.train_y[:8]
    g_losses = [gan.translation_step(real_x, real_y, seeded(3))[0].item() for _ in range(15)]
    assert g_losses[-1] < 0.8 * g_losses[0], g_losses
    losses = gan.train_step(real_x, real_y, 0.25, seeded(0), autocast=lambda: torch.autocast("cpu", torch.bfloat16))
    assert all(math.isfinite(v.item()) for v in losses.values())
    one = gan.train_step(real_x[:1], real_y[:1], 0.5, seeded(0))  # instance norm: a batch of one is fine
    assert all(math.isfinite(v.item()) for v in one.values())


def write_two_class_folder(root: Path, per_class: int = 20, size: int = 16) -> Path:
    """root/<class>/*.png: 'horses' are a bright disc, 'cows' a bright square, at random places on grey."""
    g = seeded(0)
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for name in ("cows", "horses"):
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            cy, cx = torch.randint(4, size - 4, (2,), generator=g).tolist()
            if name == "horses":
                shape = (ys - cy) ** 2 + (xs - cx) ** 2 <= 9
            else:
                shape = ((ys - cy).abs() <= 3) & ((xs - cx).abs() <= 3)
            image = torch.where(shape, 230, 60) + torch.randint(-20, 21, (size, size), generator=g)
            PIL.Image.fromarray(image.clamp(0, 255).to(torch.uint8).numpy()).save(root / name / f"{k:03d}.png")
    return root


def test_cycle_loss_goes_down_on_a_two_class_folder(tmp_path):
    """CycleGAN's setting: two classes, every image translated into the other; G(G(x, b), a) comes back to x."""
    data = load_data({"name": "imagefolder", "root": str(write_two_class_folder(tmp_path)), "val_fraction": 0.1})
    assert data.spec.num_classes == 2
    torch.manual_seed(0)
    gan = build_gan(small_config(), data.spec, "cpu", data)
    rng, cycle = seeded(0), []
    for _ in range(6):
        for index in batch_indices(len(data.train_y), 8, rng, "cpu"):
            cycle.append(gan.train_step(to_float(data.train_x[index]), data.train_y[index], 0.5,
                                        rng)["cycle_loss"].item())
    assert sum(cycle[-5:]) / 5 < 0.5 * sum(cycle[:5]) / 5, cycle

    # Two classes: every cow sampled as a horse is translated from a cow, and the other way round.
    y = torch.tensor([0, 1] * 8)
    sources = gan.sources.row_of_other_class(y, seeded(1))
    assert torch.equal(data.train_y[sources], 1 - y)
    translated = gan.sample(y, seeded(1))
    assert translated.shape == (16, *data.spec.shape) and translated.min() >= -1 and translated.max() <= 1


def test_samples_are_real_images_of_other_classes_in_proportion():
    """With G the identity, sample(y) shows its sources: real training images of a class other than y, drawn
    uniformly over those images (so classes in proportion to their counts)."""
    data = make_data(counts=(2, 4, 10))
    gan = build_gan(small_config(), data.spec, "cpu", data)
    gan.G = lambda x, y: x
    real = to_float(data.train_x)
    y = torch.tensor([0] * 1400 + [2] * 600)
    images = gan.sample(y, seeded(0))
    matches = (images.flatten(1)[:, None] == real.flatten(1)[None]).all(dim=2)
    assert (matches.sum(1) == 1).all()
    source_class = data.train_y[matches.float().argmax(1)]
    assert (source_class != y).all()
    from_1 = (source_class[:1400] == 1).float().mean().item()
    assert from_1 == pytest.approx(4 / 14, abs=0.04)  # classes 1 and 2 hold 4 and 10 images
    assert (source_class[1400:] == 1).float().mean().item() == pytest.approx(4 / 6, abs=0.06)
    assert torch.equal(gan.sample(y[:50], seeded(3)), gan.sample(y[:50], seeded(3)))


def test_one_class_or_no_data_is_a_clear_error():
    with pytest.raises(ConfigError, match="1 class; valid: a dataset of two or more classes"):
        build_gan(small_config(), make_data(counts=(5,)).spec, "cpu", make_data(counts=(5,)))
    with pytest.raises(ConfigError, match="needs them"):
        build_gan(small_config(), make_data().spec, "cpu")
    lopsided = make_data(counts=(5, 0))
    with pytest.raises(ConfigError, match=r"only \['c0'\]"):
        build_gan(small_config(), lopsided.spec, "cpu", lopsided)


def test_state_round_trip_and_resume_equal_an_uninterrupted_run(tmp_path):
    data = make_data()
    cfg = small_config(g_ema=0.5, diffaugment="color,translation,cutout")
    real_x, real_y = to_float(data.train_x[:8]), data.train_y[:8]
    torch.manual_seed(0)
    uninterrupted = build_gan(cfg, data.spec, "cpu", data)
    torch.manual_seed(0)
    first = build_gan(cfg, data.spec, "cpu", data)
    for step in range(2):
        uninterrupted.train_step(real_x, real_y, 0.5, seeded(step))
        first.train_step(real_x, real_y, 0.5, seeded(step))
    torch.save(first.state_dict(), tmp_path / "gan.pt")

    torch.manual_seed(1)  # another initialisation, overwritten by the load
    resumed = build_gan(cfg, data.spec, "cpu", data)
    resumed.load_state_dict(torch.load(tmp_path / "gan.pt", weights_only=True))
    y = torch.arange(8) % 4
    assert torch.equal(uninterrupted.sample(y, seeded(9)), resumed.sample(y, seeded(9)))
    for step in range(2, 4):
        a = uninterrupted.train_step(real_x, real_y, 0.5, seeded(step))
        b = resumed.train_step(real_x, real_y, 0.5, seeded(step))
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(uninterrupted.sample(y, seeded(9)), resumed.sample(y, seeded(9)))

    with pytest.raises(StateDictError, match="gan_width"):
        build_gan(cfg.replace(gan_width=0.5), data.spec, "cpu", data).load_state_dict(first.state_dict())


def test_pipeline_trial_reports_cycle_loss_and_resumes_like_an_uninterrupted_run(tmp_path):
    digits = load_data({"name": "digits", "samples_per_class": 12, "val_fraction": 0.25})
    cfg = TrialConfig(gan="translation", gan_arch="dcgan", gan_width=0.25, classifier_width=0.25, synthetic_ratio=0.5,
                      epochs=2, batch_size=32, checkpoint_every=1, cas_epochs=0, seed=3)
    full, states = [], []

    def record(metrics, checkpoint=None, images=None):
        full.append(metrics)
        states.append(load_checkpoint(checkpoint))

    run(cfg, digits, record)
    assert all(math.isfinite(m["cycle_loss"]) and m["diverged"] == 0 for m in full)
    save_checkpoint(tmp_path / CHECKPOINT_FILE, states[0])
    resumed = []
    run(cfg, digits, lambda metrics, checkpoint=None, images=None: resumed.append(metrics), checkpoint=tmp_path)
    timing = ("epoch_seconds", "images_per_second")
    assert [{k: v for k, v in m.items() if k not in timing} for m in resumed] == \
        [{k: v for k, v in m.items() if k not in timing} for m in full[1:]]


def test_generate_loads_a_translation_generator_with_the_experiment_data(tmp_path):
    from ganaug.results.generate import load_generator, sample_per_class

    data = make_data()
    cfg = small_config(synthetic_ratio=0.5)
    gan = build_gan(cfg, data.spec, "cpu", data)
    save_checkpoint(tmp_path / CHECKPOINT_FILE, {"config": cfg.to_dict(), "epoch": 1, "classifier": {},
                                                 "gan": gan.state_dict()})
    experiment = SimpleNamespace(config_of=lambda trial: cfg.to_dict(), checkpoints_of=lambda trial: [tmp_path])
    trial = {"trial_id": "t0", "path": str(tmp_path)}
    loaded, _, _, epoch = load_generator(experiment, trial, data.spec, "cpu", data)
    images, labels = sample_per_class(loaded, 4, per_class=3, seed=0)
    assert epoch == 1 and images.shape == (12, 1, 8, 8) and labels.tolist() == [k for k in range(4) for _ in range(3)]
    with pytest.raises(ConfigError, match="needs them"):
        load_generator(experiment, trial, data.spec, "cpu")
