"""Bring your own classifier: `classifier: package.module:factory` and `torchvision:NAME` work wherever the built-in
classifiers do (one forward pass, split BatchNorm, CAS, checkpoints, a real search, evaluate, generate), and every
broken model ends before Ray starts with exit code 2 and one line naming the key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import adam_losses, make_spec
from spaces import write_tiny_space

from ganaug.classifier.models import SplitBatchNorm, build_classifier, synthetic_rows
from ganaug.config import ConfigError, TrialConfig
from ganaug.data.splits import load_data
from ganaug.trial.loop import run
from ganaug.trial.state import load_checkpoint

MODULE = "byo_test_models"  # unique: the module stays in sys.modules for the rest of the session
MODELS = '''
import torch
from torch import nn

CALLS = []


def small_cnn(num_classes, in_channels, image_size, depth=1, width=8):
    """depth conv-BN-ReLU blocks, global average pool, linear."""
    CALLS.append(dict(num_classes=num_classes, in_channels=in_channels, image_size=image_size, depth=depth,
                      width=width))
    layers, channels = [], in_channels
    for _ in range(depth):
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))


def lazy_cnn(num_classes):
    """No in_channels parameter: lazy layers take whatever the data has."""
    return nn.Sequential(nn.LazyConv2d(8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                         nn.LazyLinear(num_classes))


def no_batchnorm(num_classes, in_channels, image_size):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size * image_size, num_classes))


def ten_outputs(num_classes, in_channels, image_size):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size * image_size, 10))


def broken(num_classes):
    raise ValueError("this factory is broken on purpose")
'''


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The user's own file, importable as MODULE from its folder (on sys.path, and the working directory of the
    Ray tests, which Ray puts on its workers' path)."""
    folder = tmp_path_factory.mktemp("user_code")
    (folder / f"{MODULE}.py").write_text(MODELS)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(folder))
        yield folder


@pytest.fixture(scope="module")
def digits():
    return load_data({"name": "digits", "samples_per_class": 20, "val_fraction": 0.2})


# ----------------------------------------------------------------------------------------------
# Building.

def test_factory_gets_num_classes_in_channels_image_size_and_kwargs(models):
    import byo_test_models

    model = build_classifier(f"{MODULE}:small_cnn", make_spec(1, 8, 8), 5, kwargs={"depth": 2, "width": 4})
    assert byo_test_models.CALLS[-1] == dict(num_classes=5, in_channels=1, image_size=8, depth=2, width=4)
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 5)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 2


def test_factory_without_in_channels_gets_only_num_classes_and_its_lazy_layers_are_built(models):
    model = build_classifier(f"{MODULE}:lazy_cnn", make_spec(3, 8, 8), 4, split_bn=True)
    # Materialised at build time: the optimizer, created before the first batch, sees every parameter.
    assert not any(isinstance(p, torch.nn.parameter.UninitializedParameter) for p in model.parameters())
    assert model.training
    assert model(torch.zeros(2, 3, 8, 8)).shape == (2, 4)


def test_split_batchnorm_applies_to_external_models(models):
    model = build_classifier(f"{MODULE}:small_cnn", make_spec(1, 8, 8), 4, split_bn=True).train()
    twins = [m for m in model.modules() if isinstance(m, SplitBatchNorm)]
    assert len(twins) == 1
    with synthetic_rows(model, 4):
        model(torch.randn(8, 1, 8, 8))
    assert twins[0].synthetic.num_batches_tracked == 1 and twins[0].main.num_batches_tracked == 1
    with pytest.raises(ConfigError, match="synthetic_bn='split'.*no BatchNorm layer"):
        build_classifier(f"{MODULE}:no_batchnorm", make_spec(1, 8, 8), 4, split_bn=True)


def test_torchvision_resnet18_at_32x32_gets_the_cifar_stem_and_learns():
    torch.manual_seed(0)
    model = build_classifier("torchvision:resnet18", make_spec(3, 32, 32), 4)
    assert (model.conv1.kernel_size, model.conv1.stride) == ((3, 3), (1, 1))
    assert isinstance(model.maxpool, torch.nn.Identity)
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 4
    losses = adam_losses(model, x, y, steps=4, lr=1e-3)
    assert losses[-1] < losses[0], losses

    imagenet = build_classifier("torchvision:resnet18", make_spec(1, 32, 32), 4, kwargs={"small_input": False})
    assert (imagenet.conv1.in_channels, imagenet.conv1.kernel_size, imagenet.conv1.stride) == (1, (7, 7), (2, 2))
    assert isinstance(imagenet.maxpool, torch.nn.MaxPool2d)
    assert imagenet(torch.zeros(2, 1, 32, 32)).shape == (2, 4)


