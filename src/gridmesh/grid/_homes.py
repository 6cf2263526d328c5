"""The devices of homes, and how they answer their Control Policy Manager's commands.

Theory of operation
-------------------
Seed 000's first scenario ends inside the home: the tariff falls, "the smart
meters show it and the devices react (HVAC pre-heats, dishwashers start
early)". Seed 004 puts the decision in the home's energy management device:
the price is "below its preconfigured threshold" and it "can send start
signals to the washing machine, heat pump". In gridmesh that decision is a
rule (``RuleEngine``, e.g. ``price_responsive_shift``) and its output a
*commandable* ``Signal``; this module is what the devices then do.

* **A home** holds at most one device of each ``DeviceKind``, drawn once per
  home from a ``HomeSpec``'s shares: one ``rng.random()`` per kind, in
  ``DeviceKind`` order (``draw_home``, ``draw_homes``). A home is a bitmask of kinds, so a
  fleet of 10^5 homes is one ``array`` of small integers.
* **A command** names what it wants in its payload (table ``ACTION_KINDS``):
  ``start_early`` with a ``device_class`` (``price_responsive_shift``, or a
  rule's fixed payload) starts that kind; ``charge_storage`` charges the
  battery; ``start_flexible_loads`` starts every shiftable load. Any other
  action (``release``, ``curtail_pv``, ``shed``) moves no load and is counted
  as not applied, with its reason. Informational signals command nothing.
* **A reaction** moves a device's cycle to now: it draws ``power_kw`` more
  than it would have for ``run_s`` seconds (``DeviceReaction``). The default
  power is the profile's ``power_kw_max`` less what the device draws anyway
  (``max(power_kw_min, 0)``): an HVAC pre-heats with 2.5 kW above its 0.5 kW
  floor, an EV charger with its 7.4 kW. While that cycle runs, another
  command changes nothing (counted ``already_running``): a device is not
  started twice.
* Only action units with a positive reaction power can react
  (``REACTIVE_KINDS``): sensors draw nothing, and a PV array's range is
  production (curtailing it is not a load moved earlier).

The default run times are stated assumptions, as the profiles' powers are
(docs/GRID.md, "Homes and reactions"). Nothing here keeps a clock or draws
from global randomness: time comes in as ``now``, draws from the ``Random``
the caller seeds.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from random import Random
from types import MappingProxyType

from gridmesh.errors import LocalProtocolError
from gridmesh.grid._roles import DEVICE_PROFILES, DeviceKind, DeviceUnit
from gridmesh.grid._topology import HomeSpec

__all__ = [
    "ACTION_KINDS",
    "DEFAULT_RUN_S",
    "HOMES_MAX",
    "REACTIVE_KINDS",
    "RUN_S_MAX",
    "START_EARLY",
    "DeviceReaction",
    "HomeFleet",
    "Reaction",
    "commanded_kinds",
    "draw_home",
    "draw_homes",
    "kinds_of",
    "reaction_power_kw",
]

#: The most homes one fleet holds (ids are 1..homes_max).
HOMES_MAX = 10_000_000
#: The longest cycle a reaction moves (a day).
RUN_S_MAX = 86_400.0
#: The action that starts the ``device_class`` a command names.
START_EARLY = "start_early"

_KINDS: tuple[DeviceKind, ...] = tuple(DeviceKind)
_KIND_NAMES = frozenset(kind.value for kind in _KINDS)
_INDEX = {kind: index for index, kind in enumerate(_KINDS)}
_BIT = {kind: 1 << index for kind, index in _INDEX.items()}
#: A device's key in a fleet: ``home * _KEYS_PER_HOME + kind index``.
_KEYS_PER_HOME = 16
assert len(_KINDS) <= _KEYS_PER_HOME


def reaction_power_kw(kind: DeviceKind) -> float:
    """What a device of ``kind`` draws above its floor when it reacts (0: it cannot)."""
    profile = DEVICE_PROFILES[kind]
    if profile.unit is not DeviceUnit.ACTION:
        return 0.0
    return max(0.0, profile.power_kw_max - max(profile.power_kw_min, 0.0))


#: The kinds that can move load earlier: action units with a positive reaction power.
REACTIVE_KINDS: frozenset[DeviceKind] = frozenset(k for k in _KINDS if reaction_power_kw(k) > 0)

#: How long a moved cycle draws its reaction power (stated assumptions for a UK home):
#: an hour of HVAC pre-heating or of a 3 kW immersion heater; 45 min of a dishwasher's
#: heating (1.5 kWh) and 30 min of a washing machine's (1 kWh); two hours of an EV
#: charger (14.8 kWh) and of a battery charging (its 10 kWh at 5 kW).
DEFAULT_RUN_S: Mapping[DeviceKind, float] = MappingProxyType(
    {
        DeviceKind.HVAC: 3600.0,
        DeviceKind.WATER_HEATER: 3600.0,
        DeviceKind.DISHWASHER: 2700.0,
        DeviceKind.WASHING_MACHINE: 1800.0,
        DeviceKind.EV_CHARGER: 7200.0,
        DeviceKind.BATTERY: 7200.0,
    }
)
assert set(DEFAULT_RUN_S) == REACTIVE_KINDS, "a run time for every reactive kind"

#: Actions that name their kinds themselves (``start_early`` names one in ``device_class``).
ACTION_KINDS: Mapping[str, tuple[DeviceKind, ...]] = MappingProxyType(
    {
        "charge_storage": (DeviceKind.BATTERY,),
        "start_flexible_loads": tuple(
            k for k in _KINDS if k in REACTIVE_KINDS and DEVICE_PROFILES[k].shiftable
        ),
    }
)


@dataclass(frozen=True, slots=True)
class DeviceReaction:
    """How a device of ``kind`` reacts: ``power_kw`` more, for ``run_s`` seconds."""

    kind: DeviceKind
    power_kw: float
    run_s: float

    def __post_init__(self) -> None:
        kind = DeviceKind(self.kind)
        object.__setattr__(self, "kind", kind)
        most_kw = reaction_power_kw(kind)
        if most_kw <= 0:
            raise LocalProtocolError(f"device {kind.value!r} cannot react (no load to move)")
        if not 0 < self.power_kw <= most_kw:  # NaN fails too
            raise LocalProtocolError(
                f"device {kind.value!r}: power_kw in (0, {most_kw}]; got {self.power_kw!r}"
            )
        if not 0 < self.run_s <= RUN_S_MAX:
            raise LocalProtocolError(
                f"device {kind.value!r}: run_s in (0, {RUN_S_MAX}]; got {self.run_s!r}"
            )

    @classmethod
    def default(cls, kind: DeviceKind) -> DeviceReaction:
        """The profile's reaction power and the default run time of ``kind``."""
        return cls(kind, reaction_power_kw(kind), DEFAULT_RUN_S[kind])

    @property
    def energy_kwh(self) -> float:
        """The energy of the moved cycle."""
        return self.power_kw * self.run_s / 3600.0


