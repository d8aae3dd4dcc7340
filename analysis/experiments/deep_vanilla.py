"""Deep vanilla networks: do shaped kernels make 50/100-layer MLPs trainable?

MLPs without skip connections or normalisation (``hidden_layers`` activation
layers of width ``width``, one more linear layer for the output), activations
tanh, sigmoid, softplus, leaky ReLU, trained on moons (make_moons n=1000, noise
0.1, half held out) and on scikit-learn's digits (30% held out).  Arms:

* ``plain``: LeCun-normal weights N(0, 1/fan_in), zero biases (standard init);
* ``dks`` / ``tat``: the network shaped by ``analysis.shape(act, graphs.mlp(depth),
  method=...)`` with its ``.to_torch()`` modules, or, while ``graphs.mlp`` is absent, by the
  same per-layer targets solved with ``analysis.shaping.solve_dks_layer`` /
  ``solve_tat_layer`` (the record says which); scaled-uniform orthogonal weights, zero
  biases.  Recorded as *unavailable* when the shaping code is absent or the method cannot
  shape the activation (DKS for leaky ReLU), never replaced by another arm;
* ``rai``: the plain network trained with relaxed activation identity
  (:class:`numeric.rai.RAI`, per-example auxiliary tensors indexed per batch), by
  default in the RAI seed's form (``PROTOCOLS["seed"]``: every ``nn.Linear`` output,
  the last one too, relaxed; ``spec["rai_protocol"]`` picks another);
* ``resnet``: a ResNet-style baseline, ``h <- h + W phi(h)`` per block with the
  residual weights scaled by 1/sqrt(depth) (no normalisation).

Optimisers: Adam (mini-batch, lr 3e-4), SGD with momentum (mini-batch), full-batch Rprop;
one learning rate per optimiser for every arm.  Adam's 3e-4 is the better of {1e-3, 3e-4}
for the plain arm too (100-layer tanh, 100 steps, 3 seeds: moons 0.44 vs 0.53, digits 1.46
vs 2.30); at 1e-3 the shaped arms were unstable (DKS on moons: 0.54 to 0.92).
Each job is one (activation, depth, dataset, arm, optimiser, seed); the report
aggregates seeds (median and min-max band) and checks the DKS claim: for the
100-layer tanh MLP the DKS arm reaches a lower training loss than the plain arm
after the same number of steps, on both data sets (median over 3 seeds).

>>> from analysis.experiments.deep_vanilla import deep_vanilla
>>> rec = deep_vanilla({"activation": "tanh", "hidden_layers": 3, "width": 8, "dataset": {"name": "moons", "n_samples": 40, "test_fraction": 0.5}, "arm": "plain", "steps": 3})
>>> sorted(rec["curve"])[:3]
['objective', 'seconds', 'steps']
"""

from __future__ import annotations

import functools
import math
import os
import statistics
from typing import Any, Callable

from analysis.records import Claim, ExperimentUnavailable, Job
from analysis.verify import check_spec_keys, register
from symact.errors import DomainError, is_whole_number

__all__ = ["deep_vanilla", "build_model", "jobs", "report_section", "ARMS", "ACTIVATIONS", "OPTIMIZER_DEFAULTS"]

ARMS = ("plain", "dks", "tat", "rai", "resnet")
ACTIVATIONS = ("tanh", "sigmoid", "softplus", "leaky_relu")
OPTIMIZER_DEFAULTS = {
    "adam": {"lr": 3e-4, "batch_size": 128},
    "sgd": {"lr": 0.05, "batch_size": 128, "optimizer_options": {"momentum": 0.9}},
    "rprop": {"lr": 0.01, "batch_size": None},
}
MOONS = {"name": "moons", "n_samples": 1000, "noise": 0.1, "test_fraction": 0.5}
DIGITS = {"name": "digits", "test_fraction": 0.3}
# what a job's spec leaves out (the job runs with these, and the report groups it by them)
SPEC_DEFAULTS = {"activation": "tanh", "hidden_layers": 100, "width": 100, "dataset": MOONS, "arm": "plain",
                 "optimizer": "adam", "steps": 200, "seed": 0}


