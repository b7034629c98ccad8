"""A batched veRL reward: the whole batch of solver completions in one `/v1/check` request.

veRL's `BatchRewardManager` (`reward_model.reward_manager=batch`) calls

    compute_score(data_sources, solution_strs, ground_truths, extra_infos, **reward_kwargs)

once per batch and expects one score per sample (a number, or a dict with a `score` key whose
other keys veRL logs). Point it at this package's entry file:

    VERL_REWARD=$(python -c "import azr_verify.client.verl_reward as m; print(m.__file__)")
    reward_model.reward_manager=batch \\
    custom_reward_function.path=$VERL_REWARD \\
    custom_reward_function.name=compute_score_batch \\
    +custom_reward_function.reward_kwargs.on_sandbox_error=zero

Task data is read as in `rewards` (`ground_truth` mapping or JSON, `extra_info`, the task type
possibly in `data_source`). Scores: 1 correct, -0.5 wrong, -1 malformed (`RewardScheme`).

A `sandbox_error` is the verifier's failure and never raises here:
- `on_sandbox_error="zero"` (default): the sample scores 0.0, between a wrong and a correct
  answer, and `verifier_failed` is 1 in the details;
- `on_sandbox_error="skip"`: the sample scores None, for reward managers that drop unscored
  samples (veRL's stock managers need a number: use "zero" with them).
With `details=True` every entry is a dict (`score`, `correct`, `well_formed`,
`verifier_failed`), which veRL adds to its logged reward metrics.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from ._sync import Client
from .config import ClientConfig
from .rewards import RewardScheme, score_completions, task_from_verl

BatchScoreFn = Callable[..., list[Any]]
SkipOrZero = Literal["zero", "skip"]


def score_batch(client: Client, data_sources: Sequence[str], solution_strs: Sequence[str],
                ground_truths: Sequence[Any],
                extra_infos: Sequence[Mapping[str, Any] | None] | None = None, *,
                scheme: RewardScheme | None = None, on_sandbox_error: SkipOrZero = "zero",
                require_think: bool = True, details: bool = False) -> list[Any]:
    """Score a batch of solver completions with one verifier round trip."""
    if on_sandbox_error not in ("zero", "skip"):
        raise ValueError(f"on_sandbox_error must be 'zero' or 'skip', not {on_sandbox_error!r}")
    count = len(solution_strs)
    if not (len(data_sources) == len(ground_truths) == count):
        raise ValueError(f"{count} solutions but {len(data_sources)} data sources and "
                         f"{len(ground_truths)} ground truths")
    infos: Sequence[Mapping[str, Any] | None] = (
        list(extra_infos) if extra_infos is not None else [None] * count)
    tasks = [task_from_verl(str(source), truth, info)
             for source, truth, info in zip(data_sources, ground_truths, infos, strict=True)]
    chosen = scheme or RewardScheme()
    # Unjudged samples come back as None; "zero" is applied below so details can tell them
    # apart from a real 0.
    scores = score_completions(client, list(solution_strs), tasks, scheme=chosen,
                               on_sandbox_error="none", require_think=require_think)
    out: list[Any] = []
    for score in scores:
        failed = score is None
        value = (0.0 if on_sandbox_error == "zero" else None) if failed else score
        if not details:
            out.append(value)
            continue
        out.append({"score": value, "correct": float(score == chosen.correct),
                    "well_formed": float(score != chosen.malformed),
                    "verifier_failed": float(failed)})
    return out


def make_batch_compute_score(client: Client, **options: Any) -> BatchScoreFn:
    """veRL's batch `compute_score` bound to an explicit client; `options` are those of
    `score_batch` (scheme, on_sandbox_error, require_think, details)."""

    def compute_score(data_sources: Sequence[str], solution_strs: Sequence[str],
                      ground_truths: Sequence[Any],
                      extra_infos: Sequence[Mapping[str, Any] | None] | None = None,
                      **reward_kwargs: Any) -> list[Any]:
        return score_batch(client, data_sources, solution_strs, ground_truths, extra_infos,
                           **{**options, **reward_kwargs})

    return compute_score


@functools.cache
def _env_client() -> Client:
    # veRL imports the entry file by path and calls the function; the client is built on
    # first use from AZR_VERIFY_URL / AZR_VERIFY_API_KEY.
    return Client(config=ClientConfig.from_env())


def compute_score_batch(data_sources: Sequence[str], solution_strs: Sequence[str],
                        ground_truths: Sequence[Any],
                        extra_infos: Sequence[Mapping[str, Any] | None] | None = None,
                        **reward_kwargs: Any) -> list[Any]:
    """veRL batch reward (`custom_reward_function.name=compute_score_batch`); the service URL
    comes from `AZR_VERIFY_URL`, options from `custom_reward_function.reward_kwargs`."""
    return score_batch(_env_client(), data_sources, solution_strs, ground_truths, extra_infos,
                       **reward_kwargs)
