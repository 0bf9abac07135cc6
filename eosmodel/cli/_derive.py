"""``eosmodel derive [--out PATH]``: render the symbolic derivations to one HTML page.

The derivations are the package :mod:`eosmodel.derive` (sympy), imported only inside :func:`run`,
so the command works from an installed package and nothing else pays for importing sympy.
"""

from __future__ import annotations

import argparse

DEFAULT_OUT = "docs/derivations.html"


def register(subparsers) -> None:
    """Adds the ``derive`` command to the ``eosmodel`` parser."""
    parser = subparsers.add_parser(
        "derive",
        help="render the symbolic derivations (sympy) to an HTML page",
        description=(
            "Render every symbolic derivation of eosmodel.derive (Armijo and Polyak on quadratics, the "
            "stability threshold, the self-stabilisation and second-order maps, the uv catapult, "
            "Zhu's minimum) to one self-contained HTML page."
        ),
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output HTML file (default {DEFAULT_OUT})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Writes the page to ``args.out`` and prints its path; returns the exit code (0)."""
    from eosmodel.cli import check_writable_file
    from eosmodel.derive.render import render_page

    check_writable_file(args.out)
    path = render_page(args.out)
    print(f"wrote {path}")
    return 0
