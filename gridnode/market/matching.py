"""Price-time priority matching of one epoch's open orders, exactly as the trading program fills.

Bids are taken from the highest price down, asks from the lowest up; between equal prices the
earlier `created_at` goes first (then the lower address, so the result never depends on the
order the chain listed them in). A bid meets asks while bid >= ask. Each match fills
min(bid remaining, ask remaining) - the program's own fill rule for a match_orders asking for
that amount - at the program's price, floor((bid + ask) / 2). A partially filled order stays in
the book for the next counterparty.

The program allows one TradeRecord per (buy, sell) pair ever (PDA ["trade", buy, sell]), so
pairs that already traded (`traded`) are never matched again; orders at or past their expiry
(`now`) are left out, since the program refuses them (6013). Asks at u64::MAX per kWh are
the gateway's placeholder orders (gridnode.chain.txtypes), which only hold the order PDA index
up: never matched. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Protocol

from gridnode.chain.txtypes import is_placeholder


class Quote(Protocol):
    """What matching reads of an order (gridnode.chain.accounts.OrderAccount has it)."""

    @property
    def address(self) -> str: ...
    @property
    def price_per_kwh(self) -> int: ...
    @property
    def remaining(self) -> int: ...
    @property
    def created_at(self) -> int: ...


@dataclass(frozen=True)
class BookOrder:
    """A plain order for matching (tests, benchmarks, callers without chain accounts)."""

    address: str
    price_per_kwh: int
    remaining: int
    created_at: int
    owner: str = ""
    expires_at: int | None = None


@dataclass(frozen=True)
class Match:
    """One match_orders to send: `amount_wh` of `sell_order` to `buy_order` at `price`."""

    buy_order: str
    sell_order: str
    amount_wh: int
    price: int               # base units per kWh: floor((bid + ask) / 2)
    buyer: str = ""
    seller: str = ""

    @property
    def total_value(self) -> int:
        """The program's total_value: amount (Wh) x price, as it computes it."""
        return self.amount_wh * self.price


def midpoint(bid: int, ask: int) -> int:
    """The program's price: (bid >> 1) + (ask >> 1) + (bid & ask & 1) == floor((bid + ask) / 2)."""
    return (bid >> 1) + (ask >> 1) + (bid & ask & 1)


def _open(orders: Iterable[Quote], now: int | None) -> list[Quote]:
    out = []
    for o in orders:
        expires = getattr(o, "expires_at", None)
        if int(o.remaining) <= 0 or (now is not None and expires is not None
                                     and now >= int(expires)):
            continue
        out.append(o)
    return out


def match(bids: Iterable[Quote], asks: Iterable[Quote], *,
          traded: Collection[tuple[str, str]] = (), now: int | None = None) -> list[Match]:
    """The matches of one epoch, in the order they should be sent (best bid first).

    `traded` holds (buy_order, sell_order) pairs that already have a TradeRecord; `now` (Unix s)
    drops orders at or past `expires_at` when they carry one.
    """
    book_bids = sorted(_open(bids, now),
                       key=lambda o: (-int(o.price_per_kwh), int(o.created_at), str(o.address)))
    book_asks = sorted((a for a in _open(asks, now) if not is_placeholder("sell", a.price_per_kwh)),
                       key=lambda o: (int(o.price_per_kwh), int(o.created_at), str(o.address)))
    left = [int(o.remaining) for o in book_asks]
    done = {(str(b), str(s)) for b, s in traded}
    out: list[Match] = []
    first = 0                              # asks before this index are exhausted
    for bid in book_bids:
        want = int(bid.remaining)
        bid_price = int(bid.price_per_kwh)
        buy = str(bid.address)
        for i in range(first, len(book_asks)):
            if want == 0:
                break
            ask = book_asks[i]
            ask_price = int(ask.price_per_kwh)
            if ask_price > bid_price:
                break                      # asks are sorted: no cheaper one follows
            if left[i] == 0:
                if i == first:
                    first += 1
                continue
            sell = str(ask.address)
            if (buy, sell) in done or buy == sell:
                continue
            fill = min(want, left[i])
            want -= fill
            left[i] -= fill
            if left[i] == 0 and i == first:
                first += 1
            done.add((buy, sell))
            out.append(Match(buy, sell, fill, midpoint(bid_price, ask_price),
                             buyer=str(getattr(bid, "owner", "")),
                             seller=str(getattr(ask, "owner", ""))))
    return out
