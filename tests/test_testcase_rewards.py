"""The TRL and veRL rewards for stdin/stdout problems (client/testcase_rewards.py), against the
session's real `azr-verify serve`: parsing of completions and test-case formats, scores, and
what a verifier failure scores."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from azr_verify.client import Client, TestCase
from azr_verify.client.testcase_rewards import (
    TestcaseReward,
    TestcaseScheme,
    extract_program,
    make_testcase_batch_compute_score,
    parse_test_cases,
)

from .guards import fresh
from .servers import CLIENT_KEY, ServeProcess

ADD = "a, b = map(int, input().split())\nprint(a + b)"
TESTS = {"inputs": ["1 2", "5 5", "0 0"], "outputs": ["3", "10", "0"]}


@pytest.fixture
def client(client_service: ServeProcess) -> Iterator[Client]:
    with Client(client_service.url, api_key=CLIENT_KEY) as made:
        yield made


def completion(code: str, lang: str = "python") -> str:
    return f"Reasoning...\n```{lang}\n{fresh(code)}\n```\nDone."


def test_the_last_python_block_is_the_program() -> None:
    text = "```python\nfirst\n```\n```text\nnot code\n```\n```py\nsecond\n```"
    assert extract_program(text) == "second"
    assert extract_program("```\nuntagged\n```") == "untagged"
    assert extract_program("no code at all") is None
    assert extract_program("```python\n   \n```") is None


def test_every_test_case_format() -> None:
    wanted = [TestCase(input="1 2", output="3"), TestCase(input="4", output=None)]
    assert parse_test_cases({"inputs": ["1 2", "4"], "outputs": ["3", None]}) == wanted
    assert parse_test_cases(json.dumps({"inputs": ["1 2", "4"], "outputs": ["3", None]})) == \
        wanted
    assert parse_test_cases([{"input": "1 2", "output": "3"}, {"input": "4"}]) == wanted
    assert parse_test_cases([["1 2", "3"], ["4", None]]) == wanted
    assert parse_test_cases({"inputs": [["1", "2"]], "outputs": [3]}) == \
        [TestCase(input="1\n2", output="3")]
    with pytest.raises(ValueError, match="call a function"):
        parse_test_cases({"fn_name": "solve", "inputs": [], "outputs": []})
    with pytest.raises(ValueError, match="equal length"):
        parse_test_cases({"inputs": ["1"], "outputs": []})


def test_trl_reward_scores_a_batch_in_one_request(client: Client) -> None:
    reward = TestcaseReward(client)
    scores = reward(prompts=["p"] * 4, completions=[
        completion(ADD),
        completion("a, b = map(int, input().split())\nprint(a + b if a else 1)"),
        "I cannot write code.",
        [{"role": "assistant", "content": completion("print(input() +)")}],
    ], test_cases=[TESTS] * 4)
    assert scores == [1.0, pytest.approx(2 / 3), 0.0, 0.0]
    strict = TestcaseReward(client, scheme=TestcaseScheme(scoring="all", malformed=-1.0))
    assert strict(completions=[completion(ADD), "no code"], test_cases=[TESTS] * 2) == \
        [1.0, -1.0]
    with pytest.raises(ValueError, match="test_cases"):
        reward(completions=["x"], other=[1])


def test_verl_batch_reward(client: Client) -> None:
    score = make_testcase_batch_compute_score(client)
    values = score(["apps", "apps"], [completion(ADD), completion("print(0)")],
                   [json.dumps(TESTS), TESTS], [None, None], scoring="all",
                   compare="tokens")
    assert values == [1.0, 0.0]
    with pytest.raises(ValueError, match="zero"):
        score(["apps"], [completion(ADD)], [TESTS], on_sandbox_error="raise")
