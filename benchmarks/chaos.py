"""Benchmark: a real search survives trial workers killed at random, and no trial and no result is lost.

A digits search (checkpoint every epoch, `max_failures` retries per trial) runs in this process while a thread
SIGKILLs random running trial workers at random times: the process Tune recorded for a trial (the `pid` of its
result.json), never a process of anyone else's search. At most `max_failures` kills per trial, so every trial
should still end complete or pruned. Then it checks what the search left behind: every trial Tune knows is in
summary.csv in a final state, every complete trial has all epochs, every trial's curve has no missing epoch,
and each retry resumed from a checkpoint (its first epoch is at least the last epoch reported before the kill,
or that one's predecessor whose checkpoint Tune may not have registered yet). Prints one JSON object.

    python benchmarks/chaos.py            # 6 trials x 6 epochs, up to 6 faults (a kill every 1-4 s)
    python benchmarks/chaos.py --quick    # 3 trials x 4 epochs, up to 2 faults, for the test suite
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

FINAL_STATES = ("complete", "pruned", "diverged")


def write_space(folder: Path, *, trials: int, epochs: int, max_failures: int, seed: int) -> Path:
    space = {
        "experiment": {"name": "chaos", "storage": str(folder), "num_samples": trials, "max_concurrent": 2,
                       "seed": seed, "resources": {"cpu": 1, "gpu": 0}, "max_failures": max_failures},
        # All of digits with a GAN: about a second an epoch on one core, so kills land mid-trial.
        "data": {"name": "digits", "val_fraction": 0.2},
        "metric": {"name": "val_acc", "mode": "max"},
        "scheduler": {"max_epochs": epochs, "grace_period": max(1, epochs // 2), "reduction_factor": 2},
        "fixed": {"classifier": "mlp", "classifier_width": 0.25, "gan_arch": "mlp", "gan_width": 0.25,
                  "batch_size": 64, "checkpoint_every": 1, "sample_every": 100, "cas_epochs": 0},
        "search": {"synthetic_ratio": {"choice": [0.25, 0.5]},
                   "classifier_lr": {"loguniform": [3.0e-4, 3.0e-3]}},
    }
    path = folder / "chaos.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def reports(trial: Path) -> list[dict]:
    """Tune's results of one trial, in order (a line cut short is skipped)."""
    records = []
    file = trial / "result.json"
    for line in file.read_text().splitlines() if file.is_file() else []:
        with contextlib.suppress(json.JSONDecodeError):
            records.append(json.loads(line))
    return records


def trial_folders(experiment: Path) -> dict[str, Path]:
    """trial_id -> trial folder (Tune names them train_trial_<id>_<n>_<params>_<date>)."""
    return {p.name.split("_")[2]: p for p in sorted(experiment.glob("train_trial_*")) if p.is_dir()}


def live_folder(experiment: Path) -> Path:
    """Where this process's Tune driver writes result.json first: a staging folder in Ray's session folder,
    copied to storage only every few checkpoints (so the storage copy can be epochs behind)."""
    import ray

    node = ray._private.worker._global_node if ray.is_initialized() else None
    if node is None:
        return experiment
    staged = sorted(Path(node.get_session_dir_path()).glob(f"artifacts/*/{experiment.name}/driver_artifacts"))
    return staged[-1] if staged else experiment


def is_ray_worker(pid: int) -> bool:
    try:
        return b"ray::" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class Chaos(threading.Thread):
    """Kills a random running trial's worker `gap` seconds (uniform) after the last kill, or as soon as one runs
    after that, `faults` times at most."""

    def __init__(self, experiment: Path, *, faults: int, gap: tuple[float, float], max_per_trial: int,
                 epochs: int, seed: int):
        super().__init__(daemon=True)
        self.experiment, self.faults, self.gap = experiment, faults, gap
        self.max_per_trial, self.epochs = max_per_trial, epochs
        self.random = random.Random(seed)
        self.stop = threading.Event()
        self.kills: list[dict] = []  # {trial, pid, epoch (last reported before the kill), seconds}
        self.started = time.monotonic()

    def run(self) -> None:
        while not self.stop.is_set() and len(self.kills) < self.faults:
            if self.stop.wait(self.random.uniform(*self.gap)):
                return
            # A trial is a victim only between its first report and its second-to-last epoch, a second or two
            # on a fast machine: poll until one is, so a kill is never skipped because the gap missed it.
            victims = self.running()
            while not victims and not self.stop.wait(0.1):
                victims = self.running()
            if victims:
                trial, pid, epoch = self.random.choice(victims)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    self.kills.append({"trial": trial, "pid": pid, "epoch": epoch,
                                       "seconds": round(time.monotonic() - self.started, 1)})

    def running(self) -> list[tuple[str, int, int]]:
        """(trial, pid, last epoch) of trials whose recorded process still runs, with epochs left to run."""
        found = []
        for trial, folder in trial_folders(live_folder(self.experiment)).items():
            records = reports(folder)
            if not records or records[-1].get("done") or records[-1]["epoch"] > self.epochs - 2:
                continue
            pid = records[-1]["pid"]
            killed = [k for k in self.kills if k["trial"] == trial]
            fresh = pid not in {k["pid"] for k in killed}  # a retry runs in a new process
            if len(killed) < self.max_per_trial and fresh and is_ray_worker(pid):
                found.append((trial, pid, records[-1]["epoch"]))
        return found


