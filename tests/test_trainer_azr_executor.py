"""`ServiceExecutor` against a real azr-verify service, case by case against the semantics of
AZR's `PythonExecutor` (its method names, signatures and return conventions; where the
service is deliberately stricter the test says so).

Every program carries a fresh marker so the service's result cache never answers for the
sandbox. A sandbox_error cannot be produced on demand by a healthy service, so those two
tests alone answer from an in-process transport.
"""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from azr_verify.client import Client, ClientConfig, SandboxFailure
from azr_verify.client.azr_executor import ServiceExecutor, apply_program, contains_banned


def fresh(program: str) -> str:
    """The same program under a never-seen text (a trailing comment): no cache hit."""
    return f"{program}\n# {uuid.uuid4().hex}"


class CountingTransport(httpx.HTTPTransport):
    """The real HTTP transport, counting /v1/check requests."""

    def __init__(self) -> None:
        super().__init__()
        self.checks = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/check":
            self.checks += 1
        return super().handle_request(request)


@pytest.fixture()
def counted(service_url: str) -> Iterator[tuple[ServiceExecutor, CountingTransport]]:
    transport = CountingTransport()
    client = Client(config=ClientConfig(base_url=service_url), transport=transport)
    executor = ServiceExecutor(timeout_length=2, client=client)
    try:
        yield executor, transport
    finally:
        client.close()


@pytest.fixture()
def executor(counted: tuple[ServiceExecutor, CountingTransport]) -> ServiceExecutor:
    return counted[0]


REFERENCE_SIGNATURES = {
    # From absolute_zero_reasoner/utils/code_utils/python_executor.py (parameter names).
    "check_all": ["code", "inputs", "banned_keywords", "check_determinism", "imports",
                  "check_error", "banned_keywords_for_errors_and_exceptions"],
    "eval_input_prediction": ["code", "gold_output", "agent_input", "imports"],
    "eval_output_prediction": ["code", "gold_output", "agent_output", "imports"],
    "eval_k_input_prediction": ["code", "gold_output", "k_agent_inputs", "imports"],
    "eval_k_output_prediction": ["code", "gold_output", "k_agent_outputs", "imports"],
    "run_code": ["code", "inputs", "imports"],
    "validate_code": ["code", "inputs", "imports"],
    "apply": ["code"],
    "batch_apply": ["batch_code"],
    "cleanup": [],
}


def test_method_names_and_parameters_are_the_references() -> None:
    for name, params in REFERENCE_SIGNATURES.items():
        signature = inspect.signature(getattr(ServiceExecutor, name))
        assert list(signature.parameters)[1:] == params, name
    # AZR's trainer builds its executor with these keywords.
    constructor = inspect.signature(ServiceExecutor)
    assert {"timeout_length", "ast_check", "max_workers"} <= set(constructor.parameters)


# -- check_all: proposals -------------------------------------------------------------------


def test_valid_proposal_returns_the_repr_of_its_output(executor: ServiceExecutor) -> None:
    assert executor.check_all(fresh("def f(a):\n    return a * 2"), "3") == (True, "6")
    assert executor.check_all(fresh("def f(s, k=1):\n    return s[::-1] * k"), "'ab', k=2") \
        == (True, "'baba'")


@pytest.mark.parametrize("program", [
    "def f(a):\n    raise ValueError(a)",         # raises
    "def f(a):\n    return a +",                  # does not parse
    "def g(a):\n    return a",                    # no f
    "def f(a):\n    while True:\n        pass",   # runs forever (timeout_length=2)
])
def test_invalid_proposals(executor: ServiceExecutor, program: str) -> None:
    # The reference: the status contains "error" (or "Timeout Error") -> (False, "").
    assert executor.check_all(fresh(program), "1") == (False, "")


def test_input_must_parse(executor: ServiceExecutor) -> None:
    assert executor.check_all(fresh("def f(a):\n    return a"), "1 +") == (False, "")


def test_determinism_is_checked_across_processes(executor: ServiceExecutor) -> None:
    # Set order of strings depends on the hash seed. The reference calls f twice in one
    # process (same seed) and accepts this; the service runs it under two seeds and refuses
    # it, because a solver process would see another order than the gold output.
    program = fresh("def f(n):\n    return list({str(k) + 'x' for k in range(n)})")
    assert executor.check_all(program, "40") == (False, "")
    valid, output = executor.check_all(program, "40", check_determinism=False)
    assert valid and output is not None and output.startswith("[")


def test_state_does_not_leak_between_runs(executor: ServiceExecutor) -> None:
    # Module-level state: the reference's two calls in one process return 1 then 2 and it
    # rejects the program as nondeterministic; every service run starts from a fresh
    # process, so f(x) is 1 every time, which is what a solver would compute.
    program = fresh("calls = []\ndef f(a):\n    calls.append(a)\n    return len(calls)")
    assert executor.check_all(program, "7") == (True, "1")


