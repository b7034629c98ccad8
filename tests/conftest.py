"""Shared fixtures: a real sandbox pool (bubblewrap zygotes) started once per session."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from azr_verify.service.config import Settings
from azr_verify.service.engine import Engine

# Planted before any sandbox starts: hostile programs must not be able to read it.
PLANTED_SECRET = "azr-test-secret-7f3a9c"
os.environ["AZR_VERIFY_TEST_SECRET"] = PLANTED_SECRET


def require(component: str, available: bool, env_flag: str) -> None:
    """Skip when a component is missing locally; fail when CI says it must be there."""
    if available:
        return
    if os.environ.get(env_flag) == "1":
        pytest.fail(f"{component} is required ({env_flag}=1) but is not available")
    pytest.skip(f"{component} is not available")


@pytest.fixture(scope="session")
def engine_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(workers=2, determinism_seeds=3, data_dir=tmp_path_factory.mktemp("data"),
                    default_timeout_s=5.0)


@pytest.fixture(scope="session")
def engine(engine_settings: Settings) -> Iterator[Engine]:
    require("bubblewrap", shutil.which("bwrap") is not None, "AZR_VERIFY_REQUIRE_BWRAP")
    started = Engine.start(engine_settings)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def service_url(engine_settings: Settings, engine: Engine) -> Iterator[str]:
    """The real app (embedded mode) on a real uvicorn, sharing the session's sandbox pool."""
    from .servers import api_server

    with api_server(engine_settings, engine) as server:
        yield server.url
