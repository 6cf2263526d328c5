"""The actors of a smart grid, and the devices behind a home, as first-class objects.

Theory of operation
-------------------
The seeds name the same actors in different words. Seed 000 (WS-Gossip)
has the utility's information system (IS), distribution transformer
controllers (DTC) on a WAN, smart meters (SM) on a DTC's LAN and the IEDs
of a home area network. Seed 001 (LinkSmart) adds the DSO's substations,
DR aggregators, and industrial customers that the DSO controls directly
(V.A). Seed 003 (ReDy) splits a home into one *governance unit* (the
energy management device, EMD, of seed 004) and its *detection units*
(sensors) and *action units* (actuators).

A ``GridRole`` is one of these actors. Its ``RoleProfile`` says which PKI
``Role`` its certificate carries (``gridmesh.security``) and which topic
filters it publishes and subscribes to, and which services it exposes, by
default. A ``DeviceKind`` is one kind of device; its ``DeviceProfile`` adds
the device's electrical character: the power range it can be set to, whether
a whole cycle can be moved in time, what it produces and what it stores.

Rules that never bend:

* every filter of a profile is covered by its PKI role's
  ``DEFAULT_PERMISSIONS`` once ``{node_id}`` is expanded, so a node that uses
  its profile is never refused by its own certificate; a profile that breaks
  this does not construct (``LocalProtocolError``);
* a detection unit draws, produces and stores nothing (its power is its
  host's); an action unit has a non-empty power range;
* powers, productions and storages are finite and bounded
  (``DEVICE_POWER_KW_MAX``, ``DEVICE_STORAGE_KWH_MAX``).

The electrical defaults are stated assumptions for a UK home, not data from
the seeds (which give none); each profile says where its numbers come from.
"""

from __future__ import annotations

import difflib
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gridmesh.errors import LocalProtocolError
from gridmesh.security import DEFAULT_PERMISSIONS, Permissions, Role

__all__ = [
    "DEVICE_POWER_KW_MAX",
    "DEVICE_PROFILES",
    "DEVICE_STORAGE_KWH_MAX",
    "ROLE_PROFILES",
    "DeviceKind",
    "DeviceProfile",
    "DeviceUnit",
    "GridRole",
    "RoleProfile",
    "device_profile",
    "role_profile",
]

#: Largest power a device profile may give, either way (a small factory's load).
DEVICE_POWER_KW_MAX = 10_000.0
#: Largest storage a device profile may give.
DEVICE_STORAGE_KWH_MAX = 100_000.0
#: Any valid node id: profiles are checked against the PKI defaults expanded for it.
_PROBE_NODE_ID = 1


class GridRole(enum.StrEnum):
    """What a node is in the grid's hierarchy, from the top (seeds 000, 001, 003)."""

    DSO = "dso"  # the utility / DSO information system (seed 000's IS)
    AGGREGATOR = "aggregator"  # a demand-response aggregator (seed 001, V.A)
    INDUSTRIAL = "industrial"  # an industrial customer the DSO controls directly (001, V.A)
    SUBSTATION = "substation"  # a primary substation (seed 001, Fig. 2)
    DTC = "dtc"  # a distribution transformer controller (seed 000, IV)
    METER = "meter"  # a customer's smart meter (seeds 000, 001)
    EMD = "emd"  # a home energy management device: ReDy's governance unit (003, 004)
    DEVICE = "device"  # a detection unit or an action unit behind a home (seed 003)


class DeviceUnit(enum.StrEnum):
    """ReDy's two kinds of unit under a governance unit (seed 003, section 2)."""

    DETECTION = "detection"  # a sensor: it measures and publishes
    ACTION = "action"  # an actuator: it switches or sets a load, a source or a store


class DeviceKind(enum.StrEnum):
    """A kind of device behind a smart meter or an EMD."""

    POWER_SENSOR = "power_sensor"
    TEMPERATURE_SENSOR = "temperature_sensor"
    HVAC = "hvac"
    WATER_HEATER = "water_heater"
    DISHWASHER = "dishwasher"
    WASHING_MACHINE = "washing_machine"
    EV_CHARGER = "ev_charger"
    PV = "pv"
    BATTERY = "battery"


def _permissions(kind: str, filters: tuple[str, ...]) -> Permissions:
    """``filters`` validated as a permission list of ``kind`` (``InvalidTopic`` if not)."""
    return Permissions(**{kind: filters})


