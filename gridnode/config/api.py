"""[api]: the local HTTP API (transactions, node state, live events over WebSocket).

On by default, on loopback only: the endpoint has operator actions. Tokens are HS256 JWTs signed
with a secret that never sits in this file: the systemd credential ``api-jwt`` (``LoadCredential=``
in the unit, read from ``$CREDENTIALS_DIRECTORY``) or a file readable by its owner only
(`jwt_secret_file`). Without a secret the API still starts: only ``/health``, ``/ready``, the
OpenAPI document and the dashboard's page answer, every other route says how to make one
(`NO_SECRET`).
"""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

from pydantic import Field, IPvAnyAddress

from gridnode.config.base import Section

CREDENTIAL = "api-jwt"
NO_SECRET = ("no JWT secret, so no token can be checked: make one with 'gridnode token secret "
             "/etc/gridnode/api-jwt.secret', set [api] jwt_secret_file to it (or load it as the "
             f"systemd credential {CREDENTIAL}) and restart; until then only /health, /ready, "
             "/api/v1/openapi.json and the dashboard's page answer")


class ApiConfig(Section):
    enabled: bool = True
    # Loopback by default: the endpoint has operator actions and is not meant for the LAN.
    bind: IPvAnyAddress = IPv4Address("127.0.0.1")
    port: int = Field(default=8080, ge=0, le=65535)
    # The JWT secret (at least 32 bytes, mode 0600) when not given as the systemd credential.
    jwt_secret_file: Path | None = None
    # Largest request body accepted; a larger one is refused with 413 before it is read.
    max_body_bytes: int = Field(default=65536, ge=1024, le=16 * 1024 * 1024)
    # Longest a request may take before it is answered 503 (nothing half-done is kept).
    request_timeout_s: float = Field(default=10.0, gt=0, le=300)
    # Per token subject: requests per second on average, and the burst above that.
    rate_per_s: float = Field(default=20.0, gt=0, le=10000)
    rate_burst: int = Field(default=40, ge=1, le=100000)
    # How often the event log is checked for new events while WebSocket clients listen.
    events_poll_s: float = Field(default=0.25, gt=0, le=10)
    # WebSocket clients served at once; more are refused with 503.
    max_websockets: int = Field(default=32, ge=1, le=1024)
