"""Q and C maps of activations (Poole et al. 2016; Schoenholz et al. 2017; Martens et al. 2021).

A layer ``x -> phi(W x)`` of a wide network with weights ``W_ij ~ N(0, 1/fan_in)`` and zero
biases sends inputs with *q values* ``q = ||x||^2 / dim`` and cosine similarity ``c`` to outputs
whose q values and cosine similarity are, in the infinite-width limit,

* **Q map** ``Q(q) = E[phi(sqrt(q) z)^2]``, ``z ~ N(0, 1)``;
* **C map** (DKS convention: a cosine similarity, *normalised by the Q values*)
  ``C(c; q1, q2) = E[phi(u) phi(v)] / sqrt(Q(q1) Q(q2))`` with ``(u, v)`` centred Gaussian,
  ``Var u = q1``, ``Var v = q2``, ``Cov(u, v) = c sqrt(q1 q2)``.

Other conventions: neural-tangents' ``nngp`` is the *unnormalised* kernel
``K(c; q1, q2) = E[phi(u) phi(v)]`` (times the weight variance, plus the bias variance), so
``C = K / sqrt(K(1; q1, q1) K(1; q2, q2))``.  Cho & Saul's arc-cosine kernel of degree 1 is
``2 K`` for ReLU.  Poole et al.'s "C map" at equal q is the same normalised quantity.

Derivatives (all exact identities, none by numerical differentiation):

* ``d^n Q / dq^n = E[phi(sqrt(q) z)^2 He_{2n}(z)] / (2q)^n`` (heat equation: the q-derivative of
  the N(0, q) density is half its second x-derivative), valid for any square-integrable phi;
* ``d^n C / dc^n = (q1 q2)^{n/2} E[phi^(n)(u) phi^(n)(v)] / sqrt(Q(q1) Q(q2))`` (Price's theorem),
  where a jump ``J`` of ``phi^(n-1)`` at ``b`` contributes ``J delta(x - b)`` to ``phi^(n)``, integrated
  exactly against the Gaussian;
* ``C'(1) = q E[phi'(sqrt(q) z)^2] / Q(q)``, ``C(0) = E[phi(sqrt(q) z)]^2 / Q(q)``;
* ``C''(1) = q^2 E[phi''(sqrt(q) z)^2] / Q(q)``, *infinite* when ``phi'`` jumps (ReLU, leaky ReLU,
  abs, SELU): reported as ``mpmath.inf`` with ``curvature_is_infinite = True``.

At ``q1 = q2 = 1``, with ``a_n`` the normalised Hermite coefficients of phi (see
:func:`numeric.gauss.hermite_coefficients`), ``C(c) = sum_n a_n^2 c^n / sum_n a_n^2`` (Mehler).

>>> import sympy
>>> x = sympy.Symbol("x", real=True)
>>> maps = kernel_maps(sympy.Max(0, x), dps=30)
>>> maps.engine, maps.closed_form.name
('closed', 'homogeneous piecewise-linear (arc-cosine)')
>>> print(maps.q_map(1))
0.5
>>> print(maps.c_map_slope_at_1)
1.0
"""

from __future__ import annotations

import itertools
import math
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import mpmath
import numpy as np
import sympy

from symact._safe_parse import safe_sympify
from symact.activation import function_of_an_exponential
from symact.primitives import safe_derivative, safe_form

from numeric import gauss
from numeric.lambdify_modules import MPMATH_MODULES, numpy_modules
from symact.errors import (DivergentIntegralError, DomainError, FormulaError, SymactError, is_integer_valued,
                           is_whole_number, python_number)

__all__ = ["KernelMaps", "ClosedForm", "kernel_maps", "find_closed_form", "ENGINES", "MIN_DPS", "MAX_DPS",
           "check_dps"]

ENGINES = ("auto", "closed", "mpmath", "float64")

#: Fewest digits ``kernel_maps`` takes: numeric.gauss's rules compare two estimates to ``dps`` digits.
MIN_DPS = 5
#: Most digits the command line takes (``symact maps --dps``, ``symact shape --dps``); the Python functions take
#: any number, as the user asks.  The mpmath engine's time grows about as dps^3: tanh's C(0.5) took 0.3 s at 30
#: digits, 1.0 s at 50, 4.3 s at 100 and 31 s at 200, its C'(0.5) 0.3, 1.0, 7.7 and 58 s (on 2 shared cores);
#: ``symact maps tanh`` (Q, three C values and their slopes) 9 s at 100 digits and 73 s at 200, so a mistyped
#: --dps 100000 would run for years.  (Q values are cheaper: Q(1) of tanh took 1 s at 200 digits.)
MAX_DPS = 100


def check_dps(dps: Any, *, minimum: int = MIN_DPS, maximum: int | None = None, label: str = "dps=") -> int:
    """``dps`` as an int when it is an integer from ``minimum`` to ``maximum`` (``None``: no upper bound), else
    a DomainError naming the range and why.  ``label`` shows the value as the caller took it: ``"dps="``
    (Python), ``"--dps "`` (the command line, which passes ``maximum=MAX_DPS``)."""
    too_many = maximum is not None and is_integer_valued(dps) and dps > maximum
    if too_many:
        raise DomainError(
            f"{label}{dps!r}: the command line takes from {minimum} to {maximum} digits. Above {maximum} the "
            "quadratures take a minute and more per value, and their time grows about as dps^3 (tanh's C(0.5): "
            "4 s at 100 digits, 31 s at 200); for more digits call analysis.kernel_maps(act, dps=N) (or "
            "analysis.shape(..., dps=N)) from Python, which take any number.")
    if not is_integer_valued(dps) or not minimum <= dps:  # nan / inf: a bare ValueError / OverflowError
        allowed = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        raise DomainError(f"{label}{dps!r}: the number of digits must be an integer {allowed}.")
    return int(dps)


#: symbols of the closed forms
Q_SYM, Q1_SYM, Q2_SYM = sympy.symbols("q q1 q2", positive=True)
C_SYM = sympy.Symbol("c", real=True)

_GUARD = 10
#: |c| up to which the mpmath engine uses the Mehler (Hermite) series instead of 2-D quadrature
#: (0.8^n < 10^-(dps+12) needs n ~ 10 (dps + 12) terms: a one-off ~1-3 s per q at 30-40 digits,
#: against 20-80 s for *each* 2-D quadrature point on the pure-Python mpmath backend)
MEHLER_MAX_ABS_C = 0.8
#: most terms of Mehler's series that the mpmath engine sums (then it raises; see KernelMaps._mehler_sum)
MEHLER_MAX_TERMS = 4000


#: most nodes (SymPy expression-tree size) of a derivative's formula that q_map_derivative builds: (phi^2)^(2n)
#: for its cancellation-free form below q = 1, d^nQ/dq^n of a closed form.  SymPy's successive derivatives grow
#: exponentially for some phi, and so does the time to build, compile and evaluate them (tanh^2: 1.8 times per
#: order, n <= 5 within the limit, and tanh's float64 Q^(7)(1) took 13 s, Q^(10) over 60 s; mish^2: n <= 4;
#: erf's closed Q = 2 asin(2q/(2q + 1))/pi: 2.2 times, n <= 7, and its Q^(10)(1) took 10 s, Q^(20) over 10
#: minutes), polynomially for most (GELU^2: 436 nodes at order 20).  Beyond the limit the He form, which needs
#: no derivative, is used.
FORMULA_MAX_NODES = 10000


def _derivative_within_budget(state: dict, derivative: Callable[[int], sympy.Expr], m: int):
    """``derivative(m)`` when the formulas ``derivative(1), ..., derivative(m)`` each have at most
    :data:`FORMULA_MAX_NODES` nodes, else None.  They are built in turn and counted once: ``state`` keeps the
    highest order counted (``"checked"``) and the first over the limit (``"limit"``)."""
    if state.get("limit") is not None and m >= state["limit"]:
        return None
    for k in range(state.get("checked", 0) + 1, m + 1):
        if sum(1 for _ in itertools.islice(sympy.preorder_traversal(derivative(k)), FORMULA_MAX_NODES + 1)) \
                > FORMULA_MAX_NODES:
            state["limit"] = k
            return None
        state["checked"] = k
    return derivative(m)


# ----------------------------------------------------------------------------------------
# closed forms
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClosedForm:
    """Exact Q and C maps of an activation, as SymPy expressions.

    ``q_map`` is in ``q``; ``kernel`` is the unnormalised ``K(c; q1, q2) = E[phi(u) phi(v)]``
    (neural-tangents' nngp with unit weight variance, no bias); ``c_map`` is the DKS cosine map
    ``K / sqrt(Q(q1) Q(q2))`` in ``c, q1, q2``.  ``source`` says where the formula comes from.
    """

    name: str
    q_map: sympy.Expr
    kernel: sympy.Expr
    c_map: sympy.Expr
    source: str

    def __repr__(self) -> str:
        return f"ClosedForm({self.name!r}, Q(q) = {self.q_map}, C = {self.c_map})"


def _sigma12():
    return C_SYM * sympy.sqrt(Q1_SYM * Q2_SYM)


def _make(name: str, kernel: sympy.Expr, source: str) -> ClosedForm:
    kq = kernel.subs({Q1_SYM: Q_SYM, Q2_SYM: Q_SYM, C_SYM: 1})
    qmap = sympy.simplify(kq)
    cmap = sympy.simplify(kernel / sympy.sqrt(qmap.subs(Q_SYM, Q1_SYM) * qmap.subs(Q_SYM, Q2_SYM)))
    return ClosedForm(name, qmap, kernel, cmap, source)


def _relu_kernel():
    # E[relu(u) relu(v)] = sqrt(q1 q2) (sqrt(1 - c^2) + (pi - arccos c) c) / (2 pi)
    return sympy.sqrt(Q1_SYM * Q2_SYM) * (sympy.sqrt(1 - C_SYM**2) + (sympy.pi - sympy.acos(C_SYM)) * C_SYM) / (2 * sympy.pi)


def _step_kernel():
    # E[H(u) H(v)] = 1/4 + arcsin(c) / (2 pi)   (Sheppard; independent of q1, q2)
    return sympy.Rational(1, 4) + sympy.asin(C_SYM) / (2 * sympy.pi)


def _positive_side(expr, x):
    p = sympy.Symbol("p", positive=True)
    return sympy.simplify(expr.subs(x, p)), sympy.simplify(expr.subs(x, -p)), p


def _homogeneous_linear(expr, x):
    """(A, B) with phi = A relu(x) + B x when phi is linear on each half-line through 0."""
    pos, neg, p = _positive_side(expr, x)
    if pos.has(sympy.Piecewise, sympy.Heaviside, sympy.Max, sympy.Min, sympy.Abs, sympy.sign):
        return None
    sp_, sn = sympy.simplify(pos / p), sympy.simplify(neg / (-p))
    if sp_.has(p) or sn.has(p) or not (sp_.is_number and sn.is_number):
        return None
    return sp_ - sn, sn


def _numerically_homogeneous(f) -> bool:
    """Whether f(2t) / f(t) is one power of 2 at t = +-0.3, +-0.9, +-2.1 (zero sides allowed);
    f an mpmath function of one argument, evaluated at 30 digits."""
    logs = []
    try:
        with mpmath.workdps(30):
            for t in (0.3, 0.9, 2.1, -0.3, -0.9, -2.1):
                a, b = (f(mpmath.mpf(v)) for v in (t, 2 * t))
                if not (mpmath.isfinite(a) and mpmath.isfinite(b)):
                    return False
                if a == 0 or b == 0:
                    if a != b:
                        return False
                    continue
                if b / a <= 0:
                    return False
                logs.append(float(mpmath.log(b / a, 2)))
    except (ArithmeticError, ValueError, TypeError, AttributeError, SymactError):  # non-real, a pole
        return False
    return all(abs(v - logs[0]) <= 1e-9 * max(1.0, abs(logs[0])) for v in logs)


def _homogeneous_degree(expr, x, f):
    """k with expr(a x) = a^k expr(x) for all a > 0 (on each half-line expr = A |x|^k), or None;
    f: expr as an mpmath function.  A numeric screen (f(2t) / f(t) = 2^k at a few t of either
    sign) first: the symbolic check alone took up to 3 s (mish) for the common answer None."""
    if not _numerically_homogeneous(f):
        return None
    try:
        pos, neg, p = _positive_side(expr, x)
        degrees = set()
        for side in (pos, neg):
            if side == 0:
                continue
            if side.has(sympy.Piecewise, sympy.Heaviside, sympy.Max, sympy.Min, sympy.Abs, sympy.sign):
                return None
            k = sympy.simplify(p * sympy.diff(side, p) / side)
            if k.free_symbols or not (k.is_number and k.is_real):
                return None
            degrees.add(k)
    except (TypeError, ValueError, NotImplementedError, AttributeError):
        return None
    return degrees.pop() if len(degrees) == 1 else None


def _piecewise_constant(expr, x):
    """(A, B) with phi = A H(x) + B when phi is constant on each half-line."""
    pos, neg, p = _positive_side(expr, x)
    if pos.has(p) or neg.has(p) or not (pos.is_number and neg.is_number):
        return None
    return pos - neg, neg


def _hermite_prob_coeffs(poly_expr, z) -> list:
    """Exact normalised Hermite coefficients a_n of a polynomial in z (h_n = He_n/sqrt(n!))."""
    p = sympy.Poly(sympy.expand(poly_expr), z)
    coeffs = {}
    rem = p
    while not rem.is_zero:
        d = rem.degree()
        lead = rem.LC()
        coeffs[d] = lead
        rem = rem - sympy.Poly(lead * sympy.hermite_prob(d, z), z)
    n = max(coeffs) + 1 if coeffs else 1
    return [sympy.simplify(coeffs.get(k, 0) * sympy.sqrt(sympy.factorial(k))) for k in range(n)]


def find_closed_form(expr: sympy.Expr, x: sympy.Symbol) -> ClosedForm | None:
    """Recognise activations with closed-form kernels by matching the concrete expression.

    Families: ``A relu(x) + B x`` (ReLU, leaky ReLU, PReLU, abs, identity: Cho & Saul's
    arc-cosine kernel / 2), ``A H(x) + B`` (Heaviside/step, sign: Sheppard's arcsine law),
    ``k erf(a x)`` (Williams 1997), ``k sin(a x + b)``, ``k cos(a x + b)``, ``k exp(a x + b)``,
    ``k exp(-a x^2)`` (Gaussian), and polynomials (Mehler with exact Hermite coefficients).
    Returns ``None`` when nothing matches.
    """
    expr = safe_sympify(expr, "expression")
    s12 = _sigma12()
    k_, a_, b_ = (sympy.Wild(n, exclude=[x]) for n in ("k", "a", "b"))
    if expr.is_polynomial(x):
        z1, z2 = sympy.symbols("z1 z2", real=True)
        a1 = _hermite_prob_coeffs(expr.subs(x, sympy.sqrt(Q1_SYM) * z1), z1)
        a2 = _hermite_prob_coeffs(expr.subs(x, sympy.sqrt(Q2_SYM) * z2), z2)
        kern = sympy.expand(sum(a1[n] * a2[n] * C_SYM**n for n in range(min(len(a1), len(a2)))))
        return _make("polynomial", kern, "Mehler's formula with exact Hermite coefficients")
    # the piecewise families reduce to polynomials (handled above) unless phi has a piecewise
    # part; skip their sympy.simplify calls otherwise: on a transformed activation with 15-digit
    # coefficients (huge rationals) they ran for minutes without any chance of a match
    piecewise = expr.has(sympy.Piecewise, sympy.Heaviside, sympy.Max, sympy.Min, sympy.Abs, sympy.sign)
    lin = _homogeneous_linear(expr, x) if piecewise else None
    if lin is not None:
        A, B = lin
        kern = A**2 * _relu_kernel() + (A * B + B**2) * s12
        return _make("homogeneous piecewise-linear (arc-cosine)", kern,
                     "Cho & Saul 2009 arc-cosine kernel of degree 1 (= 2 x ReLU nngp); "
                     "phi = A relu(x) + B x")
    const = _piecewise_constant(expr, x) if piecewise else None
    if const is not None:
        A, B = const
        kern = A**2 * _step_kernel() + A * B + B**2
        return _make("step (arcsine)", kern, "Sheppard's formula P(u>0, v>0) = 1/4 + asin(c)/(2 pi)")
    m = expr.match(k_ * sympy.erf(a_ * x))
    if m and m[a_] != 0:
        k, a = m[k_], m[a_]
        kern = k**2 * 2 / sympy.pi * sympy.asin(2 * a**2 * s12 / sympy.sqrt((1 + 2 * a**2 * Q1_SYM) * (1 + 2 * a**2 * Q2_SYM)))
        return _make("erf", kern, "Williams 1997, 'Computing with infinite networks'")
    for trig, sgn in ((sympy.sin, -1), (sympy.cos, 1)):
        m = expr.match(k_ * trig(a_ * x + b_))
        if m and m[a_] != 0:
            k, a, b = m[k_], m[a_], m[b_]
            # sin A sin B = (cos(A-B) - cos(A+B))/2, cos A cos B = (cos(A-B) + cos(A+B))/2
            kern = k**2 / 2 * (sympy.exp(-a**2 * (Q1_SYM + Q2_SYM - 2 * s12) / 2)
                               + sgn * sympy.cos(2 * b) * sympy.exp(-a**2 * (Q1_SYM + Q2_SYM + 2 * s12) / 2))
            return _make(trig.__name__, kern, "E[cos(a u + a' v)] = exp(-Var/2) (characteristic function)")
    m = expr.match(k_ * sympy.exp(a_ * x**2))
    if m and m[a_] != 0 and m[a_].is_negative:
        k, a = m[k_], -m[a_]
        kern = k**2 / sympy.sqrt((1 + 2 * a * Q1_SYM) * (1 + 2 * a * Q2_SYM) - 4 * a**2 * s12**2)
        return _make("gaussian", kern, "Gaussian integral: E[exp(-a(u^2+v^2))] = det(I + 2 a Sigma)^(-1/2)")
    m = expr.match(k_ * sympy.exp(a_ * x + b_))
    if m and m[a_] != 0:
        k, a, b = m[k_], m[a_], m[b_]
        kern = k**2 * sympy.exp(2 * b + a**2 * (Q1_SYM + Q2_SYM + 2 * s12) / 2)
        return _make("exp", kern, "log-normal moments: E[exp(a(u+v))] = exp(a^2 Var(u+v)/2)")
    return None


