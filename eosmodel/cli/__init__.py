"""The ``eosmodel`` command line: ``eosmodel <command> [options]``.

Each command lives in ``eosmodel/cli/_<command>.py`` and defines ``register(subparsers)``, which
adds its parser and sets ``func`` to a callable ``run(args) -> int`` (the exit code).

The error boundary (:func:`main`) sorts what reaches it into

* the user's mistakes, printed as one line ``eosmodel <command>: error: <sentence>`` with exit
  code 2: an :class:`eosmodel.errors.InputError` (``UsageError`` is the same type), a
  ``ValueError`` raised by a ``raise`` statement of eosmodel's own validation code, an OS error on
  a named file (missing, not writable, disk full, a file where a directory is needed), or memory
  that the machine does not have;
* Ctrl-C: one line saying how to continue, exit code 130 (run directories stay resumable: the
  trace is flushed at every logging check and the checkpoint is written atomically);
* everything else, a bug: the traceback, exit code 1. A ``ValueError`` raised inside numpy,
  json, scipy or codecs is a bug unless the code that called them turned it into an
  ``InputError`` naming the file or value (see :func:`eosmodel.errors.file_error`).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import linecache
import os
import sys
import tempfile
from pathlib import Path

from eosmodel.errors import InputError

# Order is the order shown by ``eosmodel --help``.
_COMMANDS = ("demo", "reproduce", "simulate", "sweep", "train", "fit", "derive")

#: Exit code of an interrupted command (128 + SIGINT, the shell's convention).
EXIT_INTERRUPTED = 130

#: The user-error type of the command line (the library's :class:`~eosmodel.errors.InputError`).
UsageError = InputError

_PACKAGE_DIR = Path(__file__).resolve().parents[1]

#: OS errors that describe the user's files or machine (reported in one line, exit code 2).
_USER_ERRNOS = {
    errno.ENOENT: "choose an existing path",
    errno.EACCES: "choose a location you may write to, or fix its permissions",
    errno.EPERM: "choose a location you may write to, or fix its permissions",
    errno.EROFS: "choose a location on a writable file system",
    errno.ENOSPC: "free some disk space or choose another location, then run the command again",
    errno.EDQUOT: "free some disk space or choose another location, then run the command again",
    errno.EISDIR: "give a file, not a directory",
    errno.ENOTDIR: "a parent of this path is a file; choose another path",
    errno.EEXIST: "choose another path or remove the existing one",
}


def check_writable_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Make sure the output directory ``path`` can be created and written, before any real work.

    Nothing is created: the path must be a directory or not exist, and its nearest existing
    ancestor must be a directory in which a temporary file can be written (it is removed at
    once). So a file given as ``--out``, a parent that is a file, or a read-only directory or
    file system is refused at once instead of after the data are loaded or the run has trained.

    Raises:
      InputError: naming the path and the fix.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path} is a file, not a directory; give a directory path (it is created if missing).")
    base = path
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise InputError(f"{option} {path} cannot be created: {base} is a file; choose a directory path.")
    try:
        fd, probe = tempfile.mkstemp(prefix=".eosmodel-write-test-", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise InputError(
            f"{option} {path} cannot be written ({reason.lower()}: {base}); choose a directory you may write to."
        ) from None
    return path


def check_writable_file(path: str | os.PathLike, option: str = "--out") -> Path:
    """Like :func:`check_writable_dir` for an output *file*: its directory must be writable."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{option} {path} is a directory; give the path of a file to write.")
    check_writable_dir(path.parent if str(path.parent) else Path("."), option=f"the directory of {option} {path}")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eosmodel",
        description="Stepsize tuners, sharpness and the edge of stability.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"eosmodel.cli._{name}")
        except ModuleNotFoundError as err:
            if err.name == f"eosmodel.cli._{name}":
                continue  # command not built yet
            raise
        module.register(subparsers)
    return parser


def _raised_by_eosmodel(err: BaseException) -> bool:
    """True when ``err`` comes from a ``raise`` statement in eosmodel's own code (a validation point).

    A ``ValueError`` raised inside another library (numpy, json, scipy, codecs), or by a builtin
    conversion such as ``float("x")`` on one of eosmodel's lines, is not: it is a bug unless the
    caller turned it into an :class:`InputError`.
    """
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename
    try:
        inside = Path(filename).resolve().is_relative_to(_PACKAGE_DIR)
    except OSError:
        return False
    return inside and linecache.getline(filename, tb.tb_lineno).lstrip().startswith("raise ")


def _user_message(err: BaseException) -> str | None:
    """The one-line message of a user-facing error, or None for a bug (keeps its traceback)."""
    if isinstance(err, InputError):
        return str(err)
    if isinstance(err, OSError):
        if err.errno is None and err.filename is None and _raised_by_eosmodel(err):
            return str(err)  # eosmodel's own message, e.g. FileNotFoundError("no trace at ...; give ...")
        if err.errno in _USER_ERRNOS and err.filename is not None:
            where = os.fspath(err.filename)
            return f"{where}: {(err.strerror or str(err)).lower()}; {_USER_ERRNOS[err.errno]}."
        return None
    if isinstance(err, MemoryError):
        return ("the machine ran out of memory; make the problem smaller (fewer grid points, a smaller "
                "model or chunk_size).")
    if type(err).__name__ == "XlaRuntimeError" and "RESOURCE_EXHAUSTED" in str(err):
        first = str(err).strip().splitlines()[0]
        return (f"the device ran out of memory ({first[:160]}); make the problem smaller (a smaller model, "
                "train.chunk_size or sharpness.max_iters).")
    if isinstance(err, ValueError) and _raised_by_eosmodel(err):
        return str(err)
    return None


def main(argv: list[str] | None = None) -> int:
    """Run ``eosmodel`` with ``argv``; returns the exit code (0, 2 user error, 3 diverged, 130 Ctrl-C).

    A bug raises (the interpreter prints the traceback and exits with code 1).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    if args.command != "derive":  # every command but derive compiles JAX programs
        from eosmodel._compilation_cache import enable_compilation_cache

        enable_compilation_cache()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        hint = getattr(args, "interrupt_hint", None) or "nothing was lost but the work in progress"
        print(f"\neosmodel {args.command}: interrupted (Ctrl-C); {hint}.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - sorted into user errors and bugs below
        message = _user_message(err)
        if message is None:
            raise
        print(f"eosmodel {args.command}: error: {' '.join(message.split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
