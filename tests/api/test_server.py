"""The API server inside the real daemon: it listens before READY and stops within the budget;
every refusal (tokens, roles, bodies, rates, routes) is a problem document and stores nothing;
an unexpected error is a 500 whose id is in the log; the OpenAPI document lists every route."""

from __future__ import annotations

import json
import logging
import sqlite3
import stat
import time
from pathlib import Path

import aiohttp
import jwt
import pytest
from solders.keypair import Keypair

from gridnode.api.auth import COOKIE
from gridnode.api.routes import ROUTES
from gridnode.daemon import SHUTDOWN_GRACE_S
from gridnode.keys import generate_keypair_file
from tests.api.harness import SECRET, ApiNode, problem, websocket
from tests.net import pick_free_port
from tests.test_cli import run_cli

WALLET = str(Keypair().pubkey())


async def test_the_api_listens_before_ready_and_stops_within_the_budget(tmp_path: Path) -> None:
    async with ApiNode(tmp_path) as node:
        assert node.notifier.listening_at_ready is True
        health = await node.call("GET", "/health")
        assert health.status == 200
        assert health.json["status"] == "ok" and health.json["node_id"] == node.config.node.id
        ready = await node.call("GET", "/ready")
        assert ready.status == 200 and ready.json == {
            "status": "ready", "checks": {"store": "ok", "alerts": "ok", "diskguard": "ok",
                                          "webhooks": "ok"}, "alerts": []}
        async with websocket(node, "since=0", node.token("monitor")) as ws:
            status, took = await node.stop()
            msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert status == 0 and took < SHUTDOWN_GRACE_S, took


async def test_ready_is_503_with_the_reason_while_no_rpc_endpoint_answers(tmp_path: Path) -> None:
    key = tmp_path / "gateway.json"
    generate_keypair_file(key)
    dead = f"http://127.0.0.1:{pick_free_port()}"
    async with ApiNode(tmp_path, {
            "keys": {"gateway_keypair": str(key)},
            "chain": {"rpc_urls": [dead], "request_timeout_s": 0.5,
                      "rpc": {"health_interval_s": 0.2}}}) as node:
        deadline = time.monotonic() + 10
        while True:
            answer = await node.call("GET", "/ready")
            if answer.status == 503 or time.monotonic() > deadline:
                break
        doc = problem(answer, 503)
        assert any(r.startswith("no RPC endpoint is healthy: ") and dead in r
                   and "Connect call failed" in r for r in doc["reasons"]), doc
        assert answer.headers["Retry-After"] == "5"
        chain = (await node.call("GET", "/api/v1/chain", token=node.token("monitor"))).json
        assert chain["configured"] and [e["url"].rstrip("/") for e in chain["endpoints"]] == [dead]
        assert chain["endpoints"][0]["healthy"] is False and chain["endpoints"][0]["last_error"]


async def test_tokens_and_roles(tmp_path: Path) -> None:
    async with ApiNode(tmp_path) as node:
        path = "/api/v1/transactions/stats"
        missing = problem(await node.call("GET", path), 401)
        assert "no token" in missing["detail"]
        assert (await node.call("GET", path)).headers["WWW-Authenticate"].startswith("Bearer")
        forged = jwt.encode({"sub": "x", "role": "operator", "exp": time.time() + 60},
                            b"another-secret-that-is-long-enough!!", algorithm="HS256")
        assert "signature" in problem(await node.call("GET", path, token=forged), 401)["detail"]
        old = node.token("operator", ttl_s=60, now=time.time() - 3600)
        assert problem(await node.call("GET", path, token=old), 401)["detail"] == \
            "the token has expired"
        root = jwt.encode({"sub": "x", "role": "root", "exp": time.time() + 60}, SECRET,
                          algorithm="HS256")
        assert "role must be one of" in problem(await node.call("GET", path, token=root),
                                                401)["detail"]
        no_exp = jwt.encode({"sub": "x", "role": "operator"}, SECRET, algorithm="HS256")
        assert "'exp'" in problem(await node.call("GET", path, token=no_exp), 401)["detail"]
        basic = await node.call("GET", path, headers={"Authorization": "Basic eDp5"})
        problem(basic, 401)
        # a monitor reads, and may not change anything
        monitor = node.token("monitor", "grafana")
        assert (await node.call("GET", path, token=monitor)).status == 200
        refused = problem(await node.call("POST", "/api/v1/transactions/create", token=monitor,
                                          body={"tx_type": "market_clearing",
                                                "payload": {"epoch": 1}}), 403)
        assert "monitor role may not create a transaction" in refused["detail"]
        # the dashboard's cookie works, but not for a write from another site
        cookie = {"Cookie": f"{COOKIE}={node.token('operator')}"}
        assert (await node.call("GET", path, headers=cookie)).status == 200
        cross = await node.call("POST", "/api/v1/transactions/create",
                                headers={**cookie, "Origin": "http://evil.example"},
                                body={"tx_type": "market_clearing", "payload": {"epoch": 1}})
        assert problem(cross, 403)["type"].endswith(":cross-origin")
        assert await node.count("operations") == 0


