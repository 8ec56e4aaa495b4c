"""AS2 against independent peers: openssl cms for S/MIME, real HTTP(S) on 127.0.0.1 for the transport."""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import re
import shutil
import ssl
import subprocess
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.errors import TransportError
from gateway.transport.as2 import (
    AUTHENTICATION_FAILED,
    DECRYPTION_FAILED,
    INSUFFICIENT_SECURITY,
    INTEGRITY_CHECK_FAILED,
    MDN_OPTIONS,
    AS2Error,
    InboundMessage,
    MdnRequest,
    OutboundMessage,
    build_mdn,
    build_message,
    parse_mdn,
    parse_message,
)
from gateway.transport.as2.http import AS2Endpoint, post_message

OPENSSL = shutil.which("openssl")
# CRLF, bare LF, a bare CR at the very end, NULs, UTF-8, a 3000-byte line, and "--" that looks like a boundary.
PAYLOAD = (
    b'<?xml version="1.0" encoding="UTF-8"?>\r\n<Invoice>caf\xc3\xa9 \xe2\x82\xac</Invoice>\n'
    + bytes(range(256)) * 40 + b"\r\n------=_Part_\r\n" + b"A" * 3000 + b"\r"
)


@dataclass(frozen=True)
class Party:
    name: str
    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    key_path: Path
    cert_path: Path


def _party(directory: Path, name: str, *, ip: str | None = None) -> Party:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name), x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                                                                                               "Test")])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ip:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                                        critical=False)
    cert = builder.sign(key, hashes.SHA256())
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Party(name, key, cert, key_path, cert_path)


@dataclass(frozen=True)
class Pki:
    gateway: Party  # us: signs what we send, decrypts what we receive
    partner: Party  # the AS2 partner (the Chorus Pro side)
    stranger: Party  # a certificate nobody agreed on
    tls: Party  # the HTTPS server certificate, for 127.0.0.1


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    return Pki(*(_party(directory, name) for name in ("gateway", "partner", "stranger")),
               _party(directory, "tls", ip="127.0.0.1"))


@pytest.fixture
def openssl() -> Callable[..., bytes]:
    if OPENSSL is None:
        pytest.skip("openssl is not installed")

    def run(*args: object, stdin: bytes | None = None, fails: bool = False) -> bytes:
        done = subprocess.run([OPENSSL, *map(str, args)], input=stdin, capture_output=True, timeout=30, check=False)
        assert (done.returncode != 0) == fails, f"openssl {' '.join(map(str, args))}: {done.stderr.decode('latin-1')}"
        return done.stdout

    return run


@pytest.fixture
def serve() -> Iterator[Callable[..., AS2Endpoint]]:
    """Starts endpoints on free ports of 127.0.0.1, and stops every one of them whatever the test did."""
    started: list[AS2Endpoint] = []

    def start(handler: Callable[[dict[str, str], bytes], tuple[int, dict[str, str], bytes]],
              **options: object) -> AS2Endpoint:
        endpoint = AS2Endpoint("127.0.0.1", 0, handler, **options)  # type: ignore[arg-type]
        started.append(endpoint.start())
        return endpoint

    try:
        yield start
    finally:
        for endpoint in started:
            endpoint.stop()


def _send(pki: Pki, **options: object) -> OutboundMessage:
    """What the gateway sends the partner: signed by us, encrypted for them."""
    arguments: dict[str, object] = {
        "filename": "FACTURE 2026-001.xml", "content_type": "application/xml", "as2_from": "CHORUS GATEWAY",
        "as2_to": "AIFE-CPP", "sign_key": pki.gateway.key, "sign_cert": pki.gateway.cert,
        "encrypt_cert": pki.partner.cert, **options,
    }
    return build_message(PAYLOAD, **arguments)  # type: ignore[arg-type]


def _receive(pki: Pki, message: OutboundMessage, **options: object) -> InboundMessage:
    """The partner's side of ``_send``."""
    arguments: dict[str, object] = {"decrypt_key": pki.partner.key, "decrypt_cert": pki.partner.cert,
                                    "verify_cert": pki.gateway.cert, **options}
    return parse_message(message.headers, message.body, **arguments)  # type: ignore[arg-type]


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode() + ", sha-256"


