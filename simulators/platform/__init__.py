"""A stand-in for the GridTokenX platform API that receives gridnode's upstream deliveries."""

from simulators.platform.server import (
    INGEST_PATH,
    Fault,
    PlatformSimulator,
    verify_standard_webhook,
)

__all__ = ["INGEST_PATH", "Fault", "PlatformSimulator", "verify_standard_webhook"]
