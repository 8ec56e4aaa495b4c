"""The CSV ERP export reader (gateway/intake/csv_export.py) against docs/inputs.md.

Line numbers are physical lines of the file, the header being line 1.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import tarfile
import tomllib
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.config import STARTER_CONFIG, load_config, write_starter
from gateway.errors import ConfigError, InputError
from gateway.intake.csv_export import (
    ALL_FIELDS,
    REQUIRED_COLUMNS,
    CsvOptions,
    ExportedInvoice,
    RejectedRecord,
    read_csv_export,
)
from gateway.mapping.canonical import compute_totals, line_net_amount
from gateway.store import Store
from cli_runner import gateway

PROJECT = Path(__file__).resolve().parent.parent
INPUTS_DOC = PROJECT / "docs" / "inputs.md"

SUPPLIER = "40483304800022"  # Luhn-valid, as in gateway/intake/sample.py
BAD_SUPPLIER = "40483304800023"  # the same with a wrong Luhn key
BUYER = "11000000700010"  # in the sandbox's directory of public structures
SUPPLIER_VAT = "FR" + f"{(12 + 3 * (404833048 % 97)) % 97:02d}" + "404833048"

COLUMNS = (
    "invoice_number",
    "issue_date",
    "type_code",
    "currency",
    "due_date",
    "cadre",
    "supplier_siret",
    "supplier_name",
    "supplier_vat",
    "supplier_country",
    "buyer_siret",
    "buyer_name",
    "line_id",
    "item_name",
    "quantity",
    "unit_price",
    "vat_category",
    "vat_rate",
    "vat_exemption_reason",
    "vat_exemption_code",
    "delivery_date",
    "deliver_to_country",
    "payment_means",
    "iban",
    "preceding_invoice",
    "preceding_invoice_date",
    "invoice_pdf",
    "attachments",
    "total_without_vat",
    "total_vat",
    "total_with_vat",
)


def row(number: str, delimiter: str = ";", **values: str) -> str:
    """One CSV row of COLUMNS: a valid line of invoice ``number`` unless told otherwise."""
    base = {
        "invoice_number": number,
        "issue_date": "2026-11-02",
        "supplier_siret": SUPPLIER,
        "supplier_name": "Fournitures Exemplaires SAS",
        # EN 16931 BR-S-02: standard-rated lines need the seller's VAT number.
        "supplier_vat": SUPPLIER_VAT,
        "buyer_siret": BUYER,
        "buyer_name": "Ministère de l'Exemple",
        "item_name": "Ramettes papier A4",
        "quantity": "2",
        "unit_price": "4.15",
        "vat_rate": "20",
    }
    base.update(values)
    return delimiter.join(base.get(column, "") for column in COLUMNS)


HEADER = ";".join(COLUMNS)


def csv_text(*rows: str, header: str = HEADER) -> str:
    return "\n".join((header, *rows)) + "\n"


def read_all(path: Path, options: CsvOptions | None = None) -> list[ExportedInvoice | RejectedRecord]:
    return list(read_csv_export(path, options or CsvOptions()))


def where(record: RejectedRecord) -> list[tuple[int | None, str | None]]:
    return [(error.line, error.field) for error in record.errors]


# -- the documentation --------------------------------------------------------------


def doc_block(language: str) -> str:
    """The one fenced block of ``language`` in docs/inputs.md."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```$", INPUTS_DOC.read_text(encoding="utf-8"), re.M | re.S)
    assert len(blocks) == 1, f"docs/inputs.md should hold exactly one ```{language} block"
    return blocks[0]


def test_the_worked_example_of_the_documentation_reads_as_it_says(tmp_path: Path) -> None:
    """The CSV of docs/inputs.md gives the invoices, defaults and totals the page states."""
    export = tmp_path / "example.csv"
    export.write_text(doc_block("csv"), encoding="utf-8")
    first, second = read_all(export)

    assert isinstance(first, ExportedInvoice), first
    assert (first.number, first.first_line, first.supplier_siret, first.buyer_siret) == (
        "F-2026-000101",
        2,
        SUPPLIER,
        BUYER,
    )
    assert [(line.line_id, line.source_line, line.vat_rate) for line in first.lines] == [
        ("1", 2, Decimal("20")),
        ("2", 3, Decimal("5.5")),
    ]
    assert first.buyer.name == "Ministère de l'Exemple"
    assert first.due_date == date(2026, 12, 2) and first.commitment_number == "EJ1000101"

    assert isinstance(second, ExportedInvoice), second
    assert (second.number, second.first_line, second.issue_date) == ("F-2026-000102", 4, date(2026, 11, 3))
    # The empty fields take the defaults the page announces.
    assert (second.type_code, second.currency, second.cadre, second.due_date) == ("380", "EUR", "A1", None)
    [line] = second.lines
    assert (line.line_id, line.vat_category, line.unit_code, line.quantity, line.unit_price) == (
        "1",
        "S",
        "LTR",
        Decimal("50"),
        Decimal("1.7489"),
    )

    # The totals the page's table gives are the ones computed.
    assert [line_net_amount(line) for line in first.lines] == [Decimal("450.00"), Decimal("74.70")]
    totals = compute_totals(first.lines)
    assert [(b.rate, b.taxable_amount, b.tax_amount) for b in totals.breakdown] == [
        (Decimal("5.5"), Decimal("74.70"), Decimal("4.11")),
        (Decimal("20"), Decimal("450.00"), Decimal("90.00")),
    ]
    assert (totals.total_without_vat, totals.total_vat, totals.total_with_vat) == (
        Decimal("524.70"),
        Decimal("94.11"),
        Decimal("618.81"),
    )
    totals = compute_totals(second.lines)
    assert line_net_amount(line) == Decimal("87.45")  # 87.445 rounded half up
    assert (totals.total_without_vat, totals.total_vat, totals.total_with_vat) == (
        Decimal("87.45"),
        Decimal("17.49"),
        Decimal("104.94"),
    )
    text = INPUTS_DOC.read_text(encoding="utf-8")
    for amount in ("618.81", "94.11", "4.11", "87.445", "104.94", "17.49"):
        assert amount in text


