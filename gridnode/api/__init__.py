"""The local HTTP API: the platform's transaction endpoints, node state and live events.

`ApiServer` is the daemon subsystem (gridnode.api.server); the endpoints are rows of
gridnode.api.routes.ROUTES; tokens are made by gridnode.api.tokens (``gridnode token``). The
server (and aiohttp.web) is imported only when used, so the CLI's token commands stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gridnode.api.server import ApiServer

__all__ = ["ApiServer"]


def __getattr__(name: str) -> Any:
    if name == "ApiServer":
        from gridnode.api.server import ApiServer

        return ApiServer
    raise AttributeError(name)
