"""The rollout interface every engine implements, and the scripted wrapper used in tests.

Engines return token ids along with text because the policy update scores exactly the tokens
that were sampled (re-tokenising decoded text can differ from what the model produced).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol

from azr_verify.client import TaskType

from .tasks import Role


class Stage(StrEnum):
    """Where in the AZR step a generation happens."""

    SEED = "seed"  # proposals of the seeding stage (validated, never trained)
    PROPOSE = "propose"
    LEARNABILITY = "learnability"  # n solver rollouts on a fresh proposal
    SOLVE = "solve"

    @property
    def role(self) -> Role:
        return Role.PROPOSE if self in (Stage.SEED, Stage.PROPOSE) else Role.SOLVE


@dataclass(frozen=True)
class GenerationRequest:
    """`n` samples of one prompt (the learnability rollouts ask for n at once, which vLLM
    serves from one prefill)."""

    prompt: str
    stage: Stage
    task_type: TaskType
    max_new_tokens: int
    n: int = 1


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    scripted: bool = False
    # Sampling log-probs of completion_ids when the engine reports them (vLLM).
    logprobs: tuple[float, ...] | None = None


def expand(requests: Sequence[GenerationRequest]) -> list[GenerationRequest]:
    """One request per sample (engines without native `n`)."""
    return [replace(r, n=1) for r in requests for _ in range(r.n)]


def truncate_at_stop(ids: Sequence[int], decode: Callable[[Sequence[int]], str],
                     stops: Sequence[str]) -> list[int]:
    """The shortest prefix of `ids` whose text contains a stop string (kept), else all."""
    text = decode(ids)
    if not any(stop in text for stop in stops):
        return list(ids)
    low, high = 1, len(ids)  # "contains a stop" is monotone in the prefix length
    while low < high:
        mid = (low + high) // 2
        if any(stop in decode(ids[:mid]) for stop in stops):
            high = mid
        else:
            low = mid + 1
    return list(ids[:low])


class TextCodec(Protocol):
    """What engines need of a tokenizer (a transformers tokenizer satisfies it)."""

    eos_token_id: Any

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = ...) -> str: ...


class RolloutEngine(Protocol):
    """Generates completions; receives the trained weights after every update.

    `generate` returns `sum(r.n for r in requests)` generations: the n samples of each
    request, consecutively, in request order. Around the policy update the loop calls
    `sleep()` (hand GPU memory to the trainer), then `sync_weights(model)` (load the new
    weights) and `wake()` (restore the rest, e.g. the KV cache).
    """

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]: ...

    def sync_weights(self, model: Any) -> None: ...

    def sleep(self) -> None: ...

    def wake(self) -> None: ...

    def close(self) -> None: ...


def fit_prompt(ids: Sequence[int], budget: int) -> list[int]:
    """Keep the prompt's tail when it would not fit the context: the question is at the
    end, the references it can lose are at the front."""
    return list(ids[-budget:]) if len(ids) > budget else list(ids)


Script = Callable[[GenerationRequest], str | None]


class ScriptedEngine:
    """Wraps an engine and answers some requests with scripted completions.

    The script sees each request and returns a completion text, or None to let the wrapped
    engine generate. Scripted texts are tokenised (plus EOS) so the update trains on them
    like on sampled ones. Used by the end-to-end test to guarantee a valid proposal from a
    random model without faking the service.
    """

    def __init__(self, inner: RolloutEngine, tokenizer: TextCodec, script: Script,
                 max_prompt_tokens: int | None = None) -> None:
        self.inner = inner
        self.tokenizer = tokenizer
        self.script = script
        self.max_prompt_tokens = max_prompt_tokens
        self.scripted_count = 0

    @classmethod
    def from_queues(cls, inner: RolloutEngine, tokenizer: TextCodec,
                    queues: Mapping[tuple[Stage, TaskType], Iterable[str]],
                    max_prompt_tokens: int | None = None) -> ScriptedEngine:
        """Scripted completions consumed in order per (stage, task type)."""
        pending = {key: deque(texts) for key, texts in queues.items()}

        def script(request: GenerationRequest) -> str | None:
            queue = pending.get((request.stage, request.task_type))
            return queue.popleft() if queue else None

        return cls(inner, tokenizer, script, max_prompt_tokens)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        requests = expand(requests)
        scripted = [self.script(request) for request in requests]
        unscripted = [r for r, text in zip(requests, scripted, strict=True) if text is None]
        generated = iter(self.inner.generate(unscripted) if unscripted else [])
        out = []
        for request, text in zip(requests, scripted, strict=True):
            if text is None:
                out.append(next(generated))
                continue
            prompt_ids = self.tokenizer.encode(request.prompt, add_special_tokens=False)
            if self.max_prompt_tokens is not None:
                prompt_ids = fit_prompt(prompt_ids, self.max_prompt_tokens)
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            ids.append(int(self.tokenizer.eos_token_id))
            out.append(Generation(text, tuple(prompt_ids), tuple(ids), scripted=True))
            self.scripted_count += 1
        return out

    def sync_weights(self, model: Any) -> None:
        self.inner.sync_weights(model)

    def sleep(self) -> None:
        self.inner.sleep()

    def wake(self) -> None:
        self.inner.wake()

    def close(self) -> None:
        self.inner.close()
