"""The only code that turns what a child wrote into an outcome (docs/design.md §9.2).

`decode` is total: it never raises, whatever the bytes. It trusts nothing the child says about
infrastructure. Timeouts, memory and output limits come from the zygote's observations and the
kernel's accounting (`Observation`); the report is data whose every field is checked here, and a
report that fails a check is that one item's `crash` (`runtime_error`), never anyone else's
problem and never an infrastructure verdict.

The repr of a returned value is checked here for size and encoding; whether it is a literal is
checked where it is parsed, by the verdict fold (`verify/determinism.py`; a value that does not
parse is a malformed report there too).
"""

from __future__ import annotations

import os
import signal

from azr_verify.service.sandbox import runner
from azr_verify.service.sandbox.protocol import (
    Ending,
    ExecRequest,
    Mode,
    Observation,
    Stream,
)
from azr_verify.service.verify.run_outcome import MALFORMED, ExecOutcome, OutcomeKind

NO_RESULT = "NoResult"
# A MemoryError (or a kill with no other explanation) is the memory limit only when the kernel
# saw the child's resident memory reach this share of its limit; otherwise it is the program's
# own error (it asked for more at once than any run could give it, or raised it itself).
MEMORY_EVIDENCE_SHARE = 0.5
# The kernel signals at its own CPU clock; rusage's user+system split can read a little lower.
# Limits are whole seconds, so a program that lowered its own is at least a second short.
CPU_ACCOUNTING_SLACK_US = 250_000
KIB = 1024
MIB = 1024 * 1024


def expected_streams(mode: Mode) -> tuple[Stream, ...]:
    """The output streams a child of that mode writes."""
    return (Stream.STDOUT, Stream.STDERR) if mode is Mode.SCRIPT else (Stream.REPORT,)


def decode(request: ExecRequest, observation: Observation,
           outputs: dict[Stream, bytes]) -> ExecOutcome:
    """One execution's outcome from the zygote's observation and the child's output bytes."""
    duration_ms = round(observation.wall_us / 1000.0, 3)
    if request.mode is Mode.SCRIPT:
        stdout, stderr = outputs.get(Stream.STDOUT, b""), outputs.get(Stream.STDERR, b"")
        outcome = _decide_script(request, observation, stderr)
        return ExecOutcome(kind=outcome.kind, error_type=outcome.error_type,
                           error=outcome.error, duration_ms=duration_ms, stdout=stdout,
                           stderr=stderr, exit_code=outcome.exit_code)
    outcome = _decide(request, observation, outputs.get(Stream.REPORT, b""))
    return ExecOutcome(kind=outcome.kind, repr=outcome.repr, error_type=outcome.error_type,
                       error=outcome.error, duration_ms=duration_ms)


def _zygote_verdict(request: ExecRequest, observation: Observation,
                    over_cap: bool) -> ExecOutcome | None:
    """What the zygote's own observation decides before anything the child wrote is read: a
    lost request, the deadline, too many bytes, or a death by signal or an odd wait status."""
    if observation.ending is Ending.LOST:
        return ExecOutcome.sandbox_failure("the sandbox lost the request before it ran")
    if observation.ending is Ending.DEADLINE:
        return ExecOutcome(OutcomeKind.TIMEOUT,
                           error=f"exceeded the {request.timeout_s:.3g}s wall-clock limit")
    if observation.ending is Ending.OVERFLOW or over_cap:
        return _output_limit(request)
    status = observation.wait_status
    if os.WIFSIGNALED(status):
        return _killed(request, observation, os.WTERMSIG(status))
    if not os.WIFEXITED(status):
        return _crash(NO_RESULT, f"the child ended with wait status {status}")
    return None


def _decide_script(request: ExecRequest, observation: Observation,
                   stderr: bytes) -> ExecOutcome:
    """A script's outcome: what it wrote is data and its exit status is its own; limits come
    from observations, as for calls."""
    observed = _zygote_verdict(request, observation, over_cap=False)
    if observed is not None:
        return observed
    code = os.WEXITSTATUS(observation.wait_status)
    # The interpreter's last words on an uncaught MemoryError, backed by the kernel's figure.
    last_line = stderr.rstrip().rpartition(b"\n")[2]
    if code == 1 and last_line.startswith(b"MemoryError") \
            and _memory_exhausted(request, observation):
        return ExecOutcome(OutcomeKind.MEMORY, error_type="MemoryError",
                           error="memory limit exceeded", exit_code=code)
    return ExecOutcome(OutcomeKind.EXITED, exit_code=code)


