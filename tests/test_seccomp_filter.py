"""The sandbox's syscall policy (service/sandbox/seccomp/policy.toml), rule by rule.

Three ways: the BPF program libseccomp compiles for the zygote is run here by a small
classic-BPF interpreter against every syscall and argument rule the policy names (exact, no
kernel involved, for each architecture it covers); the generated Docker profile is checked to
refuse what the zygote's filter refuses; and the kernel's enforcement is checked from inside
both sandboxes, and under the Docker profile alone, with a call per syscall and argument value.
"""

from __future__ import annotations

import errno
import functools
import json
import re
import struct
import textwrap
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from azr_verify.service.config import BackendName
from azr_verify.service.errors import SandboxUnavailableError
from azr_verify.service.sandbox import runner
from azr_verify.service.sandbox.bwrap_backend import (
    NOBODY,
    SANDBOX_RUNNER,
    BubblewrapLauncher,
)
from azr_verify.service.sandbox.connection import SubprocessConnection
from azr_verify.service.sandbox.docker.preflight import DEFAULT_SECCOMP_PROFILE
from azr_verify.service.sandbox.pool import ZygotePool
from azr_verify.service.sandbox.protocol import ZygoteSecrets
from azr_verify.service.sandbox.seccomp.docker_profile import render_docker_profile
from azr_verify.service.sandbox.seccomp.libseccomp import (
    ACTION_ALLOW,
    ACTION_KILL_PROCESS,
    errno_action,
    named_syscalls,
    syscall_number,
)
from azr_verify.service.sandbox.seccomp.policy import (
    POLICY_PATH,
    ArgumentRule,
    ArgumentTest,
    Refusal,
    SyscallPolicy,
    load_policy,
)
from azr_verify.service.sandbox.seccomp.zygote_filter import compile_zygote_filter

from .sandboxes import docker_settings, probe_report
from .servers import require_bwrap

POLICY = load_policy()
UNISTD_64 = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
DENY = errno_action(errno.EPERM)
NOT_IMPLEMENTED = errno_action(errno.ENOSYS)
ALLOW = ACTION_ALLOW
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
AUDIT_ARCH_I386 = 0x40000003
X32_SYSCALL_BIT = 0x40000000
HIGH_WORD = 1 << 32
SANDBOX_UID = 65534
CLONE_THREAD_FLAGS = 0x100 | 0x800 | 0x10000 | 0x20000  # CLONE_VM|SIGHAND|THREAD|SYSVSEM
FORK_FLAGS = 0x01200011  # CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD (glibc fork)
O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND = 0, 0o1, 0o2, 0o100, 0o1000, 0o2000
O_CLOEXEC = 0o2000000

# Classic BPF opcodes libseccomp emits.
BPF_LD_W_ABS = 0x20
BPF_ALU_AND_K = 0x54
BPF_JEQ_K = 0x15
BPF_JGT_K = 0x25
BPF_JGE_K = 0x35
BPF_JSET_K = 0x45
BPF_RET_K = 0x06


@functools.cache
def zygote_filter(architecture: str) -> bytes:
    return compile_zygote_filter(POLICY, architecture)


def run_filter(nr: int, args: tuple[int, ...] = (), architecture: str = "x86_64",
               arch: int | None = None) -> int:
    """What the zygote's filter for `architecture` returns for one syscall."""
    program = zygote_filter(architecture)
    padded = (*args, *([0] * (6 - len(args))))
    audit_arch = AUDIT_ARCH[architecture] if arch is None else arch
    # struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }
    data = struct.pack("<IIQ6Q", nr & 0xFFFFFFFF, audit_arch, 0, *padded)
    instructions = [struct.unpack_from("HBBI", program, offset)
                    for offset in range(0, len(program), 8)]
    accumulator, pc = 0, 0
    while True:
        code, jump_true, jump_false, k = instructions[pc]
        if code == BPF_LD_W_ABS:
            (accumulator,) = struct.unpack_from("<I", data, k)
            pc += 1
        elif code == BPF_ALU_AND_K:
            accumulator &= k
            pc += 1
        elif code in (BPF_JEQ_K, BPF_JGT_K, BPF_JGE_K, BPF_JSET_K):
            taken = {BPF_JEQ_K: accumulator == k, BPF_JGT_K: accumulator > k,
                     BPF_JGE_K: accumulator >= k, BPF_JSET_K: bool(accumulator & k)}[code]
            pc += 1 + (jump_true if taken else jump_false)
        elif code == BPF_RET_K:
            return k
        else:
            raise AssertionError(f"unexpected BPF opcode {code:#x} at {pc}")


