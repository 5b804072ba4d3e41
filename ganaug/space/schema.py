"""The schema of a search-space YAML: a strict pydantic model per section, how each distribution is suggested, and
the reported metrics. `describe` words a field's limits as a `valid:` hint, so each limit is written once, here.
"""

from __future__ import annotations

import importlib.util
import math
import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from ganaug.config import TrialConfig, depends_on
from ganaug.errors import InputError
from ganaug.metrics import OBJECTIVES, Mode
from ganaug.options import KIND_WORDS, LIMIT_SIGNS, limits_hint


class SpaceError(InputError):
    """A search-space file is not valid; the one-line message names the file, the key and what would be."""


SECTIONS = ("experiment", "data", "metric", "scheduler", "fixed", "search")
OVERRIDES = ("name", "storage", "num_samples", "max_concurrent")  # experiment keys the CLI may override
SCALARS = (str, int, float, bool, type(None))  # what Optuna's suggest_categorical stores


# ------------------------------------------------------------------------------------------------
# The sections. Strict: YAML gives real types, so "16" for an int is a mistake worth reporting. A Field's
# description is what its `valid:` hint adds in brackets (see `describe`).

class StrictModel(BaseModel):
    """Base of every section and of SearchSpec: no unknown keys, no coerced types."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Resources(StrictModel):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)  # and whole or 1/k: checked in ganaug.space_checks


class Sampler(StrictModel):
    """Optuna TPESampler settings (searchers.make_sampler); docs/searcher.md says what each does."""

    n_startup_trials: int | None = Field(None, ge=0, description="null: num_samples // 4, clipped to 2..10")
    multivariate: bool = True
    group: bool | None = Field(None, description="null: multivariate's value; true needs multivariate")
    constant_liar: bool = True

    def grouped(self) -> bool:
        """`group` with null resolved to multivariate's value (space.checks fills it in so)."""
        return self.multivariate if self.group is None else self.group


# experiment.loggers: where each trial's metrics go besides Tune's CSV and JSON records -> the package it needs (and
# the extra of pyproject.toml that installs it); ganaug.search.trackers builds their Tune callbacks.
LOGGERS = {"tensorboard": None, "mlflow": "mlflow", "wandb": "wandb"}


class ExperimentSection(StrictModel):
    """The `experiment:` section (results.Experiment is a finished experiment folder, a different thing)."""

    name: str
    storage: str = "~/ganaug_results"
    num_samples: int = Field(16, ge=1)
    max_concurrent: int = Field(2, ge=1)
    seed: int = Field(0, ge=0)
    resources: Resources = Field(default_factory=Resources)
    max_failures: int = Field(1, ge=-1, description="-1 = retry forever")
    reuse_actors: bool = True
    baselines_first: bool = True
    # After the baselines, each augmentation baseline's synthetic twin (SearchSpec.baseline_points): the same policy
    # with synthetic images at the middle of the searched ratios and every synthetic key at its default.
    synthetic_twins: bool = True
    # The same trials, ASHA decisions and summary.csv at any max_concurrent, whatever order trials finish in
    # (ganaug.search.ordered; docs/searcher.md says what it costs).
    deterministic: bool = False
    # Choices of an axis evaluate ablates (config.ABLATED_AXES) that the search leaves out on purpose, each
    # with why ({traditional_aug: {randaugment: "..."}}): evaluate does not run them, and the search does not warn.
    left_out: dict[str, dict[str, str]] = Field(default_factory=dict)
    sampler: Sampler = Field(default_factory=Sampler)
    # The generator bank (trial.bank): null = <experiment>/generators; a folder or s3:// URI (e.g. another search's
    # bank on the same data); "off" = every trial pretrains its own GAN.
    generators: str | None = None
    loggers: list[str] = Field(default_factory=lambda: ["tensorboard"])
    mlflow_tracking_uri: str | None = None  # null: $MLFLOW_TRACKING_URI, else sqlite:///<experiment>/mlflow.db

    @field_validator("loggers", mode="before")
    @classmethod
    def _known_and_installed(cls, loggers: Any) -> Any:
        """A list naming each logger once, known, and its package importable: a missing one is refused before Ray
        starts."""
        if not isinstance(loggers, list):
            raise PydanticCustomError("logger", f"expected a list such as [tensorboard, mlflow], got {loggers!r}; "
                                                f"valid: a list of {', '.join(LOGGERS)}")
        for name in loggers:
            if name not in LOGGERS:
                raise PydanticCustomError("logger", f"{name!r} is not a logger; valid: a list of {', '.join(LOGGERS)}")
            if loggers.count(name) > 1:
                raise PydanticCustomError("logger", f"{name!r} is listed twice; valid: each logger once")
            package = LOGGERS[name]
            if package and importlib.util.find_spec(package) is None:
                raise PydanticCustomError("logger", f"{name} needs the {package} package, which is not installed; "
                                                    f'install it with pip install -e ".[{name}]" (or pip install '
                                                    f"{package})")
        return loggers


