"""The trusted side's decoder of what a child wrote (service/sandbox/outcome.py): total, and
never an infrastructure verdict from the child's words."""

from __future__ import annotations

import signal

from hypothesis import given, settings
from hypothesis import strategies as st

from azr_verify.service.sandbox.outcome import decode
from azr_verify.service.sandbox.protocol import (
    Ending,
    ExecRequest,
    Mode,
    Observation,
    Stream,
)
from azr_verify.service.verify.run_outcome import OutcomeKind

CALL = ExecRequest("def f(x):\n    return x\n", "f", "0", 5.0, 256, 100)
SCRIPT = ExecRequest("print(1)\n", "", "", 5.0, 256, 100, Mode.SCRIPT, b"")
CHILD_DECIDED = {OutcomeKind.VALUE, OutcomeKind.ERROR, OutcomeKind.NOT_LITERAL,
                 OutcomeKind.NO_ENTRY, OutcomeKind.CRASH, OutcomeKind.OUTPUT_LIMIT}


def observed(ending: Ending = Ending.EXITED, status: int = 0, cpu_us: int = 1000,
             rss_kib: int = 10_000) -> Observation:
    return Observation(index=0, ending=ending, wait_status=status, cpu_us=cpu_us,
                       max_rss_kib=rss_kib, minor_faults=200, wall_us=1500, report_bytes=0)


@settings(max_examples=400, deadline=None)
@given(report=st.binary(max_size=600))
def test_any_report_of_a_clean_exit_is_a_program_verdict(report: bytes) -> None:
    """Whatever bytes a child writes, an exit with status 0 decodes, without raising, to one
    of the verdicts a program may earn: never timeout, memory or sandbox_error."""
    outcome = decode(CALL, observed(), {Stream.REPORT: report})
    assert outcome.kind in CHILD_DECIDED
    if outcome.kind is OutcomeKind.VALUE:
        assert outcome.repr and len(outcome.repr) <= CALL.output_limit


@settings(max_examples=200, deadline=None)
@given(report=st.binary(max_size=200), status=st.integers(min_value=0, max_value=0xFFFF))
def test_any_wait_status_decodes(report: bytes, status: int) -> None:
    outcome = decode(CALL, observed(status=status), {Stream.REPORT: report})
    assert outcome.kind is not OutcomeKind.SANDBOX_ERROR


def test_limits_come_from_observations_only() -> None:
    forged = {Stream.REPORT: b'{"kind":"timeout"}'}
    assert decode(CALL, observed(Ending.DEADLINE), forged).kind is OutcomeKind.TIMEOUT
    assert decode(CALL, observed(Ending.OVERFLOW), forged).kind is OutcomeKind.OUTPUT_LIMIT
    assert decode(CALL, observed(Ending.LOST), forged).kind is OutcomeKind.SANDBOX_ERROR
    assert decode(CALL, observed(), forged).error_type == "MalformedReport"
    xcpu = int(signal.SIGXCPU)  # the wait status of a child killed by SIGXCPU
    assert decode(CALL, observed(status=xcpu, cpu_us=5_000_000), {}).kind is OutcomeKind.TIMEOUT
    assert decode(CALL, observed(status=xcpu, cpu_us=1_000_000), {}).error_type == "SIGXCPU"
    memory = {Stream.REPORT: b"EMemoryError\x00"}
    assert decode(CALL, observed(rss_kib=200 * 1024), memory).kind is OutcomeKind.MEMORY
    assert decode(CALL, observed(rss_kib=20 * 1024), memory).kind is OutcomeKind.ERROR


def test_scripts_exit_status_is_data_and_limits_still_observed() -> None:
    outputs = {Stream.STDOUT: b"Finished\n", Stream.STDERR: b""}
    exited = decode(SCRIPT, observed(status=3 << 8), outputs)
    assert (exited.kind, exited.exit_code, exited.stdout) == (OutcomeKind.EXITED, 3,
                                                              b"Finished\n")
    assert decode(SCRIPT, observed(Ending.DEADLINE), outputs).kind is OutcomeKind.TIMEOUT
    assert decode(SCRIPT, observed(Ending.OVERFLOW), outputs).kind is OutcomeKind.OUTPUT_LIMIT
