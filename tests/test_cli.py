"""The symact command line, through subprocess, with --json on every subcommand."""

import importlib
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def symact(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "analysis.cli", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=300)


def _has(module, attr):
    try:
        return hasattr(importlib.import_module(module), attr)
    except ImportError:
        return False


def test_help_lists_every_subcommand_and_exit_codes():
    out = symact("--help")
    assert out.returncode == 0
    for cmd in ("derive", "maps", "shape", "codegen", "verify"):
        assert cmd in out.stdout
    assert "Exit codes" in out.stdout


# Each subcommand either works (its backing code is present) or fails with exit code 2 and a
# message naming what is missing; it never prints fake output or a traceback.
CASES = [
    (("derive", "tanh", "--json"), "symact", "activation"),
    (("maps", "tanh", "--dps", "20", "--json"), "analysis", "kernel_maps"),
    (("shape", "tanh", "--graph", "mlp:10", "--method", "dks", "--json"), "analysis", "shape"),
]


@pytest.mark.parametrize("args, module, attr", CASES, ids=[c[0][0] for c in CASES])
def test_subcommands_without_their_backing_code_fail_clearly(args, module, attr):
    if _has(module, attr) and _has("symact", "activation"):
        pytest.skip(f"{module}.{attr} is present; covered by the working-path test")
    out = symact(*args)
    assert out.returncode == 2
    payload = json.loads(out.stdout)
    assert "needs" in payload["message"] and "Traceback" not in out.stderr


def test_codegen_without_its_backing_code_fails_clearly(tmp_path):
    if _has("numeric", "export_module") and _has("symact", "activation"):
        pytest.skip("numeric.export_module is present; covered by the working-path test")
    out = symact("codegen", "tanh", "-o", str(tmp_path / "m.py"), "--json")
    assert out.returncode == 2 and "needs" in json.loads(out.stdout)["message"]
    assert not (tmp_path / "m.py").exists()


@pytest.mark.skipif(not _has("symact", "activation"), reason="needs the Activation core")
def test_derive_json_gives_the_exact_derivative():
    import sympy

    out = symact("derive", "tanh", "--json")
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    x = sympy.Symbol("x", real=True)
    d1 = sympy.sympify(payload["derivatives"][0]["expr"], locals={"x": x})
    assert sympy.simplify(d1 - (1 - sympy.tanh(x) ** 2)) == 0
    assert payload["latex"]


def test_bad_input_exits_2_with_a_message_and_no_traceback(tmp_path):
    out = symact("verify", "--workers", "0", "--out", str(tmp_path), "--no-progress")
    assert out.returncode == 2
    assert "workers must be >= 1" in out.stderr and "Traceback" not in out.stderr
    out = symact("verify", "--level", "tiny", "--only", "nothing-matches", "--out", str(tmp_path), "--json")
    assert out.returncode == 2 and "No jobs match" in json.loads(out.stdout)["message"]


def test_verify_reduced_suite_end_to_end_then_resume(tmp_path):
    out_dir = tmp_path / "run"
    out = symact("verify", "--level", "tiny", "--out", str(out_dir), "--json")
    payload = json.loads(out.stdout)
    # Exit code 1 exactly when a verdict failed or a job failed.
    failed = any(r["verdict"] == "fail" for r in payload["summary"]) or payload["failed_jobs"]
    assert out.returncode == (1 if failed else 0), out.stderr
    records = [json.loads(line) for line in open(out_dir / "records.jsonl")]
    assert len(records) == payload["jobs"] == payload["ran"]
    ok = [r for r in records if r["status"] == "ok"]
    assert {r["experiment"] for r in ok} >= {"rai_init", "rai_train", "deep_vanilla", "kernel_check"}
    for r in ok:
        if r["experiment"] == "deep_vanilla":
            assert isinstance(r["result"]["final_train_loss"], float) and r["result"]["curve"]["train_loss"]
    # Unavailable arms say why instead of showing numbers.
    for r in records:
        if r["status"] == "unavailable":
            assert r["error"] and not r["result"]
    report = (out_dir / "report.md").read_text()
    assert "| prediction |" not in report or "verdict" in report
    assert "RAI loss at initialisation equals the plain loss" in report and "PASS" in report
    pngs = sorted(p.name for p in out_dir.glob("*.png"))
    assert {"rai_training.png", "c_map_collapse_tanh_64.png"} <= set(pngs)
    assert any(p.startswith("deep_vanilla_tanh_4_") for p in pngs)
    for p in pngs:
        assert (out_dir / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({p})" in report
    # Measured numbers are in the summary: the RAI init claim measured |RAI - plain| <= 1e-12.
    init_rows = [r for r in payload["summary"] if r["prediction"].startswith("RAI loss at init")]
    assert init_rows and all(r["measured"] <= 1e-12 and r["verdict"] == "pass" for r in init_rows)
    # Re-running recomputes nothing that finished: only the unavailable/failed jobs run again.
    again = json.loads(symact("verify", "--level", "tiny", "--out", str(out_dir), "--json").stdout)
    assert again["skipped"] == len(ok) and again["ran"] == len(records) - len(ok)
