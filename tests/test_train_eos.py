"""Known results (docs/theory.md section 6 and arXiv 2312.00209) reproduced by the training loop.

On a two-hidden-layer MLP with MSE on the embedded MNIST-1D, full batch:

* GD at a fixed η: progressive sharpening (λ starts well below 2/η and rises), then the edge of
  stability: the sharpness averaged over the last part of the run is within 10% of 2/η;
* Armijo-GD (preset armijo-jax): ends with a higher sharpness than every fixed-η run, its
  stepsize shrinking as its sharpness grows, and its normalized sharpness η·λ stays below 2
  (median over the last part of the run);
* Polyak-GD (preset sps-0.5): a substantial fraction (>= 30%) of the measured steps have η·λ >= 2.

Settings (``SETTINGS``; the fast ones run by default, the slow ones with ``-m slow``):

* ``relu``: fc-relu, the first 200 examples, width 64, 1200 steps, η ∈ {0.15, 0.2}. Every
  result above holds (seeds 0, 1, 2: Armijo's median η·λ 1.67, 1.61, 1.57, with 98-99% of the
  measured steps below 2).
* ``tanh``: fc-tanh (the paper's activation), same size, η ∈ {0.1, 0.15}. Every result holds
  except "η·λ below 2": Armijo's η·λ hovers AT 2 (median 2.005; c = 0.3: 2.003, c = 0.5: 2.012;
  depth 3 or 4, width 256, ELU, digits, 1000 examples: 1.98-2.02). It is kept as a strict
  expected failure. The mechanism, from the curvature along the gradient R = gᵀHg/‖g‖²
  (``sharpness.grad_curvature``) measured along the Armijo runs: with fc-tanh R ≈ 0.81·λ and
  the accepted steps have η·R ≈ 1.6 (median), short of the quadratic bound 2(1 − c) = 1.8, so
  η·λ = η·R/(R/λ) reaches 2; the top direction then grows until its share of g caps η, the
  balance GD strikes at the edge. With fc-relu R ≈ 0.62·λ but the line search already rejects
  beyond η·R ≈ 1.05 (the loss along −g is far from quadratic: the step crosses ReLU kinks), which
  holds η·λ near 1.65. GD at the edge differs too: with fc-relu (demo) R ≈ 0.97·λ, g aligned
  with the top eigenvector; with fc-tanh R ≪ λ most of the time (median R/λ ≈ 4e-4 over the
  last 40% at η = 0.1), the oscillation along the top eigenvector tiny but for bursts.
* ``tanh-slow``, ``relu-slow``: 1000 examples, width 200 (50,410 parameters), 1500 steps.

The sharpness is measured every 5 steps: an odd period samples both phases of the period-2
oscillation at the edge of stability (an even period would see only one of them and bias the
average up or down). Small nets at large η hover further above 2/η than the 10% asked here
(fc-tanh width 64 at η = 0.4: +16%; η = 0.2: +9%), so the stepsizes are kept moderate and the
runs long enough to reach the edge.
"""

from __future__ import annotations

import numpy as np
import pytest

from eosmodel.train import run_training

SETTINGS = {
    "relu": {"model": "fc-relu", "n_train": 200, "width": 64, "steps": 1200, "etas": (0.15, 0.2)},
    "tanh": {"model": "fc-tanh", "n_train": 200, "width": 64, "steps": 1200, "etas": (0.1, 0.15)},
    "relu-slow": {"model": "fc-relu", "n_train": 1000, "width": 200, "steps": 1500, "etas": (0.15, 0.2)},
    "tanh-slow": {"model": "fc-tanh", "n_train": 1000, "width": 200, "steps": 1500, "etas": (0.1, 0.15)},
}
#: Settings where Armijo's η·λ does not stay below 2 (see the module docstring): strict xfail.
ARMIJO_AT_THE_EDGE = {
    "tanh": "median eta*lambda 2.005 over the last 40% (fc-tanh, MNIST-1D, 200 examples, width 64)",
    "tanh-slow": "median eta*lambda 2.00 over the last 40% (fc-tanh, MNIST-1D, 1000 examples, width 200)",
}
LAST = 0.4  # "the last part of the run": its last 40%