# ----------------------------------------------------------------------------------------------
# Config: classifier_kwargs is one mapping in TrialConfig and flat scalar keys everywhere else.

def test_classifier_kwargs_flatten_and_unflatten():
    cfg = TrialConfig.from_dict({"classifier": f"{MODULE}:small_cnn", "classifier_kwargs": {"depth": 3, "width": 4},
                                 "classifier_kwargs.width": 8})  # the flat key wins, as in {**base, **params}
    assert cfg.classifier_kwargs == {"depth": 3, "width": 8}
    flat = cfg.to_dict()
    assert flat["classifier_kwargs.depth"] == 3 and "classifier_kwargs" not in flat
    assert TrialConfig.from_dict(flat) == cfg
    assert TrialConfig.from_dict(yaml.safe_load(yaml.safe_dump(flat))) == cfg  # best_policy.yaml, base_config
    assert TrialConfig.from_dict(json.loads(json.dumps(flat))) == cfg           # params.json, evaluation configs
    assert cfg.replace(classifier_kwargs={}).classifier_kwargs == {}
    assert cfg.replace(**{"classifier_kwargs.depth": 1}).classifier_kwargs == {"depth": 1, "width": 8}
    assert TrialConfig.from_dict({"classifier": "torchvision:resnet18"}).classifier == "torchvision:resnet18"
    for values, message in [
        ({"classifier": "cnn", "classifier_kwargs.depth": 3}, "classifier='cnn' is built in"),
        ({"classifier": "torchvision:resnet18", "classifier_kwargs.num_classes": 3}, "comes from the dataset"),
        ({"classifier": "vgg"}, "not one of mlp, cnn, resnet, airbench; valid: those, or torchvision:NAME"),
    ]:
        with pytest.raises(ConfigError, match=message):
            TrialConfig.from_dict(values)


def test_a_trial_with_an_external_model_runs_scores_cas_and_resumes(models, digits, tmp_path):
    cfg = TrialConfig.from_dict({
        "classifier": f"{MODULE}:small_cnn", "classifier_kwargs.depth": 2, "synthetic_ratio": 0.5,
        "synthetic_bn": "split", "gan_width": 0.125, "latent_dim": 16, "batch_size": 64, "epochs": 2,
        "checkpoint_every": 1, "cas_epochs": 1})
    checkpoints = []

    def keep(metrics, checkpoint=None, images=None):
        if checkpoint is not None and metrics["epoch"] == 1:  # run() deletes its folder when report returns
            checkpoints.append(shutil.copytree(checkpoint, tmp_path / "epoch1"))

    final = run(cfg, digits, keep)
    assert final["epoch"] == 2 and 0 <= final["cas"] <= 1 and "cas_ratio" in final
    state = load_checkpoint(checkpoints[0], cfg)
    assert state["config"]["classifier_kwargs.depth"] == 2
    assert any(".synthetic." in key for key in state["classifier"])  # split BatchNorm twins are saved
    assert run(cfg, digits, lambda *a, **k: None, checkpoint=checkpoints[0])["epoch"] == 2
    with pytest.raises(Exception, match=r"classifier_kwargs.depth: checkpoint 2 vs config 1"):
        load_checkpoint(checkpoints[0], cfg.replace(**{"classifier_kwargs.depth": 1}))


# ----------------------------------------------------------------------------------------------
# A real search that searches classifier_kwargs, then evaluate and generate on it.

def write_space(tmp: Path, classifier: str = f"{MODULE}:small_cnn", fixed: str = "classifier_kwargs: {width: 4}",
                search: str = "classifier_kwargs.depth: {choice: [1, 2]}") -> Path:
    """The tiny quickstart (tests/spaces.py), 2 trials of 1 epoch on 20 digits a class, with `classifier` and the
    YAML lines `fixed` and `search` (one mapping each)."""
    return write_tiny_space(
        tmp, "byo", experiment={"num_samples": 2, "max_failures": 0}, data={"samples_per_class": 20},
        scheduler={"max_epochs": 1, "grace_period": 1},
        fixed={"classifier": classifier, "synthetic_ratio": 0.5, "gan_width": 0.125, "latent_dim": 16,
               **(yaml.safe_load(fixed) or {})},
        search=yaml.safe_load(search))