def _lecun_(model: Any) -> Any:
    import torch

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0.0, 1.0 / math.sqrt(m.in_features))
                m.bias.zero_()
    return model


def _residual_mlp(in_f: int, width: int, depth: int, out_f: int, act: str, dtype: Any, device: Any) -> Any:
    import torch
    import torch.nn as nn

    from numeric.train import activation_module

    class ResidualBlock(nn.Module):
        """``h + W phi(h)`` with W ~ N(0, 1/(fan_in * depth)): variance grows by at most ~e over the stack."""

        def __init__(self) -> None:
            super().__init__()
            self.act = activation_module(act)
            self.linear = nn.Linear(width, width, dtype=dtype, device=device)
            with torch.no_grad():
                self.linear.weight.normal_(0.0, 1.0 / math.sqrt(width * depth))
                self.linear.bias.zero_()

        def forward(self, h: Any) -> Any:
            return h + self.linear(self.act(h))

    stem = _lecun_(nn.Linear(in_f, width, dtype=dtype, device=device))
    head = _lecun_(nn.Linear(width, out_f, dtype=dtype, device=device))
    return nn.Sequential(stem, *[ResidualBlock() for _ in range(depth)], activation_module(act), head)


def _shaping_api() -> Any:
    try:
        from analysis import shaping
    except ImportError as exc:
        raise ExperimentUnavailable(
            f"The DKS/TAT arms need analysis.shaping (branch 'shaping'), which is not present here ({exc}). "
            "Merge the shaping branch, then re-run: only these arms' jobs run again."
        ) from exc
    return shaping


def shaped_activations(method: str, act: str, depth: int) -> tuple[list, str]:
    """Torch modules of the ``depth`` shaped activations of a vanilla MLP, and how they were obtained.

    Preferred: ``analysis.shape(act, graphs.mlp(depth), method)`` and ``.to_torch()`` (the
    graph walker).  Without ``graphs.mlp`` the same targets are solved per layer: for an MLP of
    ``depth`` activation layers DKS needs C'(1) = zeta^(1/depth) per layer and TAT
    C''(1) = tau/depth (zeta = 1.5, tau = 0.3), and leaky-ReLU TAT the negative slope whose
    composed C(0) equals eta = 0.9.
    """
    import symact

    shaping = _shaping_api()
    symact.activation(act)  # an unknown name is refused here, on either path
    try:
        import graphs

        graph = graphs.mlp(depth)  # type: ignore[attr-defined]
    except (ImportError, AttributeError):
        graph = None
    if graph is not None:
        torch_shaping = _shape_mlp(method, act, depth).to_torch()  # fresh modules per call
        return list(torch_shaping.activations), "analysis.shape(act, graphs.mlp(depth)).to_torch()"
    from numeric.initializers import TransformedActivation

    phi = _torch_phi(act) if act != "leaky_relu" else None
    if method == "dks":
        if act in ("leaky_relu", "relu"):
            raise ExperimentUnavailable(
                "DKS cannot shape leaky_relu (positively homogeneous: Q'(1) = 1 and C'(1) > 1 cannot both "
                "hold); TAT is the method for rectifiers.")
        sol = _solve_layer("dks", act, depth)
        how = f"analysis.shaping.solve_dks_layer per layer, C'(1) = 1.5^(1/{depth}) (graphs.mlp not present)"
    elif act == "leaky_relu":
        a = _leaky_relu_tat_slope(shaping.leaky_relu_c_map, depth, eta=0.9)
        gain = math.sqrt(2.0 / (1.0 + a * a))
        import torch

        mods = [TransformedActivation(lambda t, a=a: torch.nn.functional.leaky_relu(t, a), f"leaky_relu({a:.6g})",
                                      1.0, 0.0, gain, 0.0) for _ in range(depth)]
        return mods, f"leaky-ReLU TAT: negative slope {a:.6g} with composed C(0) = 0.9 (graphs.mlp not present)"
    else:
        sol = _solve_layer("tat", act, depth)
        how = f"analysis.shaping.solve_tat_layer per layer, C''(1) = 0.3/{depth} (graphs.mlp not present)"
    mods = [TransformedActivation(phi, act, float(sol.alpha), float(sol.beta), float(sol.gamma), float(sol.delta))
            for _ in range(depth)]
    return mods, how


