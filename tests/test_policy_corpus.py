"""The benign corpus (tests/data/benign_corpus.jsonl, see tests/data/README.md) under `azr`.

The policy must accept real benign programs: at least 99.5% of the corpus, every refusal listed
in the failure message. And the programs must really run: through `azr-verify check` on the
process backend (bubblewrap), every one is `accepted` with the output recorded when the corpus
was built, never `unsafe`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from azr_verify.service.models import PolicyName
from azr_verify.service.verify.policy import check_program

from .data.build_benign_corpus import CORPUS, read_sources
from .servers import require_bwrap

REQUIRED_ACCEPTANCE = 0.995


def corpus() -> list[dict[str, str]]:
    return [json.loads(line) for line in CORPUS.read_text().splitlines()]


def test_corpus_is_built_from_its_sources() -> None:
    built = corpus()
    sources = read_sources()
    assert [(r["id"], r["program"], r["input"]) for r in built] == [
        (r["id"], r["program"], r["input"]) for r in sources]
    assert len(built) >= 500
    assert all(r["output"] for r in built)


def test_policy_accepts_the_benign_corpus() -> None:
    refused = []
    for record in corpus():
        result = check_program(record["program"], PolicyName.AZR)
        if result.syntax_error or result.violations or not result.has_entry:
            reasons = [(v.rule, v.name, v.line) for v in result.violations]
            refused.append(f"{record['id']}: {result.syntax_error or reasons}")
    rate = 1 - len(refused) / len(corpus())
    assert rate >= REQUIRED_ACCEPTANCE, f"{rate:.2%} accepted; refused:\n" + "\n".join(refused)


@pytest.mark.slow
def test_corpus_runs_accepted_in_the_process_sandbox(tmp_path: Path) -> None:
    require_bwrap()
    nonce = uuid.uuid4().hex  # fresh program text: nothing can come from a cache
    records = corpus()
    lines = [json.dumps({"id": r["id"], "program": f"{r['program']}# run {nonce}\n",
                         "input": r["input"], "output": r["output"]}) for r in records]
    source = tmp_path / "corpus.jsonl"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "results.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "azr_verify.service.cli", "check", str(source), "-o", str(out),
         "-q", "--workers", "2", "--policy", "azr", "--backend", "process"],
        capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in rows] == [r["id"] for r in records]
    assert not [row for row in rows if row["cached"]]
    unsafe = [row["id"] for row in rows if row["verdict"] == "unsafe"]
    assert not unsafe
    wrong = [(row["id"], row["verdict"], row["error"]) for row in rows
             if row["verdict"] != "accepted"]
    assert not wrong, "\n".join(map(str, wrong))