# ----------------------------------------------------------------------------------------
# activation adapter
# ----------------------------------------------------------------------------------------

def _torch_special(name):
    """torch.special.<name> on float64 arrays when torch is installed (fast, ~1 ulp), else None."""
    try:
        import torch
    except ImportError:  # torch is optional: fall back to math.erf element by element
        return None
    fn = getattr(torch.special, name)
    return lambda x: fn(torch.as_tensor(np.asarray(x, dtype=np.float64))).numpy()


def _np_erf(x):
    fast = _torch_special("erf")
    return fast(x) if fast is not None else np.vectorize(math.erf, otypes=[float])(x)


def _np_erfc(x):
    fast = _torch_special("erfc")
    return fast(x) if fast is not None else np.vectorize(math.erfc, otypes=[float])(x)


_NUMPY_MODULES = numpy_modules({"erf": _np_erf, "erfc": _np_erfc})


_PIECEWISE_FUNCS = (sympy.Max, sympy.Min, sympy.Abs, sympy.sign, sympy.Heaviside, sympy.Piecewise)


def _find_kinks(expr: sympy.Expr, x: sympy.Symbol) -> tuple:
    """Real points where a piecewise expression (Heaviside/Max/Min/Abs/sign/Piecewise) may kink."""
    cands = set()
    args = []
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, (sympy.Heaviside, sympy.Abs, sympy.sign, sympy.DiracDelta)):
            args.append(node.args[0])
        elif isinstance(node, (sympy.Max, sympy.Min)):
            a = node.args
            args += [a[i] - a[j] for i in range(len(a)) for j in range(i + 1, len(a))]
        elif isinstance(node, sympy.Piecewise):
            for _, cond in node.args:
                for rel in cond.atoms(sympy.core.relational.Relational):
                    args.append(rel.lhs - rel.rhs)
    for a in args:
        if not a.has(x):
            continue
        # a nested Max/Min/Abs: solve() has no algorithm for -1 - Min(1, x) = 0 (hard tanh written
        # Max(-1, Min(1, x)) lost its kink at -1: the float64 C(0.3; 1e100, 1) raised "did not converge"
        # after 8 s) and silently drops a piece of 3 - Max(-2 x, x) = 0 ([3], not [-3/2, 3]); as a Piecewise
        # it is solved piece by piece.  Both forms are solved: a spurious kink is only an extra split point
        forms = [a] + ([a.rewrite(sympy.Piecewise)] if a.has(*_PIECEWISE_FUNCS) else [])
        sols = set()
        for form in forms:
            try:
                sols |= set(sympy.solve(sympy.Eq(form, 0), x))
            except (NotImplementedError, TypeError, ValueError):
                continue
        for s in sols:
            if s.is_real and s.is_number:
                cands.add(sympy.nsimplify(s))
    return tuple(sorted(cands, key=float))


_KINK_FUNCS = (sympy.Heaviside, sympy.Abs, sympy.sign, sympy.DiracDelta, sympy.Max, sympy.Min, sympy.Piecewise)


def _features(expr: sympy.Expr, x: sympy.Symbol) -> tuple:
    """(scale, centres): the narrowest width (x units, at most 1) and the centres of the features that
    the formula's parameters announce: a function of ``a x + b`` varies on ``1/|a|`` around
    ``-b/a`` (``tanh(10 x)``: 0.1 at 0; ``erf(1000 (x - 0.3))``: 0.001 at 0.3), of
    ``a x^2 + b x + c`` on ``1/sqrt|a|`` around ``-b/(2a)``.  The float64 rules grade their panels
    there from the start: a feature narrower than the node spacing is invisible to every rule, so
    comparing rules cannot find it.  Kinks (Max, Abs, Piecewise, ...) are handled as break-points."""
    scale, centres = 1.0, set()
    for node in sympy.preorder_traversal(expr):
        if not isinstance(node, sympy.Function) or isinstance(node, _KINK_FUNCS):
            continue
        for arg in node.args:
            if not arg.has(x):
                continue
            try:
                poly = sympy.Poly(arg, x)
            except sympy.PolynomialError:
                continue
            if poly.degree() not in (1, 2) or not all(co.is_number and co.is_real for co in poly.all_coeffs()):
                continue
            co = poly.all_coeffs()
            if co[0] == 0:
                continue
            if poly.degree() == 1:
                width, centre = 1 / abs(float(co[0])), -co[1] / co[0]
            else:
                width, centre = 1 / math.sqrt(abs(float(co[0]))), -co[1] / (2 * co[0])
            if width < 1:
                scale = min(scale, width)
                if centre != 0:
                    centres.add(sympy.nsimplify(centre))
    return scale, tuple(sorted(centres, key=float))[:16]


@dataclass(frozen=True)
class _Parts:
    name: str
    x: sympy.Symbol
    expr: sympy.Expr
    kinks: tuple


def _activation_parts(act: Any) -> _Parts:
    """Read (name, input symbol, concrete expression, kinks) from an Activation or a SymPy expr."""
    if hasattr(act, "concrete_expr"):
        expr = sympy.sympify(act.concrete_expr)
        inputs = tuple(getattr(act, "inputs", ()))
        if len(inputs) > 1:
            raise FormulaError(
                f"{getattr(act, 'name', expr)!r} is a gated activation with inputs {inputs}; kernel maps "
                "are defined for element-wise activations of one input. Analyse its parts separately.")
        name = str(getattr(act, "name", expr))
        x = inputs[0] if inputs else None
        kinks = tuple(getattr(act, "kinks", ()) or ())
    else:
        if isinstance(act, str):
            try:
                import symact
                return _activation_parts(symact.activation(act))
            except AttributeError:
                act = safe_sympify(act, "activation", {"x": sympy.Symbol("x", real=True)})
        expr = safe_sympify(act, "activation")
        name = str(expr)
        x = None
        kinks = None
    if expr is None or not isinstance(expr, sympy.Expr):  # kernel_maps(None): a bare AttributeError (.atoms)
        raise FormulaError(f"kernel maps need an activation (a catalogue name, formula or Activation), got {act!r}")
    stairs = expr.atoms(sympy.floor, sympy.ceiling, sympy.frac)
    if stairs:
        # no kink or break-point rule knows their infinitely many jumps: float64 raised SymPy's bare
        # PrintMethodNotImplementedError, mpmath ran 30-40 s and then called Q(1) of floor(x) divergent
        raise FormulaError(
            f"{name}: {sorted(map(str, stairs))[0]} jumps at every integer, which the kernel maps' quadrature cannot "
            "split at; use an activation with finitely many kinks (e.g. a Piecewise over the range you need).")
    # symact's safe primitives (NormalCdf, Sigmoid, Softplus, ...) have no mpmath/NumPy translation:
    # kernel_maps(NormalCdf(x)) raised a bare NameError from lambdify at the first quadrature node
    from symact.primitives import SafePrimitive, to_elementary
    if expr.atoms(SafePrimitive):
        expr = to_elementary(expr)
    free = sorted(expr.free_symbols, key=str)
    if x is None:
        if len(free) != 1:
            raise FormulaError(
                f"{expr} has free symbols {free}; a kernel map needs an expression in one input symbol. "
                "Substitute parameter values first (act.subs(...)).")
        x = free[0]
    elif set(free) - {x}:
        raise FormulaError(
            f"{expr} still contains parameters {sorted(set(free) - {x}, key=str)}; substitute values first.")
    # Floats become the exact decimals they print as, so that dps-digit results mean something.
    expr = sympy.nsimplify(expr, rational=True) if expr.has(sympy.Float) else expr
    if not x.is_real:
        xr = sympy.Symbol(x.name, real=True)
        expr, x = expr.subs(x, xr), xr
    if kinks is None:
        kinks = _find_kinks(expr, x)
    return _Parts(name, x, expr, tuple(sympy.nsimplify(k) for k in kinks))


def _drop_deltas(expr: sympy.Expr) -> sympy.Expr:
    return expr.replace(sympy.DiracDelta, lambda *a: sympy.S.Zero)


@lru_cache(maxsize=1024)
def _float64_form(expr: sympy.Expr, x: sympy.Symbol) -> sympy.Expr:
    """``safe_form(expr)`` in the input x (cached across maps: a fresh map of the same phi pays nothing)."""
    return safe_form(expr, (x,))


@lru_cache(maxsize=1024)
def _float64_slope(expr: sympy.Expr, x: sympy.Symbol) -> sympy.Expr:
    """``safe_derivative(expr, x)``, which drops DiracDelta terms (cached like :func:`_float64_form`)."""
    return safe_derivative(expr, x, (x,))


class _Funcs:
    """phi and its regular derivatives as mpmath and numpy callables, plus derivative jumps."""

    def __init__(self, parts: _Parts, digits: int = 60, cse: bool = False, square_of: "_Funcs | None" = None):
        self.parts = parts
        self.digits = digits
        # common-subexpression elimination in the lambdified functions: the high derivatives of
        # phi^2 (q_map_derivative) repeat tanh(x)**2 and the like dozens of times
        self.cse = cse
        #: the _Funcs of phi where this is phi^2: its float64 forms are built from phi's (see safe_expr)
        self.square_of = square_of
        self._exprs = [parts.expr]
        self._safe_exprs: dict = {}

    def expr(self, n: int) -> sympy.Expr:
        while len(self._exprs) <= n:
            self._exprs.append(_drop_deltas(sympy.diff(self._exprs[-1], self.parts.x)))
        return self._exprs[n]

    def safe_expr(self, n: int) -> sympy.Expr:
        """phi^(n) written for float64 (cached): ``safe_form`` of phi, and for n >= 1 ``safe_derivative`` of
        phi^(n-1), the form with the fewest floating-point hazards (symact.primitives).  The formula as written
        rounds where it neither overflows nor is flagged: log(1 + exp(x - 30)) at x = 0 adds exp(-30) to 1 and
        is 1e-3 off, so the float64 rule refused it as a feature it could not resolve.  Each order starts
        from the exact phi^(n-1), so a patch that keeps one order accurate (tanhshrink's continued fraction)
        is not differentiated into the next (its slope is tanh(x)**2).

        Of phi^2 (``square_of``), Leibniz's sum of products of phi's: sum_k C(n, k) phi^(k) phi^(n-k), each
        factor in its safe form.  safe_derivative of SymPy's (phi^2)^(n-1) itself took seconds an order
        (at the 8th order GELU^2's took 1.5 s, mish^2's 4.4 s), and its formula grows with n faster than phi^(n)'s."""
        if n not in self._safe_exprs:
            x = self.parts.x
            if self.square_of is not None:
                phi = self.square_of
                form = sympy.Add(*[sympy.binomial(n, k) * phi.safe_expr(k) * phi.safe_expr(n - k)
                                   for k in range(n + 1)])
            elif n == 0:
                form = _float64_form(self.expr(0), x)
            else:
                form = _float64_slope(self.expr(n - 1), x)
            self._safe_exprs[n] = form
        return self._safe_exprs[n]

    @lru_cache(maxsize=None)
    def mp(self, n: int) -> Callable:
        # constant sub-expressions (e.g. SELU's erfc(sqrt(2)/2)) become Floats of `digits` digits
        # once, instead of being re-evaluated at every quadrature node
        f = gauss.with_removable_points(
            sympy.lambdify(self.parts.x, self.expr(n).evalf(self.digits), modules=MPMATH_MODULES, cse=self.cse))
        real = gauss._real   # complex/nan values raise NonRealExpressionError at the node
        return lambda t: real(f(t), t)

    @lru_cache(maxsize=None)
    def np(self, n: int) -> Callable:
        """phi^(n) on float64 arrays, from its safe form (:meth:`safe_expr`).  Where the lambdified formula
        still overflows in an intermediate the value is recomputed with mpmath (no overflow) and rounded to
        float64: a truly infinite or undefined value still comes out inf/raises, a representable one comes
        out right."""
        f = sympy.lambdify(self.parts.x, self.safe_expr(n).evalf(20), modules=_NUMPY_MODULES, cse=self.cse)
        exact = self.mp(n)

        def fn(v):
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                y = np.broadcast_to(np.asarray(f(v), dtype=np.float64), np.shape(v))
            bad = ~np.isfinite(y)
            if bad.any():
                y = np.array(y)
                with mpmath.workdps(30):
                    y[bad] = [float(exact(mpmath.mpf(float(t))))
                              for t in np.broadcast_to(np.asarray(v, dtype=np.float64), y.shape)[bad]]
            return y

        return fn

    @lru_cache(maxsize=None)
    def jumps(self, n: int) -> tuple:
        """((b, J), ...): jumps J = phi^(n)(b+) - phi^(n)(b-) of the regular n-th derivative."""
        out = []
        f = self.mp(n)
        with mpmath.workdps(60):
            eps = mpmath.mpf(10) ** -40
            for b in self.parts.kinks:
                bb = mpmath.mpf(sympy.N(b, 60))
                j = mpmath.mpf(f(bb + eps)) - mpmath.mpf(f(bb - eps))
                if abs(j) > mpmath.mpf(10) ** -25:
                    out.append((b, j))
        return tuple(out)


# ----------------------------------------------------------------------------------------
# KernelMaps
# ----------------------------------------------------------------------------------------

def _log_abs(v: float) -> float:
    """log|v|, -inf at 0."""
    return math.log(abs(v)) if v != 0 else -math.inf


def _plain_number(v):
    """A scalar argument as a number the engines take (int, float, mpf or SymPy), exactly: a
    ``Fraction`` as a SymPy Rational, a ``Decimal`` as the decimal it spells, a NumPy or 0-dim torch
    scalar as its Python value (``np.float32(0.5)``, ``Fraction(1, 2)`` and ``Decimal("0.5")`` reached
    ``mpmath.mpf`` and raised a bare TypeError).  Anything else is returned as it is."""
    import decimal
    import fractions

    if isinstance(v, fractions.Fraction):
        return sympy.Rational(v.numerator, v.denominator)
    if isinstance(v, decimal.Decimal):
        return sympy.Rational(str(v)) if v.is_finite() else float(v)
    return python_number(v)


def _at_precision(method):
    """Run a public method with dps + 10 working digits, whatever the caller's mpmath.mp.dps;
    the method rounds its result to ``dps`` digits itself (``_out``).  Scalar arguments are taken
    as plain numbers first (see :func:`_plain_number`)."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        args = tuple(_plain_number(a) for a in args)
        kwargs = {k: _plain_number(v) for k, v in kwargs.items()}
        with mpmath.workdps(self.dps + _GUARD):
            return method(self, *args, **kwargs)

    return wrapper


def _scale_points(std) -> list:
    """Extra split points (in x) for a Gaussian of standard deviation ``std`` >> 1: phi turns on its own
    scale |x| ~ 1, a width 1/std in z, which tanh-sinh with one split at 0 does not resolve (tanh's
    C'(1; q = 1e100) came out 0, not 5e49, and Q'(1e200) kept 8 of 15 digits)."""
    if not std > 100:
        return []
    return [sign * b for b in (1, 3, 10, 30) for sign in (-1, 1)]


def _check_one_number(value, name: str, what: str) -> None:
    """An array or sequence reached numpy's "truth value of an array is ambiguous" in the range checks."""
    if getattr(value, "ndim", 0) or isinstance(value, (list, tuple)):
        raise DomainError(f"{name} = {value!r} is not one number; {what}")


def _check_q(qv) -> None:
    _check_one_number(qv, "q", "the Q map takes one q value (squared norm / dimension) at a time.")
    try:
        valid = bool(qv > 0) and bool(qv < float("inf"))
    except TypeError:
        raise DomainError(f"q = {qv!r} is not a number; q values (squared norm / dimension) "
                          "are finite numbers > 0.") from None
    if not valid:  # nan fails both comparisons; inf would reach the integrand as nan
        raise DomainError(f"q={qv}: q values (squared norm / dimension) must be finite and > 0.")


def _check_c(cv):
    """``cv`` if it is a cosine similarity (a number in [-1, 1]), else a DomainError that says so."""
    _check_one_number(cv, "c", "c_map takes one cosine similarity in [-1, 1]: use c_map_curve(cs) for many.")
    try:
        inside = -1 <= cv <= 1
    except TypeError:
        raise DomainError(f"c = {cv!r} is not a number; the C map takes a cosine similarity in [-1, 1].") from None
    if not inside:
        raise DomainError(f"c = {cv} is outside [-1, 1]: a cosine similarity must lie there; "
                          "normalise the inner product by the norms (c = <x,y>/(|x||y|)).")
    return cv


def _f64_cancellation_ok(value, mass, factor: float = 10) -> bool:
    """A float64 sum keeps ~2 ulps of ``mass`` (its E|f|) as rounding; the float64 engine promises
    ~1e-12 relative (10 x FLOAT64_RELATIVE_TOLERANCE), so ``|value|`` must be well above that.
    ``factor``: the worst-case bound allowed, in units of FLOAT64_RELATIVE_TOLERANCE."""
    return mass * 2 * np.finfo(np.float64).eps <= gauss.FLOAT64_RELATIVE_TOLERANCE * factor * abs(value)


#: relative size (of the kernel) below which the float64 engine drops the correction terms of a
#: saturating activation's kernel at large q (see KernelMaps._saturated_kernel_f64)
_SATURATION_TOLERANCE = 1e-15


def _negligible_beyond(f, limits=(0, 0), top: int = 40):
    """``X = 2^k <= 4096`` such that ``|x|^3 |f(x) - L+-| <= 1e-20`` at every ``x = +-2^j``, ``k <= j <= top``
    (``limits = (L-, L+)``, read at +-2^top), or None; f an mpmath function, called at the caller's working
    precision.  k <= top - 3: four points at least (a limit read at 2^10 is met there by anything)."""
    start = None
    for k in range(top, 2, -1):
        x = mpmath.mpf(2) ** k
        if max(abs(f(-x) - limits[0]), abs(f(x) - limits[1])) * x ** 3 > mpmath.mpf(10) ** -20:
            break
        start = k
    return float(2 ** start) if start is not None and start <= min(12, top - 3) else None


# log, and the functions that only select or take signs, pass an exponential's size on unchanged: log(1 + exp(x)) ~ x
_TAME_FUNCTIONS = (sympy.log, sympy.Min, sympy.Max, sympy.Abs, sympy.sign, sympy.Heaviside, sympy.DiracDelta,
                   sympy.Piecewise)


