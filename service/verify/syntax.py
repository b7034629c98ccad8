"""Syntax checks for untrusted programs in linear time (docs/design.md §6).

`ast.parse` misses what only CPython's bytecode compiler refuses: `return` outside a function,
`nonlocal` without a binding, a parameter named twice, ... Calling `compile` would find those,
but CPython 3.11's compiler is not linear in its input: code objects that are equal but for
their line numbers collide in its constants table (320 KB of `f = lambda a: a` compiles in
about 10 s, 640 KB in 50 s), and deeply nested closures cost it time quadratic in the depth.
The service checks every distinct program in its own process, so it compiles nothing:

  * `symtable.symtable` (CPython's own scope analysis, linear) finds the scope errors;
  * `context_error` below finds `return`/`yield`/`await`/`break`/`continue` used where they
    cannot be, and nesting deeper than MAX_SCOPE_DEPTH (which keeps the scope analysis linear).

What remains for the compiler alone (e.g. more than 20 nested blocks, `return` in `except*`)
is reported by the sandbox, as a runtime_error of type SyntaxError.
"""

from __future__ import annotations

import ast
import symtable
from dataclasses import dataclass
from enum import Enum
from typing import Final

from azr_verify.service.verify.policy_scopes import COMPREHENSIONS, child_nodes, split_children

# Functions, lambdas, classes and comprehensions nested deeper than this are refused: no real
# program comes close, and CPython's scope analysis is quadratic in the depth.
MAX_SCOPE_DEPTH: Final = 100

_LOOPS = (ast.For, ast.AsyncFor, ast.While)
_CONTEXTUAL = frozenset({ast.Return, ast.Break, ast.Continue, ast.Yield, ast.YieldFrom,
                         ast.Await, ast.AsyncFor, ast.AsyncWith})


class _Kind(Enum):
    MODULE = "module"
    CLASS = "class"
    FUNCTION = "function"
    ASYNC_FUNCTION = "async function"
    COMPREHENSION = "comprehension"


@dataclass(frozen=True)
class _Context:
    kind: _Kind  # the innermost scope
    function: _Kind  # the innermost scope that is not a comprehension
    in_loop: bool
    depth: int


def check_scopes(source: str) -> None:
    """Raises SyntaxError for the scope errors CPython's symbol table finds."""
    symtable.symtable(source, "<program>", "exec")


def context_error(tree: ast.Module) -> tuple[int, str] | None:
    """The first (line, message) of a statement or expression out of its context, if any."""
    found: list[tuple[int, str]] = []
    start = _Context(_Kind.MODULE, _Kind.MODULE, in_loop=False, depth=0)
    todo: list[tuple[ast.AST, _Context]] = [(tree, start)]
    while todo:
        node, context = todo.pop()
        if type(node) in _CONTEXTUAL:
            message = _misplaced(node, context)
            if message is not None:
                found.append((getattr(node, "lineno", 0), message))
        split = split_children(node)
        if split is not None:
            inner = _inner_context(node, context)
            if inner.depth > MAX_SCOPE_DEPTH:
                return (getattr(node, "lineno", 0),
                        f"functions, lambdas, classes or comprehensions nested more than "
                        f"{MAX_SCOPE_DEPTH} deep")
            outside, inside = split
            todo.extend((child, context) for child in outside)
            todo.extend((child, inner) for child in inside)
        elif isinstance(node, _LOOPS):
            todo.append((node.target if not isinstance(node, ast.While) else node.test,
                         context))
            if not isinstance(node, ast.While):
                todo.append((node.iter, context))
            loop = _Context(context.kind, context.function, in_loop=True, depth=context.depth)
            todo.extend((child, loop) for child in node.body)
            todo.extend((child, context) for child in node.orelse)  # break leaves the outer
        else:
            todo.extend((child, context) for child in child_nodes(node))
    return min(found) if found else None


def _inner_context(node: ast.AST, outer: _Context) -> _Context:
    depth = outer.depth + 1
    if isinstance(node, ast.ClassDef):
        return _Context(_Kind.CLASS, _Kind.CLASS, in_loop=False, depth=depth)
    if isinstance(node, ast.GeneratorExp):  # `await` in it makes it an async generator
        return _Context(_Kind.COMPREHENSION, _Kind.ASYNC_FUNCTION, in_loop=False, depth=depth)
    if isinstance(node, COMPREHENSIONS):
        return _Context(_Kind.COMPREHENSION, outer.function, in_loop=False, depth=depth)
    kind = _Kind.ASYNC_FUNCTION if isinstance(node, ast.AsyncFunctionDef) else _Kind.FUNCTION
    return _Context(kind, kind, in_loop=False, depth=depth)


def _misplaced(node: ast.AST, context: _Context) -> str | None:
    in_function = context.function in (_Kind.FUNCTION, _Kind.ASYNC_FUNCTION)
    if isinstance(node, ast.Return) and context.kind not in (_Kind.FUNCTION,
                                                             _Kind.ASYNC_FUNCTION):
        return "'return' outside function"
    if isinstance(node, ast.Break) and not context.in_loop:
        return "'break' outside loop"
    if isinstance(node, ast.Continue) and not context.in_loop:
        return "'continue' not properly in loop"
    if isinstance(node, ast.Yield | ast.YieldFrom):
        if context.kind is _Kind.COMPREHENSION:
            return "'yield' inside comprehension"
        if not in_function:
            return "'yield' outside function"
        if isinstance(node, ast.YieldFrom) and context.function is _Kind.ASYNC_FUNCTION:
            return "'yield from' inside async function"
    if isinstance(node, ast.Await) and context.function is not _Kind.ASYNC_FUNCTION:
        return "'await' outside async function" if in_function else "'await' outside function"
    if (isinstance(node, ast.AsyncFor | ast.AsyncWith)
            and context.function is not _Kind.ASYNC_FUNCTION):
        statement = "async for" if isinstance(node, ast.AsyncFor) else "async with"
        return f"'{statement}' outside async function"
    return None
