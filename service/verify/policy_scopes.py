"""Which binding a name refers to: the scope analysis behind the `azr` policy (docs/design.md §6).

CPython decides at compile time whether a name in a function is local, free or global. This
module repeats those rules on the AST (first pass), so that the rules (second pass) know for every
name whether it may be a builtin, an imported module, a member imported from a module, or only
something the program bound itself. It also collects the facts the rules need about the whole
program: the attribute names it defines and the string constants its names are bound to.

Both passes walk the tree with explicit stacks: a deeply nested program costs memory, never a
RecursionError.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

from azr_verify.service.verify.policy_tables import ALLOWED_MODULES

COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
SCOPE_NODES = frozenset({*COMPREHENSIONS, *FUNCTIONS, ast.ClassDef})

# Fields that never hold a node (names, operators, contexts, flags): skipped by child_nodes.
_LEAF_FIELDS = frozenset({"ctx", "op", "ops", "id", "attr", "arg", "name", "asname", "rest",
                          "kwd_attrs", "kind", "type_comment", "level", "module", "is_async",
                          "conversion", "simple", "tag"})
_CHILD_FIELDS: dict[type, tuple[str, ...]] = {}


def child_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """The direct children of a node, like ast.iter_child_nodes but without contexts and
    operators, and with the fields to look at cached per node type (this runs for every node
    of every program)."""
    fields = _CHILD_FIELDS.get(type(node))
    if fields is None:
        fields = _CHILD_FIELDS[type(node)] = tuple(
            f for f in node._fields if f not in _LEAF_FIELDS)
    for name in fields:
        value = getattr(node, name, None)
        if isinstance(value, ast.AST):
            yield value
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, ast.AST):
                    yield item


class ScopeKind(Enum):
    MODULE = "module"
    CLASS = "class"
    FUNCTION = "function"
    COMPREHENSION = "comprehension"


class Source(Enum):
    """Where a name's value comes from, when it is not an import."""

    PROGRAM = "program"  # bound by the program: def, class, assignment, parameter, loop, ...
    BUILTIN = "builtin"  # not bound where it is looked up: a builtin, or a NameError


@dataclass(frozen=True)
class ImportedModule:
    module: str  # "collections.abc"


@dataclass(frozen=True)
class ImportedMember:
    module: str
    name: str


Origin = Source | ImportedModule | ImportedMember


@dataclass(eq=False)
class Scope:
    kind: ScopeKind
    parent: Scope | None
    class_name: str | None = None  # the class whose body this is, or that encloses it
    bindings: dict[str, set[Origin]] = field(default_factory=dict)
    declared_global: set[str] = field(default_factory=set)
    declared_nonlocal: set[str] = field(default_factory=set)
    _resolved: dict[str, frozenset[Origin]] = field(default_factory=dict)

    def bind(self, name: str, origin: Origin) -> None:
        self.bindings.setdefault(name, set()).add(origin)

    def binding_scope(self) -> Scope:
        """Where an assignment expression (:=) binds: the nearest non-comprehension scope."""
        scope = self
        while scope.kind is ScopeKind.COMPREHENSION and scope.parent is not None:
            scope = scope.parent
        return scope

    def origins(self, name: str) -> frozenset[Origin]:
        """Everything `name`, loaded in this scope, may refer to.

        A module or class binding need not have happened yet when the name is looked up, so it
        does not hide the builtin; a function's (or comprehension's) locals are decided
        statically and do. Iterative: scopes can nest as deep as the parser allows.
        """
        waiting: list[tuple[Scope, frozenset[Origin]]] = []  # scopes that add to the answer
        scope = self
        while True:
            known = scope._resolved.get(name)
            if known is not None:
                result = known
                break
            local = frozenset(scope.bindings.get(name, ()))
            if scope.kind is ScopeKind.MODULE:
                result = local | {Source.BUILTIN}
                scope._resolved[name] = result
                break
            if name in scope.declared_global:
                waiting.append((scope, frozenset()))
                scope = scope._module()
            elif scope.kind is ScopeKind.CLASS:
                waiting.append((scope, local))  # the class's binding, or else the enclosing one
                scope = scope._enclosing_scope()
            elif name in scope.declared_nonlocal or not local:
                waiting.append((scope, frozenset()))
                scope = scope._enclosing_scope()
            else:
                result = local
                scope._resolved[name] = result
                break
        for waiting_scope, local in reversed(waiting):
            result = local | result
            waiting_scope._resolved[name] = result
        return result

    def owner(self, name: str) -> Scope:
        """The scope whose binding of `name` a load here reads (the module scope when the name
        is free everywhere, or a class body's when bound there)."""
        scope = self
        while True:
            if scope.kind is ScopeKind.MODULE:
                return scope
            if name in scope.declared_global:
                return scope._module()
            if name in scope.bindings and name not in scope.declared_nonlocal:
                return scope
            scope = scope._enclosing_scope()

    def _enclosing_scope(self) -> Scope:
        """The next scope out whose names a nested scope sees: class bodies are skipped."""
        scope = self.parent
        while scope is not None and scope.kind is ScopeKind.CLASS:
            scope = scope.parent
        return scope if scope is not None else self._module()

    def _module(self) -> Scope:
        scope = self
        while scope.parent is not None:
            scope = scope.parent
        return scope


