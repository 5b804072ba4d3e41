"""Each fact about a policy key lives on its TrialConfig field: the checks, the `valid:` hints, CHOICES and the docs'
table of the keys (docs/search-space.md) are read from the field's limits, choices and documentation, so none of them
can drift; the docs' table of the data keys is read from DataConfig's fields the same way."""

from __future__ import annotations

import dataclasses
import difflib
import subprocess
import sys
from pathlib import Path

import pytest

from ganaug.config import CHOICES, ConfigError, TrialConfig
from ganaug.data import DataConfig, check_attribute_columns, check_cutout
from ganaug.errors import InputError
from ganaug.options import limits_hint, valid_values
from ganaug.space.keys import data_key_table, key_table, metric_table

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {spec.name: spec for spec in dataclasses.fields(TrialConfig)}
LIMITED = [(name, bound, limit) for name, spec in FIELDS.items() for bound, limit in spec.metadata["limits"].items()]
REGENERATE = ("{page}'s {what} table is not the one {source} gives: regenerate it with "
              "`python -m ganaug.space.keys{argument}` and paste the output over the table under \"{heading}\"")
TABLES = {  # heading on a docs page -> (the page, the renderer, what REGENERATE says)
    "## Policy keys (`fixed:` and `search:`)": ("search-space.md", key_table,
                                                ("policy-key", "TrialConfig's fields", "")),
    "## Data keys": ("search-space.md", data_key_table, ("data-key", "DataConfig's fields", " data")),
    "## Every reported metric": ("outputs.md", metric_table, ("metric", "ganaug.metrics", " metrics")),
}


@pytest.mark.parametrize("heading", list(TABLES))
def test_the_docs_tables_are_the_generated_ones(heading):
    page, render, (what, source, argument) = TABLES[heading]
    section = (ROOT / "docs" / page).read_text().split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = section[section.index("\n| ") + 1:].split("\n\n", 1)[0].rstrip("\n")
    generated = render()
    diff = "\n".join(difflib.unified_diff(rows.splitlines(), generated.splitlines(), f"docs/{page}",
                                          f"{render.__name__}()", lineterm="", n=0))
    message = REGENERATE.format(page=f"docs/{page}", what=what, source=source, argument=argument, heading=heading)
    assert rows == generated, f"{message}.\n{diff}"


@pytest.mark.parametrize(("argument", "render"), [([], key_table), (["data"], data_key_table),
                                                   (["metrics"], metric_table)])
def test_python_m_prints_the_tables(argument, render):
    done = subprocess.run([sys.executable, "-m", "ganaug.space.keys", *argument], capture_output=True, text=True,
                          timeout=120, check=True, cwd=ROOT)
    assert done.stdout == render() + "\n" and done.stderr == ""


def test_the_data_table_has_one_row_per_data_key_with_its_default_and_doc():
    rows = data_key_table().splitlines()[2:]
    fields = dataclasses.fields(DataConfig)
    assert [row.split(" | ")[0] for row in rows] == [f"| `{spec.name}`" for spec in fields]
    assert "| `val_fraction` | `0.1` | Stratified, seeded share of the train split held out as validation" in rows[6]
    for spec in fields:
        doc = spec.metadata["doc"]
        assert doc.strip() and "\n" not in doc and "|" not in doc, spec.name  # one line of a markdown table


def test_the_table_has_one_row_per_key_with_its_default_and_hint():
    rows = key_table().splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows] == [f"| `{name}`" for name in FIELDS]
    assert "| `gan_lr` | `2e-4` | a number > 0 | Adam learning rate of G and D. |" in rows
    gan = next(row for row in rows if row.startswith("| `gan` |"))
    assert "| cgan, acgan, ali, translation | GAN family: cgan (label-conditioned D) / acgan" in gan
    assert "{choices}" not in key_table()


def test_every_key_is_documented_and_every_number_limited():
    for name, spec in FIELDS.items():
        doc, choices = spec.metadata["doc"], spec.metadata["choices"]
        assert doc.strip() and "\n" not in doc and "|" not in doc, name  # one line of a markdown table
        assert ("{choices}" in doc) == bool(choices), f"{name}: a choice key's doc places its choices"
        if type(spec.default) in (int, float):
            assert spec.metadata["limits"], f"{name} is a number without limits"


def test_choices_are_read_from_the_fields():
    declared = {name: tuple(spec.metadata["choices"]) for name, spec in FIELDS.items() if spec.metadata["choices"]}
    assert declared == CHOICES
    assert CHOICES["gan"] == ("cgan", "acgan", "ali", "translation")
    assert CHOICES["labeling"] == ("pseudo", "lsro", "all_in_one", "distill")


