"""Trainer adapter pieces: config, buffers, engines, the policy update, checkpoints."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from azr_verify.client import IOPair, TaskType
from azr_verify.trainer_adapter.buffers import Buffers, TaskBuffer
from azr_verify.trainer_adapter.config import TrainConfig, load_config
from azr_verify.trainer_adapter.tasks import InductionTask, Triple

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from azr_verify.trainer_adapter.config import ModelSection, OptimSection  # noqa: E402
from azr_verify.trainer_adapter.hf_engine import TransformersEngine  # noqa: E402
from azr_verify.trainer_adapter.model import Policy, byte_tokenizer, load_policy  # noqa: E402
from azr_verify.trainer_adapter.policy import (  # noqa: E402
    TrainSample,
    UpdateContext,
    policy_update,
    sequence_logprob,
)
from azr_verify.trainer_adapter.precision import DirectOptimizer  # noqa: E402
from azr_verify.trainer_adapter.rollout import (  # noqa: E402
    GenerationRequest,
    ScriptedEngine,
    Stage,
)

CONFIGS = Path(__file__).resolve().parents[1] / "trainer_adapter" / "configs"
SEED = Triple("def f(a):\n    return a", "'Hello World'", "'Hello World'")


def test_example_config_loads_with_overrides() -> None:
    config = load_config(CONFIGS / "tiny-cpu.yaml",
                         {"run.steps": 3, "service.url": "http://h:1", "run.out_dir": "x"})
    assert config.model.source == "tiny" and config.rollout.engine.value == "transformers"
    assert (config.run.steps, config.service.url, str(config.run.out_dir)) == (3, "http://h:1",
                                                                               "x")
    assert config.azr.task_types == list(TaskType)


def test_paper_defaults_and_typos_fail() -> None:
    config = TrainConfig()
    assert (config.azr.references, config.azr.learnability_rollouts) == (6, 8)
    assert (config.azr.propose_batch, config.azr.solve_batch) == (64, 64)
    assert (config.optim.lr, config.rollout.temperature) == (1e-6, 1.0)
    assert (config.rewards.wrong_penalty, config.rewards.format_penalty) == (-0.5, -1.0)
    with pytest.raises(ValueError):
        TrainConfig.model_validate({"azr": {"refrences": 3}})
    with pytest.raises(ValueError):
        TrainConfig.model_validate({"model": {"source": "pretrained"}})


def test_buffers_are_seeded_with_the_identity_triplet() -> None:
    buffers = Buffers.seeded(SEED)
    assert buffers.sizes() == {"deduction": 1, "abduction": 1, "induction": 1}
    assert buffers.deduction.to_list() == [SEED]
    [induction] = buffers.induction.to_list()
    assert induction.program == SEED.program and induction.hidden == (IOPair(SEED.input,
                                                                             SEED.output),)
    assert not buffers.add(TaskType.DEDUCTION, SEED)  # no duplicates
    new = Triple("def f(a):\n    return a + 1", "1", "2")
    assert buffers.add(TaskType.ABDUCTION, new) and buffers.programs() == [SEED, SEED, new]
    rng = random.Random(0)
    assert len(buffers.solver_tasks(TaskType.DEDUCTION, 5, rng)) == 5  # with replacement
    assert buffers.deduction.sample(6, rng) == [SEED]


def test_bounded_buffer_drops_the_oldest() -> None:
    buffer: TaskBuffer[InductionTask] = TaskBuffer(max_size=2)
    tasks = [InductionTask(str(k), "", (), ()) for k in range(3)]
    for step, task in enumerate(tasks):
        buffer.add(task, step)
    assert buffer.to_list() == tasks[1:] and buffer.steps() == [1, 2]


def test_solver_batches_take_recent_tasks_first() -> None:
    buffers = Buffers.seeded(SEED)
    old = [Triple(f"def f(a):\n    return a + {k}", "1", str(1 + k)) for k in range(1, 6)]
    new = [Triple(f"def f(a):\n    return a * {k}", "1", str(k)) for k in range(2, 5)]
    for task in old:
        buffers.add(TaskType.DEDUCTION, task, step=1)
    for task in new:
        buffers.add(TaskType.DEDUCTION, task, step=2)
    rng = random.Random(0)
    for _ in range(20):
        # Step 3 with a window of one step: the three tasks of step 2 always come first,
        # once each; the rest is drawn from the whole buffer.
        batch = buffers.solver_tasks(TaskType.DEDUCTION, 5, rng, recent_since=2)
        assert sorted(batch[:3], key=new.index) == new and len(batch) == 5
    # Fewer recent tasks than the batch is fine, more are subsampled without repeats.
    batch = buffers.solver_tasks(TaskType.DEDUCTION, 2, rng, recent_since=2)
    assert len(set(batch)) == 2 and set(batch) <= set(new)
    # Nothing recent: uniform over everything.
    assert len(buffers.solver_tasks(TaskType.DEDUCTION, 4, rng, recent_since=9)) == 4


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(ModelSection.model_validate(
        {"source": "tiny", "device": "cpu",
         "tiny": {"hidden_size": 32, "layers": 1, "heads": 2, "max_positions": 512}}), seed=0)


def test_byte_tokenizer_is_lossless() -> None:
    tok = byte_tokenizer()
    text = "def f(a):\n    return a  # é ✓ \t"
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    assert tok.eos_token_id != tok.pad_token_id


def test_transformers_engine_and_scripted_wrapper(policy: Policy) -> None:
    engine = TransformersEngine(policy, batch_size=2)
    requests = [GenerationRequest(f"prompt {k}", Stage.PROPOSE, TaskType.DEDUCTION, 4 + k)
                for k in range(3)]
    gens = engine.generate(requests)
    assert len(gens) == 3
    for k, gen in enumerate(gens):
        assert list(gen.prompt_ids) == policy.tokenizer.encode(f"prompt {k}",
                                                               add_special_tokens=False)
        assert 1 <= len(gen.completion_ids) <= 4 + k
    # n samples of one request come back consecutively.
    many = engine.generate([GenerationRequest("p", Stage.LEARNABILITY, TaskType.ABDUCTION, 3,
                                              n=3), requests[0]])
    assert len(many) == 4 and all(g.prompt_ids == many[0].prompt_ids for g in many[:3])
    scripted = ScriptedEngine.from_queues(engine, policy.tokenizer,
                                          {(Stage.PROPOSE, TaskType.ABDUCTION): ["hi"]})
    mixed = scripted.generate([
        GenerationRequest("a", Stage.PROPOSE, TaskType.ABDUCTION, 3),
        GenerationRequest("b", Stage.PROPOSE, TaskType.ABDUCTION, 3),  # queue exhausted
    ])
    assert mixed[0].scripted and mixed[0].text == "hi"
    assert mixed[0].completion_ids[-1] == policy.tokenizer.eos_token_id
    assert not mixed[1].scripted and scripted.scripted_count == 1


def test_generation_stops_after_the_answer_tag(policy: Policy) -> None:
    tok = policy.tokenizer
    teach = "x</think> <answer>1</answer>"
    ids = tok.encode(teach, add_special_tokens=False)
    # Make a model say the answer and then keep talking, deterministically: overfit it on a
    # continuation that goes past the tag, then decode greedily.
    model = load_policy(ModelSection.model_validate(
        {"source": "tiny", "device": "cpu", "gradient_checkpointing": False,
         "tiny": {"hidden_size": 32, "layers": 1, "heads": 2, "max_positions": 256}}), seed=1)
    sequence = torch.tensor([tok.encode("Q:" + teach + " more words here",
                                        add_special_tokens=False)])
    optimizer = torch.optim.Adam(model.model.parameters(), lr=1e-2)
    model.model.train()
    for _ in range(150):
        optimizer.zero_grad()
        model.model(input_ids=sequence, labels=sequence, use_cache=False).loss.backward()
        optimizer.step()
    model.model.eval()
    request = GenerationRequest("Q:", Stage.SOLVE, TaskType.DEDUCTION, len(ids) + 8)
    [free] = TransformersEngine(model, temperature=0.0, stop=()).generate([request])
    assert free.text.startswith(teach) and len(free.text) > len(teach)  # it goes on
    [gen] = TransformersEngine(model, temperature=0.0).generate([request])
    assert gen.text == teach and list(gen.completion_ids) == ids  # cut after the tag


def test_policy_update_follows_the_advantage_sign(policy: Policy) -> None:
    tok = policy.tokenizer
    prompt = tuple(tok.encode("User: go\nAssistant:", add_special_tokens=False))
    good = TrainSample(prompt, tuple(tok.encode(" yes", add_special_tokens=False)), 1.0)
    bad = TrainSample(prompt, tuple(tok.encode(" no!", add_special_tokens=False)), -1.0)
    flat = TrainSample(prompt, tuple(tok.encode(" meh", add_special_tokens=False)), 0.0)
    ctx = UpdateContext(policy.model, DirectOptimizer(policy.model.parameters(),
                                                      lambda p: torch.optim.SGD(p, lr=0.5)),
                        pad_id=tok.pad_token_id, max_len=policy.max_positions,
                        device=policy.device)

    before = sequence_logprob(ctx, good), sequence_logprob(ctx, bad)
    stats = policy_update(ctx, [good, bad, flat],
                          OptimSection(lr=0.5, epochs=2, micro_batch=1, max_grad_norm=10.0),
                          random.Random(0))
    after = sequence_logprob(ctx, good), sequence_logprob(ctx, bad)
    assert after[0] > before[0] and after[1] < before[1]
    assert stats.samples == 2 and stats.tokens == 4 + 4 + 4  # one token per byte
    assert stats.grad_norm > 0 and stats.optimizer_steps == 2 and stats.micro_batches == 4


def test_update_without_signal_is_a_no_op(policy: Policy) -> None:
    before = [p.detach().clone() for p in policy.model.parameters()]
    ctx = UpdateContext(policy.model, DirectOptimizer(policy.model.parameters(),
                                                      lambda p: torch.optim.SGD(p, lr=1.0)),
                        pad_id=0, max_len=64, device=policy.device)
    stats = policy_update(ctx, [TrainSample((1, 2), (3, 4), 0.0)], OptimSection(),
                          random.Random(0))
    assert stats.samples == 0 and stats.optimizer_steps == 0
    assert all(torch.equal(a, b) for a, b in zip(before, policy.model.parameters(),
                                                 strict=True))


def test_vllm_engine_is_lazy_and_explains_itself(policy: Policy) -> None:
    import importlib.util

    from azr_verify.trainer_adapter import vllm_engine

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm installed: exercised by the GPU smoke check")
    with pytest.raises(vllm_engine.EngineUnavailableError, match="vllm"):
        vllm_engine.VLLMEngine(policy)


def test_vllm_refuses_multiprocessing_mode_loudly(policy: Policy,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from azr_verify.trainer_adapter import vllm_engine

    # With the engine core in another process the weight push cannot reach the model: the
    # engine must refuse to start (before vLLM is even imported), not train blind.
    monkeypatch.setenv(vllm_engine.MULTIPROCESSING_ENV, "1")
    with pytest.raises(vllm_engine.EngineUnavailableError,
                       match=vllm_engine.MULTIPROCESSING_ENV):
        vllm_engine.VLLMEngine(policy)


def test_vllm_settings_come_from_the_config() -> None:
    from azr_verify.trainer_adapter.config import RolloutSection
    from azr_verify.trainer_adapter.vllm_engine import VLLMSettings

    settings = VLLMSettings.from_config(RolloutSection(), seed=3)
    # Production defaults: bf16, CUDA graphs on, sleep mode, stop after </answer>.
    assert (settings.dtype, settings.enforce_eager, settings.sleep) == ("bfloat16", False,
                                                                        True)
    assert settings.stop == ("</answer>",) and settings.seed == 3
    custom = VLLMSettings.from_config(RolloutSection(vllm_tensor_parallel_size=2,
                                                     vllm_gpu_memory_utilization=0.5))
    assert (custom.tensor_parallel_size, custom.gpu_memory_utilization) == (2, 0.5)


def test_client_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, azr_verify.client, azr_verify.client.rewards; "
            "import azr_verify.trainer_adapter.cli; "
            "assert 'torch' not in sys.modules and 'azr_verify.service' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
