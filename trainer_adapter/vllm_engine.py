"""Rollouts with vLLM on the training GPU; weights are pushed from the torch policy after each
update, tensor by tensor, without touching the disk.

- bf16 weights in vLLM by default (the trainer may keep fp32 master weights);
- CUDA graphs on (`enforce_eager=False`), `max_model_len` and tensor parallelism from the
  config;
- sleep mode: during the policy update vLLM's weights and KV cache are released (level 2:
  the weights are about to be replaced anyway); `sync_weights` wakes the weights only, loads
  the new ones, and `wake` then re-allocates the KV cache, so the two never peak together;
- `n` samples per request (learnability rollouts share one prefill), stop strings kept in
  the output, the sampled tokens' log-probabilities returned;
- the weight push needs the model in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`, set
  here unless the caller set it): with the engine core in another process it cannot work and
  the engine refuses to start instead of training a policy whose rollouts never change.

vLLM is imported only when this engine is built, so the adapter installs and runs without it.
The policy is saved once to a temporary directory vLLM loads its architecture and tokenizer
from; afterwards only tensors move.
"""

from __future__ import annotations

import gc
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .config import DType, RolloutSection
from .model import Policy, torch_dtype
from .rollout import Generation, GenerationRequest, fit_prompt

MULTIPROCESSING_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"
# Tensors per RPC when the weights must cross a process boundary (tensor parallelism).
_BUCKET_BYTES = 512 * 2**20


class EngineUnavailableError(RuntimeError):
    """The requested rollout engine cannot run here (package, device or mode missing)."""


@dataclass(frozen=True)
class VLLMSettings:
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ("</answer>",)
    dtype: DType = "bfloat16"
    gpu_memory_utilization: float = 0.4
    tensor_parallel_size: int = 1
    enforce_eager: bool = False
    sleep: bool = True
    seed: int = 0

    @classmethod
    def from_config(cls, rollout: RolloutSection, seed: int = 0) -> VLLMSettings:
        return cls(temperature=rollout.temperature, top_p=rollout.top_p,
                   stop=tuple(rollout.stop), dtype=rollout.vllm_dtype,
                   gpu_memory_utilization=rollout.vllm_gpu_memory_utilization,
                   tensor_parallel_size=rollout.vllm_tensor_parallel_size,
                   enforce_eager=rollout.vllm_enforce_eager, sleep=rollout.vllm_sleep,
                   seed=seed)


def _require_in_process() -> None:
    value = os.environ.setdefault(MULTIPROCESSING_ENV, "0")
    if value != "0":
        raise EngineUnavailableError(
            f"{MULTIPROCESSING_ENV}={value}: vLLM's engine core would run in another process, "
            "where the trainer cannot load its updated weights; unset it (the engine sets "
            "it to 0) to train with vLLM rollouts")