@dataclass
class ProgramFacts:
    """The result of the first pass."""

    module_scope: Scope
    inner_scopes: dict[int, Scope]  # id(node) of a function, lambda, class or comprehension
    # Attribute names the program defines: assigned (obj.name = ...), bound in a class body, or
    # listed in a literal __slots__.
    defined_attributes: set[str]
    # For each identifier, every value it is bound to anywhere: the text for `name = '...'`,
    # None for any other binding.
    string_bindings: dict[str, list[str | None]]
    # Name targets of `name = '...'` not yet visited: id(target) -> text.
    literal_targets: dict[int, str] = field(default_factory=dict)
    # `name = other_name` / `name = a.b` (also in tuples and :=): where a name may be an alias
    # of something the program did not define. (scope it binds in, name, the value)
    alias_bindings: list[tuple[Scope, str, ast.expr]] = field(default_factory=list)

    def scope_of(self, node: ast.AST) -> Scope:
        return self.inner_scopes[id(node)]


def split_children(node: ast.AST) -> tuple[list[ast.AST], list[ast.AST]] | None:
    """For a node that opens a scope: (children evaluated outside it, children inside it)."""
    if type(node) not in SCOPE_NODES:
        return None
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        outside: list[ast.AST] = [*node.decorator_list, *argument_parts(node.args)]
        if node.returns is not None:
            outside.append(node.returns)
        return outside, list(node.body)  # the parameters are bound when the scope opens
    if isinstance(node, ast.Lambda):
        return [*argument_defaults(node.args)], [node.body]
    if isinstance(node, ast.ClassDef):
        return [*node.decorator_list, *node.bases, *node.keywords], list(node.body)
    if isinstance(node, COMPREHENSIONS):
        # The first iterable is evaluated in the enclosing scope, the rest in the comprehension.
        first, *rest = node.generators
        elements = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        return [first.iter], [first.target, *first.ifs, *rest, *elements]
    return None


def parameters(arguments: ast.arguments) -> list[ast.arg]:
    optional = [arguments.vararg, arguments.kwarg]
    return [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
            *(argument for argument in optional if argument is not None)]


def argument_defaults(arguments: ast.arguments) -> Iterator[ast.expr]:
    yield from arguments.defaults
    yield from (default for default in arguments.kw_defaults if default is not None)


