"""The rules of the `azr` policy: an allow-list judged on the AST (docs/design.md §6).

`azr_violations` runs the second pass over a parsed program (the first, `policy_scopes.analyse`,
has resolved every name) and returns every rule the program breaks. Rule names are stable and
documented in docs/design.md §6:

    import_denied, import_unknown, import_relative, import_star     what may be imported
    module_member, module_value                                      how modules may be used
    builtin, computed_attribute, dynamic_class                       builtins, class factories
    dunder_attribute, dunder_name, dunder_method, private_attribute  names with underscores
    format_string, string_annotation                                 code hidden in strings
    foreign_assignment                                               patching others' objects

The pass walks the tree with an explicit stack and looks at each node a bounded number of times,
so its cost is linear in the size of the program and deep nesting cannot exhaust the C stack.
"""

from __future__ import annotations

import ast
import string
from collections.abc import Callable, Iterator
from typing import Any, Final

from azr_verify.service.models import Violation
from azr_verify.service.verify.policy_scopes import (
    ImportedMember,
    ImportedModule,
    ProgramFacts,
    Scope,
    ScopeKind,
    Source,
    analyse,
    child_nodes,
    literal_strings,
    parameters,
    split_children,
)
from azr_verify.service.verify.policy_tables import (
    ALLOWED_MODULES,
    ATTRIBUTE_BUILTINS,
    CLASS_BODY_DUNDERS,
    DANGEROUS_PRIVATE_ATTRIBUTES,
    DATA_DUNDERS,
    DEFINABLE_ONLY_DUNDERS,
    DENIED_MODULES,
    ENUM_FACTORIES,
    INTERPRETER_ATTRIBUTES,
    NAMEDTUPLE_API,
    PROTOCOL_DUNDERS,
    READABLE_DUNDER_NAMES,
    READABLE_ONLY_DUNDERS,
    REFUSED_BUILTINS,
    RESTRICTED_CALLS,
    STAR_IMPORT_MODULES,
)

# Flags a node is visited with. ANNOTATION and the string-annotation depth pass down to every
# descendant; the others are set by a parent for its direct child only.
_ANNOTATION: Final = 1  # evaluated as an annotation (strings in it are forward references)
_MODULE_BASE: Final = 2  # the object of an attribute access: a module may stand here
_APPROVED_VALUE: Final = 4  # a restricted name (type, getattr, wraps, ...) used in an allowed way
_APPROVED_TYPE_RESULT: Final = 8  # a type(x) call whose result does not escape
_APPROVED_CALL_RESULT: Final = 16  # a call whose result is called at once or decorates
_DEPTH_UNIT: Final = 1 << 8  # string-annotation nesting, in the bits above the others
_INHERITED: Final = ~(_MODULE_BASE | _APPROVED_VALUE | _APPROVED_TYPE_RESULT
                      | _APPROVED_CALL_RESULT)
# Forward references in forward references are evaluated too; beyond this many levels a
# program is refused rather than parsed again and again.
MAX_STRING_ANNOTATION_DEPTH: Final = 3
# A refused program is refused whatever the count; past this many distinct violations the rest
# are not recorded (the walk goes on, its cost stays linear).
MAX_VIOLATIONS: Final = 200

_MAX_MODULE_DEPTH: Final = max(name.count(".") for name in ALLOWED_MODULES) + 1
_FORMAT_METHODS: Final = frozenset({"format", "format_map"})
_SET_ATTRIBUTE_DUNDERS: Final = frozenset({"__setattr__", "__delattr__"})
_NON_LEAKING_CALLS: Final = frozenset({"str", "repr", "print", "format"})
_TYPE_CHECKS: Final = frozenset({"isinstance", "issubclass"})

# What a callee may be, as far as the rules care.
_Identity = tuple[str, ...]  # ("builtin", name) | ("member", module, name) | ("module", name)


def azr_violations(tree: ast.Module) -> tuple[Violation, ...]:
    """Every rule of the azr policy that `tree` breaks, sorted by line, rule and name."""
    checker = _Checker(analyse(tree))
    checker.run(tree)
    return tuple(sorted(checker.found, key=lambda v: (v.line, v.rule, v.name)))


def is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


