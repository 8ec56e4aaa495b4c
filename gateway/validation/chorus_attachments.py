"""Chorus Pro's limits on the documents embedded in an invoice (BG-24), checked in the
invoice itself: an invoice that did not come through the gateway's intake (``gateway
validate`` on a partner's file) carries attachments nobody has checked yet.

The limits and the accepted extensions are the intake's (``gateway.invoice``), so that
both sides refuse the same files. Pure: elements in, findings out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from lxml import etree

from gateway.invoice import (
    ATTACHMENT_TYPES,
    MAX_ATTACHMENT_BYTES,
    MAX_ATTACHMENT_NAME,
    MAX_ATTACHMENTS_TOTAL_BYTES,
)
from gateway.validation.findings import Finding, Severity

NAME = "CHORUS-ATTACHMENT-NAME"
EXTENSION = "CHORUS-ATTACHMENT-EXTENSION"
CONTENT = "CHORUS-ATTACHMENT-CONTENT"
SIZE = "CHORUS-ATTACHMENT-SIZE"
TOTAL = "CHORUS-ATTACHMENTS-TOTAL"

_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def decoded_size(text: str) -> int | None:
    """The number of bytes ``text`` decodes to, or None when it is not base64.

    Counted, not decoded: an embedded file may weigh tens of megabytes.

    >>> decoded_size("JVBERi0xLjQ="), decoded_size(" JVBE\\nRi0x "), decoded_size("not base64!")
    (8, 6, None)
    """
    compact = "".join(text.split())
    if len(compact) % 4 or not _BASE64.fullmatch(compact):
        return None
    return len(compact) // 4 * 3 - (len(compact) - len(compact.rstrip("=")))


def _name_problem(name: str) -> tuple[str, str] | None:
    """(rule id, what is wrong) with an attachment's file name, phrased as intake does."""
    if not name:
        return NAME, "has no file name (@filename); Chorus Pro needs one, with its extension"
    if "/" in name or "\\" in name or name in (".", ".."):
        return NAME, "must have a plain file name, without a directory"
    if len(name) > MAX_ATTACHMENT_NAME:
        return NAME, (f"has a name {len(name)} characters long; Chorus Pro takes at most "
                      f"{MAX_ATTACHMENT_NAME}, extension included")
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if extension not in ATTACHMENT_TYPES:
        found = f"extension {extension!r}" if extension else "no extension"
        return EXTENSION, f"has {found}; accepted: {', '.join(sorted(ATTACHMENT_TYPES))}"
    return None


def _size_problem(size: int | None) -> tuple[str, str] | None:
    if size is None:
        return CONTENT, "is not valid base64: its content cannot be read"
    if size == 0:
        return CONTENT, "is empty; Chorus Pro refuses an empty file"
    if size >= MAX_ATTACHMENT_BYTES:
        return SIZE, f"weighs {size} bytes; Chorus Pro takes less than {MAX_ATTACHMENT_BYTES} bytes per file"
    return None


def check_attachments(
    objects: Iterable[tuple[str, etree._Element]], container: str, *, layer: str = "chorus"
) -> list[Finding]:
    """Findings on the embedded binary objects given as (location, element) pairs.

    ``container`` is where a finding on all of them together (their total size) points.
    """
    findings = []
    total = 0
    for location, element in objects:
        name = (element.get("filename") or "").strip()
        label = f"the attachment {name!r}" if name else "an attachment"
        size = decoded_size(element.text or "")
        for problem in (_name_problem(name), _size_problem(size)):
            if problem is not None:
                rule_id, text = problem
                findings.append(Finding(layer, rule_id, Severity.ERROR, location, f"{label} {text}"))
        total += size or 0
    if total > MAX_ATTACHMENTS_TOTAL_BYTES:
        findings.append(Finding(layer, TOTAL, Severity.ERROR, container,
                                f"the attachments weigh {total} bytes together, over Chorus Pro's limit of "
                                f"{MAX_ATTACHMENTS_TOTAL_BYTES} bytes per invoice"))
    return findings
