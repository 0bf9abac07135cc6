"""Trace round trips: writer -> loader, truncated last line, resume, CSV export/import."""

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eosmodel.trace import (
    SCHEMA_VERSION,
    Trace,
    TraceError,
    TraceWriter,
    load_trace,
    read_csv,
    write_csv,
)

CONFIG = {"tuner": {"name": "polyak", "c": 0.5, "f_star": 0.0, "max_stepsize": 1.0}, "seed": 3}


def _columns(n, every=3, seed=0):
    rng = np.random.default_rng(seed)
    sharp = np.where(np.arange(n) % every == 0, rng.uniform(1, 50, n), np.nan)
    return {
        "step": np.arange(n),
        "loss": rng.uniform(0, 3, n),
        "grad_norm_sq": rng.uniform(0, 1, n),
        "stepsize": rng.uniform(0.01, 0.5, n),
        "sharpness": sharp,
        "hvps": np.where(np.isfinite(sharp), 7, 0),
        "tuner_failed": rng.integers(0, 2, n).astype(bool),
    }


def _assert_same(a: Trace, b: Trace):
    assert a.names == b.names
    for name in a.names:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert a.config == b.config


def test_writer_round_trip_is_exact(tmp_path):
    cols = _columns(50)
    with TraceWriter(tmp_path / "run", CONFIG) as w:
        w.append({k: v[0] for k, v in cols.items()})
        w.append_columns({k: v[1:] for k, v in cols.items()})
    tr = load_trace(tmp_path / "run")
    expected = Trace.from_columns(cols, CONFIG)
    _assert_same(tr, expected)
    assert tr["step"].dtype == np.int64
    np.testing.assert_array_equal(tr["normalized_sharpness"], cols["stepsize"] * cols["sharpness"])
    assert tr.meta["schema_version"] == SCHEMA_VERSION and not tr.meta["truncated_last_line"]


def test_every_record_is_flushed_before_close(tmp_path):
    w = TraceWriter(tmp_path, CONFIG)
    w.append({"step": 0, "loss": 1.0})
    w.append({"step": 1, "loss": 0.5})
    # Another reader sees both records while the writer is still open (as after SIGKILL).
    np.testing.assert_array_equal(load_trace(tmp_path)["loss"], [1.0, 0.5])
    w.close()


@pytest.mark.parametrize("cut", [2, 5, 17])
def test_truncated_last_line_is_dropped_and_reported(tmp_path, cut):
    Trace.from_columns(_columns(10), CONFIG).save(tmp_path)
    path = tmp_path / "trace.jsonl"
    data = path.read_bytes()
    path.write_bytes(data[:-cut])  # a killed writer leaves part of the last record
    tr = load_trace(tmp_path)
    assert len(tr) == 9 and tr.meta["truncated_last_line"]
    np.testing.assert_array_equal(tr["step"], np.arange(9))


def test_complete_last_record_without_newline_is_kept(tmp_path):
    Trace.from_columns(_columns(10), CONFIG).save(tmp_path)
    path = tmp_path / "trace.jsonl"
    path.write_bytes(path.read_bytes()[:-1])
    tr = load_trace(tmp_path)
    assert len(tr) == 10 and not tr.meta["truncated_last_line"]


def test_corruption_before_the_last_line_is_an_error(tmp_path):
    Trace.from_columns(_columns(10), CONFIG).save(tmp_path)
    path = tmp_path / "trace.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[4] = lines[4][:10] + "\n"
    path.write_text("".join(lines))
    with pytest.raises(TraceError, match="line 5 is not valid JSON"):
        load_trace(tmp_path)


def test_resume_truncates_to_checkpoint_and_continues(tmp_path):
    cols = _columns(30)
    with TraceWriter(tmp_path, CONFIG) as w:
        w.append_columns({k: v[:20] for k, v in cols.items()})
    with open(tmp_path / "trace.jsonl", "a") as fh:
        fh.write('{"step": 20, "lo')  # killed mid-record
    with TraceWriter(tmp_path, CONFIG, resume=True, resume_step=14) as w:
        assert w.last_step == 14
        w.append_columns({k: v[15:] for k, v in cols.items()})
    _assert_same(load_trace(tmp_path), Trace.from_columns(cols, CONFIG))


def test_writer_refuses_to_clobber_or_go_backwards(tmp_path):
    with TraceWriter(tmp_path, CONFIG) as w:
        w.append({"step": 3, "loss": 1.0})
        with pytest.raises(TraceError, match="strictly increasing"):
            w.append({"step": 3, "loss": 1.0})
        with pytest.raises(TraceError, match="no 'step'"):
            w.append({"loss": 1.0})
    with pytest.raises(FileExistsError, match="resume"):
        TraceWriter(tmp_path, CONFIG)
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        TraceWriter(tmp_path / "other", CONFIG, resume=True)


def test_bad_columns_are_rejected():
    with pytest.raises(TraceError, match="'step' column"):
        Trace.from_columns({"loss": [1.0]})
    with pytest.raises(TraceError, match="unequal lengths"):
        Trace.from_columns({"step": [0, 1], "loss": [1.0]})
    with pytest.raises(TraceError, match="does not increase"):
        Trace.from_columns({"step": [0, 2, 2]})
    with pytest.raises(TraceError, match="shape"):
        Trace.from_columns({"step": [0, 1], "v": [[1, 2], [3, 4]]})
    with pytest.raises(KeyError, match="no column 'sharpness'"):
        Trace.from_columns({"step": [0]})["sharpness"]


