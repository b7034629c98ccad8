"""The AZR-step workload of `azr-verify bench --workload azr-step`: a deterministic generator
whose programs and answers get the verdicts it plans (checked on the real service), and the
in-process reference executor the benchmark compares against."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from azr_verify.client import Client, ClientConfig, TaskType, Verdict
from azr_verify.service.azr_step.reference import (
    InputPredictionJob,
    OutputPredictionJob,
    ProposalJob,
    ProposalResult,
    ReferenceExecutor,
    Score,
)
from azr_verify.service.azr_step.workload import (
    ANSWERS,
    INDUCTION_PROPOSALS,
    TRIPLE_PROPOSALS,
    AnswerKind,
    ProposalKind,
    StepShape,
    generate_step,
    other_text,
    rewrite,
)
from azr_verify.service.bench.azr_step import (
    ReferenceSide,
    ServiceSide,
    SideTotals,
    format_table,
)
from azr_verify.service.engine import Engine
from azr_verify.trainer_adapter.validation import Verifier

from .guards import token

SMALL = StepShape(proposals_per_type=10, induction_inputs=6, rollouts=3,
                  solver_answers_per_type=10)
SALT_LINE = re.compile(r"^# azr-step .*$", re.MULTILINE)


def _texts(step: object) -> list[str]:
    return [SALT_LINE.sub("", p.program) for p in step.proposals]  # type: ignore[attr-defined]


# -- the generator ------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_step_and_the_salt_only_renames() -> None:
    first = generate_step(7, 2, "aaa", SMALL)
    assert generate_step(7, 2, "aaa", SMALL) == first
    resalted = generate_step(7, 2, "bbb", SMALL)
    assert resalted != first
    assert _texts(resalted) == _texts(first)
    assert [p.inputs for p in resalted.proposals] == [p.inputs for p in first.proposals]
    assert all("# azr-step bbb 2." in p.program for p in resalted.proposals)
    assert _texts(generate_step(8, 2, "aaa", SMALL)) != _texts(first)
    assert _texts(generate_step(7, 3, "aaa", SMALL)) != _texts(first)


def test_a_full_step_has_azr_shape_and_the_intended_mix() -> None:
    step = generate_step(0, 1, "mix")
    by_type = Counter(p.task_type for p in step.proposals)
    assert by_type == {t: 64 for t in TaskType}
    for task_type, mix in ((TaskType.DEDUCTION, TRIPLE_PROPOSALS),
                           (TaskType.ABDUCTION, TRIPLE_PROPOSALS),
                           (TaskType.INDUCTION, INDUCTION_PROPOSALS)):
        kinds = Counter(p.kind for p in step.proposals if p.task_type is task_type)
        assert {k: kinds[k] for k in mix} == {k: round(share * 64) for k, share in mix.items()}
        assert 0.65 <= kinds[ProposalKind.VALID] / 64 <= 0.8
    for proposal in step.proposals:
        assert len(proposal.rollouts) == (8 if proposal.valid else 0)
        if proposal.task_type is TaskType.INDUCTION and proposal.kind is not ProposalKind.MALFORMED:
            assert len(proposal.inputs) == 10
    solver = Counter(step.proposals[s.proposal].task_type for s in step.solver)
    assert solver == {t: 64 for t in TaskType}
    answers = step.answers()
    for task_type in TaskType:
        mine = [a for t, a in answers if t is task_type]
        assert {a.kind for a in mine} == set(ANSWERS[task_type])  # every kind occurs
        right = sum(a.correct for a in mine) / len(mine)
        assert 0.35 <= right <= 0.7, (task_type, right)
        not_sent = sum(a.text is None for a in mine) / len(mine)
        assert 0.04 <= not_sent <= 0.2
    # Rollouts repeat answers, as sampling does: work the service can do once.
    texts = [a.text for p in step.proposals for a in p.rollouts if a.text is not None]
    assert len(set(texts)) < 0.75 * len(texts)


def test_other_text_is_the_same_value_in_another_spelling() -> None:
    from azr_verify.service.verify.equality import values_equal
    from azr_verify.service.verify.literals import parse_literal

    for value in ["word", [1, (2,), {"a": {3, 4}}], {"x": 1, "y": [True, None]}, set(),
                  frozenset({1, 2}), (1.5, -2), {5: {"b", "a"}}]:
        text = other_text(value)
        assert text != repr(value) or value == set()
        assert values_equal(parse_literal(text), value)


def test_rewrite_keeps_behaviour_and_changes_text() -> None:
    program = ("class Box:\n    def __init__(self, x):\n        self.x = x\n\n"
               "def f(nums, k):\n    total = [Box(n).x * k for n in nums]\n"
               "    return sorted(total, key=lambda t: -t)\n")
    rewritten = rewrite(program)
    assert rewritten != program and "nums_" in rewritten and "self.x" in rewritten
    results = []
    for source in (program, rewritten):
        namespace: dict[str, object] = {}
        exec(source, namespace)  # this test's own program
        results.append(namespace["f"]([3, 1, 2], 2))  # type: ignore[operator]
    assert results[0] == results[1] == [6, 4, 2]


# -- on the real service ------------------------------------------------------------------------


@pytest.fixture()
def service_side(service_url: str) -> Iterator[ServiceSide]:
    with Client(config=ClientConfig(base_url=service_url)) as client, \
            httpx.Client(base_url=service_url, timeout=60) as http:
        yield ServiceSide("service", "t", Verifier(client, "azr"), http)


def test_a_small_step_gets_every_planned_verdict_from_the_service(
        service_side: ServiceSide, engine: Engine) -> None:
    step = generate_step(11, 1, token(), SMALL)
    before = engine.stats().executions
    run = service_side.run(step, lambda line: None)
    assert not run.mismatches, run.mismatches
    assert run.executions == engine.stats().executions - before > 0
    assert sum(run.stage_executions.values()) == run.executions
    assert set(run.seconds) == {"propose", "learnability", "solve"}
    # Every kind of proposal verdict was really produced.
    planned = Counter(p.verdict for p in step.proposals)
    for verdict in (Verdict.ACCEPTED, Verdict.RUNTIME_ERROR, Verdict.UNSAFE,
                    Verdict.SYNTAX_ERROR, Verdict.NONDETERMINISTIC, Verdict.NOT_LITERAL):
        assert planned[verdict] >= 1, verdict


def test_the_reference_side_runs_the_same_step() -> None:
    step = generate_step(11, 1, token(), SMALL)
    with ReferenceExecutor(timeout_s=5) as executor:
        run = ReferenceSide("reference", executor).run(step, lambda line: None)
    assert run.executions > 0 and set(run.seconds) == {"propose", "learnability", "solve"}
    # The reference's leniency, which the service is there to remove.
    lenient = {text for text in run.mismatches if text.startswith("reference accepts")}
    assert any("nondeterministic" in text for text in lenient)
    assert any("not_literal" in text for text in lenient)
    table = format_table([SideTotals("service", [run]), SideTotals("reference", [run])])
    assert "time / baseline" in table and "1.00" in table


# -- the reference executor ---------------------------------------------------------------------


def test_reference_executor_has_the_reference_semantics() -> None:
    square = "def f(a):\n    return a * a"
    with ReferenceExecutor(timeout_s=1) as executor:
        assert executor.run(ProposalJob(square, "4")) == ProposalResult(True, "16", 2)
        raises = executor.run(ProposalJob(square, "'x'"))
        assert isinstance(raises, ProposalResult) and not raises.valid
        # Two calls in one process agree on set order, so the reference accepts it.
        assert executor.run(ProposalJob("def f(w):\n    return list(set(w))",
                                        "['a', 'b', 'c', 'd']")).valid  # type: ignore[union-attr]
        # A mismatch is reported as an Exception with no "error" in its status: valid too.
        assert executor.run(ProposalJob("def f(w):\n    return object()", "1")).valid  # type: ignore[union-attr]
        assert executor.run(InputPredictionJob(square, "16", "-4")) == Score(True, 1)
        assert executor.run(InputPredictionJob(square, "16", "5")) == Score(False, 1)
        assert executor.run(OutputPredictionJob(square, "[1, 2]", "[1,2]")) == Score(True, 0)
        assert executor.run(OutputPredictionJob(square, "[1, 1]", "[1] * 2")) == Score(True, 0)
        assert executor.run(OutputPredictionJob(square, "16", "17")) == Score(False, 1)
        slow = executor.run(ProposalJob("def f(a):\n    while True:\n        pass", "1"))
        assert isinstance(slow, ProposalResult) and not slow.valid
        assert executor.run(ProposalJob(square, "3")) == ProposalResult(True, "9", 2)


def test_answer_kinds_cover_the_issue() -> None:
    # right, wrong, malformed, erroring and unsafe answers all occur in a step.
    kinds = {a.kind for _, a in generate_step(0, 1, "k").answers()}
    assert {AnswerKind.RIGHT, AnswerKind.WRONG, AnswerKind.MALFORMED, AnswerKind.RAISES,
            AnswerKind.UNSAFE} <= kinds
