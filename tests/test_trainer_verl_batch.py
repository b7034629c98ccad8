"""The batched veRL reward against a real service: a batch of mixed answers, one request.

Programs carry fresh markers so the service's cache never answers for the sandbox. Only the
sandbox_error cases answer from an in-process transport (a healthy service cannot be made
to fail on demand).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from azr_verify.client import Client, ClientConfig
from azr_verify.client.verl_batch import make_batch_compute_score, score_batch


class CountingTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.checks = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/check":
            self.checks += 1
        return super().handle_request(request)


def wrap(answer: str) -> str:
    return f"Let me think.</think> <answer>{answer}</answer>"


def test_a_mixed_batch_is_scored_in_one_request(service_url: str) -> None:
    marker = uuid.uuid4().hex
    square = f"def f(a):\n    return a * a  # {marker}"
    swap = f"def f(a, b):\n    return (b, a)  # {marker}"
    deduction = {"task_type": "deduction", "program": square, "input": "3"}
    abduction = json.dumps({"task_type": "abduction", "program": swap, "output": "(2, 1)"})
    hidden = [["1", "2"], ["3", "6"]]
    cases: list[tuple[str, str, Any, dict[str, Any] | None, float]] = [
        ("azr", wrap("```output\n9\n```"), deduction, None, 1.0),
        ("azr", wrap("```output\n9.0\n```"), deduction, None, 1.0),      # 9 == 9.0
        ("azr", wrap("```output\n10\n```"), deduction, None, -0.5),
        ("azr", "9", deduction, None, -1.0),                              # no envelope
        ("azr", wrap("```input\n1, 2\n```"), abduction, None, 1.0),
        ("azr", wrap("```input\nb=1, a=2\n```"), abduction, None, -0.5),
        # Task type from the data source, task data from extra_info.
        ("azr/induction", wrap(f"```python\ndef f(a):\n    return 2 * a  # {marker}\n```"),
         json.dumps({"hidden": hidden}), None, 1.0),
        ("azr/induction", wrap(f"```python\ndef f(a):\n    return a + 1  # {marker}\n```"),
         "{}", {"hidden": hidden}, -0.5),
        ("azr/induction", wrap(f"```python\ndef f(a):\n    import os  # {marker}\n```"),
         "{}", {"hidden": hidden}, -0.5),                                 # unsafe
    ]
    transport = CountingTransport()
    with Client(config=ClientConfig(base_url=service_url), transport=transport) as client:
        compute_score = make_batch_compute_score(client)
        scores = compute_score(data_sources=[c[0] for c in cases],
                               solution_strs=[c[1] for c in cases],
                               ground_truths=[c[2] for c in cases],
                               extra_infos=[c[3] for c in cases])
        assert scores == [c[4] for c in cases]
        assert transport.checks == 1  # the whole batch, one request

        details = score_batch(client, ["azr"] * 2, [wrap("9"), "junk"], [deduction] * 2,
                              details=True)
        assert details == [
            {"score": 1.0, "correct": 1.0, "well_formed": 1.0, "verifier_failed": 0.0},
            {"score": -1.0, "correct": 0.0, "well_formed": 0.0, "verifier_failed": 0.0}]
        # reward_kwargs from veRL's config reach the scoring options.
        assert compute_score(["azr"], [wrap("9")], [deduction], None, details=True)[0][
            "score"] == 1.0


def _failing_client() -> Client:
    def handler(request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)["items"]
        return httpx.Response(200, json={"results": [
            {"verdict": "sandbox_error"} if "FAIL" in item["program"]
            else {"verdict": "accepted", "output": item["input"]} for item in items]})

    config = ClientConfig(base_url="http://azr.test", sandbox_error_retries=0)
    return Client(config=config, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(("mode", "expected"), [("zero", 0.0), ("skip", None)])
def test_sandbox_error_is_scored_as_configured(mode: str, expected: float | None) -> None:
    ok = {"task_type": "deduction", "program": "def f(a):\n    return a", "input": "4"}
    failing = {**ok, "program": "def f(a):\n    return a  # FAIL"}
    scores = score_batch(_failing_client(), ["azr"] * 3,
                         [wrap("4"), wrap("4"), "malformed"], [ok, failing, ok],
                         on_sandbox_error=mode)  # type: ignore[arg-type]
    assert scores == [1.0, expected, -1.0]  # never raised, never scored as wrong
    [detail] = score_batch(_failing_client(), ["azr"], [wrap("4")], [failing], details=True)
    assert detail["verifier_failed"] == 1.0 and detail["score"] == 0.0


def test_mismatched_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="2 solutions"):
        score_batch(_failing_client(), ["azr"], ["a", "b"], [{}])
    with pytest.raises(ValueError, match="on_sandbox_error"):
        score_batch(_failing_client(), [], [], [], on_sandbox_error="raise")  # type: ignore[arg-type]


def test_entry_file_exports_the_batch_function() -> None:
    from azr_verify.client import verl_batch, verl_reward

    assert verl_reward.compute_score_batch is verl_batch.compute_score_batch
