"""The CPU demo's pieces: the in-memory BPE, the warm-up corpus (valid AZR completions for
the loop's own prompts, checked by the real service) and the warm-up itself."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from azr_verify.client import (  # noqa: E402
    AnswerSlot,
    CheckBatch,
    Client,
    IOPair,
    ProposalSlot,
    TaskType,
    extract_solver_answer,
)
from azr_verify.trainer_adapter import prompts  # noqa: E402
from azr_verify.trainer_adapter.config import load_config  # noqa: E402
from azr_verify.trainer_adapter.model import bpe_tokenizer, load_policy  # noqa: E402
from azr_verify.trainer_adapter.parsing import (  # noqa: E402
    parse_induction_proposal,
    parse_triple_proposal,
)
from azr_verify.trainer_adapter.rollout import truncate_at_stop  # noqa: E402
from azr_verify.trainer_adapter.tasks import Triple  # noqa: E402
from azr_verify.trainer_adapter.warmup import build_corpus, run_warmup  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "trainer_adapter" / "configs" / "tiny-cpu.yaml"


@pytest.fixture(scope="module")
def bpe() -> object:
    return bpe_tokenizer(1024)


def test_bpe_is_lossless_and_shortens_the_prompts(bpe: object) -> None:
    tok = bpe
    weird = "def f(a):\n    return 'é✓\\t' + a  # \x00 \U0001f600"
    assert tok.decode(tok.encode(weird, add_special_tokens=False)) == weird  # type: ignore[attr-defined]
    prompt = prompts.propose_triple(TaskType.DEDUCTION, [
        Triple("def f(a):\n    return a", "'Hello World'", "'Hello World'")])
    ids = tok.encode(prompt, add_special_tokens=False)  # type: ignore[attr-defined]
    assert len(ids) * 4 < len(prompt.encode())


def test_stop_string_cut_works_with_merged_tokens(bpe: object) -> None:
    tok = bpe
    text = "x</think>\n<answer>\n```output\n3\n```\n</answer>\nUser: and more"
    ids = tok.encode(text, add_special_tokens=False)  # type: ignore[attr-defined]

    def decode(part: list[int]) -> str:
        return str(tok.decode(part))  # type: ignore[attr-defined]

    kept = truncate_at_stop(ids, decode, ["</answer>"])
    assert decode(kept).startswith(text[:text.index("</answer>") + len("</answer>")])
    assert "User" not in decode(kept)


def test_warmup_corpus_is_valid_azr(service_url: str) -> None:
    config = load_config(CONFIG, {"service.url": service_url, "warmup.examples": 36,
                                  "warmup.programs": 12})
    with Client(service_url) as client:
        corpus = build_corpus(client, config, random.Random(7))
        assert len(corpus) == 36
        assert {e.kind for e in corpus} == {f"{t.value}/{r}" for t in TaskType
                                            for r in ("propose", "solve")}
        # Every completion parses with the loop's own parsers, and every one is *right*:
        # proposals run, answers are accepted (fresh program text: the sandbox runs them).
        batch = CheckBatch()
        slots: list[ProposalSlot | AnswerSlot] = []
        n = config.azr.induction_inputs
        for example in corpus:
            task_type, role = example.kind.split("/")
            tt = TaskType(task_type)
            marker = f"\n# {uuid.uuid4().hex}"
            assert example.prompt.endswith("Assistant: <think>")
            if role == "propose" and tt is TaskType.INDUCTION:
                parsed = parse_induction_proposal(example.completion, n)
                assert parsed is not None and len(set(parsed.inputs)) == n
                program = example.prompt.split("```python\n", 1)[1].split("\n```", 1)[0]
                slots.append(batch.add_proposal(program + marker, parsed.inputs))
            elif role == "propose":
                triple = parse_triple_proposal(example.completion)
                assert triple is not None
                slots.append(batch.add_proposal(triple.program + marker, [triple.input]))
            else:
                answer = extract_solver_answer(tt, example.completion)
                assert answer is not None
                blocks = example.prompt.split("User:", 1)[1]
                if tt is TaskType.INDUCTION:
                    hidden = prompts_hidden(example.prompt)
                    slots.append(batch.add_induction(answer + marker, hidden))
                    continue
                program = blocks.split("```python\n", 1)[1].split("\n```", 1)[0] + marker
                if tt is TaskType.DEDUCTION:
                    given = blocks.split("```input\n", 1)[1].split("\n```", 1)[0]
                    slots.append(batch.add_deduction(program, given, answer))
                else:
                    gold = blocks.split("```output\n", 1)[1].split("\n```", 1)[0]
                    slots.append(batch.add_abduction(program, answer, gold))
        results = client.check(batch.items)
    assert not any(r.cached for r in results)
    for example, slot in zip(corpus, slots, strict=True):
        if isinstance(slot, ProposalSlot):
            proposal = slot.outcome(results)
            assert proposal.valid, (example.kind, example.completion, proposal)
        else:
            answer = slot.outcome(results)
            assert answer.correct, (example.kind, example.completion, answer)


def prompts_hidden(prompt: str) -> list[IOPair]:
    """The visible pairs of an induction prompt (the corpus answers with the program that
    made them, so they must be accepted as hidden pairs too)."""
    text = prompt.split("```text\n", 1)[1].split("\n```", 1)[0]
    pairs = []
    for line in text.splitlines():
        call, output = line.split(" == ", 1)
        pairs.append(IOPair(call[2:-1], output))
    return pairs


def test_warmup_lowers_the_loss(service_url: str) -> None:
    config = load_config(CONFIG, {"service.url": service_url, "warmup.steps": 12,
                                  "warmup.examples": 24, "warmup.programs": 8,
                                  "warmup.batch_size": 4})
    policy = load_policy(config.model, seed=0)
    with Client(service_url) as client:
        summary = run_warmup(policy, client, config, random.Random(0))
    assert summary["steps"] == 12 and summary["examples"] == 24
    assert summary["loss_last"] < summary["loss_first"]
    assert not policy.model.training  # handed back in eval mode
