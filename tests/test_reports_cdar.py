"""CDAR D22B reports: the parser registry, the CDAR reader and the project's XSD, the
sandbox writers read back, the current lifecycle status, and reconciliation on a store."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import structlog
from lxml import etree

from gateway.domain import (
    CDAR_INVOICE_STATUS_LABELS,
    INVOICE_STATUS_LABELS,
    FlowStatus,
    InvoiceStatus,
    ReportOutcome,
)
from gateway.errors import ReportError
from gateway.reports import cdar, cppstatut, lifecycle, model, registry
from gateway.reports.model import ErrorLine, FlowStatusEntry, InvoiceStatusEntry, ParsedReport
from gateway.pipeline import attempts
from gateway.pipeline.reports import reconcile_report, store_report
from gateway.resources import schema_path
from gateway.sandbox.cdar import CDAR_OF_CPP, CHORUS_PLATFORM_ID, cdar_flow_status, cdar_invoice_statuses
from gateway.sandbox.cppstatut import flow_error_line, invoice_error_line, invoice_status_document
from gateway.store import Store, db
from gateway.xml import saxon

OFFICIAL_XSD = "schemas/cdar-d22b-uncoupled/CrossDomainAcknowledgementAndResponse_100pD22B.xsd"
SCHEMATRON = "schematron/fr-ctc-fnfe-v1.4/cdar/BR-FR-CDV-Schematron-CDAR.xslt"
CPP_SAMPLES = "examples/chorus-pro/statut"
SVRL = "{http://purl.oclc.org/dsdl/svrl}"
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = timezone(-timedelta(hours=5))
FLOW_ID = "AAA1231100000000000000001"
SUPPLIER = "73282932000017"
BUYER = "11000000700010"
PARTNER = "AAA123"
NOW = datetime(2026, 11, 2, 10, 30, 5, tzinfo=UTC)


def _entry(code: str, *, number: str = "F-1", at: datetime = NOW, **fields: object) -> InvoiceStatusEntry:
    values: dict = {
        "supplier_id": SUPPLIER,
        "supplier_id_type": "1",
        "buyer_id": BUYER,
        "invoice_number": number,
        "invoice_date": date(2026, 11, 1),
        "code": code,
        "label": CDAR_INVOICE_STATUS_LABELS.get(code),
        "comment": None,
        "timestamp": at,
    }
    values.update(fields)
    return InvoiceStatusEntry(**values)


def _flow(code: str, errors: list[ErrorLine] | None = None, *, at: datetime = NOW) -> bytes:
    label = {"500": "Recevable", "501": "Irrecevable"}.get(code, "?")
    return cdar_flow_status(
        flow_id=FLOW_ID, code=code, label=label, errors=errors or [], produced_at=at,
        sender=CHORUS_PLATFORM_ID, receiver=PARTNER,
    )


def _statuses(*entries: InvoiceStatusEntry, at: datetime = NOW) -> bytes:
    return cdar_invoice_statuses(
        flow_id=FLOW_ID, entries=entries, produced_at=at, sender=CHORUS_PLATFORM_ID, receiver=PARTNER
    )


def _irrecevable_errors() -> list[ErrorLine]:
    return [
        flow_error_line(code="IRR_SYNTAX", label="le fichier n'est pas du XML", description="member F-1.xml"),
        flow_error_line(code="IRR_NOM_F", label="nom de fichier invalide"),
    ]


def _mixed_entries() -> list[InvoiceStatusEntry]:
    """Statuses covering the writer's options: dates, labels and reasons present or not,
    SIRET or another scheme, times in several zones (to the second)."""
    return [
        _entry("200", at=datetime(2026, 11, 2, 9, 0, tzinfo=UTC)),
        _entry("213", number="F-2", comment="DOUBLON: facture reçue deux fois", at=datetime(2026, 7, 1, tzinfo=PARIS)),
        _entry("204", number="A/2026 & <co>", label=None, invoice_date=None, comment="pris en charge par le service"),
        _entry("210", number="F-3", comment="DEST_ERR", at=datetime(2026, 11, 3, 9, tzinfo=NEW_YORK)),
        _entry("203", number="F-4", supplier_id="732829320", supplier_id_type="0002", buyer_id=""),
        _entry("299", number="F-5", label=None),  # not a documented code: still written and read back
    ]


#: A message written by hand in the official layout, using what the sandbox does not
#: write: xs:dateTime, format 205, an acknowledgement without date, two references in
#: one acknowledgement, a SIREN-only seller, several status details, a flow status.
HAND_MADE = f"""<?xml version="1.0" encoding="UTF-8"?>
<rsm:CrossDomainAcknowledgementAndResponse xmlns:rsm="{cdar.RSM}" xmlns:ram="{cdar.RAM}"
    xmlns:udt="{cdar.UDT}" xmlns:qdt="{cdar.QDT}">
  <rsm:ExchangedDocumentContext>
    <ram:BusinessProcessSpecifiedDocumentContextParameter><ram:ID>REGULATED</ram:ID>
    </ram:BusinessProcessSpecifiedDocumentContextParameter>
    <ram:GuidelineSpecifiedDocumentContextParameter><ram:ID>urn.cpro.gouv.fr:1p0:CDV:invoice</ram:ID>
    </ram:GuidelineSpecifiedDocumentContextParameter>
  </rsm:ExchangedDocumentContext>
  <rsm:ExchangedDocument>
    <ram:ID>CDV-0001</ram:ID>
    <ram:Name>statuts du 3 novembre</ram:Name>
    <ram:IssueDateTime><udt:DateTime>2026-11-03T09:15:00+01:00</udt:DateTime></ram:IssueDateTime>
    <ram:SenderTradeParty><ram:GlobalID schemeID="0238">9999</ram:GlobalID><ram:Name>Chorus Pro</ram:Name>
      <ram:RoleCode>WK</ram:RoleCode></ram:SenderTradeParty>
    <ram:IssuerTradeParty><ram:RoleCode>WK</ram:RoleCode></ram:IssuerTradeParty>
    <ram:RecipientTradeParty><ram:GlobalID schemeID="0238">0042</ram:GlobalID><ram:RoleCode>WK</ram:RoleCode>
      <ram:URIUniversalCommunication><ram:URIID schemeID="0225">732829320</ram:URIID></ram:URIUniversalCommunication>
    </ram:RecipientTradeParty>
  </rsm:ExchangedDocument>
  <rsm:AcknowledgementDocument>
    <ram:MultipleReferencesIndicator><udt:Indicator>true</udt:Indicator></ram:MultipleReferencesIndicator>
    <ram:TypeCode>305</ram:TypeCode>
    <ram:ReferenceReferencedDocument>
      <ram:IssuerAssignedID>F-7</ram:IssuerAssignedID>
      <ram:TypeCode>380</ram:TypeCode>
      <ram:ReceiptDateTime><udt:DateTimeString format="204">20261103091000</udt:DateTimeString></ram:ReceiptDateTime>
      <ram:FormattedIssueDateTime><qdt:DateTimeString format="102">20261030</qdt:DateTimeString>
      </ram:FormattedIssueDateTime>
      <ram:ProcessConditionCode>213</ram:ProcessConditionCode>
      <ram:ProcessCondition>Rejetée</ram:ProcessCondition>
      <ram:IssuerTradeParty><ram:GlobalID schemeID="0002">732829320</ram:GlobalID><ram:RoleCode>SE</ram:RoleCode>
      </ram:IssuerTradeParty>
      <ram:SpecifiedDocumentStatus><ram:ReasonCode>REJ_SEMAN</ram:ReasonCode><ram:Reason>montant total faux</ram:Reason>
        <ram:SequenceNumeric>1</ram:SequenceNumeric></ram:SpecifiedDocumentStatus>
      <ram:SpecifiedDocumentStatus><ram:Reason>voir la ligne 3</ram:Reason><ram:SequenceNumeric>2</ram:SequenceNumeric>
      </ram:SpecifiedDocumentStatus>
    </ram:ReferenceReferencedDocument>
    <ram:ReferenceReferencedDocument>
      <ram:IssuerAssignedID>F-8</ram:IssuerAssignedID>
      <ram:ProcessConditionCode>224</ram:ProcessConditionCode>
      <ram:IssuerTradeParty><ram:GlobalID schemeID="0002">732829320</ram:GlobalID>
        <ram:GlobalID schemeID="0009">{SUPPLIER}</ram:GlobalID><ram:RoleCode>SE</ram:RoleCode></ram:IssuerTradeParty>
      <ram:RecipientTradeParty><ram:GlobalID schemeID="0009">21750001600019</ram:GlobalID>
        <ram:RoleCode>DL</ram:RoleCode></ram:RecipientTradeParty>
      <ram:RecipientTradeParty><ram:GlobalID schemeID="0009">{BUYER}</ram:GlobalID>
        <ram:RoleCode>BY</ram:RoleCode></ram:RecipientTradeParty>
    </ram:ReferenceReferencedDocument>
  </rsm:AcknowledgementDocument>
  <rsm:AcknowledgementDocument>
    <ram:IssueDateTime><udt:DateTimeString format="205">202611031000+0000</udt:DateTimeString></ram:IssueDateTime>
    <ram:ReferenceReferencedDocument>
      <ram:IssuerAssignedID>{FLOW_ID}</ram:IssuerAssignedID>
      <ram:ProcessConditionCode>500</ram:ProcessConditionCode>
    </ram:ReferenceReferencedDocument>
  </rsm:AcknowledgementDocument>
