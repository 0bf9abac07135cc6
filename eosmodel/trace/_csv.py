"""CSV export and import of traces, so that runs made by any framework can be analysed.

Format written by :func:`write_csv`::

    # eosmodel.trace schema_version=1
    # config: {"tuner": {"name": "constant", "stepsize": 0.05}}
    step,loss,stepsize,sharpness,...
    0,2.31,0.05,nan,...

Lines starting with ``#`` are comments; the ``# config:`` comment (optional) holds the run's
config as one line of JSON, and the ``# eosmodel.trace schema_version=N`` comment the format's
version (a file from a newer eosmodel is refused, as for ``trace.jsonl``). Empty cells and
``nan`` are NaN. The file is UTF-8 text (a byte-order mark, as spreadsheet programs write, is
accepted). A hand-written CSV needs only a header and the columns it has; common names from other
frameworks (``lr``, ``learning_rate``, ``iteration``, ``lambda_max``, ...) are mapped to the
standard ones (see ``CSV_ALIASES``), and ``column_map`` maps any others.

One row per measurement: other tools log every k steps (steps 0, 50, 100, ...). Such a file is
expanded to one row per step, as the trace contract wants: between two logged rows the
``stepsize`` of the earlier row is carried (exact for a constant stepsize, or when each row gives
the stepsize used until the next row) and every other column is NaN (not measured). The number
of logged rows is kept in ``Trace.meta["logged_rows"]``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from pathlib import Path
from typing import Mapping

import numpy as np

from eosmodel.errors import file_error
from eosmodel.trace._schema import CSV_ALIASES, SCHEMA_NAME, SCHEMA_VERSION
from eosmodel.trace._trace import Trace, TraceError, _as_steps, _json_default

#: The most steps a CSV logged every k steps is expanded to (one row per step).
MAX_EXPANDED_STEPS = 50_000_000


def write_csv(trace: Trace, path: str | os.PathLike) -> Path:
    """Write ``trace`` (config in a comment line, then the columns) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = trace.names
    with open(path, "w", newline="") as fh:
        fh.write(f"# {SCHEMA_NAME} schema_version={SCHEMA_VERSION}\n")
        fh.write("# config: " + json.dumps(trace.config, default=_json_default) + "\n")
        writer = csv.writer(fh)
        writer.writerow(names)
        for rec in trace.records():
            writer.writerow([_fmt(rec[n]) for n in names])
    return path


def _fmt(v: float | int) -> str:
    if isinstance(v, int):
        return str(v)
    return "nan" if math.isnan(v) else repr(v)


def _parse_cell(text: str, name: str, line: int, path: Path) -> float:
    text = text.strip()
    if text == "" or text.lower() in {"nan", "na", "none", "null"}:
        return math.nan
    low = text.lower()
    if low in {"true", "false"}:
        return float(low == "true")
    try:
        return float(text)
    except ValueError:
        raise TraceError(
            f"{path}: line {line}, column {name!r} holds {text!r}, which is not a number; "
            "trace columns must be numeric."
        ) from None


