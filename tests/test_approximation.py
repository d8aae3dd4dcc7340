"""Smooth approximations with a shape parameter (analysis.approximation)."""

from __future__ import annotations

import re

import mpmath
import pytest
import sympy

from analysis.approximation import (
    asymptotic_expansion,
    dominance_threshold,
    error_expression,
    match_conditions,
    minimax,
)
from symact.errors import DomainError, FormulaError

x = sympy.Symbol("x", real=True)
b = sympy.Symbol("b", positive=True)
beta = sympy.Symbol("beta", positive=True)
sigma = sympy.Symbol("sigma", positive=True)
mu = sympy.Symbol("mu", positive=True)
ALPHA = sympy.Rational(1, 4)

SQUAREPLUS = (x + sympy.sqrt(x**2 + b)) / 2
SOFTPLUS = sympy.log(1 + sympy.exp(x))
SOFTPLUS_BETA = sympy.log(1 + sympy.exp(beta * x)) / beta
RELU = sympy.Max(0, x)
LEAKY = sympy.Max(x, ALPHA * x)
SAU = ((1 - ALPHA) * sigma / sympy.sqrt(2 * sympy.pi) * sympy.exp(-x**2 / (2 * sigma**2))
       + (1 + ALPHA) / 2 * x + (1 - ALPHA) / 2 * x * sympy.erf(x / (sympy.sqrt(2) * sigma)))
SMU = ((1 + ALPHA) * x + (1 - ALPHA) * x * sympy.erf(mu * (1 - ALPHA) * x)) / 2


def test_exact_conditions_give_4_ln2_squared_and_4():
    conditions = match_conditions(SQUAREPLUS, SOFTPLUS, b, ["value", "curvature"])
    assert conditions["value"] == (4 * sympy.log(2) ** 2,)
    assert conditions["curvature"] == (4,)
    # squareplus's slope at 0 is 1/2 for every b, as softplus's: the condition fixes nothing
    with pytest.raises(DomainError, match="every value"):
        match_conditions(SQUAREPLUS, SOFTPLUS, b, ["slope"])


def test_conditions_for_other_families():
    # softplus(beta) at 0 is log(2)/beta: never 0 = relu(0) for positive beta
    assert match_conditions(SOFTPLUS_BETA, RELU, beta, ["value"]) == {"value": ()}
    # SMU's curvature at 0 vs softplus-like curvature 1/4 is solvable in mu:
    # SMU''(0) = 2 (1-a)^2 mu / sqrt(pi)
    sol = match_conditions(SMU, SOFTPLUS, mu, ["curvature"])["curvature"]
    assert len(sol) == 1
    assert sympy.simplify(sol[0] - sympy.sqrt(sympy.pi) / (8 * (1 - ALPHA) ** 2)) == 0


def test_error_expression_is_candidate_minus_target():
    e = error_expression(SQUAREPLUS, SOFTPLUS)
    assert sympy.simplify(e - (SQUAREPLUS - SOFTPLUS)) == 0
    # even in x: squareplus(-x) = squareplus(x) - x and likewise softplus
    assert sympy.simplify(e.subs(x, -x) - e) == 0


def test_squareplus_dominates_softplus_iff_b_at_least_4_ln2_squared():
    result = dominance_threshold(SQUAREPLUS, SOFTPLUS, b)
    assert result.value == 4 * sympy.log(2) ** 2
    assert result.argmax == 0
    # p*(x) = 4 softplus(x) softplus(-x), the independent closed form
    assert sympy.simplify(
        sympy.expand_log(result.threshold_function - 4 * SOFTPLUS * SOFTPLUS.subs(x, -x), force=True)).equals(0)
    # property check of the "iff": just below the threshold it fails at 0, at it the error is >= 0
    below = sympy.lambdify(x, (SQUAREPLUS - SOFTPLUS).subs(b, 4 * sympy.log(2) ** 2 * (1 - sympy.Rational(1, 10**6))), "mpmath")
    at = sympy.lambdify(x, (SQUAREPLUS - SOFTPLUS).subs(b, 4 * sympy.log(2) ** 2), "mpmath")
    with mpmath.workdps(30):
        assert below(mpmath.mpf(0)) < 0
        assert min(at(mpmath.mpf(i) / 20) for i in range(-400, 401)) > -mpmath.mpf(10) ** -28


def _independent_minimax(dps):
    """Brute force written without SymPy: hand-coded error and derivative, findroot for the bump,
    then findroot on b for e(0) + e(x1) = 0 (the equioscillation +E, -E, +E of the even error)."""
    with mpmath.workdps(dps):
        def e(t, bb):
            return (t + mpmath.sqrt(t * t + bb)) / 2 - mpmath.log1p(mpmath.exp(t))

        def de(t, bb):
            return (1 + t / mpmath.sqrt(t * t + bb)) / 2 - 1 / (1 + mpmath.exp(-t))

        def bump(bb):
            # coarse maximisation on a grid, then Newton on the derivative
            grid = [mpmath.mpf(i) / 20 for i in range(1, 400)]
            start = max(grid, key=lambda t: e(t, bb))
            return mpmath.findroot(lambda t: de(t, bb), start)

        bb = mpmath.findroot(lambda bb: e(0, bb) + e(bump(bb), bb), mpmath.mpf("1.5"))
        return bb, -e(0, bb), bump(bb)


def test_squareplus_softplus_minimax_matches_independent_computation():
    result = minimax(SQUAREPLUS, SOFTPLUS, b, dps=30)
    b_ref, err_ref, x1_ref = _independent_minimax(45)
    tol = mpmath.mpf(10) ** -15
    assert abs(result.parameter_value - b_ref) < tol * b_ref
    assert abs(result.max_error - err_ref) < tol * err_ref
    # the result is in fact good to about 30 digits
    assert abs(result.parameter_value - b_ref) < mpmath.mpf(10) ** -27
    # equioscillation at (-x1, 0, x1) with signs +, -, +
    assert result.signs == (1, -1, 1) and result.equioscillates
    assert abs(result.abscissae[0] + x1_ref) < tol and abs(result.abscissae[2] - x1_ref) < tol
    assert abs(result.abscissae[1]) < tol
    # brute force: no sample beats the reported maximum
    with mpmath.workdps(30):
        f = sympy.lambdify(x, (SQUAREPLUS - SOFTPLUS).subs(b, sympy.Float(result.parameter_value, 30)), "mpmath")
        assert max(abs(f(mpmath.mpf(i) / 40)) for i in range(-2000, 2001)) <= result.max_error * (1 + mpmath.mpf(10) ** -25)
    # the minimax b lies below the dominance threshold 4 ln^2 2 and the curvature match 4
    assert result.parameter_value < 4 * mpmath.log(2) ** 2 < 4


def test_minimax_without_interior_optimum_raises():
    # softplus(beta) -> relu as beta -> oo with max error log(2)/beta: no finite minimiser
    with pytest.raises(DomainError, match="no interior minimax"):
        minimax(SOFTPLUS_BETA, RELU, beta, dps=15)


@pytest.mark.parametrize("name, formula, point", [
    ("silu", x / (1 + sympy.exp(-x)), -sympy.oo),
    ("mish", x * sympy.tanh(sympy.log(1 + sympy.exp(x))), -sympy.oo),
    ("silu", x / (1 + sympy.exp(-x)), sympy.oo),
    ("squareplus", SQUAREPLUS.subs(b, 4), -sympy.oo),
])
def test_asymptotic_expansion_order_term_bounds_the_remainder(name, formula, point):
    # was: silu at -oo gave x*exp(x) - x*exp(2*x) + O(exp(3*x)), SymPy's series' order term, while the
    # remainder is ~ x*exp(3*x): remainder / O-term grew like |x|.  Checked with 60-digit mpmath far out.
    expansion = asymptotic_expansion(formula, point, 3)
    order_term = expansion.getO().expr
    f = sympy.lambdify(x, formula - expansion.removeO(), "mpmath")
    g = sympy.lambdify(x, order_term, "mpmath")
    side = 1 if point is sympy.oo else -1
    with mpmath.workdps(200):  # the remainder at x = -80 is ~1e-100 of the terms
        ratios = [abs(f(mpmath.mpf(side * r)) / g(mpmath.mpf(side * r))) for r in (20, 40, 80)]
    assert max(ratios) < 2 * max(ratios[0], mpmath.mpf(10) ** -30), (name, expansion, ratios)


