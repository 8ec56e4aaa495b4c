"""Mapping stage, Factur-X: the ERP's PDF + our CII → one Factur-X PDF (Chorus Pro E2, FSO1117A).

Pure: bytes in, bytes out, nothing written to disk. The ``factur-x`` package does the
PDF work (XSD check, ``factur-x.xml`` attachment, XMP metadata). It does not turn the
ERP's PDF into a real PDF/A (fonts, colour profiles): see docs/facturx.md.
"""

from __future__ import annotations

import contextvars
import io
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import facturx
from lxml import etree
from pypdf import PdfReader

from gateway.errors import MappingError
from gateway.xml import safe
from gateway.xml.syntax import CII_ROOT, CII_TERMS, NS

#: The Factur-X profile Chorus Pro takes in FSO1117A flows (DOMAIN.md §1), as factur-x spells it.
LEVEL = "en16931"
#: BT-24 of that profile: what ``facturx.get_level`` reads as ``en16931``.
GUIDELINE_ID = "urn:cen.eu:en16931:2017"
FACTURX_FILENAME = "factur-x.xml"
_FACTURX_LEVELS = ("minimum", "basicwl", "basic", "en16931", "extended", "extended-ctc-fr")

_GUIDELINE_PATH = "rsm:ExchangedDocumentContext/ram:GuidelineSpecifiedDocumentContextParameter/ram:ID"
# ISO 32000: a reader looks for the header in the first 1024 bytes and for %%EOF in the last 1024.
_WINDOW = 1024
# What may precede the root element: XML declaration, whitespace, comments, PIs.
_PROLOG_ITEM = re.compile(rb"\s+|<!--.*?-->|<\?(?P<target>[^\s?]+).*?\?>", re.DOTALL)


def to_facturx(cii: bytes, pdf: bytes, *, lang: str = "fr-FR") -> bytes:
    """The Factur-X (EN16931 level) of the invoice whose CII is ``cii`` and whose ERP PDF is ``pdf``.

    The CII is embedded as ``factur-x.xml`` as it is, less the ``xml-stylesheet``
    processing instruction of E1 flows (its text is removed, the line stays, so line
    numbers do not move). It must declare exactly the EN16931 guideline
    (``GUIDELINE_ID``; factur-x alone would also take XRechnung and other CIUS as
    en16931) and pass factur-x's Factur-X EN16931 XSD. The PDF gets the PDF/A-3 and
    Factur-X XMP metadata and the ``/Lang`` ``lang``. The ERP's PDF must be a plain,
    unprotected PDF with no attachments. Anything wrong raises ``MappingError``; no
    partial PDF is ever returned.

    Not deterministic: factur-x stamps the current UTC time (to the second) into the
    document information dictionary (``/CreationDate``, ``/ModDate``), the XMP
    (``xmp:CreateDate``, ``xmp:ModifyDate``) and the attachment's ``/ModDate``, and
    offers no way to set it. Everything else is the same for the same inputs (pypdf
    copies the input's ``/ID`` or writes none), so two runs differ only by those dates.

    >>> to_facturx(b"<x/>", b"GIF89a")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gateway.errors.MappingError: the invoice PDF is not a PDF (it starts with b'GIF89a'): ...
    """
    if not isinstance(cii, bytes):
        raise MappingError(f"the CII must be bytes, not {type(cii).__name__}")
    reader = _read_pdf(pdf, "the invoice PDF")
    _check_plain_pdf(reader)
    xml = strip_stylesheet(cii)
    _check_cii(xml)
    stream = _RewrittenInPlace(pdf)
    with _facturx_logs() as records:
        try:
            facturx.generate_from_file(
                stream,
                xml,
                flavor="factur-x",
                level=LEVEL,
                check_xsd=True,
                lang=lang,
                # Plain XMP: readable by every PDF/A checker, and leaves room for a PAdES signature.
                xmp_compression=False,
            )
        # factur-x raises bare Exception (XSD) and lets pypdf's errors through.
        except Exception as exc:
            raise MappingError(_generation_failure(exc, records, xml)) from exc
    return stream.output()


