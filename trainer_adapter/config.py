"""The training configuration: one typed value, loaded from YAML or JSON.

Defaults follow the Absolute Zero paper (§6 of DESIGN.md): K=6 references, n=8 learnability
rollouts, batch 64 per task per role, lr 1e-6, temperature 1.0, format penalties -0.5/-1.
`configs/tiny-cpu.yaml` shrinks everything so two steps run on a laptop CPU.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from azr_verify.client import TaskType


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
    """A randomly initialised causal LM with a byte-level tokenizer built in memory."""

    arch: Literal["llama", "gpt2"] = "llama"
    hidden_size: int = Field(default=64, ge=8)
    layers: int = Field(default=2, ge=1)
    heads: int = Field(default=2, ge=1)
    max_positions: int = Field(default=8192, ge=256,
                               description="Longest prompt + completion, in bytes.")


class ModelSection(_Section):
    source: Literal["tiny", "pretrained"] = Field(
        default="tiny", description="`tiny`: random in-memory model (tests, smoke runs); "
        "`pretrained`: load `path` with transformers.")
    path: str | None = Field(default=None, description="Local directory or hub id "
                             "(pretrained only).")
    tiny: TinyModelSection = Field(default_factory=TinyModelSection)
    device: str = Field(default="auto", description="`auto`, `cpu`, `cuda`, `cuda:1`...")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"

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
    vllm_gpu_memory_utilization: float = Field(default=0.4, gt=0, le=1)


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
    induction_inputs: int = Field(default=10, ge=2, description="Inputs asked of an "
                                  "induction proposer.")
    induction_min_pairs: int = Field(default=2, ge=2, description="Valid (input, output) "
                                     "pairs an induction proposal needs (half are hidden).")
    buffer_max: int | None = Field(default=None, ge=1, description="Keep only the newest "
                                   "tasks per buffer (None: unbounded, as in the paper).")
    seed_program: str = Field(default="def f(a):\n    return a",
                              description="The identity triplet the buffers start from.")
    seed_input: str = Field(default="'Hello World'")


class RewardSection(_Section):
    wrong_penalty: float = Field(default=-0.5, description="Well-formed but wrong/invalid.")
    format_penalty: float = Field(default=-1.0, description="Malformed response.")


class OptimSection(_Section):
    lr: float = Field(default=1e-6, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    clip_eps: float = Field(default=0.2, gt=0, description="PPO ratio clip.")
    epochs: int = Field(default=1, ge=1, description="Optimizer steps per batch of rollouts.")
    micro_batch: int = Field(default=8, ge=1, description="Sequences per forward/backward.")
    max_grad_norm: float = Field(default=1.0, gt=0)


class RunSection(_Section):
    steps: int = Field(default=100, ge=1)
    out_dir: Path = Field(default=Path("runs/azr"))
    seed: int = 0
    checkpoint_every: int = Field(default=0, ge=0, description="Steps between checkpoints; "
                                  "0 = only at the end.")
    keep_checkpoints: int = Field(default=2, ge=1)
    plot: bool = Field(default=True, description="Write training_curves.png at the end.")
    progress: bool = Field(default=True, description="Show a progress bar.")


class TrainConfig(_Section):
    """The whole configuration of an AZR run."""

    service: ServiceSection = Field(default_factory=ServiceSection)
    model: ModelSection = Field(default_factory=ModelSection)
    rollout: RolloutSection = Field(default_factory=RolloutSection)
    azr: AzrSection = Field(default_factory=AzrSection)
    rewards: RewardSection = Field(default_factory=RewardSection)
    optim: OptimSection = Field(default_factory=OptimSection)
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
