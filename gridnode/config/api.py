"""[api]: the local HTTP endpoint for health, metrics and operators.

Not implemented yet: the section is validated so that a file written for it stays valid, but
nothing listens; ``gridnode check-config`` says so.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from pydantic import Field, IPvAnyAddress

from gridnode.config.base import Section


class ApiConfig(Section):
    enabled: bool = True
    # Loopback by default: the endpoint has operator actions and is not meant for the LAN.
    bind: IPvAnyAddress = IPv4Address("127.0.0.1")
    port: int = Field(default=8080, ge=0, le=65535)
