"""Energy Token program in LiteSVM with the SPL Token / ATA programs LiteSVM ships."""

from __future__ import annotations

from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from simulators.chain.svm import PROGRAMS_DIR

from .conftest import IX_SYSVAR, NOW, RENT_SYSVAR, TOKEN_2022_PROGRAM, TOKEN_PROGRAM, Chain
from .test_oracle import unsigned


def mint_info(data: bytes) -> dict:
    """SPL Token Mint layout, decoded independently of the programs."""
    has_auth = int.from_bytes(data[0:4], "little")
    return {"authority": Pubkey.from_bytes(data[4:36]) if has_auth else None,
            "supply": int.from_bytes(data[36:44], "little"), "decimals": data[44],
            "initialized": data[45] == 1, "freeze": int.from_bytes(data[46:50], "little")}


def test_initialize_and_initialize_token(chain: Chain) -> None:
    a = chain.authority
    chain.ok(chain.ix("energy_token", "initialize", {}, {"authority": a.pubkey()}), a)
    chain.fails(3010, unsigned(chain.ix("energy_token", "initialize", {}, {"authority": a.pubkey()}), 0),
                chain.funded())
    info, mint = chain.init_token()
    assert chain.decode("energy_token", "TokenInfo", info) == {
        "authority": a.pubkey(), "mint": mint, "total_supply": 0, "created_at": NOW}
    acc = chain.svm.get_account(mint)
    assert acc.owner == TOKEN_PROGRAM
    assert mint_info(bytes(acc.data)) == {"authority": info, "supply": 0, "decimals": 9,
                                          "initialized": True, "freeze": 0}
    chain.fails(0, chain.ix("energy_token", "initialize_token", {}, {"authority": a.pubkey()}), a)


def test_initialize_token_errors(chain: Chain) -> None:
    a = chain.authority
    ix = lambda **o: chain.ix("energy_token", "initialize_token", {}, {"authority": a.pubkey(), **o})  # noqa: E731
    chain.fails(3008, ix(token_program=TOKEN_2022_PROGRAM), a)
    chain.fails(3015, ix(rent=IX_SYSVAR), a)
    chain.fails(2006, ix(mint=Pubkey.new_unique()), a)
    chain.fails(2006, ix(token_info=Pubkey.new_unique()), a)


def test_create_token_mint_and_mint_to_wallet(chain: Chain) -> None:
    a = chain.authority
    for token_program in (TOKEN_PROGRAM, TOKEN_2022_PROGRAM):
        mint = chain.create_mint(a, token_program)
        acc = chain.svm.get_account(mint.pubkey())
        assert acc.owner == token_program
        assert mint_info(bytes(acc.data))["decimals"] == 9
        assert mint_info(bytes(acc.data))["authority"] == a.pubkey()

        wallet = Pubkey.new_unique()
        ata = chain.ata(wallet, mint.pubkey(), token_program)
        mint_ix = chain.ix("energy_token", "mint_to_wallet", {"amount": 7 * 10**9},
                           {"mint": mint.pubkey(), "destination_owner": wallet, "authority": a.pubkey(),
                            "payer": a.pubkey(), "token_program": token_program})
        assert mint_ix.accounts[1].pubkey == ata
        out = chain.ok(mint_ix, a)  # creates the ATA
        assert chain.svm.get_account(ata).owner == token_program
        assert chain.token_balance(ata) == 7 * 10**9
        assert Pubkey.from_bytes(chain.data(ata)[32:64]) == wallet
        assert out.events["energy_token"] == [("TokensMinted", {"recipient": ata, "amount": 7 * 10**9,
                                                                "timestamp": NOW})]
        chain.ok(chain.ix("energy_token", "mint_to_wallet", {"amount": 1},
                          {"mint": mint.pubkey(), "destination_owner": wallet, "authority": a.pubkey(),
                           "payer": a.pubkey(), "token_program": token_program}), a)  # ATA exists
        assert chain.token_balance(ata) == 7 * 10**9 + 1


