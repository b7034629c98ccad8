"""`azr-verify bench --workload azr-step`: an AZR training step's verification, side by side.

Each measured step is generated from `--seed` (workload.py) and run by every side in turn, the
order rotating from step to step so a burst of load elsewhere hits all of them:

- azr-verify through the trainer's own verifier (`trainer_adapter.validation.Verifier`, the
  client's AZR helpers): one request stage by stage, exactly what `azr-verify train` sends,
  against an `azr-verify serve` subprocess started for the run;
- the same with the naive helpers (`--naive-helpers`): deduction answers executed, every
  answer at the service's default determinism runs, nothing reused: the before of item 2;
- the reference executor in one unsandboxed worker process (reference.py): the baseline.

Every service side gets its own salt, so no side and no run is a cache hit of another. Seconds
are the verification stages only (what the trainer waits for); executions, items and cache
hits come from the service's /metrics.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, median
from typing import Protocol

import httpx

from azr_verify.client import AnswerOutcome, Client, ClientConfig, TaskType, Verdict
from azr_verify.service.azr_step.reference import (
    InputPredictionJob,
    Job,
    OutputPredictionJob,
    ProposalJob,
    ProposalResult,
    ReferenceExecutor,
    Score,
    banned,
)
from azr_verify.service.azr_step.workload import (
    PlannedAnswer,
    PlannedProposal,
    ProposalKind,
    StepShape,
    StepWorkload,
    generate_step,
)
from azr_verify.service.bench.served import ServiceCounters, read_counters, served_api
from azr_verify.service.config import Settings
from azr_verify.trainer_adapter.parsing import InductionProposal, TripleProposal
from azr_verify.trainer_adapter.rewards import Outcome
from azr_verify.trainer_adapter.tasks import Task
from azr_verify.trainer_adapter.validation import (
    AnswerCandidate,
    ProposalCandidate,
    ProposalCheck,
    Verifier,
)

STAGES = ("propose", "learnability", "solve")
WARM_UP_SHAPE = StepShape(proposals_per_type=12, induction_inputs=10, rollouts=2,
                          solver_answers_per_type=12)
POLICY = "azr"

Progress = Callable[[str], None]


@dataclass
class StepRun:
    seconds: dict[str, float] = field(default_factory=dict)
    executions: int = 0
    stage_executions: dict[str, int] = field(default_factory=dict)
    items: int | None = None
    cache_hits: int | None = None
    mismatches: Counter[str] = field(default_factory=Counter)

    @property
    def total_s(self) -> float:
        return sum(self.seconds.values())


class Side(Protocol):
    name: str
    tag: str  # the salt suffix of this side's programs

    def run(self, workload: StepWorkload, progress: Progress) -> StepRun: ...


# -- azr-verify, through the trainer's verifier ------------------------------------------------


def proposal_candidate(planned: PlannedProposal) -> ProposalCandidate | None:
    """What the trainer's parser makes of the proposer's response (None: malformed)."""
    if planned.kind is ProposalKind.MALFORMED:
        return None
    if planned.task_type is TaskType.INDUCTION:
        return ProposalCandidate(planned.task_type,
                                 InductionProposal(planned.inputs, planned.message),
                                 planned.program)
    return ProposalCandidate(planned.task_type,
                             TripleProposal(planned.program, planned.inputs[0]))


def _proposal_mismatch(planned: PlannedProposal, check: ProposalCheck | None) -> str | None:
    if check is None or not planned.sent:
        return None if (check is None) == (planned.kind is ProposalKind.MALFORMED) \
            else f"proposal {planned.kind.value}: parsed differently"
    valid = check.outcome is Outcome.PASSABLE
    if valid != planned.valid or (not valid and check.reason != planned.verdict):
        got = "valid" if valid else (check.reason.value if check.reason else check.detail)
        return f"proposal {planned.kind.value}: got {got}"
    return None


def _answer_mismatch(planned: PlannedAnswer, outcome: AnswerOutcome | None) -> str | None:
    if outcome is None or planned.text is None:
        return None if (outcome is None) == (planned.text is None) \
            else f"answer {planned.kind.value}: sent or not sent against the plan"
    first = next((v for v in outcome.verdicts if v is not Verdict.ACCEPTED), Verdict.ACCEPTED)
    if outcome.correct != planned.correct or first != planned.verdict:
        return f"answer {planned.kind.value}: got {first.value}, planned " \
               f"{planned.verdict.value if planned.verdict else None}"
    return None


@dataclass
class ServiceSide:
    name: str
    tag: str
    verifier: Verifier
    http: httpx.Client  # for /metrics

    def run(self, workload: StepWorkload, progress: Progress) -> StepRun:
        result = StepRun()
        before = read_counters(self.http)
        meta = {"step": workload.step, "workload": "azr-step"}
        plan = workload.proposals

        started = time.perf_counter()
        checks = self.verifier.proposals([proposal_candidate(p) for p in plan],
                                         {**meta, "stage": "propose"})
        result.seconds["propose"] = time.perf_counter() - started
        self._count(result, "propose", before)
        progress(f"propose: {len(plan)} proposals in {result.seconds['propose']:.2f}s")
        tasks: dict[int, Task] = {}
        for k, (planned, check) in enumerate(zip(plan, checks, strict=True)):
            wrong = _proposal_mismatch(planned, check)
            if wrong:
                result.mismatches[wrong] += 1
            if planned.valid and check is not None and check.task is not None \
                    and check.outcome is Outcome.PASSABLE:
                tasks[k] = check.task

        learn = [(a, AnswerCandidate(plan[k].task_type, task, a.text))
                 for k, task in tasks.items() for a in plan[k].rollouts]
        self._answers(result, "learnability", learn, meta, progress)
        self._count(result, "learnability", before)
        solve = [(s.answer, AnswerCandidate(plan[s.proposal].task_type, tasks[s.proposal],
                                            s.answer.text))
                 for s in workload.solver if s.proposal in tasks]
        self._answers(result, "solve", solve, meta, progress)
        self._count(result, "solve", before)

        spent = read_counters(self.http) - before
        result.executions, result.items, result.cache_hits = \
            spent.executions, spent.items, spent.cache_hits
        return result

    def _count(self, result: StepRun, stage: str, before: ServiceCounters) -> None:
        """Executions of `stage`: the counter's growth since the earlier stages."""
        spent = read_counters(self.http) - before
        result.stage_executions[stage] = spent.executions - sum(result.stage_executions.values())

    def _answers(self, result: StepRun, stage: str,
                 answers: Sequence[tuple[PlannedAnswer, AnswerCandidate]],
                 meta: dict[str, object], progress: Progress) -> None:
        started = time.perf_counter()
        outcomes = self.verifier.answers([c for _, c in answers], {**meta, "stage": stage})
        result.seconds[stage] = time.perf_counter() - started
        progress(f"{stage}: {len(answers)} answers in {result.seconds[stage]:.2f}s")
        for (planned, _), outcome in zip(answers, outcomes, strict=True):
            wrong = _answer_mismatch(planned, outcome)
            if wrong:
                result.mismatches[wrong] += 1


