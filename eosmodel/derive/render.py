"""Renders every derivation to one self-contained HTML page.

The equations are written as LaTeX (``sympy.latex``) between ``\\[ \\]`` delimiters: MathJax
typesets them when the reader is online, and the raw LaTeX stays readable offline.
"""

from __future__ import annotations

import datetime
import html
from pathlib import Path

import sympy as sp

from eosmodel.derive import all_results
from eosmodel.derive._result import Result

_MATHJAX = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.5; color: #222; }
section { border-top: 1px solid #ccc; padding: 0.5rem 0 1rem; }
.eq { overflow-x: auto; font-family: monospace; white-space: pre-wrap; }
.ref { color: #666; font-size: 0.9rem; }
"""


_RELATIONS = ("=", "<", ">", r"\le", r"\ge", r"\leq", r"\geq")


def equation_latex(label: str, expr) -> str:
    """The LaTeX of one labelled equation: ``label = latex(expr)`` (``expr`` sympy or a string).

    A label that already ends with a relation (``=``, ``<``, ``\\le``, ``\\ge``, ...) is followed by
    the expression directly.
    """
    body = expr if isinstance(expr, str) else sp.latex(expr)
    if label.rstrip().endswith(_RELATIONS):
        return f"{label} {body}"
    return f"{label} = {body}"


def render_result(result: Result) -> str:
    """The HTML section of one :class:`~eosmodel.derive.Result`."""
    parts = [
        f'<section id="{html.escape(result.key)}">',
        f"<h2>{html.escape(result.title)}</h2>",
        f"<p>{html.escape(result.statement)}</p>",
    ]
    for label, expr in result.equations:
        parts.append(f'<div class="eq">\\[{html.escape(equation_latex(label, expr))}\\]</div>')
    if result.reference:
        parts.append(f'<p class="ref">Reference: {html.escape(result.reference)}</p>')
    parts.append("</section>")
    return "\n".join(parts)


def render_html(results: list[Result] | None = None) -> str:
    """The whole page as a string (``results`` defaults to :func:`eosmodel.derive.all_results`)."""
    results = all_results() if results is None else results
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    toc = "\n".join(
        f'<li><a href="#{html.escape(r.key)}">{html.escape(r.title)}</a></li>' for r in results
    )
    body = "\n".join(render_result(r) for r in results)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>eosmodel: symbolic derivations</title>
<style>{_STYLE}</style>
<script async src="{_MATHJAX}"></script>
</head>
<body>
<h1>eosmodel: symbolic derivations</h1>
<p>Each result is derived with sympy in <code>eosmodel/derive/</code> and checked against simulation
by <code>tests/test_derivations.py</code>. Generated {stamp} with sympy {sp.__version__}.</p>
<ul>
{toc}
</ul>
{body}
</body>
</html>
"""


def render_page(path) -> Path:
    """Writes the HTML page of every derivation to ``path`` (parent folders created) and returns it.

    Args:
      path: the output file (e.g. ``docs/derivations.html``).

    Returns:
      The path written, as a :class:`pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(), encoding="utf-8")
    return path
