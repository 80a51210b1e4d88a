"""The `gridnode` command in a child process, as an operator runs it from a shell.

Awaited, never a blocking wait: the daemon or engine a test runs beside it is on the test's
event loop, and blocking that loop while it holds a write transaction would leave the command
waiting for the lock until its busy timeout ("database is locked").
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


async def gridnode(*args: str, timeout_s: float = 60.0) -> Ran:
    """Run `python -m gridnode ARGS` from the checkout; its status and output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gridnode", *args, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
