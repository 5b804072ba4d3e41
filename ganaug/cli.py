"""`ganaug tune|evaluate|generate|pipeline ...`: one command for every entry point.

Each subcommand hands its arguments to that module's own `main` (`python -m ganaug.tune` etc. keep working), so
its options, help and exit codes are the module's; only the program name in its help becomes `ganaug tune`.

    ganaug tune search_spaces/quickstart.yaml
    ganaug evaluate ~/ganaug_results/quickstart
    ganaug --version
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ganaug import __version__

# Subcommand -> (module whose main(argv, prog=...) runs it, one line for `ganaug --help`).
COMMANDS = {
    "tune": ("ganaug.search.tune", "search for the best augmentation policy (Ray Tune + Optuna)"),
    "evaluate": ("ganaug.results.evaluate", "retrain the best policies over seeds, report test accuracy"),
    "generate": ("ganaug.results.generate", "export a searched generator's synthetic images"),
    "pipeline": ("ganaug.trial.command", "train one policy (e.g. a best_policy.yaml) directly, without Ray"),
}


def main(argv: list[str] | None = None, prog: str = "ganaug") -> int:
    """Run `prog COMMAND ARGS...`; return the command's exit code (an unknown or missing command exits 2)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {name:<10}{line}" for name, (_, line) in COMMANDS.items())
        + f"\n\n`{prog} COMMAND --help` lists a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"ganaug {__version__}")
    parser.add_argument("command", metavar="COMMAND", choices=list(COMMANDS), help=f"one of {', '.join(COMMANDS)}")
    # Everything after the command, options included, is the command's own.
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        parser.error(f"a COMMAND is needed: one of {', '.join(COMMANDS)}")
    args = parser.parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    return module.main(args.args, prog=f"{prog} {args.command}")


if __name__ == "__main__":
    sys.exit(main())
