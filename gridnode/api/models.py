"""The API's request and response bodies, as pydantic models: they validate what comes in and are
the source of the OpenAPI document. The transaction shapes (field names, status codes) are the
platform's (GridTokenX transaction-flow design, phase 1.4)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, overload

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from gridnode.chain.txtypes import TX_TYPES
from gridnode.store import transitions


def _known(names: tuple[str, ...], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if value not in names:
            raise ValueError(f"{what} {value!r} is not one of: {', '.join(names)}")
        return value
    return AfterValidator(check)


TxTypeName = Annotated[str, _known(tuple(TX_TYPES), "tx type"),
                       Field(json_schema_extra={"enum": list(TX_TYPES)})]
StatusName = Annotated[str, _known(transitions.OPERATION_STATUSES, "status"),
                       Field(json_schema_extra={"enum": list(transitions.OPERATION_STATUSES)})]


@overload
def iso(ms: int) -> datetime: ...
@overload
def iso(ms: None) -> None: ...
@overload
def iso(ms: int | None) -> datetime | None: ...
def iso(ms: int | None) -> datetime | None:
    """A stored Unix-milliseconds time as an aware UTC datetime (ISO 8601 in JSON)."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


class Model(BaseModel):
    """Validators are built on a model's first use, not at import: a node that nobody queries
    never pays for the ones it does not use."""

    model_config = ConfigDict(defer_build=True)


class Request(Model):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Query(Request):
    """Query parameters: unknown ones are refused, so a misspelt filter is not silently ignored."""


# -- transactions ----------------------------------------------------------------------------

class CreateTransaction(Request):
    tx_type: str = Field(description="a row of the node's tx-type table",
                         json_schema_extra={"enum": list(TX_TYPES)})
    payload: dict[str, Any] = Field(description="the tx type's payload (see the *Payload "
                                    "schemas); checked by the same models as the outbox")
    submit: bool = Field(default=False, description="queue it for sending now; otherwise it "
                         "waits as `created` for POST /api/v1/transactions/{id}/submit")


class BatchItem(Request):
    tx_type: str = Field(json_schema_extra={"enum": list(TX_TYPES)})
    payload: dict[str, Any]


class BatchCreate(Request):
    transactions: list[BatchItem] = Field(min_length=1, max_length=100)
    submit: bool = False


class RetryRequest(Request):
    operation_type: str | None = Field(default=None, description="if given, must be the "
                                       "operation's operation_type or tx_type (a guard)")
    max_attempts: int | None = Field(default=None, ge=1, le=1000, description="refuse the retry "
                                     "when the operation already has this many signed "
                                     "transactions")


class CreatedTransaction(Model):
    operation_id: int
    tx_type: str
    status: str
    created_at: datetime


class TransactionStatus(Model):
    operation_id: int
    operation_type: str = Field(description="the program the operation calls")
    tx_type: str
    status: str
    signature: str | None = Field(description="the latest signed transaction, if any")
    attempts: int = Field(description="transactions signed for it since its last retry")
    created_at: datetime
    submitted_at: datetime | None
    confirmed_at: datetime | None


class SignedAttempt(Model):
    signature: str
    observed_status: str
    blockhash: str
    last_valid_block_height: int
    compute_unit_limit: int | None
    priority_fee_micro_lamports: int | None
    send_count: int
    slot: int | None
    err: Any = None
    fee_lamports: int | None
    created_at: datetime
    first_sent_at: datetime | None


class HistoryItem(Model):
    at: datetime
    old_status: str | None
    new_status: str
    reason: str
    details: Any = None


class DecodedEvent(Model):
    name: str
    program_id: str
    signature: str
    slot: int | None
    data: Any


class TransactionDetail(TransactionStatus):
    payload: dict[str, Any]
    idempotency_key: str
    last_error: str | None
    finalized_at: datetime | None
    transactions: list[SignedAttempt] = Field(description="every transaction ever signed for it")
    history: list[HistoryItem] = Field(description="every status change, oldest first")
    events: list[DecodedEvent] = Field(description="events decoded from its finalized "
                                       "transaction")


class TransactionList(Model):
    transactions: list[TransactionStatus]
    total: int
    page: int
    page_size: int


class ListQuery(Query):
    status: StatusName | None = None
    limit: int = Field(default=20, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=2**31)


class RetryResult(Model):
    success: bool
    attempts: int = Field(description="transactions signed for it so far, all retries counted")
    signature: str | None
    status: str


class TransactionStats(Model):
    total_count: int
    pending_count: int = Field(description="created or pending")
    submitted_count: int = Field(description="signed, submitted or unknown: sent or about to "
                                 "be, outcome not known")
    confirmed_count: int = Field(description="confirmed or finalized")
    failed_count: int = Field(description="failed, expired or parked")
    processing_count: int = Field(description="pending, signed, submitted, unknown or "
                                  "confirmed: not final yet")
    avg_confirmation_time_seconds: float | None
    success_rate: float | None = Field(description="confirmed / (confirmed + failed); null "
                                       "before anything ended")


