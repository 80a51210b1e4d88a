"""The transaction types gridnode sends: one row each, carrying its payload model.

Adding a tx type is exactly:
    1. one payload model: a `Payload` subclass in gridnode/chain/validation.py with the fields a
       producer fills in and their checks;
    2. one row in `TX_TYPES` below: its name, that model, the signer, the instructions with the
       source of every argument and account, the chain reads and rule checks it needs, whether
       it batches, the program errors that mean "rebuild", and the payload fields that make its
       idempotency key;
    3. tests: the model's checks (tests/chain/test_validation.py) and the type landing on the
       localnet (tests/e2e/test_tx_types.py, tests/e2e/test_trade_types.py).
Nothing else changes: a producer builds the model and enqueues `new_operation(model)` with
gridnode.store.operations.add; the builder, the submitter and the monitor read the row. The
name appears only in its row.

Sources used in the rows:
    "payload.<key>"       a payload field (pubkeys as base58 strings)
    "signer"              the pubkey of the signing key
    "fee_payer"           the pubkey of the fee payer (the gateway key), which signs every transaction
    "const.<name>"        a constant of CONSTANTS below
    "program.<name>"      a program id: well-known ("system", "token", "ata"), "self" = the called
                          program, or one of the five by IDL name ("registry", ...)
    Pda(program, seeds)   a PDA; seeds are bytes constants or sources, "u64le:<ctx>" packs a value,
                          "key:<source>" is the 32 bytes of a base58 pubkey (a payload address)
    "ctx.<name>"          a value read from chain just before building by the `Read` of that name
                          (gridnode.chain.instructions.InstructionBuilder reads it); "ctx.item" is
                          the element of an instruction repeated over a list (`Ix.each`)
    "a|b"                 the first source that is present (optional accounts: "|program.self")

Outcomes a row declares as data (the outbox applies them to every type alike):
    rebuild_on      program errors after which the chain state the instructions were built from
                    has moved: re-read and rebuild (the order PDA index)
    done_on         program errors that say the operation's effect is already on chain (the trade
                    is settled, there is nothing left to mint, the pair's trade record exists):
                    the operation ends `finalized` without a transaction of its own, with the
                    meaning as its reason - neither a failure nor something to retry
    token_accounts  GRID token accounts the instructions need: an absent one that is its
                    owner's associated token account is created (idempotently) in the same
                    transaction, paid by the signer; an absent other account is invalid input
    distinct        a payload field whose value may appear only once per transaction (a meter's
                    second mint in the same transaction would find nothing left and fail the batch)
    details_expire  nothing reads a finalized operation's audit trail, decoded events or signed
                    bytes once delivered: after [retention] detail_days they go, the row stays
                    (gridnode.store.retention); types whose events reconciliation or the market
                    reads again keep them

Order placeholders (order_creation): the trading program puts an order at the PDA ["order",
authority, market.active_orders] and orders are never closed, while active_orders goes down again
as orders complete or are cancelled. In steady state (the same users order every epoch, the count
returns to its baseline) a user's next order lands on the address of one of its own earlier
orders and `init` fails "already in use" on every rebuild. `Read.ORDER_INDEX` reads the count n
and which of the owner's order PDAs from n on exist (one getMultipleAccounts); when PDA(owner, n)
is taken, the row's `each="ctx.placeholders"` instruction prepends, in the same transaction, as
few placeholder orders as raise the count to an index free for the owner. Each placeholder is
signed by a one-off key derived from the gateway key, the operation and the index (so a re-signed
transaction uses the same keys, and no placeholder address is ever taken), funded with the order's
rent by the gateway in the same transaction. (Placeholders of one fixed key deadlock: the count
is the number of open orders, not the highest index, so it returns to the indices that key's own
placeholders hold.) A placeholder is a sell of u64::MAX Wh at u64::MAX per kWh: a bid can only
meet it at u64::MAX, any fill of 2 Wh or more overflows total_value, so it never completes and
never leaves the count; gridnode's own matching and `accounts.open_orders` leave it out. Each one
locks an Order account's rent (ORDER_RENT_LAMPORTS), paid by the gateway, for good.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from gridnode.chain.validation import (
    ErcIssuancePayload,
    ErcValidationPayload,
    GridMintingPayload,
    InvalidInput,
    MarketClearingPayload,
    MatchOrdersPayload,
    MeterReadingPayload,
    MeterRegistrationPayload,
    OrderCancelPayload,
    OrderCreationPayload,
    Payload,
    SettleTradePayload,
    TokenMintingPayload,
    TokenTransferPayload,
    TooOld,
    UserRegistrationPayload,
)
from gridnode.store.operations import NewOperation


@dataclass(frozen=True)
class Pda:
    program: str
    seeds: tuple[bytes | str, ...]


@dataclass(frozen=True)
class Ix:
    program: str
    name: str
    args: dict[str, str]
    accounts: dict[str, str | Pda]
    when: str | None = None          # a BuilderSettings flag that must be true for this ix
    cosigner: str | None = None      # a source naming one more key that must sign this ix
    each: str | None = None          # "ctx.<list>": the ix once per element ("ctx.item"), or none
    # Signed by a one-off key derived from the gateway key, the operation and "ctx.item"
    # ("ctx.placeholder_key"), which the fee payer funds with this many lamports just before.
    funded_signer: int | None = None


class Read(StrEnum):
    """Chain state read just before building; the value lands in "ctx.<name>"."""

    METER_OWNER = "meter_owner"                    # registry owner of payload.meter_id
    ORDER_INDEX = "order_index"                    # the signer's order PDA index (ctx.order_index)
    #                                                and the placeholders before it (ctx.placeholders)
    TOKEN_ACCOUNT_EXISTS = "token_account_exists"  # payload.token_account exists
    FROM_BALANCE = "from_balance"                  # payload.from_token_account holds the amount


@dataclass(frozen=True)
class TokenAccount:
    """A GRID token account an instruction needs: its source and the source of its owner."""

    account: str
    owner: str


class Check(StrEnum):
    """Business rules checked on chain before building (failing: stays pending, re-checked)."""

    METER_ACTIVE = "meter_active"    # payload.meter_id registered and Active (when required)
    SIGNER_ACTIVE = "signer_active"  # the signing user registered and Active


@dataclass(frozen=True)
class TxType:
    name: str
    payload: type[Payload]           # the model producers build and the builder reads
    signer: str                      # key role: "gateway", "authority", or "payload.<key>"
    instructions: tuple[Ix, ...] = ()
    variants: dict[str, tuple[Ix, ...]] = field(default_factory=dict)  # by payload.side
    batchable: bool = False
    readers: tuple[Read, ...] = ()   # chain reads done just before building
    checks: tuple[Check, ...] = ()
    rebuild_on: frozenset[int] = frozenset()  # program error codes that mean "re-read, rebuild"
    key: tuple[str, ...] = ()        # payload fields of the idempotency key, after the name
    aged_by: str | None = None       # payload field (Unix s): older than outbox.max_age -> parked
    done_on: Mapping[int, str] = field(default_factory=dict)  # error code -> why it is done
    token_accounts: tuple[TokenAccount, ...] = ()  # created when absent (associated accounts)
    distinct: str | None = None      # payload field: one value per transaction
    details_expire: bool = False     # audit, events and signed bytes go after detail_days

    def parse(self, raw: Mapping[str, Any]) -> Payload:
        """The stored payload as this type's model; InvalidInput names the field and the rule."""
        try:
            return self.payload.model_validate(dict(raw))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "payload"
            raise InvalidInput("invalid_payload",
                               f"{self.name} payload field {where}: {first['msg']}",
                               field=where) from exc

    def idempotency_key(self, payload: Payload) -> str:
        """`<name>:<key field>:...`: the same logical operation always gets the same key."""
        if not self.key:
            raise ValueError(f"{self.name} has no key fields: the producer names the operation")
        return ":".join([self.name, *(str(payload.get(f)) for f in self.key)])

    def instructions_for(self, payload: Payload) -> tuple[Ix, ...]:
        if self.variants:
            side = str(payload.get("side"))
            if side not in self.variants:
                raise InvalidInput("invalid_payload",
                                   f"{self.name} side {side!r}: one of {sorted(self.variants)}")
            return self.variants[side]
        return self.instructions

    def check_age(self, payload: Payload, max_age_s: float | None,
                  now: float | None = None) -> None:
        """Raise TooOld when the payload is older than `max_age_s`: parked for an operator,
        neither sent late nor dropped (oracle readings)."""
        if self.aged_by is None or not max_age_s:
            return
        at = float(payload.get(self.aged_by))
        age = (now if now is not None else time.time()) - at
        if age > max_age_s:
            what = ":".join(str(payload.get(f)) for f in self.key) or self.name
            raise TooOld("reading_too_old",
                         f"{self.name} {what} is {age:.0f} s old (limit {max_age_s:.0f} s)",
                         age_s=round(age))


