"""Search-space YAML -> validated `SearchSpec`; its `define_by_run` is the Optuna space Ray Tune searches.

Everything here is checked before Ray starts: a bad file ends in one `SpaceError` line
"<file>: <dotted key path>: <problem>; valid: <...>". No torch and no ray at import time.

The format (required: experiment.name, data.name and at least one search key; the rest has defaults)::

    experiment:
      name: quickstart          # experiment folder name under storage (letters, digits, . _ -)
      storage: ~/ganaug_results # local folder (~ expanded, relative to the working directory) or
                                #   s3://bucket/prefix, gs://bucket/prefix (any scheme://, passed on as given)
      num_samples: 16           # trials Optuna proposes
      max_concurrent: 2         # trials running at once (ConcurrencyLimiter)
      seed: 0                   # seeds the Optuna sampler; every trial gets TrialConfig.seed = this seed
                                #   unless `seed` is fixed or searched
      resources: {cpu: 1, gpu: 0}   # per trial; cpu > 0; gpu is 0, a whole number or 1/k (0.5, 0.25, ...)
      max_failures: 1           # retries of an errored trial from its last checkpoint (-1 = forever)
      baselines_first: true     # first trials: the no-GAN policies (synthetic_ratio 0, one per traditional_aug
                                #   choice, other keys at their defaults or midpoints); count toward num_samples
      sampler:                  # Optuna's TPESampler (README: "The searcher")
        n_startup_trials: null  # random trials before TPE models the results; null: num_samples // 4, 2..10
        multivariate: true      # one joint density over the searched keys, not one per key
        group: true             # multivariate per group of keys drawn together (`when:` blocks); needs multivariate
        constant_liar: true     # running trials count as poor results, so concurrent trials spread out
    data:                       # DataConfig keys (ganaug.data), name required: name, root, download,
      name: digits              #   image_size, grayscale, test_fraction, val_fraction, samples_per_class, ...
    metric: {name: val_acc, mode: max}   # val_acc | val_top5 | val_loss | train_acc; mode defaults to the
                                         #   metric's direction (min for val_loss) and may not contradict it
    scheduler:                  # ASHA on `epoch`
      max_epochs: 12            # also TrialConfig.epochs, so `epochs` may not appear in fixed or search
      grace_period: 4           # 1 <= grace_period <= max_epochs (default: a third of max_epochs, rounded up)
      reduction_factor: 3       # > 1 (default 3)
    fixed:                      # TrialConfig keys held constant in every trial
      classifier: mlp
    search:                     # TrialConfig keys searched; at least one; exactly one distribution each
      gan_lr: {loguniform: [1.0e-4, 1.0e-3]}         # float, log scale, 0 < low < high
      d_real_fraction: {uniform: [0.25, 0.75]}       # float, low < high, optional step
      latent_dim: {int: [32, 128], step: 32}         # integer; optional step (default 1) or log: true
      synthetic_ratio: {choice: [0.0, 0.5, 1.0]}     # any scalars (strings, numbers, booleans)
      gan_arch: {choice: [mlp, dcgan]}
      diffaugment: {choice: ["", "translation", "color,translation,cutout"], when: {gan_arch: dcgan}}

`classifier` may also name any PyTorch model: torchvision:NAME or package.module:factory. Its factory's other
arguments are `classifier_kwargs`: a mapping under fixed (`classifier_kwargs: {depth: 3}`), or one flat key per
argument, fixed or searched (`classifier_kwargs.depth: {choice: [2, 3]}`). Imports are checked at load time,
and `check_classifier` builds the model on a blank batch once the dataset's shape is known.

`when: {key: value}` or `when: {key: [v1, v2]}` (several keys: all must hold): the key is only
searched in trials where that other searched or fixed key has one of those values; elsewhere the
TrialConfig default applies. Every fixed value and every choice / range end is checked through
`TrialConfig.from_dict`, so out-of-range values and unknown registry keys fail at load time.
Floats may be written 1e-4 (plain PyYAML would read that as a string).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ganaug.config import KWARGS_PREFIX, ConfigError, TrialConfig, condition_names, did_you_mean, is_import_path
from ganaug.errors import InputError


class SpaceError(InputError):
    """A search-space file is not valid; the one-line message names the file, the key and what would be."""


SECTIONS = ("experiment", "data", "metric", "scheduler", "fixed", "search")
OVERRIDES = ("name", "storage", "num_samples", "max_concurrent")  # experiment keys the CLI may override
SCALARS = (str, int, float, bool, type(None))  # what Optuna's suggest_categorical stores


# ------------------------------------------------------------------------------------------------
# The schema. Strict: YAML gives real types, so "16" for an int is a mistake worth reporting.

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Resources(_Model):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


class Sampler(_Model):
    """Optuna TPESampler settings (tune.make_searcher); README's "The searcher" says what each does."""

    n_startup_trials: int | None = Field(None, ge=0)  # None -> num_samples // 4, clipped to 2..10
    multivariate: bool = True
    group: bool | None = None  # None -> multivariate's value (group needs multivariate)
    constant_liar: bool = True


class Experiment(_Model):
    name: str
    storage: str = "~/ganaug_results"
    num_samples: int = Field(16, ge=1)
    max_concurrent: int = Field(2, ge=1)
    seed: int = Field(0, ge=0)
    resources: Resources = Field(default_factory=Resources)
    max_failures: int = Field(1, ge=-1)
    reuse_actors: bool = True
    baselines_first: bool = True
    sampler: Sampler = Field(default_factory=Sampler)


