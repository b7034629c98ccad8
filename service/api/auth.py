"""Optional API keys: `Authorization: Bearer <key>` when settings.api_keys is non-empty (or
basic auth with the key as password, for clients that only take a URL).

Keys are compared in constant time; the key's *name* (never the key) reaches the audit log and
the access log. The console, which a browser cannot send a header from, signs in with a key
once and then carries a session cookie: an expiring HMAC of the key's name made with the key
itself, so the cookie never holds the key and stops working when the key is changed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from fastapi.security import HTTPBearer

from azr_verify.service.api.errors import ApiError

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="azr-verify"'}
SESSION_S = 12 * 3600
_SESSION_CONTEXT = b"azr-verify console session\x00"

# Declares the scheme in the OpenAPI document ("Authorize" in /docs); the header itself is
# parsed by ApiKeys so that a missing and a wrong key get the same JSON errors everywhere.
bearer_scheme = HTTPBearer(
    auto_error=False, scheme_name="ApiKey", bearerFormat="API key",
    description="Only when the service is configured with API keys "
                "(AZR_VERIFY_API_KEYS): send `Authorization: Bearer <key>`.")


class ApiKeys:
    def __init__(self, keys: dict[str, str], admins: frozenset[str] = frozenset()) -> None:
        self._keys = [(name, key.encode()) for name, key in keys.items()]
        self._admins = admins

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def name_for(self, authorization: str | None) -> str | None:
        """The key's name; None when auth is off. Raises 401 otherwise.

        The key comes as `Bearer <key>`, or as HTTP basic auth whose password (or, with no
        password, user name) is the key: clients that take only a URL (the sandbox-fusion
        package, veRL's sandbox reward) send `http://name:KEY@host/` that way."""
        if not self._keys:
            return None
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() == "basic":
            token = _basic_secret(token.strip())
        elif scheme.lower() != "bearer":
            token = ""
        if not token.strip():
            raise ApiError(401, "unauthorized", "missing API key: send 'Authorization: "
                           "Bearer <key>' (or basic auth with the key as password)",
                           headers=_CHALLENGE)
        found = self._match(token.strip())
        if found is None:
            raise ApiError(401, "unauthorized", "invalid API key", headers=_CHALLENGE)
        return found

    def _match(self, token: str) -> str | None:
        presented = token.encode("utf-8", "surrogateescape")
        found = None
        for name, key in self._keys:
            # No early exit: every key is compared, so timing says nothing about which.
            if hmac.compare_digest(presented, key):
                found = name
        return found

    def name_of_key(self, key: str) -> str | None:
        """The name of a key typed into the console's sign-in form; None when unknown."""
        return self._match(key.strip()) if self._keys else None

    def is_admin(self, name: str | None) -> bool:
        """Whether the key `name` reads every key's audit records (AZR_VERIFY_ADMIN_KEYS)."""
        return name is not None and name in self._admins

    # -- console sessions -----------------------------------------------------------------

    def session_token(self, name: str, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        label = base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")
        return f"{label}.{issued}.{self._sign(name, issued)}"

    def _sign(self, name: str, issued: int) -> str:
        key = dict(self._keys)[name]
        message = _SESSION_CONTEXT + name.encode() + b"\x00" + str(issued).encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    def name_for_session(self, token: str, now: float | None = None) -> str | None:
        """The key name a session cookie was issued for; None when invalid or expired."""
        label, _, rest = token.partition(".")
        issued_text, _, signature = rest.partition(".")
        try:
            name = base64.urlsafe_b64decode(label + "=" * (-len(label) % 4)).decode()
            issued = int(issued_text)
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
            return None
        if name not in dict(self._keys):
            return None
        current = time.time() if now is None else now
        if not issued <= current + 60 or current - issued > SESSION_S:
            return None
        if not hmac.compare_digest(signature.encode(), self._sign(name, issued).encode()):
            return None
        return name


def _basic_secret(credentials: str) -> str:
    """The key in basic-auth credentials: the password, or the user name when there is no
    password; "" when they do not decode."""
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        return ""
    user, _, password = decoded.partition(":")
    return password or user
