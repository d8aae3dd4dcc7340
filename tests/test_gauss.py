"""numeric.gauss against independent references: Gaussian moments, closed-form expectations,
Sheppard's formula, exact Hermite coefficients, and error paths."""

import math

import mpmath
import numpy as np
import pytest

from _reference import power_kernel
from numeric.gauss import (
    with_removable_points,
    GaussianIntegral,
    bivariate_gaussian_expectation,
    bivariate_gaussian_expectation_float64,
    gaussian_expectation,
    gaussian_expectation_float64,
    hermite_coefficients,
)
from symact.errors import DivergentIntegralError, DomainError, NonRealExpressionError


def rel(a, b):
    """|a - b| / |b|, or |a - b| when b = 0 (a floor such as max(|b|, 1e-70) made every comparison
    with a reference below 1e-70 vacuous: the 2e-90 reference below passed at dps = 20 even as 0)."""
    with mpmath.workdps(80):
        a, b = mpmath.mpf(a), mpmath.mpf(b)
        return abs(a - b) / abs(b) if b else abs(a)


def test_moments_and_shift_scale_at_40_digits():
    with mpmath.workdps(50):
        assert rel(gaussian_expectation(lambda x: x**4, dps=40).value, 3) < 1e-39
        # x ~ N(1, 2^2): E[x^2] = 1 + 4
        assert rel(gaussian_expectation(lambda x: x**2, dps=40, mean=1, std=2).value, 5) < 1e-39
        # E[exp(a z)] = exp(a^2/2) (log-normal mean), a = 3/2
        a = mpmath.mpf(3) / 2
        assert rel(gaussian_expectation(lambda x: mpmath.exp(a * x), dps=40).value, mpmath.exp(a * a / 2)) < 1e-39


def test_breakpoints_give_full_precision_for_kinks():
    r = gaussian_expectation(lambda x: max(x, 0) ** 2, dps=40, breakpoints=[0])
    assert isinstance(r, GaussianIntegral) and r.dps == 40
    assert rel(r.value, mpmath.mpf(1) / 2) < 1e-39
    assert r.error < mpmath.mpf(10) ** -40
    assert "GaussianIntegral(value=0.5" in repr(r)
    # kink away from the mean: E[relu(x - 1/3)] = phi(1/3) - (1/3) (1 - Phi(1/3)), exact
    with mpmath.workdps(60):
        b = mpmath.mpf(1) / 3
        exact = mpmath.npdf(b) - b * (1 - mpmath.ncdf(b))
    r = gaussian_expectation(lambda x: max(x - b, 0), dps=40, breakpoints=[b])
    assert rel(r.value, exact) < 1e-38


def test_divergent_and_invalid_integrands_raise():
    with pytest.raises(DivergentIntegralError, match="not square-integrable|diverges"):
        gaussian_expectation(lambda x: mpmath.exp(x * x))
    with pytest.raises(DivergentIntegralError, match="singularity"):
        gaussian_expectation(lambda x: 1 / x**2, breakpoints=[0])
    with pytest.raises(NonRealExpressionError, match="not real"):
        gaussian_expectation(lambda x: mpmath.sqrt(x), breakpoints=[0])
    with pytest.raises(DomainError):
        gaussian_expectation(lambda x: x, std=0)
    with pytest.raises(DomainError, match=r"\[-1, 1\]"):
        bivariate_gaussian_expectation(lambda x: x, lambda x: x, 1.5)
    with pytest.raises(DomainError):
        bivariate_gaussian_expectation_float64(np.tanh, np.tanh, np.array([0.2, -1.01]))
    with pytest.raises(DivergentIntegralError):
        with np.errstate(over="ignore"):
            gaussian_expectation_float64(lambda x: np.exp(x**2 * 10))


def test_bivariate_mpmath_against_arc_cosine_kernel():
    # ReLU kernel (arc-cosine), q1 = 1, q2 = 4, c = -0.9: kinks move with the outer variable
    c = mpmath.mpf(-9) / 10
    r = bivariate_gaussian_expectation(lambda x: max(x, 0), lambda x: max(x, 0), c, q1=1, q2=4, dps=15,
                                       breakpoints=[0])
    with mpmath.workdps(30):
        exact = 2 * (mpmath.sqrt(1 - c * c) + (mpmath.pi - mpmath.acos(c)) * c) / (2 * mpmath.pi)
    assert rel(r.value, exact) < 1e-14


@pytest.mark.parametrize("c", [-0.9, 0.0, 0.5, 0.99, 0.999999, 1.0])
def test_bivariate_float64_against_sheppard(c):
    # P(u > 0, v > 0) = 1/4 + asin(c) / (2 pi) for any variances
    h = lambda x: (x > 0).astype(float)  # noqa: E731
    got = bivariate_gaussian_expectation_float64(h, h, c, q1=0.5, q2=3.0, breakpoints=[0])
    assert abs(got - (0.25 + math.asin(c) / (2 * math.pi))) < 1e-13


def test_float64_against_mpmath_and_gauss_hermite_exactness():
    ref = gaussian_expectation(lambda x: mpmath.tanh(x) ** 2, dps=30, std=2).value
    assert abs(gaussian_expectation_float64(lambda x: np.tanh(x) ** 2, std=2.0) / float(ref) - 1) < 1e-14
    # Gauss-Hermite with n nodes is exact for degree < 2n: E[z^6] = 15
    assert abs(gaussian_expectation_float64(lambda x: x**6, order=4) - 15) < 1e-12


def test_hermite_coefficients_exact_for_sin_and_relu():
    # E[sin(z) He_k(z)] = E[sin^(k)(z)] = sin(k pi/2) e^{-1/2}  (Gaussian integration by parts)
    a = hermite_coefficients(mpmath.sin, 60, dps=40)
    with mpmath.workdps(60):
        worst = max(abs(a[k] - mpmath.sin(k * mpmath.pi / 2) * mpmath.exp(-mpmath.mpf(1) / 2)
                        / mpmath.sqrt(mpmath.factorial(k))) for k in range(60))
    assert worst < mpmath.mpf(10) ** -39
    # relu: a_0 = 1/sqrt(2 pi), a_1 = 1/2, a_2 = 1/sqrt(4 pi), a_3 = 0
    r = hermite_coefficients(lambda x: max(x, 0), 4, dps=40, breakpoints=[0])
    with mpmath.workdps(60):
        exact = [1 / mpmath.sqrt(2 * mpmath.pi), mpmath.mpf(1) / 2, 1 / mpmath.sqrt(4 * mpmath.pi), 0]
        assert max(abs(u - v) for u, v in zip(r, exact)) < mpmath.mpf(10) ** -39


@pytest.mark.parametrize("breakpoints", [(), (-1, 1), (mpmath.mpf("0.37"),)])
def test_hermite_coefficients_of_a_function_with_even_and_odd_parts_on_folded_and_general_rules(breakpoints):
    """A rule of exact mirror pairs (no breakpoints, or symmetric ones) is folded to z >= 0 with
    h_k(-z) = (-1)^k h_k(z); a one-sided breakpoint keeps the general sum.  Both give the closed form:
    E[exp(t z) He_k(z)] = t^k exp(t^2/2) and E[sin(z) He_k(z)] = sin(k pi/2) exp(-1/2)."""
    from numeric.gauss import _gl_panel_rule, _mirror_pairs

    with mpmath.workdps(40):
        nodes, weights = _gl_panel_rule([mpmath.mpf(b) for b in breakpoints], mpmath.mpf(12), 48, 4)
    assert (_mirror_pairs(nodes, weights) is None) == (len(breakpoints) == 1)
    a = hermite_coefficients(lambda z: mpmath.exp(z / 2) + mpmath.sin(z), 60, dps=40, breakpoints=breakpoints)
    with mpmath.workdps(60):
        half = mpmath.mpf(1) / 2
        worst = max(abs(a[k] - (half**k * mpmath.exp(half**3) + mpmath.sin(k * mpmath.pi / 2) * mpmath.exp(-half))
                        / mpmath.sqrt(mpmath.factorial(k))) for k in range(60))
    assert worst < mpmath.mpf(10) ** -39


