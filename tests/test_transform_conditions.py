"""Kernel conditions of psi = gamma*(phi(alpha x + beta) + delta) and their (alpha, beta) derivatives.

References used here are independent of the code under test: closed forms (affine and quadratic
phi, where every expectation is a polynomial moment), mpmath.diff finite differences at 40
digits, and adaptive tanh-sinh quadrature (gaussian_expectation_mp) instead of the composite
Gauss-Legendre rule the module uses internally.
"""

from __future__ import annotations

import math

import mpmath
import pytest
import sympy

from analysis.transform_conditions import (
    activation_functions,
    gaussian_expectation_mp,
    transform_conditions,
)

x = sympy.Symbol("x", real=True)
M = mpmath.mpf
SELU = sympy.Float("1.0507009873554804934193349852946", 40) * sympy.Piecewise(
    (x, x > 0), (sympy.Float("1.6732632423543772848170429916717", 40) * (sympy.exp(x) - 1), True))
ELU = sympy.Piecewise((x, x > 0), (sympy.exp(x) - 1, True))
SMOOTH = {"tanh": sympy.tanh(x), "softplus": sympy.log(1 + sympy.exp(x)),
          "gelu": x * (1 + sympy.erf(x / sympy.sqrt(2))) / 2}
ALL = {**SMOOTH, "selu": SELU, "elu": ELU}
NAMES = ("q_value", "q_slope", "c_at_0", "c_slope", "c_curvature")


@pytest.fixture(autouse=True)
def _forty_digits():
    """Test-side arithmetic (references, decimal inputs) at 40 digits; restored afterwards."""
    with mpmath.workdps(40):
        yield


def test_quadratic_closed_form():
    # phi = x^2: phi(a z + b) = a^2 z^2 + 2ab z + b^2, so every moment is polynomial.
    a, b, g, d = M("0.7"), M("0.3"), M("1.3"), M("-0.2")
    tc = transform_conditions(x ** 2, a, b, g, d, dps=30)
    c0 = a * a + b * b + d  # E[phi] + delta
    # E[(phi+delta)^2] = Var(phi) + c0^2 with Var = 2a^4 + 4a^2 b^2
    s = 2 * a ** 4 + 4 * a ** 2 * b ** 2 + c0 ** 2
    # Q(q) = g^2 E[(q a^2 z^2 + 2 sqrt(q) a b z + b^2 + d)^2] = g^2 (3q^2a^4 + 4qa^2b^2 + 2qa^2(b^2+d) + (b^2+d)^2)
    q_slope = g * g * (6 * a ** 4 + 4 * a ** 2 * b ** 2 + 2 * a ** 2 * (b * b + d))
    with mpmath.workdps(30):
        assert abs(tc.values.q_value - g * g * s) < M(10) ** -28
        assert abs(tc.values.q_slope - q_slope) < M(10) ** -28
        assert abs(tc.values.c_at_0 - c0 ** 2 / s) < M(10) ** -28
        # E[psi'^2]/Q(1) = a^2 E[(2(a z + b))^2] / s
        assert abs(tc.values.c_slope - a * a * 4 * (a * a + b * b) / s) < M(10) ** -28
        assert abs(tc.values.c_curvature - a ** 4 * 4 / s) < M(10) ** -28


@pytest.mark.parametrize("name", sorted(ALL))
def test_float64_agrees_with_mpmath(name):
    args = (0.43, 0.61, 1.7, -0.3)
    f64 = transform_conditions(ALL[name], *args)
    mp = transform_conditions(ALL[name], *(M(v) for v in args), dps=30)
    for cs64, csmp in ((f64.values, mp.values), (f64.d_alpha, mp.d_alpha), (f64.d_beta, mp.d_beta)):
        for k in NAMES:
            a, b = getattr(cs64, k), getattr(csmp, k)
            if name == "selu" and k == "c_curvature":
                assert math.isinf(f64.values.c_curvature) and mpmath.isinf(mp.values.c_curvature)
                continue
            assert abs(a - float(b)) <= 1e-13 * max(1.0, abs(float(b))), (name, k, a, b)


