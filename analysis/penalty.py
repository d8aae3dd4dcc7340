r"""The inequality between the input-gradient and the parameter-gradient penalty of an MLP.

For an MLP written as layers :math:`z^{(t+1)} = W^{(t)} h^{(t)} + b^{(t)}`,
:math:`h^{(t+1)} = g^{(t)}(z^{(t+1)})`, :math:`t = 1..l`, with :math:`h^{(1)} = x`, and any scalar
:math:`f` of the output (after Dherin et al., "The Geometric Occam's Razor Implicit in Deep
Learning", as written up by Su Jianlin):

.. math::
   \|\nabla_x f\|^2 \sum_{t=1}^{l} \frac{1 + \|h^{(t)}\|^2}{\|W^{(t)}\|^2\,\|\nabla_x h^{(t)}\|^2}
   \;\le\; \|\nabla_\theta f\|^2 .

Why: :math:`\nabla_{W^{(t)}} f = \delta_t h^{(t)\top}` and :math:`\nabla_{b^{(t)}} f = \delta_t` with
:math:`\delta_t = \partial f/\partial z^{(t+1)}`, so the layer's share of
:math:`\|\nabla_\theta f\|^2` is :math:`\|\delta_t\|^2 (1 + \|h^{(t)}\|^2)`; and
:math:`\nabla_x f = (\nabla_x h^{(t)})^\top W^{(t)\top} \delta_t` gives
:math:`\|\nabla_x f\| \le \|W^{(t)}\|\,\|\nabla_x h^{(t)}\|\,\|\delta_t\|`.  Each layer's term is
therefore bounded by its own parameter-gradient share, and summing gives the inequality.
The bound holds for the spectral norm (operator 2-norm) and hence for the Frobenius norm
(:math:`\|A\|_2 \le \|A\|_F` only shrinks the left side); with the spectral norm it is an
equality for a single layer with scalar output (:math:`\nabla_x h^{(1)} = I`, rank-one W).

Here ``h_t`` is the input of the t-th ``nn.Linear`` of an ``nn.Sequential``; whatever sits between
two Linear layers (activations, even non-elementwise ones) belongs to :math:`g`.  A Linear without
bias contributes :math:`\|h\|^2` instead of :math:`1 + \|h\|^2` (there is no :math:`b` to
differentiate).  Parameters outside the Linear layers (e.g. ``nn.PReLU``) only add to
:math:`\|\nabla_\theta f\|^2`; they are reported separately and included in the right side.  A Linear
whose weight is computed from other parameters (``weight_norm``, ``spectral_norm``) is refused: the
gradient in those parameters is not :math:`\nabla_W f`.

>>> import torch
>>> torch.manual_seed(0) and None
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()
>>> r = gradient_penalty_inequality(net, torch.randn(3, dtype=torch.float64))
>>> r.holds, r.slack >= 0
(True, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from symact.errors import DomainError

__all__ = ["LayerPenaltyTerm", "PenaltyInequality", "gradient_penalty_inequality"]


@dataclass(frozen=True)
class LayerPenaltyTerm:
    r"""One layer's contribution.

    ``bound_term`` = :math:`\|\nabla_x f\|^2 (\beta + \|h_t\|^2)/(\|W_t\|^2\|\nabla_x h_t\|^2)`
    (:math:`\beta` = 1 with bias, 0 without; 0 when :math:`\nabla_x f = 0`) and
    ``parameter_gradient_norm_sq`` = :math:`\|\nabla_{W_t} f\|^2 + \|\nabla_{b_t} f\|^2`; the
    per-layer inequality is ``bound_term <= parameter_gradient_norm_sq``.
    """

    index: int  # t, 1-based as in the formula (the t-th nn.Linear)
    input_norm_sq: float
    weight_norm_sq: float
    jacobian_norm_sq: float
    bound_term: float
    parameter_gradient_norm_sq: float

    @property
    def slack(self) -> float:
        return self.parameter_gradient_norm_sq - self.bound_term


@dataclass(frozen=True)
class PenaltyInequality:
    r"""Both sides of the inequality at one input.

    ``lhs`` = sum of the layers' ``bound_term``; ``rhs`` = :math:`\|\nabla_\theta f\|^2` over all
    parameters (Linear layers plus ``other_parameter_gradient_norm_sq``); ``slack = rhs - lhs``;
    ``holds`` allows a relative rounding error of ``tolerance``.
    """

    norm: str
    input_gradient_norm_sq: float
    layers: tuple[LayerPenaltyTerm, ...]
    other_parameter_gradient_norm_sq: float
    lhs: float
    rhs: float
    tolerance: float

    @property
    def slack(self) -> float:
        return self.rhs - self.lhs

    @property
    def ratio(self) -> float:
        """lhs / rhs (1 means the bound is tight); inf when only the right side is 0 (the bound fails: a
        positive left side over nothing), nan when both sides are 0 or either is nan."""
        if self.rhs:
            return self.lhs / self.rhs
        # lhs > 0 = rhs gave nan next to holds=False, and the suite's worst ratio left the nan out
        return float("nan") if self.lhs == 0 or math.isnan(self.lhs) else math.copysign(math.inf, self.lhs)

    @property
    def holds(self) -> bool:
        return self.lhs <= self.rhs * (1 + self.tolerance)

    def __repr__(self) -> str:
        return (f"PenaltyInequality(norm={self.norm!r}, lhs={self.lhs:.6g}, rhs={self.rhs:.6g}, "
                f"slack={self.slack:.6g}, ratio={self.ratio:.6g}, layers={len(self.layers)}, holds={self.holds})")


def _norm_sq(matrix: torch.Tensor, norm: str) -> float:
    """The squared spectral or Frobenius norm of ``matrix``, computed in float64 from its values (squares in
    float32 underflow below 1e-23 and overflow above 1e19, in float16 below 1e-4 and above 256, and
    ``linalg.matrix_norm`` refuses float16 and bfloat16)."""
    matrix = matrix.detach().to(torch.float64)
    if norm == "spectral":
        return float(torch.linalg.matrix_norm(matrix, ord=2) ** 2)
    return float((matrix**2).sum())


def _sum_sq(tensor: torch.Tensor) -> float:
    """Sum of squares of ``tensor``'s entries, in float64 (see :func:`_norm_sq`)."""
    return float((tensor.detach().to(torch.float64) ** 2).sum())


