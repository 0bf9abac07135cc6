"""Write the run configs of every experiment of the paper (arXiv 2312.00209), one TOML per run.

Usage::

    python experiments/make_configs.py            # (re)write experiments/{fig1,fig3,fig4,fig5,small}
    python experiments/make_configs.py --check    # exit 1 if a file on disk differs (CI)

The settings live in the constants below, so the many files stay consistent; edit here, rerun,
commit the outputs. Every file is a complete run config for ``eosmodel train FILE --out DIR``
(tables [data] [model] [loss] [tuner] [train] [sharpness]; see eosmodel/train/_config.py).

Experiments (docs/theory.md section 1):

* ``fig1/`` (also read by fig2): full batch on cifar10-5k (first 5000 CIFAR-10 training images,
  standardised), MSE, architectures ``FULL_BATCH_MODELS``; GD at the fixed stepsizes ``ETAS``,
  Armijo-GD (preset ``armijo-jax``) and Polyak-GD (``FULL_BATCH_POLYAK``).
* ``fig3/``, ``fig4/``, ``fig5/``: mini-batch on all of CIFAR-10 (50k), cross-entropy (the loss of
  the Armijo-SGD and SPS papers), MLP / VGG11 / ResNet34 at the batch sizes ``BATCH_SIZES``: SGD
  at ``SGD_STEPSIZE``, Armijo-SGD (``armijo-vaswani``, γ = 2^{b/n}) and SPS_max (``sps-0.2``).
  Sharpness of the training loss on the first ``STOCHASTIC_SHARPNESS_SUBSET`` training images.
* ``small/``: the same designs at CPU scale on MNIST-1D (embedded, offline), minutes per run.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# ------------------------------------------------------------------------------------ settings
#: Full-batch (figures 1-2): Cohen et al.'s cifar10-5k setting.
FULL_BATCH_MODELS: dict[str, dict[str, Any]] = {
    "fc-tanh": {"name": "fc-tanh", "width": 200, "depth": 2},
    "fc-elu": {"name": "fc-elu", "width": 200, "depth": 2},
    "cnn-relu": {"name": "cnn-relu"},
    "vgg11": {"name": "vgg11"},  # no BatchNorm: the full-batch loss is a sum over chunks
}
ETAS: dict[str, tuple[float, ...]] = {
    "fc-tanh": (0.01, 0.02, 0.04),
    "fc-elu": (0.01, 0.02, 0.04),
    "cnn-relu": (0.01, 0.02, 0.04),
    "vgg11": (0.005, 0.01, 0.02),
}
FULL_BATCH_STEPS = 10_000
# Cohen et al. measure every 50-100 steps. An odd cadence samples both phases of the period-2
# oscillation at the edge of stability; an even one sees one phase only, biasing lambda up or down.
FULL_BATCH_SHARPNESS_EVERY = 51
SMALL_FULL_BATCH_SHARPNESS_EVERY = 21
FULL_BATCH_ARMIJO = "armijo-jax"
FULL_BATCH_POLYAK = "sps-0.5"

#: Mini-batch (figures 3-5): full CIFAR-10.
STOCHASTIC_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "fig3": ("mlp", {"name": "fc-relu", "width": 512, "depth": 2}),
    "fig4": ("vgg11", {"name": "vgg11-bn"}),
    "fig5": ("resnet34", {"name": "resnet34"}),
}
BATCH_SIZES = (32, 128, 512, 2048)
SGD_STEPSIZE = 0.1
STOCHASTIC_ARMIJO = "armijo-vaswani"
STOCHASTIC_POLYAK = "sps-0.2"
STOCHASTIC_EPOCHS = 20
STOCHASTIC_MIN_STEPS = 2000
STOCHASTIC_SHARPNESS_SUBSET = 5000
STOCHASTIC_SHARPNESS_POINTS = 100  # sharpness estimates per run
CIFAR10_TRAIN_SIZE = 50_000

#: CPU-scale variants on MNIST-1D (4000 train / 1000 test, 40 features).
SMALL_FULL_BATCH_MODELS: dict[str, dict[str, Any]] = {
    "fc-tanh": {"name": "fc-tanh", "width": 100, "depth": 2},
    # fc-relu shows Armijo's eta*lambda held below 2 at this scale; fc-tanh hovers at 2.0 (see
    # tests/test_train_eos.py).
    "fc-relu": {"name": "fc-relu", "width": 100, "depth": 2},
    "cnn-relu": {"name": "cnn-relu", "width_multiplier": 0.5},
}
# fc-tanh (width 100) on MNIST-1D-1000 starts at sharpness ~4.4 and sharpens under GD (8.5 after
# 550 steps at eta = 0.1): these etas put 2/eta at 13.3, 8 and 5, reached within the run.
SMALL_ETAS: dict[str, tuple[float, ...]] = {
    "fc-tanh": (0.15, 0.25, 0.4),
    "fc-relu": (0.15, 0.2, 0.3),
    "cnn-relu": (0.15, 0.25, 0.4),
}
SMALL_FULL_BATCH_STEPS = 1500
SMALL_STOCHASTIC_MODELS: dict[str, tuple[str, dict[str, Any], int]] = {
    # figure: (label, model table, steps)
    "fig3": ("mlp", {"name": "fc-relu", "width": 128, "depth": 2}, 600),
    "fig4": ("vgg11", {"name": "vgg11-bn", "width_multiplier": 0.125}, 300),
    # ResNet18 stands in for ResNet34 here: the same blocks, half the depth, half the compile
    # time (XLA compiles ResNet34's training step for minutes on a small CPU).
    "fig5": ("resnet18", {"name": "resnet18", "width_multiplier": 0.0625}, 200),
}
SMALL_BATCH_SIZES = (32, 128, 512)
SMALL_SHARPNESS_SUBSET = 500


# ------------------------------------------------------------------------------------ builders
def _eta_tag(eta: float) -> str:
    return f"eta{eta:g}"


def _full_batch_runs(
    models: dict[str, dict[str, Any]],
    etas: dict[str, tuple[float, ...]],
    data: dict[str, Any],
    steps: int,
    sharpness_every: int,
) -> dict[str, dict[str, Any]]:
    runs: dict[str, dict[str, Any]] = {}
    for label, model in models.items():
        tuners = [(f"gd_{_eta_tag(eta)}", {"name": "constant", "stepsize": eta}) for eta in etas[label]]
        tuners += [("armijo", {"preset": FULL_BATCH_ARMIJO}), ("polyak", {"preset": FULL_BATCH_POLYAK})]
        for tag, tuner in tuners:
            runs[f"{label}_{tag}"] = {
                "data": dict(data),
                "model": dict(model),
                "loss": {"name": "mse"},
                "tuner": tuner,
                "train": {
                    "steps": steps,
                    "batch_size": 0,
                    "chunk_size": 1000,
                    "seed": 0,
                    "log_every": 10,
                    "eval_every": 100,
                    "checkpoint_every": max(steps // 10, 1),
                },
                "sharpness": {"every": sharpness_every, "k": 1, "tol": 1e-3, "subset": 0, "grad_curvature": True},
            }
    return runs


def _stochastic_runs(
    label: str,
    model: dict[str, Any],
    data: dict[str, Any],
    batch_sizes: tuple[int, ...],
    steps_for: dict[int, int],
    subset: int,
) -> dict[str, dict[str, Any]]:
    runs: dict[str, dict[str, Any]] = {}
    for b in batch_sizes:
        steps = steps_for[b]
        tuners = [
            ("sgd", {"name": "constant", "stepsize": SGD_STEPSIZE}),
            ("armijo", {"preset": STOCHASTIC_ARMIJO}),
            ("polyak", {"preset": STOCHASTIC_POLYAK}),
        ]
        for tag, tuner in tuners:
            runs[f"{label}_b{b}_{tag}"] = {
                "data": dict(data),
                "model": dict(model),
                "loss": {"name": "cross_entropy"},
                "tuner": tuner,
                "train": {
                    "steps": steps,
                    "batch_size": b,
                    "chunk_size": 1000,
                    "seed": 0,
                    "log_every": 10,
                    "eval_every": max(steps // 50, 10),
                    "checkpoint_every": max(steps // 10, 10),
                },
                "sharpness": {
                    "every": max(steps // STOCHASTIC_SHARPNESS_POINTS, 10),
                    "k": 1,
                    "tol": 1e-3,
                    "subset": subset,
                },
            }
    return runs


def all_configs() -> dict[str, tuple[str, dict[str, Any]]]:
    """Every run: ``{relative path: (header comment, config)}``."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    cifar5k = {"name": "cifar10", "n_train": 5000, "n_test": 1000, "balanced": False, "path": ""}
    for name, cfg in _full_batch_runs(
        FULL_BATCH_MODELS, ETAS, cifar5k, FULL_BATCH_STEPS, FULL_BATCH_SHARPNESS_EVERY
    ).items():
        out[f"fig1/{name}.toml"] = ("Figures 1-2: full batch on cifar10-5k, MSE (GPU scale).", cfg)

    cifar_all = {"name": "cifar10", "n_train": 0, "n_test": 0, "balanced": False, "path": ""}
    steps_for = {
        b: max(STOCHASTIC_MIN_STEPS, math.ceil(STOCHASTIC_EPOCHS * CIFAR10_TRAIN_SIZE / b))
        for b in BATCH_SIZES
    }
    for fig, (label, model) in STOCHASTIC_MODELS.items():
        runs = _stochastic_runs(
            label, model, cifar_all, BATCH_SIZES, steps_for, STOCHASTIC_SHARPNESS_SUBSET
        )
        for name, cfg in runs.items():
            out[f"{fig}/{name}.toml"] = (
                f"Figure {fig[-1]}: {label} on all of CIFAR-10, mini-batch, cross-entropy (GPU scale).",
                cfg,
            )

    mnist_fb = {"name": "mnist1d", "n_train": 1000, "n_test": 500, "balanced": False, "path": ""}
    for name, cfg in _full_batch_runs(
        SMALL_FULL_BATCH_MODELS, SMALL_ETAS, mnist_fb, SMALL_FULL_BATCH_STEPS, SMALL_FULL_BATCH_SHARPNESS_EVERY
    ).items():
        out[f"small/fig1/{name}.toml"] = (
            "CPU-scale figures 1-2: full batch on MNIST-1D (1000 examples), MSE.",
            cfg,
        )
    mnist_all = {"name": "mnist1d", "n_train": 0, "n_test": 0, "balanced": False, "path": ""}
    for fig, (label, model, steps) in SMALL_STOCHASTIC_MODELS.items():
        runs = _stochastic_runs(
            label,
            model,
            mnist_all,
            SMALL_BATCH_SIZES,
            {b: steps for b in SMALL_BATCH_SIZES},
            SMALL_SHARPNESS_SUBSET,
        )
        for name, cfg in runs.items():
            out[f"small/{fig}/{name}.toml"] = (
                f"CPU-scale figure {fig[-1]}: {label} on MNIST-1D (4000 examples), mini-batch, "
                "cross-entropy.",
                cfg,
            )
    return out


# ------------------------------------------------------------------------------------ TOML
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write the non-finite float {value!r} to TOML.")
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} values to TOML.")


def to_toml(config: dict[str, dict[str, Any]], header: str, path: str) -> str:
    """A run config as TOML text (tables of scalars/lists only) with a comment header."""
    run_dir = "runs/" + path.removeprefix("experiments/").removesuffix(".toml")
    lines = [f"# {header}", f"# Generated by experiments/make_configs.py; run: eosmodel train {path} --out {run_dir}"]
    for table, values in config.items():
        lines.append("")
        lines.append(f"[{table}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output root (default: experiments/)")
    parser.add_argument("--check", action="store_true", help="only compare with the files on disk")
    args = parser.parse_args(argv)
    stale = []
    for rel, (header, cfg) in sorted(all_configs().items()):
        text = to_toml(cfg, header, f"experiments/{rel}")
        target = args.out / rel
        if args.check:
            if not target.is_file() or target.read_text() != text:
                stale.append(rel)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    if args.check and stale:
        print(f"{len(stale)} config files are missing or stale (e.g. {stale[0]}); run "
              "python experiments/make_configs.py.", file=sys.stderr)
        return 1
    if not args.check:
        print(f"wrote {len(all_configs())} configs under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