class BatchEntry(Model):
    operation_id: int
    status: str


class BatchCreated(Model):
    batch_id: str
    transactions: list[BatchEntry]


# -- node ------------------------------------------------------------------------------------

class Health(Model):
    status: Literal["ok"]
    version: str
    node_id: str
    uptime_s: float


class Ready(Model):
    status: Literal["ready"]
    checks: dict[str, str]
    alerts: list[str] = Field(default_factory=list, description="the alerts raised now (GET "
                              "/api/v1/alerts has their details)")


class MeterInfo(Model):
    meter_id: str
    source: str
    profile: str | None
    owner: str | None
    state: str | None = Field(description="online, stale, offline or unknown; null before "
                              "its source reported")
    last_reading_at: datetime | None
    import_wh: float | None
    export_wh: float | None
    power_w: float | None
    voltage_v: float | None
    current_a: float | None
    frequency_hz: float | None
    requests: int | None
    errors: int | None
    accepted: int | None
    rejected: int | None
    rejections: dict[str, int] = Field(description="rejected readings by reason")
    last_good_at: datetime | None
    last_error: str | None


class MeterList(Model):
    meters: list[MeterInfo]


class IntervalQuery(Query):
    from_: int | None = Field(default=None, alias="from", ge=0, le=2**40,
                              description="Unix seconds (default: 24 h before `to`)")
    to: int | None = Field(default=None, ge=0, le=2**40, description="Unix seconds (default: now)")
    limit: int = Field(default=1000, ge=1, le=10000)


class Interval(Model):
    interval_start: int
    interval_end: int
    import_wh: int
    export_wh: int
    backfilled: bool
    closed_at: datetime


class IntervalList(Model):
    meter_id: str
    from_: int = Field(serialization_alias="from")
    to: int
    intervals: list[Interval]


class Endpoint(Model):
    url: str
    healthy: bool
    slot: int | None
    lag_slots: int
    requests: int
    errors: int
    consecutive_errors: int
    last_error: str | None
    last_error_age_s: float | None


class ChainState(Model):
    configured: bool
    commitment: str | None = None
    endpoints: list[Endpoint] = Field(default_factory=list)
    block_height: int | None = Field(default=None, description="the latest the node has seen")
    blockhash_age_s: float | None = Field(default=None, description="age of the cached "
                                          "blockhash transactions are built on")


class FeeQuery(Query):
    tx_type: TxTypeName


class FeeEstimate(Model):
    tx_type: str
    compute_unit_price_micro_lamports: int = Field(description="what the node would bid now")
    compute_unit_limit: int
    compute_unit_limit_source: Literal["recent", "default"] = Field(
        description="recent: the highest limit of its last transactions; default: none yet")
    estimated_fee_lamports: int = Field(description="signature fee + priority fee at that limit")
    percentile: float
    recent_fee_percentile_micro_lamports: int = Field(description="that percentile of the "
                                                      "recent non-zero priority fees")
    recent_fee_samples: int
    congestion: float = Field(description="share of recent slots whose transactions on these "
                              "accounts paid a priority fee (0-1)")
    floor_micro_lamports: int
    cap_micro_lamports: int
    max_lamports_per_tx: int
    accounts: list[str] = Field(description="the writable accounts whose fee market was read")


class EventsQuery(Query):
    since: int = Field(default=-1, ge=-1, le=2**63 - 1, description="replay events after this "
                       "id from the log, then stream live ones; -1 (default): live only")
    type: str | None = Field(default=None, description="comma-separated event types")
    meter_id: str | None = Field(default=None, max_length=64)
    operation_id: int | None = Field(default=None, ge=1, le=2**63 - 1)


class EventMessage(Model):
    """One WebSocket text message: an event from the log."""

    id: int
    at_ms: int
    type: str
    operation_id: int | None
    meter_id: str | None
    data: dict[str, Any]


class AlertInfo(Model):
    name: str = Field(description="the rule: pending, confirmation_time, failure_rate, "
                      "rpc_down, settlement_queue, meter_stale or disk_low")
    state: str = Field(json_schema_extra={"enum": ["raised", "cleared"]})
    value: float | None = Field(description="what was measured when it last changed")
    threshold: float | None = Field(description="the [alerts] limit it was judged against")
    detail: str
    raised_at: datetime | None
    changed_at: datetime


class AlertList(Model):
    active: int = Field(description="how many are raised now")
    alerts: list[AlertInfo]


class Login(Request):
    token: str = Field(min_length=1, max_length=4096, description="a token from gridnode token "
                       "issue; kept in an HttpOnly cookie")


class Session(Model):
    authenticated: bool = Field(description="whether the dashboard's cookie holds a valid token")
    sub: str | None = None
    role: str | None = None
    expires_at: datetime | None = None
