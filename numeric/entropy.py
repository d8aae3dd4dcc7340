r"""Entropy normalisation: solve for the power :math:`\gamma` that gives a distribution a target entropy.

For a distribution :math:`p` and a target :math:`H^*`, find :math:`\gamma > 0` with

.. math::  H\!\left(\frac{p^\gamma}{\sum_j p_j^\gamma}\right) = H^*.

The solver is Newton's method on the total exponent, started at :math:`\gamma = 1`; each step
is the first-order update of :mod:`symact.entropy` (``gamma <- gamma * (1 + (H* - H)/(H^2 -
E[(log q)^2]))``), so convergence is quadratic near the root.  A bracket :math:`[lo, hi]` on
:math:`\gamma` (H is strictly decreasing in :math:`\gamma`) guards the steps: a Newton step that
leaves the bracket is replaced by bisection (or doubling while no upper bound is known).

The mpmath back end, which reaches targets much closer to ``log m`` and ``log k``, takes its Newton steps on the
log-odds :math:`G = \log(\log m - H) - \log(H - \log k)` instead: :math:`G \approx 2\log\gamma + c` near
``log m`` and :math:`G \approx \gamma d + c` near ``log k`` (d the gap from the largest log to the next), so the
step is taken in :math:`\log\gamma` when H is nearer ``log m`` and in :math:`\gamma` otherwise, and converges in
a few steps at both ends (Newton on H halves gamma per step near ``log m``).  Its bracket starts from an upper
bound on the root, bisected in :math:`\log\gamma`.

Two back ends:

* ``dps`` given: mpmath at ``dps`` significant digits for one distribution (a 1-D sequence);
* ``dps=None``: batched torch along ``dim`` in the tensor's dtype (float32 or float64; float16 and
  bfloat16 are solved in float32 and the results cast back to their dtype).

Domain (checked; violations raise :class:`symact.errors.DomainError`):

* entries must be finite and >= 0 with a positive sum.  Scaling ``p`` does not change
  ``p^gamma / sum p^gamma``, so unnormalised non-negative weights are accepted as they are;
* zeros stay zero for every gamma > 0, so only the support counts: with ``m`` non-zero entries
  and ``k`` of them tied at the maximum, reachable targets are ``log k < H* <= log m``.
  ``H* = log m`` gives ``gamma = 0`` (the uniform distribution on the support, the limit
  gamma -> 0+); ``H* <= log k`` would need gamma = +inf (or is unreachable) and is refused;
* a target within the working precision of ``log m`` (``10**-dps`` relative in mpmath, ``8 eps`` in
  torch) counts as ``log m``; likewise for ``log k``;
* if ``p`` is already uniform on its support, H does not depend on gamma: ``H* = log m``
  returns ``gamma = 1`` (p unchanged); any other target is refused.

>>> r = entropy_normalize(["0.5", "0.2", "0.15", "0.1", "0.05"], 1, dps=30)
>>> mpmath.nstr(r.gamma, 20)
'1.608479531410352293'
>>> r.report.iterations <= 8
True
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

import mpmath
import torch

from symact.errors import DomainError, is_whole_number

__all__ = [
    "ConvergenceReport",
    "EntropyNormalization",
    "entropy_normalize",
    "EntropyNormalize",
    "MaskGapWarning",
    "NotConvergedWarning",
    "solve_entropy_gamma",
]


def _short(value, digits: int = 12) -> str:
    if isinstance(value, mpmath.mpf):
        return mpmath.nstr(value, digits)
    if isinstance(value, torch.Tensor) and value.numel() != 1:  # an empty batch too: .item() raised in repr
        return f"tensor(shape={tuple(value.shape)}, dtype={value.dtype})"
    if isinstance(value, torch.Tensor):
        value = value.item()
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class ConvergenceReport:
    """How the Newton iteration went.

    ``residual_history[k]`` is ``H(gamma_k) - H*`` (max abs over rows in the torch back end)
    before step ``k``; ``gamma_history`` the iterates (mpmath back end; per-row tensors are not
    kept, ``None`` there).  ``tolerance`` is the stopping threshold on ``|H - H*|``; ``short_rows``
    counts rows given gamma = 0 because their support cannot reach the target (torch back end,
    ``short_rows="uniform"``); ``row_converged`` (torch back end) is a bool tensor shaped like gamma, False for
    the rows still outside the tolerance when the iteration cap stopped the solve.
    """

    iterations: int
    converged: bool
    residual_history: tuple
    tolerance: Any
    gamma_history: tuple | None = None
    short_rows: int = 0
    row_converged: Any = None

    def __repr__(self) -> str:
        last = self.residual_history[-1] if self.residual_history else None
        return (f"ConvergenceReport(iterations={self.iterations}, converged={self.converged}, "
                f"final_residual={_short(last)}, tolerance={_short(self.tolerance)})")


@dataclass(frozen=True)
class EntropyNormalization:
    """Result of :func:`entropy_normalize`: the power ``gamma``, the normalised distribution
    ``p`` (= p_in^gamma / sum p_in^gamma) and the :class:`ConvergenceReport`."""

    gamma: Any
    p: Any
    target_entropy: Any
    report: ConvergenceReport

    @property
    def iterations(self) -> int:
        """Newton iterations taken (``report.iterations``), as the repr shows it."""
        return self.report.iterations

    @property
    def converged(self) -> bool:
        """Whether the solve met its tolerance (``report.converged``), as the repr shows it."""
        return self.report.converged

    def __repr__(self) -> str:
        return (f"EntropyNormalization(gamma={_short(self.gamma)}, target_entropy={_short(self.target_entropy)}, "
                f"iterations={self.report.iterations}, converged={self.report.converged})")


# ----------------------------------------------------------------------------- mpmath back end


def _target_number(target_entropy) -> float:
    """The target entropy as a Python float: one finite number of nats (NaN would make every range
    check false and the solver return a meaningless gamma)."""
    if isinstance(target_entropy, torch.Tensor):
        if target_entropy.numel() != 1:
            raise DomainError(
                f"target_entropy must be one number (nats) shared by every row, got a tensor of shape "
                f"{tuple(target_entropy.shape)}; solve rows with different targets in separate calls")
        target_entropy = target_entropy.item()
    if isinstance(target_entropy, bool):  # float(True) is 1.0: a flag passed in the target's place
        raise DomainError(f"target_entropy must be a number of nats, got {target_entropy!r}; "
                          f"pass the target entropy (in [0, log m]) as a number")
    try:
        value = float(target_entropy)
    except (TypeError, ValueError):
        raise DomainError(f"target_entropy must be a real number of nats, got {target_entropy!r}") from None
    if not math.isfinite(value):
        raise DomainError(f"target_entropy must be a finite number of nats, got {value}; pass a value in [0, log m]")
    return value


_ITERATIONS = "a whole number >= 0 of Newton steps, e.g. 100"


def _whole_number(name: str, value, least: int, what: str) -> int:
    """``value`` as an int (Python or NumPy integers; not bools, 2.5 or "30") of at least ``least``: int(2.5)
    silently dropped digits, int("x") raised a bare ValueError, and a negative max_iterations returned
    gamma = 1 unsolved."""
    if not is_whole_number(value, least):
        raise DomainError(f"{name} must be {what}, got {value!r}")
    return int(value)


def _checked_dim(dim, ndim: int | None = None) -> int:
    """``dim`` as an int, and within ``[-ndim, ndim)`` when ``ndim`` is given: ``dim=2`` on a 2-D tensor
    reached torch's bare IndexError, ``dim=1.5`` a TypeError, and only at the first forward."""
    if isinstance(dim, bool) or not is_whole_number(dim, -(1 << 62)):
        raise DomainError(f"dim must be an integer (the dimension to normalise along, e.g. -1), got {dim!r}")
    dim = int(dim)
    if ndim is not None and not -max(ndim, 1) <= dim < max(ndim, 1):
        raise DomainError(f"dim={dim} is out of range for a {ndim}-D tensor: use a dimension in "
                          f"[{-max(ndim, 1)}, {max(ndim, 1) - 1}] (e.g. dim=-1, the last)")
    return dim