# -- the reference executor --------------------------------------------------------------------


@dataclass
class ReferenceSide:
    name: str
    executor: ReferenceExecutor
    tag: str = "reference"

    def run(self, workload: StepWorkload, progress: Progress) -> StepRun:
        result = StepRun()
        plan = workload.proposals

        started = time.perf_counter()
        golds: dict[int, tuple[str, ...]] = {}
        for k, planned in enumerate(plan):
            outputs = self._validate(result, planned)
            if outputs is not None and not planned.valid:
                result.mismatches[f"reference accepts a proposal azr-verify rejects "
                                  f"({planned.kind.value})"] += 1
            if outputs is not None and planned.valid:
                golds[k] = outputs
        result.seconds["propose"] = time.perf_counter() - started
        result.stage_executions["propose"] = result.executions
        progress(f"propose: {len(plan)} proposals in {result.seconds['propose']:.2f}s")

        learn = [(k, a) for k in golds for a in plan[k].rollouts]
        self._answers(result, "learnability", workload, golds, learn, progress, dedupe=True)
        solve = [(s.proposal, s.answer) for s in workload.solver if s.proposal in golds]
        self._answers(result, "solve", workload, golds, solve, progress, dedupe=False)
        return result

    def _validate(self, result: StepRun, planned: PlannedProposal) -> tuple[str, ...] | None:
        """The gold outputs, or None when the reference finds the proposal invalid: input by
        input, stopping at the first failure."""
        repeated = len(set(planned.inputs)) < len(planned.inputs)
        if planned.kind is ProposalKind.MALFORMED or repeated or banned(planned.program):
            return None
        outputs = []
        for text in planned.inputs:
            [checked] = self._run(result, [ProposalJob(planned.program, text)])
            if not (isinstance(checked, ProposalResult) and checked.valid):
                return None
            outputs.append(checked.output)
        return tuple(outputs)

    def _run(self, result: StepRun, jobs: Sequence[Job]) -> list[ProposalResult | Score]:
        done = self.executor.run_all(jobs)
        result.executions += sum(r.runs for r in done)
        return done

    def _answers(self, result: StepRun, stage: str, workload: StepWorkload,
                 golds: dict[int, tuple[str, ...]],
                 answers: Sequence[tuple[int, PlannedAnswer]], progress: Progress,
                 dedupe: bool) -> None:
        """The reference's reward loop: per answer, its template(s); the learnability stage
        scores a task's repeated deduction/abduction answer once (its `answer_cache`)."""
        started = time.perf_counter()
        jobs: list[Job] = []
        spans: dict[tuple[int, str], tuple[int, int]] = {}
        owned: list[tuple[PlannedAnswer, tuple[int, int] | None]] = []
        for k, planned in answers:
            proposal = workload.proposals[k]
            if planned.text is None:
                owned.append((planned, None))
                continue
            key = (k, planned.text)
            if dedupe and proposal.task_type is not TaskType.INDUCTION and key in spans:
                owned.append((planned, spans[key]))
                continue
            start = len(jobs)
            jobs += _answer_jobs(proposal, golds[k], planned.text)
            spans[key] = (start, len(jobs))
            owned.append((planned, spans[key]))
        scores = self._run(result, jobs)
        for planned, span in owned:
            if span is None:
                continue
            correct = all(isinstance(s, Score) and s.correct for s in scores[span[0]:span[1]])
            if correct != planned.correct:
                result.mismatches["reference scores an answer differently"] += 1
        result.seconds[stage] = time.perf_counter() - started
        result.stage_executions[stage] = \
            result.executions - sum(result.stage_executions.values())
        progress(f"{stage}: {len(answers)} answers in {result.seconds[stage]:.2f}s")


