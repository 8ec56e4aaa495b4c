"""Factur-X output (Chorus Pro E2, FSO1117A): the ERP's PDF + our CII → one PDF/A-3 invoice.

The CII comes from the real mapping (sample ERP export → CSV reader → XSLT); the PDF
is built here with pypdf. What is checked, and why each check could fail: the
attachment is the CII less its E1 stylesheet instruction; factur-x's own readers
(get_level, xml_check_xsd, get_facturx_xml_from_pdf) accept the result; the XMP claims
PDF/A-3 and EN 16931; bad inputs raise MappingError with what to fix; factur-x prints
nothing; the output varies only by factur-x's timestamps.
"""

from __future__ import annotations

import builtins
import io
import logging
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import facturx
import facturx.facturx as facturx_module
import pytest
from lxml import etree
from pypdf import PdfReader, PdfWriter
from pypdf.generic import ContentStream, DictionaryObject, NameObject

from gateway.domain import Syntax
from gateway.errors import MappingError
from gateway.intake.readers import read_export
from gateway.invoice import ExportedInvoice
from gateway.intake.sample import write_sample_export
from gateway.mapping import compute_totals, map_invoice
from gateway.mapping.facturx import GUIDELINE_ID, extract_cii, strip_stylesheet, to_facturx

NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100",
}
XMP_NS = {
    "pdfaid": "http://www.aiim.org/pdfa/ns/id/",
    "fx": "urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#",
}
AGREEMENT = "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeAgreement"
SUMMATION = (
    "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeSettlement"
    "/ram:SpecifiedTradeSettlementHeaderMonetarySummation"
)
PAGE_TEXT = "Facture F-2026-000001"
# The only bytes factur-x takes from the clock: PDF dates (pypdf writes ":+'" as octal
# escapes) and XMP dates, UTC, to the second.
PDF_DATE = re.compile(rb"\(D\\072\d{14}\\05300\\04700\\047\)")
XMP_DATE = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")


# -- inputs ----------------------------------------------------------------------------


def text_pdf(text: str = PAGE_TEXT) -> bytes:
    """An ERP-like PDF: one A4 page with a line of Helvetica text, and an /Info."""
    writer = PdfWriter()
    page = writer.add_blank_page(595, 842)
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
    )
    content = ContentStream(None, None)
    content.set_data(f"BT /F1 12 Tf 72 770 Td ({text}) Tj ET".encode("latin-1"))
    page.replace_contents(content)
    writer.add_metadata({"/Producer": "Test ERP 1.0", "/Title": "Facture"})
    return _written(writer)


def blank_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    return _written(writer)


def _written(writer: PdfWriter) -> bytes:
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def invoice(tmp_path_factory: pytest.TempPathFactory) -> ExportedInvoice:
    path = tmp_path_factory.mktemp("export") / "export.csv"
    write_sample_export(path, 3, with_errors=False)
    invoices = [r for r in read_export(path, "csv") if isinstance(r, ExportedInvoice)]
    assert len(invoices) == 3
    return invoices[0]


@pytest.fixture(scope="module")
def cii(invoice: ExportedInvoice) -> bytes:
    return map_invoice(invoice, Syntax.CII)


@pytest.fixture(scope="module")
def facturx_pdf(cii: bytes) -> bytes:
    return to_facturx(cii, text_pdf())


def embedded(pdf: bytes) -> dict[str, list[bytes]]:
    return {name: list(contents) for name, contents in PdfReader(io.BytesIO(pdf)).attachments.items()}


def cii_without(cii: bytes, xpath: str) -> bytes:
    root = etree.fromstring(cii)
    (element,) = root.xpath(xpath, namespaces=NS)
    element.getparent().remove(element)
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")


def cii_with_guideline(cii: bytes, guideline: str) -> bytes:
    return cii.replace(f"<ram:ID>{GUIDELINE_ID}</ram:ID>".encode(), f"<ram:ID>{guideline}</ram:ID>".encode(), 1)


# -- the Factur-X ----------------------------------------------------------------------


