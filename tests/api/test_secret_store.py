"""The callback secret cache re-reads workspace secrets once, however many callbacks wait."""

from __future__ import annotations

import asyncio

from clayloop.kit.runtime import SecretStore
from tests.conftest import SECRET


class CountingStore(SecretStore):
    """The real store, counting how often it reads the database."""

    reads: int = 0

    async def refresh(self) -> None:
        self.reads += 1
        await super().refresh()


async def test_callbacks_finding_the_cache_old_at_once_read_it_once(engine):
    store = CountingStore(engine=engine, server_secrets=[SECRET])
    await store.refresh()
    store.loaded_at -= 60  # old: the next callbacks must re-read
    before = store.reads

    found = await asyncio.gather(
        *(store.verify({"x-clay-signature": SECRET}, b"{}") for _ in range(32))
    )

    assert all(c is not None and c.workspace_id is None for c in found)
    assert store.reads - before == 1


async def test_unknown_credentials_at_once_read_at_most_once(engine):
    store = CountingStore(engine=engine, server_secrets=[SECRET])
    await store.refresh()
    store.loaded_at -= 2  # fresh for old-cache purposes, old enough for a miss re-read
    before = store.reads

    found = await asyncio.gather(
        *(store.verify({"x-clay-signature": "wrong"}, b"{}") for _ in range(32))
    )

    assert found == [None] * 32
    assert store.reads - before == 1
