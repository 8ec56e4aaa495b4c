"""All layers over one invoice document, in order, each reported separately.

Parsing → XSD → the Schematron rule sets of the validation profile → Chorus Pro rules.
A later layer runs only when the earlier ones found nothing fatal: rules over a
document that is not schema-valid would only add noise. A layer that cannot run
raises ``ValidatorError``; it never reads as valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from gateway.validation import chorus
from gateway.validation.findings import Finding, Severity
from gateway.validation.rulesets import DEFAULT_PROFILE, RuleRegistry, scan_directory
from gateway.validation.schematron import run_rule_set, syntax_of
from gateway.validation.xsd import CII_ROOT, check_xsd, describe_schema, schema_for, widest_cii

# Safe parsing: no DTD, no entity expansion, no network; huge_tree stays off so that
# libxml2's own depth and size limits apply.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False)
#: Documents larger than this are refused before parsing (a flow member is far smaller).
MAX_DOCUMENT_BYTES = 100 * 1024 * 1024


@dataclass
class Validation:
    """What the layers said about one document, and what they were."""

    syntax: str | None
    findings: list[Finding] = field(default_factory=list)
    #: The XSD and rule sets that ran: {"kind", "name", "version", "sha256"}.
    artefacts: list[dict[str, str]] = field(default_factory=list)


def parse_invoice(payload: bytes) -> etree._ElementTree | Finding:
    """Parse safely; a document that is not well-formed becomes a fatal finding."""
    if len(payload) > MAX_DOCUMENT_BYTES:
        return Finding("parse", "XML-SIZE", Severity.FATAL, "/",
                       f"the document has {len(payload)} bytes; the limit is {MAX_DOCUMENT_BYTES}")
    try:
        root = etree.fromstring(payload, _PARSER)
    except etree.XMLSyntaxError as exc:
        return Finding("parse", "XML", Severity.FATAL, f"line {exc.lineno}", exc.msg)
    if root.getroottree().docinfo.doctype:
        return Finding("parse", "XML-DTD", Severity.FATAL, "/", "a DOCTYPE is not allowed")
    return root.getroottree()


def schema_layers(
    payload: bytes, *, profile: str | None, registry: RuleRegistry, own_output: bool = True
) -> tuple[etree._ElementTree | None, Validation]:
    """Parsing, XSD and the profile's Schematron rule sets (the part a worker runs).

    ``own_output``: the document is what the gateway wrote (CII is checked against the
    EN16931 profile XSD); otherwise it was received (the widest CII XSD available).
    """
    parsed = parse_invoice(payload)
    if isinstance(parsed, Finding):
        return None, Validation(None, [parsed])
    root_tag = parsed.getroot().tag
    cii = None if own_output or root_tag != CII_ROOT else widest_cii(registry.xsd("cii"))
    result = Validation(None, check_xsd(parsed, cii))
    if schema_for(root_tag) is None:
        return parsed, result
    result.syntax = syntax_of(root_tag)
    result.artefacts.append(describe_schema(root_tag, cii))
    if profile is None or _fatal(result.findings):
        return parsed, result
    for rule_set in registry.for_profile(profile, result.syntax):
        result.findings += run_rule_set(payload, rule_set)
        result.artefacts.append(rule_set.describe())
    return parsed, result


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
    parsed, result = schema_layers(payload, profile=profile, registry=registry or RuleRegistry.default(),
                                   own_output=own_output)
    return chorus_layer(parsed, result, context)


def validate_invoice(payload: bytes, *, en16931: bool = False, cii_rules: Path | None = None) -> list[Finding]:
    """Parsing, XSD, (with ``en16931``) the EN 16931 Schematron, and the context-free Chorus rules."""
    registry = RuleRegistry.default(scan_directory(cii_rules) if cii_rules is not None else [])
    return validate_document(payload, profile=DEFAULT_PROFILE if en16931 else None, registry=registry).findings


def _fatal(findings: list[Finding]) -> bool:
    return any(f.severity is Severity.FATAL for f in findings)
