"""CII D16B output (interface FSO1106A): mapping, validation, sandbox, and the whole CLI path.

The official EN 16931 CII Schematron and the CEN examples are test references read
from ../shared/corpus (DOMAIN.md §4); tests that need them skip when it is absent.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import re
import tarfile
from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree
from saxonche import PyXsltExecutable

from gateway.config import default_config
from gateway.domain import Syntax
from gateway.intake.csv_export import CsvOptions, read_csv_export
from gateway.invoice import ExportedInvoice
from gateway.intake.sample import SUPPLIER_SIRET, write_sample_export
from gateway.mapping import compute_totals, map_invoice
from gateway.mapping.canonical import line_net_amount
from gateway.xml import saxon
from gateway.packaging import build_archive
from gateway.reports import parse_report
from gateway.sandbox import SandboxSettings, process_flow
from gateway.sandbox.directory import SAMPLE_PUBLIC_STRUCTURES, UNLISTED_BUYER_SIRET, PublicStructure
from gateway.sandbox.simulator import KNOWN_INTERFACES
from gateway.validation import Finding, Severity, validate_invoice
from gateway.validation.chorus import party_siret
from gateway.validation.invoice import parse_invoice
from gateway.store import Store
from gateway.validation.xsd import check_xsd
from gateway.validation_gate import ValidationGate, reference_invoice
from gateway.xml.syntax import SYNTAXES
from cli_runner import gateway

NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100",
}
SVRL = "{http://purl.oclc.org/dsdl/svrl}"
CII_ROOT = f"{{{NS['rsm']}}}CrossIndustryInvoice"
AGREEMENT = "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeAgreement"
SETTLEMENT = "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeSettlement"
SUMMATION = f"{SETTLEMENT}/ram:SpecifiedTradeSettlementHeaderMonetarySummation"
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


# -- helpers ---------------------------------------------------------------------------


def sample_invoices(tmp_path: Path, count: int) -> list[ExportedInvoice]:
    path = tmp_path / "export.csv"
    write_sample_export(path, count, with_errors=False)
    invoices = [r for r in read_csv_export(path, CsvOptions()) if isinstance(r, ExportedInvoice)]
    assert len(invoices) == count
    return invoices


def cii(invoice: ExportedInvoice) -> bytes:
    return map_invoice(invoice, Syntax.CII)


def text(root: etree._Element, path: str) -> str:
    found = root.find(path, NS)
    assert found is not None, path
    return (found.text or "").strip()


def date_102(element: etree._Element) -> date:
    string = element.find("udt:DateTimeString", NS)
    assert string is not None and string.get("format") == "102"
    return datetime.strptime(string.text or "", "%Y%m%d").date()


def with_text(payload: bytes, path: str, value: str) -> bytes:
    """``payload`` with the text of the element at ``path`` replaced."""
    root = etree.fromstring(payload)
    element = root.find(path, NS)
    assert element is not None, path
    element.text = value
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@pytest.fixture
def schematron(corpus: Path) -> PyXsltExecutable:
    path = corpus / "schematron" / "en16931" / "cii" / "xslt" / "EN16931-CII-validation.xslt"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return saxon.compile_stylesheet(path)


def failed_asserts(executable: PyXsltExecutable, payload: bytes) -> list[tuple[str, str, str]]:
    """(id, flag, text) of every failed assert; an SVRL that did not really run fails the test."""
    with saxon.exclusive() as processor:
        node = processor.parse_xml(xml_text=payload.decode("utf-8"))
        output = executable.transform_to_string(xdm_node=node)
    assert output, "the Schematron produced nothing"
    svrl = etree.fromstring(output.encode("utf-8"))
    assert svrl.tag == f"{SVRL}schematron-output"
    # A Schematron that matched nothing would report no failure: demand fired rules.
    assert len(svrl.findall(f"{SVRL}fired-rule")) > 10
    return [
        (fa.get("id") or "", fa.get("flag") or "", " ".join("".join(fa.itertext()).split()))
        for fa in svrl.iter(f"{SVRL}failed-assert")
    ]


def fatal_ids(executable: PyXsltExecutable, payload: bytes) -> set[str]:
    return {rule for rule, flag, _ in failed_asserts(executable, payload) if flag == "fatal"}


# -- (a) produced CII is valid ---------------------------------------------------------


def test_cii_is_registered_with_its_interface() -> None:
    assert SYNTAXES[Syntax.CII].interface_code == "FSO1106A"
    assert SYNTAXES[Syntax.CII].syntaxe_flux == "IN_DP_E1_CII_16B"
    assert "FSO1106A" in KNOWN_INTERFACES


def test_sample_cii_passes_validation_and_the_en16931_schematron(tmp_path: Path, schematron: PyXsltExecutable) -> None:
    for invoice in sample_invoices(tmp_path, 15):
        payload = cii(invoice)
        assert validate_invoice(payload) == [], invoice.number
        failures = failed_asserts(schematron, payload)
        assert [f for f in failures if f[1] == "fatal"] == [], (invoice.number, failures)


@pytest.mark.parametrize("type_code", ["380", "381"])
def test_every_chorus_term_reaches_the_cii_and_passes_en16931(
    type_code: str, tmp_path: Path, schematron: PyXsltExecutable
) -> None:
    """Contract (BT-12), preceding invoice (BG-3), attachments (BG-24) and exemption reasons
    (BT-120/121) of the fullest edge invoice, as an invoice and as a credit note."""
    from test_mapping import EDGE_ROWS, INVOICE_PDF, TIMESHEET, write_csv

    path = write_csv(tmp_path / "edge.csv", EDGE_ROWS[:6])
    (tmp_path / "attachments").mkdir()
    (tmp_path / "attachments" / "E-FULL-1.pdf").write_bytes(INVOICE_PDF)
    (tmp_path / "attachments" / "releve-heures.csv").write_bytes(TIMESHEET)
    [invoice] = list(read_csv_export(path, CsvOptions()))
    assert isinstance(invoice, ExportedInvoice), invoice
    invoice = dataclasses.replace(invoice, type_code=type_code)
    if type_code == "381":  # Chorus Pro takes no payment means on a credit note (DOMAIN.md §3)
        invoice = dataclasses.replace(invoice, payment_means=None, iban=None)
    payload = cii(invoice)
    assert validate_invoice(payload) == []
    assert [f for f in failed_asserts(schematron, payload) if f[1] == "fatal"] == []
    root = etree.fromstring(payload)
    agreement = "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeAgreement"
    settlement = "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeSettlement"
    assert root.xpath("string(rsm:ExchangedDocument/ram:TypeCode)", namespaces=NS) == type_code
    assert root.xpath(f"string({agreement}/ram:ContractReferencedDocument/ram:IssuerAssignedID)",
                      namespaces=NS) == "MARCHE-2026-17"
    preceding = root.xpath(f"{settlement}/ram:InvoiceReferencedDocument", namespaces=NS)[0]
    assert preceding.xpath("string(ram:IssuerAssignedID)", namespaces=NS) == "F-2026-0999"
    assert preceding.xpath("string(ram:FormattedIssueDateTime/*)", namespaces=NS) == "20260930"
    documents = root.xpath(f"{agreement}/ram:AdditionalReferencedDocument/ram:AttachmentBinaryObject", namespaces=NS)
    assert [(d.get("filename"), d.get("mimeCode"), base64.b64decode(d.text)) for d in documents] == [
        ("E-FULL-1.pdf", "application/pdf", INVOICE_PDF),
        ("releve-heures.csv", "text/csv", TIMESHEET),
    ]
    exempt = root.xpath(f"{settlement}/ram:ApplicableTradeTax[ram:CategoryCode='E']", namespaces=NS)[0]
    assert exempt.xpath("string(ram:ExemptionReason)", namespaces=NS) == "Exonération, article 261-4-4° du CGI"
    assert exempt.xpath("string(ram:ExemptionReasonCode)", namespaces=NS) == "VATEX-EU-132"


def test_cii_document_header_carries_the_chorus_data(tmp_path: Path) -> None:
    invoice = dataclasses.replace(sample_invoices(tmp_path, 1)[0], service_code="SERV-42")
    payload = cii(invoice)
    assert b'<?xml-stylesheet type="text/xsl" href="FSO1106A.xsl"?>' in payload
    root = etree.fromstring(payload)
    assert root.tag == CII_ROOT
    context = "rsm:ExchangedDocumentContext"
    assert text(root, f"{context}/ram:BusinessProcessSpecifiedDocumentContextParameter/ram:ID") == "A1"
    assert text(root, f"{context}/ram:GuidelineSpecifiedDocumentContextParameter/ram:ID") == "urn:cen.eu:en16931:2017"
    assert text(root, f"{AGREEMENT}/ram:BuyerReference") == "SERV-42"
    assert text(root, f"{AGREEMENT}/ram:BuyerOrderReferencedDocument/ram:IssuerAssignedID") == "EJ1000000"
    seller = root.find(f"{AGREEMENT}/ram:SellerTradeParty", NS)
    assert seller is not None
    assert seller.find("ram:SpecifiedTaxRegistration/ram:ID", NS).get("schemeID") == "VA"  # type: ignore[union-attr]
    means = f"{SETTLEMENT}/ram:SpecifiedTradeSettlementPaymentMeans"
    assert text(root, f"{means}/ram:TypeCode") == invoice.payment_means
    assert text(root, f"{means}/ram:PayeePartyCreditorFinancialAccount/ram:IBANID") == invoice.iban


def test_produced_cii_is_valid_against_the_official_d16b_xsd(tmp_path: Path, corpus: Path) -> None:
    """The product's XSD is a Factur-X profile; the UN/CEFACT D16B XSD must agree."""
    xsd = corpus / "schemas/cii-d16b/uncoupled/CII/uncefact/data/standard/CrossIndustryInvoice_100pD16B.xsd"
    schema = etree.XMLSchema(etree.parse(str(xsd)))
    for invoice in sample_invoices(tmp_path, 5):
        document = etree.fromstring(cii(invoice))
        assert schema.validate(document), (invoice.number, [e.message for e in schema.error_log])


