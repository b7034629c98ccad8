"""The static policies: the azr allow-list's rules, syntax errors, has_entry, permissive.

Bypass attempts, class by class, are in test_policy_bypasses.py; the tables against the running
interpreter in test_policy_tables.py; the benign corpus in test_policy_corpus.py.
"""

from __future__ import annotations

import textwrap

import pytest

from azr_verify.service.models import PolicyName, Violation
from azr_verify.service.verify.policy import ProgramCheck, check_program
from azr_verify.service.verify.policy_rules import MAX_VIOLATIONS
from azr_verify.service.verify.policy_tables import (
    ALLOWED_MODULES,
    DENIED_MODULES,
    INTERPRETER_ATTRIBUTES,
    PROTOCOL_DUNDERS,
    REFUSED_BUILTINS,
)
from azr_verify.service.verify.syntax import MAX_SCOPE_DEPTH

AZR = PolicyName.AZR
PERMISSIVE = PolicyName.PERMISSIVE


def check(source: str, policy: PolicyName = AZR, entry: str = "f") -> ProgramCheck:
    return check_program(textwrap.dedent(source), policy, entry)


def found(source: str) -> list[tuple[str, str, int]]:
    result = check(source)
    assert result.syntax_error is None
    return [(v.rule, v.name, v.line) for v in result.violations]


CLEAN = [
    "def f(x):\n    return x + 1",
    "import math\ndef f(x):\n    return math.sqrt(x)",
    "import collections.abc\nfrom collections import Counter, deque\ndef f(x): return 1",
    "from __future__ import annotations\ndef f(x: int) -> int: return x",
    "from functools import reduce\nimport itertools as it\ndef f(x): return list(it.chain(x))",
    "import re, heapq, bisect, string, typing, dataclasses, enum, fractions, decimal\n"
    "def f(): return 1",
    "class A:\n    def __init__(self):\n        self.x = 1\n    def __len__(self): return 1\n"
    "def f(): return A().x, type(A()).__name__",
    "def f(input):\n    return input[0]",
    "def f(x):\n    vars = [x]\n    return vars",
    "def f(x):\n    compile = lambda s: s\n    return compile(x)",
    "def f(x):\n    return [input for input in x]",
    "def f(x):\n    return (lambda open: open)(x)",
    "def f(x):\n    try:\n        return x\n    except Exception as exit:\n        return exit",
    "def f(x):\n    for eval in x:\n        pass\n    return eval",
    "def f(x):\n    def g():\n        return input\n    input = x\n    return g()",
    "def f(x):\n    return getattr(x, '__init__'), getattr(x, 'real'), hasattr(x, '__len__')",
    "def f(x):\n    print(x)\n    return bytearray(b'a')",
    "def f(x):\n    match x:\n        case {'a': 1, **input}:\n            return input\n"
    "        case [*vars]:\n            return vars\n        case open:\n            return open",
    "def f(x):\n    return [(eval := 1) for _ in x], eval",
    "def f(x):\n    s = '__globals__ __class__ eval open os'\n    return s",
]


@pytest.mark.parametrize("source", CLEAN)
def test_clean_programs(source: str) -> None:
    result = check(source)
    assert result == ProgramCheck(syntax_error=None, violations=(), has_entry=True)


@pytest.mark.parametrize(("source", "expected"), [
    ("import os", [("import_denied", "os", 1)]),
    ("import os.path", [("import_denied", "os.path", 1)]),
    ("from os import path", [("import_denied", "os", 1)]),
    ("from os.path import join", [("import_denied", "os.path", 1)]),
    ("import random", [("import_denied", "random", 1)]),
    ("import time, datetime", [("import_denied", "datetime", 1), ("import_denied", "time", 1)]),
    ("import numpy", [("import_unknown", "numpy", 1)]),
    ("import mathx", [("import_unknown", "mathx", 1)]),
    ("from . import x", [("import_relative", ".", 1)]),
    ("from ..pkg import x", [("import_relative", "..pkg", 1)]),
    ("import math as os", []),
    ("import concurrent.futures", [("import_denied", "concurrent.futures", 1)]),
    ("def f():\n    import subprocess", [("import_denied", "subprocess", 2)]),
    ("try:\n    import sys\nexcept ImportError:\n    pass", [("import_denied", "sys", 2)]),
])
def test_imports(source: str, expected: list[tuple[str, str, int]]) -> None:
    assert found(source) == expected


