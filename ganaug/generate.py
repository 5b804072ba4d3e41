"""`python -m ganaug.generate ...`: export a searched generator's images (ganaug.results.generate), under the name the
README and every earlier release use; `ganaug generate` runs the same."""

import sys

from ganaug.results.generate import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
