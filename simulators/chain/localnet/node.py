"""The localnet process: ledger, slot clock, RPC ports, bootstrap and snapshots wired together.

    async with Localnet(port=free_port, manual=True, state_dir=tmp_path) as net:
        net.rpc_url, net.ws_url, net.bootstrap
        await net.advance(3)
        net.faults.update({"drop_tx_rate": 0.5})
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from solders.hash import Hash
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from simulators.chain.localnet import bootstrap as boot
from simulators.chain.localnet import snapshot
from simulators.chain.localnet.faults import MAX_LAG_SLOTS, FaultInjector, Faults
from simulators.chain.localnet.fees import DEFAULT_BLOCK_CU, FeeMarket
from simulators.chain.localnet.ledger import FINALIZED_DEPTH, Block, Ledger
from simulators.chain.localnet.pubsub import PubSub
from simulators.chain.localnet.rpc import HEALTH_SLOT_DISTANCE, RpcMethods, View
from simulators.chain.localnet.server import RpcServer
from simulators.chain.svm import PROGRAMS_DIR, loaded_programs, new_svm

log = logging.getLogger("simulators.chain.localnet")


class Localnet:
    """A Solana JSON-RPC + WebSocket endpoint on loopback backed by LiteSVM."""

    def __init__(self, port: int = 8899, *, host: str = "127.0.0.1", slot_ms: float = 400,
                 manual: bool = False, state_dir: str | Path | None = None,
                 bootstrap: bool = True, users: int = 3, faults: Faults | dict[str, Any] | None
                 = None, lag_port: int | None = None, block_cu_limit: int = DEFAULT_BLOCK_CU,
                 min_priority_fee: int = 0, snapshot_interval_s: float = 10.0,
                 health_slot_distance: int = HEALTH_SLOT_DISTANCE,
                 programs_dir: Path = PROGRAMS_DIR,
                 program_ids: Mapping[str, str | Pubkey] | None = None) -> None:
        self.host, self.port, self.lag_port = host, port, lag_port
        self.slot_ms, self.manual = slot_ms, manual
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.bootstrap_enabled = bootstrap
        self.users = users
        if isinstance(faults, dict):
            faults = Faults.model_validate(faults)
        self.faults = FaultInjector(faults)
        self.fee_market = FeeMarket(block_cu_limit, min_priority_fee)
        self.snapshot_interval_s = snapshot_interval_s
        self.health_slot_distance = health_slot_distance
        self.programs_dir = programs_dir
        self.program_ids = dict(program_ids or {})   # programs deployed at other IDs
        self.bootstrap: dict[str, Any] = {}
        self.ledger: Ledger | None = None
        self.hubs: list[PubSub] = []
        self._runners: list[web.AppRunner] = []
        self._clock: asyncio.Task[None] | None = None
        self._last_snapshot = time.monotonic()
        self.blocks_produced = 0
        self._new_block = asyncio.Event()

    # -- URLs -------------------------------------------------------------------------------

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def lag_rpc_url(self) -> str:
        return f"http://{self.host}:{self.lag_port}"

    @property
    def lag_ws_url(self) -> str:
        return f"ws://{self.host}:{self.lag_port}"

    @property
    def slot(self) -> int:
        assert self.ledger is not None
        return self.ledger.slot

    @property
    def snapshot_path(self) -> Path | None:
        return self.state_dir / snapshot.FILENAME if self.state_dir else None

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Localnet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        svm = new_svm(self.programs_dir, moved_to=self.program_ids)
        deployed = loaded_programs(self.programs_dir, moved_to=self.program_ids)
        retention = FINALIZED_DEPTH + MAX_LAG_SLOTS + 8
        ledger = Ledger(svm, self.fee_market, retention_slots=retention)
        self.ledger = ledger
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        ids = boot.identities(self.state_dir / "keys" if self.state_dir else None, self.users)
        self.identities = ids
        restored = self.snapshot_path is not None and self.snapshot_path.exists()
        if restored:
            assert self.snapshot_path is not None
            snapshot.restore(ledger, self.snapshot_path)
            log.info("restored ledger at slot %d from %s", ledger.slot, self.snapshot_path)
        else:
            boot.fund(ledger.set_account, ids)
        initialized: list[str] = []
        before = ledger.slot
        if self.bootstrap_enabled and deployed:
            initialized = await self._initialize_programs(deployed, restored)
        self._warm_up(FINALIZED_DEPTH + (ledger.slot if ledger.slot > before else 1))
        if not self.manual:
            self._clock = asyncio.create_task(self._run_clock(), name="localnet-slot-clock")
        try:
            # Listen only now: whoever connects finds the programs initialized, the clock
            # running and every commitment level moving (getHealth "ok" means ready).
            await self._serve(View(ledger, lambda: 0, self.health_slot_distance), self.port,
                              admin=True)
            if self.lag_port is not None:
                lag_view = View(ledger, lambda: self.faults.faults.lag_slots,
                                self.health_slot_distance)
                await self._serve(lag_view, self.lag_port, admin=False)
        except BaseException:
            await self._halt()
            raise
        self.bootstrap = boot.describe(self.rpc_url, self.ws_url, deployed, ids, initialized)
        if self.state_dir is not None:
            (self.state_dir / "bootstrap.json").write_text(json.dumps(self.bootstrap, indent=2))

    def _warm_up(self, slot: int) -> None:
        """Produce blocks up to `slot`: far enough that the finalized slot has left genesis and
        the bootstrap's transactions are final, so that a client sees them and the slot
        advancing at every commitment level from its first request (otherwise getSlot at the
        default `finalized` stays 0 for 32 slots, and the bootstrap accounts are not found)."""
        assert self.ledger is not None
        while self.ledger.slot < slot:
            self.produce()

    async def _serve(self, view: View, port: int, admin: bool) -> None:
        faults = self.faults.port(port)
        methods = RpcMethods(view, faults, self.identities.faucet)
        hub = PubSub(view, faults)
        self.hubs.append(hub)
        server = RpcServer(methods, hub, faults, self if admin else None)
        runner = web.AppRunner(server.app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, self.host, port).start()

    async def stop(self) -> None:
        await self._halt()
        if self.ledger is not None:
            await self.save_snapshot()

    async def _halt(self) -> None:
        """Stop the clock, close every WebSocket and stop listening."""
        if self._clock is not None:
            self._clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock
            self._clock = None
        for hub in self.hubs:
            hub.close_all()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        self.hubs.clear()

    # -- slots ------------------------------------------------------------------------------

    def produce(self) -> Block:
        assert self.ledger is not None
        block = self.ledger.produce_block()
        self.blocks_produced += 1
        self._new_block.set()
        self._new_block = asyncio.Event()
        for hub in self.hubs:
            hub.on_block()
        return block

    async def advance(self, slots: int = 1) -> None:
        """Produce `slots` blocks now (manual mode, or on top of the clock)."""
        for _ in range(slots):
            self.produce()
            await asyncio.sleep(0)

    async def wait_for_slot(self, slot: int) -> None:
        """Wait until the clock reaches `slot` (wrap in asyncio.timeout)."""
        while self.slot < slot:
            await self._new_block.wait()

    async def _run_clock(self) -> None:
        period = self.slot_ms / 1000
        next_at = time.monotonic() + period
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at + period, time.monotonic())
            if not self.faults.faults.stall:
                try:
                    self.produce()
                except Exception:
                    log.exception("block production failed")
            if self.snapshot_path is not None and \
                    time.monotonic() - self._last_snapshot >= self.snapshot_interval_s:
                await self.save_snapshot()

    async def save_snapshot(self) -> str | None:
        path = self.snapshot_path
        if path is None or self.ledger is None:
            return None
        state = snapshot.capture(self.ledger)
        await asyncio.to_thread(snapshot.write, state, path)
        self._last_snapshot = time.monotonic()
        return str(path)

    async def _initialize_programs(self, deployed: dict[str, Any], restored: bool) -> list[str]:
        """Run the deployed programs' initialize instructions (once: skipped when the singleton
        account exists, e.g. after a restore), each in its own block, signed by the authority."""
        assert self.ledger is not None
        ledger = self.ledger
        todo = boot.initialize_instructions(deployed, self.identities,
                                            lambda key: ledger.svm.get_account(key) is not None)
        for name, ix in todo:
            authority = self.identities.authority
            blockhash = Hash.from_string(ledger.blocks[ledger.slot].blockhash)
            tx = VersionedTransaction(Message.new_with_blockhash([ix], authority.pubkey(),
                                                                 blockhash), [authority])
            sig = ledger.enqueue(tx)
            self.produce()
            record = ledger.history.get(sig)
            if record is None or record.err is not None:
                logs = record.meta["logMessages"] if record else []
                raise RuntimeError(f"bootstrap {name} failed: "
                                   f"{record.err if record else 'not landed'} {logs}")
        return [f"{program}.{ix}" for program, ix, account in boot.INITIALIZERS
                if (key := boot.singleton(account, deployed)) is not None
                and ledger.svm.get_account(key) is not None]
