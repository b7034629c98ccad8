"""`samples.jsonl`: every sampled completion of a run, what was parsed from it, what the
verifier said and what it was paid, so a person can read what the model actually did.

One JSON object per completion, in the order they were generated within a step:
`step`, `stage` (seed/propose/learnability/solve), `task_type`, `role`, `completion`,
`parsed` (program/input, inputs/message or the answer; null when malformed), `outcome`
(passable/wrong/malformed/excluded), `verdicts`, `detail` (why it was rejected), `task` (what
was asked, for solver stages), `solve_rate` (proposals), `reward` and `advantage` (trained
samples), and the prompt when `run.log_prompts` is on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO


class SampleLog:
    def __init__(self, path: Path, *, log_prompts: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.log_prompts = log_prompts
        self._file: TextIO = path.open("a", encoding="utf-8")

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            if not self.log_prompts:
                record = {k: v for k, v in record.items() if k != "prompt"}
            self._file.write(json.dumps(record, default=str) + "\n")
        # Flushed per step: a crashed run keeps what it sampled.
        self._file.flush()

    def close(self) -> None:
        self._file.close()
