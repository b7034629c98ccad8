"""The zygote's seccomp filter, syscall by syscall.

Two ways: the BPF program the runner builds is run here by a small classic-BPF interpreter
against every syscall it names (exact, no kernel involved), and the kernel's enforcement is
checked from inside both sandboxes with calls that would succeed without the filter.
"""

from __future__ import annotations

import ast
import errno
import re
import struct
from pathlib import Path

import pytest

from azr_verify.service.config import BackendName
from azr_verify.service.engine import Engine
from azr_verify.service.models import CheckItem, PolicyName, Verdict
from azr_verify.service.sandbox import runner

from .guards import assert_executed, fresh

UNISTD_64 = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
DENY = runner.SECCOMP_RET_ERRNO | errno.EPERM
NOT_IMPLEMENTED = runner.SECCOMP_RET_ERRNO | errno.ENOSYS
ALLOW = runner.SECCOMP_RET_ALLOW
CLONE_THREAD_FLAGS = 0x100 | 0x800 | 0x10000 | 0x20000  # CLONE_VM|SIGHAND|THREAD|SYSVSEM
FORK_FLAGS = 0x01200011  # CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD (glibc fork)
O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND = 0, 0o1, 0o2, 0o100, 0o1000, 0o2000
O_CLOEXEC = 0o2000000


def run_filter(nr: int, args: tuple[int, ...] = (), arch: int = runner.AUDIT_ARCH_X86_64) -> int:
    """What the runner's filter returns for one syscall (classic BPF, the opcodes it uses)."""
    program = runner.build_seccomp_filter()
    padded = (*args, *([0] * (6 - len(args))))
    # struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }
    data = struct.pack("<iIQ6Q", nr, arch, 0, *padded)
    instructions = [struct.unpack_from("HBBI", program, offset)
                    for offset in range(0, len(program), 8)]
    accumulator, pc = 0, 0
    while True:
        code, jump_true, jump_false, k = instructions[pc]
        if code == runner.BPF_LD_W_ABS:
            (accumulator,) = struct.unpack_from("<I", data, k)
            pc += 1
        elif code in (runner.BPF_JEQ_K, runner.BPF_JGE_K, runner.BPF_JSET_K):
            taken = {runner.BPF_JEQ_K: accumulator == k, runner.BPF_JGE_K: accumulator >= k,
                     runner.BPF_JSET_K: bool(accumulator & k)}[code]
            pc += 1 + (jump_true if taken else jump_false)
        elif code == runner.BPF_RET_K:
            return k
        else:
            raise AssertionError(f"unexpected BPF opcode {code:#x} at {pc}")


def kernel_numbers() -> dict[str, int]:
    if not UNISTD_64.exists():
        pytest.fail(f"{UNISTD_64} is missing: apt-get install linux-libc-dev")
    return {name: int(number) for name, number in
            re.findall(r"#define __NR_(\w+)\s+(\d+)", UNISTD_64.read_text())}


def test_every_named_syscall_has_the_kernels_number() -> None:
    numbers = kernel_numbers()
    wrong = {name: (ours, numbers.get(name)) for name, ours in runner.X86_64_DENIED.items()
             if numbers.get(name) != ours}
    assert not wrong, wrong
    assert numbers["open"] == runner.X86_64_OPEN and numbers["openat"] == runner.X86_64_OPENAT
    assert numbers["clone"] == runner.X86_64_CLONE
    assert numbers["prlimit64"] == runner.X86_64_PRLIMIT64
    assert numbers["fcntl"] == runner.X86_64_FCNTL
    assert numbers["madvise"] == runner.X86_64_MADVISE
    recent = {name: numbers[name] for name in runner.X86_64_DENIED_RECENT if name in numbers}
    assert recent == {name: runner.X86_64_DENIED_RECENT[name] for name in recent}
    assert {numbers["clone3"], numbers["openat2"]} == set(runner.X86_64_ENOSYS)


@pytest.mark.parametrize("name", sorted(runner.X86_64_DENIED))
def test_each_denied_syscall_is_refused(name: str) -> None:
    assert run_filter(runner.X86_64_DENIED[name]) == DENY


def test_syscalls_the_runner_needs_are_allowed() -> None:
    numbers = kernel_numbers()
    for name in ("read", "write", "close", "splice", "poll", "pipe2", "wait4", "pidfd_open",
                 "kill", "mmap", "munmap", "brk", "exit_group", "rt_sigaction", "dup2",
                 "setrlimit", "prctl", "getpid", "fstat", "lseek", "getdents64"):
        assert run_filter(numbers[name]) == ALLOW, name


