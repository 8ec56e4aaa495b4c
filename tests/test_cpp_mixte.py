"""CPP Facture Mixte output (E2 flow IN_DP_E2_CPP_FACTURE_MIN, interface FSO1113A).

What is checked, and why each check could fail:

- the one public CPPFactureMixte sample is valid against schemas/cpp-facture-mixte.xsd
  (the schema was written from it, xsi:type attributes included), and the schema is
  not vacuous: each single departure from a known constraint is refused, in the sample
  and in our own output;
- what mappings/canonical-to-cpp.xsl writes is valid against that schema;
- every business term read back from the output (ids, dates, parties, VAT breakdown,
  totals, attachment bytes) is the one of the canonical input;
- the stylesheet's parameters and its choices where the format is not public
  (payment means table, credit notes, lines for FSO1110A) do what docs/cpp-facture-mixte.md says.

The sample is a test reference read from ../shared/corpus (DOMAIN.md §4): the tests
that need it skip when it is absent. Canonical inputs are built here.
"""

from __future__ import annotations

import base64
import copy
import functools
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from gateway.errors import MappingError
from gateway.xml.saxon import transform
from gateway.resources import mapping_path, schema_path

C = "urn:chorus-gateway:canonical-invoice:1"
NS = {"c": C}
XSI = "http://www.w3.org/2001/XMLSchema-instance"
SAMPLE = "examples/chorus-pro/mixte/Facture-IN_DP_E2_CPP_FACTURE_MIN.xml"
PARTNER = "AAA123"
HUGE = etree.XMLParser(huge_tree=True)

#: Bytes that are not text: every byte value, so base64 and XML escaping are both exercised.
PDF = b"%PDF-1.4\n" + bytes(range(256)) + b"\n%%EOF\n"
CSV = "ligne;quantité\n1;2\n".encode()


@functools.cache
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(schema_path("cpp-facture-mixte.xsd"))))


def errors(document: etree._Element | etree._ElementTree) -> list[str]:
    checker = schema()
    return [] if checker.validate(document) else [str(error) for error in checker.error_log]


# -- canonical input -------------------------------------------------------------------


