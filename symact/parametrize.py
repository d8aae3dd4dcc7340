"""Parameter activations ("autoactivation"): a weight is stored as W and used as A = g(W).

SymPy only.  Given g, this module derives exactly

* ``derivative``              dA/dW = g'(W), in W;
* ``inverse``                 W = g^{-1}(A) on a stated domain and branch;
* ``derivative_in_A``         g'(g^{-1}(A)), the seed table's third column;
* ``effective_learning_rate`` r(A) = g'(g^{-1}(A))**2.  One gradient step of size lr on W moves A by
                              dA = -lr * r(A) * dL/dA + O(lr**2)   (chain rule twice: dL/dW = g' dL/dA,
                              dA = g' dW);
* ``mirror_map``              psi with psi''(A) = 1/r(A): gradient flow on W is mirror descent on A with
                              potential psi (psi''(A) dA/dt = -dL/dA).  exp(W) gives Burg entropy -log A,
                              W**2 gives (A log A - A)/4, the unnormalised relative entropy of
                              exponentiated gradient (at 4 times the step size).

Normalisation of the mirror map: psi is fixed only up to an affine term c0 + c1*A, which changes neither
psi'' nor any Bregman divergence.  We return SymPy's iterated antiderivative with both constants of
integration zero (``integrate(integrate(1/r, A), A)``), which gives exactly -log(A) for exp(W) and
A*log(A)/4 - A/4 for W**2.  Where the inverse is not a simple closed form (nested radicals: Cardano's
formula for W + W**3, on which integrating in A ran for minutes; LambertW), psi is integrated in W instead:
with A = g(W), psi'(A) = F(W) = integral dW / g'(W) and psi = A*F(W) - integral g(W)/g'(W) dW at
W = g^{-1}(A) (constant terms of F and of the result dropped).  The route is chosen from the inverse alone,
before integrating, so the result does not depend on call order or machine load; no time limit is used.
Where the chosen route finds no elementary antiderivative (Ei, polylog, an unevaluated Integral, ...) ``mirror_map`` is None and
``mirror_map_note`` says why.

Domain and branch.  With ``domain=None`` the domain is chosen in this order, and stated in ``.domain`` and
``.branch``:

1. the whole real line, if g is real there and ``Eq(A, g)`` has exactly one real solution (odd roots read
   as real roots: W**3 - 1 gets W = sign(A + 1)*|A + 1|**(1/3));
2. the real line (minus 0 where g is singular there), if g is odd and has one sign on W > 0: the inverse is
   the odd extension W = sign(A) * h(|A|) of the inverse h found on W > 0 (W**3, powerpropagation, 1/W);
   where that sign depends on a parameter of unknown sign (s*W*Abs(W)), it is g's sign at the parameters'
   values, and so is the root h where SymPy's solve gives several (here and in rule 3);
3. the positive half-line W > 0 (log W, W**2: the positive branch W = sqrt(A); W*exp(W), which turns at
   W = -1, gets W = LambertW(A) there).

One solution from SymPy's solve is not taken as proof of injectivity: each candidate must also have g'
of one sign on the domain and satisfy g^{-1}(g(W)) = W, with g'(g^{-1}(A)) = g'(W), at sample points there
(30-digit evaluation; evidence, not proof).  Odd roots of a base that can be negative are real roots
(log(W)**3 on W > 0: W = exp(sign(A)*|A|**(1/3)), not the complex principal root).

A cubic that turns (W**3 - 3*W) is inverted on a monotone piece through its roots in real form,
2*cos(acos(A/2)/3) for |A| <= 2 and 2*cosh(acosh(A/2)/3) beyond (W**3 - 3*W on W > 1), where Cardano's
formula is complex (three real roots).

``domain="real"``, ``domain="positive"`` or an interval of W (``domain=(-1, sympy.oo)``) forces a choice; :class:`~symact.errors.NoInverseError` is raised
(when an A-side attribute is read) if g has no unique closed-form inverse there.

>>> import symact
>>> pa = symact.parameter_activation("exp(W)")
>>> pa.derivative_in_A, pa.effective_learning_rate, pa.mirror_map
(A, A**2, -log(A))
>>> symact.parameter_activation("log(W)").derivative_in_A
exp(-A)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import sympy as sp
from sympy.core.function import AppliedUndef
from tokenize import TokenError
from types import MappingProxyType

from ._safe_parse import safe_number, safe_parse
from .errors import DomainError, FormulaError, NoInverseError, UnknownSymbolError, python_number

__all__ = [
    "ParameterActivation",
    "SignedParametrization",
    "AutoactivationTable",
    "parameter_activation",
    "signed_parametrization",
    "autoactivation_table",
    "parameter_activation_names",
    "SEED_TABLE_ROWS",
    "EXTRA_TABLE_ROWS",
]

#: The weight symbol every parameter activation is written in, and the activated-parameter symbol name.
W = sp.Symbol("W", real=True)

# Named parameter activations: name -> (formula in W, parameter defaults).
_NAMED: dict[str, tuple[str, dict[str, Any]]] = {
    "identity": ("W", {}),
    "exp": ("exp(W)", {}),
    "square": ("W**2", {}),
    "log": ("log(W)", {}),
    "reciprocal": ("1/W", {}),
    "exp_exp": ("exp(exp(W))", {}),
    "cube": ("W**3", {}),
    "softplus": ("log(1 + exp(W))", {}),
    # Powerpropagation (Schwarz et al. 2021): w = v * |v|**(alpha - 1).
    "powerprop": ("W*Abs(W)**(alpha - 1)", {"alpha": 2}),
}

#: The seven rows of the seed's table, in its order.
SEED_TABLE_ROWS = ("identity", "exp", "square", "log", "reciprocal", "exp_exp", "cube")
#: Rows the issue adds to the seed's table.
EXTRA_TABLE_ROWS = ("softplus", "powerprop")

# Functions an antiderivative may contain and still count as elementary.
_ELEMENTARY = (
    sp.exp, sp.log, sp.Abs, sp.sign, sp.Piecewise,
    sp.sin, sp.cos, sp.tan, sp.cot, sp.asin, sp.acos, sp.atan, sp.acot,
    sp.sinh, sp.cosh, sp.tanh, sp.coth, sp.asinh, sp.acosh, sp.atanh, sp.acoth,
)


def parameter_activation_names() -> list[str]:
    """Names accepted by :func:`parameter_activation` besides formulas."""
    return list(_NAMED)


def _is_elementary(expr: sp.Expr) -> bool:
    if expr.has(sp.Integral):
        return False
    return all(isinstance(f, _ELEMENTARY) for f in expr.atoms(sp.Function))


def _has_imaginary(expr: sp.Expr) -> bool:
    return expr.has(sp.I) or expr.has(sp.nan) or expr.has(sp.zoo)


@dataclass(frozen=True)
class _InverseResult:
    domain: sp.Set
    inverse: sp.Expr          # in A
    A: sp.Symbol
    branch: str
    derivative_in_A: sp.Expr  # g'(g^{-1}(A)), simplified
    odd_extension: bool


@dataclass(frozen=True, eq=False)
class ParameterActivation:
    """A parameter activation A = g(W) with its derived formulas (all SymPy expressions, computed lazily).

    Attributes: ``name``, ``g`` (in ``W``), ``params`` (dict parameter Symbol -> default value),
    ``requested_domain`` ("real", "positive", an Interval of W, or None = automatic).  Derived (cached) attributes:
    ``derivative``, ``domain``, ``range``, ``branch``, ``inverse``, ``A``, ``derivative_in_A``,
    ``effective_learning_rate``, ``mirror_map``.  Expressions keep the parameters symbolic; use
    :meth:`concrete` to substitute their values.

    >>> pa = parameter_activation("W**2")
    >>> pa.domain, pa.branch
    (Interval.open(0, oo), 'W = sqrt(A) (the positive branch, W > 0)')
    >>> pa.derivative_in_A, pa.mirror_map
    (2*sqrt(A), A*(log(A) - 1)/4)
    """

    name: str
    g: sp.Expr
    params: Mapping[sp.Symbol, sp.Expr] = field(default_factory=dict)
    requested_domain: str | None = None

    W = W  # class attribute: the weight symbol (real)

    # A value, like Activation: copies are the object itself, pickle stores params as a dict.
    def __reduce__(self):
        return (type(self), (self.name, self.g, dict(self.params), self.requested_domain))

    def __copy__(self) -> "ParameterActivation":
        return self

    def __deepcopy__(self, memo: dict) -> "ParameterActivation":
        return self

    # ---------------------------------------------------------------- W side
    @functools.cached_property
    def derivative(self) -> sp.Expr:
        """dA/dW = g'(W), in W (for odd g written through the even function g'(|W|) where that is simpler)."""
        plain = sp.simplify(sp.diff(self.g, W))
        if sp.simplify(self.g.subs(W, -W) + self.g) == 0:
            wp = sp.Symbol("W", positive=True)
            even = sp.simplify(sp.diff(self.g.subs(W, wp), wp)).subs(wp, sp.Abs(W))
            if sp.count_ops(even) < sp.count_ops(plain):
                return even
        return plain

    # ---------------------------------------------------------------- inverse
    @functools.cached_property
    def _inverse(self) -> _InverseResult | NoInverseError:
        try:
            return _find_inverse(self.g, self.requested_domain, self.params)
        except NoInverseError as err:  # cached so repeated reads are cheap; re-raised by the accessors
            return err

    def _inv(self) -> _InverseResult:
        result = self._inverse
        if isinstance(result, NoInverseError):
            raise NoInverseError(f"{self.name}: {result}")
        return result

    @property
    def domain(self) -> sp.Set:
        """The set of W on which the inverse (and everything in A) is valid."""
        return self._inv().domain

    @property
    def A(self) -> sp.Symbol:
        """The activated-parameter symbol; its assumptions (positive, real, nonzero) follow g's range."""
        return self._inv().A

    @property
    def inverse(self) -> sp.Expr:
        """W = g^{-1}(A) on :attr:`domain`, in :attr:`A`."""
        return self._inv().inverse

    @property
    def branch(self) -> str:
        """Which inverse branch was taken, and why, in words."""
        return self._inv().branch

    @functools.cached_property
    def range(self) -> sp.Set | None:
        """g(domain), or None where SymPy cannot compute it."""
        return _range_at(self.g, self._inv().domain)

    @property
    def derivative_in_A(self) -> sp.Expr:
        """dA/dW written in A: g'(g^{-1}(A))."""
        return self._inv().derivative_in_A

    @functools.cached_property
    def effective_learning_rate(self) -> sp.Expr:
        """r(A) = g'(g^{-1}(A))**2: gradient descent on W moves A by -lr * r(A) * dL/dA + O(lr**2)."""
        square = self.derivative_in_A**2
        return min((sp.expand(square), sp.simplify(square), sp.powsimp(square)), key=sp.count_ops)

    @functools.cached_property
    def _mirror(self) -> tuple[sp.Expr | None, str]:
        """(psi, how it was found or why there is none)."""
        inv = self._inv()
        values = dict(self.params)
        # A parameter of unknown sign (a real symbol s) hides the sign of Abs(A/s) and the like from the
        # integrator: s*W**3 at s = -1, r = 9*s**2*Abs(A/s)**(4/3), had no mirror map.  The inverse was chosen
        # at the parameters' values, so psi is too: s = sign(value)*q with q > 0 while integrating.
        signs = {p: sp.sign(v) for p, v in values.items() if p.is_positive is None and v.is_nonzero}
        if signs:
            q = {p: sp.Dummy(p.name, positive=True) for p in signs}
            to_q = {p: signs[p] * q[p] for p in signs}
            back = {q[p]: signs[p] * p for p in signs}
            psi, how = self._mirror_with(inv, self.effective_learning_rate.xreplace(to_q), self.g.xreplace(to_q),
                                         inv.inverse.xreplace(to_q),
                                         {q.get(p, p): abs(v) if p in q else v for p, v in values.items()})
            if psi is not None:
                psi = psi.xreplace(back)
                simpler = sp.simplify(psi)
                psi = min((psi, simpler), key=lambda e: (e.has(sp.Piecewise) and not psi.has(sp.Piecewise),
                                                         sp.count_ops(e)))
                return (psi,
                        how + "; the parameters' signs taken at their values ("
                        + ", ".join(f"{p} {'> 0' if signs[p] > 0 else '< 0'}" for p in signs) + ")")
            return psi, how
        return self._mirror_with(inv, self.effective_learning_rate, self.g, inv.inverse, values)

    def _mirror_with(self, inv: _InverseResult, r: sp.Expr, g: sp.Expr, inverse: sp.Expr,
                     values: Mapping[sp.Symbol, sp.Expr]) -> tuple[sp.Expr | None, str]:
        """psi for r, g and the inverse given (the parameters possibly replaced by symbols of known sign)."""
        # The range of A at the parameters' values: where psi is checked real and logs are made real
        # (self.range keeps the parameters symbolic, and is often None or has symbolic ends then).
        rng = self.range if not values else _range_at(self.concrete(self.g), inv.domain)
        rng = rng if isinstance(rng, sp.Interval) and all(e.is_number for e in (rng.inf, rng.sup)) else None
        if inv.odd_extension:
            # r is even in A; compute psi on A > 0 and extend evenly, psi(A) = psi_+(|A|).
            a_pos = sp.Dummy("a", positive=True)
            positive = rng.intersect(sp.Interval.open(0, sp.oo)) if rng is not None else sp.Interval.open(0, sp.oo)
            positive = positive if isinstance(positive, sp.Interval) else None
            wp = sp.Symbol("W", positive=True)
            psi, how = _mirror_map(1 / r.subs(inv.A, a_pos), a_pos, positive, g.subs(W, wp), wp,
                                   inverse.subs(inv.A, a_pos), sp.Interval.open(0, sp.oo), values)
            return (None if psi is None else psi.subs(a_pos, sp.Abs(inv.A))), how
        return _mirror_map(1 / r, inv.A, rng, g, W, inverse, inv.domain, values)

    @property
    def mirror_map(self) -> sp.Expr | None:
        """psi(A) with psi'' = 1/r(A), up to an affine term; None if no elementary closed form was found
        (:attr:`mirror_map_note` says why).  See the module doc for the normalisation.

        psi is real on the range of A: a logarithm that SymPy's antiderivative writes as log(A - 1) on
        0 < A < 1 is taken as log(1 - A) (they differ by the constant i*pi, an affine change of psi).
        """
        return self._mirror[0]

    @property
    def mirror_map_note(self) -> str:
        """How :attr:`mirror_map` was derived, or why it is None (not elementary, or not found in time)."""
        return self._mirror[1]

    # ---------------------------------------------------------------- parameters
    def concrete(self, expr: sp.Expr) -> sp.Expr:
        """``expr`` with every parameter replaced by its value."""
        return expr.subs(dict(self.params)) if self.params else expr

    def with_params(self, **params: Any) -> "ParameterActivation":
        """New parameter defaults, the parameters staying symbols in ``g`` (as ``Activation.with_params``).

        >>> pp = parameter_activation("powerprop").with_params(alpha=3)
        >>> pp.g, dict(pp.params)
        (W*Abs(W)**(alpha - 1), {alpha: 3})
        """
        values = {symbol: _param_value(key, params[key]) for symbol, key in self._parameters_named(params)}
        # The parameter's symbol follows its value, as when built (positive for a positive value, else
        # real): b*exp(W) built with b = 2 and moved to b = -2 kept a positive b, so A was a positive
        # symbol and range was (0, oo) for A = -2*exp(W) < 0.
        renames = {s: _param_symbol(s.name, v) for s, v in values.items() if _param_symbol(s.name, v) != s}
        new = {renames.get(s, s): values.get(s, v) for s, v in self.params.items()}
        g = self.g.xreplace(renames) if renames else self.g
        return ParameterActivation(self.name, g, MappingProxyType(new), self.requested_domain)

    def subs(self, **values: Any) -> "ParameterActivation":
        """Substitute parameters by values in ``g``: they stop being parameters (as ``Activation.subs``).

        A parameter named with ``None`` is substituted by its current default.

        >>> pp = parameter_activation("powerprop").subs(alpha=3)
        >>> pp.g, dict(pp.params)
        (W**3, {})
        """
        new = dict(self.params)
        replacements = {}
        for symbol, key in self._parameters_named(values):
            default = new.pop(symbol)
            replacements[symbol] = default if values[key] is None else _param_value(key, values[key])
        return ParameterActivation(self.name, self.g.xreplace(replacements), MappingProxyType(new),
                                   self.requested_domain)

    def _parameters_named(self, names: Any) -> list:
        """(Symbol, name) for each name, or UnknownSymbolError naming the parameters there are."""
        by_name = {s.name: s for s in self.params}
        unknown = sorted(set(names) - set(by_name))
        if unknown:
            raise UnknownSymbolError(
                f"{self.name} has no parameter(s) {unknown}; its parameters are {sorted(by_name)}."
            )
        return [(by_name[key], key) for key in names]

    # ---------------------------------------------------------------- display
    def __repr__(self) -> str:
        pars = "".join(f", {s}={v}" for s, v in self.params.items())
        dom = "" if self.requested_domain is None else f", domain={self.requested_domain!r}"
        return f"ParameterActivation({self.name!r}, A = {self.g}{pars}{dom})"

    def _repr_latex_(self) -> str:
        text = rf"A = {sp.latex(self.g)},\quad \frac{{\partial A}}{{\partial W}} = {sp.latex(self.derivative)}"
        try:
            text += rf" = {sp.latex(self.derivative_in_A)}"
        except NoInverseError:
            pass
        return f"$\\displaystyle {text}$"


