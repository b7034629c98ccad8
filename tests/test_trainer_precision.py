"""Training at scale, checked on CPU: the selective log-softmax, fp32 master weights, token-
sized micro-batches, mini-batch updates, gradient checkpointing and loading a local model."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from azr_verify.client import TaskType  # noqa: E402
from azr_verify.trainer_adapter.batching import (  # noqa: E402
    split_mini_batches,
    token_micro_batches,
)
from azr_verify.trainer_adapter.config import ModelSection, OptimSection  # noqa: E402
from azr_verify.trainer_adapter.hf_engine import TransformersEngine  # noqa: E402
from azr_verify.trainer_adapter.logprobs import (  # noqa: E402
    completion_logprobs,
    pack,
    selective_log_softmax,
)
from azr_verify.trainer_adapter.model import Policy, load_policy  # noqa: E402
from azr_verify.trainer_adapter.policy import (  # noqa: E402
    TrainSample,
    UpdateContext,
    policy_update,
)
from azr_verify.trainer_adapter.precision import (  # noqa: E402
    DirectOptimizer,
    MasterWeightOptimizer,
    adamw_factory,
    build_optimizer,
)
from azr_verify.trainer_adapter.rollout import GenerationRequest, Stage  # noqa: E402


def tiny(**overrides: object) -> Policy:
    spec: dict[str, object] = {"source": "tiny", "device": "cpu",
                               "tiny": {"hidden_size": 32, "layers": 2, "heads": 2,
                                        "max_positions": 256}}
    spec.update(overrides)
    return load_policy(ModelSection.model_validate(spec), seed=0)


# -- the selective log-softmax ----------------------------------------------------------


@pytest.mark.parametrize(("chunk", "softcap", "scale"), [(3, None, 1.0), (7, 30.0, 0.5),
                                                         (1000, None, 2.0)])
def test_chunked_selective_log_softmax_equals_the_naive_one(chunk: int, softcap: float | None,
                                                           scale: float) -> None:
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(20, 16, generator=gen, requires_grad=True)
    weight = torch.randn(50, 16, generator=gen, requires_grad=True)
    bias = torch.randn(50, generator=gen, requires_grad=True)
    targets = torch.randint(0, 50, (20,), generator=gen)

    def naive() -> torch.Tensor:
        logits = hidden @ weight.T + bias
        if softcap is not None:
            logits = torch.tanh(logits / softcap) * softcap
        logits = logits * scale
        return torch.log_softmax(logits, -1).gather(-1, targets[:, None]).squeeze(-1)

    expected = naive()
    (g_h, g_w, g_b) = torch.autograd.grad((expected * torch.arange(20.0)).sum(),
                                          [hidden, weight, bias])
    got = selective_log_softmax(hidden, targets, weight, bias, scale=scale, softcap=softcap,
                                chunk_tokens=chunk)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    (c_h, c_w, c_b) = torch.autograd.grad((got * torch.arange(20.0)).sum(),
                                          [hidden, weight, bias])
    for a, b in ((c_h, g_h), (c_w, g_w), (c_b, g_b)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_completion_logprobs_score_only_completion_tokens() -> None:
    policy = tiny()
    model = policy.model
    sequences = [([5, 6, 7, 8, 9], 2), ([1, 2, 3], 1), ([4, 4, 4, 4, 4, 4, 4], 5)]
    packed = pack(sequences, pad_id=int(policy.tokenizer.pad_token_id))
    got = completion_logprobs(model, packed, chunk_tokens=2)
    # The naive way: full logits of every sequence on its own (no padding at all).
    expected = []
    for ids, n in sequences:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
        lp = torch.log_softmax(logits.float(), -1)
        expected += [float(lp[t - 1, ids[t]]) for t in range(len(ids) - n, len(ids))]
    assert packed.lengths == (2, 1, 5) and got.shape == (8,)
    torch.testing.assert_close(got.detach(), torch.tensor(expected), rtol=1e-4, atol=1e-4)


# -- precision --------------------------------------------------------------------------


def _bf16_update(optimizer_kind: str, steps: int, lr: float) -> tuple[float, float]:
    """Fraction of model weights changed, and fraction of master weights changed."""
    dtype = "float32" if optimizer_kind == "fp32" else "bfloat16"
    policy = tiny(dtype=dtype, gradient_checkpointing=False)
    model = policy.model
    before = [p.detach().clone() for p in model.parameters()]
    if optimizer_kind in ("plain", "fp32"):
        plain = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        step = plain.step
        zero = plain.zero_grad
        masters = None
    else:
        master = MasterWeightOptimizer(model.parameters(), adamw_factory(lr, 0.0))
        step, zero, masters = master.step, master.zero_grad, master.master
        master_before = [m.detach().clone() for m in master.master]
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        ids = torch.randint(0, 256, (2, 12), generator=gen)
        zero()
        model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
        step()
    changed = sum(int((p != b).sum()) for p, b in zip(model.parameters(), before,
                                                      strict=True))
    total = sum(p.numel() for p in model.parameters())
    if masters is None:
        return changed / total, 0.0
    master_changed = sum(int((m != b).sum()) for m, b in zip(masters, master_before,
                                                             strict=True))
    return changed / total, master_changed / total


def test_bf16_updates_are_rounded_away_without_master_weights() -> None:
    changed, _ = _bf16_update("plain", steps=5, lr=1e-6)
    assert changed < 0.05  # AdamW straight on bf16: ~all lr-1e-6 steps round to nothing


def test_fp32_master_weights_keep_every_small_update() -> None:
    fp32_changed, _ = _bf16_update("fp32", steps=5, lr=1e-6)
    changed, master_changed = _bf16_update("master", steps=5, lr=1e-6)
    # Every weight that an fp32 model moves (those with a gradient: embedding rows of
    # tokens never seen stay put in both) moves in the master too.
    assert fp32_changed > 0.8 and master_changed >= 0.99 * fp32_changed
    assert changed < 0.05  # the bf16 copy has not crossed a rounding step yet...
    # ...but the steps accumulate there until it does.
    changed_later, _ = _bf16_update("master", steps=5, lr=1e-4)
    assert changed_later > 0.5


def test_master_weights_stay_the_source_of_truth() -> None:
    policy = tiny(dtype="bfloat16", gradient_checkpointing=False)
    optimizer = build_optimizer(policy.model, adamw_factory(1e-3, 0.0))
    assert isinstance(optimizer, MasterWeightOptimizer)
    ids = torch.randint(0, 256, (1, 8))
    optimizer.zero_grad()
    policy.model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
    norm = optimizer.clip_grad_norm(1.0)
    optimizer.step()
    assert norm > 0
    for p, m in zip(optimizer.params, optimizer.master, strict=True):
        assert m.dtype == torch.float32 and p.dtype == torch.bfloat16
        assert torch.equal(p, m.to(torch.bfloat16))  # the model is the master, rounded
        assert p.grad is None  # low-precision grads freed before the step
    assert isinstance(build_optimizer(tiny().model, adamw_factory(1e-3, 0.0)),
                      DirectOptimizer)  # fp32 parameters are their own master
    offloaded = build_optimizer(tiny().model, adamw_factory(1e-3, 0.0), offload=True)
    assert isinstance(offloaded, MasterWeightOptimizer)


# -- batching ---------------------------------------------------------------------------


def test_mini_batches_cover_every_sample_once() -> None:
    items = list(range(10))
    batches = split_mini_batches(items, 4, random.Random(0))
    assert [len(b) for b in batches] == [4, 3, 3]  # ceil(10 / 4) near-equal parts
    assert sorted(x for b in batches for x in b) == items
    assert split_mini_batches(items, None, random.Random(0))[0] != items  # shuffled
    assert len(split_mini_batches(items, 100, random.Random(0))) == 1
    assert split_mini_batches([], 4, random.Random(0)) == []


def test_micro_batches_respect_the_token_budget() -> None:
    lengths = [100, 20, 30, 90, 10, 500, 40]
    groups = token_micro_batches(lengths, max_tokens=200, max_sequences=3)
    assert sorted(k for g in groups for k in g) == list(range(len(lengths)))
    for group in groups:
        longest = max(lengths[k] for k in group)
        assert len(group) <= 3
        assert len(group) * longest <= 200 or len(group) == 1  # 500 goes alone
    assert [5] in groups


def test_update_makes_one_optimizer_step_per_mini_batch() -> None:
    policy = tiny(gradient_checkpointing=False)
    steps_taken = []
    inner = torch.optim.SGD(policy.model.parameters(), lr=5.0)  # big steps: ratios move
    original = inner.step

    def counting_step(*args: object, **kwargs: object) -> object:
        steps_taken.append(1)
        return original()

    inner.step = counting_step  # type: ignore[method-assign]
    ctx = UpdateContext(policy.model, DirectOptimizer(policy.model.parameters(),
                                                      lambda _: inner),
                        pad_id=int(policy.tokenizer.pad_token_id), max_len=64,
                        device=policy.device)
    rng = random.Random(0)
    samples = [TrainSample((1, 2, 3), tuple(range(10, 10 + k % 5 + 1)),
                           1.0 if k % 2 else -1.0) for k in range(10)]
    stats = policy_update(ctx, samples, OptimSection(mini_batch_size=4, epochs=2,
                                                     micro_batch_tokens=16,
                                                     max_grad_norm=100.0), rng)
    assert stats.optimizer_steps == 3 * 2 == len(steps_taken)
    assert stats.micro_batches > stats.optimizer_steps  # 16-token budget splits batches
    assert stats.samples == 10 and stats.grad_norm > 0
    assert stats.clip_fraction > 0  # later mini-batches see a moved policy


@pytest.mark.parametrize("normalization", ["token", "sequence"])
def test_loss_normalisation_options(normalization: str) -> None:
    policy = tiny(gradient_checkpointing=False)
    ctx = UpdateContext(policy.model, DirectOptimizer(policy.model.parameters(),
                                                      lambda p: torch.optim.SGD(p, lr=0.0)),
                        pad_id=int(policy.tokenizer.pad_token_id), max_len=64,
                        device=policy.device)
    short = TrainSample((1, 2), (3,), 1.0)
    long = TrainSample((1, 2), (4, 5, 6, 7, 8, 9, 10, 11, 12), 1.0)
    stats = policy_update(ctx, [short, long], OptimSection(
        loss_normalization=normalization, mini_batch_size=None), random.Random(0))  # type: ignore[arg-type]
    # At ratio 1 the surrogate is -advantage per token: token-mean gives -1 over the 10
    # tokens; sequence-mean averages each sequence's mean (-1) over the 2 sequences.
    assert math.isclose(stats.loss, -1.0, rel_tol=1e-5)
    assert stats.tokens == 10


# -- the module in training ---------------------------------------------------------------


def test_checkpointed_training_forward_matches_eval() -> None:
    policy = tiny(gradient_checkpointing=True)
    model = policy.model
    assert getattr(model, "is_activation_checkpointing", None) or \
        model.is_gradient_checkpointing
    packed = pack([([3, 4, 5, 6, 7, 8], 3)], pad_id=int(policy.tokenizer.pad_token_id))
    with torch.no_grad():
        evaluated = completion_logprobs(model, packed)
    model.train()  # no dropout anywhere, so train mode scores the same distribution
    try:
        trained = completion_logprobs(model, packed)
        trained.sum().backward()
    finally:
        model.eval()
    torch.testing.assert_close(trained.detach(), evaluated)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_local_pretrained_directory_loads_by_path(tmp_path: Path) -> None:
    source = tiny()
    source.model.save_pretrained(tmp_path / "model")
    source.tokenizer.save_pretrained(tmp_path / "model")
    loaded = load_policy(ModelSection.model_validate(
        {"source": "pretrained", "path": str(tmp_path / "model"), "device": "cpu",
         "max_length": 128}), seed=0)
    assert loaded.source == str(tmp_path / "model") and loaded.max_positions == 128
    for (name, a), (_, b) in zip(source.model.state_dict().items(),
                                 loaded.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    [gen] = TransformersEngine(loaded, temperature=0.0).generate(
        [GenerationRequest("def f(a):", Stage.SOLVE, TaskType.DEDUCTION, 4)])
    [same] = TransformersEngine(source, temperature=0.0).generate(
        [GenerationRequest("def f(a):", Stage.SOLVE, TaskType.DEDUCTION, 4)])
    assert gen.completion_ids == same.completion_ids
