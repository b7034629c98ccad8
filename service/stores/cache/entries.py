"""Content-addressed cache of what a (program, input) did, before any expected output is compared.

Validating a proposal computes the gold output once; every later answer check of the same
(program, input) — deduction answers, repeated rollouts — is then a cache hit that costs no
execution. The key covers everything that can change the outcome: program, input, entry, policy,
limits, determinism runs and the runtime version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from azr_verify.service.models import Limits, PolicyName, Verdict


@dataclass(frozen=True, slots=True)
class CachedRun:
    """The folded outcome of all determinism runs of one (program, input).

    `verdict` is ACCEPTED when the program returned the same literal in every run (`output`
    holds its repr); otherwise it is the final verdict (timeout, runtime_error, ...).

    A test case of a script (docs/design.md §10) is cached with its final verdict, the start
    of its stdout in `output` (`output_bytes` long in all), the end of its stderr in `stderr`
    and its exit status.
    """

    verdict: Verdict
    output: str | None = None
    error_type: str | None = None
    error: str | None = None
    duration_ms: float = 0.0
    exit_code: int | None = None
    stderr: str | None = None
    output_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CachedRun:
        return cls(verdict=Verdict(data["verdict"]), output=data.get("output"),
                   error_type=data.get("error_type"), error=data.get("error"),
                   duration_ms=float(data.get("duration_ms", 0.0)),
                   exit_code=data.get("exit_code"), stderr=data.get("stderr"),
                   output_bytes=data.get("output_bytes"))


# Outcomes that depend on the machine's load or health rather than on the program.
UNCACHEABLE = frozenset({Verdict.SANDBOX_ERROR, Verdict.TIMEOUT})


def testcase_cache_key(*, program: str, stdin: str, expected: str | None, compare: str,
                       policy: PolicyName, timeout_s: float, memory_mb: int,
                       output_limit_bytes: int, excerpt_chars: int, runtime: str) -> str:
    """The key of one test case's outcome (a namespace of its own: it never equals a triple's)."""
    material = json.dumps(
        ["testcase/1", program, stdin, expected, compare, policy.value, timeout_s, memory_mb,
         output_limit_bytes, excerpt_chars, runtime],
        separators=(",", ":"), ensure_ascii=False,
    )
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()


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
