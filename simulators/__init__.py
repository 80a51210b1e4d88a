"""Stand-ins for what gridnode talks to: meters, the Solana chain and the upstream platform.

gridnode never imports this package; tests and the demo run it beside the daemon.
"""
