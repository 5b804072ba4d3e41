"""`python -m ganaug.evaluate RESULTS_DIR`: does the best GAN policy beat the best no-GAN policy on the test split?

Retrains the search's best GAN policy, its best no-GAN policy and fixed ablations with the same epoch budget on
train + val, over several seeds (Ray tasks in parallel), tests every final classifier on the test split, and
writes into the experiment folder:

    evaluation.csv           one row per run: policy, seed, test_acc, test_top5, test_balanced_acc (mean per-class
                             accuracy), test_many_acc / test_medium_acc / test_few_acc (the shot groups' balanced
                             accuracy, nan for an empty group), per-class accuracies (JSON), run_id (hash of config
                             + seed: a rerun keeps finished runs), ...
    evaluation.md            first line: best GAN vs best no-GAN policy, paired over seeds, with its 95 % interval
                             (in balanced accuracy on long-tailed data: data.long_tail); then means with
                             t-intervals, paired differences, --ablate table, per-class deltas
    evaluation.png           the means with their intervals, and the paired differences
    evaluation_ablation.png  with --ablate: each key reset to its default, paired difference to best_gan

    python -m ganaug.evaluate ~/ganaug_results/quickstart                       # 5 seeds, local Ray
    python -m ganaug.evaluate ~/ganaug_results/cifar100 --top 3 --ablate --gpus-per-run 0.5 --address auto
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from ganaug.config import TrialConfig
from ganaug.errors import EXIT_BAD_INPUT as EXIT_BAD_INPUT  # re-exported: the exit code of this command on bad input
from ganaug.errors import exit_code
from ganaug.files import atomic_write
from ganaug.metrics import names
from ganaug.results.experiment import load_experiment
from ganaug.results.policies import (
    BEST_GAN,
    BEST_NO_GAN,
    DESCRIBING_KEYS,
    alias_map,
    role_of,
)
from ganaug.results.report import markdown_report, save_ablation_plot, save_plot
from ganaug.results.selection import NOT_ABLATED, EvaluationError, gan_trials, policy_configs

EVALUATION_CSV = "evaluation.csv"
# The test scores of a run, as trial.run reports them at the last epoch (evaluation.csv's columns).
TEST_COLUMNS = names("evaluation")
EVALUATION_MD = "evaluation.md"
EVALUATION_PNG = "evaluation.png"
ABLATION_PNG = "evaluation_ablation.png"
PREVIOUS_CSV = "evaluation.previous.csv"


class RunError(RuntimeError):
    """A training run (Ray task) failed; the message names the policy and seed."""


# ----------------------------------------------------------------------------------------------
# Runs: one per policy and seed, named by a hash of its config, so a rerun keeps what evaluation.csv holds.

def run_id(config: dict, seed: int) -> str:
    """Stable id of one run: a hash of its policy's identity (its config without the keys it cannot use,
    TrialConfig.identity; epochs are part of it) and the seed."""
    text = json.dumps({**TrialConfig.from_dict(config).identity(), "seed": int(seed)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def planned_runs(policies: dict[str, dict], seeds: int) -> list[dict]:
    """Every (policy, seed) to run, seed by seed, so an interrupted evaluation holds whole seeds to pair."""
    return [{"policy": name, "seed": seed, "config": {**policy["config"], "seed": seed},
             "run_id": run_id(policy["config"], seed)}
            for seed in range(seeds) for name, policy in policies.items()]


def finished_runs(csv_path: Path, policies: dict[str, dict], seeds: int) -> pd.DataFrame:
    """The rows of an earlier evaluation.csv that this evaluation asks for again (matched by run_id), relabelled
    with this evaluation's policy names; an empty frame when there are none.

    Rows this evaluation does not ask for (other epochs, policies or seeds, or a file without run_id) are
    dropped from evaluation.csv; the old file is kept as evaluation.previous.csv first.
    """
    if not csv_path.is_file():
        return pd.DataFrame()
    try:
        old = pd.read_csv(csv_path, dtype={"from_trial": str, "run_id": str, "aliases": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        atomic_write(csv_path.with_name(PREVIOUS_CSV), csv_path.read_bytes().decode(errors="replace"))
        print(f"note: {csv_path.name} cannot be read ({str(error).strip().splitlines()[0]}); every run starts "
              f"afresh and the old file is kept as {PREVIOUS_CSV}", flush=True)
        return pd.DataFrame()
    plan = {run["run_id"]: run for run in planned_runs(policies, seeds)}
    ids = old["run_id"] if "run_id" in old else pd.Series("", index=old.index)
    kept = old[ids.isin(plan)].drop_duplicates("run_id", keep="last")
    if len(kept) < len(old):
        atomic_write(csv_path.with_name(PREVIOUS_CSV), csv_path.read_text())
        print(f"note: {len(old) - len(kept)} run(s) in {csv_path.name} are not part of this evaluation (other "
              f"policies, seeds or --epochs) and are dropped from it; the old file is kept as {PREVIOUS_CSV}",
              flush=True)
    rows = [{**row, **_describe(plan[row["run_id"]]["policy"], policies[plan[row["run_id"]]["policy"]])}
            for row in kept.to_dict("records")]
    return _ordered(pd.DataFrame(rows), list(policies)) if rows else pd.DataFrame()


def _describe(name: str, policy: dict) -> dict:
    """The columns of a run's row that say which policy it was."""
    return {"policy": name, "from_trial": policy["trial_id"], "source": policy["source"],
            "aliases": ";".join(policy["aliases"]), **{k: policy["config"][k] for k in DESCRIBING_KEYS}}


