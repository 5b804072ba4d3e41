"""The Ray that the search (tune) and the re-training of best policies (evaluate) run on."""

from __future__ import annotations

import contextlib
import os

import ray


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None):
    """Ray for the length of the block: the one already initialised if any (left running), else `address` (default
    $RAY_ADDRESS) joined, else a new local Ray of `num_cpus` CPUs; a Ray started here is shut down after the block."""
    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address and address != "local":
        ray.init(address=address)
    else:
        # address="local": a new Ray of our own; a bare ray.init() would join any cluster `ray start` left running.
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False)
    try:
        yield
    finally:
        ray.shutdown()
