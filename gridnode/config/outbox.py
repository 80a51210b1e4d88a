"""[outbox]: limits of the durable operation queue."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gridnode.config.base import Section


class RecoveryRule(Section):
    """What to do when a step fails in one way, and how many times before an operator decides."""

    action: Literal["backoff", "new_blockhash", "raise_compute_limit", "revalidate",
                    "next_endpoint", "new_transaction"]
    max: int = Field(ge=0)


class RecoveryTable(Section):
    """The recovery table. network_timeout and rpc_error apply to each RPC request (retry with
    backoff; move on to the next endpoint); the others count per operation, and an operation that
    exhausts one is parked for `gridnode outbox retry`."""

    network_timeout: RecoveryRule = RecoveryRule(action="backoff", max=3)
    blockhash_expired: RecoveryRule = RecoveryRule(action="new_blockhash", max=2)
    insufficient_compute: RecoveryRule = RecoveryRule(action="raise_compute_limit", max=1)
    simulation_failed: RecoveryRule = RecoveryRule(action="revalidate", max=1)
    rpc_error: RecoveryRule = RecoveryRule(action="next_endpoint", max=2)
    transaction_expired: RecoveryRule = RecoveryRule(action="new_transaction", max=20)


class OutboxConfig(Section):
    # Operations per transaction at most; fewer when 1232 bytes or the CU limit are reached first.
    # 1 turns batching off.
    batch_size: int = Field(default=64, ge=1, le=64)
    # A reading older than this is parked for an operator instead of being sent.
    max_age_hours: float = Field(default=168, gt=0)
    poll_interval_s: float = Field(default=5.0, gt=0)        # getSignatureStatuses polling
    rebroadcast_interval_s: float = Field(default=2.0, gt=0)  # same bytes, until landed/expired
    submit_interval_s: float = Field(default=1.0, gt=0)       # how often pending work is picked up
    rule_retry_s: float = Field(default=30.0, gt=0)           # re-check of an unmet business rule
    recovery: RecoveryTable = Field(default_factory=RecoveryTable)
