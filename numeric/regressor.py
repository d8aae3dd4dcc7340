"""Deep Universal Regressors I and II (seed 000, "The Deep Universal Regressor II").

DUR-I (the first post's head):   y = unsquash(mean_j squash(A_j))
DUR-II (a decision list):        y = 2**u + sum_{i=1..k} squash(A_i) * 2**(u - i),
                                 u = unsquash(mean_j squash(A_0j))

A_0 (``width`` units, averaged) and A_1..A_k are linear read-outs of features of the input (by default the
input itself; pass ``features=`` for a trunk network).  u sets the binary order of magnitude of y and each
term i refines it at scale 2**(u - i), so the head can represent values far outside the training range as
long as u can follow log2(y).

Squash/unsquash pairs (``squash=``), each an exact inverse pair on the squash's open range:

==============  ======================  ==========================  ========
name            squash(z)               unsquash(s)                 range
==============  ======================  ==========================  ========
``sigmoid``     1/(1+exp(-z))           log(s/(1-s))                (0, 1)
``tanh``        tanh(z)                 atanh(s)                    (-1, 1)
``algebraic``   z/sqrt(1+z**2)          s/sqrt(1-s**2)              (-1, 1)
``softsign``    z/(1+|z|)               s/(1-|s|)                   (-1, 1)
==============  ======================  ==========================  ========

The first post is not among the project's sources, so the two algebraic pairs are our choice of the
"algebraic" family; they saturate polynomially rather than exponentially, which matters in float64:
sigmoid(z) rounds to 1 for z > 37, making logit(sigmoid(z)) infinite, while the algebraic pair still
inverts z = 1e3 to about 10 digits.  The regressors do not compose the pair, though: they evaluate
unsquash(mean squash(A)) through :data:`UNSQUASH_OF_MEAN`, which computes 1 - s and 1 + s from A directly,
so u is exact to rounding however saturated the units are (for every pair, in float32 as in float64).

Regularisation ("the right term adjusted at the right moment").  :meth:`DeepUniversalRegressorII.order_penalty`
is  strength * sum_{i=1..k} growth**i * ||w_i||**2,  w_i the feature weights (not the bias) of read-out A_i.
The finer the term, the more it costs for it to depend on the input, so input dependence is learnt by u
first and by term i only for what the coarser terms cannot express; biases are free, so constant
corrections are never penalised.  growth = 4 makes the cost of term i grow like the inverse square of its
output scale 2**-i.  Add the penalty to the training loss.

Sign head (``sign_head=True``): y = tanh(sharpness * A_s) * |y| for a further read-out A_s, for targets of
both signs.

>>> import torch
>>> model = DeepUniversalRegressorII(in_features=2, k=4).double()
>>> model(torch.ones(3, 2, dtype=torch.float64)).shape
torch.Size([3])
"""

from __future__ import annotations

import math
import numbers
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from symact.errors import DomainError, is_whole_number

__all__ = ["SQUASH_PAIRS", "UNSQUASH_OF_MEAN", "squash_pair", "DeepUniversalRegressorI", "DeepUniversalRegressorII"]


def _algebraic(z: torch.Tensor) -> torch.Tensor:
    return z * torch.rsqrt(1 + z * z)


def _algebraic_inverse(s: torch.Tensor) -> torch.Tensor:
    # 1 - s*s as (1 - s)(1 + s) keeps the digits of a small 1 - s.
    return s * torch.rsqrt((1 - s) * (1 + s))


def _softsign(z: torch.Tensor) -> torch.Tensor:
    return z / (1 + z.abs())


def _softsign_inverse(s: torch.Tensor) -> torch.Tensor:
    return s / (1 - s.abs())


SquashPair = tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]


# unsquash(mean_j squash(z_j)) over the last dim, written so that no digit of 1 - s (or 1 + s) is lost: the plain
# composition rounds s to +-1 once the units saturate (sigmoid: z > 16.6 in float32, 36.7 in float64; tanh: 9 and
# 19; the algebraic pair loses ~1e-3 relative in 1 - s at z = 100 in float32), so u came out inf, or several % off,
# where y = 2**u is still representable.  Each form computes the complements 1 - s_j and 1 + s_j (for the sigmoid
# pair s_j and 1 - s_j) from z_j directly and averages them.


