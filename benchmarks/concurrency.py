"""Benchmark: trials per hour with 1 vs 2 concurrent trials on a 2-core machine.

The same trials (quickstart space, random searcher with a fixed seed, FIFO: every trial runs all epochs)
run twice through `tune.build_tuner` on a local Ray of --num-cpus CPUs: once one at a time with all the
CPUs per trial (resources.cpu = 2, so tune.train_trial gives torch 2 threads), once two at a time with half
each (resources.cpu = 1, 1 torch thread each). Trials per hour = trials / seconds of `Tuner.fit`, which
includes everything a search pays per trial (worker start, imports, reports, checkpoints). Target: >= 1.6x.
Trial worker processes are reused as in the product (experiment.reuse_actors); --no-reuse-actors measures a
fresh process per trial. What limits the speedup is measured in the same run: the ceiling without Ray (four
of the trials run directly, one after the other with 2 threads each vs in pairs side by side with 1 thread
each, in warmed-up processes) and the CPU the Tune driver itself used. Prints one JSON object.

    python benchmarks/concurrency.py           # 24 quickstart trials of 9 epochs per setting (~2.5 min, 2 cores)
    python benchmarks/concurrency.py --quick   # 2 trials of 2 epochs on 30 images per class (the test suite)
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from search_efficiency import QUICKSTART, derived_space, emit, fit, machine, start_ray


def _direct_trial(config: dict, data_config: dict, threads: int, barrier, results) -> None:
    """Child process: load the data, warm up, wait for the sibling, then time pipeline.run on one trial."""
    import torch

    from ganaug.config import TrialConfig
    from ganaug.data import load_data
    from ganaug.trial import run

    torch.set_num_threads(threads)
    data = load_data(data_config)
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)], fused=True)  # the one-off torch._dynamo import
    barrier.wait()
    started = time.perf_counter()
    run(TrialConfig.from_dict(config), data, lambda *args, **kwargs: None)
    results.put(time.perf_counter() - started)


def direct_ceiling(configs: list[dict], data_config: dict, num_cpus: int) -> dict:
    """Trials without Ray: one after the other with all CPUs each vs in pairs side by side with half each."""
    context = multiprocessing.get_context("spawn")

    def together(batch: list[dict], threads: int) -> list[float]:
        barrier, results = context.Barrier(len(batch)), context.Queue()
        children = [context.Process(target=_direct_trial, args=(config, data_config, threads, barrier, results))
                    for config in batch]
        for child in children:
            child.start()
        seconds = [results.get() for _ in children]
        for child in children:
            child.join()
        return seconds

    alone = [together([config], num_cpus)[0] for config in configs]
    pairs = [together(configs[i:i + 2], max(1, num_cpus // 2)) for i in range(0, len(configs) - 1, 2)]
    # The ratio from the reported (rounded) times, so the JSON is consistent with itself even for the
    # sub-second trials of --quick.
    alone = [round(s, 3) for s in alone]
    pairs = [[round(s, 3) for s in pair] for pair in pairs]
    return {"one_at_a_time_seconds": alone, "side_by_side_seconds": pairs,
            "speedup": round(sum(alone[:2 * len(pairs)]) / sum(max(pair) for pair in pairs), 3)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 trials, 2 epochs, 30 images per class")
    parser.add_argument("--space", default=str(QUICKSTART), help="search-space YAML (default: quickstart)")
    parser.add_argument("--trials", type=int, default=24,
                        help="trials per setting (even, so both fill up; 24 = the quickstart's num_samples)")
    parser.add_argument("--epochs", type=int, default=None, help="override scheduler.max_epochs")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray (the machine's cores)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random searcher: the same trials twice")
    parser.add_argument("--no-reuse-actors", dest="reuse_actors", action="store_false",
                        help="a fresh worker process per trial (experiment.reuse_actors: false)")
    args = parser.parse_args(argv)
    scheduler, data_changes = {}, {}
    if args.quick:
        args.trials, scheduler, data_changes = 2, {"max_epochs": 2, "grace_period": 1}, {"samples_per_class": 30}
    if args.epochs:
        scheduler["max_epochs"] = args.epochs

    from ganaug.data import load_data

    folder = Path(tempfile.mkdtemp(prefix="ganaug_concurrency_"))
    settings = {}
    try:
        ray_seconds = start_ray(args.num_cpus)
        for concurrent in (1, 2):
            cpus = args.num_cpus // concurrent
            experiment = {"num_samples": args.trials, "max_concurrent": concurrent, "seed": args.seed,
                          "resources": {"cpu": cpus, "gpu": 0}}
            spec = derived_space(args.space, folder, f"concurrent{concurrent}", experiment=experiment,
                                 scheduler=scheduler, data=data_changes)
            data = load_data(spec.data)
            driver_cpu = resource.getrusage(resource.RUSAGE_SELF)
            results, seconds = fit(spec, data, searcher="random", scheduler="fifo", reuse_actors=args.reuse_actors)
            driver_cpu = sum(getattr(resource.getrusage(resource.RUSAGE_SELF), f) - getattr(driver_cpu, f)
                             for f in ("ru_utime", "ru_stime"))
            finished = [r for r in results if r.error is None and r.metrics.get("epoch") == spec.scheduler.max_epochs]
            trial_seconds = [r.metrics["time_total_s"] for r in finished]
            settings[concurrent] = {
                "trials_per_hour": round(len(finished) * 3600 / seconds, 1),
                "fit_seconds": round(seconds, 1),
                "trials_finished": len(finished),
                "trial_cpus": cpus,
                "torch_threads_per_trial": max(1, cpus),
                "median_trial_seconds": round(statistics.median(trial_seconds), 2) if trial_seconds else None,
                # Share of the machine's CPU time that the Tune driver (this process) used during fit().
                "driver_cpu_share": round(driver_cpu / (seconds * args.num_cpus), 3),
                "configs": sorted(repr(sorted(r.config.items())) for r in results),
            }
            if concurrent == 1:
                first = sorted(results, key=lambda r: r.metrics.get("trial_id", ""))[:4]
                ceiling_configs = [spec.trial_config(r.config).to_dict() for r in first]
                data_config = dict(spec.data)
    finally:
        import ray

        ray.shutdown()
    try:
        ceiling = direct_ceiling(ceiling_configs, data_config, args.num_cpus)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    one, two = settings[1], settings[2]
    same_trials = one.pop("configs") == two.pop("configs")
    speedup = two["trials_per_hour"] / one["trials_per_hour"] if one["trials_per_hour"] else None
    return emit({
        "trials_per_hour_1x2cpu": one["trials_per_hour"],
        "trials_per_hour_2x1cpu": two["trials_per_hour"],
        "speedup": round(speedup, 3) if speedup else None,
        "target_speedup": 1.6,
        "meets_target": bool(speedup and speedup >= 1.6),
        # The same comparison without Ray, on four of the same trials: what the cores allow at best.
        "direct_speedup_ceiling": ceiling["speedup"],
        "direct": ceiling,
        "same_trials": same_trials,
        "one_concurrent": one,
        "two_concurrent": two,
        "trials": args.trials,
        "epochs": spec.scheduler.max_epochs,
        "reuse_actors": args.reuse_actors,
        **machine(args.num_cpus, ray_seconds, args.space),
    })


if __name__ == "__main__":
    main()
