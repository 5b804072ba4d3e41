"""Benchmark: which search finds a good augmentation policy with the fewest trial-epochs, where good ones are rare.

Four searches, each under the same budget of trial-epochs (one trial-epoch = one reported classifier epoch of
one trial), two trials at a time, for each of --seeds search seeds, on benchmarks/search_matters.yaml (wide
ranges, a `when:` block, GAN settings that hurt when wrong): random + FIFO (`--random-trials` whole trials: the
budget), random + ASHA, Ray's stock OptunaSearch + ASHA (an ASHA-stopped trial reaches Optuna as COMPLETE with its
early score), and ganaug's honest TPE + ASHA (PRUNED, with its intermediate values). A policy counts as found when
a trial finished all its epochs (the product picks its best policy from finished trials only). Per seed and
method: the best val_acc, and the trial-epochs spent, in the order results arrived, until a finished trial came
within --tolerance (0.5 points) of the best any method found. Target: honest TPE + ASHA needs <= 1/3 of the
trial-epochs random + FIFO needs (median over seeds), and fewer than stock OptunaSearch + ASHA on >= 2 of 3 seeds.

ASHA's bias against slow starters is measured on random + FIFO's full learning curves: ASHA is replayed on them
(Ray's asynchronous rule, in the order the results arrived) for several grace periods, reduction factors and
rankings, and the share of the policies that are best at the last epoch (within --tolerance of the run's best)
that the replay stops at an early rung is reported, overall and for augmented policies (traditional_aug set).

    python benchmarks/search_efficiency.py           # 3 seeds x 4 searches x 480 trial-epochs (~30 min, 2 cores)
    python benchmarks/search_efficiency.py --quick   # 1 seed, 2 epochs per trial, tiny budget (the test suite)

Prints one JSON object; writes it and a plot (best finished val_acc so far against trial-epochs, one line per
method and seed) to --out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from ray.tune.stopper import Stopper

from ganaug.space import SearchSpec, load_space

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"
SEARCH_MATTERS = ROOT / "benchmarks" / "search_matters.yaml"


# ----------------------------------------------------------------------------------------------
# Helpers shared by the Ray benchmarks (ray_overhead.py and concurrency.py import them).

def derived_space(base: str | Path, folder: str | Path, name: str, **sections: dict) -> SearchSpec:
    """The space file `base` with keys of its sections replaced, validated by `load_space` like any space.

    `sections` maps a section name (experiment, data, scheduler, fixed, search) to the keys that replace
    those of the file (a value None removes the key; a searched key leaves `fixed`). The experiment gets `name`
    and stores its results under `folder`, where the derived YAML is written too.
    """
    raw = yaml.safe_load(Path(base).read_text())
    for section, changes in sections.items():
        merged = {**(raw.get(section) or {}), **changes}
        raw[section] = {key: value for key, value in merged.items() if value is not None}
    # A key the derived space searches is no longer fixed (the quickstart fixes its one generator's keys).
    raw["fixed"] = {key: value for key, value in (raw.get("fixed") or {}).items() if key not in raw.get("search", {})}
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
    from ganaug.search import build_tuner
    from ganaug.search.trackers import own_loggers

    tuner = build_tuner(spec, data, **build_kwargs)
    started = time.perf_counter()
    with stdout_to_stderr(), own_loggers():  # the loggers a search has, no more (build_tuner)
        results = tuner.fit()
    return results, time.perf_counter() - started


def machine(num_cpus: int, ray_seconds: float, space: str | Path) -> dict:
    """Where a Ray benchmark ran: its local Ray's CPUs, the machine's, Ray's start, the space (from the repository)."""
    return {"num_cpus": num_cpus, "machine_cpus": os.cpu_count(), "ray_start_seconds": round(ray_seconds, 1),
            "space": os.path.relpath(space, ROOT)}


def emit(result: dict) -> dict:
    print(json.dumps(result), flush=True)
    return result




# ----------------------------------------------------------------------------------------------
# The budget, and what each search found within it.

