"""load_data: a dataset read by its reader (data.readers), then split into the train / val / test uint8 tensors a
trial sees (ImageData).

    from ganaug.data import load_data
    data = load_data({"name": "imagefolder", "root": "data/cifar10-small", "samples_per_class": 100})
    data.spec.shape, data.spec.class_counts    # (3, 32, 32), (90, 90, ...)

Order of the train-side steps (the test split is never touched by any of them):
1. `samples_per_class` keeps a seeded N per class of the train split, so N is what train + val hold per class.
2. A stratified `val_fraction` of that is carved out as validation.
3. `imbalance` then thins the remaining train split only. Validation stays class-balanced like the test
   split, so the policy that wins the search on validation is judged on the distribution it is tested on.
   `long_tail` instead cuts the train split to Cui et al.'s exponential profile (data.config.long_tail_counts):
   the class at position i of `order` (default: the classes as listed) keeps n_i = n_max x R^(-i / (K - 1)) of its
   training images, seeded. Its validation split is BALANCED and carved before the cut: v = round(val_fraction x m)
   images of every class, m being the smallest class of the pool (samples_per_class when given; CIFAR-10 with
   samples_per_class 500 and val_fraction 0.1: 50 per class), so the search's objective weighs every class as the
   balanced test split does, and no tail class gives up part of its few training images to validation. n_max is
   the head's training count, m - v: samples_per_class minus its validation share when given, else the smallest
   class's training count, which is what every class can supply (digits: 139 - 14 = 125). A ratio that leaves a
   class no image (R > n_max) is refused. `long_tail` together with `imbalance` is refused (data.config).
Before all three, `classes` keeps only the named classes of every split (labels re-indexed 0..k-1 in the
listed order), and `real_pool` (the positive control's source: real images the trial draws as if a generator had
made them) holds out a seeded N per class of the train split before the subsample, refused when a class cannot spare
them; on long-tailed data the pool is instead up to N per class of the images the tail's cut removed (the head
spares none). The pool is in no split: ImageData.sources["real"].

Continuous attributes (imagefolder's attributes.csv, see data.readers) follow their images through every
step above (ImageData.train_attributes etc., float32 [N, k]).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from ganaug.data.config import DataConfig, DataError, is_int, long_tail_counts
from ganaug.data.readers import DATASETS, RawSplits, read_image_folder, stratified_split
from ganaug.data.tensors import DataSpec, ImageData
from ganaug.errors import did_you_mean


def load_data(config: DataConfig | dict) -> ImageData:
    """Read a dataset and split it into train / val / test uint8 tensors (on the CPU)."""
    cfg = config if isinstance(config, DataConfig) else DataConfig.from_dict(config)
    raw = DATASETS[cfg.name](cfg)
    if cfg.classes is not None:
        raw = _keep_classes(raw, cfg.classes, cfg.name)
    names, num_classes = raw.class_names, len(raw.class_names)
    rng = np.random.default_rng(cfg.seed)

    # The positive control's real pool, held out first (long-tailed data: from the tail's cut, below).
    pool = np.arange(len(raw.train_y))
    real_pool = np.zeros(0, dtype=np.int64)
    if cfg.real_pool and not cfg.long_tail:
        pool, real_pool = _hold_out_real_pool(raw.train_y, cfg.real_pool["per_class"], cfg.samples_per_class,
                                              names, rng)

    # Subsample: a seeded N per class of the train split (train + val hold N per class).
    if cfg.samples_per_class is not None:
        counts, kept = _class_counts(raw.train_y[pool], num_classes), []
        for label in range(num_classes):
            members = pool[raw.train_y[pool] == label]
            if len(members) < cfg.samples_per_class:
                raise DataError(f"data.samples_per_class={cfg.samples_per_class} is more than class "
                                f"{names[label]!r} has in the {cfg.name} train split ({len(members)}); "
                                f"valid: at most {min(counts)}")
            kept.append(rng.permutation(members)[: cfg.samples_per_class])
        pool = np.sort(np.concatenate(kept))

    # Validation split, stratified (long_tail: the same count of every class, before the tail is cut).
    if cfg.long_tail:
        train_idx, val_idx, tail, cut = _long_tail(raw.train_y, pool, cfg.long_tail, cfg.val_fraction, names, rng)
        if cfg.real_pool:
            real_pool = np.sort(np.concatenate([rows[:cfg.real_pool["per_class"]] for rows in cut]))
    else:
        train_idx, val_idx = stratified_split(raw.train_y, pool, cfg.val_fraction, rng)

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
                    class_counts=_class_counts(train_y, num_classes), attribute_names=raw.attribute_names,
                    **(tail if cfg.long_tail else {}))
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
        sources={"real": (tensor(raw.train_x[real_pool], np.uint8), tensor(raw.train_y[real_pool], np.int64))}
        if cfg.real_pool else {},
    )


def _hold_out_real_pool(y: np.ndarray, per_class: int, samples_per_class: int | None, names: tuple[str, ...],
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(the rows left for train + val, the real pool's rows): a seeded `per_class` of every class held out, each
    class keeping samples_per_class (or 2: one to train on, one to validate) for the splits."""
    keep = samples_per_class or 2
    left, held = [], []
    for label, name in enumerate(names):
        members = rng.permutation(np.flatnonzero(y == label))
        if len(members) < per_class + keep:
            spare = max(len(members) - keep, 0)
            raise DataError(f"data.real_pool.per_class={per_class} is more than class {name!r} can spare: it has "
                            f"{len(members)} training images and keeps {keep} for train + val"
                            f"{' (samples_per_class)' if samples_per_class else ''}; valid: per_class <= {spare}")
        held.append(members[:per_class])
        left.append(members[per_class:])
    return np.sort(np.concatenate(left)), np.sort(np.concatenate(held))


