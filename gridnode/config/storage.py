"""[storage]: the disk guard, what the node does before its file system is full.

Below `min_free_mb` free on the data directory's file system the node stops keeping raw
readings (intervals are still written: their boundary counters are the evidence, and the
counters make the raw readings in between derivable anyway), raises the `disk_guard` alert, and
resumes by itself once `min_free_mb + resume_margin_mb` are free again. 0 switches it off.
"""

from __future__ import annotations

from pydantic import Field

from gridnode.config.base import Section


class StorageConfig(Section):
    min_free_mb: float = Field(default=100.0, ge=0)
    # Hysteresis: space needed above min_free_mb before raw readings are kept again.
    resume_margin_mb: float = Field(default=10.0, ge=0)
    # How often the free space is looked at.
    check_every_s: float = Field(default=10.0, ge=0.05, le=3600)
