"""How much memory a job may use: the host's available RAM and the first device's limit."""

from __future__ import annotations

import os

__all__ = ["format_bytes", "memory_available"]


def _host_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def memory_available(device: bool = True) -> tuple[int | None, str]:
    """``(bytes, what)``: the smaller of the host's available RAM and (with ``device``) the first
    local JAX device's memory limit, and a name for it; ``(None, "memory")`` when neither is known.
    """
    options: list[tuple[int, str]] = []
    host = _host_available()
    if host is not None:
        options.append((host, "available RAM"))
    if device:
        try:
            import jax

            dev = jax.local_devices()[0]
            limit = (dev.memory_stats() or {}).get("bytes_limit")
        except Exception:  # noqa: BLE001 - backends without memory statistics
            limit = None
        if limit:
            options.append((int(limit), f"{dev.platform.upper()} memory"))
    return min(options) if options else (None, "memory")


def format_bytes(n: float) -> str:
    """``n`` bytes in GiB (or MiB below 1 GiB), three significant digits."""
    if n >= 2 ** 30:
        return f"{n / 2 ** 30:.3g} GiB"
    return f"{n / 2 ** 20:.3g} MiB"
