"""The checks a search space must pass that its schema (ganaug.space.schema) cannot express: values between keys,
registry names, every value a trial can draw through `TrialConfig.from_dict`, and `when:` conditions. Each
raises one SpaceError line naming the file, the key and what is valid; `check` runs them all, section by section.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from ganaug.config import (
    ABLATED_AXES,
    CHOICES,
    DATASET_NAMES,
    KWARGS_PREFIX,
    ConfigError,
    TrialConfig,
    depends_on,
    is_active,
    is_import_path,
    without_inactive,
)
from ganaug.errors import did_you_mean
from ganaug.space.schema import (
    DISTRIBUTIONS,
    METRICS,
    SCALARS,
    Dist,
    Scheduler,
    SpaceError,
    SpaceSections,
    as_list,
    holds,
    limit,
    same,
    search_order,
)


def check(space: SpaceSections) -> None:
    """Run every check on a space the schema accepted; fills in the defaults that depend on other keys (sampler.group,
    metric.mode, scheduler.grace_period)."""
    _check_experiment(space)
    _check_metric(space)
    _check_scheduler(space)
    _check_data(space)
    _check_fixed(space)
    for key, dist in space.search.items():
        _check_dist(space, key, dist)
    for key, dist in space.search.items():
        if dist.when is not None:
            _check_when(space, key, dist.when)
    _check_cycles(space)
    _check_pairs(space)
    _check_imports(space)


def _check_experiment(space: SpaceSections) -> None:
    name, file = space.experiment.name, space.path
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in (".", ".."):
        raise SpaceError(f"{file}: experiment.name: {name!r} is not a folder name; "
                         "valid: letters, digits, '.', '_', '-' (no '/')")
    if not space.experiment.storage.strip():
        raise SpaceError(f"{file}: experiment.storage: empty; valid: a local folder or s3://bucket/prefix")
    gpu = space.experiment.resources.gpu
    # Fractions must be 1/k so that k trials fill a GPU exactly; 0.3 would strand a tenth of every GPU.
    whole = gpu == 0 or (gpu >= 1 and gpu.is_integer())
    if not (whole or (gpu < 1 and abs(1 / gpu - round(1 / gpu)) < 1e-6)):
        raise SpaceError(f"{file}: experiment.resources.gpu: {gpu} GPUs per trial do not pack onto whole "
                         "GPUs; valid: 0, a whole number, or 1/k (0.5, 0.25, 0.2, 0.125, ...)")
    for axis, choices in space.experiment.left_out.items():
        if axis not in ABLATED_AXES:
            raise SpaceError(f"{file}: experiment.left_out.{axis}: evaluate ablates no choice of {axis}; valid: "
                             f"{', '.join(ABLATED_AXES)}")
        for choice, why in choices.items():
            if choice not in CHOICES[axis]:
                raise SpaceError(f"{file}: experiment.left_out.{axis}.{choice}: not a choice of {axis}; valid: "
                                 f"{', '.join(CHOICES[axis])}")
            if not (isinstance(why, str) and why.strip()):
                raise SpaceError(f"{file}: experiment.left_out.{axis}.{choice}: says no reason; valid: why the "
                                 "search leaves it out, in words")
            drawn = [space.fixed[axis]] if axis in space.fixed else space.search[axis].values \
                if axis in space.search else []
            if choice in drawn:
                raise SpaceError(f"{file}: experiment.left_out.{axis}.{choice}: the space draws it; valid: leave out "
                                 "only choices the space cannot draw")
    sampler = space.experiment.sampler
    if sampler.group is None:
        sampler.group = sampler.multivariate
    if sampler.group and not sampler.multivariate:  # Optuna's own rule, raised here before Ray starts
        raise SpaceError(f"{file}: experiment.sampler.group: true needs multivariate: true; valid: "
                         "multivariate: true with group: true or false, or group: false")


def _check_metric(space: SpaceSections) -> None:
    metric, file = space.metric, space.path
    if metric.name not in METRICS:
        raise SpaceError(f"{file}: metric.name: {metric.name!r} is not a reported metric"
                         f"{unknown_hint(metric.name, METRICS)}")
    if metric.mode is None:
        metric.mode = METRICS[metric.name]
    if metric.mode != METRICS[metric.name]:
        raise SpaceError(f"{file}: metric.mode: {metric.mode} would optimise {metric.name} the wrong way; "
                         f"valid: {METRICS[metric.name]}")


def _check_scheduler(space: SpaceSections) -> None:
    scheduler = space.scheduler
    if scheduler.grace_period is None:
        # One rung, a third of the way: augmentation and other regularisers start slow and pay off late, and an
        # earlier rung stops them (benchmarks/search_efficiency.py, replaying ASHA on full learning curves: a
        # grace period of 1 stopped 52 % of the policies that ended in the top quarter, and every augmented one;
        # a third of max_epochs, 3 % and none).
        scheduler.grace_period = scheduler.grace_epochs()
    if scheduler.grace_period > scheduler.max_epochs:
        lowest = limit(Scheduler, "grace_period", "ge")
        raise SpaceError(f"{space.path}: scheduler.grace_period: {scheduler.grace_period} > max_epochs "
                         f"{scheduler.max_epochs}; valid: {lowest} <= grace_period <= {scheduler.max_epochs}")
    for section in ("fixed", "search"):
        if "epochs" in getattr(space, section):
            raise SpaceError(f"{space.path}: {section}.epochs: epochs is set by scheduler.max_epochs; "
                             "valid: remove it and set scheduler.max_epochs")


def _check_data(space: SpaceSections) -> None:
    from ganaug.data import DataConfig  # lazy: it imports torch (`import ganaug.space` must not)

    file, data = space.path, space.data
    known = [f.name for f in dataclasses.fields(DataConfig)]
    for key in data:
        if key not in known:
            raise SpaceError(f"{file}: data.{key}: unknown key{unknown_hint(key, known)}")
    if "name" not in data:
        raise SpaceError(f"{file}: data.name: missing; valid: {', '.join(DATASET_NAMES)}")
    if data["name"] not in DATASET_NAMES:
        raise SpaceError(f"{file}: data.name: unknown dataset {data['name']!r}"
                         f"{unknown_hint(str(data['name']), DATASET_NAMES)}")
    try:  # DataConfig checks every value; its messages start with "data.<key>=..."
        DataConfig(**data)
    except (ValueError, TypeError) as err:  # DataError is a ValueError
        raise SpaceError(f"{file}: {err}") from None


def _check_fixed(space: SpaceSections) -> None:
    file = space.path
    known = TrialConfig.keys()
    nested = space.fixed.get("classifier_kwargs")
    # classifier_kwargs: {depth: 3} and classifier_kwargs.depth: 3 are the same key, fixed or searched.
    flat = [*(f"{KWARGS_PREFIX}{name}" for name in (nested if isinstance(nested, dict) else {})),
            *(key for key in space.fixed if str(key).startswith(KWARGS_PREFIX))]
    for key in flat:
        if key in space.search or flat.count(key) > 1:
            twice = "both fixed and searched" if key in space.search else "given twice under fixed"
            raise SpaceError(f"{file}: fixed.{key}: {key} is {twice}; valid: keep it in one place")
    for key, value in space.fixed.items():
        if key not in known and not str(key).startswith(KWARGS_PREFIX):
            raise SpaceError(f"{file}: fixed.{key}: unknown key{unknown_hint(key, known)}")
        if key in space.search:
            raise SpaceError(f"{file}: fixed.{key}: {key} is both fixed and searched; "
                             "valid: keep it in one of fixed or search")
        # The key's own value only: the rules between keys come with the whole section, just below.
        _config_check({key: value}, f"{file}: fixed.{key}", combinations=False)
    # A searched classifier is drawn with the fixed classifier_kwargs: check them with one of its import paths.
    classifiers = space.search["classifier"].values if "classifier" in space.search else []
    drawn = {"classifier": next(filter(is_import_path, classifiers), classifiers[0])} if classifiers else {}
    # Every trial runs scheduler.max_epochs epochs, which the rules between keys may need (warmup_epochs < epochs).
    _config_check({**drawn, **space.fixed, "epochs": space.scheduler.max_epochs}, f"{file}: fixed")


def _check_dist(space: SpaceSections, key: str, dist: Dist) -> None:
    where = f"{space.path}: search.{key}"
    known = {f.name: f for f in dataclasses.fields(TrialConfig)}
    if key == "classifier_kwargs":
        raise SpaceError(f"{where}: a factory's arguments are searched one by one; valid: e.g. "
                         "classifier_kwargs.depth: {choice: [2, 3]}")
    argument = key.startswith(KWARGS_PREFIX)  # any scalar distribution: the factory's signature decides
    if key not in known and not argument:
        raise SpaceError(f"{where}: unknown key{unknown_hint(key, known)}")
    kinds = [kind for kind in DISTRIBUTIONS if dist.given(kind) is not None]
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
        _check_choice(where, dist.values)
    else:
        _check_range(where, kind, dist)
    for value in dist.values:
        # Each value on its own; the rules between keys are checked pairwise, with what the others can be
        # (_check_pairs): gan_freeze: true is fine where gan_pretrain_epochs is searched over [5, 10].
        _config_check({**space.fixed, **_condition(space, dist), key: value}, f"{where}.{kind}", combinations=False)


def _check_imports(space: SpaceSections) -> None:
    """Every torchvision:/import-path classifier the space names resolves to a callable (its module imports and
    has the attribute); building it waits for the dataset's shape (SearchSpec.check_classifier)."""
    if "classifier" in space.fixed:
        places = [("fixed.classifier", space.fixed["classifier"])]
    else:
        values = space.search["classifier"].values if "classifier" in space.search else []
        places = [(f"search.classifier.choice.{index}", value) for index, value in enumerate(values)]
    places = [(place, value) for place, value in places if is_import_path(value)]
    if not places:
        return
    from ganaug.classifier import ClassifierError, resolve_classifier  # lazy: it imports torch

    for place, value in places:
        try:
            resolve_classifier(value)
        except ClassifierError as error:
            debug = " (--debug shows its traceback)" if error.__cause__ is not None else ""
            raise SpaceError(f"{space.path}: {place}: {error.problem}{debug}; valid: {error.valid}") from error


