"""Datasets -> uint8 tensors + DataSpec; the train/val split, subsampling and class imbalance; and the
device-side batching and flip/translate augmentation used by every trial (airbench style, no DataLoader).

    from ganaug.data import load_data
    data = load_data({"name": "imagefolder", "root": "data/cifar10-small", "samples_per_class": 100})
    data.spec.shape, data.spec.class_counts    # (3, 32, 32), (90, 90, ...)

Order of the train-side steps (the test split is never touched by any of them):
1. `samples_per_class` keeps a seeded N per class of the train split, so N is what train + val hold per class.
2. A stratified `val_fraction` of that is carved out as validation.
3. `imbalance` then thins the remaining train split only. Validation stays class-balanced like the test
   split, so the policy that wins the search on validation is judged on the distribution it is tested on.
Before all three, `classes` keeps only the named classes of every split (labels re-indexed 0..k-1 in the
listed order).

Continuous attributes (the conditions `gan_conditions` names): an imagefolder split folder may hold an
`attributes.csv` whose rows are `path relative to the split folder, value, value, ...`, e.g.
`cat/0001.jpg,12.5,0.3`; an optional first row naming the columns (`file,distance,mass`), else the
columns are called col1, col2, ... Every image needs one row; rows naming no image are ignored. They
follow their images through every step above (ImageData.train_attributes etc., float32 [N, k]).
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import gzip
import hashlib
import json
import os
import pickle
import struct
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


class DataError(ValueError):
    """Bad data input: the message names the key or file and what would be valid."""


# Test splits that the dataset does not ship are drawn with this fixed seed, never `DataConfig.seed`:
# every trial and every evaluation seed must see the same test images.
TEST_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2
DEFAULT_IMAGE_SIZE = 32  # imagefolder with mixed image sizes and no image_size
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".pgm", ".ppm", ".tif", ".tiff", ".webp")
GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
CACHE_VERSION = 1  # bump when the cached arrays change meaning (attributes.csv is read afresh, never cached)
ATTRIBUTES_FILE = "attributes.csv"  # per split folder of an imagefolder dataset


# ----------------------------------------------------------------------------------------------
# What models and trials see.


@dataclass(frozen=True)
class DataSpec:
    """Shape facts of a dataset: the only place models learn channels, size and classes from."""

    channels: int
    height: int
    width: int
    num_classes: int
    class_names: tuple[str, ...]
    class_counts: tuple[int, ...]  # Images per class in the TRAIN split (after subsample + imbalance).
    attribute_names: tuple[str, ...] = ()  # Columns of the continuous attributes (imagefolder attributes.csv).

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def minority_first(self) -> tuple[int, ...]:
        """Class indices from fewest to most training images (ties keep class order)."""
        return tuple(sorted(range(self.num_classes), key=self.class_counts.__getitem__))


@dataclass
class ImageData:
    """The three splits as uint8 [N, C, H, W] images and int64 [N] labels, plus their DataSpec, and each
    image's continuous attributes as float32 [N, k] (k = len(spec.attribute_names); [N, 0] without any)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    spec: DataSpec
    train_attributes: torch.Tensor | None = None  # None = no attributes: filled with [N, 0]
    val_attributes: torch.Tensor | None = None
    test_attributes: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for split in ("train", "val", "test"):
            if getattr(self, f"{split}_attributes") is None:
                labels = getattr(self, f"{split}_y")
                setattr(self, f"{split}_attributes", torch.zeros(len(labels), 0, device=labels.device))

    def to(self, device: torch.device | str) -> ImageData:
        """All tensors on `device` (uint8 stays uint8: a whole dataset is small on the device)."""
        tensors = [f.name for f in dataclasses.fields(self) if f.name != "spec"]
        return ImageData(**{name: getattr(self, name).to(device) for name in tensors}, spec=self.spec)

    def train_and_val(self) -> ImageData:
        """Train on train + val (for final evaluation); val is kept as is so code reading it still runs."""
        train_x = torch.cat([self.train_x, self.val_x])
        train_y = torch.cat([self.train_y, self.val_y])
        counts = tuple(torch.bincount(train_y, minlength=self.spec.num_classes).tolist())
        return dataclasses.replace(self, train_x=train_x, train_y=train_y,
                                   train_attributes=torch.cat([self.train_attributes, self.val_attributes]),
                                   spec=dataclasses.replace(self.spec, class_counts=counts))


# ----------------------------------------------------------------------------------------------
# Configuration: the YAML `data:` section, one key per field.


