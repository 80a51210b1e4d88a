"""Running programs must leave the thread's floating-point state as SQLite needs it.

The end-to-end tests run the localnet in the same process as a gridnode store. Before the flags
were cleared after each execution, creating a token account through the SPL programs made
SQLite read ``42.5`` as NaN, and store NULL in a NOT NULL column.
"""

from __future__ import annotations

import sqlite3

from .conftest import Chain


def test_sqlite_reads_real_literals_after_the_token_programs_ran(chain: Chain) -> None:
    payer = chain.funded()
    mint = chain.create_mint(payer)
    chain.create_ata(payer.pubkey(), mint.pubkey(), payer)
    db = sqlite3.connect(":memory:")
    assert db.execute("SELECT 42.5, CAST('0.1' AS REAL)").fetchone() == (42.5, 0.1)
