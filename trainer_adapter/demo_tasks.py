"""Templated AZR tasks for the supervised format warm-up: small, valid Python programs and
inputs, drawn from a few families so that a tiny model can learn the answer format (and
sometimes the answer) in minutes.

Nothing here runs the programs: gold outputs come from the service, like every other one.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from azr_verify.client import IOPair, TaskType

from . import prompts
from .tasks import InductionTask, Triple

InputMaker = Callable[[random.Random], str]


def _int(rng: random.Random) -> str:
    return str(rng.randint(0, 20))


def _word(rng: random.Random) -> str:
    return repr("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 5))))


def _ints(rng: random.Random) -> str:
    return repr([rng.randint(0, 9) for _ in range(rng.randint(1, 4))])


def _pair(rng: random.Random) -> str:
    return f"{rng.randint(0, 9)}, {rng.randint(0, 9)}"


@dataclass(frozen=True)
class ProgramFamily:
    body: str  # `return ...`, may contain {k}
    inputs: InputMaker
    message: str
    params: str = "a"


FAMILIES: tuple[ProgramFamily, ...] = (
    ProgramFamily("return a", _int, "returns its input"),
    ProgramFamily("return a", _word, "returns its input"),
    ProgramFamily("return a + {k}", _int, "adds a number"),
    ProgramFamily("return a * {k}", _int, "multiplies by a number"),
    ProgramFamily("return a[::-1]", _word, "reverses the text"),
    ProgramFamily("return a + a", _word, "repeats the text"),
    ProgramFamily("return len(a)", _word, "counts letters"),
    ProgramFamily("return sorted(a)", _ints, "sorts the list"),
    ProgramFamily("return sum(a)", _ints, "adds the list"),
    ProgramFamily("return max(a)", _ints, "largest item"),
    ProgramFamily("return a + b", _pair, "adds two numbers", "a, b"),
    ProgramFamily("return a * b", _pair, "multiplies two numbers", "a, b"),
)


@dataclass(frozen=True)
class DemoProgram:
    program: str
    inputs: tuple[str, ...]  # distinct
    message: str


def make_program(rng: random.Random, n_inputs: int) -> DemoProgram:
    family = rng.choice(FAMILIES)
    body = family.body.format(k=rng.randint(1, 9))
    program = f"def f({family.params}):\n    {body}"
    inputs: list[str] = []
    for _ in range(50 * n_inputs):
        if len(inputs) == n_inputs:
            break
        candidate = family.inputs(rng)
        if candidate not in inputs:
            inputs.append(candidate)
    return DemoProgram(program, tuple(inputs), family.message)


def tokenizer_corpus(rng: random.Random, size: int = 300) -> Iterator[str]:
    """Text shaped like the loop's prompts and answers, to train the tiny model's BPE on
    (outputs are placeholders: only the shape of the text matters here)."""
    for _ in range(size):
        item = make_program(rng, 4)
        triple = Triple(item.program, item.inputs[0], item.inputs[-1])
        refs = [Triple(make_program(rng, 1).program, "1", "2") for _ in range(2)]
        pairs = [IOPair(i, i) for i in item.inputs]
        yield prompts.propose_triple(rng.choice([TaskType.DEDUCTION, TaskType.ABDUCTION]), refs)
        yield prompts.propose_induction(item.program, len(item.inputs))
        yield prompts.solve(TaskType.DEDUCTION, triple)
        yield prompts.solve(TaskType.ABDUCTION, triple)
        yield prompts.solve(TaskType.INDUCTION, InductionTask(
            item.program, item.message, tuple(pairs[:2]), tuple(pairs[2:])))
        blocks = "\n".join(f"```input\n{i}\n```" for i in item.inputs)
        yield (f"```python\n{item.program}\n```\n```input\n{item.inputs[0]}\n```\n"
               f"```output\n{item.inputs[1]}\n```\n{blocks}\n```message\n{item.message}\n```"
               "\n</think>\n<answer>\n</answer>")
