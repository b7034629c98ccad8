"""One AZR training step's verification work, generated from a seed.

A step (the shape of AZR's defaults, `StepShape`): `proposals_per_type` proposals of each task
type (induction: `induction_inputs` inputs for a buffered program), `rollouts` learnability
answers for every valid proposal, and `solver_answers_per_type` solver answers for tasks drawn
from the step's valid proposals. Every proposal and answer carries the verdict azr-verify
should give it, so a run can be checked against the plan:

- proposals: valid, raising on their input, unsafe, not parsing, nondeterministic (set order
  under different hash seeds), returning a non-literal, malformed (the trainer could not parse
  the response: never sent); induction: an input that raises, an input that is not a literal,
  repeated inputs (refused before sending), malformed;
- answers: right (the exact text, or the same value written differently: another quoting,
  spacing, key order, a renamed program), wrong, raising, not a literal / not parsing,
  unsafe (induction programs), malformed (no answer extracted: never sent).

Expected verdicts of everything that runs come from running the (trusted, generated) programs
in this process; unsafe and unparseable ones are never run here.

The programs and inputs depend only on `seed` and the step number, so runs are comparable;
`salt` is a comment appended to every program, so a run shares no cache entry with another.
"""

from __future__ import annotations

import ast
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from azr_verify.client import TaskType
from azr_verify.service.azr_step.programs import FAMILIES, WORDS, Family
from azr_verify.service.models import Verdict
from azr_verify.service.verify.equality import values_equal

TASK_TYPES = (TaskType.DEDUCTION, TaskType.ABDUCTION, TaskType.INDUCTION)


@dataclass(frozen=True)
class StepShape:
    """How much one step sends; the defaults are AZR's (batch 64, n=8, 10 induction inputs)."""

    proposals_per_type: int = 64
    induction_inputs: int = 10
    rollouts: int = 8
    solver_answers_per_type: int = 64

    def __post_init__(self) -> None:
        least = max(len(TRIPLE_PROPOSALS), len(INDUCTION_PROPOSALS)) + 1
        if self.proposals_per_type < least:
            raise ValueError(f"a step needs at least {least} proposals per task type (one of "
                             f"every kind and a valid one), not {self.proposals_per_type}")
        if min(self.induction_inputs, self.rollouts, self.solver_answers_per_type) < 1:
            raise ValueError("induction inputs, rollouts and solver answers must be positive")


class ProposalKind(StrEnum):
    VALID = "valid"
    RAISES = "raises"  # the program raises on (one of) its input(s)
    UNSAFE = "unsafe"
    NOT_PARSING = "not_parsing"
    NONDETERMINISTIC = "nondeterministic"
    NOT_LITERAL = "not_literal"
    INPUT_NOT_LITERAL = "input_not_literal"  # induction: an input is an expression
    REPEATED_INPUTS = "repeated_inputs"  # induction: refused before sending
    MALFORMED = "malformed"  # the response did not parse: nothing is sent


class AnswerKind(StrEnum):
    RIGHT = "right"  # the exact text of the gold answer
    RIGHT_OTHER_TEXT = "right_other_text"  # the same value written differently
    WRONG = "wrong"
    RAISES = "raises"
    NOT_LITERAL = "not_literal"  # an expression or cut-off text where a literal belongs
    UNSAFE = "unsafe"
    NOT_PARSING = "not_parsing"
    MALFORMED = "malformed"  # no answer could be extracted: nothing is sent


