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
from ganaug.errors import EXIT_BAD_INPUT, InputError, exit_code

ROOT = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = Path(sys.executable).with_name("ganaug")  # what `pip install -e .` put beside this Python


def run(*command: str, timeout: int = 60, as_on_a_terminal: bool = False) -> subprocess.CompletedProcess:
    """`command` run from the repository; as_on_a_terminal: unbuffered, stderr into stdout (in the order a terminal
    shows them)."""
    assert Path(command[0]).exists() or command[0] == sys.executable, \
        f"{command[0]} is missing: install the project first (pip install -e \".[dev]\")"
    env = {**os.environ, "RAY_ADDRESS": "", **({"PYTHONUNBUFFERED": "1"} if as_on_a_terminal else {})}
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT} if as_on_a_terminal else \
        {"capture_output": True}
    return subprocess.run(command, cwd=ROOT, env=env, text=True, timeout=timeout, **streams)


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
               "--storage", str(tmp_path), "--num-cpus", "2", timeout=400, as_on_a_terminal=True)
    assert done.returncode == 0, done.stdout[-5000:]
    experiment = tmp_path / "quickstart-smoke"
    assert (experiment / "summary.csv").is_file()
    steps = done.stdout.split("Next steps:\n", 1)[1]
    for command in (f"tensorboard --logdir {experiment}", f"ganaug evaluate {experiment}",
                    f"-p RESULTS {experiment}", f"optuna-dashboard {experiment / 'optuna_study.journal'}"):
        assert command in steps, steps
    # The next steps are the last lines on the screen (no Ray worker's log line after them), and the one TensorBoard
    # command is theirs: not Ray's, which names Ray's temporary staging folder.
    assert steps.rstrip().endswith(f"optuna-dashboard {experiment / 'optuna_study.journal'}"), steps[-3000:]
    assert done.stdout.count("tensorboard --logdir") == 1, [line for line in done.stdout.splitlines()
                                                             if "tensorboard" in line.lower()]
    policy = yaml.safe_load((experiment / "best_policy.yaml").read_text())
    assert policy["search_command"].startswith("ganaug tune search_spaces/quickstart.yaml --smoke-test")


# ----------------------------------------------------------------------------------------------
# Bad input: every command answers through errors.exit_code, one `error:` line and exit 2.

@pytest.mark.parametrize("command, args", [
    ("tune", ["missing.yaml"]),
    ("evaluate", ["missing"]),
    ("generate", ["missing", "--per-class", "1", "--out", "out"]),
    ("pipeline", ["missing.yaml"]),
])
def test_every_command_answers_bad_input_with_one_line_and_exit_2(command, args, tmp_path, capsys):
    missing = str(tmp_path / args[0])
    assert main([command, missing, *args[1:]]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: ") and missing in err and len(err.strip().splitlines()) == 1, err


def test_debug_shows_the_traceback_behind_the_message(tmp_path, capsys):
    missing = str(tmp_path / "missing.yaml")
    assert main(["tune", missing, "--debug"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "Traceback (most recent call last):" and err[-1].startswith(f"error: {missing}")


def test_exit_code_passes_on_what_is_not_bad_input(capsys):
    assert exit_code(lambda: None) == 0
    assert exit_code(lambda: 1) == 1

    def bad_input() -> None:
        raise InputError("x: valid: y")

    def crash() -> None:
        raise RuntimeError("boom")

    assert exit_code(bad_input) == EXIT_BAD_INPUT and capsys.readouterr().err == "error: x: valid: y\n"
    with pytest.raises(RuntimeError, match="boom"):  # a bug or a failed run keeps its traceback
        exit_code(crash)