class Metric(StrictModel):
    name: str = "val_acc"
    mode: Mode | None = None  # None -> the metric's own direction in METRICS, which it may not contradict


class Scheduler(StrictModel):
    max_epochs: int = Field(TrialConfig.epochs, ge=1)
    grace_period: int | None = Field(None, ge=1, description="at most max_epochs")  # None: a third of max_epochs
    reduction_factor: float = Field(3.0, gt=1)
    # The no-GAN baselines a search runs first (experiment.baselines_first) run every epoch: ASHA stops none of them
    # at a rung, since heavier augmentation starts slow and wins late (docs/searcher.md: measured on the long tail).
    full_baselines: bool = True

    def grace_epochs(self) -> int:
        """`grace_period` with null resolved: a third of max_epochs, rounded up (space.checks fills it in so, and
        says why)."""
        return math.ceil(self.max_epochs / 3) if self.grace_period is None else self.grace_period


class Dist(StrictModel):
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
        return next(kind for kind in DISTRIBUTIONS if self.given(kind) is not None)

    @property
    def values(self) -> list[Any]:
        """Choice values, or the two ends of a range: what TrialConfig must accept."""
        return list(self.given(self.kind))

    def given(self, kind: str) -> Any:
        """The list given for one distribution kind (None when not given)."""
        return getattr(self, "int_" if kind == "int" else kind)

    def can_take(self, value: Any) -> bool:
        """Whether a suggestion from this distribution can equal `value` (for `when`)."""
        if self.kind == "choice":
            return any(same(value, choice) for choice in self.values)
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

    def middle(self, default: Any) -> Any:
        """A baseline's value of this key: the TrialConfig default when the space can draw it, else the middle
        choice, or the middle of the range (geometric for log scales, on the step grid)."""
        if self.can_take(default):
            return default
        if self.kind == "choice":
            choices = self.values
            return choices[len(choices) // 2]
        low, high = self.values
        if self.kind == "loguniform" or (self.kind == "int" and self.log):
            middle = math.sqrt(low * high)
        else:
            middle = (low + high) / 2
        if self.kind == "int":
            step = int(self.step or 1)
            return int(low + round((middle - low) / step) * step)
        if self.step:
            return low + round((middle - low) / self.step) * self.step
        return middle

    def suggest(self, trial: Any, key: str) -> Any:
        return DISTRIBUTIONS[self.kind](trial, key, self)


class SpaceSections(StrictModel):
    """A whole search-space file, section by section (space.SearchSpec adds what a search does with them)."""

    path: str
    experiment: ExperimentSection
    data: dict[str, Any]
    metric: Metric = Field(default_factory=Metric)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    fixed: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, Dist]


def search_order(search: dict[str, Dist]) -> list[str]:
    """Searched keys in file order, except that a key comes after the searched keys it depends on: those of its
    `when`, and those that decide whether it is active at all (config.depends_on: gan before acgan_weight)."""
    order: list[str] = []
    pending = list(search)
    needs = {key: {*(search[key].when or {}), *depends_on(key)} for key in search}
    while pending:
        ready = next((key for key in pending if all(dep in order or dep not in search for dep in needs[key])), None)
        if ready is None:  # only reachable for a cycle, which the checks report first
            raise SpaceError(f"search: `when` conditions form a cycle among {', '.join(pending)}")
        order.append(ready)
        pending.remove(ready)
    return order