def canonical(
    *,
    type_code: str = "380",
    payment_means: str | None = "58",
    iban: str | None = "FR7630006000011234567890189",
    preceding: tuple[str, str | None] | None = None,
    attachments: tuple[tuple[str, str, str, bytes], ...] = (
        ("supporting", "bon-de-livraison.csv", "text/csv", CSV),
        ("invoice", "FAC-2026-0042.pdf", "application/pdf", PDF),
    ),
    contract: str | None = "175191/0/175191",
    order: str | None = "EJ-3004564",
    service: str | None = "SERV-FIN",
    cadre: str = "A1",
) -> bytes:
    """A canonical invoice in the order of schemas/canonical-invoice.xsd: two VAT rates,
    a supporting document before the invoice PDF (the PDF must still come out first)."""
    root = etree.Element(f"{{{C}}}Invoice", nsmap={None: C})

    def add(parent: etree._Element, name: str, value: str | None = None) -> etree._Element:
        element = etree.SubElement(parent, f"{{{C}}}{name}")
        element.text = value
        return element

    def optional(parent: etree._Element, name: str, value: str | None) -> None:
        if value is not None:
            add(parent, name, value)

    add(root, "InvoiceNumber", "FAC-2026-0042")
    add(root, "IssueDate", "2026-11-02")
    add(root, "InvoiceTypeCode", type_code)
    add(root, "CurrencyCode", "EUR")
    add(root, "PaymentDueDate", "2026-12-02")
    optional(root, "BuyerReference", service)
    optional(root, "PurchaseOrderReference", order)
    optional(root, "ContractReference", contract)
    add(root, "BusinessProcessType", cadre)
    if preceding:
        group = add(root, "PrecedingInvoiceReference")
        add(group, "PrecedingInvoiceNumber", preceding[0])
        optional(group, "PrecedingInvoiceIssueDate", preceding[1])
    for role, name, mime, content in attachments:
        document = add(root, "AdditionalSupportingDocument")
        document.set("role", role)
        add(document, "SupportingDocumentReference", name)
        attached = add(document, "AttachedDocument", base64.b64encode(content).decode("ascii"))
        attached.set("mimeCode", mime)
        attached.set("filename", name)
    for party, name, siret in (
        ("Seller", "ACME Fournitures", "73282932000074"),
        ("Buyer", "CHU de Bordeaux", "26330582300019"),
    ):
        element = add(root, party)
        add(element, "Name", name)
        add(element, "Siret", siret)
        add(element, "VatIdentifier", "FR44732829320")
        address = add(element, "PostalAddress")
        add(address, "AddressLine1", "1 rue de la Paix")
        add(address, "City", "Bordeaux")
        add(address, "PostCode", "33000")
        add(address, "CountryCode", "FR")
    if payment_means:
        payment = add(root, "PaymentInstructions")
        add(payment, "PaymentMeansTypeCode", payment_means)
        optional(payment, "PaymentAccountIdentifier", iban)
    totals = add(root, "DocumentTotals")
    for name, value in (
        ("SumOfInvoiceLineNetAmount", "150.00"),
        ("InvoiceTotalAmountWithoutVat", "150.00"),
        ("InvoiceTotalVatAmount", "22.75"),
        ("InvoiceTotalAmountWithVat", "172.75"),
        ("AmountDueForPayment", "172.75"),
    ):
        add(totals, name, value)
    for base, tax, rate in (("50.00", "2.75", "5.5"), ("100.00", "20.00", "20")):
        vat = add(root, "VatBreakdown")
        add(vat, "VatCategoryTaxableAmount", base)
        add(vat, "VatCategoryTaxAmount", tax)
        add(vat, "VatCategoryCode", "S")
        add(vat, "VatCategoryRate", rate)
    for number, (quantity, price, net, rate, item) in enumerate(
        (("2", "25", "50.00", "5.5", "Livres"), ("4", "25", "100.00", "20", "Papeterie")), start=1
    ):
        line = add(root, "InvoiceLine")
        for name, value in (
            ("InvoiceLineIdentifier", str(number)),
            ("InvoicedQuantity", quantity),
            ("InvoicedQuantityUnitOfMeasureCode", "C62"),
            ("InvoiceLineNetAmount", net),
            ("ItemNetPrice", price),
            ("InvoicedItemVatCategoryCode", "S"),
            ("InvoicedItemVatRate", rate),
            ("ItemName", item),
        ):
            add(line, name, value)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def cpp(document: bytes, **parameters: str) -> bytes:
    """The CPPFactureMixte of a canonical document; the partner code is always given."""
    return transform(mapping_path("canonical-to-cpp.xsl"), document, {"emetteur-id": PARTNER, **parameters})


def text(root: etree._Element, path: str) -> str:
    found = root.find(path)
    assert found is not None, path
    return found.text or ""


def texts(root: etree._Element, path: str) -> list[str]:
    return [element.text or "" for element in root.findall(path)]


@functools.cache
def canonical_declares_attachments() -> bool:
    return b'name="AdditionalSupportingDocument"' in schema_path("canonical-invoice.xsd").read_bytes()


# -- a) the public sample --------------------------------------------------------------


def test_the_public_sample_is_valid(corpus: Path) -> None:
    sample = etree.parse(str(corpus / SAMPLE), HUGE)
    assert errors(sample) == []
    # The sample's xsi:type attributes are what forces plain xs:string on these four.
    typed = {element.tag for element in sample.iter() if element.get(f"{{{XSI}}}type") == "xs:string"}
    assert typed == {"Identifiant", "RaisonSociale", "Nom", "MimeTypePJ"}


# -- b) the schema refuses what the format forbids -------------------------------------

Tamper = Callable[[etree._Element], None]


def _node(root: etree._Element, path: str) -> etree._Element:
    found = root.find(path)
    assert found is not None, f"the tampering matches nothing: {path}"
    return found


def set_text(path: str, value: str) -> Tamper:
    def tamper(root: etree._Element) -> None:
        _node(root, path).text = value

    return tamper


def set_attribute(path: str, name: str, value: str) -> Tamper:
    def tamper(root: etree._Element) -> None:
        _node(root, path).set(name, value)

    return tamper


def drop(path: str) -> Tamper:
    """Remove every match (at least one)."""

    def tamper(root: etree._Element) -> None:
        _node(root, path)
        for node in root.findall(path):
            node.getparent().remove(node)

    return tamper


