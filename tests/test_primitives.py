"""symact.primitives: the safe vocabulary, its rewrite pass and the safety rule.

References are independent of the code under test: mpmath at 50 digits evaluates
the *elementary* formulas (log(1 + exp(u)) ...) with its own functions, and SymPy's
own differentiation of the elementary formulas checks each ``fdiff``.
"""

from __future__ import annotations

import math

import mpmath
import pytest
import sympy

from _reference import least_one_sided_slope
from symact.primitives import (
    PRIMITIVES,
    Erfcx,
    Expm1,
    Log1p,
    LogSigmoid,
    NormalCdf,
    Sigmoid,
    Softplus,
    hazards,
    safe_derivative,
    safe_form,
    to_elementary,
)

x = sympy.Symbol("x", real=True)
b = sympy.Symbol("b", positive=True)

# mpmath references written from the definitions, not from the module
MP_REFERENCE = {
    Sigmoid: lambda u: 1 / (1 + mpmath.exp(-u)),
    Softplus: lambda u: mpmath.log1p(mpmath.exp(u)),
    LogSigmoid: lambda u: -mpmath.log1p(mpmath.exp(-u)),
    Log1p: mpmath.log1p,
    Expm1: mpmath.expm1,
    NormalCdf: mpmath.ncdf,
    Erfcx: lambda u: mpmath.exp(u * u) * mpmath.erfc(u),
}

ARGUMENTS = ["-800", "-30", "-1e-20", "0.3", "1e-30", "25", "800"]


# Log1p is real only for u > -1
EVALF_CASES = [(p, a) for p in PRIMITIVES for a in ARGUMENTS if not (p is Log1p and float(a) <= -1)]


@pytest.mark.parametrize("prim, arg", EVALF_CASES, ids=lambda c: getattr(c, "__name__", c))
def test_evalf_matches_mpmath_at_40_digits(prim, arg):
    with mpmath.workdps(60):
        expected = MP_REFERENCE[prim](mpmath.mpf(arg))
    value = prim(sympy.Float(arg, 60)).evalf(40)
    with mpmath.workdps(60):
        rel = abs(mpmath.mpf(str(value)) - expected) / abs(expected)
    assert rel < mpmath.mpf("1e-38"), (prim, arg, value, expected)


@pytest.mark.parametrize("prim", PRIMITIVES, ids=lambda p: p.__name__)
def test_fdiff_agrees_with_derivative_of_elementary_form(prim):
    derivative = sympy.diff(prim(x), x)
    elementary = sympy.diff(prim(x).elementary(), x)
    for point in ("-3.5", "0.25", "4"):
        lhs = derivative.subs(x, sympy.Float(point, 40)).evalf(30)
        rhs = elementary.subs(x, sympy.Float(point, 40)).evalf(30)
        assert abs(lhs - rhs) <= sympy.Float("1e-28") * abs(rhs)


@pytest.mark.parametrize("prim", PRIMITIVES, ids=lambda p: p.__name__)
def test_derivative_stays_in_vocabulary(prim):
    """fdiff never falls back to exp/log of an unbounded argument (the hazard the set avoids).

    The exceptions are Expm1' = exp(u) and Erfcx' = 2*u*Erfcx(u) - 2/sqrt(pi): they overflow exactly
    where Expm1 and Erfcx themselves do (and Expm1, like exp, counts as one overflow hazard, as does
    Erfcx of an argument not bounded below, ~2*exp(u**2) for u -> -oo).
    """
    derivative = sympy.diff(prim(x), x)
    expected = 1 if prim in (Expm1, Erfcx) else 0
    assert hazards(derivative, (x,)).overflow == expected, derivative
    assert derivative.atoms(sympy.log) == set()


def test_to_elementary_and_rewrite_are_identities():
    expr = x * Sigmoid(x) + Softplus(-x) + Expm1(x) * NormalCdf(x) + LogSigmoid(x) + Log1p(x**2)
    elementary = to_elementary(expr)
    assert not any(elementary.has(p) for p in PRIMITIVES)
    assert expr.rewrite(sympy.exp).has(sympy.exp)
    for point in ("-2", "0.5", "3"):
        a = expr.subs(x, sympy.Float(point, 40)).evalf(30)
        c = elementary.subs(x, sympy.Float(point, 40)).evalf(30)
        assert abs(a - c) < sympy.Float("1e-27")


@pytest.mark.parametrize(
    "naive, safe",
    [
        (sympy.log(1 + sympy.exp(x)), Softplus(x)),
        (1 / (1 + sympy.exp(-x)), Sigmoid(x)),
        (x / (1 + sympy.exp(-x)), x * Sigmoid(x)),
        (sympy.exp(x) - 1, Expm1(x)),
        (3 * sympy.exp(x) - 3, 3 * Expm1(x)),
        (sympy.log(1 + x**2), Log1p(x**2)),
        (sympy.log(1 / (1 + sympy.exp(-x))), LogSigmoid(x)),
        (x * (1 + sympy.erf(x / sympy.sqrt(2))) / 2, x * NormalCdf(x)),
        (1 - sympy.tanh(x) ** 2, sympy.sech(x) ** 2),
        (1 - Sigmoid(x), Sigmoid(-x)),
    ],
)
def test_safe_form_rules(naive, safe):
    assert safe_form(naive) == safe


@pytest.mark.parametrize(
    "naive, cancels_at",
    [
        (-1 + 2 / (1 + sympy.exp(-2 * x)), 1e-9),  # 2*Sigmoid(2x) - 1 = tanh(x)
        (99 * sympy.erf(x) / 200 + sympy.Rational(101, 200), -5.5),  # sau's derivative
        (-99 * sympy.erf(x) - 101, -5.5),
        (99 * sympy.erf(x) - 101, 5.5),
        (x * (99 * sympy.erf(x) + 101) / 200, -5.5),  # sau's value, as two terms in x
        (x + sympy.sqrt(x**2 + 1) / 2 - sympy.Rational(1, 2), 1e-9),  # bent identity
    ],
)
def test_safe_forms_remove_cancellation_between_terms(naive, cancels_at):
    """Each rewrite is an identity (checked at 40 digits) and, evaluated in double precision
    (each primitive to its own precision, as the generated code does), the safe form keeps
    relative accuracy at a point where the naive form's terms cancel."""
    _assert_accurate_where_naive_cancels(naive, safe_form(naive), cancels_at)
    assert safe_form(safe_form(naive)) == safe_form(naive)


def test_softsign_derivative_is_one_over_a_square():
    """x*sign(x) is |x|, so the derivative -x*sign(x)/(|x| + 1)**2 + 1/(|x| + 1) becomes
    1/(|x| + 1)**2, with no difference of nearly equal terms for large |x|."""
    naive = sympy.diff(x / (sympy.Abs(x) + 1), x)
    safe = safe_derivative(x / (sympy.Abs(x) + 1), x)
    assert safe == 1 / (sympy.Abs(x) + 1) ** 2
    _assert_accurate_where_naive_cancels(naive, safe, 1e6)


def test_sinc_derivative_keeps_relative_accuracy_near_0():
    """sinc is its Taylor polynomial for |x| < 2 in safe form, so the derivative ~ -x/3 near 0
    does not come from cos(x)/x - sin(x)/x**2 (a loss of 3/x**2 relative digits)."""
    naive = sympy.diff(sympy.sinc(x), x)
    _assert_double_precision_accuracy(naive, safe_derivative(sympy.sinc(x), x), (-1.9, -0.37, 1e-3, 1e-7, 1.2))
    with mpmath.workdps(60):  # the truncated series against sin(x)/x where the two branches meet
        series = sympy.lambdify(x, safe_form(sympy.sinc(x)).args[0][0], "mpmath")
        for point in ("1.99", "-1.5", "0.25"):
            u = mpmath.mpf(point)
            assert abs(series(u) - mpmath.sin(u) / u) < mpmath.mpf("1e-19")


