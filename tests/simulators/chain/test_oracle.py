"""Oracle program in LiteSVM: every instruction's effect and its exact errors."""

from __future__ import annotations

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey

from simulators.chain.svm import PROGRAMS_DIR

from .conftest import NOW, Chain


def unsigned(ix: Instruction, index: int) -> Instruction:
    """The same instruction with account `index` no longer marked as signer."""
    metas = list(ix.accounts)
    m = metas[index]
    metas[index] = AccountMeta(m.pubkey, False, m.is_writable)
    return Instruction(ix.program_id, ix.data, metas)


def reading(chain: Chain, oracle_data: Pubkey, signer: Pubkey, meter_id: str = "MTR-1",
            produced: int = 1500, consumed: int = 200, ts: int = NOW - 60) -> Instruction:
    return chain.ix("oracle", "submit_meter_reading",
                    {"meter_id": meter_id, "energy_produced": produced, "energy_consumed": consumed,
                     "reading_timestamp": ts},
                    {"oracle_data": oracle_data, "authority": signer})


def test_initialize_writes_oracle_data(chain: Chain) -> None:
    gw = chain.funded()
    od = chain.init_oracle(gw.pubkey())
    assert len(chain.data(od)) == 105
    # rent-exempt funding computed in the program from the rent sysvar's f64 threshold bits
    assert chain.svm.get_account(od).lamports == chain.svm.minimum_balance_for_rent_exemption(105) == 1_621_680
    assert chain.decode("oracle", "OracleData", od) == {
        "authority": chain.authority.pubkey(), "api_gateway": gw.pubkey(), "total_readings": 0,
        "last_reading_timestamp": 0, "last_clearing": 0, "active": True, "created_at": NOW}
    # init of an existing PDA fails inside the System program (custom error 0: already in use)
    chain.fails(0, chain.ix("oracle", "initialize", {"api_gateway": gw.pubkey()},
                            {"authority": chain.authority.pubkey()}), chain.authority)


def test_initialize_errors(chain: Chain) -> None:
    gw = Pubkey.new_unique()
    a = chain.authority
    wrong = chain.ix("oracle", "initialize", {"api_gateway": gw},
                     {"authority": a.pubkey(), "oracle_data": Pubkey.new_unique()})
    chain.fails(2006, wrong, a)
    payer = chain.funded()
    chain.fails(3010, unsigned(chain.ix("oracle", "initialize", {"api_gateway": gw},
                                        {"authority": a.pubkey()}), 1), payer)
    fake_system = chain.ix("oracle", "initialize", {"api_gateway": gw},
                           {"authority": a.pubkey(), "system_program": Pubkey.new_unique()})
    chain.fails(3008, fake_system, a)
    short = chain.ix("oracle", "initialize", {"api_gateway": gw}, {"authority": a.pubkey()})
    chain.fails(102, Instruction(short.program_id, bytes(short.data)[:20], short.accounts), a)
    chain.fails(3005, Instruction(short.program_id, short.data, short.accounts[:2]), a)


def test_submit_meter_reading(chain: Chain) -> None:
    gw = chain.funded()
    od = chain.init_oracle(gw.pubkey())
    out = chain.ok(reading(chain, od, gw.pubkey(), "MTR-1", 1500, 200, NOW - 60), gw)
    state = chain.decode("oracle", "OracleData", od)
    assert state["total_readings"] == 1 and state["last_reading_timestamp"] == NOW - 60
    assert out.events["oracle"] == [("MeterReadingSubmitted", {
        "meter_id": "MTR-1", "energy_produced": 1500, "energy_consumed": 200,
        "timestamp": NOW - 60, "submitter": gw.pubkey()})]
    assert out.cu < 10_000
    chain.ok(reading(chain, od, gw.pubkey(), "MTR-2", 0, 2**64 - 1, -1), gw)
    state = chain.decode("oracle", "OracleData", od)
    assert state["total_readings"] == 2 and state["last_reading_timestamp"] == -1


