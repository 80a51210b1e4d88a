"""The chain side: from an outbox operation to a signed transaction, and what the chain says back.

gridnode talks to Solana only through JSON-RPC (``rpc.RpcPool``); the programs' interface comes
from their IDLs (``idl``), and what gridnode sends is the tx type table (``txtypes.TX_TYPES``).
The modules, in the order an operation meets them:

    txtypes        one row per tx type, carrying its payload model (validation)
    validation     the payload models and the typed reasons an operation cannot be sent now
    instructions   InstructionBuilder: payload -> validated, IDL-encoded instructions
    idl            the programs' interfaces: instruction and account coders, PDAs, events
    assembly       batching, compute budget, priority fee, signing (signers, fees, blockhash)
    rpc            RpcPool: several endpoints, health checks, failover
    subscriptions  signatureSubscribe for fast confirmation
    errors         what a transaction error means and what to do next
    events         the Anchor events of a landed transaction

The submodules are imported by name (``from gridnode.chain.rpc import RpcPool``), so a process
loads only what it uses: the command line reads tx types without the RPC client.
"""

__all__ = ["assembly", "blockhash", "errors", "events", "fees", "idl", "instructions", "rpc",
           "signers", "subscriptions", "txtypes", "validation"]
