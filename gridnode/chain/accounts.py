"""Chain reads the market needs, decoded through the IDLs: open orders, trade records, GRID
balances, the market's state, settlement markers.

Lists come from getProgramAccounts with memcmp filters on the Anchor account discriminator (and
the order status, or a trade's seller/buyer), so the RPC node sends only the accounts wanted;
every amount is an int (Wh, base units, lamports), never a float. Reads are at the pool's
commitment; RpcUnavailable propagates (the caller's round is retried).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from solders.pubkey import Pubkey

from gridnode.chain.idl import ProgramIdl
from gridnode.chain.rpc import RpcPool
from gridnode.chain.txtypes import is_placeholder
from gridnode.chain.validation import enum_name

# Byte offsets in the accounts (8-byte discriminator first), from the IDL layouts: Order is
# seller, buyer, amount, filled_amount, price_per_kwh, order_type (u8), status (u8), ...;
# TradeRecord is sell_order, buy_order, seller, buyer, ...
ORDER_STATUS_OFFSET = 8 + 32 + 32 + 8 + 8 + 8 + 1
TRADE_SELLER_OFFSET = 8 + 32 + 32
TRADE_BUYER_OFFSET = TRADE_SELLER_OFFSET + 32
OPEN_STATUSES = ("Active", "PartiallyFilled")
TOKEN_AMOUNT_OFFSET = 64     # SPL Token account: mint 0, owner 32, amount 64 (u64 LE)


@dataclass(frozen=True)
class OrderAccount:
    """A trading Order. `owner` is the seller of a sell order, the buyer of a buy order."""

    address: str
    side: str                # "sell" | "buy"
    owner: str
    amount: int              # Wh
    filled_amount: int       # Wh
    price_per_kwh: int       # a sell order's ask, a buy order's bid
    status: str              # Active | PartiallyFilled | Completed | Cancelled | Expired
    created_at: int          # Unix s
    expires_at: int          # Unix s

    @property
    def remaining(self) -> int:
        return max(0, self.amount - self.filled_amount)

    @property
    def placeholder(self) -> bool:
        """A placeholder order (gridnode.chain.txtypes): never matched, never cancelled."""
        return is_placeholder(self.side, self.price_per_kwh)


@dataclass(frozen=True)
class TradeRecordAccount:
    """A trading TradeRecord: one per matched (buy, sell) pair."""

    address: str
    sell_order: str
    buy_order: str
    seller: str
    buyer: str
    amount: int              # Wh
    price_per_kwh: int
    total_value: int
    fee_amount: int
    executed_at: int         # Unix s

    @property
    def token_amount(self) -> int:
        """GRID base units the settlement moves (1 Wh = 10^6)."""
        return self.amount * 10**6


@dataclass(frozen=True)
class MarketAccount:
    address: str
    authority: str
    active_orders: int
    total_volume: int
    total_trades: int
    created_at: int
    clearing_enabled: bool
    market_fee_bps: int


@dataclass(frozen=True)
class SettlementAccount:
    """A trading TradeSettlement marker: the trade was settled exactly once, by `settled_by`."""

    address: str
    trade_record: str
    seller: str
    buyer: str
    amount: int              # Wh
    token_amount: int        # base units
    settled_by: str
    settled_at: int


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _memcmp(offset: int, raw: bytes) -> dict[str, Any]:
    return {"memcmp": {"offset": offset, "bytes": _b64(raw), "encoding": "base64"}}


async def program_accounts(pool: RpcPool, program: ProgramIdl, account: str,
                           filters: Sequence[tuple[int, bytes]] = ()
                           ) -> list[tuple[str, dict[str, Any]]]:
    """(address, decoded fields) of every `account` of `program` whose bytes at each offset
    equal the given bytes (besides the discriminator), sorted by address."""
    specs = [_memcmp(0, program.account_discriminator(account)),
             *(_memcmp(off, raw) for off, raw in filters)]
    res = await pool.raw("getProgramAccounts", [str(program.program_id), {
        "encoding": "base64", "commitment": str(pool.commitment), "filters": specs}])
    items = res["value"] if isinstance(res, dict) else res
    out = []
    for item in items:
        data = base64.b64decode(item["account"]["data"][0])
        out.append((str(item["pubkey"]), dict(program.decode_account(account, data))))
    out.sort(key=lambda kv: kv[0])
    return out


def order_account(address: str, f: Mapping[str, Any]) -> OrderAccount:
    """An OrderAccount from the IDL-decoded fields of the Order at `address`."""
    side = enum_name(f["order_type"]).lower()
    owner = str(f["seller"] if side == "sell" else f["buyer"])
    return OrderAccount(address, side, owner, int(f["amount"]), int(f["filled_amount"]),
                        int(f["price_per_kwh"]), enum_name(f["status"]), int(f["created_at"]),
                        int(f["expires_at"]))


def _status_index(program: ProgramIdl, status: str) -> int:
    for t in program.raw["types"]:
        if t["name"] == "OrderStatus":
            return [v["name"] for v in t["type"]["variants"]].index(status)
    raise KeyError("OrderStatus")


async def open_orders(pool: RpcPool, programs: Mapping[str, ProgramIdl], *,
                      placeholders: bool = False) -> list[OrderAccount]:
    """Every Active or PartiallyFilled order (one filtered read per status), by address;
    placeholder orders (which only hold the order PDA index up) only when asked for."""
    trading = programs["trading"]
    out: list[OrderAccount] = []
    for status in OPEN_STATUSES:
        idx = _status_index(trading, status)
        for address, f in await program_accounts(pool, trading, "Order",
                                                 [(ORDER_STATUS_OFFSET, bytes([idx]))]):
            order = order_account(address, f)
            if placeholders or not order.placeholder:
                out.append(order)
    out.sort(key=lambda o: o.address)
    return out


def created_order(events: Iterable[tuple[str, Mapping[str, Any]]], owner: str) -> str | None:
    """The address of `owner`'s order among the (name, fields) events of an order_creation:
    the SellOrderCreated/BuyOrderCreated whose seller/buyer is the owner. The gateway's
    placeholder orders travel in the same transaction, so the first such event is not
    necessarily the owner's."""
    for name, f in events:
        if name == "SellOrderCreated" and str(f.get("seller")) == owner:
            return str(f["order_id"])
        if name == "BuyOrderCreated" and str(f.get("buyer")) == owner:
            return str(f["order_id"])
    return None


