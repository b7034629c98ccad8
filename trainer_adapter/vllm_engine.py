"""Rollouts with vLLM on a GPU; weights are pushed from the torch policy after each update.

vLLM is imported only when this engine is built, so the adapter installs and runs without
it. The policy is saved once to a directory vLLM can load; afterwards only tensors move.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

from .model import Policy
from .rollout import Generation, GenerationRequest, fit_prompt


class EngineUnavailableError(RuntimeError):
    """The requested rollout engine cannot run here (package or device missing)."""


class VLLMEngine:
    def __init__(self, policy: Policy, *, temperature: float = 1.0, top_p: float = 1.0,
                 gpu_memory_utilization: float = 0.4, seed: int = 0) -> None:
        # In-process engine core, so that weights can be loaded into the model directly.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        try:
            import vllm
        except ImportError as exc:
            raise EngineUnavailableError(
                "rollout.engine=vllm needs the `vllm` extra (pip install 'azr-verify[vllm]') "
                "and a GPU") from exc
        self._vllm = vllm
        self.policy = policy
        self.temperature = temperature
        self.top_p = top_p
        self._dir = tempfile.TemporaryDirectory(prefix="azr-vllm-")
        policy.model.save_pretrained(self._dir.name)
        policy.tokenizer.save_pretrained(self._dir.name)
        self.llm = vllm.LLM(model=self._dir.name, tokenizer=self._dir.name, seed=seed,
                            gpu_memory_utilization=gpu_memory_utilization,
                            max_model_len=policy.max_positions, enforce_eager=True,
                            dtype=str(next(policy.model.parameters()).dtype).split(".")[-1])

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        tok = self.policy.tokenizer
        prompts = [fit_prompt(tok.encode(r.prompt, add_special_tokens=False),
                              self.policy.max_positions - r.max_new_tokens) for r in requests]
        params = [self._vllm.SamplingParams(temperature=self.temperature, top_p=self.top_p,
                                            max_tokens=r.max_new_tokens) for r in requests]
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompts], params,
                                    use_tqdm=False)
        generations = []
        for ids, output in zip(prompts, outputs, strict=True):
            sample = output.outputs[0]
            generations.append(Generation(sample.text, tuple(ids), tuple(sample.token_ids)))
        return generations

    def sync_weights(self, model: Any) -> None:
        """Copy the updated torch weights into vLLM's model (same GPU, no disk)."""
        weights = [(name, tensor.detach()) for name, tensor in model.state_dict().items()]

        def load(runner_model: Any) -> None:
            runner_model.load_weights(weights=weights)

        if hasattr(self.llm, "apply_model"):  # vLLM >= 0.8
            self.llm.apply_model(load)
        else:
            engine = self.llm.llm_engine
            load(engine.model_executor.driver_worker.model_runner.model)
        if hasattr(self.llm, "reset_prefix_cache"):
            # Cached KV blocks were computed with the old weights.
            self.llm.reset_prefix_cache()

    def close(self) -> None:
        del self.llm
        self._dir.cleanup()