@pytest.mark.parametrize("module", sorted(DENIED_MODULES))
def test_every_denied_module(module: str) -> None:
    assert found(f"import {module}") == [("import_denied", module, 1)]
    assert found(f"from {module} import x") == [("import_denied", module, 1)]


@pytest.mark.parametrize("module", sorted(ALLOWED_MODULES))
def test_every_allowed_module(module: str) -> None:
    assert found(f"import {module}") == []


def test_the_lists_are_disjoint_and_cover_the_design() -> None:
    assert not ALLOWED_MODULES.keys() & DENIED_MODULES
    azr_banned = {"logging", "random", "multiprocessing", "pebble", "subprocess", "threading",
                  "datetime", "time", "hashlib", "hmac", "bcrypt", "calendar", "os", "sys"}
    assert azr_banned <= DENIED_MODULES
    assert {"ctypes", "importlib", "builtins", "inspect", "gc", "types", "io"} <= DENIED_MODULES
    assert {"open", "exec", "eval", "compile", "__import__", "input", "breakpoint", "globals",
            "locals", "vars", "dir", "help", "memoryview", "exit", "quit"} <= REFUSED_BUILTINS
    assert {"__init__", "__eq__", "__lt__", "__hash__", "__repr__", "__iter__", "__len__",
            "__getitem__"} <= PROTOCOL_DUNDERS
    assert {"f_back", "gi_frame", "tb_frame", "co_code", "cr_frame"} <= INTERPRETER_ATTRIBUTES


@pytest.mark.parametrize("name", sorted(REFUSED_BUILTINS))
def test_every_refused_builtin_call_or_not(name: str) -> None:
    assert found(f"def f(x):\n    return {name}(x)") == [("builtin", name, 2)]
    assert found(f"def f(x):\n    g = {name}\n    return g") == [("builtin", name, 2)]


@pytest.mark.parametrize(("source", "expected"), [
    ("def f():\n    return __import__('os')", [("builtin", "__import__", 2)]),
    ("x = eval\ndef f():\n    return x", [("builtin", "eval", 1)]),
    # A module-level binding need not have happened when the name is looked up.
    ("def f():\n    return input()\ninput = 1", [("builtin", "input", 2)]),
    ("input = 1\ndef f():\n    return input", [("builtin", "input", 3)]),
    ("class A:\n    open = 1\n    def m(self):\n        return open", [("builtin", "open", 4)]),
    # The first iterable of a comprehension is evaluated outside it.
    ("def f():\n    return [eval for eval in eval]", [("builtin", "eval", 2)]),
    # Defaults and decorators are evaluated where the function is defined.
    ("def f(x=open):\n    return x", [("builtin", "open", 1)]),
    ("@breakpoint\ndef f(): pass", [("builtin", "breakpoint", 1)]),
    ("def f():\n    global eval\n    eval = 1\n    return eval", [("builtin", "eval", 4)]),
    ("def f():\n    def g():\n        global exec\n        return exec\n    exec = 1\n"
     "    return g", [("builtin", "exec", 4)]),
    ("def f(eval):\n    def g():\n        return eval\n    return g", []),
    ("def f(x):\n    class A:\n        y = vars\n    return A", [("builtin", "vars", 3)]),
    ("def f(vars):\n    class A:\n        y = vars\n    return A", []),
    ("def f(x):\n    return eval(x), eval(x)", [("builtin", "eval", 2)]),
    ("def f(x):\n    return locals()\n\ndef g():\n    return globals()",
     [("builtin", "locals", 2), ("builtin", "globals", 5)]),
])
def test_builtins_by_scope(source: str, expected: list[tuple[str, str, int]]) -> None:
    assert found(source) == expected


@pytest.mark.parametrize("attribute", sorted(INTERPRETER_ATTRIBUTES))
def test_every_interpreter_attribute(attribute: str) -> None:
    assert found(f"def f(x):\n    return x.{attribute}") == [("dunder_attribute", attribute, 2)]