# Proportions of each kind (the rest of a type's proposals are valid).
TRIPLE_PROPOSALS = {
    ProposalKind.RAISES: 0.07, ProposalKind.UNSAFE: 0.05, ProposalKind.NOT_PARSING: 0.04,
    ProposalKind.NONDETERMINISTIC: 0.04, ProposalKind.NOT_LITERAL: 0.03,
    ProposalKind.MALFORMED: 0.07,
}
INDUCTION_PROPOSALS = {
    ProposalKind.RAISES: 0.08, ProposalKind.INPUT_NOT_LITERAL: 0.04,
    ProposalKind.REPEATED_INPUTS: 0.05, ProposalKind.MALFORMED: 0.08,
}
# Relative weights of the kinds of answer a solver rollout gives.
ANSWERS: dict[TaskType, dict[AnswerKind, float]] = {
    TaskType.DEDUCTION: {
        AnswerKind.RIGHT: 0.40, AnswerKind.RIGHT_OTHER_TEXT: 0.12, AnswerKind.WRONG: 0.28,
        AnswerKind.NOT_LITERAL: 0.10, AnswerKind.MALFORMED: 0.10,
    },
    TaskType.ABDUCTION: {
        AnswerKind.RIGHT: 0.35, AnswerKind.RIGHT_OTHER_TEXT: 0.10, AnswerKind.WRONG: 0.27,
        AnswerKind.RAISES: 0.10, AnswerKind.NOT_LITERAL: 0.08, AnswerKind.MALFORMED: 0.10,
    },
    TaskType.INDUCTION: {
        AnswerKind.RIGHT: 0.10, AnswerKind.RIGHT_OTHER_TEXT: 0.35, AnswerKind.WRONG: 0.22,
        AnswerKind.RAISES: 0.08, AnswerKind.UNSAFE: 0.07, AnswerKind.NOT_PARSING: 0.08,
        AnswerKind.MALFORMED: 0.10,
    },
}

_NONDETERMINISTIC = (
    "def f(words):\n    return list(set(words))\n",
    "def f(words):\n    return [w.upper() for w in set(words)]\n",
    "def f(words):\n    return '-'.join({w[:3] for w in words})\n",
)
_NOT_LITERAL = (
    "def f(words):\n    return map(str.upper, words)\n",
    "def f(words):\n    return (w[::-1] for w in words)\n",
)
_UNSAFE = (
    ("import os\n", "    _where = os.getcwd()\n"),
    ("", "    _probe = open('/etc/hostname').read()\n"),
    ("", "    _value = eval('1 + 1')\n"),
    ("import subprocess\n", "    _tool = subprocess.list2cmdline(['true'])\n"),
)


@dataclass(frozen=True)
class PlannedAnswer:
    """A solver answer and what the service should say about it."""

    kind: AnswerKind
    text: str | None  # None: malformed, never sent
    correct: bool
    verdict: Verdict | None  # the first non-accepted verdict, ACCEPTED, or None (not sent)


@dataclass(frozen=True)
class PlannedProposal:
    task_type: TaskType
    kind: ProposalKind
    verdict: Verdict | None  # the first rejecting verdict, ACCEPTED, or None (not sent)
    program: str  # induction: the buffered program the inputs are for
    inputs: tuple[str, ...]
    message: str = ""
    rollouts: tuple[PlannedAnswer, ...] = ()

    @property
    def valid(self) -> bool:
        return self.verdict is Verdict.ACCEPTED

    @property
    def sent(self) -> bool:
        return self.verdict is not None


@dataclass(frozen=True)
class SolverAnswer:
    proposal: int  # index into StepWorkload.proposals
    answer: PlannedAnswer


@dataclass(frozen=True)
class StepWorkload:
    seed: int
    step: int
    salt: str
    shape: StepShape
    proposals: tuple[PlannedProposal, ...]
    solver: tuple[SolverAnswer, ...]

    def answers(self) -> list[tuple[TaskType, PlannedAnswer]]:
        """Every planned answer, rollouts first, then the solver's."""
        out = [(p.task_type, a) for p in self.proposals for a in p.rollouts]
        out += [(self.proposals[s.proposal].task_type, s.answer) for s in self.solver]
        return out


