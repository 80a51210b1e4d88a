"""[upstream]: delivery of settlements and readings to the platform API.

Not implemented yet: the section is validated but nothing is sent; ``gridnode check-config``
says so.
"""

from __future__ import annotations

from pydantic import AnyHttpUrl, Field

from gridnode.config.base import Section


class UpstreamConfig(Section):
    url: AnyHttpUrl
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    batch_size: int = Field(default=50, ge=1, le=1000)
    retry_base_s: float = Field(default=5.0, gt=0)
    retry_max_s: float = Field(default=600.0, gt=0)
