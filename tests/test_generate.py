"""ganaug.generate: export a searched generator's images; they reload through the imagefolder dataset."""

import json
from pathlib import Path

import numpy as np
import pytest
from experiment_fixture import copy_experiment, tiny_experiment

from ganaug.data.splits import load_data
from ganaug.errors import EXIT_BAD_INPUT
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


def test_no_finished_trial(experiment_dir, tmp_path, capsys):
    unfinished = copy_experiment(experiment_dir, tmp_path / "unfinished", max_epochs=99)
    assert main([str(unfinished), "--per-class", "2", "--out", str(tmp_path / "out")]) == EXIT_BAD_INPUT
    assert "no trial with status complete" in _error(capsys)


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
    assert main([str(copy), "--per-class", "2", "--out", str(tmp_path / "out")]) == EXIT_BAD_INPUT
    err = _error(capsys)
    assert "synthetic_ratio 0" in err and "--trial" in err and best["trial_id"] in err


@pytest.mark.parametrize("args, message", [(["--per-class", "0"], "--per-class 0"),
                                           (["--per-class", "2", "--trial", "nope"], "--trial nope")])
def test_bad_options(experiment_dir, tmp_path, args, message, capsys):
    assert main([str(experiment_dir), *args, "--out", str(tmp_path / "out")]) == EXIT_BAD_INPUT
    assert message in _error(capsys)
