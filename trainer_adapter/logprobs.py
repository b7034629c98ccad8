"""Log-probabilities of completion tokens without materialising full-vocabulary logits.

A causal LM's logits are `[batch, sequence, vocab]`; at 32k tokens x 152k vocab in fp32 that
is 19 GB for one micro-batch, and autograd keeps it for the backward pass. The policy
gradient needs one number per *completion* token: log p(token). So:

1. run the decoder (`model.base_model`) to get hidden states, with `use_cache=False`;
2. keep only the positions that predict a completion token;
3. apply the output head chunk by chunk, take `logit[target] - logsumexp(logits)` in fp32,
   and let autograd recompute each chunk in the backward pass (activation checkpointing), so
   at most one chunk of logits is alive at any time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

DEFAULT_CHUNK_TOKENS = 1024


def _chunk_logprobs(hidden: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor,
                    bias: torch.Tensor | None, scale: float, softcap: float | None
                    ) -> torch.Tensor:
    logits = torch.nn.functional.linear(hidden, weight, bias).float()
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    if scale != 1.0:
        logits = logits * scale
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def selective_log_softmax(hidden: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor,
                          bias: torch.Tensor | None = None, *, scale: float = 1.0,
                          softcap: float | None = None,
                          chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> torch.Tensor:
    """log_softmax(hidden @ weight.T + bias)[target] for each row of `hidden` ([N, H]).

    Equal to the naive full log-softmax, but peak memory is one `[chunk, vocab]` fp32 block
    in the forward and in the backward pass (each chunk is recomputed there).
    """
    if hidden.shape[0] == 0:
        return hidden.new_zeros((0,), dtype=torch.float32)
    parts = []
    recompute = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    for start in range(0, hidden.shape[0], chunk_tokens):
        h = hidden[start:start + chunk_tokens]
        t = targets[start:start + chunk_tokens]
        if recompute:
            part = checkpoint(_chunk_logprobs, h, t, weight, bias, scale, softcap,
                              use_reentrant=False)
        else:
            part = _chunk_logprobs(h, t, weight, bias, scale, softcap)
        parts.append(part)
    return torch.cat(parts)


@dataclass(frozen=True)
class PackedBatch:
    """Right-padded token ids of a micro-batch and where its completion tokens are.

    `positions` index the flattened `[batch * width]` hidden states that *predict* each
    completion token (position t predicts token t + 1); `targets` are those tokens; `rows`
    says which sequence each one belongs to.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    positions: torch.Tensor
    targets: torch.Tensor
    rows: torch.Tensor
    lengths: tuple[int, ...]  # completion tokens per sequence


def pack(sequences: Sequence[tuple[Sequence[int], int]], pad_id: int) -> PackedBatch:
    """`sequences`: (token ids, completion length) with the completion at the end."""
    width = max(len(ids) for ids, _ in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    positions: list[int] = []
    rows: list[int] = []
    for row, (ids, n) in enumerate(sequences):
        if n < 1 or n >= len(ids):
            raise ValueError("a sequence needs at least one prompt and one completion token")
        input_ids[row, :len(ids)] = torch.tensor(list(ids), dtype=torch.long)
        attention[row, :len(ids)] = 1
        start = len(ids) - n
        positions.extend(row * width + p for p in range(start - 1, len(ids) - 1))
        rows.extend([row] * n)
    pos = torch.tensor(positions, dtype=torch.long)
    targets = input_ids.view(-1)[pos + 1]
    return PackedBatch(input_ids, attention, pos, targets, torch.tensor(rows),
                       tuple(n for _, n in sequences))


def output_head(model: Any) -> tuple[torch.Tensor, torch.Tensor | None, float, float | None]:
    """The LM head's weight and bias, and the logit transforms some families apply."""
    head = model.get_output_embeddings()
    config = model.config
    scale = float(getattr(config, "logit_scale", None) or 1.0)
    softcap = getattr(config, "final_logit_softcapping", None)
    return head.weight, getattr(head, "bias", None), scale, softcap


def completion_logprobs(model: Any, batch: PackedBatch, *, temperature: float = 1.0,
                        chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> torch.Tensor:
    """Log-probabilities of every completion token of `batch`, flattened in row order.

    `temperature` divides the logits, as the sampler did, so the ratio of the update compares
    the distribution that produced the tokens.
    """
    device = model.get_output_embeddings().weight.device
    outputs = model.base_model(input_ids=batch.input_ids.to(device),
                               attention_mask=batch.attention_mask.to(device),
                               use_cache=False)
    hidden = outputs.last_hidden_state
    hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch.positions.to(device))
    weight, bias, scale, softcap = output_head(model)
    return selective_log_softmax(hidden, batch.targets.to(device), weight, bias,
                                 scale=scale / temperature, softcap=softcap,
                                 chunk_tokens=chunk_tokens)