def test_the_column_tables_of_the_documentation_match_the_reader() -> None:
    """Every column is documented once, and exactly the mandatory ones are marked so."""
    documented = re.findall(r"^\| `(\w+)` \| BT-[^|]+\| (mandatory|optional) \|", INPUTS_DOC.read_text("utf-8"), re.M)
    names = [name for name, _ in documented]
    assert sorted(names) == sorted(ALL_FIELDS) and len(names) == len(set(names))
    assert {name for name, kind in documented if kind == "mandatory"} == set(REQUIRED_COLUMNS)


def test_the_channel_settings_snippet_of_the_documentation_is_accepted(tmp_path: Path) -> None:
    snippet = doc_block("toml")
    settings = tomllib.loads(snippet)["channels"]["erp"]["csv"]
    starter = STARTER_CONFIG.split("[channels.erp]")[0]
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(starter + snippet, encoding="utf-8")
    [channel] = load_config(config_file, env={}).channels
    assert vars(channel.csv) == settings == {
        "delimiter": ";",
        "encoding": "cp1252",
        "decimal": ",",
        "date_format": "%d/%m/%Y",
    }


# -- settings -----------------------------------------------------------------------


def test_french_settings_decimal_comma_cp1252_and_day_first_dates(tmp_path: Path) -> None:
    """cp1252 (Œ, €, — are not Latin-1), ',' decimals and %d/%m/%Y; '.' is then refused."""
    options = CsvOptions(delimiter=";", encoding="cp1252", decimal=",", date_format="%d/%m/%Y")

    def french(number: str, **values: str) -> str:
        base = {"issue_date": "02/11/2026", "due_date": "2/12/2026", "supplier_name": "Société Œuvres & Cie"}
        return row(number, **{**base, "unit_price": "4,15", **values})

    text = csv_text(
        french("F-1", item_name="Café — forfait 5 €", quantity="1,5", unit_price="1234,56", vat_rate="5,5"),
        french("F-1", item_name="Thé", quantity="-2", unit_price="0,000001", vat_rate="20"),
        french("F-2", unit_price="12.50"),
        french("F-3", issue_date="2026-11-02"),
    )
    export = tmp_path / "fr.csv"
    export.write_bytes(text.encode("cp1252"))
    first, second, third = read_all(export, options)

    assert isinstance(first, ExportedInvoice), first
    assert (first.issue_date, first.due_date) == (date(2026, 11, 2), date(2026, 12, 2))
    assert first.supplier.name == "Société Œuvres & Cie"
    assert first.buyer.name == "Ministère de l'Exemple"
    assert [(line.item_name, line.quantity, line.unit_price, line.vat_rate) for line in first.lines] == [
        ("Café — forfait 5 €", Decimal("1.5"), Decimal("1234.56"), Decimal("5.5")),
        ("Thé", Decimal("-2"), Decimal("0.000001"), Decimal("20")),
    ]
    assert isinstance(second, RejectedRecord) and where(second) == [(4, "unit_price")]
    assert "decimal separator ','" in second.errors[0].message
    assert isinstance(third, RejectedRecord) and where(third) == [(5, "issue_date")]
    assert "'%d/%m/%Y'" in third.errors[0].message

    # The same bytes on a UTF-8 channel: the first accented byte stops the file.
    with pytest.raises(InputError) as raised:
        read_all(export)
    assert (raised.value.file, raised.value.line, raised.value.field) == ("fr.csv", 2, None)
    assert "not valid utf-8" in raised.value.message


def test_a_utf8_byte_order_mark_is_skipped_but_not_in_cp1252(tmp_path: Path) -> None:
    export = tmp_path / "bom.csv"
    export.write_bytes(b"\xef\xbb\xbf" + csv_text(row("F-1")).encode("utf-8"))
    [invoice] = read_all(export, CsvOptions(encoding="UTF8"))
    assert isinstance(invoice, ExportedInvoice) and invoice.number == "F-1"
    assert not invoice.original.startswith("\ufeff")

    with pytest.raises(InputError) as raised:
        read_all(export, CsvOptions(encoding="cp1252"))
    assert (raised.value.line, raised.value.field) == (1, "ï»¿invoice_number")