@dataclass(frozen=True, slots=True)
class Reaction:
    """One device of ``home`` that moved its cycle to ``start_s``."""

    home: int
    kind: DeviceKind
    start_s: float
    power_kw: float
    until_s: float


def draw_home(homes: HomeSpec, rng: Random) -> int:
    """The kinds one home holds, as a bitmask (``kinds_of`` reads it)."""
    return draw_homes(homes, 1, rng)[0]


def draw_homes(homes: HomeSpec, count: int, rng: Random) -> list[int]:
    """``count`` homes drawn one after the other: the same as ``draw_home`` ``count`` times."""
    shares = [(homes.share_of(kind), _BIT[kind]) for kind in _KINDS]
    draw = rng.random
    masks = []
    for _ in range(count):
        mask = 0
        for share, bit in shares:  # one draw per kind, whatever the shares: streams stay aligned
            if draw() < share:
                mask |= bit
        masks.append(mask)
    return masks


def kinds_of(mask: int) -> tuple[DeviceKind, ...]:
    """The kinds in a home's bitmask, in ``DeviceKind`` order."""
    return tuple(kind for kind in _KINDS if mask & _BIT[kind])


def commanded_kinds(payload: Mapping[str, object]) -> tuple[DeviceKind, ...] | str:
    """The kinds a command's payload starts, or why it starts none (a counter's name)."""
    action = payload.get("action")
    if action == START_EARLY:
        name = payload.get("device_class")
        if not isinstance(name, str) or name not in _KIND_NAMES:
            return "unknown_device_class"
        kind = DeviceKind(name)
        return (kind,) if kind in REACTIVE_KINDS else "not_reactive"
    if isinstance(action, str):
        kinds = ACTION_KINDS.get(action)
        return kinds if kinds is not None else f"action.{action}"
    return "no_action"


