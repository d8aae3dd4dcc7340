r"""Entropy normalisation of a discrete distribution, symbolically (SymPy only).

Raising a distribution :math:`p = (p_1, \dots, p_n)` to a power and renormalising,

.. math::  \tilde p_i(\gamma) = \frac{p_i^\gamma}{\sum_j p_j^\gamma},

keeps the order of the probabilities and moves the entropy
:math:`H(\gamma) = -\sum_i \tilde p_i \log \tilde p_i` monotonically from
:math:`\log m` (:math:`\gamma = 0`; :math:`m` the number of non-zero :math:`p_i`, :math:`m = n`
without zeros) down to :math:`\log(\#\arg\max p)` (:math:`\gamma \to \infty`), strictly unless
:math:`p` is uniform on its support.  Its derivative is

.. math::  \frac{dH}{d\gamma} = -\gamma\, \mathrm{Var}_{\tilde p}[\log p],

so one Newton step from :math:`\gamma = 1` towards a target entropy :math:`H^*` is the
first-order update (Su Jianlin, "Entropy normalisation of a probability distribution")

.. math::  \gamma = 1 + \frac{H^* - H}{H^2 - \mathbb E_p[(\log p)^2]},

because :math:`H^2 - \mathbb E[(\log p)^2] = -\mathrm{Var}_p[\log p]`.  Applying that update
to :math:`\tilde p(\Gamma)` and multiplying exponents, :math:`\Gamma \mapsto \Gamma\gamma`,
*is* Newton's method on the total exponent :math:`\Gamma` (see
:func:`newton_step_total_exponent`; the identity is proven in ``tests/test_entropy.py``).

Every function takes the distribution as a sequence of SymPy expressions (symbols or
numbers) and returns SymPy expressions; nothing is evaluated numerically here except the
checks of numeric input: entries must be non-negative reals (else
:class:`~symact.errors.DomainError`), and :func:`entropy` and :func:`first_order_update`
need them to sum to 1 (within ``SUM_TOLERANCE``).  Zero entries are allowed everywhere:
:math:`0 \log 0 = 0`, and they stay 0 under every power.  The numeric
solver lives in :mod:`numeric.entropy`.

>>> import sympy
>>> p = sympy.symbols("p1:4", positive=True)
>>> g = sympy.Symbol("gamma", positive=True)
>>> H = entropy_of_power(p, g)
>>> sympy.simplify(sympy.diff(H, g) - entropy_derivative(p, g)) == 0
True
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy

from ._safe_parse import safe_sympify
from .errors import DomainError, is_whole_number

__all__ = [
    "entropy",
    "powered_distribution",
    "entropy_of_power",
    "log_moment",
    "log_variance",
    "entropy_derivative",
    "first_order_update",
    "newton_step_total_exponent",
]


#: How far the sum of numeric probabilities may be from 1 where a function needs a normalised p.
SUM_TOLERANCE = 1e-12


def _as_exprs(p: Sequence, normalised: bool = False) -> tuple[sympy.Expr, ...]:
    """The entries as SymPy expressions, checked: numeric entries must be real and non-negative and, where
    ``normalised``, the entries must sum to 1 (checked when all are numbers; symbols are taken on trust)."""
    if isinstance(p, (str, bytes, dict)):
        # list("0.5") is ['0', '.', '5'] and list("abc") three symbols a, b, c; a dict would give its keys
        raise DomainError(f"a distribution is a sequence of probabilities, got the {type(p).__name__} {p!r}; "
                          "pass a list or tuple, e.g. [1/2, 1/2] or ['0.5', '0.5']")
    try:
        items = list(p)
    except TypeError:
        raise DomainError(f"a distribution is a sequence of probabilities, got {p!r}; pass e.g. [1/2, 1/2]") from None
    exprs = tuple(safe_sympify(pi, "probability") for pi in items)
    if len(exprs) < 1:
        raise DomainError("a distribution needs at least one probability; pass a non-empty sequence")
    for i, pi in enumerate(exprs):
        if not isinstance(pi, sympy.Expr):
            raise DomainError(f"probability p[{i}] = {pi!r} is not a number or expression")
        if pi.is_number:
            value = sympy.N(pi, 30)
            if value.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo) or not value.is_real or value < 0:
                raise DomainError(
                    f"probability p[{i}] = {pi} is not a non-negative real number; probabilities must be "
                    "non-negative reals (zeros are allowed: 0*log(0) counts as 0)"
                )
    if all(pi.is_zero for pi in exprs):
        raise DomainError("every probability is 0; a distribution needs at least one non-zero entry")
    if normalised and all(pi.is_number for pi in exprs):
        total = sympy.N(sum(exprs), 30)
        if abs(total - 1) > SUM_TOLERANCE:
            raise DomainError(
                f"the probabilities sum to {sympy.N(total, 15)}, not 1; divide each by their sum (this "
                "function needs a normalised distribution; powered_distribution and entropy_of_power accept "
                "any non-negative weights)"
            )
    return exprs


def _scalar(value, what: str, hint: str) -> sympy.Expr:
    """A power or a target entropy as a SymPy expression; a number must be real and finite.  NaN, oo and
    complex numbers were taken as they came, and every result was nan (entropy_of_power(p, oo): nan, not
    its limit log k) or complex, silently."""
    expr = safe_sympify(value, what)
    if not isinstance(expr, sympy.Expr):
        raise DomainError(f"{what} = {value!r} is not a number or expression; {hint}")
    if expr.is_number:
        number = sympy.N(expr, 30)
        if number.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo) or not number.is_real:
            raise DomainError(f"{what} = {value} is not a finite real number; {hint}")
    return expr


_GAMMA_HINT = ("pass a finite power (gamma -> oo is the uniform distribution on the largest entries, "
               "entropy log k; gamma = 0 the uniform one on the support, entropy log m)")
_TARGET_HINT = "pass a target entropy in nats, a finite number in [0, log m]"


def _support(ps: tuple[sympy.Expr, ...]) -> tuple[sympy.Expr, ...]:
    """The probabilities that are not exactly 0: 0*log(0) is 0 (its limit), not SymPy's nan."""
    return tuple(pi for pi in ps if not pi.is_zero)


