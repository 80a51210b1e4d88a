"""The meters subsystem: readings from Modbus and MQTT meters to durable intervals and operations.

``service.MetersSubsystem`` is the daemon's subsystem. A reading travels:

    bus / mqtt     BusPoller: one owner task per Modbus bus (modbus_link, profiles);
                   MqttIngest: the broker's messages (payloads)
    reading        the reading as it travels from a source to validation
    recorder       Recorder: validation, interval building and the one write transaction
    validation     the checks a reading must pass (signatures: Ed25519 readings)
    intervals      interval energy from cumulative counters
    health         per-meter health for `gridnode status`
    clock          the Clock the subsystem asks for time (gridnode.testing has test clocks)

The submodules are imported by name (``from gridnode.meters.service import MetersSubsystem``).
"""

__all__ = ["bus", "clock", "health", "intervals", "modbus_link", "mqtt", "payloads", "profiles",
           "reading", "recorder", "service", "signatures", "validation"]
