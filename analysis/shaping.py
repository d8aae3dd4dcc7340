r"""Deep Kernel Shaping (DKS) and Tailored Activation Transformation (TAT) for network graphs.

Every activation node of a network graph gets a transformed activation
:math:`\psi(x) = \gamma(\phi(\alpha x + \beta) + \delta)` whose local Q/C maps (DKS convention,
see :mod:`analysis.transform_conditions`) meet per-layer targets derived from the topology by the
graph walker (``graphs.max_subnetwork_value``):

* **DKS** (Martens et al. 2021): Q(1) = 1, Q'(1) = q_t (default 1), C(0) = 0, C'(1) = s, where the
  common per-layer slope s makes the network's maximal C'(1) over sub-networks equal ``zeta``
  (default 1.5, must exceed 1).  Closed forms: :math:`\delta = -E[\phi(\alpha z+\beta)]`,
  :math:`\gamma = 1/\sqrt{E[(\phi(\alpha z+\beta)+\delta)^2]}`; (alpha, beta) by Newton on exact
  derivatives in float64, then polished by Newton in mpmath to ``dps`` digits.
* **TAT, smooth activations** (Zhang et al. 2022): Q(1) = 1, Q'(1) = 1, C'(1) = 1, C''(1) = k with
  the network's maximal C''(1) = ``tau`` (default 0.3); :math:`\gamma` closed form, (alpha, beta,
  delta) by Newton.
* **TAT, leaky ReLU**: negative slope a with the network's maximal C(0) = ``eta`` (default 0.9), output
  scale :math:`\sqrt{2/(1+a^2)}` so that Q(q) = q exactly (alpha = 1, beta = delta = 0).

**Solution branch.**  Newton runs from the best points of a (log alpha, beta) grid, and (DKS) from the
grid cells where the zero contours of both residuals cross, and collects every distinct root; when none converges (large targets need alpha far beyond the grid), a root
for a smaller target is continued to the requested one, and infeasibility is reported with the
largest target reached.  Float64 roots are verified on a rule with twice the panels (mpmath at
20 digits when float64 cannot resolve them), and residuals come from that verified evaluation.
Float targets are taken exactly as the decimal they print as (1.05000000001 stays itself).

The default (``branch="beta>=0"``) returns the root with the smallest alpha
(the least nonlinear transformation), and for activations with phi(x) + phi(-x) = c0 (odd ones,
c0 = 0; the sigmoid, c0 = 1), whose roots come in mirror pairs (alpha, beta, gamma, delta) and
(alpha, -beta, gamma, -delta - c0), the member with beta >= 0.  Activations without that
symmetry (elu, selu) can have beta < 0 on this branch; ``ShapedLayer.branch`` says which case
applied.  TAT roots of such symmetric activations come in two families, delta = -E[phi] -+
sqrt(alpha^2 E[phi'^2] - Var phi) (C'(1) = 1 fixes (E[phi] + delta)^2); the default takes the smallest alpha
among the roots Newton finds of the family with E[psi(z)] <= 0 on the beta >= 0 member (the dks package's, and
the one continuous in C''(1) from 0).  The other family has roots of smaller alpha (tanh at C''(1) = 0.1:
alpha 0.203 against 0.343), which the default does not return.  In every case we compared (tests/fixtures/dks_reference.json) this is the root the public
``dks`` package finds, up to that mirror: for symmetric activations ``dks`` often returns the beta < 0
member (the sigmoid and atan under DKS; tanh, sigmoid, erf and atan under TAT), which computes
the same kernel; reflect it with (alpha, -beta, gamma, -delta - c0) to compare parameters.

Example (an MLP of depth 10 from the graph builders; the per-layer slope is exactly 1.5**(1/10)):

>>> import analysis, graphs
>>> net = analysis.shape("tanh", graphs.mlp(10), method="dks", zeta=1.5)
>>> round(net.layers[0].alpha, 6), net.layers[0].targets["c_slope"]
(0.29665, 2**(9/10)*3**(1/10)/2)
>>> abs(net.c_map(0.0)) < 1e-9
True
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import mpmath
import networkx as nx
import numpy as np
import sympy

from symact._safe_parse import safe_sympify

from analysis.transform_conditions import (
    ActivationFunctions,
    ConditionEvaluator,
    ConditionSet,
    activation_functions,
    transform_conditions,
)
from analysis.kernel import _check_c, check_dps
from symact.errors import DomainError, InfeasibleShapingError, InvalidGraphError, SymactError, UnknownActivationError

__all__ = ["shape", "ShapedLayer", "ShapedNetwork", "TorchShaping", "solve_dks_layer",
           "solve_tat_layer", "leaky_relu_c_map", "LayerSolution"]

# ----------------------------------------------------------------------------------------
# Per-layer solvers
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerSolution:
    """alpha, beta, gamma, delta of one transformed activation and its achieved conditions.

    ``conditions`` are evaluated at the solution by the engine that produced it (float64 when
    ``dps`` is None, else mpmath at ``dps``); ``residuals`` = achieved minus target for the
    conditions the method imposes (a dict, condition name -> number).  ``mirrored`` says
    whether the returned solution is the mirror (alpha, -beta, gamma, -delta - c0) of Newton's
    (c0 = phi(x) + phi(-x): 0 for odd activations, 1 for the sigmoid).
    """

    alpha: Any
    beta: Any
    gamma: Any
    delta: Any
    dps: int | None
    conditions: ConditionSet
    residuals: dict
    mirrored: bool = False
    branch: str = ""


_F64_TOL = 1e-13
_MP_STALL = 3  # see _newton: accepted mpmath steps in a row that do not lower the residual
_MP_MAX_HALVINGS = 8  # see _newton: halvings in a row of one mpmath Newton step
_F64_FLOOR = 1e-15  # absolute: float64 residuals cannot go much below this (targets near 1 have tiny scales)
# Newton starts: the best points of this grid (log alpha in [log 1e-3, log 8], beta in [-4, 4]).
_GRID_LOG_ALPHA = np.linspace(math.log(1e-3), math.log(8.0), 24)
_GRID_BETA = np.linspace(-4.0, 4.0, 25)
_N_STARTS = 24  # Newton runs from the best grid points; all distinct roots are collected
# further grid starts, per round (at most two), when _pick is left to take the smallest |beta|
# (see _more_small_beta_roots); a start that finds no root costs 60 Newton steps
_N_SMALL_BETA_STARTS = 12
# Newton runs, at most, from grid cells where the zero contours of both residuals cross (see _crossing_starts)
_N_CROSSING_STARTS = 12
# Newton starts at beta = 0 of a mirror-symmetric activation start here instead (see _solve_f64)
_SYMMETRIC_START_BETA = 0.01


def _dks_system(ev: ConditionEvaluator, q_target, c_target):
    """Residuals (Q'(1)-q_t, C'(1)-c_t) with delta, gamma closed form, and their (alpha, beta) Jacobian.

    With delta = -m, m = E[phi], v = E[(phi - m)^2] and n = E[(z^2 - 1)(phi - m)^2] (from
    :func:`~analysis.transform_conditions.shifted_expectations`, through k = (phi - m) phi'), Q'(1) = n / (2v) and
    C'(1) = alpha^2 E[phi'^2] / v.  The Jacobian is the total derivative, delta = -m moving with (alpha, beta):
    d/dtheta = partial_theta - m_theta partial_delta, where partial_delta v = 2 E[phi - m] = 0 and
    partial_delta n = 2 E[(z^2 - 1) phi] = 2 alpha E[z phi'] = 2 alpha m_alpha (Stein's lemma).  The density forms
    used before (E[(z^2 - 1)(phi - m)], (1/alpha) E[z phi] for m_beta, ...) are sums of terms of size |phi| for
    results of the size of phi's variation, which is tiny where phi saturates on the Gaussian's mass."""
    from analysis.transform_conditions import shifted_expectations

    a = ev.alpha
    e = shifted_expectations(ev, None, curvature=False)
    m, v, v_a, v_b, d, d_a, d_b = e.m, e.s, e.s_a, e.s_b, e.d1, e.d1_a, e.d1_b
    n_delta = 2 * a * e.m_a
    n, n_a, n_b = e.n, e.n_a - n_delta * e.m_a, e.n_b - n_delta * e.m_b
    qs = n / (2 * v)
    qs_a = (n_a * v - n * v_a) / (2 * v * v)
    qs_b = (n_b * v - n * v_b) / (2 * v * v)
    cs = a * a * d / v
    cs_a = (2 * a * d + a * a * d_a) / v - cs * v_a / v
    cs_b = a * a * d_b / v - cs * v_b / v
    residual = [qs - q_target, cs - c_target]
    jac = [[qs_a, qs_b], [cs_a, cs_b]]
    return residual, jac, {"m": m, "v": v}


def _tat_system(ev: ConditionEvaluator, delta, k_target):
    """Residuals (Q'(1)-1, C'(1)-1, C''(1)-k) with gamma closed form; Jacobian in (alpha, beta, delta).

    The expectations come from :func:`~analysis.transform_conditions.shifted_expectations` (through
    k = (phi + delta) phi', small where psi is flat); their delta derivatives are s_delta = 2 (m + delta) and
    n_delta = 2 E[(z^2 - 1) phi] = 2 alpha E[z phi'] (Stein's lemma), not the density form, a sum of terms of size
    |phi|."""
    from analysis.transform_conditions import shifted_expectations

    a = ev.alpha
    e = shifted_expectations(ev, delta)
    s, s_a, s_b, n, n_a, n_b = e.s, e.s_a, e.s_b, e.n, e.n_a, e.n_b
    d1, d1_a, d1_b, d2, d2_a, d2_b = e.d1, e.d1_a, e.d1_b, e.d2, e.d2_a, e.d2_b
    s_d = 2 * (e.m + delta)
    n_d = 2 * a * e.m_a
    qs = n / (2 * s)
    cs = a * a * d1 / s
    kc = a ** 4 * d2 / s

    def quot(num, dnum, ds):
        return (dnum * s - num * ds) / (s * s)

    row_q = [quot(n, n_a, s_a) / 2, quot(n, n_b, s_b) / 2, quot(n, n_d, s_d) / 2]
    row_c = [quot(a * a * d1, 2 * a * d1 + a * a * d1_a, s_a), quot(a * a * d1, a * a * d1_b, s_b),
             quot(a * a * d1, 0, s_d)]
    row_k = [quot(a ** 4 * d2, 4 * a ** 3 * d2 + a ** 4 * d2_a, s_a), quot(a ** 4 * d2, a ** 4 * d2_b, s_b),
             quot(a ** 4 * d2, 0, s_d)]
    return [qs - 1, cs - 1, kc - k_target], [row_q, row_c, row_k], {"s": s}


def _newton(system: Callable, x0: list, dps: int | None, scale: float, max_iter: int = 60,
            log_alpha_max: float | None = None):
    """Damped Newton on unknowns x = (log alpha, beta[, delta]); returns (x, residual) or None.

    Gives up (None, or the last converged point) once log alpha exceeds ``log_alpha_max``
    (default :data:`_LOG_ALPHA_MAX`)."""
    if log_alpha_max is None:
        log_alpha_max = _LOG_ALPHA_MAX
    x = list(x0)
    if dps is None:
        tol = max(_F64_TOL * scale, _F64_FLOOR)
        to_num, exp = float, math.exp
    else:
        tol = mpmath.mpf(10) ** (-(dps + 2)) * scale
        to_num, exp = mpmath.mpf, mpmath.exp
    best, polished, done = None, False, None
    lowest, stalled, halvings = None, 0, 0
    for _ in range(max_iter):
        try:
            res, jac = system(x)
        except (ArithmeticError, ValueError):  # ArithmeticError: also DivergentIntegralError (see _start_points)
            return done
        norm = max(abs(r) for r in res)
        if not all(map(_finite, res)):
            return done
        if done is not None and norm > max(abs(r) for r in done[1]):
            return done
        if best is not None and norm > best[1] * 4:
            # overshoot: halve the previous step
            halvings += 1
            if dps is not None and halvings > _MP_MAX_HALVINGS:
                # mpmath polish: a Newton step from a converged start that still overshoots at 1/256
                # of its length is not a descent direction at this precision; the run only cycles
                # (accept a point near the start, the same step, the same halvings) until max_iter
                # (tanh TAT at C''(1) = 1e-10 with dps=15: 20 steps of 0.25-0.6 s, then a refusal)
                return done
            x = [(xi + bi) / 2 for xi, bi in zip(x, best[0])]
            continue
        halvings = 0
        best = (list(x), norm)
        if dps is not None:
            # mpmath polish (it starts at a converged float64 root, so each accepted step cuts the
            # residual by orders of magnitude): accepted steps that do not go below the smallest
            # residual yet, _MP_STALL in a row, mean the residual sits on the evaluation's noise above
            # tol and no later step will meet it (tanh at C'(1) = 1 + 1e-20 spent 16 more steps of
            # 0.3-0.8 s each at 3e-45 with tol 1e-46 before giving up)
            if lowest is None or norm < lowest:
                lowest, stalled = norm, 0
            else:
                stalled += 1
                if stalled >= _MP_STALL and norm > tol:
                    return done
        if norm <= tol and (dps is not None or polished):
            return x, res
        if norm <= tol:
            polished = True  # float64: one more step (quadratic convergence) to reach rounding level
            done = (x, res)
        # chain rule: columns w.r.t. alpha -> log alpha
        alpha = exp(x[0])
        j = [[row[0] * alpha] + list(row[1:]) for row in jac]
        try:
            if dps is None:
                step = np.linalg.solve(np.array(j, dtype=float), -np.array(res, dtype=float)).tolist()
            else:
                step = list(mpmath.lu_solve(mpmath.matrix(j), -mpmath.matrix(res)))
        except (np.linalg.LinAlgError, ZeroDivisionError):
            return done
        limit = max(abs(s) for s in step)
        if dps is None and limit > 0.5:  # trust region in float64 only; mpmath polish starts converged
            step = [s * 0.5 / limit for s in step]
        x = [xi + to_num(si) for xi, si in zip(x, step)]
        if x[0] > log_alpha_max:  # see _LOG_ALPHA_MAX: not followed (the rule's cost grows like alpha)
            return done
        if dps is not None and limit < mpmath.mpf(10) ** (-(dps + 4)):
            res, _ = system(x)
            return x, res
    return done


def _with_skipped_starts(exc: InfeasibleShapingError, skipped: list) -> InfeasibleShapingError:
    """``exc`` with a note on the grid starts :func:`_start_points` skipped, when there were any: the
    activation's integrals may diverge there (exp(x**4), whose refusal was a DivergentIntegralError)."""
    if not skipped:
        return exc
    return InfeasibleShapingError(
        f"{exc} Note: {len(skipped)} grid start(s) were skipped because the float64 rule could not hold "
        f"their integrals, e.g.: {skipped[0]}")


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError, OverflowError):
        return False