def _check_covered(owner: str, role: Role, kind: str, filters: tuple[str, ...]) -> None:
    """Raise unless the PKI defaults of ``role`` cover every filter of ``kind``.

    Publish, subscribe and expose grants all cover a requested filter the way
    ``Permissions.allows_subscribe`` does: every name the request matches is
    matched by one grant.
    """
    wanted = _permissions(kind, filters).expand(_PROBE_NODE_ID)
    granted = getattr(DEFAULT_PERMISSIONS[role].expand(_PROBE_NODE_ID), kind)
    as_grant = Permissions(subscribe=granted)
    for filter_ in getattr(wanted, kind):
        if not as_grant.allows_subscribe(filter_):
            raise LocalProtocolError(
                f"{owner}: {kind} filter {filter_!r} is not covered by PKI role "
                f"{role.value!r}'s default permissions {list(granted)}"
            )


@dataclass(frozen=True, slots=True)
class RoleProfile:
    """One actor: its PKI role and what it publishes, subscribes to and exposes by default.

    Filters may hold ``{node_id}`` (the node's own id, as in ``gridmesh.security``).
    """

    role: GridRole
    title: str
    pki_role: Role
    publishes: tuple[str, ...]
    subscribes: tuple[str, ...]
    exposes: tuple[str, ...]
    source: str  # where the seeds describe it

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", GridRole(self.role))
        object.__setattr__(self, "pki_role", Role(self.pki_role))
        for kind, filters in (
            ("publish", self.publishes),
            ("subscribe", self.subscribes),
            ("expose", self.exposes),
        ):
            _check_covered(f"role {self.role.value!r}", self.pki_role, kind, filters)

    def permissions(self, node_id: int) -> Permissions:
        """The profile's filters for node ``node_id``, as a ``Permissions`` (no calls)."""
        return Permissions(self.publishes, self.subscribes, (), self.exposes).expand(node_id)


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """One kind of device: its ReDy unit, its measurements and its electrical character.

    ``power_kw_min`` .. ``power_kw_max`` is the power an action unit can be set
    to (negative: it feeds the home, a battery discharging); ``shiftable``:
    a whole cycle can be moved in time without loss of service;
    ``production_kw_peak``: what it produces at best (PV); ``storage_kwh``:
    the energy it stores (battery).
    """

    kind: DeviceKind
    title: str
    unit: DeviceUnit
    measurements: tuple[str, ...]  # levels under MEASUREMENT/SENSOR/<node id>/
    power_kw_min: float
    power_kw_max: float
    shiftable: bool
    production_kw_peak: float = 0.0
    storage_kwh: float = 0.0
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", DeviceKind(self.kind))
        object.__setattr__(self, "unit", DeviceUnit(self.unit))
        where = f"device {self.kind.value!r}"
        for name in ("power_kw_min", "power_kw_max", "production_kw_peak", "storage_kwh"):
            value = getattr(self, name)
            if type(value) not in (int, float) or not math.isfinite(value):
                raise LocalProtocolError(f"{where}: {name} is a finite number; got {value!r}")
        if (
            not -DEVICE_POWER_KW_MAX
            <= self.power_kw_min
            <= self.power_kw_max
            <= (DEVICE_POWER_KW_MAX)
        ):
            raise LocalProtocolError(
                f"{where}: power_kw_min <= power_kw_max within +-{DEVICE_POWER_KW_MAX} kW; "
                f"got {self.power_kw_min}..{self.power_kw_max}"
            )
        if not 0 <= self.production_kw_peak <= DEVICE_POWER_KW_MAX:
            raise LocalProtocolError(f"{where}: production_kw_peak in 0..{DEVICE_POWER_KW_MAX}")
        if not 0 <= self.storage_kwh <= DEVICE_STORAGE_KWH_MAX:
            raise LocalProtocolError(f"{where}: storage_kwh in 0..{DEVICE_STORAGE_KWH_MAX}")
        if not self.measurements:
            raise LocalProtocolError(f"{where}: a device publishes at least one measurement")
        if self.unit is DeviceUnit.DETECTION and (
            self.power_kw_min
            or self.power_kw_max
            or self.production_kw_peak
            or self.storage_kwh
            or self.shiftable
        ):
            raise LocalProtocolError(
                f"{where}: a detection unit draws, produces, stores and shifts nothing"
            )
        if self.unit is DeviceUnit.ACTION and self.power_kw_min == self.power_kw_max:
            raise LocalProtocolError(f"{where}: an action unit has a non-empty power range")
        for kind, filters in (("publish", self.publishes), ("subscribe", self.subscribes)):
            _check_covered(where, Role.DEVICE, kind, filters)

    @property
    def flexible_kw(self) -> float:
        """How far an action unit's power can be moved: ``power_kw_max - power_kw_min``."""
        return self.power_kw_max - self.power_kw_min

    @property
    def publishes(self) -> tuple[str, ...]:
        """Its measurements under its own id, and (an action unit) its state."""
        own = tuple(f"MEASUREMENT/SENSOR/{{node_id}}/{name}" for name in self.measurements)
        if self.unit is DeviceUnit.ACTION:
            return (*own, "DEVICE/{node_id}/#")
        return own

    @property
    def subscribes(self) -> tuple[str, ...]:
        """An action unit hears tariffs and DR commands (seed 000, IV); a sensor nothing."""
        return ("TARIFF/#", "DR/COMMAND/#") if self.unit is DeviceUnit.ACTION else ()