def _answer_jobs(proposal: PlannedProposal, golds: tuple[str, ...], answer: str) -> list[Job]:
    if proposal.task_type is TaskType.DEDUCTION:
        return [OutputPredictionJob(proposal.program, golds[0], answer)]
    if proposal.task_type is TaskType.ABDUCTION:
        return [InputPredictionJob(proposal.program, golds[0], answer)]
    pairs = list(zip(proposal.inputs, golds, strict=True))
    return [InputPredictionJob(answer, out, inp) for inp, out in pairs[len(pairs) // 2:]]


# -- the run -----------------------------------------------------------------------------------


@dataclass
class SideTotals:
    name: str
    runs: list[StepRun] = field(default_factory=list)

    def mean(self, value: Callable[[StepRun], float | None]) -> float | None:
        values = [v for v in (value(r) for r in self.runs) if v is not None]
        return mean(values) if values else None

    def median(self, value: Callable[[StepRun], float | None]) -> float | None:
        values = [v for v in (value(r) for r in self.runs) if v is not None]
        return median(values) if values else None


def run_azr_step_bench(settings: Settings, steps: int = 3, seed: int = 0,
                       naive_helpers: bool = False, shape: StepShape | None = None,
                       progress: Progress | None = None) -> str:
    """Runs `steps` steps on every side (after a small warm-up step) and returns the table."""
    shape = shape or StepShape()
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    salt = secrets.token_hex(4)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="azr-step-bench-") as tmp:
        logs = Path(tmp)
        embedded = settings.model_copy(update={"redis_url": None, "data_dir": logs / "data"})
        with served_api(embedded, logs) as url, \
                Client(config=ClientConfig(base_url=url, timeout_s=600.0)) as client, \
                httpx.Client(base_url=url, timeout=60) as http, \
                ReferenceExecutor() as reference:
            sides: list[Side] = [ServiceSide("azr-verify, AZR helpers", "helpers",
                                             Verifier(client, POLICY), http)]
            if naive_helpers:
                sides.append(ServiceSide("azr-verify, naive helpers", "naive",
                                         Verifier.naive(client, POLICY), http))
            sides.append(ReferenceSide("reference executor, in process (baseline)", reference))
            totals = {side.name: SideTotals(side.name) for side in sides}
            for side in sides:
                say(f"warm-up: {side.name}")
                side.run(generate_step(seed, 0, f"{salt}-{side.tag}", WARM_UP_SHAPE),
                         lambda line: None)
            for step in range(1, steps + 1):
                order = sides[step % len(sides):] + sides[:step % len(sides)]
                for side in order:
                    workload = generate_step(seed, step, f"{salt}-{side.tag}", shape)

                    run = side.run(workload, _prefixed(say, f"step {step}/{steps} {side.name}"))
                    totals[side.name].runs.append(run)
                    say(f"step {step}/{steps} {side.name}: {run.total_s:.2f}s, "
                        f"{run.executions} executions")
    header = (f"AZR step x{steps}: seed {seed}, salt {salt}; per step "
              f"{shape.proposals_per_type} proposals per task type (induction: "
              f"{shape.induction_inputs} inputs), {shape.rollouts} learnability rollouts per "
              f"valid proposal, {shape.solver_answers_per_type} solver answers per type\n"
              f"service: backend={settings.sandbox.value} zygotes={settings.workers} "
              f"determinism_seeds={settings.determinism_seeds}; cpus={os.cpu_count()}; load "
              f"average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    return header + "\n" + format_table(list(totals.values()))


def _prefixed(say: Progress, prefix: str) -> Progress:
    return lambda line: say(f"{prefix}: {line}")


def format_table(sides: Sequence[SideTotals]) -> str:
    """Seconds per step (verification only) and executions per step, per side; the last side
    is the baseline."""
    baseline = sides[-1]
    base_median = baseline.median(lambda r: r.total_s) or 0.0
    base_best = min(r.total_s for r in baseline.runs)
    width = max(len(side.name) for side in sides) + 2
    lines = [f"{'seconds per step':<{width}} {'median':>6} {'best':>6} {'propose':>8} "
             f"{'learn':>6} {'solve':>6} {'time / baseline: median':>24} {'best':>5}"]
    for side in sides:
        total = side.median(lambda r: r.total_s) or 0.0
        best = min(r.total_s for r in side.runs)
        stages = [side.median(_stage_seconds(stage)) or 0.0 for stage in STAGES]
        ratio = f"{total / base_median:.2f}" if base_median else ""
        best_ratio = f"{best / base_best:.2f}" if base_best else ""
        lines.append(f"{side.name:<{width}} {total:>6.2f} {best:>6.2f} {stages[0]:>8.2f} "
                     f"{stages[1]:>6.2f} {stages[2]:>6.2f} {ratio:>24} {best_ratio:>5}")
    lines.append("")
    lines.append(f"{'per step':<{width}} {'items':>6} {'executions':>10} {'propose':>8} "
                 f"{'learn':>6} {'solve':>6} {'cache hits':>10}")
    for side in sides:
        stages_x = [_count(side.mean(_stage_executions(stage))) for stage in STAGES]
        lines.append(f"{side.name:<{width}} {_count(side.mean(lambda r: r.items)):>6} "
                     f"{_count(side.mean(lambda r: r.executions)):>10} {stages_x[0]:>8} "
                     f"{stages_x[1]:>6} {stages_x[2]:>6} "
                     f"{_count(side.mean(lambda r: r.cache_hits)):>10}")
    lines.append("")
    for side in sides:
        mismatches: Counter[str] = Counter()
        for run in side.runs:
            mismatches.update(run.mismatches)
        if mismatches:
            what = "; ".join(f"{text} x{count}" for text, count in sorted(mismatches.items()))
            lines.append(f"{side.name}: differs from the plan: {what}")
        else:
            lines.append(f"{side.name}: every verdict as planned")
    lines.append("(seconds: the verification stages only, median and best over the steps, "
                 "stages by median; items, executions and cache hits: means per step, from the "
                 "service's /metrics; the baseline's executions are its calls of a program)")
    return "\n".join(lines)


def _stage_seconds(stage: str) -> Callable[[StepRun], float | None]:
    return lambda run: run.seconds.get(stage)


def _stage_executions(stage: str) -> Callable[[StepRun], float | None]:
    return lambda run: run.stage_executions.get(stage)


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"