def _b64_mic(data: bytes, digest: str) -> str:
    """A MIC as RFC 5751 names its algorithm (sha-1, sha-256...), computed without the code under test."""
    return f"{base64.b64encode(hashlib.new(digest, data).digest()).decode()}, sha-{digest[3:]}"


def _first_part(entity: bytes) -> bytes:
    """The signed part of a CRLF multipart/signed entity, cut out without the code under test."""
    boundary = re.search(rb'boundary="([^"]+)"', entity.split(b"\r\n\r\n", 1)[0]).group(1)  # type: ignore[union-attr]
    body = entity.split(b"\r\n\r\n", 1)[1]
    assert body.startswith(b"--" + boundary + b"\r\n")
    return body[len(boundary) + 4:].split(b"\r\n--" + boundary + b"\r\n", 1)[0]


def _smime(headers: dict[str, str], body: bytes) -> bytes:
    """An HTTP message as the S/MIME file openssl reads: the HTTP headers become the MIME headers."""
    return f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + body


# --- S/MIME against openssl ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("compress", "encryption", "digest", "openssl_cipher"), [
    (False, "aes256-cbc", "sha256", "aes-256-cbc"), (True, "aes128-cbc", "sha1", "aes-128-cbc"),
    (False, "aes128-gcm", "sha384", "aes-128-gcm"), (True, "aes256-gcm", "sha512", "aes-256-gcm"),
    (False, "3des", "sha256", "des-ede3-cbc"),
])
def test_openssl_decrypts_and_verifies_what_we_build(pki: Pki, openssl, tmp_path: Path, compress: bool,
                                                     encryption: str, digest: str, openssl_cipher: str) -> None:
    message = _send(pki, compress=compress, encryption=encryption, digest=digest)
    micalg = f"sha-{digest[3:]}"
    assert message.headers["AS2-Version"] == "1.2"
    assert message.headers["AS2-From"] == '"CHORUS GATEWAY"' and message.headers["AS2-To"] == "AIFE-CPP"
    smime_type = "authEnveloped-data" if encryption.endswith("gcm") else "enveloped-data"  # RFC 8551 3.2.2
    assert message.headers["Content-Type"].startswith(f"application/pkcs7-mime; smime-type={smime_type};")
    assert message.headers["Disposition-Notification-Options"] == MDN_OPTIONS.replace("sha-256", micalg)
    assert re.fullmatch(r"<[^<>@]+@[^<>@]+>", message.message_id)
    assert message.headers["Message-ID"] == message.message_id
    (tmp_path / "message.p7m").write_bytes(message.body)

    structure = openssl("cms", "-cmsout", "-print", "-inform", "DER", "-in", tmp_path / "message.p7m").decode()
    assert f"algorithm: {openssl_cipher} " in structure and "algorithm: rsaEncryption " in structure
    assert ("id-smime-ct-authEnvelopedData" in structure) == encryption.endswith("gcm")
    openssl("cms", "-decrypt", "-binary", "-inform", "DER", "-in", tmp_path / "message.p7m",
            "-recip", pki.partner.cert_path, "-inkey", pki.partner.key_path, "-out", tmp_path / "signed.eml")
    signed = (tmp_path / "signed.eml").read_bytes()
    assert signed.startswith(b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg='
                             + micalg.encode() + b";")
    signature = openssl("cms", "-cmsout", "-print", "-in", tmp_path / "signed.eml").decode()
    assert signature.count(f"algorithm: {digest} ") == 2  # SignedData and SignerInfo digest algorithms
    # -binary -crlfeol: openssl gives back the signed part byte for byte (CRLF line ends are ours, LF and CR data)
    verify = ("cms", "-verify", "-binary", "-crlfeol", "-in", tmp_path / "signed.eml", "-out", tmp_path / "content.eml")
    openssl(*verify, "-CAfile", pki.stranger.cert_path, fails=True)  # the check below means something
    openssl(*verify, "-CAfile", pki.gateway.cert_path)
    content = (tmp_path / "content.eml").read_bytes()
    assert content == _first_part(signed)
    assert message.mic == _b64_mic(content, digest)

    if compress:
        headers, der = content.split(b"\r\n\r\n", 1)
        assert b"smime-type=compressed-data" in headers
        dump = openssl("asn1parse", "-inform", "DER", stdin=der).decode()
        assert ":id-smime-ct-compressedData" in dump and ":zlib compression" in dump
        content = zlib.decompress(bytes.fromhex(re.search(r"OCTET STRING\s+\[HEX DUMP\]:([0-9A-F]+)", dump).group(1)))
    entity_headers, payload = content.split(b"\r\n\r\n", 1)
    assert payload == PAYLOAD
    assert b'Content-Disposition: attachment; filename="FACTURE 2026-001.xml"' in entity_headers
    assert b"Content-Type: application/xml" in entity_headers


