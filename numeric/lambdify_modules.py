"""``sympy.lambdify`` modules for mpmath and NumPy that keep the reciprocal functions whole.

SymPy's mpmath and NumPy printers have no name for sech, csch, coth, asech, acsch and acoth,
so they print ``expr.rewrite(exp)`` (or ``log``) of the whole expression, and that rewrites
every power inside as well: sech(x**3) became ``1/(exp(exp(3*log(x)))/2 + exp(-x**3)/2)``,
complex in mpmath and nan in NumPy for every x < 0, and coth(x) a quotient of exponentials
that cancels digits near 0 and is 0/0 at it.  Named in a module dict, they are printed as
calls; the NumPy forms are the reciprocal identities, which overflow only where the exact
value is 0 (1/cosh(800) = 0.0) or the identity itself is exact.

Neither NumPy nor SymPy's NumPy printer knows ``polylog``, which the logistic kernel's closed
forms hold as ``polylog(n, -exp(u))`` (``symact.smooth``): :func:`numpy_modules` names it
(:func:`np_polylog`, for z <= 0) and the safe primitive ``FermiDirac`` (:func:`np_fermi_dirac`),
and :data:`MPMATH_MODULES` names ``FermiDirac`` too.

The other safe primitives of ``symact.primitives`` (what ``safe_form`` writes for the naive patterns) are
named in :func:`numpy_modules` by forms that keep full float64 relative accuracy wherever the value is a
normal number: ``Softplus(u)`` is ``logaddexp(0, u)`` (``log(1 + exp(u))`` rounds ``1 + exp(-30)`` and is
1e-3 off there, 0 from u = -37), ``Sigmoid(u)`` is ``1/(1 + exp(-u))`` or ``exp(u)/(1 + exp(u))`` by the
sign of u (no exp that overflows), ``LogSigmoid``, ``Log1p``, ``Expm1``, ``NormalCdf(u) = erfc(-u/sqrt(2))/2``
(:func:`np_normal_cdf`) and ``Erfcx`` (:func:`np_erfcx`).  Without them lambdify printed their bare names (NameError).

>>> import sympy
>>> x = sympy.Symbol("x", real=True)
>>> f = sympy.lambdify(x, sympy.sech(x**3), modules=MPMATH_MODULES)
>>> import mpmath; mpmath.nstr(f(mpmath.mpf(-1)), 12)
'0.648054273664'
"""

from __future__ import annotations

import functools
import math

import mpmath
import numpy as np
import sympy

from symact.errors import DomainError, is_integer_valued

_MPMATH_RECIPROCALS = {
    "sech": mpmath.sech,
    "csch": mpmath.csch,
    "coth": mpmath.coth,
    "asech": mpmath.asech,
    "acsch": mpmath.acsch,
    "acoth": mpmath.acoth,
}


def _np_sech(u):
    return 1 / np.cosh(u)


def _np_csch(u):
    return 1 / np.sinh(u)


def _np_coth(u):
    return 1 / np.tanh(u)


def _np_asech(u):
    return np.arccosh(1 / u)


def _np_acsch(u):
    return np.arcsinh(1 / u)


def _np_acoth(u):
    return np.arctanh(1 / u)


_NUMPY_RECIPROCALS = {
    "sech": _np_sech,
    "csch": _np_csch,
    "coth": _np_coth,
    "asech": _np_asech,
    "acsch": _np_acsch,
    "acoth": _np_acoth,
}

@functools.lru_cache(maxsize=None)
def _fermi_dirac_coefficients(n: int) -> tuple:
    """(series, reflection) of symact.primitives' Fermi-Dirac evaluation as float64 arrays, highest first."""
    from symact.primitives import fermi_dirac_reflection_polynomial, fermi_dirac_series_coefficients

    series = [float(sympy.N(c, 30)) for c in reversed(fermi_dirac_series_coefficients(n, 53))]
    reflection = [float(sympy.N(c, 30)) for c in fermi_dirac_reflection_polynomial(n)]
    return np.array(series), np.array(reflection)


def _whole_order(n) -> int:
    if not (is_integer_valued(n) and int(n) >= 0):
        raise DomainError(f"the NumPy polylog(n, z) and FermiDirac(n, u) take a whole order n >= 0, got {n!r}; "
                          "evaluate other orders with mpmath (modules=MPMATH_MODULES)")
    return int(n)


