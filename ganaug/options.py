"""How a TrialConfig key is declared (`option`): its default, documentation, limits, choices and the value that turns
it off, in the field's metadata; and how its limits read in a `valid:` hint (`limits_hint`), here and in the
search-space schema, so that every limit is written once; how a YAML or Optuna value becomes the field's type
(`coerce`); and ConfigError. Imports nothing of ganaug but errors.
"""

from __future__ import annotations

import dataclasses
import json
import operator
from collections.abc import Mapping
from dataclasses import field
from typing import Any

from ganaug.errors import InputError


class ConfigError(InputError):
    """A configuration key or value is not valid; the message names the key and what would be."""


# In flat dicts (Tune, Optuna, params.json, checkpoints) each classifier_kwargs entry is its own scalar key.
KWARGS_PREFIX = "classifier_kwargs."

# How a limit reads in a `valid:` hint, here and in the search-space schema (ganaug.space.schema.describe).
KIND_WORDS = {int: ("an integer", "integers"), float: ("a number", "numbers"), bool: ("true or false", "booleans")}
LIMIT_SIGNS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_COMPARE = {"ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt}


@dataclasses.dataclass(frozen=True)
class OneOf:
    """A condition on another key's value: one of `values` (NoneOf: none of them)."""

    values: tuple

    def holds(self, value: Any) -> bool:
        return value in self.values

    def __str__(self) -> str:
        return "is " + " or ".join(map(str, self.values))


@dataclasses.dataclass(frozen=True)
class NoneOf(OneOf):
    def holds(self, value: Any) -> bool:
        return value not in self.values

    def __str__(self) -> str:
        return "is not " + " or ".join(map(repr if "" in self.values else str, self.values))


@dataclasses.dataclass(frozen=True)
class Above:
    """A condition on another key's value: greater than `bound`."""

    bound: float

    def holds(self, value: Any) -> bool:
        return value > self.bound

    def __str__(self) -> str:
        return f"> {self.bound}"


Condition = OneOf | Above


# The roles a key plays besides its value in a policy (option's `roles`); the parts that treat keys by role read them
# from the fields (config.keys_with), never from a list of their own.
ROLES = {
    "generator": "decides the generator at the end of pretraining: part of the generator bank's key",
    "run": "where or how long a trial runs and what it records, not what it learns: a resume may change it, and "
           "evaluate's --ablate never resets it",
    "unablated": "evaluate's --ablate never resets it (the run keys besides)",
    "describes": "evaluation.csv and its report show it beside every policy",
}


def option(default: Any, doc: str, *, choices: dict[str, str] | tuple[str, ...] | None = None, valid: str = "",
           off: Any = None, ge: float | None = None, gt: float | None = None, le: float | None = None,
           lt: float | None = None, needs: Mapping[str, Condition] | None = None, roles: tuple[str, ...] = ()) -> Any:
    """One TrialConfig key, declared once: its default; its documentation (one line of docs/search-space.md's key
    table, where "{choices}" stands for a choice key's choices with their meanings); a number's limits (ge, gt, le,
    lt) and the value that turns it `off`; a choice key's choices (name -> meaning, or names; CHOICES is read from
    them); what is `valid` where neither says (a choice key: besides its choices); what it `needs` to have an
    effect: conditions on other keys (see `active`); and its `roles` (ROLES)."""
    unknown = [role for role in roles if role not in ROLES]
    if unknown:
        raise AssertionError(f"option roles {unknown} are not among {', '.join(ROLES)}")
    limits = {bound: value for bound, value in zip(LIMIT_SIGNS, (ge, gt, le, lt)) if value is not None}
    choices = dict.fromkeys(choices, "") if isinstance(choices, tuple) else choices
    metadata = {"doc": doc, "choices": choices, "valid": valid, "off": off, "limits": limits, "needs": needs or {},
                "roles": tuple(roles)}
    if isinstance(default, dict):  # a mutable default: each config gets its own
        return field(default_factory=dict, hash=False, metadata=metadata)
    return field(default=default, metadata=metadata)


def limits_hint(kind: type, limits: dict[str, Any], name: str = "the value") -> str:
    """What `limits` (ge, gt, le, lt) allow a value of type `kind`, in the words of a `valid:` hint: "an integer
    >= 1", "a number > 0", "an integer in [0, 30]", "0 < d_real_fraction < 1" (`name` between two limits)."""
    low = next(((bound, limits[bound]) for bound in ("ge", "gt") if bound in limits), None)
    high = next(((bound, limits[bound]) for bound in ("le", "lt") if bound in limits), None)
    if low is None or high is None:
        return " ".join([KIND_WORDS[kind][0], *(f"{LIMIT_SIGNS[bound]} {limits[bound]}" for bound in limits)])
    if kind is int and (low[0], high[0]) == ("ge", "le"):
        return f"an integer in [{low[1]}, {high[1]}]"
    return f"{low[1]} {'<=' if low[0] == 'ge' else '<'} {name} {LIMIT_SIGNS[high[0]]} {high[1]}"


def within(value: Any, limits: dict[str, Any]) -> bool:
    return all(_COMPARE[bound](value, limit) for bound, limit in limits.items())


def valid_values(spec: dataclasses.Field, limits: dict[str, Any] | None = None) -> str:
    """What a TrialConfig key accepts, in the words of its `valid:` hints and docs/search-space.md's key table: its
    choices (and what else is `valid`), its `valid` text, or its limits (or `limits`: "an integer >= 1",
    "0 < d_real_fraction < 1"), then the value that turns it off."""
    meta = spec.metadata
    if meta["choices"]:
        text = ", ".join(meta["choices"]) + (f", or {meta['valid']}" if meta["valid"] else "")
    else:
        text = meta["valid"] or limits_hint(type(spec.default), limits or meta["limits"], spec.name)
    return text if meta["off"] is None else f"{text} ({json.dumps(meta['off'])} = off)"


def unflatten_kwargs(values: dict[str, Any], where: str) -> dict[str, Any]:
    """`values` with its classifier_kwargs.NAME keys folded into one classifier_kwargs mapping. A mapping given as
    well (a YAML `fixed:` section) is the base and the flat keys win: {**base_config, **params} merges them."""
    flat = {str(key)[len(KWARGS_PREFIX):]: value for key, value in values.items()
            if str(key).startswith(KWARGS_PREFIX)}
    if not flat:
        return values
    mapping = values.get("classifier_kwargs") or {}
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: classifier_kwargs={mapping!r} has the wrong type; expected a mapping such as "
                          "{depth: 3}")
    rest = {key: value for key, value in values.items() if not str(key).startswith(KWARGS_PREFIX)}
    return {**rest, "classifier_kwargs": {**mapping, **flat}}


