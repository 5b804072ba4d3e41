"""Tests of ganaug.data: every dataset kind from files written here, the splits, subsampling, imbalance,
the decoded-image cache, device-side augmentation and batching, and one clear DataError per bad input."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from ganaug.augment.flip import flip_translate
from ganaug.data.config import DataConfig, DataError
from ganaug.data.readers import DATASETS
from ganaug.data.splits import load_data
from ganaug.data.tensors import DataSpec, ImageData, batch_indices, pick_device, to_float, to_uint8

REPO = Path(__file__).resolve().parents[1]
COLORS = {"apple": (250, 10, 10), "grass": (10, 250, 10), "sky": (10, 10, 250)}


# ----------------------------------------------------------------------------------------------
# Fixtures: tiny datasets in each on-disk format.


def write_image_folder(root: Path, per_class: int = 10, sizes=((32, 32), (40, 30), (16, 16))) -> Path:
    """root/<class>/*.png, one solid colour per class, mixed sizes, one grayscale image in 'sky'."""
    for name, color in COLORS.items():
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            image = PIL.Image.new("RGB", sizes[k % len(sizes)], color)
            if name == "sky" and k == 0:
                image = PIL.Image.new("L", (24, 24), 128)
            image.save(root / name / f"{k:03d}.png")
        (root / name / "notes.txt").write_text("not an image; ignored")
    return root


def write_cifar(root: Path, hundred: bool = False, per_batch: int = 40, test: int = 50) -> Path:
    """CIFAR pickles in torchvision's layout; image i carries its index in its first two bytes."""
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    labels_key = "fine_labels" if hundred else "labels"
    rng = np.random.default_rng(0)
    start = 0

    def batch(path: Path, count: int) -> None:
        nonlocal start
        images = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
        ids = np.arange(start, start + count)
        images[:, 0], images[:, 1] = ids // 256, ids % 256
        images[:, 1024:2048] = 7  # the whole green plane: checks the [N, 3, 32, 32] layout
        start += count
        with open(path, "wb") as file:
            pickle.dump({"data": images, labels_key: [int(i % 10) for i in ids]}, file)

    for name in ("train",) if hundred else [f"data_batch_{k}" for k in range(1, 6)]:
        batch(folder / name, per_batch * (5 if hundred else 1))
    batch(folder / ("test" if hundred else "test_batch"), test)
    names = [f"class{k}" for k in range(100 if hundred else 10)]
    with open(folder / ("meta" if hundred else "batches.meta"), "wb") as file:
        pickle.dump({"fine_label_names" if hundred else "label_names": names}, file)
    return root


def write_idx(root: Path, folder: str, gz: bool, train: int = 60, test: int = 20) -> Path:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, count in (("train", train), ("t10k", test)):
        images = (np.arange(count * 28 * 28) % 251).astype(np.uint8).reshape(count, 28, 28)
        labels = (np.arange(count) % 10).astype(np.uint8)
        for stem, body, dims in ((f"{prefix}-images-idx3-ubyte", images, (count, 28, 28)),
                                 (f"{prefix}-labels-idx1-ubyte", labels, (count,))):
            content = bytes((0, 0, 8, len(dims))) + struct.pack(f">{len(dims)}I", *dims) + body.tobytes()
            opener = gzip.open if gz else open
            with opener(raw / (stem + (".gz" if gz else "")), "wb") as file:
                file.write(content)
    return root


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "folder")


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    return write_cifar(tmp_path_factory.mktemp("cifar"))


def ids(x: torch.Tensor) -> set[int]:
    """Image identities of the CIFAR fixture."""
    return set((x[:, 0, 0, 0].long() * 256 + x[:, 0, 0, 1].long()).tolist())


# ----------------------------------------------------------------------------------------------
# Dataset kinds.


def test_registry_holds_every_kind():
    assert set(DATASETS) == {"cifar10", "cifar100", "fashion_mnist", "mnist", "imagefolder", "digits"}


def test_digits_shape_range_and_fixed_test_split():
    a, b = load_data({"name": "digits"}), load_data(DataConfig(name="digits", seed=3))
    assert a.spec.shape == (1, 8, 8) and a.spec.num_classes == 10
    assert a.train_x.dtype == torch.uint8 and a.train_y.dtype == torch.int64
    assert int(a.train_x.max()) == 255 and int(a.train_x.min()) == 0
    assert len(a.train_y) + len(a.val_y) + len(a.test_y) == 1797
    assert len(a.test_y) == pytest.approx(0.2 * 1797, abs=10)
    assert torch.equal(a.test_x, b.test_x) and torch.equal(a.test_y, b.test_y)  # seed never moves the test set
    assert not torch.equal(a.val_y, b.val_y) or not torch.equal(a.val_x, b.val_x)


def test_cifar10_pickles(cifar_root: Path):
    data = load_data({"name": "cifar10", "root": str(cifar_root), "val_fraction": 0.25})
    assert data.spec.shape == (3, 32, 32) and data.spec.class_names == tuple(f"class{k}" for k in range(10))
    assert len(data.train_y) + len(data.val_y) == 200 and len(data.test_y) == 50
    assert (data.train_x[:, 1] == 7).all()  # green plane where the format puts it
    assert ids(data.test_x) == set(range(200, 250))
    # Labels travel with their images: the fixture labels image i as i % 10.
    assert torch.equal(data.train_y, torch.tensor(sorted(ids(data.train_x))) % 10)


def test_cifar100_pickles(tmp_path: Path):
    data = load_data({"name": "cifar100", "root": str(write_cifar(tmp_path, hundred=True))})
    assert data.spec.num_classes == 100 and data.spec.class_names[99] == "class99"
    assert len(data.train_y) + len(data.val_y) == 200 and len(data.test_y) == 50


@pytest.mark.parametrize(("name", "folder_name", "gz"), [("mnist", "MNIST", False), ("mnist", "MNIST", True),
                                                        ("fashion_mnist", "FashionMNIST", False),
                                                        ("fashion_mnist", "FashionMNIST", True)])
def test_idx_files(tmp_path: Path, name: str, folder_name: str, gz: bool):
    data = load_data({"name": name, "root": str(write_idx(tmp_path, folder_name, gz))})
    assert data.spec.shape == (1, 28, 28) and data.spec.num_classes == 10
    assert len(data.train_y) + len(data.val_y) == 60 and len(data.test_y) == 20
    expected = torch.from_numpy((np.arange(20 * 28 * 28) % 251).astype(np.uint8).reshape(20, 1, 28, 28))
    assert torch.equal(data.test_x, expected) and torch.equal(data.test_y, torch.arange(20) % 10)
    if name == "fashion_mnist":
        assert data.spec.class_names[9] == "Ankle boot"


def test_imagefolder_flat_mixed_sizes(folder: Path):
    data = load_data({"name": "imagefolder", "root": str(folder)})
    assert data.spec.shape == (3, 32, 32)  # mixed sizes -> 32; one grayscale image among RGB -> RGB
    assert data.spec.class_names == ("apple", "grass", "sky")
    assert len(data.test_y) == 6 and torch.bincount(data.test_y).tolist() == [2, 2, 2]  # 20 % of 10 per class
    assert torch.bincount(data.val_y).tolist() == [1, 1, 1]  # 10 % of the 8 left, rounded
    # Channel order and labels: every image of a class is its solid colour (the grey one: all channels 128).
    x = torch.cat([data.train_x, data.val_x, data.test_x]).float().mean(dim=(2, 3))
    y = torch.cat([data.train_y, data.val_y, data.test_y])
    for label, color in enumerate(COLORS.values()):
        means = x[y == label]
        grey = (means == 128).all(dim=1)
        assert torch.allclose(means[~grey], torch.tensor(color, dtype=torch.float32), atol=1)
        assert grey.sum() == (1 if label == 2 else 0)


def test_imagefolder_grayscale_and_size_options(folder: Path):
    gray = load_data({"name": "imagefolder", "root": str(folder), "grayscale": True, "image_size": 16})
    assert gray.spec.shape == (1, 16, 16)
    for name in COLORS:  # all-grayscale folder -> 1 channel by default; one native size is kept
        for path in (folder / name).glob("*.png"):
            PIL.Image.new("L", (12, 10), 200).save(path)
    native = load_data({"name": "imagefolder", "root": str(folder)})
    assert native.spec.shape == (1, 10, 12) and (native.train_x == 200).all()
    assert load_data({"name": "imagefolder", "root": str(folder), "grayscale": False}).spec.channels == 3


def test_imagefolder_train_test_layout(tmp_path: Path):
    write_image_folder(tmp_path / "train", per_class=6)
    write_image_folder(tmp_path / "test", per_class=3)
    data = load_data({"name": "imagefolder", "root": str(tmp_path), "test_fraction": 0.5})
    assert len(data.test_y) == 9 and len(data.train_y) + len(data.val_y) == 18  # test_fraction unused


# ----------------------------------------------------------------------------------------------
# Splits, subsampling, imbalance.


def test_val_split_stratified_disjoint_and_seeded(cifar_root: Path):
    config = {"name": "cifar10", "root": str(cifar_root), "val_fraction": 0.25}
    a, b, c = load_data(config), load_data(config), load_data({**config, "seed": 1})
    assert torch.bincount(a.val_y, minlength=10).tolist() == [5] * 10  # 25 % of 20 per class
    assert ids(a.train_x).isdisjoint(ids(a.val_x)) and ids(a.val_x).isdisjoint(ids(a.test_x))
    assert len(ids(a.train_x) | ids(a.val_x)) == 200
    assert torch.equal(a.val_x, b.val_x) and torch.equal(a.train_x, b.train_x)
    assert ids(a.val_x) != ids(c.val_x)


def test_test_split_untouched_by_train_side_options(cifar_root: Path):
    base = load_data({"name": "cifar10", "root": str(cifar_root)})
    for changes in ({"val_fraction": 0.5}, {"samples_per_class": 4}, {"imbalance": {"class0": 0.1}},
                    {"seed": 7}):
        other = load_data({"name": "cifar10", "root": str(cifar_root), **changes})
        assert torch.equal(other.test_x, base.test_x) and torch.equal(other.test_y, base.test_y)


def test_samples_per_class_is_train_plus_val(cifar_root: Path):
    data = load_data({"name": "cifar10", "root": str(cifar_root), "samples_per_class": 10, "val_fraction": 0.2})
    assert torch.bincount(data.train_y, minlength=10).tolist() == [8] * 10
    assert torch.bincount(data.val_y, minlength=10).tolist() == [2] * 10
    assert data.spec.class_counts == (8,) * 10


def test_imbalance_counts_and_spec(cifar_root: Path):
    config = {"name": "cifar10", "root": str(cifar_root), "val_fraction": 0.25}
    data = load_data({**config, "imbalance": {"class3": 0.2, 7: 0.5, "class0": 1.0}})
    # 15 per class remain after the val split; the kept share is rounded, at least one.
    expected = [15] * 10
    expected[3], expected[7] = 3, 8
    assert list(data.spec.class_counts) == expected
    assert torch.bincount(data.train_y, minlength=10).tolist() == expected
    assert torch.bincount(data.val_y, minlength=10).tolist() == [5] * 10  # validation stays balanced
    tiny = load_data({**config, "imbalance": {"class1": 0.01}})
    assert tiny.spec.class_counts[1] == 1


def test_spec_and_imagedata_helpers(cifar_root: Path):
    spec = DataSpec(3, 32, 32, 4, ("a", "b", "c", "d"), (5, 2, 9, 2))
    assert spec.shape == (3, 32, 32)
    data = load_data({"name": "cifar10", "root": str(cifar_root), "imbalance": {"class2": 0.5}})
    merged = data.train_and_val()
    assert len(merged.train_y) == len(data.train_y) + len(data.val_y)
    assert torch.equal(merged.val_x, data.val_x)
    assert merged.spec.class_counts == tuple(torch.bincount(merged.train_y, minlength=10).tolist())
    assert merged.spec.class_counts != data.spec.class_counts
    moved = data.to("cpu")
    assert isinstance(moved, ImageData) and moved.spec is data.spec and torch.equal(moved.test_x, data.test_x)


# ----------------------------------------------------------------------------------------------
# The decoded-image cache.


def _refuse_pil(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("PIL was asked to decode an image although the cache is valid")

    monkeypatch.setattr(PIL.Image, "open", refuse)


def test_cache_second_load_skips_decoding(folder: Path, monkeypatch):
    config = {"name": "imagefolder", "root": str(folder)}
    first = load_data(config)
    assert len(list((folder / ".ganaug_cache").glob("*.npz"))) == 1
    _refuse_pil(monkeypatch)
    started = time.perf_counter()
    second = load_data(config)
    assert time.perf_counter() - started < 1.0
    for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert torch.equal(getattr(first, name), getattr(second, name))
    assert first.spec == second.spec


def test_cache_invalidated_by_changed_files_and_options(folder: Path, monkeypatch):
    load_data({"name": "imagefolder", "root": str(folder)})
    _refuse_pil(monkeypatch)
    with pytest.raises(DataError, match="cannot be read"):  # other decode options: a new cache entry
        load_data({"name": "imagefolder", "root": str(folder), "image_size": 8})
    monkeypatch.undo()
    PIL.Image.new("RGB", (32, 32), COLORS["apple"]).save(folder / "apple" / "new.png")
    _refuse_pil(monkeypatch)
    with pytest.raises(DataError, match="cannot be read"):  # a new file: the old cache is stale
        load_data({"name": "imagefolder", "root": str(folder)})


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_cache_falls_back_to_user_dir_for_read_only_root(folder: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user_cache"))
    folder.chmod(0o555)
    try:
        load_data({"name": "imagefolder", "root": str(folder)})
        assert not (folder / ".ganaug_cache").exists()
        assert len(list((tmp_path / "user_cache" / "ganaug").glob("*.npz"))) == 1
        _refuse_pil(monkeypatch)
        load_data({"name": "imagefolder", "root": str(folder)})
    finally:
        folder.chmod(0o755)


# ----------------------------------------------------------------------------------------------
# Device-side batches and augmentation.


def test_to_float_range():
    x = torch.tensor([0, 127, 255], dtype=torch.uint8).view(1, 1, 1, 3)
    y = to_float(x)
    assert y.dtype == torch.float32
    assert y.flatten().tolist() == pytest.approx([-1.0, 127 / 127.5 - 1, 1.0], abs=1e-6)


def test_to_uint8_inverts_to_float_exactly():
    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    assert torch.equal(to_uint8(to_float(levels)), levels)
    assert torch.equal(to_uint8(to_float(levels).bfloat16()), levels)  # bf16 samples round to the same levels
    outside = torch.tensor([-3.0, -1.0, 0.0, 1.0, 3.0])
    assert to_uint8(outside).tolist() == [0, 0, 128, 255, 255]  # clamped; 0 is level 127.5, rounded half to even


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cuda").type == "cuda"


def test_augment_flip_only_flips_each_image_or_not():
    x = torch.rand(64, 3, 8, 8) * 2 - 1
    out = flip_translate(x, torch.Generator().manual_seed(0), translate=0)
    flipped = (out == x.flip(3)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert (flipped | kept).all() and flipped.any() and kept.any()
    again = flip_translate(x, torch.Generator().manual_seed(0), translate=0)
    assert torch.equal(out, again)  # the generator decides


def test_augment_translate_is_a_shifted_crop():
    torch.manual_seed(0)
    x = torch.rand(32, 3, 10, 12) * 2 - 1
    t = 3
    out = flip_translate(x, torch.Generator().manual_seed(1), translate=t)
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1
    assert not torch.equal(out, x)
    shifts = set()
    for image, result in zip(x, out):
        padded = [torch.nn.functional.pad(candidate, (t,) * 4, value=-1.0) for candidate in (image, image.flip(2))]
        matches = [(flip, dy, dx) for flip in (0, 1) for dy in range(2 * t + 1) for dx in range(2 * t + 1)
                   if torch.equal(padded[flip][:, dy:dy + 10, dx:dx + 12], result)]
        assert matches, "an output is not a flipped/unflipped crop of the -1 padded input"
        shifts.add(matches[0][1:])
    assert len(shifts) > 5  # per-image shifts, not one shift for the batch


def test_augment_rejects_uint8():
    with pytest.raises(DataError, match="float images"):
        flip_translate(torch.zeros(2, 3, 4, 4, dtype=torch.uint8))


def test_batch_indices_cover_epoch_once():
    batches = batch_indices(10, 4, torch.Generator().manual_seed(0), "cpu")
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    assert [len(b) for b in batch_indices(10, 4, torch.Generator().manual_seed(0), "cpu", drop_last=True)] == [4, 4]
    again = batch_indices(10, 4, torch.Generator().manual_seed(0), "cpu")
    assert all(torch.equal(a, b) for a, b in zip(batches, again))


# ----------------------------------------------------------------------------------------------
# Bad input: one DataError each, naming the key or file and what would be valid.


@pytest.mark.parametrize(("values", "message"), [
    ({"name": "cifar"}, r"data.name='cifar' is not a known dataset \(did you mean 'cifar10'\?\); valid: cifar10, "),
    ({"nmae": "digits"}, r"unknown key 'nmae' \(did you mean 'name'\?\); valid keys: name, root"),
    ({"val_fraction": 0.0}, r"data.val_fraction=0.0 is out of range; valid: a number in \(0, 1\)"),
    ({"val_fraction": 1}, r"data.val_fraction=1 is out of range"),
    ({"test_fraction": -0.1}, r"data.test_fraction=-0.1 is out of range"),
    ({"imbalance": {"0": 0.0}}, r"data.imbalance\['0'\]=0.0 is out of range; valid: a kept fraction in \(0, 1\]"),
    ({"imbalance": {"0": 1.5}}, r"data.imbalance\['0'\]=1.5 is out of range"),
    ({"samples_per_class": 0}, r"data.samples_per_class=0 is not valid; valid: an integer >= 1"),
    ({"download": "yes"}, r"data.download='yes' has the wrong type"),
])
def test_bad_config_values(values: dict, message: str):
    with pytest.raises(DataError, match=message):
        load_data(values)


def test_bad_imbalance_class(folder: Path):
    with pytest.raises(DataError, match=r"'pear' is not a class of this dataset; valid: a class name "
                                        r"\(apple, grass, sky\) or an index 0..2"):
        load_data({"name": "imagefolder", "root": str(folder), "imbalance": {"pear": 0.5}})
    with pytest.raises(DataError, match="3 is not a class"):
        load_data({"name": "imagefolder", "root": str(folder), "imbalance": {3: 0.5}})


def test_samples_per_class_above_class_count(folder: Path):
    (folder / "grass" / "009.png").unlink()
    # 10 images per class, 2 held out as test: 8 in the train split, 7 for 'grass'.
    with pytest.raises(DataError, match=r"samples_per_class=8 is more than class 'grass' has in the imagefolder "
                                        r"train split \(7\); valid: at most 7"):
        load_data({"name": "imagefolder", "root": str(folder), "samples_per_class": 8})
    assert load_data({"name": "imagefolder", "root": str(folder), "samples_per_class": 7}).spec.num_classes == 3


def test_imagefolder_missing_root_and_split_folder(tmp_path: Path):
    with pytest.raises(DataError, match=r"data.root='.*nowhere' is not an existing folder; imagefolder expects"):
        load_data({"name": "imagefolder", "root": str(tmp_path / "nowhere")})
    write_image_folder(tmp_path / "train", per_class=2)
    with pytest.raises(DataError, match=r"split folder '.*test' is missing"):
        load_data({"name": "imagefolder", "root": str(tmp_path)})


def test_imagefolder_class_without_images(folder: Path):
    (folder / "empty").mkdir()
    (folder / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"class folder '.*empty' has no readable image \(looked for .bmp"):
        load_data({"name": "imagefolder", "root": str(folder)})


def test_imagefolder_corrupt_images_named(folder: Path):
    (folder / "apple" / "broken.png").write_bytes(b"not a png at all")
    (folder / "sky" / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)
    with pytest.raises(DataError, match=r"2 image file\(s\) cannot be read as images: apple/broken.png, "
                                        r"sky/truncated.jpg; fix or remove them"):
        load_data({"name": "imagefolder", "root": str(folder)})


def test_torchvision_files_missing_offline(tmp_path: Path):
    with pytest.raises(DataError, match=r"cifar10 files missing under .*: cifar-10-batches-py/data_batch_1, .*"
                                        r"batches.meta; put torchvision's cifar10 files there .*"
                                        r"data.download: true"):
        load_data({"name": "cifar10", "root": str(tmp_path)})
    with pytest.raises(DataError, match=r"MNIST/raw/train-images-idx3-ubyte, .* \(or the same name \+ .gz\)"):
        load_data({"name": "mnist", "root": str(tmp_path)})


def test_download_failure_is_one_error(tmp_path: Path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(DataError, match=r"data.download: fetching fashion_mnist into .* failed "
                                        r"\(RuntimeError: network is unreachable\); put the files there by hand"):
        load_data({"name": "fashion_mnist", "root": str(tmp_path), "download": True})


def test_corrupt_cifar_and_idx_files(tmp_path: Path):
    root = write_cifar(tmp_path / "c")
    (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"data_batch_3: not a readable CIFAR pickle"):
        load_data({"name": "cifar10", "root": str(root)})
    root = write_idx(tmp_path / "m", "MNIST", gz=False)
    (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 12)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: not an idx file .* \(bad header\)"):
        load_data({"name": "mnist", "root": str(root)})


# ----------------------------------------------------------------------------------------------
# Benchmark smoke test.


def test_benchmark_quick_runs_and_prints_json():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run([sys.executable, str(REPO / "benchmarks" / "data_pipeline.py"), "--quick",
                                "--repeats", "1"], capture_output=True, text=True, env=env, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["images"] == 1000 and result["batch_size"] == 128 and result["device"] == "cpu"
    assert result["ours_images_per_s"] > 0 and result["dataloader_images_per_s"] > 0 and result["ratio"] > 0

