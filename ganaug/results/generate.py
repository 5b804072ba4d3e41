"""`python -m ganaug.generate RESULTS_DIR --per-class N --out DIR`: export a searched generator's images.

Samples N images per class from the generator in a trial's latest checkpoint (unless --trial, the search's best
trial with a generator: the one `ganaug evaluate` retrains as best_gan) and writes them with the class they were
conditioned on as their label:

    python -m ganaug.generate ~/ganaug_results/quickstart --per-class 100 --out synthetic/
    python -m ganaug.generate ~/ganaug_results/quickstart --per-class 100 --out synthetic.npz --format npz

png: the `imagefolder` dataset layout, DIR/train/<class>/00000.png (synthetic) and DIR/test/<class>/ (the
experiment's REAL test images), so `data: {name: imagefolder, root: DIR}` trains on synthetic images and
tests on real ones. npz: one compressed file with images (uint8 N x C x H x W), labels and class_names.
Labels are always the conditioning class: lsro's uniform targets and all_in_one's extra class are how the
search's classifier was trained on these images, not properties of the images.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ganaug.config import TrialConfig, adds_synthetic, trains_gan
from ganaug.errors import EXIT_BAD_INPUT as EXIT_BAD_INPUT  # re-exported: the exit code of this command on bad input
from ganaug.errors import InputError, exit_code
from ganaug.results.experiment import Experiment, ResultsError, load_experiment

NPZ_NAME = "synthetic.npz"


class GenerateError(InputError):
    """The export cannot run as asked; the message names the trial, file or option."""


def select_trial(experiment: Experiment, trial_id: str | None = None) -> pd.Series:
    """The trial to export from: `trial_id` (its id or folder name), else the best trial with a generator
    (Experiment.best_gan)."""
    trials = experiment.trials
    with_gan = trials[[trains_gan(experiment.config_of(row)) for _, row in trials.iterrows()]]
    if trial_id is None:
        try:
            trial = experiment.best_gan()
        except ResultsError as error:
            # A GAN trial that errored or still runs may have left a checkpoint to export all the same.
            hint = f"; pass --trial with one that did: {_trial_list(experiment, with_gan)}" if len(with_gan) else ""
            raise GenerateError(f"{error}{hint}") from None
    else:
        match = trials[(trials["trial_id"] == trial_id) | (trials["path"].map(lambda p: Path(p).name) == trial_id)]
        if match.empty:
            raise GenerateError(f"--trial {trial_id}: no such trial in {experiment.path}; valid: "
                                f"{_trial_list(experiment, trials)}")
        trial = match.iloc[0]
    config = experiment.config_of(trial)
    if not trains_gan(config):
        why = f"synthetic_source {config['synthetic_source']!r} (images it did not generate)" \
            if adds_synthetic(config) else "synthetic_ratio 0"
        hint = (f"pass --trial with one that trained a GAN: {_trial_list(experiment, with_gan)}" if len(with_gan)
                else "no trial of this experiment trained a GAN")
        raise GenerateError(f"trial {trial['trial_id']} has {why}: it trained no generator; {hint}")
    return trial


def _standing(experiment: Experiment, trial: pd.Series) -> str:
    """"complete, val_acc=0.8125" or "pruned at epoch 3, val_acc=0.7500": how far the trial got, and its score."""
    where = f"pruned at epoch {trial['epochs']}" if trial["status"] == "pruned" else str(trial["status"])
    return f"{where}, {experiment.metric}={trial[f'last_{experiment.metric}']:.4f}"


def _trial_list(experiment: Experiment, trials: pd.DataFrame) -> str:
    key = f"last_{experiment.metric}"
    return ", ".join(f"{r['trial_id']} ({r['status']}, {experiment.metric}={r[key]:.4g})"
                     for _, r in experiment.ranked(trials, unscored=True).head(10).iterrows())


def load_generator(experiment: Experiment, trial: pd.Series, spec, device, data=None):
    """The trial's GAN restored from its newest readable checkpoint: (gan, cfg, checkpoint folder, epoch).

    data: the experiment's ImageData, which families that start from training images need (gan: translation
    translates them, gan: ali samples near their codes); None = without (translation then refuses).
    """
    from ganaug.gan import build_gan  # lazy: torch loads only once the input is checked
    from ganaug.trial import CheckpointError, load_checkpoint  # lazy: torch loads only once the input is checked

    cfg = TrialConfig.from_dict(experiment.config_of(trial), where=f"trial {trial['trial_id']}")
    checkpoints = experiment.checkpoints_of(trial)
    if not checkpoints:
        raise GenerateError(f"trial {trial['trial_id']} has no checkpoint_* folder in {trial['path']} (stopped "
                            f"before its first checkpoint?); pass --trial with another trial")
    problems = []
    for directory in checkpoints:  # newest first; fall back when one is truncated or corrupt
        try:
            state = load_checkpoint(directory, cfg)
        except CheckpointError as error:
            problems.append(str(error))
            continue
        if not state.get("gan"):
            problems.append(f"{directory}: checkpoint holds no GAN state")
            continue
        if problems:
            print(f"warning: {'; '.join(problems)}; using the older {directory.name}", file=sys.stderr)
        gan = build_gan(cfg, spec, device, data)
        gan.load_state_dict(state["gan"])
        return gan, cfg, directory, int(state["epoch"])
    raise GenerateError(f"trial {trial['trial_id']}: no usable checkpoint ({'; '.join(problems)})")


def sample_per_class(gan, num_classes: int, per_class: int, seed: int = 0,
                     batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """per_class images of every class as uint8 [N, C, H, W] sorted by class, and their int64 labels.

    Batches mix the classes in random order, as in training: the generator normalises with batch
    statistics, so single-class batches would shift every image of that class.
    """
    import torch

    from ganaug.data import to_uint8  # lazy: torch loads only once the input is checked

    rng = torch.Generator(gan.device).manual_seed(seed)
    labels = torch.arange(num_classes, device=gan.device).repeat_interleave(per_class)
    labels = labels[torch.randperm(len(labels), generator=rng, device=gan.device)]
    # Near-equal chunks, so no batch is a lone image (which BatchNorm would normalise differently).
    chunks = labels.tensor_split(max(1, -(-len(labels) // batch_size)))
    images = torch.cat([gan.sample(chunk, rng) for chunk in chunks])
    images = to_uint8(images)
    order = torch.argsort(labels, stable=True)
    return images[order].cpu().numpy(), labels[order].cpu().numpy().astype(np.int64)


def folder_names(class_names) -> list[str]:
    """Class names safe as folder names ("T-shirt/top" -> "T-shirt_top"), unique, in class order."""
    names = []
    for index, name in enumerate(class_names):
        safe = re.sub(r"[/\\\x00]", "_", str(name)).strip()
        if safe in ("", ".", "..") or safe.startswith("."):  # hidden folders are skipped by imagefolder
            safe = f"class_{index}_{safe.lstrip('.')}".rstrip("_")
        while safe in names:
            safe = f"{safe}_{index}"
        names.append(safe)
    return names


def write_image_folder(out: Path, split: str, images: np.ndarray, labels: np.ndarray, class_names) -> int:
    """Write out/split/<class>/NNNNN.png (numbered within each class); returns the number of files."""
    from PIL import Image

    folders = folder_names(class_names)
    digits = max(5, len(str(max(np.bincount(labels, minlength=len(folders)).max() - 1, 0))))
    counters = [0] * len(folders)
    for folder in folders:
        (out / split / folder).mkdir(parents=True, exist_ok=True)
    for image, label in zip(images, labels):
        array = image.transpose(1, 2, 0)
        Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(
            out / split / folders[label] / f"{counters[label]:0{digits}d}.png")
        counters[label] += 1
    return len(images)


# ----------------------------------------------------------------------------------------------
# Command line.

def parse_args(argv: list[str] | None = None, prog: str = "python -m ganaug.generate") -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="experiment folder written by ganaug.tune: storage/name, local or "
                                        "s3://bucket/prefix/name")
    parser.add_argument("--per-class", type=int, required=True, help="synthetic images per class")
    parser.add_argument("--out", required=True, help="output folder (png), or .npz file / folder (npz)")
    parser.add_argument("--format", choices=("png", "npz"), default="png", help="png image folder (default) or npz")
    parser.add_argument("--trial", help="trial id (or trial folder name) to export from (default: the best trial "
                                        "with a generator, evaluate's best_gan)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generator's noise (default 0)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the generator runs (default: CUDA when available)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, prog: str = "python -m ganaug.generate") -> int:
    args = parse_args(argv, prog)
    return exit_code(lambda: _export(args))  # a corrupt checkpoint of the chosen trial (CheckpointError) included


def _export(args: argparse.Namespace) -> int:
    import torch

    from ganaug.data import load_data, pick_device  # lazy: torch loads only once the input is checked

    if args.per_class < 1:
        raise GenerateError(f"--per-class {args.per_class}: valid: an integer >= 1")
    out = Path(args.out).expanduser()
    if args.format == "npz":
        target = out if out.suffix == ".npz" else out / NPZ_NAME
        if target.exists():
            raise GenerateError(f"--out {target} exists already; remove it or choose another path")
    elif any((out / split).exists() for split in ("train", "test")):
        raise GenerateError(f"--out {out} already holds train/ or test/; remove them or choose an empty folder")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise GenerateError("--device cuda: no CUDA device here; valid: auto or cpu")

    experiment = load_experiment(args.results)
    trial = select_trial(experiment, args.trial)
    chosen = "given by --trial" if args.trial is not None else "the best trial with a generator"
    print(f"Exporting trial {trial['trial_id']}, {chosen}: {_standing(experiment, trial)}", flush=True)
    data = load_data(experiment.meta["data"])
    spec = data.spec
    device = pick_device(args.device)
    gan, cfg, checkpoint, epoch = load_generator(experiment, trial, spec, device, data)
    images, labels = sample_per_class(gan, spec.num_classes, args.per_class, seed=args.seed)
    source = f"trial {trial['trial_id']} ({trial['status']}, epoch {epoch}, labeling {cfg.labeling}, {checkpoint})"

    if args.format == "npz":
        target.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(target, images=images, labels=labels, class_names=np.array(spec.class_names),
                            trial_id=np.array(str(trial["trial_id"])), labeling=np.array(cfg.labeling),
                            checkpoint=np.array(str(checkpoint)))
        print(f"Wrote {len(images)} synthetic images ({args.per_class} per class) of {source} to {target}")
    else:
        write_image_folder(out, "train", images, labels, spec.class_names)
        write_image_folder(out, "test", data.test_x.numpy(), data.test_y.numpy(), spec.class_names)
        print(f"Wrote {len(images)} synthetic images ({args.per_class} per class) of {source} to {out / 'train'}, "
              f"and the experiment's {len(data.test_y)} real test images to {out / 'test'}.\n"
              f"Train on synthetic, test on real: data: {{name: imagefolder, root: {out}}}")
    if cfg.labeling != "pseudo":
        print(f"note: the trial used {cfg.labeling} labels: its classifier was trained on these images with "
              f"{'uniform targets' if cfg.labeling == 'lsro' else 'an extra synthetic class'}; they are exported "
              f"under the class they were conditioned on.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
