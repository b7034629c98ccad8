"""Executions only where they buy truth (docs/design.md §2): deduction answers are comparisons
that run nothing yet get the executing path's verdicts, answer checks run as often as asked, and
an answer that repeats its task's own input or program reuses the gold outputs."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pydantic import ValidationError

from azr_verify.client import (
    ANSWER_DETERMINISM_RUNS,
    CheckBatch,
    Client,
    ClientConfig,
    IOPair,
    TaskType,
)
from azr_verify.client.azr_executor import ServiceExecutor
from azr_verify.client.models import CheckItem as WireItem
from azr_verify.service.engine import Engine
from azr_verify.service.models import CheckItem, CheckResult, PolicyName, Verdict
from azr_verify.service.stores.audit.records import records_for
from azr_verify.service.verify.compare import compare_item
from azr_verify.service.verify.literals import parse_literal
from azr_verify.trainer_adapter.tasks import InductionTask, Triple
from azr_verify.trainer_adapter.validation import AnswerCandidate, Verifier

from .guards import fresh

# (what the program returns, a predicted output): values where == is subtle.
CASES = [
    ("float('nan')", "nan"),
    ("[float('nan'), 1]", "[nan, 1]"),
    ("[float('nan'), 1]", "[nan, 2]"),
    ("{3, 1, 2}", "{1, 2, 3}"),
    ("{3, 1, 2}", "[1, 2, 3]"),
    ("{'b': 1, 'a': 2}", "{'a': 2, 'b': 1}"),
    ("{'b': 1, 'a': 2}", "{'a': 2, 'b': 2}"),
    ("1", "1.0"),
    ("1", "True"),
    ("True", "1"),
    ("1", "'1'"),
    ("-0.0", "0.0"),
    ("-0.0", "0"),
    ("{'k': [(1, {2, 3}), frozenset({4})]}", "{'k': [(1, {3, 2}), frozenset({4})]}"),
    ("{'k': [(1, {2, 3}), frozenset({4})]}", "{'k': [[1, {2, 3}], frozenset({4})]}"),
    ("(1,)", "(1)"),
    ("'ab'", '"ab"'),
    ("b'x'", "'x'"),
    ("None", "None"),
    ("[1, 1]", "[1] * 2"),    # an expression: not a literal
    ("[1, 2]", "[1, 2"),      # cut off
    ("{1: 'a'}", " {1: 'a'}"),  # leading space: the parser refuses both ways alike
]


def _program(expression: str) -> str:
    return fresh(f"def f(x):\n    return {expression}")


@pytest.mark.sandbox
def test_deduction_comparisons_run_nothing_and_agree_with_executing(engine: Engine) -> None:
    programs = [_program(expression) for expression, _ in CASES]
    # The proposals (gold outputs) and the executing answer checks, in one batch.
    ran = engine.check([CheckItem(program=p, input="0") for p in programs]
                       + [CheckItem(program=p, input="0", output=answer)
                          for p, (_, answer) in zip(programs, CASES, strict=True)])
    golds, executed = [r.output for r in ran[:len(CASES)]], ran[len(CASES):]
    assert all(gold is not None for gold in golds), ran
    before = engine.stats()
    compared = engine.check([CheckItem(input=gold or "", output=answer)
                             for gold, (_, answer) in zip(golds, CASES, strict=True)])
    after = engine.stats()
    assert after.executions == before.executions
    assert after.cache_hits == before.cache_hits and after.cache_misses == before.cache_misses
    assert [r.verdict for r in compared] == [r.verdict for r in executed]
    verdicts = {answer: r.verdict for (_, answer), r in zip(CASES, compared, strict=True)}
    assert verdicts["nan"] is verdicts["{'a': 2, 'b': 1}"] is verdicts["True"] is \
        Verdict.ACCEPTED
    assert verdicts["[1, 2, 3]"] is verdicts["(1)"] is Verdict.WRONG_OUTPUT
    assert verdicts["[1] * 2"] is verdicts["[1, 2"] is Verdict.SYNTAX_ERROR
    assert all(r.output is None and not r.cached and r.duration_ms == 0 for r in compared)


def test_a_comparison_is_judged_like_the_value_f_returned() -> None:
    def judge(known: str, predicted: str, reject_none: bool = False) -> CheckResult:
        return compare_item(CheckItem(id="c", input=known, output=predicted), parse_literal,
                            reject_none)

    assert judge("[1, 2]", "[1,2]").verdict is Verdict.ACCEPTED
    assert judge("[1, 2]", "[1,2]").id == "c"
    bad_known = judge("f(1)", "1")
    assert bad_known.verdict is Verdict.SYNTAX_ERROR and bad_known.error.startswith("input")
    bad_output = judge("1", "x")
    assert bad_output.verdict is Verdict.SYNTAX_ERROR and "output" in (bad_output.error or "")
    assert judge("None", "None").verdict is Verdict.ACCEPTED
    assert judge("None", "None", reject_none=True).verdict is Verdict.NOT_LITERAL
    with pytest.raises(ValueError):
        compare_item(CheckItem(program="def f(x):\n    return x", input="1", output="1"),
                     parse_literal, False)


def test_a_comparison_needs_an_output_on_both_sides_of_the_wire() -> None:
    for model in (CheckItem, WireItem):
        with pytest.raises(ValidationError, match="comparison"):
            model(input="1")
        assert model(input="1", output="1").program is None


def test_the_api_refuses_a_comparison_without_output(service_url: str) -> None:
    response = httpx.post(f"{service_url}/v1/check", json={"items": [{"input": "1"}]})
    assert response.status_code == 422
    ok = httpx.post(f"{service_url}/v1/check",
                    json={"items": [{"input": "{1, 2}", "output": "{2, 1}"}]})
    assert ok.status_code == 200 and ok.json()["results"][0]["verdict"] == "accepted"


def test_a_rejected_comparison_is_audited_without_a_program() -> None:
    item = CheckItem(input="1", output="x", meta={"task_type": "deduction"})
    result = CheckResult(verdict=Verdict.SYNTAX_ERROR, error="output is not a literal")
    [record] = records_for([item], [result], PolicyName.AZR, None, now=1.0)
    assert record.program == "" and record.output == "x" and record.meta == item.meta


# -- determinism runs and reuse, through the client -------------------------------------------


@pytest.fixture()
def client(service_url: str) -> Iterator[Client]:
    with Client(config=ClientConfig(base_url=service_url)) as made:
        yield made


def _executions(engine: Engine) -> int:
    return engine.stats().executions


def test_batch_items_carry_the_runs_asked_for() -> None:
    batch = CheckBatch()
    batch.add_proposal("P", ["1"])
    batch.add_abduction("P", "2", "4")
    batch.add_induction("Q", [IOPair("1", "2")])
    batch.add_deduction("P", "1", "2")
    assert [i.determinism_runs for i in batch.items] == [None] + [ANSWER_DETERMINISM_RUNS] * 3
    assert ANSWER_DETERMINISM_RUNS == 1
    strict = CheckBatch(proposal_runs=3, answer_runs=2)
    strict.add_proposal("P", ["1"])
    strict.add_abduction("P", "2", "4")
    assert [i.determinism_runs for i in strict.items] == [3, 2]
    strict.add_deduction("P", "1", "2", gold_output="2")
    assert strict.items[-1].program is None and strict.items[-1].determinism_runs is None


@pytest.mark.parametrize("runs", [1, 2, 3])
@pytest.mark.sandbox
def test_answer_checks_honour_determinism_runs(client: Client, engine: Engine,
                                               runs: int) -> None:
    program = _program("x * 2")
    batch = CheckBatch(answer_runs=runs)
    slots = [batch.add_abduction(program, "3", "6"), batch.add_abduction(program, "4", "6"),
             batch.add_induction(program, [IOPair("5", "10"), IOPair("6", "12")])]
    before = _executions(engine)
    results = client.check(batch.items)
    assert _executions(engine) - before == 4 * runs
    assert [slot.outcome(results).correct for slot in slots] == [True, False, True]
    assert all(r.limits is not None and r.limits.determinism_runs == runs for r in results)


@pytest.mark.sandbox
def test_single_check_helpers_default_to_one_run_for_answers(client: Client,
                                                             engine: Engine) -> None:
    program = _program("x + 1")
    before = _executions(engine)
    assert client.check_abduction(program, "1", "2")
    assert _executions(engine) - before == 1
    assert client.check_induction(_program("x - 1"), [IOPair("3", "2")], determinism_runs=3)
    assert _executions(engine) - before == 4
    proposal = client.validate_proposal(_program("x * 3"), "2")
    assert proposal.gold_output == "6" and _executions(engine) - before == 6  # default: 2
    assert client.check_deduction(program, "1", "2.0", gold_output="2")
    assert not client.check_deduction(program, "1", "3", gold_output="2")
    assert _executions(engine) - before == 6  # compared, nothing ran


@pytest.mark.sandbox
def test_service_executor_runs_answers_once_and_compares_outputs(client: Client,
                                                                 engine: Engine) -> None:
    executor = ServiceExecutor(client=client, timeout_length=5)
    program = _program("[x, x]")
    before = _executions(engine)
    assert executor.check_all(program, "1") == (True, "[1, 1]")
    assert _executions(engine) - before == 2
    assert executor.eval_input_prediction(program, "[2, 2]", "2") == 1.0
    assert _executions(engine) - before == 3
    assert executor.eval_output_prediction(program, "[1, 1]", "[1,1]") == 1.0
    assert executor.eval_k_output_prediction(program, "[1, 1]", ["[1, 1.0]", "(1, 1)"]) == \
        [1.0, 0.0]
    assert _executions(engine) - before == 3


@pytest.mark.sandbox
def test_the_verifier_reuses_gold_outputs_and_naive_does_not(client: Client,
                                                             engine: Engine) -> None:
    program = _program("sorted(x)")
    triple = Triple(program, "[3, 1, 2]", "[1, 2, 3]")
    induction = InductionTask(program, "sorts", (IOPair("[2, 1]", "[1, 2]"),),
                              (IOPair("[5, 4]", "[4, 5]"), IOPair("[9, 7]", "[7, 9]")))
    candidates = [
        AnswerCandidate(TaskType.DEDUCTION, triple, "[1, 2, 3]"),
        AnswerCandidate(TaskType.DEDUCTION, triple, "[3, 2, 1]"),
        AnswerCandidate(TaskType.ABDUCTION, triple, "[3, 1, 2]"),   # the task's own input
        AnswerCandidate(TaskType.INDUCTION, induction, program),   # the task's own program
    ]
    meta = {"step": 1}
    before = _executions(engine)
    outcomes = Verifier(client, "azr").answers(candidates, meta)
    assert [o.correct for o in outcomes if o] == [True, False, True, True]
    assert _executions(engine) == before  # nothing needed running
    naive = Verifier.naive(client, "azr").answers(candidates, meta)
    assert [o.correct for o in naive if o] == [True, False, True, True]
    # Executed: f([3, 1, 2]) once (shared by three items) and each hidden pair, at 2 runs.
    assert _executions(engine) - before == 3 * 2