def _check_choice(where: str, choices: list[Any]) -> None:
    if not choices:
        raise SpaceError(f"{where}.choice: empty choice list; valid: a list of at least one value")
    for index, value in enumerate(choices):
        if not isinstance(value, SCALARS):
            raise SpaceError(f"{where}.choice.{index}: {value!r} is a {type(value).__name__}; "
                             "valid: strings, numbers, booleans or null")
        if any(same(value, other) for other in choices[:index]):
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


def _check_when(space: SpaceSections, key: str, when: dict[str, Any]) -> None:
    where = f"{space.path}: search.{key}.when"
    if not when:
        raise SpaceError(f"{where}: empty; valid: {{other_key: value}} or {{other_key: [value, ...]}}")
    defaults = TrialConfig().to_dict()
    for other, wanted in when.items():
        if other == key:
            raise SpaceError(f"{where}.{other}: a key cannot depend on itself; valid: another searched "
                             "or fixed key")
        if other not in defaults:
            raise SpaceError(f"{where}.{other}: unknown key{unknown_hint(other, defaults)}")
        if other not in space.search and other not in space.fixed:
            others = [name for name in [*space.search, *space.fixed] if name != key]
            raise SpaceError(f"{where}.{other}: {other} is neither searched nor fixed, so it is always "
                             f"{defaults[other]!r}; valid: {', '.join(others)}")
        values = as_list(wanted)
        if not values:
            raise SpaceError(f"{where}.{other}: empty list; valid: a value or a list of values")
        for value in values:
            if not _can_take(space, other, value, defaults[other]):
                raise SpaceError(f"{where}.{other}: {other} can never be {value!r}; "
                                 f"valid: {_possible(space, other, defaults[other])}")


