"""Every verdict, and the equality/determinism semantics of docs/design.md §2, case by case.

Every program is made unique per run (`fresh`), so each check really runs the sandbox; only the
cache tests use repeated text on purpose.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from azr_verify.service.engine import Engine
from azr_verify.service.models import CheckItem, CheckResult, PolicyName, Verdict
from azr_verify.service.sandbox.pool import ZygoteState

from .guards import assert_executed, fresh

pytestmark = pytest.mark.sandbox

IDENTITY = "def f(a):\n    return a\n"


def check_one(engine: Engine, program: str, input_text: str, output: str | None = None,
              policy: PolicyName = PolicyName.AZR, **fields: Any) -> CheckResult:
    """One fresh item, really executed (never a cache hit)."""
    item = CheckItem(program=fresh(program), input=input_text, output=output, **fields)
    result = engine.check([item], policy)[0]
    assert_executed([result])
    return result


# -- each verdict -------------------------------------------------------------------------------

VERDICT_CASES = [
    ("accepted_gold", IDENTITY, "'Hello World'", None, Verdict.ACCEPTED, "'Hello World'"),
    ("accepted_given", "def f(a, b):\n    return a + b\n", "2, b=3", "5", Verdict.ACCEPTED, "5"),
    ("wrong_output", "def f(a):\n    return a + 1\n", "1", "3", Verdict.WRONG_OUTPUT, "2"),
    ("runtime_error", "def f(a):\n    return 1 / a\n", "0", None, Verdict.RUNTIME_ERROR, None),
    ("timeout", "def f(a):\n    while True:\n        a += 1\n", "0", None, Verdict.TIMEOUT,
     None),
    ("memory_limit", "def f(a):\n    kept = []\n    while True:\n"
     "        kept.append(bytearray(2**20))\n", "0", None, Verdict.MEMORY_LIMIT, None),
    ("output_limit", "def f(a):\n    return list(range(10**5))\n", "0", None,
     Verdict.OUTPUT_LIMIT, None),
    ("nondeterministic", "def f(a):\n    return list(set('abcdefghijklmnop'))\n", "0", None,
     Verdict.NONDETERMINISTIC, None),
    ("not_literal_generator", "def f(a):\n    return (x for x in a)\n", "[1]", None,
     Verdict.NOT_LITERAL, None),
    ("unsafe", "import os\ndef f(a):\n    return os.getcwd()\n", "0", None, Verdict.UNSAFE,
     None),
    ("syntax_error_program", "def f(a) return a\n", "1", None, Verdict.SYNTAX_ERROR, None),
    ("syntax_error_input", IDENTITY, "len([1])", None, Verdict.SYNTAX_ERROR, None),
    ("syntax_error_entry", "def g(a):\n    return a\n", "1", None, Verdict.SYNTAX_ERROR, None),
    ("syntax_error_output", IDENTITY, "1", "[1,", Verdict.SYNTAX_ERROR, None),
]


def case_limits(verdict: Verdict) -> dict[str, Any]:
    """Per-item limits of a verdict case: short, and a small memory limit for the memory case
    (filling it is what proves the limit was reached)."""
    return {"timeout_s": 1.0, **({"memory_mb": 64} if verdict is Verdict.MEMORY_LIMIT else {})}


@pytest.mark.parametrize(("name", "program", "input_text", "output", "verdict", "shown"),
                         VERDICT_CASES, ids=[case[0] for case in VERDICT_CASES])
def test_each_verdict(engine: Engine, name: str, program: str, input_text: str,
                      output: str | None, verdict: Verdict, shown: str | None) -> None:
    result = check_one(engine, program, input_text, output, **case_limits(verdict))
    assert result.verdict is verdict, result
    if shown is not None:
        assert result.output == shown


def test_runtime_error_reports_exception_type(engine: Engine) -> None:
    result = check_one(engine, "def f(a):\n    raise KeyError(a)\n", "'k'")
    assert result.verdict is Verdict.RUNTIME_ERROR
    assert result.error_type == "KeyError"


def test_unsafe_lists_every_violation(engine: Engine) -> None:
    program = "import os\nimport random\ndef f(a):\n    return eval('1') + open('x')\n"
    result = check_one(engine, program, "1")
    assert result.verdict is Verdict.UNSAFE
    found = {(v.rule, v.name, v.line) for v in result.violations}
    assert {("import_denied", "os", 1), ("import_denied", "random", 2),
            ("builtin", "eval", 4), ("builtin", "open", 4)} <= found


def test_permissive_policy_runs_what_azr_rejects(engine: Engine) -> None:
    program = "import os\ndef f(a):\n    return os.getcwd()\n"
    result = check_one(engine, program, "0", policy=PolicyName.PERMISSIVE)
    assert result.verdict is Verdict.ACCEPTED
    assert result.output == "'/'"


@pytest.mark.parametrize("program", [
    "def f(a):\n    return object()\n",
    "def f(a):\n    return lambda: a\n",
    "def f(a):\n    return f\n",
    "class One:\n    def __repr__(self):\n        return '1'\ndef f(a):\n    return One()\n",
    "class I(int):\n    pass\ndef f(a):\n    return [I(1)]\n",
    "def f(a):\n    l = [1]\n    l.append(l)\n    return l\n",
    "import math\ndef f(a):\n    return math\n",
])
def test_non_literal_returns(engine: Engine, program: str) -> None:
    result = check_one(engine, program, "0", policy=PolicyName.PERMISSIVE)
    assert result.verdict is Verdict.NOT_LITERAL, result


# -- equality semantics ---------------------------------------------------------------------------

EQUALITY_CASES = [
    ("set_order", "return {2, 1, 3}", "{1, 2, 3}", Verdict.ACCEPTED),
    ("dict_order", "return {'b': 1, 'a': 2}", "{'a': 2, 'b': 1}", Verdict.ACCEPTED),
    ("int_float", "return 1", "1.0", Verdict.ACCEPTED),
    ("int_bool", "return 1", "True", Verdict.ACCEPTED),
    ("list_vs_tuple", "return [1]", "(1,)", Verdict.WRONG_OUTPUT),
    ("list_order", "return [1, 2]", "[2, 1]", Verdict.WRONG_OUTPUT),
    ("nan_top", "return float('nan')", "nan", Verdict.ACCEPTED),
    ("nan_call_form", "return float('nan')", "float('nan')", Verdict.ACCEPTED),
    ("nan_nested", "return [float('nan'), {'k': float('nan')}]", "[nan, {'k': nan}]",
     Verdict.ACCEPTED),
    ("inf", "return -float('inf')", "-inf", Verdict.ACCEPTED),
    ("complex", "return complex(1, -2)", "(1-2j)", Verdict.ACCEPTED),
    ("frozenset", "return frozenset({1, 2})", "frozenset({2, 1})", Verdict.ACCEPTED),
    ("empty_set", "return set()", "set()", Verdict.ACCEPTED),
    ("str_vs_bytes", "return 'a'", "b'a'", Verdict.WRONG_OUTPUT),
    ("none", "return None", "None", Verdict.ACCEPTED),
    ("nested_tuple_keys", "return {(1, 2): [3]}", "{(1, 2): [3]}", Verdict.ACCEPTED),
]


@pytest.mark.parametrize(("name", "body", "output", "verdict"), EQUALITY_CASES,
                         ids=[case[0] for case in EQUALITY_CASES])
def test_equality_semantics(engine: Engine, name: str, body: str, output: str,
                            verdict: Verdict) -> None:
    result = check_one(engine, f"def f(a):\n    {body}\n", "0", output)
    assert result.verdict is verdict, result


def test_inputs_accept_every_literal_form(engine: Engine) -> None:
    program = "def f(*args, **kwargs):\n    return [list(args), sorted(kwargs)]\n"
    input_text = ("[1, (2,)], {'k': {3}}, set(), frozenset({4}), float('inf'), -5, 1+2j, "
                  "b'x', None, True, k=3, z=float('nan')")
    result = check_one(engine, program, input_text)
    assert result.verdict is Verdict.ACCEPTED, result
    assert result.output.endswith("['k', 'z']]")


# -- determinism ----------------------------------------------------------------------


def test_hash_order_dependence_is_nondeterministic(engine: Engine) -> None:
    program = "def f(words):\n    return list(set(words))\n"
    result = check_one(engine, program, "['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta']")
    assert result.verdict is Verdict.NONDETERMINISTIC, result
    assert "run 1 gave" in result.error


def test_set_result_is_deterministic_by_value(engine: Engine) -> None:
    """A set's repr order changes with the hash seed, but its value does not."""
    program = "def f(words):\n    return set(words)\n"
    result = check_one(engine, program, "['alpha', 'beta', 'gamma', 'delta', 'epsilon']")
    assert result.verdict is Verdict.ACCEPTED, result


