"""The transaction endpoints, in the platform's shapes: create (one or a batch), submit, read,
list, retry, stats.

An operation made here is validated by the tx-type table and payload models the outbox uses
(gridnode.chain.txtypes), every invalid field named by its JSON pointer. It is stored as
`created` and waits for its client's submit, or as `pending` when the request says
``"submit": true``; the pipeline then signs and sends it like any other operation. A `user` (a
wallet) creates only operations it signs and sees only those it signs or that are about its
meters; a `monitor` reads; an `operator` does everything.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from gridnode.api.auth import Principal, Role
from gridnode.api.models import (
    BatchCreate,
    BatchCreated,
    BatchEntry,
    CreatedTransaction,
    CreateTransaction,
    DecodedEvent,
    HistoryItem,
    ListQuery,
    RetryRequest,
    RetryResult,
    SignedAttempt,
    TransactionDetail,
    TransactionList,
    TransactionStats,
    TransactionStatus,
    iso,
)
from gridnode.api.problems import FieldProblem, Problem, from_validation, invalid, pointer
from gridnode.api.server import Call, Reply
from gridnode.chain.txtypes import TX_TYPES, TxType
from gridnode.chain.validation import MeterRegistrationPayload, Payload
from gridnode.store import operations, transitions, views
from gridnode.store.db import _Reads
from gridnode.store.operations import NewOperation, Operation

# Which payload field names the signing wallet, per tx type (from the table's `signer`).
SIGNER_FIELDS: dict[str, list[str]] = {}
for _row in TX_TYPES.values():
    if _row.signer.startswith("payload."):
        SIGNER_FIELDS.setdefault(_row.signer.removeprefix("payload."), []).append(_row.name)
METER_REGISTRATION = next(t.name for t in TX_TYPES.values() if t.payload is MeterRegistrationPayload)

# How the platform's counters group the node's statuses.
PENDING_GROUP = frozenset({transitions.CREATED, transitions.PENDING})
SUBMITTED_GROUP = transitions.UNLANDED            # signed, submitted, unknown
CONFIRMED_GROUP = frozenset({"confirmed", "finalized"})
FAILED_GROUP = frozenset({"failed", "expired", "parked"})
PROCESSING_GROUP = frozenset({transitions.PENDING}) | transitions.IN_FLIGHT


def owner_of(who: Principal) -> views.Owner | None:
    """The ownership filter for `who`: None (everything) unless it is a user."""
    if who.role is not Role.USER:
        return None
    return views.Owner(who.sub, SIGNER_FIELDS, METER_REGISTRATION)


def operation_type(row: TxType | None) -> str:
    """The platform's operation_type: the program the tx type calls."""
    if row is None:
        return "unknown"
    ixs = row.instructions or next(iter(row.variants.values()), ())
    return ixs[0].program if ixs else "unknown"


def _not_found(op_id: int) -> Problem:
    return Problem(404, "operation-not-found", "Not found", f"no operation {op_id} that this "
                   "token may see")


async def visible(call: Call, db: _Reads, op_id: int) -> Operation:
    """The operation if it exists and the caller may see it; 404 otherwise (the same answer, so
    a user cannot probe for other users' operations)."""
    op = await operations.get(db, op_id)
    owner = owner_of(call.who)
    if op is None or (owner is not None and not await views.owns(db, owner, op_id)):
        raise _not_found(op_id)
    return op


async def status_of(db: _Reads, op: Operation) -> TransactionStatus:
    attempts = await operations.attempts_of(db, op.id)
    return _status(op, attempts[-1].signature if attempts else None)


def _status(op: Operation, signature: str | None) -> TransactionStatus:
    return TransactionStatus(
        operation_id=op.id, operation_type=operation_type(TX_TYPES.get(op.tx_type)),
        tx_type=op.tx_type, status=op.status, signature=signature, attempts=op.attempts,
        created_at=iso(op.created_at_ms), submitted_at=iso(op.submitted_at_ms),
        confirmed_at=iso(op.confirmed_at_ms))


# -- creating ---------------------------------------------------------------------------------

def _parse(call: Call, tx_type: str, raw: dict[str, Any],
           at: Sequence[str | int]) -> tuple[TxType, Payload | None, list[FieldProblem]]:
    """The tx type's row and payload model, or the problems with them (JSON pointers at `at`)."""
    row = TX_TYPES.get(tx_type)
    if row is None:
        return TX_TYPES[next(iter(TX_TYPES))], None, [FieldProblem(
            pointer=pointer(*at, "tx_type"), detail=f"no tx type {tx_type!r}",
            allowed="one of " + ", ".join(TX_TYPES))]
    try:
        payload = row.payload.model_validate(raw)
    except ValidationError as exc:
        return row, None, from_validation(exc, (*at, "payload"))
    return row, payload, _permitted(call, row, payload, at)


