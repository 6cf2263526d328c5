"""Bytes <-> typed messages. No I/O, no clock: see ``_codec`` for the format."""

from gridmesh.wire._codec import (
    check_plain,
    decode,
    decode_plain,
    encode,
    int_bytes,
    plain_bytes,
)
from gridmesh.wire._envelope import (
    ADDRESS_BYTES_MAX,
    AUTH_BYTES_MAX,
    BODY_DEPTH_MAX,
    HOPS_MAX,
    MESSAGE_BYTES_MAX,
    TOPIC_BYTES_MAX,
    UINT64_MAX,
    WIRE_VERSION,
    Envelope,
    Kind,
)

__all__ = [
    "ADDRESS_BYTES_MAX",
    "AUTH_BYTES_MAX",
    "BODY_DEPTH_MAX",
    "HOPS_MAX",
    "MESSAGE_BYTES_MAX",
    "TOPIC_BYTES_MAX",
    "UINT64_MAX",
    "WIRE_VERSION",
    "Envelope",
    "Kind",
    "check_plain",
    "decode",
    "decode_plain",
    "encode",
    "int_bytes",
    "plain_bytes",
]