class Metric(_Model):
    name: str = "val_acc"
    mode: str | None = None  # None -> the metric's own direction (METRICS)


class Scheduler(_Model):
    max_epochs: int = Field(TrialConfig.epochs, ge=1)
    grace_period: int | None = Field(None, ge=1)  # None -> ceil(max_epochs / 3): see _check_scheduler
    reduction_factor: float = Field(3.0, gt=1)


class Dist(_Model):
    """One searched key: exactly one of choice / uniform / loguniform / int, plus step / log / when."""

    choice: list[Any] | None = None
    uniform: list[float] | None = Field(None, min_length=2, max_length=2)
    loguniform: list[float] | None = Field(None, min_length=2, max_length=2)
    int_: list[int] | None = Field(None, alias="int", min_length=2, max_length=2)
    step: float | None = None
    log: bool = False
    when: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        return next(kind for kind in DISTRIBUTIONS if self._get(kind) is not None)

    @property
    def values(self) -> list[Any]:
        """Choice values, or the two ends of a range: what TrialConfig must accept."""
        return list(self._get(self.kind))

    def _get(self, kind: str) -> Any:
        return getattr(self, "int_" if kind == "int" else kind)

    def can_take(self, value: Any) -> bool:
        """Whether a suggestion from this distribution can equal `value` (for `when`)."""
        if self.kind == "choice":
            return any(_same(value, choice) for choice in self.choice)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        low, high = self.values
        if not low <= value <= high:
            return False
        if self.kind == "int":
            return float(value).is_integer() and (value - low) % int(self.step or 1) == 0
        if self.kind == "uniform" and self.step:
            return abs((value - low) / self.step - round((value - low) / self.step)) < 1e-6
        return True

    def suggest(self, trial: Any, key: str) -> Any:
        return DISTRIBUTIONS[self.kind](trial, key, self)