def _spy_on_quadrature_methods(monkeypatch) -> list:
    """The method of every mp.quad call the gauss module makes, in order."""
    import numeric.gauss as gauss_module

    used, real = [], gauss_module.mp.quad

    def spy(integrand, points, **kwargs):
        used.append(kwargs.get("method", "tanh-sinh"))
        return real(integrand, points, **kwargs)

    monkeypatch.setattr(gauss_module.mp, "quad", spy)
    return used


def test_bivariate_mpmath_integrates_smooth_integrands_on_gauss_legendre_panels(monkeypatch):
    """The 2-D rule ran tanh-sinh on [-cut, cut] at both levels, which clusters nodes at the ends where the
    density is negligible: erf's C(0.99) at 40 digits never finished.  Smooth integrands now go on
    Gauss-Legendre panels and never reach tanh-sinh.  Reference: E[sin u sin v] = exp(-(q1 + q2)/2) sinh(c sqrt(q1 q2))."""
    used = _spy_on_quadrature_methods(monkeypatch)
    q1, q2, c = mpmath.mpf(1) / 2, mpmath.mpf(2), mpmath.mpf(9) / 10
    r = bivariate_gaussian_expectation(mpmath.sin, mpmath.sin, c, q1=q1, q2=q2, dps=15)
    with mpmath.workdps(40):
        exact = mpmath.exp(-(q1 + q2) / 2) * mpmath.sinh(c * mpmath.sqrt(q1 * q2))
    assert rel(r.value, exact) < 1e-14
    assert set(used) == {"gauss-legendre"}, sorted(set(used))


@pytest.mark.parametrize("singular_side", ["outer", "inner"])
def test_bivariate_mpmath_falls_back_to_tanh_sinh_at_a_singularity(monkeypatch, singular_side):
    """At an integrable singularity on a panel end (|x|^(-1/4) at its break-point 0) Gauss-Legendre converges
    only algebraically: its result is not kept, tanh-sinh decides, and once an inner integral has needed it the
    later inner integrals go to tanh-sinh directly.  Reference, with m(a) = E|z|^a = 2^(a/2) Gamma((a+1)/2)/sqrt(pi)
    and v = c u + s w: E[|u|^p v^2] = c^2 m(p + 2) + (1 - c^2) m(p), the same for E[u^2 |v|^p]."""
    used = _spy_on_quadrature_methods(monkeypatch)
    p, c = mpmath.mpf(-1) / 4, mpmath.mpf(3) / 5
    singular, square = (lambda t: abs(t) ** p), (lambda t: t * t)
    if singular_side == "outer":
        r = bivariate_gaussian_expectation(singular, square, c, dps=6, breakpoints=[0], breakpoints_g=[])
    else:
        r = bivariate_gaussian_expectation(square, singular, c, dps=6, breakpoints=[], breakpoints_g=[0])
    with mpmath.workdps(30):
        moment = lambda a: 2 ** (a / 2) * mpmath.gamma((a + 1) / 2) / mpmath.sqrt(mpmath.pi)  # noqa: E731
        exact = c**2 * moment(p + 2) + (1 - c**2) * moment(p)
    assert rel(r.value, exact) < 1e-6
    assert "tanh-sinh" in used
    if singular_side == "inner":
        # inner integrals whose singular point lies beyond the cut are smooth and pass on Gauss-Legendre;
        # after the first that needs tanh-sinh, no inner integral tries Gauss-Legendre again
        first = used.index("tanh-sinh")
        assert "gauss-legendre" not in used[first:] and len(used) - first > 100, (first, len(used))


def _orthant_probability(a, c, dps=60):
    """P(z1 > a, c z1 + s z2 > a), s = sqrt(1 - c^2), for large a: int_a^inf p(z) Phi((c z - a) / s) dz with
    z = a + t and p(a) taken out, by mpmath.quad split near t = 0, where the integrand falls like exp(-a t)."""
    with mpmath.workdps(dps):
        a, c = mpmath.mpf(a), mpmath.mpf(c)
        s = mpmath.sqrt((1 - c) * (1 + c))
        h = lambda t: mpmath.exp(-a * t - t * t / 2) * mpmath.ncdf((c * (a + t) - a) / s)  # noqa: E731
        return mpmath.npdf(a) * h(0) * mpmath.quad(lambda t: h(t) / h(0), [0, 1 / a, 10 / a, 1, 10, mpmath.inf])


def test_bivariate_mpmath_reaches_past_its_range_to_the_break_points():
    """The 2-D rule integrates over |z1|, |z2| <= R + 3 (13.7 at 15 digits).  The step H(x - 50) is zero there and
    E[H(u - 50) H(v - 50)] = 1.9e-575 at c = 0.9 came out exactly 0; H(x - 13) starts inside but lives mostly past
    the cut, and E[H(u - 13) H(v - 13)] at c = 0.5 was 0.1% off.  Where f or g puts more than 10^-(dps + 10) of its
    second moment past the cut, both ranges now reach past the break-points, and the inner integrals keep their
    own digits.  Reference: the orthant probability as a 1-D integral of the normal cdf, at 60 digits."""
    for a, c in ((50, "0.9"), (13, "0.5")):
        with mpmath.workdps(25):
            step = lambda t, a=mpmath.mpf(a): mpmath.mpf(1) if t > a else mpmath.mpf(0)  # noqa: E731
            got = bivariate_gaussian_expectation(step, step, mpmath.mpf(c), dps=15, breakpoints=[a]).value
        assert rel(got, _orthant_probability(a, c)) < 1e-14, (a, c)


def test_bivariate_mpmath_integrates_an_integrand_whose_square_peaks_beyond_the_fixed_range():
    """exp(x) at q = 20: f^2 times the density peaks at z = 2 sqrt(q) = 8.9 and is not negligible at the
    fixed range's 2R (18 at 6 digits): the tail test was absolute there, and E[exp(u) v] was refused as
    divergent.  The tail test is now relative, as the 1-D rule's, and the range reaches past the peak.
    Reference: E[exp(u) v] = Cov(u, v) E[exp(u)] = c q exp(q/2) (Stein's lemma)."""
    q, c = 20, mpmath.mpf(1) / 2
    r = bivariate_gaussian_expectation(mpmath.exp, lambda v: v, c, q1=q, q2=q, dps=6)
    assert rel(r.value, c * q * mpmath.exp(mpmath.mpf(q) / 2)) < 1e-6


