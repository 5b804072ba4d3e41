"""Synthetic sources (trial.sources): each draws the classes it is asked for; the real pool holds no image of any split;
a pool is drawn once per bank key and loaded after without a generator pass; a resumed trial draws the rows an
uninterrupted one does; the user's own generator and unlabelled folders train a classifier; evaluate's positive
control and its gain recovery."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy.stats import t as student_t

from ganaug.config import TrialConfig
from ganaug.data import attach_folders, load_data, to_uint8
from ganaug.gan import GANTrainer
from ganaug.results.report import control_line
from ganaug.results.stats import gain_recovery
from ganaug.trial import GeneratorBank, run
from ganaug.trial.runtime import Runtime
from ganaug.trial.sources import build_source
from ganaug.trial.state import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from ganaug.trial.synthetic import SyntheticImages

SMALL = dict(classifier_width=0.25, gan_width=0.25, batch_size=64, cas_epochs=0, epochs=2)
CLASSES = ("a", "b", "c")


def write_unique_images(root, per_class: int = 30, size: int = 8) -> None:
    """root/<class>/*.png: every image different from every other (its index written into its pixels) and of a
    grey level that says its class."""
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            pixels = np.full((size, size), 40 + 80 * label, np.uint8)
            pixels[0, :2] = divmod(label * 1000 + k, 256)
            Image.fromarray(pixels).save(root / name / f"{k:03d}.png")


@pytest.fixture(scope="module")
def digits():
    return load_data({"name": "digits", "val_fraction": 0.2, "real_pool": {"per_class": 20}})


def rows_of(cfg, data, **kwargs):
    rows = []
    final = run(cfg, data, lambda metrics, **_: rows.append(metrics), **kwargs)
    return rows, final


@pytest.mark.parametrize("long_tail", [False, True])
def test_the_real_pool_holds_no_image_of_train_validation_or_test(tmp_path, long_tail):
    write_unique_images(tmp_path / "images")
    data = load_data({"name": "imagefolder", "root": str(tmp_path / "images"), "test_fraction": 0.2,
                      "val_fraction": 0.2, "real_pool": {"per_class": 6},
                      **({"long_tail": {"ratio": 4}} if long_tail else {})})
    pool_x, pool_y = data.sources["real"]
    as_bytes = lambda x: {bytes(image.flatten().tolist()) for image in x}
    pool = as_bytes(pool_x)
    assert len(pool) == len(pool_x) > 0
    for split in (data.train_x, data.val_x, data.test_x):
        assert not pool & as_bytes(split)
    counts = torch.bincount(pool_y, minlength=3).tolist()
    if long_tail:  # the images the tail's cut removed: none of the head, up to 6 of every other class
        assert counts[0] == 0 and counts[1:] == [6, 6]
    else:
        # 24 training images a class (30 less the 20 % test share): 6 to the pool, the rest to train + validation.
        assert counts == [6, 6, 6] and len(data.train_y) + len(data.val_y) == 3 * (24 - 6)


def test_a_labelled_folder_and_every_source_draw_the_classes_asked_for(tmp_path, digits):
    """SyntheticImages' rows come out in the classes their labels name: a labelled folder's images are those of the
    class's subfolder, the real pool's are real images of the class, the user's generator's are its class's level."""
    write_unique_images(tmp_path / "synth")
    images = load_data({"name": "imagefolder", "root": str(tmp_path / "synth"), "val_fraction": 0.2})
    data = attach_folders(images, [str(tmp_path / "synth")])
    x, y = data.sources[f"folder:{tmp_path / 'synth'}"]
    assert torch.equal(torch.bincount(y), torch.tensor([30, 30, 30]))
    runtime = Runtime(torch.device("cpu"), torch.Generator().manual_seed(0), False, torch.contiguous_format)
    for cfg, data_of in [(TrialConfig(synthetic_ratio=1.0, synthetic_source="folder",
                                      synthetic_folder=str(tmp_path / "synth")), data),
                         (TrialConfig(synthetic_ratio=1.0, synthetic_source="real"), digits),
                         (TrialConfig(synthetic_ratio=1.0, synthetic_source="sources_module:make"), digits)]:
        source = build_source(cfg, None, data_of, runtime, None)
        batch = SyntheticImages(cfg, source, None, data_of.spec.class_counts, runtime).draw(90)
        counts = torch.bincount(batch.y, minlength=data_of.spec.num_classes)
        assert counts.max() - counts.min() <= 1  # balanced data: every class alike
        if cfg.synthetic_source == "folder":  # a's images are level 40, b's 120, c's 200 (bar two marker pixels)
            assert torch.equal(to_uint8(batch.x)[:, 0, 4, 4], torch.tensor([40, 120, 200])[batch.y].to(torch.uint8))
        elif cfg.synthetic_source == "real":  # each row is a pool image of its class
            pool_x, pool_y = digits.sources["real"]
            for image, label in zip(to_uint8(batch.x), batch.y):
                assert bool(((pool_x == image).flatten(1).all(1) & (pool_y == label)).any())
        else:
            assert torch.allclose(batch.x.mean((1, 2, 3)), torch.linspace(-0.9, 0.9, 10)[batch.y] + 0.025, atol=0.01)


def test_a_pool_is_drawn_once_per_bank_key_and_loaded_without_a_generator_pass(digits, tmp_path, monkeypatch):
    calls = []
    sample = GANTrainer.sample
    monkeypatch.setattr(GANTrainer, "sample", lambda self, *args, **kwargs: calls.append(1) or
                        sample(self, *args, **kwargs))
    cfg = TrialConfig(**SMALL, synthetic_ratio=0.5, synthetic_source="pool", synthetic_pool=40,
                      gan_pretrain_epochs=1, gan_freeze=True, filter_candidates=2)  # acgan: its head scores once
    first, _ = rows_of(cfg, digits, bank=GeneratorBank(tmp_path / "bank"))
    assert calls and (tmp_path / "bank" / first[-1]["generator_key"] / "pool_40.pt").is_file()
    calls.clear()
    second, _ = rows_of(cfg, digits, bank=GeneratorBank(tmp_path / "bank"))
    assert calls == []  # loaded the generator and its pool: no generator forward pass at all
    assert second[-1]["generator_reused"] == 1 and second[-1]["filter_confidence"] > 0
    strip = lambda rows: [{k: v for k, v in row.items() if "seconds" not in k and k not in
                           ("images_per_second", "generator_reused")} for row in rows if row["epoch"] > 0]
    assert strip(second) == strip(first)  # the same pool, the same rows


@pytest.mark.parametrize("source", ["real", "pool"])
def test_a_resumed_trial_draws_the_same_rows_as_an_uninterrupted_one(digits, tmp_path, source):
    cfg = TrialConfig(**{**SMALL, "epochs": 3}, synthetic_ratio=1.0, synthetic_source=source, checkpoint_every=1,
                      **({"gan_pretrain_epochs": 1, "gan_freeze": True, "synthetic_pool": 30} if source == "pool"
                         else {}))
    kept = {}

    def keep(metrics, checkpoint=None, images=None):
        kept.setdefault("rows", []).append(metrics)
        if metrics["epoch"] == 1 and checkpoint is not None:
            save_checkpoint(tmp_path / CHECKPOINT_FILE, load_checkpoint(checkpoint))

    run(cfg, digits, keep, bank=GeneratorBank(tmp_path / "bank"))
    resumed, _ = rows_of(cfg, digits, checkpoint=tmp_path, bank=GeneratorBank(tmp_path / "bank"))
    strip = lambda row: {k: v for k, v in row.items() if k not in ("epoch_seconds", "images_per_second")}
    assert [strip(row) for row in resumed] == [strip(row) for row in kept["rows"] if row["epoch"] >= 2]


def test_the_user_s_generator_and_an_unlabelled_folder_train_the_classifier(digits, tmp_path):
    """Through a test module (package.module:factory) the search's whole path runs, with its grids and quality; a flat
    folder of real digits, unlabelled, gets its targets from the labeling (pseudo: the classifier's own prediction)."""
    rows, final = rows_of(TrialConfig(**{**SMALL, "cas_epochs": 1}, synthetic_ratio=0.5,
                                      synthetic_source="sources_module:make"), digits)
    assert final["val_acc"] > 0.5 and 0 <= final["cas"] <= 1 and "synthetic_diversity" in final
    flat = tmp_path / "flat"
    flat.mkdir()
    for k, image in enumerate(digits.train_x[:200]):
        Image.fromarray(image[0].numpy()).save(flat / f"{k}.png")
    data = attach_folders(digits, [str(flat)])
    assert (data.sources[f"folder:{flat}"][1] == -1).all()
    for labeling in ("pseudo", "lsro", "all_in_one"):
        cfg = TrialConfig(**{**SMALL, "cas_epochs": 1}, synthetic_ratio=0.5, synthetic_source="folder",
                          synthetic_folder=str(flat), labeling=labeling)
        rows, final = rows_of(cfg, data)
        assert final["val_acc"] > 0.5 and "frechet_distance" in final
        assert "cas" not in final and "synthetic_diversity" not in final  # an unlabelled source has no classes


def test_a_source_key_under_synthetic_ratio_0_is_inactive():
    from ganaug.config import inactive_keys

    off = inactive_keys(TrialConfig(synthetic_source="folder", synthetic_folder="x", synthetic_ratio=0.0))
    assert {"synthetic_source", "synthetic_folder", "synthetic_pool", "gan", "gan_lr"} <= set(off)
    real = inactive_keys(TrialConfig(synthetic_ratio=0.5, synthetic_source="real"))
    assert {"gan", "gan_lr", "gan_pretrain_epochs", "synthetic_pool"} <= set(real) and "labeling" not in real


def test_gain_recovery_on_a_hand_made_table():
    """best_gan gains 2, 3, 2 points, the oracle 10, 11, 9: the generator recovers 7 / 30 of real data's gain; the
    interval's ends are where best_gan - best_no_gan - R (oracle - best_no_gan) has a t-interval ending at 0."""
    rows = []
    for seed, (gan, no_gan, oracle) in enumerate([(0.62, 0.60, 0.70), (0.63, 0.60, 0.71), (0.61, 0.59, 0.68)]):
        rows += [{"policy": name, "seed": seed, "test_acc": value}
                 for name, value in (("best_gan", gan), ("best_no_gan", no_gan), ("oracle", oracle))]
    share = gain_recovery(pd.DataFrame(rows))
    assert share["recovery"] == pytest.approx(7 / 30) and share["pairs"] == 3
    a, b = np.array([0.02, 0.03, 0.02]), np.array([0.10, 0.11, 0.09])
    t = student_t.ppf(0.975, 2)
    for end, side in ((share["ci_low"], 1), (share["ci_high"], -1)):
        d = a - end * b
        assert d.mean() - side * t * d.std(ddof=1) / math.sqrt(3) == pytest.approx(0, abs=1e-9)
    # An oracle whose gain is not clear of 0: the share cannot be bounded.
    noisy = pd.DataFrame(rows).assign(test_acc=lambda f: np.where(
        f["policy"] == "oracle", f["test_acc"] - [0.10, 0.0, 0.0, 0.11, 0.0, 0.0, 0.0, 0.0, 0.07], f["test_acc"]))
    assert math.isinf(gain_recovery(noisy)["ci_high"])
    # The report's second line says both.
    line = control_line(pd.DataFrame(rows).assign(aliases=""))
    assert "oracle - best_no_gan +10.0 points" in line and "gain recovery" in line and "0.23 [0.11, 0.32]" in line
    assert control_line(pd.DataFrame(rows)[lambda f: f["policy"] != "oracle"].assign(aliases="")) == ""
