"""Search-space YAML: shipped spaces load and sample valid trials; every bad input is one SpaceError line."""

from __future__ import annotations

import os
import re
from pathlib import Path

import optuna
import pytest

from ganaug.config import CHOICES, TrialConfig, inactive_keys
from ganaug.space.dataset import check_image_size
from ganaug.space.schema import (
    Dist,
    ExperimentSection,
    Metric,
    Resources,
    Sampler,
    Scheduler,
    SpaceError,
    describe,
    search_order,
)
from ganaug.space.spec import SearchSpec, load_space
from ganaug.space.storage import validate_storage

ROOT = Path(__file__).resolve().parent.parent
SPACES = sorted((ROOT / "search_spaces").glob("*.yaml"))

optuna.logging.set_verbosity(optuna.logging.WARNING)

# A small valid space; each bad case below replaces one or more of its sections.
BASE = {
    "experiment": "{name: t, num_samples: 4}",
    "data": "{name: digits}",
    "scheduler": "{max_epochs: 4, grace_period: 1}",
    "fixed": "{classifier: mlp}",
    "search": "{gan_lr: {loguniform: [1.0e-4, 1.0e-3]}}",
}
DROP = object()


def doc(**sections: str) -> str:
    merged = {**BASE, **sections}
    return "\n".join(f"{key}: {value}" for key, value in merged.items() if value is not DROP) + "\n"


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def sample(spec: SearchSpec, trials: int, seed: int = 0) -> list[dict]:
    """Params of `trials` random Optuna trials over the space, each checked through trial_config."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    params = []
    for _ in range(trials):
        trial = study.ask()
        assert spec.define_by_run(trial) == {}
        spec.trial_config(trial.params)  # raises if any sampled value is invalid
        study.tell(trial, 0.0)
        params.append(trial.params)
    return params


# ------------------------------------------------------------------------------------------------
# The shipped spaces.

def test_shipped_spaces_exist():
    assert {path.name for path in SPACES} >= {"quickstart.yaml", "cifar10.yaml", "cifar100.yaml",
                                             "fashion_mnist.yaml"}


@pytest.mark.parametrize("path", SPACES, ids=lambda path: path.stem)
def test_shipped_space_loads_and_samples_valid_trials(path):
    spec = load_space(path)
    assert spec.experiment.name == path.stem
    # Long-tailed data (data.long_tail) is searched on the mean per-class accuracy, the rest on plain accuracy.
    metric = "val_balanced_acc" if spec.data.get("long_tail") else "val_acc"
    assert spec.metric.name == metric and spec.metric.mode == "max"
    for params in sample(spec, 20):
        assert set(params) <= set(spec.search)
        config = spec.trial_config(params)
        assert config.epochs == spec.scheduler.max_epochs
        inactive = inactive_keys(config)
        for key, value in spec.fixed.items():  # the keys this policy cannot use take their defaults
            assert getattr(config, key) == (getattr(TrialConfig(), key) if key in inactive else value)
        assert not set(params) & set(inactive)  # and are never drawn
        if "diffaugment" in params:  # conditional on the conv architectures in every shipped space
            assert params["gan_arch"] in ("dcgan", "resnet")
        if "gan_freeze" in params:  # only searched where there is pretraining to freeze after
            assert params["gan_pretrain_epochs"] >= 1
    smoke = spec.smoke()  # revalidated on the way
    assert (smoke.experiment.num_samples, smoke.scheduler.max_epochs) == (2, 2)
    assert smoke.baseline_points() == []  # its two trials are drawn, so a GAN trial can be among them


def test_quickstart_is_small_cpu_and_offline():
    spec = load_space(next(path for path in SPACES if path.stem == "quickstart"))
    assert spec.experiment.resources.gpu == 0
    assert spec.data["name"] == "digits" and not spec.data.get("download", False)
    assert spec.scheduler.max_epochs <= 12 and spec.experiment.num_samples <= 32


def test_flagship_searches_every_axis():
    spec = load_space(next(path for path in SPACES if path.stem == "cifar100"))
    axes = {"gan", "gan_arch", "gan_lr", "gan_beta1", "latent_dim", "gan_width", "d_steps",
            "d_label_smoothing", "diffaugment", "g_ema", "d_real_fraction", "d_mix_schedule",
            "gan_loss", "d_spectral_norm", "d_minibatch", "gan_steps_per_batch", "gan_pretrain_epochs", "gan_freeze",
            "synthetic_ratio", "labeling", "gan_warmup_epochs", "classifier", "classifier_lr", "batch_size",
            "traditional_aug"}
    assert axes <= set(spec.search)
    assert 0.0 in spec.search["synthetic_ratio"].choice  # the no-GAN baseline competes inside the search
    assert spec.experiment.resources.gpu == 0.25 and spec.data["download"] is True
    assert "resnet" in spec.search["gan_arch"].choice


def test_documented_example_loads(tmp_path):
    """README's "The search-space format" is the one description of the format: its example is a valid space."""
    section = (ROOT / "README.md").read_text().split("## The search-space format", 1)[1].split("\n## ", 1)[0]
    example = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    spec = load_space(write(tmp_path, example))
    assert spec.experiment.reuse_actors is True and spec.experiment.sampler.multivariate is True
    assert spec.search["diffaugment"].when == {"gan_arch": "dcgan"}
    assert all(("diffaugment" in params) == (params.get("gan_arch") == "dcgan") for params in sample(spec, 10))