def move_before(path: str, before: str) -> Tamper:
    def tamper(root: etree._Element) -> None:
        _node(root, before).addprevious(_node(root, path))

    return tamper


def duplicate(path: str) -> Tamper:
    def tamper(root: etree._Element) -> None:
        node = _node(root, path)
        node.addnext(copy.deepcopy(node))

    return tamper


def add_after(path: str, name: str, value: str) -> Tamper:
    def tamper(root: etree._Element) -> None:
        extra = etree.Element(name)
        extra.text = value
        _node(root, path).addnext(extra)

    return tamper


def retype_as_integer(root: etree._Element) -> None:
    """xsi:type may only name the declared type or one derived from it."""
    node = _node(root, ".//Fournisseur/Identifiant")
    node.set(f"{{{XSI}}}type", "xs:integer")
    node.text = "not a number"


INVOICE = "CPPFactures/CPPFactureMixteUnitaire"
DATA = f"{INVOICE}/DonneesFacture"
PARAMETERS = "Enveloppe/EnveloppeUnitaire/Parametres"
PARTNERS = "Enveloppe/EnveloppeUnitaire/Partenaires"

TAMPERINGS = [
    pytest.param(set_text(f"{DATA}/DateEmissionFacture", "21/03/2019"), id="date-not-iso"),
    pytest.param(set_text(f"{DATA}/DateEmissionFacture", "2019-03-21Z"), id="date-with-time-zone"),
    pytest.param(set_text(f"{DATA}/Montants/MontantHT", "828.4300001"), id="amount-7-decimals"),
    pytest.param(set_text(f"{DATA}/Montants/MontantTTC", "12345678901234567890"), id="amount-20-digits"),
    pytest.param(set_text(f"{DATA}/TVAS/TVA/Taux", "5,5"), id="decimal-comma"),
    pytest.param(set_text(f"{DATA}/TVAS/TVA/MontantTVA", "4.5e1"), id="amount-with-exponent"),
    pytest.param(set_text(f"{INVOICE}/Fournisseur/TypeIdentifiant", "8"), id="supplier-identifier-kind-8"),
    pytest.param(set_text(f"{INVOICE}/Debiteur/TypeIdentifiant", "2"), id="buyer-not-a-siret"),
    pytest.param(set_text(f"{INVOICE}/Debiteur/Identifiant", "2633058230001"), id="buyer-siret-13-digits"),
    pytest.param(set_text(f"{INVOICE}/Debiteur/CodeService", "S" * 101), id="service-code-101"),
    pytest.param(set_text(f"{DATA}/Cadre", "A11"), id="cadre-A11"),
    pytest.param(set_text(f"{DATA}/Cadre", "A26"), id="cadre-A26"),
    pytest.param(set_text(f"{DATA}/Type", "384"), id="type-384"),
    pytest.param(set_text(f"{DATA}/Id", "F" * 21), id="invoice-number-21"),
    pytest.param(set_text(f"{DATA}/Devise", "eur"), id="lower-case-currency"),
    pytest.param(set_text(f"{DATA}/ModePaiement/Code", "1"), id="payment-code-1-digit"),
    pytest.param(set_text(f"{DATA}/Engagement/NumeroEngagement", "9" * 51), id="commitment-51"),
    pytest.param(set_text(f"{INVOICE}/PJ/NomPJ", "f" * 47 + ".pdf"), id="attachment-name-51"),
    pytest.param(set_text(f"{INVOICE}/PJ/NomPJ", "facture"), id="attachment-name-no-extension"),
    pytest.param(set_text(f"{INVOICE}/PJ/NomPJ", "facture.exe"), id="attachment-extension-not-allowed"),
    pytest.param(set_text(f"{INVOICE}/PJ/NomPJ", "factures/f.pdf"), id="attachment-name-with-directory"),
    pytest.param(set_text(f"{INVOICE}/PJ/TypePJ", "03"), id="attachment-type-03"),
    pytest.param(set_text(f"{INVOICE}/PJ/Contenu", "not base64!"), id="content-not-base64"),
    pytest.param(duplicate(f"{INVOICE}/PJ"), id="attachment-number-twice"),
    pytest.param(drop(f"{INVOICE}/PJ"), id="no-attachment"),
    pytest.param(drop(f"{DATA}/Montants"), id="no-totals"),
    pytest.param(move_before(f"{DATA}/Devise", f"{DATA}/ModePaiement"), id="currency-before-payment-means"),
    pytest.param(move_before(f"{INVOICE}/Debiteur", f"{INVOICE}/Fournisseur"), id="buyer-before-supplier"),
    pytest.param(add_after(f"{DATA}/Engagement", "Commentaire", "?"), id="unknown-element"),
    pytest.param(set_text(f"{PARTNERS}/Emetteur/Id", "AB"), id="sender-id-2"),
    pytest.param(set_text(f"{PARTNERS}/Recepteur/Id", "ABCDEFGHI"), id="receiver-id-9"),
    pytest.param(drop(f"{PARAMETERS}/ParametreIndiv[2]"), id="one-parameter"),
    pytest.param(set_text(f"{PARAMETERS}/ParametreIndiv[2]/Code", "DtPrd"), id="parameter-twice"),
    pytest.param(set_text(f"{PARAMETERS}/ParametreIndiv/Code", "DtPr"), id="parameter-code-4"),
    pytest.param(set_attribute(f"{PARAMETERS}/ParametreIndiv", "NumOrdre", "001"), id="parameter-number-3-digits"),
    pytest.param(set_attribute("CPPFactures", "Compteur", "-1"), id="negative-counter"),
    pytest.param(retype_as_integer, id="xsi-type-not-derived"),
]


