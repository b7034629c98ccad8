"""The AZR loop (docs/design.md §7).

Before training, the **seeding stage** proposes (without updates) until each buffer holds
`propose_batch x seed_batch_factor` valid tasks, as the reference does. Each step then runs,
for every task type: propose -> validate -> learnability (n solver rollouts per valid
proposal) -> solve a batch of buffered tasks (recent first) -> verify -> rewards ->
Task-Relative REINFORCE++ -> mini-batch updates -> weight push to the rollout engine.

This module orchestrates; each stage's logic lives in its own module (prompts, parsing,
validation, rewards, advantages, policy). Every completion is logged (`sample_log`).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from azr_verify.client import AnswerOutcome, AnswerState, TaskType, extract_solver_answer

from . import prompts
from .advantages import task_relative_advantages
from .buffers import Buffers
from .config import TrainConfig
from .metrics import Timer, rate, summarize
from .model import Policy
from .parsing import (
    InductionProposal,
    TripleProposal,
    parse_induction_proposal,
    parse_triple_proposal,
)
from .policy import TrainSample, UpdateContext, UpdateStats, policy_update
from .precision import TrainOptimizer
from .rewards import (
    Outcome,
    Penalties,
    RewardValues,
    proposer_reward,
    solve_rate,
    solver_outcome,
    solver_reward,
)
from .rollout import Generation, GenerationRequest, RolloutEngine, Stage
from .sample_log import SampleLog
from .tasks import Role, Task, group_key
from .validation import AnswerCandidate, ProposalCandidate, ProposalCheck, Verifier


@dataclass
class Sample:
    """One trainable completion, its reward (None: excluded, the verifier failed) and what
    the sample log says about it."""

    task_type: TaskType
    role: Role
    generation: Generation
    reward: float | None
    log: dict[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> str:
        return group_key(self.task_type, self.role)


@dataclass(frozen=True)
class Proposal:
    """One proposer completion through parsing and validation."""

    task_type: TaskType
    generation: Generation
    parsed: TripleProposal | InductionProposal | None
    check: ProposalCheck | None  # None: malformed
    base_program: str | None = None
    prompt: str = ""

    @property
    def outcome(self) -> Outcome:
        return Outcome.MALFORMED if self.check is None else self.check.outcome

    @property
    def task(self) -> Task | None:
        return None if self.check is None else self.check.task


def _task_json(task: Task) -> dict[str, Any]:
    return dataclasses.asdict(task)


def _parsed_json(parsed: TripleProposal | InductionProposal | None) -> Any:
    return None if parsed is None else dataclasses.asdict(parsed)


class AzrTrainer:
    def __init__(self, config: TrainConfig, policy: Policy, engine: RolloutEngine,
                 verifier: Verifier, buffers: Buffers, optimizer: TrainOptimizer,
                 rng: random.Random, sample_log: SampleLog | None = None) -> None:
        self.config = config
        self.policy = policy
        self.engine = engine
        self.verifier = verifier
        self.buffers = buffers
        self.optimizer = optimizer
        self.rng = rng
        self.sample_log = sample_log
        rewards = config.rewards
        self.penalties = Penalties(rewards.wrong_penalty, rewards.format_penalty,
                                   RewardValues(rewards.values))
        self.update_context = UpdateContext(
            policy.model, optimizer, pad_id=int(policy.tokenizer.pad_token_id),
            max_len=policy.max_positions, device=policy.device,
            param_dtype=policy.param_dtype, compute_dtype=policy.compute_dtype,
            temperature=config.rollout.temperature or 1.0)

    # -- propose and validate ----------------------------------------------------------

    def _propose_request(self, task_type: TaskType, stage: Stage
                         ) -> tuple[GenerationRequest, str | None]:
        azr = self.config.azr
        budget = self.config.rollout.max_new_tokens_propose
        if task_type is TaskType.INDUCTION:
            base = self.rng.choice(self.buffers.programs()).program
            prompt = prompts.propose_induction(base, azr.induction_inputs)
            return GenerationRequest(prompt, stage, task_type, budget), base
        refs = self.buffers.triples(task_type).sample(azr.references, self.rng)
        prompt = prompts.propose_triple(task_type, refs)
        return GenerationRequest(prompt, stage, task_type, budget), None

    def _parse(self, task_type: TaskType, gen: Generation
               ) -> TripleProposal | InductionProposal | None:
        if task_type is TaskType.INDUCTION:
            return parse_induction_proposal(gen.text, self.config.azr.induction_inputs)
        return parse_triple_proposal(gen.text)

    def _propose(self, task_types: Sequence[TaskType], count: int, stage: Stage, timer: Timer,
                 meta: dict[str, Any]) -> list[Proposal]:
        """`count` proposals per task type, generated and validated in one batch each."""
        requests, bases, types = [], [], []
        for task_type in task_types:
            for _ in range(count):
                request, base = self._propose_request(task_type, stage)
                requests.append(request)
                bases.append(base)
                types.append(task_type)
        with timer("generation"):
            gens = self.engine.generate(requests) if requests else []
        parsed = [self._parse(tt, g) for tt, g in zip(types, gens, strict=True)]
        candidates = [None if p is None else ProposalCandidate(tt, p, base)
                      for tt, p, base in zip(types, parsed, bases, strict=True)]
        with timer("verification"):
            checks = self.verifier.proposals(
                candidates, {**meta, "stage": stage.value, "role": Role.PROPOSE.value})
        return [Proposal(tt, g, p, c, base, r.prompt) for tt, g, p, c, base, r
                in zip(types, gens, parsed, checks, bases, requests, strict=True)]

    @staticmethod
    def _proposal_log(step: int, stage: str, proposal: Proposal) -> dict[str, Any]:
        check = proposal.check
        return {
            "step": step, "stage": stage, "task_type": proposal.task_type.value,
            "role": Role.PROPOSE.value, "completion": proposal.generation.text,
            "scripted": proposal.generation.scripted,
            "parsed": _parsed_json(proposal.parsed), "outcome": proposal.outcome.value,
            "verdicts": [] if check is None else [v.value for v in check.verdicts],
            "detail": None if check is None else check.detail,
            "base_program": proposal.base_program,
            "task": None if proposal.task is None else _task_json(proposal.task),
            "prompt": proposal.prompt,
        }

    # -- solve and verify --------------------------------------------------------------

    def _solve(self, tasks: Sequence[tuple[TaskType, Task]], stage: Stage, n: int,
               timer: Timer, meta: dict[str, Any]
               ) -> tuple[list[Generation], list[AnswerOutcome | None], list[str | None]]:
        """n answers per task (consecutive), all verified in one round trip."""
        budget = self.config.rollout.max_new_tokens_solve
        requests = [GenerationRequest(prompts.solve(tt, task), stage, tt, budget, n)
                    for tt, task in tasks]
        with timer("generation"):
            gens = self.engine.generate(requests) if requests else []
        owners = [tasks[k // n] for k in range(len(gens))]
        answers = [extract_solver_answer(tt, gen.text)
                   for (tt, _), gen in zip(owners, gens, strict=True)]
        candidates = [AnswerCandidate(tt, task, answer)
                      for (tt, task), answer in zip(owners, answers, strict=True)]
        with timer("verification"):
            outcomes = self.verifier.answers(candidates, {**meta, "stage": stage.value,
                                                          "role": Role.SOLVE.value})
        return gens, outcomes, answers

    @staticmethod
    def _answer_log(step: int, stage: str, task_type: TaskType, task: Task, gen: Generation,
                    answer: str | None, outcome: AnswerOutcome | None) -> dict[str, Any]:
        state = None if outcome is None else outcome.state
        return {
            "step": step, "stage": stage, "task_type": task_type.value,
            "role": Role.SOLVE.value, "completion": gen.text, "scripted": gen.scripted,
            "parsed": answer, "outcome": solver_outcome(state).value,
            "verdicts": [] if outcome is None else [v.value for v in outcome.verdicts],
            "detail": None if outcome is None else outcome.detail,
            "task": _task_json(task),
            "prompt": prompts.solve(task_type, task),
        }

    # -- seeding -----------------------------------------------------------------------

    def seed(self) -> dict[str, Any]:
        """Propose without training until every buffer holds `propose_batch x
        seed_batch_factor` tasks (or `seed_max_rounds` rounds have run). Deduction and
        abduction share the seed pool, as in the reference."""
        azr = self.config.azr
        target = azr.propose_batch * azr.seed_batch_factor
        timer = Timer()
        self.verifier.reset_counts()
        started = time.perf_counter()
        rounds = proposed = valid = 0
        triple_types = [t for t in azr.task_types if t is not TaskType.INDUCTION]

        def short(types: Sequence[TaskType]) -> list[TaskType]:
            return [t for t in types if len(self.buffers.buffer(t)) < target]

        while target and rounds < azr.seed_max_rounds:
            pending = short(triple_types)
            if not pending:
                pending = short([t for t in azr.task_types if t is TaskType.INDUCTION])
            if not pending:
                break
            rounds += 1
            meta = {"step": 0, "seed_round": rounds}
            results = self._propose(pending, azr.propose_batch, Stage.SEED, timer, meta)
            logs = []
            for proposal in results:
                proposed += 1
                task = proposal.task
                if task is not None:
                    valid += 1
                    if proposal.task_type is TaskType.INDUCTION:
                        self.buffers.add(TaskType.INDUCTION, task, 0)
                    else:
                        for tt in triple_types:
                            self.buffers.add(tt, task, 0)
                logs.append(self._proposal_log(0, Stage.SEED.value, proposal))
            if self.sample_log is not None:
                self.sample_log.write(logs)
        return {"target": target, "rounds": rounds, "proposed": proposed, "valid": valid,
                "buffer_size": self.buffers.sizes(),
                "verdicts": dict(sorted(self.verifier.verdicts.items())),
                "time": {**timer.as_dict(), "total_s": round(time.perf_counter() - started, 4)}}

    # -- the step ----------------------------------------------------------------------

    def step(self, step: int) -> dict[str, Any]:
        started = time.perf_counter()
        timer = Timer()
        self.verifier.reset_counts()
        meta = {"step": step}
        azr = self.config.azr
        samples: list[Sample] = []
        logs: list[dict[str, Any]] = []

        # 1. Propose, and validate the proposals with the service.
        proposals = self._propose(azr.task_types, azr.propose_batch, Stage.PROPOSE, timer,
                                  meta)

        # 2. Learnability: n solver rollouts (one request with n samples) per valid proposal.
        valid = [(k, p) for k, p in enumerate(proposals)
                 if p.check is not None and p.check.outcome is Outcome.PASSABLE
                 and p.task is not None]
        n = azr.learnability_rollouts
        tasks = [(p.task_type, p.task) for _, p in valid if p.task is not None]
        gens, outcomes, answers = self._solve(tasks, Stage.LEARNABILITY, n, timer, meta)
        rates: dict[int, float | None] = {}
        for j, (k, proposal) in enumerate(valid):
            mine = outcomes[j * n:(j + 1) * n]
            rates[k] = solve_rate([None if o is None else o.state for o in mine])
            assert proposal.task is not None
            for g in range(j * n, (j + 1) * n):
                logs.append(self._answer_log(step, Stage.LEARNABILITY.value,
                                             proposal.task_type, proposal.task, gens[g],
                                             answers[g], outcomes[g]))

        # 3. Proposer rewards; valid tasks join the buffers.
        new_tasks: dict[str, int] = defaultdict(int)
        for k, proposal in enumerate(proposals):
            reward = proposer_reward(proposal.outcome, rates.get(k), self.penalties)
            log = self._proposal_log(step, Stage.PROPOSE.value, proposal)
            log["solve_rate"] = rates.get(k)
            samples.append(Sample(proposal.task_type, Role.PROPOSE, proposal.generation,
                                  reward, log))
            if proposal.task is not None:
                new_tasks[proposal.task_type.value] += self.buffers.add(
                    proposal.task_type, proposal.task, step)

        # 4. Solve a batch of buffered tasks per task type (recent tasks first).
        since = (step - azr.recent_window + 1 if azr.solver_sampling == "recent_first"
                 else None)
        solve_tasks = [(tt, task) for tt in azr.task_types
                       for task in self.buffers.solver_tasks(tt, azr.solve_batch, self.rng,
                                                             recent_since=since)]
        solve_gens, solve_outcomes, solve_answers = self._solve(solve_tasks, Stage.SOLVE, 1,
                                                                timer, meta)
        for (tt, task), gen, outcome, answer in zip(solve_tasks, solve_gens, solve_outcomes,
                                                    solve_answers, strict=True):
            state = None if outcome is None else outcome.state
            samples.append(Sample(tt, Role.SOLVE, gen, solver_reward(state, self.penalties),
                                  self._answer_log(step, Stage.SOLVE.value, tt, task, gen,
                                                   answer, outcome)))

        # 5. Task-Relative REINFORCE++ and the policy update.
        judged = [s for s in samples if s.reward is not None]
        advantages = task_relative_advantages([s.group for s in judged],
                                              [float(s.reward or 0.0) for s in judged])
        for sample, advantage in zip(judged, advantages, strict=True):
            sample.log["advantage"] = advantage
        with timer("update"):
            self.engine.sleep()
            stats = policy_update(
                self.update_context,
                [TrainSample(s.generation.prompt_ids, s.generation.completion_ids, a)
                 for s, a in zip(judged, advantages, strict=True)],
                self.config.optim, self.rng)
        with timer("weight_sync"):
            # Weights first, then the KV cache: the two never peak together.
            self.engine.sync_weights(self.policy.model)
            self.engine.wake()

        if self.sample_log is not None:
            for sample in samples:
                sample.log["reward"] = sample.reward
            self.sample_log.write([*(s.log for s in samples[:len(proposals)]), *logs,
                                   *(s.log for s in samples[len(proposals):])])
        solve_states = [None if o is None else o.state for o in solve_outcomes]
        return self._record(step, samples, judged, advantages, proposals, rates, solve_tasks,
                            solve_states, new_tasks, stats, timer,
                            time.perf_counter() - started)

    # -- metrics -----------------------------------------------------------------------

    def _record(self, step: int, samples: Sequence[Sample], judged: Sequence[Sample],
                advantages: Sequence[float], proposals: Sequence[Proposal],
                rates: dict[int, float | None], solve_tasks: Sequence[tuple[TaskType, Task]],
                solve_states: Sequence[AnswerState | None], new_tasks: dict[str, int],
                stats: UpdateStats, timer: Timer, total_s: float) -> dict[str, Any]:
        rewards: dict[str, list[float]] = defaultdict(list)
        advs: dict[str, list[float]] = defaultdict(list)
        for sample, adv in zip(judged, advantages, strict=True):
            rewards[sample.group].append(float(sample.reward or 0.0))
            advs[sample.group].append(adv)
        valid_rate, malformed_rate, solve, learn = {}, {}, {}, {}
        for tt in self.config.azr.task_types:
            mine = [p for p in proposals if p.task_type is tt]
            judged_props = [p for p in mine if p.outcome is not Outcome.EXCLUDED]
            valid_rate[tt.value] = rate(sum(p.outcome is Outcome.PASSABLE
                                            for p in judged_props), len(judged_props))
            malformed_rate[tt.value] = rate(sum(p.outcome is Outcome.MALFORMED for p in mine),
                                            len(mine))
            answered = [s for (t, _), s in zip(solve_tasks, solve_states, strict=True)
                        if t is tt and s is not AnswerState.INFRA_FAILURE]
            solve[tt.value] = rate(sum(s is AnswerState.CORRECT for s in answered),
                                   len(answered))
            mine_rates = [r for k, r in rates.items()
                          if proposals[k].task_type is tt and r is not None]
            learn[tt.value] = sum(mine_rates) / len(mine_rates) if mine_rates else None
        outcomes = Counter(s.log.get("outcome", "") for s in samples)
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
            "verdicts_by_stage": {stage: dict(sorted(c.items()))
                                  for stage, c in sorted(self.verifier.by_stage.items())},
            "samples": {"total": len(samples), "excluded": len(samples) - len(judged),
                        "trained": stats.samples, "outcomes": dict(sorted(outcomes.items()))},
            "update": stats.as_dict(),
            "time": {**timer.as_dict(), "total_s": round(total_s, 4)},
        }
