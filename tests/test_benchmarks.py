"""Every benchmark script runs with --quick in a subprocess and prints exactly one JSON object with its figures.

The figures of a --quick run on a shared 2-core box are not performance claims (benchmarks/README.md holds
the full runs); what is checked is that each script runs the real path end to end and that its numbers are
consistent with what it claims to measure.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_quick(script: str) -> dict:
    completed = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick"], cwd=ROOT,
                               capture_output=True, text=True, timeout=400)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout)  # one JSON object and nothing else on stdout


def check_data_pipeline(result: dict) -> None:
    assert result["ours_images_per_s"] > 0 and result["dataloader_images_per_s"] > 0
    assert result["ratio"] == pytest.approx(result["ours_images_per_s"] / result["dataloader_images_per_s"],
                                            rel=0.02)
    trivial = result["trivialaugment"]  # the same comparison with TrivialAugmentWide on both sides
    assert trivial["ours_images_per_s"] > 0 and trivial["dataloader_images_per_s"] > 0
    assert trivial["ratio"] == pytest.approx(trivial["ours_images_per_s"] / trivial["dataloader_images_per_s"],
                                             rel=0.02)


def check_trial_throughput(result: dict) -> None:
    assert set(result["joint_images_per_s"]) == {"mlp+mlp", "dcgan+mlp", "mlp+cnn", "dcgan+cnn"}
    assert set(result["classifier_only_images_per_s"]) == {"mlp", "cnn"}
    for name, speed in result["joint"].items():
        assert speed["images_per_s"] > 0
        # The joint step trains a GAN as well as the classifier: it cannot be cheaper than the classifier alone.
        assert speed["gan_cost"] > 1, (name, speed)
    assert result["device"] == "cpu"


def check_ray_overhead(result: dict) -> None:
    # The Tune trial and the direct run are the same trial: same config and seed give the same val_acc.
    assert result["same_val_acc"] is True
    assert result["direct_seconds"] > 0 and result["tune_trial_seconds"] > 0
    assert result["tune_fit_seconds"] >= result["tune_trial_seconds"] * 0.9
    assert result["end_to_end_seconds"] == pytest.approx(result["ray_start_seconds"] + result["tune_fit_seconds"],
                                                         abs=0.02)
    assert result["trial_ratio"] == pytest.approx(result["tune_trial_seconds"] / result["direct_seconds"],
                                                  rel=0.02)
    assert isinstance(result["meets_target"], bool)


def check_search_efficiency(result: dict) -> None:
    budget, methods = result["budget_trial_epochs"], {"random_fifo", "random_asha", "stock_tpe_asha", "tpe_asha"}
    for run in result["runs"]:
        reference = run["random_fifo"]
        # Random + FIFO runs whole trials within the budget; no method spends more than the budget.
        assert reference["trial_epochs"] == budget
        assert reference["trials_finished"] == reference["trials"] == budget // result["max_epochs"]
        best_found = max(run[method]["best_val_acc"] or 0 for method in methods)
        assert run["target_val_acc"] == pytest.approx(best_found - result["tolerance"], abs=1e-4)
        for method in methods:
            summary = run[method]
            assert summary["trial_epochs"] <= budget and summary["trials"] >= 1
            # The plotted curve rises and ends at the method's best finished val_acc.
            values = [value for _, value in summary["best_so_far"]]
            assert values == sorted(values) and (values[-1] if values else None) == summary["best_val_acc"]
            if summary["trial_epochs_to_target"] is not None:
                assert summary["trial_epochs_to_target"] <= budget
        assert reference["best_val_acc"] is not None and 0 < reference["best_val_acc"] <= 1
    assert set(result["best_val_acc"]) == methods
    assert isinstance(result["meets_target"], bool)
    # ASHA replayed on random + FIFO's complete curves: shares are fractions of the policies counted.
    for row in result["asha_bias"]:
        assert row["n_best"] >= 1 and 0 <= row["stopped_best"] <= 1
        assert all(rung < result["max_epochs"] for rung in row["rungs"])
    assert Path(result["plot"]).is_file() and json.loads(Path(result["json"]).read_text())["runs"] == result["runs"]


def test_asha_replay_follows_rays_rule(monkeypatch):
    """The bias figures rest on replaying Ray's asynchronous ASHA rule: check it on hand-made curves."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from search_efficiency import asha_rungs, replay_asha

    assert asha_rungs(12, 2, 3) == [2, 6] and asha_rungs(9, 1, 3) == [1, 3] and asha_rungs(12, 3, 2) == [3, 6]
    # a rises late; b is quick then flat; c arrives last and is the worst at rung 2.
    records = [("a", 1, 0.1), ("b", 1, 0.5), ("a", 2, 0.2), ("b", 2, 0.6), ("c", 1, 0.0), ("c", 2, 0.1),
               ("a", 3, 0.9), ("b", 3, 0.6)]
    # Rung 2 (grace 2, factor 2): a records first (continues), b beats the median of {a}, c is below {a, b}'s.
    assert replay_asha(records, 4, 2, 2) == {"c": 2}
    # Rung 1 at grace 1: b is above a's 0.1, c (0.0) below the median of {0.1, 0.5}; a continues as the first.
    assert replay_asha(records, 4, 1, 2) == {"c": 1}
    # Three rungs' worth at factor 3 (rungs 1 and 3): b, 0.6 at epoch 3, is below a's 0.9 recorded before it.
    assert replay_asha(records, 4, 1, 3) == {"c": 1, "b": 3}
    # The ranking: b dips at rung 2 (0.2 < a's 0.4); by its best so far (0.9) it continues.
    dip = [("a", 1, 0.5), ("a", 2, 0.4), ("b", 1, 0.9), ("b", 2, 0.2)]
    assert replay_asha(dip, 4, 2, 2, "last") == {"b": 2} and replay_asha(dip, 4, 2, 2, "best") == {}


