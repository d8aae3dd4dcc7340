r"""Enclosures of a real SymPy expression in one variable over an interval, in mpmath's interval arithmetic.

:func:`interval_enclosure` compiles ``expr`` once into a function that maps an interval :math:`[a, b]`
(an ``mpmath.iv.mpf``) to an interval that contains :math:`\{f(x) : a \le x \le b\}` (and the one-sided
limits there, for a Heaviside or a Piecewise that switches inside).  Sums, products and integer powers use
``mpmath.iv``'s own outward-rounded arithmetic.  The other functions are bounded by what is known of their
shape: monotone ones (exp, log, tanh, atan, asinh, sinh, erf, erfc, the safe primitives ...) by their values
at the ends, even ones with one extremum at 0 (cosh, sech, Abs) by those and the value at 0, cos and sin by
their values at the ends and the extrema :math:`k\pi` (:math:`\pi/2 + k\pi`) inside; each such value is
computed 20 bits beyond the interval precision and widened by 16 units of that precision, which covers
mpmath's few-ulp error.  Max/Min take the bounds argument-wise, Heaviside/sign/Piecewise the hull of the
values their argument or conditions allow.

Anything else (tan, gamma, LambertW, a function of two arguments, ...) raises :class:`NoIntervalBound`
naming it; a power of a base that may be negative, or a log of one that may be non-positive, raises
:class:`NoIntervalBound` too (the expression is not real there).  The enclosures are as wide as interval
arithmetic makes them (every occurrence of x varies independently), so a caller narrows them by subdividing.

>>> import sympy, mpmath
>>> x = sympy.Symbol("x", real=True)
>>> f = interval_enclosure(x * (1 - x), x)
>>> with interval_precision(53):
...     enclosure = f(mpmath.iv.mpf([0, 1]))
>>> float(enclosure.a), float(enclosure.b)     # the true range is [0, 1/4]; x and 1 - x vary independently
(0.0, 1.0)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import mpmath
import sympy

__all__ = ["NoIntervalBound", "interval_enclosure", "interval_precision"]

iv = mpmath.iv


class NoIntervalBound(Exception):
    """The expression has a part that :func:`interval_enclosure` cannot bound (named in the message)."""


@contextlib.contextmanager
def interval_precision(bits: int):
    """mpmath.iv at ``bits`` bits of precision (iv has its own precision, apart from mpmath.mp's)."""
    saved = iv.prec
    iv.prec = bits
    try:
        yield
    finally:
        iv.prec = saved


def _ends(v) -> tuple:
    """The ends of an interval as mpf, exactly (mpmath.mp's own precision, 53 bits by default, would round them)."""
    with mpmath.workprec(iv.prec + 20):
        return +mpmath.mpf(v.a), +mpmath.mpf(v.b)


def _widened(values) -> object:
    """The interval hull of point values computed 20 bits beyond iv's precision, widened by 16 units of it
    (at that precision: at mpmath.mp's 53 bits the widening of a 120-bit interval rounded away, and
    1 - erf(35)**2 was enclosed in [0, 0])."""
    with mpmath.workprec(iv.prec + 20):
        lo, hi = min(values), max(values)
        eps = mpmath.ldexp(1, 4 - iv.prec)
        return iv.mpf([lo - abs(lo) * eps, hi + abs(hi) * eps])


def _points(function, xs) -> list:
    with mpmath.workprec(iv.prec + 20):
        return [function(t) for t in xs]


def _monotone(function, lowest=None, name=""):
    """Bound of a monotone ``function`` (either direction); ``lowest``: the argument must exceed it."""
    def bound(v):
        a, b = _ends(v)
        if lowest is not None and not a > lowest:
            raise NoIntervalBound(f"{name} of an argument that reaches {mpmath.nstr(a, 8)} (not real there)")
        return _widened(_points(function, (a, b)))
    return bound


def _even(function):
    """Bound of a function monotone on either side of 0 (cosh, sech, Abs): the ends and, inside, 0."""
    def bound(v):
        a, b = _ends(v)
        return _widened(_points(function, (a, b, mpmath.mpf(0)) if a <= 0 <= b else (a, b)))
    return bound


def _periodic(function, offset):
    """Bound of cos (offset 0) or sin (offset pi/2): the ends, and the extrema offset + k pi inside."""
    def bound(v):
        a, b = _ends(v)
        if not (mpmath.isfinite(a) and mpmath.isfinite(b)) or b - a >= 7:
            return iv.mpf([-1, 1])
        with mpmath.workprec(iv.prec + 20):
            pi = +mpmath.pi
            first, last = int(mpmath.floor((a - offset * pi) / pi)), int(mpmath.ceil((b - offset * pi) / pi))
            inside = [k for k in range(first, last + 1) if a <= offset * pi + k * pi <= b]
        values = _points(function, (a, b)) + [mpmath.mpf(1 if k % 2 == 0 else -1) for k in inside]
        # an extremum that rounding put just outside [a, b] only widens the bound: none is dropped
        return _widened(values)
    return bound


def _sigmoid(u):
    return 1 / (1 + mpmath.exp(-u))


def _softplus(u):
    return mpmath.log1p(mpmath.exp(u)) if u < 0 else u + mpmath.log1p(mpmath.exp(-u))


def _log_sigmoid(u):
    return -_softplus(-u)


def _erfcx(u):
    return mpmath.exp(u * u) * mpmath.erfc(u)


def _primitive_bounds() -> dict:
    """The safe primitives of symact.primitives, all monotone (Erfcx decreasing, the others increasing)."""
    try:
        from symact import primitives
    except ImportError:  # pragma: no cover - symact is this project's own package
        return {}
    table = {"Sigmoid": _monotone(_sigmoid), "Softplus": _monotone(_softplus),
             "LogSigmoid": _monotone(_log_sigmoid), "NormalCdf": _monotone(mpmath.ncdf),
             "Log1p": _monotone(mpmath.log1p, lowest=-1, name="log1p"), "Expm1": _monotone(mpmath.expm1),
             "Erfcx": _monotone(_erfcx)}
    return {getattr(primitives, name): bound for name, bound in table.items() if hasattr(primitives, name)}


_FUNCTIONS = {
    sympy.exp: _monotone(mpmath.exp),
    sympy.log: _monotone(mpmath.log, lowest=0, name="log"),
    sympy.tanh: _monotone(mpmath.tanh),
    sympy.atan: _monotone(mpmath.atan),
    sympy.asinh: _monotone(mpmath.asinh),
    sympy.sinh: _monotone(mpmath.sinh),
    sympy.erf: _monotone(mpmath.erf),
    sympy.erfc: _monotone(mpmath.erfc),
    sympy.cosh: _even(mpmath.cosh),
    sympy.sech: _even(mpmath.sech),
    sympy.Abs: _even(abs),
    sympy.cos: _periodic(mpmath.cos, 0),
    sympy.sin: _periodic(mpmath.sin, sympy.Rational(1, 2)),
}


def _hull(intervals) -> object:
    return iv.mpf([min(mpmath.mpf(v.a) for v in intervals), max(mpmath.mpf(v.b) for v in intervals)])


def _constant(expr: sympy.Expr) -> Callable:
    if expr.is_Integer:
        value = int(expr)
        return lambda v: iv.mpf(value)
    if expr.is_Rational:
        numerator, denominator = int(expr.p), int(expr.q)
        return lambda v: iv.mpf(numerator) / denominator

    def bound(v):
        point = sympy.N(expr, int(iv.prec * 0.30103) + 10)
        if not point.is_real:
            raise NoIntervalBound(f"{expr} is not a real number")
        with mpmath.workprec(iv.prec + 20):
            return _widened([mpmath.mpf(point)])
    return bound


def _power(base, exponent: sympy.Expr) -> Callable:
    """base(v) ** exponent for a constant exponent: iv's power for an integer, else monotone on base >= 0."""
    if exponent.is_Integer:
        n = int(exponent)
        return lambda v: base(v) ** n
    negative = bool(exponent.is_negative)

    def power(t):  # run by _points at the raised precision, so the exponent is not rounded to 53 bits
        if exponent.is_Rational:
            return t ** (mpmath.mpf(int(exponent.p)) / int(exponent.q))
        return t ** mpmath.mpf(sympy.N(exponent, int(mpmath.mp.prec * 0.30103) + 10))

    def bound(v):
        a, b = _ends(base(v))
        if a < 0 or (a == 0 and negative):
            raise NoIntervalBound(f"a power {exponent} of a base that reaches {mpmath.nstr(a, 8)} (not real there)")
        return _widened(_points(power, (a, b)))
    return bound


def _truth(cond, x: sympy.Symbol) -> Callable:
    """A three-valued test of ``cond`` on an interval: True (everywhere), False (nowhere) or None."""
    if cond is sympy.true or cond is True:
        return lambda v: True
    if cond is sympy.false or cond is False:
        return lambda v: False
    if isinstance(cond, (sympy.And, sympy.Or)):
        parts = [_truth(c, x) for c in cond.args]
        every = isinstance(cond, sympy.And)

        def combined(v):
            values = [part(v) for part in parts]
            if every:
                return False if False in values else (True if all(values) else None)
            return True if True in values else (False if all(value is False for value in values) else None)
        return combined
    if isinstance(cond, sympy.Not):
        inner = _truth(cond.args[0], x)
        return lambda v: None if inner(v) is None else not inner(v)
    if isinstance(cond, sympy.core.relational.Relational) and not isinstance(cond, (sympy.Eq, sympy.Ne)):
        difference = _compile(cond.lhs - cond.rhs, x, {})
        strict = isinstance(cond, (sympy.StrictGreaterThan, sympy.StrictLessThan))
        sign = 1 if isinstance(cond, (sympy.StrictGreaterThan, sympy.GreaterThan)) else -1

        def test(v):
            a, b = (sign * t for t in _ends(difference(v)))
            a, b = min(a, b), max(a, b)
            if a > 0 or (a == 0 and not strict):
                return True
            if b < 0 or (b == 0 and strict):
                return False
            return None
        return test
    raise NoIntervalBound(f"the condition {cond}")


def _compile(expr: sympy.Expr, x: sympy.Symbol, cache: dict) -> Callable:
    if expr in cache:
        return cache[expr]
    if x not in expr.free_symbols:
        if expr.free_symbols:
            raise NoIntervalBound(f"the symbols {sorted(map(str, expr.free_symbols))}")
        result = _constant(expr)
    elif expr == x:
        result = lambda v: v  # noqa: E731
    elif isinstance(expr, sympy.Add):
        terms = [_compile(a, x, cache) for a in expr.args]

        def result(v):
            total = terms[0](v)
            for term in terms[1:]:
                total = total + term(v)
            return total
    elif isinstance(expr, sympy.Mul):
        factors = [_compile(a, x, cache) for a in expr.args]

        def result(v):
            product = factors[0](v)
            for factor in factors[1:]:
                product = product * factor(v)
            return product
    elif isinstance(expr, sympy.Pow):
        if x in expr.exp.free_symbols:  # b**u = exp(u log b)
            result = _compile(sympy.exp(expr.exp * sympy.log(expr.base)), x, cache)
        else:
            result = _power(_compile(expr.base, x, cache), expr.exp)
    elif isinstance(expr, (sympy.Max, sympy.Min)):
        args = [_compile(a, x, cache) for a in expr.args]
        pick = max if isinstance(expr, sympy.Max) else min

        def result(v):
            bounds = [_ends(arg(v)) for arg in args]
            return iv.mpf([pick(lo for lo, _ in bounds), pick(hi for _, hi in bounds)])
    elif isinstance(expr, (sympy.Heaviside, sympy.sign)):
        arg = _compile(expr.args[0], x, cache)
        if isinstance(expr, sympy.sign):
            below, at, above = -1, 0, 1
        else:
            at = expr.args[1] if len(expr.args) > 1 else sympy.Rational(1, 2)
            if not at.is_number:
                raise NoIntervalBound(f"{expr} (its value at 0 is not a number)")
            below, at, above = 0, mpmath.mpf(sympy.N(at, 30)), 1

        def result(v):
            a, b = _ends(arg(v))
            values = ([below] if a < 0 else []) + ([at] if a <= 0 <= b else []) + ([above] if b > 0 else [])
            return iv.mpf([min(values), max(values)])
    elif isinstance(expr, sympy.Piecewise):
        branches = [(_compile(value, x, cache), _truth(cond, x)) for value, cond in expr.args]

        def result(v):
            possible = []
            for value, holds in branches:
                truth = holds(v)
                if truth is False:
                    continue
                possible.append(value(v))
                if truth:
                    break
            if not possible:
                raise NoIntervalBound(f"{expr} (no branch holds on part of the interval)")
            return _hull(possible)
    else:
        table = dict(_FUNCTIONS)
        table.update(_primitive_bounds())
        bound = table.get(expr.func)
        if bound is None or len(expr.args) != 1:
            raise NoIntervalBound(f"{expr.func.__name__} (no interval bound for it)")
        arg = _compile(expr.args[0], x, cache)
        result = lambda v: bound(arg(v))  # noqa: E731
    cache[expr] = result
    return result


def interval_enclosure(expr: sympy.Expr, x: sympy.Symbol) -> Callable:
    """A function from an ``mpmath.iv.mpf`` interval of ``x`` to an interval enclosing ``expr`` there (see the
    module docstring); :class:`NoIntervalBound` names the part it cannot bound, at compile time for an unknown
    function and at evaluation for an argument outside the real domain (log, fractional powers)."""
    return _compile(sympy.sympify(expr), x, {})
