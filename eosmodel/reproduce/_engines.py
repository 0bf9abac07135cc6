"""Engines: where the runs of a suite execute (local worker processes, or Ray tasks on a cluster).

Both engines run :func:`eosmodel.reproduce._runs.execute_run` once per run and hand its outcome
(a JSON dict) back to the suite's scheduler; the scheduler, not the engine, retries a run whose
worker died (the retry resumes from the run's last checkpoint, so traces do not depend on where
or how often a run was started). An engine exposes::

    submit(name, config, run_dir, attempt) -> handle    start one run
    wait(timeout) -> [(handle, outcome | exception)]     runs finished (or whose worker died)
    capacity -> int                                      how many runs to keep in flight
    close()

* :class:`LocalEngine`: a pool of ``jobs`` worker processes (``spawn``: JAX is not fork-safe),
  one fresh process per run (its memory and compiled programs are freed when it ends).
* :class:`RayEngine`: each run is a Ray task on an existing cluster (``ray.init(address=...)``),
  reserving ``num_cpus``/``num_gpus`` per run; Ray places the tasks, the run directories must be
  on a file system that every node and the driver share.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from collections.abc import Mapping
from typing import Any

from eosmodel.reproduce._runs import execute_run

__all__ = ["LocalEngine", "RayEngine", "default_jobs", "make_engine"]

RAY_EXTRA_HINT = 'the ray engine needs Ray, which is not installed; install the extra with `pip install -e ".[ray]"`.'


def default_jobs(cpus_per_run: float) -> int:
    """Runs at a time on this machine: its usable cores divided by the cores one run uses."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, int(cores // max(cpus_per_run, 1.0)))


class LocalEngine:
    """A pool of ``jobs`` local worker processes, one fresh process per run."""

    name = "local"

    def __init__(self, jobs: int):
        if jobs < 1:
            raise ValueError(f"--jobs must be at least 1, got {jobs}.")
        self.capacity = int(jobs)
        self._pool = self._new_pool()
        self._futures: dict[cf.Future, Any] = {}

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(
            max_workers=self.capacity, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1
        )

    def submit(self, name: str, config: Mapping[str, Any], run_dir: str, attempt: int) -> cf.Future:
        try:
            future = self._pool.submit(execute_run, name, dict(config), run_dir, attempt)
        except cf.process.BrokenProcessPool:
            # A worker died and broke the pool: the runs in flight get the error; start a new pool.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            future = self._pool.submit(execute_run, name, dict(config), run_dir, attempt)
        self._futures[future] = name
        return future

    def wait(self, timeout: float) -> list[tuple[Any, Any]]:
        if not self._futures:
            return []
        done, _ = cf.wait(list(self._futures), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        out = []
        for future in done:
            del self._futures[future]
            err = future.exception()
            out.append((future, err if err is not None else future.result()))
        if any(isinstance(r, cf.process.BrokenProcessPool) for _, r in out):
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayEngine:
    """Each run a Ray task on the cluster at ``address``, with ``num_cpus``/``num_gpus`` reserved.

    Raises:
      ModuleNotFoundError: Ray is not installed (the message names the ``ray`` extra).
    """

    name = "ray"

    def __init__(self, address: str | None, *, num_cpus: float, num_gpus: float, capacity: int = 1_000_000):
        host = (address or "").rsplit(":", 1)[0].strip("[]")
        if host in ("127.0.0.1", "localhost", "::1"):
            # A cluster on this machine's loopback (``ray start --head --node-ip-address=127.0.0.1``
            # with the same variable): Ray's single-node mode keeps the driver's node address at
            # 127.0.0.1; otherwise Ray swaps it for the machine's address and finds no raylet there.
            # Read when Ray is imported.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        try:
            import ray
        except ModuleNotFoundError as err:
            raise ModuleNotFoundError(RAY_EXTRA_HINT, name="ray") from err
        import logging

        if not address:
            raise ValueError("--engine ray needs the cluster's address, e.g. --address 127.0.0.1:6379 (from `ray start --head`).")
        self._ray = ray
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, configure_logging=True)
        # Retries are the scheduler's (the same rule on both engines), not Ray's.
        self._task = ray.remote(execute_run)
        self._resources = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_retries": 0}
        self.capacity = capacity
        self._refs: dict[Any, str] = {}

    def submit(self, name: str, config: Mapping[str, Any], run_dir: str, attempt: int) -> Any:
        ref = self._task.options(name=f"eosmodel:{name}", **self._resources).remote(name, dict(config), run_dir, attempt)
        self._refs[ref] = name
        return ref

    def wait(self, timeout: float) -> list[tuple[Any, Any]]:
        if not self._refs:
            return []
        done, _ = self._ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        out = []
        for ref in done:
            del self._refs[ref]
            try:
                out.append((ref, self._ray.get(ref)))
            except Exception as err:  # noqa: BLE001 - a dead worker or node: the scheduler retries
                out.append((ref, err))
        return out

    def close(self) -> None:
        for ref in list(self._refs):
            self._ray.cancel(ref, force=True)
        self._ray.shutdown()


def make_engine(
    engine: str, *, jobs: int | None, address: str | None, cpus_per_run: float, gpus_per_run: float
) -> LocalEngine | RayEngine:
    """The engine named ``engine`` ("local" or "ray") for runs needing these resources.

    Raises:
      ValueError: an unknown engine, ``--address`` missing for Ray (or given for local).
      ModuleNotFoundError: ``ray`` without Ray installed.
    """
    if jobs is not None and jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}.")
    if engine == "local":
        if address:
            raise ValueError("--address is for --engine ray; drop it or add --engine ray.")
        return LocalEngine(jobs if jobs is not None else default_jobs(cpus_per_run))
    if engine == "ray":
        return RayEngine(address, num_cpus=cpus_per_run, num_gpus=gpus_per_run, capacity=jobs or 1_000_000)
    raise ValueError(f"--engine must be local or ray, got {engine!r}.")
