"""ganaug.evaluate: best GAN vs best no-GAN policy and the ablations, retrained over seeds on a real tiny search;
--ablate; resuming a killed evaluation; statistics; bad input."""

import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from experiment_fixture import EPOCHS, copy_experiment, evaluated_experiment, tiny_experiment
from scipy import stats

from ganaug.config import CHOICES, TrialConfig
from ganaug.errors import EXIT_BAD_INPUT
from ganaug.results.evaluate import main, run_id
from ganaug.results.experiment import load_experiment
from ganaug.results.policies import (
    BEST_GAN,
    BEST_NO_GAN,
    FIXED_ABLATIONS,
    LONG_TAIL_PREFIX,
    ORACLE,
    TRADITIONAL_PREFIX,
    VARIANT_PREFIX,
    alias_map,
)
from ganaug.results.report import headline
from ganaug.results.selection import ABLATION_KEYS, NOT_ABLATED, ablation_variants, oracle_changes, policy_configs
from ganaug.results.stats import paired_differences, per_class_deltas, summarize, t_interval

ROOT = Path(__file__).resolve().parents[1]
HEADLINE = re.compile(r"^best GAN policy vs best no-GAN policy: ([+-]\d+\.\d) points \[([+-]\d+\.\d), ([+-]\d+\.\d)\] "
                      r"\(95 % CI, paired over (\d+) seeds\)")
NO_GAN_TRIAL = "nogan"


@pytest.fixture(scope="session")
def experiment_dir(tmp_path_factory):
    return tiny_experiment(tmp_path_factory)


@pytest.fixture(scope="session")
def evaluated(tmp_path_factory):
    """The tiny search (no no-GAN trial: best_no_gan is untuned), evaluated with --seeds 2."""
    return evaluated_experiment(tmp_path_factory)


