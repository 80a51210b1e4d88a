"""[retention]: how long raw readings and events are kept, and how the purge jobs run.

The purges are interval jobs of the daemon's scheduler. Raw readings older than `raw_days` whose
interval is finalized are deleted in batches of `batch` rows, one short write transaction each.
Events older than `event_days` are deleted once every delivery destination has taken them (its
cursor passed them and nothing it made of them is still pending), with the delivered items made
from them. Oracle readings finalized more than `detail_days` ago (and taken by every destination)
lose their audit trail, decoded events and signed bytes; their rows stay. Then the freed pages
are returned to the filesystem (`PRAGMA incremental_vacuum`).
"""

from __future__ import annotations

from pydantic import Field

from gridnode.config.base import Section


class RetentionConfig(Section):
    # Raw readings younger than this are kept whatever their interval's state (0: no purge).
    raw_days: float = Field(default=30.0, ge=0, le=36500)
    # Events (and delivered items) younger than this are kept (0: no purge).
    event_days: float = Field(default=30.0, ge=0, le=36500)
    # The audit trail, decoded events and signed bytes of a finalized oracle reading that went
    # the plain way are kept this long, and until every delivery destination has taken it; the
    # operation's row, times and signature stay for good (0: kept for good).
    detail_days: float = Field(default=30.0, ge=0, le=36500)
    # How often the purge runs, and how many rows one write transaction deletes.
    every_s: float = Field(default=3600.0, ge=10, le=7 * 86400)
    batch: int = Field(default=500, ge=1, le=100_000)