def test_result_is_one_pdf_with_one_factur_x_attachment(facturx_pdf: bytes) -> None:
    """The output is a single PDF 1.6 (not appended to the input) with factur-x.xml as its /AF data file."""
    assert facturx_pdf.startswith(b"%PDF-1.6\n")
    assert facturx_pdf.count(b"%PDF-") == 1
    assert facturx_pdf.count(b"%%EOF") == 1
    reader = PdfReader(io.BytesIO(facturx_pdf))
    assert list(embedded(facturx_pdf)) == ["factur-x.xml"]
    assert len(embedded(facturx_pdf)["factur-x.xml"]) == 1
    root = reader.trailer["/Root"]
    (filespec,) = [ref.get_object() for ref in root["/AF"].get_object()]
    assert filespec["/F"] == filespec["/UF"] == "factur-x.xml"
    assert filespec["/AFRelationship"] == "/Data"
    assert filespec["/EF"]["/F"].get_object()["/Subtype"] == "/text/xml"
    assert root["/Lang"] == "fr-FR"


def test_page_content_is_kept(facturx_pdf: bytes) -> None:
    """The ERP's page, its text and its size come through unchanged."""
    (page,) = PdfReader(io.BytesIO(facturx_pdf)).pages
    assert PAGE_TEXT in page.extract_text()
    assert (float(page.mediabox.width), float(page.mediabox.height)) == (595, 842)


def test_embedded_xml_is_the_cii_without_the_stylesheet_instruction(cii: bytes, facturx_pdf: bytes) -> None:
    """factur-x.xml is the CII byte for byte, less the <?xml-stylesheet?> text (its line kept)."""
    assert b'<?xml-stylesheet type="text/xsl" href="FSO1106A.xsl"?>' in cii
    (xml,) = embedded(facturx_pdf)["factur-x.xml"]
    assert b"xml-stylesheet" not in xml
    assert xml == strip_stylesheet(cii)
    assert xml == cii.replace(b'<?xml-stylesheet type="text/xsl" href="FSO1106A.xsl"?>', b"")
    assert xml.count(b"\n") == cii.count(b"\n")
    original, carried = etree.fromstring(cii), etree.fromstring(xml)
    assert carried.getprevious() is None
    assert etree.tostring(carried, method="c14n") == etree.tostring(original, method="c14n")
    assert [e.tag for e in carried.iter()] == [e.tag for e in original.iter()]
    assert [e.text for e in carried.iter()] == [e.text for e in original.iter()]


def test_factur_x_reads_the_level_as_en16931(facturx_pdf: bytes) -> None:
    """factur-x's own reader finds factur-x.xml, XSD-valid, at level en16931."""
    filename, xml = facturx.get_facturx_xml_from_pdf(facturx_pdf, check_xsd=True)
    assert filename == "factur-x.xml"
    assert facturx.get_level(etree.fromstring(xml)) == "en16931"


def test_embedded_xml_passes_the_factur_x_en16931_xsd(facturx_pdf: bytes) -> None:
    (xml,) = embedded(facturx_pdf)["factur-x.xml"]
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931") is True


def test_xmp_declares_pdfa3_and_en16931(facturx_pdf: bytes) -> None:
    """The XMP says PDF/A-3B and Factur-X EN 16931, and is stored uncompressed."""
    metadata = PdfReader(io.BytesIO(facturx_pdf)).trailer["/Root"]["/Metadata"].get_object()
    assert "/Filter" not in metadata
    xmp = etree.fromstring(metadata.get_data())
    assert xmp.findtext(".//pdfaid:part", namespaces=XMP_NS) == "3"
    assert xmp.findtext(".//pdfaid:conformance", namespaces=XMP_NS) == "B"
    assert xmp.findtext(".//fx:ConformanceLevel", namespaces=XMP_NS) == "EN 16931"
    assert xmp.findtext(".//fx:DocumentFileName", namespaces=XMP_NS) == "factur-x.xml"
    assert xmp.findtext(".//fx:DocumentType", namespaces=XMP_NS) == "INVOICE"


def test_round_trip_keeps_the_business_terms(invoice: ExportedInvoice, facturx_pdf: bytes) -> None:
    """Number, date, both SIRETs and the totals read back from the Factur-X are the ERP's."""
    doc = etree.fromstring(extract_cii(facturx_pdf))

    def text(path: str) -> str | None:
        return doc.findtext(path, namespaces=NS)

    totals = compute_totals(invoice.lines)
    assert text("rsm:ExchangedDocument/ram:ID") == invoice.number
    assert text("rsm:ExchangedDocument/ram:IssueDateTime/udt:DateTimeString") == invoice.issue_date.strftime("%Y%m%d")
    assert text(f"{AGREEMENT}/ram:SellerTradeParty/ram:GlobalID") == invoice.supplier_siret
    assert text(f"{AGREEMENT}/ram:SellerTradeParty/ram:SpecifiedLegalOrganization/ram:ID") == invoice.supplier_siret
    assert text(f"{AGREEMENT}/ram:BuyerTradeParty/ram:GlobalID") == invoice.buyer_siret
    assert text(f"{SUMMATION}/ram:TaxBasisTotalAmount") == str(totals.total_without_vat)
    assert text(f"{SUMMATION}/ram:TaxTotalAmount") == str(totals.total_vat)
    assert text(f"{SUMMATION}/ram:GrandTotalAmount") == str(totals.total_with_vat)
    assert text(f"{SUMMATION}/ram:DuePayableAmount") == str(totals.amount_due)


