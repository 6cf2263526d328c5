"""Peer descriptors on the wire, shared by every membership protocol.

A descriptor is ``[node_id, address, service, groups, stamp]``:

* ``node_id``: uint 1..2**64-1; ``address``: text <= 255 bytes;
* ``service``: text <= 64 bytes (e.g. "meter"); ``groups``: at most 16 texts of
  <= 64 bytes each (e.g. "tariff:RTP");
* ``stamp``: uint, meaning set by the protocol (Cyclon: age in shuffles;
  Newscast and full membership: the node's clock in milliseconds).

Everything a peer sends is checked before anything is merged; a bad entry
makes the whole message a ``MalformedMessage``.
"""

from __future__ import annotations

from collections.abc import Sequence

from gridmesh.errors import MalformedMessage
from gridmesh.protocols._host import Host, Peer
from gridmesh.wire import ADDRESS_BYTES_MAX, UINT64_MAX

__all__ = [
    "GROUPS_MAX",
    "GROUP_BYTES_MAX",
    "SERVICE_BYTES_MAX",
    "STAMP_MAX",
    "check_profile",
    "descriptor",
    "parse_descriptor",
    "parse_descriptors",
]

SERVICE_BYTES_MAX = 64
GROUP_BYTES_MAX = 64
GROUPS_MAX = 16
STAMP_MAX = UINT64_MAX


def descriptor(peer: Peer, stamp: int) -> list[object]:
    """``peer`` with ``stamp``, as it travels."""
    return [peer.node_id, peer.address, peer.service, list(peer.groups), stamp]


def check_profile(service: str, groups: Sequence[str]) -> None:
    """Raise ``ValueError`` unless a node's service and groups fit the limits."""
    if len(service.encode()) > SERVICE_BYTES_MAX:
        raise ValueError(f"service longer than {SERVICE_BYTES_MAX} bytes")
    if len(groups) > GROUPS_MAX:
        raise ValueError(f"more than {GROUPS_MAX} groups")
    if any(len(group.encode()) > GROUP_BYTES_MAX for group in groups):
        raise ValueError(f"a group name longer than {GROUP_BYTES_MAX} bytes")


def parse_descriptor(host: Host, item: object, *, stamp_max: int = STAMP_MAX) -> tuple[Peer, int]:
    """One descriptor from the wire, as an interned ``Peer`` and its stamp."""
    if type(item) is not list or len(item) != 5:
        raise MalformedMessage("a descriptor is [node_id, address, service, groups, stamp]")
    node_id, address, service, groups, stamp = item
    if type(node_id) is not int or not 0 < node_id <= UINT64_MAX:
        raise MalformedMessage("descriptor node_id must be a positive 64-bit integer")
    if type(address) is not str or _too_long(address, ADDRESS_BYTES_MAX):
        raise MalformedMessage(f"descriptor address must be text of <= {ADDRESS_BYTES_MAX} bytes")
    if type(service) is not str or _too_long(service, SERVICE_BYTES_MAX):
        raise MalformedMessage(f"descriptor service must be text of <= {SERVICE_BYTES_MAX} bytes")
    if type(groups) is not list or len(groups) > GROUPS_MAX:
        raise MalformedMessage(f"descriptor groups must be a list of <= {GROUPS_MAX}")
    for group in groups:
        if type(group) is not str or _too_long(group, GROUP_BYTES_MAX):
            raise MalformedMessage(f"a group must be text of <= {GROUP_BYTES_MAX} bytes")
    if type(stamp) is not int or not 0 <= stamp <= stamp_max:
        raise MalformedMessage(f"descriptor stamp must be an integer in 0..{stamp_max}")
    return host.peer(node_id, address, service, tuple(groups)), stamp


def _too_long(text: str, bytes_max: int) -> bool:
    # UTF-8 takes at most 4 bytes a character: short texts need no encoding to be judged.
    return len(text) * 4 > bytes_max and len(text.encode()) > bytes_max


def parse_descriptors(
    host: Host, items: object, *, entries_max: int, stamp_max: int = STAMP_MAX
) -> list[tuple[Peer, int]]:
    """A list of descriptors from the wire; at most ``entries_max`` of them."""
    if type(items) is not list or len(items) > entries_max:
        raise MalformedMessage(f"expected a list of at most {entries_max} descriptors")
    return [parse_descriptor(host, item, stamp_max=stamp_max) for item in items]
