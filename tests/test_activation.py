"""The Activation value: construction, errors, derived formulas, properties."""

from __future__ import annotations

import dataclasses
import math
import re
import subprocess
import sys
from pathlib import Path

import mpmath
import pytest
import sympy

from _reference import least_one_sided_slope
import symact
from symact import x


# ----------------------------------------------------------------- properties
# Expected facts are textbook mathematics, independent of the code under test.
EXPECTED = {
    "relu": dict(bounded_above=False, bounded_below=True, monotone=True, odd=False, even=False,
                 smoothness=0, differentiable_at_0=False, value_at_0=0),
    "tanh": dict(bounded_above=True, bounded_below=True, monotone=True, odd=True, even=False,
                 smoothness=sympy.oo, differentiable_at_0=True, value_at_0=0, slope_at_0=1),
    "sigmoid": dict(bounded_above=True, bounded_below=True, monotone=True, odd=False, even=False,
                    smoothness=sympy.oo, value_at_0=sympy.Rational(1, 2), slope_at_0=sympy.Rational(1, 4)),
    "softplus": dict(bounded_above=False, bounded_below=True, monotone=True, odd=False, even=False,
                     smoothness=sympy.oo, value_at_0=sympy.log(2), slope_at_0=sympy.Rational(1, 2)),
    "gelu": dict(bounded_above=False, bounded_below=True, monotone=False, odd=False, even=False,
                 smoothness=sympy.oo, value_at_0=0, slope_at_0=sympy.Rational(1, 2)),
    "sin": dict(bounded_above=True, bounded_below=True, monotone=False, odd=True, even=False,
                smoothness=sympy.oo, value_at_0=0, slope_at_0=1),
    "abs": dict(bounded_above=False, bounded_below=True, monotone=False, odd=False, even=True,
                smoothness=0, differentiable_at_0=False, value_at_0=0),
    "heaviside": dict(bounded_above=True, bounded_below=True, monotone=True, smoothness=-1, differentiable_at_0=False),
    "elu": dict(smoothness=1, monotone=True, bounded_below=True, bounded_above=False),
    "selu": dict(smoothness=0, monotone=True),
    "softsign": dict(odd=True, bounded_above=True, bounded_below=True, monotone=True),
    "gaussian": dict(even=True, monotone=False, bounded_above=True),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_properties(name):
    props = symact.activation(name).properties()
    for field, expected in EXPECTED[name].items():
        assert getattr(props, field) == expected, (name, field, getattr(props, field), props.evidence)


def _run_python(code: str, timeout: int) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter at the repository root: a hang fails (TimeoutExpired) instead
    of hanging the suite, and hash seeds and caches start fresh."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          cwd=str(Path(__file__).resolve().parents[1]))
    assert done.returncode == 0, done.stderr
    return done


def test_properties_directions_and_evidence():
    assert symact.activation("tanh").properties().direction == "non-decreasing"
    gelu = symact.activation("gelu").properties()
    assert "counterexample" in gelu.evidence["monotone"]
    assert symact.activation("tanh").properties().evidence["odd"] == "symbolic"
    assert symact.activation("relu").properties().kinks == (0,)
    assert symact.activation("tanh").properties().smooth


def test_properties_of_user_formula_are_derived_not_looked_up():
    # x^3 - 3x: odd, not monotone, smooth: nothing in the catalogue says so.
    props = symact.activation("x**3 - 3*x").properties()
    assert props.odd and not props.even and props.monotone is False and props.smooth
    assert props.bounded_above is False and props.bounded_below is False


# --------------------------------------------------------------- construction
def test_catalogue_parameters_and_overrides():
    act = symact.activation("leaky_relu", negative_slope=0.2)
    (symbol,) = act.params
    assert act.params[symbol] == sympy.Rational(1, 5)
    assert act(-10) == -2 and act(3) == 3
    assert act.subs(negative_slope=None).expr == sympy.Piecewise((x, x > 0), (x / 5, True))
    assert symact.activation("softplus").with_params(beta=2)(0) == sympy.log(2) / 2


def test_formula_with_declared_parameters():
    act = symact.activation("x*sigmoid(beta*x)", beta=2)
    assert act.parameter_names == ("beta",)
    expected = 2 / (1 + sympy.exp(-4))
    assert sympy.simplify(act(2) - expected) == 0


def test_sympy_expression_spec_and_string_spec_agree():
    assert symact.activation(x * sympy.tanh(x)) == symact.activation("x*tanh(x)")
    # A SymPy expression in a plain (assumption-free) symbol x is mapped onto symact.x.
    plain = sympy.Symbol("x")
    assert symact.activation(sympy.sin(plain)).expr == sympy.sin(x)


def test_activations_are_immutable_values():
    act = symact.activation("tanh")
    with pytest.raises(dataclasses.FrozenInstanceError):
        act.expr = x  # type: ignore[misc]
    with pytest.raises(TypeError):
        act.params[sympy.Symbol("a")] = 1  # type: ignore[index]
    transformed = act.transformed(2, 0, 1, 0)
    assert act.expr == sympy.tanh(x) and transformed.expr == sympy.tanh(2 * x)
    assert hash(symact.activation("tanh")) == hash(act)


def test_repr_and_latex():
    act = symact.activation("leaky_relu")
    assert repr(act).startswith("Activation('leaky_relu'")
    assert "negative_slope=1/100" in repr(act)
    assert act.latex().startswith(r"\operatorname{leaky\_relu}(x) = ")
    assert act._repr_latex_().startswith("$") and act._repr_latex_().endswith("$")


def test_latex_names_of_derived_and_formula_built_activations():
    """A formula used as a name was typeset as an operator name (\\operatorname{x*tanh(x) + 2}),
    and a transform's ~ is a LaTeX space: names are now marks on the operator, or phi."""
    gelu = symact.activation("gelu")
    assert gelu.derivative(2).latex().startswith(r"\operatorname{gelu}''(x) = ")
    assert gelu.transformed(2, 0, 1, 0).latex().startswith(r"\widetilde{\operatorname{gelu}}(x) = ")
    assert gelu.transformed(2, 0, 1, 0).derivative().latex().startswith(r"\widetilde{\operatorname{gelu}}'(x) = ")
    formula = symact.activation("x*tanh(x) + 2")
    assert formula.latex() == r"\varphi(x) = " + sympy.latex(formula.expr)
    assert "~" not in gelu.transformed(2, 0, 1, 0).latex()


# -------------------------------------------------------------------- errors
def test_unknown_symbol_is_an_error_that_names_the_fix():
    with pytest.raises(symact.UnknownSymbolError, match=r"beta.*declare them.*beta=1.0"):
        symact.activation("x*sigmoid(beta*x)")


def test_unknown_keyword_parameter_is_an_error():
    with pytest.raises(symact.UnknownSymbolError, match="negative_slope"):
        symact.activation("leaky_relu", slope=0.1)


def test_parse_error_is_a_formula_error():
    with pytest.raises(symact.FormulaError, match="cannot parse"):
        symact.activation("x*(tanh(x)")


@pytest.mark.parametrize("formula", ["9**9**9**9*x", "x + 10**(10**6)", "(1/3)**100000 * x",
                                     "Pow(10, 100000)*x", "pow(9, pow(9, pow(9, 9)))*x", "sqrt(2)**(10**6)*x"])
def test_astronomically_large_exact_numbers_are_refused_before_they_are_computed(formula):
    """9**9**9**9 made SymPy compute a number with 3.7e8 digits (the parse never returned); written as
    calls, Pow(10, 100000) gave SymPy's raw ValueError and pow(9, pow(9, pow(9, 9))) never returned."""
    import time

    start = time.perf_counter()
    with pytest.raises(symact.FormulaError, match="digits"):
        symact.activation(formula)
    assert time.perf_counter() - start < 5.0


_HUGE_EXACT_ARGUMENTS = [
    ("'x + binomial(10**6, 5*10**5)'", "binomial(1000000, 500000)"),
    ("'x*bell(3000)'", "bell(3000)"),
    ("'x + factorial(10**7)'", "factorial(10000000)"),
    ("'x + (10**6)!'", "factorial(1000000)"),
    ("'x + factorial(factorial(10))'", "factorial(3628800)"),
    ("'x + gamma(10**6 + 1/2)'", "gamma(2000001/2)"),
    ("'x*legendre(1000, x)'", "legendre(1000, x)"),
    ("'x + factorial(n)', n=10**7", "factorial(10000000)"),
    ("'x*factorial(n)', n=3).with_params(n=10**7", "factorial(10000000)"),
    ("'x*factorial(n)', n=3).subs(n=10**7", "factorial(10000000)"),
    ("'x*tanh(x)', surrogate='factorial(n)*x', n=3).with_params(n=10**6", "factorial(1000000)"),
]


def test_huge_exact_arguments_of_exactly_evaluated_functions_are_refused_in_seconds():
    """SymPy computes factorial(10**7), binomial(10**6, 5*10**5), bell(3000), legendre(1000, x) exactly when
    they are built: the parse (or the parameter substitution) never returned.  Each is now a FormulaError
    naming the call.  Run in a subprocess so that a regression fails (TimeoutExpired) instead of hanging."""
    code = "import symact\n" + "".join(
        f"try:\n    symact.activation({call})\n    print('built')\n"
        "except symact.FormulaError as err:\n    print(str(err).replace(chr(10), ' '))\n"
        for call, _ in _HUGE_EXACT_ARGUMENTS)
    done = _run_python(code, timeout=120)
    lines = done.stdout.splitlines()
    assert len(lines) == len(_HUGE_EXACT_ARGUMENTS)
    for line, (call, named) in zip(lines, _HUGE_EXACT_ARGUMENTS):
        assert f"contain {named}" in line or f"contains {named}" in line, (call, line)
        assert "exact arguments of size at most 100" in line, (call, line)


def test_decimal_literals_with_huge_exponents_are_refused_in_seconds():
    """SymPy converts a decimal literal exactly: 'x*1e100000' took seconds and 'x*1e65657059' never returned
    (the parse computed 10**65657059).  Subprocess: a regression fails (TimeoutExpired) instead of hanging."""
    code = ("import symact\nfor f in ('x*1e65657059', 'x + 1.5E-200000'):\n    try:\n        symact.activation(f)\n"
            "        print('built')\n    except symact.FormulaError as err:\n        print(err)\n"
            "print(float(symact.activation('x*1e300').expr / symact.x))\n")
    done = _run_python(code, timeout=60)
    huge, tiny, ordinary = done.stdout.splitlines()
    assert "the number 1e65657059, whose decimal exponent exceeds 10000" in huge
    assert "the number 1.5E-200000, whose decimal exponent exceeds 10000" in tiny
    assert float(ordinary) == 1e300


def test_exactly_evaluated_functions_with_small_or_float_arguments_still_build():
    n = sympy.Symbol("n", real=True)
    assert symact.activation("x*factorial(20) + binomial(x, 3)").expr == sympy.factorial(20) * x + sympy.binomial(x, 3)
    assert symact.activation("x*factorial(n)", n=3).subs(n=100).expr == sympy.factorial(100) * x
    assert symact.activation("x*bell(n)", n=3).with_params(n=30).concrete_expr == sympy.bell(30) * x
    assert symact.activation("x*gamma(n)", n=2).with_params(n=sympy.Symbol("m")).params[n] == sympy.Symbol("m")
    # a float argument is evaluated numerically (mpmath), in microseconds: 1e7! = 1.2024234005159e+65657059
    big = symact.activation("x + factorial(1e7)").expr - x
    assert isinstance(big, sympy.Float)
    assert abs(mpmath.mpf(big._mpf_) / mpmath.factorial(mpmath.mpf(10**7)) - 1) < 1e-12


def test_large_but_ordinary_numbers_still_parse_exactly():
    assert symact.activation("2**64*x").expr == 2**64 * x
    assert symact.activation("Pow(2, 64)*x + pow(x, 2)").expr == 2**64 * x + x**2
    assert abs(symact.activation("x*10.0**400").expr / x / sympy.Float("1e400") - 1) < 1e-12


@pytest.mark.parametrize("formula, where", [("tan(x)", "pi/2"), ("sec(x) + x", "pi/2"), ("1/x", "{0}"),
                                            ("log(Abs(x - 1))", "{1}")])
def test_properties_refuse_functions_with_real_singularities(formula, where):
    """tan(x).properties() said monotone, unbounded, C^oo: true between its poles only."""
    with pytest.raises(symact.DomainError, match=r"not finite on the whole real line.*" + re.escape(where)):
        symact.activation(formula).properties()


def test_removable_singularities_and_complex_poles_leave_properties_alone():
    assert symact.activation("sin(x)/x").properties().even is True
    assert symact.activation("x/(1 + x**2)").properties().odd is True


def _recording(monkeypatch, name, sizes, size):
    original = getattr(sympy, name)

    def recorded(expr, *args, **kwargs):
        sizes.append(size(sympy.sympify(expr)))
        return original(expr, *args, **kwargs)

    monkeypatch.setattr(sympy, name, recorded)


def test_limits_of_long_sums_and_products_are_taken_part_by_part(monkeypatch):
    """19 tanh terms: Gruntz on the whole sum took ~18 s per side (properties() ~14-37 s)."""
    tanh_sum = " + ".join(f"tanh({k}*x)" for k in range(1, 20))
    sizes = []
    _recording(monkeypatch, "limit", sizes, lambda e: e.count(sympy.exp))
    act = symact.activation(f"x*({tanh_sum})")
    # tanh(k x) -> +-1 at +-oo, so the sum tends to +-19 and x times it to +oo on both sides
    assert act.limit(sympy.oo) == sympy.oo and act.limit(-sympy.oo) == sympy.oo
    assert symact.activation(tanh_sum).limit(-sympy.oo) == -19
    # each limit SymPy is asked for is one tanh (two exps after the rewrite, each counted in two places)
    assert sizes and max(sizes) <= 4
    # the parts' limits do not decide these: the whole expression goes to Gruntz
    assert symact.activation("x - log(1 + exp(x))").limit(sympy.oo) == 0
    assert symact.activation("x*exp(-x**2)").limit(-sympy.oo) == 0
    assert symact.activation("sin(x)/x + 1").limit(sympy.oo) == 1


def test_properties_of_a_long_sum_prove_monotonicity_term_by_term(monkeypatch):
    """The derivative of sum_k tanh(x - k) was put over one denominator and factored: minutes for 19 terms.
    Each tanh(x - k) is increasing (derivative sech^2 > 0), so the sum is, and it tends to +-19."""
    sizes = []
    _recording(monkeypatch, "together", sizes, lambda e: len(sympy.Add.make_args(e)))
    act = symact.activation(" + ".join(f"tanh(x - {k})" for k in range(19)))
    props = act.properties()
    assert max(sizes, default=0) <= 6  # no 19-term sum put over one denominator
    assert props.monotone is True and props.direction == "non-decreasing"
    assert props.evidence["monotone"] == "symbolic"
    assert (props.limit_at_plus_infinity, props.limit_at_minus_infinity) == (19, -19)
    assert props.bounded_above is True and props.bounded_below is True


def test_limit_of_a_saturating_function_of_a_polynomial_is_sympy_s():
    """_limit_of_term takes f's limit for f(u) (tanh, erf, atan, exp), u a polynomial going to +-oo, without
    Gruntz; reference: sympy.limit on the exp rewrite.  A leading coefficient of unknown sign is left to it."""
    import importlib

    module = importlib.import_module("symact.activation")
    x = sympy.Symbol("x", real=True)
    a, k = sympy.Symbol("a", positive=True), sympy.Symbol("k", real=True)
    for expr in (sympy.tanh(x - 3), sympy.tanh(1 - 2 * x), sympy.tanh(x**2), sympy.erf(x / 2 - x**3),
                 sympy.atan(3 - x), sympy.exp(-x**2), sympy.exp(x), sympy.exp(-x**3 / 7), sympy.tanh(a * x + k)):
        for sign in (1, -1):
            expected = sympy.limit(expr.rewrite(sympy.exp), x, sign * sympy.oo)
            assert module._limit_of_term(expr, x, sign) == expected, (expr, sign)
    assert module._polynomial_limit_sign(k * x, x, 1) is None


@pytest.mark.parametrize("formula, direction", [("tanh(3*x)", "non-decreasing"), ("-2*tanh(x/3)", "non-increasing")])
def test_monotonicity_of_a_scaled_tanh_is_proved_not_sampled(formula, direction):
    """tanh(3x)' = 3 - 3 tanh(3x)**2 = 3 sech(3x)**2 > 0; over one denominator SymPy could not see the
    sign of exp(4x) - exp(2x) + 1, so the answer was only sampled."""
    props = symact.activation(formula).properties()
    assert props.monotone is True and props.direction == direction
    assert props.evidence["monotone"] == "symbolic"


def test_properties_as_dict_keeps_exact_values_exact():
    """as_dict is the JSON view: sqrt(2) must not become 1.4142135623730951."""
    props = symact.activation("sqrt(2)*tanh(x)/2 + 1/2").properties().as_dict()
    assert sympy.sympify(props["limit_at_plus_infinity"]) == (1 + sympy.sqrt(2)) / 2
    assert sympy.sympify(props["value_at_0"]) == sympy.Rational(1, 2)
    assert sympy.sympify(props["slope_at_0"]) == sympy.sqrt(2) / 2
    assert props["smoothness"] == "oo"
    # a value that is itself approximate (a float in the formula) stays a float
    assert symact.activation("0.25*x + 0.5").properties().as_dict()["value_at_0"] == 0.5


def test_unknown_function_is_a_formula_error():
    with pytest.raises(symact.FormulaError, match="unknown function.*frobnicate"):
        symact.activation("frobnicate(x)")


def test_unknown_catalogue_name_suggests_close_names():
    with pytest.raises(symact.UnknownActivationError, match="did you mean .*'gelu'"):
        symact.activation("gleu")
    with pytest.raises(KeyError):  # also a KeyError, as a failed lookup is
        symact.activation("sigmiod")


@pytest.mark.parametrize("formula", ["x + I", "sqrt(x)", "log(x)", "asin(x)",
                                     # inside Max/Min the probe's value was no number and was skipped, so
                                     # these were accepted and their generated code was NaN for x < 0
                                     "Min(1, Max(0, sqrt(x)))", "Max(0, log(x))"])
def test_non_real_expression_is_rejected(formula):
    with pytest.raises(symact.NonRealExpressionError, match="real"):
        symact.activation(formula)


def test_max_min_of_real_arguments_stays_accepted():
    # sqrt(Max(x, 0)) and sqrt(x**2 + 1) are real everywhere: the Max/Min probe must not refuse them
    for formula in ("Max(0, sqrt(Max(x, 0)))", "Min(1, sqrt(x**2 + 1))", "Max(0, log(1 + exp(x)))"):
        act = symact.activation(formula)
        assert act(-2.5).is_real and act(2.5).is_real


def test_parameter_assumptions_are_enforced():
    with pytest.raises(symact.FormulaError, match="positive"):
        symact.activation("softplus", beta=-1)


def test_every_error_is_a_symact_error():
    for call in (lambda: symact.activation("gleu"), lambda: symact.activation("y*x"), lambda: symact.activation("x+I")):
        with pytest.raises(symact.SymactError):
            call()


# ------------------------------------------------------------ derived formulas
def test_transformed_is_the_dks_transform():
    phi = symact.activation("tanh")
    psi = phi.transformed(sympy.Rational(3, 2), sympy.Rational(1, 4), 2, sympy.Rational(-1, 10))
    for point in (-2, 0, sympy.Rational(1, 3), 5):
        expected = 2 * (sympy.tanh(sympy.Rational(3, 2) * point + sympy.Rational(1, 4)) - sympy.Rational(1, 10))
        assert sympy.simplify(psi(point) - expected) == 0
    symbolic = phi.transformed()
    assert set(symbolic.parameter_names) == {"alpha", "beta", "gamma", "delta"}
    assert symbolic.concrete_expr == sympy.tanh(x)  # identity transform by default
    # elu already has a parameter alpha: the transform's symbol is renamed, not captured.
    assert "alpha_t" in symact.activation("elu").transformed().parameter_names


def test_taylor_series_of_tanh():
    # tanh x = x - x^3/3 + 2x^5/15 - 17x^7/315 + ...
    expected = x - x**3 / 3 + 2 * x**5 / 15 - 17 * x**7 / 315
    assert sympy.expand(symact.activation("tanh").taylor(0, 7) - expected) == 0


def test_limits():
    assert symact.activation("sigmoid").limit(sympy.oo) == 1
    assert symact.activation("softplus").limit(-sympy.oo) == 0
    assert symact.activation("relu").limit(sympy.oo) == sympy.oo
    assert symact.activation("hardtanh").limit(-sympy.oo) == -1


@pytest.mark.parametrize("spelling, sign", [("inf", 1), ("+inf", 1), ("-inf", -1), (" Infinity ", 1),
                                            ("-INFINITY", -1), (float("inf"), 1), (float("-inf"), -1)])
def test_infinity_as_float_style_strings_is_oo(spelling, sign):
    """'inf' was read as a symbol named inf: tanh.limit('inf') returned tanh(inf)."""
    sigmoid = symact.activation("sigmoid")
    assert sigmoid.limit(spelling) == (1 if sign > 0 else 0)
    assert symact.activation("tanh")(spelling) == sign


def test_second_derivative_of_gelu_is_known_closed_form():
    # gelu'' = phi(x) (2 - x^2) with phi the standard normal density.
    phi = sympy.exp(-x**2 / 2) / sympy.sqrt(2 * sympy.pi)
    assert sympy.simplify(symact.activation("gelu").derivative(2).expr - phi * (2 - x**2)) == 0


def test_inverse_of_injective_activations():
    for name in ("sigmoid", "tanh", "softplus", "leaky_relu", "elu", "arctan"):
        act = symact.activation(name)
        inverse = act.inverse()
        for point in (sympy.Rational(-7, 3), sympy.Rational(1, 5), 2):
            y = act(point)
            assert abs(sympy.N(inverse(y) - point, 30)) < 1e-25, (name, point)


_y = sympy.Symbol("y", real=True)
# formula, its inverse derived by hand (in y), as a Piecewise where the branches differ
_HAND_INVERSES = [
    ("sign(x)*Abs(x)**(1/3)", _y**3),  # the real cube root: x**(1/3) itself is refused (complex for x < 0)
    ("sign(x)*sqrt(Abs(x))", sympy.sign(_y) * _y**2),
    ("sign(x)*log(1 + Abs(x))", sympy.sign(_y) * (sympy.exp(sympy.Abs(_y)) - 1)),
    ("Max(x, 0) + Min(x, 0)/2", sympy.Piecewise((_y, _y >= 0), (2 * _y, True))),  # leaky relu, slope 1/2
    ("x*Abs(x)", sympy.sign(_y) * sympy.sqrt(sympy.Abs(_y))),
    ("Piecewise((x**2, x > 0), (x, True))", sympy.Piecewise((sympy.sqrt(_y), _y > 0), (_y, True))),
    ("Piecewise((x, x > 0), (-x**2, True))", sympy.Piecewise((_y, _y > 0), (-sympy.sqrt(-_y), True))),
    ("erfc(x)", sympy.erfinv(1 - _y)),
    ("x**3", sympy.sign(_y) * sympy.Abs(_y) ** sympy.Rational(1, 3)),
]


@pytest.mark.parametrize("formula, hand", _HAND_INVERSES, ids=[f for f, _ in _HAND_INVERSES])
def test_inverse_of_monotone_piecewise_and_odd_root_formulas(formula, hand):
    """sign(x)*|x|**(1/3) and the other monotone formulas that fold to a Piecewise with a piece at x = 0 alone
    were refused as "constant (0) for x in {0}"; x*|x| had its piece x**2 checked at x = -6/5 (outside the
    piece) and was refused; erfc's inverse raised a bare TypeError; x**3's was refused (y**(1/3) is complex for
    y < 0).  Reference: the inverses derived by hand, at points on both sides of 0, and f(inverse(y)) = y."""
    act = symact.activation(formula)
    inverse = act.inverse()
    for point in (sympy.Rational(-7, 3), sympy.Rational(-1, 5), sympy.Rational(1, 5), 2):
        y = act(point)
        assert abs(sympy.N(inverse(y) - point, 30)) < 1e-25, (formula, point)
        assert abs(sympy.N(inverse(y) - hand.subs(_y, y), 30)) < 1e-25, (formula, point)


@pytest.mark.parametrize("name", ["relu", "gelu", "sin", "abs", "hardtanh"])
def test_non_injective_activations_have_no_inverse(name):
    with pytest.raises(symact.NoInverseError, match="not injective"):
        symact.activation(name).inverse()


def test_gated_forms_take_two_inputs():
    glu = symact.activation("glu")
    assert glu.inputs == (symact.x, symact.v)
    assert glu(3, 0) == sympy.Rational(3, 2)


def test_a_parameter_named_v_is_a_parameter_not_the_gate():
    # v is the gate only when undeclared; declared, it stays a parameter (was: inputs (x, v))
    act = symact.activation("x*sigmoid(v*x)", v=1.5)
    assert act.inputs == (symact.x,) and act.parameter_names == ("v",)
    assert act(2) == 2 / (1 + sympy.exp(-3))
    assert act.with_params(v=2)(1) == 1 / (1 + sympy.exp(-2))
    assert symact.activation(symact.x * symact.v, v=3)(2) == 6  # a SymPy expression too
    assert symact.activation("x*sigmoid(v)").inputs == (symact.x, symact.v)  # undeclared: the gate


def test_a_parameter_named_x_is_refused():
    with pytest.raises(symact.FormulaError, match="x is the input of every activation"):
        symact.activation("x*sigmoid(x)", x=1)


@pytest.mark.parametrize("formula, params, constant", [
    ("1/0", {}, "zoo"), ("log(0)*x", {}, "zoo"), ("oo*x", {}, "oo"), ("-oo*x", {}, "-oo"),
    ("nan*x", {}, "nan"), ("x/beta", {"beta": 0}, "zoo"),
])
def test_non_finite_constants_are_refused(formula, params, constant):
    # an activation is a finite real function; these parsed to zoo/oo/nan and broke derive later
    with pytest.raises(symact.FormulaError, match="must be a finite real function") as err:
        symact.activation(formula, **params)
    assert f"contains {constant}" in str(err.value)


def test_parameter_values_that_divide_by_zero_are_refused():
    act = symact.activation("x/beta", beta=1)
    with pytest.raises(symact.FormulaError, match="at beta=0 contains zoo"):
        act.with_params(beta=0)
    assert act.with_params(beta=2)(4) == 2
    with pytest.raises(symact.FormulaError, match="with beta=0 substituted contains zoo"):
        act.subs(beta=0)
    assert act.subs(beta=4)(2) == sympy.Rational(1, 2)
    assert symact.activation("exp(-oo) + x")(3) == 3  # a limit that SymPy evaluates to a finite value


def test_symact_imports_only_sympy():
    code = "import sys, symact; print(sorted(m for m in ('torch', 'numpy', 'networkx', 'numeric', 'graphs', 'analysis') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("spec, params", [("gelu", {}), ("leaky_relu", {"negative_slope": 0.2}),
                                          ("x*sigmoid(beta*x)", {"beta": 2}), ("swiglu", {})])
