"""Benchmark: what `experiment.deterministic` costs in wall time, against the same search without it.

The quickstart space (TPE + ASHA, the product), 2 trials at a time with one CPU each on a local Ray of 2 CPUs, run
--repeats times each way, alternating (default, deterministic, default, ...) in one Ray so that the machine's drift
reaches both alike; each run is `Tuner.fit` of a fresh experiment built by `tune.build_tuner`, timed. Ratio = the
deterministic runs' seconds over the default runs' (target <= 1.25). Also reported: whether the deterministic runs
ended with the same trials (every searched key, status, epochs reached, val_acc, test_acc), whether the default
runs did, and how many worker processes each run started. Prints one JSON object.

    python benchmarks/deterministic.py           # 24 quickstart trials, 2 runs each way (~6 min, 2 cores)
    python benchmarks/deterministic.py --quick   # 4 trials of 2 epochs on 30 images per class, 1 run each way
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from search_efficiency import QUICKSTART, derived_space, emit, fit, machine, start_ray

TARGET = 1.25


def outcome(results, max_epochs: int) -> list[tuple]:
    """The trials of one run as summary.csv states them, sorted: params, status, epochs reached, val_acc, test_acc."""
    rows = []
    for result in results:
        metrics = result.metrics or {}
        epochs = metrics.get("epoch", 0)
        status = "error" if result.error else "diverged" if metrics.get("diverged") else \
            "complete" if epochs == max_epochs else "pruned"
        rows.append((sorted(result.config.items()), status, epochs, metrics.get("val_acc"), metrics.get("test_acc")))
    return sorted(rows, key=repr)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 trials of 2 epochs, 30 images per class, 1 run each")
    parser.add_argument("--space", default=str(QUICKSTART), help="search-space YAML (default: quickstart)")
    parser.add_argument("--repeats", type=int, default=2, help="runs each way")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray (the machine's cores)")
    args = parser.parse_args(argv)
    experiment = {"max_concurrent": 2, "resources": {"cpu": max(1, args.num_cpus // 2), "gpu": 0}}
    scheduler, data_changes = {}, {}
    if args.quick:
        args.repeats = 1
        experiment["num_samples"] = 4
        scheduler, data_changes = {"max_epochs": 2, "grace_period": 1}, {"samples_per_class": 30}

    from ganaug.data import load_data
    from ganaug.search.ordered import horizon

    folder = Path(tempfile.mkdtemp(prefix="ganaug_deterministic_"))
    runs: dict[str, list] = {"default": [], "deterministic": []}
    try:
        ray_seconds = start_ray(args.num_cpus)
        for repeat in range(args.repeats):
            for mode in runs:
                spec = derived_space(args.space, folder, f"{mode}{repeat}", scheduler=scheduler, data=data_changes,
                                     experiment={**experiment, "deterministic": mode == "deterministic"})
                results, seconds = fit(spec, load_data(spec.data))
                processes = len({result.metrics.get("pid") for result in results})  # Tune's trial workers
                runs[mode].append((round(seconds, 1), outcome(results, spec.scheduler.max_epochs), processes))
    finally:
        import ray

        ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)

    def figures(mode: str) -> dict:
        return {"fit_seconds": [seconds for seconds, _, _ in runs[mode]],
                "trials": [len(trials) for _, trials, _ in runs[mode]],
                "pruned": [sum(row[1] == "pruned" for row in trials) for _, trials, _ in runs[mode]],
                "best_val_acc": [max((row[3] for row in trials if row[1] == "complete"), default=None)
                                 for _, trials, _ in runs[mode]],
                "worker_processes": [processes for _, _, processes in runs[mode]],
                # None with one run: nothing to compare
                "runs_same": all(run[1] == runs[mode][0][1] for run in runs[mode]) if args.repeats > 1 else None}

    default, deterministic = figures("default"), figures("deterministic")
    ratio = round(sum(deterministic["fit_seconds"]) / sum(default["fit_seconds"]), 3)
    return emit({
        "ratio": ratio,
        "target_ratio": TARGET,
        "meets_target": ratio <= TARGET,
        "deterministic_runs_same": deterministic["runs_same"],
        "default_runs_same": default["runs_same"],
        "default": default,
        "deterministic": deterministic,
        "max_concurrent": experiment["max_concurrent"],
        "horizon": horizon(experiment["max_concurrent"]),
        "repeats": args.repeats,
        "trials_per_run": spec.experiment.num_samples,
        "epochs": spec.scheduler.max_epochs,
        **machine(args.num_cpus, ray_seconds, args.space),
    })


if __name__ == "__main__":
    main()
