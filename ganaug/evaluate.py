"""`python -m ganaug.evaluate RESULTS_DIR`: does the best GAN policy beat the best no-GAN policy on the test split?

Retrains the search's best GAN policy, its best no-GAN policy and fixed ablations with the same epoch budget on
train + val, over several seeds (Ray tasks in parallel), tests every final classifier on the test split, and
writes into the experiment folder:

    evaluation.csv           one row per run: policy, seed, test_acc, test_top5, per-class accuracies (JSON),
                             run_id (hash of config + seed: a rerun keeps finished runs), ...
    evaluation.md            first line: best GAN vs best no-GAN policy, paired over seeds, with its 95 % interval;
                             then means with t-intervals, paired differences, --ablate table, per-class deltas
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
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ganaug.config import ConfigError, TrialConfig, registry_choices
from ganaug.errors import EXIT_BAD_INPUT, InputError
from ganaug.results import Experiment, atomic_write, best_policy_trials, load_experiment, uses_synthetic

EVALUATION_CSV = "evaluation.csv"
EVALUATION_MD = "evaluation.md"
EVALUATION_PNG = "evaluation.png"
ABLATION_PNG = "evaluation_ablation.png"
PREVIOUS_CSV = "evaluation.previous.csv"
CONFIDENCE = 0.95
BEST_GAN = "best_gan"
BEST_NO_GAN = "best_no_gan"
VARIANT_PREFIX = f"{BEST_GAN}-"      # --ablate: best_gan-<key> is best_gan with <key> at its default
TRADITIONAL_PREFIX = "no_gan+"       # no_gan+<choice>: GAN off, traditional_aug <choice>


class EvaluationError(InputError):
    """The experiment cannot be evaluated as asked; the message names the folder or option."""


class RunError(RuntimeError):
    """A training run (Ray task) failed; the message names the policy and seed."""


# ----------------------------------------------------------------------------------------------
# Which policies run: best_no_gan and best_gan as searched, top2..K, the fixed ablations (FIXED_ABLATIONS and
# one per traditional_aug choice) at best_gan's settings, and with --ablate one variant per non-default key.

def complete_trials(experiment: Experiment) -> pd.DataFrame:
    """Complete, non-diverged trials with a score, best first."""
    key = f"last_{experiment.metric}"
    trials = experiment.trials[experiment.trials["status"] == "complete"].dropna(subset=[key])
    if trials.empty:
        counts = dict(experiment.trials["status"].value_counts())
        raise EvaluationError(f"{experiment.path}: no complete trial to evaluate (trial statuses: {counts}); "
                              f"let the search finish, or resume it with python -m ganaug.tune SPACE --resume")
    return trials.sort_values(key, ascending=experiment.mode == "min", kind="stable")


def gan_trials(experiment: Experiment) -> pd.DataFrame:
    """Trials that use synthetic data (synthetic_ratio > 0), best first: the complete ones; when ASHA stopped
    every GAN trial early, the pruned GAN trials that got furthest (results.best_policy_trials).

    A search whose baselines score high from the first epoch can prune every GAN policy (the quickstart on
    digits does). Evaluate retrains every policy for the full budget anyway, so the best GAN policy the search
    found still answers the question; its `source` says it was pruned.
    """
    complete_trials(experiment)  # a search with no complete trial at all is not ready to evaluate
    trials, _ = best_policy_trials(experiment, experiment.trials, gan=True)
    if trials.empty:
        raise EvaluationError(f"{experiment.path}: no complete or pruned trial uses synthetic data "
                              f"(synthetic_ratio > 0), so there is no GAN policy to compare with the baselines")
    return trials


def no_gan_trials(experiment: Experiment) -> pd.DataFrame:
    """Complete, non-diverged trials without synthetic data (synthetic_ratio 0), best first; may be empty."""
    trials = complete_trials(experiment)
    return trials[~uses_synthetic(experiment, trials)]


def policy_configs(experiment: Experiment, top: int = 1, epochs: int | None = None,
                   ablate: bool = False) -> dict[str, dict]:
    """Policy name -> {"trial_id", "config", "source", "aliases", ...}, in run and report order.

    best_no_gan and best_gan (and top2..topK) keep their own searched settings; the fixed ablations and the
    --ablate variants are best_gan's config with a few keys changed. All share the epoch budget (the search's
    max_epochs unless `epochs`), checkpoint only at the end and skip the CAS score. A policy whose config
    equals an earlier one's is not run twice: it is listed in the earlier one's "aliases".
    `source`: searched (a trial's config as is) | pruned at epoch N (no GAN trial completed) |
    untuned (best_no_gan without a complete no-GAN trial) |
    ablation (a fixed ablation) | ablate (an --ablate variant).
    """
    if top < 1:
        raise EvaluationError(f"--top {top}: valid: an integer >= 1")
    if epochs is not None and epochs < 1:
        raise EvaluationError(f"--epochs {epochs}: valid: an integer >= 1")
    ranked = gan_trials(experiment)
    epochs = epochs or int(experiment.meta["max_epochs"])
    budget = {"epochs": epochs, "checkpoint_every": epochs, "sample_every": epochs, "cas_epochs": 0}
    best = ranked.iloc[0]
    best_id = str(best["trial_id"])
    best_config = TrialConfig.from_dict({**experiment.config_of(best), **budget}, where=f"policy {BEST_GAN}").to_dict()

    def derived(name: str, changes: dict, source: str) -> tuple[str, dict]:
        config = TrialConfig.from_dict({**best_config, **changes}, where=f"policy {name}").to_dict()
        return name, {"trial_id": best_id, "config": config, "source": source}

    candidates = []  # (name, policy) in priority order: the first of equal configs keeps its name
    baseline = no_gan_trials(experiment)
    if baseline.empty:
        # No tuned baseline to compare with: the fairest untuned one is best_gan with only the GAN removed.
        candidates.append(derived(BEST_NO_GAN, FIXED_ABLATIONS["gan_off"], "untuned"))
    else:
        trial = baseline.iloc[0]
        config = TrialConfig.from_dict({**experiment.config_of(trial), **budget}, where=f"policy {BEST_NO_GAN}")
        candidates.append((BEST_NO_GAN, {"trial_id": str(trial["trial_id"]), "config": config.to_dict(),
                                         "source": "searched"}))
    searched = lambda trial: "searched" if trial["status"] == "complete" else f"pruned at epoch {trial['epochs']}"
    candidates.append((BEST_GAN, {"trial_id": best_id, "config": best_config, "source": searched(best)}))
    for rank, (_, trial) in enumerate(ranked.iloc[1:top].iterrows(), start=2):
        config = TrialConfig.from_dict({**experiment.config_of(trial), **budget}, where=f"policy top{rank}")
        candidates.append((f"top{rank}", {"trial_id": str(trial["trial_id"]), "config": config.to_dict(),
                                          "source": searched(trial)}))
    for name, changes in FIXED_ABLATIONS.items():
        candidates.append(derived(name, changes, "ablation"))
    for choice in registry_choices("traditional_aug"):
        candidates.append(derived(f"{TRADITIONAL_PREFIX}{choice}", {**NO_GAN, "traditional_aug": choice},
                                  "ablation"))
    if ablate:
        variants = ablation_variants(best_config)
        if not variants:
            raise EvaluationError(f"--ablate: the best GAN policy (trial {best_id}) has every policy key at its "
                                  f"default (synthetic_ratio aside), so there is nothing to reset; valid: "
                                  f"leave out --ablate")
        for key, changes in variants.items():
            candidates.append(derived(f"{VARIANT_PREFIX}{key}", changes, "ablate"))
    return _deduplicate(candidates)


def ablation_variants(config: dict) -> dict[str, dict]:
    """Key -> the changes of its --ablate variant: the key at its TrialConfig default, for every ABLATION_KEYS
    key that differs from it in `config`.

    When the reset alone breaks a rule between keys (gan_pretrain_epochs reset to 0 while gan_freeze stays
    True), the first other non-default key whose reset as well makes a valid config is reset with it; the
    report names it. A key that no such pair repairs is left out (none does today).
    """
    defaults = TrialConfig().to_dict()
    changed = [key for key in ABLATION_KEYS if config[key] != defaults[key]]
    variants = {}
    for key in changed:
        for partner in [None, *[k for k in changed if k != key]]:
            changes = {key: defaults[key]} if partner is None else {key: defaults[key], partner: defaults[partner]}
            try:
                TrialConfig.from_dict({**config, **changes})
            except ConfigError:
                continue
            variants[key] = changes
            break
    return variants


def _deduplicate(candidates: list[tuple[str, dict]]) -> dict[str, dict]:
    """Keep the first policy of each distinct config; later ones with the same config become its aliases."""
    policies: dict[str, dict] = {}
    for name, policy in candidates:
        same = next((kept for kept, other in policies.items() if other["config"] == policy["config"]), None)
        if same is None:
            policies[name] = {**policy, "aliases": []}
        else:
            policies[same]["aliases"].append(name)
    return policies


def alias_map(policies_or_runs: dict[str, dict] | pd.DataFrame) -> dict[str, str]:
    """Every policy name -> the name its runs are under (itself, or the policy it is an alias of).

    Takes the policies of policy_configs, or the runs of evaluation.csv (its `aliases` column)."""
    if isinstance(policies_or_runs, pd.DataFrame):
        runs = policies_or_runs
        aliases = runs.groupby("policy", sort=False)["aliases"].first() if "aliases" in runs else {}
        pairs = {name: [a for a in str(text).split(";") if a and a != "nan"] for name, text in dict(aliases).items()}
        names = list(runs["policy"].unique())
    else:
        pairs = {name: policy.get("aliases", []) for name, policy in policies_or_runs.items()}
        names = list(policies_or_runs)
    resolved = {name: name for name in names}
    resolved.update({alias: name for name, aliases in pairs.items() for alias in aliases})
    return resolved


def role_of(name: str) -> str:
    """baseline (best_no_gan) | ablation (the fixed no-GAN policies) | variant (--ablate) | gan (best_gan, topK)."""
    if name == BEST_NO_GAN:
        return "baseline"
    if name in FIXED_ABLATIONS or name.startswith(TRADITIONAL_PREFIX):
        return "ablation"
    if name.startswith(VARIANT_PREFIX):
        return "variant"
    return "gan"


# ----------------------------------------------------------------------------------------------
# Runs: one per policy and seed, named by a hash of its config, so a rerun keeps what evaluation.csv holds.

def run_id(config: dict, seed: int) -> str:
    """Stable id of one run: a hash of its full config (seed included; epochs are part of the config)."""
    text = json.dumps({**config, "seed": int(seed)}, sort_keys=True)
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
    classifier = build_classifier(cfg.classifier, data.spec, labeler.num_outputs(num_classes), cfg.classifier_width,
                                  split_bn=cfg.synthetic_bn == "split", kwargs=cfg.classifier_kwargs)
    classifier.load_state_dict(final["state"]["classifier"])
    test = evaluate(classifier.to(device), data.test_x, data.test_y, labeler, num_classes)
    row.update(test_acc=test["acc"], test_top5=test["top5"], test_loss=test["loss"],
               per_class_acc=test["per_class"])
    return row


def run_all(data, policies: dict[str, dict], seeds: int, *, kept: pd.DataFrame | None = None,
            cpus_per_run: float = 1, gpus_per_run: float = 0, address: str | None = None,
            num_cpus: int | None = None, on_row=None) -> pd.DataFrame:
    """Every policy x seed on `data` (ImageData, train := train + val) that `kept` (rows of an earlier run, by
    run_id) lacks, as a Ray task; returns one row per run, the kept ones included.

    Progress is printed as runs finish; `on_row(runs so far)` is called after each one. No Ray starts when
    nothing is left to run.
    """
    kept = kept if kept is not None else pd.DataFrame()
    done = set(kept["run_id"]) if "run_id" in kept else set()
    todo = [run for run in planned_runs(policies, seeds) if run["run_id"] not in done]
    rows = kept.to_dict("records")
    if not todo:
        return _ordered(kept, list(policies))
    import ray

    from ganaug.cluster import ray_session
    from ganaug.tune import pack_data

    class_names = list(data.spec.class_names)
    with ray_session(address, num_cpus):
        data_ref = ray.put(pack_data(data))  # one copy in the object store, shared by every run on a node
        task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run)(train_and_test)
        pending = {task.remote(data_ref, run["config"], cpus_per_run): run for run in todo}
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
    columns = ["policy", "seed", "test_acc", "test_top5", "test_loss", "per_class_acc", "epochs", "wall_seconds",
               "diverged", "from_trial", "source", "aliases", *DESCRIBING_KEYS, "run_id"]
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


def comparisons(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """The (policy, baseline) pairs the report shows, by policy name: best_gan - best_no_gan first, then best_gan
    - every fixed ablation, every other GAN policy - best_no_gan, and every --ablate variant - best_gan."""
    names = list(runs["policy"].unique())
    no_gan = [n for n in names if role_of(n) in ("baseline", "ablation")]
    pairs = [(BEST_GAN, baseline) for baseline in no_gan if BEST_GAN in names]
    pairs += [(n, BEST_NO_GAN) for n in names if role_of(n) == "gan" and n != BEST_GAN and BEST_NO_GAN in names]
    pairs += [(n, BEST_GAN) for n in names if role_of(n) == "variant" and BEST_GAN in names]
    return pairs


def paired_differences(runs: pd.DataFrame, column: str = "test_acc", baselines: tuple[str, ...] | None = None,
                       pairs: list[tuple[str, str]] | None = None) -> pd.DataFrame:
    """Policy minus baseline, paired by seed: mean difference, its t-interval, paired t-test, wins.

    `pairs` names them; else every policy not in `baselines` minus each of them; else comparisons(runs). A name
    that is an alias (evaluation.csv's `aliases`) reads the runs of the policy it is an alias of.
    """
    from scipy import stats

    table = runs.pivot_table(index="seed", columns="policy", values=column, aggfunc="first", dropna=False)
    if pairs is None:
        pairs = comparisons(runs) if baselines is None else [
            (p, b) for p in runs["policy"].unique() if p not in baselines for b in baselines if b in table]
    resolve = alias_map(runs)
    rows = []
    for policy, baseline in pairs:
        names = [resolve.get(policy, policy), resolve.get(baseline, baseline)]
        both = table[names].dropna() if set(names) <= set(table) else pd.DataFrame(columns=names)
        difference = (both.iloc[:, 0] - both.iloc[:, 1]).to_numpy()
        mean, low, high = t_interval(difference)
        p_value = math.nan
        if len(both) >= 2 and np.ptp(difference) > 0:  # a constant difference has no t statistic
            p_value = float(stats.ttest_rel(both.iloc[:, 0], both.iloc[:, 1]).pvalue)
        rows.append({"policy": policy, "baseline": baseline, "pairs": len(both), "mean_diff": mean,
                     "ci_low": low, "ci_high": high, "p_value": p_value, "wins": int((difference > 0).sum())})
    return pd.DataFrame(rows, columns=["policy", "baseline", "pairs", "mean_diff", "ci_low", "ci_high", "p_value",
                                       "wins"])


def headline(runs: pd.DataFrame, untuned: bool | None = None) -> str:
    """The report's first line: best_gan - best_no_gan in percentage points, its interval and the seed count.

    `untuned` (best_no_gan is not a searched trial) defaults to what the runs' `source` column says."""
    if untuned is None:
        source = runs.loc[runs["policy"] == BEST_NO_GAN, "source"] if "source" in runs else pd.Series(dtype=str)
        untuned = bool((source == "untuned").any())
    row = paired_differences(runs, pairs=[(BEST_GAN, BEST_NO_GAN)]).iloc[0]
    points = [100 * row[k] for k in ("mean_diff", "ci_low", "ci_high")]
    shown = f"{points[0]:+.1f} points" if math.isfinite(points[0]) else "n/a"
    interval = f"[{points[1]:+.1f}, {points[2]:+.1f}]" if math.isfinite(points[1]) else "[n/a]"
    line = (f"best GAN policy vs best no-GAN policy: {shown} {interval} ({100 * CONFIDENCE:.0f} % CI, paired over "
            f"{row['pairs']} seeds)")
    if untuned:
        line += "; the no-GAN policy is untuned (the search has no complete synthetic_ratio 0 trial)"
    return line


def per_class_deltas(runs: pd.DataFrame, policy: str = BEST_GAN, baseline: str = BEST_NO_GAN) -> pd.DataFrame:
    """Per class: mean accuracy of `baseline` and `policy` over seeds, and the mean paired difference."""
    resolve = alias_map(runs)

    def per_class(name: str) -> pd.DataFrame:
        rows = runs[runs["policy"] == resolve.get(name, name)]
        return pd.DataFrame([json.loads(text) for text in rows["per_class_acc"]], index=rows["seed"].to_numpy())

    ours, theirs = per_class(policy), per_class(baseline)
    seeds = ours.index.intersection(theirs.index)
    delta = (ours.loc[seeds] - theirs.loc[seeds]).mean()
    return pd.DataFrame({"class": list(ours.columns), baseline: theirs.loc[seeds].mean().to_numpy(),
                         policy: ours.loc[seeds].mean().to_numpy(), "delta": delta.to_numpy()})


# ----------------------------------------------------------------------------------------------
# Outputs: evaluation.md (also printed), evaluation.png, evaluation_ablation.png.

def markdown_report(experiment: Experiment, runs: pd.DataFrame, policies: dict[str, dict],
                    class_names: list[str], command: str | None = None) -> str:
    """The evaluation as Markdown: the headline line, policies, means with intervals, paired differences,
    the --ablate table and per-class deltas."""
    seeds = sorted(runs["seed"].unique())
    epochs = next(iter(policies.values()))["config"]["epochs"]
    pct = f"{CONFIDENCE:.0%}"
    untuned = policies[BEST_NO_GAN]["source"] == "untuned"
    best_id = policies[BEST_GAN]["trial_id"]
    lines = [headline(runs, untuned), "",
             f"# Evaluation: {experiment.meta.get('name', experiment.path.name)}", "",
             f"{len(seeds)} seeds ({seeds[0]}..{seeds[-1]}) per policy, {epochs} epochs each, trained on train + "
             f"val and tested on the test split of `{experiment.meta['data'].get('name')}` "
             f"({len(class_names)} classes). Intervals are {pct} t-intervals over seeds; differences are "
             f"paired by seed (same classifier initialisation and batch order) and given in percentage points.", ""]
    if command:
        lines += [f"Command: `{command}`", ""]

    lines += ["## Policies", ""]
    shown_keys = (*DESCRIBING_KEYS, "classifier", "classifier_lr")
    rows = [[name, policy["source"], policy["trial_id"], ", ".join(policy["aliases"]) or "-",
             *[_cell(policy["config"][k]) for k in shown_keys]] for name, policy in policies.items()]
    lines += _markdown_table(["policy", "source", "from trial", "same config as", *shown_keys], rows) + [""]
    if untuned:
        lines += [f"**{BEST_NO_GAN} is untuned**: the search has no complete trial with synthetic_ratio 0, so it is "
                  f"`gan_off`, the best GAN trial's ({best_id}) settings with the GAN removed. Search "
                  f"synthetic_ratio with 0 in reach (experiment.baselines_first) for a tuned no-GAN baseline.", ""]
    else:
        lines += [f"{BEST_NO_GAN} is the best complete no-GAN trial of the search "
                  f"({policies[BEST_NO_GAN]['trial_id']}), with its own tuned settings.", ""]
    lines += [f"The ablations keep the best GAN trial's ({best_id}) settings: `no_aug` without synthetic data "
              f"(synthetic_ratio 0, pseudo labels: plain cross-entropy with K outputs), traditional augmentation "
              f"or cutout; `gan_off` the same with best_gan's traditional augmentation kept; "
              f"`{TRADITIONAL_PREFIX}<choice>` without synthetic data, with that traditional_aug. Policies "
              f"with the same config run once, under the first name (\"same config as\").", ""]

    metrics = [("test_acc", "Test accuracy")]
    if len(class_names) > 10:
        metrics.append(("test_top5", "Top-5 test accuracy"))
    for column, title in metrics:
        summary = summarize(runs, column)
        lines += [f"## {title} (mean over seeds, {pct} interval)", ""]
        lines += _markdown_table(["policy", "n", "mean", f"{pct} CI", "std"], [
            [r.policy, r.n, f"{r.mean:.4f}", f"[{r.ci_low:.4f}, {r.ci_high:.4f}]", f"{r.std:.4f}"]
            for r in summary.itertuples()]) + [""]
        differences = paired_differences(runs, column, pairs=[
            pair for pair in comparisons(runs) if role_of(pair[0]) != "variant"])
        differences["baseline"] = [_with_aliases(name, policies) for name in differences["baseline"]]
        lines += [f"### {title}: GAN policy - baseline, paired by seed (points)", ""]
        lines += _differences_table(differences, ["policy", "baseline"], pct)
    variants = [name for name in alias_map(policies) if role_of(name) == "variant"]
    if variants:
        lines += _ablation_section(runs, policies, variants, pct)

    deltas = per_class_deltas(runs)
    lines += [f"## Per-class test accuracy: {BEST_GAN} - {BEST_NO_GAN} (mean over seeds)", ""]
    lines += _markdown_table(["class", BEST_NO_GAN, BEST_GAN, "delta"], [
        [r[1], f"{r[2]:.4f}", f"{r[3]:.4f}", f"{r[4]:+.4f}"] for r in deltas.itertuples()]) + [""]
    diverged = int(runs["diverged"].sum()) if "diverged" in runs else 0
    if diverged:
        lines += [f"{diverged} run(s) diverged (non-finite loss) and have no test score; they are left out.", ""]
    return "\n".join(lines)


def _ablation_section(runs: pd.DataFrame, policies: dict[str, dict], variants: list[str], pct: str) -> list[str]:
    best = policies[BEST_GAN]["config"]
    resets = ablation_variants(best)
    differences = ablation_differences(runs, variants)
    rows = []
    for r in differences.itertuples():
        key = r.policy.removeprefix(VARIANT_PREFIX)
        others = [f"{k}: {_cell(best[k])} -> {_cell(v)}" for k, v in resets[key].items() if k != key]
        rows.append([r.policy, f"{_cell(best[key])} -> {_cell(resets[key][key])}",
                     "; ".join(others) or "-", r.pairs, f"{100 * r.mean_diff:+.2f}",
                     f"[{100 * r.ci_low:+.2f}, {100 * r.ci_high:+.2f}]", _p(r.p_value), f"{r.wins}/{r.pairs}"])
    return [f"## Ablation: each non-default key of {BEST_GAN} reset to its default (variant - {BEST_GAN}, points)",
            "", f"A negative difference: the searched value helps. Not reset: {', '.join(NOT_ABLATED)}.", "",
            *_markdown_table(["variant", "reset", "also reset (rule between keys)", "pairs", "mean diff",
                              f"{pct} CI", "p (paired t)", "wins"], rows), ""]


def ablation_differences(runs: pd.DataFrame, variants: list[str] | None = None,
                         column: str = "test_acc") -> pd.DataFrame:
    """Each --ablate variant minus best_gan, paired by seed (paired_differences' columns)."""
    if variants is None:
        variants = [name for name in alias_map(runs) if role_of(name) == "variant"]
    return paired_differences(runs, column, pairs=[(name, BEST_GAN) for name in variants])


def _with_aliases(name: str, policies: dict[str, dict]) -> str:
    aliases = policies[name]["aliases"] if name in policies else []
    return f"{name} (= {', '.join(aliases)})" if aliases else name


def _differences_table(differences: pd.DataFrame, names: list[str], pct: str) -> list[str]:
    return _markdown_table([*names, "pairs", "mean diff", f"{pct} CI", "p (paired t)", "wins"], [
        [*[getattr(r, n) for n in names], r.pairs, f"{100 * r.mean_diff:+.2f}",
         f"[{100 * r.ci_low:+.2f}, {100 * r.ci_high:+.2f}]", _p(r.p_value), f"{r.wins}/{r.pairs}"]
        for r in differences.itertuples()]) + [""]


def plot_means(ax, runs: pd.DataFrame, column: str = "test_acc") -> None:
    """Each policy's mean with its t-interval as an error bar, and every seed's value as a dot."""
    summary = summarize(runs, column)
    x = np.arange(len(summary))
    errors = np.vstack([summary["mean"] - summary["ci_low"], summary["ci_high"] - summary["mean"]])
    colors = ["tab:gray" if role_of(p) in ("baseline", "ablation") else "tab:blue" for p in summary["policy"]]
    for i, row in summary.iterrows():
        values = runs.loc[runs["policy"] == row["policy"], column]
        ax.scatter(np.full(len(values), i) + 0.15, values, s=12, color=colors[i], alpha=0.5)
        ax.errorbar(i, row["mean"], yerr=errors[:, [i]], fmt="o", capsize=5, color=colors[i])
    ax.set_xticks(x, summary["policy"], rotation=20, ha="right")
    ax.set_ylabel(f"{column} (mean, {CONFIDENCE:.0%} t-interval)")
    ax.grid(axis="y", alpha=0.3)


def plot_differences(ax, runs: pd.DataFrame, column: str = "test_acc",
                     differences: pd.DataFrame | None = None) -> None:
    """Forest plot of paired differences in points (default: GAN policy - baseline), with a line at zero."""
    if differences is None:
        differences = paired_differences(runs, column, pairs=[
            pair for pair in comparisons(runs) if role_of(pair[0]) != "variant"])
    y = np.arange(len(differences))[::-1]
    mean = 100 * differences["mean_diff"]
    errors = np.vstack([mean - 100 * differences["ci_low"], 100 * differences["ci_high"] - mean])
    ax.errorbar(mean, y, xerr=errors, fmt="o", capsize=4, color="tab:blue")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, [f"{r.policy} - {r.baseline}" for r in differences.itertuples()])
    ax.set_xlabel(f"{column} difference in points, paired by seed ({CONFIDENCE:.0%} t-interval)")
    ax.grid(axis="x", alpha=0.3)


def save_plot(runs: pd.DataFrame, path: str | Path, title: str = "") -> None:
    from matplotlib.figure import Figure  # no pyplot: no GUI backend needed

    figure = Figure(figsize=(12, 4.5), layout="constrained")
    left, right = figure.subplots(1, 2, width_ratios=[1, 1.2])
    plot_means(left, runs)
    plot_differences(right, runs)
    figure.suptitle(title)
    figure.savefig(path, dpi=120)


def save_ablation_plot(runs: pd.DataFrame, path: str | Path, title: str = "") -> None:
    from matplotlib.figure import Figure

    differences = ablation_differences(runs)
    figure = Figure(figsize=(8, 1.5 + 0.4 * len(differences)), layout="constrained")
    plot_differences(figure.subplots(), runs, differences=differences)
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
    try:
        if args.seeds < 2:
            raise EvaluationError(f"--seeds {args.seeds}: valid: an integer >= 2 (a t-interval needs two seeds)")
        if args.cpus_per_run <= 0 or args.gpus_per_run < 0:
            raise EvaluationError("--cpus-per-run must be > 0 and --gpus-per-run >= 0")
        experiment = load_experiment(args.results)
        policies = policy_configs(experiment, top=args.top, epochs=args.epochs, ablate=args.ablate)
        from ganaug.data import load_data

        data = load_data(experiment.meta["data"]).train_and_val()
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT

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
                       # Partial results survive a crash: the CSV is rewritten whole after each finished run.
                       on_row=lambda partial: atomic_write(csv_path, partial.to_csv(index=False)))
    except RunError as error:
        print(f"error: {error} (finished runs so far are in {csv_path})", file=sys.stderr)
        return 1
    atomic_write(csv_path, runs.to_csv(index=False))
    command = f"{prog} " + " ".join(argv if argv is not None else sys.argv[1:])
    report = markdown_report(experiment, runs, policies, list(data.spec.class_names), command)
    atomic_write(experiment.path / EVALUATION_MD, report + "\n")
    name = experiment.meta.get("name", "")
    save_plot(runs, experiment.path / EVALUATION_PNG, title=f"{name}: test accuracy")
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