def test_asymptotic_expansions_against_hand_series():
    # sqrt(x^2 + b) = |x| (1 + b/(2x^2) - b^2/(8x^4) + b^3/(16 x^6) - ...)
    at_inf = asymptotic_expansion(SQUAREPLUS, sympy.oo, 6).removeO()
    assert sympy.simplify(at_inf - (x + b / (4 * x) - b**2 / (16 * x**3) + b**3 / (32 * x**5))) == 0
    at_minus_inf = asymptotic_expansion(SQUAREPLUS, -sympy.oo, 6).removeO()
    assert sympy.simplify(at_minus_inf - (-b / (4 * x) + b**2 / (16 * x**3) - b**3 / (32 * x**5))) == 0
    # softplus Taylor series at 0: log 2 + x/2 + x^2/8 - x^4/192
    at_zero = asymptotic_expansion(SOFTPLUS, 0, 6).removeO()
    assert sympy.simplify(at_zero - (sympy.log(2) + x / 2 + x**2 / 8 - x**4 / 192)) == 0
    # softplus at -oo: log(1 + u), u = e^x
    u = sympy.exp(x)
    at_minus = asymptotic_expansion(SOFTPLUS, -sympy.oo, 4).removeO()
    assert sympy.simplify(at_minus - (u - u**2 / 2 + u**3 / 3)) == 0
    # squareplus at 0: sqrt(b)/2 + x/2 + x^2/(4 sqrt b) - x^4/(16 b^(3/2))
    sq0 = asymptotic_expansion(SQUAREPLUS, 0, 5).removeO()
    assert sympy.simplify(sq0 - (sympy.sqrt(b) / 2 + x / 2 + x**2 / (4 * sympy.sqrt(b)) - x**4 / (16 * b**sympy.Rational(3, 2)))) == 0


def test_minimax_smooth_single_branch_optimum():
    # e_p(x) = (1 + (p - 1)^2) sech(x): the largest error is always at x = 0, minimal at p = 1
    p = sympy.Symbol("p", positive=True)
    result = minimax((1 + (p - 1) ** 2) * sympy.sech(x), sympy.Integer(0), p, dps=20)
    assert abs(result.parameter_value - 1) < mpmath.mpf(10) ** -18
    assert abs(result.max_error - 1) < mpmath.mpf(10) ** -18
    assert len(result.abscissae) == 1 and abs(result.abscissae[0]) < mpmath.mpf(10) ** -15
    assert not result.equioscillates


def test_asymptotics_of_sau_use_the_limit_fallback():
    # SymPy's series fails on erf at infinity; the fallback gives the exact power part:
    # SAU = x + (exponentially small) at +oo and alpha*x + (exponentially small) at -oo
    assert asymptotic_expansion(SAU, sympy.oo, 3, parameter=sigma).removeO() == x
    assert asymptotic_expansion(SAU, -sympy.oo, 3, parameter=sigma).removeO() == ALPHA * x
    # and its Taylor series at 0 starts (1 - a) sigma/sqrt(2 pi) + (1 + a) x/2
    at0 = asymptotic_expansion(SAU, 0, 2, parameter=sigma).removeO()
    assert sympy.simplify(at0 - ((1 - ALPHA) * sigma / sympy.sqrt(2 * sympy.pi) + (1 + ALPHA) * x / 2)) == 0


import symact  # noqa: E402


def test_catalogue_names_work_as_candidates_and_targets():
    assert match_conditions("squareplus", "softplus", "b", ["value", "curvature"]) == {
        "value": (4 * sympy.log(2) ** 2,), "curvature": (4,)}
    result = minimax("squareplus", "softplus", "b", dps=20)
    # the minimax of the formulas, _independent_minimax(45) to 40 digits (a second minimax of SQUAREPLUS and
    # SOFTPLUS here cost as much again; test_squareplus_softplus_minimax_matches_independent_computation
    # checks that one against the same reference)
    with mpmath.workdps(45):
        plain = mpmath.mpf("1.523821032518750664193560228639757928906")
        assert abs(result.parameter_value - plain) < mpmath.mpf(10) ** -18
    # SAU vs leaky ReLU: equal at 0 needs sigma = 0, outside sigma > 0
    assert match_conditions("sau", "leaky_relu", "sigma", ["value"]) == {"value": ()}


def test_minimax_of_a_family_that_contains_the_target_is_exact():
    """swish(beta) is silu at beta = 1 and leaky_relu is relu at slope 0: the best uniform
    approximation has error 0 there (the search alone stopped at beta = 1 + 7e-8, error 3e-8)."""
    r = minimax("swish", "silu", "beta", dps=20)
    assert r.parameter_value == 1 and r.max_error == 0
    r = minimax("leaky_relu", "relu", "negative_slope")
    assert r.parameter_value == 0 and r.max_error == 0


def test_an_exact_fit_outside_the_parameter_range_given_is_not_the_answer():
    """swish(beta) is silu at beta = 1, and minimax returned beta = 1 (max error 0) for any parameter_range,
    also (2, 5), which excludes it, and a malformed (5, 1) passed unchecked.  On [2, 5] the max error
    |swish_beta - silu| grows with beta (x*(sigmoid(beta x) - sigmoid(x)) widens), so the infimum is at the
    end beta = 2: no interior minimax."""
    with pytest.raises(DomainError, match="an end of parameter_range"):
        minimax("swish", "silu", "beta", dps=10, domain=20, parameter_range=(2, 5))
    with pytest.raises(DomainError, match="parameter_range="):
        minimax("swish", "silu", "beta", dps=10, domain=20, parameter_range=(5, 1))
    inside = minimax("swish", "silu", "beta", dps=10, domain=20, parameter_range=(1, 5))
    assert inside.parameter_value == 1 and inside.max_error == 0


def test_match_conditions_takes_one_condition_as_a_string_and_names_the_parameters():
    assert match_conditions("squareplus", "softplus", "b", "value") == {"value": (4 * sympy.log(2) ** 2,)}
    with pytest.raises(FormulaError, match=r"its parameters are \['b'\]"):
        match_conditions("squareplus", "softplus", "c", "value")


@pytest.mark.parametrize("condition", ["derivative:x", "derivative:-1", "derivative:"])
def test_a_malformed_derivative_condition_is_a_formula_error_naming_the_form(condition):
    # int() raised a bare ValueError for 'derivative:x'; '-1' reached sympy.diff and failed there
    with pytest.raises(FormulaError, match="derivative:3"):
        match_conditions("squareplus", "softplus", "b", condition)


@pytest.mark.parametrize("order", [-1, 2.5, "4", True])
def test_asymptotic_expansion_refuses_an_order_that_is_not_a_whole_number(order):
    with pytest.raises(DomainError, match="order="):
        asymptotic_expansion(sympy.log(1 + sympy.exp(x)), 0, order)


def test_asymptotic_expansion_order_counts_like_sympy_series():
    # order n means an O(x**n) remainder at a finite point (sympy.series' n), numpy integers included
    import numpy as np

    softplus = sympy.log(1 + sympy.exp(x))
    assert asymptotic_expansion(softplus, 0, np.int64(3)) == sympy.log(2) + x / 2 + x**2 / 8 + sympy.O(x**3)


