"""The engine's memoised static checks, bounded in bytes and in the size of what they accept.

AZR checks the same program for every answer and parses the same expected output in every run,
so both are memoised. Keys are content hashes (a memoised 12 MB program costs 32 bytes of key,
not 12 MB), values are charged what they keep alive, and each memo is a `ByteLRU` with its own
byte budget (docs/design.md §9.6).

`ProgramChecks` also refuses programs over `max_program_chars` before parsing them: parsing and
compiling a program is one C call that holds the GIL (about 1 ms per KB), so the cap bounds how
long any one item can keep the event loop from answering.
"""

from __future__ import annotations

import hashlib
import logging

from azr_verify.service.config import Settings
from azr_verify.service.lru import ByteLRU
from azr_verify.service.models import PolicyName
from azr_verify.service.verify.literals import DEFAULT_LIMITS, Literal, LiteralError, parse_literal
from azr_verify.service.verify.policy import ProgramCheck, check_program

log = logging.getLogger(__name__)

# Texts up to this long are their own key; longer ones are keyed by their sha256.
_SHORT_KEY_CHARS = 64
# What a memoised result keeps alive beyond its variable-length parts (object headers).
_CHECK_BYTES = 150
_VIOLATION_BYTES = 250
_LITERAL_BYTES = 90


def content_key(text: str) -> str | bytes:
    if len(text) <= _SHORT_KEY_CHARS:
        return text
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class ProgramChecks:
    """`check_program(program, policy, entry)`, size-capped and memoised."""

    def __init__(self, max_program_chars: int, max_bytes: int) -> None:
        self.max_program_chars = max_program_chars
        self._memo: ByteLRU[tuple[str | bytes, str, str], ProgramCheck] = ByteLRU(max_bytes)

    @classmethod
    def from_settings(cls, settings: Settings) -> ProgramChecks:
        return cls(settings.max_program_chars, settings.program_cache_bytes)

    def __call__(self, program: str, policy: PolicyName = PolicyName.AZR,
                 entry: str = "f") -> ProgramCheck:
        if isinstance(program, str) and len(program) > self.max_program_chars:
            return ProgramCheck(
                syntax_error=f"the program is {len(program)} characters, over the limit of "
                             f"{self.max_program_chars} (AZR_VERIFY_MAX_PROGRAM_CHARS)",
                violations=(), has_entry=False)
        if not isinstance(program, str):
            return check_program(program, policy, entry)
        key = (content_key(program), str(policy), entry)
        found = self._memo.get(key)
        if found is not None:
            return found
        try:
            result = check_program(program, policy, entry)
        except (RecursionError, MemoryError):
            # The policy walks the tree; no program may take the batch down with it.
            log.warning("the static policy could not walk a program", exc_info=True)
            result = ProgramCheck(syntax_error="the program is too deeply nested to check",
                                  violations=(), has_entry=False)
        self._memo.put(key, result, _check_size(key[0], result))
        return result

    @property
    def cached_bytes(self) -> int:
        return self._memo.bytes


class LiteralParses:
    """`parse_literal(text)`, memoised; refusals are memoised too (as their message)."""

    def __init__(self, max_bytes: int) -> None:
        self._memo: ByteLRU[str | bytes, Literal | str] = ByteLRU(max_bytes)

    @classmethod
    def from_settings(cls, settings: Settings) -> LiteralParses:
        return cls(settings.literal_cache_bytes)

    def __call__(self, text: str) -> Literal:
        if not isinstance(text, str) or len(text) > DEFAULT_LIMITS.max_chars:
            return parse_literal(text)  # refused at once, nothing worth keeping
        key = content_key(text)
        found = self._memo.get(key)
        if isinstance(found, str):
            raise LiteralError(found)
        if found is not None:
            return found
        try:
            literal = parse_literal(text)
        except LiteralError as exc:
            message = str(exc)
            self._memo.put(key, message, len(key) + len(message) + _LITERAL_BYTES)
            raise
        self._memo.put(key, literal, len(key) + len(literal.canonical) + _LITERAL_BYTES)
        return literal

    @property
    def cached_bytes(self) -> int:
        return self._memo.bytes


def _check_size(key: str | bytes, check: ProgramCheck) -> int:
    size = _CHECK_BYTES + len(key) + len(check.syntax_error or "")
    return size + sum(_VIOLATION_BYTES + len(v.name) + len(v.rule) for v in check.violations)