@pytest.mark.parametrize("path", SPACES, ids=lambda path: path.stem)
def test_every_shipped_space_tunes_the_no_gan_baselines_first(path):
    """A fair search tunes the baselines with the same budget: every space keeps synthetic_ratio 0 and searches
    traditional_aug, and its first trials are the no-GAN policies, one per traditional choice."""
    spec = load_space(path)
    assert 0.0 in spec.search["synthetic_ratio"].choice
    choices = spec.search["traditional_aug"].choice
    assert set(choices) == set(CHOICES["traditional_aug"]) and spec.unsearched_ablations() == []  # evaluate's too
    everything = spec.baseline_points()
    points = [point for point in everything if point["synthetic_ratio"] == 0]
    twins = everything[len(points):]  # then the synthetic twin of each augmentation baseline but none
    assert [twin["traditional_aug"] for twin in twins] == [choice for choice in choices if choice != "none"]
    assert all(twin["synthetic_ratio"] > 0 and twin.get("labeling", "pseudo") == "pseudo" for twin in twins)
    assert [point["traditional_aug"] for point in points[:len(choices)]] == choices
    # then one per mixing (mix) and one per long-tail method (class_balance) the space searches, on flips and shifts;
    # on long-tailed data the augmentation baselines train with logit adjustment, so flips on it is there already
    others = lambda key: [value for value in getattr(spec.search.get(key), "choice", None) or [] if value != "none"]
    mixes, balances = others("mix"), others("class_balance")
    long_tailed = bool(spec.data.get("long_tail"))
    assert all(point.get("class_balance") == ("logit_adjust" if long_tailed else None)
               for point in points[:len(choices) + len(mixes)])
    assert [point.get("mix") for point in points[len(choices):len(choices) + len(mixes)]] == mixes
    assert [point.get("class_balance") for point in points[len(choices) + len(mixes):]] == \
        [way for way in balances if not (long_tailed and way == "logit_adjust")]
    for point in points:
        config = spec.trial_config(point)
        assert config.synthetic_ratio == 0
        assert set(point) <= set(spec.search)
    assert len(everything) < spec.experiment.num_samples


def test_baseline_points_take_defaults_or_midpoints_and_respect_when(tmp_path):
    spec = load_space(write(tmp_path, doc(search="""
  synthetic_ratio: {choice: [0.5, 0, 1.0]}
  traditional_aug: {choice: [none, randaugment]}
  randaugment_magnitude: {int: [12, 20], step: 2, when: {traditional_aug: randaugment}}
  gan_lr: {loguniform: [5.0e-4, 2.0e-3]}
  batch_size: {choice: [64, 128, 256]}
  classifier_width: {uniform: [0.5, 2.0], step: 0.25}
  gan_pretrain_epochs: {int: [2, 6]}""")))
    none, rand, rand_twin = spec.baseline_points()
    # Its synthetic twin: the middle non-zero ratio (of 0.5, 1.0), the GAN keys at their defaults or midpoints.
    assert rand_twin == {**rand, "synthetic_ratio": 1.0, "gan_lr": 1e-3, "gan_pretrain_epochs": 4}
    assert none["synthetic_ratio"] == 0 and isinstance(none["synthetic_ratio"], int)  # the choice as written
    assert none["traditional_aug"] == "none" and "randaugment_magnitude" not in none  # its `when` fails
    assert rand["traditional_aug"] == "randaugment" and rand["randaugment_magnitude"] == 16  # middle on the grid
    assert "gan_lr" not in none and "gan_pretrain_epochs" not in none  # GAN keys: a no-GAN policy cannot use them
    assert none["batch_size"] == 128 and none["classifier_width"] == 1.0  # defaults the space can draw
    off = load_space(write(tmp_path, doc(experiment="{name: t, baselines_first: false}",
                                         search="{synthetic_ratio: {choice: [0.0, 0.5]}}"), "off.yaml"))
    assert off.baseline_points() == []
    no_zero = load_space(write(tmp_path, doc(search="{synthetic_ratio: {choice: [0.5, 1.0]}}"), "nz.yaml"))
    assert no_zero.baseline_points() == []


