"""Numerically safe primitive functions and a rewrite pass that introduces them.

Naive formulas for activations overflow or cancel in floating point even where the
true function is tame: ``log(1 + exp(u))`` is ``inf`` for ``u >= 89`` in float32,
``exp(u) - 1`` loses every digit for ``|u| < 1e-8``, ``1 + erf(u)`` is ``0`` for
``u < -6``.  This module gives those building blocks names, so that the code
generator (``numeric.printer``) can map each one to the fused, accurate library
routine (``torch.nn.functional.softplus``, ``torch.special.expm1`` ...):

=================  ==================================  ==============================
primitive          meaning                             derivative (stays in the set)
=================  ==================================  ==============================
``Sigmoid(u)``     ``1/(1 + exp(-u))``                 ``Sigmoid(u)*Sigmoid(-u)``
``Softplus(u)``    ``log(1 + exp(u))``                 ``Sigmoid(u)``
``LogSigmoid(u)``  ``-log(1 + exp(-u))``               ``Sigmoid(-u)``
``Log1p(u)``       ``log(1 + u)``                      ``1/(1 + u)``
``Expm1(u)``       ``exp(u) - 1``                      ``Expm1(u) + 1`` (= ``exp(u)``)
``NormalCdf(u)``   ``erfc(-u/sqrt(2))/2``              ``exp(-u**2/2)/sqrt(2*pi)``
``Erfcx(u)``       ``exp(u**2)*erfc(u)``               ``2*u*Erfcx(u) - 2/sqrt(pi)``
``FermiDirac(n,    ``-polylog(n, -exp(u))``, n >= 2    ``FermiDirac(n - 1, u)``
u)``                                                   (n = 1: ``Softplus(u)``)
=================  ==================================  ==============================

Every primitive evaluates to arbitrary precision with ``evalf`` (the working
precision is raised by the number of bits a naive evaluation would cancel), and
:func:`to_elementary` (or ``expr.rewrite(sympy.exp)``) turns an expression back into
exp/log/erf for analysis.

:func:`safe_form` maps naive patterns to primitives, and :func:`safe_derivative`
differentiates and then picks, among equivalent forms, the one that is safest in
floating point by the rule stated in :func:`hazards`.

>>> import sympy
>>> x = sympy.Symbol("x", real=True)
>>> safe_form(sympy.log(1 + sympy.exp(x)))
Softplus(x)
>>> safe_form(x / (1 + sympy.exp(-x)))
x*Sigmoid(x)
>>> safe_derivative(x * Sigmoid(x), x)
(x*Sigmoid(-x) + 1)*Sigmoid(x)
>>> to_elementary(Softplus(x))
log(exp(x) + 1)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import sympy
from sympy import Add, Mul, Pow, S

from symact.errors import DomainError

__all__ = [
    "SafePrimitive",
    "Sigmoid",
    "Softplus",
    "LogSigmoid",
    "Log1p",
    "Expm1",
    "NormalCdf",
    "Erfcx",
    "FermiDirac",
    "fermi_dirac_series_coefficients",
    "fermi_dirac_reflection_polynomial",
    "PRIMITIVES",
    "to_elementary",
    "safe_form",
    "safe_derivative",
    "Hazards",
    "hazards",
    "split_numeric_factor",
]


# --------------------------------------------------------------------------- evalf helpers
def _dps(prec: int) -> int:
    """Decimal digits carried by ``prec`` bits (as mpmath's prec_to_dps)."""
    return max(1, int(round(int(prec) / 3.3219280948873626) - 1))


def _magnitude_bits(value: sympy.Expr) -> int:
    """Binary exponent of a nonzero real sympy Float (|value| ~ 2**result)."""
    mpf = sympy.Float(value)._mpf_
    sign, man, exp, bc = mpf
    if man == 0:
        return -(10**9)  # zero: "infinitely small"
    return exp + bc


def _numeric(expr: sympy.Expr, prec: int) -> sympy.Float | None:
    """expr evaluated at ``prec`` bits, or None if it is not a real number."""
    value = expr.evalf(_dps(prec) + 3)
    if not value.is_Number or value.is_infinite:
        return None
    return sympy.Float(value, precision=prec + 10)


def _log1p_evalf(arg: sympy.Expr, prec: int) -> sympy.Float | None:
    """log(1 + arg) at ``prec`` bits, with working precision raised by log2(1/|arg|)."""
    t = _numeric(arg, prec + 20)
    if t is None:
        return None
    if t == 0:
        return sympy.Float(0, precision=prec)
    if _magnitude_bits(t) < -(prec + 20):
        # log(1 + t) = t*(1 - t/2 + ...) = t to prec bits: raising the working precision by log2(1/|t|)
        # would hang (Softplus(10**7/3).evalf() worked at 4.8 million bits for exp(-u) ~ 1e-1447648)
        return sympy.Float(t, precision=prec)
    extra = max(0, -_magnitude_bits(t))
    work = prec + 20 + extra
    t = _numeric(arg, work)
    one_plus = sympy.Float(1, precision=work) + t  # exact at `work` bits
    if one_plus <= 0:
        # outside the real domain u > -1: complex, as sympy.log(-2).evalf() is (sympy.Float of it
        # was mpmath's bare "cannot create mpf from ... + 3.14...*I")
        return sympy.log(one_plus).evalf(_dps(prec))
    return sympy.Float(sympy.log(one_plus).evalf(_dps(work)), precision=prec)


def _expm1_evalf(arg: sympy.Expr, prec: int) -> sympy.Float | None:
    """exp(arg) - 1 at ``prec`` bits, with working precision raised by log2(1/|arg|)."""
    u = _numeric(arg, prec + 20)
    if u is None:
        return None
    if u == 0:
        return sympy.Float(0, precision=prec)
    if _magnitude_bits(u) < -(prec + 20):
        return sympy.Float(u, precision=prec)   # exp(u) - 1 = u*(1 + u/2 + ...) = u to prec bits
    # 1/|u| bits for the cancellation near 0; |u| bits for exp's conditioning far out (u's rounding error
    # times |u| is exp's relative error: Expm1(10**300) had a wrong mantissa, 7.04e+... for 5.44e+...)
    extra = max(0, -_magnitude_bits(u)) + max(0, _magnitude_bits(u))
    work = prec + 20 + extra
    u = _numeric(arg, work)
    value = sympy.exp(u).evalf(_dps(work)) - sympy.Float(1, precision=work)
    return sympy.Float(value, precision=prec)


# --------------------------------------------------------------------------- primitives
class SafePrimitive(sympy.Function):
    """Base class: a real function of one real argument with an elementary meaning."""

    nargs = 1

    def elementary(self) -> sympy.Expr:
        """The same function written with exp/log/erf (for analysis and printing)."""
        raise NotImplementedError  # each subclass defines its formula

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_finite(self):
        if self.args[0].is_finite:
            return True
        return None

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return self.func(arg).elementary()

    def _eval_rewrite_as_log(self, arg, **kwargs):
        return self.func(arg).elementary()

    def _eval_rewrite_as_erfc(self, arg, **kwargs):
        return self.func(arg).elementary()

    def _eval_rewrite_as_erf(self, arg, **kwargs):
        return self.func(arg).elementary()

    def _eval_evalf(self, prec):
        if not self.args[0].is_number:
            return None
        value = self._safe_evalf(prec)
        return value

    def _safe_evalf(self, prec: int):
        # The argument is evaluated with guard bits first: a Float argument would
        # otherwise fix the precision of the whole elementary formula.
        u = _numeric(self.args[0], prec + 30)
        if u is None:
            return None
        # the elementary forms hold exp(+-u) (erfc(u) ~ exp(-u**2)): their relative error is |u| (u**2)
        # times u's, so far out u needs that many more bits (Sigmoid(-10**300/3) came out with a wrong
        # mantissa); each bit of |u| doubles the exponent's magnitude, 2x for the square
        extra = 2 * max(0, _magnitude_bits(u))
        if extra:
            u = _numeric(self.args[0], prec + 30 + extra)
        far = self._far_value(u, prec + 30 + extra)
        if far is not None:
            return sympy.Float(far, precision=prec)
        value = self.func(u, evaluate=False).elementary().evalf(_dps(prec + 30 + extra))
        return sympy.Float(value, precision=prec)

    def _far_value(self, u: sympy.Float, prec: int) -> sympy.Expr | None:
        """The value at a number u where the elementary formula cannot be evaluated, else None."""
        return None


#: |u| from which erfc(u) is summed from its asymptotic series: mpmath's erfc raises OverflowError
#: from about 1e154 (it squares the term count as a float), and from 1e100 on each term of the
#: series is 1e-200 of the one before, so a handful give any precision
_ERFC_FAR = sympy.Float(10) ** 100


def _erfc_far(u: sympy.Float, prec: int) -> sympy.Float:
    """erfc(u) for u >= _ERFC_FAR: exp(-u**2)/(u*sqrt(pi)) * sum_k (-1)**k (2k-1)!!/(2u**2)**k, summed
    until a term is below 2**-prec (the series is asymptotic; its terms fall by 1/(2u**2) per step)."""
    u = sympy.Float(u, precision=prec)
    ratio = 1 / (2 * u * u)
    total, term, k = sympy.Float(1, precision=prec), sympy.Float(1, precision=prec), 1
    while True:
        term = -term * (2 * k - 1) * ratio
        if abs(term) < sympy.Float(2, precision=prec) ** -prec:
            break
        total, k = total + term, k + 1
    scale = sympy.exp(-u * u) / (u * sympy.sqrt(sympy.pi).evalf(_dps(prec)))
    return sympy.Float(scale * total, precision=prec)


class Sigmoid(SafePrimitive):
    """Logistic sigmoid ``1/(1 + exp(-u))``; ``d/du = Sigmoid(u)*Sigmoid(-u)``.

    >>> import sympy
    >>> Sigmoid(0)
    1/2
    >>> Sigmoid(sympy.Float(-800)).evalf(5)
    3.6679e-348
    """

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return S.Half
        if arg is S.Infinity:
            return S.One
        if arg is S.NegativeInfinity:
            return S.Zero

    def fdiff(self, argindex=1):
        u = self.args[0]
        return Sigmoid(u) * Sigmoid(-u)

    def elementary(self):
        return 1 / (1 + sympy.exp(-self.args[0]))

    def _eval_is_positive(self):
        if self.args[0].is_real:
            return True
        return None


class Softplus(SafePrimitive):
    """``log(1 + exp(u))``; ``d/du = Sigmoid(u)``.

    >>> import sympy
    >>> Softplus(sympy.Float(-800)).evalf(5)
    3.6679e-348
    """

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return sympy.log(2)
        if arg is S.Infinity:
            return S.Infinity
        if arg is S.NegativeInfinity:
            return S.Zero

    def fdiff(self, argindex=1):
        return Sigmoid(self.args[0])

    def elementary(self):
        return sympy.log(1 + sympy.exp(self.args[0]))

    def _eval_is_positive(self):
        if self.args[0].is_real:
            return True
        return None

    def _safe_evalf(self, prec):
        u = _numeric(self.args[0], prec + 20)
        if u is None:
            return None
        if u > 0:  # u + log1p(exp(-u)): no overflow of exp, no loss in the log
            tail = _log1p_evalf(sympy.exp(-u), prec + 10)
            return sympy.Float(u + tail, precision=prec)
        return _log1p_evalf(sympy.exp(u), prec)


class LogSigmoid(SafePrimitive):
    """``log(Sigmoid(u)) = -Softplus(-u)``; ``d/du = Sigmoid(-u)``."""

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return -sympy.log(2)

    def fdiff(self, argindex=1):
        return Sigmoid(-self.args[0])

    def elementary(self):
        return -sympy.log(1 + sympy.exp(-self.args[0]))

    def _eval_is_negative(self):
        if self.args[0].is_real:
            return True
        return None

    def _safe_evalf(self, prec):
        value = Softplus(-self.args[0], evaluate=False)._safe_evalf(prec)
        return None if value is None else -value


class Log1p(SafePrimitive):
    """``log(1 + u)`` accurate for small ``u``; ``d/du = 1/(1 + u)``.

    >>> import sympy
    >>> Log1p(sympy.Float("1e-30", 30)).evalf(20)
    1.0000000000000000000e-30
    """

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return S.Zero
        if arg is S.NegativeOne:
            return S.ComplexInfinity  # log(1 + u) at u = -1 is sympy.log(0)

    def fdiff(self, argindex=1):
        return 1 / (1 + self.args[0])

    def elementary(self):
        return sympy.log(1 + self.args[0])

    def _eval_is_real(self):
        u = self.args[0]
        if u.is_real and (u + 1).is_positive:
            return True
        return None

    def _safe_evalf(self, prec):
        return _log1p_evalf(self.args[0], prec)


class Expm1(SafePrimitive):
    """``exp(u) - 1`` accurate for small ``u``; ``d/du = Expm1(u) + 1``.

    >>> import sympy
    >>> Expm1(sympy.Float("1e-30", 30)).evalf(20)
    1.0000000000000000000e-30
    """

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return S.Zero

    def fdiff(self, argindex=1):
        return sympy.exp(self.args[0])

    def elementary(self):
        return sympy.exp(self.args[0]) - 1

    def _safe_evalf(self, prec):
        return _expm1_evalf(self.args[0], prec)


class NormalCdf(SafePrimitive):
    """Standard normal CDF ``erfc(-u/sqrt(2))/2``; ``d/du = exp(-u**2/2)/sqrt(2*pi)``.

    Written with ``erfc`` it keeps full relative accuracy in the far left tail,
    where ``(1 + erf(u/sqrt(2)))/2`` is exactly 0.

    >>> import sympy
    >>> NormalCdf(0)
    1/2
    """

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return S.Half
        if arg is S.Infinity:
            return S.One
        if arg is S.NegativeInfinity:
            return S.Zero

    def fdiff(self, argindex=1):
        u = self.args[0]
        return sympy.exp(-u**2 / 2) / sympy.sqrt(2 * sympy.pi)

    def elementary(self):
        return sympy.erfc(-self.args[0] / sympy.sqrt(2)) / 2

    def _far_value(self, u, prec):
        w = -u / sympy.sqrt(2).evalf(_dps(prec))
        if w >= _ERFC_FAR:
            return _erfc_far(w, prec) / 2
        if w <= -_ERFC_FAR:  # erfc(w) = 2 - erfc(-w)
            return 1 - _erfc_far(-w, prec) / 2
        return None

    def _eval_is_positive(self):
        if self.args[0].is_real:
            return True
        return None


class Erfcx(SafePrimitive):
    """Scaled complementary error function ``exp(u**2)*erfc(u)``; ``d/du = 2*u*Erfcx(u) - 2/sqrt(pi)``.

    Finite where the product of ``exp`` and ``erfc`` is not: ``exp(u**2)`` overflows from
    ``u = 9.4`` in float32 (26.7 in float64) and ``erfc(u)`` underflows, while ``Erfcx(u)``
    decays like ``1/(sqrt(pi)*u)``; it overflows only for ``u`` below about -9.3 (float32)
    or -26.6 (float64), where the function itself does.  Its derivative cancels for large
    ``u`` (``-1/(sqrt(pi)*u**2)`` from terms ``~1.13``); :func:`safe_form` patches that sum.

    >>> import sympy
    >>> Erfcx(0)
    1
    >>> Erfcx(sympy.Float(800)).evalf(5)
    0.00070524
    """

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return S.One
        if arg is S.Infinity:
            return S.Zero
        if arg is S.NegativeInfinity:
            return S.Infinity

    def fdiff(self, argindex=1):
        u = self.args[0]
        return 2 * u * Erfcx(u) - 2 / sympy.sqrt(sympy.pi)

    def elementary(self):
        u = self.args[0]
        return sympy.exp(u**2) * sympy.erfc(u)

    def _far_value(self, u, prec):
        if u >= _ERFC_FAR:
            return _erfc_far(u, prec) * sympy.exp(u * u)
        if u <= -_ERFC_FAR:  # exp(u**2) (2 - erfc(-u))
            return sympy.exp(u * u) * (2 - _erfc_far(-u, prec))
        return None

    def _eval_is_positive(self):
        if self.args[0].is_real:
            return True
        return None


class FermiDirac(SafePrimitive):
    r"""The complete Fermi-Dirac integral :math:`F_n(u) = -\mathrm{Li}_n(-e^u)` of whole order ``n``;
    ``d/du FermiDirac(n, u) = FermiDirac(n - 1, u)``.

    The one primitive with two arguments, the order first.  ``FermiDirac(1, u)`` is ``Softplus(u)`` and
    ``FermiDirac(0, u)`` is ``Sigmoid(u)`` (they evaluate to those), so every derivative stays in the
    vocabulary.  It is what smoothing quadratic and cubic pieces with the logistic kernel gives
    (``symact.smooth``: relu_squared * logistic(1) is ``2*FermiDirac(2, x)``), positive, like
    ``u**n/n!`` for ``u -> oo`` and like ``exp(u)`` for ``u -> -oo``; :func:`safe_form` writes
    ``polylog(n, -exp(u))`` as ``-FermiDirac(n, u)``, whose exponential cannot overflow.  Its
    floating-point evaluation (the code generator's) is built from
    :func:`fermi_dirac_series_coefficients` and :func:`fermi_dirac_reflection_polynomial`.

    >>> import sympy
    >>> x = sympy.Symbol("x", real=True)
    >>> FermiDirac(2, 0)
    pi**2/12
    >>> sympy.diff(FermiDirac(3, x), x), sympy.diff(FermiDirac(2, x), x)
    (FermiDirac(2, x), Softplus(x))
    >>> FermiDirac(2, sympy.Float(800)).evalf(12)  # 800**2/2 + pi**2/6 - FermiDirac(2, -800)
    320001.644934
    """

    nargs = 2

    @classmethod
    def eval(cls, n, u):
        if not (n.is_Integer and n >= 0):
            raise DomainError(f"FermiDirac(n, u) takes a whole order n >= 0 first, got n = {n}: "
                              "it is -polylog(n, -exp(u)), e.g. FermiDirac(2, x)")
        if n == 0:
            return Sigmoid(u)
        if n == 1:
            return Softplus(u)
        if u.is_zero:  # -Li_n(-1) = eta(n) = (1 - 2**(1 - n)) zeta(n)
            return (1 - S(2) ** (1 - n)) * sympy.zeta(n)
        if u is S.Infinity:
            return S.Infinity
        if u is S.NegativeInfinity:
            return S.Zero
        return None

    def fdiff(self, argindex=2):
        if argindex != 2:  # the order is a whole number, not a variable
            raise sympy.ArgumentIndexError(self, argindex)
        n, u = self.args
        return FermiDirac(n - 1, u)

    def elementary(self):
        n, u = self.args
        return -sympy.polylog(n, -sympy.exp(u))

    def _eval_rewrite_as_exp(self, n, u, **kwargs):
        return self.func(n, u).elementary()

    _eval_rewrite_as_log = _eval_rewrite_as_erfc = _eval_rewrite_as_erf = _eval_rewrite_as_exp
    _eval_rewrite_as_polylog = _eval_rewrite_as_exp

    def _eval_is_real(self):
        return self.args[1].is_real

    def _eval_is_finite(self):
        return True if self.args[1].is_finite else None

    def _eval_is_positive(self):
        return True if self.args[1].is_real else None

    def _eval_evalf(self, prec):
        n, u = self.args
        if not u.is_number:
            return None
        value = _numeric(u, prec + 30)
        if value is None:
            return None
        # F_n ~ exp(u) for u -> -oo: u's rounding error times |u| is the result's relative error there
        extra = max(0, _magnitude_bits(value))
        if extra:
            value = _numeric(u, prec + 30 + extra)
        result = sympy.polylog(n, -sympy.exp(value)).evalf(_dps(prec + 30 + extra))
        return sympy.Float(-result, precision=prec)


#: the largest argument of the series of :func:`fermi_dirac_series_coefficients`: s = Softplus(u) for u <= 0
_FERMI_DIRAC_SERIES_REACH = sympy.log(2)


@functools.lru_cache(maxsize=None)
def fermi_dirac_series_coefficients(n: int, bits: int) -> tuple:
    r"""Exact coefficients ``r_0, r_1, ...`` (lowest first) with :math:`F_n(u) = s \sum_k r_k s^k`,
    :math:`s = \mathrm{Softplus}(u)`, cut where the rest is below :math:`2^{-bits}/8` of the sum for u <= 0.

    With :math:`w = -\log(1 - z)` the polylogarithm is :math:`\mathrm{Li}_n(z) = L_n(w)`, :math:`L_1(w) = w` and
    :math:`L_n(w) = \int_0^w L_{n-1}(t)/(e^t - 1)\,dt` (since :math:`dz/z = dw/(e^w - 1)`); :math:`t/(e^t - 1) =
    \sum_k B_k t^k/k!` gives each :math:`L_n` as a power series with radius :math:`2\pi` (the poles of
    :math:`1/(e^t - 1)`).  At :math:`z = -e^u`, :math:`w = -s`, and for u <= 0, :math:`0 < s \le \log 2`: the
    terms fall by about :math:`\log 2/(2\pi) = 0.11` each, so 7 to 9 of them give float32 and 17 or 18 float64.
    The leading ones are positive (:math:`1 + s/4 + s^2/36 + \dots` for n = 2): nothing cancels.
    """
    if not (isinstance(n, int) and n >= 2):
        raise DomainError(f"the Fermi-Dirac series is for whole orders n >= 2, got n = {n!r}")
    total = 64
    bernoulli = [S.NegativeOne / 2 if k == 1 else sympy.bernoulli(k) / sympy.factorial(k) for k in range(total + 1)]
    series = [S.Zero, S.One] + [S.Zero] * (total - 1)  # L_1(w) = w, coefficients of w**0 .. w**total
    for _ in range(2, n + 1):  # L_m(w) = integral of (L_{m-1}(t)/t) * (t/(e^t - 1))
        quotient = series[1:]
        product = [sum(quotient[i] * bernoulli[j - i] for i in range(j + 1)) for j in range(total)]
        series = [S.Zero] + [product[j] / (j + 1) for j in range(total)]
    # F_n(u) = -L_n(-s) = s * sum_k a_{k+1} (-1)**k s**k
    r = [series[k + 1] * (-1) ** k for k in range(total)]
    reach = float(_FERMI_DIRAC_SERIES_REACH)
    rest = [abs(float(c)) * reach**k for k, c in enumerate(r)]
    for cut in range(1, total):
        if sum(rest[cut:]) <= 2.0 ** -bits / 8:
            return tuple(r[:cut])
    raise DomainError(f"the Fermi-Dirac series of order {n} does not reach 2**-{bits} in {total} terms")


@functools.lru_cache(maxsize=None)
def fermi_dirac_reflection_polynomial(n: int) -> tuple:
    r"""Exact coefficients (highest power first) of :math:`P_n` with :math:`F_n(u) = P_n(u) + (-1)^{n+1} F_n(-u)`.

    From the inversion formula :math:`\mathrm{Li}_n(-e^u) + (-1)^n \mathrm{Li}_n(-e^{-u}) =
    -\frac{(2\pi i)^n}{n!} B_n\left(\frac12 + \frac{u}{2\pi i}\right)` (:math:`B_n` the Bernoulli polynomial):
    :math:`P_2 = u^2/2 + \pi^2/6`, :math:`P_3 = u^3/6 + \pi^2 u/6`.  The coefficient of :math:`u^{n-2m}` is
    :math:`(2\pi)^{2m} |B_{2m}(1/2)| / ((2m)!\,(n-2m)!) > 0` (odd powers of :math:`2\pi i` vanish with
    :math:`B_{2m+1}(1/2) = 0`), so for u > 0 the polynomial does not cancel, and :math:`F_n(u) = P_n(u) \pm
    F_n(-u)` loses at most a bit (:math:`P_n(0) = 2F_n(0)` for even n).
    """
    if not (isinstance(n, int) and n >= 2):
        raise DomainError(f"the Fermi-Dirac reflection is for whole orders n >= 2, got n = {n!r}")
    u = sympy.Dummy("u", real=True)
    polynomial = sympy.Poly(sympy.expand((2 * sympy.pi * sympy.I) ** n / sympy.factorial(n)
                                         * sympy.bernoulli(n, S.Half + u / (2 * sympy.pi * sympy.I))), u)
    return tuple(polynomial.all_coeffs())


PRIMITIVES: tuple[type[SafePrimitive], ...] = (Sigmoid, Softplus, LogSigmoid, Log1p, Expm1, NormalCdf, Erfcx)


def to_elementary(expr: sympy.Expr) -> sympy.Expr:
    """Replace every safe primitive in ``expr`` by its exp/log/erfc formula.

    >>> import sympy
    >>> x = sympy.Symbol("x", real=True)
    >>> to_elementary(Sigmoid(x) + Expm1(x))
    exp(x) - 1 + 1/(1 + exp(-x))
    """
    return sympy.sympify(expr).replace(
        lambda e: isinstance(e, SafePrimitive), lambda e: e.elementary()
    )


# --------------------------------------------------------------------------- rewrite rules
def _split_const(add: sympy.Add) -> tuple[sympy.Expr, list[sympy.Expr]]:
    const = S.Zero
    rest = []
    for term in add.args:
        if term.is_number:
            const += term
        else:
            rest.append(term)
    return const, rest


def split_numeric_factor(term: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr]:
    """term = coeff*factor with every numeric factor (1/pi, sqrt(2) ...) in coeff.

    >>> import sympy
    >>> split_numeric_factor(sympy.sqrt(2) * sympy.Symbol("x") / 2)
    (sqrt(2)/2, x)
    """
    if isinstance(term, Mul):
        numbers = [a for a in term.args if a.is_number]
        if numbers:
            return Mul(*numbers), Mul(*[a for a in term.args if not a.is_number])
    return S.One, term


def _group_erf_terms(terms: list) -> list:
    """k*g*erf(u) + c*g -> g*(k*erf(u) + c) when |c| >= |k| (g free of numbers), so that the
    rules for k*erf(u) + c see the pair: sau's 99*x*erf(u)/200 + 101*x/200 cancels for x -> -oo."""
    for i, term in enumerate(terms):
        k, f = split_numeric_factor(term)
        erfs = [a for a in Mul.make_args(f) if isinstance(a, sympy.erf)]
        if len(erfs) != 1 or f == erfs[0]:
            continue
        g = f / erfs[0]
        for j, other in enumerate(terms):
            c, h = split_numeric_factor(other)
            if j != i and h == g and abs(c) >= abs(k):
                return _replace_pair(terms, term, other, g * Add(k * erfs[0], c))
    return terms


def _replace_pair(terms: list, first: sympy.Expr, second: sympy.Expr, replacement: sympy.Expr) -> list:
    """terms with first and second (one occurrence each) replaced by one replacement term."""
    rest = list(terms)
    rest.remove(first)
    rest.remove(second)
    return rest + [replacement]


def _mirrored_pairs(terms: list) -> list:
    """Pairs of terms in f(u) and f(-u) that cancel or overflow, as one bounded or safe function.

    k*Sigmoid(u) - k*Sigmoid(-u) -> k*tanh(u/2) (the sigmoid's second derivative: the difference
    loses every digit near u = 0, tanh does not); k*exp(u) + k*exp(-u) -> 2k*cosh(u) and
    k*exp(u) - k*exp(-u) -> 2k*sinh(u), so that a quotient of such sums ((e**x - e**-x)/(e**x + e**-x),
    inf/inf = NaN from |x| = 89 in float32) becomes tanh and log(e**x + e**-x) reaches the
    log-cosh rule.
    """
    split = [split_numeric_factor(term) for term in terms]
    for i, (k, f) in enumerate(split):
        if k == 0 or not isinstance(f, (Sigmoid, sympy.exp)) or f.args[0].is_number:
            continue
        u = f.args[0]
        for j, (c, g) in enumerate(split):
            # the arguments compared expanded: the rules write 2*x + 1 as 2*(x + 1/2)
            if j == i or g.func != f.func or sympy.expand(g.args[0] + u) != 0 or abs(c) != abs(k):
                continue
            if isinstance(f, Sigmoid) and c == -k:
                return _replace_pair(terms, terms[i], terms[j], k * sympy.tanh(u / 2))
            if isinstance(f, sympy.exp):
                pair = sympy.cosh(u) if c == k else sympy.sinh(u)
                return _replace_pair(terms, terms[i], terms[j], 2 * k * pair)
    return terms


def _shifted_sigmoid_pairs(terms: list) -> list:
    """k*g*Sigmoid(a) - k*g*Sigmoid(b) with a - b = d a nonzero number -> k*(1 - exp(-d))*g*Sigmoid(a)*Sigmoid(-b)
    (Sigmoid(a) - Sigmoid(b) = (exp(a) - exp(b))/((1 + exp(a))*(1 + exp(b)))): the difference of two sigmoids
    one shift apart cancels where both are near 1, the product does not.  x*Sigmoid(x) - x*Sigmoid(x - 1) was
    0.0 from x = 18 in float32 (38 in float64), where it is ~(e - 1)*x*exp(-x) (4.7e-7 at x = 18).  The pair is
    oriented so that d > 0: with d < 0 the factor 1 - exp(-d) is -exp(|d|) (inf from |d| = 710 in float64) and
    Sigmoid(a) underflows where the difference does not."""
    def sigmoids(term):
        k, f = split_numeric_factor(term)
        factors = Mul.make_args(f)
        return k, [(s, Mul(*[g for g in factors if g is not s])) for s in factors
                   if isinstance(s, Sigmoid) and not s.args[0].is_number]

    split = [sigmoids(term) for term in terms]
    for i, (k, first) in enumerate(split):
        for j, (c, second) in enumerate(split):
            if j == i or k == 0 or c != -k:
                continue
            for a, rest in first:
                for b, other in second:
                    d = sympy.expand(a.args[0] - b.args[0])
                    if other == rest and d.is_number and d.is_nonzero:
                        if d.is_negative:  # the pair as -k*(Sigmoid(b) - Sigmoid(a)), so that the shift is positive
                            k, a, b, d = -k, b, a, -d
                        pair = k * (1 - sympy.exp(-d)) * rest * a * Sigmoid(sympy.expand(-b.args[0]))
                        return _replace_pair(terms, terms[i], terms[j], pair)
    return terms


def _softplus_less_its_argument(terms: list) -> list:
    """k*Softplus(u) - k*u -> k*Softplus(-u) (log(1 + exp(u)) - u = log(exp(-u) + 1)): the difference
    cancels to exp(-u) for large u, 0 from u = 17 in float32 where the value is 4e-8; -u may
    stand as several terms (2*x + 1)."""
    for term in terms:
        k, f = split_numeric_factor(term)
        if not isinstance(f, Softplus) or f.args[0].is_number:
            continue
        rest = list(terms)
        rest.remove(term)
        try:
            for part in Add.make_args(sympy.expand(-k * f.args[0])):
                rest.remove(part)
        except ValueError:  # a part of -k*u is not among the terms
            continue
        return rest + [k * Softplus(sympy.expand(-f.args[0]))]
    return terms


def _tanh_shrink_terms(terms: list) -> list:
    """k*u - k*tanh(u) ~ k*u**3/3 cancels near 0 (tanhshrink): there, Lambert's continued fraction."""
    for term in terms:
        k, f = split_numeric_factor(term)
        if isinstance(f, sympy.tanh) and -k * f.args[0] in terms:
            u = f.args[0]
            patched = sympy.Piecewise((_tanhshrink_fraction(u), sympy.Abs(u) < 2), (u - f, True))
            return _replace_pair(terms, term, -k * u, -k * patched)
    return terms


def _expm1_less_linear_series(w: sympy.Expr) -> sympy.Expr:
    """exp(w) - 1 - w for |w| < 1 without its cancellation (the value is ~w**2/2 from terms ~w):
    the Taylor polynomial w**2 * sum w**n/(n + 2)!, n <= 18 (the first omitted term is below
    2e-20 of the value).  Beyond |w| = 1 the unpatched forms lose at most a factor 2/|w| <= 2."""
    return w**2 * _float_horner([1 / sympy.factorial(n + 2) for n in range(18, -1, -1)], w)


def _expm1_less_linear_terms(terms: list) -> list:
    """Sums that are exp(w) - 1 - w = E(w) in disguise, O(w**2) from terms O(w), patched near w = 0:

    * c*Expm1(u) - c*u = c*E(u);
    * c*Expm1(u) - c*u*exp(u) = -c*exp(u)*E(-u) (the numerator of (exp(x) - 1)/x's derivative, and of
      softexponential's (exp(a*x) - 1)/a in a), c*((1 - u)*exp(u) - 1) away from 0;
    * p - p*w/Expm1(w) = p*E(w)/Expm1(w) (x/(exp(x) - 1)'s derivative, as the rules write it).

    Each becomes Piecewise((series form, |w| < 1), (the terms as they were, True)): away from 0 the
    terms are left as safe_form made them (E(w) itself overflows where they do not).  A partner term
    (-c*u ...) may stand as several terms.
    """
    def without(parts_of: sympy.Expr, term: sympy.Expr):
        rest = list(terms)
        rest.remove(term)
        try:
            for part in Add.make_args(sympy.expand(parts_of)):
                rest.remove(part)
        except ValueError:  # a part is not among the terms
            return None
        return rest

    for term in terms:
        factors = Mul.make_args(term)
        found = [f for f in factors if isinstance(f, Expm1)]
        if len(found) == 1 and not found[0].args[0].is_number:
            u = found[0].args[0]
            c = term / found[0]
            rest = without(-c * u, term)
            if rest is not None:
                near = _expm1_less_linear_series(u)
                return rest + [c * sympy.Piecewise((near, sympy.Abs(u) < 1), (found[0] - u, True))]
            rest = without(-c * u * sympy.exp(u), term)
            if rest is not None:
                near = -sympy.exp(u) * _expm1_less_linear_series(-u)
                # far: (1 - u)*exp(u) - 1, one exp, not Expm1(u) - u*exp(u), which is inf - inf = NaN
                # where exp(u) overflows (the slope of (exp(x) - 1)/x from x = 89 in float32, where it is +inf)
                far = (1 - u) * sympy.exp(u) - 1
                return rest + [c * sympy.Piecewise((near, sympy.Abs(u) < 1), (far, True))]
        for inverse in factors:
            if not (isinstance(inverse, Pow) and inverse.exp == -1 and isinstance(inverse.base, Expm1)
                    and not inverse.base.args[0].is_number):
                continue
            w = inverse.base.args[0]
            p = sympy.expand(-term * inverse.base / w)
            rest = without(p, term)
            if rest is not None:
                near = _expm1_less_linear_series(w) / inverse.base
                return rest + [p * sympy.Piecewise((near, sympy.Abs(w) < 1), (1 - w / inverse.base, True))]
    return terms


def _atan_beside_its_half_pi(terms: list) -> list:
    """k*g*atan(u) +- k*(pi/2)*g -> k*g*(atan(u) +- pi/2) for one factor g of the inputs (the sum inside is then
    the arctangent's tail rule, without cancellation): xatlu written out, x*atan(x)/pi + x/2, was 0.0 for
    -0.318 at x = -1e12 in float32.  Only that pair is taken out of the sum (factoring whole sums blew a
    parametrisation's Cardano inverse up)."""
    for i, term in enumerate(terms):
        k, rest = term.as_coeff_Mul()
        atans = [f for f in Mul.make_args(rest) if isinstance(f, sympy.atan)]
        if len(atans) != 1:
            continue
        g = rest / atans[0]
        if g.is_number:
            continue  # k*atan(u) + k*pi/2 is the arctangent rule's own
        for sign in (1, -1):
            partner = sign * k * sympy.pi / 2 * g
            if partner in terms[:i] + terms[i + 1:]:
                others = [t for j, t in enumerate(terms) if j != i and t != partner]
                return others + [k * g * Add(atans[0], sign * sympy.pi / 2)]
    return terms


def _atan_tail_derivative(terms: list) -> list:
    """k*u/(u**2 + 1) + k*A(u), A the arctangent rule's Piecewise((atan(u) + pi/2, u >= 0),
    (-atan(1/u), True)): for u -> -oo the two cancel (xatlu's derivative, ~2/(3*|u|**3) from
    terms ~1/|u|).  With w = -1/u the sum is atan(w) - w/(1 + w**2) = w**3*N(w**2)/D(w**2),
    from Gauss's continued fraction for atan (positive coefficients), used for u < -1."""
    for term in terms:
        k, f = split_numeric_factor(term)
        if not (isinstance(f, sympy.Piecewise) and len(f.args) == 2 and f.args[1][1] == S.true):
            continue
        (upper, region), (lower, _) = f.args
        if not (isinstance(region, sympy.GreaterThan) and region.rhs == 0):
            continue
        u = region.lhs
        ratio = u / (u**2 + 1)
        if upper != sympy.atan(u) + sympy.pi / 2 or lower != -sympy.atan(1 / u) or k * ratio not in terms:
            continue
        w = -1 / u
        numerator, denominator = _atan_tail_rational()
        tail = w**3 * _float_horner(numerator, w**2) / _float_horner(denominator, w**2)
        patched = sympy.Piecewise((ratio + upper, region), (tail, u < -1), (ratio + lower, True))
        return _replace_pair(terms, term, k * ratio, k * patched)
    return terms


@functools.lru_cache(maxsize=None)
def _atan_tail_rational(depth: int = 22) -> tuple[list, list]:
    """Coefficients (highest first, scaled) of N and D with atan(w) - w/(1 + w**2) =
    w**3*N(w**2)/D(w**2): atan(w) = w/(1 + p), p = w**2/(3 + r), r = 4w**2/(5 + 9w**2/(7 + ...))
    gives w**3*(2 + r)/((3 + r)*(1 + p)*(1 + w**2)).  Cut at depth 22 it is within 1.2e-17
    (relative) for 0 < w <= 1."""
    # Polynomial arithmetic over the rationals: with r = n/d the whole is (2d + n)/((3d + n + s*d)(1 + s)).
    # (sympy.cancel on expressions took ~5 s here, asking assumptions of every intermediate: the first
    # torch_module("xatlu") in a process waited for it.)  The reduced fraction scaled to D(0) = 1 is unique.
    s = sympy.Symbol("s")
    n, d = sympy.Poly(0, s, domain="QQ"), sympy.Poly(1, s, domain="QQ")
    for k in range(depth, 1, -1):
        n, d = sympy.Poly(k * k * s, s, domain="QQ") * d, (2 * k + 1) * d + n
        g = n.gcd(d)
        n, d = n.quo(g), d.quo(g)
    numerator = 2 * d + n
    denominator = (3 * d + n + sympy.Poly(s, s, domain="QQ") * d) * sympy.Poly(1 + s, s, domain="QQ")
    g = numerator.gcd(denominator)
    return _scaled_coefficients(numerator.quo(g), denominator.quo(g))


#: Above this argument Erfcx's derivative is taken from Laplace's continued fraction (see
#: _erfcx_slope); below it the sum 2*u*Erfcx(u) - 2/sqrt(pi) loses at most a factor 21.
_ERFCX_TAIL_FROM = 3


def _erfcx_slope(u: sympy.Expr) -> sympy.Expr:
    """u*Erfcx(u) - 1/sqrt(pi), half of Erfcx's derivative, without its cancellation for large u.

    Laplace's continued fraction erfcx(u) = 1/(sqrt(pi)*(u + K)), K = (1/2)/(u + 1/(u + (3/2)/(u + ...))),
    gives u*erfcx(u) - 1/sqrt(pi) = -K*erfcx(u) exactly; with w = 1/u, K = w*F(w**2) and
    F(s) = (1/2)/(1 + s/(1 + (3/2)*s/(1 + 2*s/(1 + ...)))), a ratio of polynomials with positive
    coefficients in t = (3*w)**2 <= 1 (nothing cancels, nothing overflows for any u > 3).  For
    u <= 3 the sum is kept: its terms exceed the result by 2/(sqrt(pi)*|result|) <= 21 there.
    """
    numerator, denominator = _erfcx_tail_rational()
    w = 1 / u
    t = (_ERFCX_TAIL_FROM * w) ** 2
    tail = -w * _float_horner(numerator, t) / _float_horner(denominator, t) * Erfcx(u)
    return sympy.Piecewise((tail, u > _ERFCX_TAIL_FROM), (u * Erfcx(u) - 1 / sympy.sqrt(sympy.pi), True))


@functools.lru_cache(maxsize=None)
def _erfcx_tail_rational(depth: int = 40) -> tuple[list, list]:
    """Coefficients (highest first, scaled) of F = N(t)/D(t) in :func:`_erfcx_slope`, s = t/9: the
    continued fraction cut at depth 40 is within 2e-18 (relative) of F for u >= 3 (t <= 1).
    Built from the innermost level out, 1 + r_k = (D_k + N_k)/D_k with r_k = (k/2)*s/(1 + r_(k+1))."""
    t = sympy.Symbol("t")
    numerator, denominator = sympy.Poly(sympy.Rational(depth, 18) * t, t), sympy.Poly(1, t)
    for k in range(depth - 1, 1, -1):
        numerator, denominator = sympy.Poly(sympy.Rational(k, 18) * t, t) * denominator, denominator + numerator
    return _scaled_coefficients(denominator * S.Half, denominator + numerator)


def _erfcx_slope_terms(terms: list) -> list:
    """g*u*Erfcx(u) - g/sqrt(pi) -> g*_erfcx_slope(u) (Erfcx's derivative, ~-g/(sqrt(pi)*u**2) from
    terms ~g: every digit lost from u = 1e8 in float64).  The Erfcx terms are tried one at a time
    and all together (SymPy's expand writes 2*(x + 1)*Erfcx(x + 1) as two terms); -g/sqrt(pi) may
    stand as several terms.

    A group is tried once: every term of an expanded polynomial times Erfcx(u) (79 terms in a
    candidate form of (exp((x + 1)**2)*erfc(x + 1))') shares one ``together`` group, whose cancel
    (a degree-78 polynomial over u) was repeated for each term (24 s; the outcome is the same)."""
    tried = set()
    for term in terms:
        found = [f for f in Mul.make_args(term) if isinstance(f, Erfcx) and not f.args[0].is_number]
        if len(found) != 1:
            continue
        e = found[0]
        u = e.args[0]
        together = [t for t in terms if e in Mul.make_args(t)]
        for group in ([term], together):
            key = (e, tuple(group))
            if key in tried:  # the same group gives the same g and the same rest: it failed before
                continue
            tried.add(key)
            g = sympy.cancel(Add(*group) / (u * e))
            if g == 0 or g.has(Erfcx):
                continue
            rest = [t for t in terms if t not in group]
            try:
                for part in Add.make_args(sympy.expand(-g / sympy.sqrt(sympy.pi))):
                    rest.remove(part)
            except ValueError:  # a part of -g/sqrt(pi) is not among the terms
                continue
            return rest + [g * _erfcx_slope(u)]
    return terms


@functools.lru_cache(maxsize=None)
def _erfcx_curvature_rational() -> tuple[list, list]:
    """Coefficients (highest first) of N(t)/(D(t) + N(t)) = 1 - 2*F(t), F = (D/2)/(D + N) of
    :func:`_erfcx_tail_rational` (N/D is the continued fraction's tail below its first level): the
    same continued fraction cut at depth 40, with positive coefficients."""
    half_d, d_plus_n = _erfcx_tail_rational()
    half_d = [S.Zero] * (len(d_plus_n) - len(half_d)) + list(half_d)
    n = [a - 2 * b for a, b in zip(d_plus_n, half_d)]
    while n and n[0] == 0:
        n = n[1:]
    return n, list(d_plus_n)


def _erfcx_curvature(u: sympy.Expr) -> sympy.Expr:
    """Erfcx(u) + 2*u*(u*Erfcx(u) - 1/sqrt(pi)) = (1 + 2*u**2)*Erfcx(u) - 2*u/sqrt(pi), the derivative of
    u*Erfcx(u), without its cancellation for large u (~1/(sqrt(pi)*u**3) from terms ~1/u: x*exp(x**2)*erfc(x)'s
    derivative was 6 times too large at x = 1e4 in float32).  With erfcx(u) = 1/(sqrt(pi)*(u + K)),
    u*K = F(w**2) (see :func:`_erfcx_slope`), the sum is Erfcx(u)*(1 - 2*F) = Erfcx(u)*N/(D + N) for u > 3
    (positive coefficients, within 2e-17 of the exact value); below, the sum is kept, which loses up to a
    factor 212 (u = 3) to cancellation for 1 < u <= 3, and nothing for u <= 0."""
    numerator, denominator = _erfcx_curvature_rational()
    t = (_ERFCX_TAIL_FROM / u) ** 2
    tail = Erfcx(u) * _float_horner(numerator, t) / _float_horner(denominator, t)
    return sympy.Piecewise((tail, u > _ERFCX_TAIL_FROM),
                           (Erfcx(u) + 2 * u * (u * Erfcx(u) - 1 / sympy.sqrt(sympy.pi)), True))


def _erfcx_curvature_terms(terms: list) -> list:
    """h*Erfcx(u) + 2*h*u*_erfcx_slope(u) -> h*_erfcx_curvature(u): the derivative of u*Erfcx(u), as the
    slope rule leaves it (x*exp(x**2)*erfc(x)'s derivative)."""
    for term in terms:
        for slope in Mul.make_args(term):
            if not (isinstance(slope, sympy.Piecewise) and len(slope.args) == 2):
                continue
            erfcx = [e for e in slope.args[1][0].atoms(Erfcx) if not e.args[0].is_number]
            if len(erfcx) != 1:
                continue
            u = erfcx[0].args[0]
            if slope != _erfcx_slope(u):
                continue
            others = list(Mul.make_args(term))
            others.remove(slope)  # not term/slope: SymPy (and cancel) would take 1/slope into the Piecewise
            h = Mul(*others) / (2 * u)
            if h.has(Erfcx) or h.has(sympy.Piecewise):
                continue
            partner = sympy.expand(h * erfcx[0])
            for other in terms:
                if other is not term and sympy.expand(other) == partner:
                    rest = [t for t in terms if t is not term and t is not other]
                    return rest + [h * _erfcx_curvature(u)]
    return terms


def _quotient_that_cancels_its_partner(terms: list, inputs: tuple) -> sympy.Expr | None:
    """K + c*N/D (D a sum holding an exp of an input, K the other terms) -> (K*D + c*N)/D where the expanded
    numerator loses terms to exact cancellation: the ratio tends to -K where the sum cancels to its small
    difference.  The slope of exp(x)/sqrt(1 + x**2*exp(2*x)) holds 1 - x*(x + 1)*exp(2*x)/(x**2*exp(2*x) + 1),
    which is -1/x for large x from terms ~1: ~x ulps (0.14% off at x = 1e5 in float32, 0 for -1e-24 at 1e12);
    the numerator x**2*exp(2*x) + 1 - x*(x + 1)*exp(2*x) is 1 - x*exp(2*x), with no cancellation
    but at its root.  Only small sums (six terms at most, no Piecewise)."""
    for term in terms:
        factors = Mul.make_args(term)
        below = [f for f in factors if isinstance(f, Pow) and f.exp == -1 and isinstance(f.base, Add)]
        if len(below) != 1:
            continue
        d = below[0].base
        if (len(Add.make_args(d)) > 6 or d.has(sympy.Piecewise)
                or not any(isinstance(f, sympy.exp) and f.has(*inputs) for f in sympy.preorder_traversal(d))):
            continue
        rest = [t for t in terms if t is not term]
        if not rest or any(t.has(sympy.Piecewise) for t in rest) or term.has(sympy.Piecewise):
            continue
        numerator = Mul(*[f for f in factors if f is not below[0]])
        parts = [sympy.expand(t * d) for t in rest] + [sympy.expand(numerator)]
        if sum(len(Add.make_args(p)) for p in parts) > 12:
            continue
        combined = sympy.expand(Add(*parts))

        def monomials(e):
            return {t.as_coeff_Mul()[1] for t in Add.make_args(e)}

        # a monomial of the parts cancelled exactly (like terms merely merging, -x + 2*x, is no cancellation)
        if combined != 0 and not monomials(combined) >= set().union(*map(monomials, parts)):
            return combined / d
    return None


def _rewrite_add(expr: sympy.Add, rationalise: bool, inputs: tuple) -> sympy.Expr:
    terms = _softplus_less_its_argument(_shifted_sigmoid_pairs(_mirrored_pairs(
        _atan_tail_derivative(_group_erf_terms(list(expr.args))))))
    if rationalise:  # like the other patches, not inside an existing Piecewise (whose branch it writes)
        terms = _atan_beside_its_half_pi(_tanh_shrink_terms(terms))
    changed = True
    while changed:
        changed = False
        const = sum((t for t in terms if t.is_number), S.Zero)
        for i, term in enumerate(terms):
            if term.is_number:
                continue
            k, f = split_numeric_factor(term)
            replacement = None
            # k*exp(u) - k -> k*Expm1(u)
            if isinstance(f, sympy.exp) and const == -k and k != 0:
                replacement = k * Expm1(f.args[0])
            # k + k*erf(u) -> 2k*NormalCdf(sqrt(2)*u);  k - k*erf(u) -> 2k*NormalCdf(-sqrt(2)*u)
            elif isinstance(f, sympy.erf) and k != 0 and const == k:
                replacement = 2 * k * NormalCdf(sympy.expand(sympy.sqrt(2) * f.args[0]))
            elif isinstance(f, sympy.erf) and k != 0 and const == -k:
                replacement = 2 * const * NormalCdf(sympy.expand(-sympy.sqrt(2) * f.args[0]))
            # 2m - m*erfc(u) -> 2m*NormalCdf(sqrt(2)*u)   (SymPy writes erfc(-u) this way)
            elif isinstance(f, sympy.erfc) and k != 0 and const == -2 * k:
                replacement = const * NormalCdf(sympy.expand(sympy.sqrt(2) * f.args[0]))
            # k - k*NormalCdf(u) -> k*NormalCdf(-u)
            elif isinstance(f, NormalCdf) and const == -k and k != 0:
                replacement = const * NormalCdf(-f.args[0])
            # k - k*Sigmoid(u) -> k*Sigmoid(-u)
            elif isinstance(f, Sigmoid) and const == -k and k != 0:
                replacement = const * Sigmoid(-f.args[0])
            # 2m*Sigmoid(u) - m -> m*tanh(u/2)  (2*Sigmoid(2x) - 1 cancels near 0, tanh(x) does not)
            elif isinstance(f, Sigmoid) and k != 0 and const == -k / 2:
                replacement = -const * sympy.tanh(f.args[0] / 2)
            # k*erf(u) + c with c/k > 1: k*(1 + erf(u)) + (c - k), two terms of one sign
            # (sau: 99*erf(u)/200 + 101/200 cancels for u -> -oo); c/k < -1 is the mirror image
            elif isinstance(f, sympy.erf) and k != 0 and const.is_number and (const / k).is_number \
                    and (const / k > 1 or const / k < -1):
                if const / k > 1:
                    replacement = 2 * k * NormalCdf(sympy.expand(sympy.sqrt(2) * f.args[0])) + (const - k)
                else:
                    replacement = -2 * k * NormalCdf(sympy.expand(-sympy.sqrt(2) * f.args[0])) + (const + k)
            # k - k*tanh(u)**2 -> k*sech(u)**2
            elif (
                isinstance(f, Pow) and f.exp == 2 and isinstance(f.base, sympy.tanh)
                and const == -k and k != 0
            ):
                replacement = const * sympy.sech(f.base.args[0]) ** 2
            # k + k*tanh(u) -> 2k*Sigmoid(2u);  k - k*tanh(u) -> 2k*Sigmoid(-2u)
            elif isinstance(f, sympy.tanh) and k != 0 and const == k:
                replacement = 2 * k * Sigmoid(2 * f.args[0])
            elif isinstance(f, sympy.tanh) and k != 0 and const == -k:
                replacement = 2 * const * Sigmoid(-2 * f.args[0])
            # k*pi/2 + k*atan(u) cancels for u -> -oo, k*atan(u) - k*pi/2 for u -> +oo; on
            # that side use pi/2 + atan(u) = -atan(1/u) (u < 0), atan(u) - pi/2 = -atan(1/u) (u > 0)
            elif rationalise and isinstance(f, sympy.atan) and k != 0 and const == k * sympy.pi / 2:
                u = f.args[0]
                replacement = k * sympy.Piecewise((sympy.pi / 2 + f, u >= 0), (-sympy.atan(1 / u), True))
            elif rationalise and isinstance(f, sympy.atan) and k != 0 and const == -k * sympy.pi / 2:
                u = f.args[0]
                replacement = k * sympy.Piecewise((f - sympy.pi / 2, u <= 0), (-sympy.atan(1 / u), True))
            if replacement is not None:
                rest = [t for j, t in enumerate(terms) if j != i and not t.is_number]
                terms = rest + [replacement]
                changed = True
                break
    if rationalise:
        terms = _erfcx_curvature_terms(_erfcx_slope_terms(_expm1_less_linear_terms(terms)))
    result = Add(*terms)
    if isinstance(result, Add) and len(inputs) >= 1:
        combined = _quotient_that_cancels_its_partner(list(result.args), inputs)
        if combined is not None:
            return combined
    if isinstance(result, Add) and len(inputs) >= 1:
        result = _factor_polynomial(result, inputs)
    if rationalise and isinstance(result, Add):
        result = _rationalise(result, inputs)
    return result


def _factor_polynomial(expr: sympy.Add, inputs: tuple) -> sympy.Expr:
    """A polynomial in one input with rational roots, as a product of its factors.

    x**2/2 + x = x*(x + 2)/2: each factor (x - r) is one correctly rounded operation,
    so the product keeps its relative accuracy next to the roots, where the sum cancels.
    A nested sum of terms of one sign (it cannot cancel) that does not factor over the
    rationals stays as written: sympy.factor would only take out its content, expanded
    into terms of both signs, (x - 1/1000)**2 + 1 -> (1000000*x**2 - 2000*x + 1000001)/1000000,
    which also hides the log(1 + u) of log((x - 1/1000)**2 + 1) from the Log1p rule
    (clamp(1000*x) * cauchy(1) was 1.2e-5 off next to 0 in float32, where 500*log of it
    minus its mirror image rounds 1 + u).  A sum with terms of both signs is expanded as
    before (its terms may cancel exactly: x*(x**2 + 2) + (x + 2)*(x**2 + 2) - 2*x**2*(x + 2)
    is -2*(x**2 - 2*x - 2)), and an expanded one (x**2/2 + 1 -> (x**2 + 2)/2) loses nothing
    to its content taken out.
    """
    symbols = [s for s in inputs if expr.has(s)]
    if len(symbols) != 1 or not expr.is_polynomial(symbols[0]):
        return expr
    if any(not c.is_Rational for c in sympy.Poly(expr, symbols[0]).coeffs()):
        return expr
    factored = sympy.factor(expr)
    if not _factors_properly(factored, symbols[0]) and one_signed_sum(expr) and sympy.expand(expr) != expr:
        return expr
    factored = _dyadic_linear_factors(factored, symbols[0])
    return factored if isinstance(factored, Mul) else expr


def _factors_properly(factored: sympy.Expr, x: sympy.Symbol) -> bool:
    """Whether ``factored`` (sympy.factor's form of a polynomial in x) is more than its content times the
    polynomial itself: two factors that hold x at least, one to a power above 1, or one linear factor (x - r,
    one rounding, exact next to its root r)."""
    bases = [factor.as_base_exp() for factor in Mul.make_args(factored) if factor.has(x)]
    return len(bases) > 1 or any(power != 1 or sympy.degree(base, x) == 1 for base, power in bases)


def _dyadic_linear_factors(factored: sympy.Expr, x: sympy.Symbol) -> sympy.Expr:
    """Linear factors a*x + b with a dyadic root -b/a written a*(x + b/a): x - 1/2 rather than
    (2*x - 1)/2, whose 2*x overflows for |x| > 1.7e38 in float32 (softshrink's x - lambd), while
    x - 1/2 is as exact next to its root (one rounding, exact there)."""
    coefficient, rest = factored.as_coeff_Mul()
    parts, changed = [], False
    for factor in Mul.make_args(rest):
        base, power = factor.as_base_exp()
        if base.has(x) and base.is_polynomial(x) and sympy.degree(base, x) == 1 and power.is_Integer:
            a, b = sympy.Poly(base, x).all_coeffs()
            ratio = b / a
            if ratio.is_Rational and a.is_Rational and (ratio.q & (ratio.q - 1)) == 0:
                coefficient *= a**power
                base, changed = x + ratio, changed or a != 1
        parts.append(base**power)
    if not changed:
        return factored
    # as sympy.factor builds it: a number times one sum must not be distributed again
    return Mul(*parts) if coefficient == 1 else Mul(coefficient, *parts, evaluate=False)


def _rationalise(expr: sympy.Add, inputs: tuple) -> sympy.Expr:
    """k*sqrt(A) + k*T -> k*Piecewise((sqrt(A) + T, T >= 0), ((A - T**2)/(sqrt(A) + |T|), True)).

    Applied when ``A - T**2`` no longer depends on the inputs (e.g. SquarePlus,
    ``sqrt(x**2 + b) + x``): the sum cancels where ``T < 0`` and the rationalised
    quotient has no difference of nearly equal numbers there.
    """
    for i, term in enumerate(expr.args):
        k, f = split_numeric_factor(term)
        if not (isinstance(f, Pow) and f.exp == S.Half and f.base.has(*inputs)):
            continue
        radicand = f.base
        t = Add(*[a for j, a in enumerate(expr.args) if j != i]) / k
        if not t.is_real:
            continue
        # a T free of the inputs (sqrt(x**2 + 1) - 1 alone) goes to the constant rule below: it was
        # skipped, and the sum lost every digit near 0 (5% off at x = 1e-3 in float32)
        difference = sympy.expand(radicand - t**2) if t.has(*inputs) else radicand
        if difference.has(*inputs):
            constant = Add(*[a for j, a in enumerate(expr.args) if j != i and a.is_number]) / k
            others = [a for j, a in enumerate(expr.args) if j != i and not a.is_number]
            near = sympy.expand(radicand - constant**2)
            # the pair k*sqrt(A) + k*T' of the sum without its constant, where A - T'**2 is a number: it cancels
            # for T' -> -oo beside the constant (sqrt(x**2 + 1) + x - 1 was 0.0 for -1 at x = -1e12 in float32,
            # squareplus(x) - 1 as well), and is rationalised there as above
            pair_term = Add(*others) / k
            pair = sympy.expand(radicand - pair_term**2) if others else None
            far = None
            if pair is not None and pair != 0 and not pair.has(*inputs) and pair_term.is_real:
                far = constant + pair / (sympy.sqrt(radicand) + sympy.Abs(pair_term))
            if constant.is_negative and not isinstance(near, Add):
                # k*sqrt(A) - k*|c| with A - c**2 one product (bent identity: sqrt(x**2 + 1) - 1
                # = x**2/(sqrt(x**2 + 1) + 1)): the other terms stay as they are.  Only where
                # sqrt(A) < 2|c| (A - c**2 < 3c**2): beyond, sqrt(A) - |c| does not cancel, and
                # the quotient would overflow in A - c**2 (x**2: |x| > 1.8e19 in float32) first
                patched = sympy.Piecewise((near / (sympy.sqrt(radicand) - constant), near < 3 * constant**2),
                                          (sympy.sqrt(radicand) + constant, True))
                if far is None:
                    return Add(*others, k * patched)
                # the rationalised pair only where the constant's own patch is not taken (there its quotient
                # would cancel against the constant: squareplus(0) - 1 is 0)
                return k * sympy.Piecewise((far, (pair_term < 0) & (near >= 3 * constant**2)),
                                           (pair_term + patched, True))
            if far is not None and constant.is_positive:
                return k * sympy.Piecewise((constant + sympy.sqrt(radicand) + pair_term, pair_term >= 0), (far, True))
            continue
        # on T < 0, sqrt(A) - T is written sqrt(A) + |T|: SymPy then knows it is positive,
        # so the printer need not mask the branch (|T| is not used on T >= 0, where its
        # derivative sign(T) would be wrong at T = 0)
        return k * sympy.Piecewise(
            (sympy.sqrt(radicand) + t, t >= 0),
            (difference / (sympy.sqrt(radicand) + sympy.Abs(t)), True),
        )
    return expr


def _is_sqrt2_scaling(arg: sympy.Expr) -> bool:
    """erfc(w) with w = -u/sqrt(2) for a u free of sqrt(2): map it to 2*NormalCdf(u)."""
    u = sympy.expand(-sympy.sqrt(2) * arg)
    return not u.has(sympy.sqrt(2))


def _abs_from_sign(mul: sympy.Mul) -> sympy.Expr:
    """u*sign(u) -> |u| (both 0 at u = 0): the derivative of |x| times x then sums with
    other |x| terms, and -|x|/(|x| + 1)**2 + 1/(|x| + 1) can become 1/(|x| + 1)**2."""
    factors = list(mul.args)
    for i, factor in enumerate(factors):
        if isinstance(factor, sympy.sign) and factor.args[0] in factors and factor.args[0].is_real:
            rest = [f for j, f in enumerate(factors) if j != i]
            rest.remove(factor.args[0])
            return Mul(sympy.Abs(factor.args[0]), *rest)
    return mul


def _sign_from_abs_power(mul: sympy.Mul) -> sympy.Expr:
    """u**k*|u|**e -> sign(u)**(k % 2)*|u|**(k + e) (k >= 1 an integer, e < 0 a number), and
    sign(u)**n*|u|**m -> sign(u)**(n % 2)*|u|**m (n >= 2 an integer, m != 0 a number): equal wherever
    u != 0, and at u = 0 the new forms are the limits (0, or inf for a negative power) where the old
    are 0*inf = NaN.  Powerpropagation at alpha = 1/2, W*|W|**(-1/2), was NaN at W = 0 (the limit is 0),
    and the derivative of its sign form, sign(W)**2/(2*sqrt|W|), NaN instead of the limit inf."""
    factors = list(mul.args)
    for i, factor in enumerate(factors):
        base, e = factor.as_base_exp()
        if not (isinstance(base, sympy.Abs) and e.is_number and e.is_real and e.is_nonzero):
            continue
        u = base.args[0]
        if not u.is_real:
            continue
        for j, other in enumerate(factors):
            ob, n = other.as_base_exp()
            if j == i or not (n.is_Integer and n >= 1):
                continue
            rest = [f for k, f in enumerate(factors) if k not in (i, j)]
            if ob == u and e.is_negative:
                return Mul(sympy.sign(u) ** (n % 2), base ** (n + e), *rest)
            if ob == sympy.sign(u) and n >= 2:
                return Mul(sympy.sign(u) ** (n % 2), factor, *rest)
    return mul


def _tanh_from_sinh(mul: sympy.Mul) -> sympy.Expr:
    """sinh(u)**a * sech(u)**b -> tanh(u)**a * sech(u)**(b - a) for b >= a: sinh overflows
    where sech underflows (inf*0 = NaN), tanh and sech are bounded."""
    powers: dict = {}
    for factor in mul.args:
        base, exp = factor.as_base_exp()
        if isinstance(base, (sympy.sinh, sympy.sech)) and exp.is_Integer and exp > 0:
            powers.setdefault(base.args[0], {}).setdefault(type(base), []).append(factor)
    replaced = {}
    for u, kinds in powers.items():
        if sympy.sinh in kinds and sympy.sech in kinds:
            a = sum(f.as_base_exp()[1] for f in kinds[sympy.sinh])
            b = sum(f.as_base_exp()[1] for f in kinds[sympy.sech])
            if b >= a:
                for f in kinds[sympy.sinh] + kinds[sympy.sech]:
                    replaced[f] = S.One
                replaced[kinds[sympy.sinh][0]] = sympy.tanh(u) ** a * sympy.sech(u) ** (b - a)
    if not replaced:
        return mul
    return Mul(*[replaced.get(f, f) for f in mul.args])


def _expm1_sigmoid_as_tanh(mul: sympy.Mul) -> sympy.Expr:
    """Expm1(u)*Sigmoid(-u) -> tanh(u/2) (= (exp(u) - 1)/(exp(u) + 1)), each power of the pair once: the bipolar
    sigmoid (1 - exp(-x))/(1 + exp(-x)), in safe form -Expm1(-x)*Sigmoid(x), was inf*0 = NaN from x = -88.7 in
    float32 (-709.8 in float64), where it is -1."""
    factors = list(Mul.make_args(mul))
    for i, factor in enumerate(factors):
        base, power = factor.as_base_exp()
        if not (isinstance(base, Expm1) and power.is_Integer and power > 0):
            continue
        partner = Sigmoid(-base.args[0])
        for j, other in enumerate(factors):
            other_base, other_power = other.as_base_exp()
            if j != i and other_base == partner and other_power.is_Integer and other_power > 0:
                k = min(power, other_power)
                rest = [f for n, f in enumerate(factors) if n not in (i, j)]
                return Mul(*rest, sympy.tanh(base.args[0] / 2) ** k, base ** (power - k), partner ** (other_power - k))
    return mul


def _exp_into_primitives(mul: sympy.Mul) -> sympy.Expr:
    """exp(m*w) times Sigmoid(-w)**n or Expm1(w)**(-n) (m, n positive integers) -> the primitives alone.

    exp(w)*Sigmoid(-w) = exp(w)/(1 + exp(w)) = Sigmoid(w) and exp(w)/Expm1(w) = 1/(1 - exp(-w))
    = -1/Expm1(-w): the product is bounded where exp(w) alone overflows (inf*0 or inf/inf = NaN),
    e.g. x*exp(x)/(1 + exp(x)) from x = 89 in float32, the derivative of x/(exp(x) - 1) from x = 89.
    min(m, n) factors exp(w) are absorbed, one per power of the primitive.  A fractional power n of
    Sigmoid(-w) is absorbed whole where m >= n (exp(n*w)*Sigmoid(-w)**n = Sigmoid(w)**n): the derivative
    of sqrt(1 + exp(2x)), exp(2x)*sqrt(Sigmoid(-2x)), overflowed from x = 44 in float32 where
    exp(x)*sqrt(Sigmoid(2x)) is finite up to x = 88.7, as the function is.
    """
    factors = list(Mul.make_args(mul))
    for i, factor in enumerate(factors):
        if not isinstance(factor, sympy.exp):
            continue
        a = factor.args[0]
        for j, other in enumerate(factors):
            base, power = other.as_base_exp()
            fractional = isinstance(base, Sigmoid) and power.is_Rational and power > 0 and not power.is_Integer
            if j == i or not isinstance(base, (Sigmoid, Expm1)) or not (power.is_Integer or fractional):
                continue
            if isinstance(base, Sigmoid) and power > 0:
                w = -base.args[0]
                absorbed = lambda k: Sigmoid(w) ** k * base ** (power - k)
            elif isinstance(base, Expm1) and power < 0:
                w = base.args[0]
                absorbed = lambda k: (-1 / Expm1(-w)) ** k * base ** (power + k)
            else:
                continue
            m = sympy.cancel(a / w)
            if fractional:
                if not (m.is_Rational and m >= power):
                    continue
            elif not (m.is_Integer and m > 0):
                continue
            k = min(m, abs(power))
            rest = [f for n, f in enumerate(factors) if n not in (i, j)]
            return Mul(*rest, absorbed(k), sympy.exp((m - k) * w))
    return mul


def _exp_into_denominator(mul: sympy.Mul) -> sympy.Expr:
    """exp(m*w)*(c + k*exp(w))**(-n) -> exp((m - a)*w)*(k + c*exp(-w))**(-a)*(c + k*exp(w))**(a - n),
    a = min(m, n), for numbers c, k > 0 and rationals m, n > 0: a powers of exp(w) divided out of
    numerator and denominator, so no factor overflows where the product does not (exp(x)/(1 + 3*exp(x))**2
    is 1/((3 + exp(-x))*(1 + 3*exp(x))), finite on both sides).  The derivative of sqrt(1 + 4*exp(x)), 2*exp(x)/sqrt(4*exp(x) + 1), was
    inf from x = 88.7 in float32 (the value, ~exp(x/2), is finite to 177), exp(x)/(1 + 3*exp(x)) NaN.
    (c = k = 1 is already a power of Sigmoid(-w), which _exp_into_primitives absorbs the same way.)
    At w -> -oo the new form's exp(-w) overflows only where the product is below the smallest normal."""
    if not isinstance(mul, Mul):
        return mul
    factors = list(Mul.make_args(mul))
    for i, factor in enumerate(factors):
        if not isinstance(factor, sympy.exp):
            continue
        for j, other in enumerate(factors):
            if j == i or not (isinstance(other, Pow) and isinstance(other.base, Add) and other.exp.is_Rational
                              and other.exp.is_negative):
                continue
            const, rest = _split_const(other.base)
            if len(rest) != 1 or not (const.is_number and const.is_positive):
                continue
            k, f = split_numeric_factor(rest[0])
            if not (isinstance(f, sympy.exp) and k.is_number and k.is_positive):
                continue
            w = f.args[0]
            m = sympy.cancel(factor.args[0] / w)
            if not (m.is_Rational and m > 0):
                continue
            a = min(m, -other.exp)  # the powers of exp(w) absorbed
            if not a.is_Integer and a != -other.exp:
                # a fractional part of the sum's power would leave two roots of sums, each overflowing on its
                # side where the product does not: x*exp(-x)/(2 + exp(-2*x)) became x/(sqrt(2 + exp(-2*x))*
                # sqrt(2*exp(2*x) + 1)), 0 from x = 88.7 in float32 where it is 9.9e-38 at 89; as it stands, the
                # printer divides the sum by its largest exponential where the code runs
                continue
            remaining = [g for n, g in enumerate(factors) if n not in (i, j)]
            return Mul(*remaining, sympy.exp((m - a) * w), (k + const * sympy.exp(-w)) ** -a,
                       other.base ** (other.exp + a))
    return mul


def _erfcx_from_exp(mul: sympy.Mul, inputs: tuple, rationalise: bool = True) -> sympy.Expr:
    """exp(a)*erfc(u) -> exp(a - u**2)*Erfcx(u) and exp(a)*NormalCdf(v) -> exp(a - v**2/2)*Erfcx(-v/sqrt(2))/2
    where a - u**2 (a - v**2/2) does not depend on the inputs: exp(x**2)*erfc(x) is inf*0 = NaN from
    x = 26.7 in float64 (9.4 in float32), where the scaled function is ~1/(sqrt(pi)*x).

    Where it does depend on them, the scaled form is taken on the side where erfc decays only,
    Piecewise((exp(a - u**2)*Erfcx(u), u > 0), (exp(a)*erfc(u), True)) (not inside a Piecewise holding an
    Erfcx, as this one does, so the pass is idempotent; inside a user's Piecewise too): for u > 0
    Erfcx(u) is in (0, 1] and for u <= 0 erfc(u) in [1, 2], so
    neither branch has a factor that overflows or underflows where the product does not, while
    Erfcx(u) ~ 2*exp(u**2) would overflow for u -> -oo.  exp(x**2/2)*erfc(x) was inf*0 = NaN from x = 13
    in float32 (38 in float64), exp(3*x)*erfc(x) from x = 30 (237), where they are ~exp(-x**2/2)/(x*sqrt(pi))
    and ~exp(3*x - x**2)/(x*sqrt(pi)); and erfc's subnormal values cost digits before that (exp(3*x)*erfc(x)
    was 1.50e-32 instead of 2.23e-32 at x = 10 in float32)."""
    factors = list(Mul.make_args(mul))
    for i, factor in enumerate(factors):
        if not isinstance(factor, sympy.exp):
            continue
        for j, other in enumerate(factors):
            if isinstance(other, sympy.erfc):
                u, scale = other.args[0], S.One
            elif isinstance(other, NormalCdf):
                u, scale = sympy.expand(-other.args[0] / sympy.sqrt(2)), S.Half
            else:
                continue
            if j == i or not u.has(*inputs):
                continue
            remainder = sympy.expand(factor.args[0] - u**2)
            rest = [f for n, f in enumerate(factors) if n not in (i, j)]
            if remainder.has(*inputs):
                if not (rationalise and u.is_extended_real):
                    continue
                return Mul(*rest, sympy.Piecewise((scale * sympy.exp(remainder) * Erfcx(u), u > 0),
                                                  (factor * other, True)))
            return Mul(*rest, scale * sympy.exp(remainder), Erfcx(u))
    return mul


def _scaled_exps(add: sympy.Add) -> list | None:
    """[(k, a)] with add = sum k*exp(a) (a number term c is c*exp(0)), or None if a term is no exp."""
    pairs = []
    for term in add.args:
        if term.is_number:
            pairs.append((term, S.Zero))
            continue
        k, f = split_numeric_factor(term)
        if not isinstance(f, sympy.exp):
            return None
        pairs.append((k, f.args[0]))
    return pairs


def _log_cosh(u: sympy.Expr) -> sympy.Expr:
    """log(cosh(u)) without overflow: |u| + Softplus(-2|u|) - log(2) (exact: cosh(u) = exp(|u|)*(1 +
    exp(-2|u|))/2; cosh overflows from |u| = 89 in float32), and near 0, where that sum cancels to
    ~u**2/2, Log1p(2*sinh(u/2)**2) (cosh(u) - 1 = 2*sinh(u/2)**2, no cancellation).  With u in place of
    |u| the sum is right too, but -2u overflows for u < -max/2: log(cosh(x)) was inf at x = -3e38 in
    float32 (-1.7e308 in float64), where it is 3e38.  (A u not known to be real keeps u: SymPy cannot
    rebuild Abs(3*u - 1) around the printer's masked input of a complex symbol.)"""
    a = sympy.Abs(u) if u.is_extended_real else u
    return sympy.Piecewise((Log1p(2 * sympy.sinh(u / 2) ** 2), sympy.Abs(u) < 1),
                           (a + Softplus(-2 * a) - sympy.log(2), True))


def _log_of_asinh_form(arg: sympy.Expr) -> sympy.Expr | None:
    """log(u + sqrt(u**2 + c)) (c > 0 a number) -> asinh(u/sqrt(c)) + log(sqrt(c)), else None.
    The log form cancels for u -> -oo (log of ~c/(2|u|) formed as a difference) and keeps only
    absolute accuracy near u = 0 (log(1 + u) with 1 + u rounded); asinh keeps relative accuracy."""
    if len(arg.args) != 2:
        return None
    for root, u in (arg.args, reversed(arg.args)):
        if isinstance(root, Pow) and root.exp == S.Half and isinstance(root.base, Add):
            c = sympy.expand(root.base - u**2)
            if c.is_number and c.is_positive:
                return sympy.asinh(u / sympy.sqrt(c)) + sympy.log(sympy.sqrt(c))
    return None


def _rewrite_node(expr: sympy.Expr, rationalise: bool, inputs: tuple, split_erfc: bool = True) -> sympy.Expr:
    if isinstance(expr, sympy.log):
        (arg,) = expr.args
        if isinstance(arg, Sigmoid):
            return LogSigmoid(arg.args[0])
        k, f = split_numeric_factor(arg)
        if isinstance(f, sympy.cosh) and k.is_positive:
            return sympy.log(k) + _log_cosh(f.args[0])
        if isinstance(f, Add) and k.is_positive and k != 1:
            # log((x**2 + 4)/4), the rationalised log(1 + x**2/4): log of a rounded 1 + tiny lost every
            # digit log1p keeps (2.38e-7 for 2.5e-7 at x = 1e-3 in float32), and x**2 overflowed
            const, rest = _split_const(f)
            if rest and const.is_positive and k * const == 1:
                r = Add(*rest) / const
                return Softplus(r.args[0]) if isinstance(r, sympy.exp) else Log1p(r)
        if isinstance(arg, Add):
            const, rest = _split_const(arg)
            if const == 1 and rest:
                r = Add(*rest)
                if isinstance(r, sympy.exp):
                    return Softplus(r.args[0])
                scale, e = split_numeric_factor(r)
                if isinstance(e, sympy.exp) and scale.is_positive and e.args[0].free_symbols:
                    # log(1 + k*exp(u)): Log1p(4*exp(x)) was inf from x = 88.7 in float32 (709.4 in float64)
                    # where the value is x + 1.39.  Softplus(u + log(k)) for u > 0, where the rounding of
                    # u + log(k) costs an ulp or two of a value >= log(1 + k); Log1p(k*exp(u)) below, where
                    # it would cost |u| ulps of the tail's relative accuracy
                    u = e.args[0]
                    return sympy.Piecewise((Softplus(u + sympy.log(scale)), u > 0), (Log1p(r), True))
                return Log1p(r)
            exps = _scaled_exps(arg)
            if exps is not None and len(exps) == 2 and all(k.is_positive for k, _ in exps):
                # log(k1*exp(a1) + k2*exp(a2)) = log(k1) + a1 + Softplus(a2 - a1 + log(k2/k1)):
                # each exp alone overflows (or underflows to log(0)) where the sum's log is tame
                # (log(2*exp(x) + 2) was inf from x = 89 in float32); a constant is a1 = 0
                (k1, a1), (k2, a2) = sorted(exps, key=lambda term: not term[1].is_number)
                return sympy.log(k1) + a1 + Softplus(a2 - a1 + sympy.log(k2 / k1))
        return expr
    if isinstance(expr, Pow) and isinstance(expr.base, Add) and expr.exp.is_negative:
        const, rest = _split_const(expr.base)
        if const == 1 and len(rest) == 1 and isinstance(rest[0], sympy.exp):
            return Sigmoid(-rest[0].args[0]) ** (-expr.exp)
        # (1 + b**e)**(-n), e a symbol (elephant's trainable d): b**e = exp(e*log(b)) overflows to
        # inf (b**e/(b**e + 1)**2 = inf/inf in its derivatives, from |x| ~ 4e9 in float32 at d = 4)
        # where Sigmoid(-e*log(b)) is 0; at b = 0, log(b) = -inf gives Sigmoid(inf) = 1
        if (const == 1 and len(rest) == 1 and isinstance(rest[0], Pow) and not rest[0].exp.is_number
                and rest[0].base.is_nonnegative and rest[0].has(*inputs)):
            return Sigmoid(-rest[0].exp * sympy.log(rest[0].base)) ** (-expr.exp)
        if len(rest) == 1 and const.is_number and const.is_positive:
            # (c + k*cosh(u))**(-n) -> sech(u)**n*(k + c*sech(u))**(-n), c, k > 0 (no sum that cancels): the
            # cosh overflows to inf where the product beside it is finite, cosh(x)/(1 + cosh(2*x)) (sech(x)/2)
            # was inf/inf = NaN from |x| = 44.7 in float32 (355 in float64), and 0 before, where it is
            # 1.9e-22 at x = 50; as cosh(u)**(-n) times a bounded factor, the printer's hyperbolic quotient
            # rule sees the cosh
            k, f = split_numeric_factor(rest[0])
            if isinstance(f, sympy.cosh) and k.is_number and k.is_positive and f.args[0].has(*inputs):
                return f ** expr.exp * (k + const * sympy.sech(f.args[0])) ** expr.exp
        return expr
    if isinstance(expr, (sympy.Max, sympy.Min)) and len(expr.args) == 2:
        # Max/Min(c, f) with f able to overflow: as a Piecewise, the derivative of the
        # untaken side is not multiplied by 0 (exp(100)*Heaviside(...) = inf*0 = NaN)
        consts = [a for a in expr.args if a.is_number]
        others = [a for a in expr.args if not a.is_number]
        if len(consts) == 1 and len(others) == 1 and hazards(others[0], inputs).overflow:
            c, f = consts[0], others[0]
            chosen = f > c if isinstance(expr, sympy.Max) else f < c
            return sympy.Piecewise((f, chosen), (c, True))
        return expr
    if isinstance(expr, Pow) and isinstance(expr.base, sympy.cosh) and expr.exp.is_number and expr.exp.is_negative:
        # 1/cosh(u)**k overflows to 1/inf (value 0, gradient inf/inf = NaN); sech is printed safely
        return sympy.sech(expr.base.args[0]) ** (-expr.exp)
    if isinstance(expr, Mul):
        expr = _erfcx_from_exp(expr, inputs, split_erfc)
        if not isinstance(expr, Mul):
            return expr
        expr = _abs_from_sign(expr)
        if isinstance(expr, Mul):
            expr = _sign_from_abs_power(expr)
        if not isinstance(expr, Mul):
            return expr
        expr = _expm1_sigmoid_as_tanh(expr)
        if not isinstance(expr, Mul):
            return expr
        return _exp_into_primitives(_exp_into_denominator(_tanh_from_sinh(expr)))
    if isinstance(expr, sympy.erfc) and _is_sqrt2_scaling(expr.args[0]):
        return 2 * NormalCdf(sympy.expand(-sympy.sqrt(2) * expr.args[0]))
    if isinstance(expr, Add):
        return _rewrite_add(expr, rationalise, inputs)
    return expr


def _tanhshrink_fraction(u: sympy.Expr) -> sympy.Expr:
    """u - tanh(u) = u*q/(1 + q), q = u**2/(3 + u**2/(5 + u**2/(7 + ...))) (Lambert's continued
    fraction for tanh). Cut at depth 11 and written as u**3*N(u**2)/E(u**2), both polynomials
    with positive coefficients (so nothing cancels), it is within 1e-18 of u - tanh(u) for |u| < 2.
    """
    numerator, denominator = _tanhshrink_rational()
    return u**3 * _float_horner(numerator, u**2) / _float_horner(denominator, u**2)


@functools.lru_cache(maxsize=None)
def _tanhshrink_rational(depth: int = 11) -> tuple[list, list]:
    """Coefficients of N and E in _tanhshrink_fraction: q = s*N(s)/D(s), E = D + s*N."""
    s = sympy.Dummy("s", positive=True)
    q = S.Zero
    for level in range(depth, 0, -1):
        q = s / (2 * level + 1 + q)
    numerator, denominator = sympy.fraction(sympy.cancel(q))
    n = sympy.Poly(sympy.cancel(numerator / s), s)
    return _scaled_coefficients(n, sympy.Poly(denominator, s) + sympy.Poly(s, s) * n)


def _scaled_coefficients(numerator: sympy.Poly, denominator: sympy.Poly) -> tuple[list, list]:
    """Both coefficient lists (highest first) divided by the denominator's constant term."""
    scale = denominator.all_coeffs()[-1]
    return [c / scale for c in numerator.all_coeffs()], [c / scale for c in denominator.all_coeffs()]


def _float_horner(coefficients: list, variable: sympy.Expr) -> sympy.Expr:
    """The polynomial (coefficients highest first, as 30-digit Floats: no rule refactors a
    polynomial with Float coefficients) in ``variable``, nested by Horner's rule."""
    total = S.Zero
    for coefficient in coefficients:
        total = total * variable + sympy.Float(coefficient, 30)
    return total


def _sinc_series(u: sympy.Expr) -> sympy.Expr:
    """sin(u)/u for |u| < 2 as its Taylor polynomial to u**24, in Horner form.

    Its derivative cos(u)/u - sin(u)/u**2 ~ -u/3 cancels near 0 (3/u**2 is the loss); the
    polynomial's does not.  The first omitted term, 2**26/27!, is below 7e-21.
    """
    return _float_horner([S(-1) ** n / sympy.factorial(2 * n + 1) for n in range(12, -1, -1)], u**2)


@functools.lru_cache(maxsize=8192)
def _safe_walk(e: sympy.Expr, rationalise: bool, inputs: tuple, split_erfc: bool = True) -> sympy.Expr:
    """:func:`safe_form`'s bottom-up pass over ``e``, memoised: the rules are pure functions of the node,
    and a derivative's candidates share most subtrees (exp(x) - 1 - x rewrote 1370 nodes and factored
    608 sums for 14 candidates, 5 s of its 6 s of code generation).

    ``rationalise``: the patches that write a Piecewise of their own (false inside an existing one).
    ``split_erfc``: exp(a)*erfc(u) may become the Piecewise of :func:`_erfcx_from_exp`; false inside a
    Piecewise holding an Erfcx (that Piecewise itself: its otherwise-branch keeps exp(a)*erfc(u)), true
    inside a user's Piecewise, where exp(3*x)*erfc(x) was NaN at x = 30 in float32."""
    if e.is_Atom:
        return e
    if isinstance(e, sympy.sinc):
        u = _safe_walk(e.args[0], rationalise, inputs, split_erfc)
        return sympy.Piecewise((_sinc_series(u), sympy.Abs(u) < 2), (sympy.sin(u) / u, True))
    if isinstance(e, sympy.Piecewise):
        split = split_erfc and not any(v.has(Erfcx) for v, _ in e.args)
        pieces = [(_safe_walk(v, False, inputs, split), c) for v, c in e.args]
        return sympy.Piecewise(*pieces)
    if isinstance(e, sympy.log) and isinstance(e.args[0], Add):
        hyperbolic = _log_of_asinh_form(e.args[0])
        if hyperbolic is not None:  # before the rationalisation below rewrites its sum
            return _safe_walk(hyperbolic, rationalise, inputs, split_erfc)
    args = [_safe_walk(a, rationalise, inputs, split_erfc) for a in e.args]
    rebuilt = e.func(*args) if args != list(e.args) else e
    if rebuilt.is_Atom:
        return rebuilt
    if rebuilt.func != e.func:
        # SymPy evaluated the rebuilt node into another shape (1/(2*cosh(u)) into a product
        # with 1/cosh(u)): its new subterms have not met the rules yet
        return _safe_walk(rebuilt, rationalise, inputs, split_erfc)
    new = _rewrite_node(rebuilt, rationalise, inputs, split_erfc)
    if new != rebuilt:
        return _safe_walk(new, rationalise, inputs, split_erfc)
    return new


def _polylog_as_fermi_dirac(e: sympy.polylog) -> sympy.Expr:
    """polylog(n, -c*exp(u)) -> -FermiDirac(n, u + log(c)) for a whole n >= 1 and a number c > 0, else e.

    The logistic kernel's closed forms hold polylog(n, -exp(u)) (``symact.smooth``), which no library
    evaluates in floating point: exp(u) overflows from u = 89 in float32 where the value is ~u**n/n!.
    SymPy leaves polylog(1, z) = -log(1 - z), the derivative of polylog(2, z), unevaluated: -Softplus(u)."""
    n, z = e.args
    if not (n.is_Integer and n >= 1):
        return e
    scale, rest = split_numeric_factor(sympy.powsimp(-z, combine="exp"))
    if not (isinstance(rest, sympy.exp) and scale.is_number and scale.is_positive):
        return e
    return -FermiDirac(n, rest.args[0] + (sympy.log(scale) if scale != 1 else 0))


def safe_form(expr: sympy.Expr, inputs: tuple | None = None) -> sympy.Expr:
    """Rewrite naive floating-point patterns in ``expr`` into safe primitives.

    Rules (applied bottom-up, each exact as an identity of real functions):

    * ``log(1 + exp(u)) -> Softplus(u)``, ``log(1 + u) -> Log1p(u)``,
      ``log(Sigmoid(u)) -> LogSigmoid(u)``, ``log(u + sqrt(u**2 + c)) -> asinh(u/sqrt(c)) + log(sqrt(c))``;
    * ``(1 + exp(w))**(-n) -> Sigmoid(-w)**n`` (so ``x/(1 + exp(-x)) -> x*Sigmoid(x)``),
      ``(c + k*cosh(u))**(-n) -> sech(u)**n*(k + c*sech(u))**(-n)`` (``c, k > 0`` numbers);
    * ``k*exp(u) - k -> k*Expm1(u)``;
    * ``k + k*erf(u) -> 2k*NormalCdf(sqrt(2)*u)`` (the ``1 + erf(u) = erfc(-u)`` rule
      in the form that names the Gaussian CDF), ``k - k*erf(u) -> 2k*NormalCdf(-sqrt(2)*u)``,
      ``2 - erfc(u) -> 2*NormalCdf(sqrt(2)*u)``, ``erfc(-u/sqrt(2)) -> 2*NormalCdf(u)``;
    * ``k*erf(u) + c`` with ``|c| > |k|`` (same for a common factor: ``k*g*erf(u) + c*g``) ->
      ``2k*NormalCdf(sqrt(2)*u) + (c - k)`` (``c/k > 1``) or ``-2k*NormalCdf(-sqrt(2)*u) + (c + k)``
      (``c/k < -1``): two terms of one sign;
    * ``k - k*Sigmoid(u) -> k*Sigmoid(-u)``, ``k - k*NormalCdf(u) -> k*NormalCdf(-u)``, ``k - k*tanh(u)**2 -> k*sech(u)**2``,
      ``k +- k*tanh(u) -> 2k*Sigmoid(+-2u)``, ``2k*Sigmoid(u) - k -> k*tanh(u/2)``;
    * ``u*sign(u) -> |u|``;
    * ``exp(a)*erfc(u) -> exp(a - u**2)*Erfcx(u)`` and ``exp(a)*NormalCdf(v) ->
      exp(a - v**2/2)*Erfcx(-v/sqrt(2))/2`` where ``a - u**2`` (``a - v**2/2``) is free of the inputs, and
      where it is not, ``Piecewise((exp(a - u**2)*Erfcx(u), u > 0), (exp(a)*erfc(u), True))`` (Erfcx only where
      erfc decays; not inside an existing Piecewise);
    * ``g*u*Erfcx(u) - g/sqrt(pi)`` (Erfcx's derivative) -> ``g*Piecewise((-w*F(w**2)*Erfcx(u), u > 3),
      (u*Erfcx(u) - 1/sqrt(pi), True))``, ``w = 1/u``, from Laplace's continued fraction for erfc
      (positive coefficients; not inside an existing Piecewise);
    * ``exp(m*w)*Sigmoid(-w)**n -> Sigmoid(w)*...`` and ``exp(m*w)/Expm1(w)**n -> -1/Expm1(-w)*...``
      (``m, n`` positive integers; one ``exp(w)`` absorbed per power), so
      ``x*exp(x)/(1 + exp(x)) -> x*Sigmoid(x)``; a fractional ``n`` of Sigmoid is absorbed whole where
      ``m >= n`` (``exp(2x)*sqrt(Sigmoid(-2x)) -> exp(x)*sqrt(Sigmoid(2x))``);
    * ``k*exp(u) +- k*exp(-u) -> 2k*cosh(u)``, ``2k*sinh(u)`` (a quotient of the two becomes ``tanh``),
      ``k*Sigmoid(u) - k*Sigmoid(-u) -> k*tanh(u/2)``, ``k*Softplus(u) - k*u -> k*Softplus(-u)``;
    * ``K + c*N/D`` (``D`` a small sum holding an exp of an input) -> ``(K*D + c*N)/D`` where a monomial of the
      expanded numerator cancels exactly (``1 - x*(x + 1)*exp(2x)/(x**2*exp(2x) + 1) -> (1 - x*exp(2x))/(...)``);
    * ``k*g*Sigmoid(a) - k*g*Sigmoid(b)`` with ``a - b = d`` a nonzero number ->
      ``k*(1 - exp(-d))*g*Sigmoid(a)*Sigmoid(-b)`` (no cancellation where both sigmoids are near 1);
    * ``log(k1*exp(a1) + k2*exp(a2)) -> log(k1) + a1 + Softplus(a2 - a1 + log(k2/k1))`` (``k1, k2 > 0``,
      a number term is ``k*exp(0)``), ``log(k*cosh(u)) -> log(k) +
      Piecewise((Log1p(2*sinh(u/2)**2), |u| < 1), (u + Softplus(-2u) - log(2), True))``;
    * ``sqrt(A) + T`` with ``A - T**2`` free of the inputs ->
      ``Piecewise((sqrt(A) + T, T >= 0), ((A - T**2)/(sqrt(A) + |T|), True))``
      (not inside an existing Piecewise, so the pass is idempotent); ``k*sqrt(A) - k*c`` (``c > 0`` a
      number, the other terms left alone) with ``A - c**2`` a single product -> ``k*(A - c**2)/(sqrt(A) + c)``
      (the bent identity's ``sqrt(x**2 + 1) - 1 = x**2/(sqrt(x**2 + 1) + 1)``), and beside a constant the pair
      ``sqrt(A) + T`` is rationalised where it cancels and that patch is not taken (``squareplus(x) - 1``);
    * ``Expm1(u)*Sigmoid(-u) -> tanh(u/2)`` (the bipolar sigmoid ``(1 - exp(-x))/(1 + exp(-x))``);
    * ``k*pi/2 + k*atan(u) -> k*Piecewise((pi/2 + atan(u), u >= 0), (-atan(1/u), True))``
      (and the mirror image), the tail of the arctangent without cancellation (like the
      rationalisation, not inside an existing Piecewise);
    * ``k*u/(u**2 + 1)`` plus that arctangent tail (the derivative of ``u*(pi/2 + atan(u))``,
      xatlu's) -> a Piecewise whose ``u < -1`` branch is ``w**3*N(w**2)/D(w**2)``, ``w = -1/u``,
      from Gauss's continued fraction for atan (positive coefficients: nothing cancels);
    * a polynomial in one input with rational roots -> its factored form;
    * ``Max(c, f)``/``Min(c, f)`` with ``f`` able to overflow (an ``exp``) -> Piecewise;
    * ``k*u - k*tanh(u) -> k*Piecewise((u**3*N(u**2)/E(u**2), |u| < 2), (u - tanh(u), True))``, Lambert's
      continued fraction for tanh cut at depth 11 (all coefficients positive; not inside a Piecewise);
    * ``polylog(n, -c*exp(u)) -> -FermiDirac(n, u + log(c))`` (``n >= 1`` whole, ``c > 0`` a number; n = 1
      gives ``-Softplus(u + log(c))``);
    * ``sinc(u) -> Piecewise((P(u), |u| < 2), (sin(u)/u, True))`` with ``P`` its Taylor
      polynomial to ``u**24`` (SymPy differentiates ``sinc`` into ``cos(u)/u - sin(u)/u**2``,
      which is 0/0 at 0 and cancels near it).

    ``inputs`` are the symbols the rationalisation rule watches (default: all free
    symbols named ``x`` or ``v``).

    >>> import sympy
    >>> x = sympy.Symbol("x", real=True)
    >>> safe_form(x * (1 + sympy.erf(x / sympy.sqrt(2))) / 2)
    x*NormalCdf(x)
    >>> safe_form((x + sympy.sqrt(x**2 + 4)) / 2)
    Piecewise((x + sqrt(x**2 + 4), x >= 0), (4/(sqrt(x**2 + 4) + Abs(x)), True))/2
    """
    expr = sympy.sympify(expr)
    if inputs is None:
        inputs = tuple(s for s in expr.free_symbols if s.name in ("x", "v"))
    inputs = tuple(inputs)
    if expr.has(sympy.polylog):
        expr = expr.replace(lambda e: isinstance(e, sympy.polylog), _polylog_as_fermi_dirac)

    return _safe_walk(expr, True, inputs)


# --------------------------------------------------------------------------- safety rule
_BOUNDED = (sympy.sin, sympy.cos, sympy.tanh, sympy.atan, sympy.erf, sympy.erfc, Sigmoid, NormalCdf,
            sympy.sech)


@dataclass(frozen=True)
class Hazards:
    """Floating-point hazards of an expression, compared lexicographically (fewer is safer).

    ``overflow``: ``exp``/``Expm1``/``cosh``/``sinh`` whose argument is not bounded above on the
    reals (their value can overflow before the expression does), ``Erfcx`` of an argument not
    bounded below (once per argument), plus ``log`` of a non-primitive (can see 0 or ``inf``);
    ``cancellation``: sums that contain both a positive and a negative term which
    depend on the input, other than inside a primitive (a difference of nearly
    equal numbers loses digits);
    ``size``: ``count_ops``, only the last tie-break.
    """

    overflow: int
    cancellation: int
    size: int

    def key(self) -> tuple[int, int, int]:
        return (self.overflow, self.cancellation, self.size)


def _bounded_above(u: sympy.Expr, inputs) -> bool:
    """Sufficient test that ``u`` (an exponent) is bounded above on the reals."""
    if not u.has(*inputs):
        return True
    if isinstance(u, Mul) and u.args[0].is_number and u.args[0].is_negative:
        rest = Mul(*u.args[1:])
        if rest.is_nonnegative:
            return True
    if u.is_nonpositive:
        return True
    if len(inputs) == 1:
        try:
            poly = sympy.Poly(u, inputs[0])
        except sympy.PolynomialError:
            return False
        degree = poly.degree()
        return degree % 2 == 0 and degree > 0 and _negative_where_finite(poly.LC())
    return False


def _negative_where_finite(c: sympy.Expr) -> bool:
    """Sufficient test that ``c`` (free of the inputs) is negative for every value of its symbols where it is
    finite: a negative number times positive factors and even powers of real symbols.  A trainable width is only
    real (codegen's _resolve), and SymPy leaves -1/(2*s**2) unsigned for s = 0, where it is not finite; taking
    exp(-(x + 1)**2/(2*s**2)) for unbounded chose sinh(x/s**2)*exp(-x**2/(2*s**2)) (inf*0 = NaN from |x| = 710 s**2)
    over the difference of two such exponentials."""
    if c.is_negative:
        return True
    number, rest = c.as_coeff_Mul()
    return bool(number.is_negative) and all(
        f.is_positive or (isinstance(f, Pow) and f.base.is_real and f.exp.is_integer and f.exp.is_even)
        for f in Mul.make_args(rest))


def hazards(expr: sympy.Expr, inputs: tuple | None = None) -> Hazards:
    """Count the floating-point hazards of ``expr`` (see :class:`Hazards`)."""
    expr = sympy.sympify(expr)
    if inputs is None:
        inputs = tuple(s for s in expr.free_symbols if s.name in ("x", "v"))
    # Erfcx(u) ~ 2*exp(u**2) for u -> -oo: once per argument, as the Piecewise of its slope rule holds it twice
    # (not in a branch whose condition keeps u above a number, as safe_form's exp(a)*erfc(u) rule writes it)
    unbounded = _unbounded_erfcx_arguments(expr, inputs)
    overflow = len(unbounded)
    cancellation = 0
    stack = [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, Mul) and unbounded and _erfcx_beside_decaying_exp(e, unbounded, inputs):
            overflow += 1
        if isinstance(e, (sympy.exp, Expm1)) and not _bounded_above(e.args[0], inputs):
            overflow += 1
        if isinstance(e, (sympy.cosh, sympy.sinh)) and e.args[0].has(*inputs):
            overflow += 1
        if isinstance(e, sympy.log) and e.args[0].has(*inputs):
            overflow += 1
        if isinstance(e, Add):
            signs = set()
            for term in e.args:
                if term.has(*inputs):
                    signs.add(_written_negative(term))
            if len(signs) == 2:
                cancellation += 1
        stack.extend(e.args)
    return Hazards(overflow, cancellation, int(sympy.count_ops(expr)))


def _written_negative(term: sympy.Expr) -> bool:
    """Whether a term of a sum is written negative: its number coefficient, times -1 for each factor that is a
    sum of terms all written negative (SymPy keeps -x - exp(2*x) inside x*(-x - exp(2*x)), whose sign the
    coefficient alone does not show)."""
    coeff, rest = term.as_coeff_Mul()
    negative = bool(coeff.is_negative)
    for factor in Mul.make_args(rest):
        base, power = factor.as_base_exp()
        if isinstance(base, Add) and power.is_Integer and power % 2 == 1 and all(
                bool(t.as_coeff_Mul()[0].is_negative) for t in base.args):
            negative = not negative
    return negative


def _bounded_below_in(u: sympy.Expr, condition) -> bool:
    """Sufficient test that ``condition`` (a Piecewise condition) keeps ``u`` above a number: it is
    g > 0 or g >= 0 (either way round) with u - g a number or u/g a positive number."""
    if not isinstance(condition, sympy.core.relational.Relational) or isinstance(condition, (sympy.Eq, sympy.Ne)):
        return False
    if isinstance(condition, (sympy.StrictGreaterThan, sympy.GreaterThan)):
        g = condition.lhs - condition.rhs
    else:
        g = condition.rhs - condition.lhs
    if g.is_number:
        return False
    ratio = sympy.cancel(u / g)
    return bool((u - g).is_number or (ratio.is_number and ratio.is_positive))


def _unbounded_erfcx_arguments(expr: sympy.Expr, inputs) -> set:
    """The arguments u of the Erfcx(u) in ``expr`` that are not bounded below (Erfcx overflows like
    exp(u**2) as u -> -oo), leaving out those in a Piecewise branch whose condition bounds u below."""
    found = set()
    stack = [(expr, ())]
    while stack:
        e, conditions = stack.pop()
        if isinstance(e, Erfcx):
            u = e.args[0]
            if not _bounded_above(-u, inputs) and not any(_bounded_below_in(u, c) for c in conditions):
                found.add(u)
        if isinstance(e, sympy.Piecewise):
            stack.extend((v, conditions + (c,)) for v, c in e.args)
            continue
        stack.extend((a, conditions) for a in e.args)
    return found


def _erfcx_beside_decaying_exp(mul: sympy.Mul, unbounded: set, inputs) -> bool:
    """Whether ``mul`` has a factor exp(b), b -> -oo somewhere, beside a factor holding (through sums and
    products only) an Erfcx of an argument in ``unbounded``: inf*0 = NaN where Erfcx overflows before the
    product does.  exp(x**2/2)*erfc(x)'s slope written (sqrt(pi)*x*Erfcx(x) - 2)*exp(-x**2/2)/sqrt(pi) was -inf
    from x = -30 in float64 (-13 in float32) where it is -1.6e197 (-1.3e38), NaN beyond."""
    factors = Mul.make_args(mul)
    decaying = [f for f in factors if isinstance(f, sympy.exp) and f.args[0].has(*inputs)
                and not _bounded_above(-f.args[0], inputs)]
    if not decaying:
        return False

    def holds(e) -> bool:
        if isinstance(e, Erfcx):
            return e.args[0] in unbounded
        if isinstance(e, (Add, Mul)) or (isinstance(e, Pow) and e.exp.is_number and e.exp.is_positive):
            return any(holds(a) for a in e.args)
        return False

    return any(holds(f) for f in factors if f not in decaying)


def one_signed_sum(add: sympy.Expr) -> bool:
    """True when SymPy proves the terms of ``add`` all >= 0 or all <= 0 (the sum cannot cancel)."""
    terms = Add.make_args(add)
    return all(t.is_nonnegative for t in terms) or all(t.is_nonpositive for t in terms)


def _sums_of_one_sign(expr: sympy.Expr, inputs) -> bool:
    """True when every sum in ``expr`` that depends on the inputs is a :func:`one_signed_sum`."""
    return all(one_signed_sum(e) for e in sympy.preorder_traversal(expr) if isinstance(e, Add) and e.has(*inputs))


def _candidates(derivative: sympy.Expr, inputs) -> list[sympy.Expr]:
    forms = [derivative]
    symbols = [s for s in inputs if derivative.has(s)]
    if len(symbols) == 1 and derivative.is_polynomial(symbols[0]) and derivative.has(sympy.Float):
        # the product rule nests a Taylor patch's Horner derivative; re-nest the expanded one
        # (polynomials with rational coefficients keep the factored forms chosen below)
        forms.append(sympy.horner(sympy.expand(derivative), wrt=symbols[0]))
    # a transform that expands a patch's Horner polynomial (cancel on Erfcx's tails) into powers of an
    # input above the 8th gives terms that overflow (x**40 from x = 9.2 in float32) where the nested form
    # does not: such a form is not a candidate
    limit = max(8, _highest_power(derivative, inputs))
    reduced = functools.partial(_reduced_by_a_square_root, inputs=inputs)
    for transform in (sympy.factor_terms, sympy.together, sympy.cancel, _cancelled_common_factor, reduced,
                      _over_common_denominator, _hyperbolic_pythagoras):
        if transform in (sympy.cancel, _cancelled_common_factor) and _expands_beyond(derivative, inputs, limit):
            continue
        try:
            form = safe_form(transform(derivative), inputs)
        except (sympy.PolynomialError, TypeError, ValueError):
            continue
        if _highest_power(form, inputs) <= limit:
            forms.append(form)
    return forms


def _cancelled_common_factor(expr: sympy.Expr) -> sympy.Expr:
    """``cancel``'s form with the factors common to the terms of its numerator taken out (``factor_terms``).

    cancel expands the numerator, so terms that cancel exactly go (x**2 - x*(x + exp(2*x)) + exp(2*x), the
    numerator of the slope of x/sqrt(x**2 + exp(2*x)), is exp(2*x) - x*exp(2*x)), but it leaves a difference of
    near-equal products next to a root; with the common factor out it is (1 - x)*exp(2*x): one rounding in 1 - x,
    and the exp a factor that the printer can normalise against the root below it."""
    return sympy.factor_terms(sympy.cancel(expr))


def _hyperbolic_pythagoras(expr: sympy.Expr) -> sympy.Expr:
    """k + k*sinh(u)**2 -> k*cosh(u)**2 in every sum (k a number), so that a quotient by it cancels: the
    slope of the Gudermannian atan(sinh(x)), cosh(x)/(sinh(x)**2 + 1), was inf/inf = NaN from |x| = 89.4 in
    float32 (710.5 in float64), where it is sech(x)."""
    def pythagoras(total: Add) -> sympy.Expr:
        constant, terms = total.as_coeff_Add()
        for term in Add.make_args(terms):
            k, rest = term.as_coeff_Mul()
            if k == constant != 0 and isinstance(rest, Pow) and rest.exp == 2 and isinstance(rest.base, sympy.sinh):
                return terms - term + k * sympy.cosh(rest.base.args[0]) ** 2
        return total

    return expr.replace(lambda e: isinstance(e, Add) and e.has(sympy.sinh), pythagoras)


def _over_common_denominator(expr: sympy.Expr) -> sympy.Expr:
    """N/D (``together``) as the sum of each term of the expanded N over D, so that a term of N equal to D
    becomes 1: ((x**2 + 1)**(3/2) + 2)/(x**2 + 1)**(3/2), the slope of x + 2*x/sqrt(x**2 + 1), is
    inf/inf = NaN from |x| ~ 7e12 in float32 where 1 + 2/(x**2 + 1)**(3/2) is 1."""
    numerator, denominator = sympy.fraction(sympy.together(expr))
    # only algebraic denominators (powers of polynomials), which overflow together with such a numerator
    if denominator == 1 or not isinstance(numerator, Add) or not all(
            denominator.is_algebraic_expr(s) for s in denominator.free_symbols):
        return expr
    # expand_mul, not expand: (x**2 + 1)**(3/2) must stay whole to cancel against the denominator
    return Add(*[term / denominator for term in Add.make_args(sympy.expand_mul(numerator))])


def _reduced_by_a_square_root(expr: sympy.Expr, inputs) -> sympy.Expr:
    """``expr``, a rational function of the inputs and one s = sqrt(P) (P a polynomial in an input), over one
    denominator with numerator and denominator reduced modulo s**2 = P (s to the first power at most); else
    ``expr`` itself.  The reduction removes the cancellation that s**2 - x**2 hides: the slope of
    x/(1 + sqrt(x**2 + 1)), 1/(s + 1) - x**2/(s*(s + 1)**2), a difference of near-equal terms for large |x|
    (1e-5 off at x = 1e3 in float32, 0 for 1.3e-16 at 1e8), is 1/(x**2 + s + 1), whose sums have terms of one
    sign."""
    def half_power(e):
        return isinstance(e, Pow) and e.exp.is_Rational and e.exp.q == 2

    bases = {e.base for e in expr.atoms(Pow)
             if half_power(e) and any(e.base.has(u) and e.base.is_polynomial(u) for u in inputs)}
    if len(bases) != 1:
        return expr
    (base,) = bases
    s = sympy.Dummy("s", positive=True)
    replaced = expr.replace(lambda e: half_power(e) and e.base == base, lambda e: s ** (2 * e.exp))
    if not replaced.is_rational_function(s, *[u for u in inputs if replaced.has(u)]):
        return expr

    def reduced_modulo_square(part):
        return sympy.collect(sympy.rem(sympy.expand(part), s**2 - base, s), s)

    numerator, denominator = sympy.fraction(sympy.together(replaced))
    # the reduced numerator may share a factor with the denominator: cancelled before the denominator is
    # reduced, the slope of x/(1 + sqrt(x**2 + 1)) is 1/(s**2 + s) -> 1/(x**2 + s + 1), not
    # (s + 1)/((x**2 + 2)*s + 2*x**2 + 2), whose x**2*s overflows float32 from |x| ~ 7e12 (slope 0 for 2e-26)
    numerator, denominator = sympy.fraction(sympy.cancel(reduced_modulo_square(numerator) / denominator))
    return (reduced_modulo_square(numerator) / reduced_modulo_square(denominator)).xreplace({s: sympy.sqrt(base)})


def _expands_beyond(expr: sympy.Expr, inputs, limit: int) -> bool:
    """Whether a sum in ``expr`` with float coefficients, rational in an input, is already a power above
    ``limit`` of it over one denominator (a nested Horner tail, Erfcx's slope for u > 3: x**40): cancel's
    form of ``expr`` holds that power too and is no candidate, and cancel took 2.8 s of x*exp(x)*erfc(x)'s
    code generation to write it.  Only the outermost such sums are put over one denominator (together)."""
    pending = [expr]
    while pending:
        node = pending.pop()
        if node.is_Atom:
            continue
        if (isinstance(node, Add) and node.has(sympy.Float)
                and any(node.has(s) and node.is_rational_function(s) for s in inputs)):
            if _highest_power(sympy.together(node), inputs) > limit:
                return True
            continue
        pending.extend(node.args)
    return False


def _highest_power(expr: sympy.Expr, inputs) -> int:
    """The largest |n| of a power u**n, n an integer, of a u that depends on the inputs (0 if none)."""
    return max((abs(int(e.exp)) for e in sympy.preorder_traversal(expr)
                if isinstance(e, Pow) and e.exp.is_Integer and e.base.has(*inputs)), default=0)


def pytorch_kink_convention(expr: sympy.Expr, original: sympy.Expr | None = None,
                            symbol: sympy.Symbol | None = None, *,
                            antiderivative: sympy.Expr | None = None) -> sympy.Expr:
    """A derivative with PyTorch's autograd value at kinks: SymPy differentiates Max/Min/Abs into
    Heaviside with value 1/2 at 0, while autograd takes 0 there (relu'(0) = 0, hardtanh'(+-1) = 0).
    Only Heavisides that differentiation created change: ``pargs`` omits their default H0 = 1/2.

    With the differentiated expression ``original`` and the ``symbol``, the tie of each two-argument
    ``Max(a, b)``/``Min(a, b)`` gets the slope of least magnitude among the one-sided ones a', b'
    there (the minimum-norm subgradient): the branch whose slope is smaller in magnitude when a'
    and b' have the same sign (leaky_relu written ``Max(x, x/4)``: 1/4 at 0, torch's
    negative_slope), 0 when they differ in sign or one is 0 (relu'(0) = 0, hardtanh'(+-1) = 0,
    ``Max(x, -x)``: 0 as abs'(0)).  Slopes that depend on ``symbol`` are compared where the tie is
    (``Max(x, x**3)``: 1 at x = 1, where the slopes are 1 and 3; ``Max(x**2, 2*x - 1)``, which is
    x**2 everywhere: 2 at its touching point x = 1).  Where a slope holds a step of its own (a nested
    Max/Min: ``Min(Max(0, x), x**2)``), each tie point is solved for and settled from the one-sided slopes
    there (1 at x = 1).  Without ``original``, or where such tie points cannot be listed (parameters,
    no finite solution set), both Heavisides of a tie are 0 there.

    These choices are made construct by construct, so steps of two constructs at one point add their
    conventions: ``Max(x, 0) + Min(x, 0)``, which is x, would get 0 + 0 at 0.  So with ``original``,
    at a point where steps of two or more of the derivative's constructs meet and the derivative's
    one-sided limits agree (the function, continuous there, is differentiable), the derivative takes
    that common limit (:func:`_values_where_differentiable`); at a genuine kink the convention stays.
    ``antiderivative`` is the function whose derivative ``expr`` is, where that is not ``original``
    (an n-th derivative: the (n-1)-th).

    >>> x = sympy.Symbol("x", real=True)
    >>> pytorch_kink_convention(sympy.diff(sympy.Max(0, x), x))
    Heaviside(x, 0)
    >>> pytorch_kink_convention(sympy.diff(sympy.Max(x, x/4), x), sympy.Max(x, x/4), x).subs(x, 0)
    1/4
    >>> smooth = sympy.Max(x, 0) + sympy.Min(x, 0)
    >>> pytorch_kink_convention(sympy.diff(smooth, x), smooth, x).subs(x, 0)
    1
    """
    ties = {} if original is None or symbol is None else _tie_values(original, symbol)
    result = expr.replace(
        lambda e: isinstance(e, sympy.Heaviside) and len(e.pargs) == 1,
        lambda e: sympy.Heaviside(e.args[0], ties.get(e.args[0], S.Zero)),
    )
    if original is None or symbol is None:
        return result
    return _values_where_differentiable(result, original if antiderivative is None else antiderivative, symbol)


def _tie_values(expr: sympy.Expr, symbol: sympy.Symbol) -> dict:
    """{u: H0} for the Heaviside(u) that SymPy's derivative of each two-argument Max/Min in ``expr``
    creates (Max(a, b): Heaviside(a - b) times a', Heaviside(b - a) times b'; Min the other way
    round): H0 = 1 for the one branch whose slope is the minimum-norm subgradient at the tie, 0 for
    the others (a Piecewise in the parameters where the slopes' order depends on them).  With more
    arguments (SymPy flattens ``Max(-1, Max(x, x/4))`` to ``Max(-1, x/4, x)``) see :func:`_tie_values_of_many`.
    A Heaviside that two nodes would need with different values keeps 0."""
    wanted: dict = {}
    conflicts = set()
    for node in sympy.preorder_traversal(expr):
        if not isinstance(node, (sympy.Max, sympy.Min)):
            continue
        if len(node.args) > 2:
            for u, value in _tie_values_of_many(node, symbol).items():
                if wanted.get(u, value) != value:
                    conflicts.add(u)
                wanted[u] = value
            continue
        a, b = node.args
        p, q = sympy.diff(a, symbol), sympy.diff(b, symbol)
        if isinstance(node, sympy.Max):
            steps = (a - b, b - a)  # Heaviside(args[i] - args[1 - i]) multiplies args[i]'
        else:
            steps = (b - a, a - b)  # Heaviside(args[1 - i] - args[i]) multiplies args[i]'
        chosen = _least_slope(p, q, symbol)
        if chosen is None:
            # slopes in the parameters (Max(x, a*x)) or the inputs (Max(x, x**3), whose tie at x = 1
            # has the slopes 1 and 3): decided where they take values, which is only read at the tie,
            # by the rule for any number of arguments
            many = _tie_values_of_many(node, symbol)
            if not many:
                continue  # a slope with a step of its own that its tie points could not settle
            values = tuple(many[u] for u in steps)
        else:
            values = tuple(S.One if chosen == i else S.Zero for i in range(2))
        for u, value in zip(steps, values):
            if wanted.get(u, value) != value:
                conflicts.add(u)
            wanted[u] = value
    for u in conflicts:
        wanted[u] = S.Zero
    return wanted


def _tie_values_of_many(node: sympy.Expr, symbol: sympy.Symbol) -> dict:
    """{u_i: H0_i} for a Max/Min of n > 2 arguments a_i, whose derivative SymPy writes as the sum of
    a_i' times Heaviside(u_i), u_i = a_i - Max(the others) (Min: Min(the others) - a_i).  H0_i is read
    only where u_i = 0, where a_i ties with those a_j equal to it; the one-sided slopes there are the
    least and the greatest tied slope, so the minimum-norm subgradient is the tied slope of least
    magnitude when all tied slopes have one sign, else 0.  H0_i is 1 where a_i' is that slope (the first
    such argument on equal magnitudes): for every other j, a_j != a_i, or a_i'*a_j' > 0 and a_i' is
    the lesser in magnitude.  With two arguments u_i = 0 is the tie itself (a_j = a_i there), so the
    condition is only the comparison of the slopes.  A slope with a step of its own (``Min(Max(0, x), x**2)``:
    Heaviside(x) and 2*x) is settled at the tie points themselves (:func:`_tie_values_at_points`); where
    that fails, every H0 stays 0 ({} is returned)."""
    args = node.args
    slopes = [sympy.diff(a, symbol) for a in args]
    if _hold_steps(slopes):
        return _tie_values_at_points(node, symbol)
    values = {}
    for i, (a, p) in enumerate(zip(args, slopes)):
        u = _step_argument(node, i)
        if p.is_zero:
            values[u] = S.Zero
            continue
        condition = sympy.And(*[
            _or_unequal(len(args), b, a, sympy.StrictGreaterThan(p * q, 0)
                        & (sympy.LessThan if j > i else sympy.StrictLessThan)(sympy.Abs(p), sympy.Abs(q)))
            for j, (b, q) in enumerate(zip(args, slopes)) if j != i])
        values[u] = sympy.Piecewise((1, condition), (0, True))
    return values


def ties_move_with_parameters(expr: sympy.Expr, symbol: sympy.Symbol) -> bool:
    """Whether a Max/Min in ``expr`` has arguments with parameters (symbols other than ``symbol``) and slopes
    with steps of their own, so that its ties are settled point by point (:func:`_tie_values_at_points`),
    which needs the tie points as numbers: ``Min(Max(0, x), a*x**2)`` ties at x = 1/a.  Its derivative's
    kink convention is then decided once the parameters have values.

    >>> x, a = sympy.symbols("x a", real=True)
    >>> ties_move_with_parameters(sympy.Min(sympy.Max(0, x), a*x**2), x)
    True
    >>> ties_move_with_parameters(sympy.Max(0, a*x), x)   # its tie rule needs no tie points
    False
    """
    return any(isinstance(node, (sympy.Max, sympy.Min)) and _has_parameters(node, symbol)
               and _hold_steps(sympy.diff(a, symbol) for a in node.args)
               for node in sympy.preorder_traversal(expr))


def _hold_steps(slopes) -> bool:
    """Whether a slope holds a step of its own (a Max/Min argument's derivative: Heaviside, Piecewise)."""
    return any(p.has(sympy.Heaviside, sympy.DiracDelta, sympy.Piecewise) for p in slopes)


def _has_parameters(node: sympy.Expr, symbol: sympy.Symbol) -> bool:
    """Whether an argument of ``node`` holds a symbol other than ``symbol``."""
    return any(a.free_symbols - {symbol} for a in node.args)


def _step_argument(node: sympy.Expr, i: int) -> sympy.Expr:
    """u_i of a Max/Min's derivative sum a_i' Heaviside(u_i): a_i - Max(the others), or Min(the others) - a_i."""
    others = node.args[:i] + node.args[i + 1:]
    return node.args[i] - sympy.Max(*others) if isinstance(node, sympy.Max) else sympy.Min(*others) - node.args[i]


def _or_unequal(n: int, b: sympy.Expr, a: sympy.Expr, condition):
    """``Ne(b, a) | condition``; ``condition`` alone for two arguments, whose H0 is read only where b = a."""
    return condition if n == 2 else sympy.Or(sympy.Ne(b, a), condition)


#: A tie whose slopes hold steps is settled point by point: at most this many tie points.
_MAX_TIE_POINTS = 16


def _one_sided_value(expr: sympy.Expr, symbol: sympy.Symbol, point: sympy.Expr, sign: int) -> sympy.Expr | None:
    """The limit of ``expr`` (a slope holding Heaviside/Piecewise steps, otherwise continuous at
    ``point``) as ``symbol`` -> ``point`` from the right (``sign`` = 1) or the left (-1): each step is
    decided at point + sign*s for an infinitesimal s > 0, then s = 0.  None when a step stays undecided
    or the value is not a finite real number."""
    s = sympy.Dummy("s", positive=True)
    moved = expr.xreplace({symbol: point + sign * s})
    moved = moved.replace(lambda e: isinstance(e, sympy.Heaviside),
                          lambda e: sympy.Heaviside(sympy.expand(e.args[0]), *e.args[1:]))
    moved = moved.replace(lambda e: isinstance(e, sympy.core.relational.Relational),
                          lambda e: e.func(sympy.expand(e.lhs - e.rhs), 0))
    if moved.has(sympy.Heaviside, sympy.Piecewise, sympy.DiracDelta):
        # a step still in s: its argument vanishes at the point; decide its sign from the leading term
        def leading_sign(w):
            try:
                lead = sympy.series(w, s, 0, 4).removeO().as_leading_term(s)
            except Exception:  # noqa: BLE001 - SymPy cannot expand it: undecided
                return None
            return lead.is_positive, lead.is_negative

        def step(e):
            signs = leading_sign(e.args[0])
            if signs is None or signs == (None, None) or signs == (False, False):
                return e
            return S.One if signs[0] else S.Zero

        moved = moved.replace(lambda e: isinstance(e, sympy.Heaviside) and e.args[0].has(s), step)
        if moved.has(sympy.Heaviside, sympy.Piecewise, sympy.DiracDelta):
            return None
    value = moved.xreplace({s: S.Zero})
    return value if value.is_number and value.is_real and value.is_finite else None


def _tie_points(a: sympy.Expr, b: sympy.Expr, symbol: sympy.Symbol) -> set | None:
    """The real points where a = b, isolated ones only, or None where SymPy cannot solve a piece.  Each
    piece of the folded Piecewise of a - b is solved on its own and a root kept where a - b is 0 (solve on
    the whole Piecewise decides every piece's condition as a set: 6 s for Min(1, Max(0, x)) against
    Min(x**2, Max(x/4, Min(x, 2*x - 1)))).  A piece that is 0 throughout (a tie on an interval) is left
    out: its H0 stays 0 there, as before."""
    difference = a - b
    folded = sympy.piecewise_fold(difference.rewrite(sympy.Piecewise))
    pieces = [e for e, _ in folded.args] if isinstance(folded, sympy.Piecewise) else [folded]
    points = set()
    for piece in pieces:
        if not piece.has(symbol):
            continue
        try:
            roots = sympy.solve(piece, symbol)
        except (NotImplementedError, ValueError, TypeError):
            return None
        if not isinstance(roots, list):
            return None
        for t in roots:
            if t.is_real and t.is_finite and t not in points and sympy.simplify(difference.xreplace({symbol: t})) == 0:
                points.add(t)
    return points


@functools.lru_cache(maxsize=256)
def _tie_values_at_points(node: sympy.Expr, symbol: sympy.Symbol) -> dict:
    """{u_i: H0_i} (u_i as in :func:`_tie_values_of_many`) for a Max/Min whose slopes hold steps of their own
    (``Min(Max(0, x), x**2)``, whose slopes Heaviside(x) and 2*x cannot be compared in one condition for every
    x).  Its tie points t (the real solutions of a_i = a_j, in ``symbol`` alone) are found and, at each, the
    arguments tied at the node's value and their one-sided slopes: right of a tie, Max follows the tied
    argument with the greatest right-hand slope and Min the least, and left of it the other way round.
    The first tied argument whose slope (with its own steps' convention) is the one-sided slope of least
    magnitude there, or none where the two differ in sign, gets H0 = 1 at t: ``Min(Max(0, x), x**2)``'(1) = 1
    (x**2 with slope 2 on the left, x with slope 1 on the right).  Where no tied argument's slope is that
    one (an argument with a kink of its own at t), one with a nonzero slope s gets H0 = least/s there.
    {} where the tie points are not finitely many numbers or a one-sided slope cannot be decided."""
    args = node.args
    if _has_parameters(node, symbol):
        return {}  # tie points in the parameters: settled once they have values (ties_move_with_parameters)
    points = set()
    for i, a in enumerate(args):
        for b in args[i + 1:]:
            found = _tie_points(a, b, symbol)
            if found is None:
                return {}
            points.update(found)
    if len(points) > _MAX_TIE_POINTS:
        return {}
    slopes = [sympy.diff(a, symbol) for a in args]
    at_tie = [pytorch_kink_convention(p, a, symbol) for p, a in zip(slopes, args)]
    greater_on_right = isinstance(node, sympy.Max)
    chosen: list = [{} for _ in args]  # {tie point: H0} per argument
    for t in sorted(points, key=float):
        values = [a.xreplace({symbol: t}) for a in args]
        top = node.func(*values)
        tied = [i for i, v in enumerate(values) if sympy.simplify(v - top) == 0]
        if len(tied) < 2:
            continue
        sides = []
        for sign in (1, -1):
            one = [_one_sided_value(slopes[i], symbol, t, sign) for i in tied]
            if None in one:
                return {}
            sides.append(sympy.Max(*one) if greater_on_right == (sign > 0) else sympy.Min(*one))
        right, left = sides
        if not (right * left).is_positive:
            continue  # opposite signs or a zero slope: 0, every H0 = 0
        least = right if bool(abs(right) <= abs(left)) else left
        there = {i: sympy.simplify(at_tie[i].xreplace({symbol: t})) for i in tied}
        match = next((i for i in tied if sympy.simplify(there[i] - least) == 0), None)
        if match is not None:
            chosen[match][t] = S.One
            continue
        # an argument with a kink of its own at t: its slope there (its own convention) is neither one-sided
        # slope of the whole (Min(Max(-1, x), Max(x/2, x**3)) at 0: slopes 1 and 0, one-sided 1 and 1/2);
        # H0 weights a nonzero one so that the derivative at t is the least one-sided slope
        nonzero = next((i for i in tied if there[i].is_nonzero), None)
        if nonzero is not None:
            chosen[nonzero][t] = least / there[nonzero]
    # only at the tie points found: a tie solve missed keeps H0 = 0, as before
    return {_step_argument(node, i): (sympy.Piecewise(*[(h0, sympy.Eq(symbol, t)) for t, h0 in picked.items()],
                                                      (0, True)) if picked else S.Zero)
            for i, picked in enumerate(chosen)}


def _least_slope(p: sympy.Expr, q: sympy.Expr, symbol: sympy.Symbol) -> int | None:
    """0 or 1: the index of the slope (p, q) that is the minimum-norm subgradient (same sign, the
    smaller magnitude), -1 when that is 0 (opposite signs or a zero slope), None when undecided
    (SymPy cannot order them for every value of ``symbol`` and the parameters)."""
    product = (p * q).is_positive
    if product is False:
        return -1
    if product is None or p.has(symbol) or q.has(symbol):
        return None
    order = (sympy.Abs(p) - sympy.Abs(q)).is_nonpositive
    if order is None:
        return None
    return 0 if order else 1


#: A derivative with more steps than this keeps its constructs' conventions everywhere: each step's
#: zeros are solved for, which a closed form with dozens of Max/Min would spend seconds on.
_MAX_STEP_ARGUMENTS = 24


def _step_arguments(expr: sympy.Expr, symbol: sympy.Symbol) -> dict:
    """{construct: (u, ...)} for each construct of ``expr`` that steps in ``symbol``, with the expressions u
    whose signs decide its steps: Heaviside(u) and sign(u) one each, a Piecewise every comparison a < b
    (u = a - b) in its conditions (not Eq/Ne, which pick out single points).  A Piecewise is one construct
    however many conditions it has: its author wrote its value at every point, softshrink's (lambd = 0)
    included, where torch's gradient is 0 although the function is x."""
    found: dict = {}
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, (sympy.Heaviside, sympy.sign)):
            arguments = [node.args[0]]
        elif isinstance(node, sympy.Piecewise):
            arguments = [c.lhs - c.rhs for _, condition in node.args if isinstance(condition, sympy.Basic)
                         for c in condition.atoms(sympy.core.relational.Relational)
                         if not isinstance(c, (sympy.Eq, sympy.Ne))]
        else:
            continue
        arguments = tuple(dict.fromkeys(u for u in arguments if u.has(symbol)))
        if arguments:
            found[node] = arguments
    return found