@pytest.mark.parametrize("tamper", TAMPERINGS)
def test_a_tampered_sample_is_refused(tamper: Tamper, corpus: Path) -> None:
    root = etree.parse(str(corpus / SAMPLE), HUGE).getroot()
    tamper(root)
    assert errors(root)


@pytest.mark.parametrize("tamper", TAMPERINGS)
def test_a_tampered_output_is_refused(tamper: Tamper) -> None:
    root = etree.fromstring(cpp(canonical()))
    assert errors(root) == []
    tamper(root)
    assert errors(root)


# -- c) our output is valid ------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "parameters"),
    [
        pytest.param(canonical(), {}, id="invoice-with-pdf-and-supporting-document"),
        pytest.param(canonical(attachments=(("invoice", "f.PDF", "application/pdf", PDF),)), {}, id="pdf-only"),
        pytest.param(canonical(payment_means=None, contract=None, order=None, service=None), {}, id="no-optional-data"),
        pytest.param(canonical(type_code="381", preceding=("FAC-2026-0041", "2026-10-30")), {}, id="credit-note"),
        pytest.param(canonical(cadre="A25"), {"interface-code": "FSO1110A"}, id="FSO1110A-with-lines"),
        pytest.param(canonical(), {"schema-location": ""}, id="no-schema-location"),
    ],
)
def test_the_output_is_valid(document: bytes, parameters: dict[str, str]) -> None:
    assert errors(etree.fromstring(cpp(document, **parameters))) == []


def test_the_canonical_inputs_of_these_tests_are_valid_canonical_documents() -> None:
    """Keeps the hand-built inputs honest against the canonical model."""
    assert canonical_declares_attachments()
    checker = etree.XMLSchema(etree.parse(str(schema_path("canonical-invoice.xsd"))))
    for document in (canonical(), canonical(type_code="381", preceding=("FAC-2026-0041", None), payment_means=None)):
        assert checker.validate(etree.fromstring(document)), checker.error_log


def test_a_type_the_cpp_formats_do_not_know_is_refused_not_retyped() -> None:
    output = etree.fromstring(cpp(canonical(type_code="384")))
    assert text(output, f"{DATA}/Type") == "384"
    assert any("Type" in error for error in errors(output))


def test_an_invoice_without_its_pdf_is_refused() -> None:
    output = etree.fromstring(cpp(canonical(attachments=())))
    assert output.find(f"{INVOICE}/PJ") is None
    assert errors(output)


# -- d) round trip ---------------------------------------------------------------------