def test_baselines_run_first_in_the_optuna_study(tmp_path):
    """Ray's OptunaSearch enqueues the points: the study's first trials are the baselines, as given."""
    from ganaug.search.searchers import make_searcher

    spec = load_space(write(tmp_path, doc(search="""
  synthetic_ratio: {choice: [0.0, 0.5]}
  traditional_aug: {choice: [none, flip_translate, trivialaugment]}
  gan_lr: {loguniform: [1.0e-4, 1.0e-3]}""")))
    searcher = make_searcher(spec, None)
    suggested = [searcher.suggest(f"trial{index}") for index in range(4)]
    assert [s["traditional_aug"] for s in suggested[:3]] == ["none", "flip_translate", "trivialaugment"]
    assert all(s["synthetic_ratio"] == 0.0 for s in suggested[:3])


def test_cutout_larger_than_the_images_is_named_once_the_data_is_known(tmp_path):
    spec = load_space(write(tmp_path, doc(search="{cutout: {choice: [0, 4, 16]}}")))
    check_image_size(spec, 32, 32)
    with pytest.raises(SpaceError, match=r"search.cutout: cutout=16 is out of range for 8x8 images; valid: an integer "
                                         r"in \[0, 8\] \(0 = off\)$"):
        check_image_size(spec, 8, 8)
    fixed = load_space(write(tmp_path, doc(fixed="{cutout: 8}"), "fixed.yaml"))
    check_image_size(fixed, 8, 8)  # the whole side is allowed
    with pytest.raises(SpaceError, match=r"fixed.cutout: cutout=8 is out of range for 6x9 images"):
        check_image_size(fixed, 6, 9)


def test_old_boolean_traditional_aug_still_loads(tmp_path):
    spec = load_space(write(tmp_path, doc(fixed="{traditional_aug: true}")))
    assert spec.trial_config({}).traditional_aug == "flip_translate"
    assert TrialConfig.from_dict({"traditional_aug": False}).traditional_aug == "none"


# ------------------------------------------------------------------------------------------------
# Sampling, conditions and trial configs.

def test_when_key_is_suggested_only_when_its_condition_holds(tmp_path):
    # diffaugment comes first in the file: define_by_run must still suggest gan_arch before it.
    path = write(tmp_path, doc(fixed="{classifier: mlp, synthetic_ratio: 0.5}", search="""
  diffaugment: {choice: ["", translation, "color,translation,cutout"], when: {gan_arch: dcgan}}
  g_ema: {choice: [0.0, 0.999], when: {gan_arch: [mlp, dcgan], traditional_aug: true}}
  gan_arch: {choice: [mlp, dcgan]}
  traditional_aug: {choice: [true, false]}
  d_steps: {int: [1, 3], when: {classifier: mlp}}"""))
    spec = load_space(path)
    order = search_order(spec.search)
    assert order.index("gan_arch") < order.index("diffaugment")
    assert order.index("traditional_aug") < order.index("g_ema")
    runs = sample(spec, 30)
    for params in runs:
        assert ("diffaugment" in params) == (params["gan_arch"] == "dcgan")
        assert ("g_ema" in params) == (params["traditional_aug"] is True)
        assert "d_steps" in params  # condition on a fixed key that holds
        config = spec.trial_config(params)
        if "diffaugment" not in params:
            assert config.diffaugment == TrialConfig.diffaugment  # the default applies
    assert {params["gan_arch"] for params in runs} == {"mlp", "dcgan"}  # both branches were exercised


def test_when_on_a_fixed_key_and_on_an_int_key(tmp_path):
    path = write(tmp_path, doc(fixed="{gan_arch: mlp, synthetic_ratio: 0.5}", search="""
  gan_lr: {loguniform: [1.0e-4, 1.0e-3]}
  latent_dim: {int: [32, 128], step: 32, when: {gan_arch: mlp}}
  diffaugment: {choice: ["", translation], when: {d_steps: 2}}
  d_steps: {int: [1, 2]}"""))
    spec = load_space(path)
    runs = sample(spec, 20)
    assert all(params["latent_dim"] in (32, 64, 96, 128) for params in runs)
    assert all(("diffaugment" in params) == (params["d_steps"] == 2) for params in runs)


