"""The transaction pipeline: outbox operations to finalized transactions, durably.

``pipeline.Pipeline`` is the daemon's subsystem; it builds and runs the stages, which share one
``inflight.InFlight`` and keep their state in the store (gridnode.store.operations):

    submitter  Submitter: due pending operations -> signed, persisted, sent; re-broadcasting
    monitor    Monitor: every in-flight transaction to finality; when re-signing is safe
    recovery   the recovery table: each kind of failure counted, the operation parked at its max
    rounds     the loop each stage runs; outages and failing disks logged as states
    inflight   the signatures on their way and the block height, shared explicitly

The submodules are imported by name (``from gridnode.outbox.pipeline import Pipeline``).
"""

__all__ = ["inflight", "monitor", "pipeline", "recovery", "rounds", "submitter"]
