"""The FastAPI dependencies of the HTTP layer, as named aliases: what a route needs stands in
its signature (`mode: ModeDep`, `key_name: KeyName`). Each reads what `create_app` put on
`app.state`, the one place the app's parts are built (docs/design.md §5)."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials
from starlette.requests import Request

from azr_verify.service.api.auditing import AuditFilters, audit_filters
from azr_verify.service.api.auth import ApiKeys, bearer_scheme
from azr_verify.service.config import Settings
from azr_verify.service.metrics import Metrics
from azr_verify.service.modes.protocol import ExecutionMode
from azr_verify.service.stores.audit.query import AuditStore


def settings_of(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def mode_of(request: Request) -> ExecutionMode:
    return cast(ExecutionMode, request.app.state.mode)


def metrics_of(request: Request) -> Metrics:
    return cast(Metrics, request.app.state.metrics)


def api_keys_of(request: Request) -> ApiKeys:
    return cast(ApiKeys, request.app.state.api_keys)


SettingsDep = Annotated[Settings, Depends(settings_of)]
ModeDep = Annotated[ExecutionMode, Depends(mode_of)]
MetricsDep = Annotated[Metrics, Depends(metrics_of)]
ApiKeysDep = Annotated[ApiKeys, Depends(api_keys_of)]


def audit_store_of(mode: ModeDep) -> AuditStore:
    """The mode's audit log (blocking; read it through service/api/auditing.py)."""
    return mode.audit_store


def caller_key_name(request: Request, keys: ApiKeysDep, credentials: Annotated[
        HTTPAuthorizationCredentials | None, Depends(bearer_scheme)] = None) -> str | None:
    """The caller's API key name for the /v1 routes (401 without a valid key when the service
    has keys); kept on the request for the access log."""
    name = keys.name_for(request.headers.get("authorization"))
    request.state.key_name = name
    return name


AuditStoreDep = Annotated[AuditStore, Depends(audit_store_of)]
KeyName = Annotated[str | None, Depends(caller_key_name)]
AuditFiltersDep = Annotated[AuditFilters, Depends(audit_filters)]
