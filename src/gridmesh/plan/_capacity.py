"""The three capacity questions of seed 001 (IV.A, V.B), answered for any inputs.

Theory of operation
-------------------
Every answer is one ratio, a link's capacity over what one sender needs::

    per-sender load  = message_bits * messages_per_second          (bit/s)
    peers            = round(link_bps / per-sender load)            Table I
    customers        = round(download_bps / per-sender load)        Table II
    subsystems       = round(average over technologies t of
                             region load / download_bps(t))         Table III

* **Peers** (Table I): publishers use the Event Manager's download channel,
  subscribers its upload channel. A shared channel (WiFi, satellite) carries
  both: its one count bounds publishers *plus* subscribers.
* **Customers** (Table II): an actor receives every customer's report on its
  download channel.
* **Subsystems** (Table III): a region's load is ``customers * per-sender
  load``; one subsystem behind technology ``t`` carries ``download_bps(t)``.
  The paper averages over "each different WAN technology" without saying
  how; ``SubsystemAverage`` names the two readings and ``SubsystemRounding``
  the rounding. With several regions a TOTAL row plans the whole area as one
  (pooling, so it is not the sum of the regions' counts).

Rounding, megabits and megabytes come from ``Conventions``; arithmetic is
exact until the final rounding. Each row also carries the gossip load of the
same population (``_gossip``).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from gridmesh.plan._gossip import GossipLoad, gossip_load
from gridmesh.plan._inputs import Region, Technology
from gridmesh.plan._units import SECONDS_PER_MINUTE, Conventions, SubsystemAverage
from gridmesh.plan._wire import WireSize

__all__ = [
    "TOTAL_NAME",
    "CustomersRow",
    "PeersRow",
    "SubsystemsPlan",
    "SubsystemsRow",
    "Traffic",
    "plan_customers",
    "plan_peers",
    "plan_subsystems",
]

TOTAL_NAME = "TOTAL"


@dataclass(frozen=True, slots=True)
class Traffic:
    """What each peer or customer sends: payload size, rate, and gridmesh's overhead if any."""

    payload_bytes: int
    messages_per_second: Fraction
    wire: WireSize | None = None  # None: the payload is the whole message, as in the paper

    def __post_init__(self) -> None:
        assert self.payload_bytes >= 1 and self.messages_per_second > 0
        assert self.wire is None or self.wire.payload_bytes == self.payload_bytes

    @property
    def message_bytes(self) -> int:
        return self.payload_bytes if self.wire is None else self.wire.message_bytes

    @property
    def message_bits(self) -> int:
        return 8 * self.message_bytes

    @property
    def messages_per_minute(self) -> Fraction:
        return self.messages_per_second * SECONDS_PER_MINUTE

    @property
    def sender_bits_per_second(self) -> Fraction:
        return self.message_bits * self.messages_per_second


@dataclass(frozen=True, slots=True)
class PeersRow:
    """Table I: how many publishers and subscribers one Event Manager link serves."""

    technology: Technology
    publishers_max: int
    subscribers_max: int  # equal to publishers_max on a shared channel
    gossip: GossipLoad  # the publishers_max peers gossiping instead


@dataclass(frozen=True, slots=True)
class CustomersRow:
    """Table II: how many customers one actor's download link can receive from."""

    technology: Technology
    customers_max: int
    gossip: GossipLoad


@dataclass(frozen=True, slots=True)
class SubsystemsRow:
    """Table III: one region's load and the subsystems it needs."""

    name: str
    customers: int
    bytes_per_minute: Fraction
    load_bits_per_second: Fraction
    ratios: tuple[Fraction, ...]  # load / download_bps(t), one per technology
    per_technology: tuple[int, ...]  # each ratio rounded: subsystems with that technology only
    average: Fraction  # before rounding
    subsystems: int
    gossip: GossipLoad  # every customer gossiping its reports to every other


@dataclass(frozen=True, slots=True)
class SubsystemsPlan:
    technologies: tuple[Technology, ...]
    rows: tuple[SubsystemsRow, ...]
    total: SubsystemsRow | None  # the whole area as one, when there are several regions


def plan_peers(
    technologies: list[Technology],
    traffic: Traffic,
    conventions: Conventions,
    *,
    fanout: int | None = None,
) -> list[PeersRow]:
    """Table I for ``technologies``: publishers and subscribers per Event Manager link."""
    per_peer = traffic.sender_bits_per_second
    rows = []
    for technology in technologies:
        rounding = conventions.count_rounding
        publishers = rounding.apply(technology.download_bps(conventions.megabit) / per_peer)
        subscribers = rounding.apply(technology.upload_bps(conventions.megabit) / per_peer)
        load = gossip_load(
            publishers, traffic.messages_per_second, traffic.message_bits, fanout=fanout
        )
        rows.append(PeersRow(technology, publishers, subscribers, load))
    return rows


def plan_customers(
    technologies: list[Technology],
    traffic: Traffic,
    conventions: Conventions,
    *,
    fanout: int | None = None,
) -> list[CustomersRow]:
    """Table II for ``technologies``: customers one actor's download link receives from."""
    per_customer = traffic.sender_bits_per_second
    rows = []
    for technology in technologies:
        ratio = technology.download_bps(conventions.megabit) / per_customer
        customers = conventions.count_rounding.apply(ratio)
        load = gossip_load(
            customers, traffic.messages_per_second, traffic.message_bits, fanout=fanout
        )
        rows.append(CustomersRow(technology, customers, load))
    return rows


def plan_subsystems(
    regions: list[Region],
    technologies: list[Technology],
    traffic: Traffic,
    conventions: Conventions,
    *,
    fanout: int | None = None,
) -> SubsystemsPlan:
    """Table III for ``regions``: subsystems needed, averaged over ``technologies``."""
    assert technologies and regions
    capacities = tuple(t.download_bps(conventions.megabit) for t in technologies)

    def row(name: str, customers: int) -> SubsystemsRow:
        load = customers * traffic.sender_bits_per_second
        ratios = tuple(load / capacity for capacity in capacities)
        rounding = conventions.subsystem_rounding
        counts = tuple(rounding.apply(ratio) for ratio in ratios)
        if conventions.subsystem_average is SubsystemAverage.RATIO_MEAN:
            average = sum(ratios, Fraction(0)) / len(ratios)
        else:
            average = Fraction(sum(counts), len(counts))
        return SubsystemsRow(
            name=name,
            customers=customers,
            bytes_per_minute=customers * traffic.message_bytes * traffic.messages_per_minute,
            load_bits_per_second=load,
            ratios=ratios,
            per_technology=counts,
            average=average,
            subsystems=rounding.apply(average),
            gossip=gossip_load(
                customers, traffic.messages_per_second, traffic.message_bits, fanout=fanout
            ),
        )

    rows = tuple(row(region.name, region.customer_count) for region in regions)
    total = None
    if len(rows) > 1:
        total = row(TOTAL_NAME, sum(r.customers for r in rows))
    return SubsystemsPlan(tuple(technologies), rows, total)