@pytest.mark.parametrize("call", [
    lambda: minimax(SQUAREPLUS, SOFTPLUS, b, domain=0),
    lambda: minimax(SQUAREPLUS, SOFTPLUS, b, domain=-5),  # was silently taken as 5, without the edge check
    lambda: minimax(SQUAREPLUS, SOFTPLUS, b, grid=1),  # ZeroDivisionError
    lambda: minimax(SQUAREPLUS, SOFTPLUS, b, dps=0),
    lambda: dominance_threshold(SQUAREPLUS, SOFTPLUS, b, samples=1),  # ZeroDivisionError
    lambda: dominance_threshold(SQUAREPLUS, SOFTPLUS, b, search=(5, -5)),
    # b is positive and scanned on a log scale: log(-1) raised a bare TypeError (mpc < int), log(0) reported
    # "the max error keeps decreasing towards b = nan"; a bare number raised "'int' object is not iterable"
    lambda: minimax(SQUAREPLUS, SOFTPLUS, b, dps=15, parameter_range=(-1, 10)),
    lambda: minimax(SQUAREPLUS, SOFTPLUS, b, dps=15, parameter_range=(0, 10)),
    lambda: minimax(SQUAREPLUS, SOFTPLUS, b, dps=15, parameter_range=5),
    lambda: minimax(SQUAREPLUS, SOFTPLUS, b, dps=15, parameter_range=(1, float("inf"))),
])
def test_bad_numeric_settings_are_refused_naming_the_setting(call):
    with pytest.raises(DomainError, match=r"(domain|grid|dps|samples|search|parameter_range)="):
        call()


def test_dominance_threshold_of_a_family_sympy_cannot_solve_is_a_domain_error():
    # softplus(beta) = relu(x) is transcendental in beta: sympy.solve raised a bare NotImplementedError
    with pytest.raises(DomainError, match="cannot solve"):
        dominance_threshold(SOFTPLUS_BETA, RELU, beta)


def test_minimax_whose_optimum_is_flat_in_the_parameter_is_a_domain_error():
    """max(x, a x) vs softplus on |x| <= 200: for |a| <= ln 2/200 the max error is ln 2 at x = 0 whatever a
    is, so there is no unique optimum; mpmath.findroot's bare ValueError escaped."""
    a = sympy.Symbol("a", real=True)
    with pytest.raises(DomainError, match="could not be solved"):
        minimax(sympy.Max(x, a * x), SOFTPLUS, a, dps=15)


@pytest.mark.parametrize("target, search", [("silu", (-50, 50)), ("gelu", (-5, 5)), ("gelu", (-50, 50))])
def test_squareplus_dominates_silu_and_gelu_from_b_equal_to_0(target, search):
    """p*(x) = 4*phi(x)*(phi(x) - x) <= 0 for phi = silu or gelu (phi(x) <= max(x, 0)), with its maximum 0 at
    x = 0: b* = 0, where squareplus is relu.  The monotonicity check divided by sqrt(x**2 + b) = 0 there (a bare
    ZeroDivisionError), and for gelu on [-50, 50] p*(-50) had cancelled to 0, tied with the maximum, and the
    end was taken ("largest at the edge of the search interval").  Reference: that derivation, and relu >= phi
    on a grid by mpmath (the property b* = 0 asserts)."""
    result = dominance_threshold("squareplus", target, "b", search=search)
    assert result.value == 0 and result.argmax == 0
    phi = {"silu": lambda t: t / (1 + mpmath.exp(-t)), "gelu": lambda t: t * mpmath.ncdf(t)}[target]
    with mpmath.workdps(30):
        assert all(max(t, 0) >= phi(t) for t in mpmath.linspace(-20, 20, 401))


def test_dominance_threshold_reports_an_exact_argmax_only_where_it_is_exact():
    """p*(x) is flat at its maximum, so the value check alone accepted any nearby fraction as the exact
    argmax: squareplus(x + 1/3) vs softplus (argmax -0.77845...) gave argmax -7/9 at dps=4, a 10-digit
    fraction at dps=30 (value wrong after 20 digits, shown as a closed form), argmax 0 and value 0.998
    (for 1.244) at dps=1, and a bare TypeError from nsimplify at dps=2."""
    shifted = SQUAREPLUS.subs(x, x + sympy.Rational(1, 3))
    with mpmath.workdps(60):  # independent: b >= 4 sp(x) (sp(-x) - 1/3), maximised by findroot
        def p_star(t):
            return 4 * mpmath.log1p(mpmath.exp(t)) * (mpmath.log1p(mpmath.exp(-t)) - mpmath.mpf(1) / 3)

        x_ref = mpmath.findroot(lambda t: mpmath.diff(p_star, t), -0.8)
        p_ref = p_star(x_ref)
    for dps in (1, 2, 4, 30):
        result = dominance_threshold(shifted, SOFTPLUS, b, dps=dps)
        with mpmath.workdps(60):
            got_x, got_p = mpmath.mpf(sympy.N(result.argmax, 70)), mpmath.mpf(sympy.N(result.value, 70))
            assert abs(got_x - x_ref) <= 5 * mpmath.mpf(10) ** -dps, (dps, result.argmax)
            assert abs(got_p - p_ref) <= 5 * mpmath.mpf(10) ** -dps * p_ref, (dps, result.value)
        assert result.argmax.is_Float and result.value.is_Float, (dps, result)
    # where the argmax is exact (squareplus vs softplus: 0), the exact form is kept
    assert dominance_threshold(SQUAREPLUS, SOFTPLUS, b, dps=8).argmax == 0


@pytest.mark.parametrize("k", [11, 13, 17])
def test_dominance_threshold_refines_the_largest_peak_not_the_nearest_stationary_point(k):
    """x + p >= x + sin(k x) exp(-x**2/50) iff p >= p*(x) = sin(k x) exp(-x**2/50), whose peaks are a period
    2 pi/k = 0.37..0.57 apart, three or four of the 1/8-spaced samples.  Newton's method from the largest sample
    went to another stationary point: a minimum, for k = 17 at x = -40.2 (threshold 9e-15 for 0.99983, so p = 0.5
    was reported to dominate where the target is 0.5 higher), for k = 11, 13 a negative one ('p*(x) tends to
    [0, 0] at +-infinity, above the interior maximum').  Reference: p*'s peaks from their closed-form
    neighbourhoods x = (pi/2 + 2 pi n)/k, refined by findroot at 30 digits."""
    p = sympy.Symbol("p", real=True)
    result = dominance_threshold(x + p, x + sympy.sin(k * x) * sympy.exp(-x**2 / 50), p, dps=20)
    with mpmath.workdps(30):
        def p_star(t):
            return mpmath.sin(k * t) * mpmath.exp(-t**2 / 50)

        peaks = [mpmath.findroot(lambda t: mpmath.diff(p_star, t), (mpmath.pi / 2 + 2 * mpmath.pi * n) / k)
                 for n in range(-3, 4)]
        x_ref = max(peaks, key=p_star)
        assert abs(mpmath.mpf(sympy.N(result.argmax, 30)) - x_ref) < mpmath.mpf(10) ** -15
        assert abs(mpmath.mpf(sympy.N(result.value, 30)) - p_star(x_ref)) < mpmath.mpf(10) ** -18


def test_dominance_threshold_finds_a_peak_between_two_samples():
    """p*(x) = exp(-100 (x - 7/3)**2) peaks between two samples: findroot from the nearest sample ran out of
    tolerance and its bare ValueError escaped.  Its maximum is 1 at x = 7/3 exactly."""
    p = sympy.Symbol("p", real=True)
    result = dominance_threshold(x + p, x + sympy.exp(-100 * (x - sympy.Rational(7, 3))**2), p)
    assert result.value == 1 and result.argmax == sympy.Rational(7, 3)