def test_mint_to_wallet_errors(chain: Chain) -> None:
    a = chain.authority
    mint = chain.create_mint(a)
    wallet = Pubkey.new_unique()

    def ix(**over):
        return chain.ix("energy_token", "mint_to_wallet", {"amount": 5},
                        {"mint": mint.pubkey(), "destination_owner": wallet, "authority": a.pubkey(),
                         "payer": a.pubkey(), "token_program": TOKEN_PROGRAM, **over})

    chain.fails(2009, ix(destination=Pubkey.new_unique()), a)
    chain.fails(3008, ix(token_program=Pubkey.new_unique()), a)
    chain.fails(3008, ix(associated_token_program=TOKEN_PROGRAM), a)
    chain.fails(3012, ix(mint=Pubkey.new_unique()), a)
    chain.fails(3007, ix(mint=chain.idls["energy_token"].program_id), a)
    other = chain.funded()
    # SPL Token refuses a mint authority other than the mint's (custom error 4: OwnerMismatch)
    chain.fails(4, ix(authority=other.pubkey()), a, other)
    # an existing token account for another owner at the ATA address is refused
    chain.ok(ix(), a)
    ata = chain.ata(wallet, mint.pubkey())
    data = bytearray(chain.data(ata))
    data[32:64] = bytes(Pubkey.new_unique())
    chain.set_account(ata, bytes(data), TOKEN_PROGRAM)
    chain.fails(2015, ix(), a)


def test_create_token_mint_errors(chain: Chain) -> None:
    a = chain.authority

    def ix(**over):
        mint = Keypair()
        accounts = {"mint": mint.pubkey(), "metadata": Pubkey.new_unique(), "payer": a.pubkey(),
                    "authority": a.pubkey(), "token_program": TOKEN_PROGRAM,
                    "metadata_program": Pubkey.new_unique(), **over}
        return chain.ix("energy_token", "create_token_mint", {"name": "n", "symbol": "s", "uri": "u"},
                        accounts), mint

    i, m = ix(sysvar_instructions=RENT_SYSVAR)
    chain.fails(2012, i, a, m)
    i, m = ix(rent=IX_SYSVAR)
    chain.fails(3015, i, a, m)
    i, m = ix(token_program=Pubkey.new_unique())
    chain.fails(3008, i, a, m)
    i, m = ix()
    chain.fails(3010, unsigned(i, 0), a)


def test_mint_direct_transfer_burn(chain: Chain) -> None:
    a = chain.authority
    info, mint = chain.init_token()
    alice, bob = chain.funded(), chain.funded()
    alice_ata = chain.create_ata(alice.pubkey(), mint, alice)
    bob_ata = chain.create_ata(bob.pubkey(), mint, bob)

    def direct(who, amount, **over):
        return chain.ix("energy_token", "mint_tokens_direct", {"amount": amount},
                        {"mint": mint, "user_token_account": alice_ata, "authority": who, **over})

    out = chain.ok(direct(a.pubkey(), 1000), a)
    assert chain.token_balance(alice_ata) == 1000
    assert chain.decode("energy_token", "TokenInfo", info)["total_supply"] == 1000
    assert mint_info(chain.data(mint))["supply"] == 1000
    assert out.events["energy_token"] == [("TokensMintedDirect", {"recipient": alice_ata, "amount": 1000,
                                                                  "timestamp": NOW})]
    chain.fails(6000, direct(alice.pubkey(), 1), alice)
    other_mint = chain.create_mint(a).pubkey()
    chain.fails(2012, direct(a.pubkey(), 1, mint=other_mint), a)
    copy = Pubkey.new_unique()
    chain.set_account(copy, chain.data(info), chain.idls["energy_token"].program_id)
    chain.fails(2006, direct(a.pubkey(), 1, token_info=copy), a)
    chain.fails(14, direct(a.pubkey(), 2**64 - 1000), a)  # SPL Token: supply overflow
    chain.fails(3008, direct(a.pubkey(), 1, token_program=TOKEN_2022_PROGRAM), a)

    chain.ok(chain.ix("energy_token", "transfer_tokens", {"amount": 300},
                      {"from_token_account": alice_ata, "to_token_account": bob_ata,
                       "from_authority": alice.pubkey()}), alice)
    assert (chain.token_balance(alice_ata), chain.token_balance(bob_ata)) == (700, 300)
    chain.fails(4, chain.ix("energy_token", "transfer_tokens", {"amount": 1},
                            {"from_token_account": alice_ata, "to_token_account": bob_ata,
                             "from_authority": bob.pubkey()}), bob)  # SPL OwnerMismatch
    chain.fails(3007, chain.ix("energy_token", "transfer_tokens", {"amount": 1},
                               {"from_token_account": info, "to_token_account": bob_ata,
                                "from_authority": alice.pubkey()}), alice)

    chain.ok(chain.ix("energy_token", "burn_tokens", {"amount": 200},
                      {"token_info": info, "mint": mint, "token_account": bob_ata,
                       "authority": bob.pubkey()}), bob)
    assert chain.token_balance(bob_ata) == 100
    assert chain.decode("energy_token", "TokenInfo", info)["total_supply"] == 800
    chain.fails(1, chain.ix("energy_token", "burn_tokens", {"amount": 101},
                            {"token_info": info, "mint": mint, "token_account": bob_ata,
                             "authority": bob.pubkey()}), bob)  # SPL InsufficientFunds


