"""A strict reader for the CBOR that COSE messages are made of (RFC 8949, RFC 9052).

Why not cbor2's decoder
-----------------------
COSE header labels are integers (``{1: -8, 4: h'...'}``). cbor2's
``strict_hashable_types`` refuses every map key that is not a text or byte
string, and without it cbor2 turns arrays, maps and floats used as map keys
into tuples, frozen dicts and floats, whose hashes are not randomized: a peer
could then fill 65 KB with colliding keys and make one map cost quadratic
time. This reader accepts only what COSE needs, so every input costs linear
time. (Encoding still goes through ``cbor2.dumps``.)

What is accepted
----------------
* unsigned and negative integers, byte strings, UTF-8 text, arrays, maps,
  ``false``, ``true`` and ``null``;
* map keys that are integers or text (RFC 9052, ``label = int / tstr``), each
  at most once in a map;
* heads in shortest form only (RFC 8949, section 4.2.1), so one message has
  one encoding.

Refused: tags (the caller strips the one tag it allows at the top),
indefinite lengths, floats, ``undefined`` and other simple values, nesting
deeper than ``depth_max``, truncation and trailing bytes. Every refusal is a
``CborSubsetError``; callers turn it into their own typed error.
"""

from __future__ import annotations

__all__ = ["DEPTH_MAX", "CborSubsetError", "read_one"]

DEPTH_MAX = 8
_MAJOR_UINT, _MAJOR_NINT, _MAJOR_BYTES, _MAJOR_TEXT = 0, 1, 2, 3
_MAJOR_ARRAY, _MAJOR_MAP, _MAJOR_TAG = 4, 5, 6
_SIMPLE = {0xF4: False, 0xF5: True, 0xF6: None}
_ARGUMENT_BYTES = {24: 1, 25: 2, 26: 4, 27: 8}
# The smallest argument each long head form may carry (else a shorter form exists).
_SHORTEST_FROM = {24: 24, 25: 0x100, 26: 0x1_0000, 27: 0x1_0000_0000}
_LABEL_MAJORS = frozenset({_MAJOR_UINT, _MAJOR_NINT, _MAJOR_TEXT})


class CborSubsetError(Exception):
    """The bytes are not in the strict CBOR subset this reader accepts."""


def read_one(data: bytes, start: int = 0, depth_max: int = DEPTH_MAX) -> object:
    """The one item encoded in ``data[start:]``; trailing bytes are an error."""
    item, end = _read(data, start, depth_max)
    if end != len(data):
        raise CborSubsetError(f"{len(data) - end} trailing bytes")
    return item


def _read(data: bytes, position: int, depth_left: int) -> tuple[object, int]:
    size = len(data)
    if position >= size:
        raise CborSubsetError("truncated")
    initial = data[position]
    position += 1
    major = initial >> 5
    if major == 7:
        if initial in _SIMPLE:
            return _SIMPLE[initial], position
        raise CborSubsetError(f"simple value or float 0x{initial:02x} is not allowed")
    info = initial & 0x1F
    if info < 24:
        argument = info
    elif info in _ARGUMENT_BYTES:
        end = position + _ARGUMENT_BYTES[info]
        if end > size:
            raise CborSubsetError("truncated")
        argument = int.from_bytes(data[position:end], "big")
        if argument < _SHORTEST_FROM[info]:
            raise CborSubsetError("head not in shortest form")
        position = end
    else:
        raise CborSubsetError("indefinite length or reserved head")
    if major == _MAJOR_UINT:
        return argument, position
    if major == _MAJOR_NINT:
        return -1 - argument, position
    if major in (_MAJOR_BYTES, _MAJOR_TEXT):
        end = position + argument
        if end > size:
            raise CborSubsetError("truncated")
        if major == _MAJOR_BYTES:
            return data[position:end], end
        try:
            return data[position:end].decode("utf-8"), end
        except UnicodeDecodeError:
            raise CborSubsetError("text is not valid UTF-8") from None
    if major == _MAJOR_TAG:
        raise CborSubsetError(f"tag {argument} is not allowed")
    if depth_left <= 0:
        raise CborSubsetError("nested too deep")
    if major == _MAJOR_ARRAY:
        if argument > size - position:  # every item takes at least one byte
            raise CborSubsetError("truncated")
        items = []
        for _ in range(argument):
            item, position = _read(data, position, depth_left - 1)
            items.append(item)
        return items, position
    return _read_map(data, position, argument, depth_left)


def _read_map(data: bytes, position: int, count: int, depth_left: int) -> tuple[object, int]:
    size = len(data)
    if count > (size - position) // 2:  # every key and every value takes a byte
        raise CborSubsetError("truncated")
    mapping: dict[object, object] = {}
    for _ in range(count):
        if position >= size:
            raise CborSubsetError("truncated")
        if data[position] >> 5 not in _LABEL_MAJORS:
            raise CborSubsetError("map keys must be integers or text")
        key, position = _read(data, position, 0)
        if key in mapping:
            raise CborSubsetError(f"duplicate map key {key!r}")
        mapping[key], position = _read(data, position, depth_left - 1)
    return mapping, position
