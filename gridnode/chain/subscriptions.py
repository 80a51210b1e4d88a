"""signatureSubscribe for fast confirmation, with reconnect and a status catch-up.

A notification only says "look now": the monitor's getSignatureStatuses poll stays the source of
truth. Because a notification is lost when the transaction lands before the subscription or
while the socket reconnects, every (re)subscribe is followed by a wake-up of the monitor, which
then polls every in-flight signature (the catch-up).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from solana.rpc.commitment import Commitment
from solana.rpc.websocket_api import SolanaWsClientProtocol, connect
from solders.rpc.requests import SignatureSubscribe
from solders.signature import Signature

from gridnode.chain.rpc import describe_error
from gridnode.log import get_logger

log = get_logger(__name__)


class SignatureSubscriber:
    def __init__(self, ws_urls: Sequence[str], signatures: Callable[[], set[str]],
                 wake: Callable[[], None], *, commitment: str = "confirmed",
                 refresh_s: float = 0.5, reconnect_s: float = 1.0) -> None:
        self.ws_urls = list(ws_urls)
        self.signatures = signatures
        self.wake = wake
        self.commitments = list(dict.fromkeys([Commitment(commitment), Commitment("finalized")]))
        self.refresh_s = refresh_s
        self.reconnect_s = reconnect_s
        self.notifications = 0
        self.reconnects = 0
        self._ws: SolanaWsClientProtocol | None = None

    def held(self) -> int:
        """Subscription requests and answers the websocket client keeps (0 when disconnected)."""
        ws = self._ws
        return 0 if ws is None else len(ws.subscriptions) + len(ws.sent_subscriptions)

    async def run(self) -> None:
        i = 0
        while True:
            url = self.ws_urls[i % len(self.ws_urls)]
            try:
                await self._session(url)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any socket failure means reconnect
                log.debug("signature subscription lost", url=url, error=describe_error(exc))
            self._ws = None
            self.reconnects += 1
            i += 1
            await asyncio.sleep(self.reconnect_s)

    async def _session(self, url: str) -> None:
        async with connect(url, ping_interval=10, ping_timeout=10) as ws:
            self._ws = ws
            subscribed: set[str] = set()
            self.wake()   # catch-up after every (re)subscribe
            while True:
                wanted = self.signatures()
                _forget(ws, wanted)
                new = wanted - subscribed
                for sig in new:
                    # one notification when it is confirmed (stop re-sending), one when final
                    for commitment in self.commitments:
                        await ws.signature_subscribe(Signature.from_string(sig), commitment)
                subscribed |= new
                subscribed &= wanted
                if new:
                    self.wake()   # catch-up for signatures that landed before subscribing
                try:
                    async with asyncio.timeout(self.refresh_s):
                        msgs = await ws.recv()
                except TimeoutError:
                    continue
                for msg in msgs:
                    if type(msg).__name__.startswith("SignatureNotification"):
                        self.notifications += 1
                        self.wake()


def _forget(ws: SolanaWsClientProtocol, wanted: set[str]) -> None:
    """Drop the client's record of answered signature subscriptions no longer wanted.

    solana-py keeps every subscribe request and its answer for the life of the socket, while the
    node ends a signature subscription by itself once it has notified: a socket that lives for
    months would hold two entries per transaction ever sent. A request still waiting for its
    answer stays, since the client looks it up when the answer comes.
    """
    for sub_id, req in list(ws.subscriptions.items()):
        if isinstance(req, SignatureSubscribe) and str(req.signature) not in wanted:
            del ws.subscriptions[sub_id]
            ws.sent_subscriptions.pop(req.id, None)