def argument_parts(arguments: ast.arguments) -> Iterator[ast.expr]:
    """Defaults and annotations: evaluated where the function is defined."""
    yield from argument_defaults(arguments)
    yield from (p.annotation for p in parameters(arguments) if p.annotation is not None)


def import_origin(module: str, name: str) -> Origin:
    """What `from module import name` binds: a submodule the policy allows, or a member."""
    submodule = f"{module}.{name}"
    return ImportedModule(submodule) if submodule in ALLOWED_MODULES else ImportedMember(
        module, name)


def analyse(tree: ast.AST, facts: ProgramFacts | None = None) -> ProgramFacts:
    """The first pass: scopes, bindings and program-wide facts.

    With `facts`, adds a tree evaluated in that program's module scope (a string annotation).
    """
    if facts is None:
        facts = ProgramFacts(Scope(ScopeKind.MODULE, None), {}, set(), {})
    opened: list[tuple[int, Scope]] = []
    todo: list[tuple[ast.AST, Scope, int]] = [(tree, facts.module_scope, 0)]
    while todo:
        node, scope, depth = todo.pop()
        _record(node, scope, facts)
        split = split_children(node)
        if split is None:
            todo.extend((child, scope, depth) for child in child_nodes(node))
            continue
        inner = _open_scope(node, scope, facts)
        facts.inner_scopes[id(node)] = inner
        opened.append((depth + 1, inner))
        outside, inside = split
        todo.extend((child, scope, depth) for child in outside)
        todo.extend((child, inner, depth + 1) for child in inside)
    _hoist_declared(opened)
    return facts


def _hoist_declared(opened: list[tuple[int, Scope]]) -> None:
    """`global x` / `nonlocal x` make a scope's bindings of x those of another scope: copies
    them there (innermost first, so that chains of nonlocal declarations resolve)."""
    for _, scope in sorted(opened, key=lambda entry: -entry[0]):
        for name in scope.declared_global & scope.bindings.keys():
            module = scope
            while module.parent is not None:
                module = module.parent
            module.bindings.setdefault(name, set()).update(scope.bindings[name])
        for name in scope.declared_nonlocal & scope.bindings.keys():
            owner = scope.parent
            while owner is not None and (owner.kind is ScopeKind.CLASS or (
                    name not in owner.bindings and owner.kind is not ScopeKind.MODULE)):
                owner = owner.parent
            if owner is not None and owner.kind is not ScopeKind.MODULE:
                owner.bindings[name].update(scope.bindings[name])


def _open_scope(node: ast.AST, scope: Scope, facts: ProgramFacts) -> Scope:
    if isinstance(node, ast.ClassDef):
        return Scope(ScopeKind.CLASS, scope, class_name=node.name)
    kind = ScopeKind.COMPREHENSION if isinstance(node, COMPREHENSIONS) else ScopeKind.FUNCTION
    inner = Scope(kind, scope, class_name=scope.class_name)
    if isinstance(node, FUNCTIONS):
        for parameter in parameters(node.args):
            inner.bind(parameter.arg, Source.PROGRAM)
            _bound_to(facts, parameter.arg, None)
    return inner


_RECORDED = frozenset({
    ast.Name, ast.Assign, ast.AnnAssign, ast.Attribute, ast.FunctionDef, ast.AsyncFunctionDef,
    ast.ClassDef, ast.Import, ast.ImportFrom, ast.NamedExpr, ast.ExceptHandler, ast.MatchAs,
    ast.MatchStar, ast.MatchMapping, ast.Global, ast.Nonlocal, ast.Call,
})


