"""The docs' tables of the policy keys (`fixed:` and `search:`, from TrialConfig's fields), of the data keys
(`data:`, from DataConfig's) and of the reported metrics (ganaug.metrics), so that no table restates a default, a
limit, a choice or a metric by hand. Regenerate them with:

    python -m ganaug.space.keys          # the policy keys: paste over docs/search-space.md's under "## Policy keys"
    python -m ganaug.space.keys data     # the data keys: paste over docs/search-space.md's under "## Data keys"
    python -m ganaug.space.keys metrics  # the metrics: paste over docs/outputs.md's under "## Every reported metric"

tests/test_policy_keys.py fails while the page holds another table.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

from ganaug.config import LEGACY_VALUES, TrialConfig
from ganaug.metrics import METRICS, WHEN
from ganaug.options import valid_values


def key_table() -> str:
    """The markdown table, one row per TrialConfig field: key, default, what is valid, what it means."""
    rows = ["| key | default | valid | meaning |", "|---|---|---|---|"]
    for spec in dataclasses.fields(TrialConfig):
        default = spec.default if spec.default_factory is dataclasses.MISSING else spec.default_factory()
        rows.append(f"| `{spec.name}` | `{_shown(default)}` | {valid_values(spec)} | {key_documentation(spec)} |")
    return "\n".join(rows)


def data_key_table() -> str:
    """The markdown table of the `data:` keys, one row per DataConfig field: key, default, what it means."""
    from ganaug.data import DataConfig  # the package loads its torch-backed names only when asked for them

    rows = ["| key | default | meaning |", "|---|---|---|"]
    rows += [f"| `{spec.name}` | `{_shown(spec.default)}` | {spec.metadata['doc']} |"
             for spec in dataclasses.fields(DataConfig)]
    return "\n".join(rows)


def metric_table() -> str:
    """The markdown table of every metric a trial reports (ganaug.metrics.METRICS): name, better direction, when,
    which part measures it, what it means, where else it goes."""
    places = {"objective": "`metric.name`", "study": "Optuna study", "summary": "`summary.csv`",
              "policy": "`best_policy.yaml`", "evaluation": "`evaluation.csv`"}
    rows = ["| metric | better | reported | measures | meaning | also in |", "|---|---|---|---|---|---|"]
    rows += [f"| `{metric.name}` | {metric.mode or ''} | {WHEN[metric.when]} | {metric.part} | {metric.doc} | "
             f"{', '.join(places[place] for place in metric.goes)} |" for metric in METRICS]
    return "\n".join(rows)


def key_documentation(spec: dataclasses.Field) -> str:
    """A TrialConfig field's documentation: its text, with its choices and what each means in place of
    "{choices}", and the older values that still load."""
    choices = spec.metadata["choices"] or {}
    listing = " / ".join(f"{name} ({meaning})" if meaning else name for name, meaning in choices.items())
    text = spec.metadata["doc"].replace("{choices}", listing)
    legacy = LEGACY_VALUES.get(spec.name)
    if legacy:
        old = " / ".join(f"`{json.dumps(value)}`" for value in legacy)  # as YAML spells them: true, false
        text += f" Older files' {old} load as {' / '.join(legacy.values())}."
    return text


def _shown(value: Any) -> str:
    """A default as the tables write it: strings in double quotes, small floats as 2e-4."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float) and 0 < abs(value) < 1e-2:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return repr(value)


TABLES = {"data": data_key_table, "metrics": metric_table}

if __name__ == "__main__":
    print(TABLES.get(sys.argv[1] if sys.argv[1:] else "", key_table)())