def test_exception_types_must_agree(engine: Engine) -> None:
    program = ("def f(a):\n    name = 'E' + str(hash('salt') % 10**9)\n"
               "    raise type(name, (Exception,), {})()\n")
    result = check_one(engine, program, "0", policy=PolicyName.PERMISSIVE)
    assert result.verdict is Verdict.NONDETERMINISTIC, result


def test_single_run_cannot_detect_nondeterminism(engine: Engine) -> None:
    program = "def f(words):\n    return list(set(words))\n"
    result = check_one(engine, program, "['alpha', 'beta', 'gamma', 'delta', 'epsilon']",
                       determinism_runs=1)
    assert result.verdict is Verdict.ACCEPTED


def test_none_policy(engine: Engine) -> None:
    strict = Engine(engine.settings.model_copy(update={"reject_none_output": True}), engine.pool)
    program = "def f(a):\n    a.append(1)\n"
    assert check_one(engine, program, "[]").verdict is Verdict.ACCEPTED
    assert check_one(strict, program, "[]").verdict is Verdict.NOT_LITERAL


def test_no_state_leaks_between_items(engine: Engine) -> None:
    items = [
        CheckItem(id="mutate", program="import math\nmath.pi = 3\ndef f(a):\n    return math.pi\n",
                  input="0", output="3"),
        CheckItem(id="read", program="import math\ndef f(a):\n    return math.pi\n", input="0",
                  output="3.141592653589793"),
        CheckItem(id="builtins", program="import builtins\nbuiltins.len = lambda x: 0\n"
                  "def f(a):\n    return len(a)\n", input="[1, 2]", output="0"),
        CheckItem(id="len", program="def f(a):\n    return len(a)\n", input="[1, 2]",
                  output="2"),
    ]
    for round_ in range(3):
        run = [item.model_copy(update={"program": fresh(item.program)}) for item in items]
        results = engine.check(run, PolicyName.PERMISSIVE)
        assert [r.verdict for r in results] == [Verdict.ACCEPTED] * 4, (round_, results)
        assert_executed(results)


