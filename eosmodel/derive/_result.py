"""The record every derivation module returns for the rendered page."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Result:
    """One derived result: a title, a one-paragraph statement and its equations.

    Attributes:
      key: a stable identifier (``"armijo.quadratic_bound"``), used as the HTML anchor.
      title: a short title.
      statement: what is derived and under which assumptions (plain text, may hold inline LaTeX
        between ``\\(`` and ``\\)``).
      equations: ``(label, expr)`` pairs; ``expr`` is a sympy object (rendered with
        ``sympy.latex``) or a LaTeX string.
      reference: the source the result reproduces (arXiv id), or ``""``.
    """

    key: str
    title: str
    statement: str
    equations: tuple[tuple[str, Any], ...]
    reference: str = ""
