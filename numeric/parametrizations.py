"""Parameter activations as ``torch.nn.utils.parametrize`` parametrisations.

A layer's ``weight`` becomes A = g(W): the module keeps the unconstrained W (``parametrizations.weight.original``)
and recomputes A on access.  ``right_inverse`` is g^{-1} from :func:`symact.parameter_activation`, so
registering a parametrisation on an existing layer keeps its weights (exactly, up to float rounding).

Signed weights (the seed's remedies for its positive-only assumption):

* :class:`DifferenceParametrization`  A = g(W+) - g(W-)
* :class:`SoftSignParametrization`    A = tanh(k*S) * g(W)
* :class:`SecondLayerParametrization` A = V @ g(W) (a second, signed linear layer over positive weights)

>>> import torch, numeric
>>> layer = numeric.parametrize_model(torch.nn.Linear(3, 2), "exp", signed="difference")
>>> layer.weight.shape
torch.Size([2, 3])
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Iterable, Sequence

import sympy as sp
import torch
from torch import nn
from torch.nn.utils import parametrize as torch_parametrize

import symact
from symact.errors import DomainError, FormulaError
from symact.parametrize import ParameterActivation

__all__ = [
    "ParameterActivationParametrization",
    "DifferenceParametrization",
    "SoftSignParametrization",
    "SecondLayerParametrization",
    "parametrization",
    "parametrize_model",
    "sympy_to_torch",
]


def sympy_to_torch(expr: sp.Expr, symbol: sp.Symbol) -> Callable[[torch.Tensor], torch.Tensor]:
    """Elementwise torch function of one tensor computing ``expr`` (a SymPy expression in ``symbol``).

    The single place where this module turns SymPy into torch: it delegates to the project's code
    generator :func:`numeric.torch_function` (safe forms, hand-written backward), writing ``expr`` in the
    generator's input symbol ``x``.

    >>> f = sympy_to_torch(sp.exp(symact.parametrize.W), symact.parametrize.W)
    >>> f(torch.zeros(2))
    tensor([1., 1.])
    """
    from .codegen import torch_function

    # real only where it is applied (log(A) on exp's range A > 0): the real-line check is not for it
    fn = torch_function(expr.subs(symbol, _CODEGEN_INPUT), real_line=False)
    return fn.apply


# The code generator's input symbol (symact.x).
_CODEGEN_INPUT = sp.Symbol("x", real=True)


def _as_parameter_activation(g: str | sp.Expr | ParameterActivation, params: dict[str, Any]) -> ParameterActivation:
    if isinstance(g, ParameterActivation):
        return g.with_params(**params) if params else g
    return _cached_parameter_activation(g, tuple(sorted(params.items())), None)


@functools.lru_cache(maxsize=128)
def _cached_parameter_activation(g: str | sp.Expr, params: tuple, domain: str | None) -> ParameterActivation:
    # Deriving an inverse costs SymPy time; a model has many layers with the same g.  The objects are
    # immutable (their derived attributes are cached values of fixed inputs), so sharing them is safe.
    return symact.parameter_activation(g, domain=domain, **dict(params))


def _torch_inverse(pa: ParameterActivation) -> Callable[[torch.Tensor], torch.Tensor]:
    """g^{-1} as a torch function (for ``right_inverse``).  Inverse hyperbolic functions the code generator
    has no rule for (atanh for A = tanh(W), acosh, acoth) are written through logs, which it has;
    an inverse with no torch form (LambertW, erfinv) is a FormulaError that says so."""
    inverse = pa.concrete(pa.inverse)
    try:
        return sympy_to_torch(inverse, pa.A)
    except FormulaError as err:
        through_logs = inverse.rewrite(sp.log)
        translated = None
        if through_logs != inverse:
            try:
                translated = sympy_to_torch(through_logs, pa.A)
            except FormulaError:  # neither form translates: the error below names the inverse
                translated = None
        if translated is not None:
            return translated
        raise FormulaError(
            f"A = {pa.concrete(pa.g)} cannot be a parametrisation: right_inverse needs g^-1(A) = {inverse}, "
            f"which has no PyTorch translation ({err}). Choose a g whose inverse is elementary "
            "(exp, log, powers, tanh, sigmoid, softplus, ...).") from err


def _range_bounds(pa: ParameterActivation) -> tuple[float, float, bool, bool] | None:
    rng = pa.concrete(pa.range) if pa.range is not None else None
    if isinstance(rng, sp.Interval):
        return float(rng.inf), float(rng.sup), bool(rng.left_open), bool(rng.right_open)
    return None


class ParameterActivationParametrization(nn.Module):
    """A = g(W) elementwise; ``right_inverse`` = g^{-1} on the domain stated by the symbolic object.

    >>> p = ParameterActivationParametrization("exp")
    >>> p
    ParameterActivationParametrization(A = exp(W), W in Reals)
    >>> torch.allclose(p(p.right_inverse(torch.tensor([0.5, 2.0]))), torch.tensor([0.5, 2.0]))
    True
    """

    def __init__(self, g: str | sp.Expr | ParameterActivation = "exp", **params: Any) -> None:
        super().__init__()
        self.activation = _as_parameter_activation(g, params)
        # Numbers need the parameters' values; re-derive with them substituted (same function, same domain).
        pa = self.activation
        if pa.params:
            pa = _cached_parameter_activation(pa.concrete(pa.g), (), pa.requested_domain)
        self._concrete = pa
        self._g = sympy_to_torch(pa.concrete(pa.g), pa.W)
        self._g_inverse = _torch_inverse(pa)
        self._bounds = _range_bounds(pa)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self._g(weight)

    def in_range(self, value: torch.Tensor) -> torch.Tensor:
        """Boolean mask: entries of ``value`` that g can produce (so g^{-1} is defined there)."""
        ok = torch.isfinite(value)
        if self._bounds is not None:
            lo, hi, lo_open, hi_open = self._bounds
            ok &= (value > lo) if lo_open else (value >= lo)
            ok &= (value < hi) if hi_open else (value <= hi)
        return ok

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        ok = self.in_range(value)
        if not bool(ok.all()):
            bad = value[~ok].flatten()[:3].tolist()
            raise DomainError(
                f"A = {self.activation.g} cannot take the value(s) {bad} ({int((~ok).sum())} of {value.numel()} "
                f"entries; its range is {self.activation.range}). Use a signed parametrisation "
                "(signed='difference', 'soft_sign' or 'second_layer') for weights outside that range."
            )
        weight = self._g_inverse(value)
        if not bool(torch.isfinite(weight).all()):
            raise DomainError(f"g^-1 = {self.activation.inverse} produced non-finite values; rescale the weights.")
        return weight

    def offset(self) -> float:
        """A value g surely takes: g(0) if 0 is in the domain, else g(1).  Used by the signed forms."""
        pa = self._concrete
        w0 = 0 if pa.domain.contains(0) is sp.true else 1
        return float(pa.g.subs(pa.W, w0))

    def extra_repr(self) -> str:
        pa = self.activation
        pars = "".join(f", {s}={v}" for s, v in pa.params.items())
        return f"A = {pa.g}{pars}, W in {pa.domain}"


class DifferenceParametrization(nn.Module):
    """A = g(W+) - g(W-) from two tensors of A's shape.

    ``right_inverse(A)`` = (g^{-1}(relu(A) + c), g^{-1}(relu(-A) + c)) with c = g(0) (or g(1) when 0 is not in
    the domain), a value inside g's range; so g(W+) - g(W-) = A up to rounding of c.
    """

    def __init__(self, g: str | sp.Expr | ParameterActivation = "exp", **params: Any) -> None:
        super().__init__()
        self.base = ParameterActivationParametrization(g, **params)
        self.c = self.base.offset()

    def forward(self, w_plus: torch.Tensor, w_minus: torch.Tensor) -> torch.Tensor:
        return self.base(w_plus) - self.base(w_minus)

    def right_inverse(self, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.base.right_inverse(torch.relu(value) + self.c),
                self.base.right_inverse(torch.relu(-value) + self.c))

    def extra_repr(self) -> str:
        return f"A = g(W+) - g(W-), g = {self.base.activation.g}, c = {self.c:g}"


class SoftSignParametrization(nn.Module):
    """A = tanh(k*S) * g(W) with a learned soft sign S (same shape as A) and fixed sharpness k.

    ``right_inverse(A)``: S = sign(A)/k (so tanh(k*S) = +-tanh(1)), W = g^{-1}(|A|/tanh(1)); where A = 0,
    S = 0 and W = g^{-1}(c) with c = g(0) or g(1).  Needs |A|/tanh(1) inside g's range.
    """

    def __init__(self, g: str | sp.Expr | ParameterActivation = "exp", k: float = 1.0, **params: Any) -> None:
        super().__init__()
        if not k > 0:
            raise DomainError(f"soft-sign sharpness k={k} must be positive.")
        self.base = ParameterActivationParametrization(g, **params)
        self.k = float(k)

    def forward(self, weight: torch.Tensor, sign_logit: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.k * sign_logit) * self.base(weight)

    def right_inverse(self, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sign = torch.sign(value)
        magnitude = torch.where(sign == 0, torch.full_like(value, self.base.offset()), value.abs() / math.tanh(1.0))
        return self.base.right_inverse(magnitude), sign / self.k

    def extra_repr(self) -> str:
        return f"A = tanh({self.k:g}*S) * g(W), g = {self.base.activation.g}"


class SecondLayerParametrization(nn.Module):
    """A = V @ g(W): positive weights g(W) of shape (m, n) mixed by a signed learned V of shape (out, m).

    A of shape (out, *rest) is handled as (out, n), n = prod(rest).  ``right_inverse(A)`` uses m = 2*out,
    V = [I, -I] and g(W) = [relu(A) + c; relu(-A) + c], which reproduces A exactly (c cancels); V and W then
    train freely, so the second layer can learn any signed mixture.
    """

    def __init__(self, g: str | sp.Expr | ParameterActivation = "exp", **params: Any) -> None:
        super().__init__()
        self.base = ParameterActivationParametrization(g, **params)
        self.c = self.base.offset()
        self.shape: tuple[int, ...] | None = None

    def forward(self, weight: torch.Tensor, mixing: torch.Tensor) -> torch.Tensor:
        out = mixing @ self.base(weight)
        return out.reshape(self.shape) if self.shape is not None else out

    def right_inverse(self, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.shape = tuple(value.shape)
        flat = value.reshape(value.shape[0], -1)
        positive = torch.cat([torch.relu(flat), torch.relu(-flat)], dim=0) + self.c
        eye = torch.eye(flat.shape[0], dtype=value.dtype, device=value.device)
        return self.base.right_inverse(positive), torch.cat([eye, -eye], dim=1)

    def extra_repr(self) -> str:
        return f"A = V @ g(W), g = {self.base.activation.g}"


_SIGNED = {
    None: ParameterActivationParametrization,
    "difference": DifferenceParametrization,
    "soft_sign": SoftSignParametrization,
    "second_layer": SecondLayerParametrization,
}


def parametrization(g: str | sp.Expr | ParameterActivation = "exp", signed: str | None = None,
                    **params: Any) -> nn.Module:
    """The parametrisation module for g; ``signed`` in (None, 'difference', 'soft_sign', 'second_layer')."""
    if signed not in _SIGNED:
        raise FormulaError(f"signed={signed!r} is unknown; use one of {list(_SIGNED)}.")
    return _SIGNED[signed](g, **params)


DEFAULT_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def parametrize_model(model: nn.Module, g: str | sp.Expr | ParameterActivation = "exp", *,
                      include: Sequence[type[nn.Module]] | type[nn.Module] = DEFAULT_LAYERS,
                      signed: str | None = None, tensor_names: Iterable[str] = ("weight",),
                      **params: Any) -> nn.Module:
    """Register A = g(W) on every ``tensor_names`` tensor of every ``include`` layer of ``model``, in place.

    Existing weights are kept (through ``right_inverse``); weights outside g's range raise
    :class:`~symact.errors.DomainError` -- pass ``signed=`` for signed weights.  Returns ``model``.

    >>> net = parametrize_model(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1)), "exp",
    ...                         signed="soft_sign", k=2.0)
    >>> sum(torch_parametrize.is_parametrized(m) for m in net)
    2
    """
    include = tuple(include) if isinstance(include, (list, tuple)) else (include,)
    modules = [m for m in model.modules() if isinstance(m, include)]
    for module in modules:
        for name in tensor_names:
            if getattr(module, name, None) is None:
                continue
            torch_parametrize.register_parametrization(module, name, parametrization(g, signed, **params))
    return model
