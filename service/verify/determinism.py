"""The fold of an item's determinism runs into one verdict (docs/design.md §2, §9.4).

Pure: run outcomes in, one `FoldedRuns` out; nothing runs, nothing is cached. Every outcome was
decided on the trusted side (`sandbox/outcome.py`); a value whose repr does not parse as a
literal is a malformed report of that run. A resource verdict of any run decides the item (a
run that hit a limit says nothing about the value); otherwise every run must agree on its
value, or on the kind and type of its failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from azr_verify.service.models import Verdict
from azr_verify.service.verify.compare import LiteralParser
from azr_verify.service.verify.equality import values_equal
from azr_verify.service.verify.literals import LiteralError
from azr_verify.service.verify.run_outcome import MALFORMED, ExecOutcome, OutcomeKind

# In this order: an infrastructure failure is never hidden behind a program's limit, nor a
# limit behind a disagreement.
_RESOURCE_VERDICTS = (
    (OutcomeKind.SANDBOX_ERROR, Verdict.SANDBOX_ERROR),
    (OutcomeKind.TIMEOUT, Verdict.TIMEOUT),
    (OutcomeKind.MEMORY, Verdict.MEMORY_LIMIT),
    (OutcomeKind.OUTPUT_LIMIT, Verdict.OUTPUT_LIMIT),
)
_AGREED_VERDICTS = {
    OutcomeKind.ERROR: Verdict.RUNTIME_ERROR,
    OutcomeKind.CRASH: Verdict.RUNTIME_ERROR,
    OutcomeKind.NOT_LITERAL: Verdict.NOT_LITERAL,
    OutcomeKind.NO_ENTRY: Verdict.SYNTAX_ERROR,
}
# How much of a disagreeing value the nondeterministic verdict's message quotes.
_DESCRIBED_CHARS = 200

# What must agree between runs: (parsed value, None), or (kind of failure, error type).
Signature = tuple[Any, str | None]


@dataclass(frozen=True, slots=True)
class FoldedRuns:
    """One verdict for a (program, input) before any expected output is compared: ACCEPTED
    means every run returned the same literal, whose repr (the first run's) is `output`."""

    verdict: Verdict
    output: str | None = None
    error_type: str | None = None
    error: str | None = None
    duration_ms: float = 0.0


def fold_runs(outcomes: Sequence[ExecOutcome], parse: LiteralParser) -> FoldedRuns:
    """One verdict from all determinism runs of a (program, input); `parse` is the bounded
    literal parser (memoised by the engine)."""
    duration = round(sum(outcome.duration_ms for outcome in outcomes), 3)
    validated = [_validated(outcome, parse) for outcome in outcomes]
    for kind, verdict in _RESOURCE_VERDICTS:
        hit = next((outcome for outcome in validated if outcome.kind is kind), None)
        if hit is not None:
            return FoldedRuns(verdict=verdict, error_type=hit.error_type, error=hit.error,
                              duration_ms=duration)
    signatures = [_signature(outcome, parse) for outcome in validated]
    first = validated[0]
    for run, signature in enumerate(signatures[1:], start=2):
        if not _same_signature(signatures[0], signature):
            return FoldedRuns(
                verdict=Verdict.NONDETERMINISTIC, duration_ms=duration,
                error=f"run 1 gave {_describe(first)}; run {run} gave "
                      f"{_describe(validated[run - 1])}")
    if first.kind is OutcomeKind.VALUE:
        return FoldedRuns(verdict=Verdict.ACCEPTED, output=first.repr, duration_ms=duration)
    return FoldedRuns(verdict=_AGREED_VERDICTS[first.kind], error_type=first.error_type,
                      error=first.error, duration_ms=duration)


def _validated(outcome: ExecOutcome, parse: LiteralParser) -> ExecOutcome:
    if outcome.kind is not OutcomeKind.VALUE:
        return outcome
    try:
        parse(outcome.repr or "")
    except LiteralError as exc:
        return ExecOutcome(OutcomeKind.CRASH, error_type=MALFORMED,
                           error=f"the child's report could not be validated: the value is "
                                 f"not a literal ({exc})",
                           duration_ms=outcome.duration_ms)
    return outcome


def _signature(outcome: ExecOutcome, parse: LiteralParser) -> Signature:
    if outcome.kind is OutcomeKind.VALUE:
        return parse(outcome.repr or ""), None
    return outcome.kind, outcome.error_type


def _same_signature(a: Signature, b: Signature) -> bool:
    if isinstance(a[0], OutcomeKind) or isinstance(b[0], OutcomeKind):
        return a == b
    return values_equal(a[0], b[0])


def _describe(outcome: ExecOutcome) -> str:
    if outcome.kind is OutcomeKind.VALUE:
        text = outcome.repr or ""
        return text if len(text) <= _DESCRIBED_CHARS else text[:_DESCRIBED_CHARS] + "..."
    return f"{outcome.kind.value} {outcome.error_type or ''}".strip()
