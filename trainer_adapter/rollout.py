"""The rollout interface every engine implements, and the scripted wrapper used in tests.

Engines return token ids along with text because the policy update scores exactly the tokens
that were sampled (re-tokenising decoded text can differ from what the model produced).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from azr_verify.client import TaskType

from .tasks import Role


class Stage(StrEnum):
    """Where in the AZR step a generation happens."""

    PROPOSE = "propose"
    LEARNABILITY = "learnability"  # n solver rollouts on a fresh proposal
    SOLVE = "solve"

    @property
    def role(self) -> Role:
        return Role.PROPOSE if self is Stage.PROPOSE else Role.SOLVE


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    stage: Stage
    task_type: TaskType
    max_new_tokens: int


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    scripted: bool = False


class TextCodec(Protocol):
    """What engines need of a tokenizer (a transformers tokenizer satisfies it)."""

    eos_token_id: Any

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = ...) -> str: ...


class RolloutEngine(Protocol):
    """Generates completions; receives the trained weights after every update."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]: ...

    def sync_weights(self, model: Any) -> None: ...

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

    def close(self) -> None:
        self.inner.close()
