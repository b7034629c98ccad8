"""Every execution of the loop, through the client: one `/v1/check` round trip per stage.

- proposals: (p, i, null) -> gold output (deduction/abduction), (p, ik, null) per input
  (induction), turned into buffer tasks or rejection reasons;
- answers: (p, i, o'), (p, i', o*), (p', ik, ok) folded to correct / wrong / infra failure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from azr_verify.client import (
    AnswerSlot,
    AnswerState,
    CheckBatch,
    Client,
    IOPair,
    ProposalSlot,
    TaskType,
    Verdict,
)

from .parsing import InductionProposal, TripleProposal
from .rewards import Outcome
from .tasks import InductionTask, Task, Triple


@dataclass(frozen=True)
class ProposalCandidate:
    """A parsed proposal; `base_program` is the buffered program of an induction proposal."""

    task_type: TaskType
    proposal: TripleProposal | InductionProposal
    base_program: str | None = None


@dataclass(frozen=True)
class ProposalCheck:
    outcome: Outcome  # PASSABLE (valid), WRONG (rejected) or EXCLUDED (verifier failed)
    task: Task | None = None
    reason: Verdict | None = None


@dataclass(frozen=True)
class AnswerCandidate:
    task_type: TaskType
    task: Task
    answer: str | None  # None: malformed response


class Verifier:
    """Builds each stage's batch, sends it, folds it; counts every verdict it sees."""

    def __init__(self, client: Client, policy: str, induction_min_pairs: int = 2) -> None:
        self.client = client
        self.policy = policy
        self.induction_min_pairs = induction_min_pairs
        self.verdicts: Counter[str] = Counter()

    def _run(self, batch: CheckBatch) -> list[Any]:
        if not batch.items:
            return []
        results = self.client.check(batch.items, self.policy)
        self.verdicts.update(r.verdict.value for r in results)
        return results

    def proposals(self, candidates: Sequence[ProposalCandidate | None],
                  meta: dict[str, Any]) -> list[ProposalCheck | None]:
        """None in, None out (malformed proposals are never sent)."""
        batch = CheckBatch(meta=meta)
        slots: list[ProposalSlot | None] = []
        for cand in candidates:
            if cand is None:
                slots.append(None)
            elif isinstance(cand.proposal, TripleProposal):
                slots.append(batch.add_proposal(
                    cand.proposal.program, [cand.proposal.input],
                    meta={"task_type": cand.task_type.value}))
            else:
                slots.append(batch.add_proposal(
                    cand.base_program or "", cand.proposal.inputs,
                    min_valid=self.induction_min_pairs,
                    meta={"task_type": cand.task_type.value}))
        results = self._run(batch)
        return [None if cand is None or slot is None else self._fold(cand, slot, results)
                for cand, slot in zip(candidates, slots, strict=True)]

    @staticmethod
    def _fold(cand: ProposalCandidate, slot: ProposalSlot, results: Sequence[Any]
              ) -> ProposalCheck:
        outcome = slot.outcome(results)
        if outcome.infra_failure:
            return ProposalCheck(Outcome.EXCLUDED, reason=Verdict.SANDBOX_ERROR)
        if not outcome.valid:
            return ProposalCheck(Outcome.WRONG, reason=outcome.reason)
        if isinstance(cand.proposal, TripleProposal):
            gold = outcome.gold_output
            assert gold is not None
            return ProposalCheck(Outcome.PASSABLE,
                                 Triple(cand.proposal.program, cand.proposal.input, gold))
        pairs = [IOPair(inp, out) for inp, out
                 in zip(cand.proposal.inputs, outcome.outputs, strict=True) if out is not None]
        # Half the pairs are shown to the solver, the rest (at least one) check its program.
        shown = len(pairs) // 2
        task = InductionTask(cand.base_program or "", cand.proposal.message,
                             tuple(pairs[:shown]), tuple(pairs[shown:]))
        return ProposalCheck(Outcome.PASSABLE, task)

    def answers(self, candidates: Sequence[AnswerCandidate], meta: dict[str, Any]
                ) -> list[AnswerState | None]:
        """One state per candidate; None for a malformed answer (never sent)."""
        batch = CheckBatch(meta=meta)
        slots: list[AnswerSlot | None] = []
        for cand in candidates:
            item_meta = {"task_type": cand.task_type.value}
            if cand.answer is None:
                slots.append(None)
            elif isinstance(cand.task, InductionTask):
                slots.append(batch.add_induction(cand.answer, cand.task.hidden,
                                                 meta=item_meta))
            elif cand.task_type is TaskType.DEDUCTION:
                slots.append(batch.add_deduction(cand.task.program, cand.task.input,
                                                 cand.answer, meta=item_meta))
            else:
                slots.append(batch.add_abduction(cand.task.program, cand.answer,
                                                 cand.task.output, meta=item_meta))
        results = self._run(batch)
        return [None if slot is None else slot.outcome(results).state for slot in slots]
