"""Keys a policy cannot use are inactive (TrialConfig fields' `needs`): a search never draws them, summary.csv and
best_policy.yaml leave them blank, and they are no part of a policy's identity (evaluate's runs, the bank's keys)."""

import math

import optuna
import pandas as pd
import pytest
import yaml
from spaces import write_tiny_space

from ganaug.config import CHOICES, TrialConfig, depends_on, inactive_keys
from ganaug.space import load_space

# The keys that need synthetic data, directly or through the keys they need (acgan_weight through gan).
GAN_KEYS = [name for name in TrialConfig.keys() if "synthetic_ratio" in depends_on(name)]  # noqa: SIM118
# Each family's own keys, as the fields declare them: ali's, translation's, the class head's, the conditions'.
OWN_KEYS = {"ali": {"ali_epochs", "ali_train_encoded_share", "ali_mask_encoded", "ali_reconstruction_weight",
                    "ali_encoded_share", "ali_code_noise"},
            "translation": {"cycle_weight", "identity_weight"}}


def sample(space, trials: int) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(trials):
        trial = study.ask()
        space.define_by_run(trial)
        study.tell(trial, 0.0)
    return [trial.params for trial in study.trials]


def test_every_gan_key_is_inactive_without_synthetic_data_and_active_with_it():
    assert {"gan", "gan_lr", "labeling", "gan_pretrain_epochs", "d_real_fraction", "filter_candidates"} <= \
        set(GAN_KEYS)
    assert "synthetic_ratio" not in GAN_KEYS and "classifier_lr" not in GAN_KEYS
    with_gan = set(inactive_keys(TrialConfig(synthetic_ratio=0.5)))
    assert {"gan", "gan_lr", "labeling", "acgan_weight"}.isdisjoint(with_gan)
    assert OWN_KEYS["ali"] <= with_gan and "gan_freeze" in with_gan  # another family's keys; no pretraining
    assert TrialConfig(synthetic_ratio=0, gan_lr=0.01).identity() == TrialConfig().identity()
    assert TrialConfig(synthetic_ratio=0.5, gan_lr=0.01).identity() != TrialConfig(synthetic_ratio=0.5).identity()


def test_a_family_own_keys_are_drawn_only_under_that_family(tmp_path):
    path = write_tiny_space(tmp_path, search={
        "synthetic_ratio": {"choice": [0.0, 0.5]}, "gan": {"choice": list(CHOICES["gan"])},
        "gan_lr": {"loguniform": [1e-4, 1e-3]}, "latent_dim": {"int": [32, 64]},
        "acgan_weight": {"uniform": [0.5, 2.0]}, "acgan_fake_class_loss": {"choice": [False, True]},
        "ali_epochs": {"int": [1, 3]}, "ali_code_noise": {"uniform": [0.1, 1.0]},
        "cycle_weight": {"uniform": [1.0, 20.0]}, "identity_weight": {"uniform": [0.0, 1.0]},
        "traditional_aug": {"choice": ["none", "randaugment"]}, "randaugment_magnitude": {"int": [5, 15]}})
    runs = sample(load_space(path), 80)
    assert {params.get("gan") for params in runs if params["synthetic_ratio"] > 0} == set(CHOICES["gan"])
    for params in runs:
        family = params.get("gan")
        if params["synthetic_ratio"] == 0:
            assert not set(params) & set(GAN_KEYS), params
        for own, keys in OWN_KEYS.items():
            assert (family == own) == bool(keys & set(params)), params
        assert ("acgan_weight" in params) == (family in ("acgan", "ali", "translation"))
        assert ("acgan_fake_class_loss" in params) == (family in ("acgan", "ali"))
        assert ("latent_dim" in params) == (family in ("cgan", "acgan", "ali"))
        assert ("randaugment_magnitude" in params) == (params["traditional_aug"] == "randaugment")


@pytest.mark.slow
def test_a_search_draws_no_gan_key_at_ratio_zero_and_leaves_them_blank(tmp_path):
    """A real search: the Optuna study holds no GAN key for a trial with synthetic_ratio 0, summary.csv leaves them
    empty there, and best_policy.yaml holds only the keys its policy uses."""
    from ganaug.search import main

    path = write_tiny_space(tmp_path, experiment={"num_samples": 6}, search={
        "synthetic_ratio": {"choice": [0.0, 0.5]}, "gan": {"choice": ["cgan", "acgan"]},
        "gan_lr": {"loguniform": [1e-4, 1e-3]}, "labeling": {"choice": ["pseudo", "lsro"]},
        "classifier_lr": {"loguniform": [3e-4, 3e-3]}})
    assert main([str(path), "--num-cpus", "2"]) == 0
    experiment = tmp_path / "results" / "tiny"
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(experiment / "optuna_study.journal")))
    trials = optuna.load_study(study_name="tiny", storage=storage).trials
    ratios = [trial.params["synthetic_ratio"] for trial in trials]
    assert 0 in ratios and any(ratio > 0 for ratio in ratios)
    for trial in trials:
        drawn = set(trial.params) & {"gan", "gan_lr", "labeling"}
        assert drawn == (set() if trial.params["synthetic_ratio"] == 0 else {"gan", "gan_lr", "labeling"})
    summary = pd.read_csv(experiment / "summary.csv")
    baseline = summary[summary["synthetic_ratio"] == 0]
    assert len(baseline) and baseline[["gan", "gan_lr", "labeling"]].isna().all().all()
    assert summary.loc[summary["synthetic_ratio"] > 0, ["gan", "gan_lr", "labeling"]].notna().all().all()
    best = yaml.safe_load((experiment / "best_policy.yaml").read_text())
    config = best["config"]
    unused = inactive_keys(config)
    assert not set(config) & set(unused)  # only the keys this policy uses
    assert math.isfinite(best["metrics"]["val_acc"])