@pytest.mark.parametrize(("source", "expected"), [
    ("def f():\n    return ().__class__.__bases__[0].__subclasses__()",
     [("dunder_attribute", "__bases__", 2), ("dunder_attribute", "__class__", 2),
      ("dunder_attribute", "__subclasses__", 2)]),
    ("def f(g):\n    return g.__globals__['__builtins__']",
     [("dunder_attribute", "__globals__", 2)]),
    ("def f(g):\n    return getattr(g, '__globals__')", [("dunder_attribute", "__globals__", 2)]),
    ("def f(g):\n    setattr(g, '__code__', 1)", [("dunder_attribute", "__code__", 2)]),
    ("def f(g):\n    delattr(g, '__dict__')", [("dunder_attribute", "__dict__", 2)]),
    ("import operator\ndef f(g):\n    return operator.attrgetter('x.__globals__')(g)",
     [("module_member", "operator.attrgetter", 3)]),
    ("def f(g):\n    return getattr(g, '__name__')", []),
    ("def f():\n    return __builtins__", [("dunder_name", "__builtins__", 2)]),
    ("def f():\n    return __loader__, __spec__",
     [("dunder_name", "__loader__", 2), ("dunder_name", "__spec__", 2)]),
    ("def f():\n    x = (yield)\n    return x.gi_frame.f_back.f_globals",
     [("dunder_attribute", "f_back", 3), ("dunder_attribute", "f_globals", 3),
      ("dunder_attribute", "gi_frame", 3)]),
    ("def f():\n    try:\n        1/0\n    except Exception as e:\n"
     "        return e.__traceback__.tb_frame",
     [("dunder_attribute", "__traceback__", 5), ("dunder_attribute", "tb_frame", 5)]),
])
def test_dunder_escapes(source: str, expected: list[tuple[str, str, int]]) -> None:
    assert found(source) == expected


def test_reports_every_violation_sorted() -> None:
    source = """\
        import os, sys
        from random import randint
        import numpy
        def f(x):
            eval('1'); open('/etc/passwd')
            y = x.__class__
            return __builtins__, getattr(x, '__code__')
        """
    assert found(source) == [
        ("import_denied", "os", 1),
        ("import_denied", "sys", 1),
        ("import_denied", "random", 2),
        ("import_unknown", "numpy", 3),
        ("builtin", "eval", 5),
        ("builtin", "open", 5),
        ("dunder_attribute", "__class__", 6),
        ("dunder_attribute", "__code__", 7),
        ("dunder_name", "__builtins__", 7),
    ]
    violations = check(source).violations
    assert all(isinstance(v, Violation) for v in violations)
    assert isinstance(violations, tuple)


def test_permissive_policy_checks_only_syntax_and_entry() -> None:
    source = "import os\ndef f():\n    return eval('1'), ().__class__, __builtins__"
    assert check(source, PERMISSIVE) == ProgramCheck(None, (), True)
    assert check(source, AZR).violations
    assert check("def f(:", PERMISSIVE).syntax_error is not None
    assert check("def g(): pass", PERMISSIVE).has_entry is False


def test_policy_given_by_name() -> None:
    assert check_program("import os", "permissive").violations == ()
    assert check_program("import os", "azr").violations
    with pytest.raises(ValueError):
        check_program("x = 1", "nonsense")


@pytest.mark.parametrize(("source", "message"), [
    ("def f(:\n    pass", "line 1"),
    ("def f():\n    return (", "line 2"),
    ("def f():\n  x = 1\n    y = 2", "line 3"),
    ("return 1", "'return' outside function"),
    ("def f():\n    nonlocal x", "line 2"),
    ("x = 1\n\x00", "line 2: the program contains a NUL byte"),
    ("x = " + "(" * 300 + "1" + ")" * 300, "too many nested parentheses"),
    ("x = " + "-" * 200_000 + "1", "too deeply nested"),
    ("x = '\ud800'", "cannot be parsed"),
    ("x = 1" + "0" * 5000, "line 1"),
])
def test_syntax_errors_are_reported_not_raised(source: str, message: str) -> None:
    result = check_program(source, AZR)
    assert result.syntax_error is not None
    assert message in result.syntax_error
    assert result.violations == ()
    assert result.has_entry is False


def test_non_text_program() -> None:
    assert check_program(b"def f(): pass", AZR).syntax_error is not None