def _np_horner(coefficients, t):
    """The polynomial (coefficients highest first) at t; np.polyval starts from 0*t, NaN at t = inf."""
    total = np.full_like(t, coefficients[0])
    for coefficient in coefficients[1:]:
        total = total * t + coefficient
    return total


def np_fermi_dirac(n, u):
    """FermiDirac(n, u) = -polylog(n, -exp(u)) on float arrays, computed in float64 (as the generated torch
    code does, see ``numeric.printer``): the series in s = log(1 + exp(-|u|)) and, for u > 0, the reflection
    F_n(u) = P_n(u) + (-1)**(n + 1) F_n(-u).  Finite wherever the value is (~u**n/n! for u -> oo)."""
    order = _whole_order(n)
    u = np.asarray(u)
    v = u.astype(np.float64)
    if order < 2:  # F_1 = softplus, F_0 = sigmoid
        value = np.logaddexp(0.0, v) if order == 1 else np.exp(-np.logaddexp(0.0, -v))
    else:
        series, reflection = _fermi_dirac_coefficients(order)
        with np.errstate(over="ignore", invalid="ignore"):
            s = np.logaddexp(0.0, -np.abs(v))
            tail = s * _np_horner(series, s)
            reflected = _np_horner(reflection, np.maximum(v, 0.0))
            value = np.where(v > 0, reflected + tail if order % 2 else reflected - tail, tail)
    return value.astype(u.dtype) if np.issubdtype(u.dtype, np.floating) else value


def np_polylog(n, z):
    """polylog(n, z) for z <= 0, the -exp(u) of the logistic kernel's closed forms (``symact.smooth``), as
    -FermiDirac(n, log(-z)): NumPy has no polylog, and lambdify printed a bare name (NameError).  z = -inf (an
    exp(u) that overflowed before the call) gives -inf; z > 0 is refused."""
    z = np.asarray(z)
    if np.any(z > 0):
        raise DomainError(f"the NumPy polylog(n, z) evaluates z <= 0 (polylog(n, -exp(u)) of logistic smoothing), "
                          f"got z = {float(z[z > 0].ravel()[0])!r}; evaluate other arguments with mpmath "
                          "(modules=MPMATH_MODULES)")
    if _whole_order(n) == 1:  # SymPy leaves polylog(1, z) = -log(1 - z) unevaluated (the slope of polylog(2, z))
        return -np.log1p(-z)
    if _whole_order(n) == 0:
        return z / (1 - z)
    with np.errstate(divide="ignore"):
        return -np_fermi_dirac(n, np.log(-z))


def np_sigmoid(u):
    """Sigmoid(u) = 1/(1 + exp(-u)) on float arrays, as exp(-|u|) over 1 + exp(-|u|) where u < 0: the exp
    never overflows (the formula's exp(-u) does from u = -709.8, and its slope exp(-u)/(1 + exp(-u))**2 is NaN)."""
    u = np.asarray(u)
    decay = np.exp(-np.abs(u))
    return np.where(u >= 0, 1 / (1 + decay), decay / (1 + decay))


def np_softplus(u):
    """Softplus(u) = log(1 + exp(u)) as ``logaddexp(0, u)`` = max(u, 0) + log1p(exp(-|u|)): full relative
    accuracy on both sides (the formula log(1 + exp(u)) is 1e-3 off at u = -30 and 0 at u = -40)."""
    u = np.asarray(u)
    return np.logaddexp(np.zeros_like(u), u)


def np_log_sigmoid(u):
    """LogSigmoid(u) = -Softplus(-u)."""
    return -np_softplus(-np.asarray(u))


#: u from which :func:`np_erfcx` sums the asymptotic series: its terms (2k - 1)!!/(2u**2)**k fall below 2e-19
#: of the first by k = 15 at u = 10, and erfc(u) itself reaches the subnormal range (lost digits) from u = 26.55
_ERFCX_SERIES_FROM = 10.0
_ERFCX_SERIES_TERMS = 20


def _split(u):
    """(hi, lo) with hi + lo = u exactly and hi of at most 26 significant bits, so that hi*hi is exact
    (Dekker's splitting; |u| well below 1e300)."""
    c = 134217729.0 * u  # 2**27 + 1
    hi = c - (c - u)
    return hi, u - hi