def test_extract_cii_returns_the_embedded_bytes(cii: bytes, facturx_pdf: bytes) -> None:
    assert extract_cii(facturx_pdf) == strip_stylesheet(cii)


def test_a_blank_page_pdf_works_too(cii: bytes) -> None:
    """A PDF with no /Info and no fonts is accepted."""
    assert extract_cii(to_facturx(cii, blank_pdf())) == strip_stylesheet(cii)


def test_lang_is_set(cii: bytes) -> None:
    root = PdfReader(io.BytesIO(to_facturx(cii, blank_pdf(), lang="en-GB"))).trailer["/Root"]
    assert root["/Lang"] == "en-GB"


def test_strip_stylesheet_touches_nothing_else() -> None:
    """Only prolog xml-stylesheet instructions go; other PIs, comments, the BOM and the body stay."""
    xml = (
        b'\xef\xbb\xbf<?xml version="1.0" encoding="UTF-8"?>\r\n<!-- c --><?xml-stylesheet href="a.xsl"?>'
        b'<?other x?>\n<?xml-stylesheet href="b.xsl"?>\n<a><?xml-stylesheet href="in-body"?></a>'
    )
    assert strip_stylesheet(xml) == (
        b'\xef\xbb\xbf<?xml version="1.0" encoding="UTF-8"?>\r\n<!-- c --><?other x?>\n\n'
        b'<a><?xml-stylesheet href="in-body"?></a>'
    )
    assert strip_stylesheet(b"<a/>") == b"<a/>"


# -- side effects ----------------------------------------------------------------------