def test_tanhshrink_keeps_relative_accuracy_near_0():
    """x - tanh(x) ~ x**3/3 is Lambert's continued fraction for |x| < 2 in safe form: in double
    precision it keeps its relative accuracy where the difference loses 3/x**2 of it."""
    naive = x - sympy.tanh(x)
    safe = safe_form(naive)
    assert safe.has(sympy.Piecewise) and safe_form(safe) == safe
    _assert_double_precision_accuracy(naive, safe, (-1.99, -0.6, 1e-3, 1e-6, 1.3, 2.5))


def test_a_patch_for_the_value_stays_out_of_a_derivative_that_needs_none():
    """tanhshrink's continued-fraction patch differentiates to a degree-24 ratio, but
    (x - tanh x)' = tanh(x)**2 has no sum that could cancel; sinc' = (cos x - sin(x)/x)/x
    cancels near 0, so there the patch's derivative (its Taylor polynomial) stays."""
    tanhshrink = x - sympy.tanh(x)
    derivative = safe_derivative(tanhshrink, x)
    assert not derivative.has(sympy.Piecewise)
    assert sympy.simplify((derivative - sympy.diff(tanhshrink, x)).rewrite(sympy.exp)) == 0
    _assert_double_precision_accuracy(sympy.diff(tanhshrink, x), derivative, (-1.99, -0.6, 1e-3, 1e-6, 1.3, 2.5))
    assert safe_derivative(sympy.sinc(x), x).has(sympy.Piecewise)


def test_xatlu_derivative_keeps_relative_accuracy_for_large_negative_x():
    """x/(x**2 + 1) + pi/2 + atan(x) ~ 2/(3|x|**3) for x -> -oo from terms ~1/|x|: below x = -1
    the safe derivative is Gauss's continued fraction for atan, as a ratio of positive polynomials."""
    xatlu = x * (sympy.atan(x) / sympy.pi + sympy.Rational(1, 2))
    naive = sympy.diff(xatlu, x)
    safe = safe_derivative(xatlu, x)
    assert safe.has(sympy.Piecewise)
    _assert_double_precision_accuracy(naive, safe, (-1e3, -24.37, -3.0, -1.01, -0.7, 2.0))


def _assert_double_precision_accuracy(naive, safe, points, eps=8):
    """safe evaluated in double precision (mpmath at 53 bits, each primitive to its own
    precision, as the generated code does: NormalCdf as mpmath.ncdf, since to_elementary would
    put it back as (1 + erf)/2, the cancellation itself) is within eps*2**-53 of naive at 60 digits."""
    exact = sympy.lambdify(x, naive, modules="mpmath")
    fast = sympy.lambdify(x, safe, modules=[{"NormalCdf": mpmath.ncdf}, "mpmath"])
    for point in points:
        with mpmath.workdps(60):
            reference = exact(mpmath.mpf(point))
        with mpmath.workprec(53):
            value = fast(mpmath.mpf(point))
        assert abs(value - reference) <= eps * 2.0**-53 * abs(reference), (safe, point, value, reference)


def _assert_accurate_where_naive_cancels(naive, safe, cancels_at):
    with mpmath.workdps(60):
        for point in (-2.5, -0.3, 0.7, 4.0):  # an identity, to 30 digits
            a = sympy.N(naive.subs(x, sympy.Float(point, 60)), 40)
            c = sympy.N(to_elementary(safe).subs(x, sympy.Float(point, 60)), 40)
            assert abs(a - c) <= 1e-30 * max(1, abs(a))
    _assert_double_precision_accuracy(naive, safe, (cancels_at,))


def test_rationalisation_of_squareplus_is_exact_and_idempotent():
    squareplus = (x + sympy.sqrt(x**2 + b)) / 2
    safe = safe_form(squareplus)
    assert isinstance(safe.args[-1], sympy.Piecewise) or safe.has(sympy.Piecewise)
    assert safe_form(safe) == safe
    with mpmath.workdps(60):
        for point in (-1e6, -3.0, 0.0, 2.0, 1e6):
            exact = (mpmath.mpf(point) + mpmath.sqrt(mpmath.mpf(point) ** 2 + 4)) / 2
            value = safe.subs({b: 4, x: sympy.Float(point, 60)}).evalf(40)
            assert abs(mpmath.mpf(str(value)) - exact) <= mpmath.mpf("1e-35") * exact


def test_safe_forms_stay_accurate_in_float_where_naive_forms_fail():
    """Evaluated in double precision, the safe forms keep full relative accuracy."""
    f_naive = sympy.lambdify(x, (x + sympy.sqrt(x**2 + 1)) / 2, "math")
    f_safe = sympy.lambdify(x, safe_form((x + sympy.sqrt(x**2 + 1)) / 2), "math")
    with mpmath.workdps(40):
        exact = float((mpmath.mpf(-1e8) + mpmath.sqrt(mpmath.mpf(1e16) + 1)) / 2)
    assert f_naive(-1e8) == 0.0  # the cancellation the rewrite removes
    assert f_safe(-1e8) == pytest.approx(exact, rel=1e-15)


@pytest.mark.parametrize(
    "expr",
    [
        sympy.log(1 + sympy.exp(x)),
        x / (1 + sympy.exp(-x)),
        x * sympy.tanh(sympy.log(1 + sympy.exp(x))),
        x * (1 + sympy.erf(x / sympy.sqrt(2))) / 2,
        (x + sympy.sqrt(x**2 + 4)) / 2,
        sympy.tanh(x),
        sympy.Piecewise((x, x > 0), (sympy.exp(x) - 1, True)),
    ],
)
def test_safe_derivative_equals_derivative(expr):
    reference = sympy.diff(expr, x)
    chosen = safe_derivative(expr, x)
    for point in ("-7.5", "-0.3", "0.6", "9"):
        a = chosen.subs(x, sympy.Float(point, 40)).evalf(30)
        c = reference.subs(x, sympy.Float(point, 40)).evalf(30)
        assert abs(a - c) <= sympy.Float("1e-26") * max(1, abs(c))


def test_safety_rule_prefers_forms_without_overflow_and_cancellation():
    # tanh' as 1 - tanh^2 cancels for large |x|; sech^2 does not
    assert safe_derivative(sympy.tanh(x), x) == sympy.sech(x) ** 2
    # SiLU': the fdiff form with Sigmoid(-x) has no exp of an unbounded argument
    silu_prime = safe_derivative(x / (1 + sympy.exp(-x)), x)
    assert hazards(silu_prime, (x,)).overflow == 0
    assert hazards(silu_prime, (x,)).cancellation == 0
    naive = sympy.simplify(sympy.diff(x / (1 + sympy.exp(-x)), x))
    assert hazards(naive, (x,)).key() > hazards(silu_prime, (x,)).key()


def test_piecewise_branch_derivative_uses_the_sign_of_its_region():
    """In squareplus's x < 0 branch 2/(s + |x|) (s = sqrt(x**2 + 4)) sign(x) = -1 and |x| = -x, so the
    derivative needs neither: 2/(s*(s + |x|)) up to form, one division, and no sum of opposite signs.
    Values agree with the derivative of the plain formula (evaluated at 80 digits: it cancels)."""
    x = sympy.Symbol("x", real=True)
    formula = (x + sympy.sqrt(x**2 + 4)) / 2
    derivative = safe_derivative(formula, x, (x,))
    (piecewise,) = derivative.atoms(sympy.Piecewise)
    negative_branch = piecewise.args[-1][0]
    assert not negative_branch.has(sympy.sign)
    assert hazards(negative_branch, (x,)).cancellation == 0
    plain = sympy.diff(formula, x)
    for point in (-1e4, -30, -2.5, -1e-3, 0.5, 7):
        exact = plain.subs(x, sympy.Float(point, 80)).evalf(80)
        got = derivative.subs(x, sympy.Float(point, 40)).evalf(40)
        assert abs(got - exact) <= 1e-35 * abs(exact)


