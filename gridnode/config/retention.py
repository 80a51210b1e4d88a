"""[retention]: how long raw readings are kept, and how the purge job runs.

The purge is an interval job of the daemon's scheduler: raw readings older than `raw_days` whose
interval is finalized are deleted in batches of `batch` rows, one short write transaction each,
then the freed pages are returned to the filesystem (`PRAGMA incremental_vacuum`).
"""

from __future__ import annotations

from pydantic import Field

from gridnode.config.base import Section


class RetentionConfig(Section):
    # Raw readings younger than this are kept whatever their interval's state (0: no purge).
    raw_days: float = Field(default=30.0, ge=0, le=36500)
    # How often the purge runs, and how many rows one write transaction deletes.
    every_s: float = Field(default=3600.0, ge=10, le=7 * 86400)
    batch: int = Field(default=500, ge=1, le=100_000)