@pytest.mark.parametrize(("program", "banned"), [
    ("import random\ndef f(a):\n    return a", ["random"]),
    ("from collections import Counter\ndef f(a):\n    return a", ["collections"]),
    ("import os.path\ndef f(a):\n    return a", ["path"]),          # any dotted part
    ("from os import path\ndef f(a):\n    return a", ["os"]),
])
def test_banned_keywords_reject_without_running(
        counted: tuple[ServiceExecutor, CountingTransport], program: str,
        banned: list[str]) -> None:
    executor, transport = counted
    assert executor.check_all(fresh(program), "1", banned_keywords=banned) == (False, None)
    assert transport.checks == 0  # refused locally, as the reference does


def test_the_services_policy_is_a_banned_list_too(executor: ServiceExecutor) -> None:
    # No banned keywords given, but the service's `azr` policy refuses os: (False, None).
    program = fresh("import os\ndef f(a):\n    return os.getpid()")
    assert executor.check_all(program, "1") == (False, None)


def test_imports_are_prepended(executor: ServiceExecutor) -> None:
    program = fresh("def f(a):\n    return math.sqrt(a)")
    assert executor.check_all(program, "9", imports=["import math"]) == (True, "3.0")
    assert executor.check_all(program, "9") == (False, "")  # NameError without them

    class Array(list[str]):
        """What the reference gets from pandas: something with tolist()."""

        def tolist(self) -> list[str]:
            return list(self)

    assert executor.check_all(program, "16", imports=Array(["import math"])) == (True, "4.0")


def test_check_error_mode_names_the_exception(executor: ServiceExecutor) -> None:
    raising = fresh("def f(a):\n    return {}[a]")
    assert executor.check_all(raising, "'k'", check_error=True) == (True, "KeyError")
    assert executor.check_all(fresh("def f(a):\n    return a"), "1", check_error=True) \
        == (True, "NoError")
    asserting = fresh("def f(a):\n    assert a > 5\n    return a")
    assert executor.check_all(asserting, "1", check_error=True) == (True, "AssertionError")
    assert executor.check_all(asserting, "1", check_error=True,
                              banned_keywords_for_errors_and_exceptions=["assert"]) \
        == (False, None)
    # Error keywords only count in check_error mode, as in the reference.
    assert executor.check_all(asserting, "9",
                              banned_keywords_for_errors_and_exceptions=["assert"]) \
        == (True, "9")


def test_validate_code_and_run_code(executor: ServiceExecutor) -> None:
    assert executor.validate_code(fresh("def f(a, b):\n    return a - b"), "5, 2") is True
    assert executor.validate_code(fresh("def f(a):\n    return 1 / a"), "0") is False
    assert executor.run_code(fresh("def f(a):\n    return [a] * 2"), "'x'") == ("['x', 'x']",
                                                                               "Done")
    assert executor.run_code(fresh("def f(a):\n    raise ValueError('no ' + a)"), "'way'") \
        == ("", "ValueError: no way")


# -- answers --------------------------------------------------------------------------------


@pytest.mark.parametrize(("agent_input", "score"), [
    ("4", 1.0),           # f(4) == 16
    ("-4", 1.0),          # another input with the same output is right too
    ("a=4", 1.0),         # keyword arguments
    ("5", 0.0),           # wrong
    ("'4'", 0.0),         # raises inside f
    ("4 +", 0.0),         # does not parse
])
def test_eval_input_prediction(executor: ServiceExecutor, agent_input: str,
                               score: float) -> None:
    program = fresh("def f(a):\n    return a * a")
    assert executor.eval_input_prediction(program, "16", agent_input) == score


@pytest.mark.parametrize(("gold", "agent", "score"), [
    ("[1, 2]", "[1, 2]", 1.0),            # same text: no request needed
    ("{1, 2}", "{2, 1}", 1.0),            # equal values
    ("{'a': 1, 'b': 2}", "{'b': 2, 'a': 1}", 1.0),
    ("1", "1.0", 1.0),                    # Python ==, as eval(gold) == eval(agent)
    ("[1, 2]", "(1, 2)", 0.0),
    ("'abc'", "abc", 0.0),                # a name, not a string
    ("[1, 1, 1]", "[1] * 3", 0.0),        # computation: the reference would eval it
    ("3", "", 0.0),
])
def test_eval_output_prediction(executor: ServiceExecutor, gold: str, agent: str,
                                score: float) -> None:
    program = fresh("def f(a):\n    return a")
    assert executor.eval_output_prediction(program, gold, agent) == score