@pytest.mark.parametrize("name", list(CHOICES))
def test_a_value_outside_the_choices_is_refused_with_the_choices(name):
    with pytest.raises(ConfigError) as error:
        TrialConfig.from_dict({name: "nope"}, where="f.yaml", combinations=False)
    assert str(error.value).startswith(f"f.yaml: {name}='nope' is not one of {', '.join(CHOICES[name])}")


@pytest.mark.parametrize(("name", "bound", "limit"), LIMITED, ids=[f"{n}-{b}" for n, b, _ in LIMITED])
def test_each_limit_is_checked_and_its_hint_names_it(name, bound, limit):
    """The value at the limit passes where the limit is inclusive; past it, one line names the key, the value and
    the hint derived from the field."""
    kind = type(FIELDS[name].default)
    step = 1 if kind is int else 0.01
    beyond = kind({"ge": limit - step, "gt": limit, "le": limit + step, "lt": limit}[bound])
    if bound in ("ge", "le"):
        TrialConfig.from_dict({name: limit}, combinations=False)
    with pytest.raises(ConfigError) as error:
        TrialConfig.from_dict({name: beyond}, where="f.yaml", combinations=False)
    hint = valid_values(FIELDS[name])
    assert str(error.value) == f"f.yaml: {name}={beyond!r} is out of range; valid: {hint}"
    assert str(limit) in hint


@pytest.mark.parametrize(("name", "hint"), [
    ("latent_dim", "an integer >= 1"),
    ("gan_lr", "a number > 0"),
    ("weight_decay", "a number >= 0"),
    ("d_real_fraction", "0 < d_real_fraction < 1"),
    ("gan_beta1", "0 <= gan_beta1 < 1"),
    ("predictor_weight", "0 < predictor_weight <= 100"),
    ("randaugment_magnitude", "an integer in [0, 30]"),
    ("teacher_ema", "0 <= teacher_ema < 1 (0 = off)"),
    ("filter_candidates", "an integer in [1, 32] (1 = off)"),
    ("diffaugment", 'a comma-separated subset of color, translation, cutout ("" = off)'),
    ("traditional_aug", "none, flip_translate, trivialaugment, randaugment"),
    ("classifier", "mlp, cnn, resnet, airbench, or torchvision:NAME or package.module:factory (a callable returning "
                   "an nn.Module)"),
])
def test_hints_read_as_before(name, hint):
    assert valid_values(FIELDS[name]) == hint


def test_limits_hint_words_every_form():
    assert limits_hint(int, {"ge": 1}) == "an integer >= 1"
    assert limits_hint(float, {"gt": 0}) == "a number > 0"
    assert limits_hint(bool, {}) == "true or false"
    assert limits_hint(int, {"ge": 0, "le": 30}) == "an integer in [0, 30]"
    assert limits_hint(float, {"gt": 0, "le": 10}, "w") == "0 < w <= 10"
    assert limits_hint(float, {"ge": 0, "lt": 0.5}, "s") == "0 <= s < 0.5"


def test_cutout_is_checked_against_the_images_in_one_place():
    check_cutout(8, 8, 9)
    check_cutout(0, 2, 2)
    with pytest.raises(ConfigError, match=r"^cutout=9 is out of range for 8x9 images; valid: an integer in \[0, 8\] "
                                          r"\(0 = off\)$"):
        check_cutout(9, 8, 9)
    for bad in (-1, 2.5, True):
        with pytest.raises(ConfigError, match=f"cutout={bad!r} is out of range"):
            check_cutout(bad, 8, 8)

    class Mine(InputError):
        pass

    with pytest.raises(Mine, match=r"^f.yaml: fixed.cutout: cutout=40 is out of range for 32x32 images"):
        check_cutout(40, 32, 32, where="f.yaml: fixed.cutout", error=Mine)


def test_attribute_columns_are_checked_in_one_place():
    check_attribute_columns("level, noise", ("level", "noise"))
    check_attribute_columns("", ())
    with pytest.raises(ConfigError, match=r"^gan_conditions='level,mass': 'mass' is not an attribute column of the "
                                          r"dataset; valid columns: level, noise$"):
        check_attribute_columns("level,mass", ("level", "noise"), where="gan_conditions='level,mass'")
    with pytest.raises(ConfigError, match=r"^'a', 'b' are not an attribute column of the dataset; valid columns: "
                                          r"none: the dataset has no attributes"):
        check_attribute_columns("a,b", ())
