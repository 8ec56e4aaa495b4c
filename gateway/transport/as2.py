"""AS2 (RFC 4130) messages and MDNs, built and read without any network.

Kept apart from the HTTP edges (``as2_http``) so that the gateway can store the raw
request before anything here looks at it, and so that every failure can be turned into
an error MDN for the partner. ``cryptography``'s PKCS#7 builders do only SHA-2 signatures
and AES-CBC with RSA PKCS#1 v1.5, and its reader refuses BER: the CMS structures (RFC 5652
SignedData and EnvelopedData, RFC 5083/5084 AuthEnvelopedData with AES-GCM, RFC 8017
RSAES-OAEP key transport, RFC 3274 compression) are therefore written and read here with
its primitives and a small DER/BER reader and writer, which also reads the BER that Bouncy
Castle based AS2 servers stream.
"""

from __future__ import annotations

import base64
import email.message
import email.utils
import hashlib
import hmac
import quopri
import re
import secrets
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as block_padding
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway.errors import TransportError

AUTHENTICATION_FAILED = "authentication-failed"
DECOMPRESSION_FAILED = "decompression-failed"
DECRYPTION_FAILED = "decryption-failed"
INSUFFICIENT_SECURITY = "insufficient-message-security"
INTEGRITY_CHECK_FAILED = "integrity-check-failed"
UNEXPECTED_ERROR = "unexpected-processing-error"

#: Signing digests we send with (``[partners.X] as2_signing_digest``), and their RFC 5751 micalg names.
SIGNING_DIGESTS: dict[str, tuple[type[hashes.HashAlgorithm], str]] = {
    "sha256": (hashes.SHA256, "sha-256"), "sha1": (hashes.SHA1, "sha-1"), "sha384": (hashes.SHA384, "sha-384"),
    "sha512": (hashes.SHA512, "sha-512"),
}
#: Content encryption we send with (``[partners.X] as2_encryption``): GCM goes as AuthEnvelopedData (RFC 5084).
ENCRYPTIONS = {"aes256-cbc": "2.16.840.1.101.3.4.1.42", "aes128-cbc": "2.16.840.1.101.3.4.1.2",
               "aes128-gcm": "2.16.840.1.101.3.4.1.6", "aes256-gcm": "2.16.840.1.101.3.4.1.46",
               "3des": "1.2.840.113549.3.7"}


def mdn_options(digest: str = "sha256") -> str:
    """The Disposition-Notification-Options asking for a signed MDN whose MIC uses our signing digest."""
    micalg = SIGNING_DIGESTS[digest][1]
    return f"signed-receipt-protocol=required, pkcs7-signature; signed-receipt-micalg=optional, {micalg}"


MDN_OPTIONS = mdn_options()
_PKCS7_MIME = ("application/pkcs7-mime", "application/x-pkcs7-mime")
_SIGNATURE_TYPES = ("application/pkcs7-signature", "application/x-pkcs7-signature")
_ACTION_MODES, _SENDING_MODES = ("automatic-action", "manual-action"), ("mdn-sent-automatically", "mdn-sent-manually")
_MIC_ALGORITHMS = ("sha-256", "sha256", "sha-384", "sha384", "sha-512", "sha512", "sha-1", "sha1")
_MAX_INFLATED = 1 << 30  # a compressed layer inflating beyond this is taken for a zip bomb
_MAX_DEPTH = 32  # of BER nesting, against stack exhaustion by crafted input

_OID_SIGNED, _OID_ENVELOPED = "1.2.840.113549.1.7.2", "1.2.840.113549.1.7.3"
_OID_AUTH_ENVELOPED, _OID_DATA = "1.2.840.113549.1.9.16.1.23", "1.2.840.113549.1.7.1"
_OID_CONTENT_TYPE, _OID_SIGNING_TIME = "1.2.840.113549.1.9.3", "1.2.840.113549.1.9.5"
_OID_RSA_OAEP, _OID_MGF1, _OID_P_SPECIFIED = "1.2.840.113549.1.1.7", "1.2.840.113549.1.1.8", "1.2.840.113549.1.1.9"
_OID_COMPRESSED, _OID_ZLIB = "1.2.840.113549.1.9.16.1.9", "1.2.840.113549.1.9.16.3.8"
_OID_MESSAGE_DIGEST, _OID_RSA, _OID_RSA_PSS = "1.2.840.113549.1.9.4", "1.2.840.113549.1.1.1", "1.2.840.113549.1.1.10"
# Pre-encoded OBJECT IDENTIFIERs of the three OIDs a CompressedData needs (id-ct-compressedData, zlib, id-data).
_DER_COMPRESSED, _DER_ZLIB = bytes.fromhex("060b2a864886f70d0109100109"), bytes.fromhex("060b2a864886f70d0109100308")
_DER_DATA = bytes.fromhex("06092a864886f70d010701")
_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "1.3.14.3.2.26": hashes.SHA1, "2.16.840.1.101.3.4.2.1": hashes.SHA256, "2.16.840.1.101.3.4.2.2": hashes.SHA384,
    "2.16.840.1.101.3.4.2.3": hashes.SHA512, "2.16.840.1.101.3.4.2.4": hashes.SHA224,
}
_DIGEST_OIDS = {algorithm.name: oid for oid, algorithm in _DIGESTS.items()}
_ECDSA_OIDS = {"sha1": "1.2.840.10045.4.1", "sha224": "1.2.840.10045.4.3.1", "sha256": "1.2.840.10045.4.3.2",
               "sha384": "1.2.840.10045.4.3.3", "sha512": "1.2.840.10045.4.3.4"}
