"""The market subsystem: minting, policy orders, epoch clearing, settlement, compensation.

One loop, every `[market] poll_interval_s`, each step reading its input from the tables (and the
chain) and writing its output in one transaction before anything depends on it:
    1. orders whose creation is finalized get their address and on-chain epoch;
    2. operations finalized since the cursor (through the event log): a meter_reading with net
       generation -> grid_minting; with the owner's policy -> an order; a match_orders -> the
       settlements of its OrderMatched events with a local seller (cursor moved in the same
       transaction);
    3. with the market authority, an ended epoch is cleared (gridnode.market.clearing);
    4. the node's orders of an epoch that is over and still open on chain are cancelled;
    5. trade records whose seller is a local user are scanned for matches made elsewhere;
    6. the settlement queue moves along (gridnode.settlement.settler), defaulting what cannot
       succeed (gridnode.settlement.compensation).
A restart resumes from the tables: the cursor, the cleared epochs, the orders' state and the
settlements say what is done.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from gridnode.chain import accounts
from gridnode.chain.rpc import RpcRejected, RpcUnavailable
from gridnode.config import ConfigError, ConfigIssue, GridnodeConfig
from gridnode.config.market import MarketConfig
from gridnode.keys import load_configured_keypairs
from gridnode.log import Episode, get_logger
from gridnode.market import clearing, erc
from gridnode.market.minting import mint_operation, net_generation
from gridnode.market.orders import (
    PlannedOrder,
    cancel_operation,
    from_plan,
    manual_order,
    plan_of,
    policy_orders,
)
from gridnode.market.report import epoch_line
from gridnode.market.users import User, Users, grid_mint, token_account
from gridnode.outbox.pipeline import Pipeline
from gridnode.settlement.compensation import Compensation
from gridnode.settlement.settler import Settler, trade_from_event, trade_from_record
from gridnode.store import Store, StoreError, market, operations
from gridnode.store.db import WriteTx

log = get_logger(__name__)

CURSOR = "finalized_ops"
FOLLOWED = ("meter_reading", "match_orders", "erc_issuance", "erc_validation")
BATCH = 200
CHAIN_CLOCK_SLACK_S = 2.0        # the chain's clock may trail ours: clear a moment after the end
# Trade records of local sellers are scanned for matches made elsewhere this often (each scan
# reads all of them): rarely where the node clears (its own matches' events come at once).
# An interval finalized this long after its end (a back-fill after an outage) is minted, but not
# traded any more (nor later than two epochs).
STALE_AFTER_S = 300.0
SCAN_CLEARING_S = 600.0
SCAN_OTHERWISE_S = 60.0


def resolve_users(config: GridnodeConfig) -> tuple[Users, list[ConfigIssue]]:
    """The market's users with their wallets; issues for meters that are not configured. Key
    files that cannot be loaded are the pipeline's to report (it loads the same files)."""
    mc = config.market
    assert mc is not None
    issues: list[ConfigIssue] = []
    known = {m for _, m in config.meters.all_meter_ids()}
    out: list[User] = []
    for i, u in enumerate(mc.users):
        for j, meter in enumerate(u.meters):
            if meter not in known:
                issues.append(ConfigIssue(config.source, f"market.users[{i}].meters[{j}]",
                                          repr(meter), "a meter_id configured under [meters]"))
        if u.pubkey is not None:
            out.append(User.of(u, u.pubkey))
            continue
        path = u.keypair_file()
        assert path is not None
        key = f"market.users[{i}].{'credential' if u.credential else 'keypair'}"
        try:
            kp = load_configured_keypairs(config.source, [(key, path)])[0]
        except ConfigError:
            continue
        out.append(User.of(u, str(kp.pubkey())))
    return Users(out), issues


