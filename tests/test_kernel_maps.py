"""analysis.kernel_maps: closed forms vs quadrature, engine agreement, properties, errors.

References are independent of the code path under test: closed forms (looked up, not derived by
the code under test) are checked against mpmath quadrature; the mpmath engine against itself at a
higher precision; the float64 engine against the mpmath engine; C'(1) three ways; known values.
"""

import functools
import math
import time

import mpmath
import numpy as np
import pytest
import sympy

from _reference import power_kernel
import symact
from analysis.kernel import FORMULA_MAX_NODES, find_closed_form, kernel_maps
from numeric.gauss import gaussian_expectation
from symact.errors import DivergentIntegralError, DomainError, FormulaError, NonRealExpressionError

x = sympy.Symbol("x", real=True)

# SELU constants (Klambauer et al. 2017) to 32 digits
_SELU_L = sympy.Rational("1.0507009873554804934193349852946")
_SELU_A = sympy.Rational("1.6732632423543772848170429916717")

FALLBACK = {
    "relu": sympy.Max(0, x),
    "leaky_relu": sympy.Piecewise((sympy.Rational(1, 5) * x, x < 0), (x, True)),
    "erf": sympy.erf(x),
    "sin": sympy.sin(x),
    "abs": sympy.Abs(x),
    "exponential": sympy.exp(x),
    "heaviside": sympy.Heaviside(x),
    "gaussian": sympy.exp(-x**2),
    "tanh": sympy.tanh(x),
    "sigmoid": 1 / (1 + sympy.exp(-x)),
    "softplus": sympy.log(1 + sympy.exp(x)),
    "gelu": x * (1 + sympy.erf(x / sympy.sqrt(2))) / 2,
    "silu": x / (1 + sympy.exp(-x)),
    "elu": sympy.Piecewise((sympy.exp(x) - 1, x < 0), (x, True)),
    "selu": _SELU_L * sympy.Piecewise((_SELU_A * (sympy.exp(x) - 1), x < 0), (x, True)),
    "squareplus": (x + sympy.sqrt(x**2 + 4)) / 2,
}


def act(name, **params):
    """The catalogue Activation when symact provides one, else the same formula as a SymPy expr."""
    import symact

    if hasattr(symact, "activation"):
        if name == "leaky_relu":
            params.setdefault("negative_slope", sympy.Rational(1, 5))
        return symact.activation(name, **params)
    return FALLBACK[name]


def diff(a, b):
    with mpmath.workdps(80):
        return abs(mpmath.mpf(a) - mpmath.mpf(b))


def rel(a, b, floor=0):
    """|a - b| / max(|b|, floor), or |a - b| when that is 0.  (The default floor was 1e-60: a comparison with a
    reference below it was absolute and passed vacuously, e.g. any value at all for C = 3.5e-151.)"""
    with mpmath.workdps(80):
        a, b = mpmath.mpf(a), mpmath.mpf(b)
        scale = max(abs(b), mpmath.mpf(floor))
        return abs(a - b) / scale if scale else abs(a - b)


CLOSED = ["relu", "leaky_relu", "erf", "sin", "abs", "exponential"]
SMOOTH = ["tanh", "sigmoid", "softplus", "gelu", "silu", "elu", "selu", "squareplus"]


def _rows(names: list, slow: tuple) -> list:
    """``names`` as parameter rows, those in ``slow`` marked slow: 2-4 s mpmath rows whose code the rest of
    the default run covers (branch coverage, checked per test), kept for ``pytest -m slow``."""
    return [pytest.param(n, marks=pytest.mark.slow) if n in slow else n for n in names]


@pytest.mark.parametrize("name", CLOSED + ["heaviside", "gaussian"])
def test_closed_form_is_found(name):
    m = kernel_maps(act(name), dps=20)
    assert m.engine == "closed" and m.closed_form is not None
    assert isinstance(m.closed_form.c_map, sympy.Expr)


def test_no_closed_form_for_tanh_and_engine_choice():
    m = kernel_maps(act("tanh"))
    assert m.closed_form is None and m.engine == "mpmath"
    with pytest.raises(DomainError, match="no closed form"):
        kernel_maps(act("tanh"), engine="closed")


def test_known_closed_form_values():
    relu = kernel_maps(act("relu"), dps=30)
    assert relu.closed_form.q_map == q_sym() / 2
    # DKS-normalised relu C map = Cho & Saul's arc-cosine J_1(theta)/pi; C(0) = 1/pi
    with mpmath.workdps(40):
        one_over_pi = 1 / mpmath.pi
    assert rel(relu.c_map(0), one_over_pi) < 1e-29
    # nngp (unnormalised) = C * sqrt(Q Q)
    k = relu.closed_form.kernel.subs({sympy.Symbol("q1", positive=True): 1, sympy.Symbol("q2", positive=True): 4,
                                      sympy.Symbol("c", real=True): sympy.Rational(1, 2)})
    with mpmath.workdps(40):
        nngp = relu.c_map(0.5, 1, 4) * mpmath.sqrt(relu.q_map(1) * relu.q_map(4))
    assert rel(sympy.N(k, 40), nngp) < 1e-29
    # x^3 - x: Q(q) = E[(x^3 - x)^2], x ~ N(0, q) = 15 q^3 - 6 q^2 + q  (Gaussian moments)
    poly = kernel_maps(x**3 - x, dps=30)
    assert poly.closed_form.name == "polynomial"
    assert sympy.expand(poly.closed_form.q_map - (15 * q_sym()**3 - 6 * q_sym()**2 + q_sym())) == 0


def q_sym():
    return sympy.Symbol("q", positive=True)


@pytest.mark.parametrize("name", CLOSED)
def test_closed_q_map_agrees_with_quadrature_at_40_digits(name):
    closed = kernel_maps(act(name), dps=40, engine="closed")
    quad = kernel_maps(act(name), dps=40, engine="mpmath")
    for qv in (sympy.Rational(1, 4), 1, 4):
        assert rel(closed.q_map(qv), quad.q_map(qv)) < 1e-38
        assert rel(closed.q_map_derivative(qv), quad.q_map_derivative(qv)) < 1e-37


@pytest.mark.parametrize("name", _rows(CLOSED, slow=("erf", "exponential")))
def test_closed_c_map_agrees_with_quadrature_at_40_digits_mehler_points(name):
    # |c| <= 0.8: the mpmath engine sums Mehler's series of quadrature Hermite coefficients
    closed = kernel_maps(act(name), dps=40, engine="closed")
    quad = kernel_maps(act(name), dps=40, engine="mpmath")
    for cv in (sympy.Rational(7, 10), sympy.Rational(-1, 2), 0, sympy.Rational(3, 10)):
        assert diff(closed.c_map(cv), quad.c_map(cv)) < mpmath.mpf(10) ** -38


@pytest.mark.slow
def test_c_map_2d_quadrature_against_closed_form_low_precision():
    # the fast 2-D check of the integrator itself is tests/test_gauss.py (arc-cosine kernel)
    closed = kernel_maps(act("abs"), dps=12, engine="closed")
    quad = kernel_maps(act("abs"), dps=12, engine="mpmath")
    quad.mehler_max_abs_c = 0
    assert abs(closed.c_map(0.7) - quad.c_map(0.7)) < 1e-11


@pytest.mark.slow
@pytest.mark.parametrize("name", CLOSED)
def test_closed_c_map_agrees_with_2d_quadrature_at_40_digits(name):
    closed = kernel_maps(act(name), dps=40, engine="closed")
    quad = kernel_maps(act(name), dps=40, engine="mpmath")
    quad.mehler_max_abs_c = 0          # 2-D quadrature at every point
    for cv in (sympy.Rational(-9, 10), sympy.Rational(7, 10), sympy.Rational(99, 100)):
        assert diff(closed.c_map(cv), quad.c_map(cv)) < mpmath.mpf(10) ** -38


@pytest.mark.parametrize("name", CLOSED + ["heaviside", "gaussian"])
def test_float64_engine_against_closed_forms_including_near_1(name):
    closed = kernel_maps(act(name), dps=20, engine="closed")
    fast = kernel_maps(act(name), engine="float64")
    for cv in (-0.9, -0.5, 0.0, 0.3, 0.7, 0.99, 0.999999):
        for q1, q2 in ((1.0, 1.0), (0.25, 4.0)):
            assert abs(fast.c_map(cv, q1, q2) - float(closed.c_map(cv, q1, q2))) < 1e-12
    for qv in (0.25, 1.0, 4.0):
        assert abs(fast.q_map(qv) / float(closed.q_map(qv)) - 1) < 1e-12


@pytest.mark.parametrize("name", _rows(SMOOTH, slow=("softplus", "silu", "selu", "squareplus")))
def test_mpmath_self_consistent_and_float64_agrees(name):
    m30 = kernel_maps(act(name), dps=30, engine="mpmath")
    m45 = kernel_maps(act(name), dps=45, engine="mpmath")
    f64 = kernel_maps(act(name), engine="float64")
    values = {
        "Q(1)": (lambda m: m.q_map(1)),
        "Q'(1)": (lambda m: m.q_map_derivative(1)),
        "C(0.3)": (lambda m: m.c_map(0.3)),
        "C(0)": (lambda m: m.c_map_at_0),
        "C'(1)": (lambda m: m.c_map_slope_at_1),
    }
    for label, get in values.items():
        hi = get(m45)
        # two precisions agree to 30 digits (absolute floor for values that vanish, e.g. C(0) of odd phi)
        assert diff(get(m30), hi) <= mpmath.mpf(10) ** -29 * max(abs(hi), mpmath.mpf(1) / 10), label
        assert abs(get(f64) - float(hi)) <= 1e-12 * max(abs(float(hi)), 0.1), label


def test_float64_engine_takes_the_polylog_of_logistic_smoothing():
    """relu_squared * logistic(1) is -2*polylog(2, -exp(x)), which NumPy has no name for: the float64 engine raised
    NameError: name 'polylog' is not defined.  Reference: the mpmath engine (mpmath's polylog) at 30 digits."""
    from symact.smooth import convolve

    smoothed = convolve("relu_squared", "logistic", 1)
    m30, f64 = kernel_maps(smoothed, dps=30, engine="mpmath"), kernel_maps(smoothed, engine="float64")
    for label, get in {"Q(1)": lambda m: m.q_map(1), "Q(4)": lambda m: m.q_map(4),
                       "C(0.3)": lambda m: m.c_map(0.3), "C'(1)": lambda m: m.c_map_slope_at_1}.items():
        hi = get(m30)
        assert abs(get(f64) - float(hi)) <= 1e-12 * max(abs(float(hi)), 0.1), (label, get(f64), hi)


ROUNDING_FORMULAS = {  # formula -> the quantities (at q values where their integrands live) the float64 engine rounded
    # softplus 30 to the right: log(1 + exp(u)) at u = -30 adds 9.4e-14 to 1, 1e-3 off; refused as "a feature
    # the panels do not resolve" by every float64 map
    "log(1 + exp(x - 30))": {"Q(1)": lambda m: m.q_map(1), "Q'(0.5)": lambda m: m.q_map_derivative(0.5),
                             "C(0.3)": lambda m: m.c_map(0.3), "C'(1)": lambda m: m.c_map_slope_at_1,
                             "C''(1)": lambda m: m.c_map_curvature_at_1, "C'(0.5)": lambda m: m.c_map_derivative(0.5)},
    "x*log(1 + exp(x - 30))": {"Q(0.01)": lambda m: m.q_map(0.01), "C(0.3; 0.01)": lambda m: m.c_map(0.3, 0.01, 0.01)},
    # tanh's slope written 1 - tanh(u)**2 is a difference of numbers within 1e-14 of 1 at u = -16
    "tanh(x - 20)": {"C'(1)": lambda m: m.c_map_slope_at_1, "C''(1)": lambda m: m.c_map_curvature_at_1},
}


@pytest.mark.parametrize("formula", sorted(ROUNDING_FORMULAS))
def test_float64_engine_evaluates_formulas_that_round_in_float64_to_1e_12(formula):
    """The float64 engine lambdified phi^(n) as written, and a formula that rounds without overflowing lost digits
    silently or was refused as a feature the rule could not resolve: log(1 + exp(x - 30)) at every Q and C.  It now
    evaluates safe_form(phi) and safe_derivative's phi^(n) (Softplus(x - 30), Sigmoid, sech(u)**2) and agrees with
    the README's 1e-12.  Reference: the mpmath engine at 30 digits (the formula as written, with guard digits)."""
    f64, m30 = kernel_maps(formula, engine="float64"), kernel_maps(formula, dps=30, engine="mpmath")
    for label, get in ROUNDING_FORMULAS[formula].items():
        hi = get(m30)
        assert abs(get(f64) - float(hi)) <= 1e-12 * abs(float(hi)), (label, get(f64), hi)


@pytest.mark.parametrize("name", SMOOTH + ["relu", "abs", "heaviside"])
def test_c_map_properties(name):
    f64 = kernel_maps(act(name), engine="float64")
    cs = np.linspace(0, 1, 101)
    vals = np.array([f64.c_map(cv) for cv in cs[:-1]] + [f64.c_map(1 - 1e-12)])
    assert abs(vals[-1] - 1) < 1e-6, "C(1) = 1 (approached through the 2-D rule, not the c = 1 shortcut)"
    assert np.all(np.diff(vals) > 0), "C is increasing on [0, 1]"
    assert np.all(np.diff(vals, 2) > -1e-12), "C is convex on [0, 1]"
    np.testing.assert_allclose(f64.c_map_curve(cs[:-1]), vals[:-1], rtol=0, atol=1e-15)
    # convexity and monotonicity near 1: 0 <= 1 - C(1 - e) <= e C'(1)
    e = 1e-4
    gap = 1 - f64.c_map(1 - e)
    slope = f64.c_map_slope_at_1
    assert 0 < gap and (math.isinf(slope) or gap <= e * slope * (1 + 1e-9))


@pytest.mark.parametrize("name", ["gelu", "softplus", "silu", "sigmoid", "erf", "sin"])
def test_slope_at_1_three_ways(name):
    m = kernel_maps(act(name), dps=30, engine="mpmath")
    by_price = m.c_map_derivative(1)            # Price's theorem through the 2-D integrator at c = 1
    by_expectation = m.c_map_slope_at_1          # E[phi'^2] / Q(1)
    a = m.hermite_coefficients(160)              # Mehler: sum k a_k^2 / sum a_k^2
    with mpmath.workdps(40):
        by_hermite = mpmath.fsum(k * ak**2 for k, ak in enumerate(a)) / mpmath.fsum(ak**2 for ak in a)
        # and Gaussian integration by parts: E[phi'^2] = E[z phi phi'] - E[phi phi'']
        d0, d1, d2 = (sympy.lambdify(x, sympy.diff(sympy.sympify(getattr(act(name), "concrete_expr", act(name))), x, k),
                                     "mpmath") for k in range(3))
        stein = gaussian_expectation(lambda t: t * d0(t) * d1(t) - d0(t) * d2(t), dps=35).value / m.q_map(1)
    for other in (by_expectation, by_hermite, stein):
        assert rel(by_price, other) < 1e-25


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "abs", "selu"])
def test_curvature_infinite_when_derivative_jumps(name):
    for engine in ("mpmath", "float64"):
        m = kernel_maps(act(name), dps=20, engine=engine)
        assert m.curvature_is_infinite
        assert math.isinf(m.c_map_curvature_at_1)


def test_curvature_finite_and_exact():
    # erf: closed form vs q^2 E[phi''^2]/Q; elu (alpha = 1) has continuous phi' so C''(1) is finite
    closed = kernel_maps(act("erf"), dps=30, engine="closed")
    quad = kernel_maps(act("erf"), dps=30, engine="mpmath")
    assert not quad.curvature_is_infinite
    assert rel(closed.c_map_curvature_at_1, quad.c_map_curvature_at_1) < 1e-28
    elu = kernel_maps(act("elu"), dps=20, engine="mpmath")
    assert not elu.curvature_is_infinite and mpmath.isfinite(elu.c_map_curvature_at_1)


def test_second_c_derivative_with_delta_terms_for_relu():
    # relu: C''(c) = 1 / (pi sqrt(1 - c^2)) at q1 = q2 (the delta term of phi'' = delta(x))
    cv = sympy.Rational(1, 2)
    with mpmath.workdps(40):
        exact = 1 / (mpmath.pi * mpmath.sqrt(1 - mpmath.mpf(1) / 4))
    quad = kernel_maps(act("relu"), dps=20, engine="mpmath")
    assert rel(quad.c_map_derivative(cv, 2), exact) < 1e-18      # Mehler series, differentiated
    quad.mehler_max_abs_c = 0                                       # Price: phi'' = delta(x), exactly
    assert rel(quad.c_map_derivative(cv, 2), exact) < 1e-18
    fast = kernel_maps(act("relu"), engine="float64")
    assert abs(fast.c_map_derivative(0.5, 2) / float(exact) - 1) < 1e-12
    # and C'(c; q1, q2) for leaky relu vs its closed form at unequal q
    closed = kernel_maps(act("leaky_relu"), dps=20, engine="closed")
    fast = kernel_maps(act("leaky_relu"), engine="float64")
    assert abs(fast.c_map_derivative(0.4, 1, 0.5, 2.0) - float(closed.c_map_derivative(0.4, 1, 0.5, 2.0))) < 1e-12


def test_q_map_derivative_against_integration_by_parts():
    # smooth phi: Q'(q) = E[phi'(x)^2 + phi(x) phi''(x)], x ~ N(0, q): a different integrand
    m = kernel_maps(act("tanh"), dps=30, engine="mpmath")
    expr = sympy.sympify(getattr(act("tanh"), "concrete_expr", act("tanh")))
    d0, d1, d2 = (sympy.lambdify(x, sympy.diff(expr, x, k), "mpmath") for k in range(3))
    with mpmath.workdps(50):
        sqrt2 = mpmath.sqrt(2)
    ref = gaussian_expectation(lambda t: d1(t) ** 2 + d0(t) * d2(t), dps=35, std=sqrt2).value
    assert rel(m.q_map_derivative(2), ref) < 1e-29
    # second derivative: closed form of erf vs the He_4 formula
    closed = kernel_maps(act("erf"), dps=30, engine="closed")
    quad = kernel_maps(act("erf"), dps=30, engine="mpmath")
    assert rel(closed.q_map_derivative(1, 2), quad.q_map_derivative(1, 2)) < 1e-27


def test_hermite_coefficients_reproduce_q_and_c():
    m = kernel_maps(act("erf"), dps=30, engine="closed")
    a = m.hermite_coefficients(120)
    with mpmath.workdps(40):
        assert rel(mpmath.fsum(ak**2 for ak in a), m.q_map(1)) < 1e-15
        c07 = mpmath.fsum(ak**2 * mpmath.mpf("0.7") ** k for k, ak in enumerate(a)) / m.q_map(1)
    assert rel(c07, m.c_map(sympy.Rational(7, 10))) < 1e-25


def test_composed_maps_match_symbolic_composition():
    # erf o erf: compose the closed forms symbolically, differentiate with SymPy
    m = kernel_maps(act("erf"), dps=30)
    comp = m.composed(m)
    cf = m.closed_form
    q_, q1_, q2_, c_ = (sympy.Symbol("q", positive=True), sympy.Symbol("q1", positive=True),
                        sympy.Symbol("q2", positive=True), sympy.Symbol("c", real=True))
    Q = sympy.Lambda(q_, cf.q_map)
    inner = cf.c_map
    outer = cf.c_map.subs({c_: inner, q1_: Q(q1_), q2_: Q(q2_)}, simultaneous=True)
    at = {c_: sympy.Rational(3, 10), q1_: 1, q2_: 2}
    assert rel(comp.c_map(sympy.Rational(3, 10), 1, 2), sympy.N(outer.subs(at), 40)) < 1e-28
    assert rel(comp.c_map_derivative(sympy.Rational(3, 10), 1, 1, 2), sympy.N(sympy.diff(outer, c_).subs(at), 40)) < 1e-28
    assert rel(comp.c_map_derivative(sympy.Rational(3, 10), 2, 1, 2),
               sympy.N(sympy.diff(outer, c_, 2).subs(at), 40)) < 1e-27
    assert rel(comp.q_map(3), sympy.N(Q(Q(3)), 40)) < 1e-29
    assert rel(comp.q_map_derivative(3), sympy.N(sympy.diff(Q(Q(q_)), q_).subs(q_, 3), 40)) < 1e-29


