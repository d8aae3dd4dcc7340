r"""Smoothing by convolution with approximate identities (SymPy only).

For a piecewise-polynomial :math:`f` (relu, leaky_relu, abs, heaviside, hardtanh, relu6, any
``Piecewise`` of polynomials in x) and a kernel :math:`k_\sigma(t) = k(t/\sigma)/\sigma` that tends
to the Dirac delta as :math:`\sigma \to 0`,

.. math::  (f * k_\sigma)(x) = \int_{-\infty}^{\infty} f(x - t)\, k_\sigma(t)\, dt

is smooth and tends to :math:`f` (Biswas et al., "SAU: Smooth activation function using convolution
with approximate identities").  It is computed exactly, piece by piece: on a piece
:math:`[a, b]` where :math:`f = P` (a polynomial),

.. math::  \int_{x-b}^{x-a} P(x - t)\, k_\sigma(t)\, dt = \sum_j d_j(x)\,[G_j(x-a) - G_j(x-b)],
           \qquad P(x - t) = \sum_j d_j(x)\, t^j,

with :math:`G_j` an antiderivative of :math:`t^j k_\sigma(t)`; an infinite end uses the limit of
:math:`G_j` at :math:`\pm\infty`, and when that limit is infinite the convolution diverges
(:class:`~symact.errors.DivergentIntegralError`).

Kernels (``width`` = :math:`\sigma > 0`, the scale):

* ``gaussian``: :math:`e^{-t^2/2\sigma^2}/(\sigma\sqrt{2\pi})`; :math:`G_j` by parts (erf, exp);
* ``logistic``: :math:`e^{-t/\sigma}/(\sigma(1+e^{-t/\sigma})^2)`; :math:`G_j` by parts (sigmoid, log, polylog);
* ``uniform``: :math:`1/(2\sigma)` on :math:`[-\sigma, \sigma]`; :math:`G_j` exact with ``Min``/``Max`` clipping;
* ``cauchy``: :math:`\sigma/(\pi(t^2+\sigma^2))`; :math:`G_j` by SymPy ``integrate`` (atan, log); only a bounded f
  (constant outer pieces: heaviside, hardtanh, relu6, hardsigmoid) has a finite :math:`f * k_\sigma`.

For the Gaussian and logistic kernels, whose tails never vanish, the closed form is not that sum: its terms grow
with x and cancel to a bounded :math:`f * k_\sigma` (hardtanh * logistic(0.001) was 1.00047 at x = 1e4 in
float32).  On the piece m of f that holds x, with :math:`D_i` the jump of the polynomials at the kink :math:`c_i`,
:math:`f = P_m - \sum_{c_i < x} D_i\,H(c_i - x) + \sum_{c_i > x} D_i\,H(x - c_i)`, so :math:`f * k_\sigma` is
:math:`P_m * k_\sigma`, a polynomial, plus one term per kink that decays away from it, with the parts that grow with
x cancelled exactly in its coefficients.  With two kinks or more it is a ``Piecewise`` with one branch per piece of
f (each branch the same analytic function); one kink needs a single expression.  Evaluated in floating point (the
generated torch code; NumPy for a float width) it is accurate to a few units in the last place of
:math:`\max(1, |f * k_\sigma|)` at every x.  Quadratic and cubic pieces with the logistic kernel give
:math:`\mathrm{Li}_n(-e^u)`, n = 2, 3 (relu_squared * logistic(1) is ``-2*polylog(2, -exp(x))``): the code generator
writes it as the safe primitive ``FermiDirac(n, u)``, and NumPy evaluates it through
``numeric.lambdify_modules.numpy_modules()`` (plain ``"numpy"`` has no ``polylog``).

The Cauchy closed form has the same trouble, worse: its terms (x*atan((x - c)/s), log((x - c)^2 + s^2)) grow
however f is split, so a term per kink does not decay on its own (relu6 * cauchy(1) was 0.023 at x = -3.7e6 in
float32, true 5e-7).  With :math:`w = x - i\sigma`, :math:`f * k_\sigma = \frac1\pi \mathrm{Im} \int f(y)/(w - y)\,dy`,
a sum over the pieces of f of polynomials in w times :math:`\log(w - a) - \log(w - b)`; the closed form is a
``Piecewise`` over zones of x (near each kink, and between them) in which the kernel's mass on a piece is one
arctangent of a rational function, or :math:`\arctan(\sigma/|x - c|)` beside a kink, and the log of a ratio a log1p,
so that every term decays on its side and the multiples of pi cancel in one polynomial (see ``_cauchy_by_kinks``).
One kink needs no zones.

The Gaussian antiderivatives come from :math:`\int_{-\infty}^{v} z^j \varphi(z)\,dz = -v^{j-1}\varphi(v) + (j-1)
\int_{-\infty}^{v} z^{j-2} \varphi(z)\,dz`; the logistic ones from integration by parts,
:math:`\int_{-\infty}^{v} u^m \mathrm{sigmoid}(u)\,du = -\sum_{i=0}^{m} (-1)^{i} \frac{m!}{(m-i)!} v^{m-i}
\mathrm{Li}_{i+1}(-e^{v})` (:math:`\mathrm{Li}_1(-e^v) = -\log(1+e^v)`), which SymPy's ``integrate``
does not find on its own; ``tests/test_smooth.py`` checks them by differentiation.

Identities (proven in ``tests/test_smooth.py`` with ``simplify(difference) == 0``):

* leaky_relu * Gaussian = SAU: :math:`\frac{(1-\alpha)\sigma}{\sqrt{2\pi}} e^{-x^2/2\sigma^2}
  + \frac{1+\alpha}{2}x + \frac{1-\alpha}{2} x\,\mathrm{erf}(x/\sqrt2\sigma)`;
* :math:`x\cdot`(heaviside * Gaussian with :math:`\sigma = 1`) = GELU;
* relu * logistic (:math:`\sigma = 1`) = softplus.

>>> import sympy
>>> x = sympy.Symbol("x", real=True)
>>> convolve_expression(sympy.Max(0, x), "logistic", 1)
log(exp(x) + 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy

from symact._safe_parse import safe_sympify
from symact.errors import DivergentIntegralError, DomainError, FormulaError, is_whole_number

__all__ = [
    "KERNELS",
    "Piece",
    "kernel_density",
    "kernel_antiderivative",
    "piecewise_polynomial",
    "convolve_expression",
    "convolve",
]

KERNELS = ("gaussian", "logistic", "uniform", "cauchy")

_X = sympy.Symbol("x", real=True)
_T = sympy.Symbol("t", real=True)
_SIGMA = sympy.Symbol("sigma", positive=True)
_FLOAT_WIDTH = sympy.Dummy("width", positive=True)  # stands in for a floating-point width while deriving


@dataclass(frozen=True)
class Piece:
    """``f(x) = polynomial`` for ``lower < x < upper`` (ends may be -oo/oo)."""

    lower: sympy.Expr
    upper: sympy.Expr
    polynomial: sympy.Expr


def _check_kernel(kernel: str) -> str:
    if kernel not in KERNELS:
        raise DomainError(f"unknown kernel {kernel!r}; choose one of {KERNELS}")
    return kernel


def _numeric_scale(width, t: sympy.Symbol = _T) -> sympy.Expr:
    """``width`` sympified, refused when it is a number that is not positive (a symbol is taken as given)
    or when it depends on the input x or the kernel's variable ``t``."""
    if width is None:  # the default scale, as convolve and convolve_expression take it
        width = _SIGMA
    w = safe_sympify(width, "width")
    # as convolve_expression refuses: kernel_density("gaussian", "x") gave exp(-t**2/(2*x**2))/(sqrt(2 pi)*x),
    # a "density" whose scale is the input itself (and width t one that is not a density in t at all)
    names = {_X.name, _T.name, t.name}
    if isinstance(w, sympy.Basic) and any(symbol.name in names for symbol in w.free_symbols):
        raise DomainError(f"width {width} depends on the input x or the kernel's variable {t}; the kernel's scale "
                          "must be a positive constant: a number or a parameter such as Symbol('sigma', positive=True)")
    if w.is_number and not (w.is_real and w.is_positive):
        raise DomainError(f"width must be positive, got {width}; it is the kernel's scale sigma")
    if isinstance(w, sympy.Expr) and w.is_positive is False:
        # a symbol declared negative (Symbol('s', negative=True)) gave a "density" integrating to -1, as -1
        # itself would have; convolve_expression refuses it too
        raise DomainError(f"width {width} is declared non-positive, but it is the kernel's scale sigma > 0: use a "
                          "positive number or a symbol that may be positive, e.g. Symbol('sigma', positive=True)")
    return w


