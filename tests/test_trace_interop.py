"""Files other tools read: strict-JSON traces (checked with a strict parser), old NaN files still
read, Trace.to_pandas, and CSV files that read back identically."""

import json
import math

import numpy as np
import pytest

from eosmodel.trace import Trace, TraceWriter, load_trace, read_csv, write_csv


def _refuse_constant(token):
    raise ValueError(f"non-standard JSON token {token}")


def _strict_loads(text):
    """A strict RFC 8259 parser: Python's json without the NaN/Infinity extension."""
    return json.loads(text, parse_constant=_refuse_constant)


def _columns():
    return {
        "step": [0, 1, 2, 3],
        "loss": [1.0, 1 / 3, 1e-300, math.inf],
        "stepsize": [0.1, 0.1, 0.2, 0.2],
        "sharpness": [10.0, math.nan, 19.5, math.nan],
        "tuner_num_trials": [1.0, 2.0, 3.0, -math.inf],
    }


def _assert_same(a: Trace, b: Trace):
    assert a.names == b.names
    for name in a.names:
        np.testing.assert_array_equal(a[name], b[name])  # NaN == NaN here; values bit for bit
        assert a[name].dtype == b[name].dtype
    assert a.config == b.config


def test_trace_files_are_strict_json_and_read_back(tmp_path):
    config = {"tuner": {"name": "constant", "stepsize": 0.1}, "cap": math.inf, "missing": math.nan}
    with TraceWriter(tmp_path / "w", config) as writer:
        writer.append({"step": 0, "loss": math.nan, "stepsize": 0.1})
        writer.append_columns({k: v[1:] for k, v in _columns().items()})
    lines = (tmp_path / "w" / "trace.jsonl").read_text().splitlines()
    records = [_strict_loads(line) for line in lines]
    assert records[1]["loss"] is None and records[2]["sharpness"] is None
    assert records[-1]["loss"] == math.inf and records[-1]["tuner_num_trials"] == -math.inf
    stored = _strict_loads((tmp_path / "w" / "config.json").read_text())
    assert stored["cap"] == math.inf and stored["missing"] is None
    trace = load_trace(tmp_path / "w")
    assert math.isnan(trace["loss"][0]) and trace["loss"][3] == math.inf and math.isnan(trace["sharpness"][1])

    tr = Trace.from_columns(_columns(), config={"tuner": {"name": "constant"}})
    tr.save(tmp_path / "s")
    for line in (tmp_path / "s" / "trace.jsonl").read_text().splitlines():
        _strict_loads(line)
    _assert_same(tr, load_trace(tmp_path / "s"))


def test_old_traces_with_nan_tokens_still_read(tmp_path):
    (tmp_path / "trace.jsonl").write_text(
        '{"schema": "eosmodel.trace", "schema_version": 1}\n'
        '{"step": 0, "loss": NaN, "sharpness": Infinity}\n{"step": 1, "loss": -Infinity, "sharpness": 2.0}\n'
    )
    trace = load_trace(tmp_path / "trace.jsonl")
    assert math.isnan(trace["loss"][0]) and trace["sharpness"][0] == math.inf and trace["loss"][1] == -math.inf


def test_csv_written_by_eosmodel_reads_back_identically(tmp_path):
    tr = Trace.from_columns(_columns(), config={"tuner": {"name": "armijo", "c": 0.1}, "name": "run"})
    path = write_csv(tr, tmp_path / "t.csv")
    _assert_same(tr, read_csv(path))
    _assert_same(tr, load_trace(path))


def test_to_pandas():
    pd = pytest.importorskip("pandas")
    tr = Trace.from_columns(_columns(), config={"tuner": {"name": "constant"}})
    frame = tr.to_pandas()
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == tr.names
    for name in tr.names:
        np.testing.assert_array_equal(frame[name].to_numpy(), tr[name])
    assert frame["step"].dtype == np.int64 and frame.attrs["config"] == tr.config


def test_fractional_steps_are_refused_not_floored(tmp_path):
    from eosmodel.trace import TraceError

    with pytest.raises(TraceError, match="step 1.7 is not an integer"):
        Trace.from_columns({"step": [0, 1.7], "loss": [1.0, 2.0]})
    with TraceWriter(tmp_path / "w", {}) as writer:
        with pytest.raises(TraceError, match="step 1.7 is not an integer"):
            writer.append({"step": 1.7, "loss": 1.0})
        with pytest.raises(TraceError, match="booleans"):
            writer.append({"step": True, "loss": 1.0})
        with pytest.raises(TraceError, match="step 2.5 is not an integer"):
            writer.append_columns({"step": [1.0, 2.5], "loss": [1.0, 2.0]})
        writer.append({"step": 3.0, "loss": 1.0})  # an integral float is a step
    assert list(load_trace(tmp_path / "w")["step"]) == [3]
