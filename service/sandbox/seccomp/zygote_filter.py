"""The zygote's seccomp filter: the policy's [zygote] deny-list compiled by libseccomp.

Compiled on the host (the trusted side) and handed to the runner in its start-up environment,
which it installs on itself before any program runs (docs/design.md §4).

Ahead of libseccomp's program stands a short prefix of our own, which answers every syscall
number libseccomp has no name for (policy.toml's [zygote.unnamed_syscalls]). It has to be raw
BPF: libseccomp has no rule for a range of numbers, and a rule by number is translated through
the host's own table by name, so a number without a name cannot be added to a filter compiled
for another architecture (the tests compile aarch64's on x86_64). runc prepends such a prefix
for the same reason (libcontainer/seccomp/patchbpf).
"""

from __future__ import annotations

import platform
import struct
from collections.abc import Iterator

from azr_verify.service.errors import SandboxUnavailableError
from azr_verify.service.sandbox.seccomp.libseccomp import (
    ACTION_ALLOW,
    ACTION_KILL_PROCESS,
    Compare,
    Comparison,
    Filter,
    architecture_token,
    errno_action,
    named_syscalls,
)
from azr_verify.service.sandbox.seccomp.policy import (
    LOW_32_BITS,
    ArgumentRule,
    ArgumentTest,
    OtherAbis,
    SyscallPolicy,
    load_policy,
)

OTHER_ABI_ACTIONS = {OtherAbis.KILL_PROCESS: ACTION_KILL_PROCESS}

# The first number past those the prefix answers, per architecture. x86_64: the x32 bit, so that
# x32 calls reach libseccomp's check and are killed. aarch64 has no other ABI under its
# AUDIT_ARCH: everything up to 0xFFFFFFFE. On both, syscall -1 (0xFFFFFFFF: no call; tracers
# use it to skip one) keeps libseccomp's answer.
ABI_END = {"x86_64": 0x40000000, "aarch64": 0xFFFFFFFF}

# Classic BPF (linux/filter.h) and struct seccomp_data's offsets (linux/seccomp.h).
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JGT_K = 0x25
BPF_JGE_K = 0x35
BPF_RET_K = 0x06
BPF_MAX_JUMP = 0xFF  # jt and jf are one byte: forward only, at most 255 instructions
SECCOMP_DATA_NR = 0
SECCOMP_DATA_ARCH = 4


def rule_comparisons(rule: ArgumentRule) -> Iterator[tuple[Comparison, ...]]:
    """libseccomp rules for one argument rule; the call is refused when any of them matches.
    A 32-bit test masks the argument's high word away, as the kernel ignores it."""
    for value in rule.values.values():
        if rule.test is ArgumentTest.ANY_BIT_SET:
            yield (Comparison(rule.argument, Compare.MASKED_EQUAL, value, value),)
        elif rule.test is ArgumentTest.EQUALS_ANY:
            yield (Comparison(rule.argument, Compare.MASKED_EQUAL, LOW_32_BITS, value),)
        else:
            yield (Comparison(rule.argument, Compare.NOT_EQUAL, value),)


def unnamed_ranges(named: frozenset[int], end: int) -> list[tuple[int, int]]:
    """The numbers below `end` that are not in `named`, as sorted inclusive (first, last)
    ranges: the table's holes, then everything past its highest number."""
    ranges: list[tuple[int, int]] = []
    first: int | None = None  # the start of the hole being walked, if any
    for number in range(max(named) + 1):  # max(named) is named: the last hole closes in here
        if number not in named and first is None:
            first = number
        elif number in named and first is not None:
            ranges.append((first, number - 1))
            first = None
    ranges.append((max(named) + 1, end - 1))
    return ranges


def _instruction(code: int, k: int, jump_true: int = 0, jump_false: int = 0) -> bytes:
    """struct sock_filter in the host's byte order, as seccomp_export_bpf writes it."""
    if not 0 <= jump_true <= BPF_MAX_JUMP or not 0 <= jump_false <= BPF_MAX_JUMP:
        raise SandboxUnavailableError("the unnamed-syscall prefix outgrew BPF's jumps")
    return struct.pack("=HBBI", code, jump_true, jump_false, k)


def unnamed_syscalls_prefix(token: int, ranges: list[tuple[int, int]], action: int) -> bytes:
    """BPF run before libseccomp's program: `action` for a number in `ranges` on the filter's
    own architecture; everything else falls through to libseccomp's program, which starts
    right after it and checks the architecture again itself.

        0        load arch
        1        arch == token ? next : start
        2        load nr
        3+2i     nr >= first_i ? next : start     (ranges ascend: below one, below the rest)
        4+2i     nr > last_i ? the next range's check (or start) : refuse
        3+2n     refuse: return action
        4+2n     start: libseccomp's program
    """
    count = len(ranges)
    refuse, start = 3 + 2 * count, 4 + 2 * count

    def jump(at: int, to: int) -> int:  # BPF counts from the instruction after the jump
        return to - at - 1

    code = [_instruction(BPF_LD_W_ABS, SECCOMP_DATA_ARCH),
            _instruction(BPF_JEQ_K, token, 0, jump(1, start)),
            _instruction(BPF_LD_W_ABS, SECCOMP_DATA_NR)]
    for index, (first, last) in enumerate(ranges):
        at = 3 + 2 * index
        above = at + 2 if index + 1 < count else start  # past this range: the next, if any
        code.append(_instruction(BPF_JGE_K, first, 0, jump(at, start)))
        code.append(_instruction(BPF_JGT_K, last, jump(at + 1, above), jump(at + 1, refuse)))
    code.append(_instruction(BPF_RET_K, action))
    assert len(code) == start
    return b"".join(code)


def compile_zygote_filter(policy: SyscallPolicy, architecture: str) -> bytes:
    """The BPF program refusing what [zygote] refuses on `architecture` and allowing the rest."""
    # ABI_END too: the prefix needs to know where each architecture's numbers end.
    if architecture not in policy.architectures or architecture not in ABI_END:
        raise SandboxUnavailableError(
            f"the sandbox's seccomp policy covers {', '.join(policy.architectures)}, not "
            f"{architecture}: no sandbox can start on this machine")
    prefix = unnamed_syscalls_prefix(
        architecture_token(architecture),
        unnamed_ranges(named_syscalls(architecture), ABI_END[architecture]),
        errno_action(policy.unnamed_syscalls.errno))
    with Filter(architecture, ACTION_ALLOW, OTHER_ABI_ACTIONS[policy.other_abis]) as program:
        for refusal in policy.refusals:
            program.add_rule(errno_action(refusal.errno), refusal.syscall)
        for rule in policy.argument_rules:
            for comparisons in rule_comparisons(rule):
                program.add_rule(errno_action(rule.errno), rule.syscall, comparisons)
        return prefix + program.export_bpf()


def native_zygote_filter() -> bytes:
    """The filter for zygotes on this machine's architecture."""
    return compile_zygote_filter(load_policy(), platform.machine())