# -- (b) the Schematron is live --------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        (f"{SUMMATION}/ram:LineTotalAmount", "BR-CO-10"),
        (f"{SUMMATION}/ram:TaxBasisTotalAmount", "BR-CO-13"),
        (f"{SUMMATION}/ram:TaxTotalAmount", "BR-CO-14"),
        (f"{SUMMATION}/ram:GrandTotalAmount", "BR-CO-15"),
        (f"{SUMMATION}/ram:DuePayableAmount", "BR-CO-16"),
    ],
)
def test_a_broken_total_fires_its_business_rule(
    tmp_path: Path, schematron: PyXsltExecutable, path: str, rule: str
) -> None:
    payload = cii(sample_invoices(tmp_path, 1)[0])
    assert fatal_ids(schematron, payload) == set()
    root = etree.fromstring(payload)
    broken = with_text(payload, path, str(Decimal(text(root, path)) + Decimal("1.00")))
    assert rule in fatal_ids(schematron, broken)


# -- (c) round trip --------------------------------------------------------------------


def test_round_trip_reads_back_the_canonical_invoice(tmp_path: Path) -> None:
    for invoice in sample_invoices(tmp_path, 8):
        root = etree.fromstring(cii(invoice))
        document = "rsm:ExchangedDocument"
        assert text(root, f"{document}/ram:ID") == invoice.number
        assert text(root, f"{document}/ram:TypeCode") == invoice.type_code
        assert date_102(root.find(f"{document}/ram:IssueDateTime", NS)) == invoice.issue_date  # type: ignore[arg-type]
        due = root.find(f"{SETTLEMENT}/ram:SpecifiedTradePaymentTerms/ram:DueDateDateTime", NS)
        assert date_102(due) == invoice.due_date  # type: ignore[arg-type]
        assert text(root, f"{SETTLEMENT}/ram:InvoiceCurrencyCode") == invoice.currency

        for element, party in (("ram:SellerTradeParty", invoice.supplier), ("ram:BuyerTradeParty", invoice.buyer)):
            base = f"{AGREEMENT}/{element}"
            assert text(root, f"{base}/ram:Name") == party.name
            assert text(root, f"{base}/ram:GlobalID[@schemeID='0009']") == party.siret
            assert text(root, f"{base}/ram:SpecifiedLegalOrganization/ram:ID[@schemeID='0009']") == party.siret
            assert text(root, f"{base}/ram:PostalTradeAddress/ram:CountryID") == party.country
        tree = root.getroottree()
        assert (party_siret(tree, "supplier"), party_siret(tree, "buyer")) == (
            invoice.supplier.siret,
            invoice.buyer.siret,
        )

        lines = root.findall("rsm:SupplyChainTradeTransaction/ram:IncludedSupplyChainTradeLineItem", NS)
        assert len(lines) == len(invoice.lines)
        for element, line in zip(lines, invoice.lines, strict=True):
            quantity = element.find("ram:SpecifiedLineTradeDelivery/ram:BilledQuantity", NS)
            assert quantity is not None and quantity.get("unitCode") == line.unit_code
            assert Decimal(quantity.text or "") == line.quantity
            assert text(element, "ram:AssociatedDocumentLineDocument/ram:LineID") == line.line_id
            assert text(element, "ram:SpecifiedTradeProduct/ram:Name") == line.item_name
            price = "ram:SpecifiedLineTradeAgreement/ram:NetPriceProductTradePrice/ram:ChargeAmount"
            assert Decimal(text(element, price)) == line.unit_price
            settlement = "ram:SpecifiedLineTradeSettlement"
            net = f"{settlement}/ram:SpecifiedTradeSettlementLineMonetarySummation/ram:LineTotalAmount"
            assert Decimal(text(element, net)) == line_net_amount(line)
            assert text(element, f"{settlement}/ram:ApplicableTradeTax/ram:CategoryCode") == line.vat_category
            rate = f"{settlement}/ram:ApplicableTradeTax/ram:RateApplicablePercent"
            assert Decimal(text(element, rate)) == line.vat_rate

        totals = compute_totals(invoice.lines)
        breakdown = [
            (
                text(tax, "ram:CategoryCode"),
                Decimal(text(tax, "ram:RateApplicablePercent")),
                Decimal(text(tax, "ram:BasisAmount")),
                Decimal(text(tax, "ram:CalculatedAmount")),
            )
            for tax in root.findall(f"{SETTLEMENT}/ram:ApplicableTradeTax", NS)
        ]
        assert breakdown == [(b.category, b.rate, b.taxable_amount, b.tax_amount) for b in totals.breakdown]
        assert Decimal(text(root, f"{SUMMATION}/ram:LineTotalAmount")) == totals.sum_of_line_net
        assert Decimal(text(root, f"{SUMMATION}/ram:TaxBasisTotalAmount")) == totals.total_without_vat
        assert Decimal(text(root, f"{SUMMATION}/ram:TaxTotalAmount[@currencyID='EUR']")) == totals.total_vat
        assert Decimal(text(root, f"{SUMMATION}/ram:GrandTotalAmount")) == totals.total_with_vat
        assert Decimal(text(root, f"{SUMMATION}/ram:DuePayableAmount")) == totals.amount_due


