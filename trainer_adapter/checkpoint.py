"""Checkpoints: model and tokenizer (transformers format), buffers and trainer state."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from .buffers import Buffers
from .model import Policy


def buffers_to_json(buffers: Buffers) -> dict[str, Any]:
    return {
        "deduction": [dataclasses.asdict(t) for t in buffers.deduction],
        "abduction": [dataclasses.asdict(t) for t in buffers.abduction],
        "induction": [dataclasses.asdict(t) for t in buffers.induction],
    }


def save_checkpoint(out_dir: Path, step: int, policy: Policy, buffers: Buffers,
                    state: dict[str, Any], keep: int) -> Path:
    root = out_dir / "checkpoints"
    path = root / f"step-{step:06d}"
    path.mkdir(parents=True, exist_ok=True)
    policy.model.save_pretrained(path)
    policy.tokenizer.save_pretrained(path)
    (path / "buffers.json").write_text(json.dumps(buffers_to_json(buffers), indent=1))
    (path / "trainer_state.json").write_text(json.dumps({"step": step, **state}, indent=1,
                                                        default=str))
    # Older checkpoints go; `keep` newest stay.
    for old in sorted(root.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path