def _permitted(call: Call, row: TxType, payload: Payload,
               at: Sequence[str | int]) -> list[FieldProblem]:
    """A user creates only what it signs; the node must hold the signing key (else the operation
    could only fail)."""
    who = call.who
    field = row.signer.removeprefix("payload.") if row.signer.startswith("payload.") else None
    if who.role is Role.USER:
        if field is None:
            raise Problem(403, "forbidden", "Forbidden",
                          f"a user may not create {row.name} operations: the node signs them "
                          f"with its {row.signer} key")
        if payload.get(field) != who.sub:
            raise Problem(403, "forbidden", "Forbidden",
                          f"a user creates only operations it signs: {pointer(*at, 'payload', field)}"
                          f" must be the token's subject {who.sub}")
    pipeline = call.ctx.subsystem("pipeline")
    if pipeline is None:
        raise Problem(409, "no-chain", "No chain configured",
                      "this node has no [chain]: nothing it stores would ever be sent")
    signers = pipeline.signers
    key = (signers.by_pubkey(str(payload.get(field))) if field is not None
           else signers.by_role(row.signer))
    if key is None:
        where = pointer(*at, "payload", field) if field else pointer(*at, "tx_type")
        return [FieldProblem(pointer=where, detail=f"this node holds no key for "
                             f"{payload.get(field) if field else row.signer}, so it could never "
                             "sign the operation", allowed="a wallet in chain.user_keypairs"
                             if field else "a tx type this node's keys can sign")]
    return []


def _new(call: Call, row: TxType, payload: Payload) -> NewOperation:
    if row.key:
        key = row.idempotency_key(payload)
    else:
        client = call.request.headers.get("Idempotency-Key")
        key = (f"api:{row.name}:{call.who.sub}:{client}" if client
               else f"api:{row.name}:{uuid.uuid4().hex}")
    return NewOperation(row.name, payload.model_dump(mode="json"), key)


async def _add(call: Call, new: NewOperation, submit: bool,
               extra: dict[str, Any] | None = None) -> Operation:
    tx = call.write
    details = {"via": "api", "sub": call.who.sub, "role": str(call.who.role), **(extra or {})}
    op_id, created = await operations.add(
        tx, new, transitions.PENDING if submit else transitions.CREATED, details)
    if not created:
        raise Problem(409, "duplicate-operation", "Already exists",
                      f"an operation with the idempotency key {new.idempotency_key!r} exists "
                      "already: the same logical operation is never stored twice")
    if submit:
        call.after_commit.append(lambda: _wake(call))
    op = await operations.get(tx, op_id)
    assert op is not None
    return op


def _wake(call: Call) -> None:
    pipeline = call.ctx.subsystem("pipeline")
    if pipeline is not None:
        pipeline.submitter.wake.set()


async def create(call: Call) -> Reply:
    """Create a transaction (stored as `created` unless `submit` is true)."""
    body: CreateTransaction = call.body
    row, payload, problems = _parse(call, body.tx_type, body.payload, ())
    if problems or payload is None:
        raise invalid(problems)
    op = await _add(call, _new(call, row, payload), body.submit)
    return Reply(CreatedTransaction(operation_id=op.id, tx_type=op.tx_type, status=op.status,
                                    created_at=iso(op.created_at_ms)), 201)


async def create_batch(call: Call) -> Reply:
    """Create several transactions: all of them, or (any invalid) none."""
    body: BatchCreate = call.body
    parsed, problems = [], []
    for i, item in enumerate(body.transactions):
        row, payload, errs = _parse(call, item.tx_type, item.payload, ("transactions", i))
        problems += errs
        if payload is not None:
            parsed.append((row, payload))
    if problems:
        raise invalid(problems, "nothing was created")
    keys = [_new(call, row, payload) for row, payload in parsed]
    dup = {k.idempotency_key for k in keys if sum(o.idempotency_key == k.idempotency_key
                                                  for o in keys) > 1}
    if dup:
        raise Problem(409, "duplicate-operation", "Duplicates in the batch",
                      f"the batch holds the same operation twice ({', '.join(sorted(dup))}); "
                      "nothing was created")
    batch_id = uuid.uuid4().hex
    entries = []
    for n, new in enumerate(keys):
        op = await _add(call, new, body.submit, {"batch_id": batch_id, "batch_index": n})
        entries.append(BatchEntry(operation_id=op.id, status=op.status))
    return Reply(BatchCreated(batch_id=batch_id, transactions=entries), 201)


async def submit(call: Call) -> Reply:
    """Submit a created transaction: the pipeline signs and sends it."""
    tx = call.write
    op = await visible(call, tx, call.int_param("id"))
    if op.status != transitions.CREATED:
        raise Problem(409, "not-created", "Not waiting for a submit",
                      f"operation {op.id} is {op.status}; only a created operation is submitted")
    await operations.move(tx, op.id, transitions.PENDING, reason="submitted through the API",
                          details={"sub": call.who.sub, "role": str(call.who.role)})
    call.after_commit.append(lambda: _wake(call))
    moved = await operations.get(tx, op.id)
    assert moved is not None
    return Reply(await status_of(tx, moved))