@pytest.mark.parametrize("name", ["tanh", "selu"])
def test_values_against_adaptive_quadrature(name):
    """Q(1), C(0), C'(1) against tanh-sinh quadrature of the defining integrals at 35 digits."""
    a, b, g, d = M("0.43"), M("0.61"), M("1.7"), M("-0.3")
    tc = transform_conditions(ALL[name], a, b, g, d, dps=30)
    funcs = activation_functions(ALL[name])
    phi, dphi, _ = funcs.mp_funcs
    with mpmath.workdps(40):
        e2 = gaussian_expectation_mp(lambda u: (phi(u) + d) ** 2, 35, funcs.kinks, b, a)
        e1 = gaussian_expectation_mp(lambda u: phi(u) + d, 35, funcs.kinks, b, a)
        ed = gaussian_expectation_mp(lambda u: dphi(u) ** 2, 35, funcs.kinks, b, a)
        # Q'(1) by its other form, E[psi'(z)^2 + psi(z) psi''(z)] is unusable with kinks; use
        # d/dq of q -> E[psi(sqrt(q) z)^2] by central differences of adaptive quadratures.
        def q_of(q):
            return g * g * gaussian_expectation_mp(lambda u: (phi(u) + d) ** 2, 35, funcs.kinks, b, a * mpmath.sqrt(q))
        q_slope = (q_of(1 + M(10) ** -12) - q_of(1 - M(10) ** -12)) / (2 * M(10) ** -12)
    assert abs(tc.values.q_value - g * g * e2) < M(10) ** -28
    assert abs(tc.values.c_at_0 - e1 ** 2 / e2) < M(10) ** -28
    assert abs(tc.values.c_slope - a * a * ed / e2) < M(10) ** -28
    assert abs(tc.values.q_slope - q_slope) < M(10) ** -20


@pytest.mark.parametrize("name", ["tanh", "selu", "elu"])
def test_derivatives_match_finite_differences(name):
    """Exact d/d alpha, d/d beta (density differentiated under the integral) vs central differences.

    Step h = 1e-9 at 30 digits: truncation ~h^2 * (third derivative) ~ 1e-18, rounding ~1e-21.
    """
    a, b, g, d = M("0.43"), M("-0.21"), M("1.7"), M("0.3")
    tc = transform_conditions(ALL[name], a, b, g, d, dps=30)
    h = M(10) ** -9
    plus_a, minus_a, plus_b, minus_b = (
        transform_conditions(ALL[name], al, be, g, d, dps=30).values
        for al, be in ((a + h, b), (a - h, b), (a, b + h), (a, b - h)))
    for k in NAMES:
        if name == "selu" and k == "c_curvature":
            continue
        da = (getattr(plus_a, k) - getattr(minus_a, k)) / (2 * h)
        db = (getattr(plus_b, k) - getattr(minus_b, k)) / (2 * h)
        assert abs(getattr(tc.d_alpha, k) - da) < M(10) ** -15, (name, k)
        assert abs(getattr(tc.d_beta, k) - db) < M(10) ** -15, (name, k)


def test_reflection_of_alpha_leaves_conditions():
    pos = transform_conditions(SMOOTH["softplus"], 0.8, 0.2, 1.1, -0.5)
    neg = transform_conditions(SMOOTH["softplus"], -0.8, 0.2, 1.1, -0.5)
    for k in NAMES:
        assert getattr(pos.values, k) == pytest.approx(getattr(neg.values, k), rel=1e-15)
        assert getattr(pos.d_alpha, k) == pytest.approx(-getattr(neg.d_alpha, k), rel=1e-12, abs=1e-15)


def test_symmetry_and_jumps_detected():
    assert activation_functions(sympy.tanh(x)).odd_offset == 0
    assert activation_functions(1 / (1 + sympy.exp(-x))).odd_offset == pytest.approx(1.0)
    assert activation_functions(ELU).odd_offset is None
    selu = activation_functions(SELU)
    assert selu.kinks == (0.0,) and selu.slope_jumps and not selu.value_jumps
    elu = activation_functions(ELU)
    assert not elu.slope_jumps  # elu with alpha = 1 is C^1: C''(1) finite
    step = activation_functions(sympy.Heaviside(x))
    assert step.value_jumps


