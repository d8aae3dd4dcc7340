"""analysis.verify / records / report: resumable suite runner, records on disk, report with plots."""

import json
import math
import os
import re
import sys

import pytest
import torch

from analysis.records import Claim, Job, Record, RecordStore
from analysis.verify import run_job, run_suite, suite_jobs
from symact.errors import SymactError

HERE = __name__  # jobs below are referenced as "<this module>:<function>", importable by worker processes


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _log(spec, name):
    with open(os.path.join(spec["dir"], "calls.log"), "a") as fh:
        fh.write(name + "\n")


def square_job(spec, *, device="cpu", progress=None):
    _log(spec, f"square{spec['value']}")
    for i in range(3):
        if progress:
            progress(i + 1, 3)
    v = spec["value"] ** 2
    return {"square": v, "claims": [Claim(f"{spec['value']}^2 is even", v, "v % 2 == 0", v % 2 == 0)]}


_SET_IN_THIS_PROCESS = "imported"  # a test sets it; a forked worker inherits the value, a spawned one imports anew


def inherited_state_job(spec, *, device="cpu", progress=None):
    return {"state": _SET_IN_THIS_PROCESS}


def flaky_job(spec, *, device="cpu", progress=None):
    """Fails on purpose the first time it runs in a folder, works afterwards."""
    _log(spec, "flaky")
    marker = os.path.join(spec["dir"], "flaky.marker")
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("failing on purpose midway through the suite")
    return {"fixed": True}


def interrupting_job(spec, *, device="cpu", progress=None):
    """Behaves like Ctrl-C the first time."""
    _log(spec, "interrupt")
    marker = os.path.join(spec["dir"], "interrupt.marker")
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise KeyboardInterrupt
    return {"resumed": True}


def _calls(d):
    with open(os.path.join(d, "calls.log")) as fh:
        return fh.read().split()


def test_job_ids_are_stable_and_records_round_trip(tmp_path):
    job = Job("x:y", {"a": 1, "b": [1, 2]})
    assert job.id == Job("x:y", {"b": [1, 2], "a": 1}).id != Job("x:y", {"a": 2}).id
    rec = Record(job, "ok", {"v": float("nan"), "t": (1, 2)}, (Claim("p", 1.5, "< 2", True),), "", 0.1)
    store = RecordStore(tmp_path)
    store.append(rec)
    with open(store.path, "a") as fh:
        fh.write('{"id": "torn-by-a-kill", "stat')  # a line cut short by a crash mid-write
    (back,) = store.records()
    assert back.job == job and set(back.result) == {"v", "t"} and back.result["t"] == [1, 2]
    assert isinstance(back.result["v"], float) and math.isnan(back.result["v"])  # written "nan", read back NaN
    assert back.claims[0].verdict == "pass" and back.claims[0].measured == 1.5
    assert store.finished_ids() == {job.id}


def test_non_finite_numbers_round_trip_through_the_store(tmp_path):
    """to_jsonable writes inf/NaN as the strings "inf"/"nan"; they were read back as strings, so a record
    read from records.jsonl differed from the one written (a spec's maximum=inf came back as 'inf')."""
    spec = {"penalty": {"start": 1.0, "maximum": float("inf")}, "low": -math.inf, "name": "x"}
    job = Job("x:y", spec)
    rec = Record(job, "ok", {"v": [math.inf, -math.inf, 0.5], "s": "nan-free text"},
                 (Claim("p", math.inf, "< 1", False),), "", 0.1)
    store = RecordStore(tmp_path)
    store.append(rec)
    (back,) = store.records()
    assert back.job == job and back.job.spec == spec and back.job.id == job.id
    assert back.result == {"v": [math.inf, -math.inf, 0.5], "s": "nan-free text"}
    assert back.claims[0].measured == math.inf and back.claims[0].verdict == "fail"
    assert Job.from_dict(job.to_dict()) == job  # what a worker process gets


def test_a_spec_with_inf_runs_the_same_in_worker_processes(tmp_path):
    """A worker gets its job as JSON: the RAI penalty's maximum=inf arrived as the string 'inf' and the job
    failed with workers=2 (DomainError from PenaltySchedule) while it ran with workers=1; the report's
    arm label then raised on the string ("Unknown format code 'g'"), a failed report section."""
    spec = {"hidden_layers": 3, "width": 4, "steps": 2, "arm": "rai",
            "penalty": {"start": 1.0, "growth": 10.0, "every": 1, "maximum": float("inf")}}
    jobs = [Job("rai_train", spec), Job("rai_init", {"hidden_layers": 3, "width": 4})]
    res = run_suite(jobs, tmp_path / "pool", workers=2, progress=False)
    assert [r.status for r in res.records] == ["ok", "ok"], [r.error for r in res.records]
    one = run_suite(jobs[:1], tmp_path / "one", workers=1, progress=False)
    assert res.records[0].result["final_train_loss"] == one.records[0].result["final_train_loss"]
    assert not any("report section failed" in row["source"] for row in res.summary + one.summary)


def spec_types_job(spec, *, device="cpu", progress=None):
    return {"types": {k: type(v).__name__ for k, v in sorted(spec.items()) if k != "dir"}, "cap": spec["cap"]}


def test_in_process_and_worker_jobs_get_the_same_spec(tmp_path):
    """A worker gets its job as JSON; in this process the spec object itself was passed: a tuple was a tuple
    here and a list there, and a string "inf" a string here and float("inf") there."""
    job = Job(f"{HERE}:spec_types_job", {"sizes": (1, 2), "cap": "inf", "dir": str(tmp_path)})
    seq = run_suite([job], tmp_path / "seq", progress=False, report=False)
    par = run_suite([job, Job(f"{HERE}:square_job", {"value": 1, "dir": str(tmp_path)})], tmp_path / "par",
                    workers=2, progress=False, report=False)
    assert seq.records[0].result == par.records[0].result
    assert seq.records[0].result["types"] == {"cap": "float", "sizes": "list"}


def test_a_record_appended_after_a_torn_line_is_kept(tmp_path):
    """The next append was written onto the torn line's end, so the one line was unreadable and the
    finished record was lost with the torn one (missing from that run's records and report)."""
    store = RecordStore(tmp_path)
    with open(store.path, "w") as fh:
        fh.write('{"id": "torn-by-a-kill", "stat')
    job = Job("x:y", {"a": 1})
    store.append(Record(job, "ok", {"v": 1}, (Claim("p", 0.5, "< 1", True),)))
    assert store.finished_ids() == {job.id} and store.records()[0].claims[0].verdict == "pass"
    store.append(Record(Job("x:y", {"a": 2}), "ok"))  # an intact last line gets no blank line before the next
    assert sum(1 for line in open(store.path) if not line.strip()) == 0 and len(store.raw()) == 2


