"""CSV export and import of traces, so that runs made by any framework can be analysed.

Format written by :func:`write_csv`::

    # eosmodel.trace schema_version=1
    # config: {"tuner": {"name": "constant", "stepsize": 0.05}}
    step,loss,stepsize,sharpness,...
    0,2.31,0.05,nan,...

Lines starting with ``#`` are comments; the ``# config:`` comment (optional) holds the run's
config as one line of JSON. Empty cells and ``nan`` are NaN. A hand-written CSV needs only a
header and the columns it has; common names from other frameworks (``lr``, ``learning_rate``,
``iteration``, ``lambda_max``, ...) are mapped to the standard ones (see ``CSV_ALIASES``), and
``column_map`` maps any others.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from eosmodel.trace._schema import CSV_ALIASES, SCHEMA_NAME, SCHEMA_VERSION
from eosmodel.trace._trace import Trace, TraceError, _json_default


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
) -> Trace:
    """Read a trace from a CSV file (written by eosmodel or by hand, by any framework).

    Args:
      path: the CSV file; a header row names the columns.
      column_map: renames ``{their_name: our_name}`` applied before the built-in aliases
        (e.g. ``{"lam": "sharpness"}``).
      config: the run's config (e.g. ``{"tuner": {"name": "constant", "stepsize": 0.05}}``);
        overrides a ``# config:`` comment in the file.

    Returns:
      The :class:`Trace`; ``normalized_sharpness`` is derived when absent.

    Raises:
      FileNotFoundError: no such file.
      TraceError: no header, no ``step`` column, two columns mapped to the same name, a
        non-numeric cell, a ragged row, or steps that do not increase.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no CSV trace at {path}.")
    text = path.read_text()
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
            continue
        if stripped:
            body_lines.append((i, line))
    if not body_lines:
        raise TraceError(f"{path} has no header row; the first non-comment line must name the columns.")
    rows = list(csv.reader(io.StringIO("\n".join(line for _, line in body_lines))))
    header = [h.strip() for h in rows[0]]
    mapping = {**CSV_ALIASES, **dict(column_map or {})}
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
            "column_map={'your_name': 'step'}."
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
    steps = cols["step"]
    if not np.all(np.isfinite(steps)) or np.any(steps != np.round(steps)):
        raise TraceError(f"{path}: 'step' must hold integers in every row.")
    cfg = dict(config) if config is not None else file_config
    return Trace.from_columns(cols, config=cfg, meta={"source": str(path)})
