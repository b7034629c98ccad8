"""Audit records as JSONL or CSV: `/v1/audit/export`, the console's download and
`azr-verify audit export`."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import IO

from azr_verify.service.config import Settings
from azr_verify.service.stores.audit.opener import open_audit_store
from azr_verify.service.stores.audit.query import (
    AuditQuery,
)
from azr_verify.service.stores.audit.records import (
    AuditRecord,
)

CSV_COLUMNS = ("id", "time", "time_utc", "verdict", "rules", "violations", "error_type",
               "error", "api_key_name", "item_id", "policy", "entry", "program_hash",
               "program_chars", "input_hash", "input_chars", "output_hash", "output_chars",
               "truncated", "input", "output", "program", "meta")
# A spreadsheet runs a cell that starts with one of these as a formula; programs are
# model-written, so such cells get a leading apostrophe (OWASP's CSV-injection advice).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def jsonl_lines(records: Iterable[AuditRecord]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record.model_dump(mode="json"), ensure_ascii=True,
                         separators=(",", ":")) + "\n"


def utc_text(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    # Lone surrogates cannot be written as UTF-8: show them as \udXXX escapes.
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_lines(records: Iterable[AuditRecord]) -> Iterator[str]:
    """A header, then one CSV row per record (RFC 4180 quoting)."""

    class _Line:
        text = ""

        def write(self, chunk: str) -> None:
            self.text += chunk

    line = _Line()
    writer = csv.writer(line)
    writer.writerow(CSV_COLUMNS)
    yield line.text
    for r in records:
        line.text = ""
        violations = "; ".join(f"{v.rule}:{v.name}@{v.line}" for v in r.violations)
        writer.writerow([_cell(value) for value in (
            r.id, r.time, utc_text(r.time), r.verdict.value, " ".join(r.rules), violations,
            r.error_type, r.error, r.api_key_name, r.item_id, r.policy, r.entry,
            r.program_hash, r.program_chars, r.input_hash, r.input_chars, r.output_hash,
            r.output_chars, " ".join(r.truncated), r.input, r.output, r.program,
            json.dumps(r.meta, ensure_ascii=True) if r.meta is not None else None)])
        yield line.text


def export_records(settings: Settings, out: IO[str], query: AuditQuery,
                   fmt: str = "jsonl") -> int:
    """`azr-verify audit export` from the store itself (every key's records): every matching
    record, oldest first, as JSONL or CSV. The store is opened read-only."""
    store = open_audit_store(settings, read_only=True)
    count = 0

    def counted() -> Iterator[AuditRecord]:
        nonlocal count
        for record in store.iterate(query):
            count += 1
            yield record

    try:
        for line in (csv_lines if fmt == "csv" else jsonl_lines)(counted()):
            out.write(line)
    finally:
        store.close()
    return count
