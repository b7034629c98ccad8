"""`create_app(settings)`: the FastAPI app, built explicitly from a Settings value."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from azr_verify.service import __version__
from azr_verify.service.api.auth import ApiKeys
from azr_verify.service.api.console import install_console
from azr_verify.service.api.docs import install_docs
from azr_verify.service.api.errors import install_error_handlers
from azr_verify.service.api.middleware import (
    AccessLogMiddleware,
    BodyLimitMiddleware,
    InflightBodies,
    RequestMetricsMiddleware,
    UnhandledErrorMiddleware,
)
from azr_verify.service.api.responses import AsciiJSONResponse
from azr_verify.service.api.routes import TAGS_METADATA, build_router
from azr_verify.service.config import Settings
from azr_verify.service.engine import Engine
from azr_verify.service.metrics import Metrics
from azr_verify.service.modes.selection import build_mode

DESCRIPTION = """Sandboxed code-execution verifier for Absolute-Zero self-play training.

Send batches of (program, input, output) triples; get typed verdicts back in order. Every
error is JSON: `{"error": {"code", "message"}}`. When the service has API keys, press
**Authorize** and enter one; it is sent as `Authorization: Bearer <key>`.

Rejected items can also be browsed in the [audit console](/console)."""


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    mode = build_mode(settings, engine)
    metrics = Metrics(mode)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await mode.start()
        try:
            yield
        finally:
            await mode.aclose()

    app = FastAPI(title="azr-verify", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan, default_response_class=AsciiJSONResponse,
                  openapi_tags=TAGS_METADATA, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.mode = mode
    app.state.metrics = metrics
    app.state.api_keys = ApiKeys(settings.api_keys, frozenset(settings.admin_keys))
    install_error_handlers(app)
    app.include_router(build_router())
    install_docs(app)
    install_console(app)
    # Added last = outermost: request timing and the access log see the body limit's 408s,
    # 413s and 429s and the 500s too.
    app.state.inflight_bodies = InflightBodies(settings.max_inflight_body_bytes)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       timeout_s=settings.body_timeout_s, inflight=app.state.inflight_bodies,
                       retry_after_s=settings.overload_retry_after_s)
    app.add_middleware(UnhandledErrorMiddleware)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    app.add_middleware(AccessLogMiddleware)
    return app