def _logit_of_mean_sigmoid(z: torch.Tensor) -> torch.Tensor:
    # mean sigmoid(z_j) = m and 1 - m = mean sigmoid(-z_j): logit(m) = log m - log(1 - m); the log(width) cancels
    return torch.logsumexp(F.logsigmoid(z), -1) - torch.logsumexp(F.logsigmoid(-z), -1)


def _atanh_of_mean_tanh(z: torch.Tensor) -> torch.Tensor:
    # tanh(z) = 2 sigmoid(2z) - 1, so atanh(mean tanh(z_j)) = atanh(2m - 1) = logit(m) / 2 with m = mean sigmoid(2 z_j)
    return 0.5 * _logit_of_mean_sigmoid(2 * z)


def _algebraic_of_mean(z: torch.Tensor) -> torch.Tensor:
    # with t = asinh(z) and r = sqrt(1 + z**2) = cosh(t), s = z/r = tanh(t) and 1 -+ s = exp(-+t)/r: their logs have
    # no cancellation; u = s / sqrt((1 - s)(1 + s)) with each complement averaged in the log domain
    r = torch.hypot(torch.ones_like(z), z)
    t, log_r = torch.asinh(z), torch.log(r)
    log_width = math.log(z.shape[-1])
    log_minus = torch.logsumexp(-t - log_r, -1) - log_width
    log_plus = torch.logsumexp(t - log_r, -1) - log_width
    return (z / r).mean(-1) * torch.exp(-0.5 * (log_minus + log_plus))


def _softsign_of_mean(z: torch.Tensor) -> torch.Tensor:
    # 1 - s = (1 + 2 relu(-z)) / (1 + |z|) and 1 + s = (1 + 2 relu(z)) / (1 + |z|) (halved: no overflow of 2|z|);
    # u = s / (1 - |s|), where 1 - |s| is the mean of 1 - s_j for s >= 0 and of 1 + s_j below
    half_denominator = 0.5 + 0.5 * z.abs()
    s = (z / (1 + z.abs())).mean(-1)
    minus = ((0.5 + torch.relu(-z)) / half_denominator).mean(-1)
    plus = ((0.5 + torch.relu(z)) / half_denominator).mean(-1)
    return s / torch.where(s >= 0, minus, plus)


#: name -> (squash, unsquash); unsquash(squash(z)) = z exactly in real arithmetic.
SQUASH_PAIRS: dict[str, SquashPair] = {
    "sigmoid": (torch.sigmoid, torch.logit),
    "tanh": (torch.tanh, torch.atanh),
    "algebraic": (_algebraic, _algebraic_inverse),
    "softsign": (_softsign, _softsign_inverse),
}

#: name -> z -> unsquash(mean(squash(z), -1)), evaluated without rounding s to +-1 (what the regressors use).
UNSQUASH_OF_MEAN: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": _logit_of_mean_sigmoid,
    "tanh": _atanh_of_mean_tanh,
    "algebraic": _algebraic_of_mean,
    "softsign": _softsign_of_mean,
}


def squash_pair(name: str) -> SquashPair:
    """(squash, unsquash) by name; see :data:`SQUASH_PAIRS`."""
    try:
        return SQUASH_PAIRS[name]
    except KeyError:
        raise DomainError(f"unknown squash pair {name!r}; use one of {sorted(SQUASH_PAIRS)}.") from None


def _check_width(width: int) -> int:
    # nn.Linear accepts 0 output units; the mean over no units is then NaN for every input.
    if not is_whole_number(width, 1):
        raise DomainError(f"width={width!r} must be a positive integer (the number of averaged A_0 units).")
    return int(width)


def _check_in_features(in_features: int) -> int:
    # nn.Linear accepts 0 input features: the readout is then its bias alone, a constant whatever x is.
    if not is_whole_number(in_features, 1):
        raise DomainError(f"in_features={in_features!r} must be a positive integer (the number of columns "
                          "the readout sees: x's, or the features trunk's output's).")
    return int(in_features)