def test_a_comma_delimiter_with_quoted_comma_decimals(tmp_path: Path) -> None:
    header = ",".join(COLUMNS)
    export = tmp_path / "comma.csv"
    export.write_text(
        csv_text(row("F-1", ",", unit_price='"4,15"', item_name='"Papier, ""A4"""'), header=header), "utf-8"
    )
    [invoice] = read_all(export, CsvOptions(delimiter=",", decimal=","))
    assert isinstance(invoice, ExportedInvoice), invoice
    assert (invoice.lines[0].unit_price, invoice.lines[0].item_name) == (Decimal("4.15"), 'Papier, "A4"')


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32-le"])
def test_an_encoding_the_streamed_reader_cannot_cut_is_refused_before_reading(tmp_path: Path, encoding: str) -> None:
    """Lines are cut on the byte 0A before decoding; UTF-16 has none of its own: refuse it
    clearly in the reader, in config check and in gateway map, instead of a line-1 error."""
    export = tmp_path / "unicode.csv"
    export.write_bytes(csv_text(row("F-1")).encode(encoding))
    with pytest.raises(InputError, match="ask the ERP for UTF-8 or cp1252"):
        read_all(export, CsvOptions(encoding=encoding))
    config = tmp_path / "gateway.toml"
    config.write_text(STARTER_CONFIG.replace('encoding = "utf-8"', f'encoding = "{encoding}"'), "utf-8")
    with pytest.raises(ConfigError, match=r"channels\.erp\.csv\.encoding: .*UTF-16"):
        load_config(config, env={})


# -- streaming and grouping ---------------------------------------------------------


def test_invoices_are_yielded_as_the_file_is_read(tmp_path: Path) -> None:
    """The first invoice comes before a bad byte further down has been read."""
    export = tmp_path / "stream.csv"
    export.write_bytes(
        csv_text(row("F-1"), row("F-1", line_id="2"), row("F-2")).encode("utf-8")
        + row("F-3", buyer_name="B", item_name="caf\xe9").encode("cp1252")
        + b"\n"
    )
    records = read_csv_export(export, CsvOptions())
    assert isinstance(records, Iterator)
    first = next(records)
    assert isinstance(first, ExportedInvoice)
    assert (first.number, [line.source_line for line in first.lines]) == ("F-1", [2, 3])
    # F-2 is complete only once the next row is read, and that row cannot be decoded.
    with pytest.raises(InputError) as raised:
        next(records)
    assert (raised.value.line, raised.value.field) == (5, None)
    assert "byte 0xe9" in raised.value.message and "not valid utf-8" in raised.value.message


def test_rows_are_grouped_by_consecutive_supplier_and_number(tmp_path: Path) -> None:
    export = tmp_path / "groups.csv"
    export.write_text(
        csv_text(
            row("F-1"),  # 2
            "",  # 3: blank lines are ignored and do not split an invoice
            ";" * (len(COLUMNS) - 1),  # 4: so are rows of empty cells
            row("F-1", item_name="second line"),  # 5
            row("F-1", supplier_siret="21750001600019"),  # 6: another supplier, another invoice
            row("F-2"),  # 7
            row("F-1"),  # 8: not consecutive with lines 2-5: another invoice
            row("F-3", item_name='"two\nlines"'),  # 9-10: a quoted line break
            row("F-4"),  # 11
            "",
        ),
        "utf-8",
    )
    records = read_all(export)
    assert all(isinstance(record, ExportedInvoice) for record in records), records
    summary = [
        (r.number, r.supplier_siret, r.first_line, [line.source_line for line in r.lines])
        for r in records
        if isinstance(r, ExportedInvoice)
    ]
    assert summary == [
        ("F-1", SUPPLIER, 2, [2, 5]),
        ("F-1", "21750001600019", 6, [6]),
        ("F-2", SUPPLIER, 7, [7]),
        ("F-1", SUPPLIER, 8, [8]),
        ("F-3", SUPPLIER, 9, [9]),
        ("F-4", SUPPLIER, 11, [11]),
    ]
    first = records[0]
    assert isinstance(first, ExportedInvoice)
    assert [line.line_id for line in first.lines] == ["1", "2"]  # line_id defaults to the position
    assert first.original == HEADER + "\n" + row("F-1") + "\n" + row("F-1", item_name="second line") + "\n"


def test_a_file_with_only_its_header_has_no_invoice(tmp_path: Path) -> None:
    export = tmp_path / "header-only.csv"
    export.write_text(csv_text(), "utf-8")
    assert read_all(export) == []


# -- one invoice held back ----------------------------------------------------------