def test_missing_path_errors_name_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="run directory"):
        load_trace(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="without trace.jsonl"):
        load_trace(tmp_path)


def test_csv_round_trip_is_exact(tmp_path):
    tr = Trace.from_columns(_columns(40), CONFIG)
    write_csv(tr, tmp_path / "t.csv")
    back = load_trace(tmp_path / "t.csv")
    _assert_same(back, tr)


def test_hand_written_csv_from_another_framework(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text(
        "# exported from some other framework\n"
        "iteration,lr,lambda_max,train_loss,note_count\n"
        "0,0.1,5.0,2.0,1\n"
        "10,0.1,,1.5,\n"
        "20,0.1,19.5,1.2,3\n"
    )
    tr = read_csv(path, config={"tuner": {"name": "constant", "stepsize": 0.1}}, expand=False)
    np.testing.assert_array_equal(tr["step"], [0, 10, 20])
    np.testing.assert_allclose(tr["normalized_sharpness"], [0.5, math.nan, 1.95])
    np.testing.assert_array_equal(tr["loss"], [2.0, 1.5, 1.2])
    assert math.isnan(tr["note_count"][1])
    assert tr.config["tuner"]["stepsize"] == 0.1
    steps, values = tr.measured("sharpness")
    np.testing.assert_array_equal(steps, [0, 20])
    # By default, one row per step: stepsize carried, the rest NaN between the logged rows.
    full = read_csv(path)
    np.testing.assert_array_equal(full["step"], np.arange(21))
    np.testing.assert_array_equal(full["stepsize"], np.full(21, 0.1))
    np.testing.assert_array_equal(full.measured("loss")[0], [0, 10, 20])
    assert full.meta["logged_rows"] == 3


def test_csv_column_map_and_errors(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("t,eta,lam\n0,0.1,3\n1,0.1,4\n")
    with pytest.raises(TraceError, match="no 'step' column"):
        read_csv(path)
    tr = read_csv(path, column_map={"t": "step", "eta": "stepsize", "lam": "sharpness"})
    np.testing.assert_allclose(tr["normalized_sharpness"], [0.3, 0.4])
    path.write_text("step,loss\n0,1.0\n1,abc\n")
    with pytest.raises(TraceError, match="line 3, column 'loss'"):
        read_csv(path)
    path.write_text("step,loss\n0,1.0,7\n")
    with pytest.raises(TraceError, match="2 cells|3 cells"):
        read_csv(path)
    path.write_text("step,lr,learning_rate\n0,1,1\n")
    with pytest.raises(TraceError, match="twice"):
        read_csv(path)


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
maybe = st.one_of(finite, st.just(math.nan), st.just(math.inf), st.just(-math.inf))


@given(st.lists(st.tuples(maybe, maybe), min_size=1, max_size=20))
def test_round_trips_preserve_every_float(tmp_path_factory, rows):
    d = tmp_path_factory.mktemp("rt")
    cols = {
        "step": np.arange(len(rows)),
        "loss": np.array([r[0] for r in rows], dtype=float),
        "sharpness": np.array([r[1] for r in rows], dtype=float),
    }
    tr = Trace.from_columns(cols, {"k": [1, 2]})
    tr.save(d / "run")
    write_csv(tr, d / "t.csv")
    for back in (load_trace(d / "run"), load_trace(d / "t.csv")):
        for name in ("loss", "sharpness"):
            np.testing.assert_array_equal(back[name], tr[name])
        assert back.config == {"k": [1, 2]}


def test_config_file_is_plain_json(tmp_path):
    Trace.from_columns({"step": [0]}, {"a": np.float32(0.5), "b": np.arange(2)}).save(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()) == {"a": 0.5, "b": [0, 1]}


def test_plot_traces_draws_the_measured_data_and_ceiling(tmp_path):
    from eosmodel.trace import plot_traces

    gd = Trace.from_columns(_columns(30), {"tuner": {"name": "constant", "stepsize": 0.1}})
    other = Trace.from_columns(_columns(30, seed=1), {"tuner": {"name": "polyak"}})
    fig = plot_traces([gd, other], path=tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 0
    ax_loss, ax_sharp, ax_eta, ax_norm = fig.axes
    steps, vals = gd.measured("sharpness")
    line = ax_sharp.get_lines()[0]
    np.testing.assert_array_equal(line.get_xdata(), steps)
    np.testing.assert_array_equal(line.get_ydata(), vals)
    ceilings = [ln for ln in ax_sharp.get_lines() if ln.get_linestyle() == "--"]
    assert len(ceilings) == 1 and ceilings[0].get_ydata()[0] == pytest.approx(20.0)
    assert [ln.get_label() for ln in ax_loss.get_lines()] == ["GD eta=0.1", "polyak"]
    with pytest.raises(ValueError, match="labels"):
        plot_traces([gd], labels=["a", "b"])
