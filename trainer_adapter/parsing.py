"""Parsing proposer outputs (the solver's answers are parsed by the client's `answers`).

`None` means malformed (format penalty -1). A well-formed proposal whose program or input is
broken is *not* malformed: the verifier rejects it, which costs the smaller -0.5.
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


def parse_triple_proposal(text: str) -> TripleProposal | None:
    parsed = split_response(text)
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


def parse_induction_proposal(text: str, max_inputs: int) -> InductionProposal | None:
    """Distinct inputs, in order, at most `max_inputs`; the message is optional."""
    parsed = split_response(text)
    if parsed is None:
        return None
    inputs: list[str] = []
    message = ""
    for block in fenced_blocks(parsed.answer):
        body = block.body.strip()
        if block.lang == "input" and body and body not in inputs:
            inputs.append(body)
        elif block.lang == "message" and not message:
            message = body
    if not inputs:
        return None
    return InductionProposal(tuple(inputs[:max_inputs]), message)
