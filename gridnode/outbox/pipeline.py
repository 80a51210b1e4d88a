"""The transaction pipeline as a daemon subsystem: outbox -> chain -> finality.

It owns its tasks in one TaskGroup: RPC health checks, the blockhash cache, submission,
re-broadcasting, status monitoring and (when ws_urls are configured) signature subscriptions.
Everything it needs to resume is in the store, so a restart (or a SIGKILL) picks up where the
tables say: signed-but-unsent transactions are sent, in-flight ones are monitored, pending ones
are built.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gridnode.chain.blockhash import BlockhashCache
from gridnode.chain.fees import PriorityFees
from gridnode.chain.instructions import BuilderSettings, InstructionBuilder
from gridnode.chain.rpc import RpcPool
from gridnode.chain.signers import Signers
from gridnode.chain.subscriptions import SignatureSubscriber
from gridnode.config.chain import ChainConfig
from gridnode.config.outbox import OutboxConfig
from gridnode.log import get_logger
from gridnode.outbox.inflight import InFlight
from gridnode.outbox.monitor import Monitor
from gridnode.outbox.recovery import Recovery
from gridnode.outbox.submitter import Submitter
from gridnode.store import Store

log = get_logger(__name__)


class Pipeline:
    """The outbox -> chain subsystem: builds its parts from the configuration and runs them.

    The submitter, the monitor and the signature subscriber share one `InFlight`.
    """

    name = "pipeline"

    def __init__(self, store: Store, chain: ChainConfig, outbox: OutboxConfig, signers: Signers,
                 idls: dict[str, Any] | None = None, source: str = "<config>") -> None:
        from gridnode.chain.idl import idls_for_chain

        self.store = store
        self.chain = chain
        self.outbox = outbox
        self.signers = signers
        self.idls = idls if idls is not None else idls_for_chain(chain, source)
        rec = outbox.recovery
        self.pool = RpcPool([str(u) for u in chain.rpc_urls], commitment=chain.commitment,
                            timeout_s=chain.request_timeout_s, switches=rec.rpc_error.max,
                            rounds=rec.network_timeout.max, max_slot_lag=chain.rpc.max_slot_lag,
                            unhealthy_after=chain.rpc.unhealthy_after_errors)
        self.blockhashes = BlockhashCache(self.pool, refresh_s=chain.rpc.blockhash_refresh_s,
                                          max_age_s=chain.rpc.blockhash_max_age_s)
        self.fees = PriorityFees(self.pool, percentile=chain.priority_fee.percentile,
                                 floor=chain.priority_fee.floor_micro_lamports,
                                 cap=chain.fees.max_priority_fee_micro_lamports,
                                 cache_s=chain.priority_fee.cache_s)
        self.builder = InstructionBuilder(self.idls, self.pool, signers, BuilderSettings(
            registry_readings=chain.registry_readings,
            require_registered_meters=chain.require_registered_meters,
            max_reading_age_s=outbox.max_age_hours * 3600))
        self.recovery = Recovery(rec)
        self.inflight = InFlight()
        self.monitor = Monitor(store, self.pool, self.idls, self.recovery, self.inflight,
                               poll_interval_s=outbox.poll_interval_s)
        self.submitter = Submitter(store, self.pool, self.builder, self.blockhashes, self.fees,
                                   self.inflight, self.recovery, chain, outbox)
        self.subscriber = (SignatureSubscriber([str(u) for u in chain.ws_urls],
                                               self.inflight.signatures,
                                               self.monitor.wake.set, commitment=chain.commitment)
                           if chain.ws_urls and chain.rpc.subscribe else None)
        self._started = time.monotonic()

    def progress(self) -> float:
        return max(self._started, self.monitor.last_progress, self.submitter.last_progress)

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.pool.run_health_checks(self.chain.rpc.health_interval_s))
                tg.create_task(self.blockhashes.run())
                tg.create_task(self.submitter.run())
                tg.create_task(self.submitter.run_rebroadcast())
                tg.create_task(self.monitor.run())
                if self.subscriber is not None:
                    tg.create_task(self.subscriber.run())
        finally:
            await self.pool.close()
