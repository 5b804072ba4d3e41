"""Load a finished (or running) search into pandas, from Tune's own files, and write its summary.

    from ganaug.results import load_experiment
    experiment = load_experiment("~/ganaug_results/quickstart")
    experiment.trials      # one row per trial: parameters, status, best/last val_acc, epochs, wall seconds
    experiment.curves      # one row per trial-epoch: every reported metric
    experiment.best()      # the row of the best finished, non-diverged trial
    experiment.best_gan()  # the row of the best trial with a generator: evaluate's best_gan, generate's default

`analysis/` notebooks, `ganaug.evaluate` and `ganaug.generate` read experiments only through here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ganaug.config import adds_synthetic, without_inactive
from ganaug.errors import InputError
from ganaug.files import atomic_write
from ganaug.metrics import names
from ganaug.results.storage import StorageError, check_reachable, download, is_uri, mirror_of_experiment, upload

EXPERIMENT_FILE = "ganaug_experiment.yaml"
SUMMARY_FILE = "summary.csv"
BEST_POLICY_FILE = "best_policy.yaml"
JOURNAL_FILE = "optuna_study.journal"  # the Optuna study (ganaug.search.searchers writes it)
# running: Tune's record says the trial is pending, running or paused (a search still going, or one whose driver
# died before it could record the end: `ganaug tune SPACE --resume` finishes those).
STATUS_ORDER = ("complete", "pruned", "diverged", "error", "running")
# Tune's own trial states (ray.tune.experiment.Trial) that mean "not finished".
TUNE_UNFINISHED = ("PENDING", "RUNNING", "PAUSED")


class ResultsError(InputError):
    """A folder is not a ganaug experiment, or holds nothing usable; the message names it."""


@dataclass
class Experiment:
    path: Path
    meta: dict            # what tune.py recorded: metric, mode, max_epochs, data, base config, command
    trials: pd.DataFrame  # one row per trial
    curves: pd.DataFrame  # one row per trial-epoch
    uri: str | None = None  # remote experiments (s3://...): the URI; `path` is then its local mirror

    @property
    def metric(self) -> str:
        return self.meta["metric"]["name"]

    @property
    def mode(self) -> str:
        return self.meta["metric"]["mode"]

    @property
    def searched_keys(self) -> list[str]:
        return list(self.meta.get("searched", []))

    def ranked(self, trials: pd.DataFrame | None = None, unscored: bool = False) -> pd.DataFrame:
        """`trials` (default: every trial) best first by their last value of the metric (highest first, or lowest
        for mode min), ties in their order. Trials without a score (diverged ones, and those that never reported
        an epoch) are left out, or with `unscored` kept, last. Every ranking of trials ranks through this."""
        trials = self.trials if trials is None else trials
        key = f"last_{self.metric}"
        if not unscored:
            trials = trials.dropna(subset=[key])
        return trials.sort_values(key, ascending=self.mode == "min", na_position="last", kind="stable")

    def best(self, status: tuple[str, ...] = ("complete",)) -> pd.Series:
        """The best trial by its last value of the metric among trials with `status` (diverged never)."""
        pool = self.ranked(self.trials[self.trials["status"].isin(status)])
        if pool.empty:
            raise ResultsError(f"{self.path}: no trial with status {' or '.join(status)} to choose from "
                               f"(statuses here: {dict(self.trials['status'].value_counts())})")
        return pool.iloc[0]

    def policy_trials(self, gan: bool) -> tuple[pd.DataFrame, bool]:
        """The GAN (gan=True) or no-GAN trials that stand for the best such policy, best first, and whether they
        are pruned ones: the complete trials by score; when ASHA stopped every one of them early, the pruned trials
        that got furthest (most epochs, then score). ganaug evaluate and the search's closing line choose by it."""
        scored = self.ranked()
        group = scored[uses_synthetic(self, scored) == gan]
        complete = group[group["status"] == "complete"]
        if len(complete):
            return complete, False
        pruned = group[group["status"] == "pruned"]
        return pruned.sort_values("epochs", ascending=False, kind="stable"), True

    def best_gan(self) -> pd.Series:
        """The best trial with a generator (synthetic_ratio > 0): the best complete one, else the pruned one that
        got furthest (policy_trials). `ganaug evaluate` retrains it as best_gan; `ganaug generate` exports it.

        Not best(): every search starts with no-GAN baselines, and one of them often wins."""
        trials, _ = self.policy_trials(gan=True)
        if trials.empty:
            raise ResultsError(f"{self.path}: no complete or pruned trial trained a generator (synthetic_ratio > 0; "
                               f"statuses here: {dict(self.trials['status'].value_counts())})")
        return trials.iloc[0]

    def config_of(self, trial: pd.Series) -> dict[str, Any]:
        """The TrialConfig dict a trial ran: the experiment's base config plus the trial's parameters, without the
        keys that policy cannot use (config.without_inactive: they took their defaults)."""
        params = json.loads((Path(trial["path"]) / "params.json").read_text())
        return without_inactive({**self.meta["base_config"], **params})

    def checkpoints_of(self, trial: pd.Series) -> list[Path]:
        """The trial's checkpoint folders, newest first (of a remote experiment: fetched into the mirror)."""
        folder = Path(trial["path"])
        if self.uri is not None:
            # Refetched every time: a trial resumed since the last fetch may have newer checkpoints.
            download(self.uri, self.path, under=folder.name, checkpoints=True)
        return sorted(folder.glob("checkpoint_*"), reverse=True)

    def upload(self, paths: list[Path]) -> None:
        """Copy files written into the experiment folder up to its remote storage (nothing for a local one)."""
        if self.uri is not None:
            upload(self.uri, self.path, [Path(p).relative_to(self.path).as_posix() for p in paths])


