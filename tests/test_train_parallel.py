"""Data-parallel training over 4 (forced host) devices gives the numbers of one device.

The device count flag must be set before JAX starts, so the runs happen in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``; it trains the same config with
``train.devices = 1`` and ``= 4`` and prints both traces' columns as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent(
    """
    import json, sys, tempfile
    import jax
    from eosmodel.train import run_training
    assert jax.local_device_count() == 4, jax.devices()
    base = {
        "data": {"name": "synthetic", "n_train": 72, "n_test": 20, "num_classes": 3, "input_shape": [5]},
        "model": {"name": "fc-tanh", "width": 8},
        "train": {"steps": 8, "log_every": 4, "eval_every": 4, "checkpoint_every": 0},
        "sharpness": {"every": 2, "k": 2, "tol": 1e-4},
    }
    cases = {
        # full batch: 2 chunks of 32 (8 per device) + a remainder of 8; Armijo evaluates the full loss
        "full_armijo": {"tuner": {"preset": "armijo-jax"}, "train": {"chunk_size": 32}},
        # mini-batch: batches of 24 gathered from the permutation, 12 per chunk
        "sgd_polyak": {"tuner": {"preset": "sps-0.5"}, "train": {"batch_size": 24, "chunk_size": 12}, "every": 0},
    }
    out = {}
    for name, case in cases.items():
        for devices in (1, 4):
            cfg = {k: dict(v) for k, v in base.items()}
            cfg["tuner"] = case["tuner"]
            cfg["train"].update(case["train"], devices=devices)
            cfg["sharpness"]["every"] = case.get("every", 2)
            res = run_training(cfg, tempfile.mkdtemp() + "/run", progress=False)
            assert res.summary["num_devices"] == devices
            out[f"{name}/{devices}"] = {k: res.trace[k].tolist() for k in res.trace.names if k != "wall_time"}
    print("RESULT" + json.dumps(out))
    """
)


def test_four_devices_match_one_device(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT"))
    out = json.loads(line[len("RESULT") :])
    for case in ("full_armijo", "sgd_polyak"):
        one, four = out[f"{case}/1"], out[f"{case}/4"]
        assert set(one) == set(four)
        for col in one:
            a = np.asarray(one[col], dtype=float)
            b = np.asarray(four[col], dtype=float)
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, equal_nan=True, err_msg=f"{case}: {col}")
    assert np.isfinite(np.asarray(out["full_armijo/1"]["sharpness"], dtype=float)).sum() == 4