def test_errors_are_clear():
    relu = kernel_maps(act("relu"), dps=20)
    with pytest.raises(DomainError, match=r"\[-1, 1\]"):
        relu.c_map(1.5)
    with pytest.raises(DomainError, match="> 0"):
        relu.q_map(0)
    with pytest.raises(DomainError, match="> 0"):
        relu.c_map(0.5, q1=-1)
    # q = inf used to reach the integrand: "the integrand is undefined (nan) at x = +inf"
    for bad in (float("inf"), mpmath.inf, sympy.oo, float("nan")):
        with pytest.raises(DomainError, match="finite and > 0"):
            relu.q_map(bad)
    with pytest.raises(DomainError, match="not a number"):
        relu.q_map("1")
    with pytest.raises(DivergentIntegralError):
        kernel_maps(sympy.exp(x**2), engine="mpmath").q_map(1)
    # exp(x^2/3) has a finite Gaussian mean but is not square-integrable: Q diverges
    with pytest.raises(DivergentIntegralError, match="not square-integrable"):
        kernel_maps(sympy.exp(x**2 / 3), engine="mpmath").q_map(1)
    with pytest.raises(DivergentIntegralError):
        kernel_maps(sympy.exp(x**2 / 3), engine="float64").q_map(4)
    with pytest.raises(NonRealExpressionError):
        kernel_maps(sympy.sqrt(x), engine="mpmath").q_map(1)
    with pytest.raises(FormulaError):
        kernel_maps(x * sympy.Symbol("a"))
    with pytest.raises(DomainError, match="vanishes"):     # Q = 0: the C map is 0/0
        kernel_maps(sympy.Heaviside(x) * sympy.Heaviside(-x), engine="float64").q_map(1)
    with pytest.raises(DomainError, match="underflows float64"):     # Q = Phi(-50) = 1e-545, not 0
        kernel_maps(sympy.Heaviside(x - 50), engine="float64").q_map(1)
    with pytest.raises(DomainError):
        kernel_maps(act("tanh"), engine="quantum")


def test_closed_form_detection_is_not_fooled():
    assert find_closed_form(sympy.tanh(x), x) is None
    assert find_closed_form(x * sympy.Heaviside(x) + sympy.sin(x), x) is None
    # prelu-like slope and a scaled step are recognised
    assert find_closed_form(sympy.Max(x, -x / 4), x).name.startswith("homogeneous")
    assert find_closed_form(3 * sympy.sign(x), x).name.startswith("step")


@pytest.mark.parametrize("name", _rows(["tanh", "gelu", "elu"], slow=("gelu",)))
def test_c_map_derivatives_price_float64_vs_mehler_mpmath(name):
    # float64: Price's theorem, 2-D quadrature of phi'(u) phi'(v) (and phi''); mpmath: derivative of
    # Mehler's series of quadrature Hermite coefficients -- two different routes to C'(c), C''(c)
    fast = kernel_maps(act(name), engine="float64")
    slow = kernel_maps(act(name), dps=30, engine="mpmath")
    for cv in (-0.6, 0.5):
        for n in (1, 2):
            ref = float(slow.c_map_derivative(cv, n))
            assert abs(fast.c_map_derivative(cv, n) - ref) < 1e-12 * max(1.0, abs(ref)), (cv, n)


@pytest.mark.parametrize("name", ["cos", "gaussian", "heaviside", "cubic"])
def test_other_closed_forms_agree_with_quadrature(name):
    spec = x**3 - x if name == "cubic" else act(name)
    closed = kernel_maps(spec, dps=30, engine="closed")
    quad = kernel_maps(spec, dps=30, engine="mpmath")
    for qv in (sympy.Rational(1, 4), 1, 4):
        assert rel(closed.q_map(qv), quad.q_map(qv)) < 1e-28
    for cv in (sympy.Rational(-1, 2), sympy.Rational(3, 10)):
        assert diff(closed.c_map(cv), quad.c_map(cv)) < mpmath.mpf(10) ** -28


LARGE_Q = [1e-4, 1, 1e4, 1e6, 1e8]


@pytest.mark.parametrize("name", _rows(["tanh", "gelu", "sigmoid", "relu"], slow=("gelu",)))
def test_float64_agrees_with_mpmath_up_to_q_1e8(name):
    """phi(sqrt(q) z) varies on a scale 1/sqrt(q) in z: a unit-panel float64 rule missed it (tanh's
    C'(1) was 100% off at q = 1e8) and sigmoid' = exp(-x)/(1+exp(-x))^2 overflowed to nan.
    (The reference at 20 digits is exact to ~1e-20, 8 orders inside the 1e-12 tolerance; 30 took 1.5x as long.)"""
    f64 = kernel_maps(act(name), engine="float64")
    ref = kernel_maps(act(name), dps=20, engine="mpmath")
    for q in LARGE_Q:
        qv = ref.q_map(q)
        assert rel(f64.q_map(q), qv) < 1e-12, q
        assert rel(f64.slope_at_1(q), ref.slope_at_1(q)) < 1e-12, q
        assert rel(f64.q_map_derivative(q), ref.q_map_derivative(q)) < 1e-12, q
        # C(0) is 0 for odd phi: compare on the scale of the C map (|C| <= 1)
        assert diff(f64.value_at_0(q), ref.value_at_0(q)) < 1e-12, q


@pytest.mark.parametrize("q", [1e4, 1e8])
def test_c_map_at_large_q_against_erf_closed_form(q):
    """erf's kernel is Williams' arcsine formula: an independent reference for the 2-D float64
    rule and the mpmath engine's Mehler series (both ~1e-3 off at q = 1e4 with unit panels)."""
    f64 = kernel_maps(sympy.erf(x), engine="float64")
    mp_ = kernel_maps(sympy.erf(x), dps=20, engine="mpmath")
    exact = kernel_maps(sympy.erf(x), dps=30, engine="closed")
    for c in (-1, -0.6, 0.3, 0.99):
        assert rel(f64.c_map(c, q, q), exact.c_map(c, q, q)) < 1e-12, c
        assert rel(f64.c_map_derivative(c, 1, q, q), exact.c_map_derivative(c, 1, q, q)) < 1e-12, c
    for c in (-0.6, 0.3):
        assert rel(mp_.c_map(c, q, q), exact.c_map(c, q, q)) < 1e-18, c
        assert rel(mp_.c_map_derivative(c, 1, q, q), exact.c_map_derivative(c, 1, q, q)) < 1e-18, c


def test_tanh_c_map_at_large_q_float64_vs_mpmath():
    f64 = kernel_maps(act("tanh"), engine="float64")
    ref = kernel_maps(act("tanh"), dps=30, engine="mpmath")
    for q in (1e4, 1e8):
        for c in (-0.6, 0.3):
            assert rel(f64.c_map(c, q, q), ref.c_map(c, q, q)) < 1e-12, (q, c)


@pytest.mark.parametrize("engine", ["float64", "mpmath"])
@pytest.mark.parametrize("name, at_minus_one", [("tanh", -1), ("sin", -1), ("abs", 1), ("cos", 1)])
def test_c_map_at_minus_one_is_exact_for_an_odd_or_even_activation(name, at_minus_one, engine):
    """v = -u at c = -1, so E[phi(u) phi(-u)] = -Q for an odd phi and +Q for an even one: C(-1) = -1 or 1.
    tanh's float64 C(-1) came out -0.9999999999999999 with NumPy 2.2 (Python 3.10), where the test
    below had passed by the rounding of NumPy 2.4."""
    m = kernel_maps(act(name), dps=20, engine=engine)
    for q in (0.5, 1, 3):
        assert m.c_map(-1, q, q) == at_minus_one and m.c_map(1, q, q) == 1
        assert list(m.c_map_curve([-1.0, 1.0], q, q)) == [at_minus_one, 1]


@pytest.mark.parametrize("name", ["tanh", "erf", "gelu", "sin", "relu"])
def test_c_map_values_stay_in_unit_interval(name):
    """C is a cosine: rounding put tanh's float64 C(-1) at -1.0000000000000002, which broke
    callers that feed C values back in (c = C(c) raised DomainError)."""
    for engine in ("float64", "mpmath"):
        m = kernel_maps(act(name), dps=20, engine=engine)
        for q in (0.5, 1, 3):
            for c in (-1, 1):
                assert -1 <= m.c_map(c, q, q) <= 1, (engine, q, c)
    m = kernel_maps(act("tanh"), engine="float64")
    assert m.c_map(-1) == -1            # tanh is odd: C(-1) = -1 exactly
    assert np.all(np.abs(m.c_map_curve([-1.0, 0.5, 1.0])) <= 1)
    c = -1.0
    for _ in range(5):                  # iterating the map must not leave its domain
        c = m.c_map(c)
        c = m.c_map(-c)
    # an excess beyond rounding is not folded back silently
    with pytest.raises(DomainError, match="outside"):
        m._unit(1 + 1e-9)
    assert m._unit(-1 - 2.2e-16) == -1


def test_float_coefficient_transform_skips_hopeless_closed_form_search():
    """DKS-shaped softplus (15-digit Floats become huge rationals): the piecewise closed-form
    search ran sympy.simplify on them for minutes.  The maps must come back, with correct numbers
    (shaping made Q(1) = 1; the mpmath engine is the reference)."""
    phi = (2.04651721641367 * sympy.log(1.52044097571898 * sympy.exp(0.810279544733469 * x) + 1)
           - 2.04277946816664)
    f64 = kernel_maps(phi, engine="float64")
    assert f64.closed_form is None
    ref = kernel_maps(phi, dps=30, engine="mpmath")
    assert rel(f64.q_map(1), ref.q_map(1)) < 1e-12
    assert abs(ref.q_map(1) - 1) < 1e-12
    assert rel(f64.slope_at_1(1), ref.slope_at_1(1)) < 1e-12


@pytest.mark.parametrize("engine", ["float64", "mpmath"])
def test_non_integrable_pole_raises(engine):
    """E[1/(sqrt(q) z)^2] diverges: the maps returned 6638 (float64) and 2e39 (mpmath) silently."""
    with pytest.raises(DivergentIntegralError, match="non-integrable singularity at x = 0"):
        kernel_maps(1 / x, engine=engine).q_map(1)
    with pytest.raises(DivergentIntegralError, match="at x = 1"):
        kernel_maps(x / (x - 1), engine=engine).q_map(1)
    # a pole off the real line is harmless: x/(x^2+1) has a finite Q map
    assert kernel_maps(x / (x**2 + 1), engine=engine).q_map(1) > 0


@pytest.mark.parametrize("engine", ["float64", "mpmath"])
def test_periodic_poles_raise_and_integrable_singularities_do_not(engine):
    """tan and sec have poles at pi/2 + n*pi and no negative power in their formula: the
    maps quoted a quadrature failure ('singularity/kink that is not among the break-points')
    instead of the pole."""
    for formula in ("tan(x)", "sec(x)", "1/cos(x) + x"):
        with pytest.raises(DivergentIntegralError, match="non-integrable singularity at x = -1.57079"):
            kernel_maps(symact.activation(formula), engine=engine).q_map(1)


@pytest.mark.parametrize("engine, tolerance", [("float64", 1e-13), ("mpmath", 1e-25)])
def test_integrable_singularity_is_split_and_graded(engine, tolerance):
    """phi = log|x|: E[log|z|] = -(euler + log 2)/2 and, from log|z|'s Hermite coefficients
    E[log|z| He_2k(z)] = (-1)**(k+1) 2**(k-1) (k-1)! and sum (2c)**2k/(k**2 binomial(2k, k)) =
    2 asin(c)**2: E[log|u| log|v|] = E[log|z|]**2 + asin(c)**2/2, so Q(1) = E[log|z|]**2 + pi**2/8.
    The float64 rule was 1.5e-3 off Q(1) and the mpmath Hermite path 5e-5 off C(1/2), silently."""
    maps = kernel_maps(symact.activation("log(Abs(x))"), dps=30, engine=engine)
    with mpmath.workdps(40):
        mean_log = -(mpmath.euler + mpmath.log(2)) / 2
        q1 = mean_log**2 + mpmath.pi**2 / 8
        assert rel(maps.q_map(1), q1) < tolerance
        assert rel(maps.q_map_derivative(1), mean_log) < tolerance  # dQ/dq = E[log|z|]/q at q = 1
        if engine == "float64":  # its 2-D rule has fixed panels: it refuses instead of missing
            with pytest.raises(DivergentIntegralError, match="singularity at x = 0.*engine='mpmath'"):
                maps.c_map(0.5)
            return
        for c in (0.5, -0.3):
            assert rel(maps.c_map(c), (mean_log**2 + mpmath.asin(mpmath.mpf(c)) ** 2 / 2) / q1) < tolerance


@pytest.mark.slow
def test_mpmath_two_dimensional_c_map_converges_at_large_q():
    """Beyond Mehler's range (|c| > 0.8) the mpmath C map integrates in 2-D; at q = 1e4, where
    tanh(sqrt(q) z) turns within |z| < 1e-2, it raised 'did not converge' until its panels were
    graded towards x = 0 like the float64 rule's.  References: the float64 rule (tested
    against mpmath at moderate q) and erf's closed form (Williams): E[erf(u) erf(v)] = (2/pi)
    asin(2 c q / (1 + 2 q)) at q1 = q2 = q.  About four minutes on 2 cores."""
    q, c = 1e4, 0.9
    maps = kernel_maps(act("tanh"), dps=12, engine="mpmath")
    assert rel(maps.c_map(c, q1=q, q2=q), kernel_maps(act("tanh"), engine="float64").c_map(c, q1=q, q2=q)) < 1e-11
    erf = kernel_maps(act("erf"), dps=10, engine="mpmath")
    erf.mehler_max_abs_c = 0  # force the 2-D rule
    q = 100.0
    exact = mpmath.asin(2 * c * q / (1 + 2 * q)) / mpmath.asin(2 * q / (1 + 2 * q))
    assert rel(erf.c_map(c, q1=q, q2=q), exact) < 1e-9


# ---- float64 rules for activations on a scale finer than 1 in x, or oscillating -------------------

def _erf_kernel(a, c, q):
    """Williams (1997): E[erf(a u) erf(a v)] = 2/pi asin(kappa c) at q1 = q2 = q, kappa = 2a^2q/(1 + 2a^2q);
    C = asin(kappa c)/asin(kappa), C' = kappa / sqrt(1 - kappa^2 c^2) / asin(kappa) (by hand)."""
    with mpmath.workdps(40):
        a2q = mpmath.mpf(a) ** 2 * mpmath.mpf(q)
        kappa = 2 * a2q / (1 + 2 * a2q)
        c = mpmath.mpf(c)
        norm = mpmath.asin(kappa)
        return mpmath.asin(kappa * c) / norm, kappa / mpmath.sqrt(1 - kappa**2 * c**2) / norm


@pytest.mark.parametrize("a", [5, 10])
def test_float64_c_map_of_steep_erf_against_williams(a):
    """erf(a x) varies on a scale 1/a in x: the fixed unit-scale 2-D rule was 2e-12..6e-10 off C and
    C' for erf(5 x) at q = 1, and C(-1) came out as -1.00000000000013 (DomainError)."""
    m = kernel_maps(sympy.erf(a * x), engine="float64")
    for c in (-1, -0.5, 0.3, 0.8, 0.999):
        ref, dref = _erf_kernel(a, c, 1)
        assert diff(m.c_map(c), ref) < 1e-12, c
        if abs(c) < 1:
            assert rel(m.c_map_derivative(c, 1), dref) < 1e-12, c
    # odd phi: C(-1) = -1 (was a DomainError "came out as -1.00000000000013")
    for phi in (sympy.erf(a * x), 2 * sympy.erf(3 * x)):
        assert -1 <= kernel_maps(phi, engine="float64").c_map(-1) < -1 + 1e-14, phi


def test_float64_tanh_10x_against_scale_identity_and_direct_quadrature():
    """tanh(10 x) at q = 1 is tanh at q = 100 (the same Gaussian integrals): float64 C(0.8) was 1.4e-7
    off, C'(-0.5) 9.8e-7, and slope_at_1 raised a 'kink or singularity' DivergentIntegralError."""
    fast = kernel_maps(sympy.tanh(10 * x), engine="float64")
    ref = kernel_maps(act("tanh"), dps=20, engine="mpmath")   # Mehler series at q = 100
    assert rel(fast.c_map(0.8), ref.c_map(0.8, 100, 100)) < 1e-12
    assert rel(fast.c_map_derivative(-0.5, 1), ref.c_map_derivative(-0.5, 1, 100, 100)) < 1e-12
    # C'(1) = E[phi'(z)^2] / E[phi(z)^2] with phi' = 10 sech^2(10 x): mpmath.quad split at the feature
    with mpmath.workdps(30):
        pdf = lambda t: mpmath.exp(-t * t / 2) / mpmath.sqrt(2 * mpmath.pi)  # noqa: E731
        pts = [-mpmath.inf, -1, -0.1, 0, 0.1, 1, mpmath.inf]
        num = mpmath.quad(lambda t: 100 * mpmath.sech(10 * t) ** 4 * pdf(t), pts)
        den = mpmath.quad(lambda t: mpmath.tanh(10 * t) ** 2 * pdf(t), pts)
        slope = num / den
    assert rel(fast.slope_at_1(1), slope) < 1e-12
    assert rel(fast.q_map(1), den) < 1e-12


def _sin_kernel(a, b, c, q1, q2):
    """E[sin(a u + b) sin(a v + b)] / sqrt(Q(q1) Q(q2)) from sin A sin B = (cos(A - B) - cos(A + B))/2:
    E = (exp(-a^2 (q1 + q2 - 2 c r1 r2)/2) - cos 2b exp(-a^2 (q1 + q2 + 2 c r1 r2)/2)) / 2,
    Q(q) = (1 - cos 2b exp(-2 a^2 q)) / 2."""
    with mpmath.workdps(40):
        a, b, c, q1, q2 = (mpmath.mpf(v) for v in (a, b, c, q1, q2))
        cr = 2 * c * mpmath.sqrt(q1 * q2)
        e = (mpmath.exp(-a * a * (q1 + q2 - cr) / 2) - mpmath.cos(2 * b) * mpmath.exp(-a * a * (q1 + q2 + cr) / 2)) / 2
        Q = lambda q: (1 - mpmath.cos(2 * b) * mpmath.exp(-2 * a * a * q)) / 2  # noqa: E731
        return e / mpmath.sqrt(Q(q1) * Q(q2))


def test_float64_c_map_of_oscillating_phi_at_large_q_against_closed_form():
    """sin(3 x + 1) at q = 50 oscillates ~70 times over the rule's range: C(-1) was 0.415296 instead of
    -cos 2 = 0.4161468 (8.5e-4 off), with no warning.  Where C is far below the rule's resolution (C(-0.3) =
    1e-254, returned as -5.5e-18) the float64 C is held to its documented absolute accuracy."""
    m = kernel_maps(sympy.sin(3 * x + 1), engine="float64")
    cos = kernel_maps(sympy.cos(x), engine="float64")
    points = [(m, 3, 1, c, q1, q2) for c, q1, q2 in ((-1, 50, 50), (-0.3, 50, 50), (0.6, 50, 50), (0.97, 50, 50),
                                                    (0.9, 30, 50), (-1, 20, 50))]
    points += [(cos, 1, mpmath.pi / 2, c, 200, 200) for c in (-1, -0.5, 0.7)]
    for maps, a, b, c, q1, q2 in points:
        ref = _sin_kernel(a, b, c, q1, q2)
        if abs(c) == 1:     # a 1-D rule, converged relative to its own E|.| (C(-1; 20, 50) = 2e-14)
            assert diff(maps.c_map(c, q1, q2), ref) < 1e-12, (c, q1, q2)
        elif abs(ref) > 1e-6:
            assert rel(maps.c_map(c, q1, q2), ref) < 1e-11, (c, q1, q2)
        else:   # 7.9e-21 (c = 0.9, q = 30, 50) and below: absolute accuracy (see KernelMaps)
            assert diff(maps.c_map(c, q1, q2), ref) < 1e-12, (c, q1, q2)



