"""A LiteSVM session with the reference programs: send, check, decode, and common set-ups.

Used by the program tests (tests/simulators/chain) and bench/bench_programs.py; ``ok``/``fails``
assert the outcome, so a wrong expectation stops the caller with the transaction logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction
from solders.transaction_status import InstructionErrorCustom

from gridnode.chain.idl import ProgramIdl, load_idls
from simulators.chain.svm import IDL_DIR, PROGRAMS_DIR, execute, new_svm

TOKEN_PROGRAM = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022_PROGRAM = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
ATA_PROGRAM = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
SYSTEM_PROGRAM = Pubkey.from_string("11111111111111111111111111111111")
RENT_SYSVAR = Pubkey.from_string("SysvarRent111111111111111111111111111111111")
IX_SYSVAR = Pubkey.from_string("Sysvar1nstructions1111111111111111111111111")
NOW = 1_750_000_000

_IDLS = load_idls(IDL_DIR)


@dataclass
class Outcome:
    """What one transaction did: error (custom code as int, other errors as text), logs, CU."""

    ok: bool
    error: int | str | None
    logs: list[str]
    cu: int
    return_data: bytes = b""
    events: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)


class Chain:
    """A LiteSVM with the programs deployed, a funded authority, and send/decode helpers."""

    def __init__(self) -> None:
        self.svm: LiteSVM = new_svm()
        self.set_time(NOW)
        self.idls: dict[str, ProgramIdl] = _IDLS
        self.authority = self.funded()

    def set_time(self, unix: int) -> None:
        """Move the Clock sysvar's unix_timestamp, which the programs read as "now"."""
        clock = self.svm.get_clock()
        clock.unix_timestamp = unix
        self.svm.set_clock(clock)

    def funded(self, lamports: int = 100 * 10**9) -> Keypair:
        kp = Keypair()
        self.svm.airdrop(kp.pubkey(), lamports)
        return kp

    def ix(self, program: str, name: str, args: dict | None = None, accounts: dict | None = None,
           remaining: list[AccountMeta] | None = None) -> Instruction:
        return self.idls[program].instruction(name, args or {}, accounts or {}, remaining)

    def send(self, ixs: Instruction | list[Instruction], *signers: Keypair,
             payer: Keypair | None = None) -> Outcome:
        ixs = [ixs] if isinstance(ixs, Instruction) else ixs
        payer = payer or signers[0]
        all_signers = [payer] + [s for s in signers if s.pubkey() != payer.pubkey()]
        msg = MessageV0.try_compile(payer.pubkey(), ixs, [], self.svm.latest_blockhash())
        res = execute(self.svm, VersionedTransaction(msg, all_signers))
        self.svm.expire_blockhash()
        if hasattr(res, "err"):
            tx_err = res.err()
            err = getattr(tx_err, "err", tx_err)  # instruction error, or a transaction-level one
            meta = res.meta()
            code: int | str = (err.code if isinstance(err, InstructionErrorCustom)
                                else str(err).rsplit(".", 1)[-1])
            return Outcome(False, code, list(meta.logs()), meta.compute_units_consumed())
        logs = list(res.logs())
        events = {n: p.decode_events(logs) for n, p in self.idls.items()}
        return Outcome(True, None, logs, res.compute_units_consumed(),
                       bytes(res.return_data().data), events)

    def ok(self, ixs, *signers: Keypair, payer: Keypair | None = None) -> Outcome:
        out = self.send(ixs, *signers, payer=payer)
        assert out.ok, f"failed with {out.error}: {out.logs}"
        return out

    def fails(self, code: int | str, ixs, *signers: Keypair, payer: Keypair | None = None) -> Outcome:
        out = self.send(ixs, *signers, payer=payer)
        assert not out.ok, f"expected error {code}, succeeded: {out.logs}"
        assert out.error == code, f"expected {code}, got {out.error}: {out.logs}"
        return out

    def data(self, key: Pubkey) -> bytes:
        acc = self.svm.get_account(key)
        return bytes(acc.data) if acc is not None else b""

    def decode(self, program: str, type_name: str, key: Pubkey) -> dict[str, Any]:
        acc = self.svm.get_account(key)
        idl = self.idls[program]
        assert acc is not None, f"{key} does not exist"
        assert acc.owner == idl.program_id
        return idl.decode_account(type_name, bytes(acc.data))

    def set_account(self, key: Pubkey, data: bytes, owner: Pubkey, lamports: int = 10**9,
                    executable: bool = False) -> None:
        from solders.account import Account
        self.svm.set_account(key, Account(lamports, data, owner, executable, 0))

    def token_balance(self, token_account: Pubkey) -> int:
        return int.from_bytes(self.data(token_account)[64:72], "little")

    # ---- program set-ups shared by the tests
    def init_oracle(self, gateway: Pubkey) -> Pubkey:
        self.ok(self.ix("oracle", "initialize", {"api_gateway": gateway},
                        {"authority": self.authority.pubkey()}), self.authority)
        return self.idls["oracle"].pda("oracle_data")

    def init_registry(self) -> Pubkey:
        self.ok(self.ix("registry", "initialize", {}, {"authority": self.authority.pubkey()}),
                self.authority)
        return self.idls["registry"].pda("registry")

    def register_user(self, user: Keypair, user_type: str = "Prosumer", location: str = "Bangkok") -> Pubkey:
        reg = self.idls["registry"]
        self.ok(self.ix("registry", "register_user", {"user_type": user_type, "location": location},
                        {"registry": reg.pda("registry"), "user_authority": user.pubkey()}), user)
        return reg.pda("user_account", user_authority=user.pubkey())

    def register_meter(self, user: Keypair, meter_id: str, meter_type: str = "Solar") -> Pubkey:
        reg = self.idls["registry"]
        self.ok(self.ix("registry", "register_meter", {"meter_id": meter_id, "meter_type": meter_type},
                        {"registry": reg.pda("registry"),
                         "user_account": reg.pda("user_account", user_authority=user.pubkey()),
                         "user_authority": user.pubkey()}), user)
        return reg.pda("meter_account", meter_id=meter_id)

    def init_token(self) -> tuple[Pubkey, Pubkey]:
        tok = self.idls["energy_token"]
        self.ok(self.ix("energy_token", "initialize_token", {}, {"authority": self.authority.pubkey()}),
                self.authority)
        return tok.pda("token_info"), tok.pda("mint")

    def create_mint(self, authority: Keypair, token_program: Pubkey = TOKEN_PROGRAM,
                    **accounts: Pubkey) -> Keypair:
        """A keypair mint made by energy_token create_token_mint (9 decimals, authority signs)."""
        mint = Keypair()
        base = {"mint": mint.pubkey(), "metadata": Pubkey.new_unique(), "payer": authority.pubkey(),
                "authority": authority.pubkey(), "token_program": token_program,
                "metadata_program": Pubkey.new_unique()}
        self.ok(self.ix("energy_token", "create_token_mint",
                        {"name": "Grid", "symbol": "GRX", "uri": "https://x"}, {**base, **accounts}),
                authority, mint)
        return mint

    def ata(self, owner: Pubkey, mint: Pubkey, token_program: Pubkey = TOKEN_PROGRAM) -> Pubkey:
        return Pubkey.find_program_address([bytes(owner), bytes(token_program), bytes(mint)],
                                           ATA_PROGRAM)[0]

    def create_ata(self, owner: Pubkey, mint: Pubkey, payer: Keypair) -> Pubkey:
        ata = self.ata(owner, mint)
        ix = Instruction(ATA_PROGRAM, bytes([1]), [
            AccountMeta(payer.pubkey(), True, True), AccountMeta(ata, False, True),
            AccountMeta(owner, False, False), AccountMeta(mint, False, False),
            AccountMeta(SYSTEM_PROGRAM, False, False), AccountMeta(TOKEN_PROGRAM, False, False)])
        self.ok(ix, payer)
        return ata


