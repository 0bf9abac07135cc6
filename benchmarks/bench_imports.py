"""Import time of eosmodel's core modules, each in a fresh interpreter, against `import jax, optax`.

Prints, per module, the median wall time of `python -c "import M"` over interleaved rounds and its
ratio to the reference `import jax, optax` (what any JAX optimizer code pays anyway), plus which
heavy packages (sympy, matplotlib, sklearn, flax, scipy) the import pulled in. The machine is
shared and noisy: compare the ratios, not the seconds.

Run: python benchmarks/bench_imports.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("sympy", "matplotlib", "sklearn", "flax", "scipy")
TARGETS = {
    "reference: jax, optax": "import jax, optax",
    "eosmodel.tuners": "import eosmodel.tuners",
    "eosmodel.sharpness": "import eosmodel.sharpness",
    "eosmodel.monitor": "import eosmodel.monitor",
    "eosmodel.train": "import eosmodel.train",
}


def _time(code: str) -> tuple[float, list[str]]:
    probe = f"import sys, json, time; t = time.perf_counter(); {code}; dt = time.perf_counter() - t; " \
            f"print(json.dumps([dt, [m for m in {HEAVY!r} if m in sys.modules]]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    dt, heavy = json.loads(out.stdout)
    return dt, heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in TARGETS}
    heavy: dict[str, list[str]] = {}
    start = time.perf_counter()
    for _ in range(args.rounds):  # interleaved: each round times every target once
        for name, code in TARGETS.items():
            dt, mods = _time(code)
            times[name].append(dt)
            heavy[name] = mods
    ref = statistics.median(times["reference: jax, optax"])
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (2-core machine shared by other jobs: noisy)")
    print(f"{'import':<24} {'median s':>9} {'ratio':>6}  heavy modules imported")
    for name in TARGETS:
        med = statistics.median(times[name])
        print(f"{name:<24} {med:9.3f} {med / ref:6.2f}  {', '.join(heavy[name]) or '-'}")
    print(f"({args.rounds} interleaved rounds, {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
