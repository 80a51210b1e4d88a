"""What the pipeline's tasks share about transactions on their way: one owner, passed explicitly.

The submitter adds each signature as soon as it is persisted (so the subscriber watches it before
the first send), the monitor replaces the set from the store every round and drops a signature
once finalized, and the signature subscriber reads it. The monitor also records the last block
height it saw, which tells the re-broadcaster when stored bytes can no longer land.
"""

from __future__ import annotations


class InFlight:
    """The signatures that may still land, and the chain's block height as last seen."""

    def __init__(self) -> None:
        self._signatures: set[str] = set()
        self.block_height: int | None = None

    def signatures(self) -> set[str]:
        """A copy: the caller may keep it while the owners change the set."""
        return set(self._signatures)

    def add(self, signature: str) -> None:
        self._signatures.add(signature)

    def discard(self, signature: str) -> None:
        self._signatures.discard(signature)

    def replace(self, signatures: set[str]) -> None:
        self._signatures = set(signatures)

    def may_land(self, last_valid_block_height: int) -> bool:
        """Whether a transaction with this lastValidBlockHeight may still land, as far as known."""
        return self.block_height is None or self.block_height <= last_valid_block_height
