"""Link technologies of seed 001 Table I as simulator link classes.

Theory of operation
-------------------
Seed 001 Table I gives each technology a download and an upload bandwidth
and a coverage; it gives **no latency**. The planner's presets
(``gridmesh.plan.TECHNOLOGY_PRESETS``) hold the table as printed; this
module reads them, never retypes them, and adds a one-way latency for one
event message of the paper's size (800 bytes = 6400 bits, IV.A):

    median_s = base_s(family) + 6400 / upload_bps + coverage_m / 2e8

* ``base_s`` is a stated assumption per family (``FAMILY_BASE_LATENCY_S``):
  the access delay a message meets before the wire (switching, contention,
  interleaving, radio scheduling, the satellite hop);
* ``6400 / upload_bps`` is the time to put the message on the link, from the
  table's upload bandwidth (the download one for a shared channel);
* ``coverage_m / 2e8`` is propagation over the table's coverage at two thirds
  of the speed of light (zero where the table gives no coverage).

A LAN technology's latency is uniform in ``[median/2, 3*median/2]``; a WAN
technology's is log-normal with that median and ``WAN_SIGMA`` (the shape of
``NetworkConfig``'s default WAN), so WAN links have tails and LAN links do not.
"""

from __future__ import annotations

from dataclasses import dataclass

from gridmesh.errors import ConfigError
from gridmesh.plan import TECHNOLOGY_PRESETS
from gridmesh.sim import LinkClass, LogNormalLatency, UniformLatency

__all__ = [
    "EVENT_MESSAGE_BITS",
    "FAMILY_BASE_LATENCY_S",
    "PROPAGATION_M_PER_S",
    "WAN_SIGMA",
    "LinkProfile",
    "link_profile",
]

#: Seed 001 IV.A: an event message is "almost 800 bytes (6400 bits)".
EVENT_MESSAGE_BITS = 6400
#: Signal speed in fibre and copper, about two thirds of c.
PROPAGATION_M_PER_S = 2e8
#: Log-normal shape of WAN latencies (as ``NetworkConfig``'s default WAN class).
WAN_SIGMA = 0.4
#: One-way access delay per Table I family, in seconds. Stated assumptions, not
#: from the seeds: switched Ethernet well under a millisecond; WiFi contention a
#: few ms; a fibre access network's routers a couple of ms; DSL interleaving
#: about 10 ms; WiMAX and 3G/4G radio scheduling tens of ms; a geostationary hop
#: about 270 ms (2 x 36,000 km at c).
FAMILY_BASE_LATENCY_S: dict[str, float] = {
    "Ethernet": 0.0002,
    "WiFi": 0.002,
    "Optical Fiber": 0.002,
    "DSL": 0.010,
    "WiMAX": 0.030,
    "3G/4G": 0.040,
    "Satellite": 0.270,
}


@dataclass(frozen=True, slots=True)
class LinkProfile:
    """One Table I technology with the latency gridmesh assumes for it."""

    technology: str  # the preset name, e.g. "dsl-24m"
    family: str
    scope: str  # "lan" or "wan"
    download_mbps: float
    upload_mbps: float  # the download bandwidth for a shared channel
    coverage_m: float | None
    median_latency_s: float

    def link_class(self, loss: float = 0.0) -> LinkClass:
        """The simulator's ``LinkClass`` for this technology, with ``loss`` (0..1)."""
        median = self.median_latency_s
        if self.scope == "lan":
            latency: UniformLatency | LogNormalLatency = UniformLatency(
                low_s=median / 2, high_s=median * 3 / 2
            )
        else:
            latency = LogNormalLatency(median_s=median, sigma=WAN_SIGMA)
        return LinkClass(latency=latency, loss=loss)


def link_profile(name: str, *, field: str = "link", source: str = "gridmesh.grid") -> LinkProfile:
    """The profile of Table I technology ``name``; ``ConfigError`` naming ``field`` if none."""
    preset = TECHNOLOGY_PRESETS.get(name) if isinstance(name, str) else None
    if preset is None:
        raise ConfigError(
            source,
            field,
            f"a Table I technology, one of: {', '.join(TECHNOLOGY_PRESETS)}",
            got=name,
        )
    tech = preset.technology
    assert tech.scope is not None and tech.family in FAMILY_BASE_LATENCY_S, tech.name
    upload_mbps = tech.download_mbps if tech.upload_mbps is None else tech.upload_mbps
    median = (
        FAMILY_BASE_LATENCY_S[tech.family]
        + EVENT_MESSAGE_BITS / (upload_mbps * 1e6)
        + (tech.coverage_m or 0.0) / PROPAGATION_M_PER_S
    )
    return LinkProfile(
        technology=tech.name,
        family=tech.family,
        scope=tech.scope,
        download_mbps=tech.download_mbps,
        upload_mbps=upload_mbps,
        coverage_m=tech.coverage_m,
        median_latency_s=median,
    )
