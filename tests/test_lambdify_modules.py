"""numeric.lambdify_modules: SymPy's reciprocal hyperbolic functions stay whole in mpmath and NumPy."""

import math

import mpmath
import numpy as np
import pytest
import sympy

from numeric.lambdify_modules import MPMATH_MODULES, numpy_modules
from symact.primitives import Erfcx, Expm1, Log1p, LogSigmoid, NormalCdf, Sigmoid, Softplus

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


def _mp_fermi_dirac(n, u):
    return -mpmath.polylog(n, -mpmath.exp(mpmath.mpf(u)))


@pytest.mark.parametrize("n", [2, 3, 5])
def test_numpy_fermi_dirac_and_polylog_of_minus_exp_within_ulps_of_mpmath(n):
    """lambdify of the logistic kernel's closed forms (polylog(n, -exp(u)), symact.smooth) raised NameError: name
    'polylog' is not defined in NumPy.  numpy_modules() names polylog (for z <= 0) and FermiDirac: within 4 ulps of
    mpmath's polylog at 40 digits in float64 (float32 arrays stay float32), the subnormal range in ulps of the
    smallest normal number; polylog(n, -exp(u)) is -inf only where exp(u) itself overflowed before the call."""
    from symact.primitives import FermiDirac

    u = np.unique(np.concatenate([-np.logspace(-20, 3, 60), [0.0], np.logspace(-20, 3, 60), np.linspace(-5, 5, 41),
                                  [-745.0, -708.5, 709.5, 1e4]]))
    fermi_dirac = sympy.lambdify(x, FermiDirac(n, x), modules=numpy_modules())
    polylog = sympy.lambdify(x, -sympy.polylog(n, -sympy.exp(x)), modules=numpy_modules())
    with np.errstate(over="ignore"):
        values = {"FermiDirac": fermi_dirac(u), "polylog": polylog(u)}
    tiny = float(np.finfo(np.float64).tiny)
    with mpmath.workdps(40):
        for i, p in enumerate(u.tolist()):
            exact = _mp_fermi_dirac(n, p)
            unit = tiny if exact < tiny else float(np.spacing(float(exact)))
            assert abs(values["FermiDirac"][i] - exact) <= 4 * unit, (n, p, values["FermiDirac"][i], exact)
            if p < 709.78:  # exp(p) is finite
                assert abs(values["polylog"][i] - exact) <= 6 * unit, (n, p)  # + the rounding of exp(p) it starts from
            else:
                assert values["polylog"][i] == np.inf
    assert fermi_dirac(np.float32([0.5, -3.0])).dtype == np.float32
    assert np.isnan(fermi_dirac(np.array([np.nan]))).all() and fermi_dirac(np.array([-np.inf, np.inf])).tolist() == [
        0.0, np.inf]
    exact = sympy.lambdify(x, FermiDirac(n, x), modules=MPMATH_MODULES)
    with mpmath.workdps(40):
        assert abs(exact(mpmath.mpf("0.3")) - _mp_fermi_dirac(n, "0.3")) < mpmath.mpf(10) ** -38


def test_numpy_polylog_refuses_what_it_does_not_evaluate():
    """polylog(n, z) for z > 0 (complex beyond 1) and orders below 2 are refused by name, not returned as NaN."""
    from symact.errors import DomainError

    positive = sympy.lambdify(x, sympy.polylog(2, x), modules=numpy_modules())
    with pytest.raises(DomainError, match="z <= 0"):
        positive(np.array([-1.0, 0.5]))
    assert positive(np.array([-1.0])).tolist() == pytest.approx([-np.pi**2 / 12], rel=1e-15)
    fractional = sympy.lambdify(x, sympy.polylog(sympy.Rational(5, 2), -sympy.exp(x)), modules=numpy_modules())
    with pytest.raises(DomainError, match="whole order n >= 0"):
        fractional(np.array([0.0]))


