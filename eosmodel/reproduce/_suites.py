"""Suites: named groups of run configs, with the figures they draw and the cost they take.

A suite is the unit of ``eosmodel reproduce``: its runs (one run config each, named after the
config file), the figure scripts of ``paper_figs/`` that read them, and the paper figures whose
claims its traces decide (:mod:`eosmodel.reproduce._claims`). The CPU- and GPU-scale suites are
built from the config directories of ``experiments/`` (one TOML file per run)::

    small-fig1   experiments/small/fig1/*.toml   figures 1 and 2 (full batch)
    small-fig2   the same runs                   figure 2 only
    small-fig3   experiments/small/fig3/*.toml   figure 3 (MLP, batch sizes)   ... small-fig5
    small        all of small/fig1, fig3-fig5    figures 1-5
    paper-fig1   experiments/fig1/*.toml         figures 1 and 2 (CIFAR-10)    ... paper-fig5

The ``demo`` suite (the four runs of ``eosmodel demo``) is added by the command line, which
owns the demo's configs.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["RunSpec", "Suite", "experiment_suites", "experiments_root", "suite_from_configs"]


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of a suite: its name (the run directory's name under the suite's output) and config.

    Attributes:
      name: run name, e.g. ``fc-tanh_armijo`` (the config file's stem).
      config: the run config (a dict of tables, before :func:`eosmodel.train.normalize_config`).
      source: where the config came from (a file path, or ``"eosmodel demo"``).
      group: the figure group the run belongs to (its experiments folder, e.g. ``fig1``); figure
        scripts and claims read the runs of their group only.
    """

    name: str
    config: Mapping[str, Any]
    source: str = ""
    group: str = "main"