# -- cache, dedupe, order -----------------------------------------------------------------------


@pytest.mark.sandbox(cache_hits=2)
def test_cache_hit_costs_no_execution(engine: Engine) -> None:
    item = CheckItem(program=fresh("def f(a):\n    return a * 7\n"), input="6")
    first = engine.check([item])[0]
    executions = engine.stats().executions
    again = engine.check([item.model_copy(update={"output": "42"})])[0]
    wrong = engine.check([item.model_copy(update={"output": "41"})])[0]
    assert not first.cached and again.cached and wrong.cached
    assert (again.verdict, wrong.verdict) == (Verdict.ACCEPTED, Verdict.WRONG_OUTPUT)
    assert engine.stats().executions == executions


def test_duplicates_in_a_batch_run_once(engine: Engine) -> None:
    item = CheckItem(program=fresh("def f(a):\n    return a * 11\n"), input="3")
    before = engine.stats().executions
    results = engine.check([item] * 5)
    assert engine.stats().executions - before == 2  # one item x determinism_runs
    assert {r.output for r in results} == {"33"}


def test_results_keep_order_and_ids(engine: Engine) -> None:
    items = [CheckItem(id=i, program=fresh(f"def f(a):\n    return a + {i}\n"), input="1")
             for i in range(50)]
    spin = fresh("def f(a):\n    while True:\n        pass\n")
    items.insert(7, CheckItem(id="slow", program=spin, input="0", timeout_s=0.5))
    results = engine.check(items)
    assert_executed(results)
    assert [r.id for r in results] == [item.id for item in items]
    assert results[7].verdict is Verdict.TIMEOUT
    assert [r.output for r in results if r.id != "slow"] == [str(1 + i) for i in range(50)]


def test_limits_are_capped_by_the_server(engine: Engine) -> None:
    limits = engine.limits_for(CheckItem(program=IDENTITY, input="1", timeout_s=10**6,
                                         memory_mb=10**6, determinism_runs=16))
    settings = engine.settings
    assert limits.timeout_s == settings.max_timeout_s
    assert limits.memory_mb == settings.max_memory_mb
    assert limits.determinism_runs == settings.determinism_seeds