def with_no_gan_trial(experiment_dir: Path, destination: Path) -> Path:
    """A copy of the experiment with one more complete trial, NO_GAN_TRIAL: synthetic_ratio 0 and its own
    classifier_lr (its curve is the best trial's at half the val_acc; only the config matters to evaluate)."""
    copy = copy_experiment(experiment_dir, destination)
    experiment = load_experiment(copy)
    best = Path(experiment.best()["path"])
    trial = copy / f"train_trial_{NO_GAN_TRIAL}"
    trial.mkdir()
    (trial / "params.json").write_text(json.dumps({"labeling": "pseudo", "classifier_lr": 2e-3,
                                                   "synthetic_ratio": 0.0}))
    lines = [json.loads(line) for line in (best / "result.json").read_text().splitlines() if line.strip()]
    lines = [{**r, "trial_id": NO_GAN_TRIAL, "val_acc": r["val_acc"] / 2} for r in lines]
    (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return copy


@pytest.fixture(scope="session")
def tuned_ablated(experiment_dir, tmp_path_factory):
    """The tiny search plus a complete no-GAN trial, evaluated with --seeds 2 --ablate."""
    path = with_no_gan_trial(experiment_dir, tmp_path_factory.mktemp("tuned") / "tiny")
    assert main([str(path), "--seeds", "2", "--epochs", str(EPOCHS), "--num-cpus", "2", "--ablate"]) == 0
    return path


def read_runs(path: Path) -> pd.DataFrame:
    return pd.read_csv(path / "evaluation.csv", dtype={"from_trial": str, "run_id": str, "aliases": str})


def all_names(runs: pd.DataFrame) -> set[str]:
    """Every policy name of an evaluation: those that ran and those deduplicated into them."""
    return set(alias_map(runs))


# ----------------------------------------------------------------------------------------------
# The real thing: python -m ganaug.evaluate RESULTS --seeds 2 --epochs 2 on the tiny search.

@pytest.mark.slow
def test_csv_has_one_row_per_policy_and_seed(evaluated):
    runs = read_runs(evaluated)
    choices = CHOICES["traditional_aug"]
    assert all_names(runs) == {BEST_NO_GAN, BEST_GAN, *FIXED_ABLATIONS,
                               *[f"{TRADITIONAL_PREFIX}{c}" for c in choices]}
    assert list(runs["policy"].unique())[:2] == [BEST_NO_GAN, BEST_GAN]  # the headline first
    assert sorted(runs.groupby("policy")["seed"].apply(tuple).unique()) == [(0, 1)]
    assert (runs["epochs"] == EPOCHS).all() and (runs["diverged"] == 0).all()
    assert runs["test_acc"].between(0, 1).all() and runs["test_top5"].ge(runs["test_acc"]).all()
    # Without traditional augmentation (which ruins 8x8 digits) every run is far above chance (0.1).
    plain = runs[runs["traditional_aug"] == "none"]
    assert (plain["test_acc"] > 0.5).all(), plain[["policy", "seed", "test_acc"]]
    assert (runs["wall_seconds"] > 0).all()
    assert runs["run_id"].str.fullmatch(r"[0-9a-f]{16}").all() and runs["run_id"].is_unique
    best = load_experiment(evaluated).best()
    assert (runs["from_trial"] == best["trial_id"]).all()
    by_policy = runs.groupby("policy").first()
    assert by_policy.loc[BEST_GAN, "synthetic_ratio"] > 0 and by_policy.loc[BEST_GAN, "source"] == "searched"
    for name in by_policy.index.drop(BEST_GAN):  # every other policy runs without the GAN
        assert by_policy.loc[name, "synthetic_ratio"] == 0 and by_policy.loc[name, "labeling"] == "pseudo", name
    for choice in choices:
        assert by_policy.loc[alias_map(runs)[f"{TRADITIONAL_PREFIX}{choice}"], "traditional_aug"] == choice
    for text, accuracy in zip(runs["per_class_acc"], runs["test_acc"]):
        per_class = json.loads(text)
        assert list(per_class) == [str(k) for k in range(10)]
        # digits' test split is nearly balanced: the mean per-class accuracy is close to the accuracy.
        assert abs(np.mean(list(per_class.values())) - accuracy) < 0.02


@pytest.mark.slow
def test_without_a_no_gan_trial_the_baseline_is_untuned(evaluated):
    runs = read_runs(evaluated)
    baseline = runs[runs["policy"] == BEST_NO_GAN]
    assert (baseline["source"] == "untuned").all()
    # Untuned, best_no_gan is best_gan with the GAN off; the best trial keeps traditional_aug none and no cutout,
    # so no_aug and gan_off are the same config and run once, as its aliases.
    assert {"gan_off", "no_aug", f"{TRADITIONAL_PREFIX}none"} <= set(baseline["aliases"].iloc[0].split(";"))
    report = (evaluated / "evaluation.md").read_text()
    first = report.splitlines()[0]
    assert HEADLINE.match(first) and "untuned" in first, first
    assert f"**{BEST_NO_GAN} is untuned**" in report


@pytest.mark.slow
def test_report_has_finite_intervals_paired_differences_and_per_class_table(evaluated):
    runs = read_runs(evaluated)
    summary = summarize(runs)
    assert np.isfinite(summary[["mean", "ci_low", "ci_high"]].to_numpy()).all()
    assert (summary["ci_low"] <= summary["mean"]).all() and (summary["mean"] <= summary["ci_high"]).all()

    report = (evaluated / "evaluation.md").read_text()
    assert "## Test accuracy (mean over seeds, 95% interval)" in report
    assert "Top-5" not in report and "## Ablation" not in report  # 10 classes; no --ablate
    accuracy_table = report.split("## Test accuracy")[1].split("###")[0]
    for row in summary.itertuples():
        assert f"| {row.policy} | 2 | {row.mean:.4f} | [{row.ci_low:.4f}, {row.ci_high:.4f}] |" in accuracy_table
    differences = report.split("GAN policy - baseline, paired by seed (points)")[1].split("##")[0]
    for baseline in runs["policy"].unique()[runs["policy"].unique() != BEST_GAN]:
        assert f"| {BEST_GAN} | {baseline}" in differences
    per_class = report.split(f"## Per-class test accuracy: {BEST_GAN} - {BEST_NO_GAN}")[1]
    assert sum(line.startswith("| ") for line in per_class.splitlines()) == 1 + 10  # header + 10 classes
    assert (evaluated / "evaluation.png").stat().st_size > 10_000
    assert not (evaluated / "evaluation_ablation.png").exists()


@pytest.mark.slow
def test_tuned_baseline_and_the_headline_first_line(tuned_ablated):
    runs = read_runs(tuned_ablated)
    baseline = runs[runs["policy"] == BEST_NO_GAN]
    assert (baseline["from_trial"] == NO_GAN_TRIAL).all() and (baseline["source"] == "searched").all()
    assert (baseline["synthetic_ratio"] == 0).all()
    # Its own tuned settings, not the GAN trial's: a policy of its own next to no_aug.
    assert {"no_aug", BEST_NO_GAN} <= set(runs["policy"])
    summary = summarize(runs).set_index("policy")
    for name in (BEST_NO_GAN, BEST_GAN):
        assert np.isfinite(summary.loc[name, ["mean", "ci_low", "ci_high"]].to_numpy(dtype=float)).all()

    report = (tuned_ablated / "evaluation.md").read_text()
    first = report.splitlines()[0]
    match = HEADLINE.match(first)
    assert match and "untuned" not in first, first
    table = runs.pivot(index="seed", columns="policy", values="test_acc")
    difference = 100 * (table[BEST_GAN] - table[BEST_NO_GAN])
    mean, low, high = t_interval(difference)
    assert [float(v) for v in match.groups()[:3]] == pytest.approx([mean, low, high], abs=0.051)
    assert int(match.group(4)) == 2
    assert f"{BEST_NO_GAN} is the best complete no-GAN trial of the search ({NO_GAN_TRIAL})" in report


@pytest.mark.slow
def test_ablate_adds_one_variant_per_non_default_key(tuned_ablated):
    experiment = load_experiment(tuned_ablated)
    best = {**TrialConfig().to_dict(), **experiment.config_of(experiment.best())}
    defaults = TrialConfig().to_dict()
    changed = [key for key in ABLATION_KEYS if best[key] != defaults[key]]
    assert changed and "classifier_lr" in changed  # searched, never exactly the default
    runs = read_runs(tuned_ablated)
    variants = sorted(name for name in all_names(runs) if name.startswith(VARIANT_PREFIX))
    assert variants == sorted(f"{VARIANT_PREFIX}{key}" for key in changed)
    for key in changed:
        rows = runs[runs["policy"] == alias_map(runs)[f"{VARIANT_PREFIX}{key}"]]
        assert len(rows) == 2 and (rows["source"] == "ablate").all()

    report = (tuned_ablated / "evaluation.md").read_text()
    table = report.split("## Ablation")[1].split("\n## ")[0]
    for key in changed:
        [row] = [line for line in table.splitlines() if line.startswith(f"| {VARIANT_PREFIX}{key} |")]
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[3] == "2" and re.fullmatch(r"\[[+-]\d+\.\d\d, [+-]\d+\.\d\d\]", cells[5]), row
    assert (tuned_ablated / "evaluation_ablation.png").stat().st_size > 5_000


@pytest.mark.slow
def test_a_killed_evaluation_reruns_only_what_is_missing(evaluated, tmp_path, capsys):
    """Kill (SIGKILL) an evaluation after it wrote evaluation.csv twice, rerun it: the rerun keeps every finished
    run and runs exactly the others."""
    path = Path(shutil.copytree(evaluated, tmp_path / "tiny"))
    args = [str(path), "--seeds", "3", "--epochs", str(EPOCHS), "--num-cpus", "2"]
    policies = read_runs(path)["policy"].nunique()
    total = 3 * policies
    die_after_writes = 2
    script = (
        "import os, signal, sys\n"
        "import ganaug.results.evaluate as evaluate\n"
        "writes, write = [], evaluate.atomic_write\n"
        "def write_then_die(path, text):\n"
        "    write(path, text)\n"
        "    if path.name == evaluate.EVALUATION_CSV:\n"
        "        writes.append(path)\n"
        "        if len(writes) == int(sys.argv[1]):\n"
        "            os.kill(os.getpid(), signal.SIGKILL)  # as kill -9 would, with other runs in flight\n"
        "evaluate.atomic_write = write_then_die\n"
        "sys.exit(evaluate.main(sys.argv[2:]))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    # Its own session: the Ray processes it leaves behind are ended with it, by its process group id.
    process = subprocess.Popen([sys.executable, "-c", script, str(die_after_writes), *args], env=env, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL, output
    assert f"kept {2 * policies} finished runs from evaluation.csv; running {policies}" in output
    killed = read_runs(path)
    k = len(killed)
    assert k == 2 * policies + die_after_writes

    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"kept {k} finished runs from evaluation.csv; running {total - k}" in out
    assert len(re.findall(rf"^\[\d+/{total - k}\] ", out, flags=re.MULTILINE)) == total - k
    final = read_runs(path)
    assert len(final) == total and final["run_id"].is_unique
    assert sorted(final.groupby("policy")["seed"].apply(tuple).unique()) == [(0, 1, 2)]
    # The finished runs were kept as they were, not run again.
    before = killed.set_index("run_id")[["test_acc", "wall_seconds"]]
    after = final.set_index("run_id").loc[before.index, ["test_acc", "wall_seconds"]]
    pd.testing.assert_frame_equal(before, after)

    assert main(args) == 0  # nothing left: no Ray, the report written again
    assert f"kept {total} finished runs from evaluation.csv; running 0" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# Which policies run.

@pytest.mark.slow
def test_ablations_keep_the_best_trials_settings_and_share_the_budget(experiment_dir):
    experiment = load_experiment(experiment_dir)
    best = experiment.best()
    best_config = experiment.config_of(best)
    policies = policy_configs(experiment, top=2, epochs=3)
    names = alias_map(policies)
    complete = (experiment.trials["status"] == "complete").sum()
    assert list(policies)[:2] == [BEST_NO_GAN, BEST_GAN]
    assert ("top2" in names) == (complete > 1)
    assert all(policy["config"]["epochs"] == 3 for policy in policies.values())
    by_name = {name: policies[kept]["config"] for name, kept in names.items()}
    for name in [*FIXED_ABLATIONS, BEST_NO_GAN, *[n for n in names if n.startswith(TRADITIONAL_PREFIX)]]:
        for key in ("classifier", "classifier_lr", "classifier_width", "batch_size", "weight_decay"):
            assert by_name[name][key] == best_config[key], (name, key)
        assert by_name[name]["synthetic_ratio"] == 0
        assert by_name[name]["labeling"] == "pseudo"  # K outputs: no untrained extra class
    assert by_name["no_aug"]["traditional_aug"] == "none" and by_name["no_aug"]["cutout"] == 0
    assert by_name[f"{TRADITIONAL_PREFIX}randaugment"]["traditional_aug"] == "randaugment"
    assert by_name[BEST_GAN]["labeling"] == best_config["labeling"]
    assert by_name[BEST_GAN]["synthetic_ratio"] == best_config["synthetic_ratio"]
    # Equal configs run once: every kept policy's config is distinct.
    configs = [json.dumps(policy["config"], sort_keys=True) for policy in policies.values()]
    assert len(set(configs)) == len(configs)
    if "top2" in policies:
        assert policies["top2"]["trial_id"] != str(best["trial_id"])
    assert policy_configs(experiment)[BEST_GAN]["config"]["epochs"] == experiment.meta["max_epochs"]


@pytest.mark.slow
def test_long_tailed_data_adds_each_long_tail_method_on_the_tuned_baseline(experiment_dir, tmp_path):
    tuned = with_no_gan_trial(experiment_dir, tmp_path / "tuned")
    # The tuned baseline used a deferred logit adjustment: its class-balance keys must not leak into the others.
    params = tuned / f"train_trial_{NO_GAN_TRIAL}" / "params.json"
    params.write_text(json.dumps({**json.loads(params.read_text()), "class_balance": "logit_adjust",
                                  "logit_adjust_tau": 2.0, "class_balance_start_epoch": 1}))
    plain = policy_configs(load_experiment(tuned), epochs=10)
    assert not any(name.startswith(LONG_TAIL_PREFIX) for name in alias_map(plain))  # balanced data: none
    copy = copy_experiment(tuned, tmp_path / "lt", data={"long_tail": {"ratio": 10}})
    policies = policy_configs(load_experiment(copy), epochs=10)
    by_name = {name: policies[kept] for name, kept in alias_map(policies).items()}
    methods = {name.removeprefix(LONG_TAIL_PREFIX): by_name[name] for name in by_name
               if name.startswith(LONG_TAIL_PREFIX)}
    assert list(methods) == ["cross_entropy", "resample", "reweight_drw", "logit_adjust"]
    baseline = by_name[BEST_NO_GAN]["config"]
    assert (baseline["class_balance"], baseline["logit_adjust_tau"]) == ("logit_adjust", 2.0)
    balance_keys = ("class_balance", "reweight_beta", "logit_adjust_tau", "class_balance_start_epoch")
    for method, policy in methods.items():
        config = policy["config"]
        # best_no_gan's tuned settings (its learning rate, no GAN), only the class-balance keys changed
        assert {k: v for k, v in config.items() if k not in balance_keys} == \
            {k: v for k, v in baseline.items() if k not in balance_keys}, method
        assert policy["trial_id"] == NO_GAN_TRIAL and policy["source"] == "long-tail"
    configs = {method: policy["config"] for method, policy in methods.items()}
    assert configs["cross_entropy"]["class_balance"] == "none"
    assert configs["cross_entropy"]["class_balance_start_epoch"] == 0  # not the baseline's deferral
    assert (configs["resample"]["class_balance"], configs["resample"]["class_balance_start_epoch"]) == ("resample", 0)
    drw = configs["reweight_drw"]
    assert (drw["class_balance"], drw["reweight_beta"], drw["class_balance_start_epoch"]) == ("reweight", 0.9999, 8)
    assert (configs["logit_adjust"]["logit_adjust_tau"], configs["logit_adjust"]["class_balance_start_epoch"]) == \
        (1.0, 0)


def test_the_oracle_runs_only_where_the_data_holds_a_real_pool(experiment_dir, tmp_path):
    """evaluate's positive control: best_gan with the held-out real images as its source, everything else as
    searched, added only when the space's data section has data.real_pool (on a long tail, spread to top it up)."""
    assert ORACLE not in alias_map(policy_configs(load_experiment(experiment_dir)))
    copy = copy_experiment(experiment_dir, tmp_path / "pool", data={"real_pool": {"per_class": 5}})
    policies = policy_configs(load_experiment(copy))
    oracle, best = policies[ORACLE]["config"], policies[BEST_GAN]["config"]
    assert oracle["synthetic_source"] == "real" and policies[ORACLE]["source"] == "control"
    assert {k: v for k, v in oracle.items() if k not in ("synthetic_source", "labeling")} == \
        {k: v for k, v in best.items() if k not in ("synthetic_source", "labeling")}
    assert oracle["labeling"] == ("pseudo" if best["labeling"] in ("lsro", "all_in_one") else best["labeling"])
    long_tail = copy_experiment(experiment_dir, tmp_path / "lt", data={"real_pool": {"per_class": 5},
                                                                      "long_tail": {"ratio": 4}})
    assert policy_configs(load_experiment(long_tail))[ORACLE]["config"]["synthetic_spread"] == "balance"
    # Real images carry their class: labels that would discard it (lsro, all_in_one) become pseudo, others stay.
    assert oracle_changes({**best, "labeling": "lsro"}, long_tailed=False)["labeling"] == "pseudo"
    assert oracle_changes({**best, "labeling": "all_in_one"}, long_tailed=False)["labeling"] == "pseudo"
    assert "labeling" not in oracle_changes({**best, "labeling": "distill", "teacher_ema": 0.99}, long_tailed=False)


def test_a_choice_the_space_leaves_out_on_purpose_is_not_ablated(experiment_dir, tmp_path):
    every = alias_map(policy_configs(load_experiment(experiment_dir)))
    assert {f"{TRADITIONAL_PREFIX}{choice}" for choice in CHOICES["traditional_aug"]} <= set(every)
    copy = copy_experiment(experiment_dir, tmp_path / "left_out",
                           left_out={"traditional_aug": {"randaugment": "flips turn one digit into another"}})
    names = alias_map(policy_configs(load_experiment(copy)))
    assert f"{TRADITIONAL_PREFIX}randaugment" not in names and f"{TRADITIONAL_PREFIX}trivialaugment" in names


def test_ablation_resets_a_dependent_key_too():
    config = TrialConfig(synthetic_ratio=1.0, gan_pretrain_epochs=2, gan_freeze=True, gan_loss="hinge",
                         traditional_aug="randaugment", epochs=7, seed=3).to_dict()
    variants = ablation_variants(config)
    assert set(variants) == {"gan_pretrain_epochs", "gan_freeze", "gan_loss", "traditional_aug"}
    # gan_freeze=True needs gan_pretrain_epochs >= 1: resetting the epochs resets the freeze as well.
    assert variants["gan_pretrain_epochs"] == {"gan_pretrain_epochs": 0, "gan_freeze": False}
    assert variants["gan_freeze"] == {"gan_freeze": False}
    assert variants["traditional_aug"] == {"traditional_aug": "none"}
    assert {"epochs", "seed", "synthetic_ratio"} <= set(NOT_ABLATED)
    for changes in variants.values():
        TrialConfig.from_dict({**config, **changes})  # every variant is a valid config


def test_run_id_is_a_stable_hash_of_config_and_seed():
    config = TrialConfig(synthetic_ratio=0.5).to_dict()
    assert run_id(config, 0) == run_id(dict(reversed(list(config.items()))), 0)  # key order does not matter
    assert run_id(config, 0) != run_id(config, 1)
    assert run_id(config, 0) != run_id({**config, "epochs": config["epochs"] + 1}, 0)
    assert re.fullmatch(r"[0-9a-f]{16}", run_id(config, 0))


# ----------------------------------------------------------------------------------------------
# Statistics on hand-made runs.

def test_t_interval_matches_scipy():
    values = [0.61, 0.64, 0.60, 0.66, 0.63]
    mean, low, high = t_interval(values)
    expected = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert mean == pytest.approx(np.mean(values))
    assert (low, high) == pytest.approx(expected)
    assert math.isnan(t_interval([0.5])[1])


def test_paired_differences_pair_by_seed_and_match_ttest_rel():
    base = [0.60, 0.62, 0.58, 0.65]
    gan = [0.63, 0.66, 0.59, 0.70]
    rows = [{"policy": "no_aug", "seed": s, "test_acc": v} for s, v in enumerate(base)]
    rows += [{"policy": "best_gan", "seed": s, "test_acc": v} for s, v in enumerate(gan)]
    runs = pd.DataFrame(rows).sample(frac=1, random_state=0)  # finishing order is arbitrary
    table = paired_differences(runs, baselines=("no_aug",))
    assert len(table) == 1
    row = table.iloc[0]
    difference = np.subtract(gan, base)
    assert row["policy"] == "best_gan" and row["pairs"] == 4 and row["wins"] == 4
    assert row["mean_diff"] == pytest.approx(difference.mean())
    assert row["p_value"] == pytest.approx(stats.ttest_rel(gan, base).pvalue)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(
        stats.t.interval(0.95, 3, loc=difference.mean(), scale=stats.sem(difference)))
    # Unpaired seeds are left out: seed 3 missing for the baseline leaves three pairs.
    partial = paired_differences(runs[~((runs["policy"] == "no_aug") & (runs["seed"] == 3))], baselines=("no_aug",))
    assert partial.iloc[0]["pairs"] == 3


def test_headline_in_points_with_sign_and_aliases_read_their_policys_runs():
    rows = [{"policy": BEST_NO_GAN, "seed": s, "test_acc": v, "source": "untuned", "aliases": "no_aug;gan_off"}
            for s, v in enumerate([0.60, 0.62, 0.58])]
    rows += [{"policy": BEST_GAN, "seed": s, "test_acc": v, "source": "searched", "aliases": ""}
             for s, v in enumerate([0.59, 0.60, 0.58])]
    runs = pd.DataFrame(rows)
    line = headline(runs)
    mean, low, high = t_interval(100 * np.subtract([0.59, 0.60, 0.58], [0.60, 0.62, 0.58]))
    assert line.startswith(f"best GAN policy vs best no-GAN policy: {mean:+.1f} points [{low:+.1f}, {high:+.1f}] "
                           f"(95 % CI, paired over 3 seeds)")
    assert "untuned" in line and "untuned" not in headline(runs, untuned=False)
    by_alias = paired_differences(runs, pairs=[(BEST_GAN, "no_aug"), (BEST_GAN, BEST_NO_GAN)])
    assert by_alias.iloc[0]["mean_diff"] == pytest.approx(by_alias.iloc[1]["mean_diff"])
    assert by_alias.iloc[0]["baseline"] == "no_aug"


def test_per_class_deltas_are_paired_means():
    runs = pd.DataFrame([
        {"policy": BEST_NO_GAN, "seed": 0, "per_class_acc": json.dumps({"a": 0.5, "b": 0.9})},
        {"policy": BEST_NO_GAN, "seed": 1, "per_class_acc": json.dumps({"a": 0.7, "b": 0.8})},
        {"policy": BEST_GAN, "seed": 1, "per_class_acc": json.dumps({"a": 0.9, "b": 0.8})},
        {"policy": BEST_GAN, "seed": 0, "per_class_acc": json.dumps({"a": 0.6, "b": 0.7})},
    ])
    deltas = per_class_deltas(runs).set_index("class")
    assert deltas.loc["a", "delta"] == pytest.approx(((0.6 - 0.5) + (0.9 - 0.7)) / 2)
    assert deltas.loc["b", "delta"] == pytest.approx(((0.7 - 0.9) + (0.8 - 0.8)) / 2)
    assert deltas.loc["a", BEST_NO_GAN] == pytest.approx(0.6)


def test_long_tailed_report_heads_with_balanced_accuracy_and_groups_its_classes():
    """On data.long_tail the headline, the first table and the plot are in balanced test accuracy, and the per-class
    table gives each class's training images and shot group, then the groups' means."""
    import types

    from ganaug.results.evaluate import TEST_COLUMNS
    from ganaug.results.report import markdown_report

    per_class = {BEST_NO_GAN: [0.9, 0.6, 0.2], BEST_GAN: [0.8, 0.7, 0.5]}
    rows = [{"policy": name, "seed": seed, "test_acc": 0.9 - 0.01 * seed, "test_top5": 1.0,
             "test_balanced_acc": sum(values) / 3 + 0.01 * seed, "test_many_acc": values[0],
             "test_medium_acc": values[1], "test_few_acc": values[2], "source": "searched", "aliases": "",
             "diverged": 0, "per_class_acc": json.dumps(dict(zip("abc", values)))}
            for name, values in per_class.items() for seed in range(3)]
    runs = pd.DataFrame(rows)
    assert set(TEST_COLUMNS) <= set(runs)
    config = {**TrialConfig(epochs=2).to_dict()}
    policies = {name: {"trial_id": name, "config": config, "source": "searched", "aliases": []} for name in per_class}
    experiment = types.SimpleNamespace(meta={"name": "lt", "data": {"name": "digits", "long_tail": {"ratio": 50}}},
                                       path=Path("lt"))
    report = markdown_report(experiment, runs, policies, list("abc"), NOT_ABLATED, None, [450, 60, 9])
    first = report.splitlines()[0]
    assert HEADLINE.match(first) and first.split(" points")[0].endswith("+10.0")  # (2.0 - 1.7) / 3 = +10 points
    assert "in balanced test accuracy" in first
    assert report.index("## Balanced test accuracy") < report.index("## Test accuracy")
    table = report.split("## Per-class test accuracy")[1]
    assert "many n_c > 90, few n_c < 18" in table
    assert "| a | 450 | many | 0.9000 | 0.8000 | -0.1000 |" in table and "| c | 9 | few |" in table
    assert "| **balanced (every class)** |  |  | 0.5667 | 0.6667 | +0.1000 |" in table
    assert "| **medium (1 classes)** |  |  | 0.6000 | 0.7000 | +0.1000 |" in table
    plain = markdown_report(experiment, runs, policies, list("abc"), NOT_ABLATED)  # not long-tailed: as before
    assert "balanced" not in plain.splitlines()[0] and "## Balanced test accuracy" not in plain


def test_long_tail_methods_are_each_compared_with_plain_cross_entropy():
    import types

    from ganaug.results.report import markdown_report

    # balanced test accuracy by seed; logit_adjust is the same config as best_no_gan (an alias: its runs)
    accuracy = {BEST_NO_GAN: [0.62, 0.60], BEST_GAN: [0.63, 0.61], f"{LONG_TAIL_PREFIX}cross_entropy": [0.56, 0.55],
                f"{LONG_TAIL_PREFIX}resample": [0.55, 0.57]}
    runs = pd.DataFrame([{"policy": name, "seed": seed, "test_acc": value, "test_top5": 1.0,
                          "test_balanced_acc": value, "test_many_acc": value, "test_medium_acc": value,
                          "test_few_acc": math.nan, "source": "searched", "diverged": 0,
                          "aliases": f"{LONG_TAIL_PREFIX}logit_adjust" if name == BEST_NO_GAN else "",
                          "per_class_acc": json.dumps({"a": value, "b": value})}
                         for name, values in accuracy.items() for seed, value in enumerate(values)])
    config = TrialConfig(epochs=2).to_dict()
    policies = {name: {"trial_id": name, "config": config, "source": "searched",
                       "aliases": [f"{LONG_TAIL_PREFIX}logit_adjust"] if name == BEST_NO_GAN else []}
                for name in accuracy}
    experiment = types.SimpleNamespace(meta={"name": "lt", "data": {"name": "digits", "long_tail": {"ratio": 10}}},
                                       path=Path("lt"))
    report = markdown_report(experiment, runs, policies, list("ab"), NOT_ABLATED, None, [100, 10])
    section = report.split("### Long-tail methods - plain cross-entropy")[1].split("##")[0]
    assert "(test_balanced_acc, points)" in section
    assert f"| {LONG_TAIL_PREFIX}resample | {LONG_TAIL_PREFIX}cross_entropy | 2 | +0.50 |" in section
    assert f"| {LONG_TAIL_PREFIX}logit_adjust | {LONG_TAIL_PREFIX}cross_entropy | 2 | +5.50 |" in section  # alias
    assert "2/2" in section.split("logit_adjust")[1].splitlines()[0]
    assert f"`{LONG_TAIL_PREFIX}<method>` is {BEST_NO_GAN}" in report


# ----------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit code 2, before Ray starts.

def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    return err


def test_not_an_experiment_folder(tmp_path, capsys):
    assert main([str(tmp_path)]) == EXIT_BAD_INPUT
    assert "not a ganaug experiment folder" in _one_line_error(capsys)
    assert main([str(tmp_path / "missing")]) == EXIT_BAD_INPUT
    assert "no such folder" in _one_line_error(capsys)


@pytest.mark.slow
def test_no_finished_trial(experiment_dir, tmp_path, capsys):
    unfinished = copy_experiment(experiment_dir, tmp_path / "unfinished", max_epochs=99)
    assert main([str(unfinished)]) == EXIT_BAD_INPUT
    assert "no complete trial" in _one_line_error(capsys)


def test_when_asha_pruned_every_gan_trial_the_furthest_one_is_best_gan(experiment_dir, tmp_path):
    """Baselines that score high from the first epoch can get every GAN policy pruned (the quickstart on digits):
    evaluate still compares the GAN trial that got furthest, retrained for the full budget, and says so."""
    tuned = with_no_gan_trial(experiment_dir, tmp_path / "tuned")
    copy = copy_experiment(tuned, tmp_path / "pruned", max_epochs=EPOCHS + 1)
    result = copy / f"train_trial_{NO_GAN_TRIAL}" / "result.json"
    last = json.loads(result.read_text().splitlines()[-1])
    with result.open("a") as file:  # one more epoch: the no-GAN trial alone ran the whole (new) budget
        file.write(json.dumps({**last, "epoch": EPOCHS + 1, "training_iteration": EPOCHS + 1}) + "\n")
    experiment = load_experiment(copy)
    statuses = experiment.trials.set_index("trial_id")["status"]
    assert statuses[NO_GAN_TRIAL] == "complete" and (statuses.drop(NO_GAN_TRIAL) == "pruned").all()
    policies = policy_configs(experiment)
    assert policies["best_gan"]["source"] == f"pruned at epoch {EPOCHS}"
    assert policies["best_gan"]["config"]["synthetic_ratio"] > 0
    assert policies["best_gan"]["config"]["epochs"] == EPOCHS + 1  # retrained for the full budget
    assert policies["best_no_gan"]["trial_id"] == NO_GAN_TRIAL and policies["best_no_gan"]["source"] == "searched"


@pytest.mark.slow
def test_no_gan_trial(experiment_dir, tmp_path, capsys):
    experiment = load_experiment(experiment_dir)
    no_gan = copy_experiment(experiment_dir, tmp_path / "no_gan",
                             base_config={**experiment.meta["base_config"], "synthetic_ratio": 0.0})
    assert main([str(no_gan)]) == EXIT_BAD_INPUT
    assert "synthetic_ratio > 0" in _one_line_error(capsys)


@pytest.mark.slow
def test_ablate_with_every_key_at_its_default(experiment_dir, tmp_path, capsys):
    run_budget = {key: value for key, value in load_experiment(experiment_dir).meta["base_config"].items()
                  if key in NOT_ABLATED}
    plain = copy_experiment(experiment_dir, tmp_path / "plain",
                            base_config={**TrialConfig().to_dict(), **run_budget, "synthetic_ratio": 0.5})
    for params in plain.glob("*/params.json"):  # the searched keys at their defaults too
        params.write_text(json.dumps({"labeling": "pseudo", "classifier_lr": TrialConfig.classifier_lr}))
    assert main([str(plain), "--ablate"]) == EXIT_BAD_INPUT
    err = _one_line_error(capsys)
    assert "--ablate" in err and "every policy key at its default" in err
    assert not (plain / "evaluation.csv").exists()


@pytest.mark.slow
@pytest.mark.parametrize("option, message", [(["--seeds", "1"], "--seeds 1"), (["--top", "0"], "--top 0"),
                                             (["--epochs", "0"], "--epochs 0")])
def test_bad_options(experiment_dir, option, message, capsys):
    assert main([str(experiment_dir), *option]) == EXIT_BAD_INPUT
    assert message in _one_line_error(capsys)


def test_command_line_exit_code(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.run([sys.executable, "-m", "ganaug.evaluate", str(tmp_path / "nowhere"), "--seeds", "3"],
                             capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert process.returncode == EXIT_BAD_INPUT
    assert process.stderr.strip().startswith("error: ") and "nowhere" in process.stderr
    assert "Traceback" not in process.stderr


def test_the_strongest_no_gan_policy_evaluated_is_named_under_the_headline():
    """best_no_gan is chosen on validation; when another no-GAN policy the evaluation ran scores higher on test, the
    report says which, and best_gan's paired difference to it (the figures' question policies include it)."""
    from ganaug.results.report import markdown_report, question_policies, strongest_line

    means = {BEST_NO_GAN: 0.60, BEST_GAN: 0.61, "no_gan+randaugment": 0.62, "no_aug": 0.55}
    rows = [{"policy": name, "seed": seed, "test_acc": mean + 0.01 * seed, "source": "searched", "aliases": "",
             "diverged": 0, "per_class_acc": json.dumps({"a": mean, "b": mean})}
            for name, mean in means.items() for seed in range(3)]
    runs = pd.DataFrame(rows)
    line = strongest_line(runs)
    assert "no_gan+randaugment, not best_no_gan" in line and "best_gan - no_gan+randaugment -1.0 points" in line
    assert question_policies(runs) == [BEST_NO_GAN, "no_gan+randaugment", BEST_GAN]
    config = TrialConfig(epochs=2).to_dict()
    policies = {name: {"trial_id": name, "config": config, "source": "searched", "aliases": []} for name in means}
    experiment = types.SimpleNamespace(meta={"name": "x", "data": {"name": "digits"}}, path=Path("x"))
    assert markdown_report(experiment, runs, policies, ["a", "b"], NOT_ABLATED).splitlines()[1] == line
    plain = runs[runs["policy"] != "no_gan+randaugment"]
    assert strongest_line(plain).startswith("best_no_gan (chosen on validation by the search) is also")
