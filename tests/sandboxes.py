"""Helpers for tests that run real sandboxes: fresh program text, proof that a result was
really executed, and the docker backend's settings and availability check.

A sandbox test must exercise the sandbox, never the result cache: `fresh` makes program text
unique per call and `assert_executed` fails a test whose results came from the cache.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from azr_verify.service.config import BackendName, Settings
from azr_verify.service.errors import SandboxUnavailableError
from azr_verify.service.models import CheckResult

REQUIRE_DOCKER_FLAG = "AZR_VERIFY_REQUIRE_DOCKER"


def fresh(program: str) -> str:
    """`program` with a unique trailing comment: never a cache hit, same behaviour."""
    return f"{program.rstrip()}\n# run {uuid.uuid4().hex}\n"


def assert_executed(results: Iterable[CheckResult]) -> None:
    """Every result was computed by a sandbox in this call, not answered from the cache."""
    cached = [result.id for result in results if result.cached]
    assert not cached, f"answered from the cache, the sandbox never ran: {cached}"


def docker_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"sandbox": BackendName.DOCKER, "workers": 2,
                              "determinism_seeds": 3, "default_timeout_s": 5.0}
    values.update(overrides)
    return Settings(**values)


def docker_problem() -> str | None:
    """Why the docker backend cannot start here (daemon, image, runner label), or None."""
    from azr_verify.service.sandbox.docker_backend import DockerLauncher

    try:
        DockerLauncher(docker_settings()).close()
    except SandboxUnavailableError as exc:
        return str(exc)
    return None