def test_activations_pickle_and_copy_as_values(spec, params):
    """pickle keeps formula, parameters and inputs; copies are the (immutable) object itself."""
    import copy
    import pickle

    a = symact.activation(spec, **params)
    restored = pickle.loads(pickle.dumps(a))
    assert restored == a and restored.name == a.name and dict(restored.params) == dict(a.params)
    assert restored.derivative().expr == a.derivative().expr
    assert copy.deepcopy(a) is a and copy.copy(a) is a


# ------------------------------------------------- formula strings are not code
def _attacks(marker):
    # Each would create ``marker`` if the text were evaluated as Python with builtins (or handed to
    # sympify, which evaluates strings): a direct import, a string argument that a SymPy function
    # sympifies, and attribute walks to the builtins.
    command = f"touch {marker}"
    return [
        f"__import__('os').system({command!r})",
        f"x + __import__('os').system({command!r})",
        f"sin({'__import__(' + repr('os') + ').system(' + repr(command) + ')'!r})",
        f"x.__class__.__init__.__globals__['__builtins__']['__import__']('os').system({command!r})",
        "x*exec(x)",
        "x._repr_latex_()",
    ]


@pytest.mark.parametrize("index", range(6))
def test_formula_strings_are_never_run_as_code(tmp_path, index):
    marker = tmp_path / "pwned"
    text = _attacks(marker)[index]
    for build in (
        lambda: symact.activation(text),
        lambda: symact.parse_formula(text),
        lambda: symact.activation("x*sigmoid(beta*x)", beta=text),
        lambda: symact.activation("softplus").with_params(beta=text),
        lambda: symact.activation("leaky_relu").subs(negative_slope=text),
        lambda: symact.parameter_activation(re.sub(r"\bx\b", "W", text)),
        lambda: symact.parameter_activation("powerprop", alpha=text),
        lambda: symact.activation("relu")(text),
        lambda: symact.activation("relu").limit(text),
        lambda: symact.activation("relu").taylor(text, 1),
        lambda: symact.activation("tanh").transformed(text),
    ):
        with pytest.raises(symact.FormulaError):
            build()
    assert not marker.exists()


