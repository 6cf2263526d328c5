"""Grid roles and device profiles: PKI mapping, topics within the PKI defaults, electrics."""

from __future__ import annotations

import dataclasses
import math

import pytest

from gridmesh.errors import InvalidTopic, LocalProtocolError
from gridmesh.grid import (
    DEVICE_PROFILES,
    ROLE_PROFILES,
    DeviceKind,
    DeviceProfile,
    DeviceUnit,
    GridRole,
    RoleProfile,
    device_profile,
    role_profile,
)
from gridmesh.security import DEFAULT_PERMISSIONS, Role, default_permissions

NODE = 4242
OTHER = 4243


def test_every_grid_role_has_a_profile_in_hierarchy_order() -> None:
    assert tuple(ROLE_PROFILES) == tuple(GridRole)
    assert [r.value for r in GridRole] == [
        "dso",
        "aggregator",
        "industrial",
        "substation",
        "dtc",
        "meter",
        "emd",
        "device",
    ]


def test_each_grid_role_certifies_as_its_pki_role() -> None:
    assert {role: p.pki_role for role, p in ROLE_PROFILES.items()} == {
        GridRole.DSO: Role.DSO,
        GridRole.AGGREGATOR: Role.AGGREGATOR,
        GridRole.INDUSTRIAL: Role.EMD,  # a site controller: reports, obeys DR, drives its loads
        GridRole.SUBSTATION: Role.SUBSTATION,
        GridRole.DTC: Role.DTC,
        GridRole.METER: Role.METER,
        GridRole.EMD: Role.EMD,
        GridRole.DEVICE: Role.DEVICE,
    }
    # Every PKI role is some grid role's.
    assert {p.pki_role for p in ROLE_PROFILES.values()} == set(Role)


@pytest.mark.parametrize("role", list(GridRole))
def test_a_role_profile_stays_within_its_certificate(role: GridRole) -> None:
    profile = ROLE_PROFILES[role]
    granted = default_permissions(profile.pki_role, NODE)
    wanted = profile.permissions(NODE)
    as_grant = {
        "publish": type(granted)(subscribe=granted.publish),
        "subscribe": granted,
        "expose": type(granted)(subscribe=granted.expose),
    }
    for kind, grant in as_grant.items():
        for filter_ in getattr(wanted, kind):
            assert grant.allows_subscribe(filter_), (role, kind, filter_)
    assert profile.publishes and profile.source


def test_a_node_publishes_only_under_its_own_id() -> None:
    for role in (GridRole.METER, GridRole.DTC, GridRole.SUBSTATION, GridRole.EMD):
        mine = ROLE_PROFILES[role].permissions(NODE)
        assert mine.allows_publish(f"MEASUREMENT/SENSOR/{NODE}/PowerConsumption")
        assert not mine.allows_publish(f"MEASUREMENT/SENSOR/{OTHER}/PowerConsumption")


def test_commandable_signals_come_only_from_the_dso_and_aggregators() -> None:
    for role, profile in ROLE_PROFILES.items():
        commands = profile.permissions(NODE).allows_publish("DR/COMMAND/region/London")
        assert commands == (role in (GridRole.DSO, GridRole.AGGREGATOR)), role


def test_field_devices_hear_tariffs_and_dr_commands() -> None:
    for role in (GridRole.INDUSTRIAL, GridRole.DTC, GridRole.METER, GridRole.EMD):
        mine = ROLE_PROFILES[role].permissions(NODE)
        assert mine.allows_subscribe("TARIFF/#") and mine.allows_subscribe("DR/COMMAND/#")


def test_a_profile_wider_than_its_certificate_does_not_construct() -> None:
    with pytest.raises(LocalProtocolError, match="not covered by PKI role 'meter'"):
        RoleProfile(GridRole.METER, "rogue", Role.METER, ("TARIFF/#",), (), (), "test")
    with pytest.raises(LocalProtocolError, match="subscribe filter '#'"):
        RoleProfile(GridRole.DEVICE, "nosy", Role.DEVICE, (), ("#",), (), "test")
    with pytest.raises(InvalidTopic):
        RoleProfile(GridRole.METER, "typo", Role.METER, ("METER/{nodeid}/#",), (), (), "test")


def test_profiles_are_frozen_and_slotted() -> None:
    profile = ROLE_PROFILES[GridRole.METER]
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.title = "x"  # type: ignore[misc]
    assert not hasattr(profile, "__dict__")
    device = DEVICE_PROFILES[DeviceKind.PV]
    with pytest.raises(dataclasses.FrozenInstanceError):
        device.power_kw_max = 1.0  # type: ignore[misc]
    assert not hasattr(device, "__dict__")