class TrialEpochBudget(Stopper):
    """Ends the experiment once `budget` trial-epochs have been reported; records every result in order.

    Tune calls a stopper on the driver for each result as it arrives, so `records` is the search's own
    timeline: (trial id, epoch, metric). Tune hands a finished trial's last result over twice (the second
    time marked done); it counts once. GAN pretraining passes (epoch 0) are not trial-epochs. `augmented`
    holds the trials whose policy uses traditional augmentation.
    """

    def __init__(self, budget: int, metric: str):
        self.budget = budget
        self.metric = metric
        self.records: list[tuple[str, int, float]] = []
        self.augmented: set[str] = set()
        self._seen: set[tuple[str, int]] = set()

    def __call__(self, trial_id: str, result: dict) -> bool:
        key = (trial_id, int(result["epoch"]))
        # GAN pretraining passes report as epoch 0: the budget counts classifier epochs, as ASHA's rungs do.
        if key[1] >= 1 and key not in self._seen:
            self._seen.add(key)
            self.records.append((*key, float(result.get(self.metric, float("nan")))))
            if (result.get("config") or {}).get("traditional_aug", "none") != "none":
                self.augmented.add(trial_id)
        return False  # single trials are the scheduler's business

    def stop_all(self) -> bool:
        return len(self.records) >= self.budget


def finished_results(records: list, budget: int, max_epochs: int) -> list[tuple[int, float]]:
    """(trial-epochs spent when it arrived, val_acc) of every trial that ran all epochs within the budget."""
    return [(spent, value) for spent, (_, epoch, value) in enumerate(records[:budget], 1) if epoch == max_epochs]


def summarise(records: list, budget: int, max_epochs: int, target: float) -> dict:
    """Best finished val_acc within the budget, and the trial-epochs spent until a finished trial hit target."""
    records = records[:budget]  # results that arrived while the experiment was being stopped do not count
    finished = finished_results(records, budget, max_epochs)
    best, curve = None, []
    for spent, value in finished:  # best finished val_acc so far: the plot's line
        if best is None or value > best:
            best = value
            curve.append((spent, value))
    return {
        "best_val_acc": best,
        "trial_epochs_to_target": next((spent for spent, value in finished if value >= target), None),
        "trial_epochs": len(records),
        "trials": len({trial_id for trial_id, *_ in records}),
        "trials_finished": len(finished),
        # How common a target-level policy is among finished trials: the more common, the less a smarter
        # search can save (the first finished trial already costs max_epochs for every method).
        "share_finished_at_target": round(sum(value >= target for _, value in finished) / len(finished), 3)
        if finished else None,
        "best_so_far": curve,
    }


# ----------------------------------------------------------------------------------------------
# ASHA replayed on complete learning curves: whom would it have stopped?

def asha_rungs(max_epochs: int, grace_period: int, reduction_factor: float) -> list[int]:
    """The epochs at which Ray's ASHAScheduler (one bracket) decides, as its _Bracket computes them."""
    count = int(math.log(max_epochs / grace_period) / math.log(reduction_factor) + 1)
    return [rung for k in range(count) if (rung := grace_period * reduction_factor ** k) < max_epochs]


RANKINGS = {
    # What a rung compares: the value at the rung (Ray's ASHA), or the best value so far.
    "last": lambda curve: curve[-1],
    "best": lambda curve: max(curve),
}


def replay_asha(records: list, max_epochs: int, grace_period: int, reduction_factor: float,
                ranking: str = "last") -> dict[str, int]:
    """{trial id: epoch at which ASHA would have stopped it} for trials ASHA stops before max_epochs.

    Results are replayed in the order they arrived, with Ray's rule: at each rung a trial continues unless its
    value is below the (1 - 1/reduction_factor) quantile of the values recorded at that rung before it.
    """
    rungs = asha_rungs(max_epochs, grace_period, reduction_factor)
    recorded: dict[int, list[float]] = {rung: [] for rung in rungs}
    curves: dict[str, list[float]] = {}
    stopped: dict[str, int] = {}
    for trial_id, epoch, value in records:
        if trial_id in stopped:
            continue
        curves.setdefault(trial_id, []).append(value)
        rung = next((rung for rung in reversed(rungs) if epoch >= rung), None)
        if rung is None or epoch != rung:
            continue
        score = RANKINGS[ranking](curves[trial_id])
        earlier = recorded[rung]
        if earlier and score < float(np.nanpercentile(earlier, (1 - 1 / reduction_factor) * 100)):
            stopped[trial_id] = epoch
        earlier.append(score)
    return stopped


