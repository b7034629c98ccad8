"""Red-team attacks on verdict integrity that tests/test_integrity.py does not cover.

Each test asserts the behaviour docs/design.md §9 promises, so a test fails while its attack
still works. Attacks run under policy `permissive` (the sandbox, not the static policy, must
hold), on both backends, between honest neighbours and with a concurrent second client where
that is possible (helpers from tests/test_integrity.py). The last section holds attacks that the
sandbox withstood, kept as regression tests for classes the integrity tests do not cover.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from azr_verify.service.config import BackendName
from azr_verify.service.engine import Engine
from azr_verify.service.models import CheckItem, CheckResult, Verdict
from azr_verify.service.sandbox.pool import ZygoteState

from .guards import assert_executed, fresh
from .test_integrity import (
    NEIGHBOURS_EACH_SIDE,
    PERMISSIVE,
    attack,
    expect,
    neighbours,
    run_between_neighbours,
    second_client,
    shared,
    solo,
)

__all__ = ["shared", "solo"]  # fixtures, imported for pytest


@pytest.fixture(scope="module", params=[
    BackendName.PROCESS, pytest.param(BackendName.DOCKER, marks=pytest.mark.docker)], ids=str)
def backend(request: pytest.FixtureRequest) -> BackendName:
    backend_name: BackendName = request.param
    return backend_name


def run_observed(engine: Engine, items: list[CheckItem]) -> list[CheckResult]:
    """Runs `items` between honest neighbours while a second client runs; asserts the
    neighbours, that nothing was cached and that no zygote was lost; returns the items' results
    for the test to compare among themselves."""
    before = neighbours(NEIGHBOURS_EACH_SIDE, "before")
    after = neighbours(NEIGHBOURS_EACH_SIDE, "after")
    batch = [item for item, _ in before] + items + [item for item, _ in after]
    restarts = engine.pool.stats().restarts
    with second_client(engine):
        results = engine.check(batch, PERMISSIVE)
    for (item, wanted), result in zip(before, results[:len(before)], strict=True):
        wanted.check(result, str(item.id))
    for (item, wanted), result in zip(after, results[len(before) + len(items):], strict=True):
        wanted.check(result, str(item.id))
    assert_executed(results)
    assert engine.pool.stats().restarts == restarts, "an attack cost a zygote"
    return results[len(before):len(before) + len(items)]


def item(name: str, program: str, **limits: float) -> CheckItem:
    return CheckItem(id=name, program=fresh(program), input="0", **limits)


# -- A. the zygote's /dev/null is one open file description shared with every child ------------
# A child's fds 0-2 are dup2()s of the zygote's own /dev/null, so F_SETFL on fd 0 changes the
# zygote's descriptor. splice(2) refuses an O_APPEND output (EINVAL): the zygote's next
# `_discard` (an over-the-cap report) raises, and the zygote dies with every in-flight item.

APPEND_THEN_TOO_BIG = ("import fcntl, os\ndef f(x):\n"
                       "    fcntl.fcntl(0, fcntl.F_SETFL, os.O_APPEND)\n"
                       "    return 'x' * 10**6\n")
APPEND_ONLY = ("import fcntl, os\ndef f(x):\n"
               "    fcntl.fcntl(0, fcntl.F_SETFL, os.O_APPEND)\n    return 1\n")
TOO_BIG = "def f(x):\n    return 'y' * 10**6\n"


def test_o_append_on_fd_0_cannot_kill_the_zygote(solo: Engine, shared: Engine) -> None:
    """Broken today on both backends: the attacker's own item comes back sandbox_error (a
    dropped sample, not a penalty) and so does every neighbour after it in the frame."""
    for engine in (solo, shared):
        run_between_neighbours(engine, [attack("append_then_too_big", APPEND_THEN_TOO_BIG,
                                               expect(Verdict.OUTPUT_LIMIT))])


def test_o_append_left_by_one_item_cannot_kill_a_later_honest_item(solo: Engine) -> None:
    """Broken today: the poisoned zygote dies at the next honest item over the output limit,
    which may be another client's."""
    run_between_neighbours(solo, [
        attack("append_only", APPEND_ONLY, expect(Verdict.ACCEPTED, "1")),
        attack("honest_too_big", TOO_BIG, expect(Verdict.OUTPUT_LIMIT)),
    ])