def _start_points(system_at, grid_alpha, grid_beta, kinks=(), skipped: list | None = None
                  ) -> list[tuple[float, float, list]]:
    """(log alpha, beta, residuals) at the grid points where the residuals are finite.

    Besides the (log alpha, beta) grid, for every kink k the points beta = k + t*alpha with
    |t| <= 4 (kink within 4 standard deviations), where the solutions of kinked activations live
    at small alpha.  The residuals are kept raw so that :func:`_ranked` can score the same points
    for other values of the target (the target enters one residual as a constant shift).
    Starts whose integrals the float64 rule cannot hold are skipped (their errors appended to ``skipped``).
    """
    from symact.errors import DivergentIntegralError

    out, divergent = [], None
    points = [(la, b) for la in grid_alpha for b in grid_beta]
    points += [(la, k + t * math.exp(la)) for k in kinks for la in grid_alpha for t in np.linspace(-4, 4, 17)]
    for la, b in points:
        try:
            res = system_at(la, b)
        except DivergentIntegralError as exc:
            # the float64 rule's mass check also fires where phi = phi' = 0 over the Gaussian's bulk and
            # only a far tail is left (relu6, hardswish, hardsigmoid at beta = -3.3, alpha = 0.03): such a
            # start is useless, not a reason to stop (the solve raised "the integral diverges").  Re-raised
            # below when no point is usable; a refusal mentions the skipped starts (_with_skipped_starts).
            divergent = divergent or exc
            if skipped is not None:
                skipped.append(exc)
            continue
        except (FloatingPointError, ZeroDivisionError, OverflowError, ValueError):
            continue
        if all(map(_finite, res)):
            out.append((float(la), float(b), [float(r) for r in res]))
    if not out and divergent is not None:
        raise divergent
    return out


def _ranked(points, index: int, shift: float, scale: float) -> list[tuple[float, float, float]]:
    """(score, log alpha, beta) sorted by the largest residual once ``shift`` is added to residual ``index``."""
    scored = []
    for la, b, res in points:
        r = list(res)
        r[index] += shift
        scored.append((max(abs(v) for v in r) / scale, la, b))
    scored.sort()
    return scored


def _roots(ranked, newton_from, n_starts: int, branch: str) -> list[dict]:
    """Distinct Newton roots from the best ``n_starts`` ranked points (``newton_from(la, b)`` -> x or None)."""
    found = []
    for _, la, b in ranked[:n_starts]:
        x = newton_from(la, b)
        if x is None:
            continue
        alpha, beta = math.exp(x[0]), x[1]
        if any(abs(alpha - s["alpha"]) < 1e-9 and abs(beta - s["beta"]) < 1e-9 for s in found):
            continue
        found.append({"alpha": alpha, "beta": beta, "delta": x[2] if len(x) > 2 else None, "x": list(x)})
        if branch == "any":
            break
    return found


def _more_small_beta_roots(roots: list, rest: list, newton_from: Callable, branch: str, odd_offset) -> list:
    """``roots`` and the distinct roots Newton finds from further ranked grid points (``rest``) whose
    |beta| is below the smallest |beta| found so far, while :func:`_pick` would take the root with the
    smallest |beta| (``branch="min|beta|"``, or ``"beta>=0"`` with no beta >= 0 root of an activation
    without mirror pairs).  The best grid points alone missed such roots: gelu at C'(1) = 1.5 returned
    (alpha 0.745, beta -2.54) as "the smallest |beta|", while (0.312, -1.062) -- the branch taken at
    C'(1) = 1.49 and 1.6 -- is a root too; its nearest grid point ranked below the 24 best."""
    roots = list(roots)
    for _ in range(2):
        if not _takes_smallest_abs_beta(roots, branch, odd_offset):
            break
        bound = min(abs(r["beta"]) for r in roots)
        starts = [p for p in rest if abs(p[2]) < bound - 1e-9][:_N_SMALL_BETA_STARTS]
        if not starts:
            break
        tried = {(la, b) for _, la, b in starts}
        rest = [p for p in rest if (p[1], p[2]) not in tried]
        new = [r for r in _roots(starts, newton_from, len(starts), branch)
               if not any(abs(r["alpha"] - s["alpha"]) < 1e-9 and abs(r["beta"] - s["beta"]) < 1e-9 for s in roots)]
        roots += new
        if not any(abs(r["beta"]) < bound for r in new):
            break
    return roots


def _crossing_starts(points, grid_alpha, grid_beta, index: int, shift: float, roots: list) -> list:
    """Centres (score, log alpha, beta) of the (log alpha, beta) grid cells where both residuals change sign
    (once ``shift`` is added to residual ``index``), best first, leaving out cells next to a root in ``roots``.

    A root of two equations in two unknowns lies where their zero contours cross, so a cell whose corners
    give both residuals of either sign is a start the ranking by residual size can miss: silu at C'(1) = 1.5
    has the roots (alpha 0.555, beta -1.887) and (1.384, -4.446), and Newton from the 24 best grid points
    found neither (small-alpha points, where C'(1) - 1.5 ~ -0.5 everywhere, ranked first), so the solver
    continued a branch that folds at C'(1) = 1.4799 and refused.  Only systems of two residuals (DKS) are
    scanned; TAT's three residuals (delta = -E[phi] on the grid) have no such crossing."""
    index_of = {(la, b): res for la, b, res in points}
    if not points or len(points[0][2]) != 2:
        return []
    step_a, step_b = grid_alpha[1] - grid_alpha[0], grid_beta[1] - grid_beta[0]
    known = [(math.log(r["alpha"]), r["beta"]) for r in roots]
    cells = []
    for i in range(len(grid_alpha) - 1):
        for j in range(len(grid_beta) - 1):
            corners = [index_of.get((float(grid_alpha[i + di]), float(grid_beta[j + dj])))
                       for di, dj in ((0, 0), (1, 0), (0, 1), (1, 1))]
            if any(c is None for c in corners):
                continue
            shifted = [[r + (shift if k == index else 0.0) for k, r in enumerate(c)] for c in corners]
            if not all(min(c[k] for c in shifted) <= 0.0 <= max(c[k] for c in shifted) for k in range(2)):
                continue
            la, b = float(grid_alpha[i] + step_a / 2), float(grid_beta[j] + step_b / 2)
            # a root within the cell or its neighbours is already known: Newton from here would find it again
            if any(abs(la - kla) <= 1.5 * step_a and abs(b - kb) <= 1.5 * step_b for kla, kb in known):
                continue
            cells.append((min(max(abs(v) for v in c) for c in shifted), la, b))
    cells.sort()
    return cells


def _crossing_roots(roots: list, cells: list, newton_from: Callable, branch: str, grid_alpha, grid_beta) -> list:
    """``roots`` and the distinct roots Newton finds from the grid cells ``cells`` (see :func:`_crossing_starts`),
    at most :data:`_N_CROSSING_STARTS` runs; a cell next to a root found meanwhile is skipped."""
    roots = list(roots)
    step_a, step_b = grid_alpha[1] - grid_alpha[0], grid_beta[1] - grid_beta[0]
    runs = 0
    for _, la, b in cells:
        if runs >= _N_CROSSING_STARTS or (branch == "any" and roots):
            break
        if any(abs(la - math.log(r["alpha"])) <= 1.5 * step_a and abs(b - r["beta"]) <= 1.5 * step_b for r in roots):
            continue
        runs += 1
        for r in _roots([(0.0, la, b)], newton_from, 1, branch):
            if not any(abs(r["alpha"] - s["alpha"]) < 1e-9 and abs(r["beta"] - s["beta"]) < 1e-9 for s in roots):
                roots.append(r)
    return roots


def _continuation(newton_at: Callable, start_target: float, x_start: list, target: float, max_steps: int = 120):
    """Follow a root from ``start_target`` to ``target`` (``newton_at(t, x0)`` -> x or None).

    The step in the target doubles after a success and halves after a failure.  Returns
    (x at target or None, the last target reached, x there); stopping short of ``target`` with
    steps below 1e-7 of the range is the evidence that the root cannot be continued further.
    """
    cur_t, cur_x = start_target, list(x_start)
    step = (target - start_target) / 4
    for _ in range(max_steps):
        nxt = target if abs(target - cur_t) <= abs(step) else cur_t + step
        x = newton_at(nxt, cur_x)
        if x is not None:
            cur_t, cur_x = nxt, x
            if nxt == target:
                return x, cur_t, cur_x
            step *= 2
        else:
            step /= 2
            if abs(step) < 1e-7 * abs(target - start_target):
                break
    return None, cur_t, cur_x


def _solve_f64(points, residual_index: int, grid_target: float, target: float, base: float,
               newton_at: Callable, x0_of: Callable, scale_of: Callable, branch: str, odd_offset=None):
    """Float64 roots for ``target``: Newton from the best grid points; when none converges, a root
    for an easier target base + (target - base)/4^k (the first k = 1..6 that has one) continued
    to ``target``.  Newton also runs from the grid cells where the zero contours of both residuals cross
    (:func:`_crossing_starts`; DKS only).  When the roots found leave :func:`_pick` to take the smallest |beta| (see
    :func:`_more_small_beta_roots`), Newton also runs from further grid points with a smaller |beta|.

    Returns (roots, reached): ``reached`` is None, or (largest target the continuation reached,
    x there) when it stalled -- the evidence behind an infeasibility report.
    """
    def newton_from(t):
        # Newton from grid starts stays near the grid: a start that runs off towards large alpha costs
        # like alpha per step (an infeasible target sent every start to the cap: elu, C'(1) = 2 took
        # 80 s instead of 0.5 s); large-alpha roots are reached by the continuation below.
        def run(la, b):
            if odd_offset is not None and b == 0:
                # beta = 0 (with delta = -E[phi]) is the symmetry point of a mirror-symmetric activation: every
                # condition is even in (beta, delta) there, so the Jacobian's beta and delta columns vanish and
                # the first step's direction was float rounding (erf, C''(1) = 5: alpha 1.751 or 2.174 after a
                # change of rounding alone).  Start just off it, where the direction is the slope's.
                b = _SYMMETRIC_START_BETA
            return newton_at(t, x0_of(la, b), log_alpha_max=_LOG_ALPHA_GRID_START)
        return run

    def run(t, n_starts):
        return _roots(_ranked(points, residual_index, grid_target - t, scale_of(t)), newton_from(t), n_starts, branch)

    roots = run(target, _N_STARTS)
    # roots where the residuals' zero contours cross in a grid cell that the best points missed
    cells = _crossing_starts(points, _GRID_LOG_ALPHA, _GRID_BETA, residual_index, grid_target - target, roots)
    roots = _crossing_roots(roots, cells, newton_from(target), branch, _GRID_LOG_ALPHA, _GRID_BETA)
    if roots:
        ranked = _ranked(points, residual_index, grid_target - target, scale_of(target))
        return _more_small_beta_roots(roots, ranked[_N_STARTS:], newton_from(target), branch, odd_offset), None
    reached = None
    # easier targets, geometrically closer to the trivial one; then, if none has a root on the grid,
    # farther ones (a TAT curvature of 3e-4 per layer needs alpha ~ 0.02, below the grid, while 1e-3
    # has a grid root that continues down to it)
    for k in (*range(1, 7), -1, -2, -3, -4):
        other = base + (target - base) / 4.0 ** k
        other_roots = run(other, 8)
        if not other_roots:
            continue
        x, t_max, x_max = _continuation(newton_at, other, other_roots[0]["x"], target)
        if x is not None:
            return [{"alpha": math.exp(x[0]), "beta": x[1], "delta": x[2] if len(x) > 2 else None, "x": x}], None
        if k > 0:
            reached = (t_max, x_max)
        break
    return [], reached


