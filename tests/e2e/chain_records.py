"""What the chain itself holds, read over JSON-RPC and decoded here by hand (account layouts and
Anchor event encodings written from the programs' IDLs), so the acceptance tests can judge
gridnode against the chain without going through gridnode's own decoders or store.

Account layouts (8-byte Anchor discriminator sha256("account:<Name>")[:8] first, then borsh):
    Order            seller, buyer (32 each), amount, filled_amount, price_per_kwh (u64),
                     order_type (u8: Sell, Buy), status (u8), created_at, expires_at (i64)
    TradeRecord      sell_order, buy_order, seller, buyer (32 each), amount, price_per_kwh,
                     total_value, fee_amount (u64), executed_at (i64)
    TradeSettlement  trade_record, seller, buyer (32 each), amount, token_amount (u64),
                     settled_by (32), settled_at (i64)
    MeterAccount     meter_id (string), owner (32), meter_type, status (u8), registered_at,
                     last_reading_at (i64), total_generation, total_consumption,
                     settled_net_generation, claimed_erc_generation (u64)
Events are ``Program data: <base64>`` log lines, sha256("event:<Name>")[:8] then borsh, counted
for the program that is executing when the line is written.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from solders.pubkey import Pubkey

U64_MAX = 2**64 - 1
SELL, BUY = 0, 1
ACTIVE, PARTIAL, COMPLETED, CANCELLED, EXPIRED = range(5)


def discriminator(kind: str, name: str) -> bytes:
    return hashlib.sha256(f"{kind}:{name}".encode()).digest()[:8]


def _key(data: bytes, at: int) -> str:
    return str(Pubkey.from_bytes(data[at:at + 32]))


def _u64(data: bytes, at: int) -> int:
    return int(struct.unpack_from("<Q", data, at)[0])


def _i64(data: bytes, at: int) -> int:
    return int(struct.unpack_from("<q", data, at)[0])


@dataclass(frozen=True)
class Order:
    address: str
    seller: str
    buyer: str
    amount: int
    filled: int
    price: int
    side: int
    status: int
    created_at: int
    expires_at: int

    @property
    def owner(self) -> str:
        return self.seller if self.side == SELL else self.buyer

    @property
    def placeholder(self) -> bool:
        """The gateway's index-holding sell orders (never traded)."""
        return self.side == SELL and self.price == U64_MAX


@dataclass(frozen=True)
class Trade:
    address: str
    sell_order: str
    buy_order: str
    seller: str
    buyer: str
    amount: int
    price: int
    total_value: int
    fee: int
    executed_at: int


@dataclass(frozen=True)
class Settlement:
    address: str
    trade_record: str
    seller: str
    buyer: str
    amount: int
    token_amount: int
    settled_by: str
    settled_at: int


@dataclass(frozen=True)
class Meter:
    address: str
    meter_id: str
    owner: str
    total_generation: int
    total_consumption: int
    settled_net_generation: int


@dataclass(frozen=True)
class Reading:
    """A MeterReadingSubmitted event of a successful transaction."""

    signature: str
    meter_id: str
    produced: int
    consumed: int
    timestamp: int