def test_writes_no_file(cii: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither to_facturx nor extract_cii opens a file for writing or makes a temporary file."""
    real_open = builtins.open

    def read_only_open(file, mode="r", *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if any(flag in mode for flag in "wax+"):
            raise AssertionError(f"opened {file!r} for writing")
        return real_open(file, mode, *args, **kwargs)

    def no_temporary_file(*args: object, **kwargs: object) -> None:
        raise AssertionError("made a temporary file")

    monkeypatch.setattr(builtins, "open", read_only_open)
    for name in ("NamedTemporaryFile", "TemporaryFile", "SpooledTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, no_temporary_file)
    monkeypatch.setattr(facturx_module, "NamedTemporaryFile", no_temporary_file)
    assert extract_cii(to_facturx(cii, text_pdf()))


def test_factur_x_logs_nothing_while_we_call_it(
    cii: bytes, facturx_pdf: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """factur-x's INFO/DEBUG lines (and its ERROR lines on a bad CII) are not emitted during our calls."""
    broken = cii_without(cii, "rsm:ExchangedDocument/ram:TypeCode")
    with caplog.at_level(logging.DEBUG, logger="factur-x"):
        to_facturx(cii, text_pdf())
        extract_cii(facturx_pdf)
        with pytest.raises(MappingError):
            to_facturx(broken, text_pdf())
        with pytest.raises(MappingError):
            extract_cii(text_pdf())
    assert [r.getMessage() for r in caplog.records if r.name == "factur-x"] == []


def test_factur_x_logs_as_usual_outside_our_calls(cii: bytes, caplog: pytest.LogCaptureFixture) -> None:
    """The silencing is scoped to our calls: a direct factur-x call still logs."""
    with caplog.at_level(logging.INFO, logger="factur-x"):
        facturx.get_level(etree.fromstring(cii))
    assert any(r.name == "factur-x" for r in caplog.records)


def test_output_varies_only_by_factur_x_timestamps(cii: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same inputs → same bytes once factur-x's PDF and XMP dates are set aside."""
    pdf = text_pdf()
    now = to_facturx(cii, pdf)
    monkeypatch.setattr(facturx_module, "_get_pdf_timestamp", lambda date=None: "D:20000101000000+00'00'")
    monkeypatch.setattr(facturx_module, "_get_metadata_timestamp", lambda: "2000-01-01T00:00:00+00:00")
    then = to_facturx(cii, pdf)
    assert then == to_facturx(cii, pdf)
    assert now != then
    assert len(PDF_DATE.findall(now)) == 3 and len(XMP_DATE.findall(now)) == 2
    assert PDF_DATE.sub(b"D", XMP_DATE.sub(b"X", now)) == PDF_DATE.sub(b"D", XMP_DATE.sub(b"X", then))


# -- refused inputs --------------------------------------------------------------------


def encrypted_pdf() -> bytes:
    writer = PdfWriter(clone_from=io.BytesIO(text_pdf()))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-128")
    return _written(writer)


def pdf_with_attachment(name: str, data: bytes) -> bytes:
    writer = PdfWriter(clone_from=io.BytesIO(text_pdf()))
    writer.add_attachment(name, data)
    return _written(writer)


BAD_PDFS: dict[str, tuple[Callable[[], bytes], str]] = {
    "html": (lambda: b"<html><body>404 Not Found</body></html>", r"not a PDF \(it starts with b'<html>"),
    "empty": (lambda: b"", "not a PDF"),
    "truncated": (lambda: text_pdf()[: len(text_pdf()) // 2], r"truncated \(no %%EOF"),
    "garbage body": (lambda: b"%PDF-1.4\nthis is no PDF body\n%%EOF\n", "damaged and cannot be read"),
    "encrypted": (encrypted_pdf, "encrypted .*forbids encryption: have the ERP export it without protection"),
    "no page": (lambda: _written(PdfWriter()), "has no page"),
    "with attachment": (lambda: pdf_with_attachment("bon.csv", b"a;b\n"), r"embeds files \(bon.csv\)"),
}


@pytest.mark.parametrize("case", BAD_PDFS)
def test_bad_pdf_is_refused(cii: bytes, case: str) -> None:
    make, message = BAD_PDFS[case]
    with pytest.raises(MappingError, match=f"^the invoice PDF .*{message}"):
        to_facturx(cii, make())


def test_a_factur_x_is_not_wrapped_again(cii: bytes, facturx_pdf: bytes) -> None:
    with pytest.raises(MappingError, match="already a Factur-X/ZUGFeRD .* export the plain PDF"):
        to_facturx(cii, facturx_pdf)


def test_cii_missing_a_mandatory_element_is_refused(cii: bytes) -> None:
    """The message names the XSD, the line and the element (with its prefix), and what to fix."""
    broken = cii_without(cii, "rsm:ExchangedDocument/ram:TypeCode")
    with pytest.raises(MappingError) as raised:
        to_facturx(broken, text_pdf())
    message = raised.value.message
    assert message.startswith("the CII does not pass the Factur-X EN16931 XSD: line ")
    assert "ram:IssueDateTime" in message and "Expected is ( ram:TypeCode )" in message
    assert "{urn:" not in message
    assert message.endswith("complete the ERP data or fix the CII mapping")


@pytest.mark.parametrize(("party", "term"), [("Seller", "BT-27"), ("Buyer", "BT-44")])
def test_cii_without_party_name_is_refused(cii: bytes, party: str, term: str) -> None:
    """The XSD lets the names go; factur-x then fails with a bare IndexError, which we explain."""
    broken = cii_without(cii, f"{AGREEMENT}/ram:{party}TradeParty/ram:Name")
    with pytest.raises(
        MappingError, match=f"^the CII has no {party.lower()} name \\({term}, ram:{party}TradeParty/ram:Name\\)"
    ):
        to_facturx(broken, text_pdf())


@pytest.mark.parametrize(
    ("guideline", "level"),
    [
        ("urn:cen.eu:en16931:2017#compliant#urn:factur-x.eu:1p0:basic", "basic"),
        ("urn:cen.eu:en16931:2017#conformant#urn:factur-x.eu:1p0:extended", "extended"),
        ("urn:factur-x.eu:1p0:minimum", "minimum"),
        ("urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0", "en16931"),
        ("urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0", "en16931"),
        ("urn:peppol:pint:billing-1", "none"),
        ("urn:ferd:CrossIndustryDocument:invoice:1p0:comfort", "none"),
    ],
)
def test_other_profiles_are_refused(cii: bytes, guideline: str, level: str) -> None:
    """factur-x would stamp EN 16931 in the XMP whatever the CII says, and reads every CIUS
    of EN 16931 as en16931: we want BT-24 to be exactly the profile's."""
    what = {"en16931": "a specification built on EN 16931", "none": "no Factur-X profile"}.get(
        level, f"Factur-X level {level}"
    )
    with pytest.raises(MappingError, match=f"guideline '{re.escape(guideline)}' \\({what}.*must be {GUIDELINE_ID}$"):
        to_facturx(cii_with_guideline(cii, guideline), text_pdf())


def test_cii_without_guideline_is_refused(cii: bytes) -> None:
    broken = cii_without(cii, "rsm:ExchangedDocumentContext/ram:GuidelineSpecifiedDocumentContextParameter")
    with pytest.raises(
        MappingError, match=f"has no .*GuidelineSpecifiedDocumentContextParameter/ram:ID .*{GUIDELINE_ID}"
    ):
        to_facturx(broken, text_pdf())


def test_ubl_is_refused(invoice: ExportedInvoice) -> None:
    with pytest.raises(MappingError, match=r"is a \{urn:oasis.*\}Invoice, not a CII .*map the invoice to CII"):
        to_facturx(map_invoice(invoice, Syntax.UBL), text_pdf())


def test_malformed_cii_is_refused(cii: bytes) -> None:
    with pytest.raises(MappingError, match="^the CII is not well-formed XML"):
        to_facturx(cii[:-40], text_pdf())


def test_str_cii_is_refused(cii: bytes) -> None:
    """factur-x would take a str for a file path; we take bytes only."""
    with pytest.raises(MappingError, match="the CII must be bytes, not str"):
        to_facturx(cii.decode(), text_pdf())  # type: ignore[arg-type]


# -- extract_cii -----------------------------------------------------------------------


def test_extract_from_a_plain_pdf_is_refused() -> None:
    with pytest.raises(MappingError, match="^the PDF carries no Factur-X XML .*not a Factur-X$"):
        extract_cii(text_pdf())


def test_extract_says_why_the_embedded_xml_was_skipped() -> None:
    """factur-x's reason (here: not XML) reaches the message instead of its log."""
    with pytest.raises(MappingError, match="factur-x.xml is not a valid XML file"):
        extract_cii(pdf_with_attachment("factur-x.xml", b"not xml"))


def test_extract_returns_an_xsd_invalid_cii_for_validation_to_report(cii: bytes) -> None:
    broken = cii_without(cii, "rsm:ExchangedDocument/ram:TypeCode")
    assert extract_cii(pdf_with_attachment("factur-x.xml", broken)) == broken


@pytest.mark.parametrize("case", ["html", "truncated", "encrypted"])
def test_extract_from_a_bad_pdf_is_refused(case: str) -> None:
    make, message = BAD_PDFS[case]
    with pytest.raises(MappingError, match=f"^the Factur-X PDF .*{message}"):
        extract_cii(make())


# -- the shared corpus -----------------------------------------------------------------


def test_corpus_factur_x_pdfs_are_read(corpus: Path) -> None:
    """Every PDF of the corpus that embeds a Factur-X CII gives it back (none there yet: skip)."""
    pdfs = sorted(p for p in corpus.rglob("*") if p.suffix.lower() == ".pdf")
    if not pdfs:
        pytest.skip("../shared/corpus holds no PDF")
    for path in pdfs:
        names = {name.lower() for name in PdfReader(path).attachments}
        if names & {"factur-x.xml", "zugferd-invoice.xml"}:
            assert etree.fromstring(extract_cii(path.read_bytes())).tag.endswith("CrossIndustryInvoice"), path


def corpus_ciis(corpus: Path) -> list[Path]:
    return sorted((corpus / "examples" / "cii").glob("*/*.xml"))


def test_corpus_en16931_ciis_round_trip(corpus: Path) -> None:
    """Every EN16931-level CII of the corpus becomes a Factur-X that gives it back byte for byte;
    every other profile is refused for its guideline."""
    made = refused = 0
    for path in corpus_ciis(corpus):
        xml = path.read_bytes()
        if f"<ram:ID>{GUIDELINE_ID}</ram:ID>".encode() in xml:
            assert extract_cii(to_facturx(xml, blank_pdf())) == strip_stylesheet(xml), path
            made += 1
        else:
            with pytest.raises(MappingError, match="guideline|has no"):
                to_facturx(xml, blank_pdf())
            refused += 1
    assert made >= 10 and refused >= 5, (made, refused)
