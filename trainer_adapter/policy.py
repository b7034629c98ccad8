"""The policy-gradient update: PPO-style clipped surrogate with per-sample advantages.

The loss is averaged over every completion token in the batch ("token-mean"), with the
reference log-probabilities taken from the policy right before the update (so the first
epoch has ratio 1 and later epochs are clipped at 1 +- eps).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .config import OptimSection


@dataclass(frozen=True)
class TrainSample:
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    advantage: float


@dataclass(frozen=True)
class UpdateStats:
    loss: float
    grad_norm: float
    clip_fraction: float
    tokens: int
    samples: int  # samples with a non-zero advantage (the only ones with a gradient)


def _fit(sample: TrainSample, max_len: int) -> tuple[list[int], int]:
    """Token ids and completion length, dropping prompt tokens from the left to fit."""
    completion = list(sample.completion_ids)[:max_len - 1]
    room = max_len - len(completion)
    prompt = list(sample.prompt_ids)[-room:] if room > 0 else []
    return prompt + completion, len(completion)


def completion_logprobs(model: Any, samples: Sequence[TrainSample], pad_id: int,
                        device: torch.device, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of each completion token, [batch, longest completion], and a mask."""
    fitted = [_fit(s, max_len) for s in samples]
    width = max(len(ids) for ids, _ in fitted)
    longest = max(n for _, n in fitted)
    input_ids = torch.full((len(samples), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(samples), width), dtype=torch.long)
    for row, (ids, _) in enumerate(fitted):
        input_ids[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention[row, :len(ids)] = 1
    input_ids, attention = input_ids.to(device), attention.to(device)
    logits = model(input_ids=input_ids, attention_mask=attention).logits.float()
    logprobs = torch.zeros((len(samples), longest), device=device)
    mask = torch.zeros((len(samples), longest), device=device)
    for row, (ids, n) in enumerate(fitted):
        start = len(ids) - n
        # Position t predicts token t+1: completion tokens are read from start-1 .. end-2.
        row_logits = logits[row, start - 1:len(ids) - 1]
        targets = input_ids[row, start:len(ids)]
        logprobs[row, :n] = torch.log_softmax(row_logits, dim=-1).gather(
            -1, targets.unsqueeze(-1)).squeeze(-1)
        mask[row, :n] = 1.0
    return logprobs, mask


def policy_update(model: Any, optimizer: torch.optim.Optimizer,
                  samples: Sequence[TrainSample], cfg: OptimSection, *, pad_id: int,
                  device: torch.device, max_len: int) -> UpdateStats:
    total_tokens = sum(min(len(s.completion_ids), max_len - 1) for s in samples)
    # A zero advantage gives an exactly zero gradient under the clipped objective, so such
    # samples are skipped; they still count in the token-mean denominator.
    active = [s for s in samples if s.advantage != 0.0 and s.completion_ids and s.prompt_ids]
    if not active or total_tokens == 0:
        return UpdateStats(0.0, 0.0, 0.0, total_tokens, 0)
    batches = [active[k:k + cfg.micro_batch] for k in range(0, len(active), cfg.micro_batch)]
    with torch.no_grad():
        old = [completion_logprobs(model, b, pad_id, device, max_len)[0] for b in batches]
    # Stats are averaged over epochs (later epochs are clipped, so they differ).
    loss_sum = clipped = grad_norm = 0.0
    for _ in range(cfg.epochs):
        optimizer.zero_grad(set_to_none=True)
        for batch, old_logprobs in zip(batches, old, strict=True):
            logprobs, mask = completion_logprobs(model, batch, pad_id, device, max_len)
            adv = torch.tensor([s.advantage for s in batch], device=device).unsqueeze(-1)
            ratio = torch.exp(logprobs - old_logprobs)
            unclipped = ratio * adv
            bounded = torch.clamp(ratio, 1 - cfg.clip_eps, 1 + cfg.clip_eps) * adv
            per_token = -torch.minimum(unclipped, bounded) * mask
            loss = per_token.sum() / total_tokens
            loss.backward()
            loss_sum += float(loss.detach())
            clipped += float((((ratio - 1).abs() > cfg.clip_eps).float() * mask).sum())
        grad_norm += float(torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                          cfg.max_grad_norm))
        optimizer.step()
    active_tokens = sum(min(len(s.completion_ids), max_len - 1) for s in active)
    return UpdateStats(loss_sum / cfg.epochs, grad_norm / cfg.epochs,
                       clipped / max(1, active_tokens * cfg.epochs), total_tokens, len(active))
