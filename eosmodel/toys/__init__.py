"""Toy losses of the edge of stability, each a pure ``loss(params, batch)`` with ``init(key)``.

Every factory returns a :class:`Toy` (docs/theory.md section 4):

* :func:`quadratic`: fixed Hessian, the control case (no sharpening, threshold eta*lambda = 2);
* :func:`second_order_regression`, :func:`second_order_regression_1d`: residuals quadratic in the
  parameters (Agarwala, Pedregosa, Pennington), with the normalised variables (x, y, e);
* :func:`uv`: the two-layer linear model of the catapult (Lewkowycz et al.);
* :func:`zhu`: the minimalist EOS function 1/4 (a^2 b^2 - 1)^2 (Zhu et al.);
* :func:`self_stabilization`: an exact loss for the self-stabilisation map (Damian et al.);
* :func:`two_layer_net`: small tanh/ReLU networks on synthetic teacher data.

and the reduced maps of the joint stepsize-sharpness dynamics with the tuner rules that act on
their states (``SelfStabilizationModel``, ``SecondOrderModel``, ``UVModel``, ``RULES``, ...;
all of ``eosmodel.toys._maps.__all__``).

The losses compute in the dtype of their parameters (float32, or float64 under
``jax.enable_x64``) and work with any optax optimizer, ``jax.grad`` and ``jax.hessian``.
"""

from eosmodel.toys import _maps
from eosmodel.toys._base import Toy
from eosmodel.toys._maps import (
    RULES,
    MapRule,
    SecondOrderModel,
    SecondOrderState,
    SelfStabilizationModel,
    SelfStabilizationState,
    UVModel,
    UVState,
    armijo_rule,
    cdat_rule,
    constant_rule,
    map_rule,
    oracle_rule,
    polyak_rule,
    reduce_toy,
    second_order_normalized_step,
)
from eosmodel.toys._quadratic import quadratic, quadratic_hessian
from eosmodel.toys._second_order import (
    second_order_1d_energy,
    second_order_1d_normalized,
    second_order_1d_params,
    second_order_regression,
    second_order_regression_1d,
)
from eosmodel.toys._self_stabilization import (
    self_stabilization,
    self_stabilization_params,
    self_stabilization_state,
)
from eosmodel.toys._two_layer import two_layer_net
from eosmodel.toys._uv import uv, uv_lambda, uv_output, uv_residual
from eosmodel.toys._zhu import zhu, zhu_cd

__all__ = [
    "Toy",
    "quadratic",
    "quadratic_hessian",
    "second_order_regression",
    "second_order_regression_1d",
    "second_order_1d_energy",
    "second_order_1d_normalized",
    "second_order_1d_params",
    "self_stabilization",
    "self_stabilization_params",
    "self_stabilization_state",
    "two_layer_net",
    "uv",
    "uv_lambda",
    "uv_output",
    "uv_residual",
    "zhu",
    "zhu_cd",
    *_maps.__all__,
]

