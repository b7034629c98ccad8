"""Attempts to walk around the `azr` policy, one table per class of bypass (issue 9).

Each attempt is what an RL optimiser paid to reach `os`, `sys`, frames, builtins, `ctypes`,
randomness, the clock, the runner's json/repr, or to patch a module, might write. Every one must
be refused, and refused for the stated reason: (rule, name) must be among its violations.
"""

from __future__ import annotations

import textwrap

import pytest

from azr_verify.service.models import PolicyName
from azr_verify.service.verify.policy import check_program

Attempt = tuple[str, str, str, str]  # id, program, rule, name


def violations(source: str) -> set[tuple[str, str]]:
    result = check_program(textwrap.dedent(source), PolicyName.AZR)
    assert result.syntax_error is None, result.syntax_error
    return {(v.rule, v.name) for v in result.violations}


def table(attempts: list[Attempt]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(("program", "rule", "name"),
                                   [pytest.param(p, r, n, id=i) for i, p, r, n in attempts])


# --- modules reached through other modules, and dangerous public members -----------------------

REEXPORTS: list[Attempt] = [
    ("typing.sys", "import typing\ndef f():\n    return typing.sys.modules['os']",
     "module_member", "typing.sys"),
    ("from-typing-sys", "from typing import sys", "module_member", "typing.sys"),
    ("contextlib.os", "import contextlib\ndef f():\n    contextlib.os.system('id')",
     "module_member", "contextlib.os"),
    ("re.enum.sys", "import re\ndef f():\n    return re.enum.sys", "module_member", "re.enum"),
    ("json.codecs.open", "import json\ndef f():\n    return json.codecs.open('/etc/passwd')",
     "module_member", "json.codecs"),
    ("dataclasses.builtins.eval",
     "import dataclasses\ndef f():\n    return dataclasses.builtins.eval('1')",
     "module_member", "dataclasses.builtins"),
    ("statistics.random", "import statistics\ndef f():\n    return statistics.random.random()",
     "module_member", "statistics.random"),
    ("from-statistics-random", "from statistics import random", "module_member",
     "statistics.random"),
    ("dataclasses.sys", "import dataclasses\ndef f():\n    return dataclasses.sys._getframe()",
     "module_member", "dataclasses.sys"),
    ("dataclasses.inspect", "import dataclasses as d\ndef f():\n    return d.inspect.stack()",
     "module_member", "dataclasses.inspect"),
    ("enum.bltns", "import enum\ndef f():\n    return enum.bltns.exec", "module_member",
     "enum.bltns"),
    ("enum.sys", "from enum import sys as s", "module_member", "enum.sys"),
    ("fractions.sys", "import fractions\ndef f():\n    return fractions.sys.modules",
     "module_member", "fractions.sys"),
    ("queue.threading", "import queue\ndef f():\n    return queue.threading.Thread",
     "module_member", "queue.threading"),
    ("queue.time", "from queue import time", "module_member", "queue.time"),
    ("typing.types", "import typing\ndef f():\n    return typing.types.FunctionType",
     "module_member", "typing.types"),
    ("typing.io", "import typing\ndef f():\n    return typing.io", "module_member", "typing.io"),
    ("re.copyreg", "import re\ndef f():\n    return re.copyreg.dispatch_table",
     "module_member", "re.copyreg"),
    ("textwrap.re.enum", "import textwrap\ndef f():\n    return textwrap.re.enum",
     "module_member", "textwrap.re"),
    ("base64.binascii", "import base64\ndef f():\n    return base64.binascii", "module_member",
     "base64.binascii"),
    ("collections._sys", "import collections\ndef f():\n    return collections._sys.modules",
     "module_member", "collections._sys"),
    ("from-collections-_sys", "from collections import _sys", "module_member",
     "collections._sys"),
    ("string._re", "import string\ndef f():\n    return string._re", "module_member",
     "string._re"),
    ("heapq-private", "import heapq\ndef f(x):\n    heapq._heapify_max(x)", "module_member",
     "heapq._heapify_max"),
    ("math.__loader__", "import math\ndef f():\n    return math.__loader__", "module_member",
     "math.__loader__"),
    ("math.__dict__", "import math\ndef f():\n    return math.__dict__['sqrt']",
     "module_member", "math.__dict__"),
    ("json.decoder", "import json\ndef f():\n    return json.decoder.scanstring",
     "module_member", "json.decoder"),
    ("collections.abc.sys", "import collections.abc\ndef f():\n    return collections.abc.sys",
     "module_member", "collections.abc.sys"),
    ("alias-import-as", "import collections.abc as cabc\ndef f():\n    return cabc.sys",
     "module_member", "collections.abc.sys"),
    ("alias-in-function", "def f():\n    import typing as t\n    return t.sys",
     "module_member", "typing.sys"),
    ("two-aliases-one-name", "import math as m\nimport typing as m\ndef f():\n    return m.sys",
     "module_member", "typing.sys"),
    # public, but they evaluate strings, walk attributes or reach the process
    ("get_type_hints", "import typing\ndef f(g):\n    return typing.get_type_hints(g)",
     "module_member", "typing.get_type_hints"),
    ("ForwardRef", "from typing import ForwardRef", "module_member", "typing.ForwardRef"),
    ("typing.Type", "from typing import Type", "module_member", "typing.Type"),
    ("string.Formatter",
     "import string\ndef f():\n    return string.Formatter().format('{0.__class__}', 1)",
     "module_member", "string.Formatter"),
    ("attrgetter", "from operator import attrgetter", "module_member", "operator.attrgetter"),
    ("attrgetter-attr", "import operator\ndef f(g):\n    return operator.attrgetter('a')(g)",
     "module_member", "operator.attrgetter"),
    ("methodcaller", "import operator as op\ndef f(x):\n    return op.methodcaller('x')(x)",
     "module_member", "operator.methodcaller"),
    ("cached_property", "from functools import cached_property", "module_member",
     "functools.cached_property"),
    ("make_dataclass", "from dataclasses import make_dataclass", "module_member",
     "dataclasses.make_dataclass"),
    ("global_enum", "from enum import global_enum", "module_member", "enum.global_enum"),
    ("EnumMeta", "import enum\ndef f():\n    return enum.EnumMeta", "module_member",
     "enum.EnumMeta"),
    ("redirect_stdout", "from contextlib import redirect_stdout", "module_member",
     "contextlib.redirect_stdout"),
    ("chdir", "import contextlib\ndef f():\n    return contextlib.chdir('/')", "module_member",
     "contextlib.chdir"),
    ("JSONEncoder", "import json\njson.JSONEncoder.encode = lambda self, o: '1'",
     "module_member", "json.JSONEncoder"),
    ("NormalDist-samples",
     "from statistics import NormalDist\ndef f():\n    return NormalDist().samples(3)",
     "module_member", "statistics.NormalDist"),
    ("functools.RLock", "import functools\ndef f():\n    return functools.RLock()",
     "module_member", "functools.RLock"),
]


@table(REEXPORTS)
def test_modules_reached_through_modules(program: str, rule: str, name: str) -> None:
    assert (rule, name) in violations(program)


IMPORTS: list[Attempt] = [
    *[(f"azr-banned-{m}", f"import {m}", "import_denied", m)
      for m in ("logging", "random", "multiprocessing", "pebble", "subprocess", "threading",
                "datetime", "time", "hashlib", "hmac", "bcrypt", "calendar")],
    ("os.sys", "import os.sys", "import_denied", "os.sys"),
    ("os.path", "from os.path import join", "import_denied", "os.path"),
    ("os.environ", "from os import environ", "import_denied", "os"),
    ("sys.exit", "from sys import exit", "import_denied", "sys"),
    *[(f"denied-{m}", f"import {m}", "import_denied", m)
      for m in ("ctypes", "builtins", "importlib", "gc", "inspect", "types", "copyreg",
                "pickle", "marshal", "io", "posix", "_thread", "_io", "_ctypes", "weakref",
                "traceback", "warnings", "code", "asyncio", "secrets", "uuid", "socket")],
    ("denied-in-function", "def f():\n    import ctypes\n    return ctypes",
     "import_denied", "ctypes"),
    ("denied-in-try", "try:\n    import random\nexcept ImportError:\n    random = None",
     "import_denied", "random"),
    ("unknown", "import numpy", "import_unknown", "numpy"),
    ("unknown-submodule", "import json.decoder as d", "import_unknown", "json.decoder"),
    ("relative", "from . import sibling", "import_relative", "."),
    ("star-typing", "from typing import *", "import_star", "typing"),
    ("star-string", "from string import *", "import_star", "string"),
    ("star-operator", "from operator import *", "import_star", "operator"),
    ("star-functools", "from functools import *", "import_star", "functools"),
    ("star-json", "from json import *", "import_star", "json"),
    ("star-builtins", "from builtins import *", "import_denied", "builtins"),
    ("__import__", "def f():\n    return __import__('os')", "builtin", "__import__"),
]


@table(IMPORTS)
def test_imports(program: str, rule: str, name: str) -> None:
    assert (rule, name) in violations(program)


# --- computed attribute names ------------------------------------------------------------------

COMPUTED: list[Attempt] = [
    ("getattr-concat", "def f(g):\n    return getattr(g, '__glo' + 'bals__')",
     "computed_attribute", "getattr"),
    ("getattr-variable", "def f(g, n):\n    return getattr(g, n)", "computed_attribute",
     "getattr"),
    ("getattr-join", "def f(g):\n    return getattr(g, ''.join(['__cl', 'ass__']))",
     "computed_attribute", "getattr"),
    ("getattr-starred", "def f(g):\n    return getattr(g, *['__class__'])",
     "computed_attribute", "getattr"),
    ("getattr-keyword", "def f(g):\n    return getattr(g, 'a', default=1)",
     "computed_attribute", "getattr"),
    ("setattr-variable", "def f(g, n, v):\n    setattr(g, n, v)", "computed_attribute",
     "setattr"),
    ("delattr-variable", "def f(g, n):\n    delattr(g, n)", "computed_attribute", "delattr"),
    ("hasattr-variable", "def f(g, n):\n    return hasattr(g, n)", "computed_attribute",
     "hasattr"),
    ("getattr-literal-dunder", "def f(g):\n    return getattr(g, '__globals__')",
     "dunder_attribute", "__globals__"),
    ("hasattr-literal-dunder", "def f(g):\n    return hasattr(g, '__code__')",
     "dunder_attribute", "__code__"),
    ("getattr-literal-frame", "def f(g):\n    return getattr(g, 'gi_frame')",
     "dunder_attribute", "gi_frame"),
    ("getattr-literal-private", "import collections\ndef f(c):\n    return getattr(c, '_sys')",
     "private_attribute", "_sys"),
    ("getattr-module-literal", "import typing\ndef f():\n    return getattr(typing, 'sys')",
     "module_member", "typing.sys"),
    ("getattr-as-value", "def f(g):\n    h = getattr\n    return h(g, '__globals__')",
     "computed_attribute", "getattr"),
    ("getattr-in-list", "def f(g):\n    return [getattr][0](g, '__globals__')",
     "computed_attribute", "getattr"),
    ("getattr-map", "def f(g):\n    return list(map(getattr, [g], ['__globals__']))",
     "computed_attribute", "getattr"),
    ("getattr-partial",
     "import functools\ndef f(g):\n    return functools.partial(getattr, g)('__globals__')",
     "computed_attribute", "getattr"),
    ("getattr-reduce",
     "from functools import reduce\ndef f():\n    return reduce(getattr, ['__class__'], 1)",
     "computed_attribute", "getattr"),
    ("getattr-default-arg", "def f(g, get=getattr):\n    return get(g, 'x')",
     "computed_attribute", "getattr"),
    ("getattr-lambda", "f = lambda g, n: getattr(g, n)", "computed_attribute", "getattr"),
    ("getattr-decorator", "@getattr\ndef f(): pass", "computed_attribute", "getattr"),
    ("getattr-walrus", "def f(g):\n    return [(h := getattr) for _ in 'a'][0](g, 'x')",
     "computed_attribute", "getattr"),
    ("getattr-dict", "def f(g):\n    return {'get': getattr}['get'](g, 'x')",
     "computed_attribute", "getattr"),
    ("getattr-class-body", "class A:\n    get = getattr\ndef f(): pass", "computed_attribute",
     "getattr"),
    ("vars", "def f(g):\n    return vars(g)['__globals__']", "builtin", "vars"),
    ("dir", "def f(g):\n    return dir(g)", "builtin", "dir"),
    ("globals", "def f():\n    return globals()['__builtins__']", "builtin", "globals"),
    ("locals", "def f():\n    return locals()", "builtin", "locals"),
    ("getattribute", "def f(x):\n    return object.__getattribute__(x, 'y')",
     "dunder_attribute", "__getattribute__"),
    ("getattribute-bound", "def f(x, n):\n    return x.__getattribute__(n)",
     "dunder_attribute", "__getattribute__"),
    ("dunder-getattr-call", "def f(x, n):\n    return x.__getattr__(n)", "dunder_attribute",
     "__getattr__"),
    ("super-setattr-computed",
     "class A:\n    def __setattr__(self, n, v):\n        super().__setattr__(n, v)",
     "computed_attribute", "__setattr__"),
    ("object-setattr-computed", "def f(x, n):\n    object.__setattr__(x, n, 1)",
     "computed_attribute", "__setattr__"),
    ("object-setattr-dunder", "def f(x, c):\n    object.__setattr__(x, '__class__', c)",
     "dunder_attribute", "__class__"),
    ("object-rebound-new", "class object:\n    pass\ndef f():\n    return object.__new__(int)",
     "dunder_attribute", "__new__"),
    ("super-rebound-new", "def super():\n    return int\n"
     "class A:\n    def m(self):\n        return super().__new__(int)", "dunder_attribute",
     "__new__"),
    ("object-delattr-computed", "def f(x, n):\n    object.__delattr__(x, n)",
     "computed_attribute", "__delattr__"),
    ("setattr-bound-dunder", "def f(x, n):\n    x.__setattr__(n, 1)", "computed_attribute",
     "__setattr__"),
    ("dict-of-object", "def f(g):\n    return g.__dict__['x']", "dunder_attribute", "__dict__"),
    ("wraps-assigned",
     "import functools\ndef f(g):\n    return functools.wraps(g, assigned=('__globals__',))",
     "computed_attribute", "functools.wraps"),
    ("update_wrapper-extra",
     "from functools import update_wrapper\ndef f(w, g):\n"
     "    return update_wrapper(w, g, ('__code__',))", "computed_attribute",
     "functools.update_wrapper"),
    ("wraps-result-keywords",
     "from functools import wraps\ndef f(w, g):\n    return wraps(g)(w, assigned=['__code__'])",
     "computed_attribute", "functools.wraps"),
    ("wraps-result-stored", "from functools import wraps\ndef f(g):\n    return wraps(g)",
     "computed_attribute", "functools.wraps"),
    ("wraps-as-value", "import functools\ndef f():\n    return functools.wraps",
     "computed_attribute", "functools.wraps"),
    ("update_wrapper-partial",
     "from functools import partial, update_wrapper\n"
     "def f():\n    return partial(update_wrapper, assigned=['__code__'])",
     "computed_attribute", "functools.update_wrapper"),
    ("match-class-dunder",
     "def f(x):\n    match x:\n        case object(__class__=c):\n            return c",
     "dunder_attribute", "__class__"),
    ("match-class-frame",
     "def f(g):\n    match g:\n        case object(gi_frame=fr):\n            return fr",
     "dunder_attribute", "gi_frame"),
    ("match-args-dunder", "class P:\n    __match_args__ = ('__globals__',)",
     "dunder_attribute", "__globals__"),
    ("match-args-computed", "N = ['__class__']\nclass P:\n    __match_args__ = tuple(N)",
     "computed_attribute", "__match_args__"),
    ("slots-dunder", "class P:\n    __slots__ = ('__code__',)", "dunder_attribute", "__code__"),
    ("slots-computed", "class P:\n    __slots__ = [n for n in 'ab']", "computed_attribute",
     "__slots__"),
    ("enum-functional-computed",
     "from enum import Enum\ndef f(names):\n    return Enum('E', names)", "dynamic_class",
     "Enum"),
    ("enum-functional-dunder-names",
     "import enum\ndef f(g):\n    return enum.Enum('E', [('__reduce_ex__', g), ('A', 1)])",
     "dynamic_class", "enum.Enum"),
    ("enum-functional-names-keyword",
     "from enum import IntEnum\ndef f(n):\n    return IntEnum('E', names=n)", "dynamic_class",
     "IntEnum"),
    ("enum-memberless-base",
     "from enum import Enum\nclass Base(Enum):\n    def g(self):\n        return 1\n"
     "def f(n):\n    return Base('X', n)", "dynamic_class", "Base"),
    ("enum-factory-as-value", "from enum import Enum\ndef f():\n    E = Enum\n    return E",
     "dynamic_class", "enum.Enum"),
    ("enum-create", "from enum import Enum\ndef f(n):\n    return Enum._create_('X', n)",
     "private_attribute", "_create_"),
    ("enum-convert",
     "from enum import IntEnum\nclass E(IntEnum):\n    A = 1\n"
     "def f():\n    return E._convert_('X', 'os', lambda n: n == 'system')",
     "private_attribute", "_convert_"),
    ("forward-ref-evaluate",
     "import typing\ndef f():\n"
     "    r = typing.get_args(typing.List[\"__import__('os')\"])[0]\n"
     "    return r._evaluate({}, {}, frozenset())", "private_attribute", "_evaluate"),
    ("program-defined-dangerous-private",
     "class A:\n    def __init__(self):\n        self._evaluate = 1\n"
     "def f(r):\n    return r._evaluate({}, {}, frozenset())", "private_attribute",
     "_evaluate"),
    ("stdlib-private", "from collections import Counter\ndef f():\n"
     "    return Counter()._keep_positive()", "private_attribute", "_keep_positive"),
    ("stdlib-private-typing", "import typing\ndef f():\n    return typing.List._name",
     "private_attribute", "_name"),
]


@table(COMPUTED)
def test_computed_attribute_names(program: str, rule: str, name: str) -> None:
    assert (rule, name) in violations(program)


# --- format strings that walk attributes and items ---------------------------------------------

FORMATS: list[Attempt] = [
    ("mro-walk", "def f():\n    return '{0.__class__.__mro__}'.format(1)", "format_string",
     "0.__class__.__mro__"),
    ("globals-walk", "def f(g):\n    return '{0.__globals__}'.format(g)", "format_string",
     "0.__globals__"),
    ("auto-numbered", "def f(g):\n    return '{} {.__globals__}'.format(1, g)",
     "format_string", "1.__globals__"),
    ("keyword-field", "def f(g):\n    return '{fn.__globals__[x]}'.format(fn=g)",
     "format_string", "fn.__globals__[x]"),
    ("frame-walk", "def f(g):\n    return '{0.gi_frame.f_back}'.format(g)", "format_string",
     "0.gi_frame.f_back"),
    ("public-walk-of-non-literal", "def f(o):\n    return '{0.real}'.format(o)",
     "format_string", "0.real"),
    ("item-walk-of-non-literal", "def f(d):\n    return '{0[__builtins__]}'.format(d)",
     "format_string", "0[__builtins__]"),
    ("format-map", "def f():\n    return '{x.__class__}'.format_map({'x': 1})",
     "format_string", "x.__class__"),
    ("format-map-non-literal", "def f(d):\n    return '{x.y}'.format_map(d)", "format_string",
     "x.y"),
    ("nested-spec", "def f(g):\n    return '{0:{1.__class__}}'.format(1, g)", "format_string",
     "1.__class__"),
    ("starred-args", "def f(a):\n    return '{0.y}'.format(*a)", "format_string", "0.y"),
    ("kwargs", "def f(k):\n    return '{x.y}'.format(**k)", "format_string", "x.y"),
    ("concat-receiver", "def f():\n    return ('{0.__cl' + 'ass__}').format(1)",
     "format_string", "format"),
    ("variable-receiver", "def f(s):\n    return s.format(1)", "format_string", "format"),
    ("built-receiver", "def f():\n    s = '{0.__cl' + 'ass__}'\n    return s.format(1)",
     "format_string", "format"),
    ("rebound-receiver", "s = '{}'\ns = '{0.__class__}'\ndef f():\n    return s.format(1)",
     "format_string", "format"),
    ("literal-name-with-walk", "T = '{0.x}'\ndef f(o):\n    return T.format(o)",
     "format_string", "format"),
    ("fstring-receiver", "def f():\n    return f'{{0.__class__}}'.format(1)", "format_string",
     "format"),
    ("join-receiver", "def f():\n    return ''.join(['{0.', '__class__}']).format(1)",
     "format_string", "format"),
    ("str.format", "def f():\n    return str.format('{0.__class__}', 1)", "format_string",
     "0.__class__"),
    ("str.format-variable", "def f(t):\n    return str.format(t, 1)", "format_string",
     "format"),
    ("str-rebound", "str = '{0.__class__.__mro__}'\ndef f():\n    return str.format(1)",
     "format_string", "format"),
    ("str.format-value", "def f():\n    m = str.format\n    return m('{0.__class__}', 1)",
     "format_string", "str.format"),
    ("bound-format-as-value", "def f(o):\n    return list(map('{0.x}'.format, [o]))",
     "format_string", "0.x"),
    ("getattr-format", "def f(t):\n    return getattr(t, 'format')(1)", "format_string",
     "format"),
    ("format-map-as-value", "def f(t, d):\n    g = t.format_map\n    return g(d)",
     "format_string", "format_map"),
    ("malformed", "def f():\n    return '{0.}'.format(1)", "format_string",
     "malformed template"),
]


@table(FORMATS)
def test_format_string_walks(program: str, rule: str, name: str) -> None:
    assert (rule, name) in violations(program)


# --- frames, code objects, tracebacks ----------------------------------------------------------

FRAMES: list[Attempt] = [
    ("gi_frame", "def f():\n    g = (x for x in [1])\n    return g.gi_frame.f_back.f_globals",
     "dunder_attribute", "gi_frame"),
    ("f_back", "def f(fr):\n    return fr.f_back", "dunder_attribute", "f_back"),
    ("f_globals", "def f(fr):\n    return fr.f_globals['__builtins__']", "dunder_attribute",
     "f_globals"),
    ("traceback", "def f():\n    try:\n        1 / 0\n    except Exception as e:\n"
     "        return e.__traceback__.tb_frame", "dunder_attribute", "__traceback__"),
    ("exit-traceback", "class C:\n    def __enter__(self):\n        return self\n"
     "    def __exit__(self, t, v, tb):\n        self.fr = tb.tb_frame\n        return True",
     "dunder_attribute", "tb_frame"),
    ("tb_next", "def f(tb):\n    return tb.tb_next", "dunder_attribute", "tb_next"),
    ("cr_frame", "async def g():\n    pass\ndef f():\n    return g().cr_frame",
     "dunder_attribute", "cr_frame"),
    ("ag_frame", "async def g():\n    yield 1\ndef f():\n    return g().ag_frame",
     "dunder_attribute", "ag_frame"),
    ("gi_code", "def f(g):\n    return g.gi_code.co_consts", "dunder_attribute", "gi_code"),
    ("code-object", "def f(g):\n    return g.__code__.co_code", "dunder_attribute", "__code__"),
    ("co_names", "def f(c):\n    return c.co_names", "dunder_attribute", "co_names"),
    ("setattr-code", "def f(g, h):\n    setattr(g, '__code__', h.__code__)",
     "dunder_attribute", "__code__"),
    ("assign-code", "def f(g, h):\n    g.__code__ = h", "dunder_attribute", "__code__"),
    ("assign-defaults", "def f(g):\n    g.__defaults__ = (1,)", "dunder_attribute",
     "__defaults__"),
    ("kwdefaults-of-runner-json",
     "from json import dumps\ndef f(c):\n    dumps.__kwdefaults__['cls'] = c",
     "dunder_attribute", "__kwdefaults__"),
    ("closure-cell", "def f(g):\n    return g.__closure__[0].cell_contents",
     "dunder_attribute", "__closure__"),
    ("cell_contents", "def f(c):\n    return c.cell_contents", "dunder_attribute",
     "cell_contents"),
    ("computed-frame-name", "def f(g):\n    return getattr(g, 'gi_' + 'frame')",
     "computed_attribute", "getattr"),
    ("format-frame", "def f(g):\n    return '{0.gi_frame}'.format(g)", "format_string",
     "0.gi_frame"),
]


@table(FRAMES)
def test_frames_and_code(program: str, rule: str, name: str) -> None:
    assert (rule, name) in violations(program)


# --- builtins, directly and through aliases ----------------------------------------------------

BUILTINS: list[Attempt] = [
    *[(f"call-{b}", f"def f(x):\n    return {b}(x)", "builtin", b)
      for b in ("eval", "exec", "compile", "open", "input", "breakpoint", "help", "memoryview",
                "exit", "quit", "license", "credits", "copyright", "vars", "dir")],
    ("alias", "def f():\n    e = eval\n    return e('1')", "builtin", "eval"),
    ("list-alias", "def f():\n    return [eval][0]('1')", "builtin", "eval"),
    ("default-arg", "def f(e=exec):\n    e('x = 1')", "builtin", "exec"),
    ("lambda", "f = lambda: open('/etc/passwd')", "builtin", "open"),
    ("decorator", "@breakpoint\ndef f(): pass", "builtin", "breakpoint"),
    ("class-body", "class A:\n    o = open\ndef f(): return A.o", "builtin", "open"),
    ("comprehension-iter", "def f():\n    return [x for x in eval('[1]')]", "builtin", "eval"),
    ("walrus", "def f():\n    return (e := eval)('1')", "builtin", "eval"),
    ("module-rebinding-does-not-hide",
     "def f():\n    return compile('1', '', 'eval')\ncompile = len", "builtin", "compile"),
    ("global-declared", "def f():\n    global eval\n    return eval('1')", "builtin", "eval"),
    ("__builtins__-name", "def f():\n    return __builtins__['eval']", "dunder_name",
     "__builtins__"),
    ("__builtins__-attr", "def f():\n    return __builtins__.open", "dunder_name",
     "__builtins__"),
    ("print-self", "def f():\n    return print.__self__.eval", "dunder_attribute", "__self__"),
    ("function-globals",
     "def f():\n    return (lambda: 0).__globals__['__builtins__']", "dunder_attribute",
     "__globals__"),
    ("__build_class__", "def f():\n    return __build_class__", "dunder_name",
     "__build_class__"),
    ("__loader__", "def f():\n    return __loader__.load_module('os')", "dunder_name",
     "__loader__"),
    ("__spec__", "def f():\n    return __spec__", "dunder_name", "__spec__"),
    ("rebind-__builtins__", "__builtins__ = {'len': eval}", "dunder_name", "__builtins__"),
    ("import-as-dunder", "import math as __builtins__", "dunder_name", "__builtins__"),
    ("param-dunder", "def f(__builtins__):\n    return 1", "dunder_name", "__builtins__"),
    ("except-as-dunder",
     "def f():\n    try:\n        pass\n    except Exception as __builtins__:\n        pass",
     "dunder_name", "__builtins__"),
    ("global-dunder", "def f():\n    global __builtins__\n    __builtins__ = {}",
     "dunder_name", "__builtins__"),
    ("class-cell", "class A:\n    def m(self):\n        return __class__", "dunder_name",
     "__class__"),
    ("string-annotation-eval",
     "from functools import singledispatch\n@singledispatch\ndef g(x):\n    return 0\n"
     "@g.register\ndef _(x: \"__import__('os').system('id') or int\"):\n    return 1\n"
     "def f():\n    return g(1)", "builtin", "__import__"),
    ("string-annotation-module", "x: \"eval('1')\" = 1", "builtin", "eval"),
    ("string-annotation-return", "def f() -> \"open('/etc/passwd')\":\n    pass", "builtin",
     "open"),
    ("string-annotation-nested", "def f(x: \"'eval(1)'\"):\n    pass", "builtin", "eval"),
    ("string-annotation-starred", "def f(*x: \"*eval('1')\"):\n    pass", "builtin", "eval"),
    ("string-annotation-dunder", "def f(x: \"(1).__class__\"):\n    pass", "dunder_attribute",
     "__class__"),
    ("string-annotation-too-deep", "def f(x: \"'\\\"\\\\'x\\\\'\\\"'\"):\n    pass",
     "string_annotation", "x"),
    ("future-annotations-code",
     "from __future__ import annotations\ndef f(x: eval('1')):\n    pass", "builtin", "eval"),
]


@table(BUILTINS)
def test_builtins(program: str, rule: str, name: str) -> None:
    assert (rule, name) in violations(program)


# --- classes from computed names: type, metaclasses --------------------------------------------

CLASSES: list[Attempt] = [
    ("three-argument-type", "def f():\n    return type('X', (), {'y': 1})", "dynamic_class",
     "type"),
    ("type-alias", "def f():\n    t = type\n    return t('X', (), {})", "dynamic_class",
     "type"),
    ("type-starred", "def f(a):\n    return type(*a)", "dynamic_class", "type"),
    ("type-generic-alias", "def f():\n    return type[int]('X', (), {})", "dynamic_class",
     "type"),
    ("type-partial", "import functools\ndef f():\n    return functools.partial(type, 'X')",
     "dynamic_class", "type"),
    ("metaclass-call", "def f():\n    return type(int)('X', (), {})", "dynamic_class", "type"),
    ("metaclass-escapes", "def f():\n    T = type(int)\n    return T", "dynamic_class", "type"),
    ("metaclass-returned", "def f(c):\n    return type(c)", "dynamic_class", "type"),
    ("metaclass-in-list", "def f(c):\n    return [type(c)][0]", "dynamic_class", "type"),
    ("metaclass-mro", "def f():\n    return type(int).mro()[0]", "dynamic_class", "type"),
    ("metaclass-subclass", "class M(type):\n    pass", "dynamic_class", "metaclass"),
    ("metaclass-keyword", "class M:\n    pass\nclass A(metaclass=M):\n    pass",
     "dynamic_class", "metaclass"),
    ("metaclass-lambda", "class A(metaclass=lambda n, b, d: d):\n    pass", "dynamic_class",
     "metaclass"),
    ("abcmeta-call", "from abc import ABCMeta\ndef f():\n    return ABCMeta('X', (), {})",
     "dynamic_class", "abc.ABCMeta"),
    ("abcmeta-subclass", "import abc\nclass M(abc.ABCMeta):\n    pass", "dynamic_class",
     "metaclass"),
    ("type-annotation", "def f(x: type):\n    return x", "dynamic_class", "type"),
    ("type-string-annotation", "def f(x: 'type'):\n    return x", "dynamic_class", "type"),
    ("type-in-typing-subscript", "import typing\ndef f():\n    return typing.List[type]",
     "dynamic_class", "type"),
    ("subclasses", "def f():\n    return object.__subclasses__()", "dunder_attribute",
     "__subclasses__"),
    ("str-dict", "def f():\n    return str.__dict__", "dunder_attribute", "__dict__"),
    ("mro-then-subclasses", "def f(x):\n    return x.mro()[-1].__subclasses__()",
     "dunder_attribute", "__subclasses__"),
    ("class-bases", "def f():\n    return ().__class__.__bases__[0]", "dunder_attribute",
     "__class__"),
    ("super-thisclass", "class A:\n    def m(self):\n        return super().__thisclass__",
     "dunder_attribute", "__thisclass__"),
    ("super-self", "def f():\n    return super(int, 1).__self__", "dunder_attribute",
     "__self__"),
    ("super-getattribute",
     "class A:\n    def m(self):\n        return super().__getattribute__('x')",
     "dunder_attribute", "__getattribute__"),
    ("type-new", "def f():\n    return int.__new__(int)", "dunder_attribute", "__new__"),
    ("type-call-dunder", "def f():\n    return int.__call__", "dunder_attribute", "__call__"),
    ("reduce-ex-call", "def f():\n    return (1).__reduce_ex__(2)", "dunder_attribute",
     "__reduce_ex__"),
    ("reduce-call", "def f(x):\n    return x.__reduce__()", "dunder_attribute", "__reduce__"),
    ("init-subclass-call", "class A:\n    def m(self):\n        super().__init_subclass__()",
     "dunder_attribute", "__init_subclass__"),
]


@table(CLASSES)
def test_dynamic_classes_and_class_graph(program: str, rule: str, name: str) -> None:
    assert (rule, name) in violations(program)


HOOKS: list[Attempt] = [
    *[(f"def-{hook}", f"class A:\n    def {hook}(self, *a):\n        return 1", "dunder_method",
       hook)
      for hook in ("__init_subclass__", "__class_getitem__", "__set_name__", "__get__",
                   "__set__", "__delete__", "__reduce__", "__reduce_ex__", "__getstate__",
                   "__setstate__", "__getnewargs__", "__getnewargs_ex__", "__del__",
                   "__getattribute__", "__instancecheck__", "__subclasscheck__",
                   "__prepare__", "__mro_entries__", "__dir__", "__sizeof__")],
    ("module-getattr", "def __getattr__(name):\n    return name", "dunder_method",
     "__getattr__"),
    ("module-level-init", "def __init__(self):\n    pass", "dunder_method", "__init__"),
    ("class-body-assign-reduce", "class A:\n    __reduce_ex__ = lambda self, p: (eval, ('1',))",
     "dunder_name", "__reduce_ex__"),
    ("class-body-assign-init-subclass",
     "class A:\n    __init_subclass__ = classmethod(lambda cls: None)", "dunder_name",
     "__init_subclass__"),
    ("assign-class", "class A:\n    pass\ndef f(x):\n    x.__class__ = A", "dunder_attribute",
     "__class__"),
]


@table(HOOKS)
def test_interpreter_hooks(program: str, rule: str, name: str) -> None:
    assert (rule, name) in violations(program)


# --- patching what is not the program's --------------------------------------------------------

FOREIGN: list[Attempt] = [
    ("math.pi", "import math\nmath.pi = 3", "foreign_assignment", "math.pi"),
    ("json.dumps", "import json\njson.dumps = lambda *a, **k: '1'", "foreign_assignment",
     "json.dumps"),
    ("json.dumps-in-function", "import json\ndef f(g):\n    json.dumps = g",
     "foreign_assignment", "json.dumps"),
    ("json.dumps-augmented", "import json\ndef f():\n    json.dumps += 1", "foreign_assignment",
     "json.dumps"),
    ("json.dumps-alias", "import json as j\nj.dumps = print", "foreign_assignment",
     "json.dumps"),
    ("del-json.dumps", "import json\ndel json.dumps", "foreign_assignment", "json.dumps"),
    ("setattr-json", "import json\ndef f(g):\n    setattr(json, 'dumps', g)",
     "foreign_assignment", "json.dumps"),
    ("for-target", "import json\ndef f(g):\n    for json.dumps in [g]:\n        pass",
     "foreign_assignment", "json.dumps"),
    ("unknown-member", "import math\nmath.anything = 1", "foreign_assignment",
     "math.anything"),
    ("int.x", "int.x = 1", "foreign_assignment", "int.x"),
    ("str-method", "def f():\n    str.upper = str.lower", "foreign_assignment", "str.upper"),
    ("print-attribute", "print.x = 1", "foreign_assignment", "print.x"),
    ("imported-function", "from json import dumps\ndumps.x = 1", "foreign_assignment",
     "dumps.x"),
    ("imported-class", "from collections import Counter\nCounter.most_common = len",
     "foreign_assignment", "Counter.most_common"),
    ("module-class", "import collections\ncollections.Counter.update = len",
     "foreign_assignment", "collections.Counter.update"),
    ("typing-alias-origin", "import typing\ntyping.List.x = 1", "foreign_assignment",
     "typing.List.x"),
    ("decimal-default-context", "import decimal\ndecimal.DefaultContext.prec = 1",
     "foreign_assignment", "decimal.DefaultContext.prec"),
    ("object-setattr-foreign",
     "from collections import Counter\ndef f():\n    object.__setattr__(Counter, 'x', 1)",
     "foreign_assignment", "Counter.x"),
    ("re.compile", "import re\nre.compile = lambda p: p", "foreign_assignment", "re.compile"),
    ("alias-of-imported-class",
     "from collections import Counter\nC = Counter\ndef f():\n    C.most_common = len",
     "foreign_assignment", "C.most_common"),
    ("alias-of-module-member", "import collections\ndef f():\n    C = collections.Counter\n"
     "    C.update = len", "foreign_assignment", "C.update"),
    ("alias-of-builtin", "def f():\n    i = int\n    i.x = 1", "foreign_assignment", "i.x"),
    ("tuple-alias", "from collections import Counter, deque\ndef f():\n"
     "    a, b = Counter, deque\n    b.x = 1", "foreign_assignment", "b.x"),
    ("walrus-alias", "from json import dumps\ndef f():\n    if (d := dumps):\n        d.x = 1",
     "foreign_assignment", "d.x"),
    ("display-holder", "from collections import Counter\ndef f():\n    [Counter][0].x = 1",
     "foreign_assignment", "...[...].x"),
    ("module-as-value", "import json\ndef f():\n    m = json\n    m.dumps = print",
     "module_value", "json"),
    ("module-passed", "import json\ndef f(g):\n    g(json)", "module_value", "json"),
    ("submodule-as-value", "import collections.abc\nx = collections.abc", "module_value",
     "collections.abc"),
]


@table(FOREIGN)
def test_foreign_assignment(program: str, rule: str, name: str) -> None:
    assert (rule, name) in violations(program)


# --- scoping tricks that hide what a name is --------------------------------------------------

SCOPING: list[Attempt] = [
    ("class-body-import", "class A:\n    import json\ndef f():\n    return A.json.codecs",
     "import_in_class", "json"),
    ("class-body-import-restricted",
     "class A:\n    from functools import wraps\n"
     "def f(g):\n    return A.wraps(g, assigned=('__globals__',))", "import_in_class",
     "functools"),
    ("class-body-import-abcmeta",
     "class A:\n    from abc import ABCMeta\ndef f():\n    return A.ABCMeta('X', (), {})",
     "import_in_class", "abc"),
    ("global-declared-import",
     "def g():\n    global json\n    import json\ng()\ndef f():\n    return json.codecs",
     "module_member", "json.codecs"),
    ("nonlocal-declared-import",
     "def f():\n    json = 1\n    def inner():\n        nonlocal json\n        import json\n"
     "    inner()\n    return json.codecs", "module_member", "json.codecs"),
    ("nonlocal-chain-import",
     "def f():\n    json = 1\n    def mid():\n        nonlocal json\n"
     "        def inner():\n            nonlocal json\n            import json\n"
     "        inner()\n    mid()\n    return json.codecs", "module_member", "json.codecs"),
    ("global-declared-patch",
     "def g():\n    global json\n    import json\ng()\njson.dumps = print",
     "foreign_assignment", "json.dumps"),
    ("shadowed-parameter-is-not-the-module",
     "import json\ndef f(json):\n    return json\ndef g():\n    return json",
     "module_value", "json"),
    ("comprehension-alias", "import json\ndef f():\n    return [m.codecs for m in [json]]",
     "module_value", "json"),
    ("match-capture-alias",
     "import json\ndef f():\n    match json:\n        case m:\n            return m.codecs",
     "module_value", "json"),
    ("with-alias", "import json, contextlib\ndef f():\n"
     "    with contextlib.nullcontext(json) as m:\n        return m.codecs", "module_value",
     "json"),
    ("default-alias", "import json\ndef f(m=json):\n    return m.codecs", "module_value",
     "json"),
    ("singledispatch", "from functools import singledispatch", "module_member",
     "functools.singledispatch"),
    ("singledispatch-typeddict-gadget",
     "import functools, typing\nT = typing.TypedDict('T', {'x': \"__import__('os') and int\"})\n"
     "def w(x):\n    pass\nfunctools.update_wrapper(w, T)\n"
     "functools.singledispatch(len).register(w)", "module_member", "functools.singledispatch"),
]


@table(SCOPING)
def test_scoping_tricks(program: str, rule: str, name: str) -> None:
    assert (rule, name) in violations(program)


# --- type(C) is the metaclass when C is a class: it must not reach program code ----------------

TYPE_LEAKS: list[Attempt] = [
    ("subscript-key", "class D(dict):\n    def __missing__(self, k):\n        return k\n"
     "def f():\n    return D()[type(int)]", "dynamic_class", "type"),
    ("reflected-eq", "class E:\n    def __eq__(self, o):\n        self.o = o\n"
     "        return True\ndef f(e):\n    return type(int) == e", "dynamic_class", "type"),
    ("contains-hook", "def f(c):\n    return type(int) in c", "dynamic_class", "type"),
    ("method-argument", "def f(d):\n    return d.get(type(int))", "dynamic_class", "type"),
    ("one-argument-metaclass-call", "def f():\n    return type(int)(int)", "dynamic_class",
     "type"),
    ("starred-metaclass-call", "def f(a):\n    return type(int)(*a)", "dynamic_class",
     "type"),
    ("kwargs-metaclass-call", "def f(k):\n    return type(int)('X', **k)", "dynamic_class",
     "type"),
    ("yielded", "def f():\n    yield type(int)", "dynamic_class", "type"),
    ("lambda-returned", "f = lambda c: type(c)", "dynamic_class", "type"),
    ("bool-context", "def f(c):\n    if type(c):\n        return 1", "dynamic_class", "type"),
    ("class-base", "class A(type(int)):\n    pass", "dynamic_class", "type"),
]


@table(TYPE_LEAKS)
def test_metaclass_leaks(program: str, rule: str, name: str) -> None:
    assert (rule, name) in violations(program)


def test_every_table_is_a_distinct_attempt() -> None:
    ids = [a[0] for t in (REEXPORTS, IMPORTS, COMPUTED, FORMATS, FRAMES, BUILTINS, CLASSES,
                          HOOKS, FOREIGN, SCOPING, TYPE_LEAKS) for a in t]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 250
