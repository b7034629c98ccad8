"""The sandbox pool for the configured backend: which launcher starts its zygotes, and how many
executions a zygote serves before the pool replaces it (docs/design.md §4)."""

from __future__ import annotations

from azr_verify.service.config import BackendName, Settings
from azr_verify.service.sandbox.pool import ZygotePool
from azr_verify.service.sandbox.protocol import ZygoteLauncher


def build_launcher(settings: Settings) -> ZygoteLauncher:
    """The launcher of the configured backend; raises SandboxUnavailableError when it cannot
    start zygotes here (no bwrap, no daemon, no image...)."""
    # Each backend is imported only when chosen: the bubblewrap backend needs no Docker SDK.
    if settings.sandbox is BackendName.DOCKER:
        from azr_verify.service.sandbox.docker.launcher import DockerLauncher

        return DockerLauncher(settings)
    from azr_verify.service.sandbox.bwrap_backend import BubblewrapLauncher

    return BubblewrapLauncher(settings.python)


def recycle_after(settings: Settings) -> int:
    """Executions a zygote of the configured backend serves before it is replaced."""
    if settings.sandbox is BackendName.DOCKER:
        return settings.docker_recycle_after
    return settings.bwrap_recycle_after


def build_pool(settings: Settings) -> ZygotePool:
    """The sandbox pool for the configured backend (not started)."""
    return ZygotePool(build_launcher(settings), zygotes=settings.workers,
                      seed_groups=settings.determinism_seeds, batch_size=settings.zygote_batch,
                      recycle_after=recycle_after(settings))
