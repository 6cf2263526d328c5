"""The MQTT bridge's configuration: the broker, the limits and the mapping rules.

Every topic, filter, ``strip`` and ``prefix`` is checked here, when the
configuration is read, with ``gridmesh.topics``: a misspelt filter is a
``ConfigError`` naming the field at start-up, never a silent drop at run time.
See docs/BRIDGES.md for the meaning of each field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from gridmesh.config import validate_model
from gridmesh.errors import ConfigError, InvalidTopic
from gridmesh.topics import validate_topic_filter, validate_topic_name

__all__ = [
    "MQTT_RULES_MAX",
    "UNIT_BYTES_MAX",
    "InboundRule",
    "MqttBridgeConfig",
    "OutboundRule",
    "load_mqtt_bridge_config",
]

#: Rules per direction. Each outbound rule is one gridmesh subscription
#: (``pubsub.filters_max``, 256 by default) and each inbound rule one MQTT
#: SUBSCRIBE with its own subscription identifier.
MQTT_RULES_MAX = 256
#: An event's unit, as ``PubSubClient.publish`` allows it.
UNIT_BYTES_MAX = 64
_DOCS = "docs/BRIDGES.md"


def _check_filter(text: str) -> str:
    try:
        return validate_topic_filter(text)
    except InvalidTopic as error:
        raise ValueError(f"a valid topic filter ({error.problem})") from None


def _check_affix(text: str) -> str:
    """``strip`` and ``prefix``: literal text that may start a topic name."""
    if not text:
        return text
    try:
        validate_topic_name(text + "x")  # "x": a prefix may end in "/"
    except InvalidTopic as error:
        raise ValueError(f"literal topic text, no wildcards ({error.problem})") from None
    return text


_Filter = Annotated[str, AfterValidator(_check_filter)]
_Affix = Annotated[str, AfterValidator(_check_affix)]


class OutboundRule(BaseModel):
    """gridmesh -> MQTT: events matching ``filter`` go to ``prefix`` + (topic less ``strip``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    filter: _Filter = Field(description="gridmesh topic filter the bridge subscribes to")
    strip: _Affix = Field(default="", description="removed from the start of the gridmesh topic")
    prefix: _Affix = Field(default="", description="put in front to form the MQTT topic")
    payload: Literal["json", "value"] = Field(
        default="json",
        description="json: an object with value, unit, time_us, source, seq, event_id; "
        "value: the value alone as JSON (bytes values go as they are)",
    )
    retain: bool = Field(default=False, description="publish with MQTT's retain flag")


class InboundRule(BaseModel):
    """MQTT -> gridmesh: messages matching ``filter`` become events on ``prefix`` + (topic
    less ``strip``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    filter: str = Field(description="MQTT topic filter the bridge subscribes to (no-local)")
    strip: _Affix = Field(default="", description="removed from the start of the MQTT topic")
    prefix: _Affix = Field(default="", description="put in front to form the gridmesh topic")
    unit: str = Field(default="", max_length=UNIT_BYTES_MAX, description="the events' unit")
    payload: Literal["json", "text", "bytes"] = Field(
        default="json",
        description="json: parse; an object with 'value' gives value (and unit, time_us); "
        "text: UTF-8 text; bytes: the payload as it is",
    )

    @field_validator("filter")
    @classmethod
    def _mqtt_filter(cls, text: str) -> str:
        normal = _check_filter(text)
        if normal != text:
            raise ValueError(
                "an MQTT filter: a last level '*' is '#' in gridmesh but an ordinary "
                "character in MQTT; write '#'"
            )
        if text.startswith("$share/"):
            raise ValueError("a plain MQTT filter (shared subscriptions are not supported)")
        return text

    @field_validator("unit")
    @classmethod
    def _unit_bytes(cls, text: str) -> str:
        if len(text.encode()) > UNIT_BYTES_MAX:
            raise ValueError(f"a unit of at most {UNIT_BYTES_MAX} UTF-8 bytes")
        return text


class MqttBridgeConfig(BaseModel):
    """One MQTT bridge: its broker, limits, and the rules of each direction."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(default="127.0.0.1", min_length=1, max_length=253)
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str = Field(
        default="",
        max_length=256,
        description="MQTT client id; empty: gridmesh-bridge-<node id>. Unique per broker",
    )
    username: str | None = Field(default=None, max_length=65535)
    password: SecretStr | None = Field(default=None)
    keepalive_s: int = Field(default=60, ge=5, le=65535)
    qos: Literal[0, 1, 2] = Field(
        default=1, description="for inbound subscriptions and outbound publishes"
    )
    session_expiry_s: int = Field(
        default=0,
        ge=0,
        le=2**32 - 1,
        description="0: a clean session each connect; more: the broker keeps the "
        "subscriptions and unacknowledged messages this long across a bridge restart",
    )
    reconnect_delay_min_s: int = Field(default=1, ge=1, le=3600)
    reconnect_delay_max_s: int = Field(default=60, ge=1, le=3600)
    inbound_payload_bytes_max: int = Field(
        default=8192,
        ge=1,
        le=16 * 1024 * 1024,
        description="larger MQTT payloads are dropped and counted (too_large)",
    )
    inbound_inflight_max: int = Field(
        default=1000,
        ge=1,
        le=65535,
        description="MQTT receive maximum: QoS 1/2 messages the broker may send before the "
        "bridge acknowledged them, which it does once the flow stored them",
    )
    inbound_queue_max: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="messages waiting between the MQTT thread and the node; beyond it "
        "they are dropped and counted (queue_full)",
    )
    outbound_queue_max: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="QoS 1/2 messages the MQTT client holds unacknowledged or waiting; "
        "beyond it events are dropped and counted (queue_full)",
    )
    outbound: tuple[OutboundRule, ...] = Field(default=(), max_length=MQTT_RULES_MAX)
    inbound: tuple[InboundRule, ...] = Field(default=(), max_length=MQTT_RULES_MAX)

    @model_validator(mode="after")
    def _coherent(self) -> MqttBridgeConfig:
        if self.reconnect_delay_max_s < self.reconnect_delay_min_s:
            raise ValueError("reconnect_delay_max_s must be at least reconnect_delay_min_s")
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        return self


def load_mqtt_bridge_config(
    raw: Any, *, source: str, section: str = "bridge.mqtt"
) -> MqttBridgeConfig:
    """``raw`` (a TOML table) validated; a ``ConfigError`` names ``section.field``."""
    if not isinstance(raw, dict):
        raise ConfigError(
            source, section, "a table of the MQTT bridge's fields (see docs/BRIDGES.md)"
        )
    try:
        return validate_model(MqttBridgeConfig, raw, source=source, docs=_DOCS)
    except ConfigError as error:
        field = section if error.field == "(top level)" else f"{section}.{error.field}"
        raise ConfigError(error.source, field, error.expected, got=error.got) from None