@dataclasses.dataclass(frozen=True)
class Suite:
    """A named group of runs, the figures drawn from them and the paper figures whose claims they decide.

    Attributes:
      name: suite name (``small-fig1``).
      description: one line for ``--list``.
      runs: the runs, in the order they are started.
      figures: ``(script, group)`` pairs: a figure script of ``paper_figs/`` (stem, e.g. ``fig1``)
        and the group of runs it draws.
      claim_figures: ``(figure, group)`` pairs: a paper figure (``"1"`` ... ``"5"``) whose claims
        the report checks on the runs of ``group``.
      cpus_per_run: CPU cores one run uses (the local engine's default ``--jobs`` is cores // this;
        Ray reserves this many CPUs per task).
      gpus_per_run: accelerators one run uses (Ray reserves them per task).
      minutes_per_run: estimated wall-clock minutes of one run on the reference hardware (2 CPU
        cores for the CPU-scale suites, one GPU for the GPU-scale ones); measured where noted.
      hardware: the reference hardware of ``minutes_per_run``, in words.
    """

    name: str
    description: str
    runs: tuple[RunSpec, ...]
    figures: tuple[tuple[str, str], ...] = ()
    claim_figures: tuple[tuple[str, str], ...] = ()
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    minutes_per_run: float = 1.0
    hardware: str = "2 CPU cores"

    def estimated_minutes(self, jobs: int = 1) -> float:
        """Estimated wall-clock minutes of the whole suite with ``jobs`` runs at a time."""
        waves = -(-len(self.runs) // max(1, int(jobs)))
        return waves * self.minutes_per_run

    def select(self, pattern: str | None) -> Suite:
        """The suite restricted to the runs whose name matches the shell-style ``pattern``.

        Raises:
          ValueError: no run matches.
        """
        if not pattern:
            return self
        runs = tuple(r for r in self.runs if fnmatch.fnmatchcase(r.name, pattern))
        if not runs:
            names = ", ".join(r.name for r in self.runs[:6]) + (", ..." if len(self.runs) > 6 else "")
            raise ValueError(f"--only {pattern!r} matches none of the {len(self.runs)} runs of {self.name} ({names}); use a shell pattern such as 'fc-tanh_*'.")
        return dataclasses.replace(self, runs=runs)

    def with_overrides(self, overrides: Sequence[str]) -> Suite:
        """The suite with ``table.key=value`` overrides applied to every run config (``--set``)."""
        if not overrides:
            return self
        from eosmodel.train import apply_overrides

        runs = tuple(dataclasses.replace(r, config=apply_overrides(r.config, overrides)) for r in self.runs)
        return dataclasses.replace(self, runs=runs)


def suite_from_configs(name: str, configs: Mapping[str, Mapping[str, Any]], **fields: Any) -> Suite:
    """A suite from a mapping run name -> config (e.g. a test's tiny suite, or the demo's runs)."""
    source, group = fields.pop("source", ""), fields.pop("group", "main")
    runs = tuple(RunSpec(run, copy.deepcopy(dict(cfg)), source, group) for run, cfg in configs.items())
    return Suite(name=name, description=fields.pop("description", name), runs=runs, **fields)


def experiments_root() -> Path:
    """The ``experiments/`` folder of the source checkout eosmodel runs from.

    Raises:
      FileNotFoundError: eosmodel is not run from a source checkout (installed without ``-e``).
    """
    root = Path(__file__).resolve().parents[2] / "experiments"
    if not root.is_dir():
        raise FileNotFoundError(
            f"the experiment configs are not next to the package ({root} is missing); run eosmodel from a "
            "source checkout installed with `pip install -e .`."
        )
    return root


def _runs_of(folder: Path, group: str) -> tuple[RunSpec, ...]:
    from eosmodel.train import load_config

    files = sorted(folder.glob("*.toml"))
    if not files:
        raise FileNotFoundError(f"no run config (*.toml) in {folder}; regenerate them with `python experiments/make_configs.py`.")
    return tuple(RunSpec(f.stem, load_config(f), str(f), group) for f in files)


# Per experiment folder: (figure scripts, claim figures, cpus per run, minutes per run, description).
# Minutes per run, one run at a time on 2 CPU cores shared with other jobs (load average 8-14),
# measured (README "Reproduce the paper"): small/fig1 fc runs about 1 min and cnn-relu about 7 min
# (mean 3), small/fig3 about 1 min; small/fig4-5 from experiments/README (XLA compile of the conv
# nets 2-4 min, then 2 min for 200 steps). GPU scale: estimates per run on one accelerator (10,000
# full-batch steps with sharpness every 51; 20 epochs of CIFAR-10), not measured.
_SMALL = {
    "fig1": (("fig1", "fig2"), ("1", "2"), 1.0, 3.0, "figures 1-2 at CPU scale: fc-tanh, fc-relu, cnn-relu on MNIST-1D, full batch, GD x3 / Armijo / Polyak"),
    "fig3": (("fig3",), ("3",), 1.0, 1.0, "figure 3 at CPU scale: MLP on MNIST-1D, batch 32/128/512, SGD / Armijo / Polyak"),
    "fig4": (("fig4",), ("4",), 2.0, 6.0, "figure 4 at CPU scale: VGG11-BN (width 1/8) on MNIST-1D, batch 32/128/512"),
    "fig5": (("fig5",), ("5",), 2.0, 6.0, "figure 5 at CPU scale: ResNet18 (width 1/16) on MNIST-1D, batch 32/128/512"),
}
_PAPER = {
    "fig1": (("fig1", "fig2"), ("1", "2"), 4.0, 60.0, "figures 1-2: fc-tanh, fc-elu, cnn-relu, VGG11 on cifar10-5k, full batch"),
    "fig3": (("fig3",), ("3",), 4.0, 60.0, "figure 3: MLP on CIFAR-10, batch 32-2048, SGD / Armijo / Polyak"),
    "fig4": (("fig4",), ("4",), 4.0, 120.0, "figure 4: VGG11-BN on CIFAR-10, batch 32-2048"),
    "fig5": (("fig5",), ("5",), 4.0, 240.0, "figure 5: ResNet34 on CIFAR-10, batch 32-2048"),
}


def experiment_suites(root: str | Path | None = None) -> dict[str, Suite]:
    """The CPU-scale (``small-*``, ``small``) and GPU-scale (``paper-*``) suites of ``experiments/``.

    Args:
      root: the experiments folder (default: :func:`experiments_root`).

    Returns:
      Suite name -> :class:`Suite`, configs read from the TOML files.
    """
    root = Path(root) if root is not None else experiments_root()
    suites: dict[str, Suite] = {}
    for scale, table, prefix, hardware, gpus in (
        ("small", _SMALL, "small-", "2 CPU cores", 0.0),
        ("paper", _PAPER, "paper-", "1 GPU", 1.0),
    ):
        base = root / "small" if scale == "small" else root
        for fig, (figures, claims, cpus, minutes, description) in table.items():
            folder = base / fig
            if not folder.is_dir():
                continue
            suites[f"{prefix}{fig}"] = Suite(
                name=f"{prefix}{fig}",
                description=description,
                runs=_runs_of(folder, fig),
                figures=tuple((script, fig) for script in figures),
                claim_figures=tuple((claim, fig) for claim in claims),
                cpus_per_run=cpus,
                gpus_per_run=gpus,
                minutes_per_run=minutes,
                hardware=hardware,
            )
            if fig == "fig1":  # figure 2 reads the runs of figure 1
                suites[f"{prefix}fig2"] = dataclasses.replace(
                    suites[f"{prefix}fig1"],
                    name=f"{prefix}fig2",
                    description=description.replace("figures 1-2", "figure 2"),
                    figures=(("fig2", fig),),
                    claim_figures=(("2", fig),),
                )
    parts = [suites[f"small-fig{i}"] for i in (1, 3, 4, 5) if f"small-fig{i}" in suites]
    if parts:
        suites["small"] = Suite(
            name="small",
            description="every CPU-scale figure (small-fig1, small-fig3 ... small-fig5)",
            runs=_unique(r for s in parts for r in s.runs),
            figures=tuple(f for s in parts for f in s.figures),
            claim_figures=tuple(c for s in parts for c in s.claim_figures),
            cpus_per_run=max(s.cpus_per_run for s in parts),
            minutes_per_run=sum(s.minutes_per_run * len(s.runs) for s in parts) / sum(len(s.runs) for s in parts),
        )
    order = sorted(suites, key=lambda n: (n.startswith("paper"), n != "small", n))
    return {n: suites[n] for n in order}


def _unique(runs: Iterable[RunSpec]) -> tuple[RunSpec, ...]:
    out: dict[str, RunSpec] = {}
    for r in runs:
        if r.name in out:
            raise ValueError(f"two runs of the suite are both named {r.name!r}; rename one config file.")
        out[r.name] = r
    return tuple(out.values())