@dataclass(frozen=True)
class DataConfig:
    name: str = "digits"                  # Key of DATASETS.
    root: str | None = None               # Folder holding the files; None = ~/.ganaug/data/<name>.
    download: bool = False                # cifar10/100, (fashion_)mnist: fetch with torchvision if missing.
    image_size: int | None = None         # imagefolder: resize to size x size; None = native size if all
                                          # images agree, else 32.
    grayscale: bool | None = None         # imagefolder: True = 1 channel, False = 3; None = 1 only if every
                                          # image is grayscale.
    test_fraction: float = 0.2            # imagefolder without train/ and test/: stratified test share.
    val_fraction: float = 0.1             # Stratified share of the train split held out as validation.
    samples_per_class: int | None = None  # Seeded N per class of the train split, taken before the val split.
    imbalance: dict | None = None         # {class name or index: kept fraction in (0, 1]}, train split only.
    seed: int = 0                         # Seeds subsampling, val split and imbalance (not the test split).
    classes: list | None = None           # Keep only these classes (names, e.g. [cat, dog] or digits [3, 8]),
                                          # labelled 0..k-1 in this order; None = every class.

    def __post_init__(self) -> None:
        if isinstance(self.root, os.PathLike):
            object.__setattr__(self, "root", os.fspath(self.root))
        if not isinstance(self.name, str) or self.name not in DATASETS:
            raise DataError(f"data.name={self.name!r} is not a known dataset{_suggest(str(self.name), DATASETS)}; "
                            f"valid: {', '.join(DATASETS)}")
        _check_type("root", self.root, (str, type(None)), "a folder path or null")
        _check_type("download", self.download, (bool,), "true or false")
        _check_type("grayscale", self.grayscale, (bool, type(None)), "true, false or null")
        for key in ("image_size", "samples_per_class"):
            value = getattr(self, key)
            if value is not None and not (_is_int(value) and value >= 1):
                raise DataError(f"data.{key}={value!r} is not valid; valid: an integer >= 1, or null")
        if not (_is_int(self.seed) and self.seed >= 0):
            raise DataError(f"data.seed={self.seed!r} is not valid; valid: an integer >= 0")
        for key in ("test_fraction", "val_fraction"):
            value = getattr(self, key)
            if not (_is_number(value) and 0 < value < 1):
                raise DataError(f"data.{key}={value!r} is out of range; valid: a number in (0, 1)")
        if self.classes is not None:
            if isinstance(self.classes, tuple):
                object.__setattr__(self, "classes", list(self.classes))
            valid = "a list of at least two distinct class names, e.g. [cat, dog] (digits: [3, 8]), or null"
            if not isinstance(self.classes, list) or len(self.classes) < 2 or \
                    not all(isinstance(c, str) or _is_int(c) for c in self.classes):
                raise DataError(f"data.classes={self.classes!r} is not valid; valid: {valid}")
            names = [str(c) for c in self.classes]
            if len(set(names)) != len(names):
                repeated = sorted({n for n in names if names.count(n) > 1})
                raise DataError(f"data.classes names {', '.join(map(repr, repeated))} more than once; valid: {valid}")
        if self.imbalance is not None:
            if not isinstance(self.imbalance, dict):
                raise DataError(f"data.imbalance={self.imbalance!r} is not valid; "
                                "valid: a mapping {class name or index: kept fraction in (0, 1]}, or null")
            for key, fraction in self.imbalance.items():
                if not (_is_number(fraction) and 0 < fraction <= 1):
                    raise DataError(f"data.imbalance[{key!r}]={fraction!r} is out of range; "
                                    "valid: a kept fraction in (0, 1]")

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, where: str = "data") -> DataConfig:
        """Build from a YAML mapping; unknown keys raise DataError with a did-you-mean."""
        if not isinstance(values, dict):
            raise DataError(f"{where}: expected a mapping of data keys, got {type(values).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in known:
                raise DataError(f"{where}: unknown key {key!r}{_suggest(str(key), known)}; "
                                f"valid keys: {', '.join(known)}")
        return cls(**values)


@dataclass
class RawSplits:
    """A dataset as read from disk, before val split, subsampling and imbalance."""

    train_x: np.ndarray  # uint8 [N, C, H, W]
    train_y: np.ndarray  # int64 [N]
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: tuple[str, ...]
    train_attributes: np.ndarray | None = None  # float32 [N, k]; None = no attributes
    test_attributes: np.ndarray | None = None
    attribute_names: tuple[str, ...] = ()


def load_data(config: DataConfig | dict) -> ImageData:
    """Read a dataset and split it into train / val / test uint8 tensors (on the CPU)."""
    cfg = config if isinstance(config, DataConfig) else DataConfig.from_dict(config)
    raw = DATASETS[cfg.name](cfg)
    if cfg.classes is not None:
        raw = _keep_classes(raw, cfg)
    names, num_classes = raw.class_names, len(raw.class_names)
    rng = np.random.default_rng(cfg.seed)

    # Subsample: a seeded N per class of the train split (train + val hold N per class).
    pool = np.arange(len(raw.train_y))
    if cfg.samples_per_class is not None:
        counts, kept = _class_counts(raw.train_y, num_classes), []
        for label in range(num_classes):
            members = pool[raw.train_y == label]
            if len(members) < cfg.samples_per_class:
                raise DataError(f"data.samples_per_class={cfg.samples_per_class} is more than class "
                                f"{names[label]!r} has in the {cfg.name} train split ({len(members)}); "
                                f"valid: at most {min(counts)}")
            kept.append(rng.permutation(members)[: cfg.samples_per_class])
        pool = np.sort(np.concatenate(kept))

    # Validation split, stratified.
    train_idx, val_idx = _stratified_split(raw.train_y, pool, cfg.val_fraction, rng)

    # Imbalance: thin the train split only, so validation stays distributed like the test split.
    if cfg.imbalance:
        keep_fraction = np.ones(num_classes)
        for key, fraction in cfg.imbalance.items():
            keep_fraction[_class_index(key, names)] = fraction
        kept = []
        for label in range(num_classes):
            members = train_idx[raw.train_y[train_idx] == label]
            count = max(1, round(keep_fraction[label] * len(members))) if len(members) else 0
            kept.append(rng.permutation(members)[:count])
        train_idx = np.sort(np.concatenate(kept))

    train_y = raw.train_y[train_idx]
    spec = DataSpec(channels=raw.train_x.shape[1], height=raw.train_x.shape[2], width=raw.train_x.shape[3],
                    num_classes=num_classes, class_names=tuple(names),
                    class_counts=_class_counts(train_y, num_classes), attribute_names=raw.attribute_names)
    tensor = lambda array, dtype: torch.from_numpy(np.ascontiguousarray(array, dtype=dtype))
    no_attributes = lambda y: np.zeros((len(y), 0), np.float32)
    train_attributes = raw.train_attributes if raw.train_attributes is not None else no_attributes(raw.train_y)
    test_attributes = raw.test_attributes if raw.test_attributes is not None else no_attributes(raw.test_y)
    return ImageData(
        train_x=tensor(raw.train_x[train_idx], np.uint8), train_y=tensor(train_y, np.int64),
        val_x=tensor(raw.train_x[val_idx], np.uint8), val_y=tensor(raw.train_y[val_idx], np.int64),
        test_x=tensor(raw.test_x, np.uint8), test_y=tensor(raw.test_y, np.int64),
        spec=spec,
        train_attributes=tensor(train_attributes[train_idx], np.float32),
        val_attributes=tensor(train_attributes[val_idx], np.float32),
        test_attributes=tensor(test_attributes, np.float32),
    )


def _keep_classes(raw: RawSplits, cfg: DataConfig) -> RawSplits:
    """Only the classes named in cfg.classes, relabelled 0..k-1 in the listed order (numbers match by their text,
    so digits' [3, 8] names classes "3" and "8")."""
    wanted = [str(c) for c in cfg.classes]
    unknown = [name for name in wanted if name not in raw.class_names]
    if unknown:
        hints = "".join(_suggest(name, raw.class_names) for name in unknown[:1])
        raise DataError(f"data.classes: {', '.join(map(repr, unknown))} {'is' if len(unknown) == 1 else 'are'} "
                        f"not a class of {cfg.name}{hints}; valid: {', '.join(raw.class_names)}")
    relabel = np.full(len(raw.class_names), -1, dtype=np.int64)
    relabel[[raw.class_names.index(name) for name in wanted]] = np.arange(len(wanted))
    train, test = relabel[raw.train_y] >= 0, relabel[raw.test_y] >= 0
    pick = lambda array, rows: array[rows] if array is not None else None
    return RawSplits(raw.train_x[train], relabel[raw.train_y[train]], raw.test_x[test], relabel[raw.test_y[test]],
                     tuple(wanted), pick(raw.train_attributes, train), pick(raw.test_attributes, test),
                     raw.attribute_names)


# ----------------------------------------------------------------------------------------------
# Device-side batches.


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1] on the same device (the range GAN generators emit with tanh)."""
    return x.to(torch.float32).sub_(127.5).div_(127.5)


def augment(x: torch.Tensor, generator: torch.Generator | None = None, translate: int = 4) -> torch.Tensor:
    """Random horizontal flip (p = 0.5) and translation by up to `translate` px in x and y, per image.

    Both are one gather over the whole batch (no per-image Python loop). Uncovered pixels are filled with
    -1 (black), as torchvision's RandomCrop(padding=4) fills with 0 = black: reflect padding would invent
    mirrored structure at the borders that the test images never show.
    """
    if not x.is_floating_point() or x.dim() != 4:
        raise DataError(f"augment expects float images [N, C, H, W] in [-1, 1], got {x.dtype} "
                        f"{tuple(x.shape)}")
    if translate < 0:
        raise DataError(f"augment: translate={translate} is out of range; valid: an integer >= 0")
    n, c, h, w = x.shape
    device = x.device
    flip = torch.rand(n, generator=generator, device=device) < 0.5
    shift = torch.randint(0, 2 * translate + 1, (2, n), generator=generator, device=device)
    # Source pixel of every output pixel in the padded image; a flip just reverses the column order.
    cols = torch.arange(w, device=device)
    cols = torch.where(flip[:, None], cols.flip(0), cols) + shift[1][:, None]        # [n, w]
    rows = torch.arange(h, device=device) + shift[0][:, None]                        # [n, h]
    padded = F.pad(x, (translate,) * 4, value=-1.0)
    index = rows[:, :, None] * (w + 2 * translate) + cols[:, None, :]                 # [n, h, w]
    index = index.view(n, 1, h * w).expand(n, c, h * w)
    return padded.flatten(2).gather(2, index).view(n, c, h, w)


def batch_indices(n: int, batch_size: int, generator: torch.Generator | None, device: torch.device | str,
                  drop_last: bool = False) -> list[torch.Tensor]:
    """One epoch of shuffled index batches: a single randperm on the device, split into batch_size pieces."""
    if batch_size < 1:
        raise DataError(f"batch_size={batch_size} is out of range; valid: an integer >= 1")
    batches = list(torch.randperm(n, generator=generator, device=device).split(batch_size))
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


# ----------------------------------------------------------------------------------------------
# Readers: one per on-disk format, each DataConfig -> RawSplits.


def _load_digits(cfg: DataConfig) -> RawSplits:
    """scikit-learn's 8x8 digits (ships with the package: the offline dataset); fixed 20 % test split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.round(bunch.images * (255 / 16)).astype(np.uint8)[:, None]  # values 0..16 -> 0..255
    y = bunch.target.astype(np.int64)
    train, test = _stratified_split(y, np.arange(len(y)), DIGITS_TEST_FRACTION,
                                    np.random.default_rng(TEST_SPLIT_SEED))
    return RawSplits(x[train], y[train], x[test], y[test], tuple(str(k) for k in range(10)))


