"""Benchmark: the accelerator path of one trial: fp32 vs bf16 autocast + channels_last, and 1 vs 4 trials per GPU.

A CIFAR-100-shaped trial (random uint8 3x32x32, 100 classes) with acgan + dcgan and the ResNet-9 classifier,
synthetic_ratio 0.5, through `pipeline.run` (which uses bf16 autocast with precision="bf16" and channels_last
classifier batches on CUDA). Part 1: the same trial with precision fp32 and bf16, one after the other in
this process (target >= 1.5x). Part 2: 1 vs --trials-per-device copies of the trial on the one device at
the default precision (auto: bf16 on CUDA, fp32 on the CPU). One trial is part 1's run at that precision;
the copies run at once in separate processes, each with an equal share of the CPU threads, and start their
timed epochs together after a warm-up epoch (a barrier). Total throughput is all timed images over the wall
time from the first start to the last end (target >= 2.5x).
Absolute epoch times and peak memory per trial (GPU: torch's peak allocated and reserved; CPU: peak RSS).

The targets are GPU targets. Without CUDA this runs on the CPU at a reduced width and says "device": "cpu":
there bf16 runs without native bf16 matrix units on most CPUs, and k trials share the same cores, so neither
target is expected to hold. Prints one JSON object.

    python benchmarks/gpu_path.py           # CUDA when available: 10,000 images, full width; CPU: 512, width 0.25
    python benchmarks/gpu_path.py --quick   # 32 images, width 0.125, 1 epoch, 1 vs 2 trials (the test suite)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import time

import torch
from trial_throughput import random_image_data

from ganaug.config import TrialConfig
from ganaug.trial import run


def trial_config(args, precision: str) -> TrialConfig:
    return TrialConfig(
        gan="acgan", gan_arch="dcgan", classifier="resnet", synthetic_ratio=0.5, labeling="pseudo",
        gan_width=args.width, classifier_width=args.width, batch_size=args.batch_size, epochs=args.epochs,
        cas_epochs=0, checkpoint_every=10_000, sample_every=10_000, device=args.device, precision=precision,
    )


def measure(cfg: TrialConfig, data, barrier=None) -> dict:
    """Run cfg and return its timed epochs' figures and peak memory.

    With more than one epoch, epoch 1 is an untimed warm-up (allocator, first-call dispatch), after which the
    run waits at `barrier` (if given) so that concurrent trials time the same stretch of wall time.
    """
    device = torch.device(cfg.device)
    warm_up = cfg.epochs > 1
    epochs, clock = [], {}

    def start_clock():
        if barrier is not None:
            barrier.wait()
        clock["start"] = time.monotonic()

    def report(metrics, checkpoint=None, images=None):
        epochs.append(metrics)
        if warm_up and metrics["epoch"] == 1:
            start_clock()
        clock["end"] = time.monotonic()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if not warm_up:
        start_clock()
    run(cfg, data, report)
    timed = epochs[1:] if warm_up else epochs
    result = {
        "epoch_seconds": round(min(m["epoch_seconds"] for m in timed), 3),
        "images_per_s": round(max(m["images_per_second"] for m in timed), 1),
        "timed_images": len(data.train_y) * len(timed),
        "start": clock["start"],
        "end": clock["end"],
    }
    if device.type == "cuda":
        result["peak_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        result["peak_reserved_mb"] = round(torch.cuda.max_memory_reserved(device) / 2**20, 1)
    else:
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def _trial_process(args, threads: int, barrier, results) -> None:
    """One concurrent trial in its own process (spawned: CUDA cannot be forked)."""
    torch.set_num_threads(threads)
    data = random_image_data(args.images, num_classes=NUM_CLASSES)
    results.put(measure(trial_config(args, "auto"), data, barrier))


def concurrent_trials(args, count: int) -> dict:
    """`count` copies of the trial at once on the device; total and per-trial throughput."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(count), context.Queue()
    threads = max(1, (os.cpu_count() or 1) // count)  # each trial's CPU share, as tune.train_trial sets it
    processes = [context.Process(target=_trial_process, args=(args, threads, barrier, results))
                 for _ in range(count)]
    for process in processes:
        process.start()
    trials = [results.get(timeout=3600) for _ in processes]
    for process in processes:
        process.join()
    return together(trials, threads, args.device)


def together(trials: list[dict], threads: int, device: str) -> dict:
    """Total throughput of trials that ran at once: all their timed images over first start to last end."""
    wall = max(t["end"] for t in trials) - min(t["start"] for t in trials)
    memory_key = "peak_allocated_mb" if device == "cuda" else "peak_rss_mb"
    return {
        "total_images_per_s": round(sum(t["timed_images"] for t in trials) / wall, 1),
        "per_trial_epoch_seconds": [t["epoch_seconds"] for t in trials],
        f"per_trial_{memory_key}": [t[memory_key] for t in trials],
        "torch_threads_per_trial": threads,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 images, width 0.125, 1 epoch, 1 vs 2 trials")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    parser.add_argument("--images", type=int, default=None, help="real training images per epoch")
    parser.add_argument("--width", type=float, default=None, help="gan_width and classifier_width")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is a warm-up")
    parser.add_argument("--trials-per-device", type=int, default=4, help="concurrent trials compared with 1")
    args = parser.parse_args(argv)
    on_gpu = args.device == "cuda"
    if args.quick:  # one epoch, no warm-up: bf16 without bf16 units is ~10x slower than fp32 on a CPU
        args.images, args.batch_size, args.width, args.epochs, args.trials_per_device = 32, 16, 0.125, 1, 2
    args.images = args.images or (10_000 if on_gpu else 512)
    args.width = args.width or (1.0 if on_gpu else 0.25)

    data = random_image_data(args.images, num_classes=NUM_CLASSES)
    measured = {precision: measure(trial_config(args, precision), data) for precision in ("fp32", "bf16")}
    # One trial on the device is the run at the default precision (auto: bf16 on CUDA, fp32 on the CPU; fp32
    # runs first, so this process's peak RSS is still its own), with every CPU thread.
    one = together([measured["bf16" if on_gpu else "fp32"]], torch.get_num_threads(), args.device)
    # The peak RSS of a process covers its whole life: per-trial CPU memory comes from the concurrent trials.
    dropped = ("start", "end", "timed_images", "peak_rss_mb")
    precisions = {name: {k: v for k, v in run.items() if k not in dropped} for name, run in measured.items()}
    del data
    if on_gpu:
        torch.cuda.empty_cache()
    bf16_speedup = precisions["fp32"]["epoch_seconds"] / precisions["bf16"]["epoch_seconds"]
    many = concurrent_trials(args, args.trials_per_device)
    throughput_ratio = many["total_images_per_s"] / one["total_images_per_s"]
    result = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if on_gpu else "cpu",
        "fp32": precisions["fp32"],
        "bf16_channels_last" if on_gpu else "bf16": precisions["bf16"],
        "bf16_speedup": round(bf16_speedup, 3),
        "target_bf16_speedup": 1.5,
        "trials_per_device": {"1": one, str(args.trials_per_device): many},
        "throughput_ratio": round(throughput_ratio, 3),
        "target_throughput_ratio": 2.5,
        "meets_targets": bf16_speedup >= 1.5 and throughput_ratio >= 2.5,
        "targets_are_for": "GPU" if on_gpu else "GPU (this run is on the CPU: figures show the path works, "
                                                 "not the GPU targets)",
        "images": args.images,
        "width": args.width,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "num_classes": NUM_CLASSES,
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result), flush=True)
    return result


NUM_CLASSES = 100  # CIFAR-100-shaped

if __name__ == "__main__":
    main()
