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


def test_records_that_differ_in_width_or_learning_rate_are_not_pooled_as_seeds(tmp_path):
    """The report grouped records by (activation, depth, data set, optimizer) alone: two plain runs at widths
    8 and 32 (or two learning rates) counted as 2 seeds of one run, their median compared with DKS at width 8.
    Now each setting is its own row, named by what differs, and a spec that leaves a key to its default
    joins the one that gives the default."""
    from analysis.experiments.deep_vanilla import OPTIMIZER_DEFAULTS, report_section
    from analysis.records import Job, Record

    spec = {"activation": "tanh", "hidden_layers": 4, "width": 8, "steps": 1, "seed": 0,
            "dataset": {"name": "moons", "n_samples": 40}}

    def record(loss, **changes):
        curve = {"steps": [0, 1], "train_loss": [0.7, loss], "test_loss": [], "objective": [0.7, loss]}
        return Record(Job("deep_vanilla", {**spec, **changes}), "ok",
                      {"curve": curve, "final_train_loss": loss, "final_test_loss": None, "final_test_accuracy": None})

    default_lr = OPTIMIZER_DEFAULTS["adam"]["lr"]
    assert default_lr != 0.125
    records = [record(0.5, arm="dks"), record(0.6, arm="plain"),
               record(0.1, arm="plain", width=32),                                  # another width
               record(0.2, arm="plain", optimizer_spec={"lr": 0.125}),              # another learning rate
               record(0.4, arm="plain", seed=1, optimizer_spec={"lr": default_lr}),  # the default, given
               record(0.3, arm="rai", rai_protocol="seed", penalty=2.0)]            # an RAI option
    section = report_section(records, str(tmp_path))
    rows = [line for line in section.markdown.splitlines() if line.startswith("| tanh")]
    assert len(rows) == 5, section.markdown   # dks, plain (2 seeds), rai (penalty=2.0); width 32; lr x10
    plain = [r for r in rows if "| plain |" in r]
    assert len(plain) == 3 and sum("| 2 |" in r for r in plain) == 1, plain
    assert any("width=32" in r for r in plain) and any("optimizer_spec.lr=0.125" in r for r in plain), plain
    assert any("| rai (penalty=2.0) |" in r for r in rows), rows
    # one DKS claim, of the width-8, default-lr group: DKS 0.5 against the median of 0.6 and 0.4 (2 seeds);
    # the plain-only runs at another setting are no comparison
    (claim,) = section.claims
    assert claim.measured == 0.5 - 0.5 and claim.verdict == "fail", (claim.prediction, claim.measured)
    assert len({f.split("/")[-1] for f in section.figures}) == len(section.figures)
