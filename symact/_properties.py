"""How :meth:`Activation.properties` and :meth:`Activation.inverse` decide their answers.

Decisions are exact where SymPy can prove them.  A *negative* answer (not monotone,
not odd) is always backed by witnesses: points where the exact value, evaluated to
30 digits, contradicts the property.  A *positive* answer is a symbolic proof when
one is found, otherwise it is marked ``"sampled"`` in ``Properties.evidence``: no
contradiction at the sample points (including points near every kink and far out
at +-1000) and at the limits, but no proof.
"""

from __future__ import annotations

import sympy

from .errors import DomainError, NoInverseError

_DIGITS = 30
# |value| below this is treated as zero when reading signs of 30-digit evaluations.
_ZERO = sympy.Float("1e-25")
_MAX_ORDER = 6

_BASE_SAMPLES = tuple(
    sympy.Rational(s)
    for s in (
        "-30", "-17", "-10", "-7", "-5", "-4", "-3", "-5/2", "-2", "-3/2", "-6/5", "-1",
        "-3/4", "-1/2", "-1/3", "-1/5", "-1/10", "1/10", "1/5", "1/3", "1/2", "3/4", "1", "6/5", "3/2", "2",
        "5/2", "3", "4", "5", "7", "10", "17", "30",
    )
)


def _numeric(expr: sympy.Expr, symbol: sympy.Symbol, point) -> sympy.Expr | None:
    from .activation import _substituted, _tower_reach  # x**(10**6) at an exact point has millions of digits

    reach = _tower_reach(expr, (symbol,))
    if reach is not None and abs(point) > reach:
        # tanh(exp(exp(x))) at x = 30 raised a bare MemoryError in mpmath, exp(exp(exp(x))) did not return
        return None
    try:
        # maxn caps evalf's adaptive precision: catastrophic cancellation far out
        # (1/2 + erf(-700)/2) would otherwise ask for hundreds of thousands of digits.
        value = _substituted(expr, {symbol: point}, (symbol,)).evalf(_DIGITS, maxn=4 * _DIGITS)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not value.is_number or value.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo):
        return None
    if value.is_real is False:
        return None
    return value


def _sample_points(kinks) -> list:
    points = set(_BASE_SAMPLES)
    eps = sympy.Rational(1, 1000)
    for k in kinks:
        points.update({k - eps, k + eps, k - 1, k + 1})
    points.difference_update(kinks)
    return sorted(points, key=float)


def _sign(value) -> int:
    if value is None or abs(value) <= _ZERO:
        return 0
    return 1 if value > 0 else -1


_EPSILON = sympy.Rational(1, 10**20)


def select_branches(expr, symbol, point):
    """Replace every Piecewise by the branch whose condition holds at ``symbol = point``."""
    if not isinstance(expr, sympy.Basic) or not expr.has(sympy.Piecewise):
        return expr
    if isinstance(expr, sympy.Piecewise):
        for value, cond in expr.args:
            decided = cond.xreplace({symbol: point}) if isinstance(cond, sympy.Basic) else cond
            if decided in (True, sympy.true):
                return select_branches(value, symbol, point)
            if decided not in (False, sympy.false):
                return expr  # undecidable (symbolic parameters): leave the Piecewise
        return expr
    return expr.func(*(select_branches(a, symbol, point) for a in expr.args))


def _one_sided_pieces(expr, symbol, point):
    """The analytic pieces just right and just left of ``point``, as functions of t > 0.

    Branches are chosen by evaluating the conditions exactly at ``point +- 1e-20``; piece
    boundaries are the kinks themselves, so no other boundary lies that close.
    """
    t = sympy.Symbol("t", positive=True)
    rewritten = expr.rewrite(sympy.Piecewise)
    right = select_branches(rewritten, symbol, point + _EPSILON).xreplace({symbol: point + t})
    left = select_branches(rewritten, symbol, point - _EPSILON).xreplace({symbol: point - t})
    return t, sympy.piecewise_fold(right), sympy.piecewise_fold(left)


def _value_at_zero_plus(expr, t):
    value = sympy.sympify(expr).xreplace({t: sympy.S.Zero})
    if value.has(sympy.nan, sympy.zoo) or value.has(sympy.Piecewise):
        value = sympy.limit(expr, t, 0, "+")
    return value


