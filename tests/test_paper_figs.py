"""Tests of the figure scripts on small fake run directories written with the trace API: the
figure file is produced and the plotted data are the traces' data."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from eosmodel.trace import Trace  # noqa: E402

FIGS = Path(__file__).resolve().parents[1] / "paper_figs"


def _import(name: str):
    if str(FIGS) not in sys.path:
        sys.path.insert(0, str(FIGS))
    spec = importlib.util.spec_from_file_location(f"paper_figs_{name}", FIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_run(run_dir: Path, model: str, tuner: dict, batch_size: int = 0, seed: int = 0, steps: int = 40) -> Trace:
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    if tuner["name"] == "constant":
        stepsize = np.full(steps, tuner["stepsize"])
    else:
        stepsize = 0.3 * np.exp(-t / 30.0) * (1.0 + 0.1 * rng.random(steps))
    sharpness = np.full(steps, np.nan)
    every = 5
    sharpness[::every] = 5.0 + np.cumsum(rng.random(steps))[::every]
    columns = {
        "step": t,
        "loss": np.exp(-t / 20.0) * (1.0 + 0.05 * rng.random(steps)),
        "grad_norm_sq": rng.random(steps),
        "stepsize": stepsize,
        "sharpness": sharpness,
    }
    config = {
        "data": {"name": "synthetic"},
        "model": {"name": model},
        "loss": {"name": "mse"},
        "tuner": dict(tuner),
        "train": {"steps": steps, "batch_size": batch_size},
    }
    trace = Trace.from_columns(columns, config)
    trace.save(run_dir)
    return trace


TUNERS = {
    "gd_eta0.1": {"name": "constant", "stepsize": 0.1},
    "gd_eta0.05": {"name": "constant", "stepsize": 0.05},
    "armijo": {"name": "armijo", "c": 0.1, "preset": "armijo-jax"},
    "polyak": {"name": "polyak", "c": 0.5, "f_star": 0.0, "max_stepsize": 1.0, "preset": "sps-0.5"},
}


@pytest.fixture(scope="module")
def full_batch_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fig1runs")
    runs = {}
    for i, model in enumerate(("fc-tanh", "cnn-relu")):
        for j, (tag, tuner) in enumerate(TUNERS.items()):
            run_dir = root / "nested" / f"{model}_{tag}"
            runs[(model, tag)] = _fake_run(run_dir, model, tuner, seed=10 * i + j)
    return root, runs


@pytest.fixture(scope="module")
def stochastic_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fig35runs")
    runs = {}
    sgd = {"name": "constant", "stepsize": 0.1}
    armijo = {"name": "armijo", "preset": "armijo-vaswani"}
    polyak = {"name": "polyak", "c": 0.2, "preset": "sps-0.2"}
    seed = 0
    for model in ("fc-relu", "vgg11-bn", "resnet34"):
        for b in (128, 32):
            for tag, tuner in (("sgd", sgd), ("armijo", armijo), ("polyak", polyak)):
                seed += 1
                run_dir = root / f"{model}_b{b}_{tag}"
                runs[(model, b, tag)] = _fake_run(run_dir, model, tuner, batch_size=b, seed=seed)
    return root, runs


def _line(ax, label):
    lines = [ln for ln in ax.get_lines() if ln.get_label() == label]
    assert len(lines) == 1, f"expected one line labelled {label!r}, got {[ln.get_label() for ln in ax.get_lines()]}"
    return lines[0]


def _hlines(ax):
    """y values of the horizontal lines (axhline: x in axes coordinates) of an axis."""
    return [float(ln.get_ydata()[0]) for ln in ax.get_lines() if ln.get_transform() != ax.transData]


LABELS = {"gd_eta0.1": "GD η=0.1", "gd_eta0.05": "GD η=0.05", "armijo": "Armijo", "polyak": "Polyak (c=0.5)"}


def test_fig1_plots_each_runs_loss_and_sharpness_with_2_over_eta(full_batch_runs, tmp_path):
    root, runs = full_batch_runs
    fig1 = _import("fig1")
    out = tmp_path / "figs" / "fig1.png"
    assert fig1.main(["--root", str(root), "--out", str(out)]) == 0
    assert out.is_file() and out.stat().st_size > 10_000

    fig = fig1.make_figure(_load(root))
    axes = np.array(fig.axes).reshape(2, 2)
    titles = [ax.get_title() for ax in axes[0]]
    assert sorted(titles) == ["cnn-relu", "fc-tanh"]
    for j, model in enumerate(titles):
        ax_loss, ax_sharp = axes[0, j], axes[1, j]
        for tag, label in LABELS.items():
            tr = runs[(model, tag)]
            line = _line(ax_loss, label)
            np.testing.assert_array_equal(line.get_xdata(), tr["step"])
            np.testing.assert_allclose(line.get_ydata(), tr["loss"])
            steps, values = tr.measured("sharpness")
            line = _line(ax_sharp, label)
            np.testing.assert_array_equal(line.get_xdata(), steps)
            np.testing.assert_allclose(line.get_ydata(), values)
        # One dashed ceiling 2/eta per fixed-stepsize run, none for the tuners.
        assert sorted(_hlines(ax_sharp)) == pytest.approx([2 / 0.1, 2 / 0.05])
        assert ax_loss.get_yscale() == "log"
    plt.close(fig)


def _load(root):
    return _import("_common").load_runs([root])


def test_fig2_plots_stepsize_and_normalized_sharpness(full_batch_runs, tmp_path):
    root, runs = full_batch_runs
    fig2 = _import("fig2")
    run_dirs = [str(root / "nested" / f"fc-tanh_{tag}") for tag in ("armijo", "gd_eta0.1")]
    out = tmp_path / "fig2.pdf"
    assert fig2.main([*run_dirs, "--out", str(out)]) == 0
    assert out.is_file() and out.read_bytes()[:4] == b"%PDF"

    fig = fig2.make_figure(_load(root))
    axes = np.array(fig.axes).reshape(2, 2)
    j = [ax.get_title() for ax in axes[0]].index("fc-tanh")
    for tag in ("armijo", "gd_eta0.05"):
        tr = runs[("fc-tanh", tag)]
        np.testing.assert_allclose(_line(axes[0, j], LABELS[tag]).get_ydata(), tr["stepsize"])
        line = _line(axes[1, j], LABELS[tag])
        keep = np.isfinite(tr["sharpness"])
        np.testing.assert_array_equal(line.get_xdata(), tr["step"][keep])
        np.testing.assert_allclose(line.get_ydata(), (tr["stepsize"] * tr["sharpness"])[keep])
    assert _hlines(axes[1, j]) == [2.0]
    plt.close(fig)


@pytest.mark.parametrize(("fig_name", "model"), [("fig3", "fc-relu"), ("fig4", "vgg11-bn"), ("fig5", "resnet34")])
def test_stochastic_figures_plot_one_column_per_batch_size(stochastic_runs, tmp_path, fig_name, model):
    root, runs = stochastic_runs
    module = _import(fig_name)
    out = tmp_path / f"{fig_name}.png"
    assert module.main(["--root", str(root), "--out", str(out)]) == 0
    assert out.is_file() and out.stat().st_size > 10_000

    fig = module.make_figure(_load(root))  # runs of the other architectures are ignored
    axes = np.array(fig.axes).reshape(4, 2)
    assert [ax.get_title() for ax in axes[0]] == ["batch size 32", "batch size 128"]
    for j, b in enumerate((32, 128)):
        for tag, label in (("sgd", "SGD η=0.1"), ("armijo", "Armijo"), ("polyak", "Polyak (c=0.2)")):
            tr = runs[(model, b, tag)]
            np.testing.assert_allclose(_line(axes[0, j], label).get_ydata(), tr["loss"])
            steps, values = tr.measured("sharpness")
            np.testing.assert_allclose(_line(axes[1, j], label).get_ydata(), values)
            np.testing.assert_allclose(_line(axes[2, j], label).get_ydata(), tr["stepsize"])
            line = _line(axes[3, j], label)
            np.testing.assert_array_equal(line.get_xdata(), steps)
            np.testing.assert_allclose(line.get_ydata(), tr["stepsize"][np.isin(tr["step"], steps)] * values)
        assert _hlines(axes[1, j]) == pytest.approx([2 / 0.1])
        assert _hlines(axes[3, j]) == [2.0]
        assert len(axes[0, j].get_lines()) == 3
    plt.close(fig)


def test_missing_runs_and_wrong_architecture_are_clear_errors(full_batch_runs, tmp_path):
    root, _ = full_batch_runs
    fig3 = _import("fig3")
    with pytest.raises(ValueError, match="none of the 8 runs is an MLP"):
        fig3.make_figure([t for t in _load(root) if not t.config["model"]["name"].startswith("fc")] * 2)
    with pytest.raises(FileNotFoundError, match="no run directory"):
        fig3.main(["--root", str(tmp_path), "--out", str(tmp_path / "x.png")])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fig3.main([str(tmp_path / "absent"), "--out", str(tmp_path / "x.png")])
