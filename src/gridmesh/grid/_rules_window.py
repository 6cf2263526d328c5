"""The Data Aggregator's part that rules need: bounded windows and topic groups.

Seed 001 (section IV) puts a Data Aggregator beside every Control Policy
Manager: it turns many readings into the few numbers a control decision is
made on. The tree aggregation of ``gridmesh.protocols.aggregation`` computes
such numbers across nodes; here are the two local forms a rule reads:

* ``SlidingWindow``: the recent samples of *one* measurement (one topic),
  at most ``samples_max`` of them and none older than ``window_s`` before the
  newest; it gives their mean and the rate of change between its ends.
* ``LatestGroup``: the latest reading of each topic of a *group* (every meter
  of a feeder), at most ``topics_max`` topics and none received more than
  ``age_s_max`` ago; it gives their sum, mean, count, minimum and maximum.

Both are bounded whatever their input does: a window drops its oldest sample
to take a new one, a group its least recently updated topic (counted in
``evicted``). A group's sum is kept exactly (``ExactSum``: readings are added
and taken back out as integers), so it does not drift however many updates it
sees, and it is one value whatever the order the readings arrived in.
No clock: times come in as arguments.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque

from gridmesh.protocols.aggregation import ExactSum

__all__ = ["LatestGroup", "SlidingWindow"]


class SlidingWindow:
    """The last samples ``(time_s, value)`` of one measurement, oldest first."""

    __slots__ = ("_samples", "samples_max", "window_s")

    def __init__(self, window_s: float, samples_max: int) -> None:
        assert window_s > 0.0 and samples_max >= 1
        self.window_s = window_s
        self.samples_max = samples_max
        self._samples: deque[tuple[float, float]] = deque(maxlen=samples_max)

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, time_s: float, value: float) -> bool:
        """Take a sample; False (and nothing changes) unless it is newer than the last."""
        samples = self._samples
        if samples and time_s <= samples[-1][0]:
            return False
        samples.append((time_s, value))  # a full deque drops its oldest sample
        horizon = time_s - self.window_s
        while samples[0][0] < horizon:
            samples.popleft()
        return True

    def span_s(self) -> float:
        """Seconds between the oldest and the newest sample (0.0 below two samples)."""
        samples = self._samples
        return samples[-1][0] - samples[0][0] if len(samples) >= 2 else 0.0

    def rate_per_s(self) -> float | None:
        """Change per second between the oldest and the newest sample; None below two."""
        samples = self._samples
        if len(samples) < 2:
            return None
        (t0, v0), (t1, v1) = samples[0], samples[-1]
        return (v1 - v0) / (t1 - t0)  # add() keeps times strictly increasing

    def mean(self) -> float | None:
        """The mean of the samples (``math.fsum``: exact, then rounded once); None if none."""
        samples = self._samples
        if not samples:
            return None
        count = len(samples)
        try:
            return math.fsum(value for _, value in samples) / count
        except OverflowError:  # a sum beyond the float range: sum the shares instead
            return math.fsum(value / count for _, value in samples)


class LatestGroup:
    """The latest reading of each topic of a group, with their exact running sum."""

    __slots__ = ("_readings", "_total", "age_s_max", "evicted", "expired", "topics_max")

    def __init__(self, topics_max: int, age_s_max: float) -> None:
        assert topics_max >= 1 and age_s_max > 0.0
        self.topics_max = topics_max
        self.age_s_max = age_s_max
        #: topic -> (received_s, value, its ExactSum), least recently updated first.
        self._readings: OrderedDict[str, tuple[float, float, ExactSum]] = OrderedDict()
        self._total = ExactSum()
        self.evicted = 0  # topics dropped to make room (topics_max)
        self.expired = 0  # topics dropped for silence (age_s_max)

    def __len__(self) -> int:
        return len(self._readings)

    def update(self, topic: str, value: float, now: float) -> None:
        """``topic`` now reads ``value`` (received at ``now``); stale topics leave first."""
        readings = self._readings
        old = readings.pop(topic, None)
        if old is not None:
            self._take_out(old[2])
        self.expire(now)
        if len(readings) >= self.topics_max:
            _, (_, _, dropped) = readings.popitem(last=False)
            self._take_out(dropped)
            self.evicted += 1
        exact = ExactSum.of(value)
        readings[topic] = (now, value, exact)
        self._total = self._total + exact

    def expire(self, now: float) -> None:
        """Drop the readings received more than ``age_s_max`` before ``now``."""
        readings = self._readings
        horizon = now - self.age_s_max
        while readings:
            topic, (received_s, _, exact) = next(iter(readings.items()))
            if received_s >= horizon:
                break
            del readings[topic]
            self._take_out(exact)
            self.expired += 1

    def total(self) -> float:
        """The sum of the latest readings, rounded once (0.0 for an empty group)."""
        return float(self._total.result()) if self._readings else 0.0

    def mean(self) -> float | None:
        """The mean of the latest readings; None for an empty group."""
        count = len(self._readings)
        return self.total() / count if count else None

    def extremes(self) -> tuple[float, float] | None:
        """``(minimum, maximum)`` of the latest readings (a scan); None for an empty group."""
        if not self._readings:
            return None
        values = [value for _, value, _ in self._readings.values()]
        return min(values), max(values)

    def _take_out(self, exact: ExactSum) -> None:
        total = self._total
        self._total = ExactSum(total.scaled - exact.scaled, total.has_float)
