"""The policy-gradient update: PPO-style clipped surrogate with per-sample advantages.

One AZR step's samples are split into mini-batches (one optimizer step each, `epochs`
passes), each mini-batch into token-sized micro-batches (gradient accumulation). The
reference log-probabilities are those of the policy before the first optimizer step of the
AZR step, so later mini-batches and epochs are clipped at 1 +- eps. Only completion tokens
are scored, through the chunked selective log-softmax of `logprobs`.

Loss normalisation (`optim.loss_normalization`):
- `token`: the sum of per-token losses over the mini-batch divided by its number of completion
  tokens (the reference's "token-mean"): long answers weigh more;
- `sequence`: each sequence's mean token loss, averaged over the mini-batch's sequences.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .batching import split_mini_batches, token_micro_batches
from .config import OptimSection
from .logprobs import PackedBatch, completion_logprobs, pack
from .precision import TrainOptimizer, autocast


@dataclass(frozen=True)
class TrainSample:
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    advantage: float


@dataclass(frozen=True)
class UpdateStats:
    loss: float
    grad_norm: float  # mean pre-clip norm over optimizer steps
    clip_fraction: float
    tokens: int  # completion tokens of every judged sample (the normalisers' total)
    samples: int  # samples with a non-zero advantage (the only ones with a gradient)
    optimizer_steps: int = 0
    micro_batches: int = 0
    peak_memory_gb: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "grad_norm": self.grad_norm,
                "clip_fraction": self.clip_fraction, "tokens": self.tokens,
                "optimizer_steps": self.optimizer_steps, "micro_batches": self.micro_batches,
                "peak_memory_gb": self.peak_memory_gb}


@dataclass(frozen=True)
class _Fitted:
    ids: tuple[int, ...]
    completion: int  # completion tokens at the end of `ids`
    advantage: float


def _fit(sample: TrainSample, max_len: int) -> _Fitted:
    """Token ids and completion length, dropping prompt tokens from the left to fit."""
    completion = list(sample.completion_ids)[:max_len - 1]
    room = max_len - len(completion)
    prompt = list(sample.prompt_ids)[-room:] if room > 0 else []
    return _Fitted(tuple(prompt + completion), len(completion), sample.advantage)


@dataclass(frozen=True)
class UpdateContext:
    """What the update needs besides the samples: the model and how to run it."""

    model: Any
    optimizer: TrainOptimizer
    pad_id: int
    max_len: int
    device: torch.device
    param_dtype: torch.dtype = torch.float32
    compute_dtype: torch.dtype = torch.float32
    temperature: float = 1.0


def _micro_batches(fitted: Sequence[_Fitted], indices: Sequence[int], cfg: OptimSection
                   ) -> list[list[int]]:
    groups = token_micro_batches([len(fitted[k].ids) for k in indices],
                                 cfg.micro_batch_tokens, cfg.micro_batch)
    return [[indices[j] for j in group] for group in groups]


def _logprobs(ctx: UpdateContext, fitted: Sequence[_Fitted], group: Sequence[int],
              cfg: OptimSection) -> tuple[PackedBatch, torch.Tensor]:
    packed = pack([(fitted[k].ids, fitted[k].completion) for k in group], ctx.pad_id)
    with autocast(ctx.device, ctx.param_dtype, ctx.compute_dtype):
        logprobs = completion_logprobs(ctx.model, packed, temperature=ctx.temperature,
                                       chunk_tokens=cfg.logprob_chunk_tokens)
    return packed, logprobs


def policy_update(ctx: UpdateContext, samples: Sequence[TrainSample], cfg: OptimSection,
                  rng: random.Random) -> UpdateStats:
    fitted = [_fit(s, ctx.max_len) for s in samples]
    usable = [k for k, f in enumerate(fitted) if f.completion >= 1 and len(f.ids) > f.completion]
    total_tokens = sum(fitted[k].completion for k in usable)
    # A zero advantage gives an exactly zero gradient under the clipped objective, so such
    # samples are not run; they still count in their mini-batch's normaliser.
    active = [k for k in usable if fitted[k].advantage != 0.0]
    if not active or total_tokens == 0:
        return UpdateStats(0.0, 0.0, 0.0, total_tokens, 0)
    mini_batches = split_mini_batches(usable, cfg.mini_batch_size, rng)
    cuda = ctx.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(ctx.device)
    model = ctx.model
    model.train()  # gradient checkpointing only runs in train mode; dropout is off
    try:
        # Reference log-probs: the first mini-batch is scored before any optimizer step, so
        # its own forward pass gives them; the others are scored up front.
        old = _reference_logprobs(ctx, fitted, mini_batches[1:], cfg)
        loss_sum = grad_norm_sum = 0.0
        clipped = counted = steps = micro_count = 0
        for _ in range(cfg.epochs):
            for mini in mini_batches:
                runnable = [k for k in mini if fitted[k].advantage != 0.0]
                if not runnable:
                    continue
                tokens = sum(fitted[k].completion for k in mini)
                ctx.optimizer.zero_grad(set_to_none=True)
                step_loss = 0.0
                for group in _micro_batches(fitted, runnable, cfg):
                    micro_count += 1
                    packed, logprobs = _logprobs(ctx, fitted, group, cfg)
                    if group[0] not in old:
                        _store(old, group, packed, logprobs)
                    reference = torch.cat([old[k] for k in group]).to(logprobs.device)
                    loss, n_clipped = _surrogate(logprobs, reference, packed,
                                                 [fitted[k] for k in group], cfg, tokens,
                                                 len(mini))
                    loss.backward()
                    step_loss += float(loss.detach())
                    clipped += n_clipped
                    counted += int(packed.targets.numel())
                grad_norm_sum += ctx.optimizer.clip_grad_norm(cfg.max_grad_norm)
                ctx.optimizer.step()
                ctx.optimizer.zero_grad(set_to_none=True)
                loss_sum += step_loss
                steps += 1
    finally:
        model.eval()
    peak = (torch.cuda.max_memory_allocated(ctx.device) / 2**30) if cuda else None
    return UpdateStats(loss_sum / max(1, steps), grad_norm_sum / max(1, steps),
                       clipped / max(1, counted), total_tokens, len(active), steps,
                       micro_count, None if peak is None else round(peak, 3))


def _store(old: dict[int, torch.Tensor], group: Sequence[int], packed: PackedBatch,
           logprobs: torch.Tensor) -> None:
    flat = logprobs.detach().float()
    offset = 0
    for k, n in zip(group, packed.lengths, strict=True):
        old[k] = flat[offset:offset + n]
        offset += n


def _reference_logprobs(ctx: UpdateContext, fitted: Sequence[_Fitted],
                        mini_batches: Sequence[Sequence[int]], cfg: OptimSection
                        ) -> dict[int, torch.Tensor]:
    """Per-sample log-probs of the completion under the policy before this update."""
    old: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for mini in mini_batches:
            runnable = [k for k in mini if fitted[k].advantage != 0.0]
            for group in _micro_batches(fitted, runnable, cfg) if runnable else []:
                packed, logprobs = _logprobs(ctx, fitted, group, cfg)
                _store(old, group, packed, logprobs)
    return old


def _surrogate(logprobs: torch.Tensor, reference: torch.Tensor, packed: PackedBatch,
               members: Sequence[_Fitted], cfg: OptimSection, mini_tokens: int,
               mini_sequences: int) -> tuple[torch.Tensor, int]:
    device = logprobs.device
    rows = packed.rows.to(device)
    advantages = torch.tensor([m.advantage for m in members], device=device,
                              dtype=torch.float32)[rows]
    ratio = torch.exp(logprobs - reference)
    unclipped = ratio * advantages
    bounded = torch.clamp(ratio, 1 - cfg.clip_eps, 1 + cfg.clip_eps) * advantages
    per_token = -torch.minimum(unclipped, bounded)
    if cfg.loss_normalization == "token":
        loss = per_token.sum() / mini_tokens
    else:
        lengths = torch.tensor(packed.lengths, device=device, dtype=torch.float32)[rows]
        loss = (per_token / lengths).sum() / mini_sequences
    n_clipped = int(((ratio - 1).abs() > cfg.clip_eps).sum())
    return loss, n_clipped


def sequence_logprob(ctx: UpdateContext, sample: TrainSample, chunk_tokens: int = 1024
                     ) -> float:
    """Sum of the completion's token log-probs under the current policy (for tests/tools)."""
    fitted = _fit(sample, ctx.max_len)
    packed = pack([(fitted.ids, fitted.completion)], ctx.pad_id)
    with torch.no_grad(), autocast(ctx.device, ctx.param_dtype, ctx.compute_dtype):
        logprobs = completion_logprobs(ctx.model, packed, temperature=ctx.temperature,
                                       chunk_tokens=chunk_tokens)
    return float(logprobs.sum())
