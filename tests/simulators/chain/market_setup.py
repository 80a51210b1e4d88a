"""Governance and trading set-ups shared by the LiteSVM tests (on top of conftest.Chain)."""

from __future__ import annotations

from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from .conftest import Chain

REGISTRY_ID = Pubkey.from_string("2XPQmFYMdXjP7ffoBB3mXeCdboSFg5Yeb6QmTSGbW8a7")
WH_BASE_UNITS = 10**6  # 1 GRID = 1 kWh, 9 decimals


def with_meta(ix: Instruction, index: int, *, signer: bool | None = None,
              writable: bool | None = None, key: Pubkey | None = None) -> Instruction:
    """The same instruction with account `index` changed (signer/writable flag or key)."""
    metas = list(ix.accounts)
    m = metas[index]
    metas[index] = AccountMeta(key or m.pubkey, m.is_signer if signer is None else signer,
                               m.is_writable if writable is None else writable)
    return Instruction(ix.program_id, ix.data, metas)


def with_data(ix: Instruction, data: bytes) -> Instruction:
    return Instruction(ix.program_id, data, list(ix.accounts))


# ---------------------------------------------------------------- governance
def init_governance(chain: Chain) -> Pubkey:
    a = chain.authority
    chain.ok(chain.ix("governance", "initialize_poa", {}, {"authority": a.pubkey()}), a)
    return chain.idls["governance"].pda("poa_config")


def registry_meter(chain: Chain, meter_id: str, owner: Pubkey, generation: int,
                   consumption: int = 0, claimed: int = 0) -> Pubkey:
    """A Registry-owned MeterAccount at its PDA, written directly (governance only reads it)."""
    reg = chain.idls["registry"]
    key = reg.find_pda([b"meter", meter_id.encode()])[0]
    data = reg.encode_account("MeterAccount", {
        "meter_id": meter_id, "owner": owner, "meter_type": "Solar", "status": "Active",
        "registered_at": 1, "last_reading_at": 2, "total_generation": generation,
        "total_consumption": consumption, "settled_net_generation": 0,
        "claimed_erc_generation": claimed})
    chain.set_account(key, data + bytes(144 - len(data)), REGISTRY_ID)
    return key


def issue_erc_ix(chain: Chain, certificate_id: str, amount: int, meter: Pubkey,
                 authority: Pubkey | None = None, source: str = "solar",
                 validation: str = "meter readings 2025-06", erc: Pubkey | None = None) -> Instruction:
    accounts = {"meter_account": meter, "authority": authority or chain.authority.pubkey()}
    if erc is not None:  # an id over 32 bytes has no PDA: the client must name some account
        accounts["erc_certificate"] = erc
    return chain.ix("governance", "issue_erc",
                    {"certificate_id": certificate_id, "energy_amount": amount,
                     "renewable_source": source, "validation_data": validation}, accounts)


def erc_address(chain: Chain, certificate_id: str) -> Pubkey:
    return chain.idls["governance"].find_pda([b"erc_certificate", certificate_id.encode()])[0]


def validate_erc_ix(chain: Chain, cert: Pubkey, authority: Pubkey | None = None) -> Instruction:
    return chain.ix("governance", "validate_erc_for_trading", {},
                    {"erc_certificate": cert, "authority": authority or chain.authority.pubkey()})


def issue_validated_erc(chain: Chain, certificate_id: str, amount: int, meter: Pubkey) -> Pubkey:
    chain.ok(issue_erc_ix(chain, certificate_id, amount, meter), chain.authority)
    cert = erc_address(chain, certificate_id)
    chain.ok(validate_erc_ix(chain, cert), chain.authority)
    return cert


# ---------------------------------------------------------------- trading
def init_market(chain: Chain) -> Pubkey:
    a = chain.authority
    chain.ok(chain.ix("trading", "initialize_market", {}, {"authority": a.pubkey()}), a)
    return chain.idls["trading"].pda("market")


def active_orders(chain: Chain) -> int:
    return chain.decode("trading", "Market", chain.idls["trading"].pda("market"))["active_orders"]


def order_address(chain: Chain, owner: Pubkey, index: int) -> Pubkey:
    return chain.idls["trading"].find_pda([b"order", bytes(owner), index.to_bytes(8, "little")])[0]


def order_ix(chain: Chain, side: str, user: Pubkey, amount: int, price: int,
             erc: Pubkey | None = None, index: int | None = None) -> tuple[Instruction, Pubkey]:
    """create_sell_order / create_buy_order against `index` (default: the market's current
    active_orders, read now, as a client must)."""
    index = active_orders(chain) if index is None else index
    order = order_address(chain, user, index)
    accounts = {"authority": user, "order": order, "market": chain.idls["trading"].pda("market")}
    if side == "sell":
        if erc is not None:
            accounts["erc_certificate"] = erc
        ix = chain.ix("trading", "create_sell_order",
                      {"energy_amount": amount, "price_per_kwh": price}, accounts)
    else:
        ix = chain.ix("trading", "create_buy_order",
                      {"energy_amount": amount, "max_price_per_kwh": price}, accounts)
    return ix, order


def place(chain: Chain, side: str, user: Keypair, amount: int, price: int,
          erc: Pubkey | None = None) -> Pubkey:
    ix, order = order_ix(chain, side, user.pubkey(), amount, price, erc)
    chain.ok(ix, user)
    return order


def match_ix(chain: Chain, buy: Pubkey, sell: Pubkey, amount: int,
             authority: Pubkey | None = None) -> Instruction:
    return chain.ix("trading", "match_orders", {"match_amount": amount},
                    {"market": chain.idls["trading"].pda("market"), "buy_order": buy,
                     "sell_order": sell, "authority": authority or chain.authority.pubkey()})


def trade_address(chain: Chain, buy: Pubkey, sell: Pubkey) -> Pubkey:
    return chain.idls["trading"].find_pda([b"trade", bytes(buy), bytes(sell)])[0]


def settle_ix(chain: Chain, trade: Pubkey, seller_ta: Pubkey, buyer_ta: Pubkey,
              authority: Pubkey) -> Instruction:
    return chain.ix("trading", "settle_trade", {},
                    {"trade_record": trade, "seller_token_account": seller_ta,
                     "buyer_token_account": buyer_ta, "authority": authority})


def fund_grid(chain: Chain, owner: Pubkey, base_units: int) -> Pubkey:
    """The owner's GRID associated token account holding `base_units` more, minted by the
    Energy Token program (mint_tokens_direct); initializes the token on first use."""
    tok = chain.idls["energy_token"]
    mint = tok.pda("mint")
    if chain.svm.get_account(mint) is None:
        chain.init_token()
    ata = chain.ata(owner, mint)
    if chain.svm.get_account(ata) is None:
        chain.create_ata(owner, mint, chain.authority)
    if base_units:
        chain.ok(chain.ix("energy_token", "mint_tokens_direct", {"amount": base_units},
                          {"mint": mint, "user_token_account": ata,
                           "authority": chain.authority.pubkey()}),
                 chain.authority)
    return ata
