"""The examples in the public packages' docstrings run and print what they say.

symact's modules, and those of numeric and analysis (whose examples were not run before, so a
wrong one would have gone unnoticed); graphs' and numeric.codegen/printer's are also run by
their own test files.
"""

import doctest
import importlib
import pkgutil

import pytest

import analysis
import numeric
import symact


def _modules(package) -> list[str]:
    return [package.__name__] + [name for _, name, _ in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]


# numeric.gauss's examples integrate at 30+ digits: ~40 s on a 2-core machine
_SLOW = {"numeric.gauss"}
MODULES = [pytest.param(name, marks=pytest.mark.slow) if name in _SLOW else name
           for package in (symact, numeric, analysis) for name in _modules(package)]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples may write files
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
