"""Which execution mode a service runs in, from its settings."""

from __future__ import annotations

from azr_verify.service.config import Settings
from azr_verify.service.engine import Engine
from azr_verify.service.modes.protocol import ExecutionMode


def build_mode(settings: Settings, engine: Engine | None = None) -> ExecutionMode:
    """Embedded unless `settings.redis_url` is set. `engine`: reuse a running engine (tests,
    benchmarks); the app then leaves it open on shutdown."""
    if settings.redis_url:
        from azr_verify.service.modes.distributed import DistributedMode

        return DistributedMode(settings)
    from azr_verify.service.modes.embedded import EmbeddedMode

    return EmbeddedMode(settings, engine)