def test_dominance_threshold_with_its_maximum_at_a_kink():
    """x + p >= x - |x - 1/3| iff p >= -|x - 1/3|, largest (0) at the kink 1/3, off the sample grid: p* has no
    stationary point, and findroot on dp*/dx raised its bare ValueError."""
    p = sympy.Symbol("p", real=True)
    result = dominance_threshold(x + p, x - sympy.Abs(x - sympy.Rational(1, 3)), p)
    assert result.value == 0 and result.argmax == sympy.Rational(1, 3)


@pytest.mark.parametrize("candidate, target, parameter, expected", [
    ("p + tanh(x)", "tanh(x)", "p", 0),
    ("p*exp(-x**2) + x", "x + exp(-x**2)", "p", 1),
    ("squareplus", "relu", "b", 0),
])
def test_dominance_threshold_of_a_constant_p_star(candidate, target, parameter, expected):
    """p*(x) is constant (0, 1, and 4 relu(x) (relu(x) - x) = 0 for squareplus vs relu): it ties at the ends of
    the search interval with every interior sample, and was refused as 'largest at the edge of the search
    interval ... check that the candidate dominates at all'.  Reference: candidate - target is p - 1, p*exp(-x**2)
    - exp(-x**2), and sqrt(x**2 + b)/2 - |x|/2 >= 0 (= 0 at b = 0), so each dominates iff p >= the constant."""
    p = sympy.Symbol(parameter, positive=True) if parameter == "b" else sympy.Symbol(parameter, real=True)
    cand = SQUAREPLUS if candidate == "squareplus" else sympy.sympify(candidate, {"x": x, parameter: p})
    targ = RELU if target == "relu" else sympy.sympify(target, {"x": x})
    result = dominance_threshold(cand, targ, p)
    assert result.value == expected
    margin = sympy.lambdify(x, (cand - targ).subs(p, expected), "mpmath")
    with mpmath.workdps(30):
        assert all(margin(t) >= 0 for t in mpmath.linspace(-60, 60, 241))


def test_minimax_reports_only_extrema_at_the_maximum_whatever_dps():
    """The extrema kept as abscissae were those within 100 * 10**-dps of the max error: at dps=3 a bump 5%
    lower (0.95 sech(x - 10) beside (1 + (p - 1)^2) sech(x)) was listed as a point where |e| = max_error, and
    at dps <= 2 every extremum was, the ends +-200 included, so squareplus vs softplus raised 'the largest
    error sits at the edge of the domain'."""
    p = sympy.Symbol("p", positive=True)
    candidate, target = (1 + (p - 1) ** 2) * sympy.sech(x), -sympy.Rational(19, 20) * sympy.sech(x - 10)
    result = minimax(candidate, target, p, dps=3)
    e = sympy.lambdify((x, p), candidate - target, "mpmath")
    with mpmath.workdps(30):
        assert len(result.abscissae) == 1 and abs(result.abscissae[0]) < mpmath.mpf("0.01"), result
        for xi in result.abscissae:
            assert abs(abs(e(xi, result.parameter_value)) - result.max_error) <= mpmath.mpf(10) ** -3 * result.max_error
    b_ref = mpmath.mpf("1.52382103251875066")  # test_squareplus_softplus_minimax_matches_independent_computation
    for dps in (1, 2):
        result = minimax(SQUAREPLUS, SOFTPLUS, b, dps=dps)
        assert result.signs == (1, -1, 1), result
        assert abs(result.parameter_value - b_ref) <= 5 * mpmath.mpf(10) ** -dps * b_ref, result


def test_minimax_refuses_an_error_that_is_not_real_or_unbounded_on_the_domain():
    """sqrt(x) as a target raised a bare TypeError ('<' not supported between 'mpc' and 'int'); a pole of the
    target inside |x| <= L went unseen by the sampling, and softplus + 1e-6/(x - 1/2) came back as a minimax
    with max error 0.0759 (the error is unbounded).  A removable singularity (sin(x)/x at 0) is allowed."""
    with pytest.raises(DomainError, match="not real at x = -200"):
        minimax(SQUAREPLUS, sympy.sqrt(x), b, dps=10)
    with pytest.raises(DomainError, match="not real"):
        minimax(SQUAREPLUS + sympy.I * x, SOFTPLUS, b, dps=10)
    with pytest.raises(DomainError, match=r"unbounded at x = 1/2"):
        minimax(SQUAREPLUS, SOFTPLUS + sympy.Rational(1, 10**6) / (x - sympy.Rational(1, 2)), b, dps=10)
    with pytest.raises(DomainError, match=r"unbounded at x = 0"):
        minimax(b * x, 1 / x, b, dps=10)
    from analysis.approximation import _refuse_singularities

    assert _refuse_singularities(SQUAREPLUS - sympy.sin(x) / x, b, 200) is None
    assert _refuse_singularities(SQUAREPLUS - SOFTPLUS - 1 / (x - 300), b, 200) is None  # outside |x| <= 200


def test_minimax_ignores_kinks_outside_the_domain():
    """The target's kinks were all extremum candidates, also those outside |x| <= L: softplus with a jump at
    x = 7 gave, over |x| <= 5 (where it is softplus), b = 8.04 with abscissae (0, 7) instead of the
    squareplus/softplus minimax b = 1.5238..."""
    jump = SOFTPLUS + sympy.Piecewise((0, x < 7), (1, True))
    result = minimax(SQUAREPLUS, jump, b, dps=10, domain=5)
    assert abs(result.parameter_value - mpmath.mpf("1.52382103251875066")) < 1e-9, result
    assert all(abs(xi) <= 5 for xi in result.abscissae) and result.signs == (1, -1, 1)


def test_minimax_of_a_target_with_jumps_uses_the_one_sided_limits():
    """A jump in the target put a DiracDelta in the error's slope, which mpmath's lambdify does not know
    (NameError); at a jump the sup of |e| is a one-sided limit, not the value Heaviside(0) = 1/2 gives.
    Softplus plus a step of 1/5 on (1, 2): the optimum balances e(1+) = -E against the bumps +E of
    squareplus - softplus at +-2.79, solved here by hand."""
    bump_target = SOFTPLUS + (sympy.Heaviside(x - 1) - sympy.Heaviside(x - 2)) / 5
    _check_bump_minimax(minimax(SQUAREPLUS, bump_target, b, dps=12, domain=20))


def _check_bump_minimax(result):
    """squareplus vs softplus + 1/5 on (1, 2), by hand: e(1+) = -E balances the bumps +E at +-2.79."""
    with mpmath.workdps(30):
        def e(t, bb):
            return (t + mpmath.sqrt(t * t + bb)) / 2 - mpmath.log1p(mpmath.exp(t))

        def bump(bb):
            return mpmath.findroot(lambda t: mpmath.diff(lambda u: e(u, bb), t), mpmath.mpf("2.8"))

        b_ref = mpmath.findroot(lambda bb: e(bump(bb), bb) + e(1, bb) - mpmath.mpf(1) / 5, mpmath.mpf(2))
        assert abs(result.parameter_value - b_ref) < 1e-10 * b_ref, (result, b_ref)
        assert abs(result.max_error - e(bump(b_ref), b_ref)) < 1e-10, result
    assert result.signs == (1, -1, 1) and abs(result.abscissae[1] - 1) < 1e-9


def test_minimax_sees_the_breaks_of_a_piecewise_with_compound_conditions():
    """The kinks of Piecewise((1/5, (x > 1) & (x < 2)), (0, True)) were not found (only bare comparisons
    were read), so the bump was never sampled: squareplus vs softplus + bump returned b = 1.5238 with max
    error 0.0759, while |e| is 0.25 on (1, 2) there."""
    bump_target = SOFTPLUS + sympy.Piecewise((sympy.Rational(1, 5), (x > 1) & (x < 2)), (0, True))
    _check_bump_minimax(minimax(SQUAREPLUS, bump_target, b, dps=12, domain=20))