def _load_cifar(cfg: DataConfig, *, folder: str, train_files: tuple[str, ...], test_file: str, meta_file: str,
                names_key: str, labels_key: str, torchvision_class: str) -> RawSplits:
    """CIFAR-10/100 in torchvision's download layout: root/<folder>/<batch files> (Python pickles)."""
    root = _root(cfg)
    base = root / folder
    needed = [base / name for name in (*train_files, test_file, meta_file)]

    def fetch() -> None:
        import torchvision.datasets

        getattr(torchvision.datasets, torchvision_class)(str(root), train=True, download=True)

    _ensure_files(cfg, root, needed, fetch, lambda path: path.exists())
    names = tuple(str(n) for n in _unpickle(base / meta_file, names_key))
    train = [_cifar_batch(base / name, labels_key, len(names)) for name in train_files]
    test_x, test_y = _cifar_batch(base / test_file, labels_key, len(names))
    return RawSplits(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
                     test_x, test_y, names)


def _unpickle(path: Path, key: str) -> Any:
    # CIFAR's own distribution format is a Python pickle, read exactly as torchvision reads it. Unpickling can
    # run code stored in the file, so this trusts the files under data.root as much as torchvision does:
    # only point root at downloads you trust.
    try:
        with open(path, "rb") as file:
            entry = pickle.load(file, encoding="latin1")
        return entry[key]
    except Exception as error:  # any failure means the same thing to the user: this file is not usable
        raise DataError(f"{path}: not a readable CIFAR pickle with key {key!r} ({type(error).__name__}: "
                        f"{error}); replace it with the file from torchvision's download") from None


