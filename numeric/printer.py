"""Turn SymPy expressions into PyTorch source code that is safe to run and differentiate.

SymPy's stock ``lambdify(expr, modules="torch")`` fails activations in several
ways: it prints ``torch.sqrt(2)`` on a Python int (a crash), has no rule for
``Max``/``Min``/``Heaviside``, returns Python ints for constants, and prints
``Piecewise`` as a ``torch.where`` over branches that are evaluated everywhere, so
the untaken branch's ``inf``/``NaN`` poisons the gradient.  This printer emits
straight-line Python source instead:

* every numeric subexpression is evaluated with SymPy at 30 digits and printed as
  a Python ``float`` literal (correctly rounded to double; PyTorch rounds it to the
  tensor's dtype), so the code is dtype and device agnostic;
* ``Max``/``Min`` with a constant become ``torch.clamp``, otherwise
  ``torch.maximum``/``torch.minimum``; ``Heaviside(u)`` becomes ``(sign(u) + 1)/2``
  (zero gradient everywhere, value 1/2 at 0 as in SymPy);
* ``Piecewise`` becomes nested ``torch.where`` whose branches see a *masked*
  input: branch ``i`` is evaluated at ``where(region_i, x, p_i)`` where ``p_i`` is a
  point inside the branch's region, so neither the value nor the gradient of an
  untaken branch can be ``inf``/``NaN`` (the "double where" rule);
* the safe primitives of :mod:`symact.primitives` and the fused patterns
  ``u*Sigmoid(u)`` and ``u*tanh(Softplus(u))`` map to PyTorch's fused built-ins
  (``torch.sigmoid``, ``F.softplus``, ``F.logsigmoid``, ``torch.special.expm1``,
  ``torch.special.log1p``, ``torch.special.ndtr``, ``torch.special.erfcx`` (through a helper exact in
  ``exp(u**2)`` for ``u < 0``), ``F.silu``, ``F.mish``); ``FermiDirac(n, u)`` (``-polylog(n, -exp(u))``,
  logistic smoothing of quadratic pieces) maps to the helper ``_fermi_dirac``, a series in ``softplus(-|u|)``
  and the reflection polynomial for ``u > 0``; in a sum of such terms of one ``u`` (a trainable width's
  gradient) the reflection polynomials are added symbolically, so that their growing parts cancel exactly
  (``_reflect_fermi_dirac``), and such a sum that is even in ``u`` (a trainable softplus beta's gradient) is
  evaluated at ``-|u|`` (``_even_group``);
* in *in-place* mode, temporaries whose last use is the current operation are
  updated in place (``t.mul_(u)``, ``t.exp_()``), so a chain of elementwise steps
  reuses one scratch buffer instead of allocating one tensor per SymPy node.  This
  mode is for code that autograd does not record (``autograd.Function.forward`` and
  a first-order ``backward``); *graph* mode emits only out-of-place operations.

The entry point is :func:`emit_function`; :func:`prepare` is the symbolic
preprocessing it applies (fused patterns, Piecewise masking, dropping
``DiracDelta``), exposed for tests.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import sympy
from sympy import Add, Mul, Pow, Rational, S

from symact.errors import FormulaError
from symact.primitives import (Erfcx, Expm1, FermiDirac, Log1p, LogSigmoid, NormalCdf, Sigmoid, Softplus,
                               fermi_dirac_reflection_polynomial, fermi_dirac_series_coefficients, one_signed_sum,
                               split_numeric_factor)

__all__ = ["emit_function", "prepare", "fuse_builtins", "number_literal", "numpy_modules", "SOFTPLUS_THRESHOLD",
           "PRELUDE"]

#: ``F.softplus`` returns ``x`` itself above this threshold.  ``log1p(exp(-37)) / 37``
#: is 2e-18, below half an ulp in float64, and ``exp(37)`` does not overflow float32.
SOFTPLUS_THRESHOLD = 37.0


# --------------------------------------------------------------------------- marker functions
class _Silu(sympy.Function):
    """u*Sigmoid(u), printed as F.silu(u)."""

    nargs = 1


class _Mish(sympy.Function):
    """u*tanh(Softplus(u)), printed as F.mish(u)."""

    nargs = 1


class _Step(sympy.Function):
    """Heaviside(u) with value 1/2 at 0, printed (sign(u) + 1)/2 -- opaque to SymPy, so
    it is never expanded into 1/2*sign(u) + 1/2 and added to other terms (cancellation)."""

    nargs = 1


class _Select(sympy.Function):
    """_Select(cond, a, b) = a where cond else b (torch.where)."""

    nargs = 3


class _SqrtSquarePlus(sympy.Function):
    """_SqrtSquarePlus(u, c) = sqrt(u**2 + c) for a number c > 0, printed through torch.hypot: marked
    before common subexpressions are taken out, which would otherwise name u**2 (bent_identity's
    x**2/(sqrt(x**2 + 1) + 1) uses it twice) and leave sqrt(t + 1), overflowing with u**2."""

    nargs = 2

    def _eval_is_positive(self):
        return True  # so that 1/(sqrt(u**2 + c) + 1) stays a power of a positive base (finite)

    def _eval_is_real(self):
        return True


class _SquarePlusRatio(sympy.Function):
    """_SquarePlusRatio(u, r) = u/r for r = _SqrtSquarePlus(u, c), u/sqrt(u**2 + c) (bounded by 1): opaque,
    so that x*_SquarePlusRatio(x**2, ...) is not merged back into x**3/sqrt(x**4 + 1), whose x**3
    overflows first; r is an argument so that common subexpressions share it with a 1/r beside it.
    Built by :func:`_square_plus_ratio`."""

    nargs = 2

    def _eval_is_real(self):
        return True


class _Hypot(sympy.Function):
    """_Hypot(a, b) = sqrt(a**2 + b**2) for expressions a and b, printed torch.hypot(a, b): finite wherever
    the value is, where a**2 or b**2 overflows first (exp(x)/sqrt(1 + x**2*exp(2*x)), normalised to
    exp(x - m/2)/sqrt(x**2*exp(2*x - m) + exp(-m)), m = Max(0, 2*x), was 0 from x = 1.8e19 in float32 where
    it is ~1/x).  Built by :func:`_sum_of_squares` where the sum's terms are all non-constant; sqrt(u**2 + c)
    with a number c stays _SqrtSquarePlus."""

    nargs = 2

    def _eval_is_positive(self):
        # positive where one of a, b is nonzero (exp(x - m/2) beside x*exp(-m/2)): hypot(x, x**2) is 0 at x = 0
        return sympy.core.logic.fuzzy_or(a.is_nonzero for a in self.args)

    def _eval_is_nonnegative(self):
        return True

    def _eval_is_real(self):
        return sympy.core.logic.fuzzy_and(a.is_real for a in self.args)


class _Finite(sympy.Function):
    """_Finite(u) = u with +-inf replaced by the format's largest finite number (NaN stays NaN): the
    u of a _SquarePlusRatio that can overflow (x**2, exp(x/2)), so that the ratio is 1 there, as it is
    to the last bit beyond sqrt(c)*2**(p/2), instead of inf/inf = NaN."""

    nargs = 1

    def _eval_is_real(self):
        return self.args[0].is_real


class _FoldedArgument(sympy.Function):
    """_FoldedArgument(u, u > 0) = -|u|, printed torch.where(u > 0, -u, u): where a reflected Fermi-Dirac sum
    (:func:`_reflect_fermi_dirac`) evaluates its decaying parts, F_k(u) for u <= 0 and F_k(-u) for u > 0, one
    evaluation for both branches.  Its autograd slope is 1 at u = 0 (abs() would give 0 there, and
    F_k's slope at 0 with it).  The condition is an argument so that the Piecewise's where() shares it."""

    nargs = 2

    def _eval_is_extended_real(self):
        return self.args[0].is_extended_real

    def _eval_is_nonpositive(self):
        return True if self.args[0].is_extended_real else None


class _NegativeAbs(_FoldedArgument):
    """_NegativeAbs(u, u > 0) = -|u| where an even sum of Fermi-Dirac terms is evaluated (:func:`_even_group`):
    in graph code printed as its parent, torch.where(u > 0, -u, u), whose autograd slope 1 at u = 0 keeps second
    derivatives there (abs() has slope 0 at 0, so d2/du2 S(-|u|) would be 0 for S''(0)); in in-place code, which
    autograd never differentiates, as abs and neg, without the comparison no Piecewise shares here."""


class _FermiDiracLeft(sympy.Function):
    """_FermiDiracLeft(n, w) = FermiDirac(n, w) for w <= 0 only (n >= 2), printed as the prelude's
    _fermi_dirac_left: the series in softplus(w) alone, without the reflection polynomial that _fermi_dirac
    evaluates for the other side.  Its argument is a _FoldedArgument."""

    nargs = 2

    def _eval_is_extended_real(self):
        return self.args[1].is_extended_real


class _Masked(sympy.Function):
    """_Masked(u, region, point) = u inside region, point outside (a safe branch input)."""

    nargs = 3

    def _eval_is_extended_real(self):
        # real like u (point is a real number): Max(0, x + 1/3) in a branch is rebuilt around
        # _Masked(x, ...) and SymPy's Max/Min refuse an argument not known to be real
        return self.args[0].is_extended_real


def number_literal(value: sympy.Expr) -> str:
    """A numeric SymPy expression as a Python float literal (correctly rounded double).

    >>> number_literal(sympy.sqrt(2) / 2)
    '0.7071067811865476'
    """
    number = sympy.N(value, 30)
    if not number.is_real:
        raise FormulaError(
            f"the constant {value} is not real; activations must be real-valued: check the formula"
        )
    literal = float(number)
    if not math.isfinite(literal):
        # repr(float) of a constant beyond the double range is 'inf', a bare name in the generated code
        # (NameError: name 'inf' is not defined, for 4.17e+108573*exp(-x**2))
        raise FormulaError(
            f"the constant {sympy.N(number, 6)} is outside the range of a double (about 1.8e308): it "
            "cannot be written into floating-point code; combine it with the factors it multiplies "
            "(e.g. one exponential exp(u + log(c)) instead of c*exp(u)) so that no constant overflows"
        )
    return repr(literal)


# --------------------------------------------------------------------------- symbolic preparation
def fuse_builtins(expr: sympy.Expr) -> sympy.Expr:
    """Replace u*Sigmoid(u) by _Silu(u) and u*tanh(Softplus(u)) by _Mish(u) inside products."""

    def rule(mul: sympy.Mul) -> sympy.Expr:
        factors = list(mul.args)
        for i, f in enumerate(factors):
            inner = None
            marker = None
            if isinstance(f, Sigmoid):
                inner, marker = f.args[0], _Silu
            elif isinstance(f, sympy.tanh) and isinstance(f.args[0], Softplus):
                inner, marker = f.args[0].args[0], _Mish
            if inner is None or inner.is_number:
                continue
            for j, g in enumerate(factors):
                if j != i and g == inner:
                    rest = [h for k, h in enumerate(factors) if k not in (i, j)]
                    return Mul(marker(inner), *rest)
        return mul

    return expr.replace(lambda e: isinstance(e, Mul), rule)


def _reduce_relation(rel: sympy.Basic, symbol: sympy.Symbol) -> sympy.Basic:
    """``k*f(c*symbol) <op> 0`` -> ``symbol <op'> 0`` for f increasing with f(0) = 0 (Expm1, Log1p)
    and factors k, c of known sign (e.g. positive trainable parameters): SymPy's solvers give up
    on the former, and without a point inside the branch's region it cannot be made safe."""
    if not isinstance(rel, sympy.Rel) or rel.rhs != 0 or not rel.lhs.has(symbol):
        return rel
    lhs, flip = rel.lhs, False
    while True:
        coeff, rest = lhs.as_independent(symbol, as_Add=False)
        if coeff.is_negative:
            flip = not flip
        elif not coeff.is_positive:
            return rel
        if isinstance(rest, (Expm1, Log1p)):
            lhs = rest.args[0]
            continue
        if rest != symbol:
            return rel
        return rel.reversed.func(symbol, 0) if flip else rel.func(symbol, 0)


def _interior_point(region: sympy.Boolean, symbol: sympy.Symbol) -> sympy.Expr | None:
    """A point of ``region`` (a condition on ``symbol``) away from its boundary, or None."""
    region = region.replace(lambda e: isinstance(e, sympy.Rel), lambda e: _reduce_relation(e, symbol))
    if _beyond_the_solvers(region, symbol):
        return None
    if (isinstance(region, (sympy.StrictGreaterThan, sympy.GreaterThan, sympy.StrictLessThan, sympy.LessThan))
            and region.lhs == symbol and region.rhs.is_number and region.rhs.is_finite and region.rhs.is_real):
        # as_set()'s interval, and _point_of_set's point of it, without SymPy's solvers (their first
        # call imports them: 0.8 s of x*exp(x)*erfc(x)'s code generation, whose regions are all x > 0 or x <= 3)
        return region.rhs + 1 if isinstance(region, (sympy.StrictGreaterThan, sympy.GreaterThan)) else region.rhs - 1
    try:
        region_set = region.as_set() if region.free_symbols == {symbol} else None
    except (NotImplementedError, TypeError, ValueError):
        region_set = None
    if region_set is not None:
        return _point_of_set(region_set)
    # symbolic bounds (trainable parameters): a single relation "symbol > a" etc.
    if isinstance(region, sympy.Rel) and region.lhs == symbol and not region.rhs.has(symbol):
        if isinstance(region, (sympy.StrictGreaterThan, sympy.GreaterThan)):
            return region.rhs + 1
        if isinstance(region, (sympy.StrictLessThan, sympy.LessThan)):
            return region.rhs - 1
    return None


def _beyond_the_solvers(region: sympy.Boolean, symbol: sympy.Symbol) -> bool:
    """Whether a relation of ``region`` compares a polynomial in ``symbol`` of degree above 4: as_set() looks
    for its real roots, which for safe_form's degree-20 Taylor patches (x - Expm1(x) for |x| < 1, in the
    tie set of Min(x, exp(x) - 1)'s derivative) did not finish in 10 minutes."""
    for rel in region.atoms(sympy.Rel):
        side = rel.lhs - rel.rhs
        if side.has(symbol) and side.is_polynomial(symbol) and sympy.degree(side, symbol) > 4:
            return True
    return False


def _point_of_set(region_set: sympy.Set) -> sympy.Expr | None:
    if isinstance(region_set, sympy.Union):
        for part in region_set.args:
            point = _point_of_set(part)
            if point is not None:
                return point
        return None
    if isinstance(region_set, sympy.Interval):
        lo, hi = region_set.start, region_set.end
        if lo.is_infinite and hi.is_infinite:
            return S.Zero
        if lo.is_infinite:
            return hi - 1
        if hi.is_infinite:
            return lo + 1
        return (lo + hi) / 2
    if isinstance(region_set, sympy.FiniteSet) and region_set.args:
        return region_set.args[0]
    return None


_ALWAYS_FINITE = (sympy.sin, sympy.cos, sympy.tanh, sympy.atan, sympy.erf, sympy.erfc, Sigmoid,
                  NormalCdf, Softplus, LogSigmoid, sympy.Abs, sympy.sign, sympy.Max, sympy.Min,
                  _Silu, _Mish, _SqrtSquarePlus, _SquarePlusRatio, _Finite, _FoldedArgument, _FermiDiracLeft)


def _finite_everywhere(expr: sympy.Expr) -> bool:
    """Sufficient test that expr and its gradient are finite for every finite real input."""
    for symbol in expr.free_symbols:
        # a long polynomial (safe_form's Taylor patches) overflows float32 within [-1e4, 1e4],
        # as does any power above the 8th
        try:
            long_polynomial = expr.is_polynomial(symbol) and sympy.degree(expr, symbol) > 8
        except sympy.PolynomialError:  # a masked inner Piecewise (_Select holds a condition): not a polynomial
            long_polynomial = False
        if long_polynomial:
            return False
    for node in sympy.preorder_traversal(expr):
        if node.is_Atom or isinstance(node, (Add, Mul, sympy.Piecewise, sympy.Rel, sympy.logic.boolalg.Boolean)):
            continue
        # a constant such as log(4) (Softplus(x + log(4))): one float literal, well inside every format
        if node.is_number and node.is_extended_real and bool(abs(sympy.N(node)) < 1e30):
            continue
        if isinstance(node, Pow) and node.exp.is_Integer and 0 <= node.exp <= 8:
            continue
        # sqrt of a positive quantity, or a power of one bounded away from 0 by SymPy's
        # assumptions (e.g. sqrt(x**2 + 4), 1/(sqrt(x**2 + 4) + |x|))
        if isinstance(node, Pow) and node.exp.is_Rational and node.base.is_positive:
            continue
        if isinstance(node, _ALWAYS_FINITE):
            continue
        # a hypot known to be positive (an exp among its arguments): its gradient (a, b)/hypot is finite; hypot(x, x**2)
        # is 0 at x = 0, where it is not
        if isinstance(node, _Hypot) and node.is_positive:
            continue
        return False
    return True


def _mask_piecewise(expr: sympy.Expr, inputs: tuple) -> sympy.Expr:
    """Piecewise -> nested _Select, each branch fed a _Masked input that stays in its region."""

    def rule(pw: sympy.Piecewise) -> sympy.Expr:
        pieces = list(pw.args)
        result = None
        previous = []
        branches = []
        for value, cond in pieces:
            region = sympy.And(cond, *[sympy.Not(c) for c in previous])
            # the otherwise-branch takes what no condition holds for, NaN included: its mask must
            # keep u where no earlier condition holds, ~(c1 | c2 ...), not where SymPy's evaluated
            # region (x <= 0 for Not(x > 0)) holds, which NaN fails: it was replaced by a safe
            # point and elu(NaN) came out -0.632
            mask = (sympy.Not(sympy.Or(*previous), evaluate=False) if cond == S.true and previous
                    else region)
            previous.append(cond)
            branches.append((value, cond, region, mask))
            if cond == S.true:
                break
        else:
            raise FormulaError(
                f"Piecewise {pw} has no otherwise-branch (condition True): its value is undefined "
                "somewhere; add a final (value, True) piece"
            )
        symbols = [s for s in inputs if pw.has(s)]
        # a constant otherwise-branch after a non-constant one: where(c, v, k) gave k at a NaN input (c is
        # false there), softshrink(NaN) = 0 where F.softshrink gives NaN; where(~c, k, v) with ~c printed
        # as the complementary comparisons (x >= -1/2 for x < -1/2) is the same for every other input,
        # +-inf and -0.0 included, and sends NaN (false in every comparison) into v: no extra operation
        swapped = None
        if len(branches) >= 2 and branches[-1][0].is_number and not branches[-2][0].is_number:
            swapped = _nan_false_complement(branches[-2][1])
            if swapped is not None:
                value, cond, region, _ = branches[-2]
                earlier = [c for _, c, _, _ in branches[:-2]]
                # its input mask lets NaN through too: ~(earlier | ~c) is the region for every other input
                branches[-2] = (value, cond, region, sympy.Not(sympy.Or(*earlier, swapped), evaluate=False))
        for value, cond, region, mask in reversed(branches):
            safe_value = value
            if (len(symbols) == 1 and value.has(symbols[0]) and region.has(symbols[0])
                    and not _finite_everywhere(value)):
                symbol = symbols[0]
                point = _interior_point(region, symbol)
                if point is not None and region != S.true:
                    safe_value = value.xreplace({symbol: _Masked(symbol, mask, point)})
            elif len(region.free_symbols) == 1 and region != S.true and not _finite_everywhere(value):
                # a region on one trainable parameter alone (softexponential's alpha < 0, alpha > 0):
                # the branches not taken see the parameter at a point of their own region, or
                # their 0/0 at alpha = 0 would reach the parameter's gradient as 0*NaN
                (parameter,) = region.free_symbols
                point = _interior_point(region, parameter)
                if parameter not in inputs and point is not None and value.has(parameter):
                    safe_value = value.xreplace({parameter: _Masked(parameter, mask, point)})
            if result is None:
                result = safe_value
            elif swapped is not None:
                result, swapped = _Select(swapped, result, safe_value), None
            else:
                result = _Select(cond, safe_value, result)
        return result

    return expr.replace(lambda e: isinstance(e, sympy.Piecewise), rule)


def _nan_false_complement(cond: sympy.Basic) -> sympy.Basic | None:
    """SymPy's negation of ``cond`` when, printed, it is false at a NaN input and the exact complement of
    ``cond`` at every other input (+-inf and -0.0 included), else None.

    Only And/Or of ordered comparisons and equalities (never !=, true at NaN) whose sides are a number,
    a symbol, or c*s + d (c != 0, d numbers): such a side is NaN only where an input is, and then every
    comparison is false; a side such as sin(x) or x - a could be NaN at x = inf and fail both.  A Max/Min of
    such sides (hardtanh's Max(-1, x) < 1) is one too: it is printed as torch.clamp/maximum/minimum, which
    give NaN exactly where an argument is NaN."""
    def side_ok(e):
        if e.is_number:
            return e.is_extended_real is True
        if isinstance(e, (sympy.Max, sympy.Min)):
            return all(side_ok(a) for a in e.args)
        coefficient, rest = e.as_coeff_Add()
        scale, symbol = rest.as_coeff_Mul()
        if isinstance(symbol, Pow) and symbol.exp.is_Integer and symbol.exp > 0:
            symbol = symbol.base  # c*s**n + d: +-inf at s = +-inf, never NaN there
        return symbol.is_Symbol and coefficient.is_number and scale.is_number and scale != 0

    def ok(c):
        if c in (S.true, S.false):
            return True
        if isinstance(c, (sympy.And, sympy.Or, sympy.ITE)):
            return all(ok(a) for a in c.args)
        return (isinstance(c, (sympy.StrictLessThan, sympy.LessThan, sympy.StrictGreaterThan, sympy.GreaterThan,
                               sympy.Eq))
                and side_ok(c.lhs) and side_ok(c.rhs) and not (c.lhs.is_number and c.rhs.is_number))

    def complement(c):  # De Morgan down to the relations, each negated (x < a -> x >= a)
        if isinstance(c, (sympy.And, sympy.Or)):
            parts = [complement(a) for a in c.args]
            if any(p is None for p in parts):
                return None
            return (sympy.Or if isinstance(c, sympy.And) else sympy.And)(*parts, evaluate=False)
        if isinstance(c, sympy.ITE):
            # ITE(a, b, c) -> ITE(a, ~b, ~c): the same a picks the same side at every input (a false at NaN
            # picks ~c, false there in its turn), so a Piecewise inside the condition keeps NaN too
            a, then, other = c.args
            parts = [complement(then), complement(other)]
            if any(p is None for p in parts):
                return None
            return sympy.ITE(a, *parts, evaluate=False)
        if c in (S.true, S.false):
            return sympy.Not(c)
        return c.negated if isinstance(c, sympy.Rel) else None

    result = complement(cond)
    return result if result is not None and ok(result) else None


def _scale_into_piecewise(product: Mul, inputs: tuple) -> sympy.Expr:
    """c*Piecewise((v_i, c_i))*rest with |c| < 1 -> Piecewise((c*v_i, c_i))*rest: the scale applied
    last lets a branch overflow first (squareplus's (x + sqrt(x**2 + 4))/2 was inf from 8.5e37 in
    float32, xatlu's x*(atan(x) + pi/2)/pi from 1.1e38); inside, SymPy spreads it over a sum."""
    coefficient, rest = split_numeric_factor(product)
    if not (coefficient.is_real and bool(abs(coefficient) < 1)):
        return product
    factors = list(Mul.make_args(rest))
    for i, factor in enumerate(factors):
        if not isinstance(factor, sympy.Piecewise):
            continue
        # only where it can matter: the product grows with an input (x*Piecewise, or a branch
        # x + ...); elsewhere the rounding stays as it was (bounded derivatives)
        grows = any(f in inputs for f in factors) or any(
            isinstance(v, Add) and any(t in inputs for t in v.args) for v, _ in factor.args)
        if grows:
            factors[i] = sympy.Piecewise(*[(coefficient * v, c) for v, c in factor.args])
            return Mul(*factors)
    return product


def _exp_sigmoid_as_sech(product: Mul) -> sympy.Expr:
    """exp(a)*Sigmoid(-2*a) -> sech(a)/2 (= 1/(exp(-a) + exp(a))): inf*0 = NaN once exp(a) overflows (the
    derivative x*exp(x)*Sigmoid(-2*x) + atan(exp(x)) of x*atan(exp(x)) was NaN from x = 88.7 in float32,
    where it is pi/2); sech is printed from exp(-|a|), finite everywhere."""
    factors = list(Mul.make_args(product))
    for i, f in enumerate(factors):
        if not isinstance(f, sympy.exp):
            continue
        for j, h in enumerate(factors):
            if isinstance(h, Sigmoid) and sympy.expand(h.args[0] + 2 * f.args[0]) == 0:
                rest = [t for k, t in enumerate(factors) if k not in (i, j)]
                return Mul(*rest, sympy.sech(f.args[0]), S.Half)
    return product


def _exp_sech_as_sigmoid(product: Mul) -> sympy.Expr:
    """exp(k*a)*sech(a)**k -> (2*Sigmoid(2*a))**k (= (2/(1 + exp(-2*a)))**k), k = +-1, +-2, ...: exp(a) overflows
    where sech(a) is 0 (exp(x)/cosh(x) was inf from x = 88.7 in float32, inf*0 = NaN from 1e4, where it is 2)."""
    factors = list(Mul.make_args(product))
    for i, f in enumerate(factors):
        if not isinstance(f, sympy.exp):
            continue
        for j, h in enumerate(factors):
            base, k = (h.base, h.exp) if isinstance(h, Pow) else (h, S.One)
            if not (isinstance(base, sympy.sech) and k.is_Integer and k > 0):
                continue
            for sign in (1, -1):
                if sympy.expand(f.args[0] - sign * k * base.args[0]) == 0:
                    rest = [t for n, t in enumerate(factors) if n not in (i, j)]
                    return Mul(*rest, (2 * Sigmoid(2 * sign * base.args[0])) ** k)
    return product


def _hyperbolic_quotient(product: Mul, inputs: tuple) -> sympy.Expr:
    """cosh(u)**p*sinh(v)**q*sech(w)**r*rest, u, v, w linear in x, p, q, r positive integers ->
    exp(p*|u| + q*|v| - r*|w|)*((1 + exp(-2*|u|))/2)**p*(tanh(v)*(1 + exp(-2*|v|))/2)**q*(2/(1 + exp(-2*|w|)))**r*rest,
    every factor but the one exp bounded: cosh(x)/cosh(2*x) was inf*0 = NaN from |x| = 89.5 in float32 (711 in
    float64) where it is about 2*exp(-|x|), and 1.7% off at |x| = 50 in float32 (sech(100) subnormal).  A sum
    factor holding cosh or sinh beside the sech is distributed first ((sinh(x) - 2*cosh(x)*tanh(2*x))*sech(2*x),
    the slope of cosh(x)/cosh(2*x); sinh(x)**2/cosh(2*x)'s, with sinh(x) beside the sum too).  The |.| forms are smooth but at 0, where the first derivative autograd takes
    of them is still right (the slope's slope is exact; a third derivative at exactly 0 is not)."""
    if len(inputs) != 1:
        return product
    (x,) = inputs

    def linear(e):
        return e.free_symbols == {x} and e.is_polynomial(x) and sympy.degree(e, x) == 1

    def kind(f, cls):
        base, k = (f.base, f.exp) if isinstance(f, Pow) else (f, S.One)
        return isinstance(base, cls) and k.is_Integer and k > 0 and linear(base.args[0])

    factors = Mul.make_args(product)
    if not any(kind(f, sympy.sech) for f in factors):
        return product
    sums = [f for f in factors if isinstance(f, Add)
            and any(kind(g, (sympy.cosh, sympy.sinh)) for t in f.args for g in Mul.make_args(t))]
    if sums:  # (-sinh(x)*tanh(2*x) + cosh(x)) in sinh(x)**2/cosh(2*x)'s slope grows beside sinh(x)*sech(2*x)
        others = [f for f in factors if f is not sums[0]]
        terms = [_hyperbolic_quotient(Mul(t, *others), inputs) for t in sums[0].args]
        # one exp common to every term is taken out of the sum: (2*sinh(2*x) - cosh(2*x)*tanh(x))*sech(x), the slope
        # of cosh(2*x)/cosh(x), was exp(|x|)*B1 - exp(|x|)*B2 = inf - inf = NaN from |x| = 88.8 in float32 (709.8 in
        # float64) where it is +-inf as the value is; exp(|x|)*(B1 - B2) is.  Only where every B is bounded: a factor
        # x in one (x*cosh(x)/cosh(3*x - 1)'s slope) would overflow beside a 0 (inf*0 = NaN at x = -3e38 in float32)
        exps = [[f for f in Mul.make_args(t) if isinstance(f, sympy.exp) and f.has(sympy.Abs)] for t in terms]
        if all(len(e) == 1 for e in exps) and len({e[0] for e in exps}) == 1:
            common = exps[0][0]
            rest = [Mul(*[f for f in Mul.make_args(t) if f != common]) for t in terms]
            bounded = (sympy.tanh, sympy.sech, Sigmoid, sympy.sin, sympy.cos, sympy.erf, NormalCdf)
            if not any(r.replace(lambda f: isinstance(f, bounded) or (isinstance(f, sympy.exp)
                                                                      and f.args[0].is_nonpositive),
                                 lambda f: S.One).has(x) for r in rest):
                return common * Add(*rest)
        return Add(*terms)
    if not any(kind(f, (sympy.cosh, sympy.sinh)) for f in factors):
        return product
    exponent, result = S.Zero, []
    for f in factors:
        base, k = (f.base, f.exp) if isinstance(f, Pow) else (f, S.One)
        if kind(f, (sympy.cosh, sympy.sinh)):
            a = sympy.Abs(base.args[0])
            exponent += k * a
            bounded = (1 + sympy.exp(-2 * a)) / 2
            result.append((sympy.tanh(base.args[0]) * bounded if isinstance(base, sympy.sinh) else bounded) ** k)
        elif kind(f, sympy.sech):
            a = sympy.Abs(base.args[0])
            exponent -= k * a
            result.append((2 / (1 + sympy.exp(-2 * a))) ** k)
        else:
            result.append(f)
    return Mul(sympy.exp(exponent), *result)


def _factor_into_step_piecewise(product: Mul, inputs: tuple) -> sympy.Expr:
    """g*Piecewise((k_i, c_i)) with numbers k_i and g free of the inputs (a backward's incoming gradient,
    a parameter) -> Piecewise((k_i*g, c_i)): one where() instead of full_like, where and a product, and
    the non-constant branch then takes a NaN input (see _mask_piecewise), so that softshrink's and
    hardshrink's gradients at NaN are g, as their PyTorch backward kernels give (0 before).
    Where the step is 0 the result is 0 for any g, as in those kernels.  Several such steps are folded
    into one first: hardtanh's and relu6's two (x > -1, Max(-1, x) < 1) gave 0 at NaN where
    F.hardtanh's and F.relu6's backward give g (their CUDA kernels, the CPU one on up to 15 elements
    and torch._decomp's where((x <= min) | (x >= max), 0, g))."""
    factors = list(Mul.make_args(product))
    steps = [f for f in factors if isinstance(f, sympy.Piecewise) and all(v.is_number for v, _ in f.args)]
    if not steps:
        return product
    rest = Mul(*[f for f in factors if not any(f is s for s in steps)])
    if rest.is_number or not rest.free_symbols.isdisjoint(inputs) or rest.has(sympy.Piecewise):
        return product
    step = steps[0] if len(steps) == 1 else sympy.piecewise_fold(Mul(*steps))
    if not (isinstance(step, sympy.Piecewise) and all(v.is_number for v, _ in step.args)):
        return product
    return sympy.Piecewise(*[(v * rest, c) for v, c in step.args])


def _zero_region(f: sympy.Expr) -> sympy.Boolean | None:
    """Where f is exactly 0, for a step (Heaviside, a Piecewise with a 0 piece), Max(0, u) or Min(0, u); else
    None.  Written in comparisons that are false at NaN (x <= 0 for Not(x > 0)), so that NaN stays NaN."""
    if isinstance(f, (sympy.Max, sympy.Min)) and len(f.args) == 2 and S.Zero in f.args:
        u = f.args[0] if f.args[1] == 0 else f.args[1]
        return u <= 0 if isinstance(f, sympy.Max) else u >= 0
    if isinstance(f, _Step):
        return f.args[0] < 0
    coefficient, rest = split_numeric_factor(f) if isinstance(f, Mul) else (S.One, f)
    if coefficient != 1 and coefficient.is_finite:
        return _zero_region(rest)
    if isinstance(f, Add):  # Max(0, -x) - Heaviside(-x) in Max(0, -x)*exp(x)'s slope: 0 where every term is
        regions = [_zero_region(term) for term in f.args]
        if all(r is not None for r in regions):
            region = sympy.And(*regions)
            return None if region in (S.true, S.false) else region
        return None
    if isinstance(f, sympy.Piecewise):
        # by hand, not piecewise_fold: that did not finish on Min(x, exp(x) - 1)'s slope, whose conditions hold
        # a Piecewise (a Taylor patch); here such a condition is one Boolean like any other
        regions, earlier = [], []
        for value, cond in f.args:
            inner = S.true if value == 0 else _zero_region(value) if isinstance(value, sympy.Piecewise) else None
            if inner is not None:
                regions.append(sympy.And(cond, inner, *[_negated(c) for c in earlier]))
            earlier.append(cond)
        region = sympy.Or(*regions)
        # != and ~ are true at NaN: such a region would give 0 where the product is NaN
        return None if region in (S.true, S.false) or region.has(sympy.Ne, sympy.Not) else region
    return None


def _negated(cond: sympy.Boolean) -> sympy.Boolean:
    """Not(cond), with the negation taken into the branches of an ITE (the safe forms' Taylor-patch
    conditions, ITE(|x| < 1, series < 0, x - expm1(x) > 0)) and onto comparisons, which SymPy flips
    (x <= 0 for Not(x > 0)): false at NaN, as the comparisons it replaces are.  Anything else stays
    a Not, which _zero_region refuses (Not is true at NaN)."""
    if isinstance(cond, sympy.ITE):
        test, if_true, if_false = cond.args
        return sympy.ITE(test, _negated(if_true), _negated(if_false))
    return sympy.Not(cond)


def _may_overflow(f: sympy.Expr) -> bool:
    """Whether f can be inf or NaN at a finite input (a Piecewise by its pieces' values)."""
    if isinstance(f, sympy.Piecewise):
        return any(_may_overflow(v) for v, _ in f.args)
    return not _finite_everywhere(f)


def _fold_unbounded_factor_into_step(product: Mul, inputs: tuple) -> sympy.Expr:
    """f*P with P 0 somewhere (a step, Max(0, u), Min(0, u)) and f of the inputs that can overflow ->
    Piecewise((0, where P is 0), (f*P, True)): there the product is 0, not 0*inf = NaN.  The slope of
    Min(x, exp(x)), exp(x)*Heaviside(x - exp(x)) + Heaviside(exp(x) - x), was NaN from x = 88.8 in float32
    (709.8 in float64), where it is 1; Max(0, -x)*exp(x) NaN from x = 88.8, where it is 0.  Only for such an
    f: elsewhere the product is one pass, the where() another."""
    factors = Mul.make_args(product)
    regions = [_zero_region(f) for f in factors]
    steps = [r for r in regions if r is not None]
    if not steps:
        return product
    # a factor that can overflow: not a step itself (hardtanh's two), not free of the inputs; or the other
    # factors together a polynomial of degree 2 or more, which overflows at a finite input though each of its
    # factors may not (Min(x, 0)*(-x)*(x - 1)*x was NaN at x = 1e30 in float32, where it is 0)
    others = [f for f, r in zip(factors, regions) if r is None and f.has(*inputs)]
    if not (any(_may_overflow(f) for f in others) or _polynomial_of_degree_two_or_more(Mul(*others), inputs)):
        return product
    return sympy.Piecewise((0, steps[0]), (product, True))


def _polynomial_of_degree_two_or_more(f: sympy.Expr, inputs: tuple) -> bool:
    if not f.is_polynomial(*inputs):
        return False
    try:
        return sympy.Poly(f, *inputs).total_degree() >= 2
    except sympy.PolynomialError:  # (a polynomial SymPy cannot put in Poly form: no fold, as before)
        return False


def _numpy_functions() -> list:
    """lambdify modules evaluating the safe primitives in numpy, as overflow-prone as torch's."""
    import mpmath
    import numpy as np

    from numeric.lambdify_modules import np_fermi_dirac

    erfc = np.vectorize(math.erfc, otypes=[float])
    # exp(u**2)*erfc(u) in mpmath (no overflow inside), rounded to a double (inf beyond its range)
    erfcx = np.vectorize(lambda u: float(mpmath.exp(mpmath.mpf(u) ** 2) * mpmath.erfc(u)), otypes=[float])
    return [{
        "Sigmoid": lambda u: 1 / (1 + np.exp(-u)),
        "Softplus": lambda u: np.logaddexp(u * 0, u),
        "LogSigmoid": lambda u: -np.logaddexp(u * 0, -u),
        "Log1p": np.log1p, "Expm1": np.expm1,
        "NormalCdf": lambda u: (erfc(-np.asarray(u, dtype=float) / math.sqrt(2)) / 2).astype(np.asarray(u).dtype),
        "Erfcx": lambda u: erfcx(np.asarray(u, dtype=float)).astype(np.asarray(u).dtype),
        "sech": lambda u: 1 / np.cosh(u),
        "FermiDirac": np_fermi_dirac,
        "erf": np.vectorize(math.erf, otypes=[float]),
        # in the input's format, as torch.erfc is (math.erfc was found as a scalar function and raised on
        # arrays, so no form with erfc was ever checked: x*exp(x)*erfc(x)'s slope stayed NaN)
        "erfc": lambda u: erfc(np.asarray(u, dtype=float)).astype(np.asarray(u).dtype),
    }, "numpy"]


def numpy_modules() -> list:
    """lambdify modules evaluating a :func:`prepare`-d expression in numpy: the safe primitives
    (:func:`_numpy_functions`) and the printer's own markers (_Select, _Masked, _Step, _Silu, _Mish,
    _SqrtSquarePlus, _Hypot), so that a form is checked as it will be printed, large-|x| branches included."""
    import numpy as np

    primitives, rest = _numpy_functions()
    markers = {
        "_Select": lambda cond, a, b: np.where(cond, a, b),
        "_Masked": lambda u, region, point: np.where(region, u, point),
        "_Step": lambda u: (np.sign(u) + 1) / 2,
        "_Silu": lambda u: u * primitives["Sigmoid"](u),
        "_Mish": lambda u: u * np.tanh(primitives["Softplus"](u)),
        "_SqrtSquarePlus": lambda u, c: np.hypot(u, np.sqrt(np.asarray(c, dtype=np.asarray(u).dtype))),
        "_SquarePlusRatio": lambda u, r: u / r,
        "_Hypot": np.hypot,
        "_Finite": lambda u: np.nan_to_num(u, nan=np.nan),
    }
    return [{**primitives, **markers}, rest]


@functools.lru_cache(maxsize=512)
def _saturation_clamp(expr: sympy.Expr, inputs: tuple) -> sympy.Expr:
    """An output that is not finite at large |x| but saturates there -> the same at x clamped.

    GELU-tanh's derivative (x*p(x)*Sigmoid(-u(x)) + 1)*Sigmoid(u(x)), u a cubic, is inf*0 = NaN once
    the polynomials overflow (|x| > 2.3e11 in float32), where the exact value is 1 (x > 0) or a
    number far below the smallest subnormal (x < 0).  Where an output's x-dependent part E is not
    finite at some |x| in [1e10, max] (evaluated as it stands, numpy, float32 and float64), each side
    is searched from x = 2**1023 (float32: 2**127) inwards, with mpmath at 60 digits: the side's
    bound is the least power of two X from which E(s*2**j) rounds, in float64 and in float32, to
    one value for every larger j; E(max(-X-, min(X+, x))) is printed if the bound is a number E
    evaluates finitely to that value.  A side that does not settle (x/(1 + x**2) ~ 1/x keeps
    changing) is left alone: the rational rule below is for those.
    """
    if len(inputs) != 1 or expr.has(sympy.Piecewise, _Select, _Masked):
        return expr
    (x,) = inputs
    rest, part = expr.as_independent(x, as_Add=False) if isinstance(expr, Mul) else (S.One, expr)
    if part.free_symbols != {x} or part.is_polynomial(x) or part.is_rational_function(x):
        return expr
    # only where a power of x above the square appears (the printer's helpers keep squares in
    # exp(-c*u**2) and sqrt(u**2 + c) finite): numpy's evaluation order is not the printer's, and
    # it overflows in places (9*x*exp(-x**2) at 3e38) where the printed code does not
    if not any(isinstance(node, Pow) and node.base.has(x) and node.exp.is_Integer and node.exp >= 3
               or (node.is_polynomial(x) and node.has(x) and sympy.degree(node, x) >= 3)
               for node in sympy.preorder_traversal(part) if isinstance(node, (Add, Mul, Pow))):
        return expr
    import numpy as np

    from numeric.lambdify_modules import MPMATH_MODULES

    try:
        numeric = sympy.lambdify(x, part, modules=_numpy_functions())
        exact = sympy.lambdify(x, _to_elementary(part), modules=MPMATH_MODULES)
    except Exception:  # noqa: BLE001 - a form these cannot evaluate is left as it is
        return expr
    magnitudes = [10.0**k for k in range(10, 309, 2)]
    try:
        failing = [not _finite_in_numpy(numeric, magnitudes, sign) for sign in (1, -1)]
    except Exception:  # noqa: BLE001 - a marker numpy does not know (_Step): left as it is
        return expr
    if not any(failing):
        return expr
    bounds = []
    for sign, fails in zip((1, -1), failing):
        bound = _settled_from(exact, sign) if fails else None
        if bound is None or not _finite_in_numpy(numeric, [bound], sign, exact):
            bounds.append(None)
        else:
            bounds.append(sign * bound)
    if bounds == [None, None]:
        return expr
    clamped = x
    if bounds[0] is not None:
        clamped = sympy.Min(clamped, bounds[0])
    if bounds[1] is not None:
        clamped = sympy.Max(clamped, bounds[1])
    return rest * part.xreplace({x: clamped})


def _clamp_beside_decaying_factor(product: Mul, inputs: tuple) -> sympy.Expr:
    """P(x)*D(x)*rest, D a factor that decays at both ends, exp(E(x)) with E a polynomial -> -oo (a
    Gaussian) or sech(a*x + b)**k (k > 0), -> the same with x clamped to [-B, B] in the other factors
    (to one side for Sigmoid(a*x + b)**k, which decays at one end: x*Sigmoid(2*x)'s slope (1 +
    2*x*Sigmoid(-2*x))*Sigmoid(2*x) was inf*0 = NaN at +-3e38 in float32, +-1.7e308 in float64),
    B the least power of two past which D(x) <= exp(-800) (0 in every format there, and so is the exact
    product to far below the smallest subnormal).

    The other factors overflow long before the exp underflows to exactly 0 matters: (1 - x**2/4), the
    slope of x*exp(-x**2/8), is -inf from |x| = 1.8e19 in float32, and -inf*0 = NaN (at 1e30 in float32,
    1e300 in float64, where the slope is 0); so x**2*exp(-x**2) itself, and tanh(x)*exp(-x**2)'s slope
    at 3e38 (-2*x*tanh(x)), (x**2 + 1)*sech(x)**2 in sqrt(x**2 + 1)*tanh(x)'s slope at 1e30 in float32
    and 1e300 in float64, where it is 1).  Only where those factors, evaluated as they stand in numpy, are not finite
    at some |x| in [1e10, max] (x*exp(-x**2/2), GELU's, is left as it is), and are finite at +-B."""
    if len(inputs) != 1:
        return product
    (x,) = inputs
    factors = Mul.make_args(product)
    candidates = []
    for f in factors:
        decay = _decay(f, x)
        if decay is None and isinstance(f, Add):
            decay = _decaying_sum(f, x)
        if decay is not None:
            candidates.append((f, *decay))
    # each decaying factor clamps x in the others on its side(s); two (exp(x)*erfc(x), one side each) both
    clamps = [(f, c) for f, u, reach, side in candidates
              if (c := _decaying_clamp(factors, f, u, reach, side, x)) is not None]
    if not clamps:
        return product
    result = []
    for factor in factors:
        clamped = x
        for decaying, clamp in clamps:
            if factor is not decaying and factor.has(x):
                clamped = clamp.xreplace({x: clamped})
        result.append(factor.xreplace({x: clamped}) if clamped != x else factor)
    return Mul(*result)


_GROWING = (sympy.exp, sympy.sinh, sympy.cosh, Expm1)


def _scaled_expm1(u: sympy.Expr) -> sympy.Expr:
    """Expm1(u)*exp(-Max(u, 0)) = Expm1(Min(u, 0)) - Expm1(-Max(u, 0)), in [-1, 1) for every u (one of the two
    terms is 0, so nothing cancels)."""
    return Expm1(sympy.Min(u, 0)) - Expm1(-sympy.Max(u, 0))


def _exp_sum(total: Add, inputs: tuple) -> list | None:
    """[(k, b)] with ``total`` = sum of k*exp(b), k free of growing functions of the inputs (a term without an
    exp has b = 0); None unless it is such a sum with an exp of an input in it.  A factor Expm1(u)**n (n a
    positive integer, u an input's function) counts as exp(n*Max(u, 0)) times the bounded
    (Expm1(u)*exp(-Max(u, 0)))**n: the slope of atan(exp(x) - 1), exp(x)/(Expm1(x)**2 + 1), was inf/inf = NaN
    from x = 88.7 in float32 (709.8 in float64), where it is ~exp(-x)."""
    terms = []
    for term in Add.make_args(total):
        exponent, k, scaled = S.Zero, [], []
        for f in Mul.make_args(term):
            base, power = f.as_base_exp()
            if isinstance(f, sympy.exp):
                exponent += f.args[0]
            elif isinstance(base, Expm1) and base.has(*inputs) and power.is_Integer and power.is_positive:
                exponent += power * sympy.Max(base.args[0], 0)
                scaled.append(_scaled_expm1(base.args[0]) ** power)
            elif (isinstance(base, Add) and power.is_Rational and power.is_positive
                  and (inner := _exp_sum(base, inputs)) is not None):
                # a positive power of an exp sum, T**p = exp(p*t)*(sum of k*exp(b - t))**p, t = Max of its exponents:
                # the slope of sqrt(1 + exp(2*x)) - exp(x), -(...)*exp(x)/(sqrt(exp(2*x) + 1) + exp(x))**2, was -0.0
                # from x = 44 in float32 (the square overflows; -1.4e-20 at 45) and inf/inf = NaN from 88.7
                exponents = [b for _, b in inner]
                exponent += _shifted_exponent(S.Zero, [(power, exponents)])
                scaled.append(Add(*[c * sympy.exp(_shifted_exponent(b, [(-1, exponents)])) for c, b in inner]) ** power)
            else:
                k.append(f)
        k = Mul(*k)
        if any(g.has(*inputs) for g in k.atoms(*_GROWING)):
            return None
        terms.append((Mul(k, *scaled), exponent))
    return terms if any(b.has(*inputs) for _, b in terms) else None


def _normalised_exp_quotient(product: Mul, inputs: tuple) -> sympy.Expr:
    """exp(A)*prod(S_j**p_j)*rest, S_j = sum of k*exp(b) (p_j rational, one S_j at least in the denominator;
    A may be 0) -> exp(A + sum of p_j*s_j)*prod((sum of k*exp(b - s_j))**p_j)*rest, s_j = Max of S_j's exponents,
    taken elementwise when the code runs.

    No exp inside a sum exceeds 1 then, and the exp left over overflows only where the product does: the
    slope of atan(x*exp(x)), (x + 1)*exp(x)/(x**2*exp(2*x) + 1), was inf/inf = NaN from x = 88.7 in float32
    (709.8 in float64), where it is ~exp(-x)/x; exp(x)/(1 + x**2*exp(2*x)) and exp(x)/sqrt(1 + x**2*exp(2*x))
    were NaN in value and slope.  A numerator without an exp is no exception: x/sqrt(x**2 + exp(2*x)) printed as
    x/hypot(x, exp(x)) was 0 from x = 88.7 in float32 (1.98e-37 at 89) and 709.8 in float64 (4.3e-307 at 712),
    where exp(x) alone overflows; normalised it is x*exp(-s/2)/hypot(x*exp(-s/2), exp(x - s/2)), s = Max(0, 2*x).
    The same identity for any shift s, so the backward (printed from its own symbolic derivative) needs no
    derivative of the Max."""
    factors = Mul.make_args(product)
    exponent, others, sums = S.Zero, [], []
    for factor in factors:
        base, power = factor.as_base_exp()
        if isinstance(factor, sympy.exp):
            exponent += factor.args[0]
            continue
        if isinstance(base, Expm1) and base.has(*inputs) and power.is_Integer and power.is_positive:
            # a factor of the numerator as in _exp_sum: Expm1(x)*exp(2*x)/(Expm1(x)**2 + 1)**2 in the slope of
            # exp(x)/(1 + (exp(x) - 1)**2) was inf*0 = NaN from x = 88.7 in float32
            exponent += power * sympy.Max(base.args[0], 0)
            others.append(_scaled_expm1(base.args[0]) ** power)
            continue
        terms = _exp_sum(base, inputs) if isinstance(base, Add) and power.is_Rational else None
        if terms is not None:
            sums.append((terms, power))
        else:
            # as it stands (the sum 1 - 2*x*(x + 1)*exp(2*x)/(x**2*exp(2*x) + 1) in the slope of
            # exp(x)/(1 + x**2*exp(2*x)), its own quotient normalised): normalising the rest of the product
            # changes only where the rest alone would overflow
            others.append(factor)
    if not any(power.is_negative for _, power in sums):
        return product
    shifts = [(power, [b for _, b in terms]) for terms, power in sums]
    if math.prod(len(exponents) for _, exponents in shifts) > _MAX_SHIFT_CHOICES:
        return product
    normalised = []
    for terms, power in sums:
        exponents = [b for _, b in terms]
        shifted_terms = []
        for k, b in terms:
            shifted = _shifted_exponent(b, [(-1, exponents)])
            # a term's own factors clamped where its shifted exp is below exp(-800): x**2*exp(Min(0, -x)) in
            # exp(x)/(exp(x) + x**2) normalised was inf*0 = NaN from x = 1.8e19 in float32 (1.3e154 in float64),
            # where the term is 0 and the value 1
            clamp = _clamp_beside_normalised_exp([k], shifted, inputs) if k.has(*inputs) else None
            if clamp is not None:
                k = k.xreplace({inputs[0]: clamp})
            shifted_terms.append(k * sympy.exp(shifted))
        normalised.append(Add(*shifted_terms) ** power)
    exponent = _shifted_exponent(exponent, shifts)
    factors = [*others, *normalised]
    clamp = _clamp_beside_normalised_exp(factors, exponent, inputs)
    if clamp is not None:
        factors = [f.xreplace({inputs[0]: clamp}) for f in factors]
    return Mul(*factors, sympy.exp(exponent))


def _sigmoid_root(e: sympy.Expr, inputs: tuple) -> sympy.Expr | None:
    """Sigmoid(u)**p, p a number other than a positive integer, u an input's function -> exp(p*Min(u, 0))*
    Sigmoid(|u|)**p, else None.

    Sigmoid(u) = exp(Min(u, 0))*Sigmoid(|u|) (for u < 0, 1/(1 + exp(-u)) = exp(u)/(exp(u) + 1)), and the second
    factor is in [1/2, 1).  A power p < 1 of Sigmoid(u) is a normal number far beyond the point where Sigmoid(u)
    itself underflows: x/sqrt(1 + exp(2*x)), x*sqrt(Sigmoid(-2*x)) in safe form, was 0 from x = 44 in float32
    (1.29e-18 at 45), where Sigmoid(-2*x) goes below the smallest normal number (torch's sigmoid is 0 there)
    and sqrt of what is left keeps none of its digits; a negative p was inf there.  exp(p*u) is the value's own
    scale, finite and nonzero wherever the value is, and p*u is exact for p = 1/2.  A positive integer power is
    no smaller than its base only where both are 0, so it stays as it is."""
    if not (isinstance(e, Pow) and isinstance(e.base, Sigmoid) and e.exp.is_number and e.exp.is_real):
        return None
    if e.exp.is_Integer and e.exp.is_positive:
        return None
    u = e.base.args[0]
    if not u.has(*inputs) or isinstance(u, sympy.Abs):
        return None
    return sympy.exp(e.exp * sympy.Min(u, 0)) * Sigmoid(sympy.Abs(u)) ** e.exp


#: the most choices of one exponent per sum that :func:`_shifted_exponent` writes out (a Max/Min of that many terms)
_MAX_SHIFT_CHOICES = 64


def _shifted_exponent(base: sympy.Expr, shifts: list) -> sympy.Expr:
    """base + sum of p_j*Max(*B_j) over ``shifts`` = [(p_j, B_j)], written as nested Max (p_j > 0) and Min (p_j < 0)
    of the expanded sums base + sum of p_j*b_j, one b_j chosen from each B_j (p*Max(B) is Max(p*b) for p > 0,
    Min(p*b) for p < 0, and a sum goes into a Max or Min term by term).  Equal in exact arithmetic; in floating
    point the terms that cancel symbolically never meet: 2*x - 3*Max(0, 2*x)/2, the exponent of the slope of
    x/sqrt(x**2 + exp(2*x)) normalised, was inf - inf = NaN from x = 1.7e38 in float32, where 2*x overflows;
    Min(2*x, -x) is -x there, and exp(-x) 0, as the slope is."""
    if not shifts:
        return sympy.expand(base)
    (power, exponents), rest = shifts[0], shifts[1:]
    choices = [_shifted_exponent(base + power * b, rest) for b in exponents]
    return (sympy.Max if power > 0 else sympy.Min)(*choices)


def _clamp_beside_normalised_exp(factors: list, exponent: sympy.Expr, inputs: tuple):
    """x clamped to [-B, B] (one side of it) for the factors beside exp(E) in a normalised quotient, E piecewise
    polynomial in one input (its Max shifts), where E <= -800 for every |x| >= B on the side(s) where it decays
    (the product is 0 there in every format, as the exact one is far below the smallest subnormal), and the
    factors are not finite at some large |x| as they stand: the slope of exp(x)/(1 + x**2*exp(2*x)) holds
    x*(x + 1)*exp(2*x - s)/(x**2*exp(2*x - s) + exp(-s)), inf/inf = NaN from |x| = 1.8e19 in float32 (1.3e154
    in float64), where it is 0.  None where no clamp is needed or none can help."""
    if len(inputs) != 1:
        return None
    (x,) = inputs
    if exponent.free_symbols != {x} or exponent.has(sympy.Piecewise, _Select, _Masked) or any(
            not isinstance(node, (Add, Mul, Pow, sympy.Max, sympy.Min, sympy.Symbol, sympy.Number))
            for node in sympy.preorder_traversal(exponent)):
        return None
    import mpmath

    try:
        function = sympy.lambdify(x, exponent, modules="mpmath")
        reach = {}
        with mpmath.workdps(30):
            for side in (1, -1):
                values = [function(mpmath.mpf(side) * mpmath.mpf(2) ** j) for j in range(0, 1025)]
                if values[-1] > -800:
                    continue
                k = 1024
                while k > 0 and values[k - 1] <= -800:
                    k -= 1
                reach[side] = 2.0**k
    except Exception:  # noqa: BLE001 - an exponent mpmath cannot evaluate: no clamp
        return None
    if not reach:
        return None
    side = 0 if len(reach) == 2 else next(iter(reach))
    decaying = sympy.exp(exponent)
    return _decaying_clamp((*factors, decaying), decaying, exponent, max(reach.values()), side, x)


def _decay(f: sympy.Expr, x: sympy.Symbol, depth: float = 800.0):
    """(argument, reach, side) of a factor that decays: past |x| = reach it is <= exp(-depth), at both ends
    (side 0) or at x -> -oo, +oo only (side -1, +1); None for any other factor (see
    :func:`_clamp_beside_decaying_factor`)."""
    base, k = (f.base, f.exp) if isinstance(f, Pow) else (f, S.One)
    u = base.args[0] if isinstance(base, (sympy.exp, sympy.sech, Sigmoid, sympy.erfc, NormalCdf)) else None
    if u is not None and isinstance(base, (sympy.exp, Sigmoid)) and k.is_number and k.is_positive:
        double = _double_exponential_reach(u, x, depth / float(k))
        if double is not None:
            return (u, *double)
    if u is not None and isinstance(base, sympy.sech) and k.is_number and k.is_positive:
        # sech(u)**k < (2*exp(-|u|))**k, u = c*exp(a*x + b) + p(x): tanh(exp(x))'s slope, exp(x)*sech(exp(x))**2,
        # was inf*0 = NaN from x = 89 in float32 (710 in float64), where it is 0
        double = _double_exponential_reach(u, x, depth / float(k) + math.log(2), either_sign=True)
        if double is not None:
            return (u, *double)
    if u is not None and isinstance(base, sympy.exp) and k.is_number and k.is_positive and u.has(sympy.Abs(x)):
        # exp(E(|x|)), E a polynomial -> -oo: both ends, past the largest root of E + 800/k (x**2*exp(-|x|) was
        # inf*0 = NaN from |x| = 1.8e19 in float32, where it is 0)
        t = sympy.Dummy(positive=True)
        e = u.xreplace({sympy.Abs(x): t})
        if x in e.free_symbols and sympy.expand(u.xreplace({x: -x}) - u) == 0:
            e = e.xreplace({x: t})  # even in x: E(|x|) at t = |x| (-x**2 - |x|)
        if e.free_symbols != {t} or not e.is_polynomial(t):  # parameters (celu's alpha) as before: no clamp
            return None
        poly = sympy.Poly(e, t)
        if poly.degree() < 1 or not poly.LC().is_negative:
            return None
        roots = [complex(r).real for r in (poly + depth / float(k)).nroots() if abs(complex(r).imag) < 1e-9]
        return u, max([r for r in roots if r > 0], default=1.0), 0
    if u is None or u.free_symbols != {x} or not u.is_polynomial(x):
        return None
    poly = sympy.Poly(u, x)
    side = 0  # 0: decays at both ends; -1, +1: at x -> -oo, +oo only (then the other factors' numbers count)
    if isinstance(base, sympy.exp) and poly.degree() >= 2 and poly.degree() % 2 == 0 and poly.LC().is_negative:
        # E(x) <= -800 beyond the largest real root of E + 800
        reach = max([abs(complex(r).real) for r in (poly + depth).nroots() if abs(complex(r).imag) < 1e-9],
                    default=1.0)
    elif isinstance(base, sympy.sech) and poly.degree() >= 1 and k.is_number and k.is_positive:
        # sech(u)**k < (2*exp(-|u|))**k <= exp(-800) for |u| >= T = 800/k + log(2): beyond the largest real
        # root of u -+ T (x*sech(x**2)'s slope, sech(x**2)*(1 - 2*x**2*tanh(x**2)), was 0*inf = NaN at 1e30 in
        # float32, where it is 0)
        threshold = depth / float(k) + math.log(2)
        if poly.degree() == 1:
            b, a = (float(c) for c in poly.all_coeffs()[::-1])
            reach = (abs(b) + threshold) / abs(a)
        else:
            reach = max([abs(complex(r).real) for shifted in (poly - threshold, poly + threshold)
                         for r in shifted.nroots() if abs(complex(r).imag) < 1e-9], default=1.0)
    elif isinstance(base, (Sigmoid, sympy.exp)) and poly.degree() == 1 and k.is_number and k.is_positive:
        # Sigmoid(a*x + b)**k < exp(k*(a*x + b)) <= exp(-800) for a*x + b <= -800/k: one side (exp(x): the
        # (x + 1)*erfc(x) beside it in x*exp(x)*erfc(x)'s slope was -inf*0 = NaN at x = -3e38 in float32)
        b, a = (float(c) for c in poly.all_coeffs()[::-1])
        reach, side = (abs(b) + depth / float(k)) / abs(a), (-1 if a > 0 else 1)
    elif isinstance(base, sympy.erfc) and poly.degree() == 1 and k.is_number and k.is_positive:
        # erfc(u)**k <= exp(-k*u**2) <= exp(-800) for u = a*x + b >= sqrt(800/k), one side: x**2*erfc(x) was
        # inf*0 = NaN from x = 1.8e19 in float32, x*exp(x)*erfc(x) from x = 89.5 (711 in float64), where they
        # are 0
        b, a = (float(c) for c in poly.all_coeffs()[::-1])
        reach, side = (abs(b) + math.sqrt(depth / float(k))) / abs(a), (1 if a > 0 else -1)
    elif isinstance(base, NormalCdf) and poly.degree() == 1 and k.is_number and k.is_positive:
        # NormalCdf(u)**k <= exp(-k*u**2/2) <= exp(-800) for u = a*x + b <= -sqrt(1600/k) (erfc(-x/2) is
        # 2*NormalCdf(x/sqrt(2)) in safe form: x**3*erfc(-x/2) was NaN from x = -1e13 in float32)
        b, a = (float(c) for c in poly.all_coeffs()[::-1])
        reach, side = (abs(b) + math.sqrt((2 * depth) / float(k))) / abs(a), (-1 if a > 0 else 1)
    else:
        return None
    return u, reach, side


def _double_exponential_reach(u: sympy.Expr, x: sympy.Symbol, depth: float, either_sign: bool = False):
    """(reach, side) for u = -c*exp(a*x + b) + p(x), c > 0 and p a polynomial of degree <= 1: exp(u) and
    Sigmoid(u) < exp(u) are <= exp(-depth) where c*exp(a*x + b) >= depth + |p(x)|, on the side where a*x -> +oo
    (reach: the first |x| from which that holds, with the exponential's slope past p's); else None.
    ``either_sign``: c of either sign, |u| >= depth there (for sech(u)).  The slope of sigmoid(exp(3*x - 1)),
    Sigmoid(-u)*silu(u)*3 with u = exp(3*x - 1), was 0*inf = NaN from x = 30 in float32 (300 in float64),
    exp(-exp(x))'s, -exp(x)*exp(-exp(x)), from x = 89, and TanhSoft's tanh(x + exp(x/2))*softplus(x)'s from
    x = 300 (float32), where they are 0 or 1."""
    exponentials = [t for t in Add.make_args(u) if t.as_independent(x, as_Add=False)[1].func == sympy.exp]
    if len(exponentials) != 1:
        return None
    coefficient, inner = exponentials[0].as_independent(x, as_Add=False)
    rest = u - exponentials[0]
    if not (coefficient.is_number and (coefficient.is_negative or (either_sign and coefficient.is_nonzero))):
        return None
    argument = inner.args[0]
    if argument.free_symbols != {x} or not argument.is_polynomial(x) or not (
            rest.free_symbols <= {x} and rest.is_polynomial(x) and sympy.degree(rest, x) <= 1):
        return None
    poly = sympy.Poly(argument, x)
    if poly.degree() != 1:
        return None
    b, a = (float(c) for c in poly.all_coeffs()[::-1])
    beta, alpha = (float(c) for c in (sympy.Poly(rest, x).all_coeffs()[::-1] + [0, 0])[:2])
    c, a_abs = abs(float(coefficient)), abs(a)
    # X = |x| on the decaying side: c*exp(|a|*X + b*sign) against depth + |alpha|*X + |beta|, growing faster
    # than the line from the X where its slope c*|a|*exp(...) passes |alpha|
    reach = max(0.0, (math.log((depth + abs(beta)) / c) + abs(b)) / a_abs,
                (math.log(max(abs(alpha), 1e-300) / (c * a_abs)) + abs(b)) / a_abs)
    for _ in range(10000):
        if c * math.exp(min(a_abs * reach - abs(b), 700.0)) >= depth + abs(alpha) * reach + abs(beta):
            return reach, (1 if a > 0 else -1)
        reach += 1.0
    return None


def _decaying_sum(total: Add, x: sympy.Expr):
    """(total, reach, side) for a sum whose every term is c*P(x)*D(x), P a polynomial (x in it possibly clamped
    already) and D a decaying factor of :func:`_decay`, all of them decaying on one side at least: the sum is
    <= exp(-800) past reach there.  exp(x)*erfc(x)'s slope (erfc(x) - 2*exp(-x**2)/sqrt(pi))*exp(x) was
    inf*0 = NaN from x = 89.5 in float32 (711 in float64), where it is 0, for no factor of it alone decays."""
    sides, reach = set(), 0.0
    for term in Add.make_args(total):
        coefficient, part = term.as_independent(x, as_Add=False)
        decaying = [f for f in Mul.make_args(part) if _decay(f, x) is not None]
        if len(decaying) != 1 or not coefficient.is_number or not coefficient.is_finite:
            return None
        polynomial = Mul(*[f for f in Mul.make_args(part) if f is not decaying[0]])
        polynomial = polynomial.replace(lambda e: isinstance(e, (sympy.Min, sympy.Max)) and e.has(x),
                                        lambda e: next(a for a in e.args if a.has(x)))
        if polynomial.free_symbols - {x} or not polynomial.is_polynomial(x):
            return None
        poly = sympy.Poly(coefficient * polynomial, x)
        size = max(1.0, sum(abs(float(c)) for c in poly.all_coeffs()))
        _, first, side = _decay(decaying[0], x)
        # past reach the decay, at least exponential in x, outgrows |c*P(x)| <= size*x**degree
        _, term_reach, _ = _decay(decaying[0], x, 800.0 + math.log(size) + poly.degree() * math.log(max(first, 2.0)))
        sides.add(side)
        reach = max(reach, term_reach)
    sides.discard(0)
    if len(sides) > 1:
        return None
    return total, reach, (sides.pop() if sides else 0)


def _decaying_clamp(factors: tuple, decaying: sympy.Expr, argument: sympy.Expr, reach: float, side: int,
                    x: sympy.Symbol) -> sympy.Expr | None:
    """x clamped to [-B, B] (one side of it for a one-sided D) for the factors beside ``decaying`` (see
    :func:`_clamp_beside_decaying_factor`), or None where they need no clamp or it cannot help."""
    others = [f for f in factors if f is not decaying and f.has(x)]
    part = Mul(*others)
    numbers = Mul(*[f for f in factors if f.is_number])
    if not others or part.has(sympy.Piecewise, _Select, _Masked) or part.free_symbols != {x}:
        return None
    parts = [part]
    if side and any(sympy.expand(numbers * part + s * argument).is_number for s in (1, -1)):
        # the scaled product too where the printer forms it from a subexpression it shares with D's argument:
        # -u*Sigmoid(u), u = -2*x (x*Sigmoid(2*x)'s slope) as (2*x)*Sigmoid(-(2*x)), and 3*x*Sigmoid(1 - 3*x) in
        # x*Sigmoid(3*x - 1)'s slope as (3*x)*Sigmoid(-(3*x) + 1): 3*x overflows where x alone does not (NaN at
        # x = 3e38 in float32, where the slope is 1)
        parts.append(numbers * part)
    import numpy as np

    try:
        numerics = [sympy.lambdify(x, p, modules=numpy_modules()) for p in parts]
        magnitudes = [10.0**k for k in range(10, 309, 2)] + [float(np.finfo(np.float32).max),
                                                              float(np.finfo(np.float64).max)]
        if all(_finite_in_numpy(n, magnitudes, side or None) for n in numerics):  # a one-sided D: its side only
            return None
        bound = 2 ** max(0, math.ceil(math.log2(reach)))
        if not all(_finite_in_numpy(n, [float(bound)]) for n in numerics):
            return None
    except Exception:  # noqa: BLE001 - a form numpy cannot evaluate is left as it is
        return None
    return {0: sympy.Max(-bound, sympy.Min(bound, x)), -1: sympy.Max(-bound, x), 1: sympy.Min(bound, x)}[side]


def _to_elementary(e: sympy.Expr) -> sympy.Expr:
    from symact.primitives import to_elementary

    return to_elementary(e)


def _rounded(value, dtype):
    import numpy as np

    with np.errstate(all="ignore"):
        return dtype(float(value))


def _settled_from(exact, sign: int):
    """Least power of two 2**k such that exact(sign*2**j) rounds to one value for all j >= k, in
    float64 (j <= 1023) and float32 (j <= 127); None if it never settles below 2**64, or if exact
    fails (raises, or is not a real mpf) at any sign*2**j, 0 <= j <= 1023.

    The values are evaluated lazily: j = 64 first, then from j = 1023 inwards, and the search stops
    at the first j >= 64 where the rounding differs from the limit's (the answer is None then
    whatever the other values are): an output that does not settle costs a few evaluations
    instead of 1024 (the second derivative of Cardano's inverse of W + W**3, which rounds to 0.0
    from 2**160 up and not at 2**64, took 15 s)."""
    import mpmath
    import numpy as np

    values = {}

    def value(j):
        if j not in values:
            v = exact(mpmath.mpf(sign) * mpmath.mpf(2) ** j)
            if not isinstance(v, mpmath.mpf):
                raise TypeError("not a real mpf")
            values[j] = v
        return values[j]

    try:
        with mpmath.workdps(60):
            limit64, limit32 = _rounded(value(1023), np.float64), _rounded(value(127), np.float32)
            if not (np.isfinite(limit64) and np.isfinite(limit32)):
                return None

            def settled(j):
                return _rounded(value(j), np.float64) == limit64 and (
                    j > 127 or _rounded(value(j), np.float32) == limit32)

            if not settled(64):  # then k > 64 whatever the values above
                return None
            k = 1023
            while k > 0 and settled(k - 1):
                k -= 1
            if k > 64:
                return None
            for j in range(1023, -1, -1):  # a failure anywhere refuses the bound, as before
                value(j)
    except Exception:  # noqa: BLE001
        return None
    if any(_rounded(values[j], np.float32) != limit32 for j in range(k, 128)):
        return None
    return 2.0**k


def _finite_in_numpy(function, magnitudes: list, sign: int | None = None, exact=None) -> bool:
    """function finite at +-magnitudes in float32 and float64 (at sign*magnitude only, and equal to
    exact's rounding there, when sign is given)."""
    import mpmath
    import numpy as np

    for dtype in (np.float32, np.float64):
        signs = (1, -1) if sign is None else (sign,)
        with np.errstate(all="ignore"):
            points = np.array([s * m for m in magnitudes for s in signs if m <= np.finfo(dtype).max], dtype=dtype)
            values = np.asarray(function(points), dtype=dtype)
        if not np.all(np.isfinite(values)):
            return False
        if exact is not None:
            with mpmath.workdps(60):
                expected = [_rounded(exact(mpmath.mpf(float(p))), dtype) for p in points]
            if values.tolist() != [float(v) for v in expected]:
                return False
    return True


def _rational_tails(expr: sympy.Expr, inputs: tuple) -> sympy.Expr:
    """Rational functions of one input that overflow for large |x| -> a branch in w = 1/x there.

    A ratio of polynomials is evaluated as inf/inf or inf*0 = NaN once a power of x overflows
    (pade's x*(x + 2)/(x**2 + 2) from |x| ~ 1.8e19 in float32, elephant's -4*x**3/(x**4 + 1)**2
    from 7e12), where its true value is finite.  Each largest rational subexpression N/D with
    rational coefficients whose evaluation in float32 or float64 at some |x| in [1e10, max] is
    not finite becomes: itself for |x| <= T, and x**(p - q)*N~(w)/D~(w) beyond, N~(w) = w**p*N(1/w)
    (p, q the degrees) by Horner's rule.  T >= 64 (outside [-30, 30], where the ulp bounds are
    measured) is a power of two past which the leading terms dominate (the others sum to at most
    a quarter of them), so the w-polynomials cannot cancel.  Both branches see masked inputs.
    """
    if len(inputs) != 1:
        return expr
    (x,) = inputs

    def walk(e):
        if e.is_Atom or not isinstance(e, sympy.Expr):
            return e
        # in a product the factors that depend on x alone (g*N/D in a backward: N/D)
        rest, part = e.as_independent(x, as_Add=False) if isinstance(e, Mul) else (S.One, e)
        if (part.free_symbols == {x} and not part.is_Atom and part.is_rational_function(x)
                and not part.is_polynomial(x)):
            replaced = _rational_tail(part, x)
            if replaced is not None:
                return rest * replaced
        if part.free_symbols == {x} and part.has(sympy.Abs):
            replaced = _rational_tail_of_abs(part, x)
            if replaced is not None:
                return rest * replaced
        replaced = _grouped_rational_tail(part, x) if part.free_symbols == {x} else None
        if replaced is not None:
            return rest * replaced
        if isinstance(e, Mul):
            # the rational factors of a product with other functions of x: 2*x*tanh(x)/(x**2 + 1) (log(1 +
            # x**2)*tanh(x)'s derivative) was x*(1/inf) = 0 from |x| = 1.8e19 in float32 (2e-30 at 1e30)
            rational = [f for f in e.args if f.free_symbols <= {x} and f.is_rational_function(x)]
            others = [f for f in e.args if f not in rational]
            part = Mul(*rational)
            if (others and part.has(x) and not part.is_Atom and not part.is_polynomial(x)
                    and len([f for f in rational if f.has(x)]) > 1):
                replaced = _rational_tail(part, x)
                if replaced is not None:
                    return Mul(*[walk(f) for f in others]) * replaced
        args = [walk(a) for a in e.args]
        return e.func(*args) if args != list(e.args) else e

    return walk(expr)


#: Where a growth branch (see :func:`_exp_growth_tail`) starts: exp(64) is far inside every format's range (float16
#: and bfloat16 are computed in float32), so exp(u) as it stands is finite below it.
_EXP_TAIL_START = 64


@functools.lru_cache(maxsize=512)
def _exp_growth_tail(expr: sympy.Expr, inputs: tuple) -> sympy.Expr:
    """g*E(x), E holding exp(u) or Expm1(u) with u = a*x + b (a, b numbers) and not finite at some x where it is
    -> g*_Select(U <= T, E, exp(U - T)*B) with T = 64, U the u that grows fastest and B = E*exp(T - U)
    with the exponentials combined: a sum of rational functions of x times exponentials that decay where U > T.

    Expm1(x)/x was inf for x from 88.7 to 93.2 in float32 (709.8 to 716.3 in float64), where it is finite: the
    exponential overflows before the division that brings it back into range; its slope
    ((x - 1)*exp(x) + 1)/x**2 was inf from x = 84.  exp(x - 64)*(exp(64)/x - exp(64 - x)/x) overflows only where
    the value does.  Only where E as it stands is not finite at some x with U in [T, 120] (float32) or
    [650, 760] (float64) and the branch is finite there and within 1e-5 of E's exact value (mpmath) wherever
    that is a normal number of the format; otherwise E is left as it is.  Both branches see masked inputs.
    Only where every other branch of E (a Taylor patch's, a rational function's large-|x| one) is decided on
    the whole growth region: exp(2*x)/(x**2 + 1), whose growth branch would start at x = 32 inside the rational
    branch's |x| <= 64, is left as it is."""
    if len(inputs) != 1:
        return expr
    (x,) = inputs
    rest, part = expr.as_independent(x, as_Add=False) if isinstance(expr, Mul) else (S.One, expr)
    if part.free_symbols != {x} or not part.has(sympy.exp, Expm1):
        return expr
    unmasked = part.replace(lambda n: isinstance(n, _Masked), lambda n: n.args[0])  # the exponents as written
    growing = {f.args[0] for f in unmasked.atoms(sympy.exp, Expm1) if f.has(x)}
    linear = []
    for u in growing:
        if not (u.free_symbols == {x} and u.is_polynomial(x) and sympy.degree(u, x) == 1):
            return expr  # a clamped or nonlinear exponent: other rules own it
        b, a = sympy.Poly(u, x).all_coeffs()[::-1]
        linear.append((a, b, u))
    if len({a.is_positive for a, _, _ in linear}) != 1:
        return expr  # growing at both ends
    side = 1 if linear[0][0].is_positive else -1
    a, b, u = max(linear, key=lambda t: (abs(t[0]), side * t[1]))
    points = _growth_points(a, b)
    try:
        if points is None or _finite_in_numpy(sympy.lambdify(x, part, modules=numpy_modules()), points, sign=1):
            return expr  # finite as it stands (elu's exp(x) is masked to x <= 0): the common case, decided cheaply
    except Exception:  # noqa: BLE001 - an expression numpy cannot evaluate: left as it is
        return expr
    start = (_EXP_TAIL_START - b) / a  # U = T there; U > T beyond it, on the side where U grows
    region = sympy.Interval.open(start, sympy.oo) if side > 0 else sympy.Interval.open(-sympy.oo, start)
    at_region = _on_region(part, x, region)
    if at_region is None:
        return expr
    bracket = at_region.replace(lambda e: isinstance(e, Expm1), lambda e: sympy.exp(e.args[0]) - 1)
    bracket = sympy.powsimp(sympy.expand_mul(bracket * sympy.exp(_EXP_TAIL_START - u)), combine="exp")
    for node in sympy.preorder_traversal(bracket):
        if isinstance(node, sympy.exp):
            exponent = node.args[0]
            if not (exponent.is_polynomial(x) and sympy.degree(exponent, x) <= 1
                    and not (side * sympy.Poly(exponent, x).coeff_monomial(x)).is_positive):
                return expr  # it grows beyond T as well: a faster exponential than U's
        elif isinstance(node, sympy.Function):
            return expr
    if not _tail_repairs(part, u, bracket, x, points):
        return expr
    inner = u <= _EXP_TAIL_START
    inside = next((p for p in ((S.One - b) / a, (S(_EXP_TAIL_START) / 2 - b) / a) if _finite_at(part, x, p)), None)
    if inside is None:
        return expr
    outside = (2 * S(_EXP_TAIL_START) - b) / a
    tail = sympy.exp(u - _EXP_TAIL_START) * bracket  # printed bracket first (a sum, or a product scaled last)
    return rest * _Select(inner, part.xreplace({x: _Masked(x, inner, inside)}),
                          tail.xreplace({x: _Masked(x, sympy.Not(inner, evaluate=False), outside)}))


def _on_region(e: sympy.Expr, x: sympy.Symbol, region: sympy.Interval) -> sympy.Expr | None:
    """e for x in ``region`` alone: each _Select by the branch its condition picks on all of it, each _Masked whose
    mask holds on all of it by x itself; None where a condition is decided on part of the region only."""

    def holds(condition) -> bool | None:
        if condition.has(sympy.Piecewise, _Select, _Masked) or _beyond_the_solvers(condition, x):
            return None  # as_set() of a Taylor patch's degree-20 polynomial does not finish
        try:
            where = condition.as_set()
        except (NotImplementedError, TypeError, ValueError):
            return None
        if region.is_subset(where):
            return True
        if region.intersect(where) == sympy.S.EmptySet:
            return False
        return None

    def walk(node):  # top-down: a _Select's branch not taken is never looked into
        if node.is_Atom or not node.has(x):
            return node
        if isinstance(node, (_Select, _Masked)):
            truth = holds(node.args[0] if isinstance(node, _Select) else node.args[1])
            if truth is None or (isinstance(node, _Masked) and not truth):
                return None  # undecided, or masked away from the whole region: not its value there
            return walk(node.args[0] if isinstance(node, _Masked) else node.args[1] if truth else node.args[2])
        args = [walk(a) for a in node.args]
        return None if any(a is None for a in args) else node.func(*args)

    return walk(e)


def _growth_points(a: sympy.Expr, b: sympy.Expr) -> list | None:
    """x where U = a*x + b takes the values at which a growth branch is checked: past exp's overflow in float32
    (88.7) and float64 (709.8) up to where a value ~exp(U)/U**k overflows too."""
    us = [64.5, 70.0, 80.0, 84.0, 86.0, 88.0, 88.8, 89.5, 90.5, 92.0, 93.0, 95.0, 100.0, 120.0,
          650.0, 700.0, 709.0, 710.0, 712.0, 714.0, 716.0, 720.0, 740.0, 760.0]
    try:
        return [float((sympy.Float(v, 30) - b) / a) for v in us]
    except TypeError:
        return None


def _finite_at(e: sympy.Expr, x: sympy.Symbol, point: sympy.Expr) -> bool:
    """Whether e (numpy, as it stands) is finite at x = point in float32 and float64: a mask's point must be."""
    import numpy as np

    try:
        f = sympy.lambdify(x, e, modules=numpy_modules())
        with np.errstate(all="ignore"):
            return all(bool(np.isfinite(np.asarray(f(np.array([float(point)], dtype=t)), dtype=t)).all())
                       for t in (np.float32, np.float64))
    except Exception:  # noqa: BLE001 - numpy cannot evaluate it: not a point to rely on
        return False


def _tail_repairs(e: sympy.Expr, u: sympy.Expr, bracket: sympy.Expr, x: sympy.Symbol, points: list) -> bool:
    """Whether e as it stands is not finite at some of the points where its exact value is a finite number of
    the format, while the tail exp(u - T)*bracket (the bracket evaluated first) is right at every point: within
    1e-5 of the exact value where that is a normal number, inf of its sign where it is beyond the format, below
    the smallest normal where it is (float32 and float64, numpy; the exact value by mpmath at 50 digits of e's
    elementary form)."""
    import mpmath
    import numpy as np

    from symact.primitives import to_elementary

    try:
        value_fn, growth_fn, bracket_fn = (sympy.lambdify(x, f, modules=numpy_modules())
                                           for f in (e, u - _EXP_TAIL_START, bracket))
        functions = [value_fn, lambda p: np.exp(growth_fn(p)) * bracket_fn(p)]
        exact_fn = sympy.lambdify(x, to_elementary(e.replace(
            lambda n: isinstance(n, _Masked), lambda n: n.args[0]).replace(
            lambda n: isinstance(n, _Select), lambda n: sympy.Piecewise((n.args[1], n.args[0]), (n.args[2], True)))),
            modules="mpmath")
    except Exception:  # noqa: BLE001 - an expression numpy or mpmath cannot evaluate: left as it is
        return False
    repairs = False
    for dtype in (np.float32, np.float64):
        finfo = np.finfo(dtype)
        with np.errstate(all="ignore"):
            values, tails = (np.asarray(f(np.array(points, dtype=dtype)), dtype=dtype) for f in functions)
        for p, value, got in zip(np.array(points, dtype=dtype).tolist(), values.tolist(), tails.tolist()):
            try:
                with mpmath.workdps(50):
                    exact = exact_fn(mpmath.mpf(p))
            except (ZeroDivisionError, ValueError, OverflowError, TypeError):
                return False
            if isinstance(exact, mpmath.mpc) or mpmath.isnan(exact):
                return False
            if abs(exact) > finfo.max:
                if got != (math.inf if exact > 0 else -math.inf):
                    return False
                continue
            if abs(exact) >= finfo.tiny:
                if not (math.isfinite(got) and abs(got - float(exact)) <= 1e-5 * abs(float(exact))):
                    return False
            elif not abs(got) < finfo.tiny:
                return False
            repairs = repairs or not math.isfinite(value)
    return repairs


def _rational_tail_of_abs(e: sympy.Expr, x: sympy.Symbol):
    """The large-|x| branch of a rational function R(x, |x|) that is even or odd in x: R = f(|x|) or
    sign(x)*f(|x|), f(v) = R(v, v), with f's own branch at v = |x| (the slope 3*x**2/(x**2*|x| + 1)**2 of
    x**3/(1 + |x|**3) was inf/inf = NaN from |x| = 1.8e19 in float32, 1e103 in float64, where it is
    ~3/x**4; Abs kept it from the rational rule)."""
    v = sympy.Dummy("v", positive=True)
    if any(a.args[0] != x for a in e.atoms(sympy.Abs)):
        return None
    # a function of x other than |x| (exp, erfc, a Piecewise) cannot leave a rational function; and the
    # substitution below re-evaluates every node (22 s on the Erfcx branches of x*exp(x)*erfc(x)'s code)
    if any(not isinstance(f, sympy.Abs) and f.has(x) for f in e.atoms(sympy.Function, sympy.Piecewise)):
        return None
    plus = e.xreplace({sympy.Abs(x): v}).xreplace({x: v})
    minus = e.xreplace({sympy.Abs(x): v}).xreplace({x: -v})
    if plus.free_symbols != {v} or not plus.is_rational_function(v) or plus.is_polynomial(v):
        return None
    if sympy.cancel(plus - minus) == 0:
        odd = False
    elif sympy.cancel(plus + minus) == 0:
        odd = True
    else:
        return None
    tail = _rational_tail(plus, v)
    if tail is None:
        return None

    def at_abs(node):  # v -> |x|, keeping each ~(|v| <= T) unevaluated: |x| > T would send NaN to the point
        if node == v:
            return sympy.Abs(x)
        if node.is_Atom:
            return node
        args = [at_abs(a) for a in node.args]
        return sympy.Not(*args, evaluate=False) if isinstance(node, sympy.Not) else node.func(*args)

    tail = at_abs(tail)
    return sympy.sign(x) * tail if odd else tail


def _rational_tail(e: sympy.Expr, x: sympy.Symbol):
    form = _rational_tail_form(e, x)
    if form is None or _agree_at_large_arguments(e, form[0], x):
        return None
    tail, bound, inside = form
    inner = sympy.Abs(x) <= bound
    # the tail's mask is ~(|x| <= T), unevaluated: |x| > T is false for a NaN, which the mask replaced
    # by 2*T (log(1 + x**2)'s gradient at NaN was 2/128), where ~ lets it through
    return _Select(inner, e.xreplace({x: _Masked(x, inner, inside)}),
                   tail.xreplace({x: _Masked(x, sympy.Not(inner, evaluate=False), S(2 * bound))}))


def _grouped_rational_tail(part: sympy.Expr, x: sympy.Symbol):
    """R(x)*(sum of r_t(x)*F_t(x)), R and r_t rational, F_t other functions of x -> a branch beyond |x| = T holding
    sum over the distinct F of F*(R*sum of its r_t) with each rational function in its w-form (see
    :func:`_rational_tails`), where the product evaluated as it stands is not finite at some |x| in [1e10, max].
    The slope of x*log(1 + x**2)/(1 + x**2), (Log1p(x**2)*(1 - x**2) + 2*x**2)/(x**4 + 2*x**2 + 1), was -0.0
    from |x| = 4.3e9 in float32 (x**4 overflowed; the slope is ~-2*log(x)/x**2, -5.3e-23 at 1e12) and NaN from
    1.8e19.  Within T the product is left as it is."""
    if not isinstance(part, Mul):
        return None

    def rational(f):
        return f.free_symbols <= {x} and f.is_rational_function(x)

    sums = [f for f in part.args if isinstance(f, Add) and not rational(f)]
    others = [f for f in part.args if f not in sums]
    if len(sums) != 1 or not all(rational(f) for f in others) or sums[0].has(_Select, _Masked, sympy.Piecewise):
        return None
    groups: dict = {}
    for term in sums[0].args:
        functions = Mul(*[f for f in Mul.make_args(term) if not rational(f)])
        groups[functions] = groups.get(functions, S.Zero) + Mul(*[f for f in Mul.make_args(term) if rational(f)])
    if len(groups) < 2:
        return None
    import numpy as np

    try:
        with np.errstate(all="ignore"):
            numeric = sympy.lambdify(x, part, modules=_numpy_functions())
            if _finite_in_numpy(numeric, [10.0**k for k in range(10, 309, 2)]):
                return None
    except Exception:  # noqa: BLE001 - a function numpy cannot evaluate: left as it is
        return None
    forms = []
    for functions, coefficient in groups.items():
        q = Mul(*others) * coefficient
        form = _rational_tail_form(q, x) if q.has(x) else (q, 64, S.Zero)
        if form is None:
            return None
        forms.append((functions, q, form))
    bound = max(form[1] for _, _, form in forms)
    denominators = [sympy.fraction(sympy.cancel(q))[1] for _, q, _ in forms]
    inside = next((p for p in (S.Zero, S(bound) / 2, S(-bound) / 2)
                   if all(d.xreplace({x: p}) != 0 for d in denominators)), None)
    if inside is None:
        return None
    inner = sympy.Abs(x) <= bound
    outer = _Masked(x, sympy.Not(inner, evaluate=False), S(2 * bound))
    tail = Add(*[(functions * form[0]).xreplace({x: outer}) for functions, _, form in forms])
    return _Select(inner, part.xreplace({x: _Masked(x, inner, inside)}), tail)


def _rational_tail_form(e: sympy.Expr, x: sympy.Symbol):
    """(tail, T, inside) for a rational function of x (see :func:`_rational_tails`): its w-form, the bound past
    which the leading terms dominate and a point within it where the denominator is not 0; None where there is
    none (coefficients that are not rational, degree below 2, a bound above 2**20)."""
    numerator, denominator = sympy.fraction(sympy.cancel(e))
    try:
        n, d = sympy.Poly(numerator, x), sympy.Poly(denominator, x)
    except sympy.PolynomialError:
        return None
    if not all(c.is_Rational for c in n.all_coeffs() + d.all_coeffs()) or max(n.degree(), d.degree()) < 2:
        return None
    w = sympy.Dummy("w", real=True)
    excess = n.degree() - d.degree()
    # a tail ~ c/x is printed as N~/(x*D~): with D~(0) = d's leading coefficient a, x*D~ overflows for |x| >
    # max/a where the value is still a normal number (log(1 + 4*x**2)'s slope 8/(x*(4 + w**2)) was 0 from
    # |x| = 8.5e37 in float32, 1.18e-38 at 1.7e38); both divided by a, x*D~ is x*(1 + O(w))
    scale = d.LC() if excess < 0 else S.One
    tail = (_horner_in([c / scale for c in n.all_coeffs()[::-1]], w)
            / _horner_in([c / scale for c in d.all_coeffs()[::-1]], w))
    tail = tail * (x**excess if excess > 0 else w**-excess)
    tail = tail.xreplace({w: 1 / x})
    bound = max(64, _dominance_bound(n), _dominance_bound(d))
    if bound > 2**20:
        return None
    inside = next((p for p in (S.Zero, S(bound) / 2, S(-bound) / 2) if d.eval(p) != 0), None)
    if inside is None:
        return None
    return tail, bound, inside


def _horner_in(coefficients: list, w: sympy.Expr) -> sympy.Expr:
    """sum c_i*w**(n - i) (coefficients highest power first) nested by Horner's rule, unevaluated."""
    total = S.Zero
    for c in coefficients:
        total = sympy.Add(sympy.Mul(total, w, evaluate=False), c, evaluate=False) if total != 0 else c
    return total


def _dominance_bound(poly: sympy.Poly) -> int:
    """The least power of two T with sum_{i < n} |a_i|*T**(i - n) <= |a_n|/4."""
    coefficients = poly.all_coeffs()  # highest first
    lead, rest = abs(coefficients[0]), [abs(c) for c in coefficients[1:]]
    bound = 1
    while bound <= 2**20 and sum(c * sympy.Rational(1, bound) ** (k + 1) for k, c in enumerate(rest)) > lead / 4:
        bound *= 2
    return bound


def _agree_at_large_arguments(e: sympy.Expr, tail: sympy.Expr, x: sympy.Symbol) -> bool:
    """e evaluated as it stands (numpy, the same expression tree) agrees with its w-form tail at |x|
    from 1e10 to the maximum of float32 and of float64: finite where the tail is, within 1e-6 where
    the tail is a normal number (cauchy's (x + 1)/(x**2 + 1) is 0 from 1.8e19 in float32, not 1/x)."""
    import numpy as np

    functions = [sympy.lambdify(x, f, modules="numpy") for f in (e, tail)]
    for dtype, top in ((np.float32, 38), (np.float64, 308)):
        magnitudes = [10.0**k for k in range(10, top + 1, 5)] + [float(np.finfo(dtype).max)]
        points = np.array([s * m for m in magnitudes for s in (1, -1)], dtype=dtype)
        with np.errstate(all="ignore"):
            value, reference = (np.asarray(f(points), dtype=dtype).astype(np.float64) for f in functions)
            normal = np.isfinite(reference) & (np.abs(reference) >= np.finfo(dtype).tiny)
            if not (np.all(np.isfinite(value) | ~np.isfinite(reference))
                    and np.all(np.abs(value - reference)[normal] <= 1e-6 * np.abs(reference[normal]))):
                return False
    return True


# --------------------------------------------------------------------------- Fermi-Dirac sums, reflected
def _fermi_dirac_order(f: sympy.Basic) -> int | None:
    """k for F_k(u): FermiDirac(k, u), Softplus(u) = F_1(u), Sigmoid(u) = F_0(u); else None."""
    if isinstance(f, FermiDirac):
        return int(f.args[0])
    if isinstance(f, Softplus):
        return 1
    if isinstance(f, Sigmoid):
        return 0
    return None


def _fermi_dirac_argument(f: sympy.Basic) -> sympy.Expr:
    return f.args[1] if isinstance(f, FermiDirac) else f.args[0]


def _reflection_polynomial(k: int, u: sympy.Expr) -> sympy.Expr:
    """P_k(u) of F_k(u) = P_k(u) + (-1)**(k + 1)*F_k(-u): 1, u, then fermi_dirac_reflection_polynomial."""
    if k == 0:
        return S.One
    if k == 1:
        return u
    coefficients = fermi_dirac_reflection_polynomial(k)
    return Add(*[c * u ** (len(coefficients) - 1 - i) for i, c in enumerate(coefficients)])


def _left_of_zero(k: int, w: sympy.Expr) -> sympy.Expr:
    """F_k(w) evaluated for w <= 0 only."""
    if k == 0:
        return Sigmoid(w)
    if k == 1:
        return Softplus(w)
    return _FermiDiracLeft(k, w)


def _interval_of(condition: sympy.Basic, x: sympy.Symbol) -> sympy.Set | None:
    """The set of x where condition holds, for And/Or/Not of comparisons of x with numbers, else None
    (without SymPy's solvers, whose first call takes a second to import)."""
    if condition == S.true:
        return S.Reals
    if condition == S.false:
        return S.EmptySet
    if isinstance(condition, sympy.Not):
        inner = _interval_of(condition.args[0], x)
        return None if inner is None else S.Reals - inner
    if isinstance(condition, (sympy.And, sympy.Or)):
        parts = [_interval_of(c, x) for c in condition.args]
        if any(p is None for p in parts):
            return None
        return sympy.Intersection(*parts) if isinstance(condition, sympy.And) else sympy.Union(*parts)
    if isinstance(condition, (sympy.StrictLessThan, sympy.LessThan, sympy.StrictGreaterThan, sympy.GreaterThan)):
        if condition.rhs == x and condition.lhs.is_number:
            condition = condition.reversed
        if condition.lhs == x and condition.rhs.is_number and condition.rhs.is_finite:
            c = condition.rhs
            return {sympy.StrictLessThan: sympy.Interval.open(-sympy.oo, c),
                    sympy.LessThan: sympy.Interval(-sympy.oo, c),
                    sympy.StrictGreaterThan: sympy.Interval.open(c, sympy.oo),
                    sympy.GreaterThan: sympy.Interval(c, sympy.oo)}[type(condition)]
    return None


def _positive_somewhere(u: sympy.Expr, region: sympy.Set | None, inputs: tuple) -> bool:
    """False only where provably u <= 0 on the whole region (an x-interval of a Piecewise branch) for an
    argument u = a*x + b with numbers a, b; True otherwise."""
    if region is None or len(inputs) != 1 or u.free_symbols != set(inputs):
        return True
    (x,) = inputs
    a = sympy.diff(u, x)
    if not (a.is_number and a.is_extended_real and a != 0):
        return True
    root = -u.subs(x, 0) / a
    positive = sympy.Interval.open(root, sympy.oo) if a > 0 else sympy.Interval.open(-sympy.oo, root)
    return sympy.Intersection(positive, region) != S.EmptySet


def _reflected_polynomial(terms: list, u: sympy.Expr, inputs: tuple) -> tuple[sympy.Expr, bool] | None:
    r"""The sum of c*P_k(u) over terms (k, c), its growing parts cancelled exactly, and whether they cancel (the
    sum's degree is below its terms'); None where it is not a polynomial in u.

    For u = a*x + b linear in one input x, the sum is taken as a polynomial in y = u/a = x + b/a (x = y - b/a in
    the coefficients) and written in powers of y: a coefficient c = 2*sigma**2 times (y/sigma)**2/2 is y**2, so
    the polynomial overflows where its value does, not where u**2 does (relu_squared * logistic(0.1) in float32:
    the helper's u**2/2 at u = 10*x overflowed from x = 2.61e18, x**2 does from 1.84e19), and a shifted argument
    keeps its (x - 1)**2 unexpanded (no cancellation near x = 1)."""
    y = sympy.Dummy("y", real=True)
    variable, scale, shift = u, S.One, {}
    among = [s for s in inputs if u.has(s)]
    if len(among) == 1:
        (x,) = among
        slope = sympy.cancel(sympy.diff(u, x))
        if not slope.has(x) and slope != 0:
            variable, scale = sympy.cancel(u / slope), slope
            shift = {x: y + sympy.cancel(x - variable)}
    parts = [sympy.expand(c.xreplace(shift) * _reflection_polynomial(k, scale * y)) for k, c in terms]
    try:
        polynomial = sympy.Poly(Add(*parts), y)
        degrees = [sympy.Poly(part, y).degree() for part in parts]
    except sympy.PolynomialError:
        return None
    coefficients = polynomial.all_coeffs()[::-1]
    if any(c.has(y) for c in coefficients):
        return None
    return (Add(*[sympy.cancel(c) * variable**m for m, c in enumerate(coefficients)]),
            polynomial.degree() < max(degrees))


def _even_group(terms: list, u: sympy.Expr, inputs: tuple) -> sympy.Expr | None:
    r"""The sum S(u) = sum c*F_k(u) over terms (k, c) written as S(w) at w = -|u| (_NegativeAbs) where S is even in
    u; None where it is not shown to be.

    For u = a*x + b in one input x (a, b free of x) each coefficient is read as a function of u, c_k(u) with
    x = (u - b)/a.  By the reflection :math:`F_k(u) = P_k(u) + (-1)^{k+1} F_k(-u)`,

    .. math::  S(u) - S(-u) = \sum_k c_k(u) P_k(u) + \sum_k \left((-1)^{k+1} c_k(u) - c_k(-u)\right) F_k(-u),

    so S(u) = S(-u) for every u where the polynomial part :math:`\sum_k c_k(u) P_k(u)` is 0 and each c_k has
    the parity :math:`c_k(-u) = (-1)^{k+1} c_k(u)` (odd beside Sigmoid = F_0, even beside Softplus = F_1).  Then
    S(u) = S(-|u|): the terms that grow with u (and cancel) are never formed, and every F_k is evaluated where it
    decays, once, with no branch for either sign.  A trainable softplus beta's gradient is such a sum:
    x*Sigmoid(beta*x) - Softplus(beta*x)/beta = D(u)/beta with D(u) = u*Sigmoid(u) - Softplus(u) (c_0 = u/beta,
    c_1 = -1/beta), whose terms ~x cancel to -(u + 1)*exp(-u)/beta for large u."""
    among = [s for s in inputs if u.has(s)]
    if len(among) != 1:
        return None
    (x,) = among
    slope = sympy.cancel(sympy.diff(u, x))
    if slope == 0 or slope.has(x):
        return None
    y = sympy.Dummy("y", real=True)
    in_u = {x: (y - u.xreplace({x: S.Zero})) / slope}
    if sympy.cancel(u.xreplace(in_u) - y) != 0:  # not linear in x after all
        return None
    coefficients = [(k, c.xreplace(in_u)) for k, c in terms]
    try:
        if sympy.cancel(sympy.expand(Add(*[c * _reflection_polynomial(k, y) for k, c in coefficients]))) != 0:
            return None
        if any(sympy.cancel(c.xreplace({y: -y}) - (-1) ** (k + 1) * c) != 0 for k, c in coefficients):
            return None
    except sympy.PolynomialError:
        return None
    w = _NegativeAbs(u, u > 0)
    # a factor common to the coefficients (1/beta) scales the sum once, not each term
    return sympy.factor_terms(Add(*[c.xreplace({y: w}) * _left_of_zero(k, w) for k, c in coefficients]))


def _reflected_terms(expr: sympy.Expr, inputs: tuple, region: sympy.Set | None,
                     softplus_groups: bool) -> sympy.Expr | None:
    """expr (a sum, or one product) with each group of terms c*F_k(u) of one argument u, a FermiDirac among
    them, as Piecewise((P + sum c*(-1)**(k + 1)*F_k(-u), u > 0), (sum c*F_k(u), True)), P the sum of the
    c*P_k(u) with its growing parts cancelled, or where the group is even in u as the group at -|u| (_even_group);
    None where no group was rewritten (see _reflect_fermi_dirac)."""
    if not expr.has(FermiDirac, Softplus):
        return None
    groups: dict = {}
    rest = []
    for term in Add.make_args(expr):
        family = [f for f in Mul.make_args(term) if _fermi_dirac_order(f) is not None]
        coefficient = Mul(*[f for f in Mul.make_args(term) if _fermi_dirac_order(f) is None])
        if len(family) == 1 and not coefficient.has(FermiDirac, Softplus, Sigmoid):
            f = family[0]
            groups.setdefault(_fermi_dirac_argument(f), []).append((_fermi_dirac_order(f), coefficient, term))
        else:
            rest.append(term)
    changed, reflected = False, []
    for u, members in groups.items():
        terms = [(k, c) for k, c, _ in members]
        plain = Add(*[term for _, _, term in members])
        # the helper's own reflection is all there is to do for c*F_n(x) with a number c: nothing to cancel or
        # scale
        trivial = len(terms) == 1 and terms[0][1].is_number and u in inputs
        found = None
        if not trivial and u.has(*inputs) and _positive_somewhere(u, region, inputs):
            # an even sum needs neither branch nor polynomial: S(u) = S(-|u|), cheaper than the Piecewise below
            even = _even_group(terms, u, inputs) if len(terms) > 1 else None
            if even is not None:
                reflected.append(even)
                changed = True
                continue
            if softplus_groups or any(k >= 2 for k, _ in terms):
                found = _reflected_polynomial(terms, u, inputs)
        # Softplus and Sigmoid alone: only in a FermiDirac form's code and where their growing parts cancel
        # (x*Sigmoid(x) - Softplus(x), the slope of x*Softplus(x) - 2*FermiDirac(2, x))
        if found is None or (all(k < 2 for k, _ in terms) and not (softplus_groups and found[1])):
            reflected.append(plain)
            continue
        polynomial = found[0]
        positive = u > 0
        w = _FoldedArgument(u, positive)
        right = polynomial + Add(*[c * (-1) ** (k + 1) * _left_of_zero(k, w) for k, c in terms])
        left = Add(*[c * _left_of_zero(k, w) for k, c in terms])
        reflected.append(sympy.Piecewise((right, positive), (left, True)))
        changed = True
    if not changed:
        return None
    return Add(*[_reflect_fermi_dirac(t, inputs, region, softplus_groups) for t in rest], *reflected)


def _reflect_fermi_dirac(expr: sympy.Expr, inputs: tuple, region: sympy.Set | None = S.Reals,
                         softplus_groups: bool = False) -> sympy.Expr:
    r"""Sums of Fermi-Dirac integrals of one argument with their growing parts cancelled symbolically.

    :math:`F_k(u) = P_k(u) + (-1)^{k+1} F_k(-u)` (:func:`symact.primitives.fermi_dirac_reflection_polynomial`;
    :math:`P_1 = u` for Softplus, :math:`P_0 = 1` for Sigmoid), so a sum :math:`\sum_j c_j F_{k_j}(u)` is, for
    u > 0, the polynomial :math:`\sum_j c_j P_{k_j}(u)` plus terms that decay.  The prelude's _fermi_dirac
    reflects each F_k on its own, and where the polynomials cancel in the sum their rounding errors do not: a
    trainable width's gradient :math:`\partial_s (2 s^2 F_2(x/s)) = 4 s F_2(u) - 2 x F_1(u)` has terms
    ~2x**2/s whose difference tends to :math:`2\pi^2 s/3` (s = 1, float32: 6.625 for 6.5797 at x = 1e3, 0 from
    x = 1e5; float64: 0 from x = 1e10).  Here the polynomial is summed symbolically (:func:`_reflected_polynomial`),
    and the decaying parts are evaluated once for both sides at :math:`-|u|` (_FoldedArgument, _FermiDiracLeft):

    .. math::  \sum_j c_j F_{k_j}(u) = \begin{cases} \sum_j c_j P_{k_j}(u) + \sum_j (-1)^{k_j+1} c_j F_{k_j}(-u)
               & u > 0 \\ \sum_j c_j F_{k_j}(u) & u \le 0 \end{cases}

    The terms c_j F_{k_j}(u) of one u in a sum (or a lone product) form a group, each c_j free of that family.  A
    group with a FermiDirac is rewritten (every derivative of a FermiDirac form, in x or in a parameter, has that
    shape), except a lone c*F_n(x) with a number c, where the helper's reflection is the same, and a group whose
    u is <= 0 throughout its Piecewise branch (``region``, an x-set; symact.smooth writes its kink terms so).

    A group that is an even function of u (:func:`_even_group`: its polynomial is 0 and each c_j has the parity
    of :math:`(-1)^{k_j+1}`) is instead the same sum at :math:`-|u|`, with no Piecewise, in any code: a trainable
    softplus beta's gradient (x*Sigmoid(beta*x) - Softplus(beta*x)/beta)/beta = (D(-|u|))/beta**2 with
    D(w) = w*Sigmoid(w) - Softplus(w), u = beta*x (float32 had given 0 for -2.9e-12 at x = 30).  The Piecewise
    form cost that backward 2.6 times its time (1M floats, one thread); the even form costs what the
    cancelling one did.  Any other group of Softplus and Sigmoid alone is rewritten only with ``softplus_groups``
    (the code of a FermiDirac form, whose derivatives in x they are) and only where its polynomial parts
    cancel; elsewhere it is left alone."""
    if not expr.has(FermiDirac, Softplus):
        return expr
    if isinstance(expr, sympy.Piecewise):
        pieces, earlier = [], []
        for value, condition in expr.args:
            branch = None
            if region is not None and len(inputs) == 1:
                branch = _interval_of(sympy.And(condition, *[sympy.Not(c) for c in earlier]), inputs[0])
                branch = None if branch is None else sympy.Intersection(region, branch)
            pieces.append((_reflect_fermi_dirac(value, inputs, branch, softplus_groups), condition))
            earlier.append(condition)
        return sympy.Piecewise(*pieces)
    if isinstance(expr, (Add, Mul)):
        reflected = _reflected_terms(expr, inputs, region, softplus_groups)
        if reflected is not None:
            return reflected
    if not expr.args or isinstance(expr, FermiDirac):
        return expr
    return expr.func(*[_reflect_fermi_dirac(a, inputs, region, softplus_groups) for a in expr.args])


def prepare(expr: sympy.Expr, inputs: tuple, fermi_dirac_form: bool = False) -> sympy.Expr:
    """Symbolic preprocessing before printing.

    ``DiracDelta`` -> 0 (derivatives are sampled almost everywhere), ``sinc`` and
    ``Heaviside`` with a value other than 1/2 at 0 -> ``Piecewise``, fused patterns
    -> markers, ``Piecewise`` -> masked ``_Select``.  Sums of Fermi-Dirac integrals of one argument are
    reflected first (:func:`_reflect_fermi_dirac`; ``fermi_dirac_form``: also sums of Softplus and Sigmoid
    alone, for the code of an activation with a FermiDirac).
    """
    expr = sympy.sympify(expr)
    expr = expr.replace(lambda e: isinstance(e, sympy.DiracDelta), lambda e: S.Zero)
    expr = _reflect_fermi_dirac(expr, inputs, softplus_groups=fermi_dirac_form)
    expr = expr.replace(
        lambda e: isinstance(e, sympy.sinc),
        lambda e: sympy.Piecewise((sympy.sin(e.args[0]) / e.args[0], sympy.Ne(e.args[0], 0)), (1, True)),
    )

    def heaviside(e):
        u = e.args[0]
        h0 = e.args[1] if len(e.args) > 1 else S.Half
        if h0 in (S.Half, None, S.NaN):
            return _Step(u)
        if h0 == 1:  # one comparison, as for H0 = 0 (u > 0); 1 at NaN as the general form gives
            return sympy.Piecewise((0, u < 0), (1, True))
        return sympy.Piecewise((1, u > 0), (0, u < 0), (h0, True))

    expr = expr.replace(lambda e: isinstance(e, sympy.Heaviside), heaviside)
    expr = expr.replace(lambda e: isinstance(e, Mul) and e.has(sympy.Piecewise, sympy.Max, sympy.Min, _Step),
                        lambda e: _fold_unbounded_factor_into_step(e, inputs))
    expr = expr.replace(lambda e: isinstance(e, Mul) and e.has(sympy.Piecewise),
                        lambda e: _scale_into_piecewise(e, inputs))
    # before the clamps below, which would take exp(x) or sech(x) apart from its partner (x clamped in one)
    expr = expr.replace(lambda e: isinstance(e, Mul) and e.has(Sigmoid) and e.has(sympy.exp), _exp_sigmoid_as_sech)
    expr = expr.replace(lambda e: isinstance(e, Mul) and e.has(sympy.sech) and e.has(sympy.exp), _exp_sech_as_sigmoid)
    expr = expr.replace(lambda e: isinstance(e, Mul) and e.has(sympy.sech) and e.has(sympy.cosh, sympy.sinh),
                        lambda e: _hyperbolic_quotient(e, inputs))
    expr = _saturation_clamp(expr, inputs)
    expr = expr.replace(lambda e: isinstance(e, Mul) and e.has(sympy.exp, sympy.sech, Sigmoid, sympy.erfc, NormalCdf),
                        lambda e: _clamp_beside_decaying_factor(e, inputs))
    expr = expr.replace(lambda e: isinstance(e, Mul) and e.has(sympy.exp) and e.has(*inputs),
                        lambda e: _normalised_exp_quotient(e, inputs))
    expr = expr.replace(lambda e: _sigmoid_root(e, inputs) is not None, lambda e: _sigmoid_root(e, inputs))
    expr = _rational_tails(expr, inputs)
    expr = expr.replace(lambda e: isinstance(e, Log1p) and _log1p_of_square(e.args[0]) is not None,
                        lambda e: _log1p_of_square(e.args[0]))
    expr = expr.replace(
        lambda e: isinstance(e, Pow) and e.exp in (S.Half, -S.Half) and _square_plus_constant(e.base) is not None,
        lambda e: _scaled_sqrt_square_plus(*_square_plus_constant(e.base), 2 * e.exp),
    )
    # both terms varying (a constant one was taken just above): x**2*exp(2*x - m) + exp(-m) in
    # exp(x)/sqrt(1 + x**2*exp(2*x))'s normalised quotient overflowed with x**2 (value 0 from x = 1.8e19 in float32)
    expr = expr.replace(
        lambda e: (isinstance(e, Pow) and e.exp.is_Rational and e.exp.q == 2
                   and _sum_of_squares(e.base) is not None),
        lambda e: _hypot_power(e.base, e.exp),
    )
    expr = expr.replace(lambda e: isinstance(e, Mul) and e.has(_SqrtSquarePlus),
                        lambda e: _split_square_plus_ratio(e, inputs))
    expr = expr.replace(lambda e: isinstance(e, Mul) and any(_odd_root_power(f) for f in e.args),
                        lambda e: _split_odd_root_power(e, inputs))
    expr = fuse_builtins(expr)
    expr = expr.replace(lambda e: isinstance(e, Mul) and e.has(sympy.Piecewise),
                        lambda e: _factor_into_step_piecewise(e, inputs))
    expr = _mask_piecewise(expr, inputs)
    # after the masks: a Taylor patch's branch (|x| < 1) is then decided on the growth branch like any _Select
    expr = _exp_growth_tail(expr, inputs)
    # every compound constant becomes one Float, so cse cannot name a constant
    # (which would then be printed as a tensor operation on a Python float)
    expr = expr.replace(
        lambda e: e.is_number and not e.is_Atom and not isinstance(e, sympy.logic.boolalg.Boolean),
        lambda e: sympy.Float(sympy.N(e, 30), 30),
    )
    return expr.replace(lambda e: isinstance(e, Mul), lambda e: _distribute_coefficient(e, inputs))


def _distribute_coefficient(product: Mul, inputs: tuple) -> sympy.Expr:
    """c*P(x)*rest -> (c*P)(x)*rest for a number c and a polynomial P with number coefficients.

    Factoring leaves integer polynomials and a scale: GELU-tanh's argument is
    sqrt(2/pi)/100000 * x*(8943*x**2 + 200000).  With the scale inside, the multiplication
    by c disappears (one pass fewer each way) and every intermediate is the size of the
    result (200000 would be inf in float16).
    Only for a P whose terms share one sign: c*a - c*b, with each product rounded,
    loses the accuracy of an exact a - b near a root of P.
    """
    coefficient, rest = product.as_coeff_Mul()
    factors = Mul.make_args(rest)
    if coefficient in (S.One, S.NegativeOne):
        return product
    for i, factor in enumerate(factors):
        if (isinstance(factor, Add) and factor.free_symbols <= set(inputs) and factor.is_polynomial(*inputs)
                and one_signed_sum(factor)):
            scaled = Add(*[coefficient * term for term in factor.args])
            return Mul(*factors[:i], scaled, *factors[i + 1:])
    return product


# --------------------------------------------------------------------------- emitter
@dataclass
class _Operand:
    code: str  # Python expression (a name or a float literal)
    const: bool = False  # a Python float literal
    full: bool = False  # has the shape of the inputs (depends on x or v)
    owned: bool = False  # a scratch tensor nobody else reads: may be updated in place
    boolean: bool = False


# name -> (out-of-place format, in-place method or None); an in-place name starting with "_"
# is a prelude helper called as u = helper(u) (under torch.compile it may return a new tensor)
_UNARY: dict[type, tuple[str, str | None]] = {
    sympy.exp: ("torch.exp({})", "exp_"),
    sympy.log: ("torch.log({})", "log_"),
    sympy.sin: ("torch.sin({})", "sin_"),
    sympy.cos: ("torch.cos({})", "cos_"),
    sympy.tan: ("torch.tan({})", "tan_"),
    sympy.tanh: ("torch.tanh({})", "tanh_"),
    sympy.sinh: ("torch.sinh({})", "sinh_"),
    sympy.cosh: ("torch.cosh({})", "cosh_"),
    sympy.atan: ("torch.atan({})", "atan_"),
    sympy.asinh: ("torch.asinh({})", "asinh_"),
    sympy.erf: ("_erf({})", "_erf_"),
    sympy.erfc: ("torch.erfc({})", "erfc_"),
    sympy.Abs: ("torch.abs({})", "abs_"),
    sympy.sign: ("torch.sign({})", "sign_"),
    Sigmoid: ("torch.sigmoid({})", "sigmoid_"),
    Log1p: ("torch.log1p({})", "log1p_"),
    Expm1: ("_expm1({})", "_expm1_"),
    NormalCdf: ("_ndtr({})", None),
    Erfcx: ("_erfcx({})", None),
    Softplus: (f"F.softplus({{}}, beta=1.0, threshold={SOFTPLUS_THRESHOLD})", None),
    LogSigmoid: ("F.logsigmoid({})", None),
    _Silu: ("F.silu({})", None),
    _Mish: ("F.mish({})", None),
}


@dataclass
class _Emitter:
    names: dict  # Symbol -> python name of a tensor input
    full_symbols: set  # symbols whose tensors have the full shape
    inplace: bool
    lines: list = field(default_factory=list)
    counter: int = 0
    uses: dict = field(default_factory=dict)  # cse symbol -> remaining uses
    cse_ops: dict = field(default_factory=dict)  # cse symbol -> _Operand of its value
    cse_values: dict = field(default_factory=dict)  # cse symbol -> its expression
    local: dict = field(default_factory=dict)  # cse symbol -> uses in the expression being emitted

    def top(self, e: sympy.Expr) -> _Operand:
        """Emit one whole expression (a cse value or an output)."""
        self.local = {s: _count(e, s) for s in e.free_symbols if s in self.cse_ops}
        return self.value(e)

    def fresh(self) -> str:
        self.counter += 1
        return f"t{self.counter}"

    def assign(self, code: str, full: bool, boolean: bool = False) -> _Operand:
        name = self.fresh()
        self.lines.append(f"{name} = {code}")
        return _Operand(name, full=full, owned=True, boolean=boolean)

    def mutate(self, op: _Operand, method_call: str) -> _Operand:
        self.lines.append(f"{op.code}.{method_call}")
        return op

    def can_mutate(self, op: _Operand) -> bool:
        return self.inplace and op.owned and op.full and not op.boolean and not op.const

    # -- atoms
    def symbol(self, s: sympy.Symbol) -> _Operand:
        if s in self.cse_ops:
            op = self.cse_ops[s]
            self.uses[s] -= 1
            # owned only at the last use overall, and only if this expression reads it
            # once: an earlier operand of the same expression may still be pending
            last = self.uses[s] == 0 and self.local.get(s, 0) == 1
            return _Operand(op.code, op.const, op.full, op.owned and last, op.boolean)
        if s in self.names:
            return _Operand(self.names[s], full=s in self.full_symbols)
        raise FormulaError(
            f"the symbol {s} has no value in generated code: substitute a value for it or list it "
            "as a trainable parameter"
        )

    def _square_plus_root(self, u: sympy.Expr, arg: _Operand, c: sympy.Expr) -> _Operand:
        """sqrt(u**2 + c) as the hypot helper, from u's already emitted operand ``arg``."""
        return self.assign(f"{_sqrt_square_plus_helper(self.expanded(u))}({arg.code}, {number_literal(c)})",
                           full=arg.full)

    def expanded(self, e: sympy.Expr) -> sympy.Expr:
        """e with its common-subexpression symbols replaced by their expressions (what they compute:
        the hypot helper is chosen by whether u has an exp, which a cse symbol hides)."""
        while e.free_symbols & self.cse_values.keys():
            e = e.xreplace(self.cse_values)
        return e

    def value(self, e: sympy.Expr) -> _Operand:
        if e.is_Symbol:
            return self.symbol(e)
        if e.is_number:
            return _Operand(number_literal(e), const=True)
        if isinstance(e, (sympy.Rel, sympy.And, sympy.Or, sympy.Not, sympy.ITE)):
            return self.boolean(e)
        if isinstance(e, Add):
            return self.add(e)
        if isinstance(e, Mul):
            return self.mul(e)
        if isinstance(e, Pow):
            return self.power(e)
        if isinstance(e, (sympy.Max, sympy.Min)):
            return self.extremum(e)
        if isinstance(e, _Select):
            return self.select(e)
        if isinstance(e, _Masked):
            u = self.value(e.args[0])
            point = number_literal(e.args[2]) if e.args[2].is_number else self.value(e.args[2]).code
            if isinstance(e.args[1], sympy.Not):  # u outside a region, NaN included: one op fewer than ~
                outside = self.boolean(e.args[1].args[0])
                return self.assign(f"torch.where({outside.code}, {point}, {u.code})", full=u.full or outside.full)
            region = self.boolean(e.args[1])
            return self.assign(f"torch.where({region.code}, {u.code}, {point})", full=u.full or region.full)
        if isinstance(e, sympy.exp):
            square = _negative_square(e.args[0])
            if square is not None:
                u, c = square
                arg = self.value(u)
                helper = "_exp_neg_sq_" if self.inplace else "_exp_neg_sq"
                return self.assign(f"{helper}({arg.code}, {number_literal(c)})", full=arg.full)
        if isinstance(e, _SqrtSquarePlus):
            return self._square_plus_root(e.args[0], self.value(e.args[0]), e.args[1])
        if isinstance(e, _Hypot):
            a, b = self.value(e.args[0]), self.value(e.args[1])
            if self.can_mutate(a) and (a.full or not b.full):
                return self.mutate(a, f"hypot_({b.code})")
            return self.assign(f"torch.hypot({a.code}, {b.code})", full=a.full or b.full)
        if isinstance(e, _SquarePlusRatio):
            arg, root = self.value(e.args[0]), self.value(e.args[1])
            return self.assign(f"{arg.code} / {root.code}", full=arg.full or root.full)
        if isinstance(e, _Finite):
            arg = self.value(e.args[0])
            return self.assign(f'torch.nan_to_num({arg.code}, nan=float("nan"))', full=arg.full)
        if isinstance(e, _Step):
            arg = self.value(e.args[0])
            if self.inplace:
                step = self.assign(f"torch.sign({arg.code})", full=arg.full)
                return self.mutate(self.mutate(step, "add_(1.0)"), "mul_(0.5)")
            return self.assign(f"(torch.sign({arg.code}) + 1.0) * 0.5", full=arg.full)
        if isinstance(e, sympy.sech):
            return self._sech_power(e.args[0], S.One)
        if isinstance(e, FermiDirac):
            return self._fermi_dirac(e)
        if isinstance(e, _FermiDiracLeft):
            arg = self.value(e.args[1])
            return self.assign(f"_fermi_dirac_left({arg.code}, {_fermi_dirac_left_arguments(int(e.args[0]))})",
                               full=arg.full)
        if isinstance(e, _NegativeAbs) and self.inplace:
            arg = self.value(e.args[0])
            folded = self.mutate(arg, "abs_()") if self.can_mutate(arg) else self.assign(
                f"torch.abs({arg.code})", full=arg.full)
            return self.mutate(folded, "neg_()") if self.can_mutate(folded) else self.assign(
                f"-{folded.code}", full=folded.full)
        if isinstance(e, _FoldedArgument):
            arg, positive = self.value(e.args[0]), self.boolean(e.args[1])
            return self.assign(f"torch.where({positive.code}, -{arg.code}, {arg.code})", full=arg.full)
        for cls, (fmt, method) in _UNARY.items():
            if isinstance(e, cls):
                arg = self.value(e.args[0])
                if arg.const:
                    return _Operand(number_literal(e), const=True)
                if method and self.can_mutate(arg):
                    if method.startswith("_"):
                        self.lines.append(f"{arg.code} = {method}({arg.code})")
                        return arg
                    return self.mutate(arg, f"{method}()")
                if self.inplace and cls is NormalCdf:
                    return self.assign(f"_ndtr_({arg.code})", full=arg.full)
                return self.assign(fmt.format(arg.code), full=arg.full)
        raise FormulaError(
            f"no PyTorch translation for {type(e).__name__} in {e}; rewrite the activation with "
            "elementary functions, Max/Min/Abs/Heaviside/Piecewise or symact.primitives"
        )

    def boolean(self, c: sympy.Basic) -> _Operand:
        if c.is_Symbol:
            return self.symbol(c)
        # full only where an operand is: a condition on a 0-dim parameter alone (a > 0) is 0-dim, and
        # a where() over 0-dim operands too (marked full, its in-place g*where(a > 0, a, 2.0) raised
        # "output with shape [] doesn't match the broadcast shape")
        if isinstance(c, sympy.And):
            parts = [self.boolean(a) for a in c.args]
            return self.assign(" & ".join(f"({p.code})" for p in parts), full=any(p.full for p in parts),
                               boolean=True)
        if isinstance(c, sympy.Or):
            parts = [self.boolean(a) for a in c.args]
            return self.assign(" | ".join(f"({p.code})" for p in parts), full=any(p.full for p in parts),
                               boolean=True)
        if isinstance(c, sympy.Not):
            inner = self.boolean(c.args[0])
            return self.assign(f"~({inner.code})", full=inner.full, boolean=True)
        if isinstance(c, sympy.ITE):
            # SymPy's Piecewise folds a Piecewise inside its conditions into ITE(a, b, c) (Max(x, sqrt(x**2+1)-1)'s
            # derivative, where sqrt(x**2+1)-1 has a cancellation-free branch); a branch True/False stays in
            # the ITE.  Printed with ~ (never SymPy's negated relation, true where a is NaN): a false at a
            # NaN input picks c, as a where() over the Piecewise's values would
            a, b, other = c.args
            cond = self.boolean(a)
            if b in (S.true, S.false) and other in (S.true, S.false):
                raise FormulaError(f"cannot print the condition {c}; simplify it to relations combined with "
                                   "And/Or/Not")
            if b == S.true or b == S.false:  # a | c, or ~a & c
                rest = self.boolean(other)
                code = f"({cond.code}) | ({rest.code})" if b == S.true else f"~({cond.code}) & ({rest.code})"
                return self.assign(code, full=cond.full or rest.full, boolean=True)
            if other == S.true or other == S.false:  # ~a | b, or a & b
                then = self.boolean(b)
                code = f"~({cond.code}) | ({then.code})" if other == S.true else f"({cond.code}) & ({then.code})"
                return self.assign(code, full=cond.full or then.full, boolean=True)
            then, rest = self.boolean(b), self.boolean(other)
            return self.assign(f"torch.where({cond.code}, {then.code}, {rest.code})",
                               full=cond.full or then.full or rest.full, boolean=True)
        if isinstance(c, sympy.Rel):
            ops = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "==", "!=": "!="}
            lhs = self.value(c.lhs)
            rhs = self.value(c.rhs)
            if lhs.const and rhs.const:
                raise FormulaError(f"the condition {c} does not depend on the input; simplify the Piecewise")
            return self.assign(f"{lhs.code} {ops[c.rel_op]} {rhs.code}", full=lhs.full or rhs.full, boolean=True)
        raise FormulaError(f"cannot print the condition {c}; use relations combined with And/Or/Not")

    # -- arithmetic
    def add(self, e: sympy.Add) -> _Operand:
        const = S.Zero
        terms = []
        for term in e.args:
            if term.is_number:
                const += term
                continue
            coeff, factor = split_numeric_factor(term)
            terms.append((coeff, factor))
        ops = [(c, self.value(f)) for c, f in terms]
        if not self.inplace:
            pieces = []
            for c, op in ops:
                pieces.append(op.code if c == 1 else f"{number_literal(c)} * {op.code}")
            code = " + ".join(pieces)
            if const != 0:
                code += f" + {number_literal(const)}"
            return self.assign(code, full=any(op.full for _, op in ops))
        # in place: pick an accumulator we own, otherwise allocate one with torch.add
        ops.sort(key=lambda item: not self.can_mutate(item[1]))
        # -a + b as b.add_(a, alpha=-1.0), one pass, not a.neg_() and a.add_(b): the same value (b - a either way)
        if ops[0][0] == -1:
            plus = next((i for i, (c, op) in enumerate(ops) if c == 1 and self.can_mutate(op)), None)
            if plus is not None:
                ops.insert(0, ops.pop(plus))
        c0, acc = ops[0]
        rest = ops[1:]
        if self.can_mutate(acc):
            if c0 == -1:
                self.mutate(acc, "neg_()")
            elif c0 != 1:
                self.mutate(acc, f"mul_({number_literal(c0)})")
        elif rest:
            c1, second = rest.pop(0)
            if c0 == 1:
                acc = self.assign(
                    f"torch.add({acc.code}, {second.code}, alpha={number_literal(c1)})",
                    full=acc.full or second.full,
                )
            else:
                acc = self.assign(f"torch.mul({acc.code}, {number_literal(c0)})", full=acc.full)
                rest.insert(0, (c1, second))
        else:
            acc = self.assign(
                f"torch.mul({acc.code}, {number_literal(c0)})" if c0 != 1 else f"{acc.code}.clone()",
                full=acc.full,
            )
        for c, op in rest:
            if not acc.full and op.full:  # broadcasting into a smaller accumulator: allocate
                acc = self.assign(f"torch.add({acc.code}, {op.code}, alpha={number_literal(c)})", full=True)
            elif c == 1:
                self.mutate(acc, f"add_({op.code})")
            else:
                self.mutate(acc, f"add_({op.code}, alpha={number_literal(c)})")
        if const != 0:
            self.mutate(acc, f"add_({number_literal(const)})")
        return acc

    def mul(self, e: sympy.Mul) -> _Operand:
        coeff = S.One
        numerator, denominator = [], []
        for factor in e.args:
            if factor.is_number:
                coeff *= factor
            elif isinstance(factor, Pow) and factor.exp.is_number and factor.exp.is_negative:
                denominator.append(factor.base if factor.exp == -1 else Pow(factor.base, -factor.exp))
            else:
                numerator.append(factor)
        if (len(numerator) == 1 and not denominator and isinstance(numerator[0], Pow) and numerator[0].exp == 2
                and bool(0 < abs(coeff) < 1)):
            return self._scaled_square(numerator[0].base, coeff)
        # an input's square below a numerator: divided by the input twice, the last step, so that x**2 does not
        # overflow first (the slope of (exp(x) - 1)/x, ((x - 1)*exp(x) + 1)/x**2, was inf/inf = NaN at x = 1e30 in
        # float32, where it is inf, and x**3/x**2-like quotients 0 from |x| = 1.8e19)
        twice = [f for f in denominator if isinstance(f, Pow) and f.exp == 2 and self._input_like(f.base)]
        if not numerator and len(denominator) == 1 and twice:
            # c/u**2 alone (common subexpressions name it: w**2, w = 1/x, in a large-|x| branch) as c/u/u: 1/inf = 0
            # from |u| = 1.8e19 in float32 where it is subnormal, but the product it goes into need not be (the
            # slope of x*log(1 + x**2)/(1 + x**2), ~(2 - 2*log(x))/x**2, was 0 from |x| = 1.85e19, -2.2e-37 at 2e19)
            base = self.value(twice[0].base)
            c = number_literal(coeff)
            if not self.inplace:
                return self.assign(f"{c} / {base.code} / {base.code}", full=base.full)
            acc = self.assign(f"torch.reciprocal({base.code})" if coeff == 1 else f"torch.full_like({base.code}, {c})",
                              full=base.full)
            if coeff != 1:
                self.mutate(acc, f"div_({base.code})")
            return self.mutate(acc, f"div_({base.code})")
        if numerator and len(twice) == 1:
            denominator.remove(twice[0])
            quotient = self.mul(Mul(coeff, *numerator, *[1 / f for f in denominator], evaluate=False))
            base = self.value(twice[0].base)
            if not self.inplace:
                return self.assign(f"{quotient.code} / {base.code} / {base.code}", full=quotient.full or base.full)
            if not self.can_mutate(quotient) or (base.full and not quotient.full):
                quotient = self.assign(f"torch.div({quotient.code}, {base.code})", full=quotient.full or base.full)
            else:
                self.mutate(quotient, f"div_({base.code})")
            return self.mutate(quotient, f"div_({base.code})")
        # a hypot in the denominator taken out of it and divided by one factor at a time, last: the slope of
        # exp(x)/sqrt(1 + x**2*exp(2*x)), N/_Hypot(a, b)**3, was 0 from x = 7e12 in float32 where the cube
        # overflows (the slope is ~-1/x**2, -2e-26 there); ((N/h)/h)/h stays in range wherever the result is
        hypots = [(f, self._hypot_multiplicity(f)) for f in denominator]
        if any(n for _, n in hypots) and (sum(n for _, n in hypots) > 1 or len(denominator) > 1):
            rest = [1 / f for f, n in hypots if not n]
            # a scale |c| > 1, the product's own or the content of a sum in it (SymPy writes -3*(x + exp(2*x)) as
            # -3*x - 3*exp(2*x)), applied after the divisions: -3*x overflowed first in the slope of
            # 1/(x**2 + exp(2*x))**(3/2), inf at x = -1.3e38 in float32 where it is 0
            scale, primitives = coeff, []
            for f in numerator:
                content, primitive = f.as_content_primitive() if isinstance(f, Add) else (S.One, f)
                scale, primitives = scale * content, primitives + [primitive]
            if bool(abs(scale) > 1):
                quotient = self.value(Mul(*primitives, *rest))
            else:
                quotient, scale = self.value(Mul(coeff, *numerator, *rest)), S.One
            for f, n in hypots:
                if n:
                    quotient = self._divided_repeatedly(quotient, self.value(f.base if isinstance(f, Pow) else f), n)
            if scale == 1:
                return quotient
            if not self.inplace:
                return self.assign(f"{quotient.code} * {number_literal(scale)}", full=quotient.full)
            return self.mutate(quotient, f"mul_({number_literal(scale)})")  # a fresh quotient
        num_ops = [self.value(f) for f in numerator]
        den_ops = [self.value(f) for f in denominator]
        c = number_literal(coeff)
        # a scale |c| > 1 of a ratio is applied after the division: (c*x)/sqrt(x**2 + 3) (sqrt(3)*x over
        # it is x/sqrt(1 + x**2/3)) overflowed to inf at x = 3e38 in float32, where the value is 1.73
        scale_last = bool(abs(coeff) > 1) and bool(den_ops) and bool(num_ops)
        if not self.inplace:
            num = " * ".join(op.code for op in num_ops) if num_ops else None
            den = " * ".join(op.code for op in den_ops) if den_ops else None
            if num is None:
                num = c if coeff != 1 or den else "1.0"
            elif bool(abs(coeff) > 1) and not den and len(num_ops) > 1:
                # a scale |c| > 1 last, as the in-place code applies it: -2.0 * x * g * t1 (exp(-x**2)'s slope)
                # overflowed at -2.0 * x where the in-place x*g*t1*-2.0 is 0 (NaN at |x| = 3e38 in float32)
                num = f"{num} * {c}"
            elif coeff != 1 and not (den and scale_last):
                num = f"{c} * {num}"
            code = f"{num} / ({den})" if den else num
            if num_ops and den and scale_last:
                code = f"{code} * {c}"
            return self.assign(code, full=any(op.full for op in num_ops + den_ops))
        if not num_ops:
            d = self._product(den_ops)
            if coeff == 1:
                if self.can_mutate(d):
                    return self.mutate(d, "reciprocal_()")
                return self.assign(f"torch.reciprocal({d.code})", full=d.full)
            acc = self.assign(f"torch.full_like({d.code}, {c})", full=d.full)
            return self.mutate(acc, f"div_({d.code})")
        if bool(abs(coeff) < 1) and len(num_ops) > 1 and coeff != 0:
            # a scale |c| < 1 first, as the graph code's c * a * b does: (a*b)*c overflowed where the
            # value is finite (x*sqrt(x**2/9 + 1) was inf at x = 2.2e19 in float32, value 1.6e38)
            first, *others = sorted(num_ops, key=lambda op: not self.can_mutate(op))
            if self.can_mutate(first):
                self.mutate(first, f"mul_({c})")
            else:
                first = self.assign(f"torch.mul({first.code}, {c})", full=first.full)
            num_ops, coeff = [first, *others], S.One
        acc = self._product(num_ops)
        if coeff != 1 and not scale_last:
            if self.can_mutate(acc):
                self.mutate(acc, "neg_()" if coeff == -1 else f"mul_({c})")
            else:
                acc = self.assign(f"torch.mul({acc.code}, {c})", full=acc.full)
        if den_ops:
            d = self._product(den_ops)
            if self.can_mutate(acc) and (acc.full or not d.full):
                self.mutate(acc, f"div_({d.code})")
            else:
                acc = self.assign(f"torch.div({acc.code}, {d.code})", full=acc.full or d.full)
        if scale_last:
            self.mutate(acc, f"mul_({c})")  # acc is a fresh quotient here
        return acc

    def _hypot_multiplicity(self, f: sympy.Expr) -> int:
        """n where f (a denominator factor, common subexpressions expanded) is _Hypot(a, b)**n, n a positive
        integer (1 for the hypot itself); else 0."""
        base, power = f.as_base_exp()
        if isinstance(self.expanded(base), _Hypot) and power.is_Integer and power > 0:
            return int(power)
        return 0

    def _divided_repeatedly(self, quotient: _Operand, divisor: _Operand, n: int) -> _Operand:
        """quotient/divisor/.../divisor (n divisions, left to right)."""
        if not self.inplace:
            return self.assign(quotient.code + f" / {divisor.code}" * n, full=quotient.full or divisor.full)
        if quotient.const:
            quotient = self.assign(f"torch.full_like({divisor.code}, {quotient.code})", full=divisor.full)
        for _ in range(n):
            if self.can_mutate(quotient) and (quotient.full or not divisor.full):
                self.mutate(quotient, f"div_({divisor.code})")
            else:
                quotient = self.assign(f"torch.div({quotient.code}, {divisor.code})",
                                       full=quotient.full or divisor.full)
        return quotient

    def _input_like(self, e: sympy.Expr) -> bool:
        """Whether e is an input, or an input masked to a region (a Piecewise branch's, a large-|x| branch's)."""
        if e in self.full_symbols:
            return True
        expanded = self.expanded(e)
        return isinstance(expanded, _Masked) and expanded.args[0] in self.full_symbols

    def _scaled_square(self, base: sympy.Expr, coeff: sympy.Expr) -> _Operand:
        """c*u**2 with |c| < 1 as (c*u)*u: the square first overflowed where the result is finite (x**2/2
        was inf for |x| in [1.8e19, 2.6e19] in float32).  Two roundings either way (none lost for c a power
        of two)."""
        u = self.value(base)
        c = number_literal(coeff)
        if not self.inplace:
            return self.assign(f"{c} * {u.code} * {u.code}", full=u.full)
        acc = self.assign(f"torch.mul({u.code}, {c})", full=u.full)
        return self.mutate(acc, f"mul_({u.code})")

    def _product(self, ops: list) -> _Operand:
        ops = sorted(ops, key=lambda op: not self.can_mutate(op))
        acc = ops[0]
        rest = ops[1:]
        if not self.can_mutate(acc) and rest:
            second = rest.pop(0)
            acc = self.assign(f"torch.mul({acc.code}, {second.code})", full=acc.full or second.full)
        for op in rest:
            if self.can_mutate(acc) and (acc.full or not op.full):
                self.mutate(acc, f"mul_({op.code})")
            else:
                acc = self.assign(f"torch.mul({acc.code}, {op.code})", full=acc.full or op.full)
        return acc

    def power(self, e: sympy.Pow) -> _Operand:
        base, exp = e.args
        # 1/cosh(u)**k reaches here as sech(u)**k: symact.primitives.safe_form rewrites it
        if isinstance(base, sympy.sech) and exp.is_number and exp.is_positive:
            return self._sech_power(base.args[0], exp)
        if exp.is_number and 0 < exp < 1 and isinstance(self.expanded(base), sympy.sech):
            # a sech that common-subexpression elimination named (sqrt(sech(x))/sqrt(sech(x) + 1), the safe form of
            # 1/sqrt(1 + cosh(x))): a power below 1 is not taken of its subnormal value (see _sech_power)
            return self._sech_power(self.expanded(base).args[0], exp)
        if exp.is_number and exp.is_negative:
            return self.mul(Mul(S.One, e, evaluate=False))
        if exp == S.Half:
            square_plus = _square_plus_constant(base)
            if square_plus is not None:
                u, constant = square_plus
                arg = self.value(u)
                return self.assign(f"{_sqrt_square_plus_helper(self.expanded(u))}({arg.code}, {number_literal(constant)})",
                                   full=arg.full)
            return self._unary(base, "torch.sqrt({})", "sqrt_")
        if exp == 2:
            return self._unary(base, "torch.square({})", "square_")
        b = self.value(base)
        if exp.is_number:
            code_exp = number_literal(exp)
            if exp.is_Integer:
                code_exp = str(int(exp))
            if self.can_mutate(b):
                return self.mutate(b, f"pow_({code_exp})")
            return self.assign(f"torch.pow({b.code}, {code_exp})", full=b.full)
        x = self.value(exp)
        return self.assign(f"torch.pow({b.code}, {x.code})", full=b.full or x.full)

    def _sech_power(self, u: sympy.Expr, k: sympy.Expr) -> _Operand:
        """sech(u)**k from exp(-|u|): 1/cosh(u) is right in value but its gradient
        -sinh/cosh**2 is inf/inf = NaN once cosh overflows (|u| > 89 in float32)."""
        if k < 1 and u.free_symbols:
            # a power below 1 of a subnormal sech(u) keeps its lost digits and of sech(u) = 0 is 0: sqrt(sech(x)),
            # 1/sqrt(cosh(x)), was 0.8% off at |x| = 100 in float32 and 0 from |x| = 103.3 (744.4 in float64), where
            # it is ~sqrt(2)*exp(-|x|/2) (1.8e-24 at 110); exp(-k*|u|)*(2/(1 + exp(-2*|u|)))**k is normal there
            a = sympy.Abs(u)
            return self.value(Mul(sympy.exp(-k * a), (2 / (1 + sympy.exp(-2 * a))) ** k, evaluate=False))
        arg = self.value(u)
        if arg.const:
            return _Operand(number_literal(sympy.sech(u) ** k), const=True)
        suffix = "_" if self.inplace else ""
        if k == 2:
            return self.assign(f"_sech_sq{suffix}({arg.code})", full=arg.full)
        op = self.assign(f"_sech{suffix}({arg.code})", full=arg.full)
        if k == 1:
            return op
        exponent = str(int(k)) if k.is_Integer else number_literal(k)
        if self.can_mutate(op):
            return self.mutate(op, f"pow_({exponent})")
        return self.assign(f"torch.pow({op.code}, {exponent})", full=op.full)

    def _fermi_dirac(self, e: FermiDirac) -> _Operand:
        """FermiDirac(n, u) as the prelude's _fermi_dirac with its coefficients (see _fermi_dirac_arguments)."""
        n, u = e.args
        arg = self.value(u)
        if arg.const:
            return _Operand(number_literal(e), const=True)
        return self.assign(f"_fermi_dirac({arg.code}, {_fermi_dirac_arguments(int(n))})", full=arg.full)

    def _unary(self, arg: sympy.Expr, fmt: str, method: str) -> _Operand:
        op = self.value(arg)
        if self.can_mutate(op):
            return self.mutate(op, f"{method}()")
        return self.assign(fmt.format(op.code), full=op.full)

    def extremum(self, e) -> _Operand:
        is_max = isinstance(e, sympy.Max)
        consts = [a for a in e.args if a.is_number]
        tensors = [self.value(a) for a in e.args if not a.is_number]
        acc = tensors[0]
        for op in tensors[1:]:
            fn = "torch.maximum" if is_max else "torch.minimum"
            acc = self.assign(f"{fn}({acc.code}, {op.code})", full=acc.full or op.full)
        if consts:
            bound = (sympy.Max if is_max else sympy.Min)(*consts)
            kw = "min" if is_max else "max"
            if self.can_mutate(acc):
                return self.mutate(acc, f"clamp_({kw}={number_literal(bound)})")
            return self.assign(f"torch.clamp({acc.code}, {kw}={number_literal(bound)})", full=acc.full)
        return acc

    def select(self, e: _Select) -> _Operand:
        cond = self.boolean(e.args[0])
        a = self.value(e.args[1])
        b = self.value(e.args[2])
        if a.const and b.const:
            like = self._like()
            return self.assign(
                f"torch.where({cond.code}, torch.full_like({like}, {a.code}), {b.code})", full=True
            )
        return self.assign(f"torch.where({cond.code}, {a.code}, {b.code})", full=cond.full or a.full or b.full)

    def _like(self) -> str:
        for s, name in self.names.items():
            if s in self.full_symbols:
                return name
        raise FormulaError("generated code needs at least one full-shape tensor input")

    def result(self, op: _Operand) -> str:
        """A name holding the final value: full shape, never an alias of an input."""
        like = self._like()
        if op.const:
            return self.assign(f"torch.full_like({like}, {op.code})", full=True).code
        if not op.full:
            return self.assign(f"{op.code} * torch.ones_like({like})", full=True).code
        if not op.owned or op.code in self.names.values():
            return self.assign(f"{op.code}.clone()", full=True).code
        return op.code


