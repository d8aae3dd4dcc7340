"""RAI experiments on the seed's setting (``001_67e87bf23c251bf9.txt``).

Setting: moons (n=100, noise 0.1, as scikit-learn's make_moons), an MLP
(2, 100, ..., 100, 1) with 100 hidden layers (101 linear layers), sigmoids
everywhere (the output too), binary cross-entropy, full-batch Rprop with lr 0.1.

Predictions checked:

* ``rai_init``: the RAI objective at initialisation equals the plain loss (the
  auxiliary tensors start at the forward pass, so every consistency term is 0);
* ``rai_train`` arm ``plain``: the plain network stays within 1e-3 of ln 2 (the
  input's influence vanishes through 100 sigmoid layers, so the best it can do
  is a constant output 1/2 on balanced classes);
* ``rai_train`` arm ``rai``: the true network trained with RAI reaches a training
  loss below 0.05.

Usable from Python::

    >>> from analysis.experiments.rai import rai_init
    >>> rec = rai_init({"hidden_layers": 3, "width": 8})
    >>> rec["claims"][0].verdict
    'pass'
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable

from analysis.records import Claim, Job
from analysis.verify import register

__all__ = ["rai_init", "rai_train", "jobs", "report_section", "SEED_SETTING"]

SEED_SETTING = {"n_samples": 100, "noise": 0.1, "hidden_layers": 100, "width": 100, "optimizer": "rprop", "lr": 0.1}
LN2 = math.log(2.0)


def _setup(spec: dict, device: str) -> tuple:
    import torch

    from numeric.datasets import moons
    from numeric.train import build_mlp

    dtype = torch.float64 if spec.get("dtype") == "float64" else torch.float32
    data = moons(spec.get("n_samples", 100), noise=spec.get("noise", 0.1), seed=spec.get("data_seed", 0))
    x, y, _, _ = data.torch(dtype, device)
    torch.manual_seed(int(spec.get("seed", 0)))
    model = build_mlp(2, spec.get("width", 100), spec.get("hidden_layers", 100), 1, "sigmoid",
                      output_activation="sigmoid", dtype=dtype, device=device)
    return model, x, y


@register("rai_init")
def rai_init(spec: dict, *, device: str = "cpu", progress: Callable | None = None) -> dict:
    """Plain loss vs RAI objective at initialisation (float64)."""
    import torch

    from numeric.rai import RAI
    from numeric.train import output_loss

    spec = {**SEED_SETTING, "dtype": "float64", **spec}
    model, x, y = _setup(spec, device)
    with torch.no_grad():
        plain = float(output_loss(model(x), y, "bce_prob"))
        rai = RAI(model, x, loss="bce_prob", penalty=spec.get("penalty", 1.0))
        parts = rai.loss_parts(torch.arange(len(x), device=x.device), x, y)
    diff = abs(float(parts.total) - plain)
    claim = Claim(
        "RAI loss at initialisation equals the plain loss",
        measured=diff,
        tolerance="|RAI - plain| <= 1e-12 (float64)",
        passed=diff <= 1e-12,
        detail=f"plain={plain:.15g}, rai={float(parts.total):.15g}, consistency={float(parts.consistency):.3g}",
        key="rai_init",
    )
    return {"plain_loss": plain, "rai_loss": float(parts.total), "consistency": float(parts.consistency),
            "claims": [claim]}


@register("rai_train")
def rai_train(spec: dict, *, device: str = "cpu", progress: Callable | None = None) -> dict:
    """Train the seed's network plainly (``arm="plain"``) or with RAI (``arm="rai"``); record curves and claims."""
    from numeric.rai import RAI, PenaltySchedule
    from numeric.train import train

    spec = {**SEED_SETTING, **spec}
    arm = spec.get("arm", "plain")
    steps = int(spec.get("steps", 1000))
    model, x, y = _setup(spec, device)
    common = dict(loss="bce_prob", optimizer=spec["optimizer"], lr=spec["lr"], steps=steps,
                  eval_every=int(spec.get("eval_every", max(1, steps // 100))), seed=int(spec.get("seed", 0)),
                  batch_size=spec.get("batch_size"), progress=progress)
    if arm == "plain":
        result = train(model, (x, y), **common)
    elif arm == "rai":
        rai = RAI(model, x, loss="bce_prob", penalty=PenaltySchedule.from_spec(spec.get("penalty", 1.0)))
        result = train(rai, (x, y), objective=rai.objective, **common)
    else:
        raise ValueError(f"rai_train arm must be 'plain' or 'rai', got {arm!r}")
    final = result.final_train_loss
    label = f"{spec['hidden_layers']}-hidden-layer sigmoid MLP, {steps} Rprop steps"
    if arm == "plain":
        # "Stays at ln 2": it never learns below ln 2 and ends there (the best constant output).
        dev = max(abs(final - LN2), LN2 - min(result.train_loss))
        claim = Claim(f"plain {label}: training loss stays within 1e-3 of ln 2", measured=dev,
                      tolerance="max(|final - ln 2|, ln 2 - min loss) <= 1e-3", passed=dev <= 1e-3,
                      detail=f"final loss {final:.6f}, ln 2 = {LN2:.6f}", key="rai_plain_ln2")
    else:
        claim = Claim(f"RAI {label}: true-network training loss below 0.05", measured=final,
                      tolerance="final loss < 0.05", passed=final < 0.05,
                      detail=f"final accuracy {result.train_accuracy[-1]:.3f}, objective {result.objective[-1]:.4g}",
                      key="rai_train_below")
    return {"arm": arm, "curve": result.to_dict(), "final_train_loss": final,
            "final_train_accuracy": result.train_accuracy[-1], "claims": [claim]}


def jobs(level: str) -> list[Job]:
    """The RAI jobs: init check always; training at the seed's setting, shorter below ``full``."""
    out = [Job("rai_init", {"seed": s, **({"hidden_layers": 10} if level == "tiny" else {})})
           for s in ((0,) if level == "tiny" else (0, 1))]
    if level == "tiny":
        base = {"hidden_layers": 10, "width": 16, "steps": 20, "penalty": 1.0}
    elif level == "quick":
        base = {"steps": RAI_QUICK_STEPS, "penalty": 1.0}
    else:
        base = {"steps": RAI_FULL_STEPS, "penalty": 1.0}
    out += [Job("rai_train", {**base, "arm": arm, "seed": 0}) for arm in ("plain", "rai")]
    return out


RAI_QUICK_STEPS = 300
RAI_FULL_STEPS = 2000


def report_section(records: list, out_dir: str) -> Any:
    from analysis.report import Section, line_plot, markdown_table

    mine = [r for r in records if r.job.experiment in ("rai_init", "rai_train") and r.status == "ok"]
    if not mine:
        return None
    train_recs = [r for r in mine if r.job.experiment == "rai_train"]
    figures = []
    if train_recs:
        series = []
        for r in train_recs:
            c = r.result["curve"]
            series.append({"x": c["steps"], "y": c["train_loss"],
                           "label": f"{r.result['arm']} (true network, {r.job.spec.get('hidden_layers', 100)} hidden)"})
            if r.result["arm"] == "rai":
                series.append({"x": c["steps"], "y": c["objective"], "label": "rai objective", "style": "--"})
        figures.append(line_plot(os.path.join(out_dir, "rai_training.png"), series,
                                 title="RAI vs plain backprop, deep sigmoid MLP on moons (Rprop lr 0.1)",
                                 xlabel="Rprop step", ylabel="training BCE", logy=True, hline=LN2))
    rows = [(r.job.id, r.job.spec.get("arm", "init"), r.job.spec.get("hidden_layers", 100), r.job.spec.get("steps", 0),
             r.result.get("final_train_loss", r.result.get("rai_loss")), r.result.get("final_train_accuracy", "-"))
            for r in mine]
    md = ("Seed setting: moons n=100 noise 0.1; 101 linear layers of width 100 with sigmoids; "
          "full-batch Rprop lr 0.1; consistency weight 1 (Rprop is sign-based, so the weight only "
          "balances the last layer's two terms). Dashed line: ln 2.\n\n"
          + markdown_table(("job", "arm", "hidden layers", "steps", "final loss", "final accuracy"), rows))
    return Section("Relaxed activation identity (RAI)", md, (), tuple(figures))
