"""Extrapolation of y = 2x by the Deep Universal Regressor II (seed 000), against DUR-I and plain MLPs.

Train on x in [1, 10], evaluate the relative error |y_hat/y - 1| on [10, 1000].

The symbolic part (:func:`required_exponent`): DUR-II reproduces y = 2x exactly for every x when
u(x) = log2(2x) - c and the refinement terms are the constants with sum_i s_i 2**-i = 2**c - 1
(c = 0: all terms at 0).  With one A_0 unit, u is the read-out itself, so the question is whether
log2(2x) = log(x)/log(2) + 1 is an affine function of the read-out features:

* features (x, log x): yes, u = 1 + log(x)/log(2) (coefficient 0 on x);
* features (x,) alone: no.  An affine read-out of x gives u affine in x, y = 2**(a x + b) grows
  exponentially, and averaging several squashed units does not help: as x -> oo each squash(a_j x + b_j)
  tends to its limit exponentially fast, so unsquash(mean(...)) either tends to a constant (y bounded,
  relative error -> 1) or grows linearly in x (relative error -> oo); it never grows like log2(x).

>>> required_exponent(("x", "log(x)"))["representable"], required_exponent(("x",))["representable"]
(True, False)
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Mapping

import sympy as sp
import torch
from torch import nn

from numeric.regressor import DeepUniversalRegressorI, DeepUniversalRegressorII
from symact.errors import DomainError, is_whole_number

__all__ = ["ExtrapolationSpec", "extrapolation_experiment", "required_exponent", "format_extrapolation_table"]

_FEATURES = {"x": lambda x: x, "log(x)": torch.log}
_MODELS = ("dur2", "dur2_unregularised", "dur1", "mlp_relu", "mlp_tanh")


def _check_spec(spec: "ExtrapolationSpec") -> None:
    """DomainError for an unknown model or read-out feature, before anything is trained (an unknown model
    used to raise a bare ValueError after the models before it had trained, a feature a bare KeyError)."""
    unknown = [m for m in spec.models if m not in _MODELS]
    if unknown:
        raise DomainError(f"ExtrapolationSpec.models has unknown value(s) {unknown}; use some of {list(_MODELS)}.")
    unknown = sorted({f for names in spec.feature_sets for f in names if f not in _FEATURES})
    if unknown or not all(spec.feature_sets):
        raise DomainError(f"ExtrapolationSpec.feature_sets: each set must be a non-empty tuple of features from "
                          f"{list(_FEATURES)}; unknown: {unknown}.")
    # each of these gave a record of NaN and inf errors (or a bare "math domain error") instead of a refusal
    for name in ("train_range", "eval_range"):
        low_high = getattr(spec, name)
        if not (len(low_high) == 2 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in low_high)
                and low_high[0] < low_high[1]):
            raise DomainError(f"ExtrapolationSpec.{name}={low_high!r} must be two finite numbers low < high.")
    if spec.eval_range[0] <= 0:
        raise DomainError(f"ExtrapolationSpec.eval_range={spec.eval_range!r} must be positive: the points are "
                          "log-spaced and the errors relative to y = 2x, which is 0 at x = 0.")
    if spec.train_range[0] <= 0 and any("log(x)" in names for names in spec.feature_sets):
        raise DomainError(f"ExtrapolationSpec.train_range={spec.train_range!r} reaches x <= 0, where the feature "
                          "log(x) is not real; start it above 0 (e.g. (1.0, 10.0)).")
    for name in ("n_train", "n_eval"):
        if not is_whole_number(getattr(spec, name), 2):
            raise DomainError(f"ExtrapolationSpec.{name}={getattr(spec, name)!r} must be a whole number >= 2.")


def required_exponent(features: tuple[str, ...]) -> dict[str, Any]:
    """Can u(x) = log2(2x) be written as c0 + sum_j c_j f_j(x) for the read-out features f_j?

    Treats x and log(x) as independent indeterminates (they are algebraically independent), so the
    identity must hold coefficient by coefficient.  Returns the required u, the coefficients (as strings)
    or None, and ``representable``.
    """
    x = sp.Symbol("x", positive=True)
    u_required = sp.expand_log(sp.log(2 * x) / sp.log(2), force=True)
    coeffs = sp.symbols(f"c0:{len(features) + 1}")
    basis = [sp.Integer(1)] + [sp.sympify(f, locals={"x": x}) for f in features]
    residual = sp.expand(u_required - sum(c * b for c, b in zip(coeffs, basis)))
    big_l = sp.Symbol("L")  # stands for log(x)
    residual = residual.subs(sp.log(x), big_l)
    equations = sp.Poly(residual, x, big_l).coeffs()
    solution = sp.solve(equations, coeffs, dict=True)
    ok = bool(solution)
    return {
        "features": list(features),
        "u_required": str(u_required),
        "coefficients": {str(b): str(solution[0].get(c, 0)) for c, b in zip(coeffs, basis)} if ok else None,
        "representable": ok,
    }


@dataclass(frozen=True)
class ExtrapolationSpec:
    """Spec of the y = 2x extrapolation experiment (all fields JSON-serialisable)."""

    feature_sets: tuple[tuple[str, ...], ...] = (("x",), ("x", "log(x)"))
    models: tuple[str, ...] = ("dur2", "dur2_unregularised", "dur1", "mlp_relu", "mlp_tanh")
    squash: str = "sigmoid"
    k: int = 4
    width: int = 1                  # averaged A_0 units (DUR-II) / units (DUR-I)
    mlp_width: int = 32
    penalty: float = 1e-4           # DUR-II order_penalty strength (growth 4); "dur2_unregularised" uses 0
    train_range: tuple[float, float] = (1.0, 10.0)
    eval_range: tuple[float, float] = (10.0, 1000.0)
    n_train: int = 200
    n_eval: int = 400
    lbfgs_iterations: int = 400
    seed: int = 0


def _features(x: torch.Tensor, names: tuple[str, ...]) -> torch.Tensor:
    return torch.stack([_FEATURES[n](x) for n in names], dim=-1)


def _median(values: torch.Tensor) -> float:
    """The median of ``values``: the mean of the two middle ones for an even count.

    ``torch.median`` returns the lower middle value instead (element 199 of 400)."""
    ordered = values.flatten().sort().values
    n = ordered.numel()
    if n % 2:
        return float(ordered[n // 2])
    return float((ordered[n // 2 - 1] + ordered[n // 2]) / 2)


def _build(model: str, n_in: int, spec: ExtrapolationSpec) -> nn.Module:
    if model in ("dur2", "dur2_unregularised"):
        return DeepUniversalRegressorII(n_in, k=spec.k, width=spec.width, squash=spec.squash)
    if model == "dur1":
        return DeepUniversalRegressorI(n_in, width=spec.width, squash=spec.squash)
    if model in ("mlp_relu", "mlp_tanh"):
        act = nn.ReLU() if model == "mlp_relu" else nn.Tanh()
        return nn.Sequential(nn.Linear(n_in, spec.mlp_width), act, nn.Linear(spec.mlp_width, spec.mlp_width),
                             act, nn.Linear(spec.mlp_width, 1), nn.Flatten(0))
    raise DomainError(f"unknown model {model!r}; use dur2, dur2_unregularised, dur1, mlp_relu or mlp_tanh.")


def _fit(net: nn.Module, f: torch.Tensor, y: torch.Tensor, spec: ExtrapolationSpec, penalty: float) -> float:
    """LBFGS on the mean squared relative error (+ DUR-II's order penalty); returns the final train loss."""
    opt = torch.optim.LBFGS(net.parameters(), lr=1.0, max_iter=spec.lbfgs_iterations,
                            tolerance_grad=1e-12, tolerance_change=1e-15, history_size=50,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = ((net(f) / y - 1) ** 2).mean()
        if isinstance(net, DeepUniversalRegressorII) and penalty > 0:
            loss = loss + net.order_penalty(penalty)
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((net(f) / y - 1) ** 2).mean())


def extrapolation_experiment(spec: ExtrapolationSpec | Mapping[str, Any] = ExtrapolationSpec()) -> dict[str, Any]:
    """Train each model on y = 2x, x in train_range; report relative errors in and beyond it.

    Returns a JSON-serialisable record: the spec, the symbolic analysis per feature set, and per
    (features, model) the train loss, the max and median relative error on eval_range (inf where the
    model's output is not finite) and the error at the far end.
    """
    if not isinstance(spec, ExtrapolationSpec):
        fields = [f.name for f in dataclasses.fields(ExtrapolationSpec)]
        unknown = [k for k in dict(spec) if k not in fields]
        if unknown:  # a bare TypeError from the dataclass
            raise DomainError(f"ExtrapolationSpec has no field {unknown[0]!r}; its fields are {fields}.")
        spec = ExtrapolationSpec(**{k: (tuple(tuple(f) for f in v) if k == "feature_sets" else
                                        tuple(v) if isinstance(v, list) else v) for k, v in dict(spec).items()})
    _check_spec(spec)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add contention
    try:
        x_train = torch.linspace(*spec.train_range, spec.n_train, dtype=torch.float64)
        x_eval = torch.logspace(math.log10(spec.eval_range[0]), math.log10(spec.eval_range[1]), spec.n_eval,
                                dtype=torch.float64)
        results = []
        for names in spec.feature_sets:
            f_train, f_eval = _features(x_train, names), _features(x_eval, names)
            for model in spec.models:
                torch.manual_seed(spec.seed)
                net = _build(model, len(names), spec).double()
                start = time.perf_counter()
                penalty = 0.0 if model == "dur2_unregularised" else spec.penalty
                train_loss = _fit(net, f_train, 2 * x_train, spec, penalty)
                with torch.no_grad():
                    rel = (net(f_eval) / (2 * x_eval) - 1).abs()
                rel = torch.where(torch.isfinite(rel), rel, torch.full_like(rel, math.inf))
                results.append({
                    "features": list(names), "model": model, "train_loss": train_loss,
                    "max_rel_error": float(rel.max()), "median_rel_error": _median(rel),
                    "rel_error_at_end": float(rel[-1]), "seconds": time.perf_counter() - start,
                })
    finally:
        torch.set_num_threads(threads)
    return {
        "experiment": "dur_extrapolation",
        "spec": dataclasses.asdict(spec),
        "analysis": [required_exponent(tuple(n)) for n in spec.feature_sets],
        "results": results,
    }


def format_extrapolation_table(record: Mapping[str, Any]) -> str:
    """Markdown table of an :func:`extrapolation_experiment` record."""
    lines = ["| read-outs | model | train MSRE | max rel. error on eval | median | at far end |",
             "|---|---|---|---|---|---|"]
    for r in record["results"]:
        lines.append(f"| ({', '.join(r['features'])}) | {r['model']} | {r['train_loss']:.2e} | "
                     f"{r['max_rel_error']:.3g} | {r['median_rel_error']:.3g} | {r['rel_error_at_end']:.3g} |")
    return "\n".join(lines)