@pytest.mark.parametrize("index", range(6))
def test_strings_outside_activation_are_never_run_as_code(tmp_path, index):
    """Entropy probabilities, smoothing widths and formulas, and the approximation tools' points."""
    import analysis
    from symact import entropy
    from symact.smooth import convolve

    marker = tmp_path / "pwned"
    text = _attacks(marker)[index]
    for build in (
        lambda: entropy.entropy([text, "1/2"]),
        lambda: entropy.entropy_of_power(["1/2", "1/2"], text),
        lambda: convolve("relu", "logistic", width=text),
        lambda: convolve(sympy.Max(0, x), "logistic", width=text),
        lambda: analysis.asymptotic_expansion("softplus", text),
        lambda: analysis.match_conditions("squareplus", "softplus", "b", "value", at=text),
    ):
        with pytest.raises(symact.FormulaError):
            build()
    assert not marker.exists()


def test_formula_vocabulary_still_covers_sympy_functions():
    # The restricted namespace keeps what formulas use: SymPy classes, sqrt, Piecewise/Eq, constants.
    act = symact.activation("Piecewise((sqrt(x**2 + 1), Eq(x, 0)), (sinc(x) + erfc(x) + pi + E, True))")
    assert act(2) == sympy.sinc(2) + sympy.erfc(2) + sympy.pi + sympy.E
    assert act(0) == 1
    assert symact.activation("x*gamma + beta", gamma=2, beta=1)(3) == 7