def save_experiment_meta(space, command: str | None, generators: str | None = None) -> None:
    """Record what ganaug.results needs to read the experiment later (written once, when the search starts);
    `generators`: where its generator bank is (None: off)."""
    directory = Path(space.experiment_dir())
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        "name": space.experiment.name,
        "space_file": str(Path(space.path).resolve()) if getattr(space, "path", None) else None,
        "command": command,
        "metric": {"name": space.metric.name, "mode": space.metric.mode},
        "max_epochs": space.scheduler.max_epochs,
        "num_samples": space.experiment.num_samples,
        "data": dict(space.data),
        "searched": list(space.search),
        "base_config": space.base_config(),
        "generators": generators,
        # choices evaluate does not ablate, as the space leaves them out on purpose: {axis: {choice: why}}
        "left_out": {axis: dict(choices) for axis, choices in space.experiment.left_out.items()},
    }
    atomic_write(directory / EXPERIMENT_FILE, yaml.safe_dump(meta, sort_keys=False))


def load_experiment(path: str | Path, tune_states: dict[str, str] | None = None) -> Experiment:
    """Read an experiment folder written by `python -m ganaug.tune`: a local folder, or storage/name on remote
    storage (s3://bucket/prefix/name), whose small files (not checkpoints) are fetched into a local mirror.
    `tune_states` (trial folder name -> Tune status) override those of Tune's state file."""
    if is_uri(path):
        return _load_remote(str(path).rstrip("/"))
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ResultsError(f"{path}: no such folder; pass the experiment folder written by ganaug.tune "
                           f"(storage/name, e.g. ~/ganaug_results/quickstart)")
    meta_file = path / EXPERIMENT_FILE
    if not meta_file.is_file():
        raise ResultsError(f"{path}: not a ganaug experiment folder ({EXPERIMENT_FILE} is missing)")
    try:
        meta = yaml.safe_load(meta_file.read_text())
    except (OSError, yaml.YAMLError) as error:
        problem = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ResultsError(f"{meta_file}: cannot be read ({problem}); it is written by ganaug.tune") from None
    if not isinstance(meta, dict) or not {"metric", "max_epochs", "base_config"} <= set(meta):
        raise ResultsError(f"{meta_file}: not a ganaug experiment file (needs metric, max_epochs and "
                           f"base_config, as written by ganaug.tune)")
    rows, curves = [], []
    # The search passes the states its Tuner ended with: the experiment_state file on disk can lag behind the
    # last failure (Tune saves and syncs it on its own schedule), and would show an errored trial as running.
    tune_states = {**_tune_states(path), **(tune_states or {})}
    for trial_dir in sorted((p for p in path.iterdir() if (p / "params.json").is_file()), key=_creation_order):
        curve = read_curve(trial_dir)
        rows.append(_trial_row(trial_dir, curve, meta, tune_states.get(trial_dir.name)))
        if not curve.empty:
            curves.append(curve.assign(trial_id=rows[-1]["trial_id"], status=rows[-1]["status"]))
    trials = pd.DataFrame(rows)
    if trials.empty:
        raise ResultsError(f"{path}: the experiment has no trials yet")
    curves = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    return Experiment(path=path, meta=meta, trials=trials, curves=curves)