# Each case: the values of the middle invoice's two rows (lines 3 and 4), then the
# (line, field) of each error expected.
INVOICE_ERRORS = {
    "empty mandatory header field": ({"buyer_name": ""}, {"buyer_name": ""}, [(3, "buyer_name")]),
    "empty mandatory line field": ({}, {"item_name": ""}, [(4, "item_name")]),
    "non-numeric quantity": ({"quantity": "deux"}, {}, [(3, "quantity")]),
    "wrong decimal separator": ({}, {"unit_price": "4,15"}, [(4, "unit_price")]),
    "too many decimals": ({"unit_price": "0.1234567"}, {}, [(3, "unit_price")]),
    "too many digits": ({}, {"quantity": "12345678901234567890"}, [(4, "quantity")]),
    "negative unit price": ({"unit_price": "-4.15"}, {}, [(3, "unit_price")]),
    "bad issue date": ({"issue_date": "2026-02-30"}, {"issue_date": "2026-02-30"}, [(3, "issue_date")]),
    "bad due date": ({"due_date": "31/12/2026"}, {"due_date": "31/12/2026"}, [(3, "due_date")]),
    "unknown type code": ({"type_code": "999"}, {"type_code": "999"}, [(3, "type_code")]),
    "bad currency": ({"currency": "EURO"}, {"currency": "EURO"}, [(3, "currency")]),
    "currency not in ISO 4217": ({"currency": "EUX"}, {"currency": "EUX"}, [(3, "currency")]),
    "bad cadre": ({"cadre": "A26"}, {"cadre": "A26"}, [(3, "cadre")]),
    "bad country": ({"supplier_country": "FRA"}, {"supplier_country": "FRA"}, [(3, "supplier_country")]),
    "unknown VAT category": ({}, {"vat_category": "X"}, [(4, "vat_category")]),
    "rate not 0 in an exempt category": ({"vat_category": "E"}, {}, [(3, "vat_rate")]),
    "rate 0 in the standard category": ({}, {"vat_rate": "0"}, [(4, "vat_rate")]),
    "header field differs between rows": ({}, {"buyer_name": "Commune de Démonstration"}, [(4, "buyer_name")]),
    "two problems on two rows": ({"quantity": "x"}, {"issue_date": "2026-11-03"}, [(4, "issue_date"), (3, "quantity")]),
    "number with underscores": ({"quantity": "1_000"}, {}, [(3, "quantity")]),
    "number with an exponent": ({}, {"unit_price": "1E3"}, [(4, "unit_price")]),
    "IBAN without payment means": (*[{"iban": "FR7630006000011234567890189"}] * 2, [(3, "payment_means")]),
    "not a payment means code": (*[{"payment_means": "virement"}] * 2, [(3, "payment_means")]),
    "ERP total differs by a cent": (*[{"total_with_vat": "19.93"}] * 2, [(3, "total_with_vat")]),
    "ERP total not a number": (*[{"total_vat": "3,32"}] * 2, [(3, "total_vat")]),
    "preceding invoice date alone": (*[{"preceding_invoice_date": "2026-10-01"}] * 2, [(3, "preceding_invoice")]),
    "exempt category without reason": ({"vat_category": "E", "vat_rate": "0"}, {}, [(3, "vat_exemption_reason")]),
    "exemption reason on category S": ({}, {"vat_exemption_reason": "Exonéré"}, [(4, "vat_exemption_reason")]),
    "two reasons in one VAT breakdown": (
        {"vat_category": "E", "vat_rate": "0", "vat_exemption_reason": "Article 261"},
        {"vat_category": "E", "vat_rate": "0", "vat_exemption_reason": "Article 262"},
        [(4, "vat_exemption_reason")],
    ),
    "intra-community supply without delivery data": (
        {"vat_category": "K", "vat_rate": "0", "vat_exemption_code": "VATEX-EU-IC"}, {},
        [(3, "delivery_date"), (3, "deliver_to_country")],
    ),
    "not a VATEX code": ({"vat_category": "E", "vat_rate": "0", "vat_exemption_code": "261"}, {},
                         [(3, "vat_exemption_code")]),
    "attachment absent": (*[{"attachments": "absent.pdf"}] * 2, [(3, "attachments")]),
    "attachment outside its directory": (*[{"invoice_pdf": "../secret.pdf"}] * 2, [(3, "invoice_pdf")]),
    "attachment name over 50 characters": (*[{"attachments": "x" * 47 + ".pdf"}] * 2, [(3, "attachments")]),
    "attachment extension refused": (*[{"attachments": "bon.exe"}] * 2, [(3, "attachments")]),
    "invoice PDF that is not a PDF": (*[{"invoice_pdf": "facture.png"}] * 2, [(3, "invoice_pdf")]),
}