def extract_cii(pdf: bytes) -> bytes:
    """The CII embedded in the Factur-X (or ZUGFeRD 2) PDF ``pdf``, byte for byte.

    The XML is returned even when it fails the XSD, so that validation can say why;
    a PDF without an embedded Factur-X CII raises ``MappingError``.

    >>> extract_cii(b"%PDF-1.7 cut short")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gateway.errors.MappingError: the Factur-X PDF is truncated (no %%EOF in its last 1024 bytes): ...
    """
    _read_pdf(pdf, "the Factur-X PDF")
    with _facturx_logs() as records:
        try:
            filename, xml = facturx.get_facturx_xml_from_pdf(pdf, check_xsd=False)
        except Exception as exc:  # pypdf's and factur-x's errors alike: the PDF is unreadable.
            raise MappingError(f"the Factur-X PDF cannot be read: {exc}") from exc
    if not xml:
        # factur-x's last warning only says that nothing was found; the ones before say why.
        reasons = "; ".join(
            record.getMessage()
            for record in records
            if record.levelno >= logging.WARNING and not record.getMessage().startswith("No valid")
        )
        raise MappingError(
            f"the PDF carries no Factur-X XML: {reasons}"
            if reasons
            else f"the PDF carries no Factur-X XML (no embedded {FACTURX_FILENAME}): it is a plain PDF, not a Factur-X"
        )
    root = etree.fromstring(xml, safe.parser())
    if root.tag != CII_ROOT:
        raise MappingError(
            f"the PDF embeds {filename} whose root is {root.tag}, not a CII CrossIndustryInvoice "
            "(ZUGFeRD 1.0?): Chorus Pro takes Factur-X / ZUGFeRD 2 only"
        )
    return bytes(xml)


def strip_stylesheet(xml: bytes) -> bytes:
    """``xml`` without the ``xml-stylesheet`` processing instructions of its prolog, otherwise unchanged.

    Each instruction's text is removed and its line kept, so line numbers still match.

    >>> strip_stylesheet(b'<?xml version="1.0"?>\\n<?xml-stylesheet href="FSO1106A.xsl"?>\\n<a/>')
    b'<?xml version="1.0"?>\\n\\n<a/>'
    """
    position = 3 if xml.startswith(b"\xef\xbb\xbf") else 0
    cuts = []
    while match := _PROLOG_ITEM.match(xml, position):
        if match["target"] == b"xml-stylesheet":
            cuts.append(match.span())
        position = match.end()
    for start, end in reversed(cuts):
        xml = xml[:start] + xml[end:]
    return xml


class _RewrittenInPlace(io.BytesIO):
    """The input PDF for factur-x to read, then the output it writes, from byte 0.

    factur-x 7.8 writes the Factur-X to the very stream it read the PDF from, at
    wherever pypdf left the position and without truncating: the result would keep the
    input's first bytes (all of them, with a BytesIO) before the new ``%PDF-1.6``
    header. pypdf has copied every object it needs by then, so the first write may
    start the stream afresh.
    """

    def __init__(self, pdf: bytes) -> None:
        super().__init__(pdf)
        self._written = False

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if not self._written:
            self._written = True
            self.seek(0)
            self.truncate()
        return super().write(data)

    def output(self) -> bytes:
        if not self._written:
            raise MappingError("factur-x wrote no PDF")
        return self.getvalue()


def _read_pdf(pdf: bytes, what: str) -> PdfReader:
    if not isinstance(pdf, bytes):
        raise MappingError(f"{what} must be bytes, not {type(pdf).__name__}")
    if b"%PDF-" not in pdf[:_WINDOW]:
        raise MappingError(
            f"{what} is not a PDF (it starts with {bytes(pdf[:16])!r}): "
            "check that the ERP exports the invoice's PDF and that the right file is paired with the invoice"
        )
    if b"%%EOF" not in pdf[-_WINDOW:]:
        raise MappingError(
            f"{what} is truncated (no %%EOF in its last {_WINDOW} bytes): "
            "it was cut while being written or copied; export or copy it again"
        )
    try:
        reader = PdfReader(io.BytesIO(pdf))
        encrypted = reader.is_encrypted
        pages = 0 if encrypted else len(reader.pages)
    # pypdf raises PdfReadError but also ValueError, KeyError, … on damaged files.
    except Exception as exc:
        raise MappingError(f"{what} is damaged and cannot be read ({exc}); export it again") from exc
    if encrypted:
        raise MappingError(
            f"{what} is encrypted (password or permission restrictions); PDF/A-3, and so Factur-X, "
            "forbids encryption: have the ERP export it without protection"
        )
    if not pages:
        raise MappingError(f"{what} has no page; export it again")
    return reader


def _check_plain_pdf(reader: PdfReader) -> None:
    try:
        names = sorted(reader.attachments)
    except Exception as exc:  # a damaged /Names tree: same remedy as any damaged PDF
        raise MappingError(f"the invoice PDF is damaged and cannot be read ({exc}); export it again") from exc
    if {name.lower() for name in names} & {FACTURX_FILENAME, "zugferd-invoice.xml"}:
        raise MappingError(
            "the invoice PDF is already a Factur-X/ZUGFeRD (it embeds an invoice XML): "
            "export the plain PDF, or send that Factur-X as it is"
        )
    if names:
        raise MappingError(
            f"the invoice PDF embeds files ({', '.join(names)}) that the Factur-X would lose: "
            "export the invoice PDF without attachments and send them as attachments of the invoice"
        )