_EXP = sympy.exp


@pytest.mark.parametrize(
    "naive",
    [
        x * _EXP(x) / (1 + _EXP(x)),  # exp(x)*Sigmoid(-x) = Sigmoid(x)
        _EXP(x) / (1 + _EXP(x)) ** 2,  # Sigmoid(x)*Sigmoid(-x)
        _EXP(3 * x) / (1 + _EXP(x)) ** 2,  # one exp(x) left over
        x * _EXP(x) / (_EXP(x) - 1),  # exp(x)/Expm1(x) = -1/Expm1(-x)
        _EXP(x) / (_EXP(x) - 1) ** 2,
        (_EXP(x) - _EXP(-x)) / (_EXP(x) + _EXP(-x)),  # tanh
        2 / (_EXP(2 * x + 1) + _EXP(-2 * x - 1)),  # sech(2x + 1)
        sympy.log(_EXP(x) + _EXP(-x)),
        sympy.log(sympy.cosh(x)),
        sympy.log(3 * _EXP(2 * x) + _EXP(x)),
        Sigmoid(x) - Sigmoid(-x),  # tanh(x/2)
        sympy.log(2 * _EXP(x) + 2),  # log(2) + Softplus(x)
        sympy.log(1 + _EXP(2 * x + 1)) - 2 * x - 1,  # Softplus(-2x - 1)
    ],
)
def test_exp_quotients_and_logs_of_exp_sums_are_exact_and_lose_their_overflow(naive):
    """Each rewrite is an identity (at 40 digits) and the safe form keeps no bare exp or cosh unless
    the function itself grows like one: an exp alone overflows from |x| = 89 in float32 where these
    quotients and logs do not (their values in floats: test_codegen's user-written exp forms)."""
    safe = safe_form(naive)
    for point in ("-7.3", "-0.61", "0.0123", "2.5", "41"):
        with mpmath.workdps(40):
            at = {x: sympy.Float(point, 50)}
            assert abs(complex(to_elementary(safe).evalf(50, subs=at)) - complex(naive.evalf(50, subs=at))) \
                <= 1e-35 * max(1.0, abs(complex(naive.evalf(50, subs=at)))), (naive, safe, point)
    needed = 1 if naive == _EXP(3 * x) / (1 + _EXP(x)) ** 2 else 0  # it grows like exp(x)
    assert len(safe.atoms(sympy.exp)) == needed and not safe.has(sympy.cosh), safe
    assert safe_form(safe) == safe


@pytest.mark.parametrize("naive, derivative_of", [
    (sympy.exp(x) - 1 - x, False),
    (x / (sympy.exp(x) - 1), True),   # its derivative is 1 + x/Expm1(-x) over Expm1(x)
    ((sympy.exp(x) - 1) / x, True),   # its derivative's numerator is x*exp(x) - Expm1(x)
])
def test_sums_that_are_exp_less_one_less_linear_are_patched_near_zero_and_stay_identities(naive, derivative_of):
    """exp(w) - 1 - w ~ w**2/2 from terms ~w: near w = 0 the safe form takes a Taylor polynomial, a
    Piecewise whose other branch is the unpatched terms.  Both branches equal the naive formula (or its
    SymPy derivative) at 30 digits, apart from the polynomial's truncation (< 2e-20 relative)."""
    target = sympy.diff(naive, x) if derivative_of else naive
    safe = safe_derivative(naive, x) if derivative_of else safe_form(naive)
    assert safe.has(sympy.Piecewise), safe
    for point in ("-0.93", "-1e-9", "3e-7", "0.4", "1.5", "-6.2"):  # both branches, both signs
        at = {x: sympy.Float(point, 40)}
        with mpmath.workdps(40):
            exact = complex(target.evalf(40, subs=at))
            got = complex(to_elementary(safe).evalf(40, subs=at))
        assert abs(got - exact) <= 1e-19 * abs(exact), (naive, point, got, exact)
    assert safe_form(safe) == safe  # applied once: the patch's own branches are not patched again


@pytest.mark.parametrize("naive, safe", [
    (sympy.exp(x**2) * sympy.erfc(x), Erfcx(x)),
    (3 * x * sympy.exp(x**2 + 1) * sympy.erfc(x), 3 * sympy.E * x * Erfcx(x)),
    (sympy.exp(4 * x**2) * sympy.erfc(2 * x), Erfcx(2 * x)),
    (sympy.exp(x**2 / 2) * sympy.erfc(x / sympy.sqrt(2)), Erfcx(sympy.sqrt(2) * x / 2)),  # via NormalCdf(-x)
    # not exp(u**2): Erfcx only where erfc decays (erfc(27) is subnormal in float64: exp(27)*erfc(27) was
    # 4.7e-7 off), erfc where Erfcx would overflow
    (sympy.exp(x) * sympy.erfc(x),
     sympy.Piecewise((sympy.exp(-x * (x - 1)) * Erfcx(x), x > 0), (sympy.exp(x) * sympy.erfc(x), True))),
    (x * sympy.exp(x**2 / 2) * sympy.erfc(x),
     x * sympy.Piecewise((sympy.exp(-x**2 / 2) * Erfcx(x), x > 0), (sympy.exp(x**2 / 2) * sympy.erfc(x), True))),
])
def test_exp_of_a_square_times_erfc_becomes_erfcx(naive, safe):
    """exp(u**2)*erfc(u) is inf*0 = NaN from u = 26.7 in float64 (9.4 in float32); Erfcx is the same
    function (checked against mpmath's exp*erfc at 40 digits, far beyond any float's range).  An exp
    that is not exp(u**2 + c) gets Erfcx on the side where erfc decays only."""
    assert safe_form(naive) == safe
    for point in ("-3.1", "0.2", "40", "1e5"):
        with mpmath.workdps(60):
            exact = sympy.lambdify(x, naive, "mpmath")(mpmath.mpf(point))
            got = mpmath.mpf(str(safe.evalf(45, subs={x: sympy.Float(point, 60)})))
            assert abs(got - exact) <= mpmath.mpf("1e-38") * abs(exact), (naive, point, got, exact)


def _erfcx_rounded(u):
    """exp(u**2)*erfc(u) correctly rounded to the working precision (as a library erfcx is)."""
    prec = mpmath.mp.prec
    with mpmath.workprec(2 * prec + 64 + 2 * int(mpmath.log(abs(u) + 1, 2))):
        value = mpmath.exp(u * u) * mpmath.erfc(u)
    with mpmath.workprec(prec):
        return +value


