"""The docker backend's settings and availability check, for tests that run it (fresh program
text and proof of execution are in tests/guards.py)."""

from __future__ import annotations

from typing import Any

from azr_verify.service.config import BackendName, Settings
from azr_verify.service.errors import SandboxUnavailableError

REQUIRE_DOCKER_FLAG = "AZR_VERIFY_REQUIRE_DOCKER"


def docker_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"sandbox": BackendName.DOCKER, "workers": 2,
                              "determinism_seeds": 3, "default_timeout_s": 5.0}
    values.update(overrides)
    return Settings(**values)


def docker_problem() -> str | None:
    """Why the docker backend cannot start here (daemon, image, runner label), or None."""
    from azr_verify.service.sandbox.docker.launcher import DockerLauncher

    try:
        DockerLauncher(docker_settings()).close()
    except SandboxUnavailableError as exc:
        return str(exc)
    return None


def probe_report(request: Any, backend: BackendName, program: str) -> Any:
    """Runs a probe program (fresh text, policy `permissive`: it calls what the policy would
    refuse) on the session's engine of `backend`, and returns the literal it reported; the
    probe must have run and returned normally."""
    import ast

    from azr_verify.service.models import CheckItem, PolicyName, Verdict

    from .guards import assert_executed, fresh

    engine = request.getfixturevalue("engine" if backend is BackendName.PROCESS
                                     else "docker_engine")
    result = engine.check([CheckItem(program=fresh(program), input="0")],
                          PolicyName.PERMISSIVE)[0]
    assert_executed([result])
    assert result.verdict is Verdict.ACCEPTED, result
    return ast.literal_eval(result.output or "")
