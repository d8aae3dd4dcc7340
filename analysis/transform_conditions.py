r"""Kernel conditions of a transformed activation and their exact derivatives in (alpha, beta).

For an activation :math:`\phi` and the transformed activation

.. math::  \psi(x) = \gamma\,(\phi(\alpha x + \beta) + \delta),

with :math:`z \sim N(0, 1)` and :math:`u = \alpha z + \beta`, this module evaluates the five
numbers Deep Kernel Shaping (Martens et al. 2021) and TAT (Zhang et al. 2022) put conditions on,
in the DKS convention (C map normalised by the Q values, evaluated at :math:`q_1 = q_2 = 1`):

==========================  ==============================================================
``q_value``     Q(1)        :math:`E[\psi(z)^2] = \gamma^2 E[(\phi(u)+\delta)^2]`
``q_slope``     Q'(1)       :math:`\tfrac12 E[(z^2-1)\,\psi(z)^2] = E[z\,\psi(z)\,\psi'(z)]
                            = \gamma^2\alpha\,E[z\,(\phi(u)+\delta)\,\phi'(u)]` (derivative of
                            :math:`q \mapsto E[\psi(\sqrt q z)^2]`; the second form by Stein's lemma,
                            see below)
``c_at_0``      C(0)        :math:`E[\psi(z)]^2 / Q(1)`
``c_slope``     C'(1)       :math:`E[\psi'(z)^2] / Q(1) = \gamma^2\alpha^2 E[\phi'(u)^2] / Q(1)`
``c_curvature`` C''(1)      :math:`E[\psi''(z)^2] / Q(1) = \gamma^2\alpha^4 E[\phi''(u)^2] / Q(1)`;
                            ``inf`` when :math:`\phi'` jumps (ReLU, SELU): never differenced
==========================  ==============================================================

**Exact derivatives.**  Every quantity is a combination of Gaussian expectations
:math:`E[p(z)\,h(u)]` with a polynomial :math:`p` and :math:`h \in \{\phi, \phi^2, \phi'^2,
\phi''^2\}`.  Writing the expectation as an integral over :math:`u \sim N(\beta, \alpha^2)` and
differentiating the Gaussian density (not :math:`h`) under the integral sign gives, exactly,

.. math::
    \partial_\beta E[p(z) h(u)] = \tfrac1\alpha E[(z p - p')\,h(u)],\qquad
    \partial_\alpha E[p(z) h(u)] = \tfrac1\alpha E[(z^2 p - p - z p')\,h(u)].

Because :math:`h` is never differentiated, the formulas are exact for piecewise activations
too (a jump of :math:`\phi'` would otherwise contribute a Dirac delta).  The derivatives of
the five conditions follow by the quotient rule; :mod:`analysis.shaping` uses them for Newton
steps.  ``tests/test_transform_conditions.py`` checks them against ``mpmath.diff`` at 40 digits.

**Forms that are small where the result is small.**  With :math:`f = \phi(u) + \delta`, the
terms of :math:`E[(z^2-1) f^2]` are of size :math:`f^2` whatever Q'(1) is: for the sigmoid at
:math:`\beta = 45`, :math:`f^2 = 1 - 6\cdot10^{-20}` and Q'(1) = -4.72e-20, so the float64 sum
returned -3.0e-18 (and d/dbeta of Q(1) 5e-18 for 9.4e-20).  When :math:`\phi` is continuous
(absolutely continuous: :math:`\phi'` may jump, :math:`\phi` may not), Stein's lemma
:math:`E[z\,g(z)] = E[g'(z)]` turns them into expectations of
:math:`k = f\,\phi'(u)`, which is as small as the variation of :math:`f^2`:

.. math::
    E[(z^2-1) f^2] = E[z\,\tfrac{d}{dz} f^2] = 2\alpha E[z\,k],\qquad
    \partial_\beta E[f^2] = 2E[k],\quad \partial_\alpha E[f^2] = 2E[z\,k],\quad
    \partial_\beta E[\phi] = E[\phi'],\quad \partial_\alpha E[\phi] = E[z\,\phi'],

and the derivatives of :math:`2\alpha E[z k]` follow from the density formulas above with
:math:`h = k` (:math:`k` itself is never differentiated, so a jump of :math:`\phi'` costs
nothing): :math:`\partial_\beta = 2E[(z^2-1)k]`, :math:`\partial_\alpha = 2E[(z^3-z)k]`.  Where
:math:`\phi` jumps (Heaviside, sign), :math:`\phi'` lacks the delta there and the density forms
on :math:`f^2` and :math:`\phi` are used as before.  Both engines use these forms.

**Accuracy of the float64 engine.**  Surveyed against the mpmath engine at
:math:`30 + 0.87\min(|\beta|, \beta^2/2\alpha^2)` digits (what the cancellations below need) for
sigmoid, tanh, softplus, erf, gelu, silu, elu at :math:`\alpha \in \{0.01, 1, 10, 100\}`,
:math:`\beta \in \{\pm10, \pm30, \pm45, \pm100\}`, :math:`\gamma = 1, \delta = 0`, each of the
15 numbers X agrees to
1e-12 relative, or to 1e-13 of the condition's scale
:math:`S = \max(|X|, \alpha|\partial_\alpha X|, \alpha|\partial_\beta X|)` (X's change as
:math:`u` moves by about a standard deviation), whichever is larger.  The floor is reached only
where a derivative is a quotient-rule difference of nearly equal terms, e.g. dC(0)/dbeta =
8e-26 next to C(0) = 1 (sigmoid at :math:`\beta = 30`), whose float64 value is ~1e-3 off
relatively.  The tests hold the engine to 1e-9 relative or 1e-13 S.  What float64 cannot do is
represent :math:`\phi(u) + \delta` where :math:`\delta` cancels :math:`\phi` on the Gaussian's
mass (tanh(u) - 1 at u = 12 keeps 8 digits): every condition holds that factor, so the float64
engine warns (RuntimeWarning) when its rounding estimate exceeds ``SHIFT_ROUNDING_WARN`` = 1e-10
(:func:`_shift_rounding`), and refuses Q(1) = 0 with a note that it may be such rounding.  The survey's other
exceptions are values below float64's range (0 for ~1e-393) and integrands whose Gaussian-weighted mass lies
beyond the rule's cut |z| = 14 (erf, gelu at :math:`\beta = \pm30`: C'(1) of erf 1e-267 for 2.6e-157), for
which the engine warns by name (:func:`_truncated_conditions`).

**Two engines.**  ``dps=None`` evaluates in float64, phi, phi' and phi'' in the forms
``symact.primitives.safe_form`` and ``safe_derivative`` give (``Softplus(u)`` for ``log(1 + exp(u))``, which
rounds ``1 + exp(-30)``), with a composite Gauss-Legendre rule in
:math:`z` on :math:`[-14, 14]` (the Gaussian mass outside is below 1e-44), split at the kinks
of :math:`\phi` mapped to :math:`z = (k-\beta)/\alpha`, so piecewise activations keep full
float64 accuracy (a plain Gauss-Hermite rule converges only algebraically on a kink).  The
panels are at most 2.5/alpha wide, since :math:`\phi(\alpha z+\beta)` varies on that scale;
:func:`checked_float64_evaluator` also estimates the rule's error by doubling the panels.  An
integer ``dps`` evaluates every expectation with mpmath at that many digits, through
``numeric.gauss.gaussian_expectation`` (break-points at the kinks).

Example
-------
>>> import sympy
>>> from analysis.transform_conditions import transform_conditions
>>> x = sympy.Symbol("x", real=True)
>>> tc = transform_conditions(sympy.tanh(x), alpha=1, beta=0, gamma=1, delta=0)
>>> round(tc.values.c_at_0, 12), round(tc.values.c_slope * tc.values.q_value, 10)  # E[tanh'(z)^2]
(0.0, 0.4644029024)
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import mpmath
import numpy as np
import sympy

from numeric.gauss import gaussian_rule
from numeric.lambdify_modules import MPMATH_MODULES, numpy_modules
from symact.primitives import safe_derivative, safe_form

__all__ = [
    "ActivationFunctions",
    "ConditionSet",
    "TransformConditions",
    "activation_functions",
    "transform_conditions",
    "ConditionEvaluator",
    "checked_float64_evaluator",
    "gaussian_expectation_mp",
    "ShiftedExpectations",
    "shifted_expectations",
]

# ----------------------------------------------------------------------------------------
# The activation as callables
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivationFunctions:
    """phi, phi', phi'' of one activation as float64 (NumPy) and mpmath callables; the NumPy ones evaluate the
    safe forms (``symact.primitives``), the mpmath ones ``expr`` and its derivatives as written.

    ``kinks`` are the points where phi or phi' is not smooth (quadrature break-points);
    ``slope_jumps`` says whether phi' itself jumps somewhere (then C''(1) is infinite),
    ``value_jumps`` whether phi jumps (then C'(1) is infinite).  ``odd_offset`` is the constant
    c0 with phi(x) + phi(-x) = c0 when there is one (0 for odd phi, 1 for the logistic sigmoid),
    decided symbolically, else None: then (alpha, -beta, gamma, -delta - c0) meets the same
    kernel conditions as (alpha, beta, gamma, delta) (psi is replaced by -psi(-x)).
    """

    name: str
    expr: sympy.Expr
    symbol: sympy.Symbol
    kinks: tuple[float, ...]
    slope_jumps: bool
    value_jumps: bool
    odd_offset: Any
    np_funcs: tuple[Callable, Callable, Callable]
    mp_funcs: tuple[Callable, Callable, Callable]

    def __repr__(self) -> str:
        return f"ActivationFunctions({self.name!r}: {self.expr}, kinks={self.kinks})"


def _np_erf(values):
    # NumPy has no erf and scipy is not a symact dependency; math.erf is exact to 1 ulp.
    if np.ndim(values) == 0:  # a constant such as SELU's erfc(sqrt(2)/2): np.vectorize costs 40 us a call
        return math.erf(float(values))
    return np.vectorize(math.erf, otypes=[float])(values)


def _np_erfc(values):
    if np.ndim(values) == 0:
        return math.erfc(float(values))
    return np.vectorize(math.erfc, otypes=[float])(values)


_NUMPY_MODULES = numpy_modules({"erf": _np_erf, "erfc": _np_erfc})


def _drop_dirac(expr: sympy.Expr) -> sympy.Expr:
    """Replace DiracDelta terms (from differentiating Heaviside/Abs/Max) by 0.

    They live on the kinks, a set of Gaussian measure zero; where they matter (a jump of
    phi or phi') the jump is detected separately and reported as an infinite C'(1)/C''(1).
    """
    return expr.replace(lambda e: isinstance(e, sympy.DiracDelta), lambda e: sympy.S.Zero)


def _to_expr(act: Any) -> tuple[str, sympy.Expr, sympy.Symbol, tuple]:
    """(name, concrete expression, input symbol, kinks) of an Activation, name or expression."""
    if isinstance(act, str):
        import symact

        act = symact.activation(act)
    if hasattr(act, "concrete_expr"):
        inputs = tuple(getattr(act, "inputs", ()))
        if len(inputs) != 1:
            from symact.errors import DomainError

            raise DomainError(
                f"{getattr(act, 'name', act)!r} has inputs {inputs}; kernel conditions are defined "
                "for single-input activations. Shape the gated unit's inner activation instead."
            )
        kinks = tuple(getattr(act, "kinks", ()) or ())
        return str(getattr(act, "name", act)), sympy.sympify(act.concrete_expr), inputs[0], kinks
    expr = sympy.sympify(act)
    free = sorted(expr.free_symbols, key=str)
    if len(free) != 1:
        from symact.errors import FormulaError

        raise FormulaError(
            f"expression {expr} must have exactly one free symbol (the input), found {free}; "
            "substitute parameter values first."
        )
    import symact

    # Through an Activation, so the kinks (quadrature break-points) come from one place.
    return _to_expr(symact.activation(expr.xreplace({free[0]: symact.x})))


def _may_have_constant_offset(phi) -> bool:
    """False when phi(x) + phi(-x) visibly differs between sample points (evaluated at 30 digits),
    so that the symbolic test for a constant c0 = phi(x) + phi(-x) can be skipped: it is the slow
    part of building an activation (sympy.simplify of the SELU's Piecewise took 3-8 s, to find
    no constant).  True (decide symbolically) when the samples agree or cannot be evaluated."""
    with mpmath.workdps(30):
        try:
            values = [phi(mpmath.mpf(u)) + phi(-mpmath.mpf(u)) for u in ("0.37", "1.3", "2.9")]
            values = [mpmath.mpf(v) for v in values]
        except (ArithmeticError, ValueError, TypeError):
            return True
        if not all(mpmath.isfinite(v) for v in values):
            return True
        size = max(abs(v) for v in values) + 1
        return max(values) - min(values) <= mpmath.mpf(10) ** -20 * size


@functools.lru_cache(maxsize=256)
def _build(name: str, expr: sympy.Expr, x: sympy.Symbol, kinks: tuple) -> ActivationFunctions:
    d1 = _drop_dirac(sympy.diff(expr, x))
    d2 = _drop_dirac(sympy.diff(d1, x))
    kinks_f = tuple(sorted({float(k) for k in kinks}))

    def vectorise(e):
        f = sympy.lambdify(x, e, modules=_NUMPY_MODULES)
        return lambda v: np.asarray(f(v), dtype=float) + np.zeros(np.shape(v))

    # float64 evaluates the safe forms (symact.primitives): the formula as written rounds without overflowing,
    # softplus's log(1 + exp(u)) at u = -30 adds exp(-30) to 1 (1e-3 off), and its phi'' = Sigmoid(u)*Sigmoid(-u)
    # written exp(u)/(exp(u) + 1) - exp(2u)/(exp(u) + 1)**2 is a difference of two numbers near 1 at u = 30.
    # The mpmath functions keep the formula as written, evaluated with guard digits.
    safe = (safe_form(expr, (x,)), safe_derivative(expr, x, (x,)), safe_derivative(d1, x, (x,)))
    np_funcs = tuple(vectorise(e) for e in safe)
    mp_funcs = tuple(sympy.lambdify(x, e, modules=MPMATH_MODULES) for e in (expr, d1, d2))

    def jumps(f) -> bool:
        # relative to f's size near the kink (largest |f| at k +- 1e-20, 1e-3, 1), not an absolute 1e-8:
        # C'(1), C''(1) do not depend on the scale of phi, yet relu/1e9 had C''(1) = 0 (relu: inf) and
        # Heaviside/1e9 C'(1) = 0; a smooth f changes by ~1e-20 |f'| across the kink.
        # The kink at 30 digits, not as a float: float(1/3) lies 1.9e-17 from 1/3, so both probes at +-1e-20
        # fell on one side and Heaviside(x - 1/3) got C'(1) = C''(1) = 0, hardtanh(-1/3, 1/3) C''(1) = 0
        with mpmath.workdps(30):
            eps = mpmath.mpf("1e-20")
            for k in kinks:
                k = mpmath.mpf(sympy.Float(sympy.N(k, 40), 40))
                jump = abs(f(k + eps) - f(k - eps))
                scale = mpmath.mpf(0)
                for d in (eps, -eps, mpmath.mpf("1e-3"), -mpmath.mpf("1e-3"), 1, -1):
                    try:
                        scale = max(scale, abs(f(k + d)))
                    except (ValueError, ZeroDivisionError, TypeError, OverflowError):
                        continue   # another singularity or the edge of a domain: the other points decide
                if jump > mpmath.mpf("1e-12") * scale:
                    return True
            return False

    odd_offset = None
    if _may_have_constant_offset(mp_funcs[0]):
        offset = sympy.simplify(expr.subs(x, -x) + expr)
        if offset.has(x):
            offset = sympy.simplify(offset.rewrite(sympy.exp))
        odd_offset = float(offset) if not offset.has(x) and offset.is_real else None
    return ActivationFunctions(
        name=name, expr=expr, symbol=x, kinks=kinks_f, slope_jumps=jumps(mp_funcs[1]),
        value_jumps=jumps(mp_funcs[0]), odd_offset=odd_offset, np_funcs=np_funcs, mp_funcs=mp_funcs,
    )


def activation_functions(act: Any) -> ActivationFunctions:
    """phi, phi', phi'' of ``act`` (an Activation, catalogue name, or SymPy expression in one symbol)."""
    if isinstance(act, ActivationFunctions):
        return act
    name, expr, x, kinks = _to_expr(act)
    return _build(name, expr, x, kinks)


# ----------------------------------------------------------------------------------------
# Gaussian expectations E[p(z) h(alpha z + beta)] with their (alpha, beta) derivatives
# ----------------------------------------------------------------------------------------

_HALF_WIDTH = 14.0  # |z| beyond 14 carries Gaussian mass < 1e-44
_N_INTERVALS = 32
_GL_ORDER = 24
# phi(alpha z + beta) varies on the scale 1/alpha in z (tanh: poles pi/(2 alpha) off the real axis),
# so the panel width in z must shrink like 1/alpha: a 24-node panel of width h is at float64
# accuracy while h * alpha <= ~3.2 (tanh, sigmoid; measured).  A fixed 32-panel rule (h = 0.875)
# was off by 4e-3 in E[phi'^2] for tanh at alpha = 14.5 with no sign of it.
_F64_PANEL_ALPHA = 2.5
_MP_PANEL_ALPHA = 4.0  # 48-node mpmath panels; the 1.5x refinement check then verifies the digits


def _repair_non_finite(values: np.ndarray, u: np.ndarray, f_np, f_mp, *, stop_at_non_finite: bool) -> None:
    """Recompute, in place, the entries of ``values`` (``f_np`` at ``u``) that are not finite.

    Lambdified formulas can overflow where the function is finite (softplus's log(exp(u) + 1), the
    sigmoid's exp(u)/(exp(u)+1)^2 at u > 709, reached when alpha is large): those nodes again in long
    double (exponent range 1e4932 on x86), then any still not finite in mpmath at 20 digits.  With
    ``stop_at_non_finite`` the mpmath pass stops at the first value that is not finite in float64 (the
    rest stay NaN): for phi and phi' such a value makes E[phi^2 + phi'^2] non-finite, which the rule
    check refuses whatever the other nodes hold, and exp(x**4) overflowed at hundreds of nodes per grid
    start, each evaluated in mpmath (16 s to refuse it)."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    with np.errstate(all="ignore"):
        try:
            values[bad] = np.asarray(f_np(u[bad].astype(np.longdouble)), dtype=np.longdouble).astype(float)
        except (TypeError, ValueError):
            # a function without long-double support: mpmath computes those nodes just below
            values[bad] = np.nan
    indices = np.flatnonzero(~np.isfinite(values))
    with mpmath.workdps(20):
        for position, i in enumerate(indices):
            values[i] = float(f_mp(mpmath.mpf(float(u[i]))))
            if stop_at_non_finite and not math.isfinite(values[i]):
                values[indices[position + 1:]] = np.nan   # long double may have left inf there
                break


def _float64_panels(alpha: float, refine: int = 1, half_width: float = _HALF_WIDTH) -> int:
    """Panels of the float64 rule: 32, or more so that the panel width is <= 2.5 / alpha; times ``refine``."""
    return int(refine) * max(_N_INTERVALS, math.ceil(2 * half_width * alpha / _F64_PANEL_ALPHA))


def _float64_rule(alpha: float, beta: float, kinks: tuple[float, ...], n_intervals: int | None = None,
                  half_width: float = _HALF_WIDTH) -> tuple[np.ndarray, np.ndarray]:
    """Nodes z and weights w (density included) of a composite Gauss-Legendre rule for N(0,1),
    split where u = alpha z + beta crosses a kink; ``n_intervals`` defaults to the alpha-scaled count."""
    if n_intervals is None:
        n_intervals = _float64_panels(alpha, 1, half_width)
    kz = [(k - beta) / alpha for k in kinks]
    return gaussian_rule(kz, cut=half_width, panels=n_intervals, nodes_per_panel=_GL_ORDER)


def _poly_mul(p: tuple, q: tuple) -> tuple:
    out = [0] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        for j, b in enumerate(q):
            out[i + j] += a * b
    return tuple(out)


def _poly_deriv(p: tuple) -> tuple:
    return tuple(i * p[i] for i in range(1, len(p))) or (0,)


def _poly_add(p: tuple, q: tuple) -> tuple:
    n = max(len(p), len(q))
    return tuple((p[i] if i < len(p) else 0) + (q[i] if i < len(q) else 0) for i in range(n))


@functools.lru_cache(maxsize=64)
def _score_polys(p: tuple) -> tuple[tuple, tuple]:
    """(z p - p', z^2 p - p - z p'): the beta and alpha score polynomials (times 1/alpha)."""
    dp = _poly_deriv(p)
    beta_poly = _poly_add(_poly_mul((0, 1), p), tuple(-c for c in dp))
    alpha_poly = _poly_add(_poly_add(_poly_mul((0, 0, 1), p), tuple(-c for c in p)),
                           tuple(-c for c in _poly_mul((0, 1), dp)))
    return beta_poly, alpha_poly


def _mp_half_width(dps: int):
    """L with exp(-L^2/2) < 10^-(dps+8): the Gaussian alone leaves nothing beyond it at dps digits."""
    return mpmath.sqrt(2 * (dps + 8) * mpmath.log(10)) + 1


def _mp_rule(alpha, beta, kinks: tuple[float, ...], dps: int, n_intervals: int, half_width=None):
    """Composite Gauss-Legendre nodes/weights (density included) in z for N(0,1) at ``dps`` digits.

    48 nodes per interval on [-L, L] (``half_width``, by default :func:`_mp_half_width`), split at the kinks.
    """
    half_width = _mp_half_width(dps) if half_width is None else half_width
    kz = [(mpmath.mpf(k) - beta) / alpha for k in kinks]
    return gaussian_rule(kz, cut=half_width, panels=n_intervals, nodes_per_panel=48, dps=dps)


def _horner(z: np.ndarray, p: tuple) -> np.ndarray:
    """numpy's polyval(z, p) (lowest degree first), the same operations in place: half the time."""
    out = np.full(z.shape, float(p[-1]))
    for c in p[-2::-1]:
        out *= z
        out += float(c)
    return out


# p(z) on a float64 rule, keyed by (the rule's kinks in z, panel count) and p; see ConditionEvaluator._zpoly
_ZPOLY_CACHE: dict = {}
# w z^k on an mpmath rule; see ConditionEvaluator._set_rule
_MP_POWERS: dict = {}


class ConditionEvaluator:
    """Expectations E[p(z) h(u)], u = alpha z + beta, in float64 (``dps=None``) or mpmath.

    Both engines evaluate phi, phi', phi'' once on a shared composite Gauss-Legendre node set in
    z (split at the kinks), so the ~15 expectations of one Newton step cost one set of function
    evaluations.  The mpmath rule is accepted only when each of E[phi^2], E[phi'^2], E[(phi + shift)^2] (with a
    nonzero ``shift``) and E[phi''^2] (with ``curvature``, when phi' does not jump) has mass below 10^-(dps+3) of
    its total beyond the rule's cut (the range is widened until it has, out to |beta|/alpha beyond the Gaussian's
    own cut: these masses can lie in a far tail), and when E[phi^2] and E[phi'^2] agree with a rule on 1.5x as
    many intervals to 10^-(dps+3) of max(1, E[phi^2], E[phi'^2]); ``error`` records that difference.  The float64 rule has a fixed range; see
    :func:`_truncated_conditions` for what it warns about.

    ``expect(p, h)`` returns E[p(z) h(u)] for a coefficient tuple ``p`` (lowest degree first) and
    ``h`` a function of (phi, phi', phi'') values; ``expect_with_derivatives`` also returns the
    exact partial derivatives in alpha and beta (density differentiated under the integral).
    """

    def __init__(self, funcs: ActivationFunctions, alpha, beta, dps: int | None = None, refine: int = 1, *,
                 shift=None, curvature: bool = True):
        self.funcs, self.dps, self.refine = funcs, dps, refine
        if dps is None:
            self.alpha, self.beta = float(alpha), float(beta)
            if not self.alpha > 0:
                raise ValueError("alpha must be > 0 inside the evaluator (use the mirror for alpha < 0)")
            n_intervals = _float64_panels(self.alpha, refine)
            z, w = _float64_rule(self.alpha, self.beta, funcs.kinks, n_intervals)
            self._z, self._w = z, w
            # the rule's identity (numeric.gauss caches the rule itself under the same key)
            self._rule_key = (tuple((k - self.beta) / self.alpha for k in funcs.kinks), n_intervals)
            u = self.alpha * z + self.beta
            with np.errstate(all="ignore"):
                values = [np.array(f(u), dtype=float) for f in funcs.np_funcs]
            # phi and phi' first: where one is not finite the rule check refuses whatever phi'' holds, and
            # phi'' (its mpmath fallback is the slow part) is repaired only for a rule that holds
            for index in (0, 1):
                _repair_non_finite(values[index], u, funcs.np_funcs[index], funcs.mp_funcs[index],
                                   stop_at_non_finite=True)
            self._values = tuple(values)
            self.error = None
            self._check_rule_holds_the_mass(z, w)
            _repair_non_finite(values[2], u, funcs.np_funcs[2], funcs.mp_funcs[2], stop_at_non_finite=False)
            return
        from symact.errors import DivergentIntegralError

        with mpmath.workdps(dps + 8):
            self.alpha, self.beta = mpmath.mpf(alpha), mpmath.mpf(beta)
            tol = mpmath.mpf(10) ** (-(dps + 3))
            half_width = _mp_half_width(dps)
            # The integrands whose mass the rule must hold, each to tol of its own total: C'(1), C''(1) and Q(1)
            # are ratios of these, and one can live where another is negligible (erf'(u)^2 = 4 exp(-2u^2)/pi at
            # u = z + 30 peaks at z = -24, beyond the cut 14.2 of 30 digits, while phi^2 ~ 1 fills the bulk: the
            # check of their sum passed and C'(1) came out 4.4e-194 for 2.6e-157).
            checked = [("phi^2", _h_shifted_sq(0)), ("phi'^2", _h_dphi_sq)]
            if shift is not None and mpmath.mpf(shift) != 0:
                checked.append(("(phi + delta)^2", _h_shifted_sq(mpmath.mpf(shift))))
            if curvature and not (funcs.slope_jumps or funcs.value_jumps):
                checked.append(("phi''^2", _h_d2phi_sq))
            # A mass in a tail lies between z = 0 and z = -beta/alpha where phi' decays (erf, gelu, tanh: phi'(u)
            # peaks at u = 0), or near z = c alpha for growth like exp(c u): widen (at the same panel width) to
            # |beta|/alpha beyond the Gaussian's own cut, or three times by 1.5 for growth, whichever is wider.
            widest = max(half_width * mpmath.mpf(27) / 8, half_width + abs(self.beta) / self.alpha)
            # panels of width <= 4 / alpha (see _F64_PANEL_ALPHA): at alpha = 30 the fixed 32-panel
            # start refined 5 times still missed 25 digits
            n_intervals = max(32, int(mpmath.ceil(2 * half_width * self.alpha / _MP_PANEL_ALPHA)))
            previous, refined = None, 0
            while refined < 6:
                self._set_rule(n_intervals, half_width)
                sentinel = tuple(self.expect((1,), h) for _, h in checked)
                # mass at the cut: the bulk lies beyond it (exp(x) at alpha = 5 peaks at z = 10, and a
                # cut at 12.4 gave Q(1) 1% low with every refinement agreeing), in a far tail (see above), or the
                # integral diverges; widen the range at the same panel width
                beyond = self._tail_bound(half_width, [h for _, h in checked])
                heavy = [name for (name, _), e, total in zip(checked, beyond, sentinel) if not e <= tol * abs(total)]
                if heavy:
                    if half_width >= widest:
                        raise DivergentIntegralError(
                            f"E[{', '.join(heavy)}] of {funcs.name} at alpha={mpmath.nstr(self.alpha, 8)}, "
                            f"beta={mpmath.nstr(self.beta, 8)} still has mass at |z| = {mpmath.nstr(half_width, 4)}: "
                            "the integral diverges (the activation is not square-integrable under the Gaussian) "
                            "or its bulk lies beyond the rule (fast growth at a large alpha); check the "
                            "activation and alpha."
                        )
                    wider = min(half_width * 3 / 2, widest)
                    n_intervals = int(mpmath.ceil(n_intervals * wider / half_width))
                    half_width, previous = wider, None
                    continue
                if previous is not None:
                    # E[phi^2] and E[phi'^2], relative to max(1, either): the mpmath formulas as written can round
                    # (softplus'' at u = 30 keeps 12 of 38 digits, tanh' = 1 - tanh^2 at u = -20 21), so a rule
                    # change moves a tiny E[phi''^2] or E[phi'^2] by more than 10^-(dps+3) of itself
                    self.error = max(abs(a - b) for a, b in zip(sentinel[:2], previous[:2]))
                    if self.error <= tol * max(1, abs(sentinel[0]), abs(sentinel[1])):
                        return
                previous = sentinel
                n_intervals = n_intervals * 3 // 2
                refined += 1
        raise DivergentIntegralError(
            f"Gaussian expectations of {funcs.name} at alpha={mpmath.nstr(self.alpha, 8)}, "
            f"beta={mpmath.nstr(self.beta, 8)} did not converge to {dps} digits (last change "
            f"{mpmath.nstr(self.error, 3)}); the activation may not be square-integrable under the "
            "Gaussian, or alpha is too large: try a smaller dps or check the activation."
        )

    def _check_rule_holds_the_mass(self, z: np.ndarray, w: np.ndarray) -> None:
        """Refuse when E[phi^2 + phi'^2] is not finite or has mass at the float64 rule's cut |z| = 14.

        The rule integrates |z| <= 14, where the Gaussian alone leaves < 1e-44 out; an integrand that
        is still not negligible at |z| >= 13 (exp(x**2) at any alpha, which diverges; exp(x) at alpha = 5,
        whose bulk lies near z = 2*alpha) would be silently truncated (exp(x**2) gave Q(1) = 9e125)."""
        from symact.errors import DivergentIntegralError

        with np.errstate(all="ignore"):
            mass = w * (self._values[0] ** 2 + self._values[1] ** 2)
            total = float(np.sum(mass))
            edge = float(np.sum(mass[np.abs(z) >= _HALF_WIDTH - 1]))
        if not (math.isfinite(total) and (edge <= 1e-16 * total or self._tail_decays(z, mass, total))):
            raise DivergentIntegralError(
                f"E[phi^2 + phi'^2] of {self.funcs.name} at alpha={self.alpha:.8g}, beta={self.beta:.8g} "
                f"{'is not finite in float64' if not math.isfinite(total) else 'has mass at |z| = 13-14'}, "
                f"the edge of the float64 rule: the integral diverges (the activation is not square-integrable "
                "under the Gaussian), or its bulk lies beyond the rule (fast growth at a large alpha). Check the "
                "activation and alpha, or use the mpmath engine (dps=30), which follows the integrand out and "
                "says which."
            )

    @staticmethod
    def _tail_decays(z: np.ndarray, mass: np.ndarray, total: float) -> bool:
        """Whether the mass beyond the cut |z| = 14 is negligible (< 1e-16 of ``total``) although the band
        13 <= |z| <= 14 is not: on each side, the unit bands 11-12, 12-13, 13-14 must decay, and the tail
        beyond, bounded by the geometric series of the larger band ratio r, M(13-14) r / (1 - r), must be
        negligible.  The mass of phi(alpha z + beta) can lie wholly in a far tail (relu6 at alpha = 0.034,
        beta = -1/3 is 0 for z < 9.9: Q(1) = 4.6e-28, with 4e-16 of it at |z| >= 13), where the edge test
        alone reported "the integral diverges"; a Gaussian tail falls by e^-13 per band there.  A growing
        integrand (exp(x**2), or exp(x) at alpha = 5 with its bulk near z = 10) does not decay."""
        for side in (1.0, -1.0):
            t = side * z
            edges = (_HALF_WIDTH - 3, _HALF_WIDTH - 2, _HALF_WIDTH - 1, math.inf)
            bands = [float(np.sum(mass[(t >= lo) & (t < hi)])) for lo, hi in zip(edges, edges[1:])]
            if bands[2] <= 1e-16 * total:
                continue
            if not (bands[0] > bands[1] > bands[2] > 0):
                return False
            r = max(bands[1] / bands[0], bands[2] / bands[1])
            if not bands[2] * r / (1 - r) <= 1e-16 * total:
                return False
        return True

    def sentinels(self) -> tuple:
        """E[phi], E[(phi - E phi)^2], E[(z^2 - 1)(phi - E phi)^2], E[phi'^2] (and E[phi''^2] when
        phi' is continuous): the expectations every condition is built from, for error checks."""
        m = self.expect((1,), _h_phi)
        out = [m, self.expect((1,), _h_shifted_sq(-m)), self.expect((-1, 0, 1), _h_shifted_sq(-m)),
               self.expect((1,), _h_dphi_sq)]
        if not self.funcs.slope_jumps:
            out.append(self.expect((1,), _h_d2phi_sq))
        return tuple(out)

    def _tail_bound(self, half_width, integrands) -> list:
        """For each h of ``integrands``, a bound on the mass of w*|h| beyond the mpmath rule's cut, as
        :func:`_tail_negligible` judges the float64 rule: on each side the unit bands of |z| from half_width - 3
        to half_width; when they decay, the geometric bound M(last band) r / (1 - r) (r the larger band ratio),
        else the last band's mass times 10^6 (the integrand may still be growing there).  The last band alone
        overstated it by orders of magnitude (erf at beta = 10 peaks at z = -8 and falls by e^-67 to the cut)."""
        start = half_width - 3
        # (side, band, w, values) of the nodes in the bands, found once for all integrands
        nodes = [(z > 0, min(2, int(abs(z) - start)), w, vals)
                 for z, w, vals in zip(self._z, self._w, self._lazy) if abs(z) >= start]
        out = []
        for h in integrands:
            bound = mpmath.mpf(0)
            sums = {True: [mpmath.mpf(0)] * 3, False: [mpmath.mpf(0)] * 3}
            for side, band, w, vals in nodes:
                sums[side][band] += w * abs(h(*vals))
            for bands in sums.values():
                if bands[2] == 0:
                    continue
                if bands[0] > bands[1] > bands[2]:
                    r = max(bands[1] / bands[0], bands[2] / bands[1])
                    bound += bands[2] * r / (1 - r)
                else:
                    bound += bands[2] * 10 ** 6
            out.append(bound)
        return out

    def _set_rule(self, n_intervals: int, half_width=None) -> None:
        z, w = _mp_rule(self.alpha, self.beta, self.funcs.kinks, self.dps, n_intervals, half_width)
        phi, d1, d2 = self.funcs.mp_funcs
        u = [self.alpha * zz + self.beta for zz in z]
        self._z, self._w = z, w
        self._lazy = [(_Lazy(phi, uu), _Lazy(d1, uu), _Lazy(d2, uu)) for uu in u]
        # w_i z_i^k, k = 0..7: polynomial weights become dot products; kept per rule (a Newton polish
        # without kinks uses the same two rules at every step)
        key = ((self.alpha, self.beta) if self.funcs.kinks else None, self.funcs.kinks, self.dps, n_intervals,
               half_width, mpmath.mp.prec)
        wz = _MP_POWERS.get(key)
        if wz is None:
            wz = [w]
            for _ in range(7):
                wz.append([a * b for a, b in zip(wz[-1], z)])
            if len(_MP_POWERS) >= 16:
                _MP_POWERS.clear()
            _MP_POWERS[key] = wz
        self._wz = wz

    def expect(self, p: tuple, h: Callable) -> Any:
        return self._expect_values(p, self._values_of(h))

    def _values_of(self, h: Callable) -> Any:
        """h at the nodes: a float64 array, or a list of mpf at dps + 8 digits."""
        if self.dps is None:
            return h(*self._values)
        with mpmath.workdps(self.dps + 8):
            return [h(*vals) for vals in self._lazy]

    def _expect_values(self, p: tuple, hv) -> Any:
        """E[p(z) h] from the values ``hv`` of h at the nodes (so that the three sums of
        :meth:`expect_with_derivatives` evaluate h once)."""
        if self.dps is None:
            return float(np.dot(self._w, self._zpoly(p) * hv))
        with mpmath.workdps(self.dps + 8):
            return mpmath.fsum(c * mpmath.fdot(self._wz[k], hv) for k, c in enumerate(p) if c)

    def _zpoly(self, p: tuple) -> np.ndarray:
        """p(z) at the float64 nodes, kept per rule (a Newton step asks for the same five polynomials
        a dozen times, and every step at the same panel count, kinks aside, has the same nodes)."""
        try:
            return _ZPOLY_CACHE[self._rule_key, p]
        except KeyError:
            if len(_ZPOLY_CACHE) >= 64:
                _ZPOLY_CACHE.clear()
            out = _ZPOLY_CACHE[self._rule_key, p] = _horner(self._z, p)
            out.flags.writeable = False
            return out
        except TypeError:  # unhashable coefficients
            return np.polynomial.polynomial.polyval(self._z, p)

    def expect_each(self, polys: tuple, h: Callable) -> tuple:
        """(E[p(z) h(u)] for p in ``polys``), evaluating h at the nodes once."""
        hv = self._values_of(h)
        return tuple(self._expect_values(p, hv) for p in polys)

    def expect_with_derivatives(self, p: tuple, h: Callable) -> tuple[Any, Any, Any]:
        """(E[p h], d/d alpha, d/d beta) with gamma, delta and h held fixed."""
        beta_poly, alpha_poly = _score_polys(p)
        hv = self._values_of(h)  # once for the three sums
        # the divisions at the sums' precision (mpmath: dps + 8 digits)
        with contextlib.nullcontext() if self.dps is None else mpmath.workdps(self.dps + 8):
            return (self._expect_values(p, hv), self._expect_values(alpha_poly, hv) / self.alpha,
                    self._expect_values(beta_poly, hv) / self.alpha)


def checked_float64_evaluator(funcs: ActivationFunctions, alpha: float, beta: float, *, rtol: float = 1e-14,
                              max_refine: int = 64) -> ConditionEvaluator:
    """A float64 :class:`ConditionEvaluator` whose accuracy has been checked: the rule with
    ``refine`` r is accepted when every :meth:`ConditionEvaluator.sentinels` value agrees with the
    rule on 2r times as many panels to ``rtol`` (E[phi] relative to the larger of |E[phi]| and E[phi^2],
    the centred E[(phi - E phi)^2] and E[(z^2 - 1)(phi - E phi)^2] relative to the variance, the others to
    themselves); r doubles from 1 until it does.  Gauss-Legendre converges geometrically in the panel
    count, so the difference bounds the error of the coarser rule.  Rounding is estimated apart
    (:func:`_centred_rounding_error`): the centred sums cancel when phi varies little about its mean,
    and more panels do not help.  ``error`` is the larger of the two (relative); when it exceeds
    ``rtol`` for every r up to ``max_refine`` (at once when rounding does), that rule is returned with its
    (too large) ``error`` so that the caller can fall back to mpmath.
    """
    refine, ev = 1, ConditionEvaluator(funcs, alpha, beta, refine=1)
    coarse = ev.sentinels()
    rounding = _centred_rounding_error(ev, coarse)
    if rounding > rtol:  # more panels cannot help
        ev.error = rounding
        return ev
    while True:
        fine_ev = ConditionEvaluator(funcs, alpha, beta, refine=2 * refine)
        fine = fine_ev.sentinels()
        error = max(rounding, max(abs(a - b) / scale for a, b, scale in zip(coarse, fine, _sentinel_scales(fine))))
        if error <= rtol or 2 * refine >= max_refine:
            ev.error = error
            if error > rtol:
                fine_ev.error = error
                return fine_ev
            return ev
        refine, ev, coarse = 2 * refine, fine_ev, fine


def _sentinel_scales(values: tuple) -> list:
    """What each :meth:`ConditionEvaluator.sentinels` value's error is judged against: the conditions are
    ratios over the variance E[(phi - E phi)^2] (Q'(1), C'(1), C''(1)), so its error and that of
    E[(z^2 - 1)(phi - E phi)^2] count relative to the variance, not to E[phi^2] = variance + E[phi]^2,
    which hid a 1e-5 relative error of a variance 1e-6 of E[phi^2] (tanh near linear, C'(1) = 1 + 1e-6)."""
    m, var = values[0], abs(values[1])
    floor = 1e-300
    return [max(abs(m), var + m * m, floor), max(var, floor), max(abs(values[2]), var, floor)] + \
        [max(abs(v), floor) for v in values[3:]]


def _centred_rounding_error(ev: ConditionEvaluator, values: tuple) -> float:
    """An estimate, relative to the variance, of the float64 rounding error of the centred sums
    E[(phi - m)^2] and E[(z^2 - 1)(phi - m)^2]: each phi value carries an error of about eps |phi| (and m of
    eps |m|), which moves w (phi - m)^2 by about 2 eps w |phi - m| (|phi| + |m|); independent from node to
    node, they add up to the root of the sum of squares.  It is ~1e-16 when phi varies on the scale of its
    size, and grows like eps |phi| / |phi - m| when phi varies little about a large mean (tanh at
    alpha = 1.4e-3, beta = 0.55, i.e. C'(1) = 1 + 1e-6: 3e-14 against a true 2.7e-15, where the
    rule-doubling check saw 2e-16 and solutions reported residuals of 2e-16 with true ones of 3e-15)."""
    m, var = values[0], values[1]
    if not var > 0:
        return math.inf
    f = ev._values[0]
    with np.errstate(all="ignore"):
        terms = 2 * np.finfo(float).eps * ev._w * np.abs(f - m) * (np.abs(f) + abs(m))
        z2 = np.abs(ev._z * ev._z - 1)
        estimate = max(float(np.sqrt(np.sum(terms * terms))) / var,
                       float(np.sqrt(np.sum((z2 * terms) ** 2))) / max(abs(values[2]), var))
    return estimate if math.isfinite(estimate) else math.inf


def gaussian_expectation_mp(f: Callable, dps: int, breakpoints: tuple, mean, std):
    """E[f(X)], X ~ N(mean, std^2), at ``dps`` digits by adaptive quadrature (an independent check).

    Uses ``numeric.gauss.gaussian_expectation`` (the kernel engine) when it is installed; the
    local mpmath tanh-sinh rule below has the same contract and serves until then.
    """
    try:
        from numeric.gauss import gaussian_expectation
    except ImportError:
        gaussian_expectation = None
    if gaussian_expectation is not None:
        return gaussian_expectation(f, dps=dps, breakpoints=breakpoints, mean=mean, std=std).value
    with mpmath.workdps(dps + 10):
        mean, std = mpmath.mpf(mean), mpmath.mpf(std)
        zs = [(mpmath.mpf(b) - mean) / std for b in breakpoints]
        points = [-mpmath.inf] + sorted(set(zs) | {mpmath.mpf(0)}) + [mpmath.inf]
        norm = 1 / mpmath.sqrt(2 * mpmath.pi)
        value = mpmath.quad(lambda z: f(mean + std * z) * mpmath.exp(-z * z / 2), points) * norm
    return +value


class _Lazy:
    """A value computed on first use and kept (a node's phi, phi', phi'' are needed by several sums)."""

    __slots__ = ("_f", "_u", "_v")

    def __init__(self, f, u):
        self._f, self._u, self._v = f, u, None

    def get(self):
        if self._v is None:
            self._v = self._f(self._u)
        return self._v


def _val(v):
    return v.get() if isinstance(v, _Lazy) else v


# h functions: arguments are phi(u), phi'(u), phi''(u) (NumPy arrays or _Lazy mpmath values)
def _h_phi(f, f1, f2):
    return _val(f)


def _h_dphi_sq(f, f1, f2):
    v = _val(f1)
    return v * v


def _h_d2phi_sq(f, f1, f2):
    v = _val(f2)
    return v * v


def _h_dphi(f, f1, f2):
    return _val(f1)


def _h_shifted_times_dphi(shift):
    def h(f, f1, f2):
        return (_val(f) + shift) * _val(f1)

    return h


def _h_shifted(shift):
    def h(f, f1, f2):
        return _val(f) + shift

    return h


def _h_shifted_sq(shift):
    def h(f, f1, f2):
        v = _val(f) + shift
        return v * v

    return h


@dataclass(frozen=True)
class ShiftedExpectations:
    r"""The Gaussian expectations every condition is built from, for :math:`f = \phi(u) + \delta`,
    :math:`u = \alpha z + \beta`, each with its partial derivatives in alpha and beta (``_a``, ``_b``; delta held
    fixed), as :func:`shifted_expectations` computes them:

    * ``s`` = E[f^2],  ``n`` = E[(z^2 - 1) f^2],  ``m`` = E[phi],
    * ``d1`` = E[phi'^2],  ``d2`` = E[phi''^2] (None when not asked for, or when phi' jumps).

    ``delta`` is the shift used (E[phi] negated when :func:`shifted_expectations` was asked to centre).  The
    derivatives in delta are ``s_d`` = 2 (m + delta) and ``n_d`` = 2 E[(z^2 - 1) phi] = 2 alpha E[z phi'] =
    2 alpha ``m_a`` (Stein's lemma, for continuous phi).
    """

    delta: Any
    s: Any
    s_a: Any
    s_b: Any
    n: Any
    n_a: Any
    n_b: Any
    m: Any
    m_a: Any
    m_b: Any
    d1: Any
    d1_a: Any
    d1_b: Any
    d2: Any = None
    d2_a: Any = None
    d2_b: Any = None


def shifted_expectations(ev: ConditionEvaluator, delta=None, *, curvature: bool = True) -> ShiftedExpectations:
    r"""E[f^2], E[(z^2 - 1) f^2], E[phi], E[phi'^2] (and E[phi''^2] with ``curvature``, when phi' does not jump),
    f = phi(alpha z + beta) + delta, with their exact alpha and beta derivatives, on ``ev``'s rule; one
    implementation for :func:`transform_conditions` and the Newton systems of :mod:`analysis.shaping`.
    ``delta=None`` centres: delta = -E[phi] on the same rule, so that E[f] = 0 there.

    For continuous phi the forms of the module docstring, small where the result is small: with k = f phi',
    E[(z^2 - 1) f^2] = 2 alpha E[z k], d/dbeta E[f^2] = 2 E[k], d/dalpha E[f^2] = 2 E[z k],
    d/dbeta E[(z^2 - 1) f^2] = 2 E[(z^2 - 1) k], d/dalpha = 2 E[(z^3 - z) k], d/dbeta E[phi] = E[phi'],
    d/dalpha E[phi] = E[z phi'].  The density forms E[(z^2 - 1) f^2] etc. are sums of terms of size f^2 whatever
    their value (the sigmoid at beta = 45: -3.0e-18 in float64 for Q'(1) = -4.72e-20).  Where phi jumps
    (Heaviside, sign) phi' lacks the delta at the jump, and the density forms are used.
    """
    m = ev.expect((1,), _h_phi)
    if delta is None:
        delta = -m
    if ev.funcs.value_jumps:
        s, s_a, s_b = ev.expect_with_derivatives((1,), _h_shifted_sq(delta))
        n, n_a, n_b = ev.expect_with_derivatives((-1, 0, 1), _h_shifted_sq(delta))
        m, m_a, m_b = ev.expect_with_derivatives((1,), _h_phi)
    else:
        a = ev.alpha
        s = ev.expect((1,), _h_shifted_sq(delta))
        k0, k1, k2, k3 = ev.expect_each(((1,), (0, 1), (-1, 0, 1), (0, -1, 0, 1)), _h_shifted_times_dphi(delta))
        m_b, m_a = ev.expect_each(((1,), (0, 1)), _h_dphi)
        s_b, s_a = 2 * k0, 2 * k1
        n, n_b, n_a = 2 * a * k1, 2 * k2, 2 * k3
    d1, d1_a, d1_b = ev.expect_with_derivatives((1,), _h_dphi_sq)
    d2 = d2_a = d2_b = None
    if curvature and not (ev.funcs.slope_jumps or ev.funcs.value_jumps):
        d2, d2_a, d2_b = ev.expect_with_derivatives((1,), _h_d2phi_sq)
    return ShiftedExpectations(delta, s, s_a, s_b, n, n_a, n_b, m, m_a, m_b, d1, d1_a, d1_b, d2, d2_a, d2_b)


# ----------------------------------------------------------------------------------------
# The five conditions with partial derivatives
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConditionSet:
    """Q(1), Q'(1), C(0), C'(1), C''(1) (or their derivatives in one parameter)."""

    q_value: Any
    q_slope: Any
    c_at_0: Any
    c_slope: Any
    c_curvature: Any

    def as_dict(self) -> dict[str, Any]:
        return {"q_value": self.q_value, "q_slope": self.q_slope, "c_at_0": self.c_at_0,
                "c_slope": self.c_slope, "c_curvature": self.c_curvature}

    def __repr__(self) -> str:
        def fmt(v):
            return mpmath.nstr(v, 17) if isinstance(v, mpmath.mpf) else repr(v)

        body = ", ".join(f"{k}={fmt(v)}" for k, v in self.as_dict().items())
        return f"ConditionSet({body})"


@dataclass(frozen=True)
class TransformConditions:
    """The five kernel conditions of psi = gamma*(phi(alpha x + beta) + delta), with d/d alpha, d/d beta.

    ``values``, ``d_alpha``, ``d_beta`` are :class:`ConditionSet` records; the derivatives are
    partial (gamma and delta held fixed).  ``dps`` is None for the float64 engine, else the
    number of mpmath digits.  ``c_curvature`` is ``inf`` (derivatives ``nan``) when phi' or phi jumps; ``c_slope`` too
    when phi jumps (Heaviside, sign).
    """

    activation: str
    alpha: Any
    beta: Any
    gamma: Any
    delta: Any
    dps: int | None
    values: ConditionSet
    d_alpha: ConditionSet
    d_beta: ConditionSet


def _quotient(num, dnum, den, dden):
    """d(num/den) from d num and d den."""
    return (dnum * den - num * dden) / (den * den)


def _check_parameters(alpha, beta, gamma, delta) -> None:
    """Refuse alpha = 0 and non-finite parameters with a DomainError that names the fix (alpha = 0
    reached the evaluator as a bare ValueError in float64 and a ZeroDivisionError with mpmath)."""
    from symact.errors import DomainError

    for name, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma), ("delta", delta)):
        try:
            finite = bool(mpmath.isfinite(mpmath.mpf(v)))
        except (TypeError, ValueError):
            raise DomainError(f"{name} = {v!r} is not a real number; the transform parameters "
                              "alpha, beta, gamma, delta must be finite reals.") from None
        if not finite:
            raise DomainError(f"{name} = {v!r}: the transform parameters must be finite.")
    if mpmath.mpf(alpha) == 0:
        raise DomainError(
            "alpha = 0: psi(x) = gamma*(phi(beta) + delta) is constant, so C'(1) and the exact "
            "alpha/beta derivatives (which divide by alpha) are undefined; use a nonzero alpha.")
    if mpmath.mpf(gamma) == 0:
        raise DomainError(
            "gamma = 0: psi(x) = 0 for every x, so Q(1) = 0 and the C map (a ratio over Q) is undefined; "
            "use a nonzero gamma.")


