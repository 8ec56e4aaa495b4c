"""Reports stage: read a CDAR D22B lifecycle message (the reform's "CDV", Flux 6).

``parse_report`` parses safely (``gateway.xml.safe``), validates against the
project's own ``schemas/cdar-status.xsd``, then reads each
``AcknowledgementDocument/ReferenceReferencedDocument``: its status code
(``ProcessConditionCode``, MDT-105) says whether it is about a whole flow (5xx: 500
recevable, 501 irrecevable → ``FlowStatusEntry``) or about one invoice (200–227 →
``InvoiceStatusEntry``). What it does not do is the same as ``cppstatut.py``: no
decision on what a code means, no store, no disk. Layout, field by field: docs/reports.md
"CDAR D22B".

Where the French profile leaves the encoding open, the choices are inferred [I] and
written down here and in docs/reports.md: a date-time without offset is French time
(like CPPStatut's), and a status's reason code and text read as one comment,
``"<code>: <text>"`` (``format_reason``).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

from lxml import etree

from gateway.errors import ReportError
from gateway.reports import model
from gateway.reports.cppstatut import NAIVE_TIMEZONE
from gateway.reports.model import NATURE_FLOW, ErrorLine, FlowStatusEntry, InvoiceStatusEntry, ParsedReport
from gateway.resources import schema_path
from gateway.xml import safe

RSM = "urn:un:unece:uncefact:data:standard:CrossDomainAcknowledgementAndResponse:100"
RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
UDT = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
QDT = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
NS = {"rsm": RSM, "ram": RAM, "udt": UDT, "qdt": QDT}
ROOT = f"{{{RSM}}}CrossDomainAcknowledgementAndResponse"
SCHEMA_NAME = "cdar-status.xsd"

#: Status codes about a whole flow: the reform numbers them 5xx (500, 501).
FLOW_CODE = re.compile(r"5[0-9]{2}")
#: ICD schemes of party identifiers (reform rule G1.73): SIREN, SIRET, platform id.
SIREN_SCHEME = "0002"
SIRET_SCHEME = "0009"
PLATFORM_SCHEME = "0238"
#: ``InvoiceStatusEntry.supplier_id_type`` of a SIRET: CPPStatut's TypeIdentifiant 1,
#: so that a supplier reads the same whatever the format.
SIRET_TYPE = "1"

_REASON = re.compile(r"(?P<code>[A-Z][A-Z0-9_]*)(?:: (?P<text>\S(?:.*\S)?))?", re.DOTALL)


def format_reason(code: str | None, text: str | None) -> str | None:
    """A status reason as one comment: ``"<code>: <text>"``, or either alone.

    >>> format_reason("DOUBLON", "Facture en double"), format_reason(None, "vu"), format_reason(None, None)
    ('DOUBLON: Facture en double', 'vu', None)
    """
    if code and text:
        return f"{code}: {text}"
    return code or text or None


def split_reason(comment: str) -> tuple[str | None, str | None]:
    """The inverse of ``format_reason``: (reason code, text).

    >>> split_reason("DOUBLON: Facture en double"), split_reason("IRR_SYNTAX"), split_reason("En attente")
    (('DOUBLON', 'Facture en double'), ('IRR_SYNTAX', None), (None, 'En attente'))
    """
    match = _REASON.fullmatch(comment)
    if match is None:
        return None, comment
    return match["code"], match["text"]


def parse_report(raw: bytes) -> ParsedReport:
    """Parse and validate one CDAR D22B message.

    Raises ``ReportError`` when the bytes are not well-formed XML, carry a DOCTYPE,
    are not valid against ``schemas/cdar-status.xsd``, or hold a date the reader
    cannot place; the message names the line.
    """
    root = _valid_root(raw)
    document = root.find("rsm:ExchangedDocument", NS)
    issued = _datetime(document.find("ram:IssueDateTime", NS))
    flows: list[FlowStatusEntry] = []
    invoices: list[InvoiceStatusEntry] = []
    for acknowledgement in root.iterfind("rsm:AcknowledgementDocument", NS):
        # When the status was given: the acknowledgement's date, else the message's.
        stamped = acknowledgement.find("ram:IssueDateTime", NS)
        timestamp = _datetime(stamped) if stamped is not None else issued
        for reference in acknowledgement.iterfind("ram:ReferenceReferencedDocument", NS):
            code = _text(reference, "ram:ProcessConditionCode") or ""
            if FLOW_CODE.fullmatch(code):
                flows.append(_flow_status(reference, code, timestamp))
            else:
                invoices.append(_invoice_status(reference, code, timestamp))
    recipient = document.find("ram:RecipientTradeParty", NS)
    return ParsedReport(
        # A message naming a flow status is one about the flow, even if it also holds invoice statuses.
        kind="flow-status" if flows else "invoice-status",
        envelope_flow_id=_text(document, "ram:ID"),
        produced_on=issued.date(),
        sender_id=_party_id(document.find("ram:SenderTradeParty", NS))[0],
        receiver_id=_party_id(recipient)[0],
        flow_statuses=tuple(flows),
        invoice_statuses=tuple(invoices),
    )


def validate_document(raw: bytes) -> None:
    """Check that bytes are a safe, schema-valid CDAR message (or raise ``ReportError``)."""
    _valid_root(raw)


# -- validation --------------------------------------------------------------------------


def _valid_root(raw: bytes) -> etree._Element:
    """The root of a safe (``gateway.xml.safe``), schema-valid CDAR message; ``ReportError``
    naming the line otherwise."""
    try:
        root = safe.parse(raw, limit=model.MAX_REPORT_BYTES, what="report").getroot()
        safe.assert_valid(root, schema_path(SCHEMA_NAME), "CDAR D22B", _prefixed)
    except (safe.UnsafeXml, safe.Invalid) as exc:
        raise ReportError(exc.message) from exc
    return root


def _prefixed(message: str) -> str:
    """A schema error with ``ram:ReasonCode`` instead of ``{urn:un:unece:…:100}ReasonCode``."""
    for prefix, namespace in NS.items():
        message = message.replace(f"{{{namespace}}}", f"{prefix}:")
    return message


# -- extraction --------------------------------------------------------------------------


def _flow_status(reference: etree._Element, code: str, timestamp: datetime) -> FlowStatusEntry:
    return FlowStatusEntry(
        flow_id=_text(reference, "ram:IssuerAssignedID") or "",
        code=code,
        label=_joined(reference, "ram:ProcessCondition"),
        comment=None,  # CDAR has no free comment on the status itself: reasons are error lines
        timestamp=timestamp,
        errors=tuple(
            _error_line(status)
            for status in reference.iterfind("ram:SpecifiedDocumentStatus", NS)
            if status.find("ram:ReasonCode", NS) is not None or status.find("ram:Reason", NS) is not None
        ),
    )


def _error_line(status: etree._Element) -> ErrorLine:
    """One status detail (MDG-37) of a flow status: its reason code (MDT-113) and text."""
    return ErrorLine(
        nature=NATURE_FLOW,
        code=_text(status, "ram:ReasonCode") or "",
        label=_joined(status, "ram:Reason") or "",
        description=_joined(status, "ram:ReasonInformation"),
    )


def _invoice_status(reference: etree._Element, code: str, timestamp: datetime) -> InvoiceStatusEntry:
    supplier_id, supplier_type = _party_id(reference.find("ram:IssuerTradeParty", NS))
    invoice_date = reference.find("ram:FormattedIssueDateTime/qdt:DateTimeString", NS)
    reasons = [
        format_reason(_text(status, "ram:ReasonCode"), _joined(status, "ram:Reason"))
        for status in reference.iterfind("ram:SpecifiedDocumentStatus", NS)
    ]
    return InvoiceStatusEntry(
        supplier_id=supplier_id,
        supplier_id_type=supplier_type,
        buyer_id=_party_id(_buyer(reference))[0],
        invoice_number=_text(reference, "ram:IssuerAssignedID") or "",
        invoice_date=_formatted_date(invoice_date) if invoice_date is not None else None,
        code=code,
        label=_joined(reference, "ram:ProcessCondition"),
        comment="; ".join(reason for reason in reasons if reason) or None,
        timestamp=timestamp,
    )


def _buyer(reference: etree._Element) -> etree._Element | None:
    """The recipient with the buyer's role (BY), else the first recipient."""
    recipients = reference.findall("ram:RecipientTradeParty", NS)
    for party in recipients:
        if _text(party, "ram:RoleCode") == "BY":
            return party
    return recipients[0] if recipients else None


