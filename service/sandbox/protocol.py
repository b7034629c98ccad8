"""What crosses the boundary between the trusted service and a sandboxed zygote.

The byte layout is defined once, in the runner (`runner.py`, standard library only, copied into
the sandbox image), and imported from there; docs/design.md §9.1 describes it. In short:

- host -> zygote: a frame holds an item count, then per item a small header the zygote reads
  (body size, wall-clock limit, report cap) and a body only the child reads (its limits, entry
  name, arguments and program);
- zygote -> host: a hello record, then per item any number of chunk records (the child's report,
  opaque to the zygote) and one done record (what the zygote observed: how the child ended, its
  wait status, CPU time, peak memory, wall time).

This module holds the host's view of those records. Turning them into an outcome (the value of
`verify/run_outcome.py`) is the job of `outcome.py`, the only code that interprets what a child
wrote.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from azr_verify.service.sandbox import runner

FRAME_HEADER = runner.FRAME_HEADER
ITEM_HEADER = runner.ITEM_HEADER
CHILD_HEADER = runner.CHILD_HEADER
HELLO_RECORD = runner.HELLO_RECORD
CHUNK_RECORD = runner.CHUNK_RECORD
DONE_RECORD = runner.DONE_RECORD
RUNNER_PROTOCOL = runner.RUNNER_PROTOCOL
MAX_ITEMS_PER_FRAME = runner.MAX_ITEMS_PER_FRAME
MAX_HELLO_BYTES = 64 * 1024


class RecordType(IntEnum):
    """The first byte of every record a zygote writes."""

    HELLO = runner.RECORD_HELLO
    CHUNK = runner.RECORD_CHUNK
    DONE = runner.RECORD_DONE


class Ending(IntEnum):
    """How an execution ended, as the zygote observed it (not as the child said)."""

    EXITED = runner.ENDING_EXITED  # ended by itself: an exit, or a signal the zygote did not send
    DEADLINE = runner.ENDING_DEADLINE  # killed by the zygote at its wall-clock deadline
    OVERFLOW = runner.ENDING_OVERFLOW  # killed by the zygote for reporting more than the cap
    LOST = runner.ENDING_LOST  # gone before it received its whole request (infrastructure)


class Mode(IntEnum):
    """What an execution does with the program."""

    CALL = runner.MODE_CALL  # call entry(<args>) and report the value (triples)
    SCRIPT = runner.MODE_SCRIPT  # run it as a script on stdin; capture stdout, stderr, status


class Stream(IntEnum):
    """Which of a child's outputs a chunk record carries."""

    REPORT = runner.STREAM_REPORT
    STDOUT = runner.STREAM_STDOUT
    STDERR = runner.STREAM_STDERR


@dataclass(frozen=True, slots=True)
class ExecRequest:
    """One execution: `entry(<args>)` after running `program` in fresh globals (`Mode.CALL`),
    or `program` run as a script with `stdin` (`Mode.SCRIPT`; `output_limit` then caps each of
    stdout and stderr in bytes)."""

    program: str
    entry: str
    args: str
    timeout_s: float
    memory_mb: int
    output_limit: int
    mode: Mode = Mode.CALL
    stdin: bytes = b""

    @property
    def cpu_seconds(self) -> int:
        """The child's RLIMIT_CPU soft limit; the kernel signals SIGXCPU when it is reached."""
        return max(1, math.ceil(self.timeout_s))

    @property
    def report_cap(self) -> int:
        """The most bytes per stream the zygote forwards before it kills the child."""
        if self.mode is Mode.SCRIPT:
            return self.output_limit
        return runner.report_cap_bytes(self.output_limit)

    def encode(self) -> bytes:
        """The item's header (for the zygote) and body (for the child alone)."""
        entry = self.entry.encode("utf-8", "surrogatepass")
        args = self.args.encode("utf-8", "surrogatepass")
        program = self.program.encode("utf-8", "surrogatepass")
        body = CHILD_HEADER.pack(self.mode, self.cpu_seconds, self.memory_mb,
                                 self.output_limit, self.report_cap, len(entry), len(args),
                                 len(program))
        timeout_ms = max(1, round(self.timeout_s * 1000))
        header = ITEM_HEADER.pack(self.mode, len(body) + len(entry) + len(args) + len(program),
                                  len(self.stdin), timeout_ms, self.report_cap)
        return b"".join((header, body, entry, args, program, self.stdin))


