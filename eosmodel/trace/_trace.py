"""The record of a run: config plus per-step numpy columns, saved crash-safe as JSON lines.

On disk a run directory holds

* ``config.json``: the run's configuration (any JSON object);
* ``trace.jsonl``: a header line ``{"schema": "eosmodel.trace", "schema_version": 1}`` and then one
  JSON object per record (a step), appended and flushed as the run goes. Every line is strict
  JSON (RFC 8259; ``jq`` and any strict parser read it): a missing value (NaN) is written as
  ``null`` and ±∞ as ``1e999``/``-1e999`` (a valid JSON number that parsers read as ±∞ or the
  largest double). The reader also accepts the ``NaN``/``Infinity`` tokens that files written
  before used. A run killed mid-write leaves at most a truncated last line, which the reader drops
  (and reports in ``Trace.meta``).

Columns are numeric: ``step`` is int64, everything else float64 (booleans become 0/1). A record
that lacks a column gets NaN there.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from eosmodel.errors import InputError, file_error
from eosmodel.trace._schema import SCHEMA_NAME, SCHEMA_VERSION

CONFIG_FILE = "config.json"
TRACE_FILE = "trace.jsonl"


class TraceError(InputError):
    """A trace that cannot be read or written as asked (the message says how to fix it)."""


def _as_steps(values: Any, where: str) -> np.ndarray:
    """``values`` as int64 steps; a non-integer step (1.7, NaN, True) is refused, never floored."""
    arr = np.asarray(values)
    if arr.dtype.kind == "b":
        raise TraceError(f"{where}: 'step' holds booleans; steps are integers (0, 1, 2, ...).")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            i = int(np.flatnonzero(bad.reshape(-1))[0])
            raise TraceError(
                f"{where}: step {arr.reshape(-1)[i].item()!r} is not an integer; steps count optimisation steps "
                "(0, 1, 2, ...), so record the step index, not a fraction."
            )
    elif arr.dtype.kind not in "iu":
        raise TraceError(f"{where}: 'step' has dtype {arr.dtype}; steps are integers (0, 1, 2, ...).")
    return arr.astype(np.int64)


def _to_float(name: str, value: Any, where: str) -> float:
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray) and value.size == 1:
        return float(value.reshape(()))
    if value is None:
        return math.nan
    raise TraceError(
        f"{where}: column {name!r} holds {value!r}, which is not a number; "
        "trace columns must be numeric (store text in the config instead)."
    )


def _check_steps(steps: np.ndarray, where: str) -> None:
    if steps.size > 1:
        bad = np.flatnonzero(np.diff(steps) <= 0)
        if bad.size:
            i = int(bad[0]) + 1
            raise TraceError(
                f"{where}: step {int(steps[i])} at record {i} does not increase on the previous "
                f"step {int(steps[i - 1])}; a trace holds one run with strictly increasing steps "
                "(split concatenated runs, or resume with TraceWriter(..., resume=True))."
            )


@dataclass
class Trace:
    """A run's record: its ``config`` (a dict) and per-step ``columns`` (numpy arrays).

    ``trace["sharpness"]`` is a column; ``len(trace)`` the number of records. ``meta`` carries
    facts about how the trace was read (source path, whether a truncated last line was dropped).

    >>> import numpy as np
    >>> tr = Trace.from_columns({"step": [0, 1, 2], "stepsize": [0.1, 0.1, 0.1],
    ...                          "sharpness": [10.0, np.nan, 19.0]}, config={"tuner": {}})
    >>> tr["normalized_sharpness"]
    array([1. , nan, 1.9])
    >>> tr.measured("sharpness")
    (array([0, 2]), array([10., 19.]))
    """

    config: dict
    columns: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_columns(
        cls,
        columns: Mapping[str, Iterable],
        config: Mapping | None = None,
        meta: Mapping | None = None,
    ) -> "Trace":
        """Build a trace from equal-length columns; ``step`` is required.

        ``normalized_sharpness`` is derived as ``stepsize * sharpness`` when absent.

        Raises:
          TraceError: a missing ``step`` column, columns of unequal length, non-numeric values
            or steps that do not increase.
        """
        cols: dict[str, np.ndarray] = {}
        for name, values in columns.items():
            arr = np.asarray(values)
            if arr.ndim != 1:
                raise TraceError(
                    f"column {name!r} has shape {arr.shape}; a trace column holds one value per "
                    "step (split vector quantities into name_1, name_2, ...)."
                )
            if arr.dtype.kind not in "biuf":
                raise TraceError(
                    f"column {name!r} has dtype {arr.dtype}; trace columns must be numeric."
                )
            cols[name] = _as_steps(arr, "trace") if name == "step" else arr.astype(np.float64)
        if "step" not in cols:
            raise TraceError(
                "a trace needs a 'step' column (the step index of each record); add it."
            )
        lengths = {name: len(a) for name, a in cols.items()}
        if len(set(lengths.values())) > 1:
            raise TraceError(
                f"trace columns have unequal lengths {lengths}; give every column one value "
                "per step (NaN where not measured)."
            )
        _check_steps(cols["step"], "trace")
        if (
            "normalized_sharpness" not in cols
            and "stepsize" in cols
            and "sharpness" in cols
        ):
            cols["normalized_sharpness"] = cols["stepsize"] * cols["sharpness"]
        return cls(config=dict(config or {}), columns=cols, meta=dict(meta or {}))

    # -- access -------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.columns[name]
        except KeyError:
            raise KeyError(
                f"the trace has no column {name!r}; it has {sorted(self.columns)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def __len__(self) -> int:
        return len(self.columns["step"])

    @property
    def names(self) -> list[str]:
        """Column names, in the order they first appeared."""
        return list(self.columns)

    def measured(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of the records where column ``name`` is finite."""
        values = self[name]
        keep = np.isfinite(values)
        return self.columns["step"][keep], values[keep]

    def select(self, mask: np.ndarray) -> "Trace":
        """A trace holding the records where the boolean ``mask`` is true."""
        mask = np.asarray(mask, dtype=bool)
        return Trace(
            config=self.config,
            columns={k: v[mask] for k, v in self.columns.items()},
            meta=dict(self.meta),
        )

    def records(self) -> Iterable[dict[str, float]]:
        """The records as dicts, step by step (``step`` as int)."""
        names = self.names
        lists = [self.columns[n].tolist() for n in names]
        for row in zip(*lists):
            yield dict(zip(names, row))

    # -- files --------------------------------------------------------------------------------
    def save(self, run_dir: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``trace.jsonl`` into ``run_dir`` (created; replaced whole)."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(run_dir / CONFIG_FILE, self.config)
        tmp = run_dir / (TRACE_FILE + ".tmp")
        with open(tmp, "w") as fh:
            fh.write(_header_line())
            fh.writelines(dumps_strict(rec) + "\n" for rec in self.records())
        os.replace(tmp, run_dir / TRACE_FILE)
        return run_dir

    def to_pandas(self):
        """The columns as a ``pandas.DataFrame`` (one row per step); the config in ``df.attrs["config"]``.

        Raises:
          ImportError: pandas is not installed (``pip install pandas``).
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Trace.to_pandas needs pandas; install it with pip install pandas.") from None
        frame = pd.DataFrame({name: col.copy() for name, col in self.columns.items()})
        frame.attrs["config"] = self.config
        return frame

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the trace as CSV (see :func:`eosmodel.trace.write_csv`)."""
        from eosmodel.trace._csv import write_csv

        return write_csv(self, path)


_POS_INF, _NEG_INF = "\x00eosmodel+inf\x00", "\x00eosmodel-inf\x00"


def _strict(obj: Any) -> Any:
    """``obj`` with every NaN float (at any depth) replaced by None and ±∞ by placeholders."""
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    elif isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            return _POS_INF if obj > 0 else _NEG_INF
        return obj
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


def dumps_strict(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that writes strict JSON: NaN as ``null``, ±∞ as ``±1e999`` (never bare tokens).

    ``1e999`` is a valid JSON number; Python's ``json`` reads it as ``inf``, other parsers as ∞ or
    the largest double.

    >>> dumps_strict({"step": 3, "sharpness": float("nan"), "loss": float("inf")})
    '{"step": 3, "sharpness": null, "loss": 1e999}'
    """
    text = json.dumps(_strict(obj), allow_nan=False, **kwargs)
    if "eosmodel" in text:
        text = text.replace(json.dumps(_POS_INF), "1e999").replace(json.dumps(_NEG_INF), "-1e999")
    return text


def _header_line() -> str:
    return json.dumps({"schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION}) + "\n"


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(dumps_strict(obj, indent=2, sort_keys=True, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"config value {obj!r} of type {type(obj).__name__} is not JSON-serialisable")


def _read_jsonl(path: Path) -> tuple[list[dict], dict]:
    """Records and reading facts of a ``trace.jsonl``; tolerates only a truncated last line."""
    with open(path, "rb") as fh:
        data = fh.read()
    lines = data.split(b"\n")
    ends_clean = data.endswith(b"\n") or not data
    if lines and lines[-1] == b"":
        lines.pop()
    meta: dict = {"source": str(path), "truncated_last_line": False}
    records: list[dict] = []
    header_seen = False
    for i, raw in enumerate(lines):
        last = i == len(lines) - 1
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            if last and not ends_clean:
                meta["truncated_last_line"] = True
                break
            raise TraceError(
                f"{path}: line {i + 1} is not valid JSON, so the trace is corrupt (only a "
                "truncated last line, left by a killed run, is tolerated); restore the file "
                "or cut it before that line."
            ) from None
        if not isinstance(obj, dict):
            raise TraceError(f"{path}: line {i + 1} is not a JSON object; the trace is corrupt.")
        if "schema" in obj and "step" not in obj:
            if obj.get("schema") != SCHEMA_NAME:
                raise TraceError(f"{path}: header names schema {obj.get('schema')!r}, not {SCHEMA_NAME!r}.")
            version = obj.get("schema_version", 0)
            if not isinstance(version, int) or version > SCHEMA_VERSION:
                raise TraceError(
                    f"{path}: schema_version {version!r} is newer than this eosmodel reads "
                    f"({SCHEMA_VERSION}); upgrade eosmodel."
                )
            meta["schema_version"] = version
            header_seen = True
            continue
        if "step" not in obj:
            raise TraceError(f"{path}: line {i + 1} has no 'step'; every record needs one.")
        records.append(obj)
    if not header_seen:
        meta["schema_version"] = SCHEMA_VERSION
    return records, meta


def _records_to_columns(records: list[dict], where: str) -> dict[str, np.ndarray]:
    names: dict[str, None] = {}
    for rec in records:
        for k in rec:
            names.setdefault(k, None)
    cols: dict[str, np.ndarray] = {}
    for name in names:
        vals = [_to_float(name, rec.get(name), where) for rec in records]
        cols[name] = np.asarray(vals, dtype=np.float64)
    if "step" in cols:
        cols["step"] = _as_steps(cols["step"], where)
    else:
        cols["step"] = np.zeros(0, dtype=np.int64)
    return cols


def load_trace(path: str | os.PathLike, **csv_kwargs: Any) -> Trace:
    """Load a trace from a run directory, a ``trace.jsonl`` file or a CSV file.

    Args:
      path: a run directory (``config.json`` + ``trace.jsonl``), a ``.jsonl`` file (its
        directory's ``config.json`` is used when present) or a ``.csv`` file.
      **csv_kwargs: passed to :func:`eosmodel.trace.read_csv` for CSV files.

    Raises:
      FileNotFoundError: the path does not exist or a run directory lacks ``trace.jsonl``.
      TraceError: the file is corrupt (anywhere but a truncated last line), a record is not
        numeric, or steps do not increase.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no trace at {path}: give a run directory, a trace.jsonl or a CSV file.")
    if path.is_dir():
        jsonl = path / TRACE_FILE
        if not jsonl.exists():
            raise FileNotFoundError(
                f"{path} is a directory without {TRACE_FILE}; give a run directory written by "
                "eosmodel (config.json + trace.jsonl) or the path of a CSV file."
            )
    elif path.suffix.lower() == ".csv":
        from eosmodel.trace._csv import read_csv

        return read_csv(path, **csv_kwargs)
    else:
        jsonl = path
    records, meta = _read_jsonl(jsonl)
    config: dict = {}
    cfg_path = jsonl.parent / CONFIG_FILE
    if cfg_path.exists():
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise file_error(cfg_path, "valid JSON", err, "restore or remove it") from None
        if not isinstance(config, dict):
            raise TraceError(f"{cfg_path} holds a JSON {type(config).__name__}, not an object; restore or remove it.")
    cols = _records_to_columns(records, str(jsonl))
    return Trace.from_columns(cols, config=config, meta=meta)


class TraceWriter:
    """Append-only, flushed writer of a run directory's trace.

    ``TraceWriter(run_dir, config)`` starts a new trace (it refuses to overwrite an existing one
    unless ``overwrite=True``); ``TraceWriter(run_dir, config, resume=True, resume_step=s)``
    continues one: it drops a truncated last line and every record with step > ``s`` (the step
    of the checkpoint being resumed), so that the resumed run rewrites them identically.

    Each :meth:`append` / :meth:`append_columns` call writes whole lines and flushes, so a run
    killed at any moment loses at most the record being written. :meth:`sync` also fsyncs
    (call it when a checkpoint is written).

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with TraceWriter(d, {"tuner": {"name": "constant", "stepsize": 0.1}}) as w:
    ...     w.append({"step": 0, "loss": 1.0, "stepsize": 0.1})
    ...     w.append_columns({"step": [1, 2], "loss": [0.5, 0.25], "stepsize": [0.1, 0.1]})
    >>> load_trace(d)["loss"]
    array([1.  , 0.5 , 0.25])
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        config: Mapping | None = None,
        *,
        resume: bool = False,
        resume_step: int | None = None,
        overwrite: bool = False,
    ):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / TRACE_FILE
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._last_step: int | None = None
        if resume:
            if not self.path.exists():
                raise FileNotFoundError(
                    f"cannot resume: {self.path} does not exist; start a new run instead."
                )
            records, _ = _read_jsonl(self.path)
            if resume_step is not None:
                records = [r for r in records if int(r["step"]) <= resume_step]
            tmp = self.path.with_name(TRACE_FILE + ".tmp")
            with open(tmp, "w") as fh:
                fh.write(_header_line())
                fh.writelines(dumps_strict(r) + "\n" for r in records)
            os.replace(tmp, self.path)
            if records:
                self._last_step = int(records[-1]["step"])
            if config is not None:
                _write_json_atomic(self.run_dir / CONFIG_FILE, dict(config))
        else:
            if self.path.exists() and not overwrite:
                raise FileExistsError(
                    f"{self.path} already exists; resume it (resume=True), choose another run "
                    "directory, or pass overwrite=True."
                )
            _write_json_atomic(self.run_dir / CONFIG_FILE, dict(config or {}))
            with open(self.path, "w") as fh:
                fh.write(_header_line())
        self._fh = open(self.path, "a")

    @property
    def last_step(self) -> int | None:
        """The step of the last record written (or kept on resume), None if none."""
        return self._last_step

    def _write(self, recs: list[dict]) -> None:
        for rec in recs:
            if "step" not in rec:
                raise TraceError(f"record {rec!r} has no 'step'; every record needs one.")
            step = int(rec["step"])
            if self._last_step is not None and step <= self._last_step:
                raise TraceError(
                    f"record step {step} does not increase on the last written step "
                    f"{self._last_step}; steps must be strictly increasing."
                )
            self._last_step = step
        self._fh.write("".join(dumps_strict(r) + "\n" for r in recs))
        self._fh.flush()

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record (a mapping of column name to number) and flush."""
        rec = {
            k: int(_as_steps(v, "record").reshape(())) if k == "step" else _to_float(k, v, "record")
            for k, v in record.items()
        }
        self._write([rec])

    def append_columns(self, columns: Mapping[str, Iterable]) -> None:
        """Append several records given as equal-length columns, and flush once."""
        arrays = {k: np.asarray(v) for k, v in columns.items()}
        lengths = {len(a.reshape(-1)) for a in arrays.values()}
        if len(lengths) > 1:
            raise TraceError(f"append_columns got columns of unequal lengths {sorted(lengths)}.")
        names = list(arrays)
        lists = []
        for n in names:
            a = arrays[n].reshape(-1)
            if a.dtype.kind not in "biuf":
                raise TraceError(f"column {n!r} has dtype {a.dtype}; trace columns must be numeric.")
            lists.append((_as_steps(a, "append_columns") if n == "step" else a.astype(np.float64)).tolist())
        self._write([dict(zip(names, row)) for row in zip(*lists)])

    def sync(self) -> None:
        """Flush and fsync the trace file (durable up to the last record)."""
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            self._fh.close()

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
