"""End to end on CPU: a tiny random causal LM runs full AZR steps against the real service.

`service_url` (tests/conftest.py) is the azr-verify app on a real uvicorn, backed by the
session's bubblewrap sandbox pool.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from azr_verify.client import TaskType, fenced_blocks  # noqa: E402
from azr_verify.trainer_adapter.cli import train_main  # noqa: E402
from azr_verify.trainer_adapter.config import TrainConfig  # noqa: E402
from azr_verify.trainer_adapter.metrics import read_metrics  # noqa: E402
from azr_verify.trainer_adapter.model import Policy  # noqa: E402
from azr_verify.trainer_adapter.rollout import (  # noqa: E402
    GenerationRequest,
    RolloutEngine,
    ScriptedEngine,
    Stage,
)
from azr_verify.trainer_adapter.runner import run_training  # noqa: E402

# -- scripted completions ------------------------------------------------------------------

HELPER_PROGRAM = (
    "def f(a):\n"
    "    def double(x):\n"
    "        return x * 2\n"
    "    return double(a) + 1"
)


def _answer(body: str) -> str:
    return f"I will reason.</think> <answer>\n{body}\n</answer>"


def _block(tag: str, body: str) -> str:
    return f"```{tag}\n{body}\n```"


SCRIPTS: dict[tuple[Stage, TaskType], list[str]] = {
    (Stage.PROPOSE, TaskType.DEDUCTION): [
        # Valid, with a nested helper function.
        _answer(_block("python", HELPER_PROGRAM) + "\n" + _block("input", "3")),
        "no tags at all",  # malformed: -1
        _answer(_block("python", "def f(s):\n    return s[::-1]") + "\n"
                + _block("input", "'abc'")),
    ],
    (Stage.PROPOSE, TaskType.ABDUCTION): [
        _answer(_block("python", "def f(a):\n    raise ValueError(a)") + "\n"
                + _block("input", "1")),  # well-formed but invalid: -0.5
        _answer(_block("python", "def f(a, b):\n    return sorted([a, b])") + "\n"
                + _block("input", "2, 1")),
    ],
    (Stage.PROPOSE, TaskType.INDUCTION): [
        _answer("\n".join(_block("input", x) for x in ("'ab'", "'cd'", "'ef'"))
                + "\n" + _block("message", "returns its argument")),
    ],
    # n=2 rollouts on the first valid deduction proposal: one right, one wrong -> s = 1/2.
    (Stage.LEARNABILITY, TaskType.DEDUCTION): [
        _answer(_block("output", "7")),
        _answer(_block("output", "8")),
    ],
}


def _echo_solver(request: GenerationRequest) -> str | None:
    """Solve-stage answers that are right for the identity seed: echo what the prompt shows."""
    if request.stage is not Stage.SOLVE:
        return None
    blocks = {b.lang: b.body for b in fenced_blocks(request.prompt.split("User:", 1)[1])}
    if request.task_type is TaskType.DEDUCTION:
        return _answer(_block("output", blocks.get("input", "0")))
    if request.task_type is TaskType.ABDUCTION:
        return _answer(_block("input", blocks.get("output", "0")))
    return _answer(_block("python", "def f(a):\n    return a"))


def tiny_config(tmp_path: Path, url: str, steps: int = 2) -> TrainConfig:
    return TrainConfig.model_validate({
        "service": {"url": url, "timeout_s": 60},
        "model": {"source": "tiny", "device": "cpu",
                  "tiny": {"arch": "llama", "hidden_size": 32, "layers": 1, "heads": 2,
                           "max_positions": 4096}},
        "rollout": {"max_new_tokens_propose": 12, "max_new_tokens_solve": 8},
        "azr": {"references": 2, "learnability_rollouts": 2, "propose_batch": 2,
                "solve_batch": 2, "induction_inputs": 3},
        "optim": {"lr": 1e-3, "micro_batch": 8},
        "run": {"steps": steps, "out_dir": str(tmp_path / "run"), "progress": False},
    })


def test_two_full_steps_against_a_real_service(tmp_path: Path, service_url: str) -> None:
    config = tiny_config(tmp_path, service_url)
    captured: dict[str, Any] = {}

    def wrap(engine: RolloutEngine, policy: Policy) -> RolloutEngine:
        captured["policy"] = policy
        captured["before"] = {k: v.detach().clone()
                              for k, v in policy.model.state_dict().items()}
        queued = ScriptedEngine.from_queues(engine, policy.tokenizer, SCRIPTS)

        def script(request: GenerationRequest) -> str | None:
            return queued.script(request) or _echo_solver(request)

        scripted = ScriptedEngine(engine, policy.tokenizer, script)
        captured["engine"] = scripted
        return scripted

    result = run_training(config, wrap_engine=wrap)

    records = read_metrics(result.metrics_path)
    assert [r["step"] for r in records] == [1, 2]
    first, second = records
    # Every stage ran: proposals validated (some valid), learnability, solving, the update.
    assert first["valid_proposal_rate"]["deduction"] > 0
    assert first["new_tasks"]["deduction"] == 1 and first["new_tasks"]["abduction"] == 1
    assert first["new_tasks"]["induction"] == 1
    assert first["learnability_solve_rate"]["deduction"] == 0.5
    # Proposer reward of the helper-function proposal: 1 - 1/2; the malformed one: -1.
    assert first["reward"]["deduction/propose"]["max"] == 0.5
    assert first["reward"]["deduction/propose"]["min"] == -1.0
    assert first["reward"]["abduction/propose"]["min"] == -0.5  # invalid, not malformed
    assert set(first["reward"]) == {f"{t}/{r}" for t in ("deduction", "abduction",
                                                         "induction")
                                    for r in ("propose", "solve")}
    assert first["solve_rate"]["induction"] == 1.0  # identity on every induction task
    assert first["solve_rate"]["deduction"] is not None
    assert first["verdicts"]["accepted"] >= 5
    assert first["update"]["tokens"] > 0 and first["samples"]["trained"] > 0
    assert {"generation_s", "verification_s", "update_s", "total_s"} <= set(first["time"])
    assert second["buffer_size"]["deduction"] == 3  # seed + one valid proposal per step
    assert second["buffer_size"]["abduction"] == 2
    assert captured["engine"].scripted_count > 0

    after = captured["policy"].model.state_dict()
    changed = [k for k, v in captured["before"].items() if not torch.equal(v, after[k])]
    assert changed, "the policy update did not change any weight"

    assert result.plot_path is not None and result.plot_path.stat().st_size > 1000
    assert result.checkpoint is not None
    assert (result.checkpoint / "config.json").exists()
    buffers = json.loads((result.checkpoint / "buffers.json").read_text())
    assert any("double" in t["program"] for t in buffers["deduction"])


def test_train_main_cli(tmp_path: Path, service_url: str) -> None:
    config = tiny_config(tmp_path, "http://127.0.0.1:9").model_dump(mode="json")
    config["run"]["steps"] = 5
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    out = tmp_path / "cli-run"
    code = train_main(["--config", str(path), "--service-url", service_url, "--steps", "1",
                       "--out", str(out), "--no-progress"])
    assert code == 0
    assert len(read_metrics(out / "metrics.jsonl")) == 1
    assert (out / "training_curves.png").exists()
    assert list((out / "checkpoints").glob("step-000001"))


def test_train_main_reports_unreachable_service(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tiny_config(tmp_path, f"http://127.0.0.1:{port}").model_dump(mode="json")
    config["service"]["max_retries"] = 0
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    # No service: the run fails fast and cleanly (exit 1, a message, no traceback).
    assert train_main(["--config", str(path), "--no-progress"]) == 1
