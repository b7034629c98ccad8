"""Equality of parsed literal values, decided in the trusted process.

Python `==` on the values, except that NaN equals NaN wherever it occurs: at the top level, in
sequences, as dict keys and values, as set elements and as a part of a complex number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class _NaN:
    """Stands for every NaN; equal only to itself, so also usable in sets and as a dict key."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NaN"


_NAN = _NaN()


@dataclass(frozen=True)
class _NanNumber:
    """A float or complex number with a NaN part; NaN parts are replaced by `_NAN`.

    A NaN float is `_NanNumber(_NAN, 0.0)`, so it equals `complex(nan, 0)` the way every other
    float `x` equals `complex(x, 0)`.
    """

    real: float | _NaN
    imag: float | _NaN


def values_equal(a: Any, b: Any) -> bool:
    """Python `==` on literal values, with NaN equal to NaN everywhere."""
    return bool(_normalise(a) == _normalise(b))


def _normalise(root: Any) -> Any:
    """A copy of `root` with NaNs replaced; iterative, so depth is no concern here.

    Sets and frozensets both become frozensets (Python compares them by elements anyway) and
    dict keys that become equal collapse, last value winning, like duplicate keys in a literal.
    """
    done: list[Any] = []
    # (value, children-count) where a count means "rebuild from the last `count` results".
    todo: list[tuple[Any, int | None]] = [(root, None)]
    while todo:
        value, count = todo.pop()
        if count is not None:
            parts = done[len(done) - count:]
            del done[len(done) - count:]
            done.append(_rebuild(value, parts))
            continue
        children = _children(value)
        if children is None:
            done.append(_scalar(value))
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


def _rebuild(value: Any, parts: list[Any]) -> Any:
    if isinstance(value, list):
        return parts
    if isinstance(value, tuple):
        return tuple(parts)
    if isinstance(value, set | frozenset):
        return frozenset(parts)
    return dict(zip(parts[0::2], parts[1::2], strict=True))


def _scalar(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return _NanNumber(_NAN, 0.0)
    if isinstance(value, complex) and (math.isnan(value.real) or math.isnan(value.imag)):
        return _NanNumber(_nan_or_float(value.real), _nan_or_float(value.imag))
    return value


def _nan_or_float(part: float) -> float | _NaN:
    return _NAN if math.isnan(part) else part