class VLLMEngine:
    def __init__(self, policy: Policy, settings: VLLMSettings | None = None) -> None:
        settings = settings or VLLMSettings()
        _require_in_process()
        try:
            import vllm
        except ImportError as exc:
            raise EngineUnavailableError(
                "rollout.engine=vllm needs the `vllm` extra (pip install 'azr-verify[vllm]') "
                "and a GPU") from exc
        if not torch.cuda.is_available():
            raise EngineUnavailableError("rollout.engine=vllm needs a CUDA GPU")
        self._vllm = vllm
        self.policy = policy
        self.settings = settings
        self._asleep = False
        self._dir = tempfile.TemporaryDirectory(prefix="azr-vllm-")
        # Architecture, config and tokenizer; the weights are pushed right after start-up
        # too, so a checkpoint saved in another dtype costs nothing but a disk write.
        policy.model.save_pretrained(self._dir.name)
        policy.tokenizer.save_pretrained(self._dir.name)
        self.llm = vllm.LLM(
            model=self._dir.name, tokenizer=self._dir.name, seed=settings.seed,
            dtype=settings.dtype, gpu_memory_utilization=settings.gpu_memory_utilization,
            max_model_len=policy.max_positions, enforce_eager=settings.enforce_eager,
            tensor_parallel_size=settings.tensor_parallel_size,
            enable_sleep_mode=settings.sleep, enable_prefix_caching=True)
        self._check_weight_push()

    # -- weight push -------------------------------------------------------------------

    def _in_process(self) -> bool:
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        # V1 names its in-process client InprocClient; V0 has no engine core at all.
        return core is None or "inproc" in type(core).__name__.lower()

    def _check_weight_push(self) -> None:
        if not self._in_process():
            self.close()
            raise EngineUnavailableError(
                "vLLM started its engine core in another process: the weight push cannot "
                f"reach it. Set {MULTIPROCESSING_ENV}=0 before vLLM is imported.")
        if not hasattr(self.llm, "apply_model") and self.settings.tensor_parallel_size == 1:
            self.close()
            raise EngineUnavailableError("this vLLM has no LLM.apply_model (needs >= 0.9)")

    def _weights(self, model: Any) -> Iterator[tuple[str, torch.Tensor]]:
        dtype = torch_dtype(self.settings.dtype)
        for name, tensor in model.state_dict().items():
            # One converted tensor alive at a time: no second full copy of the model.
            yield name, tensor.detach().to(dtype=dtype)

    def sync_weights(self, model: Any) -> None:
        """Load the trainer's weights into vLLM's model (waking the weights if asleep)."""
        if self._asleep and hasattr(self.llm, "wake_up"):
            self.llm.wake_up(tags=["weights"])
        if self.settings.tensor_parallel_size == 1:
            weights = self._weights(model)
            self.llm.apply_model(lambda runner_model: runner_model.load_weights(weights=weights))
        else:
            # Across processes: CPU buckets through the executor's RPC; each worker's
            # load_weights keeps its own shard.
            for bucket in _buckets(self._weights(model)):
                self.llm.collective_rpc(_load_bucket, args=(bucket,))
        if hasattr(self.llm, "reset_prefix_cache"):
            # Cached KV blocks were computed with the old weights.
            self.llm.reset_prefix_cache()

    def parameter_sums(self, names: Sequence[str]) -> dict[str, float]:
        """Sums of some of vLLM's own parameters (to check that a push arrived)."""
        wanted = list(names)

        def sums(runner_model: Any) -> dict[str, float]:
            params = dict(runner_model.named_parameters())
            return {n: float(params[n].float().sum()) for n in wanted if n in params}

        results = self.llm.apply_model(sums)
        return dict(results[0]) if isinstance(results, list) else dict(results)

    # -- memory ------------------------------------------------------------------------

    def sleep(self) -> None:
        """Release the weights and the KV cache for the policy update."""
        if self.settings.sleep and not self._asleep:
            self.llm.sleep(level=2)
            self._asleep = True

    def wake(self) -> None:
        """Re-allocate everything still asleep (the KV cache, after `sync_weights`)."""
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False

    # -- generation --------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        if self._asleep:
            raise RuntimeError("generate() on a sleeping engine: call sync_weights/wake")
        tok = self.policy.tokenizer
        prompts = [fit_prompt(tok.encode(r.prompt, add_special_tokens=False),
                              self.policy.max_positions - r.max_new_tokens) for r in requests]
        params = [self._vllm.SamplingParams(
            n=r.n, temperature=self.settings.temperature, top_p=self.settings.top_p,
            max_tokens=r.max_new_tokens, stop=list(self.settings.stop),
            include_stop_str_in_output=True, logprobs=0) for r in requests]
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompts], params,
                                    use_tqdm=False)
        generations = []
        for ids, output in zip(prompts, outputs, strict=True):
            for sample in output.outputs:
                token_ids = tuple(sample.token_ids)
                generations.append(Generation(sample.text, tuple(ids), token_ids,
                                              logprobs=_sampled_logprobs(sample, token_ids)))
        return generations

    def close(self) -> None:
        """Shut vLLM down and give its GPU memory back."""
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
            if core is not None and hasattr(core, "shutdown"):
                core.shutdown()
            del llm
        try:
            from vllm.distributed.parallel_state import (
                destroy_distributed_environment,
                destroy_model_parallel,
            )

            destroy_model_parallel()
            destroy_distributed_environment()
        except ImportError:
            pass
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self._dir.cleanup()


def _sampled_logprobs(sample: Any, token_ids: Sequence[int]) -> tuple[float, ...] | None:
    entries = getattr(sample, "logprobs", None)
    if not entries:
        return None
    return tuple(float(entry[token].logprob) for token, entry in zip(token_ids, entries,
                                                                     strict=False))


def _buckets(weights: Iterator[tuple[str, torch.Tensor]]
             ) -> Iterator[list[tuple[str, torch.Tensor]]]:
    bucket: list[tuple[str, torch.Tensor]] = []
    size = 0
    for name, tensor in weights:
        bucket.append((name, tensor.cpu()))
        size += tensor.numel() * tensor.element_size()
        if size >= _BUCKET_BYTES:
            yield bucket
            bucket, size = [], 0
    if bucket:
        yield bucket


def _load_bucket(worker: Any, bucket: list[tuple[str, torch.Tensor]]) -> None:
    worker.model_runner.model.load_weights(weights=bucket)
