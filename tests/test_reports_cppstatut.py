"""The CPPStatut parser, the project's own XSD, and the sandbox writers read back."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from lxml import etree

from gateway.domain import FLOW_STATUS_LABELS
from gateway.errors import ReportError
from gateway.reports import (
    ErrorLine,
    FlowStatusEntry,
    InvoiceStatusEntry,
    ParsedReport,
    parse_report,
)
from gateway.resources import schema_path
from gateway.sandbox.cppstatut import (
    flow_error_line,
    flow_status_document,
    invoice_error_line,
    invoice_status_document,
)

STATUT_SAMPLES = "examples/chorus-pro/statut"
OFFICIAL_XSD = "schemas/chorus-pro/CPPStatutPivot_V1_19.xsd"
#: What the official XSD says of each corpus sample (checked in the first test).
EXPECTED_VALID = {
    "Example01-FactureStatut-ok.xml": True,
    "Example02-FactureStatut-ko.xml": True,  # valid form; code 17 is undocumented
    "Example03-FactureStatut-ko.xml": False,  # Horodatage month 15
    "Example04-FactureStatut-ko.xml": True,  # a flow status where Pastell expected invoice statuses
}
SUPPLIER = "73282932000017"
BUYER = "11000000700010"
FLOW_ID = "AAA1231100000000000000001"


def _schema(path: Path) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(path)))


def _sample(corpus: Path, name: str) -> bytes:
    return (corpus / STATUT_SAMPLES / name).read_bytes()


# -- the project's XSD against the official one ---------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_VALID))
def test_own_xsd_gives_the_official_verdict_on_each_sample(corpus: Path, name: str) -> None:
    document = etree.parse(str(corpus / STATUT_SAMPLES / name))
    official = _schema(corpus / OFFICIAL_XSD).validate(document)
    own = _schema(schema_path("cppstatut.xsd")).validate(document)
    assert official is EXPECTED_VALID[name]
    assert own is official


def test_writer_output_is_valid_against_the_official_xsd(corpus: Path) -> None:
    official = _schema(corpus / OFFICIAL_XSD)
    for raw in (_flow_document(), _invoice_document(_invoice_entries())):
        document = etree.fromstring(raw)
        assert official.validate(document), official.error_log


# -- corpus samples ------------------------------------------------------------------


def test_example01_parses_as_an_invoice_status(corpus: Path) -> None:
    report = parse_report(_sample(corpus, "Example01-FactureStatut-ok.xml"))
    assert (report.kind, report.envelope_flow_id, report.produced_on) == (
        "invoice-status",
        "1000000000",
        date(2016, 9, 8),
    )
    assert (report.sender_id, report.receiver_id, report.flow_statuses) == ("CPP001", "XXX001", ())
    [entry] = report.invoice_statuses
    assert entry == InvoiceStatusEntry(
        supplier_id="00000000169959",
        supplier_id_type="1",
        buyer_id="00000000169991",
        invoice_number="Example01",
        invoice_date=date(2018, 6, 13),
        code="07",
        label="Service fait",
        comment="Service fait",
        timestamp=datetime(2018, 12, 18, 15, 51, 55, tzinfo=UTC),
    )
    assert entry.timestamp.utcoffset() == timedelta(hours=1)


def test_example02_keeps_the_undocumented_code(corpus: Path) -> None:
    [entry] = parse_report(_sample(corpus, "Example02-FactureStatut-ko.xml")).invoice_statuses
    assert (entry.code, entry.invoice_number) == ("17", "Example02")


def test_example03_is_refused_naming_line_and_field(corpus: Path) -> None:
    with pytest.raises(ReportError) as caught:
        parse_report(_sample(corpus, "Example03-FactureStatut-ko.xml"))
    assert "line 43" in caught.value.message
    assert "Horodatage" in caught.value.message and "2018-15-18" in caught.value.message


def test_example04_is_a_flow_status_read_in_french_time(corpus: Path) -> None:
    report = parse_report(_sample(corpus, "Example04-FactureStatut-ko.xml"))
    [entry] = report.flow_statuses
    assert (report.kind, entry.flow_id, entry.code, entry.errors) == ("flow-status", "1000000000", "92", ())
    assert entry.label == "Reçu destinataire final."
    # No offset in the file: read as Europe/Paris ([I], docs/reports.md).
    assert entry.timestamp == datetime(2018, 2, 22, 16, 6, 38, tzinfo=ZoneInfo("Europe/Paris"))


# -- documents that must be refused --------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"<CPPStatut><Enveloppe>", "line 1"),
        (b"", "not well-formed"),
        (b"\n\n<CPPStatut><Enveloppe></CPPStatut>", "line 3"),
    ],
)
def test_malformed_xml_is_refused_with_its_line(raw: bytes, expected: str) -> None:
    with pytest.raises(ReportError) as caught:
        parse_report(raw)
    assert expected in caught.value.message


def test_a_doctype_is_refused_and_no_entity_is_expanded() -> None:
    body = _flow_document().split(b"?>", 1)[1].replace(b"<IdFlux>", b"<IdFlux>&x;", 1)
    raw = b'<?xml version="1.0"?>\n<!DOCTYPE CPPStatut [<!ENTITY x "expanded">]>\n' + body
    with pytest.raises(ReportError) as caught:
        parse_report(raw)
    assert "DOCTYPE" in caught.value.message and "line 2" in caught.value.message


def test_a_schema_invalid_code_is_refused_with_its_line() -> None:
    raw = _flow_document().replace(b"<IdStatut>96</IdStatut>", b"<IdStatut>99</IdStatut>")
    with pytest.raises(ReportError) as caught:
        parse_report(raw)
    line = raw[: raw.index(b"<IdStatut>")].count(b"\n") + 1
    assert f"line {line}" in caught.value.message and "IdStatut" in caught.value.message


def test_a_foreign_root_is_refused() -> None:
    with pytest.raises(ReportError, match="not a valid CPPStatut"):
        parse_report(b"<Invoice/>")


# -- writer → parser round trips -----------------------------------------------------


def _errors() -> list[ErrorLine]:
    return [
        invoice_error_line(
            invoice_number="F-2026-002",
            supplier_id=SUPPLIER,
            buyer_id="19750000200013",
            code="ANNUAIRE",
            label="destinataire inconnu de l'annuaire: 19750000200013",
        ),
        flow_error_line(code="ARCHIVE", label="something about the whole flow"),
    ]


def _flow_document(timestamp: datetime | None = None) -> bytes:
    return flow_status_document(
        flow_id=FLOW_ID,
        code="96",
        comment="1 invoice(s) integrated, 1 rejected",
        timestamp=timestamp or datetime(2026, 11, 2, 10, 30, tzinfo=UTC),
        errors=_errors(),
        receiver_id="AAA123",
    )


def _invoice_entries() -> list[InvoiceStatusEntry]:
    paris = ZoneInfo("Europe/Paris")
    return [
        InvoiceStatusEntry(
            SUPPLIER,
            "1",
            BUYER,
            "F-1",
            date(2026, 11, 2),
            "01",
            "Déposée",
            None,
            datetime(2026, 11, 2, 10, 0, tzinfo=UTC),
        ),
        InvoiceStatusEntry(
            SUPPLIER,
            "1",
            BUYER,
            "F-1",
            None,
            "17",
            None,
            "an undocumented code",
            datetime(2026, 11, 2, 11, 0, 0, 250000, tzinfo=paris),
        ),
        InvoiceStatusEntry(
            "FR12345678901",
            "2",
            "21750001600019",
            "A/2026 & <co>",
            date(2026, 1, 31),
            "03",
            "Mise à disposition",
            "ok",
            datetime(2026, 11, 3, 9, 0, tzinfo=timezone(timedelta(hours=-5))),
        ),
    ]


def _invoice_document(entries: list[InvoiceStatusEntry]) -> bytes:
    return invoice_status_document(
        entries=entries, flow_id=FLOW_ID, produced_on=date(2026, 11, 3), receiver_id="AAA123"
    )


def test_flow_status_round_trip() -> None:
    timestamp = datetime(2026, 11, 2, 10, 30, 5, 123456, tzinfo=ZoneInfo("Europe/Paris"))
    raw = _flow_document(timestamp)
    assert raw.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert parse_report(raw) == ParsedReport(
        kind="flow-status",
        envelope_flow_id=FLOW_ID,
        produced_on=date(2026, 11, 2),
        sender_id="CPP001",
        receiver_id="AAA123",
        flow_statuses=(
            FlowStatusEntry(
                flow_id=FLOW_ID,
                code="96",
                label=FLOW_STATUS_LABELS["96"],
                comment="1 invoice(s) integrated, 1 rejected",
                timestamp=timestamp,
                errors=tuple(_errors()),
            ),
        ),
        invoice_statuses=(),
    )


def test_per_invoice_error_line_reads_back_its_invoice() -> None:
    [entry] = parse_report(_flow_document()).flow_statuses
    invoice_line, flow_line = entry.errors
    assert (invoice_line.nature, invoice_line.line_id, invoice_line.invoice_number) == (
        "FACTURE",
        "F-2026-002",
        "F-2026-002",
    )
    assert (invoice_line.supplier_id, invoice_line.buyer_id) == (SUPPLIER, "19750000200013")
    assert invoice_line.description == (
        "numeroFacture=F-2026-002;identifiantFournisseur=73282932000017;identifiantDestinataire=19750000200013"
    )
    assert (flow_line.nature, flow_line.invoice_number, flow_line.supplier_id) == ("FLUX", None, None)


def test_invoice_status_round_trip() -> None:
    entries = _invoice_entries()
    assert parse_report(_invoice_document(entries)) == ParsedReport(
        kind="invoice-status",
        envelope_flow_id=FLOW_ID,
        produced_on=date(2026, 11, 3),
        sender_id="CPP001",
        receiver_id="AAA123",
        flow_statuses=(),
        invoice_statuses=tuple(entries),
    )


def test_writers_refuse_what_the_format_cannot_hold() -> None:
    now = datetime(2026, 11, 2, tzinfo=UTC)
    with pytest.raises(ValueError, match="IdStatut"):
        flow_status_document(flow_id=FLOW_ID, code="99", comment=None, timestamp=now, errors=[], receiver_id="AAA123")
    with pytest.raises(ValueError, match="timezone"):
        flow_status_document(
            flow_id=FLOW_ID,
            code="90",
            comment=None,
            timestamp=now.replace(tzinfo=None),
            errors=[],
            receiver_id="AAA123",
        )
    with pytest.raises(ValueError, match="at least one"):
        _invoice_document([])


# -- tolerance -----------------------------------------------------------------------


def _with_details(details: bytes) -> bytes:
    raw = flow_status_document(
        flow_id=FLOW_ID,
        code="93",
        comment=None,
        timestamp=datetime(2026, 11, 2, tzinfo=UTC),
        errors=[],
        receiver_id="AAA123",
    )
    return raw.replace(b"</IdFlux>", b"</IdFlux>" + details)


def test_error_lines_without_key_value_description_still_parse() -> None:
    raw = _with_details(
        b'<Details NbLignesErreur="3">'
        b'<LigneErreurDetail IdLigne="F-9"><NatureErreur>FACTURE</NatureErreur><CodeErreur>E1</CodeErreur>'
        b"<LibelleErreur>montant faux</LibelleErreur></LigneErreurDetail>"
        b"<LigneErreurDetail><NatureErreur>FACTURE</NatureErreur><CodeErreur>E2</CodeErreur>"
        b"<LibelleErreur>x</LibelleErreur><DescriptionErreur>texte libre ; IdentifiantDestinataire = 21750001600019 ;"
        b" numeroFacture=F;10</DescriptionErreur></LigneErreurDetail>"
        b"<LigneErreurDetail><NatureErreur>FLUX</NatureErreur><CodeErreur>E3</CodeErreur>"
        b"<LibelleErreur>archive illisible</LibelleErreur><DescriptionErreur>sans cles</DescriptionErreur>"
        b"</LigneErreurDetail></Details>"
    )
    first, second, third = parse_report(raw).flow_statuses[0].errors
    assert (first.invoice_number, first.supplier_id, first.buyer_id, first.description) == ("F-9", None, None, None)
    assert (second.invoice_number, second.buyer_id, second.supplier_id) == ("F;10", "21750001600019", None)
    assert (third.invoice_number, third.line_id, third.description) == (None, None, "sans cles")


def test_integer_codes_are_normalised_to_two_digits() -> None:
    raw = _invoice_document(_invoice_entries()[:1]).replace(b"<IdStatut>01</IdStatut>", b"<IdStatut>1</IdStatut>")
    assert parse_report(raw).invoice_statuses[0].code == "01"