# float64 verification: accepted when the rule agrees with one on twice the panels to this (relative)
_F64_VERIFY = 1e-14
_FALLBACK_DPS = 20  # mpmath digits used when float64 cannot verify a solution
_NEAR_LINEAR = 1e-6  # DKS targets C'(1) < 1 + this are solved in mpmath (see solve_dks_layer)
_TAT_NEAR_LINEAR = 1e-5  # TAT targets C''(1) below this are solved in mpmath (see solve_tat_layer)
# Roots beyond alpha = 200 are not followed: the rule's cost grows like alpha, and such a transformed
# activation is a near-step function whose kernel no longer describes a trainable network.
_LOG_ALPHA_MAX = math.log(200.0)
# Newton runs started from the grid (alpha <= 8) give up beyond this; see _solve_f64.
_LOG_ALPHA_GRID_START = math.log(32.0)


def _verified_f64(funcs, x: list, newton_at_refine: Callable):
    """Re-solve on a finer float64 rule until the rule is verified at the root (error-estimated by
    :func:`~analysis.transform_conditions.checked_float64_evaluator`); returns (x, verified)."""
    from analysis.transform_conditions import checked_float64_evaluator

    refine = 1
    for _ in range(4):
        chk = checked_float64_evaluator(funcs, math.exp(x[0]), x[1], rtol=_F64_VERIFY)
        if chk.error > _F64_VERIFY:
            return x, False
        if chk.refine <= refine:
            return x, True
        refine = chk.refine
        x_new = newton_at_refine(refine, x)
        if x_new is None:
            return x, False
        x = x_new
    return x, False


def _takes_smallest_abs_beta(roots: list, branch: str, odd_offset) -> bool:
    """Whether :func:`_pick` takes the root with the smallest |beta| among ``roots`` (Newton's, before
    mirroring): ``branch="min|beta|"``, or ``"beta>=0"`` when no root has beta >= 0 -- which cannot
    happen for an activation with mirror pairs (``odd_offset`` not None), whose roots are reflected."""
    return branch == "min|beta|" or (branch == "beta>=0" and odd_offset is None
                                      and all(r["beta"] < 0 for r in roots))


def _tat_family(funcs: ActivationFunctions, root: dict) -> int:
    """The mirror-invariant family of a TAT root of an activation with phi(x) + phi(-x) = c0:
    sign(beta) * sign(E[phi(alpha z + beta)] + delta), i.e. -1 when the beta >= 0 member has E[psi(z)] <= 0.

    C'(1) = 1 and Q(1) = 1 fix (E[phi] + delta)^2 = alpha^2 E[phi'^2] - Var[phi], so every (alpha, beta) that
    meets C''(1) and Q'(1) has delta = -E[phi] +- sqrt(...): two families of roots.  The mirror
    (alpha, -beta, gamma, -delta - c0) flips both signs, so the product labels a mirror pair.  The grid Newton
    reached either family depending on the target (tanh at C''(1) = 2, 3, 4 returned the +1 family, alpha
    1.17 .. 1.82; at 0.5 and 5 the -1 family), and at erf's C''(1) = 5 on float rounding alone (a start at
    beta = 0, see _solve_f64): family -1 is the one the public dks package returns (tests/fixtures), and the
    branch continuous in C''(1) from 0.  Family +1 has roots with a smaller alpha (tanh at C''(1) = 0.1:
    0.203 at beta 1.19 against 0.343 at 0.641), so the default is the smallest alpha within family -1.
    A root at beta = 0 is its own mirror's partner and counts as family -1."""
    ev = ConditionEvaluator(funcs, root["alpha"], root["beta"])
    shifted_mean = ev.expect((1,), lambda f, f1, f2: f) + root["delta"]
    if root["beta"] == 0:
        return -1
    return -1 if math.copysign(1.0, root["beta"]) * shifted_mean <= 0 else 1


def _pick(solutions: list, branch: str, odd_offset):
    """Choose among Newton's roots; returns (solution, branch description) or (None, None).

    Roots of activations with phi(x) + phi(-x) = c0 (odd ones, c0 = 0; the sigmoid, c0 = 1) come in
    mirror pairs (alpha, beta, gamma, delta) / (alpha, -beta, gamma, -delta - c0); they are first
    reflected to beta >= 0.  Then ``branch="beta>=0"`` (default) takes the beta >= 0 root with the
    smallest alpha, or, when there is none (elu, selu at some targets), the root with the smallest
    |beta|; ``branch="min|beta|"`` always takes the root with the smallest |beta|;
    ``branch="any"`` the first root found.

    TAT roots of such activations carry ``"family"`` (see :func:`_tat_family`); on the default branch only
    family -1 (E[psi] <= 0 on the beta >= 0 member) is considered while Newton found one of it, so that
    which family the grid happened to reach no longer decides the answer.
    """
    if not solutions:
        return None, None
    if branch == "any":
        return {**solutions[0], "mirrored": False}, "first root found (branch='any')"
    roots = []
    for s in solutions:
        if s["beta"] < 0 and odd_offset is not None:
            delta = None if s["delta"] is None else -s["delta"] - odd_offset
            roots.append({**s, "beta": -s["beta"], "delta": delta, "mirrored": True})
        else:
            roots.append({**s, "mirrored": False})
    note = f" (mirror (alpha, -beta, gamma, -delta - {odd_offset or 0:g}) of Newton's root)"
    if branch not in ("beta>=0", "min|beta|"):
        raise DomainError(f"branch={branch!r}: use 'beta>=0', 'min|beta|' or 'any'.")
    if not _takes_smallest_abs_beta(roots, branch, odd_offset):
        candidates = [s for s in roots if s["beta"] >= 0]
        family_note = ""
        if odd_offset is not None and any("family" in s for s in candidates):
            same_family = [s for s in candidates if s.get("family") == -1]
            if same_family:
                candidates, family_note = same_family, ", E[psi] <= 0 family"
            else:
                family_note = ", E[psi] > 0 family (Newton found no root with E[psi] <= 0)"
        best = min(candidates, key=lambda s: s["alpha"])
        return best, "beta >= 0, smallest alpha" + family_note + (note if best["mirrored"] else "")
    best = min(roots, key=lambda s: abs(s["beta"]))
    why = "no beta >= 0 root; smallest |beta|" if branch == "beta>=0" else "smallest |beta|"
    return best, why + (note if best["mirrored"] else "")


_BRANCHES = ("beta>=0", "min|beta|", "any")


def _check_branch(branch):
    # up front: a bad branch was only noticed once roots had been found (never for leaky-ReLU TAT,
    # which has no branch, and not when no root was found, which reported infeasibility instead)
    if not isinstance(branch, str) or branch not in _BRANCHES:
        raise DomainError(f"branch={branch!r}: use 'beta>=0', 'min|beta|' or 'any'.")


#: fewest digits of an mpmath solve: below them Newton's tolerance meets float64's own
MIN_SHAPING_DPS = 15


def _check_dps(dps):
    """None (float64), or an integer of at least 15 (the check kernel_maps makes, with its own minimum)."""
    if dps is not None:
        if isinstance(dps, bool) or not isinstance(dps, int):
            raise DomainError(f"dps={dps!r}: give an integer number of digits >= {MIN_SHAPING_DPS}, "
                              "or None for float64.")
        check_dps(dps, minimum=MIN_SHAPING_DPS)


def _exact_number(what: str, value: Any) -> sympy.Expr:
    """An exact, finite real SymPy number for a shaping target, or a DomainError naming the fix.

    A float is taken as the decimal it prints as (``repr``: at most 17 significant digits, within
    half an ulp of the float), e.g. 1.05000000001 -> 105000000001/100000000000; never rounded to a
    nearby simple fraction.  Integers, mpmath numbers (exactly), SymPy numbers and strings such as
    "3/2" or "2**(1/10)" are accepted too.
    """
    def bad(why: str):
        return DomainError(f"{what}={value!r} {why}; give a finite real number such as 1.5, 3/2 or '2**(1/10)'.")

    if isinstance(value, (bool, np.bool_)):
        raise bad("is a bool, not a number")
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            raise bad("is not finite")
        return sympy.Rational(repr(float(value)))
    if isinstance(value, (int, np.integer)):
        return sympy.Integer(int(value))
    if isinstance(value, mpmath.mpf):
        if not mpmath.isfinite(value):
            raise bad("is not finite")
        sign, man, exp, _ = value._mpf_  # man_exp would drop the sign: it is the unsigned mantissa
        return (-1) ** sign * sympy.Integer(man) * sympy.Integer(2) ** exp
    try:
        expr = safe_sympify(value, what)
    except SymactError:
        raise bad("could not be read as a number") from None
    except Exception:  # sympify of an arbitrary object
        raise bad("is not a number") from None
    if not isinstance(expr, sympy.Expr) or not expr.is_number:
        raise bad("is not a number (it has free symbols or is not an expression)")
    if expr.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo):
        raise bad("is not finite")
    numeric = sympy.N(expr, 30)
    if not (numeric.is_real and numeric.is_finite):
        raise bad("is not a finite real number")
    if isinstance(expr, sympy.Float):
        return sympy.Rational(str(expr))
    return expr


