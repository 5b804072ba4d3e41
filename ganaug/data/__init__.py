"""The data: DataConfig (the `data:` section, torch-free), the readers of each format (DATASETS) and their decoded-image
cache, load_data (the train / val / test splits), and what a trial holds on its device (DataSpec, ImageData, batches).

    from ganaug.data import load_data
    data = load_data({"name": "digits"})
    data.spec.shape, data.spec.class_counts, data.train_x.dtype   # (1, 8, 8), (...), torch.uint8

Importing the package loads no torch: ganaug.space validates a data: section before torch or Ray start, so the
names that need torch (load_data and everything holding tensors) are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ganaug.data.config import DataConfig, DataError, check_attribute_columns, check_cutout, long_tail_counts
from ganaug.data.readers import DATASETS

if TYPE_CHECKING:  # what type checkers see of the names __getattr__ loads
    from ganaug.data.splits import attach_folders, folder_source, load_data
    from ganaug.data.tensors import (
        ClassIndex,
        DataSpec,
        ImageData,
        as_float_images,
        balanced_batch_indices,
        balanced_labels,
        batch_indices,
        pick_device,
        sample_balanced,
        to_float,
        to_uint8,
    )

# Name -> the submodule (which imports torch) that defines it.
_TORCH_NAMES = {"load_data": "splits", "attach_folders": "splits", "folder_source": "splits",
                **{name: "tensors" for name in (
    "ClassIndex", "DataSpec", "ImageData", "as_float_images", "balanced_batch_indices", "balanced_labels",
    "batch_indices", "pick_device", "sample_balanced", "to_float", "to_uint8")}}

__all__ = ["ClassIndex", "DATASETS", "DataConfig", "DataError", "DataSpec", "ImageData", "as_float_images",
           "attach_folders", "check_attribute_columns", "check_cutout", "folder_source",
           "balanced_batch_indices", "balanced_labels", "batch_indices", "load_data", "long_tail_counts", "pick_device",
           "sample_balanced", "to_float", "to_uint8"]


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        return getattr(importlib.import_module(f"ganaug.data.{_TORCH_NAMES[name]}"), name)
    raise AttributeError(f"module 'ganaug.data' has no attribute {name!r}")
