"""The persistent compilation cache of the command line: directory choice, opt-out, and reuse across processes."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from eosmodel._compilation_cache import compilation_cache_dir


def test_cache_dir_choice_and_opt_out(tmp_path):
    assert compilation_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "eosmodel" / "jax"
    assert compilation_cache_dir({"EOSMODEL_COMPILATION_CACHE_DIR": str(tmp_path / "c")}) == tmp_path / "c"
    assert compilation_cache_dir({"EOSMODEL_NO_COMPILATION_CACHE": "1", "XDG_CACHE_HOME": str(tmp_path)}) is None
    assert compilation_cache_dir({"EOSMODEL_NO_COMPILATION_CACHE": "0", "XDG_CACHE_HOME": str(tmp_path)}) is not None
    assert compilation_cache_dir({}) == Path.home() / ".cache" / "eosmodel" / "jax"


_CHILD = textwrap.dedent(
    """
    import jax, jax.numpy as jnp
    from eosmodel._compilation_cache import enable_compilation_cache
    print(enable_compilation_cache())
    f = jax.jit(lambda x: jnp.linalg.eigh(x @ x.T + jnp.sin(x))[0].sum())
    print(float(f(jnp.ones((64, 64)))))
    """
)


def test_second_process_reads_the_programs_the_first_one_stored(tmp_path):
    """Two processes compile the same program: the first stores it, the second finds it (no new entry)."""
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EOSMODEL_", "JAX_COMPILATION"))}
    env.update(EOSMODEL_COMPILATION_CACHE_DIR=str(cache), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # store even a fast compilation
    outs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        outs.append(proc.stdout.split())
        if len(outs) == 1:
            entries = sorted(p.name for p in cache.iterdir() if "atime" not in p.name)
            assert entries, "the first process stored nothing"
    assert outs[0] == outs[1] and outs[0][0] == str(cache)
    assert sorted(p.name for p in cache.iterdir() if "atime" not in p.name) == entries  # the second process compiled nothing new
    off = subprocess.run([sys.executable, "-c", _CHILD], env=dict(env, EOSMODEL_NO_COMPILATION_CACHE="1"),
                         capture_output=True, text=True, timeout=300)
    assert off.returncode == 0 and off.stdout.split()[0] == "None"