@pytest.mark.parametrize(("layout", "cipher", "oaep", "digest"), [
    ("crlf-mime-der", "-aes256", None, "sha256"),
    ("openssl-smime-ber", "-aes128", None, "sha1"),
    ("crlf-mime-der", "-des3", None, "sha512"),
    ("crlf-mime-der", "-aes128", "sha1", "sha256"),  # libas2: RSA-OAEP with AES-CBC
    ("crlf-mime-der", "-aes-256-gcm", "sha256", "sha384"),
    ("openssl-smime-ber", "-aes-128-gcm", None, "sha256"),
])
def test_parse_message_accepts_what_openssl_signs_and_encrypts(pki: Pki, openssl, tmp_path: Path, layout: str,
                                                               cipher: str, oaep: str | None, digest: str) -> None:
    entity = b'Content-Type: application/xml\r\nContent-Disposition: attachment; filename="inv-42.xml"\r\n\r\n'
    entity += PAYLOAD
    (tmp_path / "entity").write_bytes(entity)
    sign = ("cms", "-sign", "-binary", "-md", digest, "-in", tmp_path / "entity",
            "-signer", pki.partner.cert_path, "-inkey", pki.partner.key_path,
            *(["-keyid"] if cipher == "-des3" else []))  # signer named by subject key identifier, not issuer+serial
    if layout == "crlf-mime-der":  # the way a Java AS2 server lays out its MIME
        signature = base64.encodebytes(openssl(*sign, "-outform", "DER")).replace(b"\n", b"\r\n")
        signed = (b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; '
                  b'boundary="b1"\r\n\r\n--b1\r\n' + entity + b"\r\n--b1\r\nContent-Type: application/pkcs7-signature"
                  b"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + signature + b"--b1--\r\n")
    else:  # openssl's own S/MIME output: LF line ends, quoted micalg, a preamble
        signed = openssl(*sign)
        assert signed.startswith(b"MIME-Version: 1.0\nContent-Type: multipart/signed;")
        assert b"\n\nThis is an S/MIME signed message\n\n" in signed
    (tmp_path / "signed").write_bytes(signed)
    encrypt = ["cms", "-encrypt", "-binary", cipher, "-outform", "DER", "-in", tmp_path / "signed",
               "-recip", pki.gateway.cert_path]
    if oaep:
        encrypt += ["-keyopt", "rsa_padding_mode:oaep", "-keyopt", f"rsa_oaep_md:{oaep}"]
    body = openssl(*encrypt, *(["-stream"] if "-ber" in layout else []))
    assert body.startswith(b"\x30\x80") == ("-ber" in layout)  # indefinite length, as streamed by Bouncy Castle
    structure = openssl("cms", "-cmsout", "-print", "-inform", "DER", stdin=body).decode()
    assert ("algorithm: rsaesOaep " in structure) == bool(oaep)
    assert ("id-smime-ct-authEnvelopedData" in structure) == cipher.endswith("gcm")
    smime_type = "authEnveloped-data" if cipher.endswith("gcm") else "enveloped-data"
    headers = {"as2-from": "AIFE-CPP", "as2-to": '"CHORUS GATEWAY"', "message-id": "<42@partner>",
               "content-type": f'application/pkcs7-mime; smime-type="{smime_type}"; name="smime.p7m"',
               "disposition-notification-to": "x@partner",
               "disposition-notification-options": MDN_OPTIONS.replace("sha-256", "sha-512, sha-256")}

    inbound = parse_message(headers, body, decrypt_key=pki.gateway.key, decrypt_cert=pki.gateway.cert,
                            verify_cert=pki.partner.cert)
    assert inbound.payload == PAYLOAD
    assert (inbound.filename, inbound.content_type) == ("inv-42.xml", "application/xml")
    assert (inbound.as2_from, inbound.as2_to, inbound.message_id) == ("AIFE-CPP", "CHORUS GATEWAY", "<42@partner>")
    assert inbound.signed and inbound.encrypted and not inbound.compressed
    assert inbound.mic == base64.b64encode(hashlib.sha512(entity).digest()).decode() + ", sha-512"  # as asked
    assert inbound.mdn_request.signed and inbound.mdn_request.signed_required


@pytest.mark.parametrize(("sign", "encrypt", "compress"), [(True, True, True), (True, False, True), (False, True, True),
                                                           (False, False, True), (False, False, False)])
def test_every_combination_of_layers_round_trips(pki: Pki, sign: bool, encrypt: bool, compress: bool) -> None:
    options: dict[str, object] = {"compress": compress}
    if not sign:
        options.update(sign_key=None, sign_cert=None)
    if not encrypt:
        options["encrypt_cert"] = None
    message = _send(pki, **options)
    inbound = _receive(pki, message, require_signature=sign, require_encryption=encrypt)
    assert inbound.payload == PAYLOAD and inbound.filename == "FACTURE 2026-001.xml"
    assert (inbound.signed, inbound.encrypted, inbound.compressed) == (sign, encrypt, compress)
    assert inbound.mic == message.mic
    if not (sign or encrypt or compress):
        assert message.body == PAYLOAD and message.mic == _b64_sha256(PAYLOAD)  # RFC 4130 7.3.1: content only


@pytest.mark.parametrize(("where", "disposition"), [("middle", INTEGRITY_CHECK_FAILED), ("padding", DECRYPTION_FAILED),
                                                     ("gcm", DECRYPTION_FAILED)])
def test_a_flipped_byte_in_the_encrypted_body_is_refused(pki: Pki, where: str, disposition: str) -> None:
    message = _send(pki, encryption="aes128-gcm" if where == "gcm" else "aes256-cbc")
    body = bytearray(message.body)
    # The CBC ciphertext ends the DER. A flip garbles its block and flips the same byte of the next one: in the
    # middle it corrupts the signed content; at the penultimate block's last byte it breaks the padding. In GCM
    # the authentication tag refuses any change before anything is read.
    body[len(body) // 2 if where != "padding" else -17] ^= 0x01
    with pytest.raises(AS2Error) as caught:
        _receive(pki, OutboundMessage(message.headers, bytes(body), message.mic, message.message_id))
    assert caught.value.disposition == disposition and not caught.value.retryable
    assert ("authentication tag does not match" in caught.value.message) == (where == "gcm")


def test_a_payload_altered_under_a_valid_looking_signature_is_refused(pki: Pki) -> None:
    message = _send(pki, encrypt_cert=None)
    assert message.body.count(b"caf\xc3\xa9") == 1
    altered = message.body.replace(b"caf\xc3\xa9", b"cafe\xcc")  # same length, same signature part
    with pytest.raises(AS2Error, match="altered after signing") as caught:
        _receive(pki, OutboundMessage(message.headers, altered, None, message.message_id), require_encryption=False)
    assert caught.value.disposition == INTEGRITY_CHECK_FAILED


def test_a_corrupted_signature_value_does_not_verify(pki: Pki) -> None:
    message = _send(pki, encrypt_cert=None)
    head, signature_b64, tail = re.match(rb"(.*smime\.p7s\"\r\n\r\n)([A-Za-z0-9+/=\r\n]+?)(\r\n--.*)", message.body,
                                         re.S).groups()  # type: ignore[union-attr]
    signature = bytearray(base64.b64decode(signature_b64))
    signature[-1] ^= 0x01  # the SignerInfo's signature value ends the DER
    body = head + base64.encodebytes(bytes(signature)).replace(b"\n", b"\r\n").rstrip() + tail
    with pytest.raises(AS2Error, match="does not verify with the partner certificate") as caught:
        _receive(pki, OutboundMessage(message.headers, body, None, message.message_id), require_encryption=False)
    assert caught.value.disposition == AUTHENTICATION_FAILED


def test_a_signature_by_another_certificate_is_refused_and_named(pki: Pki) -> None:
    message = _send(pki, sign_key=pki.stranger.key, sign_cert=pki.stranger.cert)
    with pytest.raises(AS2Error) as caught:
        _receive(pki, message)
    assert caught.value.disposition == AUTHENTICATION_FAILED
    assert f"serial {pki.stranger.cert.serial_number:#x} issued by O=Test,CN=stranger" in caught.value.message
    assert f"serial {pki.gateway.cert.serial_number:#x}" in caught.value.message


def test_a_message_encrypted_for_another_certificate_is_refused_and_named(pki: Pki) -> None:
    message = _send(pki, encrypt_cert=pki.stranger.cert)
    with pytest.raises(AS2Error) as caught:
        _receive(pki, message)
    assert caught.value.disposition == DECRYPTION_FAILED
    assert f"encrypted for the certificate serial {pki.stranger.cert.serial_number:#x}" in caught.value.message
    assert "our current certificate" in caught.value.message


@pytest.mark.parametrize("missing", ["signature", "encryption"])
def test_a_missing_layer_the_agreement_requires_is_refused(pki: Pki, missing: str) -> None:
    dropped = {"sign_key": None, "sign_cert": None} if missing == "signature" else {"encrypt_cert": None}
    message = _send(pki, **dropped)
    with pytest.raises(AS2Error, match="not (signed|encrypted), and the agreement with CHORUS GATEWAY") as caught:
        _receive(pki, message)
    assert caught.value.disposition == INSUFFICIENT_SECURITY


def test_headers_that_are_not_as2_are_refused() -> None:
    with pytest.raises(AS2Error, match="as2-from, as2-to missing"):
        parse_message({"Message-ID": "<1@x>"}, b"x", decrypt_key=None, decrypt_cert=None, verify_cert=None)


# --- MDNs ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("digest", ["sha256", "sha1", "sha384", "sha512"])
def test_a_signed_mdn_verifies_here_and_with_openssl(pki: Pki, openssl, tmp_path: Path, digest: str) -> None:
    """The MDN is signed with the digest the sender asked its MIC in, which is the sender's signing digest."""
    message = _send(pki, digest=digest)
    mdn = build_mdn(_receive(pki, message), sign_key=pki.partner.key, sign_cert=pki.partner.cert)
    assert (mdn.headers["AS2-From"], mdn.headers["AS2-To"]) == ("AIFE-CPP", '"CHORUS GATEWAY"')
    assert mdn.headers["Content-Type"].startswith(f"multipart/signed; protocol=\"application/pkcs7-signature\"; "
                                                  f"micalg=sha-{digest[3:]};")

    (tmp_path / "mdn.eml").write_bytes(_smime(mdn.headers, mdn.body))
    report = openssl("cms", "-verify", "-binary", "-crlfeol", "-in", tmp_path / "mdn.eml",
                     "-CAfile", pki.partner.cert_path)
    assert openssl("cms", "-cmsout", "-print", "-in", tmp_path / "mdn.eml").decode().count(f"algorithm: {digest} ") == 2
    assert b"multipart/report; report-type=disposition-notification" in report
    assert b"Disposition: automatic-action/MDN-sent-automatically; processed\r\n" in report
    assert f"Received-Content-MIC: {message.mic}\r\n".encode() in report
    assert f"Original-Message-ID: {message.message_id}\r\n".encode() in report
    assert b'Original-Recipient: rfc822; AIFE-CPP\r\nFinal-Recipient: rfc822; AIFE-CPP\r\n' in report

    receipt = parse_mdn(mdn.headers, mdn.body, verify_cert=pki.partner.cert, expected_message_id=message.message_id,
                        expected_mic=message.mic)
    assert receipt.processed and receipt.signed and receipt.mic_matches and receipt.error is None
    assert receipt.original_message_id == message.message_id and receipt.message_id == mdn.message_id


def test_an_mdn_is_refused_when_its_signature_or_message_id_is_wrong(pki: Pki) -> None:
    message = _send(pki)
    inbound = _receive(pki, message)
    forged = build_mdn(inbound, sign_key=pki.stranger.key, sign_cert=pki.stranger.cert)
    with pytest.raises(AS2Error, match="signed with the certificate"):
        parse_mdn(forged.headers, forged.body, verify_cert=pki.partner.cert, expected_message_id=message.message_id,
                  expected_mic=message.mic)
    genuine = build_mdn(inbound, sign_key=pki.partner.key, sign_cert=pki.partner.cert)
    with pytest.raises(AS2Error, match="is for message .*, not for <other@x>"):
        parse_mdn(genuine.headers, genuine.body, verify_cert=pki.partner.cert, expected_message_id="other@x",
                  expected_mic=message.mic)
    tampered = genuine.body.replace(b"; processed\r\n", b"; processeD\r\n")
    with pytest.raises(AS2Error) as caught:
        parse_mdn(genuine.headers, tampered, verify_cert=pki.partner.cert, expected_message_id=message.message_id,
                  expected_mic=message.mic)
    assert caught.value.disposition == INTEGRITY_CHECK_FAILED
    with pytest.raises(AS2Error, match="requires a signed MDN and no signing key is configured"):
        build_mdn(inbound)


def test_an_unsigned_mdn_is_refused_unless_allowed_and_a_mic_mismatch_is_reported(pki: Pki) -> None:
    message = _send(pki, signed_mdn=False)
    assert "Disposition-Notification-Options" not in message.headers
    inbound = _receive(pki, message)
    assert not inbound.mdn_request.signed
    mdn = build_mdn(inbound, sign_key=pki.partner.key, sign_cert=pki.partner.cert)  # not asked: not signed
    assert mdn.headers["Content-Type"].startswith("multipart/report")
    with pytest.raises(AS2Error, match="not signed") as caught:
        parse_mdn(mdn.headers, mdn.body, verify_cert=pki.partner.cert, expected_message_id=message.message_id,
                  expected_mic=message.mic)
    assert caught.value.disposition == INSUFFICIENT_SECURITY
    other_mic = _b64_sha256(b"something else")
    receipt = parse_mdn(mdn.headers, mdn.body, verify_cert=None, expected_message_id=message.message_id,
                        expected_mic=other_mic, require_signature=False)
    assert receipt.processed and not receipt.signed and receipt.mic == message.mic and not receipt.mic_matches


def _report(disposition: str) -> tuple[dict[str, str], bytes]:
    """An unsigned MDN as a partner writes it, with the right MIC and the given Disposition line."""
    fields = (f"Reporting-UA: peer\r\nOriginal-Message-ID: <1@x>\r\nDisposition: {disposition}\r\n"
              f"Received-Content-MIC: {_b64_sha256(b'x')}\r\n")
    body = (b'--b\r\nContent-Type: text/plain\r\n\r\nreceipt\r\n--b\r\nContent-Type: message/disposition-notification'
            b'\r\n\r\n' + fields.encode() + b"\r\n--b--\r\n")
    return {"Content-Type": 'multipart/report; report-type=disposition-notification; boundary="b"'}, body


MODE = "automatic-action/MDN-sent-automatically"


@pytest.mark.parametrize(("disposition", "error", "warning"), [
    (f"{MODE}; processed", None, None),
    ("Automatic-Action / mdn-sent-manually ;  PROCESSED ", None, None),
    (f"{MODE}; processed/warning: duplicate-document", None, "duplicate-document"),
    (f"{MODE}; processed/Warning=duplicate, resent", None, "duplicate, resent"),
    (f"{MODE}; processed / WARNING", None, "warning"),
    (f"{MODE}; processed/error=decryption-failed", "decryption-failed", None),  # libas2
    (f"{MODE}; processed/error: decryption-failed", "decryption-failed", None),  # RFC 4130
    (f"{MODE}; processed/Error:authentication-failed", "authentication-failed", None),
    (f"{MODE}; processed/ error : integrity-check-failed ", "integrity-check-failed", None),
    (f"{MODE}; processed/error", "error", None),
    (f"{MODE}; processed/failure: unsupported format", "unsupported format", None),
    (f"{MODE}; processed/failed", "failed", None),
    (f"{MODE}; processed/foo", "foo", None),
    (f"{MODE}; processed/warnings: x", "x", None),  # not the warning modifier
    (f"{MODE}; processed/", "an empty disposition modifier", None),
    (f"{MODE}; failed/Failure: unsupported-mic-algorithm", "unsupported-mic-algorithm", None),
    (f"{MODE}; failed", "failed", None),
    (f"{MODE}; denied", "denied", None),
    (f"{MODE}; processing", "processing", None),
    (f"{MODE};", "no disposition type", None),
    ("processed", "no action and sending modes", None),
    ("automatic-action; processed", "no action and sending modes", None),
    ("automatic/sent; processed", "no action and sending modes", None),
])
def test_the_disposition_is_read_fail_closed_however_it_is_spelled(disposition: str, error: str | None,
                                                                   warning: str | None) -> None:
    headers, body = _report(disposition)
    receipt = parse_mdn(headers, body, verify_cert=None, expected_message_id="<1@x>",
                        expected_mic=_b64_sha256(b"x"), require_signature=False)
    assert receipt.mic_matches and receipt.disposition == disposition.strip()
    assert (receipt.processed, receipt.error, receipt.warning) == (error is None, error, warning)


def test_an_error_mdn_carries_the_disposition_modifier(pki: Pki) -> None:
    message = _send(pki, encrypt_cert=pki.stranger.cert)
    request = MdnRequest.from_headers(message.headers)
    with pytest.raises(AS2Error) as caught:
        _receive(pki, message)
    mdn = build_mdn(request, error=caught.value, sign_key=pki.partner.key, sign_cert=pki.partner.cert)
    receipt = parse_mdn(mdn.headers, mdn.body, verify_cert=pki.partner.cert, expected_message_id=message.message_id,
                        expected_mic=message.mic)
    assert receipt.disposition == "automatic-action/MDN-sent-automatically; processed/error: decryption-failed"
    assert not receipt.processed and receipt.error == DECRYPTION_FAILED
    assert receipt.mic is None and not receipt.mic_matches


# --- HTTP(S) on 127.0.0.1 -----------------------------------------------------------------------------------------


class Partner:
    """The partner's AS2 server: keeps the raw request first (evidence), then answers with an MDN."""

    def __init__(self, pki: Pki) -> None:
        self.pki = pki
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.async_mdns: list[tuple[str, OutboundMessage]] = []

    def __call__(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        self.received.append((headers, body))
        try:
            request = MdnRequest.from_headers(headers)
        except AS2Error as exc:
            return 400, {"Content-Type": "text/plain"}, exc.message.encode()
        try:
            inbound = parse_message(headers, body, decrypt_key=self.pki.partner.key, decrypt_cert=self.pki.partner.cert,
                                    verify_cert=self.pki.gateway.cert)
            mdn = build_mdn(inbound, sign_key=self.pki.partner.key, sign_cert=self.pki.partner.cert)
        except AS2Error as exc:
            mdn = build_mdn(request, error=exc, sign_key=self.pki.partner.key, sign_cert=self.pki.partner.cert)
        if request.async_url:
            self.async_mdns.append((request.async_url, mdn))
            return 200, {}, b""
        return 200, mdn.headers, mdn.body


def test_sync_mdn_over_http(pki: Pki, serve) -> None:
    partner = Partner(pki)
    endpoint = serve(partner)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", endpoint.url) and not endpoint.url.endswith(":0/")
    message = _send(pki, compress=True)

    status, headers, body = post_message(endpoint.url + "as2?partner=x", message, timeout=10)

    assert status == 200
    [(raw_headers, raw_body)] = partner.received
    assert raw_body == message.body and raw_headers["AS2-From"] == '"CHORUS GATEWAY"'
    receipt = parse_mdn(headers, body, verify_cert=pki.partner.cert, expected_message_id=message.message_id,
                        expected_mic=message.mic)
    assert receipt.processed and receipt.signed and receipt.mic_matches


def test_async_mdn_posted_back_to_our_endpoint(pki: Pki, serve) -> None:
    partner = Partner(pki)
    partner_endpoint = serve(partner)
    ours: list[tuple[dict[str, str], bytes]] = []
    our_endpoint = serve(lambda headers, body: (ours.append((headers, body)), (200, {}, b""))[1])
    message = _send(pki, mdn_mode="async", mdn_url=our_endpoint.url)
    assert message.headers["Receipt-Delivery-Option"] == our_endpoint.url

    status, _, body = post_message(partner_endpoint.url, message, timeout=10)
    assert (status, body) == (200, b"")
    [(url, mdn)] = partner.async_mdns
    assert url == our_endpoint.url
    assert post_message(url, mdn, timeout=10)[0] == 200

    [(headers, raw)] = ours
    assert raw == mdn.body
    receipt = parse_mdn(headers, raw, verify_cert=pki.partner.cert, expected_message_id=message.message_id,
                        expected_mic=message.mic)
    assert receipt.processed and receipt.signed and receipt.mic_matches


def test_a_tampered_request_gets_an_error_mdn_and_leaves_evidence(pki: Pki, serve) -> None:
    partner = Partner(pki)
    endpoint = serve(partner)
    message = _send(pki)
    body = bytearray(message.body)
    body[-17] ^= 0x01
    tampered = OutboundMessage(message.headers, bytes(body), message.mic, message.message_id)

    status, headers, reply = post_message(endpoint.url, tampered, timeout=10)

    assert status == 200
    assert partner.received[0][1] == bytes(body)  # what was refused is what was received, byte for byte
    receipt = parse_mdn(headers, reply, verify_cert=pki.partner.cert, expected_message_id=message.message_id,
                        expected_mic=message.mic)
    assert not receipt.processed and receipt.error == DECRYPTION_FAILED and not receipt.mic_matches


def test_https_with_a_self_signed_server_certificate(pki: Pki, serve) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.tls.cert_path, pki.tls.key_path)
    endpoint = serve(Partner(pki), ssl_context=context)
    assert endpoint.url.startswith("https://127.0.0.1:")
    message = _send(pki)

    status, headers, body = post_message(endpoint.url, message, timeout=10, cafile=str(pki.tls.cert_path))
    assert status == 200
    assert parse_mdn(headers, body, verify_cert=pki.partner.cert, expected_message_id=message.message_id,
                     expected_mic=message.mic).mic_matches

    with pytest.raises(TransportError, match="not trusted") as caught:
        post_message(endpoint.url, message, timeout=10)  # the system CAs do not know this certificate
    assert not caught.value.retryable


def test_the_endpoint_reads_chunked_bodies_answers_500_on_handler_failure_and_stops(pki: Pki, serve) -> None:
    bodies: list[bytes] = []

    def handler(headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        bodies.append(body)
        if body == b"boom":
            raise RuntimeError("handler bug")
        return 202, {"X-Seen": str(len(body))}, b"ok"

    endpoint = serve(handler)
    port = int(endpoint.url.rsplit(":", 1)[1].rstrip("/"))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/", body=iter([b"abc", b"", b"defgh"]), encode_chunked=True,
                           headers={"Transfer-Encoding": "chunked"})
        response = connection.getresponse()
        assert (response.status, response.getheader("X-Seen"), response.read()) == (202, "8", b"ok")
    finally:
        connection.close()
    assert bodies == [b"abcdefgh"]
    status, _, reply = post_message(endpoint.url, OutboundMessage({}, b"boom", None, "<x@y>"), timeout=10)
    assert (status, reply) == (500, b"internal error\n")

    endpoint.stop()
    with pytest.raises(TransportError) as caught:
        post_message(f"http://127.0.0.1:{port}/", OutboundMessage({}, b"late", None, "<x@y>"), timeout=2)
    assert caught.value.retryable and bodies == [b"abcdefgh", b"boom"]
