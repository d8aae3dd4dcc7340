"""Gaussian expectations: mpmath quadrature at any precision, float64 rules, Hermite coefficients.

Everything in kernel shaping reduces to one- and two-dimensional Gaussian integrals
(Poole et al. 2016; Martens et al. 2021, "DKS").  This module evaluates them for plain
callables; it knows nothing about activations (``analysis.kernel`` builds on it).

Conventions
-----------
* ``z ~ N(0, 1)``; ``E[f(mean + std*z)] = int f(mean + std*z) exp(-z^2/2) / sqrt(2 pi) dz``.
* Break-points are always given in the *x* variable (``x = mean + std*z``), i.e. where ``f``
  has its kinks or jumps; they become split points of the quadrature.
* Hermite polynomials are the probabilists' ``He_n`` (``He_0 = 1, He_1 = z, He_2 = z^2 - 1``),
  normalised: ``h_n = He_n / sqrt(n!)`` so that ``E[h_m(z) h_n(z)] = delta_mn``.

High-precision results are :class:`GaussianIntegral` values (an ``mpf`` rounded to ``dps``
digits, an error estimate, and ``dps``).  float64 results are plain floats.

>>> import mpmath
>>> r = gaussian_expectation(lambda x: x**2, dps=30)
>>> mpmath.nstr(r.value, 10)
'1.0'
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable, Sequence

import mpmath
import numpy as np

from symact.errors import (DivergentIntegralError, DomainError, NonRealExpressionError, is_integer_valued,
                           is_whole_number)

__all__ = [
    "GaussianIntegral",
    "gaussian_expectation",
    "gaussian_expectation_float64",
    "bivariate_gaussian_expectation",
    "bivariate_gaussian_expectation_float64",
    "hermite_coefficients",
    "FLOAT64_RELATIVE_TOLERANCE",
]

mp = mpmath.mp

#: Relative accuracy the float64 rules aim for (checked against the mpmath engine in the tests
#: at 1e-12 relative; typically they reach a few ulps).
FLOAT64_RELATIVE_TOLERANCE = 1e-13

_GUARD_DIGITS = 10


@dataclass(frozen=True)
class GaussianIntegral:
    """A high-precision Gaussian expectation.

    ``value`` is rounded to ``dps`` significant digits; ``error`` is the quadrature's own
    estimate of the absolute error (mpmath's difference between successive levels, summed
    over sub-intervals), usually far below ``10**-dps``.
    """

    value: mpmath.mpf
    error: mpmath.mpf
    dps: int

    def __repr__(self) -> str:
        shown = min(self.dps, 20)
        return (f"GaussianIntegral(value={mpmath.nstr(self.value, shown)}, "
                f"error={mpmath.nstr(self.error, 3)}, dps={self.dps})")

    def __float__(self) -> float:
        return float(self.value)


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------

def _real(y, where) -> mpmath.mpf:
    """Convert a function value to a real mpf, refusing complex/nan/inf values loudly.

    ``where`` is the abscissa (formatted only when an error is raised: this runs per node).
    """
    if type(y) is not mpmath.mpf and not isinstance(y, (mpmath.mpc, complex)):
        try:
            y = mpmath.mpf(y)
        except (TypeError, ValueError) as exc:  # e.g. a SymPy object that did not lambdify
            raise NonRealExpressionError(
                f"the integrand returned {y!r} at x = {mpmath.nstr(where, 8)}, which is not a real "
                "number; lambdify the expression with modules='mpmath' first.") from exc
    if type(y) is mpmath.mpf and mpmath.isfinite(y):
        return y
    loc = f"x = {mpmath.nstr(where, 8)}"
    if isinstance(y, (mpmath.mpc, complex)):
        y = mpmath.mpc(y)
        if y.imag != 0 and abs(y.imag) > mpmath.eps * max(1, abs(y.real)) * 2**20:
            raise NonRealExpressionError(
                f"the integrand is not real at {loc} (value {mpmath.nstr(y, 8)}); "
                "the activation takes complex values for some real inputs. Restrict it to a "
                "real-valued formula (e.g. use Abs, or Max(0, x) inside sqrt/log).")
        return _real(y.real, where)
    if mpmath.isnan(y):
        raise NonRealExpressionError(
            f"the integrand is undefined (nan) at {loc}; check the formula's domain.")
    raise DivergentIntegralError(
        f"the integrand is infinite at {loc}; the Gaussian expectation diverges. "
        "Use an activation that is finite on the real line.")


def with_removable_points(f: Callable) -> Callable:
    """``f`` (an mpmath function of one real variable) that returns its limit where it is 0/0 at a point.

    A lambdified formula raises ZeroDivisionError, or returns nan, exactly at a removable
    singularity: x/(exp(x) - 1) and x*coth(x) at 0 (coth is printed as a quotient of
    exponentials).  One quadrature node there made every kernel map of those activations raise a
    bare ZeroDivisionError.  There the value is :func:`limit_at` (at a jump the midpoint, as
    Heaviside(0) = 1/2, which no integral sees; at a pole nan, which the integrand check refuses).

    >>> import mpmath
    >>> g = with_removable_points(lambda t: t / (mpmath.exp(t) - 1))
    >>> mpmath.nstr(g(mpmath.mpf(0)), 20), mpmath.nstr(g(mpmath.mpf(1)), 10)
    ('1.0', '0.5819767069')
    """
    def value(t):
        try:
            y = f(t)
        except ZeroDivisionError:
            y = mpmath.nan
        if isinstance(y, mpmath.mpf) and mpmath.isnan(y):
            return limit_at(f, t)
        return y

    return value


def limit_at(f: Callable, t, order: int | None = None) -> mpmath.mpf:
    """The limit of ``f`` at a point ``t`` where it is 0/0: the mean of f(t -+ h), h = 10^-(dps + 5), each
    evaluated with order*(dps + 5) + 10 more digits (what a 0/0 of that order cancels at distance h), ``order``
    1 and then 3 when not given.  A side counts when f(t + 2h) agrees with f(t + h) to the working precision
    (at a jump the mean is the midpoint); nan where a side has no finite limit (a pole)."""
    digits = mpmath.mp.dps
    h = mpmath.mpf(10) ** (-(digits + 5))
    tolerance = mpmath.mpf(10) ** (-digits)
    for k in ((1, 3) if order is None else (order,)):
        sides = []
        with mpmath.workdps(digits + k * (digits + 5) + 10):
            for sign in (-1, 1):
                try:
                    near, nearer = f(t + 2 * sign * h), f(t + sign * h)
                except ZeroDivisionError:
                    return mpmath.nan
                if not (isinstance(near, mpmath.mpf) and isinstance(nearer, mpmath.mpf)
                        and mpmath.isfinite(near) and mpmath.isfinite(nearer)):
                    return mpmath.nan
                if abs(near - nearer) > tolerance * max(1, abs(nearer)):
                    break
                sides.append(nearer)
        if len(sides) == 2:
            return +((sides[0] + sides[1]) / 2)
    return mpmath.nan


def _tail_radius(dps: int) -> mpmath.mpf:
    """|z| beyond which exp(-z^2/2) < 10^-(dps+guard): where a convergent integrand must be tiny."""
    return mpmath.sqrt(2 * (dps + _GUARD_DIGITS) * mpmath.log(10))


def _check_tail(f: Callable, mean, std, dps: int, what: str = "the integrand", relative: bool = False):
    """Raise DivergentIntegralError when |f(mean + std z)| exp(-z^2/2) does not decay.

    A convergent Gaussian expectation of a function of at most exp(a x^2) growth with
    a < 1/(2 std^2) has an integrand decaying like a Gaussian; we evaluate it at two radii
    well inside the region that matters numerically (R, 2R) and require it to shrink and to be
    negligible at 2R.  exp(x^2/2)*std=1 (integrand constant) and faster growth fail this test.
    ``relative`` (for rules that integrate to infinity): negligible relative to the largest
    integrand seen when that exceeds 1, at the first of 2R, 4R, 8R where it shrinks, so an
    integrand whose bulk lies beyond R passes; the finite-range rules keep the absolute test at
    2R, which bounds what their cut drops.

    Returns the radius (in z) beyond which the integrand is negligible on both sides.
    """
    r = _tail_radius(dps)
    negligible_beyond = 2 * r
    # relative (rules to infinity): an integrand whose bulk lies beyond R (exp(x/2) at q = 200
    # peaks at z = sqrt(q) = 14 > R = 12.7) decays further out, so look out to 8R for the decay
    radii = [r * 2 ** k for k in range(4 if relative else 2)]
    for sign in (1, -1):
        g = []
        for z in radii:
            try:
                y = abs(_real(f(mean + std * sign * z), mean + std * sign * z))
            except DivergentIntegralError:
                y = mpmath.inf
            g.append(y * mpmath.exp(-z * z / 2) if y != mpmath.inf else mpmath.inf)
        decayed = False
        for k in range(1, len(radii)):
            # relative: negligible *relative to the largest integrand seen* (absolutely when that is below
            # 1): exp(x/2) at q = 100 (E = e^50, integrand 1e20 at R, 1e-30 at 2R) is convergent and was
            # refused at 15 digits by the absolute 10^-(dps+guard)
            size = max([1] + [v for v in g[:k] if v != mpmath.inf]) if relative else 1
            if g[k] <= g[k - 1] and g[k] < mpmath.mpf(10) ** (-(dps + _GUARD_DIGITS)) * size:
                decayed = True
                negligible_beyond = max(negligible_beyond, radii[k])
                break
        if not decayed:
            r = radii[-2]
            g = g[-2:]
            var = std * std
            raise DivergentIntegralError(
                f"the Gaussian expectation of {what} diverges: |f(x)| grows like exp(x^2/(2 var)) or "
                f"faster, var = {mpmath.nstr(var, 6)} the variance (|f| * density at z = "
                f"{mpmath.nstr(sign * 2 * r, 4)} is {mpmath.nstr(g[1], 3)}, at z = {mpmath.nstr(sign * r, 4)} "
                f"it is {mpmath.nstr(g[0], 3)}). An integrand must grow more slowly than "
                f"exp(x^2/(2 var)); for a Q or C map at q value q (f = phi^2, var = q) an activation "
                "growing like exp(x^2/(4 q)) or faster is not square-integrable under N(0, q): use a "
                "smaller q, or an activation that grows more slowly.")
    return negligible_beyond


def _check_singularities(f: Callable, breakpoints: Iterable, dps: int, what: str = "the integrand"):
    """Raise DivergentIntegralError at a non-integrable singularity at a break-point.

    Near an integrable singularity ``|f(b + d)| d -> 0`` as ``d -> 0``; for ``1/|x - b|`` or
    worse it does not.  Compare ``d = 10^-(dps/3)`` with ``d = 10^-(2 dps/3)`` on both sides.

    Returns the largest growth exponent ``a`` seen (``|f(b + d)| ~ d^-a``, 0 where ``f`` stays bounded).
    """
    d1 = mpmath.mpf(10) ** (-(dps // 3))
    d2 = d1 * d1
    exponent = mpmath.mpf(0)
    for b in breakpoints:
        b = mpmath.mpf(b)
        for sign in (1, -1):
            try:
                g1 = abs(_real(f(b + sign * d1), b + sign * d1)) * d1
                g2 = abs(_real(f(b + sign * d2), b + sign * d2)) * d2
            except DivergentIntegralError:
                g1, g2 = mpmath.mpf(1), mpmath.inf
            if g2 > g1 / 2 and g2 > mpmath.mpf(10) ** (-dps):
                raise DivergentIntegralError(
                    f"{what} has a non-integrable singularity at x = {mpmath.nstr(b, 10)} (it grows at "
                    "least like 1/|x - b| there), so the Gaussian expectation diverges. The "
                    "activation must be square-integrable: use one that is bounded near that point.")
            if g1 > 0 and g2 > g1 * d1:   # |f(b + d2)| > |f(b + d1)|: f grows towards b
                exponent = max(exponent, mpmath.log(g2 / (g1 * d1)) / mpmath.log(1 / d1))
    return exponent


def _split_points(breakpoints: Iterable, mean, std, cut, finite: bool = False) -> list:
    """Standardised split points within (-cut, cut), sorted and deduplicated, with +-inf ends
    (or +-cut ends when ``finite``: cheaper, and exact to the working precision because the
    Gaussian beyond ``cut`` is below 10^-(dps+guard))."""
    zs = set()
    for b in breakpoints:
        z = (mpmath.mpf(b) - mean) / std
        if abs(z) < cut:
            zs.add(z)
    if finite:
        return [-cut] + sorted(zs) + [cut]
    if not zs:
        zs.add(mpmath.mpf(0))
    return [mpmath.ninf] + sorted(zs) + [mpmath.inf]


def _beyond_cut(points: list, breakpoints: Iterable, mean, std, cut, margin, past_ends: bool = False) -> list:
    """``points`` (the finite range ``[-cut, cut]`` in z) extended over the break-points beyond the cut, and
    ``margin`` past the farthest on each side, with one interval between consecutive points (no panels: only the
    ends, where tanh-sinh puts its nodes, matter out there).  ``past_ends``: ``margin`` past the cut too on a side
    with no break-point beyond it, for an integrand whose piece starts inside, near the cut, and is to keep its
    digits relative to itself (the cut drops 10^-(dps + guard) of the density's peak, not of that piece).

    The cut assumes that f lives inside it; a break-point beyond may start a piece where it lives instead:
    hardshrink (zero on |x| < 1/2) at q = 1e-4 is zero for |z| < 50, and its Q, 5e-546 (all from |z| > 50), came
    out as exactly 0.  Where f does live inside, the added intervals carry ~10^-(dps + guard) of its mass and
    cost a few nodes each."""
    zs = [(mpmath.mpf(b) - mean) / std for b in breakpoints]
    right = sorted({z for z in zs if z >= cut and z != points[-1]})
    left = sorted({z for z in zs if z <= -cut and z != points[0]})
    if right or past_ends:
        points = points + right + [(right[-1] if right else points[-1]) + margin]
    if left or past_ends:
        points = [(left[0] if left else points[0]) - margin] + left + points
    return points


#: Widest panel (in z) of the 2-D rule's Gauss-Legendre panels.  mp.quad doubles the nodes per panel until
#: three levels agree, so narrow panels pay that start-up many times and one wide panel needs a high level:
#: width 8 took erf's C(0.99) at 20 digits 37 s (2: 166 s, one panel over [-cut, cut]: ~60 s; tanh-sinh 392 s).
_PANEL_WIDTH = 8


def _panels(points: list, width=_PANEL_WIDTH) -> list:
    """The finite split ``points`` with every interval longer than ``width`` cut into equal panels."""
    out = [points[0]]
    for a, b in zip(points, points[1:]):
        k = max(1, int(mpmath.ceil((b - a) / width)))
        out.extend(a + (b - a) * i / k for i in range(1, k))
        out.append(b)
    return out


def _mp_quad(integrand: Callable, points: list, **options):
    """mp.quad(integrand, points, error=True, **options), also where two of its levels differ by exactly 1:
    its error estimate then divides by log10(1) = 0 (ZeroDivisionError; met at E[exp(u) exp(v)], q = 50,
    whose inner integrals are near e^35).  Halving the integrand, exactly, moves that difference to 1/2."""
    try:
        return mp.quad(integrand, points, error=True, **options)
    except ZeroDivisionError:
        value, err = mp.quad(lambda z: integrand(z) / 2, points, error=True, **options)
        return 2 * value, 2 * err


#: Most panels the bisection fallback of :func:`_quad_checked` makes before it gives up (a chirp sin(x^2)
#: at q = 100 and 40 digits needs 132; a missed kink about 2 per digit).
_MAX_BISECTED_PANELS = 1024


def _bisected_quad(integrand: Callable, points: list, target) -> tuple:
    """(value, error): tanh-sinh on each interval of ``points``, the interval of largest error estimate
    bisected until the estimates sum to at most ``target``.

    The fallback for what one rule over fixed panels cannot resolve: an integrand that oscillates ever
    faster (a chirp sin(x^2) at q = 100, sin(100 z^2), has about 100 periods per unit of z at z = 3), or a
    kink that is not a break-point.  An infinite interval [a, inf) is split at a + max(1, |a|), so its finite part grows
    geometrically.  Stops early, unconverged, at ``_MAX_BISECTED_PANELS`` panels or when doubling the panels
    has not halved the total error (a divergent integrand's estimates grow rather than shrink); the caller
    judges the returned error.
    """
    heap: list = []   # (-error, tie-break, a, b, value): the largest error first
    order = itertools.count()

    def add(a, b):
        value, err = _mp_quad(integrand, [a, b])
        heapq.heappush(heap, (-err, next(order), a, b, value))
        return err

    # a running sum of the estimates (summed anew at the end): re-summing the heap at every step cost
    # O(panels^2) additions
    total = mpmath.fsum(add(a, b) for a, b in zip(points, points[1:]))
    checkpoint, error_at_checkpoint = 64, None
    while True:
        if total <= target or len(heap) >= _MAX_BISECTED_PANELS:
            break
        if len(heap) >= checkpoint:
            if error_at_checkpoint is not None and total > error_at_checkpoint / 2:
                break
            checkpoint, error_at_checkpoint = 2 * checkpoint, total
        popped, _, a, b, _ = heapq.heappop(heap)
        total += popped   # (popped is -error)
        if mpmath.isinf(b):
            m = a + max(1, abs(a))
        elif mpmath.isinf(a):
            m = b - max(1, abs(b))
        else:
            m = (a + b) / 2
        total += add(a, m) + add(m, b)
    # summed smallest first, so the many tiny far panels are not lost against the bulk's rounding
    return mpmath.fsum(sorted((item[4] for item in heap), key=abs)), sum(-item[0] for item in heap)


def _quad_checked(integrand: Callable, points: list, dps: int, what: str, relative: bool = True,
                  gauss_legendre: list | None = None):
    """mp.quad with an error estimate; retry deeper once, then refuse to return a bad number.

    ``gauss_legendre``, a one-item list ``[True]``, asks for Gauss-Legendre on the ``points`` (panels
    of an integrand smooth on each): about 3x fewer nodes than tanh-sinh, which clusters its nodes at
    panel ends, and the 2-D rule pays that factor squared.  The result is kept only where its error
    estimate is below 10^-(dps + 5) of the integral's scale; otherwise (a singularity at a panel end,
    where Gauss-Legendre converges only algebraically) tanh-sinh decides, and the item is set to False
    so that the caller's later integrals go to tanh-sinh directly.

    mp.quad stops once its error estimate is below the working epsilon *absolutely*, so an
    integral far below 1 came out with few correct digits (E[relu(x - 1/2)^2] at q = 1e-3, 1.0e-61,
    was 0.8% off at dps = 30 while max(|value|, 1) hid an error estimate of 14% of it).  With
    ``relative`` the test is relative to the integral of |integrand| (its *mass*, the scale of
    rounding and of a cancelling, e.g. odd, integrand), and an integrand of mass below 1e-5 is
    rescaled to unit mass and integrated again.  ``relative=False`` keeps the test absolute,
    relative to max(|value|, 1) (inner integrals of the 2-D rule: weighted by the outer density).
    """
    tol = mpmath.mpf(10) ** (-(dps // 2))
    memo: dict = {}

    def cached(z):   # the mass rule reuses the integrand values (same nodes)
        y = memo.get(z)
        if y is None:
            y = memo[z] = integrand(z)
        return y

    integrated_abs = []   # E|integrand| by tanh-sinh, once integrated

    def mass_of(value, err, method="tanh-sinh"):
        if not relative:
            return max(abs(value), mpmath.mpf(1))
        if err <= tol * abs(value):
            return abs(value)
        if method == "tanh-sinh" and integrated_abs:
            return max(abs(value), integrated_abs[0])
        mass_abs = _mp_quad(lambda z: abs(cached(z)), points, method=method)[0]
        if method == "tanh-sinh":
            integrated_abs.append(mass_abs)
        return max(abs(value), mass_abs)

    if gauss_legendre is not None and gauss_legendre[0]:
        value, err = _mp_quad(cached, points, method="gauss-legendre")
        # (a cancelling integrand's mass comes mostly from the nodes already evaluated)
        scale = mass_of(value, err, "gauss-legendre")
        if mpmath.isfinite(value) and err <= mpmath.mpf(10) ** -(dps + 5) * scale:
            return value, err
        gauss_legendre[0] = False
    value, err = _mp_quad(cached, points)
    mass = mass_of(value, err)
    factor = mpmath.mpf(1)
    if relative and 0 < mass < mpmath.mpf(10) ** -5:
        factor = 1 / mass
        value, err = _mp_quad(lambda z: cached(z) * factor, points)
        value, err = value / factor, err / factor
    if err > tol * mass:
        deg = mp._tanh_sinh.guess_degree(mp.prec) + 3
        value, err = _mp_quad(lambda z: cached(z) * factor, points, maxdegree=deg)
        value, err = value / factor, err / factor
    target = mpmath.mpf(10) ** -(dps + 1) * mass
    if err > target and relative:
        # against E|integrand| itself, not |value| (mass_of's shortcut): a cancelling integrand's digits are
        # relative to that (sin's Q'(60), e^-120 from terms of size 1, was bisected towards 1e-80 of e^-120)
        target = mpmath.mpf(10) ** -(dps + 1) * mass_of(value, mpmath.inf)
    if err > target:
        # The rule stopped short of its working precision (mp.quad stops once two levels agree to it): a kink
        # that is not a break-point, or an oscillation it does not resolve, where its error estimate is the
        # error itself, not the previous level's, and the test below (half the digits, for a rule that
        # converges quadratically) let E|z - 0.3| through 6e-8 off at dps = 15.  Bisect: its sum of estimates
        # must reach the digits themselves (sin(x^2) at q = 100: bisected to 4e-11, it was 7e-11 off at 20).
        bisected, bisected_err = _bisected_quad(lambda z: cached(z) * factor, points, target * factor)
        if bisected_err / factor <= 10 * target:
            value, err = bisected / factor, bisected_err / factor
        elif err > tol * mass:
            raise DivergentIntegralError(
                f"quadrature of {what} did not converge (value {mpmath.nstr(value, 8)}, estimated "
                f"error {mpmath.nstr(err, 3)}, {mpmath.nstr(bisected_err / factor, 3)} with the range "
                f"bisected into up to {_MAX_BISECTED_PANELS} panels): the integral may diverge, the "
                "integrand may oscillate faster than that resolves, or it has a "
                "singularity/kink that is not among the break-points. Calling numeric.gauss directly: "
                "pass breakpoints= at every point where the function or its derivative jumps. Through "
                "analysis.kernel_maps and the other analyses the break-points are Activation.kinks (a "
                "periodic family such as |sin x|'s n*pi is listed only for |x| <= 50, see "
                "Activation.kink_families): for kinks it misses, integrate with numeric.gauss and "
                "breakpoints=.")
    return value, err


def _validate(dps: int, std, mean=0) -> None:
    if not is_integer_valued(dps) or dps < 5:
        raise DomainError(f"dps={dps!r}: the number of digits must be an integer >= 5.")
    if not std > 0:
        raise DomainError(f"std={std!r}: the standard deviation must be positive (the variance q > 0).")
    _check_finite(std=std, mean=mean)


def _check_finite(**values) -> None:
    """DomainError for an infinite or nan mean/std/variance (they reached the integrand as nan or
    inf and were reported as a divergent integral or a formula undefined at x = nan)."""
    for name, v in values.items():
        try:
            finite = bool(mpmath.isfinite(mpmath.mpf(v)))
        except (TypeError, ValueError):
            raise DomainError(f"{name}={v!r} is not a real number; pass a finite number.") from None
        if not finite:
            raise DomainError(f"{name}={v}: it must be a finite number (a Gaussian has finite mean and variance).")


# ----------------------------------------------------------------------------------------
# mpmath engine
# ----------------------------------------------------------------------------------------

def gaussian_expectation(f: Callable, *, dps: int = 30, breakpoints: Sequence = (), mean=0,
                         std=1) -> GaussianIntegral:
    """``E[f(mean + std*z)]`` for ``z ~ N(0, 1)`` by tanh-sinh quadrature at ``dps`` digits.

    ``f`` takes one ``mpf`` and returns a real number.  The integral is split at the
    ``breakpoints`` (in the x variable) so that kinks of piecewise functions do not spoil the
    exponential convergence of the rule, and at x = 0 and the mean, over a finite range (beyond it the
    integrand is below 10^-(dps + 10) of its peak) in panels of width at most 8 in z; work is done with 10
    guard digits.  Where that rule stops short of the digits (an oscillation it does not resolve, a kink that
    is not a break-point), the panel of largest error estimate is bisected until the estimates sum to
    10^-(dps + 1) of ``E|f|`` (at most 1024 panels).  The value has about
    ``dps`` correct digits *relative to* ``E|f|`` (a small expectation keeps its digits: the rule is
    rescaled; a mean that cancels, ``E|f| >> |E f|``, keeps fewer significant digits).

    Raises :class:`DivergentIntegralError` when the integrand does not decay (e.g. ``exp(x^2)``)
    or the quadrature does not converge, :class:`NonRealExpressionError` on complex/nan values,
    :class:`DomainError` for ``std <= 0``.

    >>> import mpmath
    >>> r = gaussian_expectation(lambda x: max(x, 0) ** 2, dps=40, breakpoints=[0])
    >>> mpmath.nstr(r.value, 30)   # E[relu(z)^2] = 1/2
    '0.5'
    """
    _validate(dps, std, mean)
    with mp.workdps(dps + _GUARD_DIGITS):
        mean = mpmath.mpf(mean)
        std = mpmath.mpf(std)
        negligible_beyond = _check_tail(f, mean, std, dps, relative=True)
        exponent = _check_singularities(f, breakpoints, dps)
        # tanh-sinh nodes next to a break-point b carry an absolute error ~10^-(working digits), which
        # at an integrable singularity |x - b|^-a costs the digits' fraction a of the result:
        # E|z|^-1/2 came out 1e-22 off at dps = 30 (error estimate 2e-44 with breakpoints [-1, 0, 1]).
        # Work with (dps + guard) / (1 - a) digits there, at most 4x (log|x| grows too slowly to count)
        work = dps + _GUARD_DIGITS
        if exponent > mpmath.mpf(1) / 10:
            work = int(mpmath.ceil(work / max(1 - exponent, mpmath.mpf(1) / 4)))
        # A finite range, cut in panels: tanh-sinh maps [a, inf) onto a finite interval where an oscillating
        # integrand's periods crowd into the end, and there two of its levels can agree while both are wrong
        # (E[sin(x^2)^2] at q = 10: 17 digits of 30, with error 2e-25 reported).  Beyond 2R, or beyond
        # where _check_tail saw the integrand fall below 10^-(dps+guard) of its peak (exp(x/2) at
        # q = 2500 peaks at z = 50), it is negligible.
        cut = max(2 * _tail_radius(dps), negligible_beyond)
        # split at the density's centre and at x = 0 too, where an activation turns (tanh(sqrt(q) z) at q = 100
        # turns within |z| < 0.1, and tanh-sinh, which crowds its nodes at a panel's ends, resolves it there;
        # inside a panel E[tanh(10 z)^2] came out 1.4e-17 off at 30 digits, with a tiny error estimate)
        points = _panels(_split_points(list(breakpoints) + [mean, 0], mean, std, cut, finite=True))
        points = _beyond_cut(points, breakpoints, mean, std, cut, 2 * _tail_radius(dps))
        norm = 1 / mpmath.sqrt(2 * mpmath.pi)

        def integrand(z):
            x = mean + std * z
            return _real(f(x), x) * mpmath.exp(-z * z / 2) * norm

        with mp.workdps(work):
            value, err = _quad_checked(integrand, points, dps, "E[f(x)]")
    with mp.workdps(dps):
        return GaussianIntegral(+value, +err, dps)


def bivariate_gaussian_expectation(f: Callable, g: Callable, c, *, q1=1, q2=1, dps: int = 30,
                                   breakpoints: Sequence = (), breakpoints_g: Sequence | None = None
                                   ) -> GaussianIntegral:
    """``E[f(u) g(v)]`` for centred jointly Gaussian ``(u, v)``, ``Var u = q1``, ``Var v = q2``,
    correlation ``c`` (so ``Cov(u, v) = c sqrt(q1 q2)``).

    Written in standardised variables, ``u = sqrt(q1) z1`` and
    ``v = sqrt(q2) (c z1 + s z2)`` with ``s = sqrt((1 - c)(1 + c))`` (this product form keeps
    ``s`` accurate near ``|c| = 1``).  The outer integral over ``z1`` splits at the kinks of
    ``f`` (and of ``g`` seen through ``c``), the inner one over ``z2`` at
    ``z2 = (b / sqrt(q2) - c z1) / s``: the inner kink moves with the outer variable.
    ``breakpoints`` are kinks of ``f``; ``breakpoints_g`` those of ``g`` (default: the same).
    At ``c = +-1`` the integral is one-dimensional and is done as such.  Both levels use Gauss-Legendre
    panels of width at most 8 between the split points, and tanh-sinh where those do not reach the
    digits (an integrable singularity at a break-point).  The range in ``z1`` and ``z2`` is cut where
    ``f^2`` and ``g^2`` times the density have fallen below 10^-(dps + guard) of their peaks, past those
    peaks (``exp(x)`` at q = 200 peaks at z = 28): fast-growing integrands take longer (E[exp(u) exp(v)]
    at q = 200 and 15 digits, about 2 minutes), but are not refused as divergent.  Where f or g lives past
    that cut (more than 10^-(dps + guard) of ``E f(u)^2`` or ``E g(v)^2`` does: a piece that starts at a
    break-point near or beyond it, such as hardshrink's at small q, or the step H(x - 13)), both ranges reach
    past the break-points and the cut, and the inner integrals keep dps digits of their own, however small
    (where the ranges stopped at the cut, hardshrink's E[f(u) f(v)] at q = 1e-4, 1.2e-728 at c = 0.5, came out 0):
    slower, about 40 s at 25 digits for that one.

    Accuracy: about ``dps`` digits relative to the scale of ``f(u) g(v)`` (the inner integrals' test is
    absolute, in units of g's typical size), not relative to a kernel far below that scale: relu x relu
    at ``c = -0.999999`` (1.5e-10) keeps 10 of 15 digits, and ``error`` (2.9e-33 there) does not show it.

    >>> import mpmath
    >>> r = bivariate_gaussian_expectation(lambda u: u, lambda v: v, 0.3, q1=2, q2=8, dps=20)
    >>> mpmath.nstr(r.value, 15)   # Cov(u, v) = 0.3 * 4
    '1.2'
    """
    _validate(dps, 1)
    if breakpoints_g is None:
        breakpoints_g = breakpoints
    with mp.workdps(dps + _GUARD_DIGITS):
        c = mpmath.mpf(c)
        q1 = mpmath.mpf(q1)
        q2 = mpmath.mpf(q2)
        if not (-1 <= c <= 1):
            raise DomainError(f"c={mpmath.nstr(c, 10)}: a correlation must lie in [-1, 1]; "
                              "pass a cosine similarity, not an inner product.")
        if not (q1 > 0 and q2 > 0):
            raise DomainError(f"q1={mpmath.nstr(q1, 6)}, q2={mpmath.nstr(q2, 6)}: variances must be > 0.")
        _check_finite(q1=q1, q2=q2)
        r1, r2 = mpmath.sqrt(q1), mpmath.sqrt(q2)
        # the tail tests are absolute (below 10^-(dps+guard) at 2R): measure f and g in units of their
        # typical sizes, or any g growing with x was refused at large q2 (g(v) = v at q2 = 1e72: v^2 times
        # the density is 3e14 at z = 16.6, the integral a finite c sqrt(q1 q2))
        f_size, g_size = _typical_size(f, r1), _typical_size(g, r2)
        # relative tail tests, as the 1-D rule's: exp(x) at q = 50 has f^2 times the density peaking at
        # z = 2 sqrt(q) = 14, beyond 2R at 15 digits, and was refused as divergent (E[f g] = e^95 at c = 0.9)
        reach = max(_check_tail(lambda x: (f(x) / f_size) ** 2, 0, r1, dps, "f^2", relative=True),
                    _check_tail(lambda x: (g(x) / g_size) ** 2, 0, r2, dps, "g^2", relative=True))
        if c in (1, -1):
            h = lambda z: f(r1 * z) * g(c * r2 * z)  # noqa: E731
            bps = [b / r1 for b in breakpoints] + [c * b / r2 for b in breakpoints_g]
            res = gaussian_expectation(h, dps=dps + _GUARD_DIGITS, breakpoints=bps)
            value, err = res.value, res.error
        else:
            s = mpmath.sqrt((1 - c) * (1 + c))
            # finite range: beyond R + 3 the density is < 10^-(dps+10) * exp(-3R), enough margin
            # for integrands growing like exp(|x|)
            cut = _tail_radius(dps) + 3
            # ... unless f or g grows so fast that f^2 or g^2 times the density is not yet negligible
            # there (exp(4x) at c = 0.9: mass centred at z1 = 7.6, 4e-13 of it cut off at 20 digits,
            # with error=1e-19 reported): widen, up to where _check_tail has verified the decay
            def _squared(z):
                w = mpmath.exp(-z * z / 2)
                return max(abs(_real(h(sg * rr * z), sg * rr * z) / size) ** 2 * w
                           for h, rr, size in ((f, r1, f_size), (g, r2, g_size)) for sg in (1, -1))

            # negligible relative to the squared integrands' peak (sampled once per unit of z) where that is
            # above 1, and only past it: exp(x) at q = 200 rises up to z = 28, and at 13.7 is already 1e-29 of
            # its peak; cut there, E[f g] is 9x too small at c = 0 with a tiny error estimate
            samples = []
            for k in range(int(reach) + 2):
                z = k + mpmath.mpf("0.4142")  # away from simple fractions, where kinks and singularities sit
                try:
                    samples.append((_squared(z), z))
                except (DivergentIntegralError, NonRealExpressionError):
                    continue
            scale, peak = max([(mpmath.mpf(1), 0)] + samples)
            thr = mpmath.mpf(10) ** (-(dps + _GUARD_DIGITS)) * scale
            cut = max(cut, peak)
            while cut < reach and _squared(cut) > thr:  # reach >= 2R: _check_tail starts there
                cut += 1
            norm = 1 / mpmath.sqrt(2 * mpmath.pi)
            max_inner_err = [mpmath.mpf(0)]
            inner_gauss_legendre = [True]  # until one inner integral needs tanh-sinh
            # the inner rule's test is absolute (relative to max(|value|, 1)): measure g in units of its
            # typical size, or at q2 = 1e-300 (g ~ 1e-150) every inner integral passed unrefined and
            # E[relu(u) relu(v)] came back 1.4% off (at q = 1e-60 the outer rule refused to converge)
            density: dict = {}
            gb = [mpmath.mpf(b) / r2 for b in breakpoints_g]
            # f and g vary on a unit scale in x near x = 0 and their kinks, i.e. on 1/sqrt(q) in z:
            # for large q the rules are graded towards those points (tanh at q = 1e4 did not converge)
            g_features = [mpmath.mpf(0)] + gb
            fb = [mpmath.mpf(b) / r1 for b in breakpoints]
            # a break-point beyond the cut, or so close to it that the density falls by less than 10^-(dps + guard)
            # in between, may start a piece where f or g lives and that the cut cuts off: hardshrink (zero on
            # |x| < 1/2) at q = 1e-4 is zero for |z| < 50, and every E[f(u) g(v)] came out 0; E[H(u - 13) H(v - 13)]
            # was 0.1% off at 15 digits.  Both ranges then reach past the break-points and the cut, as
            # gaussian_expectation's does, and the inner integrals, tiny out there (E[g(v) | u] ~ 1e-181 at
            # c = 0.5), are integrated to dps digits of their own, not absolutely
            margin = 2 * _tail_radius(dps)
            far = (_lives_past(f, r1, breakpoints, cut, dps)
                   or (g is not f or list(breakpoints_g) != list(breakpoints) or r2 != r1)
                   and _lives_past(g, r2, breakpoints_g, cut, dps))
            # (and by tanh-sinh from the start: out there the integrands fall steeply from an end of an interval
            # ~2R long, where Gauss-Legendre fails after paying for its nodes, each an inner integral)
            inner_gauss_legendre[0] = not far

            def inner(z1):
                cz = c * z1
                centres = [(b - cz) / s for b in g_features]  # x = 0, then g's kinks
                pts = _split_points(centres[1:] + _graded_edges(centres, 1 / (r2 * s)), 0, 1, cut, finite=True)
                pts = _panels(pts)
                if far:
                    pts = _beyond_cut(pts, centres[1:], 0, 1, cut, margin, past_ends=True)

                def h(z2):
                    x = r2 * (cz + s * z2)
                    w = density.get(z2)
                    if w is None:       # the inner nodes repeat across outer nodes: memoise exp
                        if len(density) >= _DENSITY_MEMO:
                            # ... unless the panels move with z1 (graded towards g's x = 0 at c != 0):
                            # then every node is new and the memo grew to 4.4 GB (tanh at q2 = 1e60)
                            density.clear()
                        w = density[z2] = mpmath.exp(-z2 * z2 / 2)
                    return _real(g(x), x) / g_size * w

                v, e = _quad_checked(h, pts, dps, "the inner integral E[g(v) | u]", relative=far,
                                     gauss_legendre=inner_gauss_legendre)
                max_inner_err[0] = max(max_inner_err[0], e * g_size)
                return v * norm * g_size

            def outer(z1):
                x = r1 * z1
                fx = _real(f(x), x)
                if fx == 0:
                    return fx
                return fx * inner(z1) * mpmath.exp(-z1 * z1 / 2) * norm

            obps = fb + _graded_edges([mpmath.mpf(0)] + fb, 1 / r1)
            g_edges = _smoothed_kink_edges([b / c for b in gb], abs(s / c)) if c != 0 else []
            obps += g_edges
            if c != 0 and r2 > 1:  # E[g(v) | z1] varies on max(s, 1/sqrt(q2))/|c| around g's x = 0 as well
                obps += _graded_edges([mpmath.mpf(0)], max(abs(s / c), 1 / abs(r2 * c)))
            points = _panels(_split_points(obps, 0, 1, cut, finite=True))
            if far:
                points = _beyond_cut(points, fb + g_edges, 0, 1, cut, margin, past_ends=True)
            value, err = _quad_checked(outer, points, dps, "E[f(u) g(v)]", gauss_legendre=[not far])
            err = err + max_inner_err[0]
    with mp.workdps(dps):
        return GaussianIntegral(+value, +err, dps)


def _lives_past(h: Callable, r, breakpoints: Iterable, cut, dps: int) -> bool:
    """Whether more than 10^-(dps + guard) of ``E[h(r z)^2]`` lies beyond ``|z| = cut``, where the 2-D rule stops.

    Only a piece of h that starts at a break-point past ``sqrt(cut^2 - R^2)`` (R the tail radius) can: from one
    inside, the density falls by 10^-(dps + guard) before the cut, and without one h lives in the bulk (the rule's
    cut already covers a fast growth).  So the two 1-D integrals that decide are done only where there is one:
    hardtanh at q = 0.01 (kinks at |z| = 10, 8.6 being that bound at 15 digits) lives inside, and
    reaching past its cut made its 2-D rule 5 times slower."""
    zs = [abs(mpmath.mpf(b)) / r for b in breakpoints]
    if not any(z * z >= cut * cut - _tail_radius(dps) ** 2 for z in zs):
        return False
    edge = cut * r
    bps = list(breakpoints) + [-edge, edge]

    def square(x):
        return _real(h(x), x) ** 2
    total = gaussian_expectation(square, dps=dps, breakpoints=bps, std=r).value
    tail = gaussian_expectation(lambda x: square(x) if abs(x) > edge else 0 * x, dps=dps, breakpoints=bps, std=r).value
    return tail > mpmath.mpf(10) ** -(dps + _GUARD_DIGITS) * total


#: most inner-node densities the 2-D rule keeps (~100 bytes each at 40 digits)
_DENSITY_MEMO = 100_000


def _typical_size(h: Callable, r) -> mpmath.mpf:
    """max |h(r z)| over a few z in the bulk of N(0, 1) (|z| <= 3, away from 0 and simple fractions,
    where kinks and singularities sit), or 1 when h vanishes at all of them: the scale of h(x) for
    x ~ N(0, r^2), to make an absolute tolerance relative to it."""
    size = mpmath.mpf(0)
    for z in ("0.3183", "0.7071", "1.3591", "2.1748", "2.9137"):
        for x in (r * mpmath.mpf(z), -r * mpmath.mpf(z)):
            try:
                size = max(size, abs(_real(h(x), x)))
            except (DivergentIntegralError, NonRealExpressionError):
                continue
    return size if size > 0 else mpmath.mpf(1)


def _gl_panel_rule(breakpoints_z: Sequence, cut, n_panels: int, degree: int):
    """Composite Gauss-Legendre nodes/weights (mpf) for the N(0,1) density on [-cut, cut]:
    ``n_panels`` equal panels, further split at the breakpoints; ``degree`` is mpmath's level
    (3 * 2**(degree - 1) nodes per panel)."""
    edges = set(mpmath.mpf(b) for b in breakpoints_z if -cut < b < cut)
    for k in range(n_panels + 1):
        # (not -cut + k * step: this rounds the edges k and n - k to exact negatives, so symmetric
        # breakpoints give a rule of exact mirror pairs, which _hermite_sums folds to half the work)
        edges.add(cut * (2 * k - n_panels) / n_panels)
    edges = sorted(edges)
    base = mp._gauss_legendre.get_nodes(-1, 1, degree, mp.prec)
    norm = 1 / mpmath.sqrt(2 * mpmath.pi)
    nodes, weights = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        half, mid = (b - a) / 2, (a + b) / 2
        for t, w in base:
            z = mid + half * t
            nodes.append(z)
            weights.append(w * half * mpmath.exp(-z * z / 2) * norm)
    return nodes, weights


def gaussian_rule(breakpoints_z: Sequence = (), *, cut, panels: int, nodes_per_panel: int,
                  dps: int | None = None):
    """Nodes z and weights w with sum w f(z) ~ E[f(z)], z ~ N(0, 1) (the density is in the weights).

    A composite Gauss-Legendre rule on [-cut, cut]: ``panels`` equal panels, further split at the
    breakpoints (in the z variable) so that piecewise-smooth integrands are integrated panel by
    panel.  Use it when many integrands share one node set (e.g. every condition of a Newton step
    evaluated from one set of activation values).

    ``dps=None``: float64 numpy arrays.  ``dps=n``: lists of mpf at the current mpmath precision
    (``mp.dps`` should be at least n), with ``nodes_per_panel`` one of 12, 24, 48, 96, ...

    >>> z, w = gaussian_rule(cut=10.0, panels=20, nodes_per_panel=16)
    >>> round(float(w @ z**2), 12)
    1.0
    """
    if dps is None:
        return _f64_rule(breakpoints_z, nodes_per_panel, float(cut), 2 * float(cut) / panels)
    level = {3 * 2 ** (k - 1): k for k in range(1, 12)}.get(nodes_per_panel)
    if level is None:
        raise DomainError(f"nodes_per_panel={nodes_per_panel}: the mpmath rule has 3*2**k nodes (12, 24, 48, ...)")
    nodes, weights = _gl_panel_rule_cached(tuple(mpmath.mpf(b) for b in breakpoints_z), mpmath.mpf(cut),
                                           int(panels), level, mp.prec)
    return list(nodes), list(weights)  # copies: the cached rule is shared


@lru_cache(maxsize=32)
def _gl_panel_rule_cached(breakpoints_z: tuple, cut, n_panels: int, degree: int, prec: int):
    """:func:`_gl_panel_rule` at ``prec`` bits, kept: a Newton polish at 40 digits asks for the same
    rule (no kinks, or the same kinks) at every step, and building it (an exp per node) cost about as
    much as evaluating the activation on it."""
    with mp.workprec(prec):
        nodes, weights = _gl_panel_rule(breakpoints_z, cut, n_panels, degree)
    return tuple(nodes), tuple(weights)


def _hermite_rule_cut(dps: int) -> mpmath.mpf:
    """``Z = 2 sqrt((dps + 10) ln 10)``: :func:`hermite_coefficients` integrates over ``|z| <= Z`` (or further, for a
    fast-growing f), so an f that lives beyond, such as one that is zero up to a break-point near or past Z, is
    not resolved there (its rule's check raises)."""
    return 2 * mpmath.sqrt((dps + _GUARD_DIGITS) * mpmath.log(10))


def hermite_coefficients(f: Callable, n: int, *, dps: int = 30, breakpoints: Sequence = (),
                         with_error: bool = False, verify: bool = False, second_moment=None,
                         second_moment_digits: int | None = None) -> list | tuple:
    """The first ``n`` normalised probabilists' Hermite coefficients of ``f``.

    ``a_k = E[f(z) He_k(z)] / sqrt(k!)``, so that ``f = sum_k a_k He_k / sqrt(k!)`` in
    ``L^2(N(0,1))``, ``E[f(z)^2] = sum_k a_k^2`` and (Mehler) for standard Gaussians with
    correlation ``c``: ``E[f(u) f(v)] = sum_k a_k^2 c^k``.

    Computed all at once with a composite Gauss-Legendre rule at ``dps + 10`` digits on
    ``[-Z, Z]``, ``Z = 2 sqrt((dps + 10) ln 10)`` (beyond which ``|h_k| pdf <= exp(-z^2/4)`` is
    negligible; widened, up to 16 tail radii, until ``|f| exp(-z^2/4)`` is negligible against ``f``'s typical
    size for a fast-growing ``f`` such as ``exp(5 z)``), panels of width 1/2 split at the ``breakpoints``, 24 nodes
    per panel (48 when ``n > 300`` or beyond 60 working digits, 96 beyond 110, 192 beyond 220), and the
    stable three-term recurrence ``h_{k+1} = (z h_k - sqrt(k) h_{k-1}) / sqrt(k+1)``.
    Accurate to about ``dps`` digits relative to ``f``'s size (``f`` and ``f / 10**60`` give
    the same digits) for ``k`` up to a few hundred when ``f`` grows at most polynomially or
    like exp(|x|).

    The error is absolute, up to about ``10**-(dps + 16) E|f|`` in every ``a_k``: a coefficient far
    below ``E|f|`` (those of a narrow bump, ``f(z) = g(sqrt(q) z)`` for ``g = x exp(-x^2)`` at
    ``q = 1e100``, are ~1e-50 ``E|f|``) has fewer correct digits, or none.  ``with_error=True`` returns
    ``(coefficients, bound)`` with that bound (the fixed-point sums' resolution, 2^16 ulps of the
    rule's sum of ``|f| w``), so callers can check.  That bound covers rounding only, not the rule's own
    (discretisation) error, which for ``k`` in the hundreds or an oscillating ``f`` can be far larger (``cos(20 z)``
    at ``dps = 40``: the a_k, k < 300, up to 2e-30 off with a bound of 1e-56).  ``verify=True`` also evaluates the rule with twice
    the nodes per panel (about 3 times the cost), returns its coefficients, and adds the two rules' largest
    difference to the bound: then it covers the rule's error too (a sum that cancels needs that).

    Every rule is checked on ``E[f(z)^2]`` (Parseval: ``sum_k a_k^2``), which the same nodes give for free,
    against ``second_moment`` (or, when that is None, :func:`gaussian_expectation` of ``f^2``, whose tanh-sinh
    panels are refined until they converge): where the two differ by more than ``10**-dps`` of it
    (``10**-second_moment_digits`` where given: the digits ``second_moment`` is known to), the
    panels under-resolve ``f`` and the nodes per panel are doubled, up to 768; past that it raises.  A chirp
    ``sin(16 z^2)`` has 20 periods per half-unit panel at ``z = 8``: with 24 nodes its Mehler sum C(0.5)
    came out 4e-10 off (relative) at ``dps = 15``.  The check is necessary, not sufficient, for the
    coefficients' digits: ``h_k`` for ``k`` in the hundreds oscillates faster than ``f^2`` may.

    >>> import mpmath
    >>> a = hermite_coefficients(lambda x: x**2, 4, dps=30)   # x^2 = He_0 + sqrt(2) h_2
    >>> [mpmath.nstr(mpmath.chop(v, tol=1e-30), 8) for v in a]
    ['1.0', '0.0', '1.4142136', '0.0']
    """
    if not is_whole_number(n, 1):   # n = 3.0 reached range() as a bare TypeError, n = True gave 1 coefficient
        raise DomainError(f"n={n!r}: ask for a whole number (at least 1) of Hermite coefficients.")
    _validate(dps, 1)
    with mp.workdps(dps + _GUARD_DIGITS):
        # relative, as in gaussian_expectation: an f whose bulk lies far out (exp(sqrt(q) z), phi = exp(x)
        # at q = 50: f^2 pdf peaks at z = 2 sqrt(q) = 14) decays only beyond the absolute test's 2R, and the
        # finite Mehler series of exp(x) (Q = e^(2q)) was refused as "f^2 diverges" at 15 digits
        _check_tail(lambda x: f(x) ** 2, 0, 1, dps, "f^2", relative=True)
        cut = _hermite_rule_cut(dps)
        # |h_k(z)| pdf(z) <= exp(-z^2/4) / sqrt(2 pi) (Cramer's bound) makes the integrand negligible beyond
        # the cut only where f is of its typical size there: a fast-growing f (exp(sqrt(q) z), phi = exp(x) at
        # q = 30) is e^33 times larger at the cut, and a_59 came out 1e-13 off relative (2.6e-16 of E|f|, against
        # an error bound of 5e-53).  Widen the cut until the tail beyond it, <= |f| exp(-z^2/4) (2/z) / sqrt(2 pi)
        # for f growing more slowly than exp(z^2/4), is negligible against f's typical size
        # (f^2 pdf decays by 8 tail radii, checked above, so |f| exp(-z^2/4), its square root, does soon after;
        # the cut stopped at 4 radii and dropped the rest silently: exp(sqrt(q) z) at q = 200 needs ~5)
        limit = mpmath.mpf(10) ** (-(dps + _GUARD_DIGITS)) * _typical_size(f, 1)

        def tail_too_large(z):
            return any(abs(_real(f(sg * z), sg * z)) * mpmath.exp(-z * z / 4) * 2 / (z * mpmath.sqrt(2 * mpmath.pi))
                       > limit for sg in (1, -1))
        while tail_too_large(cut):
            if cut > 16 * _tail_radius(dps):
                raise DivergentIntegralError(
                    f"the Hermite coefficients of f are not negligible beyond |z| = {mpmath.nstr(cut, 4)} (16 tail "
                    "radii): f grows nearly as fast as exp(z^2/4), and the rule cannot reach its tail. Use a smaller "
                    "variance (q), or an activation that grows more slowly.")
            cut += 1
        # 24 nodes per half-unit panel resolve h_k to ~50 digits for k <= 300; 48 beyond.  More digits need
        # more nodes: the rule's error does not shrink with the working precision (exp(sqrt(50) z), a_197: 8e-53
        # of max |a_k| with 24 nodes at 90 digits, 1e-101 with 48 at 100 digits; 96 nodes beyond)
        work = dps + _GUARD_DIGITS
        degree = max(4 if n <= 300 else 5, 5 if work > 60 else 4, 6 if work > 110 else 4, 7 if work > 220 else 4)
        panels = int(mpmath.ceil(4 * cut))
        bps = [mpmath.mpf(b) for b in breakpoints]
        if second_moment is None:
            second_moment = gaussian_expectation(lambda z: _real(f(z), z) ** 2, dps=dps + 3, breakpoints=bps).value
        second_moment = mpmath.mpf(second_moment)
        check = mpmath.mpf(10) ** -(dps if second_moment_digits is None else min(dps, second_moment_digits))
        while True:
            sums, bound, rule_second_moment = _hermite_sums(f, n, *_gl_panel_rule(bps, cut, panels, degree))
            if abs(rule_second_moment - second_moment) <= check * abs(second_moment):
                break
            if degree >= _MAX_HERMITE_DEGREE:
                raise DivergentIntegralError(
                    f"the Hermite coefficients' rule does not resolve f: with {3 * 2 ** (degree - 1)} nodes per "
                    f"half-unit panel it gives E[f^2] = {mpmath.nstr(rule_second_moment, 12)}, against "
                    f"{mpmath.nstr(second_moment, 12)} (f oscillates too fast, or has a kink that is not among "
                    "the break-points, or lives beyond |z| = "
                    f"{mpmath.nstr(cut, 4)}, where the rule does not reach: zero up to a break-point near or past "
                    "that).  Pass the kinks as breakpoints=; for a kernel map, use 2-D quadrature "
                    "(mehler_max_abs_c = 0 on the maps) or the float64 engine.")
            degree += 1
        if verify:
            # the rule with twice the nodes per panel: its coefficients are returned, and the largest difference
            # from the coarser rule's (that rule's error, a conservative bound of the finer's) joins the bound
            finer, bound, _ = _hermite_sums(f, n, *_gl_panel_rule(bps, cut, panels, degree + 1))
            bound += max((abs(u - v) for u, v in zip(sums, finer)), default=mpmath.mpf(0))
            sums = finer
    with mp.workdps(dps):
        out = [+s for s in sums]
        # (and the rounding of the coefficients to dps digits: half an ulp of the largest)
        bound += mpmath.ldexp(max((abs(v) for v in out), default=mpmath.mpf(0)), -mp.prec)
        return (out, +bound) if with_error else out


#: mpmath's Gauss-Legendre level (3 * 2**(degree - 1) nodes per panel) beyond which hermite_coefficients refuses
_MAX_HERMITE_DEGREE = 9


def _hermite_sums(f: Callable, n: int, nodes: list, weights: list) -> tuple:
    """``(sums, bound, second_moment)``: ``sum_i f(z_i) w_i h_k(z_i)`` for k < n on one rule (see
    :func:`hermite_coefficients`), the fixed-point sums' rounding bound, and the rule's ``sum_i f(z_i)^2 w_i``."""
    # h_k(z) by the recurrence in fixed-point integers with P fractional bits (the forward
    # recurrence is stable and h_k grows, so absolute 2^-P errors stay relatively small), then
    # sum f(z) w h_k with f(z) w kept at full *relative* precision (mantissa M, scale 2^-S):
    # ~5x faster than mpf arithmetic on mpmath's pure-Python backend.
    P = int(mp.prec) + 32
    fz = [_real(f(z), z) for z in nodes]
    fw = [v * w for v, w in zip(fz, weights)]
    bound = mpmath.ldexp(mpmath.fsum(abs(v) for v in fw), 16 - P)
    second_moment = mpmath.fsum(v * u for v, u in zip(fw, fz))
    mirrors = _mirror_pairs(nodes, weights)
    if mirrors is None:
        points, even, odd = list(nodes), fw, fw
    else:
        # h_k(-z) = (-1)^k h_k(z): on a rule of mirror pairs, sum f w h_k = sum over z >= 0 of
        # h_k(z) (f w(z) + (-1)^k f w(-z)), half the recurrence; the pair sums are exact (P + 64 bits)
        points = [nodes[i] for i, _ in mirrors]
        with mp.workprec(P + 64):
            even = [fw[i] + fw[j] if i != j else fw[i] for i, j in mirrors]
            odd = [fw[i] - fw[j] for i, j in mirrors]
    to_int = lambda v, bits=P: int(mpmath.nint(mpmath.ldexp(v, bits)))  # noqa: E731
    # sum f w / 2^E (E: the largest f w's binary exponent) and scale back: the fixed-point sum's
    # 2^-P resolution is then relative to f's size, not absolute (tanh / 1e60 lost every digit)
    # (the exact binary exponent: floor(log2 |f w|) rounded it, and for f w ~ 2^-3e99 (x exp(-x^2) at
    # q = 1e100) by ~1e69, so ldexp below made a 1e69-bit integer: a bare OverflowError)
    scale = max((mpmath.frexp(v)[1] - 1 for v in even + odd if v != 0), default=0)

    def fixed_point(values):
        # M = f w 2^(P - e) (P bits, whatever f w's exponent e), and the shifts that bring M h_k to 2^(P - scale)
        exponents = [mpmath.frexp(v)[1] - 1 if v != 0 else scale for v in values]
        mantissas = [int(mpmath.nint(mpmath.ldexp(v, P - e))) for v, e in zip(values, exponents)]
        return (np.array(mantissas, dtype=object), np.array([P - e + scale for e in exponents], dtype=object))

    even_part = fixed_point(even)
    odd_part = even_part if mirrors is None else fixed_point(odd)
    zf = np.array([to_int(z) for z in points], dtype=object)
    h_prev = np.array([0] * len(points), dtype=object)
    h = np.array([1 << P] * len(points), dtype=object)
    sums = []
    for k in range(n):
        M, shifts = odd_part if k % 2 else even_part
        sums.append(int(((M * h) >> shifts).sum()) if len(points) else 0)
        if k + 1 < n:
            a_k = to_int(mpmath.sqrt(mpmath.mpf(k) / (k + 1)))
            b_k = to_int(1 / mpmath.sqrt(k + 1))
            h_prev, h = h, (((zf * h) >> P) * b_k - h_prev * a_k) >> P
    sums = [mpmath.ldexp(mpmath.mpf(v), scale - P) for v in sums]
    # the fixed-point sums' resolution, 2^-P of sum |f w| (P = prec + 32), with 2^16 to spare for
    # the recurrence's rounding: x exp(-x^2) at q = 1e40 and 1e60 (a_k ~ 1e-20 and 1e-30 E|f|) lost
    # ~25 and ~40 of the 50 digits computed, as this predicts (the rule's own error is below it)
    return sums, bound, second_moment


def _mirror_pairs(nodes: list, weights: list) -> list | None:
    """``[(i, j), ...]`` with ``nodes[j] == -nodes[i] >= 0`` and equal weights, covering every node once (a node
    at 0 pairs with itself), or None where the rule is not exactly symmetric (breakpoints on one side)."""
    index = {z: i for i, z in enumerate(nodes)}
    if len(index) != len(nodes):
        return None
    pairs = []
    for i, z in enumerate(nodes):
        j = index.get(mpmath.fneg(z, exact=True))   # (-z rounds to the working precision)
        if j is None or weights[j] != weights[i]:
            return None
        if z >= 0:
            pairs.append((i, j))
    return pairs


# ----------------------------------------------------------------------------------------
# float64 engine
# ----------------------------------------------------------------------------------------

_F64_CUT = 12.0       # exp(-72) ~ 5e-32: negligible against float64 even with exp(|x|)-type growth
_F64_PANEL = 1.0
# 2-D rule: [-10, 10]^2 for activations that grow at most polynomially (density < 8e-23 outside; wider
# for faster growth, see _F64_CUTS2), 16 panels x 12 and 16 nodes per axis (~21k + 65k integrand
# evaluations per c, compared for the error estimate); refined where they disagree.
_F64_PANEL2 = 1.25
# Refinement levels of the float64 rules (level L: panels 2^-L as wide, graded towards x = 0 and the
# kinks down to 8^-L of the unit scale); past the last, they raise instead of returning a guess.
_F64_LEVELS = 4
_F64_LEVELS2 = 3


@lru_cache(maxsize=64)
def _leggauss(n: int):
    return np.polynomial.legendre.leggauss(n)


def _f64_rule(breakpoints_z: Sequence[float], nodes_per_panel: int, cut: float = _F64_CUT,
              panel: float = _F64_PANEL, beyond: Sequence[float] = (), log: bool = False):
    """Composite Gauss-Legendre nodes/weights (N(0,1) density folded in) on [-cut, cut], and on to the
    edges ``beyond`` it (see :func:`_f64_reach_edges`), where a piece of the integrand lives past the cut.
    ``log``: the weights' logs instead."""
    return _f64_rule_cached(tuple(float(b) for b in breakpoints_z), nodes_per_panel, cut, panel,
                            tuple(float(b) for b in beyond), log)


@lru_cache(maxsize=256)
def _f64_rule_cached(breakpoints_z: tuple, nodes_per_panel: int, cut: float, panel: float, beyond: tuple = (),
                     log: bool = False):
    """``log``: the weights' natural logs (-inf on an empty panel), which do not underflow where the density does
    (exp(-z^2/2) < 1e-308 past |z| = 37.7): for the 2-D rule's scaled form."""
    edges = np.linspace(-cut, cut, int(round(2 * cut / panel)) + 1)
    lo, hi = min((-cut,) + beyond), max((cut,) + beyond)
    if beyond:
        edges = np.unique(np.concatenate([edges, beyond]))
    extra = [float(b) for b in breakpoints_z if lo < float(b) < hi]
    if extra:
        edges = np.unique(np.concatenate([edges, extra]))
    t, w = _leggauss(nodes_per_panel)
    a, b = edges[:-1, None], edges[1:, None]
    z = (a + b) / 2 + (b - a) / 2 * t[None, :]
    if log:
        with np.errstate(divide="ignore"):
            return z.ravel(), (np.log((b - a) / 2 * w[None, :]) - z * z / 2 - _LOG_SQRT_2PI).ravel()
    wz = (b - a) / 2 * w[None, :] * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    return z.ravel(), wz.ravel()


_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _smoothed_kink_edges(centres, width) -> list:
    """Panel edges for a kink of g smoothed over ``width`` (the inner Gaussian's std seen from
    the outer variable): the centre plus centre +- width * 2^k up to O(1), so that the rapid
    transition near |c| = 1 is resolved by panels of its own size."""
    edges = []
    for m in centres:
        edges.append(m)
        w = width
        while 0 < w < 2:
            edges += [m - w, m + w]
            w *= 2
    return edges


def _graded_edges(centres, width) -> list:
    """Panel edges centre +- width * 2^k (k = 0, 1, ...) below 1, for features of size ``width``
    (in z) at the ``centres``; nothing when ``width >= 1`` (unit panels resolve those already)."""
    if not width < 1:
        return []
    return _smoothed_kink_edges(centres, width)


# Innermost panel width next to an integrable singularity at z, relative to |z| (so the panel spans
# thousands of float64 numbers; at z = 0 floats are dense and the panel can be far narrower):
# Gauss-Legendre's error on it is below float64 resolution for a log singularity.
_SINGULAR_PANEL = 2.0**-40
_SINGULAR_PANEL_AT_0 = 2.0**-120


# Cuts the float64 1-D rule tries, in z: the first past which |f| * density has decayed.  12 serves
# every activation that grows at most like exp(|x|) at q <= 4; exp(x) at q = 8 (mass near z = 5.7) was
# refused at 12 and needs 16, exp(2x) at q = 4 needs 20.  Beyond 36 the density (1e-282) leaves too
# little of float64's range for the integrand.
_F64_CUTS = (12.0, 16.0, 20.0, 24.0, 28.0, 32.0, 36.0)


# The 2-D rule's cuts: the first where f^2 * density has fallen below 1e-16 of its peak.  At c -> 1 the
# integrand f(u) g(v) tends to f^2, so its truncated mass is that of f^2 (a cut 2 short of the 1-D one left
# exp(x)'s C(0.5; q = 4) 1.3e-12 off); bounded and polynomially growing activations keep 10.
_F64_CUTS2 = (10.0, 12.0, 14.0, 16.0, 18.0, 20.0, 24.0, 28.0, 32.0, 36.0)


def _f64_tail_cut(f: Callable, mean: float, std: float, what: str = "f", cuts: Sequence[float] = _F64_CUTS,
                  tolerance: float = 1e-13) -> float:
    """The cut Z of the float64 rules: the first of ``cuts`` where ``|f| * density`` at ``|z| = Z`` is
    below ``tolerance`` of its peak on a unit grid over ``[-Z, Z]`` (so the truncated mass is below
    float64 resolution).  Raises DivergentIntegralError where none is: the integrand grows past the
    last, or is not finite on the grid."""
    for cut in cuts:
        z = np.linspace(-cut, cut, int(2 * cut))   # even count: no node at 0 (removable singularities)
        # in logs: where |f| times the density underflows on the whole grid (the bump exp(-(x - 30)^2) at q = 1
        # is below 1e-369 out to z = 10), it was taken for decayed, and every E[f(u) g(v)] came out 0
        log_y = _log_abs_density(f, mean, std, z)
        with np.errstate(over="ignore", invalid="ignore"):
            y = np.abs(np.asarray(f(mean + std * z), dtype=np.float64)) * np.exp(-z * z / 2)
        if np.any(np.isnan(log_y)):
            break
        top = np.max(log_y)
        if top == -math.inf:
            # f is 0 (or underflows) at every node: f lives further out, or nowhere (then the first cut serves)
            if cut == cuts[-1]:
                return cuts[0]
            continue
        if max(log_y[0], log_y[-1]) <= math.log(tolerance) + top:
            return cut
    raise DivergentIntegralError(
        f"the Gaussian expectation of {what} diverges or is not representable in float64: "
        f"|{what}| * density does not decay by |z| = {cut:g} (peak {np.nanmax(y):.3g}, "
        f"{max(y[0], y[-1]):.3g} at the cut). The activation is not square-integrable under the "
        "Gaussian (or grows too fast for float64); use the mpmath engine to confirm.")


#: How far (natural log) below the integrand's largest sampled value |h| * density may fall before a piece of h
#: past a break-point counts as negligible (e^-40 = 4e-18, below float64 resolution), and how far past a break-point
#: the range reaches: to where the density has fallen by that much more, |z| = sqrt(z_b^2 + 2 * 40).
_F64_REACH_LOG = 40.0
# geometric steps past a far break-point z_b, in units of 1/|z_b| (there the density falls like exp(-|z_b| t)):
# Gauss-Legendre panels [0, 1], [1, 3], [3, 7], ... each hold a share of the tail it resolves
_F64_REACH_STEPS = np.array([0.0, 1.0, 3.0, 7.0, 15.0, 31.0, 63.0])


def _log_abs_density(h: Callable, mean: float, std: float, z: np.ndarray) -> np.ndarray:
    """log(|h(mean + std z)| exp(-z^2/2)), -inf where h is 0 and nan where h is not finite: in logs, so that
    an integrand far out (H(x - 40) at z = 40: 1e-348) is not taken for 0 where the density underflows."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        y = np.abs(np.asarray(h(mean + std * z), dtype=np.float64))
        out = np.log(y) - z * z / 2
    return np.where(np.isfinite(y), out, np.nan)


def _f64_reach(h: Callable, mean: float, std: float, breakpoints_z: Sequence[float], cut: float) -> list:
    """``[(z_b, d), ...]``: the break-points (in z) past which, in direction ``d`` (+1 or -1, away from z = 0), h
    lives beyond the float64 rule's ``[-cut, cut]``, or too close to it for the density to fall by e^-40 first.

    The cut is chosen where ``|h|`` times the density has decayed on a grid inside it; a piece that starts at a
    break-point near or past the cut (the step H(x - 11) at q = 1, zero on the grid out to 10) is invisible to
    that test, and its integrals came out exactly 0.  Such a piece counts where ``|h| exp(-z^2/2)`` just past the
    break-point is within e^-40 of its largest value on the grid (in logs: out there the density underflows)."""
    far = [float(b) for b in breakpoints_z
           if abs(float(b)) + math.sqrt(float(b) ** 2 + 2 * _F64_REACH_LOG) - abs(float(b)) > cut]
    if not far:
        return []
    grid = np.linspace(-cut, cut, int(2 * cut))   # (no node at 0, as in _f64_tail_cut)
    inside = _log_abs_density(h, mean, std, grid)
    inside = inside[np.isfinite(inside)]
    top = float(np.max(inside)) if inside.size else -math.inf
    out = []
    for zb in sorted(set(far)):
        d = 1.0 if zb > 0 else -1.0
        steps = (_F64_REACH_STEPS + 1e-6) / max(abs(zb), 1.0)
        past = _log_abs_density(h, mean, std, zb + d * steps)
        past = past[~np.isnan(past)]
        if past.size and float(np.max(past)) > top - _F64_REACH_LOG:
            out.append((zb, d))
    return out


def _f64_starts(h: Callable, std: float, breakpoints_z: Sequence[float], cut: float) -> list:
    """``[(z_b, d), ...]``: the break-points (in z) where a piece of h starts: h is 0 at every node of a grid on
    ``[-cut, cut]`` short of z_b and nonzero just past it, in direction d (H(x - 11): (11, +1); relu: (0, +1))."""
    grid = np.linspace(-cut, cut, int(2 * cut))
    with np.errstate(over="ignore", invalid="ignore"):
        on_grid = np.asarray(h(std * grid), dtype=np.float64)
    out = []
    for zb in sorted(set(float(b) for b in breakpoints_z)):
        for d in (1.0, -1.0):
            short = d * (grid - zb) < 0
            with np.errstate(over="ignore", invalid="ignore"):
                past = np.asarray(h(std * (zb + d * (_F64_REACH_STEPS + 1e-6) / max(abs(zb), 1.0))), dtype=np.float64)
            if np.all(on_grid[short] == 0) and np.any(past != 0):
                out.append((zb, d))
    return out


def _f64_joint_reach(starts_f: Sequence, starts_g: Sequence, c: float, cut: float) -> list:
    """Where E[f(u) g(v)] lives past the 2-D rule's cut, from the pieces where f and g start (:func:`_f64_starts`):
    ``[(point, active), ...]`` with ``point = (z1, z2)`` the point of ``{d_f (z1 - z_f) >= 0, d_g (c z1 + s z2 - z_g)
    >= 0}`` nearest the origin (there the joint density, exp(-(z1^2 + z2^2)/2), is largest: its mass lies next to it),
    ``active`` which of the two constraints hold there ('f', 'g', 'fg'), for each pair whose point lies within
    ``sqrt(2 * 40)`` of the cut or beyond: H(x - 3) at c = -0.9 lives at (3, 13), past the cut of 10 in z2."""
    s = math.sqrt((1 - c) * (1 + c))
    out = []
    for sf in list(starts_f) + [None]:
        for sg in list(starts_g) + [None]:
            if sf is None and sg is None:
                continue
            cands = [((0.0, 0.0), "")]
            if sf is not None:
                cands.append(((sf[0], 0.0), "f"))
            if sg is not None:
                cands.append(((c * sg[0], s * sg[0]), "g"))
            if sf is not None and sg is not None:
                cands.append(((sf[0], (sg[0] - c * sf[0]) / s), "fg"))

            def feasible(p):
                ok = sf is None or sf[1] * (p[0] - sf[0]) >= -1e-12 * max(1.0, abs(sf[0]))
                return ok and (sg is None or sg[1] * (c * p[0] + s * p[1] - sg[0]) >= -1e-12 * max(1.0, abs(sg[0])))
            found = [(math.hypot(*p), p, a) for p, a in cands if feasible(p)]
            if not found:
                continue
            rho, point, active = min(found)
            if active and max(abs(point[0]), abs(point[1])) + math.sqrt(rho * rho + 2 * _F64_REACH_LOG) - rho > cut:
                out.append((point, active, sf, sg))
    return out


def _f64_outer_reach_edges(joint: Sequence, c: float, level: int) -> list:
    """Outer panel edges (z1) around the points of :func:`_f64_joint_reach`.  Where f's piece starts there, the
    outer integrand is 0 short of z_f and falls past it like exp(-lambda t - t^2 / (2 s^2)), lambda the slope of
    (z1^2 + z2^2)/2 along g's edge (z2 moving with z1 when g's constraint holds too): geometric panels of 1/lambda
    out to e^-80; where only g's does, z1 given v = r2 z_g is N(c z_g, s^2): panels of width s around c z_g."""
    s = math.sqrt((1 - c) * (1 + c))
    edges = []
    for (z1, z2), active, sf, sg in joint:
        if "f" in active:
            d = sf[1]
            rate = abs(z1 - (c / s) * z2) if active == "fg" else abs(z1)
            curvature = 1 / (s * s) if active == "fg" else 1.0
            end = (-rate + math.sqrt(rate * rate + 4 * curvature * _F64_REACH_LOG)) / curvature   # rate t + k t^2 / 2 = 80
            unit = 1.0 / max(rate, 1.0) / 2 ** level
            ts = _F64_REACH_STEPS * unit
            edges += [z1 + d * t for t in ts[ts < end]] + [z1 + d * end]
        else:
            edges += [z1 + k * s for k in (-16.0, -8.0, -4.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)]
    return edges


def _f64_reach_edges(h: Callable, mean: float, std: float, reach: Sequence, level: int = 0) -> list:
    """Panel edges past the far break-points ``reach`` (from :func:`_f64_reach`): z_b + d t, t on geometric steps
    of 1/|z_b| (2^-level as fine at refinement ``level``), out to where ``|h|`` times the density has fallen
    e^-40 below its largest value past z_b (doubling the step until it has; h growing past z_b, x H(x - a),
    needs a little more than the density alone)."""
    edges = []
    for zb, d in reach:
        unit = 1.0 / max(abs(zb), 1.0)
        steps = _F64_REACH_STEPS * unit / 2 ** level
        end = math.sqrt(zb * zb + 2 * _F64_REACH_LOG) - abs(zb)
        top = float(np.nanmax(np.append(_log_abs_density(h, mean, std, zb + d * (steps + 1e-6 * unit)), -math.inf)))
        for _ in range(8):
            probe = _log_abs_density(h, mean, std, np.array([zb + d * end]))[0]
            if not probe > top - _F64_REACH_LOG:   # (nan: h is not finite out there; the rule will say so)
                break
            end *= 2
        edges += [zb + d * t for t in steps[steps < end]] + [zb + d * end]
    return edges


def _f64_checked(values: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(values)
    if np.iscomplexobj(values):
        if np.any(np.abs(values.imag) > 0):
            raise NonRealExpressionError(f"{what} takes complex values; use a real-valued activation.")
        values = values.real
    values = values.astype(np.float64, copy=False)
    if not np.all(np.isfinite(values)):
        raise DivergentIntegralError(
            f"{what} is not finite at some quadrature node (|x| <= 12 std, or the wider cut of a late-decaying "
            "integrand): it overflows or is undefined "
            "in float64; use the mpmath engine, or check the formula's domain.")
    return values


def gaussian_expectation_float64(f: Callable, *, order: int | None = None, mean: float = 0.0,
                                 std: float = 1.0, breakpoints: Sequence[float] = (),
                                 singular_points: Sequence[float] = (), scale: float = 1.0,
                                 with_mass: bool = False) -> float | tuple[float, float]:
    """``E[f(mean + std*z)]`` in float64 for a vectorised NumPy ``f``.

    ``order=None`` (default): composite Gauss-Legendre on ``z in [-12, 12]`` (the Gaussian tail
    beyond carries < 1e-31; wider, up to 36, where ``|f| * density`` has not fallen below 1e-13 of its
    peak by 12, as for ``exp(x)`` at ``std = sqrt(8)``), unit panels split at the ``breakpoints`` (x variable) and, for
    ``std > 1``, graded geometrically down to width ``1/std`` towards ``x = 0`` and the breakpoints
    (where ``f`` varies on a unit scale in x, i.e. ``1/std`` in z), with
    adaptive order: 16 and 32 nodes per panel are compared and the rule is refined to 64 if they
    differ by more than :data:`FLOAT64_RELATIVE_TOLERANCE` of ``E|f|``.  If 32 and 64 still differ
    (``f`` varies on a scale finer than 1 in x, like ``tanh(10 x)``, or oscillates, like ``sin(3 x)``
    at large ``std``), the panels are refined: up to three more levels, each halving the panel width
    and grading towards ``x = 0`` and the breakpoints down to 1/8 of the previous scale.  If no level
    converges, :class:`DivergentIntegralError` says so (no unconverged number is returned).
    ``scale`` (x variable, default 1): the width of ``f``'s features at ``x = 0`` and the
    breakpoints when known (``0.001`` for ``erf(1000 x)``), where level 0 starts grading: a
    feature that falls between all nodes of every rule cannot be detected by comparing them.
    Smooth-on-pieces integrands reach ~1e-15 relative; the tests check 1e-12 against the
    mpmath engine.

    A break-point past which ``f`` lives beyond the cut, or too near it for the density to fall by e^-40 first
    (``H(x - 20)``), is reached past: geometric panels of 1/|z_b| out to where ``|f|`` times the density has fallen
    by e^-40 (:func:`_f64_reach`).

    ``singular_points`` (x variable): integrable singularities (log|x| at 0); the panels are
    split there and graded geometrically towards them down to width 2^-40 |z| (2^-120 at z = 0),
    where Gauss-Legendre resolves log singularities to float64 resolution; a power singularity
    |x - b|^-a off z = 0 may still not converge (then the error below says so).

    ``order=n``: probabilists' Gauss-Hermite with ``n`` nodes (exact for polynomials of degree
    ``< 2n``; slow geometric convergence for ``tanh``-like functions, so not the default); it takes
    no ``breakpoints``, ``singular_points`` or ``scale`` (a DomainError says so).

    ``with_mass=True``: return ``(value, mass)``, ``mass`` being the rule's ``E|f|`` (at least
    ``|value|``), the scale its convergence test and rounding error are relative to.  The relative
    error of ``value`` is only bounded by about ``1e-13 * mass / |value|``: a caller whose ``f``
    cancels (``E|f| >> |E f|``) must check that ratio itself.

    >>> round(gaussian_expectation_float64(lambda x: x**4), 12)
    3.0
    """
    if not std > 0:
        raise DomainError(f"std={std!r}: the standard deviation must be positive.")
    _check_finite(std=std, mean=mean)
    if not 0 < scale <= 1:
        raise DomainError(f"scale={scale!r}: the feature width must lie in (0, 1].")
    if order is not None:
        if int(order) != order or order < 1:
            raise DomainError(f"order={order!r}: the Gauss-Hermite rule needs a whole number of nodes >= 1.")
        ignored = [name for name, v in (("breakpoints", breakpoints), ("singular_points", singular_points))
                   if len(list(v))] + (["scale"] if scale != 1 else [])
        if ignored:
            # they were silently dropped: E[step(x - 0.3)] with order=20, breakpoints=[0.3] came back 31% off
            raise DomainError(
                f"order={order!r} with {', '.join(ignored)}: the Gauss-Hermite rule has fixed nodes and cannot "
                "split or grade at them (across a kink it converges only algebraically); leave order=None for "
                "the composite rule, which does.")
        z, w = np.polynomial.hermite_e.hermegauss(int(order))
        vals = _f64_checked(f(mean + std * z), "f")
        val = float(np.dot(w, vals) / math.sqrt(2 * math.pi))
        if with_mass:
            return val, max(abs(val), float(np.dot(w, np.abs(vals)) / math.sqrt(2 * math.pi)))
        return val
    cut = _f64_tail_cut(f, mean, std)
    kinks_z = [(float(b) - mean) / std for b in breakpoints]
    # a piece of f that starts at a break-point near or past the cut (H(x - 40) at q = 1) is reached past it
    reach = _f64_reach(f, mean, std, kinks_z, cut)
    singular_z = []
    for point in singular_points:
        zs = (float(point) - mean) / std
        singular_z += _smoothed_kink_edges([zs], _SINGULAR_PANEL * abs(zs) if zs else _SINGULAR_PANEL_AT_0)
    change = None
    for level in range(_F64_LEVELS):
        # f varies on a scale `ell` in x near x = 0 and its kinks, i.e. ell/std in z: grade the panels
        # geometrically towards those points down to that width (tanh at q = 1e8 lies within
        # |z| < 1e-3).  Level 0 assumes `scale` (1 unless known); each further level divides ell by 8 and the
        # panel width by 2, for activations with a finer scale (tanh(10 x)) or oscillations (sin(3 x)).
        ell = scale * 8.0 ** -level
        bz = kinks_z + _graded_edges([-mean / std] + kinks_z, ell / std) + singular_z
        prev = None
        for npp in (16, 32, 64):
            z, w = _f64_rule(bz, npp, cut, _F64_PANEL / 2**level, _f64_reach_edges(f, mean, std, reach, level))
            values = _f64_checked(f(mean + std * z), "f")
            val = float(np.dot(w, values))
            # relative to E|f|: a mean that cancels to ~0 (an odd f) is converged at rounding level
            mass = max(abs(val), float(np.dot(w, np.abs(values))), 1e-300)
            if prev is not None and abs(val - prev) <= FLOAT64_RELATIVE_TOLERANCE * mass:
                return (val, mass) if with_mass else val
            change, prev = (None if prev is None else abs(val - prev) / mass), val
    raise DivergentIntegralError(
        f"the float64 rule for E[f] did not converge: with panels refined {_F64_LEVELS - 1} times "
        f"(down to width {ell:g}/std in z around x = 0 and the break-points), 32 and 64 nodes per panel "
        f"still differ by {change:.1e} of E|f| (tolerance {FLOAT64_RELATIVE_TOLERANCE:g}). f has a "
        "feature the panels do not resolve: an integrable singularity (log|x| at 0), a kink that is not "
        "among the break-points, a scale finer than the rule reaches or fast oscillation. Pass "
        "breakpoints= at kinks, or use the mpmath engine (gaussian_expectation, engine='mpmath').")


def _rms(w: np.ndarray, values: np.ndarray) -> float:
    """sqrt(sum w values^2) without overflow or underflow in the squares (``w >= 0``)."""
    top = float(np.max(np.abs(values))) if values.size else 0.0
    if not 0 < top < math.inf:
        return top
    return top * math.sqrt(float(np.dot(w, (values / top) ** 2)))


# Narrowest panel next to a cusp (|x|^a, 0 < a < 1: finite, with an infinite slope) in the 2-D rule, in z.
# The integrand's mass on such a panel is below 2^-40 of its scale (2^(-40 (1 + a)) for |z|^a), and
# Gauss-Legendre's error there a small part of that; the panels widen by 2 away from it (about 40 per side).
_CUSP_PANEL = 2.0**-40


def _bivariate_f64_once(f, g, ci, r1, r2, fb, gb, npp, level, scale=1.0, cut=_F64_CUTS2[0],
                        fc=(), gc=np.empty(0), reach_f=(), reach_g=(), log_mode=False):
    """One tensor Gauss-Legendre evaluation of E[f(u) g(v)] on [-cut, cut]^2 at refinement ``level``
    with ``npp`` nodes per panel; returns (value, sqrt(E f(u)^2 E g(v)^2)), the latter on the outer
    rule (the Cauchy-Schwarz bound of |value|, the scale the convergence test is relative to).
    ``fc`` (z1) and ``gc`` (v / r2): cusps of f and g, graded towards down to :data:`_CUSP_PANEL`.
    ``reach_f`` (z1) and ``reach_g`` (v / r2): break-points ``(z_b, d)`` where pieces of f and g start
    (:func:`_f64_starts`); where the joint mass of such pieces lies near or past the cut (:func:`_f64_joint_reach`),
    both rules reach past it, the inner one past the point that moves with z1.

    ``log_mode`` (``|c| < 1`` only): the same rule, each term ``w1 w2 f(u) g(v)`` formed from the logs of its factors
    and divided by ``e^M``, M the largest term's log (a running log-sum-exp): returns ``(value, mass, M)`` with
    ``E[f(u) g(v)] ~ value e^M`` and ``E|f(u) g(v)| ~ mass e^M``, where the plain sums underflow (H(x - 30) at c = 0.1:
    terms near e^-818, below float64's 1e-308, though C = E[f g] / Q is 1e-157)."""
    panel = _F64_PANEL2 / 2**level
    ell = scale * 8.0 ** -level    # the x scale f and g are assumed to vary on near 0 and their kinks
    obps = list(fb) + list(fc)
    s = math.sqrt((1 - ci) * (1 + ci))
    g_features = np.concatenate([gb, gc])   # E[g(v) | z1] has g's kinks and cusps, smoothed over s / |c|
    if ci != 0:
        obps += _smoothed_kink_edges(g_features / ci, abs(s / ci))
    # f and g vary on a scale ell in x around 0 (and their kinks): ell/r in z, which the
    # 1.25-wide panels miss for large q or small ell.  Outer: f's features at width ell/r1; g's seen
    # through E[g(v) | z1], smoothed over r2 s, at width max(ell/r2, s) / |c|.
    obps += _graded_edges([0.0] + obps, ell / r1)
    if ci != 0:
        obps += _graded_edges([0.0] + list(g_features / ci), max(ell / r2, s) / abs(ci))
    # added last, so that the grading above is not repeated around each of these ~80 edges
    obps += _smoothed_kink_edges(list(fc), _CUSP_PANEL)
    joint = _f64_joint_reach(reach_f, reach_g, ci, cut) if s != 0 else []
    z1, w1 = _f64_rule(obps, npp, cut, panel, _f64_outer_reach_edges(joint, ci, level), log=log_mode)
    fz = _f64_checked(f(r1 * z1), "f")
    if log_mode:
        bound = math.nan    # (not used: the scaled rule converges relative to its mass)
    else:
        gz = _f64_checked(g(r2 * z1), "g")
        # one root per factor, each scaled by its largest value: the product of the two mean squares
        # overflowed (gelu at q = 1e200: 1e200 x 1e200), the bound came out inf and every rule "converged"
        bound = _rms(w1, fz) * _rms(w1, gz)
    if s == 0:
        return float(np.dot(w1, fz * _f64_checked(g(ci * r2 * z1), "g"))), bound
    # inner: g's features at v = 0 and its kinks, z2 = (b / r2 - c z1) / s, width ell / (r2 s)
    t, wt = _leggauss(npp)
    inner_width = ell / (r2 * s)
    if gb.size == 0 and gc.size == 0 and not inner_width < 1 and not log_mode:
        z2, w2 = _f64_rule((), npp, cut, panel)
        inner = np.empty_like(z1)
        for k in range(0, z1.size, _F64_CHUNK):
            v = r2 * (ci * z1[k:k + _F64_CHUNK, None] + s * z2[None, :])
            inner[k:k + _F64_CHUNK] = _f64_checked(g(v), "g") @ w2
        return float(np.dot(w1, fz * inner)), bound
    # per outer node: panels of the fixed grid plus the moving kink(s)
    edges0 = np.linspace(-cut, cut, int(round(2 * cut / panel)) + 1)
    kinks = (gb[None, :] - ci * z1[:, None]) / s          # (n1, nk)
    if inner_width < 1:
        centres = np.concatenate([kinks, -ci * z1[:, None] / s], axis=1)
        offs = inner_width * 2.0 ** np.arange(int(math.ceil(math.log2(1 / inner_width))))
        offs = np.concatenate([[0.0], offs, -offs])
        kinks = (centres[:, :, None] + offs[None, None, :]).reshape(z1.size, -1)
    if gc.size:   # the moving cusps, z2 = (b / r2 - c z1) / s, graded towards from both sides
        moving = (gc[None, :] - ci * z1[:, None]) / s
        offs = _CUSP_PANEL * 2.0 ** np.arange(int(math.ceil(math.log2(2 / _CUSP_PANEL))))
        offs = np.concatenate([[0.0], offs, -offs])
        kinks = np.concatenate([kinks, (moving[:, :, None] + offs[None, None, :]).reshape(z1.size, -1)], axis=1)
    kinks = np.clip(kinks, -cut, cut)
    inner_reach = {sg for _, active, _, sg in joint if "g" in active}
    if inner_reach:
        # past a moving break-point where g's piece starts and the joint mass lies past the cut (z2 = (z_b - c z1)
        # / s; v grows with z2, so g lives on the same side d of it in z2 as in v): geometric panels out to where
        # the density has fallen by e^-40 (twice that, for a g that grows out there), clipped to the cut on the
        # other side only
        far = []
        for zb, d in sorted(inner_reach):
            moving = (zb - ci * z1) / s
            unit = 1.0 / np.maximum(np.abs(moving), 1.0)
            end = 2 * (np.sqrt(moving * moving + 2 * _F64_REACH_LOG) - np.abs(moving))
            steps = np.minimum(_F64_REACH_STEPS[None, :] / 2 ** level * unit[:, None], end[:, None])
            edges = moving[:, None] + d * np.concatenate([steps, end[:, None]], axis=1)
            far.append(np.maximum(edges, -cut) if d > 0 else np.minimum(edges, cut))
        kinks = np.concatenate([kinks] + far, axis=1)
    inner = np.empty_like(z1)
    chunk = max(1, _F64_CHUNK * 64 // (edges0.size + kinks.shape[1]))
    if log_mode:
        with np.errstate(divide="ignore"):
            log_outer = w1 + np.log(np.abs(fz))     # (w1 holds the outer weights' logs here)
        top, value, mass = -math.inf, 0.0, 0.0
    for k in range(0, z1.size, chunk):
        kk = kinks[k:k + chunk]
        edges = np.sort(np.concatenate([np.broadcast_to(edges0, (kk.shape[0], edges0.size)), kk], axis=1), axis=1)
        a, b = edges[:, :-1, None], edges[:, 1:, None]
        z2 = (a + b) / 2 + (b - a) / 2 * t[None, None, :]
        v = r2 * (ci * z1[k:k + chunk, None, None] + s * z2)
        if log_mode:
            gv = _f64_checked(g(v), "g")
            with np.errstate(divide="ignore"):
                terms = (log_outer[k:k + chunk, None, None] + np.log((b - a) / 2 * wt[None, None, :]) - z2 * z2 / 2
                         - _LOG_SQRT_2PI + np.log(np.abs(gv)))
            chunk_top = float(np.max(terms)) if terms.size else -math.inf
            if chunk_top == -math.inf:
                continue
            if chunk_top > top:     # rescale what is summed so far to the new largest term
                value, mass = value * math.exp(top - chunk_top), mass * math.exp(top - chunk_top)
                top = chunk_top
            scaled = np.exp(terms - top)
            value += float(np.sum(scaled * np.sign(gv) * np.sign(fz[k:k + chunk, None, None])))
            mass += float(np.sum(scaled))
            continue
        w2 = (b - a) / 2 * wt[None, None, :] * np.exp(-z2 * z2 / 2) / math.sqrt(2 * math.pi)
        inner[k:k + chunk] = np.sum(_f64_checked(g(v), "g") * w2, axis=(1, 2))
    if log_mode:
        return value, mass, top
    return float(np.dot(w1, fz * inner)), bound


def _f64_edge_density(f, g, c, r1, r2, cut, extended=()) -> float:
    """The log of the largest |f(u) g(v)| times the joint density (in z1, z2) on the edges of the 2-D rule's square
    ``[-cut, cut]^2``, sampled: the outer edges z1 = +-cut against z2 on [-max(38, cut), max(38, cut)] (where the
    inner rule may reach), the inner edges z2 = +-cut against z1 on the square's side, except the sides ``extended``
    (+1, -1: the inner rule reaches past them).  A kernel far below the Cauchy-Schwarz bound can live outside the
    square where the marginal tail cuts do not see it: the bump exp(-(x - 7)^2) at c = -0.9 lives at z2 ~ 20, and
    its C came out 2e-8 off (relative) with the rule converged.  In logs, -inf where it vanishes: the density
    underflows there for the square's of the scaled rule (its edges may lie past |z| = 38)."""
    s = math.sqrt((1 - c) * (1 + c))
    side = np.linspace(-cut, cut, int(8 * cut) + 1)
    reach = max(38.0, cut)
    wide = np.linspace(-reach, reach, int(8 * reach) + 1)
    top = -math.inf
    for sign in (1.0, -1.0):
        fz = _log_abs_density(f, 0.0, r1, np.array([sign * cut]))
        gz = _log_abs_density(lambda t: g(r2 * (c * sign * cut + s * t)), 0.0, 1.0, wide)
        top = max(top, float(np.nanmax(np.append(fz + gz, -math.inf))))
        if sign not in extended:
            fz = _log_abs_density(f, 0.0, r1, side)
            gz = _log_abs_density(lambda t: g(r2 * (c * side + s * t)), 0.0, 1.0, np.full(side.shape, sign * cut))
            top = max(top, float(np.nanmax(np.append(fz + gz, -math.inf))))
    return top - 2 * _LOG_SQRT_2PI


#: The grid on which :func:`_f64_mass_cut` looks for the 2-D integrand's mass: |z1|, |z2| <= 64 in steps of 1/4.
_F64_MASS_GRID = np.linspace(-64.0, 64.0, 513)
#: How far (natural log) below its peak the 2-D integrand's sampled log must fall before the square may end there:
#: e^-50 (2e-22), past the edge test's 1e-14 of the mass with room for the samples' 1/4 spacing
_F64_MASS_LOG = 50.0


def _f64_mass_cut(f, g, c, r1, r2) -> float | None:
    """The half-width of a square in (z1, z2) that holds the mass of |f(u) g(v)| times the joint density: where its
    log, sampled on :data:`_F64_MASS_GRID`, is within e^-50 of its largest value, plus 2, rounded up; None where that
    region reaches the grid's edge (or f g vanishes on the whole grid).

    For the 2-D rule whose square, set by the tail tests of f^2 and g^2, misses an integrand that lives off the
    axes: the bump exp(-(x - a)^2) at c = -0.9 has its mass near u = v = a/6, i.e. z2 = (v - c u)/s = 14.5 for
    a = 20, and its e^-50 region reaches z2 = 20.6, past the square's 20."""
    s = math.sqrt((1 - c) * (1 + c))
    z = _F64_MASS_GRID
    log_f = _log_abs_density(f, 0.0, r1, z)
    log_g = _log_abs_density(lambda t: g(r2 * (c * z[:, None] + s * t)), 0.0, 1.0, z[None, :])
    total = log_f[:, None] + log_g
    total = np.where(np.isnan(total), -math.inf, total)
    top = float(np.max(total))
    if top == -math.inf:
        return None
    i, j = np.nonzero(total >= top - _F64_MASS_LOG)
    reach = max(float(np.max(np.abs(z[i]))), float(np.max(np.abs(z[j]))))
    if reach >= z[-1] - 1:
        return None
    return float(math.ceil(reach + 2))


#: |E[f(u) g(v)]| below this fraction of the Cauchy-Schwarz bound sqrt(E f^2 E g^2): the float64 2-D rule's
#: convergence test is made relative to E|f(u) g(v)| as well (one more evaluation, on |f| and |g|)
_F64_SMALL_KERNEL = 1e-3
#: E|f(u) g(v)| below this underflows: the 2-D rule's terms become subnormal, each rounded to 4.9e-324 absolute,
#: and on up to ~1e6 nodes that is 5e-318, above 1e-14 of such a value; the rule raises instead of returning it
#: (tanh at q = 1e-300, E|f g| = 5e-301, still computes)
_F64_TINY = 1e-303


def _has_density(c) -> bool:
    """Whether s = sqrt((1 - c)(1 + c)) > 0, i.e. |c| < 1: (u, v) has a density, positive everywhere."""
    return abs(c) < 1


# outer nodes per block of the 2-D rule's inner sums (bounds the memory at level 2: ~2000 x 2000 nodes)
_F64_CHUNK = 256


def bivariate_gaussian_expectation_float64(f: Callable, g: Callable, c, *, q1: float = 1.0,
                                           q2: float = 1.0, breakpoints: Sequence[float] = (),
                                           breakpoints_g: Sequence[float] | None = None,
                                           nodes_per_panel: int = 16, scale: float = 1.0,
                                           with_error: bool = False, cusps: Sequence[float] = (),
                                           cusps_g: Sequence[float] | None = None,
                                           log_scale: bool = False) -> np.ndarray | tuple:
    """float64 ``E[f(u) g(v)]`` (same conventions as :func:`bivariate_gaussian_expectation`),
    vectorised over an array of correlations ``c``.

    Tensor composite Gauss-Legendre rule on ``[-10, 10]^2`` in ``(z1, z2)`` (16 panels per axis;
    wider, up to 36, where ``f^2`` or ``g^2`` times the density has not fallen below 1e-16 of its peak
    by 10, as for ``exp(x)`` at ``q >= 4``);
    the outer rule is split at the kinks of ``f``; for every outer node the inner panels are split
    at the moving kink ``z2 = (b / sqrt(q2) - c z1) / s``.  For large variances both rules are also
    graded geometrically towards ``x = 0`` and the kinks (down to width ``1/sqrt(q)`` in z), where
    the functions vary on a unit scale in x.

    Error control: the rule is evaluated with 3/4 of ``nodes_per_panel`` (12), then 16, then 24
    nodes per panel until two successive ones agree to :data:`FLOAT64_RELATIVE_TOLERANCE` of
    ``sqrt(E f(u)^2 E g(v)^2)`` (the Cauchy-Schwarz bound of the result); if 16 and 24 differ by
    more, the panels are refined
    (each level halves them and grades towards ``x = 0`` and the kinks down to 1/8 of the previous
    scale: for ``tanh(10 x)``-like activations, or oscillating ones at large q) up to two levels;
    if none converges, :class:`DivergentIntegralError` says so and recommends the mpmath engine.
    ``scale``: as in :func:`gaussian_expectation_float64` (the known width of the features of f and
    g at x = 0 and the breakpoints; level 0 grades down to it).
    Returns an array shaped like ``c``.

    ``cusps`` (``cusps_g``, default ``cusps``): points in x where f (g) is finite but its slope is not
    (``sqrt(|x|)``, ``|x|^0.3`` at 0), across which the panels converge too slowly (the rule refused
    them): both rules are graded towards them, the inner one towards the point that moves with the
    outer variable, down to panels of width 2^-40 in z.

    Pieces that start at a break-point (f or g zero short of it, H(x - 11)) and whose joint mass lies near or past
    the cut: the point of their overlap nearest the origin is found (:func:`_f64_joint_reach`) and both rules reach
    past it on geometric panels.  Where ``|E[f g]|`` is below 1e-3 of the Cauchy-Schwarz bound the convergence test
    is also made relative to ``E|f(u) g(v)|``, and ``|f g|`` times the density on the square's edge must be below
    1e-14 of that: where it is not (the mass lies off the axes, outside the square: the bump exp(-(x - 20)^2) at
    c = -0.9 lives near z2 = 14.5), the square is widened to where ``log|f g|`` plus the density's log, sampled on
    ``|z1|, |z2| <= 64`` (:func:`_f64_mass_cut`), is within e^-50 of its peak, and the rule run again
    (DivergentIntegralError where no such square holds it).

    Where ``E|f(u) g(v)|`` is below 1e-303 (at ``|c| < 1``) the plain sums underflow (their terms lose their
    digits): a DomainError says so, unless ``log_scale=True``: then the rule is run again with every term formed
    from its logs and divided by ``e^L``, L the largest term's log, and the values are returned as
    ``(values, log_scales)`` with ``E[f(u) g(v)] = values * exp(log_scales)`` (``log_scales`` 0 where the plain
    rule served; ``(values, errors, log_scales)`` with ``with_error``, the errors in the same units), so that a
    caller can form a representable ratio such as ``E[f g] / sqrt(E f^2 E g^2)`` (H(x - 30) at c = 0.1: E[f g]
    ~ e^-820, against E f^2 = 4.9e-198).

    ``with_error=True``: return ``(values, errors)``, ``errors`` an estimate of each value's absolute
    error: the last two rules' difference plus 4 ulps of ``E|f(u) g(v)|`` (the rounding of the sums; one
    more evaluation of the accepted rule, on ``|f|`` and ``|g|``).  A value far below the Cauchy-Schwarz
    bound can lie below it: ``x exp(-x^2)`` at ``q1 = q2 = 1e100``, ``c = 0.3`` (``E[f g]`` = 4.3e-202 against
    ``E|f g|`` ~ 2e-101) came out -6e-118 with an error estimate of 1.6e-116.
    """
    if breakpoints_g is None:
        breakpoints_g = breakpoints
    if cusps_g is None:
        cusps_g = cusps
    c_arr = np.atleast_1d(np.asarray(c, dtype=np.float64))
    if np.any(np.abs(c_arr) > 1) or np.any(~np.isfinite(c_arr)):
        raise DomainError("c must lie in [-1, 1] (a cosine similarity); got values outside.")
    if not (q1 > 0 and q2 > 0):
        raise DomainError(f"q1={q1}, q2={q2}: variances must be > 0.")
    _check_finite(q1=q1, q2=q2)
    if not 0 < scale <= 1:
        raise DomainError(f"scale={scale!r}: the feature width must lie in (0, 1].")
    if not is_whole_number(nodes_per_panel, 2):
        # 0, 1 or -4 reached NumPy as a bare "deg must be a positive integer"; 2.5 was truncated to 2
        raise DomainError(f"nodes_per_panel={nodes_per_panel!r}: the Gauss-Legendre panels need a whole "
                          "number of nodes >= 2 (default 16).")
    r1, r2 = math.sqrt(q1), math.sqrt(q2)
    cuts = []
    for h, r, name in ((f, r1, "f^2"), (g, r2, "g^2")):
        square = (lambda t, h=h: h(t) ** 2)
        one_d = _f64_tail_cut(square, 0.0, r, name)    # raises where E[h^2] diverges
        try:
            cuts.append(_f64_tail_cut(square, 0.0, r, name, cuts=_F64_CUTS2, tolerance=1e-16))
        except DivergentIntegralError:   # representable to the 1-D cut only: the most float64 allows
            cuts.append(one_d)
    cut = max(cuts)
    gb = np.array([float(b) / r2 for b in breakpoints_g], dtype=np.float64)
    fb = [float(b) / r1 for b in breakpoints]
    gc = np.array([float(b) / r2 for b in cusps_g], dtype=np.float64)
    fc = [float(b) / r1 for b in cusps]
    # pieces of f or g that start at a break-point near or past the cut (H(x - 11) at q = 1 is zero on all of
    # [-10, 10]: every E[f(u) g(v)] came out exactly 0): both rules reach past those break-points
    reach_f = _f64_starts(f, r1, fb, cut)
    reach_g = _f64_starts(g, r2, list(gb), cut)
    npp = int(nodes_per_panel)
    out = np.empty_like(c_arr)
    errors = np.empty_like(c_arr)
    log_scales = np.zeros_like(c_arr)
    absf, absg = (lambda t: np.abs(f(t))), (lambda t: np.abs(g(t)))

    def outside(ci, cut_i, log_mass):
        """Whether |f g| times the density on the square's edge exceeds 1e-14 of the mass inside (in logs)."""
        joint = _f64_joint_reach(reach_f, reach_g, ci, cut_i) if abs(ci) < 1 else []
        extended = {sg[1] for _, active, _, sg in joint if "g" in active}
        return _f64_edge_density(f, g, ci, r1, r2, cut_i, extended) > math.log(1e-14) + log_mass

    def not_reached(ci, cut_i, edge_log, log_mass):
        return DivergentIntegralError(
            f"the float64 2-D rule for E[f(u) g(v)] at c = {ci:g}, q1 = {q1:g}, q2 = {q2:g} does not reach where it "
            f"lives: |f(u) g(v)| times the density is e^{edge_log:.1f} on the edge of its range |z1|, |z2| <= "
            f"{cut_i:g}, against E|f(u) g(v)| = e^{log_mass:.1f} inside, and no square up to |z| = "
            f"{_F64_MASS_GRID[-1]:g} holds its mass (f and g overlap only far out, or the integrand's tails are too "
            "wide). Use the mpmath engine (engine='mpmath', bivariate_gaussian_expectation), which reaches past its "
            "range.")

    def solve(ci, cut_i, log_mode):
        """(value, error, log scale, None, mass, bound), or (None, None, None, wider cut, None, None) where the mass
        lies outside the square: value, error and mass in units of e^(log scale) (0 but in ``log_mode``)."""
        for level in range(_F64_LEVELS2):
            # level 0 first tries the cheap pair (3/4 npp, npp): enough for ordinary activations
            sizes = ((3 * npp) // 4, npp, npp + npp // 2) if level == 0 else (npp, npp + npp // 2)
            coarse, mass, top = None, None, 0.0
            for m in sizes:
                args = (ci, r1, r2, fb, gb, m, level, scale, cut_i, fc, gc, reach_f, reach_g)
                if log_mode:   # scaled by e^-top (each rule by its own largest term; compared on the finer's)
                    fine, mass, fine_top = _bivariate_f64_once(f, g, *args, log_mode=True)
                    if coarse is not None:
                        coarse *= math.exp(top - fine_top) if fine_top > -math.inf else 0.0
                    top = fine_top
                    bound = math.inf
                else:
                    fine, bound = _bivariate_f64_once(f, g, *args)
                if coarse is not None:
                    change = abs(fine - coarse) / max(mass if log_mode else bound, 1e-300)
                    small = log_mode or abs(fine) < _F64_SMALL_KERNEL * bound
                    if change <= FLOAT64_RELATIVE_TOLERANCE and small and mass != 0:
                        # a value far below the Cauchy-Schwarz bound (H(x - 11): E[f(u) g(v)] = 3e-38 at c = 0.5
                        # against E f(u)^2 = 2e-28) converges relative to E|f(u) g(v)|: relative to the bound it
                        # kept no more than 3 digits
                        if not log_mode:
                            mass = _bivariate_f64_once(absf, absg, *args)[0]
                            change = abs(fine - coarse) / max(mass, 1e-300)
                        log_mass = (math.log(mass) if mass > 0 else -math.inf) + top
                        if mass > 0 and outside(ci, cut_i, log_mass):
                            # (the tail past the edge: about edge x 1 in z) the mass lies outside the square: widen it
                            # to where the integrand is sampled to live (the bump exp(-(x - 20)^2) at c = -0.9 lives
                            # at z2 = 14.5, and its tail reaches past the square's 20)
                            wider = _f64_mass_cut(f, g, ci, r1, r2)
                            if wider is None or wider <= cut_i:
                                edge_log = _f64_edge_density(f, g, ci, r1, r2, cut_i)
                                raise not_reached(ci, cut_i, edge_log, log_mass)
                            return None, None, None, wider, None, None
                    if change <= FLOAT64_RELATIVE_TOLERANCE:
                        break
                coarse = fine
            else:
                continue
            if mass is None:
                mass = _bivariate_f64_once(absf, absg, *args)[0] if with_error or abs(fine) < _F64_TINY else abs(fine)
            return fine, abs(fine - coarse) + 4 * np.finfo(np.float64).eps * mass, top, None, mass, bound
        raise DivergentIntegralError(
            f"the float64 2-D rule for E[f(u) g(v)] at c = {ci:g}, q1 = {q1:g}, q2 = {q2:g} did not "
            f"converge: with panels refined {_F64_LEVELS2 - 1} times, {npp} and {npp + npp // 2} nodes "
            f"per panel still differ by {change:.1e} of {'E|f g|' if log_mode else 'sqrt(E f^2 E g^2)'} (tolerance "
            f"{FLOAT64_RELATIVE_TOLERANCE:g}). The functions vary on a scale (or oscillate) finer than "
            "the rule resolves at these variances; use the mpmath engine (engine='mpmath', "
            "bivariate_gaussian_expectation), which refines to any precision.")

    for i, ci in enumerate(c_arr):
        cut_i, log_mode = cut, False
        for _ in range(6):   # (a widened square, the scaled rule, and its own widened square: a few tries)
            result = solve(ci, cut_i, log_mode)
            if result[3] is not None:
                cut_i = result[3]
                continue
            fine, error, top, _, mass, bound = result
            if not log_mode and _has_density(ci) and bound > 0 and mass < _F64_TINY:
                # f and g are nonzero at some nodes, and the joint density is positive everywhere at |c| < 1: the
                # plain sums underflowed (their terms lose their digits below 1e-303)
                if not log_scale:
                    raise DomainError(
                        f"E[f(u) g(v)] at c = {ci:g}, q1 = {q1:g}, q2 = {q2:g} underflows float64: the integrand's mass "
                        f"E|f(u) g(v)| came out {mass:.3g}, below {_F64_TINY:g} (float64's smallest normal number is "
                        "2.2e-308; the rule's terms lose their digits below it): f and g overlap only where the joint "
                        "Gaussian density is below float64's range. Pass log_scale=True for the value as a "
                        "mantissa and a natural-log scale, or use the mpmath engine (engine='mpmath', "
                        "bivariate_gaussian_expectation), which has no exponent limit.")
                log_mode = True
                continue
            if log_mode and mass == 0:
                raise DomainError(
                    f"E[f(u) g(v)] at c = {ci:g}, q1 = {q1:g}, q2 = {q2:g}: the scaled float64 rule found no node where "
                    "f(u) g(v) times the density is nonzero (f and g overlap only far outside its range); use the "
                    "mpmath engine (engine='mpmath', bivariate_gaussian_expectation).")
            out[i], errors[i], log_scales[i] = fine, error, top
            break
        else:
            raise DivergentIntegralError(
                f"the float64 2-D rule for E[f(u) g(v)] at c = {ci:g}, q1 = {q1:g}, q2 = {q2:g} did not settle on a "
                f"square that holds its mass (last tried |z| <= {cut_i:g}); use the mpmath engine (engine='mpmath').")
    shape = (lambda a: a.reshape(np.shape(c))) if np.ndim(c) else (lambda a: float(a[0]))
    results = (shape(out),) + ((shape(errors),) if with_error else ()) + ((shape(log_scales),) if log_scale else ())
    return results if len(results) > 1 else results[0]
