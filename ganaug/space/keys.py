"""README's table of the policy keys (`fixed:` and `search:`), rendered from TrialConfig's fields, so that the table
never restates a default, a limit or a choice by hand. Regenerate it with:

    python -m ganaug.space.keys     # prints the table; paste it over README's under "### Policy keys"
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ganaug.config import LEGACY_VALUES, TrialConfig
from ganaug.options import valid_values


def key_table() -> str:
    """The markdown table, one row per TrialConfig field: key, default, what is valid, what it means."""
    rows = ["| key | default | valid | meaning |", "|---|---|---|---|"]
    for spec in dataclasses.fields(TrialConfig):
        default = spec.default_factory() if spec.default is dataclasses.MISSING else spec.default
        rows.append(f"| `{spec.name}` | `{_shown(default)}` | {valid_values(spec)} | {key_documentation(spec)} |")
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
    """A default as README writes it: strings in double quotes, small floats as 2e-4."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float) and 0 < abs(value) < 1e-2:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return repr(value)


if __name__ == "__main__":
    print(key_table())
