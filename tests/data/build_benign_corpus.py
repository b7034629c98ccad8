"""Builds tests/data/benign_corpus.jsonl from the hand-written programs in tests/data/benign/.

Each `benign/*.txt` file holds records of the form

    ### <id> | <input: the literal call arguments>
    <program text, which defines f>

The builder runs every program (they are this project's own, trusted code) in a plain CPython
subprocess, twice with different hash seeds, records `repr(f(*args))` as the expected output, and
refuses to write the corpus when a program raises, returns a non-literal (the service's
`not_literal`) or differs between the two runs (by value, as the service compares). Run it after
editing the sources:

    .venv/bin/python tests/data/build_benign_corpus.py
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "benign"
CORPUS = HERE / "benign_corpus.jsonl"
HEADER = "### "

# Runs in the subprocess: reads the records as JSON on stdin, writes one output per record.
_RUNNER = r"""
import io, json, sys
SCALARS = (int, float, complex, str, bytes, bool, type(None))
def is_literal(value):  # the runner's rule: exact literal types all the way down
    kind = type(value)
    if kind in SCALARS:
        return True
    if kind in (list, tuple, set, frozenset):
        return all(is_literal(v) for v in value)
    if kind is dict:
        return all(is_literal(k) and is_literal(v) for k, v in value.items())
    return False
records = json.load(sys.stdin)
outputs = []
real_stdout, sys.stdout = sys.stdout, io.StringIO()  # what programs print is not output
for record in records:
    namespace = {"__name__": "__main__"}
    try:
        exec(compile(record["program"], "<program>", "exec"), namespace)
        args, kwargs = eval("(lambda *a, **k: (a, k))(" + record["input"] + "\n)", {})
        value = namespace["f"](*args, **kwargs)
        if is_literal(value):
            outputs.append({"repr": repr(value)})
        else:
            outputs.append({"error": f"returned a {type(value).__name__}, not a literal"})
    except BaseException as exc:
        outputs.append({"error": f"{type(exc).__name__}: {exc}"})
json.dump(outputs, real_stdout)
"""


def read_sources(folder: Path = SOURCES) -> list[dict[str, str]]:
    """Every record of every source file, in file and then text order."""
    records: list[dict[str, str]] = []
    for path in sorted(folder.glob("*.txt")):
        current: dict[str, str] | None = None
        lines: list[str] = []
        for line in path.read_text().splitlines():
            if line.startswith(HEADER):
                if current is not None:
                    current["program"] = "\n".join(lines).strip("\n") + "\n"
                    records.append(current)
                identifier, _, arguments = line[len(HEADER):].partition(" | ")
                current, lines = {"id": identifier.strip(), "input": arguments.strip()}, []
            elif current is not None:
                lines.append(line)
        if current is not None:
            current["program"] = "\n".join(lines).strip("\n") + "\n"
            records.append(current)
    identifiers = [r["id"] for r in records]
    duplicates = sorted({i for i in identifiers if identifiers.count(i) > 1})
    if duplicates:
        raise SystemExit(f"duplicate ids: {duplicates}")
    return records


def run_all(records: list[dict[str, str]], hash_seed: str) -> list[dict[str, str]]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    result = subprocess.run([sys.executable, "-c", _RUNNER], input=json.dumps(records),
                            capture_output=True, text=True, env=env, check=True, timeout=600)
    outputs: list[dict[str, str]] = json.loads(result.stdout)
    return outputs


def main() -> None:
    records = read_sources()
    first, second = run_all(records, "1"), run_all(records, "2")
    problems = []
    for record, one, two in zip(records, first, second, strict=True):
        if "error" in one:
            problems.append(f"{record['id']}: {one['error']}")
        elif one != two and ast.literal_eval(one["repr"]) != ast.literal_eval(two["repr"]):
            # a set's repr may differ between hash seeds; its value may not
            problems.append(f"{record['id']}: differs between hash seeds")
        else:
            record["output"] = one["repr"]
    if problems:
        raise SystemExit("\n".join(problems))
    with CORPUS.open("w") as out:
        for record in records:
            out.write(json.dumps({key: record[key] for key in ("id", "program", "input",
                                                                "output")}) + "\n")
    print(f"wrote {len(records)} programs to {CORPUS.relative_to(HERE.parent.parent)}")


if __name__ == "__main__":
    main()
