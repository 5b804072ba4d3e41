"""Experiment folders on remote storage (s3://bucket/prefix, gs://..., any pyarrow URI): a local mirror of
each, files copied between the two, and a quick check that the storage answers before a search starts.

The search, results.experiment, evaluate and generate work on local folders; for a URI they work on its mirror,
`~/.ganaug/results/<storage URI, sanitised>/<name>`, and copy what they write back up.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from urllib.parse import urlsplit

from ganaug.errors import InputError

MIRROR_ROOT = "~/.ganaug/results"  # local mirrors of remote experiments; $GANAUG_MIRROR overrides it
CONNECT_TIMEOUT_S = 3.0  # a storage endpoint that does not accept a connection in this long is unreachable


class StorageError(InputError):
    """Remote storage cannot be used: its endpoint does not answer or its bucket does not exist."""


def is_uri(path: str | os.PathLike) -> bool:
    return "://" in str(path)


def mirror_of(storage_uri: str) -> str:
    """The local folder that mirrors remote storage `storage_uri` (its experiments are subfolders)."""
    root = os.path.expanduser(os.environ.get("GANAUG_MIRROR") or MIRROR_ROOT)
    return os.path.join(root, re.sub(r"[^\w.-]+", "_", storage_uri.rstrip("/")))


def mirror_of_experiment(experiment_uri: str) -> Path:
    """The local mirror of one remote experiment folder, storage/name: the same folder as local_view's."""
    storage, _, name = experiment_uri.rstrip("/").rpartition("/")
    return Path(mirror_of(storage), name)


def download(experiment_uri: str, local: str | os.PathLike, names: list[str] | None = None,
             under: str | None = None, checkpoints: bool = False) -> list[Path]:
    """Copy files of a remote experiment folder into `local`: `names` (top-level files) if given, else
    every file (below `under` if given), without checkpoint folders unless `checkpoints`. Returns the copies."""
    import pyarrow.fs

    filesystem, root = pyarrow.fs.FileSystem.from_uri(experiment_uri)
    if names is not None:
        infos = [info for info in filesystem.get_file_info([f"{root}/{name}" for name in names])
                 if info.type == pyarrow.fs.FileType.File]
    else:
        base = f"{root}/{under}" if under else root
        infos = filesystem.get_file_info(pyarrow.fs.FileSelector(base, recursive=True, allow_not_found=True))
    copied = []
    for info in infos:
        relative = info.path[len(root):].lstrip("/")
        if info.type != pyarrow.fs.FileType.File or (not checkpoints and "/checkpoint_" in f"/{relative}"):
            continue
        target = Path(local, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        with filesystem.open_input_stream(info.path) as source:
            target.write_bytes(source.read())
        copied.append(target)
    return copied


def upload(experiment_uri: str, local: str | os.PathLike, names: list[str]) -> None:
    """Copy the top-level files `names` of the local folder `local` up to the remote experiment folder."""
    import pyarrow.fs

    filesystem, root = pyarrow.fs.FileSystem.from_uri(experiment_uri)
    filesystem.create_dir(root)
    for name in names:
        path = Path(local, name)
        if path.is_file():
            with filesystem.open_output_stream(f"{root}/{name}") as sink:
                sink.write(path.read_bytes())


def check_reachable(storage_uri: str) -> None:
    """Raise StorageError (one line naming the URI) when s3:// storage has no answering endpoint or no bucket.

    Asking pyarrow (or Tune) first would retry with backoff deep inside the AWS SDK, and an endpoint that
    drops packets would hang the start: one TCP connect with a short timeout answers the first question.
    Other schemes are left to Tune.
    """
    parts = urlsplit(storage_uri)
    if parts.scheme != "s3":
        return
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    shown = endpoint or "https://s3.amazonaws.com"
    address = urlsplit(shown if "://" in shown else f"https://{shown}")
    host, port = address.hostname, address.port or (80 if address.scheme == "http" else 443)
    valid = "valid: s3://BUCKET/prefix of an existing bucket on an endpoint that answers (AWS_ENDPOINT_URL, else AWS)"
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise StorageError(f"{storage_uri}: cannot reach the S3 endpoint {shown} "
                           f"({error.strerror or type(error).__name__}); {valid}") from None
    import pyarrow.fs

    try:
        filesystem, _ = pyarrow.fs.FileSystem.from_uri(storage_uri)
        found = filesystem.get_file_info(parts.netloc).type == pyarrow.fs.FileType.Directory
    except OSError as error:
        raise StorageError(f"{storage_uri}: the S3 endpoint {shown} refused the request "
                           f"({str(error).splitlines()[0]}); {valid}") from None
    if not found:
        raise StorageError(f"{storage_uri}: no bucket {parts.netloc!r} at the S3 endpoint {shown}; {valid}")
