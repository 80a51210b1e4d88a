"""Hostile input against every instruction: each case must end in a clean error, never a crash.

A clean outcome is success or a program error (an Anchor/SPL/System error code, or a fieldless
error raised deliberately by a program). A crash is a memory access violation, an exhausted compute
budget, or an abort that is not the programs' own overflow check.
"""

from __future__ import annotations

import random
import struct

import pytest
from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey
from solders.transaction_status import InstructionErrorCustom

from simulators.chain.harness import Scenario

from .conftest import NOW, Chain

_CRASHES = ("ProgramFailedToComplete", "ComputationalBudgetExceeded", "ProgramFailedToCompile",
            "UnsupportedProgramId")
_OWN_ABORT = "Panicked in arithmetic overflow"


def assert_clean(scenario: Scenario, label: str, ix: Instruction) -> int | str | None:
    """The outcome (None, an error code or name) after checking that it is not a crash."""
    res = scenario.send(ix)
    if not hasattr(res, "err"):
        return None
    err = res.err().err
    logs = "\n".join(res.meta().logs())
    assert "Access violation" not in logs, (label, logs)
    if isinstance(err, InstructionErrorCustom):
        return err.code
    name = str(err).rsplit(".", 1)[-1]
    assert name not in _CRASHES or _OWN_ABORT in logs, (label, name, logs)
    return name


@pytest.fixture
def scenario(chain: Chain) -> Scenario:
    return Scenario(chain)


def test_every_valid_instruction_succeeds_once(scenario: Scenario) -> None:
    """The scenario's baseline: each instruction is valid as built (re-inits excepted)."""
    reinit = {"oracle.initialize", "registry.initialize", "energy_token.initialize_token",
              "governance.initialize_poa", "trading.initialize_market"}
    for label, ix in scenario.ixs.items():
        if label == "energy_token.mint_grid_tokens":  # settle_meter_balance ran: new generation
            assert_clean(scenario, "reading", scenario.ixs["registry.update_meter_reading"])
        code = assert_clean(scenario, label, ix)
        assert code == (0 if label in reinit else None), (label, code)


def test_truncated_data_at_every_length(scenario: Scenario) -> None:
    for label, ix in scenario.ixs.items():
        data = bytes(ix.data)
        for n in range(len(data)):
            code = assert_clean(scenario, label, Instruction(ix.program_id, data[:n], ix.accounts))
            expected = 100 if n < 8 else None
            if expected is not None:
                assert code == expected, (label, n, code)
            elif scenario.chain.idls[label.split(".")[0]]._ix[label.split(".")[1]]["args"]:
                assert code == 102, (label, n, code)


def test_random_data_fuzz(scenario: Scenario) -> None:
    rng = random.Random(20261124)
    cases = 0
    for label, ix in scenario.ixs.items():
        valid = bytes(ix.data)
        for i in range(90):
            if i % 3 == 0:  # random bytes behind the real discriminator
                data = valid[:8] + rng.randbytes(rng.randrange(0, 120))
            elif i % 3 == 1:  # the valid data with a few bytes changed
                d = bytearray(valid + rng.randbytes(rng.randrange(0, 4)))
                for _ in range(rng.randrange(1, 4)):
                    d[rng.randrange(8, len(d)) if len(d) > 8 else 0] = rng.randrange(256)
                data = bytes(d)
            else:  # entirely random, mostly unknown discriminators
                data = rng.randbytes(rng.randrange(0, 64))
            assert_clean(scenario, label, Instruction(ix.program_id, data, ix.accounts))
            cases += 1
    assert cases >= 2000


def test_oversized_and_malformed_strings(scenario: Scenario) -> None:
    c = scenario.chain
    sub = scenario.ixs["oracle.submit_meter_reading"]
    disc = bytes(sub.data)[:8]
    tail = struct.pack("<QQq", 1, 2, NOW)

    def submit(body: bytes):
        return assert_clean(scenario, "submit", Instruction(sub.program_id, disc + body, sub.accounts))

    assert submit(struct.pack("<I", 900) + b"m" * 900 + tail) is None  # long, but a valid String
    assert submit(struct.pack("<I", 0xFFFFFFFF) + b"m" * 10 + tail) == 102
    assert submit(struct.pack("<I", 901) + b"m" * 900 + tail) == 102
    assert submit(struct.pack("<I", 2) + b"\xc3\x28" + tail) == 102  # invalid UTF-8
    assert submit(struct.pack("<I", 3) + b"\xed\xa0\x80" + tail) == 102  # surrogate
    assert submit(struct.pack("<I", 2) + "é".encode() + tail) is None
    reg = c.idls["registry"]
    user = c.ix("registry", "register_user", {"user_type": "Prosumer", "location": "L" * 700},
                {"registry": reg.pda("registry"), "user_authority": scenario.gw.pubkey()})
    scenario.pool[scenario.gw.pubkey()] = scenario.gw
    assert assert_clean(scenario, "register_user", user) == 3004


def test_duplicate_and_swapped_accounts(scenario: Scenario) -> None:
    cases = 0
    for label, ix in scenario.ixs.items():
        metas = list(ix.accounts)
        for i in range(len(metas)):
            for j in range(len(metas)):
                if i == j:
                    continue
                dup = list(metas)
                dup[j] = AccountMeta(metas[i].pubkey, metas[j].is_signer, metas[j].is_writable)
                assert_clean(scenario, f"{label} dup {i}->{j}", Instruction(ix.program_id, ix.data, dup))
                if i < j:
                    sw = list(metas)
                    sw[i] = AccountMeta(metas[j].pubkey, metas[i].is_signer, metas[i].is_writable)
                    sw[j] = AccountMeta(metas[i].pubkey, metas[j].is_signer, metas[j].is_writable)
                    assert_clean(scenario, f"{label} swap {i}<->{j}", Instruction(ix.program_id, ix.data, sw))
                cases += 1
    assert cases > 300


def test_fake_program_in_every_program_slot(scenario: Scenario) -> None:
    c = scenario.chain
    checked = 0
    for label, ix in scenario.ixs.items():
        program, name = label.split(".")
        items = c.idls[program]._ix[name]["accounts"]
        for k, item in enumerate(items):
            if not item["name"].endswith("_program"):
                continue
            metas = list(ix.accounts)
            metas[k] = AccountMeta(scenario.fake_program, False, False)
            code = assert_clean(scenario, f"{label} {item['name']}", Instruction(ix.program_id, ix.data, metas))
            if item["name"] != "metadata_program":  # unchecked in the public program too
                assert code == 3008, (label, item["name"], code)
            checked += 1
    assert checked >= 10


def test_a_crash_is_not_taken_for_a_clean_error(scenario: Scenario, tmp_path) -> None:
    """The classifier above must catch a real out-of-bounds read (so the fuzz can fail)."""
    from simulators.chain import build
    from simulators.chain.linker import link

    from .test_toolchain import compile_c

    if not build.toolchain_available():
        pytest.skip("clang-14/llc-14 not installed (.ci/run installs them)")
    src = ("typedef unsigned long u64; u64 entrypoint(const unsigned char *input) {"
           " return input[1u << 20]; }")
    pid = Pubkey.new_unique()
    scenario.chain.svm.add_program(pid, link([("t.o", compile_c(src, tmp_path))]))
    with pytest.raises(AssertionError, match="Access violation"):
        assert_clean(scenario, "crash", Instruction(pid, b"", []))
