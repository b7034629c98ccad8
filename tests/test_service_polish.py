"""What users of a running `azr-verify serve` expect around the verdicts: access-log lines,
clean JSON logs, the OpenAPI document, audit filters and exports over HTTP, the client's
defaults and errors, `azr-verify check --url`, and the limits a result reports.

One real `azr-verify serve` process (API keys on) serves the module.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from azr_verify.client import (
    AppliedLimits,
    AuthError,
    Client,
    ClientConfig,
    InvalidArgumentError,
    IOPair,
    TransportError,
    Verdict,
)
from azr_verify.service.config import Settings

from .servers import REPO, free_port, require_bwrap, settings_env, wait_until

KEY_NAME, KEY = "ci-trainer", "k-polish-2b7e9d"
RUN = uuid.uuid4().hex[:8]
CLI = [sys.executable, "-m", "azr_verify.service.cli"]


@dataclass
class Served:
    url: str
    log: Path
    process: subprocess.Popen[bytes]

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60,
                            headers={"Authorization": f"Bearer {KEY}"})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    require_bwrap()
    tmp = tmp_path_factory.mktemp("polish")
    port = free_port()
    env = settings_env(Settings(workers=2, data_dir=tmp / "data", api_keys={KEY_NAME: KEY}))
    log = tmp / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen([*CLI, "serve", "--host", "127.0.0.1", "--port", str(port)],
                                   env=env, cwd=REPO, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, 60, "azr-verify serve", interval_s=0.1)
        yield Served(url, log, process)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def _cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, text=True,
                          timeout=180, check=False, env=env, cwd=REPO)


# -- logs ---------------------------------------------------------------------------------


def test_one_access_line_per_request_without_the_key(served: Served) -> None:
    item = {"id": "a", "program": f"def f(x):\n    return x  # {RUN}-log", "input": "1"}
    with served.client() as client:
        assert client.post("/v1/check", json={"items": [item, item, item]}).status_code == 200
        assert client.get("/v1/nothing-here").status_code == 404
    with httpx.Client(base_url=served.url) as anonymous:
        assert anonymous.get("/v1/info").status_code == 401

    def access() -> list[dict[str, Any]]:
        return [e for e in served.lines() if e["logger"] == "azr_verify.access"]

    wait_until(lambda: any(e["status"] == 401 for e in access()), 30, "the access lines")
    lines = access()
    (check,) = [e for e in lines if e["path"] == "/v1/check"]
    assert check["method"] == "POST" and check["status"] == 200 and check["items"] == 3
    assert check["key_name"] == KEY_NAME and check["duration_ms"] > 0
    assert check["message"] == "POST /v1/check 200"
    assert any(e["path"] == "/v1/nothing-here" and e["status"] == 404 for e in lines)
    (refused,) = [e for e in lines if e["status"] == 401]
    assert refused["key_name"] is None
    assert KEY not in served.log.read_text()


def test_json_logs_carry_no_terminal_colours(served: Served) -> None:
    text = served.log.read_text()
    assert "\x1b" not in text and "\\u001b" not in text
    entries = served.lines()  # every line is one JSON object
    assert any("Uvicorn running" in e["message"] for e in entries)
    assert all("color_message" not in e for e in entries)


# -- OpenAPI and docs ---------------------------------------------------------------------


def test_openapi_has_the_key_scheme_tags_operation_ids_and_examples(served: Served) -> None:
    spec = httpx.get(f"{served.url}/openapi.json").json()
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "API key",
        "description": spec["components"]["securitySchemes"]["ApiKey"]["description"]}
    operations = {(path, method): op for path, ops in spec["paths"].items()
                  for method, op in ops.items()}
    ids = {op["operationId"] for op in operations.values()}
    assert {"check", "checkTestcases", "runCode", "submitJob", "getJob", "listAuditRecords",
            "exportAuditRecords", "getInfo", "getLiveness", "getReadiness", "getMetrics"} == ids
    assert {t["name"] for t in spec["tags"]} == {"check", "testcases", "sandbox-fusion", "jobs",
                                                 "audit", "service"}
    assert all(op.get("tags") for op in operations.values())
    assert operations[("/v1/check", "post")]["security"] == [{"ApiKey": []}]
    assert "security" not in operations[("/healthz", "get")]
    for key in (("/v1/check", "post"), ("/v1/jobs", "post")):
        examples = operations[key]["requestBody"]["content"]["application/json"]["examples"]
        assert len(examples) >= 3 and all(e["value"]["items"] for e in examples.values())
    for key in (("/v1/testcases", "post"), ("/run_code", "post")):
        assert operations[key]["security"] == [{"ApiKey": []}]
        examples = operations[key]["requestBody"]["content"]["application/json"]["examples"]
        assert examples and all(e["value"] for e in examples.values())


def test_docs_pages_load_their_assets_from_the_service(served: Served) -> None:
    for page, asset in (("/docs", "/docs-assets/swagger-ui-bundle.js"),
                        ("/redoc", "/docs-assets/redoc.standalone.js")):
        response = httpx.get(f"{served.url}{page}")
        assert response.status_code == 200 and asset in response.text
        assert "cdn." not in response.text and "fonts.googleapis" not in response.text
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert httpx.get(f"{served.url}{asset}").status_code == 200


# -- audit over HTTP ----------------------------------------------------------------------


def test_audit_filters_pages_and_exports(served: Served) -> None:
    items = [{"id": f"{RUN}-u{k}", "program": f"import socket\ndef f(x):\n    return {k}",
              "input": "0"} for k in range(3)]
    items.append({"id": f"{RUN}-r", "program": f"def f(x):\n    return [{RUN!r}][x]",
                  "input": "5"})
    with served.client() as client:
        results = client.post("/v1/check", json={"items": items}).json()["results"]
        assert [r["verdict"] for r in results] == ["unsafe"] * 3 + ["runtime_error"]
        first = client.get("/v1/audit", params={"rule": "import_denied", "q": RUN,
                                                "limit": 2}).json()
        assert [r["item_id"] for r in first["records"]] == [f"{RUN}-u2", f"{RUN}-u1"]
        rest = client.get("/v1/audit", params={"rule": "import_denied", "q": RUN, "limit": 2,
                                               "cursor": first["next_cursor"]}).json()
        assert [r["item_id"] for r in rest["records"]] == [f"{RUN}-u0"]
        assert rest["next_cursor"] is None
        oldest = client.get("/v1/audit", params={"rule": "import_denied", "q": RUN,
                                                 "order": "asc"}).json()
        assert [r["item_id"] for r in oldest["records"]] == [f"{RUN}-u0", f"{RUN}-u1",
                                                             f"{RUN}-u2"]
        errors = client.get("/v1/audit", params={"verdict": "runtime_error", "q": RUN}).json()
        assert [r["item_id"] for r in errors["records"]] == [f"{RUN}-r"]
        export = client.get("/v1/audit/export", params={"q": RUN, "format": "jsonl"})
        assert export.status_code == 200
        assert export.headers["content-type"].startswith("application/x-ndjson")
        exported = [json.loads(line)["item_id"] for line in export.text.splitlines()]
        assert exported == [i["id"] for i in items]  # oldest first
        assert client.get("/v1/audit", params={"q": "***"}).status_code == 422
        assert client.get("/v1/audit", params={"cursor": "x"}).status_code == 422


def test_a_long_program_is_audited_as_an_excerpt_the_console_names(served: Served) -> None:
    program = f"import socket\ndef f(x):\n    return x  # {RUN}-long\n" + "# pad\n" * 1000
    with served.client() as client:
        [result] = client.post("/v1/check", json={"items": [
            {"id": f"{RUN}-long", "program": program, "input": "0"}]}).json()["results"]
        assert result["verdict"] == "unsafe"
        [record] = client.get("/v1/audit", params={"q": f"{RUN} long"}).json()["records"]
        assert record["truncated"] == ["program"] and record["program_chars"] == len(program)
        assert len(record["program"]) == 2048 and program.startswith(record["program"])
        item = client.get(f"/console/items/{record['id']}")
    assert item.status_code == 200
    assert f"the first 2048 of {len(program)} characters" in item.text
    assert 'id="truncated"' in item.text


# -- the client ---------------------------------------------------------------------------


def test_client_reads_the_environment_by_default(served: Served,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZR_VERIFY_URL", served.url)
    monkeypatch.setenv("AZR_VERIFY_API_KEY", KEY)
    with Client() as client:
        assert client.info().mode == "embedded"
        # Hidden induction pairs as plain (input, output) tuples.
        assert client.check_induction("def f(x):\n    return x * 2", [("1", "2"), ("3", "6")])
        assert client.check_induction("def f(x):\n    return x * 2",
                                      [IOPair("1", "2"), {"input": "2", "output": "4"}])
        with pytest.raises(InvalidArgumentError, match="hidden pair"):
            client.check_induction("def f(x):\n    return x", [("1",)])  # type: ignore[list-item]
        with pytest.raises(InvalidArgumentError, match="unknown verdict 'bogus'"):
            client.audit(verdict="bogus")
        records = client.audit(verdict=Verdict.UNSAFE, rule="import_denied", text=RUN)
        assert all(r.id for r in records)


def test_client_errors_name_the_url(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZR_VERIFY_API_KEY", raising=False)
    with Client(served.url) as client, pytest.raises(AuthError) as denied:
        client.info()
    assert f"GET {served.url}/v1/info" in str(denied.value) and denied.value.status == 401
    dead = f"http://127.0.0.1:{free_port()}"
    with Client(config=ClientConfig(base_url=dead, max_retries=0)) as client, \
            pytest.raises(TransportError) as refused:
        client.info()
    assert f"GET {dead}/v1/info" in str(refused.value) and refused.value.url


def test_a_clamped_limit_is_reported(served: Served) -> None:
    program = f"def f(x):\n    return x  # {RUN}-limits"
    with Client(served.url, api_key=KEY) as client:
        asked, plain = client.check([
            {"program": program, "input": "1", "timeout_s": 999, "memory_mb": 64},
            {"program": program, "input": "2"}])
    assert asked.verdict is Verdict.ACCEPTED
    assert asked.limits == AppliedLimits(timeout_s=30.0, memory_mb=64, output_limit_chars=10_000,
                                         determinism_runs=2)
    assert plain.limits is None


# -- the CLI against the service ----------------------------------------------------------


def _triples() -> str:
    rows = [{"id": 1, "program": "def f(x):\n    return x + 1", "input": "1", "output": "2"},
            {"id": 2, "program": "import os\ndef f(x):\n    return 1", "input": "1"},
            "{broken",
            {"id": 4, "program": "def f(x):\n    return 1 // x", "input": "0"}]
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n"


def test_check_url_gives_the_same_output_as_a_local_check(served: Served) -> None:
    remote = _cli("check", "-", "-q", "--url", served.url, "--api-key", KEY, stdin=_triples())
    local = _cli("check", "-", "-q", "--workers", "2", stdin=_triples())
    assert remote.returncode == 0 == local.returncode, remote.stderr + local.stderr

    def stable(text: str) -> list[dict[str, Any]]:
        return [json.loads(line) | {"duration_ms": 0, "cached": False}
                for line in text.splitlines()]

    assert stable(remote.stdout) == stable(local.stdout)
    assert [r["verdict"] for r in stable(remote.stdout)] == [
        "accepted", "unsafe", "syntax_error", "runtime_error"]
    assert remote.stderr.strip().endswith(local.stderr.strip().splitlines()[-1])


def test_check_summary_and_fail_on(served: Served, tmp_path: Path) -> None:
    env = settings_env(Settings()) | {"AZR_VERIFY_API_KEY": KEY}
    summary = _cli("check", "-", "-q", "--url", served.url, "--summary", stdin=_triples(),
                   env=env)
    assert summary.returncode == 0, summary.stderr
    assert json.loads(summary.stdout) == {"triples": 4, "verdicts": {
        "accepted": 1, "runtime_error": 1, "syntax_error": 1, "unsafe": 1}}
    failing = _cli("check", "-", "-q", "--url", served.url, "--summary", "--fail-on",
                   "unsafe,timeout", stdin=_triples(), env=env)
    assert failing.returncode == 1 and "failing verdicts present: unsafe" in failing.stderr
    passing = _cli("check", "-", "-q", "--url", served.url, "--fail-on", "timeout",
                   stdin=_triples(), env=env)
    assert passing.returncode == 0 and len(passing.stdout.splitlines()) == 4
    typo = _cli("check", "-", "--url", served.url, "--fail-on", "unsaf", stdin="")
    assert typo.returncode == 2 and "unknown verdict 'unsaf'" in typo.stderr
    no_key = _cli("check", "-", "-q", "--url", served.url, stdin=_triples(),
                  env=settings_env(Settings()))
    assert no_key.returncode == 2 and "401" in no_key.stderr and served.url in no_key.stderr
    assert "Traceback" not in no_key.stderr
