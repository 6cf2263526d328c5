"""``gridmesh pki init | issue | revoke | show | demo``: the grid PKI on the command line.

Files follow ``gridmesh.keystore.PkiLayout``; certificates and revocations
are made by ``gridmesh.security._pki``. A bad flag is a ``ConfigError``; an
unusable file, a refused certificate or an impossible request prints one
paragraph naming the file or the value, and every one exits with status 2.
See docs/PKI.md.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gridmesh.errors import ConfigError, GridmeshError, InvalidTopic
from gridmesh.keystore import (
    PkiLayout,
    load_authority_file,
    load_revocations,
    read_certificate,
    read_private_key,
    write_certificate,
    write_file_atomically,
    write_group_key,
    write_private_key,
)
from gridmesh.security._confidential import GroupKey
from gridmesh.security._errors import CertificateInvalid, SecurityConfigError
from gridmesh.security._pki import (
    SERIAL_MAX,
    Authority,
    NodeIdentity,
    create_authority,
    inspect_node_certificate,
    issue_node_certificate,
    load_authority,
    verify_node_certificate,
)
from gridmesh.security._pki_revocation import (
    RevocationReason,
    make_revocation,
    verify_revocation,
)
from gridmesh.security._roles import NODE_ID_MAX, Permissions, Role, default_permissions

__all__ = ["DEMO_DTCS_MAX", "DEMO_METERS_PER_DTC_MAX", "add_pki_commands", "demo_node_ids"]

EXIT_USAGE = 2
COMMAND_LINE = "command line"
#: Node ids of ``pki demo`` (docs/PKI.md, "A demo grid").
DEMO_DSO_ID = 1
DEMO_AGGREGATOR_ID = 2
DEMO_SUBSTATION_ID = 10
DEMO_DTC_BASE_ID = 100
DEMO_DTCS_MAX = 99
DEMO_METERS_PER_DTC_MAX = 999
DEMO_METERS_MAX = 10_000
_CA_VALID_DAYS = 3650
_NODE_VALID_DAYS = 365
_LISTS = ("publish", "subscribe", "call", "expose")

_Handler = Callable[[argparse.Namespace], int]


def add_pki_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pki = commands.add_parser(
        "pki",
        help="the grid PKI: an authority, node certificates with roles, revocations",
        description="Make and inspect the grid's keys and certificates (see docs/PKI.md).",
    )
    actions = pki.add_subparsers(dest="action", required=True, metavar="ACTION")

    init = actions.add_parser("init", help="create the grid authority: DIR/ca.key and DIR/ca.crt")
    _add_dir(init)
    init.add_argument("--name", required=True, help="the authority's name (its certificate's CN)")
    _add_valid_days(init, _CA_VALID_DAYS)
    _add_passphrase(init, "encrypt DIR/ca.key with the passphrase on this file's first line")
    init.set_defaults(handler=_guarded(_init))

    issue = actions.add_parser("issue", help="a node key and certificate: DIR/nodes/N.key, N.crt")
    _add_dir(issue)
    issue.add_argument("--node-id", required=True, type=_node_id, metavar="N", help="1..2^64-1")
    issue.add_argument("--role", required=True, choices=[str(role) for role in Role])
    for name in _LISTS:
        issue.add_argument(
            f"--{name}",
            action="append",
            default=None,
            metavar="FILTER",
            help=f"{name} filter (repeatable); replaces the role's default {name} list",
        )
    _add_valid_days(issue, _NODE_VALID_DAYS)
    _add_passphrase(issue, "the passphrase of DIR/ca.key is on this file's first line")
    issue.add_argument(
        "--force", action="store_true", help="replace the node's existing key and certificate"
    )
    issue.set_defaults(handler=_guarded(_issue))

    revoke = actions.add_parser(
        "revoke", help="revoke a certificate: DIR/revocations/S.rev and DIR/revocations.cbor"
    )
    _add_dir(revoke)
    revoke.add_argument("--serial", required=True, type=_serial, metavar="S", help="decimal or 0x")
    revoke.add_argument(
        "--reason",
        choices=[str(reason) for reason in RevocationReason],
        default=str(RevocationReason.UNSPECIFIED),
    )
    revoke.add_argument(
        "--not-after",
        type=int,
        default=None,
        metavar="UNIX_S",
        help="when the certificate expires, if it is not under DIR/nodes",
    )
    _add_passphrase(revoke, "the passphrase of DIR/ca.key is on this file's first line")
    revoke.set_defaults(handler=_guarded(_revoke))

    group = actions.add_parser(
        "group-key",
        help="a group key for a confidential topic filter: DIR/groups/NAME.key (mode 0600)",
    )
    _add_dir(group)
    group.add_argument("--name", required=True, help="the key's name, e.g. dr-commands")
    group.add_argument(
        "--filter", required=True, metavar="FILTER", help="the topics it seals, e.g. 'DR/COMMAND/#'"
    )
    group.set_defaults(handler=_guarded(_group_key))

    show = actions.add_parser("show", help="print what a certificate says (node or authority)")
    show.add_argument("file", type=Path, metavar="FILE", help="a certificate, PEM or DER")
    show.add_argument("--ca", type=Path, default=None, help="verify it against this authority")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.set_defaults(handler=_guarded(_show))

    demo = actions.add_parser(
        "demo", help="keys for a demo grid: a dso, an aggregator, a substation, DTCs, meters"
    )
    _add_dir(demo)
    demo.add_argument("--dtcs", type=int, default=2, help=f"1..{DEMO_DTCS_MAX} (default 2)")
    demo.add_argument("--meters", type=int, default=10, help="in all, spread over the DTCs")
    demo.add_argument("--name", default="gridmesh demo grid", help="the authority's name")
    _add_valid_days(demo, _NODE_VALID_DAYS)
    demo.set_defaults(handler=_guarded(_demo))


def _add_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", required=True, type=Path, help="the PKI directory")


def _add_valid_days(parser: argparse.ArgumentParser, default: int) -> None:
    parser.add_argument(
        "--valid-days", type=int, default=default, metavar="D", help=f"default {default}"
    )


def _add_passphrase(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--passphrase-file", type=Path, default=None, metavar="FILE", help=text)


def _guarded(handler: _Handler) -> _Handler:
    """``handler`` with every refusal printed as one paragraph and status 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ConfigError:
            raise  # gridmesh.cli prints it
        except SecurityConfigError as error:
            message = f"{error.path}: {error.problem}"
        except GridmeshError as error:
            message = str(error)
        print(f"gridmesh: {message}", file=sys.stderr)
        return EXIT_USAGE

    return run


