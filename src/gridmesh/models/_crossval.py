"""The model's broadcast, run by the real protocol on the simulator, for cross-validation.

``simulated_broadcasts`` builds ``nodes`` real ``Node`` objects running push
gossip (the model's infection mode and mean fanout) with static full
membership on the deterministic simulator (10 ms links losing ``loss`` of the
copies), takes down the model's share of them (never node 1, the origin), and
broadcasts from node 1 ``runs`` times, one second apart. Each
broadcast is summarized as the same ``BroadcastRun`` the model returns, so
the two can be compared number by number: rounds are hop counts (read from
``hops_left`` on delivery), messages are the simulator's sends, duplicates
are copies delivered to live nodes minus first deliveries.

One down set serves all runs of a call; by symmetry (targets are uniform)
its choice does not change the distribution of any figure.
"""

from __future__ import annotations

import random

from gridmesh.errors import LocalProtocolError
from gridmesh.models._push import BroadcastRun, PushModel
from gridmesh.node import Node, NodeConfig
from gridmesh.protocols import Delivery, Peer
from gridmesh.protocols.dissemination import GossipConfig
from gridmesh.protocols.membership import FullMembershipConfig, PeerDirectory
from gridmesh.sim import ConstantLatency, LinkClass, NetworkConfig, Simulator

__all__ = ["simulated_broadcasts"]

_LINK_DELAY_S = 0.01
_SPACING_S = 1.0  # > HOPS_MAX links of 10 ms: broadcasts never overlap


def simulated_broadcasts(model: PushModel, runs: int, seed: int) -> list[BroadcastRun]:
    """``runs`` broadcasts of ``model``'s parameters by the real protocol on the simulator."""
    if model.fanout < 1.0:
        raise LocalProtocolError(f"the protocol's fanout is at least 1, got {model.fanout}")
    if not 1 <= runs <= 4096:
        raise LocalProtocolError(f"runs must be in 1..4096 (the seen cache), got {runs}")
    nodes, hops = model.nodes, model.hops
    link = LinkClass(latency=ConstantLatency(delay_s=_LINK_DELAY_S), loss=model.loss)
    sim = Simulator(seed=seed, network=NetworkConfig(lan=link, wan=link))
    config = NodeConfig(
        gossip=GossipConfig(
            mode="push", infection=model.mode, fanout=model.fanout, hops=hops, seen_cache_max=4096
        ),
        membership=FullMembershipConfig(exchange_interval_s=0),
    )
    directory = PeerDirectory(Peer(i, str(i)) for i in range(1, nodes + 1))
    sim.add_nodes(
        nodes,
        lambda i: Node(
            i,
            transport=sim,
            rng=sim.node_rng,
            config=config,
            address=sim.address_of(i),
            directory=directory,
        ),
    )
    for node_id in random.Random(f"crashed:{seed}").sample(
        range(2, nodes + 1), model.crashed_nodes
    ):
        sim.crash(node_id, at=0.0)
    first_round: dict[int, int] = {}  # node -> round of its first delivery, this run

    def delivered(node_id: int, delivery: Delivery) -> None:
        first_round.setdefault(node_id, hops - delivery.hops_left + 1)

    sim.on_deliver = delivered
    live = model.live_nodes
    results = []
    for run in range(runs):
        start = _SPACING_S * (run + 1)
        first_round.clear()
        sent, arrived = sim.messages_sent, sim.messages_delivered
        sim.schedule(start, lambda now: _broadcast(sim, now))
        sim.run(start + _SPACING_S / 2)
        per_round = [0] * (hops + 1)
        for round_index in first_round.values():
            per_round[round_index] += 1
        curve = [1]
        for count in per_round[1:]:
            curve.append(curve[-1] + count)
        last = max(first_round.values(), default=0)
        results.append(
            BroadcastRun(
                live=live,
                reached=1 + len(first_round),
                rounds=last,
                messages=sim.messages_sent - sent,
                duplicates=sim.messages_delivered - arrived - len(first_round),
                curve=tuple(curve),
            )
        )
    return results


def _broadcast(sim: Simulator, now: float) -> None:
    origin = sim.node(1)
    assert origin is not None, "the origin is never taken down"
    origin.broadcast({"tariff": "crossval"}, topic="MODEL/CROSSVAL", now=now)