# ----------------------------------------------------------------------------------------------
# One run (the body of a Ray task): train on train + val with trial.run, test the final classifier.

def train_and_test(packed_data: dict, config: dict, cpus: float = 1, generators: str | None = None,
                   coordinator=None, owner: str = "evaluate") -> dict[str, Any]:
    """Train `config` with trial.run and return test accuracy, top-5, loss and per-class accuracy of the result
    (trial.run tests the final classifier itself); `generators`: the search's generator bank (through
    `coordinator`), where a run whose GAN the search or another run pretrained finds it."""
    # torch and the pipeline load in the Ray worker only: the command line answers bad input without them.
    import torch

    from ganaug.data import ImageData  # lazy: torch loads only once the input is checked
    from ganaug.trial import GeneratorBank, run  # lazy: torch loads only once the input is checked

    # Each run uses only its CPU share, so k runs on k cores don't oversubscribe them.
    torch.set_num_threads(max(1, math.floor(cpus)))
    cfg = TrialConfig.from_dict(config, where="evaluation run")
    data = ImageData.unpack(packed_data)
    started = time.perf_counter()
    bank = GeneratorBank(generators, coordinator, owner=owner) if generators else None
    metrics = run(cfg, data, lambda metrics, checkpoint=None, images=None: None, bank=bank)
    wall_seconds = time.perf_counter() - started
    row = {"epochs": int(metrics.get("epoch", 0)), "wall_seconds": wall_seconds,
           "diverged": int(metrics.get("diverged", 0)), **dict.fromkeys(TEST_COLUMNS, math.nan),
           "test_loss": math.nan, "per_class_acc": [math.nan] * data.spec.num_classes,
           "generator_key": metrics.get("generator_key", ""), "generator_reused": metrics.get("generator_reused", 0)}
    if "test_per_class_acc" in metrics:  # a diverged run ends before its final test: no test score
        row.update({key: metrics[key] for key in TEST_COLUMNS}, test_loss=metrics["test_loss"],
                   per_class_acc=metrics["test_per_class_acc"])
    return row


