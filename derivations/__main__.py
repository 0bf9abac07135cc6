"""``python -m derivations [--out PATH]``: writes every derivation to one HTML page (as ``eosmodel derive``)."""

from __future__ import annotations

import argparse
import sys

from eosmodel.derive.render import render_page

DEFAULT_OUT = "docs/derivations.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m derivations", description="Render every symbolic derivation to HTML."
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output HTML file (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    path = render_page(args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
