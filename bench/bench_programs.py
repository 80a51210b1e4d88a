"""Compute units per reference-program instruction and LiteSVM throughput of submit_meter_reading.

    .venv/bin/python bench/bench_programs.py [--n 5000]

Runs every instruction of the five programs once from a fully set-up chain
(simulators.chain.harness.Scenario) and prints the compute units each consumed, then sends N
distinct submit_meter_reading transactions and prints transactions per second, both for pre-signed
transactions (execution only) and including building and signing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from solders.message import MessageV0  # noqa: E402
from solders.pubkey import Pubkey  # noqa: E402
from solders.transaction import VersionedTransaction  # noqa: E402

from simulators.chain.harness import NOW, Chain, Scenario  # noqa: E402

READING_CU_BUDGET = 10_000
NOW_KEY = Pubkey.new_unique()


_INITS = {"oracle.initialize": ("oracle", {"api_gateway": NOW_KEY}),
          "registry.initialize": ("registry", {}),
          "energy_token.initialize_token": ("energy_token", {}),
          "governance.initialize_poa": ("governance", {}),
          "trading.initialize_market": ("trading", {})}


def compute_units(scenario: Scenario) -> list[tuple[str, int, str]]:
    """CU of every instruction; the one-time initializations are measured on a fresh chain."""
    fresh = Chain()
    a = fresh.authority
    rows = []
    for label, ix in scenario.ixs.items():
        if label in _INITS:
            program, args = _INITS[label]
            name = label.split(".")[1]
            out = fresh.ok(fresh.ix(program, name, args, {"authority": a.pubkey()}), a)
            rows.append((label, out.cu, "ok"))
            continue
        if label == "energy_token.mint_grid_tokens":
            scenario.send(scenario.ixs["registry.update_meter_reading"])
        res = scenario.send(ix)
        failed = hasattr(res, "err")
        meta = res.meta() if failed else res
        rows.append((label, meta.compute_units_consumed(), f"error {res.err().err}" if failed else "ok"))
    return rows


def throughput(chain: Chain, scenario: Scenario, n: int) -> tuple[float, float]:
    gw = scenario.gw
    od = chain.idls["oracle"].pda("oracle_data")
    svm = chain.svm
    blockhash = svm.latest_blockhash()

    def tx(i: int) -> VersionedTransaction:
        ix = chain.ix("oracle", "submit_meter_reading",
                      {"meter_id": f"MTR-{i % 100:03d}", "energy_produced": 1000 + i,
                       "energy_consumed": 250, "reading_timestamp": NOW + i},
                      {"oracle_data": od, "authority": gw.pubkey()})
        return VersionedTransaction(MessageV0.try_compile(gw.pubkey(), [ix], [], blockhash), [gw])

    signed = [tx(i) for i in range(n)]
    t0 = time.perf_counter()
    for t in signed:
        res = svm.send_transaction(t)
        if hasattr(res, "err"):
            raise SystemExit(f"submit_meter_reading failed: {res}")
    exec_rate = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(n, 2 * n):
        res = svm.send_transaction(tx(i))
        if hasattr(res, "err"):
            raise SystemExit(f"submit_meter_reading failed: {res}")
    full_rate = n / (time.perf_counter() - t0)
    return exec_rate, full_rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000, help="transactions per throughput run")
    args = ap.parse_args()
    chain = Chain()
    scenario = Scenario(chain)
    rows = compute_units(scenario)
    width = max(len(r[0]) for r in rows)
    print(f"{'instruction':<{width}}  {'CU':>7}  result")
    for label, cu, result in rows:
        print(f"{label:<{width}}  {cu:>7}  {result}")
    reading = next(cu for label, cu, _ in rows if label == "oracle.submit_meter_reading")
    print(f"submit_meter_reading: {reading} CU (budget {READING_CU_BUDGET}: "
          f"{'within' if reading < READING_CU_BUDGET else 'OVER'})")
    exec_rate, full_rate = throughput(chain, scenario, args.n)
    print(f"LiteSVM submit_meter_reading: {exec_rate:,.0f} tx/s pre-signed, "
          f"{full_rate:,.0f} tx/s including build + sign (n={args.n})")
    return 0 if reading < READING_CU_BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
