"""Run a suite end to end: every run (local processes or Ray tasks), its figures, its claims report.

Output directory layout::

    DIR/<run>/             one run directory per config (eosmodel.train.run_training)
    DIR/figures/<fig>.png  the suite's figures (paper_figs/<fig>.py on the suite's runs)
    DIR/status.json        each run's state (pending, running, completed, reused, diverged,
                           failed), steps, wall time, attempts, error; the figures; updated live
    DIR/claims.md, .json   the claims report (eosmodel.reproduce._claims)

A finished run of the same config is reused, an interrupted one resumed from its last
checkpoint, a directory holding another config refused before anything starts. A run that fails
or diverges is recorded and the suite goes on. A run whose worker process died (killed, lost
node) is started again, up to ``retries`` times, and resumes from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eosmodel.reproduce._claims import evaluate_claims
from eosmodel.reproduce._engines import make_engine
from eosmodel.reproduce._report import write_claims_report
from eosmodel.reproduce._runs import WORKER_FILE, check_run_dir, reused_outcome
from eosmodel.reproduce._suites import Suite
from eosmodel.train import DEFAULTS

__all__ = ["SuiteResult", "reproduce"]

STATUS_FILE = "status.json"


@dataclasses.dataclass
class SuiteResult:
    """The outcome of :func:`reproduce`.

    Attributes:
      out: the output directory.
      runs: run name -> status (as in status.json).
      figures: figure script -> path written, or the error.
      claims: the evaluated claims (rows of claims.json).
      elapsed_s: wall-clock seconds.
    """

    out: Path
    runs: dict[str, dict]
    figures: dict[str, str]
    claims: list[dict]
    elapsed_s: float

    @property
    def exit_code(self) -> int:
        """0 every run completed (or was reused); 3 a run diverged; 4 a run or figure failed."""
        states = {r["state"] for r in self.runs.values()}
        if "failed" in states or any(v.startswith("failed") for v in self.figures.values()):
            return 4
        return 3 if "diverged" in states else 0


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


class _Display:
    """One progress display for the suite (runs done/total, elapsed, estimate) above per-run bars.

    Per-run bars count the records in each running run's trace.jsonl (the runs write them, on
    any engine, to the shared run directories). Without ``enabled``, one line per finished run.
    """

    def __init__(self, suite: Suite, total: int, jobs: int, enabled: bool):
        self.enabled, self.total, self.jobs = enabled, total, max(1, jobs)
        self.prior_s = suite.minutes_per_run * 60.0
        self.started = time.perf_counter()
        self.done = 0
        self.trained_s: list[float] = []
        self.bars: dict[str, Any] = {}
        self.offsets: dict[str, tuple[int, int]] = {}
        self.top = None
        if enabled:
            from tqdm.auto import tqdm

            self._tqdm = tqdm
            self.name = suite.name
            self.top = tqdm(total=total, unit="run", file=sys.stderr, position=0, dynamic_ncols=True,
                            bar_format="{n_fmt}/{total_fmt} runs |{bar}| {desc}")
            self._refresh()

    def _estimate_left(self) -> float:
        per = sum(self.trained_s) / len(self.trained_s) if self.trained_s else self.prior_s
        return -(-(self.total - self.done) // self.jobs) * per

    def _refresh(self) -> None:
        if self.top is not None:
            el = time.perf_counter() - self.started
            self.top.set_description_str(
                f"suite {self.name}: elapsed {el / 60:.1f} min, estimate {self._estimate_left() / 60:.1f} min left"
            )

    def start(self, name: str, steps: int) -> None:
        if self.enabled and name not in self.bars:
            self.bars[name] = self._tqdm(total=steps, desc=name, unit="step", file=sys.stderr, leave=False,
                                         position=len(self.bars) + 1, dynamic_ncols=True)

    def poll(self, running: Mapping[str, Path]) -> None:
        for name, run_dir in running.items():
            bar = self.bars.get(name)
            if bar is None:
                continue
            path = run_dir / "trace.jsonl"
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            offset, lines = self.offsets.get(name, (0, 0))
            if size < offset:  # truncated by a resume
                offset, lines = 0, 0
            with open(path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read(size - offset)
            lines += chunk.count(b"\n")
            self.offsets[name] = (offset + len(chunk), lines)
            bar.n = max(0, lines - 1)  # minus the header line
            bar.refresh()
        self._refresh()

    def finish(self, name: str, outcome: Mapping[str, Any]) -> None:
        self.done += 1
        if outcome.get("state") in ("completed", "diverged") and outcome.get("action") != "reuse":
            self.trained_s.append(float(outcome.get("wall_s", 0.0)))
        bar = self.bars.pop(name, None)
        if bar is not None:
            bar.close()
        self.offsets.pop(name, None)
        line = (
            f"[reproduce] {self.done}/{self.total} {name}: {outcome.get('state')}"
            + (f" ({outcome.get('steps')} steps, {outcome.get('wall_s', 0):.0f} s)" if outcome.get("steps") is not None else "")
            + (f": {outcome['error']}" if outcome.get("error") else "")
        )
        if self.top is not None:
            self.top.update(1)
            self._refresh()
            if outcome.get("state") in ("failed", "diverged"):
                self.top.write(line, file=sys.stderr)
        else:
            el = time.perf_counter() - self.started
            print(f"{line}; elapsed {el / 60:.1f} min, estimate {self._estimate_left() / 60:.1f} min left", file=sys.stderr, flush=True)

    def drop(self, name: str) -> None:
        """Forget a run's bar (its worker died; the run starts again)."""
        bar = self.bars.pop(name, None)
        if bar is not None:
            bar.close()
        self.offsets.pop(name, None)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        if self.top is not None:
            self.top.close()


