"""Equality of literal values, decided in the trusted process.

Python `==` on the values, except that NaN equals NaN wherever it occurs: at the top level, in
sequences, as dict keys and values, as set elements and as a part of a complex number.

Both sides are reduced to their canonical encodings (`canonical.py`) and the bytes compared, so
equality never hashes a value with Python's `hash` (hash-colliding set elements cost nothing
extra), never recurses, and costs time linear in the size of the values plus a sort per set or
dict. Parsed literals (`Literal`) already are their encoding; plain Python values are encoded
on the fly.
"""

from __future__ import annotations

from typing import Any

from azr_verify.service.verify.canonical import Literal, encode_value


def values_equal(a: Any, b: Any) -> bool:
    """Python `==` on literal values (parsed `Literal`s or plain values), NaN equal to NaN."""
    return canonical(a) == canonical(b)


def canonical(value: Any) -> bytes:
    """The canonical encoding of a parsed literal or a plain literal value."""
    if isinstance(value, Literal):
        return value.canonical
    return encode_value(value)