def run_all(data, policies: dict[str, dict], seeds: int, *, kept: pd.DataFrame | None = None,
            cpus_per_run: float = 1, gpus_per_run: float = 0, address: str | None = None,
            num_cpus: int | None = None, on_row=None, generators: str | None = None,
            experiment: str = "evaluate") -> pd.DataFrame:
    """Every policy x seed on `data` (ImageData, train := train + val) that `kept` (rows of an earlier run, by
    run_id) lacks, as a Ray task; returns one row per run, the kept ones included.

    Progress is printed as runs finish; `on_row(runs so far)` is called after each one. No Ray starts when
    nothing is left to run. `generators`: the search's generator bank (a run of a GAN policy with pretraining loads
    its generator from it, or pretrains it there once for every run with the same GAN keys and seed).
    """
    kept = kept if kept is not None else pd.DataFrame()
    done = set(kept["run_id"]) if "run_id" in kept else set()
    todo = [run for run in planned_runs(policies, seeds) if run["run_id"] not in done]
    rows = kept.to_dict("records")
    if not todo:
        return _ordered(kept, list(policies))
    import ray

    from ganaug.cluster import bank_coordinator, ray_session  # lazy: Ray starts only once the input is checked

    class_names = list(data.spec.class_names)
    with ray_session(address, num_cpus):
        data_ref = ray.put(data.pack())  # one copy in the object store, shared by every run on a node
        task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run)(train_and_test)
        coordinator = bank_coordinator(experiment) if generators else None
        pending = {task.remote(data_ref, run["config"], cpus_per_run, generators, coordinator, run["run_id"]): run
                   for run in todo}
        total = len(pending)
        print(f"Evaluating {len(policies)} policies x {seeds} seeds: {total} runs to go "
              f"({next(iter(policies.values()))['config']['epochs']} epochs each, train + val = "
              f"{len(data.train_y)} images)", flush=True)
        finished = 0
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            run = pending.pop(ref)
            name, seed = run["policy"], run["seed"]
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as error:
                raise RunError(f"run {name} seed {seed} failed: {str(error).strip().splitlines()[-1]}") from None
            per_class = dict(zip(class_names, result.pop("per_class_acc")))
            rows.append({"seed": seed, **result, "per_class_acc": json.dumps(per_class), "run_id": run["run_id"],
                         **_describe(name, policies[name])})
            finished += 1
            shown = "diverged" if result["diverged"] else f"test_acc {result['test_acc']:.4f}"
            print(f"[{finished}/{total}] {name} seed {seed}: {shown} ({result['wall_seconds']:.0f} s)", flush=True)
            if on_row is not None:
                on_row(_ordered(pd.DataFrame(rows), list(policies)))
        return _ordered(pd.DataFrame(rows), list(policies))


