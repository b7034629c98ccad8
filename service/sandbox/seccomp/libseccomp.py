"""libseccomp through ctypes: the few calls that turn named rules into a BPF program.

ctypes against the C library (Debian's libseccomp2) rather than the `seccomp` Python binding:
the binding is a Debian package for the system interpreter only (python3-seccomp), not on PyPI,
so a virtual environment could not import it; the C library is what both would load anyway.
Its failures become `SandboxUnavailableError` here, and nowhere else.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from types import TracebackType

from azr_verify.service.errors import SandboxUnavailableError

LIBRARY = "libseccomp.so.2"

# Filter return values (linux/seccomp.h; libseccomp's SCMP_ACT_* are the same numbers).
ACTION_ALLOW = 0x7FFF0000
ACTION_KILL_PROCESS = 0x80000000
ACTION_ERRNO = 0x00050000
ERRNO_MASK = 0xFFFF

# libseccomp's return for a name it does not know at all (__NR_SCMP_ERROR); other negative
# numbers are names it knows that the architecture lacks (its pseudo-syscalls).
UNKNOWN_SYSCALL = -1

# How far `named_syscalls` reads libseccomp's table. Linux numbers its syscalls densely (about
# 470 in 2025, one number on every architecture since 5.1); a table reaching past half of this
# fails loudly rather than have numbers above the scan left out of it.
TABLE_SCAN = 4096


def errno_action(number: int) -> int:
    """The filter's return value that makes a syscall fail with `number`."""
    return ACTION_ERRNO | (number & ERRNO_MASK)


class _Attribute(IntEnum):  # enum scmp_filter_attr
    BAD_ARCH_ACTION = 2
    OPTIMIZE = 8


# SCMP_FLTATR_CTL_OPTIMIZE: 2 sorts the syscall checks into a binary tree, so that an allowed
# syscall passes a few comparisons instead of one per rule.
BINARY_TREE = 2


class Compare(IntEnum):  # enum scmp_compare
    NOT_EQUAL = 1
    EQUAL = 4
    MASKED_EQUAL = 7


class _ArgumentComparison(ctypes.Structure):  # struct scmp_arg_cmp
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


@dataclass(frozen=True, slots=True)
class Comparison:
    """One argument test of a rule: `argument` (0-5) compared with `op`; for MASKED_EQUAL,
    (argument & `mask_or_value`) == `value`, else argument `op` `mask_or_value`."""

    argument: int
    op: Compare
    mask_or_value: int
    value: int = 0


def _load() -> ctypes.CDLL:
    try:
        library = ctypes.CDLL(LIBRARY, use_errno=True)
    except OSError as exc:
        raise SandboxUnavailableError(
            f"{LIBRARY} cannot be loaded ({exc}): apt-get install libseccomp2") from exc
    pointer, u32, text = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p
    signatures: dict[str, tuple[list[type], type | None]] = {
        "seccomp_init": ([u32], pointer),
        "seccomp_release": ([pointer], None),
        "seccomp_arch_resolve_name": ([text], u32),
        "seccomp_arch_native": ([], u32),
        "seccomp_arch_add": ([pointer, u32], ctypes.c_int),
        "seccomp_arch_remove": ([pointer, u32], ctypes.c_int),
        "seccomp_attr_set": ([pointer, ctypes.c_int, u32], ctypes.c_int),
        "seccomp_syscall_resolve_name_arch": ([u32, text], ctypes.c_int),
        "seccomp_syscall_resolve_name": ([text], ctypes.c_int),
        # A strdup'ed name (the caller frees it), NULL for a number the table has no name for.
        "seccomp_syscall_resolve_num_arch": ([u32, ctypes.c_int], pointer),
        "seccomp_rule_add_array": ([pointer, u32, ctypes.c_int, ctypes.c_uint,
                                    ctypes.POINTER(_ArgumentComparison)], ctypes.c_int),
        "seccomp_export_bpf": ([pointer, ctypes.c_int], ctypes.c_int),
    }
    for name, (argtypes, restype) in signatures.items():
        function = getattr(library, name)
        function.argtypes = argtypes
        function.restype = restype
    return library


def _check(result: int, what: str) -> None:
    if result < 0:
        raise SandboxUnavailableError(f"libseccomp: {what}: {os.strerror(-result)}")