_SIGNALS = ("TARIFF/#", "DR/COMMAND/#")
_OWN = "MEASUREMENT/SENSOR/{node_id}/#"

_ROLES = (
    RoleProfile(
        GridRole.DSO,
        "utility / DSO information system",
        Role.DSO,
        publishes=(*_SIGNALS, "DSO/{node_id}/#"),
        subscribes=("AGGREGATE/#", "DR/REPORT/#", "SUBSTATION/#"),
        exposes=("dso/#",),
        source="seed 000 IV (the IS); seed 001 IV, V.A (the DSO requests DR)",
    ),
    RoleProfile(
        GridRole.AGGREGATOR,
        "demand-response aggregator",
        Role.AGGREGATOR,
        publishes=("DR/COMMAND/#", "AGGREGATE/{node_id}/#"),
        subscribes=("TARIFF/#", "DR/#", "METER/#", "AGGREGATE/#"),
        exposes=("aggregator/#",),
        source="seed 001 V.A-B (per-minute reports from meters, commands back)",
    ),
    RoleProfile(
        GridRole.INDUSTRIAL,
        "industrial customer (controlled by the DSO directly)",
        # Its site controller is its own control intelligence (seed 004's EMD in a
        # BMS): it reports, takes DR commands and commands its own loads.
        Role.EMD,
        publishes=(_OWN, "EMD/{node_id}/#", "DR/REPORT/{node_id}/#"),
        subscribes=_SIGNALS,
        exposes=("emd/#",),
        source="seed 001 V.A ('for industrial customers the service is provided directly "
        "to the DSO'), Table II",
    ),
    RoleProfile(
        GridRole.SUBSTATION,
        "substation (data aggregator and control policy manager)",
        Role.SUBSTATION,
        publishes=(_OWN, "SUBSTATION/{node_id}/#", "AGGREGATE/{node_id}/#"),
        subscribes=(*_SIGNALS, "DTC/#", "AGGREGATE/#"),
        exposes=("substation/#",),
        source="seed 001 IV, Fig. 2",
    ),
    RoleProfile(
        GridRole.DTC,
        "distribution transformer controller",
        Role.DTC,
        publishes=(_OWN, "DTC/{node_id}/#", "AGGREGATE/{node_id}/#"),
        subscribes=(*_SIGNALS, "METER/#"),
        exposes=("dtc/#",),
        source="seed 000 IV (on the WAN; its meters on its LAN); seed 001 Fig. 2",
    ),
    RoleProfile(
        GridRole.METER,
        "smart meter",
        Role.METER,
        publishes=(_OWN, "METER/{node_id}/#", "DR/REPORT/{node_id}/#"),
        subscribes=_SIGNALS,
        exposes=("meter/#",),
        source="seed 000 IV; seed 001 V.A (total load and available DR, per minute)",
    ),
    RoleProfile(
        GridRole.EMD,
        "home energy management device (ReDy governance unit)",
        Role.EMD,
        publishes=(_OWN, "EMD/{node_id}/#", "DR/REPORT/{node_id}/#"),
        subscribes=_SIGNALS,
        exposes=("emd/#",),
        source="seed 003 section 4 (governance unit); seed 004 (EMD)",
    ),
    RoleProfile(
        GridRole.DEVICE,
        "device: a detection unit (sensor) or an action unit (actuator)",
        Role.DEVICE,
        publishes=(_OWN, "DEVICE/{node_id}/#"),
        subscribes=_SIGNALS,
        exposes=("device/#",),
        source="seed 003 section 2 (detection and action units); seed 000 IV (IED)",
    ),
)

#: Each grid role's profile, in the hierarchy's order (top first).
ROLE_PROFILES: Mapping[GridRole, RoleProfile] = MappingProxyType({p.role: p for p in _ROLES})

_ASSUMED = "stated assumption for a UK home (the seeds give no figures)"

