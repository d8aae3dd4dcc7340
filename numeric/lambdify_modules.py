"""``sympy.lambdify`` modules for mpmath and NumPy that keep the reciprocal functions whole.

SymPy's mpmath and NumPy printers have no name for sech, csch, coth, asech, acsch and acoth,
so they print ``expr.rewrite(exp)`` (or ``log``) of the whole expression, and that rewrites
every power inside as well: sech(x**3) became ``1/(exp(exp(3*log(x)))/2 + exp(-x**3)/2)``,
complex in mpmath and nan in NumPy for every x < 0, and coth(x) a quotient of exponentials
that cancels digits near 0 and is 0/0 at it.  Named in a module dict, they are printed as
calls; the NumPy forms are the reciprocal identities, which overflow only where the exact
value is 0 (1/cosh(800) = 0.0) or the identity itself is exact.

>>> import sympy
>>> x = sympy.Symbol("x", real=True)
>>> f = sympy.lambdify(x, sympy.sech(x**3), modules=MPMATH_MODULES)
>>> import mpmath; mpmath.nstr(f(mpmath.mpf(-1)), 12)
'0.648054273664'
"""

from __future__ import annotations

import mpmath
import numpy as np

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

MPMATH_MODULES = [_MPMATH_RECIPROCALS, "mpmath"]


def numpy_modules(functions: dict | None = None) -> list:
    """The NumPy modules list, with ``functions`` (name -> callable) taking precedence."""
    return [{**_NUMPY_RECIPROCALS, **(functions or {})}, "numpy"]
