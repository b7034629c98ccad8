"""values_equal: Python `==` on literal values, except that NaN equals NaN everywhere."""

from __future__ import annotations

from typing import Any

import pytest

from azr_verify.service.verify.equality import values_equal
from azr_verify.service.verify.literals import parse_literal

NAN = float("nan")
INF = float("inf")


def other_nan() -> float:
    """A NaN that is not the `NAN` object, so identity shortcuts cannot make a test pass."""
    return float("nan")


EQUAL = [
    ({1, 2}, {2, 1}),
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
    (1, 1.0),
    (1.0, True),
    (1, True),
    (0, False),
    (1, complex(1, 0)),
    ([1, 2.0], [1.0, 2]),
    ((1, (2, [3])), (1, (2, [3]))),
    (frozenset({1}), {1}),
    ({frozenset({1}): 2}, {frozenset({1}): 2}),
    (-0.0, 0.0),
    (complex(-0.0, 0.0), 0j),
    ("a", "a"),
    (b"a", b"a"),
    (None, None),
    (set(), frozenset()),
    ({}, {}),
    (INF, INF),
    (NAN, other_nan()),
    (NAN, -NAN),
    ([NAN], [other_nan()]),
    ((1, NAN), (1, other_nan())),
    ({"k": NAN}, {"k": other_nan()}),
    ({NAN: 1}, {other_nan(): 1}),
    ({NAN}, {other_nan()}),
    ({(NAN, 1)}, {(other_nan(), 1)}),
    (frozenset({NAN}), {other_nan()}),
    (complex(NAN, 1), complex(other_nan(), 1)),
    (complex(1, NAN), complex(1, other_nan())),
    (complex(NAN, NAN), complex(other_nan(), other_nan())),
    (NAN, complex(NAN, 0)),
    (NAN, complex(NAN, -0.0)),
    ([{"a": [{NAN: (NAN, {NAN})}]}], [{"a": [{other_nan(): (other_nan(), {other_nan()})}]}]),
    (dict([(1, "x"), (True, "y")]), {1: "y"}),
]

UNEQUAL = [
    ([1], (1,)),
    ([1, 2], [2, 1]),
    ((1, 2), (2, 1)),
    ({1: 2}, {1: 3}),
    ({1: 2}, {2: 1}),
    ({1}, [1]),
    ({1}, (1,)),
    ({1: 1}, {1}),
    ("a", b"a"),
    ("1", 1),
    (None, 0),
    (None, False),
    (None, []),
    ([], ()),
    (set(), {}),
    (1, 1.5),
    (1, complex(1, 1)),
    (NAN, 1.0),
    (NAN, INF),
    (NAN, None),
    (NAN, "nan"),
    ([NAN], [1.0]),
    ({NAN}, {1.0}),
    ({NAN: 1}, {NAN: 2}),
    (complex(NAN, 1), complex(NAN, 2)),
    (complex(NAN, 1), complex(1, NAN)),
    (complex(NAN, 1), NAN),
    ([1, 2], [1, 2, 3]),
    ({"a": 1}, {"a": 1, "b": 2}),
    (INF, -INF),
]


@pytest.mark.parametrize(("a", "b"), EQUAL)
def test_equal(a: Any, b: Any) -> None:
    assert values_equal(a, b) is True
    assert values_equal(b, a) is True


@pytest.mark.parametrize(("a", "b"), UNEQUAL)
def test_unequal(a: Any, b: Any) -> None:
    assert values_equal(a, b) is False
    assert values_equal(b, a) is False


@pytest.mark.parametrize("value", [NAN, [NAN], {NAN: NAN}, {NAN}, complex(0, NAN), (NAN, [NAN])])
def test_nan_values_equal_themselves(value: Any) -> None:
    assert values_equal(value, value)


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("{1, 2}", "{2, 1}", True),
    ("{'a': 1, 'b': 2}", "{'b': 2, 'a': 1}", True),
    ("1", "True", True),
    ("1", "1.0", True),
    ("[1]", "(1,)", False),
    ("nan", "float('nan')", True),
    ("{nan}", "{float('nan')}", True),
    ("[nan, (1+nanj)]", "[float('nan'), (1+nanj)]", True),
    ("frozenset({1, 2})", "{1, 2}", True),
    ("set()", "frozenset()", True),
    ("-0.0", "0", True),
    ("'a'", "b'a'", False),
    ("(-1-2j)", "-1-2j", True),
    ("float('inf')", "inf", True),
    ("float('inf')", "-inf", False),
])
def test_on_parsed_answers(a: str, b: str, expected: bool) -> None:
    assert values_equal(parse_literal(a), parse_literal(b)) is expected


def nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 3 == 0 else (value,) if level % 3 == 1 else {"k": value}
    return value


@pytest.mark.parametrize("depth", [100, 200])
def test_deep_values(depth: int) -> None:
    assert values_equal(nested(depth, NAN), nested(depth, other_nan()))
    assert not values_equal(nested(depth, 1), nested(depth, 2))


def test_does_not_modify_its_arguments() -> None:
    a = {"k": [NAN, {1, 2}], "s": {NAN}}
    before = repr(a)
    values_equal(a, {"k": [NAN, {1, 2}], "s": {NAN}})
    assert repr(a) == before
    assert isinstance(a["s"], set)
