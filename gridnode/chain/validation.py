"""Validation before a transaction is created: inputs, business rules, permissions.

Each failure is a typed error that names what is wrong, and its class says what the outbox does
with the operation:
    InvalidInput      the payload can never become a valid instruction   -> failed
    NotPermitted      this node holds no key that may sign it            -> failed
    RuleNotMet        the chain does not (yet) allow it (meter inactive, balance too low, ...)
                      -> stays pending and is re-checked later; nothing is lost
    TooOld            an oracle reading older than the configured age    -> parked

The payload models of the tx types are here too (one per row of gridnode.chain.txtypes.TX_TYPES):
producers build them, the builder reads their fields.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gridnode.types import Base58Pubkey, CertificateId, MeterId

U64 = Annotated[int, Field(ge=0, le=2**64 - 1)]
I64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


class Outcome(StrEnum):
    """What the outbox does with an operation that cannot be turned into a transaction now."""

    FAILED = "failed"      # ends failed (an operator may retry it)
    RETRY = "retry"        # stays pending, re-checked after outbox.rule_retry_s
    PARKED = "parked"      # waits for an operator


class OperationInvalid(Exception):
    """Base: why an operation cannot be turned into a transaction now."""

    outcome = Outcome.FAILED

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details


class InvalidInput(OperationInvalid):
    outcome = Outcome.FAILED


class NotPermitted(OperationInvalid):
    outcome = Outcome.FAILED


class RuleNotMet(OperationInvalid):
    outcome = Outcome.RETRY


class TooOld(OperationInvalid):
    outcome = Outcome.PARKED


class Payload(BaseModel):
    """Base of the payload models: immutable; fields beyond the model's are kept, not checked."""

    model_config = ConfigDict(extra="allow", frozen=True)

    def get(self, name: str) -> Any:
        """The field `name` (a row's "payload.<name>" source), None when absent."""
        return getattr(self, name, None)


class MeterIdMixin(Payload):
    """A payload about one meter, named by its on-chain id."""

    meter_id: MeterId


class MeterReadingPayload(MeterIdMixin):
    interval_start: I64
    interval_end: I64
    energy_produced_wh: U64
    energy_consumed_wh: U64
    backfilled: bool = False

    @field_validator("interval_end")
    @classmethod
    def _end(cls, v: int, info: Any) -> int:
        start = info.data.get("interval_start")
        if start is not None and v <= start:
            raise ValueError("interval_end must be after interval_start")
        return v


class UserRegistrationPayload(Payload):
    user: Base58Pubkey
    user_type: Literal["prosumer", "consumer"]
    location: str = Field(max_length=100)


class MeterRegistrationPayload(MeterIdMixin):
    owner: Base58Pubkey
    meter_type: Literal["solar", "wind", "battery", "grid"]


class MarketClearingPayload(Payload):
    epoch: I64


class OrderCreationPayload(Payload):
    owner: Base58Pubkey
    side: Literal["sell", "buy"]
    energy_amount: Annotated[int, Field(gt=0, le=2**64 - 1)]
    price_per_kwh: Annotated[int, Field(gt=0, le=2**64 - 1)]
    erc_certificate: str | None = None


class OrderCancelPayload(Payload):
    owner: Base58Pubkey
    order: Base58Pubkey


class TokenMintingPayload(Payload):
    token_account: Base58Pubkey
    amount: Annotated[int, Field(gt=0, le=2**64 - 1)]


class TokenTransferPayload(Payload):
    owner: Base58Pubkey
    from_token_account: Base58Pubkey
    to_token_account: Base58Pubkey
    amount: Annotated[int, Field(gt=0, le=2**64 - 1)]


class ErcIssuancePayload(MeterIdMixin):
    certificate_id: CertificateId
    energy_amount: Annotated[int, Field(gt=0, le=2**64 - 1)]
    renewable_source: str = Field(max_length=64)
    validation_data: str

    @field_validator("validation_data")
    @classmethod
    def _total(cls, v: str, info: Any) -> str:
        total = len(v.encode()) + len(str(info.data.get("certificate_id", "")).encode()) + len(
            str(info.data.get("renewable_source", "")).encode())
        if total > 372:
            raise ValueError("certificate_id + renewable_source + validation_data exceed 372 bytes")
        return v


class ErcValidationPayload(Payload):
    certificate_id: str


class GridMintingPayload(MeterIdMixin):
    """Mint the meter's whole unsettled registry balance as GRID to the owner's token account
    (energy_token mint_grid_tokens); one per meter and closed interval."""

    owner: Base58Pubkey
    token_account: Base58Pubkey
    interval_end: I64


class MatchOrdersPayload(Payload):
    """Match a buy and a sell order for `amount` Wh (trading match_orders, market authority)."""

    buy_order: Base58Pubkey
    sell_order: Base58Pubkey
    amount: Annotated[int, Field(gt=0, le=2**64 - 1)]
    epoch: I64

    @field_validator("sell_order")
    @classmethod
    def _distinct(cls, v: str, info: Any) -> str:
        if v == info.data.get("buy_order"):
            raise ValueError("sell_order must differ from buy_order")
        return v


class SettleTradePayload(Payload):
    """Move a matched trade's energy from seller to buyer (trading settle_trade), signed by the
    seller itself or by the key the seller approved as SPL delegate of its GRID account."""

    trade_record: Base58Pubkey
    seller: Base58Pubkey
    buyer: Base58Pubkey
    seller_token_account: Base58Pubkey
    buyer_token_account: Base58Pubkey
    signer: Base58Pubkey


def enum_name(value: Any) -> str:
    """The variant name of a decoded Borsh enum, whatever shape the decoder gives it."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        return str(next(iter(value)))
    if isinstance(value, int):
        return str(value)
    name = type(value).__name__
    return name if name not in ("object",) else str(value)
