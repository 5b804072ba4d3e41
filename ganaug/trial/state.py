"""A trial's state and its checkpoints: TrialState (what a checkpoint holds, and its one definition), and the file
it is written to, trial_state.pt: written atomically, read with weights_only=True and checked against the config
that resumes from it."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ganaug.config import KWARGS_PREFIX, TrialConfig, keys_with
from ganaug.errors import InputError
from ganaug.files import atomic_write

CHECKPOINT_FILE = "trial_state.pt"
# Keys that may differ between a checkpoint and the run resuming from it: they change where or how long the trial
# runs, not what it learns (the run keys, config.TrialConfig).
RESUMABLE_DIFFERENCES = set(keys_with("run"))


class CheckpointError(InputError):
    """A checkpoint is unreadable, truncated, or belongs to a different configuration.

    An InputError: a checkpoint a user passes (to resume, to generate from) is input they can fix; a Tune trial
    catches it to fall back to an older checkpoint."""


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write `state` to `path` atomically (temp file, fsync, rename): a crash never leaves half a file, and a
    failed save leaves the previous checkpoint."""
    atomic_write(path, lambda file: torch.save(state, file))


def load_checkpoint(directory: str | Path, cfg: TrialConfig | None = None) -> dict:
    """Load a checkpoint directory; CheckpointError names the file when it is corrupt or does not match cfg."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file is missing")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, pickle payload refused by weights_only, ...
        text = str(error).strip()
        if "WeightsUnpickler error:" in text:  # torch's first lines would suggest weights_only=False: never
            text = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0].split(". ")[0]
            if "Unsupported global" in text:  # a pickled object or call: not something ganaug writes
                raise CheckpointError(f"{path}: refused: it holds Python objects beyond tensors ({text}); "
                                      "a ganaug checkpoint never does, so it was not written by ganaug") from None
        first_line = text.splitlines()[0] if text else type(error).__name__
        raise CheckpointError(f"{path}: not a readable ganaug checkpoint, truncated or corrupt "
                              f"({first_line[:160]})") from None
    if not isinstance(state, dict) or not {"config", "epoch", "classifier"} <= set(state):
        raise CheckpointError(f"{path}: not a ganaug checkpoint (missing config/epoch/classifier)")
    if cfg is not None:
        saved, current = state["config"], cfg.to_dict()
        # A key missing from an older checkpoint's config had its default then; a classifier_kwargs entry on one
        # side only builds a different model, so those keys must match both ways.
        kwargs_keys, absent = {k for k in (*saved, *current) if str(k).startswith(KWARGS_PREFIX)}, object()
        differences = sorted(k for k in {*current, *kwargs_keys} if k not in RESUMABLE_DIFFERENCES and
                             saved.get(k, absent if k in kwargs_keys else current[k]) != current.get(k, absent))
        if differences:
            value = lambda config, k: repr(config[k]) if k in config else "absent"
            shown = ", ".join(f"{k}: checkpoint {value(saved, k)} vs config {value(current, k)}"
                              for k in differences[:3])
            raise CheckpointError(f"{path}: checkpoint is from a different configuration ({shown})")
    return state


class TrialState:
    """What a checkpoint holds of a running trial, defined once: its networks and optimizers, the RNG states, and
    where it is (GAN pretraining passes and classifier epochs done, pretraining's wall time, the last pass's
    metrics). state_dict() is the checkpoint's content (written by save_checkpoint, beside the config it belongs
    to); load_state_dict() puts a trial back where that checkpoint left it."""

    def __init__(self, cfg: TrialConfig, classifier: nn.Module, optimizer: torch.optim.Optimizer, gan,
                 teacher, rng: torch.Generator):
        self.cfg, self.classifier, self.optimizer, self.gan, self.teacher = cfg, classifier, optimizer, gan, teacher
        self.rng = rng
        # Pretraining trains a GAN; the no-GAN baseline has none to pretrain.
        self.pretrain_epochs = cfg.gan_pretrain_epochs if gan is not None else 0
        self.pretrain_epoch = 0         # GAN pretraining passes done; the classifier starts after all of them
        self.epoch = 0                  # classifier epochs done
        self.pretrain_seconds = 0.0     # wall time of the pretraining passes
        self.metrics: dict = {}         # the last pass's
        self.generator_bank: dict = {}  # the bank entry of its pretrained GAN: key, reused, train_seconds

    def state_dict(self) -> dict:
        state = {
            "config": self.cfg.to_dict(),
            "epoch": self.epoch,
            "pretrain_epoch": self.pretrain_epoch,
            "gan_pretrain_seconds": self.pretrain_seconds,
            "metrics": self.metrics,
            "classifier": self.classifier.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "gan": self.gan.state_dict() if self.gan is not None else {},
            "teacher": self.teacher.state_dict() if self.teacher is not None else {},
            "torch_rng": torch.get_rng_state(),
            "generator_rng": self.rng.get_state(),  # the trial's RNG (the key predates its name)
            "generator_bank": self.generator_bank,
        }
        if self.rng.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.classifier.load_state_dict(state["classifier"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.gan is not None:
            self.gan.load_state_dict(state["gan"])
        if self.teacher is not None:
            self.teacher.load_state_dict(state["teacher"])
        torch.set_rng_state(state["torch_rng"])
        self.rng.set_state(state["generator_rng"].to(self.rng.get_state().device))
        if self.rng.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"])
        self.epoch, self.metrics = state["epoch"], state["metrics"]
        # Checkpoints from before GAN pretraining existed lack these keys: their classifier had already started.
        self.pretrain_epoch = state.get("pretrain_epoch", self.pretrain_epochs)
        self.pretrain_seconds = state.get("gan_pretrain_seconds", 0.0)
        self.generator_bank = state.get("generator_bank", {})