# ---- q-map derivatives at small q -------------------------------------------------------------

_QS = sympy.Symbol("q")


@functools.lru_cache(maxsize=None)
def _tanh_q_series():
    """Q(q) = sum_k t_k (2k - 1)!! q^k for tanh^2 = sum_k t_k x^(2k) (SymPy's series; the expectation
    series is asymptotic, truncated at q^10: below 1e-30 relative for q <= 1e-4)."""
    t = sympy.Symbol("t")
    ser = sympy.series(sympy.tanh(t) ** 2, t, 0, 22).removeO()
    return sum(ser.coeff(t, 2 * k) * sympy.factorial2(2 * k - 1) * _QS**k for k in range(1, 11))


def _tanh_q_derivative(q, n):
    return sympy.diff(_tanh_q_series(), _QS, n).subs(_QS, sympy.Rational(q)).evalf(50)


def _elu_q_derivative(q, n):
    """ELU (alpha = 1): Q(q) = q/2 + 1/2 + e^(2q) Phi(-2 sqrt q) - 2 e^(q/2) Phi(-sqrt q), from
    E[e^(a x) 1{x < 0}] = e^(a^2 q/2) Phi(-a sqrt q); differentiated numerically at 60 digits."""
    with mpmath.workdps(60):
        Phi = lambda v: mpmath.erfc(-v / mpmath.sqrt(2)) / 2  # noqa: E731
        Q = lambda s: s / 2 + mpmath.mpf(1) / 2 + mpmath.exp(2 * s) * Phi(-2 * mpmath.sqrt(s)) \
            - 2 * mpmath.exp(s / 2) * Phi(-mpmath.sqrt(s))  # noqa: E731
        q = mpmath.mpf(sympy.Rational(q))
        return mpmath.diff(Q, q, n, h=q * mpmath.mpf(10) ** -15)


def test_q_map_derivatives_at_small_q_have_no_cancellation():
    """E[phi^2 He_2n] / (2q)^n cancels O(q) against He_2n at small q: float64 gave Q'''(1e-10) = 32071
    (true 33.99999995), Q'''(1e-8) 1% off, Q''(1e-20) = -9237.5 (true -4); mpmath at 20 digits gave
    Q''(1e-20) = -3.9999999994568.  References: tanh's Taylor series, ELU's closed form."""
    f64 = kernel_maps(act("tanh"), engine="float64")
    mp20 = kernel_maps(act("tanh"), dps=20, engine="mpmath")
    assert _tanh_q_series().coeff(_QS, 3) == sympy.Rational(17, 3)      # the reviewer's q - 2q^2 + 17/3 q^3
    for q in ("1e-20", "1e-10", "1e-8", "1e-4"):
        for n in (1, 2, 3):
            assert rel(f64.q_map_derivative(float(q), n), _tanh_q_derivative(q, n)) < 1e-12, (q, n)
    for q, n in (("1e-20", 2), ("1e-10", 3), ("1e-4", 1)):
        assert rel(mp20.q_map_derivative(mpmath.mpf(q), n), _tanh_q_derivative(q, n)) < 1e-19, (q, n)
    for engine, tol in (("float64", 1e-12), ("mpmath", 1e-18)):
        elu = kernel_maps(act("elu"), dps=20, engine=engine)    # kinked: g^(2n) has delta terms at 0
        for q in ("1e-6", "1e-3", "1/2"):
            for n in (1, 2, 3):
                qv = sympy.Rational(q) if engine == "mpmath" else float(sympy.Rational(q))
                assert rel(elu.q_map_derivative(qv, n), _elu_q_derivative(q, n)) < tol, (engine, q, n)
        relu = kernel_maps(act("relu"), dps=20, engine=engine)  # Q = q/2 exactly
        assert relu.q_map_derivative(1e-12, 1) == mpmath.mpf(1) / 2 and relu.q_map_derivative(1e-12, 2) == 0


def test_q_map_derivative_at_small_q_with_singular_higher_derivatives():
    """phi = tanh(x) + x^4 log|x| is finite, but (phi^2)^(6) has 1/x^2: the derivative form does not
    apply, so Q''' uses E[phi^2 He_6] / (2q)^3 with log10(1/q^3) more guard digits (mpmath) and the
    float64 engine refuses the cancellation (it was silently wrong).  Reference: mpmath.quad at 60 digits."""
    phi = symact.activation("tanh(x) + x**4*log(Abs(x))")
    with pytest.raises(DivergentIntegralError, match="cancels.*engine='mpmath'"):
        kernel_maps(phi, engine="float64").q_map_derivative(1e-6, 3)
    got = kernel_maps(phi, dps=20, engine="mpmath").q_map_derivative(mpmath.mpf("1e-6"), 3)
    with mpmath.workdps(60):
        q = mpmath.mpf("1e-6")
        r = mpmath.sqrt(q)
        f = lambda z: ((mpmath.tanh(r * z) + (r * z) ** 4 * mpmath.log(abs(r * z))) ** 2  # noqa: E731
                       * (z**6 - 15 * z**4 + 45 * z**2 - 15) * mpmath.npdf(z))
        ref = mpmath.quad(f, [-mpmath.inf, -3, -1, 0, 1, 3, mpmath.inf]) / (2 * q) ** 3
    assert rel(got, ref) < 1e-19


def _q_derivative_by_density(phi, q, n, dps):
    """d^n Q/dq^n = int phi(u)^2 d^n/dq^n p_q(u) du, p_q the N(0, q) density differentiated by SymPy (no Hermite
    polynomial, no derivative of phi), by mpmath.quad at ``dps`` digits (it cancels (n - 1) log10(1/q) of them)."""
    u, s = sympy.Symbol("u", real=True), sympy.Symbol("s", positive=True)
    kernel = sympy.lambdify((u, s), sympy.diff(sympy.exp(-u**2 / (2 * s)) / sympy.sqrt(2 * sympy.pi * s), s, n),
                            "mpmath")
    with mpmath.workdps(dps):
        qq = mpmath.mpf(sympy.Rational(q).p) / sympy.Rational(q).q
        return mpmath.quad(lambda t: phi(t) ** 2 * kernel(t, qq), [-mpmath.inf, -5, -1, 0, 1, 5, mpmath.inf])


def _watch_formula_sizes(monkeypatch) -> list:
    """Make every sympy.diff in the test fail once a derivative formula passes 3 * FORMULA_MAX_NODES nodes;
    the returned list's one element is the largest size seen."""
    real_diff, largest = sympy.diff, [0]

    def measured(*args, **kwargs):
        out = real_diff(*args, **kwargs)
        largest[0] = max(largest[0], sum(1 for _ in sympy.preorder_traversal(out)))
        assert largest[0] <= 3 * FORMULA_MAX_NODES, largest[0]
        return out

    monkeypatch.setattr(sympy, "diff", measured)
    return largest


def test_high_order_q_map_derivatives_build_no_huge_formula(monkeypatch):
    """q_map_derivative had no limit on the formulas it built.  At q >= 1 it differentiated phi^2 2n times only to
    check that derivative's regularity, which the He form used there does not need (tanh's float64 Q^(7)(1) took
    13 s, on a 40739-node formula, Q^(10) over 60 s), and the closed engine differentiated its Q n times (erf's
    2 asin(2q/(2q + 1))/pi: 38081 nodes at n = 9, 10 s at n = 10, over 10 minutes at n = 20).  Now no formula grows
    past the first one over FORMULA_MAX_NODES (a derivative is at most ~2.2 times the size of the one before), and
    beyond it the closed engine takes the mpmath engine's He form.  References: tanh's Q^(n) by the density
    differentiated by SymPy, erf's closed Q differentiated by mpmath.diff at 60 digits, sin's
    Q = (1 - e^(-2q))/2."""
    tanh_ref = _q_derivative_by_density(mpmath.tanh, 2, 7, 40)
    with mpmath.workdps(60):
        erf_q = lambda q: 2 / mpmath.pi * mpmath.asin(2 * q / (2 * q + 1))  # noqa: E731
        erf_refs = {n: mpmath.diff(erf_q, 1, n) for n in (7, 9, 20)}
    largest = _watch_formula_sizes(monkeypatch)
    for engine, tol in (("float64", 1e-12), ("mpmath", 1e-18)):
        assert rel(kernel_maps(sympy.tanh(x), engine=engine, dps=20).q_map_derivative(2, 7), tanh_ref) < tol, engine
    erf = kernel_maps(sympy.erf(x), dps=20)
    assert erf.engine == "closed"
    for n, ref in erf_refs.items():
        assert rel(erf.q_map_derivative(1, n), ref) < 1e-18, n
    for engine, tol in (("float64", 1e-10), ("mpmath", 1e-18)):   # float64 at q >= 1: ~1e-10 (KernelMaps)
        sin = kernel_maps(sympy.sin(x), engine=engine, dps=20)
        for q in (sympy.Rational(1, 2), sympy.Integer(1), sympy.Rational(5, 2)):
            for n in (10, 15):
                with mpmath.workdps(40):
                    ref = -(-2) ** n * mpmath.exp(-2 * mpmath.mpf(q.p) / q.q) / 2
                qv = float(q) if engine == "float64" else q
                assert rel(sin.q_map_derivative(qv, n), ref) < tol, (engine, q, n)
    assert largest[0] > 0   # (the closed engine's formulas were measured)


def test_q_map_derivative_below_q_1_beyond_the_formula_limit():
    """Below q = 1 the cancellation-free form E[(phi^2)^(2n)] / 2^n needs SymPy's formula for (phi^2)^(2n), which
    for tanh has 12967 nodes at 2n = 12 and grows 1.8 times per order (building, compiling and evaluating it took
    most of a minute by n = 7).  Past FORMULA_MAX_NODES the mpmath engine takes the He form with n log10(1/q) guard
    digits, and the float64 engine, where the He form cancels beyond its tolerance, refuses naming the limit.
    Reference: the density differentiated by SymPy, by mpmath.quad at 80 digits."""
    f64 = kernel_maps(sympy.tanh(x), engine="float64")
    assert rel(f64.q_map_derivative(1e-3, 5), _q_derivative_by_density(mpmath.tanh, "1/1000", 5, 80)) < 1e-12
    with pytest.raises(DivergentIntegralError,
                       match=rf"over {FORMULA_MAX_NODES} nodes.*n = 5 is the highest order.*engine='mpmath'"):
        f64.q_map_derivative(1e-3, 6)
    got = kernel_maps(sympy.tanh(x), dps=20, engine="mpmath").q_map_derivative(sympy.Rational(1, 1000), 6)
    assert rel(got, _q_derivative_by_density(mpmath.tanh, "1/1000", 6, 80)) < 1e-18


def _double_factorial(n):
    return math.prod(range(n, 0, -2))


def test_closed_c_map_derivatives_at_high_order():
    """The closed engine differentiated its C map n times in one SymPy call, which expands each product's n-th
    derivative by Leibniz's rule at once: erf's C^(40)(-0.9) took 26 s, C^(50) 40 s.  It now builds one order at a
    time (under FORMULA_MAX_NODES; the closed C's formulas grow linearly with the order).  References: Sheppard's
    C = 1/2 + asin(c)/pi for the step, so C^(n)(0) = ((n - 2)!!)^2/pi for odd n, 0 for even n; the arc-cosine
    C = (sqrt(1 - c^2) + (pi - acos c) c)/pi for ReLU, whose C'' = (1 - c^2)^(-1/2)/pi gives
    C^(n)(0) = ((n - 3)!!)^2/pi for even n; erf's asin(2c/3)/asin(2/3) differentiated by mpmath.diff at 60
    digits."""
    step, relu, erf = (kernel_maps(phi, dps=20) for phi in (sympy.Heaviside(x), sympy.Max(0, x), sympy.erf(x)))
    assert {step.engine, relu.engine, erf.engine} == {"closed"}
    with mpmath.workdps(40):
        for n in (5, 11, 21, 41):
            assert rel(step.c_map_derivative(0, n), _double_factorial(n - 2) ** 2 / mpmath.pi) < 1e-18, n
            assert step.c_map_derivative(0, n + 1) == 0, n
        for n in (6, 20, 40):
            assert rel(relu.c_map_derivative(0, n), _double_factorial(n - 3) ** 2 / mpmath.pi) < 1e-18, n
    with mpmath.workdps(60):
        erf_c = lambda c: mpmath.asin(2 * c / 3) / mpmath.asin(mpmath.mpf(2) / 3)  # noqa: E731
        refs = {c: mpmath.diff(erf_c, mpmath.mpf(c), 50) for c in ("-0.9", "0.5")}
    start = time.process_time()
    for c, ref in refs.items():
        assert rel(erf.c_map_derivative(sympy.Rational(c), 50), ref) < 1e-18, c
    assert time.process_time() - start < 10   # (2 s; in one step 26 s at n = 40, 40 s at n = 50)


def test_c_map_derivative_past_the_formula_limit(monkeypatch):
    """Price's form E[phi^(n)(u) phi^(n)(v)] needs SymPy's formula for phi^(n), which the numeric engines built
    at any n: tanh's grow 1.8 times per order (12967 nodes at n = 13), so the mpmath C^(20)(0) took 100 s (only to
    see that phi^(19) is even), its C^(10)(0.9) and the float64 C^(20)(0.5) ran for minutes, and the float64
    C^(20)(0) ended in a RecursionError after 87 s; prepare(max_derivative=20) built them all too.  Now formulas stop
    at FORMULA_MAX_NODES (tanh: n <= 12); beyond, the mpmath engine sums Mehler's series, which needs no formula, at
    q1 == q2 (also past mehler_max_abs_c) and at c = 0 (a vanishing term found from the parity of a lower
    derivative), and raises naming the limit elsewhere, as the float64 engine does; the closed engine's own limit
    hands over to the mpmath engine.  References: tanh's 21! a_21^2 / Q with a_21 = E[tanh(z) He_21(z)] / sqrt(21!)
    and Q by mpmath.quad at 40 digits; erf's arcsine C map differentiated by mpmath.diff at 60 digits."""
    real_diff = sympy.diff
    largest = _watch_formula_sizes(monkeypatch)
    tanh = kernel_maps(sympy.tanh(x), dps=20, engine="mpmath").prepare(max_derivative=20)
    f64 = kernel_maps(sympy.tanh(x), engine="float64").prepare(max_derivative=20)
    limit = rf"over {FORMULA_MAX_NODES} nodes.*n = 12 is the highest order"
    with pytest.raises(DomainError, match=limit + r".*at q1 == q2 for \|c\| <= 0\.9.*engine='mpmath'"):
        f64.c_map_derivative(0.5, 20)
    for c, q2 in ((1, 1), (sympy.Rational(1, 2), 2)):
        with pytest.raises(DomainError, match=limit + r".*here (\|c\| = 1|q1 != q2)"):
            tanh.c_map_derivative(c, 15, 1, q2)
    assert tanh.c_map_derivative(0, 20) == 0   # a_20 = 0: tanh is odd
    with mpmath.workdps(40):
        he21 = lambda z: mpmath.hermite(21, z / mpmath.sqrt(2)) / mpmath.sqrt(2) ** 21  # noqa: E731
        pts = [-mpmath.inf, -12, -6, -3, 0, 3, 6, 12, mpmath.inf]
        q = mpmath.quad(lambda z: mpmath.tanh(z) ** 2 * mpmath.npdf(z), pts)
        e21 = mpmath.quad(lambda z: mpmath.tanh(z) * he21(z) * mpmath.npdf(z), pts)   # sqrt(21!) a_21
        ref = e21 ** 2 / q
    assert rel(tanh.c_map_derivative(0, 21), ref) < 1e-18
    assert 0 < largest[0] <= 3 * FORMULA_MAX_NODES

    # past the limit with a closed-form reference: erf's phi^(n) grows slowly, so lower the limit (to n <= 8)
    monkeypatch.setattr(sympy, "diff", real_diff)
    monkeypatch.setattr("analysis.kernel.FORMULA_MAX_NODES", 60)
    with mpmath.workdps(60):
        erf_c = lambda c: mpmath.asin(2 * c / 3) / mpmath.asin(mpmath.mpf(2) / 3)  # noqa: E731
        refs = {(n, c): mpmath.diff(erf_c, mpmath.mpf(c), n) for n, c in ((12, "0.9"), (11, "0"), (10, "0.5"))}
    closed, numeric = kernel_maps(sympy.erf(x), dps=20), kernel_maps(sympy.erf(x), dps=20, engine="mpmath")
    assert closed.engine == "closed"
    for (n, c), ref in refs.items():
        assert rel(numeric.c_map_derivative(sympy.Rational(c), n), ref) < 1e-18, (n, c)
        if c != "0.9":   # (the closed C has 73 nodes at n = 1: every order is the mpmath engine's; two show it)
            assert rel(closed.c_map_derivative(sympy.Rational(c), n), ref) < 1e-18, (n, c)
    assert numeric.c_map_derivative(0, 12) == 0
    with pytest.raises(DomainError, match=r"over 60 nodes.*n = 8 is the highest order.*here \|c\| = 1"):
        numeric.c_map_derivative(-1, 12)


def test_c_map_derivatives_of_a_jumping_phi_count_the_deltas_of_its_lower_derivatives():
    """A jump of phi^(i) puts delta^(n - 1 - i) into phi^(n), which two checks missed.  At c = 0 the mpmath engine
    takes d^nC/dc^n = 0 where phi^(n - 1) is even; it judged that on the regular part alone, 0 for the step's phi'',
    so C^(3)(0) of the step, sign and hardshrink came out 0 (their phi'' is odd: delta', and for hardshrink
    delta(x - 1/2) - delta(x + 1/2) + (delta'(x - 1/2) + delta'(x + 1/2))/2).  Price's form refused only a jump of
    phi^(n - 2), so the float64 C^(3) of the step was 0 at every c, as was the mpmath one past Mehler's range.
    References: C = 1/2 + asin(c)/pi (step), 2 asin(c)/pi (sign), so C^(n)(0) = ((n - 2)!!)^2/pi and twice that
    for odd n, 0 for even n (the step is 1/2 plus an odd function); hardshrink's a_3 = E[phi He_3]/sqrt(6)
    = 2 l^3 p(l)/sqrt(6) (l = 1/2, p the normal density, since int_l^inf (z^4 - 3 z^2) p = l^3 p(l)), its
    Q = 2 (l p(l) + Phi(-l)), so C^(3)(0) = 3! a_3^2 / Q."""
    step = kernel_maps(sympy.Heaviside(x), dps=20, engine="mpmath")
    sign = kernel_maps(sympy.sign(x), dps=20, engine="mpmath")
    with mpmath.workdps(40):
        for n in (3, 5):
            assert rel(step.c_map_derivative(0, n), _double_factorial(n - 2) ** 2 / mpmath.pi) < 1e-18, n
            assert rel(sign.c_map_derivative(0, n), 2 * _double_factorial(n - 2) ** 2 / mpmath.pi) < 1e-18, n
        for n in (2, 4):
            assert step.c_map_derivative(0, n) == 0 and sign.c_map_derivative(0, n) == 0, n
        lam = mpmath.mpf(1) / 2
        a3 = 2 * lam ** 3 * mpmath.npdf(lam) / mpmath.sqrt(6)
        ref = 6 * a3 ** 2 / (2 * (lam * mpmath.npdf(lam) + mpmath.ncdf(-lam)))
    assert rel(kernel_maps("hardshrink", dps=20, engine="mpmath").c_map_derivative(0, 3), ref) < 1e-18
    for engine, c in (("float64", 0.5), ("float64", 0.0), ("mpmath", sympy.Rational(9, 10))):
        with pytest.raises(DomainError, match=r"d\^3C/dc\^3 .*derivatives of delta functions \(phi\^\(0\) jumps\)"):
            kernel_maps(sympy.Heaviside(x), dps=20, engine=engine).c_map_derivative(c, 3)


