"""Fault injection: what the localnet does wrong on purpose, set at start and at run time.

The same model is read from CLI flags / the constructor and from POST /admin/faults, so one
validation rule applies everywhere. Randomness comes from one seeded generator: the same seed and
the same sequence of requests give the same faults.

Faults apply to every port unless a port has its own settings: `update(changes, port=...)` (or
`POST /admin/faults?port=N`) overrides the request-level faults of that port only, so a failover
test can break the primary while the `--lag-port` view keeps answering. Block production
(`stall`), the lag of the lagging view and the seed belong to the whole localnet.
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


# Faults of the whole localnet, never of one port.
GLOBAL_ONLY = frozenset({"seed", "stall", "lag_slots"})


class FaultInjector:
    """Current faults (for every port, and each port's own), plus the seeded generator that
    decides each occurrence."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = faults or Faults.model_validate({})
        self.rng = random.Random(self.faults.seed)
        self.ports: dict[int, PortFaults] = {}

    def port(self, port: int) -> PortFaults:
        """The faults one port applies (created when the port starts serving)."""
        if port not in self.ports:
            self.ports[port] = PortFaults(self, port)
        return self.ports[port]

    def update(self, changes: dict[str, Any], port: int | None = None) -> Faults:
        """Apply a partial update (validated as a whole) to every port, or to `port` only;
        `close_websockets: true` is an action. Returns the resulting settings (of `port`)."""
        changes = dict(changes)
        close = bool(changes.pop("close_websockets", False))
        if port is not None:
            return self._update_port(port, changes, close)
        merged = Faults.model_validate({**self.faults.model_dump(), **changes})
        if "seed" in changes:
            self.rng = random.Random(merged.seed)
        self.faults = merged
        for pf in self.ports.values():
            pf.refresh()
        if close:
            for pf in self.ports.values():
                pf.close_all()
        return merged

    def _update_port(self, port: int, changes: dict[str, Any], close: bool) -> Faults:
        pf = self.ports.get(port)
        if pf is None:
            raise ValueError(f"port {port} is not served here (ports: "
                             f"{', '.join(map(str, sorted(self.ports))) or 'none yet'})")
        shared = sorted(GLOBAL_ONLY & set(changes))
        if shared:
            raise ValueError(f"{', '.join(shared)}: not per port; set without a port")
        overrides = {**pf.overrides, **changes}
        checked = Faults.model_validate({**self.faults.model_dump(), **overrides})
        pf.overrides = {name: getattr(checked, name) for name in overrides}
        pf.refresh()
        if close:
            pf.close_all()
        return pf.faults

    def reset_port(self, port: int) -> Faults:
        """Drop `port`'s own settings: it follows the common faults again."""
        pf = self.ports.get(port)
        if pf is None:
            raise ValueError(f"port {port} is not served here")
        pf.overrides = {}
        pf.refresh()
        return pf.faults

    def hit(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate

    def latency_s(self, faults: Faults | None = None) -> float:
        f = faults or self.faults
        if not f.latency_ms and not f.latency_jitter_ms:
            return 0.0
        return (f.latency_ms + self.rng.uniform(0, f.latency_jitter_ms)) / 1000


class PortFaults:
    """One port's faults: the common settings with that port's own on top. Its server, RPC
    methods and pubsub read `faults` and draw from the shared generator."""

    def __init__(self, injector: FaultInjector, port: int) -> None:
        self.injector = injector
        self.port = port
        self.overrides: dict[str, Any] = {}
        self.faults = injector.faults
        self.close_websockets: list[Any] = []  # callbacks that close this port's WebSockets

    def refresh(self) -> None:
        self.faults = self.injector.faults.model_copy(update=self.overrides) if self.overrides \
            else self.injector.faults

    def close_all(self) -> None:
        for callback in list(self.close_websockets):
            callback()

    def hit(self, rate: float) -> bool:
        return self.injector.hit(rate)

    def latency_s(self) -> float:
        return self.injector.latency_s(self.faults)