def generate_step(seed: int, step: int, salt: str = "", shape: StepShape | None = None
                  ) -> StepWorkload:
    """The step's work; the same (seed, step, shape) gives the same programs and answers."""
    shape = shape or StepShape()
    maker = _Maker(random.Random(f"azr-step:{seed}:{step}"), salt, step)
    proposals: list[PlannedProposal] = []
    for task_type in TASK_TYPES:
        mix = INDUCTION_PROPOSALS if task_type is TaskType.INDUCTION else TRIPLE_PROPOSALS
        kinds = _kinds(mix, shape.proposals_per_type)
        maker.rng.shuffle(kinds)
        for kind in kinds:
            proposal = maker.proposal(task_type, kind, shape)
            rollouts = tuple(maker.answers(proposal, shape.rollouts)) if proposal.valid else ()
            proposals.append(PlannedProposal(proposal.task_type, proposal.kind,
                                             proposal.verdict, proposal.program,
                                             proposal.inputs, proposal.message, rollouts))
    solver: list[SolverAnswer] = []
    for task_type in TASK_TYPES:
        # The trainer's recent-first sampling: the step's new tasks once each, then repeats.
        valid = [k for k, p in enumerate(proposals) if p.task_type is task_type and p.valid]
        maker.rng.shuffle(valid)
        count = shape.solver_answers_per_type if valid else 0
        chosen = valid[:count] + maker.rng.choices(valid, k=max(0, count - len(valid)))
        solver += [SolverAnswer(k, maker.answers(proposals[k], 1)[0]) for k in chosen]
    return StepWorkload(seed, step, salt, shape, tuple(proposals), tuple(solver))


def _kinds(mix: dict[ProposalKind, float], count: int) -> list[ProposalKind]:
    """At least one of every kind, the proportions otherwise; valid ones fill the rest."""
    kinds = [kind for kind, share in mix.items() for _ in range(max(1, round(share * count)))]
    return kinds + [ProposalKind.VALID] * (count - len(kinds))


# -- running the trusted programs here ----------------------------------------------------------


@dataclass(frozen=True)
class _Ran:
    value: Any = None
    raised: bool = False


def _arguments(input_text: str) -> tuple[list[Any], dict[str, Any]]:
    """Python values of call arguments this generator wrote itself (reprs of its own values);
    the service's parser gives canonical encodings, not values a function can take."""
    call = ast.parse(f"f({input_text})", mode="eval").body
    assert isinstance(call, ast.Call)
    return ([ast.literal_eval(argument) for argument in call.args],
            {keyword.arg or "": ast.literal_eval(keyword.value) for keyword in call.keywords})


def _run(program: str, input_text: str) -> _Ran:
    namespace: dict[str, Any] = {"__name__": "azr_step_workload"}
    exec(compile(program, "<workload>", "exec"), namespace)  # our own generated programs
    args, kwargs = _arguments(input_text)
    try:
        return _Ran(namespace["f"](*args, **kwargs))
    except Exception:
        return _Ran(raised=True)


def _answer_verdict(results: Sequence[tuple[_Ran, Any]]) -> Verdict:
    """fold_answer's first non-accepted verdict over (ran, expected) pairs."""
    for ran, expected in results:
        if ran.raised:
            return Verdict.RUNTIME_ERROR
        if not values_equal(ran.value, expected):
            return Verdict.WRONG_OUTPUT
    return Verdict.ACCEPTED


# -- rewriting programs and values --------------------------------------------------------------


class _Rename(ast.NodeTransformer):
    """Renames parameters and local variables: the same program, another text."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id in self.names:
            node.id = f"{node.id}_"
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        if node.arg in self.names and node.arg != "self":
            node.arg = f"{node.arg}_"
        return node


def rewrite(program: str) -> str:
    """`program` with its locals renamed, reformatted by `ast.unparse` (comments dropped)."""
    tree = ast.parse(program)
    names = {node.arg for node in ast.walk(tree) if isinstance(node, ast.arg)}
    names |= {node.id for node in ast.walk(tree)
              if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
    names.discard("self")
    return ast.unparse(_Rename(names).visit(tree)) + "\n"


def other_text(value: Any) -> str:
    """A literal of the same value in another spelling: double quotes, no spaces after
    commas, dict and set elements in reverse order."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(other_text(v) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ",".join(other_text(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        items = list(value.items())[::-1]
        return "{" + ", ".join(f"{other_text(k)}: {other_text(v)}" for k, v in items) + "}"
    if isinstance(value, set | frozenset):
        if not value:
            return "set()" if isinstance(value, set) else "frozenset()"
        inner = ", ".join(other_text(v) for v in sorted(value, key=repr, reverse=True))
        return "{" + inner + "}" if isinstance(value, set) else f"frozenset({{{inner}}})"
    return repr(value)


