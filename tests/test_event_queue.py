"""The calendar queue serves events in exactly the order one binary heap would."""

from __future__ import annotations

import heapq

from hypothesis import given, settings
from hypothesis import strategies as st

from gridmesh.sim._queue import CalendarQueue

# Each step: (delay from now in seconds, pop this many afterwards).
steps = st.lists(
    st.tuples(st.floats(min_value=0.0, max_value=0.05, allow_nan=False), st.integers(0, 3)),
    max_size=300,
)


@settings(max_examples=200)
@given(steps=steps, width=st.sampled_from([0.0001, 0.001, 0.01, 1.0]))
def test_interleaved_pushes_and_pops_match_a_binary_heap(
    steps: list[tuple[float, int]], width: float
) -> None:
    queue = CalendarQueue(bucket_width_s=width)
    heap: list[tuple[float, int]] = []
    now = 0.0
    served_queue: list[tuple[float, int]] = []
    served_heap: list[tuple[float, int]] = []
    for seq, (delay, pops) in enumerate(steps):
        event = (now + delay, seq)  # never earlier than the clock, as in the simulator
        queue.push(event)
        heapq.heappush(heap, event)
        for _ in range(pops):
            got = queue.pop_until(float("inf"))
            if got is None:
                assert not heap
                break
            served_queue.append(got)  # type: ignore[arg-type]
            served_heap.append(heapq.heappop(heap))
            now = got[0]
    while (got := queue.pop_until(float("inf"))) is not None:
        served_queue.append(got)  # type: ignore[arg-type]
        served_heap.append(heapq.heappop(heap))
    assert served_queue == served_heap
    assert len(queue) == 0 and not heap


def test_pop_until_leaves_later_events_in_place() -> None:
    queue = CalendarQueue()
    for seq, at in enumerate([0.5, 0.0004, 2.0, 0.0002]):
        queue.push((at, seq))
    assert queue.pop_until(0.1) == (0.0002, 3)
    assert queue.pop_until(0.1) == (0.0004, 1)
    assert queue.pop_until(0.1) is None
    assert len(queue) == 2
    assert queue.pop_until(1.0) == (0.5, 0)
    assert queue.pop_until(1.0) is None
    assert queue.pop_until(5.0) == (2.0, 2)