def _equal_numbers(a: sympy.Expr, b: sympy.Expr) -> bool:
    """Whether two numeric expressions are equal.  N(a - b, 30) alone misses equal numbers written in different
    forms: for (1 + sqrt 2)^2 / (2 (3 + 2 sqrt 2)) - 1/2 it gives 0.e-165, a zero without significant digits that
    does not compare equal to 0; such an undecided tiny difference is settled by ``equals``."""
    difference = sympy.N(a - b, 30)
    if difference == 0:
        return True
    return bool(abs(difference) < sympy.Float("1e-25") and (a - b).equals(0))


def _refuse_uniform(ps: tuple[sympy.Expr, ...], what: str) -> None:
    """A distribution uniform on its support has Var[log p] = 0 under every power: H(gamma) = log m is
    constant, so a Newton step (division by H' = -gamma*Var) is undefined."""
    support = _support(ps)
    if all(pi.is_number for pi in support) and all(_equal_numbers(pi, support[0]) for pi in support[1:]):
        raise DomainError(
            f"{what} is undefined for a distribution uniform on its support ({len(support)} equal non-zero "
            f"entries): Var[log p] = 0, so H(gamma) = log({len(support)}) for every gamma and no power "
            "reaches another target entropy"
        )


def entropy(p: Sequence) -> sympy.Expr:
    r"""Shannon entropy :math:`-\sum_i p_i \log p_i` (natural log) of the given probabilities,
    with :math:`0 \log 0 = 0`.

    >>> entropy([sympy.Rational(1, 2), sympy.Rational(1, 2)])
    log(2)
    >>> entropy([1, 0])
    0
    """
    return sympy.expand_log(-sum(pi * sympy.log(pi) for pi in _support(_as_exprs(p, normalised=True))), force=False)


def powered_distribution(p: Sequence, gamma) -> tuple[sympy.Expr, ...]:
    r"""The power-transformed distribution :math:`p_i^\gamma / \sum_j p_j^\gamma`.

    ``p`` may be any non-negative weights (the result is normalised).  A zero entry stays 0 for every
    :math:`\gamma`, :math:`\gamma = 0` included (the convention :math:`0^\gamma = 0`: powers act on the
    support, as the limit :math:`\gamma \to 0^+` does), so :math:`\gamma = 0` gives the uniform
    distribution on the support and :func:`entropy_of_power` is its entropy.

    >>> powered_distribution([sympy.Rational(1, 4), sympy.Rational(3, 4)], 2)
    (1/10, 9/10)
    >>> powered_distribution([sympy.Rational(1, 2), sympy.Rational(1, 2), 0], 0)
    (1/2, 1/2, 0)
    """
    ps = _as_exprs(p)
    gamma = _scalar(gamma, "gamma", _GAMMA_HINT)
    total = sum(pi**gamma for pi in _support(ps))
    return tuple(sympy.S.Zero if pi.is_zero else pi**gamma / total for pi in ps)


