r"""How well a smooth activation with a shape parameter approximates a target.

For a candidate :math:`c_p(x)` (squareplus(b), softplus(beta), SAU(sigma), SMU(mu), ...) and a
target :math:`t(x)` (relu, softplus, leaky_relu, ...):

* :func:`error_expression` -- :math:`e_p(x) = c_p(x) - t(x)` as a SymPy expression;
* :func:`match_conditions` -- parameter values from exact conditions at a point, solved by SymPy
  (equal value, slope or curvature at 0, ...): squareplus(0) = softplus(0) gives
  :math:`b = 4\ln^2 2`, equal curvature at 0 gives :math:`b = 4`;
* :func:`dominance_threshold` -- the least parameter with :math:`c_p \ge t` everywhere (for a
  candidate increasing in :math:`p`): :math:`\sup_x p^*(x)` where :math:`c_{p^*(x)}(x) = t(x)`;
  squareplus >= softplus iff :math:`b \ge 4\ln^2 2`;
* :func:`minimax` -- the parameter minimising :math:`\max_x |e_p(x)|`, its max error and the
  equioscillation abscissae, in mpmath at ``dps`` digits;
* :func:`asymptotic_expansion` -- series at 0 and at :math:`\pm\infty`.

Candidates and targets may be Activations (their other parameters are replaced by their values),
catalogue names / formula strings (when ``symact.activation`` is available), or SymPy expressions
in ``x = Symbol('x', real=True)``.

>>> import sympy
>>> x, b = sympy.Symbol("x", real=True), sympy.Symbol("b", positive=True)
>>> squareplus = (x + sympy.sqrt(x**2 + b)) / 2
>>> softplus = sympy.log(1 + sympy.exp(x))
>>> match_conditions(squareplus, softplus, b, ["value", "curvature"])
{'value': (4*log(2)**2,), 'curvature': (4,)}
"""

from __future__ import annotations

import bisect
import math
import numbers
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import mpmath
import sympy

from analysis._interval_bounds import NoIntervalBound, interval_enclosure, interval_precision
from numeric.gauss import limit_at
from numeric.lambdify_modules import MPMATH_MODULES
from symact._safe_parse import safe_sympify
from symact.errors import DomainError, FormulaError, is_whole_number

__all__ = [
    "X",
    "error_expression",
    "match_conditions",
    "DominanceThreshold",
    "UncertifiedMaximumWarning",
    "dominance_threshold",
    "MinimaxResult",
    "minimax",
    "asymptotic_expansion",
]

X = sympy.Symbol("x", real=True)

_CONDITION_ORDERS = {"value": 0, "slope": 1, "curvature": 2}


# ----------------------------------------------------------------------------- inputs


def _expression(f, keep: Iterable[sympy.Symbol] = ()) -> sympy.Expr:
    """A SymPy expression in X from an Activation, a name/formula, or an expression.

    Parameters of an Activation other than those in ``keep`` are replaced by their values."""
    keep = set(keep)
    if hasattr(f, "expr") and hasattr(f, "params"):
        values = {s: v for s, v in f.params.items() if s not in keep and s.name not in {k.name for k in keep}}
        return sympy.sympify(f.expr).subs(values)
    if isinstance(f, str):
        import symact

        factory = getattr(symact, "activation", None)
        if factory is not None:
            return _expression(factory(f), keep)
        return safe_sympify(f, "formula", {"x": X})
    return safe_sympify(f, "formula")


def _parameter(expr: sympy.Expr, parameter) -> sympy.Symbol:
    """The candidate's own symbol for ``parameter`` (a name or a Symbol), matched by name: a plain
    ``Symbol("b")`` names the catalogue's ``b`` (declared positive), which SymPy counts as another symbol, so
    minimax reported "the error does not depend on b" and dominance_threshold "0 solutions"."""
    if isinstance(parameter, sympy.Symbol) and parameter in expr.free_symbols:
        return parameter
    name = parameter.name if isinstance(parameter, sympy.Symbol) else str(parameter)
    matches = [s for s in expr.free_symbols if s.name == name]
    if len(matches) != 1:
        names = sorted(s.name for s in expr.free_symbols if s != X)
        if matches:
            raise FormulaError(f"parameter {parameter!r} names {len(matches)} different symbols of the candidate "
                               f"({sorted(matches, key=sympy.default_sort_key)}, with different assumptions); "
                               "pass the Symbol itself")
        raise FormulaError(f"parameter {parameter!r} is not a symbol of the candidate (its symbols: {names}); "
                           "pass one of those or the Symbol itself")
    return matches[0]


def _with_parameter(candidate, parameter) -> tuple[sympy.Expr, sympy.Symbol]:
    name = parameter.name if isinstance(parameter, sympy.Symbol) else str(parameter)
    keep = [parameter] if isinstance(parameter, sympy.Symbol) else [sympy.Symbol(name)]
    if isinstance(candidate, str):
        import symact

        candidate = symact.activation(candidate)
    declared = sorted(s.name for s in getattr(candidate, "params", {}))
    if declared and name not in declared:
        raise FormulaError(f"parameter {name!r} is not a parameter of the candidate; its parameters are {declared}")
    expr = _expression(candidate, keep)
    return expr, _parameter(expr, parameter)


def error_expression(candidate, target, parameter=None) -> sympy.Expr:
    r""":math:`e(x) = \mathrm{candidate}(x) - \mathrm{target}(x)` (the target's parameters take their
    values; the candidate keeps ``parameter`` symbolic when given)."""
    cand = _with_parameter(candidate, parameter)[0] if parameter is not None else _expression(candidate)
    return cand - _expression(target)


def _check_whole_number(name: str, value, least: int) -> int:
    """``value`` as an int (Python or numpy integers, not bools or 2.5) of at least ``least``."""
    if not is_whole_number(value, least):
        raise DomainError(f"{name}={value!r}: give a whole number >= {least}.")
    return int(value)


def _checked_interval(name: str, value) -> tuple:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise DomainError(f"{name}={value!r}: give an interval (lo, hi) of two finite numbers.") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise DomainError(f"{name}={value!r}: give an interval (lo, hi) with finite lo < hi.")
    return lo, hi


# ----------------------------------------------------------------------------- exact conditions


def match_conditions(candidate, target, parameter, conditions: Sequence[str] = ("value", "slope", "curvature"),
                     at=0) -> dict[str, tuple]:
    r"""Solve :math:`c_p^{(k)}(a) = t^{(k)}(a)` for the parameter, for each condition.

    ``conditions``: names ``"value"`` (k=0), ``"slope"`` (k=1), ``"curvature"`` (k=2) or
    ``"derivative:k"``.  Returns ``{condition: tuple of solutions}`` (SymPy numbers or expressions,
    restricted by the parameter's assumptions; an empty tuple when no value satisfies it).  A
    condition that holds for every value raises :class:`DomainError` (squareplus's slope at 0 is
    1/2 for every b, so squareplus vs softplus takes ``["value", "curvature"]``).  One condition
    may be given as a string.

    >>> match_conditions("squareplus", "softplus", "b", ["value", "curvature"])   # sqrt(b)/2 = log 2; 1/(2 sqrt(b)) = 1/4
    {'value': (4*log(2)**2,), 'curvature': (4,)}
    """
    if isinstance(conditions, str):
        conditions = (conditions,)
    cand, p = _with_parameter(candidate, parameter)
    targ = _expression(target)
    a = safe_sympify(at, "at")
    if a.has(sympy.nan, sympy.zoo) or (a.is_number and not (a.is_real and a.is_finite)):
        # .subs(x, oo) gave oo - oo = nan for squareplus vs softplus, reported as "no solution": {'value': ()}
        raise DomainError(f"at={at!r}: the conditions are matched at a finite real point, e.g. at=0; for the "
                          "behaviour at +-oo compare asymptotic_expansion(candidate, oo) with the target's")
    out: dict[str, tuple] = {}
    for cond in conditions:
        if not isinstance(cond, str):  # conditions=[0]: a bare AttributeError ('int' has no startswith)
            raise FormulaError(f"condition {cond!r}: give a name, 'value', 'slope', 'curvature' or 'derivative:k'")
        if cond in _CONDITION_ORDERS:
            k = _CONDITION_ORDERS[cond]
        elif cond.startswith("derivative:"):
            order = cond.split(":", 1)[1].strip()
            if not order.isdigit():  # int() would raise a bare ValueError, or accept "-1"
                raise FormulaError(f"condition {cond!r}: the derivative order must be a whole number >= 0, "
                                   "e.g. 'derivative:3'")
            k = int(order)
        else:
            raise FormulaError(f"unknown condition {cond!r}; use 'value', 'slope', 'curvature' or 'derivative:k'")
        lhs = sympy.diff(cand, X, k).subs(X, a) if k else cand.subs(X, a)
        rhs = sympy.diff(targ, X, k).subs(X, a) if k else targ.subs(X, a)
        equation = sympy.simplify(lhs - rhs)
        if equation == 0:
            raise DomainError(f"condition {cond!r} holds for every value of {p}; it does not fix the parameter")
        solutions = sympy.solve(equation, p)
        out[cond] = tuple(sympy.simplify(s) for s in solutions)
    return out


@dataclass(frozen=True)
class DominanceThreshold:
    r"""``candidate >= target`` for all x iff ``parameter >= value`` (candidate increasing in the
    parameter).  ``threshold_function`` is :math:`p^*(x)` solving :math:`c_{p}(x) = t(x)`;
    ``supremum = p^*(argmax)`` exactly, and ``value = supremum`` unless the supremum lies below the
    parameter's declared range (a positive or nonnegative parameter, range bottom 0): then every admissible
    value dominates, ``value`` is that bottom, 0, and ``bottom_of_range`` is True (``argmax`` nan and
    ``supremum`` None where :math:`p^*` is real nowhere on the search interval).  ``certificate`` says how
    the global maximum was checked (and, for ``bottom_of_range``, that the range decided)."""

    parameter: sympy.Symbol
    value: sympy.Expr
    argmax: sympy.Expr
    threshold_function: sympy.Expr
    certificate: str
    supremum: sympy.Expr | None = None
    bottom_of_range: bool = False


