"""Comparison items: a known value against a predicted one, with nothing executed.

An item without a program (docs/design.md §2) carries a literal known from an earlier check in
`input` (an AZR gold output) and the literal to judge in `output` (a deduction answer). Both
are parsed with the bounded literal parser and compared with `values_equal`, exactly as the
engine compares a program's value with an expected output, so the verdict is the one the
executing triple `(p, i, o')` would get once `f(i)` is known: accepted, wrong_output, or
syntax_error when either text is not a literal. The None policy applies to the known value as
it would to the value `f` returned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from azr_verify.service.models import CheckItem, CheckResult, Verdict
from azr_verify.service.verify.equality import values_equal
from azr_verify.service.verify.literals import LiteralError

LiteralParser = Callable[[str], Any]


def compare_item(item: CheckItem, parse: LiteralParser, reject_none_output: bool
                 ) -> CheckResult:
    """The verdict on a comparison item (`item.program` is None, `item.output` is set)."""
    if item.program is not None or item.output is None:
        raise ValueError("compare_item takes items without a program and with an output")
    try:
        known = parse(item.input)
    except LiteralError as exc:
        return CheckResult(id=item.id, verdict=Verdict.SYNTAX_ERROR,
                           error=f"input: the known value is not a literal: {exc}")
    try:
        predicted = parse(item.output)
    except LiteralError as exc:
        return CheckResult(id=item.id, verdict=Verdict.SYNTAX_ERROR,
                           error=f"output is not a literal: {exc}")
    if reject_none_output and values_equal(known, None):
        return CheckResult(id=item.id, verdict=Verdict.NOT_LITERAL,
                           error="the known value is None (rejected by the None policy)")
    verdict = Verdict.ACCEPTED if values_equal(known, predicted) else Verdict.WRONG_OUTPUT
    return CheckResult(id=item.id, verdict=verdict)
