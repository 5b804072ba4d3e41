"""Search-space YAML -> validated `SearchSpec`; its `define_by_run` is the Optuna space Ray Tune searches.

The format is README.md's "The search-space format" (the one copy, which docs/search-space.md includes;
tests/test_space.py loads its example), and the policy keys of `fixed:` and `search:` are TrialConfig's
(docs/search-space.md's table of them is rendered by ganaug.space.keys).
Everything here is checked before Ray starts: a bad file ends in one `SpaceError` line "<file>: <dotted key path>:
<problem>; valid: <...>". No torch and no ray at import time. Each section's model is in `ganaug.space.schema`, the
checks it cannot express in `ganaug.space.checks`; every fixed value and every choice / range end goes through
`TrialConfig.from_dict`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ganaug.config import (
    ABLATED_AXES,
    CHOICES,
    KWARGS_PREFIX,
    ConfigError,
    TrialConfig,
    is_active,
    without_inactive,
)
from ganaug.space.checks import check, unknown_hint
from ganaug.space.schema import (
    METRICS,
    OVERRIDES,
    SECTIONS,
    Dist,
    ExperimentSection,
    Metric,
    Resources,
    Sampler,
    Scheduler,
    SpaceError,
    SpaceSections,
    describe,
    distribution_forms,
    field_named,
    holds,
    same,
    search_order,
)

# The no-GAN baselines a search runs first vary these keys, one trial per value (SearchSpec.baseline_points).
BASELINE_AXES = ("traditional_aug", "mix", "class_balance")


class SearchSpec(SpaceSections):
    """A validated search space (the sections of schema.SpaceSections, and what a search does with them); build it
    with `load_space`."""

    def define_by_run(self, trial: Any) -> dict[str, Any]:
        """Suggest every searched key for an Optuna trial (Ray's OptunaSearch `space=`).

        Keys come in dependency order (a key after the keys its `when` and its activity depend on); a key whose
        `when` fails, or that the policy drawn so far cannot use (config.inactive_keys: every GAN key at
        synthetic_ratio 0, a family's own keys under another family, ...), is not suggested, so Optuna never sees
        a value that has no effect. Returns {}: fixed keys are added by `trial_config`, not stored in the study.
        """
        current = {**TrialConfig().to_dict(), **self.fixed}
        for key in search_order(self.search):
            if self.draws(key, current):
                current[key] = self.search[key].suggest(trial, key)
        return {}

    def draws(self, key: str, current: dict[str, Any]) -> bool:
        """Whether a trial whose keys so far have `current` values draws searched key `key`: its `when` holds and
        the policy can use it."""
        dist = self.search[key]
        return (dist.when is None or holds(dist.when, current)) and (key.startswith(KWARGS_PREFIX) or
                                                                      is_active(key, current))

    def trial_config(self, params: dict[str, Any]) -> TrialConfig:
        """TrialConfig of one trial: defaults <- fixed <- searched params, the keys it cannot use at their defaults
        (config.without_inactive); epochs = scheduler.max_epochs."""
        values = {**self.fixed, **params, "epochs": self.scheduler.max_epochs}
        if "seed" not in self.fixed and "seed" not in self.search:
            values["seed"] = self.experiment.seed
        return TrialConfig.from_dict(without_inactive(values), where=f"{self.path}: trial")

    def base_config(self) -> dict[str, Any]:
        """What every trial starts from before its searched params: defaults <- fixed, epochs, seed, every key (the
        inactive ones too: which are inactive depends on the params)."""
        values = {**self.fixed, "epochs": self.scheduler.max_epochs}
        if "seed" not in self.fixed and "seed" not in self.search:
            values["seed"] = self.experiment.seed
        return TrialConfig.from_dict(values, where=f"{self.path}: fixed", combinations=False).to_dict()

    def baseline_points(self) -> list[dict[str, Any]]:
        """The no-GAN policies a search runs first (experiment.baselines_first), as Optuna params.

        One per traditional_aug value the space can draw, then one per mix value other than none (mixup, cutmix)
        and one per class_balance value other than none (resample, reweight, logit_adjust: the long-tail baselines,
        so that best_no_gan is the best tuned long-tail method), each on flip_translate when the space can draw it
        (the standard mixing and long-tail baselines train on flipped and shifted images), each with synthetic_ratio
        0 and every other searched key at its TrialConfig default when the space can draw it, else the middle of its
        choices or range; on long-tailed data (data.long_tail, imbalance) the traditional_aug and mix baselines with
        a long-tail method (logit_adjust where the space can draw it). A fair search tunes the baseline with the same
        budget as the GAN policies; chance alone may never draw synthetic_ratio 0. Then, with
        experiment.synthetic_twins, the synthetic twin of each traditional_aug baseline but none (below). Empty when
        baselines_first is off or synthetic_ratio is not searched with 0 in reach.
        """
        ratio = self.search.get("synthetic_ratio")
        if not self.experiment.baselines_first or ratio is None or not ratio.can_take(0.0):
            return []
        zero = next((c for c in ratio.values if same(c, 0.0) or same(c, 0)), 0.0) if ratio.kind == "choice" else 0.0
        choices = {key: dist.values for key in BASELINE_AXES
                   if (dist := self.search.get(key)) is not None and dist.kind == "choice" and dist.when is None}
        # On long-tailed data the augmentation baselines train with a long-tail method, as the strongest baselines
        # there do: logit adjustment where the space can draw it (Menon 2021; +5 points over plain cross-entropy in
        # docs/long-tail.md's evaluation), else its first other method.
        methods = [way for way in choices.get("class_balance", []) if way != "none"]
        long_tailed = bool(self.data.get("long_tail") or self.data.get("imbalance"))
        balance = {"class_balance": "logit_adjust" if "logit_adjust" in methods else methods[0]} \
            if long_tailed and methods else {}
        variants = [{"traditional_aug": choice, **balance} for choice in choices.get("traditional_aug", [])] or [{}]
        flips = {"traditional_aug": "flip_translate"} if "flip_translate" in choices.get("traditional_aug", []) else {}
        variants += [{"mix": mix, **flips, **balance} for mix in choices.get("mix", []) if mix != "none"]
        variants += [{"class_balance": way, **flips} for way in choices.get("class_balance", []) if way != "none"]
        # Then each augmentation baseline's synthetic twin: the same policy with synthetic images at the middle of the
        # searched ratios and every synthetic key at its default (pseudo labels, shared BatchNorm, no warm-up), so
        # that the search compares "this augmentation" with "this augmentation plus synthetic images" pair by pair
        # from the start, as evaluate's gan_off does after it.
        nonzero = [value for value in ratio.values if not same(value, 0.0)] if ratio.kind == "choice" else []
        twin = nonzero[len(nonzero) // 2] if nonzero else ratio.middle(None) if ratio.kind != "choice" else None
        augmentations = [variant for variant in variants[:len(choices.get("traditional_aug", []))]
                         if variant.get("traditional_aug", "none") != "none"]
        twins = [{**variant, "synthetic_ratio": twin} for variant in augmentations] \
            if twin and self.experiment.synthetic_twins else []
        points = []
        for variant in [*variants, *twins]:
            current, point = {**TrialConfig().to_dict(), **self.fixed}, {}
            for key in search_order(self.search):
                dist = self.search[key]
                if not self.draws(key, current):
                    continue
                value = variant[key] if key in variant else zero if key == "synthetic_ratio" \
                    else dist.middle(getattr(TrialConfig, key, None))
                current[key] = point[key] = value
            if point not in points:  # flips on logit_adjust: both an augmentation and a long-tail baseline
                points.append(point)
        return points

    def unsearched_ablations(self) -> list[str]:
        """One warning line per axis evaluate ablates (config.ABLATED_AXES) whose choices the space cannot draw and
        does not leave out on purpose (experiment.left_out): evaluate runs those as no-GAN baselines
        (no_gan+<choice>), so the search's best_no_gan, the headline's baseline, is not tuned over them."""
        lines = []
        for axis in ABLATED_AXES:
            left_out = self.experiment.left_out.get(axis, {})
            missing = [choice for choice in CHOICES[axis] if choice not in self.reachable(axis)
                       and choice not in left_out]
            if missing:
                lines.append(f"warning: {self.path}: the search cannot draw {axis} {', '.join(missing)}, which ganaug "
                             f"evaluate runs as no-GAN baselines ({', '.join(f'no_gan+{c}' for c in missing)}), so "
                             f"the search's best no-GAN policy is not tuned over them; valid: add them to "
                             f"search.{axis}, or say why each is left out (experiment.left_out: {{{axis}: "
                             f"{{{missing[0]}: <why>}}}})")
        return lines

    def reachable(self, key: str) -> list[Any]:
        """Every value `key` can take in a trial: fixed, searched (choices or range ends, plus the default where
        a `when` fails) or the default."""
        if key in self.fixed:
            return [self.fixed[key]]
        dist = self.search.get(key)
        if dist is None:
            return [getattr(TrialConfig, key)]
        return list(dict.fromkeys([*dist.values, *([getattr(TrialConfig, key)] if dist.when else [])]))

    def place(self, key: str, classifier: str) -> str:
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
        # The warm-up keeps its share of the trial, so that it stays shorter than the 2 epochs.
        share = 2 / raw["scheduler"]["max_epochs"]
        raw["scheduler"].update(max_epochs=2, grace_period=1)
        if "warmup_epochs" in raw["fixed"]:
            raw["fixed"]["warmup_epochs"] *= share
        dist = raw["search"].get("warmup_epochs")
        for kind in ("choice", "uniform", "loguniform"):
            if dist is not None and dist.get(kind) is not None:
                dist[kind] = [value * share for value in dist[kind]]
        samples = raw["data"].get("samples_per_class")
        raw["data"]["samples_per_class"] = 20 if samples is None else min(samples, 20)
        return _build(raw, self.path)

    def storage_uri(self) -> str:
        """Absolute local folder (~ expanded), or the URI (s3://, gs://, ...) as given."""
        if _is_uri(self.experiment.storage):
            return self.experiment.storage
        return os.path.abspath(os.path.expanduser(self.experiment.storage))

    def generators_dir(self) -> str | None:
        """Where this search's generator bank lives (experiment.generators), None when it is off."""
        chosen = self.experiment.generators
        if chosen == "off":
            return None
        if chosen is None:
            return f"{self.experiment_dir().rstrip('/')}/generators" if _is_uri(self.experiment_dir()) else \
                os.path.join(self.experiment_dir(), "generators")
        return chosen if _is_uri(chosen) else os.path.abspath(os.path.expanduser(chosen))

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
            raise SpaceError(f"{file}: {key}: unknown section{unknown_hint(str(key), SECTIONS)}")
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
        space = SearchSpec.model_validate({**raw, "path": file})
    except ValidationError as err:
        raise SpaceError(_pydantic_message(err, file, overrides or {})) from None
    check(space)
    _check_baselines(space)
    return space


def _check_baselines(space: SearchSpec) -> None:
    """The enqueued baseline policies are valid trials (their midpoints could break a rule between keys)."""
    for point in space.baseline_points():
        try:
            TrialConfig.from_dict({**space.fixed, **point})
        except ConfigError as err:
            reason = str(err).split(": ", 1)[1]
            raise SpaceError(f"{space.path}: experiment.baselines_first: the baseline policy {point} is invalid "
                             f"({reason}); valid: baselines_first: false, or defaults that combine") from None


def _pydantic_message(err: ValidationError, file: str, overrides: dict[str, Any]) -> str:
    """First pydantic error as one line: file, dotted key path, problem and what would be valid."""
    first = err.errors()[0]
    loc = tuple(str(part) for part in first["loc"])
    dotted = ".".join(loc)
    if first["type"] == "extra_forbidden":
        return f"{file}: {dotted}: unknown key{unknown_hint(loc[-1], _fields_at(loc[:-1]))}"
    problem = first["msg"]
    if first["type"] == "missing":
        problem = "missing (required)"
    elif first["type"] in ("model_type", "dict_type"):
        problem = f"expected a mapping, got {type(first['input']).__name__} {first['input']!r}"
    elif first["type"] == "literal_error":  # the hint lists the values: "'maximize' is not a mode; valid: max, min"
        problem = f"{first['input']!r} is not a {loc[-1]}"
    message = f"{file}: {dotted}: {problem}"
    named = [part for part in loc if not part.isdigit()]
    if len(loc) == 2 and loc[0] == "search":
        hint: str | None = f"{distribution_forms()}; constants go under fixed:"
    else:  # the most specific hint: "experiment.name", else e.g. "int" for search.x.int.0, else the field's limits
        hint = _HINTS.get(".".join(named)) or (_HINTS.get(named[-1]) if named else None) or _field_hint(named)
    if hint:
        message += f"; valid: {hint}"
    if len(loc) == 2 and loc[0] == "experiment" and loc[1] in overrides:
        message += f" (from the override {loc[1]}={overrides[loc[1]]!r})"
    return message


# Hints that the schema cannot give: examples, and rules that the checks hold. A field with limits (an integer
# >= 1, max or min) gets its hint from them (`_field_hint`), so the two cannot drift apart.
_HINTS = {
    "experiment": "a mapping with at least name:, e.g. {name: quickstart}",
    "experiment.name": "a folder name such as quickstart",
    "experiment.storage": "a local folder or s3://bucket/prefix",
    "experiment.resources": "{cpu: 1, gpu: 0}", "gpu": "0, a whole number or 1/k",
    "metric": "{name: val_acc, mode: max}", "metric.name": f"a reported metric: {', '.join(METRICS)}",
    "scheduler": "{max_epochs: 12, grace_period: 2, reduction_factor: 3}",
    "data": "a mapping of DataConfig keys, e.g. {name: digits}", "fixed": "a mapping of TrialConfig keys",
    "search": "a mapping of TrialConfig keys to distributions",
    "loguniform": "[low, high] numbers > 0", "choice": "a list of values", "step": "a number > 0",
    "when": "{other_key: value} or {other_key: [value, ...]}",
}

_MODELS: dict[tuple[str, ...], type[BaseModel]] = {
    (): SearchSpec, ("experiment",): ExperimentSection, ("experiment", "resources"): Resources,
    ("experiment", "sampler"): Sampler, ("metric",): Metric, ("scheduler",): Scheduler}


def _model_at(parent: tuple[str, ...]) -> type[BaseModel] | None:
    """The model whose fields sit under a key path (Dist under search.<key>)."""
    return Dist if parent[:1] == ("search",) else _MODELS.get(parent)


def _fields_at(parent: tuple[str, ...]) -> list[str]:
    model = _model_at(parent)
    if model is None:
        return []
    return [field.alias or name for name, field in model.model_fields.items() if name != "path"]


def _field_hint(named: list[str]) -> str | None:
    """The hint a field's annotation and limits give (schema.describe), e.g. "an integer >= 1"."""
    model = _model_at(tuple(named[:-1])) if named else None
    field = field_named(model, named[-1]) if model is not None else None
    return describe(field) if field is not None else None


def _is_uri(storage: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", storage) is not None

