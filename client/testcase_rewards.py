"""Rewards for code RL on stdin/stdout test cases (APPS, TACO, CodeContests, LiveCodeBench...):
a TRL reward function and veRL `compute_score` functions, all backed by `/v1/testcases`.

A completion is scored by the program in its last fenced code block (tagged python, py or
python3, else the last untagged one); a completion without one is malformed. Test cases come
from a dataset column (TRL) or `ground_truth` (veRL) in any of these shapes, or their JSON:

- `{"inputs": [...], "outputs": [...]}` (veRL's and PRIME's format; `fn_name` problems, which
  call a function instead of reading stdin, are refused with a ValueError);
- a list of `{"input": ..., "output": ...}` mappings, or of `[input, output]` pairs.

Scores (`TestcaseScheme`): `pass_rate` (default) is the share of cases accepted; `all` is 1
when every case is and 0 otherwise; a malformed completion scores `malformed` (0.0). The
whole batch is one request. A `sandbox_error` is the verifier's failure, never the model's:
`on_sandbox_error="raise"` raises `SandboxFailure`, `"none"`/`"skip"` scores None, `"zero"`
scores 0.0 (veRL's managers need a number). Under `pass_rate`, a case that could not be run
makes the rate unknown, so such a sample counts as a verifier failure too.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ._sync import Client
from .answers import fenced_blocks
from .config import ClientConfig
from .errors import SandboxFailure
from .models import CompareMode, TestCase, TestcaseItem, TestcaseResult, Verdict
from .rewards import SandboxErrorScore, _completion_text

Scoring = Literal["pass_rate", "all"]
PYTHON_TAGS = ("python", "py", "python3")


@dataclass(frozen=True)
class TestcaseScheme:
    """How a judged program becomes a reward."""

    __test__ = False
    scoring: Scoring = "pass_rate"
    malformed: float = 0.0


def extract_program(completion: str) -> str | None:
    """The program of a completion: its last python block, else its last untagged block."""
    blocks = fenced_blocks(completion)
    for wanted in (PYTHON_TAGS, ("",)):
        bodies = [block.body for block in blocks if block.lang in wanted]
        if bodies and bodies[-1].strip():
            return bodies[-1]
    return None


def parse_test_cases(value: Any) -> list[TestCase]:
    """Test cases from a dataset's column or veRL's ground truth (see the module doc)."""
    if isinstance(value, str | bytes):
        value = json.loads(value)
    if isinstance(value, Mapping):
        if value.get("fn_name"):
            raise ValueError(f"test cases call a function ({value['fn_name']!r}): they are "
                             "not stdin/stdout cases; check them as triples (/v1/check)")
        inputs, outputs = value.get("inputs"), value.get("outputs")
        if not isinstance(inputs, list) or not isinstance(outputs, list) \
                or len(inputs) != len(outputs):
            raise ValueError("test cases need lists 'inputs' and 'outputs' of equal length")
        return [TestCase(input=_text(i), output=None if o is None else _text(o))
                for i, o in zip(inputs, outputs, strict=True)]
    cases = []
    for case in value:
        if isinstance(case, Mapping):
            expected = case.get("output")
            cases.append(TestCase(input=_text(case.get("input", "")),
                                  output=None if expected is None else _text(expected)))
        else:
            stdin, expected = case
            cases.append(TestCase(input=_text(stdin),
                                  output=None if expected is None else _text(expected)))
    return cases


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # datasets that store stdin as lines
        return "\n".join(str(line) for line in value)
    return str(value)


def score_programs(client: Client, texts: Sequence[str], tests: Sequence[Any], *,
                   scheme: TestcaseScheme | None = None,
                   compare: CompareMode | str = CompareMode.LINES,
                   timeout_s: float | None = None, memory_mb: int | None = None,
                   on_sandbox_error: SandboxErrorScore = "raise") -> list[float | None]:
    """Score completions (their last code block) on their test cases, in one round trip."""
    scheme = scheme or TestcaseScheme()
    if len(texts) != len(tests):
        raise ValueError(f"{len(texts)} completions but {len(tests)} sets of test cases")
    items: list[TestcaseItem] = []
    slots: list[int | None] = []
    for text, cases in zip(texts, tests, strict=True):
        program = extract_program(text)
        if program is None:
            slots.append(None)
            continue
        slots.append(len(items))
        items.append(TestcaseItem(program=program, cases=parse_test_cases(cases),
                                  compare=CompareMode(compare), timeout_s=timeout_s,
                                  memory_mb=memory_mb, meta={"source": "testcase_reward"}))
    results = client.check_testcases(items) if items else []
    scores: list[float | None] = []
    for slot in slots:
        if slot is None:
            scores.append(scheme.malformed)
            continue
        result = results[slot]
        if _unjudged(result, scheme.scoring):
            if on_sandbox_error == "raise":
                raise SandboxFailure(f"verifier failed: {result.error}")
            scores.append(0.0 if on_sandbox_error == "zero" else None)
        elif scheme.scoring == "all":
            scores.append(1.0 if result.verdict is Verdict.ACCEPTED else 0.0)
        else:
            scores.append(result.pass_rate)
    return scores


def _unjudged(result: TestcaseResult, scoring: Scoring) -> bool:
    if result.verdict is Verdict.SANDBOX_ERROR:
        return True
    return scoring == "pass_rate" and any(case.verdict is Verdict.SANDBOX_ERROR
                                          for case in result.cases)


class TestcaseReward:
    """A TRL `reward_funcs` entry for stdin/stdout problems:
    ``GRPOTrainer(..., reward_funcs=[TestcaseReward(client)])`` with the test cases in the
    dataset column `column` (default `test_cases`)."""

    __test__ = False

    def __init__(self, client: Client, *, column: str = "test_cases",
                 scheme: TestcaseScheme | None = None,
                 compare: CompareMode | str = CompareMode.LINES,
                 timeout_s: float | None = None, memory_mb: int | None = None,
                 on_sandbox_error: SandboxErrorScore = "raise",
                 name: str = "azr_verify_testcases") -> None:
        self.client = client
        self.column = column
        self.scheme = scheme or TestcaseScheme()
        self.compare = CompareMode(compare)
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.on_sandbox_error = on_sandbox_error
        self.__name__ = name  # TRL logs each reward under its function's __name__

    def __call__(self, prompts: Sequence[Any] | None = None,
                 completions: Sequence[Any] | None = None, **kwargs: Any
                 ) -> list[float | None]:
        if self.column not in kwargs:
            raise ValueError(f"TestcaseReward needs a {self.column!r} dataset column")
        texts = [_completion_text(c) for c in (completions or [])]
        return score_programs(self.client, texts, list(kwargs[self.column]),
                              scheme=self.scheme, compare=self.compare,
                              timeout_s=self.timeout_s, memory_mb=self.memory_mb,
                              on_sandbox_error=self.on_sandbox_error)


# -- veRL --------------------------------------------------------------------------------

BatchScoreFn = Callable[..., list[Any]]


def make_testcase_batch_compute_score(client: Client, **options: Any) -> BatchScoreFn:
    """veRL's batch `compute_score` bound to an explicit client; `options` are those of
    `score_programs` (scheme, compare, timeout_s, memory_mb, on_sandbox_error)."""

    def compute_score(data_sources: Sequence[str], solution_strs: Sequence[str],
                      ground_truths: Sequence[Any],
                      extra_infos: Sequence[Mapping[str, Any] | None] | None = None,
                      **reward_kwargs: Any) -> list[Any]:
        merged = {"on_sandbox_error": "zero", **options, **reward_kwargs}
        scoring = merged.pop("scoring", None)
        if scoring is not None:
            merged["scheme"] = TestcaseScheme(scoring=scoring)
        if merged["on_sandbox_error"] not in ("zero", "skip"):
            raise ValueError("on_sandbox_error must be 'zero' or 'skip' under veRL")
        return score_programs(client, list(solution_strs), list(ground_truths), **merged)

    return compute_score


@functools.cache
def _env_client() -> Client:
    # veRL imports the entry file by path; the client comes from AZR_VERIFY_URL/_API_KEY.
    return Client(config=ClientConfig.from_env())


def compute_score_testcases_batch(data_sources: Sequence[str], solution_strs: Sequence[str],
                                  ground_truths: Sequence[Any],
                                  extra_infos: Sequence[Mapping[str, Any] | None] | None = None,
                                  **reward_kwargs: Any) -> list[Any]:
    """veRL batch reward (`reward_model.reward_manager=batch`,
    `custom_reward_function.name=compute_score_testcases_batch`): `ground_truth` holds each
    sample's test cases; options from `custom_reward_function.reward_kwargs` (scoring,
    compare, timeout_s, memory_mb, on_sandbox_error)."""
    return make_testcase_batch_compute_score(_env_client())(
        data_sources, solution_strs, ground_truths, extra_infos, **reward_kwargs)


def compute_score_testcases(data_source: str, solution_str: str, ground_truth: Any,
                            extra_info: Mapping[str, Any] | None = None,
                            **reward_kwargs: Any) -> float:
    """veRL per-sample reward (the default manager; one request per sample)."""
    [score] = compute_score_testcases_batch([data_source], [solution_str], [ground_truth],
                                            [extra_info], **reward_kwargs)
    return 0.0 if score is None else float(score)