def test_float64_rule_resolves_large_alpha():
    """phi(alpha z + beta) is sharp in z when alpha is large: the float64 rule must still agree with
    mpmath (a fixed 32-panel rule was off by 4e-3 in C'(1) for tanh at alpha = 14.5 with no warning).
    The mpmath reference at 20 digits is exact far inside the 1e-12 tolerance (30 cost ~1.5x)."""
    from analysis.transform_conditions import checked_float64_evaluator

    for name, alpha, beta in (("tanh", 14.5171, 18.2131), ("tanh", 29.908, 37.918), ("sigmoid", 10.52, 12.85)):
        f64 = transform_conditions(name, alpha, beta, 1.7, -0.79).values.as_dict()
        ref = transform_conditions(name, mpmath.mpf(alpha), mpmath.mpf(beta), mpmath.mpf("1.7"), mpmath.mpf("-0.79"),
                                   dps=20).values.as_dict()
        for key in ("q_value", "q_slope", "c_at_0", "c_slope", "c_curvature"):
            assert abs(f64[key] - ref[key]) <= 1e-12 * max(1, abs(ref[key])), (name, alpha, key, f64[key], ref[key])
        ev = checked_float64_evaluator(activation_functions(name), alpha, beta)
        assert ev.error <= 1e-14


@pytest.mark.parametrize("phi", [sympy.Heaviside(x), sympy.sign(x)])
@pytest.mark.parametrize("dps", [None, 20])
def test_jumping_phi_has_infinite_slope_and_curvature(phi, dps):
    """A jump of phi makes psi' a delta: C'(1) = C''(1) = inf.  The step's C map is Sheppard's
    1/4 + asin(c)/(2 pi) (normalised by Q(1) = 1/2), whose slope (1/pi)/sqrt(1 - c^2) diverges at 1;
    the regular part alone gave c_slope = c_curvature = 0."""
    tc = transform_conditions(phi, 1.3, 0.2, 1.0, 0.0, dps=dps)
    assert mpmath.isinf(tc.values.c_slope) and tc.values.c_slope > 0
    assert mpmath.isinf(tc.values.c_curvature) and tc.values.c_curvature > 0
    assert mpmath.isnan(tc.d_alpha.c_slope) and mpmath.isnan(tc.d_beta.c_curvature)


@pytest.mark.parametrize("dps", [None, 20])
def test_alpha_zero_refused_with_domain_error(dps):
    """alpha = 0 (psi constant) reached the evaluator as a bare ValueError / ZeroDivisionError."""
    from symact.errors import DomainError

    with pytest.raises(DomainError, match="nonzero alpha"):
        transform_conditions(sympy.tanh(x), 0, 0.1, 1.0, 0.0, dps=dps)
    with pytest.raises(DomainError, match="finite"):
        transform_conditions(sympy.tanh(x), 1.0, float("nan"), 1.0, 0.0, dps=dps)
    # gamma = 0: psi is 0, Q(1) = 0 and the C map's normalisation is 0/0 (it returned a finite C'(1))
    with pytest.raises(DomainError, match="nonzero gamma"):
        transform_conditions(sympy.tanh(x), 1.0, 0.1, 0.0, 0.0, dps=dps)


@pytest.mark.parametrize("settings", [{"dps": 0}, {"dps": -2}, {"dps": 2.5}, {"dps": True}, {"refine": 0},
                                      {"refine": -1}, {"refine": 1.5}])
def test_bad_precision_settings_are_refused(settings):
    """dps = 0 or -2 gave Q(1) of tanh as 0.375 or 0.5 (it is 0.3943) without a word; refine = 0 raised a
    bare ZeroDivisionError, refine = -1 NumPy's ValueError."""
    from symact.errors import DomainError

    with pytest.raises(DomainError, match="(dps|refine)="):
        transform_conditions(sympy.tanh(x), 1.0, 0.0, 1.0, 0.0, **settings)


def test_string_parameters_work_in_the_float64_engine_as_with_mpmath():
    """'0.5' passed the parameter check (mpmath reads it) and then hit a bare TypeError in alpha < 0."""
    from_strings = transform_conditions(sympy.tanh(x), "-1.5", "0.25", "2", "0.5")
    from_floats = transform_conditions(sympy.tanh(x), -1.5, 0.25, 2.0, 0.5)
    assert from_strings.values == from_floats.values and from_strings.d_alpha == from_floats.d_alpha
    # Q(1) against an independent quadrature: E[(2 (tanh(-1.5 z + 0.25) + 0.5))^2]
    with mpmath.workdps(30):
        q = mpmath.quad(lambda z: (2 * (mpmath.tanh(-1.5 * z + 0.25) + 0.5)) ** 2 * mpmath.npdf(z),
                        [-mpmath.inf, 0, mpmath.inf])
    assert abs(from_strings.values.q_value - float(q)) < 1e-12


