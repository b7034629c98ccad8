"""A bounded parser for literal values and literal call arguments; nothing is ever evaluated.

The text is scanned once by one regular expression and parsed with an explicit stack (no
recursion, so no depth can raise RecursionError). The forms accepted are the ones `repr()`
produces for literal values plus Python's own literal displays (docs/design.md §2): every value
`repr` gives parses, and every input accepted here means the same value to the sandbox runner,
which evaluates the same text in its restricted namespace.

The result is a `Literal`: the value's canonical encoding (`canonical.py`), never a Python set
or dict, so no text can make the trusted process hash colliding values. Work and memory are
bounded per character of text (docs/design.md §9.6):

- `max_chars` characters, `max_depth` nested brackets (Python's own parser stops at 200),
  `max_nodes` values in all, `max_int_digits` digits in a decimal integer (CPython's
  `int_max_str_digits` default: converting decimal text to an int is quadratic);
- every token costs O(its length) (the token patterns never backtrack over a run of digits or
  characters); a set or dict costs one sort of its element encodings.
"""

from __future__ import annotations

import codecs
import keyword
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, NoReturn

from azr_verify.service.models import ENTRY_PATTERN
from azr_verify.service.verify.canonical import (
    DICT_CLOSE,
    DICT_OPEN,
    LIST_CLOSE,
    LIST_OPEN,
    NONE_CODE,
    SET_CLOSE,
    SET_OPEN,
    TUPLE_CLOSE,
    TUPLE_OPEN,
    Literal,
    encode_bytes,
    encode_dict,
    encode_int,
    encode_number,
    encode_set,
    encode_str,
)

__all__ = ["Literal", "LiteralError", "LiteralLimits", "parse_call_arguments", "parse_literal"]


class LiteralError(ValueError):
    """The text is not an accepted literal; the message says what is wrong and where."""


@dataclass(frozen=True, slots=True)
class LiteralLimits:
    """Caps on one literal text; each bounds the trusted process's work on it."""

    max_chars: int = 1_000_000
    max_depth: int = 200
    max_nodes: int = 100_000
    max_int_digits: int = 4300


DEFAULT_LIMITS = LiteralLimits()

# --- tokens ----------------------------------------------------------------------------------
# Possessive repetitions (`*+`, `++`) never backtrack, so a long run of digits or characters is
# scanned a bounded number of times whatever follows it.
_DIGITS = r"[0-9]++(?:_[0-9]++)*+"
_EXPONENT = rf"[eE][+-]?{_DIGITS}"
_POINT_FLOAT = rf"(?:{_DIGITS}\.(?:{_DIGITS})?|\.{_DIGITS})"
_FLOAT = rf"(?:{_POINT_FLOAT}(?:{_EXPONENT})?|{_DIGITS}{_EXPONENT})"
_DECIMAL = r"(?:[1-9][0-9]*+(?:_[0-9]++)*+|0++(?:_0++)*+)"
_SINGLE = r"'(?!'')[^\n'\\]*+(?:\\(?:.|\n)[^\n'\\]*+)*+'"
_DOUBLE = r'"(?!"")[^\n"\\]*+(?:\\(?:.|\n)[^\n"\\]*+)*+"'
_TRIPLE_SINGLE = r"'''[^'\\]*+(?:(?:\\(?:.|\n)|'(?!''))[^'\\]*+)*+'''"
_TRIPLE_DOUBLE = r'"""[^"\\]*+(?:(?:\\(?:.|\n)|"(?!""))[^"\\]*+)*+"""'

# `item` is a fast path: a plain number or string followed by a comma, the bulk of any large
# list, set or tuple. Everything else is one token per match.
_REAL = rf"(?:{_FLOAT}|{_DECIMAL}|inf|nan)"
# A plain value: a number or a string without prefix or backslash (what repr mostly writes).
_PLAIN = rf"""(?:-?(?:{_DECIMAL}|{_FLOAT})(?![\w.])|'[^'\\\n]*+'|"[^"\\\n]*+")"""
_SPACE = r"[ \t\f]*+"
_PAIR = rf"{_PLAIN}{_SPACE}:{_SPACE}{_PLAIN}{_SPACE}"
_SET = rf"\{{{_SPACE}{_PLAIN}{_SPACE}(?:,{_SPACE}{_PLAIN}{_SPACE})*+,?{_SPACE}\}}"
# A leaf: a display of plain values only, read in one match (repr's `(1, 2)`, `['a']`, ...).
_LEAF = rf"""(?:\((?:{_SPACE}{_PLAIN}{_SPACE},)++{_SPACE}(?:{_PLAIN}{_SPACE})?\)
              |\({_SPACE}\)
              |\[{_SPACE}(?:{_PLAIN}{_SPACE}(?:,{_SPACE}{_PLAIN}{_SPACE})*+,?{_SPACE})?\]
              |frozenset\({_SET}\)
              |{_SET}
              |\{{{_SPACE}(?:{_PAIR}(?:,{_SPACE}{_PAIR})*+,?{_SPACE})?\}})"""
