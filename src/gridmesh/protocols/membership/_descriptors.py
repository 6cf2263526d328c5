"""Peer descriptors on the wire, shared by every membership protocol.

A descriptor is ``[node_id, address, service, groups, stamp]``:

* ``node_id``: uint 1..2**64-1; ``address``: printable ASCII, no spaces,
  <= 255 bytes (a transport parses it later and must not meet control
  characters or exotic digits);
* ``service``: printable text <= 64 bytes (e.g. "meter"); ``groups``: at most
  16 printable texts of <= 64 bytes each (e.g. "tariff:RTP");
* ``stamp``: uint, meaning set by the protocol (Cyclon: age in shuffles;
  Newscast and full membership: the node's clock in milliseconds).

Everything a peer sends is checked before anything is merged; a bad entry
makes the whole message a ``MalformedMessage``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    "fit",
    "other_seeds",
    "parse_descriptor",
    "parse_descriptors",
]

SERVICE_BYTES_MAX = 64
GROUP_BYTES_MAX = 64
GROUPS_MAX = 16
STAMP_MAX = UINT64_MAX


def other_seeds(host: Host, seeds: Sequence[Peer]) -> list[Peer]:
    """The seeds that are not this node (a seed list is often shared by all nodes)."""
    return [s for s in seeds if s.node_id != host.node_id and s.address != host.address]


def descriptor(peer: Peer, stamp: int) -> list[Any]:
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
    if type(address) is not str or not _address_ok(address):
        raise MalformedMessage(
            f"descriptor address must be printable ASCII of <= {ADDRESS_BYTES_MAX} bytes"
        )
    if (
        type(service) is not str
        or _too_long(service, SERVICE_BYTES_MAX)
        or not service.isprintable()
    ):
        raise MalformedMessage(f"descriptor service must be text of <= {SERVICE_BYTES_MAX} bytes")
    if type(groups) is not list or len(groups) > GROUPS_MAX:
        raise MalformedMessage(f"descriptor groups must be a list of <= {GROUPS_MAX}")
    for group in groups:
        if type(group) is not str or not _text_ok(group, GROUP_BYTES_MAX):
            raise MalformedMessage(f"a group must be text of <= {GROUP_BYTES_MAX} bytes")
    if type(stamp) is not int or not 0 <= stamp <= stamp_max:
        raise MalformedMessage(f"descriptor stamp must be an integer in 0..{stamp_max}")
    return host.peer(node_id, address, service, tuple(groups)), stamp


def _address_ok(address: str) -> bool:
    return (
        len(address) <= ADDRESS_BYTES_MAX
        and address.isascii()
        and address.isprintable()
        and " " not in address
    )


def fit(entries: list[list[Any]], budget_bytes: int) -> list[list[Any]]:
    """The leading ``entries`` whose encoding stays within ``budget_bytes`` (estimated, high).

    A descriptor can legally take ~1.4 KB, so a list of them must be cut to fit
    a message; the first entries (the sender's own, the freshest) are kept.
    """
    total = 0
    for index, (_, address, service, groups, _) in enumerate(entries):
        total += 24 + len(address) + len(service.encode())
        total += sum(len(group.encode()) + 3 for group in groups)
        if total > budget_bytes:
            return entries[:index]
    return entries


def _text_ok(text: str, bytes_max: int) -> bool:
    return text.isprintable() and not _too_long(text, bytes_max)


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
