"""Phase one of a trial: the generator. Its GAN is built on a stream of its own, then pretrained for
gan_pretrain_epochs GAN-only passes over the search's training split (reported as `epoch: 0` with
`gan_pretrain_epoch: N`; the classifier waits), or, with a generator bank, loaded from the bank's entry of the same
key instead. The bank is used here and nowhere else in the loop.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import torch

from ganaug.config import TrialConfig
from ganaug.data import DataSpec, ImageData, batch_indices, to_float
from ganaug.gan import build_gan
from ganaug.trial.bank import Entry, GeneratorBank
from ganaug.trial.measure import Diverged, PassMetrics, diverged, finite, gan_losses, timing
from ganaug.trial.reporter import report_pass
from ganaug.trial.runtime import Runtime
from ganaug.trial.state import TrialState
from ganaug.trial.steps import RunningSums, gan_updates, real_fraction


def seeded_gan(cfg: TrialConfig, spec: DataSpec, data: ImageData, runtime: Runtime):
    """The trial's GAN (cfg.gan's family, FAMILIES), its initial weights drawn from a stream of its own seeded with
    cfg.seed: they depend on its keys and the seed only, not on what was built before it (the bank's key says so),
    and torch's global RNG is left as it was."""
    device = runtime.device
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        return build_gan(cfg, spec, device, data)


def pretrain_generator(
    cfg: TrialConfig,                   # The policy: its GAN keys, batch_size, seed, gan_pretrain_epochs.
    state: TrialState,                  # The trial's networks and progress; its GAN and RNG are pretrained here.
    data: ImageData,                    # The split pretraining passes over (ImageData.pretraining(): the search's).
    runtime: Runtime,                   # Device, RNG, autocast.
    measure: PassMetrics,               # The untrained classifier's scores and the generator's quality, per pass.
    report: Callable[..., None],        # report(metrics, checkpoint=dir | None, images=dict | None) once per pass.
    bank: GeneratorBank | None = None,  # Where pretrained generators are shared; None = this trial pretrains.
) -> dict[str, Any]:
    """Bring state.gan to the end of pretraining (from state.pretrain_epoch, where a resumed trial stopped) and return
    what every classifier epoch reports of the bank's entry: generator_key, generator_reused (1: loaded, so this
    trial's gan_pretrain_seconds is 0) and generator_train_seconds (its own pretraining time); {} without a bank.
    Raises Diverged (its metrics reported) when a pass's losses are not finite."""
    gan = state.gan
    inputs = GeneratorBank.key_inputs(cfg, data, runtime.device, runtime.bf16) if bank is not None else {}
    key = GeneratorBank.key_of(inputs) if bank is not None else ""
    if state.pretrain_epoch >= state.pretrain_epochs:  # resumed after pretraining: the checkpoint holds its GAN
        if bank is not None and state.generator_bank.get("key") != key:  # trained before the bank existed
            state.generator_bank = {"key": key, "reused": 0, "train_seconds": state.pretrain_seconds}
        return bank_row(state) if bank is not None else {}

    with bank.pretraining(key) if bank is not None else contextlib.nullcontext() as entry:
        if entry is not None:
            load_entry(entry, state)
            return bank_row(state)
        if bank is not None:  # this trial trains the entry (from its checkpoint's pass, if it resumed)
            state.generator_bank = {"key": key, "reused": 0, "train_seconds": 0.0}
        untrained = measure.untrained()  # the classifier waits: every pass repeats its untrained scores
        for number in range(state.pretrain_epoch + 1, state.pretrain_epochs + 1):
            # One pass: per real batch, gan_steps_per_batch GAN updates; losses summed on the device.
            started, sums = time.perf_counter(), RunningSums(runtime.device)
            batches = batch_indices(len(data.train_y), cfg.batch_size, runtime.rng, runtime.device)
            for index in batches:
                x, y = to_float(data.train_x[index]), data.train_y[index]
                gan_updates(gan, data, index, x, y, real_fraction(cfg, number), runtime, sums)
            totals, seconds = sums.totals(), time.perf_counter() - started
            if not finite(totals):
                raise Diverged(diverged(0, {"gan_pretrain_epoch": number}, seconds, len(data.train_y)))

            # Metrics: the untrained classifier's, the GAN's losses per update, the generator's quality.
            state.pretrain_seconds += seconds
            metrics = {"epoch": 0, "gan_pretrain_epoch": number, **untrained, **timing(seconds, len(data.train_y)),
                       **gan_losses(totals, sums.gan_keys, len(batches) * cfg.gan_steps_per_batch),
                       **measure.sample_quality(gan, pretraining=True)}
            last = number == state.pretrain_epochs
            if last and bank is not None:  # the entry, before the report that ends the phase
                quality: dict[str, float] = {name: metrics[name] for name in ("synthetic_diversity", "frechet_distance")
                           if name in metrics}
                bank.store(key, inputs, gan.state_dict(), runtime.rng.get_state(), state.pretrain_seconds, quality)
                state.generator_bank["train_seconds"] = state.pretrain_seconds
            state.pretrain_epoch = number
            report_pass(report, state, metrics, number, last, source=gan)
    return bank_row(state) if bank is not None else {}


def load_entry(entry: Entry, state: TrialState) -> None:
    """Put a bank entry's GAN and RNG state into the trial, which then stands where training it would have left it."""
    state.gan.load_state_dict(entry.gan)
    state.rng.set_state(entry.rng.to(state.rng.get_state().device))
    state.pretrain_epoch, state.pretrain_seconds = state.pretrain_epochs, 0.0
    state.generator_bank = {"key": entry.key, "reused": 1, "train_seconds": entry.info.get("train_seconds", 0.0)}


def bank_row(state: TrialState) -> dict[str, Any]:
    """What a classifier epoch reports of the trial's bank entry."""
    info = state.generator_bank
    return {"generator_key": info["key"], "generator_reused": info["reused"],
            "generator_train_seconds": info["train_seconds"]}