def _draw_figures(suite: Suite, out: Path, runs: Mapping[str, dict], figures_dir: Path | None) -> dict[str, str]:
    """Run each figure script of the suite on its group's runs; script -> path or "failed: ..."."""
    results: dict[str, str] = {}
    if not suite.figures:
        return results
    from eosmodel.reproduce._suites import experiments_root

    scripts = Path(figures_dir) if figures_dir is not None else experiments_root().parent / "paper_figs"
    (out / "figures").mkdir(exist_ok=True)
    for script, group in suite.figures:
        dirs = [str(out / r.name) for r in suite.runs if r.group == group and (out / r.name / "trace.jsonl").exists()
                and runs[r.name]["state"] != "failed"]
        if not dirs:
            results[script] = "failed: no run of the figure has a trace"
            continue
        target = out / "figures" / f"{script}.png"
        proc = subprocess.run([sys.executable, str(scripts / f"{script}.py"), *dirs, "--out", str(target)],
                              capture_output=True, text=True, check=False)
        tail = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        results[script] = str(target) if proc.returncode == 0 else f"failed: {tail}"
    return results


def _claims(suite: Suite, out: Path, runs: Mapping[str, dict]) -> list[dict]:
    from eosmodel.trace import load_trace

    rows: list[dict] = []
    traces: dict[str, Any] = {}
    for r in suite.runs:
        # A diverged run stopped early: its statistics would not describe the claim's regime; the
        # report lists it under the runs that did not complete.
        if runs[r.name]["state"] in ("completed", "reused") and (out / r.name / "trace.jsonl").exists():
            tr = load_trace(out / r.name)
            if len(tr):
                traces[r.name] = tr
    for figure, group in suite.claim_figures:
        mine = [traces[r.name] for r in suite.runs if r.group == group and r.name in traces]
        rows += evaluate_claims(mine, [figure])
    return rows