class SearchSpec(_Model):
    """A validated search space; build it with `load_space`."""

    path: str
    experiment: Experiment
    data: dict[str, Any]
    metric: Metric = Field(default_factory=Metric)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    fixed: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, Dist]

    def define_by_run(self, trial: Any) -> dict[str, Any]:
        """Suggest every searched key for an Optuna trial (Ray's OptunaSearch `space=`).

        Keys come in dependency order (a `when` key after the keys it depends on); a key whose
        condition fails is not suggested, so Optuna never sees a value that has no effect. Returns
        {}: fixed keys are added by `trial_config`, not stored in the study.
        """
        current = {**TrialConfig().to_dict(), **self.fixed}
        for key in search_order(self.search):
            dist = self.search[key]
            if dist.when is None or _holds(dist.when, current):
                current[key] = dist.suggest(trial, key)
        return {}

    def trial_config(self, params: dict[str, Any]) -> TrialConfig:
        """TrialConfig of one trial: defaults <- fixed <- searched params; epochs = scheduler.max_epochs."""
        values = {**self.fixed, **params, "epochs": self.scheduler.max_epochs}
        if "seed" not in self.fixed and "seed" not in self.search:
            values["seed"] = self.experiment.seed
        return TrialConfig.from_dict(values, where=f"{self.path}: trial")

    def baseline_points(self) -> list[dict[str, Any]]:
        """The no-GAN policies a search runs first (experiment.baselines_first), as Optuna params.

        One per traditional_aug value the space can draw, each with synthetic_ratio 0 and every other searched
        key at its TrialConfig default when the space can draw it, else the middle of its choices or range. A
        fair search tunes the baseline with the same budget as the GAN policies; chance alone may never draw
        synthetic_ratio 0. Empty when baselines_first is off or synthetic_ratio is not searched with 0 in reach.
        """
        ratio = self.search.get("synthetic_ratio")
        if not self.experiment.baselines_first or ratio is None or not ratio.can_take(0.0):
            return []
        zero = next((c for c in ratio.choice if _same(c, 0.0) or _same(c, 0)), 0.0) if ratio.kind == "choice" else 0.0
        augment = self.search.get("traditional_aug")
        choices = augment.choice if augment is not None and augment.kind == "choice" and augment.when is None \
            else [None]
        points = []
        for choice in choices:
            current, point = {**TrialConfig().to_dict(), **self.fixed}, {}
            for key in search_order(self.search):
                dist = self.search[key]
                if dist.when is not None and not _holds(dist.when, current):
                    continue
                value = zero if key == "synthetic_ratio" else choice if key == "traditional_aug" \
                    else _middle(dist, getattr(TrialConfig, key, None))
                current[key] = point[key] = value
            points.append(point)
        return points

    def check_image_size(self, height: int, width: int) -> None:
        """Keys whose valid range depends on the dataset's images (cutout), checked once the data is loaded."""
        side = min(height, width)
        where = "fixed.cutout" if "cutout" in self.fixed else "search.cutout"
        values = [self.fixed["cutout"]] if "cutout" in self.fixed else \
            self.search["cutout"].values if "cutout" in self.search else []
        if any(value > side for value in values):
            raise SpaceError(f"{self.path}: {where}: {max(values)} px is larger than the dataset's {height}x{width} "
                             f"images; valid: 0 (off) to {side}")

    def check_conditions(self, data_spec) -> None:
        """Every gan_conditions value the space can draw names attribute columns the dataset has (attributes.csv),
        checked once the data is loaded, before Ray starts."""
        available = tuple(getattr(data_spec, "attribute_names", ()))
        where = "fixed.gan_conditions" if "gan_conditions" in self.fixed else "search.gan_conditions"
        for value in self._reachable("gan_conditions"):
            names = condition_names(",".join(map(str, value)) if isinstance(value, list) else value or "")
            missing = [name for name in names if name not in available]
            if missing:
                valid = ", ".join(available) if available else "none: the dataset has no attributes (an imagefolder " \
                    "split folder's attributes.csv holds them)"
                raise SpaceError(f"{self.path}: {where}: {', '.join(map(repr, missing))} "
                                 f"{'is' if len(missing) == 1 else 'are'} not an attribute column of the dataset; "
                                 f"valid columns: {valid}")

    def check_classifier(self, data_spec) -> None:
        """Build every torchvision:/import-path classifier the space can draw and run it on two blank images of the
        dataset's shape (ganaug.classifiers.check_classifier), before Ray starts; SpaceError names the key.

        Once with each searched classifier_kwargs entry at its first value (a range: its low end) and once more per
        other value (a range: its high end), for each number of outputs the labelings need (all_in_one: K + 1),
        with split BatchNorm where synthetic_bn can be split. Built-in classifiers need no check.
        """
        from ganaug.classifiers import ClassifierError, check_classifier  # lazy: torch
        from ganaug.labeling import LABELERS

        num_classes = data_spec.num_classes
        outputs = sorted({LABELERS[labeling].num_outputs(num_classes) for labeling in self._reachable("labeling")})
        split_bn = "split" in self._reachable("synthetic_bn")
        fixed = TrialConfig.from_dict(self.fixed, combinations=False).classifier_kwargs
        for name in filter(is_import_path, self._reachable("classifier")):
            # The searched entries a trial with this classifier draws (a `when` on classifier may exclude some).
            searched = {key[len(KWARGS_PREFIX):]: dist.values for key, dist in self.search.items() if
                        key.startswith(KWARGS_PREFIX) and name in _as_list((dist.when or {}).get("classifier", name))}
            first = {**fixed, **{argument: values[0] for argument, values in searched.items()}}
            variants = [(None, first)] + [(f"{KWARGS_PREFIX}{argument}", {**first, argument: value})
                                          for argument, values in searched.items() for value in values[1:]]
            for varied, kwargs in variants:
                for num_outputs in outputs:
                    try:
                        check_classifier(name, data_spec, num_outputs, kwargs, split_bn=split_bn)
                    except ClassifierError as error:
                        # A build that only fails for another value of a searched entry: that entry is at fault.
                        key = varied if varied is not None and error.key == "classifier" else error.key
                        context = f" ({num_classes} classes + 1 for labeling all_in_one)" \
                            if num_outputs != num_classes else ""
                        debug = " (--debug shows its traceback)" if error.__cause__ is not None else ""
                        raise SpaceError(f"{self.path}: {self._place(key, name)}: {error.problem}{context}{debug}; "
                                         f"valid: {error.valid}") from error

    def _reachable(self, key: str) -> list[Any]:
        """Every value `key` can take in a trial: fixed, searched (choices or range ends, plus the default where
        a `when` fails) or the default."""
        if key in self.fixed:
            return [self.fixed[key]]
        dist = self.search.get(key)
        if dist is None:
            return [getattr(TrialConfig, key)]
        return list(dict.fromkeys([*dist.values, *([getattr(TrialConfig, key)] if dist.when else [])]))

    def _place(self, key: str, classifier: str) -> str:
        """Where a key is set in this file, e.g. fixed.classifier or search.classifier_kwargs.depth."""
        if key == "classifier" and "classifier" in self.search:
            return f"search.classifier.choice.{self.search['classifier'].values.index(classifier)}"
        if key in self.search:
            return f"search.{key}"
        return f"fixed.{key}"

    def smoke(self) -> SearchSpec:
        """A tiny copy for --smoke-test: 2 trials of 2 epochs on at most 20 images per class.

        The name gets a "-smoke" suffix so a smoke run never mixes into (or resumes) the real experiment. No
        baselines are enqueued: two no-GAN trials would leave the GAN half of the path unchecked.
        """
        raw = self.model_dump(by_alias=True)
        experiment = raw["experiment"]
        experiment.update(name=f"{experiment['name']}-smoke", num_samples=2,
                          max_concurrent=min(experiment["max_concurrent"], 2), baselines_first=False)
        raw["scheduler"].update(max_epochs=2, grace_period=1)
        samples = raw["data"].get("samples_per_class")
        raw["data"]["samples_per_class"] = 20 if samples is None else min(samples, 20)
        return _build(raw, self.path)

    def storage_uri(self) -> str:
        """Absolute local folder (~ expanded), or the URI (s3://, gs://, ...) as given."""
        if _is_uri(self.experiment.storage):
            return self.experiment.storage
        return os.path.abspath(os.path.expanduser(self.experiment.storage))

    def experiment_dir(self) -> str:
        """Where Tune writes this experiment: storage/name."""
        storage = self.storage_uri()
        if _is_uri(storage):
            return f"{storage.rstrip('/')}/{self.experiment.name}"
        return os.path.join(storage, self.experiment.name)


# ------------------------------------------------------------------------------------------------
# Loading.

