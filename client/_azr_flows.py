"""AZR single-check operations as flows, shared by both client twins."""

from __future__ import annotations

from collections.abc import Sequence

from ._core import Core, Flow
from .azr import (
    CheckBatch,
    IOPairLike,
    ProposalOutcome,
    fold_answer,
    require_answer,
    require_proposal,
)


def validate_proposal(core: Core, program: str, inputs: Sequence[str],
                      min_valid: int | None, policy: str | None,
                      determinism_runs: int | None = None) -> Flow[ProposalOutcome]:
    batch = CheckBatch(proposal_runs=determinism_runs)
    slot = batch.add_proposal(program, inputs, min_valid=min_valid)
    results = yield from core.check(batch.items, policy)
    return require_proposal(slot.outcome(results), results)


def _check_answer(core: Core, batch: CheckBatch, policy: str | None) -> Flow[bool]:
    # The batch holds exactly one answer: every item must be accepted.
    results = yield from core.check(batch.items, policy)
    return require_answer(fold_answer(results), results)


def check_deduction(core: Core, program: str, input: str, predicted_output: str,
                    policy: str | None, gold_output: str | None,
                    determinism_runs: int | None) -> Flow[bool]:
    batch = CheckBatch(answer_runs=determinism_runs)
    batch.add_deduction(program, input, predicted_output, gold_output=gold_output)
    return (yield from _check_answer(core, batch, policy))


def check_abduction(core: Core, program: str, predicted_input: str, gold_output: str,
                    policy: str | None, determinism_runs: int | None) -> Flow[bool]:
    batch = CheckBatch(answer_runs=determinism_runs)
    batch.add_abduction(program, predicted_input, gold_output)
    return (yield from _check_answer(core, batch, policy))


def check_induction(core: Core, predicted_program: str, hidden: Sequence[IOPairLike],
                    policy: str | None, determinism_runs: int | None) -> Flow[bool]:
    batch = CheckBatch(answer_runs=determinism_runs)
    batch.add_induction(predicted_program, hidden)
    return (yield from _check_answer(core, batch, policy))
