"""The Python API on the simulator: 1,000 nodes, one broadcast (shown in README.md)."""

from gridmesh.node import Node, NodeConfig
from gridmesh.protocols import Peer
from gridmesh.protocols.dissemination import GossipConfig
from gridmesh.protocols.membership import FullMembershipConfig, PeerDirectory
from gridmesh.sim import Simulator

sim = Simulator(seed=1)
everyone = PeerDirectory(Peer(i, str(i)) for i in range(1, 1001))
config = NodeConfig(
    gossip=GossipConfig(fanout=10),  # about ln(1000) + 3
    membership=FullMembershipConfig(exchange_interval_s=0),
)
sim.add_nodes(
    1000,
    lambda i: Node(
        i,
        transport=sim,
        rng=sim.node_rng,
        config=config,
        address=sim.address_of(i),
        directory=everyone,
    ),
)
reached = set()
sim.on_deliver = lambda node_id, delivery: reached.add(node_id)
sim.schedule(1.0, lambda now: sim.node(1).broadcast({"price": 0.08}, topic="TARIFF", now=now))
sim.run(until_s=5.0)
print(len(reached), "of 999 nodes reached")
