"""The decoded-image cache of folder datasets: arrays decoded once and kept as one compressed .npz per file list
and decode options, in root/.ganaug_cache, or in the user cache folder when root is read-only.

    arrays = cached_arrays(root, paths, {"image_size": 32}, decode=lambda: {"x": ..., "y": ...})
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ganaug.files import atomic_write

CACHE_VERSION = 1  # bump when the cached arrays change meaning (attributes.csv is read afresh, never cached)


def cached_arrays(root: Path, paths: list[Path], options: dict[str, Any],
                  decode: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """decode()'s arrays for the image files `paths` under `root` decoded with `options`, from the cache when an
    entry matches, else decoded now and cached. An entry matches only the same files (names, sizes and mtimes)
    and the same options, so adding, removing or touching an image decodes again."""
    stats = [path.stat() for path in paths]
    files = [(path.relative_to(root).as_posix(), stat.st_size, stat.st_mtime_ns) for path, stat in zip(paths, stats)]
    key = json.dumps({"version": CACHE_VERSION, "root": str(root.resolve()), "files": files, **options})
    name = f"imagefolder-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"
    arrays = _read(root, name)
    if arrays is None:
        arrays = decode()
        _write(root, name, arrays)
    return arrays


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


def _read(root: Path, name: str) -> dict[str, np.ndarray] | None:
    for folder in _cache_dirs(root):
        path = folder / name
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as npz:
                    return {key: npz[key] for key in npz.files}
            except Exception as error:  # a truncated or foreign file: decode again and overwrite it
                warnings.warn(f"ignoring unreadable cache {path} ({error}); decoding the images again",
                              stacklevel=4)
    return None


def _write(root: Path, name: str, arrays: dict[str, np.ndarray]) -> None:
    for folder in _cache_dirs(root):
        if not _writable(folder):
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # Atomic: concurrent trials never read a half-written file.
            # ignore: mypy checks a **dict against savez_compressed's allow_pickle: bool too; the keys are the
            # arrays' names, never allow_pickle.
            atomic_write(folder / name, lambda file: np.savez_compressed(file, **arrays))  # type: ignore[arg-type]
            return
        except OSError:
            continue
    warnings.warn(f"could not write the image cache to any of {[str(d) for d in _cache_dirs(root)]}; "
                  "the next load decodes the images again", stacklevel=4)