def check_concurrency(result: dict) -> None:
    assert result["same_trials"] is True  # both settings ran the same configurations
    one, two = result["one_concurrent"], result["two_concurrent"]
    assert one["trials_finished"] == two["trials_finished"] == result["trials"]
    assert (one["trial_cpus"], two["trial_cpus"]) == (2, 1)
    assert result["speedup"] == pytest.approx(two["trials_per_hour"] / one["trials_per_hour"], rel=0.02)
    assert 0 < one["driver_cpu_share"] < 1 and 0 < two["driver_cpu_share"] < 1
    # The ceiling without Ray: the same trials run directly, alone and in pairs side by side.
    direct = result["direct"]
    assert len(direct["one_at_a_time_seconds"]) == min(4, result["trials"]) and min(direct["one_at_a_time_seconds"]) > 0
    assert all(len(pair) == 2 for pair in direct["side_by_side_seconds"])
    alone = sum(direct["one_at_a_time_seconds"][:2 * len(direct["side_by_side_seconds"])])
    slowest = sum(max(pair) for pair in direct["side_by_side_seconds"])
    assert result["direct_speedup_ceiling"] == pytest.approx(alone / slowest, rel=0.05)


def check_gpu_path(result: dict) -> None:
    assert result["device"] in ("cpu", "cuda")
    precision = "bf16_channels_last" if result["device"] == "cuda" else "bf16"
    assert result["fp32"]["images_per_s"] > 0 and result[precision]["images_per_s"] > 0
    assert set(result["trials_per_device"]) == {"1", "2"}
    assert len(result["trials_per_device"]["2"]["per_trial_epoch_seconds"]) == 2
    assert result["targets_are_for"].startswith("GPU")


def check_gan_quality(result: dict) -> None:
    assert set(result["settings"]) == {"mlp-cgan", "dcgan-cgan-hinge"}
    real_accuracy = result["reference"]["real_accuracy"]
    assert real_accuracy > 0.3 and result["reference"]["frechet_distance_real"] >= 0  # digits, mlp, 1 epoch
    for name, setting in result["settings"].items():
        curve = setting["curve"]
        assert len(curve) == 2 and curve[0]["steps"] < curve[1]["steps"], name
        assert curve[0]["train_seconds"] <= curve[1]["train_seconds"]
        for point in curve:
            assert point["synthetic_diversity"] >= 0 and point["frechet_distance"] >= 0
            assert point["cas_ratio"] == pytest.approx(point["cas"] / real_accuracy)
        assert setting["final"] == curve[-1]
        assert Path(setting["sample_grid"]).is_file()
    assert result["best"]["setting"] in result["settings"]
    assert Path(result["json"]).with_suffix(".png").is_file()


