"""The symbolic derivations, kept importable as ``derivations`` from a checkout.

The code lives in the package, :mod:`eosmodel.derive` (so ``eosmodel derive`` works from an
installed package); this folder re-exports it: ``from derivations import armijo`` and
``python -m derivations [--out PATH]`` work as before.
"""

from __future__ import annotations

import importlib
import sys

from eosmodel.derive import MODULES, Result, all_results

for _name in (*MODULES, "render"):
    _module = importlib.import_module(f"eosmodel.derive.{_name}")
    sys.modules[f"{__name__}.{_name}"] = _module
    globals()[_name] = _module

__all__ = ["MODULES", "Result", "all_results", *MODULES, "render"]