def _cifar_batch(path: Path, labels_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    data = np.asarray(_unpickle(path, "data"), dtype=np.uint8)
    labels = np.asarray(_unpickle(path, labels_key), dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(f"{path}: expected 'data' of shape [N, 3072] and N labels, got {data.shape} "
                        f"and {len(labels)} labels")
    _check_labels(path, labels, num_classes)
    return data.reshape(-1, 3, 32, 32), labels


def _load_idx(cfg: DataConfig, *, folder: str, class_names: tuple[str, ...],
              torchvision_class: str) -> RawSplits:
    """MNIST / Fashion-MNIST in torchvision's layout: root/<folder>/raw/<idx files> (each also as .gz)."""
    root = _root(cfg)
    raw = root / folder / "raw"
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")

    def fetch() -> None:
        import torchvision.datasets

        getattr(torchvision.datasets, torchvision_class)(str(root), train=True, download=True)

    _ensure_files(cfg, root, [raw / stem for stem in stems], fetch, lambda path: _idx_path(path) is not None,
                  also=" (or the same name + .gz)")
    arrays = [_read_idx(_idx_path(raw / stem), ndim) for stem, ndim in zip(stems, (3, 1, 3, 1))]
    for (images, labels), stem in ((arrays[0:2], stems[1]), (arrays[2:4], stems[3])):
        if len(images) != len(labels):
            raise DataError(f"{raw / stem}: {len(labels)} labels for {len(images)} images")
        _check_labels(raw / stem, labels, len(class_names))
    to_labels = lambda a: a.astype(np.int64)
    return RawSplits(arrays[0][:, None], to_labels(arrays[1]), arrays[2][:, None], to_labels(arrays[3]),
                     class_names)


def _idx_path(path: Path) -> Path | None:
    """The plain file if present, else its .gz, else None."""
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.exists():
            return candidate
    return None


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse an idx file of uint8 (the MNIST format: big-endian header, then raw bytes)."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: cannot be read ({error})") from None
    header = 4 + 4 * ndim
    if len(data) < header or data[:4] != bytes((0, 0, 0x08, ndim)):
        raise DataError(f"{path}: not an idx file of uint8 with {ndim} dimension(s) (bad header); expected "
                        "torchvision's MNIST raw format")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    body = np.frombuffer(bytearray(data), dtype=np.uint8, offset=header)  # bytearray: writable for torch
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} but holds {body.size} values (truncated?)")
    return body.reshape(dims)


