"""The datasets on disk: one reader per format (scikit-learn's digits, CIFAR pickles, MNIST idx files, a folder
of images with its attributes.csv (data.attributes), its decodes cached by data.cache), each DataConfig -> RawSplits
of uint8 arrays, and DATASETS, their registry by YAML `data.name`; and read_image_folder, a folder of images a
synthetic source draws from. data.splits turns RawSplits into the splits a trial sees.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ganaug.config import registry
from ganaug.data.attributes import read_attributes
from ganaug.data.cache import cached_arrays
from ganaug.data.config import DataConfig, DataError

# Test splits that the dataset does not ship are drawn with this fixed seed, never `DataConfig.seed`:
# every trial and every evaluation seed must see the same test images.
TEST_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2
DEFAULT_IMAGE_SIZE = 32  # imagefolder with mixed image sizes and no image_size
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".pgm", ".ppm", ".tif", ".tiff", ".webp")
GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


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


# ----------------------------------------------------------------------------------------------
# Readers: one per on-disk format, each DataConfig -> RawSplits.


def _load_digits(cfg: DataConfig) -> RawSplits:
    """scikit-learn's 8x8 digits (ships with the package: the offline dataset); fixed 20 % test split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.round(bunch.images * (255 / 16)).astype(np.uint8)[:, None]  # values 0..16 -> 0..255
    y = bunch.target.astype(np.int64)
    train, test = stratified_split(y, np.arange(len(y)), DIGITS_TEST_FRACTION,
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
    # `or`: _ensure_files found each file; should one vanish since, _read_idx names it in a DataError.
    arrays = [_read_idx(_idx_path(raw / stem) or raw / stem, ndim) for stem, ndim in zip(stems, (3, 1, 3, 1))]
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
    paths = [path for path, _, _ in files]
    arrays = cached_arrays(root, paths, {"image_size": cfg.image_size, "grayscale": cfg.grayscale},
                           lambda: {"x": _decode_images(cfg, root, paths),
                                    "y": np.array([label for _, label, _ in files], dtype=np.int64),
                                    "split": np.array([split for _, _, split in files], dtype=np.int8)})
    x, y, split = arrays["x"], arrays["y"], arrays["split"]
    attribute_names, attributes = read_attributes(root, files)

    if (split < 0).all():  # flat layout: hold out a fixed stratified test share
        train, test = stratified_split(y, np.arange(len(y)), cfg.test_fraction,
                                        np.random.default_rng(TEST_SPLIT_SEED))
    else:
        train, test = np.flatnonzero(split == 0), np.flatnonzero(split == 1)
    pick = lambda rows: attributes[rows] if attributes is not None else None
    return RawSplits(x[train], y[train], x[test], y[test], class_names, pick(train), pick(test), attribute_names)


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


def _probe(path: Path) -> tuple[str, tuple[int, int]] | None:
    """An image file's (mode, (width, height)) from its header, or None when it cannot be read as an image."""
    from PIL import Image

    try:
        with Image.open(path) as image:  # reads the header only
            return image.mode, image.size
    except Exception:  # PIL raises many types for corrupt files; the caller reports the file by name
        return None


def _decode_images(cfg: DataConfig, root: Path, paths: list[Path]) -> np.ndarray:
    """Decode every image to one mode and size (PIL, antialiased resize); name all unreadable files."""
    from PIL import Image

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
        headers = _raise_unreadable(root, paths, list(pool.map(_probe, paths)))
        if cfg.grayscale is None:
            mode = "L" if all(m in GRAYSCALE_MODES for m, _ in headers) else "RGB"
        else:
            mode = "L" if cfg.grayscale else "RGB"
        sizes = {s for _, s in headers}
        if cfg.image_size is not None:
            size = (cfg.image_size, cfg.image_size)
        else:
            size = sizes.pop() if len(sizes) == 1 else (DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE)
        images = _raise_unreadable(root, paths, list(pool.map(decode, paths)))
    x = np.stack(images)
    return x[:, None] if mode == "L" else x.transpose(0, 3, 1, 2)


def read_image_folder(root: str | Path, class_names: tuple[str, ...], shape: tuple[int, int, int],
                      where: str = "synthetic_folder") -> tuple[np.ndarray, np.ndarray]:
    """A folder of images a synthetic source draws from (synthetic_source: folder), as (uint8 [N, C, H, W], int64 [N]
    labels): class subfolders named as the dataset's classes give the labels; images directly in the folder are
    unlabelled (label -1). Read like an imagefolder dataset (decodes cached, data.cache), and checked against the
    dataset's `shape` (C, H, W) and `class_names`: another size or channel count, an unknown class subfolder or no
    image at all raise DataError naming the folder and what is valid."""
    root = Path(root).expanduser()
    layout = f"a folder of {shape[1]}x{shape[2]} images, in subfolders named as the dataset's classes " \
             f"({', '.join(class_names)}) or directly in it"
    if not root.is_dir():
        raise DataError(f"{where}={str(root)!r} is not an existing folder; valid: {layout}")
    visible = lambda path: not path.name.startswith(".")  # skips .ganaug_cache, .DS_Store, ...
    images = lambda folder: sorted(p for p in folder.iterdir()
                                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and visible(p))
    subfolders = sorted(p.name for p in root.iterdir() if p.is_dir() and visible(p))
    unknown = [name for name in subfolders if name not in class_names]
    if unknown:
        raise DataError(f"{where}={str(root)!r}: subfolder(s) {', '.join(map(repr, unknown))} are not classes of "
                        f"the dataset; valid: {layout}")
    files = [(path, class_names.index(name)) for name in subfolders for path in images(root / name)] \
        if subfolders else [(path, -1) for path in images(root)]
    if not files:
        raise DataError(f"{where}={str(root)!r} holds no image (looked for {', '.join(IMAGE_EXTENSIONS)}); "
                        f"valid: {layout}")
    paths = [path for path, _ in files]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        headers = _raise_unreadable(root, paths, list(pool.map(_probe, paths)))
    channels = 1 if shape[0] == 1 else 3
    for path, (mode, size) in zip(paths, headers):
        found = 1 if mode in GRAYSCALE_MODES else 3
        if size != (shape[2], shape[1]) or found != channels:
            raise DataError(f"{where}={str(root)!r}: {path.relative_to(root)} is {size[0]}x{size[1]} with {found} "
                            f"channel(s); valid: {shape[2]}x{shape[1]} images with {channels} channel(s), as the "
                            "dataset's")
    decoding = DataConfig(name="imagefolder", root=str(root), grayscale=channels == 1)
    arrays = cached_arrays(root, paths, {"synthetic": True, "grayscale": channels == 1},
                           lambda: {"x": _decode_images(decoding, root, paths),
                                    "y": np.array([label for _, label in files], dtype=np.int64)})
    return arrays["x"], arrays["y"]


_Result = TypeVar("_Result")


def _raise_unreadable(root: Path, paths: list[Path], results: list[_Result | None]) -> list[_Result]:
    """`results` (one per path, None where the file is unreadable) once every file read; else DataError naming
    each unreadable file."""
    bad = [str(path.relative_to(root)) for path, result in zip(paths, results) if result is None]
    if bad:
        shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise DataError(f"data.root={str(root)!r}: {len(bad)} image file(s) cannot be read as images: "
                        f"{shown}; fix or remove them")
    return [result for result in results if result is not None]


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


def stratified_split(y: np.ndarray, pool: np.ndarray, fraction: float,
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


def _check_labels(path: Path, labels: np.ndarray, num_classes: int) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: labels range over {labels.min()}..{labels.max()}, "
                        f"expected 0..{num_classes - 1}")


# ----------------------------------------------------------------------------------------------
# Registry: YAML `data.name` values.

DIGITS = tuple(str(k) for k in range(10))

DATASETS: dict[str, Callable[[DataConfig], RawSplits]] = registry("dataset", {
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
})
