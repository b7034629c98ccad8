"""The SQLite audit store: every filter answered from its indexes, paging, counts, trimming,
and the upgrade of a schema-1 log in place (a real SQLite file, no service needed)."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from azr_verify.service.errors import ConfigError, InvalidQueryError
from azr_verify.service.models import Verdict, Violation
from azr_verify.service.stores.audit.export import csv_lines, jsonl_lines
from azr_verify.service.stores.audit.query import AuditQuery
from azr_verify.service.stores.audit.records import AuditRecord
from azr_verify.service.stores.audit.sqlite import SCHEMA_VERSION, SqliteAuditStore

T0 = 1_700_000_040.0  # a whole minute


def record(k: int, verdict: Verdict, key: str | None = "trainer", program: str | None = None,
           rules: tuple[str, ...] = (), error: str | None = None) -> AuditRecord:
    return AuditRecord(
        time=T0 + k, program_hash=f"h{k}", program=program or f"def f(x):\n    return x + {k}",
        input=str(k), entry="f", policy="azr", verdict=verdict,
        violations=[Violation(rule=rule, name=f"n{k}", line=1) for rule in rules],
        error=error, api_key_name=key, item_id=k)


def mixed() -> list[AuditRecord]:
    records = []
    for k in range(300):
        if k % 3 == 0:
            records.append(record(k, Verdict.UNSAFE, rules=("import_denied",) if k % 2 else
                                  ("builtin", "dunder_attribute")))
        elif k % 3 == 1:
            records.append(record(k, Verdict.RUNTIME_ERROR, key="evaluator",
                                  error=f"ZeroDivisionError in step{k}"))
        else:
            records.append(record(k, Verdict.TIMEOUT))
    return records


@pytest.fixture
def store(tmp_path: Path) -> SqliteAuditStore:
    opened = SqliteAuditStore(tmp_path / "audit.sqlite3", retention=1_000_000)
    opened.record(mixed())
    return opened


def all_pages(store: SqliteAuditStore, query: AuditQuery, size: int,
              oldest_first: bool = False) -> list[AuditRecord]:
    found: list[AuditRecord] = []
    cursor = None
    while True:
        page = store.page(query, size, cursor, oldest_first)
        found += page.records
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


@pytest.mark.parametrize("query", [
    AuditQuery(),
    AuditQuery(verdict=Verdict.UNSAFE),
    AuditQuery(since=T0 + 100, until=T0 + 200),
    AuditQuery(rule="import_denied"),
    AuditQuery(rule="dunder_attribute", since=T0 + 50),
    AuditQuery(text="zerodivision"),
    AuditQuery(text="ZeroDivisionError in step2"),  # the last word is a prefix: 2, 20..., 200...
    AuditQuery(api_key_name="evaluator", verdict=Verdict.RUNTIME_ERROR, until=T0 + 150),
    AuditQuery(verdict=Verdict.TIMEOUT, rule="import_denied"),
], ids=str)
def test_every_filter_pages_through_exactly_the_matching_records(store: SqliteAuditStore,
                                                                 query: AuditQuery) -> None:
    expected = sorted((r for r in mixed() if query.matches(r)), key=lambda r: -r.time)
    assert [r.item_id for r in all_pages(store, query, 7)] == [r.item_id for r in expected]
    assert [r.item_id for r in all_pages(store, query, 7, oldest_first=True)] == \
        [r.item_id for r in reversed(expected)]
    assert [r.item_id for r in store.iterate(query)] == [r.item_id for r in
                                                         reversed(expected)]
    if query.text == "ZeroDivisionError in step2":
        assert expected and all((r.error or "").split()[-1].startswith("step2")
                                for r in expected)


def test_get_respects_the_scope(store: SqliteAuditStore) -> None:
    newest = store.page(AuditQuery(), 1).records[0]
    assert newest.id is not None and newest.api_key_name == "trainer"
    assert store.get(newest.id, AuditQuery()) == newest
    assert store.get(newest.id, AuditQuery(api_key_name="evaluator")) is None
    assert store.get("999999", AuditQuery()) is None
    assert store.get("not-an-id", AuditQuery()) is None


def test_counts_from_minutes_and_from_rows_agree(store: SqliteAuditStore) -> None:
    def expected(query: AuditQuery, width: float) -> list[Counter[str]]:
        buckets: list[Counter[str]] = [Counter() for _ in range(5)]
        for r in mixed():
            if query.matches(r) and T0 <= r.time < T0 + 5 * width:
                buckets[int((r.time - T0) // width)][r.verdict.value] += 1
        return buckets

    for query in (AuditQuery(), AuditQuery(verdict=Verdict.TIMEOUT),
                  AuditQuery(api_key_name="evaluator"), AuditQuery(rule="builtin"),
                  AuditQuery(rule="builtin", api_key_name="trainer"),
                  AuditQuery(text="zerodivisionerror"), AuditQuery(since=T0 + 120),
                  AuditQuery(since=T0 + 60, until=T0 + 240, verdict=Verdict.UNSAFE)):
        for width in (60.0, 30.0):  # per-minute counts (when nothing else applies), rows
            assert store.counts(query, T0, width, 5).buckets == expected(query, width)


def test_counts_from_hours(tmp_path: Path) -> None:
    hour = 1_699_999_200.0  # a whole hour
    store = SqliteAuditStore(tmp_path / "audit.sqlite3", retention=1_000)
    store.record([AuditRecord(time=hour + 37 * k, program_hash="h", program="p", input="1",
                              entry="f", policy="azr", verdict=Verdict.TIMEOUT if k % 4 else
                              Verdict.UNSAFE) for k in range(400)])
    counts = store.counts(AuditQuery(), hour, 3600.0, 5).buckets
    expected = [Counter[str]() for _ in range(5)]
    for k in range(400):
        expected[int(37 * k // 3600)]["timeout" if k % 4 else "unsafe"] += 1
    assert counts == expected


def test_time_bounds_and_rules(store: SqliteAuditStore) -> None:
    assert store.time_bounds(AuditQuery()) == (T0, T0 + 299)
    assert store.time_bounds(AuditQuery(verdict=Verdict.TIMEOUT)) == (T0 + 2, T0 + 299)
    assert store.time_bounds(AuditQuery(since=T0 + 1000)) is None
    assert store.rules() == ["builtin", "dunder_attribute", "import_denied"]


def test_a_bad_cursor_or_search_is_a_query_error(store: SqliteAuditStore) -> None:
    with pytest.raises(InvalidQueryError):
        store.page(AuditQuery(), 5, cursor="1700000000000-0")
    with pytest.raises(InvalidQueryError):
        AuditQuery(text="**")


def test_trimming_keeps_every_index_consistent(tmp_path: Path) -> None:
    store = SqliteAuditStore(tmp_path / "audit.sqlite3", retention=500)
    # Trimming runs once per 1000 inserts: after 2000, the newest 500 are left.
    for start in range(0, 2000, 100):
        store.record([record(k, Verdict.UNSAFE, rules=("import_denied",),
                             program=f"import os  # marker{k}") for k in range(start, start + 100)])
    kept = all_pages(store, AuditQuery(), 1000)
    assert sorted(r.item_id for r in kept) == list(range(1500, 2000))  # type: ignore[type-var]
    assert len(all_pages(store, AuditQuery(rule="import_denied"), 1000)) == 500
    assert store.page(AuditQuery(text="marker1499"), 5).records == []
    assert [r.item_id for r in store.page(AuditQuery(text="marker1500"), 5).records] == [1500]
    counts = store.counts(AuditQuery(), T0 - 60, 60.0, 40)
    assert sum(sum(b.values()) for b in counts.buckets) == 500


def test_lone_surrogates_are_stored_searched_and_exported(tmp_path: Path) -> None:
    store = SqliteAuditStore(tmp_path / "audit.sqlite3", retention=100)
    store.record([record(1, Verdict.UNSAFE, program="def f(x):\n    return '\ud800' # odd")])
    (found,) = store.page(AuditQuery(text="odd"), 5).records
    assert found.program.endswith("'\ud800' # odd")
    assert "\\ud800" in next(iter(jsonl_lines([found])))
    assert "\\ud800" in list(csv_lines([found]))[1]


def test_csv_cells_cannot_become_spreadsheet_formulas() -> None:
    evil = record(1, Verdict.UNSAFE, program="=HYPERLINK(\"http://x\")", error="+1")
    row = list(csv_lines([evil]))[1]
    assert "'=HYPERLINK" in row and ",'+1," in row


def test_a_schema_1_log_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE audit (id INTEGER PRIMARY KEY, time REAL NOT NULL, "
               "verdict TEXT NOT NULL, record TEXT NOT NULL)")
    db.executemany("INSERT INTO audit (time, verdict, record) VALUES (?, ?, ?)",
                   [(r.time, r.verdict.value, r.to_json()) for r in mixed()])
    db.commit()
    db.close()
    store = SqliteAuditStore(path, retention=1_000_000)
    assert len(all_pages(store, AuditQuery(rule="import_denied"), 100)) == 50
    assert len(all_pages(store, AuditQuery(api_key_name="evaluator"), 100)) == 100
    assert {r.item_id for r in store.page(AuditQuery(text="step7"), 10).records} == {
        7, 70, 73, 76, 79}
    assert sum(sum(b.values()) for b in store.counts(AuditQuery(), T0, 60.0, 5).buckets) == 300
    store.close()
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION
    # Opening it again changes nothing.
    again = SqliteAuditStore(path, retention=1_000_000)
    assert len(all_pages(again, AuditQuery(rule="import_denied"), 100)) == 50


# -- files written by earlier versions ------------------------------------------------------
#
# Three layouts exist besides schema 2 as written now: schema 1 (above); schema 1 with the
# key_name column and audit_key index of the first per-key reads (user_version 0); and schema 2
# with records written before excerpts (no *_chars, *_hash or truncated in the JSON).

FIRST_PER_KEY_DDL = (
    "CREATE TABLE audit (id INTEGER PRIMARY KEY, time REAL NOT NULL, verdict TEXT NOT NULL, "
    "record TEXT NOT NULL, key_name TEXT)",
    "CREATE INDEX audit_time ON audit (time)",
    "CREATE INDEX audit_verdict_time ON audit (verdict, time)",
    "CREATE INDEX audit_key ON audit (key_name, id)",
)


def first_per_key_log(path: Path) -> None:
    db = sqlite3.connect(path)
    for statement in FIRST_PER_KEY_DDL:
        db.execute(statement)
    db.executemany("INSERT INTO audit (time, verdict, record, key_name) VALUES (?, ?, ?, ?)",
                   [(r.time, r.verdict.value, r.to_json(), r.api_key_name) for r in mixed()])
    db.commit()
    db.close()


def test_a_log_with_the_first_per_key_column_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    first_per_key_log(path)
    store = SqliteAuditStore(path, retention=1_000_000)
    assert len(all_pages(store, AuditQuery(api_key_name="evaluator"), 100)) == 100
    assert len(all_pages(store, AuditQuery(rule="import_denied"), 100)) == 50
    assert store.rules() == ["builtin", "dunder_attribute", "import_denied"]
    store.close()
    db = sqlite3.connect(path)
    indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert not indexes & {"audit_time", "audit_verdict_time", "audit_key"}


@pytest.mark.parametrize("layout", ["schema 1", "first per-key"])
def test_a_read_only_store_reads_an_older_log_as_it_is(tmp_path: Path, layout: str) -> None:
    path = tmp_path / "audit.sqlite3"
    if layout == "first per-key":
        first_per_key_log(path)
    else:
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE audit (id INTEGER PRIMARY KEY, time REAL NOT NULL, "
                   "verdict TEXT NOT NULL, record TEXT NOT NULL)")
        db.executemany("INSERT INTO audit (time, verdict, record) VALUES (?, ?, ?)",
                       [(r.time, r.verdict.value, r.to_json()) for r in mixed()])
        db.commit()
        db.close()
    before = path.read_bytes()
    reader = SqliteAuditStore(path, retention=1_000_000, read_only=True)
    for query in (AuditQuery(), AuditQuery(api_key_name="evaluator", until=T0 + 150),
                  AuditQuery(rule="import_denied"), AuditQuery(text="zerodivision")):
        expected = [r.item_id for r in mixed() if query.matches(r)]
        assert [r.item_id for r in reader.iterate(query)] == expected
        assert [r.item_id for r in all_pages(reader, query, 7)] == expected[::-1]
    with pytest.raises(ConfigError, match="start the service on it once"):
        reader.counts(AuditQuery(), T0, 60.0, 5)
    reader.close()
    assert path.read_bytes() == before  # nothing written, nothing upgraded


def test_schema_2_records_from_before_excerpts_read_search_and_trim(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    store = SqliteAuditStore(path, retention=50)
    store.record([record(k, Verdict.UNSAFE, rules=("import_denied",),
                         program=f"import os  # marker{k}") for k in range(40)])
    store.close()
    # As the console's version wrote them: the same rows, JSON without the excerpt fields.
    excerpt_fields = ("program_chars", "input_hash", "input_chars", "output_hash",
                      "output_chars", "truncated")
    db = sqlite3.connect(path)
    for row_id, text in db.execute("SELECT id, record FROM audit").fetchall():
        data = json.loads(text)
        for name in excerpt_fields:
            del data[name]
        db.execute("UPDATE audit SET record = ? WHERE id = ?", (json.dumps(data), row_id))
    db.commit()
    db.close()
    store = SqliteAuditStore(path, retention=50)
    (found,) = store.page(AuditQuery(text="marker7"), 5).records
    assert found.program == "import os  # marker7" and found.truncated == []
    assert found.program_chars is None and found.input_hash is None
    # Trimming deletes old rows from every index, re-deriving their words from the old JSON.
    for start in range(40, 1040, 100):
        store.record([record(k, Verdict.UNSAFE, rules=("import_denied",),
                             program=f"import os  # marker{k}") for k in range(start, start + 100)])
    assert store.page(AuditQuery(text="marker7"), 5).records == []
    assert len(all_pages(store, AuditQuery(rule="import_denied"), 1000)) == 50
    assert len(all_pages(store, AuditQuery(text="import"), 1000)) == 50
    store.close()


def test_excerpted_records_round_trip_through_the_store(tmp_path: Path) -> None:
    from azr_verify.service.models import CheckItem, CheckResult, PolicyName
    from azr_verify.service.stores.audit.records import records_for, text_hash

    program = "import os\n" + "x = 1  # filler\n" * 1000
    item = CheckItem(id="big", program=program, input="'" + "i" * 5000 + "'")
    result = CheckResult(id="big", verdict=Verdict.UNSAFE,
                         violations=[Violation(rule="import_denied", name="os", line=1)])
    [written] = records_for([item], [result], PolicyName.AZR, "trainer", now=T0,
                            excerpt_chars=256)
    store = SqliteAuditStore(tmp_path / "audit.sqlite3", retention=100)
    store.record([written])
    (read,) = store.page(AuditQuery(api_key_name="trainer", rule="import_denied"), 5).records
    assert read.model_dump(exclude={"id"}) == written.model_dump(exclude={"id"})
    assert len(read.program) == 256 and read.program_chars == len(program)
    assert read.program_hash == text_hash(program) and read.input_hash == text_hash(item.input)
    assert set(read.truncated) == {"program", "input"}
    assert read.id is not None and store.get(read.id, AuditQuery(api_key_name="other")) is None
    header, row = list(csv_lines([read]))
    assert "program_chars" in header and "truncated" in header
    assert f",{len(program)}," in row and "program input" in row