def _refuse_zero_q(name, alpha, beta, delta, dps, phi_nonzero: bool = False) -> None:
    """DomainError for E[(phi(alpha z + beta) + delta)^2] = 0 on the rule: C(0), C'(1), C''(1) divide
    by it (relu at beta = -40, whose mass lies beyond every node, raised a bare ZeroDivisionError).
    ``phi_nonzero``: phi or delta is not 0 at the nodes, so phi + delta may have rounded to 0 (float64 only)."""
    from symact.errors import DomainError

    engine = "float64" if dps is None else f"{dps}-digit mpmath"
    rounded = (
        " Or phi rounds to -delta at this precision, though psi is not 0: phi + delta cancels (in float64 "
        "tanh(u) - 1 = -2/(exp(2u) + 1) is 0 for u > 19); the mpmath engine (dps=30) tells the two apart, and "
        "for an activation with phi(x) + phi(-x) = c0 the parameters (alpha, -beta, gamma, -delta - c0) "
        "have the same conditions without the cancellation.") if phi_nonzero else ""
    raise DomainError(
        f"Q(1) of gamma*({name}(alpha*x + beta) + delta) at alpha={float(alpha):.8g}, beta={float(beta):.8g}, "
        f"delta={float(delta):.8g} is 0 on the {engine} rule: phi(alpha z + beta) + delta vanishes at every "
        "node, i.e. wherever the Gaussian has mass at this precision (e.g. relu with beta far below "
        "-alpha, whose mass lies beyond the rule), and the C map, a ratio over Q(1), is undefined. Choose beta "
        "and delta so that psi is not zero near z = 0." + rounded)


