"""`python -m ganaug.tune ...`: the search (ganaug.search.tune), under the name the README and every earlier release
use; `ganaug tune` runs the same."""

import sys

from ganaug.search.tune import ExperimentError, build_tuner, main, search, train_trial

__all__ = ["ExperimentError", "build_tuner", "main", "search", "train_trial"]

if __name__ == "__main__":
    sys.exit(main())
