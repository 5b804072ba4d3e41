"""`python -m ganaug COMMAND ...`: the `ganaug` command without its console script."""

import sys

from ganaug.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m ganaug"))