def test_minimax_whose_max_error_only_tends_to_its_infimum_is_refused():
    """softplus(beta) >= relu > silu, so e = softplus(beta) - silu > relu - silu and max|e| decreases strictly
    to max(relu - silu) = 0.27846... as beta -> oo: there is no minimiser.  Beyond beta ~ 30 the decrease is
    below the working precision, and the stationary-point solve 'converged' on the underflowing derivative:
    beta = 1016.43 was returned as the minimax with max error 0.278464542761."""
    silu = x / (1 + sympy.exp(-x))
    with pytest.raises(DomainError, match="does not rise on both sides"):
        minimax(SOFTPLUS_BETA, silu, beta, dps=12)


def _sinc_exp_reference():
    """a exp(-x^2/6) vs sin(x)/x, written without SymPy (sinc(0) = 1 by hand): the extremum at 0 (e = a - 1)
    and the bump at x1 (e(x1) = 1 - a, e'(x1) = 0) equioscillate; findroot on (a, x1) at 40 digits."""
    with mpmath.workdps(40):
        def e(t, a):
            return a * mpmath.exp(-t * t / 6) - mpmath.sin(t) / t

        def de(t, a):
            return -a * t / 3 * mpmath.exp(-t * t / 6) - (t * mpmath.cos(t) - mpmath.sin(t)) / t**2

        a_ref, x1 = mpmath.findroot(lambda a, t: (e(t, a) - (1 - a), de(t, a)), (mpmath.mpf("0.75"), mpmath.mpf("4.3")))
        return a_ref, 1 - a_ref, x1


@pytest.mark.parametrize("target", [sympy.sin(x) / x, sympy.sinc(x)])
def test_minimax_with_a_removable_singularity_at_an_extremum(target):
    """sin(x)/x at x = 0 is 0/0 in mpmath (ZeroDivisionError), which the extremum search took for a failed root:
    the extremum of a*exp(-x**2/6) - sin(x)/x at 0 (e = a - 1) was dropped and minimax raised 'could not be
    solved' near a = 5305.6 instead of returning a = 0.75232...; sinc's derivative cos(x)/x - sin(x)/x**2
    cancels every digit near 0 and failed the same way.  The limit is now taken there."""
    a = sympy.Symbol("a", positive=True)
    result = minimax(a * sympy.exp(-x**2 / 6), target, a, dps=10, domain=8)
    a_ref, m_ref, x1 = _sinc_exp_reference()
    assert abs(result.parameter_value - a_ref) < mpmath.mpf(10) ** -9 * a_ref, result
    assert abs(result.max_error - m_ref) < mpmath.mpf(10) ** -9 * m_ref, result
    assert len(result.abscissae) == 3 and result.signs == (1, -1, 1) and result.equioscillates
    assert abs(result.abscissae[1]) < 1e-9 and abs(result.abscissae[2] - x1) < 1e-8


@pytest.mark.parametrize("target, pole", [
    (sympy.tan(x), "-pi/2"),                 # tan(x) on |x| <= 2: poles at +-pi/2
    (1 / sympy.cos(x - 3), "3 - pi/2"),      # solve() lists 3 + pi/2 and 3 + 3pi/2 only, both outside
    (sympy.cot(x - 3), "3 - pi"),
])
def test_minimax_refuses_poles_of_tan_and_periodic_denominators_naming_them(target, pole):
    """The poles of tan, cot, sec, csc were not looked for (only denominators and log arguments were), and
    solve() gives the zeros of a periodic denominator in one period only: minimax(a*x, tan(x), domain=2)
    said 'the max error keeps decreasing towards a = 1e-6', a*x**2 vs 1/cos(x - 3) 'could not be solved',
    for errors that are unbounded on the domain."""
    a = sympy.Symbol("a", positive=True)
    with pytest.raises(DomainError, match=rf"unbounded at x = {re.escape(pole)} \(a zero of"):
        minimax(a * x if target != 1 / sympy.cos(x - 3) else a * x**2, target, a, dps=10, domain=2)


def test_minimax_equioscillation_of_an_even_error_with_mirror_pairs():
    """exp(-a x^2) vs sech(x): the even error has its extrema in mirror pairs of equal sign, (-, +, +, -) at
    +-2.8747 and +-1.0024.  That is Chebyshev alternation for a one-parameter family (two extrema where
    e * de/da has opposite signs), but equioscillates was False (it asked every consecutive pair to
    alternate).  The scan also missed the optimum: for a ~ 1e5 the dip of depth 1 near 0 is narrower than
    the grid, so max|e| was taken as 2e-13 there and minimax failed near a = 99999.98.  Reference: brute
    force max over a fine grid and golden section, in mpmath."""
    a = sympy.Symbol("a", positive=True)
    result = minimax(sympy.exp(-a * x**2), sympy.sech(x), a, dps=10, domain=6)
    assert result.signs == (-1, 1, 1, -1) and result.equioscillates, result
    assert all(t == -1 for t in result.tangent_signs)  # d/da exp(-a x^2) < 0 for x != 0
    with mpmath.workdps(20):
        def worst(av):
            # the extrema: stationary points of exp(-a t^2) - sech(t), found from where they lie at the optimum
            f = lambda t: -2 * av * t * mpmath.exp(-av * t * t) + mpmath.sech(t) * mpmath.tanh(t)
            roots = [mpmath.findroot(f, mpmath.mpf(start)) for start in ("1.0", "2.87")]
            return max(abs(mpmath.exp(-av * r * r) - mpmath.sech(r)) for r in roots)

        lo, hi = mpmath.mpf("0.3"), mpmath.mpf("0.4")
        for _ in range(60):
            m1, m2 = lo + (hi - lo) / 3, hi - (hi - lo) / 3
            if worst(m1) < worst(m2):
                hi = m2
            else:
                lo = m1
        assert abs(result.parameter_value - lo) < 1e-8 and abs(result.max_error - worst(lo)) < 1e-9


def test_minimax_reports_the_edge_only_when_an_end_of_the_domain_is_active():
    """An active extremum within 1 of |x| = L counted as 'at the edge': squareplus vs softplus on |x| <= 4 (extrema
    +-3.5646, the ends +-4 lower) was refused.  And an end point, tracked as if it were a stationary point, made
    sin(a x)/(a x) vs exp(-x**2/6) on |x| <= 2 (whose optimum has the ends active) fail with 'flat in a'."""
    result = minimax(SQUAREPLUS, SOFTPLUS, b, dps=10, domain=4)
    assert abs(result.parameter_value - mpmath.mpf("1.52382103251875066")) < 1e-9, result
    assert result.signs == (1, -1, 1)
    a = sympy.Symbol("a", positive=True)
    with pytest.raises(DomainError, match="edge of the domain"):
        minimax(sympy.sin(a * x) / (a * x), sympy.exp(-x**2 / 6), a, dps=10, domain=2)


def test_minimax_at_the_edge_of_a_finite_domain_names_the_edge_not_a_finite_domain():
    """isru(alpha) vs erf on |x| <= 3 (the error largest at x = +-3 at the optimum) said 'pass a finite domain
    to minimax over it', though the domain is finite; the message names the end and says to widen it."""
    with pytest.raises(DomainError, match="edge of the domain") as caught:
        minimax("isru", "erf", "alpha", domain=3)
    message = str(caught.value)
    assert "finite domain" not in message and "|x| <= 3" in message and "x = " in message
    assert "Widen domain" in message


def test_minimax_failure_with_a_coarse_grid_names_the_grid():
    # grid=4 misses an extremum; the message only said to narrow parameter_range or domain
    with pytest.raises(DomainError, match=r"raise grid \(now 4 points"):
        minimax("squareplus", "softplus", "b", dps=8, grid=4)


