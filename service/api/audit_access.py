"""The one way HTTP callers read the audit log: scoped by the caller's API key.

Every audit reader (the JSON route `GET /v1/audit`, the browser console) goes through
`read_audit`, so no reader can forget the scope: a key reads only its own records, an admin
key (`AZR_VERIFY_ADMIN_KEYS`) or a service without keys reads them all.
"""

from __future__ import annotations

from starlette.requests import Request

from azr_verify.service.api.auth import ApiKeys
from azr_verify.service.api.backend import Backend
from azr_verify.service.audit import AuditPage, AuditQuery


async def read_audit(request: Request, key_name: str | None, query: AuditQuery) -> AuditPage:
    """The page of audit records `query` asks for, among those `key_name` may read."""
    keys: ApiKeys = request.app.state.api_keys
    backend: Backend = request.app.state.backend
    return await backend.audit(keys.audit_scope(key_name), query)