# -- (d) the XSD layer -----------------------------------------------------------------


def test_every_cen_cii_example_passes_the_xsd_layer(corpus: Path) -> None:
    examples = sorted((corpus / "examples" / "cii" / "cen-en16931").glob("*.xml"))
    assert len(examples) == 15
    for example in examples:
        parsed = parse_invoice(example.read_bytes())
        assert not isinstance(parsed, Finding), example.name
        assert check_xsd(parsed) == [], example.name


def test_the_cii_xsd_layer_refuses_elements_out_of_order(tmp_path: Path) -> None:
    root = etree.fromstring(cii(sample_invoices(tmp_path, 1)[0]))
    context = root.find("rsm:ExchangedDocumentContext", NS)
    root.remove(context)  # type: ignore[arg-type]
    root.insert(1, context)  # type: ignore[arg-type]
    findings = validate_invoice(etree.tostring(root))
    assert findings and {(f.layer, f.severity) for f in findings} == {("xsd", Severity.FATAL)}


def test_the_gateways_own_cii_is_held_to_the_en16931_profile_xsd(tmp_path: Path) -> None:
    """What the gateway writes is checked against the Factur-X EN16931 profile XSD, even
    though a file given to `gateway validate` gets the wider EXTENDED one: an EXTENDED-only
    element in the gateway's own CII stops the invoice at the XSD layer of the pipeline."""
    root = etree.fromstring(reference_invoice(Syntax.CII))
    context = root.find("rsm:ExchangedDocumentContext", NS)
    assert context is not None
    indicator = etree.SubElement(context, f"{{{NS['ram']}}}TestIndicator")
    etree.SubElement(indicator, f"{{{NS['udt']}}}Indicator").text = "false"
    context.insert(0, indicator)  # EXTENDED allows it first in the context; EN16931 does not know it
    payload = etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    config = default_config(tmp_path / "data")
    channel = dataclasses.replace(config.channels[0], syntax=Syntax.CII)
    config = dataclasses.replace(config, channels=(channel,))
    store = Store.open(config.database_url)
    gate = ValidationGate(config, store)
    try:
        with store.transaction() as tx:
            own = gate.validate(tx, channel, payload)
        received = gate.worker().schema_layers(payload, None, own_output=False)
        assert gate.worker().starts == 1  # the choice travels with the document, one worker serves both
    finally:
        gate.close()
        store.close()
    assert [(f.layer, f.severity) for f in own.findings] == [("xsd", Severity.FATAL)]
    assert "TestIndicator" in own.findings[0].message
    assert [a["name"] for a in own.artefacts] == ["Factur-X_EN16931.xsd"]
    assert received.findings == [] and [a["name"] for a in received.artefacts] == ["Factur-X_EXTENDED.xsd"]