def test_trial_config_layers_defaults_fixed_params_epochs_and_seed(tmp_path):
    spec = load_space(write(tmp_path, doc(experiment="{name: t, seed: 7}",
                                          fixed="{classifier: cnn, synthetic_ratio: 1}",
                                          search="{gan_lr: {loguniform: [1.0e-4, 1.0e-3]}}")))
    config = spec.trial_config({"gan_lr": 5e-4})
    assert (config.classifier, config.synthetic_ratio, config.gan_lr) == ("cnn", 1.0, 5e-4)
    assert (config.epochs, config.seed, config.labeling) == (4, 7, TrialConfig.labeling)
    fixed_seed = load_space(write(tmp_path, doc(experiment="{name: t, seed: 7}", fixed="{seed: 3}")))
    assert fixed_seed.trial_config({"gan_lr": 5e-4}).seed == 3


def test_exponent_floats_without_a_dot_are_floats(tmp_path):
    spec = load_space(write(tmp_path, doc(search="{gan_lr: {loguniform: [1e-4, 1e-3]}}")))
    assert spec.search["gan_lr"].loguniform == [1e-4, 1e-3]


def test_metric_mode_defaults_to_the_metric_direction(tmp_path):
    spec = load_space(write(tmp_path, doc(metric="{name: val_loss}")))
    assert spec.metric.mode == "min"


def test_smoke_shrinks_and_keeps_the_original(tmp_path):
    spec = load_space(write(tmp_path, doc(experiment="{name: t, num_samples: 50, max_concurrent: 8}",
                                          scheduler="{max_epochs: 30, grace_period: 5}")))
    smoke = spec.smoke()
    assert (smoke.experiment.num_samples, smoke.experiment.max_concurrent) == (2, 2)
    assert (smoke.scheduler.max_epochs, smoke.scheduler.grace_period) == (2, 1)
    assert smoke.data["samples_per_class"] == 20
    assert smoke.experiment.name != spec.experiment.name  # never mixes into the real experiment's folder
    assert smoke.trial_config({"gan_lr": 1e-4}).epochs == 2
    assert (spec.experiment.num_samples, spec.scheduler.max_epochs) == (50, 30)
    assert "samples_per_class" not in spec.data
    tiny = load_space(write(tmp_path, doc(data="{name: digits, samples_per_class: 5}"))).smoke()
    assert tiny.data["samples_per_class"] == 5  # already smaller: kept


