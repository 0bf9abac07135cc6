"""JAX's persistent compilation cache for the command line: a second run of the same shapes starts at once.

The ``eosmodel`` command enables it before running a command that compiles (library code never
sets global flags). Compiled XLA programs are stored under a user cache directory and reused by any
later process that compiles the same program (same shapes, dtypes, settings, JAX version and
device), which removes the compilation of the training step (the biggest part of the start-up
time of a run with sharpness tracking).

Environment:
  EOSMODEL_NO_COMPILATION_CACHE: set to anything but "" or "0" to opt out.
  EOSMODEL_COMPILATION_CACHE_DIR: the directory (default ``$XDG_CACHE_HOME/eosmodel/jax``, else
    ``~/.cache/eosmodel/jax``). JAX's own ``JAX_COMPILATION_CACHE_DIR`` takes precedence when set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["compilation_cache_dir", "enable_compilation_cache"]

#: Programs whose compilation took less than this many seconds are not stored.
MIN_COMPILE_SECONDS = 0.2


def compilation_cache_dir(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The cache directory chosen by ``environ`` (see the module docstring), or None when opted out."""
    if environ.get("EOSMODEL_NO_COMPILATION_CACHE", "") not in ("", "0"):
        return None
    if environ.get("EOSMODEL_COMPILATION_CACHE_DIR"):
        return Path(environ["EOSMODEL_COMPILATION_CACHE_DIR"]).expanduser()
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "eosmodel" / "jax"


def enable_compilation_cache(environ: Mapping[str, str] = os.environ) -> Path | None:
    """Point JAX's persistent compilation cache at :func:`compilation_cache_dir`; returns the directory used.

    Returns None (cache left off) when opted out or when the directory cannot be created (a
    read-only home: runs then compile as before). A directory already configured for JAX (its
    ``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``) is kept and returned.
    """
    import jax

    if jax.config.jax_compilation_cache_dir:
        return Path(jax.config.jax_compilation_cache_dir)
    path = compilation_cache_dir(environ)
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return path
