"""The pure fold of determinism runs into one verdict (service/verify/determinism.py).

No sandbox: outcomes are made here as the trusted side would decide them. The same rules run
end to end, on real sandboxes, in test_engine_verdicts.py.
"""

from __future__ import annotations

import pytest

from azr_verify.service.models import Verdict
from azr_verify.service.verify.determinism import fold_runs
from azr_verify.service.verify.literals import parse_literal
from azr_verify.service.verify.run_outcome import MALFORMED, ExecOutcome, OutcomeKind


def value(text: str, duration_ms: float = 1.0) -> ExecOutcome:
    return ExecOutcome(OutcomeKind.VALUE, repr=text, duration_ms=duration_ms)


def failure(kind: OutcomeKind, error_type: str | None = None) -> ExecOutcome:
    return ExecOutcome(kind, error_type=error_type, error=f"{kind.value} happened")


def test_runs_that_agree_on_a_value_are_accepted_with_the_first_repr() -> None:
    folded = fold_runs([value("{1, 2}", 1.25), value("{2, 1}", 2.5)], parse_literal)
    assert folded.verdict is Verdict.ACCEPTED
    assert folded.output == "{1, 2}"
    assert folded.duration_ms == 3.75


def test_equal_values_of_other_types_agree() -> None:
    assert fold_runs([value("1"), value("1.0"), value("True")], parse_literal).verdict \
        is Verdict.ACCEPTED
    assert fold_runs([value("float('nan')"), value("float('nan')")], parse_literal).verdict \
        is Verdict.ACCEPTED


def test_runs_that_differ_are_nondeterministic_and_say_which() -> None:
    folded = fold_runs([value("[1]"), value("[1]"), value("(1,)")], parse_literal)
    assert folded.verdict is Verdict.NONDETERMINISTIC
    assert folded.error == "run 1 gave [1]; run 3 gave (1,)"


def test_a_value_against_an_error_is_nondeterministic() -> None:
    folded = fold_runs([value("1"), failure(OutcomeKind.ERROR, "KeyError")], parse_literal)
    assert folded.verdict is Verdict.NONDETERMINISTIC
    assert folded.error == "run 1 gave 1; run 2 gave error KeyError"


def test_errors_of_another_type_disagree() -> None:
    folded = fold_runs([failure(OutcomeKind.ERROR, "KeyError"),
                        failure(OutcomeKind.ERROR, "IndexError")], parse_literal)
    assert folded.verdict is Verdict.NONDETERMINISTIC


@pytest.mark.parametrize(("kind", "verdict"), [
    (OutcomeKind.ERROR, Verdict.RUNTIME_ERROR),
    (OutcomeKind.CRASH, Verdict.RUNTIME_ERROR),
    (OutcomeKind.NOT_LITERAL, Verdict.NOT_LITERAL),
    (OutcomeKind.NO_ENTRY, Verdict.SYNTAX_ERROR),
])
def test_agreed_failures_keep_their_error(kind: OutcomeKind, verdict: Verdict) -> None:
    folded = fold_runs([failure(kind, "E"), failure(kind, "E")], parse_literal)
    assert (folded.verdict, folded.error_type, folded.error) == (verdict, "E",
                                                                 f"{kind.value} happened")


def test_a_limit_in_any_run_decides_over_disagreement() -> None:
    runs = [value("1"), value("2"), failure(OutcomeKind.TIMEOUT)]
    assert fold_runs(runs, parse_literal).verdict is Verdict.TIMEOUT


def test_an_infrastructure_failure_is_never_hidden_behind_a_limit() -> None:
    runs = [failure(OutcomeKind.OUTPUT_LIMIT), failure(OutcomeKind.MEMORY),
            failure(OutcomeKind.TIMEOUT), failure(OutcomeKind.SANDBOX_ERROR)]
    assert fold_runs(runs, parse_literal).verdict is Verdict.SANDBOX_ERROR
    assert fold_runs(runs[:3], parse_literal).verdict is Verdict.TIMEOUT
    assert fold_runs(runs[:2], parse_literal).verdict is Verdict.MEMORY_LIMIT


def test_a_value_that_is_not_a_literal_is_a_malformed_report() -> None:
    folded = fold_runs([value("<object at 0x1>"), value("<object at 0x1>")], parse_literal)
    assert folded.verdict is Verdict.RUNTIME_ERROR
    assert folded.error_type == MALFORMED
    assert folded.error is not None and "not a literal" in folded.error


def test_a_long_disagreeing_value_is_quoted_in_part() -> None:
    long_list = "[" + ", ".join(["1"] * 200) + "]"
    folded = fold_runs([value(long_list), value("[]")], parse_literal)
    assert folded.error is not None
    assert folded.error.startswith("run 1 gave " + long_list[:200] + "...; run 2 gave []")
