"""A second, independent client: @solana/web3.js's Connection against the localnet (node + npm)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest
from solana.rpc.async_api import AsyncClient
from solders.signature import Signature

from simulators.chain.localnet import Localnet
from tests.net import pick_free_port

JS_DIR = Path(__file__).resolve().parents[3] / "simulators" / "chain" / "localnet" / "js"


async def _run(*cmd: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*cmd, cwd=JS_DIR, env=env,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(240):
        out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_web3js_sends_confirms_and_reads(tmp_path):
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed (.ci/run installs them)")
    if not (JS_DIR / "node_modules" / "@solana" / "web3.js").exists():
        code, _, err = await _run("npm", "ci", "--no-audit", "--no-fund")
        if code != 0:
            pytest.skip(f"npm ci failed (no registry access?): {err.strip()[-300:]}")
    async with Localnet(port=pick_free_port(), slot_ms=40, state_dir=tmp_path) as net:
        env = {**os.environ, "RPC_URL": net.rpc_url, "WS_URL": net.ws_url,
               "PAYER": net.bootstrap["keypairs"]["users"][0]}
        code, out, err = await _run("node", "check.mjs", env=env)
        assert code == 0, err
        result = json.loads(out.strip().splitlines()[-1])
        assert result["err"] is None and result["lamports"] == 250_000_000
        assert result["owner"] == "11111111111111111111111111111111"
        client = AsyncClient(net.rpc_url)
        status = (await client.get_signature_statuses(
            [Signature.from_string(result["signature"])])).value[0]
        await client.close()
        assert status is not None and status.slot <= result["slot"]
        assert status.confirmation_status is not None
