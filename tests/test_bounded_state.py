"""What the trusted process keeps is bounded in bytes: caches, memos and audit records."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest

from azr_verify.service.errors import ConfigError
from azr_verify.service.lru import ENTRY_OVERHEAD_BYTES, ByteLRU
from azr_verify.service.memo import LiteralParses, ProgramChecks
from azr_verify.service.models import CheckItem, CheckResult, PolicyName, Verdict, Violation
from azr_verify.service.stores.audit.query import AuditQuery
from azr_verify.service.stores.audit.records import AuditRecord, records_for, text_hash
from azr_verify.service.stores.audit.sqlite import SqliteAuditStore
from azr_verify.service.stores.cache.entries import CachedRun
from azr_verify.service.stores.cache.memory import MemoryCache
from azr_verify.service.verify.equality import values_equal
from azr_verify.service.verify.literals import LiteralError

# --- ByteLRU ------------------------------------------------------------------------------------


def test_lru_is_bounded_by_bytes_not_entries() -> None:
    lru: ByteLRU[int, str] = ByteLRU(max_bytes=10 * (1000 + ENTRY_OVERHEAD_BYTES))
    for key in range(100):
        lru.put(key, "x" * 1000, size=1000)
        assert lru.bytes <= lru.max_bytes
    assert len(lru) == 10
    assert lru.get(0) is None and lru.get(99) == "x" * 1000


def test_lru_keeps_what_is_used_and_drops_the_rest() -> None:
    lru: ByteLRU[str, int] = ByteLRU(max_bytes=3 * (10 + ENTRY_OVERHEAD_BYTES))
    for key in "abc":
        lru.put(key, ord(key), size=10)
    assert lru.get("a") == ord("a")  # now the most recently used
    lru.put("d", 0, size=10)
    assert lru.get("b") is None and lru.get("a") == ord("a") and lru.get("d") == 0


def test_lru_refuses_an_entry_larger_than_itself_and_replaces_in_place() -> None:
    lru: ByteLRU[str, str] = ByteLRU(max_bytes=1000)
    lru.put("big", "x", size=10_000)
    assert lru.get("big") is None and lru.bytes == 0
    lru.put("k", "1", size=100)
    lru.put("k", "2", size=300)
    assert lru.get("k") == "2" and lru.bytes == 300 + ENTRY_OVERHEAD_BYTES and len(lru) == 1


def test_result_cache_is_bounded_by_bytes() -> None:
    cache = MemoryCache(max_bytes=1_000_000)
    for index in range(1000):  # 10 MB of outputs offered
        cache.put(f"{index:064x}", CachedRun(verdict=Verdict.ACCEPTED, output="7" * 10_000))
    assert cache.bytes <= 1_000_000
    assert 50 <= len(cache) < 100
    assert cache.get(f"{999:064x}") is not None and cache.get(f"{0:064x}") is None


# --- memos --------------------------------------------------------------------------------------

def test_program_checks_refuse_long_programs_before_parsing() -> None:
    checks = ProgramChecks(max_program_chars=1000, max_bytes=1_000_000)
    long = "def f(a):\n    return a\n" + "#" * 2000
    result = checks(long, PolicyName.AZR, "f")
    assert result.syntax_error is not None and "over the limit of 1000" in result.syntax_error
    assert checks.cached_bytes == 0
    assert checks("def f(a):\n    return a\n", PolicyName.AZR, "f").has_entry


def test_program_checks_are_memoised_by_content_within_their_bytes() -> None:
    checks = ProgramChecks(max_program_chars=100_000, max_bytes=64 * 1024)
    programs = [f"def f(a):\n    return a + {i}\n" + "#" * 20_000 for i in range(50)]
    first = [checks(p, PolicyName.AZR, "f") for p in programs]
    # Keys are hashes: 50 programs of 20 KB fit in 64 KB of memo.
    assert checks.cached_bytes <= 64 * 1024
    assert all(checks(p, PolicyName.AZR, "f") is r for p, r in zip(programs, first, strict=True))
    assert checks(programs[0], PolicyName.PERMISSIVE, "f") is not first[0]


def test_a_program_the_policy_cannot_walk_is_a_syntax_error_not_a_crash() -> None:
    checks = ProgramChecks(max_program_chars=1_000_000, max_bytes=1_000_000)
    # Parses fine (a left-leaning chain of additions), but is thousands of levels deep.
    deep = "def f(a):\n    return " + "a + " * 20_000 + "a\n"
    previous = sys.getrecursionlimit()
    try:
        result = checks(deep, PolicyName.AZR, "f")
    finally:
        sys.setrecursionlimit(previous)
    assert result.syntax_error is None or "nested" in result.syntax_error


def test_literal_parses_are_memoised_refusals_too() -> None:
    parses = LiteralParses(max_bytes=1_000_000)
    text = "[" + ", ".join(map(str, range(1000))) + "]"
    assert values_equal(parses(text), list(range(1000)))
    assert parses(text) is parses(text)
    for _ in range(2):
        with pytest.raises(LiteralError, match="name 'x'"):
            parses("[1, x]")
    with pytest.raises(LiteralError, match="over the limit"):
        parses("'" + "x" * 1_000_001 + "'")


def test_literal_memo_is_bounded_by_bytes() -> None:
    parses = LiteralParses(max_bytes=200_000)
    for index in range(100):  # 100 distinct 10 KB outputs
        parses(repr("x" * 10_000 + str(index)))
    assert parses.cached_bytes <= 200_000


# --- audit records ------------------------------------------------------------------------------

def rejected(item: CheckItem, error: str = "boom") -> CheckResult:
    return CheckResult(id=item.id, verdict=Verdict.RUNTIME_ERROR, error_type="ValueError",
                       error=error)


def test_audit_records_keep_excerpts_and_hashes() -> None:
    program = "def f(a):\n    raise ValueError\n" + "#" * 50_000
    item = CheckItem(id="x" * 1000, program=program, input="'" + "i" * 50_000 + "'",
                     output="'" + "o" * 50_000 + "'", meta={"blob": "m" * 50_000})
    [record] = records_for([item], [rejected(item, "e" * 50_000)], PolicyName.AZR, "trainer",
                           excerpt_chars=1000)
    assert record.program == program[:1000] and record.program_chars == len(program)
    assert record.program_hash == text_hash(program)
    assert record.input == item.input[:1000] and record.input_hash == text_hash(item.input)
    assert record.output == item.output[:1000] and record.output_chars == len(item.output)
    assert record.error == "e" * 1000
    assert record.meta is None
    assert record.item_id == "x" * 256
    assert set(record.truncated) == {"program", "input", "output", "error", "meta", "item_id"}
    assert len(record.to_json()) < 8000


def test_small_audit_records_are_whole() -> None:
    item = CheckItem(id=3, program="import os\ndef f(a):\n    return a", input="1",
                     meta={"step": 1})
    result = CheckResult(id=3, verdict=Verdict.UNSAFE, violations=[
        Violation(rule="import_denied", name="os", line=1)] * 50)
    [record] = records_for([item], [result], PolicyName.AZR, None)
    assert record.program == item.program and record.meta == {"step": 1}
    assert len(record.violations) == 20 and record.truncated == ["violations"]
    assert record.output is None and record.output_hash is None


def test_deep_meta_is_dropped_not_a_crash() -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(5000):
        node["k"] = {}
        node = node["k"]  # type: ignore[assignment]
    item = CheckItem.model_construct(id=1, program="x", input="1", output=None, entry="f",
                                     determinism_runs=None, timeout_s=None, memory_mb=None,
                                     meta=deep)
    [record] = records_for([item], [rejected(item)], PolicyName.AZR, None)
    assert record.meta is None and "meta" in record.truncated


# --- the SQLite store ---------------------------------------------------------------------------

def record(key: str | None, index: int) -> AuditRecord:
    return AuditRecord(time=1000.0 + index, program_hash="h", program=f"p{index}", input="1",
                       entry="f", policy="azr", verdict=Verdict.UNSAFE, api_key_name=key)


def test_sqlite_store_scopes_by_key_and_pages(tmp_path: Path) -> None:
    store = SqliteAuditStore(tmp_path / "audit.sqlite3", retention=10_000)
    store.record([record("a" if i % 2 else "b", i) for i in range(100)])
    mine = list(store.iterate(AuditQuery(api_key_name="a")))
    assert len(mine) == 50 and {r.api_key_name for r in mine} == {"a"}
    assert [r.time for r in mine[:2]] == [1001.0, 1003.0]
    newest = store.page(AuditQuery(), 3)
    assert [r.time for r in newest.records] == [1099.0, 1098.0, 1097.0]
    after = store.page(AuditQuery(), 3, cursor=newest.next_cursor)
    assert [r.time for r in after.records] == [1096.0, 1095.0, 1094.0]
    assert store.page(AuditQuery(api_key_name="c"), 100).records == []
    store.close()


def test_sqlite_store_migrates_a_database_without_key_column(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE audit (id INTEGER PRIMARY KEY, time REAL NOT NULL, "
                "verdict TEXT NOT NULL, record TEXT NOT NULL)")
    for index, key in enumerate(["a", "b", "a"]):
        old.execute("INSERT INTO audit (time, verdict, record) VALUES (?, ?, ?)",
                    (1000.0 + index, "unsafe", record(key, index).to_json()))
    old.commit()
    old.close()
    reader = SqliteAuditStore(path, retention=100, read_only=True)  # before migration
    assert len(list(reader.iterate(AuditQuery(api_key_name="a")))) == 2
    reader.close()
    store = SqliteAuditStore(path, retention=100)
    assert [r.time for r in store.iterate(AuditQuery(api_key_name="a"))] == [1000.0, 1002.0]
    store.close()


def test_read_only_store_never_creates_a_database(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no audit database"):
        SqliteAuditStore(tmp_path / "nowhere" / "audit.sqlite3", retention=1, read_only=True)
    assert not (tmp_path / "nowhere").exists()


def test_records_round_trip_lone_surrogates() -> None:
    original = record("k", 1).model_copy(update={"program": "\ud800"})
    assert AuditRecord.from_json(original.to_json()) == original
    assert json.loads(original.to_json())["program"] == "\ud800"


def nested_meta(depth: int) -> dict[str, object]:
    meta: dict[str, object] = {}
    node = meta
    for _ in range(depth - 1):
        child: dict[str, object] = {}
        node["k"] = child
        node = child
    return meta


def test_meta_deeper_than_it_can_be_written_back_is_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="meta is nested more than 32 levels"):
        CheckItem.model_validate({"program": "x", "input": "1", "meta": nested_meta(300)})
    item = CheckItem.model_validate({"program": "x", "input": "1", "meta": nested_meta(32)})
    [record] = records_for([item], [rejected(item)], PolicyName.AZR, None)
    assert AuditRecord.from_json(record.to_json()).meta == nested_meta(32)
    assert item.model_dump(mode="json")["meta"] == nested_meta(32)
