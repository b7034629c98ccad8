"""End to end on CPU: a tiny random causal LM runs the seeding stage and full AZR steps
against the real service, and every reward and advantage is traced back to real verdicts.

`service_url` (tests/conftest.py) is the azr-verify app on a real uvicorn, backed by the
session's bubblewrap sandbox pool. A random model writes only malformed text, so proposals
and answers are scripted where the test needs them: the proposals are fixed texts, and the
solver is an oracle that knows the test's own programs and answers right and wrong in turn,
so that every solver group holds both accepted and wrong answers. Everything else (parsing,
the verdicts, rewards, advantages, the update) is the real thing.
"""

from __future__ import annotations

import ast
import json
import math
import socket
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from azr_verify.client import Client, TaskType, Verdict, fenced_blocks  # noqa: E402
from azr_verify.trainer_adapter.cli import train_main  # noqa: E402
from azr_verify.trainer_adapter.config import TrainConfig  # noqa: E402
from azr_verify.trainer_adapter.metrics import read_metrics  # noqa: E402
from azr_verify.trainer_adapter.model import Policy  # noqa: E402
from azr_verify.trainer_adapter.rewards import learnability  # noqa: E402
from azr_verify.trainer_adapter.rollout import (  # noqa: E402
    GenerationRequest,
    RolloutEngine,
    ScriptedEngine,
    Stage,
)
from azr_verify.trainer_adapter.runner import run_training  # noqa: E402

from .servers import require_bwrap  # noqa: E402

# -- the test's own programs: single-argument, fine on strings and ints, so that induction
# proposals are valid for whichever program the loop picks. The oracle knows what they do.

IDENTITY = "def f(a):\n    return a"
DOUBLE = "def f(a):\n    return a * 2"
HELPER = ("def f(a):\n"
          "    def wrap(x):\n"
          "        return [x, x]\n"
          "    return wrap(a)")
BEHAVIOUR: dict[str, Callable[[Any], Any]] = {
    IDENTITY: lambda a: a,
    DOUBLE: lambda a: a * 2,
    HELPER: lambda a: [a, a],
}


def _answer(body: str) -> str:
    return f"I will reason.</think> <answer>\n{body}\n</answer>"


def _block(tag: str, body: str) -> str:
    return f"```{tag}\n{body}\n```"


def _triple(program: str, inp: str) -> str:
    return _answer(_block("python", program) + "\n" + _block("input", inp))


INDUCTION_PROPOSAL = _answer("\n".join(_block("input", x) for x in ("'ab'", "'cd'", "'ef'"))
                             + "\n" + _block("message", "does something to its argument"))

SCRIPTS: dict[tuple[Stage, TaskType], list[str]] = {
    # Seeding: two valid programs for the shared deduction/abduction pool, one induction.
    (Stage.SEED, TaskType.DEDUCTION): [_triple(DOUBLE, "5"), "no tags at all"],
    (Stage.SEED, TaskType.ABDUCTION): [_triple(HELPER, "'q'"), _triple(DOUBLE, "5")],
    (Stage.SEED, TaskType.INDUCTION): [INDUCTION_PROPOSAL, INDUCTION_PROPOSAL],
    (Stage.PROPOSE, TaskType.DEDUCTION): [
        _triple(HELPER, "3"),                      # valid, with a nested helper function
        "no tags at all",                          # malformed: -1
        _triple(DOUBLE, "'xy'"),
    ],
    (Stage.PROPOSE, TaskType.ABDUCTION): [
        _triple("def f(a):\n    raise ValueError(a)", "1"),  # well-formed but invalid: -0.5
        _triple(IDENTITY, "[1, 2]"),
    ],
    (Stage.PROPOSE, TaskType.INDUCTION): [
        _answer("\n".join(_block("input", x) for x in ("'gh'", "'ij'", "'kl'"))
                + "\n" + _block("message", "a new task on other inputs")),
        _answer("\n".join(_block("input", x) for x in ("1", "1", "2"))   # repeated input:
                + "\n" + _block("message", "m")),                       # invalid, -0.5
    ],
}


