"""The process (bubblewrap) backend: the zygote's kernel state read back from /proc, and the
start-up refusals that keep an unsafe zygote from ever serving.

The refusal tests wrap the real launcher to produce failures the real thing cannot be made to
produce on demand (a wrong seed, a garbled hello, a root-owned sandbox); everything they start is
a real process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from azr_verify.service.engine import Engine
from azr_verify.service.errors import SandboxUnavailableError
from azr_verify.service.sandbox.bwrap_backend import (
    NOBODY,
    SANDBOX_RUNNER,
    BubblewrapLauncher,
)
from azr_verify.service.sandbox.connection import SubprocessConnection
from azr_verify.service.sandbox.pool import ZygotePool
from azr_verify.service.sandbox.protocol import HELLO_RECORD, RecordType, ZygoteSecrets

from .servers import require_bwrap

SANDBOX_UID = 65534


def hello_record(hello: dict[str, object]) -> bytes:
    body = json.dumps(hello).encode()
    return HELLO_RECORD.pack(RecordType.HELLO, len(body)) + body


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def runner_pid(bwrap_pid: int) -> int:
    """The zygote: bubblewrap's child, PID 1 of the sandbox's pid namespace."""
    children = Path(f"/proc/{bwrap_pid}/task/{bwrap_pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


@pytest.fixture
def launcher() -> Iterator[BubblewrapLauncher]:
    require_bwrap()
    started = BubblewrapLauncher()
    yield started
    started.close()


def test_zygote_kernel_state(engine: Engine) -> None:
    """Read back what the kernel enforces on a serving zygote, as an operator would."""
    bwrap_pids = [pid for pid in engine.pool.zygote_pids() if pid]
    assert bwrap_pids
    for bwrap in bwrap_pids:
        pid = runner_pid(bwrap)
        status = proc_status(pid)
        if os.geteuid() == 0:
            assert status["Uid"].split() == [str(SANDBOX_UID)] * 4
            assert status["Gid"].split() == [str(SANDBOX_UID)] * 4
        assert status["NoNewPrivs"] == "1"
        assert status["Seccomp"] == "2"  # filter mode
        assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0
        assert status["NSpid"].split()[-1] == "1"  # PID 1 of its own pid namespace
        # Every namespace is its own, not the service's.
        for kind in ("pid", "net", "ipc", "uts", "mnt", "user", "cgroup"):
            assert os.readlink(f"/proc/{pid}/ns/{kind}") != os.readlink(f"/proc/self/ns/{kind}")
        # Its root is read-only and holds nothing but the interpreter's files and /dev/null.
        mounts = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
        root = next(line.split() for line in mounts if line.split()[4] == "/")
        assert "ro" in root[5].split(","), root
        targets = {line.split()[4] for line in mounts}
        assert "/dev/null" in targets and not {"/dev/urandom", "/dev/random", "/dev/shm",
                                                "/tmp", "/proc"} & targets
        writable = [line for line in mounts if "rw" in line.split()[5].split(",")
                    and line.split()[4] != "/dev/null"]
        assert not writable, writable


def test_zygote_refuses_when_a_program_could_fork(launcher: BubblewrapLauncher) -> None:
    """RLIMIT_NPROC is not enforced for host root: a sandbox left running as root fails its
    own probe and never serves."""
    if os.geteuid() != 0:
        pytest.skip("only a service running as root can start a root-owned sandbox")
    launcher._switch_uid = False  # what a launcher without the uid switch would do
    pool = ZygotePool(launcher, zygotes=1, seed_groups=1)
    with pytest.raises(SandboxUnavailableError, match="could fork"):
        pool.start()


class _WrongSeedLauncher(BubblewrapLauncher):
    def launch(self, secrets: ZygoteSecrets, index: int) -> SubprocessConnection:
        return super().launch(dataclasses.replace(secrets, hash_seed=secrets.hash_seed + 1),
                              index)


def test_zygote_with_another_hash_seed_is_refused() -> None:
    require_bwrap()
    pool = ZygotePool(_WrongSeedLauncher(), zygotes=1, seed_groups=1)
    with pytest.raises(SandboxUnavailableError, match="unexpected greeting"):
        pool.start()


class _IsolatedModeLauncher(BubblewrapLauncher):
    """Starts the runner with -I, which makes Python ignore PYTHONHASHSEED (the bug this check
    exists for): every determinism run would then hash alike."""

    def launch(self, secrets: ZygoteSecrets, index: int) -> SubprocessConnection:
        argv = [*self._base_argv, "--", self.interpreter.executable, "-I", SANDBOX_RUNNER]
        user = NOBODY if self._switch_uid else None
        return SubprocessConnection(f"isolated-{index}", argv, user=user, group=user,
                                    env=secrets.environment())


def test_zygote_that_ignores_its_hash_seed_is_refused() -> None:
    require_bwrap()
    pool = ZygotePool(_IsolatedModeLauncher(), zygotes=1, seed_groups=1)
    with pytest.raises(SandboxUnavailableError, match="unexpected greeting"):
        pool.start()


class _FakeZygoteLauncher:
    """A real process that is not a zygote: it writes `hello` and waits."""

    backend = "process"

    def __init__(self, hello: bytes) -> None:
        self.hello = hello

    def launch(self, secrets: ZygoteSecrets, index: int) -> SubprocessConnection:
        script = ("import sys, time\n"
                  f"sys.stdout.buffer.write({self.hello!r})\n"
                  f"sys.stdout.flush()\ntime.sleep({120 if self.hello else 0})\n")
        return SubprocessConnection(f"fake-{index}", [sys.executable, "-c", script])

    def close(self) -> None:
        """Nothing to release."""


@pytest.mark.parametrize(("hello", "reason"), [
    (b"", "did not start"),
    (b"\x00\x00\x00\x00\x05hello", "did not start"),
    (b"\x02" + bytes(32), "instead of a hello"),
    (b"\x00\x00\x00\x00\x02{}", "unexpected greeting"),
    (hello_record({"kind": "hello", "protocol": 1, "hash_seed": "1", "probe": 15}),
     "unexpected greeting"),
    (b"\x00\xff\xff\xff\xff", "instead of a hello"),
], ids=["silent", "not_json", "done_record", "empty_hello", "old_protocol", "oversized"])
def test_a_bad_hello_is_refused(hello: bytes, reason: str) -> None:
    pool = ZygotePool(_FakeZygoteLauncher(hello), zygotes=1, seed_groups=1)
    with pytest.raises(SandboxUnavailableError, match=reason):
        pool.start()
