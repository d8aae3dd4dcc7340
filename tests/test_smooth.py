"""Smoothing by convolution with approximate identities (symact.smooth)."""

from __future__ import annotations

from functools import lru_cache

import mpmath
import pytest
import sympy

from symact.errors import DivergentIntegralError, DomainError, FormulaError
from symact.smooth import KERNELS, convolve_expression, kernel_antiderivative, kernel_density, piecewise_polynomial

x = sympy.Symbol("x", real=True)
t = sympy.Symbol("t", real=True)
sigma = sympy.Symbol("sigma", positive=True)
alpha = sympy.Symbol("alpha", positive=True)

FUNCTIONS = {
    "relu": sympy.Max(0, x),
    "leaky_relu": sympy.Max(0, x) + sympy.Rational(1, 10) * sympy.Min(0, x),
    "abs": sympy.Abs(x),
    "heaviside": sympy.Heaviside(x),
    "hardtanh": sympy.Min(sympy.Max(x, -1), 1),
    "relu6": sympy.Min(sympy.Max(0, x), 6),
    "quadratic_spline": sympy.Piecewise((0, x < 0), (x**2, x < 1), (2 * x - 1, True)),
}
# independent mpmath versions of the same functions and their kinks (for quadrature break-points)
NUMERIC = {
    "relu": (lambda y: max(y, 0), [0]),
    "leaky_relu": (lambda y: y if y >= 0 else y / 10, [0]),
    "abs": (lambda y: abs(y), [0]),
    "heaviside": (lambda y: 1 if y > 0 else 0, [0]),
    "hardtanh": (lambda y: min(max(y, -1), 1), [-1, 1]),
    "relu6": (lambda y: min(max(y, 0), 6), [0, 6]),
    "quadratic_spline": (lambda y: 0 if y < 0 else (y * y if y < 1 else 2 * y - 1), [0, 1]),
}
DENSITY = {
    "gaussian": lambda u, s: mpmath.npdf(u, 0, s),
    "logistic": lambda u, s: 1 / (4 * s * mpmath.cosh(u / (2 * s)) ** 2),
    "uniform": lambda u, s: 1 / (2 * s) if -s <= u <= s else 0,
    "cauchy": lambda u, s: s / (mpmath.pi * (u * u + s * s)),
}
DIVERGENT = {("relu", "cauchy"), ("leaky_relu", "cauchy"), ("abs", "cauchy"), ("quadratic_spline", "cauchy")}
# the quadratic spline (the "any Piecewise of polynomials" case) runs with the logistic kernel (polylog
# closed form) and the uniform one; its Gaussian closed form is the slowest to derive and adds no new path
CASES = [(f, k) for f in FUNCTIONS for k in KERNELS
         if (f, k) not in DIVERGENT and (f, k) != ("quadratic_spline", "gaussian")]
POINTS = ["-3.1", "-1.2", "-0.5", "-0.05", "0", "0.02", "0.6", "1.1", "2.5", "6.3"]


@lru_cache(maxsize=None)
def closed_form(name: str, kernel: str) -> sympy.Expr:
    return convolve_expression(FUNCTIONS[name], kernel, sigma)


# ----------------------------------------------------------------------------- identities


def test_gaussian_smoothed_leaky_relu_is_sau():
    leaky = sympy.Max(0, x) + alpha * sympy.Min(0, x)
    sau = ((1 - alpha) * sigma / sympy.sqrt(2 * sympy.pi) * sympy.exp(-x**2 / (2 * sigma**2))
           + (1 + alpha) / 2 * x + (1 - alpha) / 2 * x * sympy.erf(x / (sympy.sqrt(2) * sigma)))
    assert sympy.simplify(convolve_expression(leaky, "gaussian", sigma) - sau) == 0


def test_x_times_gaussian_smoothed_heaviside_is_gelu():
    gelu = x / 2 * (1 + sympy.erf(x / sympy.sqrt(2)))
    assert sympy.simplify(x * convolve_expression(sympy.Heaviside(x), "gaussian", 1) - gelu) == 0


def test_logistic_smoothed_relu_is_softplus():
    softplus = sympy.log(1 + sympy.exp(x))
    assert sympy.simplify(convolve_expression(sympy.Max(0, x), "logistic", 1) - softplus) == 0
    # and with scale s it is s * softplus(x / s)
    scaled = sigma * sympy.log(1 + sympy.exp(x / sigma))
    assert sympy.simplify(closed_form("relu", "logistic") - scaled) == 0


def test_heaviside_smoothings_are_the_kernel_cdfs():
    assert sympy.simplify(closed_form("heaviside", "gaussian") - (1 + sympy.erf(x / (sympy.sqrt(2) * sigma))) / 2) == 0
    assert sympy.simplify(closed_form("heaviside", "logistic") - 1 / (1 + sympy.exp(-x / sigma))) == 0
    assert sympy.simplify(closed_form("heaviside", "cauchy") - (sympy.Rational(1, 2) + sympy.atan(x / sigma) / sympy.pi)) == 0


def test_derivative_of_smoothed_relu_is_smoothed_heaviside():
    # (f * k)' = f' * k; for the uniform kernel Min/Max derivatives are compared numerically
    for kernel in ("gaussian", "logistic"):
        assert sympy.simplify(sympy.diff(closed_form("relu", kernel), x) - closed_form("heaviside", kernel)) == 0
    d = sympy.lambdify(x, sympy.diff(closed_form("relu", "uniform"), x).subs(sigma, 2), "mpmath")
    h = sympy.lambdify(x, closed_form("heaviside", "uniform").subs(sigma, 2), "mpmath")
    for value in ["-3", "-1.5", "0.3", "1.9", "2.5"]:
        assert abs(d(mpmath.mpf(value)) - h(mpmath.mpf(value))) < 1e-25


def test_logistic_antiderivatives_differentiate_back():
    for j in range(4):
        G = kernel_antiderivative("logistic", j, sigma)
        # expand_func turns the polylog(1, z) that diff produces into -log(1 - z)
        assert sympy.simplify(sympy.expand_func(sympy.diff(G, t) - t**j * kernel_density("logistic", sigma, t))) == 0


def test_smoothing_tends_to_f_as_width_shrinks():
    for name, point, expected in [("relu", 1, 1), ("relu", -1, 0), ("hardtanh", sympy.Rational(1, 2), sympy.Rational(1, 2))]:
        assert sympy.limit(closed_form(name, "gaussian").subs(x, point), sigma, 0, "+") == expected


# ----------------------------------------------------------------------------- quadrature


def _quadrature(name, kernel, x0, s):
    f, kinks = NUMERIC[name]
    k = DENSITY[kernel]
    # break-points: kinks of f(x0 - t) sit at t = x0 - kink; the kernel's peak and edges too
    points = {x0 - kink for kink in kinks} | {mpmath.mpf(0)}
    if kernel == "uniform":
        points |= {s, -s}
    # light tails are truncated where the neglected mass (times |f| <= |x0| + |t|) is below 1e-40:
    # Gaussian beyond 16 sigma (< 1e-57), logistic beyond 100 s (< 1e-43)
    reach = {"gaussian": 16 * s, "logistic": 100 * s, "uniform": s}.get(kernel)
    ends = [-reach, reach] if reach is not None else [-mpmath.inf, mpmath.inf]
    inner = sorted(p for p in points if ends[0] < p < ends[1])
    return mpmath.quad(lambda u: f(x0 - u) * k(u, s), [ends[0], *inner, ends[1]])