def load_space(path: str | Path, **overrides: Any) -> SearchSpec:
    """Read, parse and validate a search-space YAML; `overrides` (CLI flags, None = not given) replace
    experiment.name / storage / num_samples / max_concurrent and are validated like the file."""
    file = str(path)
    for key in overrides:
        if key not in OVERRIDES:
            raise SpaceError(f"{file}: override {key!r} is not supported; valid: {', '.join(OVERRIDES)}")
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise SpaceError(f"{file}: cannot read the search space ({err.strerror or err}); "
                         f"valid: a readable YAML file such as search_spaces/quickstart.yaml") from None
    raw = _parse_yaml(text, file)
    if raw is None:
        raise SpaceError(f"{file}: the file is empty; valid: a mapping with sections {', '.join(SECTIONS)}")
    if not isinstance(raw, dict):
        raise SpaceError(f"{file}: the top level is a {type(raw).__name__}, not a mapping; "
                         f"valid: a mapping with sections {', '.join(SECTIONS)}")
    for key in raw:
        if key not in SECTIONS:
            raise SpaceError(f"{file}: {key}: unknown section{_unknown_hint(str(key), SECTIONS)}")
    if raw.get("search") is None or raw.get("search") == {}:
        raise SpaceError(f"{file}: search: search needs at least one key; "
                         f"valid: e.g. search: {{gan_lr: {{loguniform: [1.0e-4, 1.0e-3]}}}}")
    # A section left empty (`fixed:` with everything commented out) means "defaults".
    raw = {key: value for key, value in raw.items() if value is not None}
    given = {key: value for key, value in overrides.items() if value is not None}
    if given:
        experiment = raw.get("experiment", {})
        raw["experiment"] = {**experiment, **given} if isinstance(experiment, dict) else experiment
    return _build(raw, file, given)


def validate_storage(spec: SearchSpec) -> None:
    """Create the local storage folder and check it is writable; remote URIs are left to Ray."""
    if _is_uri(spec.experiment.storage):
        return
    folder = Path(spec.storage_uri())
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".ganaug-write-test-"):
            pass
    except OSError as err:
        raise SpaceError(
            f"{spec.path}: experiment.storage: cannot create or write {folder} ({err.strerror or err}); "
            "valid: a writable local folder, s3://bucket/prefix or gs://bucket/prefix"
        ) from None


def search_order(search: dict[str, Dist]) -> list[str]:
    """Searched keys in file order, except that a `when` key comes after the searched keys it depends on."""
    order: list[str] = []
    pending = list(search)
    while pending:
        ready = next((key for key in pending
                      if all(dep in order or dep not in search for dep in search[key].when or {})), None)
        if ready is None:  # only reachable for a cycle, which _check_when reports first
            raise SpaceError(f"search: `when` conditions form a cycle among {', '.join(pending)}")
        order.append(ready)
        pending.remove(ready)
    return order