@pytest.mark.parametrize("line", ['{"loss": 0.5}', "[1, 2]"])
def test_a_records_file_that_holds_no_records_is_a_clear_error(tmp_path, line):
    """A records.jsonl of valid JSON that is not a job record raised KeyError: 'experiment' from resuming."""
    (tmp_path / "records.jsonl").write_text(line + "\n")
    with pytest.raises(SymactError, match="line 1 is not a symact job record"):
        run_suite([Job("x:y", {})], tmp_path, progress=False)


def test_a_failing_job_is_recorded_and_rerun_recomputes_only_it(tmp_path):
    d = str(tmp_path)
    jobs = [Job(f"{HERE}:square_job", {"value": 2, "dir": d}), Job(f"{HERE}:flaky_job", {"dir": d}),
            Job(f"{HERE}:square_job", {"value": 3, "dir": d})]
    first = run_suite(jobs, tmp_path / "out", progress=False)
    assert [r.status for r in first.records] == ["ok", "failed", "ok"]  # the suite went on after the failure
    assert "failing on purpose" in first.records[1].error
    assert len(first.failed_jobs) == 1 and os.path.exists(first.report_path)
    second = run_suite(jobs, tmp_path / "out", progress=False)
    assert [r.status for r in second.records] == ["ok", "ok", "ok"]
    assert second.ran == (jobs[1].id,) and set(second.skipped) == {jobs[0].id, jobs[2].id}
    assert _calls(d) == ["square2", "flaky", "square3", "flaky"]  # nothing finished was recomputed
    # The claim of value 3 (9 is odd) fails and is reported as failing.
    assert [row["verdict"] for row in second.summary] == ["pass", "fail"]
    lines = [json.loads(x) for x in open(os.path.join(tmp_path / "out", "records.jsonl"))]
    assert len(lines) == 4 and lines[0]["result"]["square"] == 4


def test_ctrl_c_keeps_finished_records_and_resuming_skips_them(tmp_path):
    d = str(tmp_path)
    jobs = [Job(f"{HERE}:square_job", {"value": 4, "dir": d}), Job(f"{HERE}:interrupting_job", {"dir": d}),
            Job(f"{HERE}:square_job", {"value": 5, "dir": d})]
    first = run_suite(jobs, tmp_path / "out", progress=False)
    assert first.interrupted and first.report_path is None
    assert [r.job.id for r in first.records] == [jobs[0].id]
    second = run_suite(jobs, tmp_path / "out", progress=False)
    assert not second.interrupted and [r.status for r in second.records] == ["ok", "ok", "ok"]
    assert _calls(d) == ["square4", "interrupt", "interrupt", "square5"]


def test_process_pool_gives_the_same_records_as_sequential(tmp_path):
    d = str(tmp_path)
    jobs = [Job(f"{HERE}:square_job", {"value": v, "dir": d}) for v in range(4)]
    seq = run_suite(jobs, tmp_path / "seq", progress=False, report=False)
    par = run_suite(jobs, tmp_path / "par", workers=2, progress=True, report=False)
    assert [r.result for r in seq.records] == [r.result for r in par.records] == [{"square": v * v} for v in range(4)]


def test_a_pool_spawns_its_workers_where_torch_sees_an_accelerator(tmp_path, monkeypatch):
    """On a GPU machine a CPU suite with workers=2, run after any backward in the same process (a
    notebook's, or pytest's earlier tests), failed every training job with torch's "Unable to handle
    autograd's threading in combination with fork-based multiprocessing": the pool forked, and autograd
    had started its per-device threads.  Such a pool spawns its workers, which then train."""
    import analysis.verify as verify_module

    monkeypatch.setattr(verify_module, "_forked_workers_cannot_train", lambda device: True)
    monkeypatch.setattr(sys.modules[HERE], "_SET_IN_THIS_PROCESS", "set by the test")
    x = torch.ones(3, requires_grad=True)
    (x * x).sum().backward()
    jobs = [Job(f"{HERE}:inherited_state_job", {"n": 1}),
            Job("rai_train", {"hidden_layers": 2, "width": 4, "steps": 2, "arm": "plain"})]
    result = run_suite(jobs, tmp_path / "pool", workers=2, progress=False, report=False)
    assert [r.status for r in result.records] == ["ok", "ok"], [r.error for r in result.records]
    assert result.records[0].result["state"] == "imported"  # a spawned worker, not a forked one


def test_forked_workers_are_kept_without_an_accelerator():
    """Forking stays where it is safe (CI's CPU-only torch): a spawned worker imports torch and SymPy anew."""
    import analysis.verify as verify_module

    sees_accelerator = torch.cuda.is_available() or (
        hasattr(torch, "accelerator") and torch.accelerator.is_available())
    assert verify_module._forked_workers_cannot_train("cpu") == sees_accelerator
    assert verify_module._forked_workers_cannot_train("cuda:0")


def test_run_job_never_raises_on_errors_and_names_unknown_experiments():
    rec = run_job(Job("no_such_experiment", {}))
    assert rec["status"] == "failed" and "Unknown experiment" in rec["error"]


@pytest.mark.parametrize("seed", ["abc", None, 1.5])
def test_a_bad_seed_fails_its_job_and_the_suite_goes_on(tmp_path, seed):
    """The seed was read before run_job's try: "abc" or None raised out of the suite, 1.5 ran as seed 1."""
    d = str(tmp_path)
    jobs = [Job(f"{HERE}:square_job", {"value": 2, "dir": d, "seed": seed}),
            Job(f"{HERE}:square_job", {"value": 3, "dir": d})]
    result = run_suite(jobs, tmp_path / "out", progress=False, report=False)
    assert [r.status for r in result.records] == ["failed", "ok"]
    assert "seed must be a whole number" in result.records[0].error


def test_bad_suite_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(SymactError, match="workers"):
        run_suite([], tmp_path, workers=0)
    with pytest.raises(SymactError, match="device"):
        run_suite([], tmp_path, device="tpu")
    with pytest.raises(SymactError, match="level"):
        suite_jobs("huge")


def test_every_device_torch_runs_on_is_accepted_and_the_others_are_refused(tmp_path):
    """"cpu:0" (a device torch runs on) was refused as "Unknown device 'cpu:0'; use 'cpu' or 'cuda'"."""
    from analysis.verify import check_run_arguments

    for device in ("cpu", "cpu:0"):
        check_run_arguments(1, device)
    assert run_suite([], tmp_path / "a", device="cpu:0", progress=False).records == ()
    refused = ["tpu", "CPU", "cpu:-1", "meta", f"cuda:{torch.cuda.device_count() + 98}"]
    if not torch.cuda.is_available():
        refused.append("cuda")
    for device in refused:
        with pytest.raises(SymactError, match="device"):
            check_run_arguments(1, device)