def _ordered(runs: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    rank = {name: i for i, name in enumerate(order)}
    runs = runs.assign(_rank=runs["policy"].map(rank)).sort_values(["_rank", "seed"]).drop(columns="_rank")
    columns = ["policy", "seed", *TEST_COLUMNS, "test_loss", "per_class_acc", "epochs", "wall_seconds",
               "diverged", "from_trial", "source", "aliases", *DESCRIBING_KEYS, "generator_key", "generator_reused",
               "run_id"]
    return runs[[c for c in columns if c in runs] + [c for c in runs if c not in columns]].reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# Command line.

def parse_args(argv: list[str] | None = None, prog: str = "python -m ganaug.evaluate") -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="experiment folder written by ganaug.tune: storage/name, local or "
                                        "s3://bucket/prefix/name")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per policy, 0..N-1 (default 5, at least 2)")
    parser.add_argument("--top", type=int, default=1,
                        help="also retrain the 2nd..K-th best GAN trials as searched (default 1: the best only)")
    parser.add_argument("--ablate", action="store_true",
                        help="also run best_gan with each non-default policy key reset to its default")
    parser.add_argument("--epochs", type=int, help="epochs per run (default: the search's max_epochs)")
    parser.add_argument("--num-cpus", type=int, help="CPUs of the local Ray started when no address is given")
    parser.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--cpus-per-run", type=float, default=1, help="CPUs each run reserves (default 1)")
    parser.add_argument("--gpus-per-run", type=float, default=0,
                        help="GPUs each run reserves, e.g. 0.5 for two runs per GPU (default 0: CPU)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, prog: str = "python -m ganaug.evaluate") -> int:
    args = parse_args(argv, prog)
    return exit_code(lambda: _evaluate(args, argv, prog))


def _evaluate(args: argparse.Namespace, argv: list[str] | None, prog: str) -> int:
    """The whole command: check the input, run what evaluation.csv lacks, write the report and plots."""
    if args.seeds < 2:
        raise EvaluationError(f"--seeds {args.seeds}: valid: an integer >= 2 (a t-interval needs two seeds)")
    if args.cpus_per_run <= 0 or args.gpus_per_run < 0:
        raise EvaluationError("--cpus-per-run must be > 0 and --gpus-per-run >= 0")
    experiment = load_experiment(args.results)
    policies = policy_configs(experiment, top=args.top, epochs=args.epochs, ablate=args.ablate)
    from ganaug.data import attach_folders, load_data  # lazy: torch loads only once the input is checked

    folders = sorted({policy["config"]["synthetic_folder"] for policy in policies.values()
                      if policy["config"]["synthetic_source"] == "folder"})
    data = attach_folders(load_data(experiment.meta["data"]).train_and_val(), folders)

    csv_path = experiment.path / EVALUATION_CSV
    gan_count = len(gan_trials(experiment))
    if args.top > gan_count:
        print(f"note: only {gan_count} complete GAN trial(s); --top {args.top} evaluates all of them", flush=True)
    if policies[BEST_NO_GAN]["source"] == "untuned":
        print(f"note: the search has no complete no-GAN trial (synthetic_ratio 0): {BEST_NO_GAN} is untuned "
              f"(best_gan's settings with the GAN off)", flush=True)
    kept = finished_runs(csv_path, policies, args.seeds)
    total = len(policies) * args.seeds
    print(f"kept {len(kept)} finished runs from {EVALUATION_CSV}; running {total - len(kept)}", flush=True)
    try:
        runs = run_all(data, policies, args.seeds, kept=kept, cpus_per_run=args.cpus_per_run,
                       gpus_per_run=args.gpus_per_run, address=args.address, num_cpus=args.num_cpus,
                       generators=experiment.meta.get("generators"), experiment=str(experiment.path),
                       # Partial results survive a crash: the CSV is rewritten whole after each finished run.
                       on_row=lambda partial: atomic_write(csv_path, partial.to_csv(index=False)))
    except RunError as error:
        print(f"error: {error} (finished runs so far are in {csv_path})", file=sys.stderr)
        return 1
    atomic_write(csv_path, runs.to_csv(index=False))
    command = f"{prog} " + " ".join(argv if argv is not None else sys.argv[1:])
    # Long-tailed data: the headline, the plot and the per-class table in balanced accuracy, groups by training count.
    counts = list(data.spec.class_counts) if experiment.meta["data"].get("long_tail") else None
    report = markdown_report(experiment, runs, policies, list(data.spec.class_names), NOT_ABLATED, command, counts)
    atomic_write(experiment.path / EVALUATION_MD, report + "\n")
    name, column = experiment.meta.get("name", ""), "test_balanced_acc" if counts else "test_acc"
    save_plot(runs, experiment.path / EVALUATION_PNG, title=f"{name}: {column.replace('_', ' ')}", column=column)
    written = [csv_path, experiment.path / EVALUATION_MD, experiment.path / EVALUATION_PNG]
    if any(role_of(n) == "variant" for n in alias_map(policies)):
        save_ablation_plot(runs, experiment.path / ABLATION_PNG, title=f"{name}: {BEST_GAN}, one key reset")
        written.append(experiment.path / ABLATION_PNG)
    else:
        (experiment.path / ABLATION_PNG).unlink(missing_ok=True)  # an earlier --ablate's plot is not this one
    experiment.upload(written)
    print("\n" + report)
    where = f" (and to {experiment.uri})" if experiment.uri else ""
    print(f"Wrote {', '.join(str(p) for p in written)}{where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
