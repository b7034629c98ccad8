"""Per-key audit over HTTP: a key reads only its own records, an admin key reads all; the
client and `azr-verify audit export --url` see what the key may see; export works from any
directory."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from azr_verify.client import Client
from azr_verify.service.config import Settings
from azr_verify.service.engine import Engine

from .servers import ApiServer, api_server

KEYS = {"alice": "k-alice-1", "bob": "k-bob-2", "ops": "k-ops-3"}
UNSAFE = "import os\ndef f(x):\n    return os.getpid()  # {tag}"


@pytest.fixture(scope="module")
def server(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("audit-data"), api_keys=KEYS,
                        admin_keys=["ops"])
    with api_server(settings, engine) as running:
        for name in ("alice", "bob"):
            with running.client(headers=auth(name)) as client:
                batch = [{"id": f"{name}-{i}", "program": UNSAFE.format(tag=f"{name}{i}"),
                          "input": "0"} for i in range(3)]
                response = client.post("/v1/check", json={"items": batch})
                assert response.status_code == 200, response.text
        yield running


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


def item_ids(records: list[dict[str, object]]) -> set[str]:
    return {str(r["item_id"]) for r in records}


@pytest.mark.parametrize(("name", "expected"), [
    ("alice", {"alice-0", "alice-1", "alice-2"}),
    ("bob", {"bob-0", "bob-1", "bob-2"}),
    ("ops", {"alice-0", "alice-1", "alice-2", "bob-0", "bob-1", "bob-2"}),
])
def test_each_key_reads_only_what_it_may(server: ApiServer, name: str,
                                         expected: set[str]) -> None:
    with server.client(headers=auth(name)) as client:
        records = client.get("/v1/audit", params={"limit": 1000}).json()["records"]
        unsafe = client.get("/v1/audit", params={"verdict": "unsafe"}).json()["records"]
    assert item_ids(records) == expected
    assert item_ids(unsafe) == expected
    if name != "ops":
        assert {r["api_key_name"] for r in records} == {name}


def test_without_a_key_nothing_is_read(server: ApiServer) -> None:
    with server.client() as client:
        assert client.get("/v1/audit").status_code == 401


def test_pages_continue_with_the_cursor_in_both_orders(server: ApiServer) -> None:
    with server.client(headers=auth("ops")) as client:
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 2, "order": "asc"}
            if cursor is not None:
                params["cursor"] = cursor
            body = client.get("/v1/audit", params=params).json()
            seen += [str(r["item_id"]) for r in body["records"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        newest = client.get("/v1/audit", params={"limit": 6}).json()["records"]
        bad = client.get("/v1/audit", params={"cursor": "1; DROP TABLE audit"})
    assert seen == ["alice-0", "alice-1", "alice-2", "bob-0", "bob-1", "bob-2"]
    assert [str(r["item_id"]) for r in newest] == seen[::-1]
    assert bad.status_code == 422



def test_the_client_reads_with_its_key(server: ApiServer) -> None:
    with Client(server.url, api_key=KEYS["bob"]) as client:
        assert item_ids([r.model_dump() for r in client.audit()]) == {"bob-0", "bob-1", "bob-2"}
        every = list(client.iter_audit(page_size=2))
    assert [r.item_id for r in every] == ["bob-0", "bob-1", "bob-2"]


def export(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AZR_VERIFY_")}
    return subprocess.run([sys.executable, "-m", "azr_verify.service.cli", "audit", "export",
                           *args], cwd=cwd, env={**clean, **env}, capture_output=True,
                          text=True, timeout=120, check=False)


def test_export_over_http_sees_what_the_key_sees(server: ApiServer, tmp_path: Path) -> None:
    alice = export(["--url", server.url, "--api-key", KEYS["alice"]], tmp_path, {})
    assert alice.returncode == 0, alice.stderr
    assert [json.loads(line)["item_id"] for line in alice.stdout.splitlines()] == \
        ["alice-0", "alice-1", "alice-2"]
    ops = export(["--url", server.url, "--verdict", "unsafe"], tmp_path,
                 {"AZR_VERIFY_API_KEY": KEYS["ops"]})
    assert ops.returncode == 0, ops.stderr
    assert len(ops.stdout.splitlines()) == 6 and f"from {server.url}" in ops.stderr
    stranger = export(["--url", server.url, "--api-key", "wrong"], tmp_path, {})
    assert stranger.returncode == 2 and "Traceback" not in stranger.stderr
    assert "401" in stranger.stderr or "API key" in stranger.stderr


def test_export_from_any_directory_reads_the_configured_data_dir(server: ApiServer,
                                                                 tmp_path: Path) -> None:
    data_dir = str(server.settings.data_dir)
    by_flag = export(["--data-dir", data_dir], tmp_path, {})
    by_env = export([], Path("/"), {"AZR_VERIFY_DATA_DIR": data_dir})
    for done in (by_flag, by_env):
        assert done.returncode == 0, done.stderr
        assert len(done.stdout.splitlines()) == 6
        assert f"exported 6 audit records from {data_dir}" in done.stderr
    assert not (tmp_path / "data").exists()


def test_records_written_before_the_export_started_are_all_there(server: ApiServer) -> None:
    since = time.time() - 3600
    with Client(server.url, api_key=KEYS["ops"]) as client:
        assert len(list(client.iter_audit(since=since, page_size=1))) == 6
        assert list(client.iter_audit(since=time.time() + 60)) == []


def test_unknown_order_is_422(server: ApiServer) -> None:
    with httpx.Client(base_url=server.url, headers=auth("alice")) as client:
        assert client.get("/v1/audit", params={"order": "sideways"}).status_code == 422


def test_meta_too_deep_to_audit_is_a_422_not_a_500(server: ApiServer) -> None:
    meta: dict[str, object] = {}
    node = meta
    for _ in range(300):
        child: dict[str, object] = {}
        node["k"] = child
        node = child
    with server.client(headers=auth("alice")) as client:
        response = client.post("/v1/check", json={"items": [
            {"program": UNSAFE.format(tag="deep"), "input": "0", "meta": meta}]})
    assert response.status_code == 422
    assert "meta is nested more than 32 levels" in response.json()["error"]["message"]


# --- the same scope for every reader: export, console pages, items, chart -----------------------

def test_the_export_route_is_scoped_like_the_list(server: ApiServer) -> None:
    for name, expected in (("alice", ["alice-0", "alice-1", "alice-2"]),
                           ("ops", ["alice-0", "alice-1", "alice-2", "bob-0", "bob-1",
                                    "bob-2"])):
        with server.client(headers=auth(name)) as client:
            jsonl = client.get("/v1/audit/export", params={"format": "jsonl"})
            csv_text = client.get("/v1/audit/export", params={"format": "csv"}).text
        assert [json.loads(line)["item_id"] for line in jsonl.text.splitlines()] == expected
        assert [row["item_id"] for row in csv_rows(csv_text)] == expected


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@contextmanager
def console_as(server: ApiServer, name: str) -> Iterator[httpx.Client]:
    """A browser-like client signed in to the console with the key's form (a session cookie)."""
    with server.client(follow_redirects=False) as client:
        response = client.post("/console/login", data={"key": KEYS[name], "next": "/console"})
        assert response.status_code == 303, response.text
        yield client


