"""Shared fixtures: a real sandbox pool (bubblewrap zygotes) started once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from azr_verify.service.config import Settings
from azr_verify.service.engine import Engine

from .sandboxes import REQUIRE_DOCKER_FLAG, docker_problem, docker_settings
from .servers import (
    CLIENT_MAX_ITEMS,
    ServeProcess,
    client_service_settings,
    require,
    require_bwrap,
    serve_process,
)

# Planted before any sandbox starts: hostile programs must not be able to read it.
PLANTED_SECRET = "azr-test-secret-7f3a9c"
os.environ["AZR_VERIFY_TEST_SECRET"] = PLANTED_SECRET


@pytest.fixture(scope="session")
def engine_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(workers=2, determinism_seeds=3, data_dir=tmp_path_factory.mktemp("data"),
                    default_timeout_s=5.0)


@pytest.fixture(scope="session")
def engine(engine_settings: Settings) -> Iterator[Engine]:
    require_bwrap()
    started = Engine.start(engine_settings)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(autouse=True)
def _sandbox_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests marked `sandbox` fail when the session engine answered from its cache during them
    (see tests/guards.py); `sandbox(cache_hits=N)` expects exactly N hits."""
    marker = request.node.get_closest_marker("sandbox")
    if marker is None:
        yield
        return
    if "engine" not in request.fixturenames:
        pytest.fail("the sandbox marker guards the session engine; this test does not use it "
                    "(check its results with tests.guards.assert_executed instead)")
    engine: Engine = request.getfixturevalue("engine")
    expected = int(marker.kwargs.get("cache_hits", 0))
    before = engine.stats().cache_hits
    yield
    hits = engine.stats().cache_hits - before
    if hits != expected:
        pytest.fail(f"the engine answered {hits} check(s) from its cache during this test "
                    f"(expected {expected}): use tests.guards.fresh() program text so the "
                    "sandbox really runs")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def service_url(engine_settings: Settings, engine: Engine) -> Iterator[str]:
    """The real app (embedded mode) on a real uvicorn, sharing the session's sandbox pool."""
    from .servers import api_server

    with api_server(engine_settings, engine) as server:
        yield server.url


@pytest.fixture(scope="session")
def docker_ready() -> None:
    """The docker backend can start here; skipped otherwise, unless CI requires it."""
    problem = docker_problem()
    require(f"the docker backend ({problem})", problem is None, REQUIRE_DOCKER_FLAG)


@pytest.fixture(scope="session")
def docker_engine(docker_ready: None, tmp_path_factory: pytest.TempPathFactory) \
        -> Iterator[Engine]:
    """An engine on the docker backend, shared by the session (like `engine`)."""
    started = Engine.start(docker_settings(data_dir=tmp_path_factory.mktemp("docker-data")))
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(scope="session")
def client_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """A real `azr-verify serve` subprocess with its result cache off, shared by the client's
    test modules (see servers.client_service_settings)."""
    require_bwrap()
    root = tmp_path_factory.mktemp("client-service")
    settings = client_service_settings(root / "data", max_items=CLIENT_MAX_ITEMS)
    with serve_process(settings, root / "serve.log") as server:
        yield server
