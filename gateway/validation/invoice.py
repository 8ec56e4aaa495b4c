"""All layers over one invoice document, in order, each reported separately."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from gateway.validation import chorus
from gateway.validation.findings import Finding, Severity
from gateway.validation.schematron import check_en16931
from gateway.validation.xsd import check_xsd

# Safe parsing: no DTD, no entity expansion, no network; huge_tree stays off so that
# libxml2's own depth and size limits apply.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False)


def parse_invoice(payload: bytes) -> etree._ElementTree | Finding:
    """Parse safely; a document that is not well-formed becomes a fatal finding."""
    try:
        root = etree.fromstring(payload, _PARSER)
    except etree.XMLSyntaxError as exc:
        return Finding("parse", "XML", Severity.FATAL, f"line {exc.lineno}", exc.msg)
    if root.getroottree().docinfo.doctype:
        return Finding("parse", "XML-DTD", Severity.FATAL, "/", "a DOCTYPE is not allowed")
    return root.getroottree()


def validate_invoice(payload: bytes, *, en16931: bool = False, cii_rules: Path | None = None) -> list[Finding]:
    """Run the layers over a UBL or CII invoice: parsing, then ``validate_parsed``."""
    parsed = parse_invoice(payload)
    if isinstance(parsed, Finding):
        return [parsed]
    return validate_parsed(parsed, payload, en16931=en16931, cii_rules=cii_rules)


def validate_parsed(
    parsed: etree._ElementTree, payload: bytes, *, en16931: bool = False, cii_rules: Path | None = None
) -> list[Finding]:
    """XSD, then (with ``en16931``) the EN 16931 Schematron, then the Chorus Pro rules.

    A later layer runs only when the earlier ones found nothing fatal: Chorus rules
    over a document that is not schema-valid would only add noise. The Schematron
    raises ``ValidatorError`` when it cannot run (``schematron.check_en16931``).
    """
    findings = check_xsd(parsed)
    if en16931 and not _fatal(findings):
        findings += check_en16931(payload, parsed.getroot().tag, cii_rules)
    if _fatal(findings):
        return findings
    return findings + chorus.check_chorus_rules(parsed)


def _fatal(findings: list[Finding]) -> bool:
    return any(f.severity is Severity.FATAL for f in findings)
