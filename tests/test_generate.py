"""ganaug.generate: export a searched generator's images; they reload through the imagefolder dataset."""

import json
from pathlib import Path

import numpy as np
import pytest
from experiment_fixture import copy_experiment, tiny_experiment

from ganaug.data.splits import load_data
from ganaug.errors import EXIT_BAD_INPUT
from ganaug.results import BEST_GAN, policy_configs
from ganaug.results.experiment import load_experiment
from ganaug.results.generate import folder_names, main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def experiment_dir(tmp_path_factory):
    return tiny_experiment(tmp_path_factory)


def test_png_export_reloads_through_the_data_layer(experiment_dir, tmp_path):
    out = tmp_path / "synthetic"
    assert main([str(experiment_dir), "--per-class", "4", "--out", str(out)]) == 0
    for digit in range(10):
        assert sorted(p.name for p in (out / "train" / str(digit)).iterdir()) == [f"{i:05d}.png" for i in range(4)]

    reloaded = load_data({"name": "imagefolder", "root": str(out), "val_fraction": 0.25})
    assert reloaded.spec.shape == (1, 8, 8)
    assert reloaded.spec.class_names == tuple(str(k) for k in range(10))
    train_y = np.concatenate([reloaded.train_y.numpy(), reloaded.val_y.numpy()])
    assert np.bincount(train_y, minlength=10).tolist() == [4] * 10
    synthetic = reloaded.train_x.float()
    assert synthetic.std() > 0 and len(synthetic.flatten(1).unique(dim=0)) == len(synthetic)

    # test/ holds the experiment's real test images, losslessly and in their order within each class.
    original = load_data(load_experiment(experiment_dir).meta["data"])
    assert len(reloaded.test_y) == len(original.test_y)
    for digit in range(10):
        assert (reloaded.test_x[reloaded.test_y == digit] == original.test_x[original.test_y == digit]).all()

    # A second export into the same folder would mix two generators' images.
    assert main([str(experiment_dir), "--per-class", "4", "--out", str(out)]) == EXIT_BAD_INPUT


def test_npz_export_is_seeded_and_follows_trial(experiment_dir, tmp_path):
    experiment = load_experiment(experiment_dir)
    best = experiment.best()

    def export(name: str, *extra: str) -> dict:
        assert main([str(experiment_dir), "--per-class", "3", "--out", str(tmp_path / name), "--format", "npz",
                     *extra]) == 0
        with np.load(tmp_path / name, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}

    first = export("a.npz")
    assert first["images"].dtype == np.uint8 and first["images"].shape == (30, 1, 8, 8)
    assert first["labels"].tolist() == [k for k in range(10) for _ in range(3)]
    assert first["class_names"].tolist() == [str(k) for k in range(10)]
    assert str(first["trial_id"]) == str(best["trial_id"])
    assert (export("b.npz")["images"] == first["images"]).all()  # same seed, same images
    assert (export("c.npz", "--seed", "1")["images"] != first["images"]).any()

    # Trials differing only in classifier keys train identical GANs (same seed), so compare with one stopped
    # at another epoch when ASHA stopped any.
    others = experiment.trials[experiment.trials["trial_id"] != best["trial_id"]].sort_values("epochs")
    other = others.iloc[0]
    chosen = export("d.npz", "--trial", other["trial_id"])
    assert str(chosen["trial_id"]) == other["trial_id"]
    if other["epochs"] != best["epochs"]:
        assert (chosen["images"] != first["images"]).any()


BASELINE = "baseline"  # the trial with_winning_baseline adds


def with_winning_baseline(experiment_dir: Path, destination: Path) -> Path:
    """A copy of the experiment that a no-GAN baseline wins, as searches (which run their baselines first) often
    end: one more complete trial, BASELINE, with synthetic_ratio 0, no checkpoint and val_acc 1 at every epoch."""
    copy = copy_experiment(experiment_dir, destination)
    best = Path(load_experiment(copy).best()["path"])
    trial = copy / f"train_trial_{BASELINE}"
    trial.mkdir()
    params = json.loads((best / "params.json").read_text())
    (trial / "params.json").write_text(json.dumps({**params, "synthetic_ratio": 0.0}))
    lines = [json.loads(line) for line in (best / "result.json").read_text().splitlines() if line.strip()]
    (trial / "result.json").write_text("".join(json.dumps({**r, "trial_id": BASELINE, "val_acc": 1.0}) + "\n"
                                               for r in lines))
    return copy


