"""Comparing what a script wrote on stdout with a test case's expected output (docs/design.md §10).

Everything is bytes: the program's stdout as the sandbox captured it, and the expected output
encoded as UTF-8. Whitespace means the ASCII bytes space, \\t, \\n, \\r, \\v and \\f, never other
Unicode spaces. Each mode is linear in the bytes compared.

- `exact`: equal bytes.
- `lines`: split at \\n (a \\r right before it belongs to the line ending); each line without
  its trailing whitespace; trailing empty lines dropped; equal lists of lines. Leading
  whitespace and blank lines between lines count.
- `tokens`: equal sequences of maximal runs of non-whitespace bytes.
"""

from __future__ import annotations

from azr_verify.service.models import CompareMode

WHITESPACE = b" \t\n\r\x0b\x0c"


def expected_bytes(text: str) -> bytes:
    """A test case's expected output as the bytes a program would have to write (lone
    surrogates, which no program can print as UTF-8, kept so that they never match)."""
    return text.encode("utf-8", "surrogatepass")


def _lines(data: bytes) -> list[bytes]:
    lines = [line.rstrip(WHITESPACE) for line in data.split(b"\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def outputs_match(actual: bytes, expected: bytes, mode: CompareMode) -> bool:
    if mode is CompareMode.EXACT:
        return actual == expected
    if mode is CompareMode.LINES:
        return _lines(actual) == _lines(expected)
    return actual.split() == expected.split()  # bytes.split() splits at ASCII whitespace


def head(data: bytes, chars: int) -> str:
    """The first `chars` characters of `data` as text (invalid UTF-8 replaced)."""
    return data[:4 * chars].decode("utf-8", "replace")[:chars]


def tail(data: bytes, chars: int) -> str:
    """The last `chars` characters of `data` as text (invalid UTF-8 replaced)."""
    text = data[-4 * chars:].decode("utf-8", "replace")
    return text[-chars:] if chars else ""