def kernel_density(kernel: str, width=_SIGMA, t: sympy.Symbol = _T) -> sympy.Expr:
    """The kernel's density :math:`k_\\sigma(t)` (integrates to 1; see the module table)."""
    kernel = _check_kernel(kernel)
    s = _numeric_scale(width, t)  # width=-1 gave a negative "density" (-exp(-t**2/2)/sqrt(2 pi) for the Gaussian)
    if kernel == "gaussian":
        return sympy.exp(-t**2 / (2 * s**2)) / (s * sympy.sqrt(2 * sympy.pi))
    if kernel == "logistic":
        return sympy.exp(-t / s) / (s * (1 + sympy.exp(-t / s)) ** 2)
    if kernel == "uniform":
        return sympy.Piecewise((1 / (2 * s), (t >= -s) & (t <= s)), (0, True))
    return s / (sympy.pi * (t**2 + s**2))


# The Gaussian and logistic antiderivatives are written in placeholders for the special functions of v = t/s while
# kink terms are collected: SymPy would otherwise split (1 + erf) or re-evaluate a function on the way, and the
# collected coefficients are where the parts that grow with x cancel exactly (see _kink_share)
_V = sympy.Dummy("v", real=True)
_CDF = sympy.Dummy("cdf")  # gaussian: (1 + erf(v/sqrt(2)))/2
_PDF = sympy.Dummy("pdf")  # gaussian: exp(-v**2/2)/sqrt(2*pi)
_SIGMOID = sympy.Dummy("sigmoid")  # logistic: 1/(1 + exp(-v))
_POLYLOG: dict[int, sympy.Dummy] = {}  # logistic: n -> Li_n(-exp(v)); Li_1(-exp(v)) = -log(1 + exp(v))


def _polylog_placeholder(n: int) -> sympy.Dummy:
    return _POLYLOG.setdefault(n, sympy.Dummy(f"Li{n}"))


def _placeholders() -> tuple:
    return (_CDF, _PDF, _SIGMOID, *_POLYLOG.values())


@lru_cache(maxsize=64)
def _scaled_antiderivative(kernel: str, j: int) -> sympy.Expr:
    r""":math:`H_j(v)` with :math:`G_j(t) = \sigma^j H_j(t/\sigma)`, a sum of placeholders times polynomials in v.

    Gaussian: :math:`H_0 = \Phi`, :math:`H_1 = -\varphi`, :math:`H_j = -v^{j-1}\varphi + (j-1) H_{j-2}` (by parts);
    logistic: :math:`H_j = v^j\,\mathrm{sigmoid}(v) - j \int_{-\infty}^{v} u^{j-1} \mathrm{sigmoid}(u)\,du` with
    :math:`\int_{-\infty}^{v} u^m \mathrm{sigmoid}(u)\,du = -\sum_{i=0}^{m} (-1)^{i} \frac{m!}{(m-i)!} v^{m-i}
    \mathrm{Li}_{i+1}(-e^{v})`."""
    v = _V
    if kernel == "gaussian":
        if j < 2:
            return _CDF if j == 0 else -_PDF
        return sympy.expand(-v ** (j - 1) * _PDF + (j - 1) * _scaled_antiderivative(kernel, j - 2))
    m = j - 1
    moment = -sum((-1) ** i * sympy.factorial(m) / sympy.factorial(m - i) * v ** (m - i) * _polylog_placeholder(i + 1)
                  for i in range(j))
    return sympy.expand(v**j * _SIGMOID - j * moment)


def _realize(expr: sympy.Expr, kernel: str, w: sympy.Expr, nonpositive: bool = False) -> sympy.Expr:
    """The placeholders in ``expr`` as the special functions of ``w``.  ``nonpositive``: w <= 0 wherever the result
    is evaluated, so the logistic sigmoid is written exp(w)/(1 + exp(w)), whose exponential cannot overflow there."""
    if kernel == "gaussian":
        even = -w if w.could_extract_minus_sign() else w  # exp(-(x + 1)**2/2), not exp(-(-x - 1)**2/2)
        return expr.xreplace({_CDF: (1 + sympy.erf(w / sympy.sqrt(2))) / 2,
                              _PDF: sympy.exp(-even**2 / 2) / sympy.sqrt(2 * sympy.pi)})
    sigmoid = sympy.exp(w) / (1 + sympy.exp(w)) if nonpositive else 1 / (1 + sympy.exp(-w))
    return expr.xreplace({_SIGMOID: sigmoid, **{
        symbol: -sympy.log(1 + sympy.exp(w)) if n == 1 else sympy.polylog(n, -sympy.exp(w))
        for n, symbol in _POLYLOG.items()}})


