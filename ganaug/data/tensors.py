"""What a trial sees of a dataset: DataSpec (its shape facts), ImageData (the three splits as uint8 tensors, on the
trial's device, packed for Ray's object store), and the device-side helpers of every trial (airbench style, no
DataLoader): shuffled index batches, scaling to [-1, 1] and back, class-balanced labels, and ClassIndex (the rows of
a label tensor by class, for drawing a random row of a class or of another class).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ganaug.config import registry
from ganaug.data.config import DataError, long_tail_counts

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
    long_tail_ratio: float | None = None  # data.long_tail's ratio R (None: no tail cut), and its classes head first.
    long_tail_order: tuple[int, ...] = ()

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


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
    # None = no attributes: __post_init__ fills in [N, 0], so each is a tensor once built. The ignores: the
    # constructor takes None, which a dataclass field's one annotation cannot say beside the attribute's type.
    train_attributes: torch.Tensor = None  # type: ignore[assignment]
    val_attributes: torch.Tensor = None  # type: ignore[assignment]
    test_attributes: torch.Tensor = None  # type: ignore[assignment]
    # The first rows of the training split that GAN pretraining passes over (the search's own training split inside
    # evaluate's train + val, so that both pretrain the same generator); None = all of them.
    pretrain_rows: int | None = None
    # Images a synthetic source draws from (trial.sources), in no split: name -> (uint8 [N, C, H, W], int64 [N]
    # labels, -1 = unlabelled). "real": data.real_pool's held-out real images; "folder:<path>": a folder of images.
    sources: dict[str, tuple[torch.Tensor, torch.Tensor]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in ("train", "val", "test"):
            if getattr(self, f"{split}_attributes") is None:
                labels = getattr(self, f"{split}_y")
                setattr(self, f"{split}_attributes", torch.zeros(len(labels), 0, device=labels.device))

    def to(self, device: torch.device | str) -> ImageData:
        """All tensors on `device` (uint8 stays uint8: a whole dataset is small on the device)."""
        tensors = [f.name for f in dataclasses.fields(self) if f.name not in ("spec", "pretrain_rows", "sources")]
        moved: dict[str, Any] = {name: getattr(self, name).to(device) for name in tensors}
        sources = {name: (x.to(device), y.to(device)) for name, (x, y) in self.sources.items()}
        return ImageData(**moved, spec=self.spec, pretrain_rows=self.pretrain_rows, sources=sources)

    def pack(self) -> dict[str, Any]:
        """A dict of numpy arrays (and the spec): Ray stores numpy zero-copy, so the trials of a node share one
        copy of the dataset (tune.with_parameters, evaluate's ray.put)."""
        packed = {f.name: (value.numpy() if isinstance(value := getattr(self, f.name), torch.Tensor) else value)
                  for f in dataclasses.fields(self) if f.name != "sources"}
        return {**packed, "sources": {name: (x.numpy(), y.numpy()) for name, (x, y) in self.sources.items()}}

    @classmethod
    def unpack(cls, packed: dict[str, Any]) -> ImageData:
        """pack()'s dict -> ImageData, its tensors sharing the arrays' memory."""
        # from_numpy shares the object store's read-only buffer; a trial never writes into it.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            values: dict[str, Any] = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                                      for k, v in packed.items() if k != "sources"}
            sources = {name: (torch.from_numpy(x), torch.from_numpy(y))
                       for name, (x, y) in packed.get("sources", {}).items()}
            return cls(**values, sources=sources)

    def train_and_val(self) -> ImageData:
        """Train on train + val (for final evaluation); val is kept as is so code reading it still runs.

        Long-tailed data (spec.long_tail_ratio) adds only a long-tailed share of its balanced validation split
        (val_for_training), so train + val keeps the search's imbalance ratio: 450 -> 45 training and 50 validation
        images per class make 500 -> 50, not 500 -> 95."""
        val = self.val_for_training()
        train_x = torch.cat([self.train_x, self.val_x[val]])
        train_y = torch.cat([self.train_y, self.val_y[val]])
        counts = tuple(torch.bincount(train_y, minlength=self.spec.num_classes).tolist())
        pretrain_rows = len(self.train_y) if self.pretrain_rows is None else self.pretrain_rows
        return dataclasses.replace(self, train_x=train_x, train_y=train_y,
                                   train_attributes=torch.cat([self.train_attributes, self.val_attributes[val]]),
                                   spec=dataclasses.replace(self.spec, class_counts=counts),
                                   pretrain_rows=pretrain_rows)

    def val_for_training(self) -> torch.Tensor:
        """The validation rows train_and_val adds, as a bool mask: all of them, or on long-tailed data the first
        long_tail_counts(v, R, K)[i] rows of the class at position i of the tail (v: the head's validation rows)."""
        spec, labels = self.spec, self.val_y
        if spec.long_tail_ratio is None:
            return torch.ones(len(labels), dtype=torch.bool, device=labels.device)
        index = ClassIndex(labels, spec.num_classes)
        counts = long_tail_counts(int(index.count.max()), spec.long_tail_ratio, spec.num_classes)
        quota = torch.zeros(spec.num_classes, dtype=torch.long, device=labels.device)
        quota[list(spec.long_tail_order)] = torch.tensor(counts, device=labels.device)
        rank = torch.empty_like(labels)  # each row's rank among its class's rows, in row order
        rank[index.order] = torch.arange(len(labels), device=labels.device) - index.start[labels[index.order]]
        return rank < quota[labels]

    def pretraining(self) -> ImageData:
        """The data GAN pretraining passes over: the first pretrain_rows training rows (views, no copy)."""
        if self.pretrain_rows is None:
            return self
        rows = slice(0, self.pretrain_rows)
        counts = tuple(torch.bincount(self.train_y[rows], minlength=self.spec.num_classes).tolist())
        return dataclasses.replace(self, train_x=self.train_x[rows], train_y=self.train_y[rows],
                                   train_attributes=self.train_attributes[rows], pretrain_rows=None,
                                   spec=dataclasses.replace(self.spec, class_counts=counts))


# ----------------------------------------------------------------------------------------------
# Configuration: the YAML `data:` section, one key per field.


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
    """The device a `device` setting names (DEVICES): "auto" is CUDA when available, else the CPU; "cpu" and "cuda"
    are themselves."""
    return DEVICES[name]()


def batch_indices(n: int, batch_size: int, rng: torch.Generator | None, device: torch.device | str,
                  drop_last: bool = False) -> list[torch.Tensor]:
    """One epoch of shuffled index batches: a single randperm on the device, split into batch_size pieces."""
    if batch_size < 1:
        raise DataError(f"batch_size={batch_size} is out of range; valid: an integer >= 1")
    batches = list(torch.randperm(n, generator=rng, device=device).split(batch_size))
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


def balanced_batch_indices(index: ClassIndex, batch_size: int,
                           rng: torch.Generator | None) -> list[torch.Tensor]:
    """One epoch of class-balanced index batches (class_balance: resample; the class-balanced sampling of Kang et
    al. 2020, the re-sampling of Cao et al. 2019's DRS): as many rows as batch_indices gives, in the same batch
    sizes, each row's class drawn uniformly among the classes that have rows, then one of that class's rows
    uniformly (both with replacement, so tail images repeat within an epoch). On the labels' device, from
    `rng`, no host sync. `index`: the ClassIndex of the training labels."""
    if batch_size < 1:
        raise DataError(f"batch_size={batch_size} is out of range; valid: an integer >= 1")
    present = (index.count > 0).to(torch.float32)
    classes = torch.multinomial(present, len(index.order), replacement=True, generator=rng)
    return list(index.row_of_class(classes, rng).split(batch_size))


def balanced_labels(n: int, num_classes: int, rng: torch.Generator | None = None,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """n class labels with per-class counts differing by at most one, starting at a random class.

    The random start spreads the remainder (and the classes of batches smaller than num_classes)
    evenly over successive calls.
    """
    start = torch.randint(num_classes, (1,), generator=rng, device=device)
    return (start + torch.arange(n, device=device)) % num_classes


def sample_balanced(sampler, n: int, rng: torch.Generator | None = None,
                    chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """n class-balanced images from `sampler` (a GAN trainer, or anything with num_classes, device and
    sample(y, rng)) and their conditioning labels, sampled in chunks: what the quality metrics and CAS draw."""
    if n < 1:  # no batch to concatenate; every caller asks for at least one image
        raise ValueError(f"sample_balanced: n={n}; valid: n >= 1")
    y = balanced_labels(n, sampler.num_classes, rng, sampler.device)
    x = torch.cat([sampler.sample(part, rng) for part in y.split(chunk)])
    return x, y


def as_float_images(x: torch.Tensor) -> torch.Tensor:
    # uint8 data (the stored format) -> float in [-1, 1]; float input is taken as already scaled.
    return to_float(x) if x.dtype == torch.uint8 else x


class ClassIndex:
    """The rows of an int64 label tensor grouped by class, on the labels' device: `order` holds the row indices class
    by class (stable), so class c's rows are order[start[c]:start[c] + count[c]]. Draws one random row per label for
    a whole batch of labels at once, without a host sync."""

    def __init__(self, labels: torch.Tensor, num_classes: int):
        self.order = torch.argsort(labels, stable=True)
        self.count = torch.bincount(labels, minlength=num_classes)
        self.start = torch.cumsum(self.count, 0) - self.count

    def row_of_class(self, y: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        """For each label y_i, a row of class y_i drawn uniformly (any row, for a class without rows)."""
        start, count = self.start[y], self.count[y]
        empty = count == 0
        start, count = start.masked_fill(empty, 0), count.masked_fill(empty, len(self.order))
        u = torch.rand(len(y), generator=rng, device=self.order.device)
        # rand < 1, but float rounding could still reach `count`
        return self.order[start + torch.minimum((u * count).long(), count - 1)]

    def row_of_other_class(self, y: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        """For each label y_i, a row drawn uniformly among those of every other class (so a class is drawn in
        proportion to its row count). Where no other class has rows: a row of class y_i."""
        others = len(self.order) - self.count[y]
        rank = (torch.rand(len(y), generator=rng, device=self.order.device) * others).long()
        rank = torch.minimum(rank, others - 1)  # rand < 1, but float rounding could still reach `others`
        # The other classes' rows are order with class y's block cut out: ranks from start[y] on skip the block.
        return self.order[torch.where(rank < self.start[y], rank, rank + self.count[y])]


# ----------------------------------------------------------------------------------------------
# Registry: the `device` choices -> the torch device a trial runs on.
DEVICES = registry("device", {
    "auto": lambda: torch.device("cuda" if torch.cuda.is_available() else "cpu"),
    "cpu": lambda: torch.device("cpu"),
    "cuda": lambda: torch.device("cuda"),
})
