"""Several JSON-RPC endpoints behind one interface: health checks, failover, error accounting.

Every call goes to the preferred healthy endpoint; a transport failure (timeout, refused
connection, HTTP 5xx, "node is behind") is counted against that endpoint and the call moves on to
the next one, up to the configured number of switches, then backs off and tries again up to the
configured number of rounds. An answer from the chain (an RPC error with a message, a simulation
result) is never retried here: the caller decides what it means.

solana-py's AsyncClient does the typed calls; the few methods whose raw JSON we need (statuses
and transactions with their error objects, getRecentPrioritizationFees which the 0.36 client
lacks) go through the same client's HTTP session.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from solana.exceptions import SolanaExceptionBase, SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Commitment
from solana.rpc.core import RPCException, RPCNoResultException
from solana.rpc.types import TxOpts
from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from gridnode.log import get_logger

log = get_logger(__name__)

T = TypeVar("T")

# Signatures per getSignatureStatuses request (the RPC limit is 256).
STATUS_BATCH = 256


class RpcUnavailable(Exception):
    """No endpoint answered: the outcome of the request is unknown."""


class RpcRejected(Exception):
    """An endpoint answered with an error: the request reached a node and was refused."""

    def __init__(self, message: str, code: int | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.data = data


_BEHIND_CODES = {-32005}  # node is behind / unhealthy


def _is_transport(exc: BaseException) -> bool:
    return isinstance(exc, (httpx.HTTPError, SolanaRpcException, OSError, asyncio.TimeoutError,
                            RPCNoResultException, json.JSONDecodeError))


def describe_error(exc: BaseException, limit: int = 300) -> str:
    """`exc` and what caused it, outermost first, e.g. ``ConnectError: All connection attempts
    failed <- ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 8899)``.

    solana-py wraps every HTTP failure in a SolanaRpcException without text, and httpx repeats
    httpcore's message: a wrapper without text, and a layer repeating the text (or, for errors
    without text such as timeouts, the name) of the one above it, are left out. The chain stops
    at a CancelledError, which is how the HTTP stack implements its timeouts.
    """
    parts: list[str] = []
    last = ""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and not isinstance(cur, asyncio.CancelledError):
        seen.add(id(cur))
        text = next(iter(str(cur).splitlines()), "").strip()
        nxt = cur.__cause__ or cur.__context__
        wrapper = isinstance(cur, SolanaExceptionBase) and not text and nxt is not None
        key = text or type(cur).__name__
        if not wrapper and key != last:
            parts.append(f"{type(cur).__name__}: {text}" if text else type(cur).__name__)
            last = key
        cur = nxt
    return " <- ".join(parts)[:limit] or type(exc).__name__


@dataclass
class EndpointStats:
    """Per-endpoint accounting, shown in health output and used to pick endpoints."""

    requests: int = 0
    errors: int = 0
    consecutive_errors: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    healthy: bool = True
    slot: int | None = None
    lag_slots: int = 0


@dataclass
class RpcEndpoint:
    url: str
    client: AsyncClient
    stats: EndpointStats = field(default_factory=EndpointStats)
    unhealthy_since: float | None = None

    def record_ok(self) -> None:
        self.stats.requests += 1
        self.stats.consecutive_errors = 0

    def record_error(self, exc: BaseException) -> None:
        self.stats.requests += 1
        self.stats.errors += 1
        self.stats.consecutive_errors += 1
        self.stats.last_error = describe_error(exc)
        self.stats.last_error_at = time.monotonic()

    def set_healthy(self, healthy: bool, **why: Any) -> None:
        """Mark the endpoint (un)healthy; each change is logged once, with its reason: a warning
        when the node stops using it as first choice, an info line when it is back."""
        if healthy == self.stats.healthy:
            return
        self.stats.healthy = healthy
        now = time.monotonic()
        if healthy:
            down_s = None if self.unhealthy_since is None else round(now - self.unhealthy_since, 1)
            self.unhealthy_since = None
            log.info("rpc endpoint health changed", url=self.url, healthy=True,
                     unhealthy_for_s=down_s, **why)
        else:
            self.unhealthy_since = now
            log.warning("rpc endpoint health changed", url=self.url, healthy=False, **why)


@dataclass(frozen=True)
class BlockhashInfo:
    blockhash: Hash
    last_valid_block_height: int
    fetched_at: float


class RpcPool:
    """The node's view of the chain through one or more RPC endpoints."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        commitment: str = "confirmed",
        timeout_s: float = 10.0,
        switches: int = 2,
        rounds: int = 3,
        backoff_s: float = 0.5,
        max_slot_lag: int = 50,
        unhealthy_after: int = 3,
    ) -> None:
        if not urls:
            raise ValueError("at least one RPC URL is required")
        self.commitment = Commitment(commitment)
        self.endpoints = [
            RpcEndpoint(url, AsyncClient(url, commitment=self.commitment, timeout=timeout_s))
            for url in urls
        ]
        self.switches = switches
        self.rounds = rounds
        self.backoff_s = backoff_s
        self.max_slot_lag = max_slot_lag
        self.unhealthy_after = unhealthy_after
        self._ids = itertools.count(1)
        self.observe: Callable[[str, float], None] | None = None   # (url, seconds) per request

    async def close(self) -> None:
        for ep in self.endpoints:
            await ep.client.close()

    # -- endpoint choice -------------------------------------------------------------------
    def ordered(self) -> list[RpcEndpoint]:
        """Healthy endpoints first (configured order), then the rest as a last resort."""
        healthy = [e for e in self.endpoints if e.stats.healthy]
        return healthy + [e for e in self.endpoints if not e.stats.healthy]

    def _failed(self, ep: RpcEndpoint, exc: BaseException) -> None:
        """Count a failed request; `unhealthy_after` failures in a row make `ep` unhealthy."""
        ep.record_error(exc)
        if ep.stats.consecutive_errors >= self.unhealthy_after:
            ep.set_healthy(False, error=ep.stats.last_error,
                           consecutive_errors=ep.stats.consecutive_errors)

    async def call(self, fn: Callable[[RpcEndpoint], Awaitable[T]], what: str = "rpc") -> T:
        """Run `fn` on an endpoint with failover (next endpoint) and backoff (rounds)."""
        last: tuple[RpcEndpoint, BaseException] | None = None
        for round_no in range(self.rounds):
            for ep in self.ordered()[: self.switches + 1]:
                try:
                    result = await self._timed(ep, fn(ep))
                except RpcRejected as exc:
                    if exc.code in _BEHIND_CODES:
                        self._failed(ep, exc)
                        last = ep, exc
                        continue
                    ep.record_ok()
                    raise
                except Exception as exc:  # noqa: BLE001 - classified just below
                    if not _is_transport(exc):
                        raise
                    self._failed(ep, exc)
                    last = ep, exc
                    log.debug("rpc call failed", what=what, url=ep.url, error=ep.stats.last_error)
                    continue
                ep.record_ok()
                return result
            if round_no + 1 < self.rounds:
                await asyncio.sleep(self.backoff_s * (2**round_no))
        cause = "no endpoint tried" if last is None else f"{last[0].url}: {describe_error(last[1])}"
        raise RpcUnavailable(f"{what}: no RPC endpoint answered (last: {cause})")

    # -- raw JSON-RPC ----------------------------------------------------------------------
    async def _raw(self, ep: RpcEndpoint, method: str, params: list[Any]) -> Any:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        provider = ep.client._provider  # the client's own HTTP session and timeout
        resp = await provider.session.post(ep.url, json=body, headers={"Content-Type": "application/json"})
        resp.raise_for_status()
        data = resp.json()
        if "error" in data:
            err = data["error"]
            raise RpcRejected(str(err.get("message")), err.get("code"), err.get("data"))
        return data["result"]

    async def raw(self, method: str, params: list[Any]) -> Any:
        return await self.call(lambda ep: self._raw(ep, method, params), method)

    async def raw_on(self, ep: RpcEndpoint, method: str, params: list[Any]) -> Any:
        """One request to one endpoint, no failover (for reads that must come from one node)."""
        return await self._once(ep, method, lambda: self._raw(ep, method, params))

    async def _once(self, ep: RpcEndpoint, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one request on `ep` and account for it: a rejection is a healthy answer; a
        transport failure counts against the endpoint and is raised as RpcUnavailable."""
        try:
            result = await self._timed(ep, fn())
        except RpcRejected:
            ep.record_ok()
            raise
        except Exception as exc:
            if not _is_transport(exc):
                raise
            self._failed(ep, exc)
            raise RpcUnavailable(f"{what} on {ep.url}: {describe_error(exc)}") from exc
        ep.record_ok()
        return result

    async def _timed(self, ep: RpcEndpoint, request: Awaitable[T]) -> T:
        """Await one request; its duration, answered or not, goes to `observe` (the API's
        latency histogram) when one is set."""
        if self.observe is None:
            return await request
        started = time.monotonic()
        try:
            return await request
        finally:
            self.observe(ep.url, time.monotonic() - started)

    # -- typed helpers ---------------------------------------------------------------------
    async def latest_blockhash(self) -> BlockhashInfo:
        async def fn(ep: RpcEndpoint) -> BlockhashInfo:
            resp = await ep.client.get_latest_blockhash(self.commitment)
            return BlockhashInfo(resp.value.blockhash, resp.value.last_valid_block_height,
                                 time.monotonic())
        return await self.call(fn, "getLatestBlockhash")

    async def block_height(self) -> int:
        return int(await self.raw("getBlockHeight", [{"commitment": str(self.commitment)}]))

    async def account_data(self, pubkeys: Sequence[Pubkey]) -> list[bytes | None]:
        """Account data of several accounts at the pool's commitment (None where absent)."""
        out: list[bytes | None] = []
        for i in range(0, len(pubkeys), 100):
            chunk = [str(p) for p in pubkeys[i : i + 100]]
            res = await self.raw("getMultipleAccounts",
                                 [chunk, {"encoding": "base64", "commitment": str(self.commitment)}])
            for acc in res["value"]:
                out.append(None if acc is None else base64.b64decode(acc["data"][0]))
        return out

    async def simulate(self, tx: VersionedTransaction) -> dict[str, Any]:
        """Simulate a signed transaction; returns the raw `value` (err, logs, unitsConsumed)."""
        encoded = base64.b64encode(bytes(tx)).decode()
        res = await self.raw("simulateTransaction", [encoded, {
            "encoding": "base64", "commitment": str(self.commitment), "sigVerify": False,
            "replaceRecentBlockhash": False}])
        return dict(res["value"])

    async def send(self, ep: RpcEndpoint, raw_tx: bytes) -> str:
        """Send signed bytes to one endpoint: no preflight (we simulated), no node retries."""
        opts = TxOpts(skip_confirmation=True, skip_preflight=True,
                      preflight_commitment=self.commitment, max_retries=0)

        async def fn() -> str:
            try:
                resp = await ep.client.send_raw_transaction(raw_tx, opts=opts)
            except RPCException as exc:
                raise RpcRejected(str(exc)) from exc
            return str(resp.value)
        return await self._once(ep, "sendTransaction", fn)

    async def signature_statuses_on(self, ep: RpcEndpoint,
                                    signatures: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        out: dict[str, dict[str, Any] | None] = {}
        for i in range(0, len(signatures), STATUS_BATCH):
            chunk = list(signatures[i : i + STATUS_BATCH])
            res = await self.raw_on(ep, "getSignatureStatuses",
                                    [chunk, {"searchTransactionHistory": True}])
            for sig, st in zip(chunk, res["value"], strict=True):
                out[sig] = st
        return out

    async def transaction(self, signature: str, commitment: str = "confirmed") -> dict[str, Any] | None:
        return await self.raw("getTransaction", [signature, {
            "encoding": "json", "commitment": commitment, "maxSupportedTransactionVersion": 0}])

    async def recent_prioritization_fees(self, accounts: Sequence[Pubkey]) -> list[int]:
        res = await self.raw("getRecentPrioritizationFees", [[str(a) for a in accounts]])
        return [int(r["prioritizationFee"]) for r in res or []]

    # -- health ----------------------------------------------------------------------------
    async def check_health(self) -> None:
        """getHealth and getSlot on every endpoint; mark laggards and failures unhealthy."""
        async def probe(ep: RpcEndpoint) -> int | None:
            try:
                await self._raw(ep, "getHealth", [])
                slot = int(await self._raw(ep, "getSlot", [{"commitment": str(self.commitment)}]))
            except Exception as exc:  # noqa: BLE001 - any failure makes the endpoint unhealthy
                ep.record_error(exc)
                ep.set_healthy(False, error=ep.stats.last_error)
                return None
            ep.stats.slot = slot
            return slot

        slots = await asyncio.gather(*(probe(ep) for ep in self.endpoints))
        best = max((s for s in slots if s is not None), default=None)
        for ep, slot in zip(self.endpoints, slots, strict=True):
            if slot is None or best is None:
                continue
            ep.stats.lag_slots = best - slot
            ep.set_healthy(ep.stats.lag_slots <= self.max_slot_lag, lag_slots=ep.stats.lag_slots,
                           max_slot_lag=self.max_slot_lag)

    async def run_health_checks(self, interval_s: float) -> None:
        while True:
            await self.check_health()
            await asyncio.sleep(interval_s)

    def snapshot(self) -> list[dict[str, Any]]:
        return [{"url": e.url, **e.stats.__dict__} for e in self.endpoints]
