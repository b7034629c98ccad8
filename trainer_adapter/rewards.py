"""Rewards exactly as Absolute Zero defines them (Zhao et al. 2025, eqs. 4-6).

- proposer: r_propose = 1 - s if 0 < s < 1 else 0, where s is the mean solve rate of n
  solver rollouts on the proposed task (too easy or impossible tasks teach nothing);
- solver: r_solve = 1 if the answer is correct else 0;
- composite: the role reward when the response is passable (a valid proposal, a correct
  answer), -0.5 when well-formed but wrong (invalid proposal, wrong answer), -1 when the
  format is broken.

`RewardValues.RELEASED` gives the values of the authors' released code instead
(absolute_zero_reasoner/rewards/reward_managers.py): a *valid* proposal whose learnability is 0
(solved by all or none of the rollouts) gets the wrong-answer penalty -0.5 instead of 0, and an
*invalid* proposal (rejected by the executor) gets -1 like a malformed one. Solver rewards are
the same under both.

A sample the verifier could not judge (`sandbox_error`) gets no reward at all (None) and is
left out of baselines and the update: infrastructure failures are never model failures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from azr_verify.client import AnswerState


class Outcome(StrEnum):
    PASSABLE = "passable"
    WRONG = "wrong"
    MALFORMED = "malformed"
    EXCLUDED = "excluded"  # the verifier failed; nothing to learn from


class RewardValues(StrEnum):
    PAPER = "paper"
    RELEASED = "released"


@dataclass(frozen=True)
class Penalties:
    wrong: float = -0.5
    malformed: float = -1.0
    values: RewardValues = RewardValues.PAPER


def learnability(solve_rate: float) -> float:
    """r_propose: 1 - s for 0 < s < 1, else 0."""
    if not 0.0 <= solve_rate <= 1.0:
        raise ValueError(f"solve rate must be in [0, 1], got {solve_rate}")
    return 1.0 - solve_rate if 0.0 < solve_rate < 1.0 else 0.0


def solve_rate(answers: Sequence[AnswerState | None]) -> float | None:
    """Mean accuracy of rollouts; malformed (None) counts as 0, infra failures are
    dropped. None when no rollout could be judged."""
    judged = [a for a in answers if a is not AnswerState.INFRA_FAILURE]
    if not judged:
        return None
    return sum(a is AnswerState.CORRECT for a in judged) / len(judged)


def composite(outcome: Outcome, role_reward: float, penalties: Penalties) -> float | None:
    if outcome is Outcome.PASSABLE:
        return role_reward
    if outcome is Outcome.WRONG:
        return penalties.wrong
    if outcome is Outcome.MALFORMED:
        return penalties.malformed
    return None


def solver_outcome(answer: AnswerState | None) -> Outcome:
    if answer is None:
        return Outcome.MALFORMED
    if answer is AnswerState.INFRA_FAILURE:
        return Outcome.EXCLUDED
    return Outcome.PASSABLE if answer is AnswerState.CORRECT else Outcome.WRONG


def solver_reward(answer: AnswerState | None, penalties: Penalties) -> float | None:
    """1 correct, -0.5 well-formed but wrong, -1 malformed, None when not judged."""
    return composite(solver_outcome(answer), 1.0, penalties)


def proposer_reward(outcome: Outcome, rate: float | None, penalties: Penalties
                    ) -> float | None:
    """Valid proposal -> learnability of its solve rate; invalid -> -0.5; malformed -> -1.
    A valid proposal whose rollouts could not be judged is excluded. (Released values: a
    learnability of 0 -> -0.5, invalid -> -1.)"""
    released = penalties.values is RewardValues.RELEASED
    if outcome is Outcome.PASSABLE:
        if rate is None:
            return None
        reward = learnability(rate)
        return penalties.wrong if released and reward == 0.0 else reward
    if outcome is Outcome.WRONG and released:
        return penalties.malformed
    return composite(outcome, 0.0, penalties)
