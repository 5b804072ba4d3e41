"""Every malformed input is refused the same way: exit code 2 (command line) or one typed error (API), with
a one-line message that names the key or file, no traceback, and nothing written anywhere.

One parametrised test walks all the cases. Each case builds its inputs under its own tmp folder (the
search space's storage is tmp/results), snapshots the folder, runs the entry point in-process (two run as
real subprocesses, to prove no traceback reaches a user's terminal), and compares the folder afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# A valid, tiny search space; each case below breaks one thing in it.
SPACE = """\
experiment:
  name: bad
  storage: {storage}
  num_samples: 2
  max_concurrent: 2
  resources: {{cpu: 1, gpu: 0}}
  max_failures: 1
data: {{name: digits, samples_per_class: 30}}
metric: {{name: val_acc, mode: max}}
scheduler: {{max_epochs: 2, grace_period: 1, reduction_factor: 2}}
fixed:
  classifier: mlp
  batch_size: 64
search:
  classifier_lr: {{loguniform: [1.0e-4, 1.0e-2]}}
  labeling: {{choice: [pseudo, lsro]}}
"""
# A valid policy file for `python -m ganaug.pipeline` (the shape of a search's best_policy.yaml).
POLICY = {"config": {"epochs": 1, "classifier_width": 0.25, "batch_size": 64, "cas_epochs": 0},
          "data": {"name": "digits", "samples_per_class": 30}}


class Payload:
    """Unpickling this would call open(path, "w"): proof of code execution if the file ever appears."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@dataclass
class Case:
    entry: str                          # tune | pipeline | evaluate | generate: main() in-process;
                                        # "<one of them> subprocess"; api: a thunk that must raise
    build: Callable[[Path], object]     # makes the inputs under tmp; returns argv (CLI) or a thunk (API)
    expect: str                         # what the one-line message must name (key or file), case-insensitive
    error: str | None = None            # API: the exception class name expected


# ----------------------------------------------------------------------------------------------
# Builders.

def space(*edits_and_args, name: str = "bad.yaml"):
    """A builder writing the valid SPACE, edited, into tmp/<name>; argv = [file, *string args]."""
    edits = [e for e in edits_and_args if callable(e)]
    extra = [a for a in edits_and_args if isinstance(a, str)]

    def build(tmp: Path) -> list[str]:
        text = SPACE.format(storage=tmp / "results")
        for edit in edits:
            text = edit(text)
        path = tmp / name
        path.write_text(text.replace("{tmp}", str(tmp)))
        return [str(path), *(arg.replace("{tmp}", str(tmp)) for arg in extra)]
    return build


def fixed(line: str) -> Callable[[str], str]:
    """Add `line` to the fixed section."""
    return replace("  batch_size: 64\n", f"  batch_size: 64\n  {line}\n")


def searched(line: str) -> Callable[[str], str]:
    """Add `line` at the end of the search section (the last one in SPACE)."""
    return lambda text: f"{text}  {line}\n"