# -- B. state on that shared description outlives the child: a channel to later items ----------

DESCRIPTION_OBSERVER = (
    "import fcntl, os\ndef f(x):\n"
    "    return [[fcntl.fcntl(n, 11), fcntl.fcntl(n, fcntl.F_GETFL),\n"
    "             fcntl.fcntl(n, fcntl.F_GETOWN)] for n in (0, 1, 2)]\n")
# Whether some open file description anywhere holds an exclusive flock on the /dev/null inode
# (a shared lock: concurrent observers do not see each other).
FLOCK_OBSERVER = (
    "import fcntl, os\ndef f(x):\n"
    "    fd = os.open('/dev/null', os.O_RDONLY)\n"
    "    try:\n        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)\n        return 'free'\n"
    "    except OSError as error:\n        return type(error).__name__\n")
FLOCK_RELEASER = ("import contextlib, fcntl\ndef f(x):\n"
                  "    with contextlib.suppress(OSError):\n        fcntl.flock(0, fcntl.LOCK_UN)\n"
                  "    return 'released'\n")
# Changes every piece of description state it can reach, whatever its current value.
DESCRIPTION_WRITER = (
    "import contextlib, fcntl, os\ndef f(x):\n"
    "    with contextlib.suppress(OSError):\n"
    "        fcntl.fcntl(0, 10, 3 if fcntl.fcntl(0, 11) != 3 else 4)  # F_SETSIG\n"
    "    with contextlib.suppress(OSError):\n"
    "        fcntl.fcntl(0, fcntl.F_SETFL, fcntl.fcntl(0, fcntl.F_GETFL) ^ os.O_NONBLOCK)\n"
    "    with contextlib.suppress(OSError):\n"
    "        fcntl.fcntl(0, fcntl.F_SETOWN, 0 if fcntl.fcntl(0, fcntl.F_GETOWN) else 1)\n"
    "    with contextlib.suppress(OSError):\n"
    "        fcntl.flock(0, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
    "    return 'written'\n")


def test_file_description_state_does_not_reach_later_items(solo: Engine) -> None:
    """Broken today on both backends: F_SETSIG (6 bits), F_SETFL and F_SETOWN set by one item
    on its fd 0 are read back by the next item of that zygote."""
    baseline = solo.check([item("baseline", DESCRIPTION_OBSERVER)], PERMISSIVE)[0]
    assert baseline.verdict is Verdict.ACCEPTED, baseline
    run_between_neighbours(solo, [
        attack("writer", DESCRIPTION_WRITER, expect(Verdict.ACCEPTED, "'written'")),
        attack("observer", DESCRIPTION_OBSERVER, expect(Verdict.ACCEPTED, baseline.output)),
    ])


FLOCK_HOLDER = ("import fcntl\ndef f(x):\n    try:\n"
                "        fcntl.flock(0, fcntl.LOCK_EX | fcntl.LOCK_NB)\n        return 'held'\n"
                "    except OSError as error:\n        return type(error).__name__\n")


def test_a_flock_on_dev_null_reaches_no_other_pool(solo: Engine, shared: Engine) -> None:
    """Broken today on the process backend: a flock on fd 0 stays on the zygote's description
    after the item ends, and the inode is the host's /dev/null, bound into every sandbox: every
    item of every pool on the host (other clients, other services) sees the lock. A 1-bit
    cross-client channel that lasts as long as the zygote."""
    solo.check([item("release", FLOCK_RELEASER)], PERMISSIVE)  # what an earlier attack left
    baseline = shared.check([item("baseline", FLOCK_OBSERVER)], PERMISSIVE)[0]
    assert baseline.verdict is Verdict.ACCEPTED, baseline
    try:
        run_between_neighbours(solo, [attack("holder", FLOCK_HOLDER, expect(Verdict.ACCEPTED))])
        run_between_neighbours(shared, [attack("observer-elsewhere", FLOCK_OBSERVER,
                                               expect(Verdict.ACCEPTED, baseline.output))])
    finally:  # the lock is host-wide while the bug lasts: do not leave it to other tests
        solo.check([item("release-after", FLOCK_RELEASER)], PERMISSIVE)