class _Loader(yaml.SafeLoader):
    """safe_load that rejects duplicate keys (PyYAML silently keeps the last) and reads 1e-4 as a float."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)):
                continue  # unhashable keys: SafeLoader reports them itself
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key]})", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 wants a dot in floats, so "1e-4" would be a string; accept YAML 1.2 exponent floats.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _parse_yaml(text: str, file: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{file}:{mark.line + 1}" if mark else file
        problem = err.problem or str(err)
        if "could not determine a constructor" in problem:
            problem = f"unsupported YAML tag{problem.split('tag', 1)[1]}"
            raise SpaceError(f"{where}: {problem}; valid: plain YAML (mappings, lists, strings, numbers, "
                             "booleans, null)") from None
        context = f" {err.context}" if err.context and "duplicate" not in problem else ""
        raise SpaceError(f"{where}: invalid YAML: {problem}{context}") from None
    except yaml.YAMLError as err:
        raise SpaceError(f"{file}: invalid YAML: {err}") from None


def _build(raw: dict[str, Any], file: str, overrides: dict[str, Any] | None = None) -> SearchSpec:
    try:
        spec = SearchSpec.model_validate({**raw, "path": file})
    except ValidationError as err:
        raise SpaceError(_pydantic_message(err, file, overrides or {})) from None
    _check(spec)
    return spec


# ------------------------------------------------------------------------------------------------
# Checks that the schema alone cannot express. Each raises SpaceError naming file, key and what is valid.

def _check(spec: SearchSpec) -> None:
    _check_experiment(spec)
    _check_metric(spec)
    _check_scheduler(spec)
    _check_data(spec)
    _check_fixed(spec)
    for key, dist in spec.search.items():
        _check_dist(spec, key, dist)
    for key, dist in spec.search.items():
        if dist.when is not None:
            _check_when(spec, key, dist.when)
    _check_cycles(spec)
    _check_pairs(spec)
    _check_baselines(spec)
    _check_imports(spec)


def _check_experiment(spec: SearchSpec) -> None:
    name, file = spec.experiment.name, spec.path
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in (".", ".."):
        raise SpaceError(f"{file}: experiment.name: {name!r} is not a folder name; "
                         "valid: letters, digits, '.', '_', '-' (no '/')")
    if not spec.experiment.storage.strip():
        raise SpaceError(f"{file}: experiment.storage: empty; valid: a local folder or s3://bucket/prefix")
    gpu = spec.experiment.resources.gpu
    # Fractions must be 1/k so that k trials fill a GPU exactly; 0.3 would strand a tenth of every GPU.
    whole = gpu == 0 or (gpu >= 1 and gpu.is_integer())
    if not (whole or (gpu < 1 and abs(1 / gpu - round(1 / gpu)) < 1e-6)):
        raise SpaceError(f"{file}: experiment.resources.gpu: {gpu} GPUs per trial do not pack onto whole "
                         "GPUs; valid: 0, a whole number, or 1/k (0.5, 0.25, 0.2, 0.125, ...)")
    sampler = spec.experiment.sampler
    if sampler.group is None:
        sampler.group = sampler.multivariate
    if sampler.group and not sampler.multivariate:  # Optuna's own rule, raised here before Ray starts
        raise SpaceError(f"{file}: experiment.sampler.group: true needs multivariate: true; valid: "
                         "multivariate: true with group: true or false, or group: false")


def _check_metric(spec: SearchSpec) -> None:
    metric, file = spec.metric, spec.path
    if metric.name not in METRICS:
        raise SpaceError(f"{file}: metric.name: {metric.name!r} is not a reported metric"
                         f"{_unknown_hint(metric.name, METRICS)}")
    if metric.mode is None:
        metric.mode = METRICS[metric.name]
    if metric.mode not in ("max", "min"):
        raise SpaceError(f"{file}: metric.mode: {metric.mode!r} is not a mode; valid: max, min")
    if metric.mode != METRICS[metric.name]:
        raise SpaceError(f"{file}: metric.mode: {metric.mode} would optimise {metric.name} the wrong way; "
                         f"valid: {METRICS[metric.name]}")


def _check_scheduler(spec: SearchSpec) -> None:
    scheduler = spec.scheduler
    if scheduler.grace_period is None:
        # One rung, a third of the way: augmentation and other regularisers start slow and pay off late, and an
        # earlier rung stops them (benchmarks/search_efficiency.py, replaying ASHA on full learning curves: a
        # grace period of 1 stopped 52 % of the policies that ended in the top quarter, and every augmented one;
        # a third of max_epochs, 3 % and none).
        scheduler.grace_period = math.ceil(scheduler.max_epochs / 3)
    if scheduler.grace_period > scheduler.max_epochs:
        raise SpaceError(f"{spec.path}: scheduler.grace_period: {scheduler.grace_period} > max_epochs "
                         f"{scheduler.max_epochs}; valid: 1 <= grace_period <= {scheduler.max_epochs}")
    for section in ("fixed", "search"):
        if "epochs" in getattr(spec, section):
            raise SpaceError(f"{spec.path}: {section}.epochs: epochs is set by scheduler.max_epochs; "
                             "valid: remove it and set scheduler.max_epochs")


def _check_data(spec: SearchSpec) -> None:
    from ganaug.data import DataConfig  # lazy: it imports torch
    from ganaug.datasets import DATASETS

    file, data = spec.path, spec.data
    known = [f.name for f in dataclasses.fields(DataConfig)]
    for key in data:
        if key not in known:
            raise SpaceError(f"{file}: data.{key}: unknown key{_unknown_hint(key, known)}")
    if "name" not in data:
        raise SpaceError(f"{file}: data.name: missing; valid: {', '.join(DATASETS)}")
    if data["name"] not in DATASETS:
        raise SpaceError(f"{file}: data.name: unknown dataset {data['name']!r}"
                         f"{_unknown_hint(str(data['name']), DATASETS)}")
    try:  # DataConfig checks every value; its messages start with "data.<key>=..."
        DataConfig(**data)
    except (ValueError, TypeError) as err:  # DataError is a ValueError
        raise SpaceError(f"{file}: {err}") from None


def _check_fixed(spec: SearchSpec) -> None:
    file = spec.path
    known = TrialConfig.keys()
    nested = spec.fixed.get("classifier_kwargs")
    # classifier_kwargs: {depth: 3} and classifier_kwargs.depth: 3 are the same key, fixed or searched.
    flat = [*(f"{KWARGS_PREFIX}{name}" for name in (nested if isinstance(nested, dict) else {})),
            *(key for key in spec.fixed if str(key).startswith(KWARGS_PREFIX))]
    for key in flat:
        if key in spec.search or flat.count(key) > 1:
            twice = "both fixed and searched" if key in spec.search else "given twice under fixed"
            raise SpaceError(f"{file}: fixed.{key}: {key} is {twice}; valid: keep it in one place")
    for key, value in spec.fixed.items():
        if key not in known and not str(key).startswith(KWARGS_PREFIX):
            raise SpaceError(f"{file}: fixed.{key}: unknown key{_unknown_hint(key, known)}")
        if key in spec.search:
            raise SpaceError(f"{file}: fixed.{key}: {key} is both fixed and searched; "
                             "valid: keep it in one of fixed or search")
        # The key's own value only: the rules between keys come with the whole section, just below.
        _config_check({key: value}, f"{file}: fixed.{key}", combinations=False)
    # A searched classifier is drawn with the fixed classifier_kwargs: check them with one of its import paths.
    classifiers = spec.search["classifier"].values if "classifier" in spec.search else []
    drawn = {"classifier": next(filter(is_import_path, classifiers), classifiers[0])} if classifiers else {}
    _config_check({**drawn, **spec.fixed}, f"{file}: fixed")


def _check_dist(spec: SearchSpec, key: str, dist: Dist) -> None:
    where = f"{spec.path}: search.{key}"
    known = {f.name: f for f in dataclasses.fields(TrialConfig)}
    if key == "classifier_kwargs":
        raise SpaceError(f"{where}: a factory's arguments are searched one by one; valid: e.g. "
                         "classifier_kwargs.depth: {choice: [2, 3]}")
    argument = key.startswith(KWARGS_PREFIX)  # any scalar distribution: the factory's signature decides
    if key not in known and not argument:
        raise SpaceError(f"{where}: unknown key{_unknown_hint(key, known)}")
    kinds = [kind for kind in DISTRIBUTIONS if dist._get(kind) is not None]
    if len(kinds) != 1:
        raise SpaceError(f"{where}: needs exactly one of {', '.join(DISTRIBUTIONS)}, got "
                         f"{', '.join(kinds) or 'none'}; valid: e.g. {{uniform: [0.25, 0.75]}} "
                         "(constants go under fixed:)")
    kind = kinds[0]
    if dist.log and kind != "int":
        raise SpaceError(f"{where}.log: log only applies to int; valid: loguniform for float ranges")
    if dist.step is not None and kind not in ("int", "uniform"):
        raise SpaceError(f"{where}.step: step only applies to int and uniform; valid: remove step")
    field_type = None if argument else type(known[key].default)
    if field_type in (bool, str) and kind != "choice":
        raise SpaceError(f"{where}.{kind}: {key} is a {field_type.__name__}; valid: choice")
    if field_type is int and kind in ("uniform", "loguniform"):
        raise SpaceError(f"{where}.{kind}: {kind} gives floats but {key} is an int; valid: int, choice")
    if kind == "choice":
        _check_choice(where, dist.choice)
    else:
        _check_range(where, kind, dist)
    for value in dist.values:
        # Each value on its own; the rules between keys are checked pairwise, with what the others can be
        # (_check_pairs): gan_freeze: true is fine where gan_pretrain_epochs is searched over [5, 10].
        _config_check({**spec.fixed, **_condition(spec, dist), key: value}, f"{where}.{kind}", combinations=False)


def _check_imports(spec: SearchSpec) -> None:
    """Every torchvision:/import-path classifier the space names resolves to a callable (its module imports and
    has the attribute); building it waits for the dataset's shape (SearchSpec.check_classifier)."""
    if "classifier" in spec.fixed:
        places = [("fixed.classifier", spec.fixed["classifier"])]
    else:
        values = spec.search["classifier"].values if "classifier" in spec.search else []
        places = [(f"search.classifier.choice.{index}", value) for index, value in enumerate(values)]
    places = [(place, value) for place, value in places if is_import_path(value)]
    if not places:
        return
    from ganaug.classifiers import ClassifierError, resolve_classifier  # lazy: torch

    for place, value in places:
        try:
            resolve_classifier(value)
        except ClassifierError as error:
            debug = " (--debug shows its traceback)" if error.__cause__ is not None else ""
            raise SpaceError(f"{spec.path}: {place}: {error.problem}{debug}; valid: {error.valid}") from error


