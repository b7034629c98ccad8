"""JSON responses that cannot fail to encode.

Model-written programs, ids and meta may hold lone surrogates ("\\ud800" is legal JSON);
UTF-8 cannot encode them, so every response is ASCII JSON with \\u escapes. NaN in a client's
`meta` is echoed as NaN (Python's json accepted it on the way in) rather than crashing.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse


def dumps(content: Any) -> bytes:
    return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


class AsciiJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return dumps(content)
