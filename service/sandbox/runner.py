"""The in-sandbox fork-server ("zygote"). Standard library only; shared by every backend.

Started as `python -s -S -B -P runner.py` (not -I: it would ignore PYTHONHASHSEED) as PID 1 of its
own pid namespace inside the sandbox (bubblewrap or a container), under an unprivileged uid. It
installs the seccomp filter the host compiled on itself once (every child inherits it),
self-tests what a child can do, says hello, then serves request frames from its stdin.
docs/design.md §9 is the contract; the short version:

* **Children only report data.** A child writes one report (a value's repr, an exception's
  class name and message, "not a literal", "no entry") to a private pipe. The zygote never parses
  it: it moves the bytes to the host with splice(2), counts them, and adds what it observed itself
  (how the child ended, the wait status, CPU time and peak memory from wait4, wall time). The
  trusted service decodes everything (`service/sandbox/outcome.py`); timeouts, memory and output
  limits and sandbox errors come only from those observations.
* **No item can read another.** Request bodies go from stdin to the child's pipe with splice(2)
  and reports from the child's pipe to stdout the same way: no program text, input or result of
  any item ever enters the zygote's memory, so a child (a fork of the zygote) holds its own
  request and nothing else. At most one child exists at a time: the next one is forked after the
  previous one was reaped, or in advance while the zygote waits for the host.
* **No item can change another.** The zygote is PID 1 of its namespace with no signal handlers,
  so the kernel drops signals its children send it; the seccomp filter refuses scheduling and
  priority calls, filesystem changes, SysV IPC and randomness; children cannot fork.
* **Determinism cannot be gamed.** The hash seed and a heap-layout shift come from the host,
  secret and fresh per pool start; the zygote removes them from its environment before any
  child exists, and shifts its heap so that object addresses differ between seed groups.

Keep this file free of imports from the service package: it is copied into the Docker image.
"""

from __future__ import annotations

import posix

# --- where small objects go (runs first: see the end of this block) ----------------------------
# Only builtins here, so that the zygote can lay out its heap before it imports anything else.

POOL_BYTES = 4096  # CPython 3.11's pymalloc pool
POOL_HEADER_BYTES = 48
GC_HEADER_BYTES = 16
ALIGN_ATTEMPTS = 300  # per kind
ALIGN_RUN = 3  # consecutive blocks in a row that show the pool is being carved in order
# Small objects that come straight from pymalloc's size classes (no free list of their own in
# front), each with a maker, its block size and the offset of the object in its block. Floats,
# lists, dicts and small tuples are recycled through CPython's per-type free lists, whose order
# the child cannot see: their addresses are not aligned (docs/design.md §9.4).
ALIGNED_KINDS: tuple[tuple[Callable[..., Any], tuple[Any, ...], int, int], ...] = (
    (object, (), 16, 0), (int, ("1000001",), 32, 0),
    # bytes objects fill the size classes of small containers and instances (48-128), functions
    # and lambdas (160), and two larger classes (208, 272).
    *((bytes, (size - 33,), size, 0) for size in (48, 64, 80, 96, 112, 128, 160, 208, 272)),
)