def _same(a, b) -> bool:
    """Whether two one-sided values (of a derivative at a kink) are the same finite number.  An
    infinite or undefined value is never the same: that derivative does not exist there (|x|**(3/2) has
    f'' -> +oo from both sides, so it is C^1, not C^2; comparing oo - oo raised a TypeError)."""
    if any(sympy.sympify(value).has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo, sympy.AccumBounds) for value in (a, b)):
        return False
    difference = a - b
    if difference == 0:
        return True
    value = sympy.N(difference, _DIGITS)
    if value.is_number and abs(value) > _ZERO:
        return False
    return sympy.simplify(difference) == 0


def _smoothness_at(expr, symbol, point) -> int | sympy.Expr:
    """k such that expr is C^k but not C^(k+1) at point (-1: discontinuous)."""
    t, right, left = _one_sided_pieces(expr, symbol, point)
    if right.has(sympy.Piecewise) or left.has(sympy.Piecewise):
        return sympy.oo  # cannot resolve pieces: do not claim a kink
    for order in range(_MAX_ORDER + 1):
        r = _value_at_zero_plus(sympy.diff(right, t, order), t)
        l_ = _value_at_zero_plus((-1) ** order * sympy.diff(left, t, order), t)
        if not _same(r, l_):
            return order - 1
    # All derivatives up to _MAX_ORDER agree: smooth there if the pieces are one analytic function.
    return sympy.oo if sympy.simplify(right - left.xreplace({t: -t})) == 0 else _MAX_ORDER


# together() puts n fractions over one denominator with n products in the numerator, which factor()
# then expands: fine for a handful of terms, minutes for 19 (the derivative of a sum of tanh(x - k)).
_MAX_TERMS_TO_FACTOR = 6


def _tanh_squares_as_sech(expr):
    """tanh(u)**2 -> 1 - sech(u)**2: tanh(3x)' = 3 - 3*tanh(3x)**2 becomes 3*sech(3x)**2, whose sign
    SymPy sees (over one denominator, exp(4x) - exp(2x) + 1 > 0 is beyond it)."""
    return sympy.expand(expr.replace(
        lambda e: e.is_Pow and isinstance(e.base, sympy.tanh) and e.exp == 2,
        lambda e: 1 - sympy.sech(e.base.args[0]) ** 2))


def _proved_nonnegative(expr) -> bool:
    candidates = [expr]
    if expr.has(sympy.tanh):
        candidates.append(_tanh_squares_as_sech(expr))
    if sympy.count_ops(expr) < 80:
        rewritten = expr.rewrite(sympy.exp)
        if len(sympy.Add.make_args(rewritten)) <= _MAX_TERMS_TO_FACTOR:
            candidates.append(sympy.factor(sympy.together(rewritten)))
    for candidate in candidates:
        if isinstance(candidate, sympy.Piecewise):
            if all(piece.is_nonnegative for piece, _ in candidate.args):
                return True
        elif candidate.is_nonnegative:
            return True
    return False


def _proved_nonnegative_termwise(f, symbol, direction, name) -> bool:
    """A sum of functions monotone in the same direction is monotone: prove it term by term, each
    derivative small enough for the proof that the whole sum's derivative is too big for."""
    from .activation import _differentiated

    terms = sympy.Add.make_args(f)
    if len(terms) < 2:
        return False
    sign = -1 if direction == "non-increasing" else 1
    return all(_proved_nonnegative(sign * _differentiated(term, symbol, 1, name)) for term in terms)


def _proved_zero(expr) -> bool:
    if expr == 0:
        return True
    if sympy.count_ops(expr) > 120:
        return False
    try:
        return sympy.simplify(expr.rewrite(sympy.exp)) == 0
    except (TypeError, ValueError, NotImplementedError):
        return False


def _jumps(expr, symbol, kinks):
    """(kink, right limit minus left limit of expr) for each kink whose pieces resolve."""
    out = []
    for k in kinks:
        t, right, left = _one_sided_pieces(expr, symbol, k)
        if right.has(sympy.Piecewise) or left.has(sympy.Piecewise):
            continue
        out.append((k, sympy.N(_value_at_zero_plus(right, t) - _value_at_zero_plus(left, t), _DIGITS)))
    return out


