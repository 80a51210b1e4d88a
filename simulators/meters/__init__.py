"""Meter simulators: Modbus TCP/RTU servers and MQTT publishers."""
