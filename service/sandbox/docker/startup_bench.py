"""A benchmark helper: how long a docker pool takes to start (kept apart from the backend)."""

from __future__ import annotations

import time

from azr_verify.service.config import BackendName, Settings
from azr_verify.service.sandbox.factory import build_pool


def pool_startup_seconds(settings: Settings, zygotes: int | None = None) -> float:
    """Wall time from nothing to a started docker pool of `zygotes` zygotes (default: the
    setting `workers`): launcher checks and every zygote's hello."""
    docker_settings = settings.model_copy(
        update={"sandbox": BackendName.DOCKER, "workers": zygotes or settings.workers})
    started = time.perf_counter()
    pool = build_pool(docker_settings)
    try:
        pool.start()
        return time.perf_counter() - started
    finally:
        pool.close()