def _nested_radical(expr: sp.Expr) -> bool:
    """Whether expr has a root of a sum that itself contains a root (Cardano's formula for W + W**3):
    SymPy's integrate in A on such an inverse can run for minutes and then fail."""
    def is_root(e: sp.Basic) -> bool:
        return e.is_Pow and not e.exp.is_integer
    return any(is_root(e) and any(is_root(f) for f in sp.preorder_traversal(e.base) if f is not e.base)
               for e in sp.preorder_traversal(expr))


def _hard_inverse(inv: sp.Expr) -> str | None:
    """What makes integrating in A over ``inv`` risky (nested radicals, LambertW, a cubic's root in
    trigonometric form), or None."""
    if _nested_radical(inv):
        return "nested radicals"
    if inv.has(sp.LambertW):
        return "LambertW"
    if any(isinstance(e, (sp.cos, sp.cosh)) and e.has(sp.acos, sp.acosh) for e in sp.preorder_traversal(inv)):
        return "a cubic's root in trigonometric form"
    return None


def _mirror_map(f: sp.Expr, a: sp.Symbol, a_interval: sp.Interval | None, g: sp.Expr, w: sp.Symbol,
                inv: sp.Expr, w_domain: sp.Set, values: Mapping[sp.Symbol, sp.Expr] | None = None
                ) -> tuple[sp.Expr | None, str]:
    """psi with psi'' = f = 1/r: integrated in A, or (when that is not elementary, too slow or risky) in W.

    In W: with A = g(W), psi'(A) = integral dA/g'(W)**2 = integral dW/g'(W) =: F(W), and integrating
    psi'(A) dA = F(W) g'(W) dW by parts, psi = A*F(W) - integral g(W)/g'(W) dW, at W = g^{-1}(A).  Both
    integrands are in W only, so no integral of the inverse is needed.

    ``values``: the parameters' values, at which psi is checked real on ``a_interval`` (the range of A at
    these values) and its logarithms made real."""
    # Which route is decided up front, from the inverse alone, so that the result does not depend on
    # SymPy's cache, on hash order or on the machine's load (no time limit is needed or used).  Where the
    # inverse is an ordinary closed form, the A route is SymPy's full integrate; the W route computes the
    # same antiderivatives after the substitution W = g^{-1}(A), so when the A route finds none the W
    # route is not tried (it hung under some hash seeds: risch_integrate on log(1 + e^W)*(1 + e^-W) for
    # softplus).  Where the inverse is not simple (nested radicals: Cardano's formula for W + W**3, on
    # which integrate in A ran for minutes; LambertW), only the W route is tried.
    notes = []
    hard = _hard_inverse(inv)
    if hard is None:
        psi = _double_antiderivative(f, a, a_interval, values)
        if psi is not None:
            return psi, "integrated twice in A, both constants of integration zero"
        notes.append("the antiderivative in A is not elementary (SymPy's integrate finds none)")
    else:
        psi = _mirror_map_in_w(g, w, inv, a, w_domain, a_interval, values)
        if psi is not None:
            return psi, ("integrated in W: psi = A*F(W) - integral(g/g', W) at W = g^{-1}(A), "
                         "F = integral(1/g', W), constants of integration zero, constant terms dropped")
        notes.append(f"not integrated in A (the inverse {inv} has {hard}); "
                     "the antiderivatives in W (of 1/g' and g/g') are not elementary either")
    return None, "no elementary mirror map found: " + "; ".join(notes)


