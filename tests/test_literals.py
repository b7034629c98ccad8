"""The safe literal parser: accepted forms, rejected forms, positions, and fuzzing."""

from __future__ import annotations

import ast
import contextlib
import keyword
import math
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azr_verify.service.verify import literals
from azr_verify.service.verify.equality import values_equal
from azr_verify.service.verify.literals import LiteralError, parse_call_arguments, parse_literal

# Junk such as `1if` makes the parser warn before it fails; the warnings are not the subject.
pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning",
                                        "ignore:invalid escape sequence:DeprecationWarning")
INF = float("inf")
NAN = float("nan")

# What the sandbox runner evaluates argument text in; the parser must agree with it.
RUNNER_NAMESPACE = {
    "__builtins__": {}, "float": float, "set": set, "frozenset": frozenset,
    "inf": INF, "nan": NAN, "infj": complex(0, INF), "nanj": complex(0, NAN),
}


def same(a: Any, b: Any) -> bool:
    """Equal values of the same types all the way down (`1 == True` is not enough here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return values_equal(a, b) and all(same(a[k], b[k]) for k in a if k == k)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(values_equal(a, b))


ACCEPTED = [
    ("1", 1),
    ("-1", -1),
    ("+1", 1),
    ("1.5", 1.5),
    ("-0.0", -0.0),
    ("1e400", INF),
    ("0x1F", 31),
    ("1_000", 1000),
    ("True", True),
    ("False", False),
    ("None", None),
    ("'a'", "a"),
    ("'a' 'b'", "ab"),
    ('"\\n"', "\n"),
    ("b'\\x00'", b"\x00"),
    ("''", ""),
    ("()", ()),
    ("(1,)", (1,)),
    ("[]", []),
    ("[1, 2]", [1, 2]),
    ("{}", {}),
    ("{1: 'a', 'b': [2]}", {1: "a", "b": [2]}),
    ("{1, 2}", {1, 2}),
    ("set()", set()),
    ("frozenset()", frozenset()),
    ("frozenset({1, 2})", frozenset({1, 2})),
    ("frozenset([1, 2])", frozenset({1, 2})),
    ("frozenset((1,))", frozenset({1})),
    ("float('inf')", INF),
    ("float('-inf')", -INF),
    ("float('1.5')", 1.5),
    ("inf", INF),
    ("-inf", -INF),
    ("1j", 1j),
    ("-1j", -1j),
    ("1+2j", 1 + 2j),
    ("-1-2j", -1 - 2j),
    ("(1.5-0j)", complex(1.5, -0.0)),
    ("-(1+2j)", -(1 + 2j)),
    ("(1+infj)", complex(1, INF)),
    ("(-inf-infj)", complex(-INF, -INF)),
    ("infj", complex(0, INF)),
    ("-infj", complex(0, -INF)),
    ("[[1, [2, [3]]], {'k': (4, {5})}]", [[1, [2, [3]]], {"k": (4, {5})}]),
    ("{(1, 2): frozenset({3})}", {(1, 2): frozenset({3})}),
    ("[\n 1,\n 2,  # comment\n]", [1, 2]),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED)
def test_accepted_literal(text: str, expected: Any) -> None:
    assert same(parse_literal(text), expected)


@pytest.mark.parametrize(("text", "expected"), ACCEPTED)
def test_agrees_with_the_runner_namespace(text: str, expected: Any) -> None:
    assert same(parse_literal(text), eval(text, dict(RUNNER_NAMESPACE)))


@pytest.mark.parametrize("text", ["nan", "-nan", "float('nan')", "float('-nan')"])
def test_nan(text: str) -> None:
    value = parse_literal(text)
    assert isinstance(value, float)
    assert math.isnan(value)


@pytest.mark.parametrize(("text", "real_nan", "imag_nan"), [
    ("nanj", False, True),
    ("(1+nanj)", False, True),
    ("(nan+1j)", True, False),
    ("(nan+nanj)", True, True),
])
def test_complex_nan(text: str, real_nan: bool, imag_nan: bool) -> None:
    value = parse_literal(text)
    assert isinstance(value, complex)
    assert (math.isnan(value.real), math.isnan(value.imag)) == (real_nan, imag_nan)


def test_nan_name_is_one_object_like_in_the_runner() -> None:
    assert len(eval("{nan: 1, nan: 2}", dict(RUNNER_NAMESPACE))) == 1
    parsed = parse_literal("{nan: 1, nan: 2}")
    assert len(parsed) == 1
    assert list(parsed.values()) == [2]
    assert len(parse_literal("{float('nan'), float('nan')}")) == 2


def test_duplicate_dict_keys_keep_the_last_value() -> None:
    assert parse_literal("{1: 'a', 1: 'b'}") == {1: "b"}


REJECTED = [
    ("__import__('os')", "call to '__import__'"),
    ("().__class__", "attribute access"),
    ("x", "name 'x'"),
    ("print(1)", "call to 'print'"),
    ("set([1])", "set() takes no arguments"),
    ("set(x=1)", "call to 'set'"),
    ("frozenset(x)", "frozenset() takes a set"),
    ("frozenset({1}, {2})", "takes no arguments here"),
    ("frozenset({})", "frozenset() takes a set"),
    ("float(1)", "string constant"),
    ("float('x')", "not a valid float"),
    ("float()", "exactly one"),
    ("float.fromhex('1')", "call"),
    ("[x for x in y]", "list comprehension"),
    ("{x for x in y}", "set comprehension"),
    ("{x: 1 for x in y}", "dict comprehension"),
    ("(x for x in y)", "generator expression"),
    ("f'{x}'", "f-string"),
    ("f'a'", "f-string"),
    ("1 if 1 else 2", "conditional expression"),
    ("lambda: 1", "lambda"),
    ("[*a]", "starred expression"),
    ("(*a,)", "starred expression"),
    ("{**a}", "**-unpacking"),
    ("(y := 1)", "assignment expression"),
    ("[1][0]", "subscript"),
    ("1 < 2", "comparison"),
    ("1 and 2", "boolean operator"),
    ("not 1", "operator 'not'"),
    ("~1", "operator '~'"),
    ("--1", "operator '-'"),
    ("-'a'", "constant of type str"),
    ("-True", "constant of type bool"),
    ("1 + 2", "complex number must be written"),
    ("1 * 2", "operator '*'"),
    ("2 ** 100000", "operator '**'"),
    ("'a' * 10", "operator '*'"),
    ("1j + 1", "constant of type complex"),
    ("1 + -2j", "complex number must be written"),
    ("True + 1j", "constant of type bool"),
    ("(1+2j) + 3j", "complex number must be written"),
    ("...", "constant of type ellipsis"),
    ("Ellipsis", "name 'Ellipsis'"),
    ("nanx", "name 'nanx'"),
    ("{[1]}", "unhashable set element"),
    ("{[1]: 2}", "unhashable dict key"),
    ("{{}: 2}", "unhashable dict key"),
    ("frozenset([[1]])", "unhashable frozenset element"),
    ("{frozenset({1}): {1: [2]}, (1, [2]): 3}", "unhashable dict key"),
    ("", "invalid syntax"),
    ("[1,", "invalid syntax"),
    ("import os", "invalid syntax"),
    ("1; 2", "invalid syntax"),
]


@pytest.mark.parametrize(("text", "message"), REJECTED)
def test_rejected(text: str, message: str) -> None:
    with pytest.raises(LiteralError) as caught:
        parse_literal(text)
    assert message in str(caught.value)


def test_bare_tuple_display_is_a_tuple() -> None:
    assert parse_literal("1, 2") == (1, 2)


@pytest.mark.parametrize(("text", "where"), [
    ("[1, x]", "line 1, column 5"),
    ("[1,\n  open]", "line 2, column 3"),
    ("{1: 2, 3: a.b}", "line 1, column 11"),
    ("(1,\n2,\n", "line"),
])
def test_error_positions(text: str, where: str) -> None:
    with pytest.raises(LiteralError) as caught:
        parse_literal(text)
    assert where in str(caught.value)


@pytest.mark.parametrize("text", [
    "\x00", "1\x00", "'a\x00'", "[1,\n\x00]",
])
def test_nul_bytes(text: str) -> None:
    with pytest.raises(LiteralError, match="NUL"):
        parse_literal(text)


@pytest.mark.parametrize("bad", [None, 1, b"1", ["1"]])
def test_non_text(bad: Any) -> None:
    with pytest.raises(LiteralError, match="expected text"):
        parse_literal(bad)


@pytest.mark.parametrize("text", [
    "[" * 500 + "]" * 500,
    "(" * 300 + "1" + ")" * 300,
    "-" * 200_000 + "1",
    "1+" * 100_000 + "1",
    "1" * 5000,
    "'\ud800'",
])
def test_hostile_shapes_are_literal_errors(text: str) -> None:
    with pytest.raises(LiteralError):
        parse_literal(text)


def test_depth_the_runner_accepts_parses() -> None:
    depth = 101  # the runner accepts results nested 100 levels below the top
    value: Any = 1
    for _ in range(depth):
        value = [value]
    assert parse_literal(repr(value)) == value
    assert parse_literal(repr({1: (value,)})) == {1: (value,)}


# --- call arguments ----------------------------------------------------------------------------

CALLS = [
    ("", (), {}),
    ("   ", (), {}),
    ("# only a comment", (), {}),
    ("1", (1,), {}),
    ("1,", (1,), {}),
    ("1\n", (1,), {}),
    ("1  # trailing comment", (1,), {}),
    ("[1, 2], 'a', k=3", ([1, 2], "a"), {"k": 3}),
    ("k=3, j=[set()]", (), {"k": 3, "j": [set()]}),
    ("(1, 2)", ((1, 2),), {}),
    ("-1-2j, float('inf')", (-1 - 2j, INF), {}),
    ("frozenset({1, 2}), x={1: None}", (frozenset({1, 2}),), {"x": {1: None}}),
    ("\n  1,\n  2,\n", (1, 2), {}),
]


@pytest.mark.parametrize(("text", "args", "kwargs"), CALLS)
def test_call_arguments(text: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    parsed_args, parsed_kwargs = parse_call_arguments(text)
    assert same(parsed_args, args)
    assert parsed_kwargs == kwargs
    assert type(parsed_kwargs) is dict


@pytest.mark.parametrize(("text", "args", "kwargs"), CALLS)
def test_call_arguments_agree_with_the_runner(
        text: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    namespace = dict(RUNNER_NAMESPACE, _azr_call=lambda *a, **k: (a, k))
    expected = eval("_azr_call(" + text + "\n)", namespace)
    assert same(parse_call_arguments(text), expected)


def test_call_arguments_with_another_entry_name() -> None:
    assert parse_call_arguments("1, b=2", entry="solve") == ((1,), {"b": 2})


CALL_REJECTED = [
    ("1) or (2", "plain argument list"),
    ("1)\nimport os\n(", "invalid syntax"),
    ("1)(2", "plain argument list"),
    ("1), (2", "plain argument list"),
    ("1)[0", "invalid syntax"),
    ("1) + f(2", "plain argument list"),
    ("1) if (1) else (2", "plain argument list"),
    ("1).__class__.__bases__[0].__subclasses__(", "plain argument list"),
    ("*[1]", "*-unpacking"),
    ("**{'a': 1}", "**-unpacking"),
    ("a=1, a=2", "repeated"),
    ("a=1, 2", "invalid syntax"),
    ("x", "name 'x'"),
    ("k=x", "name 'x'"),
    ("__import__('os')", "call to '__import__'"),
    ("x for x in y", "generator expression"),
    ("1, (2", "invalid syntax"),
    ("\x00", "NUL"),
    (")", "invalid syntax"),
]


@pytest.mark.parametrize(("text", "message"), CALL_REJECTED)
def test_call_arguments_rejected(text: str, message: str) -> None:
    with pytest.raises(LiteralError) as caught:
        parse_call_arguments(text)
    assert message in str(caught.value)


def test_call_argument_positions_are_in_the_callers_text() -> None:
    with pytest.raises(LiteralError, match="line 1, column 4"):
        parse_call_arguments("1, x")
    with pytest.raises(LiteralError, match="line 1, column 4"):
        parse_call_arguments("1, x", entry="longer_name")
    with pytest.raises(LiteralError, match="line 2, column 1"):
        parse_call_arguments("1,\nx")


@pytest.mark.parametrize("entry", ["", "1f", "f(1)", "f.g", "class", "None", "é", 3])
def test_invalid_entry_names(entry: Any) -> None:
    with pytest.raises(LiteralError, match="entry"):
        parse_call_arguments("1", entry=entry)


def test_never_evaluates() -> None:
    tree = ast.parse(Path(literals.__file__).read_text())
    called = {node.func.id for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert not called & {"eval", "exec", "compile", "__import__"}
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert not names & {"eval", "exec", "compile", "literal_eval"}


# --- fuzzing -----------------------------------------------------------------------------------

TOKENS = ["(", ")", "[", "]", "{", "}", ",", ":", "1", "-", "+", "j", "2j", "nan", "inf", "infj",
          "'a'", "b'b'", "set", "frozenset", "float", "'nan'", " ", "\n", "*", "**", "=", "x",
          ".", "0.5", "e", "#", "\\", "lambda", "for", "if", "else", "\x00", "\t", ";", "..."]


def check_total(text: str) -> None:
    """A value or a LiteralError; any other exception fails the test."""
    for parse in (parse_literal, parse_call_arguments):
        with contextlib.suppress(LiteralError):
            parse(text)


def random_text(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return "".join(rng.choice(TOKENS) for _ in range(rng.randrange(12)))
    return "".join(chr(rng.randrange(0x10FFFF if rng.random() < 0.2 else 128))
                   for _ in range(rng.randrange(12)))


def test_random_text_gives_a_value_or_a_literal_error() -> None:
    rng = random.Random(20240601)
    for _ in range(5000):
        check_total(random_text(rng))


def random_value(rng: random.Random, depth: int = 0, hashable: bool = False) -> Any:
    scalars = [
        lambda: None, lambda: rng.random() < 0.5, lambda: rng.randrange(-10**30, 10**30),
        lambda: rng.choice([NAN, INF, -INF, -0.0, 0.0, 1e-300, rng.uniform(-1e9, 1e9)]),
        lambda: complex(rng.choice([NAN, INF, -0.0, 1.5]), rng.choice([NAN, -INF, -0.0, 2.0])),
        lambda: "".join(chr(rng.randrange(0x10FFFF)) for _ in range(rng.randrange(5))),
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(5))),
    ]
    if depth > 3 or rng.random() < 0.4:
        return rng.choice(scalars)()
    size = rng.randrange(4)
    if hashable:
        kind = rng.choice([tuple, frozenset])
        return kind(random_value(rng, depth + 1, True) for _ in range(size))
    kind = rng.choice([list, tuple, set, frozenset, dict])
    if kind is dict:
        return {random_value(rng, depth + 1, True): random_value(rng, depth + 1)
                for _ in range(size)}
    element_hashable = kind in (set, frozenset)
    return kind(random_value(rng, depth + 1, element_hashable) for _ in range(size))


def test_repr_round_trips_random_values() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        value = random_value(rng)
        parsed = parse_literal(repr(value))
        assert type(parsed) is type(value)
        assert values_equal(parsed, value), repr(value)


# No wall clock decides these tests: no per-example deadline, and no health check that fails
# when the machine is too busy to generate examples quickly.
UNTIMED = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.complex_numbers(allow_nan=True, allow_infinity=True),
    st.text(), st.binary(),
)
hashables = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4).map(tuple) | st.frozensets(inner),
    max_leaves=10)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.lists(inner, max_size=4).map(tuple),
        st.sets(hashables, max_size=4), st.frozensets(hashables, max_size=4),
        st.dictionaries(hashables, inner, max_size=4)),
    max_leaves=25)
token_text = st.lists(st.sampled_from(TOKENS), max_size=20).map("".join)

@settings(max_examples=400, **UNTIMED)
@given(values)
def test_property_repr_round_trips(value: Any) -> None:
    parsed = parse_literal(repr(value))
    assert type(parsed) is type(value)
    assert values_equal(parsed, value)

@settings(max_examples=200, **UNTIMED)
@given(st.lists(values, max_size=4), st.dictionaries(
    st.from_regex(r"[a-z_][a-z0-9_]{0,5}", fullmatch=True).filter(
        lambda name: not keyword.iskeyword(name)), values, max_size=3))
def test_property_call_arguments_round_trip(args: list[Any], kwargs: dict[str, Any]) -> None:
    text = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
    parsed_args, parsed_kwargs = parse_call_arguments(text)
    assert values_equal(parsed_args, tuple(args))
    assert values_equal(parsed_kwargs, kwargs)

@settings(max_examples=1000, **UNTIMED)
@given(st.text() | token_text)
def test_property_any_text_is_a_value_or_a_literal_error(text: str) -> None:
    check_total(text)
