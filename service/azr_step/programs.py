"""Program families for the AZR-step workload: string, list and dict puzzles of the kind AZR's
proposer writes (word games, run-length codes, windows, groupings, inversions, nested data,
small classes), each with parameters drawn from a seeded RNG, an input generator and an input
that makes the program raise.

The sources are this project's own, trusted code: the workload generator runs them in-process to
know each gold output and to tell right answers from wrong ones (workload.py).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from string import Template

Params = dict[str, object]

WORDS = (
    "apple", "river", "stone", "cloud", "tiger", "lemon", "piano", "ocean", "maple", "ember",
    "quartz", "violet", "harbor", "candle", "meadow", "falcon", "copper", "willow", "garden",
    "silver", "rocket", "pepper", "island", "mirror", "velvet", "jungle", "basket", "cactus",
    "dragon", "forest", "nectar", "orbit", "pixel", "raven", "saddle", "timber", "umbra",
    "vortex", "wander", "yonder", "zephyr", "alpha", "bravo", "delta", "echo", "kilo", "lima",
)


def _sentence(rng: random.Random, low: int = 3, high: int = 7) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def _ints(rng: random.Random, low: int = 4, high: int = 9, lo: int = -20, hi: int = 60
          ) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(rng.randint(low, high))]


def _runs(rng: random.Random) -> str:
    return "".join(rng.choice("abcxyz") * rng.randint(1, 4) for _ in range(rng.randint(3, 6)))


def _word_counts(rng: random.Random) -> dict[str, int]:
    return {word: rng.randint(0, 4) for word in rng.sample(WORDS, rng.randint(3, 6))}


def _nested(rng: random.Random, depth: int = 0) -> list[object]:
    out: list[object] = []
    for _ in range(rng.randint(1, 3)):
        if depth < 3 and rng.random() < 0.4:
            out.append(_nested(rng, depth + 1))
        else:
            out.append(rng.randint(0, 30))
    return out


def _stack_ops(rng: random.Random) -> list[object]:
    ops: list[object] = []
    depth = 0
    for _ in range(rng.randint(4, 9)):
        if depth and rng.random() < 0.4:
            ops.append("pop")
            depth -= 1
        else:
            ops.append(rng.randint(1, 9))
            depth += 1
    return ops


def _brackets(rng: random.Random) -> str:
    pieces = ["()", "[]", "{}", "(", ")", "[x]", "{y}", "(z)", "]"]
    return "".join(rng.choice(pieces) for _ in range(rng.randint(3, 7)))


def _nested_dict(rng: random.Random) -> tuple[dict[str, object], str]:
    a, b, c = rng.sample(WORDS, 3)
    data: dict[str, object] = {a: {b: {c: rng.randint(0, 99)}, "n": rng.randint(0, 9)},
                               "k": [1, 2]}
    return data, f"{a}/{b}/{c}" if rng.random() < 0.7 else f"{a}/n"


@dataclass(frozen=True)
class Family:
    """A kind of puzzle: `template` with `$name` parameters defines `f`."""

    name: str
    template: str
    params: Callable[[random.Random], Params]
    draw_input: Callable[[random.Random], str]  # call-argument text of a valid input
    bad_input: str  # call-argument text that makes every instance raise

    def source(self, params: Params) -> str:
        return Template(self.template).substitute({k: str(v) for k, v in params.items()})


FAMILIES: tuple[Family, ...] = (
    Family(
        "reverse_words",
        "def f(text):\n"
        "    words = text.split()\n"
        "    return '$sep'.join(w[::-1] for w in reversed(words)) + '$tag'\n",
        lambda r: {"sep": r.choice([" ", "-", "_", "|"]), "tag": r.choice(["!", "?", "", "."])},
        lambda r: repr(_sentence(r)),
        "None",
    ),
    Family(
        "caesar",
        "def f(message, shift):\n"
        "    out = []\n"
        "    for ch in message:\n"
        "        if ch.isalpha():\n"
        "            base = ord('a') if ch.islower() else ord('A')\n"
        "            out.append(chr((ord(ch) - base + shift * $k) % 26 + base))\n"
        "        else:\n"
        "            out.append(ch)\n"
        "    return ''.join(out)\n",
        lambda r: {"k": r.randint(1, 5)},
        lambda r: f"{_sentence(r, 2, 4).title()!r}, {r.randint(1, 25)}",
        "'abc', 'x'",
    ),
    Family(
        "run_length",
        "def f(s):\n"
        "    if not s:\n"
        "        return []\n"
        "    runs = []\n"
        "    current, count = s[0], 1\n"
        "    for ch in s[1:]:\n"
        "        if ch == current:\n"
        "            count += 1\n"
        "        else:\n"
        "            runs.append((current, count))\n"
        "            current, count = ch, 1\n"
        "    runs.append((current, count))\n"
        "    return [(c, n) for c, n in runs if n >= $least]\n",
        lambda r: {"least": r.randint(1, 3)},
        lambda r: repr(_runs(r)),
        "12345",
    ),
    Family(
        "letter_histogram",
        "def f(text):\n"
        "    counts = {}\n"
        "    for ch in text.lower():\n"
        "        if ch.isalpha():\n"
        "            counts[ch] = counts.get(ch, 0) + 1\n"
        "    return {ch: n for ch, n in sorted(counts.items()) if n >= $least}\n",
        lambda r: {"least": r.randint(1, 3)},
        lambda r: repr(_sentence(r)),
        "None",
    ),
    Family(
        "window_sums",
        "def f(nums, width):\n"
        "    if width <= 0:\n"
        "        raise ValueError('width must be positive')\n"
        "    return [sum(nums[i:i + width]) $op $c for i in range(len(nums) - width + 1)]\n",
        lambda r: {"op": r.choice(["+", "-", "*"]), "c": r.randint(1, 5)},
        lambda r: f"{_ints(r)!r}, {r.randint(1, 4)}",
        "[1, 2, 3], 0",
    ),
    Family(
        "sort_by_residue",
        "def f(nums):\n"
        "    return sorted(nums, key=lambda x: (x % $m, -x))\n",
        lambda r: {"m": r.randint(2, 7)},
        lambda r: repr(_ints(r)),
        "[1, 'a', 3]",
    ),
    Family(
        "dedupe_rotate",
        "def f(items, k):\n"
        "    seen = set()\n"
        "    unique = []\n"
        "    for item in items:\n"
        "        if item not in seen:\n"
        "            seen.add(item)\n"
        "            unique.append(item)\n"
        "    if not unique:\n"
        "        return unique\n"
        "    k = (k + $shift) % len(unique)\n"
        "    return unique[k:] + unique[:k]\n",
        lambda r: {"shift": r.randint(0, 3)},
        lambda r: f"{[r.choice(WORDS[:8]) for _ in range(r.randint(4, 8))]!r}, {r.randint(0, 5)}",
        "[[1], [1]], 1",
    ),
    Family(
        "pair_sums",
        "def f(nums, target):\n"
        "    pairs = []\n"
        "    for i, a in enumerate(nums):\n"
        "        for b in nums[i + 1:]:\n"
        "            if a + b == target $op $c:\n"
        "                pairs.append((min(a, b), max(a, b)))\n"
        "    return sorted(set(pairs))\n",
        lambda r: {"op": r.choice(["+", "-"]), "c": r.randint(0, 3)},
        lambda r: f"{_ints(r, 5, 9, 0, 12)!r}, {r.randint(4, 16)}",
        "5, 3",
    ),
    Family(
        "running_extremes",
        "def f(nums):\n"
        "    lows, highs = [], []\n"
        "    for x in nums:\n"
        "        lows.append(min(lows[-1], x) if lows else x)\n"
        "        highs.append(max(highs[-1], x) if highs else x)\n"
        "    return (lows[::$step], highs[::$step])\n",
        lambda r: {"step": r.randint(1, 2)},
        lambda r: repr(_ints(r)),
        "[3, 'a']",
    ),
    Family(
        "parity_groups",
        "def f(nums):\n"
        "    groups = {'even': [], 'odd': []}\n"
        "    for x in nums:\n"
        "        groups['even' if x % 2 == 0 else 'odd'].append(x * $scale)\n"
        "    return groups\n",
        lambda r: {"scale": r.randint(1, 4)},
        lambda r: repr(_ints(r)),
        "['a']",
    ),
    Family(
        "invert_dict",
        "def f(mapping):\n"
        "    inverted = {}\n"
        "    for key, value in mapping.items():\n"
        "        inverted.setdefault(value $op $c, []).append(key)\n"
        "    return {value: sorted(keys) for value, keys in inverted.items()}\n",
        lambda r: {"op": r.choice(["+", "*"]), "c": r.randint(1, 3)},
        lambda r: repr(_word_counts(r)),
        "[1, 2]",
    ),
    Family(
        "merge_counts",
        "def f(a, b):\n"
        "    merged = dict(a)\n"
        "    for key, value in b.items():\n"
        "        merged[key] = merged.get(key, 0) + value\n"
        "    return sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))[:$top]\n",
        lambda r: {"top": r.randint(2, 5)},
        lambda r: f"{_word_counts(r)!r}, {_word_counts(r)!r}",
        "{'a': 1}, {'a': 'x'}",
    ),
    Family(
        "length_index",
        "def f(text):\n"
        "    lengths = {}\n"
        "    for word in text.split():\n"
        "        lengths.setdefault(len(word) $op $c, set()).add(word.lower())\n"
        "    return lengths\n",
        lambda r: {"op": r.choice(["+", "-"]), "c": r.randint(0, 2)},
        lambda r: repr(_sentence(r, 4, 8)),
        "None",
    ),
    Family(
        "flatten_depth",
        "def f(nested):\n"
        "    out = []\n"
        "    stack = [(nested, 0)]\n"
        "    while stack:\n"
        "        value, depth = stack.pop()\n"
        "        if isinstance(value, list):\n"
        "            for item in reversed(value):\n"
        "                stack.append((item, depth + 1))\n"
        "        else:\n"
        "            out.append((value + $c, depth))\n"
        "    return out\n",
        lambda r: {"c": r.randint(0, 5)},
        lambda r: repr(_nested(r)),
        "[1, ['a']]",
    ),
    Family(
        "chunks",
        "def f(s, n):\n"
        "    return [s[i:i + n][::$step] for i in range(0, len(s), n)]\n",
        lambda r: {"step": r.choice([1, -1])},
        lambda r: f"{r.choice(WORDS) + r.choice(WORDS)!r}, {r.randint(2, 4)}",
        "'abc', 0",
    ),
    Family(
        "transpose",
        "def f(matrix):\n"
        "    return [tuple(row[i] $op $c for row in matrix) for i in range(len(matrix[0]))]\n",
        lambda r: {"op": r.choice(["+", "*"]), "c": r.randint(1, 3)},
        lambda r: repr([[r.randint(0, 9) for _ in range(3)] for _ in range(r.randint(2, 4))]),
        "[]",
    ),
    Family(
        "symmetric_difference",
        "def f(a, b):\n"
        "    return (set(a) ^ set(b)) | {$c}\n",
        lambda r: {"c": r.randint(100, 120)},
        lambda r: f"{_ints(r, 3, 6, 0, 15)!r}, {_ints(r, 3, 6, 0, 15)!r}",
        "[[1]], []",
    ),
    Family(
        "mean_spread",
        "def f(values):\n"
        "    n = len(values)\n"
        "    mean = sum(values) / n\n"
        "    spread = sum((v - mean) ** 2 for v in values) / n\n"
        "    return {'mean': round(mean, $digits), 'spread': round(spread, $digits)}\n",
        lambda r: {"digits": r.randint(1, 3)},
        lambda r: repr(_ints(r)),
        "[]",
    ),
    Family(
        "stack_machine",
        "class Stack:\n"
        "    def __init__(self):\n"
        "        self.items = []\n"
        "\n"
        "    def push(self, x):\n"
        "        self.items.append(x)\n"
        "\n"
        "    def pop(self):\n"
        "        return self.items.pop()\n"
        "\n"
        "\n"
        "def f(ops):\n"
        "    stack = Stack()\n"
        "    out = []\n"
        "    for op in ops:\n"
        "        if op == 'pop':\n"
        "            out.append(stack.pop())\n"
        "        else:\n"
        "            stack.push(op * $k)\n"
        "    return out + stack.items\n",
        lambda r: {"k": r.randint(1, 4)},
        lambda r: repr(_stack_ops(r)),
        "['pop']",
    ),
    Family(
        "top_word",
        "def f(text):\n"
        "    counts = {}\n"
        "    for w in text.lower().split():\n"
        "        counts[w] = counts.get(w, 0) + 1\n"
        "    best = max(sorted(counts), key=lambda w: (counts[w], len(w)))\n"
        "    return (best, counts[best] $op $c)\n",
        lambda r: {"op": r.choice(["+", "*"]), "c": r.randint(1, 3)},
        lambda r: repr(_sentence(r, 4, 9)),
        "''",
    ),
    Family(
        "longest_increasing",
        "def f(nums):\n"
        "    tails = []\n"
        "    for x in nums:\n"
        "        lo, hi = 0, len(tails)\n"
        "        while lo < hi:\n"
        "            mid = (lo + hi) // 2\n"
        "            if tails[mid] < x:\n"
        "                lo = mid + 1\n"
        "            else:\n"
        "                hi = mid\n"
        "        if lo == len(tails):\n"
        "            tails.append(x)\n"
        "        else:\n"
        "            tails[lo] = x\n"
        "    return len(tails) + $c\n",
        lambda r: {"c": r.randint(0, 3)},
        lambda r: repr(_ints(r, 6, 12)),
        "[1, 'a']",
    ),
    Family(
        "bracket_depth",
        "def f(text):\n"
        "    pairs = {')': '(', ']': '[', '}': '{'}\n"
        "    stack = []\n"
        "    depth = 0\n"
        "    for ch in text:\n"
        "        if ch in '([{':\n"
        "            stack.append(ch)\n"
        "            depth = max(depth, len(stack))\n"
        "        elif ch in pairs:\n"
        "            if not stack or stack.pop() != pairs[ch]:\n"
        "                return (False, depth)\n"
        "    return (not stack, depth * $k)\n",
        lambda r: {"k": r.randint(1, 3)},
        lambda r: repr(_brackets(r)),
        "5",
    ),
    Family(
        "dict_path",
        "def f(data, path):\n"
        "    node = data\n"
        "    for key in path.split('/'):\n"
        "        node = node[key]\n"
        "    return node $op $c\n",
        lambda r: {"op": r.choice(["+", "*"]), "c": r.randint(1, 4)},
        lambda r: ", ".join(repr(part) for part in _nested_dict(r)),
        "{'a': 1}, 'b'",
    ),
    Family(
        "initials_index",
        "def f(words):\n"
        "    index = {}\n"
        "    for word in sorted(words, key=len):\n"
        "        index.setdefault(word[0], []).append(word[:$cut])\n"
        "    return index\n",
        lambda r: {"cut": r.randint(2, 5)},
        lambda r: repr(r.sample(WORDS, r.randint(3, 7))),
        "[1, 2]",
    ),
)