def test_features_narrower_than_the_node_spacing_are_found_from_the_formula():
    """erf(1000 x) and erf(1000 (x - 0.3)) vary within 0.001 of one point: every Gauss-Legendre rule
    on unit panels has all its nodes outside, so the rules agree with each other and the comparison
    cannot see the feature (float64 Q of the shifted one was 6e-4 off, silently; C(-1) of erf(1000 x)
    came out -1.0006, a DomainError).  The float64 rules now grade towards 1/|a| around -b/a for any
    function of a x + b in the formula, and the mpmath rule splits there.  References: Williams'
    arcsine kernel; E[erf(a(x - m))] = erf(-a m / sqrt(1 + 2a^2)),
    E[phi'^2] = 4a^2/pi exp(-2a^2 m^2/(1 + 4a^2)) / sqrt(1 + 4a^2), Q by mpmath.quad split at m."""
    steep = kernel_maps(sympy.erf(1000 * x), engine="float64")
    for c in (-1, -0.7, 0.5, 0.999):
        assert diff(steep.c_map(c), _erf_kernel(1000, c, 1)[0]) < 1e-12, c
    a, m = 1000, sympy.Rational(3, 10)
    phi = sympy.erf(a * (x - m))
    with mpmath.workdps(40):
        A, M = mpmath.mpf(a), mpmath.mpf(3) / 10
        pts = [-mpmath.inf, -1, 0, M - mpmath.mpf("0.01"), M - mpmath.mpf("0.001"), M, M + mpmath.mpf("0.001"),
               M + mpmath.mpf("0.01"), 1, mpmath.inf]
        Q = mpmath.quad(lambda t: mpmath.erf(A * (t - M)) ** 2 * mpmath.npdf(t), pts)
        c0 = mpmath.erf(-A * M / mpmath.sqrt(1 + 2 * A * A)) ** 2 / Q
        d2 = 4 * A * A / mpmath.pi / mpmath.sqrt(1 + 4 * A * A) * mpmath.exp(-2 * A * A * M * M / (1 + 4 * A * A))
        slope = d2 / Q
    for engine, tol in (("float64", 1e-12), ("mpmath", 1e-18)):
        k = kernel_maps(phi, dps=20, engine=engine)
        assert rel(k.q_map(1), Q) < tol, engine
        assert rel(k.value_at_0(1), c0) < tol, engine
        assert rel(k.slope_at_1(1), slope) < tol, engine


def _q_derivative_by_quad(phi, q, n, centre, width, dps=30):
    """d^n Q/dq^n = E[phi(x)^2 He_2n(x/sqrt q)] / (2q)^n, x ~ N(0, q), by mpmath.quad at ``dps`` digits split
    at the feature (``centre``, ``width``) and geometrically away from it."""
    with mpmath.workdps(dps):
        q, c, w = mpmath.mpf(q), mpmath.mpf(centre), mpmath.mpf(width)
        r = mpmath.sqrt(q)
        pts = sorted({-mpmath.inf, -1, 0, 1, mpmath.inf, c} | {c + s * w * 2**k for k in range(8) for s in (-1, 1)})
        he = lambda z: mpmath.hermite(2 * n, z / mpmath.sqrt(2)) / 2**n  # noqa: E731  (probabilists')
        f = lambda t: phi(t) ** 2 * he(t / r) * mpmath.npdf(t, 0, r)  # noqa: E731
        return mpmath.quad(f, pts) / (2 * q) ** n


def test_float64_q_map_derivative_of_steep_phi_below_q_1():
    """For q < 1, E[(phi^2)^(2n)] / 2^n is +-a^(2n) on either side of a steep feature and cancels: for
    erf(1000 (x - 0.3)), E|(phi^2)^(4)| is 1e12 x |Q''|, and the float64 rule (converged to 1e-13 of
    E|.|) gave Q''(0.9) 51% off and Q''(1 - 1e-6) 3% away from Q''(1), silently (erf(1000 x) Q''(0.5)
    3e-4, tanh(10 x) Q''(0.9) 1.5e-11).  Now the form losing fewer digits is used, or the engine
    refuses.  Reference: the He form by mpmath.quad at 20 digits (it agrees with 30 to ~1e-18, far inside
    the 1e-12 tolerance, in half the time)."""
    cases = [(sympy.erf(1000 * (x - sympy.Rational(3, 10))), lambda t: mpmath.erf(100 * (10 * t - 3)), "0.3", "0.001",
              ((0.5, 1), (0.9, 2), (0.9, 3), (0.999999, 2))),
             (sympy.erf(1000 * x), lambda t: mpmath.erf(1000 * t), 0, "0.001", ((0.5, 2),)),
             (sympy.tanh(10 * x), lambda t: mpmath.tanh(10 * t), 0, "0.1", ((0.9, 2),))]
    for phi, phi_mp, centre, width, points in cases:
        k = kernel_maps(phi, engine="float64")
        for q, n in points:
            ref = _q_derivative_by_quad(phi_mp, q, n, centre, width, dps=20)
            assert rel(k.q_map_derivative(q, n), ref) < 1e-12, (phi, q, n)
        for n in (1, 2, 3):     # continuous across q = 1, where the He form takes over for good
            below, at = k.q_map_derivative(1 - 2.0**-40, n), k.q_map_derivative(1.0, n)
            assert rel(below, at) < 1e-11, (phi, n)
    # 30 std out, the feature was beyond the rule's |z| <= 12 (the direct form saw 0, the He form cancels
    # completely: a refusal); the rule now reaches past its centre, a break-point where (phi^2)'' starts, and
    # computes it (reference: the mpmath engine, which integrates the whole line, at 20 digits)
    got = kernel_maps(cases[0][0], engine="float64").q_map_derivative(1e-4, 1)
    assert rel(got, kernel_maps(cases[0][0], engine="mpmath", dps=20).q_map_derivative(sympy.Rational(1, 10**4), 1)) < 1e-12


def test_mpmath_rules_split_at_feature_centres_everywhere():
    """The feature centres (erf(1000 (x - 0.3)) turns within 0.001 of 0.3) reached only the 1-D rule behind
    Q and the C map at c = 0: Q'(1) and Q'(2) (E[phi^2 He_2n] at q >= 1) raised DivergentIntegralError,
    and the Hermite coefficients behind Mehler's series were 1.5e-4 off a_0, so C(0.5) came out 1.3e-4
    and C(-0.3) 8e-4 off, silently.  References: the He form by mpmath.quad; a_0 = E[phi] =
    erf(-a m / sqrt(1 + 2a^2)), a_1 = E[phi'] = 2a / sqrt(pi (1 + 2a^2)) exp(-a^2 m^2 / (1 + 2a^2));
    E[phi(u) phi(v)] = 4 Phi2(h, h; rho) - 4 Phi(h) + 1 with h = -m / sigma, sigma^2 = 1 + 1/(2a^2),
    rho = c / sigma^2 (erf(a y) = 2 P(W < sqrt 2 a y) - 1, W ~ N(0, 1)), Phi2 by a 1-D mpmath.quad."""
    k = kernel_maps(sympy.erf(1000 * (x - sympy.Rational(3, 10))), dps=20, engine="mpmath")
    phi = lambda t: mpmath.erf(100 * (10 * t - 3))  # noqa: E731
    for q in (1, 2):
        assert rel(k.q_map_derivative(q, 1), _q_derivative_by_quad(phi, q, 1, "0.3", "0.001")) < 1e-18, q
    with mpmath.workdps(40):
        a, m = mpmath.mpf(1000), mpmath.mpf(3) / 10
        s2 = 1 + 1 / (2 * a * a)
        h = -m / mpmath.sqrt(s2)
        a0 = mpmath.erf(-a * m / mpmath.sqrt(s2 * 2 * a * a))
        a1 = 2 * a / mpmath.sqrt(mpmath.pi * (1 + 2 * a * a)) * mpmath.exp(-a * a * m * m / (1 + 2 * a * a))
        pts = sorted({-mpmath.inf, 0, m, 1, mpmath.inf} | {m + sg * mpmath.mpf("0.001") * 2**j
                                                           for j in range(8) for sg in (-1, 1)})
        Q = mpmath.quad(lambda t: phi(t) ** 2 * mpmath.npdf(t), pts)

        def C(c):
            rho = mpmath.mpf(c) / s2
            phi2 = mpmath.quad(lambda t: mpmath.npdf(t) * mpmath.ncdf((h - rho * t) / mpmath.sqrt(1 - rho * rho)),
                               [-mpmath.inf, h])
            return (4 * phi2 - 4 * mpmath.ncdf(h) + 1) / Q

        assert abs(C(1) - 1) < 1e-30       # the reference formula at c = 1
        refs = {c: C(sympy.Rational(c)) for c in ("1/2", "-3/10")}
    got = k.hermite_coefficients(2)
    assert rel(got[0], a0) < 1e-18 and rel(got[1], a1) < 1e-18
    for c, ref in refs.items():
        assert rel(k.c_map(sympy.Rational(c)), ref) < 1e-18, c


def test_c_map_derivatives_at_0_are_one_hermite_term_and_fast(monkeypatch):
    # At c = 0 Mehler's series keeps one term, n! a_n(q1) a_n(q2); by Price that is
    # sqrt(q1 q2)^n E[phi^(n)(u)] E[phi^(n)(v)] with u, v independent: two 1-D integrals.
    # (tanh's C'(0) went through the 2-D quadrature: ~90 s at 30 digits, the default of `symact maps`;
    # the quadrature is made to fail here, so the test fails rather than waits if it is used again.)
    from numeric import gauss

    def no_2d_quadrature(*args, **kwargs):
        raise AssertionError("C^(n)(0) must not need the 2-D quadrature")

    monkeypatch.setattr(gauss, "bivariate_gaussian_expectation", no_2d_quadrature)

    def expect(f, q):
        with mpmath.workdps(45):
            r = mpmath.sqrt(q)
            return mpmath.quad(lambda z: f(r * z) * mpmath.npdf(z), [-mpmath.inf, -5, 0, 5, mpmath.inf])

    softplus = lambda t: mpmath.log1p(mpmath.exp(t))          # noqa: E731
    d1 = lambda t: 1 / (1 + mpmath.exp(-t))                    # noqa: E731
    d2 = lambda t: d1(t) * (1 - d1(t))                         # noqa: E731
    m = kernel_maps(symact.activation("softplus"), dps=30, engine="mpmath")
    for q1, q2 in [(1, 1), (mpmath.mpf("0.5"), 2)]:
        norm = mpmath.sqrt(expect(lambda t: softplus(t) ** 2, q1) * expect(lambda t: softplus(t) ** 2, q2))
        for n, dn in [(1, d1), (2, d2)]:
            ref = mpmath.sqrt(q1 * q2) ** n * expect(dn, q1) * expect(dn, q2) / norm
            got = m.c_map_derivative(0, n, q1, q2)
            assert abs(got / ref - 1) < mpmath.mpf(10) ** -28, (q1, q2, n)
    tanh = kernel_maps(symact.activation("tanh"), dps=30, engine="mpmath")
    ref = expect(lambda t: 1 / mpmath.cosh(t) ** 2, 1) ** 2 / expect(lambda t: mpmath.tanh(t) ** 2, 1)
    assert abs(tanh.c_map_derivative(0, 1) / ref - 1) < mpmath.mpf(10) ** -28


@pytest.mark.parametrize("engine", ["mpmath", "float64"])
def test_c_map_at_1_refuses_divergent_activation_like_every_other_c(engine):
    """C(1) = 1 holds only where Q is finite: exp(x^2) returned 1.0 at c = 1 while c = 0.5 raised."""
    m = kernel_maps(sympy.exp(x**2), engine=engine, dps=15)
    with pytest.raises(DivergentIntegralError):
        m.c_map(1)
    with pytest.raises(DivergentIntegralError):
        m.c_map(0.5)


def test_q_map_of_exponential_growth_at_large_q_is_not_refused():
    """Q(q) = E[exp(sqrt(q) z)] = e^(q/2) for phi = exp(x/2): convergent at every q.  At q = 100 and
    15 digits the integrand is 1e20 at the tail radius and 1e-30 at twice it, and the absolute tail
    test called it divergent; the divergence message also named a fix (exp(x^2/4)) valid at q = 1 only."""
    m = kernel_maps(sympy.exp(x / 2), engine="mpmath", dps=15)
    assert rel(m.q_map(100), mpmath.exp(50)) < 1e-14
    # q = 200 and 2500: the integrand peaks at z = sqrt(q) = 14 and 50, beyond the tail radius R = 12.7
    # (called divergent), and at 50 beyond the rule's split points (9 of 15 digits before the far panels)
    for q in (200, 2500):
        with mpmath.workdps(30):
            exact = mpmath.exp(mpmath.mpf(q) / 2)
        assert rel(m.q_map(q), exact) < 1e-14
    # exp(x^2/8) at q = 2: E[exp(z^2/2)] really diverges; the fix must be about q, not about exp(x^2/4)
    with pytest.raises(DivergentIntegralError, match="smaller q"):
        kernel_maps(sympy.exp(x**2 / 8), engine="mpmath", dps=15).q_map(2)
    assert rel(kernel_maps(sympy.exp(x**2 / 8), engine="mpmath", dps=15).q_map(1), mpmath.sqrt(2)) < 1e-14



def test_mpmath_c_map_of_exp_at_large_q_is_not_refused():
    """phi = exp(x): Q(q) = e^(2q) and C(c; q, q) = e^(q (c - 1)) (log-normal moments), finite at every q.  At q = 50
    and 15 digits Mehler's series was refused ("the Gaussian expectation of f^2 diverges"): the Hermite coefficients'
    tail test was absolute, and f^2 pdf peaks beyond the tail radius there.  Reference: the closed form."""
    m = kernel_maps(sympy.exp(x), dps=15, engine="mpmath")
    with mpmath.workdps(40):
        exact = mpmath.exp(50 * (mpmath.mpf(0.3) - 1))
    assert rel(m.c_map(0.3, 50, 50), exact) < 1e-14     # (larger q: tests/test_gauss.py, the coefficients)
    # still refused where phi^2 is not integrable: exp(x^2) at q = 1 (and exp(x^2 / 8) at q = 2, tested above)
    with pytest.raises(DivergentIntegralError):
        kernel_maps(sympy.exp(x**2), dps=15, engine="mpmath").c_map(0.3)


def _exp_c(q, c, dps, slope=False):
    """C(c; q, q) = e^(q (c - 1)) for phi = exp(x) (log-normal moments), or C'(c) = q C(c), at dps + 30 digits."""
    with mpmath.workdps(dps + 30):
        return mpmath.exp(q * (mpmath.mpf(c) - 1)) * (q if slope else 1)


def test_mpmath_mehler_series_that_cancels_has_its_digits():
    """exp(x) at c < 0: Mehler's terms a_k^2 c^k = e^q (q c)^k / k! alternate and cancel by e^(2 q |c|) (1e17 at
    q = 40, c = -0.5) against C = e^(q (c - 1)).  The Hermite coefficients' error bound covered rounding only, not the
    rule's own error, which does not shrink with the extra digits asked for: C(-0.5; 40) came out 3e-10 off at 15
    digits (C(-0.8; 30) 4e-22 off at 30, C(-0.8; 50) 1e8 times too large at 15).  A sum that cancels now uses a
    rule verified against one with twice the nodes.  Reference: the closed form."""
    m = kernel_maps(sympy.exp(x), dps=15, engine="mpmath")
    assert rel(m.c_map(-0.5, 40, 40), _exp_c(40, -0.5, 15)) < 1e-14


@pytest.mark.slow
def test_mpmath_mehler_series_that_cancels_has_its_digits_at_30_digits():
    """As above at 30 digits, several c < 0 and q (~1 min: q = 30, c = -0.8 cancels by 1e21)."""
    m = kernel_maps(sympy.exp(x), dps=30, engine="mpmath")
    for q in (1, 10, 30):
        for c in (-0.8, -0.5, -0.3):
            assert rel(m.c_map(c, q, q), _exp_c(q, c, 30)) < 1e-29, (q, c)
    # the slope too (Mehler's series differentiated): C'(c) = q C(c)
    assert rel(m.c_map_derivative(-0.5, 1, 30, 30), _exp_c(30, -0.5, 30, slope=True)) < 1e-29

def test_q_map_derivative_cancellation_at_large_q():
    """sin: Q(q) = (1 - e^(-2q))/2, so Q'(q) = e^(-2q) and Q''(q) = -2 e^(-2q): tiny against
    E|sin^2 He_2n| ~ 1 at large q.  The mpmath engine returned Q'(60) 174 times too large at 20
    digits and the float64 engine Q'(30) 3e8 times too large, both silently."""
    m = kernel_maps(sympy.sin(x), engine="mpmath", dps=20)
    for q, n in ((60, 1), (60, 2)):
        with mpmath.workdps(40):
            exact = (-2) ** (n - 1) * mpmath.exp(-2 * mpmath.mpf(q))
        assert rel(m.q_map_derivative(q, n), exact) < 1e-19
    f64 = kernel_maps(sympy.sin(x), engine="float64")
    with pytest.raises(DivergentIntegralError, match="mpmath"):
        f64.q_map_derivative(30, 1)
    assert f64.q_map_derivative(2, 1) == pytest.approx(math.exp(-4), rel=1e-12)
    # Q linear in q (ReLU, abs): Q'' = 0 exactly, from the direct form at any q
    for phi in (sympy.Max(0, x), sympy.Abs(x)):
        for engine in ("mpmath", "float64"):
            assert kernel_maps(phi, engine=engine, dps=20).q_map_derivative(7, 2) == 0


def test_q_map_derivative_that_is_exactly_zero_comes_out_zero(monkeypatch):
    """x exp(-x^2/2): Q(q) = q E[z^2 exp(-q z^2)] = q (1 + 2q)^(-3/2), so Q'(q) = (1 - q) (1 + 2q)^(-5/2), 0 at
    q = 1.  The mpmath engine retried with guard digits for the value's apparent cancellation, but each value was
    the previous try's rounding noise (-1.8e-58, then -7.2e-119, ...): 8 tries up to 472 digits, 20 s, and
    -2.6e-481 returned as if it had 30 digits.  A value with no certain digit at 2 (dps + 10) working digits is
    below 10^-(2 dps + 18) of its scale and comes out 0; a small one above that keeps its digits (at
    q = 1 + 2^-120, Q' = -4.8e-38 cancels 36 digits; the q values are exact in binary, so the engine's rounding
    of q to dps + 10 digits changes nothing)."""
    import numeric.gauss as gauss_module

    tries = []
    real = gauss_module.gaussian_expectation

    def recording(*args, **kwargs):
        tries.append(kwargs.get("dps"))
        return real(*args, **kwargs)

    monkeypatch.setattr(gauss_module, "gaussian_expectation", recording)
    m = kernel_maps(x * sympy.exp(-x**2 / 2), dps=30, engine="mpmath")
    assert m.q_map_derivative(1) == 0
    assert len(tries) <= 2, tries
    for q in (sympy.Rational(3, 2), sympy.Rational(2**70 + 1, 2**70), sympy.Rational(2**120 + 1, 2**120)):
        with mpmath.workdps(80):
            qq = mpmath.mpf(q.p) / q.q
            ref = (1 - qq) * (1 + 2 * qq) ** (-mpmath.mpf(5) / 2)
        assert rel(m.q_map_derivative(q), ref) < 1e-29, q
    with pytest.raises(DivergentIntegralError, match="cancels.*engine='mpmath'"):   # float64 cannot tell 0
        kernel_maps(x * sympy.exp(-x**2 / 2), engine="float64").q_map_derivative(1.0)


