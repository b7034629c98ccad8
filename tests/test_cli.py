"""The `azr-verify` command line, run as a real subprocess."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .guards import assert_executed
from .servers import require_bwrap

CLI = [sys.executable, "-m", "azr_verify.service.cli"]


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, text=True,
                          timeout=180, check=False)


@pytest.fixture(autouse=True)
def _needs_bwrap() -> None:
    require_bwrap()


def test_help_lists_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("check", "bench", "serve", "worker", "audit", "train"):
        assert command in result.stdout
    check_help = run_cli("check", "--help")
    assert "--policy" in check_help.stdout and "--workers" in check_help.stdout


def test_check_jsonl_in_order_with_bad_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "a", "program": "def f(a):\n    return a * 2\n", "input": "21",
                    "output": "42"}),
        "{not json",
        json.dumps({"id": "b", "program": "def f(a):\n    return a\n"}),  # input missing
        json.dumps({"id": "c", "program": "def f(a):\n    return a\n", "input": "[1]",
                    "output": "(1,)"}),
        "",
        json.dumps({"id": "d", "program": "import os\ndef f(a):\n    return 1\n", "input": "1"}),
        json.dumps([1, 2]),
        json.dumps({"id": "e", "program": "def f(a):\n    return a\n", "input": "'x'",
                    "bogus": 1}),
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    result = run_cli("check", str(source), "-o", str(out), "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["verdict"] for row in rows] == [
        "accepted", "syntax_error", "syntax_error", "wrong_output", "unsafe", "syntax_error",
        "syntax_error"]
    assert [row["id"] for row in rows] == ["a", None, "b", "c", "d", None, "e"]
    assert "line 2" in rows[1]["error"] and "line 3" in rows[2]["error"]
    assert "input" in rows[2]["error"] and "bogus" in rows[6]["error"]
    assert rows[4]["violations"][0] == {"rule": "import_denied", "name": "os", "line": 1}
    assert set(rows[0]) >= {"id", "verdict", "output", "error_type", "error", "violations",
                            "duration_ms", "cached"}
    assert "7 triples" in result.stderr and "accepted=1" in result.stderr
    # A new process has an empty cache: the two runnable rows ran in a sandbox.
    assert_executed([rows[0], rows[3]])
    assert rows[0]["output"] == "42" and rows[0]["duration_ms"] > 0


def test_check_reads_stdin_and_policy_flag() -> None:
    line = json.dumps({"program": "import os\ndef f(a):\n    return os.sep\n", "input": "0"})
    strict = run_cli("check", "-", "-q", stdin=line + "\n")
    loose = run_cli("check", "-", "-q", "--policy", "permissive", stdin=line + "\n")
    assert json.loads(strict.stdout)["verdict"] == "unsafe"
    assert json.loads(strict.stdout)["violations"] == [
        {"rule": "import_denied", "name": "os", "line": 1}]
    ran = json.loads(loose.stdout)
    assert ran["duration_ms"] > 0
    assert ran | {"duration_ms": 0} == {
        "id": None, "verdict": "accepted", "output": "'/'", "error_type": None, "error": None,
        "violations": [], "duration_ms": 0, "cached": False, "limits": None}


def test_missing_file_is_a_clear_error() -> None:
    result = run_cli("check", "/nonexistent/in.jsonl")
    assert result.returncode == 2
    assert "no such file" in result.stderr and "Traceback" not in result.stderr


def test_bench_azr_step_runs_a_step_beside_the_reference() -> None:
    result = run_cli("bench", "--workload", "azr-step", "--steps", "1", "--batch", "10",
                     "--naive-helpers", "--workers", "2")
    assert result.returncode == 0, result.stderr
    for side in ("azr-verify, AZR helpers", "azr-verify, naive helpers", "reference executor"):
        assert side in result.stdout
    assert "time / baseline" in result.stdout and "executions" in result.stdout
    assert "azr-verify, AZR helpers: every verdict as planned" in result.stdout
    assert "azr-verify, naive helpers: every verdict as planned" in result.stdout
    # A progress line per phase.
    for phase in ("propose:", "learnability:", "solve:"):
        assert f"step 1/1 azr-verify, AZR helpers: {phase}" in result.stderr
    refused = run_cli("bench", "--workload", "azr-step", "--http")
    assert refused.returncode != 0 and "on its own" in refused.stderr


def test_bench_prints_both_rates_and_ratio() -> None:
    result = run_cli("bench", "--triples", "40", "--baseline-triples", "4", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "engine" in result.stdout and "naive python -c" in result.stdout
    assert "in-process exec, one worker (AZR's)" in result.stdout
    assert "ratio engine / naive python -c per execution" in result.stdout
    assert "ratio engine / in-process exec" in result.stdout
    # What a sandboxed execution cost, from the kernel's accounting of the real children.
    faults = re.search(r"the sandboxed child's (\d+) minor page faults and ([\d.]+) ms",
                       result.stdout)
    assert faults is not None, result.stdout
    assert int(faults[1]) > 0 and float(faults[2]) > 0
