"""Empirical check of the kernel maps on real random networks.

Builds random MLPs ``x_l = phi(W_l x_{l-1})`` (zero biases; weights ``N(0, 1/fan_in)`` or scaled
orthogonal), feeds pairs of inputs with ``||x||^2 = dim`` and a chosen cosine similarity, and
measures per layer the q values ``||x_l||^2 / width`` and the cosine ``c_l``.  The infinite-width
prediction uses the *extended* maps (DKS): ``q_l = Q(q_{l-1})``, ``c_l = C(c_{l-1}; q_{l-1}, q_{l-1})``
from ``q_0 = 1``; the *local* prediction ``c_l = C(c_{l-1}; 1, 1)`` is what one gets by wrongly
assuming ``Q(1) = 1``.  Finite-width fluctuations of ``c_l`` are ``O(1/sqrt(width))``, so the mean
over ``seeds`` networks is expected within ``4 sqrt(l) (1 - c^2) / sqrt(width * seeds) + 5 / width``.
The q values are checked too (the C check alone barely sees a wrong Q map: 10% off passes it for
tanh): ``q_l`` is a mean of ``width`` i.i.d. terms ``phi(z)^2``, ``z ~ N(0, q_{l-1})``, so its mean over
seeds is expected within ``Q^l(1) (4 sqrt(l) kappa_l / sqrt(width * seeds) + 5 / width)``, ``kappa_l``
the relative standard deviation of ``phi(z)^2`` (a Gauss-Hermite rule).

torch is imported lazily; it runs on ``device`` (default: CUDA when available, else CPU).

>>> import sympy
>>> x = sympy.Symbol("x", real=True)
>>> rec = empirical_kernel(sympy.tanh(x), depth=3, width=200, cosines=(0.5,), seeds=2)
>>> rec.passes()
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from analysis.kernel import _activation_parts, kernel_maps
from numeric.train import resolve_device
from symact.errors import DomainError, is_whole_number

__all__ = ["EmpiricalKernel", "empirical_kernel", "kernel_tolerance", "q_tolerance"]


def kernel_tolerance(c: float, layer: int, width: int, seeds: int) -> float:
    """Allowed |mean measured c - predicted c| at ``layer``: ``4 sqrt(l)(1-c^2)/sqrt(width seeds) + 5/width``."""
    return 4 * math.sqrt(layer) * (1 - c * c) / math.sqrt(width * seeds) + 5 / width


def q_tolerance(q: float, kappa: float, layer: int, width: int, seeds: int) -> float:
    """Allowed |mean measured q - predicted q| at ``layer``: ``q (4 sqrt(l) kappa / sqrt(width seeds) + 5/width)``.

    ``kappa = sd(phi(z)^2) / E[phi(z)^2]`` for ``z ~ N(0, q_{l-1})``: one neuron's relative spread, so
    ``kappa / sqrt(width)`` is the Monte-Carlo relative error of one network's q (CLT over the width);
    ``sqrt(l)`` allows for the fluctuations of the earlier layers, as in :func:`kernel_tolerance`.
    """
    return q * (4 * math.sqrt(layer) * kappa / math.sqrt(width * seeds) + 5 / width)


@dataclass(frozen=True)
class EmpiricalKernel:
    """Measured vs predicted per-layer q and c values of random MLPs (index ``[cosine][layer-1]``).

    ``c_mean``/``c_std`` are the mean and standard deviation over seeds of the measured cosine;
    ``q_mean``/``q_std`` the same for the q value (both inputs pooled).  ``predicted_c`` uses the
    extended maps, ``predicted_c_local`` the q = 1 maps; ``predicted_q`` is ``Q^l(1)``.
    """

    activation: str
    depth: int
    width: int
    seeds: int
    init: str
    device: str
    cosines: tuple
    q_mean: tuple
    q_std: tuple
    c_mean: tuple
    c_std: tuple
    predicted_q: tuple
    predicted_c: tuple
    predicted_c_local: tuple
    q_kappa: tuple = ()  # per layer: sd(phi(z)^2) / E[phi(z)^2], z ~ N(0, predicted q_{l-1}) (see q_tolerance)

    def tolerance(self, i: int, layer: int, which: str = "extended") -> float:
        """:func:`kernel_tolerance` for cosine ``i`` (``0 .. len(cosines) - 1``, an index into ``cosines``) at
        ``layer`` (``1 .. depth``, numbered from the first hidden layer), at the ``which`` prediction of c."""
        # layer=0 read predicted_c[i][-1], the last layer's prediction, with sqrt(0) in the formula; a negative
        # i or layer counted from the end (and a negative layer then failed in sqrt); past the end a bare IndexError
        if not (is_whole_number(i) and i < len(self.cosines)):
            raise DomainError(f"tolerance: cosine index i={i!r} must be a whole number in 0..{len(self.cosines) - 1} "
                              f"(an index into cosines={self.cosines}).")
        if not (is_whole_number(layer, 1) and layer <= self.depth):
            raise DomainError(f"tolerance: layer={layer!r} must be a whole number in 1..{self.depth}: layers are "
                              f"numbered from 1 (the first hidden layer) to depth={self.depth}.")
        pred = self._prediction(which)[i][layer - 1]
        return kernel_tolerance(pred, layer, self.width, self.seeds)

    def _prediction(self, which: str):
        if which not in ("extended", "local"):
            raise DomainError(f"which={which!r}: use 'extended' or 'local'.")
        return self.predicted_c if which == "extended" else self.predicted_c_local

    def deviations(self, which: str = "extended") -> np.ndarray:
        """|mean measured c - predicted c| divided by the tolerance, shape (cosines, depth)."""
        pred = self._prediction(which)
        return np.array([[abs(self.c_mean[i][l] - pred[i][l]) / self.tolerance(i, l + 1, which)
                          for l in range(self.depth)] for i in range(len(self.cosines))])

    def q_deviations(self) -> np.ndarray:
        """|mean measured q - Q^l(1)| divided by :func:`q_tolerance`, shape (cosines, depth).

        A tolerance that is not finite (``kappa_l`` infinite or nan: ``phi(z)^2`` averaged 0 on the
        quadrature nodes) gives ``inf``: that layer's q value cannot be judged, so it does not pass."""
        def deviation(i: int, l: int) -> float:
            tol = q_tolerance(self.predicted_q[l], self.q_kappa[l], l + 1, self.width, self.seeds)
            if not math.isfinite(tol):   # |diff| / inf = 0 passed every measured q, however far off
                return math.inf
            return abs(self.q_mean[i][l] - self.predicted_q[l]) / tol
        return np.array([[deviation(i, l) for l in range(self.depth)] for i in range(len(self.cosines))])

    def passes(self, which: str = "extended") -> bool:
        """True when every layer and cosine is within :func:`kernel_tolerance`; for the extended
        prediction the q values must also be within :func:`q_tolerance` of ``Q^l(1)`` (the local
        prediction assumes q = 1 and is judged on c alone)."""
        ok = bool(np.all(self.deviations(which) < 1))
        return ok and bool(np.all(self.q_deviations() < 1)) if which == "extended" else ok

    def spread_ratio(self, wider: "EmpiricalKernel") -> float:
        """Pooled ratio of the seed-to-seed spread of c between this record and a wider one.

        Each std is divided by its expected scale ``sqrt(l) (1 - c_l^2)`` (c_l the extended
        prediction; floored at 0.05 so that c near 1 does not dominate), then the root-mean-square
        over all cosines and layers is compared.  ``O(1/sqrt(width))`` fluctuations give
        ``sqrt(wider.width / self.width)``.
        """
        mismatch = [f"{k} {getattr(self, k)!r} vs {getattr(wider, k)!r}"
                    for k in ("activation", "depth", "seeds", "init", "cosines") if getattr(self, k) != getattr(wider, k)]
        if mismatch:  # the pooled spreads would be over different layers, cosines or networks
            raise DomainError(f"spread_ratio compares two widths of the same experiment; these differ: "
                              f"{'; '.join(mismatch)}. Run the wider one with the same settings.")

        def rms(rec):
            vals = [(rec.c_std[i][l] / (math.sqrt(l + 1) * max(1 - rec.predicted_c[i][l] ** 2, 0.05))) ** 2
                    for i in range(len(rec.cosines)) for l in range(rec.depth)]
            return math.sqrt(sum(vals) / len(vals))
        return rms(self) / rms(wider)

    def __repr__(self) -> str:
        lines = [f"EmpiricalKernel({self.activation!r}, depth={self.depth}, width={self.width}, "
                 f"seeds={self.seeds}, init={self.init!r}, device={self.device!r})"]
        for i, c0 in enumerate(self.cosines):
            last = self.depth - 1
            lines.append(f"  c0={c0:g}: layer {self.depth} measured {self.c_mean[i][last]:.4f} "
                         f"+- {self.c_std[i][last]:.4f}, extended {self.predicted_c[i][last]:.4f}, "
                         f"local {self.predicted_c_local[i][last]:.4f}")
        return "\n".join(lines)