def check_recipe(result: dict) -> None:
    recipes = set(result["recipes"])
    assert recipes == {"today", "onecycle_sgd_cnn", "onecycle_sgd_airbench"}
    assert {(run["recipe"], run["choice"]) for run in result["runs"]} == \
        {(recipe, choice) for recipe in recipes for choice in ("none", "flip_translate", "cutmix")}
    for run in result["runs"]:
        assert 0 <= run["val_acc"] <= 1 and 0 <= run["test_acc"] <= 1 and run["cpu_seconds"] >= 0
        assert len(run["val_curve"]) == run["epochs"]
    for recipe, summary in result["summary"].items():
        rows = {run["choice"]: run for run in result["runs"] if run["recipe"] == recipe}
        assert summary["its_test_acc"] == rows[summary["best_choice_by_val"]]["test_acc"]
        assert summary["flip_translate_gain_points"] == pytest.approx(
            100 * (rows["flip_translate"]["test_acc"] - rows["none"]["test_acc"]), abs=0.01)


def check_generator_bank(result: dict) -> None:
    with_bank, without = result["with_bank"], result["without_bank"]
    assert result["trials"] == 4 and with_bank["generators_trained"] == 2  # gan: cgan | acgan
    assert without["generators_trained"] == 4 and without["trials_reusing"] == 0
    assert with_bank["trials_reusing"] == 4 - 2  # every trial after each generator's first loads it
    assert result["same_val_acc_per_policy"] and len(result["policies"]) >= 1
    assert result["trial_seconds_ratio"] == pytest.approx(with_bank["trial_seconds"] / without["trial_seconds"],
                                                          abs=1e-3)
    pools = result["with_bank_and_pools"]  # the same generators, each drawn once into a pool its trials share
    assert pools["generators_trained"] == 2 and pools["trials_reusing"] == 2
    assert result["meets_target"] == (result["pools_trial_seconds_ratio"] <= 0.4)


def check_deterministic(result: dict) -> None:
    default, deterministic = result["default"], result["deterministic"]
    # Both ways ran every trial of each run, as often; the ratio is the deterministic runs' seconds over the others'.
    assert default["trials"] == deterministic["trials"] == [result["trials_per_run"]] * result["repeats"]
    assert result["ratio"] == pytest.approx(sum(deterministic["fit_seconds"]) / sum(default["fit_seconds"]),
                                            rel=0.02)
    assert result["horizon"] == 2 * result["max_concurrent"] - 1 and isinstance(result["meets_target"], bool)


def check_pool(result: dict) -> None:
    trials = result["trials"]
    assert set(trials) == {"no_gan", "frozen_gan", "pool", "real"} and trials["no_gan"]["ratio_to_no_gan"] == 1.0
    for figures in trials.values():
        assert figures["seconds"] > 0 and 0 <= figures["val_acc"] <= 1
    assert result["pool_target_ratio"] == pytest.approx(1.15 * 1.5, abs=1e-3)
    assert result["meets_target"] == (trials["pool"]["ratio_to_no_gan"] <= result["pool_target_ratio"])
    assert result["pool_bytes"] == 64 * 20 * 10  # digits: 8x8 grey, 20 per class, 10 classes
    assert result["largest_shipped_pool"]["under_1_gib"] and result["largest_shipped_pool"]["space"]
    assert result["settings"]["pool"]["synthetic_source"] == "pool" and "synthetic_source" not in \
        result["settings"]["no_gan"]  # inactive without synthetic data


CHECKS = {
    "data_pipeline.py": check_data_pipeline,
    "trial_throughput.py": check_trial_throughput,
    "ray_overhead.py": check_ray_overhead,
    "search_efficiency.py": check_search_efficiency,
    "concurrency.py": check_concurrency,
    "gpu_path.py": check_gpu_path,
    "gan_quality.py": check_gan_quality,
    "recipe.py": check_recipe,
    "generator_bank.py": check_generator_bank,
    "deterministic.py": check_deterministic,
    "pool.py": check_pool,
}


# Each starts a local Ray.
RAY_SCRIPTS = {"ray_overhead.py", "search_efficiency.py", "concurrency.py", "generator_bank.py", "deterministic.py"}


@pytest.mark.parametrize("script", [
    pytest.param(script, marks=[pytest.mark.slow] if script in RAY_SCRIPTS else []) for script in CHECKS
])
def test_benchmark_quick_run_prints_its_figures(script):
    CHECKS[script](run_quick(script))