@pytest.mark.parametrize(("source", "entry", "expected"), [
    ("def f(): pass", "f", True),
    ("async def f(): pass", "f", True),
    ("class f: pass", "f", True),
    ("f = lambda x: x", "f", True),
    ("f: object = len", "f", True),
    ("f: object", "f", False),
    ("g = f = len", "f", True),
    ("f, g = len, len", "f", True),
    ("[g, *f] = [len]", "f", True),
    ("from math import sqrt as f", "f", True),
    ("from math import f", "f", True),
    ("import f", "f", True),
    ("import f.sub", "f", True),
    ("import math as f", "f", True),
    ("if True:\n    def f(): pass", "f", True),
    ("try:\n    pass\nexcept Exception:\n    def f(): pass", "f", True),
    ("def solve(x): return x", "solve", True),
    ("def g(): pass", "f", False),
    ("def solve(x): return x", "f", False),
    ("def g():\n    def f(): pass", "f", False),
    ("class A:\n    def f(self): pass", "f", False),
    ("f(1)", "f", False),
    ("from math import *", "f", False),
    ("", "f", False),
])
def test_has_entry(source: str, entry: str, expected: bool) -> None:
    assert check_program(source, PERMISSIVE, entry).has_entry is expected
    assert check_program(source, AZR, entry).has_entry is expected


def test_nothing_is_executed() -> None:
    source = "raise SystemExit(3)\nimport os\nos._exit(4)\ndef f(): pass"
    result = check_program(source, AZR)
    assert result.has_entry is True
    assert found(source) == [("import_denied", "os", 2)]


def test_deep_but_valid_program() -> None:
    body = "x = " + "[" * 150 + "]" * 150 + "\n"
    nested = "def f():\n" + "".join("    " * (i + 1) + "if x:\n" for i in range(90))
    nested += "    " * 91 + "return eval\n"
    assert found(body + "def f(): return x") == []
    assert found(nested) == [("builtin", "eval", 92)]


# --- what the allow-list keeps allowed ---------------------------------------------------------

