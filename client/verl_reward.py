"""Entry file for veRL's ``custom_reward_function.path``.

veRL loads that file by path, outside its package, so relative imports would fail there;
this file only re-exports with an absolute import. Point veRL at it with::

    VERL_REWARD=$(python -c "import azr_verify.client.verl_reward as m; print(m.__file__)")
    custom_reward_function.path=$VERL_REWARD
    custom_reward_function.name=compute_score
"""

from azr_verify.client.rewards import compute_score

__all__ = ["compute_score"]