# ten points per closed form; the widths cycle so every closed form meets small, unit and wide kernels
POINTS_AND_WIDTHS = list(zip(POINTS, ["0.02", "0.7", "2.5"] * 4))


@pytest.mark.parametrize("name, kernel", CASES)
def test_closed_form_matches_quadrature_at_30_digits(name, kernel):
    evaluate = sympy.lambdify((x, sigma), closed_form(name, kernel), "mpmath")
    for point, width in POINTS_AND_WIDTHS:
        with mpmath.workdps(34):
            x0, s = mpmath.mpf(point), mpmath.mpf(width)
            reference = _quadrature(name, kernel, x0, s)
            value = evaluate(x0, s)
            assert abs(value - reference) <= mpmath.mpf(10) ** -30 * max(1, abs(reference)), (point, width, value, reference)


# ----------------------------------------------------------------------------- errors and pieces


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "abs", "quadratic_spline"])
def test_cauchy_convolution_of_growing_functions_diverges(name):
    with pytest.raises(DivergentIntegralError, match="cauchy kernel diverges") as info:
        convolve_expression(FUNCTIONS[name], "cauchy", sigma)
    assert "|t|^-2" in str(info.value) and "gaussian" in str(info.value)


def test_bad_arguments():
    with pytest.raises(DomainError, match="kernel"):
        convolve_expression(sympy.Max(0, x), "laplace", 1)
    with pytest.raises(DomainError, match="positive"):
        convolve_expression(sympy.Max(0, x), "gaussian", -1)
    with pytest.raises(FormulaError, match="not a polynomial"):
        convolve_expression(sympy.Max(0, x) * sympy.exp(x), "gaussian", 1)
    with pytest.raises(FormulaError, match="depend on"):
        convolve_expression(sympy.Max(x, alpha * x), "gaussian", 1)


def test_piecewise_polynomial_pieces():
    pieces = piecewise_polynomial(FUNCTIONS["relu6"])
    assert [(p.lower, p.upper, p.polynomial) for p in pieces] == [
        (-sympy.oo, 0, 0), (0, 6, x), (6, sympy.oo, 6)]
    # neighbouring equal pieces merge; a polynomial is one piece
    assert len(piecewise_polynomial(x**2 + 1)) == 1


# ----------------------------------------------------------------------------- Activation API

import symact  # noqa: E402
from symact.smooth import convolve  # noqa: E402



def test_convolve_returns_activations_with_width_parameter():
    smoothed = convolve("relu", "logistic")
    assert smoothed.name == "relu*logistic"
    assert [p.name for p in smoothed.params] == ["sigma"] and list(smoothed.params.values()) == [1]
    assert sympy.simplify(smoothed.concrete_expr - sympy.log(1 + sympy.exp(symact.x))) == 0
    # numeric width: no parameter left
    assert dict(convolve("relu", "gaussian", width=sympy.Rational(1, 2)).params) == {}


def test_catalogue_leaky_relu_smoothed_is_catalogue_sau():
    smoothed = convolve("leaky_relu", "gaussian")
    sau = symact.activation("sau")
    slope = next(p for p in smoothed.params if p.name == "negative_slope")
    width = next(p for p in smoothed.params if p.name == "sigma")
    renamed = sau.expr.xreplace({p: {"alpha": slope, "sigma": width}[p.name] for p in sau.params})
    assert sympy.simplify(smoothed.expr - renamed) == 0
    # at the catalogue defaults (slope 1/100 = alpha 1/100, sigma 1) the concrete forms agree too
    assert sympy.simplify(smoothed.concrete_expr - sau.concrete_expr) == 0


def test_catalogue_gelu_and_derivative():
    step = convolve("heaviside", "gaussian")
    assert sympy.simplify(symact.x * step.concrete_expr - symact.activation("gelu").concrete_expr) == 0
    smoothed_relu = convolve("relu", "gaussian")
    assert sympy.simplify(smoothed_relu.derivative().expr - step.expr) == 0


def test_catalogue_divergence_and_parameter_fallback():
    with pytest.raises(DivergentIntegralError, match="diverges"):
        convolve("relu", "cauchy")
    # hardtanh's break points are its parameters: the values are used, only the width stays
    smoothed = convolve("hardtanh", "cauchy")
    assert [p.name for p in smoothed.params] == ["sigma"]
    assert sympy.simplify(smoothed.concrete_expr - closed_form("hardtanh", "cauchy").subs(sigma, 1)) == 0


def test_a_plain_symbol_x_is_the_input_as_in_activation():
    """Symbol('x') without real=True was taken for a parameter: 'the break points of Max(0, x)
    depend on ['x']'.  Logistic-smoothed ReLU is softplus."""
    plain = sympy.Symbol("x")
    smoothed = convolve(sympy.Max(plain, 0), "logistic", 1)
    assert sympy.simplify(smoothed.concrete_expr - sympy.log(1 + sympy.exp(x))) == 0
    assert smoothed.concrete_expr.free_symbols == {x}


def test_floating_point_width_gives_a_closed_form_that_evaluates_in_floats():
    """A float width (convolve("relu", "gaussian", 0.01)) went through simplify() with Floats, which wrote
    the SAU as (...)*exp(5000.0*x**2)*exp(-5000.0*x**2) and hardtanh's as 1.7e-2174*exp(-5000.0*x**2 + 10000.0*x):
    in floating point both overflow (OverflowError in math, inf*0 = nan in numpy) for every |x| > 0.27.
    Reference: relu * N(0, s^2) = s*phi(x/s) + x*Phi(x/s), and hardtanh(x) = relu(x+1) - relu(x-1) - 1."""
    def smoothed_relu(y, s):
        return s * mpmath.npdf(y / s) + y * mpmath.ncdf(y / s)

    for width in (0.01, 0.3):
        relu = sympy.lambdify(x, convolve_expression(FUNCTIONS["relu"], "gaussian", width), "math")
        hardtanh = sympy.lambdify(x, convolve_expression(FUNCTIONS["hardtanh"], "gaussian", width), "math")
        for y in (-3.0, -1.0, -0.004, 0.0, 0.2, 1.0, 1.005, 7.0, 40.0):
            with mpmath.workdps(30):
                s = mpmath.mpf(width)
                r = smoothed_relu(y, s)
                h = smoothed_relu(y + 1, s) - smoothed_relu(y - 1, s) - 1
            assert abs(relu(y) - float(r)) <= 1e-13 * max(1, abs(float(r))), (width, y)
            assert abs(hardtanh(y) - float(h)) <= 1e-13, (width, y)


