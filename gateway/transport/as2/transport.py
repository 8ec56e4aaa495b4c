"""AS2 as a ``Transport``: one signed and encrypted POST per attempt, judged by its MDN.

A flow counts as sent only on a signed MDN that says ``processed`` and returns the MIC
of what we signed. Every attempt leaves the raw request and the raw answer as evidence,
failed ones included. AS2 has no remote directory: reports come back as AS2 messages to
``gateway serve`` (``gateway.cli.serve``), which also receives asynchronous MDNs.
"""

from __future__ import annotations

import hashlib
import http
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.config import Partner
from gateway.errors import TransportError
from gateway.transport.as2.errors import AS2Error
from gateway.transport.as2.message import Mdn, build_message, parse_mdn
from gateway.transport.as2.http import post_message
from gateway.transport.base import Delivery

log = structlog.get_logger(__name__)

# 408 and 429 say "not now", like a 5xx; the other 4xx (wrong URL, refused credentials,
# body too large) come back the same until someone changes the configuration.
_RETRYABLE_4XX = (408, 429)


@dataclass(frozen=True)
class AS2Credentials:
    """Our key and certificate (sign what we send, decrypt what we receive), the partner's certificate
    (encrypt to it, verify its signatures) and, for HTTPS, the CA file that vouches for its server."""

    own_key: rsa.RSAPrivateKey
    own_cert: x509.Certificate
    partner_cert: x509.Certificate
    ca_file: str | None


def load_credentials(partner: Partner) -> AS2Credentials:
    """Read the partner's credential files; any problem is a non-retryable ``TransportError`` naming the file
    (a missing or wrong key does not mend itself between attempts)."""
    key = _load(partner, "own_key", lambda data: serialization.load_pem_private_key(data, password=None))
    own_cert = _load(partner, "own_cert", x509.load_pem_x509_certificate)
    partner_cert = _load(partner, "partner_cert", x509.load_pem_x509_certificate)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise _fatal(partner, "credentials.own_key must be an RSA key: AS2 partners encrypt to it with RSA")
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*public) != own_cert.public_key().public_bytes(*public):
        raise _fatal(partner, "credentials.own_key is not the key of credentials.own_cert")
    ca_file = partner.credential("ca_file")
    if ca_file is not None and not ca_file.is_file():
        raise _fatal(partner, f"credentials.ca_file {ca_file} does not exist")
    return AS2Credentials(key, own_cert, partner_cert, str(ca_file) if ca_file else None)


