"""[node]: who this node is and where it keeps its state."""

from __future__ import annotations

import os
import re
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from gridnode.config.base import Section

_NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _default_data_dir() -> Path:
    # systemd's StateDirectory= exports the directory it created for us.
    return Path(os.environ.get("STATE_DIRECTORY", "var/gridnode").split(":")[0])


class NodeConfig(Section):
    id: str = "gridnode-1"
    data_dir: Path = Field(default_factory=_default_data_dir)
    timezone: str = "UTC"
    # A subsystem that reports no progress for this long stops the watchdog pings.
    stall_timeout_s: float = Field(default=300.0, gt=0, le=86_400)

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _NODE_ID.match(value):
            raise ValueError("1-64 characters: letters, digits, '_', '.', '-', starting with a "
                             "letter or digit")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("an IANA time zone name such as 'UTC' or 'Europe/Berlin'") from None
        return value

    @property
    def database(self) -> Path:
        return self.data_dir / "gridnode.db"
