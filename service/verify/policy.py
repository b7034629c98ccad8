"""The static, AST-based safety policy (docs/design.md §6).

`check_program` parses a program, never runs it, and reports every rule it breaks. The policy is
task hygiene and an audit trail: it keeps sources of nondeterminism and obvious escapes out of
self-play tasks. The sandbox is the security boundary and holds without it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from azr_verify.service.models import PolicyName, Violation

ALLOWED_MODULES: frozenset[str] = frozenset({
    "__future__", "math", "cmath", "collections", "itertools", "functools", "operator", "heapq",
    "bisect", "string", "re", "typing", "dataclasses", "enum", "fractions", "decimal",
    "statistics", "copy", "numbers", "array", "abc", "textwrap", "unicodedata", "json",
    "keyword", "contextlib",
})

DENIED_MODULES: frozenset[str] = frozenset({
    # nondeterminism: clocks, randomness, hashing of addresses, scheduling
    "random", "_random", "secrets", "uuid", "time", "datetime", "calendar", "hashlib", "hmac",
    "logging", "threading", "_thread", "multiprocessing", "concurrent", "asyncio", "gc",
    # the process, the machine and the interpreter's internals
    "subprocess", "os", "posix", "sys", "shutil", "socket", "select", "signal", "resource",
    "mmap", "ctypes", "importlib", "pathlib", "io", "_io", "tempfile", "inspect", "builtins",
    "pickle", "marshal", "code", "codeop", "pty", "fcntl", "platform", "runpy", "pkgutil",
    "zipimport", "site", "sysconfig",
    # the network
    "urllib", "http", "ftplib", "smtplib",
})

DENIED_BUILTINS: frozenset[str] = frozenset({
    "open", "exec", "eval", "compile", "__import__", "input", "breakpoint", "globals", "locals",
    "vars", "help", "exit", "quit",
})

# Attributes that reach frames, code objects, globals, the class graph or the pickle protocol.
# Ordinary dunders (__init__, __name__, __len__, ...) are not here.
DENIED_ATTRIBUTES: frozenset[str] = frozenset({
    "__globals__", "__subclasses__", "__builtins__", "__code__", "__closure__", "__func__",
    "__self__", "__dict__", "__class__", "__bases__", "__base__", "__mro__", "__getattribute__",
    "__import__", "__loader__", "__spec__", "__frame__", "__defaults__", "__kwdefaults__",
    "__objclass__", "__traceback__", "__reduce__", "__reduce_ex__", "__init_subclass__",
    "f_globals", "f_locals", "f_back", "f_builtins", "f_code", "gi_frame", "gi_code",
    "cr_frame", "cr_code", "ag_frame", "ag_code", "co_code", "tb_frame", "tb_next",
})

DENIED_NAMES: frozenset[str] = frozenset({
    "__builtins__", "__loader__", "__spec__", "__build_class__",
})

# Calls that take an attribute name as a string (attrgetter also takes dotted paths).
_ATTRIBUTE_NAME_CALLS = frozenset({"getattr", "setattr", "delattr", "attrgetter", "methodcaller"})

_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


@dataclass(frozen=True)
class ProgramCheck:
    """What the static checks found in a program."""

    syntax_error: str | None
    violations: tuple[Violation, ...]
    has_entry: bool


def check_program(source: str, policy: PolicyName = PolicyName.AZR,
                  entry: str = "f") -> ProgramCheck:
    """Parses `source` (never runs it) and applies the named policy."""
    policy = PolicyName(policy)
    tree, error = _parse_program(source)
    if tree is None:
        return ProgramCheck(syntax_error=error, violations=(), has_entry=False)
    violations = _violations(tree) if policy is PolicyName.AZR else ()
    return ProgramCheck(syntax_error=None, violations=violations,
                        has_entry=entry in _module_bindings(tree.body))


def _parse_program(source: object) -> tuple[ast.Module | None, str | None]:
    if not isinstance(source, str):
        return None, f"the program must be text, not {type(source).__name__}"
    nul = source.find("\0")
    if nul >= 0:
        return None, f"line {source.count(chr(10), 0, nul) + 1}: the program contains a NUL byte"
    try:
        tree = ast.parse(source, filename="<program>")
        # Compiling (not running) also catches what the parser lets through: `return` outside a
        # function, `nonlocal` at module level, a name both parameter and global, ...
        compile(tree, "<program>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        return None, _syntax_message(exc)
    except (RecursionError, MemoryError):
        return None, "the program is too deeply nested"
    except (ValueError, OverflowError) as exc:  # e.g. lone surrogates that cannot be encoded
        return None, f"the program cannot be parsed: {exc}"
    return tree, None


def _syntax_message(exc: SyntaxError) -> str:
    where = f"line {exc.lineno}" if exc.lineno else "unknown line"
    if exc.lineno and exc.offset:
        where += f", column {exc.offset}"
    return f"{where}: {exc.msg}"


# --- has_entry ---------------------------------------------------------------------------------

def _module_bindings(statements: list[ast.stmt]) -> set[str]:
    """Names a module binds at its top level, also inside if/try/with/for/while/match blocks."""
    names: set[str] = set()
    todo = list(statements)
    while todo:
        statement = todo.pop()
        names.update(_statement_bindings(statement))
        todo.extend(_nested_statements(statement))
    return names


def _statement_bindings(statement: ast.stmt) -> Iterator[str]:
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        yield statement.name
    elif isinstance(statement, ast.Assign):
        for target in statement.targets:
            yield from _target_names(target)
    elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
        yield from _target_names(statement.target)
    elif isinstance(statement, ast.Import | ast.ImportFrom):
        yield from (_alias_binding(alias) for alias in statement.names if alias.name != "*")


def _target_names(target: ast.expr) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Tuple | ast.List):
        for element in target.elts:
            yield from _target_names(element)
    elif isinstance(target, ast.Starred):
        yield from _target_names(target.value)


def _alias_binding(alias: ast.alias) -> str:
    return alias.asname or alias.name.split(".")[0]


def _nested_statements(statement: ast.stmt) -> Iterator[ast.stmt]:
    """The statements of a compound statement's blocks that still run at module scope."""
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return
    for name in ("body", "orelse", "finalbody"):
        yield from getattr(statement, name, ())
    for block in getattr(statement, "handlers", ()):
        yield from block.body
    for case in getattr(statement, "cases", ()):
        yield from case.body


