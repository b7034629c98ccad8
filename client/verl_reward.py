"""Entry file for veRL's ``custom_reward_function.path``.

veRL loads that file by path, outside its package, so relative imports would fail there;
this file only re-exports with absolute imports. Point veRL at it with::

    VERL_REWARD=$(python -c "import azr_verify.client.verl_reward as m; print(m.__file__)")
    custom_reward_function.path=$VERL_REWARD
    # with reward_model.reward_manager=batch: the whole batch in one request
    custom_reward_function.name=compute_score_batch
    # with the default per-sample manager: one request per sample
    custom_reward_function.name=compute_score
    # stdin/stdout code problems (ground_truth = test cases), batch or per sample
    custom_reward_function.name=compute_score_testcases_batch
    custom_reward_function.name=compute_score_testcases
"""

from azr_verify.client.rewards import compute_score
from azr_verify.client.testcase_rewards import (
    compute_score_testcases,
    compute_score_testcases_batch,
)
from azr_verify.client.verl_batch import compute_score_batch

__all__ = ["compute_score", "compute_score_batch", "compute_score_testcases",
           "compute_score_testcases_batch"]