def _support_checks(n_support: int, n_ties: int, uniform: bool, target, log, tol) -> str | None:
    """Shared domain logic; returns 'zero', 'identity' or None (solve).  ``tol``: targets within
    it of log m count as log m (a target is given to finite precision)."""
    top = log(n_support)
    if target > top + tol or target < 0:
        raise DomainError(
            f"target entropy {target} is outside [0, log m] = [0, {top}] for a distribution with m = {n_support} "
            "non-zero entries (zeros stay zero under p^gamma); choose a target in that range")
    if uniform:
        if abs(target - top) <= tol:
            return "identity"
        raise DomainError(
            f"p is uniform on its {n_support} non-zero entries, so every power p^gamma gives entropy log {n_support} = {top}; "
            f"no gamma reaches {target}. Perturb p or change the target")
    if abs(target - top) <= tol:
        return "zero"
    floor = log(n_ties)
    if target <= floor + tol:
        raise DomainError(
            f"target entropy {target} is not above log({n_ties}) = {floor} by more than the working precision "
            f"{mpmath.nstr(tol, 3)}: p has {n_ties} entries tied at its maximum, and "
            "p^gamma/sum p^gamma tends to the uniform distribution on them as gamma -> inf, so its entropy stays above "
            f"log({n_ties}). Choose a target above {floor} (or take that uniform limit directly)")
    return None


def _to_mpf(value) -> mpmath.mpf:
    """``value`` as an mpf at the working precision without a detour through float: numbers, decimal strings
    and mpf as mpmath reads them, SymPy expressions through ``evalf`` (``float(log(3)/2)`` kept 16 digits of a
    dps=50 target), Fractions and Decimals exactly.  TypeError/ValueError for anything else."""
    if isinstance(value, Fraction):
        return mpmath.mpf(value.numerator) / value.denominator
    if isinstance(value, Decimal):
        return mpmath.mpf(str(value))
    if hasattr(value, "evalf") and not isinstance(value, (str, mpmath.mpf)):
        value = value.evalf(mpmath.mp.dps + 5)  # a SymPy number: a Float (mpmath reads its _mpf_); else TypeError
    return mpmath.mpf(value)


#: Guard digits of the mpmath back end beyond ``dps`` (more where the problem is ill-conditioned).
_GUARD_DIGITS = 10


