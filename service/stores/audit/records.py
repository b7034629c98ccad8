"""Audit records: what the log keeps of one rejected item (docs/design.md §5), built from a
checked triple, a test-case program or a `/run_code` run.

Records are bounded (docs/design.md §9.6): program, input, output, error and meta are kept as
excerpts of at most `audit_excerpt_chars` characters, with the full texts' sha256 and length,
so a 12 MB program costs an audit row a few KB. They are stored as ASCII JSON: model-written
programs may hold lone surrogates, which neither SQLite's UTF-8 nor Redis' clients accept raw.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from azr_verify.service.models import (
    CheckItem,
    CheckResult,
    PolicyName,
    RunResult,
    TestcaseItem,
    TestcaseResult,
    Verdict,
    Violation,
)

DEFAULT_EXCERPT_CHARS = 2048
MAX_ITEM_ID_CHARS = 256
MAX_VIOLATIONS = 20
# Records of programs run as scripts (docs/design.md §10): their `kind`, and the entry shown.
SCRIPT_KIND_TESTCASE = "testcase"
SCRIPT_KIND_RUN_CODE = "run_code"
SCRIPT_ENTRY = "__main__"


class AuditRecord(BaseModel):
    """One rejected item, with bounded excerpts of what was sent.

    Records written before excerpts existed hold the whole texts and no `*_chars`/`*_hash`.
    """

    id: str | None = Field(default=None, description="The store's id of the record (a page "
                           "cursor; the console's item link). Not part of the stored JSON.")
    time: float = Field(description="UNIX time it was checked.")
    program_hash: str = Field(description="sha256 of the whole program text.")
    program: str = Field(description="The program, or its first `audit_excerpt_chars` "
                         "characters (see `truncated`); empty for a comparison item.")
    program_chars: int | None = Field(None, description="Length of the whole program.")
    input: str = Field(description="The input, or an excerpt of it.")
    input_hash: str | None = Field(None, description="sha256 of the whole input.")
    input_chars: int | None = None
    output: str | None = Field(None, description="The expected output the client sent (or "
                               "an excerpt of it).")
    output_hash: str | None = Field(None, description="sha256 of the whole expected output.")
    output_chars: int | None = None
    entry: str
    policy: str
    verdict: Verdict
    violations: list[Violation] = Field(default_factory=list, description=f"The first "
                                        f"{MAX_VIOLATIONS} violations.")
    error_type: str | None = None
    error: str | None = None
    api_key_name: str | None = None
    item_id: str | int | None = None
    meta: dict[str, Any] | None = None
    truncated: list[str] = Field(default_factory=list, description="Fields kept as excerpts "
                                 "or dropped (meta) because they were over the limit; empty "
                                 "when the record is whole.")
    kind: str | None = Field(default=None, description="What was checked: absent for a triple; "
                             "`testcase` (a program and its stdin/stdout cases: input and "
                             "output are those of the case that decided) or `run_code`.")

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude={"id"}), ensure_ascii=True,
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes, record_id: str | None = None) -> AuditRecord:
        # json.loads, not model_validate_json: pydantic's parser refuses escaped lone
        # surrogates, which Python's accepts (and the record was written by Python).
        record = cls.model_validate(json.loads(text))
        record.id = record_id
        return record

    @property
    def rules(self) -> list[str]:
        return sorted({v.rule for v in self.violations})


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


program_hash = text_hash


def records_for(items: Sequence[CheckItem], results: Sequence[CheckResult],
                policy: PolicyName, key_name: str | None, now: float | None = None,
                excerpt_chars: int = DEFAULT_EXCERPT_CHARS) -> list[AuditRecord]:
    """Audit records for the rejected items of a checked batch."""
    stamp = time.time() if now is None else now
    return [_record(item, result, policy, key_name, stamp, excerpt_chars)
            for item, result in zip(items, results, strict=True) if result.verdict.is_rejection]


def testcase_records_for(items: Sequence[TestcaseItem], results: Sequence[TestcaseResult],
                         policy: PolicyName, key_name: str | None, now: float | None = None,
                         excerpt_chars: int = DEFAULT_EXCERPT_CHARS) -> list[AuditRecord]:
    """Audit records for the rejected programs of a test-case batch: the case that decided the
    program's verdict gives the input (its stdin), the output (its expected stdout) and the
    error type."""
    stamp = time.time() if now is None else now
    records = []
    for item, result in zip(items, results, strict=True):
        if not result.verdict.is_rejection:
            continue
        deciding = next((number for number, case in enumerate(result.cases)
                         if case.verdict is result.verdict), 0)
        case = item.cases[deciding]
        error_type = result.cases[deciding].error_type if result.cases else None
        records.append(_script_record(
            kind=SCRIPT_KIND_TESTCASE, program=item.program, stdin=case.input,
            expected=case.output, verdict=result.verdict, violations=result.violations,
            error_type=error_type, error=result.error, policy=policy, key_name=key_name,
            item_id=item.id, meta=item.meta, stamp=stamp, limit=excerpt_chars))
    return records


def run_code_record(program: str, stdin: str, result: RunResult, policy: PolicyName,
                    key_name: str | None, now: float | None = None,
                    excerpt_chars: int = DEFAULT_EXCERPT_CHARS) -> AuditRecord | None:
    """The audit record of a /run_code run that was rejected (anything but exit status 0)."""
    if not result.verdict.is_rejection:
        return None
    error = result.error
    if result.stderr:
        error = f"{error or ''}\nstderr (end): {result.stderr[-excerpt_chars:]}".lstrip()
    return _script_record(
        kind=SCRIPT_KIND_RUN_CODE, program=program, stdin=stdin, expected=None,
        verdict=result.verdict, violations=result.violations, error_type=result.error_type,
        error=error, policy=policy, key_name=key_name, item_id=None, meta=None,
        stamp=time.time() if now is None else now, limit=excerpt_chars)


def _script_record(*, kind: str, program: str, stdin: str, expected: str | None,
                   verdict: Verdict, violations: Sequence[Violation], error_type: str | None,
                   error: str | None, policy: PolicyName, key_name: str | None,
                   item_id: str | int | None, meta: dict[str, Any] | None, stamp: float,
                   limit: int) -> AuditRecord:
    truncated: list[str] = []

    def excerpt(name: str, text: str, chars: int = limit) -> str:
        if len(text) <= chars:
            return text
        truncated.append(name)
        return text[:chars]

    if isinstance(item_id, str):
        item_id = excerpt("item_id", item_id, MAX_ITEM_ID_CHARS)
    if len(violations) > MAX_VIOLATIONS:
        truncated.append("violations")
    return AuditRecord(
        time=stamp, kind=kind, program_hash=text_hash(program), program_chars=len(program),
        program=excerpt("program", program), input=excerpt("input", stdin),
        input_hash=text_hash(stdin), input_chars=len(stdin),
        output=None if expected is None else excerpt("output", expected),
        output_hash=None if expected is None else text_hash(expected),
        output_chars=None if expected is None else len(expected),
        entry=SCRIPT_ENTRY, policy=policy.value, verdict=verdict,
        violations=list(violations[:MAX_VIOLATIONS]), error_type=error_type,
        error=None if error is None else excerpt("error", error), api_key_name=key_name,
        item_id=item_id, meta=_bounded_meta(meta, limit, truncated), truncated=truncated)


def _record(item: CheckItem, result: CheckResult, policy: PolicyName, key_name: str | None,
            stamp: float, limit: int) -> AuditRecord:
    truncated: list[str] = []

    def excerpt(name: str, text: str, chars: int = limit) -> str:
        if len(text) <= chars:
            return text
        truncated.append(name)
        return text[:chars]

    item_id = item.id
    if isinstance(item_id, str):
        item_id = excerpt("item_id", item_id, MAX_ITEM_ID_CHARS)
    if len(result.violations) > MAX_VIOLATIONS:
        truncated.append("violations")
    program = item.program or ""  # "" for a comparison item: nothing ran
    return AuditRecord(
        time=stamp, program_hash=text_hash(program), program_chars=len(program),
        program=excerpt("program", program),
        input=excerpt("input", item.input), input_hash=text_hash(item.input),
        input_chars=len(item.input),
        output=None if item.output is None else excerpt("output", item.output),
        output_hash=None if item.output is None else text_hash(item.output),
        output_chars=None if item.output is None else len(item.output),
        entry=item.entry, policy=policy.value, verdict=result.verdict,
        violations=result.violations[:MAX_VIOLATIONS], error_type=result.error_type,
        error=None if result.error is None else excerpt("error", result.error),
        api_key_name=key_name, item_id=item_id,
        meta=_bounded_meta(item.meta, limit, truncated), truncated=truncated)


def _bounded_meta(meta: dict[str, Any] | None, limit: int,
                  truncated: list[str]) -> dict[str, Any] | None:
    """The client's meta if its JSON fits the excerpt limit; dropped (and said so) if not."""
    if meta is None:
        return None
    try:
        size = len(json.dumps(meta, ensure_ascii=True, separators=(",", ":")))
    except (ValueError, TypeError, RecursionError):  # deeper than JSON can write back
        size = limit + 1
    if size <= limit:
        return meta
    truncated.append("meta")
    return None
