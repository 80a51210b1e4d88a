"""Compensation (the design's rollback, phase 4.4): a settlement that can never succeed within
its recovery budget (the seller's GRID is short, the delegate was revoked, the order is gone)
becomes `defaulted` instead of being retried forever.

Defaulting, in one transaction: the seller's remaining open sell orders get an order_cancel each
(when the node holds the seller's key; otherwise they are named as left open), the settlement's
reversal record says what was not delivered (energy, GRID, the value not to bill, to whom, why,
which orders were cancelled), the status change is audited and `settlement.defaulted` goes to
the event log. Nothing is deleted; an operator retries it or writes it off
(`gridnode settlement retry|write-off`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from gridnode.log import get_logger
from gridnode.market.clearing import side_of
from gridnode.market.orders import cancel_operation
from gridnode.market.users import Users
from gridnode.store import Store, market, operations, settlements
from gridnode.store.settlements import Settlement

log = get_logger(__name__)


class Compensation:
    def __init__(self, store: Store, users: Users,
                 open_orders: Callable[[], Awaitable[list[Any]]]) -> None:
        self.store = store
        self.users = users
        self.open_orders = open_orders

    async def default(self, s: Settlement, error: str) -> None:
        """Default `s` with its reversal record and cancel its seller's remaining orders."""
        try:
            still_open = [o for o in await self.open_orders()
                          if str(o.owner) == s.seller and side_of(o) == "sell"]
        except Exception as exc:     # the chain read is retried on the next round
            log.warning("cannot read open orders to compensate; retried", settlement=s.id,
                        error=str(exc))
            return
        seller = self.users.by_pubkey.get(s.seller)
        can_cancel = seller is not None and seller.holds_key
        cancelled: list[str] = []
        async with self.store.write() as tx:
            current = await settlements.get(tx, s.id)
            if current is None or current.status not in ("queued", "submitted"):
                return           # settled or defaulted meanwhile
            for o in still_open if can_cancel else []:
                op_id, _ = await operations.add(tx, cancel_operation(s.seller, str(o.address)),
                                                details={"compensation_for": s.trade_record})
                local = await market.order_by_address(tx, str(o.address))
                if local is not None and local.closed is None:
                    await market.close(tx, local.id, "cancel", op_id)
                cancelled.append(str(o.address))
            reversal = {
                "not_delivered_wh": s.energy_wh,
                "not_delivered_token_amount": s.token_amount,
                "from_seller": s.seller,
                "to_buyer": s.buyer,
                "value_not_to_bill": s.total_value,
                "fee_not_to_bill": s.fee,
                "net_not_to_pay_seller": s.net_to_seller,
                "reason": error,
                "attempts": current.attempts,
                "cancelled_orders": cancelled,
                "orders_left_open": [] if can_cancel else [str(o.address) for o in still_open],
            }
            await settlements.default(tx, s.id, f"defaulted after {current.attempts} attempts: "
                                      f"{error}", reversal)
        log.warning("settlement defaulted", settlement=s.id, trade_record=s.trade_record,
                    not_delivered_wh=s.energy_wh, seller=s.seller, buyer=s.buyer,
                    cancelled_orders=len(cancelled), reason=error)