def emit_function(
    name: str,
    arguments: list[tuple[sympy.Symbol, str, bool]],
    outputs: list[sympy.Expr],
    inputs: tuple,
    inplace: bool,
    indent: str = "    ",
    fermi_dirac_form: bool = False,
) -> str:
    """Python source of ``def name(args): ... return outputs``.

    ``arguments``: (symbol, python name, full_shape) for each argument, in order.
    ``outputs``: expressions in those symbols; each is returned as a tensor of the
    full shape (a constant output becomes ``full_like``).  ``inputs``: the input
    symbols (the ones Piecewise masking and fused patterns look at).
    ``inplace``: reuse scratch buffers (only for code autograd does not record).
    ``fermi_dirac_form``: the code of an activation with a FermiDirac (see :func:`prepare`).
    """
    names = {s: n for s, n, _ in arguments}
    full = {s for s, _, f in arguments if f}
    prepared = [prepare(o, inputs, fermi_dirac_form) for o in outputs]
    replacements, reduced = sympy.cse(
        prepared, symbols=sympy.numbered_symbols("_c"), order="none",
        ignore=tuple(a for a in (sympy.true, sympy.false)),
    )
    emitter = _Emitter(names=names, full_symbols=full, inplace=inplace)
    counts: dict = {}
    for _, value in replacements:
        for s in value.free_symbols:
            counts[s] = counts.get(s, 0) + _count(value, s)
    for value in reduced:
        for s in value.free_symbols:
            counts[s] = counts.get(s, 0) + _count(value, s)
    emitter.uses = counts
    for symbol, value in replacements:
        op = emitter.top(value)
        if not op.owned and not op.const:
            op = _Operand(op.code, op.const, op.full, False, op.boolean)
        emitter.cse_ops[symbol] = op
        emitter.cse_values[symbol] = value
    results = [emitter.result(emitter.top(v)) for v in reduced]
    body = [indent + line for line in emitter.lines]
    args = ", ".join(n for _, n, _ in arguments)
    returned = ", ".join(results) + ("," if len(results) == 1 else "")
    return "\n".join([f"def {name}({args}):", *body, f"{indent}return ({returned})"]) + "\n"