def check(experiment: Path, kills: list[dict], epochs: int) -> dict:
    """What the search left behind, against what Tune knows about its trials."""
    import pandas as pd
    from ray.tune import ExperimentAnalysis

    from ganaug.results import read_curve

    known = {t.trial_id: t for t in ExperimentAnalysis(str(experiment)).trials}
    summary = pd.read_csv(experiment / "summary.csv", dtype={"trial_id": str}).set_index("trial_id")
    folders = trial_folders(experiment)
    missing = sorted(set(known) - set(summary.index))
    unfinished = sorted(t for t in summary.index if summary.loc[t, "status"] not in FINAL_STATES)
    short = sorted(t for t in summary.index if summary.loc[t, "status"] == "complete"
                   and summary.loc[t, "epochs"] != epochs)
    holes = sorted(t for t in summary.index if t in folders and list(read_curve(folders[t]).get("epoch", []))
                   != list(range(1, summary.loc[t, "epochs"] + 1)))

    resumed, from_scratch, behind = 0, 0, []
    for kill in kills:
        records = reports(folders[kill["trial"]])
        pids = [r["pid"] for r in records]
        start = pids.index(kill["pid"]) if kill["pid"] in pids else len(records)
        later = [r for r in records[start:] if r["pid"] != kill["pid"]]
        if not later:
            continue  # the retry was killed again before it reported: the next kill covers it
        first = later[0]["epoch"]
        resumed += first > 1
        from_scratch += first == 1 and kill["epoch"] >= 2
        if first < kill["epoch"]:  # lost more than the one epoch Tune may not have registered yet
            behind.append({**kill, "resumed_at": first})
    statuses = summary["status"].value_counts().to_dict()
    return {
        "trials": len(known),
        "trials_in_summary": len(summary),
        "trials_finished": int(summary["status"].isin(FINAL_STATES).sum()),
        "statuses": {k: int(v) for k, v in statuses.items()},
        "tune_failures_recorded": int(sum(t.run_metadata.num_failures for t in known.values())),
        "restarts_from_checkpoint": int(resumed),
        "restarts_from_scratch_after_checkpoint": int(from_scratch),
        "restarts_behind_last_checkpoint": behind,
        "results_lost": len(missing) + len(unfinished) + len(short) + len(holes),
        "lost_detail": {"missing_from_summary": missing, "not_final": unfinished, "complete_but_short": short,
                        "curves_with_missing_epochs": holes},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 trials x 4 epochs, 2 faults (for CI)")
    parser.add_argument("--trials", type=int, help="trials in the search (default 6, quick 3)")
    parser.add_argument("--epochs", type=int, help="epochs per trial (default 6, quick 4)")
    parser.add_argument("--faults", type=int, help="SIGKILLs to inject (default 6, quick 2)")
    parser.add_argument("--max-failures", type=int, default=3, help="retries per trial (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the search and the kill schedule")
    parser.add_argument("--storage", help="folder for the experiment (default: a temporary one, removed)")
    args = parser.parse_args(argv)
    trials = args.trials or (3 if args.quick else 6)
    epochs = args.epochs or (4 if args.quick else 6)
    faults = args.faults if args.faults is not None else (2 if args.quick else 6)
    gap = (0.5, 1.5) if args.quick else (1.0, 4.0)

    folder = Path(args.storage) if args.storage else Path(tempfile.mkdtemp(prefix="ganaug-chaos-"))
    folder.mkdir(parents=True, exist_ok=True)
    experiment = folder / "chaos"
    space = write_space(folder, trials=trials, epochs=epochs, max_failures=args.max_failures, seed=args.seed)
    chaos = Chaos(experiment, faults=faults, gap=gap, max_per_trial=args.max_failures, epochs=epochs,
                  seed=args.seed)
    started = time.monotonic()
    try:
        from ganaug.search import main as search

        chaos.start()
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON figures
            code = search([str(space), "--num-cpus", "2"])
        chaos.stop.set()
        chaos.join()
        if code != 0:
            print(f"error: the search exited with {code}", file=sys.stderr)
            return 1
        figures = {"quick": args.quick, "max_epochs": epochs, "max_failures": args.max_failures,
                   "faults_injected": len(chaos.kills), **check(experiment, chaos.kills, epochs),
                   "kills": chaos.kills, "wall_seconds": round(time.monotonic() - started, 1)}
    finally:
        chaos.stop.set()
        if not args.storage:
            shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(figures))
    healthy = (figures["results_lost"] == 0 and figures["trials_finished"] == figures["trials"]
               and not figures["restarts_behind_last_checkpoint"]
               and figures["restarts_from_scratch_after_checkpoint"] == 0)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