def _load_imagefolder(cfg: DataConfig) -> RawSplits:
    """root/train/<class>/* + root/test/<class>/*, or root/<class>/* split by test_fraction (stratified).

    Images are decoded and resized once, then cached as a compressed .npz in root/.ganaug_cache (or the user
    cache dir when root is read-only); the cache key covers the file list, sizes, mtimes and decode options.
    """
    root = _root(cfg)
    class_names, files = _scan_imagefolder(root)
    stats = [(path.relative_to(root).as_posix(), *_stat(path)) for path, _, _ in files]
    key = json.dumps({"version": CACHE_VERSION, "root": str(root.resolve()), "files": stats,
                      "image_size": cfg.image_size, "grayscale": cfg.grayscale})
    cache_name = f"imagefolder-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"
    arrays = _read_cache(root, cache_name)
    if arrays is None:
        arrays = {"x": _decode_images(cfg, root, [path for path, _, _ in files]),
                  "y": np.array([label for _, label, _ in files], dtype=np.int64),
                  "split": np.array([split for _, _, split in files], dtype=np.int8)}
        _write_cache(root, cache_name, arrays)
    x, y, split = arrays["x"], arrays["y"], arrays["split"]
    attribute_names, attributes = _read_attributes(root, files)

    if (split < 0).all():  # flat layout: hold out a fixed stratified test share
        train, test = _stratified_split(y, np.arange(len(y)), cfg.test_fraction,
                                        np.random.default_rng(TEST_SPLIT_SEED))
    else:
        train, test = np.flatnonzero(split == 0), np.flatnonzero(split == 1)
    pick = lambda rows: attributes[rows] if attributes is not None else None
    return RawSplits(x[train], y[train], x[test], y[test], class_names, pick(train), pick(test), attribute_names)


