"""A whole training run: build everything from the config, loop, write metrics,
checkpoints and the plot."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azr_verify.client import Client, ClientConfig

from .buffers import Buffers
from .checkpoint import save_checkpoint
from .config import EngineName, TrainConfig
from .hf_engine import TransformersEngine
from .loop import AzrTrainer
from .metrics import MetricsWriter
from .model import Policy, load_policy
from .plotting import plot_metrics
from .precision import adamw_factory, build_optimizer
from .rollout import RolloutEngine
from .sample_log import SampleLog
from .tasks import Triple
from .validation import Verifier

EngineWrapper = Callable[[RolloutEngine, Policy], RolloutEngine]

log = logging.getLogger("azr_verify.trainer")


class SeedRejectedError(RuntimeError):
    """The service rejected the seed triplet; nothing can be bootstrapped from it."""


@dataclass(frozen=True)
class RunResult:
    out_dir: Path
    steps: int
    metrics_path: Path
    plot_path: Path | None
    checkpoint: Path | None
    last: dict[str, Any]


def build_engine(config: TrainConfig, policy: Policy) -> RolloutEngine:
    rollout = config.rollout
    if rollout.engine is EngineName.VLLM:
        from .vllm_engine import VLLMEngine, VLLMSettings  # vLLM only when asked for

        return VLLMEngine(policy, VLLMSettings.from_config(rollout, seed=config.run.seed))
    return TransformersEngine(policy, temperature=rollout.temperature, top_p=rollout.top_p,
                              batch_size=rollout.batch_size, stop=rollout.stop)


def make_client(config: TrainConfig) -> Client:
    service = config.service
    return Client(config=ClientConfig(base_url=service.url, api_key=service.api_key,
                                      policy=service.policy, timeout_s=service.timeout_s,
                                      chunk_size=service.chunk_size,
                                      max_retries=service.max_retries))


def seed_triple(client: Client, config: TrainConfig) -> Triple:
    """The gold output of the seed comes from the service like every other one."""
    azr = config.azr
    outcome = client.validate_proposal(azr.seed_program, azr.seed_input, config.service.policy)
    if not outcome.valid or outcome.gold_output is None:
        raise SeedRejectedError(f"seed triplet rejected: {outcome.reason} {outcome.detail}")
    return Triple(azr.seed_program, azr.seed_input, outcome.gold_output)


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc="azr", unit="step")


def run_training(config: TrainConfig, *, client: Client | None = None,
                 wrap_engine: EngineWrapper | None = None) -> RunResult:
    """Train for `config.run.steps` steps; `wrap_engine` lets tests script completions."""
    run = config.run
    out_dir = Path(run.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(config.model_dump_json(indent=1))
    rng = random.Random(run.seed)
    own_client = client is None
    client = client or make_client(config)
    policy = load_policy(config.model, run.seed)
    writer = MetricsWriter(out_dir / "metrics.jsonl")
    samples = (SampleLog(out_dir / "samples.jsonl", log_prompts=run.log_prompts)
               if run.log_samples else None)
    checkpoint: Path | None = None
    last: dict[str, Any] = {}
    engine: RolloutEngine | None = None
    try:
        seed = seed_triple(client, config)
        if config.warmup.steps:
            from .warmup import run_warmup  # the demo's supervised format warm-up

            summary = run_warmup(policy, client, config, rng)
            (out_dir / "warmup.json").write_text(json.dumps(summary, indent=1))
            log.info("warm-up: %s", json.dumps(summary))
        engine = build_engine(config, policy)
        if wrap_engine is not None:
            engine = wrap_engine(engine, policy)
        buffers = Buffers.seeded(seed, config.azr.buffer_max)
        optimizer = build_optimizer(policy.model, adamw_factory(config.optim.lr,
                                                                config.optim.weight_decay),
                                    offload=config.optim.offload_master)
        verifier = Verifier(client, config.service.policy)
        trainer = AzrTrainer(config, policy, engine, verifier, buffers, optimizer, rng,
                             samples)
        seeding = trainer.seed()
        (out_dir / "seeding.json").write_text(json.dumps(seeding, indent=1))
        log.info("seeding: %s", json.dumps(seeding))
        with _progress(run.steps, run.progress) as bar:
            for step in range(1, run.steps + 1):
                last = trainer.step(step)
                writer.write(last)
                bar.update(1)
                bar.set_postfix(_postfix(last), refresh=False)
                if run.checkpoint_every and step % run.checkpoint_every == 0:
                    checkpoint = save_checkpoint(out_dir, step, policy, buffers,
                                                 {"metrics": last}, run.keep_checkpoints)
        if not run.checkpoint_every or run.steps % run.checkpoint_every:
            checkpoint = save_checkpoint(out_dir, run.steps, policy, buffers,
                                         {"metrics": last}, run.keep_checkpoints)
    finally:
        writer.close()
        if samples is not None:
            samples.close()
        if engine is not None:
            engine.close()
        if own_client:
            client.close()
    plot = plot_metrics(writer.path, out_dir / "training_curves.png") if run.plot else None
    return RunResult(out_dir, run.steps, writer.path, plot, checkpoint, last)


def _postfix(record: dict[str, Any]) -> dict[str, str]:
    valid = [v for v in record["valid_proposal_rate"].values() if v is not None]
    solved = [v for v in record["solve_rate"].values() if v is not None]
    return {"valid": f"{sum(valid) / len(valid):.2f}" if valid else "-",
            "solve": f"{sum(solved) / len(solved):.2f}" if solved else "-",
            "buf": str(sum(record["buffer_size"].values()))}
