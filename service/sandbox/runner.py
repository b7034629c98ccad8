"""The in-sandbox fork-server ("zygote"). Standard library only; shared by every backend.

Started as `python -s -S -B -P runner.py` (not -I: it would ignore PYTHONHASHSEED) as PID 1
of its own pid namespace inside the sandbox (bubblewrap or a container), under an unprivileged
uid. It installs a seccomp filter on itself
once (no sockets, exec, threads, namespaces, ptrace, mount, bpf, keyctl, write-opens, ...; every
child inherits it), imports the common pure modules, then serves frames on stdin/stdout: each
request frame is a JSON list of executions; for each one it forks a child that

  * points fds 0-2 at /dev/null and closes every other inherited descriptor,
  * applies rlimits (CPU, address space, FSIZE=0, NOFILE, CORE=0, NPROC=0 so it cannot fork),
  * parses the (host-validated) literal arguments, runs the program in fresh globals, calls the
    entry function and reports a JSON outcome on a private pipe.

The zygote enforces the wall clock with SIGKILL and caps what it reads from the child. The
trusted service never trusts the outcome beyond its type: it re-parses `repr` with a safe literal
parser. Keep this file free of imports from the service package: it is copied into images.
"""

import contextlib
import errno
import json
import math
import os
import resource
import select
import signal
import struct
import sys
import time
from typing import Any, NoReturn

# A request and an outcome are plain JSON objects on the wire.
Request = dict[str, Any]
Outcome = dict[str, Any]

RUNNER_PROTOCOL = 1
HEADER = struct.Struct(">I")
READ_CHUNK = 65536
ERROR_TEXT_LIMIT = 1000
MAX_LITERAL_DEPTH = 100
MAX_OPEN_FILES = 32
MEGABYTE = 1024 * 1024
# Exit statuses of a child that could not write its outcome.
CHILD_EXIT_OK = 0
CHILD_EXIT_FAILED = 2
CHILD_EXIT_MEMORY = 3

# Modules a program may import under the default policy, imported once here so that forked
# children find them in sys.modules instead of reading the filesystem.
# Only the common ones: fork cost grows with the zygote's resident memory, so rarer modules
# (decimal, fractions, statistics, dataclasses...) are imported by the child that needs them.
PRELOADED_MODULES = (
    "bisect", "collections", "functools", "heapq", "itertools", "math", "operator", "re",
    "string", "typing",
)

LITERAL_SCALARS = (int, float, complex, str, bytes, bool, type(None))

# --- seccomp -----------------------------------------------------------------------------------

PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JGE_K = 0x35
BPF_JSET_K = 0x45
BPF_RET_K = 0x06
SECCOMP_DATA_NR = 0
SECCOMP_DATA_ARCH = 4


def _seccomp_data_arg_low(index: int) -> int:
    # seccomp_data.args[index] is a u64 at offset 16 + 8*index; the low word comes first on
    # little-endian machines, and open flags fit in it.
    return 16 + 8 * index


AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
# x86_64 syscalls denied to the zygote and so to every child. EPERM lets Python raise a clean
# exception. fork/clone stay allowed for the zygote: a child cannot fork because it runs with
# RLIMIT_NPROC=0 under an unprivileged uid, and cannot start threads because the clone filter
# below refuses CLONE_VM/CLONE_THREAD. kill stays allowed because the zygote is PID 1 of its
# own pid namespace: the kernel ignores signals sent to it from inside, and a child sees no
# other process but itself.
X86_64_DENIED = {
    "socket": 41, "connect": 42, "accept": 43, "bind": 49, "listen": 50, "socketpair": 53,
    "accept4": 288, "fork": 57, "vfork": 58, "execve": 59, "execveat": 322,
    "pidfd_send_signal": 424, "pidfd_getfd": 438, "rt_sigqueueinfo": 129,
    "rt_tgsigqueueinfo": 297, "ptrace": 101, "process_vm_readv": 310,
    "process_vm_writev": 311, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
    "unshare": 272, "setns": 308, "bpf": 321, "keyctl": 250, "add_key": 248,
    "request_key": 249, "perf_event_open": 298, "personality": 135, "userfaultfd": 323,
    "init_module": 175, "finit_module": 313, "delete_module": 176, "kexec_load": 246,
    "kexec_file_load": 320, "reboot": 169, "swapon": 167, "swapoff": 168,
    "sethostname": 170, "setdomainname": 171, "iopl": 172, "ioperm": 173, "acct": 163,
    "quotactl": 179, "open_by_handle_at": 304, "name_to_handle_at": 303, "setuid": 105,
    "setgid": 106, "setreuid": 113, "setregid": 114, "setresuid": 117, "setresgid": 119,
    "setgroups": 116, "mknod": 133, "mknodat": 259, "creat": 85, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "fanotify_init": 300, "open_tree": 428,
    "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "mount_setattr": 442, "seccomp": 317, "syslog": 103, "vhangup": 153, "uselib": 134,
    "lookup_dcookie": 212, "settimeofday": 164, "clock_settime": 227, "clock_adjtime": 305,
    "adjtimex": 159, "modify_ldt": 154, "memfd_create": 319, "memfd_secret": 447,
}
X86_64_OPEN = 2  # open(path, flags, mode): flags are args[1]
X86_64_OPENAT = 257  # openat(dirfd, path, flags, mode): flags are args[2]
X86_64_CLONE = 56  # clone(flags, ...): flags are args[0]
X86_64_PRLIMIT64 = 302  # prlimit64(pid, ...): only pid 0 (oneself) is allowed
# Syscalls answered ENOSYS so that the C library falls back to one the filter can inspect
# (clone3 and openat2 keep their flags in a struct a filter cannot read).
X86_64_ENOSYS = (435, 437)
# O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND
WRITE_OPEN_FLAGS = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000
# CLONE_VM | CLONE_THREAD and every CLONE_NEW* namespace flag: no threads, no namespaces.
DENIED_CLONE_FLAGS = (0x100 | 0x10000 | 0x20000 | 0x02000000 | 0x04000000 | 0x08000000
                      | 0x10000000 | 0x20000000 | 0x40000000)


