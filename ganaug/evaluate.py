"""`python -m ganaug.evaluate RESULTS_DIR`: does the searched GAN policy beat the baselines on the test split?

Retrains the search's best GAN policies and the baselines with the same classifier and epoch budget on
train + val, over several seeds (Ray tasks in parallel), tests every final classifier on the test split,
and writes into the experiment folder:

    evaluation.csv   one row per run: policy, seed, test_acc, test_top5, per-class accuracies (JSON), ...
    evaluation.md    mean test accuracy with 95 % t-intervals, paired differences by seed (paired t-test),
                     per-class deltas of best_gan vs no_aug, top-5 when there are more than 10 classes
    evaluation.png   the means with their intervals, and the paired differences

    python -m ganaug.evaluate ~/ganaug_results/quickstart                       # 5 seeds, local Ray
    python -m ganaug.evaluate ~/ganaug_results/cifar100 --top 3 --gpus-per-run 0.5 --address auto
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ganaug.config import ConfigError, TrialConfig
from ganaug.results import Experiment, ResultsError, atomic_write, load_experiment

EXIT_BAD_INPUT = 2
EVALUATION_CSV = "evaluation.csv"
EVALUATION_MD = "evaluation.md"
EVALUATION_PNG = "evaluation.png"
CONFIDENCE = 0.95


class EvaluationError(ValueError):
    """The experiment cannot be evaluated as asked; the message names the folder or option."""


class RunError(RuntimeError):
    """A training run (Ray task) failed; the message names the policy and seed."""


# ----------------------------------------------------------------------------------------------
# Which policies run: the baselines and GAN policies of POLICIES (bottom), plus top-2..K as searched.

def gan_trials(experiment: Experiment) -> pd.DataFrame:
    """Complete, non-diverged trials that use synthetic data (synthetic_ratio > 0), best first."""
    key = f"last_{experiment.metric}"
    trials = experiment.trials[experiment.trials["status"] == "complete"].dropna(subset=[key])
    if trials.empty:
        counts = dict(experiment.trials["status"].value_counts())
        raise EvaluationError(f"{experiment.path}: no complete trial to evaluate (trial statuses: {counts}); "
                              f"let the search finish, or resume it with python -m ganaug.tune SPACE --resume")
    ratios = trials.apply(lambda row: float(experiment.config_of(row)["synthetic_ratio"]), axis=1)
    trials = trials[ratios > 0]
    if trials.empty:
        raise EvaluationError(f"{experiment.path}: no complete trial uses synthetic data (synthetic_ratio > 0), "
                              f"so there is no GAN policy to compare with the baselines")
    return trials.sort_values(key, ascending=experiment.mode == "min")


def policy_configs(experiment: Experiment, top: int = 1, epochs: int | None = None) -> dict[str, dict]:
    """Policy name -> {"trial_id", "config"}: POLICIES derived from the best GAN trial, then top2..topK.

    Every policy keeps the best GAN trial's classifier settings; all share the epoch budget
    (the search's max_epochs unless `epochs`), checkpoint only at the end, and skip the CAS score.
    """
    if top < 1:
        raise EvaluationError(f"--top {top}: valid: an integer >= 1")
    if epochs is not None and epochs < 1:
        raise EvaluationError(f"--epochs {epochs}: valid: an integer >= 1")
    ranked = gan_trials(experiment)
    epochs = epochs or int(experiment.meta["max_epochs"])
    budget = {"epochs": epochs, "checkpoint_every": epochs, "sample_every": epochs, "cas_epochs": 0}
    best = ranked.iloc[0]
    best_config = experiment.config_of(best)
    policies = {}
    for name, changes in POLICIES.items():
        config = TrialConfig.from_dict({**best_config, **changes, **budget}, where=f"policy {name}").to_dict()
        policies[name] = {"trial_id": str(best["trial_id"]), "config": config}
    for rank, (_, trial) in enumerate(ranked.iloc[1:top].iterrows(), start=2):
        config = TrialConfig.from_dict({**experiment.config_of(trial), **budget}, where=f"policy top{rank}")
        policies[f"top{rank}"] = {"trial_id": str(trial["trial_id"]), "config": config.to_dict()}
    return policies


# ----------------------------------------------------------------------------------------------
# One run (the body of a Ray task): train on train + val with pipeline.run, test the final classifier.

def train_and_test(packed_data: dict, config: dict, cpus: float = 1) -> dict[str, Any]:
    """Train `config` with pipeline.run and return test accuracy, top-5 and per-class accuracy of the result."""
    import torch

    from ganaug.classifiers import build_classifier
    from ganaug.labeling import LABELERS
    from ganaug.metrics import evaluate
    from ganaug.pipeline import load_checkpoint, run
    from ganaug.tune import unpack_data

    # Each run uses only its CPU share, so k runs on k cores don't oversubscribe them.
    torch.set_num_threads(max(1, math.floor(cpus)))
    cfg = TrialConfig.from_dict(config, where="evaluation run")
    data = unpack_data(packed_data)
    final = {}

    def keep_final_state(metrics: dict, checkpoint: str | None = None, images: dict | None = None) -> None:
        # The checkpoint folder is temporary (deleted when report returns): load the state now.
        if checkpoint is not None and metrics.get("epoch") == cfg.epochs:
            final["state"] = load_checkpoint(checkpoint)

    started = time.perf_counter()
    metrics = run(cfg, data, keep_final_state)
    wall_seconds = time.perf_counter() - started
    row = {"epochs": int(metrics.get("epoch", 0)), "wall_seconds": wall_seconds,
           "diverged": int(metrics.get("diverged", 0)), "test_acc": math.nan, "test_top5": math.nan,
           "test_loss": math.nan, "per_class_acc": [math.nan] * data.spec.num_classes}
    if "state" not in final:  # diverged: no final checkpoint, no test score
        return row
    # Test in fp32 on the run's device; the classifier is rebuilt exactly as run() built it.
    device = torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    labeler = LABELERS[cfg.labeling]
    num_classes = data.spec.num_classes
    classifier = build_classifier(cfg.classifier, data.spec, labeler.num_outputs(num_classes), cfg.classifier_width)
    classifier.load_state_dict(final["state"]["classifier"])
    test = evaluate(classifier.to(device), data.test_x, data.test_y, labeler, num_classes)
    row.update(test_acc=test["acc"], test_top5=test["top5"], test_loss=test["loss"],
               per_class_acc=test["per_class"])
    return row


def run_all(data, policies: dict[str, dict], seeds: int, *, cpus_per_run: float = 1, gpus_per_run: float = 0,
            address: str | None = None, num_cpus: int | None = None, on_row=None) -> pd.DataFrame:
    """Every policy x seed on `data` (ImageData, train := train + val) as a Ray task; returns one row per run.

    Progress is printed as runs finish; `on_row(runs so far)` is called after each one.
    """
    import ray

    from ganaug.tune import pack_data

    class_names = list(data.spec.class_names)
    started_ray = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        if address and address != "local":
            ray.init(address=address)
        else:
            # "local": a new Ray of our own; a bare ray.init() would join any cluster `ray start` left running.
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False)
        started_ray = True
    try:
        data_ref = ray.put(pack_data(data))  # one copy in the object store, shared by every run on a node
        task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run)(train_and_test)
        pending = {}
        for name, policy in policies.items():
            for seed in range(seeds):
                config = {**policy["config"], "seed": seed}
                pending[task.remote(data_ref, config, cpus_per_run)] = (name, seed, policy)
        total, rows = len(pending), []
        print(f"Evaluating {len(policies)} policies x {seeds} seeds = {total} runs "
              f"({policies[next(iter(policies))]['config']['epochs']} epochs each, train + val = "
              f"{len(data.train_y)} images)", flush=True)
        while pending:
            [done], _ = ray.wait(list(pending), num_returns=1)
            name, seed, policy = pending.pop(done)
            try:
                result = ray.get(done)
            except ray.exceptions.RayError as error:
                raise RunError(f"run {name} seed {seed} failed: {str(error).strip().splitlines()[-1]}") from None
            per_class = dict(zip(class_names, result.pop("per_class_acc")))
            config = policy["config"]
            rows.append({"policy": name, "seed": seed, **result, "per_class_acc": json.dumps(per_class),
                         "from_trial": policy["trial_id"], **{k: config[k] for k in DESCRIBING_KEYS}})
            shown = "diverged" if result["diverged"] else f"test_acc {result['test_acc']:.4f}"
            print(f"[{len(rows)}/{total}] {name} seed {seed}: {shown} ({result['wall_seconds']:.0f} s)", flush=True)
            if on_row is not None:
                on_row(_ordered(pd.DataFrame(rows), list(policies)))
        return _ordered(pd.DataFrame(rows), list(policies))
    finally:
        if started_ray:
            ray.shutdown()


def _ordered(runs: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    rank = {name: i for i, name in enumerate(order)}
    runs = runs.assign(_rank=runs["policy"].map(rank)).sort_values(["_rank", "seed"]).drop(columns="_rank")
    columns = ["policy", "seed", "test_acc", "test_top5", "test_loss", "per_class_acc", "epochs", "wall_seconds",
               "diverged", "from_trial", *DESCRIBING_KEYS]
    return runs[[c for c in columns if c in runs] + [c for c in runs if c not in columns]].reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# Statistics: t-intervals over seeds, paired differences by seed.

def t_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high) of the two-sided t-interval of the mean; nan bounds for fewer than 2 values."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf((1 + confidence) / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return mean, mean - half, mean + half


def summarize(runs: pd.DataFrame, column: str = "test_acc") -> pd.DataFrame:
    """Per policy (in run order): n, mean, std, ci_low, ci_high of `column` over seeds."""
    rows = []
    for policy, group in runs.groupby("policy", sort=False):
        values = group[column].to_numpy(dtype=float)
        mean, low, high = t_interval(values)
        finite = values[np.isfinite(values)]
        rows.append({"policy": policy, "n": len(finite), "mean": mean,
                     "std": float(finite.std(ddof=1)) if len(finite) > 1 else math.nan,
                     "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


def paired_differences(runs: pd.DataFrame, column: str = "test_acc",
                       baselines: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Every GAN policy minus every baseline, paired by seed: mean difference, its t-interval, paired t-test."""
    from scipy import stats

    baselines = BASELINES if baselines is None else baselines
    table = runs.pivot_table(index="seed", columns="policy", values=column, aggfunc="first", dropna=False)
    rows = []
    for policy in [p for p in runs["policy"].unique() if p not in baselines]:
        for baseline in [b for b in baselines if b in table]:
            pairs = table[[policy, baseline]].dropna()
            difference = (pairs[policy] - pairs[baseline]).to_numpy()
            mean, low, high = t_interval(difference)
            p_value = math.nan
            if len(pairs) >= 2 and np.ptp(difference) > 0:  # a constant difference has no t statistic
                p_value = float(stats.ttest_rel(pairs[policy], pairs[baseline]).pvalue)
            rows.append({"policy": policy, "baseline": baseline, "pairs": len(pairs), "mean_diff": mean,
                         "ci_low": low, "ci_high": high, "p_value": p_value,
                         "wins": int((difference > 0).sum())})
    return pd.DataFrame(rows)


def per_class_deltas(runs: pd.DataFrame, policy: str = "best_gan", baseline: str = "no_aug") -> pd.DataFrame:
    """Per class: mean accuracy of `baseline` and `policy` over seeds, and the mean paired difference."""
    def per_class(name: str) -> pd.DataFrame:
        rows = runs[runs["policy"] == name]
        return pd.DataFrame([json.loads(text) for text in rows["per_class_acc"]], index=rows["seed"].to_numpy())

    ours, theirs = per_class(policy), per_class(baseline)
    seeds = ours.index.intersection(theirs.index)
    delta = (ours.loc[seeds] - theirs.loc[seeds]).mean()
    return pd.DataFrame({"class": list(ours.columns), baseline: theirs.loc[seeds].mean().to_numpy(),
                         policy: ours.loc[seeds].mean().to_numpy(), "delta": delta.to_numpy()})


# ----------------------------------------------------------------------------------------------
# Outputs: evaluation.md (also printed), evaluation.png.

def markdown_report(experiment: Experiment, runs: pd.DataFrame, policies: dict[str, dict],
                    class_names: list[str], command: str | None = None) -> str:
    """The evaluation as Markdown: policies, means with intervals, paired differences, per-class deltas."""
    seeds = sorted(runs["seed"].unique())
    epochs = next(iter(policies.values()))["config"]["epochs"]
    pct = f"{CONFIDENCE:.0%}"
    lines = [f"# Evaluation: {experiment.meta.get('name', experiment.path.name)}", "",
             f"{len(seeds)} seeds ({seeds[0]}..{seeds[-1]}) per policy, {epochs} epochs each, trained on train + "
             f"val and tested on the test split of `{experiment.meta['data'].get('name')}` "
             f"({len(class_names)} classes). Intervals are {pct} t-intervals over seeds; differences are "
             f"paired by seed (same classifier initialisation and batch order).", ""]
    if command:
        lines += [f"Command: `{command}`", ""]

    lines += ["## Policies", ""]
    shown_keys = (*DESCRIBING_KEYS, "gan", "gan_arch", "classifier")
    rows = [[name, policy["trial_id"] if name not in BASELINES else "-",
             *[_cell(policy["config"][k]) for k in shown_keys]] for name, policy in policies.items()]
    lines += _markdown_table(["policy", "from trial", *shown_keys], rows) + [""]
    lines += [f"Baselines keep the classifier settings of the best GAN trial ({policies['best_gan']['trial_id']}) "
              f"with synthetic_ratio 0 and pseudo labels (plain cross-entropy, K outputs).", ""]

    metrics = [("test_acc", "Test accuracy")]
    if len(class_names) > 10:
        metrics.append(("test_top5", "Top-5 test accuracy"))
    for column, title in metrics:
        summary = summarize(runs, column)
        lines += [f"## {title} (mean over seeds, {pct} interval)", ""]
        lines += _markdown_table(["policy", "n", "mean", f"{pct} CI", "std"], [
            [r.policy, r.n, f"{r.mean:.4f}", f"[{r.ci_low:.4f}, {r.ci_high:.4f}]", f"{r.std:.4f}"]
            for r in summary.itertuples()]) + [""]
        differences = paired_differences(runs, column)
        lines += [f"### {title}: GAN policy - baseline, paired by seed", ""]
        lines += _markdown_table(["policy", "baseline", "pairs", "mean diff", f"{pct} CI", "p (paired t)", "wins"], [
            [r.policy, r.baseline, r.pairs, f"{r.mean_diff:+.4f}", f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}]",
             _p(r.p_value), f"{r.wins}/{r.pairs}"] for r in differences.itertuples()]) + [""]

    deltas = per_class_deltas(runs)
    lines += ["## Per-class test accuracy: best_gan - no_aug (mean over seeds)", ""]
    lines += _markdown_table(["class", "no_aug", "best_gan", "delta"], [
        [r[1], f"{r[2]:.4f}", f"{r[3]:.4f}", f"{r[4]:+.4f}"] for r in deltas.itertuples()]) + [""]
    diverged = int(runs["diverged"].sum()) if "diverged" in runs else 0
    if diverged:
        lines += [f"{diverged} run(s) diverged (non-finite loss) and have no test score; they are left out.", ""]
    return "\n".join(lines)


