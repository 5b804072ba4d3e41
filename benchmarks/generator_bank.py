"""Benchmark: what the generator bank, and pools drawn once from its generators, save a search of policies with
frozen, pretrained generators.

The same search runs three times through `tune.build_tuner` on one local Ray: with the generator bank
(experiment.generators, the default), with the bank and every trial drawing its synthetic rows from a pool drawn
once from its generator (synthetic_source: pool), and without the bank ("off": every trial pretrains its own GAN
and runs it for every batch). All use Optuna's random sampler with one seed and FIFO (every trial runs all its
epochs), so all run the same policies; with and without the bank they reach the same validation accuracy policy by
policy, since a trial that loads its generator reports what training it would. Every trial freezes a GAN
pretrained for gan_pretrain_epochs passes; the searched GAN keys span at most 4 distinct generators, while the
classifier keys vary freely. Measured in one run: each search's wall seconds, its trials' seconds (the sum of each
trial's wall time: one CPU each), the generators trained, and each policy's val_acc. Target: the cost with the bank
and pools / without the bank <= 0.4. Prints one JSON object.

    python benchmarks/generator_bank.py             # 16 trials on digits, 4 generators of 8 passes (~2 min, 2 cores)
    python benchmarks/generator_bank.py --root ../shared/data/cifar10-small   # the worked example's cnn and DCGAN,
                                                    # 250 images per class, 4 generators of 8 passes (~25 min)
    python benchmarks/generator_bank.py --quick     # 4 trials, 2 generators (the test suite)
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import pandas as pd
import yaml
from pool import GENERATOR  # the worked example's generator (search_spaces/cifar10_banked.yaml)
from search_efficiency import QUICKSTART, derived_space, emit, fit, start_ray


def trial_rows(results) -> pd.DataFrame:
    """One row per trial: its searched params, its last val_acc, its wall seconds and whether it reused."""
    rows = []
    for result in results:
        history = result.metrics_dataframe
        params = {key: value for key, value in result.config.items()}
        rows.append({**params, "val_acc": float(history["val_acc"].iloc[-1]),
                     "trial_seconds": float(history["time_total_s"].iloc[-1]),
                     # without the bank (experiment.generators: off) a trial reports no generator_key
                     "generator_key": str(history["generator_key"].iloc[-1]) if "generator_key" in history else "",
                     "generator_reused": int(history["generator_reused"].iloc[-1])
                     if "generator_reused" in history else 0})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--pretrain-epochs", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--root", help="an imagefolder dataset: the worked example's cnn and DCGAN generators "
                                       "(search_spaces/cifar10_banked.yaml) instead of digits and MLPs")
    parser.add_argument("--samples-per-class", type=int, default=250, help="with --root")
    parser.add_argument("--quick", action="store_true", help="4 trials, 2 generators of 1 pass (the test suite)")
    args = parser.parse_args(argv)
    gan_choices = {"gan": {"choice": ["cgan", "acgan"]}, "gan_lr": {"choice": [2.0e-4, 5.0e-4]}}  # 4 generators
    if args.quick:
        args.trials, args.pretrain_epochs, args.epochs = 4, 1, 1
        gan_choices = {"gan": {"choice": ["cgan", "acgan"]}}
    folder = Path(tempfile.mkdtemp(prefix="generator_bank_"))
    sections = dict(
        experiment={"num_samples": args.trials, "max_concurrent": 2, "baselines_first": False,
                    "resources": {"cpu": 1, "gpu": 0}},
        data={"name": "digits", "val_fraction": 0.2, **({"samples_per_class": 30} if args.quick else {})},
        scheduler={"max_epochs": args.epochs, "grace_period": args.epochs},
        fixed={"classifier": "mlp", "classifier_width": 0.25, "gan_arch": "mlp", "gan_width": 0.25, "batch_size": 64,
               "synthetic_ratio": 0.5, "gan_pretrain_epochs": args.pretrain_epochs, "gan_freeze": True,
               "cas_epochs": 0, "checkpoint_every": args.epochs, "sample_every": args.epochs},
    )
    if args.root:  # where a generator costs what it does in the worked example: a DCGAN on 32x32 colour images
        sections["data"] = {"name": "imagefolder", "root": args.root, "samples_per_class": args.samples_per_class,
                            "val_fraction": 0.1}
        sections["fixed"] = {**sections["fixed"], **GENERATOR, "classifier": "cnn", "classifier_width": 1.0,
                             "batch_size": 128, "traditional_aug": "flip_translate"}
    search = {**gan_choices, "classifier_lr": {"loguniform": [3.0e-4, 3.0e-3]},
              "labeling": {"choice": ["pseudo", "lsro"]}}
    # The benchmark's search replaces the quickstart's whole (derived_space merges: None removes a key).
    quickstart_search = yaml.safe_load(QUICKSTART.read_text())["search"]
    search_section = {**{key: None for key in quickstart_search}, **search}
    from ganaug.data import load_data

    ray_seconds = start_ray(args.num_cpus)
    figures = {}
    pool = {"synthetic_source": "pool", "synthetic_pool": 20 if args.quick else 500 if args.root else 100}
    for name, generators, source in (("with_bank", None, {}), ("with_bank_and_pools", None, pool),
                                      ("without_bank", "off", {})):
        changed = {**sections, "fixed": {**sections["fixed"], **source}}
        space = derived_space(QUICKSTART, folder, name, **changed, search=search_section)
        space = space.model_copy(update={"experiment": space.experiment.model_copy(update={"generators": generators})})
        data = load_data(space.data)
        results, seconds = fit(space, data, searcher="random", scheduler="fifo")
        trials = trial_rows(results)
        bank = Path(space.experiment_dir(), "generators")
        figures[name] = {"wall_seconds": round(seconds, 1), "trial_seconds": round(trials["trial_seconds"].sum(), 1),
                         "generators_trained": len(list(bank.iterdir())) if bank.is_dir() else len(trials),
                         "trials_reusing": int(trials["generator_reused"].sum()), "trials": trials}
    keys = [key for key in search if key in figures["with_bank"]["trials"]]
    joined = figures["with_bank"]["trials"].merge(figures["without_bank"]["trials"], on=keys,
                                                    suffixes=("_bank", "_no_bank"))
    policies = [{**{key: row[key] for key in keys}, "val_acc_bank": row["val_acc_bank"],
                 "val_acc_no_bank": row["val_acc_no_bank"], "reused": int(row["generator_reused_bank"])}
                for row in joined.to_dict("records")]
    for setting in figures.values():
        setting.pop("trials")
    with_bank, pools, without = figures["with_bank"], figures["with_bank_and_pools"], figures["without_bank"]
    emit({"data": args.root or "digits", "trials": args.trials, "pretrain_epochs": args.pretrain_epochs,
          "epochs": args.epochs,
          "ray_start_seconds": round(ray_seconds, 1), **figures,
          "trial_seconds_ratio": round(with_bank["trial_seconds"] / without["trial_seconds"], 3),
          "wall_seconds_ratio": round(with_bank["wall_seconds"] / without["wall_seconds"], 3),
          "pools_trial_seconds_ratio": round(pools["trial_seconds"] / without["trial_seconds"], 3),
          "pools_wall_seconds_ratio": round(pools["wall_seconds"] / without["wall_seconds"], 3),
          "same_val_acc_per_policy": all(math.isclose(p["val_acc_bank"], p["val_acc_no_bank"], abs_tol=1e-9)
                                         for p in policies),
          # The cost is the trials' seconds (one CPU each): wall time also counts the slots two trials share.
          "meets_target": bool(pools["trial_seconds"] / without["trial_seconds"] <= 0.4),
          "policies": json.loads(json.dumps(policies, default=float))})


if __name__ == "__main__":
    main()
