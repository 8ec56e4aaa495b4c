"""Lifecycle: an invoice's current status, derived from its whole history.

Lifecycle files can come late, twice, or in another order than Chorus Pro wrote them
(a file resent, two transfer passes picking files up in another order). The history
keeps every status as it came. The *current* status is derived from it:

1. the status furthest along the lifecycle (its **rank**, below) wins, whatever the
   order of arrival: a late 03 after a 07 stays in the history, and the invoice stays
   at 07;
2. between statuses of equal rank, the one Chorus Pro stamped last wins (CPPStatut
   ``Horodatage``, CDAR ``IssueDateTime``): this is how a suspension and the
   completion that follows it are told apart;
3. then the one recorded last (the event's id).

Pure: no store, no clock. ``current_status`` takes any objects with ``code``,
``occurred_at``, ``id`` and ``source`` (the store's status events have them)
and considers only Chorus Pro's statuses with a known rank; the gateway's own events
("sent", "integrated") and unknown codes are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Protocol, TypeVar

#: The ``source`` of the status events Chorus Pro stated.
LIFECYCLE_SOURCE = "chorus"


class LifecycleEvent(Protocol):
    """What ``current_status`` reads of a status event."""

    @property
    def code(self) -> str: ...

    @property
    def occurred_at(self) -> datetime: ...

    @property
    def id(self) -> int | None: ...

    @property
    def source(self) -> str: ...


E = TypeVar("E", bound=LifecycleEvent)

# -- ranks ------------------------------------------------------------------------------
# One scale for both formats, so that a history holding CPPStatut and CDAR statuses (the
# switch-over) still has one current status. Stages, in the order an invoice goes
# through them:

INFORMATION = 0  #: says nothing about progress; current only when nothing else is known
DEPOSITED = 10
IN_TRANSIT = 20
#: At the buyer, being processed. Suspension and completion cycle back here (CPP
#: 03 → 06 → 12 → 03), so they share the rank and their timestamps decide.
AT_BUYER = 30
APPROVED = 40
MANDATED = 50
WITH_ACCOUNTANT = 60
BOOKED = 70
PAYMENT_SENT = 80
CASHED = 90
#: The end: rejected, refused, cancelled. Nothing moves an invoice out of it.
FINAL = 100

#: CPPStatut invoice statuses (DOMAIN.md §2.2 and research/chorus-edi.md §4.2 for the
#: meanings [C]). The order is the public-accounting chain: deposit, routing, the
#: buyer (service fait), the payment order (mandat), the public accountant, booking,
#: payment [I: the order is not published as such, it follows from the meanings].
#: 13–41 have no documented meaning, hence no rank.
CPP_RANKS: dict[str, int] = {
    "01": DEPOSITED,  # Déposée
    "02": IN_TRANSIT,  # En cours d'acheminement
    "03": AT_BUYER,  # Mise à disposition
    "06": AT_BUYER,  # Suspendue
    "12": AT_BUYER,  # Complétée (by the supplier, after a suspension)
    "07": APPROVED,  # Service fait
    "08": MANDATED,  # Mandatée / DP validée
    "09": WITH_ACCOUNTANT,  # Mise à disposition du comptable
    "10": BOOKED,  # Comptabilisée
    "11": PAYMENT_SENT,  # Mise en paiement
    "04": FINAL,  # Rejetée par l'ordonnateur (données d'acheminement)
    "05": FINAL,  # Rejetée par l'ordonnateur (autre motif)
}

#: CDAR D22B invoice statuses (DOMAIN.md §2.3 and research/chorus-edi.md §7, the
#: reform's Annexe 2 "Statuts" [C] for the meanings). The order follows the reform's
#: two phases: transmission (200–203, by the platforms) then processing (204–212, by
#: the buyer and the seller) [I: from the meanings]. 214 Visée (a works supervisor's
#: visa) counts as an approval [I]. 227 (payee account changed) is information only.
CDAR_RANKS: dict[str, int] = {
    "227": INFORMATION,  # Changement de compte à payer
    "200": DEPOSITED,  # Déposée
    "201": IN_TRANSIT,  # Émise par la plateforme
    "202": IN_TRANSIT,  # Reçue par la plateforme
    "203": AT_BUYER,  # Mise à disposition
    "204": AT_BUYER,  # Prise en charge
    "206": AT_BUYER,  # Approuvée partiellement
    "207": AT_BUYER,  # En litige
    "208": AT_BUYER,  # Suspendue
    "209": AT_BUYER,  # Complétée
    "205": APPROVED,  # Approuvée
    "214": APPROVED,  # Visée
    "211": PAYMENT_SENT,  # Paiement transmis
    "212": CASHED,  # Encaissée
    "210": FINAL,  # Refusée (by the buyer)
    "213": FINAL,  # Rejetée (by the platform)
    "220": FINAL,  # Annulée (by the seller)
    "221": FINAL,  # Erreur routage
}

_RANKS = {**CPP_RANKS, **CDAR_RANKS}  # two digits against three: the keys never collide

#: Statuses after which the gateway holds the invoice as rejected: CPP 04/05 (the
#: buyer's authorising officer rejected it), CDAR 210 Refusée (the buyer) and 213
#: Rejetée (the platform), and 221 Erreur routage (it never reached a buyer). The
#: supplier must correct and resend it. 220 Annulée is the supplier's own act: final,
#: but not a rejection.
REJECTING_CODES = frozenset({"04", "05", "210", "213", "221"})


def rank(code: str) -> int | None:
    """The rank of a lifecycle status code; None for a code without a known place.

    >>> rank("07") > rank("03"), rank("213") == rank("04"), rank("17")
    (True, True, None)
    """
    return _RANKS.get(code)


def is_rejection(code: str) -> bool:
    """Whether this status means the invoice is rejected (``REJECTING_CODES``)."""
    return code in REJECTING_CODES


def current_status(events: Iterable[E]) -> E | None:
    """The event holding the invoice's current lifecycle status, or None if it has none.

    Only events whose ``source`` is Chorus Pro's and whose code has a rank count. The
    highest rank wins; ties go to the latest ``occurred_at`` (a naive one is UTC, as the
    store reads it back from SQLite), then to the highest ``id`` (an event not yet
    flushed, without id, counts as the latest).
    """
    ranked = [event for event in events if event.source == LIFECYCLE_SOURCE and event.code in _RANKS]
    if not ranked:
        return None
    return max(ranked, key=_order)


def _order(event: LifecycleEvent) -> tuple[int, datetime, float]:
    occurred_at = event.occurred_at if event.occurred_at.tzinfo else event.occurred_at.replace(tzinfo=UTC)
    return _RANKS[event.code], occurred_at, math.inf if event.id is None else event.id
