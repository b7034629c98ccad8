"""Proposer and solver prompts for the three task types.

Every prompt uses the R1-Zero conversation template and ends with an opening `<think>`, so a
completion is `reasoning </think> <answer> ... </answer>` (see `parsing`). Answers go in
fenced blocks tagged `python`, `input`, `output` or `message`.
"""

from __future__ import annotations

from collections.abc import Sequence

from azr_verify.client import IOPair, TaskType

from .tasks import InductionTask, Triple

TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., "
    "<think> reasoning process here </think> <answer> answer here </answer>.\n"
    "User: {instruction}\n"
    "Assistant: <think>"
)

_PROGRAM_RULES = (
    "The program defines a function `f`; helper functions, nested functions and imports of "
    "pure standard-library modules (math, itertools, collections, ...) are allowed. It must "
    "be deterministic: no randomness, clocks, files, network or printing. The input is the "
    "argument list of one call `f(<input>)` written with literals only (numbers, strings, "
    "lists, tuples, dicts, sets), e.g. `[1, 2], 'a', k=3`."
)

_GOALS = {
    TaskType.DEDUCTION: "Make the output hard, but possible, to predict from the program and "
                        "the input.",
    TaskType.ABDUCTION: "Make an input hard, but possible, to recover from the program and "
                        "its output.",
}


def _fence(tag: str, body: str) -> str:
    return f"```{tag}\n{body}\n```"


def _wrap(instruction: str) -> str:
    return TEMPLATE.format(instruction=instruction)


def propose_triple(task_type: TaskType, references: Sequence[Triple]) -> str:
    """Deduction/abduction proposer: a new (program, input), conditioned on K references."""
    parts = [
        f"## Task: create a new {task_type.value} exercise: a Python program and an input "
        "for it.",
        _PROGRAM_RULES,
        _GOALS[task_type],
    ]
    if references:
        parts.append("Existing exercises (write something different from all of them):")
        for n, ref in enumerate(references, 1):
            parts.append(f"### Exercise {n}\n{_fence('python', ref.program)}\n"
                         f"{_fence('input', ref.input)}\n{_fence('output', ref.output)}")
    parts.append("Answer format:\n<answer>\n" + _fence("python", "def f(...):\n    ...")
                 + "\n" + _fence("input", "...") + "\n</answer>")
    return _wrap("\n\n".join(parts))


def propose_induction(program: str, n_inputs: int) -> str:
    """Induction proposer: inputs for a buffered program and a message that hints at it."""
    parts = [
        f"## Task: write {n_inputs} different inputs for the program below and a short "
        "message describing what it does, so that someone who sees only some of the inputs, "
        "their outputs and your message can rewrite the program.",
        _fence("python", program),
        "Each input is the argument list of one call `f(<input>)`, with literals only.",
        "Answer format:\n<answer>\n" + "\n".join([_fence("input", "...")] * 2)
        + "\n... (one block per input)\n" + _fence("message", "...") + "\n</answer>",
    ]
    return _wrap("\n\n".join(parts))


def solve_deduction(task: Triple) -> str:
    parts = [
        "## Task: predict the value `f(<input>)` returns, written as its Python repr.",
        _fence("python", task.program),
        _fence("input", task.input),
        "Answer format:\n<answer>\n" + _fence("output", "...") + "\n</answer>",
    ]
    return _wrap("\n\n".join(parts))


def solve_abduction(task: Triple) -> str:
    parts = [
        "## Task: find an input (the arguments of one call, literals only) for which the "
        "program returns the given output.",
        _fence("python", task.program),
        _fence("output", task.output),
        "Answer format:\n<answer>\n" + _fence("input", "...") + "\n</answer>",
    ]
    return _wrap("\n\n".join(parts))


def _pairs(pairs: Sequence[IOPair]) -> str:
    return "\n".join(f"f({p.input}) == {p.output}" for p in pairs)


def solve_induction(task: InductionTask) -> str:
    parts = [
        "## Task: write the Python function `f` that produced these calls and results.",
        _fence("text", _pairs(task.visible)),
    ]
    if task.message:
        parts.append(f"Hint: {task.message}")
    parts.append("Answer format:\n<answer>\n" + _fence("python", "def f(...):\n    ...")
                 + "\n</answer>")
    return _wrap("\n\n".join(parts))


def solve(task_type: TaskType, task: Triple | InductionTask) -> str:
    """The solver prompt of any buffered task."""
    if task_type is TaskType.INDUCTION:
        assert isinstance(task, InductionTask)
        return solve_induction(task)
    assert isinstance(task, Triple)
    return solve_deduction(task) if task_type is TaskType.DEDUCTION else solve_abduction(task)
