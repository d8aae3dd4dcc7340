"""Generated code where the catalogue formulas meet 0/0, 0*inf or overflow: gradients with
respect to trainable parameters at special points, and finiteness over the whole float range.

References are independent of the code under test: mpmath at 50 digits of the catalogue
formula (SymPy's own derivative of it, or a central difference of the formula itself),
and PyTorch's built-ins.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy
import torch

import symact
from numeric.codegen import torch_function, torch_module

X = symact.x


def _mp_function(name: str, **fixed):
    """The catalogue formula of ``name`` as an mpmath function of x and its parameters."""
    act = symact.activation(name)
    params = sorted(act.params, key=lambda p: p.name)
    expr = act.expr.xreplace({p: sympy.sympify(v) for p, v in fixed.items()})
    return sympy.lambdify([X, *params], expr, modules="mpmath"), params


def _central_difference(f, x, args, index, h=mpmath.mpf("1e-20")):
    """d f / d args[index] at 50 digits, by a central difference with step 1e-20."""
    with mpmath.workdps(50):
        up = list(map(mpmath.mpf, args))
        down = list(up)
        up[index] += h
        down[index] -= h
        return (f(mpmath.mpf(x), *up) - f(mpmath.mpf(x), *down)) / (2 * h)


# ------------------------------------------------------------------ softexponential's alpha = 0
def test_softexponential_alpha_gradient_at_zero_is_the_limit_of_its_neighbours():
    """The Eq(alpha, 0) branch (x) does not depend on alpha, so its alpha-derivative was 0 and a
    trainable alpha starting at its default 0 never moved.  Reference: a 50-digit central
    difference in alpha of the catalogue formula (it steps into the alpha < 0 and alpha > 0
    branches), x**2/2 + 1."""
    f, params = _mp_function("softexponential")
    points = [-2.0, -0.3, 0.5, 3.0]
    module = torch_module(symact.activation("softexponential"), trainable=("alpha",)).double()
    t = torch.tensor(points, dtype=torch.float64, requires_grad=True)
    module(t).sum().backward()
    exact = sum(float(_central_difference(f, p, [0], 0)) for p in points)
    assert exact == pytest.approx(sum(p * p / 2 + 1 for p in points), rel=1e-12)  # the reference itself
    assert module.alpha.grad.item() == pytest.approx(exact, rel=1e-12)
    assert t.grad.tolist() == [1.0] * len(points)
    fn = torch_function(symact.activation("softexponential"), trainable=("alpha",))
    for alpha in (0.0, 0.1, -0.1):
        a = torch.tensor(alpha, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(fn.apply, (t, a))
        assert torch.autograd.gradgradcheck(fn.apply, (t, a))


# ------------------------------------------------------------------ elephant's |x|**d at x = 0
@pytest.mark.parametrize("trainable", [("d",), ("a", "d")], ids=["d", "a-and-d"])
@pytest.mark.parametrize("d", [4.0, 2.5, 1.5])
def test_elephant_trainable_exponent_gradients_at_zero_are_the_limits(trainable, d):
    """SymPy's d|x|**d/dx = d*|x|**d*sign(x)/|x| and d|x|**d/dd = |x|**d*log|x| are 0*inf at x = 0:
    the gradients with respect to x and d were NaN there for every d.  Reference: 50-digit central
    differences of the catalogue formula in x and in each parameter (at x = 0 and elsewhere)."""
    f, params = _mp_function("elephant")
    values = {"a": 1.0, "d": d}
    module = torch_module(symact.activation("elephant"), trainable=trainable).double()
    with torch.no_grad():
        module.d.fill_(d)
    points = [0.0, -1e-3, 0.5, -2.0, 7.0]
    t = torch.tensor(points, dtype=torch.float64, requires_grad=True)
    module(t).sum().backward()
    args = [values[p.name] for p in params]
    for i, p in enumerate(points):
        with mpmath.workdps(50):
            up, down = f(mpmath.mpf(p) + mpmath.mpf("1e-20"), *args), f(mpmath.mpf(p) - mpmath.mpf("1e-20"), *args)
            slope = float((up - down) / mpmath.mpf("2e-20"))
        assert t.grad[i].item() == pytest.approx(slope, rel=1e-12, abs=1e-300), (p, t.grad[i].item(), slope)
    for k, param in enumerate(params):
        if param.name in trainable:
            exact = sum(float(_central_difference(f, p, args, k)) for p in points)
            got = getattr(module, param.name).grad.item()
            assert got == pytest.approx(exact, rel=1e-12), (param.name, got, exact)
    fn = torch_function(symact.activation("elephant"), trainable=trainable)
    inputs = [torch.tensor(values[name], dtype=torch.float64, requires_grad=True) for name in trainable]
    assert torch.autograd.gradcheck(fn.apply, (t, *inputs))
    if d == 4.0:  # a smooth second derivative at 0 (for d < 2 it is infinite there)
        assert torch.autograd.gradgradcheck(fn.apply, (t, *inputs))