# -- Chorus Pro rules over CII ---------------------------------------------------------


def test_a_bad_supplier_siret_in_cii_is_an_error_at_its_cii_location(tmp_path: Path) -> None:
    invoice = sample_invoices(tmp_path, 1)[0]
    bad = SUPPLIER_SIRET[:-1] + str((int(SUPPLIER_SIRET[-1]) + 1) % 10)
    payload = cii(dataclasses.replace(invoice, supplier=dataclasses.replace(invoice.supplier, siret=bad)))
    [finding] = validate_invoice(payload)
    assert (finding.layer, finding.rule_id, finding.severity) == ("chorus", "CHORUS-SIRET-SUPPLIER", Severity.ERROR)
    assert finding.location == f"/*/{AGREEMENT}/ram:SellerTradeParty/ram:GlobalID"
    assert bad in finding.message


def test_the_buyer_siret_is_read_from_the_legal_organization_when_global_id_is_absent(tmp_path: Path) -> None:
    root = etree.fromstring(cii(sample_invoices(tmp_path, 1)[0]))
    buyer = root.find(f"{AGREEMENT}/ram:BuyerTradeParty", NS)
    assert buyer is not None
    buyer.remove(buyer.find("ram:GlobalID", NS))  # type: ignore[arg-type]
    assert party_siret(root.getroottree(), "buyer") == SAMPLE_PUBLIC_STRUCTURES[0].siret
    buyer.remove(buyer.find("ram:SpecifiedLegalOrganization", NS))  # type: ignore[arg-type]
    findings = validate_invoice(etree.tostring(root))
    assert [(f.rule_id, f.location, f.message) for f in findings] == [
        ("CHORUS-SIRET-BUYER", f"/*/{AGREEMENT}/ram:BuyerTradeParty/ram:GlobalID", "the buyer SIRET is missing")
    ]