def _creation_order(trial_dir: Path) -> tuple[float, str]:
    """Tune's trial folders are train_trial_<id>_<n>_<params>_<date>: order by n, the order the searcher
    suggested them in, so trials that tie on the score rank the same way in every run of the same seed (the ids
    are random)."""
    parts = trial_dir.name.split("_")
    number = float(parts[3]) if len(parts) > 3 and parts[3].isdigit() else math.inf
    return number, trial_dir.name


def _load_remote(uri: str) -> Experiment:
    storage_uri = uri.rpartition("/")[0]
    try:
        check_reachable(storage_uri)
        mirror = mirror_of_experiment(uri)
        if not download(uri, mirror, names=[EXPERIMENT_FILE]):
            raise ResultsError(f"{uri}: not a ganaug experiment folder ({EXPERIMENT_FILE} is missing); pass "
                               f"storage/name of a search, e.g. s3://bucket/prefix/quickstart")
        download(uri, mirror)
    except (StorageError, OSError) as error:
        raise ResultsError(str(error).splitlines()[0]) from None
    return dataclasses.replace(load_experiment(mirror), uri=uri)


def read_curve(trial_dir: Path) -> pd.DataFrame:
    """Every reported result of one trial, from Tune's result.json (one JSON object per line).

    When a trial restarts, Tune rewrites result.json from its last synced copy, which drops the results
    reported since that sync; the trial's own metrics.jsonl (report.TrialReporter: one line per epoch,
    carried in each checkpoint and continued from the one a trial restores) fills those epochs back in.
    """
    frame = pd.DataFrame(_read_jsonl(trial_dir / "result.json"))
    own = pd.DataFrame(_read_jsonl(trial_dir / "metrics.jsonl"))
    if not own.empty and "epoch" in own:
        known = _positions(frame) if "epoch" in frame else pd.MultiIndex.from_arrays([[], []])
        lost = own[~_positions(own).isin(known)].replace({"inf": math.inf, "-inf": -math.inf, "nan": math.nan})
        if not lost.empty:
            frame = pd.concat([frame, lost], ignore_index=True)
            if "trial_id" in frame:
                frame["trial_id"] = frame["trial_id"].ffill().bfill()
    if not frame.empty and "epoch" in frame:
        # A trial retried from a checkpoint reports some epochs twice: keep the latest report of each.
        keys = [k for k in ("epoch", "gan_pretrain_epoch") if k in frame]
        frame = frame.drop_duplicates(keys, keep="last").sort_values(keys).reset_index(drop=True)
    return frame


def _positions(frame: pd.DataFrame) -> pd.MultiIndex:
    """Each result's place in its trial: (epoch, gan_pretrain_epoch). GAN pretraining passes all report
    epoch 0 (gan_pretrain_epoch 1, 2, ...) before classifier epochs 1, 2, ..., so epoch alone is not unique."""
    pretrain = frame["gan_pretrain_epoch"] if "gan_pretrain_epoch" in frame else pd.Series(math.nan, frame.index)
    return pd.MultiIndex.from_arrays([frame["epoch"], pretrain.fillna(0)])


def _tune_states(path: Path) -> dict[str, str]:
    """Tune's own state of each trial (TERMINATED, ERROR, PENDING, RUNNING, PAUSED), by trial folder name, from
    the experiment's newest experiment_state-*.json through Tune's ExperimentAnalysis. Empty when the folder
    has no such file (then error.txt decides) or Tune cannot read it. Reads files only: Ray is never started."""
    if not any(path.glob("experiment_state-*.json")):
        return {}
    try:
        from ray.tune import ExperimentAnalysis

        trials = ExperimentAnalysis(str(path)).trials
        # Trial.path is typed Optional; a trial read from the state file has one.
        return {Path(trial.path).name: str(trial.status) for trial in trials if trial.path is not None}
    except Exception as error:  # a state file cut short by a crash, or written by another Ray version
        warnings.warn(f"{path}: Tune's experiment state is unreadable ({type(error).__name__}: "
                      f"{str(error).strip()[:200]}); trial status falls back to error.txt", stacklevel=3)
        return {}