def np_erfcx(u, erfc=None):
    """Erfcx(u) = exp(u**2)*erfc(u) on float64 arrays, without scipy: for u < 10 the product with u**2 split
    exactly into hi**2 + (2*hi*lo + lo**2) (exp(u*u) alone is off by ~2u**2 ulps: 200 at u = 10), beyond it
    the asymptotic series exp(u**2)*erfc(u) = sum_k (-1)**k (2k - 1)!!/(2u**2)**k / (u sqrt(pi)), 20 terms
    (the first omitted is below 1e-22 of the sum).  inf where the value overflows (u below about -26.6).
    ``erfc``: a vectorised erfc (default math.erfc element by element)."""
    u = np.asarray(u, dtype=np.float64)
    erfc = _np_math_erfc if erfc is None else erfc
    far = u >= _ERFCX_SERIES_FROM
    with np.errstate(over="ignore", invalid="ignore"):
        near_u = np.where(far, 0.0, u)
        hi, lo = _split(near_u)
        near = np.exp(hi * hi) * np.exp((2 * hi + lo) * lo) * np.asarray(erfc(near_u), dtype=np.float64)
        w = np.where(far, u, _ERFCX_SERIES_FROM)
        t = 1 / (2 * w * w)
        series = np.ones_like(w)
        for k in range(_ERFCX_SERIES_TERMS, 0, -1):  # Horner: 1 - t(1 - 3t(1 - 5t(...)))
            series = 1 - (2 * k - 1) * t * series
        tail = series / (w * math.sqrt(math.pi))
    return np.where(far, tail, np.where(u == -np.inf, np.inf, near))


def _np_math_erfc(u):
    """math.erfc element by element (NumPy has no erfc, and scipy is not a dependency)."""
    u = np.asarray(u, dtype=np.float64)
    if u.ndim == 0:
        return np.float64(math.erfc(float(u)))
    return np.vectorize(math.erfc, otypes=[float])(u)


def np_normal_cdf(u, erfc=None):
    """NormalCdf(u) = erfc(-u/sqrt(2))/2 on float64 arrays.  Below u = -1 it is exp(-u**2/2)*Erfcx(w)/2,
    w = -u/sqrt(2), with u**2 split exactly as in :func:`np_erfcx`: erfc(w) is off by ~2w**2 ulps from the
    rounding of w alone (1100 ulps at u = -35), Erfcx(w) barely moves with it.  ``erfc``: as for np_erfcx."""
    u = np.asarray(u, dtype=np.float64)
    erfc = _np_math_erfc if erfc is None else erfc
    left = u < -1
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        right_u = np.where(left, 0.0, u)
        right = np.asarray(erfc(-right_u / math.sqrt(2)), dtype=np.float64) / 2
        left_u = np.where(left, u, -1.0)
        hi, lo = _split(left_u)
        tail = np.exp(-hi * hi / 2) * np.exp(-(2 * hi + lo) * lo / 2) * np_erfcx(-left_u / math.sqrt(2), erfc) / 2
    return np.where(left, np.where(u == -np.inf, 0.0, tail), right)


def _np_safe_primitives(erfc) -> dict:
    """NumPy forms of symact.primitives' safe primitives (FermiDirac: :data:`_NUMPY_SPECIAL`), accurate in float64;
    ``erfc`` is the vectorised erfc NormalCdf and Erfcx are computed with."""
    def normal_cdf(u):
        return np_normal_cdf(u, erfc)

    return {
        "Sigmoid": np_sigmoid,
        "Softplus": np_softplus,
        "LogSigmoid": np_log_sigmoid,
        "Log1p": np.log1p,
        "Expm1": np.expm1,
        "NormalCdf": normal_cdf,
        "Erfcx": lambda u: np_erfcx(u, erfc),
    }


_NUMPY_SPECIAL = {"polylog": np_polylog, "FermiDirac": np_fermi_dirac}
_MPMATH_SPECIAL = {"FermiDirac": lambda n, u: -mpmath.polylog(n, -mpmath.exp(u))}

MPMATH_MODULES = [{**_MPMATH_RECIPROCALS, **_MPMATH_SPECIAL}, "mpmath"]


def numpy_modules(functions: dict | None = None) -> list:
    """The NumPy modules list, with ``functions`` (name -> callable) taking precedence; the safe primitives
    NormalCdf and Erfcx are computed with ``functions["erfc"]`` where it is given (math.erfc otherwise)."""
    functions = dict(functions or {})
    safe = _np_safe_primitives(functions.get("erfc", _np_math_erfc))
    return [{**_NUMPY_RECIPROCALS, **_NUMPY_SPECIAL, **safe, **functions}, "numpy"]
