"""The messages a node keeps to answer pulls, grafts and repair exchanges.

Bounded twice: at most ``capacity`` messages, none older than ``ttl_s``
(measured from when this node stored it). The oldest go first; every
operation is O(1) amortised.
"""

from __future__ import annotations

from collections import OrderedDict

from gridmesh.wire import Envelope

__all__ = ["MessageKey", "MessageStore"]

#: A message's name: ``(origin, message_id)``.
MessageKey = tuple[int, int]


class MessageStore:
    """Recently delivered messages, with the hops they may still travel."""

    __slots__ = ("_capacity", "_messages", "_ttl_s")

    def __init__(self, capacity: int, ttl_s: float) -> None:
        if capacity < 1 or ttl_s <= 0:
            raise ValueError("capacity must be >= 1 and ttl_s > 0")
        self._capacity = capacity
        self._ttl_s = ttl_s
        # key -> (message as received, hops it may still be relayed, stored at)
        self._messages: OrderedDict[MessageKey, tuple[Envelope, int, float]] = OrderedDict()

    def add(self, key: MessageKey, message: Envelope, hops_left: int, now: float) -> None:
        messages = self._messages
        if key in messages:
            return
        messages[key] = (message, hops_left, now)
        if len(messages) > self._capacity:
            messages.popitem(last=False)

    def get(self, key: MessageKey, now: float) -> tuple[Envelope, int] | None:
        self.expire(now)
        entry = self._messages.get(key)
        return None if entry is None else (entry[0], entry[1])

    def expire(self, now: float) -> None:
        messages = self._messages
        horizon = now - self._ttl_s
        while messages:
            key, (_, _, stored_at) = next(iter(messages.items()))
            if stored_at > horizon:
                break
            del messages[key]

    def newest_keys_since(
        self, since_us: int, count: int, now: float
    ) -> tuple[int, list[MessageKey]]:
        """A digest: the keys of messages created at ``since_us`` or later, newest first.

        When more than ``count`` qualify, the window shrinks to what the
        ``count`` newest cover, and the returned ``since_us`` says so.
        """
        self.expire(now)
        keys: list[MessageKey] = []
        for key in reversed(self._messages):
            created_us = self._messages[key][0].created_us
            if created_us < since_us:
                continue
            if len(keys) >= count:
                return max(since_us, _oldest(self._messages, keys)), keys
            keys.append(key)
        return since_us, keys

    def missing_from(
        self, known: set[MessageKey], since_us: int, count: int, now: float
    ) -> list[tuple[Envelope, int]]:
        """Up to ``count`` messages created at ``since_us`` or later and not in ``known``.

        Oldest first, each with the hops it may still travel.
        """
        self.expire(now)
        found: list[tuple[Envelope, int]] = []
        for key, (message, hops_left, _) in self._messages.items():
            if key not in known and message.created_us >= since_us:
                found.append((message, hops_left))
                if len(found) >= count:
                    break
        return found

    def __len__(self) -> int:
        return len(self._messages)


def _oldest(
    messages: OrderedDict[MessageKey, tuple[Envelope, int, float]], keys: list[MessageKey]
) -> int:
    return min(messages[key][0].created_us for key in keys)