def _negative_square(arg: sympy.Expr):
    """(u, c) if arg == -c*u**2 with c a positive power of two (so c*hi**2 is exact), else None."""
    coeff, rest = split_numeric_factor(arg)
    if not (coeff.is_number and coeff.is_negative):
        return None
    c = -coeff
    if not (isinstance(rest, Pow) and rest.exp == 2):
        return None
    mantissa, _ = math.frexp(float(c))
    if mantissa != 0.5 or sympy.Float(float(c), 30) != sympy.Float(c, 30):
        return None  # not a power of two
    return rest.base, sympy.Float(float(c))


#: Helpers every generated file defines (they use only torch).
PRELUDE = '''
# torch.compile traced these autograd Functions into zero gradients on torch 2.11, on
# CPU and CUDA alike (measured 2026-11-26: GELU, SELU, erf, Gaussian, SAU, serf, xgelu,
# 3*tanh(x) + 1/2; SiLU, ELU and CELU were right; the cause was not isolated), and is
# right on 2.12.0, 2.13.0 and 2.14.1 (the same probe on CPU, 2026-11-26).  Before 2.12 the
# backward is kept out of the compiler, so torch.compile breaks the graph at the
# Function: right, at eager speed.
_COMPILER_TRACES_BACKWARD = torch.__version__ >= "2.12"


def _backward_for_this_torch(backward):
    return backward if _COMPILER_TRACES_BACKWARD else torch.compiler.disable(backward)

# Eager elementwise code over a large tensor allocates each temporary at full size, and
# on CPU every such allocation is fresh memory the kernel must fault in page by page
# (measured: 16 ms per 64 MiB, more than an exp pass). Evaluated block by block, the
# temporaries are a few hundred KiB, come from the allocator's free lists and stay in
# cache; only the result is written at full size, once.
_BLOCK_BYTES = 1 << 19


def _blockwise(fn, *tensors):
    """fn(*tensors), a tuple of elementwise results, evaluated over blocks of the flattened inputs.

    Only for plain contiguous CPU tensors of one shape, outside torch.compile (which
    fuses the passes itself) and functorch transforms; anything else calls fn once.
    """
    first = tensors[0]
    block = _BLOCK_BYTES // first.element_size()
    n = first.numel()
    if (n < 4 * block or first.device.type != "cpu" or torch.compiler.is_compiling()
            or any(type(t) is not torch.Tensor or t.shape != first.shape or not t.is_contiguous()
                   or torch._C._functorch.is_functorch_wrapped_tensor(t) for t in tensors)):
        return _in_compute_dtype(fn, *tensors)
    flat = [t.view(-1) for t in tensors]
    results = None
    for start in range(0, n, block):
        parts = _in_compute_dtype(fn, *(f[start:start + block] for f in flat))
        if results is None:  # not views: autograd.Function outputs must allow in-place use
            results = [torch.empty(first.shape, dtype=p.dtype, device=p.device) for p in parts]
        for result, part in zip(results, parts):
            result.view(-1)[start:start + block].copy_(part)
    return tuple(results)


def _check_tensors(tensors):
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            if isinstance(t, torch.fx.Proxy):
                # torch.fx.symbolic_trace traced into the module: "convert it with torch.as_tensor" misled
                raise TypeError(
                    "generated activations take tensors, but got a torch.fx Proxy: torch.fx.symbolic_trace traced "
                    "into a generated activation, which runs as an autograd Function it cannot see into; keep the "
                    "module a leaf (a torch.fx.Tracer whose is_leaf_module returns True for it), or use torch.export "
                    "or torch.compile (graphs.from_torch reads it as one activation node)")
            raise TypeError(f"generated activations take tensors, but got {type(t).__name__}; "
                            "convert it with torch.as_tensor (as torch.exp and F.gelu require too)")


def _needs_graph_code(n_full, tensors):
    """Whether in-place code cannot compute fn(*tensors): it writes into scratch buffers made
    from the first n_full tensors (inputs, and g in a backward), so these must all have the
    broadcast shape of every tensor, and under functorch transforms (vmap over parameters,
    or over one of two gated inputs) a buffer made from an unbatched tensor cannot take a
    batched operand in place.  The out-of-place (graph) code computes the same values."""
    _check_tensors(tensors)
    shape = tensors[0].shape
    for t in tensors[1:n_full]:
        if t.shape != shape:
            return True
    for t in tensors[n_full:]:
        if t.dim() and torch.broadcast_shapes(t.shape, shape) != shape:
            return True
    return not torch.compiler.is_compiling() and any(_batched(t) for t in tensors)


def _batched(t) -> bool:
    """A tensor of a functorch transform, or of the legacy vmap that autograd's batched gradients use
    (autograd.grad(..., is_grads_batched=True), functional.jacobian(vectorize=True), gradcheck's
    check_batched_grad): there g came batched and the in-place backward's t1.mul_(g) raised "vmap: aten::mul_
    ... is not possible"."""
    functorch = torch._C._functorch
    return functorch.is_functorch_wrapped_tensor(t) or (
        hasattr(functorch, "is_legacy_batchedtensor") and functorch.is_legacy_batchedtensor(t))


def _forward_ad_active(*tensors):
    """Whether forward-mode AD may ask this call for a jvp: a torch.autograd.forward_ad dual
    level is open, or the inputs are functorch tensors (torch.func.jvp, jacfwd, hessian).
    Never under torch.compile, which does not trace autograd Functions with a custom jvp."""
    _check_tensors(tensors)
    if torch.compiler.is_compiling():
        return False
    return torch.autograd.forward_ad._current_level >= 0 or any(
        torch._C._functorch.is_functorch_wrapped_tensor(t) for t in tensors)


def _jvp(backward_graph, tangents, *tensors):
    """Forward-mode derivative of an elementwise phi: the sum over inputs and parameters s of
    dphi/ds * tangent_s, with dphi/ds from the differentiable backward code at g = 1 (so
    that hessian = jacfwd(jacrev) differentiates it again)."""
    first = tensors[0]
    ones = torch.ones(torch.broadcast_shapes(*(t.shape for t in tensors)), dtype=first.dtype, device=first.device)
    derivatives = _in_compute_dtype(backward_graph, ones, *tensors)
    result = None
    for derivative, tangent in zip(derivatives, tangents):
        if tangent is not None:
            term = derivative * tangent
            result = term if result is None else result + term
    return torch.zeros_like(derivatives[0]) if result is None else result


def _in_compute_dtype(fn, *tensors):
    """fn(*tensors) in the dtype the result should have, or in float32 for float16/bfloat16.

    The result dtype is the promotion of the input-shaped tensors (0-dim parameters do
    not promote, as in PyTorch); integer and bool inputs take the floating parameters'
    dtype, or the default float dtype without any, as torch.exp does.  float16 and bfloat16 are computed in float32 and rounded back once,
    as PyTorch's own kernels do: run in float16 itself, generated code overflows in its
    intermediates (x**2 from |x| = 256, a squared denominator sooner) and rounds every
    step to 8 or 11 bits.  Differentiable: the conversions are recorded like any op.
    """
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        if t.dim() > 0:
            dtype = torch.promote_types(dtype, t.dtype)
    if not (dtype.is_floating_point or dtype.is_complex):
        # an integer input takes the dtype of the floating 0-dim parameters, as in torch's
        # type promotion (int tensor * float64 0-dim tensor is float64)
        for t in tensors[1:]:
            if t.dim() == 0 and (t.dtype.is_floating_point or t.dtype.is_complex):
                dtype = torch.promote_types(dtype, t.dtype)
    if dtype.is_complex:
        raise TypeError(f"generated activations are real functions, but the input is {dtype}; "
                        "pass a real tensor (x.real, x.abs() ...)")
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    compute = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    if all(t.dtype == compute for t in tensors):
        return fn(*tensors)
    results = fn(*(t.to(compute) for t in tensors))
    return tuple(r.to(dtype) for r in results)


# The exact splits below clear the low half of the significand bits (one integer op).
# dtype -> (integer view, mask keeping the high half of the significand,
#           s = -1/sqrt(2) rounded, s_hi = s to half the bits, -1/sqrt(2) - s_hi rounded)
_HALF_SPLIT = {
    torch.float32: (torch.int32, -4096, -0.7071067690849304, -0.70703125, -7.553118484793231e-05),
    torch.float64: (torch.int64, -134217728, -0.7071067811865476, -0.7071067839860916,
                    2.799544089368687e-09),
}


# Veltkamp's splitting factors 2**ceil(p/2) + 1 (p = 24, 53 significand bits)
_VELTKAMP = {torch.float32: 4097.0, torch.float64: 134217729.0}


def _high_half(u):
    """hi: u with half its significand bits (u - hi is exact, hi*hi is exact); |u| < 1e30.

    Clears the low bits through an integer view.  Inside functorch transforms (vmap of
    grad) torch 2.11 has no batching rule for dtype views, so there hi is Veltkamp's
    split c - (c - u), c = u*(2**ceil(p/2) + 1): exact in eager arithmetic, where each op
    rounds once (compiled code may contract it into an FMA, so it is not used there).
    """
    if not torch.compiler.is_compiling() and torch._C._functorch.is_functorch_wrapped_tensor(u):
        c = u * _VELTKAMP[u.dtype]
        return c - (c - u)
    view, mask = _HALF_SPLIT[u.dtype][:2]
    return torch.bitwise_and(u.view(view), mask).view(u.dtype)


def _exp_neg_sq(u, c):
    """exp(-c*u**2) for c a power of two, without the rounding error of u**2.

    exp(-c*u**2) = exp(-c*hi**2) * exp(-c*lo*(hi + u)), lo = u - hi; c*hi**2 is exact, so
    the result keeps a relative error of a few ulps even where c*u**2 is in the hundreds.
    hi is a constant to autograd, and for any fixed hi the product is exactly exp(-c*u**2)
    as a function of u: every derivative is that of exp(-c*u**2).
    """
    if u.dtype not in _HALF_SPLIT:
        return _exp_neg_sq(u.float(), c).to(u.dtype)
    bound = (800.0 / c) ** 0.5
    v = torch.clamp(u, -bound, bound)  # exp(-c*inf**2) is 0, inf - inf is not
    hi = _high_half(v.detach())
    return torch.exp(-c * (hi * hi)) * torch.exp(-c * ((v - hi) * (hi + v)))


def _ndtr(u):
    """Standard normal CDF with full relative accuracy in the left tail.

    ndtr(u) = erfc(z + dz)/2, z = fl(-u/sqrt(2)), dz its exact rounding error (Dekker's
    product with the split constant).  First order: erfc(z + dz) = erfc(z)*(1 - r(z)*dz)
    with r = -(log erfc)' = 2*exp(-z**2)/(sqrt(pi)*erfc(z)).  Only where z > 0 is r*dz
    above half an ulp, and there 2*z < r(z) <= 2*z + 2/sqrt(pi) with r - 2*z ~ 1/z:
    r = 2*max(z, 0) leaves at most (r - 2*z)*|dz| <= 1.13*|z|*2**-p of relative error,
    about one ulp, and needs no exp.  hi is a constant to autograd; the correction's
    derivative is below an ulp of the result's.
    """
    if u.dtype not in _HALF_SPLIT:
        return _ndtr(u.float()).to(u.dtype)
    s, s_hi, s_rest = _HALF_SPLIT[u.dtype][2:]
    v = torch.clamp(u, -64.0, 64.0)  # ndtr is 0 or 1 beyond, in every format; inf - inf is not
    z = v * s
    hi = _high_half(v.detach())
    # z - v*(-1/sqrt(2)) = (z - hi*s_hi) - lo*s_hi - v*s_rest; the first two are exact
    ndz = (z - hi * s_hi) - (v - hi) * s_hi - v * s_rest
    return torch.erfc(z) * (torch.clamp(z, min=0.0) * ndz + 0.5)


def _erfcx(u):
    """exp(u**2)*erfc(u) within a few ulps everywhere.

    torch.special.erfcx is within 2.6 ulps from u = 1 on, but 7 below 1 (measured against
    mpmath), and for u < 0 it takes 2*exp(u*u) - erfcx(-u), where the rounding of u*u costs
    about u**2 ulps (419 at u = -25.6 in float64, 53 at -8.3 in float32).  Below u = 1 this
    takes exp(u**2)*erfc(u) (within 2.7 ulps) with exp(u**2) = exp(hi**2)*exp(lo*(hi + u)),
    hi*hi exact, as in _exp_neg_sq.  Each branch sees a clamped input (erfcx(-30) is inf in
    every format, and an untaken inf branch would make its gradient NaN).
    """
    if u.dtype not in _HALF_SPLIT:
        return _erfcx(u.float()).to(u.dtype)
    v = torch.clamp(u, -30.0, 1.0)
    hi = _high_half(v.detach())
    small = torch.exp(hi * hi) * torch.exp((v - hi) * (hi + v)) * torch.erfc(v)
    return torch.where(u < 1.0, small, torch.special.erfcx(torch.clamp(u, min=1.0)))


def _sech(u):
    """1/cosh(u) = 2a/(1 + a**2), a = exp(-|u|) <= 1: value and gradient finite for every u."""
    a = torch.exp(-torch.abs(u))
    return (a + a) / (1.0 + a * a)


def _sech_sq(u):
    """1/cosh(u)**2 = 4b/(1 + b)**2, b = exp(-2|u|) (one rounding fewer than squaring _sech)."""
    b = torch.exp(-2.0 * torch.abs(u))
    return (4.0 * b) / torch.square(1.0 + b)


# ndtr(-a) = t*exp(-a**2/2)*R(t) for a >= 0, t = 1/(2 + a/sqrt(2)): R(t) = erfcx(z)/(2*t) at
# z = a/sqrt(2) is analytic on [0, 1/2] (R(0) = 1/(2*sqrt(pi)), R(1/2) = 1), and this degree-10
# polynomial, a Chebyshev fit weighted for relative error, is within 1.2e-8 of it; t*R(t)
# evaluated by Horner in float32 is within 3.1e-7 of erfcx(z)/2 (rounding of t included).
_NDTR_TAIL_POLYNOMIAL = (44.23212432861328, -120.18360137939453, 126.38590240478516,
                         -58.236671447753906, 8.459330558776855, -1.894763469696045,
                         1.495398998260498, 1.4025278091430664, 0.9875382781028748,
                         0.5641875267028809, 0.282094806432724)


def _horner(t, coefficients):
    """The polynomial with these coefficients (highest first) at t, by Horner's rule."""
    p = torch.full_like(t, coefficients[0])
    for coefficient in coefficients[1:]:
        p = p * t + coefficient
    return p


def _exp_neg_sq_fused(u, c):
    """float32 exp(-c*u**2) for torch.compile, one exp: exp(-c*hi**2)*exp(-d) as in
    _exp_neg_sq, with exp(-d) by its degree-4 Taylor polynomial.  |d| = c*|lo*(hi + u)| <=
    c*u**2*2**-10, so wherever the result is a normal float32 (c*u**2 < 87.4) |d| < 0.086
    and the polynomial is within |d|**5/120 < 4e-8 of exp(-d); where exp(-c*hi**2) is 0
    (|d| up to 0.8 at the clamp) it stays finite, so the product is 0."""
    bound = (800.0 / c) ** 0.5
    v = torch.clamp(u, -bound, bound)
    hi = _high_half(v)
    d = ((v - hi) * (hi + v)) * c
    rest = 1.0 - d * (1.0 - d * (0.5 - d * (1.0 / 6.0 - d * (1.0 / 24.0))))
    return torch.exp(-c * (hi * hi)) * rest


def _ndtr_fused(u):
    """float32 ndtr for torch.compile: exp(-u**2/2) times a polynomial, in one fused loop.

    torch's erfc (SLEEF) costs several exps in a fused kernel.  This form keeps erfc's
    relative accuracy in the left tail with one exp, and that exp is _exp_neg_sq_fused(u,
    0.5), the same ops on the same input as the normal density's: in a backward that needs
    both (GELU's) the compiler computes it once.
    """
    v = torch.clamp(u, -40.0, 40.0)
    t = 1.0 / (2.0 + torch.abs(v) * -_HALF_SPLIT[torch.float32][2])
    q = t * _horner(t, _NDTR_TAIL_POLYNOMIAL) * _exp_neg_sq_fused(u, 0.5)
    return torch.where(v < 0.0, q, 1.0 - q)


# erf(u)/u = 2/sqrt(pi) * sum (-u**2)**n/(n!*(2n+1)), n = 5..0 (highest first); for |u| <= 1/2
# the first omitted term is below 3e-8 of the sum.
_ERF_SERIES = (-0.0008548327023450852, 0.005223977625442188, -0.026866170645131252,
               0.11283791670955126, -0.37612638903183754, 1.1283791670955126)


def _erf(u):
    """erf(u); under torch.compile in float32, with relative accuracy near 0.

    The compiled float32 erf keeps only absolute accuracy there (measured against mpmath:
    36 ulps at |u| = 0.1-0.5, 6% off at 1e-6, 0 at 1e-10); its Taylor series to u**11
    replaces it for |u| < 1/2, on a clamped argument so that neither branch can be inf.
    """
    if u.dtype != torch.float32 or not torch.compiler.is_compiling():
        return torch.erf(u)
    small = torch.clamp(u, -0.5, 0.5)
    return torch.where(torch.abs(u) < 0.5, small * _horner(small * small, _ERF_SERIES), torch.erf(u))


def _expm1(u):
    """expm1(u); under torch.compile, without cancellation near 0.

    The compiled expm1 is exp(u) - 1 (measured: 63 ulps at |u| = 0.01-0.1, all digits lost
    below 1e-7).  For u < 1 the identity expm1(u) = tanh(u/2)*(exp(u) + 1) has no
    cancellation (compiled tanh is within an ulp); from 1 on exp(u) - 1 loses none.  The
    tanh form takes min(u, 1), so neither branch nor its gradient can be inf or NaN.
    """
    if not torch.compiler.is_compiling():
        return torch.expm1(u)
    small = torch.clamp(u, max=1.0)
    return torch.where(u < 1.0, torch.tanh(small * 0.5) * (torch.exp(small) + 1.0), torch.exp(u) - 1.0)


def _sqrt_square_plus(u, c):
    """sqrt(u**2 + c) for a constant c > 0, finite wherever it is: u**2 alone overflows
    for |u| > 1.8e19 in float32.  Eager, torch.hypot: one pass, within half an ulp.
    Under torch.compile hypot is slow in a fused loop (squareplus 1.10x -> 1.17x of y = 2x,
    and so is any guard against the overflow, 1.15x), so the compiled form keeps
    sqrt(u*u + c) and with it the overflow, far outside any activation's input range."""
    if torch.compiler.is_compiling():
        return torch.sqrt(u * u + c)
    return torch.hypot(u, u.new_tensor(c ** 0.5))


def _hypot_constant(u, c):
    """sqrt(u**2 + c) as torch.hypot, compiled too: for u = exp(x) (sqrt(1 + exp(2x))) the compiled
    sqrt(u*u + c) of _sqrt_square_plus would overflow from x = 44.4 in float32, inside the range
    where the function is finite (to 88.7)."""
    return torch.hypot(u, u.new_tensor(c ** 0.5))


# In-place twins of the helpers above, for code autograd does not record (plain backward,
# and forward: autograd.Function.forward records nothing): the same values on a few
# scratch buffers.
def _exp_neg_sq_(u, c):
    if u.dtype == torch.float32 and torch.compiler.is_compiling():
        return _exp_neg_sq_fused(u, c)
    if u.dtype not in _HALF_SPLIT:
        return _exp_neg_sq(u, c)
    bound = (800.0 / c) ** 0.5
    v = torch.clamp(u, -bound, bound)
    hi = _high_half(v)
    rest = torch.add(hi, v)
    v.sub_(hi)
    rest.mul_(v).mul_(-c).exp_()
    return hi.square_().mul_(-c).exp_().mul_(rest)


# Compiled, these return the out-of-place forms (their in-place ops would compile to
# torch's own erf and exp(u) - 1); eager, they update u in place.
def _erf_(u):
    return _erf(u) if torch.compiler.is_compiling() else u.erf_()


def _expm1_(u):
    return _expm1(u) if torch.compiler.is_compiling() else u.expm1_()


# Only values are needed here (no autograd).  sech: _sech's value, in two allocations instead
# of seven: 1/cosh(u) was 0 where cosh overflows (|u| > 89.4 in float32), where sech is
# subnormal but a factor beside it makes the product a normal number (x**2/cosh(x) was 0 at
# x = 90 in float32 in the in-place code, 1.3e-35 in the graph code).  sech**2: the reciprocal
# of cosh before squaring, so it is 0 only where cosh itself overflows (squared first, it was
# 0 from |u| = 44.4 in float32 where x**2/cosh(x)**2 is 4.5e-36); one allocation and three
# passes, tanh's slope.
# Under torch.compile the passes fuse anyway and one exp is cheaper than cosh.
def _sech_(u):
    if torch.compiler.is_compiling():
        return _sech(u)
    a = torch.abs(u).neg_().exp_()
    d = torch.mul(a, a).add_(1.0)
    return a.add_(a).div_(d)


def _sech_sq_(u):
    if torch.compiler.is_compiling():
        return _sech_sq(u)
    return torch.cosh(u).reciprocal_().square_()


def _ndtr_(u):
    if u.dtype not in _HALF_SPLIT:
        return _ndtr(u)
    if u.dtype == torch.float32 and torch.compiler.is_compiling():
        return _ndtr_fused(u)
    s, s_hi, s_rest = _HALF_SPLIT[u.dtype][2:]
    v = torch.clamp(u, -64.0, 64.0)
    z = torch.mul(v, s)
    ndz = _high_half(v)
    lo = torch.sub(v, ndz)
    ndz.mul_(-s_hi).add_(z).sub_(lo, alpha=s_hi).sub_(v, alpha=s_rest)
    return torch.special.erfc(z).mul_(z.clamp_(min=0.0).mul_(ndz).add_(0.5))
'''