def _party_id(party: etree._Element | None) -> tuple[str, str]:
    """(identifier, type) of a trade party: its SIRET first (type "1", as in CPPStatut),
    else its first global id (type = the ICD scheme), else its first plain id."""
    if party is None:
        return "", ""
    ids = party.findall("ram:GlobalID", NS) + party.findall("ram:ID", NS)
    for element in ids:
        if element.get("schemeID") == SIRET_SCHEME and (element.text or "").strip():
            return element.text.strip(), SIRET_TYPE
    for element in ids:
        if (element.text or "").strip():
            return element.text.strip(), element.get("schemeID") or ""
    return "", ""


def _text(parent: etree._Element, path: str) -> str | None:
    """Stripped text of a child; None when absent or blank."""
    found = parent.find(path, NS)
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def _joined(parent: etree._Element, path: str) -> str | None:
    """The stripped texts of a repeatable child, joined by "; "; None when there is none."""
    texts = [(found.text or "").strip() for found in parent.iterfind(path, NS)]
    if not texts:
        return None
    return "; ".join(text for text in texts if text) or None


# -- dates -------------------------------------------------------------------------------

#: UNTDID 2379 date/time formats a ``DateTimeString`` may use (the French profile writes
#: 204 for date-times and 102 for dates): the shape of each.
_FORMATS = {
    "102": re.compile(r"(?P<year>[0-9]{4})(?P<month>[0-9]{2})(?P<day>[0-9]{2})"),
    "203": re.compile(r"(?P<year>[0-9]{4})(?P<month>[0-9]{2})(?P<day>[0-9]{2})(?P<hour>[0-9]{2})(?P<minute>[0-9]{2})"),
    "204": re.compile(
        r"(?P<year>[0-9]{4})(?P<month>[0-9]{2})(?P<day>[0-9]{2})(?P<hour>[0-9]{2})(?P<minute>[0-9]{2})"
        r"(?P<second>[0-9]{2})"
    ),
    "205": re.compile(
        r"(?P<year>[0-9]{4})(?P<month>[0-9]{2})(?P<day>[0-9]{2})(?P<hour>[0-9]{2})(?P<minute>[0-9]{2})"
        r"(?P<sign>[+-])(?P<offset_hours>[0-9]{2})(?P<offset_minutes>[0-9]{2})"
    ),
}
#: A ``DateTimeString`` without ``@format`` is read by its length.
_BY_LENGTH = {8: "102", 12: "203", 14: "204", 17: "205"}
_FIELDS = ("year", "month", "day", "hour", "minute", "second")
_XS_DATETIME = re.compile(r"(?P<date>\d{4}-\d\d-\d\d)T(?P<time>\d\d:\d\d:\d\d)(?P<fraction>\.\d+)?(?P<zone>.*)")