def test_mass_at_the_edge_of_either_rule_is_refused_or_followed_not_truncated():
    """exp(x**2) is not square-integrable under N(0, 1): the float64 rule (cut at |z| = 14) gave
    Q(1) = 9e125.  exp(x) at alpha = 5 has E[phi(alpha z)^2] = exp(2 alpha^2) = e^50 with its bulk near
    z = 10: the float64 rule cannot hold it and must say so; the mpmath rule (cut at 12.4 for 20
    digits) gave it 1% low with every refinement agreeing, and must now follow the integrand out."""
    from symact.errors import DivergentIntegralError

    with pytest.raises(DivergentIntegralError, match="diverges"):
        transform_conditions("exp(x**2)", 1.0, 0.0, 1.0, 0.0)
    with pytest.raises(DivergentIntegralError, match="diverges"):
        transform_conditions("exp(x**2)", 1.0, 0.0, 1.0, 0.0, dps=20)
    with pytest.raises(DivergentIntegralError, match="mpmath engine"):
        transform_conditions("exponential", 5.0, 0.0, 1.0, 0.0)
    tc = transform_conditions("exponential", 5, 0, 1, 0, dps=20)
    with mpmath.workdps(30):
        assert abs(tc.values.q_value / mpmath.exp(50) - 1) < mpmath.mpf(10) ** -18
    # square-integrable growth inside the rule is kept: E[exp(z^2/4)] = 1/sqrt(1 - 1/2)
    assert transform_conditions("exp(x**2/8)", 1.0, 0.0, 1.0, 0.0).values.q_value == pytest.approx(2 ** 0.5, rel=1e-13)


@pytest.mark.parametrize("dps", [None, 20])
@pytest.mark.parametrize("phi, beta, delta", [(sympy.Max(x, 0), -40.0, 0.0), (sympy.Heaviside(x), 40.0, -1.0)])
def test_psi_zero_wherever_the_gaussian_has_mass_is_refused(phi, beta, delta, dps):
    """relu(z - 40) and Heaviside(z + 40) - 1 vanish at every node of either rule, so Q(1) came out 0 and
    C(0) = E[psi]^2 / Q(1) raised a bare ZeroDivisionError; now a DomainError names the cause."""
    from symact.errors import DomainError

    with pytest.raises(DomainError, match=r"Q\(1\).* is 0 .*Choose beta and delta"):
        transform_conditions(phi, 1.0, beta, 1.0, delta, dps=dps)


@pytest.mark.parametrize("scale", [1, sympy.Rational(1, 10**9)])
def test_jump_detection_does_not_depend_on_the_scale_of_phi(scale):
    """C'(1) and C''(1) are ratios over Q(1), unchanged by phi -> s*phi; a jump of phi' makes C''(1)
    infinite (the arc-cosine kernel's curvature at c = 1), a jump of phi C'(1).  The absolute 1e-8
    threshold missed both at s = 1e-9: relu/1e9 had C''(1) = 0.0 and Heaviside/1e9 C'(1) = 0.0."""
    relu = transform_conditions(scale * sympy.Max(x, 0), 1.0, 0.1, 1.0, 0.0)
    step = transform_conditions(scale * sympy.Heaviside(x), 1.0, 0.1, 1.0, 0.0)
    assert math.isinf(relu.values.c_curvature) and relu.values.c_curvature > 0
    assert math.isinf(step.values.c_slope) and step.values.c_slope > 0
    # a slope jump of 1e-9 of a unit slope (leaky-relu-like) is a jump too: psi'' has a delta there
    leaky = transform_conditions(sympy.Max(x, (1 - sympy.Rational(1, 10**9)) * x), 1.0, 0.1, 1.0, 0.0)
    assert math.isinf(leaky.values.c_curvature)



