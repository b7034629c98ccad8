"""Verdict integrity under attack (docs/design.md §9), on both sandbox backends.

Every attack runs in a batch between honest neighbours, with fresh program text, while a second
client checks its own batches at the same time. Each test asserts the attacker's verdict, every
neighbour's verdict and output, that no zygote was lost, and that the second client got every
answer right. Attacks use policy `permissive`: the sandbox, not the static policy, must hold.

Classes (issue 8): forged reports and outcome fields, exit-status and self-signal tricks, signals
to PID 1, frame and heap snooping, scheduling calls, filesystem and shared-memory writes, seed
detection, randomness, and address-derived values.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from azr_verify.service.config import BackendName, Settings
from azr_verify.service.engine import Engine
from azr_verify.service.models import CheckItem, CheckResult, PolicyName, Verdict

from .guards import assert_executed, fresh
from .sandboxes import docker_settings
from .servers import require_bwrap

PERMISSIVE = PolicyName.PERMISSIVE
NEIGHBOURS_EACH_SIDE = 5
# The report fd is the only one a child has besides 0-2; programs find it by trying.
FORGE = (
    "import os\n"
    "def forge(payload):\n"
    "    for fd in range(3, 64):\n"
    "        try:\n"
    "            os.write(fd, payload)\n"
    "        except OSError:\n"
    "            continue\n"
)


@dataclass(frozen=True)
class Expect:
    verdict: Verdict
    output: str | None = None
    error_types: frozenset[str] = field(default_factory=frozenset)  # empty: any

    def check(self, result: CheckResult, what: str) -> None:
        assert result.verdict is self.verdict, (what, result)
        if self.output is not None:
            assert result.output == self.output, (what, result)
        if self.error_types:
            assert result.error_type in self.error_types, (what, result)


def expect(verdict: Verdict, output: str | None = None, *error_types: str) -> Expect:
    return Expect(verdict, output, frozenset(error_types))


# -- engines: each backend, shared and single-zygote ------------------------------------------


@pytest.fixture(scope="module", params=[BackendName.PROCESS, BackendName.DOCKER], ids=str)
def backend(request: pytest.FixtureRequest) -> BackendName:
    backend_name: BackendName = request.param
    return backend_name


@pytest.fixture(scope="module")
def shared(backend: BackendName, request: pytest.FixtureRequest) -> Engine:
    """The session's engine of that backend: 3 seed groups, determinism 2."""
    name = "engine" if backend is BackendName.PROCESS else "docker_engine"
    engine: Engine = request.getfixturevalue(name)
    return engine