def _record(node: ast.AST, scope: Scope, facts: ProgramFacts) -> None:
    """Records what `node` binds in `scope`, and the facts it contributes."""
    if type(node) not in _RECORDED:
        return
    if isinstance(node, ast.Name):
        if not isinstance(node.ctx, ast.Load):
            scope.bind(node.id, Source.PROGRAM)
            _bound_to(facts, node.id, facts.literal_targets.pop(id(node), None))
            if scope.kind is ScopeKind.CLASS:
                facts.defined_attributes.add(node.id)
    elif isinstance(node, ast.Assign):
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    facts.literal_targets[id(target)] = node.value.value
        for target in node.targets:
            _record_aliases(target, node.value, scope, facts)
        if scope.kind is ScopeKind.CLASS:
            _record_slots(node, facts)
    elif isinstance(node, ast.AnnAssign):
        if node.value is not None:
            _record_aliases(node.target, node.value, scope, facts)
        if scope.kind is ScopeKind.CLASS and isinstance(node.target, ast.Name):
            facts.defined_attributes.add(node.target.id)  # a dataclass field needs no value
    elif isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Load):
        facts.defined_attributes.add(node.attr)
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        scope.bind(node.name, Source.PROGRAM)
        _bound_to(facts, node.name, None)
        if scope.kind is ScopeKind.CLASS:
            facts.defined_attributes.add(node.name)
    elif isinstance(node, ast.Import):
        for alias in node.names:
            if alias.asname:
                bound, origin = alias.asname, ImportedModule(alias.name)
            else:
                bound = alias.name.split(".")[0]
                origin = ImportedModule(bound)
            scope.bind(bound, origin)
            _bound_to(facts, bound, None)
    elif isinstance(node, ast.ImportFrom):
        for alias in node.names:
            if alias.name == "*":
                continue
            bound = alias.asname or alias.name
            scope.bind(bound, import_origin(node.module or "", alias.name) if not node.level
                       else Source.PROGRAM)
            _bound_to(facts, bound, None)
    elif isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
        # The target (a Store Name, visited next) also binds in a comprehension's own scope;
        # that does no harm: the name is the program's either way.
        scope.binding_scope().bind(node.target.id, Source.PROGRAM)
        _record_aliases(node.target, node.value, scope.binding_scope(), facts)
    elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
        scope.bind(node.name, Source.PROGRAM)
        _bound_to(facts, node.name, None)
    elif isinstance(node, ast.MatchMapping) and node.rest:
        scope.bind(node.rest, Source.PROGRAM)
        _bound_to(facts, node.rest, None)
    elif isinstance(node, ast.Global):
        scope.declared_global.update(node.names)
    elif isinstance(node, ast.Nonlocal):
        scope.declared_nonlocal.update(node.names)
    elif isinstance(node, ast.Call):
        _record_setattr(node, facts)


def _record_aliases(target: ast.expr, value: ast.expr, scope: Scope,
                    facts: ProgramFacts) -> None:
    """Name targets bound to a plain name or dotted name, pairwise through tuple displays."""
    pairs = [(target, value)]
    while pairs:
        left, right = pairs.pop()
        if isinstance(left, ast.Name) and isinstance(right, ast.Name | ast.Attribute):
            facts.alias_bindings.append((scope, left.id, right))
        elif (isinstance(left, ast.Tuple | ast.List) and isinstance(right, ast.Tuple | ast.List)
              and len(left.elts) == len(right.elts)):
            pairs.extend(zip(left.elts, right.elts, strict=True))


def _bound_to(facts: ProgramFacts, name: str, text: str | None) -> None:
    facts.string_bindings.setdefault(name, []).append(text)


def _record_slots(node: ast.Assign, facts: ProgramFacts) -> None:
    if any(isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets):
        facts.defined_attributes.update(literal_strings(node.value) or ())


def _record_setattr(node: ast.Call, facts: ProgramFacts) -> None:
    if (isinstance(node.func, ast.Name) and node.func.id == "setattr" and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
        facts.defined_attributes.add(node.args[1].value)


def literal_strings(node: ast.AST) -> list[str] | None:
    """The strings of a literal string, or of a tuple/list/set of them; None otherwise."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        texts = [e.value for e in node.elts
                 if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        return texts if len(texts) == len(node.elts) else None
    return None
