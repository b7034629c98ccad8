"""`azr-verify serve`: uvicorn running the app factory (embedded or distributed by settings)."""

from __future__ import annotations

import functools
import sys

import uvicorn

from azr_verify.service.api.app import create_app
from azr_verify.service.config import Settings

GRACEFUL_SHUTDOWN_S = 30


def uvicorn_config(settings: Settings, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        functools.partial(create_app, settings), factory=True, host=host, port=port,
        # Our JSON logging (service/logs.py) stays in charge; the one line per request comes
        # from AccessLogMiddleware (it knows the item count and the API key's name).
        log_config=None, access_log=False, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        proxy_headers=True)


def serve(settings: Settings, host: str, port: int) -> None:
    # The static checks of a request run in a worker thread; a shorter switch interval lets
    # the event loop (and so /healthz and every other client) in between them sooner.
    sys.setswitchinterval(settings.switch_interval_ms / 1000)
    uvicorn.Server(uvicorn_config(settings, host, port)).run()
