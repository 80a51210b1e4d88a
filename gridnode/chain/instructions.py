"""Outbox operations -> validated, IDL-encoded instructions, following the tx type table.

`InstructionBuilder.prepare_many` parses each stored payload into its tx type's model, checks the
business rules that need chain state (meters registered and active, in one read for the whole
round; user active; balances), the node's permission to sign, reads what the instructions depend
on (e.g. the market's active_orders for the order PDA, and the placeholder orders that move it
past indices the owner already used), and encodes them through gridnode.chain.idl. Nothing here
writes to the chain or the store.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer

from gridnode.chain.rpc import RpcPool
from gridnode.chain.signers import Signers
from gridnode.chain.txtypes import (
    CONSTANTS,
    ENERGY_MINT,
    MARKET,
    MAX_PLACEHOLDERS,
    METER_OF_PAYLOAD,
    ORDER_RENT_LAMPORTS,
    USER_OF_SIGNER,
    Check,
    Ix,
    Pda,
    Read,
    TokenAccount,
    TxType,
    tx_type,
)
from gridnode.chain.validation import (
    InvalidInput,
    MeterIdMixin,
    NotPermitted,
    OperationInvalid,
    Payload,
    RuleNotMet,
    enum_name,
)
from gridnode.log import get_logger
from gridnode.store.operations import Operation

log = get_logger(__name__)

SYSTEM_PROGRAM = Pubkey.from_string("11111111111111111111111111111111")
TOKEN_PROGRAM = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
ATA_PROGRAM = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
WELL_KNOWN = {"system": SYSTEM_PROGRAM, "token": TOKEN_PROGRAM, "ata": ATA_PROGRAM}
TOKEN_ACCOUNT_SIZE = 165

# Borsh enum arguments: payload spelling -> IDL variant name.
ENUM_ARGS = {
    "user_type": {"prosumer": "Prosumer", "consumer": "Consumer"},
    "meter_type": {"solar": "Solar", "wind": "Wind", "battery": "Battery", "grid": "Grid"},
}


@dataclass
class PreparedOp:
    """One operation ready to be put in a transaction."""

    op_id: int
    tx_type: TxType
    signer: Keypair
    instructions: list[Instruction]
    writable: list[Pubkey]
    cosigners: list[Keypair] = field(default_factory=list)
    distinct: str | None = None     # the row's `distinct` payload value: once per transaction


@dataclass(frozen=True)
class Refused:
    """An operation that cannot become a transaction now; `error.outcome` says what follows."""

    op_id: int
    error: OperationInvalid


def order_placeholders(owner_taken: Sequence[bool]) -> int | None:
    """How many placeholder orders must precede the owner's: the least k with the owner's order
    PDA at index n + k free (element i says whether it exists at n + i). None: more than fit in
    one transaction would be needed."""
    for k, taken in enumerate(owner_taken):
        if not taken:
            return k
    return None


def placeholder_key(fee_payer: Keypair, op_id: int, index: int) -> Keypair:
    """The one-off key that signs the placeholder at `index` for operation `op_id`: derived from
    the gateway key, so a re-signed transaction has the same keys and nothing is stored."""
    seed = hashlib.sha256(b"gridnode order placeholder\0" + bytes(fee_payer)
                          + struct.pack("<QQ", op_id, index)).digest()
    return Keypair.from_seed(seed)


def associated_token_address(owner: Pubkey, mint: Pubkey) -> Pubkey:
    """The owner's associated token account of `mint` (classic SPL Token)."""
    return Pubkey.find_program_address([bytes(owner), bytes(TOKEN_PROGRAM), bytes(mint)],
                                       ATA_PROGRAM)[0]