ORACLE_DATA = Pda("oracle", (b"oracle_data",))
REGISTRY = Pda("registry", (b"registry",))
MARKET = Pda("trading", (b"market",))
POA_CONFIG = Pda("governance", (b"poa_config",))
TOKEN_INFO = Pda("energy_token", (b"token_info",))
ENERGY_MINT = Pda("energy_token", (b"mint",))
USER_OF_SIGNER = Pda("registry", (b"user", "signer"))
METER_OF_PAYLOAD = Pda("registry", (b"meter", "payload.meter_id"))
ERC_OF_PAYLOAD = Pda("governance", (b"erc_certificate", "payload.certificate_id"))
TRADE_OF_PAYLOAD = Pda("trading", (b"trade", "key:payload.buy_order", "key:payload.sell_order"))
SETTLEMENT_OF_PAYLOAD = Pda("trading", (b"settlement", "key:payload.trade_record"))

_ORDER_ACCOUNTS: dict[str, str | Pda] = {
    "market": MARKET,
    "order": Pda("trading", (b"order", "signer", "u64le:ctx.order_index")),
    "authority": "signer",
    "system_program": "program.system",
}

U64_MAX = 2**64 - 1
CONSTANTS: dict[str, int] = {"u64_max": U64_MAX}
# A placeholder order (see the module docstring): the largest sell at the highest price.
PLACEHOLDER_WH = U64_MAX
PLACEHOLDER_PRICE = U64_MAX
ORDER_RENT_LAMPORTS = 1_684_320   # rent-exempt minimum of an Order (114 bytes), locked for good
MAX_PLACEHOLDERS = 4              # per transaction (fits 1232 bytes with the owner's order)