def test_width_expressions_that_are_not_positive_or_depend_on_x_are_refused():
    """width=2*u (u without assumptions) raised DivergentIntegralError 'f grows like |x|^-oo' (the Gaussian
    moments are not finite unless u > 0); width=x silently returned x.  The scale must be a positive constant."""
    u = sympy.Symbol("u")
    for width in (2 * u, sigma - 1):
        with pytest.raises(DomainError, match="not known to be positive"):
            convolve_expression(FUNCTIONS["relu"], "gaussian", width)
    for width in (x, sympy.Symbol("x"), 2 * x, t):
        with pytest.raises(DomainError, match="depends on the input x"):
            convolve_expression(FUNCTIONS["relu"], "uniform", width)
    # a symbol declared negative was silently replaced by a positive one of the same name
    for width in (sympy.Symbol("s", negative=True), sympy.Symbol("s", nonpositive=True)):
        with pytest.raises(DomainError, match=r"declared non-positive.*Symbol\('s', positive=True\)"):
            convolve_expression(FUNCTIONS["relu"], "gaussian", width)
    # a positive expression is a valid width: relu * N(0, (2 sigma)^2) = SAU at 2 sigma
    s2 = 2 * sigma
    sau = s2 / sympy.sqrt(2 * sympy.pi) * sympy.exp(-x**2 / (2 * s2**2)) + x / 2 + x / 2 * sympy.erf(x / (sympy.sqrt(2) * s2))
    assert sympy.simplify(convolve_expression(FUNCTIONS["relu"], "gaussian", s2) - sau) == 0


@pytest.mark.parametrize("f", ["nan", "oo", "zoo", sympy.oo * sympy.Heaviside(x), sympy.Piecewise((0, x < 0), (sympy.nan, True))])
def test_a_formula_that_is_not_finite_is_refused(f):
    """sympy.Poly takes nan and oo as coefficients, so convolve_expression("nan") returned nan and
    oo*Heaviside(x) (nan for x < 0) returned nan, as if they were smoothings."""
    with pytest.raises(FormulaError, match="not a finite polynomial"):
        convolve_expression(f, "gaussian", 1)


@pytest.mark.parametrize("j", [2.5, -1, True, "2"])
def test_kernel_antiderivative_refuses_a_power_that_is_not_a_whole_number(j):
    """int(j) took 2.5 as 2 (G_2 returned for t**2.5 k(t)); j = -1 returned 1/(t*(1 + exp(-t))) for the
    logistic kernel, whose derivative is not t**-1 k(t), and nan for the uniform one."""
    with pytest.raises(DomainError, match=r"j=.*whole number >= 0"):
        kernel_antiderivative("logistic", j, 1)
    assert kernel_antiderivative("uniform", sympy.Integer(1), 1) == kernel_antiderivative("uniform", 1, 1)


@pytest.mark.parametrize("width", [-1, 0, sympy.I, sympy.nan])
def test_kernel_density_and_antiderivative_refuse_a_scale_that_is_not_positive(width):
    """kernel_density("gaussian", -1) returned -exp(-t**2/2)/sqrt(2*pi), a negative "density", and
    kernel_antiderivative took the same widths that convolve_expression refuses."""
    with pytest.raises(DomainError, match="width must be positive"):
        kernel_density("gaussian", width)
    with pytest.raises(DomainError, match="width must be positive"):
        kernel_antiderivative("uniform", 1, width)


@pytest.mark.parametrize("kernel", ["gaussian", "logistic", "uniform", "cauchy"])
def test_a_scale_declared_negative_is_refused_not_made_a_density_of_mass_minus_one(kernel):
    """kernel_density(kernel, Symbol('s', negative=True)) returned an expression whose integral over the real
    line is -1 (0 for the uniform kernel), the same wrong "density" a width of -1 gave before that was refused;
    convolve_expression already refused such a symbol.  A symbol of unknown sign is still taken as given."""
    negative = sympy.Symbol("s", negative=True)
    with pytest.raises(DomainError, match="declared non-positive"):
        kernel_density(kernel, negative)
    with pytest.raises(DomainError, match="declared non-positive"):
        kernel_antiderivative(kernel, 0, negative)
    with pytest.raises(DomainError, match="declared non-positive"):
        kernel_density(kernel, -sympy.Symbol("q", positive=True))
    plain = sympy.Symbol("q")
    assert kernel_density(kernel, plain).has(plain)
    assert sympy.integrate(kernel_density(kernel, sigma), (t, -sympy.oo, sympy.oo)) == 1


def test_logistic_smoothing_with_a_small_float_width_evaluates_in_floats():
    """convolve_expression(relu, "logistic", 0.001) was 0.001*log(exp(1000.0*x) + 1): OverflowError in math for
    x > 0.71; the smoothed heaviside 1/(1 + exp(-1000.0*x)) overflowed for x < -0.71, and substituting the width
    split exp((x - 1)/w) into the constant 1.97e+434 (inf in a double) times exp(1000.0*x), so the smoothed
    hardtanh was nan or an overflow wherever it was evaluated in floats.  Reference: relu * k_s = s softplus(y/s)
    and heaviside * k_s = sigmoid(y/s) in 30-digit mpmath, shifted and added; derivatives likewise."""
    def R(y, s):
        u = y / s
        return s * (u + mpmath.log1p(mpmath.exp(-u)) if u > 0 else mpmath.log1p(mpmath.exp(u)))

    def S(y, s):
        return 1 / (1 + mpmath.exp(-y / s))

    def dS(y, s):
        return S(y, s) * S(-y, s) / s

    references = {  # (value, derivative) of f * k_s in terms of R and S
        "relu": (lambda y, s: R(y, s), lambda y, s: S(y, s)),
        "leaky_relu": (lambda y, s: y / 10 + 9 * R(y, s) / 10, lambda y, s: mpmath.mpf(1) / 10 + 9 * S(y, s) / 10),
        "abs": (lambda y, s: 2 * R(y, s) - y, lambda y, s: 2 * S(y, s) - 1),
        "heaviside": (S, dS),
        "hardtanh": (lambda y, s: R(y + 1, s) - R(y - 1, s) - 1, lambda y, s: S(y + 1, s) - S(y - 1, s)),
        "relu6": (lambda y, s: R(y, s) - R(y - 6, s), lambda y, s: S(y, s) - S(y - 6, s)),
        "bump": (lambda y, s: S(y, s) - S(y - 1, s), lambda y, s: dS(y, s) - dS(y - 1, s)),
    }
    functions = dict(FUNCTIONS, bump=sympy.Piecewise((0, x < 0), (1, x < 1), (0, True)))
    for name, (value, slope) in references.items():
        for width in (0.01, 0.001):
            closed = convolve_expression(functions[name], "logistic", width)
            f = sympy.lambdify(x, closed, "math")
            df = sympy.lambdify(x, sympy.diff(closed, x), "math")
            for y in (-7.0, -3.0, -1.0, -0.999, -0.004, 0.0, 0.0005, 0.2, 1.0, 1.002, 5.99, 7.0, 40.0):
                with mpmath.workdps(30):
                    s, yy = mpmath.mpf(width), mpmath.mpf(y)
                    r, dr = float(value(yy, s)), float(slope(yy, s))
                assert abs(f(y) - r) <= 1e-13 * max(1, abs(r)), (name, width, y, f(y), r)
                assert abs(df(y) - dr) <= 1e-12 * max(1, abs(dr)), (name, width, y, df(y), dr)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("width", ["x", "2*x", sympy.Symbol("x", positive=True), "t", "sigma*t"])
