"""The disk guard: raw readings are held back before the data directory's file system is full.

An SD card that fills up stops everything, so the node gives up what it can re-derive first:
below `[storage] min_free_mb` free, the meters' recorders keep no raw rows (intervals, their
operations and the builder states are still written; the interval rows carry the boundary
counters), the `disk_guard` alert is raised, and once `min_free_mb + resume_margin_mb` are free
again raw rows are kept again and the alert clears. Each change is logged once.

A write that fails anyway (the disk filled faster than the guard looked) is the recorder's
StorageFull path: retried, never fatal, nothing half-written. An alert change the store cannot
take is kept and stored at the next check.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gridnode.log import get_logger
from gridnode.store import alerts as stored
from gridnode.store.db import StoreError

if TYPE_CHECKING:
    from gridnode.config.storage import StorageConfig
    from gridnode.store.db import Store

log = get_logger(__name__)

ALERT = "disk_guard"
MB = 1024 * 1024


class DiskGuard:
    """A daemon subsystem: looks at the free space every `check_every_s`."""

    name = "diskguard"

    def __init__(self, cfg: StorageConfig, store: Store, subsystems: Sequence[Any],
                 path: Path | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.subsystems = subsystems
        self.path = path or store.path.parent
        self.paused = False
        self.free: int | None = None
        self.pauses = 0
        self._unsaved: tuple[bool, int, str, int] | None = None
        self._progress = time.monotonic()
        self._waiting = False

    def progress(self) -> float:
        """Progressing while it waits for the next look; a look that never ends is a stall."""
        if self._waiting:
            self._progress = time.monotonic()
        return self._progress

    @property
    def min_free(self) -> int:
        return int(self.cfg.min_free_mb * MB)

    @property
    def resume_free(self) -> int:
        return int((self.cfg.min_free_mb + self.cfg.resume_margin_mb) * MB)

    def _recorders(self) -> list[Any]:
        return [s.recorder for s in self.subsystems if hasattr(s, "recorder")]

    async def run(self) -> None:
        while True:
            await self.check()
            self._progress = time.monotonic()
            self._waiting = True
            await asyncio.sleep(self.cfg.check_every_s)
            self._waiting = False

    async def check(self) -> None:
        """One look at the free space: pause or resume the raw rows, store the alert change."""
        try:
            self.free = (await asyncio.to_thread(shutil.disk_usage, self.path)).free
        except OSError as exc:
            log.warning("free space not known", path=str(self.path), error=str(exc))
            return
        free = self.free
        if not self.paused and free < self.min_free:
            self.paused = True
            self.pauses += 1
            self._set_keep_raw(False)
            detail = (f"{free / MB:.1f} MiB free on {self.path} (minimum {self.cfg.min_free_mb:g}"
                      " MiB): raw readings are not kept, intervals are")
            log.warning("disk guard: raw readings paused", free_mb=round(free / MB, 1),
                        min_free_mb=self.cfg.min_free_mb, path=str(self.path))
            self._unsaved = (True, free, detail, _now_ms())
        elif self.paused and free >= self.resume_free:
            self.paused = False
            self._set_keep_raw(True)
            detail = f"{free / MB:.1f} MiB free on {self.path}: raw readings kept again"
            log.info("disk guard: raw readings resumed", free_mb=round(free / MB, 1),
                     resume_mb=self.cfg.min_free_mb + self.cfg.resume_margin_mb)
            self._unsaved = (False, free, detail, _now_ms())
        elif self.paused:
            self._set_keep_raw(False)       # a recorder that (re)started meanwhile
        if self._unsaved is not None:
            await self._store_alert()

    def _set_keep_raw(self, keep: bool) -> None:
        for recorder in self._recorders():
            recorder.keep_raw = keep

    async def _store_alert(self) -> None:
        assert self._unsaved is not None
        raised, free, detail, at_ms = self._unsaved
        try:
            async with self.store.write() as tx:
                await stored.change(tx, ALERT, raised, value=free, threshold=self.min_free,
                                    detail=detail, at_ms=at_ms)
        except StoreError as exc:       # full after all: kept, stored at the next check
            log.debug("disk guard alert not stored yet", error=str(exc))
        else:
            self._unsaved = None


def _now_ms() -> int:
    return int(time.time() * 1000)