# ----------------------------------------------------------------------------------------------
# Registry: the fixed ablations, changes applied to the best GAN trial's config; one more per traditional_aug
# choice (no_gan+<choice>: NO_GAN with that choice) follows them. No-GAN policies use pseudo labels, which on real
# data alone are plain cross-entropy over K outputs (all_in_one would leave an untrained (K+1)-th output).

NO_GAN = {"synthetic_ratio": 0.0, "labeling": "pseudo"}
FIXED_ABLATIONS = {
    "no_aug": {**NO_GAN, "traditional_aug": "none", "cutout": 0},  # no synthetic data, no augmentation at all
    "gan_off": NO_GAN,  # the GAN removed, best_gan's traditional augmentation and cutout kept
}
# Keys --ablate never resets: the run budget and hardware (the same for every policy of an evaluation), and
# synthetic_ratio, whose default 0 removes the GAN, which gan_off and no_aug already measure, and classifier_kwargs,
# an external model's own arguments (configs hold them as flat classifier_kwargs.NAME keys; `classifier` is ablated).
NOT_ABLATED = ("epochs", "seed", "checkpoint_every", "sample_every", "cas_epochs", "device", "precision",
               "synthetic_ratio", "classifier_kwargs")
ABLATION_KEYS = tuple(field.name for field in fields(TrialConfig) if field.name not in NOT_ABLATED)
# Config keys copied into every evaluation.csv row, so the file says what each policy was.
DESCRIBING_KEYS = ("synthetic_ratio", "labeling", "traditional_aug", "cutout")


if __name__ == "__main__":
    sys.exit(main())