def test_a_plain_symbol_names_the_catalogue_parameter_by_name():
    """The catalogue's b is declared positive; a plain Symbol('b') is another symbol to SymPy, and minimax said
    "the error does not depend on b", dominance_threshold "0 solutions", match_conditions {'value': ()}."""
    plain_b = sympy.Symbol("b")
    assert match_conditions("squareplus", "softplus", plain_b, ["value"]) == {"value": (4 * sympy.log(2) ** 2,)}
    assert dominance_threshold("squareplus", "softplus", plain_b).value == 4 * sympy.log(2) ** 2
    result = minimax("squareplus", "softplus", plain_b, dps=15)
    b_ref = _independent_minimax(25)[0]
    assert abs(result.parameter_value - b_ref) < mpmath.mpf(10) ** -12
    # and the other way round: a positive b names a plain b of an expression
    plain = (x + sympy.sqrt(x**2 + plain_b)) / 2
    assert match_conditions(plain, SOFTPLUS, b, ["curvature"]) == {"curvature": (4,)}


@pytest.mark.parametrize("at", [float("inf"), float("-inf"), float("nan"), sympy.oo, sympy.zoo, 1j, "oo"])
def test_match_conditions_refuses_a_point_that_is_not_a_finite_real_number(at):
    # at=inf gave {'value': ()}: .subs(x, oo) made oo - oo = nan, read as "no solution", though the difference
    # tends to 0 for every b
    with pytest.raises(DomainError, match="finite real point"):
        match_conditions("squareplus", "softplus", "b", ["value"], at=at)


@pytest.mark.parametrize("condition", [0, None, 2.0])
def test_match_conditions_refuses_a_condition_that_is_not_a_name(condition):
    # conditions=[0] raised a bare AttributeError ('int' object has no attribute 'startswith')
    with pytest.raises(FormulaError, match="'value', 'slope', 'curvature'"):
        match_conditions("squareplus", "softplus", "b", [condition])


@pytest.mark.parametrize("name, point, expected", [
    # exact expansions (SymPy's series has no O term): an AttributeError ('NoneType' has no 'expr') before
    ("relu", sympy.oo, x), ("relu", -sympy.oo, sympy.Integer(0)), ("abs", -sympy.oo, -x),
    ("heaviside", sympy.oo, sympy.Integer(1)), ("relu_squared", sympy.oo, x**2),
    # Min/Max pieces: NotImplementedError (hardtanh, relu6) and TypeError (softshrink) before
    ("hardtanh", 0, x), ("hardtanh", -sympy.oo, sympy.Integer(-1)), ("relu6", sympy.oo, sympy.Integer(6)),
    ("softshrink", sympy.oo, x - sympy.Rational(1, 2)), ("hardshrink", -sympy.oo, x),
])
def test_asymptotic_expansion_of_piecewise_activations_is_the_outer_piece(name, point, expected):
    assert asymptotic_expansion(name, point, 3) == expected


@pytest.mark.parametrize("expr, point, expected", [
    # three arguments: the kinks were not looked for, and the piece beyond x = 1 (x/2) was taken at +oo
    (sympy.Max(0, x / 2, x - 1), sympy.oo, x - 1),
    (sympy.Min(0, x / 2, x + 1), -sympy.oo, x + 1),
    # nested: solve's bare NotImplementedError ('No algorithms are implemented to solve equation -Min(1, x) - 1')
    (sympy.Max(-1, sympy.Min(1, x)), sympy.oo, sympy.Integer(1)),
    (sympy.Max(0, sympy.Min(6, x)), -sympy.oo, sympy.Integer(0)),
])
def test_asymptotic_expansion_of_max_min_with_several_or_nested_arguments(expr, point, expected):
    """Reference: the piece that is the Max/Min beyond every crossing of its arguments (x - 1 >= x/2 >= 0 for
    x >= 2), checked by exact evaluation far out."""
    far = 10**6 if point == sympy.oo else -10**6
    assert expr.subs(x, far) == expected.subs(x, far)
    assert asymptotic_expansion(expr, point, 3) == expected


def test_minimax_against_hardtanh_written_as_max_of_min():
    """tanh(a x) vs Max(-1, Min(1, x)) (hardtanh as many write it) raised solve's bare NotImplementedError.
    Reference: the alternation theorem, at the kink x = 1 (error tanh(a) - 1) and at the interior extremum x0
    with a sech(a x0)^2 = 1 (error tanh(a x0) - x0), equal and opposite; solved by mpmath.findroot."""
    a = sympy.Symbol("a", positive=True)
    result = minimax(sympy.tanh(a * x), sympy.Max(-1, sympy.Min(1, x)), a, dps=20)
    with mpmath.workdps(30):
        a_ref, x0 = mpmath.findroot(
            lambda s, t: [s * mpmath.sech(s * t) ** 2 - 1, (mpmath.tanh(s * t) - t) + (mpmath.tanh(s) - 1)],
            (mpmath.mpf("1.4"), mpmath.mpf("0.43")))
        assert abs(result.parameter_value - a_ref) < mpmath.mpf(10) ** -18
        assert abs(result.max_error - (1 - mpmath.tanh(a_ref))) < mpmath.mpf(10) ** -18
    assert [float(t) for t in result.abscissae] == pytest.approx([-1, -float(x0), float(x0), 1], abs=1e-15)


def test_asymptotic_expansion_of_erf_at_infinity_keeps_its_exponentially_small_term():
    # hand series: erf(x) = 1 - exp(-x**2)/(sqrt(pi) x) (1 - 1/(2 x**2) + ...)
    e = asymptotic_expansion("erf", sympy.oo, 3)
    assert sympy.simplify(e.removeO() - (1 - sympy.exp(-x**2) / (sympy.sqrt(sympy.pi) * x))) == 0
    with mpmath.workdps(40):
        for t in (5, 10, 20):
            remainder = mpmath.erf(t) - (1 - mpmath.exp(-t * t) / (mpmath.sqrt(mpmath.pi) * t))
            assert abs(remainder) <= mpmath.exp(-t * t) / t**3


@pytest.mark.parametrize("name, order", [("abs", 3), ("relu", 3), ("heaviside", 1), ("relu_squared", 3)])
def test_asymptotic_expansion_at_a_kink_asks_for_a_side(name, order):
    # abs/relu at 0 returned x and heaviside 1: SymPy's series expands from the right only
    with pytest.raises(DomainError, match=r"kink x = 0.*side='\+'.*side='-'"):
        asymptotic_expansion(name, 0, order)


def test_asymptotic_expansion_one_sided_at_a_kink_is_the_series_of_that_piece():
    assert asymptotic_expansion("abs", 0, 3, side="-") == -x
    assert asymptotic_expansion("abs", 0, 3, side="+") == x
    assert asymptotic_expansion("relu", 0, 3, side="-") == 0
    assert asymptotic_expansion("heaviside", 0, 3, side="-") == 0
    assert asymptotic_expansion("heaviside", 0, 3, side="+") == 1
    # relu_squared is C^1 at 0: the two-sided expansion to order 2 exists (the pieces' series agree there)
    assert asymptotic_expansion("relu_squared", 0, 2) == sympy.O(x**2)
    with pytest.raises(DomainError, match="side="):
        asymptotic_expansion("abs", 0, 3, side="left")


@pytest.mark.parametrize("name, point", [("sin", sympy.oo), ("cos", -sympy.oo), ("snake", sympy.oo)])
def test_asymptotic_expansion_refuses_an_oscillating_function_at_infinity(name, point):
    with pytest.raises(DomainError, match="oscillates"):
        asymptotic_expansion(name, point, 3)


@pytest.mark.parametrize("point", [float("nan"), sympy.nan, sympy.zoo, 1j, "abc", True])
def test_asymptotic_expansion_refuses_a_point_that_is_not_real_or_infinite(point):
    with pytest.raises(DomainError, match="point="):
        asymptotic_expansion("softplus", point, 3)