def _entropy_normalize_mp(p: Sequence, target, dps: int, max_iterations: int,
                          guard: int = _GUARD_DIGITS) -> EntropyNormalization:
    target_in = target
    with mpmath.workdps(dps + guard):
        if isinstance(p, (str, bytes, dict)):  # list("0.5") would be read as the entries '0', '.', '5'
            raise DomainError(f"p must be a sequence of probabilities, got the {type(p).__name__} {p!r}; pass a "
                              "list, e.g. ['0.5', '0.3', '0.2']")
        try:
            items = list(p)
        except TypeError:
            raise DomainError(f"p must be a sequence of probabilities, got {p!r}") from None
        ps = []
        for i, pi in enumerate(items):
            try:
                ps.append(_to_mpf(pi))
            except (TypeError, ValueError):
                raise DomainError(f"p[{i}] = {pi!r} is not a real number; the mpmath back end (dps given) takes one "
                                  "1-D distribution of numbers, decimal strings, mpf, Fractions, Decimals or "
                                  "SymPy numbers") from None
        if len(ps) == 0:
            raise DomainError("p is empty; pass at least one probability")
        if any(not mpmath.isfinite(pi) or pi < 0 for pi in ps) or sum(ps) <= 0:
            raise DomainError("p must have finite, non-negative entries with a positive sum")
        try:
            target = _to_mpf(target)
        except (TypeError, ValueError):
            target = mpmath.mpf(_target_number(target))  # a 1-element tensor, or a clear DomainError
        if not mpmath.isfinite(target):
            raise DomainError(f"target_entropy must be a finite number of nats, got {target}; pass a value in [0, log m]")
        support = [pi for pi in ps if pi > 0]
        pmax = max(support)
        n_ties = sum(1 for pi in support if pi == pmax)
        uniform = n_ties == len(support)
        # targets within 10^-dps (relative) of log m are log m: the caller's precision is dps digits
        action = _support_checks(len(support), n_ties, uniform, target, mpmath.log,
                                 mpmath.mpf(10) ** (-dps) * max(1, mpmath.log(len(support))))
        logs = [mpmath.log(pi) for pi in support]

        def powered(gamma):
            # p^gamma / sum p^gamma in the log domain, shifted by the max for range safety
            w = [mpmath.exp(gamma * (li - logs_max)) for li in logs]
            z = mpmath.fsum(w)
            return [wi / z for wi in w]

        logs_max = max(logs)

        def expand(q_support):
            it = iter(q_support)
            return [next(it) if pi > 0 else mpmath.mpf(0) for pi in ps]

        if action == "identity":
            q = powered(mpmath.mpf(1))
            report = ConvergenceReport(0, True, (mpmath.mpf(0),), mpmath.mpf(0), (mpmath.mpf(1),))
            return _finish_mp(mpmath.mpf(1), expand(q), target, report, dps)
        if action == "zero":
            q = [mpmath.mpf(1) / len(support)] * len(support)
            report = ConvergenceReport(0, True, (mpmath.mpf(0),), mpmath.mpf(0), (mpmath.mpf(0),))
            return _finish_mp(mpmath.mpf(0), expand(q), target, report, dps)

        # stop at |H - H*| <= 10^-(working digits - 5): the error in gamma is that over dH/dgamma = -gamma Var,
        # so where the slope is small the working precision (raised below) tightens the stop as well
        tol = mpmath.mpf(10) ** (-(dps + guard - 5))
        log_top, log_floor = mpmath.log(len(support)), mpmath.log(n_ties)
        # the checks above put the target strictly inside (log k, log m)
        G_target = mpmath.log(log_top - target) - mpmath.log(target - log_floor)
        # An upper bound on the root, so that no step leaves the range mpmath can exponentiate (a near-tie, p =
        # [0.5, 0.4999999999999999, 0.01], stepped to a gamma whose exp overflowed): with d the gap from the
        # maximum to the next log and x = gamma d, H - log k <= m e^-x (1 + x), below the 10^-dps * max(1, log m)
        # the target keeps above log k (checked) once x >= 2 (digits ln 10 + log m + 10).
        next_log = max(li for li in logs if li < logs_max)
        hi = 2 * ((dps + guard) * mpmath.log(10) + log_top + 10) / (logs_max - next_log)
        gamma, lo = min(mpmath.mpf(1), hi / 2), mpmath.mpf(0)
        residuals, gammas = [], [gamma]
        converged = False
        for iteration in range(max_iterations):
            q = powered(gamma)
            mean = mpmath.fsum(qi * li for qi, li in zip(q, logs))
            var = mpmath.fsum(qi * (li - mean) ** 2 for qi, li in zip(q, logs))
            H = -mpmath.fsum(qi * mpmath.log(qi) for qi in q if qi > 0)
            residual = H - target
            residuals.append(residual)
            if abs(residual) <= tol:
                converged = True
                break
            if residual > 0:   # entropy too high -> gamma too small
                lo = max(lo, gamma)
            else:
                hi = min(hi, gamma)
            # Newton on the log-odds G = log(log m - H) - log(H - log k), not on H: near the top H ~ log m -
            # gamma^2 Var/2 (G ~ 2 log gamma + c) and near the bottom H - log k ~ c gamma e^(-gamma d) (G ~ gamma d),
            # where Newton on H only halved gamma (or added ~1/d to it) per step: for p = (0.5, 0.3, 0.2), 100 steps
            # left log 3 - 1e-80 at gamma 7.6e-31 (root 3.1e-40) and 1e-60 at gamma 208 (root 280), unconverged.
            # dG/ds = gamma dG/dgamma = gamma^2 Var (log m - log k) / ((log m - H)(H - log k)).
            above, below = log_top - H, H - log_floor
            step = mpmath.nan
            if above > 0 and below > 0 and var > 0:
                slope = gamma**2 * var * (log_top - log_floor) / (above * below)
                G_gap = G_target - (mpmath.log(above) - mpmath.log(below))
                # G is near linear in s at the top end and in gamma at the bottom end (Newton in s there overshoots
                # from below and gains only ~1 in s per step from above): step in the variable of H's nearer end
                step = gamma * mpmath.exp(G_gap / slope) if above < below else gamma + gamma * G_gap / slope
            if not (lo < step < hi):   # outside the bracket (or H rounded onto an end): bisect, in log gamma
                step = mpmath.sqrt(lo * hi) if lo > 0 else hi / 2
            gamma = step
            gammas.append(gamma)
        if converged and guard == _GUARD_DIGITS and var > 0 and gamma > 0:
            # A unit rounding error (10^-digits) in the logs, in H or in the target moves gamma by kappa_gamma
            # (relative) and each output q_i = exp(gamma (l_i - l_max)) / Z by kappa_q: with v = Var_q[log p],
            # dgamma/dl_i = -gamma q_i (l_i - mu) / v (|sum| <= sqrt(v) per unit error) and dgamma/dH = -1/(gamma v).
            # The fixed guard digits lost up to 5 of the requested ones for targets near log m (gamma^2 v small),
            # near-equal entries (v small) and tiny outputs (|gamma (l_i - l_max)| large); redo with enough.
            scale = 1 + max(abs(li) for li in logs)
            kappa_gamma = max(scale / mpmath.sqrt(var), (1 + mpmath.log(len(support))) / (gamma**2 * var))
            kappa_q = (1 + max(abs(gamma * (li - logs_max)) for li in logs)) * kappa_gamma + gamma * scale
            lost = int(mpmath.ceil(mpmath.log10(kappa_q)))
            if lost + 6 > guard:
                return _entropy_normalize_mp(items, target_in, dps, max_iterations, guard=lost + guard)
        report = ConvergenceReport(len(residuals) - 1 if converged else len(residuals), converged,
                                   tuple(residuals), tol, tuple(gammas))
        return _finish_mp(gamma, expand(powered(gamma)), target, report, dps)