def test_every_business_term_reads_back_as_the_canonical_input() -> None:
    source = canonical()
    given = etree.fromstring(source)
    output = etree.fromstring(cpp(source))

    def value(path: str) -> str:
        found = given.find(path, NS)
        assert found is not None, path
        return found.text or ""

    assert text(output, f"{DATA}/Id") == value("c:InvoiceNumber")
    assert text(output, f"{DATA}/DateEmissionFacture") == value("c:IssueDate")
    assert text(output, f"{DATA}/Type") == value("c:InvoiceTypeCode")
    assert text(output, f"{DATA}/Cadre") == value("c:BusinessProcessType")
    assert text(output, f"{DATA}/Devise") == value("c:CurrencyCode")
    assert text(output, f"{DATA}/Engagement/NumeroMarche") == value("c:ContractReference")
    assert text(output, f"{DATA}/Engagement/NumeroEngagement") == value("c:PurchaseOrderReference")

    supplier, buyer = f"{INVOICE}/Fournisseur", f"{INVOICE}/Debiteur"
    assert text(output, f"{supplier}/TypeIdentifiant") == "1"
    assert text(output, f"{supplier}/Identifiant") == value("c:Seller/c:Siret")
    assert text(output, f"{supplier}/RaisonSociale") == value("c:Seller/c:Name")
    assert text(output, f"{supplier}/CodePays") == value("c:Seller/c:PostalAddress/c:CountryCode")
    assert text(output, f"{supplier}/ReferenceBancaire/Compte") == value(
        "c:PaymentInstructions/c:PaymentAccountIdentifier"
    )
    assert output.find(f"{supplier}/ReferenceBancaire").get("Type") == "IBAN"
    assert text(output, f"{buyer}/TypeIdentifiant") == "1"
    assert text(output, f"{buyer}/Identifiant") == value("c:Buyer/c:Siret")
    assert text(output, f"{buyer}/Nom") == value("c:Buyer/c:Name")
    assert text(output, f"{buyer}/CodeService") == value("c:BuyerReference")

    totals = {
        "MontantHT": "InvoiceTotalAmountWithoutVat",
        "MontantTTC": "InvoiceTotalAmountWithVat",
        "MontantNetAPayer": "AmountDueForPayment",
    }
    for cpp_name, canonical_name in totals.items():
        assert Decimal(text(output, f"{DATA}/Montants/{cpp_name}")) == Decimal(
            value(f"c:DocumentTotals/c:{canonical_name}")
        )
    breakdown = [
        tuple(
            Decimal(vat.findtext(f"c:{name}", namespaces=NS))
            for name in ("VatCategoryRate", "VatCategoryTaxableAmount", "VatCategoryTaxAmount")
        )
        for vat in given.findall("c:VatBreakdown", NS)
    ]
    assert len(breakdown) == 2
    assert [
        tuple(Decimal(tva.findtext(name)) for name in ("Taux", "BaseHt", "MontantTVA"))
        for tva in output.findall(f"{DATA}/TVAS/TVA")
    ] == breakdown

    # The invoice PDF first (TypePJ 01), whatever the canonical order; numbered from 1.
    given_documents = {
        document.get("role"): document.find("c:AttachedDocument", NS)
        for document in given.findall("c:AdditionalSupportingDocument", NS)
    }
    attachments = output.findall(f"{INVOICE}/PJ")
    assert [pj.get("NumOrdre") for pj in attachments] == ["1", "2"]
    for pj, role, type_pj, content in zip(
        attachments, ("invoice", "supporting"), ("01", "02"), (PDF, CSV), strict=True
    ):
        attached = given_documents[role]
        assert text(pj, "TypePJ") == type_pj
        assert text(pj, "NomPJ") == attached.get("filename")
        assert text(pj, "MimeTypePJ") == attached.get("mimeCode")
        assert base64.b64decode(text(pj, "Contenu"), validate=True) == content


def test_the_envelope_defaults() -> None:
    output = etree.fromstring(cpp(canonical()))
    parameters = {
        parameter.findtext("Code"): (parameter.get("NumOrdre"), parameter.findtext("Valeurparametre"))
        for parameter in output.findall(f"{PARAMETERS}/ParametreIndiv")
    }
    assert parameters == {"DtPrd": ("0001", "2026-11-02"), "IdFlx": ("0002", "FAC-2026-0042")}
    assert text(output, f"{PARTNERS}/Recepteur/Id") == "CPP001"
    assert text(output, f"{PARTNERS}/Emetteur/Id") == PARTNER
    assert output.get(f"{{{XSI}}}noNamespaceSchemaLocation") == "CPPFactureMixte_V1.14.xsd"
    assert output.find("CPPFactures").get("Compteur") == "1"
    assert output.find(f"{DATA}/Lignes") is None