@pytest.mark.parametrize("workers", [2.5, "2"])
def test_a_fractional_or_text_worker_count_is_refused_before_the_folder_is_made(tmp_path, workers):
    """workers=2.5 passed the "< 1" check, created the folder and raised a bare TypeError in the process pool
    ("'float' object cannot be interpreted as an integer"); "2" a TypeError at "<"."""
    out = tmp_path / "run"
    with pytest.raises(SymactError, match="workers must be >= 1 and a whole number"):
        run_suite([Job("gradient_penalty", {"networks": 1}), Job("gradient_penalty", {"networks": 2})], out,
                  workers=workers, progress=False)
    assert not out.exists()


def test_suites_are_deterministic_and_quick_covers_the_acceptance_claims():
    quick = suite_jobs("quick")
    assert [j.id for j in quick] == [j.id for j in suite_jobs("quick")]
    dv = [j for j in quick if j.experiment == "deep_vanilla"]
    assert {(j.spec["activation"], j.spec["hidden_layers"]) for j in dv} == {("tanh", 100)}
    assert {j.spec["dataset"]["name"] for j in dv} == {"moons", "digits"}
    assert {j.spec["arm"] for j in dv} == {"plain", "dks", "tat", "rai", "resnet"}
    assert {j.spec["seed"] for j in dv} == {0, 1, 2}
    full = suite_jobs("full")
    rai = [j for j in full if j.experiment == "rai_train"]
    assert {j.spec["arm"] for j in rai} == {"plain", "rai"} and all(j.spec["steps"] >= 1000 for j in rai)
    assert {j.spec["activation"] for j in full if j.experiment == "deep_vanilla"} == {
        "tanh", "sigmoid", "softplus", "leaky_relu"}


def test_other_issues_experiments_are_registered_with_claims():
    pytest.importorskip("analysis.penalty")
    rec = run_job(Job("gradient_penalty", {"networks": 5}))
    assert rec["status"] == "ok"
    (claim,) = rec["claims"]
    # The inequality lhs <= rhs must hold on every network: the worst ratio lhs/rhs is at most 1.
    assert claim["verdict"] == "pass" and 0 < claim["measured"] <= 1 + 1e-12
    assert {j.experiment for j in suite_jobs("quick")} >= {
        "parameter_activation_one_step", "parameter_activation_convergence", "gradient_penalty"}


def _check_dks_beats_plain(result):
    assert all(r.status == "ok" for r in result.records)
    claims = [row for row in result.summary if row["prediction"].startswith("100-layer vanilla tanh")]
    assert {("digits" in c["prediction"], "moons" in c["prediction"]) for c in claims} == {(True, False), (False, True)}
    for c in claims:
        assert c["verdict"] == "pass", c
    report = open(result.report_path).read()
    assert "DKS arm reaches lower training loss than plain" in report


def test_dks_beats_plain_on_100_layer_tanh_after_10_steps_one_seed(tmp_path):
    """The acceptance claim's code at a tenth of its length, in the default run: the quick suite's
    100-layer width-64 tanh jobs (Adam at the suite's lr, DKS through analysis.shape(...).to_torch()), DKS
    and plain, seed 0, 10 steps on moons and digits, through run_suite and the report's dks_beats_plain
    claim.  Measured: moons DKS 0.139 vs plain 0.378, digits 0.320 vs 2.081."""
    pytest.importorskip("analysis.shaping")
    pytest.importorskip("sklearn")
    jobs = [Job(j.experiment, {**j.spec, "steps": 10, "eval_every": 10})
            for j in suite_jobs("quick", only=["deep_vanilla"]) if j.spec["arm"] in ("plain", "dks") and j.spec["seed"] == 0]
    assert len(jobs) == 4 and all(j.spec["hidden_layers"] == 100 and j.spec["width"] == 64 for j in jobs)
    _check_dks_beats_plain(run_suite(jobs, tmp_path, workers=1, progress=False))


@pytest.mark.slow
def test_dks_beats_plain_on_100_layer_tanh_on_both_datasets(tmp_path):
    """Acceptance: DKS arm below the plain arm after the same steps, median over 3 seeds, moons and digits.

    Slow (36 s in the parallel run; a ulp-level change to tanh's derivative once flipped the moons verdict
    at Adam lr 1e-3, since replaced by 3e-4, where the margin is 0.53 vs 0.01): covered in the default run by
    test_dks_beats_plain_on_100_layer_tanh_after_10_steps_one_seed (the same jobs, code and claim, shorter)."""
    pytest.importorskip("analysis.shaping")
    pytest.importorskip("sklearn")
    jobs = [j for j in suite_jobs("quick", only=["deep_vanilla"]) if j.spec["arm"] in ("plain", "dks")]
    assert len(jobs) == 12
    result = run_suite(jobs, tmp_path, workers=2, progress=False)
    _check_dks_beats_plain(result)


def test_report_without_matplotlib_keeps_tables_and_says_why(tmp_path, monkeypatch):
    d = str(tmp_path)
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    from analysis.report import line_plot, write_report

    assert line_plot(os.path.join(d, "x.png"), [{"x": [0, 1], "y": [1, 2]}], title="t", xlabel="x", ylabel="y") is None
    rec = Record(Job("rai_train", {"arm": "plain"}), "ok",
                 {"arm": "plain", "curve": {"steps": [0, 1], "train_loss": [0.7, 0.69], "objective": [0.7, 0.69]},
                  "final_train_loss": 0.69, "final_train_accuracy": 0.5}, (Claim("p", 0.001, "t", True),))
    path, rows = write_report([rec], d)
    text = open(path).read()
    assert "matplotlib is not installed" in text and "| p | 0.001 |" in text and "![" not in text
    assert not any(name.endswith(".png") for name in os.listdir(d))


def test_a_measured_value_is_never_printed_as_the_bound_it_passes(tmp_path):
    from analysis.report import summary_table, write_report

    # 4 significant digits would show 0.049996 as "0.05" next to "< 0.05" and a PASS
    claims = (Claim("objective small", 0.049996, "< 0.05", 0.049996 < 0.05),
              Claim("within tolerance", 0.99996, "deviation/tolerance <= 1", True),
              Claim("tiny", 9.99996e-7, "< 1e-06", True),
              Claim("plain", 0.0312, "< 0.05", True))
    rec = Record(Job("rai_train", {"arm": "plain"}), "ok",
                 # 2 steps: the RAI table's steps column (the curve's last step) must not be read as a "| 1 |" here
                 {"arm": "plain", "curve": {"steps": [0, 2], "train_loss": [0.7, 0.69], "objective": [0.7, 0.69]},
                  "final_train_loss": 0.69, "final_train_accuracy": 0.5}, claims)
    path, rows = write_report([rec], str(tmp_path))
    for text in (open(path).read(), summary_table(rows)):
        for shown in ("0.049996", "0.99996", "9.99996e-07", "0.0312"):
            assert shown in text
        assert "| 0.05 |" not in text and "| 1 |" not in text