# Kept apart from the helpers above (and appended to them) so that the two change independently.
PRELUDE += '''

def _fermi_dirac(u, n, series, reflection, float32_terms):
    """-polylog(n, -exp(u)), the complete Fermi-Dirac integral F_n(u), within a few ulps for every u.

    For u <= 0, F_n(u) = s*R(s) with s = softplus(u) in (0, log 2] and R the power series
    ``series`` (highest power first, cut for float64; float32 takes its last ``float32_terms``):
    its terms fall by 0.11 each and the leading ones are positive.  For u > 0 the reflection
    F_n(u) = P_n(u) + (-1)**(n + 1)*F_n(-u), P_n the polynomial ``reflection`` (highest power
    first, coefficients >= 0) by Horner's rule, which overflows only where F_n ~ u**n/n! does.
    Each branch sees an input of its own side (u or -u <= 0 for the series, max(u, 0) for
    P_n), so neither the untaken branch nor its gradient is inf or NaN; at u = 0 the series
    takes u itself, so autograd's derivative there is F_(n-1)(0).
    """
    positive = u > 0.0
    tail = _fermi_dirac_left(torch.where(positive, -u, u), series, float32_terms)
    reflected = _horner(torch.clamp(u, min=0.0), reflection)
    return torch.where(positive, reflected + tail if n % 2 else reflected - tail, tail)


def _fermi_dirac_left(w, series, float32_terms):
    """F_n(w) for w <= 0 only: s*R(s), s = softplus(w) in (0, log 2], R the power series ``series``
    (highest power first, cut for float64; float32 takes its last ``float32_terms``), as in _fermi_dirac."""
    s = F.softplus(w)
    if w.dtype != torch.float64:
        series = series[-float32_terms:]
    return s * _horner(s, series)
'''