_CIPHERS: dict[str, tuple[type[algorithms.AES] | type[TripleDES], int, Literal["cbc", "gcm"]]] = {
    # content-encryption OID: (algorithm, key bytes, mode)
    "2.16.840.1.101.3.4.1.2": (algorithms.AES, 16, "cbc"), "2.16.840.1.101.3.4.1.22": (algorithms.AES, 24, "cbc"),
    "2.16.840.1.101.3.4.1.42": (algorithms.AES, 32, "cbc"), "1.2.840.113549.3.7": (TripleDES, 24, "cbc"),
    "2.16.840.1.101.3.4.1.6": (algorithms.AES, 16, "gcm"), "2.16.840.1.101.3.4.1.26": (algorithms.AES, 24, "gcm"),
    "2.16.840.1.101.3.4.1.46": (algorithms.AES, 32, "gcm"),
}
_NAME_KEYS = {"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU"}

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class AS2Error(TransportError):
    """An AS2 message or MDN was refused.

    Never retryable: sending the same bytes again gives the same answer. ``disposition``
    is the RFC 4130 error modifier to put in the MDN sent back to the partner.
    """

    def __init__(self, message: str, *, disposition: str = UNEXPECTED_ERROR, peer: str | None = None) -> None:
        self.disposition = disposition
        super().__init__(message, peer=peer, retryable=False)


@dataclass(frozen=True)
class OutboundMessage:
    """What to POST: HTTP headers and body. ``mic`` is what the partner's MDN must return (None for an MDN)."""

    headers: dict[str, str]
    body: bytes
    mic: str | None
    message_id: str


@dataclass(frozen=True)
class MdnRequest:
    """What a sender asked for, read from the request headers alone so that it survives any later failure."""

    message_id: str
    as2_from: str
    as2_to: str
    wanted: bool
    signed: bool
    signed_required: bool
    mic_algorithm: str
    async_url: str | None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> MdnRequest:
        h = _lower(headers)
        missing = [name for name in ("message-id", "as2-from", "as2-to") if not h.get(name, "").strip()]
        if missing:
            raise AS2Error(f"not an AS2 request: header(s) {', '.join(missing)} missing")
        options = {}
        for item in h.get("disposition-notification-options", "").split(";"):
            name, _, values = item.partition("=")
            options[name.strip().lower()] = [v.strip().lower() for v in values.split(",")]
        protocol = options.get("signed-receipt-protocol", [])
        asked = [a for a in options.get("signed-receipt-micalg", [])[1:] if a in _MIC_ALGORITHMS]
        return cls(_angle(h["message-id"]), _unquote(h["as2-from"]), _unquote(h["as2-to"]),
                   "disposition-notification-to" in h, "pkcs7-signature" in protocol[1:],
                   protocol[:1] == ["required"], asked[0] if asked else "sha-256",
                   h.get("receipt-delivery-option", "").strip() or None)


@dataclass(frozen=True)
class InboundMessage:
    """A message that passed every check the agreement asks for; ``mdn_request`` says how to answer it."""

    payload: bytes
    filename: str | None
    content_type: str
    as2_from: str
    as2_to: str
    message_id: str
    mic: str
    signed: bool
    encrypted: bool
    compressed: bool
    mdn_request: MdnRequest


@dataclass(frozen=True)
class Mdn:
    """A receipt as read. ``mic_matches`` is left for the caller to judge: a mismatch is evidence, not an exception."""

    message_id: str | None
    original_message_id: str
    disposition: str
    processed: bool
    error: str | None
    mic: str | None
    mic_matches: bool
    signed: bool
    #: The partner's warning (``processed/warning: ...``): processed all the same, the text kept as evidence.
    warning: str | None = None


def build_message(
    payload: bytes, *, filename: str, content_type: str = "application/octet-stream", as2_from: str, as2_to: str,
    message_id: str | None = None, subject: str = "AS2 message", sign_key: PrivateKey | None = None,
    sign_cert: x509.Certificate | None = None, encrypt_cert: x509.Certificate | None = None,
    encryption: str = "aes256-cbc", digest: str = "sha256", compress: bool = False,
    mdn_mode: Literal["sync", "async"] | None = "sync", mdn_url: str | None = None, signed_mdn: bool = True,
) -> OutboundMessage:
    """Layers go compress, sign, encrypt (RFC 5402 order), so the MIC covers what was signed. ``digest``
    signs, names the micalg and the MIC we ask the MDN for; ``encryption`` is one of ``ENCRYPTIONS``."""
    if (sign_key is None) != (sign_cert is None):
        raise ValueError("sign_key and sign_cert go together")
    if digest not in SIGNING_DIGESTS or encryption not in ENCRYPTIONS:
        raise ValueError(f"the signing digest is one of {', '.join(SIGNING_DIGESTS)} and the encryption one of "
                         f"{', '.join(ENCRYPTIONS)}, not {digest!r} and {encryption!r}")
    micalg = SIGNING_DIGESTS[digest][1]
    if mdn_mode == "async" and not mdn_url:
        raise ValueError("an asynchronous MDN needs mdn_url")
    name = _safe(filename.replace("\\", "/").rsplit("/", 1)[-1], "filename").replace('"', "")
    entity_headers = {"Content-Type": _safe(content_type, "content_type"), "Content-Transfer-Encoding": "binary",
                      "Content-Disposition": f'attachment; filename="{name}"'}
    body = payload
    if compress:
        body = _compress(_entity(entity_headers, body))
        entity_headers = _pkcs7_headers("compressed-data", "smime.p7z")
    mic_source = None
    if sign_key is not None and sign_cert is not None:
        mic_source = _entity(entity_headers, body)
        entity_headers, body = _sign(mic_source, sign_key, sign_cert, digest)
    if encrypt_cert is not None:
        clear = _entity(entity_headers, body)
        mic_source = clear if mic_source is None else mic_source
        body = _encrypt(clear, encrypt_cert, ENCRYPTIONS[encryption])
        entity_headers = _pkcs7_headers("authEnveloped-data" if encryption.endswith("-gcm") else "enveloped-data",
                                        "smime.p7m")
    headers = _as2_headers(as2_from, as2_to, message_id, _safe(subject, "subject"), entity_headers)
    if mdn_mode is not None:
        headers["Disposition-Notification-To"] = _safe(mdn_url or as2_from, "mdn_url")
        if signed_mdn:
            headers["Disposition-Notification-Options"] = mdn_options(digest)
        if mdn_mode == "async":
            headers["Receipt-Delivery-Option"] = _safe(mdn_url or "", "mdn_url")
    return OutboundMessage(headers, body, _mic(body if mic_source is None else mic_source, micalg),
                           headers["Message-ID"])


