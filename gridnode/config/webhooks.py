"""[webhooks]: how registered webhooks (POST /api/v1/webhooks, gridnode webhooks add) are
delivered. The registrations themselves live in the database, not here.

Each request is one event, signed the Standard Webhooks way with the webhook's own secret. A
webhook that answers 410 Gone, or has failed without a break for `disable_after_s`, is disabled
and the `webhook_disabled` alert raised (`gridnode deliveries replay --destination webhook:<id>`
enables it again).
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from gridnode.config.base import Section


class WebhooksConfig(Section):
    enabled: bool = True
    # A receiver has this long to answer (the specification suggests 15 to 30 s).
    timeout_s: float = Field(default=15.0, gt=0, le=120)
    # Backoff between failed requests: random between retry_base_s and an exponential cap.
    retry_base_s: float = Field(default=5.0, gt=0, le=86400)
    retry_max_s: float = Field(default=3600.0, gt=0, le=7 * 86400)
    # Failing without a break for this long disables the webhook (3 days).
    disable_after_s: float = Field(default=3 * 86400.0, gt=0, le=365 * 86400)
    # Events sent per turn of one webhook (one request each, in order).
    batch_size: int = Field(default=20, ge=1, le=1000)
    # How often registrations made or removed elsewhere (the CLI) are picked up.
    sync_every_s: float = Field(default=5.0, gt=0, le=3600)
    # How often the event log is looked at for new items while nothing is due.
    poll_s: float = Field(default=1.0, gt=0, le=60)

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.retry_base_s > self.retry_max_s:
            raise ValueError(f"retry_base_s ({self.retry_base_s}) at most retry_max_s "
                             f"({self.retry_max_s})")
        return self