def _decide(request: ExecRequest, observation: Observation, report: bytes) -> ExecOutcome:
    observed = _zygote_verdict(request, observation,
                               over_cap=len(report) > request.report_cap)
    if observed is not None:
        return observed
    code = os.WEXITSTATUS(observation.wait_status)
    if code != runner.CHILD_EXIT_OK or not report:
        return _crash(NO_RESULT, f"the child exited with status {code} without a result")
    return _decode_report(request, observation, report)


def _killed(request: ExecRequest, observation: Observation, signum: int) -> ExecOutcome:
    # The CPU limit is the kernel's: SIGXCPU at the soft limit, SIGKILL at the hard one. A
    # program that lowers its own limit, or signals itself, has not used the CPU it was given.
    if signum in (signal.SIGXCPU, signal.SIGKILL) \
            and observation.cpu_us >= request.cpu_seconds * 1_000_000 - CPU_ACCOUNTING_SLACK_US:
        return ExecOutcome(OutcomeKind.TIMEOUT, error="exceeded the CPU-time limit")
    if signum == signal.SIGKILL and _memory_exhausted(request, observation):
        return ExecOutcome(OutcomeKind.MEMORY, error_type="MemoryError",
                           error="killed with its memory at the limit")
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    return _crash(name, "killed by " + name)


def _decode_report(request: ExecRequest, observation: Observation,
                   report: bytes) -> ExecOutcome:
    tag, body = report[0], report[1:]
    if tag == runner.REPORT_VALUE:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return _malformed("the value is not UTF-8 text")
        if len(text) > request.output_limit:
            return _output_limit(request)
        if not text:
            return _malformed("the value is empty")
        return ExecOutcome(OutcomeKind.VALUE, repr=text)
    if tag == runner.REPORT_ERROR:
        raw_name, separator, raw_message = body.partition(b"\0")
        name = _name(raw_name)
        message = _text(raw_message, runner.ERROR_TEXT_LIMIT)
        if not separator or name is None or message is None:
            return _malformed("the exception is not a class name and a message")
        if name == "MemoryError" and _memory_exhausted(request, observation):
            return ExecOutcome(OutcomeKind.MEMORY, error_type=name,
                               error="memory limit exceeded")
        return ExecOutcome(OutcomeKind.ERROR, error_type=name, error=message)
    if tag == runner.REPORT_NOT_LITERAL:
        name = _name(body)
        if name is None:
            return _malformed("the returned type is not a class name")
        return ExecOutcome(OutcomeKind.NOT_LITERAL, error_type=name,
                           error=f"returned a {name}, which is not a literal")
    if tag == runner.REPORT_NO_ENTRY and not body:
        return ExecOutcome(OutcomeKind.NO_ENTRY,
                           error=f"entry function {request.entry!r} is not defined")
    return _malformed(f"unknown report tag {tag}")


def _text(data: bytes, max_chars: int) -> str | None:
    """Strict UTF-8 text of at most `max_chars` characters, else None."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if len(text) <= max_chars else None


def _name(data: bytes) -> str | None:
    """A class name as the child sends one: 1 to ERROR_TYPE_LIMIT printable characters, no
    whitespace (the child replaces anything else; classes made with `type()` may be named
    anything)."""
    text = _text(data, runner.ERROR_TYPE_LIMIT)
    if not text or not text.isprintable() or any(char.isspace() for char in text):
        return None
    return text


def _memory_exhausted(request: ExecRequest, observation: Observation) -> bool:
    return observation.max_rss_kib * KIB >= MEMORY_EVIDENCE_SHARE * request.memory_mb * MIB


def _output_limit(request: ExecRequest) -> ExecOutcome:
    if request.mode is Mode.SCRIPT:
        return ExecOutcome(OutcomeKind.OUTPUT_LIMIT,
                           error=f"wrote more than {request.output_limit} bytes to stdout or "
                                 "stderr")
    return ExecOutcome(OutcomeKind.OUTPUT_LIMIT,
                       error=f"the repr is over the limit of {request.output_limit} characters")


def _crash(error_type: str, message: str) -> ExecOutcome:
    return ExecOutcome(OutcomeKind.CRASH, error_type=error_type, error=message)


def _malformed(reason: str) -> ExecOutcome:
    return _crash(MALFORMED, "the child's report could not be validated: " + reason)