def test_second_c_derivative_of_a_step_is_finite_inside_and_the_float64_refusal_names_the_engine_that_gives_it():
    """The float64 engine refused C'' of a shifted step, saying it was "not defined pointwise";
    it is finite for |c| < 1.  Reference: for phi = H(x - a) at q = 1, C'(c) is the bivariate
    normal density at (a, a) over Phi(-a), so C''(c) = C'(c) (a^2/(1+c)^2 + c/(1-c^2))."""
    a, c = mpmath.mpf(1) / 2, mpmath.mpf(3) / 10
    with mpmath.workdps(40):
        slope = mpmath.exp(-a ** 2 / (1 + c)) / (2 * mpmath.pi * mpmath.sqrt(1 - c ** 2) * mpmath.ncdf(-a))
        curvature = slope * (a ** 2 / (1 + c) ** 2 + c / (1 - c ** 2))
    with pytest.raises(DomainError, match=r"finite for \|c\| < 1.*engine='mpmath'"):
        kernel_maps("heaviside(x - 1/2)", engine="float64").c_map_derivative(0.3, n=2)
    maps = kernel_maps("heaviside(x - 1/2)", engine="mpmath", dps=20)
    assert abs(maps.c_map_derivative(c, n=1) - slope) < mpmath.mpf(10) ** -18 * slope
    assert abs(maps.c_map_derivative(c, n=2) - curvature) < mpmath.mpf(10) ** -18 * curvature


def test_q_map_of_a_shifted_relu_far_in_the_tail():
    # Q(q) = E[(x - b)_+^2], x ~ N(0, q): (q + b^2) Phi(-b/s) - b s phi(b/s), s = sqrt(q) (by parts).
    # At q = 1e-3, b = 1/2 it is 1.0e-61: the mpmath engine returned it 0.8% off (mp.quad stopped on
    # an absolute error); the float64 rule, whose range ends at 12 std, said the activation
    # "vanishes almost everywhere"
    act = sympy.Max(0, x - sympy.Rational(1, 2))
    m = kernel_maps(act, dps=20, engine="mpmath")
    with mpmath.workdps(60):
        q = mpmath.mpf("1e-3")
        s, b = mpmath.sqrt(q), mpmath.mpf(1) / 2
        ref = (q + b * b) * mpmath.ncdf(-b / s) - b * s * mpmath.npdf(b / s)
        assert abs(m.q_map(q) / ref - 1) < mpmath.mpf(10) ** -19
        # the float64 rule's range ended at 12 std and it refused ("12 standard deviations"); it now reaches past
        # the kink at z = 15.8 (float64 keeps ~1e-14 there: the density's exponent, 125, is rounded)
        assert abs(kernel_maps(act, engine="float64").q_map(1e-3) / ref - 1) < 1e-12


def test_q_map_whose_mass_lies_beyond_the_quadrature_range():
    """hardshrink (x on |x| > 1/2, else 0) at q = 1e-4 is zero for |z| < 50, past the mpmath rule's range (27
    standard deviations at 30 digits), which holds all of Q(1e-4) = 5.4e-546: it came out 0, reported as "the
    activation vanishes almost everywhere", as did H(x - 50)'s Q(1) = Phi(-50) = 1e-545.  The range now reaches past
    the break-points.  The float64 engine cannot represent either and says so (it said they vanish); one that does
    vanish almost everywhere is still named so.  Reference: Q = 2 q (a p(a) + Phi(-a)), a = (1/2)/sqrt(q), p the
    normal density, from int_a^inf z^2 p(z) dz = a p(a) + Phi(-a)."""
    for dps in (15, 30):
        m = kernel_maps("hardshrink", dps=dps, engine="mpmath")
        for q in (sympy.Rational(1, 10**4), sympy.Rational(1, 10**6), sympy.Rational(1, 7)):
            with mpmath.workdps(80):
                qq = mpmath.mpf(q.p) / q.q
                a = 1 / (2 * mpmath.sqrt(qq))
                ref = 2 * qq * (a * mpmath.npdf(a) + mpmath.ncdf(-a))
            assert rel(m.q_map(q), ref) < mpmath.mpf(10) ** (1 - dps), (dps, q)
    with mpmath.workdps(80):
        assert rel(kernel_maps(sympy.Heaviside(x - 50), dps=20, engine="mpmath").q_map(1), mpmath.ncdf(-50)) < 1e-19
    for phi, q in (("hardshrink", 1e-4), (sympy.Heaviside(x - 50), 1)):
        with pytest.raises(DomainError, match=r"underflows float64.*engine='mpmath'"):
            kernel_maps(phi, engine="float64").q_map(q)
    for engine in ("float64", "mpmath"):
        with pytest.raises(DomainError, match="vanishes almost everywhere"):
            kernel_maps(sympy.Heaviside(x) * sympy.Heaviside(-x), engine=engine).q_map(1)


def _hardshrink_c_map(c, q, dps=60):
    """hardshrink's C(c; q, q), phi = x on |x| > 1/2, else 0, as a 1-D integral: with a = (1/2)/sqrt(q),
    u = sqrt(q) z1 and w = c z1 + s z2, E[phi(u) phi(v)] = 2 q int_a^inf z1 h(z1) p(z1) dz1, where
    h(z1) = E[w; |w| > a | z1] = m Phi((m - a)/s) + s p((a - m)/s) + m Phi((-a - m)/s) - s p((a + m)/s), m = c z1
    (the normal's truncated first moments), and Q = 2 q (a p(a) + Phi(-a)); mpmath.quad with z1 = a + t and the
    integrand scaled by its value at t = 0."""
    with mpmath.workdps(dps):
        q, c = mpmath.mpf(sympy.Rational(q).p) / sympy.Rational(q).q, mpmath.mpf(c)
        a, s = 1 / (2 * mpmath.sqrt(q)), mpmath.sqrt((1 - c) * (1 + c))

        def h(z1):
            m = c * z1
            return (m * mpmath.ncdf((m - a) / s) + s * mpmath.npdf((a - m) / s)
                    + m * mpmath.ncdf((-a - m) / s) - s * mpmath.npdf((a + m) / s))
        g = lambda t: (a + t) * h(a + t) * mpmath.exp(-a * t - t * t / 2)  # noqa: E731
        scale = abs(g(0))
        integral = mpmath.quad(lambda t: g(t) / scale, [0, 1 / a, 10 / a, 1, 10, mpmath.inf]) * scale
        return 2 * q * mpmath.npdf(a) * integral / (2 * q * (a * mpmath.npdf(a) + mpmath.ncdf(-a)))


def test_c_map_whose_mass_lies_beyond_the_quadrature_range():
    """hardshrink at q = 1e-4 is zero for |z| < 50.  Its C(0.5) went to Mehler's series, whose Hermite coefficients'
    rule stops at |z| = 18 (at 15 digits) and raised "does not resolve f" (the series would need thousands of terms
    anyway), as did C'(0), one Hermite term; past Mehler's range the 2-D rule, cut at |z| = 16, saw only zeros and
    C(0.9) came out 0.
    Where the Hermite rule misses more than 10^-(dps + 10) of Q, the mpmath engine now takes Price's form, the 2-D
    rule reaching past the kinks (at c = 0 two 1-D integrals).  References: C by a 1-D integral of the truncated
    normal moments (see _hardshrink_c_map), checked at q = 1/7 against mpmath's 2-D quadrature (15 digits) split
    at the moving kinks; C'(0) = q E[phi'(u)]^2 / Q with phi' = 1 on |x| > 1/2 plus a delta of weight 1/2 at each
    kink, so C'(0) = 2 (a p(a) + Phi(-a)) = Q / q; C(0) = 0 (odd).  The float64 engine's Q underflows and says so."""
    with mpmath.workdps(15):
        q, c = mpmath.mpf(1) / 7, mpmath.mpf(1) / 2
        r, s, a = mpmath.sqrt(q), mpmath.sqrt(1 - c * c), 1 / (2 * mpmath.sqrt(q))

        def inner(z1):   # E[w; |w| > a | z1] by quadrature split at its kinks
            kinks = sorted([(-a - c * z1) / s, (a - c * z1) / s])
            w = lambda z2: (c * z1 + s * z2) * mpmath.npdf(z2)  # noqa: E731
            return mpmath.quad(w, [-mpmath.inf, kinks[0]]) + mpmath.quad(w, [kinks[1], mpmath.inf])
        k = 2 * q * mpmath.quad(lambda z1: z1 * inner(z1) * mpmath.npdf(z1), [a, a + 1, a + 3, mpmath.inf])
        assert rel(k / (2 * q * (a * mpmath.npdf(a) + mpmath.ncdf(-a))), _hardshrink_c_map("1/2", "1/7")) < 1e-14
    m = kernel_maps("hardshrink", dps=15, engine="mpmath")
    q = sympy.Rational(1, 10**4)
    assert rel(m.c_map(sympy.Rational(1, 2), q, q), _hardshrink_c_map("1/2", q)) < 1e-14   # 2.3e-183
    assert m.c_map(0, q, q) == 0
    with mpmath.workdps(40):
        a = 1 / (2 * mpmath.sqrt(mpmath.mpf(q.p) / q.q))
        slope_at_0 = 2 * (a * mpmath.npdf(a) + mpmath.ncdf(-a))
    assert rel(m.c_map_derivative(0, 1, q, q), slope_at_0) < 1e-14   # 5.4e-542
    with pytest.raises(DomainError, match="Mehler's series cannot serve either.*beyond the range"):
        m.c_map_derivative(sympy.Rational(1, 2), 2, q, q)
    with pytest.raises(DomainError, match="underflows float64"):
        kernel_maps("hardshrink", engine="float64").c_map(0.5, 1e-4, 1e-4)


def _tanh_q_derivative_reference(q, n):
    """d^n/dq^n E[tanh(sqrt(q) z)^2] for n = 1, 2 in the variable u = sqrt(q) z, where nothing cancels:
    Q'(q) = q^(-3/2) I0 / sqrt(2 pi), I_k = int u^(k+1) tanh(u) sech(u)^2 exp(-u^2/(2q)) du, and
    Q''(q) = (-3/2 q^(-5/2) I0 + q^(-7/2) I2 / 2) / sqrt(2 pi)."""
    with mpmath.workdps(40):
        Q = mpmath.mpf(q)

        def integral(k):
            return mpmath.quad(lambda u: u ** (k + 1) * mpmath.tanh(u) * mpmath.sech(u) ** 2
                               * mpmath.exp(-u ** 2 / (2 * Q)), [-mpmath.inf, -5, 0, 5, mpmath.inf])

        c = 1 / mpmath.sqrt(2 * mpmath.pi)
        if n == 1:
            return c * Q ** -1.5 * integral(0)
        return c * (-mpmath.mpf(3) / 2 * Q ** -2.5 * integral(0) + Q ** -3.5 * integral(2) / 2)


@pytest.mark.parametrize("q, n", [(1e200, 1), (1e160, 2), pytest.param(1e250, 1, marks=pytest.mark.slow)])
def test_q_map_derivative_at_huge_q_keeps_its_digits(q, n):
    """The He form E[phi^2 He_2n] / (2q)^n cancels log10(sqrt q) digits at large q.  tanh's Q'(1e200) kept
    8 of 15 digits (one panel split at 0 for a feature of width 1e-100 in z); at q = 1e160, n = 2, (2q)^n
    overflowed float64 in the cancellation estimate, no guard digits were added and Q'' was garbage;
    at q = 1e250 (and `symact maps tanh --q 1e307`) the rule refused with 'did not converge'."""
    value = kernel_maps("tanh", dps=15).q_map_derivative(q, n)
    ref = _tanh_q_derivative_reference(q, n)
    assert abs(value / ref - 1) < 1e-13


@pytest.mark.parametrize("q", [1e100, 1e300])
def test_c_slope_at_1_at_huge_q_is_not_zero(q):
    """C'(1; q) = q E[phi'(sqrt(q) z)^2] / Q(q): tanh's came out 0.0 at q = 1e100 (sech^4(sqrt(q) z) is a
    spike of width 1e-50 at z = 0, which one split at 0 did not resolve) instead of ~5.3e49.  Reference in
    u = sqrt(q) z: q E[sech^4] = sqrt(q) int sech(u)^4 p(u/sqrt q) du, Q = 1 - int sech(u)^2 p(u/sqrt q) du / sqrt q."""
    with mpmath.workdps(30):
        Q = mpmath.mpf(q)
        density = lambda u: mpmath.exp(-u ** 2 / (2 * Q)) / mpmath.sqrt(2 * mpmath.pi)  # noqa: E731
        pts = [-mpmath.inf, -5, 0, 5, mpmath.inf]
        e4 = mpmath.quad(lambda u: mpmath.sech(u) ** 4 * density(u), pts) * mpmath.sqrt(Q)
        qmap = 1 - mpmath.quad(lambda u: mpmath.sech(u) ** 2 * density(u), pts) / mpmath.sqrt(Q)
        ref = e4 / qmap
    assert abs(kernel_maps("tanh", dps=15).slope_at_1(q) / ref - 1) < 1e-12
    assert abs(kernel_maps("tanh", engine="float64").slope_at_1(q) / ref - 1) < 1e-12


@pytest.mark.parametrize("q", [1e-160, 1e-300])
def test_float64_c_map_at_tiny_q_does_not_underflow(q):
    """At small q tanh(sqrt(q) z) = sqrt(q) z + O(q^(3/2)), so C(c; q, q) = c + O(q) and dC/dc = 1 + O(q).
    The float64 engine divided by sqrt(Q(q1) Q(q2)): the product 1e-320 is subnormal (3 digits), and
    C(0.5; 1e-160) came out 0.5000028; below q = 1e-162 it raised a bare ZeroDivisionError."""
    m = kernel_maps("tanh", engine="float64")
    assert m.c_map(0.5, q, q) == pytest.approx(0.5, rel=1e-12)
    assert m.c_map_curve(np.array([0.5, -0.3]), q, q) == pytest.approx([0.5, -0.3], rel=1e-12)
    assert m.c_map_derivative(0.5, 1, q, q) == pytest.approx(1.0, rel=1e-12)


def test_float64_c_map_at_huge_q_does_not_overflow():
    """Leaky ReLU is positively homogeneous, so C(c; q, q) does not depend on q (arc-cosine closed form).
    At q = 1e200 the float64 engine's Q(q1) Q(q2) ~ 1e399 overflowed: C(0.5) came out 0.0 and C'(0.5) nan."""
    m = kernel_maps(sympy.Max(x / 5, x), engine="float64")
    ref = kernel_maps(sympy.Max(x / 5, x), dps=20, engine="closed")
    assert m.c_map(0.5, 1e200, 1e200) == pytest.approx(float(ref.c_map(0.5)), rel=1e-12)
    assert m.c_map_derivative(0.5, 1, 1e200, 1e200) == pytest.approx(float(ref.c_map_derivative(0.5, 1)), rel=1e-12)


def test_float64_c_map_of_a_homogeneous_phi_does_not_depend_on_q():
    """phi = relu^2 is positively homogeneous (degree 2), so C(c; q1, q2) = C(c; 1, 1): the float64
    engine evaluates it at q = 1.  At q = 1e200 the rule took 10 s a point for leaky ReLU (panels graded
    to width 1e-100 in both variables), and phi^2 ~ 1e400 overflowed for relu^2 (refused as not
    representable).  Reference: Cho & Saul's arc-cosine kernel of degree 2, C = J_2(t) / J_2(0),
    J_2 = 3 sin t cos t + (pi - t)(1 + 2 cos^2 t), t = arccos c; C' = 4 (sin t + (pi - t) c) / (3 pi)."""
    m = kernel_maps(sympy.Max(0, x) ** 2, engine="float64")
    t = math.acos(0.5)
    j2 = 3 * math.sin(t) * math.cos(t) + (math.pi - t) * (1 + 2 * math.cos(t) ** 2)
    slope = 4 * (math.sin(t) + (math.pi - t) * 0.5) / (3 * math.pi)
    for q1, q2 in ((1e200, 1e200), (1e-300, 1e300), (4.0, 0.25)):
        assert m.c_map(0.5, q1, q2) == pytest.approx(j2 / (3 * math.pi), rel=1e-12), (q1, q2)
        assert m.c_map_derivative(0.5, 1, q1, q2) == pytest.approx(slope, rel=1e-12), (q1, q2)
        assert m.c_map_curve([0.5], q1, q2)[0] == pytest.approx(j2 / (3 * math.pi), rel=1e-12), (q1, q2)
    # not homogeneous (a shifted ReLU, tanh): q still matters
    assert kernel_maps(sympy.Max(0, x - 1), engine="float64").c_map(0.5, 4, 4) != pytest.approx(
        kernel_maps(sympy.Max(0, x - 1), engine="float64").c_map(0.5), rel=1e-3)


@pytest.mark.parametrize("q", [1e-80, 1e-300])
def test_mpmath_c_map_at_tiny_q_keeps_its_digits(q):
    """Mehler's series needs the Hermite coefficients of phi(sqrt(q) z), which the fixed-point rule
    sums with an absolute error of ~10^-(dps + guard): at q = 1e-80 they drowned in it (tanh's
    C(0.5) = 0.499999990814 at 20 digits, C'(0) = 0.99999998) and at q = 1e-300 the C map raised
    'came out as 8e204'.  Reference: C(c) = c + O(q) (see the float64 test above)."""
    m = kernel_maps("tanh", dps=20)
    assert abs(m.c_map(0.5, q, q) - mpmath.mpf("0.5")) < mpmath.mpf(10) ** -19
    assert abs(m.c_map(-0.3, q, q) - mpmath.mpf("-0.3")) < mpmath.mpf(10) ** -19
    assert abs(m.c_map_derivative(0, 1, q, q) - 1) < mpmath.mpf(10) ** -19


def test_mpmath_c_map_is_scale_invariant_for_a_tiny_activation():
    """C is normalised by Q, so phi and phi / 10^45 have the same C map; at 20 digits the small one's
    Hermite coefficients sank below the rule's absolute error and C(0.5) came out 0.4712 (0.4726)."""
    ref = kernel_maps(sympy.tanh(x), dps=20)
    tiny = kernel_maps(sympy.tanh(x) / 10 ** 45, dps=20)
    assert abs(tiny.c_map(0.5) - ref.c_map(0.5)) < mpmath.mpf(10) ** -18
    assert abs(tiny.c_map_derivative(0.5, 1) - ref.c_map_derivative(0.5, 1)) < mpmath.mpf(10) ** -18


@pytest.mark.parametrize("engine, expr", [("closed", sympy.erf(x)), ("float64", sympy.erf(x)), ("mpmath", sympy.tanh(x))])
def test_c_map_derivative_takes_a_whole_float_order_like_q_map_derivative(engine, expr):
    """n = 2.0 passed the order check (int(n) == n) and then failed: a ValueError "Can't calculate
    derivative wrt 2.0" (closed), a TypeError on a list index (float64), and a DomainError about
    "n=132.0 Hermite coefficients" (mpmath).  q_map_derivative already took it as 2."""
    m = kernel_maps(expr, dps=15, engine=engine)
    assert m.c_map_derivative(0.5, 2.0) == m.c_map_derivative(0.5, 2)
    assert m.c_map_derivative(0.5, np.float64(1.0)) == m.c_map_derivative(0.5, 1)


@pytest.mark.parametrize("engine", ["closed", "float64"])
def test_c_map_of_an_array_is_refused_pointing_to_c_map_curve(engine):
    # numpy's bare "truth value of an array ... is ambiguous" came out instead
    maps = kernel_maps("relu", engine=engine)
    for cs in (np.array([0.5, 0.2]), [0.5, 0.2]):
        with pytest.raises(DomainError, match="c_map_curve"):
            maps.c_map(cs)
    assert list(maps.c_map_curve(np.array([0.5, 0.2]))) == pytest.approx([maps.c_map(0.5), maps.c_map(0.2)], rel=1e-12)


@pytest.mark.parametrize("n", [-1, 0.5, True])
def test_composed_maps_refuse_an_order_that_is_not_a_non_negative_integer(n):
    # c_map_derivative(0.5, -1) said only "n <= 2"; 0.5 and True reached the chain rule
    m = kernel_maps("erf", engine="closed")
    comp = m.composed(m)
    with pytest.raises(DomainError, match="non-negative integer"):
        comp.c_map_derivative(0.5, n)
    with pytest.raises(DomainError, match="non-negative integer"):
        comp.q_map_derivative(1.0, n)
    assert comp.c_map_derivative(0.5, 2.0) == comp.c_map_derivative(0.5, 2)  # a whole float is that integer