def _finish_mp(gamma, q, target, report, dps):
    with mpmath.workdps(dps):
        return EntropyNormalization(+gamma, [+qi for qi in q], +target, report)


# ----------------------------------------------------------------------------- torch back end


#: Entries more than this many nats below their row's maximum are mask values, not scores: p_i / p_max < e**-745
#: is below the smallest float64 (4.9e-324), so no probabilities a tensor holds have such logits.  Additive masks
#: (scores - 1e4, - 1e9, - 1e20) land there; counted as scores they got weight once gamma was small enough.
MASK_GAP = 745.0


class NotConvergedWarning(RuntimeWarning):
    """:func:`entropy_normalize` stopped at ``max_iterations`` with rows whose entropy is not yet the target
    (``report.row_converged`` says which, in the torch back end)."""


class MaskGapWarning(RuntimeWarning):
    """Finite logits more than :data:`MASK_GAP` nats below their row's maximum were taken as mask values (zero
    probability), but the solved gamma is small enough that, read as scores, they would carry weight: the
    output's entropy is the target only if they are a mask."""


def _warn_if_mask_gap_bites(logits: torch.Tensor, visible: torch.Tensor, row_max: torch.Tensor,
                            gamma: torch.Tensor, solved: torch.Tensor, dim: int) -> None:
    """Warn (:class:`MaskGapWarning`) for solved rows (gamma > 0) holding finite logits taken as masks for being
    more than MASK_GAP below the maximum, where such an entry, as a score, would keep a weight exp(-gamma * gap)
    above the dtype's eps relative to the largest: [0, -400, -800] with target 0.5 solves at gamma = 0.00347 on
    [0, -400], where -800 would have weight 0.062 and the entropy 0.667.  Rows at gamma = 0 (target log m, short
    rows) are left alone: there the gap is by design what separates keys from masked ones."""
    gap_masked = torch.isfinite(logits) & (logits > torch.finfo(logits.dtype).min / 2) & ~visible
    if not bool(gap_masked.any()):
        return
    gap = torch.where(gap_masked, row_max - logits, torch.full_like(logits, math.inf)).amin(dim=dim, keepdim=True)
    weight = torch.exp(-gamma * gap)
    bites = solved & (gamma > 0) & (weight > torch.finfo(logits.dtype).eps)
    if bool(bites.any()):
        worst = int(weight.masked_fill(~bites, -1).flatten().argmax())
        warnings.warn(
            f"{int(bites.sum())} row(s) have finite logits more than MASK_GAP = {MASK_GAP:g} nats below their maximum "
            f"(e.g. {float(gap.flatten()[worst]):.6g} nats below), taken as mask values with zero probability; at the "
            f"solved gamma = {float(gamma.flatten()[worst]):.3g} such an entry read as a score would have weight "
            f"{float(weight.flatten()[worst]):.3g} relative to the largest, so the output's entropy is the target only "
            "if those entries are a mask. Mask with -inf or torch.finfo(dtype).min to say so (no warning); if they are "
            "scores, divide the logits by a constant c that brings them within 745 nats (gamma then scales by c)",
            MaskGapWarning, stacklevel=3)


