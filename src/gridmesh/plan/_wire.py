"""How many bytes a gridmesh message really puts on the wire, measured with the encoder.

Theory of operation
-------------------
Seed 001 sizes links with the application's message ("almost 800 bytes").
gridmesh wraps every payload in an envelope (``gridmesh.wire``) and will sign
it, so a plan that ignores both undercounts. The envelope overhead is not a
constant here: it is *measured* at run time by encoding a realistic GOSSIP
envelope around a payload of exactly N bytes and taking ``len(encode(...)) -
N``. CBOR lengths depend on values (a 64-bit id takes 9 bytes, an id below 24
takes 1), so the probe uses values a live node sends: random 64-bit message,
origin and sender ids, a current Unix time in microseconds, the default fanout
and hop budget, and the topic the planner names.

Signatures do not exist yet. Until the security layer signs envelopes, the
signature is a placeholder ``auth`` of ``signature_bytes`` bytes (default
``COSE_SIGN1_EDDSA_BYTES``) and its framing in the envelope is measured the
same way; once signing lands, the probe signs for real and the estimate goes.

``COSE_SIGN1_EDDSA_BYTES`` = 74, a tagged COSE_Sign1 (RFC 9052, 4.2) with
Ed25519 (RFC 8032) and a detached payload::

    1   tag 18 (COSE_Sign1)
    1   array of 4
    4   protected header: bstr(3) holding {1: -8}  (alg: EdDSA) = 1 + 3
    1   unprotected header: {}
    1   payload: nil (detached: the envelope's end-to-end fields are signed)
    66  signature: bstr(64) = 2 + 64
    --
    74  bytes; in the envelope's auth field it becomes bstr(74) = 76 bytes in
        place of the 1-byte null, so signing adds 75 bytes to each message.
"""

from __future__ import annotations

from dataclasses import dataclass

from gridmesh.protocols.dissemination import GossipConfig, gossip_body
from gridmesh.wire import Envelope, Kind, encode

__all__ = ["COSE_SIGN1_EDDSA_BYTES", "DEFAULT_TOPIC", "WireSize", "measure_wire_size"]

COSE_SIGN1_EDDSA_BYTES = 74
#: Seed 001, III-B3: the Event Manager's example topic.
DEFAULT_TOPIC = "MEASUREMENT/SENSOR/1234/PowerConsumption"
# Values a live node would send: 64-bit random ids and a 2025 timestamp.
_MESSAGE_ID = 0xD1B5_4A32_D192_ED03
_ORIGIN = 0x6C8E_9CF5_7082_9F1B
_SENDER = 0x4F1B_BCDC_BE72_A9E5
_CREATED_US = 1_763_730_000_000_000


@dataclass(frozen=True, slots=True)
class WireSize:
    """One message's size: the application's payload and what gridmesh adds to it."""

    payload_bytes: int
    envelope_bytes: int  # measured: envelope fields and the CBOR framing of the payload
    signature_bytes: int  # measured framing of an auth field of the estimated size
    topic: str

    @property
    def message_bytes(self) -> int:
        return self.payload_bytes + self.envelope_bytes + self.signature_bytes


def _probe(payload_bytes: int, topic: str, auth: bytes | None) -> int:
    gossip = GossipConfig()
    envelope = Envelope(
        kind=Kind.GOSSIP,
        message_id=_MESSAGE_ID,
        origin=_ORIGIN,
        sender=_SENDER,
        topic=topic,
        created_us=_CREATED_US,
        hops_left=gossip.hops,
        body=gossip_body(gossip.fanout, bytes(payload_bytes)),
        auth=auth,
    )
    return len(encode(envelope))


def measure_wire_size(
    payload_bytes: int, *, topic: str = DEFAULT_TOPIC, signature_bytes: int = COSE_SIGN1_EDDSA_BYTES
) -> WireSize:
    """Encode a realistic envelope around ``payload_bytes`` and measure what it adds."""
    assert payload_bytes >= 1 and signature_bytes >= 0
    unsigned = _probe(payload_bytes, topic, None)
    signed = _probe(payload_bytes, topic, bytes(signature_bytes)) if signature_bytes else unsigned
    return WireSize(payload_bytes, unsigned - payload_bytes, signed - unsigned, topic)