def _moment(kernel: str, j: int, s: sympy.Expr) -> sympy.Expr:
    """E[t^j] under the Gaussian or logistic kernel of scale s."""
    if j % 2:
        return sympy.Integer(0)
    if kernel == "gaussian":  # s^j (j - 1)!!
        return s**j * sympy.factorial2(j - 1)
    # E[t^j] = s^j pi^j (2^j - 2) |B_j| for the logistic distribution (1 for j = 0)
    return sympy.Integer(1) if j == 0 else s**j * sympy.pi**j * (2**j - 2) * abs(sympy.bernoulli(j))


@lru_cache(maxsize=256)
def _antiderivative(kernel: str, j: int, s: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr, sympy.Expr]:
    """(G_j(t), G_j(-oo), G_j(+oo)) for t^j k_s(t); infinite limits are returned as +-oo/zoo/nan."""
    t = _T
    if kernel in ("gaussian", "logistic"):
        G = _realize(sympy.expand(s**j * _scaled_antiderivative(kernel, j).xreplace({_V: t / s})), kernel, t / s)
        return G, sympy.Integer(0), _moment(kernel, j, s)
    if kernel == "uniform":
        clipped = sympy.Min(sympy.Max(t, -s), s)
        G = (clipped ** (j + 1) - (-s) ** (j + 1)) / ((j + 1) * 2 * s)
        return G, sympy.Integer(0), sympy.simplify((s ** (j + 1) - (-s) ** (j + 1)) / ((j + 1) * 2 * s))
    # cauchy
    if j == 0:
        G = sympy.Rational(1, 2) + sympy.atan(t / s) / sympy.pi
    else:
        G = sympy.simplify(sympy.integrate(t**j * kernel_density(kernel, s, t), t))
    return G, sympy.limit(G, t, -sympy.oo), sympy.limit(G, t, sympy.oo)


def kernel_antiderivative(kernel: str, j: int, width=_SIGMA) -> sympy.Expr:
    r"""An antiderivative :math:`G_j(t)` of :math:`t^j k_\sigma(t)` in ``t = Symbol('t', real=True)``
    (normalised to vanish at :math:`-\infty` where that limit is finite)."""
    if not is_whole_number(j, 0):  # int(j) took 2.5 as 2, and j = -1 gave a wrong "antiderivative" or nan
        raise DomainError(f"j={j!r}: give the power of t as a whole number >= 0 (G_j integrates t**j k(t))")
    return _antiderivative(_check_kernel(kernel), int(j), _numeric_scale(width))[0]


def _tail_decay(kernel: str) -> str:
    return {"cauchy": "like |t|^-2 (no finite moments of order >= 1)"}.get(kernel, "faster than any power")


def piecewise_polynomial(f: sympy.Expr, x: sympy.Symbol = _X) -> tuple[Piece, ...]:
    """Split ``f`` (Max/Min/Abs/Heaviside/sign/Piecewise of polynomials in x) into polynomial pieces.

    Break points must not depend on parameters (write ``leaky_relu`` as
    ``Max(0, x) + alpha*Min(0, x)`` rather than ``Max(x, alpha*x)`` to keep alpha symbolic)."""
    expr = sympy.piecewise_fold(safe_sympify(f, "formula", {"x": _X}).rewrite(sympy.Piecewise))
    conditions = [cond for _, cond in expr.args] if isinstance(expr, sympy.Piecewise) else []
    points: set = set()
    for cond in conditions:
        if cond in (sympy.true, sympy.false):
            continue
        extra = cond.free_symbols - {x}
        if extra:
            raise FormulaError(
                f"the break points of {f} depend on {sorted(map(str, extra))} (condition {cond}); give those "
                "parameters values, or write the function so that its pieces switch at fixed x "
                "(e.g. Max(0, x) + alpha*Min(0, x) for leaky ReLU)")
        try:
            region = cond.as_set()
        except (NotImplementedError, TypeError) as exc:
            raise FormulaError(f"cannot read the region {cond} of {f}: {exc}") from exc
        for point in region.boundary:
            if point.is_finite:
                points.add(point)
    cuts = sorted(points, key=lambda p: float(p))
    ends = [-sympy.oo, *cuts, sympy.oo]
    pieces = []
    for lower, upper in zip(ends, ends[1:]):
        if lower is -sympy.oo and upper is sympy.oo:
            probe = sympy.Integer(0)
        elif lower is -sympy.oo:
            probe = upper - 1
        elif upper is sympy.oo:
            probe = lower + 1
        else:
            probe = (lower + upper) / 2
        value = _piece_at(expr, x, probe)
        if value.has(sympy.Piecewise, sympy.Heaviside, sympy.Abs, sympy.Max, sympy.Min, sympy.sign):
            raise FormulaError(f"could not resolve the piece of {f} on ({lower}, {upper}); got {value}")
        if value.has(sympy.nan, sympy.oo, -sympy.oo, sympy.zoo):
            # Poly accepts nan and oo as coefficients: convolve_expression("nan") returned nan, oo*Heaviside(x) nan
            raise FormulaError(f"{f} is {value} on ({lower}, {upper}), not a finite polynomial in x: convolve "
                               "smooths piecewise polynomials with finite coefficients")
        try:
            sympy.Poly(value, x)
        except sympy.PolynomialError as exc:
            raise FormulaError(
                f"{f} is {value} on ({lower}, {upper}), not a polynomial in x: convolve handles piecewise "
                "polynomials (relu, leaky_relu, abs, heaviside, hardtanh, relu6, ...)") from exc
        if pieces and sympy.simplify(pieces[-1].polynomial - value) == 0:
            pieces[-1] = Piece(pieces[-1].lower, upper, pieces[-1].polynomial)  # merge equal neighbours
        else:
            pieces.append(Piece(lower, upper, sympy.expand(value)))
    return tuple(pieces)


def _piece_at(expr: sympy.Expr, x: sympy.Symbol, probe: sympy.Expr) -> sympy.Expr:
    if not isinstance(expr, sympy.Piecewise):
        return expr
    for value, cond in expr.args:
        if bool(cond.subs(x, probe)):
            return _piece_at(value, x, probe) if isinstance(value, sympy.Piecewise) else value
    raise FormulaError(f"{expr} is undefined at x = {probe}; add a default (True) branch")


