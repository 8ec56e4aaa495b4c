"""All layers over one invoice document, in order, each reported separately.

Parsing → XSD → the Schematron rule sets of the validation profile → Chorus Pro rules.
A later layer runs only when the earlier ones found nothing fatal: rules over a
document that is not schema-valid would only add noise. A layer that cannot run
raises ``ValidatorError``; it never reads as valid.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from gateway.validation import chorus
from gateway.validation.findings import Finding, Severity
from gateway.validation.rulesets import DEFAULT_PROFILE, RuleRegistry, scan_directory
from gateway.validation.schematron import run_rule_set, syntax_of
from gateway.validation.xsd import (
    Xsd,
    check_xsd,
    describe_schema,
    schema_for,
    streamed_valid,
    widest_cii,
)
from gateway.xml import safe
from gateway.xml.syntax import CII_ROOT, LINE_TAGS
from gateway.xml.saxon import in_memory

#: Documents larger than this are refused before parsing (a flow member is far smaller).
#: Every parse here is ``gateway.xml.safe``'s with ``huge_tree``: the base64 of an
#: attachment Chorus Pro takes (under 10 MB, so up to 13.3 MB as base64) is over libxml2's
#: limit on one text node, and the document is bounded by this size before any parsing.
MAX_DOCUMENT_BYTES = 100 * 1024 * 1024


@dataclass
class Validation:
    """What the layers said about one document, and what they were."""

    syntax: str | None
    findings: list[Finding] = field(default_factory=list)
    #: The XSD and rule sets that ran: {"kind", "name", "version", "sha256"}.
    artefacts: list[dict[str, str]] = field(default_factory=list)


#: A document in memory, or the file that holds it (read as a stream, never whole when valid).
Document = bytes | Path


def _too_big(document: Document) -> Finding | None:
    try:
        safe.check_size(len(document) if isinstance(document, bytes) else document.stat().st_size,
                        MAX_DOCUMENT_BYTES)
    except safe.TooLarge as exc:
        return _parse_finding(exc)
    return None


def _parse_finding(problem: safe.UnsafeXml) -> Finding:
    """The fatal finding of the parse layer for a document ``gateway.xml.safe`` refused."""
    if isinstance(problem, safe.TooLarge):
        return Finding("parse", "XML-SIZE", Severity.FATAL, "/", problem.reason)
    if isinstance(problem, safe.HasDoctype):
        return Finding("parse", "XML-DTD", Severity.FATAL, "/", problem.reason)
    return Finding("parse", "XML", Severity.FATAL, f"line {problem.line}", problem.reason)


def _stream(document: Document) -> io.BytesIO | str:
    return io.BytesIO(document) if isinstance(document, bytes) else str(document)


def parse_invoice(payload: bytes) -> etree._ElementTree | Finding:
    """Parse safely; a document that is too big, not well-formed or with a DOCTYPE becomes a fatal finding."""
    try:
        return safe.parse(payload, limit=MAX_DOCUMENT_BYTES, huge_tree=True)
    except safe.UnsafeXml as exc:
        return _parse_finding(exc)


def parse_header(payload: bytes) -> etree._ElementTree | Finding:
    """The document without its invoice lines, which the Chorus Pro rules never read: a
    tree of a 100,000-line invoice would take hundreds of megabytes. Otherwise as
    ``parse_invoice`` (the positions in XPaths of what is kept are the same)."""
    too_big = _too_big(payload)
    if too_big is not None:
        return too_big
    events = safe.iterparse(io.BytesIO(payload), events=("end",), tag=LINE_TAGS, huge_tree=True)
    try:
        for _event, line in events:
            parent = line.getparent()
            if parent is not None:
                parent.remove(line)
        tree = events.root.getroottree()
        safe.refuse_doctype(tree)
    except etree.XMLSyntaxError as exc:
        return _parse_finding(safe.not_well_formed(exc))
    except safe.UnsafeXml as exc:
        return _parse_finding(exc)
    return tree


def _root_tag(document: Document) -> str | None:
    """The root element's name, read from the document's start; None if that is not XML."""
    try:
        for _event, element in safe.iterparse(_stream(document), events=("start",), huge_tree=True):
            return str(element.tag)
    except etree.XMLSyntaxError:
        pass
    return None


def schema_layers(
    document: Document, *, profile: str | None, registry: RuleRegistry, own_output: bool = True
) -> Validation:
    """Parsing, XSD and the profile's Schematron rule sets (the part a worker runs).

    ``own_output``: the document is what the gateway wrote (CII is checked against the
    EN16931 profile XSD); otherwise it was received (the widest CII XSD available).

    A big valid document (beyond ``saxon.IN_MEMORY_BYTES``) is checked as a stream and
    never held as a tree (see ``xsd.streamed_valid``); any other is parsed whole, which
    is faster for a small one, and for an invalid one says where each finding is.
    """

    def xsd_for(root_tag: str) -> Xsd | None:
        return None if own_output or root_tag != CII_ROOT else widest_cii(registry.xsd("cii"))

    big = not in_memory(document) and _too_big(document) is None
    root_tag = _root_tag(document) if big else None
    if root_tag is not None and streamed_valid(_stream(document), root_tag, xsd_for(root_tag)):
        findings: list[Finding] = []
    else:
        parsed = parse_invoice(document if isinstance(document, bytes) else document.read_bytes())
        if isinstance(parsed, Finding):
            return Validation(None, [parsed])
        root_tag = parsed.getroot().tag
        findings = check_xsd(parsed, xsd_for(root_tag))
        del parsed
    cii = xsd_for(root_tag)
    result = Validation(None, findings)
    if schema_for(root_tag) is None:
        return result
    result.syntax = syntax_of(root_tag)
    result.artefacts.append(describe_schema(root_tag, cii))
    if profile is None or _fatal(result.findings):
        return result
    for rule_set in registry.for_profile(profile, result.syntax):
        result.findings += run_rule_set(document, rule_set)
        result.artefacts.append(rule_set.describe())
    return result


def chorus_layer(parsed: etree._ElementTree | None, result: Validation,
                 context: chorus.ChorusContext | None = None) -> Validation:
    """Adds the Chorus Pro rules when the earlier layers found nothing fatal."""
    if parsed is not None and not _fatal(result.findings):
        result.findings += (
            chorus.check_chorus_rules(parsed, context) if context is not None else chorus.check_chorus_rules(parsed)
        )
    return result


def validate_document(
    payload: bytes,
    *,
    profile: str | None = DEFAULT_PROFILE,
    registry: RuleRegistry | None = None,
    context: chorus.ChorusContext | None = None,
    own_output: bool = True,
) -> Validation:
    """Every layer in this process (no time budget: see ``worker`` for that)."""
    result = schema_layers(payload, profile=profile, registry=registry or RuleRegistry.default(),
                           own_output=own_output)
    return chorus_layer(header_of(payload, result), result, context)


def header_of(payload: bytes, result: Validation) -> etree._ElementTree | None:
    """What the Chorus Pro rules read of a document the schema layers passed (None otherwise)."""
    if not result.syntax or _fatal(result.findings):
        return None
    parsed = parse_header(payload)
    return None if isinstance(parsed, Finding) else parsed


def validate_invoice(payload: bytes, *, en16931: bool = False, cii_rules: Path | None = None) -> list[Finding]:
    """Parsing, XSD, (with ``en16931``) the EN 16931 Schematron, and the context-free Chorus rules."""
    registry = RuleRegistry.default(scan_directory(cii_rules) if cii_rules is not None else [])
    return validate_document(payload, profile=DEFAULT_PROFILE if en16931 else None, registry=registry).findings


def _fatal(findings: list[Finding]) -> bool:
    return any(f.severity is Severity.FATAL for f in findings)
