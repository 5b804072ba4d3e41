"""The `data:` section of a search space (DataConfig), torch-free so that a YAML is validated before torch or Ray
load; and DataError, the error of every bad data input."""

from __future__ import annotations

import dataclasses
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ganaug.config import DATASET_NAMES, TrialConfig, condition_names
from ganaug.errors import InputError, did_you_mean
from ganaug.options import ConfigError, option, valid_values, within

TRIAL_FIELDS = {spec.name: spec for spec in dataclasses.fields(TrialConfig)}


class DataError(InputError):
    """Bad data input: the message names the key or file and what would be valid."""



@dataclass(frozen=True)
class DataConfig:
    """The `data:` section. Each key's documentation is its field's `doc` (one line of the docs' data-key table,
    ganaug.space.keys.data_key_table); its checks are in __post_init__."""

    name: str = option("digits", f"The dataset: {', '.join(DATASET_NAMES)} (data.readers.DATASETS; see Datasets).")
    root: str | None = option(None, "Folder holding the files; None = `~/.ganaug/data/<name>`.")
    download: bool = option(False, "cifar10, cifar100, mnist, fashion_mnist: fetch the files with torchvision when "
                                   "they are missing.")
    image_size: int | None = option(None, "imagefolder: resize to size x size; None = the native size if all images "
                                          "agree, else 32.")
    grayscale: bool | None = option(None, "imagefolder: True = 1 channel, False = 3; None = 1 only if every image is "
                                          "grayscale.")
    test_fraction: float = option(0.2, "imagefolder without train/ and test/: the stratified, seeded test share.")
    val_fraction: float = option(0.1, "Stratified, seeded share of the train split held out as validation (the "
                                      "search never sees the test split).")
    samples_per_class: int | None = option(None, "Seeded N per class of the train split, taken before the validation "
                                                 "split (the small-data regime).")
    imbalance: dict | None = option(None, "{class name or index: kept fraction in (0, 1]}, train split only; "
                                          "synthetic images are then conditioned on minority classes first.")
    long_tail: dict | None = option(None, "{ratio: R >= 1, order: [class names or indices, head first]}: the train "
                                          "split cut to Cui et al.'s exponential profile (long_tail_counts).")
    seed: int = option(0, "Seeds subsampling, the validation split and imbalance (not the test split).")
    real_pool: dict | None = option(None, "{per_class: N}: real training images held out as the positive control's "
                                          "source (synthetic_source: real), never in train, validation or test: N "
                                          "per class drawn before subsampling; on long-tailed data up to N per class "
                                          "of the images the tail's cut removed.")
    classes: list | None = option(None, "Keep only these classes (names, e.g. [cat, dog], or [3, 8] for digits), "
                                        "relabelled 0..k-1 in this order before every other step (unknown names are "
                                        "refused with the valid ones); None = every class.")

    def __post_init__(self) -> None:
        if isinstance(self.root, os.PathLike):
            object.__setattr__(self, "root", os.fspath(self.root))
        if not isinstance(self.name, str) or self.name not in DATASET_NAMES:
            hint = did_you_mean(str(self.name), DATASET_NAMES)
            raise DataError(f"data.name={self.name!r} is not a known dataset{hint}; valid: {', '.join(DATASET_NAMES)}")
        _check_type("root", self.root, (str, type(None)), "a folder path or null")
        _check_type("download", self.download, (bool,), "true or false")
        _check_type("grayscale", self.grayscale, (bool, type(None)), "true, false or null")
        for key in ("image_size", "samples_per_class"):
            value = getattr(self, key)
            if value is not None and not (is_int(value) and value >= 1):
                raise DataError(f"data.{key}={value!r} is not valid; valid: an integer >= 1, or null")
        if not (is_int(self.seed) and self.seed >= 0):
            raise DataError(f"data.seed={self.seed!r} is not valid; valid: an integer >= 0")
        for key in ("test_fraction", "val_fraction"):
            value = getattr(self, key)
            if not (is_number(value) and 0 < value < 1):
                raise DataError(f"data.{key}={value!r} is out of range; valid: a number in (0, 1)")
        if self.classes is not None:
            if isinstance(self.classes, tuple):
                object.__setattr__(self, "classes", list(self.classes))
            valid = "a list of at least two distinct class names, e.g. [cat, dog] (digits: [3, 8]), or null"
            if not isinstance(self.classes, list) or len(self.classes) < 2 or \
                    not all(isinstance(c, str) or is_int(c) for c in self.classes):
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
                if not (is_number(fraction) and 0 < fraction <= 1):
                    raise DataError(f"data.imbalance[{key!r}]={fraction!r} is out of range; "
                                    "valid: a kept fraction in (0, 1]")

        if self.real_pool is not None:
            valid = "a mapping {per_class: N} with N an integer >= 1, or null"
            if not isinstance(self.real_pool, dict) or set(self.real_pool) != {"per_class"}:
                raise DataError(f"data.real_pool={self.real_pool!r} is not valid; valid: {valid}")
            if not (is_int(self.real_pool["per_class"]) and self.real_pool["per_class"] >= 1):
                raise DataError(f"data.real_pool.per_class={self.real_pool['per_class']!r} is out of range; "
                                f"valid: {valid}")
        if self.long_tail is not None:
            _check_long_tail(self.long_tail)
            if self.imbalance is not None:
                raise DataError("data.long_tail and data.imbalance both thin the train split; valid: one of them "
                                "(long_tail: {ratio: R} for Cui et al.'s profile, imbalance: {class: fraction})")

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


