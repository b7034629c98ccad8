"""The zygote's seccomp filter: the policy's [zygote] deny-list compiled by libseccomp.

Compiled on the host (the trusted side) and handed to the runner in its start-up environment,
which it installs on itself before any program runs (docs/design.md §4).
"""

from __future__ import annotations

import platform
from collections.abc import Iterator

from azr_verify.service.errors import SandboxUnavailableError
from azr_verify.service.sandbox.seccomp.libseccomp import (
    ACTION_ALLOW,
    ACTION_KILL_PROCESS,
    Compare,
    Comparison,
    Filter,
    errno_action,
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


def compile_zygote_filter(policy: SyscallPolicy, architecture: str) -> bytes:
    """The BPF program refusing what [zygote] refuses on `architecture` and allowing the rest."""
    if architecture not in policy.architectures:
        raise SandboxUnavailableError(
            f"the sandbox's seccomp policy covers {', '.join(policy.architectures)}, not "
            f"{architecture}: no sandbox can start on this machine")
    with Filter(architecture, ACTION_ALLOW, OTHER_ABI_ACTIONS[policy.other_abis]) as program:
        for refusal in policy.refusals:
            program.add_rule(errno_action(refusal.errno), refusal.syscall)
        for rule in policy.argument_rules:
            for comparisons in rule_comparisons(rule):
                program.add_rule(errno_action(rule.errno), rule.syscall, comparisons)
        return program.export_bpf()


def native_zygote_filter() -> bytes:
    """The filter for zygotes on this machine's architecture."""
    return compile_zygote_filter(load_policy(), platform.machine())