def _visible(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """Entries with non-zero probability: finite logits above the mask range and within ``MASK_GAP`` nats of
    their row's maximum.  A finite logit at or below ``finfo(dtype).min / 2`` -- ``masked_fill(mask,
    torch.finfo(dtype).min)``, the common attention convention, or ``-finfo.max`` -- is a mask value, not a
    score (no score comes within a factor 2 of the largest float), and so is one more than ``MASK_GAP`` = 745
    nats below the row maximum (an additive mask such as ``scores - 1e9``: e**-745 underflows even in float64,
    so no representable probability is that far below the largest).  Either counts as ``-inf``: zero
    probability for every gamma, gamma = 0 included, and no part of the support in the range checks.
    Counting it there sent rows with too few visible keys to a solver that could not raise their entropy, or
    to one that did so by shrinking gamma until the masked keys had weight (a causal mask of -1e9 gave the
    first row's three masked keys 0.11 each), and gave the masked keys weight in the gamma = 0 (uniform) limit."""
    finite = torch.isfinite(logits) & (logits > torch.finfo(logits.dtype).min / 2)
    if logits.numel() == 0:  # amax refuses rows of length 0 (refused later as "all zeros") and has no rows to do
        return finite
    row_max = torch.where(finite, logits, torch.full_like(logits, -math.inf)).amax(dim=dim, keepdim=True)
    return finite & (logits - row_max >= -MASK_GAP)


def _uniform_rows(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """Rows uniform on their support (all visible logits equal), exactly, along ``dim`` (kept, size 1)."""
    visible = _visible(logits, dim)
    row_max = torch.where(visible, logits, torch.full_like(logits, -math.inf)).amax(dim=dim, keepdim=True)
    return ((logits == row_max) == visible).all(dim=dim, keepdim=True)


def _output(logits: torch.Tensor, gamma: torch.Tensor, dim: int) -> torch.Tensor:
    """softmax(gamma * logits) along ``dim``, differentiable in the logits and gamma.  A row uniform on its
    support that passed the solver (target log m, or short_rows="uniform") comes back uniform for every
    nearby input (any other row gets gamma = 0 there), so its output is taken at gamma = 0: the same values,
    and the zero derivative of that constant map, where softmax(1 * logits) had softmax's Jacobian."""
    with torch.no_grad():
        uniform = _uniform_rows(logits, dim)
    gamma = torch.where(uniform, torch.zeros_like(gamma), gamma)
    # -inf logits stay -inf (gamma >= 0), and so do entries whose weight underflows to 0
    # (finfo.min masks): no 0 * -inf = nan in the first or second derivative
    return torch.softmax(_scaled_logits(logits, gamma, dim)[0], dim=dim)


def _scaled_logits(logits: torch.Tensor, gamma: torch.Tensor, dim: int):
    """(gamma * logits with zero-weight entries at -inf, the support mask, logits with 0 off the support).

    The support is where softmax(gamma * logits) is non-zero in floating point (a constant mask, no
    gradient).  Entries off it -- ``-inf`` logits, and huge finite mask values such as
    ``torch.finfo(dtype).min`` (mask values, see :func:`_visible`) or -1e20 where its weight underflows --
    contribute exactly 0 to every moment, so they are replaced by 0 before any product: otherwise ``gamma *
    finfo.min`` overflows, ``(logit - mean)**2`` squares to inf, and ``0 * inf`` makes the variance, the
    gradient and the second derivative NaN."""
    finite = _visible(logits, dim)
    safe = torch.where(finite, logits, torch.zeros_like(logits))
    with torch.no_grad():
        trial = torch.where(finite, gamma * safe, torch.full_like(logits, -math.inf))
        support = finite & (torch.softmax(trial, dim=dim) > 0)
    safe = torch.where(support, logits, torch.zeros_like(logits))
    # shift by the row maximum (a constant: softmax and every moment are unchanged, exactly so in their
    # derivatives) before multiplying by gamma: gamma * logits rounds by ~gamma |logit| eps, which with gamma
    # = 3.5e8 (a near-uniform row) or logits offset by 100 moved the output's entropy by 1e-8 .. 1e-6
    with torch.no_grad():
        row_max = torch.where(support, logits, torch.full_like(logits, -math.inf)).amax(dim=dim, keepdim=True)
        row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    # keep -inf out of products: gamma * -inf would make d/dgamma = 0 * -inf = nan
    scaled = torch.where(support, gamma * (safe - row_max), torch.full_like(logits, -math.inf))
    return scaled, support, safe


def _torch_moments(logits: torch.Tensor, gamma: torch.Tensor, dim: int):
    """q = softmax(gamma*logits), H(q), E_q[logits], logits - E_q[logits] (0 where q = 0) and
    Var_q[logits] along dim (masked -inf entries give q = 0)."""
    scaled, support, safe_logits = _scaled_logits(logits, gamma, dim)
    log_q = torch.log_softmax(scaled, dim=dim)
    q = log_q.exp()
    safe_log_q = torch.where(support, log_q, torch.zeros_like(log_q))
    H = -(q * safe_log_q).sum(dim=dim, keepdim=True)
    mean = (q * safe_logits).sum(dim=dim, keepdim=True)
    deviation = torch.where(support, safe_logits - mean, torch.zeros_like(safe_logits))
    var = (q * deviation * deviation).sum(dim=dim, keepdim=True)
    return q, H, mean, deviation, var


def _torch_entropy_terms(logits: torch.Tensor, gamma: torch.Tensor, dim: int):
    """q = softmax(gamma*logits), H(q), and Var_q[logits] along dim (masked -inf entries give q = 0)."""
    q, H, _, _, var = _torch_moments(logits, gamma, dim)
    return q, H, var


def solve_entropy_gamma(logits: torch.Tensor, target_entropy: float, dim: int = -1,
                        max_iterations: int = 100, short_rows: str = "raise") -> tuple[torch.Tensor, ConvergenceReport]:
    r"""Per-row :math:`\gamma` with :math:`H(\mathrm{softmax}(\gamma\,\ell)) = H^*` along ``dim``
    (``gamma`` has size 1 along ``dim``).  ``logits`` = log p up to a per-row constant; ``-inf``
    marks zero probabilities, and so does a finite mask value at or below ``torch.finfo(dtype).min / 2``
    (``masked_fill(mask, torch.finfo(dtype).min)``) or more than :data:`MASK_GAP` = 745 nats below the row's
    maximum (an additive mask, ``scores - 1e9``); a :class:`MaskGapWarning` says when such an entry, read as a
    score, would carry weight above eps at the solved gamma (so the answer holds only if it is a mask).  No
    gradient flows (see :class:`EntropyNormalize` for that).
    float16/bfloat16 logits are solved in float32 (see :func:`entropy_normalize`); gamma comes back in their dtype.

    ``short_rows``: what to do with rows whose support is too small for the target
    (``log m < H*``, e.g. the first rows of a causal attention mask): ``"raise"`` (default) or
    ``"uniform"`` -- give them gamma = 0, the uniform distribution on their support, which is the
    largest entropy they can reach; the report counts them in ``short_rows``.  A short row that is
    already uniform on its support keeps gamma = 1 (every gamma gives it that same distribution)."""
    logits = logits.detach()
    max_iterations = _whole_number("max_iterations", max_iterations, 0, _ITERATIONS)
    dim = _checked_dim(dim, logits.dim())
    if not logits.is_floating_point():
        raise DomainError(f"logits must be a floating tensor, got {logits.dtype}; cast with .double() or .float()")
    if logits.dtype in _HALF:
        gamma, report = solve_entropy_gamma(logits.float(), target_entropy, dim, max_iterations, short_rows)
        return gamma.to(logits.dtype), report
    if torch.isnan(logits).any() or torch.isposinf(logits).any():
        raise DomainError("logits/log-probabilities contain NaN or +inf; only finite values and -inf (zero probability) are allowed")
    dtype = logits.dtype
    eps = torch.finfo(dtype).eps
    finite = _visible(logits, dim)  # -inf, finfo.min and additive mask values are zero probabilities
    n_support = finite.sum(dim=dim, keepdim=True)
    if (n_support == 0).any():
        raise DomainError("a row of p is all zeros (or all logits -inf or finfo.min mask values); every row needs "
                          "a positive entry")
    row_max = torch.where(finite, logits, torch.full_like(logits, -math.inf)).amax(dim=dim, keepdim=True)
    # ties at the maximum: exact equality, as in the mpmath back end
    n_ties = (logits == row_max).sum(dim=dim, keepdim=True)
    target = torch.as_tensor(_target_number(target_entropy), dtype=dtype, device=logits.device)
    top = torch.log(n_support.to(dtype))
    floor = torch.log(n_ties.to(dtype))
    uniform = n_ties == n_support
    # target comparisons with a rounding allowance: log m and the target are both rounded
    slack = 8 * eps * torch.clamp(top, min=1)
    if short_rows not in ("raise", "uniform"):
        raise DomainError(f"short_rows must be 'raise' or 'uniform', got {short_rows!r}")
    too_high = target > top + slack
    if target < 0:   # was reported as "outside [0, log m] for 0 row(s)": it is outside for every row
        raise DomainError(
            f"target entropy {float(target)} is negative: an entropy lies in [0, log m] (m = number of non-zero "
            f"entries, smallest log m here = {float(top.min())}); pass a target in that range, in nats")
    if short_rows == "raise" and too_high.any():
        raise DomainError(
            f"target entropy {float(target)} is outside [0, log m] for {int(too_high.sum())} row(s) (m = number of "
            f"non-zero entries, smallest log m = {float(top.min())}); choose a target in range for every row, or pass "
            "short_rows='uniform' to give rows with too small a support their uniform distribution (gamma = 0)")
    at_top = ((target - top).abs() <= slack) | too_high
    bad_uniform = uniform & ~at_top
    if bad_uniform.any():
        raise DomainError(
            f"{int(bad_uniform.sum())} row(s) are uniform on their support, so p^gamma keeps entropy log m for every "
            f"gamma and cannot reach {float(target)}; perturb those rows or change the target")
    bad_ties = ~uniform & (target <= floor + slack)
    if bad_ties.any():
        # the target may lie above log k but within the rounding allowance (k = 1: any target below ~1e-6 in
        # float32), which the old message misstated as "log k >= target"
        ks = sorted({int(k) for k in n_ties[bad_ties].tolist()})
        raise DomainError(
            f"{int(bad_ties.sum())} row(s) cannot reach target entropy {float(target)}: with k entries tied at the "
            f"maximum (k = {', '.join(map(str, ks))} there) p^gamma tends to uniform on the ties as gamma -> inf, and "
            f"its entropy decreases to log k only in that limit; the target is at or below log k plus the {dtype} "
            f"rounding allowance {float(slack.max()):.3g}. Choose a larger target (or use float64 for one this close)")
    if row_max.numel() == 0:
        # no rows (a batch of size 0): nothing to solve; the bookkeeping below reduces over all rows,
        # which torch refuses on an empty tensor
        return torch.ones_like(row_max), ConvergenceReport(0, True, (0.0,), float(16 * eps * max(float(target), 1)),
                                                           None, 0, torch.ones_like(row_max, dtype=torch.bool))
    shifted = logits - row_max
    gamma = torch.ones_like(row_max)
    lo = torch.zeros_like(row_max)
    hi = torch.full_like(row_max, math.inf)
    active = ~uniform & ~at_top
    tol = 16 * eps * torch.clamp(target, min=1)
    residuals: list[float] = []
    converged = False
    row_converged = torch.ones_like(active)
    iterations = 0
    for iterations in range(max_iterations + 1):
        _, H, var = _torch_entropy_terms(shifted, gamma, dim)
        residual = torch.where(active, H - target, torch.zeros_like(H))
        residuals.append(float(residual.abs().max()))
        done = residual.abs() <= tol
        if bool(done.all()):
            converged = True
            break
        if iterations == max_iterations:
            row_converged = done | ~active   # the rows the cap stopped short (the report's flag covers them all)
            break
        lo = torch.where(residual > 0, torch.maximum(lo, gamma), lo)
        hi = torch.where(residual < 0, torch.minimum(hi, gamma), hi)
        slope = -gamma * var
        newton = gamma - residual / slope
        inside = (newton > lo) & (newton < hi) & torch.isfinite(newton)
        fallback = torch.where(torch.isfinite(hi), (lo + hi) / 2, 2 * torch.maximum(gamma, torch.ones_like(gamma)))
        proposal = torch.where(inside, newton, fallback)
        # a step below rounding of gamma is as good as converged (float32 H stalls above tol)
        tiny_step = (proposal - gamma).abs() <= 4 * eps * gamma.abs()
        gamma = torch.where(done | ~active, gamma, proposal)
        if bool((done | tiny_step | ~active).all()):
            converged = True
            _, H, _ = _torch_entropy_terms(shifted, gamma, dim)
            residuals.append(float(torch.where(active, H - target, torch.zeros_like(H)).abs().max()))
            iterations += 1
            break
    gamma = torch.where(uniform, torch.ones_like(gamma), gamma)
    gamma = torch.where(~uniform & at_top, torch.zeros_like(gamma), gamma)
    _warn_if_mask_gap_bites(logits, finite, row_max, gamma, active, dim)
    report = ConvergenceReport(iterations, converged, tuple(residuals), float(tol), None, int(too_high.sum()),
                               row_converged)
    return gamma, report


#: Dtypes solved in float32 and cast back: with 8 or 11 significant bits the solve itself stalls (bfloat16
#: p = [0.5, 0.3, 0.2], target 0.9: gamma 2 for 1.7736, output entropy 0.852; its tolerance was 16 eps = 0.125).
_HALF = (torch.float16, torch.bfloat16)


def _torch_powered(logits: torch.Tensor, gamma: torch.Tensor, dim: int) -> torch.Tensor:
    finite = _visible(logits, dim)
    row_max = torch.where(finite, logits, torch.full_like(logits, -math.inf)).amax(dim=dim, keepdim=True)
    shifted = torch.where(finite, logits - row_max, torch.full_like(logits, -math.inf))
    # gamma = 0 means uniform on the support (limit gamma -> 0+): use 0*finite = 0, keep -inf for zeros
    scaled = torch.where(finite, gamma * shifted, shifted)
    return torch.softmax(scaled, dim=dim)


def entropy_normalize(p, target_entropy, dps: int | None = None, dim: int = -1,
                      max_iterations: int = 100, short_rows: str = "raise") -> EntropyNormalization:
    r"""Solve :math:`H(p^\gamma/\sum p^\gamma) = H^*` for :math:`\gamma` (see the module docstring).

    ``dps`` given: ``p`` is a 1-D sequence (numbers, strings, mpf, Fractions, Decimals or SymPy numbers; the
    target too), the solve runs in mpmath with
    ``dps + 10`` working digits (more where gamma or the output is ill-conditioned: targets near ``log m``
    or ``log k``, near-equal entries) and ``gamma``/``p`` come back as mpf at ``dps`` digits.
    ``dps=None``: ``p`` is a tensor (float32/float64, any shape; a list of Python floats is
    solved in float64, a NumPy array in its own dtype; float16/bfloat16 are solved in float32 and
    ``gamma``/``p`` cast back to their dtype, since their 8-11 significant bits cannot carry the Newton
    iteration); each slice along ``dim`` is
    solved independently; ``gamma`` keeps ``dim`` with size 1 so ``p ** gamma`` broadcasts.
    ``short_rows`` (torch only): see :func:`solve_entropy_gamma`.

    Torch back end, ``p`` requiring grad: ``gamma`` and ``p`` are differentiable in ``p``, gamma's
    dependence on ``p`` included (implicit function theorem, as in :class:`EntropyNormalize`), so the
    output's entropy has zero gradient; zero entries of ``p`` get zero gradient.

    >>> import torch
    >>> r = entropy_normalize(torch.tensor([[0.5, 0.3, 0.2], [0.7, 0.2, 0.1]], dtype=torch.float64), 0.5)
    >>> r.gamma.shape, torch.allclose(-(r.p * r.p.log()).sum(-1), torch.tensor(0.5, dtype=torch.float64))
    (torch.Size([2, 1]), True)
    """
    max_iterations = _whole_number("max_iterations", max_iterations, 0, _ITERATIONS)
    if dps is not None:
        dps = _whole_number("dps", dps, 1, "a positive whole number of significant digits; pass e.g. dps=30 "
                                            "(or dps=None for the torch back end)")
        if isinstance(p, torch.Tensor):
            if p.dim() != 1:
                raise DomainError("the mpmath back end (dps given) takes one distribution: pass a 1-D tensor or sequence")
            p = p.tolist()
        return _warn_unconverged(_entropy_normalize_mp(p, target_entropy, dps, max_iterations))
    if not isinstance(p, torch.Tensor):
        # Python floats are doubles: a list solved in the default float32 would lose half their digits
        if isinstance(p, (str, bytes, dict)):
            raise DomainError(f"p must be a tensor or a sequence of probabilities, got the {type(p).__name__} {p!r}")
        try:
            p = torch.as_tensor(p, dtype=None if getattr(p, "dtype", None) is not None else torch.float64)
        except (TypeError, ValueError, RuntimeError) as exc:  # ragged rows, non-numbers: torch's bare errors
            raise DomainError(f"p must be a tensor or a (nested) list of numbers with rows of equal length; "
                              f"torch could not read {p!r} ({exc})") from None
    if p.is_complex():
        # p.to(float) would drop the imaginary parts with only a warning and solve for the real parts
        raise DomainError(f"p must be real probabilities, got a {p.dtype} tensor; pass p.real (or p.abs()) "
                          "if that is what you mean")
    if not p.is_floating_point():
        p = p.to(torch.get_default_dtype())
    if p.dtype in _HALF:
        # solved in float32 and cast back (see _HALF): the output is as close to the target as the dtype can hold
        result = entropy_normalize(p.float(), target_entropy, None, dim, max_iterations, short_rows)
        return EntropyNormalization(result.gamma.to(p.dtype), result.p.to(p.dtype), result.target_entropy,
                                    result.report)
    if torch.isnan(p).any() or torch.isinf(p).any() or (p < 0).any():
        raise DomainError("p must have finite, non-negative entries (zeros allowed); got NaN, inf or negative values")
    positive = p > 0
    # zeros -> -inf, handled as zero probability (log taken of 1 there, so that a zero entry gets a zero
    # gradient rather than 0/0 = nan through log's backward)
    logits = torch.where(positive, torch.log(torch.where(positive, p, torch.ones_like(p))),
                         torch.full_like(p, -math.inf))
    gamma, report = solve_entropy_gamma(logits, target_entropy, dim=dim, max_iterations=max_iterations,
                                        short_rows=short_rows)
    if logits.requires_grad and torch.is_grad_enabled():
        # gamma depends on p: without this the output's gradient treated gamma as a constant, so
        # d(entropy of the output)/dp came out non-zero although the entropy is pinned at the target
        gamma = _SolveGamma.apply(logits, target_entropy, dim, max_iterations, short_rows, gamma)
        powered = _output(logits, gamma, dim)
    else:
        powered = _torch_powered(logits, gamma, dim)
    return _warn_unconverged(EntropyNormalization(gamma, powered, _target_number(target_entropy), report))


def _warn_unconverged(result: EntropyNormalization) -> EntropyNormalization:
    """The result, with a :class:`NotConvergedWarning` if the iteration cap stopped the solve: an unconverged gamma
    was returned with only ``report.converged = False`` to say so (a near-uniform row [0, -1e-4, -2e-4] stopped
    by max_iterations=8 at target 0.6 missed it by 0.6, beside two converged rows)."""
    report = result.report
    if not report.converged:
        rows = ""
        if isinstance(report.row_converged, torch.Tensor):
            rows = f"{int((~report.row_converged).sum())} of {report.row_converged.numel()} row(s) "
        warnings.warn(f"entropy normalisation stopped after max_iterations = {report.iterations} steps with {rows}"
                      f"|H - target| = {_short(abs(report.residual_history[-1]), 3)} above the tolerance "
                      f"{_short(report.tolerance, 3)} (report.row_converged says which rows); raise max_iterations",
                      NotConvergedWarning, stacklevel=3)
    return result


# ----------------------------------------------------------------------------- autograd module


class _SolveGamma(torch.autograd.Function):
    r"""gamma(logits) defined implicitly by H(softmax(gamma * logits)) = H*.

    Backward by the implicit function theorem:
    :math:`\partial\gamma/\partial\ell = -(\partial H/\partial\ell)/(\partial H/\partial\gamma)`
    (no unrolling).  With :math:`q = \mathrm{softmax}(\gamma\ell)`, :math:`\mu = E_q[\ell]` and
    :math:`v = \mathrm{Var}_q[\ell]`: :math:`\partial H/\partial\ell_i = -\gamma^2 q_i(\ell_i - \mu)` and
    :math:`\partial H/\partial\gamma = -\gamma v`, so
    :math:`\partial\gamma/\partial\ell_i = -\gamma\, q_i (\ell_i - \mu) / v`.

    The backward is written in differentiable torch ops of the saved logits and the saved output
    gamma, so double backward (Hessian-vector products, ``create_graph=True``) is exact: the
    dependence of the gradient on gamma flows back through this Function again."""

    @staticmethod
    def forward(logits, target_entropy, dim, max_iterations, short_rows, solved):
        if solved is not None:  # already solved (entropy_normalize, which reports non-convergence itself)
            return solved.detach().clone()
        gamma, report = solve_entropy_gamma(logits, target_entropy, dim=dim, max_iterations=max_iterations,
                                            short_rows=short_rows)
        if not report.converged:
            raise DomainError(f"entropy normalisation did not converge in {max_iterations} iterations "
                              f"(residuals {report.residual_history[-3:]}); raise max_iterations")
        return gamma

    @staticmethod
    def setup_context(ctx, inputs, output):
        logits, target_entropy, dim, _, _, _ = inputs
        ctx.save_for_backward(logits, output)
        ctx.dim = dim

    @staticmethod
    def backward(ctx, grad_gamma):
        logits, gamma = ctx.saved_tensors
        dim = ctx.dim
        q, _, _, deviation, var = _torch_moments(logits, gamma, dim)
        # rows solved at gamma = 0 and rows uniform on their support have dH/dgamma = -gamma*var = 0:
        # gamma is not a differentiable function of the logits there; give them zero gradient
        # (documented).  Uniform rows are detected exactly (all finite logits equal), since their
        # computed var may be a rounding-level non-zero that would blow the quotient up.
        uniform = _uniform_rows(logits, dim)
        safe = (gamma != 0) & ~uniform & (var > 0)
        factor = torch.where(safe, -gamma * grad_gamma / torch.where(safe, var, torch.ones_like(var)),
                             torch.zeros_like(var))
        return factor * q * deviation, None, None, None, None, None


class EntropyNormalize(torch.nn.Module):
    r"""``softmax(gamma * logits)`` along ``dim`` with ``gamma`` solved per row so that the
    output has entropy ``target_entropy`` (nats).

    Differentiable in ``logits``: the gradient through ``gamma`` uses the implicit function
    theorem on :math:`H(\mathrm{softmax}(\gamma\ell)) = H^*` (closed form, no unrolled
    iterations), itself written in differentiable ops, so second derivatives (double backward,
    Hessian-vector products) are exact too.  ``-inf`` logits (masked positions) get probability 0, and so do
    ``finfo(dtype).min`` fills and additive masks (logits more than :data:`MASK_GAP` = 745 nats below the row's
    maximum, as ``scores - 1e9``).  float16/bfloat16 logits are computed in float32 and the output cast back.  Every row needs
    a target in the reachable range (see :func:`entropy_normalize`), unless ``short_rows="uniform"``
    (rows with fewer than :math:`e^{H^*}` visible keys, as in causal masks, become uniform on
    their support, gamma = 0, with zero gradient through gamma); rows that are uniform on
    their support with ``target = log m`` pass through with gamma = 1 and a zero gradient (the
    output is the uniform distribution on the support for every nearby input).

    >>> m = EntropyNormalize(target_entropy=1.0)
    >>> y = m(torch.randn(4, 6, dtype=torch.float64))
    >>> torch.allclose(-(y * y.log()).sum(-1), torch.ones(4, dtype=torch.float64))
    True
    """

    def __init__(self, target_entropy: float, dim: int = -1, max_iterations: int = 100,
                 short_rows: str = "raise") -> None:
        super().__init__()
        target_entropy = _target_number(target_entropy)
        if target_entropy < 0:
            raise DomainError(f"target_entropy must be >= 0 nats, got {target_entropy}")
        self.target_entropy = float(target_entropy)
        self.dim = _checked_dim(dim)
        self.max_iterations = _whole_number("max_iterations", max_iterations, 0, _ITERATIONS)
        if short_rows not in ("raise", "uniform"):  # was accepted here and refused only at the first forward
            raise DomainError(f"short_rows must be 'raise' or 'uniform', got {short_rows!r}")
        self.short_rows = short_rows

    def gamma(self, logits: torch.Tensor) -> torch.Tensor:
        """The per-row power (differentiable through the solve; float16/bfloat16 solved in float32)."""
        if logits.dtype in _HALF:
            return self.gamma(logits.float()).to(logits.dtype)
        return _SolveGamma.apply(logits, self.target_entropy, self.dim, self.max_iterations, self.short_rows, None)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        if logits.dtype in _HALF:  # computed in float32 and cast back, as softmax does internally
            return self.forward(logits.float()).to(logits.dtype)
        return _output(logits, self.gamma(logits), self.dim)

    def extra_repr(self) -> str:
        return f"target_entropy={self.target_entropy}, dim={self.dim}, short_rows={self.short_rows!r}"