def gradient_penalty_inequality(
    model: nn.Sequential,
    x: torch.Tensor,
    f: Callable[[torch.Tensor], torch.Tensor] | None = None,
    norm: Literal["spectral", "frobenius"] = "spectral",
) -> PenaltyInequality:
    r"""Evaluate both sides of the gradient-penalty inequality for ``model`` at one input ``x``.

    ``model``: an ``nn.Sequential`` whose ``nn.Linear`` layers are the :math:`W^{(t)}, b^{(t)}`
    (any differentiable modules between them); ``x``: a 1-D input; ``f``: scalar function of the
    output (default: the sum of the outputs); ``norm``: ``"spectral"`` or ``"frobenius"`` for both
    :math:`\|W_t\|` and :math:`\|\nabla_x h_t\|`.  Work in float64 for tight comparisons; the
    tolerance in the result is 64 machine epsilons of the model's dtype.  The network is evaluated in its
    dtype (float16 and bfloat16 too); the squared norms are summed in float64 from those values, so they
    neither underflow nor overflow.  A pass that overflows the dtype is refused (:class:`DomainError`).
    """
    if not isinstance(model, nn.Sequential):
        raise DomainError(f"model must be an nn.Sequential of Linear layers and activations, got {type(model).__name__}; "
                          "wrap your layers in nn.Sequential")
    if norm not in ("spectral", "frobenius"):
        raise DomainError(f"norm must be 'spectral' or 'frobenius', got {norm!r}")
    linear_positions = [i for i, m in enumerate(model) if isinstance(m, nn.Linear)]
    if not linear_positions:
        raise DomainError("model has no nn.Linear layer; the inequality is about Linear weights")
    weights = [model[i].weight for i in linear_positions]
    if len({id(w) for w in weights}) < len(weights):
        raise DomainError("model uses one Linear weight at several positions; the inequality gives every "
                          "position its own W^(t), b^(t) (a shared weight's gradient is the sum over its uses): "
                          "use separate nn.Linear layers")
    # weight_norm / spectral_norm (parametrize or the older hooks) compute W from other parameters: grad_theta f is
    # then the gradient in (g, v), not in W, and one Linear(3, 1) under weight_norm reported holds=False (lhs 5.7,
    # rhs 1: only the bias counted as the layer's share)
    own = {id(p) for p in model.parameters()}
    for pos in linear_positions:
        layer = model[pos]
        derived = [name for name in ("weight", "bias") if getattr(layer, name) is not None
                   and id(getattr(layer, name)) not in own]
        if derived:
            raise DomainError(
                f"the Linear layer at position {pos} computes its {' and '.join(derived)} from other parameters (a "
                "parametrisation such as weight_norm or spectral_norm); the inequality is about the gradient with "
                "respect to W and b themselves. Remove it first, keeping the current values: "
                f"torch.nn.utils.parametrize.remove_parametrizations(model[{pos}], 'weight') (or "
                "torch.nn.utils.remove_weight_norm / remove_spectral_norm for the older hooks)")
    # RReLU in training mode draws its negative slopes per evaluation like dropout its masks: the
    # Jacobians and the gradients saw different networks and holds=False came back for 18 of 200 random MLPs
    random_in_training = [type(m).__name__ for m in model.modules()
                          if m.training and ((isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0)
                                             or (isinstance(m, nn.RReLU) and m.lower != m.upper))]
    if random_in_training:
        raise DomainError(f"model is in training mode with {', '.join(sorted(set(random_in_training)))}, so every "
                          "evaluation draws another random mask or slope and the two sides see different "
                          "functions; call model.eval() first")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise DomainError(f"x must be a floating-point torch tensor, got "
                          f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}; "
                          "pass e.g. torch.tensor(values, dtype=torch.float64)")
    if x.dim() != 1:
        raise DomainError(f"x must be one input vector (1-D), got shape {tuple(x.shape)}; loop over a batch")
    # a NaN reached torch's SVD as a bare "linalg.svd: The algorithm failed to converge"; an inf in x gave
    # lhs 0, rhs nan and holds=False, a failed inequality for an input it says nothing about
    if not bool(torch.isfinite(x).all()):
        raise DomainError(f"x has non-finite entries ({x.tolist()}); the inequality is about finite inputs")
    bad = [name for name, p in model.named_parameters() if p.is_floating_point() and not bool(torch.isfinite(p).all())]
    if bad:
        raise DomainError(f"model parameters {', '.join(bad)} have non-finite entries (nan or inf); the inequality "
                          "is about a network with finite weights: re-initialise them")
    model_dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if model_dtypes - {x.dtype}:
        # the tolerance is set by the dtype, and torch refuses mixed Linear inputs with a bare "mat1 and mat2" error
        names = ", ".join(sorted(str(d) for d in model_dtypes))
        raise DomainError(f"x is {x.dtype} but the model's parameters are {names}; use one dtype for both "
                          f"(model.to({x.dtype}), or x.to(<the model's dtype>))")
    f = f if f is not None else (lambda y: y.sum())
    x = x.detach()

    def layer_inputs(inp: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hs, h = [], inp
        for i, module in enumerate(model):
            if i in linear_positions:
                hs.append(h)
            h = module(h)
        return tuple(hs)

    # Jacobians d h_t / d x (h_1 = x gives the identity)
    jacobians = torch.autograd.functional.jacobian(layer_inputs, x)
    with torch.no_grad():
        hs = layer_inputs(x)
    # the derivation takes each Linear's input as one vector h_t (grad_W f = delta h^T, one outer product); a
    # layer that sees a batch of vectors (nn.Unflatten before it) has grad_W f = sum_k delta_k h_k^T, which can
    # cancel: 'holds' came out False for such nets, and the spectral norm raised a bare ValueError
    for t, pos in enumerate(linear_positions):
        if hs[t].dim() != 1:
            raise DomainError(f"the Linear layer at position {pos} receives a tensor of shape {tuple(hs[t].shape)}, "
                              "not one vector; the inequality is derived for layers that each see one activation "
                              "vector (remove the reshaping before it, or apply the bound per vector)")

    # theta is every parameter, frozen ones (requires_grad=False) too: the inequality is about the
    # function's gradient, not about what an optimiser updates.  Differentiate detached copies so
    # that the model's own requires_grad flags and .grad fields are left as they are.
    named = dict(model.named_parameters())
    copies = {name: p.detach().clone().requires_grad_(True) for name, p in named.items()}
    x_req = x.clone().requires_grad_(True)
    out = f(torch.func.functional_call(model, copies, (x_req,)))
    if out.numel() != 1:
        raise DomainError(f"f must return a scalar, got shape {tuple(out.shape)}")
    params = list(named.values())
    grads = torch.autograd.grad(out.reshape(()), [x_req, *copies.values()], allow_unused=True)
    grad_x, param_grads = grads[0], grads[1:]
    grad_of = {id(p): (g if g is not None else torch.zeros_like(p)) for p, g in zip(params, param_grads)}
    # a forward or backward pass that overflowed the dtype (float16 beyond 65504) gave lhs = nan and
    # holds=False: a failed inequality for a network it says nothing about
    computed = [("f", out), ("the input gradient", grad_x), *(("the layer inputs", h) for h in hs),
                *(("the Jacobians", j) for j in jacobians), *(("the parameter gradients", g) for g in grad_of.values())]
    overflowed = next((what for what, tensor in computed if not bool(torch.isfinite(tensor).all())), None)
    if overflowed is not None:
        raise DomainError(f"{overflowed} of the model at x overflowed in {x.dtype} (non-finite entries); evaluate "
                          "the inequality in float64: model.double() and x.double()")
    grad_x_sq = _sum_sq(grad_x)

    layers, linear_param_ids = [], set()
    for t, pos in enumerate(linear_positions):
        layer: nn.Linear = model[pos]
        has_bias = layer.bias is not None
        share = _sum_sq(grad_of.get(id(layer.weight), torch.zeros(())))
        linear_param_ids.add(id(layer.weight))
        if has_bias:
            share += _sum_sq(grad_of.get(id(layer.bias), torch.zeros(())))
            linear_param_ids.add(id(layer.bias))
        h_sq = _sum_sq(hs[t])
        w_sq = _norm_sq(layer.weight, norm)
        j_sq = _norm_sq(jacobians[t], norm)
        numerator = (1.0 if has_bias else 0.0) + h_sq
        # grad_x f = J^T W^T delta: if it is non-zero, so are W and J; if it is zero the term is 0
        term = 0.0 if grad_x_sq == 0 else grad_x_sq * numerator / (w_sq * j_sq)
        layers.append(LayerPenaltyTerm(t + 1, h_sq, w_sq, j_sq, term, share))
    other = sum((_sum_sq(grad_of[id(p)]) for p in params if id(p) not in linear_param_ids), 0.0)
    lhs = sum(layer.bound_term for layer in layers)
    rhs = sum(layer.parameter_gradient_norm_sq for layer in layers) + other
    tolerance = 64 * torch.finfo(x.dtype).eps
    return PenaltyInequality(norm, grad_x_sq, tuple(layers), other, lhs, rhs, tolerance)