def _positive_width(width) -> sympy.Expr:
    if width is None:
        return _SIGMA
    w = safe_sympify(width, "width")
    if any(symbol.name == _X.name for symbol in w.free_symbols) or _T in w.free_symbols:
        raise DomainError(f"width {width} depends on the input x (or the integration variable t); the kernel's "
                          "scale must be a positive constant: a number or a parameter such as Symbol('sigma', positive=True)")
    if isinstance(w, sympy.Symbol) and w.is_positive is False:
        raise DomainError(f"width {width} is a symbol declared non-positive, but the kernel's scale is positive: "
                          f"use Symbol({w.name!r}, positive=True) or a plain Symbol({w.name!r})")
    if isinstance(w, sympy.Symbol) and not w.is_positive:
        return sympy.Symbol(w.name, positive=True)  # the scale is positive by definition
    if w.is_number and not (w.is_real and w.is_positive):
        raise DomainError(f"width must be positive, got {width}; it is the kernel's scale sigma")
    if w.is_positive is not True:
        raise DomainError(
            f"width {width} is not known to be positive (SymPy cannot prove {w} > 0), so the kernel's integrals have "
            "no closed form; build it from symbols declared positive "
            f"({', '.join(f'Symbol({str(n)!r}, positive=True)' for n in sorted(map(str, w.free_symbols)))}) "
            "in a form that is positive for all their values, e.g. 2*sigma or sigma**2")
    return w


def convolve_expression(f, kernel: str = "gaussian", width=None, x: sympy.Symbol = _X) -> sympy.Expr:
    r"""The closed form of :math:`(f * k_\sigma)(x)` as a simplified SymPy expression.

    ``f``: a SymPy expression in ``x`` (piecewise polynomial); ``width``: a positive number or
    symbol (default ``Symbol('sigma', positive=True)``; a symbol without that assumption is
    replaced by a positive one of the same name).  Raises
    :class:`~symact.errors.DivergentIntegralError` when an unbounded piece grows faster than the
    kernel's tails allow (relu, abs, leaky_relu with the Cauchy kernel).
    """
    kernel = _check_kernel(kernel)
    s = _positive_width(width)
    f = safe_sympify(f, "formula", {"x": _X})
    if isinstance(width, sympy.Symbol) and s != width:
        f = f.subs(width, s)
    if s.has(sympy.Float):
        # simplify() with a floating-point width folds exp(-1/(2 s^2)) into constants such as 1.7e-2174 and
        # splits exp(-x^2/(2 s^2)) into exp(5000.0 x^2) * exp(-5000.0 x^2) (inf * 0 in floating point):
        # derive the closed form for an exact width and put the number in afterwards
        # (exponents factored first: exp(-(x + 1)**2/(2 w**2)) keeps its constant term inside at w = 0.01)
        exact = convolve_expression(f, kernel, _FLOAT_WIDTH, x)
        exact = exact.replace(lambda e: isinstance(e, sympy.exp), lambda e: sympy.exp(sympy.factor(e.args[0])))
        if kernel == "logistic":
            if not isinstance(exact, sympy.Piecewise):  # a Piecewise by f's pieces has only exponentials <= 1 already
                exact = _float_safe_logistic(exact)
            # a float times x - c is multiplied out, and exp(1000.0*x - 1000.0) evaluates to 5.08e-435*exp(1000.0*x),
            # a factor outside the range of a double: exponents get the width as the decimal number it is
            decimal = sympy.nsimplify(s, rational=True)
            exact = exact.replace(lambda e: isinstance(e, sympy.exp) and e.has(_FLOAT_WIDTH),
                                  lambda e: sympy.exp(e.args[0].subs(_FLOAT_WIDTH, decimal)))
        if kernel == "cauchy":
            # atan((x - 1)/w) at w = 0.001 became atan(1000.0*x - 1000.0), whose rounding of 1000.0*x is an ulp of
            # 1000 (the float32 slope of a unit bump * cauchy(0.001) was 2.1e-3 off next to its kinks); with the
            # width as the decimal it is, atan(1000*x - 1000), the code generator writes 1000*(x - 1), exact there
            decimal = sympy.nsimplify(s, rational=True)
            exact = exact.replace(
                lambda e: isinstance(e, sympy.atan) and e.has(_FLOAT_WIDTH) and e.args[0].is_polynomial(x),
                lambda e: sympy.atan(e.args[0].subs(_FLOAT_WIDTH, decimal)))
        return exact.subs(_FLOAT_WIDTH, s)
    pieces = piecewise_polynomial(f, x)
    if kernel in ("gaussian", "logistic"):
        return _by_kinks(pieces, kernel, s, x)
    if kernel == "cauchy" and _bounded(pieces, x):  # an unbounded f diverges: the sum below says where
        return _cauchy_by_kinks(pieces, s, x)
    total = sympy.Integer(0)
    t = _T
    for piece in pieces:
        shifted = sympy.Poly(sympy.expand(piece.polynomial.subs(x, x - t)), t)
        for (j,), coeff in shifted.terms():
            G, at_minus, at_plus = _antiderivative(kernel, j, s)
            upper = at_plus if piece.lower is -sympy.oo else G.subs(t, x - piece.lower)
            lower = at_minus if piece.upper is sympy.oo else G.subs(t, x - piece.upper)
            for limit, side in ((upper, "+"), (lower, "-")):
                if limit.has(sympy.oo, -sympy.oo, sympy.zoo, sympy.nan):
                    direction = "+inf" if side == "+" else "-inf"
                    raise DivergentIntegralError(
                        f"the convolution of {f} with the {kernel} kernel diverges: on ({piece.lower}, {piece.upper}) "
                        f"f grows like |x|^{sympy.Poly(piece.polynomial, x).degree()}, and t^{j} k(t) is not integrable "
                        f"towards {direction} because the {kernel} kernel decays {_tail_decay(kernel)}. Use a kernel "
                        "with finite moments (gaussian, logistic, uniform) or a bounded f (heaviside, hardtanh, relu6)")
            total += coeff * (upper - lower)
    closed = _tidy(total)
    if kernel == "uniform" and len(pieces) > 1:
        closed = _uniform_outer_pieces(closed, pieces, s, x)
    return closed


def _smoothed_polynomial(polynomial: sympy.Expr, kernel: str, s: sympy.Expr, x: sympy.Symbol) -> sympy.Expr:
    """P * k_s for a polynomial P: sum_j d_j(x) E[t^j] with P(x - t) = sum_j d_j(x) t^j."""
    shifted = sympy.Poly(sympy.expand(polynomial.subs(x, x - _T)), _T)
    return sympy.expand(sum((coeff * _moment(kernel, j, s) for (j,), coeff in shifted.terms()), sympy.Integer(0)))


