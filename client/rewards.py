"""Ecosystem adapters: a TRL reward function and a veRL `compute_score`, backed by the client.

Both score a *solver* completion for an AZR task (deduction, abduction, induction) with the
paper's scheme: 1 when the verifier accepts the answer, -0.5 when the response is well-formed
but wrong, -1 when it is malformed. Task data comes from dataset columns:

| column      | deduction | abduction | induction                               |
|-------------|-----------|-----------|-----------------------------------------|
| `task_type` | yes       | yes       | yes                                     |
| `program`   | yes (1)   | yes       | -                                       |
| `input`     | yes (1)   | optional  | -                                       |
| `output`    | optional  | yes       | -                                       |
| `hidden`    | -         | -         | list of [input, output] (or JSON text)  |

(1) not needed when the gold `output` is given: a deduction answer is then compared with it and
nothing runs. An abduction answer equal to the task's own `input` reuses its gold output.

A `sandbox_error` is the verifier's failure, not the model's, and is never scored as a wrong
answer: `on_sandbox_error="raise"` raises `SandboxFailure` (TRL's default here), `"none"`
(alias `"skip"`) scores None, which TRL ignores, `"zero"` scores 0.0 (veRL's default: a veRL
reward manager needs a number for every sample and a raise would end the run).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ._sync import Client
from .answers import extract_solver_answer
from .azr import AnswerSlot, AnswerState, CheckBatch, IOPair, TaskType
from .config import ClientConfig
from .errors import SandboxFailure


@dataclass(frozen=True)
class RewardScheme:
    """Reward values (Absolute Zero, eq. 6)."""

    correct: float = 1.0
    wrong: float = -0.5
    malformed: float = -1.0


@dataclass(frozen=True)
class SolverTask:
    """What a reward needs to know about one task."""

    task_type: TaskType
    program: str | None = None
    input: str | None = None
    output: str | None = None
    hidden: tuple[IOPair, ...] = ()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SolverTask:
        task = TaskType(str(data["task_type"]).strip().lower())
        hidden = tuple(_pairs(data.get("hidden")))
        return cls(task, _opt_str(data.get("program")), _opt_str(data.get("input")),
                   _opt_str(data.get("output")), hidden)

    def add_to(self, batch: CheckBatch, answer: str) -> AnswerSlot:
        if self.task_type is TaskType.DEDUCTION:
            if self.output is not None:  # the gold output: compared, nothing runs
                return batch.add_deduction(self.program or "", self.input or "", answer,
                                           gold_output=self.output)
            return batch.add_deduction(_need(self.program, "program"),
                                       _need(self.input, "input"), answer)
        if self.task_type is TaskType.ABDUCTION:
            return batch.add_abduction(_need(self.program, "program"), answer,
                                       _need(self.output, "output"), gold_input=self.input)
        return batch.add_induction(answer, self.hidden)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _need(value: str | None, name: str) -> str:
    if value is None:
        raise ValueError(f"task is missing its {name!r} column")
    return value


def _pairs(value: Any) -> list[IOPair]:
    if value is None:
        return []
    if isinstance(value, str):
        value = json.loads(value)
    pairs = []
    for pair in value:
        if isinstance(pair, Mapping):
            pairs.append(IOPair(str(pair["input"]), str(pair["output"])))
        else:
            inp, out = pair
            pairs.append(IOPair(str(inp), str(out)))
    return pairs


def _completion_text(completion: Any) -> str:
    """TRL passes plain strings, or chat messages ([{"role", "content"}]) when conversational."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion:
        last = completion[-1]
        if isinstance(last, Mapping):
            return str(last.get("content", ""))
    if isinstance(completion, Mapping):
        return str(completion.get("content", ""))
    return str(completion)


SandboxErrorScore = Literal["raise", "none", "skip", "zero"]


def score_completions(client: Client, texts: Sequence[str], tasks: Sequence[SolverTask], *,
                      scheme: RewardScheme | None = None,
                      on_sandbox_error: SandboxErrorScore = "raise",
                      require_think: bool = True) -> list[float | None]:
    """Score many solver completions with one verifier round trip."""
    scheme = scheme or RewardScheme()
    if len(texts) != len(tasks):
        raise ValueError(f"{len(texts)} completions but {len(tasks)} tasks")
    batch = CheckBatch(meta={"source": "reward"})
    slots: list[AnswerSlot | None] = []
    for text, task in zip(texts, tasks, strict=True):
        answer = extract_solver_answer(task.task_type, text, require_think=require_think)
        slots.append(None if answer is None else task.add_to(batch, answer))
    results = client.check(batch.items) if batch.items else []
    scores: list[float | None] = []
    for slot in slots:
        if slot is None:
            scores.append(scheme.malformed)
            continue
        outcome = slot.outcome(results)
        if outcome.state is AnswerState.INFRA_FAILURE:
            if on_sandbox_error == "raise":
                raise SandboxFailure(f"verifier failed: {outcome.detail}",
                                     results[slot.start:slot.stop])
            scores.append(0.0 if on_sandbox_error == "zero" else None)
        else:
            scores.append(scheme.correct if outcome.correct else scheme.wrong)
    return scores


