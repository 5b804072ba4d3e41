"""InputError, the base of every error a user can fix by changing what they passed, and the exit code it means.

Each command line (`tune`, `evaluate`, `generate`, `pipeline`) runs its work through `exit_code`, which prints an
InputError as one `error: ...` line and exits EXIT_BAD_INPUT; anything else is a bug or a failed run, and keeps its
traceback. Imports nothing of ganaug.
"""

import difflib
import sys
import traceback
from collections.abc import Callable, Iterable

EXIT_BAD_INPUT = 2


class InputError(ValueError):
    """Bad input a user can fix: the one-line message names the file or key and what would be valid."""


def did_you_mean(word: str, candidates: Iterable) -> str:
    """" (did you mean 'x'?)" naming the candidate closest to `word` (compared as text), or "" when none is close."""
    close = difflib.get_close_matches(word, [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def exit_code(command: Callable[[], int | None], debug: bool = False) -> int:
    """Run a command line's work, `command()`, and return its exit code: what it returns (None meaning 0), or
    EXIT_BAD_INPUT when it raises an InputError, printed as one `error: <message>` line on stderr (with `debug`,
    after the traceback behind it). Any other exception propagates with its traceback."""
    try:
        code = command()
    except InputError as error:
        if debug:
            traceback.print_exception(error)
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0 if code is None else code
