"""Datasets (read by datasets.py) -> uint8 tensors + DataSpec; the train/val split, subsampling and class
imbalance; and the device-side batching and flip/translate augmentation used by every trial (airbench style,
no DataLoader).

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

Continuous attributes (imagefolder's attributes.csv, see datasets.py) follow their images through every
step above (ImageData.train_attributes etc., float32 [N, k]).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ganaug.datasets import DATASETS, DataError, RawSplits, _stratified_split
from ganaug.errors import did_you_mean

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

    def pack(self) -> dict[str, Any]:
        """A dict of numpy arrays (and the spec): Ray stores numpy zero-copy, so the trials of a node share one
        copy of the dataset (tune.with_parameters, evaluate's ray.put)."""
        return {f.name: (value.numpy() if isinstance(value := getattr(self, f.name), torch.Tensor) else value)
                for f in dataclasses.fields(self)}

    @classmethod
    def unpack(cls, packed: dict[str, Any]) -> ImageData:
        """pack()'s dict -> ImageData, its tensors sharing the arrays' memory."""
        # from_numpy shares the object store's read-only buffer; the pipeline never writes into it.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return cls(**{k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in packed.items()})

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
    name: str = "digits"                  # Key of datasets.DATASETS.
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
            raise DataError(f"data.name={self.name!r} is not a known dataset{did_you_mean(str(self.name), DATASETS)}; "
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
                raise DataError(f"{where}: unknown key {key!r}{did_you_mean(str(key), known)}; "
                                f"valid keys: {', '.join(known)}")
        return cls(**values)


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
        hints = "".join(did_you_mean(name, raw.class_names) for name in unknown[:1])
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


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] -> uint8 on the same device, each value rounded to the nearest level (values
    outside [-1, 1] clamped): the exact inverse of to_float on its outputs."""
    return x.float().clamp(-1, 1).add_(1).mul_(127.5).round_().to(torch.uint8)


def pick_device(name: str) -> torch.device:
    """The device a `device` setting names: "auto" is CUDA when available, else the CPU; "cpu" and "cuda" are
    themselves."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
# Helpers.


def _class_index(key: Any, names: tuple[str, ...]) -> int:
    """Resolve an imbalance key: a class name, or an integer class index."""
    if _is_int(key) and 0 <= key < len(names):
        return key
    if isinstance(key, str) and key in names:
        return names.index(key)
    raise DataError(f"data.imbalance: {key!r} is not a class of this dataset{did_you_mean(str(key), names)}; "
                    f"valid: a class name ({', '.join(names)}) or an index 0..{len(names) - 1}")


def _class_counts(y: np.ndarray, num_classes: int) -> tuple[int, ...]:
    return tuple(int(c) for c in np.bincount(y, minlength=num_classes))


def _check_type(key: str, value: Any, types: tuple[type, ...], valid: str) -> None:
    if not isinstance(value, types):
        raise DataError(f"data.{key}={value!r} has the wrong type; valid: {valid}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