def parse_message(
    headers: Mapping[str, str], body: bytes, *, decrypt_key: rsa.RSAPrivateKey | None,
    decrypt_cert: x509.Certificate | None, verify_cert: x509.Certificate | None,
    require_signature: bool = True, require_encryption: bool = True,
) -> InboundMessage:
    """Peel the layers in whatever order RFC 5402 allows, then hold them against the partner agreement."""
    request = MdnRequest.from_headers(headers)
    inner, payload, done, mic_source = _peel(_lower(headers), body, decrypt_key, decrypt_cert, verify_cert)
    for required, what in ((require_encryption, "encrypted"), (require_signature, "signed")):
        if required and what not in done:
            raise AS2Error(f"the message is not {what}, and the agreement with {request.as2_from} requires it",
                           disposition=INSUFFICIENT_SECURITY)
    ctype, _ = _params(inner.get("content-type", "application/octet-stream"))
    if ctype.startswith("multipart/"):
        raise AS2Error(f"{ctype} payloads (several attachments) are not supported")
    filename = _params(inner.get("content-disposition", "attachment"))[1].get("filename")
    return InboundMessage(
        payload, filename.replace("\\", "/").rsplit("/", 1)[-1] if filename else None, ctype, request.as2_from,
        request.as2_to, request.message_id, _mic(payload if mic_source is None else mic_source, request.mic_algorithm),
        "signed" in done, "encrypted" in done, "compressed" in done, request,
    )


def build_mdn(
    original: InboundMessage | MdnRequest, *, error: AS2Error | None = None, sign_key: PrivateKey | None = None,
    sign_cert: x509.Certificate | None = None, reporting_ua: str = "chorus-gateway", message_id: str | None = None,
) -> OutboundMessage:
    """Give an ``InboundMessage`` for a receipt, or the ``MdnRequest`` and the ``AS2Error`` when parsing failed."""
    request = original.mdn_request if isinstance(original, InboundMessage) else original
    if isinstance(original, MdnRequest) and error is None:
        raise ValueError("an MDN for a message that was not parsed must carry the error")
    if request.signed_required and sign_key is None:
        raise AS2Error(f"{request.as2_from} requires a signed MDN and no signing key is configured")
    disposition = "automatic-action/MDN-sent-automatically; processed"
    fields = [f"Reporting-UA: {reporting_ua}", f"Original-Recipient: rfc822; {_as2_name(request.as2_to)}",
              f"Final-Recipient: rfc822; {_as2_name(request.as2_to)}", f"Original-Message-ID: {request.message_id}"]
    if error is not None:
        fields.append(f"Disposition: {disposition}/error: {error.disposition}")
        text = f"The AS2 message {request.message_id} could not be processed: {error.message}"
    else:
        assert isinstance(original, InboundMessage)
        fields += [f"Disposition: {disposition}", f"Received-Content-MIC: {original.mic}"]
        text = f"The AS2 message {request.message_id} was received and processed; this is not a business reply."
    boundary = _boundary()
    report = _multipart(boundary, [
        _entity({"Content-Type": "text/plain"}, " ".join(text.split()).encode("ascii", "replace") + b"\r\n"),
        _entity({"Content-Type": "message/disposition-notification"},
                "".join(f"{_safe(field, 'MDN field')}\r\n" for field in fields).encode()),
    ])
    entity_headers = {"Content-Type": f'multipart/report; report-type=disposition-notification; boundary="{boundary}"'}
    if request.signed and sign_key is not None and sign_cert is not None:
        # Signed with the digest the sender asked the MIC in: what it verifies MDNs with.
        entity_headers, report = _sign(_entity(entity_headers, report), sign_key, sign_cert,
                                       request.mic_algorithm.replace("-", ""))
    headers = _as2_headers(request.as2_to, request.as2_from, message_id, "Message Disposition Notification",
                           entity_headers)
    return OutboundMessage(headers, report, None, headers["Message-ID"])


def parse_mdn(
    headers: Mapping[str, str], body: bytes, *, verify_cert: x509.Certificate | None,
    expected_message_id: str | None, expected_mic: str | None, require_signature: bool = True,
) -> Mdn:
    """An MDN is proof of delivery only when signed by the partner; without ``expected_message_id`` (an async
    MDN not matched yet) the caller matches ``original_message_id`` itself."""
    h = _lower(headers)
    ctype, params = _params(h.get("content-type", ""))
    signed = ctype == "multipart/signed"
    if signed:
        if verify_cert is None:
            raise AS2Error("the MDN is signed but no partner certificate is configured to verify it")
        inner_headers, body = _split_entity(_verify(*_signed_parts(body, params), verify_cert))
        ctype, params = _params(inner_headers.get("content-type", ""))
        body = _decode(inner_headers, body)
    elif require_signature:
        raise AS2Error(f"the MDN is not signed ({ctype or 'no Content-Type'}), and a signed MDN was asked for",
                       disposition=INSUFFICIENT_SECURITY)
    if ctype != "multipart/report":
        raise AS2Error(f"not an MDN: the content is {ctype or 'untyped'}, not multipart/report")
    fields: dict[str, str] = {}
    for part_headers, part_body in map(_split_entity, _parts(body, params)):
        if _params(part_headers.get("content-type", ""))[0] == "message/disposition-notification":
            fields = _parse_headers(_decode(part_headers, part_body).strip())
    if "disposition" not in fields:
        raise AS2Error("the MDN has no message/disposition-notification part with a Disposition")
    original = _angle(fields.get("original-message-id", ""))
    if expected_message_id is not None and original != _angle(expected_message_id):
        raise AS2Error(f"the MDN is for message {original}, not for {_angle(expected_message_id)}")
    error, warning = read_disposition(fields["disposition"])
    mic = fields.get("received-content-mic")
    return Mdn(
        _angle(h["message-id"]) if h.get("message-id") else None, original, fields["disposition"], error is None,
        error, mic, mic is not None and expected_mic is not None and same_mic(mic, expected_mic), signed, warning,
    )