PLACEHOLDER_ORDER = Ix(
    "trading", "create_sell_order",
    args={"energy_amount": "const.u64_max", "price_per_kwh": "const.u64_max"},
    accounts={"market": MARKET,
              "order": Pda("trading", (b"order", "ctx.placeholder_key", "u64le:ctx.item")),
              "erc_certificate": "program.self", "authority": "ctx.placeholder_key",
              "system_program": "program.system"},
    each="ctx.placeholders", funded_signer=ORDER_RENT_LAMPORTS)


def is_placeholder(side: str, price_per_kwh: int) -> bool:
    """A sell at u64::MAX per kWh: a placeholder order (or something just as unmatchable)."""
    return side == "sell" and int(price_per_kwh) == PLACEHOLDER_PRICE

TX_TYPES: dict[str, TxType] = {t.name: t for t in (
    TxType(
        name="meter_reading",
        payload=MeterReadingPayload,
        signer="gateway",
        batchable=True,
        readers=(Read.METER_OWNER,),
        checks=(Check.METER_ACTIVE,),
        key=("meter_id", "interval_end"),
        aged_by="interval_end",
        details_expire=True,
        instructions=(
            Ix("oracle", "submit_meter_reading",
               args={"meter_id": "payload.meter_id", "energy_produced": "payload.energy_produced_wh",
                     "energy_consumed": "payload.energy_consumed_wh",
                     "reading_timestamp": "payload.interval_end"},
               accounts={"oracle_data": ORACLE_DATA, "authority": "signer"}),
            Ix("registry", "update_meter_reading",
               args={"energy_generated": "payload.energy_produced_wh",
                     "energy_consumed": "payload.energy_consumed_wh",
                     "reading_timestamp": "payload.interval_end"},
               accounts={"meter_account": METER_OF_PAYLOAD,
                         "oracle_authority": "ctx.meter_owner"},
               when="registry_readings", cosigner="ctx.meter_owner"),
        ),
    ),
    TxType(
        name="user_registration",
        payload=UserRegistrationPayload,
        signer="payload.user",
        key=("user",),
        instructions=(
            Ix("registry", "register_user",
               args={"user_type": "payload.user_type", "location": "payload.location"},
               accounts={"registry": REGISTRY, "user_account": USER_OF_SIGNER,
                         "user_authority": "signer", "system_program": "program.system"}),
        ),
    ),
    TxType(
        name="meter_registration",
        payload=MeterRegistrationPayload,
        signer="payload.owner",
        checks=(Check.SIGNER_ACTIVE,),
        key=("meter_id",),
        instructions=(
            Ix("registry", "register_meter",
               args={"meter_id": "payload.meter_id", "meter_type": "payload.meter_type"},
               accounts={"registry": REGISTRY, "user_account": USER_OF_SIGNER,
                         "meter_account": METER_OF_PAYLOAD,
                         "user_authority": "signer", "system_program": "program.system"}),
        ),
    ),
    TxType(
        name="market_clearing",
        payload=MarketClearingPayload,
        signer="gateway",
        key=("epoch",),
        instructions=(
            Ix("oracle", "trigger_market_clearing", args={},
               accounts={"oracle_data": ORACLE_DATA, "authority": "signer"}),
        ),
    ),
    TxType(
        name="order_creation",
        payload=OrderCreationPayload,
        signer="payload.owner",
        readers=(Read.ORDER_INDEX,),
        checks=(Check.SIGNER_ACTIVE,),
        # ConstraintSeeds: another order moved the index between the read and the execution;
        # "already in use": one landed at the index read in between. Re-read, rebuild.
        rebuild_on=frozenset({2006, 0}),
        variants={
            "sell": (PLACEHOLDER_ORDER, Ix("trading", "create_sell_order",
                        args={"energy_amount": "payload.energy_amount",
                              "price_per_kwh": "payload.price_per_kwh"},
                        accounts={**_ORDER_ACCOUNTS, "erc_certificate": "payload.erc_certificate|program.self"}),),
            "buy": (PLACEHOLDER_ORDER, Ix("trading", "create_buy_order",
                       args={"energy_amount": "payload.energy_amount",
                             "max_price_per_kwh": "payload.price_per_kwh"},
                       accounts=_ORDER_ACCOUNTS),),
        },
    ),
    TxType(
        name="order_cancel",
        payload=OrderCancelPayload,
        signer="payload.owner",
        checks=(Check.SIGNER_ACTIVE,),
        key=("order",),
        instructions=(
            Ix("trading", "cancel_order", args={},
               accounts={"market": MARKET, "order": "payload.order", "authority": "signer"}),
        ),
    ),
    TxType(
        name="token_minting",
        payload=TokenMintingPayload,
        signer="authority",
        batchable=True,
        readers=(Read.TOKEN_ACCOUNT_EXISTS,),
        instructions=(
            Ix("energy_token", "mint_tokens_direct", args={"amount": "payload.amount"},
               accounts={"token_info": TOKEN_INFO, "mint": ENERGY_MINT,
                         "user_token_account": "payload.token_account", "authority": "signer",
                         "token_program": "program.token"}),
        ),
    ),
    TxType(
        name="token_transfer",
        payload=TokenTransferPayload,
        signer="payload.owner",
        readers=(Read.FROM_BALANCE,),
        instructions=(
            Ix("energy_token", "transfer_tokens", args={"amount": "payload.amount"},
               accounts={"from_token_account": "payload.from_token_account",
                         "to_token_account": "payload.to_token_account",
                         "from_authority": "signer", "token_program": "program.token"}),
        ),
    ),
    TxType(
        name="erc_issuance",
        payload=ErcIssuancePayload,
        signer="authority",
        key=("certificate_id",),
        instructions=(
            Ix("governance", "issue_erc",
               args={"certificate_id": "payload.certificate_id",
                     "energy_amount": "payload.energy_amount",
                     "renewable_source": "payload.renewable_source",
                     "validation_data": "payload.validation_data"},
               accounts={"poa_config": POA_CONFIG,
                         "erc_certificate": ERC_OF_PAYLOAD,
                         "meter_account": METER_OF_PAYLOAD,
                         "authority": "signer", "system_program": "program.system"}),
        ),
    ),
    TxType(
        name="grid_minting",
        payload=GridMintingPayload,
        signer="payload.owner",
        batchable=True,
        distinct="meter_id",
        key=("meter_id", "interval_end"),
        token_accounts=(TokenAccount("payload.token_account", "payload.owner"),),
        # mint_grid_tokens mints the meter's WHOLE unsettled balance: a mint of an earlier
        # interval that landed later took this interval's energy too (registry 6006 by CPI)
        done_on={6006: "nothing left to mint: the meter's registry balance is already settled",
                 6004: "nothing left to mint: the meter's registry balance is already settled"},
        instructions=(
            Ix("energy_token", "mint_grid_tokens", args={},
               accounts={"token_info": TOKEN_INFO, "mint": ENERGY_MINT,
                         "meter_account": METER_OF_PAYLOAD,
                         "user_token_account": "payload.token_account", "meter_owner": "signer",
                         "token_program": "program.token", "registry_program": "program.registry",
                         "system_program": "program.system"}),
        ),
    ),
    TxType(
        name="match_orders",
        payload=MatchOrdersPayload,
        signer="authority",
        batchable=True,
        key=("buy_order", "sell_order", "epoch"),
        # the trade record PDA ["trade", buy, sell] exists: this pair is already matched
        done_on={0: "the trade record of this pair exists: the orders are already matched"},
        instructions=(
            Ix("trading", "match_orders", args={"match_amount": "payload.amount"},
               accounts={"market": MARKET, "buy_order": "payload.buy_order",
                         "sell_order": "payload.sell_order", "trade_record": TRADE_OF_PAYLOAD,
                         "authority": "signer", "system_program": "program.system"}),
        ),
    ),
    TxType(
        name="settle_trade",
        payload=SettleTradePayload,
        signer="payload.signer",
        batchable=True,
        key=("trade_record",),
        token_accounts=(TokenAccount("payload.buyer_token_account", "payload.buyer"),),
        done_on={6016: "the trade is already settled (its settlement marker exists)"},
        instructions=(
            Ix("trading", "settle_trade", args={},
               accounts={"trade_record": "payload.trade_record",
                         "settlement": SETTLEMENT_OF_PAYLOAD, "mint": ENERGY_MINT,
                         "seller_token_account": "payload.seller_token_account",
                         "buyer_token_account": "payload.buyer_token_account",
                         "authority": "signer", "token_program": "program.token",
                         "system_program": "program.system"}),
        ),
    ),
    TxType(
        name="erc_validation",
        payload=ErcValidationPayload,
        signer="authority",
        key=("certificate_id",),
        instructions=(
            Ix("governance", "validate_erc_for_trading", args={},
               accounts={"poa_config": POA_CONFIG,
                         "erc_certificate": ERC_OF_PAYLOAD,
                         "authority": "signer"}),
        ),
    ),
)}


_BY_MODEL: dict[type[Payload], TxType] = {t.payload: t for t in TX_TYPES.values()}
assert len(_BY_MODEL) == len(TX_TYPES), "each tx type has its own payload model"
# The types whose finalized operations' details the retention job deletes.
DETAILS_EXPIRE: frozenset[str] = frozenset(t.name for t in TX_TYPES.values() if t.details_expire)


def tx_type(name: str) -> TxType:
    """The row of a stored operation's tx type; InvalidInput when there is none."""
    row = TX_TYPES.get(name)
    if row is None:
        raise InvalidInput("unknown_tx_type", f"no tx type {name!r}; known: {sorted(TX_TYPES)}")
    return row


def tx_type_of(payload: Payload) -> TxType:
    """The row whose model `payload` is."""
    return _BY_MODEL[type(payload)]


def new_operation(payload: Payload, idempotency_key: str | None = None) -> NewOperation:
    """The outbox operation for `payload`, its idempotency key derived from the row's key fields
    unless the producer names the operation itself (types without key fields need that)."""
    row = tx_type_of(payload)
    return NewOperation(row.name, payload.model_dump(mode="json"),
                        idempotency_key or row.idempotency_key(payload))
