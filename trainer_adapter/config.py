"""The training configuration: one typed value, loaded from YAML or JSON.

Defaults follow the Absolute Zero paper (docs/design.md §7): K=6 references, n=8 learnability
rollouts, batch 64 per task per role, lr 1e-6, temperature 1.0, format penalties -0.5/-1.
`configs/tiny-cpu.yaml` shrinks everything (plus a format warm-up) so that three real steps
run on a 2-core CPU.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from azr_verify.client import TaskType

DType = Literal["float32", "bfloat16", "float16"]


class _Section(BaseModel):
    # Unknown keys are typos; fail loudly instead of silently training with defaults.
    model_config = ConfigDict(extra="forbid")


class ServiceSection(_Section):
    url: str = Field(default="http://127.0.0.1:8000", description="azr-verify service URL.")
    api_key: str | None = Field(default=None, description="Bearer key, when the service "
                                "requires one.")
    policy: str = Field(default="azr", description="Safety policy every check runs under.")
    timeout_s: float = Field(default=300.0, gt=0, description="Per-request timeout.")
    chunk_size: int = Field(default=512, ge=1, description="Items per /v1/check request.")
    max_retries: int = Field(default=6, ge=0, description="Retries per request after "
                             "429/503/connection failures (with backoff).")


class TinyModelSection(_Section):
    """A randomly initialised causal LM with a tokenizer built in memory."""

    arch: Literal["llama", "gpt2"] = "llama"
    tokenizer: Literal["byte", "bpe"] = Field(
        default="byte", description="`byte`: 256 byte tokens; `bpe`: a byte-level BPE "
        "trained in memory on text shaped like the loop's prompts (much shorter sequences).")
    vocab_size: int = Field(default=1024, ge=300, description="BPE vocabulary size.")
    hidden_size: int = Field(default=64, ge=8)
    layers: int = Field(default=2, ge=1)
    heads: int = Field(default=2, ge=1)
    max_positions: int = Field(default=8192, ge=256,
                               description="Longest prompt + completion, in tokens.")


class ModelSection(_Section):
    source: Literal["tiny", "pretrained"] = Field(
        default="tiny", description="`tiny`: random in-memory model (tests, smoke runs); "
        "`pretrained`: load `path` with transformers.")
    path: str | None = Field(default=None, description="Local directory or hub id "
                             "(pretrained only).")
    tiny: TinyModelSection = Field(default_factory=TinyModelSection)
    device: str = Field(default="auto", description="`auto`, `cpu`, `cuda`, `cuda:1`...")
    dtype: DType = Field(default="float32", description="Dtype of the trained parameters. "
                         "float32: they are the master weights; bfloat16/float16: the "
                         "optimizer keeps an fp32 master copy (see optim.offload_master).")
    compute_dtype: DType | None = Field(default=None, description="Autocast dtype of the "
                                        "training forward (None: same as dtype). "
                                        "`bfloat16` with dtype float32 is fp32 master "
                                        "weights with bf16 compute.")
    max_length: int | None = Field(default=None, ge=16, description="Longest prompt + "
                                   "completion in tokens (None: the model's own limit); "
                                   "also vLLM's max_model_len.")
    gradient_checkpointing: bool = Field(default=True, description="Recompute decoder "
                                         "layers in the backward pass instead of storing "
                                         "their activations.")

    @model_validator(mode="after")
    def _path_for_pretrained(self) -> ModelSection:
        if self.source == "pretrained" and not self.path:
            raise ValueError("model.path is required when model.source is 'pretrained'")
        return self


class EngineName(StrEnum):
    TRANSFORMERS = "transformers"
    VLLM = "vllm"


class RolloutSection(_Section):
    engine: EngineName = Field(default=EngineName.TRANSFORMERS,
                               description="`transformers` (CPU/GPU) or `vllm` (GPU).")
    temperature: float = Field(default=1.0, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    max_new_tokens_propose: int = Field(default=1024, ge=1)
    max_new_tokens_solve: int = Field(default=1024, ge=1)
    stop: list[str] = Field(default_factory=lambda: ["</answer>"], description="Generation "
                            "stops after any of these strings; the string is kept.")
    batch_size: int = Field(default=16, ge=1, description="Sequences per generate() call "
                            "(transformers engine).")
    vllm_gpu_memory_utilization: float = Field(default=0.4, gt=0, le=1, description="Share "
                                               "of GPU memory vLLM may take (weights + KV "
                                               "cache) while awake.")
    vllm_dtype: DType = Field(default="bfloat16", description="Dtype of vLLM's copy of the "
                              "weights.")
    vllm_tensor_parallel_size: int = Field(default=1, ge=1)
    vllm_enforce_eager: bool = Field(default=False, description="Disable CUDA graphs (slower; "
                                     "only for debugging).")
    vllm_sleep: bool = Field(default=True, description="Put vLLM to sleep (weights to CPU, KV "
                             "cache freed) during the policy update.")


class AzrSection(_Section):
    task_types: list[TaskType] = Field(default_factory=lambda: list(TaskType))
    references: int = Field(default=6, ge=0, description="K: buffer triples shown to the "
                            "proposer as references.")
    learnability_rollouts: int = Field(default=8, ge=1, description="n: solver rollouts "
                                       "per valid proposal to estimate its solve rate.")
    propose_batch: int = Field(default=64, ge=1, description="Proposals per task type "
                               "per step.")
    solve_batch: int = Field(default=64, ge=1, description="Solver tasks per task type "
                             "per step.")
    induction_inputs: int = Field(default=10, ge=2, description="N: inputs an induction "
                                  "proposal must give; it is valid only when all N are "
                                  "distinct and run (as the reference); half are hidden.")
    buffer_max: int | None = Field(default=None, ge=1, description="Keep only the newest "
                                   "tasks per buffer (None: unbounded, as in the paper).")
    seed_program: str = Field(default="def f(a):\n    return a",
                              description="The identity triplet the buffers start from.")
    seed_input: str = Field(default="'Hello World'")
    seed_batch_factor: int = Field(default=4, ge=0, description="Seeding stage: before "
                                   "training, propose (without updates) until each buffer "
                                   "holds propose_batch x this many tasks (the reference's "
                                   "seed_batch_factor); 0 skips seeding.")
    seed_max_rounds: int = Field(default=64, ge=1, description="Give up seeding after this "
                                 "many propose rounds (a model that cannot propose yet).")
    solver_sampling: Literal["recent_first", "uniform"] = Field(
        default="recent_first", description="`recent_first`: tasks added in the last "
        "recent_window steps first, then uniform (the reference's max_new); `uniform`: "
        "uniform with replacement.")
    recent_window: int = Field(default=1, ge=1, description="Steps that count as recent.")


class RewardSection(_Section):
    values: Literal["paper", "released"] = Field(
        default="paper", description="`paper`: the paper's rewards; `released`: the released "
        "code's (a valid proposal with learnability 0 gets wrong_penalty, an invalid one "
        "format_penalty).")
    wrong_penalty: float = Field(default=-0.5, description="Well-formed but wrong/invalid.")
    format_penalty: float = Field(default=-1.0, description="Malformed response.")


class OptimSection(_Section):
    lr: float = Field(default=1e-6, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    clip_eps: float = Field(default=0.2, gt=0, description="PPO ratio clip.")
    epochs: int = Field(default=1, ge=1, description="Passes over one AZR step's samples.")
    mini_batch_size: int | None = Field(
        default=256, ge=1, description="Samples per optimizer step: one AZR step makes "
        "ceil(samples / mini_batch_size) updates per epoch (the reference's "
        "ppo_mini_batch_size). None: one update per epoch.")
    micro_batch_tokens: int = Field(default=16384, ge=1, description="Padded tokens "
                                    "(prompt + completion) per forward/backward pass.")
    micro_batch: int = Field(default=64, ge=1, description="Most sequences per "
                             "forward/backward pass.")
    loss_normalization: Literal["token", "sequence"] = Field(
        default="token", description="`token`: sum of token losses / completion tokens of "
        "the mini-batch (token-mean); `sequence`: mean over sequences of each sequence's "
        "mean token loss.")
    max_grad_norm: float = Field(default=1.0, gt=0)
    offload_master: bool = Field(default=False, description="Keep the fp32 master weights "
                                 "and the optimizer state in CPU memory.")
    logprob_chunk_tokens: int = Field(default=1024, ge=1, description="Completion tokens per "
                                      "chunk of the selective log-softmax.")


class WarmupSection(_Section):
    """Supervised format warm-up before RL (`warmup.py`): valid AZR completions for the
    loop's own prompts, built from templated programs validated by the service. For models
    that cannot write the answer format yet (the tiny demo model)."""

    steps: int = Field(default=0, ge=0, description="Optimizer steps; 0 turns it off.")
    lr: float = Field(default=3e-3, gt=0)
    batch_size: int = Field(default=8, ge=1, description="Examples per step.")
    examples: int = Field(default=240, ge=6, description="Size of the corpus.")
    programs: int = Field(default=48, ge=2, description="Distinct templated programs.")


class RunSection(_Section):
    steps: int = Field(default=100, ge=1)
    out_dir: Path = Field(default=Path("runs/azr"))
    seed: int = 0
    checkpoint_every: int = Field(default=0, ge=0, description="Steps between checkpoints; "
                                  "0 = only at the end.")
    keep_checkpoints: int = Field(default=2, ge=1)
    plot: bool = Field(default=True, description="Write training_curves.png at the end.")
    log_samples: bool = Field(default=True, description="Write every sampled completion, "
                              "its parse, verdicts and reward to samples.jsonl.")
    log_prompts: bool = Field(default=False, description="Include full prompts in "
                              "samples.jsonl (large).")
    progress: bool = Field(default=True, description="Show a progress bar.")


class TrainConfig(_Section):
    """The whole configuration of an AZR run."""

    service: ServiceSection = Field(default_factory=ServiceSection)
    model: ModelSection = Field(default_factory=ModelSection)
    rollout: RolloutSection = Field(default_factory=RolloutSection)
    azr: AzrSection = Field(default_factory=AzrSection)
    rewards: RewardSection = Field(default_factory=RewardSection)
    optim: OptimSection = Field(default_factory=OptimSection)
    warmup: WarmupSection = Field(default_factory=WarmupSection)
    run: RunSection = Field(default_factory=RunSection)


class ConfigLoadError(ValueError):
    """The config file is missing, unreadable, not YAML/JSON, or not a valid TrainConfig; the
    message is one line that says which and how to fix it."""


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML (.yaml/.yml) or JSON file; `overrides` are dotted keys, e.g.
    ``{"run.steps": 2, "service.url": "http://..."}``. Raises ConfigLoadError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigLoadError(f"{path}: no such config file (see trainer_adapter/configs/ "
                              "for examples)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigLoadError(f"{path}: cannot read the config: {exc}") from None
    data = _parse_config_text(path, text)
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigLoadError(f"{path}: cannot set {dotted}: {key!r} is not a section")
        node[leaf] = value
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe_error(error) for error in exc.errors()[:3])
        more = f" (and {len(exc.errors()) - 3} more)" if len(exc.errors()) > 3 else ""
        raise ConfigLoadError(f"{path}: {problems}{more} (every field is documented in "
                              "azr_verify.trainer_adapter.config.TrainConfig)") from None


def _parse_config_text(path: Path, text: str) -> dict[str, Any]:
    if path.suffix in (".yaml", ".yml"):
        import yaml  # only needed for YAML configs

        try:
            data = yaml.safe_load(text) or {}
        except (yaml.YAMLError, RecursionError) as exc:
            detail = " ".join(str(exc).split())
            raise ConfigLoadError(f"{path}: not valid YAML: {detail}") from None
    else:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            raise ConfigLoadError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigLoadError(f"{path}: the config must be a mapping of sections "
                              f"(service, model, rollout, ...), not a {type(data).__name__}")
    return data


def _describe_error(error: Any) -> str:
    where = ".".join(str(part) for part in error.get("loc", ())) or "config"
    if error.get("type") == "extra_forbidden":
        return f"unknown key {where!r} (a typo? remove or rename it)"
    return f"{where}: {error.get('msg')}"