def _boundedness(lim_plus, lim_minus, sign):
    """Is sign*f bounded above, given the limits of f at +-oo? (assumes f has no real poles)"""
    decided = []
    for lim in (lim_plus, lim_minus):
        if lim is sympy.nan or lim.has(sympy.nan):
            decided.append(None)
        elif isinstance(lim, sympy.AccumBounds):
            decided.append((sign * lim).max.is_finite)
        elif lim == sign * sympy.oo:
            return False
        elif lim == -sign * sympy.oo or lim.is_finite:
            decided.append(True)
        elif _reaches(lim, sign * sympy.oo):
            return False
        else:  # undecided here, but the other side may be unbounded (x*sin(x)**2 below, at -oo)
            decided.append(None)
    return None if None in decided else all(decided)


def _reaches(lim, target) -> bool:
    """Whether a limit SymPy left as oo*sign(AccumBounds(0, b)) (x*sin(x)**2: the growing factor times
    one that takes every value in [0, b] arbitrarily far out) has ``target`` (+-oo) among its limit points:
    where the factor is near b != 0 the product tends to oo*sign(b).  Where it is near 0 the product
    may stay finite or not (x*(sin(x)**2 - 1/(1 + |x|)**(1/3)) has the same limit and tends to -oo at
    x = n*pi), so only the side of the nonzero end is decided."""
    nodes = [e for e in sympy.preorder_traversal(lim)
             if isinstance(e, sympy.sign) and isinstance(e.args[0], sympy.AccumBounds)]
    if len(nodes) != 1:
        return False
    bounds = nodes[0].args[0]
    for end, other in ((bounds.max, bounds.min), (bounds.min, bounds.max)):
        if other.is_zero and end.is_nonzero and lim.xreplace({nodes[0]: sympy.sign(end)}) == target:
            return True
    return False


def real_singularities(expr: sympy.Expr, symbol: sympy.Symbol) -> sympy.Set:
    """The real points where ``expr`` is not finite and has no finite limit (poles of tan, 1/x).

    Removable singularities (``sin(x)/x`` at 0) are left out.  Periodic sets come back as
    SymPy's ``ImageSet``s (tan: pi/2 + n*pi); :func:`singular_points_near_0` lists some.
    EmptySet where SymPy cannot find the continuity domain (Piecewise, erf, ...): those
    formulas are built from functions that are finite everywhere.

    >>> x = sympy.Symbol("x", real=True)
    >>> real_singularities(1 / x, x), real_singularities(sympy.sin(x) / x, x)
    ({0}, EmptySet)
    """
    from sympy.calculus.util import continuous_domain

    try:
        domain = continuous_domain(expr, symbol, sympy.S.Reals)
    except (NotImplementedError, TypeError, ValueError):
        return sympy.S.EmptySet
    if isinstance(domain, sympy.Complement) and domain.args[0] == sympy.S.Reals:
        missing = domain.args[1]  # SymPy leaves Reals minus a periodic set unevaluated
    else:
        missing = sympy.S.Reals - domain
    if isinstance(missing, sympy.FiniteSet):
        return sympy.FiniteSet(*(p for p in missing if not _removable(expr, symbol, p)))
    parts = missing.args if isinstance(missing, sympy.Union) else (missing,)
    if all(isinstance(part, (sympy.ImageSet, sympy.FiniteSet)) for part in parts):
        if all(_removable(expr, symbol, p) for p in singular_points_near_0(missing)):
            return sympy.S.EmptySet
        return missing
    return sympy.S.EmptySet  # intervals: outside the real domain (sqrt(x) for x < 0), another check's business


def singular_points_near_0(points: sympy.Set, per_family: int = 2) -> list:
    """Elements of a set from :func:`real_singularities`: all of a finite set, and n = -k..k of
    each periodic family."""
    parts = points.args if isinstance(points, sympy.Union) else (points,)
    found = []
    for part in parts:
        if isinstance(part, sympy.FiniteSet):
            found.extend(part)
        elif isinstance(part, sympy.ImageSet):
            found.extend(part.lamda(n) for n in range(-per_family, per_family + 1))
    return sorted(set(found), key=lambda p: (abs(float(p)), float(p)))