@functools.lru_cache(maxsize=None)
def _fermi_dirac_arguments(n: int) -> str:
    """The arguments after u of the prelude's ``_fermi_dirac`` for order n: the series of
    :func:`symact.primitives.fermi_dirac_series_coefficients` cut for float64, the reflection polynomial (each as
    float literals, highest power first) and the number of series terms float32 needs.  Measured against mpmath
    for n = 2, 3 over [-1e4, 1e4]: within 3 ulps in float32 and float64, value and gradient
    (tests/test_codegen.py)."""
    series = fermi_dirac_series_coefficients(n, 53)
    reflection = fermi_dirac_reflection_polynomial(n)
    literals = ", ".join(number_literal(c) for c in reversed(series))
    polynomial = ", ".join(number_literal(c) for c in reflection)
    return f"{n}, ({literals}), ({polynomial}), {len(fermi_dirac_series_coefficients(n, 24))}"


@functools.lru_cache(maxsize=None)
def _fermi_dirac_left_arguments(n: int) -> str:
    """The arguments after w of the prelude's ``_fermi_dirac_left`` for order n: _fermi_dirac_arguments's series
    and float32 term count."""
    series = fermi_dirac_series_coefficients(n, 53)
    literals = ", ".join(number_literal(c) for c in reversed(series))
    return f"({literals}), {len(fermi_dirac_series_coefficients(n, 24))}"