class Chain:
    """Reads of one RPC endpoint (finalized unless told otherwise)."""

    def __init__(self, url: str, commitment: str = "finalized") -> None:
        self.url = url
        self.commitment = commitment
        self.client = httpx.AsyncClient(timeout=20)

    async def close(self) -> None:
        await self.client.aclose()

    async def call(self, method: str, params: list[Any]) -> Any:
        body = (await self.client.post(self.url, json={"jsonrpc": "2.0", "id": 1,
                                                        "method": method,
                                                        "params": params})).json()
        if "error" in body:
            raise AssertionError(f"{method}: {body['error']}")
        return body["result"]

    async def program_accounts(self, program: str, name: str) -> list[tuple[str, bytes]]:
        disc = base64.b64encode(discriminator("account", name)).decode()
        got = await self.call("getProgramAccounts", [program, {
            "encoding": "base64", "commitment": self.commitment,
            "filters": [{"memcmp": {"offset": 0, "bytes": disc, "encoding": "base64"}}]}])
        return [(a["pubkey"], base64.b64decode(a["account"]["data"][0])) for a in got]

    async def account(self, address: str) -> bytes | None:
        got = await self.call("getAccountInfo", [address, {"encoding": "base64",
                                                           "commitment": self.commitment}])
        value = got["value"]
        return None if value is None else base64.b64decode(value["data"][0])

    async def orders(self, trading: str) -> list[Order]:
        out = []
        for addr, d in await self.program_accounts(trading, "Order"):
            out.append(Order(addr, _key(d, 8), _key(d, 40), _u64(d, 72), _u64(d, 80),
                             _u64(d, 88), d[96], d[97], _i64(d, 98), _i64(d, 106)))
        return out

    async def trades(self, trading: str) -> list[Trade]:
        return [Trade(addr, _key(d, 8), _key(d, 40), _key(d, 72), _key(d, 104), _u64(d, 136),
                      _u64(d, 144), _u64(d, 152), _u64(d, 160), _i64(d, 168))
                for addr, d in await self.program_accounts(trading, "TradeRecord")]

    async def settlements(self, trading: str) -> list[Settlement]:
        return [Settlement(addr, _key(d, 8), _key(d, 40), _key(d, 72), _u64(d, 104),
                           _u64(d, 112), _key(d, 120), _i64(d, 152))
                for addr, d in await self.program_accounts(trading, "TradeSettlement")]

    async def meters(self, registry: str) -> list[Meter]:
        out = []
        for addr, d in await self.program_accounts(registry, "MeterAccount"):
            n = struct.unpack_from("<I", d, 8)[0]
            meter_id = d[12:12 + n].decode()
            at = 12 + n
            owner = _key(d, at)
            at += 32 + 2 + 16           # meter_type, status, registered_at, last_reading_at
            out.append(Meter(addr, meter_id, owner, _u64(d, at), _u64(d, at + 8),
                             _u64(d, at + 16)))
        return out

    async def token_amount(self, token_account: str) -> int:
        """An SPL token account's amount (0 when it does not exist)."""
        d = await self.account(token_account)
        return 0 if d is None else _u64(d, 64)

    async def mint_supply(self, mint: str) -> int:
        d = await self.account(mint)
        assert d is not None, f"no mint {mint}"
        return _u64(d, 36)

    async def signatures(self, address: str) -> list[dict[str, Any]]:
        """Every transaction that names `address`, newest first."""
        out: list[dict[str, Any]] = []
        before: str | None = None
        while True:
            cfg: dict[str, Any] = {"limit": 1000, "commitment": self.commitment}
            if before:
                cfg["before"] = before
            page = await self.call("getSignaturesForAddress", [address, cfg])
            out += page
            if len(page) < 1000:
                return out
            before = page[-1]["signature"]

    async def logs(self, signature: str) -> list[str]:
        tx = await self.call("getTransaction", [signature, {
            "encoding": "json", "commitment": self.commitment,
            "maxSupportedTransactionVersion": 0}])
        assert tx is not None, f"no transaction {signature}"
        assert tx["meta"]["err"] is None, (signature, tx["meta"]["err"])
        return list(tx["meta"]["logMessages"] or [])

    async def events(self, address: str, program: str, name: str) -> list[tuple[str, bytes]]:
        """(signature, event body after the discriminator) of each `name` event `program`
        emitted in a successful transaction naming `address`."""
        disc = discriminator("event", name)
        out = []
        for s in await self.signatures(address):
            if s["err"] is not None:
                continue
            for body in program_data(await self.logs(s["signature"]), program):
                if body[:8] == disc:
                    out.append((s["signature"], body[8:]))
        return out

    async def readings(self, oracle: str) -> list[Reading]:
        out = []
        for sig, d in await self.events(oracle, oracle, "MeterReadingSubmitted"):
            n = struct.unpack_from("<I", d, 0)[0]
            meter = d[4:4 + n].decode()
            out.append(Reading(sig, meter, _u64(d, 4 + n), _u64(d, 12 + n), _i64(d, 20 + n)))
        return out


def program_data(logs: Iterable[str], program: str) -> list[bytes]:
    """The ``Program data:`` payloads written while `program` was the executing one."""
    stack: list[str] = []
    out = []
    for line in logs:
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "Program" and parts[2] == "invoke":
            stack.append(parts[1])
        elif len(parts) >= 3 and parts[0] == "Program" and parts[2] in ("success", "failed:"):
            if stack and stack[-1] == parts[1]:
                stack.pop()
        elif line.startswith("Program data: ") and stack and stack[-1] == program:
            out.append(base64.b64decode(line[len("Program data: "):]))
    return out


def midpoint(bid: int, ask: int) -> int:
    return (bid + ask) // 2


def price_time_match(orders: list[Order], epoch_end: int) -> list[tuple[str, str, int, int]]:
    """One epoch's matches as the market should clear them: bids from the highest price, asks
    from the lowest, earlier creation (then address) first between equal prices; a bid takes
    asks while bid >= ask, each fill min(what both have left) at floor((bid + ask) / 2).
    Returns (buy order, sell order, Wh, price) in the order made."""
    live = [o for o in orders if not o.placeholder
            and (o.expires_at == 0 or o.expires_at > epoch_end)]
    bids = sorted((o for o in live if o.side == BUY),
                  key=lambda o: (-o.price, o.created_at, o.address))
    asks = sorted((o for o in live if o.side == SELL),
                  key=lambda o: (o.price, o.created_at, o.address))
    left = {o.address: o.amount for o in live}
    out = []
    for bid in bids:
        for ask in asks:
            if left[bid.address] == 0 or ask.price > bid.price:
                break
            fill = min(left[bid.address], left[ask.address])
            if fill == 0:
                continue
            left[bid.address] -= fill
            left[ask.address] -= fill
            out.append((bid.address, ask.address, fill, midpoint(bid.price, ask.price)))
    return out