def zeros_of_denominators(expr: sympy.Expr, symbol: sympy.Symbol) -> set:
    """The real zeros of the bases of ``expr``'s negative powers: where a pole may hide behind sign, Heaviside
    or a Piecewise that SymPy's continuity domain does not see (sign(x)/x at 0).  A base that vanishes on a
    half-line (Max(0, x) in sqrt(Max(0, x))'s slope) gives its finite ends; periodic zeros are left out."""
    found = set()
    for node in sympy.preorder_traversal(expr):
        if not (isinstance(node, sympy.Pow) and node.exp.is_negative and node.base.has(symbol)):
            continue
        try:
            zeros = sympy.solveset(node.base, symbol, sympy.S.Reals)
        except (NotImplementedError, TypeError, ValueError):
            continue
        if isinstance(zeros, sympy.FiniteSet):
            found |= {b for b in zeros if b.is_real}
        elif isinstance(zeros, sympy.Interval) or (
                isinstance(zeros, sympy.Union) and all(isinstance(part, sympy.Interval) for part in zeros.args)):
            found |= {b for b in zeros.boundary if b.is_real and b.is_finite}
    return found


def _removable(expr: sympy.Expr, symbol: sympy.Symbol, point: sympy.Expr) -> bool:
    try:
        left, right = (sympy.limit(expr, symbol, point, side) for side in ("-", "+"))
    except (NotImplementedError, TypeError, ValueError):
        return False
    return bool(left.is_finite and right.is_finite and sympy.simplify(left - right) == 0)


def one_sided_limit(expr, symbol, point, sign: int):
    """The limit of ``expr`` as ``symbol`` -> ``point`` from the right (``sign`` = 1) or the left (-1).

    Taken as t -> 0+ of expr at point + sign*t with t positive: SymPy's limit(..., "-") misreads Abs and
    sign, and its default is the right-hand limit.  sinc has no leading-term routine in SymPy
    (NotImplementedError): it is retried written as sin(x)/x.
    """
    t = sympy.Symbol("t", positive=True)
    moved = expr.xreplace({symbol: point + sign * t})
    try:
        return sympy.limit(moved, t, 0, "+")
    except NotImplementedError:
        return sympy.limit(moved.rewrite(sympy.sin), t, 0, "+")


def _one_sided_limits_at_0(expr, symbol):
    """[right, left] limits of ``expr`` at 0 (:func:`one_sided_limit`), or None where SymPy cannot take them."""
    try:
        return [one_sided_limit(expr, symbol, sympy.S.Zero, sign) for sign in (1, -1)]
    except (NotImplementedError, ValueError, TypeError):
        return None


def _definite(limit) -> bool:
    return not limit.has(sympy.nan, sympy.zoo, sympy.AccumBounds) and (
        bool(limit.is_finite) or limit in (sympy.oo, -sympy.oo))


def _slope_at_0(f, symbol, derivative, value_at_0):
    """f'(0) where the derivative's formula is undefined there (sinc, sqrt(Abs(x)), x**2*sin(1/x)): the
    common limit of f' from both sides, else of the difference quotient (f(h) - f(0))/h from both sides;
    nan where the two sides differ (a cusp: sqrt(Abs(x)) is +oo on the right, -oo on the left) or
    oscillate (x*sin(1/x)).  A one-sided limit alone made sqrt(Abs(x)) report slope +oo."""
    for expr in (derivative, (f - value_at_0) / symbol):
        sides = _one_sided_limits_at_0(expr, symbol)
        if sides is None or not all(_definite(side) for side in sides):
            continue  # undecided or oscillating: the difference quotient may still settle it
        right, left = sides
        if right == left or _same(right, left):
            return right
        return sympy.nan
    return sympy.nan


def _infinite_at(f, symbol, point) -> bool:
    from .activation import _substituted

    value = _substituted(f, {symbol: point}, (symbol,))
    return value.has(sympy.zoo, sympy.oo, -sympy.oo)