def _condition(space: SpaceSections, dist: Dist) -> dict[str, Any]:
    """Values under which a conditional key is searched: each `when` key at its first wanted value (a key
    searched only when gan_pretrain_epochs is 10 is checked with gan_pretrain_epochs 10, not the default 0)."""
    return {other: as_list(wanted)[0] for other, wanted in (dist.when or {}).items()
            if as_list(wanted) and other in set(TrialConfig.keys())}


def _check_pairs(space: SpaceSections) -> None:
    """Every pair of searched keys, at every combination of their choices (or range ends) that a trial can
    draw together, makes a valid TrialConfig: cross-key rules (gan_freeze needs pretraining, hinge has no
    label smoothing) fail here, naming both keys, instead of as an errored trial."""
    keys = list(space.search)

    def valid(values: dict[str, Any], pair: tuple[str, str]) -> ConfigError | None:
        """The error of a trial drawing `values` (None: valid). A trial never draws a key it cannot use
        (config.inactive_keys), so a combination that leaves one of the pair inactive is never drawn: valid."""
        values = _with_dependents(space, {**space.fixed, **values}, pair)
        # The searched keys the pair's activity depends on (synthetic_ratio for a GAN key) at values that activate it.
        for key in search_order(space.search):
            if key not in pair and key in set().union(*map(depends_on, pair)) and \
                    not all(is_active(name, values) for name in pair):
                values[key] = next((value for value in space.search[key].values
                                    if all(is_active(name, {**values, key: value}) for name in pair)), values[key])
        if not all(is_active(key, values) for key in pair):
            return None
        try:
            TrialConfig.from_dict(without_inactive(values))
        except ConfigError as err:
            return err
        return None

    # Each value alone first: one that no other searched key's value can make valid (labeling distill with no
    # teacher_ema anywhere) is that key's fault; one that some value rescues is left to the pairs below.
    for key in keys:
        dist = space.search[key]
        for value in dist.values:
            error = valid({**_condition(space, dist), key: value}, (key, key))
            rescued = error is None or any(
                valid({**_condition(space, dist), key: value, other: other_value}, (key, other)) is None
                for other in keys if other != key for other_value in space.search[other].values)
            if not rescued:
                reason = str(error).split(": ", 1)[1]
                raise SpaceError(f"{space.path}: search.{key}: a trial could draw {key}={value!r}, which is invalid "
                                 f"({reason}); valid: choices that combine with the fixed keys") from None
    for index, first in enumerate(keys):
        for second in keys[index + 1:]:
            dists = {first: space.search[first], second: space.search[second]}
            context = {**space.fixed, **_condition(space, dists[first]), **_condition(space, dists[second])}
            for value_a in dists[first].values:
                for value_b in dists[second].values:
                    values = {**context, first: value_a, second: value_b}
                    # Skip combinations a `when` rules out (one key conditioned on the other's value).
                    if not all(holds(dist.when, values) for dist in dists.values() if dist.when):
                        continue
                    error = valid(values, (first, second))
                    if error is not None:
                        reason = str(error).split(": ", 1)[1]
                        raise SpaceError(
                            f"{space.path}: search.{first} and search.{second}: a trial could draw {first}="
                            f"{value_a!r} with {second}={value_b!r}, which is invalid ({reason}); valid: a "
                            f"`when:` on one of them, or choices that always combine")