class _Checker:
    def __init__(self, facts: ProgramFacts) -> None:
        self.facts = facts
        self.found: set[Violation] = set()
        self._todo: list[tuple[ast.AST, Scope, int]] = []
        self._call_of: dict[int, ast.Call] = {}  # id(func) -> the call it is the callee of
        self._format_fields: dict[str, list[tuple[str, list[tuple[bool, str]]]] | None] = {}
        self._walk_free_names: dict[str, bool] = {}  # name -> its literal templates never walk
        self._displays: dict[int, dict[object, ast.expr] | None] = {}
        self._literals: dict[int, bool] = {}
        # (id(scope), name) of names bound to something the program did not define
        self._foreign_aliases = {(id(scope), name) for scope, name, value in facts.alias_bindings
                                 if self._is_foreign_value(value, scope)}
        self._handlers: dict[type[ast.AST], Callable[[Any, Scope, int], None]] = {
            ast.Import: self._import,
            ast.ImportFrom: self._import_from,
            ast.Name: self._name,
            ast.Attribute: self._attribute,
            ast.Call: self._call,
            ast.FunctionDef: self._function,
            ast.AsyncFunctionDef: self._function,
            ast.Lambda: self._function,
            ast.ClassDef: self._class,
            ast.ListComp: self._comprehension,
            ast.SetComp: self._comprehension,
            ast.DictComp: self._comprehension,
            ast.GeneratorExp: self._comprehension,
            ast.AnnAssign: self._ann_assign,
            ast.Assign: self._assign,
            ast.Constant: self._constant,
            ast.Compare: self._compare,
            ast.FormattedValue: self._formatted_value,
            ast.MatchClass: self._match_class,
            ast.MatchAs: self._match_capture,
            ast.MatchStar: self._match_capture,
            ast.MatchMapping: self._match_mapping,
            ast.ExceptHandler: self._except_handler,
            ast.Global: self._declaration,
            ast.Nonlocal: self._declaration,
        }

    # --- the walk ------------------------------------------------------------------------------

    def run(self, tree: ast.AST) -> None:
        self._todo.append((tree, self.facts.module_scope, 0))
        while self._todo:
            node, scope, flags = self._todo.pop()
            handler = self._handlers.get(type(node))
            if handler is None:
                self._push_children(node, scope, flags & _INHERITED)
            else:
                handler(node, scope, flags)

    def _push(self, node: ast.AST | None, scope: Scope, flags: int) -> None:
        if node is not None:
            self._todo.append((node, scope, flags))

    def _push_all(self, nodes: list[ast.AST] | list[ast.expr] | list[ast.stmt], scope: Scope,
                  flags: int) -> None:
        self._todo.extend((node, scope, flags) for node in nodes)

    def _push_children(self, node: ast.AST, scope: Scope, flags: int) -> None:
        self._todo.extend((child, scope, flags) for child in child_nodes(node))

    def _report(self, rule: str, name: str, line: int) -> None:
        if len(self.found) < MAX_VIOLATIONS:
            self.found.add(Violation(rule=rule, name=name, line=line))

    # --- imports -------------------------------------------------------------------------------

    def _import(self, node: ast.Import, scope: Scope, flags: int) -> None:
        for alias in node.names:
            self._check_module(alias.name, node.lineno)
            self._check_bound_name(alias.asname, node.lineno)
            self._check_import_scope(alias.name, scope, node.lineno)

    def _check_import_scope(self, module: str, scope: Scope, line: int) -> None:
        """An import in a class body makes the module (or a restricted member) an attribute
        of the class, out of reach of the rules that follow names: `A.json.codecs`."""
        if scope.kind is ScopeKind.CLASS:
            self._report("import_in_class", module, line)

    def _import_from(self, node: ast.ImportFrom, scope: Scope, flags: int) -> None:
        self._check_import_scope("." * node.level + (node.module or ""), scope, node.lineno)
        if node.level:
            name = "." * node.level + (node.module or "")
            self._report("import_relative", name, node.lineno)
            return
        module = node.module or ""
        if not self._check_module(module, node.lineno):
            return
        for alias in node.names:
            if alias.name == "*":
                if module not in STAR_IMPORT_MODULES:
                    self._report("import_star", module, node.lineno)
                continue
            self._check_bound_name(alias.asname or alias.name, node.lineno)
            if (f"{module}.{alias.name}" not in ALLOWED_MODULES
                    and alias.name not in ALLOWED_MODULES[module]):
                self._report("module_member", f"{module}.{alias.name}", node.lineno)

    def _check_module(self, module: str, line: int) -> bool:
        """True when `module` may be imported; reports why not otherwise."""
        if module in ALLOWED_MODULES:
            return True
        top = module.split(".")[0]
        denied = top in DENIED_MODULES or (top.startswith("_") and top != "__future__")
        self._report("import_denied" if denied else "import_unknown", module, line)
        return False

    def _check_bound_name(self, name: str | None, line: int) -> None:
        if name is not None and is_dunder(name):
            self._report("dunder_name", name, line)

    # --- names ---------------------------------------------------------------------------------

    def _name(self, node: ast.Name, scope: Scope, flags: int) -> None:
        name = node.id
        if is_dunder(name):
            self._dunder_name(node, scope)
            return
        if not isinstance(node.ctx, ast.Load):
            return
        origins = scope.origins(name)
        if Source.BUILTIN in origins:
            self._builtin_use(name, node.lineno, flags)
        for origin in origins:
            if isinstance(origin, ImportedModule):
                if not flags & _MODULE_BASE and origin.module in ALLOWED_MODULES:
                    self._report("module_value", origin.module, node.lineno)
            elif isinstance(origin, ImportedMember):
                self._member_use(origin.module, origin.name, node.lineno, flags)

    def _builtin_use(self, name: str, line: int, flags: int) -> None:
        if name in REFUSED_BUILTINS:
            self._report("builtin", name, line)
        elif name in ATTRIBUTE_BUILTINS and not flags & _APPROVED_VALUE:
            self._report("computed_attribute", name, line)
        elif name == "type" and not flags & _APPROVED_VALUE:
            self._report("dynamic_class", "type", line)

    def _member_use(self, module: str, name: str, line: int, flags: int) -> None:
        """A member of an allowed module used as a value: the restricted ones need approval."""
        if (module, name) in RESTRICTED_CALLS and not flags & _APPROVED_VALUE:
            self._report("computed_attribute", f"{module}.{name}", line)
        elif (module, name) == ("abc", "ABCMeta") and not flags & _APPROVED_VALUE:
            self._report("dynamic_class", "abc.ABCMeta", line)
        elif (module == "enum" and name in ENUM_FACTORIES
              and not flags & (_APPROVED_VALUE | _MODULE_BASE)):
            self._report("dynamic_class", f"enum.{name}", line)

    def _dunder_name(self, node: ast.Name, scope: Scope) -> None:
        name = node.id
        definable = PROTOCOL_DUNDERS | DEFINABLE_ONLY_DUNDERS | CLASS_BODY_DUNDERS
        if isinstance(node.ctx, ast.Load):
            if name == "__import__":
                self._report("builtin", name, node.lineno)
            elif not (name in READABLE_DUNDER_NAMES
                      # `__rmul__ = __mul__`: the class body's own method
                      or (scope.kind is ScopeKind.CLASS and name in definable
                          and name in scope.bindings)):
                self._report("dunder_name", name, node.lineno)
        elif not (scope.kind is ScopeKind.CLASS and isinstance(node.ctx, ast.Store)
                  and name in definable):
            self._report("dunder_name", name, node.lineno)

    def _declaration(self, node: ast.Global | ast.Nonlocal, scope: Scope, flags: int) -> None:
        for name in node.names:
            self._check_bound_name(name, node.lineno)

    def _except_handler(self, node: ast.ExceptHandler, scope: Scope, flags: int) -> None:
        self._check_bound_name(node.name, node.lineno)
        self._push_children(node, scope, flags & _INHERITED)

    def _match_capture(self, node: ast.MatchAs | ast.MatchStar, scope: Scope, flags: int) -> None:
        self._check_bound_name(node.name, node.lineno)
        self._push_children(node, scope, flags & _INHERITED)

    def _match_mapping(self, node: ast.MatchMapping, scope: Scope, flags: int) -> None:
        self._check_bound_name(node.rest, node.lineno)
        self._push_children(node, scope, flags & _INHERITED)

    def _match_class(self, node: ast.MatchClass, scope: Scope, flags: int) -> None:
        # case C(attr=pattern) reads C-instances' attributes by these names.
        for attribute in node.kwd_attrs:
            self._attribute_name(attribute, ast.Load(), None, scope, node.lineno, flags)
        self._push_children(node, scope, flags & _INHERITED)

    # --- definitions and scopes ----------------------------------------------------------------

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda, scope: Scope,
                  flags: int) -> None:
        inherited = flags & _INHERITED
        inner = self.facts.scope_of(node)
        if not isinstance(node, ast.Lambda):
            if is_dunder(node.name) and not (
                    scope.kind is ScopeKind.CLASS
                    and node.name in PROTOCOL_DUNDERS | DEFINABLE_ONLY_DUNDERS):
                self._report("dunder_method", node.name, node.lineno)
            # @wraps(f) is the intended use of wraps' result.
            self._push_all(node.decorator_list, scope, inherited | _APPROVED_CALL_RESULT)
            self._push(node.returns, scope, inherited | _ANNOTATION)
            self._push_all(node.body, inner, inherited)
        else:
            self._push(node.body, inner, inherited)
        arguments = node.args
        self._push_all(arguments.defaults, scope, inherited)
        self._push_all([d for d in arguments.kw_defaults if d is not None], scope, inherited)
        for parameter in parameters(arguments):
            self._check_bound_name(parameter.arg, parameter.lineno)
            self._push(parameter.annotation, scope, inherited | _ANNOTATION)

    def _class(self, node: ast.ClassDef, scope: Scope, flags: int) -> None:
        inherited = flags & _INHERITED
        self._check_bound_name(node.name, node.lineno)
        self._push_all(node.decorator_list, scope, inherited | _APPROVED_CALL_RESULT)
        enum_base = False
        for base in node.bases:
            identities = self._identities(base, scope)
            if ("builtin", "type") in identities or ("member", "abc", "ABCMeta") in identities:
                self._report("dynamic_class", "metaclass", base.lineno)  # a metaclass definition
            enum_base = enum_base or any(i[0] == "member" and i[1] == "enum"
                                         and i[2] in ENUM_FACTORIES for i in identities)
            self._push(base, scope, inherited | _APPROVED_VALUE)
        for keyword in node.keywords:
            value_flags = inherited
            if keyword.arg == "metaclass":
                if ("member", "abc", "ABCMeta") in self._identities(keyword.value, scope):
                    value_flags |= _APPROVED_VALUE
                else:
                    self._report("dynamic_class", "metaclass", keyword.value.lineno)
            self._push(keyword.value, scope, value_flags)
        if enum_base and not _defines_enum_members(node):
            # A member-less enum can be called with names (the functional API), making a class
            # from strings; enums with members cannot be extended that way.
            self._report("dynamic_class", node.name, node.lineno)
        self._push_all(node.body, self.facts.scope_of(node), inherited)

    def _comprehension(self, node: ast.AST, scope: Scope, flags: int) -> None:
        split = split_children(node)
        assert split is not None
        outside, inside = split
        inherited = flags & _INHERITED
        self._push_all(outside, scope, inherited)
        self._push_all(inside, self.facts.scope_of(node), inherited)

    def _assign(self, node: ast.Assign, scope: Scope, flags: int) -> None:
        if scope.kind is ScopeKind.CLASS:
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in ("__slots__", "__match_args__"):
                    self._attribute_list(target.id, node.value, scope, flags)
        self._push_children(node, scope, flags & _INHERITED)

    def _attribute_list(self, dunder: str, value: ast.expr, scope: Scope, flags: int) -> None:
        """__slots__ defines attributes by name, __match_args__ makes `case` read them."""
        names = literal_strings(value)
        if names is None:
            self._report("computed_attribute", dunder, value.lineno)
            return
        context: ast.expr_context = ast.Store() if dunder == "__slots__" else ast.Load()
        for name in names:
            if dunder == "__slots__" and name in ("__dict__", "__weakref__"):
                continue
            self._attribute_name(name, context, None, scope, value.lineno, flags)

    def _ann_assign(self, node: ast.AnnAssign, scope: Scope, flags: int) -> None:
        inherited = flags & _INHERITED
        self._push(node.annotation, scope, inherited | _ANNOTATION)
        self._push(node.target, scope, inherited)
        self._push(node.value, scope, inherited)

    def _constant(self, node: ast.Constant, scope: Scope, flags: int) -> None:
        if flags & _ANNOTATION and isinstance(node.value, str):
            self._string_annotation(node.value, node.lineno, flags)

    def _string_annotation(self, text: str, line: int, flags: int) -> None:
        """A string in an annotation is a forward reference: typing.get_type_hints (called by
        functools.singledispatch's register, for one) evaluates it with the program's globals.
        It is checked as the expression it will be evaluated as, in the module scope.
        """
        depth = flags // _DEPTH_UNIT + 1
        if depth > MAX_STRING_ANNOTATION_DEPTH:
            self._report("string_annotation", text[:40], line)
            return
        # typing.ForwardRef compiles '*Ts' as '(*Ts,)[0]'.
        source = f"({text},)[0]" if text.startswith("*") else text
        try:
            expression = ast.parse(source, mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return  # it cannot be evaluated either
        for child in ast.walk(expression):
            if hasattr(child, "lineno"):
                child.lineno = line
        analyse(expression, self.facts)
        self._push(expression.body, self.facts.module_scope,
                   _ANNOTATION | (depth * _DEPTH_UNIT))

    # --- attributes ----------------------------------------------------------------------------

    def _modules_of(self, node: ast.expr, scope: Scope) -> list[str]:
        """The modules `node` may denote: names bound by import, and allowed submodules reached
        from them. Looks at most as deep as module names go, so a long chain costs nothing."""
        chain: list[str] = []
        while isinstance(node, ast.Attribute) and len(chain) < _MAX_MODULE_DEPTH:
            chain.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return []
        found: list[str] = []
        for origin in scope.origins(node.id):
            if not isinstance(origin, ImportedModule):
                continue
            module: str | None = origin.module
            for attribute in reversed(chain):
                submodule = f"{module}.{attribute}"
                module = submodule if submodule in ALLOWED_MODULES else None
                if module is None:
                    break
            if module is not None:
                found.append(module)
        return found

    def _attribute(self, node: ast.Attribute, scope: Scope, flags: int) -> None:
        inherited = flags & _INHERITED
        modules = self._modules_of(node.value, scope)
        if modules:
            for module in modules:
                self._module_attribute(node, module, flags)
            self._push(node.value, scope, inherited | _MODULE_BASE)
            return
        self._attribute_name(node.attr, node.ctx, node.value, scope, node.lineno, flags)
        if not isinstance(node.ctx, ast.Load):
            self._check_foreign_target(node.value, node.attr, scope, node.lineno)
        if node.attr in _FORMAT_METHODS:
            self._check_format(node, scope)
        value_flags = inherited | _MODULE_BASE
        if node.attr != "mro":  # type(C).mro() would list the metaclass itself
            value_flags |= _APPROVED_TYPE_RESULT
        self._push(node.value, scope, value_flags)

    def _module_attribute(self, node: ast.Attribute, module: str, flags: int) -> None:
        if module not in ALLOWED_MODULES:
            return  # refused where it was imported
        name = f"{module}.{node.attr}"
        if not isinstance(node.ctx, ast.Load):
            self._report("foreign_assignment", name, node.lineno)
        elif name in ALLOWED_MODULES:
            if not flags & _MODULE_BASE:
                self._report("module_value", name, node.lineno)
        elif node.attr not in ALLOWED_MODULES[module]:
            self._report("module_member", name, node.lineno)
        else:
            self._member_use(module, node.attr, node.lineno, flags)

    def _attribute_name(self, attribute: str, context: ast.expr_context,
                        receiver: ast.expr | None, scope: Scope, line: int, flags: int) -> None:
        """The rules for `receiver.attribute` whatever the receiver is (it is not a module)."""
        load = isinstance(context, ast.Load)
        if is_dunder(attribute):
            if load:
                allowed = (attribute in PROTOCOL_DUNDERS | DATA_DUNDERS | READABLE_ONLY_DUNDERS
                           or (attribute == "__new__" and self._is_base_object(receiver, scope))
                           or (attribute in _SET_ATTRIBUTE_DUNDERS
                               and bool(flags & _APPROVED_VALUE)))
            else:
                allowed = attribute in DATA_DUNDERS
            if not allowed:
                self._report("dunder_attribute", attribute, line)
        elif attribute in INTERPRETER_ATTRIBUTES:
            self._report("dunder_attribute", attribute, line)
        elif attribute.startswith("_") and not self._own_private(attribute, load):
            self._report("private_attribute", attribute, line)

    def _own_private(self, attribute: str, load: bool) -> bool:
        """A private attribute the program may use: one it assigns or defines in a class (any
        store defines one), or namedtuple's _replace/_asdict/...; never one of the standard
        library's private helpers that evaluate strings or reach sys.modules."""
        if attribute in DANGEROUS_PRIVATE_ATTRIBUTES:
            return False
        return (not load or attribute in self.facts.defined_attributes
                or attribute in NAMEDTUPLE_API)

    def _is_base_object(self, receiver: ast.expr | None, scope: Scope) -> bool:
        """`super()` or the builtin `object`: where __new__ may be looked up."""
        if isinstance(receiver, ast.Name):
            return receiver.id == "object" and _only_builtin(scope, "object")
        return self._is_zero_argument_super(receiver, scope)

    def _is_zero_argument_super(self, node: ast.expr | None, scope: Scope) -> bool:
        return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "super" and not node.args and not node.keywords
                and _only_builtin(scope, "super"))

    def _check_foreign_target(self, receiver: ast.expr, attribute: str, scope: Scope,
                              line: int) -> None:
        """`receiver.attribute = ...` (or del): the receiver must be the program's own: not a
        module, an imported or builtin name, a plain alias of one, or a display holding one."""
        root = receiver
        while isinstance(root, ast.Attribute | ast.Subscript):
            root = root.value
        if isinstance(root, ast.Name):
            foreign = (self._is_foreign_value(root, scope)
                       or (id(scope.owner(root.id)), root.id) in self._foreign_aliases)
        else:
            # A call's result (getcontext().prec, type(self).count) is computed; a display
            # (`[Counter][0].x`) holds whatever was put in it.
            foreign = isinstance(root, ast.Tuple | ast.List | ast.Set | ast.Dict | ast.Constant)
        if foreign:
            self._report("foreign_assignment", f"{_dotted(receiver)}.{attribute}", line)

    def _is_foreign_value(self, value: ast.expr, scope: Scope) -> bool:
        """A name the program did not bind (builtin or imported), or a module's member."""
        if isinstance(value, ast.Attribute):
            return bool(self._modules_of(value.value, scope))
        if not isinstance(value, ast.Name):
            return False
        origins = scope.origins(value.id)
        return (any(isinstance(o, ImportedModule | ImportedMember) for o in origins)
                or Source.PROGRAM not in origins)

    # --- calls ---------------------------------------------------------------------------------

    def _identities(self, node: ast.expr, scope: Scope) -> set[_Identity]:
        """What a callee or base may be: builtins, imported members, modules."""
        found: set[_Identity] = set()
        if isinstance(node, ast.Name):
            for origin in scope.origins(node.id):
                if origin is Source.BUILTIN:
                    found.add(("builtin", node.id))
                elif isinstance(origin, ImportedMember):
                    found.add(("member", origin.module, origin.name))
                elif isinstance(origin, ImportedModule):
                    found.add(("module", origin.module))
        elif isinstance(node, ast.Attribute):
            for module in self._modules_of(node.value, scope):
                found.add(("member", module, node.attr))
        return found

    def _is_type_call(self, node: ast.expr, scope: Scope) -> bool:
        return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "type" and Source.BUILTIN in scope.origins("type"))

    def _call(self, node: ast.Call, scope: Scope, flags: int) -> None:
        inherited = flags & _INHERITED
        func = node.func
        starred = any(isinstance(a, ast.Starred) for a in node.args)
        simple = None if starred or node.keywords else len(node.args)
        identities = self._identities(func, scope)
        func_flags = inherited
        if self._is_type_call(node, scope):
            if simple != 1:
                self._report("dynamic_class", "type", node.lineno)  # three-argument type
            elif not flags & _APPROVED_TYPE_RESULT:
                self._report("dynamic_class", "type", node.lineno)  # the class escapes
            func_flags |= _APPROVED_VALUE
        elif identities & {("builtin", name) for name in ATTRIBUTE_BUILTINS}:
            assert isinstance(func, ast.Name)
            if self._attribute_builtin(node, func.id, scope, inherited):
                self._push(func, scope, inherited | _APPROVED_VALUE)
                return
            self._report("computed_attribute", func.id, node.lineno)
            func_flags |= _APPROVED_VALUE
        elif restricted := _restricted_call(identities):
            called_at_once = restricted != ("functools", "wraps") or bool(
                flags & _APPROVED_CALL_RESULT)
            if simple != RESTRICTED_CALLS[restricted] or not called_at_once:
                self._report("computed_attribute", ".".join(restricted), node.lineno)
            func_flags |= _APPROVED_VALUE
        elif any(i[0] == "member" and i[1] == "enum" and i[2] in ENUM_FACTORIES
                 for i in identities):
            if not self._literal_enum_names(node):
                self._report("dynamic_class", _dotted(func), node.lineno)
            func_flags |= _APPROVED_VALUE
        elif self._is_type_call(func, scope):
            # When C is a class, type(C) is its metaclass: type(C)(name, bases, namespace)
            # makes a class and type(C)(obj) returns another metaclass. type(self)(a, b) and
            # keyword arguments are ordinary construction.
            positional = None if starred else len(node.args)
            if positional in (None, 1, 3) or any(k.arg is None for k in node.keywords):
                self._report("dynamic_class", "type", node.lineno)
            func_flags |= _APPROVED_TYPE_RESULT
        elif isinstance(func, ast.Attribute) and func.attr in _SET_ATTRIBUTE_DUNDERS:
            if self._set_attribute_dunder(node, func, scope):
                func_flags |= _APPROVED_VALUE
            else:
                self._report("computed_attribute", func.attr, node.lineno)
                func_flags |= _APPROVED_VALUE
        elif simple == 1:
            func_flags |= _APPROVED_CALL_RESULT  # wraps(f)(wrapper)
        if isinstance(func, ast.Attribute):
            self._call_of[id(func)] = node
        self._push(func, scope, func_flags)
        self._push_arguments(node, identities, scope, inherited)

    def _push_arguments(self, node: ast.Call, identities: set[_Identity], scope: Scope,
                        inherited: int) -> None:
        type_check = any(i[0] == "builtin" and i[1] in _TYPE_CHECKS for i in identities)
        non_leaking = any(i[0] == "builtin" and i[1] in _NON_LEAKING_CALLS for i in identities)
        for index, argument in enumerate(node.args):
            if type_check and index == 1:
                # isinstance(x, type), isinstance(x, (Enum, type(y)))
                elements = argument.elts if isinstance(argument, ast.Tuple) else [argument]
                self._push_all(elements, scope,
                               inherited | _APPROVED_VALUE | _APPROVED_TYPE_RESULT)
            elif non_leaking:
                self._push(argument, scope, inherited | _APPROVED_TYPE_RESULT)
            else:
                self._push(argument, scope, inherited)
        for keyword in node.keywords:
            self._push(keyword.value, scope, inherited)

    def _attribute_builtin(self, node: ast.Call, name: str, scope: Scope, inherited: int) -> bool:
        """getattr(obj, 'name'[, default]), hasattr(obj, 'name'), setattr(obj, 'name', value),
        delattr(obj, 'name'): checked as `obj.name`. False for any other shape."""
        arity = {"getattr": (2, 3), "hasattr": (2,), "setattr": (3,), "delattr": (2,)}[name]
        args = node.args
        if (node.keywords or len(args) not in arity or any(isinstance(a, ast.Starred)
                                                             for a in args)):
            return False
        attribute = args[1]
        if not (isinstance(attribute, ast.Constant) and isinstance(attribute.value, str)):
            return False
        context: ast.expr_context = (ast.Store() if name == "setattr" else
                                     ast.Del() if name == "delattr" else ast.Load())
        virtual = ast.Attribute(value=args[0], attr=attribute.value, ctx=context)
        ast.copy_location(virtual, node)
        self._push(virtual, scope, inherited)
        self._push_all(args[2:], scope, inherited)
        return True

    def _set_attribute_dunder(self, node: ast.Call, func: ast.Attribute, scope: Scope) -> bool:
        """super().__setattr__('name', v) and object.__setattr__(obj, 'name', v) (the frozen
        dataclass idiom), and their __delattr__ twins, with a literal name: checked as a store.
        """
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            return False
        context: ast.expr_context = ast.Store() if func.attr == "__setattr__" else ast.Del()
        if self._is_zero_argument_super(func.value, scope):
            target, index = None, 0
        elif (isinstance(func.value, ast.Name) and func.value.id == "object"
              and _only_builtin(scope, "object")):
            target, index = (node.args[0] if node.args else None), 1
        else:
            return False
        if len(node.args) <= index:
            return False
        attribute = node.args[index]
        if not (isinstance(attribute, ast.Constant) and isinstance(attribute.value, str)):
            return False
        self._attribute_name(attribute.value, context, target, scope, node.lineno, 0)
        if target is not None:
            self._check_foreign_target(target, attribute.value, scope, node.lineno)
        return True

    def _literal_enum_names(self, node: ast.Call) -> bool:
        """Enum('Color', 'RED GREEN') and friends, with literal, plain member names."""
        names_node: ast.expr | None = node.args[1] if len(node.args) >= 2 else None
        for keyword in node.keywords:
            if keyword.arg is None:
                return False
            if keyword.arg == "names":
                names_node = keyword.value
        if any(isinstance(a, ast.Starred) for a in node.args):
            return False
        if names_node is None:
            return True  # Color(1): a lookup
        names = _enum_member_names(names_node)
        return names is not None and all(
            name.isidentifier() and not name.startswith("_") for name in names)

    # --- contexts that keep type(x) from escaping ----------------------------------------------

    def _compare(self, node: ast.Compare, scope: Scope, flags: int) -> None:
        """`type(x) is C`, `type(x) == int`, `type(x) in (int, float)`: the class is only
        compared. Not with a program value: its __eq__ or __contains__ would receive it."""
        operands = [node.left, *node.comparators]
        safe = all(isinstance(op, ast.Is | ast.IsNot) for op in node.ops) or all(
            self._is_type_call(operand, scope) or self._is_inert(operand, scope)
            for operand in operands)
        operand_flags = (flags & _INHERITED) | (_APPROVED_TYPE_RESULT if safe else 0)
        self._push_all(operands, scope, operand_flags)

    def _is_inert(self, node: ast.expr, scope: Scope) -> bool:
        """A constant, a builtin or imported name, a module member, or a display of those:
        nothing whose methods the program wrote."""
        todo = [node]
        while todo:
            item = todo.pop()
            if isinstance(item, ast.Constant):
                continue
            if isinstance(item, ast.Tuple | ast.List | ast.Set):
                todo.extend(item.elts)
            elif isinstance(item, ast.Name):
                if Source.PROGRAM in scope.origins(item.id):
                    return False
            elif isinstance(item, ast.Attribute):
                if not self._modules_of(item.value, scope):
                    return False
            elif not self._is_type_call(item, scope):
                return False
        return True

    def _formatted_value(self, node: ast.FormattedValue, scope: Scope, flags: int) -> None:
        inherited = flags & _INHERITED
        self._push(node.value, scope, inherited | _APPROVED_TYPE_RESULT)
        self._push(node.format_spec, scope, inherited)

    # --- format strings ------------------------------------------------------------------------

    def _check_format(self, node: ast.Attribute, scope: Scope) -> None:
        """`template.format(...)` / `.format_map(...)` walk attributes and items named in the
        template: every field that walks must read a literal argument and a public name."""
        call = self._call_of.get(id(node))
        receiver = node.value
        shift = 0
        if isinstance(receiver, ast.Name) and receiver.id == "str" and _only_builtin(
                scope, "str"):
            # str.format(template, ...): the template is the first argument
            if call is None or not call.args or isinstance(call.args[0], ast.Starred):
                self._report("format_string", f"str.{node.attr}", node.lineno)
                return
            receiver, shift = call.args[0], 1
        if isinstance(receiver, ast.Constant):
            if isinstance(receiver.value, str):
                self._check_template(receiver.value, node.attr, call, shift, node.lineno)
            return
        if not self._walk_free_template_name(receiver, scope):
            self._report("format_string", node.attr, node.lineno)

    def _walk_free_template_name(self, receiver: ast.expr, scope: Scope) -> bool:
        """A name whose every binding is `name = 'literal'`, none of them with a walking field
        (the template is not at the call site, so no walk can be matched to its argument)."""
        if not isinstance(receiver, ast.Name) or any(
                isinstance(o, ImportedModule | ImportedMember)
                for o in scope.origins(receiver.id)):
            return False
        verdict = self._walk_free_names.get(receiver.id)
        if verdict is None:
            values = self.facts.string_bindings.get(receiver.id)
            verdict = bool(values) and all(
                value is not None and (fields := self._parsed_template(value)) is not None
                and not any(walks for _, walks in fields)
                for value in values or ())
            self._walk_free_names[receiver.id] = verdict
        return verdict

    def _check_template(self, text: str, method: str, call: ast.Call | None, shift: int,
                        line: int) -> None:
        fields = self._parsed_template(text)
        if fields is None:
            self._report("format_string", "malformed template", line)
            return
        auto = 0
        for first, walks in fields:
            if first == "":
                first = str(auto)
                auto += 1
            if not walks:
                continue
            field_text = first + "".join(f".{k}" if is_attr else f"[{k}]" for is_attr, k in walks)
            argument = _format_argument(call, first, method, shift)
            if argument is None or not self._walk_is_safe(argument, walks):
                self._report("format_string", field_text, line)

    def _walk_is_safe(self, argument: ast.expr, walks: list[tuple[bool, str]]) -> bool:
        """Follows a format field's walk through the argument's AST: an item of a container
        display is the element written there (the program's own, already checked expression);
        an attribute may be read only from a literal, and only by a public, non-interpreter
        name, and nothing follows it."""
        node: ast.expr | None = argument
        for is_attribute, key in walks:
            if node is None:
                return False
            if is_attribute:
                if (not self._is_literal(node) or key.startswith("_")
                        or key in INTERPRETER_ATTRIBUTES):
                    return False
                node = None
            else:
                items = self._display_items(node)
                node = None if items is None else items.get(int(key) if key.isdigit() else key)
                if node is None:
                    return False
        return True

    def _display_items(self, node: ast.expr) -> dict[object, ast.expr] | None:
        """index -> element of a tuple/list display, key -> value of a dict display with
        constant keys; None for anything else. Cached: many fields may walk one display."""
        if id(node) in self._displays:
            return self._displays[id(node)]
        items: dict[object, ast.expr] | None = None
        if isinstance(node, ast.Tuple | ast.List):
            if not any(isinstance(e, ast.Starred) for e in node.elts):
                items = dict(enumerate(node.elts))
        elif isinstance(node, ast.Dict) and all(
                isinstance(k, ast.Constant) for k in node.keys):  # no {**other}
            items = {}
            for key, value in zip(node.keys, node.values, strict=True):
                assert isinstance(key, ast.Constant)
                items[key.value] = value  # the last of duplicate keys wins, as at run time
        self._displays[id(node)] = items
        return items

    def _is_literal(self, node: ast.expr) -> bool:
        known = self._literals.get(id(node))
        if known is None:
            known = self._literals[id(node)] = _is_literal(node)
        return known

    def _parsed_template(self, text: str) -> list[tuple[str, list[tuple[bool, str]]]] | None:
        """The fields of a format template, nested ones included, in the order str.format
        numbers them; None when it is malformed (str.format would raise)."""
        if text in self._format_fields:
            return self._format_fields[text]
        fields: list[tuple[str, list[tuple[bool, str]]]] | None = []
        try:
            assert fields is not None
            for field_name in _field_names(text, depth=2):
                fields.append(_split_field_name(field_name))
        except ValueError:
            fields = None
        self._format_fields[text] = fields
        return fields