def test_an_erp_total_that_differs_names_both_values(tmp_path: Path) -> None:
    """2 × (2 × 4.15) at 20 %: 16.60 + 3.32 = 19.92; the ERP says 19.93."""
    export = tmp_path / "export.csv"
    export.write_text(csv_text(*(row("F-1", line_id=n, total_with_vat="19.93", total_vat="3.32",
                                     total_without_vat="16.60") for n in "12")), "utf-8")
    [rejected] = read_all(export)
    assert isinstance(rejected, RejectedRecord)
    [error] = rejected.errors
    assert error.message == (
        "export.csv, line 2, field 'total_with_vat': the ERP's total 19.93 differs from the computed 19.92 "
        "(lines rounded to the cent, EN 16931 BR-CO-15)"
    )
    export.write_text(export.read_text("utf-8").replace("19.93", "19.92"), "utf-8")
    [invoice] = read_all(export)
    assert isinstance(invoice, ExportedInvoice)


#: Two lines at 20 % whose VAT the ERP computed line by line: 249.48 → 49.90 and
#: 75.48 → 15.10, 65.00, where the rate gives 324.96 × 20 % = 64.992 → 64.99.
ROUNDED = {"total_without_vat": "324.96", "total_vat": "65.00", "total_with_vat": "389.96"}
ROUNDED_LINES = ({"line_id": "1", "quantity": "2", "unit_price": "124.74"},
                 {"line_id": "2", "quantity": "4", "unit_price": "18.87"})


def rounded_csv(path: Path, totals: dict[str, str], *lines: dict[str, str]) -> Path:
    columns = (*COLUMNS, "vat_amount") if any("vat_amount" in values for values in lines) else COLUMNS
    rows = [";".join({**dict(zip(COLUMNS, row("F-1").split(";"), strict=True)), **totals, **values}.get(c, "")
                     for c in columns) for values in lines]
    path.write_text(csv_text(*rows, header=";".join(columns)), encoding="utf-8")
    return path


def test_stated_vat_rounded_line_by_line_is_sent_as_the_erp_states_it(tmp_path: Path) -> None:
    """vat_rounding = "erp" (the default): the ERP's 65.00 is the VAT sent, and the UBL
    passes the gateway's layers and the official EN 16931 rules (BR-CO-17 tolerates a
    breakdown's VAT off by rounding; BR-CO-14/15 then hold on the ERP's amounts)."""
    from test_xml_inputs import gateway_accepts, official_en16931_fatal

    from gateway.mapping import map_invoice

    export = rounded_csv(tmp_path / "export.csv", ROUNDED, *ROUNDED_LINES)
    [invoice] = read_all(export)
    assert isinstance(invoice, ExportedInvoice), invoice
    assert invoice.erp_vat == (("S", Decimal("20"), Decimal("65.00")),)
    ubl = map_invoice(invoice)
    assert b">65.00</cbc:TaxAmount>" in ubl and b">64.99<" not in ubl and b">389.96</cbc:PayableAmount>" in ubl
    assert gateway_accepts(ubl)
    assert official_en16931_fatal(ubl) == []

    # "recompute" keeps the VAT recomputed per rate, and so holds the invoice back.
    [held] = list(read_csv_export(export, CsvOptions(), vat_rounding="recompute"))
    assert isinstance(held, RejectedRecord)
    assert where(held) == [(2, "total_vat"), (2, "total_with_vat")]
    assert held.errors[0].message == ("export.csv, line 2, field 'total_vat': the ERP's total 65.00 differs from the "
                                      "computed 64.99 (lines rounded to the cent, EN 16931 BR-CO-14)")


@pytest.mark.parametrize(
    ("totals", "lines", "expected", "rule"),
    [
        pytest.param({**ROUNDED, "total_vat": "65.03", "total_with_vat": "389.99"}, ROUNDED_LINES,
                     [(2, "total_vat")], "more than rounding its 2 line(s) one by one explains (0.02) "
                     "(EN 16931 BR-CO-17)", id="beyond rounding"),
        pytest.param({**ROUNDED, "total_with_vat": "389.95"}, ROUNDED_LINES, [(2, "total_with_vat")],
                     "the ERP's total 389.95 differs from the computed 389.96 (the VAT of its rates as sent, "
                     "EN 16931 BR-CO-15)", id="total with VAT not the sum"),
        pytest.param(ROUNDED, (ROUNDED_LINES[0], {**ROUNDED_LINES[1], "vat_rate": "10"}), [(2, "total_vat")],
                     "with 2 VAT rates the VAT of each rate is needed to send the ERP's: give vat_amount on each "
                     "line (EN 16931 BR-CO-14)", id="two rates, a total only"),
        pytest.param(ROUNDED, ({**ROUNDED_LINES[0], "vat_amount": "49.90"}, ROUNDED_LINES[1]), [(3, "vat_amount")],
                     "give vat_amount on every line of the invoice, or on none", id="vat_amount on some lines"),
    ],
)
def test_stated_vat_beyond_what_rounding_explains_is_held_back_naming_the_rule(
    tmp_path: Path, totals: dict[str, str], lines: tuple[dict[str, str], ...], expected: list[tuple[int, str]],
    rule: str,
) -> None:
    [held] = read_all(rounded_csv(tmp_path / "export.csv", totals, *lines))
    assert isinstance(held, RejectedRecord)
    assert where(held) == expected
    assert held.errors[0].message.endswith(rule), held.errors[0].message


