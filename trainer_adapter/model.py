"""The policy: a causal LM and its tokenizer, pretrained or tiny and built in memory.

The tiny model (random weights, byte-level tokenizer) exists so the whole loop runs on a CPU
with nothing downloaded; it learns nothing useful but exercises every stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .config import ModelSection, TinyModelSection

EOS = "<|endoftext|>"
PAD = "<|pad|>"

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Policy:
    model: Any  # transformers PreTrainedModel
    tokenizer: Any  # transformers PreTrainedTokenizerBase
    device: torch.device
    max_positions: int


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def byte_tokenizer() -> Any:
    """A lossless byte-level tokenizer (256 byte tokens + EOS + PAD), no merges, no files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: index for index, symbol in enumerate(alphabet)}
    vocab[EOS] = len(vocab)
    vocab[PAD] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS, pad_token=PAD)


def build_tiny(cfg: TinyModelSection, tokenizer: Any) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    ids = {"eos_token_id": tokenizer.eos_token_id, "bos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    if cfg.arch == "gpt2":
        return GPT2LMHeadModel(GPT2Config(
            vocab_size=len(tokenizer), n_positions=cfg.max_positions, n_embd=cfg.hidden_size,
            n_layer=cfg.layers, n_head=cfg.heads, **ids))
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size,
        intermediate_size=2 * cfg.hidden_size, num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
        max_position_embeddings=cfg.max_positions, tie_word_embeddings=False, **ids))


def load_policy(cfg: ModelSection, seed: int) -> Policy:
    torch.manual_seed(seed)
    device = resolve_device(cfg.device)
    dtype = _DTYPES[cfg.dtype]
    if cfg.source == "tiny":
        tokenizer = byte_tokenizer()
        model = build_tiny(cfg.tiny, tokenizer)
        max_positions = cfg.tiny.max_positions
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        assert cfg.path is not None  # checked by ModelSection
        tokenizer = AutoTokenizer.from_pretrained(cfg.path)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(cfg.path, dtype=dtype)
        max_positions = int(getattr(model.config, "max_position_embeddings", 4096))
    model.to(device=device, dtype=dtype)
    # No dropout anywhere: rollouts and the update must score the same distribution.
    model.eval()
    return Policy(model, tokenizer, device, max_positions)