_DEVICES = (
    DeviceProfile(
        DeviceKind.POWER_SENSOR, "power sensor (whole-home or circuit clamp)",
        DeviceUnit.DETECTION, ("PowerConsumption",), 0.0, 0.0, shiftable=False,
        source="seed 001 III-B3 (MEASUREMENT/SENSOR/1234/PowerConsumption); seed 003 4",
    ),
    DeviceProfile(
        DeviceKind.TEMPERATURE_SENSOR, "temperature sensor", DeviceUnit.DETECTION,
        ("Temperature",), 0.0, 0.0, shiftable=False, source="seed 003 section 2",
    ),
    DeviceProfile(
        # A heat pump or air conditioner modulates within the comfort band
        # (seed 000: 'HVAC can increase its consumption'); it is not moved whole.
        DeviceKind.HVAC, "HVAC (heat pump or air conditioning)", DeviceUnit.ACTION,
        ("PowerConsumption", "Temperature"), 0.5, 3.0, shiftable=False,
        source=f"seed 000 IV; 0.5-3 kW electrical: {_ASSUMED}",
    ),
    DeviceProfile(
        # A 3 kW immersion heater; its tank stores heat, so it can run earlier or later
        # (seed 003's 'electric balloon for heating water').
        DeviceKind.WATER_HEATER, "water heater (immersion, with tank)", DeviceUnit.ACTION,
        ("PowerConsumption", "Temperature"), 0.0, 3.0, shiftable=True,
        source=f"seed 003 section 4; 3 kW element: {_ASSUMED}",
    ),
    DeviceProfile(
        DeviceKind.DISHWASHER, "dishwasher", DeviceUnit.ACTION, ("PowerConsumption",),
        0.0, 2.0, shiftable=True,
        source=f"seed 000 IV (cycles start before schedule); 2 kW heating: {_ASSUMED}",
    ),
    DeviceProfile(
        DeviceKind.WASHING_MACHINE, "washing machine", DeviceUnit.ACTION, ("PowerConsumption",),
        0.0, 2.0, shiftable=True,
        source=f"seed 000 IV (night washing); 2 kW heating: {_ASSUMED}",
    ),
    DeviceProfile(
        # 7.4 kW: a 32 A single-phase home charger at 230 V.
        DeviceKind.EV_CHARGER, "electric vehicle charger", DeviceUnit.ACTION,
        ("PowerConsumption",), 0.0, 7.4, shiftable=True,
        source=f"seed 003 section 4 (EV to recharge without emergency); 7.4 kW: {_ASSUMED}",
    ),
    DeviceProfile(
        # A 4 kWp rooftop array whose inverter can be curtailed to nothing.
        DeviceKind.PV, "photovoltaic array (curtailable inverter)", DeviceUnit.ACTION,
        ("PowerProduction",), -4.0, 0.0, shiftable=False, production_kw_peak=4.0,
        source=f"seed 003 section 3 (solar production); 4 kWp: {_ASSUMED}",
    ),
    DeviceProfile(
        # 10 kWh usable, 5 kW either way (negative: discharging into the home).
        DeviceKind.BATTERY, "home battery", DeviceUnit.ACTION,
        ("PowerConsumption", "StateOfCharge"), -5.0, 5.0, shiftable=True, storage_kwh=10.0,
        source=f"seed 003 section 4 (battery as flexible consumer); 10 kWh / 5 kW: {_ASSUMED}",
    ),
)  # fmt: skip

#: Each device kind's profile, in ``DeviceKind`` order.
DEVICE_PROFILES: Mapping[DeviceKind, DeviceProfile] = MappingProxyType(
    {p.kind: p for p in _DEVICES}
)
assert tuple(DEVICE_PROFILES) == tuple(DeviceKind), "one profile per kind, in order"
assert tuple(ROLE_PROFILES) == tuple(GridRole), "one profile per role, in order"


def _unknown(what: str, name: object, known: list[str]) -> LocalProtocolError:
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return LocalProtocolError(f"no {what} {name!r}{hint}; one of: {', '.join(known)}")


def role_profile(role: GridRole | str) -> RoleProfile:
    """The profile of ``role`` (a ``GridRole`` or its name); ``LocalProtocolError`` if none."""
    try:
        return ROLE_PROFILES[GridRole(role)]
    except ValueError:
        raise _unknown("grid role", role, [r.value for r in GridRole]) from None


def device_profile(kind: DeviceKind | str) -> DeviceProfile:
    """The profile of ``kind`` (a ``DeviceKind`` or its name); ``LocalProtocolError`` if none."""
    try:
        return DEVICE_PROFILES[DeviceKind(kind)]
    except ValueError:
        raise _unknown("device kind", kind, [k.value for k in DeviceKind]) from None