def plot_means(ax, runs: pd.DataFrame, column: str = "test_acc") -> None:
    """Each policy's mean with its t-interval as an error bar, and every seed's value as a dot."""
    summary = summarize(runs, column)
    x = np.arange(len(summary))
    errors = np.vstack([summary["mean"] - summary["ci_low"], summary["ci_high"] - summary["mean"]])
    colors = ["tab:gray" if p in BASELINES else "tab:blue" for p in summary["policy"]]
    for i, row in summary.iterrows():
        values = runs.loc[runs["policy"] == row["policy"], column]
        ax.scatter(np.full(len(values), i) + 0.15, values, s=12, color=colors[i], alpha=0.5)
        ax.errorbar(i, row["mean"], yerr=errors[:, [i]], fmt="o", capsize=5, color=colors[i])
    ax.set_xticks(x, summary["policy"], rotation=20, ha="right")
    ax.set_ylabel(f"{column} (mean, {CONFIDENCE:.0%} t-interval)")
    ax.grid(axis="y", alpha=0.3)


def plot_differences(ax, runs: pd.DataFrame, column: str = "test_acc") -> None:
    """Forest plot of the paired differences GAN policy - baseline, with a line at zero."""
    differences = paired_differences(runs, column)
    y = np.arange(len(differences))[::-1]
    errors = np.vstack([differences["mean_diff"] - differences["ci_low"],
                        differences["ci_high"] - differences["mean_diff"]])
    ax.errorbar(differences["mean_diff"], y, xerr=errors, fmt="o", capsize=4, color="tab:blue")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, [f"{r.policy} - {r.baseline}" for r in differences.itertuples()])
    ax.set_xlabel(f"{column} difference, paired by seed ({CONFIDENCE:.0%} t-interval)")
    ax.grid(axis="x", alpha=0.3)