# --- helpers -----------------------------------------------------------------------------------

def _only_builtin(scope: Scope, name: str) -> bool:
    """The name surely is the builtin: the program binds it nowhere it could be seen from here.
    (Where the rules restrict a builtin, `may be` is enough; where they trust one, it is not.)"""
    return scope.origins(name) == {Source.BUILTIN}


def _restricted_call(identities: set[_Identity]) -> tuple[str, str] | None:
    for identity in identities:
        if identity[0] == "member" and (identity[1], identity[2]) in RESTRICTED_CALLS:
            return identity[1], identity[2]
    return None


def _defines_enum_members(node: ast.ClassDef) -> bool:
    for statement in node.body:
        targets: list[ast.expr] = []
        if isinstance(statement, ast.Assign):
            targets = statement.targets
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            targets = [statement.target]
        if any(isinstance(t, ast.Name | ast.Tuple) and not _is_private_target(t)
               for t in targets):
            return True
    return False


def _is_private_target(target: ast.expr) -> bool:
    return isinstance(target, ast.Name) and target.id.startswith("_")


def _enum_member_names(node: ast.expr) -> list[str] | None:
    """The member names of the functional API's `names` argument, when it is a literal."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.replace(",", " ").split()
    if isinstance(node, ast.Dict):
        keys = [k.value for k in node.keys
                if isinstance(k, ast.Constant) and isinstance(k.value, str)]
        return keys if len(keys) == len(node.keys) else None
    if isinstance(node, ast.Tuple | ast.List):
        names: list[str] = []
        for element in node.elts:
            if isinstance(element, ast.Tuple | ast.List) and element.elts:
                element = element.elts[0]
            if not (isinstance(element, ast.Constant) and isinstance(element.value, str)):
                return None
            names.append(element.value)
        return names
    return None


def _dotted(node: ast.expr, limit: int = 4) -> str:
    """`a.b.c`, `a[...].b`, `f(...).b` for a short chain; the tail of a long one."""
    parts: list[str] = []
    while len(parts) < limit:
        if isinstance(node, ast.Attribute):
            parts.append("." + node.attr)
        elif isinstance(node, ast.Subscript):
            parts.append("[...]")
        elif isinstance(node, ast.Call):
            parts.append("(...)")
            node = node.func
            continue
        else:
            break
        node = node.value
    head = node.id if isinstance(node, ast.Name) else "..."
    return head + "".join(reversed(parts))


def _is_literal(node: ast.expr) -> bool:
    """A constant or a display of constants: nothing whose attributes lead anywhere new."""
    todo: list[ast.expr | None] = [node]
    while todo:
        item = todo.pop()
        if item is None or isinstance(item, ast.Constant):
            continue
        if isinstance(item, ast.Tuple | ast.List | ast.Set):
            todo.extend(item.elts)
        elif isinstance(item, ast.Dict):
            todo.extend(item.keys)
            todo.extend(item.values)
        elif isinstance(item, ast.UnaryOp) and isinstance(item.operand, ast.Constant):
            continue
        else:
            return False
    return True


def _format_argument(call: ast.Call | None, first: str, method: str,
                     shift: int) -> ast.expr | None:
    """The argument a format field's first part names, when it can be known statically."""
    if call is None:
        return None
    if method == "format_map":
        if len(call.args) != 1 + shift or not isinstance(call.args[shift], ast.Dict):
            return None
        mapping = call.args[shift]
        assert isinstance(mapping, ast.Dict)
        for key, value in zip(mapping.keys, mapping.values, strict=True):
            if isinstance(key, ast.Constant) and key.value == first:
                return value
        return None
    if first.isdigit():
        index = int(first) + shift
        positional = call.args[:index + 1]
        if len(positional) <= index or any(isinstance(a, ast.Starred) for a in positional):
            return None
        return call.args[index]
    for keyword in call.keywords:
        if keyword.arg == first:
            return keyword.value
    return None


