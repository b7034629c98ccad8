"""The static, AST-based safety policies (docs/design.md §6).

`check_program` parses a program, never runs it, and reports every rule it breaks under the named
policy: `azr` (the default) is an allow-list of what AZR's tasks need (`policy_rules`,
`policy_tables`); `permissive` refuses nothing. Either way the sandbox is the security boundary
and holds without the policy; `azr` keeps proposals inside what a self-play task needs and leaves
an audit trail of what was refused.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

from azr_verify.service.models import PolicyName, Violation
from azr_verify.service.verify.policy_rules import azr_violations
from azr_verify.service.verify.syntax import check_scopes, context_error


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
    try:
        violations = azr_violations(tree) if policy is PolicyName.AZR else ()
    except (RecursionError, MemoryError):  # the rules are iterative; this is a safety net
        return ProgramCheck(syntax_error="the program is too deeply nested", violations=(),
                            has_entry=False)
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
        # What only the bytecode compiler would refuse, found without compiling (see syntax.py
        # for why the trusted process must not call compile on untrusted text).
        misplaced = context_error(tree)
        if misplaced is not None:
            line, message = misplaced
            return None, f"line {line}: {message}"
        check_scopes(source)
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