def align_modulus(block: int) -> int:
    """How many pool positions of a size class the layout tells apart (16, fewer where a pool
    holds fewer blocks, keeping one free after the aligned one)."""
    return min(16, (POOL_BYTES - POOL_HEADER_BYTES) // block - 1)


def layout_targets(layout: str | None) -> tuple[int, ...]:
    """Per kind of `ALIGNED_KINDS`, the pool position (mod its `align_modulus`) at which a child
    leaves it; the host draws them ("t0,t1,..."), different between seed groups and secret."""
    if not layout:
        return ()
    targets = tuple(int(part) for part in layout.split(","))
    if len(targets) != len(ALIGNED_KINDS):
        raise ValueError("the layout names a target for each aligned kind")
    return targets


def make_aligner(targets: tuple[int, ...]) -> Callable[[list[Any], int], int]:
    """A function that leaves each kind of `ALIGNED_KINDS` so that its next object lands at a
    pool position that depends on the zygote's seed group (`targets`), whatever the heap held
    before. The zygote runs it before it imports anything, a child before the program's module
    code and again before the call.

    For each kind it makes objects, keeping them in the list it is given (sized once: a
    growing list would free and reuse small blocks), until ALIGN_RUN in a row came from
    consecutive blocks (the pool's freed blocks are spent and it is being carved in order) and
    the last one sits at the target position (mod `align_modulus`) with room after it; the next
    object of that kind lands one block further. Targets of different seed groups differ, so
    `id(object()) % 4096` and the like differ between determinism runs (docs/design.md §9.4).
    Bounded: at most ALIGN_ATTEMPTS objects per kind. It uses only names bound here, before any
    program runs.
    """
    kinds = ALIGNED_KINDS[:len(targets)]
    attempts, pool_bytes, pool_header, align_run = (ALIGN_ATTEMPTS, POOL_BYTES,
                                                    POOL_HEADER_BYTES, ALIGN_RUN)
    moduli = tuple(align_modulus(block) for _, _, block, _ in kinds)
    _zip, _range, _id = zip, range, id

    def align(held: list[Any], slot: int = 0) -> int:
        """Aligns every kind, keeping its objects in `held` from `slot` on; returns the next
        free slot (it stops early when `held` is full)."""
        end = len(held)
        for (maker, maker_args, block, offset), target, modulus in _zip(kinds, targets, moduli):
            capacity = (pool_bytes - pool_header) // block
            previous, run = -1, 0
            for _ in _range(attempts):
                if slot == end:
                    return slot
                made = maker(*maker_args)
                held[slot] = made
                slot += 1
                address = _id(made) - offset
                run = run + 1 if address == previous + block else 0
                position = (address % pool_bytes - pool_header) // block
                if run >= align_run and position % modulus == target and position + 1 < capacity:
                    break
                previous = address
        return slot

    return align


# What the zygote imports (this module's dependencies, then the modules preloaded for
# programs), each after a fresh alignment: every import allocates a great deal, and one
# alignment at the start would be washed out by the first few.
EARLY_IMPORTS = (
    "_signal", "contextlib", "errno", "gc", "itertools", "json", "os", "resource", "select",
    "signal", "struct", "sys", "time", "collections.abc", "typing",
    "bisect", "collections", "functools", "heapq", "math", "operator", "re", "string",
)
START_HELD_SLOTS = 40_000


def _align_at_start() -> list[object]:
    """Lays out the zygote's heap for its seed group before each module it imports, so that the
    addresses of their objects (`id(re.compile)`, `repr(math.pi)`'s object...) differ between
    groups too; also moves glibc's heap top for the large ones (type objects)."""
    targets = layout_targets(posix.environ.get(b"AZR_LAYOUT", b"").decode() or None)
    if not targets:
        return []
    align = make_aligner(targets)
    held: list[object] = [None] * START_HELD_SLOTS
    kept: list[object] = [held, bytearray(16 + 784 * targets[0] + 4096 * targets[-1])]
    slot = 0
    for name in EARLY_IMPORTS:
        slot = align(held, slot)
        try:
            __import__(name)
        except ImportError:
            continue
    align(held, slot)
    return kept


_HELD_AT_START = _align_at_start() if __name__ == "__main__" else []

import _signal as _signal_module  # noqa: E402 - after the early layout (above)
import contextlib  # noqa: E402
import errno  # noqa: E402
import gc  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any, NoReturn  # noqa: E402

RUNNER_PROTOCOL = 3

# --- the wire ----------------------------------------------------------------------------------
# host -> zygote: a frame is FRAME_HEADER (item count) then, per item, ITEM_HEADER and its body.
FRAME_HEADER = struct.Struct(">I")
# mode, body bytes, stdin bytes (after the body; script mode), wall-clock limit in milliseconds,
# most bytes the zygote forwards per output stream.
ITEM_HEADER = struct.Struct(">BIIII")
# The body, encoded by the host and read by the child alone: CHILD_HEADER, then the entry name,
# the call arguments and the program, UTF-8 (surrogates passed through).
# mode, CPU seconds, address-space MB, output limit in characters, report cap in bytes, then
# the byte lengths of the entry name, the arguments and the program.
CHILD_HEADER = struct.Struct(">BIIIIHII")
# Modes: call `entry(<args>)` and report its value, or run the program as a script with the
# item's stdin and capture what it writes to stdout and stderr, and its exit status.
MODE_CALL = 0
MODE_SCRIPT = 1
MAX_ITEMS_PER_FRAME = 4096

# zygote -> host: records, each starting with its type byte.
RECORD_HELLO = 0  # HELLO_RECORD, then that many bytes of JSON (the zygote's own facts)
RECORD_CHUNK = 1  # CHUNK_RECORD, then that many bytes of one of the child's output streams
RECORD_DONE = 2  # DONE_RECORD: what the zygote observed about the child
HELLO_RECORD = struct.Struct(">BI")
CHUNK_RECORD = struct.Struct(">BIBI")  # type, item index, stream, length
STREAM_REPORT = 0  # a call's report (see REPORT_*)
STREAM_STDOUT = 1  # a script's fd 1
STREAM_STDERR = 2  # a script's fd 2
# type, item index, ending, wait status, CPU microseconds, peak RSS KiB, minor page faults,
# wall microseconds, bytes forwarded (all streams)
DONE_RECORD = struct.Struct(">BIBiQQQQI")

# How an execution ended, as the zygote saw it.
ENDING_EXITED = 0  # the child ended by itself (an exit, or a signal the zygote did not send)
ENDING_DEADLINE = 1  # the zygote killed it at its wall-clock deadline
ENDING_OVERFLOW = 2  # the zygote killed it for writing more bytes than the cap to a stream
ENDING_LOST = 3  # the child was gone before it received its whole request (infrastructure)

# The child's report: a tag byte, then its fields.
REPORT_VALUE = ord("V")  # the returned value's repr, UTF-8
REPORT_ERROR = ord("E")  # exception class name, NUL, message (UTF-8)
REPORT_NOT_LITERAL = ord("N")  # the returned value's class name
REPORT_NO_ENTRY = ord("X")  # the entry function is not defined after running the program

ERROR_TEXT_LIMIT = 1000  # characters of an exception message kept
ERROR_TYPE_LIMIT = 200  # characters of an exception class name kept
# The longest error report: tag, a class name of 4-byte characters, NUL, a message whose every
# character became a 6-byte backslash escape.
ERROR_REPORT_BYTES = 1 + 4 * ERROR_TYPE_LIMIT + 1 + 6 * ERROR_TEXT_LIMIT
MAX_LITERAL_DEPTH = 100
MAX_OPEN_FILES = 32
MEGABYTE = 1024 * 1024
SPLICE_CHUNK = 65536
# Exit statuses of a child; never verdicts (the service decides from the report and the ending).
CHILD_EXIT_OK = 0
CHILD_EXIT_FAILED = 2

# Self-test bits: each is set by a probe child when that protection held.
PROBE_FORK_BLOCKED = 1
PROBE_RANDOMNESS_BLOCKED = 2
PROBE_FILESYSTEM_READ_ONLY = 4
PROBE_SCHEDULING_BLOCKED = 8
PROBE_ALL = 15

# Modules a program may import under the default policy, imported once here so that forked
# children find them in sys.modules instead of reading the filesystem. Only the common ones: fork
# cost grows with the zygote's resident memory.
PRELOADED_MODULES = (
    "bisect", "collections", "functools", "heapq", "itertools", "math", "operator", "re",
    "string", "typing",
)

# Environment variables the host sets for the zygote alone; removed before any child exists.
ENV_HASH_SEED = "PYTHONHASHSEED"
ENV_LAYOUT = "AZR_LAYOUT"  # "<index>:<secret>": this zygote's heap-layout shift

# --- seccomp -----------------------------------------------------------------------------------

# The filter itself is policy data (service/sandbox/seccomp/policy.toml), compiled by the host
# with libseccomp and passed in the zygote's environment, hex-encoded: it is there from exec on,
# before anything untrusted runs in this sandbox, so nothing can change it in transit.
ENV_SECCOMP_FILTER = "AZR_SECCOMP_FILTER"
BPF_INSTRUCTION_BYTES = 8  # struct sock_filter
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


def report_cap_bytes(output_limit_chars: int) -> int:
    """The most report bytes forwarded for an execution: a value's repr of `output_limit_chars`
    characters (at most 4 UTF-8 bytes each) behind its tag, or the longest error report."""
    return max(1 + 4 * output_limit_chars, ERROR_REPORT_BYTES)


def read_seccomp_filter(encoded: str | None) -> bytes:
    """The host's BPF program from its hex text; no filter is an error, never an open sandbox."""
    program = bytes.fromhex(encoded or "")
    if not program or len(program) % BPF_INSTRUCTION_BYTES:
        raise ValueError(f"no seccomp filter from the host ({len(program)} bytes)")
    return program


def install_seccomp(program: bytes) -> None:
    """Installs the BPF `program` on the calling process (and so on every child it forks)."""
    import ctypes  # imported here and dropped after: the zygote stays small for cheap forks

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // BPF_INSTRUCTION_BYTES, ctypes.addressof(buffer))
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong,
                      ctypes.c_ulong]
    if prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS failed")
    # Not dumpable: the /proc/<pid> files of the zygote and of every child (environ, mem,
    # maps...) become root's, unreadable wherever a /proc is mounted (a container has one).
    if prctl(PR_SET_DUMPABLE, 0, None, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_DUMPABLE failed")
    if prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP failed")


# --- the child ---------------------------------------------------------------------------------


class _Discard:
    """sys.stdout/sys.stderr in the child: print() costs no syscall and reaches nobody."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


ChildMain = Callable[..., NoReturn]


def _lazy_print_exception(error: BaseException, file: Any) -> None:
    """A script's uncaught exception on its stderr, as the interpreter prints it (traceback
    is imported only by the scripts that need it)."""
    import traceback

    tail = error.__traceback__.tb_next if error.__traceback__ is not None else None
    traceback.print_exception(type(error), error, tail, file=file)


def make_child_main(shift: tuple[int, ...] = ()) -> ChildMain:
    """Builds the function a forked child runs, with everything its report needs bound now.

    A program can rebind module attributes (`json.dumps`, `builtins.repr`, `os.write`, this
    module's globals) but not the closure cells below, so what it returns is reported by code it
    did not change. The report path calls no method of any object the program made: types are
    compared by identity, containers are walked with the builtins' own iterators, the repr is
    taken only of exact builtin literal types, and exception text only of builtin exception
    classes whose arguments are literals. Under policy `permissive` a program that reaches this
    frame's closure through the interpreter's internals (frames, gc, ctypes) can still choose what
    it itself reports; never a timeout, memory or output verdict, and never another item's
    (docs/design.md §9.2).

    `shift` holds, per kind of small object, the pool position (mod `align_modulus`) at which a
    child leaves its allocator before it runs the program's module code and again before it
    calls the entry function (see `layout_targets` and `align_allocators`).
    """
    _type, _id, _len, _repr, _str, _iter, _next = type, id, len, repr, str, iter, next
    _callable, _memoryview, _bytes = callable, memoryview, bytes
    _write, _read, _close, _exit, _dup2 = os.write, os.read, os.close, os._exit, os.dup2
    _closerange, _setrlimit = os.closerange, resource.setrlimit
    _open_fd, _pipe2 = os.open, os.pipe2
    read_only, nonblocking = os.O_RDONLY | os.O_CLOEXEC, os.O_NONBLOCK
    # _signal's own function: signal.signal converts through enum, which touches (and so
    # copies, in a forked child) some hundred pages.
    _signal, _default_int_handler = _signal_module.signal, signal.default_int_handler
    sigint = int(signal.SIGINT)
    _gc_disable = gc.disable
    _chain = itertools.chain.from_iterable
    _unpack = CHILD_HEADER.unpack_from
    _header_size = CHILD_HEADER.size
    _compile, _exec, _eval = compile, exec, eval
    _type_name = type.__dict__["__name__"].__get__
    _type_flags = type.__dict__["__flags__"].__get__
    _exception_args = BaseException.__dict__["args"].__get__
    _base_str = BaseException.__str__
    heap_type_flag = 1 << 9  # Py_TPFLAGS_HEAPTYPE: set for classes defined in Python
    _scalars = (int, float, complex, str, bytes, bool, type(None))
    _containers = (list, tuple, set, frozenset)
    _end = object()
    literal, not_literal, too_big = 0, 1, 2
    # Module constants become cells too: a program may wipe this module's globals.
    max_depth, type_limit, text_limit = MAX_LITERAL_DEPTH, ERROR_TYPE_LIMIT, ERROR_TEXT_LIMIT
    megabyte, exit_ok, exit_failed = MEGABYTE, CHILD_EXIT_OK, CHILD_EXIT_FAILED
    max_fd = MAX_OPEN_FILES * 32
    mode_script = MODE_SCRIPT
    _open, suppress = open, contextlib.suppress
    _print_exception = _lazy_print_exception
    rlimit_cpu, rlimit_as = resource.RLIMIT_CPU, resource.RLIMIT_AS
    fixed_limits = ((resource.RLIMIT_FSIZE, (0, 0)), (resource.RLIMIT_CORE, (0, 0)),
                    (resource.RLIMIT_NOFILE, (MAX_OPEN_FILES, MAX_OPEN_FILES)),
                    (resource.RLIMIT_NPROC, (0, 0)))
    discard = _Discard()
    argument_namespace = {
        "__builtins__": {},
        "_azr_call": lambda *args, **kwargs: (args, kwargs),
        "float": float, "set": set, "frozenset": frozenset,
        "inf": float("inf"), "nan": float("nan"),
        "infj": complex(0, float("inf")), "nanj": complex(0, float("nan")),
    }
    # Where the program's objects go (see make_aligner); held in lists sized once, here in
    # the zygote: a child writes only the slots it fills, a few pages, where a list made in
    # the child would write all of its slots (~10 page faults per child for the two).
    align_allocators = make_aligner(shift)
    held_slots = len(shift) * ALIGN_ATTEMPTS
    held_by_module: list[Any] = [None] * held_slots
    held_by_call: list[Any] = [None] * held_slots

    # Plain loops, not any(): a builtin looked up at call time is one the program can rebind.
    def is_scalar(kind: type) -> bool:
        for scalar in _scalars:  # noqa: SIM110
            if kind is scalar:
                return True
        return False

    def is_container(kind: type) -> bool:
        for container in _containers:
            if kind is container:
                return True
        return kind is dict

    def literal_state(value: Any, budget: int) -> int:
        """literal, not_literal (a non-literal anywhere, a cycle, too deep) or too_big.

        too_big: more than `budget` nodes, so the repr has more than `budget` characters.
        """
        nodes = 0
        path: list[tuple[int, Any]] = []
        on_path: set[int] = set()
        current = value
        while True:
            nodes += 1
            if nodes > budget:
                return too_big
            kind = _type(current)
            if is_container(kind):
                key = _id(current)
                if key in on_path or _len(path) >= max_depth:
                    return not_literal
                on_path.add(key)
                members = _chain(current.items()) if kind is dict else current
                path.append((key, _iter(members)))
            elif not is_scalar(kind):
                return not_literal
            while path:
                key, members = path[-1]
                current = _next(members, _end)
                if current is not _end:
                    break
                path.pop()
                on_path.discard(key)
            else:
                return literal

    def exception_text(error: BaseException) -> str:
        kind = _type(error)
        if literal_state(_exception_args(error), 64) != literal:
            return ""
        if _type_flags(kind) & heap_type_flag:
            return _base_str(error)  # a class the program defined: never its own __str__
        return _str(error)

    def escaped(text: str, limit: int) -> str:
        """`text` with what UTF-8 cannot carry (lone surrogates) escaped, cut to `limit`
        characters after escaping, so that the host's own count agrees."""
        return text.encode("utf-8", "backslashreplace").decode("utf-8")[:limit]

    def class_name(kind: type) -> bytes:
        """A class's name as the host accepts one (1 to ERROR_TYPE_LIMIT printable characters,
        no whitespace): anything else in it becomes '_', an empty name '_'."""
        name = escaped(_type_name(kind), type_limit)
        cleaned = "".join([char if char.isprintable() and not char.isspace() else "_"
                           for char in name])
        return (cleaned or "_").encode("utf-8")

    def report(fd: int, data: bytes, cap: int) -> None:
        view = _memoryview(data)[:cap + 1]
        while view:
            view = view[_write(fd, view):]

    def outcome(request: bytes) -> tuple[bytes, int]:
        """Runs the request; returns the report and the cap on its bytes."""
        (_, cpu_s, memory_mb, output_limit, cap, entry_len, args_len,
         program_len) = _unpack(request)
        _setrlimit(rlimit_cpu, (cpu_s, cpu_s + 1))
        _setrlimit(rlimit_as, (memory_mb * megabyte, memory_mb * megabyte))
        start = _header_size
        entry = request[start:start + entry_len].decode("utf-8", "surrogatepass")
        start += entry_len
        args_text = request[start:start + args_len].decode("utf-8", "surrogatepass")
        start += args_len
        program = request[start:start + program_len].decode("utf-8", "surrogatepass")
        del request
        try:
            args, kwargs = _eval("_azr_call(" + args_text + "\n)", argument_namespace)
            namespace = {"__name__": "__main__"}
            code = _compile(program, "<program>", "exec")
            # Aligned twice: before the module runs (its functions and classes) and right
            # before the call (what f makes). Held in lists sized once: a growing list would
            # free and reuse small blocks.
            align_allocators(held_by_module, 0)
            _exec(code, namespace)
            function = namespace.get(entry)
            if not _callable(function):
                return b"X", cap
            align_allocators(held_by_call, 0)
            # No **{} when there are no keywords: its copy would be one more small allocation
            # between the alignment and the program's first.
            value = function(*args, **kwargs) if kwargs else function(*args)
            # From here on no code of the program runs: no collection (finalizers), no
            # methods of its objects.
            _gc_disable()
            state = literal_state(value, output_limit + 1)
            if state == too_big:
                # More nodes than the limit has characters, so the repr is over the limit:
                # send more bytes than the cap and the zygote's count says output_limit.
                return b"V" + b"?" * cap, cap
            if state == not_literal:
                return b"N" + class_name(_type(value)), cap
            return b"V" + _repr(value).encode("utf-8"), cap
        except BaseException as error:  # what the program raised is data, whatever it is
            _gc_disable()
            try:
                text = exception_text(error)
            except BaseException:  # an unprintable exception is still reported
                text = ""
            return (b"E" + class_name(_type(error)) + b"\0"
                    + escaped(text, text_limit).encode("utf-8")), cap

    def run_script(request: bytes, streams: tuple[int, int, int]) -> int:
        """Runs the program as `python program.py` would, with fds 0-2 on the zygote's pipes;
        returns the exit status. What it writes there is data; the exit status is its own."""
        _, cpu_s, memory_mb, _, _, entry_len, args_len, program_len = _unpack(request)
        start = _header_size + entry_len + args_len
        program = request[start:start + program_len].decode("utf-8", "surrogatepass")
        del request
        for target, fd in enumerate(streams):
            _dup2(fd, target)
            _close(fd)
        # As the interpreter sets them up in the C/UTF-8 locale (an empty environment).
        sys.stdin = _open(0, "r", encoding="utf-8", errors="surrogateescape", closefd=False)
        out = sys.stdout = _open(1, "w", encoding="utf-8", errors="surrogateescape",
                                 closefd=False)
        err = sys.stderr = _open(2, "w", encoding="utf-8", errors="backslashreplace",
                                 closefd=False, buffering=1)
        _setrlimit(rlimit_cpu, (cpu_s, cpu_s + 1))
        _setrlimit(rlimit_as, (memory_mb * megabyte, memory_mb * megabyte))
        status = 0
        try:
            _exec(_compile(program, "<program>", "exec"), {"__name__": "__main__"})
        except SystemExit as exit_request:
            code = exit_request.code
            if code is None:
                status = 0
            elif _type(code) is int or _type(code) is bool:
                # As the interpreter does: a C long, -1 when it does not fit, then 8 bits.
                value = int(code)
                status = (value if -(1 << 63) <= value < (1 << 63) else -1) & 0xFF
            else:
                status = 1
                with suppress(BaseException):
                    err.write(_str(code) + "\n")
        except BaseException as error:
            status = 1
            with suppress(BaseException):
                _print_exception(error, file=err)  # without this frame, as python prints it
        for stream in (out, err):
            with suppress(BaseException):
                stream.flush()
        return status

    def child_main(request_fd: int, report_fd: int, devnull_fd: int,
                   streams: tuple[int, int, int] | None = None) -> NoReturn:
        status = exit_failed
        try:
            kept = sorted((request_fd, report_fd, *(streams or ())))
            low = 3
            for fd in kept:
                _closerange(low, fd)
                low = fd + 1
            _closerange(low, max_fd)
            # fds 0-2 of the child's own, never a description the zygote or another child
            # shares (flags, locks and owners set on one would outlive the child): stdin reads
            # an empty /dev/null, stdout and stderr write into a pipe whose reading end the
            # child holds, so small writes succeed as they would in a terminal-less process.
            stdin = _open_fd("/dev/null", read_only)
            _dup2(stdin, 0)
            _close(stdin)
            sink_read, sink_write = _pipe2(nonblocking)
            _dup2(sink_write, 1)
            _dup2(sink_write, 2)
            _close(sink_write)
            del sink_read  # stays open: a write to fd 1 or 2 finds a reader
            for limit, values in fixed_limits:
                _setrlimit(limit, values)
            _signal(sigint, _default_int_handler)  # as in a fresh interpreter
            sys.stdout = sys.stderr = discard
            sys.stdin = None
            chunks = []
            while True:
                chunk = _read(request_fd, megabyte)
                if not chunk:
                    break
                chunks.append(chunk)
            _close(request_fd)
            request = _bytes().join(chunks)
            del chunks
            if _len(request) < _header_size:
                pass  # the zygote is gone: nothing to run
            elif request[0] == mode_script and streams is not None:
                _close(report_fd)
                status = run_script(request, streams)
            else:
                data, cap = outcome(request)
                del request
                report(report_fd, data, cap)
                status = exit_ok
        except BaseException:  # a child must end in _exit, never unwind into the zygote
            status = exit_failed
        finally:
            _exit(status)

    return child_main


# --- the zygote --------------------------------------------------------------------------------


class _Child:
    """A forked child waiting for (or running) one request, and the zygote's ends of its pipes:
    the request, the output streams it reads (fd -> stream id), a script's stdin."""

    __slots__ = ("outputs", "pid", "pidfd", "request_fd", "stdin_fd")

    def __init__(self, pid: int, pidfd: int | None, request_fd: int, outputs: dict[int, int],
                 stdin_fd: int | None) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.request_fd = request_fd
        self.outputs = outputs
        self.stdin_fd = stdin_fd


class Zygote:
    def __init__(self, in_fd: int = 0, out_fd: int = 1, targets: tuple[int, ...] = (),
                 seed_echo: str | None = None) -> None:
        self.in_fd = in_fd
        self.out_fd = out_fd
        self.devnull_fd = os.open("/dev/null", os.O_RDWR)
        self.has_pidfd = _pidfd_works()
        self.child_main = make_child_main(targets)
        # Said once in the hello (so the host can check the seed is in effect), then dropped.
        self._seed_echo = seed_echo
        # Holding pipes, one per output stream a child can have: its bytes wait there until the
        # stream ends or the pipe is full, then go to the host as one chunk whose length is
        # known before its record is written. A child dribbling a byte at a time costs the
        # host one record, not one per byte.
        self.holds = {stream: _holding_pipe() for stream in (STREAM_REPORT, STREAM_STDOUT,
                                                              STREAM_STDERR)}
        self.output_poller = select.poll()
        self.exit_poller = select.poll()

    # -- plumbing ------------------------------------------------------------------------------

    def _read_exact(self, size: int) -> bytes | None:
        chunks = []
        while size:
            chunk = os.read(self.in_fd, size)
            if not chunk:
                return None
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.out_fd, view):]

    def _splice_exact(self, source: int, target: int, size: int) -> int:
        """Moves `size` bytes from `source` to `target` in the kernel; returns how many moved
        before `target` closed (EPIPE)."""
        moved = 0
        while moved < size:
            try:
                count = os.splice(source, target, min(size - moved, SPLICE_CHUNK))
            except BrokenPipeError:
                return moved
            if count == 0:
                raise EOFError("the host closed the stream mid-frame")
            moved += count
        return moved

    def _discard(self, source: int, size: int) -> None:
        if self._splice_exact(source, self.devnull_fd, size) != size:
            raise OSError(errno.EIO, "cannot discard into /dev/null")

    # -- children -------------------------------------------------------------------------------

    def fork_child(self, script: bool = False) -> _Child:
        request_read, request_write = os.pipe()
        report_read, report_write = os.pipe()
        if script:
            stdin_read, stdin_write = os.pipe()
            stdout_read, stdout_write = os.pipe()
            stderr_read, stderr_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # never returns
            self.child_main(request_read, report_write, self.devnull_fd,
                            (stdin_read, stdout_write, stderr_write) if script else None)
        os.close(request_read)
        os.close(report_write)
        pidfd = os.pidfd_open(pid) if self.has_pidfd else None
        if not script:
            return _Child(pid, pidfd, request_write, {report_read: STREAM_REPORT}, None)
        os.close(report_read)
        for fd in (stdin_read, stdout_write, stderr_write):
            os.close(fd)
        return _Child(pid, pidfd, request_write,
                      {stdout_read: STREAM_STDOUT, stderr_read: STREAM_STDERR}, stdin_write)

    def run_item(self, child: _Child, index: int, body_size: int, stdin_size: int,
                 timeout_ms: int, cap: int) -> None:
        """Hands one request to `child`, forwards what it writes, and says how it ended."""
        moved = self._splice_exact(self.in_fd, child.request_fd, body_size)
        os.close(child.request_fd)
        started = time.monotonic()
        forwarded = 0
        if moved < body_size:
            self._discard(self.in_fd, body_size - moved + stdin_size)
            ending = ENDING_LOST
        else:
            deadline = started + timeout_ms / 1000.0
            ending, forwarded, stdin_left = self._forward(child, index, deadline, cap,
                                                          stdin_size)
            if stdin_left:
                self._discard(self.in_fd, stdin_left)
            if ending == ENDING_EXITED and not self._exits_by(child, deadline):
                ending = ENDING_DEADLINE
        if ending != ENDING_EXITED:
            _kill(child.pid)
        for fd in child.outputs:
            os.close(fd)
        if child.stdin_fd is not None:
            os.close(child.stdin_fd)
        _, status, usage = os.wait4(child.pid, 0)
        if child.pidfd is not None:
            os.close(child.pidfd)
        wall_us = int((time.monotonic() - started) * 1e6)
        cpu_us = int((usage.ru_utime + usage.ru_stime) * 1e6)
        self._write_all(DONE_RECORD.pack(RECORD_DONE, index, ending, status, cpu_us,
                                         usage.ru_maxrss, usage.ru_minflt, wall_us, forwarded))

    def _forward(self, child: _Child, index: int, deadline: float, cap: int,
                 stdin_size: int) -> tuple[int, int, int]:
        """Moves the child's output streams to the host (and a script's stdin to the child)
        until every stream ends, the deadline passes or a stream exceeds the cap.

        Returns the ending, the bytes forwarded, and the stdin bytes never delivered (the
        caller discards them so that the host's stream stays in step)."""
        poller = self.output_poller
        open_outputs = dict(child.outputs)
        for fd in open_outputs:
            poller.register(fd, select.POLLIN)
        stdin_left = stdin_size
        if child.stdin_fd is not None:
            if stdin_left:
                poller.register(child.stdin_fd, select.POLLOUT)
            else:
                os.close(child.stdin_fd)
                child.stdin_fd = None
        counts = dict.fromkeys(open_outputs.values(), 0)
        held = dict.fromkeys(open_outputs.values(), 0)
        ending = ENDING_EXITED
        while open_outputs and ending == ENDING_EXITED:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                ending = ENDING_DEADLINE
                break
            for fd, _ in poller.poll(remaining * 1000.0):
                if fd == child.stdin_fd:
                    stdin_left = self._feed_stdin(child, poller, stdin_left)
                    continue
                stream = open_outputs.get(fd)
                if stream is None:
                    continue
                hold_read, hold_write, capacity = self.holds[stream]
                if held[stream] == capacity:
                    self._flush(index, stream, held)
                try:
                    # Non-blocking into the holding pipe: its slots (one per pipe buffer moved,
                    # however small) can run out before its bytes do.
                    count = os.splice(fd, hold_write,
                                      min(SPLICE_CHUNK, capacity - held[stream]),
                                      flags=os.SPLICE_F_NONBLOCK)
                except BlockingIOError:
                    self._flush(index, stream, held)
                    continue
                if count == 0:
                    poller.unregister(fd)
                    del open_outputs[fd]
                    self._flush(index, stream, held)
                    continue
                if counts[stream] + count > cap:
                    self._discard(hold_read, count)
                    ending = ENDING_OVERFLOW
                    break
                counts[stream] += count
                held[stream] += count
        for stream in held:
            self._flush(index, stream, held)
        for fd in open_outputs:
            poller.unregister(fd)
        if child.stdin_fd is not None and stdin_left:
            poller.unregister(child.stdin_fd)
        return ending, sum(counts.values()), stdin_left

    def _flush(self, index: int, stream: int, held: dict[int, int]) -> None:
        """Sends what a stream's holding pipe holds as one chunk record."""
        count = held[stream]
        if not count:
            return
        self._write_all(CHUNK_RECORD.pack(RECORD_CHUNK, index, stream, count))
        if self._splice_exact(self.holds[stream][0], self.out_fd, count) != count:
            raise EOFError("the host closed the stream")
        held[stream] = 0

    def _feed_stdin(self, child: _Child, poller: Any, left: int) -> int:
        """One splice of the item's stdin from the host's stream into the child's stdin;
        returns the bytes still to deliver (or to discard, once the script stops reading)."""
        assert child.stdin_fd is not None
        try:
            moved = os.splice(self.in_fd, child.stdin_fd, min(left, SPLICE_CHUNK),
                              flags=os.SPLICE_F_NONBLOCK)
        except BlockingIOError:
            return left
        except BrokenPipeError:  # the script closed its stdin or ended
            moved = 0
        else:
            if moved == 0:
                raise EOFError("the host closed the stream mid-item")
        left -= moved
        if not left or not moved:
            poller.unregister(child.stdin_fd)
            os.close(child.stdin_fd)
            child.stdin_fd = None
        return left

    def _exits_by(self, child: _Child, deadline: float) -> bool:
        """The child closed its report pipe: whether it exits before the deadline."""
        if child.pidfd is not None:
            # One poll object for the zygote's life: every object made per item is a page the
            # zygote writes, and after each fork every such page is a copy-on-write fault.
            poller = self.exit_poller
            poller.register(child.pidfd, select.POLLIN)
            exited = bool(poller.poll(max(0.0, deadline - time.monotonic()) * 1000.0))
            poller.unregister(child.pidfd)
            return exited
        while os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.0005)
        return True

    # -- the loop -------------------------------------------------------------------------------

    def self_test(self) -> int:
        """Forks a probe child that tries what no program may do; returns the bits that held."""
        pid = os.fork()
        if pid == 0:
            _probe_main(self.devnull_fd)
        _, status = os.waitpid(pid, 0)
        return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 0

    def serve(self) -> None:
        self._write_hello(self._seed_echo, self.self_test())
        self._seed_echo = None
        # The next child is always forked at the same point, right after the previous one was
        # reaped (or now), before the zygote reads anything: every child then starts from the
        # same heap, whatever came before, so the layout shift alone decides where its objects
        # go; and its fork is off the critical path. It holds no request until it gets its own,
        # and no other child exists meanwhile.
        spare = self.fork_child()
        while True:
            header = self._read_exact(FRAME_HEADER.size)
            if header is None:
                break
            (count,) = FRAME_HEADER.unpack(header)
            if not 0 < count <= MAX_ITEMS_PER_FRAME:
                raise ValueError(f"frame of {count} items")
            for index in range(count):
                item = self._read_exact(ITEM_HEADER.size)
                if item is None:
                    raise EOFError("the host closed the stream mid-frame")
                mode, body_size, stdin_size, timeout_ms, cap = ITEM_HEADER.unpack(item)
                child = spare
                if mode == MODE_SCRIPT:
                    # A script child has pipes the spare lacks; the spare goes first, so that
                    # there is still never more than one child.
                    self._discard_child(spare)
                    child = self.fork_child(script=True)
                self.run_item(child, index, body_size, stdin_size, timeout_ms, cap)
                spare = self.fork_child()
        self._discard_child(spare)

    def _discard_child(self, child: _Child) -> None:
        _kill(child.pid)
        os.waitpid(child.pid, 0)
        for fd in (child.request_fd, *child.outputs):
            os.close(fd)
        if child.pidfd is not None:
            os.close(child.pidfd)

    def _write_hello(self, hash_seed: str | None, probe_bits: int) -> None:
        hello = json.dumps({
            "kind": "hello", "protocol": RUNNER_PROTOCOL, "pid": os.getpid(),
            "python": sys.version.split()[0],
            # The seed only counts if the interpreter read the environment (-E/-I make it
            # ignore PYTHONHASHSEED): report None then, and the host refuses.
            "hash_seed": None if sys.flags.ignore_environment else hash_seed,
            "probe": probe_bits, "pidfd": self.has_pidfd,
        }).encode()
        self._write_all(HELLO_RECORD.pack(RECORD_HELLO, len(hello)) + hello)