def test_the_vat_of_each_rate_from_the_lines_vat_amount(tmp_path: Path) -> None:
    """Two rates: each rate's VAT is the sum of its lines' vat_amount, checked on its own."""
    lines = ({**ROUNDED_LINES[0], "vat_amount": "49.90"}, {**ROUNDED_LINES[0], "line_id": "2", "vat_amount": "49.90"},
             {**ROUNDED_LINES[1], "line_id": "3", "vat_rate": "5.5", "vat_amount": "4.15"})
    # 20 %: 498.96 × 0.2 = 99.792 → 99.79, the ERP 99.80; 5.5 %: 75.48 × 0.055 = 4.1514 → 4.15.
    totals = {"total_without_vat": "574.44", "total_vat": "103.95", "total_with_vat": "678.39"}
    [invoice] = read_all(rounded_csv(tmp_path / "export.csv", totals, *lines))
    assert isinstance(invoice, ExportedInvoice), invoice
    assert invoice.erp_vat == (("S", Decimal("20"), Decimal("99.80")),)
    assert compute_totals(invoice.lines, invoice.erp_vat).total_with_vat == Decimal("678.39")


def test_attachments_are_read_from_the_attachments_directory_beside_the_export(tmp_path: Path) -> None:
    (tmp_path / "attachments").mkdir()
    (tmp_path / "attachments" / "F-1.pdf").write_bytes(b"%PDF-1.7 facture")
    (tmp_path / "attachments" / "bon de livraison.png").write_bytes(b"\x89PNG bon")
    (tmp_path / "attachments" / "vide.csv").write_bytes(b"")
    export = tmp_path / "export.csv"
    files = {"invoice_pdf": "F-1.pdf", "attachments": "bon de livraison.png | F-1.pdf"}
    export.write_text(csv_text(row("F-1", **files), row("F-2", attachments="vide.csv"),
                               row("F-3", invoice_pdf="F-1.pdf")), "utf-8")
    twice, empty, good = read_all(export)
    assert isinstance(twice, RejectedRecord) and [e.reason for e in twice.errors] == ["'F-1.pdf' is attached twice"]
    assert isinstance(empty, RejectedRecord) and "'vide.csv' is empty" in empty.errors[0].reason
    assert isinstance(good, ExportedInvoice)
    [pdf] = good.attachments
    assert (pdf.name, pdf.mime_type, pdf.content, pdf.role) == ("F-1.pdf", "application/pdf", b"%PDF-1.7 facture",
                                                                "invoice")
    # Another directory can be named, as a channel or `gateway map --attachments` does.
    elsewhere = tmp_path / "pj"
    elsewhere.mkdir()
    (elsewhere / "F-1.pdf").write_bytes(b"%PDF-1.7 ailleurs")
    export.write_text(csv_text(row("F-3", invoice_pdf="F-1.pdf")), "utf-8")
    [moved] = list(read_csv_export(export, CsvOptions(), attachment_dir=elsewhere))
    assert isinstance(moved, ExportedInvoice) and moved.attachments[0].content == b"%PDF-1.7 ailleurs"


@pytest.mark.parametrize(("first", "second", "expected"), INVOICE_ERRORS.values(), ids=INVOICE_ERRORS.keys())
def test_an_invoice_with_a_bad_value_is_rejected_and_its_neighbours_go_on(
    tmp_path: Path, first: dict[str, str], second: dict[str, str], expected: list[tuple[int, str]]
) -> None:
    rows = (row("F-1"), row("F-2", **first), row("F-2", line_id="2", **second), row("F-3"))
    export = tmp_path / "export.csv"
    export.write_text(csv_text(*rows), "utf-8")
    before, rejected, after = read_all(export)

    assert isinstance(before, ExportedInvoice) and before.number == "F-1"
    assert isinstance(after, ExportedInvoice) and (after.number, after.first_line) == ("F-3", 5)
    assert isinstance(rejected, RejectedRecord), rejected
    assert (rejected.file, rejected.first_line, rejected.invoice_number, rejected.supplier_siret) == (
        "export.csv",
        3,
        "F-2",
        SUPPLIER,
    )
    assert where(rejected) == expected
    for error in rejected.errors:
        assert error.file == "export.csv"
        assert error.message.startswith(f"export.csv, line {error.line}, field '{error.field}': ")
    # What is written to quarantine: the header line and the invoice's own rows, as read.
    assert rejected.original == f"{HEADER}\n{rows[1]}\n{rows[2]}\n"


def test_codes_are_read_case_insensitively(tmp_path: Path) -> None:
    export = tmp_path / "lower.csv"
    export.write_text(csv_text(row("F-1", currency="usd", cadre="a2", vat_category="z", vat_rate="0")), "utf-8")
    [invoice] = read_all(export)
    assert isinstance(invoice, ExportedInvoice), invoice
    assert (invoice.currency, invoice.cadre, invoice.lines[0].vat_category) == ("USD", "A2", "Z")


# -- the whole file refused ---------------------------------------------------------

