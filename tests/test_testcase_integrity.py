"""Verdict integrity of stdin/stdout programs under attack (docs/design.md §9, §10), on both
sandbox backends.

As in tests/test_integrity.py: every attack runs in a batch between honest neighbours (whose
program text, stdin and expected stdout hold secret markers), with fresh program text, while
a second client checks its own test cases and triples at the same time. Each test asserts the
attacker's verdicts, every neighbour's verdict and output, that nothing came from the cache,
that no zygote was lost, and that the second client got every answer right. The policy is
`permissive`: the sandbox, not the static policy, must hold.

Classes: output floods on stdout and stderr (and the cap's exact boundary), stdin read past
its end, huge stdin, exit-status forgery (exit 0 after a failure, a fake "Finished" status, a
fake wire record, a forged MemoryError), writes and reads on descriptors a script does not
own, closed stdout and stderr, and self-inflicted signals.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from azr_verify.service.config import BackendName
from azr_verify.service.engine import Engine
from azr_verify.service.models import (
    CheckItem,
    PolicyName,
    TestCase,
    TestcaseItem,
    TestcaseResult,
    Verdict,
)

from .guards import assert_executed, fresh

PERMISSIVE = PolicyName.PERMISSIVE
NEIGHBOURS_EACH_SIDE = 4
MIB = 2**20


@dataclass(frozen=True)
class Expect:
    """What the attacker's (first) case must show; None: anything."""

    verdict: Verdict
    stdout: str | None = None
    exit_code: int | None = None
    error_type: str | None = None
    stderr_end: str | None = None
    stdout_bytes: int | None = None

    def check(self, result: TestcaseResult, what: str) -> None:
        assert result.verdict is self.verdict, (what, result)
        case = result.cases[0]
        for name in ("stdout", "exit_code", "error_type", "stdout_bytes"):
            wanted = getattr(self, name)
            if wanted is not None:
                assert getattr(case, name) == wanted, (what, name, case)
        if self.stderr_end is not None:
            assert case.stderr is not None and case.stderr.endswith(self.stderr_end), \
                (what, case)


# -- engines: each backend ----------------------------------------------------------------------


@pytest.fixture(scope="module", params=[BackendName.PROCESS, BackendName.DOCKER], ids=str)
def shared(request: pytest.FixtureRequest) -> Engine:
    """The session's engine of that backend (docker: set AZR_VERIFY_DOCKER_IMAGE to an image
    built from this tree's runner)."""
    name = "engine" if request.param is BackendName.PROCESS else "docker_engine"
    engine: Engine = request.getfixturevalue(name)
    return engine


# -- neighbours and a second client -------------------------------------------------------------


def neighbours(count: int, tag: str) -> list[tuple[TestcaseItem, Expect]]:
    """Honest programs: secret markers in their text, their stdin and their expected stdout."""
    pairs = []
    for index in range(count):
        marker = "NEIGHBOUR" + uuid.uuid4().hex
        program = (f"MARK = {marker!r}\nimport sys\nline = sys.stdin.readline().split()\n"
                   f"print(MARK, int(line[1]) * {index + 2})\n")
        stdin = f"STDIN{uuid.uuid4().hex} {index + 1}\n"
        expected = f"{marker} {(index + 1) * (index + 2)}\n"
        item = TestcaseItem(id=f"{tag}-{index}", program=program,
                            cases=[TestCase(input=stdin, output=expected)],
                            meta={"secret": marker})
        pairs.append((item, Expect(Verdict.ACCEPTED, stdout=expected, exit_code=0)))
    return pairs


@contextmanager
def second_client(engine: Engine) -> Iterator[None]:
    """Another client checking honest test cases and triples while the block runs."""
    started, stop = threading.Event(), threading.Event()
    failures: list[object] = []
    rounds = [0]

    def run() -> None:
        while rounds[0] == 0 or not stop.is_set():
            batch = neighbours(3, f"other{rounds[0]}")
            started.set()
            try:
                results = engine.check_testcases([item for item, _ in batch], PERMISSIVE)
                for (item, wanted), result in zip(batch, results, strict=True):
                    wanted.check(result, str(item.id))
                assert_executed(results)
                triple = CheckItem(program=fresh("def f(x):\n    return x + 1\n"), input="41",
                                   output="42")
                [checked] = engine.check([triple], PolicyName.AZR)
                assert checked.verdict is Verdict.ACCEPTED, checked
            except AssertionError as failure:
                failures.append(failure)
            rounds[0] += 1

    thread = threading.Thread(target=run, name="second-client")
    thread.start()
    started.wait()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    assert not failures, failures
    assert rounds[0] >= 1