def _read_attributes(root: Path, files: list[tuple[Path, int, int]]
                     ) -> tuple[tuple[str, ...], np.ndarray | None]:
    """Column names and float32 [len(files), k] attributes from the attributes.csv of every split folder, in the
    order of `files`; ((), None) when no split folder has one. Every bad row ends in one DataError naming the
    file and the row."""
    folders = {split: root / ("train", "test")[split] if split >= 0 else root for _, _, split in files}
    tables = {split: folder / ATTRIBUTES_FILE for split, folder in folders.items()}
    present = [split for split, path in tables.items() if path.is_file()]
    if not present:
        return (), None
    if len(present) < len(tables):
        missing = next(path for split, path in tables.items() if split not in present)
        raise DataError(f"{missing}: missing, but {tables[present[0]]} exists; every split folder needs its "
                        f"{ATTRIBUTES_FILE} (rows: file relative to the split folder, then the values)")
    columns, rows = {}, {}
    for split, path in tables.items():
        columns[split], rows[split] = _read_attribute_table(path)
    names = columns[present[0]]
    for split, path in tables.items():
        if columns[split] != names:
            raise DataError(f"{path}: columns {', '.join(columns[split])} differ from those of "
                            f"{tables[present[0]]} ({', '.join(names)}); every split needs the same columns")
    values, missing = [], []
    for path, _, split in files:
        key = path.relative_to(folders[split]).as_posix()
        if key not in rows[split]:
            missing.append(key)
        values.append(rows[split].get(key))
    if missing:
        table = tables[next(split for path, _, split in files
                            if path.relative_to(folders[split]).as_posix() == missing[0])]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{table}: no row for image {missing[0]}{more}; every image needs a row "
                        f"'{missing[0]},{','.join('<' + n + '>' for n in names)}'")
    return names, np.asarray(values, dtype=np.float32).reshape(len(files), len(names))