def test_integers_are_printed_exactly_in_reports():
    """format_value printed ints to 4 significant digits: a width of 10000 as 1e+04, 12345 steps as 1.234e+04."""
    from analysis.report import format_measured, format_value, markdown_table

    assert format_value(10000) == "10000" and format_value(-12345) == "-12345"
    assert format_measured(12345, "< 20000") == "12345"
    assert "| 4000 | 123456 |" in markdown_table(("width", "steps"), [(4000, 123456)])
    # beyond float64's range too: float(10**400) raised OverflowError
    assert format_measured(10**400, "< 1") == str(10**400)


def test_records_take_sympy_values_that_are_not_real_floats():
    """to_jsonable called float() on anything with __float__: SymPy's Symbol, I and zoo raised a bare TypeError
    (so did Job("x", {"act": Symbol("a")})), and Integer(10)**30 became the float 1e30."""
    import sympy

    from analysis.records import to_jsonable

    values = {"symbol": sympy.Symbol("a"), "imaginary": sympy.I, "complex_infinity": sympy.zoo,
              "big": sympy.Integer(10) ** 30, "half": sympy.Rational(1, 2), "infinity": sympy.oo}
    out = json.loads(json.dumps(to_jsonable(values)))
    assert out == {"symbol": "a", "imaginary": "I", "complex_infinity": "zoo", "big": 10**30, "half": 0.5,
                   "infinity": "inf"}
    assert Job("x", {"act": sympy.Symbol("a")}).to_dict()["spec"] == {"act": "a"}


def test_cuda_device_without_cuda_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():  # the error under test only exists without CUDA
        pytest.skip("a CUDA device is present")
    with pytest.raises(SymactError, match="sees no CUDA device"):
        run_suite([Job("rai_init", {"hidden_layers": 2})], tmp_path, device="cuda")


@pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "spawned-pool"])
def test_tiny_suite_runs_on_cuda(tmp_path, workers):
    """Every experiment of the tiny suite on the GPU, in this process and in spawned workers
    (a forked worker cannot initialise CUDA).  Skipped where torch sees no GPU (CI)."""
    if not torch.cuda.is_available():
        pytest.skip("no GPU on this machine")
    result = run_suite(suite_jobs("tiny"), tmp_path, device="cuda", workers=workers, progress=False)
    assert not result.failed_jobs, [(r.job.id, r.error.splitlines()[0]) for r in result.failed_jobs]
    assert {r.status for r in result.records} <= {"ok", "unavailable"}


def test_kernel_check_tanh_extended_map_holds_and_local_map_is_rejected():
    """Untransformed tanh has Q(1) = 0.394: the suite's claims say so, with issue 3's tolerance."""
    import numpy as np

    from analysis.experiments.kernel_check import kernel_check

    res = kernel_check({"activation": "tanh", "depth": 5, "width": 1000, "seeds": 10,
                        "cosines": [0.0, 0.5, 0.9], "check_local": True})
    verdicts = [(c.key, c.verdict) for c in res["claims"]]
    assert verdicts == ([("kernel_extended_map", "pass")] * 3 + [("kernel_q_map", "pass")]
                        + [("kernel_local_map_rejected", "pass")])
    # layer 1 of both predictions is C(c0; 1, 1) = E[tanh(u) tanh(c0 u + sqrt(1-c0^2) w)] / E[tanh(u)^2],
    # here by an independent 200 x 200 Gauss-Hermite rule (converged to ~1e-15 for tanh)
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)
    weights = weights / weights.sum()
    u, w = np.meshgrid(nodes, nodes, indexing="ij")
    q1 = (weights * np.tanh(nodes) ** 2).sum()
    for i, c0 in enumerate(res["cosines"]):
        assert res["predicted_c"][i][0] == res["predicted_c_local"][i][0] == c0
        ref = (np.outer(weights, weights) * np.tanh(u) * np.tanh(c0 * u + np.sqrt(1 - c0 * c0) * w)).sum() / q1
        assert res["predicted_c"][i][1] == pytest.approx(ref, abs=1e-12)
        assert res["predicted_c_local"][i][1] == pytest.approx(ref, abs=1e-12)
    # issue 3: the local maps are off by ~0.06-0.08 at depth 5 for c0 = 0.5, 0.9
    gap = [res["predicted_c"][i][5] - res["predicted_c_local"][i][5] for i in (1, 2)]
    assert all(0.05 < g < 0.1 for g in gap), gap


def test_the_kernel_report_shows_a_nan_deviation_as_nan(tmp_path):
    """The table's dev/tol column took Python's max() of the layers: with a NaN at layer 2 (a prediction or
    measurement that failed) max([0.3, nan]) is 0.3, so a row whose claim FAILED (numpy's max is nan) showed
    0.3 < 1 under "dev/tol extended"."""
    from analysis.experiments.kernel_check import kernel_check, report_section

    spec = {"activation": "tanh", "depth": 2, "width": 16, "seeds": 2, "cosines": [0.5]}
    res = kernel_check(spec)
    claims = res.pop("claims")
    res["deviation_extended"] = [[0.3, math.nan]]
    res["deviation_local"] = [[0.25, math.nan]]
    store = RecordStore(tmp_path)
    store.append(Record(Job("kernel_check", spec), "ok", res, tuple(claims)))
    section = report_section(store.records(), str(tmp_path))
    (row,) = [line for line in section.markdown.splitlines() if line.startswith("| tanh |")]
    assert row.endswith("| nan | nan |"), row


def test_kernel_check_plots_of_one_activation_and_width_do_not_overwrite_each_other(tmp_path):
    """Both jobs wrote c_map_collapse_tanh_16.png: the depth-3 plot replaced the depth-2 one, and the report
    linked one file twice."""
    pytest.importorskip("matplotlib")
    from analysis.experiments.kernel_check import report_section

    specs = [{"activation": "tanh", "depth": d, "width": 16, "seeds": 2, "cosines": [0.5]} for d in (2, 3)]
    records = [Record.from_dict(run_job(Job("kernel_check", s))) for s in specs]
    assert all(r.status == "ok" for r in records)
    section = report_section(records, str(tmp_path))
    assert len(set(section.figures)) == 2 and all((tmp_path / f).is_file() for f in section.figures)
    for rec, fig in zip(records, section.figures):  # each file named after its own job
        assert rec.job.id.removeprefix("kernel_check-") in fig


def test_kernel_check_dks_shaped_tanh_has_identical_local_and_extended_maps():
    """DKS sets Q(1) = 1, so q stays 1 and the local maps are the extended maps."""
    from analysis.experiments.kernel_check import kernel_check

    res = kernel_check({"activation": "tanh", "shaping": "dks", "zeta": 1.5, "depth": 5, "width": 256,
                        "seeds": 3, "cosines": [0.5]})
    assert res["label"] == "tanh_dks"
    assert res["predicted_q"] == pytest.approx([1.0] * 5, abs=1e-9)
    assert res["predicted_c"][0] == pytest.approx(res["predicted_c_local"][0], abs=1e-9)
    # DKS: the 5-layer C map has slope zeta = 1.5 at c = 1, so c drops below c0 yet stays positive
    assert 0 < res["predicted_c"][0][5] < 0.5


