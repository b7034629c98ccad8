"""The azr policy's written-out tables against the running CPython 3.11 (the interpreter of the
service and of the sandbox): they must name only what exists, never a module or a private name,
and must cover every builtin. An interpreter upgrade that adds names fails here first."""

from __future__ import annotations

import builtins
import importlib
import sys
import types

import pytest

from azr_verify.service.verify.policy_tables import (
    ALLOWED_BUILTINS,
    ALLOWED_MODULES,
    ATTRIBUTE_BUILTINS,
    DANGEROUS_PRIVATE_ATTRIBUTES,
    DENIED_MODULES,
    ENUM_FACTORIES,
    INTERPRETER_ATTRIBUTES,
    PROTOCOL_DUNDERS,
    REFUSED_BUILTINS,
    RESTRICTED_CALLS,
    STAR_IMPORT_MODULES,
)


def public_names(module: types.ModuleType) -> set[str]:
    exported = getattr(module, "__all__", None)
    if exported is not None:
        return set(exported)
    return {name for name in dir(module) if not name.startswith("_")}


def test_the_interpreter_is_the_one_the_tables_were_made_for() -> None:
    assert sys.version_info[:2] == (3, 11)


@pytest.mark.parametrize("name", sorted(ALLOWED_MODULES))
def test_module_table_names_only_public_non_module_members(name: str) -> None:
    module = importlib.import_module(name)
    table = ALLOWED_MODULES[name]
    assert table <= public_names(module), table - public_names(module)
    for member in table:
        assert not member.startswith("_")
        assert not isinstance(getattr(module, member), types.ModuleType), member


@pytest.mark.parametrize("name", sorted(STAR_IMPORT_MODULES))
def test_star_imports_bind_only_allowed_unrestricted_names(name: str) -> None:
    module = importlib.import_module(name)
    star = public_names(module)
    assert star <= ALLOWED_MODULES[name], star - ALLOWED_MODULES[name]
    assert not {(name, member) for member in star} & RESTRICTED_CALLS.keys()
    assert not (name == "enum" and star & ENUM_FACTORIES)


def test_reexported_modules_are_never_in_a_table() -> None:
    reexports = {f"{name}.{member}" for name in ALLOWED_MODULES
                 for member in dir(importlib.import_module(name))
                 if isinstance(getattr(importlib.import_module(name), member),
                               types.ModuleType)}
    assert {"typing.sys", "contextlib.os", "re.enum", "json.codecs", "dataclasses.builtins",
            "statistics.random", "queue.threading", "enum.bltns"} <= reexports
    for dotted in reexports - ALLOWED_MODULES.keys():
        module, member = dotted.rsplit(".", 1)
        assert member not in ALLOWED_MODULES[module], dotted


def test_deliberate_exclusions() -> None:
    excluded = {
        "typing": {"get_type_hints", "ForwardRef", "Type", "no_type_check"},
        "operator": {"attrgetter", "methodcaller"},
        "string": {"Formatter"},
        "functools": {"singledispatch", "singledispatchmethod", "cached_property"},
        "dataclasses": {"make_dataclass"},
        "enum": {"EnumMeta", "EnumType", "global_enum", "property"},
        "contextlib": {"chdir", "redirect_stdout", "redirect_stderr"},
        "json": {"JSONEncoder", "JSONDecoder"},
        "statistics": {"NormalDist"},
    }
    for module, names in excluded.items():
        assert names <= public_names(importlib.import_module(module))
        assert not names & ALLOWED_MODULES[module], module


def test_every_builtin_is_classified() -> None:
    classified = ALLOWED_BUILTINS | REFUSED_BUILTINS | ATTRIBUTE_BUILTINS
    unclassified = {name for name in dir(builtins)
                    if name not in classified and not (name.startswith("__")
                                                       and name.endswith("__"))}
    assert not unclassified
    assert not ALLOWED_BUILTINS & (REFUSED_BUILTINS | ATTRIBUTE_BUILTINS)


def test_interpreter_attribute_names_cover_frames_code_generators_tracebacks() -> None:
    def generator() -> types.GeneratorType[int, None, None]:
        yield 1

    async def coroutine() -> None:
        pass

    async def async_generator():  # type: ignore[no-untyped-def]
        yield 1

    try:
        raise ValueError
    except ValueError as error:
        traceback = error.__traceback__
    running_coroutine = coroutine()
    objects = [sys._getframe(), generator.__code__, generator(), running_coroutine,
               async_generator(), traceback]
    prefixes = ("f_", "co_", "gi_", "cr_", "ag_", "tb_")
    found = {name for obj in objects for name in dir(obj) if name.startswith(prefixes)}
    running_coroutine.close()
    assert found <= INTERPRETER_ATTRIBUTES, found - INTERPRETER_ATTRIBUTES


def test_dangerous_private_names_exist_where_the_table_says() -> None:
    import dataclasses
    import enum
    import string
    import typing

    holders = {"_evaluate": typing.ForwardRef, "_convert_": enum.Enum,
               "_create_": enum.Enum, "_vformat": string.Formatter, "_eval_type": typing,
               "_getframe": sys, "_simple_enum": enum, "_create_fn": dataclasses,
               "_process_class": dataclasses}
    assert holders.keys() == DANGEROUS_PRIVATE_ATTRIBUTES
    for name, holder in holders.items():
        assert hasattr(holder, name), name


def test_protocol_dunders_are_real_special_methods() -> None:
    known = {name for kind in (object, int, float, complex, list, dict, str, type(None))
             for name in dir(kind)} | {"__enter__", "__exit__", "__post_init__", "__copy__",
                                      "__deepcopy__", "__missing__", "__length_hint__",
                                      "__matmul__", "__rmatmul__", "__imatmul__",
                                      "__iadd__", "__isub__", "__imul__", "__itruediv__",
                                      "__ifloordiv__", "__imod__", "__ipow__", "__ilshift__",
                                      "__irshift__", "__iand__", "__ixor__", "__ior__",
                                      "__next__", "__reversed__", "__delitem__",
                                      "__setitem__", "__contains__", "__bytes__",
                                      "__complex__"}
    assert known >= PROTOCOL_DUNDERS, PROTOCOL_DUNDERS - known


def test_denied_and_allowed_modules_are_disjoint() -> None:
    assert not DENIED_MODULES & ALLOWED_MODULES.keys()
