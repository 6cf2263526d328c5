"""What gossip is measured against: unicast, a broker, a static hierarchy, hybrid multicast.

Theory of operation
-------------------
These are the ways grids disseminate today, written as dissemination modes
of the same node so that the simulator runs them with the same scenario, the
same faults and the same metrics as gossip (seed 000's claim is that gossip
beats them on reliability and load; seed 002's that hybrid multicast beats
unicast on link stress). Each is a ``Gossip`` whose spreading rule differs;
delivery, duplicate suppression, groups and the store are shared.

* ``unicast`` (n-times unicast): the origin sends one copy to every member it
  knows (of the group, for a group message). Nobody relays.
* ``broker`` (one central Event Manager, seed 001): the origin sends to the
  node whose service is ``broker``; the broker sends one copy to every member.
  If the broker is down, nothing arrives.
* ``hierarchy`` (DSO → substation → DTC → meter, seed 000's tariff scenario):
  a node relays to its children: the members of group ``parent:<its id>``,
  which the deployment (or the scenario runner) sets in each node's
  configuration. A dead inner node cuts its subtree off.
* ``hybrid`` (HAMcast, seed 002): inside a LAN domain one native multicast
  transmission reaches every node; between domains, the domains' gateways
  (nodes of group ``gateway``) gossip among themselves (push, infect-and-die,
  the message's fanout). A gateway that learns a message from another gateway
  multicasts it into its domain; a node that originates one multicasts it into
  its own domain and, if it is no gateway, its gateway takes it from there.
  Needs a driver with native multicast (the simulator has it).
"""

from __future__ import annotations

from gridmesh.protocols._host import Peer, Scope
from gridmesh.protocols.dissemination._gossip import Gossip
from gridmesh.protocols.dissemination._reliability import copies_for
from gridmesh.protocols.dissemination._store import MessageKey
from gridmesh.wire import Envelope

__all__ = ["BROKER_SERVICE", "GATEWAY_GROUP", "BaselineGossip", "parent_group"]

BROKER_SERVICE = "broker"
GATEWAY_GROUP = "gateway"


def parent_group(node_id: int) -> str:
    """The group a hierarchy node's children are configured with."""
    return f"parent:{node_id}"


class BaselineGossip(Gossip):
    """Unicast, broker, hierarchy or hybrid multicast, by ``config.mode``."""

    __slots__ = ()

    def _spread(
        self,
        message: Envelope,
        key: MessageKey,
        *,
        fanout: float,
        group: str,
        hops_left: int,
        came_from: int,
        now: float,
    ) -> None:
        mode = self._config.mode
        host = self._host
        me = host.me
        peers = self._peers
        if mode == "hybrid":
            self._hybrid(message, fanout, hops_left, came_from)
            return
        if mode == "unicast":
            targets = self._everyone(group) if not came_from else []
        elif mode == "broker":
            if me.service == BROKER_SERVICE and came_from in (0, message.origin):
                targets = [p for p in self._everyone(group) if p.node_id != message.origin]
            elif not came_from:
                targets = peers.sample(1, 0, Scope(service=BROKER_SERVICE))
            else:
                targets = []
        else:  # hierarchy: down to this node's children, whatever the hops
            targets = peers.sample(_ALL, came_from, Scope(group=parent_group(me.node_id)))
        if not targets:
            return
        if came_from:
            self.relayed += 1
            host.send(targets, message.relayed(host.node_id, max(hops_left, 0)))
        else:
            host.send(targets, message)

    def _everyone(self, group: str) -> list[Peer]:
        return self._peers.sample(_ALL, 0, Scope(group=group) if group else None)

    def _hybrid(self, message: Envelope, fanout: float, hops_left: int, came_from: int) -> None:
        host = self._host
        gateways = self._peers.sample(_ALL, 0, Scope(group=GATEWAY_GROUP))
        from_overlay = came_from != 0 and any(p.node_id == came_from for p in gateways)
        is_gateway = GATEWAY_GROUP in host.me.groups
        if not came_from:
            host.multicast(message)  # into this domain: one transmission for all of it
        elif is_gateway and from_overlay:
            host.multicast(message.relayed(host.node_id, max(hops_left, 0)))
        if not is_gateway or hops_left <= 0:
            return
        targets = [p for p in gateways if p.node_id != came_from]
        count = copies_for(fanout, host.rng)
        if len(targets) > count:
            targets = targets[:count]  # already shuffled by the sample
        if not targets:
            return
        if came_from:
            self.relayed += 1
            host.send(targets, message.relayed(host.node_id, hops_left))
        else:
            host.send(targets, message)


#: "As many as there are": a sample this large returns every eligible peer.
_ALL = 1 << 30
