"""The tests' search spaces: search_spaces/quickstart.yaml shrunk to seconds.

One helper, so that every test search is the shipped quickstart with smaller sizes and each test says only what it
changes: a change to the quickstart's format reaches every test at once.

    write_tiny_space(tmp_path, "killed", experiment={"num_samples": 6}, fixed={"cas_epochs": 1},
                     search={"classifier_lr": {"loguniform": [3.0e-4, 3.0e-3]}})
"""

from __future__ import annotations

from pathlib import Path

import yaml

QUICKSTART = Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart.yaml"

# What makes the quickstart tiny: two trials at a time on the test machine's two cores, two epochs, quarter-width
# MLPs, a checkpoint and a sample grid every epoch (so that short trials leave both), no CAS classifier, and the
# default, untuned GAN trained alongside the classifier (no pretraining, no frozen generator: a test that wants them
# says so).
TINY = {
    "experiment": {"num_samples": 4, "max_concurrent": 2, "seed": 0, "resources": {"cpu": 1, "gpu": 0},
                   "max_failures": 1},
    "data": {"name": "digits", "val_fraction": 0.2},
    "scheduler": {"max_epochs": 2, "grace_period": 1, "reduction_factor": 2},
    "fixed": {"classifier": "mlp", "classifier_width": 0.25, "gan_arch": "mlp", "gan_width": 0.25,
              "gan_lr": 2.0e-4, "acgan_weight": 1.0, "acgan_fake_class_loss": True, "g_ema": 0.0,
              "gan_pretrain_epochs": 0, "gan_freeze": False,
              "batch_size": 64, "checkpoint_every": 1, "sample_every": 1, "cas_epochs": 0},
}
SEARCH = {"classifier_lr": {"loguniform": [3.0e-4, 3.0e-3]}}


def tiny_space(storage: str | Path, name: str = "tiny", *, search: dict | None = None, **sections: dict) -> dict:
    """quickstart.yaml with TINY's sizes and then each given section's keys on top (experiment=, data=,
    scheduler=, fixed=, metric=); `search` replaces the quickstart's search section whole (default: SEARCH)."""
    space = yaml.safe_load(QUICKSTART.read_text())
    unknown = set(sections) - set(space)
    assert not unknown, f"tiny_space: {sorted(unknown)} are not sections of quickstart.yaml"
    for section, values in TINY.items():
        space[section] = {**space[section], **values}
    for section, values in sections.items():
        space[section] = {**space[section], **values}
    space["experiment"].update(name=name, storage=str(storage))
    space["search"] = SEARCH if search is None else search
    # A key the test searches is no longer fixed (the quickstart fixes its one generator's keys, e.g. gan).
    space["fixed"] = {key: value for key, value in space["fixed"].items() if key not in space["search"]}
    return space


def write_tiny_space(folder: Path, name: str = "tiny", *, storage: str | Path | None = None, **kwargs) -> Path:
    """tiny_space(folder / "results", name, ...) written to folder / <name>.yaml; returns its path."""
    path = folder / f"{name}.yaml"
    space = tiny_space(folder / "results" if storage is None else storage, name, **kwargs)
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path
