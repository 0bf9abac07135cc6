"""Installs and imports like a library: the core imports no heavy optional stack, and
``eosmodel derive`` runs from a copy of the package alone (as installed, without derivations/)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("sympy", "matplotlib", "sklearn", "flax")


@pytest.mark.parametrize("module", ["eosmodel.tuners", "eosmodel.sharpness", "eosmodel.trace", "eosmodel.monitor"])
def test_core_modules_do_not_import_the_heavy_stack(module):
    code = f"import sys, json, {module}; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [], f"import {module} imported {out.stdout.strip()}"


def test_derive_runs_from_the_package_alone(tmp_path):
    site = tmp_path / "site"
    shutil.copytree(ROOT / "eosmodel", site / "eosmodel", ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c",
         "import importlib.util, sys; assert importlib.util.find_spec('derivations') is None, 'derivations/ visible'; "
         "from eosmodel.cli import main; sys.exit(main(sys.argv[1:]))",
         "derive", "--out", str(tmp_path / "d.html")],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    html = (tmp_path / "d.html").read_text()
    assert "Armijo" in html and "sympy" in html
