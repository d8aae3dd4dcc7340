r"""Kernel-preserving initialisers for DKS/TAT: scaled-uniform orthogonal and delta-orthogonal.

Deep kernel shaping assumes every linear layer maps q values (squared norm divided by the
dimension) through unchanged: with input :math:`x \in R^{n}` and weight :math:`W \in R^{m\times n}`
(``nn.Linear`` layout ``[out, in]``), :math:`\|Wx\|^2/m = \|x\|^2/n` for every x requires
:math:`W^\top W = (m/n) I_n`, possible exactly when fan-out m >= fan-in n.  So

.. math::  W = \sqrt{\max(1, m/n)}\; O,

with O drawn uniformly (Haar) from the matrices with orthonormal columns (m >= n) or rows (m < n;
then q is preserved in expectation over x's direction only).  For convolutions with odd kernel
sizes, the delta-orthogonal weight is zero except at the kernel centre, which holds such a
matrix, so every spatial location is mapped like a dense layer (Xiao et al. 2018; DKS, Martens
et al. 2021).  Biases are zero.

Example:

>>> import torch
>>> lin = torch.nn.Linear(4, 8)
>>> _ = kernel_preserving_init_(lin)
>>> x = torch.randn(4)
>>> bool(torch.allclose((lin(x) ** 2).sum() / 8, (x ** 2).sum() / 4, rtol=1e-5))
True
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from symact.errors import DomainError, is_whole_number

__all__ = ["scaled_uniform_orthogonal_", "delta_orthogonal_", "kernel_preserving_init_",
           "per_location_normalize", "TransformedActivation"]


def _draw_device(generator, device: torch.device, who: str) -> torch.device:
    """The device the Gaussian draws for a weight on ``device`` are made on: the CPU without a generator or
    with a CPU one (the draws are then moved, so a CPU seed gives the same weight on every device), else the
    generator's own device, which must be the weight's (torch draws with a generator on its device only)."""
    if generator is None:
        return torch.device("cpu")
    if not isinstance(generator, torch.Generator):
        raise DomainError(f"{who}: generator={generator!r} must be a torch.Generator (or None), e.g. "
                          "torch.Generator().manual_seed(0).")
    home = generator.device
    if home.type == "cpu":
        return home
    # a CUDA generator failed inside torch.randn, whose draws were always made on the CPU
    if home.type != device.type or (None not in (home.index, device.index) and home.index != device.index):
        raise DomainError(f"{who}: the generator is on {home} but the weight is on {device}; the draws are made on "
                          f"the generator's device, so pass a generator on {device} "
                          f"(torch.Generator(device={str(device)!r})) or a CPU generator (its draws are moved to "
                          f"the weight), or move the weight to {home} first.")
    return home


def _haar_orthogonal(rows: int, cols: int, *, dtype, device, generator=None) -> torch.Tensor:
    """rows x cols matrix with orthonormal columns (rows >= cols) or rows, Haar distributed."""
    big, small = max(rows, cols), min(rows, cols)
    # QR in float64 for float64 weights (orthonormal to 1e-15), else in float32 (to ~1e-6, as
    # exact as a float32 weight can be, and several times cheaper for wide layers)
    work = torch.float64 if dtype == torch.float64 else torch.float32
    where = _draw_device(generator, torch.device(device), "_haar_orthogonal")
    a = torch.randn(big, small, dtype=work, generator=generator, device=where)
    q, r = torch.linalg.qr(a)
    # fix the signs so the distribution is Haar (QR alone is biased by the sign convention)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    if rows < cols:
        q = q.T
    return q.to(dtype=dtype, device=device)


def _check_gain(gain: float, who: str) -> None:
    """``gain`` must be a finite real number: NaN or inf made every entry NaN or +-inf, silently."""
    try:
        finite = math.isfinite(gain)
    except TypeError:
        finite = False
    if not finite:
        raise DomainError(f"{who}: gain={gain!r} must be a finite number (it multiplies every entry), e.g. gain=1.0.")


@torch.no_grad()
def scaled_uniform_orthogonal_(weight: torch.Tensor, gain: float = 1.0, generator=None) -> torch.Tensor:
    """In place: ``weight`` [out, in] = gain * sqrt(max(1, out/in)) * Haar-orthogonal; returns it.

    ``generator`` (a :class:`torch.Generator`, optional) makes the draw reproducible: a CPU generator
    draws on the CPU for a weight on any device, a CUDA one on its device, which must be the weight's.
    """
    if weight.dim() != 2:
        raise DomainError(f"scaled_uniform_orthogonal_ needs a 2-D [out, in] weight, got shape "
                          f"{tuple(weight.shape)}; use delta_orthogonal_ for convolutions.")
    if not weight.is_floating_point():
        # copy_ would truncate the orthogonal entries (all of magnitude < 1 for m <= n) to integers: zeros
        raise DomainError(f"scaled_uniform_orthogonal_ needs a floating-point weight, got dtype {weight.dtype}; "
                          "convert it first, e.g. weight.float().")
    _check_gain(gain, "scaled_uniform_orthogonal_")
    _draw_device(generator, weight.device, "scaled_uniform_orthogonal_")
    out_f, in_f = weight.shape
    if weight.numel() == 0:
        return weight   # a layer with no inputs or no outputs: nothing to set (out/in would divide by 0)
    q = _haar_orthogonal(out_f, in_f, dtype=weight.dtype, device=weight.device, generator=generator)
    weight.copy_(q * (gain * math.sqrt(max(1.0, out_f / in_f))))
    return weight


@torch.no_grad()
def delta_orthogonal_(weight: torch.Tensor, gain: float = 1.0, generator=None, groups: int = 1) -> torch.Tensor:
    """In place: conv ``weight`` [out, in/groups, k1, ...] zero except a scaled orthogonal centre tap; returns it.

    ``groups`` is the convolution's ``groups``: each group's centre tap, the [out/groups, in/groups] block
    ``weight[g*out/groups:(g+1)*out/groups, :, centre]``, is a separate gain * sqrt(max(1, out/in))
    Haar-orthogonal matrix (out, in: the convolution's channels, in the same ratio as each group's), so
    each group maps its own channels like a dense layer and q is preserved exactly at every location when
    out/groups >= in/groups.  The weight's shape does not show the groups
    (a grouped weight looks like an ungrouped one with fewer inputs), so pass ``groups=conv.groups``; with
    the default 1 a grouped convolution gets one matrix across its groups, whose blocks are not orthogonal,
    and q is not preserved.  :func:`kernel_preserving_init_` passes each convolution's groups.
    ``generator`` is used as in :func:`scaled_uniform_orthogonal_`.
    """
    if weight.dim() < 3:
        raise DomainError(f"delta_orthogonal_ needs a convolution weight [out, in, *kernel], got "
                          f"{tuple(weight.shape)}; use scaled_uniform_orthogonal_ for nn.Linear.")
    if not weight.is_floating_point():   # refused before zero_() so that a refusal changes nothing
        raise DomainError(f"delta_orthogonal_ needs a floating-point weight, got dtype {weight.dtype}; "
                          "convert it first, e.g. weight.float().")
    _check_gain(gain, "delta_orthogonal_")
    _draw_device(generator, weight.device, "delta_orthogonal_")   # before zero_(): a refusal changes nothing
    out_channels = weight.shape[0]
    if not (is_whole_number(groups, 1) and out_channels % groups == 0):
        raise DomainError(f"delta_orthogonal_: groups={groups!r} must be the convolution's groups, a whole number "
                          f">= 1 dividing the {out_channels} output channels of the weight {tuple(weight.shape)}; "
                          "pass groups=conv.groups.")
    kernel = weight.shape[2:]
    if any(k % 2 == 0 for k in kernel):
        raise DomainError(f"delta-orthogonal initialisation needs odd kernel sizes (a centre tap), got "
                          f"{tuple(kernel)}; use an odd kernel size such as 3 or 5.")
    weight.zero_()
    centre = tuple(k // 2 for k in kernel)
    per_group = out_channels // groups
    for g in range(groups):
        block = weight[g * per_group:(g + 1) * per_group]
        scaled_uniform_orthogonal_(block[(slice(None), slice(None)) + centre], gain, generator)
    return weight


def _is_parametrized(module: nn.Module, name: str) -> bool:
    from torch.nn.utils import parametrize as torch_parametrize

    return torch_parametrize.is_parametrized(module, name)


def _through_parametrization(module: nn.Module, name: str, label: str, value: torch.Tensor) -> None:
    """Check that the parametrised tensor ``module.<name>`` can hold ``value``: every parametrisation
    has a ``right_inverse`` that accepts it and forward(right_inverse(value)) gives ``value`` back.
    Raises :class:`DomainError` otherwise; changes nothing."""
    plist = module.parametrizations[name]
    for p in plist:
        if not hasattr(p, "right_inverse"):
            raise DomainError(
                f"kernel_preserving_init_ cannot write {label}: its parametrisation {type(p).__name__} has no "
                "right_inverse, so a value cannot be assigned through it. Implement right_inverse, or initialise "
                "the model before registering the parametrisation.")
    x = value
    try:
        for p in reversed(plist):
            x = p.right_inverse(x)
    except DomainError as exc:
        raise DomainError(
            f"kernel_preserving_init_ cannot write {label} through its parametrisation: {exc} (the init needs "
            "weights of both signs, exact zeros for convolution taps and zero biases; a signed parametrisation "
            "such as signed='difference' represents them)") from exc
    y = plist[0](*x) if isinstance(x, (tuple, list)) else plist[0](x)
    for p in list(plist)[1:]:
        y = p(y)
    tol = 64 * torch.finfo(value.dtype).eps
    err = (y - value).abs().max().item() if value.numel() else 0.0
    if y.shape != value.shape or not err <= tol * (1 + value.abs().max().item()):
        raise DomainError(
            f"kernel_preserving_init_ cannot write {label}: its parametrisation does not reproduce the "
            f"initial value (forward(right_inverse(value)) is off by {err:.3g}), so the init's properties "
            "would be lost. Use a parametrisation that can represent these weights (e.g. signed='difference'), "
            "or initialise the model before parametrising it.")


@torch.no_grad()
def kernel_preserving_init_(model: nn.Module, gain: float = 1.0, generator=None) -> nn.Module:
    """Re-initialise every Linear (scaled-uniform orthogonal) and Conv1/2/3d (delta-orthogonal) in place.

    Biases are set to zero.  Grouped convolutions are initialised per group.  Returns ``model``.
    ``generator`` is used as in :func:`scaled_uniform_orthogonal_` (a CUDA generator needs every layer on
    its device).

    Layers parametrised with :mod:`torch.nn.utils.parametrize` (e.g. by
    :func:`numeric.parametrize_model`) are set through their parametrisation (its ``right_inverse``),
    so afterwards ``layer.weight`` is the orthogonal init.  A parametrisation that cannot represent the
    init (e.g. unsigned ``exp`` and negative weights) raises :class:`DomainError` before any layer is
    changed.
    """
    _check_gain(gain, "kernel_preserving_init_")
    plan = []   # (module, name, label, value): computed and checked first, written only if all succeed
    skipped: list[str] = []
    for label, module in model.named_modules():
        if isinstance(module, nn.Linear):
            value = torch.empty_like(module.weight)
            scaled_uniform_orthogonal_(value, gain, generator)
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            value = delta_orthogonal_(torch.empty_like(module.weight), gain, generator, groups=module.groups)
        else:
            skipped.extend(_unhandled_matrices(label, module))
            continue
        plan.append((module, "weight", label, value))
        if module.bias is not None:
            plan.append((module, "bias", label, torch.zeros_like(module.bias)))
    for module, name, label, value in plan:
        if _is_parametrized(module, name):
            _through_parametrization(module, name, f"{label or type(module).__name__}.{name}", value)
    for module, name, _, value in plan:
        if _is_parametrized(module, name):
            setattr(module, name, value)   # calls the parametrisation's right_inverse
        else:
            getattr(module, name).copy_(value)
    if skipped:
        # a layer left at PyTorch's default init breaks the q-preservation DKS relies on, so say so
        warnings.warn(
            f"kernel_preserving_init_ left {len(skipped)} weight matri{'x' if len(skipped) == 1 else 'ces'} "
            f"unchanged: {', '.join(skipped)}. The kernel-preserving init covers nn.Linear and nn.Conv1/2/3d "
            "only (a transposed convolution with stride > 1 cannot preserve q with a delta init); initialise "
            "these yourself (scaled_uniform_orthogonal_ / delta_orthogonal_ where they apply) or use Linear/Conv "
            "layers.", RuntimeWarning, stacklevel=2)
    return model


def _unhandled_matrices(label: str, module: nn.Module) -> list[str]:
    """Names of the weight matrices (parameters with 2 or more dims) that ``module`` holds itself and
    that kernel_preserving_init_ does not set: transposed convolutions, nn.Bilinear, the input
    projection of nn.MultiheadAttention, a custom module's own matrices.  Embeddings are input lookups,
    not layers whose q must be preserved; a parametrisation's ``original`` belongs to its layer."""
    from torch.nn.utils.parametrize import ParametrizationList

    if isinstance(module, (nn.Embedding, nn.EmbeddingBag, ParametrizationList)):
        return []
    return [f"{label or type(module).__name__}.{name} ({type(module).__name__})"
            for name, p in module.named_parameters(recurse=False) if p.dim() >= 2]