@pytest.mark.parametrize("dps", [None, 20])
@pytest.mark.parametrize("phi, which", [
    (sympy.Heaviside(x - sympy.Rational(1, 3)), "value"),
    (sympy.Max(x - sympy.Rational(1, 3), 0), "slope"),
    (sympy.Max(-sympy.Rational(1, 3), sympy.Min(sympy.Rational(1, 3), x)), "slope"),
    (sympy.Max(x - sympy.sqrt(2), 0), "slope"),
    ("hardtanh", "slope"),
])
def test_jumps_at_kinks_that_are_not_floats_are_detected(phi, which, dps):
    """A kink at 1/3, 1/10 or sqrt(2) is no float64 number: float(1/3) lies 1.9e-17 from it, so the jump test's
    probes at the float +- 1e-20 both fell on one side and no jump was seen.  Heaviside(x - 1/3) came out with
    C'(1) = C''(1) = 0 (the step's C map has an infinite slope at c = 1, as for Heaviside(x)) and
    relu(x - 1/3), hardtanh(+-1/3) with C''(1) = 0 (phi' jumps: psi'' has a delta, C''(1) = inf as for relu).
    Reference: phi (or phi') in exact arithmetic at the kink +- 10^-30."""
    import symact

    if isinstance(phi, str):  # the catalogue's hardtanh at min_val = -1/10, max_val = 1/10
        act = symact.activation(phi).with_params(min_val=-sympy.Rational(1, 10), max_val=sympy.Rational(1, 10))
    else:
        act = symact.activation(phi.subs(x, symact.x))
    (kink, *_) = act.kinks
    f = act.concrete_expr.subs(act.inputs[0], x)
    g = f if which == "value" else sympy.diff(f, x).replace(lambda e: isinstance(e, sympy.DiracDelta), lambda e: 0)
    h = sympy.Rational(1, 10**30)
    assert sympy.simplify(g.subs(x, kink + h) - g.subs(x, kink - h)) != 0  # phi (or phi') does jump there
    tc = transform_conditions(act, 1.1, 0.2, 1.0, 0.0, dps=dps).values
    assert mpmath.isinf(tc.c_curvature) and tc.c_curvature > 0
    if which == "value":
        assert mpmath.isinf(tc.c_slope) and tc.c_slope > 0
    else:  # phi continuous: C'(1) = alpha^2 E[phi'(u)^2] / E[phi(u)^2], finite
        assert mpmath.isfinite(tc.c_slope)


def test_float64_returns_conditions_whose_mass_lies_wholly_in_a_far_tail():
    """relu6(alpha z + beta) at alpha = 0.033674107, beta = -0.33333333 is 0 for z < 9.9, so all of its
    mass lies in the Gaussian's tail (Q(1) = 4.6e-28) and 4e-16 of it at 13 <= z <= 14; the float64 edge
    test raised "the integral diverges" though the mass beyond the rule's cut at 14 is ~1e-21 of it.
    Reference: mpmath.quad at 40 digits; relu6(u) = u on 0 < u < 6, i.e. 9.9 < z < 188, where the
    Gaussian mass beyond is below 1e-7000, so the integrals run from z0 = -beta/alpha to infinity."""
    alpha, beta = 0.033674107, -0.33333333
    tc = transform_conditions("relu6", alpha, beta, 1, 0).values
    with mpmath.workdps(40):
        a, b = mpmath.mpf(alpha), mpmath.mpf(beta)
        z0 = -b / a

        def expect(f):
            return mpmath.quad(lambda z: f(z) * mpmath.npdf(z), [z0, z0 + 2, z0 + 6, mpmath.inf])

        q = expect(lambda z: (a * z + b) ** 2)
        q_slope = expect(lambda z: (z * z - 1) * (a * z + b) ** 2) / 2
        mean = expect(lambda z: a * z + b)
        slope = a * a * mpmath.ncdf(-z0) / q
    for got, ref in ((tc.q_value, q), (tc.q_slope, q_slope), (tc.c_at_0, mean ** 2 / q), (tc.c_slope, slope)):
        assert abs(got / ref - 1) < 1e-12, (got, ref)
    # a divergent integral is still refused as such
    from symact.errors import DivergentIntegralError
    with pytest.raises(DivergentIntegralError, match="diverges"):
        transform_conditions("exp(x**4)", 0.3, 0.0, 1.0, 0.0)