def number(name: str, architecture: str = "x86_64") -> int:
    found = syscall_number(architecture, name)
    assert found is not None, f"{name} on {architecture}"
    return found


def argument_rule(syscall: str, *, container: bool | None = None) -> ArgumentRule:
    (rule,) = [rule for rule in POLICY.argument_rules if rule.syscall == syscall
               and (container is None or rule.container is container)]
    return rule


def refused_calls(rule: ArgumentRule) -> Iterator[tuple[str, int]]:
    """Per value of an argument rule, an argument that must be refused."""
    for name, value in rule.values.items():
        if rule.test is ArgumentTest.NOT_EQUAL:
            yield f"{name}+1", value + 1
        else:
            yield name, value


def kernel_numbers() -> dict[str, int]:
    if not UNISTD_64.exists():
        pytest.fail(f"{UNISTD_64} is missing: apt-get install linux-libc-dev")
    return {name: int(number) for name, number in
            re.findall(r"#define __NR_(\w+)\s+(\d+)", UNISTD_64.read_text())}


def test_every_named_syscall_has_the_kernels_number() -> None:
    """libseccomp's table agrees with the kernel's headers (names newer than the headers are
    checked where the headers know them)."""
    numbers = kernel_numbers()
    named = POLICY.refused_names() | {rule.syscall for rule in POLICY.argument_rules}
    wrong = {name: (number(name), numbers[name]) for name in named
             if name in numbers and number(name) != numbers[name]}
    assert not wrong, wrong
    # Newer than some systems' headers.
    assert named - numbers.keys() <= {"cachestat", "fchmodat2"}


@pytest.mark.parametrize("refusal", POLICY.refusals, ids=lambda refusal: refusal.syscall)
def test_each_refused_syscall_is_refused(refusal: Refusal) -> None:
    assert run_filter(number(refusal.syscall)) == errno_action(refusal.errno)


def test_the_policy_refuses_at_least_what_the_hand_built_filter_did() -> None:
    """The names, errnos and argument values of the filter this policy replaced."""
    refused = {refusal.syscall: refusal.errno for refusal in POLICY.refusals}
    assert len([name for name, code in refused.items() if code == errno.EPERM]) >= 151
    assert {name for name, code in refused.items() if code == errno.ENOSYS} \
        == {"clone3", "openat2"}
    assert argument_rule("open").values == argument_rule("openat").values
    assert sum(argument_rule("open").values.values()) == O_WRONLY | O_RDWR | O_CREAT \
        | O_TRUNC | O_APPEND
    clone_bits = argument_rule("clone", container=False).mask \
        | argument_rule("clone", container=True).mask
    assert clone_bits == 0x100 | 0x10000 | 0x20000 | 0x7E000000
    assert set(argument_rule("fcntl").values.values()) == {6, 7, 8, 10, 15, 37, 38, 1024, 1026}
    assert set(argument_rule("madvise").values.values()) == {3, 9, 20, 21, 22, 23}


def test_syscalls_the_runner_needs_are_allowed() -> None:
    numbers = kernel_numbers()
    for name in ("read", "write", "close", "splice", "poll", "pipe2", "wait4", "pidfd_open",
                 "kill", "mmap", "munmap", "brk", "exit_group", "rt_sigaction", "dup2",
                 "setrlimit", "prctl", "getpid", "fstat", "lseek", "getdents64"):
        assert run_filter(numbers[name]) == ALLOW, name


