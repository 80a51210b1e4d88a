"""Fixtures of the deliveries tests: a signing secret and the real platform simulator (an
aiohttp server on a free loopback port, SQLite behind it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gridnode.deliveries import signing
from gridnode.store import Store
from simulators.platform import PlatformSimulator
from tests.net import pick_free_port


@pytest.fixture
def secret() -> str:
    return signing.generate_secret()


@pytest.fixture
async def platform(tmp_path: Path, secret: str) -> AsyncIterator[PlatformSimulator]:
    sim = PlatformSimulator(tmp_path / "platform.db", [secret], port=pick_free_port())
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "node" / "gridnode.db")
    try:
        yield s
    finally:
        await s.close()
