"""Canonical byte encodings of literal values: two values are equal iff their encodings are.

"Equal" is Python `==` on literal values with NaN equal to NaN wherever it occurs (docs/design.md
§2). The encoding is prefix-free (every scalar is self-delimiting, every container has an opening
and a closing tag), so concatenating element encodings is unambiguous, and:

- numbers that compare equal encode the same: `1`, `1.0`, `True` and `(1+0j)` all encode as the
  integer 1; non-integral floats by their exact hexadecimal form; a complex number with a
  non-zero imaginary part as its two parts; every NaN as one tag;
- sets and frozensets encode as the *sorted, de-duplicated* encodings of their elements, dicts as
  their (key, value) encodings sorted by key with the last value of a repeated key winning.

Sorting byte strings never hashes a value with Python's `hash`, so hash-colliding elements (for
example `i * (2**61 - 1)`) cost no more than any others; de-duplication hashes only the byte
strings, whose hash is keyed per process (SipHash). Building an encoding is linear in the size of
the value plus a sort per set or dict.
"""

from __future__ import annotations

import math
from typing import Any

NAN_CODE = b"n"
NONE_CODE = b"N"
POSITIVE_INFINITY = b"I+"
NEGATIVE_INFINITY = b"I-"
LIST_OPEN, LIST_CLOSE = b"[", b"]"
TUPLE_OPEN, TUPLE_CLOSE = b"(", b")"
SET_OPEN, SET_CLOSE = b"{", b"}"
DICT_OPEN, DICT_CLOSE = b"<", b">"


class Literal:
    """A parsed literal value, kept as its canonical encoding (see the module docstring).

    Compare two of them with `values_equal` (or `==`); the encoding is all the trusted side
    keeps, so a cached literal costs exactly `len(canonical)` bytes plus a small header.
    """

    __slots__ = ("canonical",)

    def __init__(self, canonical: bytes) -> None:
        self.canonical = canonical

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Literal):
            return NotImplemented
        return self.canonical == other.canonical

    def __hash__(self) -> int:
        return hash(self.canonical)

    def __repr__(self) -> str:
        return f"Literal(<{len(self.canonical)} canonical bytes>)"


def encode_int(value: int) -> bytes:
    # Hexadecimal: converting an int to a power-of-two base is linear in its size.
    return b"i%x;" % value


def encode_real(value: int | float) -> bytes:
    if type(value) is not float:
        return encode_int(int(value))
    if value != value:
        return NAN_CODE
    if math.isinf(value):
        return POSITIVE_INFINITY if value > 0 else NEGATIVE_INFINITY
    if value.is_integer():
        return encode_int(int(value))
    return b"f" + value.hex().encode("ascii") + b";"


def encode_number(value: int | float | complex) -> bytes:
    if isinstance(value, complex):
        if value.imag == 0:  # also -0.0; a NaN imaginary part is not 0
            return encode_real(value.real)
        return b"c" + encode_real(value.real) + encode_real(value.imag)
    return encode_real(value)


def encode_str(value: str) -> bytes:
    data = value.encode("utf-8", "surrogatepass")
    return b"s%d:" % len(data) + data


def encode_bytes(value: bytes) -> bytes:
    return b"b%d:" % len(value) + value


def encode_set(elements: list[bytes]) -> bytes:
    return SET_OPEN + b"".join(sorted(set(elements))) + SET_CLOSE


def encode_dict(keys: list[bytes], values: list[bytes]) -> bytes:
    # dict(zip(...)) keeps the last value of a repeated key, like a dict display does.
    merged = dict(zip(keys, values, strict=True))
    return DICT_OPEN + b"".join(key + merged[key] for key in sorted(merged)) + DICT_CLOSE


def encode_value(root: Any) -> bytes:
    """The canonical encoding of a Python literal value (or of a `Literal`); iterative."""
    done: list[bytes] = []
    # (value, None) = encode it; (value, count) = assemble it from the last `count` results.
    todo: list[tuple[Any, int | None]] = [(root, None)]
    while todo:
        value, count = todo.pop()
        if count is not None:
            parts = done[len(done) - count:]
            del done[len(done) - count:]
            done.append(_assemble(value, parts))
            continue
        children = _children(value)
        if children is None:
            done.append(_encode_scalar(value))
        else:
            todo.append((value, len(children)))
            todo.extend((child, None) for child in reversed(children))
    return done[0]


def _children(value: Any) -> list[Any] | None:
    if isinstance(value, list | tuple | set | frozenset):
        return list(value)
    if isinstance(value, dict):
        return [item for pair in value.items() for item in pair]
    return None


def _assemble(value: Any, parts: list[bytes]) -> bytes:
    if isinstance(value, list):
        return LIST_OPEN + b"".join(parts) + LIST_CLOSE
    if isinstance(value, tuple):
        return TUPLE_OPEN + b"".join(parts) + TUPLE_CLOSE
    if isinstance(value, set | frozenset):
        return encode_set(parts)
    return encode_dict(parts[0::2], parts[1::2])


def _encode_scalar(value: Any) -> bytes:
    if isinstance(value, Literal):
        return value.canonical
    if value is None:
        return NONE_CODE
    if isinstance(value, bool | int | float | complex):
        return encode_number(value)
    if isinstance(value, str):
        return encode_str(value)
    if isinstance(value, bytes):
        return encode_bytes(value)
    raise TypeError(f"not a literal value: {type(value).__name__}")
