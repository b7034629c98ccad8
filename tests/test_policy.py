"""The static safety policy: imports, builtins, dunder escapes, syntax errors and has_entry."""

from __future__ import annotations

import textwrap

import pytest

from azr_verify.service.models import PolicyName, Violation
from azr_verify.service.verify.policy import (
    ALLOWED_MODULES,
    DENIED_ATTRIBUTES,
    DENIED_BUILTINS,
    DENIED_MODULES,
    ProgramCheck,
    check_program,
)

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
    "def f(x):\n    return getattr(x, '__init__'), getattr(x, 'real')",
    "def f(x):\n    print(x)\n    return memoryview(b'a').tobytes()",
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
    assert not ALLOWED_MODULES & DENIED_MODULES
    design_denied = {"random", "time", "datetime", "calendar", "hashlib", "hmac", "logging",
                     "threading", "multiprocessing", "subprocess", "os", "sys", "shutil",
                     "socket", "ctypes", "importlib", "pathlib", "io", "signal", "gc", "inspect",
                     "builtins"}
    assert design_denied <= DENIED_MODULES
    assert {"open", "exec", "eval", "compile", "__import__", "input", "breakpoint", "globals",
            "locals", "vars"} <= DENIED_BUILTINS
    assert {"__globals__", "__subclasses__", "__builtins__", "__code__"} <= DENIED_ATTRIBUTES
    assert not {"__init__", "__name__", "__len__", "__eq__"} & DENIED_ATTRIBUTES


@pytest.mark.parametrize("name", sorted(DENIED_BUILTINS))
def test_every_denied_builtin_call_or_not(name: str) -> None:
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


@pytest.mark.parametrize("attribute", sorted(DENIED_ATTRIBUTES))
def test_every_denied_attribute(attribute: str) -> None:
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
     [("dunder_attribute", "__globals__", 3)]),
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