def _probe_main(devnull_fd: int) -> NoReturn:
    """A child under the same limits as every other that tries the forbidden; exits with the
    bits of the protections that held."""
    bits = 0
    try:
        for fd in (0, 1, 2):
            os.dup2(devnull_fd, fd)
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
        try:
            if os.fork() == 0:
                os._exit(0)
        except OSError:
            bits |= PROBE_FORK_BLOCKED
        try:
            os.urandom(1)
        except (OSError, RuntimeError, NotImplementedError):
            bits |= PROBE_RANDOMNESS_BLOCKED
        written = 0
        for path in ("/azr-probe", "/dev/azr-probe", "/dev/shm/azr-probe", "/tmp/azr-probe"):
            with contextlib.suppress(OSError):
                os.mkdir(path)
                written += 1
            with contextlib.suppress(OSError):
                os.close(os.open(path + "-file", os.O_WRONLY | os.O_CREAT, 0o600))
                written += 1
        if not written:
            bits |= PROBE_FILESYSTEM_READ_ONLY
        refused = 0
        for call in (lambda: os.sched_setaffinity(1, {0}),
                     lambda: os.setpriority(os.PRIO_PROCESS, 1, 19),
                     lambda: os.sched_setscheduler(1, os.SCHED_IDLE, os.sched_param(0))):
            try:
                call()
            except OSError:
                refused += 1
        if refused == 3:
            bits |= PROBE_SCHEDULING_BLOCKED
        # Signals to PID 1 must be dropped by the kernel: if one were delivered, the zygote
        # would die here and the host would get no hello. (Only where the zygote is PID 1.)
        if os.getppid() == 1:
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
                with contextlib.suppress(OSError):
                    os.kill(1, signum)
    except BaseException:  # report what held so far
        pass
    os._exit(bits)