def per_location_normalize(x: torch.Tensor, dim: int = 1, eps: float = 0.0) -> torch.Tensor:
    """Scale ``x`` so that at every location ||x||^2 over ``dim`` equals its size (q = 1), as DKS assumes.

    ``eps`` is added to ||x||^2 before the square root; with ``eps = 0`` a location whose features
    are all zero cannot be scaled to q = 1 and raises :class:`~symact.errors.DomainError` (with
    ``eps > 0`` it stays 0).  A location holding an inf or NaN, and an ``x`` with no features along
    ``dim``, raise :class:`~symact.errors.DomainError` too.

    >>> import torch
    >>> y = per_location_normalize(torch.tensor([[3.0, 4.0]]))
    >>> y, y.pow(2).mean(1)
    (tensor([[0.8485, 1.1314]]), tensor([1.]))
    """
    if not (math.isfinite(eps) and eps >= 0):
        # a negative eps made sqrt(||x||^2 + eps) NaN wherever ||x||^2 < -eps, silently
        raise DomainError(f"eps={eps!r} must be a finite number >= 0 (it is added to ||x||^2 before the square root)")
    if x.dim() == 0:
        raise DomainError("x is a 0-d tensor, with no feature dimension to normalise over; give x with its "
                          "features along dim (e.g. shape [batch, features, ...])")
    if not (is_whole_number(dim, -x.dim()) and dim < x.dim()):
        raise DomainError(f"dim={dim!r} is not a dimension of x (shape {tuple(x.shape)}); give the feature "
                          f"dimension, a whole number in {-x.dim()}..{x.dim() - 1}")
    size = x.shape[dim]
    if size == 0:
        # amax over an empty dimension was a bare IndexError; q = ||x||^2 / 0 has no value to scale to 1
        raise DomainError(f"x (shape {tuple(x.shape)}) has no features along dim {dim}, so there is no q to set "
                          "to 1; pass the dimension that holds the features, or drop the empty input")
    finite = torch.isfinite(x).all(dim=dim)
    if not bool(finite.all()):
        # one inf made its whole location NaN (inf / inf, and 0 for the other features), and NaN passed through
        where = (~finite).nonzero()
        first = where[0].tolist()
        first.insert(dim % x.dim(), ":")
        kinds = " and ".join(k for k, m in (("inf", torch.isinf(x)), ("NaN", torch.isnan(x))) if bool(m.any()))
        raise DomainError(f"{len(where)} location(s) of x hold non-finite features ({kinds}) along dim {dim}, "
                          f"the first x[{', '.join(map(str, first))}]; no scaling brings them to q = 1, and "
                          "they would come out NaN. Fix or drop them before normalising.")
    # divided by the largest |x| first, so no square overflows or underflows: [300, 400] in float16 came out 0
    # (300**2 is inf there), [3e-23, 4e-23] in float32 5.5% off (subnormal squares), and [3e-170, 4e-170] in
    # float64 was refused as all-zero features
    largest = x.abs().amax(dim=dim, keepdim=True)
    if eps == 0 and bool((largest == 0).any()):
        raise DomainError(f"{int((largest == 0).sum())} location(s) of x have all-zero features along dim {dim}, "
                          "which no scaling brings to q = 1 (0/0); drop them, or pass eps > 0 to leave them at 0")
    largest = torch.where(largest > 0, largest, torch.ones_like(largest))
    scaled = x / largest
    root = scaled.pow(2).sum(dim=dim, keepdim=True).sqrt()  # ||x|| / max|x|, in [1, sqrt(size)]
    if eps:
        # sqrt(||x||^2 + eps) / max|x|; where sqrt(eps)/max|x| overflows, the exact result is below the float range
        root = torch.hypot(root, math.sqrt(eps) / largest)
    return scaled * (math.sqrt(size) / root)


class TransformedActivation(nn.Module):
    """psi(x) = gamma * (phi(alpha * x + beta) + delta) for a torch callable phi (constants, not trained)."""

    def __init__(self, phi, name: str, alpha: float, beta: float, gamma: float, delta: float):
        super().__init__()
        self.phi, self.name = phi, name
        self.alpha, self.beta, self.gamma, self.delta = float(alpha), float(beta), float(gamma), float(delta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma * (self.phi(self.alpha * x + self.beta) + self.delta)

    def extra_repr(self) -> str:
        return (f"{self.name}, alpha={self.alpha:.6g}, beta={self.beta:.6g}, gamma={self.gamma:.6g}, "
                f"delta={self.delta:.6g}")
