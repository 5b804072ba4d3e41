"""Continuous conditions (gan_conditions): attributes.csv in image folders, the conditioned cgan / acgan contract,
the acceptance check that generated brightness follows a brightness attribute, resume, bad inputs; and the
`classes` data key."""

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import seeded
from PIL import Image

from ganaug.config import ConfigError, TrialConfig
from ganaug.data.config import DataError
from ganaug.data.splits import load_data
from ganaug.data.tensors import ImageData, batch_indices, to_float
from ganaug.gan.conditions import AttributeBatchNorm, ConditionedTrainer
from ganaug.gan.families import build_gan
from ganaug.gan.losses import FAMILY_LOSSES
from ganaug.gan.networks import ARCHITECTURES
from ganaug.gan.trainer import GANTrainer, StateDictError
from ganaug.metrics import BY_NAME
from ganaug.space.schema import SpaceError
from ganaug.space.spec import load_space
from ganaug.trial.loop import run
from ganaug.trial.state import CHECKPOINT_FILE, load_checkpoint, save_checkpoint

CLASSES = ("a", "b")


def write_attribute_folder(root: Path, per_class: int = 40, test: int = 4, seed: int = 0) -> Path:
    """Two classes of 8x8 grayscale images whose brightness is 30 + 190 * level (darker left columns for class a,
    darker top rows for class b, plus noise); attributes.csv per split: file,level,noise (noise is unrelated)."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("test", test)):
        rows = ["file,level,noise"]
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for k in range(count):
                level = rng.uniform()
                image = np.full((8, 8), 30 + 190 * level)
                if label == 0:
                    image[:, :3] *= 0.5
                else:
                    image[:3, :] *= 0.5
                image = np.clip(image + rng.normal(0, 6, (8, 8)), 0, 255).astype(np.uint8)
                Image.fromarray(image).save(root / split / name / f"{k:03d}.png")
                rows.append(f"{name}/{k:03d}.png,{level:.4f},{rng.normal():.3f}")
        (root / split / "attributes.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_attribute_folder(tmp_path_factory.mktemp("attributes"))


@pytest.fixture(scope="module")
def data(folder):
    return load_data({"name": "imagefolder", "root": str(folder), "val_fraction": 0.1})


def small_config(**changes):
    base = dict(gan="cgan", gan_conditions="level", gan_width=0.25, latent_dim=16, gan_lr=1e-3, batch_size=32)
    return TrialConfig(**{**base, **changes})



def train(gan, data, steps, seed=0):
    g = seeded(seed)
    done = 0
    while True:
        for index in batch_indices(len(data.train_y), 32, g, "cpu", drop_last=True):
            losses = gan.train_step(to_float(data.train_x[index]), data.train_y[index], 0.5, g,
                                    real_attributes=data.train_attributes[index])
            done += 1
            if done == steps:
                return losses


def brightness_correlation(gan, n=200):
    """Pearson correlation of the requested level with the mean brightness of the generated images."""
    level = torch.linspace(0, 1, n)[:, None]
    images = gan.sample(torch.arange(n) % 2, seeded(1), attributes=level)
    return float(np.corrcoef(level[:, 0].numpy(), images.mean((1, 2, 3)).numpy())[0, 1])


# ----------------------------------------------------------------------------------------------
# attributes.csv


def test_attributes_follow_their_images_through_every_split(data, folder):
    assert data.spec.attribute_names == ("level", "noise")
    for split in ("train", "val", "test"):
        x, attributes = getattr(data, f"{split}_x"), getattr(data, f"{split}_attributes")
        assert attributes.dtype == torch.float32 and attributes.shape == (len(x), 2)
        # The folder's images have brightness 30 + 190 * level: each row belongs to its image.
        brightness = x.float().mean((1, 2, 3))
        assert np.corrcoef(attributes[:, 0].numpy(), brightness.numpy())[0, 1] > 0.95
    assert len(data.test_attributes) == 2 * 4
    # train + val (evaluate) and Ray's packing keep them.
    both = data.train_and_val()
    assert torch.equal(both.train_attributes, torch.cat([data.train_attributes, data.val_attributes]))
    unpacked = ImageData.unpack(data.pack())
    assert torch.equal(unpacked.train_attributes, data.train_attributes)
    assert unpacked.spec.attribute_names == ("level", "noise")


def test_attributes_without_header_flat_layout_and_datasets_without_attributes(tmp_path):
    root = tmp_path / "flat"
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for k in range(3):
            Image.fromarray(np.full((8, 8), 40 * k + (100 if name == "b" else 0), np.uint8)).save(
                root / name / f"{k}.png")
    rows = [f"{name}/{k}.png,{40 * k + (100 if name == 'b' else 0)},{k}" for name in CLASSES for k in range(3)]
    (root / "attributes.csv").write_text("\n".join(rows) + "\n")
    data = load_data({"name": "imagefolder", "root": str(root), "test_fraction": 0.34, "val_fraction": 0.5})
    assert data.spec.attribute_names == ("col1", "col2")
    for split in ("train", "val", "test"):
        x, attributes = getattr(data, f"{split}_x"), getattr(data, f"{split}_attributes")
        assert torch.equal(x.float().mean((1, 2, 3)), attributes[:, 0])
    digits = load_data({"name": "digits"})
    assert digits.spec.attribute_names == () and digits.train_attributes.shape == (len(digits.train_y), 0)


BAD_TABLES = {
    "missing column": ("a/001.png,0.5\n", r"train/attributes.csv: row 3 \(a/001.png\): 1 value\(s\), expected 2 "
                                          r"\(level, noise\)"),
    "non-numeric": ("a/001.png,0.5,heavy\n", r"train/attributes.csv: row 3 \(a/001.png\): noise='heavy' is not a "
                                             "number"),
    "no row": ("", r"train/attributes.csv: no row for image a/001.png; every image needs a row"),
    "duplicate": ("a/001.png,0.5,1\na/001.png,0.5,1\n", r"train/attributes.csv: row 4: a/001.png already has row 3"),
}


@pytest.mark.parametrize("case", list(BAD_TABLES))
def test_bad_attribute_rows_are_one_message_naming_file_and_row(tmp_path, case):
    root = write_attribute_folder(tmp_path / "bad", per_class=2, test=1)
    table = root / "train" / "attributes.csv"
    good = [line for line in table.read_text().splitlines() if not line.startswith("a/001.png")]
    table.write_text("\n".join(good[:2]) + "\n" + BAD_TABLES[case][0] + "\n".join(good[2:]) + "\n")
    with pytest.raises(DataError, match=BAD_TABLES[case][1]):
        load_data({"name": "imagefolder", "root": str(root)})


def test_a_split_without_attributes_csv_is_named(tmp_path):
    root = write_attribute_folder(tmp_path / "half", per_class=2, test=1)
    (root / "test" / "attributes.csv").unlink()
    with pytest.raises(DataError, match=r"test/attributes.csv: missing, but .*train/attributes.csv exists"):
        load_data({"name": "imagefolder", "root": str(root)})


def test_gan_conditions_naming_an_absent_column_fails_before_training(data, tmp_path):
    with pytest.raises(ConfigError, match=r"'mass' is not an attribute column of the dataset; valid columns: "
                                          "level, noise"):
        build_gan(small_config(gan_conditions="level,mass"), data.spec, "cpu", data)
    digits = load_data({"name": "digits"})
    with pytest.raises(ConfigError, match="valid columns: none: the dataset has no attributes"):
        build_gan(small_config(), digits.spec, "cpu", digits)
    # A search space fails before Ray starts (tune.search calls check_conditions once the data is loaded).
    from ganaug.space.dataset import check_conditions

    path = tmp_path / "space.yaml"
    path.write_text("experiment: {name: t}\ndata: {name: digits}\nscheduler: {max_epochs: 2}\n"
                    "fixed: {gan: cgan, gan_conditions: [level]}\nsearch: {gan_lr: {choice: [1.0e-3]}}\n")
    with pytest.raises(SpaceError, match=r"fixed.gan_conditions: 'level' is not an attribute column"):
        check_conditions(load_space(path), digits.spec)
    check_conditions(load_space(path), data.spec)


def test_gan_conditions_config_values():
    assert TrialConfig.from_dict({"gan_conditions": ["mass", "distance"]}).gan_conditions == "mass,distance"
    assert TrialConfig.from_dict({"gan_conditions": None}).gan_conditions == ""
    with pytest.raises(ConfigError, match="gan_conditions='mass,mass' is out of range"):
        TrialConfig(gan_conditions="mass,mass").validate()
    with pytest.raises(ConfigError, match="predictor_weight"):
        TrialConfig(predictor_weight=0.0).validate()


# ----------------------------------------------------------------------------------------------
# The conditioned GAN: contract, acceptance, state.


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("family", list(FAMILY_LOSSES))
def test_conditioned_gan_contract(family, arch, data):
    torch.manual_seed(0)
    gan = build_gan(small_config(gan=family, gan_arch=arch), data.spec, "cpu", data)
    assert isinstance(gan, ConditionedTrainer)
    assert any(isinstance(m, AttributeBatchNorm) for m in gan.G.modules())
    n = 8
    real_x, real_y, real_a = to_float(data.train_x[:n]), data.train_y[:n], data.train_attributes[:n]
    samples = gan.sample(real_y, seeded(1))
    assert samples.shape == (n, 1, 8, 8) and samples.min() >= -1 and samples.max() <= 1
    logit, class_logits, predicted = gan.D(real_x, real_y, with_predictions=True)
    assert logit.shape == (n,) and predicted.shape == (n, 1)
    assert (class_logits is not None) == (family == "acgan")
    assert len(gan.D(real_x, real_y)) == 2  # the unconditioned interface is unchanged (class_scores, metrics)
    for step in range(2):
        losses = gan.train_step(real_x, real_y, 0.5, seeded(step), real_attributes=real_a)
        assert set(losses) == {"d_loss", "g_loss"}
        assert all(v.dim() == 0 and not v.requires_grad and math.isfinite(v.item()) for v in losses.values())
    # D's loss (adversarial + hinged predictor loss) goes down on a fixed batch with G frozen.
    standardised = gan.standardise(real_a[:, gan.columns])
    d_losses = [gan.discriminator_step(real_x, real_y, 0.5, seeded(7), real_attributes=standardised).item()
                for _ in range(20)]
    assert d_losses[-1] < 0.8 * d_losses[0], d_losses
    with pytest.raises(ValueError, match="train_step needs real_attributes"):
        gan.train_step(real_x, real_y, 0.5)


def test_untrained_generator_ignores_attributes_and_draws_them_per_class(data):
    torch.manual_seed(0)
    gan = build_gan(small_config(), data.spec, "cpu", data)
    y = torch.arange(16) % 2
    low, high = (gan.sample(y, seeded(1), attributes=torch.full((16, 1), v)) for v in (0.0, 1.0))
    assert torch.equal(low, high)  # the attribute maps start at zero: the class-only generator
    drawn = gan.draw_attributes(torch.zeros(500, dtype=torch.long), seeded(2))
    level = data.train_attributes[data.train_y == 0, 0]
    allowed = gan.standardise(level[:, None])[:, 0]
    assert torch.isin(drawn[:, 0], allowed).all() and len(drawn[:, 0].unique()) > 0.8 * len(level)


@pytest.mark.parametrize("family", list(FAMILY_LOSSES))
def test_generated_brightness_follows_the_attribute(family, data):
    """Acceptance: the requested level, which sets the real images' brightness, sets the generated images' too."""
    torch.manual_seed(0)
    gan = build_gan(small_config(gan=family), data.spec, "cpu", data)
    train(gan, data, steps=150)
    correlation = brightness_correlation(gan)
    assert correlation > 0.5, correlation
    assert gan.condition_error(200, seeded(2)) < 0.5  # standardised units: ~1 would mean G ignores the level


def test_without_the_predictor_loss_the_generator_ignores_the_attribute(data):
    """The control of the acceptance test: with predictor_weight near 0, D never reads the level and nor does G."""
    torch.manual_seed(0)
    gan = build_gan(small_config(predictor_weight=1e-4), data.spec, "cpu", data)
    train(gan, data, steps=150)
    assert abs(brightness_correlation(gan)) < 0.3


def test_state_dict_round_trip_and_sampling_without_data(data, tmp_path):
    torch.manual_seed(0)
    cfg = small_config(gan="acgan", g_ema=0.5)
    first = build_gan(cfg, data.spec, "cpu", data)
    train(first, data, steps=3)
    torch.save(first.state_dict(), tmp_path / "gan.pt")
    state = torch.load(tmp_path / "gan.pt", weights_only=True)
    torch.manual_seed(1)
    second = build_gan(cfg, data.spec, "cpu")  # as ganaug.generate builds it: no data, statistics from the state
    second.load_state_dict(state)
    y = torch.arange(8) % 2
    assert torch.equal(first.sample(y, seeded(9)), second.sample(y, seeded(9)))
    batch = slice(0, 16)
    args = (to_float(data.train_x[batch]), data.train_y[batch], 0.5)
    a = first.train_step(*args, seeded(4), real_attributes=data.train_attributes[batch])
    b = second.train_step(*args, seeded(4), real_attributes=data.train_attributes[batch])
    assert torch.equal(a["d_loss"], b["d_loss"]) and torch.equal(a["g_loss"], b["g_loss"])
    plain = GANTrainer(TrialConfig(gan="acgan", gan_width=0.25, latent_dim=16), data.spec, torch.device("cpu"))
    with pytest.raises(StateDictError, match="lacks the attribute statistics"):
        second.load_state_dict(plain.state_dict())
    with pytest.raises(StateDictError, match="expected keys"):
        plain.load_state_dict(state)


def test_joint_trial_reports_condition_error_and_resumes_exactly(data, tmp_path):
    cfg = small_config(synthetic_ratio=1.0, epochs=2, checkpoint_every=1, cas_epochs=0, classifier_width=0.25,
                       seed=3)
    full = []

    def record(metrics, checkpoint=None, images=None):
        full.append(dict(metrics))
        if metrics["epoch"] == 1:  # resume from here below
            save_checkpoint(tmp_path / CHECKPOINT_FILE, load_checkpoint(checkpoint))

    run(cfg, data, record)
    assert all(0 <= m["condition_error"] < 10 for m in full)
    assert {key for m in full for key in m} <= set(BY_NAME)  # every metric reported is declared (ganaug.metrics)
    resumed = []
    run(cfg, data, lambda metrics, checkpoint=None, images=None: resumed.append(dict(metrics)), checkpoint=tmp_path)
    strip = lambda m: {k: v for k, v in m.items() if k not in ("epoch_seconds", "images_per_second")}
    assert [strip(m) for m in resumed] == [strip(full[1])]


# ----------------------------------------------------------------------------------------------
# data.classes


def test_classes_keeps_the_named_classes_relabelled_in_order():
    data = load_data({"name": "digits", "classes": [8, "3"], "samples_per_class": 40, "val_fraction": 0.25,
                      "imbalance": {"3": 0.5}})
    assert data.spec.class_names == ("8", "3") and data.spec.num_classes == 2
    assert data.spec.class_counts == (30, 15)
    full = load_data({"name": "digits"})
    for split in ("train", "val", "test"):
        assert set(getattr(data, f"{split}_y").tolist()) == {0, 1}
    # The test split is the dataset's 8s and 3s, relabelled 0 and 1.
    assert torch.equal(data.test_x, full.test_x[(full.test_y == 8) | (full.test_y == 3)])
    assert torch.equal(data.test_y, (full.test_y[(full.test_y == 8) | (full.test_y == 3)] == 3).long())


def test_classes_keeps_attributes_with_their_images(folder):
    data = load_data({"name": "imagefolder", "root": str(folder), "classes": ["b"] + ["a"]})
    everything = load_data({"name": "imagefolder", "root": str(folder)})
    assert data.spec.class_names == ("b", "a") and data.spec.attribute_names == ("level", "noise")
    assert torch.equal(data.test_y, 1 - everything.test_y)  # same images in the same order, relabelled
    assert torch.equal(data.test_attributes, everything.test_attributes)


@pytest.mark.parametrize("classes, message", [
    ([3, "cat", "dog"], r"data.classes: 'cat', 'dog' are not a class of digits; valid: 0, 1, 2, .*, 9"),
    (["3"], "data.classes=.* is not valid; valid: a list of at least two distinct class names"),
    ([3, "3"], "data.classes names '3' more than once"),
    ("3,8", "data.classes='3,8' is not valid"),
])
def test_bad_classes(classes, message):
    with pytest.raises(DataError, match=message):
        load_data({"name": "digits", "classes": classes})


def test_conftest_style_spec_without_attribute_names_is_refused_clearly():
    spec = SimpleNamespace(channels=1, height=8, width=8, num_classes=2, class_names=CLASSES, class_counts=(4, 4))
    with pytest.raises(ConfigError, match="valid columns: none"):
        ConditionedTrainer(small_config(), spec, torch.device("cpu"))