@pytest.mark.parametrize("q1, q2", [(1e100, 1e100), (1e300, 1e300), (1e40, 3e120)])
def test_float64_c_map_of_a_saturating_phi_at_huge_q_skips_the_2d_rule(q1, q2, monkeypatch):
    """A saturating phi (limits L+- at +-inf, reached exponentially) is a step function plus a bump of
    width ~1 in x: at large q its kernel is E phi(u) E phi(v) + ((L+ - L-)/2)^2 (2/pi) asin(c) up to terms
    bounded by ~1/(q sqrt(1 - c^2)).  The float64 engine ran the 2-D rule, its panels graded towards 0 in
    both variables at a cost growing like (log q)^2 (tanh's C(0.3; 1e100) took 2 s, each point).  References:
    Williams' arcsine formula for erf and, for the normal cdf Phi(x) = (1 + erf(x/sqrt 2))/2 (limits 0, 1:
    the mean term matters), E[Phi(u) Phi(v)] = 1/4 + asin(c sqrt(q1 q2 / ((1 + q1)(1 + q2)))) / (2 pi)."""
    import numeric.gauss as gauss_module

    def refuse(*args, **kwargs):
        raise AssertionError("the 2-D rule was used")

    cs = (-0.999999, -0.5, 1e-8, 0.3, 0.999, 1 - 1e-12)
    erf_f64 = kernel_maps(sympy.erf(x), engine="float64")
    cdf_f64 = kernel_maps((1 + sympy.erf(x / sympy.sqrt(2))) / 2, engine="float64")
    tanh_f64 = kernel_maps("tanh", engine="float64")
    erf_exact = kernel_maps(sympy.erf(x), dps=30, engine="closed")
    with mpmath.workdps(40):
        a, b = mpmath.mpf(q1), mpmath.mpf(q2)
        cdf_q = lambda q: mpmath.mpf(1) / 4 + mpmath.asin(q / (1 + q)) / (2 * mpmath.pi)  # noqa: E731
        cdf_exact = [(mpmath.mpf(1) / 4 + mpmath.asin(mpmath.mpf(c) * mpmath.sqrt(a * b / ((1 + a) * (1 + b))))
                      / (2 * mpmath.pi)) / mpmath.sqrt(cdf_q(a) * cdf_q(b)) for c in cs]
    erf_f64.q_map(q1), cdf_f64.q_map(q1), tanh_f64.q_map(q1)   # (warm the caches the check below forbids nothing in)
    monkeypatch.setattr(gauss_module, "bivariate_gaussian_expectation_float64", refuse)
    for c, cdf_ref in zip(cs, cdf_exact):
        assert rel(erf_f64.c_map(c, q1, q2), erf_exact.c_map(c, q1, q2)) < 1e-13, c
        assert rel(cdf_f64.c_map(c, q1, q2), cdf_ref) < 1e-13, c
        tanh_f64.c_map(c, q1, q2)
    curve = erf_f64.c_map_curve(np.array(cs), q1, q2)
    assert all(rel(v, erf_exact.c_map(c, q1, q2)) < 1e-13 for v, c in zip(curve, cs))
    monkeypatch.undo()
    # where the correction terms are not negligible (c = -1 exactly, moderate q) the 2-D rule still runs
    assert rel(erf_f64.c_map(-1, q1, q2), erf_exact.c_map(-1, q1, q2)) < 1e-13
    assert rel(erf_f64.c_map(0.3, 1e4, 1e4), erf_exact.c_map(0.3, 1e4, 1e4)) < 1e-12
    assert kernel_maps("softsign", engine="float64")._saturation() is None      # 1 - 1/x: algebraic
    assert kernel_maps(sympy.sin(x), engine="float64")._saturation() is None
    assert kernel_maps("softplus", engine="float64")._saturation() is None


@pytest.mark.parametrize("q, n", [(1e250, 1), (1e300, 1), (1e300, 2)])
def test_q_map_derivative_of_a_saturating_phi_at_huge_q_does_not_retry(q, n, monkeypatch):
    """The He form E[phi^2 He_2n(z)] / (2q)^n cancels log10(sqrt q) digits (E|tanh^2 He_2| ~ 1, the value
    ~ 1/sqrt(q)): tanh's Q'(1e250) took 15 s, Q'(1e300) 130 s, retrying the quadrature at up to 178 digits.
    Subtracting the limit step L = L+^2 H(x) + L-^2 H(-x) from phi^2 changes nothing exactly (E[He_2n] =
    E[sign(z) He_2n(z)] = 0) and leaves an integrand that lives where |x| ~ 1: one pass at dps + 10 digits."""
    import numeric.gauss as gauss_module

    used = []
    real = gauss_module.gaussian_expectation

    def recording(*args, **kwargs):
        used.append(kwargs.get("dps"))
        return real(*args, **kwargs)

    monkeypatch.setattr(gauss_module, "gaussian_expectation", recording)
    value = kernel_maps("tanh", dps=15).q_map_derivative(q, n)
    assert abs(value / _tanh_q_derivative_reference(q, n) - 1) < 1e-13
    assert max(used) <= 15 + 10, used


@pytest.mark.parametrize("q", [1e20, 1e100])
def test_float64_q_map_derivative_of_a_saturating_phi_at_large_q(q):
    """The float64 He form cancelled the same log10(sqrt q) digits and refused ('cancels both ways') for
    tanh at q >= 1e20; with the limit step subtracted nothing cancels.  And (2q)^n overflowed: Q''(1e160)
    raised a bare OverflowError instead of the correctly rounded 0.0 (the value is -6e-401)."""
    f64 = kernel_maps("tanh", engine="float64")
    for n in (1, 2):
        assert f64.q_map_derivative(q, n) == pytest.approx(float(_tanh_q_derivative_reference(q, n)), rel=1e-12)
    assert f64.q_map_derivative(1e160, 2) == 0.0


def test_kernel_maps_of_an_expression_with_safe_primitives():
    """symact's safe primitives (the vocabulary of generated code) have no mpmath or NumPy translation:
    kernel_maps(NormalCdf(x)) raised a bare NameError from lambdify.  They are written out first.
    Reference: Phi(x) = (1 + erf(x/sqrt 2))/2, so Q(q) = 1/4 + asin(q/(1 + q))/(2 pi) and
    C(c; q, q) = (1/4 + asin(c q/(1 + q))/(2 pi)) / Q(q)."""
    from symact.primitives import NormalCdf, Sigmoid

    q, c = mpmath.mpf(2), mpmath.mpf("0.3")
    with mpmath.workdps(40):
        Q = mpmath.mpf(1) / 4 + mpmath.asin(q / (1 + q)) / (2 * mpmath.pi)
        C = (mpmath.mpf(1) / 4 + mpmath.asin(c * q / (1 + q)) / (2 * mpmath.pi)) / Q
    assert rel(kernel_maps(NormalCdf(x), dps=20, engine="mpmath").q_map(q), Q) < 1e-19
    f64 = kernel_maps(NormalCdf(x), engine="float64")
    assert rel(f64.c_map(0.3, 2.0, 2.0), C) < 1e-12
    sig = kernel_maps(Sigmoid(x), engine="float64")
    assert sig.q_map(1.0) == pytest.approx(kernel_maps(1 / (1 + sympy.exp(-x)), engine="float64").q_map(1.0), rel=1e-14)


@pytest.mark.parametrize("q1, q2", [(1e100, 1e100), (1e300, 1e40), (1e40, 1e40)])
def test_float64_c_slope_of_a_saturating_phi_at_huge_q_skips_the_2d_rule(q1, q2, monkeypatch):
    """Price: C' = sqrt(q1 q2) E[phi'(u) phi'(v)] / sqrt(Q1 Q2); phi' lives where |x| ~ 1, where the density
    is flat to ~1/q, so the value is the arcsine law's slope (2/pi) A^2 / sqrt(1 - c^2) up to a bounded
    ~1/q term.  The 2-D rule took 4 s for tanh's C'(0.3; 1e100).  References: Williams' formula for erf;
    for Phi(x) = (1 + erf(x/sqrt 2))/2, C' = k / (2 pi sqrt(1 - c^2 k^2)) / sqrt(Q1 Q2),
    k = sqrt(q1 q2 / ((1 + q1)(1 + q2))), Q = 1/4 + asin(q/(1 + q))/(2 pi)."""
    import numeric.gauss as gauss_module

    cs = (-0.999, -0.5, 0.0, 0.3, 0.999999)
    erf_f64 = kernel_maps(sympy.erf(x), engine="float64")
    cdf_f64 = kernel_maps((1 + sympy.erf(x / sympy.sqrt(2))) / 2, engine="float64")
    erf_exact = kernel_maps(sympy.erf(x), dps=30, engine="closed")
    with mpmath.workdps(40):
        a, b = mpmath.mpf(q1), mpmath.mpf(q2)
        k = mpmath.sqrt(a * b / ((1 + a) * (1 + b)))
        cdf_q = lambda q: mpmath.mpf(1) / 4 + mpmath.asin(q / (1 + q)) / (2 * mpmath.pi)  # noqa: E731
        cdf_exact = [k / (2 * mpmath.pi * mpmath.sqrt(1 - (mpmath.mpf(c) * k) ** 2)) / mpmath.sqrt(cdf_q(a) * cdf_q(b))
                     for c in cs]
    for m in (erf_f64, cdf_f64):
        m.q_map(q1), m.q_map(q2), m.c_map_derivative(0.5, 1, q1, q2)   # warm the caches (1-D rules)
    monkeypatch.setattr(gauss_module, "bivariate_gaussian_expectation_float64",
                        lambda *args, **kwargs: pytest.fail("the 2-D rule was used"))
    for c, cdf_ref in zip(cs, cdf_exact):
        assert rel(erf_f64.c_map_derivative(c, 1, q1, q2), erf_exact.c_map_derivative(c, 1, q1, q2)) < 1e-13, c
        assert rel(cdf_f64.c_map_derivative(c, 1, q1, q2), cdf_ref) < 1e-13, c


def test_kinks_of_a_nested_max_min_are_all_found():
    """Hard tanh written Max(-1, Min(1, x)): solve() has no algorithm for -1 - Min(1, x) = 0, and the kink at
    -1 was dropped (only 1 was found).  The float64 2-D rule at q1 = 1e100, q2 = 1 then missed it and raised
    'did not converge' after 8 s.  Reference: at q1 = 1e100 phi(u) is sign(u) to 1e-50, so
    C = E[h(v) erf(c v / (s sqrt 2))] / sqrt(Q(1)) with v ~ N(0, 1), s = sqrt(1 - c^2): 1-D mpmath quadrature."""
    from analysis.kernel import _activation_parts

    hard_tanh = sympy.Max(-1, sympy.Min(1, x))
    assert _activation_parts(hard_tanh).kinks == (-1, 1)
    # solve() answers 3 - Max(-2 x, x) = 0 with [3] alone: the kink at -3/2 was silently lost
    assert _activation_parts(sympy.Min(3, sympy.Max(-2 * x, x))).kinks == (sympy.Rational(-3, 2), 0, 3)
    with mpmath.workdps(30):
        c = mpmath.mpf("0.3")
        s = mpmath.sqrt(1 - c * c)
        h = lambda v: max(-1, min(1, v))  # noqa: E731
        pdf = lambda v: mpmath.exp(-v * v / 2) / mpmath.sqrt(2 * mpmath.pi)  # noqa: E731
        pts = [-mpmath.inf, -1, 0, 1, mpmath.inf]
        k = mpmath.quad(lambda v: h(v) * mpmath.erf(c * v / (s * mpmath.sqrt(2))) * pdf(v), pts)
        ref = k / mpmath.sqrt(mpmath.quad(lambda v: h(v) ** 2 * pdf(v), pts))
    fast = kernel_maps(hard_tanh, engine="float64")
    assert rel(fast.c_map(0.3, q1=1e100, q2=1.0), ref) < 1e-12


def test_float64_c_map_curve_at_c_0_is_the_product_of_means(monkeypatch):
    """c = 0 (u, v independent): c_map takes E[phi(u)] E[phi(v)]; c_map_curve sent it to the 2-D rule, which
    took 26 s for hard tanh at q = 1e100 (panels graded towards x = 0 in both variables; the arcsine shortcut
    cannot hold at c = 0, where the kernel it is relative to vanishes).  Reference: C(0) = 0 for an odd phi
    (exactly, and c_map agrees), and at q1 != q2 for a non-odd phi the C map's own c = 0 value."""
    from numeric import gauss

    hard_tanh = kernel_maps(sympy.Min(1, sympy.Max(-1, x)), engine="float64")
    sig = kernel_maps(act("sigmoid"), engine="float64")

    def no_2d(*args, **kwargs):
        raise AssertionError("the 2-D rule was used at c = 0")
    monkeypatch.setattr(gauss, "bivariate_gaussian_expectation_float64", no_2d)
    curve = hard_tanh.c_map_curve(np.array([0.0, 0.5]), q1=1e100, q2=1e100)
    assert abs(curve[0]) < 1e-30 and rel(curve[1], 2 / mpmath.pi * mpmath.asin(0.5)) < 1e-12
    assert sig.c_map_curve(np.array([0.0]), q1=2.0, q2=0.5)[0] == sig.c_map(0.0, q1=2.0, q2=0.5)
    monkeypatch.undo()
    # the product of means is the 2-D rule's own value at c = 0
    assert rel(sig.c_map(0.0, q1=2.0, q2=0.5),
               gauss.bivariate_gaussian_expectation_float64(sig._f.np(0), sig._f.np(0), 0.0, q1=2.0, q2=0.5)
               / math.sqrt(sig.q_map(2.0) * sig.q_map(0.5))) < 1e-12


def _localised_c_slope(c, q):
    """C'(c; q, q) of x exp(-x^2) from its closed form: E[u v exp(-u^2 - v^2)] = c q / det^(3/2),
    det = (1 + 2q)^2 - 4 c^2 q^2 (Gaussian integral), Q(q) = q / (1 + 4q)^(3/2), so
    C = c (1 + 4q)^(3/2) / det^(3/2) and C' = (1 + 4q)^(3/2) (det + 12 c^2 q^2) / det^(5/2)."""
    with mpmath.workdps(60):
        c, q = mpmath.mpf(c), mpmath.mpf(q)
        det = (1 + 2 * q) ** 2 - 4 * c * c * q * q
        return (1 + 4 * q) ** mpmath.mpf(1.5) * (det + 12 * c * c * q * q) / det ** mpmath.mpf(2.5)


def test_float64_c_slope_of_a_localised_phi_at_large_q_is_refused_not_garbage():
    """phi = x exp(-x^2): phi' lives where |x| ~ 1, so at large q the density is flat there and C'(c) ~ q^-3/2
    while C'(1) ~ q.  The 2-D rule converges to 1e-13 of sqrt(E phi'(u)^2 E phi'(v)^2) ~ C'(1) and returned
    noise: 5e33 for C'(0.3; 1e100) (true 1.5e-150), -4e16 at c = 0; at q = 1e12, -4.7e-11 for C'(0.3) (true
    1.5e-18).  Now it raises where fewer than two digits are certain (at c = 0, q = 1e12 the rule happened to
    keep 3: 1.0003e-18 against 1e-18), and agrees with the closed form where it resolves."""
    fast = kernel_maps(x * sympy.exp(-x**2), engine="float64")
    assert rel(fast.c_map_derivative(0.3, 1, 1.0, 1.0), _localised_c_slope(0.3, 1)) < 1e-12
    assert rel(fast.c_map_derivative(-0.5, 1, 100.0, 100.0), _localised_c_slope(-0.5, 100)) < 1e-11
    for c in (0.3, 0.0):
        with pytest.raises(DivergentIntegralError, match="not resolved.*engine='mpmath'"):
            fast.c_map_derivative(c, 1, 1e12, 1e12)
    # an exact zero stays exact: C'(0) = q E[phi'(u)]^2 / Q = 0 for an even phi (phi' odd)
    assert kernel_maps(sympy.exp(-x**2), engine="float64").c_map_derivative(0.0, 1, 1e12, 1e12) == 0.0


def _localised_c(c, q):
    """C(c; q, q) of x exp(-x^2) from the same closed form: c (1 + 4q)^(3/2) / det^(3/2)."""
    with mpmath.workdps(60):
        c, q = mpmath.mpf(c), mpmath.mpf(q)
        det = (1 + 2 * q) ** 2 - 4 * c * c * q * q
        return c * (1 + 4 * q) ** mpmath.mpf(1.5) / det ** mpmath.mpf(1.5)


def test_mpmath_mehler_series_of_a_localised_phi_at_huge_q_has_its_digits():
    """x exp(-x^2) at q = 1e100: its Hermite coefficients are ~1e-50 of E|phi(sqrt(q) z)|, below the rule's
    absolute accuracy, and Mehler's series returned C(0.3) = 5.29e-148 (true 3.456e-151) and C'(0.3) =
    7.14e-148 (true 1.494e-150), C'(0) off by 57%, at 20 digits.  Now the coefficients' error bound is
    checked and they are recomputed with the missing digits.  Reference: the closed form (checked against
    the engine at q = 1 here)."""
    km = kernel_maps(x * sympy.exp(-x**2), dps=20, engine="mpmath")
    for q, c in ((1, 0.3), (1e100, 0.3), (1e100, -0.5)):
        assert rel(km.c_map(c, q, q), _localised_c(c, q), floor=0) < 1e-19, (c, q)
        assert rel(km.c_map_derivative(c, 1, q, q), _localised_c_slope(c, q), floor=0) < 1e-19, (c, q)
    assert rel(km.c_map_derivative(0.0, 1, 1e100, 1e100), _localised_c_slope(0, 1e100), floor=0) < 1e-19


def test_mpmath_mehler_series_sums_until_its_terms_are_negligible_relative_to_the_sum():
    """Mehler's series stopped at |c|^N < 10^-(dps + 12), a tail bound |c|^N Q(q) that says nothing when C is far
    below 1, and wrong in practice where the a_k^2 peak at large k: cos(sqrt(q) z) has a_k^2 ~ Poisson weights
    q^k / k! (even k), so at q = 150, c = -0.5 the terms a_k^2 |c|^k peak at k ~ 75 and N = 99 cut them short:
    C = 2.584e-33 for 2.679e-33 (3.5% off), C' 7e-5 off, at 15 digits.  Reference: the closed form (the
    characteristic function), C = (e^(-q(1-c)) + e^(-q(1+c))) / (1 + e^(-2q))."""
    km = kernel_maps(sympy.cos(x), dps=15, engine="mpmath")     # forced past the closed form
    q = 150
    with mpmath.workdps(40):
        c = mpmath.mpf(-0.5)
        lo, hi = mpmath.exp(-q * (1 - c)), mpmath.exp(-q * (1 + c))
        ref, slope = (lo + hi) / (1 + mpmath.exp(-2 * q)), q * (lo - hi) / (1 + mpmath.exp(-2 * q))
    assert rel(km.c_map(-0.5, q, q), ref, floor=0) < 1e-14
    assert rel(km.c_map_derivative(-0.5, 1, q, q), slope, floor=0) < 1e-14


def test_float64_c_map_of_a_localised_phi_at_huge_q_keeps_its_absolute_accuracy():
    """x exp(-x^2) at q = 1e100: C(0.3) = 3.5e-151 (closed form); the float64 2-D rule returns -5.0e-67, within its
    documented absolute accuracy (~1e-16 in C units) and without a relative digit (KernelMaps says so and points
    to the mpmath engine).  Where C is larger than that it agrees with the closed form relative to C; an odd phi's
    C(0) is exactly 0."""
    fast = kernel_maps(x * sympy.exp(-x**2), engine="float64")
    for c, q in ((0.3, 1e6), (-0.5, 1e6), (0.3, 1e12)):
        got = fast.c_map(c, q, q)
        assert rel(got, _localised_c(c, q), floor=0) < (1e-9 if q < 1e8 else 1e-2), (c, q)
    assert diff(fast.c_map(0.3, 1e20, 1e20), _localised_c(0.3, 1e20)) < 1e-15
    curve = fast.c_map_curve(np.array([0.5, -0.5]), 1e20, 1e20)     # (C = +-7.7e-31)
    assert all(diff(v, _localised_c(c, 1e20)) < 1e-15 for v, c in zip(curve, (0.5, -0.5)))
    assert fast.c_map(0.0, 1e100, 1e100) == 0.0     # odd phi: E[phi] = 0 exactly, not rounding noise