def _architecture_token(library: ctypes.CDLL, name: str) -> int:
    """libseccomp's token (the kernel's AUDIT_ARCH_* value) for an architecture name."""
    token = int(library.seccomp_arch_resolve_name(name.encode()))
    if token == 0:
        raise SandboxUnavailableError(f"libseccomp does not know the architecture {name!r}")
    return token


def _syscall_number(library: ctypes.CDLL, token: int, name: str) -> int | None:
    number = int(library.seccomp_syscall_resolve_name_arch(token, name.encode()))
    if number == UNKNOWN_SYSCALL:
        raise SandboxUnavailableError(
            f"libseccomp does not know the syscall {name!r} (a newer libseccomp2 does)")
    return number if number >= 0 else None


def architecture_token(architecture: str) -> int:
    """The kernel's AUDIT_ARCH_* value for `architecture`, as seccomp_data.arch holds it."""
    return _architecture_token(_load(), architecture)


def named_syscalls(architecture: str) -> frozenset[int]:
    """Every syscall number libseccomp's table names on `architecture`."""
    library = _load()
    token = _architecture_token(library, architecture)
    free = ctypes.CDLL(None).free  # libc's, which strdup allocated from
    free.argtypes, free.restype = [ctypes.c_void_p], None
    named: set[int] = set()
    for number in range(TABLE_SCAN):
        name = library.seccomp_syscall_resolve_num_arch(token, number)
        if name:
            named.add(number)
            free(name)
    if not named or max(named) >= TABLE_SCAN // 2:
        raise SandboxUnavailableError(
            f"libseccomp's {architecture} table ends at {max(named, default=None)}: "
            f"raise TABLE_SCAN ({TABLE_SCAN}) so that no named syscall is missed")
    return frozenset(named)


def syscall_number(architecture: str, name: str) -> int | None:
    """The syscall's number on `architecture`; None where that architecture has no such call.
    A name libseccomp does not know at all is an error: a refusal must never vanish."""
    library = _load()
    return _syscall_number(library, _architecture_token(library, architecture), name)


class Filter:
    """One libseccomp filter for a single architecture, released on exit from `with`."""

    def __init__(self, architecture: str, default_action: int, bad_arch_action: int) -> None:
        self._library = _load()
        self._token = token = _architecture_token(self._library, architecture)
        self._context = self._library.seccomp_init(default_action)
        if not self._context:
            raise SandboxUnavailableError("libseccomp: seccomp_init failed")
        try:
            self._configure(token, bad_arch_action)
        except SandboxUnavailableError:
            self._library.seccomp_release(self._context)
            raise

    def _configure(self, token: int, bad_arch_action: int) -> None:
        library, context = self._library, self._context
        native = library.seccomp_arch_native()
        if token != native:
            _check(library.seccomp_arch_add(context, token), "seccomp_arch_add")
            _check(library.seccomp_arch_remove(context, native), "seccomp_arch_remove")
        _check(library.seccomp_attr_set(context, _Attribute.BAD_ARCH_ACTION, bad_arch_action),
               "bad architecture action")
        _check(library.seccomp_attr_set(context, _Attribute.OPTIMIZE, BINARY_TREE), "optimize")

    def __enter__(self) -> Filter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._library.seccomp_release(self._context)

    def add_rule(self, action: int, syscall: str, comparisons: Sequence[Comparison] = ()) -> bool:
        """Adds `action` for `syscall` when every comparison holds; returns False (and adds
        nothing) where this architecture has no such syscall."""
        if _syscall_number(self._library, self._token, syscall) is None:
            return False
        # The native number: libseccomp translates it, by name, for the filter's architecture.
        native_number = self._library.seccomp_syscall_resolve_name(syscall.encode())
        array = (_ArgumentComparison * max(1, len(comparisons)))(
            *(_ArgumentComparison(c.argument, c.op, c.mask_or_value, c.value)
              for c in comparisons))
        _check(self._library.seccomp_rule_add_array(self._context, action, native_number,
                                                    len(comparisons), array),
               f"rule for {syscall}")
        return True

    def export_bpf(self) -> bytes:
        """The classic BPF program, as prctl(PR_SET_SECCOMP) takes it."""
        with tempfile.TemporaryFile() as exported:
            _check(self._library.seccomp_export_bpf(self._context, exported.fileno()),
                   "seccomp_export_bpf")
            exported.seek(0)
            return exported.read()
