"""InputError, the base of every error a user can fix by changing what they passed, and the exit code it means.

Each command line (`tune`, `evaluate`, `generate`, `pipeline`) prints an InputError as one `error: ...` line and
exits EXIT_BAD_INPUT; anything else is a bug or a failed run, and keeps its traceback. Imports nothing of ganaug.
"""

import difflib
from collections.abc import Iterable

EXIT_BAD_INPUT = 2


class InputError(ValueError):
    """Bad input a user can fix: the one-line message names the file or key and what would be valid."""


def did_you_mean(word: str, candidates: Iterable) -> str:
    """" (did you mean 'x'?)" naming the candidate closest to `word` (compared as text), or "" when none is close."""
    close = difflib.get_close_matches(word, [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