@pytest.fixture(scope="module")
def solo(backend: BackendName, request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One zygote, one seed group, one run per item: a batch's items run one after the other
    in the same zygote, so what one item leaves behind is what the next one sees."""
    overrides = {"workers": 1, "determinism_seeds": 1, "default_determinism_runs": 1,
                 "data_dir": tmp_path_factory.mktemp("solo")}
    if backend is BackendName.DOCKER:
        request.getfixturevalue("docker_ready")
        settings = docker_settings(**overrides)
    else:
        require_bwrap()
        settings = Settings(**overrides)
    with Engine.start(settings) as engine:
        yield engine


# -- batches with neighbours and a second client ----------------------------------------------


def neighbours(count: int, tag: str) -> list[tuple[CheckItem, Expect]]:
    """Honest items, each holding a secret marker that no other item may ever see."""
    pairs = []
    for index in range(count):
        marker = "NEIGHBOUR" + uuid.uuid4().hex
        program = f"MARK = {marker!r}\ndef f(x):\n    return [MARK[:9], x * {index + 2}]\n"
        item = CheckItem(id=f"{tag}-{index}", program=program, input=str(index + 1))
        value = ["NEIGHBOUR", (index + 1) * (index + 2)]
        pairs.append((item, expect(Verdict.ACCEPTED, repr(value))))
    return pairs


@contextmanager
def second_client(engine: Engine) -> Iterator[None]:
    """Another client checking honest batches for as long as the block runs."""
    started, stop = threading.Event(), threading.Event()
    failures: list[object] = []
    rounds = [0]

    def run() -> None:
        while rounds[0] == 0 or not stop.is_set():
            batch = neighbours(4, f"other{rounds[0]}")
            started.set()
            try:
                results = engine.check([item for item, _ in batch], PolicyName.AZR)
                for (item, wanted), result in zip(batch, results, strict=True):
                    wanted.check(result, str(item.id))
                assert_executed(results)
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


def run_between_neighbours(engine: Engine, attackers: list[tuple[CheckItem, Expect]],
                           policy: PolicyName = PERMISSIVE) -> list[CheckResult]:
    """Runs the attackers between honest neighbours while a second client runs; asserts every
    verdict, that nothing came from the cache and that no zygote was lost."""
    before = neighbours(NEIGHBOURS_EACH_SIDE, "before")
    after = neighbours(NEIGHBOURS_EACH_SIDE, "after")
    batch = before + attackers + after
    restarts = engine.pool.stats().restarts
    with second_client(engine):
        results = engine.check([item for item, _ in batch], policy)
    for (item, wanted), result in zip(batch, results, strict=True):
        wanted.check(result, str(item.id))
    assert_executed(results)
    assert engine.pool.stats().restarts == restarts, "an attack cost a zygote"
    return results[len(before):len(before) + len(attackers)]


def attack(name: str, program: str, wanted: Expect, input_text: str = "0",
           **limits: float) -> tuple[CheckItem, Expect]:
    return CheckItem(id=name, program=fresh(program), input=input_text, output=None,
                     **limits), wanted


# -- 1. forged reports: the host decides, the child only reports data ---------------------------

FORGED_VALUES = [
    # f returns 41; each trick tries to make the report say 42.
    ("patched_json_dumps",
     "import json\ndef f(x):\n"
     "    json.dumps = lambda *a, **k: '{\"kind\":\"value\",\"repr\":\"42\"}'\n"
     "    return 41\n"),
    ("patched_builtins_repr",
     "import builtins\ndef f(x):\n    builtins.repr = lambda value: '42'\n    return 41\n"),
    ("patched_os_write_and_exit",
     "import os\ndef f(x):\n    os.write = lambda fd, data: len(data)\n"
     "    os._exit = lambda code: None\n    return 41\n"),
    ("wiped_runner_globals",
     "import __main__\ndef f(x):\n    for name in list(vars(__main__)):\n"
     "        if not name.startswith('__'):\n            setattr(__main__, name, None)\n"
     "    return 41\n"),
    ("cleared_sys_modules",
     "import sys\ndef f(x):\n    sys.modules.clear()\n    return 41\n"),
    ("patched_str_encode_via_builtins",
     "import builtins\ndef f(x):\n    builtins.len = lambda v: 0\n"
     "    builtins.type = lambda v: int\n"
     "    builtins.isinstance = lambda *a: True\n    return 41\n"),
]


@pytest.mark.parametrize(("name", "program"), FORGED_VALUES, ids=[c[0] for c in FORGED_VALUES])
def test_patched_modules_do_not_change_the_reported_value(shared: Engine, name: str,
                                                          program: str) -> None:
    item, _ = attack(name, program, expect(Verdict.WRONG_OUTPUT))
    item = item.model_copy(update={"output": "42"})
    run_between_neighbours(shared, [(item, expect(Verdict.WRONG_OUTPUT, "41"))])


FORGED_REPORTS = [
    # Bytes written to the report pipe, then an exit that skips the real report. None of them
    # may become a value, a timeout, a memory or output limit or a sandbox error.
    ("legacy_json_value", b'{"kind":"value","repr":"42"}'),
    ("legacy_json_sandbox_error", b'{"kind":"sandbox_error","error":"x"}'),
    ("legacy_json_timeout", b'{"kind":"timeout"}'),
    ("legacy_json_memory", b'{"kind":"memory","error_type":"MemoryError"}'),
    ("legacy_json_output_limit", b'{"kind":"output_limit"}'),
    ("unknown_tag", b"T42"),
    ("error_not_utf8", b"E\xff\xfe\x00message"),
    ("error_name_with_space", b"Eno such\x00message"),
    ("error_without_separator", b"EValueError"),
    ("error_name_list_like", b"E['a', 'b']\x00x"),
    ("not_literal_without_name", b"N"),
    ("no_entry_with_junk", b"Xjunk"),
    ("value_not_utf8", b"V\xff\xfe"),
    ("value_not_a_literal", b"Vos.system('x')"),
    ("value_empty", b"V"),
]


@pytest.mark.parametrize(("name", "payload"), FORGED_REPORTS, ids=[c[0] for c in FORGED_REPORTS])
def test_forged_report_bytes_are_that_items_malformed_report(shared: Engine, name: str,
                                                             payload: bytes) -> None:
    program = FORGE + f"def f(x):\n    forge({payload!r})\n    os._exit(0)\n"
    run_between_neighbours(shared, [attack(name, program, expect(
        Verdict.RUNTIME_ERROR, None, "MalformedReport"))])


def test_forged_infrastructure_words_are_never_infrastructure_verdicts(shared: Engine) -> None:
    """A forged MemoryError is the program's error; an appended report makes the whole report
    malformed; a forged oversized report is an output limit by the host's own count."""
    attackers = [
        attack("forged_memory_error", FORGE + "def f(x):\n    forge(b'EMemoryError\\x00forged')\n"
               "    os._exit(0)\n", expect(Verdict.RUNTIME_ERROR, None, "MemoryError")),
        attack("forged_value_then_real", FORGE + "def f(x):\n    forge(b'V42')\n    return 41\n",
               expect(Verdict.RUNTIME_ERROR, None, "MalformedReport")),
        attack("forged_huge_report", FORGE + "def f(x):\n    forge(b'V' + b'1' * 200000)\n"
               "    os._exit(0)\n", expect(Verdict.OUTPUT_LIMIT)),
        attack("raised_memory_error", "def f(x):\n    raise MemoryError('limit')\n",
               expect(Verdict.RUNTIME_ERROR, None, "MemoryError")),
        attack("raised_timeout_error", "def f(x):\n    raise TimeoutError('slow')\n",
               expect(Verdict.RUNTIME_ERROR, None, "TimeoutError")),
        attack("memory_error_after_some_use",
               "def f(x):\n    kept = [bytearray(2**20) for _ in range(40)]\n"
               "    raise MemoryError(len(kept))\n",
               expect(Verdict.RUNTIME_ERROR, None, "MemoryError")),
    ]
    run_between_neighbours(shared, attackers)


def test_objects_that_pretend_to_be_literals(shared: Engine) -> None:
    attackers = [
        attack("str_subclass_repr", "class S(str):\n    def __repr__(self):\n        return '42'\n"
               "def f(x):\n    return S('41')\n", expect(Verdict.NOT_LITERAL)),
        attack("int_subclass_in_list",
               "class I(int):\n    def __repr__(self):\n        return '42'\n"
               "def f(x):\n    return [I(41)]\n", expect(Verdict.NOT_LITERAL)),
        attack("metaclass_equal_to_int",
               "class M(type):\n    def __eq__(cls, other):\n        return True\n"
               "    def __hash__(cls):\n        return hash(int)\n"
               "class Fake(metaclass=M):\n    def __repr__(self):\n        return '42'\n"
               "def f(x):\n    return Fake()\n", expect(Verdict.NOT_LITERAL)),
        attack("patched_type_builtin",
               "import builtins\ndef f(x):\n    builtins.type = lambda value: int\n"
               "    return object()\n",
               expect(Verdict.NOT_LITERAL)),
        attack("self_containing_list", "def f(x):\n    a = [1]\n    a.append(a)\n    return a\n",
               expect(Verdict.NOT_LITERAL)),
        attack("exponential_shared_list",
               "def f(x):\n    a = [0]\n    for _ in range(80):\n        a = [a, a]\n"
               "    return a\n",
               expect(Verdict.OUTPUT_LIMIT)),
        attack("exception_str_forges_a_report",
               FORGE + "class Evil(Exception):\n    def __str__(self):\n        forge(b'V42')\n"
               "        os._exit(0)\n"
               "def f(x):\n    raise Evil('boom')\n", expect(Verdict.RUNTIME_ERROR, None, "Evil")),
        attack("metaclass_name_property",
               "class M(type):\n    @property\n    def __name__(cls):\n"
               "        return 'TimeoutError'\n"
               "class E(Exception, metaclass=M):\n    pass\n"
               "def f(x):\n    raise E()\n", expect(Verdict.RUNTIME_ERROR, None, "E")),
    ]
    run_between_neighbours(shared, attackers)


def test_a_finalizer_cannot_change_the_value_after_it_is_checked(shared: Engine) -> None:
    """Collection is off from the moment f returns: garbage whose finalizer would slip a
    pretend-literal into the returned list never runs before the report is written."""
    program = (
        "import gc\n"
        "class Fake(str):\n    def __repr__(self):\n        return '42'\n"
        "class Node:\n    def __init__(self, target):\n        self.target = target\n"
        "        self.me = self\n"
        "    def __del__(self):\n        self.target.append(Fake('x'))\n"
        "def f(x):\n    value = [1]\n    gc.set_threshold(1, 1, 1)\n    Node(value)\n"
        "    return value\n")
    run_between_neighbours(shared, [attack("finalizer_race", program,
                                           expect(Verdict.ACCEPTED, "[1]"))])


def test_a_poisoned_report_is_cached_as_its_own_verdict_and_spoils_nothing(shared: Engine) -> None:
    program = fresh(FORGE + "def f(x):\n    forge(b'E\\xff[1]\\x00x')\n    os._exit(0)\n")
    poisoned = CheckItem(id="poison", program=program, input="0")
    first = shared.check([poisoned], PERMISSIVE)[0]
    assert first.verdict is Verdict.RUNTIME_ERROR and not first.cached
    # Again, now from the cache, inside an honest batch: same verdict, every neighbour fine.
    batch = [*neighbours(3, "cached"),
             (poisoned, expect(Verdict.RUNTIME_ERROR, None, "MalformedReport"))]
    results = shared.check([item for item, _ in batch], PERMISSIVE)
    for (item, wanted), result in zip(batch, results, strict=True):
        wanted.check(result, str(item.id))
    assert results[-1].cached


# -- 2. exit statuses and self-inflicted signals are never verdicts -----------------------------

EXIT_TRICKS = [
    attack("exit_0", "import os\ndef f(x):\n    os._exit(0)\n",
           expect(Verdict.RUNTIME_ERROR, None, "NoResult")),
    attack("exit_2", "import os\ndef f(x):\n    os._exit(2)\n",
           expect(Verdict.RUNTIME_ERROR, None, "NoResult")),
    attack("exit_3_was_memory", "import os\ndef f(x):\n    os._exit(3)\n",
           expect(Verdict.RUNTIME_ERROR, None, "NoResult")),
    attack("exit_137", "import os\ndef f(x):\n    os._exit(137)\n",
           expect(Verdict.RUNTIME_ERROR, None, "NoResult")),
    attack("sys_exit", "import sys\ndef f(x):\n    sys.exit(3)\n",
           expect(Verdict.RUNTIME_ERROR, None, "SystemExit")),
    attack("self_sigkill",
           "import os, signal\ndef f(x):\n    os.kill(os.getpid(), signal.SIGKILL)\n",
           expect(Verdict.RUNTIME_ERROR, None, "SIGKILL")),
    attack("self_sigxcpu",
           "import os, signal\ndef f(x):\n    os.kill(os.getpid(), signal.SIGXCPU)\n",
           expect(Verdict.RUNTIME_ERROR, None, "SIGXCPU")),
    attack("self_sigsegv", "import signal\ndef f(x):\n    signal.raise_signal(signal.SIGSEGV)\n",
           expect(Verdict.RUNTIME_ERROR, None, "SIGSEGV")),
    attack("lowered_cpu_limit",
           "import resource\ndef f(x):\n    resource.setrlimit(resource.RLIMIT_CPU, (1, 2))\n"
           "    while True:\n        pass\n",
           expect(Verdict.RUNTIME_ERROR, None, "SIGXCPU"), timeout_s=20.0),
]


def test_exit_statuses_and_self_signals_are_runtime_errors(shared: Engine) -> None:
    run_between_neighbours(shared, [attack(item.id, item.program, wanted, **(
        {"timeout_s": item.timeout_s} if item.timeout_s else {}))
        for item, wanted in EXIT_TRICKS])


def test_real_limits_are_still_the_hosts_verdicts(shared: Engine) -> None:
    """The other side of the coin: what the host observes stays a limit verdict."""
    attackers = [
        attack("wall_clock", "import time\ndef f(x):\n    time.sleep(60)\n",
               expect(Verdict.TIMEOUT), timeout_s=1.0),
        attack("cpu", "def f(x):\n    while True:\n        pass\n", expect(Verdict.TIMEOUT),
               timeout_s=1.0),
        attack("memory", "def f(x):\n    kept = []\n    while True:\n"
               "        kept.append(bytearray(2**20))\n", expect(Verdict.MEMORY_LIMIT),
               memory_mb=64),
        attack("output", "def f(x):\n    return 'x' * 10**6\n", expect(Verdict.OUTPUT_LIMIT)),
    ]
    run_between_neighbours(shared, attackers)


# -- 3. signals to the zygote -------------------------------------------------------------------

SIGNAL_NAMES = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM",
                "SIGPIPE", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGKILL", "SIGXCPU", "SIGSEGV"]


def test_signals_to_pid_1_reach_nobody(solo: Engine, shared: Engine) -> None:
    program = ("import os, signal\ndef f(x):\n"
               f"    for name in {SIGNAL_NAMES!r}:\n"
               "        os.kill(1, getattr(signal, name))\n"
               "    return 'alive'\n")
    for engine in (solo, shared):
        run_between_neighbours(engine, [attack("kill_pid_1", program,
                                               expect(Verdict.ACCEPTED, "'alive'"))])


def test_group_and_broadcast_signals_hit_only_the_sender(solo: Engine) -> None:
    attackers = [
        attack("kill_group", "import os, signal\ndef f(x):\n    os.kill(0, signal.SIGTERM)\n"
               "    return 'alive'\n", expect(Verdict.RUNTIME_ERROR, None, "SIGTERM")),
        # The zygote leads its session as PID 1: its group is 1, and killpg(1) is kill(-1).
        attack("killpg", "import os, signal\ndef f(x):\n"
               "    os.killpg(os.getpgrp(), signal.SIGUSR1)\n    return 'alive'\n",
               expect(Verdict.RUNTIME_ERROR, None, "ProcessLookupError")),
        attack("kill_everyone", "import os, signal\ndef f(x):\n    os.kill(-1, signal.SIGKILL)\n",
               expect(Verdict.RUNTIME_ERROR, None, "ProcessLookupError")),
        attack("kill_next_pids", "import os, signal\ndef f(x):\n    hit = []\n"
               "    for pid in range(2, 200):\n"
               "        if pid != os.getpid():\n"
               "            try:\n                os.kill(pid, signal.SIGKILL)\n"
               "                hit.append(pid)\n"
               "            except OSError:\n                pass\n"
               "    return hit\n", expect(Verdict.ACCEPTED, "[]")),
    ]
    run_between_neighbours(solo, attackers)


# -- 4. frames, objects and heap: a child holds its own request and nothing else ----------------

SNOOPER = r'''
import ctypes, gc, os, re, sys
PATTERN = re.compile(r"NEIGHBOUR[0-9a-f]{32}")
BYTES_PATTERN = re.compile(rb"NEIGHBOUR[0-9a-f]{32}")

def frames_and_objects():
    found = set()
    frame = sys._getframe()
    while frame is not None:
        for space in (frame.f_locals, frame.f_globals):
            for value in list(space.values()):
                try:
                    found.update(PATTERN.findall(repr(value)[:10**6]))
                except Exception:
                    pass
        frame = frame.f_back
    for obj in gc.get_objects():
        try:
            found.update(PATTERN.findall(repr(obj)[:10**5]))
        except Exception:
            pass
    return found

def heap():
    """Reads memory around the heap a page at a time, through a pipe: an unmapped page is an
    EFAULT, not a crash."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.write.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
    libc.sbrk.restype = ctypes.c_void_p
    read_end, write_end = os.pipe()
    found = set()
    anchors = [libc.sbrk(0), id(object()), id(bytearray(10**5)), id(frames_and_objects)]
    seen = set()
    for anchor in anchors:
        base = (anchor // 4096) * 4096
        for page in range(base - 16 * 2**20, base + 16 * 2**20, 4096):
            if page <= 0 or page in seen:
                continue
            seen.add(page)
            if libc.write(write_end, page, 4096) == 4096:
                found.update(m.decode() for m in BYTES_PATTERN.findall(os.read(read_end, 4096)))
    return found

def f(x):
    return sorted(frames_and_objects() | heap())
'''


def test_no_item_sees_another_items_program_input_or_output(solo: Engine, shared: Engine) -> None:
    for engine in (solo, shared):
        # Earlier frames leave their items behind in nothing a later child can read...
        earlier = neighbours(6, "earlier")
        results = engine.check([item for item, _ in earlier], PERMISSIVE)
        assert all(result.verdict is Verdict.ACCEPTED for result in results)
        # ...and neither do the items of the same frame, before and after the snooper.
        run_between_neighbours(engine, [attack("snooper", SNOOPER,
                                               expect(Verdict.ACCEPTED, "[]"))])


# -- 5-6. nothing a child does changes the zygote or what later children see --------------------

OBSERVER = ("import os\ndef f(x):\n"
            "    return [os.getpriority(os.PRIO_PROCESS, 0), sorted(os.sched_getaffinity(0)),\n"
            "            os.sched_getscheduler(0), sorted(os.listdir('/')),\n"
            "            sorted(os.listdir('/dev')), os.path.exists('/dev/shm'),\n"
            "            sorted(os.environ)]\n")

SCHEDULING = ("import os\ndef f(x):\n    refused = []\n"
              "    calls = [lambda: os.sched_setaffinity(1, {0}),\n"
              "             lambda: os.setpriority(os.PRIO_PROCESS, 1, 19),\n"
              "             lambda: os.setpriority(os.PRIO_PGRP, 0, 19),\n"
              "             lambda: os.setpriority(os.PRIO_USER, os.getuid(), 19),\n"
              "             lambda: os.sched_setscheduler(1, os.SCHED_IDLE, os.sched_param(0)),\n"
              "             lambda: os.sched_setparam(1, os.sched_param(0)),\n"
              "             lambda: os.sched_setaffinity(0, {0}),\n"
              "             lambda: os.nice(5)]\n"
              "    for call in calls:\n"
              "        try:\n            call()\n            refused.append(None)\n"
              "        except OSError as error:\n            refused.append(type(error).__name__)\n"
              "    return refused\n")

WRITES = ("import ctypes, os\ndef f(x):\n    made = []\n"
          "    for path in ['/x', '/dev/x', '/dev/shm/x', '/usr/x', '/tmp/x', '/proc/x']:\n"
          "        for action in (lambda: os.mkdir(path), lambda: os.symlink('/', path + 'l'),\n"
          "                       lambda: os.close(os.open(path + 'f',\n"
          "                                                os.O_CREAT | os.O_WRONLY)),\n"
          "                       lambda: os.mkfifo(path + 'p')):\n"
          "            try:\n                action()\n                made.append(path)\n"
          "            except OSError:\n                pass\n"
          "    libc = ctypes.CDLL(None, use_errno=True)\n"
          "    ipc = [libc.shmget(0, 2**20, 0o1600), libc.msgget(0, 0o1600),\n"
          "           libc.semget(0, 1, 0o1600), libc.syscall(319, b'x', 0)]\n"
          "    return [made, ipc]\n")


def test_scheduling_and_filesystem_attacks_leave_later_items_untouched(solo: Engine) -> None:
    baseline = solo.check([CheckItem(program=fresh(OBSERVER), input="0")], PERMISSIVE)[0]
    assert baseline.verdict is Verdict.ACCEPTED, baseline
    watcher = CheckItem(id="observer", program=fresh(OBSERVER), input="0")
    run_between_neighbours(solo, [
        attack("scheduling", SCHEDULING,
               expect(Verdict.ACCEPTED, repr(["PermissionError"] * 8))),
        attack("writes", WRITES, expect(Verdict.ACCEPTED, "[[], [-1, -1, -1, -1]]")),
        (watcher, expect(Verdict.ACCEPTED, baseline.output)),
    ])


# -- 7-9. determinism cannot be gamed by knowing the environment --------------------------------


def known_hashes(text: str, seeds: range) -> list[int]:
    """What hash(text) is under small, guessable seeds (computed by the host's Python)."""
    return [int(subprocess.run([sys.executable, "-c", f"print(hash({text!r}))"],
                               env={**os.environ, "PYTHONHASHSEED": str(seed)},
                               capture_output=True, text=True, check=True).stdout)
            for seed in seeds]


def test_the_sandbox_cannot_be_told_from_the_real_world(shared: Engine) -> None:
    known = set(known_hashes("azr", range(0, 8)))
    attackers = [
        attack("known_seed", f"def f(x):\n    return hash('azr') in {known!r}\n",
               expect(Verdict.ACCEPTED, "False")),
        attack("environment", "import os\ndef f(x):\n    return dict(os.environ)\n",
               expect(Verdict.ACCEPTED, "{}")),
        attack("proc_environ", "def f(x):\n    return open('/proc/self/environ', 'rb').read()\n",
               expect(Verdict.RUNTIME_ERROR, None, "FileNotFoundError", "PermissionError")),
        attack("hash_order", "def f(x):\n    return list({'foo', 'bar', 'baz', 'qux', 'quux',"
               " 'corge', 'grault', 'garply', 'waldo', 'fred'})\n",
               expect(Verdict.NONDETERMINISTIC)),
        attack("str_hash", "def f(x):\n    return hash('azr-verify')\n",
               expect(Verdict.NONDETERMINISTIC)),
    ]
    run_between_neighbours(shared, attackers)


RANDOMNESS = [
    ("os_urandom", "import os\ndef f(x):\n    return os.urandom(8)\n"),
    ("dev_urandom", "def f(x):\n    data = open('/dev/urandom', 'rb').read(8)\n"
                    "    assert len(data) == 8\n    return data\n"),
    ("dev_random", "def f(x):\n    data = open('/dev/random', 'rb').read(8)\n"
                   "    assert len(data) == 8\n    return data\n"),
    ("getrandom_syscall",
     "import ctypes\ndef f(x):\n    libc = ctypes.CDLL(None, use_errno=True)\n"
     "    buffer = ctypes.create_string_buffer(8)\n"
     "    if libc.syscall(318, buffer, 8, 0) != 8:\n        raise OSError(ctypes.get_errno())\n"
     "    return buffer.raw\n"),
    ("system_random", "import random\ndef f(x):\n    return random.SystemRandom().random()\n"),
    ("secrets", "import secrets\ndef f(x):\n    return secrets.token_hex(8)\n"),
    ("uuid4", "import uuid\ndef f(x):\n    return str(uuid.uuid4())\n"),
]


def test_randomness_sources_fail_inside_the_sandbox(shared: Engine) -> None:
    results = run_between_neighbours(shared, [
        attack(name, program, expect(Verdict.RUNTIME_ERROR)) for name, program in RANDOMNESS])
    assert all(result.error_type for result in results)


ADDRESS_DERIVED = [
    ("id_low_bits", "def f(x):\n    return id(object()) % 4096\n"),
    ("object_hash", "def f(x):\n    return hash(object()) % 4096\n"),
    ("default_repr", "def f(x):\n    return repr(object())\n"),
    ("bytes_id", "def f(x):\n    return id(bytes(30 + x)) % 4096\n"),
    # Not here: floats, lists, dicts and small tuples are recycled through CPython's free
    # lists, and buffers over 512 bytes through malloc's; the layout shift does not reach
    # their order (docs/design.md §9.4).
]


def test_address_derived_values_differ_between_runs(shared: Engine) -> None:
    run_between_neighbours(shared, [attack(name, program, expect(Verdict.NONDETERMINISTIC))
                                    for name, program in ADDRESS_DERIVED])
