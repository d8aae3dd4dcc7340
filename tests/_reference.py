"""Independent references for tests: exact evaluation through SymPy/mpmath, torch built-ins."""

from __future__ import annotations

import importlib

import sympy

import symact


def exact(expr, point, digits: int = 600):
    """expr at x = point (a decimal string or number), evaluated at ``digits`` working digits.

    SymPy's evalf does not raise its precision for log(1 + tiny), so the working
    precision must itself resolve 1 + exp(-1000) (about 435 digits).
    """
    value = sympy.sympify(expr).xreplace({symact.x: sympy.Rational(str(point))})
    return value.evalf(digits, maxn=2 * digits)


def resolve_torch(act):
    """The PyTorch built-in of a catalogue activation as a callable of one float64 tensor."""
    import torch

    function_name, kwargs = act.torch_builtin
    module_name, _, attr = function_name.rpartition(".")
    function = getattr(importlib.import_module(module_name), attr)
    tensor_kwargs = set(act.torch_spec.tensor_kwargs)

    def call(t):
        kw = {
            key: (torch.tensor([value] if key == "weight" else value, dtype=t.dtype) if key in tensor_kwargs else value)
            for key, value in kwargs.items()
        }
        if function_name.endswith("heaviside"):
            return function(t, kw["values"])
        return function(t, **kw)

    return call
