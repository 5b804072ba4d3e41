"""The Ray that the search (tune) and the re-training of best policies (evaluate) run on, and the actor that lets
their trials share the generator bank (trial.bank) across nodes. Ray is imported inside the functions that use it:
trial.bank takes the claims' bookkeeping (Claims) from here, and the trial loop never imports Ray."""

from __future__ import annotations

import contextlib
import os
import threading
import time


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None):
    """Ray for the length of the block: the one already initialised if any (left running), else `address` (default
    $RAY_ADDRESS) joined, else a new local Ray of `num_cpus` CPUs; a Ray started here is shut down after the block."""
    import ray  # here: trial.bank imports this module's Claims, and a trial never imports Ray

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


class Claims:
    """Who trains a missing generator-bank entry (trial.bank): the first trial to claim a key gets it; a claim is the
    trainer's until it releases it or stops beating its heartbeat (every few seconds while it pretrains) for
    `stale_seconds`, then the key goes to the next trial that asks, so a trial that died while training an entry
    never leaves the others waiting. Thread-safe: trial.bank.LocalCoordinator in one process, and the state of the
    BankCoordinator actor that every node of a search shares."""

    def __init__(self, stale_seconds: float = 60.0):
        self.claims: dict[str, tuple[str, float]] = {}  # key -> (owner, time of its last beat)
        self.stale_seconds = stale_seconds
        self._lock = threading.Lock()

    def claim(self, key: str, owner: str) -> bool:
        with self._lock:
            now = time.monotonic()
            holder = self.claims.get(key)
            if holder is None or holder[0] == owner or now - holder[1] > self.stale_seconds:
                self.claims[key] = (owner, now)
                return True
            return False

    def heartbeat(self, key: str, owner: str) -> None:
        with self._lock:
            if self.claims.get(key, (owner,))[0] == owner:
                self.claims[key] = (owner, time.monotonic())

    def release(self, key: str, owner: str) -> None:
        with self._lock:
            if self.claims.get(key, (None,))[0] == owner:
                del self.claims[key]


class BankCoordinator(Claims):
    """The Claims of one experiment as a named Ray actor (bank_coordinator), reached from every node."""


class RemoteCoordinator:
    """trial.bank's Coordinator through the experiment's BankCoordinator actor. Picklable: it carries the actor's
    handle to every trial, on whichever node it runs, and that handle keeps the actor alive while a trial needs it."""

    def __init__(self, handle):
        self.handle = handle

    def actor(self):
        return self.handle

    def claim(self, key: str, owner: str) -> bool:
        import ray

        return ray.get(self.actor().claim.remote(key, owner))

    def heartbeat(self, key: str, owner: str) -> None:
        self.actor().heartbeat.remote(key, owner)

    def release(self, key: str, owner: str) -> None:
        import ray

        ray.get(self.actor().release.remote(key, owner))


BANK_NAMESPACE = "ganaug"


def bank_coordinator(experiment: str, stale_seconds: float = 60.0) -> RemoteCoordinator:
    """The named BankCoordinator of an experiment (created if this Ray has none yet, else the running one)."""
    import ray

    name = f"generator-bank:{experiment}"
    # Owned by the driver: it ends with the search (a resumed search starts a new one; claims then start afresh).
    handle = ray.remote(num_cpus=0)(BankCoordinator).options(
        name=name, namespace=BANK_NAMESPACE, get_if_exists=True).remote(stale_seconds)
    return RemoteCoordinator(handle)