# -- the sandbox reads CII -------------------------------------------------------------


def cii_flow_name(counter: int) -> str:
    return f"FSO1106A_AAA123_AAA1231106{counter:015d}.tar.gz"


def test_the_sandbox_integrates_and_rejects_cii_invoices(tmp_path: Path) -> None:
    first, second, third, fourth = sample_invoices(tmp_path, 4)
    unknown_buyer = dataclasses.replace(third, buyer=dataclasses.replace(third.buyer, siret=UNLISTED_BUYER_SIRET))
    members = [
        ("1.xml", cii(first)),
        ("2.xml", cii(second)),
        ("3.xml", cii(unknown_buyer)),
        ("4.xml", map_invoice(fourth, Syntax.UBL)),  # a UBL invoice has no place in a CII flow
    ]
    outcome = process_flow(cii_flow_name(1), build_archive(members), settings=SandboxSettings(), now=NOW)
    assert outcome.status_code == "96"
    assert [(i.invoice_number, i.supplier_siret, i.buyer_siret, i.issue_date) for i in outcome.integrated] == [
        (inv.number, inv.supplier.siret, inv.buyer.siret, inv.issue_date) for inv in (first, second)
    ]
    assert [(r.invoice_number, r.code) for r in outcome.rejected] == [
        (third.number, "ANNUAIRE"),
        (fourth.number, "INTERFACE"),
    ]
    assert "FSO1106A" in outcome.rejected[1].reason
    names = [name for name, _ in outcome.files]
    assert names[0].startswith("CSO1106A_AAA123_") and names[1].startswith("FEN1201A_")
    [status] = parse_report(outcome.files[0][1]).flow_statuses
    assert status.code == "96"

    # Sent again, the integrated ones are duplicates: the key is read from the CII.
    again = process_flow(
        cii_flow_name(2),
        build_archive(members[:1]),
        settings=SandboxSettings(),
        now=NOW,
        already_integrated=outcome.integrated_keys,
    )
    assert [(r.invoice_number, r.code) for r in again.rejected] == [(first.number, "DOUBLON")]