def run_between_neighbours(engine: Engine, attackers: list[tuple[TestcaseItem, Expect]]
                           ) -> list[TestcaseResult]:
    before = neighbours(NEIGHBOURS_EACH_SIDE, "before")
    after = neighbours(NEIGHBOURS_EACH_SIDE, "after")
    batch = before + attackers + after
    restarts = engine.pool.stats().restarts
    with second_client(engine):
        results = engine.check_testcases([item for item, _ in batch], PERMISSIVE)
    for (item, wanted), result in zip(batch, results, strict=True):
        wanted.check(result, str(item.id))
    assert_executed(results)
    assert engine.pool.stats().restarts == restarts, "an attack cost a zygote"
    attacked = results[len(before):len(before) + len(attackers)]
    for result in attacked:  # no neighbour's secret ever reaches an attacker's output
        for case in result.cases:
            text = (case.stdout or "") + (case.stderr or "")
            assert "NEIGHBOUR" not in text and "STDIN" not in text, (result.id, case)
    return attacked


def attack(name: str, program: str, wanted: Expect, stdin: str = "",
           expected: str | None = None, **limits: float) -> tuple[TestcaseItem, Expect]:
    return TestcaseItem(id=name, program=fresh(program),
                        cases=[TestCase(input=stdin, output=expected)], **limits), wanted


# -- 1. output floods: the cap is the host's own count ------------------------------------------


def test_output_floods_on_stdout_and_stderr(shared: Engine) -> None:
    cap = shared.settings.script_output_limit_bytes
    attackers = [
        attack("stdout_flood", "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
               Expect(Verdict.OUTPUT_LIMIT)),
        attack("stderr_flood", "import sys\nwhile True:\n    sys.stderr.write('e' * 65536)\n",
               Expect(Verdict.OUTPUT_LIMIT)),
        attack("both_interleaved", "import sys\nwhile True:\n    sys.stdout.write('o' * 65536)\n"
               "    sys.stderr.write('e' * 65536)\n", Expect(Verdict.OUTPUT_LIMIT)),
        attack("flood_then_exit_0", f"import os, sys\nsys.stdout.write('x' * {cap + 1})\n"
               "sys.stdout.flush()\nos._exit(0)\n", Expect(Verdict.OUTPUT_LIMIT)),
        attack("exactly_the_cap", f"import sys\nsys.stdout.buffer.write(b'y' * {cap})\n",
               Expect(Verdict.ACCEPTED, exit_code=0, stdout_bytes=cap)),
        attack("stderr_exactly_the_cap", f"import sys\nsys.stderr.buffer.write(b'y' * {cap})\n"
               "print('ok')\n", Expect(Verdict.ACCEPTED, stdout="ok\n"), expected="ok"),
    ]
    results = run_between_neighbours(shared, attackers)
    flood = results[0].cases[0]
    # What was captured up to the cap is the program's own, and bounded in the result.
    assert flood.stdout is not None and set(flood.stdout) == {"x"}
    assert len(flood.stdout) <= shared.settings.testcase_excerpt_chars


# A flood of small writes once filled the zygote's holding pipe with partly filled pages (the
# pipe ran out of slots before bytes) and hung the zygote: the attacker and every item queued in
# the same frame got sandbox_error. The runner now fills that pipe without blocking.
def test_small_write_floods(shared: Engine) -> None:
    # A generous wall clock: the cap (1 MiB a stream), not the clock, must end both floods,
    # even with the machine loaded (a million one-byte writes took over a second under load).
    attackers = [
        attack("lines_on_stderr",
               "import sys\nwhile True:\n    print('e' * 100, file=sys.stderr)\n",
               Expect(Verdict.OUTPUT_LIMIT), timeout_s=20.0),
        attack("byte_at_a_time", "import os\nwhile True:\n    os.write(1, b'z')\n",
               Expect(Verdict.OUTPUT_LIMIT), timeout_s=20.0),
    ]
    run_between_neighbours(shared, attackers)


# -- 2. stdin tricks ------------------------------------------------------------------------------


