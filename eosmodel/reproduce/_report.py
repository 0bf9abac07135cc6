"""The claims report of a suite: ``claims.md`` (for people) and ``claims.json`` (for programs)."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eosmodel.reproduce._claims import CLAIMS, FAILS, HOLDS, NOT_MEASURED

__all__ = ["write_claims_report"]


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_claims_report(
    out: str | os.PathLike, rows: Sequence[Mapping[str, Any]], *, suite: str, runs: Mapping[str, Mapping[str, Any]], elapsed_s: float, note: str = ""
) -> tuple[Path, Path]:
    """Write ``out/claims.md`` and ``out/claims.json`` from :func:`evaluate_claims` rows.

    Args:
      out: the suite's output directory.
      rows: the evaluated claims.
      suite: the suite's name.
      runs: run name -> its status (state, steps, wall_s, error), as in status.json.
      elapsed_s: the suite's wall-clock time.
      note: a line to add under the title (e.g. the machine).

    Returns:
      The paths of claims.md and claims.json.
    """
    out = Path(out)
    counts = {v: sum(r["verdict"] == v for r in rows) for v in (HOLDS, FAILS, NOT_MEASURED)}
    states = Counter(r.get("state", "?") for r in runs.values())
    payload = {
        "suite": suite,
        "elapsed_s": round(elapsed_s, 1),
        "runs": {k: {f: v.get(f) for f in ("state", "steps", "wall_s", "error") if v.get(f) is not None} for k, v in runs.items()},
        "verdicts": counts,
        "claims": [dict(r) for r in rows],
    }
    json_path = out / "claims.json"
    _write(json_path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")

    lines = [
        f"# Claims of arXiv 2312.00209 checked on the suite `{suite}`",
        "",
        f"{len(runs)} runs ({', '.join(f'{n} {s}' for s, n in sorted(states.items()))}); suite wall time "
        f"{elapsed_s / 60:.1f} min. Verdicts: {counts[HOLDS]} hold, {counts[FAILS]} do not hold, "
        f"{counts[NOT_MEASURED]} not measured at this scale.",
    ]
    if note:
        lines += ["", note]
    lines += ["", "| figure | model | claim | statistic value | verdict | numbers |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['figure']} | {r['model']} | {r['claim']} (`{r['id']}`) | {_fmt(r['value'])} | **{r['verdict']}** | {r['details']} |"
        )
    used = [c for c in CLAIMS if any(r["id"] == c.id for r in rows)]
    lines += ["", "## How each claim is decided", "", "Defined once in `eosmodel/reproduce/_claims.py`.", ""]
    lines += [f"- `{c.id}` (figure {c.figure}, {c.regime}): {c.statistic}." for c in used]
    bad = {k: v for k, v in runs.items() if v.get("state") in ("failed", "diverged")}
    if bad:
        lines += ["", "## Runs that did not complete", ""]
        lines += [f"- `{k}`: {v['state']}: {v.get('error', '')}" for k, v in bad.items()]
    md_path = out / "claims.md"
    _write(md_path, "\n".join(lines) + "\n")
    return md_path, json_path
