"""Deliveries: the event log's items sent to the upstream platform, webhooks and Home
Assistant by one engine (engine.py), with durable cursors, backoff and parking.

`DeliveriesSubsystem.from_config` builds the engine with every destination the configuration
asks for.
"""

from __future__ import annotations

from gridnode.deliveries.engine import DeliveryEngine as DeliveriesSubsystem

__all__ = ["DeliveriesSubsystem"]
