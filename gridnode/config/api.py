"""[api]: the local HTTP endpoint for health, metrics and operators."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from pydantic import Field

from gridnode.config.base import Section


class ApiConfig(Section):
    enabled: bool = True
    # Loopback by default: the endpoint has operator actions and is not meant for the LAN.
    bind: IPv4Address | IPv6Address = IPv4Address("127.0.0.1")
    port: int = Field(default=8080, ge=0, le=65535)