def solve_dks_layer(act: Any, *, c_slope: Any, q_slope: Any = 1, dps: int | None = None,
                    branch: str = "beta>=0") -> LayerSolution:
    r"""alpha, beta, gamma, delta with Q(1) = 1, Q'(1) = ``q_slope``, C(0) = 0, C'(1) = ``c_slope``.

    Newton in (log alpha, beta) from the best points of a coarse grid, in float64 with the exact
    Jacobian of :mod:`analysis.transform_conditions`; when no grid start converges (large targets
    need alpha far beyond the grid), a root for a smaller C'(1) target is continued to ``c_slope``.
    The float64 root is re-solved on finer rules until the quadrature is verified at the root (a
    rule on twice the panels agrees to 1e-14); if float64 cannot verify it, it is polished in mpmath
    at 20 digits.  With ``dps`` the root is polished by Newton in mpmath until the step is below
    10^-(dps+4).  Residuals are computed with the verified rule (or mpmath).

    >>> import sympy
    >>> x = sympy.Symbol("x", real=True)
    >>> sol = solve_dks_layer(sympy.tanh(x), c_slope=1.5 ** 0.1)
    >>> abs(sol.residuals["c_slope"]) < 1e-12 and sol.beta >= 0
    True
    """
    _check_dps(dps)
    _check_branch(branch)
    funcs = activation_functions(act)
    c_exact, q_exact = _exact_number("c_slope", c_slope), _exact_number("q_slope", q_slope)
    c_t, q_t = float(c_exact), float(q_exact)
    # before value_jumps, which counts sign(x)|x|^(1/3) as jumping (phi(+-1e-20) differ by 4e-7); the
    # grid search used to quote a finite C'(1) at its "closest grid point"
    _refuse_pole(funcs, f"DKS's C'(1) = {c_t:.12g}")
    _refuse_infinite_slope(funcs, f"DKS's C'(1) = {c_t:.12g}")
    if funcs.value_jumps:
        raise InfeasibleShapingError(
            f"DKS for {funcs.name}: the activation jumps, so C'(1) is infinite and C'(1) = {c_t:g} "
            "cannot be met. Use a continuous activation (e.g. a smoothed step) instead."
        )
    if not c_exact > 1:
        raise DomainError(f"per-layer C'(1) target {c_exact} must exceed 1 (the network zeta must exceed 1).")
    if funcs.slope_jumps and _positively_homogeneous(funcs):
        raise InfeasibleShapingError(
            f"DKS for {funcs.name}: the activation is positively homogeneous (relu-like), so alpha cancels and "
            f"only beta/alpha is free: Q'(1) and C'(1) move together and Q'(1)={q_t:.12g} with C'(1)="
            f"{c_t:.12g} cannot both hold. Shape 'leaky_relu' with method='tat' (eta=...) instead, or use a "
            "smooth non-polynomial activation (tanh, softplus, elu, gelu, ...) with DKS."
        )

    def scale_of(c):
        return max(abs(c - 1), abs(q_t - 1), 1e-6)

    def system_f64(x, c=c_t, refine=1):
        ev = ConditionEvaluator(funcs, math.exp(x[0]), x[1], refine=refine)
        res, jac, _ = _dks_system(ev, q_t, c)
        return res, jac

    def newton_at(c, x0, refine=1, log_alpha_max=None):
        out = _newton(lambda x: system_f64(x, c, refine), x0, None, scale_of(c), log_alpha_max=log_alpha_max)
        return None if out is None or out[0][0] > _LOG_ALPHA_MAX else out[0]

    skipped: list = []
    points = _start_points(lambda la, b: system_f64([la, b])[0], _GRID_LOG_ALPHA, _GRID_BETA, funcs.kinks, skipped)
    solutions, reached = _solve_f64(points, 1, c_t, c_t, 1.0, newton_at, lambda la, b: [la, b], scale_of, branch,
                                    funcs.odd_offset)
    near_linear = False
    if not solutions and c_t - 1 < _NEAR_LINEAR and q_t == 1:
        # C'(1) - 1 below 1e-6: float64 cannot resolve the nonlinearity (alpha ~ sqrt(2 (C'(1) - 1)) is
        # below the grid and the residuals are rounding-level).  Solve at C'(1) = 1 + 1e-6, scale alpha
        # by the leading-order law C'(1) - 1 ~ alpha^2, and let mpmath (which has the digits) polish.
        easy = 1 + _NEAR_LINEAR
        easy_roots, _ = _solve_f64(points, 1, c_t, easy, 1.0, newton_at, lambda la, b: [la, b], scale_of, branch,
                                   funcs.odd_offset)
        # c_exact - 1, not c_t - 1: a target 1 + 1e-20 is 1.0 as a float
        solutions = [{**r, "alpha": r["alpha"] * math.sqrt(float(c_exact - 1) / _NEAR_LINEAR)} for r in easy_roots]
        near_linear = bool(solutions)
    chosen, branch_note = _pick(solutions, branch, funcs.odd_offset)
    if chosen is None:
        try:
            _raise_dks_infeasible(funcs, c_t, q_t, points, reached, system_f64, scale_of(c_t))
        except InfeasibleShapingError as exc:
            raise _with_skipped_starts(exc, skipped) from None
    x = [math.log(chosen["alpha"]), chosen["beta"]]
    if near_linear:
        verified = False
    else:
        x, verified = _verified_f64(funcs, x, lambda r, x0: newton_at(c_t, x0, r))
    # near-linear: the conditions' nonlinear part is C'(1) - 1 of the whole, so digits are lost in proportion
    near_linear_dps = 30 + max(0, math.ceil(math.log10(_NEAR_LINEAR / float(c_exact - 1))))
    polish = dps if dps is not None else (None if verified else (near_linear_dps if near_linear else _FALLBACK_DPS))
    # with dps, and for float64 roots that float64 could not verify: the conditions' nonlinear part is only
    # max|C'(1) - 1|, |Q'(1) - 1| of the O(1) expectations, so it is solved to dps (or 20) digits of its own
    # size on extra working digits (see _extra_digits; tanh at C'(1) = 1 + 1e-6, whose variance float64 cannot
    # resolve, did not polish at 20 digits without them)
    nonlinear = max(abs(float(c_exact - 1)), abs(float(q_exact - 1)))
    work = None if polish is None else polish + (0 if near_linear and dps is None else _extra_digits(nonlinear))
    alpha, beta = math.exp(x[0]), x[1]
    if polish is not None:
        with mpmath.workdps(work + 8):
            c_mp, q_mp = _mp(c_exact, work + 8), _mp(q_exact, work + 8)

            def system_mp(x):
                ev = ConditionEvaluator(funcs, mpmath.exp(x[0]), x[1], work, curvature=False)
                res, jac, _ = _dks_system(ev, q_mp, c_mp)
                return res, jac

            # float64 output, near-linear: residuals are judged absolutely (their size is rounding level,
            # not c_t - 1); with dps, relative to the nonlinear part, which the extra digits resolve
            scale = nonlinear if dps is not None else (1.0 if near_linear else scale_of(c_t))
            out = _newton(system_mp, [mpmath.log(alpha), mpmath.mpf(beta)], polish, scale,
                          max_iter=20 if near_linear else 8)
            if out is None:
                advice = (f"the per-layer C'(1) - 1 = {float(c_exact - 1):.3g} is too close to linear for this "
                          "solver: use a larger zeta (or fewer layers)" if near_linear else
                          "try a smaller dps" if dps is not None else
                          "pass dps= to solve in mpmath from the start")
                raise InfeasibleShapingError(
                    f"DKS for {funcs.name}: the float64 root (alpha={alpha:.15g}, beta={beta:.15g}) did not "
                    f"polish to {polish} digits; {advice}."
                )
            alpha, beta = mpmath.exp(out[0][0]), out[0][1]
    return _finish(funcs, alpha, beta, None, dps, chosen["mirrored"], branch_note,
                   {"q_value": 1, "q_slope": q_exact, "c_at_0": 0, "c_slope": c_exact},
                   work_dps=(work if dps is not None and work > dps else
                             near_linear_dps if near_linear and dps is None else None))


def _extra_digits(nonlinear: float) -> int:
    """Working digits beyond ``dps`` for an mpmath DKS polish whose conditions differ from the linear
    ones by ``nonlinear`` = max |C'(1) - 1|, |Q'(1) - 1|.  (TAT at C''(1) = 1e-6 and 1e-8 kept its
    digits without them, so it is left as it was.)

    Newton's tolerance is 10^-(dps + 2) * nonlinear, on residuals built from phi(alpha z + beta) - E[phi],
    which cancels to the size of alpha ~ nonlinear^(1/2): their noise is ~10^-(digits + 8) / alpha.
    Below nonlinear ~ 1e-6 the tolerance sat under that noise (tanh, C'(1) = 1 + 1e-6, dps=30 was refused
    with 'try a smaller dps', and dps=15 was solved), and near-linear solutions, judged absolutely, had
    only dps - log10(1/nonlinear) correct digits (C'(1) = 1 + 1e-16, dps=30: 18; compared with dps=60).
    1.5 log10(1e-4 / nonlinear) digits keep the noise below the tolerance (measured: 1e-6 and 1e-16);
    none for nonlinear >= 1e-4, where every digit was already right.
    """
    if not nonlinear > 0:
        return 0
    return max(0, math.ceil(1.5 * math.log10(1e-4 / nonlinear)))


def _finish(funcs, alpha, beta, delta, dps, mirrored, branch_note: str, targets: dict,
            work_dps: int | None = None) -> LayerSolution:
    """Closed-form gamma (and delta for DKS), conditions at the solution, residuals vs targets.

    In float64 the conditions come from a rule whose error was estimated at the solution
    (:func:`~analysis.transform_conditions.checked_float64_evaluator`), or from mpmath at 20 digits
    when float64 cannot reach 1e-14 there, so the reported residuals are honest.  ``work_dps``
    forces mpmath for float64 output: near-linear DKS solutions, whose E[(phi + delta)^2] cancels
    in float64 (a float64 gamma left Q(1) - 1 = -2e-11 while reporting 2e-16).  With ``dps``, a
    ``work_dps`` above it (:func:`_extra_digits`) is the precision of gamma, delta and the conditions;
    the parameters are rounded to ``dps`` digits and the conditions are those the rounded ones meet.
    """
    from analysis.transform_conditions import _h_phi, _h_shifted_sq, checked_float64_evaluator

    work, refine = dps, 1
    if work_dps is not None and (dps is None or work_dps > dps):
        work = work_dps
    elif dps is None:
        chk = checked_float64_evaluator(funcs, float(alpha), float(beta), rtol=_F64_VERIFY)
        if chk.error > _F64_VERIFY:
            work = _FALLBACK_DPS
        refine = chk.refine
    ctx = mpmath.workdps(work + 8) if work is not None else _null()
    with ctx:
        ev = ConditionEvaluator(funcs, alpha, beta, work, refine=refine)
        if delta is None:  # DKS: C(0) = 0
            delta = -ev.expect((1,), _h_phi)
        elif work is not None:
            delta = mpmath.mpf(delta)
        gamma = 1 / (mpmath.sqrt if work is not None else math.sqrt)(ev.expect((1,), _h_shifted_sq(delta)))
        params = (ev.alpha, ev.beta, gamma, delta)
        if dps is None and work is not None:  # the conditions the float64 parameters returned meet
            params = tuple(mpmath.mpf(float(v)) for v in params)
        extra = dps is not None and work > dps
        if extra:  # likewise for parameters returned at dps digits, worked out on more (see _extra_digits)
            with mpmath.workdps(dps):
                params = tuple(+mpmath.mpf(v) for v in params)
        cond = transform_conditions(funcs, *params, dps=work, refine=refine)
        values = cond.values.as_dict()
        if dps is None and work is not None:  # residuals against the exact targets, then float64
            residuals = {k: float(values[k] - _mp(t, work + 8)) for k, t in targets.items()}
        if extra:
            residuals = {k: values[k] - _mp(t, work + 8) for k, t in targets.items()}
    if extra:
        with mpmath.workdps(dps):
            alpha, beta, gamma, delta = params
            residuals = {k: +v for k, v in residuals.items()}
            conditions = ConditionSet(**{k: +v for k, v in values.items()})
    elif dps is not None:
        with mpmath.workdps(dps):
            alpha, beta, gamma, delta = (+mpmath.mpf(v) for v in (ev.alpha, ev.beta, gamma, delta))
            residuals = {k: +(values[k] - _mp(t, dps + 8)) for k, t in targets.items()}
        conditions = cond.values
    else:
        alpha, beta, gamma, delta = float(ev.alpha), float(ev.beta), float(gamma), float(delta)
        if work is None:
            residuals = {k: float(values[k] - _mp(t, 30)) for k, t in targets.items()}
        conditions = ConditionSet(**{k: float(v) for k, v in values.items()})
    return LayerSolution(alpha, beta, gamma, delta, dps, conditions, residuals, mirrored, branch_note)


def _mp(value, dps: int):
    """An mpf from a Python, mpmath or SymPy number (SymPy evaluated to ``dps`` digits)."""
    if isinstance(value, sympy.Basic):
        return mpmath.mpf(sympy.N(value, dps))
    return mpmath.mpf(value)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _reported_beta(funcs: ActivationFunctions, beta: float) -> float:
    """beta as the solver reports roots: reflected to beta >= 0 where roots come in mirror pairs
    (odd or odd-plus-constant activations), as ``_pick`` does (tanh's refusal quoted beta = -38.6)."""
    return abs(beta) if funcs.odd_offset is not None else beta


def _raise_dks_infeasible(funcs: ActivationFunctions, c_t, q_t, points, reached, system, scale):
    if reached is not None:  # a root exists for smaller targets and could not be continued to c_t
        t_max, x_max = reached
        raise InfeasibleShapingError(
            f"DKS for {funcs.name}: per-layer C'(1) = {c_t:.12g} (with Q'(1) = {q_t:g}) was not reached: "
            f"following one branch of solutions from smaller targets, C'(1) = {t_max:.10g} was the largest reached "
            f"(alpha={math.exp(x_max[0]):.6g}, beta={_reported_beta(funcs, x_max[1]):.6g}) and no larger step "
            "converged in float64 (roots with alpha > 200 are not followed). Use a "
            f"smaller zeta (a per-layer C'(1) up to about {t_max:.6g} is reachable on that branch, and other "
            "branches may reach further; with T layers in series zeta = per-layer C'(1)**T), or spread the "
            "nonlinearity over more layers."
        )
    detail, rank_note = "", ""
    ranked = _ranked(points, 1, 0.0, scale)
    if ranked:
        _, la, b = ranked[0]
        res, jac = system([la, b])
        names = ("Q'(1)", "C'(1)")
        targets = (q_t, c_t)
        worst = int(np.argmax(np.abs(res)))

        def singular(jac):
            det = jac[0][0] * jac[1][1] - jac[0][1] * jac[1][0]
            norms = math.hypot(jac[0][0], jac[0][1]) * math.hypot(jac[1][0], jac[1][1])
            return norms > 0 and abs(det) < 1e-8 * norms

        # A Jacobian singular at beta = 0 only is the parity of a symmetric activation (tanh: d/dbeta of
        # both conditions vanishes there), not conditions that move together: test a shifted beta too.
        if singular(jac) and singular(system([la, b + 0.5])[1]):
            rank_note = (" The Jacobian of (Q'(1), C'(1)) in (alpha, beta) is singular there: the two "
                         "conditions move together (for a positively homogeneous activation such as ReLU, "
                         "alpha cancels and only beta/alpha is free; for a quadratic, Q'(1) = C'(1)).")
        detail = (f" Closest grid point: alpha={math.exp(la):.4g}, beta={b:.4g}, where {names[worst]} = "
                  f"{targets[worst] + res[worst]:.10g} instead of {targets[worst]:.10g}.{rank_note}")
    if rank_note:
        advice = (" What would work: a smooth non-polynomial activation (tanh, softplus, elu, gelu, ...), "
                  "or method='tat' with leaky_relu for rectifiers.")
    else:
        advice = (" Newton found no root from the grid, nor for smaller C'(1) targets; try a smaller zeta, "
                  "q_slope=1, or another smooth non-polynomial activation.")
    raise InfeasibleShapingError(
        f"DKS for {funcs.name}: no transformation meets Q(1)=1, Q'(1)={q_t:g}, C(0)=0 and C'(1)={c_t:.12g} "
        f"together.{detail}{advice}"
    )


