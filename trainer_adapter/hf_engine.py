"""Rollouts with transformers `generate`, on the policy module itself (CPU or GPU)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch

from .model import Policy
from .precision import autocast
from .rollout import Generation, GenerationRequest, expand, fit_prompt, truncate_at_stop


class TransformersEngine:
    """Samples from the live policy; nothing to sync since it *is* the trained module.

    Generation stops at EOS or after a stop string (`</answer>` by default), which is kept:
    the policy learns to close its answer, and nothing after it is sampled or trained on.
    """

    def __init__(self, policy: Policy, *, temperature: float = 1.0, top_p: float = 1.0,
                 batch_size: int = 16, stop: Sequence[str] = ("</answer>",)) -> None:
        self.policy = policy
        self.temperature = temperature
        self.top_p = top_p
        self.batch_size = batch_size
        self.stop = tuple(stop)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        requests = expand(requests)
        out: list[Generation | None] = [None] * len(requests)
        # One generate() call per token budget and batch: budgets differ per role.
        by_budget: dict[int, list[int]] = defaultdict(list)
        for index, request in enumerate(requests):
            by_budget[request.max_new_tokens].append(index)
        for budget, indices in by_budget.items():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                for index, gen in zip(chunk, self._batch([requests[i] for i in chunk], budget),
                                      strict=True):
                    out[index] = gen
        return [gen for gen in out if gen is not None]

    @torch.no_grad()
    def _batch(self, requests: Sequence[GenerationRequest], budget: int) -> list[Generation]:
        tok = self.policy.tokenizer
        pad = int(tok.pad_token_id)
        eos = int(tok.eos_token_id)
        prompts = [fit_prompt(tok.encode(r.prompt, add_special_tokens=False),
                              self.policy.max_positions - budget) for r in requests]
        width = max(len(p) for p in prompts)
        # Left padding so every prompt ends where generation starts.
        input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
            attention[row, width - len(ids):] = 1
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p}
            if self.temperature > 0 else {"do_sample": False})
        if self.stop:
            sampling.update(stop_strings=list(self.stop), tokenizer=tok)
        with autocast(self.policy.device, self.policy.param_dtype, self.policy.compute_dtype):
            sequences = self.policy.model.generate(
                input_ids=input_ids.to(self.policy.device),
                attention_mask=attention.to(self.policy.device),
                max_new_tokens=budget, pad_token_id=pad, eos_token_id=eos, top_k=0,
                **sampling)

        def decode(ids: Sequence[int]) -> str:
            return str(tok.decode(list(ids), skip_special_tokens=True))

        generations = []
        for row, ids in enumerate(prompts):
            completion = sequences[row, width:].tolist()
            if eos in completion:
                # Keep the EOS: the policy must learn where to stop.
                completion = completion[:completion.index(eos) + 1]
            elif pad in completion:
                # A row that stopped on a stop string is padded up to the longest row.
                completion = completion[:completion.index(pad)]
            if self.stop:
                completion = truncate_at_stop(completion, decode, self.stop)
            generations.append(Generation(decode(completion), tuple(ids), tuple(completion)))
        return generations

    def sync_weights(self, model: Any) -> None:
        """Nothing to do: generation runs on the trained module."""

    def sleep(self) -> None:
        """Nothing to release: the engine holds no memory of its own."""

    def wake(self) -> None:
        """Nothing to restore."""

    def close(self) -> None:
        """Nothing to release."""