def _run(tmp_path, setting, tuner, label):
    s = SETTINGS[setting]
    cfg = {
        "data": {"name": "mnist1d", "n_train": s["n_train"], "n_test": 100},
        "model": {"name": s["model"], "width": s["width"], "depth": 2},
        "loss": {"name": "mse"},
        "tuner": tuner,
        "train": {"steps": s["steps"], "chunk_size": s["n_train"], "log_every": 100, "eval_every": 0, "checkpoint_every": 0},
        "sharpness": {"every": 5, "k": 1, "tol": 1e-3, "grad_curvature": True},
    }
    res = run_training(cfg, tmp_path / label, progress=False)
    assert res.status == "completed"
    tr = res.trace
    t, lam = tr.measured("sharpness")
    measured = np.isin(tr["step"], t)
    return t, lam, tr["stepsize"][measured], tr["grad_curvature"][measured]


@pytest.fixture(
    scope="module",
    params=["relu", "tanh", pytest.param("relu-slow", marks=pytest.mark.slow), pytest.param("tanh-slow", marks=pytest.mark.slow)],
)
def runs(request, tmp_path_factory):
    """The four runs of a setting: GD at each fixed eta, Armijo-GD, Polyak-GD (run once per module)."""
    setting = request.param
    tmp = tmp_path_factory.mktemp(f"eos_{setting}")
    out = {"setting": setting, "steps": SETTINGS[setting]["steps"], "gd": {}}
    for eta in SETTINGS[setting]["etas"]:
        out["gd"][eta] = _run(tmp, setting, {"name": "constant", "stepsize": eta}, f"gd{eta}")
    out["armijo"] = _run(tmp, setting, {"preset": "armijo-jax"}, "armijo")
    out["polyak"] = _run(tmp, setting, {"preset": "sps-0.5"}, "polyak")
    return out


def test_gd_progressive_sharpening_then_edge_of_stability(runs):
    steps = runs["steps"]
    for eta, (t, lam, _, _) in runs["gd"].items():
        edge = 2.0 / eta
        late = t >= (1 - LAST) * steps
        # Progressive sharpening: well below the edge early, then up to it.
        assert lam[t <= 0.1 * steps].min() < 0.8 * edge, (eta, lam[:10])
        # Edge of stability: the late sharpness averages to 2/eta within 10%.
        assert abs(lam[late].mean() / edge - 1) < 0.10, (eta, lam[late].mean(), edge)


def test_armijo_ends_sharper_than_every_fixed_stepsize(runs):
    steps = runs["steps"]
    final = {eta: lam[t >= 0.9 * steps].mean() for eta, (t, lam, _, _) in runs["gd"].items()}
    t, lam, eta, _ = runs["armijo"]
    armijo_final = lam[t >= 0.9 * steps].mean()
    assert armijo_final > max(final.values()), (armijo_final, final)
    # ... and its stepsize shrinks while the sharpness grows (the "snowball").
    first, last = t <= 0.5 * steps, t >= 0.9 * steps
    assert eta[last].mean() < eta[(t >= 0.4 * steps) & first].mean()
    assert lam[last].mean() > lam[(t >= 0.4 * steps) & first].mean()


def test_armijo_keeps_normalized_sharpness_below_two(runs, request):
    if runs["setting"] in ARMIJO_AT_THE_EDGE:
        request.applymarker(pytest.mark.xfail(strict=True, reason="at the edge, not below: " + ARMIJO_AT_THE_EDGE[runs["setting"]]))
    t, lam, eta, _ = runs["armijo"]
    late = t >= (1 - LAST) * runs["steps"]
    assert np.median(eta[late] * lam[late]) < 2.0, np.median(eta[late] * lam[late])


def test_armijo_step_respects_the_quadratic_bound_along_the_gradient(runs):
    """The mechanism's premise: an accepted Armijo step has η·R <= 2(1 − c) (R = gᵀHg/‖g‖²) up to
    the loss's departure from its quadratic model along −g; the measured steps stay below it."""
    t, lam, eta, curv = runs["armijo"]
    c = 0.1  # armijo-jax
    assert np.all(curv <= lam * (1 + 1e-2)), "the curvature along g cannot exceed the top eigenvalue"
    late = t >= (1 - LAST) * runs["steps"]
    assert np.median(eta[late] * curv[late]) < 2 * (1 - c), np.median(eta[late] * curv[late])


def test_polyak_spends_substantial_time_beyond_the_edge(runs):
    t, lam, eta, _ = runs["polyak"]
    frac = np.mean(eta * lam >= 2.0)
    assert frac >= 0.3, frac