def _singularity_candidates(expr: sympy.Expr, x: sympy.Symbol) -> tuple[list, set]:
    """(singular, candidates): the real singularities SymPy finds in ``expr`` (all of a finite set, a few of each
    periodic family), and those together with the real zeros of the bases of its negative powers."""
    from symact._properties import real_singularities, singular_points_near_0, zeros_of_denominators

    singular = singular_points_near_0(real_singularities(expr, x))
    return singular, set(singular) | zeros_of_denominators(expr, x)


def _normal_pdf_mp(x, var):
    return mpmath.exp(-x * x / (2 * var)) / mpmath.sqrt(2 * mpmath.pi * var)


class KernelMaps:
    """Q and C maps of one activation at a given precision (see the module docstring for the maths).

    Build with :func:`kernel_maps`.  With ``engine`` ``"closed"`` or ``"mpmath"`` results are
    ``mpmath.mpf`` at ``dps`` digits; with ``"float64"`` they are Python floats (Q and C values
    and their c-derivatives agree with the mpmath engine to about 1e-13 relative, tested at 1e-12,
    except where C is tiny: there the float64 C is accurate in absolute terms only (the 2-D rule's error is
    ~1e-13 of ``sqrt(E phi(u)^2 E phi(v)^2)`` at most, typically ~1e-16 of ``E|phi(u) phi(v)|``, i.e. ~1e-16 in C
    units), so a C far below that has no correct digit: x exp(-x^2)'s C(0.3; q = 1e12) = 3.5e-19 is 1e-4 off
    relative, and C(0.3; q = 1e100) = 3.5e-151 comes out -5e-67.  That is no refusal, because a C next to 0 is
    routine (a DKS-shaped phi has C(0) = 0, and its C map iterated from 0 meets C ~ 1e-31), where 1e-16 absolute
    is what a cosine similarity needs; use ``engine='mpmath'`` (Mehler's series: dps digits relative to C) for
    relative accuracy there.  An odd phi at ``0 < |c| <= 1e-6`` takes Mehler's first term, exact to 1e-13
    relative there, and its C(0) is exactly 0; the
    c-derivatives likewise keep ~1e-13 of ``sqrt(E phi^(n)(u)^2 E phi^(n)(v)^2)``, and raise where that leaves
    fewer than two certain digits: x exp(-x^2)'s C'(0.3; q = 1e6) ~ 1e-9 against C'(1) ~ 1e6);
    :meth:`q_map_derivative` at ``q >= 1`` cancels and keeps about 1e-10 relative: GELU's
    ``Q''(1000)`` is 1.3e-11 off; where it would keep less it raises instead).  The float64 engine evaluates phi
    and its derivatives in the forms ``symact.primitives.safe_form`` and ``safe_derivative`` give (Softplus(x - 30)
    for log(1 + exp(x - 30)), whose formula rounds 1 + exp(-30)); the mpmath engine the formula as written.

    >>> import sympy
    >>> x = sympy.Symbol("x", real=True)
    >>> m = kernel_maps(sympy.tanh(x), dps=20)
    >>> m.engine
    'mpmath'
    >>> print(mpmath.nstr(m.q_map(1), 15))
    0.394294490397841
    """

    def __init__(self, parts: _Parts, dps: int, engine: str):
        if engine not in ENGINES:
            raise DomainError(f"engine={engine!r}: choose one of {ENGINES}.")
        self.dps = check_dps(dps)
        self._parts = parts
        self.activation_name = parts.name
        self.closed_form: ClosedForm | None = find_closed_form(parts.expr, parts.x)
        if engine == "auto":
            engine = "closed" if self.closed_form is not None else "mpmath"
        if engine == "closed" and self.closed_form is None:
            raise DomainError(
                f"no closed form is known for {parts.name!r}; use engine='mpmath' (any number of digits) "
                "or engine='float64' (fast).")
        self.engine = engine
        self._f = _Funcs(parts, digits=self.dps + 3 * _GUARD)
        #: real points where phi is singular but square-integrable (log|x| at 0): quadrature
        #: split points, never delta terms
        self._singular_points: tuple = ()
        if engine != "closed":
            self._check_poles()
        #: the mpmath engine sums Mehler's series for |c| <= this (at q1 == q2); 2-D quadrature
        #: beyond.  Set it to 0 to force quadrature everywhere.
        self.mehler_max_abs_c = MEHLER_MAX_ABS_C
        self._cache: dict = {}
        self._lambdified: dict = {}

    def __repr__(self) -> str:
        # float64 results carry float64's precision, whatever dps was asked for
        precision = "" if self.engine == "float64" else f", dps={self.dps}"
        return f"KernelMaps({self.activation_name!r}, engine={self.engine!r}{precision})"

    def prepare(self, max_derivative: int = 2) -> "KernelMaps":
        """Do the activation's one-off analysis now, so that later calls time only their quadrature;
        returns self.  No Q or C value is computed or cached.

        The analysis depends on phi alone, not on q or c: phi and its derivatives up to
        ``max_derivative`` lambdified for this engine (those whose formulas, and those of the lower orders, have at
        most :data:`FORMULA_MAX_NODES` nodes: :meth:`c_map_derivative` builds none past that), whether phi is
        positively homogeneous, saturates, or has even or odd derivatives, and whether the derivatives of
        phi^2 that the q-derivatives integrate are regular.  It is otherwise done at the first call that needs it
        (about 1 ms of SymPy and 30-digit mpmath for tanh, more than a float64 Q(1) itself).

        >>> import sympy
        >>> x = sympy.Symbol("x", real=True)
        >>> m = kernel_maps(sympy.tanh(x), engine="float64").prepare()
        >>> round(m.q_map(1), 12)
        0.394294490398
        """
        if not is_integer_valued(max_derivative) or max_derivative < 0:
            raise DomainError(f"max_derivative={max_derivative!r}: give a whole number >= 0, e.g. 2.")
        if self.engine == "closed":
            return self
        for n in range(int(max_derivative) + 1):
            if self._phi_derivative(n) is None:
                break   # c_map_derivative builds none past FORMULA_MAX_NODES either (Mehler's series, or it raises)
            self._f.mp(n)
            if self.engine == "float64":
                self._f.np(n)
            for odd in (False, True):
                self._derivative_is_even(n, odd=odd)
            if n:
                self._direct_form_applies(2 * n)
        self._homogeneous_degree()
        self._saturation()
        if self.engine == "float64":
            self._float64_features()
            self._float64_cusps()
        return self

    def _check_poles(self) -> None:
        """Raise DivergentIntegralError when phi^2 has a non-integrable singularity on the real
        line (1/x: Q(q) = E[1/(q z^2)] diverges), which no quadrature rule notices by itself:
        it returned garbage (6638 in float64, 2e39 with mpmath).  Candidates: real zeros of
        the bases of negative powers and the real singularities SymPy finds (tan's poles,
        a few of each periodic family); each is tested by gauss's singularity check on phi^2."""
        singular, poles = _singularity_candidates(self._parts.expr, self._parts.x)
        if not poles:
            return
        f = self._f.mp(0)

        def f_safe(t):
            try:
                return f(t)
            except ZeroDivisionError:
                return mpmath.inf
        with mpmath.workdps(self.dps + _GUARD):
            nearest_first = sorted(poles, key=lambda b: (abs(float(b)), float(b)))
            gauss._check_singularities(lambda t: f_safe(t) ** 2, [self._mp(b) for b in nearest_first], self.dps,
                                       f"phi^2 for {self.activation_name!r}")
        self._singular_points = tuple(singular)  # all square-integrable, or the check raised

    def _cusp_points(self) -> tuple:
        """The points where phi is finite but phi' is not (zeros of the bases of negative powers in phi', and
        the real singularities SymPy finds in it, a few of each periodic family): the Hermite rule grades its
        panels towards them, as towards the singular points, and the float64 rules towards those of them that
        :meth:`_float64_cusps` confirms.  Computed on first use."""
        if "cusps" not in self._cache:
            try:
                _, found = _singularity_candidates(sympy.diff(self._parts.expr, self._parts.x), self._parts.x)
            except (NotImplementedError, TypeError, ValueError):
                found = set()
            self._cache["cusps"] = tuple(sorted(found - set(self._singular_points), key=float))
        return self._cache["cusps"]

    def _float64_cusps(self) -> list:
        """The cusps the float64 rules grade towards (cached): the points of :meth:`_cusp_points` where
        phi's slope does grow without bound, |phi'| 1e-12 from the point at least twice its value 1e-6
        away, on either side (sinc's candidate 0, where its formula for phi' is 0/0 but phi' is smooth,
        is none; grading there would only cost time)."""
        if "f64 cusps" not in self._cache:
            slope, found = self._f.mp(1), []
            # a cusp needs a fractional power (sqrt(|x|), |x|**(3/10)) or an inverse sine-like function: without
            # one, skip the symbolic search, which is most of a fresh float64 map's first Q(1) (tanh: 3 ms of 4)
            candidates = self._cusp_points() if any(
                (isinstance(node, sympy.Pow) and not node.exp.is_integer)
                or isinstance(node, (sympy.asin, sympy.acos, sympy.acosh, sympy.asec, sympy.acsc))
                for node in sympy.preorder_traversal(self._parts.expr)) else ()
            for b in candidates:
                try:
                    with mpmath.workdps(30):
                        at = self._mp(b)
                        near, far = mpmath.mpf(10) ** -12, mpmath.mpf(10) ** -6
                        grows = any(abs(slope(at + side * near)) >= 2 * abs(slope(at + side * far)) for side in (1, -1))
                except (ArithmeticError, ValueError, TypeError, SymactError):
                    grows = True   # no slope next to it to compare: grade, which costs time only
                if grows:
                    found.append(float(b))
            self._cache["f64 cusps"] = found
        return self._cache["f64 cusps"]

    def _no_float64_singularities(self, what: str) -> None:
        """The float64 2-D rule has fixed panels: refuse rather than miss a singularity by 1e-3."""
        if self._singular_points:
            raise DivergentIntegralError(
                f"the float64 {what} of {self.activation_name!r} does not resolve its singularity at x = "
                f"{self._singular_points[0]}; use engine='mpmath' (split there, to any precision).")

    # ---- small helpers -------------------------------------------------------------------
    @property
    def kinks(self) -> tuple:
        return self._parts.kinks

    def _kinks_mp(self):
        """Split points of the mpmath rules: the kinks and the integrable singular points."""
        return [mpmath.mpf(sympy.N(b, self.dps + 2 * _GUARD)) for b in self.kinks + self._singular_points]

    def _breakpoints_mp(self):
        """Split points of every mpmath rule: :meth:`_kinks_mp` plus the centres of the narrow
        features the formula announces (see :func:`_features`): erf(1000 (x - 0.3)) turns within
        0.001 of 0.3, where tanh-sinh must have a panel end or it does not converge."""
        return self._kinks_mp() + [self._mp(b) for b in self._feature_centres()[0]]

    def _kinks_f(self):
        return [float(b) for b in self.kinks]

    def _feature_centres(self) -> tuple:
        """Exact centres of the narrow features the formula announces (see :func:`_features`),
        other than the kinks; and their narrowest width."""
        if "features" not in self._cache:
            scale, centres = _features(self._parts.expr, self._parts.x)
            self._cache["features"] = (tuple(b for b in centres if b not in set(self.kinks)), scale)
        return self._cache["features"]

    def _homogeneous_degree(self):
        """k where phi is positively homogeneous, phi(a x) = a^k phi(x) for every a > 0 (ReLU, leaky
        ReLU, abs: k = 1; the step: k = 0; x^3 H(x): k = 3), else None (cached).  Then u -> sqrt(q) u
        scales phi(u) phi(v) by (q1 q2)^(k/2) and Q(q) by q^k, so the C map and its c-derivatives do
        not depend on q1, q2 (the arc-cosine kernels' closed forms show it)."""
        if "homogeneous" not in self._cache:
            self._cache["homogeneous"] = _homogeneous_degree(self._parts.expr, self._parts.x, self._f.mp(0))
        return self._cache["homogeneous"]

    def _probe_exponent(self) -> int:
        """k for the farthest point +-2^k where phi is evaluated to find its limits: 40, or 10 for a function of an
        exponential of x outside a log (symact's ``function_of_an_exponential``).  At 2^40, exp(-exp(x)) needs an
        exponent of 10^12 bits: GMP aborted the whole Python process ("gmp: overflow in mpz type") in
        q_map_derivative of the log-log activation 1 - exp(-exp(x)).  Such a phi settles to its limit by 2^10 if it settles at all."""
        if "probe exponent" not in self._cache:
            fast = function_of_an_exponential(self._parts.expr, (self._parts.x,), passes=_TAME_FUNCTIONS)
            self._cache["probe exponent"] = 10 if fast else 40
        return self._cache["probe exponent"]

    def _saturation(self):
        """``(L-, L+, X)`` when phi tends to finite limits at -inf and +inf fast, else None (cached).

        ``L-, L+`` are phi(-+2^40) (2^10, see :meth:`_probe_exponent`; floats), and ``X = 2^k <= 4096`` is
        where the tail becomes negligible:
        ``|x|^3 |phi(x) - L+-| <= 1e-20`` at every ``x = +-2^j``, ``k <= j <= 40``.  Saturating activations
        (tanh, erf, sigmoid, hard tanh) pass; ones that grow (softplus), oscillate (sin) or approach their
        limits algebraically (softsign, ``1 - 1/x``) do not."""
        if "saturation" not in self._cache:
            f = self._f.mp(0)
            found = None
            try:
                with mpmath.workdps(30):
                    two = mpmath.mpf(2)
                    lims = (f(-two ** self._probe_exponent()), f(two ** self._probe_exponent()))
                    reach = _negligible_beyond(f, lims, self._probe_exponent())
                    if reach is not None and all(mpmath.isfinite(v) for v in lims):
                        found = (float(lims[0]), float(lims[1]), reach)
            except (ArithmeticError, ValueError, TypeError, FormulaError):
                found = None
            self._cache["saturation"] = found
        return self._cache["saturation"]

    def _saturation_moments(self):
        """Upper bounds of ``M0 = int |psi|`` and ``M1 = int |x psi(x)| dx`` over the real line, where
        ``psi(x) = phi(x) - L+-`` (the limit on x's side) is what a saturating phi differs from its limit
        step function by (float64 rule, times 2 for safety; cached)."""
        if "saturation moments" not in self._cache:
            lo, hi, X = self._saturation()
            g = self._f.np(0)

            def psi(t):
                return np.abs(g(t) - np.where(t > 0, hi, lo))
            bps, _ = self._float64_features()
            e0, e1 = self._absolute_moments(psi, X, (0, 1), sorted(set(bps) | {0.0}))
            self._cache["saturation moments"] = (e0, e1)
        return self._cache["saturation moments"]

    def _saturated_kernel_f64(self, cs: np.ndarray, q1: float, q2: float):
        """``E[phi(u) phi(v)]`` at large q for a saturating phi (see :meth:`_saturation`), or None.

        With ``A = (L+ - L-)/2``, ``B = (L+ + L-)/2`` and ``psi = phi - B - A sign``, exactly
        ``K = B^2 + A^2 (2/pi) asin c + B (E psi(u) + E psi(v)) + E psi(u) E psi(v) + R``,
        ``R = A (E[sign(u) psi(v)] + E[psi(u) sign(v)]) + Cov(psi(u), psi(v))`` (Sheppard's arcsine law for
        the sign part), and ``|R| <= (|A| |c| M1 (1/q1 + 1/q2) + M0^2 / sqrt(q1 q2)) / (pi s)``,
        ``s = sqrt(1 - c^2)`` (``|erf t| <= 2|t|/sqrt(pi)`` and the densities' maxima).  Where that bound
        is below 1e-15 of ``|K|``, K without R is the kernel to float64 precision: two 1-D integrals
        instead of the 2-D rule, whose panels graded towards x = 0 in both variables cost (log q)^2
        (tanh at q = 1e100: 2 s a point).  ``B^2 + A^2 (2/pi) asin c`` is also ``L+ L- + A^2 (2/pi)
        acos(-c)``: the form that cancels less is summed (the normal cdf near c = -1: 1/4 - 0.2498).
        Returns an array like ``cs`` with nan where the bound does not hold (``c = +-1``, moderate q),
        or None when phi does not saturate."""
        if self._saturation() is None or self._singular_points:
            return None
        # the bound is ~1/q: not worth the moments below q = 1e16 (the 2-D rule is fast there)
        if min(q1, q2) < 1e16:
            return None
        lo, hi, _ = self._saturation()
        a, b = (hi - lo) / 2, (hi + lo) / 2
        m0, m1 = self._saturation_moments()
        p1, p2 = self._saturation_mean(q1), self._saturation_mean(q2)
        cs = np.asarray(cs, dtype=np.float64)
        s = np.sqrt(np.maximum((1 - cs) * (1 + cs), 0.0))
        common = b * (p1 + p2) + p1 * p2
        forms = [(b * b, a * a * (2 / math.pi) * np.arcsin(cs)),
                 (hi * lo, a * a * (2 / math.pi) * np.arccos(-cs))]
        sizes = [abs(t0) + np.abs(t1) + abs(b * (p1 + p2)) + abs(p1 * p2) for t0, t1 in forms]
        k = [t0 + t1 + common for t0, t1 in forms]
        best = np.where(sizes[0] * np.abs(k[1]) <= sizes[1] * np.abs(k[0]), 0, 1)
        k = np.where(best == 0, k[0], k[1])
        size = np.where(best == 0, sizes[0], sizes[1])
        with np.errstate(divide="ignore", invalid="ignore"):
            bound = (abs(a) * np.abs(cs) * m1 * (1 / q1 + 1 / q2)
                     + m0 * m0 / (math.sqrt(q1) * math.sqrt(q2))) / (math.pi * s)
        # R negligible, and the sum keeps its digits (no more than one lost to cancellation)
        ok = (s > 0) & (bound <= _SATURATION_TOLERANCE * np.abs(k)) & (size <= 10 * np.abs(k))
        return np.where(ok, k, np.nan)

    def _saturated_slope_f64(self, c: float, q1: float, q2: float):
        """``sqrt(q1 q2) E[phi'(u) phi'(v)]`` at large q for a saturating, continuous phi, or None.

        Price's integrand ``phi'(x) phi'(y) p(x, y)`` lives where |x|, |y| ~ 1, where the density is its
        peak ``P = 1/(2 pi sqrt(q1 q2) s)`` times ``exp(-t)``, ``0 <= t <= (x^2/q1 + 2|c x y|/sqrt(q1 q2) +
        y^2/q2) / (2 s^2)``; with ``int phi' = L+ - L- = 2A`` the value is ``(2/pi) A^2 / s`` (the slope of
        the arcsine law) up to ``P (N0 N2 (1/q1 + 1/q2) + 2|c| N1^2 / sqrt(q1 q2)) / (2 s^2)``,
        ``N_k = int |x|^k |phi'(x)| dx`` (``1 - e^-t <= t``).  Used where that is below 1e-15 of the value
        (the 2-D rule took 4 s for tanh's C'(0.3; 1e100))."""
        if (self._saturation() is None or self._singular_points or self._f.jumps(0)
                or min(q1, q2) < 1e16 or self._saturation_tail(1) is None):
            return None
        lo, hi, _ = self._saturation()
        a = (hi - lo) / 2
        if a == 0:
            return None
        n0, n1, n2 = self._derivative_moments()
        s = math.sqrt(max((1 - c) * (1 + c), 0.0))
        if s == 0:
            return None
        value = (2 / math.pi) * a * a / s
        bound = (n0 * n2 * (1 / q1 + 1 / q2) + 2 * abs(c) * n1 * n1 / (math.sqrt(q1) * math.sqrt(q2))) \
            / (2 * math.pi * s * 2 * s * s)
        return value if bound <= _SATURATION_TOLERANCE * value else None

    def _saturation_tail(self, n: int):
        """``X = 2^k <= 4096`` beyond which ``|x|^3 |phi^(n)(x)| <= 1e-20`` at every ``+-2^j`` up to 2^40,
        or None (cached)."""
        key = ("saturation tail", n)
        if key not in self._cache:
            try:
                with mpmath.workdps(30):
                    found = _negligible_beyond(self._f.mp(n), top=self._probe_exponent())
            except (ArithmeticError, ValueError, TypeError, FormulaError):
                found = None
            self._cache[key] = found
        return self._cache[key]

    def _derivative_moments(self):
        """Upper bounds of ``N_k = int |x|^k |phi'(x)| dx``, k = 0, 1, 2 (float64, times 2; cached)."""
        if "derivative moments" not in self._cache:
            g = self._f.np(1)
            bps, _ = self._float64_features()
            self._cache["derivative moments"] = self._absolute_moments(
                lambda t: np.abs(g(t)), self._saturation_tail(1), (0, 1, 2), bps)
        return self._cache["derivative moments"]

    def _absolute_moments(self, h, reach: float, powers, breakpoints) -> tuple:
        """``int |x|^k h(x) dx`` over the real line for each k in ``powers``, ``h >= 0`` negligible beyond
        ``|x| = reach``, times 2 for safety (float64).  Computed as E over N(0, sigma^2), sigma = 64 reach:
        the density is >= exp(-1/8192) of its peak where h lives, so sigma sqrt(2 pi) E[.] is the integral
        to 1.3e-4."""
        sigma = 64 * reach
        _, scale = self._float64_features()
        norm = 2 * sigma * math.sqrt(2 * math.pi)
        return tuple(norm * gauss.gaussian_expectation_float64(lambda t, k=k: np.abs(t) ** k * h(t), std=sigma,
                                                                breakpoints=breakpoints, scale=scale)
                     for k in powers)

    def _saturation_mean(self, q):
        """``E[psi(sqrt(q) z)]``, ``psi = phi - L+-`` (see :meth:`_saturated_kernel_f64`), float64 (cached):
        the small difference ``E phi - (L+ + L-)/2`` at its own relative accuracy."""
        key = ("saturation mean", q)
        if key not in self._cache:
            lo, hi, _ = self._saturation()
            g = self._f.np(0)
            bps, _ = self._float64_features()
            self._cache[key] = self._e1(None, lambda t: g(t) - np.where(t > 0, hi, lo), std=math.sqrt(q),
                                        breakpoints=sorted(set(bps) | {0.0}))
        return self._cache[key]

    def _float64_features(self):
        """(break-points, scale) for the float64 rules: the kinks plus the feature centres."""
        centres, scale = self._feature_centres()
        return sorted(self._kinks_f() + [float(b) for b in centres]), scale

    def _singular_f(self):
        """Where the float64 1-D rule grades its panels geometrically: the singular points, and the cusps
        (|x|^0.3's Q took 32 and 64 nodes 5e-11 apart at 0 and was refused)."""
        return [float(b) for b in self._singular_points] + self._float64_cusps()

    def _mp(self, v):
        with mpmath.workdps(self.dps + _GUARD):
            return mpmath.mpf(sympy.N(v, self.dps + 2 * _GUARD)) if isinstance(v, sympy.Basic) else mpmath.mpf(v)

    def _out(self, v):
        if self.engine == "float64":
            return float(v)
        with mpmath.workdps(self.dps):
            return +mpmath.mpf(v)

    def _closed_eval(self, key, expr, **vals):
        """Evaluate a closed-form expression at dps digits (limit from inside where it is 0/0)."""
        syms = sorted(expr.free_symbols, key=str)
        if key not in self._lambdified:
            self._lambdified[key] = (syms, sympy.lambdify(syms, expr, modules=MPMATH_MODULES))
        syms, fn = self._lambdified[key]
        with mpmath.workdps(self.dps + _GUARD):
            args = [self._mp(vals[s.name]) for s in syms]
            try:
                v = fn(*args)
                if isinstance(v, mpmath.mpc):
                    v = v.real if abs(v.imag) < mpmath.eps * 100 else mpmath.nan
            except (ZeroDivisionError, ValueError):
                v = mpmath.nan
            if not mpmath.isfinite(v):
                sub = {sympy.Symbol(k, **({"real": True} if k == "c" else {"positive": True})): sympy.nsimplify(vv)
                       for k, vv in vals.items() if k != "c"}
                e = expr.subs(sub)
                lim = sympy.limit(e, C_SYM, sympy.nsimplify(vals["c"]), "-" if vals["c"] >= 0 else "+") \
                    if "c" in vals else e
                v = self._mp(lim) if lim.is_finite else mpmath.inf
            return v

    def _e1(self, fn_mp, fn_np, *, std, breakpoints=None, mean=0, with_mass=False):
        """E[fn(mean + std z)] by the current numeric engine (float64 or mpmath); float64 with
        ``with_mass``: ``(value, E|fn|)``, see :func:`gauss.gaussian_expectation_float64`."""
        if self.engine == "float64":
            bps, scale = self._float64_features()
            return gauss.gaussian_expectation_float64(fn_np, mean=float(mean), std=float(std),
                                                      breakpoints=bps if breakpoints is None else breakpoints,
                                                      singular_points=self._singular_f(), scale=scale,
                                                      with_mass=with_mass)
        if breakpoints is None:   # kinks, singular points, and the centres of narrow features
            breakpoints = self._breakpoints_mp() + _scale_points(std)
        return gauss.gaussian_expectation(fn_mp, dps=self.dps + _GUARD, breakpoints=breakpoints,
                                          mean=mean, std=std).value

    # ---- Q map ---------------------------------------------------------------------------
    @_at_precision
    def q_map(self, q) -> Any:
        """``Q(q) = E[phi(sqrt(q) z)^2]``: the output q value of a layer whose input q value is q."""
        _check_q(q)
        key = ("Q", q)
        if key not in self._cache:
            if self.engine == "closed":
                v = self._closed_eval("Q", self.closed_form.q_map, q=q)
            else:
                f, g = self._f.mp(0), self._f.np(0)
                v = self._e1(lambda t: f(t) ** 2, lambda t: g(t) ** 2,
                             std=(math.sqrt(q) if self.engine == "float64" else mpmath.sqrt(self._mp(q))))
            if v == 0:
                if self.engine == "float64":
                    self._raise_float64_zero_q(q)
                raise DomainError(
                    f"Q({q}) = 0 for {self.activation_name!r}: the activation vanishes almost "
                    "everywhere, so the C map (normalised by Q) is undefined.")
            self._cache[key] = v
        return self._out(self._cache[key])

    def _raise_float64_zero_q(self, q) -> None:
        """The float64 rule's Q(q) came out 0: say why, from a 15-digit mpmath Q over the whole line.  Either phi
        vanishes almost everywhere, or Q underflows float64 (hardshrink at q = 1e-4: Q = 5e-546, and the step
        H(x - 50) at q = 1: 2e-545, were both said to vanish), or phi^2 lives beyond the rule's 12 standard
        deviations (relu(x - 1/2) at q = 1e-3: Q = 1e-61)."""
        f = self._f.mp(0)
        std = mpmath.sqrt(self._mp(q))
        try:
            exact = gauss.gaussian_expectation(lambda t: f(t) ** 2, dps=15, std=std,
                                               breakpoints=self._breakpoints_mp() + _scale_points(std)).value
        except SymactError:   # no verdict: name both causes
            exact = None
        if exact == 0:
            raise DomainError(
                f"Q({q}) = 0 for {self.activation_name!r}: the activation vanishes almost everywhere, so the "
                "C map (normalised by Q) is undefined.")
        if exact is not None and exact < sys.float_info.min:
            raise DomainError(
                f"Q({q}) = {mpmath.nstr(exact, 3)} for {self.activation_name!r} underflows float64 (its smallest "
                f"normal number is {sys.float_info.min:.1e}): phi^2 is nonzero only where the N(0, q) density is "
                "below float64's range; use engine='mpmath', which has no exponent limit.")
        cause = ("phi^2 is nonzero only beyond 12 standard deviations, where the float64 rule does not reach" if exact
                 is None else f"Q({q}) is {mpmath.nstr(exact, 3)}, all of it beyond 12 standard deviations, where the "
                 "float64 rule does not reach")
        raise DomainError(
            f"Q({q}) came out 0 in float64 for {self.activation_name!r}: "
            + ("either the activation vanishes almost everywhere (then the C map, normalised by Q, is undefined), or "
               if exact is None else "") + cause + "; use engine='mpmath', which integrates the whole line.")

    @_at_precision
    def q_map_derivative(self, q, n: int = 1) -> Any:
        """``d^n Q / dq^n``.

        For ``q >= 1``: ``E[phi(sqrt(q) z)^2 He_{2n}(z)] / (2q)^n`` (exact heat-equation identity).
        For ``q < 1`` that form cancels: ``phi(sqrt(q) z)^2 = O(q)`` against ``He_{2n}``, losing
        ``(n - 1) log10(1/q)`` digits (tanh's third derivative at q = 1e-10 came out 32071, not 34).
        There, ``E[g^(2n)(x)] / 2^n`` with ``g = phi^2`` and ``x ~ N(0, q)`` (the heat equation
        again, differentiated under the integral) has no cancellation; jumps ``J`` of ``g^(m)`` at a
        kink ``b`` enter exactly as ``E[J delta^(k)(x - b)] = J q^(-k/2) He_k(b/sqrt q) p_q(b)``,
        ``k = 2n - 1 - m``.  Activations with integrable singularities keep the first form at all
        q, with ``n log10(1/q)`` more guard digits (mpmath) or a DivergentIntegralError when the
        float64 cancellation exceeds its tolerance; so do those whose formula for ``g^(2n)`` (or that of a lower
        order) has more than :data:`FORMULA_MAX_NODES` nodes (SymPy's derivatives of tanh^2 grow 1.8 times per
        order: tanh's Q^(n) takes the first form for ``n >= 6``).  The first form needs no derivative of phi, so
        at ``q >= 1`` a high order costs about what ``n = 1`` does.  The closed engine differentiates its closed
        Q under the same limit on the formula's size (erf: ``n <= 7``) and takes the mpmath engine's value beyond.

        The mpmath engine adds guard digits for the digits the first form cancels, until the value has ``dps``
        of its own; a value that has no certain digit even with ``2 (dps + 10)`` working digits, i.e. below
        ``10^-(2 dps + 18)`` of ``E|phi^2 He_2n| / (2q)^n``, is returned as 0 (x exp(-x^2/2)'s ``Q'(1)``, exactly
        0: ``Q(q) = q (1 + 2q)^(-3/2)``).
        """
        _check_q(q)
        if not is_integer_valued(n) or n < 0:
            raise DomainError(f"n={n!r}: derivative order must be a non-negative integer.")
        n = int(n)
        if n == 0:
            return self.q_map(q)
        if self.engine == "closed":
            form = self._closed_q_derivative(n)
            if form is not None:
                return self._out(self._closed_eval(("dQ", n), form, q=q))
            # its formula is too big to build: the mpmath engine's He form (exact, at dps digits)
            return self._out(self._quadrature_twin().q_map_derivative(q, n))
        # (phi^2)^(2n) = 0 off the kinks (ReLU, leaky ReLU, abs: Q linear in q): the direct form is
        # exact deltas only, at any q; the He form returned rounding noise for the zero Q''
        direct = self._phi2_derivative_vanishes(2 * n) or (q < 1 and self._direct_form_applies(2 * n))
        if direct and self.engine != "float64":
            return self._out(self._q_map_derivative_direct(q, n))
        f = self._f.mp(0)
        if self.engine == "float64":
            if direct:
                return self._q_map_derivative_f64_small_q(q, n)
            v, mass = self._q_map_derivative_he_f64(q, n)
            # Q^(n) can be far below the integrand at q >= 1 too: sin's Q'(q) = e^(-2q) came out 3e8
            # times too large at q = 30 (E|sin^2 He_2| ~ 1), silently.  There the worst-case bound
            # (2 ulps of E|.| all adding up) may reach 1e-10: tanh's Q'(1e8) keeps 8e-5 of E|.| and
            # agrees with mpmath to 1e-12 (rounding errors do not all add up)
            if not _f64_cancellation_ok(v, mass, 10 if q < 1 else 1000):
                if self._direct_form_applies(2 * n):
                    return self._q_map_derivative_f64_small_q(q, n)   # the better form, or raises
                raise DivergentIntegralError(
                    f"the float64 Q^({n})({q}) of {self.activation_name!r} cancels: E[phi^2 He_{2 * n}] is "
                    f"{abs(v) / mass:.1e} of E|phi^2 He_{2 * n}|, below float64 resolution for the "
                    f"tolerance{self._why_no_direct_form(2 * n)}; use engine='mpmath' (it adds guard digits for "
                    "the cancellation).")
            return v
        extra = int(math.ceil(n * math.log10(1 / float(q)))) if q < 1 else 0
        mass = self._q_map_derivative_he_mass(q, n)
        # at large q phi(x) turns on its own scale |x| ~ 1, a width 1/sqrt(q) in z: panel ends there
        # (tanh's Q'(1e200) had 8 correct digits of 30 with the one split at 0)
        breakpoints = self._breakpoints_mp() + _scale_points(math.sqrt(float(q))) + self._limit_breakpoints(q)
        tries = 8
        for attempt in range(tries):
            with mpmath.workdps(self.dps + _GUARD + extra):
                qq = self._mp(q)
                r = mpmath.sqrt(qq)
                limit = self._phi2_limit_mp(q)
                try:
                    v = gauss.gaussian_expectation(lambda t: (f(t) ** 2 - limit(t)) * _he(2 * n, t / r),
                                                   dps=self.dps + _GUARD + extra, breakpoints=breakpoints,
                                                   std=r).value / (2 * qq) ** n
                except DivergentIntegralError:
                    # too few digits for the cancellation (tanh's Q'(1e250) loses 125): the rule's
                    # own check fails before the loss can be measured; retry with more digits
                    if mass is None or attempt == tries - 1:
                        raise
                    extra = 2 * extra + self.dps
                    continue
            # digits lost to cancellation: log10(E|phi^2 He_2n| / |E[phi^2 He_2n]|) (sin's
            # Q'(60) = e^-120 against E|.| ~ 1 lost 52 of 30 digits: 174 times too large)
            if mass is None or v == 0:
                break
            lost = int(math.ceil(float(mpmath.log10(mpmath.mpf(mass) / abs(v)))))
            if lost <= extra + _GUARD - 2:
                break
            digits = self.dps + _GUARD + extra
            if lost >= digits - 2 and digits >= 2 * (self.dps + _GUARD):
                # no digit of v is certain (the rule keeps `digits` digits of E|.|), with twice the working digits:
                # Q^(n) is 0 to 10^-(2 dps + 18) of its scale.  x exp(-x^2/2)'s Q'(1), exactly 0, chased its own
                # rounding noise (each retry's value the previous one's noise floor) through 8 tries, up to 472
                # digits in 20 s, and returned -2.6e-481 as if it had dps digits
                v = mpmath.mpf(0)
                break
            extra = lost + 2
        return self._out(v)

    # The He form E[phi^2 He_2n(x / sqrt q)] is unchanged when a step L(x) = L+^2 (x > 0), L-^2 (x < 0) is
    # subtracted from phi^2 (E[He_2n] = E[sign(z) He_2n(z)] = 0, n >= 1).  For a saturating phi (L+- its
    # limits) phi^2 - L lives where |x| ~ 1 and the form no longer cancels: E|phi^2 He_2n| ~ 1 against a
    # value ~ 1/sqrt(q) lost log10(sqrt q) digits (tanh's Q'(1e300) retried at up to 178 digits, 130 s).
    # Only at q >= 1, where E|phi^2 He_2n| ~ 1 cancels: at small q phi(sqrt(q) z)^2 is O(q) and it is L
    # that would cancel against He_2n.
    def _phi2_limit_mp(self, q):
        """L(x) at the working precision (0 when phi does not saturate, or q < 1)."""
        if self._saturation() is None or q < 1:
            return lambda t: 0
        f, far = self._f.mp(0), mpmath.mpf(2) ** self._probe_exponent()
        lo, hi = f(-far) ** 2, f(far) ** 2
        return lambda t: hi if t > 0 else lo

    def _phi2_limit_f64(self, q):
        """L(x) on float64 arrays (0 when phi does not saturate, or q < 1)."""
        if self._saturation() is None or q < 1:
            return lambda t: 0.0
        lo, hi, _ = self._saturation()
        return lambda t: np.where(t > 0, hi * hi, lo * lo)

    def _limit_breakpoints(self, q) -> list:
        """[0.0] where L is subtracted and jumps (L+^2 != L-^2), else []."""
        sat = self._saturation()
        return [0.0] if q >= 1 and sat is not None and sat[0] ** 2 != sat[1] ** 2 else []

    def _q_map_derivative_he_mass(self, q, n: int):
        """``E|phi^2 He_2n(x/sqrt q)| / (2q)^n`` roughly (float64 rule), the scale of the integrand
        of the He form; None where float64 cannot evaluate it."""
        try:
            g = self._f.np(0)
            he = np.polynomial.hermite_e.HermiteE.basis(2 * n)
            r = math.sqrt(float(q))
            bps, scale = self._float64_features()
            # the zeros of He_2n, where |.| kinks: the Gauss nodes (a symmetric eigenproblem, so real; hermeroots
            # came out complex with zero imaginary parts on some NumPy versions, and float() warned each time)
            zeros = np.polynomial.hermite_e.hermegauss(2 * n)[0]
            bps = sorted(bps + [float(z) * r for z in zeros] + self._limit_breakpoints(q))
            limit = self._phi2_limit_f64(q)
            m = gauss.gaussian_expectation_float64(lambda t: np.abs((g(t) ** 2 - limit(t)) * he(t / r)), std=r,
                                                   breakpoints=bps, scale=scale)
        except Exception:   # noqa: BLE001 -- an estimate only; the quadrature below is the result
            return None
        # (2q)^n in mpmath: in float64 it overflowed at q = 1e308, the mass became 0 and was dropped,
        # so no guard digits were added and tanh's Q'(1e308) came out 1e100 times too large
        m = mpmath.mpf(float(m)) / (2 * mpmath.mpf(q)) ** n
        return m if mpmath.isfinite(m) and m > 0 else None

    def _q_map_derivative_he_f64(self, q, n: int):
        """float64 ``(E[phi^2 He_2n(x/sqrt q)], E|phi^2 He_2n|) / (2q)^n``, ``x ~ N(0, q)``."""
        g = self._f.np(0)
        he = np.polynomial.hermite_e.HermiteE.basis(2 * n)
        r = math.sqrt(q)
        limit = self._phi2_limit_f64(q)
        bps = sorted(self._float64_features()[0] + self._limit_breakpoints(q))
        v, mass = self._e1(None, lambda t: (g(t) ** 2 - limit(t)) * he(t / r), std=r, with_mass=True,
                           breakpoints=bps)
        for _ in range(n):   # one factor at a time: (2q)^n overflowed (a bare OverflowError for Q''(1e160))
            v, mass = v / (2 * q), mass / (2 * q)
        return v, mass

    def _q_map_derivative_f64_small_q(self, q, n: int):
        """float64 ``d^n Q/dq^n`` at ``q < 1`` by whichever form loses fewer digits.  The direct
        form ``E[(phi^2)^(2n)] / 2^n`` has no cancellation for tanh-like phi at small q, but for a
        steep phi (``erf(1000 (x - 0.3))``) ``(phi^2)^(2n)`` is ``+-a^(2n)`` on both sides of the
        feature and ``E|.|`` exceeds the mean by 1e12 (Q''(0.9) came out 51% off, passing the rule's
        convergence test, which is relative to ``E|.|``); the He form cancels only
        ``(n - 1) log10(1/q)`` digits there.  Neither within float64 resolution: DivergentIntegralError."""
        v, mass = self._q_map_derivative_direct(q, n)
        if mass <= 10 * abs(v):    # <= 1 digit lost: the rule's own 1e-13 of E|f| is within 1e-12
            return v
        vh, mh = self._q_map_derivative_he_f64(q, n)
        if mh * abs(v) < mass * abs(vh):     # (mh / |vh| < mass / |v|, safe for zeros)
            v, mass = vh, mh
        if not _f64_cancellation_ok(v, mass):
            raise DivergentIntegralError(
                f"the float64 Q^({n})({q}) of {self.activation_name!r} cancels both ways: "
                f"E[(phi^2)^({2 * n})] / 2^{n} and E[phi^2 He_{2 * n}] / (2q)^{n} lose more digits than float64 "
                f"has for the tolerance (the better keeps {abs(v) / mass:.1e} of its E|.|); use "
                "engine='mpmath' (it works with guard digits).")
        return v

    def _phi2(self) -> "_Funcs":
        """g = phi^2 and its regular derivatives / jumps (for the q-derivatives at small q)."""
        if "phi2" not in self._cache:
            p = self._parts
            self._cache["phi2"] = _Funcs(_Parts(p.name + "^2", p.x, p.expr**2, p.kinks), digits=self.dps + 3 * _GUARD,
                                          cse=True, square_of=self._f)
        return self._cache["phi2"]

    def _closed_q_derivative(self, n: int):
        """d^nQ/dq^n of the closed form while its formula and those of the lower orders have at most
        :data:`FORMULA_MAX_NODES` nodes, else None (cached)."""
        return self._closed_derivative(n, "closed dQ", self.closed_form.q_map, Q_SYM)

    def _closed_c_derivative(self, n: int):
        """d^nC/dc^n of the closed form, as :meth:`_closed_q_derivative`."""
        return self._closed_derivative(n, "closed dC", self.closed_form.c_map, C_SYM)

    def _closed_derivative(self, n: int, key: str, formula, symbol):
        """The n-th derivative of ``formula`` in ``symbol`` within :data:`FORMULA_MAX_NODES` (see
        :func:`_derivative_within_budget`), else None; the orders are cached under ``key``.  Built one order
        at a time: SymPy's ``diff(C, c, n)`` expands the n-th derivative of each product by Leibniz's rule at
        once, and took 26 s for erf's C^(40) (one order at a time: 2 s; the formulas grow linearly with the
        order for every closed form known, 1139 nodes at order 30 for erf's)."""
        forms = self._cache.setdefault(key, [formula])

        def derivative(k):
            while len(forms) <= k:
                forms.append(sympy.diff(forms[-1], symbol))
            return forms[k]
        return _derivative_within_budget(self._cache.setdefault(key + " budget", {}), derivative, n)

    def _quadrature_twin(self) -> "KernelMaps":
        """The mpmath engine's maps of the same phi at the same dps (the closed engine's fallback where a
        formula of its own would be too big to build)."""
        if "quadrature twin" not in self._cache:
            self._cache["quadrature twin"] = KernelMaps(self._parts, self.dps, "mpmath")
        return self._cache["quadrature twin"]

    def _phi_derivative(self, m: int):
        """phi^(m) (its regular part) while its formula and those of the lower orders have at most
        :data:`FORMULA_MAX_NODES` nodes, else None.  SymPy's derivatives of tanh grow 1.8 times per order
        (12967 nodes at m = 13; tanh's float64 C^(20)(0) ran 87 s into a RecursionError compiling phi^(20)),
        mish's about 1.5 times; most phi's grow linearly (sigmoid, GELU, erf: 195 nodes at m = 28)."""
        return _derivative_within_budget(self._cache.setdefault("phi budget", {}), self._f.expr, m)

    def _phi_derivative_is_even(self, m: int) -> bool:
        """Whether phi^(m), as a distribution (the deltas of lower derivatives' jumps included), is even, so that
        phi^(m + 1) is odd and E[phi^(m + 1)(u)] = 0 (a sufficient test).

        Judged on phi^(j), j <= m, whose regular part is the whole distribution: no lower derivative jumps (a jump
        of phi^(i) puts delta^(j - 1 - i) in phi^(j)).  The regular part alone misleads above that: the step's
        phi'' is 0 off its kink, even, yet phi'' = delta' is odd, and its C^(3)(0) = 1/pi came out 0 (so did
        hardshrink's).  The derivative of an even distribution is odd and that of an odd one even, so phi^(m) is
        even where phi^(j) is even and m - j even, or odd and m - j odd: j is the highest such order whose
        formula (and those below it) stays within :data:`FORMULA_MAX_NODES`; an odd phi^(j) may have a constant
        added (the step is 1/2 plus an odd function), which phi^(m), m > j, does not see (phi^(m) is also even
        where phi^(j) is even plus a multiple of x, which this does not see)."""
        j = 0
        while j < m and self._phi_derivative(j + 1) is not None and not (self.kinks and self._f.jumps(j)):
            j += 1
        if (m - j) % 2 == 0:
            return self._derivative_is_even(j)
        return self._derivative_is_even(j, odd=True, plus_constant=True)   # (m > j: phi^(m) drops the constant)

    def _phi_derivative_limit_clause(self) -> str:
        """Why phi^(n) past :data:`FORMULA_MAX_NODES` is not built, as a clause for an error message."""
        highest = self._cache["phi budget"]["limit"] - 1
        return (f"SymPy's formula for it has over {FORMULA_MAX_NODES} nodes (it grows exponentially with the "
                f"order for this phi: n = {highest} is the highest order it serves)")

    def _phi2_derivative_vanishes(self, m: int) -> bool:
        """Whether (phi^2)^(m) is 0 off the kinks: phi is a piecewise polynomial (sums, products and whole
        powers of x, Max, Min, Abs, sign, Heaviside, Piecewise) of degree below m/2.  Anything else is taken
        as not vanishing without differentiating: that took 13 s at m = 14 for tanh (see :meth:`_phi2_direct_form`)."""
        key = ("phi2 vanishes", m)
        if key not in self._cache:
            x = self._parts.x
            polynomial = all(
                not (isinstance(node, sympy.Pow) and node.base.has(x) and not (node.exp.is_Integer and node.exp >= 0))
                and not (isinstance(node, sympy.Function) and node.has(x) and not isinstance(node, _PIECEWISE_FUNCS))
                for node in sympy.preorder_traversal(self._parts.expr))
            self._cache[key] = polynomial and self._phi2().expr(m) == 0
        return self._cache[key]

    def _phi2_direct_form(self, m: int):
        """(phi^2)^(m) (its regular part) while its formula and those of the lower orders have at most
        :data:`FORMULA_MAX_NODES` nodes, else None."""
        return _derivative_within_budget(self._cache.setdefault("phi2 direct budget", {}), self._phi2().expr, m)

    def _direct_form_applies(self, m: int) -> bool:
        """Whether the direct form E[(phi^2)^(m)] of the q-derivatives can be used: no singular point, a formula
        within :data:`FORMULA_MAX_NODES` nodes, and no real singularity in it."""
        return (not self._singular_points and self._phi2_direct_form(m) is not None
                and self._phi2_derivative_regular(m))

    def _why_no_direct_form(self, m: int) -> str:
        """Why :meth:`_direct_form_applies` is False, as a clause for an error message ('' where it applies)."""
        if self._singular_points:
            return f" (phi is singular at x = {self._singular_points[0]})"
        if self._phi2_direct_form(m) is None:
            highest = (self._cache["phi2 direct budget"]["limit"] - 1) // 2
            return (f", and the form without cancellation, E[(phi^2)^({m})] / 2^{m // 2}, is not used: SymPy's formula "
                    f"for (phi^2)^({m}) has over {FORMULA_MAX_NODES} nodes (it grows exponentially with the order "
                    f"for this phi: n = {highest} is the highest order it serves)")
        if not self._phi2_derivative_regular(m):
            return f" ((phi^2)^({m}) has a real singularity)"
        return ""

    def _phi2_derivative_regular(self, m: int) -> bool:
        """True when the regular part of (phi^2)^(m) has no real singularity (conservatively: no
        negative or fractional power, and no log, of anything SymPy cannot prove nonzero on the real
        line).  x^4 log|x| is finite, but its 6th derivative has 1/x^2: not integrable, so the
        derivative form of q_map_derivative does not apply there."""
        key = ("phi2 regular", m)
        if key not in self._cache:
            x = self._parts.x
            suspects = set()
            for node in sympy.preorder_traversal(self._phi2().expr(m)):
                if isinstance(node, sympy.Pow) and node.base.has(x) and not (node.exp.is_integer and node.exp >= 0):
                    suspects.add(node.base)
                elif isinstance(node, sympy.log) and node.args[0].has(x):
                    suspects.add(node.args[0])
            regular = True
            for base in suspects:
                try:
                    zeros = sympy.solveset(base, x, sympy.S.Reals)
                except (NotImplementedError, TypeError, ValueError):
                    zeros = None
                if zeros is not sympy.S.EmptySet:
                    regular = False
                    break
            self._cache[key] = regular
        return self._cache[key]

    def _q_map_derivative_direct(self, q, n: int):
        """``E[g^(2n)(x)] / 2^n``, ``g = phi^2``, ``x ~ N(0, q)``, deltas of ``g^(2n)`` exact.
        float64: ``(value, mass)``, ``mass = E|g^(2n)| / 2^n`` (0 when ``g^(2n)`` is 0 off the kinks)."""
        gf = self._phi2()
        F64 = self.engine == "float64"
        r = math.sqrt(q) if F64 else mpmath.sqrt(self._mp(q))
        if gf.expr(2 * n) == 0:     # piecewise polynomial phi^2 (ReLU): only the exact deltas
            v, mass = 0, 0.0
        elif F64:
            v, mass = self._e1(None, gf.np(2 * n), std=r, with_mass=True)
        else:
            v = self._e1(gf.mp(2 * n), None, std=r)
        with mpmath.workdps(self.dps + _GUARD):
            qq = self._mp(q)
            rr = mpmath.sqrt(qq)
            deltas = mpmath.mpf(0)
            for m in range(2 * n):
                k = 2 * n - 1 - m
                for b, J in gf.jumps(m):
                    bb = self._mp(b)
                    deltas += J * _he(k, bb / rr) * _normal_pdf_mp(bb, qq) / rr**k
            if F64:
                return (v + float(deltas)) / 2**n, mass / 2**n
            return (v + deltas) / 2**n

    # ---- unnormalised kernels ------------------------------------------------------------
    def _q_raw(self, qv):
        """Q(q) as computed (with the guard digits), or 1 where Q(q) = 0 (nothing to scale)."""
        try:
            self.q_map(qv)
        except DomainError:
            return mpmath.mpf(1)
        return self._cache[("Q", qv)]

    def _hermite(self, qv, n, extra: int = 0, verify: bool = False) -> tuple[list, Any, int]:
        """Hermite coefficients of z -> phi(sqrt(q) z) computed with at least ``extra`` more digits, their
        absolute error bound, and the extra digits they carry.  ``verify``: from a rule verified against one
        with twice the nodes, whose bound covers the rule's own error too (see gauss.hermite_coefficients;
        ~3 times the cost; :meth:`_served_hermite` says whether the list serving a request is).

        Cached per q: a list with at least as many terms and digits serves the request.  A list too
        short is recomputed at half again the length asked for, with the digits it had: the cost grows
        slowly with the length (the nodes' phi values dominate), and Mehler's sums ask for 64, 84, 109,
        129 terms in turn (x exp(-x^2) at q = 1e100 recomputed four lists twice each, at 0 and 31 extra
        digits: 15 s, now 8 s)."""
        # several lists per q: a long one at the base digits, and a short verified one (~3 times the cost per
        # term: asked for by a sum that cancels, for the terms it needs only); a verified list, then the one
        # with the most digits, serves
        entries = self._cache.setdefault(("herm", qv), [])
        served = self._served_hermite(qv, n, extra, verify)
        if served is not None:
            have, bound, extra, _ = served
            return have[:n], bound, extra
        length = n
        short = [e for e in entries if e[2] >= extra and e[3] >= verify]
        if short:
            longest = max(short, key=lambda e: len(e[0]))
            length, extra, verify = max(n + n // 2, len(longest[0])), longest[2], longest[3]
        f = self._f.mp(0)
        with mpmath.workdps(self.dps + _GUARD + extra):
            r = mpmath.sqrt(self._mp(qv))
            bps = [b / r for b in self._breakpoints_mp()]
            # phi(r z) varies on a scale s/r in z around 0, the kinks and the feature centres
            # (s = 1, or the feature width: 0.001 for erf(1000 (x - 0.3))): the rule's fixed
            # half-unit panels miss that for large q (1e-4 wrong at q = 1e4) or a narrow feature
            # (a_0 of erf(1000 (x - 0.3)) 1.5e-4 wrong), so grade the panels geometrically from
            # width s/(16 r) up to 1 there
            scale = self._feature_centres()[1]
            bps += gauss._graded_edges([mpmath.mpf(0)] + bps, scale / (16 * r))
            # Gauss-Legendre next to an integrable singularity (log|x|) converges only with
            # panels graded down to widths whose mass is below 10^-dps: 10^-2(dps+guard)
            # covers log and |x|^-a for a <= 1/2
            # ... and so next to a cusp, where phi is finite but phi' is not (|x|**(3/10) at 0: with even
            # panels its rule's E[phi^2] was 2e-8 off, and C(0.5) at q = 2 had 6 of 30 digits)
            singular = [self._mp(b) / r for b in self._singular_points + self._cusp_points()]
            bps += gauss._smoothed_kink_edges(singular, mpmath.mpf(10) ** (-2 * (self.dps + _GUARD)))
            # the rule sums in fixed point (absolute error ~10^-(dps + guard)): give it phi / sqrt(Q(q)),
            # of unit norm, and scale back, or a small phi(sqrt(q) z) drowns (tanh at q = 1e-80:
            # C(0.5) = 0.49999999081 at 20 digits; at q = 1e-100 a DomainError "C = 8e204")
            q_raw = self._q_raw(qv)
            norm = mpmath.sqrt(q_raw)
            # E[(phi(r z) / norm)^2] = 1 to the digits Q(q) was computed with (dps + guard): the rule's check of
            # its second moment (see gauss.hermite_coefficients) catches a rule that does not resolve phi without
            # an integral at the extra digits (1.9 s each for x exp(-x^2) at q = 1e100), to dps + guard/2 digits:
            # the digits asked for with a margin (to dps + guard, log|x|'s rule, 2e-39 off at dps = 30, doubled
            # its nodes for digits no sum needs); where Q(q) is 0 (q_raw is then 1, not the cached Q) the check
            # integrates its own reference
            known = q_raw is self._cache.get(("Q", qv))
            coeffs, bound = gauss.hermite_coefficients(
                lambda t: f(r * t) / norm, length, dps=self.dps + _GUARD + extra, breakpoints=bps,
                with_error=True, verify=verify, second_moment=1 if known else None,
                second_moment_digits=self.dps + _GUARD // 2)
            have = [norm * v for v in coeffs]
            # absolute error of every a_k (~10^-(dps + 26) E|phi(sqrt(q) z)|): Mehler's sums check
            # their terms against it (_checked_hermite).  For a sum that cancels the rule is verified against
            # one with twice the nodes, and the bound covers its discretisation error too: the rounding bound
            # alone let exp(x)'s C(-0.8; q = 50), whose terms cancel by 1e35, through 1e8 times too large at
            # 15 digits (the extra digits asked for did not shrink the rule's error)
            bound = norm * bound
        entries[:] = [e for e in entries if not (e[2] <= extra and len(e[0]) <= length and e[3] <= verify)] + [
            (have, bound, extra, verify)]
        return have[:n], bound, extra

    def _served_hermite(self, qv, n, extra: int = 0, verify: bool = False) -> tuple | None:
        """The cached (list, bound, extra, verified) entry that serves :meth:`_hermite`'s request, or None:
        at least ``n`` terms and ``extra`` digits (and verified if asked), a verified list first, then the one
        with the most digits."""
        served = [e for e in self._cache.get(("herm", qv), [])
                  if e[2] >= extra and len(e[0]) >= n and e[3] >= verify]
        return max(served, key=lambda e: (e[3], e[2])) if served else None

    def _checked_hermite(self, qs, n, measure, what: str, c, min_extra: int = 0, verify: bool = False) -> list:
        """Hermite coefficients (one list per q in ``qs``) accurate enough for a Mehler sum:
        ``measure(lists, errs)`` gives the size the sum must be accurate relative to (its absolute value:
        a sum that cancels needs its coefficients to more digits) and the absolute error that the
        coefficients' errors put in it, which must be below 10^-(dps + 1) of it.  Where it is
        not, the coefficients are recomputed with the missing digits (and 3 more) once, up to 150
        extra digits; past that it raises.

        (x exp(-x^2) at q = 1e100: its a_k ~ 1e-50 E|phi| came out with no correct digit, and
        C(0.3) = 5.3e-148, C'(0.3) = 7.1e-148 were returned for 3.5e-151 and 1.5e-150; their error
        scales like 10^-dps, so more dps alone never closed the gap.)  ``min_extra``: start with that many
        extra digits; ``verify``: from a verified rule (see :meth:`_hermite`)."""
        extra, retried = min_extra, False
        while True:
            found = [self._hermite(qv, n, extra, verify) for qv in qs]
            lists, extra = [a for a, _, _ in found], min(e for _, _, e in found)
            terms_abs, err = measure(lists, [bound for _, bound, _ in found])
            if err <= mpmath.mpf(10) ** (-self.dps) * terms_abs / 10:
                return lists
            short = (int(mpmath.ceil(mpmath.log10(err * 10 ** (self.dps + 1) / terms_abs))) + 3
                     if terms_abs > 0 else None)
            if retried or short is None or extra + short > 150:
                break
            extra, retried = extra + short, True
        raise DomainError(
            f"{what} of {self.activation_name!r} at c={mpmath.nstr(c, 15)}, q={mpmath.nstr(qs[0], 15)}: "
            f"Mehler's series cannot carry {self.dps} digits here (it sums to {mpmath.nstr(terms_abs, 3)} "
            f"in absolute value, its error, from the Hermite coefficients' absolute accuracy, is up to "
            f"{mpmath.nstr(err, 3)} with {extra} extra digits: phi(sqrt(q) z) is concentrated where its low "
            "Hermite coefficients are tiny against E|phi|, or the series' terms cancel).  Use a closed form if one "
            "exists.")

    def _kernel_num(self, n: int, cv, qa, qb, scaled: bool = False, with_error: bool = False):
        """E[phi^(n)(u) phi^(n)(v)] with jumps of phi^(n-1) as delta functions (numeric engines).

        float64 with ``scaled``: ``(k, log_scale, error)``, the kernel being ``k * exp(log_scale)`` (log_scale 0 but
        where the plain 2-D sums underflow: see ``log_scale`` of :func:`gauss.bivariate_gaussian_expectation_float64`)
        and ``error`` an estimate of k's absolute error (nan unless ``with_error``: that costs one more evaluation of
        the 2-D rule where the kernel is not far below its Cauchy-Schwarz bound)."""
        jumps = self._f.jumps(n - 1) if n >= 1 else ()
        jumping = [i for i in range(n - 1) if self._f.jumps(i)]   # (phi^(i) jumps: delta^(n - 1 - i) in phi^(n))
        if jumping:
            unreached = [qv for qv in dict.fromkeys((qa, qb))
                         if self.engine == "mpmath" and not self._hermite_reaches(qv)]
            instead = (f"Mehler's series cannot serve either: phi(sqrt(q) z) at q = "
                       f"{mpmath.nstr(self._mp(unreached[0]), 6)} lives beyond the range of its Hermite coefficients' "
                       "rule (a kink starts a piece out there); use the closed form if one exists." if unreached else
                       f"use kernel_maps(..., engine='mpmath') (Mehler's series, for |c| <= {self.mehler_max_abs_c}) "
                       "or the closed form if one exists.")
            raise DomainError(
                f"d^{n}C/dc^{n} of {self.activation_name!r} by Price's formula needs derivatives of delta "
                f"functions (phi^({jumping[0]}) jumps), which the {self.engine} quadrature cannot integrate; the "
                f"derivative itself is finite for |c| < 1 (C is a power series in c): {instead}")
        F64 = self.engine == "float64"
        if F64:
            self._no_float64_singularities("C map")
            r = self._f.np(n)
            ra, rb = math.sqrt(qa), math.sqrt(qb)
            s = math.sqrt(max((1 - cv) * (1 + cv), 0.0))
            bps, scale = self._float64_features()
            result = gauss.bivariate_gaussian_expectation_float64(
                r, r, cv, q1=qa, q2=qb, breakpoints=bps, scale=scale, cusps=self._float64_cusps() if n == 0 else (),
                with_error=with_error, log_scale=True)
            total, error, log_scale = result if with_error else (result[0], math.nan, result[1])
            extra = []   # the delta terms, added on total's scale at the end
            pdf = lambda x, var: math.exp(-x * x / (2 * var)) / math.sqrt(2 * math.pi * var)  # noqa: E731
        else:
            # (callers are @_at_precision: we already work at dps + 10 digits)
            mehler = n == 0 and qa == qb and abs(cv) <= self.mehler_max_abs_c and self._hermite_reaches(qa)
            r = self._f.mp(n)
            qa, qb, cv = self._mp(qa), self._mp(qb), self._mp(cv)
            ra, rb = mpmath.sqrt(qa), mpmath.sqrt(qb)
            s = mpmath.sqrt((1 - cv) * (1 + cv))
            pdf = _normal_pdf_mp
            if mehler:
                total = self._mehler(cv, qa)
            elif cv == 0:   # independent u, v: two 1-D integrals (the 2-D rule took 43 s for hardshrink's C'(0) at
                # q = 1e-4, where Mehler's series cannot serve)
                total = self._e1(r, None, std=ra) * self._e1(r, None, std=rb)
            else:
                total = gauss.bivariate_gaussian_expectation(
                    r, r, cv, q1=qa, q2=qb, dps=self.dps + _GUARD, breakpoints=self._breakpoints_mp()).value
        for b, J in jumps:
            bf = float(b) if F64 else self._mp(b)
            Jf = float(J) if F64 else J
            for (qu, ru, qv_, rv) in ((qa, ra, qb, rb), (qb, rb, qa, ra)):
                # E[J delta(u - b) r(v)] = J p_u(b) E[r(v) | u = b],  v | u=b ~ N(c rv b/ru, qv s^2)
                mean = cv * rv * bf / ru
                if s == 0:
                    cond = (r(mean) if not F64 else float(r(np.array([mean]))[0]))
                elif F64:
                    cond, cond_mass = self._e1(None, r, mean=mean, std=rv * s, with_mass=True)
                    log_weight = _log_abs(Jf) - bf * bf / (2 * qu) - 0.5 * math.log(2 * math.pi * qu)
                    extra.append((Jf * pdf(bf, qu) * cond, math.copysign(1.0, Jf * cond), log_weight + _log_abs(cond),
                                  log_weight + _log_abs(cond_mass) + math.log(gauss.FLOAT64_RELATIVE_TOLERANCE)))
                    continue
                else:
                    cond = self._e1(r, None, mean=mean, std=rv * s)
                if F64:
                    log_value = _log_abs(Jf) - bf * bf / (2 * qu) - 0.5 * math.log(2 * math.pi * qu) + _log_abs(cond)
                    extra.append((Jf * pdf(bf, qu) * cond, math.copysign(1.0, Jf * cond), log_value, -math.inf))
                    continue
                total += Jf * pdf(bf, qu) * cond
            for b2, J2 in jumps:
                b2f = float(b2) if F64 else self._mp(b2)
                J2f = float(J2) if F64 else J2
                if s == 0:
                    if abs(b2f - cv * rb * bf / ra) == 0:
                        return (math.inf, 0.0, 0.0) if scaled else math.inf if F64 else mpmath.inf
                    continue
                # joint density of (u, v) at (b, b2)
                za, zb = bf / ra, b2f / rb
                dens = (math.exp if F64 else mpmath.exp)(-(za * za - 2 * cv * za * zb + zb * zb) / (2 * s * s)) \
                    / (2 * (math.pi if F64 else mpmath.pi) * ra * rb * s)
                if F64:   # (in logs too: the density underflows at far jumps, relu(x - 30)'s C''(0.1) came out 0)
                    log_dens = (-(za * za - 2 * cv * za * zb + zb * zb) / (2 * s * s)
                                - math.log(2 * math.pi * ra * rb * s))
                    extra.append((Jf * J2f * dens, math.copysign(1.0, Jf * J2f), _log_abs(Jf * J2f) + log_dens,
                                  -math.inf))
                    continue
                total += Jf * J2f * dens
        if not F64:
            return total
        if extra:
            # the delta terms (value, sign, log|value|, log of its error): added as they are where they and the 2-D
            # part are normal floats, else on a common scale e^top, from their logs
            tiny = np.finfo(np.float64).tiny
            if log_scale == 0 and all(v == 0 and lv == -math.inf or abs(v) >= tiny for v, _, lv, _ in extra) and (
                    total == 0 or abs(total) >= tiny):
                total += math.fsum(v for v, _, _, _ in extra)
                error += math.fsum(math.exp(le) for _, _, _, le in extra)
            else:
                top = max([log_scale + _log_abs(total)] + [lv for _, _, lv, _ in extra])
                if top > -math.inf:
                    to_top = math.exp(log_scale - top) if total != 0 else 0.0
                    total = total * to_top + math.fsum(sg * math.exp(lv - top) for _, sg, lv, _ in extra)
                    error = error * to_top + math.fsum(math.exp(le - top) for _, _, _, le in extra)
                    log_scale = top
        if log_scale != 0 and not scaled:
            raise DomainError(f"E[phi^({n})(u) phi^({n})(v)] at c = {cv:g} underflows float64 (e^{log_scale:.1f}).")
        return (total, log_scale, error) if scaled else total

    def _f64_scaled_ratio(self, k: float, log_scale: float, n: int, c, q1, q2, what: str) -> float:
        """``(q1 q2)^(n/2) k e^log_scale / sqrt(Q(q1) Q(q2))`` in float64 (d^nC/dc^n from Price's kernel, C at
        n = 0), the scale taken in logs where the kernel underflowed (log_scale != 0); a DomainError where the
        result itself is below float64's normal range (a subnormal keeps too few digits)."""
        if log_scale == 0:
            if n == 0:
                return k / self._norm(q1, q2)
            # one factor per input: (q1 q2)^(n/2) and Q(q1) Q(q2) under/overflow on their own (q = 1e-160)
            return (q1 ** (n / 2) / math.sqrt(self.q_map(q1))) * (q2 ** (n / 2) / math.sqrt(self.q_map(q2))) * k
        log_ratio = (log_scale + n / 2 * (math.log(q1) + math.log(q2))
                     - (math.log(self.q_map(q1)) + math.log(self.q_map(q2))) / 2)
        # (k's log joins the exponent: k e^log_ratio may be representable where e^log_ratio alone is not)
        value = math.copysign(math.exp(min(math.log(abs(k)) + log_ratio, 710.0)), k) if k != 0 else 0.0
        if not abs(value) >= np.finfo(np.float64).tiny:
            raise DomainError(
                f"{what}({c:g}; q1 = {q1:g}, q2 = {q2:g}) of {self.activation_name!r} underflows float64: it is about "
                f"{k:.3g} * e^{log_ratio:.1f}, below float64's smallest normal number 2.2e-308 (or 0). Use the mpmath "
                "engine (engine='mpmath'), which has no exponent limit.")
        return value

    def _hermite_reaches(self, qv) -> bool:
        """Whether the Hermite coefficients' rule reaches phi(sqrt(q) z), whose Mehler series then serves: at most
        10^-(dps + guard) of Q(q) lies beyond its range |z| <= Z (:func:`gauss._hermite_rule_cut`; cached).

        An activation that is zero up to a kink near or past Z does not: hardshrink (zero on |x| < 1/2) at
        q = 1e-4 lives beyond |z| = 50, and its C(0.5) raised "the Hermite coefficients' rule does not resolve f"
        (its Mehler series would need thousands of terms anyway); the 2-D rule reaches past the kinks.  Only kinks
        beyond Z / sqrt(2) can start such a piece: from one inside it, the density falls by more than
        10^-(dps + guard) before Z.  The tail is integrated only where there is one."""
        key = ("hermite reaches", qv)
        if key not in self._cache:
            with mpmath.workdps(self.dps + _GUARD):
                r = mpmath.sqrt(self._mp(qv))
                edge = gauss._hermite_rule_cut(self.dps + _GUARD) * r
                reaches = True
                if any(abs(b) >= edge / mpmath.sqrt(2) for b in self._kinks_mp()):
                    f = self._f.mp(0)
                    tail = gauss.gaussian_expectation(
                        lambda t: f(t) ** 2 if abs(t) > edge else 0 * t, dps=self.dps + _GUARD, std=r,
                        breakpoints=self._breakpoints_mp() + [-edge, edge]).value
                    reaches = tail <= mpmath.mpf(10) ** -(self.dps + _GUARD) * self._q_raw(qv)
            self._cache[key] = reaches
        return self._cache[key]

    def _mehler_terms(self, cv) -> int:
        """Terms of Mehler's series so that |c|^n < 10^-(dps + 12)."""
        # in mpmath: float(c) underflows to 0 for |c| < 1e-308 (--c 1e-400 crashed in math.log)
        n = int(math.ceil((self.dps + _GUARD + 2) * math.log(10) / -float(mpmath.log(abs(mpmath.mpf(cv)))))) + 2
        return max(n, 8)

    def _mehler(self, cv, qv):
        """sum_k a_k(q)^2 c^k with enough terms for dps + guard digits at this |c|."""
        if cv == 0:
            a, _, _ = self._hermite(qv, 1)
            return a[0] ** 2
        return self._mehler_sum(cv, qv, 0, "C")

    def _mehler_reach(self, n: int):
        """The largest |c| at which :meth:`_mehler_sum` starts the n-th derivative's series within
        :data:`MEHLER_MAX_TERMS` terms (``_mehler_terms(c) + 20 n`` of them; 0 where none is left)."""
        room = MEHLER_MAX_TERMS - 20 * n - 2
        return math.exp(-(self.dps + _GUARD + 2) * math.log(10) / room) if room > 0 else 0.0

    def _mehler_sum(self, cv, qv, n: int, what: str):
        """``sum_{k >= n} k!/(k-n)! a_k(q)^2 c^(k-n)`` (the n-th c-derivative of Mehler's series), to dps
        digits *relative to the sum*.

        The terms are summed until they are negligible relative to the sum, not only until
        ``|c|^N < 10^-(dps + 12)``: that bounds the tail by ``|c|^N Q(q)``, useless when the sum is far below
        ``Q(q)``, and wrong in practice where the a_k^2 peak at large k (cos x at q = 400: a_k^2 c^k peaks at
        k ~ 320; C(0.8) came out 1.39e-35 for 1.80e-35, C(0.5) 1.3e-82 for 1.4e-87).  Stop once the last
        eighth of the terms sums below 10^-(dps + 4) of the sum and is smaller than the eighth before it;
        else extend by half again, up to :data:`MEHLER_MAX_TERMS` terms (then DomainError).  The Hermite
        coefficients are checked against the sum too, and the sum is done with the digits it cancels (exp(x) at
        q = 30: C(-0.8) = 3.5e-24 from alternating terms up to 1e21 times larger came out 2e-11 off at dps 20)."""
        x = abs(cv)
        terms = self._mehler_terms(cv) + 20 * n
        min_extra, verify = 0, False
        # a_k = 0 exactly for every even k of an odd phi (odd k of an even one): their rounding noise and
        # error bound, ~10^-(dps + 10) of E|phi|, swamped a sum that is O(c) (tanh's C(1e-250) was refused)
        vanishing = 0 if self._derivative_is_even(0, odd=True) else 1 if self._derivative_is_even(0) else None
        while True:
            def sums(a, extra_digits=0):
                with mpmath.workdps(mpmath.mp.dps + extra_digits):
                    t = [mpmath.ff(k, n) * a[k] ** 2 * cv ** (k - n) if k % 2 != vanishing else mpmath.mpf(0)
                         for k in range(n, len(a))]
                    return t, mpmath.fsum(t), mpmath.fsum(abs(v) for v in t)

            def measure(lists, errs):   # the a_k's absolute error against the sum (it may cancel)
                (a,), (err,) = lists, errs
                _, total, _ = sums(a)
                return abs(total), mpmath.fsum(mpmath.ff(k, n) * (2 * abs(a[k]) + err) * err * x ** (k - n)
                                               for k in range(n, len(a)) if k % 2 != vanishing)
            (a,) = self._checked_hermite([qv], terms, measure, what, cv, min_extra=min_extra, verify=verify)
            _, _, its_extra, verified = self._served_hermite(qv, len(a))   # (the list just served)
            _, total, size = sums(a)
            lost = max(0, int(mpmath.ceil(mpmath.log10(size / abs(total))))) if total != 0 else 0
            t, total, size = sums(a, lost + its_extra)
            w = max(4, len(t) // 8)
            last, before = mpmath.fsum(abs(v) for v in t[-w:]), mpmath.fsum(abs(v) for v in t[-2 * w:-w])
            converged = last <= mpmath.mpf(10) ** -(self.dps + 4) * abs(total) and last <= before
            if converged and (lost < 3 or verified):
                return total
            if converged:
                # a sum that cancels by 10^lost needs the coefficients' error bound to cover the rule's own
                # error, which only a verified rule does (see _hermite): the rounding bound is too small and
                # let exp(x)'s C(-0.8; q = 30) (terms cancelling by 1e21) through 4e-22 off at 30 digits,
                # C(-0.8; q = 50) 1e8 times too large at 15.  The verified rule costs ~3 times as much per
                # term: ask only for the terms that matter (those before a tail below 10^-(dps + lost + 8) of
                # the sum, and an eighth more for the convergence test; the loop extends the list if needed)
                tail, cutoff = mpmath.mpf(0), len(t)
                threshold = mpmath.mpf(10) ** -(self.dps + lost + 8) * abs(total)
                for i in range(len(t) - 1, -1, -1):
                    tail += abs(t[i])
                    if tail > threshold:
                        break
                    cutoff = i
                terms, min_extra, verify = min(terms, n + (8 * cutoff) // 7 + 8), lost + 3, True
                continue
            if verified:   # (the unverified sum's cancellation may have been hidden by its error)
                min_extra = max(min_extra, lost + 3)
            if terms >= MEHLER_MAX_TERMS:
                raise DomainError(
                    f"{what} of {self.activation_name!r} at c={mpmath.nstr(cv, 15)}, q={mpmath.nstr(qv, 15)}: "
                    f"Mehler's series has not converged after {terms} terms (the last {w} still sum to "
                    f"{mpmath.nstr(last / abs(total) if total else mpmath.inf, 3)} of the sum). "
                    + ("Use 2-D quadrature: set mehler_max_abs_c = 0 on these maps (slow), or a closed form if one "
                       "exists." if n == 0 or self._phi_derivative(n) is not None else
                       f"2-D quadrature of Price's form cannot serve either: it needs phi^({n}), and "
                       f"{self._phi_derivative_limit_clause()}; use a closed form if one exists."))
            terms = min(MEHLER_MAX_TERMS, terms + terms // 2)

    # ---- C map ---------------------------------------------------------------------------
    @_at_precision
    def c_map(self, c, q1=1, q2=1) -> Any:
        """DKS C map ``C(c; q1, q2) = E[phi(u) phi(v)] / sqrt(Q(q1) Q(q2))`` (a cosine similarity).

        The mpmath engine uses Mehler's series when ``q1 == q2`` and ``|c| <= 0.8``
        (:attr:`mehler_max_abs_c`; Hermite coefficients at ``dps + 10`` digits, cached per q), and
        2-D quadrature otherwise (slow: 20-80 s a point at 30 digits on mpmath's pure-Python backend).
        """
        _check_c(c), _check_q(q1), _check_q(q2)
        if self.engine == "closed":
            # Q first, as the other engines: the closed C of the zero activation 0*x is 0/0 (it came out as
            # +inf, blamed on a quadrature), and its C'(1) a plain 0
            self.q_map(q1), self.q_map(q2)
            return self._unit(self._out(self._closed_eval("C", self.closed_form.c_map, c=c, q1=q1, q2=q2)))
        exact = self._exact_at_unit(c, q1, q2)
        if exact is not None:
            # only where Q(q1) is finite and nonzero: exp(x^2) returned 1 here while every
            # other c raised DivergentIntegralError (q_map is cached, so this costs nothing twice)
            self.q_map(q1)
            return self._out(exact)
        if self.engine == "float64" and self._homogeneous_degree() is not None:
            # C does not depend on q for a positively homogeneous phi: the rule at q = 1 (leaky ReLU at
            # q = 1e200 took 10 s, its panels graded down to width 1e-100 in both variables)
            q1 = q2 = 1.0
        if c == 0:   # independent u, v: E[phi(u)] E[phi(v)], two 1-D integrals, each divided by its sqrt(Q) first:
            # the product of the means underflowed (H(x - 30) at q = 1: E[phi] = Q = 4.9e-198, C(0) came out 0)
            return self._unit(self._out(self._mean(q1) / self._sqrt(self.q_map(q1))
                                        * (self._mean(q2) / self._sqrt(self.q_map(q2)))))
        else:
            k = None
            if self.engine == "float64":   # a saturating phi at large q: the arcsine law, two 1-D means
                sat = self._saturated_kernel_f64(np.array([float(c)]), float(q1), float(q2))
                if sat is not None and np.isfinite(sat[0]):
                    k = float(sat[0])
                else:
                    k = self._odd_small_c_kernel_f64(float(c), float(q1), float(q2))
            if k is None and self.engine == "float64":
                # scaled: the kernel may underflow where C does not (H(x - 30) at c = 0.1: E[phi(u) phi(v)] ~ e^-827,
                # C ~ e^-361)
                k, log_scale, _ = self._kernel_num(0, c, q1, q2, scaled=True)
                return self._unit(self._out(self._f64_scaled_ratio(k, log_scale, 0, c, q1, q2, "C")))
            if k is None:
                k = self._kernel_num(0, c, q1, q2)
        return self._unit(self._out(k / self._norm(q1, q2)))

    def _exact_at_unit(self, c, q1, q2):
        """C(1) = 1, and C(-1) = -1 for an odd phi or 1 for an even one, exactly, where q1 == q2
        (E[phi(u) phi(+-u)] = +-Q(q1)); else None.  The quadrature gave tanh's float64 C(-1) as
        -0.9999999999999999 with NumPy 2.2 and -1.0000000000000002 (then folded to -1) with 2.4."""
        if q1 != q2 or c not in (1, -1):
            return None
        if c == 1:
            return 1
        if self._derivative_is_even(0, odd=True):
            return -1
        if self._derivative_is_even(0):
            return 1
        return None

    def _odd_small_c_kernel_f64(self, c: float, q1: float, q2: float):
        """float64 ``E[phi(u) phi(v)]`` of an odd phi at tiny ``|c|`` from Mehler's first term, or None.

        For an odd phi only odd Hermite terms remain: ``K = c a_1(q1) a_1(q2) + R``, ``|R| <= |c|^3 sqrt(Q(q1) Q(q2))``
        (Cauchy-Schwarz on the rest), with ``a_1(q) = sqrt(q) E[phi'(sqrt(q) z)]`` (Stein; a jump J of phi at b
        adds ``J p_q(b)``).  Used where ``|R|`` is below 1e-13 of the value: there the 2-D rule keeps only
        ~1e-16 absolute (tanh's C(1e-16) was 7% off, erf's C(1e-20) came out -5e-35); a C map iterated
        towards c = 0 (an odd phi in the ordered phase) reaches such c."""
        if not (0 < abs(c) <= 1e-6) or self._singular_points or not self._derivative_is_even(0, odd=True):
            return None
        a1 = 1.0
        for qv in (q1, q2):
            key = ("f64 a1", qv)
            if key not in self._cache:
                v, mass = self._e1(None, self._f.np(1), std=math.sqrt(qv), with_mass=True)
                jumps = sum(float(J) * math.exp(-float(b) ** 2 / (2 * qv)) / math.sqrt(2 * math.pi * qv)
                            for b, J in self._f.jumps(0))
                # (phi' = 0 off the jumps, sign(x): the rule's value and mass are exactly 0)
                ok = ((v == 0 and mass <= 1e-300) or _f64_cancellation_ok(v, mass)) and abs(v + jumps) >= 1e-3 * abs(v)
                self._cache[key] = math.sqrt(qv) * (v + jumps) if ok else None
            if self._cache[key] is None:
                return None
            a1 *= self._cache[key]
        k = c * a1
        remainder = abs(c) ** 3 * math.sqrt(self.q_map(q1)) * math.sqrt(self.q_map(q2))
        return k if remainder <= gauss.FLOAT64_RELATIVE_TOLERANCE * abs(k) else None

    def _unit_excess_tolerance(self):
        """How far past +-1 a C value may land by rounding alone: 4 ulps of 1 in float64 (the
        kernel and the Q values are separate sums, each correctly rounded to ~1 ulp), one unit in
        the last of ``dps`` digits otherwise (the work is done with 10 guard digits)."""
        if self.engine == "float64":
            return 4 * np.finfo(np.float64).eps
        return mpmath.mpf(10) ** (-self.dps)

    def _unit(self, v):
        """Fold a C value that rounding pushed just past +-1 back onto [-1, 1] (C is a cosine: a
        caller iterating ``c = C(c)`` must be able to feed it back).  A larger excess is not
        rounding, and raises."""
        if -1 <= v <= 1:
            return v
        if abs(v) - 1 <= self._unit_excess_tolerance():
            return self._out(1 if v > 0 else -1)
        raise DomainError(
            f"the C map of {self.activation_name!r} came out as {v}, outside [-1, 1] by more than "
            "rounding: the quadrature is not accurate here (compare with engine='mpmath').")

    def c_map_curve(self, cs, q1=1.0, q2=1.0) -> np.ndarray:
        """The C map on an array of cosines, as a float64 array (any engine; the float64 engine
        does it in one vectorised call, the others point by point at ``dps`` then round)."""
        cs = np.asarray(cs, dtype=np.float64)
        if np.any(np.abs(cs) > 1) or not np.all(np.isfinite(cs)):
            raise DomainError("cosines must lie in [-1, 1].")
        if self.engine != "float64":
            return np.array([float(self.c_map(float(cv), q1, q2)) for cv in cs.ravel()]).reshape(cs.shape)
        _check_q(q1), _check_q(q2)
        self._no_float64_singularities("C map")
        if self._homogeneous_degree() is not None:
            q1 = q2 = 1.0   # C does not depend on q (see c_map)
        bps, scale = self._float64_features()
        flat = cs.ravel()
        k = self._saturated_kernel_f64(flat, float(q1), float(q2))
        if k is None:
            k = np.full(flat.shape, np.nan)
        if np.any(flat == 0):
            # independent u, v: E[phi(u)] E[phi(v)], as c_map does (the 2-D rule took 26 s for hard tanh's
            # C(0; 1e100), its panels graded towards x = 0 in both variables, where the arcsine shortcut
            # cannot hold: its bound is relative to a kernel that is 0 there)
            k = np.where(flat == 0, self._mean(q1) * self._mean(q2), k)
        for i in np.flatnonzero(np.isnan(k) & (np.abs(flat) <= 1e-6)):
            small = self._odd_small_c_kernel_f64(float(flat[i]), float(q1), float(q2))
            k[i] = np.nan if small is None else small
        rest = np.isnan(k)
        log_scales = np.zeros(flat.shape)
        if np.any(rest):
            # scaled, as in c_map: the kernel may underflow where C does not
            k[rest], log_scales[rest] = gauss.bivariate_gaussian_expectation_float64(
                self._f.np(0), self._f.np(0), flat[rest], q1=float(q1), q2=float(q2), breakpoints=bps, scale=scale,
                cusps=self._float64_cusps(), log_scale=True)
        out = np.asarray(k) / self._norm(q1, q2)
        for i in np.flatnonzero(log_scales != 0):
            out[i] = self._f64_scaled_ratio(float(k[i]), float(log_scales[i]), 0, float(flat[i]), q1, q2, "C")
        if np.any(flat == 0):   # each mean over its sqrt(Q) first, as in c_map: their product underflowed
            out = np.where(flat == 0, self._mean(q1) / self._sqrt(self.q_map(q1))
                           * (self._mean(q2) / self._sqrt(self.q_map(q2))), out)
        over = np.abs(out) > 1
        if np.any(over):
            if np.any(np.abs(out[over]) - 1 > self._unit_excess_tolerance()):
                self._unit(float(out[over][np.argmax(np.abs(out[over]))]))   # raises, with the value
            out = np.where(over, np.sign(out), out)
        for unit in (1.0, -1.0):   # exact there, as in c_map
            exact = self._exact_at_unit(unit, q1, q2)
            if exact is not None:
                out = np.where(flat == unit, float(exact), out)
        return out.reshape(cs.shape)

    def _mean(self, q):
        """E[phi(sqrt(q) z)] (cached); exactly 0 for an odd phi (the rules returned rounding noise: tanh's
        float64 C(0) = 6e-35, and a C map iterated from c = 0 fed that to the 2-D rule)."""
        key = ("mean", q)
        if key not in self._cache:
            if self._derivative_is_even(0, odd=True):
                self._cache[key] = 0.0 if self.engine == "float64" else mpmath.mpf(0)
                return self._cache[key]
            r = math.sqrt(q) if self.engine == "float64" else mpmath.sqrt(self._mp(q))
            self._cache[key] = self._e1(self._f.mp(0), self._f.np(0), std=r)
        return self._cache[key]

    def _norm(self, q1, q2):
        """``sqrt(Q(q1) Q(q2))``, taken as ``sqrt(Q(q1)) sqrt(Q(q2))``: in float64 the product
        underflows (tanh at q = 1e-160: a subnormal 1e-320 with 3 digits left, C(0.5) came out
        0.5000028; a ZeroDivisionError below q = 1e-162) or overflows (Q ~ q = 1e200)."""
        return self._sqrt(self.q_map(q1)) * self._sqrt(self.q_map(q2))

    def _sqrt(self, v):
        if self.engine == "float64":
            return math.sqrt(v)
        with mpmath.workdps(self.dps + _GUARD):
            return mpmath.sqrt(v)

    @_at_precision
    def c_map_derivative(self, c, n: int = 1, q1=1, q2=1) -> Any:
        """``d^n C / dc^n = (q1 q2)^{n/2} E[phi^(n)(u) phi^(n)(v)] / sqrt(Q(q1) Q(q2))`` (Price).

        Jumps of ``phi^(n-1)`` enter as delta functions integrated exactly; ``mpmath.inf`` (or
        ``math.inf``) where the derivative is infinite (e.g. ``C''(1)`` for ReLU).

        The formula for ``phi^(n)`` (and those of the lower orders) is built only up to :data:`FORMULA_MAX_NODES`
        nodes: SymPy's derivatives of tanh grow 1.8 times per order, so tanh serves ``n <= 12``.  Beyond it the
        mpmath engine sums Mehler's series, which needs no derivative of phi, at ``c = 0`` and at ``q1 == q2`` for
        ``|c|`` up to where :data:`MEHLER_MAX_TERMS` terms give dps digits (past :attr:`mehler_max_abs_c`: 0.98
        at dps = 20 and n = 15), and raises a DomainError naming the limit elsewhere
        (``c = +-1``, ``q1 != q2``), as the float64 engine does at any c.  The closed engine differentiates its
        closed C one order at a time under the same limit (erf's C: 1139 nodes at order 30), and takes the mpmath
        engine's value beyond.
        """
        _check_c(c), _check_q(q1), _check_q(q2)
        if not is_integer_valued(n) or n < 0:
            raise DomainError(f"n={n!r}: derivative order must be a non-negative integer.")
        # n = 2.0 passed the check above, then failed three ways: "Can't calculate derivative wrt 2.0"
        # (closed), a list-index TypeError (float64), "n=132.0 Hermite coefficients" (mpmath)
        n = int(n)
        if n == 0:
            return self.c_map(c, q1, q2)
        if self.engine == "closed":
            self.q_map(q1), self.q_map(q2)  # Q(q) = 0 has no C map (see c_map)
            form = self._closed_c_derivative(n)
            if form is not None:
                return self._out(self._closed_eval(("dC", n), form, c=c, q1=q1, q2=q2))
            # its formula is too big to build: the mpmath engine's value (Mehler's series needs no formula)
            return self._out(self._quadrature_twin().c_map_derivative(c, n, q1, q2))
        if n >= 2 and c in (1, -1):
            self._require_phi_derivative(n, c, q1, q2)
            if self._f.jumps(n - 1):
                return self._out(mpmath.inf)
        if self.engine == "float64" and self._homogeneous_degree() is not None:
            q1 = q2 = 1.0   # d^nC/dc^n does not depend on q either (see c_map)
        if self.engine == "mpmath" and c == 0 and self._phi_derivative_is_even(n - 1):
            # a_n = E[phi^(n)(u)] q^(n/2) / sqrt(n!) = 0 exactly, phi^(n) being odd (as the float64 engine
            # below): the check of that sum's digits relative to itself refused it ("Mehler's series cannot
            # carry 20 digits here (it sums to 0.0 ...)"), and `symact maps` with it every even activation
            return self._out(mpmath.mpf(0))
        if self.engine == "mpmath" and c == 0 and self._hermite_reaches(q1) and self._hermite_reaches(q2):
            # Mehler's series at c = 0 keeps one term: n! a_n(q1) a_n(q2) (the 2-D quadrature took
            # ~90 s for tanh's C'(0) at 30 digits)
            def measure(lists, errs):
                (b1, b2), (e1, e2) = [abs(a[n]) for a in lists], errs
                return b1 * b2, b1 * e2 + b2 * e1 + e1 * e2
            a1, a2 = self._checked_hermite([q1, q2], n + 1, measure, f"d^{n}C/dc^{n}", c)
            return self._out(mpmath.factorial(n) * a1[n] * a2[n] / self._norm(q1, q2))
        if (self.engine == "mpmath" and q1 == q2 and c != 0 and self._hermite_reaches(q1)
                and (abs(c) <= self.mehler_max_abs_c
                     or (abs(c) <= self._mehler_reach(n) and self._phi_derivative(n) is None))):
            # d^n/dc^n of Mehler's series: sum_k k!/(k-n)! a_k^2 c^(k-n)  (no 2-D quadrature); also beyond
            # mehler_max_abs_c where Price's form would need a formula for phi^(n) past FORMULA_MAX_NODES: the
            # series needs none (tanh's C^(15)(0.9) at 20 digits: 1 s; it raises if it does not converge)
            kn = self._mehler_sum(self._mp(c), q1, n, f"d^{n}C/dc^{n}")
            return self._out(kn / self.q_map(q1))
        if self.engine == "float64" and n == 1 and c not in (1, -1):
            slope = self._saturated_slope_f64(float(c), float(q1), float(q2))
            if slope is not None:
                return self._out(slope / (math.sqrt(self.q_map(q1)) * math.sqrt(self.q_map(q2))))
        self._require_phi_derivative(n, c, q1, q2)
        if self.engine == "float64":
            if c == 0 and self._phi_derivative_is_even(n - 1):
                return 0.0   # E[phi^(n)(u)] = 0 exactly: phi^(n) is odd (the rule returned rounding noise)
            # scaled: Price's kernel may underflow where d^nC/dc^n does not (relu(x - 30) at c = 0.1)
            k, log_scale, _ = self._kernel_num(n, c, q1, q2, scaled=True)
            if c not in (1, -1) and not self._f64_kernel_within_bound(k, log_scale, n, q1, q2):
                # (at c = +-1 the rule is 1-D, converged relative to its own E|.|)  Far below its Cauchy-Schwarz
                # bound: judged by the rule's own error estimate, relative to E|phi^(n)(u) phi^(n)(v)|
                k, log_scale, error = self._kernel_num(n, c, q1, q2, scaled=True, with_error=True)
                self._check_f64_kernel_resolved(k, error, log_scale, n, c, q1, q2)
            return self._out(self._f64_scaled_ratio(k, log_scale, n, c, q1, q2, f"d^{n}C/dc^{n}"))
        k = self._kernel_num(n, c, q1, q2)
        pre = mpmath.power(self._mp(q1) * self._mp(q2), mpmath.mpf(n) / 2)
        return self._out(pre * k / self._norm(q1, q2))

    def _require_phi_derivative(self, n: int, c, q1, q2) -> None:
        """Raise where Price's form of d^nC/dc^n would need phi^(n) past :data:`FORMULA_MAX_NODES`, naming what
        serves that order instead."""
        if self._phi_derivative(n) is not None:
            return
        reach = self._mehler_reach(n)
        mehler = ("Mehler's series (the mpmath engine's), which needs no derivative of phi, serves it at c = 0, and "
                  f"at q1 == q2 for |c| <= {reach:.4g} (where {MEHLER_MAX_TERMS} terms give {self.dps} digits)")
        if c == 0 or (q1 == q2 and abs(c) <= reach):   # (float64 only: the mpmath engine took the series here)
            instead = f"{mehler}: use engine='mpmath'"
        else:
            here = "q1 != q2" if q1 != q2 else f"|c| = {mpmath.nstr(abs(self._mp(c)), 15)}"
            instead = (f"{mehler}; here {here}, where no quadrature engine serves this order (engine='closed' "
                       "does, for a phi with a closed form)")
        raise DomainError(
            f"d^{n}C/dc^{n}({mpmath.nstr(self._mp(c), 15)}; q1 = {mpmath.nstr(self._mp(q1), 15)}, "
            f"q2 = {mpmath.nstr(self._mp(q2), 15)}) of "
            f"{self.activation_name!r}: Price's form E[phi^({n})(u) phi^({n})(v)] needs phi^({n}), and "
            f"{self._phi_derivative_limit_clause()}; {instead}.")

    def _derivative_is_even(self, m: int, odd: bool = False, plus_constant: bool = False) -> bool:
        """Whether phi^(m) is an even function (then phi^(m+1), deltas included, is odd): its kinks are
        symmetric and phi^(m)(t) = phi^(m)(-t) to 25 digits at 40-digit precision at 8 points in (0, 6) and
        14 from 8 to 2^40 (to 2^10 where :meth:`_probe_exponent` says; cached).  ``odd=True``: whether it is
        odd instead (phi^(m)(t) = -phi^(m)(-t)); with ``plus_constant``, odd plus a constant (the step H(x),
        sigmoid: phi^(m)(t) + phi^(m)(-t) the same at every point), which its derivative does not see.  The test
        is relative to max(|phi^(m)(t)|, |phi^(m)(-t)|): against max(1, |phi^(m)(t)|) a phi below 1e-25 at every point
        (the bump exp(-(x - 20)^2), 1e-87 at x = 6) passed as odd, and its C(0) came out exactly 0 (3.5e-47)."""
        key = ("odd" + " plus constant" * plus_constant if odd else "even", m)
        if key not in self._cache and m >= 0:
            # SymPy's automatic evaluation often settles it (tanh(-x) is -tanh(x)): exact, and
            # ~20x cheaper than the 22 points at 40 digits that are left for the other cases
            e, x = self._f.expr(m), self._parts.x
            if e.subs(x, -x) == (-e if odd else e):
                self._cache[key] = True
        if key not in self._cache:
            f = self._f.mp(m)
            with mpmath.workdps(40):
                ts = [mpmath.mpf(k) / 7 + mpmath.mpf(1) / 1000 for k in (1, 3, 5, 8, 11, 17, 26, 40)]
                ts += [mpmath.mpf(2) ** j + mpmath.mpf(1) / 3 for j in range(3, self._probe_exponent() + 1, 3)]
                # and across the formula's narrow features and close to 0, where an asymmetry hides between the
                # points above: tanh(1000 (x - 1/20)) passed as odd, a bump exp(-40000 (x - 1/20)^2) (zero at every
                # point) as odd too, and C(0) = 0, C(-1) = -1 were returned for 0.0016 and -0.92 (1e-87)
                centres, width = self._feature_centres()
                for centre in centres:
                    c, w = abs(self._mp(centre)), mpmath.mpf(width)
                    ts += [c + k * w for k in (-4, -2, -1, -mpmath.mpf(1) / 2, 0, mpmath.mpf(1) / 2, 1, 2, 4)
                           if c + k * w > 0]
                ts += [mpmath.mpf(10) ** -j * mpmath.mpf("1.37") for j in range(1, 7)]
                try:
                    offset = f(ts[0]) + f(-ts[0]) if odd and plus_constant else 0
                    even = set(self.kinks) == {-b for b in self.kinks} and all(
                        abs(f(t) - (-1 if odd else 1) * f(-t) - offset)
                        <= mpmath.mpf(10) ** -25 * max(abs(f(t)), abs(f(-t)), abs(offset))
                        for t in ts)
                except (ArithmeticError, ValueError, TypeError, FormulaError):
                    even = False
            self._cache[key] = even
        return self._cache[key]

    def _f64_kernel_within_bound(self, k: float, log_scale: float, n: int, q1, q2) -> bool:
        """Whether a float64 Price kernel ``k e^log_scale`` is at least 1e11 times the 2-D rule's tolerance relative
        to its Cauchy-Schwarz bound ``sqrt(E phi^(n)(u)^2 E phi^(n)(v)^2)`` (two 1-D integrals): then the rule's
        error, at most 1e-13 of that bound, is below 1e-2 of |k| without asking the rule for its estimate (which costs
        one more 2-D evaluation)."""
        if log_scale != 0:
            return False
        g = self._f.np(n)
        scale = 1.0
        for qv in (q1, q2):
            scale *= math.sqrt(self._e1(None, lambda t: g(t) ** 2, std=math.sqrt(qv)))
        return gauss.FLOAT64_RELATIVE_TOLERANCE * scale <= 1e-2 * abs(k)

    def _check_f64_kernel_resolved(self, k: float, error: float, log_scale: float, n: int, c, q1, q2) -> None:
        """Refuse a float64 Price kernel ``E[phi^(n)(u) phi^(n)(v)] = k e^log_scale`` whose error estimate ``error``
        (same units: the 2-D rule's last two levels' difference plus 4 ulps of ``E|phi^(n)(u) phi^(n)(v)|``, and the
        delta terms' 1e-13 of their mass) exceeds 1% of ``|k|``: fewer than two digits certain.

        The rule converges relative to ``E|phi^(n)(u) phi^(n)(v)|`` where the kernel is far below its Cauchy-Schwarz
        bound, so a kernel whose integrand does not cancel keeps ~13 digits however small: relu(x - 3)'s
        C'(-0.9) = 1.6e-39 (kernel 3e-43 against a bound of 1.3e-3) was refused by a test relative to the bound.  One
        whose integrand cancels keeps none: for x exp(-x^2) at q = 1e100, C'(0.3) is 1.5e-150 (phi' lives where
        |x| ~ 1, the density is flat there and the leading moments cancel) against C'(1) ~ 1e100, and the rule
        returned 5e33; its error estimate exceeds the value, and it is refused (near a zero of the derivative, like
        tanh's C''(1e-9) ~ 1e-9, the value keeps its ~1e-13 of that scale absolute, as the C map does near its
        zeros)."""
        if error <= 1e-2 * abs(k):
            return
        raise DivergentIntegralError(
            f"the float64 d^{n}C/dc^{n}({c}; q1 = {q1:g}, q2 = {q2:g}) of {self.activation_name!r} is not resolved: "
            f"Price's kernel E[phi^({n})(u) phi^({n})(v)] came out {k:.1e}{f' * e^{log_scale:.1f}' if log_scale else ''}"
            f" with an estimated error of {error:.1e}, more than 1% of it (fewer than two digits certain): its "
            f"integrand cancels, E|phi^({n})(u) phi^({n})(v)| being far larger, and the true value may be far smaller "
            "(a phi whose derivative lives near x = 0 at large q, where C' is tiny against C'(1), or a zero of the "
            "derivative). The mpmath engine keeps dps digits of that same scale: use engine='mpmath' with dps above "
            "log10(E|phi^(n)(u) phi^(n)(v)| / |kernel|) plus the digits wanted.")

    # ---- scalar summaries ----------------------------------------------------------------
    @_at_precision
    def slope_at_1(self, q=1) -> Any:
        """``C'(1; q, q) = q E[phi'(sqrt(q) z)^2] / Q(q)`` (infinite if phi jumps)."""
        _check_q(q)
        if self.engine == "closed":
            return self.c_map_derivative(1, 1, q, q)
        if self._f.jumps(0):
            return self._out(mpmath.inf)
        f, g = self._f.mp(1), self._f.np(1)
        r = math.sqrt(q) if self.engine == "float64" else mpmath.sqrt(self._mp(q))
        v = self._e1(lambda t: f(t) ** 2, lambda t: g(t) ** 2, std=r)
        return self._out(q * v / self.q_map(q) if self.engine == "float64"
                         else self._mp(q) * v / self.q_map(q))

    @_at_precision
    def value_at_0(self, q=1) -> Any:
        """``C(0; q, q) = E[phi(sqrt(q) z)]^2 / Q(q)``."""
        _check_q(q)
        if self.engine == "closed":
            return self.c_map(0, q, q)
        m = self._mean(q)
        return self._out(m * m / self.q_map(q))

    @_at_precision
    def curvature_at_1(self, q=1) -> Any:
        """``C''(1; q, q) = q^2 E[phi''(sqrt(q) z)^2] / Q(q)``; ``inf`` when phi' (or phi) jumps."""
        _check_q(q)
        if self.curvature_is_infinite:
            return self._out(mpmath.inf)
        if self.engine == "closed":
            return self.c_map_derivative(1, 2, q, q)
        f, g = self._f.mp(2), self._f.np(2)
        r = math.sqrt(q) if self.engine == "float64" else mpmath.sqrt(self._mp(q))
        v = self._e1(lambda t: f(t) ** 2, lambda t: g(t) ** 2, std=r)
        qq = q if self.engine == "float64" else self._mp(q)
        return self._out(qq * qq * v / self.q_map(q))

    @property
    def curvature_is_infinite(self) -> bool:
        """True when ``phi`` or ``phi'`` jumps somewhere, so that ``C''(1) = +inf``."""
        return bool(self._f.jumps(0) or self._f.jumps(1))

    @property
    def c_map_slope_at_1(self):
        """``C'(1) = E[phi'(z)^2] / Q(1)`` at q = 1."""
        return self.slope_at_1(1)

    @property
    def c_map_at_0(self):
        """``C(0) = E[phi(z)]^2 / Q(1)`` at q = 1."""
        return self.value_at_0(1)

    @property
    def c_map_curvature_at_1(self):
        """``C''(1)`` at q = 1 (``inf`` when ``phi'`` jumps: see :attr:`curvature_is_infinite`)."""
        return self.curvature_at_1(1)

    @_at_precision
    def hermite_coefficients(self, n: int, q=1) -> list:
        """First ``n`` normalised Hermite coefficients of ``z -> phi(sqrt(q) z)`` (mpf, dps digits).

        ``Q(q) = sum a_k^2`` and ``C(c; q, q) = sum a_k^2 c^k / Q(q)``.
        """
        _check_q(q)
        # checked here: a cached list was sliced first, so -1 gave all but its last entry and 2.5 a bare TypeError
        if not is_whole_number(n, 1):
            raise DomainError(f"n={n!r}: the number of Hermite coefficients must be a whole number >= 1.")
        a, _, _ = self._hermite(q, int(n))
        with mpmath.workdps(self.dps):
            return [+v for v in a]

    def composed(self, other: "KernelMaps | ComposedKernelMaps") -> "ComposedKernelMaps":
        """Maps of the network ``self`` after ``other`` (function composition ``self o other``).

        ``Q = Q_self o Q_other`` and ``C(c; q1, q2) = C_self(C_other(c; q1, q2); Q_other(q1), Q_other(q2))``:
        the extended maps, which carry the q values along (DKS section 2).
        """
        if not isinstance(other, (KernelMaps, ComposedKernelMaps)):  # None, "relu": a bare AttributeError ('dps')
            raise FormulaError(f"composed() takes kernel maps, got {type(other).__name__} {other!r}: pass "
                               f"kernel_maps({other!r}) (the maps of the inner layer).")
        return ComposedKernelMaps(self, other)


def _he(n: int, z):
    """Probabilists' Hermite polynomial He_n(z) by the three-term recurrence."""
    h0, h1 = mpmath.mpf(1), z
    if n == 0:
        return h0
    for k in range(1, n):
        h0, h1 = h1, z * h1 - k * h0
    return h1


class ComposedKernelMaps:
    """Extended Q/C maps of a composition ``outer o inner`` (see :meth:`KernelMaps.composed`).

    Derivatives use the chain rule: ``Q' = Q_o'(Q_i(q)) Q_i'(q)``,
    ``dC/dc = C_o'(C_i) C_i'(c)``, ``d2C/dc2 = C_o''(C_i) C_i'^2 + C_o'(C_i) C_i''``.
    """

    def __init__(self, outer, inner):
        self.outer, self.inner = outer, inner
        self.engine = outer.engine
        self.dps = min(outer.dps, inner.dps)

    def __repr__(self) -> str:
        return f"ComposedKernelMaps({self.outer!r} o {self.inner!r})"

    def prepare(self, max_derivative: int = 2) -> "ComposedKernelMaps":
        """:meth:`KernelMaps.prepare` of both maps; returns self."""
        self.outer.prepare(max_derivative)
        self.inner.prepare(max_derivative)
        return self

    @_at_precision
    def q_map(self, q):
        return self.outer.q_map(self.inner.q_map(q))

    @_at_precision
    def q_map_derivative(self, q, n: int = 1):
        if not is_integer_valued(n) or n < 0:
            raise DomainError(f"n={n!r}: derivative order must be a non-negative integer "
                              f"(composed maps provide n = 0, 1).")
        if n == 0:
            return self.q_map(q)
        if n != 1:
            raise DomainError("composed maps provide q_map_derivative for n = 1 only (chain rule).")
        return self.outer.q_map_derivative(self.inner.q_map(q), 1) * self.inner.q_map_derivative(q, 1)

    @_at_precision
    def c_map(self, c, q1=1, q2=1):
        ci = self.inner.c_map(c, q1, q2)
        return self.outer.c_map(_clip_unit(ci), self.inner.q_map(q1), self.inner.q_map(q2))

    @_at_precision
    def c_map_derivative(self, c, n: int = 1, q1=1, q2=1):
        if not is_integer_valued(n) or n < 0:  # -1 was told "n <= 2" only
            raise DomainError(f"n={n!r}: derivative order must be a non-negative integer "
                              f"(composed maps provide n = 0, 1, 2).")
        n = int(n)
        if n == 0:
            return self.c_map(c, q1, q2)
        ci = _clip_unit(self.inner.c_map(c, q1, q2))
        qa, qb = self.inner.q_map(q1), self.inner.q_map(q2)
        d1i = self.inner.c_map_derivative(c, 1, q1, q2)
        d1o = self.outer.c_map_derivative(ci, 1, qa, qb)
        if n == 1:
            return d1o * d1i
        if n == 2:
            d2i = self.inner.c_map_derivative(c, 2, q1, q2)
            d2o = self.outer.c_map_derivative(ci, 2, qa, qb)
            return d2o * d1i * d1i + d1o * d2i
        raise DomainError("composed maps provide c_map_derivative for n <= 2 (chain rule).")

    @_at_precision
    def slope_at_1(self, q=1):
        return self.outer.slope_at_1(self.inner.q_map(q)) * self.inner.slope_at_1(q)

    @_at_precision
    def value_at_0(self, q=1):
        return self.c_map(0, q, q)

    @_at_precision
    def curvature_at_1(self, q=1):
        return self.c_map_derivative(1, 2, q, q)

    c_map_slope_at_1 = property(lambda self: self.slope_at_1(1))
    c_map_at_0 = property(lambda self: self.value_at_0(1))
    c_map_curvature_at_1 = property(lambda self: self.curvature_at_1(1))

    def composed(self, other):
        return ComposedKernelMaps(self, other)


def _clip_unit(v):
    """C values can exceed 1 by rounding (1 + 1e-16 in float64); fold those back, refuse real excess."""
    tol = 1e-12 if isinstance(v, float) else mpmath.mpf(10) ** (-(mpmath.mp.dps // 2))
    if abs(v) > 1 + tol:
        raise DomainError(f"an inner C map returned {v}, outside [-1, 1]: the maps are inconsistent.")
    return max(min(v, 1), -1)


def kernel_maps(act: Any, dps: int = 30, engine: str = "auto") -> KernelMaps:
    """The Q and C maps of an activation.

    ``act``: an ``Activation`` (uses ``concrete_expr`` and ``kinks``), a SymPy expression in one
    real symbol, or a catalogue name / formula string.  ``engine``: ``"closed"`` (exact SymPy
    formulas, see :func:`find_closed_form`), ``"mpmath"`` (quadrature at ``dps`` digits),
    ``"float64"`` (vectorised NumPy rules), or ``"auto"`` (closed when available, else mpmath).
    ``dps``: an integer of at least :data:`MIN_DPS` (5), else a DomainError (see :func:`check_dps`); the mpmath
    engine's time grows about as dps^3 (see :data:`MAX_DPS`); the float64 engine ignores it.

    >>> import sympy
    >>> x = sympy.Symbol("x", real=True)
    >>> m = kernel_maps(sympy.erf(x), dps=25)
    >>> m.closed_form.q_map
    2*asin(2*q/(2*q + 1))/pi
    """
    return KernelMaps(_activation_parts(act), dps, engine)