def _sqrt_square_plus_helper(u: sympy.Expr) -> str:
    """The prelude helper that prints sqrt(u**2 + c): _hypot_constant where u has an exp (whose square
    overflows within an activation's input range), else _sqrt_square_plus."""
    return "_hypot_constant" if u.has(sympy.exp) else "_sqrt_square_plus"


def _square_plus_constant(base: sympy.Expr):
    """(u, c) when base is u**2 + c with c a positive number, else None.

    k*exp(a) + c (k > 0 a number) is u**2 + c with u = sqrt(k)*exp(a/2): sqrt(1 + exp(2x)) as
    hypot(exp(x), 1) is finite up to x = 88.7 in float32, as the function is, where exp(2x)
    overflows from x = 44.4 (SymPy writes exp(x)**2 as exp(2x), so no square is left to see)."""
    if not isinstance(base, sympy.Add) or len(base.args) != 2:
        return None
    constant, rest = base.as_coeff_Add()
    if not (constant.is_number and constant.is_positive):
        return None
    scale, exponential = split_numeric_factor(rest)
    if isinstance(exponential, sympy.exp) and scale.is_positive:
        return sympy.sqrt(scale) * sympy.exp(exponential.args[0] / 2), constant
    # k*prod(b_i**(2*m_i)) + c (k > 0 a number) is u**2 + c with u = sqrt(k)*prod(b_i**m_i): SymPy writes
    # (2*x)**2 as 4*x**2 and (a*x)**2 as a**2*x**2, whose squares overflowed (sqrt(4*x**2 + 1) was inf
    # from x = 9.2e18 in float32, where the value is 2x)
    root = _root_of_scaled_square(scale, exponential)
    return None if root is None else (root, constant)