def _load(partner: Partner, name: str, loader: Any) -> Any:
    path = partner.credential(name)
    if path is None:
        raise _fatal(partner, f"credentials.{name} is required for the as2 transport")
    try:
        return loader(path.read_bytes())
    except OSError as exc:
        raise _fatal(partner, f"cannot read credentials.{name} {path}: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise _fatal(partner, f"credentials.{name} {path} is not a PEM file of the expected kind: {exc}") from None


def _fatal(partner: Partner, message: str, **evidence: bytes | None) -> TransportError:
    return TransportError(message, peer=partner.name, retryable=False, **evidence)


def content_type(name: str) -> str:
    """What the payload is declared as: an XML flow is one invoice sent as itself, a lot is a tar.gz."""
    return "application/xml" if name.lower().endswith(".xml") else "application/octet-stream"


def flow_mic(partner: Partner, credentials: AS2Credentials, name: str, data: bytes, *, compress: bool,
             digest: str | None = None) -> str:
    """The MIC a deposit of ``data`` under ``name`` was signed with, computed again, with ``digest`` (by default
    the partner's signing digest, which is the MIC algorithm we ask for).

    The MIC covers the signed entity (RFC 4130 7.3.1), which depends only on the bytes, the
    file name and whether they were compressed: not on the signature, the encryption or the
    Message-ID. So an asynchronous MDN is checked against the flow itself, every attempt
    of which carries the same MIC (see ``AS2Transport.deposit``)."""
    assert partner.as2_from and partner.as2_to  # config checked
    return build_message(data, filename=name, content_type=content_type(name), as2_from=partner.as2_from,
                         as2_to=partner.as2_to, sign_key=credentials.own_key, sign_cert=credentials.own_cert,
                         digest=digest or partner.as2_signing_digest, compress=compress, mdn_mode=None).mic or ""


def mdn_problem(mdn: Mdn, *, mic_matches: bool) -> str | None:
    """Why a verified MDN does not prove delivery, None when it does. A refusal is named by the partner's error
    first: its MIC, if any, says nothing more."""
    if not mdn.processed:
        return f"the partner refused the message: {mdn.error} (Disposition: {mdn.disposition})"
    if not mic_matches:
        return (f"the MDN returns the MIC {mdn.mic or '(none)'}, not the one of what we signed: the partner "
                f"processed other bytes than ours")
    return None


class AS2Transport:
    kind = "as2"

    def __init__(self, partner: Partner) -> None:
        self.partner = partner
        # Read at the first deposit, not here: a wrong credential file then fails that flow
        # with an alert (the pipeline opens transports outside its error handling).
        self._credentials: AS2Credentials | None = None
        self._context: ssl.SSLContext | None = None

    def deposit(self, name: str, data: bytes) -> Delivery:
        """POST ``data`` as ``name``. Every attempt of a flow sends the same bytes under the same file name
        (the signed entity, and so the MIC, is the same), under a new Message-ID. RFC 4130 9.3 has receivers
        discard replays by Message-ID *or* by business identifiers: the flow name and bytes are unchanged, and
        Chorus Pro rejects an invoice whose supplier and number it already holds (DOMAIN.md), so a resend after
        a lost MDN integrates nothing twice. A new Message-ID, rather than the old one, lets a flow refused by
        an error MDN be sent again once the cause is fixed: a receiver that dedupes by Message-ID would
        otherwise drop it unread."""
        partner, credentials = self.partner, self._load()
        assert partner.endpoint and partner.as2_from and partner.as2_to  # config checked
        try:
            message = build_message(
                data, filename=name, content_type=content_type(name), as2_from=partner.as2_from,
                as2_to=partner.as2_to, subject=f"Chorus Pro flow {name}", sign_key=credentials.own_key,
                sign_cert=credentials.own_cert, encrypt_cert=credentials.partner_cert, compress=partner.compress,
                encryption=partner.as2_encryption, digest=partner.as2_signing_digest,
                mdn_mode="async" if partner.mdn == "async" else "sync", mdn_url=partner.mdn_url, signed_mdn=True,
            )
        except ValueError as exc:  # a name or identity that cannot go in a header: the same every time
            raise _fatal(partner, f"cannot build the AS2 message: {exc}") from None
        request = raw_request(partner.endpoint, message.headers, message.body)
        try:
            status, headers, body = post_message(partner.endpoint, message, timeout=partner.timeout_seconds,
                                                 context=self._context)
        except TransportError as exc:
            # Refused connection, timeout, reset: retryable (post_message says which are not, an
            # untrusted server certificate). The request is evidence of what we tried to send.
            raise TransportError(exc.message, peer=partner.name, retryable=exc.retryable, request=request) from exc
        response = raw_response(status, headers, body)
        sent = (f"AS2 {message.message_id} {partner.as2_from} -> {partner.as2_to} at {partner.endpoint}: {name} "
                f"size={len(data)} sha256={hashlib.sha256(data).hexdigest()}")
        if not 200 <= status < 300:
            raise self._http_failure(status, headers, body, request, response)
        if partner.mdn == "async":
            # The pipeline keeps the Message-ID and the request; `gateway serve` settles the attempt when
            # the MDN arrives, checking it against the MIC computed again from the flow (``flow_mic``).
            return Delivery(f"{sent}; awaiting MDN; mic={message.mic}", message.message_id, request, pending=True)
        try:
            mdn = parse_mdn(headers, body, verify_cert=credentials.partner_cert,
                            expected_message_id=message.message_id, expected_mic=message.mic)
        except AS2Error as exc:
            # Not retryable: the answer is not a receipt we can trust (forged, signed with another
            # certificate, altered, for another message, or no MDN at all). The partner may have the
            # flow, so sending it again blind could deliver it twice: the operator checks first.
            raise _fatal(partner, f"the MDN is refused: {exc.message}", request=request, response=response) from None
        problem = mdn_problem(mdn, mic_matches=mdn.mic_matches)
        if problem is not None:
            # Not retryable: an error disposition (decryption-failed, authentication-failed...) comes
            # back the same for the same bytes, and a MIC mismatch means the partner holds other bytes
            # than ours; either needs a person (certificates, agreement) before a new attempt.
            raise _fatal(partner, problem, request=request, response=response)
        if mdn.warning is not None:  # processed all the same; the receipt line keeps the Disposition with its text
            log.warning("as2.mdn_warning", partner=partner.name, file=name, message_id=message.message_id,
                        warning=mdn.warning)
        return Delivery(f"{sent}; MDN {mdn.message_id}: {mdn.disposition}; MIC {mdn.mic} matches",
                        message.message_id, request, response)

    def _http_failure(self, status: int, headers: Mapping[str, str], body: bytes, request: bytes,
                      response: bytes) -> TransportError:
        # A 5xx is the partner's server in trouble (restarting, overloaded, its back end down): the
        # same bytes later may well go through, and a replay is discarded by the receiver (see deposit).
        retryable = status >= 500 or status in _RETRYABLE_4XX
        text = body[:200].decode("utf-8", "replace").strip() if _is_text(headers) else f"{len(body)} bytes"
        return TransportError(f"the AS2 server answered HTTP {status}: {text or '(empty body)'}",
                              peer=self.partner.name, retryable=retryable, request=request, response=response)

    def _load(self) -> AS2Credentials:
        if self._credentials is None:
            credentials = load_credentials(self.partner)
            if urllib.parse.urlsplit(self.partner.endpoint or "").scheme == "https":
                try:
                    self._context = ssl.create_default_context(cafile=credentials.ca_file)
                except (OSError, ssl.SSLError) as exc:
                    raise _fatal(self.partner, f"credentials.ca_file {credentials.ca_file} cannot be "
                                               f"loaded: {exc}") from None
            self._credentials = credentials
        return self._credentials

    def remote_size(self, name: str) -> int | None:
        """AS2 has no remote directory to look into: only the MDN tells what arrived."""
        return None

    def list_reports(self) -> list[str]:
        """Reports arrive as AS2 messages at `gateway serve`, which stores them; nothing to pick up here."""
        return []

    def fetch_report(self, name: str) -> bytes:
        raise TransportError(f"AS2 has no remote directory to fetch {name} from: reports arrive at "
                             f"`gateway serve`", peer=self.partner.name, retryable=False)

    def acknowledge_report(self, name: str) -> None:
        """Nothing to remove remotely: a report is acknowledged by the MDN `gateway serve` returns."""

    def close(self) -> None:
        """Nothing to release: one connection per POST, closed after it."""


def raw_request(url: str, headers: Mapping[str, str], body: bytes) -> bytes:
    """The request as ``http.client`` writes it for ``post_message``: request line, Host, Accept-Encoding and
    Content-Length (added by http.client, in that order), our headers, Connection, a blank line, the body."""
    parts = urllib.parse.urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    default_port = 443 if parts.scheme == "https" else 80
    if parts.port and parts.port != default_port:
        host = f"{host}:{parts.port}"
    lines = [f"POST {target} HTTP/1.1", f"Host: {host}", "Accept-Encoding: identity", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()] + ["Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def raw_response(status: int, headers: Mapping[str, str], body: bytes) -> bytes:
    """Status line, headers as received (repeated ones joined), a blank line, the body."""
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {status} {reason}".rstrip()] + [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body


def raw_message(headers: Mapping[str, str], body: bytes) -> bytes:
    """A request received by `gateway serve`: its headers, a blank line, its body."""
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return head.encode("latin-1", "replace") + b"\r\n" + body


def _is_text(headers: Mapping[str, str]) -> bool:
    value = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    return value.lower().startswith(("text/", "application/json", "application/xml"))
