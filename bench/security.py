"""What security costs: checks per second per core, and a tariff broadcast with security on and off.

What is measured
----------------
* **per-message operations**, one core, median of ``--repeats`` runs of
  ``--operations`` each: signing a gossip message as its origin
  (``OriginSigner.sign``: COSE_Sign1, EdDSA), the full check a receiver runs on
  a message it has not seen (``OriginVerifier.verify``: certificate cache
  hit, signature, hop count, ACL, replay window), the check on a copy (a hash),
  signing and checking a pub/sub event (``EventSigner``, ``EventVerifier``:
  certificate cache hit, signature, ACL), the Ed25519 check alone through
  libsodium (what gridmesh uses) and OpenSSL,
  sealing and opening a 200-byte link frame (ChaCha20-Poly1305), and a whole
  link handshake (certificate checks, two signatures, X25519). Target (issue 7):
  >= 10,000 signed events verified per second per core.
* **the tariff scenario**: ``--nodes`` simulated nodes, 10 ms links; the DSO
  (node 1) broadcasts a tariff, twice, 5 s apart, over two overlays: static full
  membership with push gossip to 6 random peers per hop (each broadcast picks
  new peers, so it needs new links), and HyParView with Plumtree over its stable
  active view (links made during a 30 s warm-up are reused; membership keeps
  running, and its shuffles still meet new peers). Each is run with plain
  nodes and with every node certified (links, signatures, ACL, replay,
  scores). Reported: wall time of each broadcast (simulation of the whole
  network in one process), messages, bytes, delivery; the ratios on/off.

    .venv/bin/python bench/security.py [--nodes 2000] [--operations 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from _machine import machine as machine_info
from gridmesh import __version__
from gridmesh.node import Node, NodeConfig
from gridmesh.protocols import Delivery, Peer
from gridmesh.protocols.dissemination import GossipConfig
from gridmesh.protocols.membership import FullMembershipConfig, HyParViewConfig, PeerDirectory
from gridmesh.protocols.pubsub import Event
from gridmesh.security import (
    AccessPolicy,
    ReplayGuard,
    Role,
    create_authority,
    issue_node_certificate,
    load_authority,
    verify_node_certificate,
)
from gridmesh.security._ed25519 import ed25519_valid
from gridmesh.security._events import EventSigner, EventVerifier
from gridmesh.security._link import Initiator, LinkCredentials, Responder
from gridmesh.security._origin import OriginSigner, OriginVerifier
from gridmesh.sim import ConstantLatency, LinkClass, NetworkConfig, Simulator
from gridmesh.wire import Envelope, Kind, decode, encode

EPOCH_S = 1_795_000_000.0
TARGET_VERIFIED_PER_S = 10_000


class Grid:
    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
        self.authority = load_authority(
            create_authority("Bench Grid", self.key, now=EPOCH_S - 60, valid_days=30)
        )

    def credentials(self, node_id: int) -> LinkCredentials:
        role = Role.DSO if node_id == 1 else Role.METER
        key = Ed25519PrivateKey.from_private_bytes(random.Random(node_id).randbytes(32))
        der = issue_node_certificate(
            self.authority,
            self.key,
            key.public_key(),
            node_id=node_id,
            role=role,
            permissions=None,
            serial=node_id,
            now=EPOCH_S - 60,
            valid_days=10,
        )
        identity = verify_node_certificate(der, self.authority, now=EPOCH_S)
        return LinkCredentials(self.authority, identity, key, epoch_s=EPOCH_S)


def rate(operation: Callable[[int], object], operations: int, repeats: int) -> dict[str, float]:
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for index in range(operations):
            operation(index)
        rates.append(operations / (time.perf_counter() - started))
    return {
        "median_per_s": round(statistics.median(rates)),
        "min_per_s": round(min(rates)),
        "max_per_s": round(max(rates)),
    }


def operations(operations: int, repeats: int) -> dict[str, dict[str, float]]:
    grid = Grid()
    dso, meter = grid.credentials(1), grid.credentials(7)
    signer = OriginSigner(dso, epoch=1)

    def message(index: int) -> Envelope:
        return Envelope(
            Kind.GOSSIP,
            index,
            1,
            1,
            "TARIFF/RTP",
            0,
            8,
            [6, {"eur_kwh": 0.12, "valid_from": "2026-11-22T00:00Z"}, "", False],
        )

    count = operations * repeats
    signed = [decode(encode(signer.sign(message(i)))) for i in range(count + 1)]
    verifier = OriginVerifier(meter, AccessPolicy(), ReplayGuard(window=4096, freshness_s=86_400))
    verifier.verify(signed[0], 0.0)  # the DSO's certificate is checked once, then cached
    fresh = iter(signed[1:])  # in sequence order, as an origin sends them
    copy = signed[0]
    rng = random.Random(1)
    initiator = Initiator(dso, rng)
    responder = Responder(meter, initiator.hello(), rng, 0.0)
    finish, link_out = initiator.on_reply(responder.reply(), 0.0)
    link_in = responder.on_finish(finish, 0.0)
    payload = bytes(200)
    frames = [link_out.seal(payload) for _ in range(count)]
    frame_iter = iter(frames)

    events = [
        Event("DR/COMMAND/region-1", {"shed_kw": 500 + i}, i, 1, i + 1, i) for i in range(count + 1)
    ]
    event_signer = EventSigner(dso)
    signed_events = [(e, event_signer.sign(e.content_bytes())) for e in events]
    event_verifier = EventVerifier(AccessPolicy(), verifier.identities, freshness_s=86_400)
    event_iter = iter(signed_events)

    def check_event(index: int) -> None:
        event, auth = next(event_iter)
        event_verifier.verify(event.source, event.topic, event.content_bytes(), auth, 0.0)

    data = encode(signed[0])
    sig = dso.key.sign(data)
    public = dso.key.public_key()

    def handshake(index: int) -> None:
        source = random.Random(index)
        first = Initiator(dso, source)
        answer = Responder(meter, first.hello(), source, 0.0)
        done, _ = first.on_reply(answer.reply(), 0.0)
        answer.on_finish(done, 0.0)

    return {
        "sign_gossip": rate(lambda i: signer.sign(message(i)), operations, repeats),
        "verify_new_message": rate(
            lambda i: verifier.verify(next(fresh), 0.0), operations, repeats
        ),
        "verify_copy": rate(lambda i: verifier.verify(copy, 0.0), operations, repeats),
        "sign_event": rate(
            lambda i: event_signer.sign(events[i].content_bytes()), operations, repeats
        ),
        "verify_event": rate(check_event, operations, repeats),
        # The signature check alone, the two libraries side by side (gridmesh uses libsodium).
        "ed25519_libsodium": rate(lambda i: ed25519_valid(public, sig, data), operations, repeats),
        "ed25519_openssl": rate(lambda i: public.verify(sig, data), operations, repeats),
        "seal_200_bytes": rate(lambda i: link_out.seal(payload), operations, repeats),
        "open_200_bytes": rate(lambda i: link_in.open(next(frame_iter)), operations, repeats),
        "handshake": rate(handshake, max(1, operations // 20), repeats),
    }


def tariff(nodes: int, secure: bool, overlay: str, seed: int = 1) -> dict[str, object]:
    """Two tariff broadcasts; ``overlay``: "full" (random gossip targets from full
    membership) or "hyparview" (Plumtree over the active view, after a 30 s warm-up)."""
    grid = Grid()
    link = LinkClass(latency=ConstantLatency(delay_s=0.01))
    sim = Simulator(seed=seed, network=NetworkConfig(lan=link, wan=link))
    if overlay == "full":
        directory = PeerDirectory(Peer(i, str(i)) for i in range(1, nodes + 1))
        config = NodeConfig(
            gossip=GossipConfig(fanout=6, hops=10),
            membership=FullMembershipConfig(exchange_interval_s=0),
        )
        warmup_s = 0.0
    else:
        directory = None
        config = NodeConfig(gossip=GossipConfig(mode="tree", hops=20), membership=HyParViewConfig())
        warmup_s = 30.0
    credentials = {i: grid.credentials(i) for i in range(1, nodes + 1)} if secure else {}
    contacts = random.Random(seed)
    sim.add_nodes(
        nodes,
        lambda i: Node(
            i,
            transport=sim,
            rng=sim.node_rng,
            config=config,
            address=str(i),
            directory=directory,
            seeds=()
            if directory is not None or i == 1
            else (Peer(contacts.randrange(1, i), str(contacts.randrange(1, i))),),
            credentials=credentials.get(i),
        ),
    )
    received: dict[int, int] = {}

    def on_deliver(node_id: int, delivery: Delivery) -> None:
        received[delivery.message_id] = received.get(delivery.message_id, 0) + 1

    sim.on_deliver = on_deliver
    results = []
    sim.run(warmup_s)
    for round_index, at in enumerate((warmup_s + 1.0, warmup_s + 6.0)):
        sent_before, bytes_before = sim.messages_sent, sim.bytes_sent

        def go(now: float, price: float = 0.12 + round_index / 100) -> None:
            node = sim.node(1)
            assert node is not None
            node.broadcast(price, topic="TARIFF/RTP", now=now)

        sim.schedule(at, go)
        started = time.perf_counter()
        sim.run(at + 5.0)
        results.append(
            {
                "wall_s": round(time.perf_counter() - started, 3),
                "messages": sim.messages_sent - sent_before,
                "bytes": sim.bytes_sent - bytes_before,
            }
        )
    delivered = sorted(received.values())
    return {
        "overlay": overlay,
        "secure": secure,
        "broadcasts": results,
        "delivered_per_broadcast": delivered,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--operations", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path("bench/results/security.json"))
    args = parser.parse_args()
    machine = machine_info()
    print(
        f"gridmesh {__version__} security costs; {machine['python']} on {machine['cpu']}, "
        f"{machine['cpus']} CPUs, load {machine['load_average_at_start']}"
    )
    ops = operations(args.operations, args.repeats)
    for name, figures in ops.items():
        print(
            f"  {name:<20} {figures['median_per_s']:>9,}/s (min {figures['min_per_s']:,}, "
            f"max {figures['max_per_s']:,})"
        )
    runs = []
    slowdown: dict[str, list[float]] = {}
    for overlay in ("full", "hyparview"):
        pair = [tariff(args.nodes, False, overlay), tariff(args.nodes, True, overlay)]
        runs += pair
        for run in pair:
            label = "security on " if run["secure"] else "security off"
            for index, broadcast in enumerate(run["broadcasts"]):  # type: ignore[attr-defined]
                print(
                    f"  tariff, {overlay}, {args.nodes:,} nodes, {label}, broadcast {index + 1}: "
                    f"{broadcast['wall_s']} s, {broadcast['messages']:,} messages, "
                    f"{broadcast['bytes']:,} bytes"
                )
            print(f"    delivered per broadcast: {run['delivered_per_broadcast']}")
        off, on = (run["broadcasts"] for run in pair)
        slowdown[overlay] = [
            round(b["wall_s"] / a["wall_s"], 2)  # type: ignore[index]
            for a, b in zip(off, on, strict=True)  # type: ignore[call-overload]
        ]
        print(f"  slowdown with {overlay} membership, security on vs off: {slowdown[overlay]}")
    report = {
        "benchmark": "security",
        "version": __version__,
        "command": f"bench/security.py --nodes {args.nodes} --operations {args.operations} "
        f"--repeats {args.repeats}",
        "machine": machine,
        "target_verified_per_s": TARGET_VERIFIED_PER_S,
        "operations": ops,
        "tariff": runs,
        "slowdown": slowdown,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