# ------------------------------------------------- parameter values given as strings
@pytest.mark.parametrize("build", [
    lambda: symact.activation("softplus").with_params(beta="abc"),
    lambda: symact.activation("softplus", beta="abc"),
    lambda: symact.activation("x*sigmoid(beta*x)", beta="abc"),
    lambda: symact.activation("x*sigmoid(beta*x)", beta="x + 1"),
    lambda: symact.activation("x*sigmoid(beta*x)", beta="I"),
    lambda: symact.activation("x*sigmoid(beta*x)", beta="nan"),
    lambda: symact.activation("x*sigmoid(beta*x)", beta="oo"),
    lambda: symact.parameter_activation("powerprop", alpha="abc"),
])
def test_non_numeric_parameter_strings_are_rejected_naming_the_parameter(build):
    with pytest.raises(symact.FormulaError) as err:
        build()
    message = str(err.value)
    assert "'beta'" in message or "'alpha'" in message
    assert "pass a number" in message


@pytest.mark.parametrize("text, number", [("0.2", 0.2), ("1e-3", 1e-3), ("0.30000000000000004", 0.1 + 0.2), ("-1.5", -1.5)])
def test_numeric_parameter_strings_convert_like_floats(text, number):
    from_string = symact.activation("leaky_relu", negative_slope=text)
    from_float = symact.activation("leaky_relu", negative_slope=number)
    assert from_string == from_float
    # Exact: the decimal typed, as a rational (leaky_relu(-10) at slope 0.2 is -2, not -2.000...).
    assert from_string.params[sympy.Symbol("negative_slope", real=True)] == sympy.Rational(text)
    assert isinstance(from_string(-10), sympy.Rational)
    assert from_string.with_params(negative_slope=text) == from_float


def test_symbolic_number_strings_are_accepted():
    act = symact.activation("x*sigmoid(beta*x)", beta="sqrt(2)/2")
    assert act.params[sympy.Symbol("beta", real=True)] == sympy.sqrt(2) / 2
    assert symact.activation("leaky_relu", negative_slope="1/3")(-3) == -1


# ------------------------------------------------- transformed() arguments
@pytest.mark.parametrize("args, error", [
    ((float("nan"), 0, 1, 0), symact.FormulaError),
    ((1, float("inf"), 1, 0), symact.FormulaError),
    ((1, 0, sympy.oo, 0), symact.FormulaError),
    ((1, 0, 1, sympy.nan), symact.FormulaError),
    ((1j, 0, 1, 0), symact.NonRealExpressionError),
    ((1, 0, 1, sympy.I), symact.NonRealExpressionError),
    (([1], 0, 1, 0), symact.FormulaError),
    ((1, "abc", 1, 0), symact.FormulaError),
    ((True, 0, 1, 0), symact.FormulaError),
])
def test_transformed_rejects_non_finite_non_real_and_non_numbers(args, error):
    with pytest.raises(error) as err:
        symact.activation("tanh").transformed(*args)
    assert "transform argument" in str(err.value) and "pass a" in str(err.value)


def test_transformed_converts_numbers_like_parameters():
    phi = symact.activation("tanh")
    from_float = phi.transformed(0.1, -0.25, 1.5, 0.2)
    assert from_float == phi.transformed("1/10", "-1/4", "3/2", "0.2")
    # The exact DKS transform gamma*(phi(alpha*x + beta) + delta) with the decimals typed.
    a, b, g, d = (sympy.Rational(s) for s in ("0.1", "-0.25", "1.5", "0.2"))
    assert from_float.expr == g * (sympy.tanh(a * x + b) + d)
    # The same conversion as a parameter value: a float parameter and a float transform agree.
    slope = sympy.Rational(repr(0.1))
    assert symact.activation("leaky_relu", negative_slope=0.1).params[sympy.Symbol("negative_slope", real=True)] == slope


# ------------------------------------------------- taylor() at and away from kinks
def test_taylor_away_from_a_kink_expands_the_piece_that_holds_there():
    relu = symact.activation("relu")
    assert relu.taylor(-1, 3) == 0
    assert relu.taylor(sympy.Rational(5, 2), 3) == x
    leaky = symact.activation("leaky_relu", negative_slope=0.2)
    assert sympy.expand(leaky.taylor(-1, 2).xreplace(dict(leaky.params))) == x / 5


@pytest.mark.parametrize("name, kink, order", [
    ("relu", 0, 1), ("leaky_relu", 0, 1), ("elu", 0, 2), ("celu", 0, 2), ("abs", 0, 1), ("heaviside", 0, 0),
    ("hardtanh", 1, 1), ("relu_squared", 0, 2),
])
def test_taylor_at_a_kink_beyond_the_smoothness_is_an_error_naming_the_one_sided_form(name, kink, order):
    act = symact.activation(name)
    with pytest.raises(symact.DomainError) as err:
        act.taylor(kink, order)
    assert "side='+'" in str(err.value) and str(kink) in str(err.value)


def test_one_sided_taylor_at_a_kink_is_the_series_of_that_side():
    elu = symact.activation("elu", alpha=2)
    alpha = sympy.Symbol("alpha", positive=True)
    # Left of 0 elu is alpha*(exp(x) - 1): its Maclaurin polynomial, computed independently.
    left = sum(alpha * x**k / sympy.factorial(k) for k in range(1, 5))
    assert sympy.expand(elu.taylor(0, 4, side="-") - left) == 0
    assert elu.taylor(0, 4, side="+") == x
    # elu is C^1 at 0 only for alpha = 1 (slopes 1 and alpha): order 1 is two-sided there, not at alpha = 2.
    assert symact.activation("elu").taylor(0.0, 1) == x
    with pytest.raises(symact.DomainError):
        elu.taylor(0, 1)


KINKED = [n for n in symact.catalogue_names(include_gated=False) if symact.activation(n).kinks]


@pytest.mark.parametrize("name", KINKED)
def test_taylor_at_kinks_agrees_with_smoothness_and_with_derivatives(name):
    act = symact.activation(name)
    smoothness = act.properties().smoothness
    f = act.concrete_expr
    raised = False
    for k in act.kinks:
        if smoothness >= 0:
            act.taylor(k, int(smoothness))  # C^s everywhere: the order-s polynomial exists at every kink
        try:
            act.taylor(k, int(smoothness) + 1)
        except symact.DomainError:
            raised = True
    assert raised, "the order past the smoothness must fail at some kink"
    # Away from the kinks the coefficients are the derivatives of the whole function (sympy.diff), /j!.
    point = max(act.kinks) + sympy.Rational(1, 3)
    series = act.taylor(point, 3).xreplace(dict(act.params))
    for j in range(4):
        expected = sympy.diff(f, x, j).xreplace({x: point}) / sympy.factorial(j)
        got = sympy.diff(series, x, j).xreplace({x: point}) / sympy.factorial(j)
        assert sympy.simplify(got - expected) == 0, (name, j, got, expected)


def test_formulas_sympy_cannot_differentiate_raise_a_clear_error():
    """floor(x) once crashed properties() with SymPy's "Can't calculate derivative wrt 0"."""
    floor = symact.activation("floor(x)")
    assert floor(sympy.Rational(5, 2)) == 2  # the value is fine
    for call in (floor.properties, floor.derivative):
        with pytest.raises(symact.FormulaError, match="cannot differentiate floor"):
            call()


@pytest.mark.parametrize("order", ["2", None, 1.5, True, -1])
def test_derivative_order_must_be_a_non_negative_integer(order):
    # a SymactError, as every bad-input error is (README); it was a bare ValueError
    with pytest.raises(symact.SymactError, match="non-negative integer"):
        symact.activation("tanh").derivative(order)
    with pytest.raises(symact.SymactError, match="non-negative integer"):
        symact.activation("tanh").taylor(0, order)


@pytest.mark.parametrize("formula, values, points", [
    # ties at x = 0 and x = 1/a: x**2-like on the left of 1/a (slope 2), x on the right (slope 1)
    ("Min(Max(0, x), a*x**2)", (1, 2, sympy.Rational(1, 3), -1), ("1/a", "0", "1/(2*a)")),
    # Max(Min(0, x), a*x**3) ties at x = -1/sqrt(a): x on the left (1), a*x**3 on the right (3)
    ("Max(Min(0, x), a*x**3)", (1, 4), ("-1/sqrt(a)", "0")),
])
def test_a_tie_that_moves_with_a_parameter_takes_the_kink_convention_at_the_parameter_s_value(formula, values, points):
    """activation("Min(Max(0, x), a*x**2)", a=1).derivative()(1) was 0 (the parameter-free form gives 1):
    ties whose slopes hold steps of their own are settled point by point, which needs the tie points as
    numbers, and with a parameter they were left at 0.  They are now settled once the parameters have
    values, through with_params, subs (in part and in full) and a pickle round trip too.
    Reference: the formula's one-sided difference quotients at the parameter's value."""
    import pickle

    phi = symact.activation(formula, a=values[0])
    derivative = phi.derivative()
    for value in values:
        for slope in (derivative.with_params(a=value), phi.with_params(a=value).derivative(),
                      derivative.subs(a=value), pickle.loads(pickle.dumps(derivative.with_params(a=value)))):
            concrete = phi.with_params(a=value).concrete_expr
            for point in points:
                at = sympy.sympify(point).subs("a", value)
                if not at.is_real:
                    continue
                expected = least_one_sided_slope(concrete, at)
                assert abs(float(slope(at)) - expected) <= 1e-12, (formula, value, point, slope, expected)
    # the second derivative away from the ties is the derivative of the first
    second, point = phi.derivative(2), sympy.Rational(7, 3)
    assert second(point) == sympy.diff(phi.concrete_expr, x, 2).xreplace({x: point})
    assert derivative.derivative() == second


