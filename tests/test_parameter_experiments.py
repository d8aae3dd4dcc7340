"""Verification experiments for parameter activations and the DUR-II (analysis/experiments)."""

import json
import math

import pytest

from analysis.experiments.parameter_activation import (
    ConvergenceSpec,
    OneStepSpec,
    convergence_study,
    format_one_step_table,
    format_table,
    one_step_check,
)
from analysis.experiments.regressor import ExtrapolationSpec, extrapolation_experiment, required_exponent
from symact.parametrize import EXTRA_TABLE_ROWS, SEED_TABLE_ROWS


def test_one_step_check_every_row():
    record = one_step_check(OneStepSpec())
    json.dumps(record)
    assert [r["row"] for r in record["rows"]] == list(SEED_TABLE_ROWS + EXTRA_TABLE_ROWS)
    for row in record["rows"]:
        big, small = row["relative_errors"]
        if row["row"] == "identity":
            # g'' = 0: the first-order prediction is exact up to rounding
            assert row["exact"] and big < 1e-9 and small < 1e-9
        else:
            assert not row["exact"]
            assert 5 <= row["ratio"] <= 20, row
            assert small < 0.1  # O(lr): small at lr = 1e-4
        assert row["passed"]
    assert record["all_passed"]
    table = format_one_step_table(record)
    assert table.count("\n") == 1 + len(record["rows"]) and "exact (g'' = 0)" in table


def test_one_step_check_detects_a_wrong_prediction(monkeypatch):
    # Replace r(A) by r(A) * 1.01: the error no longer scales like lr (it is 1e-2 at both step sizes).
    from analysis.experiments import parameter_activation as pa_exp

    real = pa_exp.sympy_to_torch

    def wrong(expr, symbol):
        f = real(expr, symbol)
        return lambda a: 1.01 * f(a)

    monkeypatch.setattr(pa_exp, "sympy_to_torch", wrong)
    record = one_step_check({"rows": ["exp", "square"]})
    assert not record["all_passed"]
    assert all(r["ratio"] < 2 for r in record["rows"])


@pytest.mark.parametrize("bad, match", [
    ({"learning_rates": (float("inf"), 1e-4)}, "learning_rates"),  # every error NaN
    ({"n_features": 0}, "n_features"), ({"n_samples": 0}, "n_samples"),  # every ratio inf
    ({"ratio_bounds": (20.0, 5.0)}, "ratio_bounds"),   # no ratio inside: every non-exact row failed
    ({"ratio_bounds": (5.0,)}, "ratio_bounds"),         # was a bare ValueError from unpacking
    ({"exact_below": float("nan")}, "exact_below"),     # the identity row (g'' = 0, exact) failed
])
def test_one_step_spec_that_would_fail_every_row_is_refused(bad, match):
    """These specs ran and reported all_passed = False, rows failing whatever the maths, so the one-step
    claim (r(A) predicts the step to first order) read as refuted; now they are refused, naming the field."""
    from symact.errors import DomainError

    with pytest.raises(DomainError, match=match):
        one_step_check({"rows": ("exp", "identity"), **bad})
    # lists (as a JSON spec gives them) are still read as the pairs they are
    assert one_step_check({"rows": ("exp",), "ratio_bounds": [5, 20], "learning_rates": [1e-3, 1e-4]})["all_passed"]


SMALL = dict(seeds=2, steps=200, target_scales=(1.0,), noise_levels=(0.0, 0.1), lr_grid=(1e-3, 1e-2, 1e-1),
             n_samples=64)


def test_convergence_study_small_runs_and_is_consistent():
    record = convergence_study(SMALL)
    text = json.dumps(record)  # strict JSON (inf written as a string)
    assert "Infinity" not in text
    cells = record["cells"]
    assert len(cells) == 3 * 2 * 2
    for c in cells:
        assert c["tuned"]["lr"] in SMALL["lr_grid"]
        assert c["fixed"]["runs"] == SMALL["seeds"] and len(c["fixed"]["final_excess"]) == SMALL["seeds"]
        for s in (c["fixed"], c["tuned"]):
            steps = [x for x in s["steps_to_tolerance"] if x is not None]
            assert s["reached"] == len(steps) and all(0 <= x <= SMALL["steps"] for x in steps)
    table = format_table(record)
    assert table.count("\n| ") == len(cells) + 1
    assert "lognormal_plain" in table


