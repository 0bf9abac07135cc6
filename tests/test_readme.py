"""The README's Python API example runs and says what its comments claim."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no Python example"
    exec(compile(blocks[0], "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    values = [float(v) for v in re.findall(r"[-+]?\d*\.\d+(?:e[-+]?\d+)?", out[0])]
    assert len(values) == 4 and all(abs(v - 2.0) < 0.05 for v in values), out[0]
    assert out[1] == "explained"


def test_readme_commands_match_ci():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    test_cmd = re.search(r'pip install -e "\.\[test\]" && python -m pytest[^\n`]*', text).group(0)
    assert test_cmd in ci, "the README's test command and .ci/run disagree"
    assert "eosmodel demo" in text