def test_numpy_integer_orders_are_orders():
    """derivative(np.int64(2)) was refused as 'not a non-negative integer'; tanh'' = -2 tanh sech^2."""
    import numpy as np

    tanh = symact.activation("tanh")
    x = tanh.x
    assert sympy.simplify(tanh.derivative(np.int64(2)).expr - (-2 * sympy.tanh(x) / sympy.cosh(x) ** 2)) == 0
    assert sympy.expand(tanh.taylor(0, np.int64(3)) - (x - x**3 / 3)) == 0

@pytest.mark.parametrize("text, body", [("lambda x: x", "'x'"), ("lambda t: tanh(t)", "'tanh(x)'"),
                                        ("Lambda(x, x**2)", "'x**2'"), ("lambda: 1", "'x**2'")])
def test_a_lambda_is_not_a_formula(text, body):
    # 'lambda x: x' used to escape as an IndexError from SymPy's evalf of IdentityFunction,
    # 'lambda x: x**2' became an "activation" that is a function object
    with pytest.raises(symact.FormulaError, match=f"is a lambda.*write only its body.*e.g. {re.escape(body)}$"):
        symact.activation(text)


def test_periodic_kinks_are_listed_and_integrated():
    """|sin x| has a kink at every n*pi; kinks gave (0, pi) only, so kernel_maps(...).q_map(1) raised
    DivergentIntegralError with advice (breakpoints=) that kernel_maps cannot take.  Reference:
    E[sin(z)**2] = (1 - E[cos 2z])/2 = (1 - exp(-2))/2 for z ~ N(0, 1)."""
    import mpmath

    import analysis

    act = symact.activation("Abs(sin(x))")
    expected = [n * sympy.pi for n in range(-15, 16)]  # every n*pi with |n*pi| <= 50
    assert list(act.kinks) == expected
    family_points = {sympy.simplify(o + k * p) for o, p in act.kink_families for k in range(-8, 8)}
    assert {n * sympy.pi for n in range(-10, 10)} <= family_points
    assert all(sympy.simplify(sympy.sin(o)) == 0 for o, _ in act.kink_families)
    assert symact.activation("relu").kink_families == ()
    value = analysis.kernel_maps(act, dps=25).q_map(1)
    with mpmath.workdps(40):
        closed = (1 - mpmath.exp(-2)) / 2
        assert abs(mpmath.mpf(value) - closed) < mpmath.mpf(10) ** -23


@pytest.mark.parametrize("formula, bad_x", [("log(x + 3)", -3), ("sqrt(x + 10)", -10), ("log(1 + x/1000)", -1000)])
def test_formulas_real_only_on_a_half_line_are_rejected(formula, bad_x):
    """The realness probe stopped at |x| = 5/2, so log(x + 3) (complex for x < -3) was accepted and
    properties() then described a function that is not real.  Reference: the value just past bad_x."""
    value = sympy.N(sympy.sympify(formula).subs(sympy.Symbol("x"), bad_x - 1), 20)
    assert not value.is_real  # the formula really is non-real there
    with pytest.raises(symact.NonRealExpressionError, match="real"):
        symact.activation(formula)


@pytest.mark.parametrize("build", [lambda: symact.activation("log(x**2 + a)", a=-0.01),
                                   lambda: symact.activation("sqrt(x**2 - 1/100)"),
                                   lambda: symact.activation("log(Abs(x) - 1/10)"),
                                   lambda: symact.activation("sqrt(x**2 + a)", a=1).with_params(a=-1e-4)])
def test_formulas_non_real_only_near_0_are_refused(build):
    """The realness probes skipped |x| < 1/3: sqrt(x**2 - 1/100) is imaginary on (-1/10, 1/10)."""
    with pytest.raises(symact.NonRealExpressionError, match="not real"):
        build()


def test_realness_probe_of_a_sum_that_cancels_far_out_is_quick():
    """x*erf(x)/2 + x/2 is 6e-8692 at x = -100: evalf refined the cancellation for half a minute per point
    (convolve('relu', 'gaussian') never returned)."""
    import time

    start = time.perf_counter()
    act = symact.activation("x*erf(sqrt(2)*x)/2 + x/2 + sqrt(2)*exp(-2*x**2)/(4*sqrt(pi))")
    assert time.perf_counter() - start < 10.0
    assert act(-3) < 1e-5  # the smoothed relu: positive, tiny on the left


def test_calling_at_a_float_gives_a_number_and_at_infinity_the_limit():
    """gelu(1.0) was the unevaluated 0.5*erf(0.5*sqrt(2)) + 0.5; gelu(-inf) was nan (the formula is
    -oo * 0 there) although GELU -> 0; relu(nan) escaped as SymPy's 'not comparable' ValueError."""
    import mpmath

    gelu = symact.activation("gelu")
    value = gelu(1.0)
    assert isinstance(value, sympy.Float)
    assert float(value) == pytest.approx(0.5 * (1 + math.erf(1 / math.sqrt(2))), rel=1e-15)
    with mpmath.workdps(40):
        reference = mpmath.ncdf(1)
    assert abs(gelu(sympy.Float("1", 40)) - sympy.Float(reference, 40)) < sympy.Float("1e-38")
    for minus_infinity in (float("-inf"), "-inf", -sympy.oo):
        assert gelu(minus_infinity) == 0
    assert symact.activation("softplus")(float("inf")) == sympy.oo
    assert symact.activation("mish")(float("-inf")) == 0
    for name in ("relu", "gelu", "tanh"):
        with pytest.raises(symact.DomainError, match="NaN"):
            symact.activation(name)(float("nan"))


# name, point, the value by mpmath (independent of SymPy's evalf): formulas without their cancellation
_FLOAT_POINTS = [
    ("softplus", -40.0, lambda t: mpmath.log1p(mpmath.exp(t))),
    ("softplus", -1e6, lambda t: mpmath.log1p(mpmath.exp(t))),
    ("logsigmoid", 40.0, lambda t: -mpmath.log1p(mpmath.exp(-t))),
    ("mish", -50.0, lambda t: t * mpmath.tanh(mpmath.log1p(mpmath.exp(t)))),
    ("tanhshrink", 1e-8, lambda t: t - mpmath.tanh(t)),
    ("elu", -1e-8, mpmath.expm1),
    ("gelu", -30.0, lambda t: t * mpmath.erfc(-t / mpmath.sqrt(2)) / 2),
    ("gelu", -1e5, lambda t: t * mpmath.erfc(-t / mpmath.sqrt(2)) / 2),
    ("gelu", 1.0, lambda t: t * mpmath.ncdf(t)),
]


@pytest.mark.parametrize("name, point, reference", _FLOAT_POINTS, ids=[f"{n}({p})" for n, p, _ in _FLOAT_POINTS])
def test_calling_at_a_float_gives_every_digit_where_the_formula_cancels(name, point, reference):
    """The float's value went in as a 53-bit Float and SymPy evaluated each node at 53 bits, so a sum that
    cancels lost every digit: softplus(-40.0) and mish(-50.0) were 0 (4.2e-18, -9.6e-21), elu(-1e-8) wrong from
    the 9th digit, gelu(-30.0) +1.9e-124 for -1.5e-196.  Reference: mpmath at 300 digits of the formula written
    without its cancellation (log1p, expm1, erfc), at the float's exact value."""
    value = symact.activation(name)(point)
    assert isinstance(value, sympy.Float)
    with mpmath.workdps(300):
        exact = reference(mpmath.mpf(point))
        assert abs(mpmath.mpf(value) - exact) <= mpmath.mpf(10) ** -14 * abs(exact), (value, exact)


def test_calling_at_a_float_where_no_digit_can_be_known_is_refused():
    """tanh(x) - 1 at 1e6 is -2*exp(-2e6)/(1 + exp(-2e6)) ~ -1e-868589, smaller than its terms by 868589 digits:
    the value had no correct digit.  Now a clear error naming the cancellation and the fix."""
    with pytest.raises(symact.FormulaError, match="cancels more than 20000 digits.*without the cancellation"):
        symact.activation("tanh(x) - 1")(1e6)


# (formula, params, slope at 0 by the definition lim (f(h) - f(0))/h from both sides, differentiable at 0)
SLOPES_WHERE_THE_DERIVATIVE_FORMULA_IS_UNDEFINED = [
    ("sqrt(Abs(x))", {}, sympy.nan, False),  # a cusp: +oo from the right, -oo from the left
    ("elephant", {"d": "1/2"}, sympy.nan, False),  # 1/(1 + |x|^(1/2)): a cusp too
    ("x*sin(1/x)", {}, sympy.nan, False),  # the quotient sin(1/h) oscillates
    ("x**2*sin(1/x)", {}, 0, True),  # |h*sin(1/h)| <= |h|, though f' has no limit at 0
    ("sinc", {}, 0, True),  # even and smooth
    ("real_root(x, 3)", {}, sympy.oo, False),  # a vertical tangent: +oo from both sides
]


@pytest.mark.parametrize("spec, params, slope, differentiable", SLOPES_WHERE_THE_DERIVATIVE_FORMULA_IS_UNDEFINED,
                         ids=[s for s, *_ in SLOPES_WHERE_THE_DERIVATIVE_FORMULA_IS_UNDEFINED])
def test_slope_at_0_is_the_two_sided_limit_of_the_difference_quotient(spec, params, slope, differentiable):
    """The slope was SymPy's one-sided (right) limit of f': sqrt(Abs(x)) reported +oo and the elephant with
    d = 1/2 -oo, though the left side has the opposite sign, and x**2*sin(1/x) AccumBounds(-1, 1)."""
    act = symact.activation(spec, **params)
    props = act.properties()
    # the independent reference: the difference quotient at h = +-1e-30, evaluated at 50 digits
    f = act.concrete_expr
    quotients = [sympy.N((f.xreplace({x: h}) - props.value_at_0) / h, 50) for h in (sympy.Rational(1, 10**30),
                                                                                     -sympy.Rational(1, 10**30))]
    if slope is sympy.nan:
        assert props.slope_at_0 is sympy.nan
        if spec != "x*sin(1/x)":  # a cusp: the two sides' quotients are large and of opposite sign
            assert quotients[0] * quotients[1] < 0 and min(abs(q) for q in quotients) > 1e6
    elif slope == sympy.oo:
        assert props.slope_at_0 == sympy.oo and min(quotients) > 1e6
    else:
        assert props.slope_at_0 == slope and max(abs(q - slope) for q in quotients) < 1e-20
    assert props.differentiable_at_0 is differentiable


