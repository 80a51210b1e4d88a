"""Settlement of matched trades with a local seller ("auto-settlement on confirmation").

A trade is found two ways: the OrderMatched events of the node's own finalized match
operations, and a scan of the TradeRecord accounts whose seller is a local user (matches made
elsewhere, or whose match operation ended without events of its own). Either way it becomes one
settlement row and one settle_trade operation (idempotency key = the trade record), written in
one transaction; the on-chain settlement marker refuses a second settlement anyway (6016).

The queue follows the settlement's operation: signed -> `submitted`, finalized -> `settled`
(with `settlement.completed`). An operation that fails or is parked counts one attempt of the
settlement's recovery budget ([market] settlement_attempts): it goes back to pending after
`settlement_retry_s`, and when the budget is spent the settlement is defaulted
(gridnode.settlement.compensation). Everything is read from the tables each round, so a restart
resumes where they say.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from solders.pubkey import Pubkey

from gridnode.chain.txtypes import new_operation, tx_type
from gridnode.log import get_logger
from gridnode.market.clearing import epoch_of
from gridnode.market.users import Users, token_account
from gridnode.store import Store, settlements
from gridnode.store.db import WriteTx, now_ms
from gridnode.store.operations import NewOperation
from gridnode.store.settlements import Settlement, Trade

log = get_logger(__name__)

IN_FLIGHT = ("signed", "submitted", "unknown", "confirmed")
ENDED_BADLY = ("failed", "parked")


def trade_address(trading_program: Pubkey, buy_order: str, sell_order: str) -> str:
    return str(Pubkey.find_program_address(
        [b"trade", bytes(Pubkey.from_string(buy_order)), bytes(Pubkey.from_string(sell_order))],
        trading_program)[0])


def trade_from_event(event: dict[str, Any], trading_program: Pubkey,
                     epoch: int | None) -> Trade:
    """A trade from an OrderMatched event."""
    buy, sell = str(event["buy_order"]), str(event["sell_order"])
    return Trade(trade_address(trading_program, buy, sell), buy, sell, str(event["buyer"]),
                 str(event["seller"]), int(event["amount"]), int(event["price"]),
                 int(event["total_value"]), int(event["fee_amount"]), epoch)


def trade_from_record(rec: Any, epoch_s: int) -> Trade:
    """A trade from a decoded TradeRecord account (its epoch from when it was executed)."""
    executed = int(getattr(rec, "executed_at", 0) or 0)
    return Trade(str(rec.address), str(rec.buy_order), str(rec.sell_order), str(rec.buyer),
                 str(rec.seller), int(rec.amount), int(rec.price_per_kwh), int(rec.total_value),
                 int(rec.fee_amount), epoch_of(executed - 1, epoch_s) if executed else None)


@dataclass
class Settler:
    """Turns trades into settlements and moves the settlement queue along."""

    store: Store
    users: Users
    mint: Pubkey
    gateway: str                     # the gateway's pubkey: the delegate's signer
    attempts: int                    # the recovery budget
    retry_s: float
    compensate: Callable[[Settlement, str], Awaitable[None]]   # defaults a settlement

    def settle_operation(self, trade: Trade) -> NewOperation:
        seller = self.users.by_pubkey[trade.seller]
        payload = tx_type("settle_trade").parse({
            "trade_record": trade.trade_record, "seller": trade.seller, "buyer": trade.buyer,
            "seller_token_account": token_account(trade.seller, self.mint),
            "buyer_token_account": token_account(trade.buyer, self.mint),
            "signer": trade.seller if seller.holds_key else self.gateway})
        return new_operation(payload)

    def is_local_seller(self, trade: Trade) -> bool:
        return trade.seller in self.users.by_pubkey

    async def record(self, tx: WriteTx, trade: Trade, source: str) -> bool:
        """The settlement of `trade` when its seller is local and it has none yet."""
        if not self.is_local_seller(trade):
            return False
        sid, created = await settlements.add(tx, trade, self.settle_operation(trade),
                                             source=source)
        if created:
            log.info("trade to settle", settlement=sid, trade_record=trade.trade_record,
                     seller=trade.seller, buyer=trade.buyer, energy_wh=trade.energy_wh,
                     source=source)
        return created

    async def advance(self) -> int:
        """One round over the queue; returns how many settlements changed."""
        changed = 0
        for w in await settlements.working(self.store):
            s, op_status = w.settlement, w.op_status
            if s.operation_id is None or op_status is None:
                continue
            if op_status in IN_FLIGHT and s.status == "queued":
                sig = await settlements.op_signature(self.store, s.operation_id)
                async with self.store.write() as tx:
                    await settlements.mark_submitted(tx, s.id, sig)
                changed += 1
            elif op_status == "finalized":
                sig = await settlements.op_signature(self.store, s.operation_id)
                async with self.store.write() as tx:
                    done = await settlements.mark_settled(tx, s.id, sig)
                log.info("trade settled", settlement=s.id, trade_record=s.trade_record,
                         energy_wh=done.energy_wh, token_amount=done.token_amount, signature=sig)
                changed += 1
            elif op_status in ENDED_BADLY:
                changed += await self._failed(s, op_status, w.op_error or op_status)
        return changed

    async def _failed(self, s: Settlement, op_status: str, error: str) -> int:
        now = now_ms()
        if s.next_attempt_at_ms is None:      # a failure not counted yet
            retry_at = now + int(self.retry_s * 1000)
            async with self.store.write() as tx:
                n = await settlements.record_failure(tx, s.id, error, retry_at)
            log.warning("settlement attempt failed", settlement=s.id, attempt=n,
                        budget=self.attempts, error=error)
            if n >= self.attempts:
                await self.compensate(s, error)
            return 1
        if s.next_attempt_at_ms <= now and s.attempts < self.attempts:
            assert s.operation_id is not None
            async with self.store.write() as tx:
                await settlements.requeue_operation(
                    tx, s.operation_id, reason=f"settlement {s.id} attempt {s.attempts + 1} of "
                                               f"{self.attempts}", details={"after": op_status})
                await settlements.clear_retry(tx, s.id)
            return 1
        if s.attempts >= self.attempts:       # budget spent, the default did not go through
            await self.compensate(s, error)
            return 1
        return 0