def test_by_default_the_best_trial_with_a_generator_is_exported_and_named(experiment_dir, tmp_path, capsys):
    """The search's best trial is a no-GAN baseline, which has no generator: the default is the best trial that
    has one, the trial `ganaug evaluate` retrains as best_gan."""
    copy = with_winning_baseline(experiment_dir, tmp_path / "baseline_wins")
    experiment = load_experiment(copy)
    assert experiment.best()["trial_id"] == BASELINE  # the condition: a baseline wins the search
    best_gan = experiment.best_gan()
    assert best_gan["trial_id"] == load_experiment(experiment_dir).best()["trial_id"]
    assert policy_configs(experiment)[BEST_GAN]["trial_id"] == best_gan["trial_id"]  # one rule for both commands

    out = tmp_path / "x"
    assert main([str(copy), "--per-class", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (f"Exporting trial {best_gan['trial_id']}, the best trial with a generator: complete, "
            f"val_acc={best_gan['last_val_acc']:.4f}") in printed
    assert f"of trial {best_gan['trial_id']} (complete, epoch {best_gan['epochs']}" in printed
    for digit in range(10):
        assert len(list((out / "train" / str(digit)).glob("*.png"))) == 5

    # Asked for by --trial, the baseline is refused, naming the trials that have a generator.
    assert main([str(copy), "--per-class", "5", "--out", str(tmp_path / "y"), "--trial", BASELINE]) == \
        EXIT_BAD_INPUT
    err = _error(capsys)
    assert f"trial {BASELINE} has synthetic_ratio 0" in err and best_gan["trial_id"] in err


def test_folder_names_are_safe_and_unique():
    assert folder_names(["T-shirt/top", "a\\b", ".hidden", "", "x", "x"]) == [
        "T-shirt_top", "a_b", "class_2_hidden", "class_3", "x", "x_5"]


# ----------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit code 2.

def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    return err


def test_not_an_experiment_folder(tmp_path, capsys):
    assert main([str(tmp_path), "--per-class", "2", "--out", str(tmp_path / "out")]) == EXIT_BAD_INPUT
    assert "not a ganaug experiment folder" in _error(capsys)


def test_without_a_complete_trial_the_furthest_pruned_gan_trial_is_exported(experiment_dir, tmp_path, capsys):
    unfinished = copy_experiment(experiment_dir, tmp_path / "unfinished", max_epochs=99)
    trials = load_experiment(unfinished).trials
    assert (trials["status"] == "pruned").all()
    out = tmp_path / "pruned.npz"
    assert main([str(unfinished), "--per-class", "2", "--out", str(out), "--format", "npz"]) == 0
    with np.load(out, allow_pickle=False) as npz:
        trial_id = str(npz["trial_id"])
    trial = trials.set_index("trial_id").loc[trial_id]
    furthest = trials[trials["epochs"] == trials["epochs"].max()]
    assert trial["epochs"] == furthest["epochs"].max() and trial["last_val_acc"] == furthest["last_val_acc"].max()
    assert (f"Exporting trial {trial_id}, the best trial with a generator: pruned at epoch {trial['epochs']}, "
            f"val_acc={trial['last_val_acc']:.4f}") in capsys.readouterr().out


def test_no_trial_with_a_generator(experiment_dir, tmp_path, capsys):
    experiment = load_experiment(experiment_dir)
    no_gan = copy_experiment(experiment_dir, tmp_path / "no_gan",
                             base_config={**experiment.meta["base_config"], "synthetic_ratio": 0.0})
    assert main([str(no_gan), "--per-class", "2", "--out", str(tmp_path / "out")]) == EXIT_BAD_INPUT
    assert "no complete or pruned trial trained a generator" in _error(capsys)


def test_trial_without_checkpoint(experiment_dir, tmp_path, capsys):
    copy = copy_experiment(experiment_dir, tmp_path / "no_checkpoint")
    best = load_experiment(copy).best()
    for checkpoint in Path(best["path"]).glob("checkpoint_*"):
        for file in checkpoint.iterdir():
            file.unlink()
        checkpoint.rmdir()
    assert main([str(copy), "--per-class", "2", "--out", str(tmp_path / "out")]) == EXIT_BAD_INPUT
    assert f"trial {best['trial_id']} has no checkpoint" in _error(capsys)


def test_corrupt_checkpoint_falls_back_then_fails(experiment_dir, tmp_path, capsys):
    copy = copy_experiment(experiment_dir, tmp_path / "corrupt")
    checkpoints = load_experiment(copy).checkpoints_of(load_experiment(copy).best())
    assert len(checkpoints) == 2  # checkpoint_every 1, num_to_keep 2
    (checkpoints[0] / "trial_state.pt").write_bytes(b"truncated")
    assert main([str(copy), "--per-class", "2", "--out", str(tmp_path / "one.npz"), "--format", "npz"]) == 0
    assert "using the older checkpoint_000000" in capsys.readouterr().err
    (checkpoints[1] / "trial_state.pt").write_bytes(b"")
    assert main([str(copy), "--per-class", "2", "--out", str(tmp_path / "two.npz"), "--format", "npz"]) == 2
    assert "no usable checkpoint" in _error(capsys)


def test_trial_without_generator_suggests_another(experiment_dir, tmp_path, capsys):
    copy = copy_experiment(experiment_dir, tmp_path / "no_gan")
    best = load_experiment(copy).best()
    params = Path(best["path"]) / "params.json"
    params.write_text(json.dumps({**json.loads(params.read_text()), "synthetic_ratio": 0.0}))
    others = load_experiment(copy).trials.query("trial_id != @best.trial_id")["trial_id"]
    assert main([str(copy), "--per-class", "2", "--out", str(tmp_path / "out"), "--trial", best["trial_id"]]) == \
        EXIT_BAD_INPUT
    err = _error(capsys)
    assert f"trial {best['trial_id']} has synthetic_ratio 0" in err and "--trial" in err
    assert all(other in err for other in others)  # every trial that has a generator is named


@pytest.mark.parametrize("args, message", [(["--per-class", "0"], "--per-class 0"),
                                           (["--per-class", "2", "--trial", "nope"], "--trial nope")])
def test_bad_options(experiment_dir, tmp_path, args, message, capsys):
    assert main([str(experiment_dir), *args, "--out", str(tmp_path / "out")]) == EXIT_BAD_INPUT
    assert message in _error(capsys)
