"""GET /api/v1/deliveries and POST /api/v1/deliveries/{id}/replay on the real daemon (its API on
a free port) delivering to the platform simulator."""

from __future__ import annotations

from pathlib import Path

from gridnode.api.auth import Role
from gridnode.store import Store
from simulators.platform import PlatformSimulator
from tests.api.harness import ApiNode, problem
from tests.deliveries.helpers import finalize_readings, wait_for


async def test_parked_items_are_listed_and_replayed_through_the_api(
        tmp_path: Path, platform: PlatformSimulator, secret: str) -> None:
    secret_file = tmp_path / "upstream.secret"
    secret_file.write_text(secret)
    secret_file.chmod(0o600)
    platform.add_fault(status=400)
    upstream = {"upstream": {"url": platform.url, "secret_file": str(secret_file),
                             "retry_base_s": 0.05, "retry_max_s": 0.2, "poll_s": 0.05}}
    async with ApiNode(tmp_path, upstream) as node:
        writer = await Store.open(node.config.node.database)
        try:
            await finalize_readings(writer, ["m1", "m2"], [1_800_000_000])
        finally:
            await writer.close()
        op = node.token(Role.OPERATOR)

        async def parked() -> bool:
            a = await node.call("GET", "/api/v1/deliveries?status=parked", token=op)
            return a.status == 200 and len(a.json["items"]) == 2

        await wait_for(parked, 10, "two parked items")
        listed = (await node.call("GET", "/api/v1/deliveries", token=op)).json
        (dest,) = listed["destinations"]
        assert (dest["name"], dest["status"], dest["parked"], dest["pending"]) == (
            "upstream", "active", 2, 0)
        item = listed["items"][0]
        assert item["answer"].startswith("HTTP 400: ") and item["kind"] == "interval.finalized"
        assert item["payload"]["data"]["meter_id"] == item["order_key"]

        user = node.token(Role.USER, sub="4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T")
        problem(await node.call("GET", "/api/v1/deliveries", token=user), 403)
        problem(await node.call("POST", "/api/v1/deliveries/999/replay", token=op), 404)
        for it in listed["items"]:
            a = await node.call("POST", f"/api/v1/deliveries/{it['id']}/replay", token=op)
            assert a.status == 200 and a.json == {"id": it["id"], "old_status": "parked",
                                                  "status": "pending"}, a
        await wait_for(lambda: len(platform.items()) == 2, 10, "the replayed items held")

        async def delivered() -> bool:
            a = await node.call("GET", "/api/v1/deliveries?status=delivered", token=op)
            return len(a.json["items"]) == 2

        await wait_for(delivered, 10, "both marked delivered")
        again = await node.call("POST", f"/api/v1/deliveries/{item['id']}/replay", token=op)
        assert again.json["old_status"] == "delivered"
        await wait_for(lambda: platform.stats["duplicates"] == 1, 10, "the resent item deduped")
        assert len(platform.items()) == 2