LONG_TAIL_VALID = "a mapping {ratio: R >= 1, order: [class names or indices, head first] (optional)}, or null"


def _check_long_tail(long_tail: Any) -> None:
    """data.long_tail's own values; that the order names every class once and that every class keeps an image are
    checked once the classes are known (splits.load_data)."""
    if not isinstance(long_tail, dict) or "ratio" not in long_tail:
        raise DataError(f"data.long_tail={long_tail!r} is not valid; valid: {LONG_TAIL_VALID}")
    unknown = [key for key in long_tail if key not in ("ratio", "order")]
    if unknown:
        raise DataError(f"data.long_tail: unknown key {unknown[0]!r}{did_you_mean(str(unknown[0]), ('ratio', 'order'))}"
                        "; valid keys: ratio, order")
    ratio = long_tail["ratio"]
    if not (is_number(ratio) and np.isfinite(ratio) and ratio >= 1):
        raise DataError(f"data.long_tail.ratio={ratio!r} is out of range; valid: a number >= 1 (the head class's "
                        "training images over the tail class's; 1 = balanced)")
    order = long_tail.get("order")
    if order is not None and not (isinstance(order, (list, tuple)) and
                                  all(isinstance(c, str) or is_int(c) for c in order)):
        raise DataError(f"data.long_tail.order={order!r} is not valid; valid: a list of every class name or index, "
                        "head first, or null (the classes as listed)")


def long_tail_counts(n_max: int, ratio: float, num_classes: int) -> list[int]:
    """Images per class of a long tail, head first: n_i = n_max x ratio^(-i / (K - 1)) for i = 0..K-1 (Cui et al.
    2019, CIFAR-10-LT), rounded down as the reference code's int() does (a hair of tolerance, so that 450 / 10 is 45
    and not 44 by float error). ratio 1 keeps n_max of every class; the last class gets floor(n_max / ratio)."""
    if num_classes == 1:
        return [int(n_max)]
    return [int(np.floor(n_max * float(ratio) ** (-i / (num_classes - 1)) + 1e-9)) for i in range(num_classes)]


def _check_type(key: str, value: Any, types: tuple[type, ...], valid: str) -> None:
    if not isinstance(value, types):
        raise DataError(f"data.{key}={value!r} has the wrong type; valid: {valid}")


def is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


# ----------------------------------------------------------------------------------------------
# What a policy's keys ask of the dataset, checked once the data is known (TrialConfig checks what it can alone).

def check_cutout(cutout: Any, height: int, width: int, *, where: str = "",
                 error: type[InputError] = ConfigError) -> None:
    """Raise `error` (its message prefixed by `where`) unless `cutout` fits height x width images: an integer within
    the field's limits and at most the shorter side. TrialConfig checks it without the images, this with them."""
    limits = {**TRIAL_FIELDS["cutout"].metadata["limits"], "le": min(height, width)}
    if isinstance(cutout, bool) or not (isinstance(cutout, numbers.Integral) and within(cutout, limits)):
        raise error(f"{where}{': ' if where else ''}cutout={cutout!r} is out of range for {height}x{width} images; "
                    f"valid: {valid_values(TRIAL_FIELDS['cutout'], limits)}")


def check_attribute_columns(conditions: str, available: Sequence[str], *, where: str = "",
                            error: type[InputError] = ConfigError) -> None:
    """Raise `error` (its message prefixed by `where`) unless every column of a gan_conditions value is one of the
    dataset's attribute columns, `available` (attributes.csv's): the message names the missing and the valid ones."""
    missing = [name for name in condition_names(conditions) if name not in available]
    if missing:
        valid = ", ".join(available) or "none: the dataset has no attributes (an imagefolder split folder's " \
            "attributes.csv holds them)"
        named = f"{', '.join(map(repr, missing))} {'is' if len(missing) == 1 else 'are'}"
        raise error(f"{where}{': ' if where else ''}{named} not an attribute column of the dataset; valid columns: "
                    f"{valid}")