def derive_properties(f, symbol, kinks, name="the activation"):
    from .activation import Properties, _differentiated, _limit_at_infinity

    singular = real_singularities(f, symbol)
    if singular == sympy.S.EmptySet:
        # continuous_domain does not know every function's poles (gamma(x), factorial(x), zeta(x)): an
        # infinite value at a sample point that is no removable singularity is one
        singular = sympy.FiniteSet(*(p for p in _sample_points(kinks) + [sympy.S.Zero]
                                     if _infinite_at(f, symbol, p) and not _removable(f, symbol, p)))
    if singular != sympy.S.EmptySet:
        raise DomainError(
            f"{name} is not finite on the whole real line: it is singular at {singular}; properties() "
            "describes functions that are finite for every real input (bounded, monotone, smooth between "
            "kinks). Use an activation without poles, or one that is defined by a finite Piecewise there.")
    evidence = {}
    derivative = _differentiated(f, symbol, 1, name)

    value_at_0 = f.xreplace({symbol: sympy.S.Zero})
    if value_at_0.has(sympy.nan, sympy.zoo):
        value_at_0 = sympy.limit(f, symbol, 0)
    slope_at_0 = derivative.xreplace({symbol: sympy.S.Zero})
    if slope_at_0.has(sympy.DiracDelta):
        slope_at_0 = sympy.nan  # a jump at 0: no slope
    elif slope_at_0.has(sympy.nan, sympy.zoo):
        slope_at_0 = _slope_at_0(f, symbol, derivative, value_at_0)

    lim_plus = _limit_at_infinity(f, symbol, 1)
    lim_minus = _limit_at_infinity(f, symbol, -1)
    bounded_above = _boundedness(lim_plus, lim_minus, 1)
    bounded_below = _boundedness(lim_plus, lim_minus, -1)
    evidence["bounded"] = "limits at +-oo (continuity between kinks assumed)"

    # --- smoothness
    if kinks:
        per_kink = {k: _smoothness_at(f, symbol, k) for k in kinks}
        smoothness = min(per_kink.values(), key=lambda s: float(s) if s != sympy.oo else float("inf"))
        differentiable_at_0 = slope_at_0 is not sympy.nan and not (
            0 in per_kink and per_kink[0] != sympy.oo and per_kink[0] < 1)
        if differentiable_at_0 and 0 in per_kink:
            # f is C^1 at the kink 0, so f'(0) is the limit of f' from both sides; the derivative's formula
            # there follows PyTorch's autograd instead, which may take a branch holding only at 0
            # (softshrink and hardshrink at lambd = 0 are the identity, yet slope_at_0 was 0, not 1)
            limit = _slope_at_0(f, symbol, derivative, value_at_0)
            if limit is not sympy.nan:
                slope_at_0 = limit
        evidence["smoothness"] = "one-sided derivatives at the kinks " + ", ".join(
            f"{k}: C^{s}" for k, s in per_kink.items()
        )
    else:
        smoothness = sympy.oo
        differentiable_at_0 = slope_at_0 is not sympy.nan
        evidence["smoothness"] = "symbolic: no piecewise constructs"

    # --- monotonicity: signs of f' at sample points, and of jumps at kinks
    points = _sample_points(kinks)
    signs = {}
    for p in points:
        s = _sign(_numeric(derivative, symbol, p))
        signs.setdefault(s, p)
    for k, jump in _jumps(f, symbol, kinks):
        signs.setdefault(_sign(jump), f"{k} (a jump)")
    if 1 in signs and -1 in signs:
        monotone, direction = False, None
        evidence["monotone"] = f"counterexample: f' > 0 at x={signs[1]}, f' < 0 at x={signs[-1]}"
    else:
        monotone = True
        direction = "non-decreasing" if 1 in signs else "non-increasing" if -1 in signs else "constant"
        target = derivative if direction != "non-increasing" else -derivative
        if direction == "constant":
            monotone, evidence["monotone"] = (True, "sampled")
        elif _proved_nonnegative(target) or _proved_nonnegative_termwise(f, symbol, direction, name):
            # The jumps' signs were already checked above, so f' >= 0 between kinks suffices.
            evidence["monotone"] = "symbolic"
        else:
            evidence["monotone"] = f"sampled at {len(points)} points and the kinks' jumps; no symbolic proof"

    # --- parity: witnesses first, proofs second
    mirrored = f.xreplace({symbol: -symbol})
    odd, even = _parity(f, mirrored, symbol, evidence)

    return Properties(
        bounded_above=bounded_above,
        bounded_below=bounded_below,
        monotone=monotone,
        direction=direction,
        odd=odd,
        even=even,
        smoothness=smoothness,
        differentiable_at_0=differentiable_at_0,
        value_at_0=value_at_0,
        slope_at_0=slope_at_0,
        limit_at_plus_infinity=lim_plus,
        limit_at_minus_infinity=lim_minus,
        kinks=tuple(kinks),
        evidence=evidence,
    )


