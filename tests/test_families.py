"""The issue-15 generator families inside one real search: ALI, class-to-class translation and an ACGAN
conditioned on a continuous attribute (attributes.csv), each a trial of a tiny Ray Tune + Optuna search."""

import pandas as pd
from test_conditions import write_attribute_folder

from ganaug.results.experiment import load_experiment
from ganaug.search.tune import main

# Seed 1 draws the three families in the first three (random start-up) trials: checked offline with the
# space's own sampler, and asserted below, so a change in Optuna's sampling shows as a clear failure.
SPACE = """
experiment: {{name: families, storage: {storage}, num_samples: 3, max_concurrent: 2, seed: 1,
             sampler: {{n_startup_trials: 10}}}}
data: {{name: imagefolder, root: {root}, val_fraction: 0.2}}
scheduler: {{max_epochs: 2, grace_period: 2}}
fixed: {{classifier: mlp, classifier_width: 0.25, gan_arch: mlp, gan_width: 0.25, latent_dim: 16, batch_size: 32,
        synthetic_ratio: 0.5, cas_epochs: 0, checkpoint_every: 2, sample_every: 2, ali_epochs: 1}}
search:
  gan: {{choice: [acgan, ali, translation]}}
  gan_conditions: {{choice: [level], when: {{gan: acgan}}}}
"""
# What each family reports besides the shared GAN metrics.
OWN_METRICS = {"ali": "ali_reconstruction", "translation": "cycle_loss", "acgan": "condition_error"}


def test_every_new_family_runs_inside_a_search(tmp_path):
    folder = write_attribute_folder(tmp_path / "folder", per_class=24, test=4)
    space = tmp_path / "families.yaml"
    space.write_text(SPACE.format(storage=tmp_path / "results", root=folder))
    assert main([str(space), "--num-cpus", "2"]) == 0

    experiment = load_experiment(tmp_path / "results" / "families")
    summary = pd.read_csv(tmp_path / "results" / "families" / "summary.csv", dtype={"trial_id": str})
    assert set(summary["status"]) == {"complete"} and len(summary) == 3
    families = {}
    for _, trial in summary.iterrows():
        config = experiment.config_of(trial)
        families[config["gan"]] = trial["trial_id"]
        if config["gan"] == "acgan":
            assert config["gan_conditions"] == "level"
    assert set(families) == set(OWN_METRICS), "seed 1 no longer draws every family: pick another seed"
    for family, trial_id in families.items():
        curve = experiment.curves[experiment.curves["trial_id"] == trial_id]
        assert list(curve["epoch"]) == [1, 2]
        own = curve[OWN_METRICS[family]]
        assert own.notna().all() and (own >= 0).all(), (family, own)
        assert (curve["synthetic_diversity"] > 0).all() and (curve["val_acc"] > 0).all(), family