def test_kernel_functions_refuse_a_width_in_the_input_or_the_kernel_variable(kernel, width):
    """kernel_density("gaussian", "x") returned exp(-t**2/(2*x**2))/(sqrt(2*pi)*x): a "density" whose scale is
    the input x (and width "t" one that is no density in t at all), where convolve_expression refuses such a
    width; kernel_antiderivative took them as well."""
    with pytest.raises(DomainError, match="depends on the input x"):
        kernel_density(kernel, width)
    with pytest.raises(DomainError, match="depends on the input x"):
        kernel_antiderivative(kernel, 0, width)
    u = sympy.Symbol("u", real=True)
    with pytest.raises(DomainError, match="depends on the input x"):
        kernel_density(kernel, "3*u", u)
    assert kernel_density(kernel, "sigma*y", u).has(sympy.Symbol("y"))  # another parameter is still taken


# ----------------------------------------------------------------------------- generated code of smoothed activations

CATALOGUE_NUMERIC = {  # the catalogue activations at their default parameters, as mpmath functions with kinks
    "leaky_relu": (lambda y: y if y > 0 else y / 100, [0]),
    "hardshrink": (lambda y: y if abs(y) > mpmath.mpf(1) / 2 else 0, [mpmath.mpf(-1) / 2, mpmath.mpf(1) / 2]),
    "relu6": NUMERIC["relu6"],
    "hardtanh": NUMERIC["hardtanh"],
    "relu_squared": (lambda y: max(y, 0) ** 2, [0]),
    "hardswish": (lambda y: y * min(1, max(0, y / 6 + mpmath.mpf(1) / 2)), [-3, 3]),
}


def _catalogue_quadrature(name, kernel, x0, s):
    f, kinks = CATALOGUE_NUMERIC[name]
    k = DENSITY[kernel]
    reach = {"gaussian": 16 * s, "logistic": 100 * s}[kernel]
    inner = sorted(p for p in {x0 - kink for kink in kinks} | {mpmath.mpf(0)} if -reach < p < reach)
    return mpmath.quad(lambda u: f(x0 - u) * k(u, s), [-reach, *inner, reach])


@pytest.mark.parametrize("name, kernel, width", [
    ("leaky_relu", "gaussian", 1), ("hardshrink", "gaussian", None), ("hardshrink", "gaussian", 0.5),
    ("relu6", "logistic", 1), ("hardtanh", "logistic", 1), ("hardtanh", "logistic", 2),
    ("relu_squared", "logistic", 1), ("relu_squared", "logistic", 0.1), ("hardswish", "logistic", 1),
])
def test_smoothed_activations_with_an_exact_width_evaluate_in_floats(name, kernel, width):
    """The closed form chosen for an exact or symbolic width was simplify's shortest one,
    (... + sqrt(pi)*x*(...)*exp(x**2/2) + ...)*exp(-x**2/2) for leaky_relu * gaussian(1) (inf * 0 = NaN from x = -17 in
    float32) or log((exp(x) + 1)/(exp(x - 6) + 1)) for relu6 * logistic(1) (inf/inf = NaN from x = 89): the generated
    torch module returned NaN at moderate inputs.  Quadratic pieces with the logistic kernel (relu_squared,
    hardswish) give polylog(2, -exp(u)), which had no torch translation: FormulaError for relu_squared, and
    AttributeError ('GreaterThan' object has no attribute 'diff') for hardswish, whose Piecewise masking rebuilt the
    polylog around a masked input.  Reference: mpmath quadrature of f(x - t) k(t) dt at 30 digits."""
    torch = pytest.importorskip("torch")
    import numeric
    from symact.smooth import convolve

    module = numeric.torch_module(convolve(name, kernel, width))
    s = mpmath.mpf(1 if width is None else width)
    points = [-1000.0, -100.0, -50.0, -20.0, -12.0, -6.0, -0.7, 0.0, 0.3, 1.5, 6.5, 12.0, 20.0, 50.0, 100.0, 1000.0]
    with mpmath.workdps(30):
        reference = [float(_catalogue_quadrature(name, kernel, mpmath.mpf(p), s)) for p in points]
    for dtype, tolerance in ((torch.float32, 2e-6), (torch.float64, 1e-12)):
        values = module(torch.tensor(points, dtype=dtype)).tolist()
        for p, value, r in zip(points, values, reference):
            assert abs(value - r) <= tolerance * max(1, abs(r)), (dtype, p, value, r)


def test_a_small_float_width_leaves_no_constant_outside_the_double_range():
    """hardshrink * gaussian(0.001) held constants such as 1.198e-108574 * 4.17e+108573 (simplify split
    exp(-(x**2 + x/2 + 1/4)/w**2) from its constant), and its generated module raised NameError: name 'inf'.
    Reference: mpmath quadrature; no Float in the closed form is outside the double range."""
    torch = pytest.importorskip("torch")
    import numeric
    from symact.smooth import convolve

    act = convolve("hardshrink", "gaussian", 1e-3)
    assert all(n == 0 or 1e-300 < abs(n) < 1e300 for n in act.expr.atoms(sympy.Float))
    module = numeric.torch_module(act)
    points = [-3.0, -0.5, -0.4995, 0.0, 0.2, 0.4999, 0.5, 0.5012, 2.0, 1000.0]
    with mpmath.workdps(30):
        reference = [float(_catalogue_quadrature("hardshrink", "gaussian", mpmath.mpf(p), mpmath.mpf("0.001")))
                     for p in points]
    values = module(torch.tensor(points, dtype=torch.float64)).tolist()
    for p, value, r in zip(points, values, reference):
        assert abs(value - r) <= 1e-10 * max(1, abs(r)), (p, value, r)


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_functions_take_width_none_as_the_default_scale(kernel):
    """convolve(..., width=None) means the default scale sigma, but kernel_density(kernel, None) raised a bare
    AttributeError ('NoneType' object has no attribute 'is_number'); kernel_antiderivative likewise."""
    assert kernel_density(kernel, None) == kernel_density(kernel, sigma)
    assert kernel_antiderivative(kernel, 0, None) == kernel_antiderivative(kernel, 0, sigma)
    assert sympy.integrate(kernel_density(kernel, None), (t, -sympy.oo, sympy.oo)) == 1


