"""analysis.experiments.deep_vanilla: the per-layer shaping fallback's leaky-ReLU TAT slope."""

import math
import re

import pytest

from analysis.experiments.deep_vanilla import _leaky_relu_tat_slope
from analysis.records import ExperimentUnavailable


def _one_layer_c(c, a):
    """Leaky-ReLU C map written out independently (Cho & Saul arc-cosine kernel, normalised by (1 + a^2)/2)."""
    relu = (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / (2 * math.pi)
    return (a * a * c + a * (1 - a) * c + (1 - a) ** 2 * relu) / ((1 + a * a) / 2)


def _composed(a, depth):
    c = 0.0
    for _ in range(depth):
        c = _one_layer_c(c, a)
    return c


@pytest.mark.parametrize("depth, eta", [(100, 0.9), (50, 0.9), (20, 0.5)])
def test_leaky_relu_tat_slope_meets_the_composed_c0_target(depth, eta):
    """The bisection assumed C(0) grows with the slope; it falls (a = 1 is linear, C(0) = 0), so at
    depth 100 it declared TAT infeasible and at feasible depths converged to a ~ 1 (C(0) ~ 0)."""
    assert _composed(0.0, depth) > eta > _composed(0.99, depth)  # ReLU above the target, near-linear below
    a = _leaky_relu_tat_slope(_one_layer_c, depth, eta)
    assert 0.0 < a < 1.0
    assert _composed(a, depth) == pytest.approx(eta, abs=1e-9)


def test_leaky_relu_tat_slope_is_infeasible_when_even_relu_stays_below_the_target():
    # four ReLU layers: composed C(0) = 0.68 < 0.9, and every slope a > 0 gives less
    assert _composed(0.0, 4) < 0.9
    with pytest.raises(ExperimentUnavailable, match="even ReLU"):
        _leaky_relu_tat_slope(_one_layer_c, 4, 0.9)


@pytest.mark.parametrize("override, match", [
    ({"optimizer": "lbfgs"}, r"optimizer 'lbfgs' is not one of"),
    ({"arm": "rai", "rai_protocol": "x"}, r"rai_protocol 'x' is not one of"),
    ({"steps": 2.5}, r"steps must be a whole number"),
    # int() ran these as width 4, 2 hidden layers, seed 1 and eval_every 1, under the spec given
    ({"width": 4.5}, r"width must be a whole number >= 1, got 4.5"),
    ({"hidden_layers": 2.5}, r"hidden_layers must be a whole number >= 1, got 2.5"),
    ({"hidden_layers": 0}, r"hidden_layers must be a whole number >= 1, got 0"),
    ({"seed": 1.5}, r"seed must be a whole number >= 0, got 1.5"),
    ({"eval_every": 1.5}, r"eval_every must be a whole number >= 1, got 1.5"),
])
def test_bad_deep_vanilla_specs_are_refused_before_training(override, match):
    """An unknown optimizer or RAI protocol raised a bare KeyError; steps=2.5 silently ran 2 steps."""
    from analysis.experiments.deep_vanilla import deep_vanilla
    from symact.errors import DomainError

    spec = {"activation": "tanh", "hidden_layers": 2, "width": 4, "arm": "plain", "steps": 2,
            "dataset": {"name": "moons", "n_samples": 20, "test_fraction": 0.5}}
    with pytest.raises(DomainError, match=match):
        deep_vanilla({**spec, **override})


def test_the_report_groups_jobs_that_leave_spec_fields_to_their_defaults(tmp_path):
    """A job spec without "optimizer" (the doctest's) ran with Adam, but the report section read
    spec["optimizer"] and failed with KeyError: the DKS claim was never judged (a failed section)."""
    from analysis.records import Job
    from analysis.verify import run_suite

    spec = {"activation": "tanh", "hidden_layers": 3, "width": 8, "steps": 3,
            "dataset": {"name": "moons", "n_samples": 40, "test_fraction": 0.5}}
    res = run_suite([Job("deep_vanilla", {**spec, "arm": arm}) for arm in ("plain", "dks")], tmp_path,
                    progress=False)
    assert [r.status for r in res.records] == ["ok", "ok"]
    (row,) = res.summary
    assert row["source"].startswith("Deep vanilla") and "(adam)" in row["prediction"], row
    assert row["verdict"] in ("pass", "fail") and isinstance(row["measured"], float)


@pytest.mark.parametrize("override, unknown", [({"hidden_layer": 2}, "deep_vanilla: unknown spec key(s) ['hidden_layer']"),
                                               ({"optimizer_spec": {"learning_rate": 0.1}},
                                                "deep_vanilla optimizer_spec: unknown spec key(s) ['learning_rate']")])
def test_a_misspelt_deep_vanilla_key_is_refused(override, unknown):
    """"hidden_layer": 2 trained the default 100 hidden layers, and optimizer_spec {"learning_rate": 0.1} the
    default lr 3e-4, each record showing the spec as given."""
    from analysis.experiments.deep_vanilla import deep_vanilla
    from symact.errors import DomainError

    spec = {"activation": "tanh", "width": 4, "arm": "plain", "steps": 2,
            "dataset": {"name": "moons", "n_samples": 20, "test_fraction": 0.5}}
    with pytest.raises(DomainError, match=re.escape(unknown)):
        deep_vanilla({**spec, **override})


def test_an_unjudged_dks_claim_names_the_arm_that_is_missing(tmp_path):
    """With every plain seed failed (not diverged) and the DKS seeds ok, the claim's detail read "no DKS
    records": the reason pointed at the arm that was there."""
    from analysis.experiments.deep_vanilla import report_section
    from analysis.records import Job, Record

    spec = {"activation": "tanh", "hidden_layers": 4, "width": 8, "steps": 1, "optimizer": "adam", "seed": 0,
            "dataset": {"name": "moons", "n_samples": 40}}
    curve = {"steps": [0, 1], "train_loss": [0.7, 0.5], "test_loss": [], "objective": [0.7, 0.5]}
    records = [Record(Job("deep_vanilla", {**spec, "arm": "dks"}), "ok",
                      {"curve": curve, "final_train_loss": 0.5, "final_test_loss": None, "final_test_accuracy": None}),
               Record(Job("deep_vanilla", {**spec, "arm": "plain"}), "failed", {}, (), "RuntimeError: out of memory\n...")]
    (claim,) = report_section(records, str(tmp_path)).claims
    assert claim.verdict == "unavailable"
    assert claim.detail == "plain: RuntimeError: out of memory", claim.detail


def test_a_data_set_given_by_name_runs_and_is_reported(tmp_path):
    """numeric.datasets.dataset takes "moons" as well as {"name": "moons"}, but deep_vanilla ran
    dict("moons") (a bare ValueError) and its report section read spec["dataset"]["name"] of the string."""
    from analysis.experiments.deep_vanilla import deep_vanilla, report_section
    from analysis.records import Job, Record

    spec = {"activation": "tanh", "hidden_layers": 2, "width": 4, "arm": "plain", "steps": 2, "dataset": "moons"}
    out = deep_vanilla(dict(spec))
    assert len(out["curve"]["train_loss"]) == 3 and out["final_test_loss"] is None  # moons(): no held-out part
    section = report_section([Record(Job("deep_vanilla", spec), "ok", out)], str(tmp_path))
    assert "| tanh | 2 | moons | adam | plain | 1 | ok |" in section.markdown, section.markdown