def _keep_classes(raw: RawSplits, classes: list, dataset: str) -> RawSplits:
    """Only the classes named in data.classes, relabelled 0..k-1 in the listed order (numbers match by their text,
    so digits' [3, 8] names classes "3" and "8"); `dataset`: data.name, for the message."""
    wanted = [str(c) for c in classes]
    unknown = [name for name in wanted if name not in raw.class_names]
    if unknown:
        hints = "".join(did_you_mean(name, raw.class_names) for name in unknown[:1])
        raise DataError(f"data.classes: {', '.join(map(repr, unknown))} {'is' if len(unknown) == 1 else 'are'} "
                        f"not a class of {dataset}{hints}; valid: {', '.join(raw.class_names)}")
    relabel = np.full(len(raw.class_names), -1, dtype=np.int64)
    relabel[[raw.class_names.index(name) for name in wanted]] = np.arange(len(wanted))
    train, test = relabel[raw.train_y] >= 0, relabel[raw.test_y] >= 0
    pick = lambda array, rows: array[rows] if array is not None else None
    return RawSplits(raw.train_x[train], relabel[raw.train_y[train]], raw.test_x[test], relabel[raw.test_y[test]],
                     tuple(wanted), pick(raw.train_attributes, train), pick(raw.test_attributes, test),
                     raw.attribute_names)


def _long_tail(y: np.ndarray, pool: np.ndarray, long_tail: dict, val_fraction: float, names: tuple[str, ...],
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[str, Any], list[np.ndarray]]:
    """(train rows, balanced validation rows, the DataSpec fields of the tail, each class's rows the cut removed, in
    a seeded order) of data.long_tail (with data.val_fraction): see the module's docstring for the order of the steps
    and the counts."""
    ratio, order = float(long_tail["ratio"]), long_tail.get("order")
    positions = list(range(len(names))) if order is None else \
        [_class_index(key, names, "data.long_tail.order") for key in order]
    if order is not None and sorted(positions) != list(range(len(names))):
        raise DataError(f"data.long_tail.order={list(order)!r} does not name every class exactly once; valid: a "
                        f"permutation of the classes, head first ({', '.join(names)}), or null (as listed)")
    members = [rng.permutation(pool[y[pool] == label]) for label in range(len(names))]
    smallest = min(len(rows) for rows in members)
    held = max(round(val_fraction * smallest), 1) if smallest > 1 else 0
    n_max = smallest - held
    counts = long_tail_counts(n_max, ratio, len(names))
    if counts[-1] < 1:
        raise DataError(f"data.long_tail.ratio={long_tail['ratio']!r} leaves class {names[positions[-1]]!r} "
                        f"with {n_max} / {ratio:g} < 1 training image (n_max = {n_max}: the head's training images "
                        f"after {held} per class for validation); valid: 1 <= ratio <= {n_max}")
    kept = {label: members[label][held:][:counts[position]] for position, label in enumerate(positions)}
    cut = {label: members[label][held + counts[position]:] for position, label in enumerate(positions)}
    val_idx = np.sort(np.concatenate([rows[:held] for rows in members]))
    train_idx = np.sort(np.concatenate([kept[label] for label in range(len(names))]))
    return (train_idx, val_idx, {"long_tail_ratio": ratio, "long_tail_order": tuple(positions)},
            [cut[label] for label in range(len(names))])


def _class_index(key: Any, names: tuple[str, ...], where: str = "data.imbalance") -> int:
    """Resolve an imbalance (or long_tail.order) key: a class name, or an integer class index."""
    if is_int(key) and 0 <= key < len(names):
        return int(key)
    if isinstance(key, str) and key in names:
        return names.index(key)
    raise DataError(f"{where}: {key!r} is not a class of this dataset{did_you_mean(str(key), names)}; "
                    f"valid: a class name ({', '.join(names)}) or an index 0..{len(names) - 1}")


def _class_counts(y: np.ndarray, num_classes: int) -> tuple[int, ...]:
    return tuple(int(c) for c in np.bincount(y, minlength=num_classes))


def folder_source(path: str) -> str:
    """The name a folder's images have among ImageData.sources (synthetic_source: folder)."""
    return f"folder:{path}"


def attach_folders(data: ImageData, folders: list[str] | tuple[str, ...]) -> ImageData:
    """`data` with the images of each synthetic_folder in `folders` among its sources (read_image_folder: checked
    against the dataset's shape and classes), so that a trial on any node draws them from the object store."""
    if not folders:
        return data
    spec = data.spec
    read = {folder_source(path): read_image_folder(path, spec.class_names, spec.shape) for path in folders}
    tensors = {name: (torch.from_numpy(x), torch.from_numpy(y)) for name, (x, y) in read.items()}
    return dataclasses.replace(data, sources={**data.sources, **tensors})