def _settled(f, x, dps: int, most: int = 2000):
    """f(x) at ever more digits (doubling from dps + 10) until two evaluations agree to dps digits (a 0 only at
    ``most`` digits: it may be a cancellation not yet resolved)."""
    work = dps + 10
    with mpmath.workdps(work):
        previous = f(x)
    while work < most:
        work = min(2 * work, most)
        with mpmath.workdps(work):
            current = f(x)
        if current != 0 and abs(current - previous) <= mpmath.mpf(10) ** -dps * abs(current):
            return current
        previous = current
    return previous


def _slope_or_none(g, x, p):
    """d candidate / d p at (x, p), or None where it is 1/0: squareplus's 1/(4*sqrt(x**2 + b)) at b* = 0 (vs
    relu's neighbours silu and gelu) and x = 0, which raised a bare ZeroDivisionError (+oo there: increasing)."""
    try:
        return g(x, p)
    except ZeroDivisionError:
        return None


def _local_maximum(f, xs, values, i):
    """(x, f(x)) at the maximum of f in [xs[i - 1], xs[i + 1]] around the sample maximum xs[i], or None where
    no stationary point there is one: df/dx is bracketed where it changes sign (Illinois stays inside),
    else followed from xs[i] and kept only if it stays in the interval and does not fall below the sample."""
    a, b = xs[i - 1], xs[i + 1]

    def slope(t):
        return mpmath.diff(f, t)

    try:
        bracketed = slope(a) > 0 > slope(b)
        root = mpmath.findroot(slope, (a, b), solver="illinois") if bracketed else mpmath.findroot(slope, xs[i])
        if not a <= root <= b:
            return None
        value = f(root)
    except (ValueError, ZeroDivisionError, TypeError):
        return None  # findroot did not converge, or f is not defined (not real) at a point it tried
    if not (mpmath.isfinite(value) and value >= values[i] - mpmath.mpf(10) ** -mpmath.mp.dps * max(1, abs(values[i]))):
        return None
    return root, value


def _refined_maximum(f, xs, values, dps: int, samples: int, kinks=(), most: int = 64):
    """The largest of the refined local maxima of f among the samples (at most ``most``, those whose
    parabola through the sample and its two neighbours peaks at least as high as the largest sample) and of
    f at its ``kinks`` inside the samples' range (a maximum at a kink has no stationary point: -|x - 1/3|).

    Refining only the largest sample by Newton's method from it converged to whatever stationary point was
    near: for p*(x) = sin(17 x) exp(-x**2/50) (samples 1/8 apart, a period 0.37) a minimum far off, so
    dominance_threshold returned 9e-15 for the threshold 0.99983; for sin(19 x) exp(-x**2/50) a lower peak
    (0.99877); for sin(11 x) exp(-x**2/50) a negative minimum, refused as 'p*(x) tends to [0, 0] above the
    interior maximum'."""
    best = max(values)
    estimates = []
    for i in range(1, len(xs) - 1):
        left, mid, right = values[i - 1], values[i], values[i + 1]
        if mid >= left and mid >= right:
            curvature = 2 * mid - left - right
            estimates.append((mid + (right - left) ** 2 / (8 * curvature) if curvature > 0 else mid, i))
    middle = (xs[0] + xs[-1]) / 2
    estimates.sort(key=lambda item: (-item[0], abs(xs[item[1]] - middle)))  # of equal peaks, the middle one
    # a parabola is only an estimate: where it lifts a sample by g, a peak beside another may hide as much
    margin = 2 * max(estimate - values[i] for estimate, i in estimates) if estimates else 0
    found = [_local_maximum(f, xs, values, i) for estimate, i in estimates[:most] if estimate >= best - margin]
    found = [item for item in found if item is not None]
    for k in kinks:
        if xs[0] < k < xs[-1]:
            try:
                value = f(k)
            except (ValueError, ZeroDivisionError, TypeError):
                continue
            if mpmath.isfinite(value):
                found.append((k, value))
    if not found:
        i_best = max(range(len(xs)), key=lambda i: values[i])
        raise DomainError(
            f"the maximum of the threshold p*(x) near x = {mpmath.nstr(xs[i_best], 8)} could not be located to "
            f"{dps} digits (no stationary point of p* found between the samples beside it: p* may have a kink or "
            f"a peak narrower than the sample spacing there); raise samples (now {samples}) or narrow search")
    return max(found, key=lambda item: item[1])


class UncertifiedMaximumWarning(UserWarning):
    """dominance_threshold found the largest p*(x) by sampling only: p* has a part with no interval bound
    (named in the message), so a peak narrower than the sample spacing may have been missed."""


class _Piece:
    """p* on one stretch between kinks, with the enclosures of it and (where p* is continuous) of its first two
    derivatives.  On a stretch each Max/Min/Abs/Piecewise is its one piece: the whole expression
    Max(0, x)*(Max(0, x) - x) (squareplus vs relu) is enclosed in [0, b*(b - a)] on [a, b] (every x varies
    apart), its piece for x > 0, x*(x - x) = 0, exactly."""

    def __init__(self, expr: sympy.Expr):
        self.expr = expr
        self.value = interval_enclosure(expr, X)
        self.point = sympy.lambdify(X, expr, MPMATH_MODULES)
        self.slope = self.curvature = self.slope_point = None
        # the derivative bounds need p* continuous (mean-value theorem), which Max, Min and Abs keep and a
        # Heaviside, sign or Piecewise may not.  Dropping the DiracDeltas leaves the derivative almost everywhere,
        # which bounds a continuous p* as well
        if expr.has(sympy.Heaviside, sympy.sign, sympy.Piecewise):
            return
        slope = sympy.diff(expr, X).replace(lambda node: isinstance(node, sympy.DiracDelta),
                                            lambda node: sympy.Integer(0))
        try:
            self.slope = interval_enclosure(slope, X)
            self.slope_point = sympy.lambdify(X, slope, MPMATH_MODULES)
            # a DiracDelta here (a convex kink) has no enclosure: then concavity is not used
            self.curvature = interval_enclosure(sympy.diff(slope, X), X)
        except NoIntervalBound:
            pass  # the enclosure of p* itself still decides, with more halving


def _pieces(threshold: sympy.Expr, kinks: list, dps: int) -> list:
    """[_Piece] for each stretch between consecutive ``kinks`` (and beyond the outer ones)."""
    from symact.activation import _piece_near

    if not threshold.has(*_PIECEWISE_ATOMS):
        return [_Piece(threshold)] * (len(kinks) + 1)
    ends = [kinks[0] - 1] + [(a + b) / 2 for a, b in zip(kinks, kinks[1:])] + [kinks[-1] + 1] if kinks else [0]
    pieces = []
    for t in ends:
        try:
            piece = _piece_near(threshold, X, sympy.Float(t, dps + 20), {})
        except DomainError:  # a condition it cannot decide: the whole expression, enclosed as it is
            piece = threshold
        pieces.append(_Piece(piece))
    return pieces


def _certified_maximum(threshold: sympy.Expr, f, xs, values, kinks, seed, dps: int, most_cells: int = 20000):
    r"""The maximum of p* = ``threshold`` on [xs[0], xs[-1]], certified by interval bounds (branch and bound).

    Every cell between consecutive samples (split at the ``kinks``, so that each lies on one piece of p*) is
    either closed or halved: closed when the interval enclosure of p* on it, or its mean-value form
    :math:`p^*(m) + \max|p^{*\prime}|\,h/2`, lies below the best value found plus
    :math:`10^{-(dps+2)}\max(1, |\mathrm{best}|)`; when :math:`p^{*\prime}` keeps one sign on it (its maximum
    is at an end, a sample); or when :math:`p^{*\prime\prime} < 0` on it (concave: the maximum is its
    stationary point, found by the Illinois method between ends where :math:`p^{*\prime}` changes sign, or an
    end).  Halving evaluates p* at the midpoint, so a peak narrower than the sample spacing is found rather than
    aliased.  ``seed`` is (x, p*(x)) of the best point known.

    Returns (x, p*(x), cells examined).  Raises :class:`NoIntervalBound` where p* has a part with no enclosure.
    Raises DomainError where p* jumps at a kink to a one-sided limit above every value it takes, where a cell
    narrower than :math:`10^{-(dps+2)}` of the interval still bounds p* above the best value, and after
    ``most_cells`` cells."""
    lo, hi = xs[0], xs[-1]
    inside = sorted(k for k in kinks if lo < k < hi)
    pieces = _pieces(threshold, inside, dps)
    best_x, best = seed
    tolerance = mpmath.mpf(10) ** -(dps + 2) * max(1, abs(best))
    narrowest = mpmath.mpf(10) ** -(dps + 2) * max(1, abs(lo), abs(hi))

    def point(function, t):
        try:
            value = function(t)
        except (ValueError, ZeroDivisionError, TypeError):
            return None
        return value if isinstance(value, mpmath.mpf) and mpmath.isfinite(value) else None

    ends = dict(zip(xs, values))
    for k in inside:
        ends[k] = point(f, k)
    for xi, vi in ends.items():
        if vi is not None and vi > best:
            best_x, best = xi, vi
    breaks = sorted(ends)
    cells = list(zip(breaks, breaks[1:]))
    examined = 0

    def end_value(piece, t):
        """p*'s value at a cell end as the piece has it: at a kink, the one-sided limit from the cell's side."""
        if t not in inside:
            return ends.get(t)
        limit = point(piece.point, t)
        if limit is not None and limit > best + tolerance:
            raise DomainError(
                f"the threshold p*(x) jumps at its kink x = {mpmath.nstr(t, 12)}: its one-sided limit there, "
                f"{mpmath.nstr(limit, 12)}, is above every value it takes (so far {mpmath.nstr(best, 12)}); "
                "dominance_threshold reports a maximum that p* attains, and this supremum is not one")
        return limit

    with interval_precision(mpmath.mp.prec + 10):
        while cells:
            a, b = cells.pop()
            examined += 1
            if examined > most_cells:
                raise DomainError(
                    f"the maximum of the threshold p*(x) could not be certified on [{mpmath.nstr(lo, 8)}, "
                    f"{mpmath.nstr(hi, 8)}] within {most_cells} cells (its interval bounds stay above the best value "
                    f"{mpmath.nstr(best, 12)}); narrow search or lower dps (now {dps})")
            piece = pieces[bisect.bisect_left(inside, (a + b) / 2)]
            cell = mpmath.iv.mpf([a, b])
            if mpmath.mpf(piece.value(cell).b) <= best + tolerance:
                continue
            if piece.slope is not None:
                m = (a + b) / 2
                slopes = piece.slope(cell)
                steepest = max(abs(mpmath.mpf(slopes.a)), abs(mpmath.mpf(slopes.b)))
                if mpmath.mpf(piece.value(mpmath.iv.mpf([m, m])).b) + steepest * (b - a) / 2 <= best + tolerance:
                    continue
                at_ends = [end_value(piece, a), end_value(piece, b)]
                if None not in at_ends and (mpmath.mpf(slopes.a) > 0 or mpmath.mpf(slopes.b) < 0):
                    continue  # monotone: its maximum is an end, already counted
                if None not in at_ends and piece.curvature is not None and mpmath.mpf(piece.curvature(cell).b) < 0:
                    # concave: one maximum, at the stationary point where the slope changes sign, else at an end
                    try:
                        if not piece.slope_point(a) > 0 > piece.slope_point(b):
                            continue
                        root = mpmath.findroot(piece.slope_point, (a, b), solver="illinois")
                    except (ValueError, ZeroDivisionError, TypeError):
                        root = None
                    value = point(piece.point, root) if root is not None and a <= root <= b else None
                    if value is not None:
                        if value > best:
                            best_x, best = root, value
                        continue
            if b - a < narrowest:
                raise DomainError(
                    f"the maximum of the threshold p*(x) could not be certified near x = {mpmath.nstr(a, 12)}: on a "
                    f"cell of width {mpmath.nstr(b - a, 3)} its bound still exceeds the best value "
                    f"{mpmath.nstr(best, 12)} (a kink of p* SymPy did not find, or cancellation); narrow search "
                    "or lower dps")
            m = (a + b) / 2
            ends[m] = point(f, m)
            if ends[m] is not None and ends[m] > best:
                best_x, best = m, ends[m]
            cells += [(a, m), (m, b)]
    return best_x, best, examined


