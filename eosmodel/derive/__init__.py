"""Symbolic derivations (sympy) behind eosmodel's tuners and toy models (imported only by ``eosmodel derive``
and the tests: nothing else in the package imports sympy).

One module per topic; each exposes functions that return sympy expressions (nothing is computed or
printed at import) and a ``results()`` list used by :func:`eosmodel.derive.render.render_page`:

* :mod:`eosmodel.derive.armijo`: the largest Armijo-accepted stepsize on a quadratic;
* :mod:`eosmodel.derive.polyak`: the Polyak (SPS) stepsize on quadratics and its lower bound;
* :mod:`eosmodel.derive.stability`: the GD stability threshold eta * lambda < 2;
* :mod:`eosmodel.derive.self_stabilization`: fixed points, the EOS period-2 orbit, the flow and its
  conserved quantity for the self-stabilisation map;
* :mod:`eosmodel.derive.second_order`: the normalised map of the second-order regression model, its
  fixed points and period-2 orbits;
* :mod:`eosmodel.derive.growth`: sharpness growth under the oracle tuner eta = sigma / lambda;
* :mod:`eosmodel.derive.uv`: the exact uv map and the catapult thresholds 2/lambda_0 and 4/lambda_0;
* :mod:`eosmodel.derive.zhu`: the edge-of-stability minimum of Zhu et al.'s function.

``eosmodel derive [--out PATH]`` (or ``python -m derivations`` in a checkout) writes every result to one HTML page.
"""

from __future__ import annotations

import importlib

from eosmodel.derive._result import Result

MODULES = ("stability", "armijo", "polyak", "self_stabilization", "growth", "second_order", "uv", "zhu")


def all_results() -> list[Result]:
    """Every result of every module, in the order of :data:`MODULES`."""
    out: list[Result] = []
    for name in MODULES:
        out.extend(importlib.import_module(f"eosmodel.derive.{name}").results())
    return out


__all__ = ["MODULES", "Result", "all_results"]