def test_submit_errors(chain: Chain) -> None:
    gw = chain.funded()
    od = chain.init_oracle(gw.pubkey())
    other = chain.funded()
    out = chain.fails(6001, reading(chain, od, other.pubkey()), other)
    assert ("Program log: AnchorError occurred. Error Code: UnauthorizedGateway. Error Number: 6001. "
            "Error Message: Unauthorized API Gateway.") in out.logs
    out = chain.fails(3010, unsigned(reading(chain, od, gw.pubkey()), 1), other)
    assert ("Program log: AnchorError occurred. Error Code: AccountNotSigner. Error Number: 3010. "
            "Error Message: The given account did not sign.") in out.logs
    good = reading(chain, od, gw.pubkey())
    chain.fails(101, Instruction(good.program_id, b"\x01" * 8 + bytes(good.data)[8:], good.accounts), gw)
    chain.fails(100, Instruction(good.program_id, bytes(good.data)[:5], good.accounts), gw)
    chain.fails(102, Instruction(good.program_id, bytes(good.data)[:-1], good.accounts), gw)
    chain.fails(3005, Instruction(good.program_id, good.data, good.accounts[:1]), gw)
    readonly = [AccountMeta(od, False, False), good.accounts[1]]
    chain.fails(2000, Instruction(good.program_id, good.data, readonly), gw)
    # same bytes, wrong owner / wrong discriminator / missing account
    data = chain.data(od)
    fake = Pubkey.new_unique()
    chain.set_account(fake, data, Pubkey.new_unique())
    chain.fails(3007, reading(chain, fake, gw.pubkey()), gw)
    chain.set_account(fake, b"\x00" * 8 + data[8:], chain.idls["oracle"].program_id)
    chain.fails(3002, reading(chain, fake, gw.pubkey()), gw)
    chain.set_account(fake, data[:7], chain.idls["oracle"].program_id)
    chain.fails(3001, reading(chain, fake, gw.pubkey()), gw)
    chain.set_account(fake, data[:60], chain.idls["oracle"].program_id)
    chain.fails(3003, reading(chain, fake, gw.pubkey()), gw)
    chain.fails(3012, reading(chain, Pubkey.new_unique(), gw.pubkey()), gw)
    assert chain.decode("oracle", "OracleData", od)["total_readings"] == 0


def test_admin_instructions(chain: Chain) -> None:
    gw, gw2 = chain.funded(), chain.funded()
    od = chain.init_oracle(gw.pubkey())
    a = chain.authority
    out = chain.ok(chain.ix("oracle", "trigger_market_clearing", {}, {"oracle_data": od, "authority": gw.pubkey()}), gw)
    assert chain.decode("oracle", "OracleData", od)["last_clearing"] == NOW
    assert out.events["oracle"] == [("MarketClearingTriggered", {"authority": gw.pubkey(), "timestamp": NOW})]
    chain.fails(6001, chain.ix("oracle", "trigger_market_clearing", {}, {"oracle_data": od, "authority": a.pubkey()}), a)

    status = lambda who, active: chain.ix("oracle", "update_oracle_status", {"active": active},  # noqa: E731
                                         {"oracle_data": od, "authority": who})
    chain.fails(6000, status(gw.pubkey(), False), gw)
    out = chain.ok(status(a.pubkey(), False), a)
    assert out.events["oracle"] == [("OracleStatusUpdated", {"authority": a.pubkey(), "active": False, "timestamp": NOW})]
    assert chain.decode("oracle", "OracleData", od)["active"] is False
    chain.fails(6002, reading(chain, od, gw.pubkey()), gw)
    chain.fails(6002, chain.ix("oracle", "trigger_market_clearing", {}, {"oracle_data": od, "authority": gw.pubkey()}), gw)
    chain.ok(status(a.pubkey(), True), a)
    bad_bool = status(a.pubkey(), True)
    chain.fails(102, Instruction(bad_bool.program_id, bytes(bad_bool.data)[:8] + b"\x02", bad_bool.accounts), a)

    upd = lambda who: chain.ix("oracle", "update_api_gateway", {"new_api_gateway": gw2.pubkey()},  # noqa: E731
                               {"oracle_data": od, "authority": who})
    chain.fails(6000, upd(gw.pubkey()), gw)
    out = chain.ok(upd(a.pubkey()), a)
    assert out.events["oracle"] == [("ApiGatewayUpdated", {"authority": a.pubkey(), "old_gateway": gw.pubkey(),
                                                           "new_gateway": gw2.pubkey(), "timestamp": NOW})]
    chain.fails(6001, reading(chain, od, gw.pubkey()), gw)
    chain.ok(reading(chain, od, gw2.pubkey()), gw2)


def test_program_refuses_to_run_under_another_id(chain: Chain) -> None:
    other = Pubkey.new_unique()
    chain.svm.add_program(other, (PROGRAMS_DIR / "oracle.so").read_bytes())
    ix = chain.ix("oracle", "trigger_market_clearing", {}, {"oracle_data": Pubkey.new_unique(),
                                                             "authority": chain.authority.pubkey()})
    chain.fails(4100, Instruction(other, ix.data, ix.accounts), chain.authority)


def test_rent_follows_the_sysvar(chain: Chain) -> None:
    from solders.rent import Rent

    chain.svm.set_rent(Rent(lamports_per_byte_year=1000, exemption_threshold=1.5, burn_percent=50))
    od = chain.init_oracle(Pubkey.new_unique())
    assert chain.svm.get_account(od).lamports == (128 + 105) * 1000 * 3 // 2
