"""Parsing model responses: the `<think>…</think><answer>…</answer>` envelope and fenced blocks.

Shared by the TRL/veRL reward adapters and the trainer adapter. `None` always means
*malformed* (the -1 format penalty); anything extracted is *well-formed* and is judged by the
verifier, so a syntactically broken program inside a proper envelope is a wrong answer (-0.5),
not a format error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .azr import TaskType

# Tolerant (the reference's rules): reasoning, then `</think>`, whitespace and an answer block;
# the last complete answer block counts and anything after it is ignored.
_THINK_THEN_ANSWER = re.compile(r"^\s*(?:<think>)?(?P<think>.*?)</think>\s*<answer>", re.DOTALL)
_ANSWER_BLOCK = re.compile(r"<answer>(?P<answer>.*?)</answer>", re.DOTALL)
# Strict: exactly one envelope and nothing after it.
_ENVELOPE = re.compile(
    r"^\s*(?:<think>)?(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*$",
    re.DOTALL)
_ANSWER_ONLY = re.compile(r"^\s*<answer>(?P<answer>.*?)</answer>\s*$", re.DOTALL)
# A fence opens with ``` and an optional language tag on its own line and closes at the next
# ``` (possibly indented). Bodies are taken verbatim, so nested helper functions, classes and
# blank lines inside a program survive.
_FENCE = re.compile(r"```[ \t]*(?P<lang>[\w+.-]*)[ \t]*\n(?P<body>.*?)\n?[ \t]*```", re.DOTALL)
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


@dataclass(frozen=True)
class ParsedResponse:
    think: str
    answer: str


@dataclass(frozen=True)
class FencedBlock:
    lang: str
    body: str


def split_response(text: str, *, require_think: bool = True, strict: bool = False
                   ) -> ParsedResponse | None:
    """Split a completion into its reasoning and answer; None when malformed.

    The prompt normally ends with an opening `<think>`, so the completion may start inside
    the reasoning; a repeated opening tag is tolerated.

    Tolerant (default, as the reference implementation): the reasoning ends at a `</think>`
    followed by an `<answer>...</answer>` block; the last complete answer block is the
    answer and text after it is ignored (a sampler without a stop string keeps writing).
    `strict=True`: exactly one answer block, no stray tags, nothing but whitespace after it.
    """
    if strict:
        return _split_strict(text, require_think)
    head = _THINK_THEN_ANSWER.match(text)
    if head is not None:
        think, start = head.group("think"), head.end() - len("<answer>")
    elif not require_think and text.lstrip().startswith("<answer>"):
        think, start = "", text.index("<answer>")
    else:
        return None
    blocks = list(_ANSWER_BLOCK.finditer(text, start))
    if not blocks:
        return None
    return ParsedResponse(think.strip(), blocks[-1].group("answer"))


def _split_strict(text: str, require_think: bool) -> ParsedResponse | None:
    match = _ENVELOPE.match(text)
    if match is None:
        if require_think:
            return None
        match = _ANSWER_ONLY.match(text)
        if match is None:
            return None
        think = ""
    else:
        think = match.group("think")
    answer = match.group("answer")
    if any(tag in answer for tag in _TAGS) or any(tag in think for tag in _TAGS[1:]):
        return None
    return ParsedResponse(think.strip(), answer)


def fenced_blocks(text: str) -> list[FencedBlock]:
    return [FencedBlock(m.group("lang").lower(), m.group("body"))
            for m in _FENCE.finditer(text)]


def first_block(text: str, *langs: str) -> str | None:
    """Body of the first block tagged with one of `langs`, else None."""
    for block in fenced_blocks(text):
        if block.lang in langs:
            return block.body
    return None


def _block_or_raw(answer: str, *langs: str) -> str | None:
    body = first_block(answer, *langs)
    if body is None:
        blocks = fenced_blocks(answer)
        # An untagged fence is as good as a tagged one; otherwise take the raw answer.
        body = blocks[0].body if blocks and not blocks[0].lang else None
    if body is None:
        body = answer if "```" not in answer else None
    if body is None:
        return None
    body = body.strip()
    return body or None


def extract_solver_answer(task: TaskType, text: str, *, require_think: bool = True,
                          strict: bool = False) -> str | None:
    """The solver's answer for a task type: an output repr (deduction), call arguments
    (abduction) or a program (induction). None when malformed."""
    parsed = split_response(text, require_think=require_think, strict=strict)
    if parsed is None:
        return None
    if task is TaskType.DEDUCTION:
        return _block_or_raw(parsed.answer, "output")
    if task is TaskType.ABDUCTION:
        return _block_or_raw(parsed.answer, "input")
    program = first_block(parsed.answer, "python", "py")
    if program is None:
        program = _block_or_raw(parsed.answer)
    if program is None or not program.strip():
        return None
    return program.strip("\n")
