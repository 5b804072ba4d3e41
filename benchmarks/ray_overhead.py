"""Benchmark: what Ray Tune adds to one trial: the same trial through a one-trial Tune experiment vs direct.

The trial is one point of the quickstart space (every searched key a single choice), so the Tune side is
the product's own path: `tune.build_tuner` -> `tune.with_parameters(tune.train_trial, data=...)` ->
`pipeline.run` in a Ray worker with the trial's CPU share, TrialReporter (jsonl, TensorBoard, sample PNGs)
and Tune checkpoints every `checkpoint_every` epochs. The direct side calls `pipeline.run` on the same
config, seed, epochs and torch threads in this process, with a report callback that only collects metrics.
Same process, same run, alternating, fastest of --repeats each. Figures: the trial's own time (Tune's
`time_total_s` vs the direct run's wall time; target <= 1.10x) and end to end (Ray start + `Tuner.fit`).
Prints one JSON object.

    python benchmarks/ray_overhead.py           # quickstart point, 9 epochs, 2 repeats
    python benchmarks/ray_overhead.py --cifar-images 4096 --epochs 12   # a trial with epochs of seconds
    python benchmarks/ray_overhead.py --quick   # 2 epochs on 30 images per class, 1 repeat (the test suite)
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from search_efficiency import QUICKSTART, derived_space, emit, fit, start_ray
from trial_throughput import random_image_data

from ganaug.space import load_space
from ganaug.trial import run

# The trial: one policy of the quickstart space, with GAN data (the no-GAN baseline would time less code).
POLICY = {
    "gan": "acgan",
    "synthetic_ratio": 0.5,
    "labeling": "pseudo",
    "d_real_fraction": 0.5,
    "d_mix_schedule": "fixed",
    "gan_lr": 5.0e-4,
    "classifier_lr": 1.0e-3,
    "gan_warmup_epochs": 0,
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs, 30 images per class (the test suite)")
    parser.add_argument("--space", default=str(QUICKSTART), help="search-space YAML the trial comes from")
    parser.add_argument("--epochs", type=int, default=None, help="override scheduler.max_epochs")
    parser.add_argument("--cpus", type=float, default=1, help="the trial's CPU share (torch threads = floor)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per side, fastest counts")
    parser.add_argument("--cifar-images", type=int, default=None,
                        help="train on this many random CIFAR-shaped images instead of the space's dataset "
                             "(longer epochs, as in a real search)")
    args = parser.parse_args(argv)
    scheduler, data_changes = {}, {}
    if args.quick:
        scheduler, data_changes, args.repeats = {"max_epochs": 2, "grace_period": 1}, {"samples_per_class": 30}, 1
    if args.epochs:
        scheduler["max_epochs"] = args.epochs

    from ganaug.data import load_data

    folder = Path(tempfile.mkdtemp(prefix="ganaug_ray_overhead_"))
    # Exactly POLICY: the space's other searched keys are dropped, so both sides run one and the same trial.
    search = {**{key: None for key in load_space(args.space).search},
              **{key: {"choice": [value]} for key, value in POLICY.items()}}
    experiment = {"num_samples": 1, "max_concurrent": 1, "resources": {"cpu": args.cpus, "gpu": 0}}

    def spec_named(name: str):
        return derived_space(args.space, folder, name, experiment=experiment, scheduler=scheduler,
                             data=data_changes, search=search)

    spec = spec_named("direct")
    cfg = spec.trial_config(POLICY)
    data = random_image_data(args.cifar_images) if args.cifar_images else load_data(spec.data)
    # The same threads as tune.train_trial gives the trial, so both sides do the same work the same way.
    torch.set_num_threads(max(1, math.floor(args.cpus)))
    direct, tune_side, same_val_acc = [], [], True
    try:
        ray_seconds = start_ray(max(1, math.ceil(args.cpus)))
        for repeat in range(args.repeats):
            marks, metrics = [time.perf_counter()], []

            def collect(m, checkpoint=None, images=None, marks=marks, metrics=metrics):
                metrics.append(m)
                marks.append(time.perf_counter())

            run(cfg, data, collect)
            direct.append([b - a for a, b in zip(marks, marks[1:])])  # seconds per epoch, reports included

            results, seconds = fit(spec_named(f"tune{repeat}"), data, searcher="random", scheduler="fifo")
            result = results[0]
            if result.error is not None or result.metrics.get("epoch") != cfg.epochs:
                raise RuntimeError(f"the Tune trial did not finish: {result.error or result.metrics}")
            if abs(result.metrics["val_acc"] - metrics[-1]["val_acc"]) > 1e-6:
                same_val_acc = False
                print(f"warning: Tune and direct val_acc differ ({result.metrics['val_acc']} vs "
                      f"{metrics[-1]['val_acc']}): not the same trial?", file=sys.stderr)
            # Tune's own clock: time_this_iter_s per reported epoch; time_total_s is their sum.
            tune_side.append((list(result.metrics_dataframe["time_this_iter_s"]), seconds))
    finally:
        import ray

        ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
    direct_epochs = min(direct, key=sum)
    tune_epochs, fit_s = min(tune_side, key=lambda side: sum(side[0]))
    direct_s, trial_s = sum(direct_epochs), sum(tune_epochs)
    # Where the difference goes: once per trial (worker process, imports, first epoch) or every epoch.
    startup = tune_epochs[0] - direct_epochs[0]
    per_epoch = statistics.median(t - d for t, d in zip(tune_epochs[1:], direct_epochs[1:])) \
        if cfg.epochs > 1 else 0.0
    epoch_share = per_epoch / statistics.median(direct_epochs[1:] or direct_epochs)
    return emit({
        "direct_seconds": round(direct_s, 2),
        "tune_trial_seconds": round(trial_s, 2),
        "tune_fit_seconds": round(fit_s, 2),
        "ray_start_seconds": round(ray_seconds, 2),
        "end_to_end_seconds": round(ray_seconds + fit_s, 2),
        "trial_ratio": round(trial_s / direct_s, 3),
        "fit_ratio": round(fit_s / direct_s, 3),
        "end_to_end_ratio": round((ray_seconds + fit_s) / direct_s, 3),
        "target_trial_ratio": 1.10,
        "meets_target": trial_s / direct_s <= 1.10,
        "startup_overhead_seconds": round(startup, 2),
        "per_epoch_overhead_seconds": round(per_epoch, 3),
        # The direct trial length at which the trial ratio reaches 1.10: the fixed cost must fit in the 10%
        # that the per-epoch cost leaves.
        "trial_seconds_for_target": round(startup / (0.10 - epoch_share), 1) if epoch_share < 0.10 else None,
        "same_val_acc": same_val_acc,
        "direct_epoch_seconds": [round(s, 3) for s in direct_epochs],
        "tune_epoch_seconds": [round(s, 3) for s in tune_epochs],
        "epochs": cfg.epochs,
        "repeats": args.repeats,
        "trial_cpus": args.cpus,
        "torch_threads": torch.get_num_threads(),
        "policy": POLICY,
        "data": f"random uint8 3x32x32, {args.cifar_images} images" if args.cifar_images else spec.data,
    })


if __name__ == "__main__":
    main()
