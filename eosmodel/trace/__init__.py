"""The record of a run (the contract between simulator, trainer, fitter and figures).

A run directory holds ``config.json`` (the run's configuration) and ``trace.jsonl`` (a schema
header, then one JSON object per step, appended and flushed as the run goes). See
``STANDARD_COLUMNS`` for the columns and their meaning; ``SCHEMA_VERSION`` versions the format.

API: :class:`TraceWriter` (append-only, crash-safe, resumable), :class:`Trace` (config + numpy
columns), :func:`load_trace` (run directory, ``.jsonl`` or ``.csv``), :func:`write_csv` and
:func:`read_csv` (exchange with other frameworks), :func:`plot_traces` (the standard
four-panel figure: loss, sharpness with 2/eta, stepsize, eta*lambda).
"""

from eosmodel.trace._csv import read_csv, write_csv
from eosmodel.trace._plot import default_label, plot_traces
from eosmodel.trace._schema import (
    COLUMN_FAMILIES,
    CSV_ALIASES,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    STANDARD_COLUMNS,
)
from eosmodel.trace._trace import (
    CONFIG_FILE,
    TRACE_FILE,
    Trace,
    TraceError,
    TraceWriter,
    load_trace,
)

__all__ = [
    "COLUMN_FAMILIES",
    "CONFIG_FILE",
    "CSV_ALIASES",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "STANDARD_COLUMNS",
    "TRACE_FILE",
    "Trace",
    "TraceError",
    "TraceWriter",
    "default_label",
    "load_trace",
    "plot_traces",
    "read_csv",
    "write_csv",
]
