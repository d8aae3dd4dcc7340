"""Suite jobs for the experiments of other issues, wrapped as verification jobs.

* ``parameter_activation_one_step`` (issue 6, :func:`analysis.experiments.parameter_activation.one_step_check`):
  the seed's table of dA/dW written in A, checked by one SGD step per row;
* ``parameter_activation_convergence`` (issue 6, ``convergence_study``): the seed's claim that
  exp-parametrised weights converge faster than plain ones, at each method's tuned learning rate;
* ``gradient_penalty`` (issue 7, :func:`analysis.penalty.gradient_penalty_inequality`): the
  inequality between input-gradient and parameter-gradient penalties on random MLPs.

Each wrapper only turns the other module's record into claims; a missing module makes the job
*unavailable* with the reason.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from analysis.records import Claim, ExperimentUnavailable, Job
from analysis.verify import register

__all__ = ["parameter_activation_one_step", "parameter_activation_convergence", "gradient_penalty", "jobs"]


def _import(module: str, issue: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ExperimentUnavailable(f"{module} ({issue}) is not present here: {exc}") from exc


@register("parameter_activation_one_step")
def parameter_activation_one_step(spec: dict, *, device: str = "cpu", progress: Callable | None = None) -> dict:
    mod = _import("analysis.experiments.parameter_activation", "issue 6, branch paramact")
    record = mod.one_step_check(spec)
    claims = [
        Claim(f"one SGD step on W moves A = {row['g']} by -lr*r(A)*dL/dA to first order (r = {row['r(A)']})",
              measured=row["ratio"], tolerance="error ratio between lr=1e-3 and 1e-4 in [5, 20], or exact",
              passed=bool(row["passed"]), detail=f"relative errors {row['relative_errors']}", key="one_step")
        for row in record["rows"]
    ]
    return {"record": record, "claims": claims}


@register("parameter_activation_convergence")
def parameter_activation_convergence(spec: dict, *, device: str = "cpu", progress: Callable | None = None) -> dict:
    mod = _import("analysis.experiments.parameter_activation", "issue 6, branch paramact")
    record = mod.convergence_study(spec)
    cells: dict = {}
    for cell in record["cells"]:
        cells.setdefault((cell["target"], cell["scale"], cell["noise"]), {})[cell["method"]] = cell
    claims = []
    for (target, scale, noise), by_method in sorted(cells.items(), key=str):
        if "exp" not in by_method or "plain" not in by_method:
            continue
        e, p = by_method["exp"]["tuned"]["median_steps"], by_method["plain"]["tuned"]["median_steps"]
        e_f, p_f = float(e), float(p)
        ratio = e_f / p_f if math.isfinite(p_f) and p_f > 0 else (0.0 if math.isfinite(e_f) else float("nan"))
        claims.append(Claim(
            f"exp-parametrised linear regression reaches tolerance in fewer SGD steps than plain "
            f"(tuned lr; target {target}, scale {scale}, noise {noise})",
            measured=ratio, tolerance="median steps exp / plain < 1", passed=bool(e_f < p_f),
            detail=f"exp {e} steps at lr {by_method['exp']['tuned']['lr']}, plain {p} at lr "
                   f"{by_method['plain']['tuned']['lr']}", key="exp_faster"))
    return {"record": record, "claims": claims}


@register("gradient_penalty")
def gradient_penalty(spec: dict, *, device: str = "cpu", progress: Callable | None = None) -> dict:
    import torch

    from numeric.train import build_mlp

    penalty = _import("analysis.penalty", "issue 7, branch smooth")
    n, worst_ratio, all_hold = int(spec.get("networks", 20)), 0.0, True
    gen = torch.Generator().manual_seed(int(spec.get("seed", 0)))
    acts = spec.get("activations", ["tanh", "softplus", "sigmoid", "leaky_relu"])
    for i in range(n):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        depth = int(torch.randint(1, 5, (1,), generator=gen))
        width = int(torch.randint(2, 9, (1,), generator=gen))
        model = build_mlp(4, width, depth, 1, acts[i % len(acts)], dtype=torch.float64)
        res = penalty.gradient_penalty_inequality(model, torch.randn(4, dtype=torch.float64), norm=spec.get("norm", "spectral"))
        all_hold &= bool(res.holds)
        if math.isfinite(res.ratio):
            worst_ratio = max(worst_ratio, res.ratio)
        if progress:
            progress(i + 1, n)
    claim = Claim(f"input-gradient penalty bound <= parameter-gradient penalty on {n} random MLPs ({spec.get('norm', 'spectral')} norm)",
                  measured=worst_ratio, tolerance="lhs/rhs <= 1 (+64 eps)", passed=all_hold, key="gradient_penalty")
    return {"max_ratio": worst_ratio, "claims": [claim]}


def jobs(level: str) -> list[Job]:
    if level == "tiny":
        return []
    quick_conv = {"seeds": 3, "steps": 500, "targets": ["equal"], "target_scales": [1.0, 10.0], "noise_levels": [0.0],
                  "lr_grid": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]}
    out = [Job("parameter_activation_one_step", {}), Job("gradient_penalty", {"networks": 50 if level == "full" else 20})]
    full_conv = {"seeds": 5, "steps": 1000}  # every target, scale, noise level and lr of the default grid
    out.append(Job("parameter_activation_convergence", quick_conv if level == "quick" else full_conv))
    return out