async def test_bad_bodies_and_routes_are_problems_and_store_nothing(tmp_path: Path) -> None:
    async with ApiNode(tmp_path, api={"max_body_bytes": 2048}) as node:
        op = node.token("operator")
        create = "/api/v1/transactions/create"
        big = {"tx_type": "market_clearing", "payload": {"epoch": 1, "pad": "x" * 4000}}
        assert "2048 bytes" in problem(await node.call("POST", create, token=op, body=big),
                                       413)["detail"]

        async def chunks():     # no Content-Length: the cap holds while reading
            for _ in range(10):
                yield b"x" * 1000
        chunked = await node.call("POST", create, token=op, data=chunks(),
                                  headers={"Content-Type": "application/json"})
        problem(chunked, 413)
        plain = await node.call("POST", create, token=op, data="{}",
                                headers={"Content-Type": "text/plain"})
        problem(plain, 415)
        broken = await node.call("POST", create, token=op, data='{"tx_type": ',
                                 headers={"Content-Type": "application/json"})
        assert "line 1 column" in problem(broken, 400)["detail"]
        nan = await node.call("POST", create, token=op,
                              data='{"tx_type": "market_clearing", "payload": {"epoch": NaN}}',
                              headers={"Content-Type": "application/json"})
        problem(nan, 400)
        wrong = problem(await node.call("POST", create, token=op,
                                        body={"tx_type": 7, "payload": [], "colour": 1}), 422)
        assert {(e["pointer"], e["allowed"]) for e in wrong["errors"]} == {
            ("/tx_type", "a string"), ("/payload", "a JSON object"),
            ("/colour", "nothing: the field is not known here")}
        query = problem(await node.call("GET", "/api/v1/transactions/user?limit=0&x=1",
                                        token=op), 422)
        assert {e["pointer"] for e in query["errors"]} == {"/query/limit", "/query/x"}
        assert [e["allowed"] for e in query["errors"] if e["pointer"] == "/query/limit"] == \
            ["at least 1"]
        problem(await node.call("GET", "/api/v1/nothing", token=op), 404)
        problem(await node.call("DELETE", "/api/v1/meters", token=op), 405)
        problem(await node.call("GET", "/api/v1/transactions/99999999999999999999", token=op),
                404)
        problem(await node.call("GET", "/api/v1/ws", token=op), 426)
        assert await node.count("operations") == 0
        assert await node.count("api_idempotency") == 0


async def test_each_subject_has_its_own_rate_limit(tmp_path: Path) -> None:
    async with ApiNode(tmp_path, api={"rate_per_s": 0.5, "rate_burst": 3}) as node:
        alice, bob = node.token("monitor", "alice"), node.token("monitor", "bob")
        path = "/api/v1/transactions/stats"
        assert [(await node.call("GET", path, token=alice)).status for _ in range(3)] == \
            [200, 200, 200]
        limited = await node.call("GET", path, token=alice)
        problem(limited, 429)
        assert int(limited.headers["Retry-After"]) >= 1
        assert (await node.call("GET", path, token=bob)).status == 200


async def test_an_unexpected_error_is_a_500_whose_id_is_in_the_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with ApiNode(tmp_path) as node:
        # a damaged database: the table of idempotency answers is gone
        with sqlite3.connect(node.config.node.database) as conn:
            conn.execute("DROP TABLE api_idempotency")
        with caplog.at_level(logging.ERROR, logger="gridnode.api.server"):
            answer = await node.call("POST", "/api/v1/transactions/create",
                                     token=node.token("operator"),
                                     headers={"Idempotency-Key": "k1"},
                                     body={"tx_type": "market_clearing", "payload": {"epoch": 1}})
        doc = problem(answer, 500)
        assert "api_idempotency" not in answer.text
        logged = [r for r in caplog.records if r.getMessage() == "api request failed"]
        assert len(logged) == 1 and logged[0].exc_info is not None
        assert logged[0].gridnode_fields["error_id"] == doc["error_id"]   # type: ignore[attr-defined]


