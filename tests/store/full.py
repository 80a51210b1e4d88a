"""A full disk on any machine, without root: cap the database at the pages it has now.

SQLite then refuses the next write that needs a new page with SQLITE_FULL ("database or disk is
full"), exactly as when the filesystem is full; raising the cap is the space coming back.
"""

from __future__ import annotations

from gridnode.store import Store


async def fill_up(store: Store) -> None:
    async with store.write() as tx:
        pages = await tx.fetchone("PRAGMA page_count")
        assert pages is not None
        await tx.execute(f"PRAGMA max_page_count = {pages[0]}")


async def make_room(store: Store) -> None:
    async with store.write() as tx:
        await tx.execute("PRAGMA max_page_count = 1073741823")
