"""Schemathesis fuzzes the API from its own OpenAPI document, on the real daemon: no 5xx, and
every answer (status, content type, body, headers) is one the document allows.

Schemathesis' "schema-valid request rejected" check is left out on purpose: the document cannot
state every rule the tx-type models check (which payload goes with which tx_type, a meter id's
limit in UTF-8 bytes), so such requests are rightly refused with a 422 problem.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest

from tests.api.harness import ApiNode

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance")


def _cli() -> str | None:
    found = Path(sys.executable).with_name("schemathesis")
    return str(found) if found.exists() else shutil.which("schemathesis")


async def test_fuzzing_from_the_openapi_document_finds_no_server_error(tmp_path: Path) -> None:
    cli = _cli()
    if cli is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    async with ApiNode(tmp_path, api={"rate_per_s": 10000, "rate_burst": 100000}) as node:
        proc = await asyncio.create_subprocess_exec(
            cli, "run", f"{node.url}/api/v1/openapi.json",
            "-H", f"Authorization: Bearer {node.token('operator')}",
            "--checks", CHECKS, "--max-examples", "25", "--generation-deterministic",
            "--phases", "examples,coverage,fuzzing", "--no-color",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 240)
        text = out.decode(errors="replace")
        assert proc.returncode == 0, text[-6000:]
        assert "Tested: 28" in text, text[-3000:]     # every route but the document itself
        assert await node.count("operations") == 0      # no chain here: nothing is ever stored
