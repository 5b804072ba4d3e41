"""The generator bank: a GAN pretrained once, shared by every trial (and evaluate's runs) that would train the same one.

A trial that pretrains its GAN (gan_pretrain_epochs >= 1) looks its generator up by a content key, a hash of
everything that decides the GAN at the end of pretraining: the GAN's keys (GENERATOR_KEYS, those the policy uses),
the seed, the batches (batch_size), the device type and precision, a fingerprint of the images it pretrains on and
the entry format. Found: the trial loads the entry (the GAN's state and the trial RNG's state at the end of
pretraining) and skips pretraining; it then reports exactly what it would have reported had it trained the GAN
itself. Not found: it claims the key, pretrains, and stores the entry under `<bank>/<key>/`:

    generator.pt     the state (torch.save, read with weights_only=True), written whole
    generator.yaml   the key's inputs, the sha256 of generator.pt, the training seconds, the generator's quality
                     (synthetic_diversity, frechet_distance after pretraining; cas, cas_ratio once a frozen trial
                     measured them), which trial trained it

Two trials that need one missing key train it once: a coordinator (cluster.BankCoordinator, a Ray actor shared by
every node, or LocalCoordinator in one process; both cluster.Claims) grants the key to one trial; the others poll
until its entry appears. `GeneratorBank.pretraining` is that whole exchange as one block: it loads or claims, beats
the trainer's heartbeat every HEARTBEAT_SECONDS on a timer, and releases the claim however the block ends; a claim
with no beat for a minute is stale, so even a trial that dies outright while training an entry lets the next one
train it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import yaml

from ganaug.cluster import Claims
from ganaug.config import TrialConfig, keys_with
from ganaug.data import ImageData
from ganaug.files import join, read_bytes, write_bytes

FORMAT = 1  # of an entry's state; a bank entry of another format is retrained, never loaded
STATE_FILE, INFO_FILE = "generator.pt", "generator.yaml"
# The keys that decide a GAN at the end of pretraining, besides the data: the family and every GAN key, its budget,
# the batches and the seed (each declares the role, config.TrialConfig). Inactive ones (another family's) are left out
# of the key (TrialConfig.identity).
GENERATOR_KEYS = keys_with("generator")
POLL_SECONDS = 2.0  # how often a trial waiting for another's entry looks again
HEARTBEAT_SECONDS = 10.0  # how often the trial pretraining an entry says it is alive


class Coordinator(Protocol):
    """Who trains a missing entry: claim returns True to the one trial that should (again, once a claim is stale)."""

    def claim(self, key: str, owner: str) -> bool: ...
    def heartbeat(self, key: str, owner: str) -> None: ...
    def release(self, key: str, owner: str) -> None: ...


class LocalCoordinator(Claims):
    """A coordinator within one process (a direct run, evaluate without a bank actor, threads): Claims' rules, every
    trial of the process sharing the one object."""


@dataclass
class Entry:
    """A bank entry: the GAN's state and the trial RNG's state at the end of pretraining, and its info."""

    key: str
    gan: dict
    rng: torch.Tensor
    info: dict


class GeneratorBank:
    """The generators of one bank folder (a path or s3:// URI), and the coordinator its trials share."""

    def __init__(self, location: str, coordinator: Coordinator | None = None, owner: str = "trial"):
        self.location = str(location)
        self.coordinator = coordinator or LocalCoordinator()
        self.owner = owner
        self._reported: set[str] = set()  # entries already said to be unusable

    # -------------------------------------------------------------------------------------------
    # The key.

    @staticmethod
    def key_inputs(cfg: TrialConfig, pretrain: ImageData, device: torch.device, bf16: bool) -> dict[str, Any]:
        """Everything the key hashes: the generator's keys the policy uses, where and how it computes, the data."""
        identity = cfg.identity()
        return {"format": FORMAT, "keys": {key: identity[key] for key in GENERATOR_KEYS if key in identity},
                "device": device.type, "bf16": bool(bf16), "data": fingerprint(pretrain)}

    @staticmethod
    def key_of(inputs: dict[str, Any]) -> str:
        text = yaml.safe_dump(inputs, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    # -------------------------------------------------------------------------------------------
    # Entries.

    def load(self, key: str) -> Entry | None:
        """The entry of `key`, or None when there is none or it cannot be trusted: a file whose checksum does not
        match (truncated, corrupt) or of another format is reported once, with its path, and treated as missing
        (the trial retrains it and replaces it)."""
        found = self._read(key, STATE_FILE, INFO_FILE)
        return Entry(key, found[0]["gan"], found[0]["generator_rng"], found[1]) if found is not None else None

    def store(self, key: str, inputs: dict, gan_state: dict, rng_state: torch.Tensor, train_seconds: float,
              quality: dict[str, float]) -> None:
        """Write the entry of `key`: generator.pt, then generator.yaml (_write)."""
        # "generator_rng": the file's name for the trial RNG's state, older than the rng's name in the code.
        self._write(key, STATE_FILE, INFO_FILE, {"gan": gan_state, "generator_rng": rng_state.cpu()},
                    {"train_seconds": round(float(train_seconds), 1), "trained_by": self.owner, "inputs": inputs,
                     "quality": {name: float(value) for name, value in quality.items()}})

    def load_pool(self, key: str, per_class: int) -> dict[str, Any] | None:
        """The pool of `per_class` images per class drawn from the generator of entry `key` (trial.sources.draw_pool),
        or None when there is none or it cannot be trusted (as load)."""
        found = self._read(key, *pool_files(per_class))
        return found[0] if found is not None else None

    def store_pool(self, key: str, per_class: int, pool: dict[str, Any]) -> None:
        """Keep a pool beside the generator it was drawn from. Two trials that draw it at once write the same images
        (a pool has its own noise seed), so no claim is needed."""
        self._write(key, *pool_files(per_class), pool, {"per_class": per_class, "images": len(pool["y"]),
                                                        "bytes": int(pool["x"].numel()), "drawn_by": self.owner})

    def _read(self, key: str, state_name: str, info_name: str) -> tuple[dict, dict] | None:
        """(state, info) of the files `state_name` and `info_name` of entry `key` once info's checksum and format
        vouch for the state; None when either is missing or untrusted (reported once, with its path)."""
        info_bytes = read_bytes(join(self.location, key, info_name))
        state_bytes = read_bytes(join(self.location, key, state_name))
        if info_bytes is None or state_bytes is None:
            return None
        where = join(self.location, key, state_name)
        try:
            info = yaml.safe_load(info_bytes)
            if not isinstance(info, dict) or info.get("sha256") != hashlib.sha256(state_bytes).hexdigest():
                raise ValueError(f"its checksum does not match {info_name}'s (truncated or corrupt)")
            if info.get("format") != FORMAT:
                raise ValueError(f"format {info.get('format')!r}, this ganaug reads {FORMAT}")
            state = torch.load(io.BytesIO(state_bytes), map_location="cpu", weights_only=True)
        except Exception as error:  # any unreadable entry is retrained; its reason is said once
            if where not in self._reported:
                self._reported.add(where)
                print(f"[ganaug] generator bank: {where}: not used ({str(error).splitlines()[0][:200]}); it is "
                      f"{'retrained' if state_name == STATE_FILE else 'drawn again'} and replaced", file=sys.stderr,
                      flush=True)
            return None
        return state, info

    def _write(self, key: str, state_name: str, info_name: str, state: dict, info: dict[str, Any]) -> None:
        """Write `state` (torch.save) to `state_name` first, then `info` with its checksum to `info_name`: a reader
        trusts a state only once its info names it."""
        buffer = io.BytesIO()
        torch.save(state, buffer)
        state_bytes = buffer.getvalue()
        write_bytes(join(self.location, key, state_name), state_bytes)
        info = {"format": FORMAT, "key": key, "sha256": hashlib.sha256(state_bytes).hexdigest(),
                "created": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), **info}
        write_bytes(join(self.location, key, info_name), yaml.safe_dump(info, sort_keys=False).encode())

    def record_quality(self, key: str, quality: dict[str, float]) -> None:
        """Add figures measured on the entry's generator unchanged (a frozen trial's cas, cas_ratio and their shot
        groups') to its info, unless it has them already: the first trial to measure them writes them."""
        raw = read_bytes(join(self.location, key, INFO_FILE))
        info = yaml.safe_load(raw) if raw else None
        if not isinstance(info, dict) or all(name in info.get("quality", {}) for name in quality):
            return
        info["quality"] = {**quality, **info.get("quality", {})}
        write_bytes(join(self.location, key, INFO_FILE), yaml.safe_dump(info, sort_keys=False).encode())

    def acquire(self, key: str) -> Entry | None:
        """The entry of `key` when there is one (possibly after waiting for the trial training it); None when this
        trial holds the claim and must train it. A waiting trial sleeps: training the same generator itself would
        cost the same wall time and twice the CPU, and its CPU share is the trial's own anyway."""
        waited = False
        while True:
            entry = self.load(key)
            if entry is not None:
                return entry
            if self.coordinator.claim(key, self.owner):
                # The trainer stores its entry before it releases the claim, so an entry stored between the look
                # above and this claim is there now: load it rather than train it a second time.
                entry = self.load(key)
                if entry is None:
                    return None
                self.coordinator.release(key, self.owner)
                return entry
            if not waited:
                print(f"[ganaug] generator bank: waiting for another trial to pretrain generator {key}",
                      file=sys.stderr, flush=True)
                waited = True
            time.sleep(POLL_SECONDS)

    @contextlib.contextmanager
    def pretraining(self, key: str) -> Iterator[Entry | None]:
        """The block in which a trial gets the generator of `key`: yields its entry (acquire: possibly after waiting
        for the trial that trains it), or None when this trial holds the claim and must train and `store` it. While
        the block runs, a timer thread beats the claim's heartbeat every HEARTBEAT_SECONDS; however the block ends
        (stored, diverged, an exception), the claim is released, so a waiting trial takes the key over at its next
        look rather than after the staleness timeout."""
        entry = self.acquire(key)
        if entry is not None:
            yield entry
            return
        stop = threading.Event()
        beating = threading.Thread(target=self._beat, args=(key, stop), daemon=True, name=f"bank-heartbeat-{key}")
        beating.start()
        try:
            yield None
        finally:
            stop.set()
            beating.join()
            self.coordinator.release(key, self.owner)

    def _beat(self, key: str, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            self.coordinator.heartbeat(key, self.owner)

    def record_final(self, key: str, metrics: dict[str, Any]) -> None:
        """A frozen generator is the entry's own at the end of a trial: its CAS (whole and by shot group) describes
        the entry, and joins its info (record_quality)."""
        cas = {name: value for name, value in metrics.items()
               if name.startswith("cas") and isinstance(value, float) and not math.isnan(value)}
        if cas:
            self.record_quality(key, cas)


def pool_files(per_class: int) -> tuple[str, str]:
    """The files of a pool of `per_class` images per class, in its generator's entry folder."""
    return f"pool_{per_class}.pt", f"pool_{per_class}.yaml"


def fingerprint(data: ImageData) -> str:
    """A hash of the images, labels and attributes of a training split, and of its classes."""
    digest = hashlib.sha256()
    for tensor in (data.train_x, data.train_y, data.train_attributes):
        digest.update(str((tuple(tensor.shape), str(tensor.dtype))).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update("\n".join(data.spec.class_names).encode())
    return digest.hexdigest()[:24]
