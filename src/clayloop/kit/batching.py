"""Group commit: run what concurrent callers submit together, as one batch.

A hot path that makes one small database write per request pays, per request, a round
trip, a statement's start-up and a commit (a WAL flush). Under load those fixed costs
dominate the database's CPU. A :class:`Coalescer` lets each request submit its write
and wait for its own result while a few *lanes* run whatever has queued up since the
last batch started, as one statement:

* with a lane free, a submission starts a batch at the next turn of the event loop,
  so a lone request waits for nothing but its own write;
* with every lane busy, submissions queue and the next free lane takes them all (up
  to ``max_items``), so batches grow exactly as fast as load does;
* two submissions with the same key never share a batch (a batch is one statement,
  and a statement must not write one row twice); the later one waits for the next.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Entry(Generic[T, R]):
    key: Hashable
    item: T
    future: asyncio.Future[R] = field(repr=False)


class Coalescer(Generic[T, R]):
    """Runs submissions in batches through ``run``, at most ``lanes`` batches at once.

    ``run`` takes the batch's items and returns one result per item, in order. When it
    raises, every submitter of that batch gets the exception.
    """

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        lanes: int,
        max_items: int,
    ) -> None:
        if lanes < 1 or max_items < 1:
            raise ValueError("a coalescer needs at least one lane and one item per batch")
        self._run = run
        self._lanes = lanes
        self._max_items = max_items
        self._pending: deque[_Entry[T, R]] = deque()
        self._busy = 0
        self._starting = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, key: Hashable, item: T) -> R:
        """Run ``item`` in the next batch that can take it, and return its result."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append(_Entry(key, item, future))
        self._kick()
        return await future

    def _kick(self) -> None:
        # One lane starts per turn of the loop: the batch is taken when its task first
        # runs, so everything submitted until then joins it.
        if self._starting or self._busy >= self._lanes or not self._pending:
            return
        self._busy += 1
        self._starting = True
        task = asyncio.get_running_loop().create_task(self._lane())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[_Entry[T, R]]:
        batch: list[_Entry[T, R]] = []
        keys: set[Hashable] = set()
        later: deque[_Entry[T, R]] = deque()
        while self._pending and len(batch) < self._max_items:
            entry = self._pending.popleft()
            if entry.future.done():
                continue  # its submitter was cancelled before the batch started
            if entry.key in keys:
                later.append(entry)
            else:
                keys.add(entry.key)
                batch.append(entry)
        self._pending.extendleft(reversed(later))
        return batch

    async def _lane(self) -> None:
        self._starting = False
        batch = self._take()
        self._kick()  # what this batch could not take may start on another lane
        try:
            if batch:
                await self._settle(batch)
        finally:
            self._busy -= 1
            self._kick()

    async def _settle(self, batch: list[_Entry[T, R]]) -> None:
        try:
            results = await self._run([entry.item for entry in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} got {len(results)} results")
        except Exception as exc:
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_exception(exc)
            return
        except BaseException:
            # Cancelled (shutdown): nobody will answer these submitters either.
            for entry in batch:
                entry.future.cancel()
            raise
        for entry, result in zip(batch, results, strict=True):
            if not entry.future.done():
                entry.future.set_result(result)
