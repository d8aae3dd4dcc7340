"""The README's Python examples run and print what the README says they print.

Each ```python block of README.md is one doctest (blocks share no names), run in a
temporary directory because examples may write files (export_module).
"""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import mpmath
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks() -> list[tuple[int, str]]:
    text = README.read_text()
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in _BLOCK.finditer(text)]


def test_readme_has_python_examples():
    assert len(_blocks()) >= 5


@pytest.mark.parametrize("line, source", _blocks(), ids=lambda v: f"line{v}" if isinstance(v, int) else "")
def test_readme_block_runs_as_shown(line, source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(mpmath.mp, "dps", 15)  # mpf reprs in the README are at mpmath's default precision
    test = doctest.DocTestParser().get_doctest(source, {}, f"README.md:{line}", str(README), line - 1)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    output: list[str] = []
    runner.run(test, out=output.append)
    assert runner.failures == 0, "".join(output)
