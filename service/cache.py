"""Content-addressed cache of what a (program, input) did, before any expected output is compared.

Validating a proposal computes the gold output once; every later answer check of the same
(program, input) — deduction answers, repeated rollouts — is then a cache hit that costs no
execution. The key covers everything that can change the outcome: program, input, entry, policy,
limits, determinism runs and the runtime version.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from azr_verify.service.models import Limits, PolicyName, Verdict


@dataclass(frozen=True, slots=True)
class CachedRun:
    """The folded outcome of all determinism runs of one (program, input).

    `verdict` is ACCEPTED when the program returned the same literal in every run (`output`
    holds its repr); otherwise it is the final verdict (timeout, runtime_error, ...).
    """

    verdict: Verdict
    output: str | None = None
    error_type: str | None = None
    error: str | None = None
    duration_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CachedRun:
        return cls(verdict=Verdict(data["verdict"]), output=data.get("output"),
                   error_type=data.get("error_type"), error=data.get("error"),
                   duration_ms=float(data.get("duration_ms", 0.0)))


# Outcomes that depend on the machine's load or health rather than on the program.
UNCACHEABLE = frozenset({Verdict.SANDBOX_ERROR, Verdict.TIMEOUT})


def cache_key(*, program: str, input_text: str, entry: str, policy: PolicyName,
              limits: Limits, runtime: str) -> str:
    material = json.dumps(
        [program, input_text, entry, policy.value, limits.timeout_s, limits.memory_mb,
         limits.output_limit_chars, limits.determinism_runs, runtime],
        separators=(",", ":"), ensure_ascii=False,
    )
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()


class ResultCache(Protocol):
    def get(self, key: str) -> CachedRun | None: ...

    def put(self, key: str, run: CachedRun) -> None: ...


class MemoryCache:
    """A bounded, thread-safe LRU."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, CachedRun] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> CachedRun | None:
        with self._lock:
            run = self._entries.get(key)
            if run is not None:
                self._entries.move_to_end(key)
            return run

    def put(self, key: str, run: CachedRun) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._entries[key] = run
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