#: Relative rounding of phi + delta (see :func:`_shift_rounding`) above which the float64 engine warns.
SHIFT_ROUNDING_WARN = 1e-10


def _shift_rounding(ev: ConditionEvaluator, delta: float, s: float) -> tuple[float, bool]:
    """(rho, phi_nonzero) on the float64 rule.  rho estimates what rounding of f = phi(u) + delta does to the
    conditions.  f at a node is off by about eps g, g = |phi| + |delta| (phi's own rounding, then the sum's), so

    * E[f^2] (Q(1), and the denominators of the C map) is off by 2 eps E[|f| g], relatively
      rho_Q = eps E[|f| g] / E[f^2] (half of it, as errors of a sign do not all add up);
    * E[f] is off by about eps E[g], so C(0) = E[f]^2 / E[f^2] <= 1 is off by about
      rho_C = 2 eps E[g] / sqrt(E[f^2]) (absolute), since |E f| <= sqrt(E f^2).

    rho = max(rho_Q, rho_C).  It is ~eps where |f| ~ g and grows as delta cancels phi on the Gaussian's mass
    (tanh(u) - 1 at u ~ 12: rho ~ 2e-7, while C(0) is 8e-9 off, Q(1) 2e-9 relatively); no form of the conditions
    does better, since each holds a factor f, whose digits are lost before any sum.  With delta = 0 nothing
    cancels (f = phi, rho <= 2 eps) and 0 is returned.  ``s`` is E[f^2] on the rule; ``phi_nonzero``: whether
    g has mass on the rule (then an E[f^2] of 0 may be rounding)."""
    if delta == 0:
        return 0.0, False
    phi, w = ev._values[0], ev._w
    eps = float(np.finfo(float).eps)
    with np.errstate(all="ignore"):
        weighted_size = w * (np.abs(phi) + abs(delta))
        mass = float(np.sum(weighted_size))
        if not s > 0:
            return math.inf, mass > 0
        rho = max(eps * float(np.dot(weighted_size, np.abs(phi + delta))) / s, 2 * eps * mass / math.sqrt(s))
    return rho, True