def _mirror_map_in_w(g: sp.Expr, w: sp.Symbol, inv: sp.Expr, a: sp.Symbol, w_domain: sp.Set,
                     a_interval: sp.Interval | None, values: Mapping[sp.Symbol, sp.Expr] | None = None
                     ) -> sp.Expr | None:
    """psi(A) = A*F(W) - integral g/g' dW at W = inv(A) (see :func:`_mirror_map`), or None."""
    dg = sp.diff(g, w)
    w_samples = [t for t in (sp.Rational(-7, 3), sp.Rational(-1, 3), sp.Rational(1, 3), sp.Rational(7, 2))
                 if w_domain.contains(t) is sp.true]
    parts = []
    for integrand in (sp.simplify(1 / dg), sp.simplify(g / dg)):
        part = sp.integrate(integrand, w)
        if not _is_elementary(part) or _has_imaginary(part):
            return None
        part = _real_logs(part, w, w_samples, values)
        # A constant term of F adds c*A to psi, one of G a constant: the affine freedom; drop them.
        parts.append(sp.Add(*[t for t in sp.Add.make_args(sp.expand(part)) if t.has(w)]))
    F, G = (sp.factor_terms(part) for part in parts)
    psi = a * F.subs(w, inv) - G.subs(w, inv)
    psi = sp.Add(*[t for t in sp.Add.make_args(psi) if t.has(a)])
    for point in _interior_samples(a_interval):
        value = sp.N(psi.subs(a, point).subs(values or {}), 30)
        if value.is_number and (not value.is_finite or abs(sp.im(value)) > 1e-25):
            return None
    return psi


