"""A tiny finished search, built once per test session and shared by the evaluate/generate/notebook tests.

Each test module declares its own session fixture that calls `tiny_experiment(tmp_path_factory)`; the
experiment lives under the session's base temp folder, so whichever module asks first builds it and
the others reuse it (a fixture imported into several modules would run once per module).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from spaces import write_tiny_space

# The tiny quickstart (tests/spaces.py) on digits at 30 images per class: 4 trials of 2 epochs. synthetic_ratio is
# fixed above 0 so that the trial ASHA always lets through (the first to reach the rung) is a GAN policy;
# checkpoints every epoch so pruned trials have one too.
SPACE = {"experiment": {"max_failures": 0}, "data": {"samples_per_class": 30}, "fixed": {"synthetic_ratio": 0.5},
         "search": {"labeling": {"choice": ["pseudo", "lsro", "all_in_one"]},
                    "classifier_lr": {"loguniform": [3.0e-4, 3.0e-3]}}}
EPOCHS = 2


def tiny_experiment(tmp_path_factory) -> Path:
    """The experiment folder of the session's tiny search (run on first use)."""
    base = tmp_path_factory.getbasetemp() / "ganaug_tiny_experiment"
    experiment = base / "results" / "tiny"
    if (experiment / "summary.csv").is_file():
        return experiment
    from ganaug.search.tune import main

    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    space = write_tiny_space(base, "tiny", **SPACE)
    assert main([str(space), "--num-cpus", "2"]) == 0
    return experiment


def evaluated_experiment(tmp_path_factory) -> Path:
    """A copy of the tiny experiment on which `ganaug.evaluate --seeds 2` has run (run on first use)."""
    experiment = tiny_experiment(tmp_path_factory)
    evaluated = tmp_path_factory.getbasetemp() / "ganaug_tiny_evaluated"
    if (evaluated / "evaluation.md").is_file():
        return evaluated
    from ganaug.results.evaluate import main

    shutil.rmtree(evaluated, ignore_errors=True)
    shutil.copytree(experiment, evaluated)
    assert main([str(evaluated), "--seeds", "2", "--epochs", str(EPOCHS), "--num-cpus", "2"]) == 0
    return evaluated


def copy_experiment(experiment: Path, destination: Path, **meta_changes) -> Path:
    """A copy of the experiment folder, with ganaug_experiment.yaml keys replaced (e.g. max_epochs)."""
    copy = Path(shutil.copytree(experiment, destination))
    meta_file = copy / "ganaug_experiment.yaml"
    meta = yaml.safe_load(meta_file.read_text())
    for key, value in meta_changes.items():
        if isinstance(value, dict):
            meta[key] = {**meta.get(key, {}), **value}
        else:
            meta[key] = value
    meta_file.write_text(yaml.safe_dump(meta, sort_keys=False))
    # Trial folders hold absolute paths nowhere that results.py reads, so the copy reads on its own.
    return copy