def _read_attribute_table(path: Path) -> tuple[tuple[str, ...], dict[str, list[float]]]:
    """(column names, {file key: values}) of one attributes.csv; the first row is a header when none of its
    values is a number."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            lines = [(reader.line_num, row) for reader in [csv.reader(file)] for row in reader
                     if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: cannot be read as CSV ({error})") from None
    if not lines:
        raise DataError(f"{path}: is empty; expected rows 'file,value,...' (optionally a header 'file,name,...')")
    first = [cell.strip() for cell in lines[0][1]]
    if len(first) > 1 and not any(_parse_number(cell) is not None for cell in first[1:]):
        names, lines = tuple(first[1:]), lines[1:]
        empty = [str(k + 2) for k, name in enumerate(names) if not name]
        if empty or len(set(names)) != len(names) or any("," in name for name in names):
            problem = f"column {', '.join(empty)} has no name" if empty else "a column name repeats" \
                if len(set(names)) != len(names) else "a column name holds a comma (gan_conditions separates by commas)"
            raise DataError(f"{path}: row 1 (the header): {problem}; valid: distinct names such as file,distance,mass")
    else:
        names = tuple(f"col{k}" for k in range(1, len(first)))
    if not names:
        raise DataError(f"{path}: row {lines[0][0]}: no values after the file name; expected 'file,value,...'")
    table, where = {}, {}
    for line, row in lines:
        cells = [cell.strip() for cell in row]
        key = cells[0].replace("\\", "/")
        if len(cells) - 1 != len(names):
            raise DataError(f"{path}: row {line} ({key}): {len(cells) - 1} value(s), expected {len(names)} "
                            f"({', '.join(names)})")
        values = [_parse_number(cell) for cell in cells[1:]]
        for name, cell, value in zip(names, cells[1:], values):
            if value is None:
                raise DataError(f"{path}: row {line} ({key}): {name}={cell!r} is not a number; valid: a finite "
                                "number such as 0.5 or 1e3")
        if key in table:
            raise DataError(f"{path}: row {line}: {key} already has row {where[key]}; valid: one row per image")
        table[key], where[key] = values, line
    return names, table


def _parse_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def _scan_imagefolder(root: Path) -> tuple[tuple[str, ...], list[tuple[Path, int, int]]]:
    """Class names and (file, label, split) with split 0 = train, 1 = test, -1 = not yet split."""
    layout = "imagefolder expects root/train/<class>/* and root/test/<class>/*, or root/<class>/*"
    if not root.is_dir():
        raise DataError(f"data.root={str(root)!r} is not an existing folder; {layout}")
    has_split = [(root / name).is_dir() for name in ("train", "test")]
    if any(has_split) and not all(has_split):
        missing = "test" if has_split[0] else "train"
        raise DataError(f"data.root: split folder {str(root / missing)!r} is missing (found "
                        f"{'train' if has_split[0] else 'test'}/ beside it); {layout}")
    splits = [(root / "train", 0), (root / "test", 1)] if all(has_split) else [(root, -1)]
    visible = lambda path: not path.name.startswith(".")  # skips .ganaug_cache, .DS_Store, ...
    subfolders = lambda folder: sorted(p.name for p in folder.iterdir() if p.is_dir() and visible(p))
    class_names = tuple(subfolders(splits[0][0]))
    if not class_names:
        raise DataError(f"data.root: no class folders in {str(splits[0][0])!r}; {layout}")
    files = []
    for folder, split in splits:
        if split == 1 and (found := tuple(subfolders(folder))) != class_names:
            raise DataError(f"data.root: class folders of {str(folder)!r} ({', '.join(found)}) differ from "
                            f"those of {str(root / 'train')!r} ({', '.join(class_names)}); both need "
                            "the same classes")
        for label, name in enumerate(class_names):
            images = sorted(p for p in (folder / name).iterdir()
                            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and visible(p))
            if not images:
                raise DataError(f"data.root: class folder {str(folder / name)!r} has no readable image "
                                f"(looked for {', '.join(IMAGE_EXTENSIONS)})")
            files += [(path, label, split) for path in images]
    return class_names, files


def _decode_images(cfg: DataConfig, root: Path, paths: list[Path]) -> np.ndarray:
    """Decode every image to one mode and size (PIL, antialiased resize); name all unreadable files."""
    from PIL import Image

    def probe(path: Path) -> tuple[str, tuple[int, int]] | None:
        try:
            with Image.open(path) as image:  # reads the header only
                return image.mode, image.size
        except Exception:  # PIL raises many types for corrupt files; we report the file by name below
            return None

    def decode(path: Path) -> np.ndarray | None:
        try:
            with Image.open(path) as image:
                image = image.convert(mode)
                if image.size != size:
                    # Pillow's bicubic filter widens its support when downscaling, i.e. it antialiases.
                    image = image.resize(size, Image.Resampling.BICUBIC)
                return np.asarray(image, dtype=np.uint8)
        except Exception:
            return None

    # Decoding is mostly C code that releases the GIL, so threads use every core.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        headers = list(pool.map(probe, paths))
        _raise_unreadable(root, paths, headers)
        if cfg.grayscale is None:
            mode = "L" if all(m in GRAYSCALE_MODES for m, _ in headers) else "RGB"
        else:
            mode = "L" if cfg.grayscale else "RGB"
        sizes = {s for _, s in headers}
        if cfg.image_size is not None:
            size = (cfg.image_size, cfg.image_size)
        else:
            size = sizes.pop() if len(sizes) == 1 else (DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE)
        images = list(pool.map(decode, paths))
    _raise_unreadable(root, paths, images)
    x = np.stack(images)
    return x[:, None] if mode == "L" else x.transpose(0, 3, 1, 2)


def _raise_unreadable(root: Path, paths: list[Path], results: list) -> None:
    bad = [str(path.relative_to(root)) for path, result in zip(paths, results) if result is None]
    if bad:
        shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise DataError(f"data.root={str(root)!r}: {len(bad)} image file(s) cannot be read as images: "
                        f"{shown}; fix or remove them")


# ----------------------------------------------------------------------------------------------
# The decoded-image cache.


def user_cache_dir() -> Path:
    """Where caches go when the data folder is read-only ($XDG_CACHE_HOME/ganaug, default ~/.cache/ganaug)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ganaug"


def _cache_dirs(root: Path) -> list[Path]:
    return [root / ".ganaug_cache", user_cache_dir()]


def _writable(folder: Path) -> bool:
    # Root ignores permission bits, so os.access alone would write into data the owner made read-only
    # (e.g. a shared data set); respect the mode bits too.
    target = folder
    while not target.exists():
        target = target.parent
    return os.access(target, os.W_OK) and bool(target.stat().st_mode & 0o222)


def _read_cache(root: Path, name: str) -> dict[str, np.ndarray] | None:
    for folder in _cache_dirs(root):
        path = folder / name
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as npz:
                    return {key: npz[key] for key in ("x", "y", "split")}
            except Exception as error:  # a truncated or foreign file: decode again and overwrite it
                warnings.warn(f"ignoring unreadable cache {path} ({error}); decoding the images again",
                              stacklevel=3)
    return None


def _write_cache(root: Path, name: str, arrays: dict[str, np.ndarray]) -> None:
    for folder in _cache_dirs(root):
        if not _writable(folder):
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
            temporary = folder / f".{name}.{os.getpid()}.tmp.npz"
            np.savez_compressed(temporary, **arrays)
            os.replace(temporary, folder / name)  # atomic: concurrent trials never read a half-written file
            return
        except OSError:
            continue
    warnings.warn(f"could not write the image cache to any of {[str(d) for d in _cache_dirs(root)]}; "
                  "the next load decodes the images again", stacklevel=3)


