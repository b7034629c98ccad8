"""What crosses the boundary between the trusted service and a sandboxed zygote.

The wire format is a stream of frames, each a 4-byte big-endian length followed by UTF-8 JSON.
The zygote first sends a hello frame; then for every request frame (a JSON list of execution
requests) it answers one frame (a JSON list of outcomes, same order). The runner
(`runner.py`) implements the other side with the standard library only.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

FRAME_HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 64 * 1024 * 1024


class OutcomeKind(StrEnum):
    """What one execution did, as reported by the runner (string values are the wire format)."""

    VALUE = "value"  # returned a literal value; `repr` holds it
    ERROR = "error"  # raised; `error_type` holds the class name
    TIMEOUT = "timeout"  # wall clock or CPU limit
    MEMORY = "memory"  # MemoryError or address-space limit
    OUTPUT_LIMIT = "output_limit"  # repr larger than the cap
    NOT_LITERAL = "not_literal"  # returned something that is not a literal
    NO_ENTRY = "no_entry"  # the entry function is not defined after running the program
    CRASH = "crash"  # the child died from a signal or exited without a result
    SANDBOX_ERROR = "sandbox_error"  # infrastructure: the zygote died or misbehaved


@dataclass(frozen=True, slots=True)
class ExecRequest:
    """One execution of `entry(<args>)` after running `program` in fresh globals."""

    program: str
    entry: str
    args: str
    timeout_s: float
    memory_mb: int
    output_limit: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "program": self.program,
            "entry": self.entry,
            "args": self.args,
            "timeout_s": self.timeout_s,
            "memory_mb": self.memory_mb,
            "output_limit": self.output_limit,
        }


@dataclass(frozen=True, slots=True)
class ExecOutcome:
    """What one execution produced."""

    kind: OutcomeKind
    repr: str | None = None
    error_type: str | None = None
    error: str | None = None
    duration_ms: float = 0.0

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> ExecOutcome:
        return cls(
            kind=OutcomeKind(data["kind"]),
            repr=data.get("repr"),
            error_type=data.get("error_type"),
            error=data.get("error"),
            duration_ms=float(data.get("duration_ms", 0.0)),
        )

    @classmethod
    def sandbox_failure(cls, message: str) -> ExecOutcome:
        return cls(kind=OutcomeKind.SANDBOX_ERROR, error=message)


def encode_frame(payload: Any) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return FRAME_HEADER.pack(len(body)) + body


class ZygoteConnection(Protocol):
    """A started fork-server: a byte pipe in each direction and a way to kill it."""

    name: str

    def send(self, data: bytes) -> None: ...

    def recv_exact(self, size: int, timeout_s: float) -> bytes:
        """Read exactly `size` bytes; raise `ZygoteDiedError` on EOF or after `timeout_s`."""
        ...

    def kill(self) -> None: ...

    def alive(self) -> bool: ...


class ZygoteLauncher(Protocol):
    """Starts zygotes for one backend; the pool owns their lifecycle."""

    backend: str

    def launch(self, hash_seed: int, index: int) -> ZygoteConnection: ...

    def close(self) -> None:
        """Release backend resources (remove containers...)."""
        ...
