"""Atomic file writes: a crash, a kill or a power loss leaves the old file or the new one, never half of one.

Every file that a concurrent reader or a restarted run may open (checkpoints, the image cache, summaries, logs)
is written through `atomic_write`. Imports nothing of ganaug.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | Path, content: str | bytes | Callable[[BinaryIO], object]) -> None:
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
                content(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
