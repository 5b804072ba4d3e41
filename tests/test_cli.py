"""The one command: `ganaug tune|evaluate|generate|pipeline ...`, as the console script and as `python -m ganaug`."""

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

import ganaug
from ganaug.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = Path(sys.executable).with_name("ganaug")  # what `pip install -e .` put beside this Python


def run(*command: str, timeout: int = 60) -> subprocess.CompletedProcess:
    assert Path(command[0]).exists() or command[0] == sys.executable, \
        f"{command[0]} is missing: install the project first (pip install -e \".[dev]\")"
    env = {**os.environ, "RAY_ADDRESS": ""}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_version_is_single_sourced_and_printed_by_both_forms():
    assert version("ganaug") == ganaug.__version__  # pyproject reads ganaug.__version__
    for command in ([str(CONSOLE_SCRIPT)], [sys.executable, "-m", "ganaug"]):
        done = run(*command, "--version")
        assert (done.returncode, done.stdout.strip()) == (0, f"ganaug {ganaug.__version__}"), done.stderr


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_command_shows_its_own_name_in_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: ganaug {command} ")


def test_help_through_the_console_script_and_python_m():
    assert run(str(CONSOLE_SCRIPT), "tune", "--help").stdout.startswith("usage: ganaug tune ")
    assert run(sys.executable, "-m", "ganaug", "tune", "--help").stdout.startswith("usage: python -m ganaug tune ")
    assert run(sys.executable, "-m", "ganaug.tune", "--help").stdout.startswith("usage: python -m ganaug.tune ")


@pytest.mark.parametrize("argv, message", [([], "a COMMAND is needed"), (["train"], "invalid choice: 'train'")])
def test_a_missing_or_unknown_command_exits_2_naming_the_valid_ones(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert message in error and "tune" in error and "evaluate" in error


def test_a_command_returns_its_own_exit_code(tmp_path, capsys):
    assert main(["tune", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'missing.yaml'}")


@pytest.mark.slow
def test_smoke_search_through_the_console_script_ends_with_next_steps(tmp_path):
    done = run(str(CONSOLE_SCRIPT), "tune", "search_spaces/quickstart.yaml", "--smoke-test",
               "--storage", str(tmp_path), "--num-cpus", "2", timeout=400)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    experiment = tmp_path / "quickstart-smoke"
    assert (experiment / "summary.csv").is_file()
    steps = done.stdout.split("Next steps:\n", 1)[1]
    for command in (f"tensorboard --logdir {experiment}", f"ganaug evaluate {experiment}",
                    f"-p RESULTS {experiment}", f"optuna-dashboard {experiment / 'optuna_study.journal'}"):
        assert command in steps, steps
    policy = yaml.safe_load((experiment / "best_policy.yaml").read_text())
    assert policy["search_command"].startswith("ganaug tune search_spaces/quickstart.yaml --smoke-test")