async def test_by_default_the_api_starts_without_a_secret_and_says_how_to_make_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """[api] left at its defaults (on) and no secret anywhere: the node starts, the open
    endpoints answer, every authenticated one says how to make the secret; one warning."""
    with caplog.at_level(logging.WARNING, logger="gridnode.api.server"):
        async with ApiNode(tmp_path, secret=False, api={"enabled": None}) as node:
            assert node.config.api.enabled and node.notifier.listening_at_ready
            for path in ("/health", "/ready", "/api/v1/openapi.json", "/"):
                assert (await node.call("GET", path)).status == 200, path
            for method, path in [("GET", "/api/v1/meters"), ("GET", "/metrics"),
                                 ("POST", "/api/v1/transactions/create"),
                                 ("POST", "/api/v1/login")]:
                doc = problem(await node.call(method, path, token=node.token(),
                                              body={"token": node.token()}), 503)
                assert doc["type"].endswith(":no-token-secret"), doc
                assert "gridnode token secret" in doc["detail"], doc
    warned = [r for r in caplog.records if r.getMessage() == "api tokens disabled"]
    assert len(warned) == 1


async def test_the_openapi_document_has_every_route(tmp_path: Path) -> None:
    async with ApiNode(tmp_path) as node:
        doc = (await node.call("GET", "/api/v1/openapi.json")).json
    assert doc["openapi"] == "3.1.0"
    served = {(r.method.lower(), r.path.replace("{id:[0-9]{1,18}}", "{id}")) for r in ROUTES}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == served and len(served) == len(ROUTES)
    text = json.dumps(doc)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"], ref
    create = doc["paths"]["/api/v1/transactions/create"]["post"]
    assert {"201", "401", "422"} <= set(create["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in create["parameters"])
    assert doc["paths"]["/health"]["get"]["security"] == []


def test_token_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "api.secret"
    code, out, _ = run_cli(capsys, "token", "secret", str(secret))
    assert code == 0 and stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert run_cli(capsys, "token", "secret", str(secret))[0] == 1      # never overwritten
    cfg = tmp_path / "g.toml"
    cfg.write_text(f'[node]\ndata_dir = "{tmp_path}"\n[api]\njwt_secret_file = "{secret}"\n')
    code, out, err = run_cli(capsys, "token", "issue", "--role", "user", "--sub", WALLET,
                             "--ttl", "15m", "-c", str(cfg))
    assert code == 0 and "valid until" in err
    claims = jwt.decode(out.strip(), secret.read_bytes().strip(), algorithms=["HS256"])
    assert claims["sub"] == WALLET and claims["role"] == "user"
    assert claims["exp"] - claims["iat"] == 900
    code, _, err = run_cli(capsys, "token", "issue", "--role", "user", "--sub", "bob",
                           "-c", str(cfg))
    assert code == 2 and "a user is a wallet" in err
    code, _, err = run_cli(capsys, "token", "issue", "--role", "operator", "--sub", "ops",
                           "--ttl", "10y", "-c", str(cfg))
    assert code == 2 and "--ttl '10y'" in err
    secret.chmod(0o644)
    code, _, err = run_cli(capsys, "token", "issue", "--role", "operator", "--sub", "ops",
                           "-c", str(cfg))
    assert code == 2 and "api.jwt_secret_file" in err and "mode 0600" in err


async def test_the_dashboard_login_keeps_the_token_in_an_httponly_cookie(tmp_path: Path) -> None:
    async with ApiNode(tmp_path) as node:
        page = await node.call("GET", "/")
        assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        assert "http" not in page.text.replace('"http-equiv', "")    # nothing from elsewhere
        js = await node.call("GET", "/static/dashboard.js")
        assert js.headers["Content-Type"].startswith("text/javascript") and "WebSocket" in js.text
        assert (await node.call("GET", "/api/v1/session")).json == {
            "authenticated": False, "sub": None, "role": None, "expires_at": None}
        problem(await node.call("POST", "/api/v1/login", body={"token": "not-a-jwt"}), 401)
        problem(await node.call("POST", "/api/v1/login", body={"token": node.token()},
                                headers={"Origin": "http://evil.example"}), 403)
        assert node.session is not None
        assert not node.session.cookie_jar.filter_cookies(node.url).get(COOKIE)
        login = await node.call("POST", "/api/v1/login", body={"token": node.token("monitor")})
        assert login.status == 200 and login.json["role"] == "monitor"
        cookie = login.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        # the cookie alone now authenticates reads (the session keeps it)
        assert (await node.call("GET", "/api/v1/meters")).status == 200
        assert (await node.call("GET", "/api/v1/session")).json["authenticated"] is True
        assert (await node.call("POST", "/api/v1/logout")).status == 204
        problem(await node.call("GET", "/api/v1/meters"), 401)
