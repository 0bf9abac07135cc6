"""``eosmodel derive [--out PATH]``: render the symbolic derivations to one HTML page.

The derivations live in the top-level ``derivations/`` package of the repository, outside
``eosmodel`` (the library must not depend on it), so it is imported only inside :func:`run`: from
``sys.path`` if it is importable, else from the repository that holds this editable install.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

DEFAULT_OUT = "docs/derivations.html"


def register(subparsers) -> None:
    """Adds the ``derive`` command to the ``eosmodel`` parser."""
    parser = subparsers.add_parser(
        "derive",
        help="render the symbolic derivations (sympy) to an HTML page",
        description=(
            "Render every symbolic derivation of derivations/ (Armijo and Polyak on quadratics, the "
            "stability threshold, the self-stabilisation and second-order maps, the uv catapult, "
            "Zhu's minimum) to one self-contained HTML page."
        ),
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output HTML file (default {DEFAULT_OUT})")
    parser.set_defaults(func=run)


def _import_render():
    """Imports ``derivations.render``, falling back to the repository root of an editable install."""
    try:
        return importlib.import_module("derivations.render")
    except ModuleNotFoundError as err:
        if err.name not in ("derivations", "derivations.render"):
            raise
    repo_root = Path(__file__).resolve().parents[2]
    if not (repo_root / "derivations" / "__init__.py").is_file():
        from eosmodel.cli import UsageError

        raise UsageError(
            "the derivations package is not importable; run eosmodel derive from a source checkout "
            "(pip install -e . at the repository root, which holds derivations/)."
        )
    sys.path.insert(0, str(repo_root))
    return importlib.import_module("derivations.render")


def run(args: argparse.Namespace) -> int:
    """Writes the page to ``args.out`` and prints its path; returns the exit code (0)."""
    from eosmodel.cli import check_writable_file

    check_writable_file(args.out)
    render = _import_render()
    path = render.render_page(args.out)
    print(f"wrote {path}")
    return 0
