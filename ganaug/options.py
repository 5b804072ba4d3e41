"""How a TrialConfig key is declared (`option`): its default, documentation, limits, choices and the value that turns
it off, in the field's metadata; and how its limits read in a `valid:` hint (`limits_hint`), here and in the
search-space schema, so that every limit is written once. Imports nothing of ganaug.
"""

from __future__ import annotations

import dataclasses
import json
import operator
from dataclasses import field
from typing import Any

# How a limit reads in a `valid:` hint, here and in the search-space schema (ganaug.space.schema.describe).
KIND_WORDS = {int: ("an integer", "integers"), float: ("a number", "numbers"), bool: ("true or false", "booleans")}
LIMIT_SIGNS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_COMPARE = {"ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt}


def option(default: Any, doc: str, *, choices: dict[str, str] | tuple[str, ...] | None = None, valid: str = "",
           off: Any = None, ge: float | None = None, gt: float | None = None, le: float | None = None,
           lt: float | None = None) -> Any:
    """One TrialConfig key, declared once: its default; its documentation (one line of README's table, where
    "{choices}" stands for a choice key's choices with their meanings); a number's limits (ge, gt, le, lt) and
    the value that turns it `off`; a choice key's choices (name -> meaning, or names; CHOICES is read from them);
    and what is `valid` where neither says (a choice key: besides its choices)."""
    limits = {bound: value for bound, value in zip(LIMIT_SIGNS, (ge, gt, le, lt)) if value is not None}
    choices = dict.fromkeys(choices, "") if isinstance(choices, tuple) else choices
    metadata = {"doc": doc, "choices": choices, "valid": valid, "off": off, "limits": limits}
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
    """What a TrialConfig key accepts, in the words of its `valid:` hints and README's table: its choices (and what
    else is `valid`), its `valid` text, or its limits (or `limits`: "an integer >= 1", "0 < d_real_fraction < 1"),
    then the value that turns it off."""
    meta = spec.metadata
    if meta["choices"]:
        text = ", ".join(meta["choices"]) + (f", or {meta['valid']}" if meta["valid"] else "")
    else:
        text = meta["valid"] or limits_hint(type(spec.default), limits or meta["limits"], spec.name)
    return text if meta["off"] is None else f"{text} ({json.dumps(meta['off'])} = off)"