_PARITY_POINTS = tuple(sympy.Rational(s) for s in ("1/7", "1/3", "9/10", "7/5", "3", "11/2", "13"))


def _parity(f, mirrored, symbol, evidence):
    results = {}
    for name, combination in (("odd", mirrored + f), ("even", mirrored - f)):
        witness = None
        for p in _PARITY_POINTS:
            value = _numeric(combination, symbol, p)
            if value is not None and abs(value) > _ZERO:
                witness = p
                break
        if witness is not None:
            results[name] = False
            evidence[name] = f"counterexample at x={witness}"
        elif _proved_zero(combination):
            results[name] = True
            evidence[name] = "symbolic"
        else:
            results[name] = True
            evidence[name] = f"sampled at {len(_PARITY_POINTS)} points; no symbolic proof"
    return results["odd"], results["even"]


# ------------------------------------------------------------------- inverse
def invert(f, symbol, properties):
    if properties.monotone is not True or properties.direction == "constant":
        reason = properties.evidence.get("monotone", "")
        raise NoInverseError(
            f"{f} is not injective on the real line ({reason}); restrict it to a monotone branch first"
        )
    y = sympy.Symbol("y", real=True)
    rewritten = sympy.piecewise_fold(f.rewrite(sympy.Piecewise)) if properties.kinks else f
    if isinstance(rewritten, sympy.Piecewise):
        return _invert_piecewise(rewritten, symbol, y, properties.direction).xreplace({y: symbol})
    return _invert_analytic(rewritten, symbol, y).xreplace({y: symbol})


_INVERSE_PROBES = (sympy.Rational(3, 7), sympy.Rational(-6, 5), sympy.Rational(5, 2))


def _probes_in(region) -> list:
    """Points at which a piece's inverse is checked: the default probes inside ``region`` (a set, or a
    condition that names none), else two points inside it (x*|x|'s piece x**2 on [0, oo) was checked at
    x = -6/5, and its inverse sqrt(y) refused)."""
    if not isinstance(region, sympy.Set):
        return list(_INVERSE_PROBES)
    inside = [p for p in _INVERSE_PROBES if region.contains(p) is sympy.true]
    if inside or not isinstance(region, sympy.Interval):
        return inside
    low, high = region.start, region.end
    if low.is_infinite and high.is_infinite:
        return list(_INVERSE_PROBES)
    if high.is_infinite:
        return [low + sympy.Rational(3, 7), low + sympy.Rational(5, 2)]
    if low.is_infinite:
        return [high - sympy.Rational(3, 7), high - sympy.Rational(5, 2)]
    return [low + (high - low) / 3, low + 2 * (high - low) / 3]