@pytest.mark.parametrize("expr", [
    sympy.exp(x**2) * sympy.erfc(x),
    sympy.exp(4 * x**2) * sympy.erfc(2 * x),  # the chain rule: 8*x*Erfcx(2*x) - 4/sqrt(pi)
    sympy.exp((x + 1) ** 2) * sympy.erfc(x + 1),
    sympy.exp(x**2 / 2) * sympy.erfc(x / sympy.sqrt(2)),
])
def test_erfcx_derivative_keeps_relative_accuracy_for_large_arguments(expr):
    """Erfcx's derivative 2*u*Erfcx(u) - 2/sqrt(pi) ~ -1/(sqrt(pi)*u**2) from terms ~1.13: evaluated in
    double precision it lost log2(2*u**2) bits (every digit from u = 1e8).  The safe derivative takes
    Laplace's continued fraction above u = 3.  Reference: SymPy's derivative of the exp*erfc formula by
    mpmath at 60 digits (plus the digits its terms and mpmath.erfc cancel); the safe one is evaluated at 53 bits."""
    safe = safe_derivative(expr, x)
    assert safe.has(sympy.Piecewise), safe
    naive = sympy.diff(expr, x)
    exact = sympy.lambdify(x, naive, modules="mpmath")
    fast = sympy.lambdify(x, safe, modules=[{"Erfcx": _erfcx_rounded}, "mpmath"])
    for point in (-25.0, -2.0, 0.5, 2.9, 3.2, 7.5, 30.0, 1e4, 1e12, 1e150):
        if point < -2 and expr.has(sympy.sqrt(2)):
            continue  # Erfcx(x/sqrt(2)) there is as accurate as its rounded argument: ~u**2 ulps
        with mpmath.workdps(60 + 4 * int(math.log10(abs(point) + 1))):  # erfc at u loses ~2*log10(u) digits too
            reference = exact(mpmath.mpf(point))
        with mpmath.workprec(53):
            value = fast(mpmath.mpf(point))
        # below u = 3 the sum is kept: its terms exceed it by at most 21 there (see _erfcx_slope)
        bound = 8 * 2.0**-53 * (21 if 0 < point <= 3 else 1)
        assert abs(value - reference) <= bound * abs(reference), (expr, point, value, reference)
    assert safe_form(safe) == safe


def test_derivative_of_sqrt_of_one_plus_exp_does_not_overflow_before_the_function():
    """d/dx sqrt(1 + exp(2x)) = exp(2x)/sqrt(1 + exp(2x)) was made exp(2x)*sqrt(Sigmoid(-2x)), inf from
    x = 44.4 in float32 where the derivative (~exp(x)) is finite up to 88.7; exp(x)*sqrt(Sigmoid(2x)) is
    the same function.  Reference: SymPy's derivative of the formula by mpmath (unbounded exponents)."""
    expr = sympy.sqrt(1 + sympy.exp(2 * x))
    safe = safe_derivative(expr, x)
    assert not safe.has(sympy.exp(2 * x)), safe
    exact = sympy.lambdify(x, sympy.diff(expr, x), "mpmath")
    fast = sympy.lambdify(x, safe, modules=[{"Sigmoid": lambda u: 1 / (1 + mpmath.exp(-u))}, "mpmath"])
    for point in (-700.0, -30.0, -0.5, 0.0, 2.0, 44.5, 88.0, 700.0):
        with mpmath.workdps(60):
            reference = exact(mpmath.mpf(point))
        with mpmath.workprec(53):
            value = fast(mpmath.mpf(point))
        assert abs(value - reference) <= 8 * 2.0**-53 * abs(reference), (point, value, reference)


@pytest.mark.parametrize("naive, safe, limit_at_0", [
    (x / sympy.sqrt(sympy.Abs(x)), sympy.sign(x) * sympy.sqrt(sympy.Abs(x)), 0),          # powerprop, alpha = 1/2
    (x * sympy.Abs(x) ** sympy.Rational(-2, 3), sympy.sign(x) * sympy.Abs(x) ** sympy.Rational(1, 3), 0),
    (3 * x**2 / sympy.sqrt(sympy.Abs(x)), 3 * sympy.Abs(x) ** sympy.Rational(3, 2), 0),
    (sympy.sign(x) ** 2 / sympy.sqrt(sympy.Abs(x)), 1 / sympy.sqrt(sympy.Abs(x)), sympy.oo),
])
def test_a_power_of_x_over_a_power_of_abs_x_takes_its_limit_at_0(naive, safe, limit_at_0):
    """x*|x|**e with -1 < e < 0 is 0*inf = NaN at x = 0 in floats (and 0/0 for SymPy), where its limit is
    0: powerprop at alpha = 1/2 gave a NaN weight at W = 0.  sign(x)**n*|x|**m is 0*inf at 0 where the
    limit is |x|**m's (the derivative of sign(x)*sqrt|x| came out as sign(x)**2/(2*sqrt|x|)).  The safe
    forms are identities away from 0 (checked at sample points) and take the one-sided limits at 0."""
    assert safe_form(naive) == safe
    for point in (-2.5, -1e-3, 0.7, 3):
        assert abs(float((naive - safe_form(naive)).subs(x, point))) < 1e-14
    at0 = safe_form(naive).subs(x, 0)
    assert (at0 == limit_at_0) or (limit_at_0 is sympy.oo and at0 is sympy.zoo)
    assert sympy.limit(naive, x, 0, "+") == limit_at_0 and sympy.limit(naive, x, 0, "-") == limit_at_0
    # the derivative of powerprop at alpha = 1/2 is 1/(2*sqrt|x|), whose value at 0 is the limit inf
    if naive == x / sympy.sqrt(sympy.Abs(x)):
        assert safe_derivative(naive, x) == 1 / (2 * sympy.sqrt(sympy.Abs(x)))
        assert safe_derivative(safe, x) == 1 / (2 * sympy.sqrt(sympy.Abs(x)))


FAR_OUT = [
    (Expm1, sympy.Integer(10) ** 300, mpmath.expm1),
    (Expm1, sympy.Rational(10**9, 3), mpmath.expm1),
    (Sigmoid, -sympy.Rational(10**20, 3), MP_REFERENCE[Sigmoid]),
    (Softplus, -sympy.Rational(10**9, 3), MP_REFERENCE[Softplus]),
    (LogSigmoid, sympy.Rational(10**9, 3), MP_REFERENCE[LogSigmoid]),
    (NormalCdf, -sympy.Rational(10**9, 3), mpmath.ncdf),
    (Erfcx, -sympy.Rational(10**9, 3), MP_REFERENCE[Erfcx]),
    # mpmath's erfc raises OverflowError from |u| ~ 1e154; the reference there is the regularised upper
    # incomplete gamma function, erfc(u) = Q(1/2, u**2) for u > 0
    (NormalCdf, -sympy.Rational(10**300, 3), lambda v: mpmath.gammainc(0.5, v * v / 2, mpmath.inf, regularized=True) / 2),
    (NormalCdf, sympy.Rational(10**300, 3), lambda v: 1 - mpmath.gammainc(0.5, v * v / 2, mpmath.inf, regularized=True) / 2),
    (Erfcx, sympy.Rational(10**300, 3), lambda v: mpmath.exp(v * v) * mpmath.gammainc(0.5, v * v, mpmath.inf, regularized=True)),
    (Erfcx, sympy.Rational(10**120, 7), lambda v: mpmath.exp(v * v) * mpmath.gammainc(0.5, v * v, mpmath.inf, regularized=True)),
    (Erfcx, -sympy.Rational(10**300, 3), lambda v: mpmath.exp(v * v) * (2 - mpmath.gammainc(0.5, v * v, mpmath.inf, regularized=True))),
]


@pytest.mark.parametrize("prim, arg, reference", FAR_OUT, ids=lambda c: getattr(c, "__name__", str(c)[:12]))
@pytest.mark.parametrize("digits", [15, 40])
def test_evalf_far_out_keeps_the_requested_digits(prim, arg, reference, digits):
    """exp(u) has relative condition |u| (erfc(u) ~ exp(-u**2): u**2), so u rounded to the working precision
    plus 20-30 guard bits gave a wrong mantissa once |u| outgrew the guard: Expm1(10**300).evalf(15) was
    7.04e+(...) for 5.44e+(...), Sigmoid(-10**20/3) and NormalCdf(-10**9/3) were off in their leading digits.
    Reference: mpmath with as many digits as u has plus the requested ones."""
    value = prim(arg).evalf(digits)
    with mpmath.workdps(digits + 2 * len(str(abs(arg.p))) + 30):
        exact = reference(mpmath.mpf(arg.p) / arg.q)
        error = abs((mpmath.mpf(str(value)) - exact) / exact)
    assert error < mpmath.mpf(10) ** (1 - digits), (value, mpmath.nstr(exact, digits))