# -- C. /proc (docker): the zygote's cumulative child accounting is world-readable -------------

PROC_OBSERVER = ("def f(x):\n"
                 "    fields = open('/proc/1/stat').read().rsplit(')', 1)[1].split()\n"
                 "    return [int(fields[8]), int(fields[10]), int(fields[13]), int(fields[14])]\n")
MEMORY_TOUCHER = ("def f(x):\n    data = bytearray(64 * 2**20)\n"
                  "    for at in range(0, len(data), 4096):\n        data[at] = 1\n"
                  "    return 'touched'\n")


def test_a_later_item_learns_nothing_of_an_earlier_one_through_proc(solo: Engine) -> None:
    """Broken today on docker: /proc/1/stat shows the zygote's cminflt/cmajflt/cutime/cstime,
    the sum over every child it reaped, so any item reads how much memory and CPU the items
    before it used (a many-bit channel between items, and a side channel on neighbours)."""
    first, toucher, second = run_observed(solo, [
        item("observer-1", PROC_OBSERVER), item("toucher", MEMORY_TOUCHER),
        item("observer-2", PROC_OBSERVER)])
    assert toucher.verdict is Verdict.ACCEPTED, toucher
    assert (first.verdict, first.output, first.error_type) == \
        (second.verdict, second.output, second.error_type), (first, second)


# -- D. randomness: the kernel's uuid generator is readable in the container --------------------


def test_proc_random_uuid_is_not_a_randomness_source(shared: Engine) -> None:
    """Broken today on docker: /proc/sys/kernel/random/uuid returns fresh random bytes (a
    1-bit program built on it passes two determinism runs half the time)."""
    run_between_neighbours(shared, [attack(
        "proc_uuid", "def f(x):\n    return open('/proc/sys/kernel/random/uuid').read()\n",
        expect(Verdict.RUNTIME_ERROR))])


# -- E. the zygote's secrets are in every child's memory -----------------------------------------

SECRETS_IN_FRAMES = (
    "import sys\ndef f(x):\n    found = []\n    frame = sys._getframe()\n"
    "    while frame is not None:\n"
    "        for name in ('hash_seed', 'layout'):\n"
    "            if name in frame.f_locals:\n"
    "                found.append(str(frame.f_locals[name]))\n"
    "        frame = frame.f_back\n"
    "    return found\n")
# The environment block the kernel put on the initial stack stays there after os.environ is
# cleared; it sits just after argv[0], whose address glibc keeps. Pages are read through a pipe,
# so an unmapped page is an EFAULT rather than a crash.
SECRETS_ON_THE_STACK = (
    "import ctypes, os\ndef f(x):\n"
    "    libc = ctypes.CDLL(None, use_errno=True)\n"
    "    libc.write.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]\n"
    "    start = ctypes.c_void_p.in_dll(libc, 'program_invocation_name').value\n"
    "    read_end, write_end = os.pipe()\n    raw = b''\n"
    "    for page in range(start // 4096 * 4096, start // 4096 * 4096 + 4 * 4096, 4096):\n"
    "        if libc.write(write_end, page, 4096) != 4096:\n            break\n"
    "        raw += os.read(read_end, 4096)\n"
    "    return [part.decode('latin-1') for part in raw.split(b'\\0') if b'=' in part]\n")


def test_hash_seeds_and_layout_secrets_are_not_readable(shared: Engine) -> None:
    """Broken today on both backends: main()'s and serve()'s locals hold the seed and the
    layout secret (shared by every group of the pool), and so does the initial stack."""
    results = run_between_neighbours(shared, [
        # One run each: every run reads its own group's seed, which would read as nondeterminism.
        attack("secrets_in_frames", SECRETS_IN_FRAMES, expect(Verdict.ACCEPTED),
               determinism_runs=1),
        attack("secrets_on_the_stack", SECRETS_ON_THE_STACK, expect(Verdict.ACCEPTED),
               determinism_runs=1),
    ])
    secrets = shared.pool.secrets
    for result in results:
        leaked = [str(s.hash_seed) for s in secrets if str(s.hash_seed) in (result.output or "")]
        leaked += [s.layout for s in secrets if s.layout in (result.output or "")]
        assert not leaked, (result.id, result.output)


