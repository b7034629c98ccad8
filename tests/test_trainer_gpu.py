"""The GPU smoke check (vLLM rollouts, bf16 with fp32 master weights, sleep mode, weight push
verified against the trainer's parameters), run where a CUDA GPU and vLLM are present.

It skips only when there is no GPU or no vLLM: everything else it covers also runs on CPU in
the other trainer tests.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

needs_gpu = pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("vllm") is None,
    reason="needs a CUDA GPU and vLLM")


@needs_gpu
def test_gpu_smoke_two_steps(tmp_path: Path, service_url: str) -> None:
    from azr_verify.trainer_adapter.gpu_smoke import main

    assert main(["--steps", "2", "--service-url", service_url,
                 "--out", str(tmp_path / "run")]) == 0


def test_smoke_exits_cleanly_without_a_gpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the smoke check itself runs above")
    from azr_verify.trainer_adapter.gpu_smoke import main

    assert main(["--steps", "1"]) == 2  # says why and does nothing