def test_storage_local_expanded_and_remote_as_given(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    local = load_space(write(tmp_path, doc(experiment="{name: run1, storage: ~/results}")))
    assert local.storage_uri() == os.path.join(str(tmp_path), "results")
    assert local.experiment_dir() == os.path.join(str(tmp_path), "results", "run1")
    monkeypatch.chdir(tmp_path)
    relative = load_space(write(tmp_path, doc(experiment="{name: run1, storage: out}")))
    assert relative.storage_uri() == str(tmp_path / "out")
    remote = load_space(write(tmp_path, doc(experiment="{name: run1, storage: 's3://bucket/prefix/'}")))
    assert remote.storage_uri() == "s3://bucket/prefix/"
    assert remote.experiment_dir() == "s3://bucket/prefix/run1"
    validate_storage(remote)  # not touched


def test_validate_storage_creates_the_folder_or_names_it(tmp_path):
    target = tmp_path / "a" / "b"
    validate_storage(load_space(write(tmp_path, doc(experiment=f"{{name: t, storage: '{target}'}}"))))
    assert target.is_dir() and not list(target.iterdir())  # created, write test cleaned up
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    bad = load_space(write(tmp_path, doc(experiment=f"{{name: t, storage: '{blocker / 'sub'}'}}")))
    with pytest.raises(SpaceError, match="experiment.storage") as error:
        validate_storage(bad)
    assert str(blocker / "sub") in str(error.value)


# ------------------------------------------------------------------------------------------------
# Overrides (the CLI flags).

def test_overrides_replace_experiment_values(tmp_path):
    path = write(tmp_path, doc())
    spec = load_space(path, name="other", storage=str(tmp_path / "s"), num_samples=9, max_concurrent=3)
    experiment = spec.experiment
    assert (experiment.name, experiment.num_samples, experiment.max_concurrent) == ("other", 9, 3)
    assert spec.storage_uri() == str(tmp_path / "s")
    assert load_space(path, name=None, num_samples=None).experiment.num_samples == 4  # None = flag not given


@pytest.mark.parametrize(("overrides", "fragment"), [
    ({"num_samples": 0}, "experiment.num_samples"),
    ({"max_concurrent": -1}, "experiment.max_concurrent"),
    ({"name": "a/b"}, "experiment.name"),
    ({"num_samples": "ten"}, "experiment.num_samples"),
    ({"trials": 3}, "override 'trials'"),
])
def test_bad_overrides_are_space_errors(tmp_path, overrides, fragment):
    path = write(tmp_path, doc())
    with pytest.raises(SpaceError) as error:
        load_space(path, **overrides)
    assert fragment in str(error.value) and str(path) in str(error.value)


# ------------------------------------------------------------------------------------------------
# Bad input: one SpaceError line naming the file, the key path and what is wrong or valid.

BAD = [
    # Unknown keys, with did-you-mean.
    (doc(serch="{gan_lr: {choice: [0.001]}}"), ["serch", "did you mean 'search'"]),
    (doc(experiment="{name: t, num_sample: 3}"), ["experiment.num_sample", "did you mean 'num_samples'"]),
    (doc(experiment="{name: t, resources: {cpus: 1}}"), ["experiment.resources.cpus", "did you mean 'cpu'"]),
    (doc(scheduler="{max_epoch: 4}"), ["scheduler.max_epoch", "did you mean 'max_epochs'"]),
    (doc(search="{gan_lr: {loguniform: [1.0e-4, 1.0e-3], stepp: 2}}"), ["search.gan_lr.stepp", "valid:"]),
    (doc(search="{gan_lrr: {loguniform: [1.0e-4, 1.0e-3]}}"), ["search.gan_lrr", "did you mean 'gan_lr'"]),
    (doc(fixed="{clasifier: mlp}"), ["fixed.clasifier", "did you mean 'classifier'"]),
    (doc(data="{name: digits, val_frac: 0.2}"), ["data.val_frac", "did you mean 'val_fraction'"]),
    # Wrong types and shapes.
    (doc(experiment="{name: t, num_samples: many}"), ["experiment.num_samples", "integer"]),
    (doc(experiment="{name: t, num_samples: '16'}"), ["experiment.num_samples", "integer"]),
    (doc(search="{gan_lr: 0.001}"), ["search.gan_lr", "constants go under fixed"]),
    (doc(search="[gan_lr]"), ["search", "expected a mapping"]),
    (doc(data="digits"), ["data", "name: digits"]),
    (doc(search="{gan_lr: {uniform: [1.0e-4]}}"), ["search.gan_lr.uniform", "[low, high]"]),
    (doc(search="{latent_dim: {int: [32.5, 64]}}"), ["search.latent_dim.int.0", "integer"]),
    (doc(experiment=DROP), ["experiment", "missing"]),
    (doc(experiment="{storage: /tmp}"), ["experiment.name", "missing"]),
    (doc(experiment="{name: a/b}"), ["experiment.name", "folder name"]),
    (doc(data="{val_fraction: 0.2}"), ["data.name", "digits"]),
    # Empty sections.
    (doc(search="{}"), ["search", "search needs at least one key"]),
    (doc(search=""), ["search", "search needs at least one key"]),
    (doc(search=DROP), ["search", "search needs at least one key"]),
    # Distributions.
    (doc(search="{d_real_fraction: {uniform: [0.75, 0.25]}}"),
     ["search.d_real_fraction.uniform", "low 0.75 >= high"]),
    (doc(search="{latent_dim: {int: [64, 64]}}"), ["search.latent_dim.int", "low < high"]),
    (doc(search="{gan_lr: {loguniform: [0, 1.0e-3]}}"), ["search.gan_lr.loguniform", "<= 0"]),
    (doc(search="{gan_lr: {uniform: [1.0e-4, .inf]}}"), ["search.gan_lr.uniform", "finite"]),
    (doc(search="{gan_lr: {uniform: [1.0e-4, 1.0e-3], choice: [1.0e-4]}}"),
     ["search.gan_lr", "exactly one of"]),
    (doc(search="{latent_dim: {step: 2}}"), ["search.latent_dim", "exactly one of"]),
    (doc(search="{gan: {choice: []}}"), ["search.gan.choice", "empty choice"]),
    (doc(search="{gan: {choice: [cgan, cgan]}}"), ["search.gan.choice.1", "twice"]),
    (doc(search="{gan: {choice: [cgan, {a: 1}]}}"), ["search.gan.choice.1", "valid: strings, numbers"]),
    (doc(search="{latent_dim: {uniform: [32, 128]}}"), ["search.latent_dim.uniform", "gives floats"]),
    (doc(search="{gan: {uniform: [0, 1]}}"), ["search.gan.uniform", "valid: choice"]),
    (doc(search="{latent_dim: {int: [32, 128], step: 30}}"), ["search.latent_dim.step", "multiple of step"]),
    (doc(search="{gan_lr: {uniform: [1.0e-4, 1.0e-3], log: true}}"), ["search.gan_lr.log", "loguniform"]),
    (doc(search="{gan_lr: {loguniform: [1.0e-4, 1.0e-3], step: 1.0e-4}}"),
     ["search.gan_lr.step", "int and uniform"]),
    (doc(search="{latent_dim: {int: [0, 128], log: true}}"), ["search.latent_dim.log", "low >= 1"]),
    # Fixed and searched together; epochs belongs to the scheduler.
    (doc(fixed="{gan_lr: 1.0e-3}"), ["fixed.gan_lr", "both fixed and searched"]),
    (doc(fixed="{epochs: 3}"), ["fixed.epochs", "scheduler.max_epochs"]),
    (doc(search="{epochs: {int: [1, 5]}}"), ["search.epochs", "scheduler.max_epochs"]),
    # Values checked through TrialConfig.
    (doc(search="{gan_lr: {uniform: [-0.1, 0.1]}}"), ["search.gan_lr", "gan_lr=-0.1", "> 0"]),
    (doc(search="{gan: {choice: [cgan, wgan]}}"), ["search.gan", "'wgan'", "cgan, acgan"]),
    (doc(search="{d_real_fraction: {uniform: [0.5, 1.0]}}"),
     ["search.d_real_fraction", "0 < d_real_fraction < 1"]),
    (doc(search="{diffaugment: {choice: ['', blur]}}"), ["search.diffaugment", "'blur'", "color"]),
    (doc(search="{traditional_aug: {choice: [true, 1]}}"), ["search.traditional_aug", "wrong type"]),
    (doc(search="{traditional_aug: {choice: [none, autoaugment]}}"),
     ["search.traditional_aug", "'autoaugment'", "none, flip_translate, trivialaugment, randaugment"]),
    (doc(fixed="{traditional_aug: randaugment, randaugment_magnitude: 31}"),
     ["fixed.randaugment_magnitude", "31", "[0, 30]"]),
    (doc(search="{randaugment_ops: {int: [0, 2]}}"), ["search.randaugment_ops", "[1, 14]"]),
    (doc(fixed="{cutout: -4}"), ["fixed.cutout", ">= 0"]),
    (doc(fixed="{classifier: mlp, synthetic_ratio: 0.5}", search="{labeling: {choice: [pseudo, distill]}}"),
     ["search.labeling", "'distill'", "teacher_ema"]),
    (doc(fixed="{classifier: mlp, synthetic_ratio: 0.5}",
         search="{labeling: {choice: [pseudo, distill]}, gan: {choice: [cgan, acgan]}}"),
     ["search.labeling", "teacher_ema"]),
    (doc(fixed="{d_real_fraction: 1.5}"), ["fixed.d_real_fraction", "0 < d_real_fraction < 1"]),
    (doc(fixed="{classifier: vgg}"), ["fixed.classifier", "'vgg'", "mlp, cnn, resnet, airbench"]),
    (doc(fixed="{batch_size: 0}"), ["fixed.batch_size", ">= 1"]),
    # Conditions.
    (doc(search="{diffaugment: {choice: ['', cutout], when: {gan_ark: dcgan}}, gan_arch: {choice: [mlp]}}"),
     ["search.diffaugment.when.gan_ark", "did you mean 'gan_arch'"]),
    (doc(search="{diffaugment: {choice: ['', cutout], when: {gan_arch: dcgan}}, gan_arch: {choice: [mlp]}}"),
     ["search.diffaugment.when.gan_arch", "can never be 'dcgan'", "valid: 'mlp'"]),
    (doc(fixed="{gan_arch: mlp}", search="{diffaugment: {choice: ['', cutout], when: {gan_arch: dcgan}}}"),
     ["search.diffaugment.when.gan_arch", "can never be 'dcgan'", "(fixed)"]),
    (doc(search="{diffaugment: {choice: ['', cutout], when: {gan_arch: dcgan}}}"),
     ["search.diffaugment.when.gan_arch", "neither searched nor fixed"]),
    (doc(search="{d_steps: {int: [1, 3], when: {latent_dim: 48}}, latent_dim: {int: [32, 64], step: 32}}"),
     ["search.d_steps.when.latent_dim", "can never be 48"]),
    (doc(search="{d_steps: {int: [1, 3], when: {d_steps: 2}}}"), ["search.d_steps.when.d_steps", "itself"]),
    (doc(search="{d_steps: {int: [1, 3], when: {gan: cgan}}, gan: {choice: [cgan], when: {d_steps: 2}}}"),
     ["search.d_steps.when", "cycle"]),
    (doc(search="{d_steps: {int: [1, 3], when: {}}}"), ["search.d_steps.when", "empty"]),
    # Experiment, scheduler, metric, data.
    (doc(experiment="{name: t, resources: {gpu: 0.3}}"), ["experiment.resources.gpu", "1/k"]),
    (doc(experiment="{name: t, resources: {gpu: 1.5}}"), ["experiment.resources.gpu", "whole number"]),
    (doc(experiment="{name: t, resources: {cpu: 0}}"), ["experiment.resources.cpu", "greater than 0"]),
    (doc(experiment="{name: t, num_samples: 0}"), ["experiment.num_samples", "greater than or equal to 1"]),
    (doc(experiment="{name: t, max_concurrent: 0}"),
     ["experiment.max_concurrent", "greater than or equal to 1"]),
    (doc(scheduler="{max_epochs: 4, grace_period: 5}"), ["scheduler.grace_period", "1 <= grace_period <= 4"]),
    (doc(scheduler="{max_epochs: 4, reduction_factor: 1}"), ["scheduler.reduction_factor", "greater than 1"]),
    (doc(scheduler="{max_epochs: 0}"), ["scheduler.max_epochs", "greater than or equal to 1"]),
    (doc(experiment="{name: t, max_failures: -2}"), ["experiment.max_failures", "valid: an integer >= -1 (-1 = retry"]),
    (doc(experiment="{name: t, resources: {cpu: 0}}"), ["experiment.resources.cpu", "valid: a number > 0"]),
    (doc(scheduler="{max_epochs: 4, grace_period: 0}"), ["scheduler.grace_period", "valid: an integer >= 1 (at most"]),
    (doc(search="{latent_dim: {int: [32.5, 64]}}"), ["search.latent_dim.int.0", "valid: [low, high] integers"]),
    (doc(metric="{name: val_accuracy}"), ["metric.name", "did you mean 'val_acc'", "val_loss"]),
    (doc(metric="{name: val_acc, mode: maximize}"), ["metric.mode", "max, min"]),
    (doc(metric="{name: val_acc, mode: min}"), ["metric.mode", "valid: max"]),
    (doc(data="{name: cifar}"), ["data.name", "cifar10", "fashion_mnist"]),
    (doc(data="{name: digits, val_fraction: 1.5}"), ["data.val_fraction", "(0, 1)"]),
]


@pytest.mark.parametrize(("text", "fragments"), BAD, ids=[str(index) for index in range(len(BAD))])
def test_bad_space_is_one_clear_space_error(tmp_path, text, fragments):
    path = write(tmp_path, text)
    with pytest.raises(SpaceError) as error:
        load_space(path)
    message = str(error.value)
    assert message.startswith(str(path)) and "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize("model", [Resources, Sampler, ExperimentSection, Metric, Scheduler, Dist])
def test_every_limited_field_states_its_limits_in_its_hint(model):
    """A field's `valid:` hint is read from its type and Field limits (schema.describe), so the two cannot drift."""
    for name, field in model.model_fields.items():
        bounds = [f"{sign} {getattr(item, bound)}" for item in field.metadata
                  for bound, sign in {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}.items() if hasattr(item, bound)]
        for bound in bounds:
            assert bound in describe(field), f"{model.__name__}.{name}: {bound!r} not in {describe(field)!r}"
        if field.annotation in (int, float, bool):
            assert describe(field) is not None, f"{model.__name__}.{name} has no hint"


RAW = [
    ("search: {gan_lr: {choice: [0.001]}}\nfixed: {}\nsearch: {}\n", [":3", "duplicate key 'search'"]),
    (doc(search="\n  gan_lr: {choice: [0.001]}\n  gan_lr: {choice: [0.002]}"),
     [":7", "duplicate key 'gan_lr'"]),
    ("experiment: {name: t\ndata: [\n", ["invalid YAML"]),
    ("experiment: !!python/object/apply:os.system ['true']\n", [":1", "unsupported YAML tag", "plain YAML"]),
    ("", ["empty"]),
    ("# only a comment\n", ["empty"]),
    ("- a\n- b\n", ["not a mapping"]),
    ("just text\n", ["not a mapping"]),
]


@pytest.mark.parametrize(("text", "fragments"), RAW, ids=[str(index) for index in range(len(RAW))])
def test_bad_yaml_is_one_clear_space_error(tmp_path, text, fragments):
    path = write(tmp_path, text)
    with pytest.raises(SpaceError) as error:
        load_space(path)
    message = str(error.value)
    assert message.startswith(str(path)) and "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_missing_file_is_a_space_error(tmp_path):
    with pytest.raises(SpaceError, match="cannot read"):
        load_space(tmp_path / "nope.yaml")


@pytest.mark.parametrize("search, message", [
    ("{labeling: {choice: [pseudo, distill]}, teacher_ema: {choice: [0.0, 0.99]}}",
     "search.labeling and search.teacher_ema: a trial could draw labeling='distill' with teacher_ema=0.0"),
    ("{gan: {choice: [cgan, acgan]}, filter_candidates: {choice: [1, 2]}}",
     "search.gan and search.filter_candidates: a trial could draw gan='cgan' with filter_candidates=2"),
])
def test_searched_keys_that_cannot_combine_fail_at_load_time(tmp_path, search, message):
    with pytest.raises(SpaceError, match=re.escape(message) + ".*valid: a `when:`"):
        load_space(write(tmp_path, doc(fixed="{classifier: mlp, synthetic_ratio: 0.5}", search=search)))


@pytest.mark.parametrize("search, needed", [
    ("{gan_pretrain_epochs: {choice: [0, 5]}, gan_freeze: {choice: [false, true]}}",
     ("gan_freeze", "gan_pretrain_epochs")),
    ("{gan_loss: {choice: [bce, hinge]}, d_label_smoothing: {choice: [0.0, 0.1]}}", ("d_label_smoothing", "gan_loss")),
])
def test_keys_a_policy_cannot_use_are_never_drawn_so_they_never_conflict(tmp_path, search, needed):
    """gan_freeze needs pretraining, d_label_smoothing the bce loss (TrialConfig's `needs`): a trial without them
    does not draw the key, so the pairs that would conflict are never drawn and the space is valid as written."""
    spec = load_space(write(tmp_path, doc(fixed="{classifier: mlp, synthetic_ratio: 0.5}", search=search)))
    key, on = needed
    for params in sample(spec, 30):
        if key in params:
            assert params[on] == {"gan_freeze": 5, "d_label_smoothing": "bce"}[key]


def test_a_when_condition_makes_conflicting_keys_valid(tmp_path):
    spec = load_space(write(tmp_path, doc(search="""{gan_pretrain_epochs: {choice: [0, 5]},
  gan_freeze: {choice: [false, true], when: {gan_pretrain_epochs: 5}},
  gan_loss: {choice: [bce, hinge]}, d_label_smoothing: {choice: [0.0, 0.1], when: {gan_loss: bce}}}""")))
    # A searched partner is enough: freezing only ever meets pretraining of 3 or 6 passes.
    load_space(write(tmp_path, doc(search="{gan_pretrain_epochs: {choice: [3, 6]}, gan_freeze: {choice: [true]}}")))
    for params in sample(spec, 20):
        spec.trial_config(params)  # never an invalid combination


def test_importing_space_imports_neither_torch_nor_ray():
    """space.py validates YAML before Ray starts, on machines (a laptop driving a cluster) that may lack a GPU
    build of torch: importing it must stay light."""
    import subprocess
    import sys

    code = "import sys, ganaug.space; print(sorted({'torch', 'ray'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


def test_a_search_lacking_a_choice_evaluate_ablates_is_warned_about_unless_left_out_on_purpose(tmp_path):
    """evaluate runs every traditional_aug choice as a no-GAN baseline: a space that cannot draw one gets a warning
    before Ray (the search's best_no_gan is not tuned over it), unless experiment.left_out says why; evaluate then
    leaves it out too (results.selection reads the experiment's left_out)."""
    search = "{synthetic_ratio: {choice: [0.0, 0.5]}, traditional_aug: {choice: [none, flip_translate]}}"
    lacking = load_space(write(tmp_path, doc(search=search)))
    (warning,) = lacking.unsearched_ablations()
    assert "cannot draw traditional_aug trivialaugment, randaugment" in warning and "experiment.left_out" in warning
    reasons = "{trivialaugment: flips turn one digit into another, randaugment: the same}"
    declared = load_space(write(tmp_path, doc(experiment=f"{{name: t, left_out: {{traditional_aug: {reasons}}}}}",
                                              search=search), "declared.yaml"))
    assert declared.unsearched_ablations() == []
    assert declared.experiment.left_out["traditional_aug"]["trivialaugment"] == "flips turn one digit into another"
