"""The signature subscriber's memory stays bounded by what is in flight, however long its socket
lives: solana-py's client keeps every subscribe request and answer of a socket unless told."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from solders.signature import Signature

from gridnode.chain.subscriptions import SignatureSubscriber
from simulators.chain.localnet import Localnet
from tests.e2e.harness import wait_for
from tests.net import pick_free_port

ROUNDS = 25
IN_FLIGHT = 4


async def test_subscriptions_of_signatures_no_longer_in_flight_are_forgotten(tmp_path: Path) -> None:
    async with Localnet(port=pick_free_port(), slot_ms=50, state_dir=tmp_path,
                        bootstrap=False) as net:
        in_flight: set[str] = set()
        sub = SignatureSubscriber([net.ws_url], lambda: set(in_flight), lambda: None,
                                  refresh_s=0.02)
        hub = net.hubs[0]
        task = asyncio.create_task(sub.run())
        try:
            peak = 0
            for _ in range(ROUNDS):
                # the next transactions in flight; the earlier ones finalized or expired
                in_flight = {str(Signature.new_unique()) for _ in range(IN_FLIGHT)}

                async def subscribed(now: set[str] = in_flight) -> bool:
                    return now <= {s.key for s in hub.subs.values()}
                await wait_for(subscribed, 10, "this round's subscriptions")
                await asyncio.sleep(0.05)     # the client reads the answers
                peak = max(peak, sub.held())
            # the node still holds every subscription (these signatures never land) ...
            assert len(hub.subs) == ROUNDS * IN_FLIGHT * 2
            # ... the client only those of what is in flight: per signature, two commitments,
            # each a request and its answer
            assert peak <= 2 * 2 * IN_FLIGHT
            in_flight = set()

            async def empty() -> bool:
                return sub.held() == 0
            await wait_for(empty, 10, "the client to forget every subscription")
            assert sub.reconnects == 0
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
