"""Grid services a scenario runs over its simulated nodes (docs/SCENARIOS.md, "Services").

A scenario file describes the network, the nodes and their faults; a
*service* is the grid's work done over them by the nodes' own protocol
objects: demand response (``[dr]``, ``_dr.py``), ReDy balancing
(``[redy]``, ``_redy.py``), devices reacting to tariffs and rules
(``[devices]`` and ``[[rules]]``, ``_devices.py``). The runner asks each
service, in this order:

1. ``spared()``: nodes that injected faults must leave alone (a service's
   origin, as the broadcasts' origins are spared);
2. ``equip(node)``: for every node built, and again for every restart, to give
   it readings, subscriptions, handlers;
3. ``install(sim)``: to schedule its work on the simulator's clock;
4. ``on_deliver(node_id, delivery)``: for every gossip delivery;
5. ``report(sim)``: once the run ends; what it returns is merged into the
   report (keys must not collide with the runner's own).

A service draws randomness only from ``Random`` streams derived from the run's
seed, so a run stays a pure function of (scenario, seed).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from gridmesh.node import Node
from gridmesh.protocols import Delivery
from gridmesh.sim import Simulator

__all__ = ["ScenarioService", "located"]


class ScenarioService(ABC):
    """One grid service a scenario runs; see the module's docstring for the calls."""

    def spared(self) -> set[int]:
        return set()

    def equip(self, node: Node) -> None:  # noqa: B027 - most services equip nothing
        """Give ``node`` (new, or restarted with fresh state) what the service needs."""

    @abstractmethod
    def install(self, sim: Simulator) -> None:
        """Schedule the service's work on ``sim``."""

    def on_deliver(self, node_id: int, delivery: Delivery) -> None:  # noqa: B027
        """A gossip message was delivered to ``node_id``'s application."""

    @abstractmethod
    def report(self, sim: Simulator) -> dict[str, object]:
        """What the run measured, merged into the report."""


def located(loc: tuple[str | int, ...], expected: str, got: object) -> ValidationError:
    """A validation error at ``loc`` (relative to the model raising it): file, field, value.

    For a service section's checks against the rest of the file; ``config_error``
    turns it into the ``ConfigError`` a user reads (``expected`` is its message).
    """
    error = PydanticCustomError("scenario", expected.replace("{", "(").replace("}", ")"))
    return ValidationError.from_exception_data(
        "scenario", [InitErrorDetails(type=error, loc=loc, input=got)]
    )