F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032
HOLD_BYTES = 1 << 20  # the most an unprivileged process may ask for by default


def _holding_pipe() -> tuple[int, int, int]:
    """A pipe as large as the kernel allows (64 KiB where it refuses more): read end, write end
    and capacity."""
    import fcntl

    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError):
        fcntl.fcntl(write_end, F_SETPIPE_SZ, HOLD_BYTES)
    return read_end, write_end, fcntl.fcntl(write_end, F_GETPIPE_SZ)


def _pidfd_works() -> bool:
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _preload() -> None:
    for name in PRELOADED_MODULES:
        with contextlib.suppress(ImportError):
            __import__(name)
    # The first compile() in a process builds the AST node types (hundreds of objects); done
    # here, every child inherits them instead of building them itself.
    compile("def f(x):\n    return [x for _ in (1,)]\n", "<warm-up>", "exec")


def _shift_malloc(targets: tuple[int, ...]) -> bytearray | None:
    """Moves glibc's heap top by an amount that differs between seed groups (784-byte steps,
    distinct mod 4096), for objects too large for the small-object allocator."""
    return bytearray(16 + 784 * targets[0]) if targets else None


def _wipe_environment_block() -> None:
    """Zeroes the environment strings the kernel put on the initial stack: clearing os.environ
    leaves them in memory, where a program reading raw memory would find the secrets."""
    import ctypes

    libc = ctypes.CDLL(None)
    environ = ctypes.POINTER(ctypes.c_char_p).in_dll(libc, "environ")
    index = 0
    while environ[index] is not None:
        address = ctypes.cast(environ, ctypes.POINTER(ctypes.c_void_p))[index]
        ctypes.memset(address, 0, len(environ[index]))
        index += 1


def main() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # PID 1 of its namespace: with no handler installed, the kernel drops every signal a child
    # sends it (Python's default SIGINT handler would let SIGINT through).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    targets = layout_targets(os.environ.get(ENV_LAYOUT))
    _wipe_environment_block()
    # Unsets each variable too. The seed stays only inside the interpreter, the layout only as
    # this zygote's own targets: no local of a frame a child could walk holds either.
    zygote = Zygote(targets=targets, seed_echo=os.environ.pop(ENV_HASH_SEED, None))
    seccomp_filter = read_seccomp_filter(os.environ.pop(ENV_SECCOMP_FILTER, None))
    os.environ.clear()
    install_seccomp(seccomp_filter)
    for name in [name for name in sys.modules if name.split(".")[0] in ("ctypes", "_ctypes")]:
        del sys.modules[name]
    _preload()
    zygote.malloc_shift = _shift_malloc(targets)  # type: ignore[attr-defined]
    del targets
    gc.collect()
    # Objects that exist now are never collected; children forked later then share these
    # pages instead of copying them when the collector walks the heap.
    gc.freeze()
    zygote.serve()


if __name__ == "__main__":
    main()
