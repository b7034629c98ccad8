"""The policy: a causal LM and its tokenizer, pretrained or tiny and built in memory.

The tiny model (random weights, byte-level tokenizer) exists so the whole loop runs on a CPU
with nothing downloaded. A pretrained model is any local directory (or hub id) that
`transformers.AutoModelForCausalLM` loads, e.g. one written by `save_pretrained`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch

from .config import DType, ModelSection, TinyModelSection
from .precision import disable_dropout, enable_gradient_checkpointing

EOS = "<|endoftext|>"
PAD = "<|pad|>"

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: DType) -> torch.dtype:
    return _DTYPES[name]


@dataclass
class Policy:
    model: Any  # transformers PreTrainedModel
    tokenizer: Any  # transformers PreTrainedTokenizerBase
    device: torch.device
    max_positions: int
    param_dtype: torch.dtype = torch.float32
    compute_dtype: torch.dtype = torch.float32
    source: str = "tiny"  # "tiny" or the pretrained path


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@functools.lru_cache(maxsize=4)
def bpe_tokenizer(vocab_size: int, seed: int = 0) -> Any:
    """A byte-level BPE trained in memory on text shaped like the loop's prompts and answers
    (`demo_tasks.tokenizer_corpus`): lossless on any text (every byte is in the alphabet),
    and the recurring format pieces (fences, tags, `def f(a):`) become single tokens, so a
    tiny model sees 5-10x shorter sequences than with bytes. Merges may cross spaces.
    Deterministic, so it is trained once per process and shared (nothing mutates it)."""
    import random

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from .demo_tasks import tokenizer_corpus

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[EOS, PAD])
    core.train_from_iterator(tokenizer_corpus(random.Random(seed)), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS, pad_token=PAD)


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


def load_pretrained(path: str, dtype: torch.dtype) -> tuple[Any, Any]:
    """Model and tokenizer from a local directory (or hub id); the tokenizer gets a pad
    token when it has none."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    return model, tokenizer


def load_policy(cfg: ModelSection, seed: int) -> Policy:
    torch.manual_seed(seed)
    device = resolve_device(cfg.device)
    dtype = torch_dtype(cfg.dtype)
    if cfg.source == "tiny":
        tokenizer = (byte_tokenizer() if cfg.tiny.tokenizer == "byte"
                     else bpe_tokenizer(cfg.tiny.vocab_size))
        model = build_tiny(cfg.tiny, tokenizer)
        max_positions = cfg.tiny.max_positions
        source = "tiny"
    else:
        assert cfg.path is not None  # checked by ModelSection
        model, tokenizer = load_pretrained(cfg.path, dtype)
        max_positions = int(getattr(model.config, "max_position_embeddings", 4096))
        source = cfg.path
    if cfg.max_length is not None:
        max_positions = min(max_positions, cfg.max_length)
    model.to(device=device, dtype=dtype)
    disable_dropout(model)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    model.eval()
    compute = torch_dtype(cfg.compute_dtype) if cfg.compute_dtype else dtype
    return Policy(model, tokenizer, device, max_positions, dtype, compute, source)