def _root_of_scaled_square(scale: sympy.Expr, square: sympy.Expr) -> sympy.Expr | None:
    """``u = sqrt(scale)*prod(b_i**m_i)`` with ``u**2 == scale*square`` when ``scale`` is a positive
    number and ``square`` a product of even powers ``prod(b_i**(2*m_i))``; else None."""
    if not (scale.is_number and scale.is_positive):
        return None
    halves = []
    for factor in Mul.make_args(square):
        if not (isinstance(factor, Pow) and factor.exp.is_Integer and factor.exp > 0 and factor.exp % 2 == 0):
            return None
        halves.append(factor.base ** (factor.exp / 2))
    return sympy.sqrt(scale) * Mul(*halves)


def _root_of_square_term(term: sympy.Expr) -> sympy.Expr | None:
    """r with r**2 == term where term is k*prod(f_i), k > 0 a number and each f_i an even power b**(2*m)
    (-> b**m) or an exponential exp(a) (-> exp(a/2)); else None.  SymPy writes (x*exp(x))**2 as
    x**2*exp(2*x), so no square is left to see."""
    scale, rest = split_numeric_factor(term)
    if rest.is_number or not (scale.is_number and scale.is_positive):
        return None
    roots = []
    for factor in Mul.make_args(rest):
        if isinstance(factor, sympy.exp):
            roots.append(sympy.exp(factor.args[0] / 2))
        elif isinstance(factor, Pow) and factor.exp.is_Integer and factor.exp > 0 and factor.exp % 2 == 0:
            roots.append(factor.base ** (factor.exp / 2))
        else:
            return None
    return sympy.sqrt(scale) * Mul(*roots)