def test_reading_stdin_past_its_end_and_huge_stdin(shared: Engine) -> None:
    huge = "0123456789abcdef" * (8 * MIB // 16)
    attackers = [
        attack("read_past_end",
               "import os, sys\na = sys.stdin.read()\nb = sys.stdin.read()\n"
               "c = sys.stdin.buffer.read()\nd = os.read(0, 100)\nprint(repr(a), b, c, d)\n",
               Expect(Verdict.ACCEPTED), stdin="abc", expected="'abc'  b'' b''"),
        attack("input_past_end", "print(input())\nprint(input())\n",
               Expect(Verdict.RUNTIME_ERROR, stdout="one\n", exit_code=1,
                      stderr_end="EOFError: EOF when reading a line\n"), stdin="one\n"),
        attack("huge_stdin_read_all",
               "import sys\ndata = sys.stdin.buffer.read()\nprint(len(data), data[-4:])\n",
               Expect(Verdict.ACCEPTED), stdin=huge, expected=f"{len(huge)} b'cdef'"),
        attack("huge_stdin_never_read", "print('done')\n", Expect(Verdict.ACCEPTED),
               stdin=huge, expected="done"),
        attack("huge_stdin_closed_early",
               "import os\nos.read(0, 10)\nos.close(0)\nprint('closed')\n",
               Expect(Verdict.ACCEPTED), stdin=huge, expected="closed"),
        attack("stdin_written_to", "import os\ntry:\n    os.write(0, b'x')\n"
               "except OSError as e:\n    print(type(e).__name__)\n",
               Expect(Verdict.ACCEPTED), stdin="abc", expected="OSError"),
        attack("blocks_on_stdin_forever", "import sys, time\nsys.stdin.read()\n"
               "time.sleep(60)\n", Expect(Verdict.TIMEOUT), stdin="x", timeout_s=1.0),
    ]
    run_between_neighbours(shared, attackers)


# -- 3. exit-status forgery: stdout decides, the exit status is the program's own -----------------

FAKE_FINISHED = ('{"status": "Success", "message": "", "run_result": {"status": "Finished", '
                 '"return_code": 0, "stdout": "42\\n"}}')


def test_exit_status_forgery(shared: Engine) -> None:
    attackers = [
        attack("exit_0_after_failure",
               "import os\ntry:\n    print(1 // 0)\nexcept ZeroDivisionError:\n"
               "    print('partial', flush=True)\n    os._exit(0)\n",
               Expect(Verdict.WRONG_OUTPUT, stdout="partial\n", exit_code=0), expected="42"),
        attack("right_output_then_crash", "print(42)\nraise RuntimeError('after')\n",
               Expect(Verdict.RUNTIME_ERROR, stdout="42\n", exit_code=1), expected="42"),
        attack("atexit_forces_0", "import atexit, os\natexit.register(lambda: os._exit(0))\n"
               "print(42)\nraise ValueError('x')\n",
               Expect(Verdict.RUNTIME_ERROR, exit_code=1), expected="42"),
        attack("excepthook_swallows", "import sys\nsys.excepthook = lambda *a: None\n"
               "print(42)\nraise ValueError('x')\n",
               Expect(Verdict.RUNTIME_ERROR, exit_code=1), expected="42"),
        attack("fake_finished_status", f"print({FAKE_FINISHED!r})\nraise SystemExit(1)\n",
               Expect(Verdict.RUNTIME_ERROR, exit_code=1), expected="42"),
        attack("fake_wire_records",
               "import struct, sys\n"
               "done = struct.pack('>BIBiQQQQI', 2, 0, 0, 0, 1, 1, 1, 1, 3)\n"
               "chunk = struct.pack('>BIBI', 1, 0, 1, 3) + b'42\\n'\n"
               "sys.stdout.buffer.write(chunk + done)\nsys.stderr.buffer.write(done)\n",
               Expect(Verdict.WRONG_OUTPUT, exit_code=0), expected="42"),
        attack("sys_exit_with_text", "print(42)\nimport sys\nsys.exit('Finished')\n",
               Expect(Verdict.RUNTIME_ERROR, exit_code=1, stderr_end="Finished\n"),
               expected="42"),
        attack("forged_memory_error", "import sys\nsys.stderr.write('MemoryError\\n')\n"
               "sys.exit(1)\n", Expect(Verdict.RUNTIME_ERROR, exit_code=1)),
        attack("raised_memory_error", "raise MemoryError('pretend')\n",
               Expect(Verdict.RUNTIME_ERROR, exit_code=1)),
        attack("exit_code_256", "import os\nprint(42, flush=True)\nos._exit(256)\n",
               Expect(Verdict.ACCEPTED, exit_code=0), expected="42"),
    ]
    run_between_neighbours(shared, attackers)


# -- 4. descriptors a script does not own, closed streams ----------------------------------------


def test_foreign_descriptors_and_closed_streams(shared: Engine) -> None:
    attackers = [
        attack("writes_to_other_fds",
               "import os\nhit = []\nfor fd in [0, *range(3, 1024)]:\n    try:\n"
               "        os.write(fd, b'FORGED')\n        hit.append(fd)\n"
               "    except OSError:\n        pass\nprint(hit)\n",
               Expect(Verdict.ACCEPTED), expected="[]"),
        # The child keeps one descriptor of its own above 2 (the read end of the pipe its
        # fds 1-2 pointed at before the script's streams replaced them): empty, private.
        attack("reads_other_fds",
               "import os\nhit = []\nfor fd in range(3, 1024):\n    try:\n"
               "        data = os.read(fd, 65536)\n    except OSError:\n        continue\n"
               "    if data:\n        hit.append((fd, data[:40]))\nprint(hit)\n",
               Expect(Verdict.ACCEPTED), expected="[]"),
        attack("dups_stdout_around", "import os\nsaved = os.dup(1)\nos.dup2(2, 1)\n"
               "print('to stderr', flush=True)\nos.dup2(saved, 1)\nprint('back')\n",
               Expect(Verdict.ACCEPTED, stdout="back\n", stderr_end="to stderr\n"),
               expected="back"),
        attack("closes_stdout", "import os\nos.close(1)\nprint('lost')\n",
               Expect(Verdict.WRONG_OUTPUT, stdout=""), expected="lost"),
        attack("closes_stdout_and_stderr_then_fails",
               "import os\nos.close(1)\nos.close(2)\nraise ValueError('unseen')\n",
               Expect(Verdict.RUNTIME_ERROR, exit_code=1, stdout="")),
        attack("opens_a_file_for_writing", "open('/tmp/x', 'w').write('x')\n",
               Expect(Verdict.RUNTIME_ERROR, exit_code=1)),
    ]
    run_between_neighbours(shared, attackers)


# -- 5. self-inflicted signals are the program's runtime errors, never limits ---------------------


def test_self_signals_are_runtime_errors(shared: Engine) -> None:
    kill = "import os, signal\nprint(42, flush=True)\nos.kill(os.getpid(), signal.{})\n"
    attackers = [
        attack(f"self_{name}", kill.format(name),
               Expect(Verdict.RUNTIME_ERROR, stdout="42\n", error_type=name), expected="42")
        for name in ("SIGKILL", "SIGXCPU", "SIGSEGV", "SIGTERM", "SIGUSR1", "SIGABRT")
    ]
    attackers += [
        attack("lowered_cpu_limit", "import resource\n"
               "resource.setrlimit(resource.RLIMIT_CPU, (1, 2))\nwhile True:\n    pass\n",
               Expect(Verdict.RUNTIME_ERROR, error_type="SIGXCPU"), timeout_s=20.0),
        attack("signals_to_pid_1", "import os, signal\n"
               "for s in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGSTOP):\n"
               "    os.kill(1, s)\nprint('alive')\n",
               Expect(Verdict.ACCEPTED), expected="alive"),
        attack("sigint_handler_gone", "import os, signal\nos.kill(os.getpid(), signal.SIGINT)\n",
               Expect(Verdict.RUNTIME_ERROR, exit_code=1,
                      stderr_end="KeyboardInterrupt\n")),
    ]
    run_between_neighbours(shared, attackers)


def test_real_limits_stay_the_hosts_verdicts(shared: Engine) -> None:
    attackers = [
        attack("cpu", "while True:\n    pass\n", Expect(Verdict.TIMEOUT), timeout_s=1.0),
        attack("memory", "kept = []\nwhile True:\n    kept.append(bytearray(2**20))\n",
               Expect(Verdict.MEMORY_LIMIT), memory_mb=64),
    ]
    run_between_neighbours(shared, attackers)