@functools.lru_cache(maxsize=512)
def _step_zeros(u: sympy.Expr, symbol: sympy.Symbol) -> tuple[frozenset, bool] | None:
    """(the numbers t with u(t) = 0, whether those are all the zeros of u): not all where u is 0 on an
    interval (Heaviside(Max(0, x)) for x <= 0) or has zeros in the parameters; None where SymPy cannot solve,
    or where a piece is a polynomial of degree above 4."""
    folded = sympy.piecewise_fold(u.rewrite(sympy.Piecewise))
    pieces = [e for e, _ in folded.args] if isinstance(folded, sympy.Piecewise) else [folded]
    if any(piece.is_polynomial(symbol) and sympy.degree(piece, symbol) > 4 for piece in pieces if piece.has(symbol)):
        return None  # a Taylor patch's degree-20 polynomial: its real roots take SymPy minutes
    points = _tie_points(u, S.Zero, symbol)
    if points is None:
        return None
    numbers = frozenset(t for t in points if t.is_number)
    return numbers, len(numbers) == len(points) and not any(piece == 0 for piece in pieces)


class _Undecided(Exception):
    """A step whose side of the point an infinitesimal step cannot tell."""


def _sign_near_zero(w: sympy.Expr, s: sympy.Symbol) -> int:
    """The sign of w(s) for every small enough s > 0 (0 where w is 0 identically); :class:`_Undecided`
    where neither its value at 0 nor its leading term in s tells."""
    w = sympy.expand(w)
    if w == 0:
        return 0
    at_zero = w.xreplace({s: S.Zero})
    if not (at_zero.is_number and at_zero.is_finite):
        raise _Undecided
    if at_zero.is_zero is not True:
        if at_zero.is_positive:
            return 1
        if at_zero.is_negative:
            return -1
        raise _Undecided
    try:
        lead = sympy.series(w, s, 0, 6).removeO().as_leading_term(s)
    except Exception as error:  # noqa: BLE001 - SymPy cannot expand it: undecided
        raise _Undecided from error
    if lead.is_positive:
        return 1
    if lead.is_negative:
        return -1
    raise _Undecided


