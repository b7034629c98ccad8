"""Structured logging: one JSON object per line on stderr."""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

# uvicorn attaches `color_message`, the message with ANSI colours, to its records.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "color_message"}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def plain(text: str) -> str:
    """Text without ANSI escape sequences (colours belong on terminals, not in JSON)."""
    return _ANSI.sub("", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": plain(record.getMessage()),
        }
        # Fields passed with `extra={...}` become top-level keys.
        entry.update({k: plain(v) if isinstance(v, str) else v
                      for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = plain(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def configure_logging(verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # httpx logs every request it sends at INFO: noise in `check --url` and the benchmarks.
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbose else logging.WARNING)