def test_evalf_of_a_tiny_log1p_or_expm1_argument_does_not_raise_the_precision_without_bound():
    """log1p/expm1 raised the working precision by log2(1/|t|) bits: Softplus(10**7/3).evalf() evaluated
    log1p(exp(-u)) with exp(-u) ~ 1e-1447648 at 4.8 million bits and did not finish in minutes.  Below
    2**-(prec + 20), log1p(t) and expm1(t) are t to the requested precision."""
    import subprocess
    import sys

    code = ("import sympy; from symact.primitives import Softplus, LogSigmoid, Expm1, Log1p\n"
            "u = sympy.Rational(10**7, 3); t = sympy.Rational(7, 10**50000)\n"
            "print(Softplus(u).evalf(30)); print(LogSigmoid(u).evalf(30)); print(Softplus(-u).evalf(30))\n"
            "print(Expm1(-t).evalf(30)); print(Log1p(t).evalf(30))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    with mpmath.workdps(60):
        u = mpmath.mpf(10**7) / 3
        expected = [u, -mpmath.exp(-u), mpmath.exp(-u), -7 * mpmath.mpf(10) ** -50000, 7 * mpmath.mpf(10) ** -50000]
        for got, want in zip(lines, expected):
            assert abs((mpmath.mpf(got) - want) / want) < 1e-29, (got, want)


@pytest.mark.parametrize("u", [sympy.Rational(-10**5, 3), -2, sympy.Rational(-3, 2), -1])
def test_log1p_evalf_below_minus_one_is_sympy_s_complex_log(u):
    # sympy.Float of the complex log was mpmath's bare TypeError "cannot create mpf from ... *I"
    assert Log1p(u).evalf(30) == sympy.log(1 + u).evalf(30)


# slope and curvature: the first and second derivatives at the point, from the series
# 1 + x/2 + x**2/6, 1 - u**2/6 (u = x - 2) and 1 - x/2 + x**2/3
@pytest.mark.parametrize("formula, point, slope, curvature", [
    ("Piecewise(((exp(x) - 1)/x, Ne(x, 0)), (1, True))", 0, sympy.Rational(1, 2), sympy.Rational(1, 3)),
    ("Piecewise((sin(x - 2)/(x - 2), Ne(x, 2)), (1, True))", 2, 0, -sympy.Rational(1, 3)),
    ("Piecewise((1, Eq(x, 0)), (log(1 + x)/x, True))", 0, -sympy.Rational(1, 2), sympy.Rational(2, 3)),
])
def test_removable_point_branch_on_the_input_differentiates_to_the_limit(formula, point, slope, curvature):
    """A branch holding at one input value alone (the value of a removable 0/0 there) is a constant:
    differentiated, it gave 0 at the point ((exp(x) - 1)/x: 0 where the limit of the derivative is 1/2).
    It becomes its neighbours' Taylor polynomial at the point, as a parameter's Eq branch does, so the
    first and second derivatives there are the limits (exact values of the series) and the value is kept."""
    expr = sympy.sympify(formula, locals={"x": x})
    first = safe_derivative(expr, x)
    assert first.xreplace({x: sympy.Integer(point)}) == slope
    second = safe_derivative(first, x)
    assert sympy.simplify(second.xreplace({x: sympy.Integer(point)}) - curvature) == 0
    assert safe_form(expr).xreplace({x: sympy.Integer(point)}) == 1


def test_erfcx_of_an_argument_unbounded_below_is_an_overflow_hazard_once():
    """Erfcx(u) ~ 2*exp(u**2) overflows as u -> -oo (float32 from u = -9.4): it was no hazard, so exp(x)*erfc(x)'s
    slope was chosen as (sqrt(pi)*Erfcx(x) - 2)*exp(x)*exp(-x**2)/sqrt(pi), inf at x = -10 in float32 (9.1e-5).
    Once per argument: the slope rule's Piecewise holds Erfcx(u) in both branches."""
    assert hazards(Erfcx(x), (x,)).overflow == 1
    assert hazards(Erfcx(-x) + x * Erfcx(-x), (x,)).overflow == 1
    assert hazards(Erfcx(x**2) + Erfcx(sympy.Abs(x) + 1), (x,)).overflow == 0
    assert hazards(sympy.diff(x * Erfcx(x), x), (x,)).overflow == 1
    slope = safe_derivative(sympy.exp(x) * sympy.erfc(x), x)
    # Erfcx only where its argument is positive (the safe form's Piecewise), erfc where it would overflow
    assert isinstance(slope, sympy.Piecewise) and slope.args[0][1] == (x > 0), slope
    assert not slope.args[1][0].has(Erfcx), slope
    assert sympy.simplify(slope.args[1][0] - sympy.diff(sympy.exp(x) * sympy.erfc(x), x)) == 0


def test_erfcx_in_a_branch_that_bounds_its_argument_below_is_no_hazard_but_beside_a_decaying_exp_it_is():
    """Erfcx(u) in a Piecewise branch whose condition keeps u above a number cannot overflow there; outside one, an
    Erfcx(u) beside a decaying exp is inf*0 where Erfcx overflows first: exp(x**2/2)*erfc(x)'s slope was chosen as
    (sqrt(pi)*x*Erfcx(x) - 2)*exp(-x**2/2)/sqrt(pi), -inf at x = -30 in float64 (-1.6e197) and NaN from -38."""
    assert hazards(sympy.Piecewise((Erfcx(x), x > 0), (1, True)), (x,)).overflow == 0
    assert hazards(sympy.Piecewise((Erfcx(x), x > -3), (1, True)), (x,)).overflow == 0
    assert hazards(sympy.Piecewise((Erfcx(-x / 2), x < 0), (1, True)), (x,)).overflow == 0
    assert hazards(sympy.Piecewise((Erfcx(x), x < 0), (1, True)), (x,)).overflow == 1
    assert hazards(sympy.Piecewise((1, x > 0), (Erfcx(x), True)), (x,)).overflow == 1
    assert hazards((x * Erfcx(x) - 2) * sympy.exp(-x**2 / 2), (x,)).overflow == 2
    assert hazards((x * Erfcx(x) - 2) * sympy.exp(x**2), (x,)).overflow == 2  # exp(x**2) itself: it does not decay
    slope = safe_derivative(sympy.exp(x**2 / 2) * sympy.erfc(x), x)
    assert isinstance(slope, sympy.Piecewise) and not slope.args[1][0].has(Erfcx), slope


_v = sympy.Symbol("v", real=True)


@pytest.mark.parametrize("expr, wrt, points", [
    (sympy.Max(x, x**3), x, (1, -1, 0)),                   # slopes (1, 3) at 1 and -1, (1, 0) at 0
    (sympy.Min(x, x**3), x, (1, -1, 0)),
    (sympy.Max(sympy.sin(x), x / 2), x, (0,)),             # slopes cos(0) = 1 and 1/2
    (sympy.Max(x**2, 2 * x - 1), x, (1,)),                  # x**2 everywhere: 2 at its touching point
    (sympy.Min(-x**2, 1 - 2 * x), x, (1,)),                 # -x**2 everywhere: -2
    (sympy.Max(x, _v * x).xreplace({_v: sympy.Rational(1, 4)}), x, (0,)),
    # more than two arguments (SymPy flattens Max(-1, Max(x, x/4)), a clipped leaky_relu, to Max(-1, x/4, x))
    (sympy.Max(-1, sympy.Max(x, x / 4)), x, (0, -4, -1)),
    (sympy.Max(0, x, x**3), x, (1, 0, -1)),
    (sympy.Min(1, x, 2 * x), x, (0, sympy.Rational(1, 2), 1)),
    # a slope with a step of its own (Max(0, x)' = Heaviside(x)): Min(Max(0, x), x**2) at 1 is x**2 (slope 2)
    # on the left and x (slope 1) on the right; at 2, Min(Max(0, x), 1 + x/2) has the slopes 1 and 1/2
    (sympy.Min(sympy.Max(0, x), x**2), x, (1, 0, sympy.Rational(1, 2), -1)),
    (sympy.Min(sympy.Max(0, x), 1 + x / 2), x, (2, -2, 0)),
    (sympy.Max(sympy.Min(0, x), x**3), x, (-1, 0)),                # at -1: x on the left, x**3 on the right
    # at 0 the branch Max(x/2, x**3) has a kink of its own (slopes 0 and 1/2, convention 0): one-sided 1 and 1/2
    (sympy.Min(sympy.Max(-1, x), sympy.Max(x / 2, x**3)), x, (0, 1, -1, -2)),
    # the same with three arguments: at 0, x and Max(x/2, x**2) (kinked there) tie; at 1/2, x/4 and x**3
    (sympy.Min(1, x, sympy.Max(x**2, x / 2)), x, (0, sympy.Rational(1, 2), 1)),
    (sympy.Max(-1, x / 4, sympy.Min(x, x**3)), x, (sympy.Rational(1, 2), 1, -4)),
], ids=["max_x_x3", "min_x_x3", "max_sin_half", "max_touching", "min_touching", "leaky", "clipped_leaky",
        "max_0_x_x3", "min_1_x_2x", "min_relu_square", "min_relu_line", "max_min_cube",
        "min_of_kinked_branches", "min_of_three_kinked", "max_of_three_kinked"])
def test_tie_with_slopes_that_depend_on_the_input_takes_the_least_one_sided_slope(expr, wrt, points):
    """Max(x, x**3)'(1) was 0: a tie whose slopes depend on x (1 and 3 at x = 1) had both Heavisides 0,
    neither one-sided slope; Max(x**2, 2*x - 1), which is x**2, had the slope 0 at x = 1 instead of 2.
    A Max/Min of three or more arguments had every tie 0 (Max(-1, x/4, x)'(0) = 0, not 1/4).
    A tie whose slope holds a step of its own had both 0: Min(Max(0, x), x**2)'(1) = 0, not 1.
    The convention (the one-sided slope of least magnitude, 0 where they differ in sign) now compares the
    slopes where the tie is.  Reference: the formula's own one-sided difference quotients."""
    from symact.primitives import pytorch_kink_convention

    slope = safe_derivative(expr, wrt)
    convention = pytorch_kink_convention(sympy.diff(expr, wrt), expr, wrt)
    for point in map(sympy.Rational, points):
        expected = least_one_sided_slope(expr, point, wrt)
        for derivative in (slope, convention):
            got = derivative.xreplace({wrt: point})
            assert abs(float(got) - expected) <= 1e-12, (expr, point, derivative, got, expected)


def _one_sided_quotients(expr, point, wrt=x):
    """(right, left) difference quotients of ``expr`` at ``point``, h = +-1e-30, at 50 digits (no derivative code)."""
    f0 = expr.xreplace({wrt: point})
    return [float(sympy.N((expr.xreplace({wrt: point + h}) - f0) / h, 50))
            for h in (sympy.Rational(1, 10**30), -sympy.Rational(1, 10**30))]


def _uniform_smoothed_hardshrink():
    from symact.smooth import convolve

    return convolve("hardshrink", "uniform", sympy.Rational(1, 2)).expr


_a = sympy.Symbol("alpha", positive=True)


@pytest.mark.parametrize("expr, point", [
    (sympy.Max(x, 0) + sympy.Min(x, 0), 0),                                   # x itself: 1, was 0 + 0
    (sympy.Max(x - 1, 0) + sympy.Min(x - 1, 0) + x**2, 1),                     # x - 1 + x**2: 3
    (sympy.Max(0, x) + sympy.Min(0, sympy.exp(x) - 1), 0),                    # celu(alpha = 1) as torch writes it
    (sympy.Max(0, x) + sympy.Min(0, _a * (sympy.exp(x / _a) - 1)), 0),         # ... with its alpha a parameter
    (sympy.Abs(x) + sympy.Piecewise((2 * x, x < 0), (0, True)), 0),            # sign and a Piecewise: x
    (_uniform_smoothed_hardshrink(), 0),                                       # 1/2, was 0
], ids=["max_plus_min", "shifted_plus_square", "celu_as_torch_writes_it", "celu_with_alpha", "abs_plus_piecewise",
        "hardshrink_uniform"])
def test_slope_where_kinks_of_several_constructs_cancel_is_the_function_s_slope(expr, point):
    """Each Max/Min/Abs takes its own convention at its kink (relu'(0) = 0), so where kinks of two constructs
    meet and cancel the derivative was the sum of conventions, not the slope: Max(x, 0) + Min(x, 0) (= x) had
    0 at 0, uniform-smoothed hardshrink (width 1/2) 0 where its slope is 1/2.  Where the one-sided slopes
    agree the derivative is now that slope.  Reference: the formula's one-sided difference quotients at 50
    digits, which agree there."""
    from symact.primitives import pytorch_kink_convention

    at = {_a: sympy.Rational(3, 2)} if expr.has(_a) else {}
    right, left = _one_sided_quotients(expr.xreplace(at), sympy.Integer(point))
    assert abs(right - left) <= 1e-12  # differentiable there: the reference is that common slope
    convention = pytorch_kink_convention(sympy.diff(expr, x), expr, x)
    for derivative in (safe_derivative(expr, x), convention):
        got = float(derivative.xreplace({**at, x: point}))
        assert abs(got - right) <= 1e-12, (expr, derivative, got, right)


@pytest.mark.parametrize("expr, point, expected", [
    # one-sided slopes 2 and 1: a kink, where each construct keeps its own 0 (torch: relu(x) - 2*relu(-x))
    (sympy.Max(x, 0) + 2 * sympy.Min(x, 0), 0, 0.0),
    # a jump of the function at 0 (Heaviside), whose derivative is 1 on both sides: not differentiable there
    (sympy.Heaviside(x) + sympy.Max(x, 0) + sympy.Min(x, 0), 0, 0.0),
], ids=["kink", "jump"])
def test_slope_where_kinks_meet_without_cancelling_keeps_each_construct_s_convention(expr, point, expected):
    """The common one-sided slope is taken only where the function is differentiable: at a kink (one-sided
    slopes 2 and 1) and at a jump the derivative stays the sum of the constructs' conventions, 0 + 0 as
    torch's relu(x) - 2*relu(-x) gives at 0.  Reference: torch's built-ins' convention, each term's 0."""
    from symact.primitives import pytorch_kink_convention

    h = sympy.Rational(1, 10**30)
    jump = abs(float(sympy.N(expr.xreplace({x: point + h}) - expr.xreplace({x: point - h}), 50)))
    right, left = _one_sided_quotients(expr, sympy.Integer(point))
    assert jump > 0.5 or abs(right - left) > 0.5  # not differentiable there
    convention = pytorch_kink_convention(sympy.diff(expr, x), expr, x).replace(
        lambda e: isinstance(e, sympy.DiracDelta), lambda e: 0)
    for derivative in (safe_derivative(expr, x), convention):
        assert float(derivative.xreplace({x: point})) == expected, derivative


def test_higher_derivative_where_kinks_cancel_is_decided_on_the_lower_derivative():
    """Max(x, 0)**2/2 + Min(x, 0)**2/2 is x**2/2 (its second derivative is 1 everywhere); Activation.derivative(2)
    gave 0 at 0, the sum of its Heavisides' conventions.  With Min(x, 0)**2 instead the first derivative has a
    kink at 0 (slopes 2 and 1) and the second derivative keeps the conventions' 0 there.  Reference: the closed
    form x**2/2 (checked equal to the formula), the one-sided slopes of the first derivative's closed form, and
    SymPy's own second derivative with each Heaviside 0 at 0 where the first derivative jumps."""
    import symact

    smooth = symact.activation("Max(x, 0)**2/2 + Min(x, 0)**2/2")
    assert all(smooth.expr.xreplace({smooth.x: p}) == sympy.Rational(p)**2 / 2 for p in (-3, -1, 2, 5))
    second = smooth.derivative(2)
    assert [second(p) for p in (-1, 0, 1)] == [1, 1, 1]
    kinked = symact.activation("Max(x, 0)**2/2 + Min(x, 0)**2").derivative(2)
    assert [kinked(p) for p in (-1, 0, 1)] == [2, 0, 1]  # 2*x for x < 0, x for x > 0: one-sided 2 and 1 at 0
    # relu(x) + x**2: the second derivative's one-sided limits agree (2), but the first derivative jumps at 0, so
    # it is not twice differentiable there: each Heaviside keeps its 0 (SymPy's own second derivative with
    # Heaviside(0) = 0), where deciding on the function itself (continuous) took 2
    jump = symact.activation("Max(x, 0) + x*Max(x, 0) + x*Min(x, 0)")
    raw = sympy.diff(jump.expr, jump.x, 2).replace(lambda e: isinstance(e, sympy.DiracDelta), lambda e: 0)
    expected = raw.replace(lambda e: isinstance(e, sympy.Heaviside), lambda e: sympy.Heaviside(e.args[0], 0))
    got = jump.derivative(2).expr.replace(lambda e: isinstance(e, sympy.DiracDelta), lambda e: 0)  # the sampled part
    assert got.xreplace({jump.x: 0}) == expected.xreplace({jump.x: 0}) == 0


def test_tie_in_a_gated_product_compares_the_slopes_at_the_gate_s_value():
    """Max(x, v*x) in x: at v = 1 it is x itself (slope 1 at every x, the tie included), at x = 0 with
    v = 1/4 the slope is 1/4 (leaky_relu's); both were 0, as the slope v holds an input."""
    expr = sympy.Max(x, _v * x)
    slope = safe_derivative(expr, x, (x, _v))
    assert slope.xreplace({x: 3, _v: 1}) == 1
    assert slope.xreplace({x: -2, _v: 1}) == 1
    assert slope.xreplace({x: 0, _v: sympy.Rational(1, 4)}) == sympy.Rational(1, 4)
    assert slope.xreplace({x: 0, _v: -1}) == 0      # |x|: opposite slopes
    assert slope.xreplace({x: 0, _v: 3}) == 1       # slopes 1 and 3: the lesser
    # d/dv: one slope is 0 (the branch x does not hold v), so 0 at the tie, x where v*x wins
    in_v = safe_derivative(expr, _v, (x, _v))
    assert in_v.xreplace({x: 2, _v: 1}) == 0 and in_v.xreplace({x: 2, _v: 3}) == 2


# ------------------------------------------------------------------ FermiDirac(n, u) = -polylog(n, -exp(u))
def _mp_fermi_dirac(n: int, u) -> mpmath.mpf:
    """-polylog(n, -exp(u)) by mpmath (n = 1: log(1 + exp(u)), n = 0: the sigmoid), at the caller's precision."""
    u = mpmath.mpf(u)
    if n == 0:
        return 1 / (1 + mpmath.exp(-u))
    if n == 1:
        return mpmath.log1p(mpmath.exp(u))
    return -mpmath.polylog(n, -mpmath.exp(u))


@pytest.mark.parametrize("n", [2, 3, 4])
@pytest.mark.parametrize("arg", [*ARGUMENTS, "-1e5", "1e5", "0"])
def test_fermi_dirac_evalf_matches_mpmath_at_40_digits(n, arg):
    from symact.primitives import FermiDirac

    with mpmath.workdps(60):
        expected = _mp_fermi_dirac(n, arg)
    value = FermiDirac(n, sympy.Float(arg, 60)).evalf(40)
    with mpmath.workdps(60):
        assert abs(mpmath.mpf(str(value)) - expected) < mpmath.mpf("1e-38") * expected, (n, arg, value, expected)


def test_fermi_dirac_derivative_is_the_order_below_down_to_softplus_and_sigmoid():
    """d/du F_n = F_(n-1), F_1 = Softplus, F_0 = Sigmoid: each derivative stays in the vocabulary with no overflow
    hazard or log, and agrees at 30 digits with SymPy's derivative of -polylog(n, -exp(u))."""
    from symact.primitives import FermiDirac

    assert FermiDirac(1, x) == Softplus(x) and FermiDirac(0, x) == Sigmoid(x)
    for n in (2, 3, 4):
        derivative = sympy.diff(FermiDirac(n, x), x)
        assert derivative == FermiDirac(n - 1, x)
        assert hazards(derivative, (x,)).overflow == 0 and derivative.atoms(sympy.log) == set()
        elementary = sympy.diff(-sympy.polylog(n, -sympy.exp(x)), x)
        for point in ("-3.5", "0.25", "4"):
            lhs = derivative.subs(x, sympy.Float(point, 40)).evalf(30)
            rhs = elementary.subs(x, sympy.Float(point, 40)).evalf(30)
            assert abs(lhs - rhs) <= sympy.Float("1e-28") * abs(rhs), (n, point)
    assert sympy.diff(FermiDirac(2, x**2), x) == 2 * x * Softplus(x**2)


def test_fermi_dirac_values_at_special_points_and_refused_orders():
    """F_n(0) = eta(n) (pi**2/12, 3*zeta(3)/4), F_n(-oo) = 0, F_n(oo) = oo; a non-whole or negative order is refused
    with the fix, as is the 2-argument FermiDirac called like the 1-argument primitives."""
    from symact.errors import DomainError
    from symact.primitives import FermiDirac

    assert FermiDirac(2, 0) == sympy.pi**2 / 12
    with mpmath.workdps(40):
        assert abs(mpmath.mpf(str(FermiDirac(3, 0).evalf(35))) - 3 * mpmath.zeta(3) / 4) < mpmath.mpf("1e-33")
    assert FermiDirac(3, -sympy.oo) == 0 and FermiDirac(2, sympy.oo) == sympy.oo
    assert FermiDirac(2, x).is_positive and FermiDirac(3, x).is_real
    assert to_elementary(3 * FermiDirac(2, x)) == -3 * sympy.polylog(2, -sympy.exp(x))
    for order in (sympy.Rational(5, 2), -1, sympy.Symbol("n")):
        with pytest.raises(DomainError, match="whole order n >= 0"):
            FermiDirac(order, x)
    with pytest.raises(TypeError):
        FermiDirac(x)


@pytest.mark.parametrize("naive, safe", [
    (sympy.polylog(2, -sympy.exp(x)), "-FermiDirac(2, x)"),
    (-2 * sympy.polylog(3, -sympy.exp(x / 10)), "2*FermiDirac(3, x/10)"),
    (sympy.polylog(2, -4 * sympy.exp(x - 3)), "-FermiDirac(2, x - 3 + log(4))"),
    (sympy.polylog(2, -sympy.exp(x) * sympy.exp(-x**2)), "-FermiDirac(2, -x**2 + x)"),
    (sympy.polylog(1, -2 * sympy.exp(x)), "-Softplus(x + log(2))"),  # SymPy leaves polylog(1, z) unevaluated
    (sympy.polylog(2, x), "polylog(2, x)"),  # not -exp(u): left to the code generator, which refuses it
    (sympy.polylog(2, sympy.exp(x)), "polylog(2, exp(x))"),
])
def test_safe_form_writes_polylog_of_minus_exp_as_fermi_dirac(naive, safe):
    from symact.primitives import FermiDirac

    expected = sympy.sympify(safe, locals={"FermiDirac": FermiDirac, "Softplus": Softplus, "x": x})
    # the rewrite pass factors polynomial arguments (x - x**2 -> -x*(x - 1)): compared expanded
    def expanded(e):
        return e.replace(lambda f: isinstance(f, FermiDirac), lambda f: FermiDirac(f.args[0], sympy.expand(f.args[1])))

    assert expanded(safe_form(naive)) == expanded(expected)
    if expected.has(FermiDirac, Softplus):  # an identity: at 30 digits, where exp(u) is large too
        for point in ("-2.5", "0.75", "40"):
            a = naive.subs(x, sympy.Float(point, 50)).evalf(30)
            b = to_elementary(expected).subs(x, sympy.Float(point, 50)).evalf(30)
            assert abs(a - b) <= sympy.Float("1e-27") * abs(a)


def test_fermi_dirac_reflection_polynomial_is_the_inversion_formula():
    """P_2 = u**2/2 + pi**2/6 and P_3 = u**3/6 + pi**2*u/6 (the inversion formulas of Li_2 and Li_3); for n = 4 and
    5, F_n(u) - (-1)**(n + 1)*F_n(-u) = P_n(u) at 40 digits by mpmath; every coefficient is >= 0 (no cancellation
    for u > 0)."""
    from symact.primitives import fermi_dirac_reflection_polynomial

    u = sympy.Symbol("u")
    as_poly = {n: sympy.Poly(fermi_dirac_reflection_polynomial(n), u) for n in range(2, 7)}
    assert as_poly[2].as_expr() == u**2 / 2 + sympy.pi**2 / 6
    assert as_poly[3].as_expr() == u**3 / 6 + sympy.pi**2 * u / 6
    for n, poly in as_poly.items():
        assert all(c.is_nonnegative for c in poly.all_coeffs()), (n, poly)
        assert poly.degree() == n and poly.LC() == 1 / sympy.factorial(n)
    for n in (4, 5):
        evaluate = sympy.lambdify(u, as_poly[n].as_expr(), "mpmath")
        with mpmath.workdps(50):
            for point in ("0.7", "3", "25"):
                v = mpmath.mpf(point)
                reflected = _mp_fermi_dirac(n, v) - (-1) ** (n + 1) * _mp_fermi_dirac(n, -v)
                assert abs(reflected - evaluate(v)) < mpmath.mpf("1e-40") * evaluate(v), (n, point)


@pytest.mark.parametrize("n", [2, 3, 4, 6])
def test_fermi_dirac_series_is_cut_where_its_rest_is_below_an_eighth_of_an_ulp(n):
    """For u <= 0, F_n(u) = s*R(s), s = log(1 + exp(u)) in (0, log 2]: R's coefficients, cut for float32 (24 bits)
    and float64 (53), summed exactly (mpmath, 50 digits) are within 2**-bits/8 of F_n by mpmath over u in
    [-40, 0], where the rest is largest at u = 0; the float32 series is the float64 one's start."""
    from symact.primitives import fermi_dirac_series_coefficients

    short, long = fermi_dirac_series_coefficients(n, 24), fermi_dirac_series_coefficients(n, 53)
    assert long[:len(short)] == short and 6 <= len(short) < len(long) <= 20
    assert short[0] == 1 and all(c > 0 for c in short[:3])  # 1 + ... and no cancellation in the leading terms
    with mpmath.workdps(50):
        for bits, coefficients in ((24, short), (53, long)):
            terms = [mpmath.mpf(sympy.Rational(c).p) / sympy.Rational(c).q for c in coefficients]
            for point in ["0", "-1e-12", "-0.3", "-1", "-2.5", "-7", "-40"]:
                s = mpmath.log1p(mpmath.exp(mpmath.mpf(point)))
                value = s * mpmath.polyval(terms[::-1], s)
                exact = _mp_fermi_dirac(n, point)
                assert abs(value - exact) <= mpmath.mpf(2) ** -bits / 8 * exact, (n, bits, point)


def test_safe_derivative_of_an_exponential_with_a_long_exact_coefficient_returns_in_seconds():
    """kernel_maps makes a shaped activation's 15-digit Floats exact (nsimplify): softplus(0.810279544733469*x + ...)
    holds exp(810279544733469*x/10**15), which SymPy's polynomials write as the 810279544733469th power of
    exp(x/10**15).  safe_derivative factored a Piecewise branch holding it and ran out of memory (23 GB after 4
    minutes).  Subprocess with 4 GB of address space: a regression fails instead of taking the machine down.
    Reference: the slope of the elementary formula, A*c*k*exp(k*x)/(c*exp(k*x) + 1), in mpmath at 50 digits."""
    import subprocess
    import sys
    from pathlib import Path

    code = """
import resource
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
import sympy
from symact.primitives import safe_derivative
x = sympy.Symbol("x", real=True)
A, c, k = (sympy.Rational(204651721641367, 10**14), sympy.Rational(76022048785949, 5 * 10**13),
           sympy.Rational(810279544733469, 10**15))
slope = safe_derivative(A * sympy.log(c * sympy.exp(k * x) + 1) - sympy.Rational(25534743352083, 12500000000000), x)
for t in ("-40", "-0.5", "0", "0.5", "40"):
    print(t, sympy.N(slope.subs(x, sympy.Rational(t)), 30))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=str(Path(__file__).resolve().parents[1]))
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.split("\n")[:5]
    with mpmath.workdps(50):
        A, c, k = mpmath.mpf(204651721641367) / 10**14, mpmath.mpf(76022048785949) / (5 * 10**13), \
            mpmath.mpf(810279544733469) / 10**15
        for line in lines:
            t, got = (mpmath.mpf(v) for v in line.split())
            want = A * c * k * mpmath.exp(k * t) / (c * mpmath.exp(k * t) + 1)
            assert abs(got / want - 1) < mpmath.mpf(10) ** -25, (t, got, want)


def test_a_negative_sum_kept_inside_a_product_counts_as_a_negative_term():
    """SymPy keeps -x - exp(2*x) inside x*(-x - exp(2*x)), a term whose number coefficient is +1: the cancellation count
    saw only positive terms in x**2 + x*(-x - exp(2*x)) + exp(2*x), where x**2 cancels exactly, so the slope of
    x/sqrt(x**2 + x**4 + exp(2*x)) was chosen as written, (x**4 + x**2 + x*(-2*x**3 - x - exp(2*x)) + exp(2*x))/(...)
    **(3/2): -inf at x = 3e38 in float32 (1.7e308 in float64) where it is ~0.  A factor that is a sum of negative
    terms (to an odd power) now flips the term's sign; the cancelled form -x**4 - x*exp(2*x) + exp(2*x) is chosen."""
    e2 = sympy.exp(2 * x)
    assert hazards(x**2 + x * (-x - e2) + e2, (x,)).cancellation == 1
    assert hazards(x**2 + x * (-x - e2) ** 3, (x,)).cancellation == 1
    assert hazards(x**2 + x * (-x - e2) ** 2, (x,)).cancellation == 0  # an even power is positive
    assert hazards(x**2 + x * (x + e2), (x,)).cancellation == 0
    assert hazards(x**2 - x * (-x - 1), (x,)).cancellation == 0  # -x*(-x - 1) = x**2 + x: both positive
    slope = safe_derivative(x / sympy.sqrt(x**2 + x**4 + e2), x)
    assert hazards(slope, (x,)).cancellation == 1, slope  # the one sum that cancels in exact arithmetic too
    assert sympy.simplify(slope - sympy.diff(x / sympy.sqrt(x**2 + x**4 + e2), x)) == 0
