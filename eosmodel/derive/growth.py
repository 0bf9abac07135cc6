"""Sharpness growth under the oracle tuner eta_t = sigma / lambda_t (docs/theory.md 4.1).

With eta_t lambda_t = sigma < 2 the oscillation |1 - sigma| < 1 decays, the self-stabilising term
vanishes and lambda_{t+1} = lambda_t + sigma alpha / lambda_t: lambda_t^2 ~ lambda_0^2 + 2 sigma alpha t.
"""

from __future__ import annotations

import functools

import sympy as sp

from eosmodel.derive._result import Result

t = sp.symbols("t", nonnegative=True)
sigma, alpha, lam0, lam_t = sp.symbols("sigma alpha lambda_0 lambda_t", positive=True)


def sharpness_step() -> sp.Expr:
    r"""One step without oscillation (:math:`x = 0`): :math:`\lambda_{t+1} = \lambda_t + \eta_t\alpha = \lambda_t + \sigma\alpha/\lambda_t`."""
    return lam_t + (sigma / lam_t) * alpha


@functools.cache
def squared_increment() -> sp.Expr:
    r"""The exact increment :math:`\lambda_{t+1}^2 - \lambda_t^2 = 2\sigma\alpha + \sigma^2\alpha^2/\lambda_t^2`.

    Summing it gives :math:`\lambda_T^2 = \lambda_0^2 + 2\sigma\alpha T + \sum_{t<T}\sigma^2\alpha^2/\lambda_t^2`:
    the correction grows only like :math:`\log T`.
    """
    return sp.expand(sharpness_step() ** 2 - lam_t**2)


@functools.cache
def growth_law() -> sp.Expr:
    r"""The solution of :math:`d\lambda/dt = \sigma\alpha/\lambda`, :math:`\lambda(0) = \lambda_0`: :math:`\lambda(t) = \sqrt{\lambda_0^2 + 2\sigma\alpha t}`."""
    lam = sp.Function("lambda")
    ode = sp.Eq(lam(t).diff(t), sigma * alpha / lam(t))
    solutions = sp.dsolve(ode, lam(t), ics={lam(0): lam0})
    solutions = solutions if isinstance(solutions, list) else [solutions]
    (positive,) = [s.rhs for s in solutions if sp.simplify(s.rhs.subs(t, 0) - lam0) == 0]
    return sp.simplify(positive)


def results() -> list[Result]:
    """The results of this module, for the rendered page."""
    return [
        Result(
            key="growth.oracle",
            title="Sharpness growth under the oracle tuner",
            statement=(
                r"With \(\eta_t = \sigma/\lambda_t\), \(\sigma < 2\), the top-direction oscillation "
                r"decays (\(|1-\sigma| < 1\)), the self-stabilising term vanishes and the sharpness "
                r"grows without bound: \(\lambda_t^2 \approx \lambda_0^2 + 2\sigma\alpha t\), "
                r"\(\eta_t \propto t^{-1/2}\)."
            ),
            equations=(
                (r"\lambda_{t+1}", sharpness_step()),
                (r"\lambda_{t+1}^2 - \lambda_t^2", squared_increment()),
                (r"\lambda(t)", growth_law()),
            ),
            reference="Roulet, Agarwala, Pedregosa, arXiv:2312.00209",
        )
    ]