def trade_record_account(address: str, f: Mapping[str, Any]) -> TradeRecordAccount:
    """A TradeRecordAccount from the IDL-decoded fields of the TradeRecord at `address`."""
    return TradeRecordAccount(address, str(f["sell_order"]), str(f["buy_order"]), str(f["seller"]),
                              str(f["buyer"]), int(f["amount"]), int(f["price_per_kwh"]),
                              int(f["total_value"]), int(f["fee_amount"]), int(f["executed_at"]))


async def trade_records(pool: RpcPool, programs: Mapping[str, ProgramIdl],
                        party: str | None = None) -> list[TradeRecordAccount]:
    """Every TradeRecord, or those where `party` is the seller or the buyer (two filtered reads,
    a self-trade listed once), by address."""
    trading = programs["trading"]
    found: dict[str, dict[str, Any]] = {}
    if party is None:
        found.update(await program_accounts(pool, trading, "TradeRecord"))
    else:
        key = bytes(Pubkey.from_string(party))
        for offset in (TRADE_SELLER_OFFSET, TRADE_BUYER_OFFSET):
            found.update(await program_accounts(pool, trading, "TradeRecord", [(offset, key)]))
    return sorted((trade_record_account(a, f) for a, f in found.items()), key=lambda t: t.address)


async def token_balances(pool: RpcPool, accounts: Iterable[str | Pubkey]) -> dict[str, int]:
    """Base units held by each SPL token account; 0 for an account that does not exist."""
    keys = [a if isinstance(a, Pubkey) else Pubkey.from_string(a) for a in accounts]
    datas = await pool.account_data(keys)
    return {str(k): (0 if d is None or len(d) < TOKEN_AMOUNT_OFFSET + 8
                     else int(struct.unpack_from("<Q", d, TOKEN_AMOUNT_OFFSET)[0]))
            for k, d in zip(keys, datas, strict=True)}


def market_address(programs: Mapping[str, ProgramIdl]) -> Pubkey:
    return programs["trading"].find_pda([b"market"])[0]


async def market(pool: RpcPool, programs: Mapping[str, ProgramIdl]) -> MarketAccount | None:
    """The trading Market singleton (None before initialize_market)."""
    address = market_address(programs)
    data = (await pool.account_data([address]))[0]
    if data is None:
        return None
    f = programs["trading"].decode_account("Market", data)
    return MarketAccount(str(address), str(f["authority"]), int(f["active_orders"]),
                         int(f["total_volume"]), int(f["total_trades"]), int(f["created_at"]),
                         bool(f["clearing_enabled"]), int(f["market_fee_bps"]))


def settlement_address(programs: Mapping[str, ProgramIdl], trade_record: str | Pubkey) -> Pubkey:
    """The settlement marker PDA of a trade: trading ["settlement", trade_record]."""
    key = trade_record if isinstance(trade_record, Pubkey) else Pubkey.from_string(trade_record)
    return programs["trading"].find_pda([b"settlement", bytes(key)])[0]


def trade_record_address(programs: Mapping[str, ProgramIdl], buy_order: str | Pubkey,
                         sell_order: str | Pubkey) -> Pubkey:
    """The TradeRecord PDA of a (buy, sell) pair: trading ["trade", buy_order, sell_order]."""
    keys = [k if isinstance(k, Pubkey) else Pubkey.from_string(k) for k in (buy_order, sell_order)]
    return programs["trading"].find_pda([b"trade", *(bytes(k) for k in keys)])[0]


async def settlements(pool: RpcPool, programs: Mapping[str, ProgramIdl],
                      trade_records_: Sequence[str]) -> dict[str, SettlementAccount | None]:
    """trade record -> its settlement marker, None where the trade is not settled (one read)."""
    addrs = [settlement_address(programs, t) for t in trade_records_]
    datas = await pool.account_data(addrs)
    out: dict[str, SettlementAccount | None] = {}
    for t, a, d in zip(trade_records_, addrs, datas, strict=True):
        if d is None:
            out[t] = None
            continue
        f = programs["trading"].decode_account("TradeSettlement", d)
        out[t] = SettlementAccount(str(a), str(f["trade_record"]), str(f["seller"]),
                                   str(f["buyer"]), int(f["amount"]), int(f["token_amount"]),
                                   str(f["settled_by"]), int(f["settled_at"]))
    return out