def test_float64_c_map_of_a_shaped_phi_next_to_its_zero_is_returned_not_refused():
    """A DKS-shaped tanh has C(0) = 0 (not odd: beta != 0), and its C map iterated from c = 0 meets C ~ 1e-31,
    where the float64 rule keeps ~1e-16 absolute.  A refusal there (fewer than two relative digits) stopped
    `symact verify`'s kernel check of a shaped network; the value is held to 1e-15 absolute against the mpmath
    engine (Mehler's series)."""
    import analysis

    import graphs

    layer = analysis.shape("tanh", graphs.mlp(3), zeta=1.5).layers[0].activation
    fast, exact = kernel_maps(layer, engine="float64"), kernel_maps(layer, engine="mpmath", dps=20)
    for c in (3.5e-31, -1e-20, 1e-12):
        assert diff(fast.c_map(c), exact.c_map(c)) < 1e-15, c


def test_float64_c_map_of_an_odd_phi_at_tiny_c_has_its_digits():
    """Near c = 0 an odd phi's C is tiny and the 2-D rule keeps ~1e-17 absolute: erf's C(1e-20) came out -5.2e-35
    (true 9.1e-21), tanh's C(0) 6e-35 (exactly 0; a C map iterated from c = 0 then fed that to the rule), and
    C(-2.2e-16), the 0 of np.arange(-1, 1.01, 0.1), 7% off.  Now E[phi] = 0 exactly for an odd phi, and at
    |c| <= 1e-6 the first Mehler term c a_1(q1) a_1(q2) is used where the rest (<= |c|^3 sqrt(Q Q)) is below
    1e-13 of it.  Reference: Williams' closed form for erf."""
    exact = kernel_maps(sympy.erf(x), dps=20, engine="closed")
    fast = kernel_maps(sympy.erf(x), engine="float64")
    for c, q1, q2 in ((1e-20, 1.0, 1.0), (-2.2e-16, 2.0, 0.5), (1e-9, 3.0, 3.0)):
        assert rel(fast.c_map(c, q1, q2), exact.c_map(c, q1, q2), floor=0) < 1e-13, c
    curve = fast.c_map_curve(np.array([1e-20, -2.2e-16, 0.0]), 2.0, 2.0)
    assert all(rel(v, exact.c_map(c, 2, 2), floor=0) < 1e-13 for v, c in zip(curve[:2], (1e-20, -2.2e-16)))
    assert curve[2] == 0.0 and kernel_maps(act("tanh"), engine="float64").c_map(0.0) == 0.0
    # a jump of phi enters a_1 as J p(b): sign(x) at c = 1e-9 is (2/pi) asin(c)
    assert rel(kernel_maps(sympy.sign(x), engine="float64").c_map(1e-9), 2 / mpmath.pi * mpmath.asin(1e-9)) < 1e-13


@pytest.mark.parametrize("bad", [math.nan, math.inf, 10.5, True])
def test_non_integer_digits_and_derivative_orders_are_domain_errors(bad):
    # nan and inf reached int() as a bare ValueError / OverflowError; True passed as the order 1
    if bad is not True:
        with pytest.raises(DomainError, match=r"dps=.*the number of digits must be an integer of at least 5"):
            kernel_maps(symact.activation("tanh"), engine="mpmath", dps=bad)
    maps = kernel_maps(symact.activation("tanh"), engine="float64")
    for derivative in (maps.c_map_derivative, maps.q_map_derivative):
        with pytest.raises(DomainError, match=r"n=.*derivative order must be a non-negative integer"):
            derivative(0.5, n=bad)
    # an integer-valued float is still an order: C''(0.5) = C'(0.5)'s slope (central difference)
    h = 1e-5
    slope = (maps.c_map_derivative(0.5 + h, n=1) - maps.c_map_derivative(0.5 - h, n=1)) / (2 * h)
    assert maps.c_map_derivative(0.5, n=2.0) == pytest.approx(slope, rel=1e-6)


@pytest.mark.parametrize("engine", ["auto", "mpmath", "closed"])
def test_digits_below_min_dps_are_refused_and_any_number_above_is_taken(engine):
    """kernel_maps refuses fewer than 5 digits (and non-integers) with the range, and takes any number above:
    "to any requested precision" (only the command line caps --dps, at MAX_DPS).  ReLU's Q(1) is exactly 1/2 and
    its C(0) is 1/pi, checked at 150 digits against mpmath's pi at 170."""
    phi = "relu" if engine == "closed" else "tanh"
    for bad in (4, 0, -30, 5.5):
        with pytest.raises(DomainError, match=rf"dps={bad}: the number of digits must be an integer of at least 5"):
            kernel_maps(symact.activation(phi), engine=engine, dps=bad)
    assert kernel_maps(symact.activation(phi), engine=engine, dps=100000).dps == 100000  # building computes nothing
    assert kernel_maps(symact.activation(phi), engine=engine, dps=np.int64(5)).dps == 5
    maps = kernel_maps(symact.activation("relu"), engine="auto" if engine == "auto" else "mpmath", dps=150)
    with mpmath.workdps(170):
        assert abs(mpmath.mpf(maps.q_map(1)) * 2 - 1) < mpmath.mpf(10) ** -148
        if engine == "auto":
            assert abs(mpmath.mpf(maps.c_map(0)) * mpmath.pi - 1) < mpmath.mpf(10) ** -148


def test_mpmath_maps_of_a_chirp_have_their_digits():
    """phi = sin(4 x^2) at q = 4 is sin(16 z^2) in standard units, 40 periods per unit of z at z = 8.  Q(4) was
    refused ('did not converge'); once the 1-D rule bisected it, Mehler's C(0.5) came out 4e-10 off (relative) at 15
    digits, from Hermite coefficients of a rule that did not resolve phi (its own E[phi^2] was off; it now
    doubles its nodes until that agrees with Q).  References, for (u, v) ~ N(0, q [[1, c], [c, 1]]):
    E[exp(i t u^2)] = (1 - 2itq)^(-1/2), so Q(q) = (1 - Re (1 - 16iq)^(-1/2)) / 2 and
    Q'(q) = -Re(4i (1 - 16iq)^(-3/2)); E[sin(4u^2) sin(4v^2)] = (Re E[exp(4i(u^2 - v^2))] - Re E[exp(4i(u^2 + v^2))]) / 2
    with E[exp(i w^T A w)] = prod (1 - 2i lambda)^(-1/2) over the eigenvalues of L^T A L, L L^T the covariance."""
    m = kernel_maps(sympy.sin(4 * x**2), dps=15, engine="mpmath")
    q = mpmath.mpf(4)
    with mpmath.workdps(40):
        exact_q = (1 - mpmath.re((1 - 16j * q) ** (-mpmath.mpf(1) / 2))) / 2
        exact_slope = -mpmath.re(4j * (1 - 16j * q) ** (-mpmath.mpf(3) / 2))
        c = mpmath.mpf(1) / 2
        lower = mpmath.cholesky(q * mpmath.matrix([[1, c], [c, 1]]))

        def expected_phase(sign):
            out = mpmath.mpc(1)
            for ev in mpmath.eig(lower.T * mpmath.matrix([[4, 0], [0, 4 * sign]]) * lower)[0]:
                out *= (1 - 2j * mpmath.re(ev)) ** (-mpmath.mpf(1) / 2)
            return mpmath.re(out)
        exact_c = (expected_phase(-1) - expected_phase(1)) / 2 / exact_q
    assert rel(m.q_map(4), exact_q) < 1e-14
    assert rel(m.q_map_derivative(4), exact_slope) < 1e-14
    assert rel(m.c_map(0.5, 4, 4), exact_c) < 1e-14


@pytest.mark.parametrize("a", [sympy.Rational(1, 2), sympy.Rational(3, 10)])
def test_mpmath_c_map_of_a_cusp_has_its_digits(a):
    """|x|**a is finite at 0 but its slope is not: the Hermite rule's panels next to 0 were even, its own E[phi^2]
    2e-8 off, and Mehler's C(0.5) had 6 of 30 digits (|x|**(3/10): 0.9404723 for 0.9404716).  The panels are now
    graded towards such cusps, as towards singular points.  Reference: for standard Gaussians with correlation
    c, E[|u|^a |v|^a] = 2^a Gamma((a + 1)/2)^2 / pi * 2F1(-a/2, -a/2; 1/2; c^2), and C does not depend on q
    (|x|**a is homogeneous)."""
    m = kernel_maps(sympy.Abs(x) ** a, dps=30, engine="mpmath")
    with mpmath.workdps(50):
        for c in ("0.5", "-0.3"):
            assert rel(m.c_map(mpmath.mpf(c), 2, 2), power_kernel(a, c) / power_kernel(a, 1)) < 1e-28, c


def test_mpmath_c_map_of_a_one_sided_cusp_has_its_digits():
    """sqrt(Max(0, x)): its slope's base Max(0, x) vanishes on a half-line, so the cusp at 0 was not found
    (only isolated zeros were) and the Hermite panels were not graded there: Mehler's C(0.5) had 7 of 30
    digits (0.6719271995 for 0.6719271157), silently.  Reference: sqrt(u+) = (|u|^(1/2) + sign(u)|u|^(1/2))/2,
    so E[sqrt(u+) sqrt(v+)] is a quarter of the sum of the even and odd hypergeometric kernels (the cross
    terms vanish by (u, v) -> (-u, -v)), and Q(1) = E[u+] = 1/sqrt(2 pi)."""
    m = kernel_maps(symact.activation("sqrt(Max(0, x))"), dps=30, engine="mpmath")
    with mpmath.workdps(50):
        a = mpmath.mpf(1) / 2
        for c in (mpmath.mpf("0.5"), mpmath.mpf("-0.3")):
            kernel = (power_kernel(a, c) + power_kernel(a, c, odd=True)) / 4
            assert rel(m.c_map(c), kernel * mpmath.sqrt(2 * mpmath.pi)) < 1e-28, c


@functools.lru_cache(maxsize=None)
def _removable_reference(formula):
    """(Q(1), C(0.3) at q = 1) of phi with phi(0) its limit, by 1-D quadratures of its own: Q = E[phi^2] and
    Mehler's C(c) = sum_n E[phi He_n]^2 c^n / (n! Q), 30 terms (the neglected ones are below 1e-30)."""
    phi = {"x*coth(x)": lambda t: t / mpmath.tanh(t) if t else mpmath.mpf(1),
           "x/(exp(x) - 1)": lambda t: t / mpmath.expm1(t) if t else mpmath.mpf(1),
           "x*csch(x)": lambda t: t / mpmath.sinh(t) if t else mpmath.mpf(1)}[formula]
    line = [-mpmath.inf, 0, mpmath.inf]
    with mpmath.workdps(30):
        q = mpmath.quad(lambda z: phi(z) ** 2 * mpmath.npdf(z), line)
        c = mpmath.mpf("0.3")
        # He_n(z) = 2^(-n/2) H_n(z/sqrt(2)), mpmath's physicists' Hermite polynomial
        series = sum(mpmath.quad(lambda z: phi(z) * mpmath.hermite(n, z / mpmath.sqrt(2)) / mpmath.sqrt(2) ** n
                                 * mpmath.npdf(z), line) ** 2 * c**n
                     / mpmath.factorial(n) for n in range(30))
        return q, series / q


@pytest.mark.parametrize("engine", ["mpmath", "float64"])
@pytest.mark.parametrize("formula", ["x*coth(x)", "x/(exp(x) - 1)", "x*csch(x)"])
def test_a_removable_singularity_on_a_quadrature_node_is_taken_as_its_limit(formula, engine):
    """phi is 0/0 at x = 0, a node of the Hermite and Gauss panels: every mpmath C map of these raised a bare
    ZeroDivisionError (coth and csch are printed for mpmath as quotients of exponentials, 0/0 there too).  Now
    the limit is taken there.  Reference: Q(1) and Mehler's series for C(0.3) from 1-D quadratures of phi with
    its limit at 0 written out."""
    q, c = _removable_reference(formula)
    maps = kernel_maps(symact.activation(formula), dps=20, engine=engine)
    tolerance = 1e-18 if engine == "mpmath" else 1e-13
    assert rel(maps.q_map(1), q) < tolerance
    # c exactly 3/10: an mpf made at the default 15 digits is 0.3 - 1.1e-17, which moves C by C'(c) times that
    assert rel(maps.c_map(sympy.Rational(3, 10), 1, 1), c) < tolerance


