"""Epoch clearing, with the market authority: epochs are UTC-aligned; at each epoch's end the
node triggers the oracle's market clearing, reads the open orders from chain, matches them by
price-time priority (gridnode.market.matching) and enqueues one match_orders operation per match.

The clearing of an epoch is one database transaction: its market_clearing operation, every
match operation (idempotency key buy order, sell order, epoch) and the epoch's row. A crash
before it commits leaves nothing (the epoch is cleared after the restart, from the chain as it
then is); after it, the row says the epoch is done and nothing is matched again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gridnode.chain.txtypes import new_operation, tx_type
from gridnode.chain.validation import MarketClearingPayload
from gridnode.store.operations import NewOperation


def epoch_of(t: float, epoch_s: int) -> int:
    """The end (Unix s) of the epoch that time `t` falls in; a boundary starts the next one."""
    return (int(t) // epoch_s + 1) * epoch_s


def last_ended(t: float, epoch_s: int) -> int:
    """The end of the latest epoch that has ended at time `t`."""
    return int(t) // epoch_s * epoch_s


def side_of(order: Any) -> str:
    """'sell' or 'buy' of a decoded order, whatever shape the enum takes."""
    kind = str(getattr(order, "side", "")).lower()
    return "sell" if "sell" in kind else "buy"


@dataclass(frozen=True, slots=True)
class Plan:
    epoch: int
    orders: int
    operations: list[NewOperation]
    energy_wh: int
    matches: list[Any]


def plan(open_orders: list[Any], epoch: int, now: float) -> Plan:
    """What clearing `epoch` enqueues, from the open orders read from chain: the orders created
    before the epoch's end that have not expired, matched by price-time priority."""
    from gridnode.market.matching import match

    eligible = [o for o in open_orders if int(o.created_at) < epoch]
    bids = [o for o in eligible if side_of(o) == "buy"]
    asks = [o for o in eligible if side_of(o) == "sell"]
    matches = match(bids, asks, now=int(now))
    ops = [new_operation(MarketClearingPayload(epoch=epoch))]
    row = tx_type("match_orders")
    for m in matches:
        ops.append(new_operation(row.parse({
            "buy_order": str(m.buy_order), "sell_order": str(m.sell_order),
            "amount": int(m.amount_wh), "epoch": epoch})))
    return Plan(epoch, len(eligible), ops, sum(int(m.amount_wh) for m in matches), matches)