async def retry(call: Call) -> Reply:
    """Send a failed, parked or expired transaction back to pending (audited)."""
    tx = call.write
    body: RetryRequest = call.body
    op = await visible(call, tx, call.int_param("id"))
    kind = operation_type(TX_TYPES.get(op.tx_type))
    if body.operation_type is not None and body.operation_type not in (kind, op.tx_type):
        raise invalid([FieldProblem(pointer="/operation_type",
                                    detail=f"operation {op.id} is a {kind} {op.tx_type}",
                                    allowed=f"{kind!r} or {op.tx_type!r}")])
    signed = await operations.attempts_of(tx, op.id)
    if body.max_attempts is not None and len(signed) >= body.max_attempts:
        raise Problem(409, "attempts-exhausted", "Attempts exhausted",
                      f"operation {op.id} has {len(signed)} signed transactions, "
                      f"max_attempts is {body.max_attempts}")
    note = f"API retry by {call.who.role} {call.who.sub}"
    try:
        await operations.operator_retry(tx, op.id, note)
    except operations.NotRetryable as exc:
        raise Problem(409, "not-retryable", "Not retryable", str(exc)) from None
    call.after_commit.append(lambda: _wake(call))
    return Reply(RetryResult(success=True, attempts=len(signed),
                             signature=signed[-1].signature if signed else None,
                             status=transitions.PENDING))


# -- reading ----------------------------------------------------------------------------------

async def get_status(call: Call) -> Reply:
    """The status of one transaction."""
    db = call.ctx.db
    return Reply(await status_of(db, await visible(call, db, call.int_param("id"))))


async def get_detail(call: Call) -> Reply:
    """One transaction: payload, every signed transaction, status history, decoded events."""
    import json

    db = call.ctx.db
    op = await visible(call, db, call.int_param("id"))
    attempts = await operations.attempts_of(db, op.id)
    history = await operations.history(db, op.id)
    chain = await views.chain_events_of(db, op.id)
    base = _status(op, attempts[-1].signature if attempts else None)
    return Reply(TransactionDetail(
        **base.model_dump(), payload=op.payload, idempotency_key=op.idempotency_key,
        last_error=op.last_error, finalized_at=iso(op.finalized_at_ms),
        transactions=[SignedAttempt(
            signature=a.signature, observed_status=a.observed_status, blockhash=a.blockhash,
            last_valid_block_height=a.last_valid_block_height,
            compute_unit_limit=a.compute_unit_limit,
            priority_fee_micro_lamports=a.priority_fee_micro_lamports, send_count=a.send_count,
            slot=a.slot, err=json.loads(a.err) if a.err else None, fee_lamports=a.fee_lamports,
            created_at=iso(a.created_at_ms), first_sent_at=iso(a.first_sent_at_ms))
            for a in attempts],
        history=[HistoryItem(at=iso(h.at_ms), old_status=h.old_status, new_status=h.new_status,
                             reason=h.reason,
                             details=json.loads(h.details) if h.details else None)
                 for h in history],
        events=[DecodedEvent(name=e.name, program_id=e.program_id, signature=e.signature,
                             slot=e.slot, data=json.loads(e.data)) for e in chain]))


async def list_user(call: Call) -> Reply:
    """The caller's transactions (a user's own; everything for operator and monitor), newest
    first."""
    q: ListQuery = call.query
    db = call.ctx.db
    ops, total = await views.list_operations(
        db, owner=owner_of(call.who), statuses=[q.status] if q.status else (),
        limit=q.limit, offset=q.offset)
    return Reply(TransactionList(transactions=[await status_of(db, op) for op in ops],
                                 total=total, page=q.offset // q.limit + 1, page_size=q.limit))


async def stats(call: Call) -> Reply:
    """Counts by status group, mean confirmation time and success rate (a user's own)."""
    s = await views.stats(call.ctx.db, owner_of(call.who))

    def count(group: frozenset[str]) -> int:
        return sum(n for status, n in s.by_status.items() if status in group)

    confirmed, failed = count(CONFIRMED_GROUP), count(FAILED_GROUP)
    return Reply(TransactionStats(
        total_count=sum(s.by_status.values()), pending_count=count(PENDING_GROUP),
        submitted_count=count(SUBMITTED_GROUP), confirmed_count=confirmed,
        failed_count=failed, processing_count=count(PROCESSING_GROUP),
        avg_confirmation_time_seconds=s.avg_confirmation_s,
        success_rate=confirmed / (confirmed + failed) if confirmed + failed else None))