def test_a_function_of_an_exponential_is_not_probed_where_gmp_aborts():
    """The limits of phi were probed at +-2^40: exp(-exp(2^40)) needs an exponent of 10^12 bits, and GMP aborted the
    whole process ("gmp: overflow in mpz type", no exception) in q_map_derivative of the log-log activation
    1 - exp(-exp(x)), and would have in the symmetry check of any such phi.  Run in a child process, so that an
    abort fails this test instead of the test run.  Reference: Q'(1) = E[phi(z) phi'(z) z] by mpmath.quad on
    [-40, 40] (the Gaussian beyond is below 1e-340)."""
    import subprocess
    import sys

    script = ("import symact\nfrom analysis.kernel import kernel_maps\n"
              "for engine in ('mpmath', 'float64'):\n"
              "    m = kernel_maps(symact.activation('1 - exp(-exp(x))'), dps=20, engine=engine)\n"
              "    print(repr(float(m.q_map_derivative(1))), m._derivative_is_even(0), m._derivative_is_even(0, odd=True))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with mpmath.workdps(30):
        want = mpmath.quad(lambda t: (1 - mpmath.exp(-mpmath.exp(t))) * mpmath.exp(t - mpmath.exp(t)) * t
                           * mpmath.npdf(t), [-40, -5, 0, 5, 40])
    lines = done.stdout.split("\n")
    for line, tolerance in zip(lines, (1e-15, 1e-13)):
        value, even, odd = line.split()
        assert rel(float(value), want) < tolerance and even == odd == "False", line


def test_mpmath_c_map_derivatives_at_0_that_vanish_by_symmetry_are_0():
    """An even phi has a_1 = 0 (phi' odd), so C'(0) = 0 exactly; Mehler's one-term sum at c = 0 was checked for
    digits relative to itself, refused ("it sums to 0.0"), and `symact maps` refused every even activation
    without a closed form (log(cosh(x))).  References: symmetry, and for the term that does not vanish, Price's
    formula C''(0) = (q E[phi''(sqrt(q) z)])^2 / Q(q) by a direct 1-D quadrature; for odd tanh, C''(0) = 0."""
    even = kernel_maps(sympy.log(sympy.cosh(x)), dps=20, engine="mpmath")
    assert even.c_map_derivative(0, 1, 2, 2) == 0
    with mpmath.workdps(40):
        line = [-mpmath.inf, 0, mpmath.inf]
        second = mpmath.quad(lambda z: mpmath.sech(mpmath.sqrt(2) * z) ** 2 * mpmath.npdf(z), line)
        power = mpmath.quad(lambda z: mpmath.log(mpmath.cosh(mpmath.sqrt(2) * z)) ** 2 * mpmath.npdf(z), line)
        want = (2 * second) ** 2 / power
    assert rel(even.c_map_derivative(0, 2, 2, 2), want) < 1e-18
    odd = kernel_maps(sympy.tanh(x), dps=20, engine="mpmath")
    assert odd.c_map_derivative(0, 2, 2, 2) == 0 and odd.c_map_derivative(0, 1, 2, 2) > 0


@pytest.mark.parametrize("engine", ["float64", "mpmath"])
@pytest.mark.parametrize("name", ["tanh", "softplus", "relu", "gelu"])
def test_prepare_integrates_nothing_and_changes_no_value(name, engine, monkeypatch):
    """prepare() does the activation's one-off analysis only: with every Gaussian integrator made to
    raise it still succeeds, and the values computed afterwards are those of maps never prepared."""
    import numeric.gauss as gauss_module

    def no_quadrature(*args, **kwargs):
        raise AssertionError("prepare() integrated")

    act = symact.activation(name)
    prepared = kernel_maps(act, dps=20, engine=engine)
    with monkeypatch.context() as patch:
        for integrator in ("gaussian_expectation", "gaussian_expectation_float64",
                           "bivariate_gaussian_expectation", "bivariate_gaussian_expectation_float64",
                           "hermite_coefficients"):
            patch.setattr(gauss_module, integrator, no_quadrature)
        assert prepared.prepare() is prepared
    plain = kernel_maps(act, dps=20, engine=engine)
    values = [(m.q_map(1.5), m.q_map_derivative(1), m.c_map(0), m.c_map(0.5), m.c_map_slope_at_1)
              for m in (prepared, plain)]
    assert values[0] == values[1]


def test_composed_maps_prepare_both_and_keep_their_values():
    inner, outer = symact.activation("tanh"), symact.activation("softplus")
    prepared = kernel_maps(outer, engine="float64").composed(kernel_maps(inner, engine="float64"))
    assert prepared.prepare() is prepared
    plain = kernel_maps(outer, engine="float64").composed(kernel_maps(inner, engine="float64"))
    assert prepared.c_map(0.5) == plain.c_map(0.5) and prepared.q_map_derivative(1) == plain.q_map_derivative(1)


def test_prepare_refuses_a_negative_or_fractional_derivative_count():
    maps = kernel_maps(symact.activation("tanh"), engine="float64")
    for bad in (-1, 1.5, "2"):
        with pytest.raises(DomainError, match="max_derivative"):
            maps.prepare(bad)


@pytest.mark.parametrize("q", [4.0, 8.0, 16.0])
def test_float64_maps_of_an_exponential_at_large_q(q):
    """phi = exp(x): Q(q) = exp(2q), C(c; q, q) = exp(q (c - 1)), Q'(q) = 2 exp(2q).  The float64 engine
    refused Q at q = 8 ("does not decay by |z| = 12") and its C(0.5; 4) was 1.3e-12 off."""
    m = kernel_maps(sympy.exp(x), engine="float64")
    assert m.q_map(q) == pytest.approx(math.exp(2 * q), rel=1e-13)
    assert m.q_map_derivative(q) == pytest.approx(2 * math.exp(2 * q), rel=1e-12)
    for c in (-0.5, 0.5, 0.95):
        assert m.c_map(c, q, q) == pytest.approx(math.exp(q * (c - 1)), rel=1e-13), c


@pytest.mark.parametrize("formula", ["sqrt(Abs(x))", "Abs(x)**(3/10)", "sign(x)*sqrt(Abs(x))", "sqrt(Max(0, x))",
                                     "sqrt(Abs(x - 1))"])
def test_float64_c_map_of_a_cusp(formula):
    """The float64 engine refused the C map of every cusp (its 2-D rule did not converge at the infinite slope)
    and the Q map of |x|^0.3; sqrt(Max(0, x))'s cusp was not found at all (its slope's base vanishes on a
    half-line).  Reference: the mpmath engine (Mehler's series, panels graded at the cusp) at 20 digits."""
    act = symact.activation(formula)
    fast, exact = kernel_maps(act, engine="float64"), kernel_maps(act, dps=20, engine="mpmath")
    assert fast.q_map(2) == pytest.approx(float(exact.q_map(2)), rel=1e-13)
    for c in (-0.5, 0.3, 0.7):
        assert fast.c_map(c) == pytest.approx(float(exact.c_map(c)), rel=1e-13, abs=1e-15), c
    assert np.allclose(fast.c_map_curve([-0.5, 0.3, 0.7]), [fast.c_map(c) for c in (-0.5, 0.3, 0.7)], rtol=1e-15, atol=0)


@pytest.mark.parametrize("engine", ["closed", "mpmath", "float64"])
def test_the_zero_activation_has_no_c_map_in_any_engine(engine):
    """0*x has Q = 0, and C = E[phi(u) phi(v)]/sqrt(Q Q) is 0/0.  The mpmath and float64 engines said so; the
    closed engine gave C'(1) = 0 and, for C(c), "+inf ... the quadrature is not accurate here".  Every
    quantity that divides by Q now gives the one clear refusal."""
    maps = kernel_maps("0*x", engine=engine)
    for quantity in (lambda: maps.c_map(0.5), lambda: maps.c_map_slope_at_1, lambda: maps.c_map_derivative(0.3, 2),
                     lambda: maps.slope_at_1(), lambda: maps.value_at_0(), lambda: maps.curvature_at_1()):
        with pytest.raises(DomainError, match=r"Q\(1\) = 0.*C map.*undefined"):
            quantity()


def test_c_map_of_an_odd_activation_at_tiny_c_is_its_slope_times_c():
    """C(c) at |c| < 1e-308 crashed (float(c) underflowed to 0 into math.log: a bare ValueError, `symact
    maps tanh --c 1e-400` a traceback), and from |c| ~ 1e-230 tanh was refused: the rounding noise of its
    even Hermite coefficients (exactly 0 for an odd phi) swamped the O(c) sum.  For an odd phi
    C(c) = C'(0) c + O(c^3); reference C'(0) = E[sech^2 z]^2 / E[tanh^2 z] by mpmath quadrature."""
    with mpmath.workdps(40):
        gauss_pdf = lambda z: mpmath.exp(-z * z / 2) / mpmath.sqrt(2 * mpmath.pi)  # noqa: E731
        e_slope = mpmath.quad(lambda z: mpmath.sech(z) ** 2 * gauss_pdf(z), [-mpmath.inf, 0, mpmath.inf])
        e_square = mpmath.quad(lambda z: mpmath.tanh(z) ** 2 * gauss_pdf(z), [-mpmath.inf, 0, mpmath.inf])
        slope = e_slope ** 2 / e_square
    maps = kernel_maps(sympy.tanh(x), dps=20, engine="mpmath")
    for c in (mpmath.mpf("1e-400"), mpmath.mpf("-3e-250"), mpmath.mpf("1e-200")):
        value = maps.c_map(c)
        assert abs(value / (slope * c) - 1) < mpmath.mpf(10) ** -18
        assert abs(maps.c_map_derivative(c) / slope - 1) < mpmath.mpf(10) ** -18


def test_c_and_q_given_as_fraction_decimal_or_numpy_scalar_are_read_exactly():
    """Fraction(1, 2), Decimal("0.5") and np.float32(0.5) reached mpmath.mpf and raised a bare TypeError."""
    import decimal
    import fractions

    maps = kernel_maps(sympy.tanh(x), dps=20, engine="mpmath")
    half = maps.c_map(0.5)
    for c in (fractions.Fraction(1, 2), decimal.Decimal("0.5"), np.float32(0.5), torch_scalar(0.5)):
        assert maps.c_map(c) == half and maps.c_map_derivative(c) == maps.c_map_derivative(0.5)
    assert maps.q_map(fractions.Fraction(1, 2)) == maps.q_map(0.5) == maps.q_map(decimal.Decimal("0.5"))


def torch_scalar(value):
    torch = pytest.importorskip("torch")
    return torch.tensor(value, dtype=torch.float64)


@pytest.mark.parametrize("formula, phi", [
    ("tanh(1000*(x - 1/20))", lambda t: mpmath.tanh(1000 * (t - mpmath.mpf(1) / 20))),
    ("exp(-40000*(x - 1/20)**2)", lambda t: mpmath.exp(-40000 * (t - mpmath.mpf(1) / 20) ** 2)),
])
@pytest.mark.parametrize("engine", ["float64", "mpmath"])
def test_a_narrow_feature_off_centre_is_not_taken_for_a_symmetry(formula, phi, engine):
    """Oddness was decided at a few sample points, the smallest 0.144: tanh(1000 (x - 1/20)) passed as odd and
    a bump at 1/20 (0 at every sample) as odd too, so both engines returned C(0) = 0 and C(-1) = -1 (for a
    positive phi!).  Reference at q = 1: C(0) = E[phi]^2 / Q and C(-1) = E[phi(z) phi(-z)] / Q by mpmath.quad,
    split at the feature."""
    with mpmath.workdps(30):
        density = lambda t: mpmath.exp(-t * t / 2) / mpmath.sqrt(2 * mpmath.pi)  # noqa: E731
        cut = [-mpmath.inf, -mpmath.mpf(1) / 20 - mpmath.mpf(1) / 100, -mpmath.mpf(1) / 20,
               -mpmath.mpf(1) / 20 + mpmath.mpf(1) / 100, 0, mpmath.mpf(1) / 20 - mpmath.mpf(1) / 100,
               mpmath.mpf(1) / 20, mpmath.mpf(1) / 20 + mpmath.mpf(1) / 100, mpmath.inf]
        mean = mpmath.quad(lambda t: phi(t) * density(t), cut)
        second = mpmath.quad(lambda t: phi(t) ** 2 * density(t), cut)
        mirrored = mpmath.quad(lambda t: phi(t) * phi(-t) * density(t), cut)
        c0, c_minus_1 = mean ** 2 / second, mirrored / second
    maps = kernel_maps(formula, engine=engine, dps=15)
    assert float(maps.c_map(0)) == pytest.approx(float(c0), rel=1e-9)
    assert float(maps.c_map(-1)) == pytest.approx(float(c_minus_1), rel=1e-9, abs=1e-13)


def test_hermite_coefficients_check_n_even_once_a_list_is_cached_and_q_must_be_one_number():
    """After a C map had cached a list, hermite_coefficients(-1) returned all but its last entry, (0) [] and
    (2.5) a bare TypeError; q_map(np.array([1, 2])) raised numpy's "truth value of an array is ambiguous" and
    c_map(np.array(0.5)) (a 0-d array) a bare TypeError.  Q(q) = sum a_k^2: three coefficients of tanh hold
    most of Q(1)."""
    maps = kernel_maps(sympy.tanh(x), engine="mpmath", dps=15)
    maps.c_map(0.5)
    for n in (-1, 0, 2.5, True):
        with pytest.raises(DomainError, match="whole number >= 1"):
            maps.hermite_coefficients(n)
    a = maps.hermite_coefficients(3)
    assert len(a) == 3 and 0.9 * maps.q_map(1) < sum(v * v for v in a) <= maps.q_map(1)
    with pytest.raises(DomainError, match="not one number"):
        maps.q_map(np.array([1.0, 2.0]))
    assert maps.c_map(np.array(0.5)) == maps.c_map(0.5)


def test_floor_none_and_a_non_map_are_refused_by_name():
    """floor(x) raised SymPy's bare PrintMethodNotImplementedError (float64) or ran 30-40 s before calling Q(1)
    divergent (mpmath; Q(1) = sum k^2 P(k <= z < k + 1) is finite); kernel_maps(None) and maps.composed(None) or
    composed("relu") raised bare AttributeErrors."""
    for formula in ("floor(x)", "x + frac(x)", "ceiling(x/2)"):
        with pytest.raises(FormulaError, match="jumps at every integer"):
            kernel_maps(formula, engine="float64")
    with pytest.raises(FormulaError, match="got None"):
        kernel_maps(None)
    maps = kernel_maps(sympy.tanh(x), engine="float64")
    for other in (None, "relu"):
        with pytest.raises(FormulaError, match="composed\\(\\) takes kernel maps"):
            maps.composed(other)


def _shifted_kernel_reference(kind, a, c, q=1):
    """C(c; q, q) of a piece that starts at x = a, from independent 1-D integrals at 40 digits: E[g(v) | u] in closed
    form (v | u ~ N(c u, q s^2)), integrated against u's density past a, scaled by its value at the start (mpmath's
    quad tolerance is absolute, and these integrands are ~1e-40)."""
    with mpmath.workdps(40):
        a, c, q = mpmath.mpf(a), mpmath.mpf(c), mpmath.mpf(q)
        r, s = mpmath.sqrt(q), mpmath.sqrt((1 - c) * (1 + c))
        if kind == "step":      # H(x - a): E[H(v - a) | u] = Phi((c u - a) / (r s))
            f, cond = (lambda t: 1), (lambda t: mpmath.ncdf((c * t - a) / (r * s)))
        else:                   # relu(x - a): E[(v - a)+ | u] = m Phi(m / S) + S phi(m / S), m = c u - a, S = r s
            f = lambda t: t - a  # noqa: E731
            cond = lambda t: (c * t - a) * mpmath.ncdf((c * t - a) / (r * s)) + r * s * mpmath.npdf((c * t - a) / (r * s))  # noqa: E731
        # panels growing geometrically from the start (the integrand falls like exp(-30 t) there at c = -0.9)
        pts = [a / r + (2 ** k - 1) / mpmath.mpf(64) for k in range(0, 12)] + [mpmath.inf]

        def integral(h):
            scale = max(abs(h(p + mpmath.mpf(1) / 256)) for p in pts[:4])
            return mpmath.quad(lambda z: h(z) / scale, pts) * scale
        kernel = integral(lambda z: f(r * z) * cond(r * z) * mpmath.npdf(z))
        q_value = integral(lambda z: f(r * z) ** 2 * mpmath.npdf(z))
        return kernel / q_value


@pytest.mark.parametrize("kind, a, c", [("step", 11, 0.5), ("step", 11, 0.99), ("relu", 11, 0.5),
                                        ("step", 20, 0.5), ("relu", 20, 0.99), ("step", 3, -0.9)])
def test_float64_c_map_reaches_a_piece_that_starts_past_the_2d_rule_range(kind, a, c):
    """H(x - 11) is zero on all of the float64 2-D rule's [-10, 10]: its C(0.5) came out exactly 0 (1.6e-10), and
    H(x - 3) at c = -0.9 lives at z2 = 13 (C = 2.4e-40, also 0).  Both rules now reach past such break-points, and
    the convergence test is relative to E|phi(u) phi(v)| where the kernel is far below the Cauchy-Schwarz bound."""
    phi = sympy.Heaviside(x - a) if kind == "step" else sympy.Max(x - a, 0)
    got = kernel_maps(phi, engine="float64").c_map(c)
    assert rel(got, _shifted_kernel_reference(kind, a, c)) < 1e-10


@pytest.mark.parametrize("a, c", [(11, -0.9), (30, -0.9)])
def test_float64_c_map_raises_where_the_kernel_underflows(a, c):
    """H(x - 11) at c = -0.9: E[phi(u) phi(v)] = 1e-530 and C = 5e-503 are below float64's range; the rule returned
    0.0 silently.  It now raises, naming float64 underflow and the mpmath engine."""
    with pytest.raises(DomainError, match="underflows float64.*mpmath"):
        kernel_maps(sympy.Heaviside(x - a), engine="float64").c_map(c)


def test_float64_c_map_at_0_does_not_underflow_in_the_product_of_means():
    """C(0) = E[phi]^2 / Q: for H(x - 30) at q = 1, E[phi] = Q = 4.9e-198 and its square underflowed: C(0) came out 0,
    not Q.  Each mean is divided by its sqrt(Q) first."""
    m = kernel_maps(sympy.Heaviside(x - 30), engine="float64")
    exact = mpmath.ncdf(-30)
    assert rel(m.c_map(0), exact) < 1e-10
    assert rel(m.c_map_curve(np.array([0.0]))[0], exact) < 1e-10


@pytest.mark.parametrize("engine", ["float64", "mpmath"])
def test_a_phi_tiny_at_every_probe_point_is_not_taken_for_odd(engine):
    """The parity test was absolute (1e-25 of max(1, |phi|)): the bump exp(-(x - 20)^2), below 1e-25 at every probe
    point, passed as odd, and its C(0) came out exactly 0.  C(0) = E[phi]^2 / Q in closed form:
    E[phi] = exp(-a^2/3)/sqrt(3), Q = exp(-2a^2/5)/sqrt(5) at q = 1."""
    a = 20
    m = kernel_maps(sympy.exp(-(x - a) ** 2), engine=engine, dps=15)
    with mpmath.workdps(40):
        exact = (mpmath.exp(-mpmath.mpf(a) ** 2 / 3) / mpmath.sqrt(3)) ** 2 / (
            mpmath.exp(-2 * mpmath.mpf(a) ** 2 / 5) / mpmath.sqrt(5))
    assert rel(m.c_map(0), exact) < 1e-10


def _orthant(a, c, q=1):
    """E[H(u - a) H(v - a)] = P(u > a, v > a) for (u, v) ~ N(0, q [[1, c], [c, 1]]) at 40 digits, as a 1-D integral:
    int_{a/r}^inf p(z) Phi((c z - a/r) / s) dz (r = sqrt(q), s = sqrt(1 - c^2)), scaled by its integrand at the start
    (mpmath's quad tolerance is absolute and these are ~1e-360)."""
    with mpmath.workdps(40):
        a, c, q = mpmath.mpf(a), mpmath.mpf(c), mpmath.mpf(q)
        r, s = mpmath.sqrt(q), mpmath.sqrt((1 - c) * (1 + c))
        f = lambda z: mpmath.npdf(z) * mpmath.ncdf((c * z - a / r) / s)  # noqa: E731
        start = f(a / r)
        return mpmath.quad(lambda t: f(a / r + t) / start, [0, mpmath.mpf(1) / 64, 0.05, 0.2, 1, 3, mpmath.inf]) * start


def _shifted_relu_q(a, q):
    """Q(q) of relu(x - a): E[(u - a)_+^2] = (q + a^2) Phi(-a/r) - a r p(a/r), r = sqrt(q)."""
    with mpmath.workdps(40):
        a, q = mpmath.mpf(a), mpmath.mpf(q)
        r = mpmath.sqrt(q)
        return (q + a * a) * mpmath.ncdf(-a / r) - a * r * mpmath.npdf(a / r)


@pytest.mark.parametrize("c, q", [(-0.9, 1), (0.5, 0.01), (0.1, 1)])
def test_float64_c_slope_far_below_its_bound_is_computed_by_price(c, q):
    """relu(x - 3)'s C'(c; q, q) = q E[H(u - 3) H(v - 3)] / Q(q) (Price).  At c = -0.9 it is 1.6e-39 and at
    q = 0.01, c = 0.5 1.1e-64: the kernel, 3e-43 and 1e-264, is far below its Cauchy-Schwarz bound, and a check
    relative to that bound refused both ("not resolved"), though the rule converges relative to E|phi'(u) phi'(v)|,
    which here is the kernel itself.  Reference: the bivariate normal orthant, _orthant."""
    got = kernel_maps(sympy.Max(x - 3, 0), engine="float64").c_map_derivative(c, 1, q, q)
    with mpmath.workdps(40):
        exact = mpmath.mpf(q) * _orthant(3, c, q) / _shifted_relu_q(3, q)
    assert rel(got, exact) < 1e-10


def test_float64_c_slope_still_refuses_a_kernel_whose_integrand_cancels():
    """The check is relative to the rule's error estimate (E|phi' phi'|-relative), not dropped: x exp(-x^2) at
    q = 1e12, whose phi' = (1 - 2x^2) exp(-x^2) cancels (C'(0.3) ~ 1.5e-18, E|phi'(u) phi'(v)| ~ 1e13 times the
    kernel), is still refused by name."""
    fast = kernel_maps(x * sympy.exp(-x**2), engine="float64")
    with pytest.raises(DivergentIntegralError, match="not resolved.*estimated error.*engine='mpmath'"):
        fast.c_map_derivative(0.3, 1, 1e12, 1e12)


@pytest.mark.parametrize("c", [0.1, 0.01, -0.1])
def test_float64_c_map_where_the_kernel_underflows_but_c_does_not(c):
    """H(x - 30): at c = 0.1 the kernel E[phi(u) phi(v)] = e^-827 underflows float64, but C = kernel / Phi(-30) =
    2e-162 does not; the rule raised "underflows float64".  It now sums its terms on a scale e^L taken in logs, and
    C = mantissa e^(L - log Q).  Reference: the orthant probability (_orthant) over Q = Phi(-30)."""
    m = kernel_maps(sympy.Heaviside(x - 30), engine="float64")
    with mpmath.workdps(40):
        exact = _orthant(30, c) / mpmath.ncdf(-30)
    assert rel(m.c_map(c), exact) < 1e-10
    assert rel(m.c_map_curve(np.array([c, 0.9]))[0], exact) < 1e-10


def test_float64_price_kernels_that_underflow_are_scaled_too():
    """relu(x - 30): C'(0.1) = q E[H(u - 30) H(v - 30)] / Q (9e-160, kernel e^-827) raised "underflows float64", and
    C''(0.1) = q^2 p(30, 30) / Q, the delta term phi'' = delta(x - 30), came out 0.0: the joint density at (30, 30),
    e^-818, underflowed.  References: the orthant (_orthant) and the bivariate normal density in closed form."""
    m = kernel_maps(sympy.Max(x - 30, 0), engine="float64")
    with mpmath.workdps(40):
        q_value = _shifted_relu_q(30, 1)
        c = mpmath.mpf("0.1")
        density = mpmath.exp(-900 * (2 - 2 * c) / (2 * (1 - c * c))) / (2 * mpmath.pi * mpmath.sqrt(1 - c * c))
        slope, curvature = _orthant(30, c) / q_value, density / q_value
    assert rel(m.c_map_derivative(0.1, 1), slope) < 1e-10
    assert rel(m.c_map_derivative(0.1, 2), curvature) < 1e-10


def _bump_c_map(a, c, q=1):
    """C(c; q, q) of the bump exp(-(x - a)^2), from Gaussian integrals in closed form at 40 digits:
    E[exp(-|x - m|^2)] = det(I + 2 S)^(-1/2) exp(-m^T (I + 2 S)^(-1) m) for x ~ N(0, S); with m = (a, a) and
    S = q [[1, c], [c, 1]] (eigenvalues q (1 +- c)) the kernel is exp(-2a^2 / (1 + 2q(1 + c))) /
    sqrt((1 + 2q(1 + c)) (1 + 2q(1 - c))), and Q = exp(-2a^2 / (1 + 4q)) / sqrt(1 + 4q)."""
    with mpmath.workdps(40):
        a, c, q = mpmath.mpf(a), mpmath.mpf(c), mpmath.mpf(q)
        kernel = mpmath.exp(-2 * a * a / (1 + 2 * q * (1 + c))) / mpmath.sqrt((1 + 2 * q * (1 + c)) * (1 + 2 * q * (1 - c)))
        return kernel / (mpmath.exp(-2 * a * a / (1 + 4 * q)) / mpmath.sqrt(1 + 4 * q))


@pytest.mark.parametrize("c", [-0.9, -0.5, -0.99])
def test_float64_c_map_of_a_bump_whose_mass_lies_off_the_axes(c):
    """The bump exp(-(x - 20)^2) at c = -0.9 has its 2-D mass near u = v = 20/6, i.e. z2 = (v - c u)/s = 14.5, whose
    tail crosses the square |z| <= 20 that the tail tests of phi^2 set: the rule raised "does not reach where it
    lives".  The square is now widened to where the integrand, sampled in logs, lives (and at c = -0.99, 7e-272,
    the sums are scaled as well).  Reference: the closed form (_bump_c_map)."""
    got = kernel_maps(sympy.exp(-(x - 20) ** 2), engine="float64").c_map(c)
    assert rel(got, _bump_c_map(20, c)) < 1e-10


def test_float64_c_map_still_refuses_mass_it_cannot_place(monkeypatch):
    """Where no square on the sampled grid holds the mass, the rule still refuses by name: with the grid cut to
    |z| <= 12 the bump's mass (tail to z2 ~ 20) lies past it, and "does not reach" is raised, not a number."""
    import numeric.gauss as gauss
    monkeypatch.setattr(gauss, "_F64_MASS_GRID", np.linspace(-12.0, 12.0, 97))
    with pytest.raises(DivergentIntegralError, match="does not reach where it lives.*engine='mpmath'"):
        kernel_maps(sympy.exp(-(x - 20) ** 2), engine="float64").c_map(-0.9)
