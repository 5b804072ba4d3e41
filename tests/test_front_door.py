"""The README's quick start is what CI runs: install command and test command stay in step with .ci/run."""

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_quick_start_is_install_quickstart_test():
    install, quickstart, tests = quick_start_commands()
    assert install == 'pip install -e ".[dev]"'
    assert quickstart == "python -m ganaug.tune search_spaces/quickstart.yaml"
    assert tests.startswith("python -m pytest")
    assert (ROOT / "search_spaces" / "quickstart.yaml").is_file()


def test_ci_runs_the_readme_install_and_test_commands():
    install, _, tests = quick_start_commands()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert any(line.endswith(install.replace("pip install", "pip install -q")) or line.endswith(install)
               for line in ci_lines), "CI must install the way the README says"
    assert tests in ci_lines, "CI must run the README's test command"


def test_dependencies_cover_the_stack():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=\[ ]", d)[0] for d in project["dependencies"]}
    for needed in ("ray", "torch", "torchvision", "optuna", "numpy", "pandas", "tensorboard", "pyyaml",
                   "pydantic", "scikit-learn", "matplotlib"):
        assert needed in names
    assert {"pytest", "nbclient", "ipykernel", "ruff"} <= {re.split(r"[<>=\[ ]", d)[0]
                                                          for d in project["optional-dependencies"]["dev"]}
    assert project["requires-python"] == ">=3.10"
