"""Renewable energy certificates for sell orders, as the governance program provides them.

Where the node holds the programs' authority (`chain.authority_keypair`, the governance
authority), a policy sell of an interval's surplus is certified first: `erc_issuance` of that
many Wh of the meter's generation, then `erc_validation` for trading, then the sell order naming
the certificate. Each step is enqueued when the previous one is finalized (the market's cursor
over the event log), the planned order riding along in the payloads, so a restart resumes where
the tables say. A surplus below the governance minimum, or a certificate step that ends failed
or parked, places the same order without a certificate (the trading program takes sell orders
without one): the order's idempotency key is the same either way, so it is placed once.

Without the authority, a user's own validated certificate (`[[market.users]] erc_certificate`)
is named on its sell orders.
"""

from __future__ import annotations

import hashlib
from typing import Any

from solders.pubkey import Pubkey

from gridnode.chain.txtypes import new_operation
from gridnode.chain.validation import ErcIssuancePayload, ErcValidationPayload
from gridnode.store.operations import NewOperation

MAX_ID = 32            # a PDA seed
PLAN = "order_plan"    # the payload field that carries the planned order along


def certificate_id(meter_id: str, interval_end: int) -> str:
    """`<interval end>-<meter>`, the meter shortened to a hash when the seed would exceed 32."""
    cid = f"{interval_end}-{meter_id}"
    if len(cid.encode()) <= MAX_ID:
        return cid
    return f"{interval_end}-" + hashlib.sha256(meter_id.encode()).hexdigest()[:MAX_ID - 11]


def certificate_address(governance_program: Pubkey, cid: str) -> str:
    return str(Pubkey.find_program_address([b"erc_certificate", cid.encode()],
                                           governance_program)[0])


def issuance(meter_id: str, interval_start: int, interval_end: int, energy_wh: int,
             plan: dict[str, Any]) -> NewOperation:
    cid = certificate_id(meter_id, interval_end)
    payload = ErcIssuancePayload.model_validate({
        "meter_id": meter_id, "certificate_id": cid, "energy_amount": energy_wh,
        "renewable_source": "solar",
        "validation_data": f"meter {meter_id} net generation {interval_start}-{interval_end}",
        PLAN: plan})
    return new_operation(payload)


def validation(cid: str, plan: dict[str, Any]) -> NewOperation:
    return new_operation(ErcValidationPayload.model_validate({"certificate_id": cid,
                                                             PLAN: plan}))
