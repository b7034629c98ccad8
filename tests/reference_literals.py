"""The previous, ast-based literal parser, kept only as an oracle for differential tests.

It accepted exactly the literal forms of docs/design.md §2 by walking `ast.parse` output; it is
correct but slow (about 100 ms per 100 KB of `0,0,...`) and builds real sets, which hash-colliding
elements make quadratic. `tests/test_literals.py` checks that the bounded parser accepts nothing
this one refuses and that both agree on every value.
"""
from __future__ import annotations

import ast
import keyword
import re
from typing import Any, NoReturn

from azr_verify.service.models import ENTRY_PATTERN


class LiteralError(ValueError):
    """The text is not an accepted literal; the message says what is wrong and where."""


# One object per name, like the runner's namespace: `{nan: 1, nan: 2}` then has a single key in
# both processes, because dict and set lookups match the very same NaN object by identity.
_INF = float("inf")
_NAN = float("nan")
_SPECIAL_NAMES: dict[str, float | complex] = {
    "inf": _INF,
    "nan": _NAN,
    "infj": complex(0.0, _INF),
    "nanj": complex(0.0, _NAN),
}
_REAL_NAMES = frozenset({"inf", "nan"})
_IMAGINARY_NAMES = frozenset({"infj", "nanj"})
_ALL_NAMES = _REAL_NAMES | _IMAGINARY_NAMES
_COMPLEX_FORM = "a complex number must be written as <real>+<imaginary>j"
_CONSTANT_TYPES = (int, float, complex, str, bytes, bool, type(None))
_NUMBER_TYPES = (int, float, complex)

_DESCRIPTIONS: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscript",
    ast.Starred: "starred expression",
    ast.NamedExpr: "assignment expression (:=)",
    ast.Lambda: "lambda",
    ast.IfExp: "conditional expression",
    ast.ListComp: "list comprehension",
    ast.SetComp: "set comprehension",
    ast.DictComp: "dict comprehension",
    ast.GeneratorExp: "generator expression",
    ast.JoinedStr: "f-string",
    ast.FormattedValue: "f-string",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Compare: "comparison",
    ast.BoolOp: "boolean operator",
    ast.Slice: "slice",
}

_OPERATORS: dict[type[ast.AST], str] = {
    ast.UAdd: "+", ast.USub: "-", ast.Not: "not", ast.Invert: "~",
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.MatMult: "@", ast.Div: "/",
    ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**", ast.LShift: "<<", ast.RShift: ">>",
    ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&",
}


def parse_literal(text: str) -> Any:
    """Parses one literal value, e.g. `"[1, (2.5, 'a'), {3: None}]"` or `"frozenset({1})"`."""
    tree = _parse(_checked_text(text), first_line_shift=0)
    return _build(_LiteralBuilder(), tree.body)