def coerce_kwargs(value: Any, where: str) -> dict[str, Any]:
    """classifier_kwargs as a plain dict of Python scalars (numpy scalars from Optuna unwrapped); None = {}."""
    if value is None:  # `classifier_kwargs:` left empty in YAML
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: classifier_kwargs={value!r} has the wrong type; expected a mapping such as "
                          "{depth: 3}")
    return {key: item.item() if hasattr(item, "item") and not isinstance(item, (str, bytes)) else item
            for key, item in value.items()}


def coerce(key: str, spec: dataclasses.Field, value: Any, where: str,
           legacy: dict[str, dict[bool, Any]] | None = None) -> Any:
    """Accept the value if it has the field's type (ints for floats too; numpy scalars from Optuna); `legacy`: the
    values older files wrote for a key that has become a choice ({key: {True: choice, False: choice}})."""
    kind: type = type(spec.default) if spec.default is not dataclasses.MISSING else str
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar -> Python scalar
    if legacy and isinstance(value, bool) and key in legacy:
        return legacy[key][value]
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
        if value is None and spec.metadata["off"] == "":  # an empty YAML value: off
            return ""
        if key == "gan_conditions" and isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return ",".join(value)  # YAML [mass, distance] -> "mass,distance", the flat form Tune and Optuna hold
    raise ConfigError(
        f"{where}: {key}={value!r} has the wrong type; expected {kind.__name__} "
        f"(default {spec.default!r})"
    )


def active(name: str, values: dict[str, Any], specs: dict[str, dataclasses.Field]) -> bool:
    """Whether key `name` has an effect in a policy of `values` (every key's value): every condition it `needs`
    holds, and every key it names is active itself (acgan_weight needs gan to be acgan, ali or translation, and gan
    needs synthetic_ratio > 0). A key that is not active changes nothing a trial does."""
    needs = specs[name].metadata["needs"] if name in specs else {}
    return all(condition.holds(values[key]) and active(key, values, specs) for key, condition in needs.items())


def dependencies(name: str, specs: dict[str, dataclasses.Field]) -> set[str]:
    """Every key whose value decides whether `name` is active, directly or through the keys it needs."""
    direct = set(specs[name].metadata["needs"]) if name in specs else set()
    return direct.union(*(dependencies(key, specs) for key in direct))
