"""Chorus Pro vocabulary shared by every stage: syntaxes, statuses and their labels.

Values keep the spelling used in the store and in reports; see ../shared/DOMAIN.md.
What each syntax is (interface code, roots, XSD, stylesheet…) is ``gateway.xml.syntax``.
"""

from __future__ import annotations

import enum


class Syntax(enum.StrEnum):
    """Target syntax of an invoice file inside a flow."""

    UBL = "ubl"  #: UBL 2.1 Invoice / CreditNote
    CII = "cii"  #: UN/CEFACT Cross Industry Invoice D16B
    CPP = "cpp"  #: CPP Facture Mixte: minimal data + the invoice PDF (E2)
    FACTURX = "facturx"  #: Factur-X EN 16931: the invoice PDF with its CII embedded (E2)


#: Syntaxes a channel can send today; the E2 ones are produced by ``gateway map`` only
#: until packaging, validation and the sandbox take PDFs and CPP files (issues 4–5).
CHANNEL_SYNTAXES = (Syntax.UBL, Syntax.CII)


class SourceFileStatus(enum.StrEnum):
    RECEIVED = "received"  #: seen in a watched directory, hash recorded
    PROCESSED = "processed"  #: every invoice accepted (valid, or invalid and quarantined)
    QUARANTINED = "quarantined"  #: unreadable as a whole: nothing of it goes further


class InvoiceStatus(enum.StrEnum):
    VALID = "valid"  #: mapped and validated, waiting for a flow
    QUARANTINED = "quarantined"  #: bad input or invalid: held back with a reason
    #: a validation layer could not run (crash, time budget, rule set missing): neither
    #: valid nor invalid; validated again once the validator is healthy
    VALIDATION_ERROR = "validation-error"
    PACKED = "packed"  #: member of a flow that is not yet sent
    SENT = "sent"  #: its flow was deposited
    INTEGRATED = "integrated"  #: Chorus Pro integrated it
    REJECTED = "rejected"  #: Chorus Pro rejected it (reason kept)
    #: was quarantined; a later export of the same invoice (the operator's fix dropped back)
    #: took its place, and ``corrects`` links that one to it
    CORRECTED = "corrected"


#: Statuses that hold the business key: a second invoice with the same key is a duplicate.
ACTIVE_INVOICE_STATUSES = frozenset(
    {InvoiceStatus.VALID, InvoiceStatus.PACKED, InvoiceStatus.SENT, InvoiceStatus.INTEGRATED}
)


class ValidatorFailure(enum.StrEnum):
    """Why a validation layer could not run: what decides whether a validation-error invoice is
    validated again at a later pass."""

    UNAVAILABLE = "unavailable"  #: crashed, rule set missing or altered: again once the validator is healthy
    TIME_BUDGET = "time_budget"  #: ran out of its time budget: not again (it would stall each pass)


class FlowStatus(enum.StrEnum):
    PACKED = "packed"  #: archive written and hashed; no attempt yet
    SENDING = "sending"  #: an attempt is in progress
    SENT = "sent"  #: deposited; waiting for the integration report
    INTEGRATED = "integrated"  #: CR 90: every invoice integrated
    PARTIALLY_INTEGRATED = "partially_integrated"  #: CR 96: some invoices rejected
    REJECTED = "rejected"  #: CR 93: the whole flow rejected
    FAILED = "failed"  #: could not be deposited, or Chorus Pro reported it did not get through (94, 95)


class FlowEvent(enum.StrEnum):
    """What moves a flow: the events of the state machine (``pipeline/attempts.py`` holds its table)."""

    PACK = "pack"  #: its invoices were packed into it
    ATTEMPT = "attempt"  #: an attempt to deposit it starts (the claim)
    DELIVERED = "delivered"  #: the partner took it: a deposit, a good MDN, or found there after a restart
    ATTEMPT_FAILED = "attempt_failed"  #: the attempt failed and another is due after a backoff
    GIVE_UP = "give_up"  #: the attempt failed and no other is made: max attempts, not retryable, MDN refused
    RETRY = "retry"  #: the operator asked for it to be sent again (`gateway flows retry`)
    REPORTED_INTEGRATED = "reported_integrated"  #: CR 90
    REPORTED_PARTIALLY_INTEGRATED = "reported_partially_integrated"  #: CR 96
    REPORTED_REJECTED = "reported_rejected"  #: CR 93, CDAR 501
    REPORTED_FAILED = "reported_failed"  #: CR 94, 95: it did not get through