def _kink_share(jump: sympy.Expr, kink: sympy.Expr, kernel: str, s: sympy.Expr, x: sympy.Symbol,
                right: bool, nonpositive: bool) -> sympy.Expr:
    r"""The share of the kernel that sees the jump ``D`` = P_after - P_before at ``kink`` c, in the form that
    decays away from the kink: for x < c (``right`` False) :math:`\int_{t < x-c} D(x-t)\,k_s(t)\,dt =
    \sum_j d_j(x) G_j(x - c)`, and for x > c (``right``) the other side :math:`\int_{t > x-c} D(x-t)\,k_s(t)\,dt
    = \sum_j d_j(x) (-1)^j G_j(c - x)` (the kernel is even), with :math:`D(x - t) = \sum_j d_j(x) t^j`.  Each
    :math:`G_j` is taken at an argument <= 0, where it decays, and the coefficient of each special function is
    collected as one polynomial in x: the growing parts of :math:`d_j(x)` and of the powers of t in :math:`G_j`
    cancel exactly there (logistic relu_squared: :math:`x^2 \mathrm{sigmoid} - 2x\cdot x\,\mathrm{sigmoid} +
    x^2 \mathrm{sigmoid} = 0`) instead of in floating point.  ``nonpositive``: the share is used only on that
    decaying side (see :func:`_realize`); a single expression over all x uses it on both sides."""
    shifted = sympy.Poly(sympy.expand(jump.subs(x, x - _T)), _T)
    w = (kink - x) / s if right else (x - kink) / s
    total = sum((coeff * (-1 if right and j % 2 else 1) * s**j * _scaled_antiderivative(kernel, j)
                 for (j,), coeff in shifted.terms()), sympy.Integer(0))
    collected = sympy.collect(sympy.expand(total.xreplace({_V: w})), _placeholders(), evaluate=False)
    return sympy.Add(*(_realize(coeff * basis, kernel, w, nonpositive) for basis, coeff in collected.items()))


def _single_expression_side(first: sympy.Expr, last: sympy.Expr, x: sympy.Symbol) -> int:
    """0 to write a one-kink f * k as P_first * k plus the share right of the kink, 1 as P_last * k minus the share
    left of it.  Far right, the first form adds P_first * k to the growing part of its share (they sum to
    P_last * k), which cancels catastrophically where P_first outgrows P_last (Min(x, 1): x + (1 - x)); the second
    form is the mirror image, so the side whose polynomial grows faster is the one to start from."""
    def growth(polynomial):
        poly = sympy.Poly(polynomial, x)
        degree = poly.degree()
        if degree < 0:  # the zero polynomial
            return (-1, 0)
        lead = poly.LC()
        return (degree, abs(lead) if lead.is_number else None)

    (first_degree, first_lead), (last_degree, last_lead) = growth(first), growth(last)
    if first_degree != last_degree:
        return int(first_degree > last_degree)
    if first_lead is None or last_lead is None:  # a symbolic slope (leaky_relu's alpha): P_first * k + share
        return 0
    return int(bool(first_lead > last_lead))


def _by_kinks(pieces, kernel: str, s: sympy.Expr, x: sympy.Symbol) -> sympy.Expr:
    r"""The Gaussian or logistic closed form of f * k_s, free of cancellation in float arithmetic.

    With kinks :math:`c_1 < \dots < c_n`, jumps :math:`D_i = P_i - P_{i-1}` and x on piece m,
    :math:`f = P_m - \sum_{i \le m} D_i H(c_i - \cdot) + \sum_{i > m} D_i H(\cdot - c_i)`, so
    :math:`f * k_s = P_m * k_s - \sum_{i \le m} R_i + \sum_{i > m} L_i` with the shares of :func:`_kink_share`,
    each decaying away from its kink.  The sum of the shares in one form, :math:`P_0 * k_s + \sum_i L_i`, adds
    parts that each grow with x and cancel to a bounded f * k_s (hardtanh * logistic(0.001) was 1.00047 at x = 1e4
    in float32, erf(u) - erf(v) times x in the Gaussian case likewise), so f * k_s is a Piecewise with one branch
    per piece of f.  One kink needs no Piecewise: the side whose polynomial grows faster is written as its smoothed
    polynomial (:func:`_single_expression_side`), which keeps relu * logistic as softplus and leaky_relu * gaussian
    as SAU."""
    if len(pieces) == 1:
        return _smoothed_polynomial(pieces[0].polynomial, kernel, s, x)
    kinks = [(piece.lower, piece.polynomial - before.polynomial) for before, piece in zip(pieces, pieces[1:])]

    def on_piece(m: int, nonpositive: bool) -> sympy.Expr:  # nonpositive: used on piece m only
        shares = [_kink_share(jump, kink, kernel, s, x, i < m, nonpositive) for i, (kink, jump) in enumerate(kinks)]
        signs = [-1 if i < m else 1 for i in range(len(kinks))]
        return sympy.Add(_smoothed_polynomial(pieces[m].polynomial, kernel, s, x),
                         *(sign * share for sign, share in zip(signs, shares)))

    if len(pieces) == 2:
        return on_piece(_single_expression_side(pieces[0].polynomial, pieces[1].polynomial, x), False)
    return sympy.Piecewise(*((on_piece(m, True), x < piece.upper) for m, piece in enumerate(pieces[:-1])),
                           (on_piece(len(pieces) - 1, True), True))


def _bounded(pieces, x: sympy.Symbol) -> bool:
    """Whether f is bounded: its two outer pieces are constants (a polynomial piece of degree >= 1 reaching
    +-oo is not)."""
    return all(sympy.Poly(piece.polynomial, x).degree() <= 0 for piece in (pieces[0], pieces[-1]))


def _at_complex_input(polynomial: sympy.Expr, s: sympy.Expr, x: sympy.Symbol) -> tuple[sympy.Expr, sympy.Expr]:
    """(Re P(w), Im P(w)) at :math:`w = x - i s`, polynomials in x and s (P's coefficients taken as real)."""
    value = sympy.expand(polynomial.subs(x, x - sympy.I * s))
    imaginary = value.coeff(sympy.I)
    return sympy.expand(value - sympy.I * imaginary), imaginary


def _quotient_integral(polynomial: sympy.Expr, lower: sympy.Expr, upper: sympy.Expr, s: sympy.Expr,
                       x: sympy.Symbol) -> sympy.Expr:
    r""":math:`\mathrm{Im} \int_a^b Q(u, w)\,du`, :math:`Q(u, w) = (P(u) - P(w))/(u - w)` (a polynomial in u and
    w) at :math:`w = x - i s`: the part of :math:`\int_a^b P(u)/(w - u)\,du` that is not :math:`P(w)` times logs.
    0 for a linear P."""
    u, v = sympy.Dummy("u"), sympy.Dummy("w")
    quotient = sympy.quo(sympy.expand(polynomial.subs(x, u) - polynomial.subs(x, v)), u - v, u)
    integral = sympy.integrate(quotient, (u, lower, upper))
    return _at_complex_input(integral.subs(v, x), s, x)[1]