FILE_ERRORS = {
    "empty file": (b"", 1, None, "empty"),
    "missing column": (csv_text(row("F-1"), header=HEADER.replace(";vat_rate", "")), 1, "vat_rate", "missing"),
    "unknown column": (csv_text(header=HEADER.replace("currency", "devise")), 1, "devise", "unknown column"),
    "column twice": (csv_text(header=HEADER + ";Quantity"), 1, "quantity", "twice"),
    "wrong field count": (csv_text(row("F-1"), row("F-2"), row("F-3") + ";"), 4, None, "fields where the header"),
    "text after a closing quote": (csv_text(row("F-1"), row("F-2", item_name='"A4" x')), 3, None, "well-formed"),
    "a quote never closed": (csv_text(row("F-1"), row("F-2"), row("F-3", item_name='"A4')), 4, None, "well-formed"),
    "bad byte in the header": (HEADER.encode() + b"\x81\n", 1, None, "byte 0x81"),
    "bad byte on line 3": (
        csv_text(row("F-1")).encode() + row("F-2", buyer_name="Minist\xe8re").encode("cp1252") + b"\n",
        3,
        None,
        "byte 0xe8",
    ),
    # XML cannot carry a NUL: once "internal error while reading: ValueError(...)".
    "NUL byte on line 3": (csv_text(row("F-1"), "F-2;2026\x00"), 3, None, "byte 0x00 (NUL) at column 9 "),
}


@pytest.mark.parametrize(("content", "line", "field", "words"), FILE_ERRORS.values(), ids=FILE_ERRORS.keys())
def test_a_file_that_cannot_be_read_as_a_whole_raises_input_error(
    tmp_path: Path, content: str | bytes, line: int, field: str | None, words: str
) -> None:
    export = tmp_path / "export.csv"
    export.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(InputError) as raised:
        read_all(export)
    error = raised.value
    assert (error.file, error.line, error.field) == ("export.csv", line, field)
    assert words in error.message
    located = f"export.csv, line {line}" + (f", field '{field}'" if field else "") + ": "
    assert error.message.startswith(located)


# -- end to end ---------------------------------------------------------------------



def test_a_file_with_a_late_bad_byte_is_quarantined_whole_and_other_files_go_on(tmp_path: Path) -> None:
    """Through the CLI: nothing of the broken file is recorded; the other files of the
    pass are integrated; an invoice held back by validation is fixed and dropped back."""
    env = {"GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'gateway.db'}"}
    gateway("init", str(tmp_path / "site"), env=env)
    config = tmp_path / "site" / "gateway.toml"
    config.write_text(config.read_text().replace("settle_seconds = 2", "settle_seconds = 0"))
    inbox = tmp_path / "site" / "inbox" / "erp"
    quarantine = tmp_path / "site" / "quarantine" / "erp"

    # a-broken.csv: good invoices, one that validation would hold back, then a byte
    # that is not UTF-8 on line 6.
    broken = (
        csv_text(row("A-1"), row("A-1", line_id="2"), row("A-2", supplier_siret=BAD_SUPPLIER), row("A-3")).encode()
        + row("A-4", buyer_name="Minist\xe8re").encode("cp1252")
        + b"\n"
    )
    (inbox / "a-broken.csv").write_bytes(broken)
    # b-example.csv: the worked example of docs/inputs.md.
    (inbox / "b-example.csv").write_text(doc_block("csv"), encoding="utf-8")
    # c-siret.csv: the middle invoice has a supplier SIRET with a wrong Luhn key.
    (inbox / "c-siret.csv").write_text(
        csv_text(row("C-1"), row("C-2", supplier_siret=BAD_SUPPLIER), row("C-3")), "utf-8"
    )

    summary = json.loads(gateway("--config", str(config), "run", "--once", env=env).stdout)
    assert summary["files"] == {"processed": 2, "quarantined": 1}
    assert summary["invoices"] == {"received": 5, "valid": 4, "quarantined": 1}

    [kept] = quarantine.glob("*_a-broken.csv")
    assert kept.read_bytes() == broken
    reason = kept.with_name(kept.name + ".reason").read_text()
    assert reason.startswith("a-broken.csv, line 6: byte 0xe8")
    assert not list(quarantine.glob("a-broken.line*"))  # its held-back invoice was never written

    def invoices() -> list[tuple[str, str, int]]:
        listed = json.loads(gateway("--config", str(config), "invoices", "list", "--json", env=env).stdout)
        return sorted((i["invoice_number"], i["status"], i["source_line"]) for i in listed)

    assert invoices() == [
        ("C-1", "integrated", 2),
        ("C-2", "quarantined", 3),
        ("C-3", "integrated", 4),
        ("F-2026-000101", "integrated", 2),
        ("F-2026-000102", "integrated", 4),
    ]
    [held] = quarantine.glob("c-siret.file*.line3.csv")
    assert held.read_text() == csv_text(row("C-2", supplier_siret=BAD_SUPPLIER))
    held_reason = held.with_name(held.name + ".reason").read_text()
    assert held_reason.startswith("c-siret.csv, line 3, invoice C-2, field 'supplier_siret': ")
    assert sorted(p.name for p in inbox.iterdir()) == []

    # The operator fixes the held-back invoice and drops it back (docs/inputs.md).
    (inbox / held.name).write_text(held.read_text().replace(BAD_SUPPLIER, SUPPLIER))
    held.unlink()
    summary = json.loads(gateway("--config", str(config), "run", "--once", env=env).stdout)
    assert summary["files"] == {"processed": 1}
    # The fix is linked to the held-back one, which leaves the invoices to fix (docs/inputs.md).
    assert ("C-2", "integrated", 2) in invoices() and ("C-2", "corrected", 3) in invoices()
    listed = json.loads(gateway("--config", str(config), "invoices", "list", "--json", env=env).stdout)
    [old, fix] = [i for i in listed if i["invoice_number"] == "C-2"]
    assert fix["corrects"] == old["id"]

    # A file quarantined whole is read again when dropped back, even unchanged: the
    # operator may have fixed the channel's settings rather than the file.
    (inbox / "a-broken.csv").write_bytes(broken)
    summary = json.loads(gateway("--config", str(config), "run", "--once", env=env).stdout)
    assert summary["files"] == {"quarantined": 1}


