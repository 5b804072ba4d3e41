"""`python -m ganaug.pipeline ...`: train one policy without Ray (ganaug.trial.command), under the name the README and
every earlier release use; `ganaug pipeline` runs the same."""

import sys

from ganaug.trial.command import main
from ganaug.trial.loop import run

__all__ = ["main", "run"]

if __name__ == "__main__":
    sys.exit(main())
