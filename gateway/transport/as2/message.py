"""AS2 (RFC 4130) messages and MDNs, built and read without any network.

Kept apart from the HTTP edges (``http``) so that the gateway can store the raw request
before anything here looks at it, and so that every failure can be turned into an error
MDN for the partner. The layers are MIME (``mime``) around CMS (``cms``).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.transport.as2 import cms, mime
from gateway.transport.as2.cms import ENCRYPTIONS, SIGNING_DIGESTS, PrivateKey
from gateway.transport.as2.errors import (
    AUTHENTICATION_FAILED,
    INSUFFICIENT_SECURITY,
    AS2Error,
)


def mdn_options(digest: str = "sha256") -> str:
    """The Disposition-Notification-Options asking for a signed MDN whose MIC uses our signing digest."""
    micalg = SIGNING_DIGESTS[digest][1]
    return f"signed-receipt-protocol=required, pkcs7-signature; signed-receipt-micalg=optional, {micalg}"


MDN_OPTIONS = mdn_options()
_PKCS7_MIME = ("application/pkcs7-mime", "application/x-pkcs7-mime")
_SIGNATURE_TYPES = ("application/pkcs7-signature", "application/x-pkcs7-signature")
_ACTION_MODES, _SENDING_MODES = ("automatic-action", "manual-action"), ("mdn-sent-automatically", "mdn-sent-manually")
_MIC_ALGORITHMS = ("sha-256", "sha256", "sha-384", "sha384", "sha-512", "sha512", "sha-1", "sha1")


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
        h = mime.lower(headers)
        missing = [name for name in ("message-id", "as2-from", "as2-to") if not h.get(name, "").strip()]
        if missing:
            raise AS2Error(f"not an AS2 request: header(s) {', '.join(missing)} missing")
        options = {}
        for item in h.get("disposition-notification-options", "").split(";"):
            name, _, values = item.partition("=")
            options[name.strip().lower()] = [v.strip().lower() for v in values.split(",")]
        protocol = options.get("signed-receipt-protocol", [])
        asked = [a for a in options.get("signed-receipt-micalg", [])[1:] if a in _MIC_ALGORITHMS]
        return cls(mime.angle(h["message-id"]), mime.unquote(h["as2-from"]), mime.unquote(h["as2-to"]),
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
    name = mime.safe(filename.replace("\\", "/").rsplit("/", 1)[-1], "filename").replace('"', "")
    entity_headers = {"Content-Type": mime.safe(content_type, "content_type"), "Content-Transfer-Encoding": "binary",
                      "Content-Disposition": f'attachment; filename="{name}"'}
    body = payload
    if compress:
        body = cms.compress(mime.entity(entity_headers, body))
        entity_headers = mime.pkcs7_headers("compressed-data", "smime.p7z")
    mic_source = None
    if sign_key is not None and sign_cert is not None:
        mic_source = mime.entity(entity_headers, body)
        entity_headers, body = _sign(mic_source, sign_key, sign_cert, digest)
    if encrypt_cert is not None:
        clear = mime.entity(entity_headers, body)
        mic_source = clear if mic_source is None else mic_source
        body = cms.encrypt(clear, encrypt_cert, encryption)
        entity_headers = mime.pkcs7_headers("authEnveloped-data" if encryption.endswith("-gcm") else "enveloped-data",
                                        "smime.p7m")
    headers = _as2_headers(as2_from, as2_to, message_id, mime.safe(subject, "subject"), entity_headers)
    if mdn_mode is not None:
        headers["Disposition-Notification-To"] = mime.safe(mdn_url or as2_from, "mdn_url")
        if signed_mdn:
            headers["Disposition-Notification-Options"] = mdn_options(digest)
        if mdn_mode == "async":
            headers["Receipt-Delivery-Option"] = mime.safe(mdn_url or "", "mdn_url")
    return OutboundMessage(headers, body, _mic(body if mic_source is None else mic_source, micalg),
                           headers["Message-ID"])


def parse_message(
    headers: Mapping[str, str], body: bytes, *, decrypt_key: rsa.RSAPrivateKey | None,
    decrypt_cert: x509.Certificate | None, verify_cert: x509.Certificate | None,
    require_signature: bool = True, require_encryption: bool = True,
) -> InboundMessage:
    """Peel the layers in whatever order RFC 5402 allows, then hold them against the partner agreement."""
    request = MdnRequest.from_headers(headers)
    inner, payload, done, mic_source = _peel(mime.lower(headers), body, decrypt_key, decrypt_cert, verify_cert)
    for required, what in ((require_encryption, "encrypted"), (require_signature, "signed")):
        if required and what not in done:
            raise AS2Error(f"the message is not {what}, and the agreement with {request.as2_from} requires it",
                           disposition=INSUFFICIENT_SECURITY)
    ctype, _ = mime.params(inner.get("content-type", "application/octet-stream"))
    if ctype.startswith("multipart/"):
        raise AS2Error(f"{ctype} payloads (several attachments) are not supported")
    filename = mime.params(inner.get("content-disposition", "attachment"))[1].get("filename")
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
    fields = [f"Reporting-UA: {reporting_ua}", f"Original-Recipient: rfc822; {mime.as2_name(request.as2_to)}",
              f"Final-Recipient: rfc822; {mime.as2_name(request.as2_to)}", f"Original-Message-ID: {request.message_id}"]
    if error is not None:
        fields.append(f"Disposition: {disposition}/error: {error.disposition}")
        text = f"The AS2 message {request.message_id} could not be processed: {error.message}"
    else:
        assert isinstance(original, InboundMessage)
        fields += [f"Disposition: {disposition}", f"Received-Content-MIC: {original.mic}"]
        text = f"The AS2 message {request.message_id} was received and processed; this is not a business reply."
    boundary = mime.boundary()
    report = mime.multipart(boundary, [
        mime.entity({"Content-Type": "text/plain"}, " ".join(text.split()).encode("ascii", "replace") + b"\r\n"),
        mime.entity({"Content-Type": "message/disposition-notification"},
                "".join(f"{mime.safe(field, 'MDN field')}\r\n" for field in fields).encode()),
    ])
    entity_headers = {"Content-Type": f'multipart/report; report-type=disposition-notification; boundary="{boundary}"'}
    if request.signed and sign_key is not None and sign_cert is not None:
        # Signed with the digest the sender asked the MIC in: what it verifies MDNs with.
        entity_headers, report = _sign(mime.entity(entity_headers, report), sign_key, sign_cert,
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
    h = mime.lower(headers)
    ctype, params = mime.params(h.get("content-type", ""))
    signed = ctype == "multipart/signed"
    if signed:
        if verify_cert is None:
            raise AS2Error("the MDN is signed but no partner certificate is configured to verify it")
        inner_headers, body = mime.split_entity(cms.verify(*_signed_parts(body, params), verify_cert))
        ctype, params = mime.params(inner_headers.get("content-type", ""))
        body = mime.decode(inner_headers, body)
    elif require_signature:
        raise AS2Error(f"the MDN is not signed ({ctype or 'no Content-Type'}), and a signed MDN was asked for",
                       disposition=INSUFFICIENT_SECURITY)
    if ctype != "multipart/report":
        raise AS2Error(f"not an MDN: the content is {ctype or 'untyped'}, not multipart/report")
    fields: dict[str, str] = {}
    for part_headers, part_body in map(mime.split_entity, mime.parts(body, params)):
        if mime.params(part_headers.get("content-type", ""))[0] == "message/disposition-notification":
            fields = mime.parse_headers(mime.decode(part_headers, part_body).strip())
    if "disposition" not in fields:
        raise AS2Error("the MDN has no message/disposition-notification part with a Disposition")
    original = mime.angle(fields.get("original-message-id", ""))
    if expected_message_id is not None and original != mime.angle(expected_message_id):
        raise AS2Error(f"the MDN is for message {original}, not for {mime.angle(expected_message_id)}")
    error, warning = read_disposition(fields["disposition"])
    mic = fields.get("received-content-mic")
    return Mdn(
        mime.angle(h["message-id"]) if h.get("message-id") else None, original, fields["disposition"], error is None,
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
        ctype, params = mime.params(headers.get("content-type", "application/octet-stream"))
        smime_type, data = params.get("smime-type", "").lower(), mime.decode(headers, body)
        if ctype in _PKCS7_MIME and smime_type in ("enveloped-data", "authenveloped-data", ""):
            if done or key is None or cert is None:
                raise AS2Error("an encrypted layer is only accepted as the outermost one" if done else
                               "the message is encrypted but no decryption key is configured")
            entity = mic_source = cms.decrypt(data, key, cert)
            done.add("encrypted")
        elif ctype == "multipart/signed":
            if "signed" in done or verify_cert is None:
                raise AS2Error("the message is signed twice" if "signed" in done else
                               "the message is signed but no partner certificate is configured to verify it")
            entity = mic_source = cms.verify(*_signed_parts(data, params), verify_cert)
            done.add("signed")
        elif ctype in _PKCS7_MIME and smime_type == "compressed-data" and "compressed" not in done:
            entity, mic_source = cms.decompress(data), data if mic_source is None else mic_source
            done.add("compressed")
        else:
            return headers, data, done, mic_source
        headers, body = mime.split_entity(entity)
    raise AS2Error("too many nested S/MIME layers")


def _as2_headers(
    as2_from: str, as2_to: str, message_id: str | None, subject: str, entity_headers: dict[str, str],
) -> dict[str, str]:
    entity_headers.pop("Content-Transfer-Encoding", None)  # HTTP is 8-bit clean: bodies are sent as they are
    return {
        "AS2-Version": "1.2", "AS2-From": mime.as2_name(as2_from), "AS2-To": mime.as2_name(as2_to),
        "Message-ID": mime.angle(message_id) if message_id else f"<{uuid.uuid4().hex}@chorus-gateway>",
        "Subject": subject, "Date": email.utils.formatdate(usegmt=True), "MIME-Version": "1.0", **entity_headers,
    }


def _mic(data: bytes, algorithm: str = "sha-256") -> str:
    return f"{base64.b64encode(hashlib.new(algorithm.replace('-', ''), data).digest()).decode()}, {algorithm}"


def _sign(entity: bytes, key: PrivateKey, cert: x509.Certificate, digest: str) -> tuple[dict[str, str], bytes]:
    """Binary, detached: the signed bytes are the entity exactly as sent, which is what the MIC covers."""
    micalg = SIGNING_DIGESTS[digest][1]
    signature = b"\r\n".join(base64.encodebytes(cms.signed_data(entity, key, cert, digest)).splitlines())
    boundary = mime.boundary(entity)
    body = mime.multipart(boundary, [entity, mime.entity({
        "Content-Type": 'application/pkcs7-signature; name="smime.p7s"', "Content-Transfer-Encoding": "base64",
        "Content-Disposition": 'attachment; filename="smime.p7s"'}, signature)])
    content_type = f'multipart/signed; protocol="application/pkcs7-signature"; micalg={micalg}; boundary="{boundary}"'
    return {"Content-Type": content_type, "Content-Transfer-Encoding": "binary"}, body


def _signed_parts(body: bytes, params: Mapping[str, str]) -> tuple[bytes, bytes]:
    parts = mime.parts(body, params)
    headers, signature = mime.split_entity(parts[-1])
    if len(parts) != 2 or mime.params(headers.get("content-type", ""))[0] not in _SIGNATURE_TYPES:
        raise AS2Error("multipart/signed needs two parts, the second a PKCS#7 signature",
                       disposition=AUTHENTICATION_FAILED)
    return parts[0], mime.decode(headers, signature)
