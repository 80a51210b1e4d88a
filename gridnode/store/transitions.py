"""The allowed status transitions of every stateful row, as data.

Every status change goes through `gridnode.store` (one function, one database transaction that
also writes the audit row); this table is what it checks. An operation whose outcome on chain is
not known is `unknown`, never `failed`: only a deterministic program error ends in `failed`.

Operation statuses:
    created    made through the API, waiting for the client's submit (nothing is sent before)
    pending    in the outbox, not yet signed (or due to be re-signed)
    signed     a signed transaction is persisted, possibly not yet broadcast
    submitted  broadcast at least once; re-broadcasting the same bytes is safe
    unknown    the outcome could not be determined yet; still monitored
    confirmed  landed at `confirmed` commitment without error
    finalized  landed at `finalized` commitment (terminal)
    failed     the program rejected it deterministically (terminal until an operator retries)
    expired    every signature's blockhash expired and none landed: safe to re-sign
    parked     waits for an operator (recovery exhausted, or a reading too old to send)
"""

from __future__ import annotations

from typing import Final

OPERATION_STATUSES: Final = (
    "created", "pending", "signed", "submitted", "unknown", "confirmed", "finalized", "failed",
    "expired", "parked",
)

_LANDED: Final = ("confirmed", "finalized", "failed")

OPERATION_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "created": frozenset({"pending"}),         # submitted by its client
    # pending -> finalized: the program says its effect is already on chain (a tx type's done_on)
    "pending": frozenset({"signed", "parked", "failed", "finalized"}),
    "signed": frozenset({"submitted", "unknown", "expired", *_LANDED}),
    "submitted": frozenset({"unknown", "expired", *_LANDED}),
    "unknown": frozenset({"submitted", "expired", *_LANDED}),
    # A confirmed transaction can still vanish with a dropped fork: watch it again.
    "confirmed": frozenset({"finalized", "unknown"}),
    "finalized": frozenset(),
    "failed": frozenset({"pending"}),          # operator retry only
    "expired": frozenset({"pending", "parked"}),
    "parked": frozenset({"pending"}),          # operator retry only
}

# Status groups, defined once here next to the table they follow from.
# Made through the API and held until its client submits it.
CREATED: Final = "created"
# Waiting to be built and signed (again).
PENDING: Final = "pending"
# What a new operation may start as.
INITIAL: Final = frozenset({CREATED, PENDING})
# A signed transaction exists and the outcome is not final: the monitor follows these.
IN_FLIGHT: Final = frozenset({"signed", "submitted", "unknown", "confirmed"})
# In flight and not landed yet: the stored bytes are re-broadcast.
UNLANDED: Final = IN_FLIGHT - {"confirmed"}
# Not yet known to have been broadcast: a successful send moves these to `submitted`.
UNSENT: Final = frozenset(s for s, nxt in OPERATION_TRANSITIONS.items() if "submitted" in nxt)
# Nothing moves these any more without an operator (finalized never moves).
FINAL: Final = frozenset({"finalized", "failed", "parked"})
# Statuses an operator may send back to `pending` with `gridnode outbox retry`.
OPERATOR_RETRYABLE: Final = frozenset({"failed", "parked", "expired"})

# What the node last observed of one signed transaction (tx_attempts.observed_status).
ATTEMPT_STATUSES: Final = (
    "unsent", "sent", "processed", "confirmed", "finalized", "failed", "expired",
)
# Not seen on chain yet and still worth sending.
ATTEMPT_SENDABLE: Final = frozenset({"unsent", "sent"})
# Can never land any more.
ATTEMPT_DEAD: Final = frozenset({"failed", "expired"})

# A matched trade with a local seller (gridnode.settlement): queued with its settle_trade
# operation, submitted once that is signed, settled when it is finalized; defaulted when it can
# never succeed within the recovery budget; an operator retries (queued) or writes it off.
SETTLEMENT_STATUSES: Final = ("queued", "submitted", "settled", "defaulted", "written_off")
SETTLEMENT_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "queued": frozenset({"submitted", "defaulted"}),
    "submitted": frozenset({"settled", "defaulted"}),
    "settled": frozenset(),
    "defaulted": frozenset({"queued", "written_off"}),   # operator only
    "written_off": frozenset(),
}
# Settlements the node still works on (the alert's "settlement queue").
SETTLEMENT_QUEUE: Final = frozenset({"queued", "submitted"})

UPSTREAM_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "pending": frozenset({"delivered", "retrying", "rejected"}),
    "retrying": frozenset({"delivered", "retrying", "rejected"}),
    "delivered": frozenset(),
    "rejected": frozenset({"pending"}),
}

TRANSITIONS: Final[dict[str, dict[str, frozenset[str]]]] = {
    "operation": OPERATION_TRANSITIONS,
    "settlement": SETTLEMENT_TRANSITIONS,
    "upstream_delivery": UPSTREAM_TRANSITIONS,
}


def is_allowed(entity: str, old: str | None, new: str) -> bool:
    """Whether `entity` may move from `old` to `new` (`old` None means a new row)."""
    table = TRANSITIONS[entity]
    if old is None:
        return new in table
    return new in table.get(old, frozenset())