def _narrow_bump_reference(centre):
    """max of 9/10 exp(-(x - 10)**2) + exp(-(100 (x - c))**2), hand-coded in mpmath at 50 digits: the stationary
    point next to c by findroot on the derivative (the wide bump's slope there is ~1e-20, so it is within 1e-20
    of c), and the wide bump's own peak near 10 for comparison."""
    with mpmath.workdps(50):
        def p_star(t):
            return mpmath.mpf(9) / 10 * mpmath.exp(-(t - 10) ** 2) + mpmath.exp(-(100 * (t - centre)) ** 2)

        def slope(t):
            return (-mpmath.mpf(9) / 5 * (t - 10) * mpmath.exp(-(t - 10) ** 2)
                    - 20000 * (t - centre) * mpmath.exp(-(100 * (t - centre)) ** 2))

        peak = mpmath.findroot(slope, (centre - mpmath.mpf("0.001"), centre + mpmath.mpf("0.001")), solver="anderson")
        assert p_star(peak) > p_star(mpmath.mpf(10))
        return peak, p_star(peak)


@pytest.mark.parametrize("centre", [sympy.Rational(49, 16), sympy.Rational(301, 100)])
def test_dominance_threshold_finds_a_peak_narrower_than_the_sample_spacing(centre):
    """p*(x) = 9/10 exp(-(x - 10)**2) + exp(-(100 (x - c))**2): a bump of height 1 and width 0.01 between the
    samples (1/8 apart, at 3 and 3.125; c midway, and c = 3.01 off the middle) is below 1e-16 at every sample.
    Sampling saw only the wide bump and returned 9/10 at x = 10, so p = 0.95 was reported to dominate where the
    target is 0.05 above it.  Reference: the bump's maximum by findroot in mpmath."""
    p = sympy.Symbol("p", real=True)
    bump = sympy.Rational(9, 10) * sympy.exp(-(x - 10) ** 2) + sympy.exp(-(100 * (x - centre)) ** 2)
    result = dominance_threshold(x + p, x + bump, p)
    x_ref, p_ref = _narrow_bump_reference(mpmath.mpf(sympy.N(centre, 60)))
    with mpmath.workdps(50):
        assert abs(mpmath.mpf(sympy.N(result.value, 50)) - p_ref) < mpmath.mpf(10) ** -28, result
        assert abs(mpmath.mpf(sympy.N(result.argmax, 50)) - x_ref) < mpmath.mpf(10) ** -12, result
    assert "certified by interval bounds" in result.certificate


def test_dominance_threshold_without_interval_bounds_warns_by_name():
    """p*(x) = besselj(0, x) has no interval enclosure: the maximum (1 at x = 0, J0's global maximum) is
    still located by sampling, and a UncertifiedMaximumWarning names the function, as the certificate does."""
    from analysis.approximation import UncertifiedMaximumWarning

    p = sympy.Symbol("p", real=True)
    with pytest.warns(UncertifiedMaximumWarning, match="besselj"):
        result = dominance_threshold(x + p, x + sympy.besselj(0, x), p, search=(-20, 20), samples=161)
    assert result.value == 1 and result.argmax == 0
    assert "not certified" in result.certificate and "besselj" in result.certificate


def test_dominance_threshold_refuses_a_supremum_that_is_a_one_sided_limit_at_a_jump():
    """p*(x) = (4/3 - x) for x > 1/3, else 0: its supremum 1 is the limit as x -> 1/3 from the right, not a value
    it takes (p*(1/3) = 0), so x + p >= target needs p >= 1 while every value of p* and every sample is below 1.
    It raised a bare TypeError from SymPy's limit of the Piecewise ('Invalid comparison of non-real zoo'); now the
    refusal names the jump."""
    p = sympy.Symbol("p", real=True)
    jump = sympy.Piecewise((sympy.Rational(4, 3) - x, x > sympy.Rational(1, 3)), (0, True))
    with pytest.raises(DomainError, match=r"jumps at its kink x = 0\.333"):
        dominance_threshold(x + p, x + jump, p)


@pytest.mark.parametrize("target, x_max, p_max", [
    ("hardtanh", 1, 1 - sympy.tanh(1)),   # p* = Min(1, Max(-1, x)) - tanh(x)
    ("relu6", 6, 6 - sympy.tanh(6)),      # p* = Min(6, Max(0, x)) - tanh(x)
])
def test_dominance_threshold_of_a_min_max_target(target, x_max, p_max):
    """tanh(x) + p vs hardtanh or relu6: p* has a Min, and SymPy's limit of it at +-oo raised a bare
    NotImplementedError ('_eval_nseries method should be added to Min').  Reference, by calculus: p* is
    x - tanh(x) (increasing) up to the upper clamp c, then c - tanh(x) (decreasing), and below the lower clamp l
    l - tanh(x) (decreasing towards -oo, limit l + 1 <= the maximum): the maximum is c - tanh(c) at x = c.  Also a
    dense mpmath scan of p* written by hand."""
    p = sympy.Symbol("p", real=True)
    result = dominance_threshold(sympy.tanh(x) + p, target, p)
    assert result.argmax == x_max and sympy.simplify(result.value - p_max) == 0
    low, high = (-1, 1) if target == "hardtanh" else (0, 6)
    with mpmath.workdps(30):
        scan = max(min(high, max(low, t)) - mpmath.tanh(t) for t in mpmath.linspace(-60, 60, 12001))
        assert scan <= mpmath.mpf(sympy.N(p_max, 30)) + mpmath.mpf(10) ** -25


def test_squareplus_dominates_elu_from_b_equal_to_0():
    """p* = 4 elu(x) (elu(x) - x) is a Piecewise: its limit at +oo went through .subs on the Piecewise and raised
    a bare TypeError ('Invalid comparison of non-real zoo').  Reference: elu(x) <= relu(x) (e^x - 1 <= 0 for
    x <= 0), equal for x >= 0, so b* = 0 (squareplus at b = 0 is relu); checked on a grid in mpmath."""
    result = dominance_threshold("squareplus", "elu", "b")
    assert result.value == 0
    with mpmath.workdps(30):
        assert all(max(t, 0) >= (t if t > 0 else mpmath.expm1(t)) for t in mpmath.linspace(-20, 20, 401))


def test_minimax_on_a_finite_interval_counts_its_ends_as_extrema():
    """p x vs x**2 on [0, 1] (interval=, a finite problem): e = p x - x**2 peaks at x = p/2 (p**2/4) and is
    p - 1 at the end 1; equal and opposite at p = 2 sqrt(2) - 2, max error 3 - 2 sqrt(2) (by hand).  minimax
    only had domain=L, the whole line's stand-in, which refuses an extremum at an end."""
    p = sympy.Symbol("p", real=True)
    result = minimax(p * x, x**2, p, dps=20, interval=(0, 1))
    with mpmath.workdps(30):
        p_ref = 2 * mpmath.sqrt(2) - 2
        assert abs(result.parameter_value - p_ref) < mpmath.mpf(10) ** -18
        assert abs(result.max_error - (3 - 2 * mpmath.sqrt(2))) < mpmath.mpf(10) ** -18
        assert abs(result.abscissae[0] - p_ref / 2) < mpmath.mpf(10) ** -15 and result.abscissae[1] == 1
    assert result.signs == (1, -1) and result.equioscillates


