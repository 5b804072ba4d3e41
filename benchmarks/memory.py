"""Benchmark: N concurrent trials on one node share one copy of the dataset instead of holding N copies.

N = 1, 2, 4 trials of 0.5 CPU each run at once on a 2-CPU local Ray. Each receives a synthetic CIFAR-shaped
dataset (uint8 3x32x32) exactly as `tune.build_tuner` hands it to `tune.train_trial`: packed by
`ImageData.pack`, passed by reference through Ray's object store by `tune.with_parameters`, unpacked by
`ImageData.unpack`; then it trains one epoch on it with `pipeline.run`. Inside each trial the benchmark
reads /proc/self (no hook in the product):

  * in place: the share of the unpacked tensors' bytes that lie inside Ray's shared-memory object store
    mapping (/dev/shm/plasma...): 1.0 means the trial reads the one shared copy, a private copy gives 0.0;
  * growth: the trial process's anonymous (private) memory after unpacking, reading every page of the data
    and one epoch of `pipeline.run`, minus the same at the trial's start. The same trial on a dataset a
    quarter the size gives what the epoch itself allocates; the difference is what the data costs:

        ratio(N) = sum over the N trials of (growth - growth on the small dataset) / (N x dataset difference)

    ~1 means a private copy per trial, ~0 one copy shared by all.

When all N trials have trained, each also records its USS (private) and PSS (shared pages split between the
processes that map them) at the same moment. Prints one JSON object.

    python benchmarks/memory.py           # 20,000 train images (~70 MB with val + test), N = 1, 2, 4
    python benchmarks/memory.py --quick   # 10,000 train images, N = 2, for the test suite
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

MB = 2**20
# Trial processes otherwise differ by tens of MB of freed-but-kept heap, which would drown the signal.
STEADY_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072",
                 "MALLOC_ARENA_MAX": "2"}


def synthetic_data(train: int, held_out: int, seed: int = 0):
    """Random uint8 3x32x32 images in 10 classes: `train` training images, `held_out` val and as many test."""
    import torch

    from ganaug.data import DataSpec, ImageData

    rng = torch.Generator().manual_seed(seed)
    arrays = {}
    for split, n in {"train": train, "val": held_out, "test": held_out}.items():
        arrays[f"{split}_x"] = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=rng)
        arrays[f"{split}_y"] = torch.arange(n) % 10
    spec = DataSpec(channels=3, height=32, width=32, num_classes=10, class_names=tuple(map(str, range(10))),
                    class_counts=tuple(torch.bincount(arrays["train_y"], minlength=10).tolist()))
    return ImageData(**arrays, spec=spec)


def size_mb(data) -> float:
    return sum(value.nbytes for value in data.pack().values() if hasattr(value, "nbytes")) / MB


def rollup_mb(pid: int | str = "self") -> dict[str, float]:
    """Anonymous, USS (private clean + dirty) and PSS memory of a process, in MB."""
    lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    kb = {line.split(":")[0]: int(line.split()[1]) for line in lines[1:] if line.endswith("kB")}
    return {"anon": kb["Anonymous"] / 1024, "uss": (kb["Private_Clean"] + kb["Private_Dirty"]) / 1024,
            "pss": kb["Pss"] / 1024}


def store_ranges() -> list[tuple[int, int]]:
    """Address ranges of this process's mappings of Ray's shared-memory object store."""
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[5].startswith("/dev/shm/plasma"):
            start, end = (int(part, 16) for part in fields[0].split("-"))
            ranges.append((start, end))
    return ranges


def probe_trial(config: dict, *, data: dict, trials: int, barrier: str) -> None:
    """A trial that receives the data the way tune.train_trial does and measures what holding it costs."""
    import torch
    from ray import tune

    from ganaug.config import TrialConfig
    from ganaug.data import ImageData
    from ganaug.trial import run

    torch.set_num_threads(1)
    start = rollup_mb()
    images = ImageData.unpack(data)
    tensors = [getattr(images, name) for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")]
    ranges = store_ranges()
    total = sum(t.numel() * t.element_size() for t in tensors)
    in_place = sum(t.numel() * t.element_size() for t in tensors
                   if any(low <= t.data_ptr() < high for low, high in ranges))
    checksum = sum(int(t.sum()) for t in tensors)  # reads every page of the data
    cfg = TrialConfig(classifier="mlp", classifier_width=0.25, batch_size=256, epochs=1, cas_epochs=0,
                      device="cpu", seed=config["seed"])
    run(cfg, images, lambda *args, **kwargs: None)
    trained = rollup_mb()
    # Wait until all N trials have trained, so their USS and PSS are read while they all map the data.
    Path(barrier, f"{os.getpid()}").touch()
    deadline = time.monotonic() + 300
    while len(list(Path(barrier).iterdir())) < trials and time.monotonic() < deadline:
        time.sleep(0.1)
    together = rollup_mb()
    tune.report({"in_place": in_place / total, "growth_mb": trained["anon"] - start["anon"],
                 "uss_mb": together["uss"], "pss_mb": together["pss"], "checksum": checksum,
                 "all_at_once": len(list(Path(barrier).iterdir())) >= trials})
    time.sleep(1)  # let the others read their memory before this process exits and unmaps its share


def measure(data, trials: int, folder: Path, name: str) -> list[dict]:
    """Run `trials` probe trials at once; their reports."""
    from ray import tune

    barrier = folder / f"{name}-barrier"
    barrier.mkdir()
    trainable = tune.with_resources(
        tune.with_parameters(probe_trial, data=data.pack(), trials=trials, barrier=str(barrier)),
        {"cpu": 0.5})
    tuner = tune.Tuner(trainable, param_space={"seed": tune.grid_search(list(range(trials)))},
                       run_config=tune.RunConfig(name=name, storage_path=str(folder), verbose=0))
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON figures
        results = tuner.fit()
    if results.errors:
        raise RuntimeError(f"{name}: {len(results.errors)} trial(s) failed: {results.errors[0]}")
    return [result.metrics for result in results]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 train images, N = 2 (for CI)")
    parser.add_argument("--train", type=int, help="training images (default 20,000; quick 10,000)")
    args = parser.parse_args(argv)
    train = args.train or (10_000 if args.quick else 20_000)
    counts = (2,) if args.quick else (1, 2, 4)

    import ray

    held_out = 2_000
    data, small = synthetic_data(train, held_out), synthetic_data(train // 4, held_out, seed=1)
    dataset_mb, small_mb = size_mb(data), size_mb(small)
    started = time.monotonic()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR",
             runtime_env={"env_vars": STEADY_MALLOC})
    try:
        with tempfile.TemporaryDirectory(prefix="ganaug-memory-") as folder:
            reference = measure(small, 2, Path(folder), "small")
            per_n = {n: measure(data, n, Path(folder), f"n{n}") for n in counts}
    finally:
        ray.shutdown()

    epoch_growth = statistics.mean(r["growth_mb"] for r in reference)
    figures = {"dataset_mb": round(dataset_mb, 1), "train_images": train, "held_out_images": 2 * held_out,
               "small_dataset": {"dataset_mb": round(small_mb, 1),
                                 "growth_mb": [round(r["growth_mb"], 1) for r in reference]},
               "per_n": {}}
    for n, reports in per_n.items():
        data_growth = sum(r["growth_mb"] - epoch_growth for r in reports)
        figures["per_n"][str(n)] = {
            "in_place": [round(r["in_place"], 3) for r in reports],
            "growth_mb": [round(r["growth_mb"], 1) for r in reports],
            "uss_mb": [round(r["uss_mb"], 1) for r in reports],
            "pss_mb": [round(r["pss_mb"], 1) for r in reports],
            "all_at_once": all(r["all_at_once"] for r in reports),
            "total_uss_mb": round(sum(r["uss_mb"] for r in reports), 1),
            "total_pss_mb": round(sum(r["pss_mb"] for r in reports), 1),
            "data_growth_mb": round(data_growth, 1),
            "ratio": round(data_growth / (n * (dataset_mb - small_mb)), 3),
        }
    # Per extra trial: what a whole trial process adds (the slope of the total USS over N), and what its
    # data adds (the slope of the data growth); with one N, the mean per trial.
    def slope(key: str) -> float:
        values = [figures["per_n"][str(n)][key] for n in counts]
        if len(counts) == 1:
            return values[0] / counts[0]
        return statistics.linear_regression(list(counts), values).slope

    figures["process_growth_per_extra_trial_mb"] = round(slope("total_uss_mb"), 1)
    figures["data_growth_per_extra_trial_mb"] = round(slope("data_growth_mb"), 1)
    figures["in_place"] = min(min(entry["in_place"]) for entry in figures["per_n"].values())
    figures["ratio"] = max(entry["ratio"] for entry in figures["per_n"].values())
    figures["wall_seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
