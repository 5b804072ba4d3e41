"""`python -m ganaug.evaluate ...`: the best policies retrained over seeds (ganaug.results.evaluate), under the name
the README and every earlier release use; `ganaug evaluate` runs the same."""

import sys

from ganaug.results.evaluate import EVALUATION_CSV, main, policy_configs

__all__ = ["EVALUATION_CSV", "main", "policy_configs"]

if __name__ == "__main__":
    sys.exit(main())
