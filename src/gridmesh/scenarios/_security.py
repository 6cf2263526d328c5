"""Scenario security: every simulated node certified by one authority, by role.

With ``[security] enabled = true`` a scenario's nodes are secure nodes
(docs/SECURITY.md): a grid authority is made from the run's seed, and every
node gets a certificate for its role (``[security.roles]`` maps a scenario
role's name to a PKI role; a role named like a PKI role maps to it) and an
Ed25519 key drawn from the seed, so the run stays a pure function of
(scenario, seed). The simulated clock starts at ``EPOCH_S``.
"""

from __future__ import annotations

from random import Random

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field

from gridmesh.security import (
    Authority,
    Role,
    create_authority,
    issue_node_certificate,
    load_authority,
    verify_node_certificate,
)
from gridmesh.security._link import LinkCredentials

__all__ = ["EPOCH_S", "SecuritySpec", "scenario_credentials"]

#: Unix time at simulated time 0: certificates are valid around it.
EPOCH_S = 1_800_000_000.0
_VALID_DAYS = 30


class SecuritySpec(BaseModel):
    """``[security]``: make every node a secure node of one simulated authority."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    roles: dict[str, Role] = Field(
        default_factory=dict,
        description="scenario role name -> PKI role (dso, aggregator, substation, dtc, "
        "meter, emd, device); a role named like a PKI role needs no entry",
    )

    def pki_role(self, name: str) -> Role | None:
        """The PKI role of scenario role ``name``, or None if it has none."""
        if name in self.roles:
            return self.roles[name]
        try:
            return Role(name)
        except ValueError:
            return None


def _key(rng: Random) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))


def scenario_credentials(roles: list[Role], seed: int) -> dict[int, LinkCredentials]:
    """Credentials for nodes 1..len(roles) (``roles[i]`` is node i+1's), from ``seed``."""
    rng = Random(f"gridmesh-security:{seed}")
    authority_key = _key(rng)
    issued = EPOCH_S - 3600
    authority: Authority = load_authority(
        create_authority("Simulated grid", authority_key, now=issued, valid_days=_VALID_DAYS)
    )
    credentials: dict[int, LinkCredentials] = {}
    for node_id, role in enumerate(roles, start=1):
        key = _key(rng)
        der = issue_node_certificate(
            authority,
            authority_key,
            key.public_key(),
            node_id=node_id,
            role=role,
            permissions=None,
            serial=node_id,
            now=issued,
            valid_days=_VALID_DAYS,
        )
        identity = verify_node_certificate(der, authority, now=EPOCH_S)
        credentials[node_id] = LinkCredentials(authority, identity, key, epoch_s=EPOCH_S)
    return credentials