# --- scopes: which names refer to builtins -----------------------------------------------------

@dataclass(eq=False)
class _Scope:
    kind: str  # "module", "class", "function" or "comprehension"
    parent: _Scope | None
    bound: set[str] = field(default_factory=set)
    declared_global: set[str] = field(default_factory=set)
    declared_nonlocal: set[str] = field(default_factory=set)

    def binding_scope(self) -> _Scope:
        """Where an assignment expression (:=) binds: the nearest non-comprehension scope."""
        scope = self
        while scope.kind == "comprehension" and scope.parent is not None:
            scope = scope.parent
        return scope

    def may_reach_builtins(self, name: str) -> bool:
        """False when the name surely refers to a function-local variable, not a builtin.

        Only function and comprehension scopes count: their locals are decided statically. A
        module or class binding need not have happened yet when the name is looked up, so it
        does not hide the builtin.
        """
        if name in self.declared_nonlocal:
            return False
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.declared_global:
                return True
            if scope.kind in ("function", "comprehension") and name in scope.bound:
                return False
            scope = scope.parent
            while scope is not None and scope.kind == "class":  # invisible to nested scopes
                scope = scope.parent
        return True


def _scoped_nodes(tree: ast.Module) -> Iterator[tuple[ast.AST, _Scope]]:
    """Every node with the scope its names are looked up in; iterative, trees can be deep."""
    todo: list[tuple[ast.AST, _Scope]] = [(tree, _Scope("module", None))]
    while todo:
        node, scope = todo.pop()
        yield node, scope
        todo.extend(_children(node, scope))


def _children(node: ast.AST, scope: _Scope) -> list[tuple[ast.AST, _Scope]]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        inner = _Scope("function", scope, bound=set(_parameter_names(node.args)))
        outer = _argument_expressions(node.args)
        if not isinstance(node, ast.Lambda):
            outer += [*node.decorator_list, *([node.returns] if node.returns else [])]
        body = node.body if isinstance(node.body, list) else [node.body]
        return _pair(outer, scope) + _pair(body, inner)
    if isinstance(node, ast.ClassDef):
        outer = [*node.decorator_list, *node.bases, *node.keywords]
        return _pair(outer, scope) + _pair(node.body, _Scope("class", scope))
    if isinstance(node, _COMPREHENSIONS):
        # The first iterable is evaluated in the enclosing scope, the rest in the comprehension.
        first, *rest = node.generators
        inner = _Scope("comprehension", scope)
        elements = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        inside = [first.target, *first.ifs, *rest, *elements]
        return _pair([first.iter], scope) + _pair(inside, inner)
    if isinstance(node, ast.NamedExpr):  # the target is bound by _record_binding
        return [(node.value, scope)]
    return _pair(ast.iter_child_nodes(node), scope)


