"""`make demo` (python -m simulators.demo) prints the dashboard's URL and a token that opens it:
the page answers, and the token reads the demo's meters from the API."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.simulators.test_demo import REPO, alive, children, read_until


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token
                                 else {})
    with urllib.request.urlopen(req, timeout=10) as resp:      # noqa: S310 - loopback
        return resp.status, resp.read()


def test_the_demo_prints_the_dashboard_url_and_a_token_for_it(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "simulators.demo", "--run-dir",
                             str(tmp_path / "demo")], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    assert proc.stdout is not None
    started: list[int] = []
    try:
        pattern = re.compile(rb"dashboard: (http://127\.0\.0\.1:\d+/) .*\n    (\S+)\n")
        shown = read_until(proc.stdout.fileno(), b"dashboard: ", 120)
        while (found := pattern.search(shown)) is None:
            shown += read_until(proc.stdout.fileno(), b"\n", 10)
        started = children(proc.pid)
        url, token = found.group(1).decode(), found.group(2).decode()
        status, page = get(url)
        assert status == 200 and b"/static/dashboard.js" in page
        wanted = {"demo-house", "demo-pv", "demo-flat-1", "demo-flat-2"}
        deadline = time.monotonic() + 30       # the meters subsystem registers them at start
        while True:
            status, body = get(url + "api/v1/meters", token)
            assert status == 200
            listed = {m["meter_id"] for m in json.loads(body)["meters"]}
            if listed == wanted or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert listed == wanted
        secret = tmp_path / "demo" / "api-jwt.secret"
        assert secret.stat().st_mode & 0o777 == 0o600
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        for p in [proc.pid, *(started or children(proc.pid))]:
            if alive(p):
                os.kill(p, signal.SIGKILL)
        proc.wait()