class AzrReward:
    """A TRL `reward_funcs` entry: ``GRPOTrainer(..., reward_funcs=[AzrReward(client)])``.

    Called as ``reward(prompts=..., completions=..., task_type=[...], program=[...], ...)``
    with one value per completion in each dataset column.
    """

    def __init__(self, client: Client, *, scheme: RewardScheme | None = None,
                 on_sandbox_error: SandboxErrorScore = "raise",
                 require_think: bool = True, name: str = "azr_verify") -> None:
        self.client = client
        self.scheme = scheme or RewardScheme()
        self.on_sandbox_error = on_sandbox_error
        self.require_think = require_think
        # TRL logs each reward under its function's __name__.
        self.__name__ = name

    def __call__(self, prompts: Sequence[Any] | None = None,
                 completions: Sequence[Any] | None = None, **kwargs: Any
                 ) -> list[float | None]:
        completions = list(completions or [])
        columns = {k: v for k, v in kwargs.items()
                   if k in ("task_type", "program", "input", "output", "hidden")}
        if "task_type" not in columns:
            raise ValueError("AzrReward needs a `task_type` dataset column")
        tasks = [SolverTask.from_mapping({k: v[n] for k, v in columns.items()})
                 for n in range(len(completions))]
        texts = [_completion_text(c) for c in completions]
        return score_completions(self.client, texts, tasks, scheme=self.scheme,
                                 on_sandbox_error=self.on_sandbox_error,
                                 require_think=self.require_think)


# -- veRL ------------------------------------------------------------------------------

ScoreFn = Callable[..., float]


def task_from_verl(data_source: str, ground_truth: Any, extra_info: Mapping[str, Any] | None
                    ) -> SolverTask:
    data: dict[str, Any] = {}
    if isinstance(extra_info, Mapping):
        data.update(extra_info)
    truth = json.loads(ground_truth) if isinstance(ground_truth, str) else ground_truth
    if isinstance(truth, Mapping):
        data.update(truth)
    if "task_type" not in data:
        # data_source like "azr/deduction" or "azr_abduction" names the task type.
        data["task_type"] = data_source.replace("/", "_").rsplit("_", 1)[-1]
    return SolverTask.from_mapping(data)


def make_compute_score(client: Client, *, scheme: RewardScheme | None = None,
                       require_think: bool = True,
                       on_sandbox_error: Literal["raise", "zero"] = "zero") -> ScoreFn:
    """A veRL `compute_score` bound to an explicit client (one request per sample; prefer
    the batch function of `verl_batch`)."""
    chosen = scheme or RewardScheme()

    def compute_score(data_source: str, solution_str: str, ground_truth: Any,
                      extra_info: Mapping[str, Any] | None = None, **_: Any) -> float:
        task = task_from_verl(data_source, ground_truth, extra_info)
        [score] = score_completions(client, [solution_str], [task], scheme=chosen,
                                    require_think=require_think,
                                    on_sandbox_error=on_sandbox_error)
        assert score is not None  # "raise" and "zero" never yield None
        return score

    return compute_score


@functools.cache
def _default_compute_score() -> ScoreFn:
    # Built on first use, from AZR_VERIFY_URL / AZR_VERIFY_API_KEY: veRL imports the module
    # by path and calls the function, so there is nowhere to pass a client in.
    return make_compute_score(Client(config=ClientConfig.from_env()))


def compute_score(data_source: str, solution_str: str, ground_truth: Any,
                  extra_info: Mapping[str, Any] | None = None, **kwargs: Any) -> float:
    """veRL custom reward: ``custom_reward_function.path=<this file>`` with
    ``custom_reward_function.name=compute_score``. `ground_truth` is a mapping (or its JSON)
    with the task columns above; the service URL comes from `AZR_VERIFY_URL`."""
    return _default_compute_score()(data_source, solution_str, ground_truth, extra_info,
                                    **kwargs)