_PLAIN_VALUE = re.compile(_PLAIN)
_TOKEN = re.compile(rf"""
    (?P<item>(?P<item_value>-?(?:{_DECIMAL}|{_FLOAT})(?![\w.])
                           |'[^'\\\n]*+'|"[^"\\\n]*+"
                           |\((?P<real>-?{_REAL})(?P<plus>[+-])(?P<imag>{_REAL})j\)
                           |(?P<leaf>{_LEAF}))[ \t\f]*+,)
  | (?P<last>(?P<last_value>{_PLAIN}|{_LEAF})[ \t\f]*+(?P<closer>[\])}}]))
  | (?P<key>(?P<key_value>-?(?:{_DECIMAL}|{_FLOAT})(?![\w.])
                         |'[^'\\\n]*+'|"[^"\\\n]*+")[ \t\f]*+:(?!=))
  | (?P<skip>[ \t\f]++|\#[^\n]*+|\\\n)
  | (?P<newline>\n)
  | (?P<string>[A-Za-z]{{0,2}}(?:{_TRIPLE_SINGLE}|{_TRIPLE_DOUBLE}|{_SINGLE}|{_DOUBLE}))
  | (?P<open_string>[A-Za-z]{{0,2}}['"])
  | (?P<imaginary>(?:{_FLOAT}|{_DIGITS})[jJ](?!\w))
  | (?P<float>{_FLOAT}(?!\w))
  | (?P<based>(?:0[xX]_?[0-9a-fA-F]++(?:_[0-9a-fA-F]++)*+|0[oO]_?[0-7]++(?:_[0-7]++)*+
                 |0[bB]_?[01]++(?:_[01]++)*+)(?!\w))
  | (?P<decimal>{_DECIMAL}(?!\w))
  | (?P<bad_number>\.?[0-9][\w.]*+)
  | (?P<name>[^\W\d]\w*+)
  | (?P<op>\*\*|//|<<|>>|<=|>=|==|!=|->|:=|\.\.\.|[-+*/%@&|^~<>()\[\]{{}},:;.=!])
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)
# The same tokens without the fused ones, to re-read an item or key the fast path cannot take.
_PLAIN_TOKEN = re.compile(_TOKEN.pattern[_TOKEN.pattern.index("(?P<skip>"):],
                          re.VERBOSE | re.DOTALL)
_NUMBER_KINDS = frozenset({"imaginary", "float", "based", "decimal"})
_FIRST_LINE_INDENT = re.compile(r"(?:[ \t\f]*(?:\#[^\n]*)?\n)*((?:[ \t\f]|\\\n)*)")
_STRING_PREFIXES = frozenset({"", "r", "u", "b", "br", "rb"})

# --- values ----------------------------------------------------------------------------------
# A value on the stack is a (kind, payload) pair. Numbers keep their Python value until they
# are placed somewhere, because a sign or a complex-number sum may still apply to them; the
# kinds record how a number was written, which decides what may be combined with it. Strings
# keep their text (float('...') reads it); containers are already encoded.
INT, FLOAT, COMPLEX, REAL_NAME, IMAG_NAME, SIGNED_REAL, SIGNED_OTHER, SUM, BOOL = range(9)
NONE, STR, BYTES = range(9, 12)
# Containers: the payload is the encoding, except for UNHASHABLE_TUPLE ((encoding, the type
# that makes it unhashable)) and KEPT (a _Kept, for the argument of frozenset(...)).
LIST, TUPLE, UNHASHABLE_TUPLE, SET, FROZENSET, DICT, KEPT = range(12, 19)
_REAL_KINDS = frozenset({INT, FLOAT, REAL_NAME})
_SIGNABLE = frozenset({INT, FLOAT, COMPLEX, REAL_NAME, IMAG_NAME, SUM})
_REAL_PARTS = frozenset({INT, FLOAT, REAL_NAME, SIGNED_REAL})
_IMAGINARY_PARTS = frozenset({COMPLEX, IMAG_NAME})
_NUMERIC = frozenset({INT, FLOAT, COMPLEX, REAL_NAME, IMAG_NAME, SIGNED_REAL, SIGNED_OTHER, SUM,
                      BOOL})
_UNHASHABLE_NAMES = {LIST: "list", SET: "set", DICT: "dict"}
_DISPLAY_NAMES = {LIST: "list", TUPLE: "tuple", UNHASHABLE_TUPLE: "tuple", SET: "set",
                  FROZENSET: "frozenset", DICT: "dict"}
_COMPLEX_FORM = "a complex number must be written as <real>+<imaginary>j"

# One object per name, like the runner's namespace (where `{nan, nan}` has one element).
_INF = float("inf")
_NAN = float("nan")
_NAMES: dict[str, tuple[int, Any]] = {
    "True": (BOOL, True), "False": (BOOL, False), "None": (NONE, None),
    "inf": (REAL_NAME, _INF), "nan": (REAL_NAME, _NAN),
    "infj": (IMAG_NAME, complex(0.0, _INF)), "nanj": (IMAG_NAME, complex(0.0, _NAN)),
}
_CALLABLE = frozenset({"set", "frozenset", "float"})
_KEYWORD_MEANINGS = {
    "lambda": "lambda", "not": "operator 'not'", "await": "await", "yield": "yield",
    "for": "comprehension", "async": "comprehension", "if": "conditional expression",
    "else": "conditional expression", "and": "boolean operator", "or": "boolean operator",
    "in": "comparison", "is": "comparison",
}
_AFTER_VALUE_OPERATORS = {
    "(": "call", "[": "subscript", ".": "attribute access", ":=": "assignment expression (:=)",
    "<": "comparison", ">": "comparison", "<=": "comparison", ">=": "comparison",
    "==": "comparison", "!=": "comparison",
}
_EMPTY_SET = SET_OPEN + SET_CLOSE
_MAYBE_UNHASHABLE = frozenset({LIST, UNHASHABLE_TUPLE, SET, DICT, KEPT})


class _Kept:
    """A list, tuple or set display that is the argument of frozenset(...)."""

    __slots__ = ("element_error", "elements", "kind")

    def __init__(self, kind: int, elements: list[bytes], element_error: str | None) -> None:
        self.kind = kind
        self.elements = elements
        self.element_error = element_error  # the first element that cannot be a set element


# Frame kinds.
_TOP, _ARGS, _LIST, _PAREN, _BRACE, _CALL = range(6)
_CLOSERS = {_LIST: "]", _PAREN: ")", _BRACE: "}", _CALL: ")"}
_OPENERS = {_LIST: "[", _PAREN: "(", _BRACE: "{", _CALL: "("}
_BRACKET_FRAMES = {"[": _LIST, "(": _PAREN, "{": _BRACE}


class _Frame:
    """An open bracket (or the whole text): its elements so far and its operand state.

    Class attributes are the defaults; an instance stores only what differs from them, which
    keeps opening a bracket cheap.
    """

    name = ""  # the called name of a _CALL frame
    values: list[bytes]  # dict values, once the braces turn out to be a dict
    kwargs: dict[str, Literal]  # keyword arguments of the _ARGS frame
    element_error: str | None = None  # the first element that cannot be a set element
    comma = False  # a comma was seen: a parenthesis is a tuple, not a group
    dict: bool | None = None  # braces: undecided until the first separator
    keep = False  # keep element encodings: this display is frozenset's argument
    raw: list[tuple[int, Any, int]] | None = None  # values not encoded yet: the first
    # element of a parenthesis or of the whole text, and call arguments
    sign: tuple[str, int] | None = None  # a unary sign waiting for its operand
    left: tuple[object, str] | None = None  # `real +` waiting for `imag j`
    current: tuple[int, Any, int] | None = None  # a complete operand
    strings: list[str | bytes] | None = None  # adjacent string tokens being joined
    string_bytes = False
    string_pos = 0
    keyword: str | None = None  # the keyword this argument is for
    positional_done = False  # a keyword argument was seen
    key: bytes | None = None  # a dict key waiting for its value

    def __init__(self, kind: int, pos: int) -> None:
        self.kind = kind
        self.pos = pos
        self.items: list[bytes] = []  # element (or dict key) encodings


class _StringError(Exception):
    """A string token whose body CPython would refuse."""


class _Parser:
    def __init__(self, text: str, limits: LiteralLimits, call: bool) -> None:
        self.text = text
        self.limits = limits
        self.call = call
        self.nodes = 0
        top = _Frame(_ARGS if call else _TOP, 0)
        if call:
            top.kwargs = {}
        self.stack = [top]
        self.pending_name: tuple[str, int] | None = None
        self.started = False  # a token other than blank lines has been seen
        self.ended = False  # literal mode: a newline at the top level ended the expression
        self.continuation_end = -1  # where the last line continuation (backslash) ended

    # -- errors -------------------------------------------------------------------------------

    def fail(self, pos: int, message: str) -> NoReturn:
        raise LiteralError(f"{message} at {_where(self.text, pos)}")

    def reject(self, pos: int, what: str) -> NoReturn:
        self.fail(pos, f"{what} is not allowed (only literals are)")

    # -- the token loop -----------------------------------------------------------------------

    def run(self) -> None:
        """One pass over the tokens. The common tokens (items, commas and brackets) are
        handled inline; everything else goes through `token`."""
        if not self.call:
            self._check_indentation()
        text = self.text
        stack = self.stack
        max_nodes = self.limits.max_nodes
        max_digits = self.limits.max_int_digits
        max_depth = self.limits.max_depth
        fast: _Frame | None = None  # the frame items may be appended to directly, if any
        for match in _TOKEN.finditer(text):
            kind = match.lastgroup
            if kind == "item":
                if fast is None:
                    fast = self._fast_frame()
                    if fast is None:
                        if not self._dict_value(match):
                            self.replay(match)
                        continue
                value = match.group("item_value")
                if match.group("leaf") is not None:
                    encoding, unhashable = self._leaf(match.group("leaf"), match.start())
                    if unhashable is not None:
                        if fast.kind == _BRACE:  # not a set element: say so the slow way
                            self.replay(match)
                            continue
                        if fast.element_error is None:
                            fast.element_error = unhashable
                    fast.items.append(encoding)
                    continue
                if value[0] == "(":
                    fast.items.append(self._complex(match))
                elif value[0] in "'\"":
                    fast.items.append(encode_str(value[1:-1]))
                elif "." in value or "e" in value or "E" in value:
                    fast.items.append(encode_number(float(value)))
                elif len(value) > max_digits:
                    fast.items.append(self._scalar(value, match.start()))
                else:
                    fast.items.append(encode_int(int(value)))
                self.nodes += 1
                if self.nodes > max_nodes:
                    self.count_node(match.start())  # fails
                continue
            fast = None
            if kind == "last":
                self.last(match)
                continue
            if kind == "key":
                self.key(match)
                continue
            if kind == "op":
                op = match.group()
                frame = stack[-1]
                if self.pending_name is None and frame.strings is None and not self.ended:
                    current = frame.current
                    if op == ",":
                        if current is not None and frame.left is None and not frame.keep and (
                                frame.kind == _LIST or (frame.kind == _PAREN and frame.comma
                                                        and not frame.raw)):
                            value_kind = current[0]
                            if value_kind in _MAYBE_UNHASHABLE and frame.element_error is None:
                                frame.element_error = _unhashable(value_kind, current[1])
                            frame.items.append(_encode(value_kind, current[1]))
                            frame.current = None
                            continue
                    elif op in ("[", "(", "{"):
                        if current is None and len(stack) <= max_depth and not (
                                frame.kind == _CALL or frame.keep):
                            stack.append(_Frame(_BRACKET_FRAMES[op], match.start()))
                            self.started = True
                            continue
                    elif op in ("]", ")", "}"):
                        self.close(frame, op, match.start())
                        continue
            elif kind == "skip":
                if match.group() == "\\\n":
                    if match.end() == len(text) and not self.call:
                        self.fail(match.start(), "invalid syntax: the text ends after a line "
                                                 "continuation")
                    self.continuation_end = match.end()
                continue
            elif kind == "newline":
                if not self.call and len(stack) == 1 and self.started:
                    self.ended = True
                continue
            pos = match.start()
            if self.ended:
                self.fail(pos, "invalid syntax: only one expression is allowed")
            self.started = True
            self.token(kind or "other", match.group(), pos)
        self.finish()

    def _fast_frame(self) -> _Frame | None:
        """The current frame when the next item is simply its next element, else None."""
        frame = self.stack[-1]
        if self.pending_name is not None or self.ended or frame.current is not None \
                or frame.sign is not None or frame.left is not None \
                or frame.strings is not None:
            return None
        if frame.kind == _LIST:
            pass
        elif frame.kind == _BRACE and not frame.dict:  # a set (an item has a comma)
            frame.dict = False
        elif frame.kind in (_PAREN, _TOP):  # a tuple (an item has a comma)
            self.flush_raw(frame)
            frame.comma = True
        else:
            return None
        self.started = True
        return frame

    def _clean(self, frame: _Frame) -> bool:
        """Nothing is waiting in this frame: no name, operand, sign, sum or string."""
        return self.pending_name is None and not self.ended and frame.current is None \
            and frame.sign is None and frame.left is None and frame.strings is None

    def _dict_value(self, match: re.Match[str]) -> bool:
        """An item that completes a `key: value` entry; False where that is not the case."""
        frame = self.stack[-1]
        value = match.group("item_value")
        if frame.kind != _BRACE or not frame.dict or frame.key is None \
                or not self._clean(frame):
            return False
        if match.group("leaf") is not None:
            encoding = self._leaf(match.group("leaf"), match.start("leaf"))[0]
        elif value[0] == "(":
            encoding = self._complex(match)
        else:
            encoding = self._scalar(value, match.start())
            self.count_node(match.start())
        frame.items.append(frame.key)
        frame.values.append(encoding)
        frame.key = None
        return True

    def last(self, match: re.Match[str]) -> None:
        """A plain value or leaf and the bracket that closes the frame it ends."""
        frame = self.stack[-1]
        closer = match.group("closer")
        value = match.group("last_value")
        pos = match.start()
        if len(self.stack) == 1 or _CLOSERS[frame.kind] != closer or not self._clean(frame) \
                or not (frame.kind == _LIST or (frame.kind == _BRACE and frame.dict is False)
                        or (frame.kind == _PAREN and frame.comma and not frame.raw)):
            self.replay(match)
            return
        if value[0] in "([{f":
            encoding, unhashable = self._leaf(value, pos)
            if unhashable is not None:
                if frame.kind == _BRACE:
                    self.replay(match)
                    return
                if frame.element_error is None:
                    frame.element_error = unhashable
        else:
            encoding = self._scalar(value, pos)
            self.count_node(pos)
        frame.items.append(encoding)
        self.close(frame, closer, match.start("closer"))

    def _leaf(self, leaf: str, pos: int) -> tuple[bytes, str | None]:
        """A display of plain values: its encoding, and what makes it unhashable (if so)."""
        if len(self.stack) > self.limits.max_depth:  # the leaf's own bracket is a level
            self.fail(pos, f"the literal is nested more than {self.limits.max_depth} levels "
                           "deep")
        values = _PLAIN_VALUE.findall(leaf)
        self.nodes += 1 + len(values)
        if self.nodes > self.limits.max_nodes:
            self.count_node(pos)  # fails
        encodings = [self._scalar(value, pos) for value in values]
        opener = leaf[0]
        if opener == "(":
            return TUPLE_OPEN + b"".join(encodings) + TUPLE_CLOSE, None
        if opener == "[":
            return LIST_OPEN + b"".join(encodings) + LIST_CLOSE, "list"
        if opener == "f":
            return encode_set(encodings), None
        if ":" in leaf and (not values or _is_dict_leaf(leaf)):
            return encode_dict(encodings[0::2], encodings[1::2]), "dict"
        if not values:
            return DICT_OPEN + DICT_CLOSE, "dict"
        return encode_set(encodings), "set"

    def key(self, match: re.Match[str]) -> None:
        """A plain number or string and a colon: the key of a dict entry, usually."""
        frame = self.stack[-1]
        if frame.kind != _BRACE or frame.dict is False or frame.key is not None \
                or not self._clean(frame):
            self.replay(match)
            return
        if frame.dict is None:
            frame.dict = True
            frame.values = []
        self.started = True
        frame.key = self._scalar(match.group("key_value"), match.start())
        self.count_node(match.start())

    def _scalar(self, value: str, pos: int) -> bytes:
        """The encoding of a plain number or string of a fused token."""
        if value[0] in "'\"":
            return encode_str(value[1:-1])
        if "." in value or "e" in value or "E" in value:
            return encode_number(float(value))
        negative = value[0] == "-"
        number = self.number("decimal", value[1:] if negative else value, pos + negative)[1]
        return encode_int(-number if negative else number)

    def replay(self, match: re.Match[str]) -> None:
        """Reads a fused token as the separate tokens it is made of."""
        if self.ended:
            self.fail(match.start(), "invalid syntax: only one expression is allowed")
        self.started = True
        for token in _PLAIN_TOKEN.finditer(self.text, match.start(), match.end()):
            if token.lastgroup != "skip":
                self.token(token.lastgroup or "other", token.group(), token.start())

    def _complex(self, match: re.Match[str]) -> bytes:
        """The encoding of a `(real+imagj)` item, computed as the slow path would."""
        real_text = match.group("real")
        if real_text.lstrip("-") in ("inf", "nan") or not real_text.lstrip("-").isdigit():
            real: int | float = float(real_text)
        else:
            value = self.number("decimal", real_text.lstrip("-"), match.start("real"))[1]
            real = -value if real_text[0] == "-" else value
        imaginary = complex(0.0, float(match.group("imag")))
        try:
            number = real + imaginary if match.group("plus") == "+" else real - imaginary
        except OverflowError:
            self.fail(match.start("real"), "the real part is too large for a complex number")
        self.nodes += 1
        return encode_number(number)

    def _check_indentation(self) -> None:
        """Python's eval mode refuses an indented first line."""
        text = self.text
        first = _FIRST_LINE_INDENT.match(text)
        assert first is not None
        indent = first.group(1).replace("\\\n", "").rpartition("\f")[2]
        if first.end() < len(text) and indent and text[first.end()] not in "\n#":
            self.fail(first.start(1), "unexpected indent")

    def _check_last_line(self) -> None:
        """Python's eval mode refuses a last line of blanks, unless a line continuation (a
        backslash outside comments and strings, as the tokens found it) joins it to the line
        before."""
        text = self.text
        last_start = text.rfind("\n") + 1
        last = text[last_start:]
        if last_start and last and self.continuation_end != last_start \
                and not last.strip(" \t\f") and last.rpartition("\f")[2]:
            self.fail(last_start, "unexpected indent")

    def token(self, kind: str, text: str, pos: int) -> None:
        frame = self.stack[-1]
        if self.pending_name is not None:
            name, name_pos = self.pending_name
            self.pending_name = None
            if text == "(" and kind == "op":
                self.open_call(name, name_pos, pos)
                return
            if text == "=" and kind == "op" and frame.kind == _ARGS and frame.keyword is None \
                    and frame.sign is None:
                self.start_keyword(frame, name, name_pos)
                return
            self.name_value(frame, name, name_pos)
        if frame.strings is not None and kind != "string":
            self.seal_strings(frame)
        if kind == "op":
            self.operator(frame, text, pos)
        elif kind in _NUMBER_KINDS:
            if frame.current is not None:
                self.after_value(pos, text)
            number_kind, value = self.number(kind, text, pos)
            self.operand(frame, number_kind, value, pos)
        elif kind == "string":
            self.string(frame, text, pos)
        elif kind == "name":
            if frame.current is not None:
                self.after_value(pos, text)
            name = text if text.isascii() else unicodedata.normalize("NFKC", text)
            if name in _KEYWORD_MEANINGS:
                self.reject(pos, _KEYWORD_MEANINGS[name])
            self.pending_name = (name, pos)
        elif kind == "bad_number":
            self.fail(pos, f"invalid number literal {text[:20]!r}")
        elif kind == "open_string":
            self.fail(pos, "unterminated string literal")
        elif text == "\\":
            self.fail(pos, "unexpected character after line continuation character")
        else:
            self.fail(pos, f"invalid character {text!r}")

    def finish(self) -> None:
        end = len(self.text)
        if not self.call:
            self._check_last_line()
        if self.pending_name is not None:
            name, name_pos = self.pending_name
            self.pending_name = None
            self.name_value(self.stack[-1], name, name_pos)
        frame = self.stack[-1]
        if frame.strings is not None:
            self.seal_strings(frame)
        if len(self.stack) > 1:
            self.fail(frame.pos, f"'{_OPENERS[frame.kind]}' was never closed")
        if frame.sign is not None or frame.left is not None:
            self.fail(end, "invalid syntax: the expression is incomplete")
        if frame.kind == _TOP and frame.current is None and not frame.comma:
            self.fail(end, "invalid syntax: no value")
        self.close_element(frame, end)

    # -- values -------------------------------------------------------------------------------

    def after_value(self, pos: int, text: str) -> NoReturn:
        meaning = _AFTER_VALUE_OPERATORS.get(text) or _KEYWORD_MEANINGS.get(text)
        if meaning is not None:
            self.reject(pos, meaning)
        self.fail(pos, f"invalid syntax: unexpected {text[:20]!r}")

    def count_node(self, pos: int) -> None:
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            self.fail(pos, f"the literal has more than {self.limits.max_nodes} values")

    def operand(self, frame: _Frame, kind: int, payload: Any, pos: int) -> None:
        """A complete primary: applies a waiting sign and a waiting `real +`."""
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            self.count_node(pos)  # fails
        if frame.sign is not None:
            sign, sign_pos = frame.sign
            frame.sign = None
            if kind not in _SIGNABLE:
                self.fail(sign_pos, f"operator {sign!r} cannot apply to "
                                    f"{_describe(kind, payload)}")
            payload = +payload if sign == "+" else -payload
            kind = SIGNED_REAL if kind in _REAL_KINDS else SIGNED_OTHER
        if frame.left is not None:
            left_value, op = frame.left
            frame.left = None
            if kind not in _IMAGINARY_PARTS:
                self.fail(pos, _COMPLEX_FORM)
            try:
                payload = left_value + payload if op == "+" else left_value - payload
            except OverflowError:
                self.fail(pos, "the real part is too large for a complex number")
            kind = SUM
        frame.current = (kind, payload, pos)

    def number(self, kind: str, text: str, pos: int) -> tuple[int, Any]:
        if kind == "decimal":
            digits = len(text) - text.count("_")
            if digits > self.limits.max_int_digits:
                self.fail(pos, f"an integer literal has {digits} digits, over the limit of "
                               f"{self.limits.max_int_digits}")
            try:
                return INT, int(text)
            except ValueError as exc:  # this process's int_max_str_digits is set lower
                self.fail(pos, f"invalid integer literal: {exc}")
        if kind == "based":
            return INT, int(text, 0)  # linear: the base is a power of two
        if kind == "float":
            return FLOAT, float(text)
        return COMPLEX, complex(0.0, float(text[:-1]))

    def name_value(self, frame: _Frame, name: str, pos: int) -> None:
        found = _NAMES.get(name)
        if found is None:
            self.reject(pos, f"name {name!r}")
        self.operand(frame, found[0], found[1], pos)

    def string(self, frame: _Frame, text: str, pos: int) -> None:
        quote = min(index for index in (text.find("'"), text.find('"')) if index >= 0)
        prefix = text[:quote].lower()
        if "f" in prefix:
            self.reject(pos, "f-string")
        if prefix not in _STRING_PREFIXES:
            self.fail(pos, f"invalid syntax: unknown string prefix {text[:quote]!r}")
        width = 3 if len(text) - quote >= 6 and text.startswith(text[quote] * 3, quote) else 1
        body = text[quote + width:len(text) - width]
        is_bytes = "b" in prefix
        try:
            value = _decode_string(body, raw="r" in prefix, is_bytes=is_bytes)
        except _StringError as exc:
            self.fail(pos, str(exc))
        if frame.strings is None:
            if frame.current is not None:
                self.after_value(pos, text)
            frame.strings = [value]
            frame.string_bytes = is_bytes
            frame.string_pos = pos
        elif frame.string_bytes != is_bytes:
            self.fail(pos, "cannot mix bytes and nonbytes literals")
        else:
            frame.strings.append(value)

    def seal_strings(self, frame: _Frame) -> None:
        parts = frame.strings or []
        frame.strings = None
        if frame.string_bytes:
            self.operand(frame, BYTES, b"".join(parts), frame.string_pos)  # type: ignore[arg-type]
        else:
            self.operand(frame, STR, "".join(parts), frame.string_pos)  # type: ignore[arg-type]

    # -- operators ----------------------------------------------------------------------------

    def operator(self, frame: _Frame, text: str, pos: int) -> None:
        if text == ",":
            self.comma(frame, pos)
        elif text in ("+", "-"):
            self.sign_or_sum(frame, text, pos)
        elif text in ("(", "[", "{"):
            if frame.current is not None:
                self.after_value(pos, text)
            self.open(frame, text, pos)
        elif text in (")", "]", "}"):
            self.close(frame, text, pos)
        elif text == ":":
            self.colon(frame, pos)
        elif frame.current is not None:
            self.after_value(pos, text)
        elif text == "*":
            self.reject(pos, "*-unpacking of arguments" if frame.kind == _ARGS
                        else "starred expression")
        elif text == "**":
            self.reject(pos, "**-unpacking of arguments" if frame.kind == _ARGS
                        else "**-unpacking in a dict")
        elif text == "~":
            self.reject(pos, "operator '~'")
        elif text == "...":
            self.reject(pos, "'...' (Ellipsis)")
        else:
            self.fail(pos, f"invalid syntax: unexpected {text!r}")

    def sign_or_sum(self, frame: _Frame, op: str, pos: int) -> None:
        if frame.current is None:
            if frame.left is not None:
                self.fail(pos, _COMPLEX_FORM)
            if frame.sign is not None:
                self.fail(pos, f"operator {op!r} cannot apply to another operator")
            frame.sign = (op, pos)
            return
        kind, value, value_pos = frame.current
        if kind not in _NUMERIC:
            self.reject(pos, f"operator {op!r}")
        if kind == SUM:
            self.fail(pos, _COMPLEX_FORM)
        if kind not in _REAL_PARTS:
            self.fail(value_pos, f"{_COMPLEX_FORM}; {_describe(kind, value)} cannot be its "
                                 "real part")
        frame.current = None
        frame.left = (value, op)

    def open(self, frame: _Frame, bracket: str, pos: int) -> None:
        child = _Frame(_BRACKET_FRAMES[bracket], pos)
        if (frame.kind == _CALL and frame.name == "frozenset") or \
                (frame.kind == _PAREN and frame.keep and not frame.comma):
            child.keep = True
        self.push(child, pos)

    def push(self, frame: _Frame, pos: int) -> None:
        if len(self.stack) > self.limits.max_depth:
            self.fail(pos, f"the literal is nested more than {self.limits.max_depth} levels "
                           "deep")
        self.started = True
        self.stack.append(frame)

    def open_call(self, name: str, name_pos: int, pos: int) -> None:
        if name not in _CALLABLE:
            self.reject(name_pos, f"call to {name!r}")
        frame = _Frame(_CALL, name_pos)
        frame.name = name
        frame.raw = []
        self.push(frame, pos)

    def start_keyword(self, frame: _Frame, name: str, pos: int) -> None:
        if keyword.iskeyword(name):
            self.fail(pos, f"invalid syntax: {name!r} cannot be a keyword argument")
        if name in frame.kwargs:
            self.fail(pos, f"keyword argument {name!r} is repeated")
        frame.keyword = name
        frame.positional_done = True

    def comma(self, frame: _Frame, pos: int) -> None:
        if frame.current is None:
            self.fail(pos, "invalid syntax: unexpected ','")
        if frame.kind == _BRACE and frame.dict is None:
            frame.dict = False
        self.close_element(frame, pos)
        frame.comma = True

    def colon(self, frame: _Frame, pos: int) -> None:
        if frame.kind != _BRACE or frame.current is None or frame.dict is False \
                or frame.key is not None:
            self.fail(pos, "invalid syntax: unexpected ':'")
        if frame.dict is None:
            frame.dict = True
            frame.values = []
        kind, payload, value_pos = frame.current
        frame.current = None
        if _unhashable(kind, payload):
            self.fail(value_pos, f"unhashable dict key of type {_display(kind, payload)}")
        frame.key = _encode(kind, payload)

    def close_element(self, frame: _Frame, pos: int) -> None:
        """Moves the complete operand into the frame (at a comma or the closing bracket)."""
        current = frame.current
        if current is None:
            if frame.sign is not None or frame.left is not None:
                self.fail(pos, "invalid syntax: the expression is incomplete")
            if frame.kind == _ARGS and frame.keyword is not None:
                self.fail(pos, "invalid syntax: a keyword argument needs a value")
            if frame.kind == _BRACE and frame.key is not None:
                self.fail(pos, "invalid syntax: a dict entry needs a value")
            return
        kind, payload, value_pos = current
        frame.current = None
        if frame.kind == _LIST or frame.kind == _BRACE:
            self.add_element(frame, kind, payload, value_pos)
        elif frame.kind == _ARGS:
            self.add_argument(frame, kind, payload, value_pos)
        elif frame.kind == _CALL:
            frame.raw.append(current)  # type: ignore[union-attr]  # a call frame has a list
        elif not frame.comma and not frame.raw:  # maybe a parenthesised expression
            frame.raw = [current]
        else:  # a tuple (in parentheses, or bare at the top level)
            self.flush_raw(frame)
            self.add_element(frame, kind, payload, value_pos)

    def flush_raw(self, frame: _Frame) -> None:
        if frame.raw:
            for kind, payload, pos in frame.raw:
                self.add_element(frame, kind, payload, pos)
            frame.raw = None

    def add_element(self, frame: _Frame, kind: int, payload: Any, pos: int) -> None:
        if frame.kind == _BRACE:
            if frame.dict:
                if frame.key is None:
                    self.fail(pos, "invalid syntax: a dict entry needs 'key: value'")
                frame.items.append(frame.key)
                frame.values.append(_encode(kind, payload))
                frame.key = None
                return
            if _unhashable(kind, payload):
                self.fail(pos, f"unhashable set element (unhashable type: "
                               f"'{_unhashable(kind, payload)}')")
        elif frame.element_error is None and kind >= LIST:
            frame.element_error = _unhashable(kind, payload)
        frame.items.append(_encode(kind, payload))

    def add_argument(self, frame: _Frame, kind: int, payload: Any, pos: int) -> None:
        encoding = _encode(kind, payload)
        if frame.keyword is not None:
            frame.kwargs[frame.keyword] = Literal(encoding)
            frame.keyword = None
        elif frame.positional_done:
            self.fail(pos, "invalid syntax: a positional argument follows a keyword argument")
        else:
            frame.items.append(encoding)

    def close(self, frame: _Frame, bracket: str, pos: int) -> None:
        if len(self.stack) == 1 or _CLOSERS[frame.kind] != bracket:
            self.fail(pos, f"unmatched {bracket!r}")
        current = frame.current
        if current is None and frame.sign is None and frame.left is None and not frame.keep \
                and frame.kind != _BRACE and (frame.kind != _PAREN or frame.comma):
            pass  # nothing pending: `[1, 2,]`, `(1,)` after an item, `()`
        elif current is not None and frame.kind == _LIST and not frame.keep \
                and frame.left is None:
            frame.items.append(_encode(current[0], current[1]))  # the common case, inline
        else:
            if frame.kind == _BRACE and frame.dict is None and current is not None:
                frame.dict = False
            self.close_element(frame, pos)
        self.stack.pop()
        parent = self.stack[-1]
        kind = frame.kind
        if kind == _LIST:
            payload: Any = LIST_OPEN + b"".join(frame.items) + LIST_CLOSE
            value_kind = LIST
        elif kind == _PAREN:
            if not frame.comma and frame.raw:  # a parenthesised expression, not a tuple
                value_kind, payload, _ = frame.raw[0]
                self.nodes -= 1  # counted again as the parent's operand
                self.operand(parent, value_kind, payload, frame.pos)
                return
            if frame.raw:
                self.flush_raw(frame)
            encoding = TUPLE_OPEN + b"".join(frame.items) + TUPLE_CLOSE
            value_kind = TUPLE if frame.element_error is None else UNHASHABLE_TUPLE
            payload = encoding if frame.element_error is None else \
                (encoding, frame.element_error)
        elif kind == _BRACE:
            if frame.dict is False:
                value_kind, payload = SET, encode_set(frame.items)
            else:
                values = frame.values if frame.dict else []  # `{}` is an empty dict
                value_kind, payload = DICT, encode_dict(frame.items, values)
        else:
            value_kind, payload = self.call_value(frame)
        if frame.keep and (kind != _BRACE or frame.dict is False):
            payload = _Kept(value_kind, frame.items, frame.element_error)
            value_kind = KEPT
        if parent.sign is None and parent.left is None and self.nodes < self.limits.max_nodes:
            self.nodes += 1  # `operand`, inline
            parent.current = (value_kind, payload, frame.pos)
        else:
            self.operand(parent, value_kind, payload, frame.pos)

    def call_value(self, frame: _Frame) -> tuple[int, Any]:
        args = frame.raw or []
        if frame.name == "set":
            if args or frame.comma:
                self.fail(frame.pos, "set() takes no arguments here; write a literal instead")
            return SET, _EMPTY_SET
        if frame.name == "float":
            if len(args) != 1:
                self.fail(frame.pos, "float() takes exactly one string argument")
            kind, payload, pos = args[0]
            if kind != STR:
                self.fail(pos, "float() takes a string constant such as 'nan' or 'inf'")
            try:
                return FLOAT, float(payload)
            except ValueError:
                self.fail(pos, f"{payload!r} is not a valid float")
        if not args:
            return FROZENSET, _EMPTY_SET
        if len(args) != 1:
            self.fail(frame.pos, "frozenset() takes one set, list or tuple literal")
        kind, payload, pos = args[0]
        if kind != KEPT:
            self.fail(pos, "frozenset() takes a set, list or tuple literal")
        kept: _Kept = payload
        if kept.element_error:
            self.fail(pos, f"unhashable frozenset element (unhashable type: "
                           f"'{kept.element_error}')")
        return FROZENSET, encode_set(kept.elements)

    # -- results ------------------------------------------------------------------------------

    def literal(self) -> Literal:
        frame = self.stack[0]
        if frame.comma:
            self.flush_raw(frame)
            return Literal(TUPLE_OPEN + b"".join(frame.items) + TUPLE_CLOSE)
        assert frame.raw is not None
        kind, payload, _ = frame.raw[0]
        return Literal(_encode(kind, payload))

    def arguments(self) -> tuple[tuple[Literal, ...], dict[str, Literal]]:
        frame = self.stack[0]
        return tuple(Literal(item) for item in frame.items), frame.kwargs


def _is_dict_leaf(leaf: str) -> bool:
    """Whether a `{...}` leaf is a dict: its first plain value is followed by a colon."""
    first = _PLAIN_VALUE.search(leaf)
    return first is not None and leaf[first.end():].lstrip(" \t\f").startswith(":")


def _encode(kind: int, payload: Any) -> bytes:
    if kind >= LIST:
        if kind == UNHASHABLE_TUPLE:
            return payload[0]
        if kind == KEPT:
            return _kept_encoding(payload)
        return payload
    if kind == STR:
        return encode_str(payload)
    if kind == BYTES:
        return encode_bytes(payload)
    if kind == NONE:
        return NONE_CODE
    return encode_number(payload)


def _kept_encoding(kept: _Kept) -> bytes:
    if kept.kind == LIST:
        return LIST_OPEN + b"".join(kept.elements) + LIST_CLOSE
    if kept.kind in (TUPLE, UNHASHABLE_TUPLE):
        return TUPLE_OPEN + b"".join(kept.elements) + TUPLE_CLOSE
    return encode_set(kept.elements)


def _unhashable(kind: int, payload: Any) -> str | None:
    """The type that keeps this value from being a set element or dict key, if any."""
    if kind < LIST:
        return None
    if kind == UNHASHABLE_TUPLE:
        return payload[1]
    if kind == KEPT:
        kept: _Kept = payload
        if kept.kind in (TUPLE, UNHASHABLE_TUPLE):
            return kept.element_error
        return _UNHASHABLE_NAMES.get(kept.kind)
    return _UNHASHABLE_NAMES.get(kind)


def _display(kind: int, payload: Any) -> str:
    if kind == KEPT:
        return _DISPLAY_NAMES[payload.kind]
    return _DISPLAY_NAMES[kind]


def _describe(kind: int, payload: Any) -> str:
    if kind >= LIST:
        return f"a {_display(kind, payload)}"
    if kind == SUM:
        return "a complex number sum"
    if kind in (SIGNED_REAL, SIGNED_OTHER):
        return "a signed number"
    return f"constant of type {type(payload).__name__}"


def _decode_string(body: str, raw: bool, is_bytes: bool) -> str | bytes:
    """The value of one string token's body, exactly as CPython's parser computes it."""
    if is_bytes:
        if not body.isascii():
            raise _StringError("bytes can only contain ASCII literal characters")
        data = body.encode("ascii")
        if raw or "\\" not in body:
            return data
        try:
            decoded: bytes = codecs.escape_decode(data)[0]
        except ValueError as exc:
            raise _StringError(f"invalid bytes literal: {exc}") from None
        return decoded
    if raw or "\\" not in body:
        return body
    # CPython turns every non-ASCII character into a \U escape, and a backslash right before
    # one into an escaped backslash, then applies the unicode_escape codec. Pairs of
    # backslashes are escapes of their own; NUL cannot occur here (it is refused up front),
    # so it stands in for them while the lone backslashes are fixed.
    text = body.replace("\\\\", "\0")
    data = text.encode("ascii", "backslashreplace")
    if not text.isascii():
        # The only `\\` left is a lone backslash before a character just escaped.
        data = data.replace(b"\\\\", b"\\\\\\")
    data = data.replace(b"\0", b"\\\\")
    try:
        return codecs.unicode_escape_decode(data)[0]
    except UnicodeDecodeError as exc:
        raise _StringError(f"invalid string literal: {exc.reason}") from None


def _where(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, column {column}"


def _prepared(text: object, limits: LiteralLimits) -> str:
    if not isinstance(text, str):
        raise LiteralError(f"expected text, got {type(text).__name__}")
    if len(text) > limits.max_chars:
        raise LiteralError(f"the literal is {len(text)} characters, over the limit of "
                           f"{limits.max_chars}")
    nul = text.find("\0")
    if nul >= 0:
        raise LiteralError(f"NUL byte at {_where(text, nul)}")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # Python cannot compile such text either
            raise LiteralError(f"a lone surrogate {text[exc.start]!r} at "
                               f"{_where(text, exc.start)} (escape it as \\u....)") from None
    if "\r" in text:  # the tokenizer's universal newlines
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def parse_literal(text: str, limits: LiteralLimits = DEFAULT_LIMITS) -> Literal:
    """Parses one literal value, e.g. `"[1, (2.5, 'a'), {3: None}]"` or `"frozenset({1})"`.

    A bare tuple (`"1, 2"`) is a tuple, as in Python. Raises LiteralError.
    """
    parser = _Parser(_prepared(text, limits), limits, call=False)
    parser.run()
    return parser.literal()


def parse_call_arguments(text: str, entry: str = "f", limits: LiteralLimits = DEFAULT_LIMITS,
                         ) -> tuple[tuple[Literal, ...], dict[str, Literal]]:
    """Parses the text between the parentheses of `entry(...)` into (args, kwargs).

    The sandbox runner evaluates `entry(` + text + newline + `)`; the text is parsed as that
    argument list, so it may end in a comment or a line continuation. Raises LiteralError.
    """
    _check_entry(entry)
    parser = _Parser(_prepared(text, limits) + "\n", limits, call=True)
    parser.run()
    return parser.arguments()


def _check_entry(entry: object) -> None:
    if not (isinstance(entry, str) and re.fullmatch(ENTRY_PATTERN, entry)
            and not keyword.iskeyword(entry)):
        raise LiteralError(f"invalid entry function name {entry!r}")