@functools.lru_cache(maxsize=256)
def _singular_points(expr: sympy.Expr, symbol: sympy.Symbol) -> tuple:
    """The real singularities of ``expr`` (one of each periodic family), once per formula: every DKS and TAT
    solve asks (a graph's layers, the grid of targets of the verification runs)."""
    from symact._properties import real_singularities, singular_points_near_0

    return tuple(singular_points_near_0(real_singularities(expr, symbol), per_family=0))


def _refuse_pole(funcs: ActivationFunctions, target: str) -> None:
    """InfeasibleShapingError naming a real point where phi^2 is not integrable (a pole of 1/x or tan), if
    there is one.  E[psi(z)^2] is infinite there for every alpha != 0 and beta (the point moves to
    (b - beta)/alpha, where the Gaussian density is positive): the grid search quoted the finite C'(1) of a
    quadrature across the pole at its "closest grid point", and advised a smaller zeta."""
    from numeric.gauss import _check_singularities
    from symact.errors import DivergentIntegralError

    phi = funcs.mp_funcs[0]
    with mpmath.workdps(40):
        for b in _singular_points(funcs.expr, funcs.symbol):
            try:
                _check_singularities(lambda t: phi(t) ** 2, [mpmath.mpf(sympy.N(b, 45))], 30)
            except DivergentIntegralError:
                raise InfeasibleShapingError(
                    f"{target} cannot be met for {funcs.name}: it has a pole at x = {b} where phi(x)^2 "
                    "is not integrable, so E[phi(alpha*z + beta)^2] (Q(1)) is infinite for every alpha, beta. "
                    "Use an activation that is finite on the whole real line (e.g. x/(1 + x**2) for 1/x, or "
                    "tanh for tan).") from None
            except (ArithmeticError, ValueError, TypeError):  # phi not evaluable near it: no verdict
                continue


def _refuse_infinite_slope(funcs: ActivationFunctions, target: str) -> None:
    """InfeasibleShapingError naming the point where phi'^2 is not integrable, if there is one."""
    singular = _slope_singularity(funcs)
    if singular is not None:
        raise InfeasibleShapingError(
            f"{target} cannot be met for {funcs.name}: phi'(x)^2 is not integrable at x = {singular:g} (it grows "
            f"at least like 1/|x - {singular:g}|), so E[phi'(z)^2] and C'(1) are infinite for every alpha, beta. "
            "Use an activation whose derivative is square-integrable (e.g. smooth the singularity: "
            "sign(x)*sqrt(Abs(x)) -> x/(1 + x**2)**(1/4)).")


def _slope_singularity(funcs: ActivationFunctions):
    """A kink ``b`` where ``phi'^2`` is not integrable (grows at least like ``1/|x - b|``), or None.

    There ``E[psi'(z)^2]``, hence C'(1), is infinite for every transform psi(x) = gamma (phi(alpha x +
    beta) + delta), alpha != 0: the point moves to ``(b - beta)/alpha``, where the Gaussian density is
    positive, and keeps its order (sign(x) sqrt|x|: phi'^2 = 1/(4|x|), a logarithmic divergence).
    """
    from numeric.gauss import _check_singularities
    from symact.errors import DivergentIntegralError

    phi1 = funcs.mp_funcs[1]
    with mpmath.workdps(40):
        for b in funcs.kinks:
            try:
                _check_singularities(lambda t: phi1(t) ** 2, [b], 30)
            except DivergentIntegralError:
                return b
            except (ArithmeticError, ValueError, TypeError):   # phi' not evaluable there: no verdict
                continue
    return None


def _positively_homogeneous(funcs: ActivationFunctions) -> bool:
    """phi(c x) = c phi(x) for c > 0 (relu, leaky relu), checked at a few points.

    Such a phi can have no kink but 0 (a kink at k would repeat at every c k): relu6 and hardtanh, which
    agree with relu / the identity at the sample points |u| < 4, were called positively homogeneous
    ("alpha cancels") though their kinks at 6 and +-1 make alpha matter."""
    if any(k != 0 for k in funcs.kinks):
        return False
    phi = funcs.mp_funcs[0]
    with mpmath.workdps(30):
        for u in ("-2.3", "-0.61", "0.37", "1.9"):
            u = mpmath.mpf(u)
            a, b = phi(2 * u), 2 * phi(u)
            if abs(a - b) > mpmath.mpf(10) ** -20 * (1 + abs(b)):
                return False
    return True


def solve_tat_layer(act: Any, *, c_curvature: Any, dps: int | None = None,
                    branch: str = "beta>=0") -> LayerSolution:
    r"""alpha, beta, gamma, delta with Q(1) = 1, Q'(1) = 1, C'(1) = 1, C''(1) = ``c_curvature`` (TAT).

    gamma closed form; (log alpha, beta, delta) by Newton with the exact Jacobian, float64 (grid
    starts, then continuation from smaller targets; verified rule as in :func:`solve_dks_layer`)
    then mpmath.  Targets C''(1) < 1e-5 that float64 cannot resolve (alpha ~ sqrt(C''(1)) below the grid)
    start from roots at 1e-5 and 5e-6 extrapolated in C''(1) and are solved in mpmath.  Infeasible when
    phi' jumps (C''(1) infinite): use leaky-ReLU TAT or DKS.

    >>> import sympy
    >>> x = sympy.Symbol("x", real=True)
    >>> sol = solve_tat_layer(sympy.tanh(x), c_curvature=0.03)    # tau = 0.3 over 10 layers
    >>> abs(sol.residuals["c_curvature"]) < 1e-12 and abs(sol.conditions.c_slope - 1) < 1e-12
    True
    """
    _check_dps(dps)
    _check_branch(branch)
    funcs = activation_functions(act)
    k_exact = _exact_number("c_curvature", c_curvature)
    k_t = float(k_exact)
    _refuse_pole(funcs, "TAT's C'(1) = 1")
    _refuse_infinite_slope(funcs, "TAT's C'(1) = 1")
    if funcs.value_jumps:
        raise InfeasibleShapingError(
            f"TAT for {funcs.name}: the activation jumps, so C'(1) and C''(1) are infinite and neither TAT "
            "nor DKS can shape it. Use a continuous activation (e.g. a smoothed step such as sigmoid)."
        )
    if funcs.slope_jumps:
        if _positively_homogeneous(funcs):
            advice = ("This activation is positively homogeneous (relu-like), so DKS cannot shape it either "
                      "(alpha cancels). Shape 'leaky_relu' with method='tat' (eta=...): TAT then chooses the "
                      "negative slope, with plain ReLU as the limit of slope 0.")
        else:
            advice = "Use method='dks' for this activation, or leaky_relu with method='tat'."
        raise InfeasibleShapingError(
            f"TAT for {funcs.name}: phi' jumps, so C''(1) is infinite and C''(1) = {k_t:g} cannot be met. {advice}"
        )
    if not k_exact > 0:
        raise DomainError(f"per-layer C''(1) target {k_exact} must be > 0 (tau must be > 0).")

    def scale_of(k):
        return k

    def system_f64(x, k=k_t, refine=1):
        ev = ConditionEvaluator(funcs, math.exp(x[0]), x[1], refine=refine)
        res, jac, _ = _tat_system(ev, x[2], k)
        return res, jac

    def newton_at(k, x0, refine=1, log_alpha_max=None):
        out = _newton(lambda x: system_f64(x, k, refine), x0, None, scale_of(k), log_alpha_max=log_alpha_max)
        return None if out is None or out[0][0] > _LOG_ALPHA_MAX else out[0]

    def residual_at(la, b):
        ev = ConditionEvaluator(funcs, math.exp(la), b)
        m = ev.expect((1,), lambda f, f1, f2: f)
        return _tat_system(ev, -m, k_t)[0]

    def x0_of(la, b):
        ev = ConditionEvaluator(funcs, math.exp(la), b)
        return [la, b, -ev.expect((1,), lambda f, f1, f2: f)]

    skipped: list = []
    points = _start_points(residual_at, _GRID_LOG_ALPHA, _GRID_BETA, funcs.kinks, skipped)
    solutions, reached = _solve_f64(points, 2, k_t, k_t, 0.0, newton_at, x0_of, scale_of, branch, funcs.odd_offset)
    near_linear = False
    if not solutions and 0 < k_t < _TAT_NEAR_LINEAR:
        # C''(1) below 1e-5 needs alpha below ~3e-3, where float64 Newton stalls: Q'(1) - 1 and C'(1) - 1
        # are O(alpha^2) and the Jacobian's conditioning grows like alpha^-4 (tanh at C''(1) = 1e-6, a
        # depth-1000 network with tau = 1e-3, was refused with the advice to lower tau).  Roots at
        # k1 = 1e-5 and k2 = k1/2 (Newton from the k1 root; k1/4 was too far for softplus) are
        # extrapolated to k_t with alpha^2/k, beta and delta linear in k
        # (their leading-order laws; scaling alpha alone left residuals that sent mpmath's Newton
        # astray), and mpmath, which has the digits, polishes.
        k1, k2 = _TAT_NEAR_LINEAR, _TAT_NEAR_LINEAR / 2
        easy_roots, _ = _solve_f64(points, 2, k_t, k1, 0.0, newton_at, x0_of, scale_of, branch, funcs.odd_offset)
        for r in easy_roots:
            # tolerance 1e-14 (scale 0.1): float64 residuals here jitter at a few 1e-15 (softplus never
            # reached the 1e-15 floor), and the extrapolation is only a start for the mpmath polish
            out = _newton(lambda x: system_f64(x, k2), r["x"], None, 0.1)
            if out is None:
                continue
            x2 = out[0]
            t = (k_t - k2) / (k2 - k1)
            a1, a2 = r["alpha"] ** 2 / k1, math.exp(2 * x2[0]) / k2
            solutions.append({"alpha": math.sqrt(k_t * (a2 + (a2 - a1) * t)), "beta": x2[1] + (x2[1] - r["beta"]) * t,
                              "delta": x2[2] + (x2[2] - r["delta"]) * t})
        near_linear = bool(solutions)
    if funcs.odd_offset is not None:
        solutions = [{**r, "family": _tat_family(funcs, r)} for r in solutions]
    chosen, branch_note = _pick(solutions, branch, funcs.odd_offset)
    if chosen is None:
        if reached is not None:
            t_max, x_max = reached
            raise _with_skipped_starts(InfeasibleShapingError(
                f"TAT for {funcs.name}: per-layer C''(1) = {k_t:.12g} was not reached: following one branch of "
                f"solutions from smaller targets, C''(1) = {t_max:.10g} was the largest reached (alpha="
                f"{math.exp(x_max[0]):.6g}, beta={_reported_beta(funcs, x_max[1]):.6g}) and no larger step converged in float64 "
                "(roots with alpha > 200 are not followed). Use a smaller "
                "tau (less curvature per layer)."
            ), skipped)
        advice = ("a larger tau or fewer layers (the per-layer C''(1) is too close to linear for this solver)"
                  if k_t < _TAT_NEAR_LINEAR else "a smaller tau (less curvature per layer)")
        raise _with_skipped_starts(InfeasibleShapingError(
            f"TAT for {funcs.name}: no transformation meets Q(1)=1, Q'(1)=1, C'(1)=1 and C''(1)={k_t:.12g} "
            "together (Newton from the best grid points, and for other C''(1) targets, did not converge). "
            f"What would work: {advice}, method='dks', or a smooth non-polynomial activation."
        ), skipped)
    x = [math.log(chosen["alpha"]), chosen["beta"], chosen["delta"]]
    if near_linear:
        verified = False
    else:
        # a mirrored root (see _pick) is a root too: re-solving from it stays on the mirrored branch
        x, verified = _verified_f64(funcs, x, lambda r, x0: newton_at(k_t, x0, r))
    # near-linear: the conditions' nonlinear part is O(C''(1)) of the whole, so digits are lost in proportion
    near_linear_dps = 30 + max(0, math.ceil(math.log10(_TAT_NEAR_LINEAR / float(k_exact))))
    polish = dps if dps is not None else (None if verified else (near_linear_dps if near_linear else _FALLBACK_DPS))
    alpha, beta, delta = math.exp(x[0]), x[1], x[2]
    if polish is not None:
        with mpmath.workdps(polish + 8):
            k_mp = _mp(k_exact, polish + 8)

            def system_mp(x):
                ev = ConditionEvaluator(funcs, mpmath.exp(x[0]), x[1], polish, shift=x[2])
                res, jac, _ = _tat_system(ev, x[2], k_mp)
                return res, jac

            # near-linear: residuals are judged absolutely (their size is rounding level, not C''(1))
            out = _newton(system_mp, [mpmath.log(alpha), mpmath.mpf(beta), mpmath.mpf(delta)], polish,
                          1.0 if near_linear else scale_of(k_t), max_iter=20 if near_linear else 8)
            if out is None:
                # near-linear: fewer digits cannot help (the nonlinear part is O(C''(1)) of the whole)
                advice = (f"the per-layer C''(1) = {float(k_exact):.3g} is too close to linear for this solver: use "
                          "a larger tau (or fewer layers)" if near_linear else "try a smaller dps")
                raise InfeasibleShapingError(
                    f"TAT for {funcs.name}: the float64 root did not polish to {polish} digits; {advice}.")
            alpha, beta, delta = mpmath.exp(out[0][0]), out[0][1], out[0][2]
    return _finish(funcs, alpha, beta, delta, dps, chosen["mirrored"], branch_note,
                   {"q_value": 1, "q_slope": 1, "c_slope": 1, "c_curvature": k_exact},
                   work_dps=near_linear_dps if near_linear and dps is None else None)