def _invert_analytic(f, symbol, y, region=None):
    """The solution x(y) of y = f(x) that maps f back to x at probe points (in ``region``, a piece's set)."""
    if not f.has(symbol):
        raise NoInverseError(f"{f} is constant; it has no inverse")
    solutions = []
    # unchecked solutions too, after the checked ones: SymPy drops -y**2 from y = -sqrt(-x) (it cannot tell
    # that y <= 0 there), and the probes below are the check
    for check in (True, False):
        try:
            solutions += [s for s in sympy.solve(sympy.Eq(y, f), symbol, check=check) if s not in solutions]
        except (NotImplementedError, ValueError):
            continue  # no candidates from this mode: the other's (or none, refused below) stand
    # an odd root as the real one: solve gives y**(1/3) for x**3, complex (the principal root) for y < 0
    odd_root = lambda e: (isinstance(e, sympy.Pow) and e.exp.is_Rational and e.exp.p == 1 and e.exp.q % 2 == 1
                          and e.exp.q > 1)
    solutions += [r for r in (s.replace(odd_root, lambda e: sympy.sign(e.base) * sympy.Abs(e.base) ** e.exp)
                              for s in solutions) if r not in solutions]
    # no probe inside a region SymPy gives as a union: the default ones (a check outside may refuse an
    # inverse, never accept a wrong one)
    probes = (_probes_in(region) if region is not None else []) or list(_INVERSE_PROBES)
    for candidate in solutions:
        ok = True
        for x0 in probes:
            y0 = f.xreplace({symbol: x0})
            # erfcinv has no numeric evaluation of its own in SymPy; erfinv(1 - y) has (erfc's inverse
            # raised a bare TypeError comparing the unevaluated erfcinv(erfc(3/7)) with 1e-20)
            back = sympy.N(candidate.xreplace({y: y0}).rewrite(sympy.erfinv), _DIGITS)
            if not back.is_Number or back.is_real is False or abs(back - x0) > 1e-20:
                ok = False
                break
        if ok:
            # erfinv(1 - y), not erfcinv(y): SymPy evaluates only the first to a number
            return candidate.rewrite(sympy.erfinv) if candidate.has(sympy.erfcinv) else candidate
    raise NoInverseError(f"SymPy found no closed-form inverse of {f} valid on the whole range")


def _piece_region(pw, index, symbol):
    """Where piece ``index`` of ``pw`` holds (its condition and none before it), as a set when SymPy can
    say, else its condition: the last piece's condition is True, which names no region."""
    cond = pw.args[index].cond
    try:
        region = sympy.And(cond, *[sympy.Not(c) for _, c in pw.args[:index]]).as_set()
    except (NotImplementedError, TypeError, ValueError):
        return cond
    return region if isinstance(region, sympy.Set) else cond


def _invert_piecewise(pw, symbol, y, direction):
    regions = [_piece_region(pw, index, symbol) for index in range(len(pw.args))]
    # a piece that holds at one point (or nowhere) is no piece of the inverse: its neighbours' inverses meet
    # there (sign(x)*|x|**(1/3) folds to a piece 0 at x = 0, refused as "constant (0) for x in {0}"; the
    # fold of Max(x, 0) + Min(x, 0)/2 ends with a catch-all piece that holds nowhere)
    kept = [index for index, region in enumerate(regions)
            if not (isinstance(region, sympy.FiniteSet) or region is sympy.EmptySet)]
    for index in kept:
        # a constant piece first: softshrink said "constant on a piece (True)", and hardshrink, whose first
        # condition is an Or, "invert the pieces by hand", though it is constant (0) on [-1/2, 1/2]
        if not pw.args[index].expr.has(symbol):
            raise NoInverseError(f"{pw} is constant ({pw.args[index].expr}) for x in {regions[index]}; "
                                 "it is not injective")
    pieces = []
    for n, index in enumerate(kept):
        expr, region = pw.args[index].expr, regions[index]
        inverse = _invert_analytic(expr, symbol, y, region)
        if n == len(kept) - 1:  # the others and finitely many points leave it the rest of the range
            pieces.append((inverse, True))
            continue
        if not isinstance(region, sympy.Interval):
            raise NoInverseError(f"cannot invert a piece on {region}; invert the pieces by hand")
        pieces.append((inverse, _image_condition(expr, symbol, region, y, direction)))
    return sympy.Piecewise(*pieces)


def _image_condition(expr, symbol, region, y, direction):
    """y in the image of ``region`` (an interval) under the monotone piece ``expr``, as relations on y: each
    finite end a of the interval bounds y by expr(a), strictly where the interval is open there."""
    increasing = direction != "non-increasing"
    relations = []
    for end, is_open, lower in ((region.start, region.left_open, True), (region.end, region.right_open, False)):
        if end.is_infinite:
            continue
        bound = expr.xreplace({symbol: end})
        if bound.has(sympy.nan, sympy.zoo):
            bound = sympy.limit(expr, symbol, end, "+" if lower else "-")
        above = lower == increasing  # y lies above the end's image
        relation = (sympy.StrictGreaterThan if is_open else sympy.GreaterThan) if above else \
            (sympy.StrictLessThan if is_open else sympy.LessThan)
        relations.append(relation(y, bound))
    return sympy.And(*relations)