ALLOWED = [
    ("throwaway", "def f(xs):\n    _, second, *_ = xs\n    return [0 for _ in xs]"),
    ("private-helpers", "def _norm(s):\n    return s\nclass A:\n    _count = 0\n"
     "    def __init__(self):\n        self._cache = {}\n        self.__secret = 1\n"
     "    def _helper(self):\n        return self._cache, self.__secret, A._count\n"
     "    def __eq__(self, other):\n        return self._helper() == other._helper()\n"
     "def f(x):\n    return _norm(x)"),
    ("protocol-dunders", "class V:\n    def __init__(self, x):\n        self.x = x\n"
     "    def __repr__(self):\n        return f'V({self.x})'\n"
     "    def __eq__(self, o):\n        return self.x == o.x\n"
     "    def __lt__(self, o):\n        return self.x < o.x\n"
     "    def __hash__(self):\n        return hash(self.x)\n"
     "    def __iter__(self):\n        yield self.x\n"
     "    def __len__(self):\n        return 1\n"
     "    def __getitem__(self, i):\n        return self.x\n"
     "    def __mul__(self, k):\n        return V(self.x * k)\n"
     "    __rmul__ = __mul__\n"
     "    def __enter__(self):\n        return self\n"
     "    def __exit__(self, *exc):\n        return False\n"
     "    def __getattr__(self, name):\n        return name\n"
     "    def __call__(self):\n        return self.x\n"
     "def f(x):\n    return V(x).__len__(), V.__init__, V.__name__, (2 * V(x)).x"),
    ("super-and-new", "class A:\n    _inst = None\n    def __new__(cls):\n"
     "        if cls._inst is None:\n            cls._inst = super().__new__(cls)\n"
     "        return cls._inst\n    def __init__(self):\n        super().__init__()\n"
     "class B(A):\n    def __init__(self):\n        A.__init__(self)\n"
     "def f():\n    return object.__new__(B) is not None"),
    ("slots-match-args", "class P:\n    __slots__ = ('x', '_y')\n    __match_args__ = ('x',)\n"
     "    def __init__(self, x):\n        self.x, self._y = x, 0\n"
     "def f(p):\n    match P(p):\n        case P(x=0):\n            return 0\n"
     "        case P(v):\n            return v"),
    ("frozen-dataclass-setattr", "from dataclasses import dataclass, field\n"
     "@dataclass(frozen=True)\nclass S:\n    v: tuple\n    total: int = field(init=False)\n"
     "    def __post_init__(self):\n        object.__setattr__(self, 'total', sum(self.v))\n"
     "class L:\n    def __setattr__(self, name, value):\n"
     "        super().__setattr__('last', value)\n"
     "def f(v):\n    return S(tuple(v)).total"),
    ("namedtuple-api", "from collections import namedtuple\nP = namedtuple('P', 'x y')\n"
     "def f(a):\n    p = P(*a)\n    return tuple(p._replace(x=0)), p._asdict(), P._fields, "
     "tuple(P._make(a)), P._field_defaults"),
    ("type-uses", "class V:\n    def __init__(self, a, b):\n        self.a, self.b = a, b\n"
     "    def __add__(self, o):\n        return type(self)(self.a + o.a, self.b + o.b)\n"
     "def f(x):\n    return (type(x).__name__, type(x) == int, type(x) in (int, float),\n"
     "            type(x) is type(1), isinstance(x, type), isinstance(x, (type(x), str)),\n"
     "            str(type(x)), f'{type(x)}', V(1, 2) + V(3, 4))"),
    ("formats", "TEMPLATE = '{} + {} = {}'\ndef f(a, b):\n"
     "    return (TEMPLATE.format(a, b, a + b), '{0[0]}-{p[k]}'.format((a, b), p={'k': b}),\n"
     "            '{:>{w}}'.format(a, w=5), str.format('{} {}', a, b), f'{a.real:.2f}',\n"
     "            '{0.real}'.format(3), '%s %d' % ('x', b), '{x}'.format_map({'x': a}))"),
    ("enum-literal-functional", "from enum import Enum\nColor = Enum('Color', 'RED GREEN')\n"
     "Size = Enum('Size', [('S', 1), ('M', 2)])\nclass E(Enum):\n    A = 1\n"
     "def f(v):\n    return E(v).name, Color.RED.value, E.__members__['A'].value, "
     "isinstance(E.A, Enum)"),
    ("abc-metaclass", "from abc import ABCMeta, abstractmethod\nimport abc\n"
     "class Shape(metaclass=ABCMeta):\n    @abstractmethod\n    def area(self): ...\n"
     "class Other(metaclass=abc.ABCMeta):\n    pass\nclass Third(abc.ABC):\n    pass\n"
     "def f(): return 1"),
    ("submodules", "import collections.abc\nfrom collections import abc\n"
     "import collections.abc as cabc\n"
     "def f(x):\n    return isinstance(x, (collections.abc.Sequence, abc.Mapping, cabc.Set))"),
    ("own-attribute-assignment", "from decimal import getcontext\nclass A:\n    count = 0\n"
     "def g():\n    return 1\ng.cache = {}\n"
     "def f(x):\n    getcontext().prec = 30\n    A.count += 1\n    a = A()\n    a.x = x\n"
     "    type(a).count += 1\n    setattr(a, 'y', 1)\n    g.cache[x] = 1\n    return a.x"),
    ("exception-chain", "def f(x):\n    try:\n        try:\n            int(x)\n"
     "        except ValueError as e:\n            raise KeyError(x) from e\n"
     "    except KeyError as k:\n        return type(k.__cause__).__name__, k.__context__ is None"),
    ("decorators", "from functools import wraps, update_wrapper, lru_cache, partial\n"
     "def deco(fn):\n    @wraps(fn)\n    def inner(*a):\n        return fn(*a)\n"
     "    inner.__name__ = fn.__name__\n    return inner\n"
     "def deco2(fn):\n    def inner(*a):\n        return fn(*a)\n"
     "    return update_wrapper(inner, fn)\n"
     "def deco3(fn):\n    def inner(*a):\n        return fn(*a)\n    return wraps(fn)(inner)\n"
     "@deco\n@deco2\n@deco3\n@lru_cache(maxsize=None)\ndef f(x):\n    return partial(max, 0)(x)"),
    ("main-guard-star-walrus", "from math import *\ndef f(xs):\n"
     "    return [y for x in xs if (y := sqrt(x)) > 1]\nif __name__ == '__main__':\n"
     "    print(f([4]))"),
    ("annotations", "from __future__ import annotations\nfrom typing import Optional, List\n"
     "class Node:\n    def __init__(self, v: int, nxt: 'Optional[Node]' = None) -> None:\n"
     "        self.v: int = v\n        self.nxt: \"Optional['Node']\" = nxt\n"
     "def f(xs: List[int]) -> 'List[int]':\n    return xs"),
    ("attribute-builtins-literal", "def f(x):\n    return (getattr(x, 'real', 0), "
     "hasattr(x, 'keys'), getattr(x, '__len__', None))"),
    ("modules-used-as-modules", "import math, json, re\nimport itertools as it\n"
     "def f(x):\n    return (math.sqrt(x), json.dumps([x]), re.compile('a').match('a'),\n"
     "            list(it.islice(it.count(), 3)), getattr(math, 'pi'))"),
]


