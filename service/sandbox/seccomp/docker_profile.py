"""The Docker containers' seccomp profile, generated from the policy's [container] allow-list.

Docker's profile is an allow-list (anything unnamed fails with the default errno); the zygote's
filter is a deny-list. Generated so that the profile refuses everything the zygote's filter
refuses, with the same errno, save the calls the container runtime makes before that filter
exists (docs/design.md §4). `tests/test_seccomp_filter.py` checks the committed profile equals
this output.
"""

from __future__ import annotations

import json
from typing import Any

from azr_verify.service.sandbox.seccomp.policy import ArgumentRule, SyscallPolicy

DOCKER_ARCHITECTURES = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}
DOCKER_ALLOW = "SCMP_ACT_ALLOW"
DOCKER_ERRNO = "SCMP_ACT_ERRNO"
DOCKER_MASKED_EQUAL = "SCMP_CMP_MASKED_EQ"


def docker_profile(policy: SyscallPolicy) -> dict[str, Any]:
    syscalls: list[dict[str, Any]] = [
        {"comment": group.why, "names": list(group.names), "action": DOCKER_ALLOW}
        for group in policy.container_allow]
    for syscall, rules in _container_rules(policy).items():
        # Allowed only while none of the rules' bits is set: one entry, whose tests Docker ANDs
        # (an entry per rule would be ORed, each letting the other's bits through).
        masks: dict[int, int] = {}
        for rule in rules:
            masks[rule.argument] = masks.get(rule.argument, 0) | rule.mask
        syscalls.append({
            "comment": "; ".join(f"{syscall} without {', '.join(rule.values)}: {rule.why}"
                                 for rule in rules),
            "names": [syscall], "action": DOCKER_ALLOW,
            "args": [{"index": argument, "value": mask, "valueTwo": 0,
                      "op": DOCKER_MASKED_EQUAL} for argument, mask in sorted(masks.items())]})
    # Refusals with another errno than the profile's default keep the zygote's errno.
    other_errnos = sorted({refusal.errno for refusal in policy.refusals
                           if refusal.errno != policy.container_default_errno})
    for number in other_errnos:
        refusals = [refusal for refusal in policy.refusals if refusal.errno == number]
        syscalls.append({
            "comment": "; ".join(f"{refusal.syscall}: {refusal.why}" for refusal in refusals),
            "names": [refusal.syscall for refusal in refusals], "action": DOCKER_ERRNO,
            "errnoRet": number})
    for name, why in policy.needed_before_the_zygote_filter.items():
        syscalls.append({"comment": f"{name}: {why}; the zygote's own filter refuses it",
                         "names": [name], "action": DOCKER_ALLOW})
    return {
        "comment": policy.container_comment,
        "defaultAction": DOCKER_ERRNO,
        "defaultErrnoRet": policy.container_default_errno,
        "archMap": [{"architecture": DOCKER_ARCHITECTURES[name], "subArchitectures": []}
                    for name in policy.architectures],
        "syscalls": syscalls,
    }


def _container_rules(policy: SyscallPolicy) -> dict[str, list[ArgumentRule]]:
    """The argument rules the container enforces too, by syscall."""
    rules: dict[str, list[ArgumentRule]] = {}
    for rule in policy.argument_rules:
        if rule.container:
            rules.setdefault(rule.syscall, []).append(rule)
    return rules


def render_docker_profile(policy: SyscallPolicy) -> str:
    """The profile as the committed `sandbox_images/seccomp.json` holds it."""
    return json.dumps(docker_profile(policy), indent=2) + "\n"