def dominance_threshold(candidate, target, parameter, search=(-50, 50), samples: int = 801,
                        dps: int = 30) -> DominanceThreshold:
    r"""The least parameter value with candidate >= target on the whole line.

    Derivation: if :math:`\partial c_p/\partial p > 0`, then :math:`c_p(x) \ge t(x)` iff
    :math:`p \ge p^*(x)` with :math:`c_{p^*(x)}(x) = t(x)` (SymPy ``solve``), so the threshold is
    :math:`\sup_x p^*(x)`.  On ``search`` the supremum is found by dense sampling (the stationary point next
    to each of the highest sampled peaks refined) and then certified by branch and bound on interval
    enclosures of :math:`p^*` and its first two derivatives (``analysis._interval_bounds``): each cell between
    samples is halved until its enclosure lies within :math:`10^{-(dps+2)}\max(1, |p^*|)` of the best value,
    or :math:`p^*` is monotone or concave on it, so a peak narrower than the sample spacing is found, not
    aliased.  Where :math:`p^*` has a part with no enclosure (besselj, gamma, tan, ...) the sampled maximum is
    kept and :class:`UncertifiedMaximumWarning` names that part.  Outside ``search`` only the limits of
    :math:`p^*` at :math:`\pm\infty` are checked (a Min/Max/Piecewise through its piece beyond the last
    kink): a peak of :math:`p^*` beyond ``search`` higher than its maximum on ``search`` is not seen.  The abscissa is identified exactly
    with ``nsimplify`` and :math:`p^*` evaluated there symbolically; when no simple exact number matches the
    argmax to ``dps + 3`` digits, ``argmax`` and ``value`` are Floats of ``dps`` digits instead.  A supremum that
    is a one-sided limit at a jump of :math:`p^*` (not a value it takes) is refused by name.

    For squareplus vs softplus, :math:`p^*(x) = 4\,\mathrm{softplus}(x)\,\mathrm{softplus}(-x)`
    (up to rewriting), maximal at 0: :math:`b \ge 4\ln^2 2`.
    """
    _check_whole_number("samples", samples, 3)
    _check_whole_number("dps", dps, 1)
    lo_hi = _checked_interval("search", search)
    cand, p = _with_parameter(candidate, parameter)
    targ = _expression(target)
    monotone = sympy.diff(cand, p)
    try:
        roots = sympy.solve(sympy.Eq(cand, targ), p)
    except NotImplementedError:  # transcendental in p (softplus(beta) vs relu): SymPy has no algorithm
        raise DomainError(f"SymPy cannot solve candidate = target for {p} in closed form; dominance_threshold "
                          "needs p*(x) explicitly (use minimax, or a candidate that is algebraic in the parameter)"
                          ) from None
    solutions = [s for s in roots if s.is_real is not False]
    bottom = sympy.Integer(0) if p.is_nonnegative else None  # the least value the parameter's range admits
    if not solutions and bottom is not None:
        # solve drops a p*(x) that is negative for every x (x + p vs x - 1, p positive): the candidate is then
        # above the target for every admissible p, not never equal to it
        free = sympy.Dummy(p.name, real=True)
        solutions = [s.subs(free, p) for s in sympy.solve(sympy.Eq(cand.subs(p, free), targ), free)
                     if s.is_real is not False]
    if len(solutions) != 1:
        raise DomainError(f"candidate = target has {len(solutions)} solutions for {p} ({solutions}); "
                          "dominance_threshold needs exactly one")
    threshold = sympy.simplify(solutions[0])
    f = sympy.lambdify(X, threshold, MPMATH_MODULES)
    g = sympy.lambdify((X, p), monotone, MPMATH_MODULES)
    with mpmath.workdps(dps + 10):
        lo, hi = (mpmath.mpf(v) for v in lo_hi)
        xs = [lo + (hi - lo) * i / (samples - 1) for i in range(samples)]
        values = [f(xi) for xi in xs]
        nonreal = [i for i, v in enumerate(values) if isinstance(v, mpmath.mpc) and v.imag != 0]
        values = [v.real if isinstance(v, mpmath.mpc) else v for v in values]
        if nonreal:  # the ordering of max() raised a bare TypeError on them
            found = _nonreal_threshold(cand, targ, p, threshold, bottom, xs, nonreal, search)
            if found is not None:
                return found
        best = max(values)
        # points that tie with the largest value may tie only because their own value cancelled away: for gelu,
        # p*(x) = x**2*(erf(x/sqrt(2))**2 - 1) is 0 to 40 digits at x = -50, as at its true maximum x = 0, and the
        # end of the search interval was taken ("largest at the edge").  Those are evaluated until their digits
        # settle.
        ties = [i for i in range(samples) if best - values[i] <= mpmath.mpf(10) ** -dps * max(1, abs(best))]
        if len(ties) > 1:
            for i in ties:
                values[i] = _settled(f, xs[i], dps)
        # the edge only where it is above every interior sample: a constant p* (p + tanh(x) vs tanh(x), squareplus
        # vs relu: p* = 0 everywhere) ties there with the interior and was refused as 'largest at the edge'
        interior_best = max(values[1:-1])
        if max(values) - interior_best > mpmath.mpf(10) ** -dps * max(1, abs(interior_best)):
            raise DomainError(f"the threshold p*(x) is largest at the edge of the search interval {search}; "
                              "widen search or check that the candidate dominates at all")
        try:
            kinks = [mpmath.mpf(sympy.N(k, dps + 20)) for k in _singular_points(threshold)]
        except NotImplementedError:  # SymPy cannot solve for a switch point: the stationary points decide
            kinks = []
        try:
            seed, refused = _refined_maximum(f, xs, values, dps, samples, kinks), None
        except DomainError as exc:  # no stationary point beside the largest sample: the bounds may still find it
            seed, refused = None, exc
        try:
            start = seed or max(zip(xs, values), key=lambda item: item[1])
            x_star, p_star, examined = _certified_maximum(threshold, f, xs, values, kinks, start, dps)
            located = (f"sup of p*(x) on {list(search)} certified by interval bounds ({samples} samples, {examined} "
                       f"cells each bounded below the maximum + 10^-{dps + 2} or monotone or concave)")
        except NoIntervalBound as missing:
            if refused is not None:
                raise refused from None
            warnings.warn(UncertifiedMaximumWarning(
                f"dominance_threshold: the threshold p*(x) = {threshold} has no interval bound ({missing}), so its "
                f"maximum on {list(search)} was located by {samples} samples only and a peak narrower than the "
                "spacing may be missed; raise samples to check"), stacklevel=2)
            x_star, p_star = seed
            located = (f"sup of p*(x) located by {samples} samples on {list(search)} and findroot on dp*/dx "
                       f"(not certified: no interval bound for {missing})")
        if min(x_star - lo, hi - x_star) <= mpmath.mpf(10) ** -(dps + 2) * max(1, abs(lo), abs(hi)):
            raise DomainError(f"the threshold p*(x) is largest at the edge of the search interval {search}; "
                              "widen search or check that the candidate dominates at all")
        tolerance = mpmath.mpf(10) ** -dps * max(1, abs(p_star))
        _check_solves(cand, targ, p, threshold, x_star, p_star, dps)
        below_range = bottom is not None and p_star < bottom - tolerance
        # the slope where the threshold is: at a p* below the range, the bottom (squareplus's sqrt(x**2 + b) is
        # not real at b < 0, and its slope's comparison with 0 raised a bare TypeError)
        at = mpmath.mpf(bottom) if below_range else p_star
        slopes = [_slope_or_none(g, xi, at) for xi in xs[:: max(1, samples // 200)]]
        for xi, slope in zip(xs[:: max(1, samples // 200)], slopes):
            if isinstance(slope, mpmath.mpc) and slope.imag != 0:
                raise DomainError(f"d candidate/d{p} is not real at x = {mpmath.nstr(xi, 8)}, {p} = "
                                  f"{mpmath.nstr(at, 8)} (the candidate is not real there), so whether it increases "
                                  f"in {p} cannot be checked; narrow search or declare {p}'s range")
        if any(slope is not None and mpmath.re(slope) <= 0 for slope in slopes):
            raise DomainError(f"the candidate is not increasing in {p} near the threshold; the 'iff' does not apply")
        limits = [_limit_at_infinity(threshold, s) for s in (sympy.oo, -sympy.oo)]
        # an oscillating p* (sin(x) + ...) has AccumBounds for a limit: its upper end is what p* comes back to
        tops = [lim.max if isinstance(lim, sympy.AccumBounds) else lim for lim in limits]
        # with a tolerance: a limit equal to the maximum (mish: p* -> 0 at +-oo, as at x = 0) is not above it
        if any(top is sympy.oo or (top.is_finite and float(top) > float(p_star + tolerance)) for top in tops):
            raise DomainError(f"p*(x) tends to {limits} at +-infinity, above the interior maximum; no finite threshold")
        # an exact abscissa is accepted only where it IS the argmax to dps + 3 digits: p* is flat there, so
        # checking the value alone let 7/9 stand for -0.77838... (dps=4) and 0 for it (dps=1, value 0.998
        # for 1.244), and at dps=30 a 10-digit fraction was returned as the exact argmax
        x_exact = sympy.nsimplify(mpmath.nstr(x_star, max(dps // 2, 1)), rational=True,
                                  tolerance=sympy.Rational(1, 10 ** max(dps // 3, 1)))  # an mpf tolerance of 1 (dps < 3) raised TypeError
        close = abs(mpmath.mpf(sympy.N(x_exact, dps + 10)) - x_star) <= mpmath.mpf(10) ** (-(dps + 3)) * max(1, abs(x_star))
        value = sympy.simplify(threshold.subs(X, x_exact)) if close else None
        if value is None or not (value.is_number and value.is_real) or (
                abs(mpmath.mpf(sympy.N(value, dps + 10)) - p_star) > mpmath.mpf(10) ** (-(dps + 3)) * max(1, abs(p_star))):
            value = sympy.Float(p_star, dps)  # the abscissa has no simple exact form: return the number
            x_exact = sympy.Float(x_star, dps)
    certificate = f"{located}; limits at +-oo: {limits}; d candidate/d{p} > 0 checked on the samples"
    if below_range:
        certificate += (f"; sup p*(x) = {value} lies below the range of {p} ({_range_text(p)}), so every admissible "
                        f"{p} dominates: the threshold is the bottom of that range, {bottom} (slope checked there)")
        return DominanceThreshold(p, bottom, x_exact, threshold, certificate, value, True)
    return DominanceThreshold(p, value, x_exact, threshold, certificate, value)


def _range_text(p: sympy.Symbol) -> str:
    return f"{p} > 0" if p.is_positive else f"{p} >= 0"


def _check_solves(cand, targ, p, threshold, x_star, p_star, dps: int) -> None:
    """Refuse a p*(x) that does not solve candidate = target at its maximum: solve squares equations (for
    squareplus, sqrt(x**2 + b) = 2 t - x), and where 2 t < x the root it returns solves the squared equation
    only.  Such a point imposes nothing (the candidate is above the target there for every b), yet its p* was
    taken as the threshold: squareplus vs squareplus(b=1) - 1 gave b >= 1, though every b >= 0 dominates."""
    with mpmath.workdps(dps + 10):
        c = sympy.lambdify((X, p), cand, MPMATH_MODULES)
        t = sympy.lambdify(X, targ, MPMATH_MODULES)
        try:
            gap = c(x_star, p_star) - t(x_star)
        except (ZeroDivisionError, ValueError):
            return  # not evaluable there: nothing to refute
        scale = max(1, abs(t(x_star)))
        if abs(gap) > mpmath.mpf(10) ** -(dps // 2) * scale:
            raise DomainError(
                f"p*(x) = {threshold} does not solve candidate = target at its maximum x = {mpmath.nstr(x_star, 10)}: "
                f"the candidate at {p} = {mpmath.nstr(p_star, 10)} differs from the target there by "
                f"{mpmath.nstr(gap, 5)} (SymPy's solve squared the equation, and this root solves only the squared "
                "one). Its supremum would not be the threshold; dominance_threshold cannot use this p*(x)")


def _nonreal_threshold(cand, targ, p, threshold, bottom, xs, nonreal, search):
    """Where p*(x) is not real, candidate = target has no real solution in p, so c_p(x) - t(x) has one sign for
    every p: above the target at every sample, every admissible p dominates there (the threshold is the bottom
    of a positive/nonnegative parameter's range); anything else is refused by name."""
    x0 = xs[nonreal[0]]
    probe = (bottom + 1) if bottom is not None else sympy.Integer(0)  # any admissible p: the sign is the same
    c = sympy.lambdify((X, p), cand, MPMATH_MODULES)
    t = sympy.lambdify(X, targ, MPMATH_MODULES)
    below = [xs[i] for i in nonreal if mpmath.re(c(xs[i], mpmath.mpf(probe)) - t(xs[i])) < 0]
    if below:
        raise DomainError(f"at x = {mpmath.nstr(below[0], 8)} no real {p} solves candidate = target and the "
                          f"candidate is below the target for every {p}: no value of {p} makes it dominate")
    if len(nonreal) == len(xs) and bottom is not None:
        certificate = (f"p*(x) = {threshold} is not real at any of the {len(xs)} samples on {list(search)}: no "
                       f"real {p} solves candidate = target there, and the candidate is above the target at "
                       f"{p} = {probe} (so for every {p}) at each sample; every admissible {p} dominates "
                       f"({_range_text(p)}) on search: the threshold is the bottom of the range, {bottom}")
        return DominanceThreshold(p, bottom, sympy.nan, threshold, certificate, None, True)
    raise DomainError(f"p*(x) = {threshold} is not real at x = {mpmath.nstr(x0, 8)} ({len(nonreal)} of {len(xs)} "
                      f"samples): candidate = target has no real solution for {p} there"
                      + ("" if bottom is not None else f" and {p} has no declared range whose bottom could be the "
                         "threshold (declare it positive or nonnegative)")
                      + "; dominance_threshold needs a p*(x) real on all of search, or on none of it")


def _limit_at_infinity(threshold: sympy.Expr, point) -> sympy.Expr:
    """The limit of p*(x) as x -> ``point`` (+-oo).  SymPy's limit raised NotImplementedError for a Min or Max
    (no _eval_nseries: tanh + p vs hardtanh or relu6), so each piecewise construct is first replaced by its
    piece beyond its last break point, which is p* itself there."""
    expr = _piece_for_expansion(threshold, point, 1, None) if threshold.has(*_PIECEWISE_ATOMS) else threshold
    try:
        return sympy.limit(expr, X, point)
    except (NotImplementedError, ValueError, TypeError, sympy.PoleError) as exc:
        raise DomainError(f"SymPy could not take the limit of p*(x) = {expr} as x -> {point} ({type(exc).__name__}); "
                          "dominance_threshold needs it to rule out a larger supremum at infinity") from None


# ----------------------------------------------------------------------------- minimax


@dataclass(frozen=True)
class MinimaxResult:
    r"""The best uniform approximation within the candidate family.

    ``parameter_value`` minimises :math:`\max_x |e_p(x)|`; ``max_error`` is that maximum;
    ``abscissae`` (sorted) are the points where :math:`|e| =` ``max_error`` with ``signs`` the sign
    of :math:`e` there, and ``tangent_signs`` the sign of :math:`\partial_p e` there (0 where it
    vanishes to the precision: an optimum at a stationary point of one branch).  All numbers are
    mpf accurate to about ``dps`` digits.

    ``interval = (a, b)`` is where the result holds: ``max_error`` is the maximum of :math:`|e|` over
    :math:`a \le x \le b`.  ``domain`` is the half-width ``L`` when the problem was posed as ``domain=L`` (then
    ``interval = (-L, L)``, standing in for the whole line), None for ``interval=(a, b)``.  A result built by
    hand without them has ``interval = ()``.
    """

    parameter: sympy.Symbol
    parameter_value: Any
    max_error: Any
    abscissae: tuple
    signs: tuple
    error: sympy.Expr
    dps: int
    tangent_signs: tuple = ()
    interval: tuple = ()
    domain: Any = None

    @property
    def equioscillates(self) -> bool:
        r"""Whether the error alternates in the sense of Chebyshev's theorem for a one-parameter family:
        among the extremal points there is one where :math:`e\,\partial_p e > 0` and one where it is
        :math:`< 0`, so no change of the parameter lowers every extremum (Kolmogorov's criterion; for
        a family with :math:`\partial_p e` of one sign, as squareplus(b), that is an alternation
        :math:`+E, -E` of length n + 1 = 2).  False for an optimum at a stationary point of a single
        branch, and for an exact fit.

        The signs of consecutive extremal points need not alternate: the even error of an even
        family on the symmetric interval has mirror pairs of equal sign, (-, +, +, -) for
        sin(a x)/(a x) vs exp(-x^2/6), which the former test (every consecutive pair alternating)
        reported as not equioscillating.  Without ``tangent_signs`` (a result built by hand),
        :math:`\partial_p e` is taken positive."""
        tangents = self.tangent_signs if len(self.tangent_signs) == len(self.signs) else (1,) * len(self.signs)
        products = {s * t for s, t in zip(self.signs, tangents)}
        return 1 in products and -1 in products

    def __repr__(self) -> str:
        n = min(self.dps, 20)
        # every key is an attribute: 'b=1.52' read as result.b raised AttributeError
        return (f"MinimaxResult(parameter={self.parameter}, parameter_value={mpmath.nstr(self.parameter_value, n)}, "
                f"max_error={mpmath.nstr(self.max_error, n)}, "
                f"abscissae=({', '.join(mpmath.nstr(a, 10) for a in self.abscissae)}), signs={self.signs}"
                + (f", domain={self.domain}" if self.domain is not None else
                   f", interval=({self.interval[0]}, {self.interval[1]})" if self.interval else "") + ")")


def _real_roots(arg: sympy.Expr) -> list:
    """Real numeric roots of ``arg`` in X.  Where ``solve`` has no algorithm (a Min or Max inside:
    -1 - Min(1, x), from hardtanh written as Max(-1, Min(1, x))) ``arg`` is rewritten as a Piecewise and each
    piece solved, keeping the roots of ``arg`` itself."""
    try:
        roots = sympy.solve(arg, X)
    except NotImplementedError:
        folded = sympy.piecewise_fold(arg.rewrite(sympy.Piecewise))
        if not isinstance(folded, sympy.Piecewise):
            raise
        roots = []
        for piece, _ in folded.args:
            if X not in piece.free_symbols:
                continue
            roots += [r for r in sympy.solve(piece, X) if r.is_real and r.is_number
                      and sympy.simplify(arg.subs(X, r)) == 0]
    return [r for r in roots if r.is_real and r.is_number]


def _switch_points(node) -> list:
    """Where a Max or Min of any number of arguments switches: two arguments are equal there and both are
    the extreme one (Max(0, x/2, x - 1) at 0 and 2, not at 1 where x - 1 = 0 lies below x/2)."""
    points = []
    for i, first in enumerate(node.args):
        for second in node.args[i + 1:]:
            if X not in (first - second).free_symbols:
                continue
            for root in _real_roots(first - second):
                if len(node.args) == 2 or sympy.simplify(node.subs(X, root) - first.subs(X, root)) == 0:
                    points.append(root)
    return points


def _singular_points(expr: sympy.Expr) -> list[sympy.Expr]:
    """Real points where Max/Min/Abs/Heaviside/sign/Piecewise switch (kinks of the error)."""
    points: set = set()
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, (sympy.Max, sympy.Min)):
            # every pair of arguments, nested ones too: Max(0, x/2, x - 1) (three arguments) was skipped, so
            # asymptotic_expansion took x/2 for its piece at +oo (it is x - 1), and Max(-1, Min(1, x)) raised
            # solve's bare NotImplementedError in minimax, dominance_threshold and asymptotic_expansion
            points.update(_switch_points(node))
            continue
        if isinstance(node, (sympy.Abs, sympy.Heaviside, sympy.sign)):
            args = [node.args[0]]
        elif isinstance(node, sympy.Piecewise):
            args = []
            for _, cond in node.args:
                # every comparison, also inside And/Or: (x > 1) & (x < 2) was skipped, so a bump of the target
                # on (1, 2) was never sampled and the minimax came back as if it were not there
                for relation in sympy.sympify(cond).atoms(sympy.core.relational.Relational):
                    args.append(relation.lhs - relation.rhs)
        else:
            continue
        for arg in args:
            if X in arg.free_symbols:
                for root in sympy.solve(arg, X):
                    if root.is_real and root.is_number:
                        points.add(root)
    return sorted(points, key=float)


#: Functions with real poles, and the function whose zeros are those poles: tan(x) has one at every zero
#: of cos(x).  Without them the search only sampled the error, so the pole of tan at pi/2 went unseen.
_POLE_DENOMINATORS = {sympy.tan: sympy.cos, sympy.sec: sympy.cos, sympy.cot: sympy.sin, sympy.csc: sympy.sin,
                      sympy.coth: sympy.sinh, sympy.csch: sympy.sinh}


def _denominators(expr: sympy.Expr, logs: bool = True) -> set:
    """Expressions in X whose real zeros are singular points of ``expr``: bases of negative powers, the
    functions whose zeros are the poles of tan/cot/sec/csc/coth/csch, and (``logs``) log arguments."""
    bases = set()
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Pow) and node.exp.is_negative and X in node.base.free_symbols:
            bases.add(node.base)
        elif logs and isinstance(node, sympy.log) and X in node.args[0].free_symbols:
            bases.add(node.args[0])
        elif type(node) in _POLE_DENOMINATORS and X in node.args[0].free_symbols:
            bases.add(_POLE_DENOMINATORS[type(node)](node.args[0]))
    return bases


def _span(domain) -> tuple:
    """(lo, hi) of ``domain``: a half-width L (the interval |x| <= L) or a pair (a, b)."""
    return (domain[0], domain[1]) if isinstance(domain, tuple) else (-domain, domain)


def _describe(domain) -> str:
    lo, hi = _span(domain)
    return f"[{lo}, {hi}]" if isinstance(domain, tuple) else f"|x| <= {domain}"


def _real_zeros(base: sympy.Expr, domain) -> list:
    """The numeric real zeros of ``base`` in |x| <= domain (in [a, b] for domain = (a, b)), nearest to 0 first.  ``solveset`` on the interval
    lists every zero of a periodic base there (``solve`` gives one period: 1/cos(x - 3) has a pole at
    3 - pi/2, inside |x| <= 2, that it does not list); ``solve`` is the fallback."""
    lo, hi = _span(domain)
    # rational=True: 1.4142135623730951 would become sqrt(2)
    bounds = [sympy.nsimplify(end, rational=True) for end in (lo, hi)]
    roots = None
    try:
        found = sympy.solveset(base, X, sympy.Interval(*bounds))
        if isinstance(found, sympy.FiniteSet):
            roots = list(found)
    except (NotImplementedError, ValueError, TypeError):
        pass  # roots stays None: solve() below is the fallback
    if roots is None:
        try:
            roots = sympy.solve(base, X)
        except (NotImplementedError, ValueError, TypeError):
            return []
    roots = [r for r in roots if r.is_number and r.is_real and lo <= r <= hi]
    return sorted(set(roots), key=lambda r: (abs(float(r)), float(r)))


def _refuse_singularities(error: sympy.Expr, p: sympy.Symbol, domain) -> None:
    """Refuse an error with a pole or a log singularity at a fixed point of |x| <= domain: the search only
    samples the error, so SQUAREPLUS vs softplus + 1e-6/(x - 1/2) came back with max error 0.0759 for an
    unbounded error.  Zeros of denominators, of log arguments and of the cosines/sines under tan, cot, sec,
    csc (and sinh under coth, csch) are found by ``solveset`` on the domain; a removable one (sin(x)/x at 0:
    finite one-sided limits) is allowed."""
    for base in sorted(_denominators(error), key=sympy.default_sort_key):
        for root in _real_zeros(base, domain):
            try:
                sides = [sympy.limit(error, X, root, side) for side in ("+", "-")]
            except (NotImplementedError, ValueError, TypeError):
                continue
            if any(side.is_finite is False or side.has(sympy.oo, -sympy.oo, sympy.zoo) for side in sides):
                raise DomainError(
                    f"the error {error} is unbounded at x = {root} (a zero of {base}), inside {_describe(domain)}: its "
                    f"sup is infinite for every {p}, so there is no minimax; remove the singularity from candidate "
                    "or target, or pass a domain (interval) that avoids it")


def _pole_order(expr: sympy.Expr, base: sympy.Expr, root) -> int:
    """How many powers of (x - root) ``expr``'s terms in 1/base**k can blow up by (an upper bound: the
    digits a floating-point evaluation near ``root`` cancels are about that times log10(1/|x - root|))."""
    order = 0
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Pow) and node.exp.is_negative and node.base == base:
            multiplicity = 1
            for k in range(1, 6):
                if sympy.simplify(sympy.diff(base, X, k).subs(X, root)) != 0:
                    multiplicity = k
                    break
            order += multiplicity * int(math.ceil(abs(float(node.exp)))) if node.exp.is_number else multiplicity
    return min(order, 12)


def _removable_points(expr: sympy.Expr, domain) -> list:
    """[(root as a 300-digit mpf, pole order)] for the real zeros of ``expr``'s denominators in |x| <= domain.
    ``_refuse_singularities`` has already refused poles of the error; what is left are removable 0/0 points
    (sin(x)/x at 0) of the error and of its derivatives (sinc's derivative cos(x)/x - sin(x)/x**2)."""
    points = []
    for base in _denominators(expr, logs=False):
        for root in _real_zeros(base, domain):
            with mpmath.workdps(300):
                points.append((mpmath.mpf(sympy.N(root, 300)), max(_pole_order(expr, base, root), 1)))
    return points


def _near_removable(function, points):
    """``function(x, p)`` evaluated with the digits that cancel near a removable singularity added back, and as
    the limit (the mean at x -+ h, h below the working precision) exactly at one.  At x = 0 sin(x)/x raised
    ZeroDivisionError, which the extremum search took for a failed root: the extremum at 0 of
    a*exp(-x**2/6) - sin(x)/x was dropped and the minimax failed; near 0 the derivative
    cos(x)/x - sin(x)/x**2 cancelled all its digits."""
    if not points:
        return function

    def evaluate(t, pv):
        distance, order = min(((abs(t - r), k) for r, k in points), key=lambda item: item[0])
        digits = mpmath.mp.dps
        if distance > 0:
            lost = int(order * mpmath.log10(1 / distance)) if distance < 1 else 0
            if lost <= 3:  # within the guard digits
                return function(t, pv)
            with mpmath.workdps(digits + lost + 5):
                value = function(t, pv)
            return +value
        try:
            value = function(t, pv)
            if mpmath.isfinite(value):
                return value
        except (ZeroDivisionError, ValueError):
            pass  # 0/0 at the point itself: a removable singularity, whose limit is taken below
        return limit_at(lambda s: function(s, pv), t, order)

    return evaluate


def _real_valued(function, error: sympy.Expr, p: sympy.Symbol, domain):
    """``function(x, p)`` that refuses a complex or non-finite value: sqrt(x) as a target reached the
    comparisons as an mpc and raised a bare TypeError ('<' not supported between 'mpc' and 'int')."""
    def checked(t, pv):
        value = function(t, pv)
        if isinstance(value, mpmath.mpc):
            if value.imag != 0:
                raise DomainError(
                    f"the error {error} is not real at x = {mpmath.nstr(t, 8)} ({p} = {mpmath.nstr(pv, 8)}): minimax "
                    f"compares real functions on {_describe(domain)}; pass a domain (interval) where candidate and "
                    "target are real")
            value = value.real
        if not mpmath.isfinite(value):
            raise DomainError(
                f"the error {error} is {value} at x = {mpmath.nstr(t, 8)} ({p} = {mpmath.nstr(pv, 8)}): minimax needs "
                f"candidate and target finite on {_describe(domain)}; pass a domain (interval) that avoids the "
                "singularity")
        return value
    return checked


def _exact_fit(error: sympy.Expr, p: sympy.Symbol, e_f, domain: float, dps: int):
    """A real parameter value at which the error vanishes identically (the candidate family
    contains the target: swish(beta) and silu, leaky_relu and relu), else None.

    Candidates solve e(x0, p) = 0 at two points on either side of 0; one is accepted when
    the error simplifies to 0 there, or is below 10**-(dps + 5) on a grid over the domain
    at dps + 20 digits."""
    for x0 in (sympy.Rational(7, 5), sympy.Rational(-7, 5)):
        at_x0 = sympy.piecewise_fold(error.subs(X, x0))
        if p not in at_x0.free_symbols:
            continue
        try:
            solutions = sympy.solve(at_x0, p)
        except (NotImplementedError, ValueError, TypeError):
            continue
        for s in solutions:
            if not (s.is_number and s.is_real):
                continue
            if sympy.simplify(error.subs(p, s)) == 0:
                return s
            with mpmath.workdps(dps + 20):
                value = mpmath.mpf(sympy.N(s, dps + 20))
                first, last = (mpmath.asinh(end) for end in _span(domain))
                grid = [mpmath.sinh(first + (last - first) * i / 200) for i in range(201)]
                if all(abs(e_f(xi, value)) < mpmath.mpf(10) ** -(dps + 5) for xi in grid):
                    return s
    return None


def minimax(candidate, target, parameter, dps: int = 30, parameter_range: tuple | None = None,
            domain: float | None = None, grid: int = 400, interval: tuple | None = None) -> MinimaxResult:
    r"""The parameter minimising :math:`\max_{|x| \le L}|c_p(x) - t(x)|` (L = ``domain``, default 200), or
    :math:`\max_{a \le x \le b}|c_p(x) - t(x)|` for ``interval=(a, b)``, in mpmath.

    ``domain`` and ``interval`` mean different problems (pass at most one).  ``domain=L`` stands in for the
    whole line: an extremum at :math:`x = \pm L` is refused (the answer would depend on where the line is cut).
    ``interval=(a, b)`` is the best approximation on that finite interval: its ends are extrema like any other
    and may be among the equioscillation abscissae (``p*x`` vs ``x**2`` on (0, 1): :math:`p = 2\sqrt 2 - 2`,
    extrema at :math:`p/2` and the end 1).

    Method: the local extrema of :math:`e_p` are the roots of :math:`\partial_x e_p` (bracketed on a
    sinh-spaced grid of ``grid`` points and refined by the Illinois method) plus the kinks of the
    target and the ends (:math:`\pm L`, or a and b), and the grid samples bound it from below (a dip narrower
    than the grid spacing).  :math:`M(p) = \max |e_p|` is scanned on ``parameter_range``
    (log-spaced for a positive parameter, default :math:`[10^{-6}, 10^6]`), narrowed by golden
    section, and then solved exactly: the two extremal branches that are largest on either side of
    the optimum must have equal :math:`|e|` (equioscillation), an equation in p solved by the
    secant method to ``dps`` digits (with ``dps + 15`` working digits).  If one branch is maximal on
    both sides, the optimum is its stationary point :math:`\partial_p e = 0` (envelope theorem).

    When the family contains the target (swish(beta) and silu at beta = 1), that parameter value
    is returned exactly with ``max_error`` 0 and no abscissae (where it lies in ``parameter_range``,
    when one is given).

    Raises :class:`DomainError` when the optimum runs to an end of ``parameter_range`` (e.g.
    softplus(beta) vs relu: the error :math:`\ln 2/\beta` only shrinks as beta grows) or, for ``domain``, when
    the largest error sits at :math:`\pm L` (the error grows, or its supremum is a limit at infinity), and
    when the error is not real on the domain or has a pole or log singularity at a fixed point of it
    (zeros of denominators, of log arguments and of the cos/sin under tan, cot, sec, csc, found by
    ``solveset`` on the domain).  A removable singularity (sin(x)/x at 0) is taken as its limit.
    ``equioscillates`` on the result says whether the optimum is an alternation (two extrema where
    :math:`e\,\partial_p e` has opposite signs) rather than a stationary point of one branch.

    >>> best = minimax("squareplus", "softplus", "b", dps=15)
    >>> best.parameter_value, best.signs       # the error equioscillates: +, -, + at its three extrema
    (mpf('1.52382103251875...'), (1, -1, 1))
    """
    _check_whole_number("dps", dps, 1)
    _check_whole_number("grid", grid, 3)
    if interval is not None:
        if domain is not None:
            raise DomainError(f"domain={domain!r} and interval={interval!r}: pass one. domain=L stands in for the "
                              "whole line (an extremum at x = +-L is refused); interval=(a, b) is the finite problem, "
                              "whose ends count as extrema.")
        region = _checked_interval("interval", interval)
    else:
        domain = 200 if domain is None else domain
        if isinstance(domain, bool) or not isinstance(domain, numbers.Real) or not 0 < domain < math.inf:
            raise DomainError(f"domain={domain!r}: give the half-width L > 0 of the interval |x| <= L, e.g. "
                              "domain=200 (or interval=(a, b) for a finite interval whose ends count as extrema).")
        region = domain
    x_lo, x_hi = (mpmath.mpf(end) for end in _span(region))
    cand, p = _with_parameter(candidate, parameter)
    targ = _expression(target)
    error = cand - targ
    if p not in error.free_symbols:
        raise FormulaError(f"the error does not depend on {p}")
    extra = error.free_symbols - {X, p}
    if extra:
        raise FormulaError(f"the error has unassigned symbols {sorted(map(str, extra))}; give them values")
    _refuse_singularities(error, p, region)
    e_raw = _near_removable(sympy.lambdify((X, p), error, MPMATH_MODULES), _removable_points(error, region))
    e_f = _real_valued(e_raw, error, p, region)
    # the range is checked before the exact fit, and an exact fit outside a range given is no answer: swish vs
    # silu with parameter_range=(2, 5) returned beta = 1, and a malformed range (5, 1) passed unchecked
    positive = bool(p.is_positive or p.is_nonnegative)  # log-spaced scan for scale-like parameters
    given_range = parameter_range is not None
    if parameter_range is None:
        parameter_range = (sympy.Rational(1, 10**6), 10**6) if positive else (-100, 100)
    else:
        range_lo, range_hi = _checked_interval("parameter_range", parameter_range)
        if positive and range_lo <= 0:
            # the scan is log-spaced: log(0) reported "decreasing towards b = nan", log(-1) a bare TypeError
            raise DomainError(f"parameter_range={parameter_range!r}: {p} is declared positive, so the range must be "
                              f"positive too, e.g. ({sympy.Rational(1, 10**6)}, {parameter_range[1]})")
    exact = _exact_fit(error, p, e_raw, region, dps)
    if exact is not None and given_range and not range_lo <= float(exact) <= range_hi:
        exact = None  # the family meets the target only outside the range asked for: minimax over the range
    if exact is not None:
        with mpmath.workdps(dps):
            return MinimaxResult(p, mpmath.mpf(sympy.N(exact, dps + 5)), mpmath.mpf(0), (), (), error, dps,
                                 (), _span(region), domain)
    # away from the kinks (candidates in their own right): a jump's DiracDelta has no mpmath name (NameError)
    slope = sympy.diff(error, X).replace(lambda node: isinstance(node, sympy.DiracDelta), lambda node: sympy.Integer(0))
    de_f = _real_valued(_near_removable(sympy.lambdify((X, p), slope, MPMATH_MODULES), _removable_points(slope, region)),
                        error, p, region)
    dp_error = sympy.diff(error, p)
    dp_f = _near_removable(sympy.lambdify((X, p), dp_error, MPMATH_MODULES), _removable_points(dp_error, region))
    # kinks outside |x| <= L are not candidates: a jump of the target at x = 7 made the error there the maximum
    # of a minimax over |x| <= 5 (b = 8.04, abscissae (0, 7) for squareplus vs softplus, whose answer is 1.5238)
    kinks = [mpmath.mpf(sympy.N(k, dps + 20)) for k in _singular_points(error)
             if x_lo <= k <= x_hi]
    work = dps + 15

    def grid_points(n):
        # sinh-spaced, densest near 0 where activations bend; the ends exactly (they are extrema of the finite
        # problem, and the whole-line one refuses an extremum there)
        first, last = mpmath.asinh(x_lo), mpmath.asinh(x_hi)
        return [x_lo] + [mpmath.sinh(first + (last - first) * i / (n - 1)) for i in range(1, n - 1)] + [x_hi]

    def extrema(pv, n=grid):
        """[(x, e(x))] at all local extrema candidates for parameter value pv."""
        xs = grid_points(n)
        ds = [de_f(xi, pv) for xi in xs]
        # the samples themselves too: they bound max|e| from below where a feature narrower than the grid hides
        # its extremum from the bracketing (exp(-a x**2) vs sech(x) at a = 6e5, a dip of depth 1 and width 1e-3
        # between the samples near 0: the scan took max|e| = 2e-13 there and never found the optimum a = 0.3496)
        found = [(xi, None) for xi in kinks] + [(xi, None) for xi in xs]
        # at a jump the sup of |e| is a one-sided limit, not the value at the kink (Heaviside(0) = 1/2)
        step = mpmath.mpf(10) ** (5 - mpmath.mp.dps)
        for k in kinks:
            below, above = e_f(k - step, pv), e_f(k + step, pv)
            if abs(below - above) > mpmath.mpf(10) ** (-(mpmath.mp.dps // 2)) * (1 + abs(below) + abs(above)):
                found += [(k - step, None), (k + step, None)]
        for a, b, da, db in zip(xs, xs[1:], ds, ds[1:]):
            if da == 0:
                found.append((a, None))
            elif da * db < 0 and not any(a < k < b for k in kinks):
                try:
                    root = mpmath.findroot(lambda t: de_f(t, pv), (a, b), solver="illinois")
                except (ValueError, ZeroDivisionError):
                    continue
                found.append((root, None))
        return [(xi, e_f(xi, pv)) for xi, _ in found]

    def at_edge(xi):
        # the ends +-L themselves, not extrema near them: "within 1 of the edge" refused squareplus vs softplus on
        # |x| <= 4, whose extrema are interior (+-3.5646, where the ends are lower)
        return min(abs(xi - x_lo), abs(xi - x_hi)) <= mpmath.mpf(10) ** -10 * max(abs(x_lo), abs(x_hi))

    def edge_error(xi):
        # the domain is always finite: 'pass a finite domain to minimax over it' sent a call with domain=3 in circles
        return DomainError(
            f"the largest error at the optimum sits at the edge of the domain |x| <= {domain} (x = "
            f"{mpmath.nstr(xi, 8)}): the error still grows towards the end, so the minimax would depend on where the "
            "domain is cut, and minimax solves only for interior extrema. Widen domain until the extrema are "
            "interior; if the error grows without bound or its supremum is a limit at infinity, no domain does. If "
            f"the finite interval is the problem itself, pass interval=({-domain}, {domain}) instead of domain: its "
            "ends then count as extrema")

    def max_abs(pv, n=grid):
        pts = extrema(pv, n)
        return max(abs(v) for _, v in pts), pts

    def to_p(u):
        return mpmath.exp(u) if positive else u

    with mpmath.workdps(20):
        lo, hi = (mpmath.log(mpmath.mpf(sympy.N(v, 25))) if positive else mpmath.mpf(sympy.N(v, 25))
                  for v in parameter_range)
        us = [lo + (hi - lo) * i / 60 for i in range(61)]
        scores = [max_abs(to_p(u), 160)[0] for u in us]
        i_best = min(range(len(us)), key=lambda i: scores[i])
        if i_best in (0, len(us) - 1):
            raise DomainError(
                f"the max error keeps decreasing towards {p} = {mpmath.nstr(to_p(us[i_best]), 6)}, an end of "
                f"parameter_range {tuple(parameter_range)}: no interior minimax (the infimum is a limit). "
                "Widen parameter_range if you expect an interior optimum")
    with mpmath.workdps(25):
        a, b = us[i_best - 1], us[i_best + 1]
        ratio = (mpmath.sqrt(5) - 1) / 2
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        # golden section only has to isolate the active branches; the exact solve below does the rest
        fc, fd = max_abs(to_p(c), 160)[0], max_abs(to_p(d), 160)[0]
        for _ in range(30):
            if fc < fd:
                b, d, fd = d, c, fc
                c = b - ratio * (b - a)
                fc = max_abs(to_p(c), 160)[0]
            else:
                a, c, fc = c, d, fd
                d = a + ratio * (b - a)
                fd = max_abs(to_p(d), 160)[0]
        u_mid = (a + b) / 2
        spread = max(b - a, mpmath.mpf(10) ** -9)
        # largest extremum a little left and right of the optimum: the active branches
        _, left = max_abs(to_p(u_mid - 50 * spread))
        _, right = max_abs(to_p(u_mid + 50 * spread))
        x_left = max(left, key=lambda t: abs(t[1]))[0]
        x_right = max(right, key=lambda t: abs(t[1]))[0]

    with mpmath.workdps(work):
        kink_set = list(kinks)

        def track(x0, pv):
            """Follow a stationary point of e(., pv) from x0 (kinks and the ends +-L stay put: an end is no
            stationary point, and tracking it as one went to a neighbouring extremum, so sin(a x)/(a x) vs
            exp(-x**2/6) on |x| <= 2 failed with 'flat in a' at a = 1.0186 instead of naming the edge)."""
            if any(abs(x0 - k) < mpmath.mpf(10) ** -15 for k in kink_set) or at_edge(x0):
                return x0
            return mpmath.findroot(lambda t: de_f(t, pv), x0)

        state = {"xl": mpmath.mpf(x_left), "xr": mpmath.mpf(x_right)}

        def equal_heights(pv):
            state["xl"] = track(state["xl"], pv)
            state["xr"] = track(state["xr"], pv)
            return abs(e_f(state["xl"], pv)) - abs(e_f(state["xr"], pv))

        def stationary(pv):
            state["xl"] = track(state["xl"], pv)
            return dp_f(state["xl"], pv)

        # one branch on both sides (or mirror partners of an even error, equal for every p):
        # a smooth minimum of that branch; otherwise a crossing of two branches
        try:  # findroot (tracking the extrema, or solving for p) raises ValueError without naming p
            probes = [to_p(u_mid - 50 * spread), to_p(u_mid + 50 * spread)]
            gaps = [abs(abs(e_f(track(x_left, q), q)) - abs(e_f(track(x_right, q), q))) for q in probes]
            scale = abs(e_f(x_left, to_p(u_mid)))
            equation = stationary if all(g <= mpmath.mpf(10) ** -15 * scale for g in gaps) else equal_heights
            p_lo, p_hi = to_p(u_mid - spread), to_p(u_mid + spread)
            p_value = mpmath.findroot(equation, (p_lo, p_hi), solver="secant", tol=mpmath.mpf(10) ** (-2 * work + 10))
        except (ValueError, ZeroDivisionError):
            raise DomainError(
                f"the minimax {p} near {mpmath.nstr(to_p(u_mid), 8)} could not be solved to {dps} digits: the "
                "extremal branches neither cross nor have a stationary point there (the max error may be flat "
                f"in {p}, e.g. set by one extremum that does not depend on it); narrow parameter_range, domain or interval, "
                f"or raise grid (now {grid} points: too few can miss an extremum, e.g. grid=4 for squareplus vs "
                f"softplus, which grid=8 solves)"
            ) from None
        M, pts = max_abs(p_value, 2 * grid)
        # a minimum: the max error rises on both sides.  Where it is flat to the working precision the secant
        # "solved" a derivative that merely underflows: softplus(beta) vs silu gave beta = 1016.43 (every
        # beta > 30 has the same max error to 12 digits; the infimum is the limit beta -> oo)
        rises = [max_abs(q, 2 * grid)[0] - M for q in probes]
        if not all(r > mpmath.mpf(10) ** (-(work - 3)) * M for r in rises):
            raise DomainError(
                f"the minimax {p} could not be solved to {dps} digits: the max error {mpmath.nstr(M, 8)} does not rise "
                f"on both sides of {p} = {mpmath.nstr(p_value, 8)} (it is flat in {p} to {work} digits there, e.g. "
                f"set by extrema that no longer depend on {p}: the infimum is then a limit); narrow parameter_range"
            )
        # refine every extremum at the optimum and keep those at the maximum.  The active branches agree to
        # about work - 5 digits (findroot's residual); a tolerance of 100 * 10**-dps * M counted extrema 10%
        # below the maximum at dps=3, and every extremum, the ends +-L included, at dps <= 2
        tolerance = mpmath.mpf(10) ** (-(dps + 5)) * M + mpmath.mpf(10) ** (-(work - 6))
        active = []
        for xi, vi in pts:
            if abs(abs(vi) - M) <= tolerance:
                active.append((xi, vi))
        edges = [xi for xi, _ in active if at_edge(xi)]
        if edges and interval is None:  # on a finite interval (interval=) an end is an extremum like any other
            raise edge_error(edges[0])
        # deduplicate (a root found from two brackets)
        active.sort(key=lambda t: t[0])
        unique = []
        for xi, vi in active:
            if not unique or abs(xi - unique[-1][0]) > mpmath.mpf(10) ** (-dps // 2):
                unique.append((xi, vi))
        # the sign of de/dp at each extremum (0 where it vanishes to the precision: a stationary optimum)
        negligible = mpmath.mpf(10) ** (-(dps // 2 + 1)) * M / max(abs(p_value), 1)
        tangents = []
        for xi, _ in unique:
            slope_p = dp_f(xi, p_value)
            tangents.append(0 if abs(slope_p) <= negligible else (1 if slope_p > 0 else -1))
    with mpmath.workdps(dps):
        return MinimaxResult(p, +p_value, +M, tuple(+xi for xi, _ in unique),
                             tuple(1 if vi > 0 else -1 for _, vi in unique), error, dps, tuple(tangents),
                             _span(region), domain)


# ----------------------------------------------------------------------------- asymptotics


def asymptotic_expansion(f, point=0, order: int = 4, parameter=None, side: str | None = None) -> sympy.Expr:
    r"""Series of ``f`` (an Activation, name or expression in x) at ``point`` in {0, oo, -oo}
    (or any finite real number), with an ``O`` term; without one where the expansion is exact (relu at
    :math:`+\infty` is x).

    At :math:`\pm\infty` SymPy's ``series`` is used (at :math:`-\infty` through :math:`x = -y`);
    when that returns only an order term (exponentially small terms, e.g. softplus at
    :math:`-\infty`), the expansion is taken in :math:`u = e^{\pm x} \to 0` instead:
    softplus(x) = u - u^2/2 + u^3/3 - ... with u = e^x.

    A piecewise ``f`` (Max, Min, Abs, Heaviside, sign, Piecewise) is expanded through the piece that holds
    next to ``point`` (for :math:`\pm\infty`, beyond its last kink).  At a kink the two-sided expansion
    exists only where the pieces agree to the requested order; otherwise :class:`DomainError` is raised,
    and ``side="+"`` (from the right) or ``side="-"`` (from the left) gives the one-sided expansion, as
    for ``Activation.taylor``.  A function without an expansion at :math:`\pm\infty` (sin oscillates)
    and a point that is not a real number or :math:`\pm\infty` raise :class:`DomainError`.

    >>> x = sympy.Symbol("x", real=True)
    >>> asymptotic_expansion(sympy.log(1 + sympy.exp(x)), 0, 5)
    log(2) + x/2 + x**2/8 - x**4/192 + O(x**5)
    >>> asymptotic_expansion(sympy.Max(0, x), 0, 3, side="-")
    0
    """
    order = _check_whole_number("order", order, 0)
    if side not in (None, "+", "-"):
        raise DomainError(f"side={side!r}: use None (two-sided), '+' (from the right) or '-' (from the left)")
    expr = _with_parameter(f, parameter)[0] if parameter is not None else _expression(f)
    point = _expansion_point(point)
    if expr.has(*_PIECEWISE_ATOMS):
        expr = _piece_for_expansion(expr, point, order, side)
    try:
        if point.is_finite:
            return sympy.series(expr, X, point, order)
        return _expansion_at_infinity(expr, point, order)
    except (NotImplementedError, ValueError, TypeError, AttributeError, sympy.PoleError) as exc:
        if isinstance(exc, (DomainError, FormulaError)):
            raise
        if "AccumulationBounds" in str(exc):  # snake, x + sin(x)**2, at +-oo
            raise DomainError(f"{expr} oscillates as x -> {point}: it has no asymptotic expansion there") from None
        raise DomainError(f"SymPy could not expand {expr} at x = {point} to order {order} "
                          f"({type(exc).__name__}: {exc})") from None


#: the constructs whose pieces asymptotic_expansion expands one at a time (SymPy's series has no
#: _eval_nseries for Min/Max, and expands Abs and Heaviside at 0 from the right only)
_PIECEWISE_ATOMS = (sympy.Piecewise, sympy.Max, sympy.Min, sympy.Abs, sympy.Heaviside, sympy.sign)


def _expansion_point(point) -> sympy.Expr:
    """``point`` as oo, -oo or a finite real SymPy number; DomainError for nan, zoo, complex and non-numbers."""
    if isinstance(point, bool):
        raise DomainError(f"point={point!r}: give a real number, sympy.oo or -sympy.oo")
    try:
        value = safe_sympify(point, "point")
    except FormulaError:
        raise  # a string that is no number (code, a formula) is refused as safe_sympify says, as elsewhere
    except (sympy.SympifyError, TypeError, ValueError):
        raise DomainError(f"point={point!r}: give a real number, sympy.oo or -sympy.oo") from None
    if isinstance(value, float):
        value = sympy.Float(value)
    if not isinstance(value, sympy.Expr) or not value.is_number or value.has(sympy.nan, sympy.zoo):
        raise DomainError(f"point={point!r}: give a real number, sympy.oo or -sympy.oo")
    if value in (sympy.oo, -sympy.oo):
        return value
    if not (value.is_real and value.is_finite):
        raise DomainError(f"point={point!r} is not a real number: give a real number, sympy.oo or -sympy.oo")
    return value


def _piece_for_expansion(expr: sympy.Expr, point, order: int, side: str | None) -> sympy.Expr:
    """``expr`` with each piecewise construct replaced by its piece next to ``point``: beyond the outermost
    kink for +-oo, on ``side`` (or on both sides, which must agree to ``order``) at a kink."""
    from symact.activation import _piece_near

    kinks = [k for k in _singular_points(expr) if k.is_real]
    if not point.is_finite:
        sign = 1 if point is sympy.oo else -1
        reach = max((abs(k) for k in kinks), default=sympy.Integer(0))
        return _piece_near(expr, X, sign * (reach + 1), {})
    at_kink = next((k for k in kinks if sympy.simplify(k - point) == 0), None)
    others = [abs(k - point) for k in kinks if k is not at_kink]
    h = min(others) / 2 if others else sympy.Integer(1)
    if at_kink is None:
        return _piece_near(expr, X, point + h, {})
    left = _piece_near(expr, X, point - h, {})
    right = _piece_near(expr, X, point + h, {})
    if side is not None:
        return right if side == "+" else left
    for k in range(max(order, 1)):
        if sympy.simplify(sympy.diff(left - right, X, k).subs(X, point)) != 0:
            what = "jumps" if k == 0 else f"is only C^{k - 1} (its derivative of order {k} jumps)"
            raise DomainError(
                f"{expr} {what} at its kink x = {point}, so it has no two-sided expansion of order {order} there; "
                "pass side='+' (from the right) or side='-' (from the left) for the one-sided expansion"
                + ("" if k == 0 else ", or a lower order"))
    return right


def _expansion_at_infinity(expr: sympy.Expr, point, order: int) -> sympy.Expr:
    sign = 1 if point is sympy.oo else -1
    y = sympy.Symbol("y", positive=True)
    flipped = expr.subs(X, sign * y)
    _refuse_oscillation(expr, point)
    try:
        series = sympy.series(flipped, y, sympy.oo, order)
    except (sympy.PoleError, NotImplementedError, ValueError):
        return _power_expansion_by_limits(expr, point, order)
    if series.getO() is None:
        nested = series.atoms(sympy.Order)
        expansion = series.xreplace({o: sympy.Integer(0) for o in nested}).subs(y, sign * X)
        if not nested:
            # SymPy found no order term: exact (relu at +oo is x, at -oo 0) only where nothing is left over
            remainder = expr - expansion
            # sinc(x) - sin(x)/x does not simplify to 0 (x = 0); it vanishes at every sample beyond the origin
            if sympy.simplify(remainder) == 0 or all(
                    abs(sympy.N(remainder.subs(X, sign * t), 50)) < sympy.Float(10) ** -45 for t in (7, 31, 113)):
                return expansion
            raise DomainError(f"SymPy's series of {expr} at x = {point} came back without an order term, but it is "
                              f"not exact ({expansion}); no expansion with a bounded remainder was found")
        # an order term inside a product (erf at +oo: 1 - (1/y + O(y**-3))*exp(-y**2)/sqrt(pi)): its cofactor
        # belongs to the O term
        term = (series.xreplace({o: o.expr for o in nested}).subs(y, sign * X) - expansion)
        term = sympy.Mul(*[f for f in sympy.Mul.make_args(sympy.factor_terms(term)) if not f.is_number])
        return expansion + sympy.O(_checked_order_term(expr, expansion, term, point), (X, point))
    if series.removeO() == 0:
        u = sympy.Symbol("u", positive=True)
        in_u = sympy.simplify(flipped.subs(sympy.exp(-y), u).subs(sympy.exp(y), 1 / u))
        if y not in in_u.free_symbols:
            expansion = sympy.series(in_u, u, 0, order).removeO()
            return expansion.subs(u, sympy.exp(-sign * X)) + sympy.O(sympy.exp(-order * sign * X), (X, point))
        return series.subs(y, sign * X)
    expansion = series.removeO().subs(y, sign * X)
    return expansion + sympy.O(_checked_order_term(expr, expansion, series.getO().expr.subs(y, sign * X), point),
                               (X, point))


def _refuse_oscillation(expr: sympy.Expr, point) -> None:
    """DomainError where ``expr`` has no limit at +-oo relative to a power of x (sin, cos, snake oscillate:
    SymPy's series raised 'Only real AccumulationBounds are supported')."""
    for k in range(0, 3):
        try:
            value = sympy.limit(expr / X**k, X, point)
        except (NotImplementedError, ValueError, TypeError, sympy.PoleError):
            return
        if value.has(sympy.AccumBounds):
            raise DomainError(f"{expr} oscillates as x -> {point} (the limit of f/x**{k} is {value}): it has no "
                              "asymptotic expansion there")
        if value.is_finite:
            return


def _checked_order_term(expr: sympy.Expr, expansion: sympy.Expr, term: sympy.Expr, point) -> sympy.Expr:
    """The O term that bounds ``expr - expansion`` at ``point``: ``term``, or ``term * |x|**k`` for the
    least k <= 3 that does.  SymPy's series at infinity can drop a power of x from the order of
    exponentially small remainders (silu at -oo: O(exp(3x)) for a remainder ~ -x*exp(3x)).  Where the
    limit cannot be decided, ``term`` is kept as SymPy gave it."""
    remainder = expr - expansion
    for k in range(4):
        candidate = term * sympy.Abs(X) ** k
        try:
            ratio = sympy.limit(remainder / candidate, X, point)
        except (NotImplementedError, ValueError, TypeError, sympy.PoleError):
            return term
        if ratio.is_finite:
            return term * X**k if k else term
        if ratio.is_finite is None:
            return term
    return term


def _power_expansion_by_limits(expr: sympy.Expr, point, order: int) -> sympy.Expr:
    r"""Fallback when SymPy's ``series`` fails at :math:`\pm\infty` (e.g. erf-based SAU):
    coefficients of :math:`x^1, x^0, \dots, x^{2-order}` by successive limits,
    :math:`c_k = \lim (f - \sum_{j>k} c_j x^j)/x^k`, which is exact when f has an asymptotic power
    series of at most linear growth; the remainder is :math:`O(x^{1-order})`."""
    if sympy.limit(expr / X**2, X, point) != 0:
        raise FormulaError(f"{expr} grows faster than linearly at {point}; asymptotic_expansion's fallback "
                           "handles at most linear growth when SymPy's series fails")
    partial = sympy.Integer(0)
    for k in range(1, 1 - order, -1):
        coefficient = sympy.simplify(sympy.limit((expr - partial) / X**k, X, point))
        if not coefficient.is_finite:
            if coefficient.has(sympy.AccumBounds):
                raise DomainError(f"{expr} oscillates as x -> {point}: it has no asymptotic expansion there")
            raise FormulaError(f"no power expansion of {expr} at {point} (coefficient of x^{k} is {coefficient})")
        partial += coefficient * X**k
    return partial + sympy.O(X ** (1 - order), (X, point))