@functools.lru_cache(maxsize=None)
def _shape_mlp(method: str, act: str, depth: int) -> Any:
    """``analysis.shape(act, graphs.mlp(depth), method)``, cached per process like :func:`_solve_layer`: a
    worker reuses it across seeds and data sets (tanh at depth 100: ~1.3 s per DKS job before)."""
    import graphs
    import symact

    return _shaping_api().shape(symact.activation(act), graphs.mlp(depth), method=method)  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=None)
def _solve_layer(method: str, act: str, depth: int) -> Any:
    """Per-layer DKS/TAT solution, cached per process (a worker reuses it across seeds and arms)."""
    import symact

    shaping = _shaping_api()
    if method == "dks":
        return shaping.solve_dks_layer(symact.activation(act), c_slope=1.5 ** (1.0 / depth))
    return shaping.solve_tat_layer(symact.activation(act), c_curvature=0.3 / depth)


def _torch_phi(act: str) -> Callable:
    import torch

    return {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "softplus": torch.nn.functional.softplus}[act]


def _leaky_relu_tat_slope(c_map: Callable, depth: int, eta: float) -> float:
    """Negative slope a in [0, 1) with C^(depth)(0) = eta, by bisection.

    The composed C(0) *falls* as a grows (one layer gives (1 - a)^2 / (pi (1 + a^2)); a = 1 is linear,
    C(0) = 0), so ReLU (a = 0) gives the largest value: below eta there, no slope reaches eta."""

    def composed(a: float) -> float:
        c = 0.0
        for _ in range(depth):
            c = float(c_map(c, a))
        return c

    lo, hi = 0.0, 1.0 - 1e-12
    if composed(lo) < eta:
        raise ExperimentUnavailable(f"leaky-ReLU TAT infeasible: even ReLU gives composed C(0) = {composed(lo):.4g} "
                                    f"< {eta} at depth {depth}.")
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if composed(mid) > eta else (lo, mid)
    return 0.5 * (lo + hi)


def _shaped_model(method: str, act: str, in_f: int, width: int, depth: int, out_f: int, dtype: Any,
                  device: Any) -> tuple:
    import torch.nn as nn

    from numeric.initializers import kernel_preserving_init_

    acts, how = shaped_activations(method, act, depth)
    layers: list = []
    fan_in = in_f
    for a in acts:
        layers += [nn.Linear(fan_in, width, dtype=dtype, device=device), a]
        fan_in = width
    layers.append(nn.Linear(fan_in, out_f, dtype=dtype, device=device))
    model = nn.Sequential(*layers)
    kernel_preserving_init_(model)  # scaled-uniform orthogonal weights, zero biases
    return model, how


def build_model(spec: dict, in_f: int, out_f: int, dtype: Any = None, device: Any = None) -> Any:
    """The torch model of the job's arm (seed torch first for reproducibility)."""
    from numeric.train import build_mlp

    arm, act = spec["arm"], spec["activation"]
    width, depth = int(spec["width"]), int(spec["hidden_layers"])
    if arm in ("plain", "rai"):
        return _lecun_(build_mlp(in_f, width, depth, out_f, act, dtype=dtype, device=device))
    if arm == "resnet":
        return _residual_mlp(in_f, width, depth, out_f, act, dtype, device)
    if arm in ("dks", "tat"):
        return _shaped_model(arm, act, in_f, width, depth, out_f, dtype, device)[0]
    raise DomainError(f"Unknown arm {arm!r}; choose one of {ARMS}.")