def _check_settings(dps, refine) -> None:
    """dps: None or a whole number >= 1; refine: a whole number >= 1.  dps = 0 or -2 returned values at
    about one digit (Q(1) of tanh 0.375 or 0.5, not 0.394) without a word, refine = 0 raised a bare
    ZeroDivisionError and refine = 1.5 was truncated to 1."""

    from symact.errors import DomainError, is_whole_number

    if dps is not None and not is_whole_number(dps, 1):
        raise DomainError(f"dps={dps!r}: give a whole number of digits >= 1 for mpmath, or None for float64.")
    if not is_whole_number(refine, 1):
        raise DomainError(f"refine={refine!r}: give a whole number >= 1 (the factor on the float64 rule's panels).")


def _tail_negligible(z: np.ndarray, mass: np.ndarray, allowed: float) -> bool:
    """Whether, on each side, the unit bands 11-12, 12-13, 13-14 of |z| decay and the geometric bound
    M(13-14) r / (1 - r) (r the larger band ratio) on the mass beyond the cut is at most ``allowed``."""
    for side in (1.0, -1.0):
        t = side * z
        edges = (_HALF_WIDTH - 3, _HALF_WIDTH - 2, _HALF_WIDTH - 1, math.inf)
        bands = [float(np.sum(mass[(t >= lo) & (t < hi)])) for lo, hi in zip(edges, edges[1:])]
        if bands[2] <= allowed:
            continue
        if not (bands[0] > bands[1] > bands[2] > 0):
            return False
        r = max(bands[1] / bands[0], bands[2] / bands[1])
        if not bands[2] * r / (1 - r) <= allowed:
            return False
    return True