def _cauchy_angle(c: sympy.Expr, side: str, s: sympy.Expr, x: sympy.Symbol) -> tuple[sympy.Expr, sympy.Expr]:
    r""":math:`\arg(w - c)`, :math:`w = x - i s`, as (k, g) with the angle :math:`k\pi + g(x)`, in the form for where x
    is: 'left' (c left of x: :math:`-\arctan(s/(x - c))`, decaying away from c), 'right' (:math:`-\pi + \arctan(s/(c -
    x))`) or 'near' (:math:`-\pi/2 + \arctan((x - c)/s)`, the one of the three that is not singular at c)."""
    if side == "left":
        return sympy.Integer(0), -sympy.atan(s / (x - c))
    if side == "right":
        return sympy.Integer(-1), sympy.atan(s / (c - x))
    return sympy.Rational(-1, 2), sympy.atan((x - c) / s)


def _cauchy_log_ratio(a: sympy.Expr, b: sympy.Expr, where: str, s: sympy.Expr, x: sympy.Symbol) -> sympy.Expr:
    r""":math:`\log|w - a| - \log|w - b| = \tfrac12 \log(A/B)`, :math:`A = (x - a)^2 + s^2`, :math:`B = (x - b)^2 +
    s^2`, for x ``where`` it is: right of the piece [a, b] (a log1p of :math:`(A - B)/B \ge 0`), left of it (of
    :math:`(B - A)/A`), or on it, as :math:`\tfrac12 [\log(1 + ((x - a)/s)^2) - \log(1 + ((x - b)/s)^2)]`, two terms of
    the size of log(L/s) for a piece of length L, or of :math:`(L/s)^2` under a wider kernel (where the plain logs
    of A and B were both 2 log s and cancelled: hardtanh * cauchy(100) was 4.9e-4 off at 1e4 in float32)."""
    if where == "right":
        return sympy.log(1 + (b - a) * (2 * x - a - b) / ((x - b) ** 2 + s**2)) / 2
    if where == "left":
        return -sympy.log(1 + (b - a) * (a + b - 2 * x) / ((x - a) ** 2 + s**2)) / 2
    return (sympy.log(1 + ((x - a) / s) ** 2) - sympy.log(1 + ((x - b) / s) ** 2)) / 2


def _cauchy_zone(pieces, jumps, sides: dict, s: sympy.Expr, x: sympy.Symbol) -> sympy.Expr:
    r"""f * k_s for x in one zone (see :func:`_cauchy_by_kinks`): ``sides`` maps each kink to 'left', 'right' or
    'near' (x within the near reach of it).

    With g = f - P_n (so that an offset of f is no term), piece j contributes
    :math:`\mathrm{Re}\,G_j(w)\,\theta_j + \mathrm{Im}\,G_j(w)\,\ell_j - \mathrm{Im}\int_a^b Q_j(u, w)\,du` to
    :math:`\pi\,(g * k_s)`, :math:`\theta_j = \arg(w - a) - \arg(w - b)` and :math:`\ell_j = \log|w - a| - \log|w -
    b|`.  A piece with both ends on one side of x has :math:`\theta_j = \arctan(s (b - a)/((x - a)(x - b) + s^2))`,
    one arctangent of a rational function that decays like the kernel's mass on the piece; otherwise each end's
    angle is written for its side (:func:`_cauchy_angle`), except that of a kink x is near: the two pieces beside it
    share that angle, which is taken once, times the jump :math:`\mathrm{Re}\,D(w)` of :math:`\mathrm{Re}\,P(w)`
    there (small at a continuous kink, so the slope has no term of size 1/s there).  :math:`\ell_j` is written for
    where x is (:func:`_cauchy_log_ratio`).  The multiples of pi add up to one polynomial, where the parts that grow
    with x cancel exactly."""
    shift = pieces[-1].polynomial
    base, terms = shift, []
    for piece in pieces:
        a, b = piece.lower, piece.upper
        real, imaginary = _at_complex_input(piece.polynomial - shift, s, x)
        if a.is_finite and b.is_finite and sides[a] == sides[b] != "near":
            terms.append(real * sympy.atan(s * (b - a) / ((x - a) * (x - b) + s**2)))
        else:
            for end, sign in ((a, 1), (b, -1)):
                if end is sympy.oo:  # arg(w - oo) = -pi
                    base += real
                elif end.is_finite and sides[end] != "near":
                    k, angle = _cauchy_angle(end, sides[end], s, x)
                    base, terms = base + sign * k * real, terms + [sign * real * angle]
        if imaginary != 0:  # a finite piece of degree >= 1 (the outer ones are constants)
            where = ("right" if sides[b] == "near" or sides[a] == sides[b] == "left" else
                     "left" if sides[a] == "near" or sides[a] == sides[b] == "right" else "on")
            terms += [imaginary * _cauchy_log_ratio(a, b, where, s, x), -_quotient_integral(piece.polynomial, a, b, s, x)]
    for c, jump in jumps:
        if sides[c] == "near":
            real = _at_complex_input(jump, s, x)[0]
            k, angle = _cauchy_angle(c, "near", s, x)
            base, terms = base + k * real, terms + [real * angle]
    return sympy.expand(base) + sympy.Add(*terms) / sympy.pi