def save_plot(runs: pd.DataFrame, path: str | Path, title: str = "") -> None:
    from matplotlib.figure import Figure  # no pyplot: no GUI backend needed

    figure = Figure(figsize=(12, 4.5), layout="constrained")
    left, right = figure.subplots(1, 2, width_ratios=[1, 1.2])
    plot_means(left, runs)
    plot_differences(right, runs)
    figure.suptitle(title)
    figure.savefig(path, dpi=120)


def _markdown_table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _cell(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _p(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.3g}" if value >= 1e-4 else "< 1e-4"


# ----------------------------------------------------------------------------------------------
# Command line.

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ganaug.evaluate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="experiment folder written by ganaug.tune (storage/name)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per policy, 0..N-1 (default 5, at least 2)")
    parser.add_argument("--top", type=int, default=1,
                        help="also retrain the 2nd..K-th best GAN trials as searched (default 1: the best only)")
    parser.add_argument("--epochs", type=int, help="epochs per run (default: the search's max_epochs)")
    parser.add_argument("--num-cpus", type=int, help="CPUs of the local Ray started when no address is given")
    parser.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--cpus-per-run", type=float, default=1, help="CPUs each run reserves (default 1)")
    parser.add_argument("--gpus-per-run", type=float, default=0,
                        help="GPUs each run reserves, e.g. 0.5 for two runs per GPU (default 0: CPU)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.seeds < 2:
            raise EvaluationError(f"--seeds {args.seeds}: valid: an integer >= 2 (a t-interval needs two seeds)")
        if args.cpus_per_run <= 0 or args.gpus_per_run < 0:
            raise EvaluationError("--cpus-per-run must be > 0 and --gpus-per-run >= 0")
        experiment = load_experiment(args.results)
        policies = policy_configs(experiment, top=args.top, epochs=args.epochs)
        from ganaug.data import load_data

        data = load_data(experiment.meta["data"]).train_and_val()
    except (EvaluationError, ResultsError, ConfigError, _data_error()) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT

    csv_path = experiment.path / EVALUATION_CSV
    if args.top > len(policies) - len(POLICIES) + 1:
        print(f"note: only {len(policies) - len(POLICIES) + 1} complete GAN trial(s); --top {args.top} "
              f"evaluates all of them", flush=True)
    try:
        runs = run_all(data, policies, args.seeds, cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run,
                       address=args.address, num_cpus=args.num_cpus,
                       # Partial results survive a crash: the CSV is rewritten whole after each finished run.
                       on_row=lambda partial: atomic_write(csv_path, partial.to_csv(index=False)))
    except RunError as error:
        print(f"error: {error} (finished runs so far are in {csv_path})", file=sys.stderr)
        return 1
    atomic_write(csv_path, runs.to_csv(index=False))
    command = "python -m ganaug.evaluate " + " ".join(argv if argv is not None else sys.argv[1:])
    report = markdown_report(experiment, runs, policies, list(data.spec.class_names), command)
    atomic_write(experiment.path / EVALUATION_MD, report + "\n")
    save_plot(runs, experiment.path / EVALUATION_PNG, title=f"{experiment.meta.get('name', '')}: test accuracy")
    print("\n" + report)
    print(f"Wrote {csv_path}, {experiment.path / EVALUATION_MD} and {experiment.path / EVALUATION_PNG}")
    return 0


def _data_error() -> type[Exception]:
    from ganaug.data import DataError

    return DataError


# ----------------------------------------------------------------------------------------------
# Registry: the policies derived from the best GAN trial (changes applied to its config).
# Baselines drop the GAN and use pseudo labels, which on real data alone are plain cross-entropy over K
# outputs (all_in_one would leave an untrained (K+1)-th output in the baseline classifier).

POLICIES = {
    "no_aug": {"synthetic_ratio": 0.0, "labeling": "pseudo", "traditional_aug": False},
    "traditional": {"synthetic_ratio": 0.0, "labeling": "pseudo", "traditional_aug": True},
    "best_gan": {"traditional_aug": False},
    "best_gan+traditional": {"traditional_aug": True},
}
BASELINES = ("no_aug", "traditional")
# Config keys copied into every evaluation.csv row, so the file says what each policy was.
DESCRIBING_KEYS = ("synthetic_ratio", "labeling", "traditional_aug")


if __name__ == "__main__":
    sys.exit(main())
