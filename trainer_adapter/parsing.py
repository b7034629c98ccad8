"""Parsing proposer outputs (the solver's answers are parsed by the client's `answers`).

`None` means malformed (format penalty -1). A well-formed proposal whose program or input is
broken is *not* malformed: the verifier rejects it, which costs the smaller -0.5.

The envelope is parsed tolerantly by default (`split_response`: the last complete answer
block counts, text after it is ignored), as the reference implementation does.
"""

from __future__ import annotations

from dataclasses import dataclass

from azr_verify.client import extract_solver_answer, fenced_blocks, split_response

__all__ = [
    "InductionProposal",
    "TripleProposal",
    "extract_solver_answer",
    "parse_induction_proposal",
    "parse_triple_proposal",
]


@dataclass(frozen=True)
class TripleProposal:
    """A deduction/abduction proposal: a program and one input."""

    program: str
    input: str


@dataclass(frozen=True)
class InductionProposal:
    """An induction proposal: inputs for a buffered program, and a message about it."""

    inputs: tuple[str, ...]
    message: str


def parse_triple_proposal(text: str, *, strict: bool = False) -> TripleProposal | None:
    parsed = split_response(text, strict=strict)
    if parsed is None:
        return None
    program = inp = None
    for block in fenced_blocks(parsed.answer):
        if block.lang in ("python", "py") and program is None:
            program = block.body.strip("\n")
        elif block.lang == "input" and inp is None:
            inp = block.body.strip()
    if not program or not program.strip() or not inp:
        return None
    return TripleProposal(program, inp)


def parse_induction_proposal(text: str, n_inputs: int, *, strict: bool = False
                             ) -> InductionProposal | None:
    """Exactly `n_inputs` inputs (the last ones when there are more) and a message, as the
    reference requires; fewer inputs or no message is malformed. Repeated inputs are kept
    here and rejected by validation (they would leak hidden pairs)."""
    parsed = split_response(text, strict=strict)
    if parsed is None:
        return None
    inputs: list[str] = []
    message = ""
    for block in fenced_blocks(parsed.answer):
        body = block.body.strip()
        if block.lang == "input" and body:
            inputs.append(body)
        elif block.lang == "message" and not message:
            message = body
    if len(inputs) < n_inputs or not message:
        return None
    return InductionProposal(tuple(inputs[-n_inputs:]), message)