class Oracle:
    """Answers solver prompts about the test's programs: right, wrong, right, wrong... per
    (stage, task type), so each group gets both."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[Stage, TaskType]] = Counter()

    def __call__(self, request: GenerationRequest) -> str | None:
        if request.stage not in (Stage.SOLVE, Stage.LEARNABILITY):
            return None
        key = (request.stage, request.task_type)
        right = self.counts[key] % 2 == 0
        self.counts[key] += 1
        blocks = {b.lang: b.body for b in fenced_blocks(request.prompt.split("User:", 1)[1])}
        if request.task_type is TaskType.DEDUCTION:
            out = repr(BEHAVIOUR[blocks["python"]](ast.literal_eval(blocks["input"])))
            return _answer(_block("output", out if right else "'surely wrong'"))
        if request.task_type is TaskType.ABDUCTION:
            program, output = blocks["python"], ast.literal_eval(blocks["output"])
            # The identity seed and the test's programs: invert by trying the values the
            # test used.
            candidates = ["'Hello World'", "5", "'q'", "3", "'xy'", "[1, 2]"]
            found = next(c for c in candidates
                         if BEHAVIOUR[program](ast.literal_eval(c)) == output)
            return _answer(_block("input", found if right else "'surely wrong'"))
        pairs = [line.split(" == ") for line in blocks["text"].splitlines()]
        program = next(p for p, fn in BEHAVIOUR.items()
                       if all(fn(ast.literal_eval(call[2:-1])) == ast.literal_eval(out)
                              for call, out in pairs))
        return _answer(_block("python", program if right else "def f(a):\n    return 0"))


def tiny_config(tmp_path: Path, url: str, steps: int = 2) -> TrainConfig:
    return TrainConfig.model_validate({
        "service": {"url": url, "timeout_s": 60},
        "model": {"source": "tiny", "device": "cpu", "gradient_checkpointing": False,
                  "tiny": {"arch": "llama", "hidden_size": 32, "layers": 1, "heads": 2,
                           "max_positions": 4096}},
        "rollout": {"max_new_tokens_propose": 12, "max_new_tokens_solve": 8},
        "azr": {"references": 2, "learnability_rollouts": 2, "propose_batch": 2,
                "solve_batch": 2, "induction_inputs": 3, "seed_batch_factor": 1,
                "seed_max_rounds": 2},
        "optim": {"lr": 1e-3, "mini_batch_size": 8},
        "run": {"steps": steps, "out_dir": str(tmp_path / "run"), "progress": False},
    })


def _read_samples(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _expected_solver_reward(sample: dict[str, Any]) -> float:
    if sample["parsed"] is None:
        assert sample["outcome"] == "malformed" and sample["verdicts"] == []
        return -1.0
    verdicts = sample["verdicts"]
    assert verdicts, "a well-formed answer is always checked"
    return 1.0 if all(v == Verdict.ACCEPTED for v in verdicts) else -0.5


def test_full_steps_with_rewards_from_real_verdicts(tmp_path: Path, service_url: str) -> None:
    config = tiny_config(tmp_path, service_url)
    captured: dict[str, Any] = {}

    def wrap(engine: RolloutEngine, policy: Policy) -> RolloutEngine:
        captured["policy"] = policy
        captured["before"] = {k: v.detach().clone()
                              for k, v in policy.model.state_dict().items()}
        queued = ScriptedEngine.from_queues(engine, policy.tokenizer, SCRIPTS)
        oracle = Oracle()

        def script(request: GenerationRequest) -> str | None:
            return queued.script(request) or oracle(request)

        captured["engine"] = ScriptedEngine(engine, policy.tokenizer, script)
        return captured["engine"]

    result = run_training(config, wrap_engine=wrap)

    # -- seeding: proposals validated by the service fill the buffers before training.
    seeding = json.loads((result.out_dir / "seeding.json").read_text())
    assert seeding["valid"] >= 3 and seeding["buffer_size"]["deduction"] == 3
    assert seeding["verdicts"]["accepted"] >= 3 + 3  # two triples, one induction (3 inputs)

    records = read_metrics(result.metrics_path)
    assert [r["step"] for r in records] == [1, 2]
    first = records[0]
    assert first["new_tasks"] == {"deduction": 1, "abduction": 1, "induction": 1}
    assert first["samples"]["trained"] > 0 and first["update"]["grad_norm"] > 0
    assert {"generation_s", "verification_s", "update_s", "total_s"} <= set(first["time"])

    # -- every reward follows from the verdicts logged beside it, and every advantage from
    # the rewards of its (task type, role) group.
    samples = _read_samples(result.out_dir / "samples.jsonl")
    assert {s["stage"] for s in samples} == {"seed", "propose", "learnability", "solve"}
    for step in (1, 2):
        mine = [s for s in samples if s["step"] == step]
        rollouts: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for s in mine:
            if s["stage"] == "learnability":
                rollouts[json.dumps(s["task"], sort_keys=True)].append(s)
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for s in mine:
            if s["stage"] == "solve":
                assert s["reward"] == _expected_solver_reward(s)
            elif s["stage"] == "propose":
                if s["outcome"] == "passable":
                    runs = rollouts[json.dumps(s["task"], sort_keys=True)]
                    rate = sum(_expected_solver_reward(r) == 1.0 for r in runs) / len(runs)
                    assert s["solve_rate"] == rate and s["reward"] == learnability(rate)
                elif s["outcome"] == "wrong":
                    assert s["reward"] == -0.5
                    assert s["detail"] == "repeated inputs" or any(
                        v != Verdict.ACCEPTED for v in s["verdicts"])
                else:
                    assert s["reward"] == -1.0 and s["parsed"] is None
            else:
                continue
            groups[f"{s['task_type']}/{s['role']}"].append(s)
        assert len(groups) == 6
        for name, members in groups.items():
            rewards = [m["reward"] for m in members]
            mean = sum(rewards) / len(rewards)
            std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / len(rewards))
            for m in members:
                expected = 0.0 if std == 0 else (m["reward"] - mean) / (std + 1e-6)
                assert m["advantage"] == pytest.approx(expected), name
            if name.endswith("/solve"):
                # Not only format penalties: accepted and wrong answers, both well-formed,
                # pull the policy in opposite directions.
                right = [m for m in members if m["verdicts"] and
                         all(v == Verdict.ACCEPTED for v in m["verdicts"])]
                wrong = [m for m in members if Verdict.WRONG_OUTPUT in m["verdicts"]]
                assert right and wrong, name
                assert min(m["advantage"] for m in right) > 0 > max(m["advantage"]
                                                                    for m in wrong)
        # The proposer side too: a learnable valid proposal beats a rejected one.
        deduction = groups["deduction/propose"]
        assert max(m["advantage"] for m in deduction if m["outcome"] == "passable") > \
            max(m["advantage"] for m in deduction if m["outcome"] != "passable")

    # -- the logged verdicts are the service's: re-check the solver answers under fresh
    # program text (no cache) and compare.
    solved = [s for s in samples if s["stage"] == "solve" and s["parsed"] is not None]
    items, spans = [], []
    for s in solved:
        marker = f"\n# {uuid.uuid4().hex}"
        task, answer = s["task"], s["parsed"]
        start = len(items)
        if s["task_type"] == "deduction":
            items.append({"program": task["program"] + marker, "input": task["input"],
                          "output": answer})
        elif s["task_type"] == "abduction":
            items.append({"program": task["program"] + marker, "input": answer,
                          "output": task["output"]})
        else:
            items += [{"program": answer + marker, "input": p["input"], "output": p["output"]}
                      for p in task["hidden"]]
        spans.append((start, len(items)))
    with Client(service_url) as client:
        results = client.check(items)
    assert not any(r.cached for r in results)
    for s, (start, stop) in zip(solved, spans, strict=True):
        assert [r.verdict.value for r in results[start:stop]] == s["verdicts"]

    # -- the update moved the weights; outputs are written.
    after = captured["policy"].model.state_dict()
    assert any(not torch.equal(v, after[k]) for k, v in captured["before"].items())
    assert captured["engine"].scripted_count > 0
    assert result.plot_path is not None and result.plot_path.stat().st_size > 1000
    assert result.checkpoint is not None and (result.checkpoint / "config.json").exists()
    buffers = json.loads((result.checkpoint / "buffers.json").read_text())
    assert any("wrap" in t["program"] for t in buffers["deduction"])


def test_train_main_cli(tmp_path: Path, service_url: str) -> None:
    config = tiny_config(tmp_path, "http://127.0.0.1:9").model_dump(mode="json")
    config["run"]["steps"] = 5
    config["azr"]["seed_batch_factor"] = 0
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    out = tmp_path / "cli-run"
    code = train_main(["--config", str(path), "--service-url", service_url, "--steps", "1",
                       "--out", str(out), "--no-progress"])
    assert code == 0
    assert len(read_metrics(out / "metrics.jsonl")) == 1
    assert (out / "training_curves.png").exists() and (out / "samples.jsonl").exists()
    assert list((out / "checkpoints").glob("step-000001"))


def test_train_serve_starts_and_stops_its_own_service(tmp_path: Path) -> None:
    require_bwrap()
    config = tiny_config(tmp_path, "http://127.0.0.1:9").model_dump(mode="json")
    config["azr"]["seed_batch_factor"] = 0
    config["run"]["out_dir"] = str(tmp_path / "served")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert train_main(["--config", str(path), "--serve", "--steps", "1", "--no-progress"]) == 0
    assert len(read_metrics(tmp_path / "served" / "metrics.jsonl")) == 1
    # The run talked to the private service (the seed triplet needs a live one), which was
    # stopped at the end.
    url = json.loads((tmp_path / "served" / "config.json").read_text())["service"]["url"]
    log = (tmp_path / "served" / "service" / "service.log").read_text()
    assert f"Uvicorn running on {url}" in log and "Finished server process" in log


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