def test_one_pass_sends_a_9_5_mb_pdf_and_holds_back_linked_attachments_and_an_oversized_invoice(
    tmp_path: Path,
) -> None:
    """Through the CLI, one run: an attachment just under Chorus Pro's 10 MB goes through
    intake, mapping, XSD and Schematron in the worker, the flow and the sandbox; an
    attachment that is a symbolic or hard link out of attachments/ is refused (file, line,
    field), and an invoice beyond the channel's max_lines_per_invoice is held back unread."""
    database = f"sqlite:///{tmp_path / 'gateway.db'}"
    config = write_starter(tmp_path / "site")  # what `gateway init` writes, one process less
    text = config.read_text().replace("settle_seconds = 2", "settle_seconds = 0")
    config.write_text(text.replace("max_lines_per_invoice = 100000", "max_lines_per_invoice = 3"))
    inbox = tmp_path / "site" / "inbox" / "erp"
    attachments = inbox / "attachments"
    attachments.mkdir()
    pdf = b"%PDF-1.7\n" + random.Random(13).randbytes(9_500_000)
    (attachments / "facture.pdf").write_bytes(pdf)
    secret = tmp_path / "secret.pdf"  # outside the channel: readable by the gateway, not the ERP's to send
    secret.write_bytes(b"%PDF-1.7 not the ERP's")
    (attachments / "lien.pdf").symlink_to(secret)
    os.link(secret, attachments / "dur.pdf")
    (inbox / "export.csv").write_text(csv_text(
        row("H-1", invoice_pdf="facture.pdf"),
        row("H-2", attachments="lien.pdf"),
        row("H-3", attachments="dur.pdf"),
        *(row("H-4", line_id=str(position)) for position in range(1, 5)),  # lines 5-8: one line too many
        row("H-5"),
    ), "utf-8")

    summary = json.loads(gateway("--config", str(config), "run", "--once",
                                 env={"GATEWAY_DATABASE_URL": database}).stdout)

    assert summary["invoices"] == {"received": 5, "valid": 2, "quarantined": 3}
    store = Store.open(database)
    with store.transaction() as tx:
        outcome = {i.invoice_number: (i.status, i.reason) for i in tx.list_invoices()}
    store.close()
    assert {number: status for number, (status, _) in outcome.items()} == {
        "H-1": "integrated", "H-2": "quarantined", "H-3": "quarantined", "H-4": "quarantined", "H-5": "integrated"}
    assert outcome["H-2"][1].startswith(
        "export.csv, line 3, field 'attachments': attachment 'lien.pdf' is a symbolic link in ")
    assert outcome["H-3"][1].startswith(
        "export.csv, line 4, field 'attachments': attachment 'dur.pdf' is a hard link to a file outside ")
    assert outcome["H-4"][1].startswith("export.csv, line 8: invoice H-4 has more than 3 lines, the channel's "
                                        "max_lines_per_invoice: held back unread")
    assert "its rows are lines 5–8 of the export" in outcome["H-4"][1]
    held = [path for path in (tmp_path / "site" / "quarantine").rglob("*.csv") if "H-4" in path.read_text()]
    assert held == []  # nothing of it was kept: its reason says where it is
    # The PDF travelled whole in the flow the sandbox integrated; the linked file never left.
    [flow] = (tmp_path / "site" / "sandbox" / "received").iterdir()
    with tarfile.open(flow) as archive:
        sent = {member.name: archive.extractfile(member).read() for member in archive}  # type: ignore[union-attr]
    [with_pdf] = [data for data in sent.values() if b"H-1" in data]
    assert base64.b64encode(pdf) in with_pdf
    assert not any(base64.b64encode(secret.read_bytes()) in data for data in sent.values())
