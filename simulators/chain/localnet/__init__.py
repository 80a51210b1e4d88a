"""A Solana JSON-RPC and WebSocket endpoint on LiteSVM, with faults on demand."""

from simulators.chain.localnet.faults import Faults
from simulators.chain.localnet.node import Localnet

__all__ = ["Faults", "Localnet"]