@pytest.mark.parametrize("name, width, points", [
    ("relu", 1, [-1e8, -3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0, 1e8]),
    ("relu", 0.001, [-1e16, -1e4, -0.0005, 0.0, 0.0005, 1e4, 1e16]),
    ("hardtanh", 0.5, [-1e8, -1e4, -1.2, -0.6, 0.0, 0.7, 1.3, 1e4, 1e8]),
    ("relu_squared", 0.5, [-1e4, -1000.0, -0.2, 0.0, 0.3, 1000.0]),
])
def test_uniform_smoothing_is_exact_on_the_outer_pieces(name, width, points):
    """The uniform closed form adds Min/Max terms that cancel where f * k is f's outer polynomial smoothed:
    relu * uniform(1) was 0.25 at x = -1e8 in float32 (true 0), relu * uniform(0.001) 5.4e8 at -1e16, and
    relu_squared * uniform(0.5) 0.0104 at -1000.  Reference: mpmath quadrature of f(x - t) k(t) dt, or for
    relu_squared the exact x**2 + s**2/3 (x > s) and 0 (x < -s) and quadrature between."""
    torch = pytest.importorskip("torch")
    import numeric
    from symact.smooth import convolve

    module = numeric.torch_module(convolve(name, "uniform", width))
    s = mpmath.mpf(str(width))
    reference = []
    with mpmath.workdps(40):
        for p in points:
            x0 = mpmath.mpf(p)
            if name != "relu_squared":
                reference.append(float(_quadrature(name, "uniform", x0, s)))
            elif abs(x0) > s:
                reference.append(float(x0**2 + s**2 / 3 if x0 > 0 else 0))
            else:
                reference.append(float(mpmath.quad(lambda u: max(x0 - u, 0) ** 2 / (2 * s), [-s, x0, s])))
    for dtype, tolerance in ((torch.float32, 2e-6), (torch.float64, 1e-12)):
        values = module(torch.tensor(points, dtype=dtype)).tolist()
        for p, value, r in zip(points, values, reference):
            assert abs(value - r) <= tolerance * max(1, abs(r)), (dtype, p, value, r)


# ----------------------------------------------------------------------------- tails without cancellation

TAIL_FUNCTIONS = {  # name: (f, its mpmath version, its kinks, the mpmath version of f' between them, f's jumps)
    "hardtanh": (FUNCTIONS["hardtanh"], *NUMERIC["hardtanh"], lambda y: 1 if -1 < y < 1 else 0, []),
    "relu6": (FUNCTIONS["relu6"], *NUMERIC["relu6"], lambda y: 1 if 0 < y < 6 else 0, []),
    "hardsigmoid": (sympy.Min(sympy.Max(0, x / 6 + sympy.Rational(1, 2)), 1),
                    lambda y: min(max(y / 6 + mpmath.mpf(1) / 2, 0), 1), [-3, 3],
                    lambda y: mpmath.mpf(1) / 6 if -3 < y < 3 else 0, []),
    "hardshrink": (sympy.Piecewise((x, x < -sympy.Rational(1, 2)), (0, x <= sympy.Rational(1, 2)), (x, True)),
                   *CATALOGUE_NUMERIC["hardshrink"], lambda y: 1 if abs(y) > mpmath.mpf(1) / 2 else 0,
                   [(mpmath.mpf(-1) / 2, mpmath.mpf(1) / 2), (mpmath.mpf(1) / 2, mpmath.mpf(1) / 2)]),
    "min_x_1": (sympy.Min(x, 1), lambda y: min(y, 1), [1], lambda y: 1 if y < 1 else 0, []),
    "quadratic_spline": (FUNCTIONS["quadratic_spline"], *NUMERIC["quadratic_spline"],
                         lambda y: 0 if y < 0 else (2 * y if y < 1 else 2), []),
    "bump": (sympy.Piecewise((0, x < 0), (1, x < 1), (0, True)), lambda y: 1 if 0 < y < 1 else 0, [0, 1],
             lambda y: 0, [(0, 1), (1, -1)]),
}
TAIL_POINTS = [-1234567.891, -98765.4321, -4321.123, -123.4567, -12.34, -3.3, -1.3, -0.37, -1e-3,
               1e-3, 0.37, 1.3, 3.3, 12.34, 123.4567, 4321.123, 10000.3, 98765.4321, 1234567.891]


def _tail_reference(name, kernel, x0, s):
    """(f * k_s)(x0) and (f * k_s)'(x0) = (f' * k_s)(x0) + sum of jump * k_s(x0 - where) by mpmath quadrature."""
    _, f, kinks, slope, jumps = TAIL_FUNCTIONS[name]
    k = DENSITY[kernel]
    reach = {"gaussian": 16 * s, "logistic": 100 * s}[kernel]
    ends = [-reach, *sorted(p for p in {x0 - kink for kink in kinks} | {mpmath.mpf(0)} if -reach < p < reach), reach]
    value = mpmath.quad(lambda u: f(x0 - u) * k(u, s), ends)
    return value, mpmath.quad(lambda u: slope(x0 - u) * k(u, s), ends) + sum(size * k(x0 - where, s)
                                                                           for where, size in jumps)


@pytest.mark.parametrize("name, kernel, width", [
    ("hardtanh", "logistic", "0.001"), ("hardsigmoid", "gaussian", "1"), ("min_x_1", "logistic", "0.1"),
    ("quadratic_spline", "gaussian", "0.001"), ("relu6", "gaussian", "0.1"),
    ("relu6", "logistic", "1"), ("hardshrink", "logistic", "0.1"), ("bump", "logistic", "0.001"),
    ("quadratic_spline", "logistic", "1"), ("quadratic_spline", "logistic", "0.1"),
])
def test_gaussian_and_logistic_smoothings_do_not_cancel_in_their_tails(name, kernel, width):
    """The closed forms added terms that each grow with x and cancel to a bounded result ((x + 1)*softplus(...) -
    (x - 1)*softplus(...), x*(erf(u) - erf(v))), and the generated module kept some of that cancellation:
    hardtanh * logistic(0.001) was 1.0186 at x = 1.23e6 in float32 (1 + 3.6e-11 in float64), hardsigmoid *
    gaussian(1) 0.0031 at -1.23e6 in float32 (true 0), min_x_1 * logistic(0.1) 1.8e-12 off at 10000.3 in float64,
    quadratic_spline * gaussian(0.001) 10616 at -1.23e6 in float32 (-8.8e-6 in float64, true 0), relu6 *
    gaussian(0.1) 3.8e-6 at -123 in float32 (true 0).  Each kink now contributes a term that decays away from it
    (a Piecewise by the pieces of f), and the generated module (float64 and float32, value and slope) and, for a
    float width, NumPy match mpmath quadrature of f(x - t) k(t) dt to 1e-12 (float64) or 1e-6 (float32) of
    max(1, |value|).  The quadratic spline's logistic closed form holds polylog(2, -exp(u)): NumPy evaluates it through
    numeric.lambdify_modules.numpy_modules(), which names polylog (plain "numpy" raised NameError)."""
    torch = pytest.importorskip("torch")
    import numpy
    import numeric
    from numeric.lambdify_modules import numpy_modules

    w = sympy.Integer(width) if width == "1" else float(width)
    closed = convolve_expression(TAIL_FUNCTIONS[name][0], kernel, w)
    module = numeric.torch_module(closed)
    s = mpmath.mpf(width)
    checks = [(torch.float64, 1e-12), (torch.float32, 1e-6)]
    for dtype, tolerance in checks:
        inputs = torch.tensor(TAIL_POINTS, dtype=dtype, requires_grad=True)
        values = module(inputs)
        (slopes,) = torch.autograd.grad(values.sum(), inputs)
        for p, value, slope in zip(inputs.tolist(), values.tolist(), slopes.tolist()):  # p rounded to dtype
            with mpmath.workdps(30):
                reference, reference_slope = (float(r) for r in _tail_reference(name, kernel, mpmath.mpf(p), s))
            assert abs(value - reference) <= tolerance * max(1, abs(reference)), (dtype, p, value, reference)
            assert abs(slope - reference_slope) <= tolerance * max(1, abs(reference_slope)), (dtype, p, slope)
    if isinstance(w, float):
        evaluate = sympy.lambdify(x, closed, numpy_modules())
        with numpy.errstate(all="ignore"):  # NumPy evaluates every branch of a Piecewise at every x
            values = [float(evaluate(numpy.float64(p))) for p in TAIL_POINTS]
        for p, value in zip(TAIL_POINTS, values):
            with mpmath.workdps(30):
                reference = float(_tail_reference(name, kernel, mpmath.mpf(p), s)[0])
            assert abs(value - reference) <= 1e-12 * max(1, abs(reference)), ("numpy", p, value, reference)