def test_argument_rules() -> None:
    open_, openat, clone = number("open"), number("openat"), number("clone")
    for flags in (O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND, O_RDONLY | O_CREAT):
        assert run_filter(open_, (0, flags)) == DENY, flags
        assert run_filter(openat, (0, 0, flags)) == DENY, flags
    assert run_filter(open_, (0, O_RDONLY | O_CLOEXEC)) == ALLOW
    assert run_filter(openat, (0, 0, O_RDONLY | O_CLOEXEC)) == ALLOW
    assert run_filter(clone, (CLONE_THREAD_FLAGS,)) == DENY
    for namespace_flag in (0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                           0x40000000, 0x00020000):
        assert run_filter(clone, (FORK_FLAGS | namespace_flag,)) == DENY
    assert run_filter(clone, (FORK_FLAGS,)) == ALLOW
    prlimit64 = number("prlimit64")
    assert run_filter(prlimit64, (0,)) == ALLOW
    for pid in (1, 2, 1 << 32):
        assert run_filter(prlimit64, (pid,)) == DENY, pid
    for name in ("clone3", "openat2"):
        assert run_filter(number(name)) == NOT_IMPLEMENTED


@pytest.mark.parametrize("architecture", POLICY.architectures)
def test_every_argument_rule_on_every_architecture(architecture: str) -> None:
    """Each value of each rule is refused, also with garbage in the high word of a 32-bit
    argument (the kernel ignores it); the argument with no refused value passes."""
    for rule in POLICY.argument_rules:
        nr = syscall_number(architecture, rule.syscall)
        if nr is None:  # aarch64 has no open(2)
            continue
        for name, value in refused_calls(rule):
            args = [0] * 6
            args[rule.argument] = value
            assert run_filter(nr, tuple(args), architecture) == errno_action(rule.errno), name
            if rule.test is not ArgumentTest.NOT_EQUAL:
                args[rule.argument] = value | HIGH_WORD
                assert run_filter(nr, tuple(args), architecture) \
                    == errno_action(rule.errno), f"{name} with a high word"
        assert run_filter(nr, (), architecture) == ALLOW, rule.syscall


@pytest.mark.parametrize("architecture", POLICY.architectures)
def test_every_refusal_on_every_architecture(architecture: str) -> None:
    present = 0
    for refusal in POLICY.refusals:
        nr = syscall_number(architecture, refusal.syscall)
        if nr is not None:  # e.g. aarch64 has no fork, open or mkdir: nothing to refuse
            present += 1
            assert run_filter(nr, (), architecture) == errno_action(refusal.errno), \
                refusal.syscall
    assert present > 100
    assert run_filter(number("read", architecture), (), architecture) == ALLOW


def test_fcntl_commands() -> None:
    """Locks, signal ownership, leases and notifications are refused; the rest of fcntl (file
    flags, descriptor flags, pipe sizes) is the program's own business."""
    fcntl = number("fcntl")
    for name, command in argument_rule("fcntl").values.items():
        assert run_filter(fcntl, (3, command)) == DENY, name
    for command in (1, 2, 3, 4, 1031, 1032):  # F_GETFD F_SETFD F_GETFL F_SETFL F_(G|S)ETPIPE_SZ
        assert run_filter(fcntl, (3, command)) == ALLOW, command


def test_madvise_advice_and_recent_syscalls() -> None:
    madvise = number("madvise")
    for name, advice in argument_rule("madvise").values.items():
        assert run_filter(madvise, (0, 4096, advice)) == DENY, name
    for advice in (0, 4, 8, 14, 15):  # NORMAL DONTNEED FREE HUGEPAGE NOHUGEPAGE: malloc's
        assert run_filter(madvise, (0, 4096, advice)) == ALLOW, advice
    assert run_filter(number("cachestat")) == DENY


def test_other_abis_are_refused() -> None:
    """Another ABI's numbers would slip past every rule: the process is killed (the x32 ABI,
    x86_64's numbers with a high bit, was EPERM under the hand-built filter; killing it is
    libseccomp's way and no weaker)."""
    assert run_filter(X32_SYSCALL_BIT | 0) == ACTION_KILL_PROCESS  # x32 read
    assert run_filter(0, arch=AUDIT_ARCH_I386) == ACTION_KILL_PROCESS  # i386
    assert run_filter(0, architecture="aarch64", arch=AUDIT_ARCH["x86_64"]) \
        == ACTION_KILL_PROCESS
    # Syscall -1 is no call (the kernel answers ENOSYS; tracers use it to skip one): libseccomp
    # lets it through where the hand-built filter said EPERM.
    assert run_filter(-1) == ALLOW