@pytest.mark.parametrize("spec, smoothness", [("Abs(x)**(3/2)", 1), ("Abs(x)**(5/2)", 2), ("real_root(x, 3)", 0),
                                              ("Abs(x - 1)**(3/2)", 1)])
def test_smoothness_at_a_kink_where_a_derivative_is_infinite(spec, smoothness):
    """|x|^(3/2) has f'' = (3/4)|x|^(-1/2) -> +oo from both sides, so it is C^1 and not C^2; comparing
    the two infinite one-sided values (oo - oo = nan) raised TypeError: Invalid NaN comparison."""
    act = symact.activation(spec)
    props = act.properties()
    assert props.smoothness == smoothness
    # the reference: the (smoothness)-th derivative is continuous at the kink, the next one unbounded there
    kink = act.kinks[0]
    nxt = act.derivative(smoothness + 1).concrete_expr
    h = sympy.Rational(1, 10**12)
    assert abs(sympy.N(nxt.xreplace({x: kink + h}), 30)) > 1e3 or abs(sympy.N(nxt.xreplace({x: kink - h}), 30)) > 1e3


@pytest.mark.parametrize("point", [1j, complex(0.5, 2), "1 + I", sympy.I, sympy.zoo])
def test_calling_at_a_non_real_point_is_a_domain_error(point):
    """gelu(1j) returned 0.5*I*(1 + erf(0.5*sqrt(2)*I)), a complex 'value' of a real activation."""
    with pytest.raises(symact.DomainError, match="real"):
        symact.activation("gelu")(point)


@pytest.mark.parametrize("point", [None, [1.0, 2.0], True, object()])
def test_calling_at_a_non_number_names_what_to_pass(point):
    """None and [1, 2] raised a bare SympifyError, True an AttributeError from inside SymPy."""
    with pytest.raises(symact.FormulaError, match="real number") as err:
        symact.activation("relu")(point)
    assert type(point).__name__ in str(err.value)


def test_calling_at_a_numpy_array_points_to_the_array_paths():
    np = pytest.importorskip("numpy")
    with pytest.raises(symact.FormulaError, match="lambdify"):
        symact.activation("tanh")(np.array([1.0, 2.0]))
    # numpy scalars are numbers: the same value as the Python float
    assert float(symact.activation("tanh")(np.float64(0.25))) == pytest.approx(math.tanh(0.25), rel=1e-15)
    assert symact.activation("relu")(np.int64(-3)) == 0
    # a 0-d array (what np.asarray(0.25) or a reduction gives) is one number too
    assert float(symact.activation("tanh")(np.array(0.25))) == pytest.approx(math.tanh(0.25), rel=1e-15)


def test_limit_at_a_real_point_is_two_sided_unless_a_side_is_asked_for():
    """limit(0) was SymPy's right-hand limit: heaviside.limit(0) returned 1 although the left limit is 0,
    and sinc.limit(0) raised a raw NotImplementedError (sinc has no leading-term routine)."""
    # references: sin(x)/x -> 1; the step's one-sided values 0 and 1; hardshrink jumps from 0 to lambd
    assert symact.activation("sinc").limit(0) == 1
    assert symact.activation("relu").limit(1) == 1 and symact.activation("relu").limit(0) == 0
    step = symact.activation("heaviside")
    with pytest.raises(symact.DomainError, match="side='\\+'"):
        step.limit(0)
    assert (step.limit(0, side="-"), step.limit(0, side="+")) == (0, 1)
    shrink = symact.activation("hardshrink", lambd="1/2")
    assert (shrink.limit("1/2", side="-"), shrink.limit("1/2", side="+")) == (0, sympy.Rational(1, 2))
    assert symact.activation("sign(x)").limit(0, side="-") == -1
    with pytest.raises(symact.FormulaError, match="side"):
        step.limit(0, side="left")


@pytest.mark.parametrize("formula", ["gamma(x)", "factorial(x)", "x!"])
def test_formulas_with_gamma_poles_build_and_properties_refuse_them(formula):
    """gamma(x) and factorial(x) (x! too) hung in the realness probe, which computed gamma(10**20) and
    (10**30)! exactly; once built, properties() said 'bounded below' though gamma(x) -> -oo as x -> 0-
    (its poles at 0, -1, -2, ... are beyond SymPy's continuous_domain).  Run in a subprocess so that a
    regression fails (TimeoutExpired) instead of hanging the suite."""
    code = (
        "import symact, sympy\n"
        f"act = symact.activation({formula!r})\n"
        "print(sympy.N(act(sympy.Rational(1, 2)), 15))\n"
        "try:\n"
        "    act.properties()\n"
        "except symact.DomainError as err:\n"
        "    print('DomainError', err)\n"
    )
    done = _run_python(code, timeout=300)
    value_line, error_line = done.stdout.splitlines()[:2]
    # reference: gamma(1/2) = sqrt(pi), (1/2)! = gamma(3/2) = sqrt(pi)/2
    reference = math.sqrt(math.pi) * (1 if formula.startswith("gamma") else 0.5)
    assert float(value_line) == pytest.approx(reference, rel=1e-14)
    assert error_line.startswith("DomainError") and "-1" in error_line and "not finite" in error_line


@pytest.mark.parametrize("formula, python_value", [("x and 1", 1), ("x or 0", "x"), ("1 if 2 > 1 else x", 1),
                                                   ("x if 1 else 0", "x")])
def test_python_boolean_keywords_are_refused_not_evaluated(formula, python_value):
    """Python's and/or/if-else test a SymPy object's truth: 'x and 1' built the constant 1, '1 if 2 > 1 else x'
    too, silently.  The reference is what Python itself makes of the text with x a SymPy symbol."""
    assert eval(formula, {"x": x}) == (x if python_value == "x" else python_value)  # noqa: S307 - fixed test text
    with pytest.raises(symact.FormulaError, match="keyword"):
        symact.activation(formula)


@pytest.mark.parametrize("build", [
    lambda: symact.activation("softplus").with_params(beta=x),
    lambda: symact.activation("softplus").subs(beta=2 * x),
    lambda: symact.activation("softplus", beta=x + 1),
    lambda: symact.activation("leaky_relu").with_params(negative_slope=symact.v),
])
def test_a_parameter_value_in_the_input_is_refused(build):
    """softplus.with_params(beta=x) built log(1 + exp(x**2))/x, which is not softplus at any beta (its
    value at x = 1 is log(1 + e), softplus_beta(1) = log(1 + e^beta)/beta); the value was accepted."""
    with pytest.raises(symact.FormulaError, match="depends on the input"):
        build()


@pytest.mark.parametrize("formula, counts", [("tanh(x", "1 '(' against 0 ')'"), ("x*sigmoid(x))", "1 '(' against 2 ')'"),
                                             ("Max(0, [x)", "1 '[' against 0 ']'")])
def test_an_unbalanced_bracket_is_named_as_such(formula, counts):
    """'tanh(x' failed with tokenize's "('EOF in multi-line statement', (2, 0))", which names neither the
    problem nor the fix."""
    with pytest.raises(symact.FormulaError) as info:
        symact.activation(formula)
    assert counts in str(info.value) and "multi-line" not in str(info.value)


@pytest.mark.parametrize("formula, problem", [
    ("x*sigmoid(x))", "')' at position 12 closes no bracket"),
    ("x)+(x", "')' at position 1 closes no bracket"),
    ("Max(0, (x]", "'(' at position 7 is closed by ']' at position 9"),
    ("tanh(x", "'(' at position 4 is never closed"),
])
def test_a_bracket_that_does_not_nest_is_named_with_its_position(formula, problem):
    """On Python 3.12 'x*sigmoid(x))' got the tokenizer's "unmatched ')'" and no bracket counts (found on a
    GPU machine's Python 3.12), and on every version 'x)+(x' (balanced counts, wrong order) got it too."""
    with pytest.raises(symact.FormulaError) as info:
        symact.activation(formula)
    assert problem in str(info.value) and "unmatched" not in str(info.value)


@pytest.mark.parametrize("formula, at_one_half", [
    ("exp(exp(x))", lambda: mpmath.exp(mpmath.exp(0.5))),
    ("Abs(x)**x", lambda: mpmath.sqrt(0.5)),
    ("1/(1 + exp(-exp(x + 3)))", lambda: 1 / (1 + mpmath.exp(-mpmath.exp(3.5)))),
    ("sin(exp(x))", lambda: mpmath.sin(mpmath.exp(0.5))),
    ("cos(exp(x)/3)", lambda: mpmath.cos(mpmath.exp(0.5) / 3)),
    ("tanh(exp(x))", lambda: mpmath.tanh(mpmath.exp(0.5))),
    ("tanh(x*exp(x))", lambda: mpmath.tanh(0.5 * mpmath.exp(0.5))),
    # towers of three and four: the probe at x = 10 (1000 for tanh of a tower of two) hung or overflowed
    ("exp(exp(exp(x)))", lambda: mpmath.exp(mpmath.exp(mpmath.exp(0.5)))),
    ("exp(-exp(exp(x)))", lambda: mpmath.exp(-mpmath.exp(mpmath.exp(0.5)))),
    ("tanh(exp(exp(x)))", lambda: mpmath.tanh(mpmath.exp(mpmath.exp(0.5)))),
    ("sinh(sinh(sinh(x)))", lambda: mpmath.sinh(mpmath.sinh(mpmath.sinh(0.5)))),
    ("log(exp(exp(exp(exp(x)))) - 2)", lambda: mpmath.log(mpmath.exp(mpmath.exp(mpmath.exp(mpmath.exp(0.5)))) - 2)),
])
def test_formulas_growing_faster_than_exponentially_build_in_seconds(formula, at_one_half):
    """exp(exp(x)) and the sigmoid of exp(x) hung in the realness probe (exp(-exp(10**6)) asks mpmath for
    exp(-10**434294)), and |x|**x too (10**30 to the power 10**30 evaluated exactly).  So did sin(exp(x)) and
    cos(exp(x)/3) (over a minute: exp(10**6) reduced modulo pi), and tanh(exp(x)) and tanh(x*exp(x)) raised a
    bare OverflowError from mpmath; so did towers of three (exp(exp(exp(x))) hung, tanh(exp(exp(x))) and
    sinh(sinh(sinh(x))) raised "too many digits in integer").  Run in a subprocess so that a regression fails
    (TimeoutExpired) instead of hanging the suite."""
    code = f"import symact, sympy\nprint(sympy.N(symact.activation({formula!r})(sympy.Rational(1, 2)), 20))\n"
    done = _run_python(code, timeout=120)
    with mpmath.workdps(30):
        assert float(done.stdout) == pytest.approx(float(at_one_half()), rel=1e-15)


