"""Versioned, forward-only schema migrations.

Migrations are numbered SQL files (``NNNN_name.sql``) applied in order, each in its own
transaction together with the row that records it, so a crash leaves either the old or the new
schema. Each part of gridnode keeps its own number range (0001-0009 the core schema, 0010-0019
meters, 0020-0029 the transaction pipeline, 0030-0039 the event log and the API). A recorded migration whose file changed, or a database newer than this code, is an
error: applied migrations are history and are never edited.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gridnode.store.db import _Reads

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_TRACKING_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version       INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    applied_at_ms INTEGER NOT NULL
) STRICT
"""


class MigrationError(RuntimeError):
    """The database and the migration files disagree; nothing was changed."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """All migration files in `directory`, ordered by version; rejects duplicates and bad names."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if m is None:
            raise MigrationError(f"{path}: migration files are named NNNN_lowercase_name.sql")
        version = int(m.group(1))
        if version in found:
            raise MigrationError(f"{path}: version {version:04d} is used twice")
        found[version] = Migration(version, m.group(2), path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def applied(conn: sqlite3.Connection) -> dict[int, tuple[str, str]]:
    """version -> (name, sha256) of the migrations recorded in the database."""
    conn.execute(_TRACKING_TABLE)
    rows = conn.execute("SELECT version, name, sha256 FROM schema_migrations").fetchall()
    return {int(r[0]): (str(r[1]), str(r[2])) for r in rows}


async def current_version(db: _Reads) -> int:
    """The schema version of an open store: the highest migration applied (0: none)."""
    row = await db.fetchone("SELECT max(version) AS v FROM schema_migrations")
    return int(row["v"]) if row is not None and row["v"] is not None else 0


def pending(conn: sqlite3.Connection, migrations: list[Migration]) -> list[Migration]:
    """The migrations still to apply; raises MigrationError if the history does not match."""
    done = applied(conn)
    known = {m.version: m for m in migrations}
    for version, (name, digest) in sorted(done.items()):
        mig = known.get(version)
        if mig is None:
            raise MigrationError(
                f"database has migration {version:04d}_{name} which this gridnode does not know "
                "(the database is newer than the code)")
        if mig.sha256 != digest:
            raise MigrationError(
                f"migration {version:04d}_{mig.name}.sql changed after it was applied; "
                "applied migrations must never be edited, add a new numbered file instead")
    return [m for m in migrations if m.version not in done]


def apply(conn: sqlite3.Connection, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply every pending migration, each atomically with its record; returns those applied.

    `conn` must be in autocommit mode (isolation_level=None) so the explicit transactions here
    are the only ones.
    """
    if migrations is None:
        migrations = discover()
    todo = pending(conn, migrations)
    for mig in todo:
        try:
            conn.execute("BEGIN IMMEDIATE")
            # executescript would COMMIT first; run the statements one by one instead.
            for statement in _statements(mig.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, sha256, applied_at_ms) "
                "VALUES (?, ?, ?, ?)",
                (mig.version, mig.name, mig.sha256, time.time_ns() // 1_000_000))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise MigrationError(f"migration {mig.version:04d}_{mig.name}.sql failed: {exc}") from exc
    return todo


def _statements(sql: str) -> list[str]:
    """Split a script into complete statements (sqlite3.complete_statement knows the grammar)."""
    out: list[str] = []
    buf = ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if _strip_comments(buf).strip():
        raise MigrationError(f"incomplete SQL statement at the end of a migration: {buf.strip()[:80]}")
    return out


def _strip_comments(text: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())