def _cauchy_by_kinks(pieces, s: sympy.Expr, x: sympy.Symbol) -> sympy.Expr:
    r"""The Cauchy closed form of a bounded f (constant outer pieces), free of cancellation in float arithmetic.

    With :math:`w = x - i s`, :math:`k_s(x - y) = \mathrm{Im}\,\frac{1}{\pi (w - y)}`, so
    :math:`f * k_s = \frac1\pi \mathrm{Im} \int f(y)/(w - y)\,dy`, and a piece P on [a, b] gives
    :math:`\mathrm{Im}[P(w)\,(\log(w - a) - \log(w - b))] - \mathrm{Im}\int_a^b Q(u, w)\,du` with
    :math:`Q(u, w) = (P(u) - P(w))/(u - w)` (:func:`_quotient_integral`).  Written with :math:`\arg(w - c) =
    \arctan((x - c)/s) - \pi/2` at every kink (the sum SymPy's antiderivatives give), the terms grow with the
    distance from the kinks (x*atan, log((x - c)^2 + s^2)) and cancel to a bounded f * k_s: relu6 * cauchy(1) was
    0.023 at x = -3.7e6 in float32, where it is 5e-7, and under a wide kernel the logs of nearby kinks cancel
    (hardtanh * cauchy(100) was 4.9e-4 off at 1e4 in float32).  So f * k_s is a ``Piecewise`` over zones of x, each
    branch the same analytic function written with angles and logs that decay on its side (:func:`_cauchy_zone`):
    one zone within min(1, a quarter of the least distance between kinks) of each kink, where its angle keeps the
    near form and rounds a term of the size of its jump plus its change of slope times that reach, and one on each
    piece between them and beyond.  For a piecewise-linear f no term is
    then much larger than the range of f or the jump and change of slope at the kink beside x, and far out all
    decay.  A piece of degree 2 adds :math:`\mathrm{Re}\,P(w) = P(x) - s^2 P''/2`: under a kernel much wider than
    the piece that term cancels, about :math:`(s/L)^2` ulps for a piece of length L; of degree d >= 3 a piece
    cancels about :math:`|x|^{d-2}` ulps far out.  One kink (a step) needs no zones: :math:`(P_0 + P_1)/2 + (P_1 -
    P_0) \arctan((x - c)/s)/\pi` is exact to an ulp of the larger of the two."""
    jumps = [(after.lower, sympy.expand(after.polynomial - before.polynomial))
             for before, after in zip(pieces, pieces[1:])]
    points = [c for c, _ in jumps]
    if len(points) == 1:
        return _cauchy_zone(pieces, jumps, {points[0]: "near"}, s, x)
    near = sympy.Min(1, *((b - a) / 4 for a, b in zip(points, points[1:])))  # one kink per near zone
    edges = sorted((c + d for c in points for d in (-near, near)), key=float)
    zones = []
    for lower, upper in zip([None, *edges], [*edges, None]):
        at = upper - 1 if lower is None else lower + 1 if upper is None else (lower + upper) / 2
        sides = {c: "near" if abs(at - c) < near else "left" if c < at else "right" for c in points}
        zones.append((_cauchy_zone(pieces, jumps, sides, s, x), x < upper if upper is not None else True))
    return sympy.Piecewise(*zones)


def _uniform_outer_pieces(closed: sympy.Expr, pieces, s: sympy.Expr, x: sympy.Symbol) -> sympy.Expr:
    r"""The uniform closed form with its outer pieces written as what they are: left of the first kink by more than
    the width (right of the last one), :math:`f * k_\sigma` is the first (last) polynomial smoothed, a polynomial
    whose value for a constant piece is that constant.  The Min/Max form adds terms that cancel there, which gave
    relu * uniform(1) = 0.25 at x = -1e8 in float32 (true 0) and relu_squared * uniform(0.5) = 0.0104 at x = -1000."""
    def smoothed(polynomial):
        shifted = sympy.Poly(sympy.expand(polynomial.subs(x, x - _T)), _T)
        return sympy.expand(sum(coeff * _antiderivative("uniform", j, s)[2] for (j,), coeff in shifted.terms()))

    first, last = pieces[0], pieces[-1]
    return sympy.Piecewise((smoothed(first.polynomial), x <= first.upper - s),
                           (smoothed(last.polynomial), x >= last.lower + s), (closed, True))


def _exp_plus_one(e: sympy.Expr):
    """u when ``e`` is exp(u) + 1 with u not known to be <= 0 (else None)."""
    if isinstance(e, sympy.Add) and len(e.args) == 2 and sympy.S.One in e.args:
        other = e.args[0] if e.args[1] == 1 else e.args[1]
        if isinstance(other, sympy.exp) and other.args[0].is_nonpositive is not True:
            return other.args[0]
    return None


def _float_safe_logistic(expr: sympy.Expr) -> sympy.Expr:
    r"""The logistic closed form in a shape that evaluates in floating point for a small width.

    The exact forms overflow there: :math:`\sigma\log(e^{x/\sigma} + 1)` at :math:`\sigma = 0.001` needs
    :math:`e^{3000}` at x = 3 (``OverflowError`` in ``math``, inf in numpy), :math:`1/(1 + e^{-x/\sigma})` needs
    :math:`e^{5000}` at x = -5, and substituting the width split :math:`e^{(x-1)/\sigma}` into the constant
    1.97e+434 (inf in a double) times :math:`e^{1000x}`.  Rewritten piecewise,
    :math:`\log(1 + e^u) = u + \log(1 + e^{-u})` and :math:`1/(1 + e^u) = e^{-u}/(1 + e^{-u})` for u > 0
    (the exact forms for u <= 0), the branch that is evaluated has no exponential of a positive argument.
    Both branches are the same analytic function, so the value and every derivative are unchanged (at
    u = 0 too); ``kinks`` lists u = 0 as a break point of the formula, not a kink of the function."""
    expr = sympy.powsimp(expr, deep=True, combine="exp")  # exp(1/s)*exp(-x/s) -> exp((1 - x)/s): no huge constant factor

    def safe_log(e):
        u = _exp_plus_one(e.args[0])
        if u is None:
            return e
        return sympy.Piecewise((u + sympy.log(1 + sympy.exp(-u)), u > 0), (sympy.log(1 + sympy.exp(u)), True))

    def safe_reciprocal(e):
        u = _exp_plus_one(e.base)
        if u is None or e.exp != -1:
            return e
        return sympy.Piecewise((sympy.exp(-u) / (1 + sympy.exp(-u)), u > 0), (1 / (1 + sympy.exp(u)), True))

    expr = expr.replace(lambda e: isinstance(e, sympy.log), safe_log)
    return expr.replace(lambda e: isinstance(e, sympy.Pow) and e.exp == -1, safe_reciprocal)


def _has_x_denominator(expr: sympy.Expr, x: sympy.Symbol = _X) -> bool:
    """True if some factor 1/D(x) with D not provably positive appears: simplify likes to create
    removable 0/0 points such as 1/(x - 1); 1/(1 + exp(-x)) and the like are allowed."""
    return any(isinstance(node, sympy.Pow) and node.exp.is_negative and x in node.base.free_symbols
               and node.base.is_positive is not True for node in sympy.preorder_traversal(expr))


def _tidy(expr: sympy.Expr) -> sympy.Expr:
    """Simplify the uniform closed form, keeping it free of denominators in x (no removable 0/0 points)
    and of forms that overflow (see :func:`_overflows`)."""
    expr = sympy.expand(expr)
    special = sorted(expr.atoms(sympy.atan, sympy.log, sympy.Min, sympy.Max), key=sympy.default_sort_key)
    collected = sympy.collect(expr, special, evaluate=True)
    candidates = [expr, collected]
    simplified = sympy.simplify(expr)
    candidates += [simplified, sympy.expand_log(simplified, force=True)]
    candidates = [c for c in candidates if not _has_x_denominator(c)] or [expr]
    return min(candidates, key=lambda c: (_overflows(c), _has_symbolic_power(c), sympy.count_ops(c), len(str(c))))


