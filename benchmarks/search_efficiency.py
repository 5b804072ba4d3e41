"""Benchmark: Optuna TPE + ASHA (pruned trials told to Optuna as PRUNED) vs random search without pruning.

Both run the quickstart space (digits) through `tune.build_tuner`, two trials at a time, under the same
budget of trial-epochs (one trial-epoch = one reported epoch of one trial), for each of --seeds search
seeds: random + FIFO runs `--random-trials` whole trials; TPE + ASHA runs as many trials as ASHA lets it
until the same budget is spent. A result counts as found when a trial finished all its epochs (the product
picks its best policy from finished trials only). For every seed: the best val_acc each method finds, and
the trial-epochs each spent, in the order the results arrived, until a finished trial came within
--tolerance (0.5 points) of random search's best. Target: TPE + ASHA reaches the same best with at most 1/3
of the trial-epochs random search needs. Prints one JSON object.

    python benchmarks/search_efficiency.py           # 3 seeds x 2 methods x 144 trial-epochs (~4 min, 2 cores)
    python benchmarks/search_efficiency.py --quick   # 1 seed, 2 epochs per trial, tiny budget (the test suite)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml
from ray.tune.stopper import Stopper

from ganaug.space import SearchSpec, load_space

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"


# ----------------------------------------------------------------------------------------------
# Helpers shared by the Ray benchmarks (ray_overhead.py and concurrency.py import them).

def derived_space(base: str | Path, folder: str | Path, name: str, **sections: dict) -> SearchSpec:
    """The space file `base` with keys of its sections replaced, validated by `load_space` like any space.

    `sections` maps a section name (experiment, data, scheduler, fixed, search) to the keys that replace
    those of the file (a value None removes the key). The experiment gets `name` and stores its results
    under `folder`, where the derived YAML is written too.
    """
    raw = yaml.safe_load(Path(base).read_text())
    for section, changes in sections.items():
        merged = {**(raw.get(section) or {}), **changes}
        raw[section] = {key: value for key, value in merged.items() if value is not None}
    raw["experiment"].update(name=name, storage=str(Path(folder) / "results"))
    path = Path(folder) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_space(path)


def start_ray(num_cpus: int) -> float:
    """Start a local Ray of num_cpus CPUs (never join a running cluster); return the seconds it took."""
    import ray

    started = time.perf_counter()
    with stdout_to_stderr():
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level="WARNING")
    return time.perf_counter() - started


@contextlib.contextmanager
def stdout_to_stderr():
    """Send everything written to stdout (Tune's tables, forwarded worker output) to stderr, at the fd level,
    so that the script's stdout holds exactly one JSON object."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def fit(spec: SearchSpec, data, **build_kwargs):
    """Build the experiment through tune.build_tuner and run it; return (ResultGrid, seconds of fit())."""
    from ganaug.tune import build_tuner

    tuner = build_tuner(spec, data, **build_kwargs)
    started = time.perf_counter()
    with stdout_to_stderr():
        results = tuner.fit()
    return results, time.perf_counter() - started


def emit(result: dict) -> dict:
    print(json.dumps(result), flush=True)
    return result


# ----------------------------------------------------------------------------------------------
# The budget, and what each search found within it.

class TrialEpochBudget(Stopper):
    """Ends the experiment once `budget` trial-epochs have been reported; records every result in order.

    Tune calls a stopper on the driver for each result as it arrives, so `records` is the search's own
    timeline: (trial id, epoch, metric). Tune hands a finished trial's last result over twice (the second
    time marked done); it counts once. GAN pretraining passes (epoch 0) are not trial-epochs.
    """

    def __init__(self, budget: int, metric: str):
        self.budget = budget
        self.metric = metric
        self.records: list[tuple[str, int, float]] = []
        self._seen: set[tuple[str, int]] = set()

    def __call__(self, trial_id: str, result: dict) -> bool:
        key = (trial_id, int(result["epoch"]))
        # GAN pretraining passes report as epoch 0: the budget counts classifier epochs, as ASHA's rungs do.
        if key[1] >= 1 and key not in self._seen:
            self._seen.add(key)
            self.records.append((*key, float(result.get(self.metric, float("nan")))))
        return False  # single trials are the scheduler's business

    def stop_all(self) -> bool:
        return len(self.records) >= self.budget


def summarise(records: list, budget: int, max_epochs: int, target: float | None) -> dict:
    """Best finished val_acc within the budget, and the trial-epochs spent until a finished trial hit target."""
    records = records[:budget]  # results that arrived while the experiment was being stopped do not count
    finished = [(spent, value) for spent, (_, epoch, value) in enumerate(records, 1) if epoch == max_epochs]
    best = max((value for _, value in finished), default=None)
    reached = next((spent for spent, value in finished if target is not None and value >= target), None)
    return {
        "best_val_acc": best,
        "best_val_acc_any_epoch": max((value for *_, value in records), default=None),
        "trial_epochs_to_target": reached,
        "trial_epochs": len(records),
        "trials": len({trial_id for trial_id, *_ in records}),
        "trials_finished": len(finished),
        # How common a target-level policy is among finished trials: the more common, the less a smarter
        # search can save (the first finished trial already costs max_epochs for every method).
        "share_finished_at_target": round(sum(value >= target for _, value in finished) / len(finished), 3)
        if finished and target is not None else None,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs, a tiny budget (the test suite)")
    parser.add_argument("--space", default=str(QUICKSTART), help="search-space YAML (default: quickstart)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="search seeds")
    parser.add_argument("--random-trials", type=int, default=16,
                        help="trials of random search; budget = random_trials x max_epochs trial-epochs")
    parser.add_argument("--max-epochs", type=int, default=None, help="override scheduler.max_epochs")
    parser.add_argument("--tolerance", type=float, default=0.005, help="'same best': within this of random's")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray")
    args = parser.parse_args(argv)
    scheduler, data_changes = {}, {}
    if args.quick:
        args.seeds, args.random_trials = [0], 2
        scheduler = {"max_epochs": 2, "grace_period": 1, "reduction_factor": 2}
        data_changes = {"samples_per_class": 30}
    if args.max_epochs:
        scheduler["max_epochs"] = args.max_epochs

    from ganaug.data import load_data

    folder = Path(tempfile.mkdtemp(prefix="ganaug_search_efficiency_"))
    base = derived_space(args.space, folder, "base", scheduler=scheduler, data=data_changes)
    max_epochs = base.scheduler.max_epochs
    budget = args.random_trials * max_epochs
    data = load_data(base.data)
    started = time.perf_counter()
    ray_seconds = start_ray(args.num_cpus)
    runs = []
    try:
        for seed in args.seeds:
            per_seed = {"seed": seed}
            target = None
            for method, searcher, trial_scheduler, num_samples in METHODS:
                # ASHA's searcher may propose many more trials than the budget pays for; the budget ends it.
                trials = args.random_trials if num_samples is None else num_samples * args.random_trials
                spec = derived_space(args.space, folder, f"{method}-seed{seed}", scheduler=scheduler,
                                     data=data_changes, experiment={"seed": seed, "num_samples": trials})
                budget_stopper = TrialEpochBudget(budget, spec.metric.name)
                # Trial worker processes are reused (the product's default, experiment.reuse_actors); trial-epochs,
                # what is compared, do not depend on it.
                _, seconds = fit(spec, data, searcher=searcher, scheduler=trial_scheduler, stop=budget_stopper)
                summary = summarise(budget_stopper.records, budget, max_epochs, target)
                if target is None:  # the first method is the no-pruning reference that sets the target
                    target = summary["best_val_acc"] - args.tolerance if summary["best_val_acc"] is not None \
                        else None
                    summary = summarise(budget_stopper.records, budget, max_epochs, target)
                per_seed[method] = {**summary, "seconds": round(seconds, 1)}
            reference, pruned = per_seed[METHODS[0][0]], per_seed[METHODS[1][0]]
            per_seed["target_val_acc"] = target
            per_seed["epochs_ratio"] = (
                round(pruned["trial_epochs_to_target"] / reference["trial_epochs_to_target"], 3)
                if pruned["trial_epochs_to_target"] and reference["trial_epochs_to_target"] else None)
            runs.append(per_seed)
    finally:
        import ray

        ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)

    ratios = [run["epochs_ratio"] for run in runs]
    reached = [ratio for ratio in ratios if ratio is not None]
    names = [method for method, *_ in METHODS]
    return emit({
        "best_val_acc": {name: [run[name]["best_val_acc"] for run in runs] for name in names},
        "trial_epochs_to_target": {name: [run[name]["trial_epochs_to_target"] for run in runs] for name in names},
        "share_finished_at_target": {name: [run[name]["share_finished_at_target"] for run in runs] for name in names},
        "epochs_ratio": ratios,
        "wall_seconds": {name: [run[name]["seconds"] for run in runs] for name in names},
        "median_epochs_ratio": statistics.median(reached) if len(reached) == len(ratios) and reached else None,
        "same_best": all(run[names[1]]["best_val_acc"] is not None and run["target_val_acc"] is not None
                         and run[names[1]]["best_val_acc"] >= run["target_val_acc"] for run in runs),
        "target": "tpe_asha reaches random_fifo's best (within tolerance) with <= 1/3 of its trial-epochs",
        "meets_target": bool(reached) and len(reached) == len(ratios) and statistics.median(reached) <= 1 / 3,
        "runs": runs,
        "budget_trial_epochs": budget,
        "max_epochs": max_epochs,
        "tolerance": args.tolerance,
        "seeds": args.seeds,
        "space": os.path.relpath(args.space, ROOT) if Path(args.space).is_relative_to(ROOT) else args.space,
        "ray_start_seconds": round(ray_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "num_cpus": args.num_cpus,
    })


# The two searches compared: (name, searcher, scheduler, num_samples as a multiple of --random-trials or None).
METHODS = (
    ("random_fifo", "random", "fifo", None),
    ("tpe_asha", "tpe", "asha", 8),
)

if __name__ == "__main__":
    main()
