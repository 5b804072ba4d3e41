"""Where a search writes, checked before Ray starts the way bad input is: the local storage folder (created and
written) and the generator bank's location (experiment.generators). A bad one ends in one `SpaceError` line naming
the file, the key and what would be valid, and leaves nothing behind."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from ganaug.files import is_remote
from ganaug.space.schema import SpaceError
from ganaug.space.spec import SearchSpec


def validate_storage(space: SearchSpec) -> None:
    """Create the local storage folder and check it is writable (remote URIs are left to Ray), then check the
    generator bank's location (validate_generators); a bad bank leaves no storage folder behind."""
    created: list[Path] = []
    if not is_remote(space.storage_uri()):
        folder = Path(space.storage_uri())
        try:
            created = _try_writing(folder)
        except OSError as err:
            raise SpaceError(
                f"{space.path}: experiment.storage: cannot create or write {folder} ({err.strerror or err}); "
                "valid: a writable local folder, s3://bucket/prefix or gs://bucket/prefix"
            ) from None
    try:
        validate_generators(space)
    except SpaceError:
        _remove_folders(created)
        raise


def validate_generators(space: SearchSpec) -> None:
    """The generator bank's location (experiment.generators, default <experiment>/generators) can hold the bank: a
    local folder (or file:// URI) that can be created and written, or a URI whose filesystem pyarrow knows and
    answers (s3://: its endpoint and bucket, as for storage, and no file in the bank's place). Checked the way
    storage is, before Ray, so that a bad bank never costs a trial its pretraining; leaves nothing behind."""
    location = space.generators_dir()
    if location is None or (space.experiment.generators is None and is_remote(space.storage_uri())):
        return  # off, or inside remote storage's experiment folder: the storage's own check (check_reachable) holds
    valid = "valid: a writable local folder, s3://bucket/prefix, another pyarrow URI (gs://, ...) or off"
    key = f"{space.path}: experiment.generators" + ("" if space.experiment.generators else f" (default {location})")
    if is_remote(location):
        import pyarrow.fs

        from ganaug.results import StorageError, check_reachable  # lazy: pandas and pyarrow, only for a URI

        try:
            check_reachable(location)  # s3://: one quick connect and the bucket, before pyarrow's retries
        except StorageError as err:
            raise SpaceError(f"{key}: {err}") from None
        try:
            filesystem, path = pyarrow.fs.FileSystem.from_uri(location)  # an unknown scheme: ArrowInvalid
            # Only an s3 endpoint is known to answer by now: another remote filesystem could retry for minutes.
            kind = filesystem.get_file_info(path).type if location.startswith("s3://") else None
        except (OSError, ValueError, NotImplementedError) as err:  # pyarrow's errors derive from these
            raise SpaceError(f"{key}: cannot use {location} ({str(err).splitlines()[0]}); {valid}") from None
        if kind == pyarrow.fs.FileType.File:
            raise SpaceError(f"{key}: {location} is a file, not a folder; {valid}")
        if not isinstance(filesystem, pyarrow.fs.LocalFileSystem):
            return
        location = path  # file://: a local folder
    folder = Path(location)
    if folder.exists() and not folder.is_dir():
        raise SpaceError(f"{key}: {folder} is a file, not a folder; {valid}")
    try:
        _remove_folders(_try_writing(folder))
    except OSError as err:
        raise SpaceError(f"{key}: cannot create or write {folder} ({err.strerror or err}); {valid}") from None


def _try_writing(folder: Path) -> list[Path]:
    """Create `folder` with its missing parents and write a file into it; returns the folders it created, deepest
    first. On OSError it removes them and raises."""
    created = [path for path in (folder, *folder.parents) if not path.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".ganaug-write-test-"):
            pass
    except OSError:
        _remove_folders(created)
        raise
    return created


def _remove_folders(folders: list[Path]) -> None:
    """Remove the (empty) folders `folders`, deepest first; one that is gone or no longer empty stays as it is."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()
