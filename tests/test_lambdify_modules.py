"""numeric.lambdify_modules: SymPy's reciprocal hyperbolic functions stay whole in mpmath and NumPy."""

import mpmath
import numpy as np
import pytest
import sympy

from numeric.lambdify_modules import MPMATH_MODULES, numpy_modules

x = sympy.Symbol("x", real=True)

CASES = [  # (formula, the same written with mpmath's own functions), all real for every x < 0 shown
    (sympy.sech(x**3), lambda t: mpmath.sech(t**3)),
    (sympy.csch(x**3) * x**4, lambda t: mpmath.csch(t**3) * t**4),
    (sympy.coth(x**3) + x, lambda t: mpmath.coth(t**3) + t),
    (sympy.asech(1 / (1 + x**2)), lambda t: mpmath.asech(1 / (1 + t**2))),
    (sympy.acsch(x**3), lambda t: mpmath.acsch(t**3)),
    (sympy.acoth(x**3 - 2), lambda t: mpmath.acoth(t**3 - 2)),
]


@pytest.mark.parametrize("formula, reference", CASES, ids=[str(c[0]) for c in CASES])
def test_reciprocal_functions_of_powers_are_real_and_accurate_for_negative_inputs(formula, reference):
    """SymPy's printers rewrite sech(x**3) as 1/(exp(exp(3*log(x)))/2 + ...): complex in mpmath and nan in NumPy
    for every x < 0 (and coth(x) as a quotient of exponentials, which cancels near 0).  Reference: the formula
    with mpmath's sech, csch, coth, asech, acsch, acoth called directly, at 40 digits."""
    exact = sympy.lambdify(x, formula, modules=MPMATH_MODULES)
    fast = sympy.lambdify(x, formula, modules=numpy_modules())
    points = [-2.5, -1.3, -0.7, 0.4, 1.9]
    with mpmath.workdps(40):
        for p in points:
            want = reference(mpmath.mpf(p))
            got = exact(mpmath.mpf(p))
            assert isinstance(got, mpmath.mpf) and abs(got - want) <= mpmath.mpf(10) ** -38 * max(1, abs(want)), p
    got = fast(np.array(points))
    want = np.array([float(reference(mpmath.mpf(p))) for p in points])
    assert np.allclose(got, want, rtol=1e-13, atol=0)


def test_numpy_reciprocals_are_zero_where_the_exact_value_underflows():
    """1/cosh(u) is 0.0 where cosh overflows (the exact value is below the smallest subnormal), never nan; the
    NumPy modules take a caller's functions ahead of the reciprocals and NumPy's."""
    sech = sympy.lambdify(x, sympy.sech(x**2), modules=numpy_modules())
    with np.errstate(over="ignore"):
        assert sech(np.array([-1e3, 1e3, 1e200])).tolist() == [0.0, 0.0, 0.0]
    custom = sympy.lambdify(x, sympy.sech(x), modules=numpy_modules({"sech": lambda u: u * 0 + 7.0}))
    assert custom(np.array([1.0])).tolist() == [7.0]