</rsm:CrossDomainAcknowledgementAndResponse>
""".encode()


def _documents() -> dict[str, bytes]:
    """Every CDAR document these tests read, by name (checked against the official XSD)."""
    return {
        "flow-500": _flow("500"),
        "flow-501": _flow("501", _irrecevable_errors()),
        "statuses-mixed": _statuses(*_mixed_entries()),
        "statuses-processing": _statuses(_entry("204"), _entry("211", comment="virement du 5/11")),
        "hand-made": HAND_MADE,
    }


def _schema(path: Path) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(path)))


# -- the registry --------------------------------------------------------------------------


def test_the_registry_reads_cppstatut_and_cdar() -> None:
    assert set(registry.known_roots()) == {cppstatut.ROOT, cdar.ROOT}
    assert registry.parse_any(_flow("500")) == cdar.parse_report(_flow("500"))


@pytest.mark.parametrize("name", ["Example01-FactureStatut-ok.xml", "Example02-FactureStatut-ko.xml",
                                  "Example04-FactureStatut-ko.xml"])
def test_cppstatut_samples_still_parse_through_the_registry(corpus: Path, name: str) -> None:
    raw = (corpus / CPP_SAMPLES / name).read_bytes()
    assert registry.parse_any(raw) == cppstatut.parse_report(raw)


def test_an_invalid_cppstatut_sample_is_refused_through_the_registry(corpus: Path) -> None:
    with pytest.raises(ReportError, match="not a valid CPPStatut document: line 43"):
        registry.parse_any((corpus / CPP_SAMPLES / "Example03-FactureStatut-ko.xml").read_bytes())


def test_an_unknown_root_is_refused_naming_it() -> None:
    raw = b'<?xml version="1.0"?>\n<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"/>'
    with pytest.raises(ReportError) as caught:
        registry.parse_any(raw)
    message = caught.value.message
    assert "no parser for reports of root {urn:oasis:names:specification:ubl:schema:xsd:Invoice-2}Invoice" in message
    assert "the file is kept" in message and "CPPStatut" in message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "not well-formed XML: line 1"),
        (b"\n\n  junk", "not well-formed XML: line 3"),
        (b'<?xml version="1.0"?>\n<!DOCTYPE CPPStatut [<!ENTITY x "y">]>\n<CPPStatut>&x;</CPPStatut>',
         "line 2: a DOCTYPE is not allowed"),
    ],
)
def test_the_registry_refuses_what_is_not_safe_xml(raw: bytes, expected: str) -> None:
    with pytest.raises(ReportError, match=expected):
        registry.parse_any(raw)


def test_the_registry_refuses_an_oversized_report(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _flow("500")
    monkeypatch.setattr(model, "MAX_REPORT_BYTES", 100)
    with pytest.raises(ReportError, match=f"the report is {len(raw)} bytes, over the 100-byte limit"):
        registry.parse_any(raw)
    with pytest.raises(ReportError, match="over the 100-byte limit"):
        cdar.parse_report(raw)


# -- reading CDAR ------------------------------------------------------------------------


def test_flow_status_round_trip() -> None:
    at = datetime(2026, 11, 2, 23, 59, 59, tzinfo=UTC)  # already the 3rd in France
    assert cdar.parse_report(_flow("501", _irrecevable_errors(), at=at)) == ParsedReport(
        kind="flow-status",
        envelope_flow_id=f"{FLOW_ID}-501",
        produced_on=date(2026, 11, 3),
        sender_id=CHORUS_PLATFORM_ID,
        receiver_id=PARTNER,
        flow_statuses=(FlowStatusEntry(FLOW_ID, "501", "Irrecevable", None, at, tuple(_irrecevable_errors())),),
    )
    [receivable] = cdar.parse_report(_flow("500")).flow_statuses
    assert receivable == FlowStatusEntry(FLOW_ID, "500", "Recevable", None, NOW, ())


def test_invoice_statuses_round_trip_in_order() -> None:
    entries = _mixed_entries()
    report = cdar.parse_report(_statuses(*entries))
    assert (report.kind, report.flow_statuses, report.sender_id, report.receiver_id) == (
        "invoice-status", (), CHORUS_PLATFORM_ID, PARTNER
    )
    assert report.envelope_flow_id == f"{FLOW_ID}-CDV-20261102113005"
    assert report.invoice_statuses == tuple(entries)


def test_times_are_written_to_the_second_in_french_time() -> None:
    at = datetime(2026, 7, 14, 8, 0, 0, 987654, tzinfo=UTC)
    raw = _statuses(_entry("200", at=at), at=at)
    assert b'<udt:DateTimeString format="204">20260714100000</udt:DateTimeString>' in raw
    [entry] = cdar.parse_report(raw).invoice_statuses
    assert entry.timestamp == at.replace(microsecond=0)
    assert entry.timestamp.utcoffset() == timedelta(hours=2)


def test_a_hand_made_message_in_the_official_layout() -> None:
    report = cdar.parse_report(HAND_MADE)
    # A message naming a flow status is about the flow; its invoice statuses are read too.
    assert (report.kind, report.envelope_flow_id, report.produced_on) == ("flow-status", "CDV-0001", date(2026, 11, 3))
    assert (report.sender_id, report.receiver_id) == ("9999", "0042")
    issued = datetime(2026, 11, 3, 9, 15, tzinfo=timezone(timedelta(hours=1)))
    rejected, unknown = report.invoice_statuses
    # No date on the acknowledgement: the message's; a SIREN-only seller keeps its scheme.
    assert rejected == InvoiceStatusEntry(
        supplier_id="732829320",
        supplier_id_type="0002",
        buyer_id="",
        invoice_number="F-7",
        invoice_date=date(2026, 10, 30),
        code="213",
        label="Rejetée",
        comment="REJ_SEMAN: montant total faux; voir la ligne 3",
        timestamp=issued,
    )
    # The SIRET wins over the SIREN; the buyer is the recipient with role BY.
    assert (unknown.supplier_id, unknown.supplier_id_type, unknown.buyer_id, unknown.code) == (
        SUPPLIER, "1", BUYER, "224"
    )
    [flow] = report.flow_statuses
    assert flow == FlowStatusEntry(FLOW_ID, "500", None, None, datetime(2026, 11, 3, 10, 0, tzinfo=UTC), ())


def _line_of(raw: bytes, fragment: bytes) -> int:
    return raw[: raw.index(fragment)].count(b"\n") + 1


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (b'format="102">20261030', b'format="102">20261330', "date-time '20261330': month must be in 1..12"),
        (b'format="205">202611031000+0000', b'format="209">202611031000+0000', "format 209 is not one of"),
    ],
)
def test_a_date_that_cannot_be_read_is_refused_with_its_line(old: bytes, new: bytes, expected: str) -> None:
    raw = HAND_MADE.replace(old, new)
    with pytest.raises(ReportError, match=expected) as caught:
        cdar.parse_report(raw)
    assert caught.value.message.startswith(f"line {_line_of(raw, new)}: ")


def test_a_status_without_code_is_refused_naming_the_element() -> None:
    raw = HAND_MADE.replace(b"<ram:ProcessConditionCode>500</ram:ProcessConditionCode>", b"")
    with pytest.raises(ReportError) as caught:
        cdar.parse_report(raw)
    # The reference without its code is named, at its line, with the usual prefixes.
    line = _line_of(raw, f"<ram:IssuerAssignedID>{FLOW_ID}".encode()) - 1
    assert caught.value.message.startswith(
        f"not a valid CDAR D22B document: line {line}: Element 'ram:ReferenceReferencedDocument': Missing child"
    )


def test_a_doctype_is_refused_and_no_entity_is_expanded() -> None:
    body = _flow("500").split(b"?>", 1)[1].replace(b"<ram:ProcessCondition>", b"<ram:ProcessCondition>&x;", 1)
    raw = b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x "expanded">]>\n' + body
    with pytest.raises(ReportError, match="line 2: a DOCTYPE is not allowed"):
        cdar.parse_report(raw)


# -- the project's XSD against the official one --------------------------------------------


@pytest.mark.parametrize("name", sorted(_documents()))
def test_own_xsd_accepts_what_the_official_accepts(corpus: Path, name: str) -> None:
    document = etree.fromstring(_documents()[name])
    official = _schema(corpus / OFFICIAL_XSD)
    assert official.validate(document), official.error_log
    assert _schema(schema_path("cdar-status.xsd")).validate(document)


_CODE_THEN_LABEL = "<ram:ProcessConditionCode>213</ram:ProcessConditionCode>\n      <ram:ProcessCondition>Rejetée"
_LABEL_THEN_CODE = (
    "<ram:ProcessCondition>Rejetée</ram:ProcessCondition><ram:ProcessConditionCode>213</ram:ProcessConditionCode>"
)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"rsm:AcknowledgementDocument", b"rsm:Acknowledgement"),  # not in the message's sequence
        (b"2026-11-03T09:15:00+01:00", b"2026-13-03T09:15:00+01:00"),  # not an xs:dateTime
        (b'<ram:GlobalID schemeID="0238">0042</ram:GlobalID>', b"<ram:Name>x</ram:Name><ram:ID>0042</ram:ID>"),
        # the label before the code: out of the published order
        (_CODE_THEN_LABEL.encode() + b"</ram:ProcessCondition>", _LABEL_THEN_CODE.encode()),
    ],
)
def test_own_xsd_refuses_what_the_official_refuses(corpus: Path, old: bytes, new: bytes) -> None:
    raw = HAND_MADE.replace(old, new)
    assert raw != HAND_MADE
    document = etree.fromstring(raw)
    assert not _schema(corpus / OFFICIAL_XSD).validate(document)
    assert not _schema(schema_path("cdar-status.xsd")).validate(document)


@pytest.mark.parametrize(
    "drop",
    [
        b"<ram:ProcessConditionCode>500</ram:ProcessConditionCode>",  # MDT-105, BR-FR-CDV-12
        b"<ram:ID>CDV-0001</ram:ID>",  # MDT-4, BR-FR-CDV-03
    ],
)
def test_own_xsd_is_stricter_only_where_the_french_profile_requires(corpus: Path, drop: bytes) -> None:
    document = etree.fromstring(HAND_MADE.replace(drop, b""))
    assert _schema(corpus / OFFICIAL_XSD).validate(document)
    assert not _schema(schema_path("cdar-status.xsd")).validate(document)


# -- the sandbox writers -------------------------------------------------------------------


def test_writer_output_is_valid_against_the_official_xsd(corpus: Path) -> None:
    official = _schema(corpus / OFFICIAL_XSD)
    for name, raw in _documents().items():
        if name != "hand-made":
            assert official.validate(etree.fromstring(raw)), (name, official.error_log)


def test_nominal_writer_output_passes_the_french_cdar_schematron(corpus: Path) -> None:
    """Flow statuses, transmission-phase statuses, and processing-phase statuses of one
    buyer: no assert of the FNFE CDV Schematron v1.4 fails (reason codes from its lists)."""
    # The gateway's own processor: SaxonC does not support a second one in the process.
    stylesheet = saxon.compile_stylesheet(corpus / SCHEMATRON)
    documents = {
        "500": _flow("500"),
        "501": _flow("501", _irrecevable_errors()),
        "200+203+213": _statuses(_entry("200"), _entry("203"), _entry("213", comment="DOUBLON: en double")),
        "204+210+211": _statuses(_entry("204"), _entry("210", comment="DEST_ERR: service inconnu"), _entry("211")),
    }
    for name, raw in documents.items():
        with saxon.exclusive() as processor:
            report = stylesheet.transform_to_string(xdm_node=processor.parse_xml(xml_text=raw.decode()))
        svrl = etree.fromstring(report.encode())
        assert svrl.find(f"{SVRL}fired-rule") is not None, name
        failed = [(f.get("id"), " ".join("".join(f.itertext()).split())) for f in svrl.iter(f"{SVRL}failed-assert")]
        assert failed == [], (name, failed)


def test_writers_refuse_what_cdar_cannot_hold() -> None:
    with pytest.raises(ValueError, match="not a CDAR flow status"):
        _flow("200")
    with pytest.raises(ValueError, match="its own invoice status"):
        _flow("501", [invoice_error_line(invoice_number="F-1", supplier_id=SUPPLIER, buyer_id=None, code="X",
                                         label="y")])
    with pytest.raises(ValueError, match="timezone"):
        _flow("500", at=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="at least one"):
        _statuses()
    with pytest.raises(ValueError, match="CDAR_OF_CPP"):
        _statuses(_entry("01"))
    with pytest.raises(ValueError, match="CDAR_OF_CPP"):
        _statuses(_entry("500"))
    with pytest.raises(ValueError, match="ICD scheme"):
        _statuses(_entry("200", supplier_id="FR12345678901", supplier_id_type="2"))


def test_cdar_of_cpp_maps_every_documented_code_and_never_moves_backwards() -> None:
    assert set(CDAR_OF_CPP) == set(INVOICE_STATUS_LABELS)
    assert set(CDAR_OF_CPP.values()) <= set(CDAR_INVOICE_STATUS_LABELS)
    for cpp, reform in CDAR_OF_CPP.items():
        assert lifecycle.is_rejection(cpp) == lifecycle.is_rejection(reform), cpp
        for later, later_reform in CDAR_OF_CPP.items():
            if lifecycle.rank(cpp) <= lifecycle.rank(later):
                assert lifecycle.rank(reform) <= lifecycle.rank(later_reform), (cpp, later)


# -- the current status (pure) -------------------------------------------------------------


def _event(id: int | None, code: str, minute: int, source: str = "chorus") -> SimpleNamespace:
    return SimpleNamespace(id=id, code=code, occurred_at=datetime(2026, 11, 2, 10, minute, tzinfo=UTC), source=source)


def test_the_current_status_is_the_furthest_along_not_the_last_arrived() -> None:
    # 01, 03, 07 stamped in that order, arriving as 07, 01, 03.
    events = [_event(1, "07", 30), _event(2, "01", 10), _event(3, "03", 20)]
    assert lifecycle.current_status(events).code == "07"
    assert lifecycle.current_status(events[1:]).code == "03"
    cdar_events = [_event(1, "211", 30), _event(2, "200", 10), _event(3, "204", 20)]
    assert lifecycle.current_status(cdar_events).code == "211"
    # Not by timestamp either: a status re-sent later, with a later stamp, is still behind.
    assert lifecycle.current_status([_event(1, "07", 20), _event(2, "03", 30)]).code == "07"
    assert lifecycle.current_status([_event(1, "211", 20), _event(2, "204", 30)]).code == "211"


def test_equal_ranks_go_to_the_latest_timestamp_then_the_latest_arrival() -> None:
    # Suspended, completed, made available again: one rank, the timestamps decide.
    cycle = [_event(1, "03", 10), _event(2, "06", 20), _event(3, "12", 30), _event(4, "03", 40)]
    assert lifecycle.current_status(cycle).id == 4
    late = [_event(1, "06", 20), _event(2, "03", 10)]  # a late 03 does not undo the suspension
    assert lifecycle.current_status(late).code == "06"
    twice = [_event(1, "03", 10), _event(2, "03", 10), _event(None, "03", 10)]
    assert lifecycle.current_status(twice).id is None  # not yet flushed: the latest
    naive = SimpleNamespace(id=9, code="06", occurred_at=datetime(2026, 11, 2, 10, 25), source="chorus")
    assert lifecycle.current_status([_event(1, "03", 20), naive]).id == 9  # naive = UTC


def test_a_rejection_is_final() -> None:
    assert lifecycle.current_status([_event(1, "11", 10), _event(2, "04", 20), _event(3, "03", 30)]).code == "04"
    assert lifecycle.current_status([_event(1, "213", 30), _event(2, "212", 40)]).code == "213"
    assert lifecycle.is_rejection("210") and not lifecycle.is_rejection("220")


def test_only_chorus_lifecycle_codes_count() -> None:
    events = [_event(1, "sent", 10, "gateway"), _event(2, "integrated", 20), _event(3, "17", 30), _event(4, "03", 5,
                                                                                                          "gateway")]
    assert lifecycle.current_status(events) is None
    assert lifecycle.current_status([*events, _event(5, "227", 1)]).code == "227"
    assert lifecycle.current_status([*events, _event(5, "227", 50), _event(6, "200", 1)]).code == "200"


# -- reconciliation on a real store --------------------------------------------------------


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    opened = Store(engine)
    try:
        yield opened
    finally:
        opened.close()


def _sent_flow(store: Store, *numbers: str) -> None:
    """A flow of these invoices, deposited and waiting for Chorus Pro."""
    with store.transaction() as tx:
        source = tx.add_source_file(channel="erp", name="x.csv", path="/x.csv", sha256="0" * 64, size=1, now=NOW)
        flow = attempts.open_flow(
            tx, now=NOW, flow_id=FLOW_ID, partner="chorus", interface_code="FSO1100A", syntax="ubl",
            file_name=f"FSO1100A_{PARTNER}_{FLOW_ID}.tar.gz", sha256="1" * 64, size=10, invoice_count=len(numbers),
        )
        for line, number in enumerate(numbers, start=2):
            invoice = tx.add_invoice(
                now=NOW, status=InvoiceStatus.PACKED, supplier_siret=SUPPLIER, invoice_number=number, issue_year=2026,
                issue_date=date(2026, 11, 1), buyer_siret=BUYER, source_file_id=source.id, source_line=line,
                channel="erp", partner="chorus", syntax="ubl",
            )
            tx.add_flow_member(flow, invoice, member_name=f"{number}.xml", sha256="2" * 64)
        attempt = attempts.start_attempt(tx, flow, transport="local", remote_name=flow.file_name, now=NOW)
        attempts.attempt_delivered(tx, flow.id, attempt.id, now=NOW, receipt="deposited")


def _reconcile(store: Store, raw: bytes) -> str:
    with store.transaction() as tx:
        report, _ = store_report(tx, raw, file_name=f"CDV_{hashlib.sha256(raw).hexdigest()[:8]}.xml",
                                 partner="chorus", now=NOW)
        return reconcile_report(tx, report.id, now=NOW)


def _invoice(store: Store, number: str = "F-1") -> SimpleNamespace:
    with store.transaction() as tx:
        [invoice] = tx.find_invoices(number=number)
        events = tx.status_events(invoice_id=invoice.id)
        current = lifecycle.current_status(events)
        return SimpleNamespace(
            status=invoice.status, reason=invoice.reason, current=current.code if current else None,
            lifecycle=[e.code for e in events if e.source == "chorus" and lifecycle.rank(e.code) is not None],
            labels={e.code: e.label for e in events},
        )


def _cpp_statuses(*codes_at: tuple[str, int]) -> bytes:
    entries = [
        InvoiceStatusEntry(SUPPLIER, "1", BUYER, "F-1", date(2026, 11, 1), code, INVOICE_STATUS_LABELS[code], None,
                           NOW + timedelta(hours=hours))
        for code, hours in codes_at
    ]
    return invoice_status_document(entries=entries, flow_id=FLOW_ID, produced_on=NOW.date(), receiver_id=PARTNER)


def test_lifecycle_out_of_order_through_reconcile(store: Store) -> None:
    """01, 03, 07 stamped in that order arrive as 07, then 01, then 03: each is appended,
    the invoice stays at 07, and each late one is logged; so is a 03 re-sent with a later stamp."""
    _sent_flow(store, "F-1")
    assert _reconcile(store, _cpp_statuses(("07", 3))) == ReportOutcome.APPLIED
    with structlog.testing.capture_logs() as logs:
        assert _reconcile(store, _cpp_statuses(("01", 1))) == ReportOutcome.APPLIED
        assert _reconcile(store, _cpp_statuses(("03", 2))) == ReportOutcome.APPLIED
        assert _reconcile(store, _cpp_statuses(("03", 4))) == ReportOutcome.APPLIED
    invoice = _invoice(store)
    assert (invoice.status, invoice.current, invoice.lifecycle) == ("integrated", "07", ["07", "01", "03", "03"])
    late = [(e["code"], e["current"], e["log_level"]) for e in logs if e["event"] == "report.status_out_of_order"]
    assert late == [("01", "07", "info"), ("03", "07", "info"), ("03", "07", "info")]


def test_cdar_flow_receivable_then_statuses_and_a_rejection_after_integration(store: Store) -> None:
    _sent_flow(store, "F-1", "F-2")
    assert _reconcile(store, _flow("500")) == ReportOutcome.APPLIED
    with store.transaction() as tx:
        flow = tx.find_flow(FLOW_ID)
        assert flow.status == FlowStatus.SENT.value  # 500 settles nothing
        assert [(e.code, e.label) for e in tx.status_events(flow_pk=flow.id)][-1] == ("500", "Recevable")
    assert _invoice(store, "F-1").status == "sent"

    at = NOW + timedelta(hours=1)
    deposited = _statuses(_entry("200", at=at), _entry("200", number="F-2", at=at), at=at)
    assert _reconcile(store, deposited) == ReportOutcome.APPLIED
    assert (_invoice(store, "F-1").status, _invoice(store, "F-2").status) == ("integrated", "integrated")

    refused = _statuses(_entry("210", comment="DEST_ERR: service inconnu", at=at + timedelta(days=3)))
    with structlog.testing.capture_logs() as logs:
        assert _reconcile(store, refused) == ReportOutcome.APPLIED
    invoice = _invoice(store, "F-1")
    assert (invoice.status, invoice.current) == ("rejected", "210")
    assert invoice.reason == "status 210 Refusée: DEST_ERR: service inconnu"
    assert any(e["event"] == "invoice.rejected" and e["log_level"] == "warning" for e in logs)
    with store.transaction() as tx:  # the business key is free for a corrected invoice
        assert not tx.has_active_invoice(SUPPLIER, "F-1", 2026)

    # A late "made available" neither moves the current status nor revives the invoice.
    with structlog.testing.capture_logs() as logs:
        assert _reconcile(store, _statuses(_entry("203", at=at + timedelta(days=1)))) == ReportOutcome.APPLIED
    invoice = _invoice(store, "F-1")
    assert (invoice.status, invoice.current, invoice.lifecycle) == ("rejected", "210", ["200", "210", "203"])
    assert [e["event"] for e in logs] == ["report.status_out_of_order", "report.applied"]
    assert _invoice(store, "F-2").status == "integrated"


def test_cdar_irrecevable_rejects_the_flow_and_its_invoices(store: Store) -> None:
    _sent_flow(store, "F-1", "F-2")
    assert _reconcile(store, _flow("501", _irrecevable_errors())) == ReportOutcome.APPLIED
    with store.transaction() as tx:
        flow = tx.find_flow(FLOW_ID)
        assert (flow.status, flow.rejected_count, flow.integrated_count) == ("rejected", 2, 0)
        assert flow.reason == "IRR_SYNTAX: le fichier n'est pas du XML; IRR_NOM_F: nom de fichier invalide"
    assert _invoice(store, "F-2").reason == flow.reason


def test_a_platform_rejection_of_a_sent_invoice(store: Store) -> None:
    _sent_flow(store, "F-1")
    assert _reconcile(store, _statuses(_entry("213", comment="DOUBLON"))) == ReportOutcome.APPLIED
    invoice = _invoice(store)
    assert (invoice.status, invoice.reason) == ("rejected", "status 213 Rejetée: DOUBLON")


def test_unknown_cdar_codes_are_unknown_and_alerted(store: Store) -> None:
    _sent_flow(store, "F-1")
    with structlog.testing.capture_logs() as logs:
        # 224 is in the French Schematron's list, but nothing says what it means.
        assert _reconcile(store, _statuses(_entry("224"))) == ReportOutcome.UNKNOWN
        assert _reconcile(store, _flow("502")) == ReportOutcome.UNKNOWN
    alerts = [e for e in logs if e["event"] == "alert.report_unknown"]
    assert [e["log_level"] for e in alerts] == ["error", "error"]
    assert "unknown status code '224'" in alerts[0]["detail"]
    assert "unknown flow status code '502'" in alerts[1]["detail"]
    invoice = _invoice(store)
    assert (invoice.status, invoice.current, invoice.labels["224"]) == ("sent", None, "unknown status code")
    with store.transaction() as tx:
        assert tx.find_flow(FLOW_ID).status == FlowStatus.SENT.value


def test_an_unknown_root_is_invalid_and_the_file_kept(store: Store) -> None:
    raw = b'<?xml version="1.0"?>\n<StatusReport xmlns="urn:example:aife-statut"><x/></StatusReport>'
    with structlog.testing.capture_logs() as logs:
        assert _reconcile(store, raw) == ReportOutcome.INVALID
    with store.transaction() as tx:
        [report] = tx.list_reports()
        assert (report.outcome, report.kind, tx.report(report.id).raw) == ("invalid", None, raw)
        assert report.detail.startswith("no parser for reports of root {urn:example:aife-statut}StatusReport")
    assert [e["event"] for e in logs] == ["alert.report_invalid"]


def test_a_siren_only_seller_is_unmatched_not_guessed(store: Store) -> None:
    """The store keys invoices by SIRET: a status naming the seller by SIREN alone is not
    matched to one of its establishments (see docs/reports.md)."""
    _sent_flow(store, "F-1")
    raw = _statuses(_entry("200", supplier_id=SUPPLIER[:9], supplier_id_type="0002"))
    assert _reconcile(store, raw) == ReportOutcome.UNMATCHED
    assert _invoice(store).status == "sent"