def test_progress_is_reported(engine: Engine) -> None:
    seen: list[tuple[int, int]] = []
    items = [CheckItem(program=f"def f(a):\n    return {i}\n", input="0") for i in range(10)]
    engine.check(items, on_progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (10, 10)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


# -- sandbox failures -----------------------------------------------------------------


def wait_for(condition: Callable[[], bool], what: str, give_up_s: float = 120.0) -> None:
    """Waits for an event; the give-up only turns a hang into a failure, it decides nothing."""
    deadline = time.monotonic() + give_up_s
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


def test_zygote_killed_mid_batch_every_item_answered(engine: Engine) -> None:
    """SIGKILL every zygote while one holds work: every item is answered (retried once, or
    sandbox_error), never a model failure, and the pool serves again."""
    restarts = engine.pool.stats().restarts
    # The sleeper keeps its zygote busy until the kill, whenever the kill comes.
    items = [CheckItem(id="sleeper", program=fresh("import time\ndef f(a):\n    time.sleep(100)\n"),
                       input="0", timeout_s=3.0)]
    items += [CheckItem(id=i, program=fresh(f"def f(a):\n    return sum(range(10**5)) + {i}\n"),
                        input="0") for i in range(40)]
    results: list[CheckResult] = []
    checker = threading.Thread(target=lambda: results.extend(
        engine.check(items, PolicyName.PERMISSIVE)))
    checker.start()
    wait_for(lambda: any(worker.state is ZygoteState.BUSY for worker in engine.pool.zygote_threads),
             "a zygote holding work")
    for pid in engine.pool.zygote_pids():
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    checker.join()
    assert [r.id for r in results] == [item.id for item in items]
    assert results[0].verdict in (Verdict.TIMEOUT, Verdict.SANDBOX_ERROR), results[0]
    for index, result in enumerate(results[1:]):
        assert result.verdict in (Verdict.ACCEPTED, Verdict.SANDBOX_ERROR), result
        if result.verdict is Verdict.ACCEPTED:
            assert result.output == str(sum(range(10**5)) + index)
    # Every zygote takes work again (an idle one's death is found on its next use).
    healthy = [CheckItem(program=fresh(f"def f(a):\n    return -a - {i}\n"), input="5")
               for i in range(12)]
    after = engine.check(healthy)
    assert [r.output for r in after] == [str(-5 - i) for i in range(12)]
    assert engine.pool.stats().restarts > restarts
    stats = engine.pool.stats()
    assert stats.states["dead"] == 0 and stats.states["starting"] == 0


def test_repeatedly_dying_zygote_gives_sandbox_error(engine: Engine) -> None:
    """An item whose zygote dies on both attempts is sandbox_error, never a model failure."""
    stop = threading.Event()

    def keep_killing() -> None:
        while not stop.is_set():
            for pid in engine.pool.zygote_pids():
                if pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    killer = threading.Thread(target=keep_killing)
    killer.start()
    try:
        result = check_one(engine, "def f(a):\n    while True:\n        pass\n", "0",
                           timeout_s=30.0)
    finally:
        stop.set()
        killer.join()
    assert result.verdict is Verdict.SANDBOX_ERROR
    assert not result.cached
    recovered = check_one(engine, "def f(a):\n    return a\n", "'back'")
    assert recovered.verdict is Verdict.ACCEPTED


def test_hash_seeds_are_secret_and_fresh_per_pool_start(engine: Engine) -> None:
    """Seeds are drawn at every pool start: the same hash differs between two pools, and no
    group uses a small, guessable seed."""
    program = "def f(a):\n    return hash(a)\n"
    item = CheckItem(program=program + f"# {uuid.uuid4()}\n", input="'azr-verify'",
                     determinism_runs=1)
    first = engine.check([item])[0]
    with Engine.start(engine.settings.model_copy(update={"workers": 1})) as fresh:
        seeds = {secrets.hash_seed for secrets in fresh.pool.secrets}
        again = fresh.check([item])[0]
    assert first.verdict is again.verdict is Verdict.ACCEPTED and not again.cached
    assert again.output != first.output
    assert len(seeds) == fresh.pool.seed_groups and not seeds & set(range(0, 1000))
    # and two runs use two different seeds, so the hash differs between them
    two_runs = item.model_copy(update={"determinism_runs": 2})
    assert engine.check([two_runs])[0].verdict is Verdict.NONDETERMINISTIC


def test_a_single_item_is_not_queued_behind_another_callers_batch(engine: Engine) -> None:
    """Calls take turns in the pool: a one-item check made while a long batch is queued comes
    back while that batch is still running (each of its items sleeps, so it cannot finish
    first however fast the machine)."""
    sleepy = [CheckItem(id=i, program=fresh("import time\ndef f(a):\n    time.sleep(0.02)\n"
                                            f"    return a + {i}\n"), input="1")
              for i in range(300)]
    big: list[CheckResult] = []
    batch = threading.Thread(target=lambda: big.extend(engine.check(sleepy,
                                                                    PolicyName.PERMISSIVE)))
    batch.start()
    wait_for(lambda: engine.pool.stats().queued > 100, "the batch queued in the pool")
    single = check_one(engine, "def f(a):\n    return a * 3\n", "14")
    still_running = batch.is_alive()
    batch.join()
    assert single.verdict is Verdict.ACCEPTED and single.output == "42"
    assert still_running, "the single item waited for the whole batch"
    assert [r.output for r in big] == [str(1 + i) for i in range(300)]
