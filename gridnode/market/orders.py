"""Orders from the node's policy, and orders an operator places (CLI/API).

Per user: `sell_surplus` sells each finalized interval's net generation at `min_price_per_kwh`,
`buy_deficit` buys each interval's net consumption at `max_price_per_kwh`, `manual` places
nothing by itself. An order trades in the epoch in which it is created on chain; what is not
matched when that epoch is over is cancelled (gridnode.market.service)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gridnode.chain.txtypes import new_operation
from gridnode.chain.validation import OrderCancelPayload, OrderCreationPayload
from gridnode.market.users import User
from gridnode.store.market import NewOrder
from gridnode.store.operations import NewOperation


@dataclass(frozen=True, slots=True)
class PlannedOrder:
    order: NewOrder
    operation: NewOperation


def order_operation(owner: str, side: str, energy_wh: int, price_per_kwh: int,
                    key: str, erc_certificate: str | None = None) -> NewOperation:
    return new_operation(OrderCreationPayload(owner=owner, side=side,  # type: ignore[arg-type]
                                              energy_amount=energy_wh,
                                              price_per_kwh=price_per_kwh,
                                              erc_certificate=erc_certificate), key)


def plan_of(planned: PlannedOrder) -> dict[str, Any]:
    """The order as data, to be placed later (after its certificate): JSON-ready."""
    o = planned.order
    return {"user_name": o.user_name, "owner": o.owner, "side": o.side,
            "energy_wh": o.energy_wh, "price_per_kwh": o.price_per_kwh, "source": o.source,
            "meter_id": o.meter_id, "interval_end": o.interval_end,
            "key": planned.operation.idempotency_key}


def from_plan(plan: dict[str, Any], epoch: int, erc_certificate: str | None) -> PlannedOrder:
    """The planned order, now, naming the certificate address (None: without one)."""
    order = NewOrder(str(plan["user_name"]), str(plan["owner"]), str(plan["side"]),
                     int(plan["energy_wh"]), int(plan["price_per_kwh"]), epoch,
                     str(plan["source"]), plan.get("meter_id"), plan.get("interval_end"))
    return PlannedOrder(order, order_operation(order.owner, order.side, order.energy_wh,
                                               order.price_per_kwh, str(plan["key"]),
                                               erc_certificate))


def policy_orders(user: User, reading: dict[str, Any], epoch: int) -> list[PlannedOrder]:
    """The order `user`'s policy places for one finalized interval of one of its meters."""
    if not user.holds_key:
        return []
    produced, consumed = int(reading["energy_produced_wh"]), int(reading["energy_consumed_wh"])
    meter, end = str(reading["meter_id"]), int(reading["interval_end"])
    if user.policy == "sell_surplus" and produced > consumed:
        side, amount, price = "sell", produced - consumed, user.min_price_per_kwh
    elif user.policy == "buy_deficit" and consumed > produced:
        side, amount, price = "buy", consumed - produced, user.max_price_per_kwh
    else:
        return []
    assert price is not None      # the configuration requires it for the policy
    key = f"order_creation:policy:{meter}:{end}:{side}"
    return [PlannedOrder(
        NewOrder(user.name, user.pubkey, side, amount, price, epoch, "policy", meter, end),
        order_operation(user.pubkey, side, amount, price, key))]


def manual_order(user: User, side: str, energy_wh: int, price_per_kwh: int, epoch: int,
                 request_id: str) -> PlannedOrder:
    """An operator's order; `request_id` names it (the same id twice adds nothing)."""
    key = f"order_creation:manual:{user.name}:{request_id}"
    return PlannedOrder(
        NewOrder(user.name, user.pubkey, side, energy_wh, price_per_kwh, epoch, "manual"),
        order_operation(user.pubkey, side, energy_wh, price_per_kwh, key))


def cancel_operation(owner: str, order_address: str) -> NewOperation:
    return new_operation(OrderCancelPayload(owner=owner, order=order_address))
