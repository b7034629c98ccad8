"""User errors on the command line: one line on stderr, no traceback, a non-zero exit.

Every case runs the real `azr-verify` entry point as a subprocess, from a directory that is not
the repository, with a clean AZR_VERIFY_* environment.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .servers import REDIS_SERVER, free_port, require_bwrap

CLI = [sys.executable, "-m", "azr_verify.service.cli"]


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None,
            stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AZR_VERIFY_")}
    clean["AZR_VERIFY_DATA_DIR"] = str(cwd / "data")
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, cwd=cwd,
                          env={**clean, **(env or {})}, timeout=300, check=False)


def one_line_error(result: subprocess.CompletedProcess[bytes]) -> str:
    """The single stderr line of a refused command (asserts the shape)."""
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode != 0, stderr
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize(("env", "expected"), [
    ({"AZR_VERIFY_WORKERS": "abc"}, "AZR_VERIFY_WORKERS='abc'"),
    ({"AZR_VERIFY_WORKERS": "0"}, "AZR_VERIFY_WORKERS='0': Input should be greater"),
    ({"AZR_VERIFY_API_KEYS": "not json"}, "AZR_VERIFY_API_KEYS is not valid JSON"),
    ({"AZR_VERIFY_SANDBOX": "vm"}, "AZR_VERIFY_SANDBOX='vm'"),
    ({"AZR_VERIFY_DEFAULT_TIMEOUT_S": "100"}, "default_timeout_s exceeds max_timeout_s"),
    ({"AZR_VERIFY_ADMIN_KEYS": '["root"]'}, "admin_keys names keys that api_keys does not"),
    ({"AZR_VERIFY_MAX_INFLIGHT_BODY_BYTES": "2048"}, "max_body_bytes exceeds"),
])
@pytest.mark.parametrize("command", [["check", "-"], ["serve"], ["audit", "export"]])
def test_bad_settings_are_one_line(tmp_path: Path, env: dict[str, str], expected: str,
                                   command: list[str]) -> None:
    line = one_line_error(run_cli(command, tmp_path, env, stdin=b""))
    assert line.startswith("azr-verify: error: ") and expected in line


def test_missing_and_unreadable_files_are_one_line(tmp_path: Path) -> None:
    assert "no such file" in one_line_error(run_cli(["check", "missing.jsonl"], tmp_path))
    assert "Is a directory" in one_line_error(run_cli(["check", str(tmp_path)], tmp_path))
    (tmp_path / "in.jsonl").write_text("")
    unwritable = run_cli(["check", "in.jsonl", "-o", "/nonexistent/dir/out.jsonl"], tmp_path)
    assert "/nonexistent/dir/out.jsonl" in one_line_error(unwritable)


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("missing.yaml", None, "no such config file"),
    ("typo.yaml", "run:\n  stepz: 3\n", "unknown key 'run.stepz'"),
    ("top.yaml", "nonsense: 1\n", "unknown key 'nonsense'"),
    ("type.yaml", "run:\n  steps: many\n", "run.steps"),
    ("broken.yaml", "run: [\n", "not valid YAML"),
    ("broken.json", "{", "not valid JSON"),
    ("list.yaml", "- 1\n", "must be a mapping"),
    ("binary.yaml", b"\xff\xfe\x00", "cannot read the config"),
])
def test_bad_train_configs_are_one_line(tmp_path: Path, name: str,
                                        content: str | bytes | None, expected: str) -> None:
    if isinstance(content, str):
        (tmp_path / name).write_text(content)
    elif content is not None:
        (tmp_path / name).write_bytes(content)
    line = one_line_error(run_cli(["train", "--config", name], tmp_path))
    assert line.startswith("azr-verify train: error:") and expected in line


def test_train_override_into_a_scalar_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "scalar.yaml").write_text("run: 3\n")
    line = one_line_error(run_cli(["train", "--config", "scalar.yaml", "--steps", "2"],
                                  tmp_path))
    assert "run" in line


def test_worker_without_redis_is_one_line(tmp_path: Path) -> None:
    dead = f"redis://:secret@127.0.0.1:{free_port()}/0"
    line = one_line_error(run_cli(["worker"], tmp_path, {"AZR_VERIFY_REDIS_URL": dead}))
    assert "cannot reach Redis" in line and "AZR_VERIFY_REDIS_URL" in line
    assert "secret" not in line
    line = one_line_error(run_cli(["worker"], tmp_path))
    assert "AZR_VERIFY_REDIS_URL" in line


def test_serve_on_a_busy_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_line_error(run_cli(["serve", "--port", str(port)], tmp_path))
    assert f"cannot listen on 127.0.0.1:{port}" in line


def test_missing_sandbox_dependencies_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text(json.dumps({"program": "def f(a): return a",
                                                   "input": "1"}) + "\n")
    no_bwrap = run_cli(["check", "in.jsonl"], tmp_path, {"PATH": str(tmp_path)})
    assert "bubblewrap" in one_line_error(no_bwrap)
    no_docker = run_cli(["check", "in.jsonl", "--backend", "docker"], tmp_path,
                        {"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    assert "Docker daemon" in one_line_error(no_docker)


def test_audit_export_from_another_directory_says_where_it_looked(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    line = one_line_error(run_cli(["audit", "export"], elsewhere))
    assert f"no audit database at {elsewhere / 'data' / 'audit.sqlite3'}" in line
    assert not (elsewhere / "data").exists()  # nothing was created
    help_text = run_cli(["audit", "export", "--help"], elsewhere,
                        {"XDG_DATA_HOME": str(tmp_path / "xdg")}).stdout.decode()
    assert str(tmp_path / "xdg" / "azr-verify") in " ".join(help_text.split()).replace("- ", "-")


def test_audit_export_of_an_unreachable_service_is_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    line = one_line_error(run_cli(["audit", "export", "--url", url], tmp_path,
                                  {"AZR_VERIFY_API_KEY": "k"}))
    assert f"cannot read the audit log of {url}" in line


def test_unknown_verdict_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(run_cli(["audit", "export", "--verdict", "nope"], tmp_path))
    assert "unknown verdict 'nope'" in line


def deep_json(depth: int) -> bytes:
    return b'{"program": "def f(a): return a", "input": "1", "meta": ' + b"[" * depth + \
        b"]" * depth + b"}"


def test_every_bad_jsonl_line_is_a_syntax_error_and_the_run_goes_on(tmp_path: Path) -> None:
    require_bwrap()
    good = json.dumps({"id": "good", "program": "def f(a):\n    return a + 1", "input": "1",
                       "output": "2"}).encode()
    lines = [
        good,
        deep_json(50_000),                                        # 2: nested too deeply
        b'{"program": "def f(a): return a", "input": "1", "id": "\xff\xfe"}',  # 3: not UTF-8
        b'{"program": "def f(a):\x00 return a", "input": "1"}',   # 4: a raw NUL in a string
        b"\x00\x00\x00",                                          # 5: NUL bytes
        b'{"id": ' + b"9" * 100_000 + b', "program": "x", "input": "1"}',  # 6: huge number
        json.dumps({"id": "deep-input", "program": "def f(a): return a",
                    "input": "[" * 50_000 + "]" * 50_000}).encode(),  # 7: per-item syntax
        json.dumps({"id": "digits", "program": "def f(a): return a",
                    "input": "9" * 100_000}).encode(),            # 8
        json.dumps({"id": "deep-output", "program": "def f(a): return a", "input": "1",
                    "output": "(" * 50_000 + ")" * 50_000}).encode(),  # 9
        good,
    ]
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    result = run_cli(["check", "in.jsonl", "-o", "out.jsonl", "-q", "--workers", "2"],
                     tmp_path)
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 0, stderr
    assert "Traceback" not in stderr
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [row["verdict"] for row in rows] == ["accepted"] + ["syntax_error"] * 8 + \
        ["accepted"]
    for number, row in enumerate(rows[1:6], start=2):
        assert row["error"].startswith(f"line {number}: "), row
    assert "nested too deeply" in rows[1]["error"]
    assert "not UTF-8" in rows[2]["error"]
    assert "nested more than 200 levels" in rows[6]["error"]
    assert "100000 digits" in rows[7]["error"]
    assert "output is not a literal" in rows[8]["error"]
    assert "10 triples" in stderr


def test_redis_cli_finds_redis(tmp_path: Path) -> None:
    """The worker error above is about Redis being down, not about redis-server missing."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    assert Path(REDIS_SERVER).exists()
