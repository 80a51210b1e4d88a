"""What the HTTP destinations (upstream, webhooks) share: one client session, opened on the
first request and closed with the destination.

aiohttp is imported with the first session: the CLI, which registers webhooks without sending
anything, never loads it (about 11 MB and 0.1 s on every command).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gridnode import __version__

if TYPE_CHECKING:
    import aiohttp


class HttpClient:
    """A lazily opened aiohttp session with the destination's timeout and gridnode's User-Agent."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers={"User-Agent": f"gridnode/{__version__}"})
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