class AttemptOutcome(enum.StrEnum):
    """Where an attempt to deposit a flow (a ``transmissions`` row) stands."""

    IN_PROGRESS = "in_progress"  #: the bytes may be on their way; settled by a receipt, or after a restart
    SUCCEEDED = "succeeded"  #: the partner took the flow
    FAILED = "failed"  #: it did not; the evidence is kept


class InboundOutcome(enum.StrEnum):
    """What became of a request a partner sent to ``gateway serve`` (an ``inbound_messages`` row)."""

    RECEIVED = "received"  #: kept, not yet judged: left so by a crash, it was never processed
    ACCEPTED = "accepted"  #: an MDN that ended its attempt, or a report stored
    REFUSED = "refused"  #: kept as evidence, and answered with why


def flow_next_step(status: str, flow_id: str) -> str | None:
    """What the operator does next about a flow in ``status``; None while the gateway is on it.

    >>> flow_next_step("failed", "AAA1231100000000000000001")
    'fix the cause, then: gateway flows retry AAA1231100000000000000001'
    >>> flow_next_step("sent", "AAA1231100000000000000001") is None
    True
    """
    if status == FlowStatus.FAILED:
        return f"fix the cause, then: gateway flows retry {flow_id}"
    if status == FlowStatus.REJECTED:
        return "correct the invoices in the ERP and export them again (each is linked to the one it corrects)"
    if status == FlowStatus.PARTIALLY_INTEGRATED:
        return "correct the rejected invoices in the ERP and export them again"
    return None


class ReportOutcome(enum.StrEnum):
    APPLIED = "applied"  #: parsed and reconciled
    UNMATCHED = "unmatched"  #: parsed but names no known flow or invoice
    UNKNOWN = "unknown"  #: parsed but carries a status code we do not know
    INVALID = "invalid"  #: could not be parsed or is not schema-valid


#: DOMAIN.md §2: CPPStatut flow statuses.
FLOW_STATUS_LABELS = {
    "90": "Reçu",
    "91": "En cours de transmission",
    "92": "Reçu destinataire final",
    "93": "Erreur réception",
    "94": "Erreur réception destinataire final",
    "95": "Erreur de transmission",
    "96": "Reçu – intégration partielle",
}

#: DOMAIN.md §2: CPPStatut invoice statuses with a documented meaning (13–41 are not).
INVOICE_STATUS_LABELS = {
    "01": "Déposée",
    "02": "En cours d'acheminement",
    "03": "Mise à disposition",
    "04": "Rejetée (données d'acheminement)",
    "05": "Rejetée (autre motif)",
    "06": "Suspendue",
    "07": "Service fait",
    "08": "Mandatée",
    "09": "Mise à disposition du comptable",
    "10": "Comptabilisée",
    "11": "Mise en paiement",
    "12": "Complétée",
}

#: DOMAIN.md §2.3 [C] and research/chorus-edi.md §7 (the reform's Annexe 2 "Statuts"
#: and AIFE's Chorus Pro correspondence annex V1.0): CDAR D22B lifecycle statuses of an
#: invoice. 200, 210, 212 and 213 are the mandatory ones. 224–226 and 228 are in the
#: French CDV Schematron's list (BR-FR-CDV-CL-06) with no documented meaning: like
#: CPPStatut's 13–41 they stay unknown, so they raise an alert.
CDAR_INVOICE_STATUS_LABELS = {
    "200": "Déposée",
    "201": "Émise par la plateforme",
    "202": "Reçue par la plateforme",
    "203": "Mise à disposition",
    "204": "Prise en charge",
    "205": "Approuvée",
    "206": "Approuvée partiellement",
    "207": "En litige",
    "208": "Suspendue",
    "209": "Complétée",
    "210": "Refusée",
    "211": "Paiement transmis",
    "212": "Encaissée",
    "213": "Rejetée",
    "214": "Visée",
    "220": "Annulée",
    "221": "Erreur routage",
    "227": "Changement de compte à payer",
}

#: The same sources: CDAR statuses of a whole deposited flow.
CDAR_FLOW_STATUS_LABELS = {
    "500": "Recevable",
    "501": "Irrecevable",
}