def test_the_console_shows_a_key_only_its_own_records(server: ApiServer) -> None:
    with server.client(headers=auth("ops")) as admin:
        records = admin.get("/v1/audit", params={"limit": 100}).json()["records"]
    ids = {str(r["item_id"]): str(r["id"]) for r in records}
    with console_as(server, "alice") as alice, console_as(server, "ops") as ops:
        page = alice.get("/console")
        assert page.status_code == 200
        assert "alice-0" in page.text and "bob-0" not in page.text
        assert "3 in range" in page.text
        assert "6 in range" in ops.get("/console").text
        assert alice.get(f"/console/items/{ids['alice-1']}").status_code == 200
        assert alice.get(f"/console/items/{ids['bob-1']}").status_code == 404
        assert ops.get(f"/console/items/{ids['bob-1']}").status_code == 200
        exported = alice.get("/console/export", params={"format": "jsonl"}).text
    assert [json.loads(line)["item_id"] for line in exported.splitlines()] == \
        ["alice-0", "alice-1", "alice-2"]


def test_export_over_http_takes_the_console_filters_and_csv(server: ApiServer,
                                                            tmp_path: Path) -> None:
    done = export(["--url", server.url, "--api-key", KEYS["bob"], "--format", "csv",
                   "--rule", "import_denied", "--search", "bob1"], tmp_path, {})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("id,time,time_utc,verdict")
    assert [row["item_id"] for row in csv_rows(done.stdout)] == ["bob-1"]
    assert "exported 1 audit records" in done.stderr
