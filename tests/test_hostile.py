"""The hostile-program suite against the process backend, under policy `permissive`.

Program text is fresh on every call of `hostile_items`, so the sandbox runs every case (the
session cache never answers), and every result is checked for that.
"""

from __future__ import annotations

import os

import pytest

from azr_verify.service.engine import Engine
from azr_verify.service.models import CheckItem, CheckResult, PolicyName, Verdict

from .guards import assert_executed, fresh
from .hostile_cases import HOSTILE_CASES, PROJECT_DIR, HostileCase

pytestmark = pytest.mark.sandbox


def hostile_items() -> list[CheckItem]:
    return [CheckItem(id=case.name, program=fresh(case.program), input=case.input,
                      timeout_s=case.timeout_s, memory_mb=case.memory_mb)
            for case in HOSTILE_CASES]


def assert_contained(case: HostileCase, result: CheckResult) -> None:
    assert result.verdict is case.verdict, (case.name, result)
    if case.error_types:
        assert result.error_type in case.error_types, (case.name, result)
    if case.output is not None:
        assert result.output == case.output, (case.name, result)


@pytest.fixture(scope="module")
def hostile_results(engine: Engine) -> dict[str, CheckResult]:
    # Let every zygote take work first, so deaths caused by earlier tests are settled.
    warm = [CheckItem(program=fresh(f"def f(x):\n    return x + {i}\n"), input="0")
            for i in range(30)]
    engine.check(warm)
    restarts_before = engine.pool.stats().restarts
    results = engine.check(hostile_items(), PolicyName.PERMISSIVE)
    assert_executed(results)
    # No hostile program may take a zygote down: the kill attempts must not cost a restart.
    assert engine.pool.stats().restarts == restarts_before
    return {str(result.id): result for result in results}


@pytest.mark.parametrize("case", HOSTILE_CASES, ids=lambda case: case.name)
def test_hostile_program_is_contained(case: HostileCase,
                                      hostile_results: dict[str, CheckResult]) -> None:
    assert_contained(case, hostile_results[case.name])


def test_service_unharmed_after_hostile_suite(engine: Engine,
                                              hostile_results: dict[str, CheckResult]) -> None:
    assert len(hostile_results) == len(HOSTILE_CASES)
    assert not os.path.exists("/tmp/azr-pwned")
    assert not os.path.exists(os.path.join(PROJECT_DIR, "pwned.txt"))
    stats = engine.pool.stats()
    assert stats.states["dead"] == 0 and stats.states["starting"] == 0
    after = engine.check([CheckItem(program=fresh("def f(x):\n    return x * 2\n"), input="21",
                                    output="42")])
    assert after[0].verdict is Verdict.ACCEPTED


def test_hostile_items_do_not_disturb_neighbours(engine: Engine) -> None:
    """Ordinary items interleaved with hostile ones keep their own verdicts."""
    items: list[CheckItem] = []
    for index, hostile in enumerate(hostile_items()):
        items.append(hostile)
        items.append(CheckItem(id=f"ok{index}",
                               program=fresh(f"def f(x):\n    return x + {index}\n"),
                               input="1", output=str(1 + index)))
    restarts = engine.pool.stats().restarts
    results = engine.check(items, PolicyName.PERMISSIVE)
    assert_executed(results)
    neighbours = [r for r in results if str(r.id).startswith("ok")]
    assert [r.verdict for r in neighbours] == [Verdict.ACCEPTED] * len(HOSTILE_CASES)
    assert [r.output for r in neighbours] == [str(1 + i) for i in range(len(HOSTILE_CASES))]
    for case, result in zip(HOSTILE_CASES, results[::2], strict=True):
        assert_contained(case, result)
    assert engine.pool.stats().restarts == restarts