def _limit_beside(expr: sympy.Expr, symbol: sympy.Symbol, point: sympy.Expr, sign: int) -> sympy.Expr | None:
    """The limit of ``expr`` as ``symbol`` -> ``point`` from the right (``sign`` = 1) or the left (-1), for
    an ``expr`` continuous but for its steps (Heaviside, sign, Max/Min/Abs, Piecewise): each comparison is
    decided at point + sign*s for an infinitesimal s > 0, innermost first, then s = 0.  DiracDelta counts
    as 0, as in a sampled derivative.  None where a comparison stays undecided or the value is not a
    finite real number."""
    s = sympy.Dummy("s", positive=True)
    moved = expr.replace(lambda e: isinstance(e, sympy.DiracDelta), lambda e: S.Zero)
    moved = moved.rewrite(sympy.Piecewise).xreplace({symbol: point + sign * s})
    try:
        moved = moved.replace(  # bottom-up: a comparison is decided once those inside it are
            lambda e: isinstance(e, sympy.core.relational.Relational) and e.has(s),
            lambda e: e.func(_sign_near_zero(e.lhs - e.rhs, s), 0))
    except _Undecided:
        return None
    if moved.has(sympy.Piecewise):
        return None
    value = moved.xreplace({s: S.Zero})
    return value if value.is_number and value.is_real and value.is_finite else None


