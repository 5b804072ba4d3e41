"""Atomic file writes: a crash, a kill or a power loss leaves the old file or the new one, never half of one.

Every file that a concurrent reader or a restarted run may open (checkpoints, the image cache, summaries, logs)
is written through `atomic_write`; `read_bytes` / `write_bytes` do the same at a location that may be remote
(s3://: the generator bank lives in the experiment's storage). Imports nothing of ganaug.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, cast


def atomic_write(path: str | os.PathLike[str], content: str | bytes | Callable[[BinaryIO], object]) -> None:
    """Write `content` to `path` by temp file + fsync + rename.

    content: text, bytes, or a function that writes the file to the binary handle it is given, e.g.
    `lambda file: torch.save(state, file)` or `lambda file: np.savez_compressed(file, **arrays)`.
    Whatever fails, the previous file at `path` stays as it was and no temp file is left behind.
    """
    if not isinstance(content, (str, bytes)) and not callable(content):
        raise TypeError(f"atomic_write: content must be str, bytes or a function of a file, not "
                        f"{type(content).__name__}")
    path = Path(path)
    # The process id keeps concurrent writers of one path (Tune trials) off each other's temp files.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w" if isinstance(content, str) else "wb") as handle:
            if isinstance(content, (str, bytes)):
                handle.write(content)
            else:
                content(cast(BinaryIO, handle))  # opened "wb": a binary handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


# Files at a location that may be remote: a local path, or a URI pyarrow reads (s3://bucket/key, gs://...), as
# experiment storage is. A remote object store writes an object whole, so a write there is atomic too.

def is_remote(location: str | os.PathLike) -> bool:
    return "://" in str(location)


def read_bytes(location: str | os.PathLike) -> bytes | None:
    """The file's content, or None when there is no file there."""
    if not is_remote(location):
        path = Path(location)
        return path.read_bytes() if path.is_file() else None
    import pyarrow.fs  # only remote storage needs it

    filesystem, path = pyarrow.fs.FileSystem.from_uri(str(location))
    if filesystem.get_file_info(path).type != pyarrow.fs.FileType.File:
        return None
    with filesystem.open_input_stream(path) as source:
        return source.read()


def write_bytes(location: str | os.PathLike, content: bytes) -> None:
    """Write `content` whole (atomic_write for a local path), creating the folders above it."""
    if not is_remote(location):
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(location, content)
        return
    import pyarrow.fs  # only remote storage needs it

    filesystem, path = pyarrow.fs.FileSystem.from_uri(str(location))
    filesystem.create_dir(path.rsplit("/", 1)[0])
    with filesystem.open_output_stream(path) as sink:
        sink.write(content)


def join(location: str | os.PathLike, *parts: str) -> str:
    """location/part/...: a path, or a URI with '/' separators."""
    return "/".join([str(location).rstrip("/"), *parts]) if is_remote(location) else str(Path(location, *parts))
