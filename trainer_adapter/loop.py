"""One AZR step (docs/design.md §7): propose -> validate -> learnability -> solve -> verify ->
rewards -> Task-Relative REINFORCE++ -> update -> sync rollout weights.

This module orchestrates; each stage's logic lives in its own module (prompts, parsing,
validation, rewards, advantages, policy).
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from azr_verify.client import AnswerState, TaskType, extract_solver_answer

from . import prompts
from .advantages import task_relative_advantages
from .buffers import Buffers
from .config import TrainConfig
from .metrics import Timer, rate, summarize
from .model import Policy
from .parsing import parse_induction_proposal, parse_triple_proposal
from .policy import TrainSample, UpdateStats, policy_update
from .rewards import Outcome, Penalties, proposer_reward, solve_rate, solver_reward
from .rollout import Generation, GenerationRequest, RolloutEngine, Stage
from .tasks import Role, Task, group_key
from .validation import AnswerCandidate, ProposalCandidate, ProposalCheck, Verifier


@dataclass
class Sample:
    """One trainable completion and its reward (None: excluded, the verifier failed)."""

    task_type: TaskType
    role: Role
    generation: Generation
    reward: float | None

    @property
    def group(self) -> str:
        return group_key(self.task_type, self.role)


@dataclass(frozen=True)
class _ProposeContext:
    task_type: TaskType
    base_program: str | None  # induction: the buffered program the inputs are for


class AzrTrainer:
    def __init__(self, config: TrainConfig, policy: Policy, engine: RolloutEngine,
                 verifier: Verifier, buffers: Buffers, optimizer: torch.optim.Optimizer,
                 rng: random.Random) -> None:
        self.config = config
        self.policy = policy
        self.engine = engine
        self.verifier = verifier
        self.buffers = buffers
        self.optimizer = optimizer
        self.rng = rng
        self.penalties = Penalties(config.rewards.wrong_penalty, config.rewards.format_penalty)

    # -- stages ------------------------------------------------------------------------

    def _propose_requests(self) -> tuple[list[GenerationRequest], list[_ProposeContext]]:
        azr = self.config.azr
        budget = self.config.rollout.max_new_tokens_propose
        requests, contexts = [], []
        for task_type in azr.task_types:
            for _ in range(azr.propose_batch):
                if task_type is TaskType.INDUCTION:
                    base = self.rng.choice(self.buffers.programs()).program
                    prompt = prompts.propose_induction(base, azr.induction_inputs)
                else:
                    refs = self.buffers.triples(task_type).sample(azr.references, self.rng)
                    prompt = prompts.propose_triple(task_type, refs)
                    base = None
                requests.append(GenerationRequest(prompt, Stage.PROPOSE, task_type, budget))
                contexts.append(_ProposeContext(task_type, base))
        return requests, contexts

    def _parse_proposal(self, ctx: _ProposeContext, gen: Generation
                        ) -> ProposalCandidate | None:
        if ctx.task_type is TaskType.INDUCTION:
            parsed = parse_induction_proposal(gen.text, self.config.azr.induction_inputs)
            if parsed is None:
                return None
            return ProposalCandidate(ctx.task_type, parsed, ctx.base_program)
        triple = parse_triple_proposal(gen.text)
        return None if triple is None else ProposalCandidate(ctx.task_type, triple)

    def _solve(self, tasks: Sequence[tuple[TaskType, Task]], stage: Stage, timer: Timer,
               meta: dict[str, Any]) -> tuple[list[Generation], list[AnswerState | None]]:
        """Generate one answer per task and verify them all in one round trip."""
        budget = self.config.rollout.max_new_tokens_solve
        requests = [GenerationRequest(prompts.solve(tt, task), stage, tt, budget)
                    for tt, task in tasks]
        with timer("generation"):
            gens = self.engine.generate(requests) if requests else []
        candidates = [AnswerCandidate(tt, task, extract_solver_answer(tt, gen.text))
                      for (tt, task), gen in zip(tasks, gens, strict=True)]
        with timer("verification"):
            states = self.verifier.answers(candidates, {**meta, "stage": stage.value,
                                                        "role": Role.SOLVE.value})
        return gens, states

    # -- the step ----------------------------------------------------------------------

    def step(self, step: int) -> dict[str, Any]:
        started = time.perf_counter()
        timer = Timer()
        self.verifier.verdicts.clear()
        meta = {"step": step}
        azr = self.config.azr
        samples: list[Sample] = []

        # 1. Propose, and validate the proposals with the service.
        requests, contexts = self._propose_requests()
        with timer("generation"):
            gens = self.engine.generate(requests)
        candidates = [self._parse_proposal(c, g) for c, g in zip(contexts, gens, strict=True)]
        with timer("verification"):
            checks = self.verifier.proposals(
                candidates, {**meta, "stage": Stage.PROPOSE.value, "role": Role.PROPOSE.value})

        # 2. Learnability: n solver rollouts on every valid proposal.
        valid = [(k, check) for k, check in enumerate(checks)
                 if check is not None and check.outcome is Outcome.PASSABLE]
        rollouts = [(contexts[k].task_type, check.task) for k, check in valid
                    for _ in range(azr.learnability_rollouts)]
        _, states = self._solve([(tt, t) for tt, t in rollouts if t is not None],
                                Stage.LEARNABILITY, timer, meta)
        n = azr.learnability_rollouts
        rates = {k: solve_rate(states[j * n:(j + 1) * n]) for j, (k, _) in enumerate(valid)}

        # 3. Proposer rewards; valid tasks join the buffers.
        new_tasks: dict[str, int] = defaultdict(int)
        for k, (ctx, gen, check) in enumerate(zip(contexts, gens, checks, strict=True)):
            outcome = Outcome.MALFORMED if check is None else check.outcome
            reward = proposer_reward(outcome, rates.get(k), self.penalties)
            samples.append(Sample(ctx.task_type, Role.PROPOSE, gen, reward))
            if check is not None and check.task is not None:
                new_tasks[ctx.task_type.value] += self.buffers.add(ctx.task_type, check.task)

        # 4. Solve a batch of buffered tasks per task type.
        solve_tasks = [(tt, task) for tt in azr.task_types
                       for task in self.buffers.solver_tasks(tt, azr.solve_batch, self.rng)]
        solve_gens, solve_states = self._solve(solve_tasks, Stage.SOLVE, timer, meta)
        for (tt, _), gen, state in zip(solve_tasks, solve_gens, solve_states, strict=True):
            samples.append(Sample(tt, Role.SOLVE, gen, solver_reward(state, self.penalties)))

        # 5. Task-Relative REINFORCE++ and the policy update.
        judged = [s for s in samples if s.reward is not None]
        advantages = task_relative_advantages([s.group for s in judged],
                                              [float(s.reward or 0.0) for s in judged])
        with timer("update"):
            stats = policy_update(
                self.policy.model, self.optimizer,
                [TrainSample(s.generation.prompt_ids, s.generation.completion_ids, a)
                 for s, a in zip(judged, advantages, strict=True)],
                self.config.optim, pad_id=int(self.policy.tokenizer.pad_token_id),
                device=self.policy.device, max_len=self.policy.max_positions)
            self.engine.sync_weights(self.policy.model)

        return self._record(step, samples, judged, advantages, checks, contexts, rates,
                            solve_tasks, solve_states, new_tasks, stats, timer,
                            time.perf_counter() - started)

    # -- metrics -----------------------------------------------------------------------

    def _record(self, step: int, samples: Sequence[Sample], judged: Sequence[Sample],
                advantages: Sequence[float], checks: Sequence[ProposalCheck | None],
                contexts: Sequence[_ProposeContext], rates: dict[int, float | None],
                solve_tasks: Sequence[tuple[TaskType, Task]],
                solve_states: Sequence[AnswerState | None], new_tasks: dict[str, int],
                stats: UpdateStats, timer: Timer, total_s: float) -> dict[str, Any]:
        rewards: dict[str, list[float]] = defaultdict(list)
        advs: dict[str, list[float]] = defaultdict(list)
        for sample, adv in zip(judged, advantages, strict=True):
            rewards[sample.group].append(float(sample.reward or 0.0))
            advs[sample.group].append(adv)
        valid_rate, malformed_rate, solve, learn = {}, {}, {}, {}
        for tt in self.config.azr.task_types:
            mine = [c for c, ctx in zip(checks, contexts, strict=True) if ctx.task_type is tt]
            judged_props = [c for c in mine if c is None or c.outcome is not Outcome.EXCLUDED]
            valid_rate[tt.value] = rate(
                sum(c is not None and c.outcome is Outcome.PASSABLE for c in judged_props),
                len(judged_props))
            malformed_rate[tt.value] = rate(sum(c is None for c in mine), len(mine))
            answered = [s for (t, _), s in zip(solve_tasks, solve_states, strict=True)
                        if t is tt and s is not AnswerState.INFRA_FAILURE]
            solve[tt.value] = rate(sum(s is AnswerState.CORRECT for s in answered),
                                   len(answered))
            mine_rates = [r for k, r in rates.items()
                          if contexts[k].task_type is tt and r is not None]
            learn[tt.value] = sum(mine_rates) / len(mine_rates) if mine_rates else None
        return {
            "step": step,
            "reward": {g: summarize(v) for g, v in sorted(rewards.items())},
            "advantage": {g: summarize(v) for g, v in sorted(advs.items())},
            "valid_proposal_rate": valid_rate,
            "malformed_proposal_rate": malformed_rate,
            "solve_rate": solve,
            "learnability_solve_rate": learn,
            "new_tasks": dict(new_tasks),
            "buffer_size": self.buffers.sizes(),
            "verdicts": dict(sorted(self.verifier.verdicts.items())),
            "samples": {"total": len(samples), "excluded": len(samples) - len(judged),
                        "trained": stats.samples},
            "update": {"loss": stats.loss, "grad_norm": stats.grad_norm,
                       "clip_fraction": stats.clip_fraction, "tokens": stats.tokens},
            "time": {**timer.as_dict(), "total_s": round(total_s, 4)},
        }