def create_associated_token_account_idempotent(payer: Pubkey, owner: Pubkey,
                                               mint: Pubkey) -> Instruction:
    """The ATA program's CreateIdempotent (1): creates the account, or does nothing when it
    already exists with that owner and mint (so a race with another creator cannot fail us)."""
    return Instruction(ATA_PROGRAM, bytes([1]), [
        AccountMeta(payer, True, True),
        AccountMeta(associated_token_address(owner, mint), False, True),
        AccountMeta(owner, False, False), AccountMeta(mint, False, False),
        AccountMeta(SYSTEM_PROGRAM, False, False), AccountMeta(TOKEN_PROGRAM, False, False)])


@dataclass
class BuilderSettings:
    registry_readings: bool = False         # also send registry update_meter_reading
    require_registered_meters: bool = True  # meter must exist and be Active on chain
    max_reading_age_s: float | None = None  # older readings are parked
    registration_cache_s: float = 300.0


class InstructionBuilder:
    """Turns outbox operations into signed-ready instructions, as the tx type table says.

    It holds the IDLs, the keys and a short cache of which meters are registered and Active on
    chain (and their owners), so a round of many readings costs one account read.
    """

    def __init__(self, idls: dict[str, Any], pool: RpcPool, signers: Signers,
                 settings: BuilderSettings | None = None) -> None:
        self.idls = idls
        self.pool = pool
        self.signers = signers
        self.settings = settings or BuilderSettings()
        self._meter_ok: dict[str, float] = {}
        self._meter_owner: dict[str, Pubkey] = {}
        self.placeholders = 0      # placeholder orders built into transactions (each ~ one rent)

    def program_id(self, program: str) -> Pubkey:
        return self.idls[program].program_id

    def pda(self, pda: Pda, payload: Payload | None = None, signer: Pubkey | None = None,
            ctx: dict[str, Any] | None = None) -> Pubkey:
        """The address of `pda`, its seeds taken from the payload, the signer and chain reads."""
        seeds: list[bytes] = []
        for seed in pda.seeds:
            if isinstance(seed, bytes):
                seeds.append(seed)
                continue
            source = seed.removeprefix("u64le:").removeprefix("key:")
            val = self._value(source, payload, signer, ctx or {})
            if val is None:
                raise ValueError(f"no value for seed {seed!r} of {pda}")
            if seed.startswith("u64le:"):
                seeds.append(struct.pack("<Q", int(val)))
            elif seed.startswith("key:"):
                seeds.append(bytes(val if isinstance(val, Pubkey) else Pubkey.from_string(str(val))))
            else:
                seeds.append(bytes(val) if isinstance(val, Pubkey) else str(val).encode())
        return Pubkey.find_program_address(seeds, self.program_id(pda.program))[0]

    def _value(self, source: str, payload: Payload | None, signer: Pubkey | None,
               ctx: dict[str, Any]) -> Any:
        if source == "signer":
            return signer
        if source == "fee_payer":
            return self.signers.fee_payer.pubkey()
        kind, _, key = source.partition(".")
        if kind == "payload":
            return None if payload is None else payload.get(key)
        if kind == "ctx":
            return ctx[key]
        if kind == "const":
            return CONSTANTS[key]
        raise ValueError(f"unknown source {source!r}")

    def _account(self, spec: str | Pda, ix: Ix, payload: Payload, signer: Pubkey,
                 ctx: dict[str, Any]) -> Pubkey:
        if isinstance(spec, Pda):
            return self.pda(spec, payload, signer, ctx)
        for alt in spec.split("|"):
            if alt == "program.self":
                return self.program_id(ix.program)
            if alt.startswith("program."):
                name = alt[8:]
                return WELL_KNOWN[name] if name in WELL_KNOWN else self.program_id(name)
            val = self._value(alt, payload, signer, ctx)
            if val is not None:
                return val if isinstance(val, Pubkey) else Pubkey.from_string(str(val))
        raise InvalidInput("missing_account", f"no value for account source {spec!r}")

    def _arg(self, name: str, source: str, payload: Payload, signer: Pubkey,
             ctx: dict[str, Any]) -> Any:
        val = self._value(source, payload, signer, ctx)
        if name in ENUM_ARGS:
            return ENUM_ARGS[name][str(val)]
        return val

    def _key_of(self, pubkey: str, what: str) -> Keypair:
        """The keypair of `pubkey`, which `what` must be signed by, or NotPermitted."""
        kp = self.signers.by_pubkey(pubkey)
        if kp is None:
            raise NotPermitted("no_signing_key",
                               f"{what} must be signed by {pubkey}, a key this node does not hold")
        return kp

    def signer_for(self, tx_type: TxType, payload: Payload) -> Keypair:
        role = tx_type.signer
        if role.startswith("payload."):
            return self._key_of(str(payload.get(role[8:])), tx_type.name)
        kp = self.signers.by_role(role)
        if kp is None:
            raise NotPermitted("no_signing_key",
                               f"{tx_type.name} needs the {role} key, which this node does not hold")
        return kp

    # -- business rules and chain reads ------------------------------------------------------
    async def _decode(self, program: str, account: str, address: Pubkey) -> dict[str, Any] | None:
        data = (await self.pool.account_data([address]))[0]
        if data is None:
            return None
        return dict(self.idls[program].decode_account(account, data))

    async def check_meters(self, meter_ids: Sequence[str]) -> dict[str, str | None]:
        """meter_id -> None when registered and Active on chain, else the reason it is not."""
        now = time.monotonic()
        out: dict[str, str | None] = {}
        todo = []
        for m in dict.fromkeys(meter_ids):
            if now - self._meter_ok.get(m, -1e18) < self.settings.registration_cache_s:
                out[m] = None
            else:
                todo.append(m)
        if not todo:
            return out
        addrs = [self.pda(METER_OF_PAYLOAD, MeterIdMixin(meter_id=m)) for m in todo]
        datas = await self.pool.account_data(addrs)
        for m, data in zip(todo, datas, strict=True):
            if data is None:
                out[m] = f"meter {m} is not registered on chain"
                continue
            acc = self.idls["registry"].decode_account("MeterAccount", data)
            self._meter_owner[m] = Pubkey.from_string(str(acc["owner"]))
            status = enum_name(acc["status"])
            if status.lower() != "active":
                out[m] = f"meter {m} is {status} on chain, not Active"
                continue
            self._meter_ok[m] = now
            out[m] = None
        return out

    async def _user_active(self, user: Pubkey) -> None:
        acc = await self._decode("registry", "UserAccount", self.pda(USER_OF_SIGNER, signer=user))
        if acc is None:
            raise RuleNotMet("user_not_registered", f"user {user} is not registered on chain")
        status = enum_name(acc["status"])
        if status.lower() != "active":
            raise RuleNotMet("user_inactive", f"user {user} is {status} on chain, not Active")

    async def _order_index(self, owner: Pubkey) -> tuple[int, list[int]]:
        """(the index the owner's order gets, the placeholder indices before it), from the
        market's active_orders n and which order PDAs of the owner exist from n on (one
        getMultipleAccounts). RuleNotMet when no index within MAX_PLACEHOLDERS
        is reachable (stays pending: other orders move the count)."""
        acc = await self._decode("trading", "Market", self.pda(MARKET))
        if acc is None:
            raise RuleNotMet("market_missing", "the trading market is not initialized")
        n = int(acc["active_orders"])
        trading = self.program_id("trading")
        span = range(n, n + MAX_PLACEHOLDERS + 1)
        owners = [Pubkey.find_program_address([b"order", bytes(owner), struct.pack("<Q", i)],
                                              trading)[0] for i in span]
        k = order_placeholders([d is not None for d in await self.pool.account_data(owners)])
        if k is None:
            raise RuleNotMet(
                "order_index_taken",
                f"the order PDAs of {owner} at market indices {n}..{n + MAX_PLACEHOLDERS} are "
                f"all taken (more than {MAX_PLACEHOLDERS} placeholder orders would be needed); "
                "waiting for other orders to move the index")
        return n + k, list(range(n, n + k))

    async def _read_ctx(self, tx_type: TxType, payload: Payload,
                        signer: Pubkey) -> dict[str, Any]:
        ctx: dict[str, Any] = {}
        for reader in tx_type.readers:
            if reader is Read.METER_OWNER:
                if not self.settings.registry_readings:
                    continue
                meter = str(payload.get("meter_id"))
                if meter not in self._meter_owner:
                    self._meter_ok.pop(meter, None)
                    reason = (await self.check_meters([meter]))[meter]
                    if reason:
                        raise RuleNotMet("meter_not_active", reason)
                ctx[reader] = self._meter_owner[meter]
            elif reader is Read.ORDER_INDEX:
                ctx[reader], ctx["placeholders"] = await self._order_index(signer)
            elif reader is Read.TOKEN_ACCOUNT_EXISTS:
                account = str(payload.get("token_account"))
                data = (await self.pool.account_data([Pubkey.from_string(account)]))[0]
                if data is None:
                    raise RuleNotMet("no_token_account", f"token account {account} does not exist")
            elif reader is Read.FROM_BALANCE:
                account = str(payload.get("from_token_account"))
                amount = int(payload.get("amount"))
                data = (await self.pool.account_data([Pubkey.from_string(account)]))[0]
                if data is None or len(data) < 72:
                    raise RuleNotMet("no_token_account", f"token account {account} does not exist")
                balance = struct.unpack_from("<Q", data, 64)[0]
                if balance < amount:
                    raise RuleNotMet("insufficient_balance",
                                     f"balance {balance} < transfer amount {amount}")
                ctx[reader] = balance
        return ctx

    async def _token_accounts(self, tx_type: TxType, payload: Payload, signer: Pubkey,
                              ctx: dict[str, Any]) -> list[Instruction]:
        """CreateIdempotent for each of the row's GRID token accounts that does not exist yet
        (one read for all of them); an absent account that is not its owner's associated
        account cannot be created here: invalid input, named."""
        if not tx_type.token_accounts:
            return []
        mint = self.pda(ENERGY_MINT)
        wanted: list[tuple[TokenAccount, Pubkey, Pubkey]] = []
        for ta in tx_type.token_accounts:
            account = self._pubkey(ta.account, payload, signer, ctx)
            owner = self._pubkey(ta.owner, payload, signer, ctx)
            wanted.append((ta, account, owner))
        datas = await self.pool.account_data([a for _, a, _ in wanted])
        out: list[Instruction] = []
        for (ta, account, owner), data in zip(wanted, datas, strict=True):
            if data is not None:
                continue
            if account != associated_token_address(owner, mint):
                raise InvalidInput(
                    "no_token_account",
                    f"token account {account} ({ta.account}) does not exist and is not the "
                    f"associated GRID token account of {owner}; create it, or name "
                    f"{associated_token_address(owner, mint)}",
                    field=ta.account.removeprefix("payload."))
            out.append(create_associated_token_account_idempotent(signer, owner, mint))
        return out

    def _pubkey(self, source: str, payload: Payload, signer: Pubkey,
                ctx: dict[str, Any]) -> Pubkey:
        val = self._value(source, payload, signer, ctx)
        if val is None:
            raise InvalidInput("missing_account", f"no value for {source!r}")
        return val if isinstance(val, Pubkey) else Pubkey.from_string(str(val))

    # -- the entry point ---------------------------------------------------------------------
    async def prepare_many(self, ops: Sequence[Operation]) -> tuple[list[PreparedOp],
                                                                    list[Refused]]:
        """Validate and encode the operations of one round, in order: (prepared, refused).

        Every payload is parsed into its tx type's model first; the meters of all the operations
        that need a registered meter are then checked in one chain read. Chain reads that fail
        (RpcUnavailable) propagate: the round is retried.
        """
        parsed: list[tuple[int, TxType, Payload]] = []
        refused: list[Refused] = []
        for op in ops:
            try:
                row = tx_type(op.tx_type)
                parsed.append((op.id, row, row.parse(op.payload)))
            except OperationInvalid as exc:
                refused.append(Refused(op.id, exc))
        meters: dict[str, str | None] = {}
        if self.settings.require_registered_meters:
            wanted = [str(p.get("meter_id")) for _, row, p in parsed
                      if Check.METER_ACTIVE in row.checks]
            if wanted:
                meters = await self.check_meters(wanted)
        prepared: list[PreparedOp] = []
        for op_id, row, payload in parsed:
            try:
                prepared.append(await self._prepare(op_id, row, payload, meters))
            except OperationInvalid as exc:
                refused.append(Refused(op_id, exc))
        return prepared, refused

    async def _prepare(self, op_id: int, tx_type: TxType, payload: Payload,
                       meters: dict[str, str | None]) -> PreparedOp:
        """One operation; `meters` holds the round's meter check (raises OperationInvalid)."""
        if Check.METER_ACTIVE in tx_type.checks and self.settings.require_registered_meters:
            reason = meters[str(payload.get("meter_id"))]
            if reason:
                raise RuleNotMet("meter_not_active", reason)
        tx_type.check_age(payload, self.settings.max_reading_age_s)
        kp = self.signer_for(tx_type, payload)
        signer = kp.pubkey()
        if Check.SIGNER_ACTIVE in tx_type.checks:
            await self._user_active(signer)
        ctx = await self._read_ctx(tx_type, payload, signer)
        ixs: list[Instruction] = await self._token_accounts(tx_type, payload, signer, ctx)
        cosigners: list[Keypair] = []
        for ix in tx_type.instructions_for(payload):
            if ix.when and not getattr(self.settings, ix.when):
                continue
            if ix.cosigner:
                co = self._key_of(str(self._value(ix.cosigner, payload, signer, ctx)),
                                  f"{ix.program}.{ix.name}")
                if co.pubkey() != signer and co not in cosigners:
                    cosigners.append(co)
            items = [None] if ix.each is None else list(self._value(ix.each, payload, signer, ctx))
            for item in items:
                ictx = ctx if ix.each is None else {**ctx, "item": item}
                if ix.funded_signer is not None:
                    key = placeholder_key(self.signers.fee_payer, op_id, int(str(item)))
                    ictx["placeholder_key"] = key.pubkey()
                    cosigners.append(key)
                    ixs.append(transfer(TransferParams(
                        from_pubkey=self.signers.fee_payer.pubkey(), to_pubkey=key.pubkey(),
                        lamports=ix.funded_signer)))
                accounts = {name: self._account(spec, ix, payload, signer, ictx)
                            for name, spec in ix.accounts.items()}
                args = {name: self._arg(name, src, payload, signer, ictx)
                        for name, src in ix.args.items()}
                ixs.append(self.idls[ix.program].instruction(ix.name, args=args,
                                                             accounts=accounts))
        placeholders = ctx.get("placeholders") or []
        if placeholders:
            self.placeholders += len(placeholders)
            log.info("order placeholders prepended", op_id=op_id, owner=str(signer),
                     count=len(placeholders), indices=placeholders,
                     order_index=ctx.get(Read.ORDER_INDEX),
                     locked_lamports=len(placeholders) * ORDER_RENT_LAMPORTS,
                     total_built=self.placeholders)
        payer = self.signers.fee_payer.pubkey()
        writable = list(dict.fromkeys(
            m.pubkey for i in ixs for m in i.accounts
            if m.is_writable and m.pubkey != signer and m.pubkey != payer))
        distinct = None if tx_type.distinct is None else str(payload.get(tx_type.distinct))
        return PreparedOp(op_id, tx_type, kp, ixs, writable, cosigners, distinct)