# ----------------------------------------------------------------------------------------------
# Helpers.


def _root(cfg: DataConfig) -> Path:
    return Path(cfg.root).expanduser() if cfg.root else Path.home() / ".ganaug" / "data" / cfg.name


def _ensure_files(cfg: DataConfig, root: Path, needed: list[Path], fetch: Callable[[], None],
                  exists: Callable[[Path], bool], also: str = "") -> None:
    """Fetch missing files with torchvision when download is on; else one error naming all of them."""
    missing = [path for path in needed if not exists(path)]
    if missing and cfg.download:
        try:
            fetch()
        except Exception as error:  # offline, mirror down, bad checksum: all end the same way for the user
            raise DataError(f"data.download: fetching {cfg.name} into {str(root)!r} failed "
                            f"({type(error).__name__}: {error}); put the files there by hand: "
                            f"{', '.join(str(p.relative_to(root)) for p in needed)}") from None
        missing = [path for path in needed if not exists(path)]
    if missing:
        hint = "; or set data.download: true to fetch them" if not cfg.download else ""
        raise DataError(f"data.root: {cfg.name} files missing under {str(root)!r}: "
                        f"{', '.join(str(p.relative_to(root)) for p in missing)}{also}; put torchvision's "
                        f"{cfg.name} files there (data.root sets the folder){hint}")


def _stratified_split(y: np.ndarray, pool: np.ndarray, fraction: float,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split `pool` (indices into y) into (kept, held out) with `fraction` of every class held out.

    Every class with two or more images keeps at least one and holds out at least one.
    """
    kept, held = [], []
    for label in np.unique(y[pool]):
        members = rng.permutation(pool[y[pool] == label])
        count = min(max(round(fraction * len(members)), 1), len(members) - 1) if len(members) > 1 else 0
        held.append(members[:count])
        kept.append(members[count:])
    return np.sort(np.concatenate(kept or [pool[:0]])), np.sort(np.concatenate(held or [pool[:0]]))


def _class_index(key: Any, names: tuple[str, ...]) -> int:
    """Resolve an imbalance key: a class name, or an integer class index."""
    if _is_int(key) and 0 <= key < len(names):
        return key
    if isinstance(key, str) and key in names:
        return names.index(key)
    raise DataError(f"data.imbalance: {key!r} is not a class of this dataset{_suggest(str(key), names)}; "
                    f"valid: a class name ({', '.join(names)}) or an index 0..{len(names) - 1}")


def _class_counts(y: np.ndarray, num_classes: int) -> tuple[int, ...]:
    return tuple(int(c) for c in np.bincount(y, minlength=num_classes))


def _check_labels(path: Path, labels: np.ndarray, num_classes: int) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: labels range over {labels.min()}..{labels.max()}, "
                        f"expected 0..{num_classes - 1}")


def _stat(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _check_type(key: str, value: Any, types: tuple[type, ...], valid: str) -> None:
    if not isinstance(value, types):
        raise DataError(f"data.{key}={value!r} has the wrong type; valid: {valid}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _suggest(word: str, candidates) -> str:
    close = difflib.get_close_matches(word, [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ----------------------------------------------------------------------------------------------
# Registry: YAML `data.name` values.

DIGITS = tuple(str(k) for k in range(10))

DATASETS: dict[str, Callable[[DataConfig], RawSplits]] = {
    "cifar10": partial(_load_cifar, folder="cifar-10-batches-py",
                       train_files=tuple(f"data_batch_{k}" for k in range(1, 6)), test_file="test_batch",
                       meta_file="batches.meta", names_key="label_names", labels_key="labels",
                       torchvision_class="CIFAR10"),
    "cifar100": partial(_load_cifar, folder="cifar-100-python", train_files=("train",), test_file="test",
                        meta_file="meta", names_key="fine_label_names", labels_key="fine_labels",
                        torchvision_class="CIFAR100"),
    "fashion_mnist": partial(_load_idx, folder="FashionMNIST", torchvision_class="FashionMNIST",
                             class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                                          "Shirt", "Sneaker", "Bag", "Ankle boot")),
    "mnist": partial(_load_idx, folder="MNIST", torchvision_class="MNIST", class_names=DIGITS),
    "imagefolder": _load_imagefolder,
    "digits": _load_digits,
}