# ----------------------------------------------------------------------------------------
# Leaky ReLU (TAT): closed-form C map
# ----------------------------------------------------------------------------------------


def leaky_relu_c_map(c, negative_slope):
    r"""C map of the leaky ReLU with slope a for x < 0, normalised by Q(1) = (1 + a^2)/2.

    With :math:`f(x) = a x + (1-a)\,\mathrm{relu}(x)` and the arc-cosine kernel
    :math:`E[\mathrm{relu}(u)\mathrm{relu}(v)] = (\sqrt{1-c^2} + (\pi - \arccos c)\,c)/(2\pi)`
    (Cho & Saul's kernel of degree 1 divided by 2),

    .. math:: C(c) = \frac{a^2 c + (1-a)^2 (\sqrt{1-c^2} + (\pi - \arccos c) c)/(2\pi) + a(1-a) c}
                         {(1+a^2)/2}.

    Evaluated in mpmath at the working precision; :math:`\sqrt{1-c^2}` as
    :math:`\sqrt{(1-c)(1+c)}` to keep digits near c = 1.
    >>> float(leaky_relu_c_map(0, 0))  # ReLU: 1/pi
    0.3183098861837907
    """
    try:
        a = mpmath.mpf(negative_slope)
    except (TypeError, ValueError):
        a = mpmath.nan
    if isinstance(negative_slope, (bool, np.bool_)) or not mpmath.isfinite(a):
        raise DomainError(f"negative_slope={negative_slope!r} is not a finite real number; give the leaky "
                          "ReLU's slope for x < 0, e.g. 0.2 (0 is ReLU, 1 the identity).")
    try:
        c = mpmath.mpf(c)
    except (TypeError, ValueError):
        raise DomainError(f"c = {c!r} is not a real number; give a cosine similarity in [-1, 1].") from None
    if not -1 <= c <= 1:
        raise DomainError(f"c = {c} is outside [-1, 1]; a cosine similarity is needed.")
    relu = (mpmath.sqrt((1 - c) * (1 + c)) + (mpmath.pi - mpmath.acos(c)) * c) / (2 * mpmath.pi)
    cross = a * a * c + 2 * a * (1 - a) * c / 2 + (1 - a) ** 2 * relu
    return cross / ((1 + a * a) / 2)


# ----------------------------------------------------------------------------------------
# Graph access (the walker belongs to the graphs package)
# ----------------------------------------------------------------------------------------


def _graph_api():
    """The graphs package (walker).  Isolated so that tests can stand in for it."""
    import graphs

    return graphs


def _activation_nodes(graph: nx.DiGraph) -> list:
    return [n for n in nx.topological_sort(graph) if graph.nodes[n].get("kind") == "activation"]


def _network_value(result, graph):
    """The output value of a walker result (a number, or a mapping node -> value)."""
    if isinstance(result, Mapping):
        outs = [n for n in graph.nodes if graph.nodes[n].get("kind") == "output"] or list(result)[-1:]
        return result[outs[-1]]
    return result


def _solve_uniform(expr_fn: Callable, target, lo, hi, dps: int):
    """Root of an increasing function on [lo, hi] with mpmath (bisection then secant)."""
    with mpmath.workdps(dps + 8):
        f = lambda s: mpmath.mpf(expr_fn(s)) - target  # noqa: E731
        # _mp, not mpmath.mpf: an irrational bound (zeta = '2**(1/2)', an exact SymPy number) raised a
        # bare TypeError "cannot create mpf from sqrt(2)" on every graph without a closed-form target
        lo, hi = _mp(lo, dps + 8), _mp(hi, dps + 8)
        flo, fhi = f(lo), f(hi)
        if flo * fhi > 0:
            return None
        for _ in range(12):  # bracket, then the superlinear Anderson-Bjorck iteration
            mid = (lo + hi) / 2
            fm = f(mid)
            if (fm > 0) == (fhi > 0):
                hi, fhi = mid, fm
            else:
                lo, flo = mid, fm
        root = mpmath.findroot(f, (lo, hi), solver="anderson", tol=mpmath.mpf(10) ** (-(dps + 6)))
    return root


def _symbolic_walk(graph, rule_expr: Callable, start, symbol):
    """Walker result as a SymPy expression in ``symbol``, or None when the walker cannot handle symbols."""
    try:
        out = _network_value(_graph_api().max_subnetwork_value(graph, rule_expr, start), graph)
        out = safe_sympify(out, "target")
    except Exception:  # the walker compares values; symbolic ones may be undecidable
        return None
    if out.has(sympy.Max, sympy.Min, sympy.Piecewise):
        return None
    return sympy.expand(out)


def _uniform_slope(graph, zeta, fixed: dict, dps: int):
    """(exact or None, SymPy function, mpf at dps+8 digits): common per-layer C'(1) giving zeta."""
    with mpmath.workdps(dps + 8):
        return _uniform_slope_at_precision(graph, zeta, fixed, dps)


def _uniform_slope_at_precision(graph, zeta, fixed: dict, dps: int):
    s = sympy.Symbol("s", positive=True)
    zeta_exact = _exact_number("zeta", zeta)
    fixed = {n: _mp(v, dps + 8) for n, v in fixed.items()}

    def rule_sym(node, y):
        return (fixed[node] if node in fixed else s) * y

    expr = None if fixed else _symbolic_walk(graph, rule_sym, sympy.Integer(1), s)
    if expr is not None and expr.is_Pow and expr.base == s and expr.exp.is_Integer:
        exact = zeta_exact ** sympy.Rational(1, int(expr.exp))
        return exact, expr, mpmath.mpf(sympy.N(exact, dps + 8))
    if expr is not None and expr == s:
        return zeta_exact, expr, mpmath.mpf(sympy.N(zeta_exact, dps + 8))

    def walk(value):
        return _network_value(_graph_api().max_subnetwork_value(
            graph, lambda node, y: (fixed[node] if node in fixed else value) * y, mpmath.mpf(1)), graph)

    root = _uniform_beside_fixed_targets(graph, fixed, walk, 1, zeta_exact, dps, "DKS", "C'(1)", "zeta", zeta,
                                         "slopes")
    return (None, None, None) if root is None else (None, expr, root)


def _uniform_curvature(graph, tau, fixed: dict, dps: int):
    """(exact or None, SymPy function, mpf at dps+8 digits): common per-layer C''(1) giving tau."""
    with mpmath.workdps(dps + 8):
        return _uniform_curvature_at_precision(graph, tau, fixed, dps)


def _uniform_curvature_at_precision(graph, tau, fixed: dict, dps: int):
    k = sympy.Symbol("k", positive=True)
    tau_exact = _exact_number("tau", tau)  # shape() has refused tau <= 0, naming tau
    fixed = {n: _mp(v, dps + 8) for n, v in fixed.items()}
    if not fixed:
        # With every C'(1) = 1 the curvature walk r(y) = k + y is linear and homogeneous in k, so
        # one exact walk with k = 1 gives the coefficient: M(k) = k * M(1).
        coeff = _network_value(_graph_api().max_subnetwork_value(
            graph, lambda node, y: sympy.Integer(1) + y, sympy.Integer(0)), graph)
        if not isinstance(coeff, float) and not safe_sympify(coeff, "coefficient").has(sympy.Float):
            coeff = safe_sympify(coeff, "coefficient")
            exact = tau_exact / coeff
            return exact, coeff * k, mpmath.mpf(sympy.N(exact, dps + 8))
        # float weights (graphs.resnet(shortcut_weight=0.6)): SymPy walked them in 15-digit Float
        # arithmetic, so the per-layer target was good to ~1e-16 only and, with dps=30, the network's
        # C''(1) missed tau by 8e-17 relative; walk again in mpmath, which takes the weights exactly
        coeff_mp = mpmath.mpf(_network_value(_graph_api().max_subnetwork_value(
            graph, lambda node, y: 1 + y, mpmath.mpf(0)), graph))
        return None, sympy.Float(coeff_mp, dps + 8) * k, mpmath.mpf(sympy.N(tau_exact, dps + 8)) / coeff_mp

    def walk(value):
        return _network_value(_graph_api().max_subnetwork_value(
            graph, lambda node, y: (fixed[node] if node in fixed else value) + y, mpmath.mpf(0)), graph)

    root = _uniform_beside_fixed_targets(graph, fixed, walk, 0, tau_exact, dps, "TAT", "C''(1)", "tau", tau,
                                         "curvatures")
    return None, None, root


def _uniform_beside_fixed_targets(graph, fixed: dict, walk: Callable, linear, target_exact, dps: int,
                                  method: str, condition: str, name: str, given, what: str):
    """The common per-layer ``condition`` (mpf) that, beside the per-node targets ``fixed``, gives the
    network target; None when every activation node is fixed (and they give it).

    ``walk(value)`` is the network's maximal ``condition`` with every free node at ``value``; ``linear`` is
    a linear node's value (C'(1) = 1, C''(1) = 0), and the root lies in [linear, target]: the network's
    value only grows with each node's, and a free node is its own sub-network.
    """
    target = mpmath.mpf(sympy.N(target_exact, dps + 8))
    _check_fixed_targets(graph, fixed, walk(mpmath.mpf(linear)), target, dps, method, condition, name, given,
                         what, f"the per-node {what}")
    if all(n in fixed for n in _activation_nodes(graph)):
        return None
    root = _solve_uniform(walk, target, linear, target_exact, dps)
    if root is None:  # not reached: walk(linear) < target <= walk(target) when a node is free
        raise InfeasibleShapingError(
            f"{method}: no common per-layer {condition} in [{linear}, {given}] makes the network's maximal "
            f"{condition} equal {given}. Lower the fixed per-node {what} or raise {name}."
        )
    return root


def _check_fixed_targets(graph, fixed: dict, alone, target, dps: int, method: str, condition: str, name: str,
                         given, what: str, fix: str) -> None:
    """Refuse per-node targets that leave the common per-layer target nothing to do.

    ``alone`` is the network's maximal ``condition`` with the free nodes linear (C'(1) = 1, C''(1) = 0).
    When it already reaches the network target, the free nodes would have to be linear, which the
    solvers refuse: the root search returned that linear value and the refusal blamed the network
    target ("(the network zeta must exceed 1)" with zeta = 1.5, "(tau must be > 0)" with tau = 0.3).
    When every node is fixed, ``alone`` is the network's value and must be the target (per-node slopes
    giving 1.44 with zeta = 2 were said to "exceed" it; slopes giving exactly zeta raised a bare
    ZeroDivisionError).
    """
    nodes = _activation_nodes(graph)
    named = ", ".join(map(repr, fixed))
    value = mpmath.nstr(alone, 12)
    if all(n in fixed for n in nodes):
        if abs(alone - target) <= mpmath.mpf(10) ** -dps * max(1, abs(target)):
            return
        raise InfeasibleShapingError(
            f"{method}: every activation node has a per-node {condition} target, and with them the network's "
            f"maximal {condition} is {value}, not {name}={given}. Adjust {fix} so that they give {name}, pass "
            f"{name}={value}, or leave some nodes to the common per-layer target.")
    if alone >= target:
        raise InfeasibleShapingError(
            f"{method}: the nodes with per-node {what} ({named}) already give the network a maximal {condition} "
            f"of {value} >= {name}={given} on their own, so the other activation nodes would have to be linear. "
            f"Lower {fix} or raise {name}.")