# -- F. address-derived values that the heap shift leaves alone ----------------------------------

ADDRESS_DERIVED = [
    ("function_id", "def f(x):\n    return id(f) % 4096\n"),
    ("function_hash", "def f(x):\n    return hash(f) % 256\n"),  # address bits 4-11
    ("lambda_repr_low_bits", "def f(x):\n    return int(repr(lambda: 0)[-4:-1], 16)\n"),
    # Not here: generators and frame objects embed their frame, so their size (and size class)
    # follows the code; the layout does not reach them (docs/design.md §9.4).
]


@pytest.mark.parametrize(("name", "program"), ADDRESS_DERIVED, ids=[c[0] for c in ADDRESS_DERIVED])
def test_more_address_derived_values_differ_between_runs(shared: Engine, name: str,
                                                         program: str) -> None:
    """Broken today: the low 12 bits of functions, lambdas' default reprs, generators and
    frames are the same in every seed group on both backends. `id` and `hash` are allowed by
    policy `azr` too."""
    run_between_neighbours(shared, [attack(name, program, expect(Verdict.NONDETERMINISTIC),
                                           determinism_runs=3)])


# -- G. the host's stall detector counts time since its last write, not the zygote's progress ---
# The zygote takes a frame's bytes only between items, and a pipe slot frees only when a whole
# page of it was consumed: items that each finish well within their limits, but whose bytes in
# one page take more than SEND_STALL_S (30 s) to run, make the host declare the zygote dead while
# the rest of the frame waits to be written. The frame is retried once, dies again, and every
# item of it comes back sandbox_error, the attacker's and its neighbours'.

SLEEPER = "import time\n# " + "p" * 150 + "\ndef f(x):\n    time.sleep(3)\n    return 1\n"
# Larger than every buffer between the host and the zygote (pipe, socket, dockerd's copy).
PADDED = "PAD = '" + "x" * 8_000_000 + "'\ndef f(x):\n    return len(PAD)\n"


@contextmanager
def zygote_kept_busy(engine: Engine) -> Iterator[None]:
    """Occupies the single zygote of `engine` so that the next batch is queued whole and shipped
    as one frame."""
    blocker = item("blocker", "import time\ndef f(x):\n    time.sleep(3)\n    return 'done'\n")
    results: list[CheckResult] = []
    thread = threading.Thread(target=lambda: results.extend(engine.check([blocker], PERMISSIVE)))
    thread.start()
    while engine.pool.stats().states[ZygoteState.BUSY.value] == 0 and thread.is_alive():
        threading.Event().wait(0.01)
    try:
        yield
    finally:
        thread.join()
    assert results and results[0].verdict is Verdict.ACCEPTED, results


@pytest.mark.slow
def test_slow_items_before_a_large_one_do_not_kill_the_zygote(solo: Engine) -> None:
    """Was broken on both backends (the host gave up after 30 s without writing a byte): 12
    items of 3 s each under the default 5 s limit, then one 8 MB item."""
    attackers = [attack(f"sleeper-{n}", SLEEPER, expect(Verdict.ACCEPTED, "1"))
                 for n in range(12)]
    attackers.append(attack("padded", PADDED, expect(Verdict.ACCEPTED, "8000000")))
    # The same zygote, through an engine that lets an 8 MB program past the trusted side's
    # default program-size cap (32 KB).
    roomy = Engine(solo.settings.model_copy(update={"max_program_chars": 10_000_000}),
                   solo.pool)
    with zygote_kept_busy(roomy):
        run_between_neighbours(roomy, attackers)


# -- H. the report's text checks turn true outcomes into malformed reports ----------------------


