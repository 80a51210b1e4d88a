"""[alerts]: the conditions under which the node raises an alert, and how often it looks.

The thresholds are the platform's alert rules (pending > 100, confirmation time > 60 s, failure
rate > 5 %, RPC health failing, settlement queue > 50) plus two of the device's own: a meter that
stopped reporting and a disk running out of space. An alert is a state: raised once when its
condition becomes true, cleared once when it is false again, each change logged, stored and
appended to the event log. The daemon's alerts subsystem evaluates them, API on or off.
"""

from __future__ import annotations

from pydantic import Field

from gridnode.config.base import Section


class AlertsConfig(Section):
    enabled: bool = True
    # How often the conditions are evaluated.
    evaluate_every_s: float = Field(default=10.0, ge=0.1, le=3600)
    # Operations waiting for the chain (pending, signed, submitted or unknown) above this raise.
    pending_max: int = Field(default=100, ge=0)
    # The span over which confirmation time and failure rate are judged.
    window_s: float = Field(default=900.0, ge=10, le=7 * 86400)
    # Average submitted -> confirmed time of the operations confirmed in the window.
    confirmation_max_s: float = Field(default=60.0, gt=0, le=86400)
    # Share of the operations that ended in the window as failed, expired or parked ...
    failure_rate_max: float = Field(default=0.05, ge=0, le=1)
    # ... judged only once at least this many ended (one failure of one is not a rate).
    failure_min_finished: int = Field(default=10, ge=1)
    # Every RPC endpoint unhealthy for this long.
    rpc_down_s: float = Field(default=60.0, ge=0, le=86400)
    # Settlements not yet settled (0 until the node settles trades).
    settlement_queue_max: int = Field(default=50, ge=0)
    # A meter whose last stored reading is older than this, or that its source reports stale
    # or offline.
    meter_stale_s: float = Field(default=300.0, gt=0, le=7 * 86400)
    # Free space on the database's file system below this.
    disk_free_min_bytes: int = Field(default=200 * 1024 * 1024, ge=0)