def _check_choice(where: str, choices: list[Any]) -> None:
    if not choices:
        raise SpaceError(f"{where}.choice: empty choice list; valid: a list of at least one value")
    for index, value in enumerate(choices):
        if not isinstance(value, SCALARS):
            raise SpaceError(f"{where}.choice.{index}: {value!r} is a {type(value).__name__}; "
                             "valid: strings, numbers, booleans or null")
        if any(_same(value, other) for other in choices[:index]):
            raise SpaceError(f"{where}.choice.{index}: {value!r} appears twice; valid: distinct values")


def _check_range(where: str, kind: str, dist: Dist) -> None:
    low, high = dist.values
    if not (math.isfinite(low) and math.isfinite(high)):
        raise SpaceError(f"{where}.{kind}: [{low}, {high}] is not finite; valid: [low, high] finite numbers")
    if low >= high:
        raise SpaceError(f"{where}.{kind}: low {low} >= high {high}; valid: [low, high] with low < high")
    if kind == "loguniform" and low <= 0:
        raise SpaceError(f"{where}.loguniform: low {low} <= 0; valid: 0 < low < high (log scale)")
    if kind == "int":
        if dist.step is not None and not (float(dist.step).is_integer() and dist.step >= 1):
            raise SpaceError(f"{where}.step: {dist.step} is not a whole number >= 1; valid: 1, 2, ...")
        step = int(dist.step or 1)
        if dist.log and (step != 1 or low < 1):
            raise SpaceError(f"{where}.log: log: true needs low >= 1 and no step; valid: drop step or log")
        if (high - low) % step:
            raise SpaceError(f"{where}.step: high - low = {high - low} is not a multiple of step {step}; "
                             f"valid: e.g. int: [{low}, {low + step * ((high - low) // step)}]")
    if kind == "uniform" and dist.step is not None:
        steps = (high - low) / dist.step if dist.step > 0 else -1
        if steps < 1 or abs(steps - round(steps)) > 1e-6:
            raise SpaceError(f"{where}.step: {dist.step} does not divide high - low = {high - low}; "
                             "valid: a step > 0 that divides the range")


def _check_when(spec: SearchSpec, key: str, when: dict[str, Any]) -> None:
    where = f"{spec.path}: search.{key}.when"
    if not when:
        raise SpaceError(f"{where}: empty; valid: {{other_key: value}} or {{other_key: [value, ...]}}")
    defaults = TrialConfig().to_dict()
    for other, wanted in when.items():
        if other == key:
            raise SpaceError(f"{where}.{other}: a key cannot depend on itself; valid: another searched "
                             "or fixed key")
        if other not in defaults:
            raise SpaceError(f"{where}.{other}: unknown key{_unknown_hint(other, defaults)}")
        if other not in spec.search and other not in spec.fixed:
            others = [name for name in [*spec.search, *spec.fixed] if name != key]
            raise SpaceError(f"{where}.{other}: {other} is neither searched nor fixed, so it is always "
                             f"{defaults[other]!r}; valid: {', '.join(others)}")
        values = _as_list(wanted)
        if not values:
            raise SpaceError(f"{where}.{other}: empty list; valid: a value or a list of values")
        for value in values:
            if not _can_take(spec, other, value, defaults[other]):
                raise SpaceError(f"{where}.{other}: {other} can never be {value!r}; "
                                 f"valid: {_possible(spec, other, defaults[other])}")


