"""Fault injection: what the localnet does wrong on purpose, set at start and at run time.

The same model is read from CLI flags / the constructor and from POST /admin/faults, so one
validation rule applies everywhere. Randomness comes from one seeded generator: the same seed and
the same sequence of requests give the same faults.
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_LAG_SLOTS = 512


class Faults(BaseModel):
    """Fault settings; rates are fractions of requests (or transactions) in [0, 1]."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    seed: int | None = Field(None, description="seed of the fault generator")
    drop_tx_rate: float = Field(0.0, ge=0, le=1,
                                description="transactions accepted with a signature but never landed")
    send_error_rate: float = Field(0.0, ge=0, le=1,
                                   description="sendTransaction lands the transaction but answers HTTP 502")
    send_timeout_rate: float = Field(0.0, ge=0, le=1,
                                     description="sendTransaction lands the transaction but holds the "
                                     "response for timeout_s, then closes the connection")
    timeout_s: float = Field(30.0, ge=0, le=3600)
    http_error_rate: float = Field(0.0, ge=0, le=1,
                                   description="requests answered HTTP 503 without being processed")
    unhealthy_rate: float = Field(0.0, ge=0, le=1,
                                  description="requests answered with JSON-RPC error -32005")
    latency_ms: float = Field(0.0, ge=0, le=60_000, description="added to every RPC request")
    latency_jitter_ms: float = Field(0.0, ge=0, le=60_000)
    stall: bool = Field(False, description="block production stops")
    lag_slots: int = Field(0, ge=0, le=MAX_LAG_SLOTS, description="how far the lagging view is behind")
    ws_close_rate: float = Field(0.0, ge=0, le=1,
                                 description="notifications that close the WebSocket instead")


class FaultInjector:
    """Current faults plus the seeded generator that decides each occurrence."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self.rng = random.Random(self.faults.seed)
        self.close_websockets: list[Any] = []  # callbacks that close every open WebSocket

    def update(self, changes: dict[str, Any]) -> Faults:
        """Apply a partial update (validated as a whole); `close_websockets: true` is an action."""
        changes = dict(changes)
        close = bool(changes.pop("close_websockets", False))
        merged = Faults.model_validate({**self.faults.model_dump(), **changes})
        if "seed" in changes:
            self.rng = random.Random(merged.seed)
        self.faults = merged
        if close:
            for callback in list(self.close_websockets):
                callback()
        return merged

    def hit(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate

    def latency_s(self) -> float:
        f = self.faults
        if not f.latency_ms and not f.latency_jitter_ms:
            return 0.0
        return (f.latency_ms + self.rng.uniform(0, f.latency_jitter_ms)) / 1000
