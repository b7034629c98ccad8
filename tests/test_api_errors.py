"""Bad input: every 4xx is a JSON error body, and the server stays healthy after each."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from azr_verify.service.config import Settings
from azr_verify.service.engine import Engine

from .guards import assert_executed, fresh
from .servers import ApiServer, api_server, error_of

# Every test here may end in the sandbox (the after-each good batch does): see tests/guards.py.
pytestmark = pytest.mark.sandbox

KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_BODY = 64 * 1024
MAX_ITEMS = 50
GOOD = {"id": 1, "program": "def f(x):\n    return x + 1", "input": "1", "output": "2"}


@pytest.fixture(scope="module")
def server(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("errors-data"), api_keys={"ci": KEY},
                        max_body_bytes=MAX_BODY, max_items=MAX_ITEMS)
    with api_server(settings, engine) as running:
        yield running


@pytest.fixture
def client(server: ApiServer) -> Iterator[httpx.Client]:
    with server.client(headers=AUTH) as c:
        yield c


@pytest.fixture(autouse=True)
def still_healthy(server: ApiServer) -> Iterator[None]:
    """After every test: the server answers, and a good batch still gets verdicts from a
    sandbox (fresh program text: a cache hit would prove nothing about the sandboxes)."""
    yield
    with server.client(headers=AUTH) as c:
        assert c.get("/healthz").status_code == 200
        good = {**GOOD, "program": fresh(str(GOOD["program"]))}
        response = c.post("/v1/check", json={"items": [good]})
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert results[0]["verdict"] == "accepted", results
        assert_executed(results)


def post_raw(client: httpx.Client, body: bytes, content_type: str = "application/json",
             path: str = "/v1/check") -> httpx.Response:
    return client.post(path, content=body, headers={"Content-Type": content_type})


@pytest.mark.parametrize("body", [b"{", b'{"items": [', b"nonsense", b'{"items": []}}',
                                  b'{"items": [{"program": "a\x00b", "input": "1"}]}'])
def test_malformed_json_is_400(client: httpx.Client, body: bytes) -> None:
    response = post_raw(client, body)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


def test_non_utf8_body_is_400(client: httpx.Client) -> None:
    response = post_raw(client, b'{"items": [{"program": "\xff\xfe", "input": "1"}]}')
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_encoding"


@pytest.mark.parametrize("payload", [
    {"items": "not a list"},
    {"items": [{"program": 1, "input": "1"}]},
    {"items": [{"program": "def f(x): return x", "input": ["1"]}]},
    {"items": [GOOD], "policy": "no-such-policy"},
    {"items": [{**GOOD, "determinism_runs": 0}]},
    {"items": [{**GOOD, "timeout_s": -1}]},
    {"items": [{**GOOD, "entry": "f(); import os"}]},
    {"items": [{**GOOD, "entry": "f\u0000"}]},
    [GOOD],
], ids=["items-not-list", "program-int", "input-list", "bad-policy", "zero-runs",
        "negative-timeout", "entry-injection", "entry-nul", "top-level-list"])
def test_wrong_types_are_422(client: httpx.Client, payload: object) -> None:
    response = client.post("/v1/check", json=payload)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert error["details"]


@pytest.mark.parametrize(("payload", "message"), [
    ({}, "Field required"),
    # Without a program an item is a comparison (docs/design.md §2), which needs an output.
    ({"items": [{"input": "1"}]}, "a comparison and needs an output"),
    ({"items": [{"program": "def f(x): return x"}]}, "Field required"),
], ids=["no-items", "no-program-nor-output", "no-input"])
def test_missing_fields_are_422(client: httpx.Client, payload: object, message: str) -> None:
    response = client.post("/v1/check", json=payload)
    assert response.status_code == 422
    assert message in error_of(response)["message"]


@pytest.mark.parametrize("payload", [
    {"items": [GOOD], "extra": True},
    {"items": [{**GOOD, "expected": "2"}]},
], ids=["top-level", "item"])
def test_unknown_fields_are_422(client: httpx.Client, payload: object) -> None:
    response = client.post("/v1/check", json=payload)
    assert response.status_code == 422
    assert "Extra inputs are not permitted" in error_of(response)["message"]


def test_wrong_content_type_is_a_json_4xx(client: httpx.Client) -> None:
    response = post_raw(client, json.dumps({"items": [GOOD]}).encode(), "text/plain")
    assert 400 <= response.status_code < 500
    error_of(response)


def test_oversized_body_declared_is_413(client: httpx.Client) -> None:
    body = json.dumps({"items": [{**GOOD, "program": "#" * (MAX_BODY + 10)}]}).encode()
    response = post_raw(client, body)
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


def test_oversized_body_streamed_without_length_is_413(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"items": [{"input": "1", "program": "'
        for _ in range(40):
            yield b"#" * 4096
        yield b'"}]}'

    response = client.post("/v1/check", content=chunks(),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """Reads one HTTP/1.1 response with a Content-Length off a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