def _with_dependents(space: SpaceSections, values: dict[str, Any], pair: tuple[str, str]) -> dict[str, Any]:
    """`values` plus, for every other searched key whose `when` holds under them, that key's first value: a trial
    that draws the pair also draws the keys conditioned on it (labeling: distill brings its teacher_ema along)."""
    values = {**TrialConfig().to_dict(), "epochs": space.scheduler.max_epochs, **values}
    for key in search_order(space.search):
        dist = space.search[key]
        if key not in pair and dist.when is not None and holds(dist.when, values):
            values[key] = dist.values[0]
    return values


def _check_cycles(space: SpaceSections) -> None:
    def visit(key: str, chain: list[str]) -> None:
        for dep in space.search[key].when or {}:
            if dep in chain:
                cycle = " -> ".join([*chain[chain.index(dep):], dep])
                raise SpaceError(f"{space.path}: search.{chain[0]}.when: conditions form a cycle {cycle}; "
                                 "valid: conditions that form a tree")
            if dep in space.search:
                visit(dep, [*chain, dep])

    for key in space.search:
        visit(key, [key])


def _can_take(space: SpaceSections, key: str, value: Any, default: Any) -> bool:
    if key in space.fixed:
        return same(value, space.fixed[key])
    dist = space.search[key]
    # A conditional key keeps its default in trials where its own condition fails.
    return dist.can_take(value) or (dist.when is not None and same(value, default))


def _possible(space: SpaceSections, key: str, default: Any) -> str:
    if key in space.fixed:
        return f"{space.fixed[key]!r} (fixed)"
    dist = space.search[key]
    text = ", ".join(map(repr, dist.values)) if dist.kind == "choice" else f"{dist.kind} {dist.values}"
    return text + (f" or its default {default!r}" if dist.when is not None else "")


def _config_check(values: dict[str, Any], where: str, combinations: bool = True) -> None:
    try:
        TrialConfig.from_dict(values, where=where, combinations=combinations)
    except ConfigError as err:
        raise SpaceError(str(err)) from None


def unknown_hint(key: str, valid) -> str:
    """"; did you mean 'x'?; valid: a, b, c" for a key that is not one of `valid` (the suggestion when one is close)."""
    valid = sorted(map(str, valid))
    return did_you_mean(key, valid) + f"; valid: {', '.join(valid)}"
