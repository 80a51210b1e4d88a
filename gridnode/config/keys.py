"""[keys]: where the gateway's signing keypair lives.

Under systemd the keypair arrives as a credential (``LoadCredential=keypair:/etc/...``) in
``$CREDENTIALS_DIRECTORY``; that copy wins over the configured path so the unit, not the config
file, decides where secrets come from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field

from gridnode.config.base import Section


class KeysConfig(Section):
    gateway_keypair: Path | None = None
    credential: str = Field(default="keypair", pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    def gateway_keypair_path(self, env: Mapping[str, str] = os.environ) -> Path | None:
        """The keypair file to load: the systemd credential if present, else the configured path."""
        creds = env.get("CREDENTIALS_DIRECTORY")
        if creds:
            candidate = Path(creds) / self.credential
            if candidate.exists():
                return candidate
        return self.gateway_keypair