def test_roles_and_devices_are_looked_up_by_name_with_a_hint() -> None:
    assert role_profile("dtc") is ROLE_PROFILES[GridRole.DTC]
    assert role_profile(GridRole.EMD).role is GridRole.EMD
    assert device_profile("ev_charger") is DEVICE_PROFILES[DeviceKind.EV_CHARGER]
    with pytest.raises(LocalProtocolError, match="did you mean 'meter'"):
        role_profile("metre")
    with pytest.raises(LocalProtocolError, match="no device kind 'toaster'"):
        device_profile("toaster")


# -- devices ---------------------------------------------------------------


def test_every_device_kind_has_a_profile() -> None:
    assert tuple(DEVICE_PROFILES) == tuple(DeviceKind)
    assert {k for k, p in DEVICE_PROFILES.items() if p.unit is DeviceUnit.DETECTION} == {
        DeviceKind.POWER_SENSOR,
        DeviceKind.TEMPERATURE_SENSOR,
    }


def test_detection_units_measure_and_action_units_move_power() -> None:
    for kind, profile in DEVICE_PROFILES.items():
        assert all(math.isfinite(x) for x in (profile.power_kw_min, profile.power_kw_max))
        if profile.unit is DeviceUnit.DETECTION:
            assert profile.flexible_kw == 0 and not profile.shiftable, kind
            assert profile.subscribes == (), "a sensor listens to nothing"
        else:
            assert profile.flexible_kw > 0, kind
            assert profile.subscribes == ("TARIFF/#", "DR/COMMAND/#")
            assert "DEVICE/{node_id}/#" in profile.publishes


def test_device_electrical_character() -> None:
    shiftable = {k for k, p in DEVICE_PROFILES.items() if p.shiftable}
    assert shiftable == {
        DeviceKind.WATER_HEATER,
        DeviceKind.DISHWASHER,
        DeviceKind.WASHING_MACHINE,
        DeviceKind.EV_CHARGER,
        DeviceKind.BATTERY,
    }
    assert DEVICE_PROFILES[DeviceKind.HVAC].shiftable is False  # modulated, not moved whole
    pv = DEVICE_PROFILES[DeviceKind.PV]
    assert pv.production_kw_peak == 4.0 and pv.power_kw_min == -4.0 and pv.power_kw_max == 0.0
    battery = DEVICE_PROFILES[DeviceKind.BATTERY]
    assert battery.storage_kwh == 10.0 and battery.flexible_kw == 10.0  # -5..+5 kW
    assert DEVICE_PROFILES[DeviceKind.EV_CHARGER].power_kw_max == 7.4
    assert all(
        p.storage_kwh == 0 for k, p in DEVICE_PROFILES.items() if k is not DeviceKind.BATTERY
    )


@pytest.mark.parametrize("kind", list(DeviceKind))
def test_a_device_publishes_its_measurements_under_its_own_id(kind: DeviceKind) -> None:
    profile = DEVICE_PROFILES[kind]
    granted = DEFAULT_PERMISSIONS[Role.DEVICE].expand(NODE)
    for name in profile.measurements:
        assert granted.allows_publish(f"MEASUREMENT/SENSOR/{NODE}/{name}")
        assert f"MEASUREMENT/SENSOR/{{node_id}}/{name}" in profile.publishes


def _device(**changes: object) -> DeviceProfile:
    fields = {
        "kind": DeviceKind.DISHWASHER,
        "title": "test",
        "unit": DeviceUnit.ACTION,
        "measurements": ("PowerConsumption",),
        "power_kw_min": 0.0,
        "power_kw_max": 2.0,
        "shiftable": True,
    }
    return DeviceProfile(**(fields | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"power_kw_max": math.nan}, "power_kw_max is a finite number"),
        ({"power_kw_min": 3.0}, "power_kw_min <= power_kw_max"),
        ({"power_kw_max": 1e9}, "power_kw_min <= power_kw_max"),
        ({"storage_kwh": -1.0}, "storage_kwh"),
        ({"production_kw_peak": -1.0}, "production_kw_peak"),
        ({"power_kw_max": 0.0}, "non-empty power range"),
        ({"measurements": ()}, "at least one measurement"),
        ({"unit": DeviceUnit.DETECTION}, "detection unit draws"),
        ({"kind": "toaster"}, "toaster"),
    ],
)
def test_an_impossible_device_profile_is_refused(changes: dict[str, object], problem: str) -> None:
    with pytest.raises((LocalProtocolError, ValueError), match=problem):
        _device(**changes)