# ----------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShapedLayer:
    """One shaped activation node.

    ``activation`` is the transformed activation (``act.transformed(alpha, beta, gamma, delta)``
    for a symact Activation, or the SymPy expression gamma*(phi(alpha x + beta) + delta));
    ``targets`` the per-layer conditions imposed (exact SymPy values where the walker gives them);
    ``residuals`` achieved minus target; ``conditions`` all five achieved values (None for
    leaky-ReLU TAT, whose Q map is exactly Q(q) = q and whose C map is
    :func:`leaky_relu_c_map` at ``negative_slope``).
    """

    node: Any
    activation: Any
    alpha: Any
    beta: Any
    gamma: Any
    delta: Any
    targets: dict
    residuals: dict
    conditions: ConditionSet | None
    dps: int | None
    negative_slope: Any = None
    mirrored: bool = False
    branch: str = ""
    base: Any = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        def f(v):
            return mpmath.nstr(v, 12) if isinstance(v, mpmath.mpf) else (f"{v:.12g}" if isinstance(v, float) else repr(v))

        worst = max((abs(float(v)) for v in self.residuals.values()), default=0.0)
        extra = f", negative_slope={f(self.negative_slope)}" if self.negative_slope is not None else ""
        return (f"ShapedLayer(node={self.node!r}, alpha={f(self.alpha)}, beta={f(self.beta)}, "
                f"gamma={f(self.gamma)}, delta={f(self.delta)}{extra}, max|residual|={worst:.1e})")


@dataclass(frozen=True)
class TorchShaping:
    """Torch modules of the shaped activations (topological order and by node) and the initialiser.

    ``initialize(model)`` re-initialises every ``nn.Linear`` (scaled-uniform orthogonal, [out, in]
    layout) and ``nn.Conv{1,2,3}d`` (delta-orthogonal) of ``model`` with zero biases, in place.
    """

    activations: tuple
    by_node: dict
    initialize: Callable


@dataclass(frozen=True)
class ShapedNetwork:
    """Result of :func:`shape`: per-node transformed activations and the network's predicted kernel."""

    method: str
    graph: Any = field(repr=False)
    layers: tuple
    network_targets: dict
    per_layer_function: Any = None  # SymPy maximal slope / curvature function when the walker gives it

    def __repr__(self) -> str:
        return (f"ShapedNetwork(method={self.method!r}, layers={len(self.layers)}, "
                f"network_targets={self.network_targets})")

    def layer(self, node) -> ShapedLayer:
        for layer in self.layers:
            if layer.node == node:
                return layer
        names = [layer.node for layer in self.layers]
        shown = ", ".join(map(repr, names[:8])) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
        raise UnknownActivationError(f"{node!r} is not an activation node of this network; its activation nodes are {shown}")

    def layer_c_map(self, node, c: float) -> float:
        """C map (q = 1) of one shaped layer at c in [-1, 1], float64 (closed form for leaky ReLU).

        Kinks of the activation are split out of the quadrature: agrees with
        ``analysis.kernel_maps(layer.activation).c_map(c)`` to ~1e-12 for kinked activations too.
        """
        c = float(_check_c(c))
        layer = self.layer(node)
        if layer.negative_slope is not None:
            return float(leaky_relu_c_map(c, layer.negative_slope))
        return _c_map_float64(layer.base, float(layer.alpha), float(layer.beta), float(layer.gamma),
                              float(layer.delta), float(c))

    def c_map(self, c: float) -> float:
        """The network's predicted C map at input cosine c in [-1, 1] (graph walk of the per-layer C
        maps), float64."""
        c = float(_check_c(c))
        cache: dict = {}

        def rule(node, value):
            value = min(1.0, max(-1.0, float(value)))  # walked values can round just past +-1
            layer = self.layer(node)  # parallel branches reuse a value only under the same whole transform
            key = (id(layer.base), layer.alpha, layer.beta, layer.gamma, layer.delta, layer.negative_slope, value)
            if key not in cache:
                cache[key] = self.layer_c_map(node, value)
            return cache[key]

        return float(_network_value(_graph_api().propagate(self.graph, rule, float(c)), self.graph))

    def to_torch(self) -> TorchShaping:
        """Torch modules for every shaped activation plus the kernel-preserving initialiser."""
        from numeric.initializers import kernel_preserving_init_

        modules = tuple(_torch_activation(layer) for layer in self.layers)
        return TorchShaping(modules, {layer.node: m for layer, m in zip(self.layers, modules)},
                            kernel_preserving_init_)


def _c_map_float64(funcs: ActivationFunctions, alpha, beta, gamma, delta, c) -> float:
    """E[psi(u) psi(v)] / Q(1) with corr(u, v) = c, in float64.

    ``numeric.gauss.bivariate_gaussian_expectation_float64``: composite Gauss-Legendre whose outer
    rule is split at the kinks of psi and whose inner panels are split at the moving kink, so kinked
    activations (selu, elu) are as accurate as smooth ones (~1e-12; an unsplit tensor rule was off
    by up to 5e-5 for SELU).  Q(1) = E[psi^2] comes from the same rule at c = 1.
    """
    from numeric.gauss import bivariate_gaussian_expectation_float64

    phi = funcs.np_funcs[0]

    def psi(z):
        return gamma * (phi(alpha * z + beta) + delta)

    # phi varies on a unit scale around its kinks and u = 0, i.e. on the scale 1/alpha in z around
    # (k - beta)/alpha and -beta/alpha: without these break-points and that width the rule cannot
    # resolve the near-step psi of large-alpha solutions (tanh at C'(1) = 10 has alpha ~ 15)
    kinks = tuple(sorted({(float(k) - beta) / alpha for k in funcs.kinks} | {-beta / alpha}))
    k, q = bivariate_gaussian_expectation_float64(psi, psi, np.array([c, 1.0]), breakpoints=kinks,
                                                  scale=min(1.0, 1.0 / abs(alpha)))
    return float(k / q)


def _torch_activation(layer: ShapedLayer):
    """A torch module computing the shaped activation.

    Uses the code generator ``numeric.torch_module`` when it is available; otherwise a small
    module applying gamma*(phi(alpha*x + beta) + delta) with phi lambdified to torch.
    """
    try:
        from numeric import torch_module  # codegen branch
    except ImportError:
        torch_module = None
    if torch_module is not None and hasattr(layer.activation, "concrete_expr"):
        return torch_module(layer.activation)
    from numeric.initializers import TransformedActivation

    if layer.negative_slope is not None:
        import torch

        fn = lambda t, a=float(layer.negative_slope): torch.nn.functional.leaky_relu(t, a)  # noqa: E731
        name = f"leaky_relu({float(layer.negative_slope):.6g})"
    else:
        fn = sympy.lambdify(layer.base.symbol, layer.base.expr, modules="torch")
        name = layer.base.name
    return TransformedActivation(fn, name, float(layer.alpha), float(layer.beta), float(layer.gamma),
                                 float(layer.delta))


# ----------------------------------------------------------------------------------------
# shape()
# ----------------------------------------------------------------------------------------


def _sym_digits(dps: int | None) -> int:
    """Decimal digits of the SymPy Floats that carry mpmath parameters into a shaped activation: 30,
    or ``dps`` when more were asked for (dps=50 parameters were cut to 30 digits in the activation)."""
    return max(30, dps or 0)


def _transformed(act, funcs: ActivationFunctions, alpha, beta, gamma, delta, dps: int | None = None):
    if hasattr(act, "transformed"):
        to_sym = (lambda v: sympy.Float(v, _sym_digits(dps))) if isinstance(alpha, mpmath.mpf) else sympy.Float
        return act.transformed(*(to_sym(v) for v in (alpha, beta, gamma, delta)))
    x = funcs.symbol
    return gamma * (funcs.expr.subs(x, alpha * x + beta) + delta)


def _is_leaky_relu(act) -> bool:
    name = act if isinstance(act, str) else getattr(act, "name", None)
    return name in ("leaky_relu", "prelu")


def _warn_about_pools(graph: nx.DiGraph, method: str, activation_nodes: list) -> None:
    """A RuntimeWarning where the graph's pools make the walked maps inexact for positions that differ.

    A pool node passes the per-position kernel on (see graphs.graph, Pools): exact for identical positions,
    and for C values where the kernels across positions vanish, as DKS's C(0) = 0 gives for uncorrelated
    positions.  TAT keeps C(0) > 0 (tanh at tau = 0.3: 0.13), and averaging P positions lowers q before any
    activation after the pool; there the prediction was silently off (a conv net with a global average pool
    under TAT: C(0) predicted 0.13, measured 0.54 on 8 i.i.d. positions; a DKS net with a pool mid-way: C(0)
    predicted 0, measured 0.22)."""
    import warnings

    pools = [n for n, kind in graph.nodes(data="kind") if kind == "pool"]
    if not pools:
        return
    activations = set(activation_nodes)
    after = sorted(str(p) for p in pools if activations & nx.descendants(graph, p))  # one traversal per pool
    reasons = []
    if method == "tat":
        reasons.append("TAT keeps C(0) > 0, so the kernels across positions that a pool averages in do not vanish")
    if after:
        reasons.append(f"activations follow pool(s) {after}, and averaging positions lowers q there (0.404 q "
                       "after a ReLU conv on 8 i.i.d. positions), while their transforms assume q = 1")
    if reasons:
        warnings.warn(
            f"the graph has pool node(s) {sorted(map(str, pools))}; the predicted maps hold for inputs whose positions "
            f"are identical, not for positions that differ: {'; and '.join(reasons)} (see graphs.graph, Pools). "
            "For such inputs check the prediction on a wide random network, or pool only at the head of a DKS "
            "network (graphs.resnet(stem_pool=False)).", RuntimeWarning, stacklevel=3)


