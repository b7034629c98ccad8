"""AZR helpers: build the triples of docs/design.md §2 and fold verdicts back into AZR answers.

| AZR step                                   | items                                       |
|--------------------------------------------|---------------------------------------------|
| validate a deduction/abduction proposal    | (p, i, null) -> gold output                 |
| validate an induction proposal (p, i1..iN) | (p, ik, null) for each k                    |
| check a deduction answer o'                | compare o' with o* (nothing runs)           |
| check an abduction answer i'               | (p, i', o*); i' == i: compare o* with o*    |
| check an induction answer program p'       | (p', ik, ok) for each hidden k; p' == p:    |
|                                            | compare ok with ok                          |

Executions are spent only where they buy truth. A deduction answer is a comparison item when
the gold output is known (`gold_output=`): the service parses and compares the two literals
without running anything. An answer that repeats the proposal's own input (abduction) or
program (induction), character for character, reuses the gold outputs the proposal's
validation computed. Proposals are validated with the service's default determinism runs
(2 unless its operator raised them); answers run `ANSWER_DETERMINISM_RUNS` = 1 time, as AZR's
reference does, unless the batch asks for more.

Everything here is pure: `CheckBatch` collects many checks of mixed kinds into one list of
items (one HTTP round trip for a whole training stage) and hands back *slots* that fold their
share of the results. `sandbox_error` never becomes a wrong answer: it folds to
`AnswerState.INFRA_FAILURE` / `ProposalOutcome.infra_failure`, and the single-check helpers
raise `SandboxFailure`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .errors import InvalidArgumentError, SandboxFailure
from .models import CheckItem, CheckResult, Verdict


class TaskType(StrEnum):
    """The three AZR reasoning modes."""

    DEDUCTION = "deduction"  # given (p, i), predict o
    ABDUCTION = "abduction"  # given (p, o), predict i
    INDUCTION = "induction"  # given some (i, o) pairs and a message, predict p


class AnswerState(StrEnum):
    CORRECT = "correct"
    WRONG = "wrong"
    INFRA_FAILURE = "infra_failure"  # the verifier failed; score nothing


@dataclass(frozen=True)
class IOPair:
    """One input/output example: `input` is call-argument text, `output` a repr."""

    input: str
    output: str

    @classmethod
    def coerce(cls, pair: object) -> IOPair:
        """An IOPair, an `(input, output)` pair of strings or a mapping with those keys."""
        if isinstance(pair, IOPair):
            return pair
        if isinstance(pair, Mapping) and {"input", "output"} <= set(pair):
            pair = (pair["input"], pair["output"])
        if isinstance(pair, tuple | list) and len(pair) == 2 and \
                all(isinstance(part, str) for part in pair):
            return cls(pair[0], pair[1])
        raise InvalidArgumentError(f"a hidden pair must be an IOPair or (input, output) "
                                   f"strings, not {pair!r}")


IOPairLike = IOPair | tuple[str, str] | Mapping[str, str]


@dataclass(frozen=True)
class AnswerOutcome:
    state: AnswerState
    verdicts: tuple[Verdict, ...]
    detail: str | None = None

    @property
    def correct(self) -> bool:
        return self.state is AnswerState.CORRECT


@dataclass(frozen=True)
class ProposalOutcome:
    """Validation of a proposed program on its inputs.

    `outputs[k]` is the gold output of `inputs[k]`, or None where that input was rejected.
    `reason` is the first rejecting verdict (None when valid).
    """

    valid: bool
    outputs: tuple[str | None, ...]
    verdicts: tuple[Verdict, ...]
    reason: Verdict | None = None
    detail: str | None = None
    infra_failure: bool = False

    @property
    def gold_output(self) -> str | None:
        """The output of a single-input (deduction/abduction) proposal."""
        return self.outputs[0] if self.valid and self.outputs else None


def _detail(result: CheckResult) -> str | None:
    if result.violations:
        return "; ".join(f"{v.rule}:{v.name}@{v.line}" for v in result.violations)
    if result.error_type and result.error:
        return f"{result.error_type}: {result.error}"
    return result.error_type or result.error


def fold_answer(results: Sequence[CheckResult]) -> AnswerOutcome:
    """An answer is correct when every triple is accepted.

    A definite failure anywhere wins over a sandbox_error elsewhere (the answer is wrong
    whatever the failed item would have said); only when nothing definite failed does a
    sandbox_error make the outcome unknown.
    """
    verdicts = tuple(r.verdict for r in results)
    if not results:
        return AnswerOutcome(AnswerState.WRONG, verdicts, "no triples to check")
    for result in results:
        if result.verdict not in (Verdict.ACCEPTED, Verdict.SANDBOX_ERROR):
            return AnswerOutcome(AnswerState.WRONG, verdicts, _detail(result))
    for result in results:
        if result.verdict is Verdict.SANDBOX_ERROR:
            return AnswerOutcome(AnswerState.INFRA_FAILURE, verdicts, _detail(result))
    return AnswerOutcome(AnswerState.CORRECT, verdicts)


def fold_proposal(results: Sequence[CheckResult], min_valid: int | None = None
                  ) -> ProposalOutcome:
    """Valid when at least `min_valid` inputs (default: all) ran and returned a literal."""
    need = len(results) if min_valid is None else min_valid
    verdicts = tuple(r.verdict for r in results)
    outputs = tuple(r.output if r.accepted else None for r in results)
    accepted = sum(r.accepted for r in results)
    rejected = [r for r in results if r.verdict not in (Verdict.ACCEPTED, Verdict.SANDBOX_ERROR)]
    infra = [r for r in results if r.verdict is Verdict.SANDBOX_ERROR]
    if results and accepted >= need:
        return ProposalOutcome(True, outputs, verdicts)
    if infra and accepted + len(infra) >= need:
        # Whether it is valid depends on items the verifier failed to run.
        return ProposalOutcome(False, outputs, verdicts, Verdict.SANDBOX_ERROR,
                               _detail(infra[0]), infra_failure=True)
    first = rejected[0] if rejected else None
    return ProposalOutcome(False, outputs, verdicts, first.verdict if first else None,
                           _detail(first) if first else "no inputs")


@dataclass(frozen=True)
class AnswerSlot:
    start: int
    stop: int

    def outcome(self, results: Sequence[CheckResult]) -> AnswerOutcome:
        return fold_answer(results[self.start:self.stop])


@dataclass(frozen=True)
class ProposalSlot:
    start: int
    stop: int
    min_valid: int | None = None

    def outcome(self, results: Sequence[CheckResult]) -> ProposalOutcome:
        return fold_proposal(results[self.start:self.stop], self.min_valid)


# An answer's program was validated as deterministic when its task was proposed (deduction,
# abduction), or it is the solver's own (induction), which AZR's reference also runs once.
ANSWER_DETERMINISM_RUNS = 1


@dataclass
class CheckBatch:
    """Many AZR checks as one flat list of items; each `add_*` returns the slot to fold.

    `proposal_runs` and `answer_runs` are the determinism runs each kind of item asks for
    (None: the service's default, 2 unless configured otherwise).
    """

    entry: str = "f"
    meta: dict[str, Any] | None = None  # merged into every item's meta (step, run id...)
    proposal_runs: int | None = None
    answer_runs: int | None = ANSWER_DETERMINISM_RUNS
    items: list[CheckItem] = field(default_factory=list)

    def _meta(self, meta: dict[str, Any] | None) -> dict[str, Any] | None:
        return {**(self.meta or {}), **(meta or {})} or None

    def _add(self, triples: Sequence[tuple[str, str, str | None]], runs: int | None,
             meta: dict[str, Any] | None) -> tuple[int, int]:
        start = len(self.items)
        merged = self._meta(meta)
        for program, inp, out in triples:
            self.items.append(CheckItem(program=program, input=inp, output=out,
                                        entry=self.entry, determinism_runs=runs, meta=merged))
        return start, len(self.items)

    def _compare(self, pairs: Sequence[tuple[str, str]], meta: dict[str, Any] | None
                 ) -> tuple[int, int]:
        """Comparison items (known value, predicted value): nothing runs."""
        start = len(self.items)
        merged = self._meta(meta)
        for known, predicted in pairs:
            self.items.append(CheckItem(input=known, output=predicted, meta=merged))
        return start, len(self.items)

    def add_proposal(self, program: str, inputs: Sequence[str], *,
                     min_valid: int | None = None,
                     meta: dict[str, Any] | None = None) -> ProposalSlot:
        """(p, ik, null) for each input: validates a proposal and computes gold outputs."""
        start, stop = self._add([(program, i, None) for i in inputs], self.proposal_runs, meta)
        return ProposalSlot(start, stop, min_valid)

    def add_deduction(self, program: str, input: str, predicted_output: str, *,
                      gold_output: str | None = None,
                      meta: dict[str, Any] | None = None) -> AnswerSlot:
        """With the task's gold output, a comparison (nothing runs); without, (p, i, o')."""
        if gold_output is not None:
            return AnswerSlot(*self._compare([(gold_output, predicted_output)], meta))
        return AnswerSlot(*self._add([(program, input, predicted_output)], self.answer_runs,
                                     meta))

    def add_abduction(self, program: str, predicted_input: str, gold_output: str, *,
                      gold_input: str | None = None,
                      meta: dict[str, Any] | None = None) -> AnswerSlot:
        """(p, i', o*); an answer that is the task's own input text reuses its gold output."""
        if gold_input is not None and predicted_input == gold_input:
            return AnswerSlot(*self._compare([(gold_output, gold_output)], meta))
        return AnswerSlot(*self._add([(program, predicted_input, gold_output)],
                                     self.answer_runs, meta))

    def add_induction(self, predicted_program: str, hidden: Sequence[IOPairLike], *,
                      gold_program: str | None = None,
                      meta: dict[str, Any] | None = None) -> AnswerSlot:
        """(p', ik, ok) per hidden pair; an answer that is the task's own program text reuses
        the gold outputs its validation computed."""
        pairs = [IOPair.coerce(pair) for pair in hidden]
        if not pairs:
            raise InvalidArgumentError("an induction answer needs at least one hidden pair")
        if gold_program is not None and predicted_program == gold_program:
            return AnswerSlot(*self._compare([(p.output, p.output) for p in pairs], meta))
        return AnswerSlot(*self._add([(predicted_program, p.input, p.output) for p in pairs],
                                     self.answer_runs, meta))

    def __len__(self) -> int:
        return len(self.items)


def require_answer(outcome: AnswerOutcome, results: Sequence[CheckResult]) -> bool:
    """Collapse an answer to a bool, raising `SandboxFailure` instead of guessing."""
    if outcome.state is AnswerState.INFRA_FAILURE:
        raise SandboxFailure(f"verifier failed: {outcome.detail}", results)
    return outcome.correct


def require_proposal(outcome: ProposalOutcome, results: Sequence[CheckResult]
                     ) -> ProposalOutcome:
    if outcome.infra_failure:
        raise SandboxFailure(f"verifier failed: {outcome.detail}", results)
    return outcome
