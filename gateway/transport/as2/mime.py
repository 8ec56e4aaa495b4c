"""MIME as AS2 writes and reads it (RFC 2045, 2046, 1767): entities, multiparts, header parameters.

Lenient where peers differ (openssl writes LF-only MIME, Java servers CRLF; quoted or bare parameters),
strict where a mistake would change what is signed (a part's line breaks, the closing boundary).
"""

from __future__ import annotations

import base64
import email.message
import email.utils
import quopri
import re
import secrets
from collections.abc import Mapping

from gateway.transport.as2.errors import AS2Error


def lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def entity(headers: Mapping[str, str], body: bytes) -> bytes:
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode("ascii") + b"\r\n" + body


def multipart(boundary: str, entities: list[bytes]) -> bytes:
    delimiter = f"--{boundary}\r\n".encode()
    return delimiter + (b"\r\n" + delimiter).join(entities) + f"\r\n--{boundary}--\r\n".encode()


def pkcs7_headers(smime_type: str, name: str) -> dict[str, str]:
    return {"Content-Type": f'application/pkcs7-mime; smime-type={smime_type}; name="{name}"',
            "Content-Transfer-Encoding": "binary", "Content-Disposition": f'attachment; filename="{name}"'}


def boundary(*contents: bytes) -> str:
    while True:
        boundary = f"----=_Part_{secrets.token_hex(16)}"
        if not any(boundary.encode() in content for content in contents):
            return boundary


def safe(value: str, what: str) -> str:
    if any(c in value for c in "\r\n\0") or not value.isascii():
        raise ValueError(f"{what} must be one line of ASCII: {value!r}")
    return value


def as2_name(value: str) -> str:
    """RFC 4130 6.2: 1 to 128 printable ASCII characters, quoted when they include spaces or specials."""
    if not 1 <= len(value) <= 128 or not all(" " <= c <= "~" for c in value):
        raise ValueError(f"an AS2 name is 1 to 128 printable ASCII characters: {value!r}")
    if re.fullmatch(r"[!#-\[\]-~]+", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote(value: str) -> str:
    value = value.strip()
    quoted = len(value) >= 2 and value[0] == value[-1] == '"'
    return re.sub(r"\\(.)", r"\1", value[1:-1]) if quoted else value


def angle(message_id: str) -> str:
    return f"<{message_id.strip().strip('<>').strip()}>"


def params(value: str) -> tuple[str, dict[str, str]]:
    """Header value and parameters, with quoting and RFC 2231 handled by the standard library."""
    message = email.message.Message()
    message["X"] = value
    found = message.get_params(header="X") or [("", "")]
    params = {name.lower(): email.utils.collapse_rfc2231_value(v) for name, v in found[1:]}
    return found[0][0].strip().lower(), params


def parse_headers(block: bytes) -> dict[str, str]:
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


def split_entity(entity: bytes) -> tuple[dict[str, str], bytes]:
    """openssl writes LF-only MIME, AS2 servers CRLF: both are read."""
    if entity.startswith((b"\r\n", b"\n")):
        return {}, entity[2 if entity.startswith(b"\r\n") else 1:]
    blank = re.search(rb"\r?\n\r?\n", entity)
    if blank is None:
        raise AS2Error("a MIME entity has no blank line after its headers (truncated or not MIME)")
    return parse_headers(entity[: blank.start()]), entity[blank.end():]


def decode(headers: Mapping[str, str], body: bytes) -> bytes:
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


def parts(body: bytes, params: Mapping[str, str]) -> list[bytes]:
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