def test_the_sandbox_reads_the_cii_service_code(tmp_path: Path) -> None:
    invoice = sample_invoices(tmp_path, 1)[0]
    directory = (PublicStructure(invoice.buyer.siret, "Service exigé", service_required=True),)
    settings = SandboxSettings(directory=directory)
    without = process_flow(cii_flow_name(1), build_archive([("1.xml", cii(invoice))]), settings=settings, now=NOW)
    [rejected] = without.rejected
    assert rejected.code == "CODE_SERVICE" and "ram:BuyerReference" in rejected.reason
    with_code = cii(dataclasses.replace(invoice, service_code="SERV-1"))
    assert process_flow(cii_flow_name(2), build_archive([("1.xml", with_code)]), settings=settings, now=NOW).integrated


def test_a_cii_invoice_in_a_ubl_flow_is_rejected(tmp_path: Path) -> None:
    invoice = sample_invoices(tmp_path, 1)[0]
    name = "FSO1100A_AAA123_AAA1231100000000000000001.tar.gz"
    outcome = process_flow(name, build_archive([("1.xml", cii(invoice))]), settings=SandboxSettings(), now=NOW)
    assert outcome.status_code == "93"
    assert [(r.invoice_number, r.code) for r in outcome.rejected] == [(invoice.number, "INTERFACE")]


# -- (e) the whole path through the CLI ------------------------------------------------



