"""The pool's fair queue: requests take turns, nobody waits behind another's backlog."""

from __future__ import annotations

import threading

from azr_verify.service.sandbox.fair_queue import FairQueue


def test_one_tenant_is_a_fifo() -> None:
    work: FairQueue[int] = FairQueue()
    for item in range(10):
        work.put(item, "a")
    assert work.take(4) == [0, 1, 2, 3]
    assert work.take(100) == [4, 5, 6, 7, 8, 9]
    assert len(work) == 0


def test_a_small_request_goes_out_in_the_next_frame() -> None:
    work: FairQueue[str] = FairQueue()
    for item in range(1000):
        work.put(f"big{item}", "big")
    assert work.take(8) == [f"big{item}" for item in range(8)]
    work.put("small", "small")
    frame = work.take(8)
    assert frame is not None and "small" in frame[:2]
    # and the big one carries on in order
    assert [item for item in frame if item != "small"] == [f"big{n}" for n in range(8, 15)]


def test_turns_carry_over_between_frames() -> None:
    work: FairQueue[str] = FairQueue()
    for tenant in "abc":
        for item in range(4):
            work.put(f"{tenant}{item}", tenant)
    frames = [work.take(2) for _ in range(6)]
    assert frames == [["a0", "b0"], ["c0", "a1"], ["b1", "c1"], ["a2", "b2"], ["c2", "a3"],
                      ["b3", "c3"]]


def test_take_waits_for_work_and_close_ends_it() -> None:
    work: FairQueue[int] = FairQueue()
    taken: list[list[int] | None] = []
    waiting = threading.Thread(target=lambda: taken.append(work.take(4)))
    waiting.start()
    work.put(7, "a")
    waiting.join()
    assert taken == [[7]]
    closing = threading.Thread(target=lambda: taken.append(work.take(4)))
    closing.start()
    work.close()
    closing.join()
    assert taken[-1] is None


def test_drain_returns_what_no_worker_took() -> None:
    work: FairQueue[int] = FairQueue()
    for item in range(3):
        work.put(item, item % 2)
    work.close()
    assert sorted(work.drain()) == [0, 1, 2]
    assert work.take(1) is None


def test_take_nowait_returns_at_once_and_keeps_the_turns() -> None:
    work: FairQueue[str] = FairQueue()
    assert work.take_nowait(4) == []  # no work: nothing, without waiting
    for tenant in "ab":
        for item in range(3):
            work.put(f"{tenant}{item}", tenant)
    assert work.take_nowait(3) == ["a0", "b0", "a1"]
    assert work.take(3) == ["b1", "a2", "b2"]
    assert work.take_nowait(3) == []