class DeepUniversalRegressorI(nn.Module):
    """y = unsquash(mean_j squash(A_j)), A = Linear(features(x)) with ``width`` units.  Output shape (N,)."""

    def __init__(self, in_features: int, width: int = 4, squash: str = "sigmoid",
                 features: nn.Module | None = None) -> None:
        super().__init__()
        width, in_features = _check_width(width), _check_in_features(in_features)
        self.squash_name = squash
        self._squash = squash_pair(squash)[0]
        self._unsquash_of_mean = UNSQUASH_OF_MEAN[squash]
        self.features = features if features is not None else nn.Identity()
        self.readout = nn.Linear(in_features, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._unsquash_of_mean(self.readout(self.features(x)))

    def extra_repr(self) -> str:
        return f"squash={self.squash_name!r}"


class DeepUniversalRegressorII(nn.Module):
    """The decision-list regressor y = 2**u * (1 + sum_i squash(A_i) 2**-i), u = unsquash(mean squash(A_0)).

    ``k`` refinement terms, ``width`` averaged units in A_0, ``squash`` pair name, optional ``sign_head``
    and ``features`` trunk (its output must have ``in_features`` columns).  Output shape (N,).
    """

    def __init__(self, in_features: int, k: int = 8, width: int = 1, squash: str = "sigmoid",
                 sign_head: bool = False, sign_sharpness: float = 1.0,
                 features: nn.Module | None = None) -> None:
        super().__init__()
        if not is_whole_number(k):
            raise DomainError(f"k={k!r} must be an integer >= 0 (the number of refinement terms).")
        k, width, in_features = int(k), _check_width(width), _check_in_features(in_features)
        if sign_head and not (isinstance(sign_sharpness, numbers.Real) and not isinstance(sign_sharpness, bool)
                              and math.isfinite(sign_sharpness) and sign_sharpness > 0):
            # 0 makes y = tanh(0) * |y| = 0 for every input (no gradient reaches the model), nan makes it nan
            raise DomainError(f"sign_sharpness={sign_sharpness!r} must be a finite number > 0 (the slope of "
                              "tanh(sharpness * A_s) at A_s = 0).")
        self.k, self.squash_name, self.sign_sharpness = k, squash, float(sign_sharpness)
        self._squash = squash_pair(squash)[0]
        self._unsquash_of_mean = UNSQUASH_OF_MEAN[squash]
        self.features = features if features is not None else nn.Identity()
        self.readout_u = nn.Linear(in_features, width)
        self.readout_terms = nn.Linear(in_features, k) if k > 0 else None
        self.readout_sign = nn.Linear(in_features, 1) if sign_head else None
        self.register_buffer("_scales", 2.0 ** -torch.arange(1, k + 1, dtype=torch.get_default_dtype()),
                             persistent=False)

    def exponent(self, x: torch.Tensor) -> torch.Tensor:
        """u(x) = unsquash(mean squash(A_0)): y lies in [2**u, 2**(u+1)) for the sigmoid pair."""
        return self._unsquash_of_mean(self.readout_u(self.features(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        u = self._unsquash_of_mean(self.readout_u(f))
        mantissa = torch.ones_like(u)
        if self.readout_terms is not None:
            scales = self._scales.to(dtype=u.dtype, device=u.device)
            mantissa = mantissa + (self._squash(self.readout_terms(f)) * scales).sum(-1)
        y = torch.exp2(u) * mantissa
        if self.readout_sign is not None:
            y = torch.tanh(self.sign_sharpness * self.readout_sign(f)).squeeze(-1) * y
        return y

    def order_penalty(self, strength: float = 1e-4, growth: float = 4.0) -> torch.Tensor:
        """strength * sum_i growth**i * ||w_i||**2 over the feature weights of read-outs A_1..A_k.

        ``strength`` and ``growth`` must be finite numbers >= 0 (:class:`DomainError` otherwise): a negative
        strength, or a negative growth (growth**i < 0 for odd i), turns the penalty into a reward without
        bound below for growing weights."""
        for name, value in (("strength", strength), ("growth", growth)):
            if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
                    and value >= 0):
                raise DomainError(f"order_penalty {name}={value!r} must be a finite number >= 0; a negative or NaN "
                                  f"{name} makes the penalty negative or NaN (a reward for large refinement weights). "
                                  "Pass e.g. order_penalty(1e-4, growth=4.0).")
        if self.readout_terms is None:
            return self.readout_u.weight.new_zeros(())
        w = self.readout_terms.weight
        order = torch.arange(1, self.k + 1, dtype=w.dtype, device=w.device)
        return strength * (growth**order * (w * w).sum(-1)).sum()

    def extra_repr(self) -> str:
        return f"k={self.k}, squash={self.squash_name!r}, sign_head={self.readout_sign is not None}"
