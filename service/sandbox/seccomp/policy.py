"""The sandbox's syscall policy (`policy.toml`), read and checked into typed values.

The file is the one source of the zygote's seccomp filter (`zygote_filter.py`) and of the Docker
containers' profile (`docker_profile.py`); docs/design.md §4 says how the two relate.
"""

from __future__ import annotations

import errno
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from azr_verify.service.errors import SandboxUnavailableError

POLICY_PATH = Path(__file__).with_name("policy.toml")
ARGUMENT_COUNT = 6  # struct seccomp_data holds six arguments
LOW_32_BITS = (1 << 32) - 1
ALL_64_BITS = (1 << 64) - 1


class ArgumentTest(StrEnum):
    """When an argument rule refuses a call (policy.toml explains each)."""

    ANY_BIT_SET = "any_bit_set"  # some value's bit is set in the argument's low 32 bits
    EQUALS_ANY = "equals_any"  # the argument's low 32 bits equal a value
    NOT_EQUAL = "not_equal"  # the whole 64-bit argument differs from the one value


class OtherAbis(StrEnum):
    """What happens to a syscall made through an ABI the filter was not compiled for."""

    KILL_PROCESS = "kill_process"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A syscall refused whatever its arguments."""

    syscall: str
    errno: int
    why: str


@dataclass(frozen=True, slots=True)
class UnnamedSyscalls:
    """The answer to every syscall number libseccomp has no name for (policy.toml says why)."""

    errno: int
    why: str


@dataclass(frozen=True, slots=True)
class ArgumentRule:
    """A syscall refused when its argument `argument` passes `test` against `values`."""

    syscall: str
    argument: int
    test: ArgumentTest
    errno: int
    values: dict[str, int]
    why: str
    container: bool  # the Docker profile refuses these too (only for ANY_BIT_SET)

    @property
    def mask(self) -> int:
        """Every bit an ANY_BIT_SET rule refuses."""
        mask = 0
        for value in self.values.values():
            mask |= value
        return mask


@dataclass(frozen=True, slots=True)
class AllowGroup:
    """Syscalls Docker's allow-list lets through, and why."""

    why: str
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SyscallPolicy:
    architectures: tuple[str, ...]
    other_abis: OtherAbis
    unnamed_syscalls: UnnamedSyscalls
    refusals: tuple[Refusal, ...]
    argument_rules: tuple[ArgumentRule, ...]
    container_comment: str
    container_default_errno: int
    container_allow: tuple[AllowGroup, ...]
    # Refused by the zygote's filter, allowed by the container's: needed before the filter exists.
    needed_before_the_zygote_filter: dict[str, str]

    def refused_names(self) -> frozenset[str]:
        return frozenset(refusal.syscall for refusal in self.refusals)


def load_policy(path: Path = POLICY_PATH) -> SyscallPolicy:
    """Reads and checks the policy; a malformed file fails here, naming what is wrong."""
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
        return _parse(data)
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SandboxUnavailableError(f"{path}: {exc!r}") from exc


def _errno_number(name: str) -> int:
    number = getattr(errno, name, None)
    if not isinstance(number, int) or errno.errorcode.get(number) != name:
        raise ValueError(f"{name!r} is not an errno name")
    return number


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    return value


def _parse(data: dict[str, Any]) -> SyscallPolicy:
    zygote, container = data["zygote"], data["container"]
    refusals: list[Refusal] = []
    for errno_name, table in zygote["refuse"].items():
        number = _errno_number(errno_name)
        refusals += [Refusal(name, number, _text(why, name)) for name, why in table.items()]
    names = [refusal.syscall for refusal in refusals]
    if len(set(names)) != len(names):
        raise ValueError("a syscall is refused under two errnos")
    rules = tuple(_argument_rule(rule, set(names)) for rule in zygote["refuse_arguments"])
    allow = tuple(AllowGroup(_text(group["why"], "why"), tuple(group["names"]))
                  for group in container["allow"])
    allowed = [name for group in allow for name in group.names]
    if len(set(allowed)) != len(allowed):
        raise ValueError("a syscall is allowed twice in [container]")
    needed = {name: _text(why, name)
              for name, why in container["needed_before_the_zygote_filter"].items()}
    if not needed.keys() <= set(names):
        raise ValueError("needed_before_the_zygote_filter names a syscall the zygote allows")
    clash = set(allowed) & (set(names) | {rule.syscall for rule in rules if rule.container})
    if clash:
        raise ValueError(f"[container] allows what the zygote refuses: {sorted(clash)}")
    return SyscallPolicy(
        architectures=tuple(_text(name, "architecture") for name in zygote["architectures"]),
        other_abis=OtherAbis(zygote["other_abis"]),
        unnamed_syscalls=UnnamedSyscalls(_errno_number(zygote["unnamed_syscalls"]["errno"]),
                                         _text(zygote["unnamed_syscalls"]["why"], "why")),
        refusals=tuple(refusals),
        argument_rules=rules,
        container_comment=_text(container["comment"], "comment"),
        container_default_errno=_errno_number(container["default_errno"]),
        container_allow=allow,
        needed_before_the_zygote_filter=needed,
    )


def _argument_rule(rule: dict[str, Any], refused: set[str]) -> ArgumentRule:
    syscall = _text(rule["syscall"], "syscall")
    if syscall in refused:
        raise ValueError(f"{syscall} is refused outright and by its arguments")
    argument, test = rule["argument"], ArgumentTest(rule["test"])
    if not isinstance(argument, int) or not 0 <= argument < ARGUMENT_COUNT:
        raise ValueError(f"{syscall}: argument {argument!r} is not 0-{ARGUMENT_COUNT - 1}")
    values = dict(rule["values"])
    limit = ALL_64_BITS if test is ArgumentTest.NOT_EQUAL else LOW_32_BITS
    for name, value in values.items():
        if not isinstance(value, int) or not 0 <= value <= limit:
            raise ValueError(f"{syscall}: {name} = {value!r} is out of range")
        if test is ArgumentTest.ANY_BIT_SET and value.bit_count() != 1:
            raise ValueError(f"{syscall}: {name} must be a single bit")
    if not values or (test is ArgumentTest.NOT_EQUAL and len(values) != 1):
        raise ValueError(f"{syscall}: {test} takes {'one value' if values else 'values'}")
    container = bool(rule.get("container", False))
    if container and test is not ArgumentTest.ANY_BIT_SET:
        raise ValueError(f"{syscall}: only an {ArgumentTest.ANY_BIT_SET} rule can be the "
                         "container's too")
    return ArgumentRule(syscall=syscall, argument=argument, test=test,
                        errno=_errno_number(rule["errno"]), values=values,
                        why=_text(rule["why"], "why"), container=container)