def _datetime(element: etree._Element) -> datetime:
    """A ``udt:DateTimeType`` as an aware datetime; a time without offset is French time [I]."""
    string = element.find("udt:DateTimeString", NS)
    if string is not None:
        return _formatted(string)
    return _xs_datetime(element.find("udt:DateTime", NS))


def _formatted(string: etree._Element) -> datetime:
    """A ``DateTimeString`` in one of ``_FORMATS``; without an offset, in French time [I]."""
    text = (string.text or "").strip()
    code = string.get("format") or _BY_LENGTH.get(len(text), "")
    if code not in _FORMATS:
        known = ", ".join(_FORMATS)
        raise ReportError(f"line {string.sourceline}: date-time format {code or '(none)'} is not one of {known}")
    match = _FORMATS[code].fullmatch(text)
    try:
        if match is None:
            raise ValueError(f"not in format {code}")
        fields = match.groupdict()
        zone = NAIVE_TIMEZONE
        if "sign" in fields:
            offset = timedelta(hours=int(fields["offset_hours"]), minutes=int(fields["offset_minutes"]))
            zone = timezone(-offset if fields["sign"] == "-" else offset)
        return datetime(*(int(fields[name]) for name in _FIELDS if name in fields), tzinfo=zone)
    except ValueError as exc:
        raise ReportError(f"line {string.sourceline}: date-time {text!r}: {exc}") from exc


def _xs_datetime(element: etree._Element) -> datetime:
    """An xs:dateTime (already checked by the schema); fractions beyond microseconds are cut."""
    text = (element.text or "").strip()
    match = _XS_DATETIME.fullmatch(text)
    if match is None:
        raise ReportError(f"line {element.sourceline}: date-time {text!r} is outside the supported range")
    midnight = match["time"] == "24:00:00"  # xs:dateTime allows it; Python does not
    time = "00:00:00" if midnight else match["time"]
    try:
        value = datetime.fromisoformat(f"{match['date']}T{time}{(match['fraction'] or '')[:7]}{match['zone']}")
    except ValueError as exc:
        raise ReportError(f"line {element.sourceline}: date-time {text!r}: {exc}") from exc
    value += timedelta(days=1) if midnight else timedelta()
    return value if value.tzinfo is not None else value.replace(tzinfo=NAIVE_TIMEZONE)


def _formatted_date(string: etree._Element) -> date:
    """The invoice's issue date (MDG-35): format 102, or the date part of a date-time."""
    return _formatted(string).date()
