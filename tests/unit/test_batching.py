"""Group commit: what concurrent callers submit runs together, a few batches at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

import pytest

from clayloop.kit.batching import Coalescer


class Recorder:
    """A batch function that records each batch and can hold it until released."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.running = 0
        self.most_running = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_on: str | None = None

    async def __call__(self, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.gate.wait()
        finally:
            self.running -= 1
        if self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [item.upper() for item in items]


async def settle() -> None:
    """Let every ready task run until the loop is idle."""
    for _ in range(10):
        await asyncio.sleep(0)


def submit(co: Coalescer[str, str], key: Hashable, item: str) -> asyncio.Task[str]:
    return asyncio.create_task(co.submit(key, item))


async def busy(
    run: Recorder, lanes: int = 1, max_items: int = 10
) -> tuple[Coalescer[str, str], asyncio.Task[str]]:
    """A coalescer whose first batch (item "a", key "a") is running, held by ``run``'s gate."""
    run.gate.clear()
    co = Coalescer(run, lanes=lanes, max_items=max_items)
    first = submit(co, "a", "a")
    await settle()
    return co, first


async def test_a_lone_submission_runs_at_once_in_a_batch_of_its_own():
    run = Recorder()
    co = Coalescer(run, lanes=2, max_items=10)

    assert await co.submit("a", "a") == "A"
    assert run.batches == [["a"]]


async def test_submissions_made_in_the_same_turn_share_one_batch():
    run = Recorder()
    co = Coalescer(run, lanes=1, max_items=10)

    results = await asyncio.gather(*(co.submit(i, f"x{i}") for i in range(5)))

    assert results == [f"X{i}" for i in range(5)]
    assert run.batches == [[f"x{i}" for i in range(5)]]


async def test_while_every_lane_is_busy_submissions_queue_for_the_next_batch():
    run = Recorder()
    co, first = await busy(run)
    queued = [submit(co, k, k) for k in ("b", "c", "d")]
    await settle()
    assert run.batches == [["a"]]  # nothing else started: the only lane is busy

    run.gate.set()
    assert await first == "A"
    assert await asyncio.gather(*queued) == ["B", "C", "D"]
    assert run.batches == [["a"], ["b", "c", "d"]]


async def test_no_more_batches_run_at_once_than_there_are_lanes():
    run = Recorder()
    run.gate.clear()
    co = Coalescer(run, lanes=2, max_items=10)
    tasks = []
    for key in "abcdef":
        tasks.append(submit(co, key, key))
        await settle()
    assert run.running == 2

    run.gate.set()
    assert await asyncio.gather(*tasks) == list("ABCDEF")
    assert run.most_running == 2
    assert run.batches == [["a"], ["b"], ["c", "d", "e", "f"]]


async def test_two_submissions_with_one_key_never_share_a_batch():
    run = Recorder()
    co, first = await busy(run)
    queued = [
        submit(co, "lead-1", "w1"),
        submit(co, "lead-2", "w2"),
        submit(co, "lead-1", "w3"),
        submit(co, "lead-3", "w4"),
    ]
    await settle()

    run.gate.set()
    await first
    assert await asyncio.gather(*queued) == ["W1", "W2", "W3", "W4"]
    # The second write of lead-1 waits for the next batch, first in line there.
    assert run.batches == [["a"], ["w1", "w2", "w4"], ["w3"]]


async def test_a_batch_takes_at_most_max_items_and_the_rest_follow():
    run = Recorder()
    co, first = await busy(run, max_items=3)
    queued = [submit(co, i, f"q{i}") for i in range(1, 8)]
    await settle()

    run.gate.set()
    await first
    await asyncio.gather(*queued)
    assert [len(b) for b in run.batches] == [1, 3, 3, 1]
    assert [item for b in run.batches for item in b] == ["a"] + [f"q{i}" for i in range(1, 8)]


async def test_a_failed_batch_fails_each_of_its_submitters_and_the_next_batch_runs():
    run = Recorder()
    run.fail_on = "b"
    co, first = await busy(run)
    failing = [submit(co, "b", "b"), submit(co, "c", "c")]
    await settle()
    run.gate.set()
    assert await first == "A"
    for task in failing:
        with pytest.raises(ValueError, match="bad item b"):
            await task

    assert await co.submit("d", "d") == "D"


async def test_a_batch_function_that_loses_results_is_an_error_not_a_wrong_answer():
    async def short(items: list[str]) -> list[str]:
        return items[:-1]

    co = Coalescer(short, lanes=1, max_items=10)
    results = await asyncio.gather(co.submit("a", "a"), co.submit("b", "b"), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_a_submitter_cancelled_before_its_batch_starts_is_left_out():
    run = Recorder()
    co, first = await busy(run)
    gone = submit(co, "b", "b")
    kept = submit(co, "c", "c")
    await settle()
    gone.cancel()
    await settle()

    run.gate.set()
    await first
    assert await kept == "C"
    assert run.batches == [["a"], ["c"]]


async def test_a_coalescer_needs_a_lane_and_room_for_an_item():
    run = Recorder()
    with pytest.raises(ValueError):
        Coalescer(run, lanes=0, max_items=1)
    with pytest.raises(ValueError):
        Coalescer(run, lanes=1, max_items=0)