def _grows(u: sympy.Expr, x: sympy.Symbol = _X) -> bool:
    """True unless exp(u) is known to stay bounded as x -> +-oo (u a polynomial in x with a bounded-above
    leading term, or u known to be <= 0)."""
    if x not in u.free_symbols or u.is_nonpositive:
        return False
    try:
        poly = sympy.Poly(sympy.expand(u), x)
    except sympy.PolynomialError:
        return True
    degree = poly.degree()
    if degree == 0:
        return False
    return degree % 2 == 1 or poly.LC().is_negative is not True


def _overflows(expr: sympy.Expr, x: sympy.Symbol = _X) -> bool:
    r"""True for a form that overflows in floating point where the function itself is moderate:
    a growing exponential as a factor of a product (simplify's :math:`(\ldots e^{x^2/2})\,e^{-x^2/2}`, inf * 0 =
    NaN from x = -17 in float32 for leaky_relu * gaussian(1), when that closed form came through here) or a sum, or
    the log of a product or quotient (:math:`\log(((x+1)^2 + s^2)/((x-1)^2 + s^2))`, which simplify made of the Cauchy
    kernel's logs when they came through here, inf/inf from |x| = 1.3e154).  Exponentials inside log(1 + e^u),
    1/(1 + e^u) and polylog(n, -e^u) are left to the code generator, which evaluates those safely."""
    def walk(node, guarded):
        if isinstance(node, sympy.log):
            arg = node.args[0]
            if x in arg.free_symbols and not isinstance(arg, sympy.Add):
                return True
            return any(walk(a, True) for a in node.args)
        if isinstance(node, sympy.polylog):
            return any(walk(a, True) for a in node.args)
        if isinstance(node, sympy.Pow) and node.exp.is_negative:
            return walk(node.base, True) or walk(node.exp, guarded)
        if isinstance(node, sympy.Pow) and isinstance(node.base, sympy.exp) and node.exp.is_positive:
            return (not guarded and _grows(node.base.args[0] * node.exp, x)) or walk(node.base.args[0], guarded)
        if isinstance(node, sympy.exp):
            return (not guarded and _grows(node.args[0], x)) or walk(node.args[0], guarded)
        return any(walk(a, guarded) for a in node.args)
    return walk(expr, False)


def _has_symbolic_power(expr: sympy.Expr, x: sympy.Symbol = _X) -> bool:
    """(1 + exp(x/s))**s style powers overflow in floating point for small s; prefer s*log(...)."""
    return any(isinstance(node, sympy.Pow) and not node.exp.is_number and x in node.base.free_symbols
               for node in sympy.preorder_traversal(expr))


def _convolved_surrogate(f, params: dict, kernel: str, width) -> sympy.Expr:
    """``f.surrogate * k_sigma``, in the parameters ``params`` that ``f``'s smoothing keeps symbolic
    (at their values where the surrogate's break points move with them, as HeLU's with alpha)."""
    try:
        try:
            if not params:
                raise FormulaError("the forward is smoothed at the parameter values")
            return convolve_expression(f.surrogate, kernel, width)
        except FormulaError:
            return convolve_expression(f.surrogate.xreplace(dict(f.params)), kernel, width)
    except (FormulaError, DivergentIntegralError) as exc:
        raise FormulaError(
            f"{getattr(f, 'name', 'f')} trains with the surrogate gradient {f.surrogate}, and smoothing it must "
            f"smooth that gradient too, which the {kernel} kernel cannot here ({exc}); smooth the forward alone "
            f"with f.with_surrogate(None), or give a piecewise-polynomial surrogate"
        ) from exc


def convolve(f, kernel: str = "gaussian", width=None):
    r"""The smoothed activation :math:`f * k_\sigma` (see the module docstring).

    ``f``: an Activation, a catalogue name / formula (through ``symact.activation``), or a SymPy
    expression in ``x``.  ``width``: a positive number, a symbol, or ``None`` for a parameter
    ``sigma`` (``width`` if ``f`` already has a ``sigma``) with default value 1.  The result is an
    Activation whose expression is the closed form; its parameters are ``f``'s (kept symbolic
    when ``f``'s break points do not depend on them, otherwise ``f`` is used at its parameter
    values) plus the width.  ``result.derivative()`` is :math:`f' * k_\sigma`.  An ``f`` with a surrogate
    gradient ``s`` (HeLU) keeps one: the result back-propagates :math:`s * k_\sigma`, as its derivative
    is :math:`f' * k_\sigma` (a surrogate that is not piecewise polynomial is refused; smooth the forward
    alone with ``f.with_surrogate(None)``).

    >>> import symact
    >>> convolve("relu", "logistic").concrete_expr
    log(exp(x) + 1)
    """
    import symact

    factory = getattr(symact, "activation", None)
    if isinstance(f, str):
        f = factory(f) if factory is not None else safe_sympify(f, "formula", {"x": _X})
    surrogate = None
    if hasattr(f, "expr") and hasattr(f, "params"):
        name, params = getattr(f, "name", "f"), dict(f.params)
        if width is None and any(p.name == "sigma" for p in params):
            width = sympy.Symbol("width", positive=True)
        try:
            expr = convolve_expression(f.expr, kernel, width)
        except FormulaError:
            # break points that move with a parameter (hardtanh's min_val/max_val): use the values
            expr, params = convolve_expression(f.concrete_expr, kernel, width), {}
        if getattr(f, "surrogate", None) is not None:
            surrogate = _convolved_surrogate(f, params, kernel, width)
    else:
        name, params = "f", {}
        f = sympy.sympify(f)
        # a plain Symbol("x") (no real=True) means the input, as it does in symact.activation
        expr = convolve_expression(f.xreplace({s: _X for s in f.free_symbols if s.name == _X.name}), kernel, width)
    if factory is None:
        return expr
    s = _positive_width(width)
    if isinstance(s, sympy.Symbol):
        params[s] = sympy.Integer(1)
    names = {symbol.name for symbol in expr.free_symbols}
    if surrogate is not None:
        names |= {symbol.name for symbol in surrogate.free_symbols}
    act = factory(expr, surrogate=surrogate, **{p.name: value for p, value in params.items() if p.name in names})
    import dataclasses

    return dataclasses.replace(act, name=f"{name}*{kernel}",
                               source=f"{name} convolved with the {kernel} kernel of width {s} (symact.smooth)")
