"""Validation before a transaction is created: inputs, business rules, permissions.

Each failure is a typed error that names what is wrong, and its class says what the outbox does
with the operation:
    InvalidInput      the payload can never become a valid instruction   -> failed
    NotPermitted      this node holds no key that may sign it            -> failed
    RuleNotMet        the chain does not (yet) allow it (meter inactive, balance too low, ...)
                      -> stays pending and is re-checked later; nothing is lost
    TooOld            an oracle reading older than the configured age    -> parked
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from solders.pubkey import Pubkey

U64 = Annotated[int, Field(ge=0, le=2**64 - 1)]
I64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


class OperationInvalid(Exception):
    """Base: why an operation cannot be turned into a transaction now."""

    outcome = "failed"

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details


class InvalidInput(OperationInvalid):
    outcome = "failed"


class NotPermitted(OperationInvalid):
    outcome = "failed"


class RuleNotMet(OperationInvalid):
    outcome = "retry"


class TooOld(OperationInvalid):
    outcome = "parked"


def _pubkey(v: str) -> str:
    try:
        Pubkey.from_string(v)
    except Exception as exc:
        raise ValueError(f"not a base58 public key: {v!r}") from exc
    return v


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class MeterIdMixin(_Payload):
    meter_id: str

    @field_validator("meter_id")
    @classmethod
    def _meter_id(cls, v: str) -> str:
        if not v or len(v.encode()) > 32:
            raise ValueError("meter_id must be 1..32 bytes (it is a PDA seed)")
        return v


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


class UserRegistrationPayload(_Payload):
    user: str
    user_type: Literal["prosumer", "consumer"]
    location: str = Field(max_length=100)
    _v = field_validator("user")(_pubkey)


class MeterRegistrationPayload(MeterIdMixin):
    owner: str
    meter_type: Literal["solar", "wind", "battery", "grid"]
    _v = field_validator("owner")(_pubkey)


class MarketClearingPayload(_Payload):
    epoch: I64


class OrderCreationPayload(_Payload):
    owner: str
    side: Literal["sell", "buy"]
    energy_amount: Annotated[int, Field(gt=0, le=2**64 - 1)]
    price_per_kwh: Annotated[int, Field(gt=0, le=2**64 - 1)]
    erc_certificate: str | None = None
    _v = field_validator("owner")(_pubkey)


class OrderCancelPayload(_Payload):
    owner: str
    order: str
    _v = field_validator("owner", "order")(_pubkey)


class TokenMintingPayload(_Payload):
    token_account: str
    amount: Annotated[int, Field(gt=0, le=2**64 - 1)]
    _v = field_validator("token_account")(_pubkey)


class TokenTransferPayload(_Payload):
    owner: str
    from_token_account: str
    to_token_account: str
    amount: Annotated[int, Field(gt=0, le=2**64 - 1)]
    _v = field_validator("owner", "from_token_account", "to_token_account")(_pubkey)


class ErcIssuancePayload(MeterIdMixin):
    certificate_id: str
    energy_amount: Annotated[int, Field(gt=0, le=2**64 - 1)]
    renewable_source: str = Field(max_length=64)
    validation_data: str

    @field_validator("certificate_id")
    @classmethod
    def _cid(cls, v: str) -> str:
        if not v or len(v.encode()) > 32:
            raise ValueError("certificate_id must be 1..32 bytes (it is a PDA seed)")
        return v

    @field_validator("validation_data")
    @classmethod
    def _total(cls, v: str, info: Any) -> str:
        total = len(v.encode()) + len(str(info.data.get("certificate_id", "")).encode()) + len(
            str(info.data.get("renewable_source", "")).encode())
        if total > 372:
            raise ValueError("certificate_id + renewable_source + validation_data exceed 372 bytes")
        return v


class ErcValidationPayload(_Payload):
    certificate_id: str


PAYLOADS: dict[str, type[_Payload]] = {
    "meter_reading": MeterReadingPayload,
    "user_registration": UserRegistrationPayload,
    "meter_registration": MeterRegistrationPayload,
    "market_clearing": MarketClearingPayload,
    "order_creation": OrderCreationPayload,
    "order_cancel": OrderCancelPayload,
    "token_minting": TokenMintingPayload,
    "token_transfer": TokenTransferPayload,
    "erc_issuance": ErcIssuancePayload,
    "erc_validation": ErcValidationPayload,
}


def check_input(tx_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The payload, validated; raises InvalidInput naming the field and what is allowed."""
    model = PAYLOADS.get(tx_type)
    if model is None:
        raise InvalidInput("unknown_tx_type", f"no tx type {tx_type!r}; known: {sorted(PAYLOADS)}")
    try:
        return model.model_validate(payload).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise InvalidInput("invalid_payload", f"{tx_type} payload field {where}: {first['msg']}",
                           field=where) from exc


def check_age(tx_type: str, payload: dict[str, Any], max_age_s: float | None,
              now: float | None = None) -> None:
    """Oracle readings older than `max_age_s` are parked for an operator, not sent or dropped."""
    if tx_type != "meter_reading" or not max_age_s:
        return
    age = (now if now is not None else time.time()) - float(payload["interval_end"])
    if age > max_age_s:
        raise TooOld("reading_too_old",
                     f"reading for {payload['meter_id']} at {payload['interval_end']} is {age:.0f} s old "
                     f"(limit {max_age_s:.0f} s)", age_s=round(age))


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
