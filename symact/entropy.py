r"""Entropy normalisation of a discrete distribution, symbolically (SymPy only).

Raising a distribution :math:`p = (p_1, \dots, p_n)` to a power and renormalising,

.. math::  \tilde p_i(\gamma) = \frac{p_i^\gamma}{\sum_j p_j^\gamma},

keeps the order of the probabilities and moves the entropy
:math:`H(\gamma) = -\sum_i \tilde p_i \log \tilde p_i` monotonically from
:math:`\log n` (:math:`\gamma = 0`) down to :math:`\log(\#\arg\max p)`
(:math:`\gamma \to \infty`).  Its derivative is

.. math::  \frac{dH}{d\gamma} = -\gamma\, \mathrm{Var}_{\tilde p}[\log p],

so one Newton step from :math:`\gamma = 1` towards a target entropy :math:`H^*` is the
first-order update (Su Jianlin, "Entropy normalisation of a probability distribution")

.. math::  \gamma = 1 + \frac{H^* - H}{H^2 - \mathbb E_p[(\log p)^2]},

because :math:`H^2 - \mathbb E[(\log p)^2] = -\mathrm{Var}_p[\log p]`.  Applying that update
to :math:`\tilde p(\Gamma)` and multiplying exponents, :math:`\Gamma \mapsto \Gamma\gamma`,
*is* Newton's method on the total exponent :math:`\Gamma` (see
:func:`newton_step_total_exponent`; the identity is proven in ``tests/test_entropy.py``).

Every function takes the distribution as a sequence of SymPy expressions (symbols or
numbers) and returns SymPy expressions; nothing is evaluated numerically here.  The numeric
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


def _as_exprs(p: Sequence) -> tuple[sympy.Expr, ...]:
    exprs = tuple(safe_sympify(pi, "probability") for pi in p)
    if len(exprs) < 1:
        raise ValueError("a distribution needs at least one probability; pass a non-empty sequence")
    return exprs


def _support(ps: tuple[sympy.Expr, ...]) -> tuple[sympy.Expr, ...]:
    """The probabilities that are not exactly 0: 0*log(0) is 0 (its limit), not SymPy's nan."""
    return tuple(pi for pi in ps if not pi.is_zero)


def entropy(p: Sequence) -> sympy.Expr:
    r"""Shannon entropy :math:`-\sum_i p_i \log p_i` (natural log) of the given probabilities,
    with :math:`0 \log 0 = 0`.

    >>> entropy([sympy.Rational(1, 2), sympy.Rational(1, 2)])
    log(2)
    >>> entropy([1, 0])
    0
    """
    return sympy.expand_log(-sum(pi * sympy.log(pi) for pi in _support(_as_exprs(p))), force=False)


def powered_distribution(p: Sequence, gamma) -> tuple[sympy.Expr, ...]:
    r"""The power-transformed distribution :math:`p_i^\gamma / \sum_j p_j^\gamma`.

    >>> powered_distribution([sympy.Rational(1, 4), sympy.Rational(3, 4)], 2)
    (1/10, 9/10)
    """
    ps = _as_exprs(p)
    gamma = safe_sympify(gamma, "gamma")
    total = sum(pi**gamma for pi in ps)
    return tuple(pi**gamma / total for pi in ps)


def entropy_of_power(p: Sequence, gamma) -> sympy.Expr:
    r""":math:`H(\gamma)`, the entropy of :func:`powered_distribution`, written as
    :math:`\log Z - \gamma\,\mathbb E_{\tilde p}[\log p]` with :math:`Z = \sum_j p_j^\gamma`
    (equal to :math:`-\sum \tilde p_i\log\tilde p_i` because
    :math:`\log\tilde p_i = \gamma\log p_i - \log Z`)."""
    ps = _support(_as_exprs(p))  # a zero probability stays 0 under a positive power
    gamma = safe_sympify(gamma, "gamma")
    weights = [pi**gamma for pi in ps]
    total = sum(weights)
    return sympy.log(total) - gamma * sum(w * sympy.log(pi) for w, pi in zip(weights, ps)) / total


def log_moment(p: Sequence, order: int = 1, gamma=1) -> sympy.Expr:
    r""":math:`\mathbb E_{\tilde p(\gamma)}[(\log p)^k]`, the k-th moment of :math:`\log p` under the
    powered distribution (under :math:`p` itself for the default :math:`\gamma = 1`)."""
    ps = _support(_as_exprs(p))
    qs = powered_distribution(ps, gamma)
    return sum(q * sympy.log(pi) ** order for q, pi in zip(qs, ps))


def log_variance(p: Sequence, gamma=1) -> sympy.Expr:
    r""":math:`\mathrm{Var}_{\tilde p(\gamma)}[\log p] = \mathbb E[(\log p)^2] - \mathbb E[\log p]^2`."""
    return log_moment(p, 2, gamma) - log_moment(p, 1, gamma) ** 2


def entropy_derivative(p: Sequence, gamma) -> sympy.Expr:
    r"""The closed form :math:`dH/d\gamma = -\gamma\,\mathrm{Var}_{\tilde p(\gamma)}[\log p]`
    (an independent expression: compare it with ``sympy.diff(entropy_of_power(p, g), g)``)."""
    return -safe_sympify(gamma, "gamma") * log_variance(p, gamma)


def first_order_update(q: Sequence, target_entropy) -> sympy.Expr:
    r"""The multiplier :math:`\gamma = 1 + (H^* - H)/(H^2 - \mathbb E_q[(\log q)^2])` of one
    entropy-normalisation step applied to the distribution ``q`` (all moments under ``q``,
    :math:`H = -\mathbb E_q[\log q]`).  It is the Newton step on :math:`H(\gamma)` from
    :math:`\gamma = 1`: the denominator equals :math:`-\mathrm{Var}_q[\log q] = H'(1)`.

    ``q`` must be normalised (its entries sum to 1) for :math:`H` to be its entropy.
    """
    qs = _as_exprs(q)
    H = -sum(qi * sympy.log(qi) for qi in qs)
    second = sum(qi * sympy.log(qi) ** 2 for qi in qs)
    return 1 + (safe_sympify(target_entropy, "target_entropy") - H) / (H**2 - second)


def newton_step_total_exponent(p: Sequence, total_exponent, target_entropy) -> sympy.Expr:
    r"""One Newton step on :math:`H(\Gamma) = H^*` in the total exponent :math:`\Gamma`:
    :math:`\Gamma + (H^* - H(\Gamma)) / H'(\Gamma)` with :math:`H'(\Gamma) = -\Gamma\,
    \mathrm{Var}_{\tilde p(\Gamma)}[\log p]`.

    It equals ``total_exponent * first_order_update(powered_distribution(p, total_exponent),
    target_entropy)``: iterating the first-order update and multiplying the exponents is
    Newton's method, hence converges quadratically near a simple root.
    """
    G = safe_sympify(total_exponent, "total_exponent")
    return G + (safe_sympify(target_entropy, "target_entropy") - entropy_of_power(p, G)) / entropy_derivative(p, G)
