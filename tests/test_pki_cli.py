"""`gridmesh pki`: init, issue, revoke, show and demo make verifiable files with the right modes."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from gridmesh.cli import main
from gridmesh.keystore import (
    PkiLayout,
    load_authority_file,
    load_node_credentials,
    load_revocations,
    read_private_key,
)
from gridmesh.pki_cli import demo_node_ids
from gridmesh.security._errors import SecurityConfigError
from gridmesh.security._pki_revocation import RevocationReason, verify_revocation
from gridmesh.security._roles import Permissions, Role, default_permissions

OPENSSL = shutil.which("openssl")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["pki", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def ok(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    status, out, err = run(capsys, *argv)
    assert (status, err) == (0, ""), err
    return out


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The one-paragraph refusal (status 2) of a command."""
    status, out, err = run(capsys, *argv)
    assert status == 2, out
    assert err.startswith("gridmesh: ") and err.count("\n") == 1, err
    return err


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def pki(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> PkiLayout:
    layout = PkiLayout(tmp_path / "pki")
    out = ok(capsys, "init", "--dir", str(layout.root), "--name", "Test Grid")
    assert "authority 'Test Grid'" in out
    return layout


def test_init_creates_the_authority_with_safe_modes(pki: PkiLayout) -> None:
    assert mode(pki.ca_key) == 0o600 and mode(pki.ca_certificate) == 0o644
    authority = load_authority_file(pki.ca_certificate)
    assert authority.name == "Test Grid"
    assert read_private_key(pki.ca_key).public_key() == authority.public_key
    assert authority.not_after - authority.not_before == 3650 * 86_400


def test_init_refuses_a_directory_that_has_an_authority(
    pki: PkiLayout, capsys: pytest.CaptureFixture[str]
) -> None:
    before = pki.ca_key.read_bytes()
    err = refused(capsys, "init", "--dir", str(pki.root), "--name", "Another")
    assert str(pki.ca_key) in err and "already exists" in err
    assert pki.ca_key.read_bytes() == before


def test_issue_makes_a_node_with_its_roles_defaults(
    pki: PkiLayout, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ok(capsys, "issue", "--dir", str(pki.root), "--node-id", "1234", "--role", "meter")
    assert out.startswith("node 1234 (meter) serial 0x")
    assert mode(pki.node_key(1234)) == 0o600 and mode(pki.node_certificate(1234)) == 0o644
    credentials = load_node_credentials(pki.root, 1234)
    assert credentials.identity.role is Role.METER
    assert credentials.identity.permissions == default_permissions(Role.METER, 1234)


def test_issue_flags_replace_the_lists_they_name(
    pki: PkiLayout, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(
        capsys, "issue", "--dir", str(pki.root), "--node-id", "7", "--role", "device",
        "--publish", "HOME/{node_id}/#", "--publish", "ALARM/*", "--subscribe", "TARIFF/RTP/+",
    )  # fmt: skip
    granted = load_node_credentials(pki.root, 7).identity.permissions
    defaults = default_permissions(Role.DEVICE, 7)
    assert granted == Permissions(
        publish=("HOME/7/#", "ALARM/#"),
        subscribe=("TARIFF/RTP/+",),
        call=defaults.call,
        expose=defaults.expose,
    )


def test_issue_refuses_a_bad_filter_naming_the_flag(
    pki: PkiLayout, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused(
        capsys, "issue", "--dir", str(pki.root), "--node-id", "7", "--role", "meter",
        "--subscribe", "a/#/b",
    )  # fmt: skip
    assert "'--subscribe'" in err and "'a/#/b'" in err
    assert not pki.node_key(7).exists()


def test_issue_refuses_to_replace_a_node_unless_forced(
    pki: PkiLayout, capsys: pytest.CaptureFixture[str]
) -> None:
    issue = ("issue", "--dir", str(pki.root), "--node-id", "5", "--role", "dtc")
    ok(capsys, *issue)
    first = load_node_credentials(pki.root, 5).identity
    err = refused(capsys, *issue)
    assert "already exists; --force" in err
    ok(capsys, *issue, "--force")
    second = load_node_credentials(pki.root, 5).identity
    assert second.serial != first.serial and second.key_id != first.key_id


def test_issue_refuses_a_validity_beyond_the_authoritys(
    pki: PkiLayout, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused(
        capsys, "issue", "--dir", str(pki.root), "--node-id", "5", "--role", "dtc",
        "--valid-days", "4000",
    )  # fmt: skip
    assert "outlive the authority" in err


def test_bad_flags_exit_with_status_2(pki: PkiLayout) -> None:
    for argv in (
        ["issue", "--dir", str(pki.root), "--node-id", "0", "--role", "meter"],
        ["issue", "--dir", str(pki.root), "--node-id", "5", "--role", "king"],
        ["revoke", "--dir", str(pki.root), "--serial", "zero"],
    ):
        with pytest.raises(SystemExit) as caught:
            main(["pki", *argv])
        assert caught.value.code == 2


def test_an_encrypted_authority_key_needs_its_passphrase_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "pki"
    secret = tmp_path / "passphrase"
    secret.write_text("correct horse\n")
    ok(capsys, "init", "--dir", str(root), "--name", "G", "--passphrase-file", str(secret))
    assert PkiLayout(root).ca_key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY")
    issue = ("issue", "--dir", str(root), "--node-id", "3", "--role", "substation")
    assert "give its passphrase" in refused(capsys, *issue)
    ok(capsys, *issue, "--passphrase-file", str(secret))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert "(first line)" in refused(capsys, *issue, "--force", "--passphrase-file", str(empty))


def test_a_loose_authority_key_is_refused(
    pki: PkiLayout, capsys: pytest.CaptureFixture[str]
) -> None:
    pki.ca_key.chmod(0o644)
    err = refused(capsys, "issue", "--dir", str(pki.root), "--node-id", "5", "--role", "dtc")
    assert "mode 0644" in err and "chmod 600" in err


def test_revoke_writes_a_revocation_and_the_list(
    pki: PkiLayout, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(capsys, "issue", "--dir", str(pki.root), "--node-id", "42", "--role", "meter")
    identity = load_node_credentials(pki.root, 42).identity
    serial = hex(identity.serial)
    out = ok(
        capsys, "revoke", "--dir", str(pki.root), "--serial", serial, "--reason", "key_compromise"
    )
    assert f"revoked serial {serial}" in out
    authority = load_authority_file(pki.ca_certificate)
    revocation = verify_revocation(
        pki.revocation(identity.serial).read_bytes(), authority.public_key
    )
    assert revocation.reason is RevocationReason.KEY_COMPROMISE
    assert revocation.expires_at == identity.not_after
    assert abs(revocation.revoked_at - time.time()) < 60
    assert mode(pki.revocations) == 0o644
    assert load_revocations(pki.revocations, authority).is_revoked(identity.serial)
    with pytest.raises(SecurityConfigError, match="revoked"):
        load_node_credentials(pki.root, 42)
    again = ok(capsys, "revoke", "--dir", str(pki.root), "--serial", str(identity.serial))
    assert "already revoked" in again


def test_revoke_needs_a_known_serial_or_its_expiry(
    pki: PkiLayout, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused(capsys, "revoke", "--dir", str(pki.root), "--serial", "12345")
    assert "'--serial'" in err and "--not-after" in err
    expiry = str(int(time.time()) + 86_400)
    ok(capsys, "revoke", "--dir", str(pki.root), "--serial", "12345", "--not-after", expiry)
    authority = load_authority_file(pki.ca_certificate)
    assert load_revocations(pki.revocations, authority).is_revoked(12345)


def test_show_prints_a_nodes_identity(pki: PkiLayout, capsys: pytest.CaptureFixture[str]) -> None:
    ok(capsys, "issue", "--dir", str(pki.root), "--node-id", "101", "--role", "dtc")
    path = str(pki.node_certificate(101))
    text = ok(capsys, "show", path)
    assert text.startswith("node 101 (dtc)\n")
    assert "verified    no (give --ca to verify)" in text
    assert "publish     MEASUREMENT/SENSOR/101/#, DTC/101/#, AGGREGATE/101/#" in text
    record = json.loads(ok(capsys, "show", path, "--ca", str(pki.ca_certificate), "--json"))
    assert record["node_id"] == 101 and record["role"] == "dtc"
    assert record["verified"].startswith("yes")
    assert record["permissions"] == default_permissions(Role.DTC, 101).to_plain()
    authority = ok(capsys, "show", str(pki.ca_certificate))
    assert authority.startswith("authority 'Test Grid'")


def test_show_refuses_what_is_not_a_certificate_of_the_grid(
    pki: PkiLayout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "no such file" in refused(capsys, "show", str(tmp_path / "none.crt"))
    ok(capsys, "issue", "--dir", str(pki.root), "--node-id", "9", "--role", "emd")
    other = tmp_path / "other"
    ok(capsys, "init", "--dir", str(other), "--name", "Test Grid")
    err = refused(
        capsys, "show", str(pki.node_certificate(9)), "--ca", str(PkiLayout(other).ca_certificate)
    )
    assert "signature does not verify" in err


def test_demo_sets_up_a_whole_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "demo"
    out = ok(capsys, "demo", "--dir", str(root), "--dtcs", "2", "--meters", "10")
    assert "1 dso, 1 aggregator, 1 substation, 2 dtc, 10 meter" in out
    expected = demo_node_ids(2, 10)
    assert [node_id for node_id, _, _ in expected] == [
        1, 2, 10, 101, 102,
        101001, 102001, 101002, 102002, 101003, 102003, 101004, 102004, 101005, 102005,
    ]  # fmt: skip
    layout = PkiLayout(root)
    grid = json.loads((root / "grid.json").read_text())
    assert grid["authority"] == "gridmesh demo grid"
    assert [(n["node_id"], n["role"], n["parent"]) for n in grid["nodes"]] == [
        (node_id, str(role), parent) for node_id, role, parent in expected
    ]
    serials = set()
    for node_id, role, _ in expected:
        credentials = load_node_credentials(root, node_id)
        assert credentials.identity.role is role
        serials.add(credentials.identity.serial)
        assert mode(layout.node_key(node_id)) == 0o600
        assert mode(layout.node_certificate(node_id)) == 0o644
    assert len(serials) == len(expected)
    assert mode(layout.ca_key) == 0o600


def test_demo_refuses_sizes_out_of_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "'--dtcs'" in refused(capsys, "demo", "--dir", str(tmp_path / "a"), "--dtcs", "0")
    err = refused(capsys, "demo", "--dir", str(tmp_path / "b"), "--dtcs", "1", "--meters", "1000")
    assert "'--meters'" in err and "999 per DTC" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
def test_openssl_reads_and_verifies_the_certificates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert OPENSSL is not None
    root = tmp_path / "demo"
    ok(capsys, "demo", "--dir", str(root), "--dtcs", "1", "--meters", "1")
    layout = PkiLayout(root)
    for path in (layout.ca_certificate, layout.node_certificate(101001)):
        text = subprocess.run(
            [OPENSSL, "x509", "-in", str(path), "-noout", "-text"],
            check=True, capture_output=True, text=True, timeout=30,
        ).stdout  # fmt: skip
        assert "Signature Algorithm: ED25519" in text
    assert "URI:gridmesh:node:101001" in text
    assert "2.25.333992188631216841106434835716242973376" in text
    verified = subprocess.run(
        [OPENSSL, "verify", "-CAfile", str(layout.ca_certificate), str(layout.node_certificate(1))],
        check=False, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert verified.returncode == 0 and verified.stdout.strip().endswith(": OK"), verified


def test_a_group_key_is_written_0600_and_loaded_with_the_node_credentials(tmp_path: Path) -> None:
    from gridmesh.cli import main
    from gridmesh.keystore import load_node_credentials, read_group_keys

    assert main(["pki", "demo", "--dir", str(tmp_path), "--dtcs", "1", "--meters", "1"]) == 0
    args = ["pki", "group-key", "--dir", str(tmp_path), "--name", "dr", "--filter", "DR/COMMAND/*"]
    assert main(args) == 0
    path = tmp_path / "groups" / "dr.key"
    assert path.stat().st_mode & 0o777 == 0o600
    (key,) = read_group_keys(tmp_path / "groups")
    assert (key.kid, key.topic_filter, len(key.key)) == (b"dr", "DR/COMMAND/#", 32)
    assert load_node_credentials(tmp_path, 1).group_keys == (key,)
    assert main(args) == 2  # never overwritten
    bad = ["pki", "group-key", "--dir", str(tmp_path), "--name", "x", "--filter", "a/#/b"]
    assert main(bad) == 2