@pytest.mark.parametrize("source", [s for _, s in ALLOWED], ids=[i for i, _ in ALLOWED])
def test_allowed_constructs(source: str) -> None:
    assert found(source) == []


def test_violations_are_capped_but_the_program_is_refused() -> None:
    source = "def f(x):\n" + "".join(f"    x.__class__{i}__ = 1\n" for i in range(500))
    result = check_program(source, AZR)
    assert len(result.violations) == MAX_VIOLATIONS
    assert all(v.rule == "dunder_attribute" for v in result.violations)


# --- syntax without compiling ------------------------------------------------------------------

@pytest.mark.parametrize(("source", "message"), [
    ("break", "line 1: 'break' outside loop"),
    ("for x in y:\n    def g():\n        continue", "line 3: 'continue' not properly in loop"),
    ("for x in y:\n    pass\nelse:\n    break", "line 4: 'break' outside loop"),
    ("yield 1", "'yield' outside function"),
    ("class A:\n    x = yield", "'yield' outside function"),
    ("def f():\n    return [(yield) for x in y]", "'yield' inside comprehension"),
    ("def f():\n    await g()", "'await' outside async function"),
    ("async def f():\n    yield from g()", "'yield from' inside async function"),
    ("def f():\n    async with g():\n        pass", "'async with' outside async function"),
    ("def f(a, a):\n    pass", "duplicate argument 'a'"),
    ("def f():\n    x = 1\n    global x", "assigned to before global declaration"),
    ("def f():\n    from math import *", "import * only allowed at module level"),
])
def test_errors_only_the_compiler_used_to_find(source: str, message: str) -> None:
    for policy in (AZR, PERMISSIVE):
        result = check_program(source, policy)
        assert result.syntax_error is not None and message in result.syntax_error


@pytest.mark.parametrize("source", [
    "async def f():\n    await g()\n    async for x in y:\n        pass\n"
    "    return [await z for z in y]",
    "def f():\n    return (await z for z in y)",  # an asynchronous generator expression
    "def f():\n    for x in y:\n        try:\n            continue\n        finally:\n"
    "            pass",
    "def f():\n    while True:\n        break\n    else:\n        return 1",
    "f = lambda: (yield)",
    "def f():\n    a = 1\n    def g():\n        nonlocal a\n        a = 2",
])
def test_valid_programs_in_those_contexts(source: str) -> None:
    assert check_program(source, PERMISSIVE).syntax_error is None


def test_nesting_is_capped_before_cpython_scope_analysis() -> None:
    at_cap = "f = " + "lambda: " * MAX_SCOPE_DEPTH + "1"
    assert check_program(at_cap, AZR).syntax_error is None
    over = "f = " + "lambda: " * (MAX_SCOPE_DEPTH + 1) + "1"
    error = check_program(over, PERMISSIVE).syntax_error
    assert error is not None and f"nested more than {MAX_SCOPE_DEPTH} deep" in error
    # Deeper than the parser itself goes: a syntax error, never a RecursionError.
    very_deep = "f = " + "".join(f"lambda a{i}: " for i in range(3000)) + "a0"
    assert check_program(very_deep, AZR).syntax_error is not None


def test_the_trusted_process_never_compiles_program_text(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """CPython's compile is not linear in its input (identical code objects collide in its
    constants table), so the check must find syntax errors without it."""
    import ast
    import builtins

    real_compile = builtins.compile

    def parse_only(source: str, filename: str, mode: str, flags: int = 0,
                   *args: object, **kwargs: object) -> object:
        # ast.parse is compile(..., PyCF_ONLY_AST): parsing is fine, making bytecode is not.
        assert flags & ast.PyCF_ONLY_AST, "bytecode compilation of program text"
        return real_compile(source, filename, mode, flags, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "compile", parse_only)
    assert check_program("f = lambda a: a\n" * 100 + "def f(x): return x", AZR).has_entry
    assert check_program("return 1", PERMISSIVE).syntax_error is not None
    assert check_program("def f(x):\n    y: 'eval(1)' = x", AZR).violations
