"""One-command GPU smoke check of the production path (vLLM rollouts + the torch update):

    python -m azr_verify.trainer_adapter.gpu_smoke                 # starts its own service
    python -m azr_verify.trainer_adapter.gpu_smoke --model /models/Qwen2.5-0.5B --steps 2
    python -m azr_verify.trainer_adapter.gpu_smoke --service-url http://127.0.0.1:8000

Without `--model` it builds a ~100M-parameter random Llama with the in-memory BPE tokenizer
(nothing is downloaded), saves it and loads it back by path like any pretrained model. It
runs the format warm-up on the GPU, then `--steps` AZR steps with vLLM rollouts (bf16,
CUDA graphs, sleep mode, `n=` learnability rollouts, `</answer>` stop), bf16 parameters with
fp32 master weights and gradient checkpointing, and checks after every weight push that
vLLM's parameters equal the trainer's. It prints the time split of each step and the GPU
memory peaks, and exits non-zero when a check fails. Budget: under 5 minutes on one GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig
from .model import Policy, bpe_tokenizer
from .rollout import Generation, GenerationRequest, RolloutEngine

CHECKED_PARAMETERS = 3


class VerifyingEngine:
    """Wraps the vLLM engine; after each weight push compares some of vLLM's parameters
    with the trainer's (the push is the easiest thing to get silently wrong)."""

    def __init__(self, inner: Any, policy: Policy) -> None:
        self.inner = inner
        self.policy = policy
        self.push_errors: list[float] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        generated: list[Generation] = self.inner.generate(requests)
        return generated

    def sleep(self) -> None:
        self.inner.sleep()

    def wake(self) -> None:
        self.inner.wake()

    def sync_weights(self, model: Any) -> None:
        self.inner.sync_weights(model)
        # Projections vLLM does not fuse (q/k/v and gate/up become one tensor there).
        trainer = {name: p for name, p in model.named_parameters()
                   if name.endswith(("o_proj.weight", "down_proj.weight"))}
        names = sorted(trainer)[:CHECKED_PARAMETERS]
        served = self.inner.parameter_sums(names)
        for name in names:
            if name not in served:
                continue  # fused in vLLM (e.g. q/k/v): compared through the others
            expected = float(trainer[name].detach().to(torch.bfloat16).float().sum())
            self.push_errors.append(abs(served[name] - expected) / (abs(expected) + 1.0))

    def close(self) -> None:
        self.inner.close()


def build_random_model(directory: Path) -> Path:
    """A ~100M-parameter Llama with random weights and the in-memory BPE, saved to disk."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = bpe_tokenizer(2048)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=2048,
                         num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4,
                         max_position_embeddings=2048, tie_word_embeddings=False,
                         eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def smoke_config(model_path: str, out_dir: Path, url: str, steps: int) -> TrainConfig:
    return TrainConfig.model_validate({
        "service": {"url": url, "timeout_s": 120},
        "model": {"source": "pretrained", "path": model_path, "device": "cuda",
                  "dtype": "bfloat16", "compute_dtype": "bfloat16", "max_length": 2048,
                  "gradient_checkpointing": True},
        "rollout": {"engine": "vllm", "temperature": 1.0, "max_new_tokens_propose": 256,
                    "max_new_tokens_solve": 128, "vllm_gpu_memory_utilization": 0.3,
                    "vllm_dtype": "bfloat16"},
        "azr": {"references": 2, "learnability_rollouts": 4, "propose_batch": 16,
                "solve_batch": 16, "induction_inputs": 4, "seed_batch_factor": 1,
                "seed_max_rounds": 2},
        "warmup": {"steps": 150, "batch_size": 16, "lr": 3e-4},
        "optim": {"lr": 1e-6, "mini_batch_size": 48, "micro_batch_tokens": 16384},
        "run": {"steps": steps, "out_dir": str(out_dir), "progress": False},
    })


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m azr_verify.trainer_adapter.gpu_smoke",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", help="Local model directory (default: a random ~100M "
                        "Llama built here).")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--service-url", help="Use this service instead of starting one.")
    parser.add_argument("--out", default=None, help="Run directory (default: a temp dir).")
    args = parser.parse_args(argv)

    if not torch.cuda.is_available():
        print("gpu_smoke: no CUDA device", file=sys.stderr)
        return 2
    try:
        import vllm  # noqa: F401
    except ImportError:
        print("gpu_smoke: vllm is not installed (pip install 'azr-verify[vllm]')",
              file=sys.stderr)
        return 2

    from .local_service import LocalService
    from .runner import run_training
    from .vllm_engine import VLLMEngine

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="azr-gpu-smoke-") as tmp:
        out_dir = Path(args.out or Path(tmp) / "run")
        model_path = args.model or str(build_random_model(Path(tmp) / "model"))
        service = None if args.service_url else LocalService(Path(tmp) / "service")
        url = args.service_url or (service.start() if service else "")
        engines: list[VerifyingEngine] = []

        def wrap(engine: RolloutEngine, policy: Policy) -> RolloutEngine:
            assert isinstance(engine, VLLMEngine)
            verifying = VerifyingEngine(engine, policy)
            engines.append(verifying)
            return verifying

        try:
            torch.cuda.reset_peak_memory_stats()
            result = run_training(smoke_config(model_path, out_dir, url, args.steps),
                                  wrap_engine=wrap)
        finally:
            if service is not None:
                service.stop()
        from .metrics import read_metrics

        records = read_metrics(result.metrics_path)
        for record in records:
            print(json.dumps({"step": record["step"], "time": record["time"],
                              "update": record["update"], "verdicts": record["verdicts"],
                              "samples": record["samples"]}))
        peak = torch.cuda.max_memory_allocated() / 2**30
        total = torch.cuda.get_device_properties(0).total_memory / 2**30
        errors = engines[0].push_errors if engines else []
        print(f"gpu: {torch.cuda.get_device_name(0)}, {total:.1f} GiB; trainer peak "
              f"{peak:.2f} GiB (torch allocator; vLLM's share is separate)")
        print(f"weight push: {len(errors)} parameters compared, max relative error "
              f"{max(errors, default=float('nan')):.2e}")
        print(f"total {time.perf_counter() - started:.1f} s")
        failures = []
        if len(records) != args.steps:
            failures.append(f"{len(records)} of {args.steps} steps ran")
        if not errors or max(errors) > 1e-2:
            failures.append("vLLM's weights differ from the trainer's after a push")
        if not any(r["update"]["grad_norm"] > 0 for r in records):
            failures.append("no step produced a gradient")
        for failure in failures:
            print(f"FAIL: {failure}", file=sys.stderr)
        return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