ROUNDING = [  # (phi, alpha, beta, the conditions whose float64 value its formula rounded)
    # log(1 + exp(u)) at u ~ -30 adds exp(-30) to 1: C(0) was 1.8e-6 off, the others 2e-10
    (sympy.log(1 + sympy.exp(x)), 3, -30, NAMES),
    # softplus'' written exp(u)/(exp(u) + 1) - exp(2u)/(exp(u) + 1)**2 cancels at u ~ 30: C''(1) was 2e-5 off
    (sympy.log(1 + sympy.exp(x)), 1, 30, NAMES),
    # log(1 + exp(-u**2)) with exp(-u**2) ~ 1e-12 to 1e-21 on u = 6 +- 1.4: C(0) was 4e-2 off
    (sympy.log(1 + sympy.exp(-x**2)), 0.1, 6, NAMES),
    # tanh' written 1 - tanh(u)**2, numbers within 1e-14 of 1 near u = -16: C'(1), C''(1) were 2e-3 off.  Q'(1) is
    # 2.5e-16 of E[psi**2] here: E[(z**2 - 1) psi**2]/2 cancelled (off by 6e6 relatively), E[z psi psi'] does not
    (sympy.tanh(x), 1, -20, NAMES),
    # ELU's exp(u) - 1 near u = 0: C(0) was 3e-12 off
    (ELU, 1e-3, 0, NAMES),
]


@pytest.mark.parametrize("phi, alpha, beta, names", ROUNDING, ids=[f"{r[0]}@{r[1]},{r[2]}" for r in ROUNDING])
def test_float64_conditions_of_formulas_that_round_agree_with_mpmath(phi, alpha, beta, names):
    """The float64 engine lambdified phi, phi', phi'' as written, and a formula that rounds in float64 without
    overflowing lost digits with no warning: softplus at alpha = 3, beta = -30 had C(0) 1.8e-6 off.  It now evaluates
    their safe forms (symact.primitives: Softplus, Sigmoid(u)*Sigmoid(-u), sech(u)**2, Expm1).  Reference: the
    mpmath engine at 30 digits (the formula as written, with guard digits); tolerance 1e-12 relative."""
    f64 = transform_conditions(phi, alpha, beta, 1.0, 0.0).values
    mp = transform_conditions(phi, M(alpha), M(beta), 1, 0, dps=30).values
    for name in names:
        a, b = getattr(f64, name), float(getattr(mp, name))
        assert abs(a - b) <= 1e-12 * abs(b), (name, a, b)


@pytest.mark.parametrize("alpha, beta", [(1, 45), (1, 30), (0.01, 45)])
def test_q_of_a_nearly_constant_psi_is_accurate_in_float64(alpha, beta):
    """psi = sigmoid(alpha z + beta) is 1 - 3e-20 at beta = 45: the float64 Q'(1), a sum of (z^2 - 1) psi^2 over terms
    of size 1, came out -3.0e-18 for the true -4.72e-20 (beta = 30: 2.2e-6 relative error; alpha = 0.01: 1e6 times
    too large), d/dbeta Q(1) 5.1e-18 for 9.4e-20.  It is now a sum over z (phi + delta) phi' (Stein's lemma),
    small where psi is flat.  Reference: the defining integrals Q'(1) = E[(z^2 - 1) psi^2] / 2, with d/dalpha and
    d/dbeta by differentiating the Gaussian density, by adaptive tanh-sinh quadrature (mpmath.quad) at 60 digits,
    which carries the 20-28 digits they cancel.  Tolerance 1e-9 relative: the float64 sums of the new forms have
    no cancellation here (measured: 3e-14)."""
    tc = transform_conditions("sigmoid", float(alpha), float(beta), 1.0, 0.0)
    with mpmath.workdps(60):
        a, b = M(alpha), M(beta)

        def expect(p):  # E[p(z) sigmoid(a z + b)^2]
            return mpmath.quad(lambda z: p(z) * mpmath.npdf(z) / (1 + mpmath.exp(-(a * z + b))) ** 2,
                               [-mpmath.inf, -5, 0, 5, mpmath.inf])

        want = {("values", "q_value"): expect(lambda z: 1),
                ("d_beta", "q_value"): expect(lambda z: z) / a,
                ("d_alpha", "q_value"): expect(lambda z: z * z - 1) / a,
                ("values", "q_slope"): expect(lambda z: z * z - 1) / 2,
                ("d_beta", "q_slope"): expect(lambda z: z ** 3 - 3 * z) / (2 * a),
                ("d_alpha", "q_slope"): expect(lambda z: z ** 4 - 4 * z * z + 1) / (2 * a)}
    for (which, name), ref in want.items():
        got = getattr(getattr(tc, which), name)
        assert abs(got - ref) <= 1e-9 * abs(ref), (which, name, got, mpmath.nstr(ref, 12))