def test_entropy_normalisation_job_checks_its_claims():
    # The job's references are independent of the batched solver: the mpmath solve at 30 digits,
    # Newton's residual sequence, and torch's finite-difference gradcheck.
    from analysis.experiments import external  # noqa: F401 - registers the job
    from analysis.records import Job
    from analysis.verify import run_job

    record = run_job(Job("entropy_normalisation", {"rows": 32, "n": 8}))
    assert record["status"] == "ok", record["error"]
    verdicts = {claim["key"]: claim["verdict"] for claim in record["claims"]}
    assert verdicts == {"entropy_target": "pass", "entropy_float64_vs_mpmath": "pass",
                        "entropy_newton": "pass", "entropy_gradient": "pass"}


def test_a_wrong_entropy_gradient_fails_its_claim_instead_of_the_whole_job(monkeypatch):
    """gradcheck raised GradcheckError on a mismatch: the job failed with no claims at all, its three other
    claims (measured fine) lost and the gradient claim's FAIL branch never reached."""
    import numeric.entropy as entropy
    from analysis.experiments.external import entropy_normalisation

    real = entropy.EntropyNormalize

    class WrongGradient(torch.nn.Module):  # the right values, the identity as its Jacobian
        def __init__(self, **kwargs):
            super().__init__()
            self.inner = real(**kwargs)

        def forward(self, x):
            return self.inner(x.detach()) + x - x.detach()

    monkeypatch.setattr(entropy, "EntropyNormalize", WrongGradient)
    claims = {c.key: c for c in entropy_normalisation({"rows": 4, "n": 6})["claims"]}
    assert claims["entropy_gradient"].verdict == "fail" and claims["entropy_gradient"].measured == 0.0
    assert claims["entropy_target"].verdict == "pass"


def test_entropy_normalisation_measures_rows_with_entries_that_underflow_to_zero():
    """n = 3: one of 256 rows needs gamma ~ 500, and an entry of p**gamma underflows to 0; the job measured
    the entropy as -sum(p log p), NaN there, and FAILED the target claim (measured nan) although the row
    met its target to 3e-15.  The entropy is computed independently here with 0 log 0 = 0."""
    from analysis.experiments import external  # noqa: F401 - registers the job
    from analysis.records import Job
    from analysis.verify import run_job

    record = run_job(Job("entropy_normalisation", {"rows": 256, "n": 3}))
    assert record["status"] == "ok", record["error"]
    (target,) = [c for c in record["claims"] if c["key"] == "entropy_target"]
    assert target["verdict"] == "pass" and 0 <= target["measured"] <= 1e-10, target
    # n = 2: the gradient check's rows have 2 entries, and its target 0.5 log 5 was above their log 2 (job failed)
    two = run_job(Job("entropy_normalisation", {"rows": 8, "n": 2}))
    assert two["status"] == "ok" and {c["verdict"] for c in two["claims"]} == {"pass"}, two["error"]


@pytest.mark.parametrize("spec, match", [({"rows": 2.5}, "rows=2.5"), ({"rows": 0}, "rows=0"), ({"n": 1}, "n=1"),
                                         ({"n": 4.7}, "n=4.7"), ({"target_fraction": 1.5}, "target_fraction=1.5"),
                                         ({"target_fraction": 0}, "target_fraction=0")])
def test_entropy_normalisation_refuses_sizes_it_would_truncate_or_cannot_run(spec, match):
    """rows=2.5 ran 2 rows and n=4.7 ran n=4 (int()); rows=0 raised torch's bare 'max(): Expected reduction
    dim' RuntimeError; a target fraction outside (0, 1) failed deep inside the solver."""
    from analysis.experiments.external import entropy_normalisation
    from symact.errors import DomainError

    with pytest.raises(DomainError, match=re.escape(match)):
        entropy_normalisation(spec)


def test_dks_claim_counts_diverged_seeds_as_lost(tmp_path):
    """An arm that diverged on 2 of 3 seeds must not win the median on its one survivor.

    Before the fix diverged seeds were dropped, so DKS (one seed at 0.1, two NaN divergences) 'beat'
    plain (three seeds at 0.5) with a PASS; with +inf for the diverged seeds the DKS median is +inf."""
    from analysis.experiments.deep_vanilla import report_section

    def rec(arm, seed, loss=None):
        spec = {"activation": "tanh", "hidden_layers": 100, "dataset": {"name": "moons"}, "optimizer": "adam",
                "arm": arm, "seed": seed}
        if loss is None:
            return Record(Job("deep_vanilla", spec), "failed",
                          error="TrainingDivergedError: Training diverged at step 3: the objective became nan")
        curve = {"steps": [0, 1], "train_loss": [0.7, loss], "test_loss": [], "objective": [0.7, loss]}
        return Record(Job("deep_vanilla", spec), "ok", {"final_train_loss": loss, "curve": curve})

    records = [rec("plain", s, 0.5) for s in range(3)] + [rec("dks", 0, 0.1), rec("dks", 1), rec("dks", 2)]
    (claim,) = [c for c in report_section(records, str(tmp_path)).claims if c.key == "dks_beats_plain"]
    assert claim.verdict == "fail", claim
    assert "2 diverged" in claim.detail
    # and with only one diverged DKS seed the median is the better of the two survivors: a pass
    records = [rec("plain", s, 0.5) for s in range(3)] + [rec("dks", 0, 0.1), rec("dks", 1, 0.2), rec("dks", 2)]
    (claim,) = [c for c in report_section(records, str(tmp_path)).claims if c.key == "dks_beats_plain"]
    assert claim.verdict == "pass" and claim.measured == pytest.approx(0.2 - 0.5)
    assert "left out" not in claim.detail
    # a seed that failed with another error measured nothing: left out, and the detail says so
    crashed = Record(Job("deep_vanilla", {**records[-1].job.spec, "seed": 3}), "failed", error="RuntimeError: boom")
    (claim,) = [c for c in report_section(records + [crashed], str(tmp_path)).claims if c.key == "dks_beats_plain"]
    assert claim.measured == pytest.approx(0.2 - 0.5) and "another error, left out: DKS 1" in claim.detail