def encode_frame(requests: list[ExecRequest]) -> bytes:
    if not 0 < len(requests) <= MAX_ITEMS_PER_FRAME:
        raise ValueError(f"a frame holds 1 to {MAX_ITEMS_PER_FRAME} items")
    return FRAME_HEADER.pack(len(requests)) + b"".join(r.encode() for r in requests)


@dataclass(frozen=True, slots=True)
class Observation:
    """What the zygote saw of one execution: kernel facts and its own clock and counts."""

    index: int
    ending: Ending
    wait_status: int
    cpu_us: int
    max_rss_kib: int
    minor_faults: int
    wall_us: int
    report_bytes: int

    @classmethod
    def unpack(cls, record_tail: bytes) -> Observation:
        """From the bytes of a done record after its type byte; ValueError if malformed."""
        _, index, ending, status, cpu_us, rss, faults, wall_us, forwarded = DONE_RECORD.unpack(
            bytes((RecordType.DONE,)) + record_tail)
        return cls(index=index, ending=Ending(ending), wait_status=status, cpu_us=cpu_us,
                   max_rss_kib=rss, minor_faults=faults, wall_us=wall_us,
                   report_bytes=forwarded)


class ZygoteConnection(Protocol):
    """A started fork-server: a byte stream in each direction and a way to kill it."""

    name: str

    def send(self, data: bytes) -> None:
        """Write all of `data`, reading what the zygote writes meanwhile so neither side can
        block the other; raise `ZygoteDiedError` when the zygote is gone or stops reading."""
        ...

    def recv_exact(self, size: int, timeout_s: float) -> bytes:
        """Read exactly `size` bytes; raise `ZygoteDiedError` on EOF or after `timeout_s`."""
        ...

    def kill(self) -> None: ...

    def alive(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class ZygoteSecrets:
    """What makes one zygote's environment differ from its siblings', fresh per pool start.

    `hash_seed` is its seed group's PYTHONHASHSEED; `layout` ("t0,t1,...") names where its
    children leave each small-object size class, so that object addresses differ between
    groups. Neither is ever shown to a program or logged. `seccomp_filter` is no secret, but it
    travels the same way: the BPF program the zygote installs on itself, compiled by the host
    (docs/design.md §4), in its environment from exec on, before anything untrusted runs.
    """

    hash_seed: int
    layout: str
    seccomp_filter: bytes

    def environment(self) -> dict[str, str]:
        """The zygote's whole environment: its secrets, the filter it installs on itself, and
        LD_BIND_NOW so that the dynamic linker resolves every symbol at start-up; lazily
        bound, each child would resolve (and write) the ones it is first to call again: ~7
        page faults per execution."""
        return {runner.ENV_HASH_SEED: str(self.hash_seed), runner.ENV_LAYOUT: self.layout,
                runner.ENV_SECCOMP_FILTER: self.seccomp_filter.hex(), "LD_BIND_NOW": "1"}

    def __repr__(self) -> str:  # keep the secrets out of logs and tracebacks
        return "ZygoteSecrets(<hidden>)"


class ZygoteLauncher(Protocol):
    """Starts zygotes for one backend; the pool owns their lifecycle."""

    @property
    def backend(self) -> str:
        """The backend's name, as configured (`process`, `docker`)."""
        ...

    def launch(self, secrets: ZygoteSecrets, index: int) -> ZygoteConnection: ...

    def close(self) -> None:
        """Release backend resources (remove containers...)."""
        ...
