"""The httpx seam: the only module besides the drivers that knows about httpx."""

from __future__ import annotations

import httpx

from .config import ClientConfig
from .errors import RequestTimeoutError, TransportError


def base_url_of(config: ClientConfig) -> str:
    # httpx joins relative paths onto base_url; a trailing slash keeps a path prefix
    # (e.g. a reverse proxy mounting the service under /verify) intact.
    return config.base_url.rstrip("/") + "/"


def timeout_of(config: ClientConfig) -> httpx.Timeout:
    return httpx.Timeout(config.timeout_s, connect=min(10.0, config.timeout_s))


def url_of(config: ClientConfig, path: str) -> str:
    """The absolute URL of an API path, as errors name it."""
    return base_url_of(config) + path.lstrip("/")


def wrap_httpx_error(exc: httpx.HTTPError, method: str, url: str) -> TransportError:
    """Map an httpx failure into the client's tree; the original stays as __cause__."""
    where = f"{method} {url}"
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeoutError(f"timed out: {exc!r}", where)
    return TransportError(f"{type(exc).__name__}: {exc}", where)
