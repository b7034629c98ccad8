"""The three ways a test case's stdout is compared (docs/design.md §10), pinned case by case."""

from __future__ import annotations

import pytest

from azr_verify.service.models import CaseResult, CompareMode, Verdict
from azr_verify.service.testcases import ScriptRun, fold_cases, judge_case
from azr_verify.service.verify.stdout_compare import (
    expected_bytes,
    head,
    outputs_match,
    tail,
)

EXACT, LINES, TOKENS = CompareMode.EXACT, CompareMode.LINES, CompareMode.TOKENS

CASES = [
    # actual, expected, exact, lines, tokens
    (b"3\n", "3\n", True, True, True),
    (b"3\n", "3", False, True, True),
    (b"3", "3\n\n\n", False, True, True),
    (b"1 2 \n3\t\n", "1 2\n3", False, True, True),
    (b"1 2\r\n3\r\n", "1 2\n3\n", False, True, True),
    (b"1\n2\n", "1 2\n", False, False, True),
    (b" 1\n", "1\n", False, False, True),  # leading whitespace counts for lines
    (b"1\n\n2\n", "1\n2\n", False, False, True),  # blank lines between lines count
    (b"12\n", "1 2\n", False, False, False),
    (b"", "", True, True, True),
    (b"\n\n", "", False, True, True),
    (b"a\x0bb\x0c", "a b", False, False, True),  # \v and \f are whitespace
    ("é\n".encode(), "é\n", True, True, True),
    ("a\u00a0b".encode(), "a b", False, False, False),  # a non-ASCII space is not whitespace
    (b"\xff\n", "\ufffd\n", False, False, False),  # invalid UTF-8 never equals a replacement
    (b"x", "\ud800", False, False, False),  # a lone surrogate can never be printed
]


@pytest.mark.parametrize(("actual", "expected", "exact", "lines", "tokens"), CASES)
def test_compare_modes(actual: bytes, expected: str, exact: bool, lines: bool,
                       tokens: bool) -> None:
    wanted = expected_bytes(expected)
    assert outputs_match(actual, wanted, EXACT) is exact
    assert outputs_match(actual, wanted, LINES) is lines
    assert outputs_match(actual, wanted, TOKENS) is tokens


def test_excerpts_are_bounded_and_decoded_with_replacement() -> None:
    data = "é".encode() * 5000 + b"\xff"
    assert head(data, 3) == "ééé"
    assert tail(data, 2) == "é\ufffd"
    assert tail(b"abc", 0) == ""
    assert len(head(b"x" * 10**6, 1000)) == 1000


def test_only_a_clean_exit_is_compared() -> None:
    wrong = judge_case(ScriptRun(Verdict.ACCEPTED, stdout=b"4\n", exit_code=0), b"5", LINES, 10)
    assert wrong.verdict is Verdict.WRONG_OUTPUT and wrong.output == "4\n"
    # A non-zero exit with the right output is still a runtime error.
    failed = judge_case(ScriptRun(Verdict.RUNTIME_ERROR, stdout=b"5\n", stderr=b"boom",
                                  exit_code=1, error="exited with status 1"), b"5", LINES, 10)
    assert failed.verdict is Verdict.RUNTIME_ERROR and failed.exit_code == 1
    assert failed.stderr == "boom"
    # No expected output: it only has to exit 0.
    ran = judge_case(ScriptRun(Verdict.ACCEPTED, stdout=b"anything", exit_code=0), None,
                     LINES, 3)
    assert ran.verdict is Verdict.ACCEPTED and ran.output == "any" and ran.output_bytes == 8


def _case(verdict: Verdict) -> CaseResult:
    return CaseResult(verdict=verdict, error=verdict.value)


def test_a_programs_verdict_is_its_first_own_failure() -> None:
    ok, wrong, infra = Verdict.ACCEPTED, Verdict.WRONG_OUTPUT, Verdict.SANDBOX_ERROR
    timeout = Verdict.TIMEOUT
    assert fold_cases([_case(ok), _case(ok)])[0] is ok
    verdict, error = fold_cases([_case(ok), _case(wrong), _case(timeout)])
    assert verdict is wrong and error is not None and error.startswith("case 2 of 3")
    # An infrastructure failure never hides the program's own failure...
    assert fold_cases([_case(infra), _case(timeout)])[0] is timeout
    # ...and decides only when nothing failed on its own account (retryable).
    assert fold_cases([_case(ok), _case(infra)])[0] is infra
