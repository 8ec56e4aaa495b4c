"""Sandbox stage: write the CDAR D22B lifecycle messages the reform's Chorus Pro sends back.

Two writers, the mirror of ``gateway.reports.cdar``: a flow status (500 recevable,
501 irrecevable, with its reasons) and invoice statuses (200–227). Each output is
checked against the project's ``schemas/cdar-status.xsd`` before it is returned, and
the tests check it against the official D22B XSD too, so the sandbox can never answer
with a message the gateway's parser would refuse for its form.

What they write follows the French CDV profile (BR-FR-CDV Schematron v1.4): profile
``urn.cpro.gouv.fr:1p0:CDV:invoice``, dates in format 204 (YYYYMMDDHHMMSS, French
time) and 102, the platforms identified by scheme 0238 with role WK, the seller by
SIREN (0002) and SIRET (0009) with role SE, a reason code (MDT-113) and its text in
``SpecifiedDocumentStatus``. The message's issuer (MDT-40) is the platform for
statuses of the transmission phase (200–203, 213, 221, and flow statuses) and the
buyer for those of the processing phase (204–212…), as BR-FR-CDV-CL-03 wants. The
profile has one issuer per message, so a message mixing both phases, or processing
statuses of several buyers, cannot satisfy it; the sandbox still writes such a
message (the platform as issuer): it is valid against the XSD, and the gateway reads
it the same.

Pure: no I/O, no clock. It does not decide which status to send; the simulator does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime

from lxml import etree

from gateway.errors import ReportError
from gateway.reports.cdar import (
    FLOW_CODE,
    NS,
    PLATFORM_SCHEME,
    QDT,
    RAM,
    RSM,
    SIREN_SCHEME,
    SIRET_SCHEME,
    SIRET_TYPE,
    UDT,
    split_reason,
    validate_document,
)
from gateway.reports.cppstatut import NAIVE_TIMEZONE
from gateway.reports.model import NATURE_FLOW, ErrorLine, InvoiceStatusEntry

#: Chorus Pro's platform id in the reform's directory (research/anchors.md), scheme 0238.
CHORUS_PLATFORM_ID = "9999"

#: The reform's code for each CPPStatut lifecycle code the sandbox may emit [I].
#: Grounded in AIFE's Chorus Pro correspondence annex V1.0 (research/chorus-edi.md §7):
#: Chorus Pro sends invoice statuses 203, 204, 208, 210, 211 (FEN1204A) and 202, 213
#: (FEN1214A). So the buyer's steps up to the payment order (07 service fait, 08
#: mandatée, 09 and 10 at the public accountant) all read as 204 "Prise en charge", and
#: a rejection by the buyer's authorising officer (04, 05) is 210 "Refusée" — 213
#: "Rejetée" is the platform's own rejection (integration errors). 01 → 200 and
#: 12 → 209 are the statuses of the same meaning, though in the reform the supplier's
#: side emits them. The map never moves an invoice backwards: a later CPP code maps to
#: a code of the same or a higher rank (``gateway.reports.lifecycle``).
CDAR_OF_CPP: dict[str, str] = {
    "01": "200",  # Déposée
    "02": "202",  # En cours d'acheminement → Reçue par la plateforme
    "03": "203",  # Mise à disposition
    "04": "210",  # Rejetée (données d'acheminement) → Refusée
    "05": "210",  # Rejetée (autre motif) → Refusée
    "06": "208",  # Suspendue
    "07": "204",  # Service fait → Prise en charge
    "08": "204",  # Mandatée → Prise en charge
    "09": "204",  # Mise à disposition du comptable → Prise en charge
    "10": "204",  # Comptabilisée → Prise en charge
    "11": "211",  # Mise en paiement → Paiement transmis
    "12": "209",  # Complétée
}

#: MDT-3: the CDV profile for statuses exchanged between platforms.
GUIDELINE = "urn.cpro.gouv.fr:1p0:CDV:invoice"
#: MDT-2: invoices in the scope of the reform (B2B and B2G in France).
BUSINESS_PROCESS = "REGULATED"
#: MDT-77: statuses of the transmission phase (the platforms' own) are typed 305, those
#: of the processing phase (the buyer's and the seller's) 23 (BR-FR-CDV-09, CL-05).
_TRANSMISSION_PHASE = frozenset({"200", "201", "202", "203", "213", "221"})
_TRANSMISSION, _PROCESSING = "305", "23"
_ROLE_PLATFORM, _ROLE_SELLER, _ROLE_BUYER = "WK", "SE", "BY"
_CODE = re.compile(r"[0-9]{3}")


def cdar_flow_status(
    *,
    flow_id: str,
    code: str,
    label: str,
    errors: Sequence[ErrorLine],
    produced_at: datetime,
    sender: str,
    receiver: str,
) -> bytes:
    """A CDAR message with the status of one deposited flow (500, 501) and its reasons.

    Each error line becomes a status detail: ``code`` → ``ReasonCode`` (for a 501, the
    profile's IRR_* codes), ``label`` → ``Reason``, ``description`` → ``ReasonInformation``.
    Raises ``ValueError`` for a code that is not a flow status (5xx), for a per-invoice
    error line (in CDAR an invoice's rejection is its own 213 status), or a naive time.
    The time is written to the second (format 204).
    """
    if not FLOW_CODE.fullmatch(code):
        raise ValueError(f"flow status {code!r} is not a CDAR flow status (500, 501, …)")
    for error in errors:
        if error.invoice_number is not None or error.nature != NATURE_FLOW:
            raise ValueError(
                f"error line {error.code!r} is about invoice {error.invoice_number!r}: in CDAR an invoice's "
                "rejection travels as its own invoice status (213), not inside the flow status"
            )
    root = _message(f"{flow_id}-{code}", produced_at, sender=sender, receiver=receiver)
    acknowledgement = _acknowledgement(root, _TRANSMISSION, produced_at)
    reference = _sub(acknowledgement, "ReferenceReferencedDocument")
    _sub(reference, "IssuerAssignedID", flow_id)
    if code != "501":  # MDG-35 is required except for an irrecevable flow (BR-FR-CDV-11)
        _date_102(reference, produced_at)
    _sub(reference, "ProcessConditionCode", code)
    _sub(reference, "ProcessCondition", label)
    for position, error in enumerate(errors, start=1):
        _status_detail(reference, error.code or None, error.label, error.description, position)
    return _serialise(root)


def cdar_invoice_statuses(
    *,
    flow_id: str,
    entries: Sequence[InvoiceStatusEntry],
    produced_at: datetime,
    sender: str,
    receiver: str,
) -> bytes:
    """A CDAR message with invoice statuses, one ``AcknowledgementDocument`` each, in order.

    An entry's ``comment`` is written as the status's reason: ``"DOUBLON: text"`` gives
    the reason code DOUBLON (MDT-113) and its text; the French profile wants a reason
    code for 206, 207, 208, 210 and 213. Its ``supplier_id_type`` is "1" for a SIRET
    (written with its SIREN, scheme 0002, and itself, scheme 0009) or an ICD scheme
    (written as is). Times are written to the second (format 204).

    Raises ``ValueError`` when there is no entry, for a code that is not a three-digit
    invoice status (map CPPStatut codes with ``CDAR_OF_CPP``), or for a naive time.
    """
    if not entries:
        raise ValueError("a CDAR lifecycle message needs at least one invoice status")
    for entry in entries:
        if not _CODE.fullmatch(entry.code) or FLOW_CODE.fullmatch(entry.code):
            raise ValueError(
                f"invoice status {entry.code!r} is not a CDAR invoice status (200–227); "
                "CPPStatut codes map through CDAR_OF_CPP"
            )
    stamp = _aware(produced_at).astimezone(NAIVE_TIMEZONE).strftime("%Y%m%d%H%M%S")
    root = _message(f"{flow_id}-CDV-{stamp}", produced_at, sender=sender, receiver=receiver, buyer=_issuer(entries))
    for entry in entries:
        _invoice_status(root, entry)
    return _serialise(root)


# -- building blocks ---------------------------------------------------------------------


def _message(
    message_id: str, produced_at: datetime, *, sender: str, receiver: str, buyer: str | None = None
) -> etree._Element:
    """The root, the profile and the message header (MDG-4, MDG-9, recipients); the issuer
    is ``buyer`` (a SIRET) when given, else the platform."""
    root = etree.Element(f"{{{RSM}}}CrossDomainAcknowledgementAndResponse", nsmap=NS)
    context = etree.SubElement(root, f"{{{RSM}}}ExchangedDocumentContext")
    _sub(_sub(context, "BusinessProcessSpecifiedDocumentContextParameter"), "ID", BUSINESS_PROCESS)
    _sub(_sub(context, "GuidelineSpecifiedDocumentContextParameter"), "ID", GUIDELINE)
    document = etree.SubElement(root, f"{{{RSM}}}ExchangedDocument")
    _sub(document, "ID", message_id)
    _date_time(document, "IssueDateTime", produced_at)
    _party(document, "SenderTradeParty", [(PLATFORM_SCHEME, sender)], _ROLE_PLATFORM)
    if buyer is None:
        _party(document, "IssuerTradeParty", [], _ROLE_PLATFORM)
    else:
        _party(document, "IssuerTradeParty", [(SIRET_SCHEME, buyer)], _ROLE_BUYER)
    _party(document, "RecipientTradeParty", [(PLATFORM_SCHEME, receiver)], _ROLE_PLATFORM)
    return root


def _acknowledgement(root: etree._Element, type_code: str, stamped_at: datetime) -> etree._Element:
    acknowledgement = etree.SubElement(root, f"{{{RSM}}}AcknowledgementDocument")
    indicator = _sub(acknowledgement, "MultipleReferencesIndicator")
    etree.SubElement(indicator, f"{{{UDT}}}Indicator").text = "false"
    _sub(acknowledgement, "TypeCode", type_code)
    _date_time(acknowledgement, "IssueDateTime", stamped_at)
    return acknowledgement


def _issuer(entries: Sequence[InvoiceStatusEntry]) -> str | None:
    """The buyer that issues a message of processing-phase statuses only, all of one buyer."""
    buyers = {entry.buyer_id for entry in entries}
    processing = all(entry.code not in _TRANSMISSION_PHASE for entry in entries)
    return buyers.pop() if processing and len(buyers) == 1 and "" not in buyers else None


def _invoice_status(root: etree._Element, entry: InvoiceStatusEntry) -> None:
    phase = _TRANSMISSION if entry.code in _TRANSMISSION_PHASE else _PROCESSING
    reference = _sub(_acknowledgement(root, phase, entry.timestamp), "ReferenceReferencedDocument")
    _sub(reference, "IssuerAssignedID", entry.invoice_number)
    if entry.invoice_date is not None:
        _date_102(reference, entry.invoice_date)
    _sub(reference, "ProcessConditionCode", entry.code)
    if entry.label is not None:
        _sub(reference, "ProcessCondition", entry.label)
    _party(reference, "IssuerTradeParty", _supplier_ids(entry), _ROLE_SELLER)
    if entry.buyer_id:
        buyer_scheme = SIRET_SCHEME if re.fullmatch(r"[0-9]{14}", entry.buyer_id) else None
        _party(reference, "RecipientTradeParty", [(buyer_scheme, entry.buyer_id)], _ROLE_BUYER)
    if entry.comment is not None:
        reason_code, text = split_reason(entry.comment)
        _status_detail(reference, reason_code, text, None, 1)


def _supplier_ids(entry: InvoiceStatusEntry) -> list[tuple[str | None, str]]:
    """MDT-129: the seller's legal id (its SIREN) and, for the gateway's matching, its SIRET."""
    if entry.supplier_id_type == SIRET_TYPE:
        siren = [(SIREN_SCHEME, entry.supplier_id[:9])] if re.fullmatch(r"[0-9]{14}", entry.supplier_id) else []
        return [*siren, (SIRET_SCHEME, entry.supplier_id)]
    if re.fullmatch(r"[0-9]{4}", entry.supplier_id_type) and entry.supplier_id_type != SIRET_SCHEME:
        return [(entry.supplier_id_type, entry.supplier_id)]
    raise ValueError(
        f"supplier id type {entry.supplier_id_type!r}: CDAR identifies a seller by an ICD scheme; "
        "give '1' for a SIRET or the scheme itself (0002 SIREN, …)"
    )


def _status_detail(
    reference: etree._Element, code: str | None, text: str | None, information: str | None, position: int
) -> None:
    """MDG-37: a reason code (MDT-113), its text, more information, and its number (MDT-124-2)."""
    status = _sub(reference, "SpecifiedDocumentStatus")
    if code is not None:
        _sub(status, "ReasonCode", code)
    if text is not None:
        _sub(status, "Reason", text)
    if information is not None:
        _sub(status, "ReasonInformation", information)
    _sub(status, "SequenceNumeric", str(position))


def _party(parent: etree._Element, tag: str, ids: list[tuple[str | None, str]], role: str) -> None:
    party = _sub(parent, tag)
    for scheme, value in ids:
        global_id = _sub(party, "GlobalID", value)
        if scheme is not None:
            global_id.set("schemeID", scheme)
    _sub(party, "RoleCode", role)


def _date_time(parent: etree._Element, tag: str, value: datetime) -> None:
    string = etree.SubElement(_sub(parent, tag), f"{{{UDT}}}DateTimeString", format="204")
    string.text = _aware(value).astimezone(NAIVE_TIMEZONE).strftime("%Y%m%d%H%M%S")


def _date_102(reference: etree._Element, value: date) -> None:
    """MDG-35, the referenced document's date; a date-time gives its French calendar day."""
    string = etree.SubElement(_sub(reference, "FormattedIssueDateTime"), f"{{{QDT}}}DateTimeString", format="102")
    day = _aware(value).astimezone(NAIVE_TIMEZONE).date() if isinstance(value, datetime) else value
    string.text = day.strftime("%Y%m%d")


def _sub(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    """Append ``<ram:tag>text</ram:tag>``."""
    child = etree.SubElement(parent, f"{{{RAM}}}{tag}")
    if text is not None:
        child.text = text
    return child


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"time {value.isoformat()} has no timezone; CDAR times must be unambiguous")
    return value


def _serialise(root: etree._Element) -> bytes:
    raw = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    try:
        validate_document(raw)
    except ReportError as exc:
        # A bug in the caller (an impossible value), not a runtime condition.
        raise ValueError(f"refusing to write an invalid CDAR message: {exc.message}") from exc
    return raw