def test_body_limit_is_enforced_while_streaming(server: ApiServer) -> None:
    """The 413 comes while the client is still sending: the server never waits for (or
    buffers) the whole body. The body is never finished, so an answer at all is the proof;
    the socket timeout only keeps a broken server from hanging the suite."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=120) as sock:
        sock.sendall(b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + KEY.encode() + b"\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        piece = b"#" * 8192
        for _ in range(MAX_BODY // len(piece) + 2):
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        head, body = read_response(sock)
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["error"]["code"] == "payload_too_large"


def test_too_many_items_is_413(client: httpx.Client) -> None:
    response = client.post("/v1/check", json={"items": [GOOD] * (MAX_ITEMS + 1)})
    assert response.status_code == 413
    assert error_of(response)["code"] == "too_many_items"
    jobs = client.post("/v1/jobs", json={"items": [GOOD] * (MAX_ITEMS + 1)})
    assert jobs.status_code == 413


def test_nul_bytes_inside_strings_are_data_not_crashes(client: httpx.Client) -> None:
    items = [
        {"id": "program", "program": "def f(x):\n    return 1\u0000", "input": "1"},
        {"id": "input", "program": "def f(x):\n    return x", "input": "'a\u0000b'"},
        {"id": "output", "program": "def f(x):\n    return x", "input": "1", "output": "1\u0000"},
        {"id": "id\u0000", "program": fresh("def f(x):\n    return chr(0)"), "input": "1"},
        {"id": "meta", "program": "import os\ndef f(x):\n    return 1", "input": "1",
         "meta": {"note\u0000": "a\u0000b"}},
        # A lone surrogate in the program text itself: it cannot be encoded, so not parsed.
        {"id": "surrogate", "program": "def f(x):\n    return '\ud800'", "input": "1"},
        # A program that returns a lone surrogate: the value travels back as a \u escape.
        {"id": "surrogate-output", "program": fresh("def f(x):\n    return '\\ud800'"),
         "input": "1"},
    ]
    # ensure_ascii: a lone surrogate only travels as a \u escape.
    response = post_raw(client, json.dumps({"items": items}, ensure_ascii=True).encode())
    assert response.status_code == 200, response.text
    answered = response.json()["results"]
    assert [r["id"] for r in answered] == [item["id"] for item in items]
    results = {r["id"]: r for r in answered}
    assert results["program"]["verdict"] == "syntax_error"
    assert results["input"]["verdict"] == "syntax_error"
    assert results["output"]["verdict"] == "syntax_error"
    assert results["id\u0000"]["verdict"] == "accepted"
    assert results["id\u0000"]["output"] == "'\\x00'"
    assert results["meta"]["verdict"] == "unsafe"
    assert results["surrogate"]["verdict"] == "syntax_error"
    assert "surrogates not allowed" in results["surrogate"]["error"]
    assert results["surrogate-output"]["verdict"] == "accepted"
    assert results["surrogate-output"]["output"] == "'\\ud800'"
    assert_executed([results["id\u0000"], results["surrogate-output"]])
    audit = client.get("/v1/audit", params={"limit": 50})
    assert audit.status_code == 200
    assert any(r["meta"] == {"note\u0000": "a\u0000b"} for r in audit.json()["records"])


@pytest.mark.parametrize("job_id", ["0" * 32, "nope", "../../etc"])
def test_unknown_job_is_404(client: httpx.Client, job_id: str) -> None:
    response = client.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 404
    assert error_of(response)["code"] in ("job_not_found", "not_found")


def test_unknown_route_and_method(client: httpx.Client) -> None:
    response = client.get("/v2/check")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"
    response = client.put("/v1/check", json={"items": []})
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


@pytest.mark.parametrize("params", [{"verdict": "fine"}, {"limit": 0}, {"since": "yesterday"}])
def test_bad_audit_query_is_422(client: httpx.Client, params: dict[str, object]) -> None:
    response = client.get("/v1/audit", params=params)
    assert response.status_code == 422
    assert error_of(response)["code"] == "validation_error"


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY},
    {"Authorization": f"Basic {KEY}"}, {"Authorization": "Bearer"},
], ids=["none", "wrong", "no-scheme", "basic", "empty"])
@pytest.mark.parametrize("method,path", [("POST", "/v1/check"), ("POST", "/v1/jobs"),
                                         ("GET", "/v1/audit"), ("GET", "/v1/info"),
                                         ("GET", "/v1/jobs/" + "0" * 32)])
def test_missing_or_wrong_api_key_is_401(server: ApiServer, headers: dict[str, str],
                                         method: str, path: str) -> None:
    with server.client(headers=headers) as anonymous:
        response = anonymous.request(method, path, json={"items": [GOOD]})
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_probes_need_no_key(server: ApiServer) -> None:
    with server.client() as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/readyz").status_code == 200
        assert anonymous.get("/metrics").status_code == 200