# ------------------------------------------------------------------------------------------------
# Values as YAML and Optuna hand them over.

def same(a: Any, b: Any) -> bool:
    """Equality that keeps True apart from 1 (YAML and Optuna both hand us bools and ints)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def holds(when: dict[str, Any], values: dict[str, Any]) -> bool:
    """Whether every `when` key currently has one of its wanted values."""
    return all(any(same(values[key], wanted) for wanted in as_list(wanted_values))
               for key, wanted_values in when.items())


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ------------------------------------------------------------------------------------------------
# Hints read from the schema, so that a message never restates a limit by hand; worded as TrialConfig's are
# (options.limits_hint), so a limit reads the same in every `valid:`.


def field_named(model: type[BaseModel], key: str) -> FieldInfo | None:
    """A model's field as the YAML spells its key (its alias: `int` for Dist.int_)."""
    return next((field for name, field in model.model_fields.items() if (field.alias or name) == key), None)


def limit(model: type[BaseModel], key: str, bound: str) -> Any:
    """One limit of a field, None if it has none: limit(Scheduler, "grace_period", "ge") -> 1."""
    return _limit(_field(model, key), bound)


def describe(field: FieldInfo) -> str | None:
    """What a field accepts, in the words of a `valid:` hint: "an integer >= 1", "a number > 0", "true or false",
    "max, min", "[low, high] integers", plus its description in brackets. None where the type says little (a
    free string, a mapping, a list of anything): those hints are written by hand."""
    annotation = field.annotation
    if get_origin(annotation) in (Union, types.UnionType):  # X | None: what null means is in the description
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    if get_origin(annotation) is Literal:
        text = ", ".join(map(str, get_args(annotation)))
    elif get_origin(annotation) is list and get_args(annotation)[0] in KIND_WORDS and _is_pair(field):
        text = f"[low, high] {KIND_WORDS[get_args(annotation)[0]][1]}"
    elif annotation in KIND_WORDS:
        text = limits_hint(annotation, {bound: _limit(field, bound) for bound in LIMIT_SIGNS
                                        if _limit(field, bound) is not None})
    else:
        return None
    return f"{text} ({field.description})" if field.description else text


def distribution_forms() -> str:
    """The shapes a searched key's distribution may take: {choice: [...]}, {uniform: [low, high]}, ..."""
    forms = [f"{{{kind}: {'[low, high]' if _is_pair(_field(Dist, kind)) else '[...]'}}}" for kind in DISTRIBUTIONS]
    return f"{', '.join(forms[:-1])} or {forms[-1]}"


def _field(model: type[BaseModel], key: str) -> FieldInfo:
    """field_named for a key the model has (the code names it, not a user)."""
    field = field_named(model, key)
    if field is None:
        raise KeyError(f"{model.__name__} has no field {key!r}")
    return field


def _limit(field: FieldInfo, bound: str) -> Any:
    return next((getattr(item, bound) for item in field.metadata if hasattr(item, bound)), None)


def _is_pair(field: FieldInfo) -> bool:
    """A list of exactly two items: a range's [low, high]."""
    return _limit(field, "min_length") == _limit(field, "max_length") == 2


# ------------------------------------------------------------------------------------------------
# Registries: how each distribution kind is suggested, and the reported metrics with their direction.

def _suggest_choice(trial: Any, key: str, dist: Dist) -> Any:
    return trial.suggest_categorical(key, dist.choice)


def _suggest_uniform(trial: Any, key: str, dist: Dist) -> float:
    return trial.suggest_float(key, *dist.values, step=dist.step)


def _suggest_loguniform(trial: Any, key: str, dist: Dist) -> float:
    return trial.suggest_float(key, *dist.values, log=True)


def _suggest_int(trial: Any, key: str, dist: Dist) -> int:
    return trial.suggest_int(key, *dist.values, step=int(dist.step or 1), log=dist.log)


DISTRIBUTIONS = {
    "choice": _suggest_choice,
    "uniform": _suggest_uniform,
    "loguniform": _suggest_loguniform,
    "int": _suggest_int,
}

METRICS: dict[str, Mode] = OBJECTIVES  # the metrics a search may optimise -> the better direction (ganaug.metrics)
