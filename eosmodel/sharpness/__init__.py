"""Sharpness: Hessian-vector products on pytrees, top-k Hessian eigenpairs, warm-started tracking.

Public API (see docs/interfaces.md):

* ``hvp(loss, params, batch, v)``: forward-over-reverse Hessian-vector product.
* ``full_loss``, ``full_value_and_grad``, ``hessian_matvec``: exact full-data mean loss, gradient
  and Hessian operator, accumulated over chunks of examples (memory bounded); the operator
  linearises the gradient once and runs only tangent passes when the residuals fit
  ``LINEARIZE_BUDGET_BYTES``.
* ``value_grad_and_matvec``, ``linearize_gradient``: the loss, gradient and Hessian operator from
  one shared pass (a training step that also measures sharpness pays its gradient once).
* ``top_eigenpairs(matvec, like, k, *, key, v0, tol, max_iters) -> EigResult``: Lanczos with full
  reorthogonalisation and a Kato-Temple stopping rule (``tol`` = relative eigenvalue accuracy).
* ``SharpnessTracker`` / ``TrackerState``: warm-started estimates along a training run.
* ``dense_hessian``, ``dense_top_eigenpairs``: dense reference for small models.
"""

from eosmodel.sharpness._dense import dense_hessian, dense_top_eigenpairs
from eosmodel.sharpness._hvp import (
    LINEARIZE_BUDGET_BYTES,
    full_loss,
    full_value_and_grad,
    hessian_matvec,
    hvp,
    linearization_bytes,
    linearize_gradient,
    value_grad_and_matvec,
)
from eosmodel.sharpness._lanczos import DEFAULT_MAX_ITERS, EigResult, top_eigenpairs
from eosmodel.sharpness._tracker import SharpnessTracker, TrackerState

__all__ = [
    "DEFAULT_MAX_ITERS",
    "LINEARIZE_BUDGET_BYTES",
    "EigResult",
    "SharpnessTracker",
    "TrackerState",
    "dense_hessian",
    "dense_top_eigenpairs",
    "full_loss",
    "full_value_and_grad",
    "hessian_matvec",
    "hvp",
    "linearization_bytes",
    "linearize_gradient",
    "top_eigenpairs",
    "value_grad_and_matvec",
]
