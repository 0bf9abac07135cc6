"""The user-error type: a mistake in the user's input, reported by the CLI in one sentence.

:class:`InputError` marks a validation point: a config value, a command-line option, or a file
given by the user that cannot be used as it is. Its message is one sentence that names the thing
and the fix; ``eosmodel`` prints it and exits with code 2. Any other exception reaching the
command line is a bug in eosmodel and keeps its traceback (exit code 1).

It subclasses ``ValueError``, so ``except ValueError`` in callers of the Python API still works.
This module imports nothing from eosmodel: every layer may raise it.
"""

from __future__ import annotations

import os

__all__ = ["InputError", "describe_cause", "file_error"]


class InputError(ValueError):
    """A mistake in the user's input (config, option, file); the message says what and how to fix it."""


def describe_cause(err: BaseException) -> str:
    """A short cause for a message: the first line of ``str(err)``, or where a byte is not UTF-8."""
    if isinstance(err, UnicodeDecodeError):
        return f"byte {err.start} is not UTF-8 text"
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def file_error(path: str | os.PathLike, what: str, err: BaseException, fix: str) -> InputError:
    """An :class:`InputError` for a file that does not parse: names the file, the kind and the cause.

    ``file_error(p, "a JSON file", err, "fix its syntax")`` reads "<p> is not a JSON file
    (<cause>); fix its syntax." The cause is the first line of ``str(err)`` (or the exception's
    type when that is empty), so library messages never stand alone as the user's mistake. A
    ``UnicodeDecodeError`` gives "<p> is not UTF-8 text (byte N is not); save it as UTF-8 text."
    """
    if isinstance(err, UnicodeDecodeError):
        return InputError(f"{os.fspath(path)} is not UTF-8 text (byte {err.start} is not); save it as UTF-8 text.")
    return InputError(f"{os.fspath(path)} is not {what} ({describe_cause(err)}); {fix}.")