def test_experiment_sections_never_print_a_measured_value_as_the_bound_it_passes(tmp_path):
    """The RAI verdict lines and the kernel-check dev/tol columns printed 0.049996 (< 0.05: held) as
    "0.05" and a dev/tol of 0.99996 (< 1: pass) or 1.00004 (> 1: rejected) as "1"."""
    from analysis.experiments import kernel_check, rai

    curve = {"steps": [0, 1], "train_loss": [0.7, 0.0499996], "objective": [0.7, 0.049996]}
    claims = (Claim("relaxed", 0.049996, "last objective < 0.05", True, key="rai_relaxed_below"),
              Claim("true", 0.0499996, "final loss < 0.05", True, key="rai_train_below"))
    rec = Record(Job("rai_train", {"arm": "rai", "protocol": "seed", "steps": 2, "seed": 0}), "ok",
                 {"arm": "rai", "protocol": "seed", "curve": curve, "final_train_loss": 0.0499996,
                  "final_train_accuracy": 1.0, "relaxed_objective": 0.049996}, claims)
    text = rai.report_section([rec], str(tmp_path)).markdown
    assert "(0.049996;" in text and "(0.0499996," in text and "(0.05" not in text

    res = {"label": "tanh", "cosines": [0.5], "c_mean": [[0.5, 0.4]], "c_std": [[0.0, 0.01]],
           "predicted_c": [[0.5, 0.41]], "predicted_c_local": [[0.5, 0.45]],
           "deviation_extended": [[0.99996]], "deviation_local": [[1.00004]]}
    rec = Record(Job("kernel_check", {"width": 100, "seeds": 2, "depth": 1}), "ok", res)
    last_row = kernel_check.report_section([rec], str(tmp_path)).markdown.splitlines()[-1]
    assert last_row.endswith("| 0.99996 | 1.00004 |"), last_row


def test_failed_claims_are_reported_without_a_report(tmp_path):
    """run_suite(report=False) left the summary empty, so failed_claims said 0 for a failing claim (3^2 is odd)."""
    d = str(tmp_path)
    result = run_suite([Job(f"{HERE}:square_job", {"value": 3, "dir": d})], d, progress=False, report=False)
    assert result.report_path is None
    assert [row["verdict"] for row in result.failed_claims] == ["fail"]
    assert "failed_claims=1" in repr(result)


def test_suite_level_claims_are_judged_without_a_report_too(tmp_path):
    """run_suite(report=False) summed only the jobs' own claims: the deep-vanilla section's "DKS below plain"
    claim, judged only while writing report.md, was left out, so failed_claims read 0 for records whose
    report=True run (same records, nothing re-run) reads 1 failing claim."""
    store = RecordStore(tmp_path / "out")
    jobs = []
    for arm, loss in (("plain", 0.5), ("dks", 0.6)):  # DKS ends above plain: the claim fails
        job = Job("deep_vanilla", {"activation": "tanh", "hidden_layers": 4, "width": 8, "arm": arm, "steps": 1,
                                   "dataset": {"name": "moons", "n_samples": 40}, "optimizer": "adam", "seed": 0})
        curve = {"steps": [0, 1], "train_loss": [0.7, loss], "test_loss": [], "objective": [0.7, loss]}
        store.append(Record(job, "ok", {"curve": curve, "final_train_loss": loss, "final_test_loss": None,
                                        "final_test_accuracy": None}))
        jobs.append(job)
    bare = run_suite(jobs, tmp_path / "out", progress=False, report=False)
    assert bare.ran == () and bare.report_path is None
    assert [(row["prediction"].split(":")[0], row["verdict"]) for row in bare.failed_claims] == [
        ("4-layer vanilla tanh on moons (adam)", "fail")]
    assert not any(tmp_path.glob("out/*.png"))  # no report asked for: its plots are not left behind either
    full = run_suite(jobs, tmp_path / "out", progress=False, report=True)
    assert list(full.summary) == list(bare.summary)


def test_one_step_claim_states_the_bounds_and_learning_rates_it_used():
    """The one-step claim's tolerance text always said "lr=1e-3 and 1e-4 in [5, 20]" whatever the spec."""
    from analysis.experiments.external import parameter_activation_one_step

    out = parameter_activation_one_step({"rows": ["exp"], "ratio_bounds": (3.0, 30.0), "learning_rates": (2e-3, 2e-4)})
    (claim,) = out["claims"]
    assert claim.tolerance == "error ratio between lr=0.002 and 0.0002 in [3, 30], or exact"
    # the verdict follows the bounds it states
    assert claim.passed == (3.0 <= claim.measured <= 30.0)


def test_an_exact_one_step_row_shows_the_number_its_verdict_rests_on():
    """A = W has g'' = 0: its two relative errors are rounding (~1e-13) and their ratio (0.099) was shown
    as the measured value against "in [5, 20], or exact" next to PASS.  The verdict rests on the errors."""
    from analysis.experiments.external import parameter_activation_one_step
    from analysis.report import summary_table

    out = parameter_activation_one_step({"rows": ["identity", "exp"]})
    exact, exp = out["claims"]
    assert exact.passed and exact.measured < 1e-9 and "exact" in exact.tolerance and "[5, 20]" not in exact.tolerance
    assert exp.passed and 5 <= exp.measured <= 20 and "[5, 20]" in exp.tolerance  # an O(lr) row: the ratio
    rows = [{"source": "s", "prediction": c.prediction, "measured": c.measured, "tolerance": c.tolerance,
             "verdict": c.verdict} for c in out["claims"]]
    assert "e-1" in summary_table(rows).splitlines()[2]  # the error, ~1e-13, in scientific notation


@pytest.mark.parametrize("networks", [0, 2.5])
def test_gradient_penalty_on_no_networks_is_not_a_pass(networks):
    """networks=0 checked nothing and the claim passed with measured max ratio 0."""
    from analysis.experiments.external import gradient_penalty

    with pytest.raises(SymactError, match="networks"):
        gradient_penalty({"networks": networks})
    rec = run_job(Job("gradient_penalty", {"networks": networks}))
    assert rec["status"] == "failed" and not rec["claims"]


@pytest.mark.parametrize("bad_lhs, shown", [(1e-12, math.inf), (math.nan, None)])
def test_a_failing_gradient_penalty_never_shows_a_passing_ratio(monkeypatch, bad_lhs, shown):
    """A network with lhs > 0 = rhs (ratio nan before, now inf) or lhs nan was left out of max_ratio: the FAIL
    showed the other networks' largest finite ratio, below 1."""
    import analysis.penalty as penalty
    from analysis.experiments.external import gradient_penalty

    real, calls = penalty.gradient_penalty_inequality, []

    def one_bad(model, x, norm="spectral"):
        res = real(model, x, norm=norm)
        calls.append(res.ratio)
        if len(calls) == 2:
            return penalty.PenaltyInequality(norm, 1.0, (), 0.0, bad_lhs, 0.0, res.tolerance)
        return res

    monkeypatch.setattr(penalty, "gradient_penalty_inequality", one_bad)
    out = gradient_penalty({"networks": 4})
    claim = out["claims"][0]
    assert claim.verdict == "fail" and max(calls) <= 1
    if shown is None:
        assert math.isnan(claim.measured) and math.isnan(out["max_ratio"])
    else:
        assert claim.measured == out["max_ratio"] == shown