def read_disposition(value: str) -> tuple[str | None, str | None]:
    """``(error, warning)`` of an MDN's Disposition field (RFC 4130 7.4.3); ``error`` is None only when the
    message was processed, with no modifier or a ``warning`` one.

    Fails closed: anything else is an error, however it is spelled (libas2 writes ``error=x``, RFC 4130
    ``error: x``), and the error is the partner's own words.

    >>> read_disposition("automatic-action/MDN-sent-automatically; processed/error=decryption-failed")
    ('decryption-failed', None)
    >>> read_disposition("automatic-action/MDN-sent-automatically; processed/Warning: duplicate-document")
    (None, 'duplicate-document')
    """
    mode, semicolon, disposition = value.partition(";")
    action, _, sending = (part.strip().lower() for part in mode.partition("/"))
    if not semicolon or action not in _ACTION_MODES or sending not in _SENDING_MODES:
        return "no action and sending modes", None
    kind, slash, modifier = (part.strip() for part in disposition.partition("/"))
    name, detail = (part.strip() for part in [*re.split(r"[:=]", modifier, maxsplit=1), ""][:2])
    if kind.lower() != "processed":
        return detail or name or kind or "no disposition type", None
    if not slash:
        return None, None
    if name.lower() == "warning":
        return None, detail or name.lower()
    return detail or name or "an empty disposition modifier", None


def same_mic(a: str, b: str) -> bool:
    """MICs are compared on the digest and on the algorithm, whichever way the algorithm is spelled."""
    (digest_a, _, alg_a), (digest_b, _, alg_b) = a.partition(","), b.partition(",")
    same_alg = alg_a.strip().lower().replace("-", "") == alg_b.strip().lower().replace("-", "")
    return same_alg and digest_a.strip() == digest_b.strip()


def _peel(
    headers: dict[str, str], body: bytes, key: rsa.RSAPrivateKey | None, cert: x509.Certificate | None,
    verify_cert: x509.Certificate | None,
) -> tuple[dict[str, str], bytes, set[str], bytes | None]:
    """Layers come off in any order RFC 5402 allows; the MIC source follows RFC 4130 7.3.1 as they do."""
    done: set[str] = set()
    mic_source = None
    for _ in range(4):
        ctype, params = _params(headers.get("content-type", "application/octet-stream"))
        smime_type, data = params.get("smime-type", "").lower(), _decode(headers, body)
        if ctype in _PKCS7_MIME and smime_type in ("enveloped-data", "authenveloped-data", ""):
            if done or key is None or cert is None:
                raise AS2Error("an encrypted layer is only accepted as the outermost one" if done else
                               "the message is encrypted but no decryption key is configured")
            entity = mic_source = _decrypt(data, key, cert)
            done.add("encrypted")
        elif ctype == "multipart/signed":
            if "signed" in done or verify_cert is None:
                raise AS2Error("the message is signed twice" if "signed" in done else
                               "the message is signed but no partner certificate is configured to verify it")
            entity = mic_source = _verify(*_signed_parts(data, params), verify_cert)
            done.add("signed")
        elif ctype in _PKCS7_MIME and smime_type == "compressed-data" and "compressed" not in done:
            entity, mic_source = _decompress(data), data if mic_source is None else mic_source
            done.add("compressed")
        else:
            return headers, data, done, mic_source
        headers, body = _split_entity(entity)
    raise AS2Error("too many nested S/MIME layers")


# --- MIME -------------------------------------------------------------------------------------------------------


def _as2_headers(
    as2_from: str, as2_to: str, message_id: str | None, subject: str, entity_headers: dict[str, str],
) -> dict[str, str]:
    entity_headers.pop("Content-Transfer-Encoding", None)  # HTTP is 8-bit clean: bodies are sent as they are
    return {
        "AS2-Version": "1.2", "AS2-From": _as2_name(as2_from), "AS2-To": _as2_name(as2_to),
        "Message-ID": _angle(message_id) if message_id else f"<{uuid.uuid4().hex}@chorus-gateway>",
        "Subject": subject, "Date": email.utils.formatdate(usegmt=True), "MIME-Version": "1.0", **entity_headers,
    }


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _entity(headers: Mapping[str, str], body: bytes) -> bytes:
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode("ascii") + b"\r\n" + body


def _multipart(boundary: str, entities: list[bytes]) -> bytes:
    delimiter = f"--{boundary}\r\n".encode()
    return delimiter + (b"\r\n" + delimiter).join(entities) + f"\r\n--{boundary}--\r\n".encode()


def _pkcs7_headers(smime_type: str, name: str) -> dict[str, str]:
    return {"Content-Type": f'application/pkcs7-mime; smime-type={smime_type}; name="{name}"',
            "Content-Transfer-Encoding": "binary", "Content-Disposition": f'attachment; filename="{name}"'}


def _boundary(*contents: bytes) -> str:
    while True:
        boundary = f"----=_Part_{secrets.token_hex(16)}"
        if not any(boundary.encode() in content for content in contents):
            return boundary