def reproduce(
    suite: Suite,
    out: str | os.PathLike,
    *,
    engine: str = "local",
    jobs: int | None = None,
    address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float | None = None,
    retries: int = 2,
    progress: bool = True,
    figures_dir: str | os.PathLike | None = None,
    note: str = "",
) -> SuiteResult:
    """Run every run of ``suite`` into ``out``, draw its figures, and write its claims report.

    Args:
      suite: the suite (see :func:`eosmodel.reproduce.experiment_suites`; ``Suite.select`` and
        ``Suite.with_overrides`` give ``--only`` and ``--set``).
      out: output directory (run directories, figures, status.json, claims.md/json).
      engine: "local" (a pool of worker processes) or "ray" (Ray tasks on the cluster at ``address``).
      jobs: runs at a time (local; default: the machine's cores // ``cpus_per_run``); with Ray an
        optional cap on the runs in flight.
      address: the Ray cluster's address (``ray`` only).
      cpus_per_run, gpus_per_run: resources of one run (default: the suite's).
      retries: how many times a run whose worker died is started again (resuming).
      progress: show the suite's progress display (else one line per finished run).
      figures_dir: folder of the figure scripts (default: ``paper_figs/`` of the checkout).
      note: a line for the claims report (e.g. the machine it ran on).

    Returns:
      A :class:`SuiteResult`; ``exit_code`` 0 when every run completed.

    Raises:
      RunDirConflict: a run directory in ``out`` holds a run of another config (nothing started).
      ValueError: a bad engine setting; ModuleNotFoundError: ``ray`` without Ray installed.
    """
    started = time.perf_counter()
    out = Path(out)
    cpus = float(cpus_per_run if cpus_per_run is not None else suite.cpus_per_run)
    gpus = float(gpus_per_run if gpus_per_run is not None else suite.gpus_per_run)
    actions = {}
    for r in suite.runs:  # refuse before starting anything
        actions[r.name] = check_run_dir(out / r.name, r.config)
    out.mkdir(parents=True, exist_ok=True)
    eng = make_engine(engine, jobs=jobs, address=address, cpus_per_run=cpus, gpus_per_run=gpus)

    runs: dict[str, dict] = {r.name: {"state": "pending", "action": actions[r.name], "attempts": 0} for r in suite.runs}
    status = {"suite": suite.name, "engine": eng.name, "out": str(out.resolve()), "started": time.time(), "runs": runs}
    _write_json(out / STATUS_FILE, status)
    specs = {r.name: r for r in suite.runs}
    queue = [r.name for r in suite.runs]
    in_flight: dict[Any, str] = {}
    submitted: dict[str, float] = {}
    display = _Display(suite, len(queue), min(getattr(eng, "capacity", 1), len(queue) or 1), progress)
    for name in [n for n in queue if actions[n] == "reuse"]:  # finished: nothing to start
        queue.remove(name)
        runs[name].update(reused_outcome(out / name))
        display.finish(name, runs[name])
    _write_json(out / STATUS_FILE, status)
    try:
        while queue or in_flight:
            while queue and len(in_flight) < eng.capacity:
                name = queue.pop(0)
                runs[name]["attempts"] += 1
                handle = eng.submit(name, specs[name].config, str(out / name), runs[name]["attempts"] - 1)
                in_flight[handle] = name
                submitted[name] = time.time()
                runs[name]["state"] = "running" if eng.name == "local" else "submitted"
                _write_json(out / STATUS_FILE, status)
            for handle, result in eng.wait(timeout=0.5):
                name = in_flight.pop(handle)
                if isinstance(result, BaseException):  # the worker died: start the run again (it resumes)
                    runs[name]["last_worker_error"] = f"{type(result).__name__}: {str(result).splitlines()[0] if str(result) else ''}"
                    if runs[name]["attempts"] <= retries:
                        queue.insert(0, name)
                        runs[name]["state"] = "pending"
                        display.drop(name)
                        continue
                    result = {"name": name, "state": "failed", "error": f"its worker died {runs[name]['attempts']} times: {runs[name]['last_worker_error']}"}
                runs[name].update({k: v for k, v in result.items() if k not in ("name",)})
                display.finish(name, result)
                _write_json(out / STATUS_FILE, status)
            running = {}
            for name in in_flight.values():
                marker = out / name / WORKER_FILE
                if marker.exists() and marker.stat().st_mtime >= submitted[name] - 1.0:
                    running[name] = out / name
                    if runs[name]["state"] == "submitted":
                        runs[name]["state"] = "running"
                    display.start(name, int(specs[name].config.get("train", {}).get("steps", DEFAULTS["train"]["steps"])))
            display.poll(running)
    finally:
        display.close()
        eng.close()

    fig_results = _draw_figures(suite, out, runs, figures_dir)
    rows = _claims(suite, out, runs)
    elapsed = time.perf_counter() - started
    status.update(figures=fig_results, elapsed_s=round(elapsed, 1), finished=time.time())
    _write_json(out / STATUS_FILE, status)
    if rows:
        write_claims_report(out, rows, suite=suite.name, runs=runs, elapsed_s=elapsed, note=note)
    return SuiteResult(out=out, runs=runs, figures=fig_results, claims=rows, elapsed_s=elapsed)