# (activation, alpha, beta) from the float64-against-mpmath survey (module docstring) where the old float64
# Q'(1) or its derivatives were wrong (relative error at the old code in brackets), and cases with kinks
SURVEY = [
    ("tanh", 1.0, -30.0),      # Q'(1): 6e6; d/dalpha Q'(1): 1e7
    ("sigmoid", 0.01, 30.0),   # Q'(1): 1.3; d/dbeta Q'(1): 1e2
    ("elu", 1.0, -45.0),       # phi = exp(u) - 1 ~ -1: Q'(1), C(0)'s derivatives
    ("relu", 1.0, 10.0),       # phi' jumps: Q'(1)'s derivatives through E[(z^2 - 1)(phi + delta) phi']
]


def _survey_scale(tc, name, alpha):
    """S = max(|X|, alpha |dX/dalpha|, alpha |dX/dbeta|) of one condition X (see the module docstring)."""
    return max(abs(getattr(tc.values, name)), alpha * abs(getattr(tc.d_alpha, name)), alpha * abs(getattr(tc.d_beta, name)))


@pytest.mark.parametrize("act, alpha, beta", SURVEY, ids=[f"{a}@{al},{b}" for a, al, b in SURVEY])
def test_float64_conditions_at_extreme_parameters_agree_with_mpmath(act, alpha, beta):
    """All 15 numbers of the float64 engine against the mpmath engine at 30 + 0.87 min(|beta|, beta^2 / 2 alpha^2)
    digits, enough for the 1e-(0.87 |beta|) cancellation of C(0)'s quotient rule.  Tolerance (the module
    docstring's): 1e-9 relative, or 1e-13 of the condition's scale S, whichever is larger; S counts the derivatives
    times alpha (X's change as u moves by one standard deviation).  The mpmath engine's forms are checked
    against finite differences and adaptive quadrature of the defining integrals above.  No warning may be
    raised: delta = 0 leaves nothing to cancel in phi + delta."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f64 = transform_conditions(act, alpha, beta, 1.0, 0.0)
    dps = 30 + math.ceil(0.87 * min(abs(beta), beta * beta / (2 * alpha * alpha)))
    mp = transform_conditions(act, M(alpha), M(beta), 1, 0, dps=dps)
    for name in NAMES:
        if mpmath.isinf(mp.values.c_curvature) and name == "c_curvature":
            assert math.isinf(f64.values.c_curvature)
            continue
        scale = _survey_scale(mp, name, M(alpha))
        for which in ("values", "d_alpha", "d_beta"):
            got, want = getattr(getattr(f64, which), name), getattr(getattr(mp, which), name)
            tol = max(1e-9 * abs(want), 1e-13 * scale)
            assert abs(got - want) <= tol, (which, name, got, mpmath.nstr(want, 12), float(abs(got - want) / tol))


def test_float64_warns_where_delta_cancels_phi():
    """tanh(u) - 1 = -2 / (exp(2u) + 1) keeps 8 of float64's digits at u = 12 and none beyond u = 19: no form of
    the conditions can undo that, as each holds the factor phi + delta.  The float64 engine returned C(0) 4e-7 off
    with no word; it now warns with its rounding estimate, which must bound the measured errors (against the
    mpmath engine at 40 digits, 4e-7 relative in C(0), 2e-9 in Q(1) at beta = 12), and stays silent where nothing
    cancels (beta = 4: 1e-14).  At beta = 40 every node rounds to 0: the Q(1) = 0 refusal says it may be that."""
    import re
    import warnings

    from symact.errors import DomainError

    for beta, warns in ((4.0, False), (12.0, True)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            f64 = transform_conditions("tanh", 1.0, beta, 1.0, -1.0)
        mine = [w for w in caught if issubclass(w.category, RuntimeWarning) and "cancels" in str(w.message)]
        assert len(mine) == int(warns), [str(w.message) for w in caught]
        mp = transform_conditions("tanh", 1, M(beta), 1, -1, dps=40).values
        bound = float(re.search(r"errors of about (\S+) in", str(mine[0].message)).group(1)) if warns else 1e-12
        for name in NAMES:
            want = getattr(mp, name)
            err = abs(getattr(f64.values, name) - want) / (1 if name == "c_at_0" else abs(want))
            assert err <= bound, (beta, name, float(err), bound)
        if warns:
            assert abs(f64.values.c_at_0 / mp.c_at_0 - 1) > 1e-8  # the warning is not idle: C(0) is off
    with pytest.raises(DomainError, match=r"is 0 on the float64 rule.*rounds to -delta"):
        transform_conditions("tanh", 1.0, 40.0, 1.0, -1.0)


def test_float64_warns_where_the_mass_of_phi_prime_lies_beyond_the_rule():
    """erf'(u)^2 = 4 exp(-2 u^2) / pi at u = z + 30 has its Gaussian-weighted mass near z = -24, beyond the float64
    rule's cut |z| = 14, while erf(u)^2 ~ 1 hides it from the rule's mass check: C'(1) came out 1.2e-267 with no
    word, for exactly E[erf'(z + 30)^2] / Q(1) = 4 exp(-360) / (pi sqrt 5) / Q(1) = 2.6e-157 (E[exp(-2 (z + b)^2)]
    = exp(-2 b^2 / 5) / sqrt 5).  Now a RuntimeWarning names C'(1) (and Q'(1), C''(1)); the value stays below the
    true one, as the warning says.  Where the mass decays inside the rule (relu_squared at beta = -10, 1e-17 of
    its Q'(1) integrand beyond the cut) nothing is said."""
    import warnings

    with pytest.warns(RuntimeWarning, match=r"Q'\(1\), C'\(1\), C''\(1\) has its mass at or beyond"):
        tc = transform_conditions("erf", 1.0, 30.0, 1.0, 0.0)
    with mpmath.workdps(30):
        exact = 4 * mpmath.exp(-360) / (mpmath.pi * mpmath.sqrt(5)) / tc.values.q_value
    assert 0 <= tc.values.c_slope < 1e-50 * exact
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        transform_conditions("relu_squared", 1.0, -10.0, 1.0, 0.0)


def _erf_closed_forms(alpha, beta):
    """E[erf'(u)^2] and E[erf''(u)^2], u ~ N(beta, alpha^2), exactly.  erf'(u) = 2 exp(-u^2)/sqrt(pi), and
    E[g(u) exp(-2u^2)] = exp(-2 beta^2/k)/sqrt(k) E[g(v)], v ~ N(beta/k, alpha^2/k), k = 1 + 4 alpha^2 (completing
    the square), so E[erf'^2] = 4 exp(-2 beta^2/k) / (pi sqrt k) and, with erf''(u) = -2u erf'(u),
    E[erf''^2] = 4 E[u^2 erf'(u)^2] = E[erf'^2] 4 ((beta/k)^2 + alpha^2/k)."""
    k = 1 + 4 * alpha * alpha
    d1 = 4 * mpmath.exp(-2 * beta * beta / k) / (mpmath.pi * mpmath.sqrt(k))
    return d1, d1 * 4 * ((beta / k) ** 2 + alpha * alpha / k)


@pytest.mark.parametrize("alpha, beta", [(1, 30), (M("0.3"), 10), (1, -100)])
def test_mpmath_engine_follows_a_slope_whose_mass_lies_in_a_far_tail(alpha, beta):
    """erf'(u)^2 at u = alpha z + beta has its Gaussian-weighted mass near z = -4 alpha beta / (1 + 4 alpha^2)
    (-24 at alpha = 1, beta = 30), beyond the mpmath rule's cut sqrt(2 (dps + 8) ln 10) + 1 = 14.2 at 30 digits, and
    erf(u)^2 ~ 1 hid it from the rule's mass check of E[phi^2 + phi'^2]: C'(1) came out 1.0e-262 for 2.6e-157 (and
    1.5e-10 off at alpha = 0.3, beta = 10, peak at -8.8, tail cut at 14.2), with no word.  Each integrand's mass is now
    checked on its own and the range widened to it.  Reference: the closed forms of E[erf'^2], E[erf''^2]."""
    tc = transform_conditions(sympy.erf(x), alpha, beta, 1, 0, dps=30)
    d1, d2 = _erf_closed_forms(M(alpha), M(beta))
    q = tc.values.q_value
    assert abs(tc.values.c_slope / (M(alpha) ** 2 * d1 / q) - 1) < M(10) ** -27
    assert abs(tc.values.c_curvature / (M(alpha) ** 4 * d2 / q) - 1) < M(10) ** -27