def _value_at(expr: sympy.Expr, symbol: sympy.Symbol, point: sympy.Expr) -> sympy.Expr | None:
    """``expr`` at ``symbol`` = ``point`` (DiracDelta as 0), or None where that is not a finite real number."""
    value = expr.replace(lambda e: isinstance(e, sympy.DiracDelta), lambda e: S.Zero).xreplace({symbol: point})
    return value if value.is_number and value.is_real and value.is_finite else None


def _values_where_differentiable(derivative: sympy.Expr, antiderivative: sympy.Expr,
                                 symbol: sympy.Symbol) -> sympy.Expr:
    """``derivative`` with its limit as its value at each point t where steps of two or more constructs meet
    and the function is differentiable: ``antiderivative`` continuous at t and the derivative's one-sided
    limits at t equal.  Each construct's convention holds for that construct alone, so at such a point the
    sum of them need not be the slope: ``Max(x, 0) + Min(x, 0)``' = Heaviside(x, 0) + Heaviside(-x, 0) is
    0 at 0 where x' = 1.  A point where a single step changes is left as it is (a Max/Min tie's rule already
    takes the common limit where the slopes agree), and so is every point of a derivative with fewer than
    two steps (:func:`_step_arguments`), which costs nothing more then.

    The value is put into the H0 of one Heaviside that vanishes at t, and in which the value at t is linear:
    H0 itself where t is that argument's only zero (no extra operation in the printed code), else
    Piecewise((H0 at t, Eq(symbol, t)), (the old H0, True)).  Where no Heaviside can carry it (steps of sign
    or Piecewise alone), the derivative becomes Piecewise((its limit, Eq(symbol, t)), (derivative, True)).
    Points in the parameters, or where a limit cannot be decided, are left as they are."""
    steps = _step_arguments(derivative, symbol)
    arguments = {u for us in steps.values() for u in us}
    if len(steps) < 2 or len(arguments) > _MAX_STEP_ARGUMENTS:
        return derivative
    zeros = {u: _step_zeros(u, symbol) for u in arguments}
    meeting: dict = {}
    for us in steps.values():  # the number of constructs that step at each point
        for t in {t for u in us for t in (zeros[u][0] if zeros[u] is not None else ())}:
            meeting[t] = meeting.get(t, 0) + 1
    points = sorted((t for t, n in meeting.items() if n >= 2), key=float)
    for t in points[:_MAX_TIE_POINTS]:
        before = [_limit_beside(antiderivative, symbol, t, sign) for sign in (-1, 1)]
        value = _value_at(antiderivative, symbol, t)
        if None in before or value is None or any(sympy.simplify(b - value) != 0 for b in before):
            continue  # not continuous there (a jump), or undecided
        left, right = (_limit_beside(derivative, symbol, t, sign) for sign in (-1, 1))
        if left is None or right is None or sympy.simplify(left - right) != 0:
            continue  # a genuine kink: the convention stays
        now = _value_at(derivative, symbol, t)
        if now is not None and sympy.simplify(now - left) == 0:
            continue
        derivative = _with_value_at(derivative, symbol, t, left, zeros)
    return derivative