def test_numpy_polylog_of_order_one_is_minus_log1p():
    """SymPy leaves polylog(1, z) = -log(1 - z) unevaluated (the x-derivative of polylog(2, -exp(x)) is
    polylog(1, -exp(x))): NumPy takes it as -log1p(-z), within 2 ulps of mpmath's log1p(exp(x)) at 40 digits."""
    slope = sympy.lambdify(x, -sympy.polylog(1, -sympy.exp(x)), modules=numpy_modules())
    points = np.array([-700.0, -30.0, -1e-9, 0.0, 0.5, 20.0, 700.0])
    got = slope(points)
    with mpmath.workdps(40):
        for p, value in zip(points.tolist(), got.tolist()):
            exact = mpmath.log1p(mpmath.exp(mpmath.mpf(p)))
            assert abs(value - exact) <= 2 * float(np.spacing(float(exact))), (p, value, exact)


SAFE_PRIMITIVES = [  # (primitive, its meaning in mpmath)
    (Softplus, lambda u: mpmath.log1p(mpmath.exp(u))),
    (Sigmoid, lambda u: 1 / (1 + mpmath.exp(-u))),
    (LogSigmoid, lambda u: -mpmath.log1p(mpmath.exp(-u))),
    (Log1p, mpmath.log1p),
    (Expm1, mpmath.expm1),
    (NormalCdf, mpmath.ncdf),
    (Erfcx, lambda u: mpmath.exp(u**2) * mpmath.erfc(u)),
]


@pytest.mark.parametrize("primitive, meaning", SAFE_PRIMITIVES, ids=[p.__name__ for p, _ in SAFE_PRIMITIVES])
def test_numpy_safe_primitives_within_ulps_of_mpmath(primitive, meaning):
    """The float64 kernel engines evaluate symact.primitives' safe forms (Softplus(x - 30) for log(1 + exp(x - 30)),
    which rounds 1 + exp(-30)); numpy_modules() had no name for the primitives but FermiDirac (NameError).  Each is
    within 4 ulps of its meaning evaluated by mpmath at 60 digits, from the underflow to the overflow of float64
    (the subnormal range in ulps of the smallest normal number); NormalCdf's far left tail included, where
    erfc(-u/sqrt(2))/2 alone is 1100 ulps off at u = -35 from the rounding of u/sqrt(2)."""
    u = np.unique(np.concatenate([np.linspace(-745, 709, 301), np.linspace(-40, 40, 161), np.logspace(-300, 2, 80),
                                  -np.logspace(-300, 2, 80), [0.0, -1.0, 10.0]]))
    if primitive is Log1p:
        u = u[u > -1]
    evaluate = sympy.lambdify(x, primitive(x), modules=numpy_modules())
    with np.errstate(over="ignore", under="ignore"):
        got = evaluate(u)
    tiny = float(np.finfo(np.float64).tiny)
    with mpmath.workdps(60):
        for p, value in zip(u.tolist(), got.tolist()):
            exact = meaning(mpmath.mpf(p))
            if abs(exact) > np.finfo(np.float64).max:
                assert value == np.sign(float(exact)) * np.inf, (p, value)
                continue
            unit = tiny if abs(exact) < tiny else float(np.spacing(abs(float(exact))))
            assert abs(value - exact) <= 4 * unit, (primitive, p, value, exact)


def test_numpy_normal_cdf_and_erfcx_use_the_callers_erfc():
    """kernel_maps passes torch's erfc (fast) and transform_conditions math.erfc: NormalCdf and Erfcx take the erfc
    in the modules' functions, as erf/erfc themselves do."""
    calls = []

    def erfc(u):
        calls.append(np.shape(u))
        return np.vectorize(math.erfc, otypes=[float])(u)

    modules = numpy_modules({"erfc": erfc})
    assert sympy.lambdify(x, NormalCdf(x), modules=modules)(np.array([0.0]))[0] == 0.5
    assert calls
    calls.clear()
    assert sympy.lambdify(x, Erfcx(x), modules=modules)(np.array([0.0]))[0] == 1.0
    assert calls