def _condition(spec: SearchSpec, dist: Dist) -> dict[str, Any]:
    """Values under which a conditional key is searched: each `when` key at its first wanted value (a key
    searched only when gan_pretrain_epochs is 10 is checked with gan_pretrain_epochs 10, not the default 0)."""
    return {other: _as_list(wanted)[0] for other, wanted in (dist.when or {}).items()
            if _as_list(wanted) and other in set(TrialConfig.keys())}


def _check_pairs(spec: SearchSpec) -> None:
    """Every pair of searched keys, at every combination of their choices (or range ends) that a trial can
    draw together, makes a valid TrialConfig: cross-key rules (gan_freeze needs pretraining, hinge has no
    label smoothing) fail here, naming both keys, instead of as an errored trial."""
    keys = list(spec.search)

    def valid(values: dict[str, Any], pair: tuple[str, str]) -> ConfigError | None:
        try:
            TrialConfig.from_dict(_with_dependents(spec, {**spec.fixed, **values}, pair))
        except ConfigError as err:
            return err
        return None

    # Each value alone first: one that no other searched key's value can make valid (labeling distill with no
    # teacher_ema anywhere) is that key's fault; one that some value rescues is left to the pairs below.
    for key in keys:
        dist = spec.search[key]
        for value in dist.values:
            error = valid({**_condition(spec, dist), key: value}, (key, key))
            rescued = error is None or any(
                valid({**_condition(spec, dist), key: value, other: other_value}, (key, other)) is None
                for other in keys if other != key for other_value in spec.search[other].values)
            if not rescued:
                reason = str(error).split(": ", 1)[1]
                raise SpaceError(f"{spec.path}: search.{key}: a trial could draw {key}={value!r}, which is invalid "
                                 f"({reason}); valid: choices that combine with the fixed keys") from None
    for index, first in enumerate(keys):
        for second in keys[index + 1:]:
            dists = {first: spec.search[first], second: spec.search[second]}
            context = {**spec.fixed, **_condition(spec, dists[first]), **_condition(spec, dists[second])}
            for value_a in dists[first].values:
                for value_b in dists[second].values:
                    values = {**context, first: value_a, second: value_b}
                    # Skip combinations a `when` rules out (one key conditioned on the other's value).
                    if not all(_holds(dist.when, values) for dist in dists.values() if dist.when):
                        continue
                    try:
                        TrialConfig.from_dict(_with_dependents(spec, values, (first, second)))
                    except ConfigError as err:
                        reason = str(err).split(": ", 1)[1]
                        raise SpaceError(
                            f"{spec.path}: search.{first} and search.{second}: a trial could draw {first}="
                            f"{value_a!r} with {second}={value_b!r}, which is invalid ({reason}); valid: a "
                            f"`when:` on one of them, or choices that always combine") from None


def _with_dependents(spec: SearchSpec, values: dict[str, Any], pair: tuple[str, str]) -> dict[str, Any]:
    """`values` plus, for every other searched key whose `when` holds under them, that key's first value: a trial
    that draws the pair also draws the keys conditioned on it (labeling: distill brings its teacher_ema along)."""
    values = {**TrialConfig().to_dict(), **values}
    for key in search_order(spec.search):
        dist = spec.search[key]
        if key not in pair and dist.when is not None and _holds(dist.when, values):
            values[key] = dist.values[0]
    return values


def _check_baselines(spec: SearchSpec) -> None:
    """The enqueued baseline policies are valid trials (their midpoints could break a rule between keys)."""
    for point in spec.baseline_points():
        try:
            TrialConfig.from_dict({**spec.fixed, **point})
        except ConfigError as err:
            reason = str(err).split(": ", 1)[1]
            raise SpaceError(f"{spec.path}: experiment.baselines_first: the baseline policy {point} is invalid "
                             f"({reason}); valid: baselines_first: false, or defaults that combine") from None