def test_the_parameters_reach_the_document() -> None:
    raw = cpp(
        canonical(),
        **{
            "interface-code": "FSO1110A",
            "production-date": "2026-11-05",
            "flow-id": "AAA1231110000000000000042",
            "recepteur-id": "CPP002",
            "schema-location": "",
        },
    )
    assert raw.splitlines()[1] == b'<?xml-stylesheet type="text/xsl" href="FSO1110A.xsl"?>'
    output = etree.fromstring(raw)
    assert texts(output, f"{PARAMETERS}/ParametreIndiv/Valeurparametre") == ["2026-11-05", "AAA1231110000000000000042"]
    assert text(output, f"{PARTNERS}/Recepteur/Id") == "CPP002"
    assert output.get(f"{{{XSI}}}noNamespaceSchemaLocation") is None
    lines = output.findall(f"{DATA}/Lignes/Ligne")
    assert [
        (line.get("NumOrdre"), line.findtext("ReferenceProduit"), line.findtext("MontantHT")) for line in lines
    ] == [
        ("1", "Livres", "50.00"),
        ("2", "Papeterie", "100.00"),
    ]


def test_the_default_interface_is_fso1113a() -> None:
    assert cpp(canonical()).splitlines()[1] == b'<?xml-stylesheet type="text/xsl" href="FSO1113A.xsl"?>'


def test_without_a_partner_code_the_mapping_stops() -> None:
    with pytest.raises(MappingError, match="emetteur-id"):
        transform(mapping_path("canonical-to-cpp.xsl"), canonical(), {})


# -- choices where the format is not public --------------------------------------------


@pytest.mark.parametrize(
    ("untdid", "expected"),
    [
        ("10", "10"),
        ("20", "20"),
        ("30", "30"),
        ("31", "31"),
        ("42", "42"),
        ("48", "48"),
        ("49", "49"),
        ("97", "97"),
        ("58", "30"),
        ("59", "49"),
        ("57", None),
        ("1", None),
        ("ZZZ", None),
    ],
)
def test_payment_means_follow_the_documented_table(untdid: str, expected: str | None) -> None:
    raw = cpp(canonical(payment_means=untdid))
    output = etree.fromstring(raw)
    assert output.findtext(f"{DATA}/ModePaiement/Code") == expected
    if expected is None:
        assert f"UNTDID 4461 code {untdid} has no known CPP code".encode() in raw
    assert errors(output) == []


def test_the_payment_means_table_can_be_overridden() -> None:
    def code(means: str, mapping: str) -> str | None:
        return etree.fromstring(cpp(canonical(payment_means=means), **{"payment-means-map": mapping})).findtext(
            f"{DATA}/ModePaiement/Code"
        )

    assert code("57", "57=01, 58=31") == "01"
    assert code("58", "57=01, 58=31") == "31"
    assert code("30", "57=01, 58=31") == "30"
    assert code("30", "30=") is None
    with pytest.raises(MappingError, match="payment-means-map"):
        code("30", "thirty")


def test_a_credit_note_names_its_invoice_and_no_payment_means() -> None:
    output = etree.fromstring(cpp(canonical(type_code="381", preceding=("FAC-2026-0041", "2026-10-30"))))
    assert text(output, f"{DATA}/Type") == "381"
    assert text(output, f"{DATA}/IdFactureOrigine") == "FAC-2026-0041"
    assert output.find(f"{DATA}/ModePaiement") is None
    assert errors(output) == []


def test_an_attachment_near_the_10_mb_limit_round_trips() -> None:
    """Each attachment may weigh up to 10 MB (DOMAIN.md §1): in base64 that is a text node
    beyond libxml2's default limit, so whoever parses the output needs huge_tree."""
    content = bytes(range(256)) * (8 * 4096)  # 8 MiB
    raw = cpp(canonical(attachments=(("invoice", "big.pdf", "application/pdf", content),)))
    with pytest.raises(etree.XMLSyntaxError, match="XML_PARSE_HUGE"):
        etree.fromstring(raw)
    output = etree.fromstring(raw, HUGE)
    assert errors(output) == []
    assert base64.b64decode(text(output, f"{INVOICE}/PJ/Contenu")) == content