def _safe(value: str, what: str) -> str:
    if any(c in value for c in "\r\n\0") or not value.isascii():
        raise ValueError(f"{what} must be one line of ASCII: {value!r}")
    return value


def _as2_name(value: str) -> str:
    """RFC 4130 6.2: 1 to 128 printable ASCII characters, quoted when they include spaces or specials."""
    if not 1 <= len(value) <= 128 or not all(" " <= c <= "~" for c in value):
        raise ValueError(f"an AS2 name is 1 to 128 printable ASCII characters: {value!r}")
    if re.fullmatch(r"[!#-\[\]-~]+", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(value: str) -> str:
    value = value.strip()
    quoted = len(value) >= 2 and value[0] == value[-1] == '"'
    return re.sub(r"\\(.)", r"\1", value[1:-1]) if quoted else value


def _angle(message_id: str) -> str:
    return f"<{message_id.strip().strip('<>').strip()}>"


def _params(value: str) -> tuple[str, dict[str, str]]:
    """Header value and parameters, with quoting and RFC 2231 handled by the standard library."""
    message = email.message.Message()
    message["X"] = value
    found = message.get_params(header="X") or [("", "")]
    params = {name.lower(): email.utils.collapse_rfc2231_value(v) for name, v in found[1:]}
    return found[0][0].strip().lower(), params


def _parse_headers(block: bytes) -> dict[str, str]:
    lines: list[str] = []
    for line in re.split(r"\r?\n", block.decode("latin-1")):
        if line[:1] in (" ", "\t") and lines:
            lines[-1] += " " + line.strip()
        elif line:
            lines.append(line)
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or " " in name.strip():
            raise AS2Error(f"malformed MIME header line: {line[:80]!r}")
        headers.setdefault(name.strip().lower(), value.strip())
    return headers


def _split_entity(entity: bytes) -> tuple[dict[str, str], bytes]:
    """openssl writes LF-only MIME, AS2 servers CRLF: both are read."""
    if entity.startswith((b"\r\n", b"\n")):
        return {}, entity[2 if entity.startswith(b"\r\n") else 1:]
    blank = re.search(rb"\r?\n\r?\n", entity)
    if blank is None:
        raise AS2Error("a MIME entity has no blank line after its headers (truncated or not MIME)")
    return _parse_headers(entity[: blank.start()]), entity[blank.end():]


def _decode(headers: Mapping[str, str], body: bytes) -> bytes:
    encoding = headers.get("content-transfer-encoding", "binary").strip().lower()
    if encoding in ("binary", "8bit", "7bit"):
        return body
    if encoding == "quoted-printable":
        return quopri.decodestring(body)
    if encoding != "base64":
        raise AS2Error(f"unknown Content-Transfer-Encoding {encoding!r}")
    try:
        return base64.b64decode(re.sub(rb"\s+", b"", body), validate=True)
    except ValueError as exc:
        raise AS2Error(f"a base64 MIME part cannot be decoded: {exc}") from exc


def _parts(body: bytes, params: Mapping[str, str]) -> list[bytes]:
    """The line break before a delimiter belongs to the delimiter (RFC 2046 5.1.1), never to the part. Whether
    that is CRLF or LF (openssl) is read from the first delimiter, so a part may end with a bare CR."""
    boundary = params.get("boundary")
    if not boundary:
        raise AS2Error("a multipart Content-Type has no boundary parameter")
    dash = b"--" + re.escape(boundary.encode("latin-1"))
    first = re.search(rb"(?:^|\n)" + dash + rb"[ \t]*(\r?\n)", body)
    eol = first.group(1) if first else b"\r\n"
    marks = list(re.finditer(rb"(?:^|" + eol + rb")" + dash + rb"(--)?[ \t]*(?:" + eol + rb"|$)", body))
    parts = []
    for mark, following in zip(marks, marks[1:], strict=False):
        parts.append(body[mark.end(): following.start()])
        if following.group(1):
            return parts
    raise AS2Error("a multipart body has no closing boundary: it was truncated or altered")


def _mic(data: bytes, algorithm: str = "sha-256") -> str:
    return f"{base64.b64encode(hashlib.new(algorithm.replace('-', ''), data).digest()).decode()}, {algorithm}"


# --- CMS --------------------------------------------------------------------------------------------------------


def _sign(entity: bytes, key: PrivateKey, cert: x509.Certificate, digest: str) -> tuple[dict[str, str], bytes]:
    """Binary, detached: the signed bytes are the entity exactly as sent, which is what the MIC covers."""
    algorithm, micalg = SIGNING_DIGESTS[digest]
    signature = b"\r\n".join(base64.encodebytes(_signed_data(entity, key, cert, algorithm())).splitlines())
    boundary = _boundary(entity)
    body = _multipart(boundary, [entity, _entity({
        "Content-Type": 'application/pkcs7-signature; name="smime.p7s"', "Content-Transfer-Encoding": "base64",
        "Content-Disposition": 'attachment; filename="smime.p7s"'}, signature)])
    content_type = f'multipart/signed; protocol="application/pkcs7-signature"; micalg={micalg}; boundary="{boundary}"'
    return {"Content-Type": content_type, "Content-Transfer-Encoding": "binary"}, body


def _signed_data(content: bytes, key: PrivateKey, cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> bytes:
    """A detached SignedData (RFC 5652 5): one signer named by issuer and serial, its certificate, and the
    content type, signing time and message digest as signed attributes. Written here because cryptography's
    builder refuses SHA-1, which old partners still sign and verify with."""
    hasher = hashes.Hash(algorithm)
    hasher.update(content)
    digest_algorithm = _der(0x30, _der_oid(_DIGEST_OIDS[algorithm.name]))
    attributes = b"".join(sorted(  # a DER SET OF is sorted by encoding, and the signature covers the DER
        _der(0x30, _der_oid(oid) + _der(0x31, value)) for oid, value in (
            (_OID_CONTENT_TYPE, _DER_DATA),
            (_OID_SIGNING_TIME, _der(0x17, datetime.now(UTC).strftime("%y%m%d%H%M%SZ").encode())),
            (_OID_MESSAGE_DIGEST, _der(0x04, hasher.finalize())))))
    if isinstance(key, rsa.RSAPrivateKey):
        value = key.sign(_der(0x31, attributes), padding.PKCS1v15(), algorithm)
        signature_algorithm = _der(0x30, _der_oid(_OID_RSA) + b"\x05\x00")
    else:
        value = key.sign(_der(0x31, attributes), ec.ECDSA(algorithm))
        signature_algorithm = _der(0x30, _der_oid(_ECDSA_OIDS[algorithm.name]))
    signer = _der(0x30, _der_int(1) + _issuer_and_serial(cert) + digest_algorithm + _der(0xA0, attributes)
                  + signature_algorithm + _der(0x04, value))
    signed = _der(0x30, _der_int(1) + _der(0x31, digest_algorithm) + _der(0x30, _DER_DATA)
                  + _der(0xA0, cert.public_bytes(serialization.Encoding.DER)) + _der(0x31, signer))
    return _der(0x30, _der_oid(_OID_SIGNED) + _der(0xA0, signed))


def _issuer_and_serial(cert: x509.Certificate) -> bytes:
    return _der(0x30, cert.issuer.public_bytes() + _der_int(cert.serial_number))


def _signed_parts(body: bytes, params: Mapping[str, str]) -> tuple[bytes, bytes]:
    parts = _parts(body, params)
    headers, signature = _split_entity(parts[-1])
    if len(parts) != 2 or _params(headers.get("content-type", ""))[0] not in _SIGNATURE_TYPES:
        raise AS2Error("multipart/signed needs two parts, the second a PKCS#7 signature",
                       disposition=AUTHENTICATION_FAILED)
    return parts[0], _decode(headers, signature)


def _verify(content: bytes, signature: bytes, cert: x509.Certificate) -> bytes:
    """Only ``cert`` is trusted, never the certificates the signature carries: the partner's is pinned."""
    try:
        signers = _content_info(signature, _OID_SIGNED).children[-1].children
        fields = next((s.children for s in signers if _sid_matches(s.children[1], cert)), None)
        if fields is None:
            raise AS2Error(f"the message is signed with the certificate "
                           f"{', '.join(_describe_sid(s.children[1]) for s in signers) or '(none)'}, not with the "
                           f"partner certificate {_describe(cert)}", disposition=AUTHENTICATION_FAILED)
        attributes = fields[3] if fields[3].tag == 0xA0 else None
        algorithm_field, value = fields[4:6] if attributes else fields[3:5]
        digest_oid, signature_oid = _oid(fields[2].children[0]), _oid(algorithm_field.children[0])
        if digest_oid not in _DIGESTS or signature_oid == _OID_RSA_PSS:
            raise AS2Error(f"signature algorithm {digest_oid}/{signature_oid} is not supported",
                           disposition=AUTHENTICATION_FAILED)
        algorithm, signed_bytes = _DIGESTS[digest_oid](), content
        if attributes is not None:
            digest = hashes.Hash(algorithm)
            digest.update(content)
            if not hmac.compare_digest(digest.finalize(), _attribute(attributes, _OID_MESSAGE_DIGEST)):
                raise AS2Error("the content does not match its signature: it was altered after signing",
                               disposition=INTEGRITY_CHECK_FAILED)
            signed_bytes = b"\x31" + attributes.raw[1:]  # signed as a SET OF, not as the [0] it is stored as
        public_key, signature_value = cert.public_key(), _octets(value)
    except (ValueError, IndexError) as exc:
        raise AS2Error(f"the signature cannot be read: {exc}", disposition=AUTHENTICATION_FAILED) from exc
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature_value, signed_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature_value, signed_bytes, ec.ECDSA(algorithm))
        else:
            raise AS2Error("the partner certificate's key type is not supported", disposition=AUTHENTICATION_FAILED)
    except InvalidSignature:
        raise AS2Error(f"the signature does not verify with the partner certificate {_describe(cert)}",
                       disposition=AUTHENTICATION_FAILED) from None
    return content


def _encrypt(entity: bytes, cert: x509.Certificate, cipher_oid: str) -> bytes:
    """EnvelopedData (CBC) or AuthEnvelopedData (GCM, RFC 5084) to ``cert``, the content key under RSA PKCS#1
    v1.5: what every AS2 implementation reads (OAEP is read, not sent)."""
    public_key = cert.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ValueError("the partner certificate must hold an RSA key to encrypt to it")
    cipher, size, mode = _CIPHERS[cipher_oid]
    content_key = secrets.token_bytes(size)
    recipient = _der(0x30, _der_int(0) + _issuer_and_serial(cert) + _der(0x30, _der_oid(_OID_RSA) + b"\x05\x00")
                     + _der(0x04, public_key.encrypt(content_key, padding.PKCS1v15())))
    if mode == "gcm":
        nonce = secrets.token_bytes(12)  # RFC 5084 3.2: 12 octets
        encryptor = Cipher(cipher(content_key), modes.GCM(nonce)).encryptor()
        encrypted = encryptor.update(entity) + encryptor.finalize()
        parameters, mac = _der(0x30, _der(0x04, nonce) + _der_int(16)), _der(0x04, encryptor.tag)
        content_type = _OID_AUTH_ENVELOPED
    else:
        iv = secrets.token_bytes(cipher.block_size // 8)
        padder = block_padding.PKCS7(cipher.block_size).padder()
        encryptor = Cipher(cipher(content_key), modes.CBC(iv)).encryptor()
        encrypted = encryptor.update(padder.update(entity) + padder.finalize()) + encryptor.finalize()
        parameters, mac, content_type = _der(0x04, iv), b"", _OID_ENVELOPED
    content_info = _der(0x30, _DER_DATA + _der(0x30, _der_oid(cipher_oid) + parameters) + _der(0x80, encrypted))
    enveloped = _der(0x30, _der_int(0) + _der(0x31, recipient) + content_info + mac)
    return _der(0x30, _der_oid(content_type) + _der(0xA0, enveloped))


def _decrypt(data: bytes, key: rsa.RSAPrivateKey, cert: x509.Certificate) -> bytes:
    """``pkcs7_decrypt_der`` refuses BER (indefinite lengths), 3DES, OAEP and GCM, all of which AS2 partners send.
    EnvelopedData and AuthEnvelopedData are told apart by their content type, whatever the smime-type says."""
    try:
        content_type, content = _read(data)[0].children[:2]
        kind = _oid(content_type)
        if kind not in (_OID_ENVELOPED, _OID_AUTH_ENVELOPED):
            raise ValueError(f"the CMS content type is {kind}, not (auth)enveloped data")
        fields = content.children[0].children
        # version, [0] originatorInfo?, recipientInfos, encryptedContentInfo, then for AuthEnvelopedData
        # [1] authAttrs?, mac, [2] unauthAttrs?
        recipients, content_info, *rest = [f for f in fields[1:] if f.tag not in (0xA0, 0xA1, 0xA2)]
        chosen = next((r.children for r in recipients.children if r.tag == 0x30 and _sid_matches(r.children[1], cert)),
                      None)
        if chosen is None:
            seen = [_describe_sid(r.children[1]) if r.tag == 0x30 else "(not RSA)" for r in recipients.children]
            raise AS2Error(f"the message is encrypted for the certificate {', '.join(seen) or '(none)'}, not for our "
                           f"certificate {_describe(cert)}: the partner must use our current certificate",
                           disposition=DECRYPTION_FAILED)
        _, _, key_algorithm, encrypted_key = chosen[:4]
        _, algorithm, encrypted = content_info.children[:3]
        cipher_oid = _oid(algorithm.children[0])
        if cipher_oid not in _CIPHERS:
            raise AS2Error(f"content encryption {cipher_oid} is not supported (AES-CBC, AES-GCM and 3DES are)",
                           disposition=DECRYPTION_FAILED)
        cipher, size, mode = _CIPHERS[cipher_oid]
        if (mode == "gcm") != (kind == _OID_AUTH_ENVELOPED):  # RFC 5084: GCM only where the tag is authenticated
            raise ValueError(f"content encryption {cipher_oid} does not go in content type {kind}")
        content_key = key.decrypt(_octets(encrypted_key), _key_transport(key_algorithm))
        if len(content_key) != size:
            raise ValueError("the content key has the wrong size")
        if mode == "gcm":
            auth_attributes = next((f for f in fields if f.tag == 0xA1), None)
            return _open_gcm(algorithms.AES(content_key), algorithm.children[1], _octets(encrypted), _octets(rest[0]),
                             b"\x31" + auth_attributes.raw[1:] if auth_attributes else b"")
        decryptor = Cipher(cipher(content_key), modes.CBC(_octets(algorithm.children[1]))).decryptor()
        unpadder = block_padding.PKCS7(cipher.block_size).unpadder()
        return unpadder.update(decryptor.update(_octets(encrypted)) + decryptor.finalize()) + unpadder.finalize()
    except (ValueError, IndexError) as exc:
        raise AS2Error(f"the message cannot be decrypted: it was altered in transit, or our key does not match "
                       f"our certificate ({exc})", disposition=DECRYPTION_FAILED) from exc


def _key_transport(algorithm: _Tlv) -> padding.AsymmetricPadding:
    """RSA PKCS#1 v1.5, or RSAES-OAEP (RFC 8017 A.2.1) with its hash, MGF1 hash and label, SHA-1 by default."""
    oid = _oid(algorithm.children[0])
    if oid == _OID_RSA:
        return padding.PKCS1v15()
    if oid != _OID_RSA_OAEP:
        raise AS2Error(f"key transport {oid} is not supported (RSA PKCS#1 v1.5 and RSAES-OAEP are)",
                       disposition=DECRYPTION_FAILED)
    digest, mask_digest, label = hashes.SHA1(), hashes.SHA1(), None
    for field in algorithm.children[1].children if len(algorithm.children) > 1 else []:
        inner = field.children[0]
        if field.tag == 0xA0:
            digest = _digest(inner)
        elif field.tag == 0xA1 and _oid(inner.children[0]) == _OID_MGF1:
            mask_digest = _digest(inner.children[1])
        elif field.tag == 0xA2 and _oid(inner.children[0]) == _OID_P_SPECIFIED:
            label = _octets(inner.children[1]) or None
        else:
            raise ValueError(f"RSAES-OAEP parameter [{field.tag & 0x1F}] {_oid(inner.children[0])} is not supported")
    return padding.OAEP(padding.MGF1(mask_digest), digest, label)


def _digest(algorithm: _Tlv) -> hashes.HashAlgorithm:
    oid = _oid(algorithm.children[0])
    if oid not in _DIGESTS:
        raise ValueError(f"digest {oid} is not supported")
    return _DIGESTS[oid]()


def _open_gcm(cipher: algorithms.AES, parameters: _Tlv, encrypted: bytes, mac: bytes,
              authenticated: bytes) -> bytes:
    """RFC 5084 GCMParameters: the nonce, and the tag length (12 by default) the mac field must have."""
    nonce, *length = parameters.children
    tag_length = _int(length[0]) if length else 12
    if not 12 <= tag_length <= 16 or len(mac) != tag_length:
        raise ValueError(f"the authentication tag is {len(mac)} bytes, its parameters say {tag_length}")
    decryptor = Cipher(cipher, modes.GCM(_octets(nonce), mac, min_tag_length=tag_length)).decryptor()
    decryptor.authenticate_additional_data(authenticated)
    try:
        return decryptor.update(encrypted) + decryptor.finalize()
    except InvalidTag:
        raise ValueError("the authentication tag does not match") from None


def _compress(entity: bytes) -> bytes:
    """RFC 3274 CompressedData with zlib; cryptography has no builder for it."""
    encapsulated = _der(0x30, _DER_DATA + _der(0xA0, _der(0x04, zlib.compress(entity))))
    compressed = _der(0x30, b"\x02\x01\x00" + _der(0x30, _DER_ZLIB) + encapsulated)
    return _der(0x30, _DER_COMPRESSED + _der(0xA0, compressed))


def _decompress(data: bytes) -> bytes:
    try:
        _, algorithm, encapsulated = _content_info(data, _OID_COMPRESSED).children[:3]
        if _oid(algorithm.children[0]) != _OID_ZLIB:
            raise ValueError(f"compression {_oid(algorithm.children[0])} is not zlib")
        inflater = zlib.decompressobj()
        entity = inflater.decompress(_octets(encapsulated.children[1].children[0]), _MAX_INFLATED)
        if inflater.unconsumed_tail or not inflater.eof:
            raise ValueError("the compressed content is truncated or inflates beyond 1 GiB")
        return entity
    except (ValueError, IndexError, zlib.error) as exc:
        raise AS2Error(f"the compressed layer cannot be read: {exc}", disposition=DECOMPRESSION_FAILED) from exc


def _sid_matches(sid: _Tlv, cert: x509.Certificate) -> bool:
    if sid.tag == 0x30:  # issuerAndSerialNumber
        issuer, serial = sid.children[:2]
        return issuer.raw == cert.issuer.public_bytes() and _int(serial) == cert.serial_number
    try:  # [0] subjectKeyIdentifier
        return sid.tag == 0x80 and sid.body == cert.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return False


def _describe(cert: x509.Certificate) -> str:
    return f"serial {cert.serial_number:#x} issued by {cert.issuer.rfc4514_string() or '(empty name)'}"


def _describe_sid(sid: _Tlv) -> str:
    if sid.tag != 0x30:
        return f"with key identifier {sid.body.hex()}"
    issuer, serial = sid.children[:2]
    names = [f"{_NAME_KEYS.get(_oid(t), _oid(t))}={v.body.decode('utf-8', 'replace')}"
             for rdn in issuer.children for t, v in (atv.children[:2] for atv in rdn.children)]
    return f"serial {_int(serial):#x} issued by {','.join(reversed(names))}"


def _attribute(attributes: _Tlv, oid: str) -> bytes:
    for attribute in attributes.children:
        if _oid(attribute.children[0]) == oid:
            return _octets(attribute.children[1].children[0])
    raise ValueError(f"signed attribute {oid} is missing")


# --- DER / BER --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tlv:
    tag: int
    body: bytes
    raw: bytes

    @property
    def children(self) -> list[_Tlv]:
        items, position = [], 0
        while position < len(self.body):
            item, position = _read(self.body, position)
            items.append(item)
        return items


def _read(data: bytes, position: int = 0, depth: int = 0) -> tuple[_Tlv, int]:
    """One TLV. BER indefinite lengths are accepted: Bouncy Castle (OpenAS2, Mendelson...) streams them."""
    start, tag, first = position, data[position], data[position + 1]
    if tag & 0x1F == 0x1F or depth > _MAX_DEPTH:
        raise ValueError("high tag number or too deep nesting, not CMS")
    position += 2
    if first == 0x80:
        if not tag & 0x20:
            raise ValueError("indefinite length on a primitive value")
        inner = position
        while data[position: position + 2] != b"\0\0":
            _, position = _read(data, position, depth + 1)
        return _Tlv(tag, data[inner:position], data[start: position + 2]), position + 2
    length = first
    if first & 0x80:
        size = first & 0x7F
        if size > 4 or position + size > len(data):
            raise ValueError("bad DER length")
        length, position = int.from_bytes(data[position: position + size], "big"), position + size
    if position + length > len(data):
        raise ValueError("truncated DER value")
    return _Tlv(tag, data[position: position + length], data[start: position + length]), position + length


def _content_info(data: bytes, oid: str) -> _Tlv:
    content_type, content = _read(data)[0].children[:2]
    if _oid(content_type) != oid:
        raise ValueError(f"the CMS content type is {_oid(content_type)}, expected {oid}")
    return content.children[0]


def _oid(tlv: _Tlv) -> str:
    if tlv.tag != 0x06 or not tlv.body or tlv.body[-1] & 0x80:
        raise ValueError("an OBJECT IDENTIFIER was expected")
    arcs, value = [], 0
    for byte in tlv.body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in [first, arcs[0] - 40 * first, *arcs[1:]])


def _int(tlv: _Tlv) -> int:
    return int.from_bytes(tlv.body, "big", signed=True)


def _octets(tlv: _Tlv, depth: int = 0) -> bytes:
    """A BER OCTET STRING may come in constructed chunks."""
    if depth > _MAX_DEPTH:
        raise ValueError("too deeply nested OCTET STRING")
    return b"".join(_octets(chunk, depth + 1) for chunk in tlv.children) if tlv.tag & 0x20 else tlv.body


def _der_oid(oid: str) -> bytes:
    arcs = [int(arc) for arc in oid.split(".")]
    body = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        body += bytes(reversed(chunk))
    return _der(0x06, bytes(body))


def _der_int(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def _der(tag: int, body: bytes) -> bytes:
    if len(body) < 0x80:
        return bytes([tag, len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body