def test_a_tower_of_exponentials_is_still_probed_for_realness():
    """The tower's probe points are cut to |x| <= 5/2, not dropped: sqrt(tanh(exp(exp(x))) - 9/10) is not real
    for x < -0.86 (tanh(e) = 0.99 > 0.9 > tanh(exp(exp(-2.5))) = 0.86)."""
    code = ("import symact\ntry:\n    symact.activation('sqrt(tanh(exp(exp(x))) - 9/10)')\n    print('built')\n"
            "except symact.NonRealExpressionError as err:\n    print(str(err).split(' (value')[0])\n")
    assert "not real at x = -5/2" in _run_python(code, timeout=60).stdout


def test_properties_of_a_tower_of_exponentials_return_in_seconds():
    """properties() sampled at x = 30: tanh(exp(exp(x))) raised a bare MemoryError from mpmath and exp(exp(exp(x)))
    did not return (symact derive of either printed a traceback or hung).  Subprocess: a hang fails.  Reference:
    both are increasing (compositions of increasing functions); exp's tower is unbounded above, tanh's bounded."""
    code = ("import symact\n"
            "for f in ('tanh(exp(exp(x)))', 'exp(exp(exp(x)))'):\n"
            "    p = symact.activation(f).properties()\n"
            "    print(p.monotone, p.direction, p.bounded_above)\n")
    lines = _run_python(code, timeout=120).stdout.splitlines()
    assert lines == ["True non-decreasing True", "True non-decreasing False"]


def test_large_exact_powers_of_the_input_build_in_seconds_and_are_still_probed():
    """x**1000000 hung in the realness probe: substituted exactly, (5/2)**(10**6) and (10**30)**(10**6) are
    numbers of millions of digits.  Subprocess: a regression fails (TimeoutExpired) instead of hanging."""
    code = ("import symact\n"
            "print(symact.activation('x**1000000').expr)\n"
            "print(symact.activation('(x**2 + 1)**(10**6)*exp(-x**2)').concrete_expr)\n"
            "for f in ('x**(1000001/3)', 'Piecewise((x**100000, x > 0), (sqrt(x), True))'):\n"
            "    try:\n        symact.activation(f)\n        print('built')\n"
            "    except symact.NonRealExpressionError as err:\n        print('NonReal', str(err).split(' (value')[0])\n")
    done = _run_python(code, timeout=60)
    power, gaussian, root, piecewise = done.stdout.splitlines()
    assert power == str(x**1000000)
    assert gaussian == str((x**2 + 1)**(10**6) * sympy.exp(-x**2))
    # the principal branch, as for x**(1/3): complex for x < 0; the sqrt piece is probed too
    assert root.startswith("NonReal") and "not real at x = -5/2" in root
    assert piecewise.startswith("NonReal") and "not real at x = -5/2" in piecewise


def test_the_narrower_probe_of_fast_growing_formulas_still_finds_where_they_are_not_real():
    # sqrt(500 - x) is imaginary beyond x = 500, inside the narrower probe range (|x| <= 1000)
    with pytest.raises(symact.NonRealExpressionError, match="not real at x = 1000"):
        symact.activation("sqrt(500 - x)*exp(-exp(-x))")


def test_properties_of_large_exact_powers_finish_and_are_right():
    """x**1000000.properties() hung (exact substitution at the sample points, then at the singularity
    probe).  Subprocess: a regression fails (TimeoutExpired) instead of hanging.  Reference: x**n for even n
    is even, bounded below, not monotone; for odd n odd and increasing; 1/x**n is singular at 0."""
    code = ("import symact\n"
            "for f in ('x**1000000', 'x**1000001'):\n"
            "    p = symact.activation(f).properties()\n"
            "    print(p.even, p.odd, p.monotone, p.bounded_below, p.bounded_above)\n"
            "try:\n    symact.activation('1/x**1000001').properties()\n"
            "except symact.DomainError as err:\n    print('DomainError', 'singular at {0}' in str(err))\n")
    done = _run_python(code, timeout=120)
    assert done.stdout.splitlines() == ["True False False True False", "False True True False False",
                                        "DomainError True"]


@pytest.mark.parametrize("name, params, slope", [("softshrink", {"lambd": 0}, 1), ("hardshrink", {"lambd": 0}, 1),
                                                 ("celu", {"alpha": 2}, 1), ("relu_squared", {}, 0),
                                                 ("pade", {"b1": 1}, 1)])
def test_slope_at_a_differentiable_kink_at_0_is_the_derivative_not_the_autograd_branch(name, params, slope):
    """softshrink and hardshrink at lambd = 0 are the identity: properties() said differentiable_at_0 = True
    and C^oo, but slope_at_0 = 0, the value of the (0, True) branch that holds only at x = 0 (autograd's
    convention, which derivative() keeps).  Where f is differentiable at 0 the slope is f'(0).  Reference:
    the difference quotient at h = +-1e-30, 50 digits."""
    act = symact.activation(name, **params)
    props = act.properties()
    assert props.differentiable_at_0 is True and 0 in props.kinks
    f = act.concrete_expr
    for h in (sympy.Rational(1, 10**30), -sympy.Rational(1, 10**30)):
        assert abs(sympy.N((f.xreplace({x: h}) - props.value_at_0) / h, 50) - slope) < 1e-20
    assert props.slope_at_0 == slope


@pytest.mark.parametrize("name, constant, region", [("softshrink", 0, sympy.Interval(-sympy.S.Half, sympy.S.Half)),
                                                    ("hardshrink", 0, sympy.Interval(-sympy.S.Half, sympy.S.Half)),
                                                    ("relu6", 6, sympy.Interval(6, sympy.oo))])
def test_a_piecewise_with_a_constant_piece_says_where_it_is_constant(name, constant, region):
    """softshrink's inverse() error said 'constant on a piece (True)' (its last condition, which names no
    region), and hardshrink's 'cannot invert a piece with condition (x > 1/2) | (x < -1/2); invert the
    pieces by hand', though it is 0 on [-1/2, 1/2] and no inverse exists.  The region is checked to be
    where the function is that constant, at its ends and middle."""
    act = symact.activation(name)
    with pytest.raises(symact.NoInverseError, match="not injective") as info:
        act.inverse()
    assert f"is constant ({constant}) for x in {region}" in str(info.value)
    ends = [region.inf, region.sup if region.sup.is_finite else region.inf + 100]
    for point in (*ends, (ends[0] + ends[1]) / 2):
        assert act(point) == constant


@pytest.mark.parametrize("spec, plus, minus", [
    ("x*(2 + sin(x))", sympy.oo, -sympy.oo),
    ("x*sin(x)", sympy.AccumBounds(-sympy.oo, sympy.oo), sympy.AccumBounds(-sympy.oo, sympy.oo)),
    ("exp(x)*sin(x)", sympy.AccumBounds(-sympy.oo, sympy.oo), 0),
])
def test_limit_of_a_growing_times_an_oscillating_factor_is_resolved(spec, plus, minus):
    """SymPy's limit leaves oo*sign(AccumBounds(a, b)): x*(2 + sin(x)) had limit oo*sign(AccumBounds(1, 3))
    at +oo (it is oo) and x*sin(x) oo*sign(AccumBounds(-1, 1)) (unbounded both ways), and properties() said
    bounded_above/below None (undecided) for both.  Checked against values far out: at x = 2*pi*k + pi/2
    and 2*pi*k - pi/2 (sin = +1, -1), k = 10**6, evaluated at 30 digits."""
    act = symact.activation(spec)
    assert act.limit(sympy.oo) == plus and act.limit(-sympy.oo) == minus
    props = act.properties()
    assert props.bounded_above is False and props.bounded_below is False
    f = act.concrete_expr
    k = 10**6
    far = {s: [sympy.N(f.xreplace({x: s * 2 * sympy.pi * k + shift}), 30) for shift in (sympy.pi / 2, -sympy.pi / 2)]
           for s in (1, -1)}
    right_high, right_low = far[1]
    assert right_high > 1e6  # up without bound on the right
    assert (right_low > 1e6) == (plus == sympy.oo) and (right_low < -1e6) == (plus != sympy.oo)
    if minus == -sympy.oo:
        assert max(far[-1]) < -1e6
    elif minus == 0:
        assert max(abs(v) for v in far[-1]) < 1e-100
    else:
        assert max(far[-1]) > 1e6 and min(far[-1]) < -1e6


@pytest.mark.parametrize("formula, params, slope", [
    ("Max(x, x/4)", {}, sympy.Rational(1, 4)),          # leaky_relu(x, 1/4)'(0): torch takes negative_slope
    ("Min(x, x/4)", {}, sympy.Rational(1, 4)),
    ("Max(x, 2*x)", {}, 1),
    ("Min(x, -x/3)", {}, 0),                            # opposite slopes: 0, as abs'(0)
    ("Max(x, -x)", {}, 0),
    ("Max(0, x)", {}, 0),                               # relu'(0) = 0
    ("Max(x, a*x)", {"a": sympy.Rational(1, 4)}, sympy.Rational(1, 4)),
    ("Max(x, a*x)", {"a": 3}, 1),
    ("Max(x, a*x)", {"a": -2}, 0),
])
def test_derivative_at_a_tie_of_max_min_is_the_least_one_sided_slope(formula, params, slope):
    """Max(x, x/4)'(0) was 0: both Heavisides of d Max(a, b) = H(a - b) a' + H(b - a) b' were 0 at the
    tie, a value that is neither one-sided slope (1, 1/4) nor torch's leaky_relu gradient (1/4).  The tie
    now takes the one-sided slope of least magnitude (0 where they differ in sign or one is 0).
    Reference: the one-sided difference quotients of the formula at h = +-1e-30."""
    act = symact.activation(formula, **params)
    f = act.concrete_expr
    one_sided = [sympy.nsimplify(sympy.N((f.xreplace({x: h}) - f.xreplace({x: 0})) / h, 40), rational=True)
                 for h in (sympy.Rational(1, 10**30), -sympy.Rational(1, 10**30))]
    least = min(one_sided, key=abs) if one_sided[0] * one_sided[1] > 0 else 0
    assert least == slope
    assert act.derivative()(0) == slope
    assert act.properties().slope_at_0 == slope