@pytest.mark.parametrize("name, kernel", [("hardtanh", "gaussian"), ("relu6", "logistic"), ("hardshrink", "logistic"),
                                          ("quadratic_spline", "logistic")])
def test_each_branch_of_a_smoothing_is_the_whole_smoothing(name, kernel):
    """With two kinks or more the closed form is a Piecewise whose branch for each piece of f keeps every term on its
    decaying side; each branch is the same analytic function, so each must equal f * k_s on the whole line, not only
    on its piece (and the value and slope are continuous where the branches switch).  Reference: mpmath quadrature
    at 30 digits, at points on every piece."""
    closed = convolve_expression(TAIL_FUNCTIONS[name][0], kernel, sigma)
    assert isinstance(closed, sympy.Piecewise) and len(closed.args) == len(TAIL_FUNCTIONS[name][2]) + 1
    for branch, _ in closed.args:
        value = sympy.lambdify((x, sigma), branch, "mpmath")
        slope = sympy.lambdify((x, sigma), sympy.diff(branch, x), "mpmath")
        for point in ["-4.5", "-0.8", "0.1", "0.6", "1.2", "3.5", "7.25"]:
            with mpmath.workdps(34):
                x0, s = mpmath.mpf(point), mpmath.mpf("0.7")
                reference, reference_slope = _tail_reference(name, kernel, x0, s)
                assert abs(value(x0, s) - reference) <= mpmath.mpf(10) ** -30 * max(1, abs(reference)), (branch, point)
                assert abs(slope(x0, s) - reference_slope) <= mpmath.mpf(10) ** -30 * max(1, abs(reference_slope))


CAUCHY_PIECES = {  # bounded catalogue entries as pieces (lower, upper, slope, intercept) for an mpmath reference
    "heaviside": [(-mpmath.inf, 0, 0, 0), (0, mpmath.inf, 0, 1)],
    "hardtanh": [(-mpmath.inf, -1, 0, -1), (-1, 1, 1, 0), (1, mpmath.inf, 0, 1)],
    "relu6": [(-mpmath.inf, 0, 0, 0), (0, 6, 1, 0), (6, mpmath.inf, 0, 6)],
    "hardsigmoid": [(-mpmath.inf, -3, 0, 0), (-3, 3, mpmath.mpf(1) / 6, mpmath.mpf(1) / 2), (3, mpmath.inf, 0, 1)],
    # hardtanh(min_val=-100, max_val=100): kinks far apart
    "hardtanh_100": [(-mpmath.inf, -100, 0, -100), (-100, 100, 1, 0), (100, mpmath.inf, 0, 100)],
    # Max(-1, Min(1, 1000*x)): kinks close together, a steep piece
    "clamp_1000": [(-mpmath.inf, -mpmath.mpf(1) / 1000, 0, -1), (-mpmath.mpf(1) / 1000, mpmath.mpf(1) / 1000, 1000, 0),
                   (mpmath.mpf(1) / 1000, mpmath.inf, 0, 1)],
}
CAUCHY_FORMULAS = {"hardsigmoid": TAIL_FUNCTIONS["hardsigmoid"][0], "hardtanh_100": sympy.Min(sympy.Max(x, -100), 100)}
CAUCHY_FAR = [-1e7, -3.7e6, -1234567.891, -98765.4321, -4321.123, -123.4567, -12.34, -3.3, -1.3, -0.37, -1e-3,
              1e-3, 0.37, 1.3, 3.3, 5.2, 6.8, 12.34, 123.4567, 4321.123, 98765.4321, 1234567.891, 3.7e6, 1e7]
CAUCHY_NEAR_KINKS = [-100.0001, -100.0, -99.9999, -3.0001, -3.0, -2.9999, -1.0001, -1.0, -0.9999, 0.0, 0.9999, 1.0,
                     1.0001, 2.9999, 3.0, 3.0001, 5.9999, 6.0, 6.0001, 99.9999, 100.0, 100.0001]


def _cauchy_reference(name, x0, s):
    """(f * k_s)(x0) and its slope for a piecewise-linear f, summed by pieces at 60 digits: a piece y*p + q on
    [a, b] gives (x0 p + q) M - p s/(2 pi) log(((x0 - a)^2 + s^2)/((x0 - b)^2 + s^2)), M = (atan((x0 - a)/s) -
    atan((x0 - b)/s))/pi its kernel mass; the slope is sum p M plus each jump times k_s(x0 - kink)."""
    with mpmath.workdps(60):
        x0, s = mpmath.mpf(x0), mpmath.mpf(s)
        pieces = CAUCHY_PIECES[name]
        value = slope = mpmath.mpf(0)
        for a, b, p, q in pieces:
            mass = (mpmath.atan((x0 - a) / s) - mpmath.atan((x0 - b) / s)) / mpmath.pi
            value += (x0 * p + q) * mass
            if p:
                value -= p * s / (2 * mpmath.pi) * mpmath.log(((x0 - a) ** 2 + s * s) / ((x0 - b) ** 2 + s * s))
            slope += p * mass
        for (_, c, p, q), (_, _, p_next, q_next) in zip(pieces, pieces[1:]):
            slope += (c * (p_next - p) + q_next - q) * s / (mpmath.pi * ((x0 - c) ** 2 + s * s))
        return float(value), float(slope)


