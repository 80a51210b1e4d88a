"""The transaction types gridnode sends, as a table.

Each entry says which program instruction(s) an outbox operation becomes, where every argument
and account comes from (the payload, the signer, a PDA, a value read from chain just before
building), who signs, whether several operations may share one transaction, and which on-chain
errors mean "rebuild and try again" rather than "failed". Adding a tx type is adding a row.

Sources used in the table:
    "payload.<key>"       a payload field (pubkeys as base58 strings)
    "signer"              the pubkey of the signing key
    "program.<name>"      a well-known program id ("system", "token", "self" = the called program)
    Pda(program, seeds)   a PDA; seeds are bytes constants or sources, "u64le:<ctx>" packs a value
    "ctx.<name>"          a value read from chain by the named reader (see instructions.READERS)
    "a|b"                 the first source that is present (optional accounts: "|program.self")
"""

from __future__ import annotations

from dataclasses import dataclass, field


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


@dataclass(frozen=True)
class TxType:
    name: str
    signer: str                      # key role: "gateway", "authority", or "payload.<key>"
    instructions: tuple[Ix, ...] = ()
    variants: dict[str, tuple[Ix, ...]] = field(default_factory=dict)  # by payload["side"]
    batchable: bool = False
    readers: tuple[str, ...] = ()    # chain reads done just before building
    rebuild_on: frozenset[int] = frozenset()  # program error codes that mean "re-read, rebuild"


ORACLE_DATA = Pda("oracle", (b"oracle_data",))
REGISTRY = Pda("registry", (b"registry",))
MARKET = Pda("trading", (b"market",))
POA_CONFIG = Pda("governance", (b"poa_config",))
TOKEN_INFO = Pda("energy_token", (b"token_info",))
ENERGY_MINT = Pda("energy_token", (b"mint",))
USER_OF_SIGNER = Pda("registry", (b"user", "signer"))
METER_OF_PAYLOAD = Pda("registry", (b"meter", "payload.meter_id"))
ERC_OF_PAYLOAD = Pda("governance", (b"erc_certificate", "payload.certificate_id"))

_ORDER_ACCOUNTS: dict[str, str | Pda] = {
    "market": MARKET,
    "order": Pda("trading", (b"order", "signer", "u64le:ctx.active_orders")),
    "authority": "signer",
    "system_program": "program.system",
}

TX_TYPES: dict[str, TxType] = {t.name: t for t in (
    TxType(
        name="meter_reading",
        signer="gateway",
        batchable=True,
        readers=("meter_owner",),
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
        signer="payload.user",
        instructions=(
            Ix("registry", "register_user",
               args={"user_type": "payload.user_type", "location": "payload.location"},
               accounts={"registry": REGISTRY, "user_account": USER_OF_SIGNER,
                         "user_authority": "signer", "system_program": "program.system"}),
        ),
    ),
    TxType(
        name="meter_registration",
        signer="payload.owner",
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
        signer="gateway",
        instructions=(
            Ix("oracle", "trigger_market_clearing", args={},
               accounts={"oracle_data": ORACLE_DATA, "authority": "signer"}),
        ),
    ),
    TxType(
        name="order_creation",
        signer="payload.owner",
        readers=("active_orders",),
        rebuild_on=frozenset({2006, 0}),  # ConstraintSeeds (index moved), "already in use"
        variants={
            "sell": (Ix("trading", "create_sell_order",
                        args={"energy_amount": "payload.energy_amount",
                              "price_per_kwh": "payload.price_per_kwh"},
                        accounts={**_ORDER_ACCOUNTS, "erc_certificate": "payload.erc_certificate|program.self"}),),
            "buy": (Ix("trading", "create_buy_order",
                       args={"energy_amount": "payload.energy_amount",
                             "max_price_per_kwh": "payload.price_per_kwh"},
                       accounts=_ORDER_ACCOUNTS),),
        },
    ),
    TxType(
        name="order_cancel",
        signer="payload.owner",
        instructions=(
            Ix("trading", "cancel_order", args={},
               accounts={"market": MARKET, "order": "payload.order", "authority": "signer"}),
        ),
    ),
    TxType(
        name="token_minting",
        signer="authority",
        batchable=True,
        readers=("token_account_exists",),
        instructions=(
            Ix("energy_token", "mint_tokens_direct", args={"amount": "payload.amount"},
               accounts={"token_info": TOKEN_INFO, "mint": ENERGY_MINT,
                         "user_token_account": "payload.token_account", "authority": "signer",
                         "token_program": "program.token"}),
        ),
    ),
    TxType(
        name="token_transfer",
        signer="payload.owner",
        readers=("from_balance",),
        instructions=(
            Ix("energy_token", "transfer_tokens", args={"amount": "payload.amount"},
               accounts={"from_token_account": "payload.from_token_account",
                         "to_token_account": "payload.to_token_account",
                         "from_authority": "signer", "token_program": "program.token"}),
        ),
    ),
    TxType(
        name="erc_issuance",
        signer="authority",
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
        name="erc_validation",
        signer="authority",
        instructions=(
            Ix("governance", "validate_erc_for_trading", args={},
               accounts={"poa_config": POA_CONFIG,
                         "erc_certificate": ERC_OF_PAYLOAD,
                         "authority": "signer"}),
        ),
    ),
)}


def instructions_of(tx_type: TxType, payload: dict[str, object]) -> tuple[Ix, ...]:
    if tx_type.variants:
        side = str(payload.get("side", ""))
        if side not in tx_type.variants:
            raise KeyError(side)
        return tx_type.variants[side]
    return tx_type.instructions
