"""Supervised format warm-up: teach a model the AZR answer format before RL.

A model that never writes `</think> <answer>...</answer>` earns -1 on every sample: every
advantage is 0 and RL has nothing to learn from (the tiny demo model, and small pretrained
models that ramble). This stage builds a corpus of *valid* AZR completions for the real
prompts of the loop, for all six (task type, role) pairs, from the program families of
`demo_tasks` with gold outputs computed by the service, and fits the policy on it with
cross-entropy on the completion tokens only. It downloads nothing.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from azr_verify.client import CheckBatch, Client, IOPair, TaskType

from . import prompts
from .batching import token_micro_batches
from .config import TrainConfig
from .demo_tasks import DemoProgram, make_program
from .logprobs import completion_logprobs, pack
from .model import Policy
from .precision import adamw_factory, autocast, build_optimizer
from .tasks import InductionTask, Role, Triple

_THINK = {Role.PROPOSE: "A small function and an input.",
          Role.SOLVE: "Read the program and work it out."}


@dataclass(frozen=True)
class Example:
    kind: str  # "<task type>/<role>"
    prompt: str
    completion: str


def _envelope(role: Role, body: str) -> str:
    return f" {_THINK[role]}</think>\n<answer>\n{body}\n</answer>"


def _fence(tag: str, body: str) -> str:
    return f"```{tag}\n{body}\n```"


@dataclass(frozen=True)
class _Validated:
    program: DemoProgram
    outputs: tuple[str, ...]

    def triple(self) -> Triple:
        return Triple(self.program.program, self.program.inputs[0], self.outputs[0])

    def pairs(self) -> list[IOPair]:
        return [IOPair(i, o) for i, o in zip(self.program.inputs, self.outputs, strict=True)]


def _validate(client: Client, policy_name: str, programs: list[DemoProgram]
              ) -> list[_Validated]:
    """Gold outputs from the service; programs with any rejected input are dropped."""
    batch = CheckBatch(meta={"stage": "warmup"})
    slots = [batch.add_proposal(p.program, p.inputs) for p in programs]
    results = client.check(batch.items, policy_name) if batch.items else []
    kept = []
    for program, slot in zip(programs, slots, strict=True):
        outcome = slot.outcome(results)
        if outcome.valid and all(o is not None for o in outcome.outputs):
            kept.append(_Validated(program, tuple(o for o in outcome.outputs if o is not None)))
    return kept


def build_corpus(client: Client, config: TrainConfig, rng: random.Random) -> list[Example]:
    """`warmup.examples` examples, spread evenly over the six (task type, role) pairs."""
    azr = config.azr
    n = azr.induction_inputs
    pool = _validate(client, config.service.policy,
                     [make_program(rng, n) for _ in range(config.warmup.programs)])
    if len(pool) < 2:
        raise RuntimeError("the service rejected the warm-up programs; is it running "
                           "with policy 'azr' or 'permissive'?")
    kinds = [(tt, role) for tt in azr.task_types for role in Role]
    examples = []
    for index in range(config.warmup.examples):
        task_type, role = kinds[index % len(kinds)]
        item = rng.choice(pool)
        examples.append(_example(task_type, role, item, pool, azr.references, n, rng))
    return examples


def _example(task_type: TaskType, role: Role, item: _Validated, pool: list[_Validated],
             references: int, n_inputs: int, rng: random.Random) -> Example:
    kind = f"{task_type.value}/{role.value}"
    triple = item.triple()
    if role is Role.PROPOSE and task_type is TaskType.INDUCTION:
        body = "\n".join(_fence("input", i) for i in item.program.inputs[:n_inputs])
        body += "\n" + _fence("message", item.program.message)
        return Example(kind, prompts.propose_induction(triple.program, n_inputs),
                       _envelope(role, body))
    if role is Role.PROPOSE:
        others = [p.triple() for p in pool if p is not item]
        refs = rng.sample(others, min(references, len(others)))
        body = _fence("python", triple.program) + "\n" + _fence("input", triple.input)
        return Example(kind, prompts.propose_triple(task_type, refs), _envelope(role, body))
    if task_type is TaskType.INDUCTION:
        pairs = item.pairs()
        shown = len(pairs) // 2
        task = InductionTask(triple.program, item.program.message, tuple(pairs[:shown]),
                             tuple(pairs[shown:]))
        return Example(kind, prompts.solve(task_type, task),
                       _envelope(role, _fence("python", triple.program)))
    answer = (_fence("output", triple.output) if task_type is TaskType.DEDUCTION
              else _fence("input", triple.input))
    return Example(kind, prompts.solve(task_type, triple), _envelope(role, answer))


def run_warmup(policy: Policy, client: Client, config: TrainConfig, rng: random.Random
               ) -> dict[str, Any]:
    """Fit the policy on the corpus; returns a summary (loss before/after, time)."""
    warm = config.warmup
    started = time.perf_counter()
    corpus = build_corpus(client, config, rng)
    tok = policy.tokenizer
    encoded = []
    for example in corpus:
        prompt_ids = tok.encode(example.prompt, add_special_tokens=False)
        completion_ids = tok.encode(example.completion, add_special_tokens=False)
        room = policy.max_positions - len(completion_ids)
        encoded.append((prompt_ids[-room:] + completion_ids, len(completion_ids)))
    model = policy.model
    # fp32 master weights when the model is narrower (the same reason as in the RL update).
    optimizer = build_optimizer(model, adamw_factory(warm.lr, 0.0))
    pad = int(tok.pad_token_id)
    losses: list[float] = []
    from tqdm.auto import tqdm

    bar = tqdm(total=warm.steps, desc="warm-up", unit="step", disable=not config.run.progress)
    model.train()
    try:
        for step in range(warm.steps):
            # Linear decay to 10% keeps the end of the warm-up from bouncing around.
            for param_group in optimizer.param_groups:
                param_group["lr"] = warm.lr * (1.0 - 0.9 * step / max(1, warm.steps - 1))
            batch = rng.sample(encoded, min(warm.batch_size, len(encoded)))
            tokens = sum(n for _, n in batch)
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for group in token_micro_batches([len(ids) for ids, _ in batch],
                                             config.optim.micro_batch_tokens,
                                             config.optim.micro_batch):
                packed = pack([batch[k] for k in group], pad)
                with autocast(policy.device, policy.param_dtype, policy.compute_dtype):
                    logprobs = completion_logprobs(model, packed)
                loss = -logprobs.sum() / tokens
                loss.backward()
                total += float(loss.detach())
            optimizer.clip_grad_norm(1.0)
            optimizer.step()
            losses.append(total)
            bar.update(1)
            bar.set_postfix(loss=f"{total:.3f}", refresh=False)
    finally:
        bar.close()
        optimizer.zero_grad(set_to_none=True)
        model.eval()
    head = losses[:max(1, len(losses) // 10)]
    tail = losses[-max(1, len(losses) // 10):]
    return {"examples": len(corpus), "steps": warm.steps,
            "loss_first": round(sum(head) / len(head), 4) if head else None,
            "loss_last": round(sum(tail) / len(tail), 4) if tail else None,
            "seconds": round(time.perf_counter() - started, 1)}