def test_run_once_sends_a_cii_flow_through_the_sandbox(tmp_path: Path, corpus: Path) -> None:
    """Without a CII EN 16931 rule set `config check` says what to download and the line
    to run (exit 1) and the channel takes in nothing (fail closed, with an alert); once
    the CEN release is registered the check passes and the same export goes through."""
    env = {"GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'g.db'}"}
    site = tmp_path / "site"
    gateway("init", str(site), env=env)
    config = site / "gateway.toml"
    original = config.read_text()
    changed, syntaxes = re.subn(r'(?m)^syntax\s*=\s*"ubl"', 'syntax = "cii"', original)
    changed, settles = re.subn(r"(?m)^settle_seconds\s*=\s*\d+", "settle_seconds = 0", changed)
    assert (syntaxes, settles) == (1, 1), "the starter configuration changed shape"
    config.write_text(changed)
    manifest = write_sample_export(site / "inbox" / "erp" / "export.csv", 12, with_errors=True, number_prefix="CII")

    checked = gateway("--config", str(config), "config", "check", env=env, check=False)
    assert checked.returncode == 1
    [problem] = checked.stderr.splitlines()
    assert problem.startswith("error: channel erp (CII") and "no EN 16931 rule set for CII" in problem
    for part in ("github.com/ConnectingEurope/eInvoicing-EN16931/releases/tag/validation-1.3.16",
                 "en16931-cii-1.3.16.zip", "unzip en16931-cii-1.3.16.zip -d en16931-cii-1.3.16",
                 "xslt/ directory holds EN16931-CII-validation.xslt",
                 f"`gateway --config {config} rules add en16931-cii-1.3.16/xslt`"):
        assert part in problem, part

    blocked = gateway("--config", str(config), "--log-format", "json", "run", "--once", env=env, check=False)
    assert blocked.returncode == 4  # a channel halted
    summary = json.loads(blocked.stdout)
    assert list(summary["channels_halted"]) == ["erp"]
    assert summary["files"] == {} and summary["flows_sent"] == []
    [alert] = [json.loads(line) for line in blocked.stderr.splitlines() if "alert.validator_unhealthy" in line]
    assert alert["channel"] == "erp" and "no EN 16931 rule set for CII" in alert["reason"]
    assert (site / "inbox" / "erp" / "export.csv").is_file()  # waiting, not lost

    added = gateway("--config", str(config), "rules", "add", str(corpus / "schematron/en16931/cii/xslt"), env=env)
    assert "registered en16931 for CII" in added.stdout
    assert "configuration OK" in gateway("--config", str(config), "config", "check", env=env).stdout
    summary = json.loads(gateway("--config", str(config), "run", "--once", env=env).stdout)
    assert len(summary["flows_sent"]) == 1

    [flow] = json.loads(gateway("--config", str(config), "flows", "list", "--json", env=env).stdout)
    assert flow["interface"] == "FSO1106A" and flow["file_name"].startswith("FSO1106A_")
    cen_rules = corpus / "schematron/en16931/cii/xslt/EN16931-CII-validation.xslt"
    recorded = {a["kind"]: a for a in flow["validated_with"]}
    assert set(recorded) == {"xsd", "schematron:en16931"}
    assert recorded["xsd"]["name"] == "Factur-X_EN16931.xsd" and len(recorded["xsd"]["sha256"]) == 64
    assert recorded["schematron:en16931"]["name"] == cen_rules.name
    assert recorded["schematron:en16931"]["sha256"] == hashlib.sha256(cen_rules.read_bytes()).hexdigest()
    assert recorded["schematron:en16931"]["version"] == "1.3.16"
    assert flow["status"] == "partially_integrated"
    fates = Counter(manifest.expected.values())
    assert (flow["integrated"], flow["rejected"]) == (fates["integrated"], fates["rejected"])

    invoices = json.loads(gateway("--config", str(config), "invoices", "list", "--json", env=env).stdout)
    by_number = {i["invoice_number"]: i for i in invoices if i["invoice_number"]}
    for number, fate in manifest.expected.items():
        assert by_number[number]["status"] == fate, (number, by_number[number]["reason"])
    [bad_siret] = [n for n, mistake in manifest.planted.items() if mistake == "bad supplier SIRET"]
    assert "CHORUS-SIRET-SUPPLIER" in by_number[bad_siret]["reason"]
    assert "ram:SellerTradeParty" in by_number[bad_siret]["reason"]

    # What left for "Chorus Pro" is CII, one document per invoice.
    archive = next((site / "flows").glob("FSO1106A_*.tar.gz")).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        roots = {etree.fromstring(tar.extractfile(m).read()).tag for m in tar.getmembers()}  # type: ignore[union-attr]
    assert roots == {CII_ROOT}