def test_convergence_study_plain_noise_free_reaches_least_squares():
    # Independent reference: noise-free plain least squares with a tuned lr must reach the exact solution.
    record = convergence_study(dict(SMALL, methods=("plain",), noise_levels=(0.0,), targets=("equal",), steps=400))
    (cell,) = record["cells"]
    assert cell["tuned"]["reached"] == 2
    assert cell["tuned"]["max_final"] < 1e-8


def test_convergence_spec_rejects_unknown_fields():
    with pytest.raises(TypeError, match="unknown"):
        convergence_study({"stepz": 3})
    assert ConvergenceSpec().lr_grid[0] < ConvergenceSpec().lr_grid[-1]


def test_required_exponent_analysis():
    with_log = required_exponent(("x", "log(x)"))
    assert with_log["representable"]
    assert with_log["coefficients"] == {"1": "1", "x": "0", "log(x)": "1/log(2)"}
    assert not required_exponent(("x",))["representable"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dur2_extrapolates_2x_with_log_readouts(seed):
    record = extrapolation_experiment(ExtrapolationSpec(seed=seed, models=("dur2",), feature_sets=(("x", "log(x)"),)))
    json.dumps(record)
    (res,) = record["results"]
    assert res["max_rel_error"] < 1e-2


def test_dur2_cannot_extrapolate_2x_from_x_alone():
    # the case the analysis rules out: u is affine in x, so y = 2**u leaves 2x by orders of magnitude
    record = extrapolation_experiment({"models": ["dur2"], "feature_sets": [["x"]]})
    (res,) = record["results"]
    assert not record["analysis"][0]["representable"]
    assert res["max_rel_error"] > 1.0 or math.isinf(res["max_rel_error"])


@pytest.mark.parametrize("method", ["plain", "exp", "lognormal_plain"])
def test_convergence_dynamics_match_torch_sgd_on_a_parametrised_linear(method):
    # Independent reference for the vectorised study loop: the same data, init and batches, trained by
    # torch.optim.SGD on nn.Linear (with the exp parametrisation registered for "exp").
    import torch
    from torch import nn

    from analysis.experiments.parameter_activation import _run_group, _targets
    from numeric.parametrizations import parametrize_model

    spec = ConvergenceSpec(seeds=1, steps=30, n_samples=64, batch_size=8, tolerance=1e-30)
    a_star = _targets("two_decades", 1.0, spec.n_features)
    lr = 0.02
    ((_, final),) = _run_group(method, a_star, 0.1, spec, [lr])[lr]

    gen = torch.Generator().manual_seed(1000)  # the study's data stream for seed 0
    d, n = spec.n_features, spec.n_samples
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    clean = x @ a_star
    y = clean + 0.1 * clean.pow(2).mean().sqrt() * torch.randn(n, generator=gen, dtype=torch.float64)
    lognormal = torch.exp(spec.init_log_mean + spec.init_log_std * torch.randn(d, generator=gen, dtype=torch.float64))
    uniform = (torch.rand(d, generator=gen, dtype=torch.float64) * 2 - 1) / d**0.5
    batches = torch.randint(0, n, (spec.steps, spec.batch_size), generator=gen)
    layer = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_((uniform if method == "plain" else lognormal).unsqueeze(0))
    if method == "exp":
        parametrize_model(layer, "exp")
    opt = torch.optim.SGD(layer.parameters(), lr=lr)
    for step in range(spec.steps):
        opt.zero_grad()
        idx = batches[step]
        (((layer(x[idx]).squeeze(-1) - y[idx]) ** 2).mean() / 2).backward()
        opt.step()
    with torch.no_grad():
        solution = torch.linalg.lstsq(x, y.unsqueeze(-1)).solution.squeeze(-1)
        l_star = ((x @ solution - y) ** 2).mean() / 2
        loss = ((layer(x).squeeze(-1) - y) ** 2).mean() / 2
        reference = float((loss - l_star) / ((y**2).mean() / 2))
    assert final == pytest.approx(reference, rel=1e-9)


@pytest.mark.parametrize("bad, match", [
    ({"methods": ("plain", "Exp")}, "methods.*Exp"),          # used to run as lognormal_plain, labelled "Exp"
    ({"targets": ("equals",)}, "targets.*equals"),
    ({"seeds": 0}, "seeds"),                                   # used to end in statistics.StatisticsError
    ({"lr_grid": ()}, "lr_grid"),                              # used to end in min() of an empty sequence
    # empty: no cell at all, and the suite's convergence job passed with no claim
    ({"methods": ()}, "methods is empty"), ({"targets": ()}, "targets is empty"),
    ({"target_scales": ()}, "target_scales is empty"), ({"noise_levels": ()}, "noise_levels is empty"),
])
def test_convergence_spec_rejects_values_that_do_not_exist(bad, match):
    from symact.errors import DomainError

    with pytest.raises(DomainError, match=match):
        convergence_study(dict(SMALL, **bad))


@pytest.mark.parametrize("bad, match", [
    ({"tolerance": 0.0}, "tolerance"),             # never reached: every cell "median not reached"
    ({"tolerance": float("nan")}, "tolerance"),    # ran, then format_table raised a ValueError
    ({"target_scales": (1.0, 0.0)}, "target_scales"),  # y = 0: every run "diverged" (excess loss / 0)
    ({"noise_levels": (float("nan"),)}, "noise_levels"),  # crashed inside torch.linalg.lstsq
    ({"noise_levels": (-0.1,)}, "noise_levels"),
    ({"init_log_std": float("inf")}, "init_log_std"),     # every exp run started at A = inf
    ({"lr_grid": (1e-2, float("inf"))}, "lr_grid"),
])
def test_convergence_spec_rejects_numbers_that_make_every_run_meaningless(bad, match):
    """These specs ran and reported a study of nothing (all "median not reached" or all "diverged"), or
    crashed deep inside torch; now they are refused before any training, naming the field."""
    from symact.errors import DomainError

    with pytest.raises(DomainError, match=match):
        convergence_study(dict(SMALL, **bad))


@pytest.mark.parametrize("bad, match", [({"models": ("dur2", "dur3")}, "models.*dur3"),
                                        ({"feature_sets": (("x", "sqrt(x)"),)}, "sqrt"),
                                        # these gave records of NaN/inf errors, a bare "math domain error" or a
                                        # bare TypeError
                                        ({"train_range": [-1, 10]}, r"reaches x <= 0.*log\(x\) is not real"),
                                        ({"n_train": 0}, "n_train=0 must be a whole number >= 2"),
                                        ({"eval_range": [0, 10]}, "eval_range=.*must be positive"),
                                        ({"model": ["dur2"]}, "no field 'model'; its fields are")])
def test_extrapolation_spec_rejects_unknown_models_and_features_before_training(bad, match):
    from symact.errors import DomainError

    with pytest.raises(DomainError, match=match):
        extrapolation_experiment(bad)


def test_the_tuned_learning_rate_is_chosen_on_seeds_other_than_those_it_is_scored_on(monkeypatch):
    """The tuned lr was the best of the grid on the very seeds reported (optimistically biased).  Now the
    grid runs on tuning seeds and only the fixed and chosen lrs run on the reported seeds; the reported
    tuned numbers equal an independent rerun of the chosen lr on the reported seeds."""
    import analysis.experiments.parameter_activation as pa

    calls = []
    original = pa._run_group

    def spy(method, a_star, noise, spec, lrs, seed_base=pa._EVALUATION_SEED_BASE):
        calls.append((tuple(lrs), seed_base))
        return original(method, a_star, noise, spec, lrs, seed_base)

    monkeypatch.setattr(pa, "_run_group", spy)
    small = dict(SMALL, methods=("plain",), noise_levels=(0.1,), targets=("equal",))
    (cell,) = convergence_study(small)["cells"]
    (tune_lrs, tune_base), (eval_lrs, eval_base) = calls
    assert tune_base != eval_base
    assert set(tune_lrs) == set(SMALL["lr_grid"]) and set(eval_lrs) == {cell["fixed"]["lr"], cell["tuned"]["lr"]}
    rerun = original("plain", pa._targets("equal", 1.0, pa.ConvergenceSpec().n_features), 0.1,
                     pa._spec(pa.ConvergenceSpec, small), [cell["tuned"]["lr"]])[cell["tuned"]["lr"]]
    assert [s for s, _ in rerun] == cell["tuned"]["steps_to_tolerance"]
    assert "held out" in format_table({"spec": dict(pa.ConvergenceSpec().__dict__, **small), "cells": [cell]})


def test_the_convergence_job_without_exp_or_plain_fails_instead_of_claiming_nothing():
    """methods without 'exp' (or 'plain') ran the study and made no claim: an ok job that verified nothing."""
    from analysis.experiments.external import parameter_activation_convergence
    from analysis.records import Job
    from analysis.verify import run_job

    from symact.errors import DomainError

    spec = dict(SMALL, methods=("plain", "lognormal_plain"))
    with pytest.raises(DomainError, match="must include 'exp' and 'plain'"):
        parameter_activation_convergence(spec)
    assert run_job(Job("parameter_activation_convergence", spec))["status"] == "failed"


def test_one_step_ratio_is_the_larger_steps_error_over_the_smaller_in_either_order():
    """(1e-4, 1e-3) gave the ratio 0.1 (smaller over larger) and failed every O(lr) row."""
    fwd = one_step_check({"rows": ("exp", "square"), "learning_rates": (1e-3, 1e-4)})
    rev = one_step_check({"rows": ("exp", "square"), "learning_rates": (1e-4, 1e-3)})
    for a, b in zip(fwd["rows"], rev["rows"]):
        assert a["relative_errors"] == b["relative_errors"][::-1]
        assert b["ratio"] == pytest.approx(a["ratio"], rel=1e-12) and 5 <= b["ratio"] <= 20  # O(lr): ~10
    assert rev["all_passed"]


@pytest.mark.parametrize("bad, match", [({"learning_rates": (1e-3,)}, "two different positive"),    # IndexError
                                        ({"learning_rates": (1e-3, 1e-4, 1e-5)}, "two different"),  # 3rd ignored
                                        ({"learning_rates": (1e-3, 1e-3)}, "two different"),
                                        ({"rows": ()}, "rows is empty")])                          # all_passed True
def test_one_step_spec_rejects_what_it_cannot_check(bad, match):
    from symact.errors import DomainError

    with pytest.raises(DomainError, match=match):
        one_step_check(bad)


def test_format_table_reads_a_record_read_back_from_the_store():
    """records.jsonl stores inf as "inf" and reads it back as a float: the table then printed
    'inf [inf–inf] (0/2)' instead of saying that the median did not reach the tolerance."""
    from analysis.records import from_jsonable

    record = convergence_study(dict(SMALL, methods=("plain",), noise_levels=(0.0,), targets=("equal",), steps=2))
    assert record["cells"][0]["fixed"]["median_steps"] == "inf"
    back = from_jsonable(json.loads(json.dumps(record)))
    assert back["cells"][0]["fixed"]["median_steps"] == math.inf
    assert format_table(back) == format_table(record) and "median not reached (0/2)" in format_table(back)


@pytest.mark.parametrize("exp_steps, plain_steps, shown, passed", [
    (0, 0, None, False),        # a tie at step 0 printed "0.0" (a passing-looking ratio) next to FAIL
    (5, 0, math.inf, False),    # exp slower than an already-converged plain printed 0.0 too
    (math.inf, math.inf, None, False),
    (3, math.inf, 0.0, True),
    (3, 6, 0.5, True),
])
def test_the_convergence_claims_measured_ratio_agrees_with_its_verdict(monkeypatch, exp_steps, plain_steps,
                                                                       shown, passed):
    from analysis.experiments import parameter_activation as pa_mod
    from analysis.experiments.external import parameter_activation_convergence

    def cell(method, steps):
        return {"target": "equal", "scale": 1.0, "noise": 0.0, "method": method,
                "tuned": {"median_steps": steps, "lr": 0.1}}

    monkeypatch.setattr(pa_mod, "convergence_study",
                        lambda spec: {"cells": [cell("exp", exp_steps), cell("plain", plain_steps)]})
    (claim,) = parameter_activation_convergence({})["claims"]
    assert claim.passed is passed
    if shown is None:
        assert math.isnan(claim.measured) and "nothing to compare" in claim.detail
    else:
        assert claim.measured == shown
    assert passed == (claim.measured < 1)  # never a ratio below 1 next to FAIL
