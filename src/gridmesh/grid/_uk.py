"""The UK preset: seed 001 Table III's 14 DSO regions as a grid topology, scaled.

Theory of operation
-------------------
Seed 001 (V.B, Table III) splits the UK into the 14 DSO regions and counts
each region's DR customers (from 109 houses per km^2) and the subsystems an
actor must deploy there. The counts are read from ``gridmesh.plan``'s
transcription (``UK_DSO_REGIONS``), never retyped. ``uk_regions(scale)``
turns them into one ``RegionSpec`` per region:

* **customers** = ``round_half_up(printed * scale)``, at least 1, computed
  exactly (``Fraction``), so each region is within half a customer of its
  share of Table III;
* **aggregators** = ``ceil(subsystems * scale)``, at least 1: Table III's
  subsystems are the aggregators (or an aggregator's subsystems) a region
  needs for its data rate (V.B.2: "four DR aggregators should be
  contracted"); the rate scales with the customers, so at ``scale = 1`` each
  region has exactly its Table III row (87 in all: the printed TOTAL of 80
  does not add up, see ``PAPER_UK_TOTAL.discrepancy``);
* **DTCs** = ``ceil(customers / customers_per_dtc)`` and **substations** =
  ``ceil(DTCs / dtcs_per_substation)``. The seeds give neither ratio; the
  defaults are stated assumptions: ``CUSTOMERS_PER_DTC = 100`` (a 500 kVA
  secondary transformer at about 2 kVA after-diversity demand per home
  serves up to about 250 homes; 100 leaves the usual headroom) and
  ``DTCS_PER_SUBSTATION = 50`` (a primary substation of about 15 MVA firm
  capacity, about 5,000 homes). Scaling shrinks the number of DTCs and
  substations, not the size of a DTC's LAN, so a scaled-down grid keeps
  realistic fan-outs.
* **industrial customers**: none by default (the paper counts none); give
  ``industrial_per_region`` to add some under each DSO.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from gridmesh.errors import ConfigError
from gridmesh.grid._topology import (
    DEFAULT_TARIFFS,
    GridTopology,
    HomeSpec,
    LinkPlan,
    RegionSpec,
    build_topology,
)
from gridmesh.plan import UK_DSO_REGIONS

__all__ = [
    "CUSTOMERS_PER_DTC",
    "DTCS_PER_SUBSTATION",
    "UK_SCALE_DEFAULT",
    "uk_regions",
    "uk_topology",
]

#: Stated assumption: customers (meters) per distribution transformer controller.
CUSTOMERS_PER_DTC = 100
#: Stated assumption: DTCs (secondary transformers) per primary substation.
DTCS_PER_SUBSTATION = 50
#: About 32,000 customers: a topology that a laptop simulates in seconds.
UK_SCALE_DEFAULT = 1e-3
_SOURCE = "uk_topology()"


def _ratio(value: object, field: str) -> int:
    if type(value) is not int or not 1 <= value <= 1_000_000:
        raise ConfigError(_SOURCE, field, "an integer in 1..1000000", got=value)
    return value


def uk_regions(
    scale: float = UK_SCALE_DEFAULT,
    *,
    customers_per_dtc: int = CUSTOMERS_PER_DTC,
    dtcs_per_substation: int = DTCS_PER_SUBSTATION,
    industrial_per_region: int = 0,
) -> tuple[RegionSpec, ...]:
    """Table III's regions, in the paper's order, customers scaled by ``scale`` in (0, 1]."""
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale <= 1:
        raise ConfigError(_SOURCE, "scale", "a number in (0, 1]", got=scale)
    per_dtc = _ratio(customers_per_dtc, "customers_per_dtc")
    per_substation = _ratio(dtcs_per_substation, "dtcs_per_substation")
    if type(industrial_per_region) is not int or not 0 <= industrial_per_region <= 1_000_000:
        raise ConfigError(
            _SOURCE, "industrial_per_region", "an integer in 0..1000000", got=industrial_per_region
        )
    exact = Fraction(scale)
    specs = []
    for preset in UK_DSO_REGIONS:
        customers = max(1, math.floor(preset.printed.customers * exact + Fraction(1, 2)))
        dtcs = -(-customers // per_dtc)
        specs.append(
            RegionSpec(
                name=preset.region.name,
                customers=customers,
                substations=-(-dtcs // per_substation),
                dtcs=dtcs,
                aggregators=max(1, math.ceil(preset.printed.subsystems * exact)),
                industrial=industrial_per_region,
            )
        )
    return tuple(specs)


def uk_topology(
    scale: float = UK_SCALE_DEFAULT,
    *,
    customers_per_dtc: int = CUSTOMERS_PER_DTC,
    dtcs_per_substation: int = DTCS_PER_SUBSTATION,
    industrial_per_region: int = 0,
    homes: HomeSpec | None = None,
    tariffs: Sequence[tuple[str, float]] = DEFAULT_TARIFFS,
    links: LinkPlan | None = None,
    seed: int = 1,
) -> GridTopology:
    """The 14 UK DSO regions of seed 001 Table III, scaled by ``scale``, as a topology.

    ``uk_topology(1e-3)`` has about 32,000 customers. ``ConfigError`` on bad input.
    """
    regions = uk_regions(
        scale,
        customers_per_dtc=customers_per_dtc,
        dtcs_per_substation=dtcs_per_substation,
        industrial_per_region=industrial_per_region,
    )
    return build_topology(
        regions, homes=homes, tariffs=tariffs, links=links, seed=seed, source=_SOURCE
    )
