"""[publish.mqtt]: the node's meters and status published to Home Assistant over MQTT.

Off by default. The broker settings are those of [meters.mqtt] (host, port, TLS, credentials);
it is often the same broker, but nothing ties them together. States go to
``<base_topic>/<node>/<meter>/<quantity>``, discovery configs to
``<discovery_prefix>/sensor/<node>_<meter>_<quantity>/config``, both retained.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from gridnode.config.base import Section
from gridnode.config.meters import MqttBroker

_TOPIC_PART = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


def _topic_prefix(value: str) -> str:
    if not _TOPIC_PART.match(value):
        raise ValueError("a topic prefix of letters, digits, '_' and '-' in '/'-separated "
                         "levels, without wildcards or a leading or trailing '/'")
    return value


class MqttPublishConfig(MqttBroker):
    enabled: bool = False
    # Home Assistant's discovery prefix (its MQTT integration's setting; 'homeassistant').
    discovery_prefix: str = "homeassistant"
    # Where states and the availability topic go: <base_topic>/<node id>/...
    base_topic: str = "gridnode"
    # A meter's states are published at most this often (its latest validated reading).
    publish_every_s: float = Field(default=10.0, ge=0.1, le=3600)
    # After Home Assistant's birth message, discovery is sent again after a random delay of
    # up to this (many devices answering the same birth at once is what the docs warn of).
    rediscover_delay_max_s: float = Field(default=3.0, ge=0, le=300)

    @field_validator("discovery_prefix", "base_topic")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        return _topic_prefix(value)


class PublishConfig(Section):
    mqtt: MqttPublishConfig = Field(default_factory=MqttPublishConfig)
