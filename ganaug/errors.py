"""InputError, the base of every error a user can fix by changing what they passed, and the exit code it means.

Each command line (`tune`, `evaluate`, `generate`, `pipeline`) prints an InputError as one `error: ...` line and
exits EXIT_BAD_INPUT; anything else is a bug or a failed run, and keeps its traceback. Imports nothing of ganaug.
"""

EXIT_BAD_INPUT = 2


class InputError(ValueError):
    """Bad input a user can fix: the one-line message names the file or key and what would be valid."""
