"""Capacity planning: how many peers, customers and subsystems each link and region carries.

Theory of operation
-------------------
Seed 001 (Patti et al., IV.A and V.B, Tables I-III) sizes a deployment with
one ratio, a link's bandwidth over what one sender needs, asked three ways:

* **peers** (Table I): publishers and subscribers one Event Manager link serves;
* **customers** (Table II): customers one actor's download link receives from;
* **subsystems** (Table III): P2P subsystems each region needs, averaged over
  the WAN technologies.

The planner answers the same questions for any links, message sizes, rates
and regions. The paper's unit and rounding conventions differ between its
tables; they are explicit values here (``Conventions``), default to the
paper's, and are derived with their arithmetic in docs/PLANNING.md. Beyond
the paper, a plan can add gridmesh's own per-message overhead, *measured*
with the real encoder (``measure_wire_size``), and shows the per-node load
when push gossip replaces the central Event Manager (``gossip_load``).

Presets (``TECHNOLOGY_PRESETS``, ``UK_DSO_REGIONS``) carry what the paper
printed, so a plan can be set beside the paper row by row (``compare_*``).
"""

from gridmesh.plan._capacity import (
    CustomersRow,
    PeersRow,
    SubsystemsPlan,
    SubsystemsRow,
    Traffic,
    plan_customers,
    plan_peers,
    plan_subsystems,
)
from gridmesh.plan._compare import (
    Comparison,
    RegionComparison,
    compare_customers,
    compare_peers,
    compare_regions,
)
from gridmesh.plan._gossip import GossipLoad, default_fanout, gossip_load
from gridmesh.plan._inputs import (
    PAPER_HOUSES_PER_KM2,
    PlanSpec,
    Region,
    Technology,
    load_plan_file,
    parse_plan,
)
from gridmesh.plan._presets import (
    PAPER_UK_TOTAL,
    TECHNOLOGY_GROUPS,
    TECHNOLOGY_PRESETS,
    UK_DSO_REGIONS,
    PrintedRegionRow,
    PrintedTechnologyRow,
    RegionPreset,
    TechnologyPreset,
    resolve_regions,
    resolve_technologies,
)
from gridmesh.plan._printed import PrintedCount
from gridmesh.plan._records import format_bandwidth, format_coverage
from gridmesh.plan._units import (
    Conventions,
    CountRounding,
    MegabitUnit,
    MegabyteUnit,
    SubsystemAverage,
    SubsystemRounding,
    format_fixed,
    paper_conventions,
)
from gridmesh.plan._wire import COSE_SIGN1_EDDSA_BYTES, DEFAULT_TOPIC, WireSize, measure_wire_size

__all__ = [
    "COSE_SIGN1_EDDSA_BYTES",
    "DEFAULT_TOPIC",
    "PAPER_HOUSES_PER_KM2",
    "PAPER_UK_TOTAL",
    "TECHNOLOGY_GROUPS",
    "TECHNOLOGY_PRESETS",
    "UK_DSO_REGIONS",
    "Comparison",
    "Conventions",
    "CountRounding",
    "CustomersRow",
    "GossipLoad",
    "MegabitUnit",
    "MegabyteUnit",
    "PeersRow",
    "PlanSpec",
    "PrintedCount",
    "PrintedRegionRow",
    "PrintedTechnologyRow",
    "Region",
    "RegionComparison",
    "RegionPreset",
    "SubsystemAverage",
    "SubsystemRounding",
    "SubsystemsPlan",
    "SubsystemsRow",
    "Technology",
    "TechnologyPreset",
    "Traffic",
    "WireSize",
    "compare_customers",
    "compare_peers",
    "compare_regions",
    "default_fanout",
    "format_bandwidth",
    "format_coverage",
    "format_fixed",
    "gossip_load",
    "load_plan_file",
    "measure_wire_size",
    "paper_conventions",
    "parse_plan",
    "plan_customers",
    "plan_peers",
    "plan_subsystems",
    "resolve_regions",
    "resolve_technologies",
]