def _with_value_at(derivative: sympy.Expr, symbol: sympy.Symbol, point: sympy.Expr, value: sympy.Expr,
                   zeros: dict) -> sympy.Expr:
    """``derivative`` equal to ``value`` at ``symbol`` = ``point``, through the H0 of a Heaviside that
    vanishes there (see :func:`_values_where_differentiable`)."""
    unknown = sympy.Dummy("h0")
    for step in sorted(derivative.atoms(sympy.Heaviside), key=sympy.default_sort_key):
        u = step.args[0]
        if not u.has(symbol) or sympy.simplify(u.xreplace({symbol: point})) != 0:
            continue
        trial = derivative.xreplace({step: sympy.Heaviside(u, unknown)}).replace(
            lambda e: isinstance(e, sympy.DiracDelta), lambda e: S.Zero).xreplace({symbol: point})
        trial = sympy.expand(trial)
        if trial.free_symbols != {unknown} or not trial.is_polynomial(unknown):
            continue
        slope = trial.diff(unknown)
        if slope.has(unknown) or slope.is_zero is not False:
            continue
        h0 = sympy.simplify((value - trial.xreplace({unknown: S.Zero})) / slope)
        old = step.args[1] if len(step.args) > 1 else S.Half
        only = zeros.get(u)
        if not (only is not None and only[1] and only[0] == {point}):
            h0 = sympy.Piecewise((h0, sympy.Eq(symbol, point)), (old, True))
        return derivative.xreplace({step: sympy.Heaviside(u, h0)})
    return sympy.Piecewise((value, sympy.Eq(symbol, point)), (derivative, True))