def test_the_terminal_summary_wraps_long_claims_instead_of_cutting_them():
    """Cells were cut at 60 characters: the convergence claims of scale 1 and 10 printed identically."""
    from analysis.report import summary_table

    claims = [f"exp-parametrised linear regression reaches tolerance in fewer SGD steps than plain "
              f"(tuned lr; target equal, scale {s}, noise 0.0)" for s in ("1.0", "10.0")]
    rows = [{"source": "conv", "prediction": p, "measured": 0.5, "tolerance": "< 1", "verdict": "pass"} for p in claims]
    text = summary_table(rows)
    squeezed = "".join(text.split())  # wrapping only adds whitespace (the other columns are on each row's first line)
    assert "scale1.0,noise0.0)" in squeezed and "scale10.0,noise0.0)" in squeezed
    assert text.count("noise 0.0)") == 2 and text.count("PASS") == 2
    assert all(len(line) <= 60 + 40 for line in text.splitlines())  # no column wider than its cap


def test_an_experiment_module_with_a_broken_import_is_listed_not_fatal(tmp_path, monkeypatch):
    """Only ModuleNotFoundError was caught: an experiment module whose `from x import name` failed
    (ImportError, e.g. merged without the code it imports) crashed suite_jobs and the report."""
    import sys

    import analysis.verify as verify

    (tmp_path / "va_broken_experiments.py").write_text("from math import no_such_function\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(verify, "EXPERIMENT_MODULES", verify.EXPERIMENT_MODULES + ("va_broken_experiments",))
    monkeypatch.setattr(verify, "_MISSING_MODULES", {})
    try:
        jobs = suite_jobs("tiny")
        assert jobs and "va_broken_experiments" in verify.missing_modules()
        assert "cannot import name 'no_such_function'" in verify.missing_modules()["va_broken_experiments"]
    finally:
        sys.modules.pop("va_broken_experiments", None)


def dying_job(spec, *, device="cpu", progress=None):
    os._exit(3)  # what a worker killed by the OOM killer looks like to the pool


def test_a_worker_that_dies_is_a_clear_error(tmp_path):
    """BrokenProcessPool ('A process in the process pool was terminated abruptly') escaped run_suite,
    a raw traceback from symact verify."""
    d = str(tmp_path)
    jobs = [Job(f"{HERE}:square_job", {"value": 2, "dir": d}), Job(f"{HERE}:dying_job", {})]
    with pytest.raises(SymactError, match="worker process died while running job") as info:
        run_suite(jobs, tmp_path / "out", workers=2, progress=False)
    assert "re-run to resume" in str(info.value)


def test_a_worker_that_dies_exits_1_like_a_failed_job_not_2_like_bad_input(tmp_path, monkeypatch, capsys):
    """The died-worker error is a SymactError, which main() turned into exit 2, the code for bad input."""
    import json as json_mod

    import analysis.verify
    from analysis.cli import main

    monkeypatch.setattr(analysis.verify, "suite_jobs", lambda level, only: [
        Job(f"{HERE}:square_job", {"value": 2, "dir": str(tmp_path)}), Job(f"{HERE}:dying_job", {})])
    code = main(["verify", "--level", "tiny", "--out", str(tmp_path / "out"), "--workers", "2", "--json"])
    assert code == 1
    captured = capsys.readouterr()
    assert json_mod.loads(captured.out)["error"] == "WorkerDiedError"
    assert "worker process died" in captured.err


def test_the_spread_claim_scales_its_range_with_the_width_factor():
    """The 1/sqrt(width) range [1.4, 2.9] is for a 4x wider run (ideal 2); a 16x run (ideal 4) was judged
    against it and failed however well the spread followed 1/sqrt(width)."""
    from analysis.experiments.kernel_check import kernel_check

    out = kernel_check({"activation": "tanh", "depth": 3, "width": 32, "seeds": 10, "spread_width": 512})
    (spread,) = [c for c in out["claims"] if c.key == "kernel_spread"]
    assert spread.tolerance == "in [2.8, 5.8] (ideal 4)"
    assert spread.passed == (2.8 <= spread.measured <= 5.8) and spread.passed
    four = kernel_check({"activation": "tanh", "depth": 2, "width": 16, "seeds": 2, "cosines": [0.5],
                         "spread_width": 64})
    assert [c.tolerance for c in four["claims"] if c.key == "kernel_spread"] == ["in [1.4, 2.9] (ideal 2)"]


@pytest.mark.parametrize("spread_width, holds", [(64, "1 (no shrinking)"), (80, "1 (no shrinking)"),
                                                 (120, "1 (no shrinking)"), (134, "2.09 (1/width)")])
def test_a_spread_claim_that_cannot_fail_is_refused(spread_width, holds):
    """spread_width = width compared a record with itself (ratio 1.0 against [0.7, 1.45]: PASS), and for a
    factor k up to ~2.1 the scaled range held 1 (no shrinking at all) or k (shrinking like 1/width):
    "std of c shrinks like 1/sqrt(width)" passed whatever the spread did."""
    from analysis.experiments.kernel_check import kernel_check
    from symact.errors import DomainError

    with pytest.raises(DomainError, match=re.escape(f"would contain {holds}")):
        kernel_check({"activation": "tanh", "depth": 2, "width": 64, "seeds": 2, "cosines": [0.5],
                      "spread_width": spread_width})
    out = kernel_check({"activation": "tanh", "depth": 2, "width": 64, "seeds": 2, "cosines": [0.5],
                        "spread_width": 136})   # 2.125 x: range [1.02, 2.114] excludes 1 and 2.125
    assert [c.tolerance for c in out["claims"] if c.key == "kernel_spread"] == ["in [1.02, 2.114] (ideal 1.46)"]


def test_a_report_section_that_crashes_is_a_failing_claim(tmp_path, monkeypatch):
    """A section that raised was shown as a heading only: its suite-level claims were never judged,
    yet the summary had no failure, so symact verify exited 0."""
    import types

    import analysis.verify as verify

    def report_section(records, out_dir):
        raise ZeroDivisionError("median of no seeds")

    broken = types.SimpleNamespace(__name__="broken_experiments", report_section=report_section)
    monkeypatch.setattr(verify, "experiment_modules", lambda: [broken])
    d = str(tmp_path)
    result = run_suite([Job(f"{HERE}:square_job", {"value": 2, "dir": d})], tmp_path / "out", progress=False)
    assert [row["verdict"] for row in result.summary] == ["pass", "fail"]
    assert len(result.failed_claims) == 1 and "ZeroDivisionError" in result.failed_claims[0]["measured"]
    assert "ZeroDivisionError: median of no seeds" in open(result.report_path).read()


@pytest.mark.parametrize("bad", [{"depth": 2.5}, {"width": 64.7}, {"seeds": "2"}, {"spread_width": 256.5}])
def test_kernel_check_does_not_truncate_sizes(bad):
    """int() ran depth 2.5 as a depth-2 network and width 64.7 as 64, under a claim naming the spec."""
    from analysis.experiments.kernel_check import kernel_check
    from symact.errors import DomainError

    key = next(iter(bad))
    with pytest.raises(DomainError, match=f"{key}="):
        kernel_check({"activation": "tanh", "depth": 2, "width": 64, "seeds": 2, "cosines": [0.5], **bad})


def test_suite_jobs_only_takes_one_name_as_a_string():
    """only="rai" was iterated letter by letter, and "r", "a", "i" matched nearly every experiment."""
    assert {j.experiment for j in suite_jobs("quick", only="rai")} == {"rai_init", "rai_train"}
    assert suite_jobs("quick", only="rai") == suite_jobs("quick", only=["rai"])


def test_suite_jobs_refuses_an_empty_name():
    """"" (or blanks) is a substring of every experiment name: the filter kept every job."""
    from symact.errors import SymactError

    everything = suite_jobs("quick")
    assert len({j.experiment for j in everything}) > 1
    for only in ("", [""], ["rai", "  "]):
        with pytest.raises(SymactError, match="empty name"):
            suite_jobs("quick", only=only)


@pytest.mark.parametrize("experiment, spec, match", [
    ("gradient_penalty", {"networks": 2, "activations": []}, "activations"),  # was a bare ZeroDivisionError
    ("gradient_penalty", {"networks": 2, "activations": "tanh"}, "activations"),  # cycled the letters t, a, n, h
    ("rai_init", {"hidden_layers": 2, "width": 4, "protocols": []}, "protocols"),  # was a bare IndexError
    ("kernel_check", {"activation": "tanh", "depth": 2, "width": 8, "seeds": 1, "cosines": "0.5"}, "cosines"),
    ("kernel_check", {"activation": "tanh", "depth": 2, "width": 8, "seeds": 1, "cosines": []}, "cosines"),
    ("kernel_check", {"activation": "tanh", "depth": 2, "width": 8, "seeds": 1, "cosines": ["half"]}, "cosines"),
])
def test_empty_or_string_spec_lists_are_refused_naming_the_field(experiment, spec, match):
    import importlib

    module = {"gradient_penalty": "external", "rai_init": "rai", "kernel_check": "kernel_check"}[experiment]
    run = getattr(importlib.import_module(f"analysis.experiments.{module}"), experiment)
    with pytest.raises(SymactError, match=match):
        run(spec)


@pytest.mark.parametrize("experiment, spec, unknown", [
    ("kernel_check", {"activation": "tanh", "depth": 2, "width": 32, "seeds": 2, "cosine": [0.3]}, "cosine"),
    # its networks come from seeds 0..seeds-1: a spec seed changed nothing, under a record naming it
    ("kernel_check", {"activation": "tanh", "depth": 2, "width": 32, "seeds": 2, "seed": 5}, "seed"),
    ("gradient_penalty", {"network": 2}, "network"),
    ("entropy_normalisation", {"rows": 4, "target": 0.3}, "target"),
])
def test_a_misspelt_spec_key_fails_the_job_instead_of_running_the_default(experiment, spec, unknown):
    """kernel_check with "cosine": [0.3] measured the default cosines 0, 0.5, 0.9, and the record (status ok)
    showed the spec with the misspelt key as if it had been run."""
    rec = run_job(Job(experiment, spec))
    assert rec["status"] == "failed" and rec["result"] == {} and rec["claims"] == []
    assert f"unknown spec key(s) ['{unknown}']" in rec["error"], rec["error"]


def test_a_record_measured_on_another_device_kind_runs_again(tmp_path):
    """Records carry no device: "symact verify --device cuda" in the folder of a CPU run skipped every job as
    finished and reported the CPU numbers (float32 networks, another rounding) as the GPU run's."""
    d = str(tmp_path)
    jobs = [Job(f"{HERE}:square_job", {"value": v, "dir": d}) for v in (2, 4, 6)]
    store = RecordStore(tmp_path / "out")
    store.append({**Record(jobs[0], "ok", {"square": 4}).to_dict(), "device": "cuda:0"})  # measured on a GPU
    store.append({**Record(jobs[1], "ok", {"square": 16}).to_dict(), "device": "cpu"})
    legacy = Record(jobs[2], "ok", {"square": 36}).to_dict()
    legacy.pop("device", None)  # a record written before the device was kept: any device
    store.append(legacy)
    result = run_suite(jobs, tmp_path / "out", device="cpu", progress=False, report=False)
    assert result.ran == (jobs[0].id,) and set(result.skipped) == {jobs[1].id, jobs[2].id}
    assert _calls(d) == ["square2"]
    assert [r.device for r in result.records] == ["cpu", "cpu", ""]
    assert run_job(jobs[1], "cpu")["device"] == "cpu"


def threads_job(spec, *, device="cpu", progress=None):
    _log(spec, f"threads{spec['value']}")
    return {"threads_seen": torch.get_num_threads()}


def test_each_job_runs_on_one_torch_thread_whatever_the_worker_count_and_resume_compares_it(tmp_path):
    """With --workers 1 a job ran on torch's default thread count, with --workers 2 on cpu_count // 2; the count
    changes the numbers (a 100-layer tanh net's median loss was 1.46 at 1 thread, 2.27 at 2), so the README's
    command did not repeat its numbers, and resume mixed records of both.  Every job now runs on `threads` (1 by
    default), the record keeps it, resume runs a job again at another count, and the caller's own count is
    restored."""
    d = str(tmp_path)
    jobs = [Job(f"{HERE}:threads_job", {"value": v, "dir": d}) for v in (1, 2)]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for workers, folder in ((1, "a"), (2, "b")):
            result = run_suite(jobs, tmp_path / folder, workers=workers, progress=False, report=False)
            assert [(r.threads, r.result["threads_seen"]) for r in result.records] == [(1, 1), (1, 1)], workers
            assert torch.get_num_threads() == 2
        again = run_suite(jobs, tmp_path / "a", threads=2, progress=False, report=False)
        assert set(again.ran) == {j.id for j in jobs} and [r.threads for r in again.records] == [2, 2]
        assert [r.result["threads_seen"] for r in again.records] == [2, 2]
        assert set(run_suite(jobs, tmp_path / "a", threads=2, progress=False, report=False).skipped) == {
            j.id for j in jobs}
        legacy = Record(jobs[0], "ok", {"threads_seen": 3}).to_dict()
        legacy.pop("threads")  # written before the thread count was kept: any count
        store = RecordStore(tmp_path / "c")
        store.append(legacy)
        assert run_suite(jobs[:1], tmp_path / "c", progress=False, report=False).skipped == (jobs[0].id,)
        with pytest.raises(SymactError, match="threads must be >= 1"):
            run_suite(jobs, tmp_path / "d", threads=0, progress=False, report=False)
    finally:
        torch.set_num_threads(before)


def test_kernel_check_refuses_a_dks_target_without_dks_shaping():
    """zeta without shaping="dks" measured the untransformed activation, under a record naming zeta=2."""
    from analysis.experiments.kernel_check import kernel_check
    from symact.errors import DomainError

    with pytest.raises(DomainError, match=r"zeta=2.0 is the DKS target.*shaping='dks'"):
        kernel_check({"activation": "tanh", "depth": 2, "width": 32, "seeds": 2, "cosines": [0.5], "zeta": 2.0})