def test_add_rec_validator(chain: Chain) -> None:
    a = chain.authority
    info, _ = chain.init_token()
    ix = lambda who: chain.ix("energy_token", "add_rec_validator",  # noqa: E731
                              {"validator_pubkey": Pubkey.new_unique(), "_authority_name": "REC body"},
                              {"token_info": info, "authority": who})
    out = chain.ok(ix(a.pubkey()), a)
    assert any("REC validator added" in line for line in out.logs)
    other = chain.funded()
    chain.fails(6000, ix(other.pubkey()), other)


def test_mint_grid_tokens_settles_in_the_registry(chain: Chain) -> None:
    info, mint = chain.init_token()
    chain.init_registry()
    user, other = chain.funded(), chain.funded()
    chain.register_user(user)
    meter = chain.register_meter(user, "PV-7")
    chain.ok(chain.ix("registry", "update_meter_reading",
                      {"energy_generated": 9000, "energy_consumed": 2500, "reading_timestamp": NOW},
                      {"meter_account": meter, "oracle_authority": user.pubkey()}), user)
    ata = chain.create_ata(user.pubkey(), mint, user)

    def grid(signer, **over):
        return chain.ix("energy_token", "mint_grid_tokens", {},
                        {"mint": mint, "meter_account": meter, "user_token_account": ata,
                         "meter_owner": signer, "registry_program": chain.idls["registry"].program_id,
                         **over})

    chain.fails(6001, grid(other.pubkey()), other)
    out = chain.ok(grid(user.pubkey()), user)
    # 6,500 Wh net at 10^6 base units per Wh (1 GRID = 1 kWh, 9 decimals)
    assert chain.token_balance(ata) == 6_500_000_000
    assert chain.decode("energy_token", "TokenInfo", info)["total_supply"] == 6_500_000_000
    assert chain.decode("registry", "MeterAccount", meter)["settled_net_generation"] == 6500
    assert out.events["energy_token"] == [("GridTokensMinted", {"meter_owner": user.pubkey(),
                                                                "amount": 6_500_000_000, "timestamp": NOW})]
    assert [n for n, _ in out.events["registry"]] == ["MeterBalanceSettled"]
    chain.fails(6006, grid(user.pubkey()), user)  # the registry's NoUnsettledBalance, via CPI

    # a fake registry program (the oracle's code at a fresh ID) is refused
    fake = Pubkey.new_unique()
    chain.svm.add_program(fake, (PROGRAMS_DIR / "oracle.so").read_bytes())
    chain.fails(3008, grid(user.pubkey(), registry_program=fake), user)
    # a crafted meter account owned by someone else is refused
    crafted = Pubkey.new_unique()
    chain.set_account(crafted, chain.data(meter), fake)
    chain.fails(3007, grid(user.pubkey(), meter_account=crafted), user)
    # the mint must be the TokenInfo mint
    chain.fails(2012, grid(user.pubkey(), mint=chain.create_mint(chain.authority).pubkey()), user)


def test_token_program_slot_rejects_impostors(chain: Chain) -> None:
    a = chain.authority
    info, mint = chain.init_token()
    ata = chain.create_ata(a.pubkey(), mint, a)
    fake = Pubkey.new_unique()
    chain.svm.add_program(fake, (PROGRAMS_DIR / "oracle.so").read_bytes())
    ix = chain.ix("energy_token", "mint_tokens_direct", {"amount": 1},
                  {"mint": mint, "user_token_account": ata, "authority": a.pubkey()})
    metas = list(ix.accounts)
    metas[4] = AccountMeta(fake, False, False)
    chain.fails(3008, Instruction(ix.program_id, ix.data, metas), a)