def _bpf(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def build_seccomp_filter() -> bytes:
    """The zygote's BPF program (x86_64). Other architectures fail closed at start-up."""
    machine = os.uname().machine
    if machine != "x86_64":
        raise OSError(errno.ENOSYS, "seccomp filter has no syscall table for " + machine)
    deny = SECCOMP_RET_ERRNO | errno.EPERM
    allow = SECCOMP_RET_ALLOW
    insns = [
        _bpf(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
        _bpf(BPF_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        _bpf(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        _bpf(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
        # The x32 ABI reuses the same numbers with a high bit set: refuse it wholesale.
        _bpf(BPF_JGE_K, 0, 1, X32_SYSCALL_BIT),
        _bpf(BPF_RET_K, 0, 0, deny),
    ]
    for number in sorted(X86_64_DENIED.values()):
        insns += [_bpf(BPF_JEQ_K, 0, 1, number), _bpf(BPF_RET_K, 0, 0, deny)]
    for number in X86_64_ENOSYS:
        insns += [_bpf(BPF_JEQ_K, 0, 1, number),
                  _bpf(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.ENOSYS)]
    # An argument test: if nr == number, load the argument word and return `hit` when
    # (word & mask) != 0, else allow; otherwise fall through to the next rule.
    for number, offset, mask in ((X86_64_OPEN, _seccomp_data_arg_low(1), WRITE_OPEN_FLAGS),
                                 (X86_64_OPENAT, _seccomp_data_arg_low(2), WRITE_OPEN_FLAGS),
                                 (X86_64_CLONE, _seccomp_data_arg_low(0), DENIED_CLONE_FLAGS)):
        insns += [
            _bpf(BPF_JEQ_K, 0, 4, number),
            _bpf(BPF_LD_W_ABS, 0, 0, offset),
            _bpf(BPF_JSET_K, 0, 1, mask),
            _bpf(BPF_RET_K, 0, 0, deny),
            _bpf(BPF_RET_K, 0, 0, allow),
        ]
    # prlimit64(pid, ...) only on oneself: both words of pid must be zero.
    insns += [
        _bpf(BPF_JEQ_K, 0, 6, X86_64_PRLIMIT64),
        _bpf(BPF_LD_W_ABS, 0, 0, _seccomp_data_arg_low(0)),
        _bpf(BPF_JEQ_K, 0, 3, 0),
        _bpf(BPF_LD_W_ABS, 0, 0, _seccomp_data_arg_low(0) + 4),
        _bpf(BPF_JEQ_K, 0, 1, 0),
        _bpf(BPF_RET_K, 0, 0, allow),
        _bpf(BPF_RET_K, 0, 0, deny),
    ]
    insns.append(_bpf(BPF_RET_K, 0, 0, allow))
    return b"".join(insns)


def install_seccomp() -> None:
    """Installs the filter on the calling process (and so on every child it forks)."""
    import ctypes  # imported here and dropped after: the zygote stays small for cheap forks

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    program = build_seccomp_filter()
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // 8, ctypes.addressof(buffer))
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


def _argument_namespace() -> dict[str, Any]:
    inf = float("inf")
    nan = float("nan")
    return {
        "__builtins__": {},
        "_azr_call": lambda *args, **kwargs: (args, kwargs),
        "float": float, "set": set, "frozenset": frozenset,
        "inf": inf, "nan": nan, "infj": complex(0, inf), "nanj": complex(0, nan),
    }


def _is_literal(value: Any, depth: int = 0) -> bool:
    if depth > MAX_LITERAL_DEPTH:
        return False
    kind = type(value)
    if kind in LITERAL_SCALARS:
        return True
    if kind in (list, tuple, set, frozenset):
        return all(_is_literal(item, depth + 1) for item in value)
    if kind is dict:
        return all(_is_literal(k, depth + 1) and _is_literal(v, depth + 1)
                   for k, v in value.items())
    return False


def _safe_text(value: object) -> str:
    try:
        text = str(value)
    except BaseException:  # an exception whose __str__ raises is still reported
        text = "<unprintable>"
    text = text[:ERROR_TEXT_LIMIT]
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _execute(request: Request, argument_namespace: dict[str, Any]) -> Outcome:
    """Runs inside the sandboxed child; returns the outcome dict."""
    try:
        args, kwargs = eval(
            "_azr_call(" + request["args"] + "\n)", argument_namespace)
        namespace = {"__name__": "__main__"}
        exec(compile(request["program"], "<program>", "exec"), namespace)
        function = namespace.get(request["entry"])
        if not callable(function):
            return {"kind": "no_entry",
                    "error": f"entry function {request['entry']!r} is not defined"}
        value = function(*args, **kwargs)
        if not _is_literal(value):
            return {"kind": "not_literal", "error_type": type(value).__name__,
                    "error": f"returned a {type(value).__name__}, which is not a literal"}
        text = repr(value)
        if len(text) > request["output_limit"]:
            return {"kind": "output_limit",
                    "error": f"repr is {len(text)} characters, over the limit of "
                             f"{request['output_limit']}"}
        return {"kind": "value", "repr": text}
    except MemoryError:
        return {"kind": "memory", "error_type": "MemoryError", "error": "memory limit exceeded"}
    except BaseException as exc:  # the program's exception is data, whatever it is
        return {"kind": "error", "error_type": _safe_text(type(exc).__name__),
                "error": _safe_text(exc)}


def _child_main(request: Request, result_fd: int, devnull_fd: int,
                argument_namespace: dict[str, Any]) -> NoReturn:
    status = CHILD_EXIT_OK
    try:
        for fd in (0, 1, 2):
            os.dup2(devnull_fd, fd)
        os.closerange(3, result_fd)
        os.closerange(result_fd + 1, MAX_OPEN_FILES * 32)
        sys.stdout = sys.stderr = _Discard()
        sys.stdin = None
        cpu_seconds = max(1, math.ceil(request["timeout_s"]))
        address_space = request["memory_mb"] * MEGABYTE
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (MAX_OPEN_FILES, MAX_OPEN_FILES))
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
        outcome = _execute(request, argument_namespace)
        data = json.dumps(outcome).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(result_fd, view):]
    except MemoryError:
        status = CHILD_EXIT_MEMORY
    except BaseException:
        status = CHILD_EXIT_FAILED
    os._exit(status)


# --- the zygote --------------------------------------------------------------------------------


class Zygote:
    def __init__(self, in_fd: int = 0, out_fd: int = 1) -> None:
        self.in_fd = in_fd
        self.out_fd = out_fd
        self.devnull_fd = os.open("/dev/null", os.O_RDWR)
        self.argument_namespace = _argument_namespace()
        self.has_pidfd = _pidfd_works()

    def _read_exact(self, size: int) -> bytes | None:
        chunks = []
        while size:
            chunk = os.read(self.in_fd, min(size, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def send(self, payload: object) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        view = memoryview(HEADER.pack(len(body)) + body)
        while view:
            view = view[os.write(self.out_fd, view):]

    def fork_is_blocked(self) -> bool:
        """Self-test: a child with RLIMIT_NPROC=0 must be unable to fork.

        The limit is only enforced for unprivileged users; a zygote started by root without a
        uid switch would let programs fork, so the service refuses such a zygote.
        """
        probe = {"program": "import os\ndef f():\n    os.fork()\n", "entry": "f", "args": "",
                 "timeout_s": 2.0, "memory_mb": 256, "output_limit": 100}
        outcome = self.run_one(probe)
        return outcome.get("kind") == "error" and outcome.get("error_type") in (
            "BlockingIOError", "PermissionError")

    def serve(self) -> None:
        self.send({"kind": "hello", "protocol": RUNNER_PROTOCOL, "pid": os.getpid(),
                   "python": sys.version.split()[0],
                   # The seed only counts if the interpreter read the environment (-E/-I
                   # make it ignore PYTHONHASHSEED): report None then, and the host refuses.
                   "hash_seed": None if sys.flags.ignore_environment
                   else os.environ.get("PYTHONHASHSEED"),
                   "fork_blocked": self.fork_is_blocked()})
        while True:
            header = self._read_exact(HEADER.size)
            if header is None:
                return
            body = self._read_exact(HEADER.unpack(header)[0])
            if body is None:
                return
            requests = json.loads(body)
            self.send([self.run_one(request) for request in requests])

    def run_one(self, request: Request) -> Outcome:
        read_fd, write_fd = os.pipe()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            _child_main(request, write_fd, self.devnull_fd, self.argument_namespace)
        os.close(write_fd)
        deadline = started + request["timeout_s"]
        # A repr of N characters is at most ~6N bytes once JSON-escaped, plus the envelope.
        read_cap = request["output_limit"] * 6 + 4096
        data, overflow, timed_out = self._collect(read_fd, deadline, read_cap)
        os.close(read_fd)
        status = None
        if not (overflow or timed_out):
            status = self._wait_exit(pid, deadline)
            timed_out = status is None
        if status is None:
            _kill(pid)
            _, status = os.waitpid(pid, 0)
        elapsed_ms = (time.monotonic() - started) * 1000.0
        outcome = self._classify(data, status, overflow, timed_out, request)
        outcome["duration_ms"] = round(elapsed_ms, 3)
        return outcome

    def _collect(self, read_fd: int, deadline: float,
                 read_cap: int) -> tuple[bytes, bool, bool]:
        poller = select.poll()
        poller.register(read_fd, select.POLLIN)
        chunks: list[bytes] = []
        size = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return b"".join(chunks), False, True
            if not poller.poll(remaining * 1000.0):
                continue
            chunk = os.read(read_fd, READ_CHUNK)
            if not chunk:
                return b"".join(chunks), False, False
            chunks.append(chunk)
            size += len(chunk)
            if size > read_cap:
                return b"", True, False

    def _wait_exit(self, pid: int, deadline: float) -> int | None:
        """The child closed its pipe: reap it, waiting at most until the deadline.

        Returns the wait status, or None if the child is still running at the deadline.
        """
        if self.has_pidfd:
            pidfd = os.pidfd_open(pid)
            try:
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                remaining = max(0.0, deadline - time.monotonic())
                if not poller.poll(remaining * 1000.0):
                    return None
            finally:
                os.close(pidfd)
            return os.waitpid(pid, 0)[1]
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.0005)

    def _classify(self, data: bytes, status: int, overflow: bool, timed_out: bool,
                  request: Request) -> Outcome:
        if timed_out:
            return {"kind": "timeout",
                    "error": f"exceeded the {request['timeout_s']:.3g}s wall-clock limit"}
        if overflow:
            return {"kind": "output_limit", "error": "result exceeded the output limit"}
        if os.WIFSIGNALED(status):
            signum = os.WTERMSIG(status)
            if signum in (signal.SIGXCPU, signal.SIGKILL):
                return {"kind": "timeout", "error": "exceeded the CPU-time limit"}
            try:
                name = signal.Signals(signum).name
            except ValueError:
                name = f"signal {signum}"
            return {"kind": "crash", "error_type": name, "error": "killed by " + name}
        if data:
            try:
                outcome = json.loads(data)
                if isinstance(outcome, dict) and isinstance(outcome.get("kind"), str):
                    return outcome
            except ValueError:
                pass
            return {"kind": "crash", "error_type": "MalformedResult",
                    "error": "the child wrote a result that is not valid JSON"}
        code = os.WEXITSTATUS(status)
        if code == CHILD_EXIT_MEMORY:
            return {"kind": "memory", "error_type": "MemoryError",
                    "error": "memory limit exceeded while reporting"}
        return {"kind": "crash", "error_type": "NoResult",
                "error": f"the child exited with status {code} without a result"}


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


def main() -> None:
    import gc

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    zygote = Zygote()  # opens /dev/null, which the filter would refuse afterwards
    install_seccomp()
    for name in [name for name in sys.modules if name.split(".")[0] in ("ctypes", "_ctypes")]:
        del sys.modules[name]
    _preload()
    gc.collect()
    # Objects that exist now are never collected; children forked later then share these
    # pages instead of copying them when the collector walks the heap.
    gc.freeze()
    zygote.serve()


if __name__ == "__main__":
    main()