class Scenario:
    """A chain with every program set up, one valid instruction per program instruction (``ixs``,
    labelled ``program.instruction``) and the keypairs that may sign them (``pool``)."""

    def __init__(self, chain: Chain) -> None:
        self.chain = c = chain
        a = c.authority
        self.gw = c.funded()
        self.user = c.funded()
        self.pool = {k.pubkey(): k for k in (a, self.gw, self.user)}
        od = c.init_oracle(self.gw.pubkey())
        reg = c.init_registry()
        ua = c.register_user(self.user)
        meter = c.register_meter(self.user, "MTR-F")
        info, mint = c.init_token()
        ata = c.create_ata(self.user.pubkey(), mint, self.user)
        wallet_mint = c.create_mint(a)
        c.ok(c.ix("energy_token", "mint_tokens_direct", {"amount": 10**6},
                  {"mint": mint, "user_token_account": ata, "authority": a.pubkey()}), a)
        self.mint_kp = Keypair()
        self.pool[self.mint_kp.pubkey()] = self.mint_kp
        up = self.user.pubkey()
        self.fake_program = Pubkey.new_unique()
        c.svm.add_program(self.fake_program, (PROGRAMS_DIR / "oracle.so").read_bytes())
        ix = c.ix
        self.ixs: dict[str, Instruction] = {
            "oracle.initialize": ix("oracle", "initialize", {"api_gateway": self.gw.pubkey()},
                                    {"authority": a.pubkey()}),
            "oracle.submit_meter_reading": ix("oracle", "submit_meter_reading", {
                "meter_id": "MTR-F", "energy_produced": 5, "energy_consumed": 1, "reading_timestamp": NOW},
                {"oracle_data": od, "authority": self.gw.pubkey()}),
            "oracle.trigger_market_clearing": ix("oracle", "trigger_market_clearing", {},
                                                 {"oracle_data": od, "authority": self.gw.pubkey()}),
            "oracle.update_oracle_status": ix("oracle", "update_oracle_status", {"active": True},
                                              {"oracle_data": od, "authority": a.pubkey()}),
            "oracle.update_api_gateway": ix("oracle", "update_api_gateway",
                                            {"new_api_gateway": self.gw.pubkey()},
                                            {"oracle_data": od, "authority": a.pubkey()}),
            "registry.initialize": ix("registry", "initialize", {}, {"authority": a.pubkey()}),
            "registry.register_user": ix("registry", "register_user",
                                         {"user_type": "Consumer", "location": "here"},
                                         {"registry": reg, "user_authority": a.pubkey()}),
            "registry.register_meter": ix("registry", "register_meter",
                                          {"meter_id": "MTR-G", "meter_type": "Wind"},
                                          {"registry": reg, "user_account": ua, "user_authority": up}),
            "registry.update_user_status": ix("registry", "update_user_status", {"new_status": "Active"},
                                              {"registry": reg, "user_account": ua, "authority": a.pubkey()}),
            "registry.update_meter_status": ix("registry", "update_meter_status",
                                               {"new_status": "Active"},
                                               {"meter_account": meter, "authority": a.pubkey()}),
            "registry.update_meter_reading": ix("registry", "update_meter_reading", {
                "energy_generated": 10, "energy_consumed": 2, "reading_timestamp": NOW},
                {"meter_account": meter, "oracle_authority": up}),
            "registry.is_valid_user": ix("registry", "is_valid_user", {}, {"user_account": ua}),
            "registry.is_valid_meter": ix("registry", "is_valid_meter", {}, {"meter_account": meter}),
            "registry.get_unsettled_balance": ix("registry", "get_unsettled_balance", {},
                                                 {"meter_account": meter}),
            "registry.settle_meter_balance": ix("registry", "settle_meter_balance", {},
                                                {"meter_account": meter, "meter_owner": up}),
            "energy_token.initialize": ix("energy_token", "initialize", {}, {"authority": a.pubkey()}),
            "energy_token.create_token_mint": ix("energy_token", "create_token_mint",
                                                 {"name": "n", "symbol": "s", "uri": "u"},
                                                 {"mint": self.mint_kp.pubkey(), "metadata": Pubkey.new_unique(),
                                                  "payer": a.pubkey(), "authority": a.pubkey(),
                                                  "token_program": TOKEN_PROGRAM,
                                                  "metadata_program": Pubkey.new_unique()}),
            "energy_token.mint_to_wallet": ix("energy_token", "mint_to_wallet", {"amount": 3},
                                              {"mint": wallet_mint.pubkey(), "destination_owner": up,
                                               "authority": a.pubkey(), "payer": a.pubkey(),
                                               "token_program": TOKEN_PROGRAM}),
            "energy_token.initialize_token": ix("energy_token", "initialize_token", {},
                                                {"authority": a.pubkey()}),
            "energy_token.add_rec_validator": ix("energy_token", "add_rec_validator",
                                                 {"validator_pubkey": up, "_authority_name": "x"},
                                                 {"token_info": info, "authority": a.pubkey()}),
            "energy_token.transfer_tokens": ix("energy_token", "transfer_tokens", {"amount": 1},
                                               {"from_token_account": ata, "to_token_account": ata,
                                                "from_authority": up}),
            "energy_token.burn_tokens": ix("energy_token", "burn_tokens", {"amount": 1},
                                           {"token_info": info, "mint": mint, "token_account": ata,
                                            "authority": up}),
            "energy_token.mint_tokens_direct": ix("energy_token", "mint_tokens_direct", {"amount": 9},
                                                  {"mint": mint, "user_token_account": ata,
                                                   "authority": a.pubkey()}),
            "energy_token.mint_grid_tokens": ix("energy_token", "mint_grid_tokens", {},
                                                {"mint": mint, "meter_account": meter,
                                                 "user_token_account": ata, "meter_owner": up,
                                                 "registry_program": c.idls["registry"].program_id}),
        }
        self.ixs.update(self._governance_and_trading(mint, ata))
        # Fees come from a wallet no instruction names: a mangled instruction may legitimately
        # turn a signing wallet into a program account (init of a funded keypair account).
        self.fee_payer = c.funded()

    def _governance_and_trading(self, mint: Pubkey, seller_ata: Pubkey) -> dict[str, Instruction]:
        """Governance and Trading set up around a Registry meter with generation: a validated
        ERC, resting orders, a matched trade whose seller holds the GRID, and one valid
        instruction of each."""
        c, a, up = self.chain, self.chain.authority, self.user.pubkey()
        gov, tr = c.idls["governance"], c.idls["trading"]
        self.buyer = c.funded()
        self.pool[self.buyer.pubkey()] = self.buyer
        bp = self.buyer.pubkey()
        meter = c.register_meter(self.user, "MTR-H")
        c.ok(c.ix("registry", "update_meter_reading",
                  {"energy_generated": 10**6, "energy_consumed": 0, "reading_timestamp": NOW},
                  {"meter_account": meter, "oracle_authority": up}), self.user)
        c.ok(c.ix("governance", "initialize_poa", {}, {"authority": a.pubkey()}), a)

        def issue(cert_id: str) -> Instruction:
            return c.ix("governance", "issue_erc",
                        {"certificate_id": cert_id, "energy_amount": 1_000, "renewable_source": "solar",
                         "validation_data": "v"}, {"meter_account": meter, "authority": a.pubkey()})

        def cert(cert_id: str) -> Pubkey:
            return gov.find_pda([b"erc_certificate", cert_id.encode()])[0]

        c.ok(issue("SCN-0"), a)
        c.ok(issue("SCN-1"), a)
        c.ok(c.ix("governance", "validate_erc_for_trading", {},
                  {"erc_certificate": cert("SCN-0"), "authority": a.pubkey()}), a)
        c.ok(c.ix("trading", "initialize_market", {}, {"authority": a.pubkey()}), a)
        market = tr.pda("market")
        ata_b = c.create_ata(bp, mint, self.buyer)
        c.ok(c.ix("energy_token", "mint_tokens_direct", {"amount": 10**9},
                  {"mint": mint, "user_token_account": seller_ata, "authority": a.pubkey()}), a)

        def order(side: str, owner: Pubkey, index: int, erc: Pubkey | None = None) -> tuple[Instruction, Pubkey]:
            key = tr.find_pda([b"order", bytes(owner), index.to_bytes(8, "little")])[0]
            accounts = {"market": market, "order": key, "authority": owner}
            if erc is not None:
                accounts["erc_certificate"] = erc
            name = "create_sell_order" if side == "sell" else "create_buy_order"
            price = "price_per_kwh" if side == "sell" else "max_price_per_kwh"
            return c.ix("trading", name, {"energy_amount": 100, price: 5}, accounts), key

        placed = []
        for i, (side, owner) in enumerate([("sell", up), ("buy", bp), ("sell", up), ("buy", bp), ("buy", bp)]):
            ix, key = order(side, owner, i)
            c.ok(ix, self.user if owner == up else self.buyer)
            placed.append(key)

        def match(buy: Pubkey, sell: Pubkey, amount: int) -> Instruction:
            return c.ix("trading", "match_orders", {"match_amount": amount},
                        {"market": market, "buy_order": buy, "sell_order": sell, "authority": a.pubkey()})

        c.ok(match(placed[1], placed[0], 1), a)
        trade = tr.find_pda([b"trade", bytes(placed[1]), bytes(placed[0])])[0]
        n = c.decode("trading", "Market", market)["active_orders"]
        return {
            "governance.initialize_poa": c.ix("governance", "initialize_poa", {}, {"authority": a.pubkey()}),
            "governance.emergency_pause": c.ix("governance", "emergency_pause", {}, {"authority": a.pubkey()}),
            "governance.emergency_unpause": c.ix("governance", "emergency_unpause", {},
                                                 {"authority": a.pubkey()}),
            "governance.issue_erc": issue("SCN-2"),
            "governance.validate_erc_for_trading": c.ix("governance", "validate_erc_for_trading", {},
                                                        {"erc_certificate": cert("SCN-1"),
                                                         "authority": a.pubkey()}),
            "governance.update_governance_config": c.ix("governance", "update_governance_config",
                                                        {"erc_validation_enabled": True},
                                                        {"authority": a.pubkey()}),
            "governance.set_maintenance_mode": c.ix("governance", "set_maintenance_mode",
                                                    {"maintenance_enabled": False}, {"authority": a.pubkey()}),
            "governance.update_erc_limits": c.ix("governance", "update_erc_limits",
                                                 {"min_energy_amount": 100, "max_erc_amount": 1_000_000,
                                                  "erc_validity_period": 31_536_000}, {"authority": a.pubkey()}),
            "governance.update_authority_info": c.ix("governance", "update_authority_info",
                                                     {"contact_info": "ops@example.org"}, {"authority": a.pubkey()}),
            "governance.get_governance_stats": c.ix("governance", "get_governance_stats", {}),
            "trading.initialize": c.ix("trading", "initialize", {}, {"authority": a.pubkey()}),
            "trading.initialize_market": c.ix("trading", "initialize_market", {}, {"authority": a.pubkey()}),
            "trading.create_sell_order": order("sell", up, n, cert("SCN-0"))[0],
            "trading.create_buy_order": order("buy", bp, n + 1)[0],
            "trading.match_orders": match(placed[3], placed[2], 50),
            "trading.cancel_order": c.ix("trading", "cancel_order", {},
                                         {"market": market, "order": placed[4], "authority": bp}),
            "trading.update_market_params": c.ix("trading", "update_market_params",
                                                 {"market_fee_bps": 30, "clearing_enabled": True},
                                                 {"market": market, "authority": a.pubkey()}),
            "trading.settle_trade": c.ix("trading", "settle_trade", {},
                                         {"trade_record": trade, "seller_token_account": seller_ata,
                                          "buyer_token_account": ata_b, "authority": up}),
        }

    def send(self, ix: Instruction):
        """Send with whatever signatures the pool can give; other signer slots are demoted."""
        metas = [AccountMeta(m.pubkey, m.is_signer and m.pubkey in self.pool, m.is_writable)
                 for m in ix.accounts]
        ix = Instruction(ix.program_id, ix.data, metas)
        payer = self.fee_payer
        signers = {payer.pubkey(): payer}
        for m in metas:
            if m.is_signer:
                signers[m.pubkey] = self.pool[m.pubkey]
        svm = self.chain.svm
        msg = MessageV0.try_compile(payer.pubkey(), [ix], [], svm.latest_blockhash())
        res = execute(svm, VersionedTransaction(msg, list(signers.values())))
        svm.expire_blockhash()
        return res