def _middle(dist: Dist, default: Any) -> Any:
    """A baseline's value of a searched key: the TrialConfig default when the space can draw it, else the
    middle choice, or the middle of the range (geometric for log scales, on the step grid)."""
    if dist.can_take(default):
        return default
    if dist.kind == "choice":
        return dist.choice[len(dist.choice) // 2]
    low, high = dist.values
    if dist.kind == "loguniform" or (dist.kind == "int" and dist.log):
        middle = math.sqrt(low * high)
    else:
        middle = (low + high) / 2
    if dist.kind == "int":
        step = int(dist.step or 1)
        return int(low + round((middle - low) / step) * step)
    if dist.step:
        return low + round((middle - low) / dist.step) * dist.step
    return middle


def _check_cycles(spec: SearchSpec) -> None:
    def visit(key: str, chain: list[str]) -> None:
        for dep in spec.search[key].when or {}:
            if dep in chain:
                cycle = " -> ".join([*chain[chain.index(dep):], dep])
                raise SpaceError(f"{spec.path}: search.{chain[0]}.when: conditions form a cycle {cycle}; "
                                 "valid: conditions that form a tree")
            if dep in spec.search:
                visit(dep, [*chain, dep])

    for key in spec.search:
        visit(key, [key])


def _can_take(spec: SearchSpec, key: str, value: Any, default: Any) -> bool:
    if key in spec.fixed:
        return _same(value, spec.fixed[key])
    dist = spec.search[key]
    # A conditional key keeps its default in trials where its own condition fails.
    return dist.can_take(value) or (dist.when is not None and _same(value, default))


def _possible(spec: SearchSpec, key: str, default: Any) -> str:
    if key in spec.fixed:
        return f"{spec.fixed[key]!r} (fixed)"
    dist = spec.search[key]
    text = ", ".join(map(repr, dist.choice)) if dist.kind == "choice" else f"{dist.kind} {dist.values}"
    return text + (f" or its default {default!r}" if dist.when is not None else "")


def _config_check(values: dict[str, Any], where: str, combinations: bool = True) -> None:
    try:
        TrialConfig.from_dict(values, where=where, combinations=combinations)
    except ConfigError as err:
        raise SpaceError(str(err)) from None


# ------------------------------------------------------------------------------------------------
# Helpers.

def _pydantic_message(err: ValidationError, file: str, overrides: dict[str, Any]) -> str:
    """First pydantic error as one line: file, dotted key path, problem and what would be valid."""
    first = err.errors()[0]
    loc = tuple(str(part) for part in first["loc"])
    dotted = ".".join(loc)
    if first["type"] == "extra_forbidden":
        return f"{file}: {dotted}: unknown key{_unknown_hint(loc[-1], _fields_at(loc[:-1]))}"
    problem = first["msg"]
    if first["type"] == "missing":
        problem = "missing (required)"
    elif first["type"] in ("model_type", "dict_type"):
        problem = f"expected a mapping, got {type(first['input']).__name__} {first['input']!r}"
    message = f"{file}: {dotted}: {problem}"
    # The hint for the most specific named key: "experiment.name", else e.g. "int" for search.x.int.0.
    named = [part for part in loc if not part.isdigit()]
    hint = _HINTS.get(".".join(named)) or (_HINTS.get(named[-1]) if named else None)
    if len(loc) == 2 and loc[0] == "search":
        hint = ("{choice: [...]}, {uniform: [low, high]}, {loguniform: [low, high]} or {int: [low, high]}; "
                "constants go under fixed:")
    if hint:
        message += f"; valid: {hint}"
    if len(loc) == 2 and loc[0] == "experiment" and loc[1] in overrides:
        message += f" (from the override {loc[1]}={overrides[loc[1]]!r})"
    return message


_HINTS = {
    "experiment": "a mapping with at least name:, e.g. {name: quickstart}",
    "experiment.name": "a folder name such as quickstart",
    "experiment.storage": "a local folder or s3://bucket/prefix",
    "experiment.num_samples": "an integer >= 1", "experiment.max_concurrent": "an integer >= 1",
    "experiment.seed": "an integer >= 0", "experiment.max_failures": "an integer >= -1 (-1 = retry forever)",
    "experiment.resources": "{cpu: 1, gpu: 0}", "cpu": "a number > 0", "gpu": "0, a whole number or 1/k",
    "metric": "{name: val_acc, mode: max}", "metric.name": "a reported metric such as val_acc",
    "metric.mode": "max, min", "scheduler": "{max_epochs: 12, grace_period: 2, reduction_factor: 3}",
    "max_epochs": "an integer >= 1", "grace_period": "an integer, 1 <= grace_period <= max_epochs",
    "reduction_factor": "a number > 1",
    "data": "a mapping of DataConfig keys, e.g. {name: digits}", "fixed": "a mapping of TrialConfig keys",
    "search": "a mapping of TrialConfig keys to distributions",
    "uniform": "[low, high] numbers", "loguniform": "[low, high] numbers > 0", "int": "[low, high] integers",
    "choice": "a list of values", "step": "a number > 0", "log": "true or false",
    "when": "{other_key: value} or {other_key: [value, ...]}",
}


def _fields_at(parent: tuple[str, ...]) -> list[str]:
    models = {(): SearchSpec, ("experiment",): Experiment, ("experiment", "resources"): Resources,
              ("experiment", "sampler"): Sampler,
              ("metric",): Metric, ("scheduler",): Scheduler}
    model = Dist if parent[:1] == ("search",) else models.get(parent)
    if model is None:
        return []
    return [field.alias or name for name, field in model.model_fields.items() if name != "path"]


def _unknown_hint(key: str, valid) -> str:
    valid = sorted(map(str, valid))
    close = did_you_mean(key, valid)
    listing = f"; valid: {', '.join(valid)}"
    return close + listing if "did you mean" in close else listing


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps True apart from 1 (YAML and Optuna both hand us bools and ints)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def _holds(when: dict[str, Any], values: dict[str, Any]) -> bool:
    """Whether every `when` key currently has one of its wanted values."""
    return all(any(_same(values[key], wanted) for wanted in _as_list(wanted_values))
               for key, wanted_values in when.items())


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_uri(storage: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", storage) is not None


# ------------------------------------------------------------------------------------------------
# Registries: how each distribution kind is suggested, and the reported metrics with their direction.

def _suggest_choice(trial: Any, key: str, dist: Dist) -> Any:
    return trial.suggest_categorical(key, dist.choice)


def _suggest_uniform(trial: Any, key: str, dist: Dist) -> float:
    return trial.suggest_float(key, *dist.uniform, step=dist.step)


def _suggest_loguniform(trial: Any, key: str, dist: Dist) -> float:
    return trial.suggest_float(key, *dist.loguniform, log=True)


def _suggest_int(trial: Any, key: str, dist: Dist) -> int:
    return trial.suggest_int(key, *dist.int_, step=int(dist.step or 1), log=dist.log)


DISTRIBUTIONS = {
    "choice": _suggest_choice,
    "uniform": _suggest_uniform,
    "loguniform": _suggest_loguniform,
    "int": _suggest_int,
}

METRICS = {  # name reported every epoch -> the direction that is better
    "val_acc": "max",
    "val_top5": "max",
    "val_loss": "min",
    "train_acc": "max",
}
