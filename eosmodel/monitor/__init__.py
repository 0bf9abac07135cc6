"""A sharpness monitor for your own JAX training loop (flax, equinox, plain pytrees; any optimizer).

Public API:

* :class:`Monitor`: ``Monitor(loss_fn, data, run_dir, key=..., every=10)``, then
  ``monitor.record(step, params, loss=..., grad=..., stepsize=... or opt_state=...)`` once per step
  and ``monitor.close()``; writes the standard trace (``eosmodel fit`` reads it) with the same
  warm-started tracker and chunked Hessian-vector products as ``eosmodel train``.
* :func:`adam_preconditioner`, :func:`rmsprop_preconditioner`: the diagonal preconditioner P of an
  optax Adam / RMSProp state, for the preconditioned sharpness λ₁(P⁻¹H) (Cohen et al., arXiv
  2207.14484).

See ``docs/examples/`` for complete loops.
"""

from eosmodel.monitor._monitor import Monitor, adam_preconditioner, rmsprop_preconditioner

__all__ = ["Monitor", "adam_preconditioner", "rmsprop_preconditioner"]
