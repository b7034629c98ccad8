"""The audit store of the configured mode: SQLite under `data_dir` (embedded), Redis
streams (distributed)."""

from __future__ import annotations

from pathlib import Path

from azr_verify.service.config import Settings
from azr_verify.service.queue.connection import sync_client
from azr_verify.service.queue.keys import Keys
from azr_verify.service.stores.audit.query import (
    AuditStore,
)
from azr_verify.service.stores.audit.redis import RedisAuditStore
from azr_verify.service.stores.audit.sqlite import DB_NAME, SqliteAuditStore


def open_audit_store(settings: Settings, read_only: bool = False) -> AuditStore:
    """The store of the configured mode; `read_only`: an existing SQLite log, unchanged."""
    if settings.redis_url:
        return RedisAuditStore(sync_client(settings), Keys.from_settings(settings),
                               settings.audit_retention)
    return SqliteAuditStore(Path(settings.data_dir) / DB_NAME, settings.audit_retention,
                            read_only=read_only)
