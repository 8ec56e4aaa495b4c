"""`gateway doctor`: a real SFTP partner checked by connecting, certificates by their dates."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from cli_runner import gateway
from gateway.cli.doctor import certificate_checks
from gateway.config import Partner
from sshd import SshdServer
from test_outbox import _site

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def _certificate(folder: Path, name: str, *, days_left: int) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=365)).not_valid_after(NOW + timedelta(days=days_left))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_certificates_warn_thirty_days_ahead_and_fail_once_expired(tmp_path: Path) -> None:
    own_cert, own_key = _certificate(tmp_path, "us", days_left=365)
    partner_cert, _ = _certificate(tmp_path, "partner", days_left=10)
    ca_file, other_key = _certificate(tmp_path, "ca", days_left=-1)
    partner = Partner(name="aife", transport="as2", partner_code="AAA123", credentials={
        "own_cert": str(own_cert), "own_key": str(own_key), "partner_cert": str(partner_cert), "ca_file": str(ca_file)})
    checks = {c.check: c for c in certificate_checks(partner, NOW)}
    assert {name: c.status for name, c in checks.items()} == {
        "own_cert": "ok", "partner_cert": "warning", "ca_file": "error", "own_key": "ok"}
    assert "in 10 days" in checks["partner_cert"].detail and "CN=partner" in checks["partner_cert"].detail
    assert "expired on 2026-11-22" in checks["ca_file"].detail

    mismatched = dataclasses.replace(partner, credentials={**partner.credentials, "own_key": str(other_key)})
    [key_check] = [c for c in certificate_checks(mismatched, NOW) if c.check == "own_key"]
    assert key_check.status == "error" and "is not the key of" in key_check.detail


def test_doctor_connects_to_the_sftp_partner_and_names_a_host_key_problem(tmp_path: Path, sshd: SshdServer) -> None:
    site = _site(tmp_path, sshd)
    healthy = gateway("--config", str(site.config), "doctor", "--json", env=site.env, check=False)
    checks = {(c["subject"], c["check"]): c for c in json.loads(healthy.stdout)}
    assert healthy.returncode == 0, healthy.stdout
    assert checks[("partner:chorus", "sftp")]["status"] == "ok"
    assert checks[("channel:erp", "validator")]["status"] == "ok"

    (tmp_path / "known_hosts").write_text("")
    broken = gateway("--config", str(site.config), "doctor", env=site.env, check=False)
    assert broken.returncode == 1
    [line] = [line for line in broken.stdout.splitlines() if "partner:chorus" in line]
    assert line.startswith("ERROR") and "UNKNOWN" in line and "SHA256:" in line