def read_csv(
    path: str | os.PathLike,
    *,
    column_map: Mapping[str, str] | None = None,
    config: Mapping | None = None,
    expand: bool = True,
) -> Trace:
    """Read a trace from a CSV file (written by eosmodel or by hand, by any framework).

    Args:
      path: the CSV file (UTF-8, a byte-order mark allowed); a header row names the columns.
      column_map: renames ``{their_name: our_name}`` applied before the built-in aliases
        (e.g. ``{"lam": "sharpness"}``); each of their names must be a column of the file.
      config: the run's config (e.g. ``{"tuner": {"name": "constant", "stepsize": 0.05}}``);
        overrides a ``# config:`` comment in the file.
      expand: a file logged every k steps (steps 0, 50, 100, ...) with a ``stepsize`` column is
        expanded to one row per step (stepsize carried from the last logged row, other columns
        NaN between rows); ``False`` keeps the rows as they are.

    Returns:
      The :class:`Trace`; ``normalized_sharpness`` is derived when absent.

    Raises:
      FileNotFoundError: no such file.
      TraceError: not UTF-8 text, a ``schema_version`` newer than this eosmodel reads, no header,
        no ``step`` column, a ``column_map`` name that is not a column, two columns mapped to the
        same name, a non-numeric cell, a ragged row, non-integer steps, or steps that do not
        increase.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no CSV trace at {path}.")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise file_error(path, "UTF-8 text", err, "save the CSV as UTF-8") from None
    file_config: dict = {}
    body_lines: list[tuple[int, str]] = []
    for i, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("#"):
            content = stripped[1:].strip()
            if content.startswith("config:"):
                try:
                    file_config = json.loads(content[len("config:"):])
                except json.JSONDecodeError as err:
                    raise TraceError(f"{path}: line {i}: the config comment is not valid JSON ({err}).") from None
                if not isinstance(file_config, dict):
                    raise TraceError(f"{path}: line {i}: the config comment is not a JSON object; fix or drop it.")
            elif content.startswith(SCHEMA_NAME):
                _check_version(content, path, i)
            continue
        if stripped:
            body_lines.append((i, line))
    if not body_lines:
        raise TraceError(f"{path} has no header row; the first non-comment line must name the columns.")
    rows = list(csv.reader(io.StringIO("\n".join(line for _, line in body_lines))))
    header = [h.strip() for h in rows[0]]
    user_map = dict(column_map or {})
    unknown = [k for k in user_map if k not in header and k.lower() not in {h.lower() for h in header}]
    if unknown:
        raise TraceError(
            f"{path}: the column map names {unknown}, which are not columns of the file (columns: {header}); "
            "use the names of its header."
        )
    user_map.update({k.lower(): v for k, v in user_map.items()})
    mapping = {**CSV_ALIASES, **user_map}
    names = []
    for h in header:
        name = mapping.get(h, mapping.get(h.lower(), h))
        if name in names:
            raise TraceError(
                f"{path}: columns {header} give {name!r} twice (after mapping aliases); "
                "drop one or pass column_map to rename it."
            )
        names.append(name)
    if "step" not in names:
        raise TraceError(
            f"{path} has no 'step' column (columns: {header}); add one, or map yours with "
            "column_map={'your_name': 'step'} (eosmodel fit --columns your_name=step)."
        )
    values = np.full((len(rows) - 1, len(names)), np.nan)
    for r, row in enumerate(rows[1:]):
        line_no = body_lines[r + 1][0]
        if len(row) != len(names):
            raise TraceError(
                f"{path}: line {line_no} has {len(row)} cells but the header has {len(names)}."
            )
        for c, cell in enumerate(row):
            values[r, c] = _parse_cell(cell, names[c], line_no, path)
    cols = {n: values[:, c] for c, n in enumerate(names)}
    cols["step"] = _as_steps(cols["step"], str(path))
    cfg = dict(config) if config is not None else file_config
    meta = {"source": str(path)}
    trace = Trace.from_columns(cols, config=cfg, meta=meta)  # checks that steps increase
    if expand and "stepsize" in cols and len(trace) > 1 and np.any(np.diff(trace["step"]) > 1):
        trace = _expand(trace, path)
    return trace


def _check_version(content: str, path: Path, line: int) -> None:
    """Refuse a ``# eosmodel.trace schema_version=N`` comment newer than :data:`SCHEMA_VERSION`."""
    match = re.search(r"schema_version\s*=\s*(\S+)", content)
    version = match.group(1) if match else None
    if version is None or not version.isdigit() or int(version) > SCHEMA_VERSION:
        raise TraceError(
            f"{path}: line {line}: schema_version {version!r} is newer than this eosmodel reads "
            f"({SCHEMA_VERSION}); upgrade eosmodel."
        )


def _expand(trace: Trace, path: Path) -> Trace:
    """One row per step from rows logged every k steps: the stepsize carried, the rest NaN between rows."""
    steps = trace["step"]
    first, last = int(steps[0]), int(steps[-1])
    n = last - first + 1
    if n > MAX_EXPANDED_STEPS:
        raise TraceError(
            f"{path}: steps {first}..{last} would expand to {n} rows (one per step), more than "
            f"{MAX_EXPANDED_STEPS}; log more often, or read it with expand=False."
        )
    stepsize = trace["stepsize"]
    bad = np.flatnonzero(~np.isfinite(stepsize))
    if bad.size:
        raise TraceError(
            f"{path}: the rows skip steps (one row per measurement) but the stepsize at step {int(steps[bad[0]])} "
            "is missing; give the stepsize on every row (it is carried to the steps between rows)."
        )
    index = steps - first
    cols = {}
    for name, values in trace.columns.items():
        if name == "step":
            cols[name] = np.arange(first, last + 1)
        elif name == "stepsize":
            owner = np.searchsorted(steps, np.arange(first, last + 1), side="right") - 1
            cols[name] = values[owner]
        else:
            col = np.full(n, np.nan)
            col[index] = values
            cols[name] = col
    meta = {**trace.meta, "logged_rows": len(trace)}
    return Trace.from_columns(cols, config=trace.config, meta=meta)