def _pair(nodes: Iterable[ast.AST], scope: _Scope) -> list[tuple[ast.AST, _Scope]]:
    return [(node, scope) for node in nodes]


def _parameter_names(arguments: ast.arguments) -> Iterator[str]:
    for argument in _parameters(arguments):
        yield argument.arg


def _parameters(arguments: ast.arguments) -> list[ast.arg]:
    optional = [arguments.vararg, arguments.kwarg]
    return [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
            *(argument for argument in optional if argument is not None)]


def _argument_expressions(arguments: ast.arguments) -> list[ast.AST]:
    """Defaults and annotations: evaluated where the function is defined."""
    annotations = [p.annotation for p in _parameters(arguments) if p.annotation]
    defaults = [d for d in (*arguments.defaults, *arguments.kw_defaults) if d is not None]
    return [*defaults, *annotations]


def _record_binding(node: ast.AST, scope: _Scope) -> None:
    if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
        scope.bound.add(node.id)
    elif isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
        scope.binding_scope().bound.add(node.target.id)
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        scope.bound.add(node.name)
    elif isinstance(node, ast.Import | ast.ImportFrom):
        scope.bound.update(_alias_binding(a) for a in node.names if a.name != "*")
    elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
        scope.bound.add(node.name)
    elif isinstance(node, ast.MatchMapping) and node.rest:
        scope.bound.add(node.rest)
    elif isinstance(node, ast.Global):
        scope.declared_global.update(node.names)
    elif isinstance(node, ast.Nonlocal):
        scope.declared_nonlocal.update(node.names)


# --- the azr policy ----------------------------------------------------------------------------

def _violations(tree: ast.Module) -> tuple[Violation, ...]:
    found: set[Violation] = set()
    builtin_loads: list[tuple[ast.Name, _Scope]] = []
    for node, scope in _scoped_nodes(tree):
        _record_binding(node, scope)
        found.update(_node_violations(node))
        if (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
                and node.id in DENIED_BUILTINS):
            builtin_loads.append((node, scope))
    # Resolved only now: a function's locals include names bound after the use.
    found.update(Violation(rule="builtin", name=node.id, line=node.lineno)
                 for node, scope in builtin_loads if scope.may_reach_builtins(node.id))
    return tuple(sorted(found, key=lambda v: (v.line, v.rule, v.name)))


def _node_violations(node: ast.AST) -> Iterator[Violation]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield from _import_violation(alias.name, node.lineno)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            name = "." * node.level + (node.module or "")
            yield Violation(rule="import_relative", name=name, line=node.lineno)
        else:
            yield from _import_violation(node.module or "", node.lineno)
    elif isinstance(node, ast.Attribute) and node.attr in DENIED_ATTRIBUTES:
        yield Violation(rule="dunder_attribute", name=node.attr, line=node.lineno)
    elif isinstance(node, ast.Name) and node.id in DENIED_NAMES:
        yield Violation(rule="dunder_name", name=node.id, line=node.lineno)
    elif isinstance(node, ast.Call):
        yield from _attribute_name_violations(node)


def _import_violation(module: str, line: int) -> Iterator[Violation]:
    top = module.split(".")[0]
    if top in ALLOWED_MODULES:
        return
    rule = "import_denied" if top in DENIED_MODULES else "import_unknown"
    yield Violation(rule=rule, name=module, line=line)


def _attribute_name_violations(call: ast.Call) -> Iterator[Violation]:
    """`getattr(x, '__globals__')`, `attrgetter('f.__code__')` and the like."""
    function = call.func
    name = function.id if isinstance(function, ast.Name) else getattr(function, "attr", None)
    if name not in _ATTRIBUTE_NAME_CALLS:
        return
    for argument in call.args:
        if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
            for part in argument.value.split("."):
                if part.strip() in DENIED_ATTRIBUTES:
                    yield Violation(rule="dunder_attribute", name=part.strip(),
                                    line=argument.lineno)