def entropy_of_power(p: Sequence, gamma) -> sympy.Expr:
    r""":math:`H(\gamma)`, the entropy of :func:`powered_distribution`, written as
    :math:`\log Z - \gamma\,\mathbb E_{\tilde p}[\log p]` with :math:`Z = \sum_j p_j^\gamma`
    (equal to :math:`-\sum \tilde p_i\log\tilde p_i` because
    :math:`\log\tilde p_i = \gamma\log p_i - \log Z`)."""
    ps = _support(_as_exprs(p))  # a zero probability stays 0 under every power (see powered_distribution)
    gamma = _scalar(gamma, "gamma", _GAMMA_HINT)
    weights = [pi**gamma for pi in ps]
    total = sum(weights)
    return sympy.log(total) - gamma * sum(w * sympy.log(pi) for w, pi in zip(weights, ps)) / total


def log_moment(p: Sequence, order: int = 1, gamma=1) -> sympy.Expr:
    r""":math:`\mathbb E_{\tilde p(\gamma)}[(\log p)^k]`, the k-th moment of :math:`\log p` under the
    powered distribution (under :math:`p` itself for the default :math:`\gamma = 1`).  ``order`` is a whole
    number :math:`k \ge 0` (:math:`\log p < 0` for probabilities, so a fractional power of it is imaginary)."""
    if not is_whole_number(order, 0):
        raise DomainError(f"order must be a whole number >= 0 (the k of E[(log p)^k]), got {order!r}")
    ps = _support(_as_exprs(p))
    qs = powered_distribution(ps, gamma)
    return sum(q * sympy.log(pi) ** order for q, pi in zip(qs, ps))


def log_variance(p: Sequence, gamma=1) -> sympy.Expr:
    r""":math:`\mathrm{Var}_{\tilde p(\gamma)}[\log p] = \mathbb E[(\log p)^2] - \mathbb E[\log p]^2`."""
    return log_moment(p, 2, gamma) - log_moment(p, 1, gamma) ** 2


def entropy_derivative(p: Sequence, gamma) -> sympy.Expr:
    r"""The closed form :math:`dH/d\gamma = -\gamma\,\mathrm{Var}_{\tilde p(\gamma)}[\log p]`
    (an independent expression: compare it with ``sympy.diff(entropy_of_power(p, g), g)``)."""
    return -_scalar(gamma, "gamma", _GAMMA_HINT) * log_variance(p, gamma)


def first_order_update(q: Sequence, target_entropy) -> sympy.Expr:
    r"""The multiplier :math:`\gamma = 1 + (H^* - H)/(H^2 - \mathbb E_q[(\log q)^2])` of one
    entropy-normalisation step applied to the distribution ``q`` (all moments under ``q``,
    :math:`H = -\mathbb E_q[\log q]`).  It is the Newton step on :math:`H(\gamma)` from
    :math:`\gamma = 1`: the denominator equals :math:`-\mathrm{Var}_q[\log q] = H'(1)`.

    ``q`` must be normalised (its entries sum to 1) for :math:`H` to be its entropy; a numeric ``q`` that
    is not raises :class:`~symact.errors.DomainError`, as does one uniform on its support (no step moves
    its entropy).  Zero entries contribute nothing (:math:`0 \log 0 = 0`, also in the second moment).
    """
    qs = _as_exprs(q, normalised=True)
    _refuse_uniform(qs, "the first-order update")
    support = _support(qs)
    H = -sum(qi * sympy.log(qi) for qi in support)
    second = sum(qi * sympy.log(qi) ** 2 for qi in support)
    return 1 + (_scalar(target_entropy, "target_entropy", _TARGET_HINT) - H) / (H**2 - second)


def newton_step_total_exponent(p: Sequence, total_exponent, target_entropy) -> sympy.Expr:
    r"""One Newton step on :math:`H(\Gamma) = H^*` in the total exponent :math:`\Gamma`:
    :math:`\Gamma + (H^* - H(\Gamma)) / H'(\Gamma)` with :math:`H'(\Gamma) = -\Gamma\,
    \mathrm{Var}_{\tilde p(\Gamma)}[\log p]`.

    It equals ``total_exponent * first_order_update(powered_distribution(p, total_exponent),
    target_entropy)`` (zero entries of ``p`` included: they stay 0 and contribute nothing): iterating the first-order update and multiplying the exponents is
    Newton's method, hence converges quadratically near a simple root.
    """
    _refuse_uniform(_as_exprs(p), "the Newton step on the total exponent")
    G = _scalar(total_exponent, "total_exponent", "pass a finite non-zero exponent, e.g. 1 (p itself)")
    if G.is_zero:
        # H'(0) = -0 * Var = 0: the step divided by zero and came back as zoo
        raise DomainError("the Newton step on the total exponent is undefined at total_exponent = 0: H'(0) = "
                          "-0 * Var[log p] = 0 (H has its maximum log m there). Start from a non-zero exponent, "
                          "e.g. 1 (p itself)")
    target = _scalar(target_entropy, "target_entropy", _TARGET_HINT)
    return G + (target - entropy_of_power(p, G)) / entropy_derivative(p, G)
