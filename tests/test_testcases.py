"""Test-case items on the session's real sandbox pool (docs/design.md §10): every verdict a
case can get, a program's verdict, the cache, deduplication, policies and limits."""

from __future__ import annotations

import pytest

from azr_verify.service.engine import Engine
from azr_verify.service.models import (
    CompareMode,
    PolicyName,
    TestCase,
    TestcaseItem,
    TestcaseResult,
    Verdict,
)

from .guards import fresh

SUM = "import sys\nprint(sum(map(int, sys.stdin.read().split())))\n"


def item(program: str, *cases: tuple[str, str | None], **fields: object) -> TestcaseItem:
    return TestcaseItem(program=fresh(program),
                        cases=[TestCase(input=i, output=o) for i, o in cases], **fields)


def one(engine: Engine, program: str, *cases: tuple[str, str | None],
        policy: PolicyName = PolicyName.PERMISSIVE, **fields: object) -> TestcaseResult:
    [result] = engine.check_testcases([item(program, *cases, **fields)], policy)
    return result


@pytest.mark.sandbox
def test_each_case_gets_its_own_verdict_and_the_program_one(engine: Engine) -> None:
    result = one(engine, SUM, ("1 2\n", "3\n"), ("10 20 30", "60"), ("1", "3"), ("", None))
    assert [c.verdict for c in result.cases] == [Verdict.ACCEPTED, Verdict.ACCEPTED,
                                                 Verdict.WRONG_OUTPUT, Verdict.ACCEPTED]
    assert result.verdict is Verdict.WRONG_OUTPUT
    assert (result.passed, result.total) == (3, 4)
    assert result.error is not None and result.error.startswith("case 3 of 4: wrong_output")
    assert result.cases[2].stdout == "1\n" and result.cases[2].exit_code == 0
    assert result.cases[3].stdout == "0\n"  # no expected output: it ran, and here is stdout
    assert not any(c.cached for c in result.cases)


@pytest.mark.sandbox
def test_runtime_errors_carry_the_exit_code_and_the_end_of_stderr(engine: Engine) -> None:
    result = one(engine, "x = int(input())\nprint(10 // x)\n", ("2", "5"), ("0", "0"))
    assert result.verdict is Verdict.RUNTIME_ERROR and result.passed == 1
    failed = result.cases[1]
    assert failed.exit_code == 1 and failed.error == "exited with status 1"
    assert failed.stderr is not None and failed.stderr.endswith(
        "ZeroDivisionError: integer division or modulo by zero\n")
    exits = one(engine, "import sys\nprint('5')\nsys.exit(4)\n", ("", "5"))
    assert exits.verdict is Verdict.RUNTIME_ERROR and exits.cases[0].exit_code == 4
    long_err = one(engine, "import sys\nsys.stderr.write('e' * 100000 + 'END')\n"
                           "raise SystemExit(2)\n", ("", ""))
    stderr = long_err.cases[0].stderr
    assert stderr is not None and stderr.endswith("eeeEND")
    assert len(stderr) == engine.settings.testcase_excerpt_chars


@pytest.mark.sandbox
def test_limits_are_the_sandboxes_observations(engine: Engine) -> None:
    results = engine.check_testcases([
        item("while True:\n    pass\n", ("", "")),
        item("import time\ntime.sleep(30)\n", ("", "")),
        item("kept = []\nwhile True:\n    kept.append(bytearray(2**20))\n", ("", ""),
             memory_mb=64),
        item("import sys\nsys.stdout.write('x' * (2 * 2**20))\n", ("", "")),
        item("import sys\nsys.stderr.write('x' * (2 * 2**20))\n", ("", "")),
    ], PolicyName.PERMISSIVE)
    got = [r.verdict for r in results]
    assert got == [Verdict.TIMEOUT, Verdict.TIMEOUT, Verdict.MEMORY_LIMIT,
                   Verdict.OUTPUT_LIMIT, Verdict.OUTPUT_LIMIT]


@pytest.mark.sandbox
def test_compare_modes_apply_per_item(engine: Engine) -> None:
    program = "print(*input().split(), sep='\\n')\n"
    cases = [("a b c", "a b c")]
    verdicts = [one(engine, program, *cases, compare=mode).verdict for mode in CompareMode]
    assert verdicts == [Verdict.WRONG_OUTPUT, Verdict.WRONG_OUTPUT, Verdict.ACCEPTED]


@pytest.mark.sandbox
def test_static_checks_run_in_the_trusted_process(engine: Engine) -> None:
    syntax = one(engine, "print(1\n", ("", "1"), ("", "1"))
    assert syntax.verdict is Verdict.SYNTAX_ERROR
    assert [c.verdict for c in syntax.cases] == [Verdict.SYNTAX_ERROR] * 2
    assert syntax.cases[0].duration_ms == 0.0 and syntax.cases[0].exit_code is None
    # The policy applies as for triples: azr refuses what stdin programs need (input, sys).
    unsafe = one(engine, SUM, ("1", "1"), policy=PolicyName.AZR)
    assert unsafe.verdict is Verdict.UNSAFE
    assert {v.name for v in unsafe.violations} == {"sys"}
    assert unsafe.error == "rejected by policy azr: sys"
    allowed = one(engine, "print(sorted([3, 1, 2]))\n", ("", "[1, 2, 3]"),
                  policy=PolicyName.AZR)
    assert allowed.verdict is Verdict.ACCEPTED


@pytest.mark.sandbox(cache_hits=2)
def test_cases_are_cached_by_content_and_deduplicated(engine: Engine) -> None:
    program = fresh(SUM)
    first = TestcaseItem(program=program, cases=[TestCase(input="1 1", output="2"),
                                                 TestCase(input="2 2", output="4")])
    before = engine.stats().executions
    results = engine.check_testcases([first, first], PolicyName.PERMISSIVE)
    assert engine.stats().executions - before == 2  # the second item shares the runs
    assert all(r.verdict is Verdict.ACCEPTED and not r.cached for r in results)
    again = engine.check_testcases([first], PolicyName.PERMISSIVE)[0]
    assert again.cached and again.verdict is Verdict.ACCEPTED and again.duration_ms == 0.0
    # Another comparison mode, expected output or limit is another key.
    other = first.model_copy(update={"compare": CompareMode.TOKENS})
    assert not engine.check_testcases([other], PolicyName.PERMISSIVE)[0].cached


@pytest.mark.sandbox
def test_limits_asked_for_are_reported_as_applied(engine: Engine) -> None:
    asked = one(engine, "print(1)\n", ("", "1"), timeout_s=1000.0, memory_mb=64)
    assert asked.limits is not None
    assert asked.limits.timeout_s == engine.settings.max_timeout_s
    assert asked.limits.memory_mb == 64
    assert asked.limits.output_limit_bytes == engine.settings.script_output_limit_bytes
    assert one(engine, "print(1)\n", ("", "1")).limits is None


@pytest.mark.sandbox
def test_unicode_and_binary_output(engine: Engine) -> None:
    result = one(engine, "import sys\nprint(input()[::-1])\nsys.stdout.flush()\n"
                         "sys.stdout.buffer.write(b'\\xff')\n",
                 ("héllo ✓", None))
    case = result.cases[0]
    assert case.verdict is Verdict.ACCEPTED
    assert case.stdout == "✓ olléh\n\ufffd" and case.stdout_bytes == len("✓ olléh\n".encode()) + 1