class MarketSubsystem:
    name = "market"

    def __init__(self, store: Store, config: MarketConfig, pipeline: Pipeline, users: Users, *,
                 clears: bool, minting: bool, certifies: bool = False,
                 epoch_s: int | None = None, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.config = config
        self.pipeline = pipeline
        self.users = users
        self.clears = clears
        self.minting = minting
        self.certifies = certifies
        self.governance = pipeline.idls["governance"].program_id
        self.epoch_s = epoch_s or config.epoch_minutes * 60
        self.clock = clock
        self.mint = grid_mint(pipeline.idls)
        self.trading = pipeline.idls["trading"].program_id
        self.compensation = Compensation(store, users, self.open_orders)
        # A round retried every poll while the chain or the disk is away: a state, not a line
        # per round.
        self.failing = Episode(log, "market round failed; retried",
                               "market rounds succeed again")
        self.settler = Settler(store, users, self.mint, str(pipeline.signers.gateway.pubkey()),
                               config.settlement_attempts, config.settlement_retry_s,
                               self.compensation.default)
        self.scan_every_s = max(SCAN_CLEARING_S if clears else SCAN_OTHERWISE_S,
                                config.poll_interval_s)
        self._scanned_at = -1e18
        self._started = time.monotonic()
        self._progress = self._started
        self.wake = asyncio.Event()
        self.rounds = 0
        self._reported: int | None = None
        self.epoch_lines: deque[str] = deque(maxlen=100)     # the latest, for the demo

    @classmethod
    def from_config(cls, config: GridnodeConfig, store: Store,
                    subsystems: Sequence[Any]) -> MarketSubsystem:
        mc = config.market
        assert mc is not None
        pipeline = next((s for s in subsystems if isinstance(s, Pipeline)), None)
        if config.chain is None:
            raise ConfigError([ConfigIssue(config.source, "market", "<enabled>",
                                           "a [chain] section (and the gateway keypair): the "
                                           "market mints, trades and settles on chain")])
        users, issues = resolve_users(config)
        if pipeline is None:        # it refused the configuration: its issues are reported
            raise ConfigError(issues)
        holds_authority = config.chain.authority_keypair is not None
        if mc.clears == "always" and not holds_authority:
            issues.append(ConfigIssue(config.source, "market.clears", "'always'",
                                      "'auto' or 'never' without chain.authority_keypair (only "
                                      "the market authority may match orders)"))
        if issues:
            raise ConfigError(issues)
        return cls(store, mc, pipeline, users, clears=mc.clears_market(holds_authority),
                   minting=config.chain.registry_readings,
                   certifies=mc.certifies(holds_authority))

    def progress(self) -> float:
        return self._progress

    async def open_orders(self) -> list[accounts.OrderAccount]:
        return await accounts.open_orders(self.pipeline.pool, self.pipeline.idls)

    async def run(self) -> None:
        log.info("market running", users=len(self.users.all), clears=self.clears,
                 minting=self.minting, epoch_s=self.epoch_s)
        while True:
            try:
                await self.round()
            except (StoreError, RpcUnavailable, RpcRejected, OSError, TimeoutError) as exc:
                self.failing.occurred(error=str(exc))
            else:
                self.failing.cleared()
            self._progress = time.monotonic()
            try:
                async with asyncio.timeout(self.config.poll_interval_s):
                    await self.wake.wait()
            except TimeoutError:
                pass
            self.wake.clear()

    async def round(self) -> None:
        """One pass over every step (see the module docstring)."""
        if await market.unresolved(self.store):      # a write only when there is news
            async with self.store.write() as tx:
                await market.resolve_addresses(tx, self.epoch_s)
        await self.consume_finalized()
        if self.certifies:
            await self.uncertified()
        if self.clears:
            await self.clear()
        await self.close_remainders()
        now = time.monotonic()
        if now - self._scanned_at >= self.scan_every_s:
            await self.scan_trades()
            self._scanned_at = now
        await self.settler.advance()
        await self.report_epochs()
        self.rounds += 1

    async def report_epochs(self) -> None:
        """An info line per cleared epoch once everything it matched is settled or defaulted."""
        if self._reported is None:      # from this start on
            self._reported = await market.last_cleared(self.store) or 0
            return
        for row in await market.epochs_since(self.store, self._reported):
            line = await epoch_line(self.store, row)
            if line is None:
                return
            log.info(line, epoch=row.epoch)
            self.epoch_lines.append(line)
            self._reported = row.epoch

    # -- 2. finalized operations -----------------------------------------------------------

    async def consume_finalized(self) -> int:
        after = await market.cursor(self.store, CURSOR)
        if after == 0 and await self._first_start():
            return 0
        done = 0
        while True:
            batch = await market.finalized_since(self.store, after, FOLLOWED, BATCH)
            if not batch:
                return done
            async with self.store.write() as tx:
                for f in batch:
                    if f.operation.tx_type == "meter_reading":
                        await self._reading_finalized(tx, f.operation)
                    elif f.operation.tx_type == "match_orders":
                        await self._match_finalized(tx, f.operation)
                    else:
                        await self._certificate_step(tx, f.operation)
                after = batch[-1].event_id
                await market.set_cursor(tx, CURSOR, after)
            done += len(batch)

    async def _first_start(self) -> bool:
        """The market's first start on this database: begin at the event log's end (history
        before it is not minted or traded again); False when the log is empty."""
        last = await market.last_event_id(self.store)
        if last == 0:
            return False
        async with self.store.write() as tx:
            await market.set_cursor(tx, CURSOR, last)
        log.info("market starts at the end of the event log", event_id=last)
        return True

    async def _reading_finalized(self, tx: WriteTx, op: operations.Operation) -> None:
        reading = op.payload
        user = self.users.by_meter.get(str(reading["meter_id"]))
        if user is None or not user.holds_key:
            return
        end = int(reading["interval_end"])
        if self.minting and net_generation(reading) > 0:
            await operations.add(tx, mint_operation(
                str(reading["meter_id"]), user.pubkey, token_account(user.pubkey, self.mint),
                end))
        now = self.clock()
        if now - end > max(2 * self.epoch_s, STALE_AFTER_S):   # back-filled: too late to trade
            return
        for planned in policy_orders(user, reading, clearing.epoch_of(now, self.epoch_s)):
            if planned.order.side == "sell" and self.certifies \
                    and planned.order.energy_wh >= self.config.erc_min_wh:
                await operations.add(tx, erc.issuance(
                    planned.order.meter_id or "", int(reading["interval_start"]), end,
                    planned.order.energy_wh, plan_of(planned)))
                continue
            if planned.order.side == "sell" and not self.certifies and user.erc_certificate:
                planned = from_plan(plan_of(planned), planned.order.epoch,
                                    erc.certificate_address(self.governance,
                                                            user.erc_certificate))
            await market.add_order(tx, planned.order, planned.operation)

    async def _certificate_step(self, tx: WriteTx, op: operations.Operation) -> None:
        """A policy sell's certificate was issued (-> validate it) or validated (-> the order)."""
        plan = op.payload.get(erc.PLAN)
        if not isinstance(plan, dict):
            return                  # a certificate not made for an order
        cid = str(op.payload["certificate_id"])
        if op.tx_type == "erc_issuance":
            await operations.add(tx, erc.validation(cid, plan))
            return
        planned = from_plan(plan, clearing.epoch_of(self.clock(), self.epoch_s),
                            erc.certificate_address(self.governance, cid))
        await market.add_order(tx, planned.order, planned.operation)

    async def uncertified(self) -> int:
        """Orders whose certificate could not be made, placed without one."""
        dead = await market.erc_dead_ends(self.store)
        if not dead:
            return 0
        epoch = clearing.epoch_of(self.clock(), self.epoch_s)
        async with self.store.write() as tx:
            for op in dead:
                planned = from_plan(op.payload[erc.PLAN], epoch, None)
                await market.add_order(tx, planned.order, planned.operation)
        log.warning("orders placed without a certificate", orders=len(dead),
                    error=dead[0].last_error)
        return len(dead)

    async def _match_finalized(self, tx: WriteTx, op: operations.Operation) -> None:
        epoch = int(op.payload.get("epoch", 0)) or None
        for event in await market.matched_events(tx, op.id):
            await self.settler.record(tx, trade_from_event(event, self.trading, epoch),
                                      source=f"match operation {op.id}")

    # -- 3. clearing -----------------------------------------------------------------------

    async def clear(self) -> clearing.Plan | None:
        """Clear the latest ended epoch unless it is cleared or matches are still in flight."""
        now = self.clock()
        epoch = clearing.last_ended(now - CHAIN_CLOCK_SLACK_S, self.epoch_s)
        last = await market.last_cleared(self.store)
        if last is not None and epoch <= last:
            return None
        if await market.unfinished_ops(self.store, "match_orders"):
            return None          # the book on chain is not what those matches will leave
        plan = clearing.plan(await self.open_orders(), epoch, now)
        async with self.store.write() as tx:
            if await market.epoch_cleared(tx, epoch):
                return None
            for op in plan.operations:
                await operations.add(tx, op, details={"epoch": epoch})
            await market.record_epoch(tx, epoch, plan.orders, len(plan.matches), plan.energy_wh)
        log.info("epoch cleared", epoch=epoch, orders=plan.orders, matches=len(plan.matches),
                 energy_wh=plan.energy_wh)
        return plan

    # -- 4. remainders ---------------------------------------------------------------------

    async def close_remainders(self) -> int:
        """Cancel what is left open of the node's orders whose epoch is over."""
        if self.clears:
            bound = await market.last_cleared(self.store)
            if bound is None or await market.unfinished_ops(self.store, "match_orders"):
                return 0
        else:
            bound = clearing.last_ended(self.clock() - self.config.cancel_after_s, self.epoch_s)
        due = await market.orders_to_cancel(self.store, bound)
        if not due:
            return 0
        open_now = {o.address: o for o in await self.open_orders()}
        async with self.store.write() as tx:
            for order in due:
                assert order.order_address is not None
                if order.order_address in open_now:
                    op_id, _ = await operations.add(
                        tx, cancel_operation(order.owner, order.order_address),
                        details={"epoch": order.epoch, "remainder": True})
                    await market.close(tx, order.id, "cancel", op_id)
                else:
                    await market.close(tx, order.id, "filled")
        log.info("epoch remainders closed", orders=len(due),
                 cancelled=sum(o.order_address in open_now for o in due))
        return len(due)

    # -- 5. trades made elsewhere ----------------------------------------------------------

    async def scan_trades(self) -> int:
        """Trade records whose seller is a local user and that have no settlement yet."""
        found = 0
        for user in self.users:
            records = [r for r in await accounts.trade_records(
                self.pipeline.pool, self.pipeline.idls, party=user.pubkey)
                if r.seller == user.pubkey]
            if not records:
                continue
            from gridnode.store import settlements

            known = await settlements.known_trades(self.store, [r.address for r in records])
            new = [r for r in records if r.address not in known]
            if not new:
                continue
            async with self.store.write() as tx:
                for r in new:
                    found += await self.settler.record(
                        tx, trade_from_record(r, self.epoch_s), source="trade record scan")
        return found

    # -- orders placed by an operator ------------------------------------------------------

    async def place(self, user_name: str, side: str, energy_wh: int, price_per_kwh: int,
                    request_id: str) -> tuple[int, bool]:
        user = self.users.by_name[user_name]
        planned: PlannedOrder = manual_order(user, side, energy_wh, price_per_kwh,
                                             clearing.epoch_of(self.clock(), self.epoch_s),
                                             request_id)
        async with self.store.write() as tx:
            return await market.add_order(tx, planned.order, planned.operation)
