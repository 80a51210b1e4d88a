"""[api]: the local HTTP API (transactions, node state, live events over WebSocket).

Off unless enabled: the endpoint has operator actions. Tokens are HS256 JWTs signed with a secret
that never sits in this file: the systemd credential ``api-jwt`` (``LoadCredential=`` in the unit,
read from ``$CREDENTIALS_DIRECTORY``) or a file readable by its owner only (`jwt_secret_file`).
Without a secret only ``/health``, ``/ready`` and the OpenAPI document answer.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

from pydantic import Field, IPvAnyAddress

from gridnode.config.base import Section

CREDENTIAL = "api-jwt"


class ApiConfig(Section):
    enabled: bool = False
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