def asha_bias(runs: list[dict], max_epochs: int, tolerance: float, settings) -> list[dict]:
    """For each (grace, reduction factor, ranking): share of last-epoch-best policies the replay stops early.

    runs: per seed, random + FIFO's records and augmented trial ids. "Last-epoch-best": the trials whose val_acc at
    max_epochs is within `tolerance` of the best of their run; "top quarter": the best 25 % at max_epochs.
    """
    rows = []
    for grace, factor, ranking in settings:
        counts = {"best": [0, 0], "best_augmented": [0, 0], "top_quarter": [0, 0], "top_quarter_augmented": [0, 0]}
        for run in runs:
            final = {trial_id: value for trial_id, epoch, value in run["records"] if epoch == max_epochs}
            if not final:
                continue
            stopped = replay_asha(run["records"], max_epochs, grace, factor, ranking)
            best = max(final.values())
            ranked = sorted(final, key=final.get, reverse=True)
            groups = {"best": [t for t in ranked if final[t] >= best - tolerance],
                      "top_quarter": ranked[:max(1, len(ranked) // 4)]}
            for name, trials in groups.items():
                for suffix, members in (("", trials), ("_augmented", [t for t in trials if t in run["augmented"]])):
                    counts[name + suffix][0] += sum(t in stopped for t in members)
                    counts[name + suffix][1] += len(members)
        rows.append({"grace_period": grace, "reduction_factor": factor, "ranking": ranking,
                     "rungs": asha_rungs(max_epochs, grace, factor),
                     **{f"stopped_{name}": round(k / n, 3) if n else None for name, (k, n) in counts.items()},
                     **{f"n_{name}": n for name, (_, n) in counts.items()}})
    return rows


# ----------------------------------------------------------------------------------------------
# The run.

# The searches compared: name -> (searcher, scheduler). The first is the reference without a model or pruning.
METHODS = {
    "random_fifo": ("random", "fifo"),
    "random_asha": ("random", "asha"),
    "stock_tpe_asha": ("stock_tpe", "asha"),
    "tpe_asha": ("tpe", "asha"),
}
# ASHA settings replayed on random + FIFO's curves (grace period, reduction factor, ranking).
REPLAYED = [(grace, factor, ranking) for grace in (1, 2, 3, 4) for factor in (2, 3, 4) for ranking in RANKINGS]


def plot(runs: list[dict], budget: int, path: Path) -> None:
    """Best finished val_acc so far against trial-epochs: one panel per seed, a colour per method, the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 4), sharey=True, squeeze=False)
    colours = dict(zip(METHODS, ("tab:gray", "tab:blue", "tab:orange", "tab:green")))
    targets = [run["target_val_acc"] for run in runs if run.get("target_val_acc") is not None]
    for axis, run in zip(axes[0], runs):
        for method in METHODS:
            curve = run.get(method, {}).get("best_so_far") or []
            if curve:
                xs = [spent for spent, _ in curve] + [budget]
                ys = [value for _, value in curve] + [curve[-1][1]]
                axis.step(xs, ys, where="post", color=colours[method], label=method)
        if run.get("target_val_acc") is not None:
            axis.axhline(run["target_val_acc"], color="black", linewidth=0.6, linestyle="--", label="target")
        axis.set_title(f"seed {run['seed']}")
        axis.set_xlabel("trial-epochs spent")
    if targets:  # the interesting range: a few points below the targets (first finished trials can be far lower)
        axes[0][0].set_ylim(min(targets) - 0.05, 1.005)
    axes[0][0].set_ylabel("best val_acc of a finished trial")
    axes[0][0].legend(fontsize=8, loc="lower right")
    figure.suptitle("Best finished policy so far, same trial-epoch budget (target: best found - tolerance)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs, a tiny budget (the test suite)")
    parser.add_argument("--space", default=str(SEARCH_MATTERS), help="search-space YAML (default: search_matters)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="search seeds")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS),
                        help="searches to run (random_fifo always runs, unless --reference gives its figures)")
    parser.add_argument("--reference", help="JSON of an earlier full run on the same space and budget: its per-seed "
                        "targets, and its results for the methods not run now (e.g. to compare sampler settings)")
    parser.add_argument("--random-trials", type=int, default=40,
                        help="trials of random + FIFO; budget = random_trials x max_epochs trial-epochs")
    parser.add_argument("--max-epochs", type=int, default=None, help="override scheduler.max_epochs")
    parser.add_argument("--grace-period", type=int, default=None, help="override scheduler.grace_period")
    parser.add_argument("--reduction-factor", type=float, default=None, help="override scheduler.reduction_factor")
    parser.add_argument("--sampler", nargs="*", default=[], metavar="KEY=VALUE",
                        help="experiment.sampler settings of both TPE searches, e.g. group=true n_startup_trials=5")
    parser.add_argument("--tolerance", type=float, default=0.005, help="'same best': within this of the best found")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray")
    parser.add_argument("--out", help="JSON path; the plot goes beside it (default: search_efficiency.json)")
    args = parser.parse_args(argv)
    scheduler, data_changes = {}, {}
    if args.quick:
        args.seeds, args.random_trials = [0], 2
        scheduler = {"max_epochs": 2, "grace_period": 1, "reduction_factor": 2}
        data_changes = {"samples_per_class": 30}
    for key, value in (("max_epochs", args.max_epochs), ("grace_period", args.grace_period),
                       ("reduction_factor", args.reduction_factor)):
        if value:
            scheduler[key] = value
    sampler = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.sampler)}
    if args.out is None:
        args.out = str(Path(tempfile.mkdtemp(prefix="search_efficiency_")) / "search_efficiency.json") \
            if args.quick else "search_efficiency.json"
    reference = {run["seed"]: run for run in json.loads(Path(args.reference).read_text())["runs"]} \
        if args.reference else {}
    ran = args.methods if reference else ["random_fifo"] + [m for m in args.methods if m != "random_fifo"]
    methods = [method for method in METHODS if method in ran or reference]

    from ganaug.data import load_data

    folder = Path(tempfile.mkdtemp(prefix="ganaug_search_efficiency_"))
    base = derived_space(args.space, folder, "base", scheduler=scheduler, data=data_changes)
    max_epochs = base.scheduler.max_epochs
    budget = args.random_trials * max_epochs
    data = load_data(base.data)
    started = time.perf_counter()
    ray_seconds = start_ray(args.num_cpus)
    runs, replays = [], []
    try:
        for seed in args.seeds:
            per_seed, records = {"seed": seed}, {}
            for method in [method for method in methods if method in ran]:
                searcher, trial_scheduler = METHODS[method]
                # ASHA's searcher may propose many more trials than the budget pays for; the budget ends it.
                trials = args.random_trials * (1 if trial_scheduler == "fifo" else 8)
                experiment = {"seed": seed, "num_samples": trials}
                if sampler:
                    experiment["sampler"] = {**base.experiment.sampler.model_dump(), **sampler}
                spec = derived_space(args.space, folder, f"{method}-seed{seed}", scheduler=scheduler,
                                     data=data_changes, experiment=experiment)
                budget_stopper = TrialEpochBudget(budget, spec.metric.name)
                # Trial worker processes are reused (the product's default, experiment.reuse_actors); trial-epochs,
                # what is compared, do not depend on it.
                _, seconds = fit(spec, data, searcher=searcher, scheduler=trial_scheduler, stop=budget_stopper)
                records[method] = budget_stopper
                per_seed[method] = {"seconds": round(seconds, 1)}
            # The target: the best any method found, less the tolerance (with --reference: the reference's).
            bests = [value for stopper in records.values()
                     for _, value in finished_results(stopper.records, budget, max_epochs)]
            target = max(bests) - args.tolerance if bests else float("inf")
            if reference:
                target = reference[seed]["target_val_acc"]
                per_seed.update({method: {**reference[seed][method], "from_reference": True}
                                 for method in methods if method not in records})
            per_seed["target_val_acc"] = round(target, 4) if target != float("inf") else None
            for method, stopper in records.items():
                per_seed[method] = {**summarise(stopper.records, budget, max_epochs, target), **per_seed[method]}
            fifo = per_seed["random_fifo"]["trial_epochs_to_target"]
            for method in methods[1:]:
                spent = per_seed[method]["trial_epochs_to_target"]
                # Against random + FIFO; when it never got there, the budget bounds what it would have needed.
                per_seed[method]["epochs_ratio"] = round(spent / fifo, 3) if spent and fifo else None
                per_seed[method]["epochs_ratio_at_most"] = round(spent / (fifo or budget), 3) if spent else None
            if "random_fifo" in records:
                replays.append({"records": records["random_fifo"].records[:budget],
                                "augmented": records["random_fifo"].augmented})
            runs.append(per_seed)
    finally:
        import ray

        ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)

    def per_method(key: str) -> dict:
        return {method: [run[method][key] for run in runs] for method in methods}

    honest = [run["tpe_asha"]["epochs_ratio_at_most"] for run in runs] if "tpe_asha" in methods else []
    versus_stock = [
        run["tpe_asha"]["trial_epochs_to_target"] is not None and (
            run["stock_tpe_asha"]["trial_epochs_to_target"] is None
            or run["tpe_asha"]["trial_epochs_to_target"] < run["stock_tpe_asha"]["trial_epochs_to_target"])
        for run in runs] if {"tpe_asha", "stock_tpe_asha"} <= set(methods) else []
    bias = asha_bias(replays, max_epochs, args.tolerance, REPLAYED if not args.quick else [(1, 2, "last")])
    current = base.scheduler
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "best_val_acc": per_method("best_val_acc"),
        "trial_epochs_to_target": per_method("trial_epochs_to_target"),
        "share_finished_at_target": per_method("share_finished_at_target"),
        "trials": per_method("trials"),
        "wall_seconds": per_method("seconds"),
        "median_epochs_ratio_at_most": statistics.median(r for r in honest if r is not None)
        if honest and None not in honest else None,
        "tpe_asha_beats_stock": versus_stock,
        "meets_target": bool(honest) and None not in honest and statistics.median(honest) <= 1 / 3,
        "meets_target_versus_stock": sum(versus_stock) >= 2 if len(versus_stock) >= 3 else None,
        "target": "tpe_asha reaches the best found (within tolerance) with <= 1/3 of random_fifo's trial-epochs "
                  "(median); fewer trial-epochs than stock_tpe_asha on >= 2 of 3 seeds",
        "asha_bias": bias,
        # random + FIFO's complete curves, in arrival order, so other ASHA settings can be replayed later.
        "fifo_curves": [{"records": replay["records"], "augmented": sorted(replay["augmented"])} for replay in replays],
        "asha_bias_current": next((row for row in bias if (row["grace_period"], row["reduction_factor"],
                                                           row["ranking"]) == (current.grace_period,
                                                                               current.reduction_factor, "last")),
                                  None),
        "runs": runs,
        "budget_trial_epochs": budget,
        "max_epochs": max_epochs,
        "scheduler": current.model_dump(),
        "sampler": {**base.experiment.sampler.model_dump(), **sampler},
        "reference": args.reference,
        "tolerance": args.tolerance,
        "seeds": args.seeds,
        "space": os.path.relpath(args.space, ROOT) if Path(args.space).is_relative_to(ROOT) else args.space,
        "ray_start_seconds": round(ray_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "num_cpus": args.num_cpus,
        "json": str(out),
        "plot": str(out.with_suffix(".png")),
    }
    plot(runs, budget, out.with_suffix(".png"))
    out.write_text(json.dumps(result, indent=1))
    return emit(result)


if __name__ == "__main__":
    main()