def _check_cii(xml: bytes) -> None:
    try:
        root = etree.fromstring(xml, safe.parser())
    except etree.XMLSyntaxError as exc:
        raise MappingError(f"the CII is not well-formed XML: {exc}") from exc
    if root.tag != CII_ROOT:
        raise MappingError(
            f"the document to embed is a {_short(root.tag)}, not a CII CrossIndustryInvoice: "
            "a Factur-X carries CII only; map the invoice to CII"
        )
    found = (root.findtext(_GUIDELINE_PATH, namespaces=NS) or "").strip()
    if not found:
        raise MappingError(f"the CII has no {_GUIDELINE_PATH} (BT-24): set it to {GUIDELINE_ID}")
    if found != GUIDELINE_ID:
        with _facturx_logs():
            try:
                level = facturx.get_level(root, "factur-x")
            except ValueError:  # an identifier factur-x knows no level for
                level = "none"
        if level == LEVEL:  # factur-x reads any "urn:cen.eu:en16931:2017#…" (XRechnung, Peppol…) so
            what = "a specification built on EN 16931, not the plain profile"
        elif level in _FACTURX_LEVELS:
            what = f"Factur-X level {level}"
        else:  # get_level also answers with ZUGFeRD 1 / Order-X levels (comfort…)
            what = "no Factur-X profile"
        raise MappingError(
            f"the CII declares the guideline {found!r} ({what}) in {_GUIDELINE_PATH}; "
            f"Chorus Pro's Factur-X flow takes the EN16931 profile: it must be {GUIDELINE_ID}"
        )


def _generation_failure(exc: Exception, records: list[logging.LogRecord], xml: bytes) -> str:
    cause = exc.__cause__
    if isinstance(cause, etree.DocumentInvalid):
        errors = [error for error in cause.error_log if error.level_name == "ERROR"] or list(cause.error_log)
        shown = "; ".join(f"line {error.line}: {_short(error.message).rstrip('.')}" for error in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        return (
            f"the CII does not pass the Factur-X EN16931 XSD: {shown}{more}; "
            "complete the ERP data or fix the CII mapping"
        )
    missing = _missing_metadata_terms(etree.fromstring(xml, safe.parser()))
    if missing:
        return (
            f"the CII has no {', no '.join(missing)}, which EN 16931 requires and factur-x reads for the "
            "PDF metadata: complete the ERP data or fix the CII mapping"
        )
    detail = "; ".join(r.getMessage() for r in records if r.levelno >= logging.WARNING)
    return f"factur-x could not build the PDF: {exc!r}{f' ({detail})' if detail else ''}"


#: What factur-x reads from the CII for the PDF's title, author and subject; its XSD
#: leaves the names optional, and factur-x fails with a bare IndexError without them.
_METADATA_TERMS = {
    "invoice number (BT-1, rsm:ExchangedDocument/ram:ID)": CII_TERMS.number,
    "seller name (BT-27, ram:SellerTradeParty/ram:Name)": f"{CII_TERMS.parties['supplier']}/ram:Name",
    "buyer name (BT-44, ram:BuyerTradeParty/ram:Name)": f"{CII_TERMS.parties['buyer']}/ram:Name",
}


def _missing_metadata_terms(root: etree._Element) -> list[str]:
    missing = [term for term, path in _METADATA_TERMS.items() if root.find(path, NS) is None]
    date = root.findtext(CII_TERMS.issue_date, None, NS)
    try:
        datetime.strptime((date or "").strip(), "%Y%m%d")
    except ValueError:
        missing.append("issue date as YYYYMMDD (BT-2, ram:IssueDateTime/udt:DateTimeString format 102)")
    return missing


def _short(text: str) -> str:
    """Clark-notation names as rsm:/ram:/udt: names, for readable messages."""
    for prefix, namespace in NS.items():
        text = text.replace(f"{{{namespace}}}", f"{prefix}:")
    return text


# factur-x logs each step at INFO and each failure at ERROR/WARNING (which our
# MappingError already says): while the gateway calls it, its records are kept for the
# error message instead of being emitted. A context variable keeps threads apart.
_RECORDS: contextvars.ContextVar[list[logging.LogRecord] | None] = contextvars.ContextVar(
    "facturx_records", default=None
)


class _KeepForCaller(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        records = _RECORDS.get()
        if records is None:
            return True
        records.append(record)
        return False


_FACTURX_LOGGER = logging.getLogger("factur-x")
if not any(isinstance(existing, _KeepForCaller) for existing in _FACTURX_LOGGER.filters):
    _FACTURX_LOGGER.addFilter(_KeepForCaller())


@contextmanager
def _facturx_logs() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []
    token = _RECORDS.set(records)
    try:
        yield records
    finally:
        _RECORDS.reset(token)


__all__ = ["FACTURX_FILENAME", "GUIDELINE_ID", "LEVEL", "extract_cii", "strip_stylesheet", "to_facturx"]
