"""Keeping sandbox tests honest: every program they send is new, and no answer comes from the cache.

The engine caches what a (program, input) did (service/stores/cache/) and the session shares one
engine, so a test that reuses another test's program text is answered from memory and never
reaches a sandbox. Three tools:

- `fresh(program)`: the program with a trailing comment unique to this call, so no cache
  (in-process or Redis) has ever seen it.
- `assert_executed(results)`: fails when any result says `cached`, whatever carried it (the
  engine's `CheckResult`, the client's, or a JSON dict from the API or the CLI).
- the `sandbox` marker (tests/conftest.py): a test that uses the session engine, directly or
  through an API server, fails when the engine answered anything from its cache during it;
  `@pytest.mark.sandbox(cache_hits=N)` for a test that means to produce exactly N hits.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

ResultLike = Mapping[str, Any] | BaseModel


def fresh(program: str) -> str:
    """`program` plus a comment line unique to this call (behaviour unchanged, cache key new)."""
    return f"{program.rstrip()}\n# fresh {uuid.uuid4().hex}\n"


def token() -> str:
    """A short unique tag for ids and program text built by hand."""
    return uuid.uuid4().hex[:12]


def _as_dict(result: ResultLike) -> Mapping[str, Any]:
    return result if isinstance(result, Mapping) else result.model_dump()


def assert_executed(results: Iterable[ResultLike]) -> None:
    """Every result was computed for this request, none answered from the cache."""
    answered = [_as_dict(result) for result in results]
    assert answered, "no results to check"
    cached = [r for r in answered if r.get("cached") is not False]
    assert not cached, f"{len(cached)} result(s) came from the cache, not a sandbox: " \
                       f"{cached[:3]}"