def _ended_in_error(trial_dir: Path, curve: pd.DataFrame) -> bool:
    """Whether the trial's last event was a failure, for a folder without Tune's experiment state. Tune appends
    every failure to error.txt, including those it then retried from a checkpoint; a trial that reported again
    after its last failure recovered."""
    errors = trial_dir / "error.txt"
    if not errors.is_file():
        return False
    failed = re.findall(r"occurred at (\S+)\)", errors.read_text())
    reported = curve["date"].dropna() if "date" in curve else pd.Series(dtype=str)
    # Both dates are Tune's "YYYY-MM-DD_HH-MM-SS": they compare as strings.
    return not failed or reported.empty or max(failed) >= str(reported.max())


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a crash
            continue
    return records


def _trial_row(trial_dir: Path, curve: pd.DataFrame, meta: dict, tune_state: str | None) -> dict[str, Any]:
    metric = meta["metric"]["name"]
    params = json.loads((trial_dir / "params.json").read_text())
    trial_id = curve["trial_id"].iloc[0] if "trial_id" in curve else trial_dir.name
    row: dict[str, Any] = {"trial_id": str(trial_id)}
    row.update({k: params[k] for k in sorted(params)})
    epochs = int(curve["epoch"].max()) if not curve.empty and "epoch" in curve else 0
    diverged = bool(not curve.empty and "diverged" in curve and (curve["diverged"] == 1).any())
    # Tune's record knows errors (past max_failures; a retried trial that recovered is TERMINATED) and unfinished
    # trials; the epochs and the diverged flag tell a finished trial's kind, which Tune calls TERMINATED alike.
    if diverged:
        status = "diverged"
    elif epochs >= meta["max_epochs"]:
        status = "complete"
    elif tune_state == "ERROR" or (tune_state is None and _ended_in_error(trial_dir, curve)):
        status = "error"
    elif tune_state in TUNE_UNFINISHED:
        status = "running"
    else:
        status = "pruned"
    # The trial's last report; with no report every figure below reads nan.
    last: pd.Series | dict[str, Any] = curve.iloc[-1] if not curve.empty else {}
    # Scores of classifier epochs only: GAN pretraining rows (epoch 0) hold the untrained classifier's.
    scored = curve[curve["epoch"] >= 1] if not curve.empty and "epoch" in curve else curve
    values = scored[metric] if not scored.empty and metric in scored else pd.Series(dtype=float)
    if diverged:
        values = pd.Series(dtype=float)  # a diverged trial has no score worth ranking
    best = values.min() if meta["metric"]["mode"] == "min" else values.max()
    row.update({
        "status": status,
        "epochs": epochs,
        f"best_{metric}": float(best) if len(values) else math.nan,
        f"last_{metric}": float(values.iloc[-1]) if len(values) else math.nan,
        # The test split's scores, the generator's quality (synthetic_diversity ~0 = collapsed, ~1 = as varied as the
        # data) and its bank entry (generator_key: which one; generator_reused: loaded rather than trained here), at
        # the trial's last report (ganaug.metrics: summary).
        **{name: _summary_value(last, name) for name in names("summary")},
        "wall_seconds": float(last.get("time_total_s", math.nan)),
        "path": str(trial_dir),
    })
    return row


