"""The gossip column: per-node load when push gossip replaces the Event Manager."""

from __future__ import annotations

from fractions import Fraction

from gridmesh.plan import (
    TECHNOLOGY_PRESETS,
    Traffic,
    default_fanout,
    gossip_load,
    paper_conventions,
    plan_peers,
)
from gridmesh.protocols.dissemination import FANOUT_MAX


def test_default_fanout_is_ceil_ln_n_plus_one() -> None:
    # ln 1 = 0 -> 1; ln 2 = 0.69 -> 2; ln 1562 = 7.35 -> 9; ln 10^6 = 13.8 -> 15
    assert [default_fanout(n) for n in (1, 2, 1562, 10**6)] == [1, 2, 9, 15]


def test_default_fanout_never_exceeds_what_relays_accept() -> None:
    assert default_fanout(10**40) == FANOUT_MAX


def test_each_node_carries_f_copies_of_every_message() -> None:
    # 1562 peers, 1 message/s of 6400 bits, f = 9: 9 * 1562 * 6400 = 89,971,200 bit/s
    load = gossip_load(1562, Fraction(1), 6400)
    assert (load.fanout, load.node_bits_per_second) == (9, 89_971_200)
    assert gossip_load(1562, Fraction(1), 6400, fanout=4).node_bits_per_second == 39_987_200


def test_peers_rows_carry_the_gossip_load_of_their_publishers() -> None:
    ethernet = TECHNOLOGY_PRESETS["ethernet-10m"].technology
    (row,) = plan_peers([ethernet], Traffic(800, Fraction(1)), paper_conventions("peers"))
    assert row.gossip.nodes == row.publishers_max == 1562
    assert row.gossip.node_bits_per_second == 89_971_200
    # per-minute senders: 1562 * 6400 / 60 * 9 = 1,499,520 bit/s
    per_minute = gossip_load(1562, Fraction(1, 60), 6400)
    assert per_minute.node_bits_per_second == 1_499_520