def safe_derivative(expr: sympy.Expr, symbol: sympy.Symbol, inputs: tuple | None = None) -> sympy.Expr:
    """d expr / d symbol, in the form with the fewest floating-point hazards.

    The expression is first put in :func:`safe_form`; SymPy differentiates it (the
    primitives' derivatives stay in the safe vocabulary), ``DiracDelta`` terms are
    dropped (they vanish almost everywhere, which is what a sampled derivative
    sees), and the result is put in safe form again.  Among that form and its
    ``factor_terms``/``together``/``cancel`` variants (each re-made safe) the one
    with the smallest :func:`hazards` key (overflow-prone exps, then cancelling
    sums, then operation count) is returned.

    >>> import sympy
    >>> x = sympy.Symbol("x", real=True)
    >>> safe_derivative(sympy.tanh(x), x)
    sech(x)**2
    """
    expr = sympy.sympify(expr)
    if inputs is None:
        inputs = tuple(s for s in expr.free_symbols if s.name in ("x", "v"))
    inputs = tuple(inputs) or (symbol,)
    expr = expr.replace(lambda e: isinstance(e, sympy.Piecewise), lambda e: _parameter_point_branches(e, inputs))

    def differentiated(form: sympy.Expr) -> sympy.Expr:
        # the derivative symact's Activation.derivative() gives, so autograd's at kinks (relu'(0) = 0)
        raw = pytorch_kink_convention(sympy.diff(form, symbol), form, symbol).replace(
            lambda e: isinstance(e, sympy.DiracDelta), lambda e: S.Zero)
        return safe_form(raw, inputs)

    def best(*forms: sympy.Expr) -> sympy.Expr:
        return min((f for e in forms for f in _candidates(e, inputs)), key=lambda f: hazards(f, inputs).key())

    def branches(pw: sympy.Piecewise) -> sympy.Piecewise:
        pieces, earlier = [], []
        for value, condition in pw.args:
            chosen = best(value, *_signed_branch_forms(value, condition, earlier, inputs))
            pieces.append((_patched_branch(chosen), condition))
            earlier.append(condition)
        return sympy.Piecewise(*pieces)

    safe = safe_form(expr, inputs)
    forms = [differentiated(safe)]
    if safe != expr:
        # A patch that keeps the value accurate (tanhshrink's continued fraction below
        # |x| = 2) may differentiate to a long form (a degree-24 ratio) where the formula's
        # own derivative needs no patch ((x - tanh x)' = tanh(x)**2).  That derivative
        # competes only when it provably cannot cancel or overflow: the hazard count does
        # not see every cancellation (sinc' = (cos x - sin(x)/x)/x near 0).
        plain = differentiated(expr)
        if hazards(plain, inputs).overflow == 0 and _sums_of_one_sign(plain, inputs):
            forms.append(plain)
    # choose inside each Piecewise branch (the transforms do not reach into branches)
    forms = [f.replace(lambda e: isinstance(e, sympy.Piecewise), branches) for f in forms]
    # a branch choice can collapse a Piecewise and expose a pattern of the safe form
    # (xatlu': x/(x**2 + 1) + the arctangent's tail), so the chosen form is made safe once more
    result = _guard_zero_of_base(safe_form(best(*forms), inputs), inputs)
    # last: its Taylor patch is long, and cancel/together would expand it (minutes) in _candidates
    return result.replace(lambda e: isinstance(e, sympy.Piecewise), lambda pw: sympy.Piecewise(
        *[(_log1p_quotient_slope(v, symbol, inputs), c) for v, c in pw.args]))


