"""Client configuration: one explicit value, never read at import time."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "AZR_VERIFY_URL"
API_KEY_ENV = "AZR_VERIFY_API_KEY"


class ClientConfig(BaseModel):
    """Everything that tunes a `Client`/`AsyncClient`; the defaults suit a training loop."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(default=DEFAULT_URL, description="Root URL of the service.")
    api_key: str | None = Field(default=None,
                                description="Sent as `Authorization: Bearer <key>`.")
    policy: str = Field(default="azr", description="Default safety policy for checks.")
    timeout_s: float = Field(default=120.0, gt=0,
                             description="Per-request timeout (connect + read).")
    max_retries: int = Field(default=6, ge=0,
                             description="Retries per request after 429/502/503/504 or a "
                             "transport failure.")
    backoff_initial_s: float = Field(default=0.25, ge=0, description="First backoff step.")
    backoff_max_s: float = Field(default=15.0, ge=0, description="Cap of one backoff sleep.")
    retry_after_max_s: float = Field(default=120.0, ge=0,
                                     description="Cap on a server's Retry-After.")
    chunk_size: int = Field(default=512, ge=1,
                            description="Items per /v1/check request; larger batches are "
                            "split and reassembled in order.")
    max_concurrency: int = Field(default=4, ge=1,
                                 description="Requests in flight at once (async client; the "
                                 "sync client sends chunks one by one).")
    sandbox_error_retries: int = Field(default=1, ge=0,
                                       description="Times items that came back "
                                       "`sandbox_error` are re-sent (the verdict is "
                                       "retryable).")
    poll_interval_s: float = Field(default=0.2, gt=0,
                                   description="First interval of wait() polling.")
    poll_interval_max_s: float = Field(default=2.0, gt=0,
                                       description="Cap of wait() polling.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object
                 ) -> ClientConfig:
        """Build from `AZR_VERIFY_URL` / `AZR_VERIFY_API_KEY`, then explicit overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if env.get(URL_ENV):
            values["base_url"] = env[URL_ENV]
        if env.get(API_KEY_ENV):
            values["api_key"] = env[API_KEY_ENV]
        values.update(overrides)
        return cls.model_validate(values)
