"""The client's sans-IO core and AZR folding, without a network."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from azr_verify.client import (
    AnswerState,
    CheckBatch,
    CheckResult,
    ClientConfig,
    IOPair,
    RateLimitedError,
    TransportError,
    Verdict,
    fold_answer,
    fold_proposal,
)
from azr_verify.client._core import (
    ApiRequest,
    ApiResponse,
    Concurrent,
    Core,
    Sleep,
    parse_retry_after,
)


def result(verdict: Verdict, output: str | None = None) -> CheckResult:
    return CheckResult(verdict=verdict, output=output)


A, W, S, R = Verdict.ACCEPTED, Verdict.WRONG_OUTPUT, Verdict.SANDBOX_ERROR, Verdict.RUNTIME_ERROR


def test_fold_answer() -> None:
    assert fold_answer([result(A), result(A)]).state is AnswerState.CORRECT
    assert fold_answer([result(A), result(W)]).state is AnswerState.WRONG
    # A sandbox_error is never a wrong answer...
    assert fold_answer([result(A), result(S)]).state is AnswerState.INFRA_FAILURE
    # ...unless another triple already failed for real.
    assert fold_answer([result(W), result(S)]).state is AnswerState.WRONG
    assert fold_answer([]).state is AnswerState.WRONG


def test_fold_proposal() -> None:
    ok = fold_proposal([result(A, "1"), result(A, "2")])
    assert ok.valid and ok.outputs == ("1", "2")
    bad = fold_proposal([result(A, "1"), CheckResult(verdict=R, error_type="KeyError")])
    assert not bad.valid and bad.reason is R and bad.detail == "KeyError"
    partial = fold_proposal([result(A, "1"), result(R), result(A, "3")], min_valid=2)
    assert partial.valid and partial.outputs == ("1", None, "3")
    unknown = fold_proposal([result(A, "1"), result(S)])
    assert unknown.infra_failure and not unknown.valid
    enough = fold_proposal([result(A, "1"), result(A, "2"), result(S)], min_valid=2)
    assert enough.valid and not enough.infra_failure


def test_check_batch_maps_triples_like_design_section_2() -> None:
    batch = CheckBatch(meta={"step": 1})
    prop = batch.add_proposal("P", ["i1", "i2"], min_valid=1)
    ded = batch.add_deduction("P", "i", "o'")
    abd = batch.add_abduction("P", "i'", "o*")
    ind = batch.add_induction("P'", [IOPair("i1", "o1"), IOPair("i2", "o2")],
                              meta={"role": "solve"})
    triples = [(i.program, i.input, i.output) for i in batch.items]
    assert triples == [("P", "i1", None), ("P", "i2", None), ("P", "i", "o'"),
                       ("P", "i'", "o*"), ("P'", "i1", "o1"), ("P'", "i2", "o2")]
    assert batch.items[-1].meta == {"step": 1, "role": "solve"}
    results = [result(A, "x"), result(R), result(W), result(A), result(A), result(A)]
    assert prop.outcome(results).valid
    assert ded.outcome(results).state is AnswerState.WRONG
    assert abd.outcome(results).correct and ind.outcome(results).correct
    with pytest.raises(ValueError):
        batch.add_induction("P'", [])


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("3", 3.0), ("0", 0.0), ("1.5", 1.5), ("-4", 0.0), ("soon", None),
    ("nan", None),
])
def test_parse_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    parsed = parse_retry_after(format_datetime(when, usegmt=True))
    assert parsed is not None and 25 <= parsed <= 31


def test_backoff_is_capped_full_jitter() -> None:
    core = Core(ClientConfig(backoff_initial_s=0.5, backoff_max_s=4.0), random.Random(0))
    for attempt in range(10):
        cap = min(4.0, 0.5 * 2 ** attempt)
        assert all(0 <= core.backoff(attempt) <= cap for _ in range(50))
    # Retry-After is a floor, never shortened by jitter.
    assert all(core.retry_delay(0, 2.0) >= 2.0 for _ in range(50))
    capped = Core(ClientConfig(retry_after_max_s=5.0), random.Random(0))
    assert capped.retry_delay(0, 3600.0) < 6.0


def _ok(results: list[dict[str, Any]]) -> ApiResponse:
    return ApiResponse(200, {}, json.dumps({"results": results}).encode())


def test_sans_io_check_flow_retries_then_answers() -> None:
    """Drive the core by hand: the same generator both clients run."""
    core = Core(ClientConfig(api_key="k", max_retries=3), random.Random(0))
    flow = core.check([{"program": "p", "input": "1"}])
    request = next(flow)
    assert isinstance(request, ApiRequest) and request.path == "/v1/check"
    assert request.headers["authorization"] == "Bearer k"
    assert json.loads(request.body or b"") == {"items": [{"program": "p", "input": "1",
                                                          "entry": "f"}], "policy": "azr"}
    sleep = flow.throw(TransportError("refused"))
    assert isinstance(sleep, Sleep)
    again = flow.send(None)
    assert again == request
    limited = ApiResponse(429, {"retry-after": "2"},
                          b'{"error": {"code": "overloaded", "message": "busy"}}')
    wait = flow.send(limited)
    assert isinstance(wait, Sleep) and wait.seconds >= 2.0
    assert flow.send(None) == request
    with pytest.raises(StopIteration) as done:
        flow.send(_ok([{"verdict": "accepted", "output": "1"}]))
    assert done.value.value == [CheckResult(verdict=A, output="1")]


def test_sans_io_retries_exhausted() -> None:
    core = Core(ClientConfig(max_retries=0))
    flow = core.check([{"program": "p", "input": "1"}])
    next(flow)
    with pytest.raises(RateLimitedError) as info:
        flow.send(ApiResponse(429, {"retry-after": "7"}, b""))
    assert info.value.retry_after_s == 7.0 and info.value.code == "http_429"


def test_sans_io_chunks_are_concurrent_subflows() -> None:
    core = Core(ClientConfig(chunk_size=2))
    flow = core.check([{"program": "p", "input": str(k)} for k in range(5)])
    effect = next(flow)
    assert isinstance(effect, Concurrent) and len(effect.flows) == 3
    outputs = []
    for sub in effect.flows:
        req = next(sub)
        items = json.loads(req.body or b"")["items"]
        with pytest.raises(StopIteration) as done:
            sub.send(_ok([{"verdict": "accepted", "output": i["input"]} for i in items]))
        outputs.append(done.value.value)
    with pytest.raises(StopIteration) as final:
        flow.send(outputs)
    assert [r.output for r in final.value.value] == ["0", "1", "2", "3", "4"]


def test_config_from_env() -> None:
    config = ClientConfig.from_env({"AZR_VERIFY_URL": "http://svc:9", "AZR_VERIFY_API_KEY": "k"},
                                   chunk_size=8)
    assert (config.base_url, config.api_key, config.chunk_size) == ("http://svc:9", "k", 8)
    assert ClientConfig.from_env({}).base_url == "http://127.0.0.1:8000"
