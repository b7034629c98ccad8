"""Every execution of the loop, through the client: one `/v1/check` round trip per stage.

- proposals: (p, i, null) -> gold output (deduction/abduction), (p, ik, null) for each of the
  N inputs (induction: valid only when all N are distinct and accepted, as the reference),
  turned into buffer tasks or rejection reasons;
- answers: (p, i, o'), (p, i', o*), (p', ik, ok) folded to correct / wrong / infra failure.

Every fold keeps its verdicts and detail so the sample log can say why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from azr_verify.client import (
    ANSWER_DETERMINISM_RUNS,
    AnswerOutcome,
    AnswerSlot,
    CheckBatch,
    CheckResult,
    Client,
    IOPair,
    ProposalSlot,
    TaskType,
    Verdict,
)

from .parsing import InductionProposal, TripleProposal
from .rewards import Outcome
from .tasks import InductionTask, Task, Triple

REPEATED_INPUTS = "repeated inputs"


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
    detail: str | None = None
    verdicts: tuple[Verdict, ...] = ()


@dataclass(frozen=True)
class AnswerCandidate:
    task_type: TaskType
    task: Task
    answer: str | None  # None: malformed response


@dataclass
class Verifier:
    """Builds each stage's batch, sends it, folds it; counts every verdict it sees, per
    stage.

    `proposal_runs` / `answer_runs` are the determinism runs of each kind of check (None: the
    service's default); with `reuse_known_outputs` a deduction answer is compared with its
    task's gold output (nothing runs) and an answer that repeats its task's input or program
    reuses the gold outputs (client/azr.py). `naive()` is the configuration without either
    saving, for the benchmark's before/after.
    """

    client: Client
    policy: str
    proposal_runs: int | None = None
    answer_runs: int | None = ANSWER_DETERMINISM_RUNS
    reuse_known_outputs: bool = True
    verdicts: Counter[str] = field(default_factory=Counter)
    by_stage: dict[str, Counter[str]] = field(default_factory=dict)

    @classmethod
    def naive(cls, client: Client, policy: str) -> Verifier:
        """Every answer executed with the service's default determinism runs."""
        return cls(client, policy, answer_runs=None, reuse_known_outputs=False)

    def _batch(self, meta: dict[str, Any]) -> CheckBatch:
        return CheckBatch(meta=meta, proposal_runs=self.proposal_runs,
                          answer_runs=self.answer_runs)

    def reset_counts(self) -> None:
        self.verdicts.clear()
        self.by_stage.clear()

    def _run(self, batch: CheckBatch, stage: str) -> list[CheckResult]:
        if not batch.items:
            return []
        results = self.client.check(batch.items, self.policy)
        counts = Counter(r.verdict.value for r in results)
        self.verdicts.update(counts)
        self.by_stage.setdefault(stage, Counter()).update(counts)
        return results

    def proposals(self, candidates: Sequence[ProposalCandidate | None],
                  meta: dict[str, Any]) -> list[ProposalCheck | None]:
        """None in, None out (malformed proposals are never sent)."""
        batch = self._batch(meta)
        slots: list[ProposalSlot | None] = []
        for cand in candidates:
            if cand is None:
                slots.append(None)
            elif isinstance(cand.proposal, TripleProposal):
                slots.append(batch.add_proposal(
                    cand.proposal.program, [cand.proposal.input],
                    meta={"task_type": cand.task_type.value}))
            elif len(set(cand.proposal.inputs)) < len(cand.proposal.inputs):
                slots.append(None)  # rejected below without running anything
            else:
                slots.append(batch.add_proposal(
                    cand.base_program or "", cand.proposal.inputs,
                    meta={"task_type": cand.task_type.value}))
        results = self._run(batch, str(meta.get("stage", "propose")))
        checks: list[ProposalCheck | None] = []
        for cand, slot in zip(candidates, slots, strict=True):
            if cand is None:
                checks.append(None)
            elif slot is None:
                checks.append(ProposalCheck(Outcome.WRONG, detail=REPEATED_INPUTS))
            else:
                checks.append(self._fold(cand, slot, results))
        return checks

    @staticmethod
    def _fold(cand: ProposalCandidate, slot: ProposalSlot, results: Sequence[CheckResult]
              ) -> ProposalCheck:
        outcome = slot.outcome(results)
        if outcome.infra_failure:
            return ProposalCheck(Outcome.EXCLUDED, reason=Verdict.SANDBOX_ERROR,
                                 detail=outcome.detail, verdicts=outcome.verdicts)
        if not outcome.valid:
            return ProposalCheck(Outcome.WRONG, reason=outcome.reason, detail=outcome.detail,
                                 verdicts=outcome.verdicts)
        if isinstance(cand.proposal, TripleProposal):
            gold = outcome.gold_output
            assert gold is not None
            return ProposalCheck(Outcome.PASSABLE,
                                 Triple(cand.proposal.program, cand.proposal.input, gold),
                                 verdicts=outcome.verdicts)
        pairs = [IOPair(inp, out) for inp, out
                 in zip(cand.proposal.inputs, outcome.outputs, strict=True) if out is not None]
        # Half the pairs are shown to the solver, the rest check its program (as the
        # reference: the first N // 2 are given, the others hidden).
        shown = len(pairs) // 2
        task = InductionTask(cand.base_program or "", cand.proposal.message,
                             tuple(pairs[:shown]), tuple(pairs[shown:]))
        return ProposalCheck(Outcome.PASSABLE, task, verdicts=outcome.verdicts)

    def answers(self, candidates: Sequence[AnswerCandidate], meta: dict[str, Any]
                ) -> list[AnswerOutcome | None]:
        """One outcome per candidate; None for a malformed answer (never sent)."""
        batch = self._batch(meta)
        reuse = self.reuse_known_outputs
        slots: list[AnswerSlot | None] = []
        for cand in candidates:
            item_meta = {"task_type": cand.task_type.value}
            task = cand.task
            if cand.answer is None:
                slots.append(None)
            elif isinstance(task, InductionTask):
                slots.append(batch.add_induction(cand.answer, task.hidden,
                                                 gold_program=task.program if reuse else None,
                                                 meta=item_meta))
            elif cand.task_type is TaskType.DEDUCTION:
                slots.append(batch.add_deduction(task.program, task.input, cand.answer,
                                                 gold_output=task.output if reuse else None,
                                                 meta=item_meta))
            else:
                slots.append(batch.add_abduction(task.program, cand.answer, task.output,
                                                 gold_input=task.input if reuse else None,
                                                 meta=item_meta))
        results = self._run(batch, str(meta.get("stage", "solve")))
        return [None if slot is None else slot.outcome(results) for slot in slots]
