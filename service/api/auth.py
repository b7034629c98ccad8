"""Optional API keys: `Authorization: Bearer <key>` when settings.api_keys is non-empty.

Keys are compared in constant time; the key's *name* (never the key) reaches the audit log.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request

from azr_verify.service.api.errors import ApiError
from azr_verify.service.audit import AuditScope

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="azr-verify"'}


class ApiKeys:
    def __init__(self, keys: dict[str, str], admins: frozenset[str] = frozenset()) -> None:
        self._keys = [(name, key.encode()) for name, key in keys.items()]
        self._admins = admins

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def name_for(self, authorization: str | None) -> str | None:
        """The key's name; None when auth is off. Raises 401 otherwise."""
        if not self._keys:
            return None
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "missing API key: send 'Authorization: "
                           "Bearer <key>'", headers=_CHALLENGE)
        presented = token.strip().encode("utf-8", "surrogateescape")
        found = None
        for name, key in self._keys:
            # No early exit: every key is compared, so timing says nothing about which.
            if hmac.compare_digest(presented, key):
                found = name
        if found is None:
            raise ApiError(401, "unauthorized", "invalid API key", headers=_CHALLENGE)
        return found


    def audit_scope(self, name: str | None) -> AuditScope:
        """Whose audit records the holder of key `name` may read: its own, or everyone's
        for an admin key; without keys there is one tenant and it reads everything."""
        if not self._keys or name in self._admins:
            return AuditScope.all_keys()
        return AuditScope.of_key(name)


def api_key_name(request: Request) -> str | None:
    """FastAPI dependency for the /v1 routes."""
    keys: ApiKeys = request.app.state.api_keys
    return keys.name_for(request.headers.get("authorization"))
