"""ganaug.evaluate: best policy and baselines retrained over seeds on a real tiny search; statistics; bad input."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from experiment_fixture import EPOCHS, copy_experiment, evaluated_experiment, tiny_experiment
from scipy import stats

from ganaug.evaluate import (
    BASELINES,
    EXIT_BAD_INPUT,
    POLICIES,
    main,
    paired_differences,
    per_class_deltas,
    policy_configs,
    summarize,
    t_interval,
)
from ganaug.results import load_experiment

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def experiment_dir(tmp_path_factory):
    return tiny_experiment(tmp_path_factory)


@pytest.fixture(scope="session")
def evaluated(tmp_path_factory):
    return evaluated_experiment(tmp_path_factory)


# ----------------------------------------------------------------------------------------------
# The real thing: python -m ganaug.evaluate RESULTS --seeds 2 --epochs 2 on the tiny search.

@pytest.mark.slow
def test_csv_has_one_row_per_policy_and_seed(evaluated):
    runs = pd.read_csv(evaluated / "evaluation.csv", dtype={"from_trial": str})
    assert list(runs["policy"].unique()) == list(POLICIES)  # every baseline and GAN policy, in order
    assert sorted(runs.groupby("policy")["seed"].apply(tuple).unique()) == [(0, 1)]
    assert (runs["epochs"] == EPOCHS).all() and (runs["diverged"] == 0).all()
    assert runs["test_acc"].between(0, 1).all()
    # Without flip/translate (which ruin 8x8 digits) every run is far above chance (0.1) on 10 classes.
    plain = runs[~runs["traditional_aug"]]
    assert (plain["test_acc"] > 0.5).all(), plain[["policy", "seed", "test_acc"]]
    assert runs["test_top5"].ge(runs["test_acc"]).all()
    assert (runs["wall_seconds"] > 0).all()
    by_policy = runs.groupby("policy").first()
    assert by_policy.loc["no_aug", "synthetic_ratio"] == 0 and not by_policy.loc["no_aug", "traditional_aug"]
    assert by_policy.loc["traditional", "synthetic_ratio"] == 0 and by_policy.loc["traditional", "traditional_aug"]
    assert by_policy.loc["best_gan", "synthetic_ratio"] > 0 and not by_policy.loc["best_gan", "traditional_aug"]
    assert by_policy.loc["best_gan+traditional", "traditional_aug"]
    best = load_experiment(evaluated).best()
    assert (runs["from_trial"] == best["trial_id"]).all()
    for text, accuracy in zip(runs["per_class_acc"], runs["test_acc"]):
        per_class = json.loads(text)
        assert list(per_class) == [str(k) for k in range(10)]
        # digits' test split is nearly balanced: the mean per-class accuracy is close to the accuracy.
        assert abs(np.mean(list(per_class.values())) - accuracy) < 0.02


@pytest.mark.slow
def test_report_has_finite_intervals_paired_differences_and_per_class_table(evaluated):
    runs = pd.read_csv(evaluated / "evaluation.csv")
    summary = summarize(runs)
    assert np.isfinite(summary[["mean", "ci_low", "ci_high"]].to_numpy()).all()
    assert (summary["ci_low"] <= summary["mean"]).all() and (summary["mean"] <= summary["ci_high"]).all()

    report = (evaluated / "evaluation.md").read_text()
    assert "## Test accuracy (mean over seeds, 95% interval)" in report
    assert "Top-5" not in report  # digits has 10 classes
    accuracy_table = report.split("## Test accuracy")[1].split("###")[0]
    for row in summary.itertuples():
        assert f"| {row.policy} | 2 | {row.mean:.4f} | [{row.ci_low:.4f}, {row.ci_high:.4f}] |" in accuracy_table
    differences = report.split("GAN policy - baseline, paired by seed")[1].split("##")[0]
    for policy in ("best_gan", "best_gan+traditional"):
        for baseline in BASELINES:
            assert f"| {policy} | {baseline} | 2 |" in differences
    per_class = report.split("## Per-class test accuracy: best_gan - no_aug")[1]
    assert sum(line.startswith("| ") for line in per_class.splitlines()) == 1 + 10  # header + 10 classes
    assert (evaluated / "evaluation.png").stat().st_size > 10_000


# ----------------------------------------------------------------------------------------------
# Which policies run.

@pytest.mark.slow
def test_baselines_keep_the_best_trials_classifier_and_share_the_budget(experiment_dir):
    experiment = load_experiment(experiment_dir)
    best = experiment.best()
    best_config = experiment.config_of(best)
    policies = policy_configs(experiment, top=2, epochs=3)
    complete = (experiment.trials["status"] == "complete").sum()
    assert list(policies)[:4] == list(POLICIES)
    assert len(policies) == 4 + min(1, complete - 1)
    assert all(policy["config"]["epochs"] == 3 for policy in policies.values())
    for name in POLICIES:
        for key in ("classifier", "classifier_lr", "classifier_width", "batch_size", "weight_decay"):
            assert policies[name]["config"][key] == best_config[key], (name, key)
    assert policies["no_aug"]["config"]["synthetic_ratio"] == 0
    assert policies["no_aug"]["config"]["labeling"] == "pseudo"  # K outputs: no untrained extra class
    assert policies["traditional"]["config"]["traditional_aug"] is True
    assert policies["best_gan"]["config"]["labeling"] == best_config["labeling"]
    assert policies["best_gan"]["config"]["synthetic_ratio"] == best_config["synthetic_ratio"]
    if "top2" in policies:
        assert policies["top2"]["trial_id"] != str(best["trial_id"])
    assert policy_configs(experiment)["no_aug"]["config"]["epochs"] == experiment.meta["max_epochs"]


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


def test_per_class_deltas_are_paired_means():
    runs = pd.DataFrame([
        {"policy": "no_aug", "seed": 0, "per_class_acc": json.dumps({"a": 0.5, "b": 0.9})},
        {"policy": "no_aug", "seed": 1, "per_class_acc": json.dumps({"a": 0.7, "b": 0.8})},
        {"policy": "best_gan", "seed": 1, "per_class_acc": json.dumps({"a": 0.9, "b": 0.8})},
        {"policy": "best_gan", "seed": 0, "per_class_acc": json.dumps({"a": 0.6, "b": 0.7})},
    ])
    deltas = per_class_deltas(runs).set_index("class")
    assert deltas.loc["a", "delta"] == pytest.approx(((0.6 - 0.5) + (0.9 - 0.7)) / 2)
    assert deltas.loc["b", "delta"] == pytest.approx(((0.7 - 0.9) + (0.8 - 0.8)) / 2)
    assert deltas.loc["a", "no_aug"] == pytest.approx(0.6)


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


@pytest.mark.slow
def test_no_gan_trial(experiment_dir, tmp_path, capsys):
    experiment = load_experiment(experiment_dir)
    no_gan = copy_experiment(experiment_dir, tmp_path / "no_gan",
                             base_config={**experiment.meta["base_config"], "synthetic_ratio": 0.0})
    assert main([str(no_gan)]) == EXIT_BAD_INPUT
    assert "synthetic_ratio > 0" in _one_line_error(capsys)


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
