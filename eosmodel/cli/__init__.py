"""The ``eosmodel`` command line: ``eosmodel <command> [options]``.

Each command lives in ``eosmodel/cli/_<command>.py`` and defines ``register(subparsers)``, which
adds its parser and sets ``func`` to a callable ``run(args) -> int`` (the exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Order is the order shown by ``eosmodel --help``.
_COMMANDS = ("demo", "simulate", "sweep", "train", "fit", "derive")


class UsageError(Exception):
    """A user error that the CLI reports in one sentence (exit code 2)."""


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


def main(argv: list[str] | None = None) -> int:
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
    except (UsageError, FileNotFoundError, ValueError) as err:
        print(f"eosmodel {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