def _truncated_conditions(ev: ConditionEvaluator, delta: float) -> list[str]:
    """The conditions whose float64 integrand has its mass at the rule's cut |z| = 14 or beyond: (phi + delta) phi'
    for Q'(1) (when phi is continuous), phi'^2 for C'(1), phi''^2 for C''(1) (when finite).  Each is judged as
    :meth:`ConditionEvaluator._tail_decays` judges E[phi^2 + phi'^2] (the unit bands of |z| from 11 to 14 must
    decay, and the geometric bound on the mass beyond the cut be small), against its own total and to 1e-13 of
    it (the engine's accuracy; 1e-16 flagged relu_squared at beta = -10, whose Q'(1) loses 1e-17 beyond):
    phi' can be far smaller in the bulk than in a tail (erf'(u)^2 = 4 exp(-2u^2) / pi at u = 30 + z peaks at
    z = -24), where the rule cut C'(1) of erf at beta = 30 to 1e-267 (exactly 4 exp(-360) / (pi sqrt 5) / Q(1)
    = 2.6e-157), unseen by the check of phi^2 + phi'^2, which phi^2 ~ 1 dominates."""
    funcs = ev.funcs
    if funcs.value_jumps:
        return []
    phi, d1, d2 = ev._values
    checks = [("Q'(1)", (phi + delta) * d1), ("C'(1)", d1 * d1)]
    if not funcs.slope_jumps:
        checks.append(("C''(1)", d2 * d2))
    edge = np.abs(ev._z) >= _HALF_WIDTH - 1
    out = []
    with np.errstate(all="ignore"):
        for name, h in checks:
            mass = ev._w * np.abs(h)
            total = float(np.sum(mass))
            if total > 0 and float(np.sum(mass[edge])) > 1e-13 * total and not _tail_negligible(ev._z, mass, 1e-13 * total):
                out.append(name)
    return out