def replace(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, f"case edits {old!r}, which the base space lacks"
        return text.replace(old, new, 1)
    return edit


def policy(change: Callable[[dict], object] | None = None, *extra: str, text: str | None = None):
    """A builder writing POLICY (changed) or raw text into tmp/policy.yaml; argv = [file, *extra]."""
    def build(tmp: Path) -> list[str]:
        path = tmp / "policy.yaml"
        if text is not None:
            path.write_text(text.replace("{tmp}", str(tmp)))
        else:
            values = yaml.safe_load(yaml.safe_dump(POLICY))
            if change is not None:
                change(values)
            path.write_text(yaml.safe_dump(values))
        return [str(path), *extra]
    return build


def folder(files: dict[str, str] | None = None, *extra: str):
    """A builder making tmp/experiment holding `files`; argv = [folder, *extra]."""
    def build(tmp: Path) -> list[str]:
        path = tmp / "experiment"
        path.mkdir()
        for name, content in (files or {}).items():
            (path / name).write_text(content)
        return [str(path), *(arg.replace("{tmp}", str(tmp)) for arg in extra)]
    return build


def checkpoint(state_change: Callable[[dict, Path], object] | None = None, *, mangle: str | None = None,
               load: str = "load_checkpoint"):
    """A builder writing a checkpoint folder tmp/ckpt, then a thunk that reads it back through the API."""
    def build(tmp: Path) -> Callable[[], object]:
        import torch

        from ganaug.config import TrialConfig
        from ganaug.trial.loop import run
        from ganaug.trial.state import CHECKPOINT_FILE, load_checkpoint, save_checkpoint

        directory = tmp / "ckpt"
        directory.mkdir()
        state = {"config": TrialConfig().to_dict(), "epoch": 1, "metrics": {}, "classifier": {}}
        if state_change is not None:
            state_change(state, tmp)
        file = directory / CHECKPOINT_FILE
        if "payload" in state:
            torch.save(state, file)  # torch.save pickles anything; save_checkpoint's callers never do this
        elif mangle != "missing":
            save_checkpoint(file, state)
        if mangle == "truncated":
            file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
        if load == "run":
            from ganaug.data.splits import load_data

            data = load_data({"name": "digits", "samples_per_class": 30})
            quiet = lambda *args, **kwargs: None
            return lambda: run(TrialConfig(epochs=1, cas_epochs=0), data, quiet, checkpoint=directory)
        return lambda: load_checkpoint(directory, TrialConfig())
    return build


def synthetic_images(tmp: Path, size: int = 8, mode: str = "L", classes: tuple[str, ...] = ("0", "1"),
                     count: int = 2) -> Path:
    """tmp/synth: `count` images per class subfolder (classes: () = none, () with count = flat), size x size."""
    from PIL import Image

    root = tmp / "synth"
    root.mkdir()
    for name in classes:
        (root / name).mkdir()
        for k in range(count):
            Image.new(mode, (size, size)).save(root / name / f"{k}.png")
    return root


def synthetic_folder(**images) -> Callable[[Path], list[str]]:
    """A builder writing SPACE drawing synthetic rows from tmp/synth, made by synthetic_images(**images)."""
    def build(tmp: Path) -> list[str]:
        root = synthetic_images(tmp, **images)
        return space(fixed("synthetic_ratio: 0.5"), fixed("synthetic_source: folder"),
                     fixed(f"synthetic_folder: {root}"))(tmp)
    return build


def logger(line: str) -> Callable[[str], str]:
    """Add `line` (experiment.loggers or its settings) to the experiment section."""
    return replace("  max_failures: 1\n", f"  max_failures: 1\n  {line}\n")


def without_package(package: str, *edits: Callable[[str], str]):
    """A builder writing the edited SPACE, then a thunk that loads it while `package` cannot be imported."""
    def build(tmp: Path) -> Callable[[], object]:
        path = space(*edits)(tmp)[0]

        def load():
            from ganaug.space import load_space

            saved = sys.modules.get(package)
            sys.modules[package] = None  # importlib finds no spec: as if it were not installed
            try:
                return load_space(path)
            finally:
                if saved is None:
                    del sys.modules[package]
                else:
                    sys.modules[package] = saved
        return load
    return build


def imagefolder_root(root: str) -> Callable[[str], str]:
    return replace("{name: digits, samples_per_class: 30}", f"{{name: imagefolder, root: {root}}}")


def storage_under_a_file(tmp: Path) -> list[str]:
    blocker = tmp / "a_file"
    blocker.write_text("a regular file: no one, root included, can create a folder under it")
    path = tmp / "bad.yaml"
    path.write_text(SPACE.format(storage=blocker / "results"))
    return [str(path)]


def bank_at(where: Callable[[Path], Path | str]):
    """A builder writing SPACE with experiment.generators: where(tmp), which makes what stands there."""
    def build(tmp: Path) -> list[str]:
        return space(replace("  max_failures: 1\n", f"  max_failures: 1\n  generators: {where(tmp)}\n"))(tmp)
    return build


def a_file(tmp: Path) -> Path:
    (tmp / "a_file").write_text("a regular file where the bank's folder should be")
    return tmp / "a_file"


def a_folder_no_one_may_write(tmp: Path) -> Path:
    folder = tmp / "read_only"
    folder.mkdir(mode=0o555)
    # Root writes into any folder whatever its mode: sysfs refuses everyone a new folder.
    return folder if not os.access(folder, os.W_OK) else Path("/sys/ganaug-bank")


def empty_image_folder(tmp: Path) -> list[str]:
    (tmp / "empty_images").mkdir()
    return space(imagefolder_root("{tmp}/empty_images"))(tmp)


# ----------------------------------------------------------------------------------------------
# The cases: id -> Case. Grouped by what breaks; every group has at least one case per entry point it reaches.

CASES = {
    # YAML that does not parse, or is not the expected shape.
    "yaml syntax: unclosed bracket": Case("tune", space(searched("foo: [")), "bad.yaml"),
    "yaml syntax: tab indentation": Case("tune", space(replace("  num_samples", "\tnum_samples")),
                                         "bad.yaml"),
    "yaml syntax: unclosed quote": Case("tune", space(replace("name: bad", 'name: "bad')), "bad.yaml"),
    "yaml syntax (real subprocess)": Case("tune subprocess", space(searched("foo: [")), "invalid YAML"),
    "empty file": Case("tune", space(lambda t: ""), "bad.yaml"),
    "top level is a list": Case("tune", space(lambda t: "- experiment\n- search\n"), "bad.yaml"),
    "space file missing": Case("tune", lambda tmp: [str(tmp / "missing.yaml")], "missing.yaml"),
    "!!python/object/apply tag": Case("tune", space(replace(
        "classifier: mlp", 'classifier: !!python/object/apply:builtins.open ["{tmp}/pwned", "w"]')), "tag"),
    "!!python/object tag on a value": Case("tune", space(replace(
        "name: bad", "name: !!python/object:builtins.object {}")), "tag"),
    # Unknown and duplicate keys.
    "unknown section": Case("tune", space(replace("metric:", "metrics:")), "metrics"),
    "unknown experiment key": Case("tune", space(replace("num_samples", "num_sample")), "num_sample"),
    "unknown trial key in fixed": Case("tune", space(replace("batch_size", "batchsize")), "batchsize"),
    "unknown data key": Case("tune", space(replace("samples_per_class", "samples_per_clas")),
                             "samples_per_clas"),
    "duplicate key": Case("tune", space(replace("num_samples: 2\n", "num_samples: 2\n  num_samples: 3\n")),
                          "num_samples"),
    "duplicate searched key": Case("tune", space(searched("labeling: {choice: [lsro]}")), "labeling"),
    # Wrong types.
    "string for an int": Case("tune", space(replace("num_samples: 2", "num_samples: two")), "num_samples"),
    "string for a number": Case("tune", space(replace("cpu: 1", "cpu: one")), "cpu"),
    "fraction for an int": Case("tune", space(replace("batch_size: 64", "batch_size: 64.5")), "batch_size"),
    "string for a bool": Case("tune", space(fixed("traditional_aug: maybe")), "traditional_aug"),
    "distribution that is a number": Case("tune", space(replace("{choice: [pseudo, lsro]}", "3")),
                                          "labeling"),
    # Empty sections.
    "empty search section": Case("tune", space(lambda t: t.split("search:")[0] + "search:\n"), "search"),
    "empty experiment section": Case("tune", space(lambda t: "experiment:\n" + t.split("\n", 7)[7]),
                                     "experiment"),
    "empty choice list": Case("tune", space(replace("{choice: [pseudo, lsro]}", "{choice: []}")), "labeling"),
    # Inverted ranges.
    "inverted loguniform": Case("tune", space(replace("[1.0e-4, 1.0e-2]", "[1.0e-2, 1.0e-4]")),
                                "classifier_lr"),
    "inverted int range": Case("tune", space(searched("latent_dim: {int: [128, 32]}")), "latent_dim"),
    "inverted uniform": Case("tune", space(searched("d_real_fraction: {uniform: [0.75, 0.25]}")),
                             "d_real_fraction"),
    "grace period past max_epochs": Case("tune", space(replace("grace_period: 1", "grace_period: 5")),
                                         "grace_period"),
    # Non-positive rates and sizes.
    "zero learning rate": Case("tune", space(fixed("gan_lr: 0.0")), "gan_lr"),
    "loguniform from zero": Case("tune", space(replace("[1.0e-4, 1.0e-2]", "[0.0, 1.0e-2]")),
                                 "classifier_lr"),
    "zero batch size": Case("tune", space(replace("batch_size: 64", "batch_size: 0")), "batch_size"),
    "negative latent size": Case("tune", space(fixed("latent_dim: -4")), "latent_dim"),
    "zero trials": Case("tune", space(replace("num_samples: 2", "num_samples: 0")), "num_samples"),
    "zero trials by flag": Case("tune", space(lambda t: t, "--num-samples", "0"), "num_samples"),
    "negative concurrency": Case("tune", space(replace("max_concurrent: 2", "max_concurrent: -1")),
                                 "max_concurrent"),
    "reuse_actors not a bool": Case("tune", space(replace("max_failures: 1", "max_failures: 1\n  reuse_actors: maybe")),
                                    "experiment.reuse_actors"),
    "reduction factor 1": Case("tune", space(replace("reduction_factor: 2", "reduction_factor: 1")),
                               "reduction_factor"),
    "real fraction 1": Case("tune", space(fixed("d_real_fraction: 1.0")), "d_real_fraction"),
    "validation share 1.5": Case("tune", space(replace("samples_per_class: 30", "val_fraction: 1.5")),
                                 "val_fraction"),
    # Unknown registry values and choices.
    "unknown GAN architecture": Case("tune", space(fixed("gan_arch: biggan")), "biggan"),
    "unknown classifier in a choice": Case("tune", space(replace("  classifier: mlp\n", ""), searched(
        "classifier: {choice: [mlp, vit]}")), "vit"),
    "unknown labeler in a choice": Case("tune", space(replace("[pseudo, lsro]", "[pseudo, soft]")), "soft"),
    "unknown dataset": Case("tune", space(replace("name: digits", "name: imagenet")), "imagenet"),
    "unknown metric mode": Case("tune", space(replace("mode: max", "mode: up")), "metric.mode"),
    "unknown diffaugment part": Case("tune", space(fixed("diffaugment: blur")), "diffaugment"),
    "epochs outside the scheduler": Case("tune", space(fixed("epochs: 3")), "epochs"),
    "unknown traditional augmentation": Case("tune", space(searched(
        "traditional_aug: {choice: [none, autoaugment]}")), "none, flip_translate, trivialaugment, randaugment"),
    "RandAugment magnitude out of range": Case(
        "tune", space(fixed("randaugment_magnitude: 31")),
        "randaugment_magnitude=31 is out of range; valid: an integer in [0, 30]"),
    "unknown optimizer": Case("tune", space(fixed("optimizer: adam")), "optimizer"),
    "unknown learning-rate schedule": Case("tune", space(searched("lr_schedule: {choice: [cosine, step]}")),
                                           "lr_schedule"),
    "warm-up as long as the trial": Case("tune", space(fixed("warmup_epochs: 2")), "warmup_epochs"),
    "mix_alpha 0": Case("tune", space(fixed("mix_alpha: 0")), "mix_alpha"),
    "label smoothing 1": Case("tune", space(searched("label_smoothing: {uniform: [0.0, 1.0]}")), "label_smoothing"),
    "label smoothing below 0": Case("pipeline", policy(lambda p: p["config"].update(label_smoothing=-0.1)),
                                    "label_smoothing"),
    "cutout larger than the images": Case("tune", space(fixed("cutout: 12")),
                                          "fixed.cutout: cutout=12 is out of range for 8x8 images; valid: an "
                                          "integer in [0, 8] (0 = off)"),
    # Experiment trackers (experiment.loggers).
    "unknown logger": Case("tune", space(logger("loggers: [tensorboard, neptune]")),
                           "experiment.loggers: 'neptune' is not a logger; valid: a list of tensorboard, mlflow"),
    "logger listed twice": Case("tune", space(logger("loggers: [mlflow, mlflow]")), "'mlflow' is listed twice"),
    "loggers not a list": Case("tune", space(logger("loggers: mlflow")), "experiment.loggers: expected a list"),
    "logger whose package is missing": Case("api", without_package("wandb", logger("loggers: [tensorboard, wandb]")),
                                            "experiment.loggers: wandb needs the wandb package, which is not "
                                            'installed; install it with pip install -e ".[wandb]"', "SpaceError"),
    # GPU shares that do not pack onto whole GPUs.
    "gpu 0.3": Case("tune", space(replace("gpu: 0", "gpu: 0.3")), "gpu"),
    "gpu 1.5": Case("tune", space(replace("gpu: 0", "gpu: 1.5")), "gpu"),
    # Datasets and folders.
    "missing imagefolder root": Case("tune", space(imagefolder_root("{tmp}/no_such_folder")),
                                     "no_such_folder"),
    "empty imagefolder root": Case("tune", empty_image_folder, "empty_images"),
    "more samples per class than digits has": Case("tune", space(replace("samples_per_class: 30",
                                                                         "samples_per_class: 5000")),
                                                   "samples_per_class"),
    "storage under a regular file": Case("tune", storage_under_a_file, "a_file"),
    # The generator bank (experiment.generators): checked before Ray, not by every GAN trial after its pretraining.
    "generator bank is a file": Case("tune", bank_at(a_file), "a_file is a file, not a folder"),
    "generator bank in a folder no one may write": Case("tune", bank_at(a_folder_no_one_may_write),
                                                        "experiment.generators: cannot create or write"),
    "generator bank of an unknown scheme": Case("tune", bank_at(lambda tmp: "foo://bucket/bank"),
                                                "experiment.generators: cannot use foo://bucket/bank (Unrecognized "
                                                "filesystem type"),
    # Long-tailed data (data.long_tail) and the class-balance baselines (class_balance and its keys).
    "long-tail ratio below 1": Case("tune", space(replace("samples_per_class: 30}", "samples_per_class: 30, "
                                                          "long_tail: {ratio: 0.5}}")), "data.long_tail.ratio=0.5"),
    "long-tail ratio the data cannot supply": Case("tune", space(replace("samples_per_class: 30}", "samples_per_class: "
                                                                         "30, long_tail: {ratio: 100}}")),
                                                   "valid: 1 <= ratio <= 27"),
    "long_tail together with imbalance": Case("tune", space(replace("samples_per_class: 30}", "long_tail: {ratio: 10}, "
                                                                    "imbalance: {'3': 0.5}}")), "data.imbalance"),
    "long-tail order naming a class twice": Case("pipeline", policy(lambda p: p["data"].update(
        long_tail={"ratio": 2, "order": [0, 0, 1, 2, 3, 4, 5, 6, 7, 8]})), "long_tail.order"),
    "unknown class_balance": Case("tune", space(fixed("class_balance: focal")), "class_balance"),
    "reweight_beta above 1": Case("tune", space(fixed("class_balance: reweight"), searched(
        "reweight_beta: {choice: [0.99, 1.5]}")), "reweight_beta"),
    "logit_adjust_tau 0": Case("tune", space(fixed("class_balance: logit_adjust"), fixed("logit_adjust_tau: 0.0")),
                               "logit_adjust_tau=0.0 is out of range; valid: 0 < logit_adjust_tau <= 10"),
    "negative class_balance_start_epoch": Case("pipeline", policy(lambda p: p["config"].update(
        class_balance="resample", class_balance_start_epoch=-1)), "class_balance_start_epoch"),
    "unknown synthetic_spread": Case("tune", space(searched("synthetic_spread: {choice: [minority, tail]}")),
                                     "synthetic_spread"),
    "--resume with no experiment": Case("tune", space(lambda t: t, "--resume"), "no experiment to resume"),
    # python -m ganaug.pipeline POLICY.yaml
    "policy without data": Case("pipeline", policy(lambda p: p.pop("data")), "data"),
    "policy config not a mapping": Case("pipeline", policy(lambda p: p.update(config=[1, 2])), "config"),
    "policy data not a mapping": Case("pipeline", policy(lambda p: p.update(data="digits")), "data"),
    "policy unknown key": Case("pipeline", policy(lambda p: p["config"].update(classifer="cnn")),
                               "classifer"),
    "policy zero epochs": Case("pipeline", policy(None, "--epochs", "0"), "epochs"),
    "policy missing imagefolder": Case("pipeline", policy(lambda p: p.update(
        data={"name": "imagefolder", "root": "/nonexistent/ganaug_images"})), "ganaug_images"),
    "policy file missing": Case("pipeline", lambda tmp: [str(tmp / "nope.yaml")], "nope.yaml"),
    "policy python tag (real subprocess)": Case("pipeline subprocess", policy(
        text='config: !!python/object/apply:builtins.open ["{tmp}/pwned", "w"]\ndata: {name: digits}\n'),
        "policy.yaml"),
    # python -m ganaug.evaluate RESULTS / python -m ganaug.generate RESULTS
    "evaluate: no such folder": Case("evaluate", lambda tmp: [str(tmp / "no_results")], "no_results"),
    "evaluate: not an experiment": Case("evaluate", folder(), "ganaug_experiment.yaml"),
    "evaluate: corrupt experiment file": Case("evaluate", folder({"ganaug_experiment.yaml": "name: [x\n"}),
                                              "ganaug_experiment.yaml"),
    "evaluate: one seed": Case("evaluate", folder({}, "--seeds", "1"), "--seeds"),
    "generate: zero images per class": Case("generate", folder({}, "--per-class", "0", "--out", "{tmp}/out"),
                                            "--per-class"),
    "generate: not an experiment": Case("generate", folder({}, "--per-class", "2", "--out", "{tmp}/out"),
                                        "ganaug_experiment.yaml"),
    # Checkpoints, through the API.
    "checkpoint from another config": Case("api", checkpoint(lambda s, tmp: s["config"].update(gan_lr=0.5)),
                                           "gan_lr", "CheckpointError"),
    "checkpoint with a pickle payload": Case("api", checkpoint(lambda s, tmp: s.update(
        payload=Payload(tmp / "pwned"))), "trial_state.pt: refused", "CheckpointError"),
    "truncated checkpoint": Case("api", checkpoint(mangle="truncated"), "trial_state.pt", "CheckpointError"),
    "missing checkpoint file": Case("api", checkpoint(mangle="missing"), "trial_state.pt", "CheckpointError"),
    "run resumed from another config's checkpoint": Case("api", checkpoint(
        lambda s, tmp: s["config"].update(classifier="cnn"), load="run"), "classifier", "CheckpointError"),
    "synthetic folder of another image size": Case("tune", synthetic_folder(size=16), "16x16"),
    "synthetic folder of another channel count": Case("tune", synthetic_folder(mode="RGB"), "3 channel"),
    "synthetic folder with a class subfolder the dataset lacks": Case(
        "tune", synthetic_folder(classes=("0", "cat")), "'cat' are not classes"),
    "empty synthetic folder": Case("tune", synthetic_folder(classes=()), "holds no image"),
    "generator factory that cannot be imported": Case("tune", space(
        fixed("synthetic_ratio: 0.5"), fixed("synthetic_source: no_such_module:make")), "cannot be imported"),
    "generator factory without sample": Case("tune", space(
        fixed("synthetic_ratio: 0.5"), fixed("synthetic_source: sources_module:no_sample")), "no sample method"),
    "real pool larger than a class can spare": Case("tune", space(replace(
        "{name: digits, samples_per_class: 30}", "{name: digits, samples_per_class: 30, real_pool: {per_class: 170}}")),
        "real_pool.per_class=170"),
    "real source without a real pool": Case("tune", space(fixed("synthetic_ratio: 0.5"), fixed(
        "synthetic_source: real")), "data.real_pool"),
    "pool from a generator that is not frozen": Case("tune", space(
        fixed("synthetic_ratio: 0.5"), fixed("synthetic_source: pool"), fixed("gan_pretrain_epochs: 2")),
        "gan_freeze"),
    "left_out of an axis evaluate does not ablate": Case("tune", space(logger("left_out: {mix: {cutmix: x}}")),
                                                          "experiment.left_out.mix"),
    "left_out without a reason": Case("tune", space(logger("left_out: {traditional_aug: {randaugment: ''}}")),
                                      "says no reason"),
    "left_out of a choice the space draws": Case("tune", space(
        logger("left_out: {traditional_aug: {none: why}}"), searched("traditional_aug: {choice: [none]}")),
        "the space draws it"),
    "unknown registry value through the API": Case("api", lambda tmp: lambda: __import__(
        "ganaug.config").config.TrialConfig.from_dict({"gan": "stylegan"}), "gan", "ConfigError"),
}


def entry_point(name: str) -> Callable[[list[str]], int]:
    module = {"tune": "ganaug.tune", "pipeline": "ganaug.pipeline", "evaluate": "ganaug.evaluate",
              "generate": "ganaug.generate"}[name]
    return __import__(module, fromlist=["main"]).main


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every path under `folder` with its kind, size and modification time."""
    return {str(p.relative_to(folder)): (p.is_dir(), p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*")}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_with_one_line_and_nothing_written(case, tmp_path, capsys):
    bad = CASES[case]
    built = bad.build(tmp_path)
    before = snapshot(tmp_path)
    if bad.entry == "api":
        with pytest.raises(Exception) as caught:
            built()
        assert type(caught.value).__name__ == bad.error, repr(caught.value)
        assert isinstance(caught.value, ValueError | RuntimeError)  # typed, never a bare Exception
        message = str(caught.value)
    elif bad.entry.endswith("subprocess"):
        module = f"ganaug.{bad.entry.split()[0]}"
        env = {**os.environ, "RAY_ADDRESS": ""}
        done = subprocess.run([sys.executable, "-m", module, *built], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr[-2000:]
        message = done.stderr.strip()
    else:
        assert entry_point(bad.entry)(built) == 2
        message = capsys.readouterr().err.strip()
    assert "Traceback" not in message
    assert len(message.splitlines()) == 1, message
    assert bad.expect.lower() in message.lower(), message
    assert snapshot(tmp_path) == before, "bad input wrote files"
    assert not (tmp_path / "pwned").exists(), "a YAML tag or pickle payload ran code"


def test_the_unedited_inputs_are_valid(tmp_path):
    """The base space and policy load, so each case above fails because of its own edit."""
    from ganaug.config import TrialConfig
    from ganaug.data.splits import load_data
    from ganaug.space.spec import load_space

    spec = load_space(space()(tmp_path)[0])
    assert spec.trial_config({"classifier_lr": 1e-3, "labeling": "lsro"}).batch_size == 64
    assert len(CASES) >= 30
    TrialConfig.from_dict(POLICY["config"])
    assert load_data(POLICY["data"]).spec.num_classes == 10


USER_FACING_ERRORS = ["ganaug.config:ConfigError", "ganaug.classifier:ClassifierError", "ganaug.data:DataError",
                      "ganaug.space:SpaceError", "ganaug.results:StorageError", "ganaug.search:ExperimentError",
                      "ganaug.results:EvaluationError", "ganaug.results:GenerateError", "ganaug.results:ResultsError",
                      "ganaug.gan:StateDictError", "ganaug.trial:CheckpointError", "ganaug.trial:SourceError"]


@pytest.mark.parametrize("name", USER_FACING_ERRORS)
def test_every_user_facing_error_is_an_input_error(name):
    """Each command line catches InputError alone: an error class outside it would reach users as a traceback."""
    from ganaug.errors import InputError

    module, attribute = name.split(":")
    error = getattr(__import__(module, fromlist=[attribute]), attribute)
    assert issubclass(error, InputError) and issubclass(error, ValueError)


@pytest.mark.parametrize("entry", ["tune", "evaluate", "generate"])
def test_every_command_line_exits_with_the_one_bad_input_code(entry):
    from ganaug.errors import EXIT_BAD_INPUT

    assert EXIT_BAD_INPUT == 2
    module = {"tune": "ganaug.search.tune", "evaluate": "ganaug.results.evaluate",
              "generate": "ganaug.results.generate"}[entry]
    assert __import__(module, fromlist=["EXIT_BAD_INPUT"]).EXIT_BAD_INPUT is EXIT_BAD_INPUT