@register("deep_vanilla")
def deep_vanilla(spec: dict, *, device: str = "cpu", progress: Callable | None = None) -> dict:
    """Train one arm of a deep vanilla network and return its curves (no per-job claims)."""
    import torch

    from numeric.datasets import dataset
    from numeric.rai import PROTOCOLS, RAI
    from numeric.train import train

    check_spec_keys("deep_vanilla", spec, (*SPEC_DEFAULTS, "eval_every", "optimizer_spec", "rai_protocol", "penalty"))
    check_spec_keys("deep_vanilla optimizer_spec", spec.get("optimizer_spec", {}),
                    ("lr", "batch_size", "optimizer_options"))
    spec = {**SPEC_DEFAULTS, **spec}
    opt = spec["optimizer"]
    if opt not in OPTIMIZER_DEFAULTS:
        raise DomainError(f"deep_vanilla optimizer {opt!r} is not one of {sorted(OPTIMIZER_DEFAULTS)}.")
    if spec["arm"] == "rai" and spec.get("rai_protocol", "seed") not in PROTOCOLS:
        raise DomainError(f"deep_vanilla rai_protocol {spec['rai_protocol']!r} is not one of {sorted(PROTOCOLS)} "
                          "(see numeric.rai.PROTOCOLS).")
    # int() below ran width=8.5 as 8 and hidden_layers=2.5 as 2, under a record naming the spec given
    for key, least in (("steps", 0), ("hidden_layers", 1), ("width", 1), ("seed", 0)):
        if not is_whole_number(spec[key], least):
            raise DomainError(f"deep_vanilla {key} must be a whole number >= {least}, got {spec[key]!r}.")
    if "eval_every" in spec and not is_whole_number(spec["eval_every"], 1):
        raise DomainError(f"deep_vanilla eval_every must be a whole number >= 1, got {spec['eval_every']!r}.")
    opt_spec = {**OPTIMIZER_DEFAULTS[opt], **spec.get("optimizer_spec", {})}
    try:
        data = dataset(_dataset_spec(spec["dataset"]))
    except Exception as exc:  # digits without scikit-learn: say what to install
        if "scikit-learn" in str(exc):
            raise ExperimentUnavailable(str(exc)) from exc
        raise
    x, y, xt, yt = data.torch(torch.float32, device)
    torch.manual_seed(int(spec["seed"]))
    how = "torch default modules"
    if spec["arm"] in ("dks", "tat"):
        model, how = _shaped_model(spec["arm"], spec["activation"], data.n_features, int(spec["width"]),
                                   int(spec["hidden_layers"]), data.n_classes, torch.float32, device)
    else:
        model = build_model(spec, data.n_features, data.n_classes, torch.float32, device)
    steps = int(spec["steps"])
    batch = opt_spec.get("batch_size")
    batch = None if batch is None or batch >= len(x) else batch
    common = dict(loss="cross_entropy", optimizer=opt, lr=opt_spec["lr"], steps=steps, batch_size=batch,
                  seed=int(spec["seed"]), eval_every=int(spec.get("eval_every", max(1, steps // 10))),
                  optimizer_options=opt_spec.get("optimizer_options"), progress=progress)
    if spec["arm"] == "rai":
        # the seed's form: on the seed's own setting it is the one whose true network learns
        # (true loss 0.074 vs 0.78 for post-activation auxiliaries after 10000 Rprop steps)
        rai = RAI(model, x, loss="cross_entropy", penalty=spec.get("penalty", 1.0),
                  **PROTOCOLS[spec.get("rai_protocol", "seed")])
        result = train(rai, (x, y, xt, yt), objective=rai.objective, **common)
    else:
        result = train(model, (x, y, xt, yt), **common)
    return {"curve": result.to_dict(), "shaping": how, "final_train_loss": result.final_train_loss,
            "final_test_loss": result.final_test_loss,
            "final_test_accuracy": result.test_accuracy[-1] if result.test_accuracy else None}


def _grid(acts: tuple, depths: tuple, datasets: tuple, arms: tuple, optimizers: tuple, seeds: tuple,
          base: dict) -> list[Job]:
    return [
        Job("deep_vanilla", {**base, "activation": a, "hidden_layers": d, "dataset": ds, "arm": arm,
                             "optimizer": o, "seed": s})
        for a in acts for d in depths for ds in datasets for o in optimizers for arm in arms for s in seeds
    ]


def jobs(level: str) -> list[Job]:
    """``tiny``: a 6-layer toy (tests); ``quick``: 100-layer tanh, all arms, Adam, 3 seeds;
    ``full``: every activation at depth 50 and 100 with Adam, plus SGD and Rprop for tanh-100."""
    seeds = (0, 1, 2)
    if level == "tiny":
        # digits is left to the quick/full suites (scikit-learn's import alone costs seconds)
        return _grid(("tanh",), (4,), ({**MOONS, "n_samples": 100},), ARMS, ("adam",), (0,), {"width": 8, "steps": 5})
    if level == "quick":
        return _grid(("tanh",), (100,), (MOONS, DIGITS), ARMS, ("adam",), seeds, {"width": WIDTH, "steps": QUICK_STEPS})
    out = [
        job for job in _grid(ACTIVATIONS, (50, 100), (MOONS, DIGITS), ARMS, ("adam",), seeds,
                             {"width": WIDTH, "steps": FULL_STEPS})
        # DKS cannot shape a positively homogeneous activation (alpha cancels, so Q'(1) = 1 and
        # C'(1) = zeta^(1/T) cannot both hold; analysis.shape says so, tests/test_shaping.py checks
        # it); the rectifier's shaped arm is TAT's leaky-ReLU variant.
        if not (job.spec["activation"] == "leaky_relu" and job.spec["arm"] == "dks")
    ]
    out += _grid(("tanh",), (100,), (MOONS, DIGITS), ARMS, ("sgd", "rprop"), seeds, {"width": WIDTH, "steps": FULL_STEPS})
    return out


QUICK_STEPS = 100
FULL_STEPS = 200
WIDTH = 64  # keeps 100-layer jobs to seconds on a shared 2-core CPU


def _dataset_spec(spec: Any) -> dict:
    """A job's data set as :func:`numeric.datasets.dataset` takes it: a name ("digits") or a dict of fields
    (dict("digits") raised a bare ValueError, and the report read spec["dataset"]["name"] of the string)."""
    return {"name": spec} if isinstance(spec, str) else dict(spec)


# spec keys that only the RAI arm reads, with the values it runs when they are left out
_RAI_OPTIONS = {"rai_protocol": "seed", "penalty": 1.0}


def _settings(spec: dict) -> tuple[tuple, tuple]:
    """(shared, arm options) of a job spec, each as sorted (key, value) pairs with the defaults the job runs
    filled in, so that a spec leaving a key out and one giving its default agree.

    ``shared`` is what all arms of a comparison must have in common apart from the group's axes (activation,
    depth, data set name, optimizer) and the seed: width, steps, the optimizer's settings, the data set's
    options, eval_every.  The report once grouped by the axes alone, so records that differed in width or
    learning rate were pooled as if they were seeds of one run.  ``arm options`` are the RAI arm's own keys."""
    s = {**SPEC_DEFAULTS, **spec}
    shared = {k: v for k, v in s.items()
              if k not in ("activation", "hidden_layers", "optimizer", "arm", "seed", *_RAI_OPTIONS)}
    shared["dataset"] = _dataset_spec(s["dataset"])
    shared["optimizer_spec"] = {**OPTIMIZER_DEFAULTS.get(s["optimizer"], {}), **s.get("optimizer_spec", {})}
    shared.setdefault("eval_every", max(1, int(s["steps"]) // 10))
    options = {k: s.get(k, d) for k, d in _RAI_OPTIONS.items()} if s["arm"] == "rai" else {}
    options = {k: v for k, v in options.items() if v != _RAI_OPTIONS[k]}

    def frozen(value):
        if isinstance(value, dict):
            return tuple(sorted((k, frozen(v)) for k, v in value.items()))
        if isinstance(value, (list, tuple)):
            return tuple(frozen(v) for v in value)
        return value

    return frozen(shared), frozen(options)


def _groups(records: list) -> dict:
    """{(activation, depth, data set name, optimizer, shared settings): {arm label: [records]}}; the arm
    label is the arm, with its non-default RAI options in parentheses."""
    groups: dict = {}
    for r in records:
        s = {**SPEC_DEFAULTS, **r.job.spec}  # a spec that leaves out the optimizer ran Adam: a KeyError here
        shared, options = _settings(r.job.spec)
        key = (s["activation"], s["hidden_layers"], _dataset_spec(s["dataset"]).get("name"), s["optimizer"], shared)
        arm = s["arm"] + (" (" + ", ".join(f"{k}={v}" for k, v in options) + ")" if options else "")
        groups.setdefault(key, {}).setdefault(arm, []).append(r)
    return groups


def _setting_labels(groups: dict) -> dict:
    """{group key: text naming its settings} where several groups share activation, depth, data set and
    optimizer (the settings that differ between them, e.g. "width=32"); "" where a group is alone."""
    labels = {}
    for key in groups:
        siblings = [k for k in groups if k[:4] == key[:4]]
        if len(siblings) == 1:
            labels[key] = ""
            continue
        mine = _leaves(key[4])
        others = [_leaves(other[4]) for other in siblings]
        differing = sorted(k for k in mine if any(other.get(k) != mine[k] for other in others))
        labels[key] = ", ".join(f"{k}={mine[k]}" for k in differing)
    return labels


def _leaves(frozen: tuple, prefix: str = "") -> dict:
    """A frozen setting as {dotted key: value}: (("optimizer_spec", (("lr", 0.1),)),) -> {"optimizer_spec.lr": 0.1}."""
    out = {}
    for k, v in frozen:
        if isinstance(v, tuple) and v and all(isinstance(i, tuple) and len(i) == 2 and isinstance(i[0], str) for i in v):
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _arm_order(label: str) -> tuple:
    arm = label.split(" (")[0]
    return (ARMS.index(arm) if arm in ARMS else len(ARMS), label)


def _diverged(record: Any) -> bool:
    return record.status == "failed" and "TrainingDivergedError" in (record.error or "")


def _final_losses(records: list) -> tuple[list[float], int]:
    """Final training losses of an arm's seeds, a diverged seed counting as +inf (it lost), and how many diverged.

    Dropping diverged seeds would let an arm that diverged on most seeds win the median on its survivors.
    Seeds that failed otherwise (or are unavailable) measured nothing and are left out."""
    ok = [r.result["final_train_loss"] for r in records if r.status == "ok"]
    n_diverged = sum(_diverged(r) for r in records)
    return ok + [math.inf] * n_diverged, n_diverged


def _median_band(curves: list[list[float]]) -> tuple[list, list, list]:
    n = min(len(c) for c in curves)
    cols = [[c[i] for c in curves] for i in range(n)]
    return [statistics.median(v) for v in cols], [min(v) for v in cols], [max(v) for v in cols]


def report_section(records: list, out_dir: str) -> Any:
    from analysis.report import Section, format_value, line_plot, markdown_table

    mine = [r for r in records if r.job.experiment == "deep_vanilla"]
    if not mine:
        return None
    groups = _groups(mine)
    labels = _setting_labels(groups)
    rows, figures, claims = [], [], []
    for number, key in enumerate(sorted(groups, key=str)):
        act, depth, ds, opt, _ = key
        ds_label = f"{ds} ({labels[key]})" if labels[key] else ds
        series = []
        for arm in sorted(groups[key], key=_arm_order):
            recs = groups[key][arm]
            good = [r for r in recs if r.status == "ok"]
            if not recs:
                continue
            diverged = [r for r in recs if r.status == "failed" and "TrainingDivergedError" in (r.error or "")]
            status = f"{len(diverged)} of {len(recs)} seeds diverged (NaN)" if diverged else "ok"
            if not good:
                rows.append((act, depth, ds_label, opt, arm, 0, status if diverged else recs[0].status, "-", "-", "-"))
                continue
            finals = [r.result["final_train_loss"] for r in good]
            tests = [r.result["final_test_loss"] for r in good if r.result.get("final_test_loss") is not None]
            accs = [r.result["final_test_accuracy"] for r in good if r.result.get("final_test_accuracy") is not None]
            rows.append((act, depth, ds_label, opt, arm, len(good), status,
                         f"{format_value(statistics.median(finals))} [{format_value(min(finals))}, {format_value(max(finals))}]",
                         format_value(statistics.median(tests)) if tests else "-",
                         format_value(statistics.median(accs)) if accs else "-"))
            curves = [r.result["curve"] for r in good]
            med, lo, hi = _median_band([c["train_loss"] for c in curves])
            x = curves[0]["steps"][: len(med)]
            series.append({"x": x, "y": med, "lo": lo, "hi": hi, "label": f"{arm} train"})
            if curves[0]["test_loss"]:
                tmed, _, _ = _median_band([c["test_loss"] for c in curves])
                series.append({"x": x, "y": tmed, "label": f"{arm} held-out", "style": ":", "same_color": True})
        if series and (act == "tanh" or len(groups) <= 8):
            # groups that differ only in their settings would write one file over another
            name = f"deep_vanilla_{act}_{depth}_{ds}_{opt}" + (f"_{number}" if labels[key] else "") + ".png"
            figures.append(line_plot(os.path.join(out_dir, name), series, logy=True,
                                     title=f"{depth}-layer vanilla {act} MLP on {ds_label} ({opt}); median, min-max over seeds",
                                     xlabel="step", ylabel="cross-entropy"))
    # The DKS claim on the 100-layer tanh MLP, for each data set present.
    for key in sorted(groups, key=str):
        act, depth, ds, opt, _ = key
        ds_label = f"{ds} ({labels[key]})" if labels[key] else ds
        if act != "tanh" or depth != max(k[1] for k in groups) or opt != "adam":
            continue
        if labels[key] and not (groups[key].get("dks") and groups[key].get("plain")):
            continue   # an extra setting run for one arm only (plain at another width) is no comparison
        plain_recs = groups[key].get("plain", [])
        plain, n_plain_diverged = _final_losses(plain_recs)
        dks_recs = groups[key].get("dks", [])
        dks, n_dks_diverged = _final_losses(dks_recs)
        # seeds that failed otherwise measured nothing and are left out: say so, the median rests on fewer seeds
        left_out = [f"{arm} {len(recs) - len(losses)}" for arm, recs, losses in
                    (("DKS", dks_recs, dks), ("plain", plain_recs, plain)) if len(recs) > len(losses)]
        prediction = f"{depth}-layer vanilla tanh on {ds_label} ({opt}): DKS arm reaches lower training loss than plain (median over seeds)"
        if plain and dks:
            mp, md = statistics.median(plain), statistics.median(dks)
            claims.append(Claim(prediction, measured=md - mp, tolerance="median(DKS) - median(plain) < 0",
                                passed=md < mp,
                                detail=(f"DKS {md:.4g} over {len(dks)} seeds ({n_dks_diverged} diverged), plain {mp:.4g} "
                                        f"over {len(plain)} seeds ({n_plain_diverged} diverged); a diverged seed counts "
                                        "as loss +inf"
                                        + (f"; seeds that failed with another error, left out: {', '.join(left_out)}"
                                           if left_out else "")),
                                key="dks_beats_plain"))
        else:
            # the arm(s) without a measured seed, each with the reason its first record gives: "no DKS records"
            # was said whatever was missing (a plain arm that failed, next to DKS records that were ok)
            why = "; ".join(
                f"{arm}: " + (next((r.error.splitlines()[0] for r in recs if r.error), f"{len(recs)} records, none ok")
                              if recs else f"no {arm} records")
                for arm, recs, losses in (("DKS", dks_recs, dks), ("plain", plain_recs, plain)) if not losses)
            claims.append(Claim(prediction, measured=None, tolerance="median(DKS) - median(plain) < 0", passed=None,
                                detail=why, key="dks_beats_plain"))
    md = ("Final training loss: median [min, max] over seeds; held-out loss and accuracy: medians. "
          "Arms that could not run are listed with their status.\n\n"
          + markdown_table(("activation", "hidden layers", "data", "optimizer", "arm", "seeds", "status",
                            "train loss", "held-out loss", "held-out acc"), rows))
    return Section("Deep vanilla networks (no skips, no normalisation)", md, tuple(claims), tuple(figures))