def _patched_branch(value: sympy.Expr) -> sympy.Expr:
    """A Piecewise branch's value with the exp(w) - 1 - w patch (:func:`_expm1_less_linear_terms`) applied,
    which safe_form leaves out inside an existing Piecewise and the hazard count does not prefer (its far
    branch keeps the cancelling sum, bounded there): softexponential's alpha > 0 branch differentiates in
    alpha to 1 + x*exp(alpha*x)/alpha - Expm1(alpha*x)/alpha**2, terms ~x/alpha for a sum ~x**2/2 (every
    digit lost at alpha = 1e-8 in float32).  The patch's factor goes into its branches, where SymPy cancels
    the near branch's (alpha*x)**2/alpha**2 to x**2 (no 0/0 as alpha -> 0)."""
    if not isinstance(value, Add):
        return value
    terms = _expm1_less_linear_terms(list(value.args))
    if len(terms) == len(value.args) and set(terms) == set(value.args):
        return value
    patched = []
    for term in terms:
        inner = [f for f in Mul.make_args(term) if isinstance(f, sympy.Piecewise)]
        if len(inner) == 1:
            factor = Mul(*[f for f in Mul.make_args(term) if f is not inner[0]])
            term = sympy.Piecewise(*[(factor * v, c) for v, c in inner[0].args])
        patched.append(term)
    return Add(*patched)


