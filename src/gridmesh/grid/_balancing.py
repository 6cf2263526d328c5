"""ReDy balancing: governance units, their local decision and the central optimum.

Theory of operation
-------------------
Seed 003 (ReDy, sections 4-5) models every node of a smart grid (a home, a
factory, a plant) as one *governance unit* with detection units (meters) and
action units (actuators). The units "communicate the information relating to
their production and consumption" and "their possibilities of increasing and
decreasing", and balance the grid "with no centralized control" on a
best-effort basis. This module is the domain half of that, with no clock, no
messages and no global randomness: what one unit is electrically, what it
decides from what it knows, and what a central controller knowing everything
would achieve, to compare. ``gridmesh.scenarios._redy`` runs it over the
nodes' messages (a tree count and gossip of the totals, or push-sum).

**A unit** (``GovernanceUnit``) has a *net load* ``load - output`` (kW; positive:
it draws from the grid) and flexibility, how far it can move that net load:
``raise`` (start a shiftable device that waits, charge its battery, turn its
HVAC up, curtail its production) and ``lower`` (postpone a running shiftable
device, turn its HVAC down to its minimum, discharge its battery). Renewable
output follows the weather: ``output_kw`` is at a factor of 1 and the caller
passes the factor of the moment (``output_factor``), which scales the output
and the part of ``raise`` that is curtailment.

**The grid's imbalance** is the sum of the units' net loads (consumption minus
production; positive: a shortfall). ``U`` is the *uncontrolled* imbalance (no
unit acting), ``R`` and ``L`` the sums of the units' raise and lower.

**The local rule** (``balancing_share``, ``unit_action_kw``). Every unit moves
the same signed share ``s`` of its own flexibility in the needed direction::

    U > 0 (shortfall):  s = -min(1, U / L),  each unit lowers by |s| * lower
    U < 0 (surplus):    s = +min(1, -U / R), each unit raises by s * raise

If every unit knew ``U``, ``R`` and ``L`` the actions would add up to
``-sign(U) * min(|U|, R or L)``: exactly the central optimum, with no
coordination. ``s`` is a ratio of sums, so totals over a fair sample of the
units, or means per unit, serve as well: the count cancels, and a unit never
needs to know how many there are. What a unit knows may be a little off; the
error moves its action by its own flexibility times the error in ``s``, so
over the grid an error of 1% in ``s`` leaves ``F / |U|`` percent of the
imbalance (``F`` the flexibility in the needed direction): the more
flexibility for the imbalance, the more exact the units' knowledge must be.

*Why the uncontrolled imbalance.* A unit that estimated the imbalance left
*after* everyone's actions would react to the others' reactions: a feedback
loop that needs a gain, and oscillates when estimates lag an epoch behind.
Estimating what the grid would be with nobody acting makes the rule
stateless: an estimate gives the action directly, the next one replaces it,
and nothing accumulates between epochs.

**The central optimum** (``central_optimum_kw``): ``sign(U) * max(0, |U| - F)``
with ``F`` the flexibility in the needed direction. No rule does better: each
unit's action is clamped to ``[-lower, raise]`` (``realized_action_kw``), so the
actions add up to a value in ``[-L, R]`` and ``|imbalance| >= |optimum|``.

**Drawing a grid** (``UnitMix``, ``draw_units``). A unit is a *consumer* (a
home), a *prosumer* (a home with a rooftop PV array) or a *producer* (a
renewable plant). A home's devices are drawn with the shares of a
``HomeSpec`` (default ``DEFAULT_DEVICE_SHARES``) and the powers of
``DEVICE_PROFILES`` (docs/GRID.md, stated assumptions for a UK home): a
shiftable device runs now with probability ``running_share`` (then it can be
postponed: ``lower``) or waits (then it can start: ``raise``); an HVAC runs
somewhere in its range; a battery idles, able to charge or discharge at full
power. A plant produces its capacity times the output factor and can curtail
all of it; it cannot produce more (it is at its resource's maximum).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from gridmesh.errors import LocalProtocolError
from gridmesh.grid._roles import DEVICE_PROFILES, DeviceKind, DeviceUnit
from gridmesh.grid._topology import HomeSpec
from gridmesh.protocols import RandomSource

__all__ = [
    "UNIT_POWER_KW_MAX",
    "GovernanceUnit",
    "UnitKind",
    "UnitMix",
    "balancing_share",
    "central_optimum_kw",
    "draw_unit",
    "draw_units",
    "output_factor",
    "realized_action_kw",
    "unit_action_kw",
]

#: Largest load, output or flexibility of one unit (a large plant), kW.
UNIT_POWER_KW_MAX = 1_000_000.0


class UnitKind(StrEnum):
    """What a governance unit is, seen from the grid (seed 003, section 5)."""

    CONSUMER = "consumer"  # a home that only draws
    PROSUMER = "prosumer"  # a home with a rooftop PV array
    PRODUCER = "producer"  # a renewable plant


@dataclass(frozen=True, slots=True)
class GovernanceUnit:
    """One unit's electrical state: load, output (at an output factor of 1), flexibility.

    ``raise_load_kw`` is the part of its upward flexibility that is not
    curtailment (loads that can start, storage that can charge); curtailing
    its output adds the output of the moment. All figures are kW, >= 0.
    """

    kind: UnitKind
    load_kw: float
    output_kw: float
    raise_load_kw: float
    lower_kw: float

    def __post_init__(self) -> None:
        for name in ("load_kw", "output_kw", "raise_load_kw", "lower_kw"):
            value = getattr(self, name)
            if not (type(value) in (int, float) and 0.0 <= value <= UNIT_POWER_KW_MAX):
                raise LocalProtocolError(
                    f"a unit's {name} is a number in 0..{UNIT_POWER_KW_MAX:,.0f} kW; got {value!r}"
                )

    def net_kw(self, factor: float = 1.0) -> float:
        """Its net load with nobody acting: load minus output at ``factor``."""
        return self.load_kw - self.output_kw * factor

    def raise_kw(self, factor: float = 1.0) -> float:
        """How far it can raise its net load now: loads, storage, and curtailing its output."""
        return self.raise_load_kw + self.output_kw * factor


def output_factor(share: float, variation: float, period_s: float, now: float) -> float:
    """Renewable output as a share of peak at ``now``: ``share * (1 + variation * sin)``.

    The same for every unit (the sun and the wind are the grid's weather);
    ``variation`` in 0..1 is the relative amplitude over ``period_s``.
    """
    if variation == 0.0:
        return share
    return share * (1.0 + variation * math.sin(2.0 * math.pi * now / period_s))


def balancing_share(imbalance_kw: float, raise_kw: float, lower_kw: float) -> float:
    """The signed share of its flexibility every unit activates; any common scale.

    Negative: lower the net load by that share of ``lower`` (a shortfall);
    positive: raise it by that share of ``raise`` (a surplus). Arguments are
    the uncontrolled imbalance and the flexibilities, as totals or as means
    per unit. A grid that estimates no flexibility where it needs some asks
    for all of it.
    """
    if imbalance_kw > 0.0:
        return -1.0 if lower_kw <= 0.0 else -min(1.0, imbalance_kw / lower_kw)
    if imbalance_kw < 0.0:
        return 1.0 if raise_kw <= 0.0 else min(1.0, -imbalance_kw / raise_kw)
    return 0.0


def unit_action_kw(share: float, raise_kw: float, lower_kw: float) -> float:
    """The change of net load a unit with this flexibility makes for ``share`` (kW)."""
    assert -1.0 <= share <= 1.0, share
    return share * raise_kw if share >= 0.0 else share * lower_kw


def realized_action_kw(setpoint_kw: float, raise_kw: float, lower_kw: float) -> float:
    """What a set point does now that the flexibility is what it is: clamped to it."""
    return min(raise_kw, max(-lower_kw, setpoint_kw))


def central_optimum_kw(imbalance_kw: float, raise_kw: float, lower_kw: float) -> float:
    """The imbalance a controller knowing every unit leaves: ``sign(U) max(0, |U| - F)``."""
    if imbalance_kw > 0.0:
        return max(0.0, imbalance_kw - lower_kw)
    return min(0.0, imbalance_kw + raise_kw)


_PV_KW = DEVICE_PROFILES[DeviceKind.PV].production_kw_peak
#: The action units a home may have, with their default shares (a PV array makes a prosumer).
_HOME_DEVICES: tuple[DeviceKind, ...] = tuple(
    kind
    for kind, profile in DEVICE_PROFILES.items()
    if profile.unit is DeviceUnit.ACTION and kind is not DeviceKind.PV
)


@dataclass(frozen=True, slots=True)
class UnitMix:
    """How to draw a grid's units: kinds, a home's devices, plants' sizes.

    ``consumers``, ``prosumers``, ``producers``: shares of the units (adding up
    to 1); ``base_load_kw``: a home's inflexible load (lights, fridge),
    uniform in the range; ``producer_kw``: a plant's capacity, uniform in the
    range; ``running_share``: the chance a shiftable device runs now;
    ``homes``: the chance a home has each device (``HomeSpec``; sensors and
    PV are ignored here: a prosumer has a PV array, a consumer none).
    """

    consumers: float
    prosumers: float
    producers: float
    base_load_kw: tuple[float, float] = (0.2, 1.2)
    producer_kw: tuple[float, float] = (10.0, 50.0)
    running_share: float = 0.3
    homes: HomeSpec = field(default_factory=HomeSpec)

    def __post_init__(self) -> None:
        shares = (self.consumers, self.prosumers, self.producers)
        if any(not 0.0 <= share <= 1.0 for share in shares) or abs(sum(shares) - 1.0) > 1e-9:
            raise LocalProtocolError(
                f"unit shares are in 0..1 and add up to 1; got {', '.join(map(str, shares))}"
            )
        for name in ("base_load_kw", "producer_kw"):
            low, high = getattr(self, name)
            if not 0.0 <= low <= high <= UNIT_POWER_KW_MAX:
                raise LocalProtocolError(f"{name}: 0 <= low <= high; got {low}..{high}")
        if not 0.0 <= self.running_share <= 1.0:
            raise LocalProtocolError(f"running_share is in 0..1; got {self.running_share}")


def draw_units(count: int, mix: UnitMix, rng: RandomSource) -> list[GovernanceUnit]:
    """``count`` units drawn from ``mix``, one after the other, from ``rng`` only."""
    if count < 0:
        raise LocalProtocolError(f"a grid has 0 or more units; got {count}")
    return [draw_unit(mix, rng) for _ in range(count)]


def _uniform(rng: RandomSource, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return low + (high - low) * rng.random()


def draw_unit(mix: UnitMix, rng: RandomSource) -> GovernanceUnit:
    """One unit drawn from ``mix`` with ``rng`` (a fixed number of draws per device kind)."""
    pick = rng.random()
    if pick < mix.producers:
        return GovernanceUnit(UnitKind.PRODUCER, 0.0, _uniform(rng, mix.producer_kw), 0.0, 0.0)
    kind = UnitKind.PROSUMER if pick < mix.producers + mix.prosumers else UnitKind.CONSUMER
    load = _uniform(rng, mix.base_load_kw)
    raise_load = lower = 0.0
    for device in _HOME_DEVICES:
        # One draw per device kind, whatever its share: a mix's shares change
        # which homes have what, not the stream's positions.
        has, state = rng.random(), rng.random()
        if has >= mix.homes.share_of(device):
            continue
        profile = DEVICE_PROFILES[device]
        low, high = profile.power_kw_min, profile.power_kw_max
        if device is DeviceKind.BATTERY:  # idle: full power either way
            raise_load += high
            lower += -low
        elif not profile.shiftable:  # modulated (HVAC): somewhere in its range
            power = low + (high - low) * state
            load += power
            raise_load += high - power
            lower += power - low
        elif state < mix.running_share:  # a running cycle can be postponed
            load += high
            lower += high
        else:  # a waiting cycle can start now
            raise_load += high
    output = _PV_KW if kind is UnitKind.PROSUMER else 0.0
    return GovernanceUnit(kind, load, output, raise_load, lower)
