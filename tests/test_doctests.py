"""The examples in symact's docstrings run and print what they say."""

import doctest
import importlib
import pkgutil

import pytest

import symact

MODULES = ["symact"] + [f"symact.{m.name}" for m in pkgutil.iter_modules(symact.__path__)]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
