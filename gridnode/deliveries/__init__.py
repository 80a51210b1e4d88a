"""Deliveries: the event log's items sent to the upstream platform, webhooks and Home
Assistant by one engine (engine.py), with durable cursors, backoff and parking.

`from_config` builds the deliveries subsystem the configuration asks for (None: nothing to
deliver to).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gridnode.config import GridnodeConfig
    from gridnode.deliveries.engine import DeliveryEngine
    from gridnode.store import Store


def from_config(config: GridnodeConfig, store: Store) -> DeliveryEngine | None:
    """The engine with every configured destination; ConfigError when one cannot be built."""
    from gridnode.deliveries.engine import DeliveryEngine

    engine = DeliveryEngine(store)
    if config.upstream is not None:
        from gridnode.deliveries.upstream import UpstreamDestination

        dest, policy = UpstreamDestination.from_config(config, store)
        engine.add(dest, policy)
    return engine if engine.destinations else None
