"""`azr-verify serve` as a real process: uvicorn from the CLI, a check, a clean SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx

from azr_verify.service.config import Settings

from .guards import assert_executed
from .servers import REPO, free_port, require_bwrap, settings_env, wait_until


def test_serve_answers_and_shuts_down_cleanly(tmp_path: Path) -> None:
    require_bwrap()
    port = free_port()
    env = settings_env(Settings(workers=2, data_dir=tmp_path / "data"))
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "azr_verify.service.cli", "serve", "--host", "127.0.0.1",
         "--port", str(port)], env=env, cwd=REPO, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                return httpx.get(f"{url}/readyz", timeout=10).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, 120, "azr-verify serve", interval_s=0.1)
        with httpx.Client(base_url=url, timeout=30) as client:
            response = client.post("/v1/check", json={"items": [
                {"id": 1, "program": "def f(x):\n    return x * 2", "input": "21",
                 "output": "42"}]})
            assert response.status_code == 200, response.text
            assert response.json()["results"][0]["verdict"] == "accepted"
            assert_executed(response.json()["results"])  # a new server: nothing cached
            assert client.get("/v1/info").json()["mode"] == "embedded"
            assert client.get("/docs").status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
        log.close()
    # uvicorn shuts down gracefully, then re-raises the signal: -SIGTERM is a clean exit.
    log_text = (tmp_path / "serve.log").read_text()
    assert code in (0, -signal.SIGTERM), log_text
    assert "Application shutdown complete" in log_text
    assert (tmp_path / "data" / "audit.sqlite3").exists()