@pytest.mark.parametrize("architecture", POLICY.architectures)
def test_numbers_libseccomp_cannot_name_answer_enosys(architecture: str) -> None:
    """Past the highest number libseccomp's table names, and in its holes, ENOSYS (syscalls
    newer than the host's libseccomp, which no refusal can name); every edge of the prefix's
    ranges, on the filter's own architecture only."""
    named = named_syscalls(architecture)
    highest = max(named)
    unnamed = POLICY.unnamed_syscalls.errno
    assert unnamed == errno.ENOSYS

    def answer(nr: int) -> int:
        return run_filter(nr, (), architecture)

    # The highest known keeps its own verdict (as does every name, tested above); past it, up
    # to the ABI's end, ENOSYS.
    assert answer(highest) in (ALLOW, DENY, NOT_IMPLEMENTED)
    for nr in (highest + 1, highest + 2, 1000, 0x3FFFFFFF):
        assert answer(nr) == NOT_IMPLEMENTED, hex(nr)
    if architecture == "x86_64":  # the x32 bit: libseccomp kills, as before
        assert answer(X32_SYSCALL_BIT) == ACTION_KILL_PROCESS
        assert answer(X32_SYSCALL_BIT | (highest + 1)) == ACTION_KILL_PROCESS
    else:  # aarch64 has no x32: ENOSYS up to 0xFFFFFFFE
        assert answer(X32_SYSCALL_BIT) == NOT_IMPLEMENTED
        assert answer(0xFFFFFFFE) == NOT_IMPLEMENTED
    assert answer(-1) == ALLOW  # no call: the kernel answers ENOSYS itself, tracers skip one
    # Holes inside the table: each edge, and the named numbers around them keep their verdicts.
    holes = [nr for nr in range(highest) if nr not in named]
    assert holes, "libseccomp's table has holes on both architectures"
    for nr in holes:
        assert answer(nr) == NOT_IMPLEMENTED, nr
    refused_with_enosys = {syscall_number(architecture, refusal.syscall)
                           for refusal in POLICY.refusals if refusal.errno == errno.ENOSYS}
    for nr in named - refused_with_enosys:
        assert answer(nr) != NOT_IMPLEMENTED, nr
    # Another architecture's numbers never get the prefix's answer: libseccomp's check kills.
    other = AUDIT_ARCH["aarch64" if architecture == "x86_64" else "x86_64"]
    assert run_filter(highest + 1, (), architecture, arch=other) == ACTION_KILL_PROCESS
    assert run_filter(holes[0], (), architecture, arch=AUDIT_ARCH_I386) == ACTION_KILL_PROCESS


def test_an_architecture_the_policy_does_not_cover_is_refused_at_start() -> None:
    with pytest.raises(SandboxUnavailableError, match="covers x86_64, aarch64, not riscv64"):
        compile_zygote_filter(POLICY, "riscv64")


def test_a_syscall_libseccomp_does_not_know_fails_the_compilation(tmp_path: Path) -> None:
    """A misspelt or too-new name must stop the service, never drop a refusal silently."""
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(POLICY_PATH.read_text().replace(
        "[zygote.refuse.EPERM]\n", '[zygote.refuse.EPERM]\nno_such_call = "a typo"\n', 1))
    with pytest.raises(SandboxUnavailableError, match="does not know the syscall 'no_such_call'"):
        compile_zygote_filter(load_policy(policy_file), "x86_64")


