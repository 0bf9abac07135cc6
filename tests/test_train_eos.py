"""Known results (science.md section 6 and arXiv 2312.00209) reproduced by the training loop.

On an fc-tanh MLP with MSE on the embedded MNIST-1D, full batch:

* GD at a fixed η: progressive sharpening (λ starts well below 2/η and rises), then the edge of
  stability: the sharpness averaged over the last part of the run is within 10% of 2/η;
* Armijo-GD (preset armijo-jax): ends with a higher sharpness than every fixed-η run, its
  stepsize shrinking as its sharpness grows; its normalized sharpness η·λ should stay below 2
  (median over the last part of the run): at the scale tested here it hovers at 2.00 instead
  (an expected failure, see that test);
* Polyak-GD (preset sps-0.5): a substantial fraction (>= 30%) of the measured steps have η·λ >= 2.

The sharpness is measured every 5 steps: an odd period samples both phases of the period-2
oscillation at the edge of stability (an even period would see only one of them and bias the
average up or down).

Settings (see ``SETTINGS``): the fast version (default run) uses the first 200 examples, width
64, 1200 steps, η ∈ {0.1, 0.15}; the slow one 1000 examples, width 200 (the 50,410-parameter
fc-tanh on MNIST-1D), 1500 steps, η ∈ {0.1, 0.15}. Small nets at large η hover further above
2/η than the 10% asked here (width 64 at η = 0.4: +16%; η = 0.2: +9%), so the stepsizes are
kept small and the runs long enough to reach the edge.
"""

from __future__ import annotations

import numpy as np
import pytest

from eosmodel.train import run_training

SETTINGS = {
    "fast": {"n_train": 200, "width": 64, "steps": 1200, "etas": (0.1, 0.15)},
    "slow": {"n_train": 1000, "width": 200, "steps": 1500, "etas": (0.1, 0.15)},
}
LAST = 0.4  # "the last part of the run": its last 40%


def _run(tmp_path, setting, tuner, label):
    s = SETTINGS[setting]
    cfg = {
        "data": {"name": "mnist1d", "n_train": s["n_train"], "n_test": 100},
        "model": {"name": "fc-tanh", "width": s["width"], "depth": 2},
        "loss": {"name": "mse"},
        "tuner": tuner,
        "train": {"steps": s["steps"], "chunk_size": s["n_train"], "log_every": 100, "eval_every": 0, "checkpoint_every": 0},
        "sharpness": {"every": 5, "k": 1, "tol": 1e-3},
    }
    res = run_training(cfg, tmp_path / label, progress=False)
    assert res.status == "completed"
    tr = res.trace
    t, lam = tr.measured("sharpness")
    eta = tr["stepsize"][np.isin(tr["step"], t)]
    return t, lam, eta


@pytest.fixture(scope="module", params=["fast", pytest.param("slow", marks=pytest.mark.slow)])
def runs(request, tmp_path_factory):
    """The four runs of a setting: GD at each fixed eta, Armijo-GD, Polyak-GD (run once per module)."""
    setting = request.param
    tmp = tmp_path_factory.mktemp(f"eos_{setting}")
    out = {"steps": SETTINGS[setting]["steps"], "gd": {}}
    for eta in SETTINGS[setting]["etas"]:
        out["gd"][eta] = _run(tmp, setting, {"name": "constant", "stepsize": eta}, f"gd{eta}")
    out["armijo"] = _run(tmp, setting, {"preset": "armijo-jax"}, "armijo")
    out["polyak"] = _run(tmp, setting, {"preset": "sps-0.5"}, "polyak")
    return out


def test_gd_progressive_sharpening_then_edge_of_stability(runs):
    steps = runs["steps"]
    for eta, (t, lam, _) in runs["gd"].items():
        edge = 2.0 / eta
        late = t >= (1 - LAST) * steps
        # Progressive sharpening: well below the edge early, then up to it.
        assert lam[t <= 0.1 * steps].min() < 0.8 * edge, (eta, lam[:10])
        # Edge of stability: the late sharpness averages to 2/eta within 10%.
        assert abs(lam[late].mean() / edge - 1) < 0.10, (eta, lam[late].mean(), edge)


def test_armijo_ends_sharper_than_every_fixed_stepsize(runs):
    steps = runs["steps"]
    final = {eta: lam[t >= 0.9 * steps].mean() for eta, (t, lam, _) in runs["gd"].items()}
    t, lam, eta = runs["armijo"]
    armijo_final = lam[t >= 0.9 * steps].mean()
    assert armijo_final > max(final.values()), (armijo_final, final)
    # ... and its stepsize shrinks while the sharpness grows (the "snowball").
    first, last = t <= 0.5 * steps, t >= 0.9 * steps
    assert eta[last].mean() < eta[(t >= 0.4 * steps) & first].mean()
    assert lam[last].mean() > lam[(t >= 0.4 * steps) & first].mean()


@pytest.mark.xfail(
    strict=True,
    reason=(
        "not reproduced at this scale: Armijo's eta*lambda hovers AT 2 (median over the last 40%: "
        "2.005 with c = 0.1, 2.003 with c = 0.3, 2.012 with c = 0.5; MNIST-1D, 200 examples, width 64) "
        "while lambda keeps growing, i.e. it sits at the edge without self-stabilising rather than "
        "below it as in arXiv 2312.00209 (CIFAR-10 subsets)"
    ),
)
def test_armijo_keeps_normalized_sharpness_below_two(runs):
    t, lam, eta = runs["armijo"]
    late = t >= (1 - LAST) * runs["steps"]
    assert np.median(eta[late] * lam[late]) < 2.0, np.median(eta[late] * lam[late])


def test_polyak_spends_substantial_time_beyond_the_edge(runs):
    t, lam, eta = runs["polyak"]
    frac = np.mean(eta * lam >= 2.0)
    assert frac >= 0.3, frac