def _log1p_less_linear_series(q: sympy.Expr) -> sympy.Expr:
    """T(q) = (-log(1 - q) - q)/q**2 = sum q**n/(n + 2) for |q| < 1/2, n <= 55 (the first omitted term is
    below 3e-19 of the sum, which is at least 0.37 there), in Horner form."""
    return _float_horner([sympy.Rational(1, n + 2) for n in range(55, -1, -1)], q)


def _log1p_quotient_slope(value: sympy.Expr, p: sympy.Symbol, inputs: tuple) -> sympy.Expr:
    """k*d/dp(-Log1p(p*w)/p) (w a polynomial in p and the inputs, k a number) without its cancellation.

    SymPy writes it (-p*w_p/(1 + v) ... + Log1p(v)/p)/p, v = p*w: terms ~w/p for a value ~w**2/2 + ... as
    p -> 0 (softexponential's alpha < 0 branch lost all digits but a few at alpha = -1e-6 in float32).
    Exactly, with q = v/(1 + v) and T(q) = (-Log1p(-q) - q)/q**2 (> 0 for every q < 1):
    d/dp(-Log1p(v)/p) = -w_p/(1 + v) + (w/(1 + v))**2*T(q), where T is its Taylor series for |q| < 1/2
    and the quotient beyond (which loses at most a factor 5 there).  Only for a parameter p (not an input)."""
    if p in inputs or not value.has(Log1p):
        return value
    for atom in value.atoms(Log1p):
        v = atom.args[0]
        if not v.has(p):
            continue
        w = sympy.cancel(v / p)
        if not w.is_polynomial(p, *inputs):
            continue
        target = sympy.diff(-Log1p(v) / p, p)
        try:
            k = sympy.cancel(sympy.together(value / target))
        except (sympy.PolynomialError, TypeError, ValueError):
            continue
        if not (k.is_number and k != 0):
            continue
        q = sympy.Dummy("q")
        # |1 + v| is 1 + v wherever Log1p(v) is real; outside (where a Piecewise's untaken branch sees its
        # parameter at a masking point, softexponential's alpha = -1 at x < 0) it keeps q < 1 and every
        # term finite, so no 0*NaN reaches the double backward
        one_plus_v = sympy.Abs(1 + v)
        series = sympy.Piecewise((_log1p_less_linear_series(q), sympy.Abs(q) < S.Half),
                                 ((-Log1p(-q) - q) / q**2, True)).xreplace({q: v / one_plus_v})
        w_p = sympy.diff(w, p)
        return k * (-w_p / one_plus_v + (w / one_plus_v) ** 2 * series)
    return value


#: the highest power of one exponential that :func:`_signed_branch_forms` lets sympy.factor build
_MAX_EXPONENTIAL_DEGREE = 1000


def _exponential_degree(value: sympy.Expr) -> int:
    """The highest degree sympy's polynomials give an exponential in ``value``: they write exp(p/q*x + c) as
    exp(x/q)**p * exp(c), so exp(810279544733469*x/10**15) (a shaped softplus's Float coefficient made exact by
    kernel_maps) is the 810279544733469th power of exp(x/10**15), and sympy.factor of it ran out of memory (23 GB).
    The largest numerator |p| of the rational coefficients of the exponents' terms; 0 without exponentials."""
    numerators = [abs(term.as_coeff_Mul()[0].p) for e in value.atoms(sympy.exp) for term in Add.make_args(e.args[0])
                  if term.as_coeff_Mul()[0].is_Rational]
    return int(max(numerators, default=0))


def _signed_branch_forms(value: sympy.Expr, condition, earlier: list, inputs) -> list[sympy.Expr]:
    """Forms of a Piecewise branch's value that use the sign its region gives the input.

    Where the branch's region (its condition, none of the earlier ones) lies on one side
    of 0, sign(x) and |x| are known there and the value may factor into a shorter form:
    the derivative of squareplus's x < 0 branch 2/(sqrt(x**2 + 4) + |x|),
    -2*(x/s + sign(x))/(s + |x|)**2, becomes 2/(s*(s + |x|)), with x written as -|x|
    so that no sum of opposite signs is left.

    Only for a region on x alone: as_set() of a region on a parameter (alpha > 0) is a set of that
    parameter's values, and reading it as x's sign made the derivative of Piecewise((a*|x|, a > 0), ...)
    a instead of a*sign(x).  Not for a value with Float coefficients (a patch's Horner polynomial,
    which factor would expand into powers that overflow: x**40 in Erfcx's curvature tail), nor for one
    whose exponentials factor would write as high powers (:func:`_exponential_degree`).
    """
    if len(inputs) != 1:
        return []
    (x,) = inputs
    whole = sympy.And(condition, *[sympy.Not(c) for c in earlier])
    if whole.free_symbols != {x} or value.has(sympy.Float) or _exponential_degree(value) > _MAX_EXPONENTIAL_DEGREE:
        return []
    try:
        region = whole.as_set()
    except (NotImplementedError, TypeError, ValueError):
        return []
    if region.is_subset(sympy.Interval(-sympy.oo, 0)):
        predicate, signed = sympy.Q.negative(x), -sympy.Abs(x)
    elif region.is_subset(sympy.Interval(0, sympy.oo)):
        predicate, signed = sympy.Q.positive(x), None
    else:
        return []
    forms = []
    try:
        refined = sympy.factor(sympy.refine(value, predicate))
    except (sympy.PolynomialError, TypeError, ValueError, NotImplementedError):
        return []
    forms.append(safe_form(refined, inputs))
    if signed is not None:
        forms.append(safe_form(sympy.factor(refined.xreplace({x: signed})), inputs))
    return forms


#: Order of the Taylor polynomial that replaces a parameter-point branch (see below): its
#: first and second derivatives in the parameter are those of the neighbouring branches.
_POINT_BRANCH_ORDER = 3


def _parameter_point_branches(pw: sympy.Piecewise, inputs: tuple) -> sympy.Piecewise:
    """A branch ``(value, Eq(p, c))`` on a parameter ``p`` -> its neighbours' Taylor polynomial in p at c.

    Such a branch (softexponential's ``(x, Eq(alpha, 0))``) removes a 0/0 from the formula at
    one value of the parameter, but its value does not depend on ``p``: differentiated in
    ``p`` it gives 0, where the true derivative is the limit of the neighbouring branches'
    (softexponential: ``x**2/2 + 1``; a trainable alpha starting at 0 never moved).  So too a
    branch that holds at one value of an input alone (``(1, True)`` after ``((exp(x) - 1)/x, Ne(x, 0))``,
    or ``Eq(x, c)``): its derivative in x at that point was 0 where the limit is 1/2.  The
    value is replaced by the Taylor polynomial in ``p`` at ``c`` of the branches that hold
    just below and just above ``c`` (order 3), equal to it at ``p = c`` (checked: otherwise the
    Piecewise is left alone), so that its derivatives in ``p`` there are the neighbours'
    limits.  Where the two sides' coefficients differ (softexponential is C^1 in alpha: its
    second alpha-derivative at 0 is ``2*x**3/3 + 2*x`` from below, ``x**3/3`` from above) the
    mean is used, the value a central difference sees.
    """
    pieces = list(pw.args)
    changed = False
    for i, (value, condition) in enumerate(pieces):
        point = _single_point_of_branch(pieces, i, inputs)
        if point is None:
            continue
        p, c = point
        step = sympy.Rational(1, 10**6)
        sides = [_branch_at(pieces, {p: c + sign * step}) for sign in (-1, 1)]
        if any(side is None or side == i for side in sides):
            continue
        # one side at a time, each branch once (both sides are often one branch): the first unusable
        # series (an O() left inside a nested Piecewise) decides, and a series of a Taylor patch costs seconds
        series, expansions = [], {}
        try:
            for side in sides:
                if side not in expansions:
                    expansions[side] = sympy.expand(
                        sympy.series(pieces[side][0], p, c, _POINT_BRANCH_ORDER + 1).removeO())
                series.append(expansions[side])
                if series[-1].has(sympy.Order, sympy.log(p - c), S.ComplexInfinity, S.NaN):
                    break
        except (NotImplementedError, ValueError, TypeError, sympy.PoleError):
            continue
        if any(s.has(sympy.Order, sympy.log(p - c), S.ComplexInfinity, S.NaN) for s in series):
            continue
        mean = sympy.expand((series[0] + series[1]) / 2)
        if sympy.simplify(mean.xreplace({p: c}) - value) != 0:
            continue  # not the limit of its neighbours: a genuine special case, kept as it is
        pieces[i] = (mean, condition)
        changed = True
    return sympy.Piecewise(*pieces) if changed else pw


def _single_point_of_branch(pieces: list, i: int, inputs: tuple):
    """(p, c) when branch i of a Piecewise holds only at p = c: ``Eq(p, c)`` (p a symbol, c a real number)
    or, for an input p, a condition that the earlier branches leave true at c alone (``True`` after
    ``Ne(x, c)``); else None."""
    condition = pieces[i][1]
    if isinstance(condition, sympy.Eq):
        p, c = (condition.lhs, condition.rhs) if condition.lhs.is_Symbol else (condition.rhs, condition.lhs)
        if p.is_Symbol and c.is_number and c.is_real:
            return p, c
        return None
    region = sympy.And(condition, *[sympy.Not(earlier) for _, earlier in pieces[:i]])
    if len(region.free_symbols) != 1:
        return None
    (p,) = region.free_symbols
    if p not in inputs:
        return None
    try:
        points = region.as_set()
    except (NotImplementedError, TypeError, ValueError):
        return None
    if isinstance(points, sympy.FiniteSet) and len(points) == 1:
        (c,) = points.args
        if c.is_number and c.is_real:
            return p, c
    return None


def _branch_at(pieces: list, point: dict) -> int | None:
    """Index of the first branch whose condition holds at ``point`` (None if undecided)."""
    for index, (_, condition) in enumerate(pieces):
        truth = condition.xreplace(point) if condition not in (S.true, S.false) else condition
        if truth == S.true:
            return index
        if truth != S.false:
            return None
    return None


def _guard_zero_of_base(expr: sympy.Expr, inputs: tuple) -> sympy.Expr:
    """Piecewise((expr, Ne(x, 0)), (its value at 0, True)) where expr is 0*inf or 0/0 at x = 0.

    SymPy differentiates ``|x|**d`` with a symbolic exponent (elephant's trainable ``d``) into
    ``d*|x|**d*sign(x)/|x|`` and ``|x|**d*log|x|``: at x = 0 both are 0*inf (NaN in floats, for
    the input's and the parameter's gradient alike).  The value returned at x = 0 is 0 for both,
    found term by term (:func:`_term_at_zero`).  For ``|x|**d*log|x|`` that is the limit (d > 0).
    For ``d*|x|**(d - 1)*sign(x)`` it is the limit only for d > 1; at d = 1 the one-sided limits are
    -1 and 1, and for 0 < d < 1 the term is unbounded near 0 (about -/+5000 at x = -/+1e-8 for
    d = 1/2) with no limit.  There 0 is a convention, the symmetric value: the mean of the one-sided
    values, as sign(0) = 0 and PyTorch's gradient of |x| at 0.  Where no value can be found, expr is
    left as it is.  The printer evaluates the first branch at a masked input, so neither branch's
    NaN reaches a gradient.
    """
    if len(inputs) != 1:
        return expr
    (x,) = inputs

    def vanishes(base: sympy.Expr) -> bool:
        return base.has(x) and base.xreplace({x: S.Zero}) == 0

    hazard = any(
        (isinstance(e, Pow) and not e.exp.is_number and vanishes(e.base))
        or (isinstance(e, sympy.log) and vanishes(e.args[0]))
        for e in sympy.preorder_traversal(expr)
    )
    if not hazard or isinstance(expr, sympy.Piecewise):
        return expr
    values = [_term_at_zero(term, x, vanishes) for term in Add.make_args(expr)]
    if any(v is None for v in values):
        return expr
    return sympy.Piecewise((expr, sympy.Ne(x, 0)), (Add(*values), True))


def _term_at_zero(term: sympy.Expr, x: sympy.Symbol, vanishes) -> sympy.Expr | None:
    """The value at x = 0 of one product, or None where this simple rule cannot tell.

    A factor ``sign(u)`` with u(0) = 0 makes it 0: the mean of its one-sided limits, PyTorch's
    choice for |x|' at 0.  Otherwise a power ``b**e`` with b(0) = 0 and ``e > 0`` makes it 0 when
    the other singular factors are logarithms of such bases (a power beats a logarithm); a
    negative power of such a base, or a logarithm with no such power, gives up.
    """
    vanishing = blowing = logarithmic = False
    regular = []
    for factor in Mul.make_args(term):
        if isinstance(factor, sympy.sign) and vanishes(factor.args[0]):
            return S.Zero
        base, exponent = factor.as_base_exp()
        if isinstance(base, Sigmoid) and exponent.is_positive:
            # Sigmoid(k*log(b)) = b**k/(1 + b**k): like b**k at b = 0 (k > 0), 1 for k < 0
            scale, logarithm = base.args[0].as_independent(x, as_Add=False)
            if isinstance(logarithm, sympy.log) and vanishes(logarithm.args[0]):
                if scale.is_positive:
                    vanishing = True
                    continue
                if scale.is_negative:
                    continue
                return None
        if vanishes(base):
            if isinstance(base, sympy.log):
                logarithmic = True
            elif exponent.is_positive:
                vanishing = True
            else:
                blowing = True
        elif isinstance(factor, sympy.log) and vanishes(factor.args[0]):
            logarithmic = True
        else:
            regular.append(factor)
    if blowing:
        return None
    if vanishing:
        return S.Zero
    if logarithmic:
        return None
    value = Mul(*regular).xreplace({x: S.Zero})
    if value.has(S.ComplexInfinity, S.NaN, S.Infinity, S.NegativeInfinity):
        return None
    return value
