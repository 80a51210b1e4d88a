"""[outbox]: limits of the durable operation queue."""

from __future__ import annotations

from pydantic import Field

from gridnode.config.base import Section


class RecoveryRule(Section):
    """How many times one kind of failure is retried before an operator decides.

    What a retry does is fixed by the kind of failure (a timeout backs off, an expired blockhash
    means a new one, ...): there is nothing sensible to choose, so only the budget is configured.
    """

    max: int = Field(ge=0)


class RecoveryTable(Section):
    """The recovery table, one budget per kind of failure. network_timeout and rpc_error apply to
    each RPC request; the others count per operation, and an operation that exhausts one is
    parked for `gridnode outbox retry`."""

    network_timeout: RecoveryRule = RecoveryRule(max=3)       # rounds over the endpoints, backoff
    rpc_error: RecoveryRule = RecoveryRule(max=2)             # switches to the next endpoint
    blockhash_expired: RecoveryRule = RecoveryRule(max=2)     # rebuilt on a fresh blockhash
    insufficient_compute: RecoveryRule = RecoveryRule(max=1)  # re-sent with a higher CU limit
    simulation_failed: RecoveryRule = RecoveryRule(max=1)     # re-validated, then rebuilt
    transaction_expired: RecoveryRule = RecoveryRule(max=20)  # re-signed as a new transaction


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