def test_minimax_on_an_asymmetric_interval_with_an_end_active():
    """squareplus vs softplus on [-1, 3]: at the optimum the extrema are x = 0 (e = sqrt(b)/2 - log 2 < 0) and the
    end x = 3, so sqrt(b)/2 + (3 + sqrt(9 + b))/2 = log 2 + log(1 + e**3), solved by findroot (by hand); and no
    point of a 4001-point grid on [-1, 3] has a larger |e| than the max error reported."""
    result = minimax(SQUAREPLUS, SOFTPLUS, b, dps=15, interval=(-1, 3))
    with mpmath.workdps(30):
        b_ref = mpmath.findroot(lambda bb: mpmath.sqrt(bb) / 2 + (3 + mpmath.sqrt(9 + bb)) / 2
                                - mpmath.log(2) - mpmath.log1p(mpmath.exp(3)), mpmath.mpf("1.5"))
        assert abs(result.parameter_value - b_ref) < mpmath.mpf(10) ** -13, result
        assert abs(result.max_error - (mpmath.log(2) - mpmath.sqrt(b_ref) / 2)) < mpmath.mpf(10) ** -13
        e = lambda t: (t + mpmath.sqrt(t * t + b_ref)) / 2 - mpmath.log1p(mpmath.exp(t))  # noqa: E731
        assert max(abs(e(-1 + mpmath.mpf(i) / 1000)) for i in range(4001)) <= result.max_error * (1 + 1e-12)
    assert result.signs == (-1, 1) and result.abscissae[1] == 3 and abs(result.abscissae[0]) < 1e-12


def test_minimax_on_a_symmetric_interval_where_domain_refuses_the_edge():
    """isru(alpha) vs erf: over |x| <= 3 as the whole line's stand-in (domain=3) the optimum has the ends active,
    refused, and the refusal now says how to ask for the finite problem; interval=(-3, 3) solves it.  Reference
    (by hand, odd error): e(3) = -e(x1) with e'(x1) = 0 for e = x/sqrt(1 + alpha x**2) - erf(x), by findroot."""
    with pytest.raises(DomainError, match=r"pass interval=\(-3, 3\)"):
        minimax("isru", "erf", "alpha", dps=10, domain=3)
    result = minimax("isru", "erf", "alpha", dps=15, interval=(-3, 3))
    with mpmath.workdps(30):
        def e(t, al):
            return t / mpmath.sqrt(1 + al * t * t) - mpmath.erf(t)

        def de(t, al):
            return (1 + al * t * t) ** -mpmath.mpf(1.5) - 2 / mpmath.sqrt(mpmath.pi) * mpmath.exp(-t * t)

        al_ref, x1 = mpmath.findroot(lambda al, t: (e(3, al) + e(t, al), de(t, al)),
                                     (mpmath.mpf("0.74"), mpmath.mpf("0.92")))
        assert abs(result.parameter_value - al_ref) < mpmath.mpf(10) ** -13, result
        assert abs(result.max_error - abs(e(3, al_ref))) < mpmath.mpf(10) ** -13
        assert abs(result.abscissae[2] - x1) < mpmath.mpf(10) ** -10
    assert result.abscissae[0] == -3 and result.abscissae[3] == 3 and result.equioscillates


@pytest.mark.parametrize("kwargs, message", [
    ({"interval": (3, -3)}, "interval="),
    ({"interval": 3}, "interval="),
    ({"interval": (-3, 3), "domain": 3}, r"pass one\. domain=L stands in for the whole line"),
])
def test_minimax_refuses_a_malformed_interval_or_both_meanings(kwargs, message):
    with pytest.raises(DomainError, match=message):
        minimax(SQUAREPLUS, SOFTPLUS, b, dps=10, **kwargs)


def _dominates_on_grid(candidate, target, parameter, value, lo=-10, hi=10, n=2001):
    """Independent check: candidate(x; parameter=value) >= target(x) at n points of [lo, hi], in mpmath at 30 digits."""
    c = sympy.lambdify(x, candidate.subs(parameter, value), "mpmath")
    t = sympy.lambdify(x, target, "mpmath")
    with mpmath.workdps(30):
        return all(c(mpmath.mpf(lo) + (hi - lo) * mpmath.mpf(i) / (n - 1)) >= t(mpmath.mpf(lo) + (hi - lo) * mpmath.mpf(i) / (n - 1))
                   for i in range(n))


p_positive = sympy.Symbol("p", positive=True)
_BELOW = x - 1 + sympy.exp(-x**2) / 2   # x + p >= it iff p >= sup (exp(-x**2)/2 - 1) = -1/2, at x = 0


@pytest.mark.parametrize("candidate, supremum", [(x + p_positive, sympy.Rational(-1, 2)), (x + p_positive**2, None)],
                         ids=["p", "p-squared"])
def test_a_threshold_below_a_positive_parameters_range_is_the_bottom_of_the_range(candidate, supremum):
    """x + p (p positive) vs x - 1 + exp(-x**2)/2: sup p*(x) = -1/2, so every p > 0 dominates; the result said
    p >= -1/2 (a value p cannot take).  x + p**2 vs the same target: p**2 = exp(-x**2)/2 - 1 has no real root,
    and max() over the samples of the complex p*(x) raised a bare TypeError.  Both: every admissible p
    dominates, the threshold is the bottom of the range, 0, and the result says so."""
    result = dominance_threshold(candidate, _BELOW, p_positive, search=(-10, 10), samples=201)
    assert result.value == 0 and result.bottom_of_range
    assert result.supremum == supremum
    assert "every admissible p dominates" in result.certificate
    assert _dominates_on_grid(candidate, _BELOW, p_positive, 0)  # the returned value itself, and so every p > 0


def test_a_root_that_only_solves_the_squared_equation_is_refused():
    """squareplus(b) vs squareplus(1) - 1: solve squares sqrt(x**2 + b) = 2 t - x, and its root p* = 5 - 4 sqrt(x**2 + 1)
    is 1 at x = 0, where 2 t - x = -1 < 0: the result said b >= 1, though b = 1/100 dominates too (grid check)."""
    target = SQUAREPLUS.subs(b, 1) - 1
    assert _dominates_on_grid(SQUAREPLUS, target, b, sympy.Rational(1, 100))
    with pytest.raises(DomainError, match=r"does not solve candidate = target at its maximum x = 0\.0.*squared"):
        dominance_threshold(SQUAREPLUS, target, b, search=(-10, 10), samples=201)


def test_a_supremum_that_is_also_the_limit_at_infinity_is_the_threshold():
    """squareplus vs mish on an asymmetric search: p*(x) is largest, 0, at x = 0 and tends to 0 at +-oo; the maximum
    found lay 1e-40 below 0, and the exact comparison with the limits refused it ('tends to [0, 0] at +-infinity,
    above the interior maximum').  Reference: squareplus(b=0) = relu >= mish (grid)."""
    mish = x * sympy.tanh(sympy.log(1 + sympy.exp(x)))
    result = dominance_threshold(SQUAREPLUS, mish, b, search=(-7, 5), samples=800)
    assert result.value == 0 and not result.bottom_of_range
    assert _dominates_on_grid(SQUAREPLUS, mish, b, 0)


def test_a_minimax_result_says_where_it_holds():
    """MinimaxResult did not record the interval it was solved on, so a result could not say where max_error
    holds.  interval=(a, b): the interval itself, domain None; domain=L: (-L, L) and L.  Reference for the
    interval case: p*x vs x**2 on [0, 1] has p = 2 sqrt(2) - 2, with its end 1 an extremum."""
    p = sympy.Symbol("p")
    on_interval = minimax(p * x, x**2, p, interval=(0, 1), dps=15)
    assert on_interval.interval == (0, 1) and on_interval.domain is None
    assert abs(on_interval.parameter_value - (2 * mpmath.sqrt(2) - 2)) < 1e-13
    assert max(on_interval.abscissae) == 1 and repr(on_interval).endswith("interval=(0.0, 1.0))")
    on_domain = minimax("squareplus", "softplus", "b", dps=15, domain=50)
    assert on_domain.interval == (-50, 50) and on_domain.domain == 50
    assert repr(on_domain).endswith("domain=50)")
    # every abscissa lies in the interval recorded
    for result in (on_interval, on_domain):
        assert all(result.interval[0] <= a <= result.interval[1] for a in result.abscissae)
    exact = minimax(p * x, 2 * x, p, interval=(-1, 3), dps=15)   # an exact fit: max_error 0 on that interval
    assert exact.max_error == 0 and exact.interval == (-1, 3) and exact.domain is None
