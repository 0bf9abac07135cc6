"""Reproduce the paper with one command: run a suite of configs, draw its figures, check its claims.

Public API:

* suites: :class:`Suite` / :class:`RunSpec`, :func:`experiment_suites` (the CPU-scale
  ``small-fig1`` ... ``small-fig5``, ``small``, and GPU-scale ``paper-fig1`` ... ``paper-fig5``
  suites of ``experiments/``), :func:`suite_from_configs` (any mapping name -> config);
* running: :func:`reproduce` (every run on the ``local`` engine, a process pool, or the ``ray``
  engine, Ray tasks on a cluster; figures; ``status.json``; the claims report) returning a
  :class:`SuiteResult`; :func:`execute_run` (reuse, resume or train one run: the unit of work of
  both engines), :func:`check_run_dir`, :class:`RunDirConflict`;
* claims: :data:`CLAIMS` (each finding of arXiv 2312.00209 with the statistic deciding it),
  :func:`evaluate_claims`, :func:`write_claims_report`.

Example (a tiny suite of two runs on the local engine)::

    from eosmodel.reproduce import reproduce, suite_from_configs
    base = {"data": {"name": "synthetic", "n_train": 64, "n_test": 32},
            "model": {"name": "fc-tanh", "width": 16}, "train": {"steps": 20}, "sharpness": {"every": 5}}
    suite = suite_from_configs("tiny", {"gd": {**base, "tuner": {"name": "constant", "stepsize": 0.1}},
                                        "armijo": {**base, "tuner": {"preset": "armijo-jax"}}},
                               claim_figures=(("1", "main"), ("2", "main")))
    result = reproduce(suite, "runs/tiny", jobs=1)   # runs/tiny/{gd,armijo}/, status.json, claims.md
"""

from eosmodel.reproduce._claims import CLAIMS, Claim, Measurement, evaluate_claims
from eosmodel.reproduce._engines import RAY_EXTRA_HINT, LocalEngine, RayEngine, default_jobs, make_engine
from eosmodel.reproduce._report import write_claims_report
from eosmodel.reproduce._reproduce import STATUS_FILE, SuiteResult, reproduce
from eosmodel.reproduce._runs import RunDirConflict, check_run_dir, execute_run, resolved_config
from eosmodel.reproduce._suites import RunSpec, Suite, experiment_suites, experiments_root, suite_from_configs

__all__ = [
    "CLAIMS",
    "Claim",
    "LocalEngine",
    "Measurement",
    "RAY_EXTRA_HINT",
    "RayEngine",
    "RunDirConflict",
    "RunSpec",
    "STATUS_FILE",
    "Suite",
    "SuiteResult",
    "check_run_dir",
    "default_jobs",
    "evaluate_claims",
    "execute_run",
    "experiment_suites",
    "experiments_root",
    "make_engine",
    "reproduce",
    "resolved_config",
    "suite_from_configs",
    "write_claims_report",
]