def perturb(value: Any, rng: random.Random) -> Any:
    """A plausible wrong value: off by one, a word too many, an element missing..."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + rng.choice([1, -1, 2, 10])
    if isinstance(value, float):
        return value + rng.choice([0.5, 1.0, -0.25])
    if isinstance(value, str):
        return rng.choice([value + rng.choice(WORDS)[:2], value[::-1] + "x", value.upper() + "!"])
    if isinstance(value, list):
        return value[:-1] if value and rng.random() < 0.5 else [*value, rng.randint(0, 9)]
    if isinstance(value, tuple):
        return tuple(perturb(list(value), rng))
    if isinstance(value, dict):
        if not value:
            return {"x": 1}
        key = rng.choice(list(value))
        return {**value, key: perturb(value[key], rng)}
    if isinstance(value, set):
        return value | {999}
    return [value]


def _insert_in_f(program: str, header: str, line: str) -> str:
    """`line` as the first statement of `f`, `header` above the program."""
    lines = program.splitlines(keepends=True)
    at = next(k for k, text in enumerate(lines) if text.startswith("def f("))
    return header + "".join(lines[:at + 1]) + line + "".join(lines[at + 1:])


def _break_syntax(program: str) -> str:
    return program.replace("):\n", ")\n", 1)


# -- the generator ------------------------------------------------------------------------------


@dataclass
class _Proposal:
    task_type: TaskType
    kind: ProposalKind
    verdict: Verdict | None
    program: str
    inputs: tuple[str, ...]
    family: Family | None = None
    golds: tuple[Any, ...] = ()
    message: str = ""

    @property
    def valid(self) -> bool:
        return self.verdict is Verdict.ACCEPTED


@dataclass
class _Maker:
    rng: random.Random
    salt: str
    step: int
    count: int = 0
    # Per proposal text: its answer candidates, built once, sampled per rollout.
    _pools: dict[tuple[str, tuple[str, ...]], dict[AnswerKind, list[PlannedAnswer]]] = \
        field(default_factory=dict)
    _families: dict[tuple[str, tuple[str, ...]], Family] = field(default_factory=dict)
    _golds: dict[tuple[str, tuple[str, ...]], tuple[Any, ...]] = field(default_factory=dict)

    def salted(self, program: str) -> str:
        """Every program of a run is new to the service's cache."""
        self.count += 1
        return f"{program.rstrip()}\n# azr-step {self.salt} {self.step}.{self.count}\n"

    def instance(self) -> tuple[Family, str]:
        family = self.rng.choice(FAMILIES)
        return family, family.source(family.params(self.rng))

    def distinct_inputs(self, family: Family, count: int) -> list[str]:
        inputs: list[str] = []
        for _ in range(count * 20):
            text = family.draw_input(self.rng)
            if text not in inputs:
                inputs.append(text)
            if len(inputs) == count:
                return inputs
        raise RuntimeError(f"{family.name}: could not draw {count} distinct inputs")

    def proposal(self, task_type: TaskType, kind: ProposalKind, shape: StepShape
                 ) -> _Proposal:
        if task_type is TaskType.INDUCTION:
            made = self._induction(kind, shape.induction_inputs)
        else:
            made = self._triple(task_type, kind)
        if made.valid and made.family is not None:
            key = (made.program, made.inputs)
            self._families[key] = made.family
            self._golds[key] = made.golds
        return made

    def _triple(self, task_type: TaskType, kind: ProposalKind) -> _Proposal:
        family, source = self.instance()
        program = self.salted(source)
        good = family.draw_input(self.rng)
        if kind is ProposalKind.VALID:
            gold = _run(program, good)
            if gold.raised:
                raise RuntimeError(f"{family.name}: raised on its own input {good}")
            return _Proposal(task_type, kind, Verdict.ACCEPTED, program, (good,), family,
                             (gold.value,))
        if kind is ProposalKind.RAISES:
            if not _run(program, family.bad_input).raised:
                raise RuntimeError(f"{family.name}: did not raise on {family.bad_input}")
            return _Proposal(task_type, kind, Verdict.RUNTIME_ERROR, program,
                             (family.bad_input,))
        if kind is ProposalKind.UNSAFE:
            header, line = self.rng.choice(_UNSAFE)
            return _Proposal(task_type, kind, Verdict.UNSAFE,
                             self.salted(_insert_in_f(source, header, line)), (good,))
        if kind is ProposalKind.NOT_PARSING:
            return _Proposal(task_type, kind, Verdict.SYNTAX_ERROR,
                             self.salted(_break_syntax(source)), (good,))
        words = repr(self.rng.sample(WORDS, 12))
        if kind is ProposalKind.NONDETERMINISTIC:
            return _Proposal(task_type, kind, Verdict.NONDETERMINISTIC,
                             self.salted(self.rng.choice(_NONDETERMINISTIC)), (words,))
        if kind is ProposalKind.NOT_LITERAL:
            return _Proposal(task_type, kind, Verdict.NOT_LITERAL,
                             self.salted(self.rng.choice(_NOT_LITERAL)), (words,))
        return _Proposal(task_type, ProposalKind.MALFORMED, None, program, (good,))

    def _induction(self, kind: ProposalKind, count: int) -> _Proposal:
        family, source = self.instance()
        program = self.salted(source)  # the buffered program the inputs are for
        inputs = self.distinct_inputs(family, count)
        message = f"Each input goes through one {family.name.replace('_', ' ')} puzzle."
        verdict: Verdict | None = Verdict.ACCEPTED
        if kind is ProposalKind.RAISES:
            inputs[self.rng.randrange(count)] = family.bad_input
            verdict = Verdict.RUNTIME_ERROR
        elif kind is ProposalKind.INPUT_NOT_LITERAL:
            inputs[self.rng.randrange(count)] = f"sorted({inputs[0]})"
            verdict = Verdict.SYNTAX_ERROR
        elif kind is ProposalKind.REPEATED_INPUTS:
            inputs[-1] = inputs[0]
            verdict = None
        elif kind is ProposalKind.MALFORMED:
            verdict = None
        golds: tuple[Any, ...] = ()
        if kind is ProposalKind.VALID:
            ran = [_run(program, text) for text in inputs]
            if any(r.raised for r in ran):
                raise RuntimeError(f"{family.name}: raised on one of its own inputs")
            golds = tuple(r.value for r in ran)
        return _Proposal(TaskType.INDUCTION, kind, verdict, program, tuple(inputs), family,
                         golds, message)

    # -- answers ----------------------------------------------------------------------------

    def answers(self, proposal: _Proposal | PlannedProposal, count: int) -> list[PlannedAnswer]:
        key = (proposal.program, proposal.inputs)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pool(proposal.task_type, proposal.program, proposal.inputs,
                              self._families[key], self._golds[key])
            self._pools[key] = pool
        weights = ANSWERS[proposal.task_type]
        kinds = [k for k in weights if pool.get(k)]
        chosen = self.rng.choices(kinds, [weights[k] for k in kinds], k=count)
        return [self.rng.choice(pool[kind]) for kind in chosen]

    def _pool(self, task_type: TaskType, program: str, inputs: tuple[str, ...],
              family: Family, golds: tuple[Any, ...]) -> dict[AnswerKind, list[PlannedAnswer]]:
        if task_type is TaskType.DEDUCTION:
            return self._deduction_pool(golds[0])
        if task_type is TaskType.ABDUCTION:
            return self._abduction_pool(program, inputs[0], family, golds[0])
        return self._induction_pool(program, inputs, family, golds)

    def _deduction_pool(self, gold: Any) -> dict[AnswerKind, list[PlannedAnswer]]:
        right = repr(gold)
        wrong = {repr(w) for w in (perturb(gold, self.rng) for _ in range(3))
                 if not values_equal(w, gold)}
        # Cut off before its closing bracket or quote, or an opening one never closed.
        cut = right[:-1] if right[-1] in ")]}'\"" else f"({right}"
        return {
            AnswerKind.RIGHT: [_accepted(AnswerKind.RIGHT, right)],
            AnswerKind.RIGHT_OTHER_TEXT: [_accepted(AnswerKind.RIGHT_OTHER_TEXT,
                                                    other_text(gold))],
            AnswerKind.WRONG: [PlannedAnswer(AnswerKind.WRONG, text, False,
                                             Verdict.WRONG_OUTPUT) for text in sorted(wrong)],
            AnswerKind.NOT_LITERAL: [
                PlannedAnswer(AnswerKind.NOT_LITERAL, text, False, Verdict.SYNTAX_ERROR)
                for text in (cut, f"{right} if True else None", "result")],
            AnswerKind.MALFORMED: [_malformed()],
        }

    def _abduction_pool(self, program: str, gold_input: str, family: Family, gold: Any
                        ) -> dict[AnswerKind, list[PlannedAnswer]]:
        def judged(kind: AnswerKind, text: str) -> PlannedAnswer:
            verdict = _answer_verdict([(_run(program, text), gold)])
            return PlannedAnswer(kind, text, verdict is Verdict.ACCEPTED, verdict)

        args, kwargs = _arguments(gold_input)
        respelled = ", ".join([*(other_text(a) for a in args),
                               *(f"{k}={other_text(v)}" for k, v in kwargs.items())])
        others = {family.draw_input(self.rng) for _ in range(3)} - {gold_input}
        return {
            AnswerKind.RIGHT: [judged(AnswerKind.RIGHT, gold_input)],
            AnswerKind.RIGHT_OTHER_TEXT: [judged(AnswerKind.RIGHT_OTHER_TEXT, respelled)],
            AnswerKind.WRONG: [judged(AnswerKind.WRONG, text) for text in sorted(others)],
            AnswerKind.RAISES: [judged(AnswerKind.RAISES, family.bad_input)],
            AnswerKind.NOT_LITERAL: [
                PlannedAnswer(AnswerKind.NOT_LITERAL, text, False, Verdict.SYNTAX_ERROR)
                for text in (f"{gold_input})", "x")],
            AnswerKind.MALFORMED: [_malformed()],
        }

    def _induction_pool(self, program: str, inputs: tuple[str, ...], family: Family,
                        golds: tuple[Any, ...]) -> dict[AnswerKind, list[PlannedAnswer]]:
        # The trainer shows the first half of the pairs and checks answers on the rest.
        hidden = list(zip(inputs, golds, strict=True))[len(inputs) // 2:]

        def judged(kind: AnswerKind, text: str) -> PlannedAnswer:
            verdict = _answer_verdict([(_run(text, i), gold) for i, gold in hidden])
            return PlannedAnswer(kind, text, verdict is Verdict.ACCEPTED, verdict)

        source = program[:program.rindex("# azr-step")]
        # Another instance of the family (other parameters): usually wrong on some input.
        variants = {family.source(family.params(self.rng)) for _ in range(6)} - {source}
        wrong = [judged(AnswerKind.WRONG, self.salted(variant))
                 for variant in sorted(variants)[:2]]
        header, line = self.rng.choice(_UNSAFE)
        raising = _insert_in_f(source, "", "    raise ValueError('not implemented yet')\n")
        return {
            AnswerKind.RIGHT: [judged(AnswerKind.RIGHT, program)],
            AnswerKind.RIGHT_OTHER_TEXT: [judged(AnswerKind.RIGHT_OTHER_TEXT,
                                                 self.salted(rewrite(source)))],
            AnswerKind.WRONG: wrong,
            AnswerKind.RAISES: [judged(AnswerKind.RAISES, self.salted(raising))],
            AnswerKind.UNSAFE: [PlannedAnswer(AnswerKind.UNSAFE, self.salted(
                _insert_in_f(source, header, line)), False, Verdict.UNSAFE)],
            AnswerKind.NOT_PARSING: [PlannedAnswer(AnswerKind.NOT_PARSING, self.salted(
                _break_syntax(source)), False, Verdict.SYNTAX_ERROR)],
            AnswerKind.MALFORMED: [_malformed()],
        }


def _accepted(kind: AnswerKind, text: str) -> PlannedAnswer:
    return PlannedAnswer(kind, text, True, Verdict.ACCEPTED)


def _malformed() -> PlannedAnswer:
    return PlannedAnswer(AnswerKind.MALFORMED, None, False, None)