_FORMATTER: Final = string.Formatter()


def _field_names(text: str, depth: int) -> Iterator[str]:
    """Field names of a template and of the templates in its format specs (str.format expands
    specs two levels deep). Raises ValueError for a malformed template."""
    for _, field_name, format_spec, _ in _FORMATTER.parse(text):
        if field_name is None:
            continue
        yield field_name
        if format_spec and depth > 0:
            yield from _field_names(format_spec, depth - 1)


def _split_field_name(field_name: str) -> tuple[str, list[tuple[bool, str]]]:
    """'0.a[b].c' -> ('0', [(True, 'a'), (False, 'b'), (True, 'c')]), as str.format reads it."""
    end = len(field_name)
    for stop in (field_name.find("."), field_name.find("[")):
        if stop >= 0:
            end = min(end, stop)
    first, rest = field_name[:end], field_name[end:]
    walks: list[tuple[bool, str]] = []
    position = 0
    while position < len(rest):
        if rest[position] == ".":
            stop = len(rest)
            for mark in (rest.find(".", position + 1), rest.find("[", position + 1)):
                if mark >= 0:
                    stop = min(stop, mark)
            name = rest[position + 1:stop]
            if not name:
                raise ValueError("empty attribute in format string")
            walks.append((True, name))
            position = stop
        elif rest[position] == "[":
            close = rest.find("]", position)
            if close < 0:
                raise ValueError("missing ']' in format string")
            walks.append((False, rest[position + 1:close]))
            position = close + 1
        else:
            raise ValueError("only '.' or '[' may follow ']' in format field specifier")
    return first, walks
