"""[upstream]: delivery of finalized intervals, settlements and operation outcomes to the
platform API (gridnode.deliveries.upstream).

Requests are signed the Standard Webhooks way with a ``whsec_`` secret that never sits in this
file: the systemd credential `credential` (``LoadCredential=`` in the unit, read from
``$CREDENTIALS_DIRECTORY``) or `secret_file` (mode 0600). The file holds one secret, or two
separated by whitespace while a new one is rolled in (both sign every request).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from pydantic import AnyHttpUrl, Field, model_validator

from gridnode.config.base import Section


class UpstreamConfig(Section):
    url: AnyHttpUrl
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    # Items per request (1: one request per item).
    batch_size: int = Field(default=50, ge=1, le=1000)
    # Backoff after a failed request: a random wait between retry_base_s and an exponential cap
    # that stops at retry_max_s; a 429/503 Retry-After wins.
    retry_base_s: float = Field(default=5.0, gt=0, le=86400)
    retry_max_s: float = Field(default=600.0, gt=0, le=7 * 86400)
    # The signing secret's file when it is not given as the systemd credential.
    secret_file: Path | None = None
    credential: str = Field(default="upstream-secret", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # How often the event log is looked at for new items while nothing is due.
    poll_s: float = Field(default=1.0, gt=0, le=60)

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.retry_base_s > self.retry_max_s:
            raise ValueError(f"retry_base_s ({self.retry_base_s}) at most retry_max_s "
                             f"({self.retry_max_s})")
        return self

    def secret_path(self, env: Mapping[str, str] = os.environ) -> tuple[Path | None, str]:
        """The secret file to read and the key it is reported under: the systemd credential
        when present, else `secret_file` (None: no secret anywhere)."""
        creds = env.get("CREDENTIALS_DIRECTORY")
        if creds:
            candidate = Path(creds) / self.credential
            if candidate.exists():
                return candidate, "upstream.credential"
        return self.secret_file, "upstream.secret_file"