def _torch_activation(act: Any, torch, device):
    """phi as a torch function: numeric.codegen's generated function (the numerically safe
    form, within a few ulps of the exact value, on any device), for any activation."""
    import symact
    from numeric.codegen import torch_function

    parts = _activation_parts(act)
    activation = symact.activation(parts.expr.xreplace({parts.x: symact.x}))
    return parts.name, torch_function(activation).apply


def empirical_kernel(act: Any, depth: int, width: int, cosines: Sequence[float] = (0.0, 0.5, 0.9),
                     seeds: int = 20, init: str = "gaussian", device=None, input_dim: int | None = None,
                     dtype=None) -> EmpiricalKernel:
    """Measure per-layer q and c of ``seeds`` random MLPs and compare with the kernel maps.

    ``init``: ``"gaussian"`` (``W ~ N(0, 1/fan_in)``) or ``"orthogonal"`` (a Haar-random
    (semi-)orthogonal matrix scaled by ``sqrt(max(1, fan_out/fan_in))`` so that q is preserved).
    Seed ``s`` draws the inputs and weights from ``torch.Generator().manual_seed(s)``.
    """
    import torch

    if init not in ("gaussian", "orthogonal"):
        raise DomainError(f"init={init!r}: use 'gaussian' or 'orthogonal'.")
    for what, value, least, why in (("depth", depth, 1, ""), ("width", width, 2, ""),
                                     ("seeds", seeds, 2, " (a spread needs two seeds)"),
                                     ("input_dim", 2 if input_dim is None else input_dim, 2,
                                      " (two inputs at a cosine other than +-1 need two dimensions)")):
        if not is_whole_number(value, least):
            raise DomainError(f"{what}={value!r}: give a whole number >= {least}{why}.")
    if isinstance(cosines, (str, bytes)) or not hasattr(cosines, "__iter__"):
        raise DomainError(f"cosines={cosines!r}: give a sequence of input cosines in [-1, 1], e.g. (0.0, 0.5).")
    cosines = tuple(float(c) for c in cosines)
    if not cosines:  # no cosine measured: every check would pass on an empty array
        raise DomainError("cosines is empty: give at least one input cosine in [-1, 1], e.g. (0.5,).")
    for c in cosines:
        if not -1 <= c <= 1:
            raise DomainError(f"cosine {c} outside [-1, 1].")
    device = resolve_device(device)
    dtype = dtype or torch.float32
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):  # "float64" failed deep inside .to()
        raise DomainError(f"dtype={dtype!r}: give a torch floating-point dtype, e.g. torch.float64.")
    dim = input_dim or width
    name, phi = _torch_activation(act, torch, device)

    ncos = len(cosines)
    q_all = np.zeros((seeds, ncos, depth))
    c_all = np.zeros((seeds, ncos, depth))
    for s in range(seeds):
        gen = torch.Generator(device="cpu").manual_seed(s)
        # inputs: orthonormal e1, e2 per cosine; x = sqrt(dim) e1, x' = sqrt(dim) (c e1 + sqrt(1-c^2) e2)
        g = torch.randn(ncos, 2, dim, generator=gen, dtype=torch.float64)
        e1 = g[:, 0] / g[:, 0].norm(dim=1, keepdim=True)
        e2 = g[:, 1] - (g[:, 1] * e1).sum(1, keepdim=True) * e1
        e2 = e2 / e2.norm(dim=1, keepdim=True)
        cs = torch.tensor(cosines, dtype=torch.float64)[:, None]
        xa = math.sqrt(dim) * e1
        xb = math.sqrt(dim) * (cs * e1 + torch.sqrt((1 - cs) * (1 + cs)) * e2)
        h = torch.cat([xa, xb], 0).to(device=device, dtype=dtype)          # (2 ncos, dim)
        fan_in = dim
        for layer in range(depth):
            if init == "gaussian":
                w = torch.randn(width, fan_in, generator=gen, dtype=torch.float32) / math.sqrt(fan_in)
            else:
                w = torch.empty(width, fan_in, dtype=torch.float32)
                torch.nn.init.orthogonal_(w, generator=gen)
                w = w * math.sqrt(max(1.0, width / fan_in))
            h = phi(h @ w.to(device=device, dtype=dtype).T)
            hd = h.double()
            sq = (hd * hd).sum(1)
            a, b = hd[:ncos], hd[ncos:]
            c_all[s, :, layer] = ((a * b).sum(1) / torch.sqrt(sq[:ncos] * sq[ncos:])).cpu().numpy()
            q_all[s, :, layer] = (0.5 * (sq[:ncos] + sq[ncos:]) / width).cpu().numpy()
            fan_in = width

    maps = kernel_maps(act, engine="float64")
    pred_q, pred_c, pred_local = [], [], []
    qv = 1.0
    for _ in range(depth):
        qv = maps.q_map(qv)
        pred_q.append(qv)
    # kappa_l = sd(phi(z)^2) / E[phi(z)^2] at z ~ N(0, q_{l-1}) by a 120-node Gauss-Hermite rule
    nodes, weights = np.polynomial.hermite_e.hermegauss(120)
    weights = weights / weights.sum()
    kappa = []
    for q_in in (1.0, *pred_q[:-1]):
        with torch.no_grad():
            z = torch.tensor(nodes * math.sqrt(q_in), dtype=torch.float64, device=device)
            p2 = (phi(z) ** 2).cpu().numpy()
        m2, m4 = float(weights @ p2), float(weights @ (p2 * p2))
        kappa.append(math.sqrt(max(m4 / (m2 * m2) - 1.0, 0.0)) if m2 > 0 else math.inf)
    for c0 in cosines:
        ce, cl, qv = c0, c0, 1.0
        row_e, row_l = [], []
        for layer in range(depth):
            # rounding may give C a few ulps above 1; np.minimum keeps a NaN prediction NaN
            # (min(1.0, nan) is 1.0: a failed map would have been shown as the collapse c = 1)
            ce = float(np.minimum(1.0, maps.c_map(ce, qv, qv)))
            cl = float(np.minimum(1.0, maps.c_map(cl, 1.0, 1.0)))
            qv = pred_q[layer]
            row_e.append(ce)
            row_l.append(cl)
        pred_c.append(tuple(row_e))
        pred_local.append(tuple(row_l))

    def tup(a):
        return tuple(tuple(float(v) for v in row) for row in a)

    return EmpiricalKernel(
        activation=name, depth=depth, width=width, seeds=seeds, init=init, device=str(device),
        cosines=cosines, q_mean=tup(q_all.mean(0)), q_std=tup(q_all.std(0, ddof=1)),
        c_mean=tup(c_all.mean(0)), c_std=tup(c_all.std(0, ddof=1)), predicted_q=tuple(pred_q),
        predicted_c=tuple(pred_c), predicted_c_local=tuple(pred_local), q_kappa=tuple(kappa))