@pytest.mark.slow
def test_search_over_classifier_kwargs_then_evaluate_and_generate(models, tmp_path, monkeypatch):
    from ganaug.results.evaluate import main as evaluate
    from ganaug.results.experiment import load_experiment
    from ganaug.results.generate import main as generate
    from ganaug.search.tune import main as tune

    monkeypatch.chdir(models)  # Ray puts the driver's working directory on its workers' sys.path
    assert tune([str(write_space(tmp_path)), "--num-cpus", "2"]) == 0
    experiment_dir = tmp_path / "results" / "byo"
    experiment = load_experiment(experiment_dir)
    assert set(experiment.trials["classifier_kwargs.depth"]) <= {1, 2}  # one summary column per searched entry
    assert experiment.meta["base_config"]["classifier_kwargs.width"] == 4
    policy = yaml.safe_load((experiment_dir / "best_policy.yaml").read_text())["config"]
    assert policy["classifier"] == f"{MODULE}:small_cnn" and policy["classifier_kwargs.width"] == 4
    assert TrialConfig.from_dict(policy).classifier_kwargs == {"depth": policy["classifier_kwargs.depth"], "width": 4}

    assert evaluate([str(experiment_dir), "--seeds", "2", "--epochs", "1", "--num-cpus", "2"]) == 0
    assert (experiment_dir / "evaluation.md").read_text().startswith("best GAN policy vs best no-GAN policy")
    assert generate([str(experiment_dir), "--per-class", "2", "--out", str(tmp_path / "g.npz"),
                     "--format", "npz"]) == 0


# ----------------------------------------------------------------------------------------------
# Bad models: exit code 2 and one line before Ray starts (nothing written), the traceback only with --debug.

BAD = [
    # (classifier, extra fixed keys, searched key, what the one line must say)
    (f"{MODULE}_typo:small_cnn", "", None,
     ["fixed.classifier", f"cannot import '{MODULE}_typo'", "PYTHONPATH"]),
    (f"{MODULE}:smal_cnn", "", None,
     ["fixed.classifier", "has no attribute 'smal_cnn'", "did you mean 'small_cnn'"]),
    (f"{MODULE}:broken", "", None,
     ["fixed.classifier", "raised ValueError: this factory is broken on purpose", "--debug"]),
    (f"{MODULE}:ten_outputs", "labeling: all_in_one", None,
     ["fixed.classifier", "shape (2, 10)", "expected logits of shape (2, 11)", "all_in_one"]),
    (f"{MODULE}:no_batchnorm", "synthetic_bn: split", None,
     ["fixed.synthetic_bn", "no BatchNorm layer", "valid: synthetic_bn: shared"]),
    (f"{MODULE}:small_cnn", "", "classifier_kwargs.dept: {choice: [1, 2]}",
     ["search.classifier_kwargs.dept", "no parameter 'dept'", "did you mean 'depth'"]),
    ("torchvision:resnet181", "", None,
     ["fixed.classifier", "not a torchvision classification model", "did you mean 'resnet18'"]),
]


@pytest.mark.parametrize("classifier, fixed, search, expected", BAD, ids=[
    "typo_module", "missing_attribute", "factory_raises", "wrong_outputs", "split_bn_without_batchnorm",
    "unknown_kwarg", "unknown_torchvision_model"])
def test_bad_model_exits_2_with_one_line(models, tmp_path, capsys, classifier, fixed, search, expected):
    from ganaug.errors import EXIT_BAD_INPUT
    from ganaug.search.tune import main

    space = write_space(tmp_path, classifier, fixed, search or "classifier_lr: {choice: [1.0e-3, 3.0e-3]}")
    assert main([str(space), "--num-cpus", "2"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {space}: "), err
    for part in expected:
        assert part in err, err
    assert not (tmp_path / "results").exists()


def test_debug_shows_the_factory_traceback(models, tmp_path, capsys):
    from ganaug.errors import EXIT_BAD_INPUT
    from ganaug.search.tune import main

    space = write_space(tmp_path, f"{MODULE}:broken", "", "classifier_lr: {choice: [1.0e-3]}")
    assert main([str(space), "--debug"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "Traceback" in err and 'raise ValueError("this factory is broken on purpose")' in err
    assert err.strip().splitlines()[-1].startswith(f"error: {space}: fixed.classifier: ")