@pytest.mark.parametrize("formula, above, below", [
    ("x*sin(x)**2", False, False),        # limits oo*sign(AccumBounds(0, 1)) at +oo, oo*sign(AccumBounds(-1, 0)) at -oo
    ("-x*sin(x)**2", False, False),
    ("x*(1 + sin(x))", False, False),
    ("x**2*sin(x)**2", False, None),      # >= 0, but the limits alone do not show it
])
def test_boundedness_when_an_oscillating_factor_touches_0(formula, above, below):
    """x*sin(x)**2 has the limits oo*sign(AccumBounds(0, 1)) at +oo: the product takes values near x*1
    arbitrarily far out, so f is unbounded above, whatever it does where the factor is near 0 (there it may
    stay finite, as here, or not).  properties() said bounded_above = bounded_below = None.  Reference: the
    values at x = +-(k*pi/2 + 1000*pi), k = 0..3, one of size 3000 of each unbounded side's sign."""
    act = symact.activation(formula)
    props = act.properties()
    assert (props.bounded_above, props.bounded_below) == (above, below)
    values = [float(act(side * (k * sympy.pi / 2 + 1000 * sympy.pi))) for side in (1, -1) for k in range(4)]
    assert (max(values) > 3000) == (above is False) and (min(values) < -3000) == (below is False)


@pytest.mark.parametrize("formula, first, second", [("Max(sin(x), x/2)", "sin(x)", "x/2"),
                                                    ("Min(tanh(x), x/3)", "tanh(x)", "x/3")])
def test_kinks_of_an_equation_sympy_cannot_solve_are_found_numerically(formula, first, second):
    """sympy.solve raises NotImplementedError for sin(x) = x/2, and the kink was dropped: Max(sin(x), x/2) had
    kinks == (), so quadrature and the derivative convention took it for smooth at 0 and +-1.8955.  Reference:
    the crossings by mpmath.findroot at 40 digits, and at x = 0 the convention (the one-sided slope of least
    magnitude) from the two branches' slopes."""
    import mpmath

    act = symact.activation(formula)
    u, w = (sympy.sympify(e, locals={"x": x}) for e in (first, second))
    assert len(act.kinks) == 3, act.kinks
    with mpmath.workdps(40):
        r = mpmath.findroot(sympy.lambdify(x, u - w, "mpmath"), 2.5)
        for kink, want in zip(act.kinks, (-r, mpmath.mpf(0), r)):
            assert abs(mpmath.mpf(str(sympy.N(kink, 35))) - want) < mpmath.mpf(10) ** -28, (kink, want)
    # at the exact kink 0 the tie's convention applies (slopes 1 and 1/2, or 1 and 1/3: the lesser); the others
    # are 30-digit numbers, at which the branches no longer tie exactly
    assert act.kinks[1] == 0
    want = min(sympy.diff(u, x).subs(x, 0), sympy.diff(w, x).subs(x, 0))
    assert act.derivative().expr.subs(symact.x, 0) == want


def test_kinks_that_sympy_solve_misses_without_saying_so_are_found_numerically():
    """sympy.solve returns [] for x - 1 = (x - 1)*x/3 + cos(x), which has two real roots: Max(x - 1, that) had no
    kinks, and the kernel maps integrated across them (the mpmath engine's Hermite rule then could not resolve
    phi).  A transcendental switching equation is now also scanned numerically.  Reference: mpmath.findroot at
    40 digits from starting points in each bracket, and a sign change of the difference around each kink."""
    import mpmath

    u = x - 1
    w = (x - 1) * x / 3 + sympy.cos(x)
    act = symact.activation(sympy.Max(u, w))
    assert len(act.kinks) == 2, act.kinks
    difference = sympy.lambdify(x, u - w, "mpmath")
    with mpmath.workdps(40):
        for kink, start in zip(act.kinks, (1.4, 3.8)):
            want = mpmath.findroot(difference, start)
            assert abs(mpmath.mpf(str(sympy.N(kink, 35))) - want) < mpmath.mpf(10) ** -28, (kink, want)
            assert difference(want - mpmath.mpf("0.01")) * difference(want + mpmath.mpf("0.01")) < 0


def _one_sided_derivatives(expr: sympy.Expr, point: sympy.Expr, sign: int, orders: int = 2) -> list:
    """[f, f', f''] at ``point`` from the right (sign = 1) or the left (-1): the value at point + h and the
    forward/backward difference quotients with h = 1e-25 evaluated at 110 digits (errors ~1e-24),
    independent of the kink code."""
    h = sign * sympy.Rational(1, 10**25)
    with mpmath.workdps(110):
        f = [mpmath.mpf(str(sympy.N(expr.xreplace({x: point + k * h}), 110))) for k in range(orders + 1)]
        hh = mpmath.mpf(str(sympy.N(h, 110)))
        return [f[1], (f[1] - f[0]) / hh, (f[2] - 2 * f[1] + f[0]) / hh**2][:orders + 1]


@pytest.mark.parametrize("formula, kinks, touching", [
    ("Max(x**2, 2*x - 1)", (), (1,)),              # the line is tangent to x**2 at 1: x**2 everywhere
    ("Min(-x**2, 1 - 2*x)", (), (1,)),
    ("Max(x**3, 3*x - 2)", (-2,), (1,)),           # x**3 - 3*x + 2 = (x - 1)**2*(x + 2): x**3 from -2 on
    ("Min(Max(0, x), x**2)", (0, 1), ()),          # 0 | x**2 | x: C^1 at 0 (as relu_squared), a corner at 1
])
def test_kinks_are_the_points_where_the_formula_switches_piece_not_where_a_condition_touches_0(formula, kinks,
                                                                                                touching):
    """Max(x**2, 2*x - 1) is x**2 everywhere (2*x - 1 <= x**2, equal at x = 1 only), but its kinks were (1,):
    every real zero of a switching condition was listed, also a double one where the condition touches 0
    and the formula keeps its piece.  The documented meaning is the points where the formula switches piece
    (the break-points for quadrature): now only those.  Reference: one-sided values, slopes and second
    derivatives at 60 digits: at a kink some of them differ between the sides; at a touching point none does."""
    act = symact.activation(formula)
    assert act.kinks == tuple(sympy.Integer(k) for k in kinks), act.kinks
    expr = act.concrete_expr
    for point, is_kink in [(k, True) for k in kinks] + [(t, False) for t in touching]:
        right, left = (_one_sided_derivatives(expr, sympy.Integer(point), sign) for sign in (1, -1))
        jumps = [abs(r - l) > 1e-15 for r, l in zip(right, left)]
        assert any(jumps) == is_kink, (formula, point, right, left)


def test_numpy_and_tensor_parameter_values_are_exact_numbers():
    """np.float64(1.5) raised a bare TypeError (its repr, "np.float64(1.5)", is no number), np.float32(1.5)
    became the 6-digit Float 1.50000; a 0-d tensor too.  Each is its Python number, converted as a float is
    (1.5 -> 3/2).  Reference: the exact rationals."""
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    for value, exact in ((np.float64(1.5), sympy.Rational(3, 2)), (np.float32(1.5), sympy.Rational(3, 2)),
                         (np.int64(2), sympy.Integer(2)), (torch.tensor(0.25), sympy.Rational(1, 4))):
        act = symact.activation("x*sigmoid(beta*x)", beta=value)
        (got,) = dict(act.params).values()
        assert got == exact and type(got) is type(exact), (value, got)


def test_a_complex_parameter_and_a_keyword_as_a_name_are_named_as_such():
    """beta=1j was reported as the formula not being real at x = -5/2, and 'lambda*x' (lambda=2) as
    "Starred arguments in lambda not supported"."""
    with pytest.raises(symact.NonRealExpressionError, match=r"parameter 'beta' is 1\.0\*I, not a real number"):
        symact.activation("x*sigmoid(beta*x)", beta=1j)
    with pytest.raises(symact.FormulaError, match="'lambda' is a Python keyword.*rename it"):
        symact.activation("lambda*x", **{"lambda": 2})


@pytest.mark.parametrize("formula, params, slope", [("squareplus", {"b": 0}, sympy.Rational(1, 2)),
                                                   ("sqrt(x**2 + b)", {"b": 0}, 0),
                                                   ("x*sigmoid(beta*x) + sqrt(x**2 + b)", {"beta": 1, "b": 0},
                                                    sympy.Rational(1, 2))])
def test_a_kink_made_by_a_parameter_value_gets_the_kink_convention(formula, params, slope):
    """squareplus at b = 0 is (x + |x|)/2 and sqrt(x**2 + b) is |x|: the derivative was taken with b symbolic and
    b = 0 put in afterwards, x/(2*|x|) + 1/2 and x/|x|, so derivative()(0) was nan.  Reference: abs'(0) = 0, the
    convention of autograd (torch.abs's gradient at 0), and the formula's one-sided slopes averaged."""
    import torch

    act = symact.activation(formula, **params)
    assert act.derivative()(0) == slope
    t = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    by_autograd = {"squareplus": lambda u: (u + torch.abs(u)) / 2, "sqrt(x**2 + b)": torch.abs,
                   "x*sigmoid(beta*x) + sqrt(x**2 + b)": lambda u: u * torch.sigmoid(u) + torch.abs(u)}[formula]
    (g,) = torch.autograd.grad(by_autograd(t), t)
    assert g.item() == float(slope)
