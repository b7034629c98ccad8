"""TRL and veRL reward adapters.

HTTP behaviour is covered against a real server in test_client_http.py; here the transport is
an in-process httpx.MockTransport judging with identity semantics (f(x) == x), which is
enough to pin how completions are parsed, batched and scored.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from azr_verify.client import Client, ClientConfig, SandboxFailure
from azr_verify.client.rewards import AzrReward, RewardScheme, make_compute_score

IDENTITY = "def f(a):\n    return a"


class Judge:
    def __init__(self) -> None:
        self.requests: list[list[dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)["items"]
        self.requests.append(items)
        results = []
        for item in items:
            if "SANDBOX" in item["program"]:
                results.append({"verdict": "sandbox_error"})
            elif "def f" not in item["program"]:
                results.append({"verdict": "syntax_error"})
            elif item.get("output") in (None, item["input"]):
                results.append({"verdict": "accepted", "output": item["input"]})
            else:
                results.append({"verdict": "wrong_output", "output": item["input"]})
        return httpx.Response(200, json={"results": results})


@pytest.fixture()
def judged() -> tuple[Client, Judge]:
    judge = Judge()
    config = ClientConfig(base_url="http://azr.test", sandbox_error_retries=0)
    return Client(config=config, transport=httpx.MockTransport(judge)), judge


def wrap(answer: str) -> str:
    return f"reasoning</think><answer>{answer}</answer>"


def test_trl_reward_scores_a_mixed_batch_in_one_request(judged: tuple[Client, Judge]) -> None:
    client, judge = judged
    reward = AzrReward(client)
    completions = [
        wrap("```output\n5\n```"),                     # deduction, correct
        wrap("```output\n6\n```"),                     # deduction, wrong
        "no envelope",                                 # malformed
        [{"role": "assistant", "content": wrap("```input\n'x'\n```")}],  # abduction, chat
        wrap(f"```python\n{IDENTITY}\n```"),           # induction, correct
        wrap("```python\nlambda: 0\n```"),             # induction, not a program with f
    ]
    scores = reward(
        prompts=["p"] * 6, completions=completions,
        task_type=["deduction", "deduction", "deduction", "abduction", "induction",
                   "induction"],
        program=[IDENTITY] * 4 + [None, None],
        input=["5", "5", "5", None, None, None],
        output=[None, None, None, "'x'", None, None],
        hidden=[None] * 4 + [json.dumps([["1", "1"], ["2", "2"]]), [["1", "1"]]],
        unrelated_column=[0] * 6,
    )
    assert scores == [1.0, -0.5, -1.0, 1.0, 1.0, -0.5]
    assert len(judge.requests) == 1 and len(judge.requests[0]) == 6
    assert reward.__name__ == "azr_verify"


def test_trl_reward_needs_task_type(judged: tuple[Client, Judge]) -> None:
    client, _ = judged
    with pytest.raises(ValueError):
        AzrReward(client)(prompts=["p"], completions=["x"])


def test_sandbox_error_is_never_a_wrong_answer(judged: tuple[Client, Judge]) -> None:
    client, _ = judged
    kwargs: dict[str, Any] = {"task_type": ["deduction"], "program": ["SANDBOX\n" + IDENTITY],
                              "input": ["1"]}
    with pytest.raises(SandboxFailure):
        AzrReward(client)(prompts=["p"], completions=[wrap("1")], **kwargs)
    lenient = AzrReward(client, on_sandbox_error="none")
    assert lenient(prompts=["p"], completions=[wrap("1")], **kwargs) == [None]


def test_custom_scheme(judged: tuple[Client, Judge]) -> None:
    client, _ = judged
    reward = AzrReward(client, scheme=RewardScheme(correct=2.0, wrong=0.0, malformed=-3.0))
    scores = reward(prompts=["p"] * 3, completions=[wrap("1"), wrap("2"), "?"],
                    task_type=["deduction"] * 3, program=[IDENTITY] * 3, input=["1"] * 3)
    assert scores == [2.0, 0.0, -3.0]


def test_verl_compute_score(judged: tuple[Client, Judge]) -> None:
    client, _ = judged
    compute_score = make_compute_score(client)
    truth = {"task_type": "deduction", "program": IDENTITY, "input": "[1]"}
    assert compute_score("azr", wrap("[1]"), truth) == 1.0
    assert compute_score("azr", wrap("[2]"), json.dumps(truth)) == -0.5
    assert compute_score("azr", "oops", truth) == -1.0
    # The task type may come from the data source; task data from extra_info.
    assert compute_score("azr/abduction", wrap("3"), json.dumps({"output": "3"}),
                         extra_info={"program": IDENTITY}) == 1.0


def test_verl_entry_file_reexports() -> None:
    from azr_verify.client import rewards, verl_reward

    assert verl_reward.compute_score is rewards.compute_score
