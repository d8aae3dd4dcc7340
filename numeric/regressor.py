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
inverts z = 1e3 to about 10 digits.

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
from torch import nn

from symact.errors import DomainError, is_whole_number

__all__ = ["SQUASH_PAIRS", "squash_pair", "DeepUniversalRegressorI", "DeepUniversalRegressorII"]


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

#: name -> (squash, unsquash); unsquash(squash(z)) = z exactly in real arithmetic.
SQUASH_PAIRS: dict[str, SquashPair] = {
    "sigmoid": (torch.sigmoid, torch.logit),
    "tanh": (torch.tanh, torch.atanh),
    "algebraic": (_algebraic, _algebraic_inverse),
    "softsign": (_softsign, _softsign_inverse),
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
        self._squash, self._unsquash = squash_pair(squash)
        self.features = features if features is not None else nn.Identity()
        self.readout = nn.Linear(in_features, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._unsquash(self._squash(self.readout(self.features(x))).mean(-1))

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
        self._squash, self._unsquash = squash_pair(squash)
        self.features = features if features is not None else nn.Identity()
        self.readout_u = nn.Linear(in_features, width)
        self.readout_terms = nn.Linear(in_features, k) if k > 0 else None
        self.readout_sign = nn.Linear(in_features, 1) if sign_head else None
        self.register_buffer("_scales", 2.0 ** -torch.arange(1, k + 1, dtype=torch.get_default_dtype()),
                             persistent=False)

    def exponent(self, x: torch.Tensor) -> torch.Tensor:
        """u(x) = unsquash(mean squash(A_0)): y lies in [2**u, 2**(u+1)) for the sigmoid pair."""
        return self._unsquash(self._squash(self.readout_u(self.features(x))).mean(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        u = self._unsquash(self._squash(self.readout_u(f)).mean(-1))
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