def shape(act_or_mapping: Any, graph: nx.DiGraph, method: str = "dks", dps: int | None = None, *,
          branch: str = "beta>=0", node_targets: Mapping | None = None, **targets) -> ShapedNetwork:
    r"""Shape every activation node of ``graph`` with DKS or TAT.

    ``act_or_mapping``: one activation for every node (Activation, catalogue name or SymPy
    expression), a mapping node -> activation (mixed activations), or None to use each node's
    ``activation`` attribute.  ``method``: "dks" (targets ``zeta`` = 1.5, ``q_slope`` = 1) or
    "tat" (``tau`` = 0.3 for smooth activations, ``eta`` = 0.9 for leaky ReLU).  ``dps``: None for
    float64, else mpmath digits.  ``node_targets``: per-node overrides, node -> {"c_slope": s}
    (DKS) or {"c_curvature": k} (TAT); the other nodes share the common per-layer target that
    makes the network maximum equal zeta / tau.

    Identical (activation, targets) pairs are solved once and shared.  Targets that the chosen
    variant would not use (``eta`` with smooth TAT, ``tau`` with leaky-ReLU TAT, per-node targets of
    the other method or of non-activation nodes) raise :class:`~symact.errors.DomainError`; a
    ``graph`` that is not a networkx DiGraph raises :class:`~symact.errors.InvalidGraphError`.

    >>> import graphs
    >>> net = shape("tanh", graphs.mlp(2), method="dks", zeta=1.5)
    >>> net.layers[0].targets["c_slope"]    # C'(1) multiplies along a chain: each layer's is zeta**(1/2)
    sqrt(6)/2
    >>> net.layer("activation2")
    ShapedLayer(node='activation2', alpha=0.7667..., beta=1.0419..., gamma=2.6140..., delta=-0.6343..., max|residual|=...)
    >>> round(net.c_map(0.0), 12), round(net.c_map(1.0), 12)    # C(0) = 0 and C(1) = 1, as DKS asks
    (0.0, 1.0)
    """
    _check_dps(dps)
    _check_branch(branch)
    if not isinstance(graph, nx.DiGraph):
        raise InvalidGraphError(
            f"shape() needs a network graph (a networkx DiGraph), got {type(graph).__name__}: build one with "
            "graphs.mlp(depth) or graphs.resnet(...), or trace a torch model with "
            "graphs.from_torch(model, example_input).")
    if not isinstance(method, str):
        raise DomainError(f"method={method!r}: use 'dks' or 'tat'.")
    method = method.lower()
    if method not in ("dks", "tat"):
        raise DomainError(f"method={method!r}: use 'dks' or 'tat'.")
    allowed = {"dks": {"zeta", "q_slope"}, "tat": {"tau", "eta"}}[method]
    unknown = set(targets) - allowed
    if unknown:
        raise DomainError(f"unknown {method} targets {sorted(unknown)}; {method} takes {sorted(allowed)}.")
    if not nx.is_directed_acyclic_graph(graph):  # before the topological sort below
        _graph_api().validate(graph)  # raises InvalidGraphError naming the cycle
    nodes = _activation_nodes(graph)
    if not nodes:
        raise DomainError("the graph has no activation nodes (kind='activation'); nothing to shape.")
    _warn_about_pools(graph, method, nodes)
    if isinstance(act_or_mapping, Mapping):
        # a key that is no activation node (a typo, or a linear layer) would be ignored without a word
        extra = [n for n in act_or_mapping if n not in nodes]
        if extra:
            raise DomainError(f"the activation mapping names {extra}, which are not activation nodes of the graph; "
                              f"its activation nodes are {nodes}.")
    acts = {}
    for node in nodes:
        if isinstance(act_or_mapping, Mapping):
            if node not in act_or_mapping:
                raise DomainError(f"no activation given for node {node!r}; the mapping must cover {nodes}.")
            acts[node] = act_or_mapping[node]
        elif act_or_mapping is None:
            acts[node] = graph.nodes[node].get("activation")
            if acts[node] is None:
                raise DomainError(f"activation node {node!r} names no activation; pass act_or_mapping.")
            params = graph.nodes[node].get("activation_params") or {}
            if isinstance(acts[node], str) and params:
                import symact

                acts[node] = symact.activation(acts[node], **params)
        else:
            acts[node] = act_or_mapping
    for node, act in acts.items():
        if isinstance(act, str):  # catalogue names become symact Activations
            import symact

            acts[node] = symact.activation(act)
    node_targets = _checked_node_targets(node_targets)
    given = dict(targets)  # as passed, for ShapedNetwork.network_targets
    targets = {k: _exact_number(k, v) for k, v in targets.items()}
    _check_targets_fit(method, acts, nodes, given, node_targets)
    walk_dps = dps or 30
    if method == "dks":
        zeta = targets.get("zeta", sympy.Rational(3, 2))
        q_slope = targets.get("q_slope", sympy.Integer(1))
        if not zeta > 1:
            raise DomainError(f"zeta={zeta} must exceed 1 (zeta = 1 would make the network linear).")
        if any(_is_leaky_relu(a) for a in acts.values()):
            raise InfeasibleShapingError(
                "DKS cannot shape leaky_relu/relu: alpha cancels for positively homogeneous activations, so "
                "Q'(1)=1 and C'(1)=zeta^(1/T) cannot both hold. Use method='tat' (eta) for rectifiers."
            )
        fixed = {n: v["c_slope"] for n, v in node_targets.items() if "c_slope" in v}
        exact, function, slope = _uniform_slope(graph, zeta, fixed, walk_dps)
        cache: dict = {}
        layers = []
        for node in nodes:
            c_t = fixed.get(node, slope)
            key = (_act_key(acts[node]), str(c_t), str(q_slope))
            if key not in cache:
                cache[key] = solve_dks_layer(acts[node], c_slope=c_t, q_slope=q_slope, dps=dps, branch=branch)
            sol = cache[key]
            funcs = activation_functions(acts[node])
            layer_targets = {"q_value": 1, "q_slope": q_slope, "c_at_0": 0,
                             "c_slope": exact if (node not in fixed and exact is not None) else c_t}
            layers.append(_layer(node, acts[node], funcs, sol, layer_targets))
        network_targets = {"zeta": given.get("zeta", 1.5), "q_slope": given.get("q_slope", 1)}
        return ShapedNetwork("dks", graph, tuple(layers), network_targets, function)
    # TAT
    leaky = [n for n in nodes if _is_leaky_relu(acts[n])]
    if leaky:
        if len(leaky) != len(nodes):
            raise DomainError("leaky-ReLU TAT and smooth TAT cannot be mixed in one graph in this version; "
                              "shape the leaky-ReLU network on its own.")
        return _shape_leaky_relu(acts, nodes, graph, given.get("eta", 0.9), dps)
    tau = targets.get("tau", sympy.Rational(3, 10))
    if not tau > 0:
        raise DomainError(f"tau={tau} must be > 0: the network's C''(1) is a sum of E[psi''(u)^2] >= 0 terms, and "
                          "tau = 0 would make it linear; e.g. tau=0.3 (the default).")
    fixed = {n: v["c_curvature"] for n, v in node_targets.items() if "c_curvature" in v}
    exact, function, curvature = _uniform_curvature(graph, tau, fixed, walk_dps)
    cache = {}
    layers = []
    for node in nodes:
        k_t = fixed.get(node, curvature)
        key = (_act_key(acts[node]), str(k_t))
        if key not in cache:
            cache[key] = solve_tat_layer(acts[node], c_curvature=k_t, dps=dps, branch=branch)
        funcs = activation_functions(acts[node])
        layer_targets = {"q_value": 1, "q_slope": 1, "c_slope": 1,
                         "c_curvature": exact if (node not in fixed and exact is not None) else k_t}
        layers.append(_layer(node, acts[node], funcs, cache[key], layer_targets))
    return ShapedNetwork("tat", graph, tuple(layers), {"tau": given.get("tau", 0.3)}, function)


def _checked_node_targets(node_targets) -> dict:
    """node -> {condition: exact number}; anything else raises DomainError naming the expected shape."""
    if node_targets is None:
        return {}
    if not isinstance(node_targets, Mapping):
        raise DomainError(f"node_targets must be a mapping node -> {{condition: value}}, e.g. "
                          f"{{'activation1': {{'c_slope': 1.2}}}}; got {type(node_targets).__name__}.")
    out = {}
    for node, values in node_targets.items():
        if not isinstance(values, Mapping):
            raise DomainError(
                f"node_targets[{node!r}] = {values!r} must be a mapping of condition to value, e.g. "
                f"{{{node!r}: {{'c_slope': 1.2}}}} (DKS) or {{{node!r}: {{'c_curvature': 0.05}}}} (TAT).")
        out[node] = {key: _exact_number(f"node_targets[{node!r}][{key!r}]", v) for key, v in values.items()}
    return out


def _check_targets_fit(method: str, acts: dict, nodes: list, targets: dict, node_targets: dict) -> None:
    """Refuse targets that the chosen method variant would ignore.

    TAT has two variants: smooth activations take ``tau`` (network C''(1)) and per-node
    ``c_curvature``; leaky_relu/prelu take ``eta`` (network C(0)) and no per-node targets.  DKS takes
    ``zeta``/``q_slope`` and per-node ``c_slope``.
    """
    if method == "tat":
        n_leaky = sum(_is_leaky_relu(acts[n]) for n in nodes)
        if 0 < n_leaky < len(nodes):
            return  # mixed leaky/smooth TAT is refused by shape() itself
        leaky = n_leaky > 0
        label = "TAT for leaky_relu/prelu" if leaky else "TAT for smooth activations"
        if leaky and "tau" in targets:
            raise DomainError(
                f"tau={targets['tau']} is the TAT target of smooth activations (network C''(1)); for "
                "leaky_relu/prelu TAT sets the negative slope from eta (the network's C(0)): pass eta=... instead.")
        if not leaky and "eta" in targets:
            relu = any(getattr(acts[n], "name", acts[n]) == "relu" for n in nodes)
            # relu is neither smooth (tau cannot apply) nor leaky_relu by name: it is leaky_relu's slope-0 limit
            raise DomainError(
                f"eta={targets['eta']} is the TAT target of leaky_relu/prelu (the network's C(0)); "
                + ("relu is not smooth and TAT gives it a negative slope: shape 'leaky_relu' with eta=... "
                   "(plain ReLU is its slope-0 limit)." if relu else
                   "for smooth activations TAT takes tau (the network's C''(1)): pass tau=... instead, or shape "
                   "leaky_relu."))
        allowed = set() if leaky else {"c_curvature"}
    else:
        label, allowed = "DKS", {"c_slope"}
    for node, values in node_targets.items():
        if node not in nodes:
            raise DomainError(f"node_targets names {node!r}, which is not an activation node of the graph; "
                              f"its activation nodes are {nodes}.")
        extra = set(values) - allowed
        if extra:
            raise DomainError(
                f"node_targets[{node!r}] has {sorted(extra)}, which {label} does not use; it takes "
                + (f"{sorted(allowed)}." if allowed else "no per-node targets (only the network's eta)."))
        # the per-layer solvers' refusals of such a value blamed the network target ("(the network zeta
        # must exceed 1)" for node_targets={'activation1': {'c_slope': 1}} with zeta = 1.5)
        if "c_slope" in values and not values["c_slope"] > 1:
            raise DomainError(
                f"node_targets[{node!r}]['c_slope'] = {values['c_slope']} must exceed 1: C'(1) = 1 makes node "
                f"{node!r} linear, and C(0) = 0 with C(1) = 1 makes C'(1) >= 1; give it a per-layer C'(1) above 1, "
                "e.g. 1.1, or leave it to the common per-layer target.")
        if "c_curvature" in values and not values["c_curvature"] > 0:
            raise DomainError(
                f"node_targets[{node!r}]['c_curvature'] = {values['c_curvature']} must be > 0: C''(1) = "
                f"E[psi''(u)^2] / Q(1) is >= 0, and 0 makes node {node!r} linear; give it a per-layer C''(1) "
                "above 0, e.g. 0.05, or leave it to the common per-layer target.")


def _act_key(act):
    return (getattr(act, "name", None), str(getattr(act, "concrete_expr", act)))


def _layer(node, act, funcs, sol: LayerSolution, layer_targets) -> ShapedLayer:
    return ShapedLayer(node=node, activation=_transformed(act, funcs, sol.alpha, sol.beta, sol.gamma, sol.delta, sol.dps),
                       alpha=sol.alpha, beta=sol.beta, gamma=sol.gamma, delta=sol.delta, targets=layer_targets,
                       residuals=sol.residuals, conditions=sol.conditions, dps=sol.dps, mirrored=sol.mirrored,
                       branch=sol.branch, base=funcs)


def _slope_parameter(act) -> str | None:
    """Name of the negative-slope parameter of a leaky-ReLU-like symact Activation, else None.

    The catalogue calls it ``negative_slope`` for leaky_relu (PyTorch's name) and ``a`` for prelu
    (He et al.); an activation whose slope was already substituted has none left.
    """
    if not (hasattr(act, "subs") and hasattr(act, "transformed")):
        return None
    names = set(getattr(act, "parameter_names", ()) or ())
    for name in ("negative_slope", "a"):
        if name in names:
            return name
    return None


def _shape_leaky_relu(acts, nodes, graph, eta, dps) -> ShapedNetwork:
    """Negative slope a in [0, 1) with the network's maximal C(0) = eta; output scale sqrt(2/(1+a^2))."""
    work = dps or 18  # float64 output: 18 digits inside the walk are ample

    def network_c0(a):
        with mpmath.workdps(work + 8):
            return _network_value(_graph_api().max_subnetwork_value(
                graph, lambda node, c: leaky_relu_c_map(c, a), mpmath.mpf(0)), graph)

    with mpmath.workdps(work + 8):
        eta_mp = _mp(_exact_number("eta", eta), work + 8)
        if not 0 < eta_mp < 1:
            raise DomainError(f"eta={eta} must lie in (0, 1).")
        reachable = network_c0(0)  # a = 0 (ReLU) maximises C(0); a = 1 (identity) gives 0
        if eta_mp > reachable:
            raise InfeasibleShapingError(
                f"leaky-ReLU TAT: the network's maximal C(0) can be at most {mpmath.nstr(reachable, 6)} at this "
                f"depth (plain ReLU, negative slope 0), so eta={eta} is unreachable. Use eta <= "
                f"{mpmath.nstr(reachable, 6)} or a deeper network (C(0) grows with depth)."
            )
        # C(0) of the network decreases from `reachable` at a = 0 to 0 at a = 1
        root = _solve_uniform(lambda a: -network_c0(a), -eta_mp, 0, 1, work)
        a = root
        gamma = mpmath.sqrt(2 / (1 + a * a))
        achieved = network_c0(a)
    if dps is None:
        a_out, gamma_out, residual = float(a), float(gamma), float(achieved - eta_mp)
    else:
        with mpmath.workdps(dps):
            a_out, gamma_out, residual = +a, +gamma, +(achieved - eta_mp)
    layers = []
    for node in nodes:
        act = acts[node]
        slope_name = _slope_parameter(act)
        if slope_name is not None:
            digits = _sym_digits(dps)
            shaped = act.subs(**{slope_name: sympy.Float(a_out, digits)}).transformed(1, 0, sympy.Float(gamma_out, digits), 0)
        else:
            x = sympy.Symbol("x", real=True)
            shaped = gamma_out * sympy.Piecewise((x, x >= 0), (a_out * x, True))
        layers.append(ShapedLayer(node=node, activation=shaped, alpha=1, beta=0, gamma=gamma_out, delta=0,
                                  targets={"network_c_at_0": eta, "q_value": 1},
                                  residuals={"network_c_at_0": residual}, conditions=None, dps=dps,
                                  negative_slope=a_out))
    return ShapedNetwork("tat", graph, tuple(layers), {"eta": eta}, None)