def test_a_container_allowing_what_the_zygote_refuses_is_refused(tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(POLICY_PATH.read_text().replace(
        '"fsync", "fdatasync", "splice"', '"fsync", "fdatasync", "splice", "mincore"', 1))
    with pytest.raises(SandboxUnavailableError, match="allows what the zygote refuses"):
        load_policy(policy_file)


def test_the_runner_refuses_to_start_without_a_filter() -> None:
    for missing in (None, "", "00" * 7):
        with pytest.raises(ValueError, match="no seccomp filter"):
            runner.read_seccomp_filter(missing)


class _NoFilterLauncher(BubblewrapLauncher):
    """Starts zygotes whose environment lacks the filter."""

    def launch(self, secrets: ZygoteSecrets, index: int) -> SubprocessConnection:
        argv = [*self._base_argv, "--", self.interpreter.executable, "-s", "-S", "-B", "-P",
                SANDBOX_RUNNER]
        user = NOBODY if self._switch_uid else None
        environment = secrets.environment()
        del environment[runner.ENV_SECCOMP_FILTER]
        return SubprocessConnection(f"no-filter-{index}", argv, user=user, group=user,
                                    env=environment)


def test_a_zygote_without_its_filter_never_serves() -> None:
    require_bwrap()
    pool = ZygotePool(_NoFilterLauncher(), zygotes=1, seed_groups=1)
    with pytest.raises(SandboxUnavailableError, match="did not start"):
        pool.start()


# -- the Docker profile -------------------------------------------------------------------------


def profile_actions(profile: dict[str, object]) -> dict[str, list[dict[str, object]]]:
    entries: dict[str, list[dict[str, object]]] = {}
    syscalls = profile["syscalls"]
    assert isinstance(syscalls, list)
    for entry in syscalls:
        for name in entry["names"]:
            entries.setdefault(name, []).append(entry)
    return entries


def test_the_committed_docker_profile_is_the_generated_one() -> None:
    assert DEFAULT_SECCOMP_PROFILE.read_text() == render_docker_profile(POLICY), \
        "run: python -m azr_verify.service.sandbox.seccomp sandbox_images/seccomp.json"


def test_the_docker_profile_refuses_what_the_zygote_refuses() -> None:
    """An allow-list beside a deny-list: every syscall the zygote's filter refuses is refused by
    the profile with the same errno (by its default, or by an entry of its own), save the ones
    the container runtime needs before the zygote's filter exists."""
    policy: SyscallPolicy = POLICY
    profile = json.loads(DEFAULT_SECCOMP_PROFILE.read_text())
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    entries = profile_actions(profile)
    needed = policy.needed_before_the_zygote_filter
    assert set(needed) == {"execve"}
    for refusal in policy.refusals:
        if refusal.syscall in needed:
            assert [entry["action"] for entry in entries[refusal.syscall]] == ["SCMP_ACT_ALLOW"]
            continue
        actions = [(entry["action"], entry.get("errnoRet")) for entry in
                   entries.get(refusal.syscall, [])]
        if refusal.errno == profile["defaultErrnoRet"]:
            assert actions in ([], [("SCMP_ACT_ERRNO", refusal.errno)]), refusal.syscall
        else:
            assert actions == [("SCMP_ACT_ERRNO", refusal.errno)], refusal.syscall
    for syscall in {rule.syscall for rule in policy.argument_rules}:
        # Allowed only while no bit of a rule the container shares is set; the zygote's filter
        # tests the rest of the arguments.
        (entry,) = entries[syscall]
        assert entry["action"] == "SCMP_ACT_ALLOW"
        shared = [rule for rule in policy.argument_rules
                  if rule.syscall == syscall and rule.container]
        expected = [{"index": rule.argument, "value": rule.mask, "valueTwo": 0,
                     "op": "SCMP_CMP_MASKED_EQ"} for rule in shared]
        assert entry.get("args", []) == expected, syscall


def test_the_docker_profile_covers_the_filters_architectures() -> None:
    profile = json.loads(DEFAULT_SECCOMP_PROFILE.read_text())
    assert [entry["architecture"] for entry in profile["archMap"]] \
        == [f"SCMP_ARCH_{name.upper()}" for name in POLICY.architectures]
    assert all(entry["subArchitectures"] == [] for entry in profile["archMap"])


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
    refused = probe_report(request, backend, LIVE_PROBE)  # the report of a trusted probe
    assert set(refused.values()) == {errno.EPERM}, refused


# Every argument -1: fds are invalid, pointers fault, flags are out of range, so a call the
# filter let through by mistake would fail harmlessly rather than act.
PER_RULE_PROBE = textwrap.dedent("""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    def probe():
        wrong = {}
        for label, nr, args, expected in CALLS:
            ctypes.set_errno(0)
            result = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(arg) for arg in args))
            got = ctypes.get_errno() if result == -1 else 0
            if got != expected:
                wrong[label] = got
        return wrong, len(CALLS)
""")
EVERY_ARGUMENT_INVALID = (-1,) * 6
CLONE_THREAD = 0x10000  # without CLONE_SIGHAND: the kernel itself would say EINVAL


def rule_arguments(rule: ArgumentRule, value: int) -> tuple[int, ...]:
    """Arguments for a call that the rule refuses and that would be harmless if it did not."""
    args = [-1] * 6
    if rule.syscall == "clone":
        value |= CLONE_THREAD
    elif rule.syscall == "madvise":
        args[:2] = [0, 0]  # no range: unfiltered, even a known advice does nothing
    elif rule.syscall == "prlimit64":
        args[1:] = [0] * 5  # RLIMIT_CPU, no new and no old limit: a read of nothing
    args[rule.argument] = value
    return tuple(args)


def probe_calls(*, zygote: bool) -> list[tuple[str, int, tuple[int, ...], int]]:
    """(label, number, arguments, errno expected) for every refusal and argument value the
    zygote's filter (or, with `zygote` false, the Docker profile alone) refuses."""
    calls: list[tuple[str, int, tuple[int, ...], int]] = [
        (refusal.syscall, number(refusal.syscall), EVERY_ARGUMENT_INVALID, refusal.errno)
        for refusal in POLICY.refusals
        if zygote or refusal.syscall not in POLICY.needed_before_the_zygote_filter]
    for rule in POLICY.argument_rules:
        if not (zygote or rule.container):
            continue
        for name, value in refused_calls(rule):
            calls.append((f"{rule.syscall}:{name}", number(rule.syscall),
                           rule_arguments(rule, value), rule.errno))
            if rule.test is ArgumentTest.EQUALS_ANY:
                calls.append((f"{rule.syscall}:{name}+high word", number(rule.syscall),
                              rule_arguments(rule, value | HIGH_WORD), rule.errno))
    return calls


def probe_source(calls: list[tuple[str, int, tuple[int, ...], int]], tail: str) -> str:
    return f"CALLS = {calls!r}\n{PER_RULE_PROBE}{tail}"


@pytest.mark.skipif(not UNISTD_64.exists(), reason="the probe uses x86_64 numbers")
@pytest.mark.parametrize("backend", [BackendName.PROCESS, BackendName.DOCKER], ids=str)
def test_every_rule_of_the_policy_is_enforced_inside_the_sandbox(
        backend: BackendName, request: pytest.FixtureRequest) -> None:
    calls = probe_calls(zygote=True)
    program = probe_source(calls, "def f(x):\n    return probe()\n")
    report = probe_report(request, backend, program)
    assert report == ({}, len(calls))


@pytest.mark.docker
@pytest.mark.skipif(not UNISTD_64.exists(), reason="the probe uses x86_64 numbers")
def test_the_docker_profile_alone_refuses_what_the_zygote_refuses(docker_ready: None) -> None:
    """No runner and so no zygote filter here: Docker's enforcement of the generated profile.
    The runtime answers ENOSYS, ahead of the profile, for syscalls newer than its own table
    (cachestat and fchmodat2 for some): refused all the same."""
    settings = docker_settings()
    calls = probe_calls(zygote=False)
    program = probe_source(calls, "import json\nprint(json.dumps(probe()))\n")
    profile = json.dumps(json.loads(DEFAULT_SECCOMP_PROFILE.read_text()))
    output = docker.from_env(timeout=30).containers.run(
        settings.docker_image, ["python3", "-s", "-S", "-c", program], remove=True,
        user=f"{SANDBOX_UID}:{SANDBOX_UID}", network_mode="none", read_only=True,
        cap_drop=["ALL"], security_opt=["no-new-privileges:true", f"seccomp={profile}"])
    wrong, count = json.loads(output)
    assert count == len(calls)
    assert set(wrong.values()) <= {errno.ENOSYS}, wrong
    assert set(wrong) <= {"cachestat", "fchmodat2"}, wrong
