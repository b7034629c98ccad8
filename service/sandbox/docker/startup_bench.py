"""A benchmark helper: how long a docker pool takes to start (kept apart from the backend)."""

from __future__ import annotations

import time

from azr_verify.service.config import Settings
from azr_verify.service.sandbox.docker.launcher import DockerLauncher
from azr_verify.service.sandbox.pool import ZygotePool


def pool_startup_seconds(settings: Settings, workers: int | None = None) -> float:
    """Wall time from nothing to a started docker pool (launcher checks + every zygote's hello)."""
    started = time.perf_counter()
    pool = ZygotePool(DockerLauncher(settings), workers=workers or settings.workers,
                      seed_groups=settings.determinism_seeds, batch_size=settings.zygote_batch,
                      recycle_after=settings.docker_recycle_after)
    try:
        pool.start()
        return time.perf_counter() - started
    finally:
        pool.close()