def transform_conditions(act: Any, alpha, beta, gamma, delta, *, dps: int | None = None,
                         refine: int = 1) -> TransformConditions:
    r"""Q(1), Q'(1), C(0), C'(1), C''(1) of :math:`\gamma(\phi(\alpha x+\beta)+\delta)` and their exact
    partial derivatives in :math:`\alpha` and :math:`\beta`.

    ``act``: an Activation, catalogue name, or SymPy expression in one symbol.  ``dps=None``:
    float64 (``refine``: multiply the panels of the float64 rule, see
    :func:`checked_float64_evaluator`); an integer: mpmath at that many digits.  A negative ``alpha`` is reduced to a
    positive one by the reflection :math:`z \to -z` (for which every condition is invariant).

    >>> import sympy
    >>> x = sympy.Symbol("x", real=True)
    >>> tc = transform_conditions(sympy.erf(x), 0.5, 0.1, 2.0, -0.1, dps=30)
    >>> tc.dps, float(tc.values.q_value) > 0
    (30, True)
    """
    funcs = activation_functions(act)
    _check_parameters(alpha, beta, gamma, delta)
    _check_settings(dps, refine)
    if dps is None:  # the float64 engine: "0.5" or sympy numbers would meet a bare TypeError in "alpha < 0"
        alpha, beta, gamma, delta = (float(mpmath.mpf(v)) for v in (alpha, beta, gamma, delta))
    sign = 1
    if (alpha < 0) if dps is None else (mpmath.mpf(alpha) < 0):
        # psi(x) with alpha < 0 equals psi_{|alpha|}(-x); z and -z have the same law, so every
        # condition is unchanged and d/d alpha flips sign.
        alpha, sign = -alpha, -1
    ev = ConditionEvaluator(funcs, alpha, beta, dps, refine=refine, shift=delta)
    ctx = mpmath.workdps(dps + 10) if dps is not None else _nullcontext()
    with ctx:
        if dps is not None:
            gamma, delta = mpmath.mpf(gamma), mpmath.mpf(delta)
        a = ev.alpha
        g2 = gamma * gamma
        # through k = (phi + delta) phi' where phi is continuous (Stein's lemma, see the module docstring)
        e = shifted_expectations(ev, delta)
        s, s_a, s_b, n, n_a, n_b = e.s, e.s_a, e.s_b, e.n, e.n_a, e.n_b
        m, m_a, m_b, d1, d1_a, d1_b = e.m, e.m_a, e.m_b, e.d1, e.d1_a, e.d1_b
        if dps is None:
            rho, phi_nonzero = _shift_rounding(ev, delta, s)
        if not s > 0:
            _refuse_zero_q(funcs.name, alpha, beta, delta, dps, phi_nonzero=dps is None and phi_nonzero)
        truncated = _truncated_conditions(ev, delta) if dps is None else []
        if truncated:
            warnings.warn(
                f"float64 transform_conditions of {funcs.name} at alpha={alpha:.8g}, beta={beta:.8g}: the integrand of "
                f"{', '.join(truncated)} has its mass at or beyond the float64 rule's cut |z| = 14 (phi' is far smaller "
                "in the bulk than in a tail, as erf'(u) = 2 exp(-u^2)/sqrt(pi) at beta = 30), so they and their "
                "derivatives come out too small, by orders of magnitude; they are tiny next to Q(1). Use beta "
                "nearer 0, or the mpmath engine (dps=30), which widens its range to where each integrand's "
                "mass lies.", RuntimeWarning, stacklevel=2)
        if dps is None and rho > SHIFT_ROUNDING_WARN:
            warnings.warn(
                f"float64 transform_conditions of {funcs.name} at alpha={alpha:.8g}, beta={beta:.8g}, "
                f"delta={delta:.8g}: phi(alpha z + beta) + delta cancels on the Gaussian's mass, so rounding "
                f"leaves errors of about {rho:.1e} in Q(1), Q'(1), C'(1), C''(1) (relative), C(0) (absolute) and "
                "their derivatives (each holds a factor phi + delta). Use the mpmath engine (dps=30), or for an activation with "
                "phi(x) + phi(-x) = c0 the parameters (alpha, -beta, gamma, -delta - c0), which have the same "
                "conditions.", RuntimeWarning, stacklevel=2)
        md = m + delta
        q_value, q_slope = g2 * s, g2 * n / 2
        c0 = md * md / s
        c0_a, c0_b = (_quotient(md * md, 2 * md * dm, s, ds) for dm, ds in ((m_a, s_a), (m_b, s_b)))
        c1 = a * a * d1 / s
        c1_a = _quotient(a * a * d1, 2 * a * d1 + a * a * d1_a, s, s_a)
        c1_b = _quotient(a * a * d1, a * a * d1_b, s, s_b)
        inf = math.inf if dps is None else mpmath.inf
        nan = math.nan if dps is None else mpmath.nan
        if funcs.value_jumps:
            # phi' is a delta at a jump of phi (dropped from d1): E[psi'^2] is infinite, and so
            # is C'(1) (the step's C map 1/4 + asin(c)/(2 pi) has an infinite slope at c = 1);
            # the regular part alone gave C'(1) = C''(1) = 0 for Heaviside and sign
            c1, c1_a, c1_b = inf, nan, nan
        if funcs.slope_jumps or funcs.value_jumps:
            c2, c2_a, c2_b = inf, nan, nan
        else:
            d2, d2_a, d2_b = e.d2, e.d2_a, e.d2_b
            a4 = a ** 4
            c2 = a4 * d2 / s
            c2_a = _quotient(a4 * d2, 4 * a ** 3 * d2 + a4 * d2_a, s, s_a)
            c2_b = _quotient(a4 * d2, a4 * d2_b, s, s_b)
        values = ConditionSet(q_value, q_slope, c0, c1, c2)
        d_alpha = ConditionSet(sign * g2 * s_a, sign * g2 * n_a / 2, sign * c0_a, sign * c1_a, sign * c2_a)
        d_beta = ConditionSet(g2 * s_b, g2 * n_b / 2, c0_b, c1_b, c2_b)
    if dps is not None:  # results carry the requested precision (guard digits dropped)
        with mpmath.workdps(dps):
            values, d_alpha, d_beta = (ConditionSet(**{k: +v for k, v in cs.as_dict().items()})
                                       for cs in (values, d_alpha, d_beta))
    return TransformConditions(funcs.name, sign * ev.alpha, ev.beta, gamma, delta, dps, values, d_alpha, d_beta)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