def test_odd_but_true_outcomes_keep_their_verdict_and_type(shared: Engine) -> None:
    """Broken today on both backends. The runner cuts an exception message to 1000 characters
    and then escapes each lone surrogate into 6, which the host rejects as over 1000; and it
    sends a returned object's class name uncut and unchecked, which the host rejects unless it
    is an identifier of at most 200 characters. Both become runtime_error `MalformedReport`."""
    run_between_neighbours(shared, [
        attack("surrogate_message", "def f(x):\n    raise ValueError('\\udc80' * 300)\n",
               expect(Verdict.RUNTIME_ERROR, None, "ValueError")),
        attack("empty_class_name", "C = type('', (), {})\ndef f(x):\n    return C()\n",
               expect(Verdict.NOT_LITERAL)),
        attack("dashed_class_name", "C = type('a-b', (), {})\ndef f(x):\n    return C()\n",
               expect(Verdict.NOT_LITERAL)),
        attack("long_class_name", "C = type('C' * 300, (), {})\ndef f(x):\n    return C()\n",
               expect(Verdict.NOT_LITERAL)),
    ])


# -- I. memory_limit chosen by the program -------------------------------------------------------

TOUCH_HALF = ("    kept = bytearray(80 * 2**20)\n"
              "    for at in range(0, len(kept), 4096):\n        kept[at] = 1\n")


def test_memory_limit_needs_the_kernels_evidence(shared: Engine) -> None:
    """The memory rule (docs/design.md §9.2): a MemoryError or a SIGKILL is memory_limit only
    when the kernel saw the child's peak RSS reach half its limit. A program that really filled
    60% of its memory and then raised MemoryError itself does get memory_limit: it chose the
    verdict only by paying for it, and memory_limit is a rejection like runtime_error. Below
    the evidence, the choice is the program's own error."""
    touch_little = ("    kept = bytearray(20 * 2**20)\n"
                    "    for at in range(0, len(kept), 4096):\n        kept[at] = 1\n")
    run_between_neighbours(shared, [
        attack("raised_after_touching", "def f(x):\n" + TOUCH_HALF
               + "    raise MemoryError('mine')\n",
               expect(Verdict.MEMORY_LIMIT, None, "MemoryError"), memory_mb=128),
        attack("raised_after_a_little", "def f(x):\n" + touch_little
               + "    raise MemoryError('mine')\n",
               expect(Verdict.RUNTIME_ERROR, None, "MemoryError"), memory_mb=128),
        attack("sigkill_after_a_little", "import os, signal\ndef f(x):\n" + touch_little
               + "    os.kill(os.getpid(), signal.SIGKILL)\n",
               expect(Verdict.RUNTIME_ERROR, None, "SIGKILL"), memory_mb=128),
    ])


# -- held: attacks the sandbox withstood ---------------------------------------------------------

FIND_REPORT_FD = (
    "import fcntl, os, signal, stat, termios\n"
    "def report_fd():\n"
    "    for fd in range(3, 64):\n"
    "        try:\n"
    "            if stat.S_ISFIFO(os.fstat(fd).st_mode) and fcntl.fcntl(fd, fcntl.F_GETFL)"
    " & os.O_ACCMODE == os.O_WRONLY:\n                return fd\n"
    "        except OSError:\n            pass\n"
    "def drained(fd):\n"
    "    while fcntl.ioctl(fd, termios.FIONREAD, bytes(4)) != bytes(4):\n        pass\n")
SIGIO_SIGNALS = ["SIGKILL", "SIGSTOP", "SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGSEGV"]
# Asks the kernel to signal PID 1 (F_SETOWN + F_SETSIG + O_ASYNC) each time the zygote reads
# the report pipe, one byte at a time, and does the same on the shared /dev/null description.
SIGIO_TO_PID_1 = FIND_REPORT_FD + (
    "def f(x):\n    fd = report_fd()\n"
    "    for target in (fd, 0):\n"
    "        fcntl.fcntl(target, fcntl.F_SETOWN, 1)\n"
    "        fcntl.fcntl(target, fcntl.F_SETFL, fcntl.fcntl(target, fcntl.F_GETFL) | os.O_ASYNC)\n"
    f"    payload = b'V' + b'1' * {len(SIGIO_SIGNALS) - 1}\n"
    f"    for byte, name in zip(payload, {SIGIO_SIGNALS!r}):\n"
    "        fcntl.fcntl(fd, 10, getattr(signal, name))  # F_SETSIG\n"
    "        os.write(fd, bytes([byte]))\n        drained(fd)\n"
    "    os._exit(0)\n")


