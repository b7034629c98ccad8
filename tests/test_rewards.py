"""The paper's reward and advantage formulas, case by case (Absolute Zero, eqs. 4-6, 8)."""

from __future__ import annotations

import pytest

from azr_verify.client import AnswerState
from azr_verify.trainer_adapter.advantages import group_stats, task_relative_advantages
from azr_verify.trainer_adapter.rewards import (
    Outcome,
    Penalties,
    RewardValues,
    learnability,
    proposer_reward,
    solve_rate,
    solver_reward,
)

P = Penalties()
C, W, X = AnswerState.CORRECT, AnswerState.WRONG, AnswerState.INFRA_FAILURE  # X: infra


@pytest.mark.parametrize(("rate", "reward"), [
    (0.0, 0.0),          # nobody solves it: impossible, teaches nothing
    (1 / 8, 7 / 8),      # hard but learnable: the best kind
    (0.5, 0.5),
    (7 / 8, 1 / 8),
    (1.0, 0.0),          # everybody solves it: trivial, teaches nothing
])
def test_proposer_learnability_reward(rate: float, reward: float) -> None:
    assert learnability(rate) == pytest.approx(reward)


def test_learnability_rejects_impossible_rates() -> None:
    with pytest.raises(ValueError):
        learnability(1.5)


def test_solve_rate_from_n_rollouts() -> None:
    assert solve_rate([W] * 8) == 0.0
    assert solve_rate([C] + [W] * 7) == 1 / 8
    assert solve_rate([C] * 8) == 1.0
    # A malformed rollout (None) is a failed solve; an infra failure is not counted at all.
    assert solve_rate([C, None, X, X]) == 0.5
    assert solve_rate([X, X]) is None


@pytest.mark.parametrize(("rollouts", "reward"), [
    ([W] * 8, 0.0),
    ([C] + [W] * 7, 7 / 8),
    ([C] * 8, 0.0),
])
def test_proposer_reward_from_rollouts(rollouts: list[AnswerState], reward: float) -> None:
    rate = solve_rate(rollouts)
    assert proposer_reward(Outcome.PASSABLE, rate, P) == pytest.approx(reward)


def test_proposer_format_penalties() -> None:
    assert proposer_reward(Outcome.MALFORMED, None, P) == -1.0
    assert proposer_reward(Outcome.WRONG, None, P) == -0.5  # well-formed, rejected
    assert proposer_reward(Outcome.EXCLUDED, None, P) is None  # sandbox_error: no score
    assert proposer_reward(Outcome.PASSABLE, None, P) is None  # rollouts all unjudged


@pytest.mark.parametrize(("outcome", "rate", "paper", "released"), [
    (Outcome.PASSABLE, 0.5, 0.5, 0.5),      # learnable: 1 - s under both
    (Outcome.PASSABLE, 1.0, 0.0, -0.5),     # trivial: the released code pays -0.5
    (Outcome.PASSABLE, 0.0, 0.0, -0.5),     # impossible: idem
    (Outcome.WRONG, None, -0.5, -1.0),      # invalid: -1 in the released code
    (Outcome.MALFORMED, None, -1.0, -1.0),
    (Outcome.EXCLUDED, None, None, None),   # sandbox_error: never scored
])
def test_released_reward_values_beside_the_papers(outcome: Outcome, rate: float | None,
                                                  paper: float | None,
                                                  released: float | None) -> None:
    assert proposer_reward(outcome, rate, P) == paper
    assert proposer_reward(outcome, rate, Penalties(values=RewardValues.RELEASED)) == released


def test_solver_rewards_are_the_same_under_both_values() -> None:
    released = Penalties(values=RewardValues.RELEASED)
    assert [solver_reward(a, released) for a in (C, W, None, X)] == [1.0, -0.5, -1.0, None]


def test_solver_reward_correct_wrong_malformed() -> None:
    assert solver_reward(C, P) == 1.0
    assert solver_reward(W, P) == -0.5
    assert solver_reward(None, P) == -1.0
    assert solver_reward(X, P) is None  # never a wrong answer


def test_penalties_are_configurable() -> None:
    custom = Penalties(wrong=0.0, malformed=-2.0)
    assert solver_reward(W, custom) == 0.0
    assert solver_reward(None, custom) == -2.0


def test_advantage_is_normalised_within_the_group() -> None:
    adv = task_relative_advantages(["d/solve"] * 4, [1.0, -0.5, -0.5, -1.0])
    mean, std = -0.25, 0.75  # population std: sqrt((1.25^2 + 0.25^2 + 0.25^2 + 0.75^2) / 4)
    assert adv == pytest.approx([(r - mean) / std for r in (1.0, -0.5, -0.5, -1.0)], abs=1e-5)
    assert sum(adv) == pytest.approx(0.0, abs=1e-9)


def test_six_baselines_are_kept_apart() -> None:
    groups = [f"{t}/{r}" for t in ("deduction", "abduction", "induction")
              for r in ("propose", "solve")]
    rewards_a = {g: [0.0, 1.0] for g in groups}
    base = task_relative_advantages(
        [g for g in groups for _ in range(2)], [r for g in groups for r in rewards_a[g]])
    # Change every other group's rewards wildly: deduction/solve's advantages must not move.
    rewards_b = {g: ([0.0, 1.0] if g == "deduction/solve" else [-1.0, 0.875])
                 for g in groups}
    moved = task_relative_advantages(
        [g for g in groups for _ in range(2)], [r for g in groups for r in rewards_b[g]])
    k = groups.index("deduction/solve") * 2
    assert moved[k:k + 2] == base[k:k + 2] == pytest.approx([-1.0, 1.0], abs=1e-5)
    assert len(group_stats([g for g in groups for _ in range(2)],
                           [0.0] * 12)) == 6


def test_same_reward_different_group_different_advantage() -> None:
    groups = ["deduction/propose", "deduction/propose", "deduction/solve", "deduction/solve"]
    adv = task_relative_advantages(groups, [0.5, 0.0, 0.5, 1.0])
    # 0.5 is the best proposer reward but the worst solver reward in this batch.
    assert adv[0] > 0 > adv[2]


def test_constant_group_has_zero_advantage() -> None:
    assert task_relative_advantages(["a", "a", "b"], [-1.0, -1.0, 3.0]) == [0.0, 0.0, 0.0]