class HomeFleet:
    """The devices of homes ``1..homes_max`` and the cycles commands moved.

    State: one bitmask per home (``array('H')``) and, per device that has
    moved a cycle, when its last one ends. ``counters`` counts commands and
    why those that moved nothing did not.
    """

    __slots__ = ("_masks", "_reactions", "_running_until", "counters")

    def __init__(
        self, homes_max: int, reactions: Mapping[DeviceKind, DeviceReaction] | None = None
    ) -> None:
        if type(homes_max) is not int or not 0 <= homes_max <= HOMES_MAX:
            raise LocalProtocolError(f"homes_max in 0..{HOMES_MAX}; got {homes_max!r}")
        given = dict(reactions or {})
        for kind, reaction in given.items():
            if reaction.kind is not kind:
                raise LocalProtocolError(f"the reaction given for {kind} is {reaction.kind}'s")
        self._reactions = {
            kind: given.get(kind) or DeviceReaction.default(kind)
            for kind in _KINDS
            if kind in REACTIVE_KINDS
        }
        self._masks = array("H", bytes(2 * (homes_max + 1)))
        self._running_until: dict[int, float] = {}  # device key -> end of its last cycle
        self.counters: dict[str, int] = {}

    def add(self, home: int, mask: int) -> None:
        """Give ``home`` the devices of ``mask`` (``draw_home``)."""
        if not 1 <= home < len(self._masks) or not 0 <= mask < 1 << len(_KINDS):
            raise LocalProtocolError(f"home {home} or device mask {mask} out of range")
        self._masks[home] = mask

    def mask_of(self, home: int) -> int:
        return self._masks[home]

    def moved_devices(self) -> list[tuple[int, DeviceKind]]:
        """Every device that has moved a cycle, as (home, kind), in no set order."""
        return [
            (key // _KEYS_PER_HOME, _KINDS[key % _KEYS_PER_HOME]) for key in self._running_until
        ]

    def reaction_of(self, kind: DeviceKind) -> DeviceReaction:
        """How devices of a reactive ``kind`` react."""
        return self._reactions[kind]

    def command(self, home: int, payload: Mapping[str, object], now: float) -> list[Reaction]:
        """Apply one command to ``home``'s devices at ``now``; the devices that reacted."""
        if not math.isfinite(now):
            raise LocalProtocolError(f"now must be finite, got {now!r}")
        self._count("commands")
        kinds = commanded_kinds(payload)
        if isinstance(kinds, str):
            self._count(f"not_applied.{kinds}")
            return []
        mask = self._masks[home]
        running = self._running_until
        reacted: list[Reaction] = []
        for kind in kinds:
            if not mask & _BIT[kind]:
                continue
            key = home * _KEYS_PER_HOME + _INDEX[kind]
            until_s = running.get(key)
            if until_s is not None and now < until_s:
                self._count("already_running")
                continue
            reaction = self._reactions[kind]
            until_s = now + reaction.run_s
            running[key] = until_s
            reacted.append(Reaction(home, kind, now, reaction.power_kw, until_s))
        if reacted:
            self._count("commands_applied")
        elif not any(mask & _BIT[kind] for kind in kinds):
            self._count("not_applied.no_device")
        return reacted

    def _count(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by