def _double_antiderivative(f: sp.Expr, a: sp.Symbol, interval: sp.Interval | None = None,
                           values: Mapping[sp.Symbol, sp.Expr] | None = None) -> sp.Expr | None:
    """integrate(integrate(f, a), a), real on ``interval`` (the range of A), or None if not elementary."""
    samples = _interior_samples(interval)
    roots = [e.exp.q for e in f.atoms(sp.Pow) if e.base == a and e.exp.is_Rational and not e.exp.is_integer]
    if roots and a.is_positive:
        # A**(p/q) in f (odd powers of an inverse: tanh(W)**3 gives 1/(9*A**(4/3)*(1 - A**(2/3))**2)):
        # A = t**q makes both integrands rational in t, where integrate on the roots ran for minutes
        q = functools.reduce(lambda m, n: m * n // math.gcd(m, n), roots)
        t = sp.Dummy("t", positive=True)
        jacobian = q * t ** (q - 1)
        t_samples = [sp.Pow(point, sp.Rational(1, q)) for point in samples]
        first = sp.integrate(sp.expand(f.subs(a, t**q) * jacobian), t)
        if not _is_elementary(first):
            return None
        first = _real_logs(first, t, t_samples, values)
        second = sp.integrate(sp.expand(first * jacobian), t)
        if not _is_elementary(second) or _has_imaginary(second):
            return None
        second = _real_logs(second, t, t_samples, values).subs(t, a ** sp.Rational(1, q))
    else:
        first = sp.integrate(f, a)
        if not _is_elementary(first):
            return None
        first = _real_logs(first, a, samples, values)
        second = sp.integrate(first, a)
        if not _is_elementary(second) or _has_imaginary(second):
            return None
        second = _real_logs(second, a, samples, values)
    simpler = sp.simplify(second)
    # simplify may merge logs into log(A**(2*A - 1)): keep the sum of logs then.
    if any(isinstance(lg.args[0], sp.Pow) and lg.args[0].exp.has(a) for lg in simpler.atoms(sp.log)):
        simpler = sp.factor_terms(sp.expand(second))
    for point in samples:
        value = sp.N(simpler.subs(a, point).subs(values or {}), 30)
        if not value.is_number:
            continue  # symbolic parameters: undecided here
        if not value.is_finite or abs(sp.im(value)) > 1e-25:
            return None  # not real on the range: no real potential from this antiderivative
    return simpler


def _range_at(g: sp.Expr, domain: sp.Set) -> sp.Set | None:
    """g(domain) (each piece of a union of intervals), or None.

    SymPy's function_range first; where it fails (W/(1 + Abs(W))) or gives an empty set for a non-empty
    domain (2**W on the real line: EmptySet), the range of g, which is monotone and continuous on each
    piece of its inversion domain, is the interval between its limits at the piece's ends (g without
    symbolic parameters only)."""
    from sympy.calculus.util import function_range

    pieces = domain.args if isinstance(domain, sp.Union) else (domain,)
    parts = []
    for piece in pieces:
        try:
            part = function_range(g, W, piece)
        except (NotImplementedError, ValueError, TypeError):
            part = None
        if part is None or part.is_empty or not isinstance(part, (sp.Interval, sp.Union)):
            part = _monotone_range(g, piece)
        if part is None:
            return None
        parts.append(part)
        parts.extend(_removable_values(g, piece))
    return sp.Union(*parts)


def _removable_values(g: sp.Expr, piece: sp.Set) -> list[sp.Set]:
    """{g's limit} at each point of ``piece`` where SymPy finds g undefined (0/0) but both one-sided limits
    agree and are finite.  function_range leaves such points out: powerprop at alpha = 1/2, W/sqrt(|W|), had
    the range A != 0 although g(0) = 0 is its value at W = 0 (the limit, which the code generator computes)."""
    from sympy.calculus.util import continuous_domain

    if g.free_symbols - {W}:
        return []
    try:
        holes = piece - continuous_domain(g, W, piece)
    except (NotImplementedError, ValueError, TypeError):
        return []
    if not isinstance(holes, sp.FiniteSet):
        return []
    values = []
    for point in holes:
        if g.subs(W, point) is not sp.nan:
            continue   # a pole (1/W: zoo), not a removable point
        try:
            sides = {sp.limit(g, W, point, side) for side in ("+", "-")}
        except (NotImplementedError, ValueError, TypeError):
            continue
        if len(sides) == 1 and (value := sides.pop()).is_real and value.is_finite:
            values.append(sp.FiniteSet(value))
    return values


def _monotone_range(g: sp.Expr, piece: sp.Set) -> sp.Interval | None:
    """The image of the interval ``piece`` under a g monotone and continuous there: between its one-sided
    limits at the ends (or its values at closed ends); None where a limit is unknown or symbolic, where
    g is not continuous on the piece, or where g at points inside the piece falls outside the result
    (SymPy's limit of 2**W at -oo is oo; through exp(W*log(2)) it is 0)."""
    from sympy.calculus.util import continuous_domain

    if not isinstance(piece, sp.Interval) or g.free_symbols - {W}:
        return None
    try:
        if continuous_domain(g, W, piece) != piece:
            return None   # a pole inside (1/W on (-2, 1)): not one interval
    except (NotImplementedError, ValueError, TypeError):
        pass              # sign, erf: unknown to SymPy; the sample check below stands in
    samples = [_numeric(g.subs(W, t)) for t in _interior_samples(piece)]
    for form in dict.fromkeys((g, g.rewrite(sp.exp))):
        ends = []
        for end, side, closed in ((piece.inf, "+", not piece.left_open), (piece.sup, "-", not piece.right_open)):
            closed = bool(closed and end.is_finite)
            try:
                value = form.subs(W, end) if closed else sp.limit(form, W, end, side) if end.is_finite else \
                    sp.limit(form, W, end)
            except (NotImplementedError, ValueError, TypeError):
                value = None
            if value is None or not (value in (sp.oo, -sp.oo) or (value.is_real and value.is_comparable)):
                ends = None
                break
            ends.append((value, closed))
        if ends is None or ends[0][0] == ends[1][0]:
            continue
        (left, left_closed), (right, right_closed) = sorted(ends, key=lambda e: e[0])
        result = sp.Interval(left, right, not left_closed, not right_closed)
        if all(v is not None and v is not sp.nan and result.contains(v) is sp.true for v in samples):
            return result
    return None


def _interior_samples(interval: sp.Interval | None) -> list[sp.Expr]:
    """A few points inside ``interval`` (rational, exact), or [] when it is unknown."""
    if interval is None or interval.is_empty:
        return []
    lo, hi = interval.inf, interval.sup
    if lo.is_finite and hi.is_finite:
        return [lo + (hi - lo) * t for t in (sp.Rational(1, 7), sp.Rational(1, 2), sp.Rational(6, 7))]
    if lo.is_finite:
        return [lo + t for t in (sp.Rational(1, 7), 1, 7)]
    if hi.is_finite:
        return [hi - t for t in (sp.Rational(1, 7), 1, 7)]
    return [sp.Rational(-7, 3), sp.Rational(1, 3), sp.Rational(7, 2)]


def _real_logs(expr: sp.Expr, a: sp.Symbol, samples: list[sp.Expr],
               values: Mapping[sp.Symbol, sp.Expr] | None = None) -> sp.Expr:
    """Replace log(u) by log(-u) where u < 0 at every sample point (a change by the constant i*pi), the
    parameters at ``values``."""
    if not samples:
        return expr
    swaps = {}
    for lg in expr.atoms(sp.log):
        u = lg.args[0]
        if not u.has(a):
            continue
        at = [sp.N(u.subs(a, p).subs(values or {}), 30) for p in samples]
        if all(v.is_number and v.is_real and v < 0 for v in at):
            swaps[lg] = sp.log(sp.expand(-u))
    return expr.xreplace(swaps) if swaps else expr


def _a_symbol(sign_expr: sp.Expr, nonzero: bool = False) -> sp.Symbol:
    if sign_expr.is_positive:
        return sp.Symbol("A", positive=True)
    if sign_expr.is_negative:
        return sp.Symbol("A", negative=True)
    return sp.Symbol("A", real=True, nonzero=True) if nonzero else sp.Symbol("A", real=True)


def _real_on_range(s: sp.Expr, a: sp.Symbol, g_dom: sp.Expr, w: sp.Symbol,
                   values: Mapping[sp.Symbol, sp.Expr] | None = None) -> bool:
    """Whether s(A) is provably real for every A in g(domain) (a half-line range is tested as lo + P, P > 0).

    ``values``: the parameters' values.  Where s is not real for every value of the parameters, the range
    and the sample points are those of g at these values (as for the other numeric checks); a comparison
    on an unevaluated symbolic number used to raise a raw TypeError (softplus(b*W)/b)."""
    if s.is_real:
        return True
    from sympy.calculus.util import function_range

    if values:
        s, g_dom = s.subs(values), g_dom.subs(values)
        if s.is_real:
            return True

    try:
        rng = function_range(g_dom, w, sp.S.Reals if not w.is_positive else sp.Interval.open(0, sp.oo))
    except (NotImplementedError, ValueError, TypeError):
        return False
    if not isinstance(rng, sp.Interval):
        return False
    p = sp.Dummy("p", positive=True)
    lo, hi = rng.inf, rng.sup
    if lo.is_finite and hi is sp.oo and s.subs(a, lo + p).is_real:
        return True
    # Otherwise: real at sample points spread over the range (evidence, not proof; g itself is real there).
    if lo.is_finite and hi.is_finite:
        samples = [lo + (hi - lo) * t for t in (sp.Rational(1, 10), sp.Rational(1, 2), sp.Rational(9, 10))]
    elif lo.is_finite:
        samples = [lo + t for t in (sp.Rational(1, 100), 1, 10, 100)]
    elif hi.is_finite:
        samples = [hi - t for t in (sp.Rational(1, 100), 1, 10, 100)]
    else:
        samples = [-100, -1, 0, 1, 100]
    for x in samples:
        value = sp.N(s.subs(a, x), 30)
        if not value.is_number:
            return False  # symbolic: not decided, so not shown real
        if not value.is_finite or abs(sp.im(value)) > 1e-25:
            return False
    return True


class _Solutions(list):
    """The real solutions kept, with ``found``: how many solutions SymPy's solve returned before filtering."""

    found: int = 0


def _solve_for(a: sp.Expr, g: sp.Expr, w: sp.Symbol) -> list:
    """Solutions W of A = g(W), as SymPy's solve gives them, but with g = h(W)**p solved in two
    steps: u**p = A for u, then h(W) = u for W (real values of u only).  solve on A = tanh(W)**3
    as a whole ran for minutes; the two steps take milliseconds."""
    def composite_power(e: sp.Expr) -> bool:
        return e.is_Pow and e.exp.is_number and e.base != w and e.base.has(w)

    if g.is_Add or g.is_Mul:  # c + h(W)**p and c*h(W)**p: A - c or A/c = h(W)**p
        constant, rest = g.as_independent(w, as_Add=g.is_Add)
        if composite_power(rest) or (rest.is_Mul and composite_power(rest.as_independent(w)[1])):
            return _solve_for(a - constant if g.is_Add else a / constant, rest, w)
    if composite_power(g):
        u = sp.Dummy("u")
        solutions = []
        for outer in sp.solve(sp.Eq(a, u**g.exp), u):
            if not _has_imaginary(outer):
                solutions.extend(_solve_for(outer, g.base, w))
        return solutions
    return sp.solve(sp.Eq(a, g), w)


def _real_solutions(g_dom: sp.Expr, w: sp.Symbol, a: sp.Symbol, strict: bool,
                    real_roots: bool = False, values: Mapping[sp.Symbol, sp.Expr] | None = None) -> _Solutions | None:
    """Solutions W(A) of A = g(W) that are real for A of a's assumptions (None if solve gives up).

    ``strict``: require provable realness on the whole range of g (used on the real line, where solve
    also returns complex roots); otherwise only drop solutions that are explicitly complex.  With
    ``real_roots`` a solution whose odd roots are principal (complex) roots is also tried with real roots
    (W**3 - 1: (A + 1)**(1/3) is complex for A < -1, sign(A + 1)*|A + 1|**(1/3) is the real inverse)."""
    try:
        sols = _solve_for(a, g_dom, w)
    except (NotImplementedError, ValueError, TypeError):
        return None
    keep = _Solutions()
    keep.found = len(sols)
    for s in sols:
        if _has_imaginary(s) or s.has(sp.Piecewise):
            continue
        for c in dict.fromkeys((s, _real_roots(s, a)) if real_roots else (s,)):
            if strict and not _real_on_range(c, a, g_dom, w, values):
                continue
            if c.is_real is False or (w.is_positive and c.is_positive is False):
                continue
            keep.append(c)
            break
    if not strict and len(keep) > 1:
        # solve keeps log(-sqrt(...)) beside log(sqrt(...)) (tanh(W) = A on W > 0): where some are
        # shown real on the range of g and others are not, the others are complex branches
        shown = [c for c in keep if _real_on_range(c, a, g_dom, w, values)]
        if shown:
            keep[:] = shown
    return keep


def _no_solution_text(g: sp.Expr, w: sp.Symbol, sols: _Solutions | None, where: str) -> str:
    """Why no closed-form solution W(A) was taken, in words."""
    if sols is not None and sols.found:
        return (f"{where} none of SymPy's {sols.found} solution(s) of A = g(W) is real for every A in the "
                "range of g")
    text = f"{where} SymPy's solve finds no closed-form solution of A = g(W)"
    poly = sp.Poly(g, w) if g.is_polynomial(w) else None
    if poly is not None and poly.degree() >= 5:
        text += (f" (g is a polynomial of degree {poly.degree()}: its inverse is in general not expressible "
                 "in radicals, i.e. not elementary)")
    return text


# ---------------------------------------------------------------- checks of a candidate inverse
# Sample points of W for the numeric checks (exact rationals, evaluated at 30 digits).  They are evidence,
# not proof: a g that changes direction between two samples can slip through the monotonicity check, but
# then the identity check g^{-1}(g(W)) = W usually fails at a sample on the other side.
_W_GRID_POSITIVE = tuple(sp.Rational(k, 8) for k in range(1, 81)) + (
    sp.Rational(1, 100), sp.Rational(1, 30), 12, 15, 20, 30, 50, 100)
_W_GRID_REAL = tuple(sorted({-t for t in _W_GRID_POSITIVE} | {0} | set(_W_GRID_POSITIVE)))
_IDENTITY_SAMPLES_POSITIVE = (sp.Rational(1, 100), sp.Rational(1, 10), sp.Rational(1, 2), 1, sp.Rational(3, 2),
                              3, 7, 20)
_IDENTITY_SAMPLES_REAL = tuple(sorted({-t for t in _IDENTITY_SAMPLES_POSITIVE} | set(_IDENTITY_SAMPLES_POSITIVE)))


def _numeric(expr: sp.Expr, digits: int = 30) -> sp.Expr | None:
    """expr at ``digits`` digits if it is a finite real number, sp.nan if it is not real, else None
    (symbolic parameters, nan, infinities)."""
    try:
        value = sp.N(expr, digits)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    if not value.is_number or value.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
        return None
    re, im = value.as_real_imag()
    if abs(im) > 1e-20 * max(1, abs(re)):
        return sp.nan  # marks a non-real value
    if _unresolved_zero(re):
        # evalf could not tell the value from 0 (cancellation: 2*tanh(200)**2 - 2 = -1.5e-173 came back as
        # 0.e-165, which SymPy compares as > 0, so tanh(-2*W) "turned" at W ~ 75 and had no inverse on W > 0)
        try:
            re = sp.N(expr, digits, maxn=40 * digits).as_real_imag()[0]
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            return None
        if _unresolved_zero(re):
            return None
    return re


def _unresolved_zero(value: sp.Expr) -> bool:
    """Whether ``value`` is a nonzero Float with (almost) no significant digits (evalf's "0.e-165", 1 bit)."""
    return isinstance(value, sp.Float) and value != 0 and value._prec < 20


def _not_real_at(g: sp.Expr, w: sp.Symbol, points: Iterable) -> sp.Expr | None:
    """The first of ``points`` where g (parameters substituted) is not a finite real number, or None."""
    for t in points:
        value = _numeric(g.subs(w, t))
        if value is None or value is sp.nan:
            return t
    return None


def _grid(domain: sp.Set, grid_real: tuple, grid_positive: tuple) -> tuple:
    """Sample points of ``domain`` (ascending): the grids themselves on W > 0 and the real line; on another
    interval, points spread over it (a finite one evenly, a half-line as its end plus the positive grid)."""
    if domain == sp.Interval.open(0, sp.oo):
        return grid_positive
    if domain in (sp.S.Reals, sp.S.Reals - sp.FiniteSet(0)) or not isinstance(domain, sp.Interval):
        return tuple(t for t in grid_real if domain.contains(t) is sp.true)
    lo, hi, n = domain.inf, domain.sup, len(grid_positive)
    if lo.is_finite and hi.is_finite:
        points = [lo + (hi - lo) * sp.Rational(k, n + 1) for k in range(1, n + 1)]
    elif lo.is_finite:
        points = [lo + t for t in grid_positive]
    elif hi.is_finite:
        points = [hi - t for t in grid_positive]
    else:
        points = list(grid_real)
    return tuple(sorted(points, key=float))


def _turning_point(dg: sp.Expr, w: sp.Symbol, domain: sp.Set) -> tuple | None:
    """(W, t0, t1): a point where g' changes sign on ``domain`` (bisection between the grid points t0, t1
    where g' has opposite signs; W to 8 digits, recognised as an exact number where nsimplify can), or None.

    ``dg`` is g' with the parameters at their values (left symbolic: not decided, None)."""
    signs = []
    for t in _grid(domain, _W_GRID_REAL, _W_GRID_POSITIVE):
        value = _numeric(dg.subs(w, t))
        if value is None or value is sp.nan or value == 0:
            continue
        signs.append((t, 1 if value > 0 else -1))
    for (t0, s0), (t1, s1) in zip(signs, signs[1:]):
        if s0 == s1:
            continue
        if domain == sp.S.Reals - sp.FiniteSet(0) and t0 < 0 < t1:
            continue  # g' may change sign through the excluded point 0 (1/W is monotone on each side)
        lo, hi = sp.N(t0, 30), sp.N(t1, 30)  # Float(133*pi/89) raised TypeError: sin(W) on (pi, 3*pi)
        for _ in range(60):
            mid = (lo + hi) / 2
            value = _numeric(dg.subs(w, mid))
            if value is None or value is sp.nan or value == 0:
                break
            if (1 if value > 0 else -1) == s0:
                lo = mid
            else:
                hi = mid
        # recognised with pi as well (sin(W) turns at pi/2, which was printed as 7*15**(4/5)*7**(3/5)/125,
        # and 3*pi/2 as 231/170 + sqrt(325021)/170); a form no simpler than the digits is left as the digits
        approx = sp.Float((lo + hi) / 2, 8)
        for constants in ([], [sp.pi]):
            exact = sp.nsimplify(approx, constants, rational=False, tolerance=1e-7)
            if sp.count_ops(exact) <= 3:
                return exact, t0, t1
        return approx, t0, t1
    return None


def _monotonicity_problem(dg: sp.Expr, w: sp.Symbol, domain: sp.Set) -> str | None:
    """Why g is not strictly monotone on ``domain`` (g' has both signs there), or None."""
    turn = _turning_point(dg, w, domain)
    if turn is None:
        return None
    where, t0, t1 = turn
    return (f"g'(W) = {dg} changes sign at W ~ {where} (g'({t0}) and g'({t1}) have opposite signs), so g is "
            f"not monotone on {domain} and A = g(W) has two solutions W for some A there")


def _identity_problem(g: sp.Expr, w: sp.Symbol, inv: sp.Expr, a: sp.Symbol, domain: sp.Set,
                      deriv: sp.Expr | None = None) -> str | None:
    """Why ``inv`` is not g^{-1} on ``domain`` (g^{-1}(g(W)) != W, or a non-real value, at a sample W), or None.

    With ``deriv`` (g'(g^{-1}(A))) also checks it against g'(W) there.  Parameters must be substituted."""
    # A is evaluated at 60 digits and the tolerances are loose: the check is for a wrong branch (an O(1)
    # error), not rounding where g saturates (1 - tanh(20) ~ 8e-18); where A rounds to the end of the
    # range (erf(20) to 1) the inverse is infinite there and the sample is skipped.
    dg = sp.diff(g, w)
    checked = 0
    for t in _grid(domain, _IDENTITY_SAMPLES_REAL, _IDENTITY_SAMPLES_POSITIVE):
        at = _numeric(g.subs(w, t), 60)
        if at is None or at is sp.nan:
            continue
        if inv.subs(a, at).free_symbols:
            return None  # symbolic parameters: undecided here
        back = _numeric(inv.subs(a, at), 30)
        if back is None:
            continue
        checked += 1
        if back is sp.nan:
            return f"the inverse W = {inv} is not real at A = g({t}) = {sp.N(at, 6)}"
        if abs(back - t) > 1e-8 * max(1, abs(t)):
            return f"the inverse W = {inv} gives W = {sp.N(back, 6)} at A = g({t}), not W = {t}"
        if deriv is not None:
            slope, true = _numeric(deriv.subs(a, at)), _numeric(dg.subs(w, t))
            if slope is None or true is None or true is sp.nan:
                continue
            if slope is sp.nan or abs(slope - true) > 1e-8 * max(1, abs(true)):
                return f"g'(g^{{-1}}(A)) = {deriv} is {sp.N(slope, 6)} at A = g({t}), but g'({t}) = {sp.N(true, 6)}"
    if not checked:
        # no sample gave a finite W back: the inverse is undefined (division by zero) wherever g has a
        # value, e.g. log(A)/a for exp(a*W) at a = 0, where g is the constant 1
        return (f"the inverse W = {inv} has no finite value at any sample A = g(W) on {domain} (is g constant "
                "there, at these parameter values?)")
    return None


def _real_roots(expr: sp.Expr, a: sp.Symbol) -> sp.Expr:
    """Odd roots of a base that may be negative written as real roots: u**(p/q), q odd -> sign(u)**p*|u|**(p/q).

    SymPy's u**(1/3) is the principal complex root (1/2 + sqrt(3)/2*i for u = -1); A = log(W)**3 needs the
    real one, W = exp(sign(A)*|A|**(1/3)), to be real for 0 < W < 1."""
    def odd_root(e: sp.Expr) -> bool:
        return (e.is_Pow and e.exp.is_Rational and not e.exp.is_integer and e.exp.q % 2 == 1
                and e.base.has(a) and not e.base.is_nonnegative)

    def real(e: sp.Expr) -> sp.Expr:
        p = e.exp.p
        mag = sp.Abs(e.base) ** e.exp
        return mag if p % 2 == 0 else sp.sign(e.base) * mag

    return expr.replace(odd_root, real)


def _base_in_a(g: sp.Expr, a: sp.Expr) -> sp.Expr | None:
    """h for A = g = h**p (p rational): the real root of A for odd integer p, A**(1/p) for h > 0;
    None where the sign of h is not known (an even power)."""
    p = g.exp
    if p.is_integer and p % 2 == 1:
        return a ** (1 / p) if a.is_nonnegative else sp.sign(a) * sp.Abs(a) ** (1 / p)
    if g.base.is_positive:
        return a ** (1 / p)
    return None


def _named_inverse(g: sp.Expr, w: sp.Symbol, a: sp.Symbol) -> sp.Expr | None:
    """f^{-1}(A) from SymPy's own inverse when g is f(W) for one function f (tanh -> atanh, sinh -> asinh).

    solve writes these through logs (atanh(A) as log(sqrt(-(A + 1)/(A - 1)))), which makes g'(g^{-1}(A))
    unsimplified and the mirror map's integrals slow.  Used only once solve has found a unique real inverse
    on the domain, and only where f(f^{-1}(A)) is A identically.

    A scale and a shift free of W are taken out first: s*tanh(W) + c is atanh((A - c)/s).  solve's log form
    of it made g'(g^{-1}(A)) = 2*s/(cosh(log(-(A + s)/(A - s))) + 1), on which the mirror map's integrate
    ran for minutes (s*tanh(W) at s = 3 or -3, on the real line or a half-line; tanh(W) + 1).  Only for a
    plain f(W): a scaled power (s*tanh(W)**3) keeps solve's form, whose mirror map is refused at once.
    """
    shift, rest = g.as_independent(w, as_Add=True) if g.is_Add else (sp.S.Zero, g)
    scale, rest = rest.as_independent(w, as_Add=False) if rest.is_Mul else (sp.S.One, rest)
    if (shift, scale) != (0, 1) and isinstance(rest, sp.Function) and rest.has(w) and not scale.is_zero:
        return _named_inverse(rest, w, (a - shift) / scale)
    if g.is_Pow and g.exp.is_Rational and g.base != w and g.base.has(w):
        # f(W)**p: f^{-1} of the p-th root of A
        root = _base_in_a(g, a)
        return None if root is None else _named_inverse(g.base, w, root)
    if isinstance(g, sp.Function) and len(g.args) == 1 and g.args[0] != w:
        # f(k*W + b): (f^{-1}(A) - b)/k.  solve wrote -tanh(2*W)'s inverse as log(((1 - A)/(A + 1))**(1/4))
        slope, offset = _affine_coefficients(g.args[0], w)
        if slope is None:
            return None
        inner = _named_inverse(g.func(w), w, a)
        return None if inner is None else (inner - offset) / slope
    if not (isinstance(g, sp.Function) and g.args == (w,) and hasattr(g, "inverse")):
        return None
    try:
        inverse = g.inverse()(a)
    except (TypeError, ValueError, AttributeError, NotImplementedError):
        return None
    return inverse if g.func(inverse) == a else None


def _affine_coefficients(u: sp.Expr, w: sp.Symbol) -> tuple[sp.Expr | None, sp.Expr | None]:
    """(k, b) with u = k*w + b, both free of w and k not zero; (None, None) where u is not affine in w.  A
    parameter k of unknown sign is taken: the caller has a unique inverse from solve, which divides by k too."""
    poly = sp.Poly(u, w) if u.is_polynomial(w) else None
    if poly is None or poly.degree() != 1:
        return None, None
    slope, offset = poly.coeff_monomial(w), poly.coeff_monomial(1)
    if slope.has(w) or offset.has(w) or slope.is_zero:
        return None, None
    return slope, offset


def _derivative_in_a(dg: sp.Expr, g: sp.Expr, w: sp.Symbol, inv: sp.Expr, a: sp.Symbol) -> sp.Expr:
    """g'(g^{-1}(A)), the simplest of: g' with g(W) replaced by A (when that removes W: 1 - tanh(W)**2
    -> 1 - A**2), and g' at W = inverse, simplified."""
    candidates = [sp.simplify(dg.subs(w, inv))]
    direct = dg.subs(g, a)
    if w not in direct.free_symbols:
        candidates.append(sp.simplify(direct))
    if g.is_Pow and g.exp.is_Rational and g.base != w and g.base.has(w):
        # g = h(W)**p: h in A (tanh(W)**3: g' = 3*h**2*(1 - h**2) in A)
        root = _base_in_a(g, a)
        if root is not None:
            # W left over (atan(W)**3: g' = 3*atan(W)**2/(1 + W**2)) is the inverse: the part in h stays
            # the root, not f(f^{-1}(root)) (atan(tan(u)), which SymPy cannot reduce to u)
            candidates.append(sp.simplify(dg.subs(g.base, root).subs(w, inv)))
    if inv.has(sp.sign):
        # A real root squared: sign(u)**2*|u|**(2/3) is |u|**(2/3) (both 0 at u = 0); simplify would
        # write Piecewise((0, Eq(A, 0)), ...) instead.
        even_sign = lambda e: e.is_Pow and isinstance(e.base, sp.sign) and e.exp.is_even  # noqa: E731
        candidates.append(dg.subs(w, inv).replace(even_sign, lambda e: sp.S.One))
    # A hyperbolic function of a log is rational in its argument: solve writes the inverse of s*tanh(b*W) as
    # log(sqrt((A + s)/(s - A)))/b, and g' there simplified to 2*b*s/(cosh(log(-(A + s)/(A - s))) + 1),
    # on which the mirror map's integrate ran for minutes; written in exp it is b*(s - A**2/s).
    hyperbolic_of_log = lambda e: isinstance(e, (sp.sinh, sp.cosh, sp.tanh, sp.coth, sp.sech, sp.csch)) \
        and e.args[0].has(sp.log)  # noqa: E731
    for c in [c for c in candidates if c.has(sp.sinh, sp.cosh, sp.tanh, sp.coth, sp.sech, sp.csch)]:
        if any(hyperbolic_of_log(e) for e in sp.preorder_traversal(c)):
            candidates.append(sp.simplify(sp.powsimp(c.rewrite(sp.exp))))
    return min(candidates, key=lambda c: (c.has(sp.Piecewise), sp.count_ops(c)))


def _cubic_real_roots(g: sp.Expr, w: sp.Symbol, a: sp.Symbol, rng: sp.Set | None = None) -> list[sp.Expr]:
    """The real roots W(A) of A = g(W) for a cubic g with numeric coefficients that turns (two turning
    points), in real form: largest, middle and smallest root.  [] for any other g.

    Cardano's formula is complex where A = g(W) has three real roots (casus irreducibilis: W**3 - 3*W = A
    for |A| < 2), so it is no inverse there.  With W = t - b/(3a), t**3 + p*t + q = 0, p < 0,
    m = sqrt(-p/3) and u = -q/(2*m**3) (linear in A), the roots for |u| <= 1 are
    t_k = 2*m*cos(acos(u)/3 - 2*pi*k/3), k = 0, 1, 2 (largest, middle, smallest); for u > 1 the one real
    root continues the largest, 2*m*cosh(acosh(u)/3), for u < -1 the smallest, -2*m*cosh(acosh(-u)/3).
    ``rng`` (the range of A on the domain, at the parameters' values) drops the pieces not needed there."""
    if not g.is_polynomial(w) or g.free_symbols != {w}:
        return []
    coeffs = sp.Poly(g, w).all_coeffs()
    if len(coeffs) != 4 or not all(c.is_real for c in coeffs):
        return []
    c3, c2, c1, c0 = coeffs
    p = (3 * c3 * c1 - c2**2) / (3 * c3**2)
    if not p.is_negative:
        return []  # monotone on the real line: one real root for every A (Cardano's formula is real)
    q = (2 * c2**3 - 9 * c3 * c2 * c1 + 27 * c3**2 * (c0 - a)) / (27 * c3**3)
    m = sp.sqrt(-p / 3)
    u = sp.expand(-q / (2 * m**3))
    slope = sp.diff(u, a)  # u = slope*A + rest, slope != 0
    shift = -c2 / (3 * c3)

    rest = sp.expand(u - slope * a)

    def at(value: int) -> sp.Expr:  # the A where u = value
        return (value - rest) / slope

    lo = hi = None  # the range of u over the domain
    if isinstance(rng, sp.Interval) and all(e.is_comparable or e in (sp.oo, -sp.oo) for e in (rng.inf, rng.sup)):
        lo, hi = sorted((slope * rng.inf + rest, slope * rng.sup + rest), key=lambda e: e)
    below_one = (a <= at(1)) if slope.is_positive else (a >= at(1))        # u <= 1
    above_minus_one = (a >= at(-1)) if slope.is_positive else (a <= at(-1))  # u >= -1
    angle = sp.acos(u) / 3
    top_trig, top_hyp = 2 * m * sp.cos(angle), 2 * m * sp.cosh(sp.acosh(u) / 3)
    bottom_trig, bottom_hyp = 2 * m * sp.cos(angle - 4 * sp.pi / 3), -2 * m * sp.cosh(sp.acosh(-u) / 3)
    if hi is not None and (hi <= 1) == True:  # noqa: E712  (a SymPy comparison)
        top = top_trig
    elif lo is not None and (lo >= 1) == True:  # noqa: E712
        top = top_hyp
    else:
        top = sp.Piecewise((top_trig, below_one), (top_hyp, True))
    if lo is not None and (lo >= -1) == True:  # noqa: E712
        bottom = bottom_trig
    elif hi is not None and (hi <= -1) == True:  # noqa: E712
        bottom = bottom_hyp
    else:
        bottom = sp.Piecewise((bottom_trig, above_minus_one), (bottom_hyp, True))
    middle = 2 * m * sp.cos(angle - 2 * sp.pi / 3)
    return [shift + t for t in (top, middle, bottom)]


def _find_inverse(g: sp.Expr, requested: str | None, params: Mapping[sp.Symbol, sp.Expr] | None = None) -> _InverseResult:
    if isinstance(requested, sp.Interval) and not requested.is_empty and requested.measure != 0:
        return _inverse_on_interval(g, requested, params)
    if requested not in (None, "real", "positive"):
        raise NoInverseError(
            f"domain={requested!r} is not supported; use 'real', 'positive', None (automatic) or an interval "
            "of W, e.g. domain=(-1, sympy.oo) or sympy.Interval.open(-1, sympy.oo)."
        )
    wp = sp.Symbol("W", positive=True)
    g_pos = g.subs(W, wp)
    dg = sp.diff(g, W)
    values = dict(params or {})
    g_c, dg_c = g.subs(values), dg.subs(values)  # for the numeric checks: parameters at their values
    reasons = []
    real_line_refused = None  # why a solution on the real line was not taken, for the branch text

    def problem(domain: sp.Set, inv: sp.Expr, a: sp.Symbol, deriv: sp.Expr) -> str | None:
        """Solve returning one solution is not uniqueness: g must be monotone on the domain and the
        candidate must satisfy g^{-1}(g(W)) = W there (W*exp(W) on the real line fails both)."""
        return (_monotonicity_problem(dg_c, W, domain)
                or _identity_problem(g_c, W, inv.subs(values), a, domain, deriv.subs(values)))

    # Rule 2's case (odd g of one sign on W > 0): the odd extension states the branch (W**3).
    odd = sp.simplify(g.subs(W, -W) + g) == 0
    odd_one_sign = odd and bool(g_pos.is_positive or g_pos.is_negative)
    if requested in (None, "real"):
        # SymPy cannot always show g real (asinh written as log(W + sqrt(W**2 + 1)): is_real is None); where
        # it cannot, g real at sample points is the evidence, as for the other checks (not for the odd g of
        # rule 2, which keep their odd extension).
        off_line = None if g.is_real or odd_one_sign else _not_real_at(g_c, W, _IDENTITY_SAMPLES_REAL + (0,))
        if g.is_real or (g.is_real is None and not odd_one_sign and off_line is None):
            a = _a_symbol(g)
            # Otherwise odd roots may be read as real roots (W**3 - 1: sign(A + 1)*|A + 1|**(1/3)).
            sols = _real_solutions(g, W, a, strict=True, real_roots=not odd_one_sign, values=values)
            if sols is not None and len(sols) == 1:
                inv = _named_inverse(g, W, a) or sols[0]
                deriv = _derivative_in_a(dg, g, W, inv, a)
                why = problem(sp.S.Reals, inv, a, deriv)
                if why is None:
                    return _InverseResult(
                        sp.S.Reals, inv, a, f"W = {inv} (g is injective on the real line)", deriv, False,
                    )
                reasons.append(f"on the real line SymPy's solution W = {inv} is not g^{{-1}}: {why}")
                real_line_refused = why.split(" (")[0] if "changes sign" in why else "not the inverse there"
            else:
                reasons.append(
                    _no_solution_text(g, W, sols, "on the real line") if not sols
                    else f"on the real line A = g(W) has {len(sols)} real solutions {sols}"
                )
        else:
            reasons.append("g is not real (or not defined) on the whole real line"
                           + (f" (not at W = {off_line})" if off_line is not None else ""))
        # Odd extension of the inverse found on W > 0.  The sign of g on W > 0 is SymPy's, or, where a
        # parameter of unknown sign hides it (s*W*Abs(W) at s = -2, s a real symbol), g's sign there at the
        # parameters' values; so are the roots on W > 0 (-sqrt(a/s) and sqrt(a/s): the one that is g^{-1}).
        positive_side = g_pos.is_positive or (False if g_pos.is_negative else None)
        g_pos_c = g_pos.subs(values)
        if positive_side is None and values:
            positive_side = g_pos_c.is_positive or (False if g_pos_c.is_negative else None)
        if odd and positive_side is not None:
            a_pos = sp.Dummy("a", positive=True) if positive_side else sp.Dummy("a", negative=True)
            sols = _real_solutions(g_pos, wp, a_pos, strict=False)
            if sols is not None and len(sols) > 1 and values:
                fitting = [h for h in sols
                           if _identity_problem(g_pos_c, wp, h.subs(values), a_pos, sp.Interval.open(0, sp.oo)) is None]
                sols[:] = fitting if len(fitting) == 1 else sols
            if sols is not None and len(sols) == 1:
                at0 = g_c.subs(W, 0)  # at the parameters' values: powerprop at alpha = -1 is 1/W
                if at0 is sp.nan:
                    # 0/0, a removable singularity where both one-sided limits agree: powerprop at
                    # alpha = 1/2, W/sqrt(|W|), is 0 there (its domain excluded W = 0, so right_inverse
                    # refused the weight 0 that the forward gives at W = 0)
                    sides = {sp.limit(g_c, W, 0, side) for side in ("+", "-")}
                    at0 = sides.pop() if len(sides) == 1 else at0
                singular = not (at0.is_finite and at0.is_real)
                a = sp.Symbol("A", real=True, nonzero=True) if singular else sp.Symbol("A", real=True)
                h = _named_inverse(g_pos, wp, a_pos) or sols[0]
                if positive_side:
                    inv = sp.sign(a) * h.subs(a_pos, sp.Abs(a))
                else:
                    inv = -sp.sign(a) * h.subs(a_pos, -sp.Abs(a))
                simpler = sp.simplify(inv)
                inv = inv if simpler.has(sp.Piecewise) else simpler  # keep sign(A)*h(|A|) over a Piecewise
                deriv = _derivative_in_a(sp.diff(g_pos, wp), g_pos, wp, h, a_pos).subs(
                    a_pos, sp.Abs(a) if positive_side else -sp.Abs(a))
                domain = sp.S.Reals - sp.FiniteSet(0) if singular else sp.S.Reals
                why = problem(domain, inv, a, deriv)
                if why is None:
                    return _InverseResult(
                        domain, inv, a,
                        (f"W = sign(A)*({h.subs(a_pos, sp.Symbol('|A|'))})" if positive_side else
                         f"W = -sign(A)*({h.subs(a_pos, -sp.Symbol('|A|'))})")
                        + " (odd extension of the inverse on W > 0)",
                        deriv, True,
                    )
                reasons.append(f"the odd extension W = {inv} is not g^{{-1}}: {why}")
        if requested == "real":
            turn = _turning_point(dg_c, W, sp.S.Reals)
            pieces = (f" or an interval on which g is monotone, e.g. domain=({turn[0]}, oo) or (-oo, {turn[0]})"
                      if turn is not None else " or an interval of W on which g is monotone")
            raise NoInverseError(
                f"A = {g} has no unique closed-form inverse on the real line ({'; '.join(reasons)}). "
                f"Pass domain='positive' to invert on W > 0 instead,{pieces}."
            )

    if g_pos.is_real is False:
        raise NoInverseError(f"A = {g} is not real for W > 0; pass domain='real' or choose another g.")
    a = _a_symbol(g_pos)
    sols = _real_solutions(g_pos, wp, a, strict=False)
    by_values = ""
    if sols is not None and len(sols) > 1 and values:
        # A parameter whose sign SymPy does not know hides which root is the branch on W > 0: s*W**2 at
        # s = -1 has the solutions -sqrt(A/s) and sqrt(A/s), and was refused as "not injective" although
        # -W**2 is injective on W > 0.  At the parameters' values only one of them is g^{-1} there.
        fitting = [s for s in sols if problem(sp.Interval.open(0, sp.oo), s, a,
                                              _derivative_in_a(sp.diff(g_pos, wp), g_pos, wp, s, a)) is None]
        if len(fitting) == 1:
            sols[:] = fitting
            by_values = ("; the root that is g^{-1} at the parameters' values "
                         + ", ".join(f"{k} = {v}" for k, v in values.items()) + ", of the "
                         + f"{sols.found} solutions of A = g(W)")
    if sols is not None and len(sols) == 1:
        first = _named_inverse(g_pos, wp, a) or sols[0]
        # SymPy's solution as it is, then with its odd roots read as real roots (log(W)**3).
        for inv in dict.fromkeys((first, _real_roots(first, a))):
            deriv = _derivative_in_a(sp.diff(g_pos, wp), g_pos, wp, inv, a)
            why = problem(sp.Interval.open(0, sp.oo), inv, a, deriv)
            if why is None:
                return _InverseResult(
                    sp.Interval.open(0, sp.oo), inv, a,
                    f"W = {inv} (the positive branch, W > 0" + by_values
                    + (f"; not the real line: {real_line_refused})" if real_line_refused else ")"),
                    deriv, False,
                )
        reasons.append(f"on W > 0 SymPy's solution W = {inv} is not g^{{-1}}: {why}")
    else:
        reasons.append(_no_solution_text(g_pos, wp, sols, "on W > 0") if not sols
                       else f"on W > 0 A = g(W) has {len(sols)} solutions {sols} (g is not injective)")
    # A cubic monotone on W > 0 that turns at W <= 0 (W**3 + 3*W**2): Cardano's formula is complex for A
    # below the turning value g(-2) = 4; its roots in real form are tried there.
    positive = sp.Interval.open(0, sp.oo)
    if _monotonicity_problem(dg_c, W, positive) is None:
        for inv in _cubic_real_roots(g, W, a, _range_at(g_c, positive)):
            deriv = _derivative_in_a(dg, g, W, inv, a)
            if problem(positive, inv, a, deriv) is None:
                return _InverseResult(
                    positive, inv, a,
                    f"W = {inv} (the positive branch, W > 0, the cubic's root in real form"
                    + (f"; not the real line: {real_line_refused})" if real_line_refused else ")"),
                    deriv, False,
                )
    raise NoInverseError(
        f"A = {g} has no unique inverse: {'; '.join(reasons)}. Choose a g that is strictly monotone on "
        "the real line or on W > 0 (A-side formulas need g^{-1}), or pass domain='positive' / domain='real' "
        "where it is."
    )


def _inverse_on_interval(g: sp.Expr, domain: sp.Interval, params: Mapping[sp.Symbol, sp.Expr] | None) -> _InverseResult:
    """The inverse of g on a requested interval of W: g must be monotone there (checked at sample points)
    and exactly one of SymPy's solutions (with the other real branch of each LambertW) must satisfy
    g^{-1}(g(W)) = W there.  W*exp(W) on (-1, oo) is LambertW(A), on (-oo, -1) LambertW(A, -1)."""
    values = dict(params or {})
    dg = sp.diff(g, W)
    g_c, dg_c = g.subs(values), dg.subs(values)
    turning = _monotonicity_problem(dg_c, W, domain)
    if turning is not None:
        raise NoInverseError(f"A = {g} has no inverse on W in {domain}: {turning}. Pass a smaller interval.")
    from sympy.calculus.util import function_range

    try:
        rng = function_range(g_c, W, domain)
    except (NotImplementedError, ValueError, TypeError):
        rng = None
    if isinstance(rng, sp.Interval) and rng.inf >= 0 and not rng.contains(0):
        a = sp.Symbol("A", positive=True)
    elif isinstance(rng, sp.Interval) and rng.sup <= 0 and not rng.contains(0):
        a = sp.Symbol("A", negative=True)
    else:
        a = sp.Symbol("A", real=True)
    try:
        sols = _solve_for(a, g, W)
    except (NotImplementedError, ValueError, TypeError):
        sols = []
    if a.is_positive or a.is_negative:
        # solve with A of one sign drops the real root of an odd power: A = W**3 with A < 0 gives only its two
        # complex roots, so W**3 on (-2, -1) had "no closed-form solution".  Solved with A real, its odd roots
        # read as real roots (sign(A)*|A|**(1/3), -(-A)**(1/3) for A < 0).
        a_real = sp.Dummy("A", real=True)
        try:
            extra = [_real_roots(s, a_real).xreplace({a_real: a}) for s in _solve_for(a_real, g, W)]
        except (NotImplementedError, ValueError, TypeError):
            extra = []
        sols = list(sols) + [s for s in extra if s not in sols]
    # A cubic that turns (W**3 - 3*W on (1, oo)): its roots in real trigonometric/hyperbolic form first;
    # Cardano's formula is complex where there are three real roots, and was refused there (NoInverseError)
    # or passed as a sum of complex conjugates whose square roots of negative numbers are NaN in torch.
    candidates = _cubic_real_roots(g_c if not g.free_symbols - {W} else g, W, a,
                                   rng if isinstance(rng, sp.Interval) else None)
    for s in sols:
        if _has_imaginary(s):
            continue
        candidates.append(s)
        for lw in s.atoms(sp.LambertW):
            if len(lw.args) == 1:  # the other real branch, k = -1 (solve gives the principal one only)
                candidates.append(s.xreplace({lw: sp.LambertW(lw.args[0], -1)}))
    # A periodic g on a piece away from the principal one (sin(W) on (3*pi/2, 5*pi/2): asin(A) + 2*pi, tan(W)
    # on (pi/2, 3*pi/2): atan(A) + pi): solve gives the principal branches only, which were refused there.
    # Each candidate is shifted by the whole number of periods that brings it to the interval's middle.
    if domain.inf.is_finite and domain.sup.is_finite:
        try:
            period = sp.periodicity(g, W)
        except (NotImplementedError, ValueError, TypeError):
            period = None
        period_c = _numeric(period.subs(values)) if period is not None else None
        if period_c is not None and period_c is not sp.nan and period_c > 0:
            middle = (domain.inf + domain.sup) / 2
            at = g_c.subs(W, middle)
            for s in list(candidates):
                value = _numeric(_real_roots(s, a).subs(values).subs(a, at))
                if value is not None and value is not sp.nan:
                    k = int(round(float((middle - value) / period_c)))
                    if k:
                        candidates.append(s + k * period)
    # The named inverse (atanh for tanh) first, wherever it is g^{-1} on the interval (checked below as every
    # candidate is): it was used only when solve gave exactly one candidate, so tanh(W) on (0, oo) got
    # log(sqrt(-1/(A - 1))*sqrt(A + 1)) from solve's two, which loses ~1e-12 in float64 near A = 0.
    named = _named_inverse(g, W, a)
    if named is not None:
        candidates = [named] + [s for s in candidates if s != named]
    tried = []
    for s in candidates:
        for inv in dict.fromkeys((s, _real_roots(s, a))):  # as solved, then with real odd roots
            deriv = _derivative_in_a(dg, g, W, inv, a)
            why = _identity_problem(g_c, W, inv.subs(values), a, domain, deriv.subs(values))
            if why is None:
                return _InverseResult(domain, inv, a, f"W = {inv} (the requested domain W in {domain})", deriv, False)
            tried.append(why)
    detail = "; ".join(tried) if tried else "SymPy's solve finds no closed-form solution"
    raise NoInverseError(f"A = {g} has no closed-form inverse on W in {domain}: {detail}.")


_DOMAIN_FORMS = ("None (automatic), 'real', 'positive', a pair (lo, hi) meaning the open interval of W "
                 "between them, e.g. (-1, sympy.oo), or a sympy.Interval of positive length")


def _domain_argument(domain: Any) -> Any:
    """``domain`` checked, with a pair (lo, hi) read as the open interval of W between them.

    Every value is validated here, when the parameter activation is built (a bad one used to pass
    construction and raise NoInverseError only when ``.domain`` was read): DomainError otherwise."""
    if domain is None or (isinstance(domain, str) and domain in ("real", "positive")):
        return domain
    if isinstance(domain, (tuple, list)):
        if len(domain) != 2:
            raise DomainError(f"domain={domain!r} has {len(domain)} entries; give a pair (lo, hi). "
                              f"Accepted: {_DOMAIN_FORMS}.")
        try:
            lo, hi = (sp.sympify(d, strict=True) for d in domain)
        except sp.SympifyError:
            raise DomainError(f"domain={domain!r}: give the interval's ends as numbers, e.g. (-1, sympy.oo). "
                              f"Accepted: {_DOMAIN_FORMS}.") from None
        if not (lo.is_real or lo in (-sp.oo, sp.oo)) or not (hi.is_real or hi in (-sp.oo, sp.oo)) or not lo < hi:
            raise DomainError(f"domain={domain!r}: the ends must be real numbers with lo < hi, e.g. (-1, sympy.oo). "
                              f"Accepted: {_DOMAIN_FORMS}.")
        return sp.Interval.open(lo, hi)
    if isinstance(domain, sp.Interval) and not domain.is_empty and domain.measure != 0:
        return domain
    hint = ""
    if isinstance(domain, str) and domain.strip().lower() in ("real", "positive"):
        hint = f" (write {domain.strip().lower()!r}, in lower case)"
    raise DomainError(f"domain={domain!r} is not supported{hint}. Accepted: {_DOMAIN_FORMS}.")


def _vocabulary() -> dict[str, Any]:
    """The names a formula string may use; every other name becomes a Symbol (then checked).

    Evaluated by :func:`symact._safe_parse.safe_parse` (no builtins, no strings or attribute access)."""
    names = ["exp", "log", "sqrt", "Abs", "sign", "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh",
             "tanh", "asinh", "acosh", "atanh", "erf", "Max", "Min", "Piecewise", "Heaviside", "pi", "E"]
    env: dict[str, Any] = {n: getattr(sp, n) for n in names}
    env["softplus"] = lambda z: sp.log(1 + sp.exp(z))
    env["sigmoid"] = lambda z: 1 / (1 + sp.exp(-z))
    return env


def _param_value(name: str, value: Any) -> sp.Expr:
    """A parameter default as a SymPy value; a string must be a number (it is never run as code)."""
    if isinstance(value, str):
        return safe_number(value, name, f"parameter {name!r}")
    # a NumPy scalar or 0-d tensor is its Python number: np.float32(3.0) became a 24-bit Float, whose
    # inverse failed the 30-digit check ("0.0790569, but g'(1/10) = 0.0790569": NoInverseError)
    value = python_number(value)
    try:
        number = sp.sympify(value, strict=True)
    except sp.SympifyError:
        raise FormulaError(f"parameter {name!r}: cannot read {value!r} as a number; pass a number") from None
    # as safe_number requires of a string: float('nan') used to become the parameter's value (and then
    # every number derived from it), 1j a complex one
    if (not isinstance(number, sp.Expr) or not number.is_number or number.is_real is False
            or number.is_finite is False or number.has(sp.nan, sp.zoo, sp.oo, -sp.oo)):
        raise FormulaError(f"parameter {name!r} = {value!r} is not a real finite number; pass one, "
                           f"e.g. {name}=0.5")
    return number


def _param_symbol(name: str, value: sp.Expr) -> sp.Symbol:
    """The symbol of a parameter with this value: positive where the value is, else real."""
    return sp.Symbol(name, positive=True) if value.is_positive else sp.Symbol(name, real=True)


def _parse(g: str | sp.Expr, params: Mapping[str, Any]) -> tuple[str, sp.Expr, dict[sp.Symbol, sp.Expr]]:
    name = None
    defaults: dict[str, Any] = {}
    if isinstance(g, str) and g.strip() in _NAMED:
        name = g.strip()
        g, defaults = _NAMED[name]
    values = {k: _param_value(k, v) for k, v in {**defaults, **params}.items()}
    symbols = {k: _param_symbol(k, v) for k, v in values.items()}
    if isinstance(g, str):
        try:
            expr = safe_parse(g, {"W": W, **symbols}, _vocabulary(), what="parameter activation")
        except (sp.SympifyError, SyntaxError, TypeError, TokenError, NameError, AttributeError) as err:
            raise FormulaError(f"cannot parse parameter activation {g!r}: {err}. Write a formula in W, e.g. 'exp(W)'.") from err
    else:
        try:
            expr = sp.sympify(g, strict=True)  # strict: never str() an unknown object and parse it
        except sp.SympifyError:
            raise FormulaError(f"cannot read {g!r} as a parameter activation; pass a formula string in W or a SymPy expression") from None
        # Accept a plain Symbol('W') (any assumptions) and the user's parameter symbols by name.
        expr = expr.subs({s: W for s in expr.free_symbols if s.name == "W"})
        expr = expr.subs({s: symbols[s.name] for s in expr.free_symbols if s.name in symbols})
    if not isinstance(expr, sp.Expr):
        raise FormulaError(f"{g!r} is not an expression in W.")
    unknown = sorted(s.name for s in expr.free_symbols if s != W and s.name not in symbols)
    if unknown:
        raise UnknownSymbolError(
            f"parameter activation {g!r} uses unknown symbol(s) {unknown}; write it in W and give each "
            f"parameter a default, e.g. parameter_activation({str(g)!r}, {unknown[0]}=1)."
        )
    undefined = sorted({type(f).__name__ for f in expr.atoms(AppliedUndef)})
    if undefined:
        raise FormulaError(
            f"parameter activation {g!r} calls unknown function(s) {', '.join(undefined)}; use "
            "exp, log, sqrt, tanh, sigmoid, softplus, ... (SymPy functions)"
        )
    if W not in expr.free_symbols:
        raise FormulaError(f"parameter activation {g!r} does not depend on W; write A as a formula in W.")
    unused = sorted(set(params) - {s.name for s in expr.free_symbols})
    if unused:
        raise UnknownSymbolError(f"parameter(s) {unused} do not appear in {expr}; remove them or use them in the formula.")
    pars = {symbols[k]: v for k, v in values.items() if symbols[k] in expr.free_symbols}
    return (name or str(expr)), expr, pars


def parameter_activation(g: str | sp.Expr, *, domain: str | None = None, **params: Any) -> ParameterActivation:
    """Parameter activation A = g(W) from a formula in ``W`` or a name (:func:`parameter_activation_names`).

    ``domain``: None (automatic, see the module docstring), ``"real"``, ``"positive"``, or an interval of W
    (a SymPy Interval, or a pair (lo, hi) meaning the open interval) on which g is monotone:
    ``parameter_activation("W*exp(W)", domain=(-1, sympy.oo))`` inverts with LambertW(A) for W > -1.
    Keyword arguments give parameter defaults (``parameter_activation("powerprop", alpha=3)``).

    >>> parameter_activation("exp(exp(W))").derivative_in_A
    A*log(A)
    >>> parameter_activation("powerprop").derivative_in_A
    alpha*Abs(A)**((alpha - 1)/alpha)
    """
    domain = _domain_argument(domain)
    if isinstance(g, str):
        try:
            return _parameter_activation_cached(g, domain, _cache_key(params))
        except TypeError:  # unhashable parameter value: build uncached
            pass
    name, expr, pars = _parse(g, params)
    return ParameterActivation(name, expr, MappingProxyType(pars), domain)


def _cache_key(params: Mapping[str, Any]) -> tuple:
    """Parameters as a cache key that tells values of different types apart: 3, 3.0 and np.float32(3.0) are
    equal and hash alike, so a formula built for one (a Float, once a failed 24-bit one) served the others."""
    return tuple(sorted((k, type(v).__name__, v) for k, v in params.items()))


@functools.lru_cache(maxsize=256)
def _parameter_activation_cached(g: str, domain: str | None, params: tuple) -> ParameterActivation:
    # The objects are immutable and their derived formulas (inverse, mirror map: SymPy integration)
    # are cached on them, so the same formula string can share one object.
    name, expr, pars = _parse(g, {k: v for k, _, v in params})
    return ParameterActivation(name, expr, MappingProxyType(pars), domain)


# ============================================================== signed data
@dataclass(frozen=True, eq=False)
class SignedParametrization:
    """A signed weight built from a positive parameter activation g (the seed's three remedies).

    ``kind``:
      * ``"difference"``:   A = g(Wp) - g(Wm)                 (concatenated positive and negative parts)
      * ``"soft_sign"``:    A = tanh(k*S) * g(W)               (a learned softened sign S, sharpness k)
      * ``"second_layer"``: A = sum_j V_j * g(W_j)             (a second linear layer over m positive weights;
                                                              in matrix form A = V @ g(W))
    ``expr`` is A in the symbols ``symbols`` (for "second_layer" one entry j of the sum, m = 1); ``gradients``
    maps each symbol to dA/d(symbol).
    """

    kind: str
    base: ParameterActivation
    expr: sp.Expr
    symbols: tuple[sp.Symbol, ...]

    @functools.cached_property
    def gradients(self) -> dict[sp.Symbol, sp.Expr]:
        return {s: sp.simplify(sp.diff(self.expr, s)) for s in self.symbols}

    def __repr__(self) -> str:
        return f"SignedParametrization({self.kind!r}, A = {self.expr})"


def signed_parametrization(g: str | sp.Expr | ParameterActivation, kind: str = "difference",
                           **params: Any) -> SignedParametrization:
    """The signed form ``kind`` ('difference', 'soft_sign', 'second_layer') of parameter activation g.

    For ``kind="soft_sign"`` the keyword ``k`` sets the sharpness k of tanh(k*S) (a positive finite number, as
    in ``numeric.parametrization(..., signed="soft_sign", k=...)``); without it k stays a positive symbol.
    The other keywords are g's parameters.

    >>> signed_parametrization("exp(W)", "difference").expr
    -exp(W_m) + exp(W_p)
    >>> signed_parametrization("exp", "soft_sign", k=3).expr
    exp(W)*tanh(3*S)
    """
    sharpness = None
    if kind == "soft_sign" and "k" in params:
        # k was passed on to g and refused as "parameter(s) ['k'] do not appear in exp(W)", though it is the
        # soft sign's sharpness, which could not be set at all
        params = dict(params)
        sharpness = _param_value("k", params.pop("k"))
        if not sharpness.is_positive:
            raise DomainError(f"soft-sign sharpness k={sharpness} must be a positive finite number, e.g. k=1.")
    try:
        base = _signed_base(g, params)
    except UnknownSymbolError as err:
        if sharpness is not None and "'k'" in str(err):
            raise FormulaError(f"k={sharpness} is the soft sign's sharpness in tanh(k*S)*g(W), so it cannot also "
                               f"be g's parameter k ({err}); rename g's parameter.") from err
        raise
    wp, wm = sp.Symbol("W_p", real=True), sp.Symbol("W_m", real=True)
    if kind == "difference":
        return SignedParametrization(kind, base, base.g.subs(W, wp) - base.g.subs(W, wm), (wp, wm))
    if kind == "soft_sign":
        if any(p.name == "k" for p in base.params):
            # the sharpness symbol k was g's parameter k itself: tanh(k*S)*k*exp(W) tied the two together
            raise FormulaError(f"g = {base.g} has a parameter k, the name of the soft sign's sharpness in "
                               "tanh(k*S)*g(W); rename g's parameter.")
        s, k = sp.Symbol("S", real=True), sp.Symbol("k", positive=True)
        return SignedParametrization(kind, base, sp.tanh((k if sharpness is None else sharpness) * s) * base.g, (W, s))
    if kind == "second_layer":
        v = sp.Symbol("V", real=True)
        return SignedParametrization(kind, base, v * base.g, (W, v))
    raise FormulaError(f"unknown signed parametrization kind {kind!r}; use 'difference', 'soft_sign' or 'second_layer'.")


def _signed_base(g: str | sp.Expr | ParameterActivation, params: Mapping[str, Any]) -> ParameterActivation:
    """The positive parameter activation of a signed parametrization, its parameters set by ``params``."""
    if isinstance(g, ParameterActivation):
        # parameters given with a ParameterActivation were dropped without a word (alpha=3 kept alpha = 2, and
        # a name g does not have passed); they set its defaults, as numeric.parametrization does
        return g.with_params(**params) if params else g
    return parameter_activation(g, **params)


# ============================================================== the table
@dataclass(frozen=True, eq=False)
class AutoactivationTable:
    """The seed's table, computed: one row per parameter activation; ``markdown`` and ``latex`` renderings."""

    rows: tuple[ParameterActivation, ...]
    markdown: str
    latex: str

    def _repr_markdown_(self) -> str:
        return self.markdown

    def _repr_latex_(self) -> str:
        return self.latex

    def __str__(self) -> str:
        return self.markdown


_COLUMNS = ("A", "dA/dW", "dA/dW in A", "r(A)", "mirror map psi(A)", "domain of W")


def _domain_text(domain: sp.Set) -> str:
    if domain == sp.S.Reals:
        return "all real W"
    if domain == sp.Interval.open(0, sp.oo):
        return "W > 0"
    if domain == sp.S.Reals - sp.FiniteSet(0):
        return "W != 0"
    return str(domain)


def _row_values(pa: ParameterActivation) -> list[sp.Basic | str | None]:
    try:
        return [pa.g, pa.derivative, pa.derivative_in_A, pa.effective_learning_rate, pa.mirror_map, pa.domain]
    except NoInverseError:
        return [pa.g, pa.derivative, "no inverse", "", "", ""]


def _markdown_cell(value: sp.Basic | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, sp.Set):
        return _domain_text(value)
    if isinstance(value, sp.Basic):
        return "`" + str(value).replace("|", "\\|") + "`"  # a bare | would end the table cell
    return value


def _latex_cell(value: sp.Basic | str | None) -> str:
    if value is None:
        return r"\text{—}"
    if isinstance(value, sp.Set):
        return rf"W \in {sp.latex(value)}"
    if isinstance(value, sp.Basic):
        return sp.latex(value)
    return rf"\text{{{value}}}"


def autoactivation_table(rows: Iterable[str | sp.Expr | ParameterActivation] | str | sp.Expr | ParameterActivation
                         | None = None) -> AutoactivationTable:
    """Derive the seed's table for ``rows`` (default: its seven rows, then softplus and powerpropagation);
    a single name, formula or parameter activation is one row.

    Columns: A = g(W), dA/dW, dA/dW in terms of A, r(A), the mirror map psi, and the domain of W.
    A mirror map shown as "—" is not elementary.

    >>> print(autoactivation_table(["exp"]).markdown.splitlines()[2])
    | `exp(W)` | `exp(W)` | `A` | `A**2` | `-log(A)` | all real W |
    """
    if isinstance(rows, (str, sp.Basic, ParameterActivation)):
        rows = (rows,)   # one row: a string iterated would be one row per character ('e', 'x', 'p')
    names = rows if rows is not None else SEED_TABLE_ROWS + EXTRA_TABLE_ROWS
    pas = tuple(r if isinstance(r, ParameterActivation) else parameter_activation(r) for r in names)
    md = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    tex = [r"\begin{array}{" + "l" * len(_COLUMNS) + "}",
           r"A & \partial A/\partial W & \partial A/\partial W \text{ in } A & r(A) & \psi(A) & \text{domain} \\ \hline"]
    for pa in pas:
        vals = _row_values(pa)
        md.append("| " + " | ".join(_markdown_cell(v) for v in vals) + " |")
        tex.append(" & ".join(_latex_cell(v) for v in vals) + r" \\")
    tex.append(r"\end{array}")
    return AutoactivationTable(pas, "\n".join(md), "\n".join(tex))
