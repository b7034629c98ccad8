"""TRL and veRL reward adapters against the real service (`azr-verify serve`, cache off).

Only the sandbox_error case uses an in-process httpx.MockTransport: a real server cannot be
made to fail its sandbox on demand.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from azr_verify.client import Client, ClientConfig, SandboxFailure
from azr_verify.client.rewards import AzrReward, RewardScheme, make_compute_score

from .guards import fresh
from .servers import CLIENT_KEY, ServeProcess, posts_answered

IDENTITY = "def f(a):\n    return a"


@pytest.fixture()
def client(client_service: ServeProcess) -> Iterator[Client]:
    config = ClientConfig(base_url=client_service.url, api_key=CLIENT_KEY,
                          sandbox_error_retries=0)
    with Client(config=config) as c:
        yield c


def sandbox_always_fails(request: httpx.Request) -> httpx.Response:
    """What the service answers while its sandboxes are down."""
    items = json.loads(request.content)["items"]
    return httpx.Response(200, json={"results": [{"verdict": "sandbox_error"} for _ in items]})


def wrap(answer: str) -> str:
    return f"reasoning</think><answer>{answer}</answer>"


def test_trl_reward_scores_a_mixed_batch_in_one_request(client_service: ServeProcess,
                                                         client: Client) -> None:
    identity = fresh(IDENTITY)
    reward = AzrReward(client)
    completions = [
        wrap("```output\n5\n```"),                     # deduction, correct
        wrap("```output\n6\n```"),                     # deduction, wrong
        "no envelope",                                 # malformed
        [{"role": "assistant", "content": wrap("```input\n'x'\n```")}],  # abduction, chat
        wrap(f"```python\n{identity}\n```"),           # induction, correct
        wrap("```python\nlambda: 0\n```"),             # induction, not a program with f
    ]
    requests = posts_answered(client_service.url, 200)
    scores = reward(
        prompts=["p"] * 6, completions=completions,
        task_type=["deduction", "deduction", "deduction", "abduction", "induction",
                   "induction"],
        program=[identity] * 4 + [None, None],
        input=["5", "5", "5", None, None, None],
        output=[None, None, None, "'x'", None, None],
        hidden=[None] * 4 + [json.dumps([["1", "1"], ["2", "2"]]), [["1", "1"]]],
        unrelated_column=[0] * 6,
    )
    assert scores == [1.0, -0.5, -1.0, 1.0, 1.0, -0.5]
    assert posts_answered(client_service.url, 200) - requests == 1
    assert reward.__name__ == "azr_verify"


def test_trl_reward_needs_task_type(client: Client) -> None:
    with pytest.raises(ValueError):
        AzrReward(client)(prompts=["p"], completions=["x"])


def test_sandbox_error_is_never_a_wrong_answer() -> None:
    config = ClientConfig(base_url="http://azr.test", sandbox_error_retries=0)
    client = Client(config=config, transport=httpx.MockTransport(sandbox_always_fails))
    kwargs: dict[str, Any] = {"task_type": ["deduction"], "program": [IDENTITY],
                              "input": ["1"]}
    with pytest.raises(SandboxFailure):
        AzrReward(client)(prompts=["p"], completions=[wrap("1")], **kwargs)
    lenient = AzrReward(client, on_sandbox_error="none")
    assert lenient(prompts=["p"], completions=[wrap("1")], **kwargs) == [None]


def test_custom_scheme(client: Client) -> None:
    reward = AzrReward(client, scheme=RewardScheme(correct=2.0, wrong=0.0, malformed=-3.0))
    scores = reward(prompts=["p"] * 3, completions=[wrap("1"), wrap("2"), "?"],
                    task_type=["deduction"] * 3, program=[fresh(IDENTITY)] * 3,
                    input=["1"] * 3)
    assert scores == [2.0, 0.0, -3.0]


def test_verl_compute_score(client: Client) -> None:
    identity = fresh(IDENTITY)
    compute_score = make_compute_score(client)
    truth = {"task_type": "deduction", "program": identity, "input": "[1]"}
    assert compute_score("azr", wrap("[1]"), truth) == 1.0
    assert compute_score("azr", wrap("[2]"), json.dumps(truth)) == -0.5
    assert compute_score("azr", "oops", truth) == -1.0
    # The task type may come from the data source; task data from extra_info.
    assert compute_score("azr/abduction", wrap("3"), json.dumps({"output": "3"}),
                         extra_info={"program": identity}) == 1.0


def test_verl_entry_file_reexports() -> None:
    from azr_verify.client import rewards, verl_reward

    assert verl_reward.compute_score is rewards.compute_score
