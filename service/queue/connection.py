"""Redis clients for the API and the workers, and the one place Redis errors are translated.

Timeouts are short and retries few on purpose: when Redis is down the API must answer 503 at
once rather than hang a trainer's request, and a worker must notice and reconnect.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from azr_verify.service.config import Settings
from azr_verify.service.errors import ConfigError, QueueUnavailableError

# Extra read time allowed on top of redis_timeout_s for blocking commands (BLPOP).
BLOCKING_SLACK_S = 2.0
_RETRIES = 2
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.exceptions.ConnectionError,
                                             redis.exceptions.TimeoutError)


def _url(settings: Settings) -> str:
    if not settings.redis_url:
        raise ConfigError("distributed mode needs AZR_VERIFY_REDIS_URL")
    return settings.redis_url


def _retry() -> Retry:
    return Retry(ExponentialBackoff(cap=0.2, base=0.02), _RETRIES)


def sync_client(settings: Settings, blocking_s: float = 0.0) -> redis.Redis:
    """Bytes in, bytes out (RQ needs raw responses). `blocking_s`: longest BLPOP used."""
    return redis.Redis.from_url(
        _url(settings), socket_connect_timeout=settings.redis_timeout_s,
        socket_timeout=settings.redis_timeout_s + blocking_s, retry=_retry(),
        health_check_interval=30)


def async_client(settings: Settings, blocking_s: float = 0.0) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        _url(settings), socket_connect_timeout=settings.redis_timeout_s,
        socket_timeout=settings.redis_timeout_s + blocking_s, retry=_retry(),
        health_check_interval=30)


def redacted_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def check_reachable(client: redis.Redis, settings: Settings) -> None:
    """Raises QueueUnavailableError, saying where and how to fix it, unless Redis answers."""
    try:
        client.ping()
    except REDIS_ERRORS as exc:
        raise QueueUnavailableError(
            f"cannot reach Redis at {redacted_url(_url(settings))}: {str(exc).rstrip('.')}; "
            f"start it, or point "
            f"--redis-url / AZR_VERIFY_REDIS_URL at a running one") from exc


def as_text(value: object) -> str:
    """A Redis reply (bytes: clients here do not decode) as text."""
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Turns redis-py's connection failures into the service's QueueUnavailableError."""
    try:
        yield
    except REDIS_ERRORS as exc:
        raise QueueUnavailableError(f"Redis is unreachable ({what}): {exc}") from exc
