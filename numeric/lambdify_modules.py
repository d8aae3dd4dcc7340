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

>>> import sympy
>>> x = sympy.Symbol("x", real=True)
>>> f = sympy.lambdify(x, sympy.sech(x**3), modules=MPMATH_MODULES)
>>> import mpmath; mpmath.nstr(f(mpmath.mpf(-1)), 12)
'0.648054273664'
"""

from __future__ import annotations

import functools

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


_NUMPY_SPECIAL = {"polylog": np_polylog, "FermiDirac": np_fermi_dirac}
_MPMATH_SPECIAL = {"FermiDirac": lambda n, u: -mpmath.polylog(n, -mpmath.exp(u))}

MPMATH_MODULES = [{**_MPMATH_RECIPROCALS, **_MPMATH_SPECIAL}, "mpmath"]


def numpy_modules(functions: dict | None = None) -> list:
    """The NumPy modules list, with ``functions`` (name -> callable) taking precedence."""
    return [{**_NUMPY_RECIPROCALS, **_NUMPY_SPECIAL, **(functions or {})}, "numpy"]