def _node_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a node id 1..2^64-1, got {text!r}") from None
    if not 1 <= value <= NODE_ID_MAX:
        raise argparse.ArgumentTypeError(f"expected a node id 1..2^64-1, got {text!r}")
    return value


def _serial(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a serial (decimal or 0x...), got {text!r}"
        ) from None
    if not 1 <= value <= SERIAL_MAX:
        raise argparse.ArgumentTypeError(f"expected a serial 1..2^64-1, got {text!r}")
    return value


def _passphrase(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            str(path), "(file)", "a readable passphrase file", got=exc.strerror
        ) from None
    passphrase = text.splitlines()[0] if text else b""
    if not passphrase:
        raise ConfigError(str(path), "(first line)", "a passphrase (the line is empty)")
    return passphrase


def _utc(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _new_serial() -> int:
    # 63 random bits: unique without coordination, positive in every X.509 tool.
    return secrets.randbelow(2**63 - 1) + 1


# -- init -----------------------------------------------------------------------


def _group_key(args: argparse.Namespace) -> int:
    layout = PkiLayout(args.dir)
    name = args.name
    if not name or not all(c.isalnum() or c in "-_." for c in name) or len(name) > 64:
        raise SecurityConfigError(name, "a group key name is 1..64 letters, digits, '-', '_', '.'")
    try:
        key = GroupKey(name.encode(), args.filter, secrets.token_bytes(32))
    except (ValueError, InvalidTopic) as exc:
        raise SecurityConfigError(args.filter, f"not a usable topic filter: {exc}") from None
    try:
        layout.groups.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SecurityConfigError(
            str(layout.groups), f"cannot be created: {exc.strerror}"
        ) from None
    path = layout.groups / f"{name}.key"
    write_group_key(path, key)
    print(f"group key {name!r} for {key.topic_filter!r}: {path} (mode 0600)")
    print("  copy it into DIR/groups/ of exactly the nodes that may read those topics")
    return 0


def _init(args: argparse.Namespace) -> int:
    layout = PkiLayout(args.dir)
    passphrase = _passphrase(args.passphrase_file)
    authority = _create_authority(layout, args.name, args.valid_days, passphrase, time.time())
    print(f"authority {authority.name!r} valid until {_utc(authority.not_after)}")
    print(f"  {layout.ca_certificate}  (give it to every node)")
    print(f"  {layout.ca_key}  (mode 0600; keep it off the nodes)")
    return 0


def _create_authority(
    layout: PkiLayout, name: str, valid_days: int, passphrase: bytes | None, now: float
) -> Authority:
    try:
        layout.root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SecurityConfigError(str(layout.root), f"cannot be created: {exc.strerror}") from None
    if layout.ca_key.exists():
        raise SecurityConfigError(
            str(layout.ca_key), "already exists: this directory has an authority; choose another"
        )
    key = Ed25519PrivateKey.generate()
    der = create_authority(name, key, now=now, valid_days=valid_days)
    write_private_key(layout.ca_key, key, passphrase=passphrase)  # first: refuses an existing CA
    write_certificate(layout.ca_certificate, der)
    return load_authority(der)


# -- issue ----------------------------------------------------------------------


def _issue(args: argparse.Namespace) -> int:
    layout = PkiLayout(args.dir)
    authority, ca_key = _load_ca(layout, _passphrase(args.passphrase_file))
    role = Role(args.role)
    permissions = _permissions(args, role)
    identity = _issue_node(
        layout,
        authority,
        ca_key,
        node_id=args.node_id,
        role=role,
        permissions=permissions,
        valid_days=args.valid_days,
        now=time.time(),
        overwrite=args.force,
    )
    _print_issued(layout, identity)
    return 0


def _load_ca(layout: PkiLayout, passphrase: bytes | None) -> tuple[Authority, Ed25519PrivateKey]:
    authority = load_authority_file(layout.ca_certificate)
    key = read_private_key(layout.ca_key, passphrase=passphrase)
    if key.public_key() != authority.public_key:
        raise SecurityConfigError(
            str(layout.ca_key), f"is not the key of the authority in {layout.ca_certificate}"
        )
    return authority, key


def _permissions(args: argparse.Namespace, role: Role) -> Permissions:
    """The role's defaults, with each list given on the command line replacing its own."""
    lists: dict[str, list[str] | None] = {name: getattr(args, name) for name in _LISTS}
    try:
        return default_permissions(role, args.node_id).replaced(**lists).expand(args.node_id)
    except InvalidTopic as exc:
        flag = next(
            (f"--{name}" for name in _LISTS if exc.topic in (getattr(args, name) or ())),
            "--publish/--subscribe/--call/--expose",
        )
        raise ConfigError(
            COMMAND_LINE, flag, f"an MQTT topic filter ({exc.problem}; see docs/TOPICS.md)",
            got=exc.topic,
        ) from None  # fmt: skip


def _issue_node(
    layout: PkiLayout,
    authority: Authority,
    ca_key: Ed25519PrivateKey,
    *,
    node_id: int,
    role: Role,
    permissions: Permissions | None,
    valid_days: int,
    now: float,
    overwrite: bool = False,
) -> NodeIdentity:
    for path in (layout.node_key(node_id), layout.node_certificate(node_id)):
        if not overwrite and path.exists():
            raise SecurityConfigError(
                str(path), "already exists; --force replaces the node's key and certificate"
            )
    key = Ed25519PrivateKey.generate()
    der = issue_node_certificate(
        authority, ca_key, key.public_key(), node_id=node_id, role=role,
        permissions=permissions, serial=_new_serial(), now=now, valid_days=valid_days,
    )  # fmt: skip
    try:
        layout.nodes.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SecurityConfigError(str(layout.nodes), f"cannot be created: {exc.strerror}") from None
    write_private_key(layout.node_key(node_id), key, overwrite=overwrite)
    write_certificate(layout.node_certificate(node_id), der, overwrite=overwrite)
    return verify_node_certificate(der, authority, now=now)


def _print_issued(layout: PkiLayout, identity: NodeIdentity) -> None:
    print(
        f"node {identity.node_id} ({identity.role}) serial {identity.serial:#x}, "
        f"valid until {_utc(identity.not_after)}"
    )
    print(f"  {layout.node_certificate(identity.node_id)}")
    print(f"  {layout.node_key(identity.node_id)}  (mode 0600)")


# -- revoke ---------------------------------------------------------------------


def _revoke(args: argparse.Namespace) -> int:
    layout = PkiLayout(args.dir)
    authority, ca_key = _load_ca(layout, _passphrase(args.passphrase_file))
    now = time.time()
    revocations = load_revocations(layout.revocations, authority)
    if revocations.is_revoked(args.serial):
        print(f"serial {args.serial:#x} is already revoked")
        return 0
    expires_at = args.not_after
    if expires_at is None:
        issued = _find_serial(layout, args.serial)
        if issued is None:
            raise ConfigError(
                COMMAND_LINE,
                "--serial",
                f"the serial of a certificate under {layout.nodes} (else give --not-after, "
                "the certificate's expiry in Unix seconds)",
                got=args.serial,
            )
        expires_at = issued.not_after
    if not 0 <= expires_at <= SERIAL_MAX:
        raise ConfigError(COMMAND_LINE, "--not-after", "Unix seconds", got=expires_at)
    data = make_revocation(
        ca_key, args.serial, now=now, reason=RevocationReason(args.reason), expires_at=expires_at
    )
    revocation = verify_revocation(data, authority.public_key)
    try:
        layout.revocation_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SecurityConfigError(
            str(layout.revocation_dir), f"cannot be created: {exc.strerror}"
        ) from None
    write_file_atomically(layout.revocation(args.serial), data, mode=0o644, overwrite=True)
    pruned = revocations.prune(now)
    revocations.add(revocation)
    write_file_atomically(layout.revocations, revocations.to_bytes(), mode=0o644, overwrite=True)
    print(
        f"revoked serial {args.serial:#x} ({revocation.reason}); {len(revocations)} live "
        f"revocation(s) in {layout.revocations}" + (f", {pruned} expired dropped" if pruned else "")
    )
    print(f"  {layout.revocation(args.serial)}  (spread it to the grid)")
    return 0


def _find_serial(layout: PkiLayout, serial: int) -> NodeIdentity | None:
    if not layout.nodes.is_dir():
        return None
    for path in sorted(layout.nodes.glob("*.crt")):
        try:
            identity = inspect_node_certificate(read_certificate(path))
        except (SecurityConfigError, CertificateInvalid):
            continue  # not ours to judge here; revoking does not need it
        if identity.serial == serial:
            return identity
    return None


# -- show -----------------------------------------------------------------------


def _show(args: argparse.Namespace) -> int:
    der = read_certificate(args.file)
    try:
        authority: Authority | None = load_authority(der)
    except CertificateInvalid:
        authority = None
    if authority is not None:
        record: dict[str, Any] = {
            "kind": "authority",
            "name": authority.name,
            "serial": authority.certificate.serial_number,
            "not_before": _utc(authority.not_before),
            "not_after": _utc(authority.not_after),
            "key_identifier": authority.key_identifier.hex(),
        }
    else:
        if args.ca is None:
            identity = _inspect(args.file, der)
            verified = "no (give --ca to verify)"
        else:
            ca = load_authority_file(args.ca)
            try:
                identity = verify_node_certificate(der, ca, now=time.time())
            except CertificateInvalid as exc:
                raise SecurityConfigError(str(args.file), exc.detail) from None
            verified = f"yes, against {args.ca}"
        record = {
            "kind": "node",
            "node_id": identity.node_id,
            "role": str(identity.role),
            "serial": identity.serial,
            "not_before": _utc(identity.not_before),
            "not_after": _utc(identity.not_after),
            "key_id": identity.key_id.hex(),
            "verified": verified,
            "permissions": identity.permissions.to_plain(),
        }
    if args.json:
        print(json.dumps(record, sort_keys=True))
    else:
        _print_record(record)
    return 0


def _inspect(path: Path, der: bytes) -> NodeIdentity:
    try:
        return inspect_node_certificate(der)
    except CertificateInvalid as exc:
        raise SecurityConfigError(
            str(path), f"not a gridmesh node certificate: {exc.detail}"
        ) from None


def _print_record(record: dict[str, Any]) -> None:
    if record["kind"] == "authority":
        print(f"authority {record['name']!r}")
    else:
        print(f"node {record['node_id']} ({record['role']})")
    print(f"  serial      {record['serial']:#x} ({record['serial']})")
    print(f"  valid       {record['not_before']} .. {record['not_after']}")
    if record["kind"] == "authority":
        print(f"  key ident.  {record['key_identifier']}")
        return
    print(f"  key id      {record['key_id']}")
    print(f"  verified    {record['verified']}")
    for name, filters in record["permissions"].items():
        print(f"  {name:<11} {', '.join(filters) if filters else '-'}")


# -- demo -----------------------------------------------------------------------


def demo_node_ids(dtcs: int, meters: int) -> list[tuple[int, Role, int | None]]:
    """``(node_id, role, parent)`` of every node of the demo grid, in issue order.

    dso 1, aggregator 2, substation 10, DTC k (1-based) 100+k, and DTC k's
    m-th meter (100+k)*1000+m; meters are dealt to the DTCs in turn.
    """
    nodes: list[tuple[int, Role, int | None]] = [
        (DEMO_DSO_ID, Role.DSO, None),
        (DEMO_AGGREGATOR_ID, Role.AGGREGATOR, DEMO_DSO_ID),
        (DEMO_SUBSTATION_ID, Role.SUBSTATION, DEMO_DSO_ID),
    ]
    dtc_ids = [DEMO_DTC_BASE_ID + k for k in range(1, dtcs + 1)]
    nodes += [(dtc, Role.DTC, DEMO_SUBSTATION_ID) for dtc in dtc_ids]
    for index in range(meters):
        dtc = dtc_ids[index % dtcs]
        nodes.append((dtc * 1000 + index // dtcs + 1, Role.METER, dtc))
    return nodes


def _demo(args: argparse.Namespace) -> int:
    if not 1 <= args.dtcs <= DEMO_DTCS_MAX:
        raise ConfigError(COMMAND_LINE, "--dtcs", f"1..{DEMO_DTCS_MAX}", got=args.dtcs)
    meters_max = min(DEMO_METERS_MAX, args.dtcs * DEMO_METERS_PER_DTC_MAX)
    if not 0 <= args.meters <= meters_max:
        raise ConfigError(
            COMMAND_LINE,
            "--meters",
            f"0..{meters_max} (at most {DEMO_METERS_PER_DTC_MAX} per DTC, "
            f"{DEMO_METERS_MAX} in all)",
            got=args.meters,
        )
    layout = PkiLayout(args.dir)
    now = time.time()
    authority = _create_authority(layout, args.name, _CA_VALID_DAYS, None, now)
    ca_key = read_private_key(layout.ca_key)
    manifest: list[dict[str, Any]] = []
    for node_id, role, parent in demo_node_ids(args.dtcs, args.meters):
        identity = _issue_node(
            layout,
            authority,
            ca_key,
            node_id=node_id,
            role=role,
            permissions=None,
            valid_days=args.valid_days,
            now=now,
        )
        manifest.append(
            {
                "node_id": node_id,
                "role": str(role),
                "parent": parent,
                "serial": identity.serial,
                "certificate": str(layout.node_certificate(node_id).relative_to(layout.root)),
                "key": str(layout.node_key(node_id).relative_to(layout.root)),
            }
        )
    grid = {"authority": authority.name, "nodes": manifest}
    write_file_atomically(
        layout.root / "grid.json",
        (json.dumps(grid, indent=2) + "\n").encode(),
        mode=0o644,
        overwrite=True,
    )
    counts = ", ".join(
        f"{sum(1 for node in manifest if node['role'] == role)} {role}" for role in _demo_roles()
    )
    print(f"demo grid {authority.name!r} in {layout.root}: {counts}")
    print(
        f"  {layout.ca_certificate}, {layout.nodes}/<node_id>.crt|.key, {layout.root / 'grid.json'}"
    )
    return 0


def _demo_roles() -> Sequence[Role]:
    return (Role.DSO, Role.AGGREGATOR, Role.SUBSTATION, Role.DTC, Role.METER)