def write_outputs(space, command: str | None = None, tune_states: dict[str, str] | None = None) -> pd.DataFrame:
    """summary.csv, best_policy.yaml and the top-five table on the console, for a finished search."""
    experiment = load_experiment(space.experiment_dir(), tune_states)
    trials = experiment.trials
    metric = experiment.metric
    key = f"last_{metric}"
    # By status, then score: the stable sort by status keeps the score order within each status.
    status_rank = {status: i for i, status in enumerate(STATUS_ORDER)}
    ranked = experiment.ranked(unscored=True).sort_values(
        "status", key=lambda statuses: statuses.map(status_rank), kind="stable")
    atomic_write(experiment.path / SUMMARY_FILE, ranked.to_csv(index=False))

    counts = trials["status"].value_counts().to_dict()
    shown = [s for s in STATUS_ORDER if s != "running" or counts.get(s)]  # a finished search has none running
    print(f"\n{len(trials)} trials: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in shown))
    # synthetic_diversity beside the score: a GAN policy that wins with a collapsed generator shows at a glance.
    columns = ["trial_id", "status", "epochs", key, f"best_{metric}", "synthetic_diversity"] + [
        k for k in experiment.searched_keys if k in trials]
    print("Top five (finished trials first):")
    print(ranked[columns].head(5).to_string(index=False, float_format=lambda v: f"{v:.4g}"))

    try:
        best = experiment.best(("complete",))
    except ResultsError:
        try:
            best = experiment.best(("pruned",))
            print("No trial ran all epochs; best_policy.yaml holds the best pruned trial.")
        except ResultsError:
            print("No trial produced a usable result; no best_policy.yaml written.")
            return ranked
    write_best_policy(experiment, best, command)
    print(f"Best policy ({best['trial_id']}, {metric}={best[key]:.4f}): "
          f"{experiment.path / BEST_POLICY_FILE}")
    print(gan_versus_baseline(experiment))
    return ranked


def uses_synthetic(experiment: Experiment, trials: pd.DataFrame) -> pd.Series:
    """Per trial: whether its policy adds synthetic images (synthetic_ratio > 0), i.e. trains a GAN."""
    if trials.empty:
        return pd.Series(dtype=bool, index=trials.index)
    return trials.apply(lambda row: adds_synthetic(experiment.config_of(row)), axis=1)


def gan_versus_baseline(experiment: Experiment) -> str:
    """One line: the best GAN policy and the best no-GAN policy on validation (Experiment.policy_trials), the
    question ganaug.evaluate then answers on the test split."""
    metric, key = experiment.metric, f"last_{experiment.metric}"
    parts = []
    for label, gan in (("GAN", True), ("no-GAN", False)):
        trials, pruned = experiment.policy_trials(gan)
        if trials.empty:
            parts.append(f"no {label} trial finished")
            continue
        best = trials.iloc[0]
        where = f"pruned at epoch {best['epochs']}, " if pruned else ""
        parts.append(f"best {label} policy {best['trial_id']} ({where}{metric}={best[key]:.4f})")
    return f"Validation: {'; '.join(parts)}. On the test split, over seeds: ganaug evaluate (next steps below)."


def next_steps(experiment_dir: str | Path, journal: str | Path | None = None) -> str:
    """The commands to run after a search, each on this experiment's folder; the Optuna dashboard's only when
    `journal` (the study's journal file) exists: a search on remote storage keeps none."""
    path = shlex.quote(str(experiment_dir))
    steps = [
        ("every trial's curves and sample grids; HPARAMS tab: each trial's policy beside its final metrics",
         f"tensorboard --logdir {path}"),
        ("the best GAN policy against the best no-GAN policy on the test split, over seeds",
         f"ganaug evaluate {path}"),
        ('the search explained, run into the experiment folder (from the repository; pip install -e ".[analysis]")',
         f"papermill analysis/pick_best_policy.ipynb {shlex.quote(str(Path(experiment_dir, 'pick_best_policy.ipynb')))}"
         f" -p RESULTS {path}"),
    ]
    if journal is not None and Path(journal).is_file():
        steps.append(('the Optuna study, live (pip install -e ".[dashboard]")',
                      f"optuna-dashboard {shlex.quote(str(journal))}"))
    return "Next steps:\n" + "\n".join(f"  # {why}\n  {command}" for why, command in steps)


def write_best_policy(experiment: Experiment, best: pd.Series, command: str | None) -> None:
    metric = experiment.metric
    last = experiment.curves[experiment.curves["trial_id"] == best["trial_id"]].iloc[-1]
    checkpoints = experiment.checkpoints_of(best)
    policy = {
        "experiment": experiment.meta["name"],
        "trial_id": str(best["trial_id"]),
        "status": str(best["status"]),
        "metric": {"name": metric, "mode": experiment.mode},
        "metrics": {k: _plain(last[k]) for k in names("policy") if k in last and not _missing(last[k])},
        "config": experiment.config_of(best),
        "data": experiment.meta["data"],
        "checkpoint": str(checkpoints[0]) if checkpoints else None,
        "reproduce": f"python -m ganaug.pipeline {experiment.path / BEST_POLICY_FILE}",
        "search_command": command or experiment.meta.get("command"),
    }
    atomic_write(experiment.path / BEST_POLICY_FILE, yaml.safe_dump(policy, sort_keys=False))


def _summary_value(last: pd.Series | dict[str, Any], name: str) -> Any:
    """A summary.csv cell: the last report's value of metric `name`; a bank key as text ("" when none), else a float
    (nan when none)."""
    value = last.get(name)
    if name == "generator_key":
        return value if isinstance(value, str) else ""
    return float(value) if value is not None else math.nan


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _missing(value) -> bool:
    return isinstance(value, float) and math.isnan(value)