def parse_call_arguments(text: str, entry: str = "f") -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Parses the text between the parentheses of `entry(...)` into (args, kwargs).

    The source parsed is exactly `entry(` + text + newline + `)`, the construction the sandbox
    runner uses too; the newline lets text end in a comment or a newline.
    """
    _check_entry(entry)
    builder = _LiteralBuilder(first_line_shift=len(entry) + 1)
    tree = _parse(f"{entry}(" + _checked_text(text) + "\n)", builder.first_line_shift)
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
            and call.func.id == entry):
        builder.fail(call, "the input must be a plain argument list")
    args = tuple(_build(builder, _positional(builder, node)) for node in call.args)
    return args, _keyword_arguments(builder, call.keywords)


def _positional(builder: _LiteralBuilder, node: ast.expr) -> ast.expr:
    if isinstance(node, ast.Starred):
        builder.fail(node, "*-unpacking of arguments is not allowed")
    return node


def _keyword_arguments(builder: _LiteralBuilder, keywords: list[ast.keyword]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for item in keywords:
        if item.arg is None:
            builder.fail(item, "**-unpacking of arguments is not allowed")
        if item.arg in kwargs:
            builder.fail(item, f"keyword argument {item.arg!r} is repeated")
        kwargs[item.arg] = _build(builder, item.value)
    return kwargs


def _check_entry(entry: object) -> None:
    if not (isinstance(entry, str) and re.fullmatch(ENTRY_PATTERN, entry)
            and not keyword.iskeyword(entry)):
        raise LiteralError(f"invalid entry function name {entry!r}")


def _checked_text(text: object) -> str:
    if not isinstance(text, str):
        raise LiteralError(f"expected text, got {type(text).__name__}")
    nul = text.find("\0")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        column = nul - (text.rfind("\n", 0, nul) + 1) + 1
        raise LiteralError(f"NUL byte at line {line}, column {column}")
    return text


def _parse(source: str, first_line_shift: int) -> ast.Expression:
    try:
        return ast.parse(source, mode="eval")
    except SyntaxError as exc:
        where = _position(exc.lineno, (exc.offset or 1) - 1, first_line_shift)
        raise LiteralError(f"invalid syntax{where}: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise LiteralError("the text is too deeply nested") from None
    except (ValueError, OverflowError) as exc:  # e.g. lone surrogates that cannot be encoded
        raise LiteralError(f"the text cannot be parsed: {exc}") from None


def _build(builder: _LiteralBuilder, node: ast.expr) -> Any:
    try:
        return builder.build(node)
    except (RecursionError, MemoryError):
        raise LiteralError("the text is too deeply nested") from None


def _position(line: int | None, column: int | None, first_line_shift: int) -> str:
    if line is None:
        return ""
    if line == 1 and column is not None:
        column = max(column - first_line_shift, 0)
    return f" at line {line}" + (f", column {column + 1}" if column is not None else "")


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return f"name {node.id!r}"
    if isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        return f"call to {name!r}" if name else "call"
    if isinstance(node, ast.BinOp | ast.UnaryOp):
        symbol = _OPERATORS.get(type(node.op), type(node.op).__name__)
        return f"operator {symbol!r}"
    if isinstance(node, ast.Constant):
        return f"constant of type {type(node.value).__name__}"
    return _DESCRIPTIONS.get(type(node), type(node).__name__)


class _LiteralBuilder:
    """Turns an expression tree into a value, rejecting everything but literal forms."""

    def __init__(self, first_line_shift: int = 0) -> None:
        # The call wrapper `entry(` shifts columns on the first line; positions are reported in
        # the caller's text.
        self.first_line_shift = first_line_shift

    def fail(self, node: ast.AST, message: str) -> NoReturn:
        where = _position(getattr(node, "lineno", None), getattr(node, "col_offset", None),
                          self.first_line_shift)
        raise LiteralError(f"{message}{where}")

    def reject(self, node: ast.AST) -> NoReturn:
        self.fail(node, f"{_describe(node)} is not allowed (only literals are)")

    def build(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            return self._sequence(node)
        if isinstance(node, ast.Dict):
            return self._dict(node)
        if isinstance(node, ast.Name):
            return self._special_name(node, _ALL_NAMES)
        if isinstance(node, ast.UnaryOp):
            return self._signed(node)
        if isinstance(node, ast.BinOp):
            return self._complex(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        self.reject(node)

    def _constant(self, node: ast.Constant) -> Any:
        if type(node.value) not in _CONSTANT_TYPES:
            self.reject(node)
        return node.value

    def _sequence(self, node: ast.Tuple | ast.List | ast.Set) -> Any:
        items = [self.build(element) for element in node.elts]
        if isinstance(node, ast.Tuple):
            return tuple(items)
        if isinstance(node, ast.List):
            return items
        return self._hashable(node, set, items, "set element")

    def _dict(self, node: ast.Dict) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in zip(node.keys, node.values, strict=True):
            if key_node is None:
                self.fail(value_node, "**-unpacking in a dict is not allowed")
            key = self.build(key_node)
            value = self.build(value_node)
            try:
                result[key] = value
            except TypeError:
                self.fail(key_node, f"unhashable dict key of type {type(key).__name__}")
        return result

    def _hashable(self, node: ast.AST, kind: type[Any], items: list[Any], what: str) -> Any:
        try:
            return kind(items)
        except TypeError as exc:
            self.fail(node, f"unhashable {what} ({exc})")

    def _special_name(self, node: ast.Name, allowed: frozenset[str]) -> Any:
        if node.id not in allowed:
            self.reject(node)
        return _SPECIAL_NAMES[node.id]

    def _number(self, node: ast.expr, types: tuple[type, ...], names: frozenset[str]) -> Any:
        """A numeric constant or one of the names repr() uses for infinities and NaNs."""
        if isinstance(node, ast.Name):
            return self._special_name(node, names)
        # `type(...) in` rather than isinstance: True and False are not numbers here.
        if not (isinstance(node, ast.Constant) and type(node.value) in types):
            self.reject(node)
        return node.value

    def _signed(self, node: ast.UnaryOp) -> float | complex:
        if not isinstance(node.op, ast.USub | ast.UAdd):
            self.reject(node)
        operand = node.operand
        if isinstance(operand, ast.BinOp):
            value: float | complex = self._complex(operand)
        else:
            value = self._number(operand, _NUMBER_TYPES, _ALL_NAMES)
        return -value if isinstance(node.op, ast.USub) else +value

    def _complex(self, node: ast.BinOp) -> complex:
        """`a+bj` / `a-bj`: a real part (optionally signed) and an unsigned imaginary part."""
        if not isinstance(node.op, ast.Add | ast.Sub):
            self.reject(node)
        real = self._real_part(node.left)
        imaginary = self._imaginary_part(node.right)
        return real + imaginary if isinstance(node.op, ast.Add) else real - imaginary

    def _real_part(self, node: ast.expr) -> float:
        negate = False
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            negate = isinstance(node.op, ast.USub)
            node = node.operand
        if not isinstance(node, ast.Constant | ast.Name):
            self.fail(node, _COMPLEX_FORM)
        value: float = self._number(node, (int, float), _REAL_NAMES)
        return -value if negate else value

    def _imaginary_part(self, node: ast.expr) -> complex:
        if isinstance(node, ast.Name) and node.id in _IMAGINARY_NAMES:
            return _SPECIAL_NAMES[node.id]
        if isinstance(node, ast.Constant) and type(node.value) is complex:
            return node.value
        self.fail(node, _COMPLEX_FORM)

    def _call(self, node: ast.Call) -> Any:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in ("set", "frozenset", "float") or node.keywords:
            self.reject(node)
        if name == "float":
            return self._float_call(node)
        if not node.args:
            return set() if name == "set" else frozenset()
        if name == "set" or len(node.args) != 1:
            self.fail(node, f"{name}() takes no arguments here; write a literal instead")
        return self._frozenset_call(node, node.args[0])

    def _float_call(self, node: ast.Call) -> float:
        if len(node.args) != 1:
            self.fail(node, "float() takes exactly one string argument")
        argument = node.args[0]
        if not (isinstance(argument, ast.Constant) and type(argument.value) is str):
            self.fail(argument, "float() takes a string constant such as 'nan' or 'inf'")
        try:
            return float(argument.value)
        except ValueError:
            self.fail(argument, f"{argument.value!r} is not a valid float")

    def _frozenset_call(self, node: ast.Call, argument: ast.expr) -> frozenset[Any]:
        if not isinstance(argument, ast.Set | ast.List | ast.Tuple):
            self.fail(argument, "frozenset() takes a set, list or tuple literal")
        items = [self.build(element) for element in argument.elts]
        result: frozenset[Any] = self._hashable(node, frozenset, items, "frozenset element")
        return result
