"""Parsing model outputs: the think/answer envelope, fenced blocks, proposals and answers."""

from __future__ import annotations

import pytest

from azr_verify.client import (
    IOPair,
    TaskType,
    extract_solver_answer,
    fenced_blocks,
    split_response,
)
from azr_verify.trainer_adapter import prompts
from azr_verify.trainer_adapter.parsing import (
    InductionProposal,
    TripleProposal,
    parse_induction_proposal,
    parse_triple_proposal,
)
from azr_verify.trainer_adapter.tasks import InductionTask, Triple

NESTED = '''def f(xs):
    def helper(x):
        def inner(y):
            return y * 2

        return inner(x) + 1

    class Acc:
        total = 0

    return [helper(x) for x in xs]'''


def test_envelope_with_and_without_opening_think() -> None:
    # The prompt ends with "<think>", so completions usually start inside the reasoning.
    assert split_response("plan </think>\n<answer>42</answer>") is not None
    parsed = split_response("<think>plan</think> <answer> 42 </answer>\n")
    assert parsed is not None and parsed.think == "plan" and parsed.answer == " 42 "


@pytest.mark.parametrize("text", [
    "",
    "just text",
    "<answer>42</answer>",                          # no reasoning at all
    "plan </think>",                                # no answer
    "plan </think> <answer>42",                     # unterminated
    "plan </think> words <answer>42</answer>",      # the answer must follow </think>
])
@pytest.mark.parametrize("strict", [False, True])
def test_malformed_envelopes(text: str, strict: bool) -> None:
    assert split_response(text, strict=strict) is None


@pytest.mark.parametrize(("text", "answer"), [
    # The reference's rules: the last complete answer block counts, trailing text is
    # ignored (a sampler without a stop string keeps writing after </answer>).
    ("plan </think> <answer>1</answer><answer>2</answer>", "2"),
    ("plan </think> <answer>42</answer> trailing\nUser: more", "42"),
    ("a </think> b </think> <answer>1</answer>", "1"),
    ("plan </think>\n\n<answer>\n42\n</answer><|endoftext|>", "\n42\n"),
])
def test_tolerant_envelopes(text: str, answer: str) -> None:
    parsed = split_response(text)
    assert parsed is not None and parsed.answer == answer
    assert split_response(text, strict=True) is None  # the strict mode refuses all of them


def test_answer_only_allowed_when_think_not_required() -> None:
    parsed = split_response("<answer>x</answer>", require_think=False)
    assert parsed is not None and parsed.answer == "x"


def test_fenced_blocks_keep_nested_functions_and_blank_lines() -> None:
    text = f"```python\n{NESTED}\n```\n```input\n[1, 2]\n```"
    blocks = fenced_blocks(text)
    assert [b.lang for b in blocks] == ["python", "input"]
    assert blocks[0].body == NESTED
    assert blocks[1].body == "[1, 2]"


def test_triple_proposal_with_nested_helpers() -> None:
    text = f"think</think><answer>\n```python\n{NESTED}\n```\n```input\n[1, 2]\n```\n</answer>"
    assert parse_triple_proposal(text) == TripleProposal(NESTED, "[1, 2]")


@pytest.mark.parametrize("answer", [
    "```python\ndef f(a): return a\n```",             # no input
    "```input\n1\n```",                               # no program
    "```python\n\n```\n```input\n1\n```",             # empty program
    "def f(a): return a\n1",                          # no fences
])
def test_malformed_triple_proposals(answer: str) -> None:
    assert parse_triple_proposal(f"t</think><answer>{answer}</answer>") is None


def test_broken_program_is_well_formed() -> None:
    # Not a format error: the verifier will reject it (syntax_error) for -0.5.
    text = "t</think><answer>```python\ndef f(:\n```\n```input\n1\n```</answer>"
    assert parse_triple_proposal(text) == TripleProposal("def f(:", "1")


def test_induction_proposal_takes_the_last_n_inputs_and_needs_a_message() -> None:
    blocks = "".join(f"```input\n{x}\n```\n" for x in ("1", "2", "1", "3", "4"))
    text = f"t</think><answer>{blocks}```message\nadds one\n```</answer>"
    # As the reference: the last N inputs; repeats are kept here and refused by validation.
    assert parse_induction_proposal(text, 3) == InductionProposal(("1", "3", "4"), "adds one")
    assert parse_induction_proposal(text, 5) == InductionProposal(("1", "2", "1", "3", "4"),
                                                                  "adds one")
    assert parse_induction_proposal(text, 6) is None  # fewer inputs than asked: malformed
    no_message = f"t</think><answer>{blocks}</answer>"
    assert parse_induction_proposal(no_message, 3) is None
    assert parse_induction_proposal("t</think><answer>```message\nm\n```</answer>", 3) is None


@pytest.mark.parametrize(("task", "answer", "expected"), [
    (TaskType.DEDUCTION, "```output\n[1, 2]\n```", "[1, 2]"),
    (TaskType.DEDUCTION, " 'Hello World' ", "'Hello World'"),   # raw answers are fine
    (TaskType.DEDUCTION, "```\n3\n```", "3"),                   # untagged fence
    (TaskType.ABDUCTION, "```input\n1, k=2\n```", "1, k=2"),
    (TaskType.INDUCTION, f"```python\n{NESTED}\n```", NESTED),
    (TaskType.INDUCTION, "def f(a):\n    return a", "def f(a):\n    return a"),
])
def test_solver_answers(task: TaskType, answer: str, expected: str) -> None:
    assert extract_solver_answer(task, f"r</think><answer>{answer}</answer>") == expected


@pytest.mark.parametrize("text", [
    "r</think><answer>   </answer>",
    "r</think><answer>```python\n```</answer>",
    "no envelope 42",
])
def test_malformed_solver_answers(text: str) -> None:
    assert extract_solver_answer(TaskType.INDUCTION, text) is None


def test_prompts_end_inside_think_and_carry_the_task() -> None:
    seed = Triple("def f(a):\n    return a", "'Hello World'", "'Hello World'")
    for text in (prompts.propose_triple(TaskType.DEDUCTION, [seed]),
                 prompts.propose_triple(TaskType.ABDUCTION, []),
                 prompts.propose_induction(seed.program, 10),
                 prompts.solve(TaskType.DEDUCTION, seed),
                 prompts.solve(TaskType.ABDUCTION, seed)):
        assert text.endswith("Assistant: <think>")
        assert "def f(a):" in text or "propose" in text or "exercise" in text
    ded = prompts.solve(TaskType.DEDUCTION, seed)
    assert "```input\n'Hello World'\n```" in ded
    pair = IOPair("1", "1")
    ind = prompts.solve(TaskType.INDUCTION, InductionTask("def f(a): return a", "echo",
                                                          (pair,), (IOPair("2", "2"),)))
    assert "f(1) == 1" in ind and "f(2)" not in ind and "Hint: echo" in ind