def test_kernel_sent_sigio_to_pid_1_reaches_nobody(solo: Engine, shared: Engine) -> None:
    """Signal ownership (F_SETOWN, F_SETSIG) is refused by the runner's filter now; before,
    the kernel dropped the signals it sent to PID 1. Either way the zygote lives."""
    for engine in (solo, shared):
        run_between_neighbours(engine, [attack(
            "sigio_to_pid_1", SIGIO_TO_PID_1,
            expect(Verdict.RUNTIME_ERROR, None, "PermissionError"))])


VMSPLICE_ONE_BYTE_BUFFERS = FIND_REPORT_FD + (
    "import ctypes\n"
    "class IoVec(ctypes.Structure):\n"
    "    _fields_ = [('base', ctypes.c_void_p), ('length', ctypes.c_size_t)]\n"
    "def f(x):\n    fd = report_fd()\n"
    "    fcntl.fcntl(fd, 1031, 1 << 20)  # F_SETPIPE_SZ: 256 slots\n"
    "    data = ctypes.create_string_buffer(b'V' + b'7' * 99)\n"
    "    vectors = (IoVec * 100)(*[IoVec(ctypes.addressof(data) + n, 1) for n in range(100)])\n"
    "    libc = ctypes.CDLL(None, use_errno=True)\n"
    "    if libc.vmsplice(fd, vectors, 100, 0) != 100:  # refused by docker's profile\n"
    "        os.write(fd, data.raw[:100])\n"
    "    os._exit(0)\n")


def test_self_inflicted_states_stay_the_items_own(shared: Engine) -> None:
    """A stopped child, a report closed before a stop, a thread, an extra seccomp filter that
    would forbid even exit (refused), report bytes in 100 one-byte pipe buffers, a one-page
    report pipe, a new session and crushed rlimits: each is that item's own verdict, nobody
    else's."""
    attackers = [
        attack("self_sigstop", "import os, signal\ndef f(x):\n"
               "    os.kill(os.getpid(), signal.SIGSTOP)\n    return 1\n",
               expect(Verdict.TIMEOUT), timeout_s=1.0),
        attack("report_then_sigstop", FIND_REPORT_FD + "def f(x):\n    fd = report_fd()\n"
               "    os.write(fd, b'V42')\n    os.close(fd)\n"
               "    os.kill(os.getpid(), signal.SIGSTOP)\n",
               expect(Verdict.TIMEOUT), timeout_s=1.0),
        attack("thread_writer", "import threading\ndef f(x):\n"
               "    threading.Thread(target=lambda: None).start()\n    return 1\n",
               expect(Verdict.RUNTIME_ERROR, None, "RuntimeError")),
        attack("deny_everything_filter",
               "import ctypes, struct\ndef f(x):\n"
               "    class Program(ctypes.Structure):\n"
               "        _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]\n"
               "    rule = ctypes.create_string_buffer(struct.pack('HBBI', 6, 0, 0, 0x00050001))\n"
               "    libc = ctypes.CDLL(None, use_errno=True)\n"
               "    libc.prctl(22, 2, ctypes.byref(Program(1, ctypes.addressof(rule))), 0, 0)\n"
               "    return 1\n",
               # PR_SET_SECCOMP is refused (tests/test_redteam_seccomp.py): the call fails and
               # the program goes on.
               expect(Verdict.ACCEPTED, "1")),
        attack("vmsplice_one_byte_buffers", VMSPLICE_ONE_BYTE_BUFFERS,
               expect(Verdict.ACCEPTED, "7" * 99)),
        attack("one_page_report_pipe", FIND_REPORT_FD + "def f(x):\n"
               "    fcntl.fcntl(report_fd(), 1031, 1)\n    return list(range(1000))\n",
               expect(Verdict.ACCEPTED, repr(list(range(1000))))),
        attack("setsid_and_crushed_rlimits", "import contextlib, os, resource\ndef f(x):\n"
               "    with contextlib.suppress(OSError):  # refused by docker's profile\n"
               "        os.setsid()\n"
               "    resource.setrlimit(resource.RLIMIT_NOFILE, (0, 0))\n"
               "    resource.setrlimit(resource.RLIMIT_AS, (1, 1))\n    return [1]\n",
               expect(Verdict.ACCEPTED, "[1]")),
    ]
    run_between_neighbours(shared, attackers)