def test_eval_k_predictions_are_one_request_each_in_order(
        counted: tuple[ServiceExecutor, CountingTransport]) -> None:
    executor, transport = counted
    program = fresh("def f(a, b=0):\n    return a + b")
    inputs = ["2, 3", "5", "a=1, b=4", "1, 1", "oops(", "'x'"]
    assert executor.eval_k_input_prediction(program, "5", inputs) == [1.0, 1.0, 1.0, 0.0, 0.0,
                                                                      0.0]
    assert transport.checks == 1
    # The reference appends the invalid ones at the end; the order here is the input's.
    outputs = ["5", "5.0", "6", "", "[5]", " 5 "]
    assert executor.eval_k_output_prediction(program, "5", outputs) == [1.0, 1.0, 0.0, 0.0,
                                                                        0.0, 1.0]
    assert transport.checks == 2


# -- snippets ----------------------------------------------------------------------------


def test_apply_runs_the_reference_templates(executor: ServiceExecutor) -> None:
    code = fresh("def f(a):\n    return a + 1")
    # RUN_CODE_TEMPLATE and the input/output prediction templates of the reference.
    assert executor.apply(f"{code}\nrepr(f(1))") == ("2", "Done")
    assert executor.apply(f"{code}\n2 == f(1)") == ("True", "Done")
    assert executor.apply(f"{code}\nrepr(f('a'))")[1].startswith("TypeError: ")
    assert executor.apply(fresh("x = 2; y = 3\nx * y")) == ("6", "Done")
    assert executor.apply(fresh("x = 1")) == ("", "SyntaxError: the snippet must end with "
                                                  "an expression")


def test_batch_apply_is_one_request(counted: tuple[ServiceExecutor, CountingTransport]
                                    ) -> None:
    executor, transport = counted
    results = executor.batch_apply([fresh("'ab' * 2"), fresh("[k * k for k in range(4)]"),
                                    fresh("1 // 0")])
    assert results == [("abab", "Done"), ("[0, 1, 4, 9]", "Done"),
                       ("", "ZeroDivisionError: integer division or modulo by zero")]
    assert transport.checks == 1


def test_apply_program_keeps_the_statements_before_the_expression() -> None:
    program = apply_program("import math\ndef g(x):\n    return x\nmath.floor(g(2.5))")
    assert program is not None and program.startswith("import math\n")
    assert program.rstrip().endswith("return (math.floor(g(2.5)))")
    assert apply_program("def f(:") is None


def test_contains_banned_falls_back_to_words_when_unparseable() -> None:
    assert contains_banned("import random as r(", ["random"])
    assert not contains_banned("import randomness(", ["random"])
    assert not contains_banned("x = 'random'", ["random"])  # strings are not imports


def test_cleanup_keeps_the_executor_usable(executor: ServiceExecutor) -> None:
    program = fresh("def f(a):\n    return -a")
    assert executor.validate_code(program, "1")
    executor.cleanup()
    assert executor.run_code(program, "2") == ("-2", "Done")


def test_url_from_the_environment(monkeypatch: pytest.MonkeyPatch, service_url: str) -> None:
    monkeypatch.setenv("AZR_VERIFY_URL", service_url)
    with ServiceExecutor(timeout_length=5) as executor:
        assert executor.run_code(fresh("def f(a):\n    return a"), "3") == ("3", "Done")
    with pytest.raises(ValueError, match="stdout"):
        ServiceExecutor(get_answer_from_stdout=True)


# -- the verifier's own failures ----------------------------------------------------------


def _failing_client() -> Client:
    def handler(request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)["items"]
        return httpx.Response(200, json={"results": [{"verdict": "sandbox_error"}
                                                     for _ in items]})

    config = ClientConfig(base_url="http://azr.test", sandbox_error_retries=0)
    return Client(config=config, transport=httpx.MockTransport(handler))


def test_sandbox_error_as_the_reference_reports_its_own_failures() -> None:
    executor = ServiceExecutor(client=_failing_client())
    assert executor.check_all("def f(a):\n    return a", "1") == (False, "error")
    assert executor.eval_input_prediction("def f(a):\n    return a", "1", "1") is None
    assert executor.eval_output_prediction("def f(a):\n    return a", "1", "2") is None
    assert executor.run_code("def f(a):\n    return a", "1")[1].startswith("Error: sandbox")
    with pytest.raises(SandboxFailure):
        executor.eval_k_input_prediction("def f(a):\n    return a", "1", ["1", "2"])
    assert executor.sandbox_errors == 4


def test_sandbox_error_can_raise() -> None:
    executor = ServiceExecutor(client=_failing_client(), on_sandbox_error="raise")
    with pytest.raises(SandboxFailure):
        executor.check_all("def f(a):\n    return a", "1")
    with pytest.raises(SandboxFailure):
        executor.eval_input_prediction("def f(a):\n    return a", "1", "1")
