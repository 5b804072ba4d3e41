"""One stream per trial: every epoch's scalars and sample grids to TensorBoard, a jsonl, and a sink (Tune).

Tune already writes its own `progress.csv`, `result.json` and a TensorBoard file (tags `ray/tune/<metric>`)
into each trial folder; `TrialReporter` adds what Tune does not: the generator's sample grids (rows =
classes) as TensorBoard images and PNG files, under the same trial folder, so `tensorboard --logdir
<experiment>` shows curves and samples side by side.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ganaug.data import to_uint8
from ganaug.files import atomic_write
from ganaug.trial.state import CHECKPOINT_FILE, TrialState, save_checkpoint

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

LOG_FILE = "metrics.jsonl"


class TrialReporter:
    """Callable with trial.run's report signature: logs locally, then hands metrics to `sink`."""

    def __init__(self, log_dir: str | Path, sink: Callable[..., None] | None = None):
        self.log_dir = Path(log_dir)
        self.sink = sink
        self._writer: SummaryWriter | None = None  # opened by the first grid

    def __call__(self, metrics: dict, checkpoint: str | None = None, images: dict | None = None) -> None:
        step = int(metrics.get("epoch", 0))
        # GAN pretraining passes all have classifier epoch 0: their grids get their own tag and files, by pass.
        phase = "epoch"
        if "gan_pretrain_epoch" in metrics:
            phase, step = "pretrain", int(metrics["gan_pretrain_epoch"])
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if images:
            writer = self.writer()
            for name, grid in images.items():
                tag = name if phase == "epoch" else f"{name}_pretrain"
                writer.add_image(tag, grid, global_step=step)  # grid: uint8 [C, H, W]
                save_png(grid, self.log_dir / "samples" / f"{name}_{phase}{step:04d}.png")
            writer.flush()
        with open(self.log_dir / LOG_FILE, "a") as handle:
            handle.write(json.dumps({k: _jsonable(v) for k, v in metrics.items()}) + "\n")
        if checkpoint is not None:
            # The checkpoint carries the log up to its epoch, so a run restored from it continues this log.
            shutil.copyfile(self.log_dir / LOG_FILE, Path(checkpoint) / LOG_FILE)
        if self.sink is not None:
            self.sink(metrics, checkpoint=checkpoint)

    def restore(self, checkpoint_dir: str | Path) -> None:
        """Continue the log of the run that wrote `checkpoint_dir`: its epochs up to that checkpoint, once.

        A restored trial may run in a fresh folder (a new Ray session after a driver crash, another node),
        where the log would otherwise start at the restored epoch; or in its old folder, where the epochs
        after the checkpoint would otherwise appear twice.
        """
        saved = Path(checkpoint_dir) / LOG_FILE
        if not saved.is_file():  # a checkpoint from before logs travelled with checkpoints
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.log_dir / LOG_FILE, saved.read_bytes())

    def writer(self) -> SummaryWriter:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # A suffix keeps this file apart from Tune's own events file in the same folder.
            self._writer = SummaryWriter(str(self.log_dir), filename_suffix=".ganaug")
        return self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def report_pass(report: Callable[..., None], state: TrialState, metrics: dict, number: int, last: bool,
                source=None) -> None:
    """Report a finished pass's metrics (state.metrics), with a sample grid of `source` (rows = classes; the trial's
    synthetic source, or its GAN while it pretrains) every cfg.sample_every passes and a checkpoint every
    cfg.checkpoint_every passes. `number` counts the pass within its phase (GAN pretraining passes count on their
    own); `last`, the phase's last pass, always writes both: the last pretraining pass holds the GAN the classifier
    starts with."""
    cfg = state.cfg
    state.metrics = metrics
    images = {"samples": sample_grid(source, source.num_classes, cfg.seed + 12345)} \
        if source is not None and (last or number % cfg.sample_every == 0) else None
    if last or number % cfg.checkpoint_every == 0:
        with tempfile.TemporaryDirectory(prefix="ganaug_ckpt_") as directory:
            save_checkpoint(Path(directory) / CHECKPOINT_FILE, state.state_dict())
            report(metrics, checkpoint=directory, images=images)
    else:
        report(metrics, images=images)


def save_png(grid: torch.Tensor, path: str | Path) -> None:
    """Write a uint8 [C, H, W] image tensor as PNG."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = grid.permute(1, 2, 0).cpu().numpy()
    Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(path)


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


@torch.no_grad()
def sample_grid(source, num_classes: int, seed: int) -> torch.Tensor:
    """A synthetic source's sample grid (a generator's, a pool's, ...) as uint8 [3, H, W] on the CPU: one row per
    class (10 images each, 8 with more than 20 classes), from fixed noise (`seed`), so that a trial's grids compare
    from pass to pass."""
    labels = torch.arange(num_classes, device=source.device).repeat_interleave(8 if num_classes > 20 else 10)
    samples = source.sample(labels, torch.Generator(source.device).manual_seed(seed))
    return to_uint8(make_grid(samples.float(), nrow=len(labels) // num_classes, padding=1)).cpu()


def make_grid(images: torch.Tensor, nrow: int, padding: int = 1) -> torch.Tensor:
    """torchvision.utils.make_grid's layout (rows of nrow images, zero padding, grayscale shown as RGB).

    Here rather than imported: importing torchvision costs seconds in every fresh trial process.
    """
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    n, channels, height, width = images.shape
    columns = min(nrow, n)
    rows = math.ceil(n / columns)
    cells = images.new_zeros(rows * columns, channels, height + padding, width + padding)
    cells[:n, :, padding:, padding:] = images
    grid = cells.view(rows, columns, channels, height + padding, width + padding).permute(2, 0, 3, 1, 4)
    grid = grid.reshape(channels, rows * (height + padding), columns * (width + padding))
    return F.pad(grid, (0, padding, 0, padding))