@pytest.mark.slow   # ~4 min of 2-D quadrature
def test_bivariate_mpmath_integrates_exp_times_exp_whose_bulk_is_past_every_fixed_range():
    """E[exp(u) exp(v)] = exp(q (1 + c)) at q = 200: the squared integrands peak at z = 28, the product
    (c = 0.9) at 27.  A range cut where f^2 is negligible relative to its peak, but before the peak, gives a
    value 9x too small at c = 0 with a tiny error estimate: the range must reach past the peak."""
    for c in (mpmath.mpf(0), mpmath.mpf(9) / 10):
        r = bivariate_gaussian_expectation(mpmath.exp, mpmath.exp, c, q1=200, q2=200, dps=15)
        assert rel(r.value, mpmath.exp(200 * (1 + c))) < 1e-13


def test_mpmath_quadrature_survives_two_levels_that_differ_by_exactly_one(monkeypatch):
    """mp.quad's error estimate divides by log10 of the difference of two levels, 0 when that difference is
    exactly 1 (ZeroDivisionError, met in E[exp(u) exp(v)] at q = 50, c = 1/2): the integral is then taken of
    half the integrand, an exact scaling.  Simulated by a first call that raises; reference E[u^2] = 1."""
    import numeric.gauss as gauss

    original, calls = gauss.mp.quad, []

    def quad(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ZeroDivisionError
        return original(*args, **kwargs)

    monkeypatch.setattr(gauss.mp, "quad", quad)
    r = gaussian_expectation(lambda z: z * z, dps=20)
    assert rel(r.value, 1) < 1e-19 and len(calls) > 1


def _chirp_second_moment(a, dps):
    """E[sin(a z^2)^2] = (1 - Re E[exp(2ia z^2)]) / 2 with E[exp(it z^2)] = (1 - 2it)^(-1/2), z ~ N(0, 1)."""
    with mpmath.workdps(dps + 20):
        return (1 - mpmath.re((1 - 4j * mpmath.mpf(a)) ** (-mpmath.mpf(1) / 2))) / 2


@pytest.mark.parametrize("a, dps", [(16, 20), (100, 20), (10, 30)])
def test_gaussian_expectation_of_a_chirp_has_its_digits(a, dps):
    """sin(a z^2)^2 oscillates ever faster (a = 16: 40 periods per unit of z at z = 8).  At a = 16 and 100 the
    rule refused ('did not converge ... kink that is not among the break-points'); at a = 10 and 30 digits it
    returned 17 correct digits with an error estimate of 2e-25: tanh-sinh on [0, inf) crowds the periods into
    the interval's end, where two of its levels agreed while both were wrong.  Now the range is finite panels,
    and what one rule does not resolve is bisected.  Reference: the closed form above."""
    r = gaussian_expectation(lambda z: mpmath.sin(a * z * z) ** 2, dps=dps)
    assert rel(r.value, _chirp_second_moment(a, dps)) < mpmath.mpf(10) ** (1 - dps)


def test_gaussian_expectation_bisects_a_kink_that_is_not_a_break_point():
    """Without the kink among the break-points the rule converges only algebraically, and its error estimate is
    the error itself: E|z - 0.3| came back 6e-8 off at dps = 15 (accepted against half the digits), and refused
    at dps = 30.  Bisection now homes in on the kink.  References: E|z - a| = 2 pdf(a) + a (2 Phi(a) - 1),
    E[max(z - b, 0)^2] = (1 + b^2) Phi(-b) - b pdf(b)."""
    a, b = mpmath.mpf(3) / 10, mpmath.mpf(1) / 3
    for dps in (15, 30):
        with mpmath.workdps(dps + 20):
            exact_abs = 2 * mpmath.npdf(a) + a * (2 * mpmath.ncdf(a) - 1)
            exact_relu = (1 + b * b) * mpmath.ncdf(-b) - b * mpmath.npdf(b)
        got = gaussian_expectation(lambda z: abs(z - a), dps=dps).value
        assert rel(got, exact_abs) < mpmath.mpf(10) ** (1 - dps)
        got = gaussian_expectation(lambda z: max(z - b, 0) ** 2, dps=dps).value
        assert rel(got, exact_relu) < mpmath.mpf(10) ** (1 - dps)


def test_gaussian_expectation_reaches_past_its_range_to_the_break_points():
    """The rule integrates over |z| <= cut (27 at 30 digits), where the density is negligible against the
    integrand's bulk; x^2 on |x| > 1/2 (hardshrink squared) at std = 2^-7 is zero there and lives past |z| = 64,
    so its mean, 1.6e-892, came out exactly 0.  Break-points beyond the cut now extend the range, one side
    alone too, and where f lives inside (a clipped x at std = 2^-10: kinks at |z| = 1024) nothing changes.
    References: E[x^2; x > a s] = s^2 (a p(a) + Phi(-a)), p the normal density; E[min(x^2, 1)] = s^2 to 1e-200000."""
    half = mpmath.mpf(1) / 2
    for dps in (15, 30):
        std = mpmath.mpf(2) ** -7
        with mpmath.workdps(dps + 20):
            a = half / std
            one_side = std ** 2 * (a * mpmath.npdf(a) + mpmath.ncdf(-a))
            two_sides = 2 * one_side
        both = gaussian_expectation(lambda t: t * t if abs(t) > half else 0, dps=dps, breakpoints=[-half, half], std=std)
        assert rel(both.value, two_sides) < mpmath.mpf(10) ** (1 - dps)
        right = gaussian_expectation(lambda t: t * t if t > half else 0, dps=dps, breakpoints=[half], std=std)
        assert rel(right.value, one_side) < mpmath.mpf(10) ** (1 - dps)
        std = mpmath.mpf(2) ** -10
        clipped = gaussian_expectation(lambda t: min(t * t, 1), dps=dps, breakpoints=[-1, 1], std=std)
        assert rel(clipped.value, std ** 2) < mpmath.mpf(10) ** (1 - dps)


def test_gaussian_expectation_refuses_a_singularity_that_bisection_cannot_integrate():
    """1/|z - 0.3| is not integrable: bisection towards 0.3 does not shrink the error, so it stops and the rule
    refuses, naming the causes, rather than return a number."""
    with pytest.raises(DivergentIntegralError, match="did not converge.*bisected.*break-points"):
        gaussian_expectation(lambda z: 1 / abs(z - mpmath.mpf(3) / 10), dps=15)


@pytest.mark.slow
def test_bivariate_mpmath_covariance_at_20_digits():
    # E[u v] = c sqrt(q1 q2): exact for a polynomial integrand (slow: ~20 s of 2-D quadrature)
    r = bivariate_gaussian_expectation(lambda u: u, lambda v: v, mpmath.mpf(3) / 10, q1=2, q2=8, dps=20)
    assert rel(r.value, mpmath.mpf(12) / 10) < 1e-19


def test_bivariate_degenerate_correlations_reduce_to_one_dimension():
    # c = +-1: v = +-sqrt(q2/q1) u, so E[tanh(u) tanh(v)] = +-E[tanh(u)^2] for q1 = q2 (tanh is odd)
    with mpmath.workdps(40):
        std = mpmath.sqrt(2)
    ref = gaussian_expectation(lambda x: mpmath.tanh(x) ** 2, dps=30, std=std).value
    plus = bivariate_gaussian_expectation(mpmath.tanh, mpmath.tanh, 1, q1=2, q2=2, dps=30).value
    minus = bivariate_gaussian_expectation(mpmath.tanh, mpmath.tanh, -1, q1=2, q2=2, dps=30).value
    with mpmath.workdps(40):
        assert rel(plus, ref) < 1e-29 and rel(minus, -ref) < 1e-29


@pytest.mark.parametrize("std", [1e2, 1e4, 1e6])
def test_float64_resolves_narrow_feature_at_large_std(std):
    """sech(x)^4 under N(0, std^2) lives within |z| < 20/std: the float64 rule must resolve it
    (a unit-panel rule gave 100% error at std = 1e4); reference: mpmath at 30 digits."""
    with np.errstate(over="ignore"):
        v = gaussian_expectation_float64(lambda t: 1 / np.cosh(t) ** 4, std=std)
    ref = gaussian_expectation(lambda t: mpmath.sech(t) ** 4, std=std, dps=30).value
    assert rel(v, ref) < 1e-12


def test_bivariate_float64_at_large_variance_against_williams():
    """E[erf(u) erf(v)] = 2/pi asin(2 Cov / sqrt((1 + 2 q1)(1 + 2 q2))) (Williams 1997)."""
    from math import erf
    verf = np.vectorize(erf, otypes=[float])
    for q1, q2, c in ((1e4, 1e4, 0.3), (1e8, 1e6, -0.6), (1e6, 1e6, 0.999)):
        got = bivariate_gaussian_expectation_float64(verf, verf, c, q1=q1, q2=q2)
        with mpmath.workdps(40):
            ref = 2 / mpmath.pi * mpmath.asin(2 * c * mpmath.sqrt(q1 * q2) / mpmath.sqrt((1 + 2 * q1) * (1 + 2 * q2)))
        assert rel(got, ref) < 1e-12, (q1, q2, c)


def test_float64_rule_resolves_integrable_singularities_given_as_singular_points():
    """Panels split and graded towards the singular point: log and |x|^-a (a < 1) singularities
    to float64 resolution.  E[log^2|z|] = (euler + log 2)^2/4 + pi^2/8 and
    E|z|^-a = 2^(-a/2) Gamma((1-a)/2)/sqrt(pi)."""
    with mpmath.workdps(30):
        log_square = (mpmath.euler + mpmath.log(2)) ** 2 / 4 + mpmath.pi**2 / 8
        power = mpmath.mpf(2) ** -0.2 * mpmath.gamma(0.3) / mpmath.sqrt(mpmath.pi)
        shifted = mpmath.quad(lambda t: mpmath.log(abs(1 + 3 * t - 5)) ** 2 * mpmath.npdf(t),
                              [-mpmath.inf, mpmath.mpf(4) / 3, mpmath.inf])
    value = gaussian_expectation_float64(lambda x: np.log(np.abs(x)) ** 2, singular_points=[0.0])
    assert abs(value - float(log_square)) <= 1e-13 * float(log_square)
    value = gaussian_expectation_float64(lambda x: np.abs(x) ** -0.4, singular_points=[0.0])
    assert abs(value - float(power)) <= 1e-13 * float(power)
    value = gaussian_expectation_float64(lambda x: np.log(np.abs(x - 5)) ** 2, mean=1.0, std=3.0,
                                         singular_points=[5.0])
    assert abs(value - float(shifted)) <= 1e-13 * float(shifted)


def test_float64_rule_refuses_to_return_an_unconverged_value():
    """Without the singular point the 16/32/64-node rules disagree by 4e-4 of E|f|: the value used to
    come back anyway, 1.5e-3 off."""
    with pytest.raises(DivergentIntegralError, match="did not converge.*mpmath"):
        gaussian_expectation_float64(lambda x: np.log(np.abs(x)) ** 2)


def test_float64_rule_accepts_means_that_cancel_to_zero():
    """Convergence is judged against E|f|: an odd integrand's mean is 0 to rounding, not 'unconverged'."""
    for f in (lambda x: x**3, np.tanh, lambda x: np.sin(x) * np.exp(-x * x)):
        assert abs(gaussian_expectation_float64(f)) < 1e-15


def test_float64_rule_reports_its_mass_for_callers_that_cancel():
    """with_mass=True also returns E|f|, the scale the rule's error is relative to (a caller whose f
    cancels must judge |E f| against it).  References: E|x - 1/2| for x ~ N(0, 4) is
    2 (2 phi(1/4) + (1/2) (2 Phi(1/4) - 1)), E|z^3| = 2 sqrt(2/pi), E|z^4| = 3 (Gauss-Hermite too)."""
    with mpmath.workdps(30):
        t = mpmath.mpf(1) / 4
        ref = 2 * (2 * mpmath.npdf(t) + t * (2 * mpmath.ncdf(t) - 1))
    value, mass = gaussian_expectation_float64(lambda x: x - 0.5, std=2.0, breakpoints=[0.5], with_mass=True)
    assert abs(value + 0.5) < 1e-15 and rel(mass, ref) < 1e-13
    value, mass = gaussian_expectation_float64(lambda x: x**3, with_mass=True)
    assert abs(value) < 1e-15 and rel(mass, 2 * mpmath.sqrt(2 / mpmath.pi)) < 1e-13
    value, mass = gaussian_expectation_float64(lambda x: x**4, order=8, with_mass=True)
    assert rel(value, 3) < 1e-14 and rel(mass, 3) < 1e-14


def test_float64_rule_refines_for_scales_finer_than_one_in_x():
    """sech(10 x)^4 varies on a scale 0.1 in x: unit panels (grading only for std > 1) did not
    converge and raised a misleading 'singularity or kink' error; sin(3 x + 1)^2 at std = 7
    oscillates ~70 times over the rule's range.  References: mpmath.quad split at the feature at
    30 digits, and E[sin(a x + b)^2] = (1 - cos 2b exp(-2 a^2 std^2)) / 2."""
    with np.errstate(over="ignore"):
        v = gaussian_expectation_float64(lambda t: 1 / np.cosh(10 * t) ** 4)
    with mpmath.workdps(30):
        pts = [-mpmath.inf, -1, -0.1, 0, 0.1, 1, mpmath.inf]
        ref = mpmath.quad(lambda t: mpmath.sech(10 * t) ** 4 * mpmath.npdf(t), pts)
    assert rel(v, ref) < 1e-12
    v = gaussian_expectation_float64(lambda t: np.sin(3 * t + 1) ** 2, std=7.0)
    with mpmath.workdps(30):
        ref = (1 - mpmath.cos(2) * mpmath.exp(-2 * 9 * 49)) / 2
    assert rel(v, ref) < 1e-12


def test_bivariate_float64_refines_or_refuses():
    """The 2-D rule was a fixed panel set with no convergence check: E[sin(3u+1) sin(3v+1)] at
    q = 50, c = -1 came back 8.5e-4 off, silently.  Now it refines until two rules agree, and past
    its last level raises (naming the mpmath engine) instead of returning an unconverged number."""
    f = lambda t: np.sin(3 * t + 1)  # noqa: E731
    got = bivariate_gaussian_expectation_float64(f, f, np.array([-1.0, 0.5]), q1=50, q2=50)
    with mpmath.workdps(30):
        # sin A sin B = (cos(A - B) - cos(A + B)) / 2 with A - B, A + B Gaussian
        ref = [(mpmath.exp(-9 * 100 * (1 - c) / 2) - mpmath.cos(2) * mpmath.exp(-9 * 100 * (1 + c) / 2)) / 2
               for c in (-1, 0.5)]
    assert abs(got[0] - ref[0]) < 1e-13 and abs(got[1] - ref[1]) < 1e-13
    g = lambda t: np.sin(40 * t)  # noqa: E731
    with pytest.raises(DivergentIntegralError, match="2-D rule.*did not converge.*mpmath"):
        bivariate_gaussian_expectation_float64(g, g, 0.5, q1=50, q2=50)


@pytest.mark.slow   # ~5 s: one 2-D mpmath quadrature
def test_bivariate_mpmath_keeps_the_mass_of_fast_growing_integrands():
    """E[exp(a u) exp(a v)] = exp(a^2 (1 + c)): for a = 3.5, c = 0.9 the mass sits at z1 ~ 6.7, and the
    fixed finite range R + 3 (12.6 at 10 digits) cut off ~1e-9 of it while reporting a tiny error."""
    a, c = mpmath.mpf("3.5"), mpmath.mpf("0.9")
    r = bivariate_gaussian_expectation(lambda t: mpmath.exp(a * t), lambda t: mpmath.exp(a * t), c, dps=10)
    with mpmath.workdps(30):
        exact = mpmath.exp(a * a * (1 + c))
        assert abs(r.value - exact) / exact < 1e-10


@pytest.mark.parametrize("dps", [20, 30])
def test_small_expectations_keep_their_requested_relative_digits(dps):
    # E[(x - b)_+^2] for x ~ N(0, s^2) = (s^2 + b^2) Phi(-b/s) - b s phi(b/s) (integrate by parts);
    # at s^2 = 1e-3, b = 1/2 it is 1.0e-61: mp.quad's absolute stopping test returned it 0.8% off
    b = mpmath.mpf(1) / 2
    with mpmath.workdps(dps + 20):
        s = mpmath.sqrt(mpmath.mpf("1e-3"))
        a = b / s
        ref = (s * s + b * b) * mpmath.ncdf(-a) - b * s * mpmath.npdf(a)
        r = gaussian_expectation(lambda x: max(x - b, 0) ** 2, dps=dps, std=s, breakpoints=[b])
        assert rel(r.value, ref) < mpmath.mpf(10) ** (1 - dps)
        # a tiny smooth integrand: E[exp(-a (x - m)^2)] = exp(-a m^2 / (1 + 2a)) / sqrt(1 + 2a) (completing
        # the square), a = 40, m = 3, times exp(-200)
        r2 = gaussian_expectation(lambda x: mpmath.exp(-40 * (x - 3) ** 2) * mpmath.exp(-200), dps=dps)
        ref2 = mpmath.exp(-360 / mpmath.mpf(81)) / 9 * mpmath.exp(-200)
        assert rel(r2.value, ref2) < mpmath.mpf(10) ** (1 - dps)


@pytest.mark.parametrize("call", [
    lambda: gaussian_expectation(lambda x: x * x, dps=20, mean=float("nan")),
    lambda: gaussian_expectation(lambda x: x * x, dps=20, std=float("inf")),
    lambda: gaussian_expectation_float64(lambda x: x * x, mean=float("nan")),
    lambda: gaussian_expectation_float64(lambda x: x * x, std=float("inf")),
    lambda: gaussian_expectation_float64(lambda x: x * x, order=0),
    lambda: bivariate_gaussian_expectation(lambda u: u, lambda v: v, 0.5, q1=float("inf"), dps=20),
    lambda: bivariate_gaussian_expectation_float64(lambda u: u, lambda v: v, 0.5, q2=float("inf")),
])
def test_non_finite_moments_and_empty_rules_are_domain_errors(call):
    # these reached the integrand and were reported as a divergent integral, a formula undefined at
    # x = nan, or numpy's bare "deg must be a positive integer"
    with pytest.raises(DomainError, match="finite|whole number"):
        call()


# 1e-60 (7 s) runs in the slow run: the default run covers its code (branch coverage, checked per test)
@pytest.mark.parametrize("q", ["1e-300", pytest.param("1e-60", marks=pytest.mark.slow)])
def test_bivariate_mpmath_keeps_its_digits_at_tiny_variances(q):
    """E[relu(u) relu(v)] = q (sqrt(1 - c^2) + (pi - acos c) c) / (2 pi) (arc-cosine kernel).  The inner
    rule's absolute test let inner integrals of size sqrt(q) through unrefined: at q = 1e-300 the value
    came back 1.4% off with error=1.9e-149, at q = 1e-60 the outer rule raised 'did not converge'."""
    c, q = mpmath.mpf(1) / 2, mpmath.mpf(q)
    r = bivariate_gaussian_expectation(lambda t: max(t, 0), lambda t: max(t, 0), c, q1=q, q2=q, dps=15,
                                       breakpoints=[0])
    with mpmath.workdps(40):
        exact = q * (mpmath.sqrt(1 - c * c) + (mpmath.pi - mpmath.acos(c)) * c) / (2 * mpmath.pi)
        assert rel(r.value, exact) < 1e-14


@pytest.mark.parametrize("call", [
    lambda: bivariate_gaussian_expectation_float64(np.tanh, np.tanh, 0.5, nodes_per_panel=0),
    lambda: bivariate_gaussian_expectation_float64(np.tanh, np.tanh, 0.5, nodes_per_panel=1),
    lambda: bivariate_gaussian_expectation_float64(np.tanh, np.tanh, 0.5, nodes_per_panel=2.5),
    lambda: hermite_coefficients(lambda t: t * t, 3.0),
    lambda: hermite_coefficients(lambda t: t * t, True),
    lambda: gaussian_expectation(lambda t: t * t, dps=float("nan")),
    lambda: gaussian_expectation(lambda t: t * t, dps=float("inf")),
])
def test_non_whole_counts_are_domain_errors(call):
    # they met NumPy's bare "deg must be a positive integer", range()'s TypeError or int()'s
    # ValueError/OverflowError; nodes_per_panel=2.5 was truncated to 2 and n=True gave one coefficient
    with pytest.raises(DomainError, match="nodes_per_panel=|n=|dps="):
        call()


@pytest.mark.parametrize("breakpoints", [[0], [-1, 0, 1]])
def test_integrable_power_singularity_keeps_the_requested_digits(breakpoints):
    """E|z|^-a = 2^(-a/2) Gamma((1 - a)/2) / sqrt(pi).  tanh-sinh nodes next to the break-point carry an
    absolute error of the working precision, which |z|^-1/2 turns into half the digits: at dps = 30 the
    value was 6.5e-23 off (1.1e-22 with breakpoints [-1, 0, 1], whose error estimate said 2e-44)."""
    with mpmath.workdps(60):
        a = mpmath.mpf(1) / 2
        exact = 2 ** (-a / 2) * mpmath.gamma((1 - a) / 2) / mpmath.sqrt(mpmath.pi)
    r = gaussian_expectation(lambda t: 1 / mpmath.sqrt(abs(t)), dps=30, breakpoints=breakpoints)
    assert rel(r.value, exact) < 1e-29


def test_gauss_hermite_refuses_the_options_it_cannot_use():
    """order=n ignored breakpoints, singular_points and scale: E[step(x - 0.3)] with order=20 and
    breakpoints=[0.3] came back 31% off (1 - Phi(0.3) = 0.382) without a word."""
    step = lambda t: (t > 0.3).astype(float)  # noqa: E731
    for kwargs in ({"breakpoints": [0.3]}, {"singular_points": [0.0]}, {"scale": 0.1}):
        with pytest.raises(DomainError, match="order=20 with .*order=None"):
            gaussian_expectation_float64(step, order=20, **kwargs)
    exact = 1 - float(mpmath.ncdf(0.3))
    assert abs(gaussian_expectation_float64(step, breakpoints=[0.3]) - exact) < 1e-14


@pytest.mark.parametrize("exponent", [-60, 60])
def test_hermite_coefficients_have_dps_digits_relative_to_the_function_s_size(exponent):
    # the fixed-point sum had an absolute 2^-P floor: tanh / 1e60 came back as [-2.5e-48, 0.0, ...]
    # where a_1 = 0.6057... e-60.  Linearity (a_k of s f = s a_k of f) is the reference.
    with mpmath.workdps(40):
        scale = mpmath.mpf(10) ** exponent
        plain = hermite_coefficients(mpmath.tanh, 6, dps=30)
        scaled = hermite_coefficients(lambda t: mpmath.tanh(t) * scale, 6, dps=30)
        for k in (1, 3, 5):
            assert abs(scaled[k] / scale - plain[k]) <= mpmath.mpf(10) ** -28 * abs(plain[k]), k
        for k in (0, 2, 4):  # zero for an odd function, to the rule's accuracy relative to the function's size
            assert abs(scaled[k] / scale) <= mpmath.mpf(10) ** -28, k


def test_bivariate_float64_error_scale_does_not_overflow():
    """The 2-D rule's convergence test is relative to sqrt(E f^2 E g^2), which is finite whenever the
    result is; E f^2 E g^2 itself overflowed to inf (gelu at q = 1e200: 1e200 x 1e200; here f^2 ~ 1e320
    alone), and then any pair of rules "agreed" (gelu's C map at q = 1e200 was accepted after one
    comparison)."""
    from numeric import gauss

    value, bound = gauss._bivariate_f64_once(lambda t: 1e160 * t, lambda t: 1e-100 * t, 0.5, 1.0, 1.0,
                                             [], np.array([]), 12, 0)
    assert value == pytest.approx(0.5e60, rel=1e-13)
    assert bound == pytest.approx(1e60, rel=1e-13)


def test_bivariate_mpmath_tail_test_is_relative_to_the_functions_size(monkeypatch):
    """The 2-D rule's tail tests were absolute (f^2 times the density below 10^-(dps+10) at 2R): any f or g
    that grows was refused as divergent at large variance ("the Gaussian expectation of g^2 diverges" for
    g(v) = v at q2 = 1e72, u^2 at q1 = 1e72), although E[u v] = c sqrt(q1 q2) is finite.  Measured in units
    of the function's typical size the tests accept them and still refuse a truly divergent exp(v^2).
    (The quadrature itself is stubbed: at q = 1e72 its panels graded to width 1e-36 take minutes.)"""
    import numeric.gauss as gauss_module

    monkeypatch.setattr(gauss_module, "_quad_checked", lambda *args, **kwargs: (mpmath.mpf(0), mpmath.mpf(0)))
    for q1, q2 in ((1, 1e72), (1e72, 1), (1e200, 1e300)):
        bivariate_gaussian_expectation(lambda u: u, lambda v: v, 0.3, q1=q1, q2=q2, dps=15)
        bivariate_gaussian_expectation(lambda u: u * u, lambda v: 1, 0.3, q1=q1, q2=q2, dps=15)
    with pytest.raises(DivergentIntegralError, match="g\\^2 diverges"):
        bivariate_gaussian_expectation(lambda u: u, lambda v: mpmath.exp(v * v), 0.3, q1=1, q2=1e72, dps=15)
    with pytest.raises(DivergentIntegralError, match="g\\^2 diverges"):
        bivariate_gaussian_expectation(lambda u: u, lambda v: mpmath.exp(v * v / 3), 0.3, q1=1, q2=1, dps=15)


def test_bivariate_mpmath_density_memo_is_bounded(monkeypatch):
    """The inner rule memoised exp(-z2^2/2) per node, but at c != 0 its panels move with z1 (graded towards
    g's x = 0) and every node is new: the memo grew without bound (4.4 GB for tanh x tanh at q2 = 1e60).
    With the bound at 50 entries the value is unchanged (Sheppard: E[H(u) H(v)] = 1/4 + asin(c)/(2 pi))."""
    import numeric.gauss as gauss_module

    monkeypatch.setattr(gauss_module, "_DENSITY_MEMO", 50)
    step = lambda t: mpmath.mpf(1) if t > 0 else mpmath.mpf(0)  # noqa: E731
    got = bivariate_gaussian_expectation(step, step, 0.5, dps=15, breakpoints=[0])
    assert rel(got.value, mpmath.mpf(1) / 4 + mpmath.asin(mpmath.mpf(1) / 2) / (2 * mpmath.pi)) < 1e-14


def test_hermite_coefficients_of_a_step_steeper_than_any_panel():
    """sigmoid(1e80 z) (a saturating activation at q = 1e160): f w at z ~ 1 is 2^-1.4e80, and its binary
    exponent, taken as floor(log2 |f w|) at ~100 bits, was off by ~1e50, so the fixed-point mantissa became a
    1e50-bit integer: a bare OverflowError (sigmoid's mpmath C(0.3; q = 1e100) was killed for memory, the
    exponent off by 1e20).  Reference: the step H(z), 1e-80 away: a_k = E[H(z) He_k(z)] / sqrt(k!)."""
    big = mpmath.mpf(10) ** 80
    a = hermite_coefficients(lambda z: 1 / (1 + mpmath.exp(-big * z)), 4, dps=20, breakpoints=[0])
    with mpmath.workdps(30):
        exact = [mpmath.mpf(1) / 2, 1 / mpmath.sqrt(2 * mpmath.pi), 0, -1 / mpmath.sqrt(12 * mpmath.pi)]
        assert max(abs(u - v) for u, v in zip(a, exact)) < mpmath.mpf(10) ** -20


def test_hermite_coefficients_error_bound_covers_a_narrow_bump():
    """a_k of a narrow bump are far below E|f| and carry only the rule's absolute accuracy: f(z) =
    g(sqrt(q) z), g = x exp(-x^2), q = 1e60 has a_1 ~ 1e-30 E|f| and lost ~15 of 20 digits.  with_error
    returns a bound that covers the error (reference: a_1 = sqrt(q) E[z^2 exp(-q z^2)] in closed form)."""
    q = mpmath.mpf(10) ** 60
    with mpmath.workdps(40):
        r = mpmath.sqrt(q)
        f = lambda t: r * t * mpmath.exp(-q * t * t)  # noqa: E731
        edges = [s * mpmath.mpf(2) ** -j / r for j in range(-4, 12) for s in (1, -1)]
        a, bound = hermite_coefficients(f, 2, dps=20, breakpoints=edges, with_error=True)
        assert a == hermite_coefficients(f, 2, dps=20, breakpoints=edges)
        exact = r / (2 * mpmath.sqrt(2)) * (q + mpmath.mpf(1) / 2) ** mpmath.mpf(-1.5)
        err = abs(a[1] - exact)
        assert err > mpmath.mpf(10) ** -18 * exact   # (the digits are really lost: a live test)
        assert err <= bound < mpmath.mpf(10) ** -5 * exact   # (a bound, and not a vacuous one)


def test_bivariate_float64_error_estimate_covers_a_kernel_below_the_rules_resolution():
    """E[f(u) f(v)] for f = x exp(-x^2) at q1 = q2 = 1e100, c = 0.3 is 4.3e-202 (Gaussian integral: c q / det^(3/2),
    det = (1 + 2q)^2 - 4 c^2 q^2), far below the rule's rounding (~1e-16 of E|f(u) f(v)| ~ 2e-101): the value came
    out -6e-118 with nothing to say so (at q = 1e30, tested for speed, 4.3e-92 likewise).  with_error=True returns
    an estimate that covers the error there, and is small where the rule resolves the kernel (q = 1)."""
    f = lambda t: t * np.exp(-t * t)  # noqa: E731

    def exact(c, q):
        with mpmath.workdps(60):
            c, q = mpmath.mpf(c), mpmath.mpf(q)
            return c * q / ((1 + 2 * q) ** 2 - 4 * c * c * q * q) ** mpmath.mpf(1.5)
    value, err = bivariate_gaussian_expectation_float64(f, f, 0.3, q1=1e30, q2=1e30, with_error=True)
    assert abs(value - exact(0.3, 1e30)) <= err and err > 1e3 * abs(exact(0.3, 1e30))
    values, errs = bivariate_gaussian_expectation_float64(f, f, np.array([0.3, -0.5]), with_error=True)
    for v, e, c in zip(values, errs, (0.3, -0.5)):
        assert abs(v - exact(c, 1)) <= e < 1e-14 * abs(exact(c, 1)) * 100
        assert v == bivariate_gaussian_expectation_float64(f, f, c)    # the same value as without the estimate


def test_hermite_coefficients_of_a_fast_growing_function_keep_their_digits():
    """The rule's cut Z = 2 sqrt((dps + 10) ln 10) makes |h_k| pdf <= exp(-Z^2/4) negligible only where f keeps
    its typical size: f = exp(sqrt(30) z) / e^30 (phi = exp(x) at q = 30, as the Mehler series uses it) is e^33
    times larger at the cut, and at dps = 30 a_59 came out 2.6e-16 off (max |a_k| = 0.27) while the error bound
    claimed 5e-53.  The cut now widens until the tail is negligible.  Reference: a_k = r^k e^(r^2/2) / sqrt(k!)
    for exp(r z)."""
    q = 30
    with mpmath.workdps(50):
        r, norm = mpmath.sqrt(q), mpmath.exp(q)
        a = hermite_coefficients(lambda t: mpmath.exp(r * t) / norm, 60, dps=30)
        exact = [r ** k * mpmath.exp(-mpmath.mpf(q) / 2) / mpmath.sqrt(mpmath.factorial(k)) for k in range(60)]
        assert max(abs(u - v) for u, v in zip(a, exact)) < mpmath.mpf(10) ** -30


@pytest.mark.parametrize("q", [50, 200])
def test_hermite_coefficients_of_exp_at_large_q_are_not_refused_and_keep_their_digits(q):
    """f = exp(sqrt(q) z) / e^q (phi = exp(x) at q value q, as Mehler's series uses it) is square-integrable at
    every q, but f^2 pdf peaks at z = 2 sqrt(q), beyond the tail radius: the absolute tail test refused it as
    "f^2 diverges" (q = 50 at dps = 25, so exp(x)'s C map at 15 digits), and the cut, widened up to 4 tail radii
    only, dropped the rest of the tail silently at q = 200.  Reference: a_k = q^(k/2) e^(-q/2) / sqrt(k!)."""
    with mpmath.workdps(50):
        r, norm = mpmath.sqrt(q), mpmath.exp(q)
        a = hermite_coefficients(lambda t: mpmath.exp(r * t) / norm, 40, dps=25)
        exact = [r ** k * mpmath.exp(-mpmath.mpf(q) / 2) / mpmath.sqrt(mpmath.factorial(k)) for k in range(40)]
        assert max(abs(u - v) for u, v in zip(a, exact)) < mpmath.mpf(10) ** -25 * max(exact)
    # still refused where f^2 pdf does not decay: exp(z^2/4) (f^2 pdf constant)
    with pytest.raises(DivergentIntegralError, match="diverges"):
        hermite_coefficients(lambda t: mpmath.exp(t * t / 4), 4, dps=25)


def _cos_hermite(a, n, digits):
    """Exact a_k of cos(a z): E[cos(a z) He_k(z)] = E[d^k/dz^k cos(a z)] (Gaussian integration by parts), which is
    (-1)^(k/2) a^k e^(-a^2/2) for even k and 0 for odd k; divided by sqrt(k!)."""
    with mpmath.workdps(digits):
        a = mpmath.mpf(a)
        return [(-1) ** (k // 2) * a ** k * mpmath.exp(-a * a / 2) / mpmath.sqrt(mpmath.factorial(k)) if k % 2 == 0
                else mpmath.mpf(0) for k in range(n)]


def test_hermite_coefficients_keep_their_digits_beyond_50():
    """The rule's error does not shrink with the working precision: with 24 nodes per half-unit panel at any dps,
    cos(20 z)'s a_k (k < 300, max 1.2e-4) came out 1.8e-30 off at dps = 60 (and exp(sqrt(50) z)'s a_197 8e-53 of
    max |a_k| at dps = 80).  More digits now take more nodes per panel.  Reference: a_k in closed form."""
    exact = _cos_hermite(20, 300, 100)
    a = hermite_coefficients(lambda z: mpmath.cos(20 * z), 300, dps=60)
    with mpmath.workdps(100):
        assert max(abs(u - v) for u, v in zip(a, exact)) < mpmath.mpf(10) ** -60 * max(abs(v) for v in exact)


def test_hermite_coefficients_verified_rule_bounds_its_own_error():
    """The error bound covers the fixed-point sums' rounding, not the rule's discretisation error, which for an
    oscillating f and k in the hundreds can be far larger (a Mehler sum that cancels needs a true bound).
    verify=True compares with twice the nodes per panel and returns a bound that covers the error, and
    coefficients with their dps digits.  Reference: a_k in closed form."""
    exact = _cos_hermite(20, 300, 80)
    a, bound = hermite_coefficients(lambda z: mpmath.cos(20 * z), 300, dps=40, with_error=True, verify=True)
    with mpmath.workdps(80):
        scale = max(abs(v) for v in exact)
        err = max(abs(u - v) for u, v in zip(a, exact))
        assert err <= bound and err < mpmath.mpf(10) ** -40 * scale


def test_hermite_coefficients_refine_a_rule_whose_second_moment_is_off():
    """With 24 nodes per half-unit panel cos(20 z)'s a_k (k < 300, dps = 40) came out 2e-30 off, 26 of 40 digits,
    and a chirp sin(16 z^2) (40 periods per panel at z = 8) worse: the rule's own E[f^2] (Parseval: sum a_k^2)
    now has to match an adaptive 1-D quadrature's, and the nodes per panel are doubled until it does.
    References: cos(20 z)'s a_k in closed form; for the chirp, sum a_k^2 c^k = E[f(u) f(v)] with
    E[sin(a u^2) sin(a v^2)] = (Re E[exp(ia(u^2 - v^2))] - Re E[exp(ia(u^2 + v^2))]) / 2 and
    E[exp(i z^T A z)] = prod_k (1 - 2i lambda_k)^(-1/2) over the eigenvalues of the quadratic form."""
    exact = _cos_hermite(20, 300, 80)
    plain = hermite_coefficients(lambda z: mpmath.cos(20 * z), 300, dps=40)
    with mpmath.workdps(80):
        assert max(abs(u - v) for u, v in zip(plain, exact)) < mpmath.mpf(10) ** -40 * max(abs(v) for v in exact)
    a = hermite_coefficients(lambda z: mpmath.sin(16 * z * z), 120, dps=20)
    with mpmath.workdps(40):
        c = mpmath.mpf(1) / 2

        def chirp_correlation(sign):   # E[exp(16i (z1^2 + sign z2^2))], corr(z1, z2) = c
            lower = mpmath.cholesky(mpmath.matrix([[1, c], [c, 1]]))
            form = lower.T * mpmath.matrix([[16, 0], [0, 16 * sign]]) * lower
            out = mpmath.mpc(1)
            for ev in mpmath.eig(form)[0]:
                out *= (1 - 2j * mpmath.re(ev)) ** (-mpmath.mpf(1) / 2)
            return mpmath.re(out)
        ref = (chirp_correlation(-1) - chirp_correlation(1)) / 2
        got = mpmath.fsum(v * v * c ** k for k, v in enumerate(a))
        assert abs(got - ref) < mpmath.mpf(10) ** -20


@pytest.mark.parametrize("a, var", [(1.0, 8.0), (1.0, 16.0), (2.0, 4.0), (3.0, 4.0)])
def test_float64_rules_widen_their_cut_for_exponential_growth(a, var):
    """The float64 rules integrated over a fixed |z| <= 12 (1-D) and 10 (2-D) and refused E[exp(x)] at
    q = 8 (its mass sits near z = 5.7), and the 2-D value of exp(x) at q = 4 was 1.3e-12 off (the mass of
    f^2 beyond z = 10).  They now widen the cut until the integrand has decayed.  Closed forms:
    E[exp(a x)] = exp(a^2 q / 2), E[exp(a u) exp(a v)] = exp(a^2 q (1 + c)) at q1 = q2 = q."""
    f = lambda t: np.exp(a * t)   # noqa: E731
    value = gaussian_expectation_float64(f, std=math.sqrt(var))
    assert value == pytest.approx(math.exp(a * a * var / 2), rel=1e-13)
    for c in (0.5, 0.95, -0.3):
        value = bivariate_gaussian_expectation_float64(f, f, c, q1=var, q2=var)
        assert value == pytest.approx(math.exp(a * a * var * (1 + c)), rel=1e-13), c


def test_float64_rules_still_refuse_a_divergent_or_unrepresentable_integrand():
    """The wider cut is no licence: exp(x^2/3) at q = 2 (E diverges) and exp(x) at q = 1e4 (E = exp(5000),
    beyond float64) are refused, in 1-D and 2-D."""
    with pytest.raises(DivergentIntegralError, match="diverges or is not representable"):
        gaussian_expectation_float64(lambda t: np.exp(t * t / 3), std=math.sqrt(2))
    with pytest.raises(DivergentIntegralError):
        gaussian_expectation_float64(np.exp, std=100.0)
    with pytest.raises(DivergentIntegralError, match="f\\^2"):
        bivariate_gaussian_expectation_float64(np.exp, np.exp, 0.5, q1=1e4, q2=1e4)


@pytest.mark.parametrize("a", [0.3, 0.5])
def test_float64_bivariate_rule_grades_towards_cusps(a):
    """|x|^a (0 < a < 1) is finite at 0 with an infinite slope: the float64 2-D rule's panels converged
    too slowly there (16 and 24 nodes 3e-7 apart for |x|^0.3) and it refused.  With cusps=[0] both rules
    are graded towards the cusp (the inner one towards the point that moves with the outer variable).
    Closed forms: hypergeometric kernels of |x|^a and sign(x)|x|^a, at 30 digits."""
    even = lambda t: np.abs(t) ** a             # noqa: E731
    odd = lambda t: np.sign(t) * np.abs(t) ** a  # noqa: E731
    for c in (0.05, 0.5, -0.7, 0.99):
        with mpmath.workdps(30):
            assert bivariate_gaussian_expectation_float64(even, even, c, cusps=[0.0]) == pytest.approx(
                float(power_kernel(a, c)), rel=1e-14), c
            assert bivariate_gaussian_expectation_float64(odd, odd, c, cusps=[0.0], breakpoints=[0.0]) == pytest.approx(
                float(power_kernel(a, c, odd=True)), rel=1e-14), c
    with pytest.raises(DivergentIntegralError, match="did not converge"):   # without: refused, never a guess
        bivariate_gaussian_expectation_float64(even, even, 0.5)


def test_with_removable_points_takes_limits_and_leaves_poles_undefined():
    """At a 0/0 point the value is the limit, through cancellation of the first (t/(exp(t) - 1) -> 1), second
    ((1 - cos t)/t**2 -> 1/2) and third order ((t*cosh(t) - sinh(t))/t**3 -> 1/3), to the working precision; a
    jump gets the midpoint of its one-sided limits (t/|t| -> 0), a pole nan (which the integrand check refuses);
    anywhere else the function is called as it is.  References: the Taylor series' leading terms."""
    with mpmath.workdps(30):
        zero, tolerance = mpmath.mpf(0), mpmath.mpf(10) ** -29
        for function, limit in ((lambda t: t / (mpmath.exp(t) - 1), 1),
                                (lambda t: (1 - mpmath.cos(t)) / t**2, mpmath.mpf(1) / 2),
                                (lambda t: (t * mpmath.cosh(t) - mpmath.sinh(t)) / t**3, mpmath.mpf(1) / 3)):
            assert abs(with_removable_points(function)(zero) - limit) < tolerance
        assert with_removable_points(lambda t: t / abs(t))(zero) == 0
        assert mpmath.isnan(with_removable_points(lambda t: 1 / t)(zero))
        assert mpmath.isnan(with_removable_points(lambda t: 1 / t**2)(zero))
        one = mpmath.mpf(1)
        assert with_removable_points(lambda t: t / (mpmath.exp(t) - 1))(one) == one / (mpmath.exp(one) - 1)


@pytest.mark.parametrize("a", [20.0, 30.0, 37.5])
def test_float64_expectation_reaches_a_step_past_its_cut(a):
    """E[H(x - a)] = Phi(-a): from a = 12 on the rule's [-12, 12] saw nothing and the 1-D float64 rule returned 0
    (or, for a between the cuts, an error); it now reaches past the break-point (float64 keeps ~1e-13 there: the
    density's exponent z^2/2 ~ 700 is rounded)."""
    from numeric.gauss import gaussian_expectation_float64
    got = gaussian_expectation_float64(lambda t: (t > a) * 1.0, breakpoints=[a])
    assert abs(got / float(mpmath.ncdf(-a)) - 1) < 1e-12


def test_float64_bivariate_reaches_a_step_past_its_range():
    """P(u > 11, v > 11) at c = 0.5 (3.06e-38): the 2-D rule's [-10, 10]^2 held none of it and returned 0.
    Reference: the 1-D integral of phi(z) Phi((c z - 11)/s) past 11 at 40 digits."""
    from numeric.gauss import bivariate_gaussian_expectation_float64
    c = 0.5
    step = lambda t: (np.asarray(t) > 11) * 1.0  # noqa: E731
    got = bivariate_gaussian_expectation_float64(step, step, c, breakpoints=[11.0])
    with mpmath.workdps(40):
        s = mpmath.sqrt(1 - mpmath.mpf(c) ** 2)
        scale = mpmath.npdf(11)
        exact = scale * mpmath.quad(lambda z: mpmath.npdf(z) / scale * mpmath.ncdf((c * z - 11) / s),
                                    [11 + k for k in range(20)] + [mpmath.inf])
    assert abs(got / exact - 1) < 1e-10
