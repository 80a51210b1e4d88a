"""GET /api/v1/alerts: the alerts' stored state (gridnode.alerts raises and clears them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gridnode.alerts import current
from gridnode.api.models import AlertInfo, AlertList, iso

if TYPE_CHECKING:
    from gridnode.api.server import Call, Reply


async def list_alerts(call: Call) -> Reply:
    """Every alert that was ever raised, with its state now; raised ones first."""
    from gridnode.api.server import Reply

    rows = await current(call.ctx.db, call.ctx.subsystems)
    return Reply(AlertList(active=sum(a.raised for a in rows), alerts=[AlertInfo(
        name=a.name, state=a.state, value=a.value, threshold=a.threshold, detail=a.detail,
        raised_at=iso(a.raised_at_ms), changed_at=iso(a.changed_at_ms))
        for a in sorted(rows, key=lambda a: (not a.raised, a.name))]))
