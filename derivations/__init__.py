"""Symbolic derivations (sympy) behind eosmodel's tuners and toy models.

One module per topic; each exposes functions that return sympy expressions (nothing is computed or
printed at import) and a ``results()`` list used by :func:`derivations.render.render_page`:

* :mod:`derivations.armijo`: the largest Armijo-accepted stepsize on a quadratic;
* :mod:`derivations.polyak`: the Polyak (SPS) stepsize on quadratics and its lower bound;
* :mod:`derivations.stability`: the GD stability threshold eta * lambda < 2;
* :mod:`derivations.self_stabilization`: fixed points, the EOS period-2 orbit, the flow and its
  conserved quantity for the self-stabilisation map;
* :mod:`derivations.second_order`: the normalised map of the second-order regression model, its
  fixed points and period-2 orbits;
* :mod:`derivations.growth`: sharpness growth under the oracle tuner eta = sigma / lambda;
* :mod:`derivations.uv`: the exact uv map and the catapult thresholds 2/lambda_0 and 4/lambda_0;
* :mod:`derivations.zhu`: the edge-of-stability minimum of Zhu et al.'s function.

``python -m derivations [--out PATH]`` (or ``eosmodel derive``) writes every result to one HTML page.
"""

from __future__ import annotations

import importlib

from derivations._result import Result

MODULES = ("stability", "armijo", "polyak", "self_stabilization", "growth", "second_order", "uv", "zhu")


def all_results() -> list[Result]:
    """Every result of every module, in the order of :data:`MODULES`."""
    out: list[Result] = []
    for name in MODULES:
        out.extend(importlib.import_module(f"derivations.{name}").results())
    return out


__all__ = ["MODULES", "Result", "all_results"]