@pytest.mark.parametrize("name, width", [
    *((name, width) for name in ("heaviside", "hardtanh", "relu6", "hardsigmoid") for width in ("1", "0.1", "0.001")),
    ("hardtanh", "100"), ("relu6", "10"), ("hardtanh_100", "1"),
])
def test_cauchy_smoothings_do_not_cancel_in_their_tails(name, width):
    """The Cauchy closed form was SymPy's sum of antiderivatives, x*atan((x + 1)/s) - x*atan((x - 1)/s) + log terms
    that each grow with x and cancel to a bounded f * k_s: relu6 * cauchy(1) was -0.213 at x = -1e7 in the float32
    torch module (true 1.9e-7), 0.023 at -3.7e6, hardsigmoid * cauchy(1) 9.3e-5 at -1e4 (true 3.2e-5), hardtanh
    2.3e-10 off at -3.2e6 in float64, at a width of 0.001 relu6 and hardsigmoid were infinite at a kink in float32
    (log(x**2 - 12*x + 36.000001): the constant rounds to 36), a wide kernel cancelled nearby kinks' logs (hardtanh *
    cauchy(100) 4.9e-4 off at 1e4, relu6 * cauchy(10) 0.125 at -3.7e6 for 5.2e-6) and kinks far apart their x*atan
    terms (hardtanh(-100, 100) * cauchy(1) was 100.25 at 3.7e6).  It is now a Piecewise over zones of x whose terms
    each decay on their side.  Reference: the sum over pieces at 60 digits (itself checked against mpmath
    quadrature of f(x - t) k(t) dt), value and slope, to 1e-12 (float64) or 1e-6 (float32) of max(1, |value|);
    the float32 slope within 0.01 of a kink is left out, where at width 0.001 the generated backward (as for the
    Gaussian and logistic kernels) is off by up to 2e-5, about what half an ulp of x moves it."""
    torch = pytest.importorskip("torch")
    import numpy
    import numeric

    w = sympy.Integer(width) if width == "1" else float(width)
    closed = convolve_expression(CAUCHY_FORMULAS.get(name) or FUNCTIONS[name], "cauchy", w)
    module = numeric.torch_module(closed)
    with mpmath.workdps(40):  # the reference formula is the convolution integral
        x0, s = mpmath.mpf(-3.7e6), mpmath.mpf(width)
        kinks = [b for _, b, _, _ in CAUCHY_PIECES[name][:-1]]
        f_of = lambda y: next(q + p * y for a, b, p, q in CAUCHY_PIECES[name] if a <= y <= b)  # noqa: E731
        integral = mpmath.quad(lambda u: f_of(x0 - u) * s / (mpmath.pi * (u * u + s * s)),
                               [-mpmath.inf, *sorted({x0 - c for c in kinks} | {mpmath.mpf(0)}), mpmath.inf])
        assert abs(integral - _cauchy_reference(name, x0, s)[0]) <= 1e-16 * max(1, abs(integral))  # a float
    for dtype, tolerance in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        inputs = torch.tensor(CAUCHY_FAR + CAUCHY_NEAR_KINKS, dtype=dtype, requires_grad=True)
        values = module(inputs)
        (slopes,) = torch.autograd.grad(values.sum(), inputs)
        for p, value, slope in zip(inputs.tolist(), values.tolist(), slopes.tolist()):  # p rounded to dtype
            reference, reference_slope = _cauchy_reference(name, p, width)
            assert abs(value - reference) <= tolerance * max(1, abs(reference)), (dtype, p, value, reference)
            if dtype == torch.float32 and min(abs(p - b) for _, b, _, _ in CAUCHY_PIECES[name][:-1]) < 0.01:
                continue
            assert abs(slope - reference_slope) <= tolerance * max(1, abs(reference_slope)), (dtype, p, slope,
                                                                                              reference_slope)
    if isinstance(w, float):
        evaluate = sympy.lambdify(x, closed, "numpy")
        evaluate_slope = sympy.lambdify(x, sympy.diff(closed, x), "numpy")
        with numpy.errstate(all="ignore"):  # NumPy evaluates every branch of a Piecewise at every x
            for p in CAUCHY_FAR + CAUCHY_NEAR_KINKS:
                reference, reference_slope = _cauchy_reference(name, p, width)
                value, slope = float(evaluate(numpy.float64(p))), float(evaluate_slope(numpy.float64(p)))
                assert abs(value - reference) <= 1e-12 * max(1, abs(reference)), ("numpy", p, value, reference)
                assert abs(slope - reference_slope) <= 1e-12 * max(1, abs(reference_slope)), ("numpy", p, slope)


def test_cauchy_smoothing_with_a_float_width_keeps_each_kink_exact_inside_its_arctangent():
    """A float width w wrote the near form atan((x - c)/w) as atan(1000.0*x - 1000.0) at w = 0.001, whose rounding of
    1000.0*x is an ulp of 1000: the float32 slope of a unit bump * cauchy(0.001) was 2.1e-3 off next to its kinks,
    1.3e-5 of a slope of 160.  With the width as the decimal it is, atan(1000*x - 1000), the code generator writes
    1000*(x - 1), exact there.  Reference: the slope is the jumps times the kernel, k(x) - k(x - 1) with
    k(t) = s/(pi (t^2 + s^2)), in mpmath; to 1e-6 (float32) or 1e-12 (float64) of max(1, |slope|)."""
    torch = pytest.importorskip("torch")
    import numeric

    module = numeric.torch_module(convolve_expression(TAIL_FUNCTIONS["bump"][0], "cauchy", 0.001))
    points = [-0.001, -0.0001, 0.0001, 0.001, 0.5, 0.999, 0.9999, 1.0001, 1.001]
    for dtype, tolerance in ((torch.float32, 1e-6), (torch.float64, 1e-12)):
        inputs = torch.tensor(points, dtype=dtype, requires_grad=True)
        (slopes,) = torch.autograd.grad(module(inputs).sum(), inputs)
        for p, slope in zip(inputs.tolist(), slopes.tolist()):  # p rounded to dtype
            with mpmath.workdps(30):
                y, s = mpmath.mpf(p), mpmath.mpf("0.001")
                reference = float(s / (mpmath.pi * (y * y + s * s)) - s / (mpmath.pi * ((y - 1) ** 2 + s * s)))
            assert abs(slope - reference) <= tolerance * max(1, abs(reference)), (dtype, p, slope, reference)


def test_cauchy_smoothing_of_a_steep_clamp_keeps_its_digits_next_to_zero():
    """clamp(1000*x) * cauchy(1) holds 500*log((x - 1/1000)**2 + 1) - 500*log((x + 1/1000)**2 + 1) between its
    kinks; the safe form expanded each argument to (1000000*x**2 -+ 2000*x + 1000001)/1000000, which hid log(1 + u)
    from the Log1p rule, and the rounding of 1 + u, times 500, made the float32 value 1.2e-5 off at x = 1e-4 (for
    6.4e-5).  Reference: the sum over the clamp's three pieces at 60 digits (checked against mpmath quadrature of
    the convolution integral at one point), value to 1e-6 (float32) or 1e-12 (float64) of max(1, |value|).  Only
    the zone around 0 (|x| < 1/2000) is generated: the whole Piecewise's module takes 12 s."""
    torch = pytest.importorskip("torch")
    import numeric

    closed = convolve_expression(sympy.Max(-1, sympy.Min(1, 1000 * x)), "cauchy", 1)
    zone = next(value for value, condition in closed.args if condition.subs(x, 0) is sympy.true)
    module = numeric.torch_module(zone)
    name = "clamp_1000"
    with mpmath.workdps(30):
        y0 = mpmath.mpf("1e-4")
        integral = mpmath.quad(lambda u: max(-1, min(1, 1000 * (y0 - u))) / (mpmath.pi * (u * u + 1)),
                               [-mpmath.inf, y0 - mpmath.mpf("0.001"), y0 + mpmath.mpf("0.001"), mpmath.inf])
        assert abs(integral - _cauchy_reference(name, y0, 1)[0]) <= 1e-15 * abs(integral)
    points = [0.0, 1e-5, -1e-4, 1e-4, -2e-4, 3e-4, -4.5e-4, 4.9e-4]
    for dtype, tolerance in ((torch.float32, 1e-6), (torch.float64, 1e-12)):
        inputs = torch.tensor(points, dtype=dtype)
        for p, value in zip(inputs.tolist(), module(inputs).tolist()):  # p rounded to dtype
            reference = _cauchy_reference(name, p, 1)[0]
            assert abs(value - reference) <= tolerance * max(1, abs(reference)), (dtype, p, value, reference)


