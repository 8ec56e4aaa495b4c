"""CMS (RFC 5652) as AS2 uses it: detached SignedData, EnvelopedData, AuthEnvelopedData (RFC 5083/5084,
AES-GCM), RSAES-OAEP key transport (RFC 8017) and zlib CompressedData (RFC 3274).

``cryptography``'s PKCS#7 builders do only SHA-2 signatures and AES-CBC with RSA PKCS#1 v1.5, and its
reader refuses BER: the structures are therefore written and read here with its primitives and a small
DER/BER reader and writer, which also reads the BER that Bouncy Castle based AS2 servers stream.
"""

from __future__ import annotations

import hmac
import secrets
import zlib
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

from gateway.transport.as2.errors import (
    AUTHENTICATION_FAILED,
    DECOMPRESSION_FAILED,
    DECRYPTION_FAILED,
    INTEGRITY_CHECK_FAILED,
    AS2Error,
)

#: Signing digests we send with (``[partners.X] as2_signing_digest``), and their RFC 5751 micalg names.
SIGNING_DIGESTS: dict[str, tuple[type[hashes.HashAlgorithm], str]] = {
    "sha256": (hashes.SHA256, "sha-256"), "sha1": (hashes.SHA1, "sha-1"), "sha384": (hashes.SHA384, "sha-384"),
    "sha512": (hashes.SHA512, "sha-512"),
}
#: Content encryption we send with (``[partners.X] as2_encryption``): GCM goes as AuthEnvelopedData (RFC 5084).
ENCRYPTIONS = {"aes256-cbc": "2.16.840.1.101.3.4.1.42", "aes128-cbc": "2.16.840.1.101.3.4.1.2",
               "aes128-gcm": "2.16.840.1.101.3.4.1.6", "aes256-gcm": "2.16.840.1.101.3.4.1.46",
               "3des": "1.2.840.113549.3.7"}


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


def signed_data(content: bytes, key: PrivateKey, cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> bytes:
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


def verify(content: bytes, signature: bytes, cert: x509.Certificate) -> bytes:
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


def encrypt(entity: bytes, cert: x509.Certificate, cipher_oid: str) -> bytes:
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


def decrypt(data: bytes, key: rsa.RSAPrivateKey, cert: x509.Certificate) -> bytes:
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


def compress(entity: bytes) -> bytes:
    """RFC 3274 CompressedData with zlib; cryptography has no builder for it."""
    encapsulated = _der(0x30, _DER_DATA + _der(0xA0, _der(0x04, zlib.compress(entity))))
    compressed = _der(0x30, b"\x02\x01\x00" + _der(0x30, _DER_ZLIB) + encapsulated)
    return _der(0x30, _DER_COMPRESSED + _der(0xA0, compressed))


def decompress(data: bytes) -> bytes:
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