def test_argument_rules() -> None:
    for flags in (O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND, O_RDONLY | O_CREAT):
        assert run_filter(runner.X86_64_OPEN, (0, flags)) == DENY, flags
        assert run_filter(runner.X86_64_OPENAT, (0, 0, flags)) == DENY, flags
    assert run_filter(runner.X86_64_OPEN, (0, O_RDONLY | O_CLOEXEC)) == ALLOW
    assert run_filter(runner.X86_64_OPENAT, (0, 0, O_RDONLY | O_CLOEXEC)) == ALLOW
    assert run_filter(runner.X86_64_CLONE, (CLONE_THREAD_FLAGS,)) == DENY
    for namespace_flag in (0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                           0x40000000, 0x00020000):
        assert run_filter(runner.X86_64_CLONE, (FORK_FLAGS | namespace_flag,)) == DENY
    assert run_filter(runner.X86_64_CLONE, (FORK_FLAGS,)) == ALLOW
    assert run_filter(runner.X86_64_PRLIMIT64, (0,)) == ALLOW
    for pid in (1, 2, 1 << 32):
        assert run_filter(runner.X86_64_PRLIMIT64, (pid,)) == DENY, pid
    for number in runner.X86_64_ENOSYS:
        assert run_filter(number) == NOT_IMPLEMENTED


def test_fcntl_commands() -> None:
    """Locks, signal ownership, leases and notifications are refused; the rest of fcntl (file
    flags, descriptor flags, pipe sizes) is the program's own business."""
    for name, command in runner.DENIED_FCNTL_COMMANDS.items():
        assert run_filter(runner.X86_64_FCNTL, (3, command)) == DENY, name
    for command in (1, 2, 3, 4, 1031, 1032):  # F_GETFD F_SETFD F_GETFL F_SETFL F_(G|S)ETPIPE_SZ
        assert run_filter(runner.X86_64_FCNTL, (3, command)) == ALLOW, command


def test_madvise_advice_and_recent_syscalls() -> None:
    for name, advice in runner.DENIED_MADVISE_ADVICE.items():
        assert run_filter(runner.X86_64_MADVISE, (0, 4096, advice)) == DENY, name
    for advice in (0, 4, 8, 14, 15):  # NORMAL DONTNEED FREE HUGEPAGE NOHUGEPAGE: malloc's
        assert run_filter(runner.X86_64_MADVISE, (0, 4096, advice)) == ALLOW, advice
    for name, number in runner.X86_64_DENIED_RECENT.items():
        assert run_filter(number) == DENY, name


def test_other_abis_are_refused() -> None:
    assert run_filter(runner.X32_SYSCALL_BIT | 0) == DENY  # x32 read
    assert run_filter(0, arch=0x40000003) == runner.SECCOMP_RET_KILL_PROCESS  # i386


# -- the kernel enforces it, inside both sandboxes ----------------------------------------------

# Calls that succeed for an unprivileged process without the filter; with it each is EPERM.
LIVE_PROBE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def errno_of(result):
    return ctypes.get_errno() if result == -1 else 0
def f(x):
    buffer = ctypes.create_string_buffer(16)
    calls = {
        'getrandom': lambda: libc.syscall(318, buffer, 8, 0),
        'shmget': lambda: libc.shmget(0, 4096, 0o1600),
        'msgget': lambda: libc.msgget(0, 0o1600),
        'semget': lambda: libc.semget(0, 1, 0o1600),
        'memfd_create': lambda: libc.syscall(319, b'x', 0),
        'socket': lambda: libc.socket(1, 1, 0),
        'unshare_nothing': lambda: libc.unshare(0),
        'setpriority_self': lambda: libc.setpriority(0, 0, 1),
        'sched_setaffinity_self': lambda: libc.sched_setaffinity(0, 8, buffer),
        'pidfd_send_signal': lambda: libc.syscall(424, 0, 0, 0, 0),
        'personality_query': lambda: libc.personality(0xffffffff),
        'io_uring_setup': lambda: libc.syscall(425, 1, buffer),
        'userfaultfd': lambda: libc.syscall(323, 0),
    }
    return {name: errno_of(call()) for name, call in calls.items()}
"""


@pytest.mark.parametrize("backend", [BackendName.PROCESS, BackendName.DOCKER], ids=str)
def test_the_kernel_refuses_them_inside_the_sandbox(backend: BackendName,
                                                    request: pytest.FixtureRequest) -> None:
    engine: Engine = request.getfixturevalue(
        "engine" if backend is BackendName.PROCESS else "docker_engine")
    result = engine.check([CheckItem(program=fresh(LIVE_PROBE), input="0")],
                          PolicyName.PERMISSIVE)[0]
    assert_executed([result])
    assert result.verdict is Verdict.ACCEPTED, result
    refused = ast.literal_eval(result.output or "")  # the report of a trusted probe
    assert set(refused.values()) == {errno.EPERM}, refused