CAUCHY_EXACT = {  # bounded f (constant outer pieces): the catalogue's, a jump, a quadratic piece, three kinks
    "heaviside": (FUNCTIONS["heaviside"], lambda y: 1 if y > 0 else 0, [0]),
    "hardtanh": (FUNCTIONS["hardtanh"], *NUMERIC["hardtanh"]),
    "relu6": (FUNCTIONS["relu6"], *NUMERIC["relu6"]),
    "hardsigmoid": (TAIL_FUNCTIONS["hardsigmoid"][0], *TAIL_FUNCTIONS["hardsigmoid"][1:3]),
    "bump": (TAIL_FUNCTIONS["bump"][0], *TAIL_FUNCTIONS["bump"][1:3]),
    "quadratic_step": (sympy.Piecewise((0, x < 0), (x**2, x < 1), (1, True)),
                       lambda y: 0 if y < 0 else (y * y if y < 1 else 1), [0, 1]),
    "stairs": (sympy.Piecewise((-2, x < -1), (x**2 / 2 + x, x < sympy.Rational(1, 2)), (3 - x, x < 2),
                               (sympy.Rational(1, 3), True)),
               lambda y: -2 if y < -1 else (y * y / 2 + y if y < mpmath.mpf(1) / 2
                                            else (3 - y if y < 2 else mpmath.mpf(1) / 3)),
               [-1, mpmath.mpf(1) / 2, 2]),
}
CAUCHY_EXACT_POINTS = ["-1e5", "-40.5", "-9.5", "-5.5", "-3.3", "-2.5", "-1.7", "-1", "-0.6", "-0.3", "0", "0.3", "0.5",
                       "0.9", "1.4", "2", "2.6", "3.5", "4.1", "5.5", "6", "6.2", "7.5", "9.7", "13", "40.5", "1e5"]


@pytest.mark.parametrize("name", list(CAUCHY_EXACT))
def test_cauchy_closed_form_is_the_convolution_on_every_zone(name):
    """The Cauchy closed form of a bounded f is a Piecewise over zones of x (near each kink, between and beyond the
    kinks, and far out by pieces of f), each branch written with the angles that decay on its side; every branch
    must be f * k_s itself.  Reference: mpmath quadrature of f(x - t) k_s(t) dt over the whole line at 34 digits,
    at points in every zone (each branch of the Piecewise is taken by some point), to 1e-30 of max(1, |value|);
    the closed form is evaluated at 80 digits, which covers the cancellation a quadratic piece has far out."""
    f, numeric_f, kinks = CAUCHY_EXACT[name]
    closed = convolve_expression(f, "cauchy", sigma)
    evaluate = sympy.lambdify((x, sigma), closed, "mpmath")
    if isinstance(closed, sympy.Piecewise):  # every branch is tested
        taken = {next(i for i, (_, c) in enumerate(closed.args) if c.subs(x, sympy.Rational(p)) == sympy.true)
                 for p in CAUCHY_EXACT_POINTS}
        assert taken == set(range(len(closed.args))), (name, sorted(taken))
    for point, width in zip(CAUCHY_EXACT_POINTS, ["0.02", "0.7", "3"] * 9):
        with mpmath.workdps(34):
            x0, s = mpmath.mpf(point), mpmath.mpf(width)
            k = lambda u: s / (mpmath.pi * (u * u + s * s))  # noqa: E731
            ends = [-mpmath.inf, *sorted({x0 - c for c in kinks} | {mpmath.mpf(0)}), mpmath.inf]
            reference = mpmath.quad(lambda u: numeric_f(x0 - u) * k(u), ends)
        with mpmath.workdps(80):
            value = evaluate(mpmath.mpf(point), mpmath.mpf(width))
        assert abs(value - reference) <= mpmath.mpf(10) ** -30 * max(1, abs(reference)), (point, width, value,
                                                                                           reference)


def test_gaussian_antiderivatives_differentiate_back_and_vanish_at_minus_infinity():
    """G_j is now written by the recurrence H_j = -v^(j-1) phi(v) + (j - 1) H_(j-2) instead of SymPy's integrate."""
    for j in range(5):
        G = kernel_antiderivative("gaussian", j, sigma)
        assert sympy.simplify(sympy.diff(G, t) - t**j * kernel_density("gaussian", sigma, t)) == 0
        assert sympy.limit(G, t, -sympy.oo) == 0


WIDTH_SLOPE = {  # d k_s(t) / d s
    "gaussian": lambda u, s: mpmath.npdf(u, 0, s) * (u * u / s**3 - 1 / s),
    "logistic": lambda u, s: DENSITY["logistic"](u, s) * (u * mpmath.tanh(u / (2 * s)) / s**2 - 1 / s),
}


@pytest.mark.parametrize("name, kernel", [("hardtanh", "gaussian"), ("relu6", "gaussian"), ("hardshrink", "gaussian"),
                                          ("hardtanh", "logistic")])
def test_a_trainable_width_has_a_finite_accurate_gradient_far_out(name, kernel):
    """The Piecewise closed form's width-gradient in the generated module took sinh(x/s**2)*exp(-x**2/(2*s**2)) in a
    branch (inf*0 = NaN from |x| = 710 in float64) until the code generator counted exp(-(x + 1)**2/(2*s**2)) as
    bounded for a width that is only real.  Reference: d/ds (f * k_s)(x) = int f(x - t) dk_s(t)/ds dt by mpmath
    quadrature at 30 digits."""
    torch = pytest.importorskip("torch")
    import numeric
    from symact.smooth import convolve

    module = numeric.torch_module(convolve(name, kernel), trainable=["sigma"]).double()
    _, f, kinks, _, _ = TAIL_FUNCTIONS[name]
    for p in [-1e6, -1e4, -800.0, -30.0, -1.3, 0.37, 1.3, 7.5, 30.0, 800.0, 1e4, 1e6]:
        module.zero_grad()
        module(torch.tensor([p], dtype=torch.float64)).sum().backward()
        got = module.sigma.grad.item()
        with mpmath.workdps(30):
            x0, s = mpmath.mpf(p), mpmath.mpf(1)
            reach = {"gaussian": 16, "logistic": 100}[kernel]
            ends = [-reach, *sorted(q for q in {x0 - kink for kink in kinks} | {mpmath.mpf(0)} if -reach < q < reach),
                    reach]
            reference = float(mpmath.quad(lambda u: f(x0 - u) * WIDTH_SLOPE[kernel](u, s), ends))
        assert abs(got - reference) <= 1e-12 * max(1, abs(reference)), (p, got, reference)