def _sum_of_squares(base: sympy.Expr) -> tuple | None:
    """(a_1, ..., a_n), n >= 2, when base is a_1**2 + ... + a_n**2 with no term a number (:func:`_root_of_square_term`
    for each), else None: sqrt(base) is then _Hypot(...(_Hypot(a_1, a_2), ...), a_n)."""
    if not isinstance(base, Add):
        return None
    roots = [_root_of_square_term(term) for term in base.args]
    return None if None in roots else tuple(roots)


def _hypot_power(base: sympy.Expr, power: sympy.Expr) -> sympy.Expr:
    """base**power (power = n/2, n odd) as _Hypot(a, b)**n for base = a**2 + b**2 (:func:`_sum_of_squares`), and
    for more terms a hypot of hypots, _Hypot(_Hypot(a, b), c)**n: each hypot is finite wherever its value is, where
    a square overflows first (the normalised root of (x + 1)/sqrt(x**2 + exp(2*x) + 1), sqrt(x**2*exp(-s) + exp(2*x
    - s) + exp(-s)), overflowed with x**2 from x = -1.8e19 in float32, -1.3e154 in float64: -0.0 for -1), and each
    rounds once (two roundings for three terms, as the sum's two additions and root)."""
    roots = _sum_of_squares(base)
    hypot = _Hypot(roots[0], roots[1])
    for root in roots[2:]:
        hypot = _Hypot(hypot, root)
    return hypot ** (2 * power)


def _scaled_sqrt_square_plus(u: sympy.Expr, constant: sympy.Expr, power: sympy.Expr) -> sympy.Expr:
    """sqrt(u**2 + c)**power as _SqrtSquarePlus, a number k > 0 of u = k*v taken outside:
    k**power*_SqrtSquarePlus(v, c/k**2)**power.  Inside, k*v overflowed where the function is finite
    (sqrt(9*x**2 + 1)/3 printed hypot(3*x, 1)/3: inf at x = 3e38 in float32, derivative NaN); outside,
    it merges with the other numbers of the product (here 1/3*3 = 1).  Only while sqrt(c)/k stays
    a normal number in float16 and far from overflow (a tiny one would be flushed to zero)."""
    scale, v = split_numeric_factor(u)
    scale = abs(scale)  # only u**2 = scale**2*v**2 is used
    if scale.is_number and scale.is_positive and scale != 1:
        ratio = sympy.sqrt(constant) / scale
        if bool(ratio >= sympy.Rational(1, 2**10)) and bool(ratio <= 2**10):
            return scale**power * _SqrtSquarePlus(v, constant / scale**2) ** power
    return _SqrtSquarePlus(u, constant) ** power


def _square_plus_ratio(u: sympy.Expr, c: sympy.Expr) -> sympy.Expr:
    """u/sqrt(u**2 + c) as _SquarePlusRatio, through _Finite(u): an input is infinite at +-inf itself
    (x/sqrt(x**2 + 1) was inf/inf = NaN there, where the limit is +-1)."""
    v = _Finite(u)
    return _SquarePlusRatio(v, _SqrtSquarePlus(v, c))


def _ratio_excess(f: sympy.Expr, u: sympy.Expr, inputs: tuple):
    """q with f = u*q where f grows faster than u (so f/sqrt(u**2 + c) = q*u/sqrt(u**2 + c) is finite where
    f overflows), else None: f = x**k for u = x**m (x an input, k > m >= 1), or f = exp(a) for u = exp(b)
    with a/b a number above 1."""
    if isinstance(u, sympy.exp):
        if isinstance(f, sympy.exp):
            ratio = sympy.simplify(f.args[0] / u.args[0])
            if ratio.is_number and ratio.is_real and bool(ratio > 1):
                return sympy.exp(f.args[0] - u.args[0])
        return None
    base, m = (u.base, u.exp) if isinstance(u, Pow) else (u, S.One)
    if base not in inputs or not (m.is_Integer and m >= 1):
        return None
    fbase, k = (f.base, f.exp) if isinstance(f, Pow) else (f, S.One)
    if fbase == base and k.is_Integer and k > m:
        return base ** (k - m)
    return None


def _split_square_plus_ratio(product: Mul, inputs: tuple) -> sympy.Expr:
    """x**k/sqrt(x**(2m) + c) with k > m (x an input) -> x**(k - m)*_SquarePlusRatio(x**m, ...): the
    derivative 2*x**3/sqrt(x**4 + 1) of sqrt(x**4 + 1) was inf at x = 1e15 in float32 (x**3 overflows;
    the value is 2e15), and NaN from 1.8e19 (x**2 overflows; inf/inf) where _Finite now makes the ratio
    1.  A ratio whose numerator is no larger (x/sqrt(x**2 + 4)) is left as it is.  The same for exp(a)
    over sqrt(k*exp(2b) + c), a > b.

    A sum over the root whose terms hold such powers is split into those terms (times the ratio) and
    the rest (over the root): (2*x**2 + 9)/(3*sqrt(x**2 + 9)), the derivative of x*sqrt(x**2/9 + 1), was
    inf from x = 2.2e19 in float32 (value 1.5e19); (2*x*exp(x) + 4*exp(x) + 1)/sqrt(4*exp(x) + 1), that
    of x*sqrt(1 + 4*exp(x)), from x = 88.7 (value 1.2e21).  The sum's condition number is the same split
    or not."""
    factors = list(Mul.make_args(product))
    for i, root in enumerate(factors):
        if not (isinstance(root, Pow) and root.exp == -1 and isinstance(root.base, _SqrtSquarePlus)):
            continue
        u, c = root.base.args
        others = factors[:i] + factors[i + 1:]
        # for u an input too (m = 1): x**2/sqrt(x**2 + 1) was inf from |x| = 1.8e19 in float32 (x**2 overflows;
        # the value is |x|), and x*(x/r) costs what x**2/r does
        direct = (isinstance(u, sympy.exp) or u in inputs
                  or (isinstance(u, Pow) and u.exp.is_Integer and u.exp >= 2))
        for j, f in enumerate(others):
            q = _ratio_excess(f, u, inputs) if direct else None
            if q is not None:
                return Mul(*others[:j], *others[j + 1:], q, _square_plus_ratio(u, c))
            # u itself over its root, bounded by 1: u/r was inf/inf = NaN where u is infinite (x/sqrt(x**2 + 1),
            # the slope of sqrt(x**2 + 1), at x = +-inf, or isru's value there), where the ratio is +-1
            if f == u and direct:
                return Mul(*others[:j], *others[j + 1:], _square_plus_ratio(u, c))
        for j, f in enumerate(others):
            if not isinstance(f, Add):
                continue
            big, small = _growing_terms(f, u, inputs, with_u=False)
            if big:
                rest = Mul(*others[:j], *others[j + 1:])
                ratio = _square_plus_ratio(u, c)
                # the rest over the ratio's own root (one hypot): 1/sqrt(u**2 + c) is below the smallest
                # normal number where u overflows, and 1/max rounds to it
                return rest * Add(*big) * ratio + rest * Add(*small) / ratio.args[1]
        smaller = _smaller_power_over_root(others, u, c, inputs)
        if smaller is not None:
            return smaller
    return product


def _smaller_power_over_root(others: list, u: sympy.Expr, c: sympy.Expr, inputs: tuple) -> sympy.Expr | None:
    """prod(others)/sqrt(u**2 + c) with u = x**m (x an input, m >= 2) and a factor x**k of others, 1 <= k < m ->
    rest*_Select(|x| > 1, x**(k - m)*(u/sqrt(u**2 + c)), x**k/sqrt(u**2 + c)), each branch with x masked into its
    region; None where there is no such factor.

    x/sqrt(x**4 + 1) printed as x/hypot(x**2, 1) was 0 from |x| = 1.8e19 in float32 (1.3e154 in float64) where
    x**2 overflows and the value is ~1/x (1e-20 at 1e20).  Beyond |x| = 1 the ratio u/sqrt(u**2 + c) is bounded
    (+-1 where u overflows, through _Finite) and x**(k - m) underflows only with the value; within, the quotient
    as it stands, whose u does not overflow (the ratio's u would underflow there: x**2 is 0 below |x| = 1e-23 in
    float32 where x/sqrt(x**4 + 1) is x)."""
    base, m = (u.base, u.exp) if isinstance(u, Pow) else (u, S.One)
    if base not in inputs or not (m.is_Integer and m >= 2):
        return None
    for j, f in enumerate(others):
        fbase, k = (f.base, f.exp) if isinstance(f, Pow) else (f, S.One)
        if fbase != base or not (k.is_Integer and 1 <= k < m):
            continue
        rest = Mul(*others[:j], *others[j + 1:])
        large = sympy.Abs(base) > 1
        outside = _Masked(base, large, S(2))
        # the inner branch is taken where ~(|x| > 1), a NaN input included, which it sees as it is
        inside = _Masked(base, sympy.Not(large, evaluate=False), S.Zero)
        return rest * _Select(large, outside ** (k - m) * _square_plus_ratio(outside ** m, c),
                              inside ** k / _SqrtSquarePlus(inside ** m, c))
    return None


def _growing_terms(total: Add, u: sympy.Expr, inputs: tuple, with_u: bool) -> tuple[list, list]:
    """(big, small): the terms of ``total`` with a factor g that grows like u (:func:`_ratio_excess`: g = u*q,
    and g = u itself where ``with_u``), each as term/g*q (its growth taken out), and the other terms."""
    big, small = [], []
    for term in total.args:
        excess = next(((g, q) for g in Mul.make_args(term)
                       for q in [S.One if with_u and g == u else _ratio_excess(g, u, inputs)] if q is not None), None)
        if excess is None:
            small.append(term)
        else:
            big.append(term / excess[0] * excess[1])
    return big, small


def _odd_root_power(f: sympy.Expr):
    """(u, c, k) when f is (u**2 + c)**(-k/2), k >= 3 odd (c > 0 a number), else None."""
    if not (isinstance(f, Pow) and f.exp.is_Rational and f.exp.q == 2 and f.exp <= -Rational(3, 2)):
        return None
    square_plus = _square_plus_constant(f.base)
    return None if square_plus is None else (*square_plus, int(-2 * f.exp))


def _over_root(factors: list, u: sympy.Expr, c: sympy.Expr, k: int, inputs: tuple) -> sympy.Expr | None:
    """prod(factors)/sqrt(u**2 + c)**k with each factor that grows like u (u itself, a larger power of it,
    or such terms of a sum) taken over one root as the bounded ratio u/sqrt(u**2 + c); None where none does."""
    for j, f in enumerate(factors):
        q = S.One if f == u else _ratio_excess(f, u, inputs)
        if q is not None:
            rest = factors[:j] + factors[j + 1:] + list(Mul.make_args(q))
            inner = _over_root(rest, u, c, k - 1, inputs) if k > 1 else None
            if inner is None:
                inner = Mul(*rest) * _SqrtSquarePlus(_Finite(u), c) ** (1 - k)
            return inner * _square_plus_ratio(u, c)
    for j, f in enumerate(factors):
        if not isinstance(f, Add):
            continue
        big, small = _growing_terms(f, u, inputs, with_u=True)
        if big:
            rest = factors[:j] + factors[j + 1:]
            root = _SqrtSquarePlus(_Finite(u), c)
            inner = (_over_root(rest + list(Mul.make_args(Add(*big))), u, c, k - 1, inputs) if k > 1 else None)
            if inner is None:
                inner = Mul(*rest, Add(*big)) * root ** (1 - k)
            return inner * _square_plus_ratio(u, c) + Mul(*rest, Add(*small)) * root ** -k
    return None


def _split_odd_root_power(product: Mul, inputs: tuple) -> sympy.Expr:
    """f/(u**2 + c)**(k/2), k >= 3 odd, with f growing like u**j (j >= 1) -> f/u**j * (u/sqrt(u**2 + c))**j over
    the rest of the root: the slope -x/(x**2 + 1)**(3/2) of 1/sqrt(x**2 + 1) was inf/inf = NaN at x = +-inf
    (limit 0), and x*(x**2 + 2)/(x**2 + 1)**(3/2), that of x**2/sqrt(x**2 + 1), NaN from |x| ~ 1e13 in
    float32 (1e103 in float64) where it is +-1.  The root is a hypot of u (_Finite: 0 beyond, not NaN).
    A product with no such factor is left as it is."""
    factors = list(Mul.make_args(product))
    for i, f in enumerate(factors):
        found = _odd_root_power(f)
        if found is None:
            continue
        u, c, k = found
        scale, v = split_numeric_factor(u)  # (4*x**2 + 9)**(-3/2) = (x**2 + 9/4)**(-3/2)/8: x over its own root
        scale = abs(scale)
        split = _over_root(factors[:i] + factors[i + 1:], v, c / scale**2, k, inputs)
        if split is not None:
            return scale**-k * split
    return product


def _log1p_of_square(arg: sympy.Expr):
    """log1p(k*u**(2*m)) (k > 0 a number) as log1p(v**2) for |v| <= 1 and 2*log(hypot(v, 1)) beyond, with
    v = sqrt(k)*u**m, else None.  log1p(x**2) was inf from |x| = 1.8e19 in float32 (x**2 overflows) where
    the value is 89 to 177; the hypot form alone would lose log1p's relative accuracy near 0 (hypot(x, 1)
    rounds to 1 below |x| = 2.4e-4).  Beyond |v| = 1 the value is at least log(2): no cancellation.  Finite
    while v is (for k > 1 that is below the largest float by sqrt(k)).
    Each branch sees v masked into its own region (the double-where rule)."""
    scale, rest = split_numeric_factor(arg)
    v = None if rest.is_number else _root_of_scaled_square(scale, rest)
    if v is None:
        return None
    large = sympy.Abs(v) > 1
    # the small branch is taken where ~(|v| > 1), a NaN input included, and sees v itself there (a
    # NaN stays NaN: masked with |v| <= 1 instead, it would be replaced by the point)
    not_large = sympy.Not(large, evaluate=False)
    # v = s*w with a number s > 1: hypot(s*w, 1) overflowed with s*w (log(1 + 4*x**2) was inf from
    # |x| = 1.7e38 in float32, value 178), s*hypot(w, 1/s) does not, and its log is log(s) + log(hypot(w,
    # 1/s)); the sum is at least log(2) for |v| > 1, so the rounding of log(s) costs at most
    # 4*log2(s) - 1 ulps there (s <= 2**4 only)
    s, w = split_numeric_factor(v)
    if s.is_number and s > 1 and s <= 16:
        large_value = 2 * sympy.log(s) + 2 * sympy.log(_SqrtSquarePlus(_Masked(w, large, 2 / s), 1 / s**2))
    else:
        large_value = 2 * sympy.log(_SqrtSquarePlus(_Masked(v, large, S(2)), S.One))
    return _Select(large, large_value, Log1p(_Masked(v, not_large, S.Zero) ** 2))


def _count(expr: sympy.Expr, symbol: sympy.Symbol) -> int:
    if expr == symbol:
        return 1
    return sum(_count(a, symbol) for a in expr.args)
