"""THE flow and attempt state machine: every change of a flow's status, and of an attempt's
outcome, is made here, by an event of the tables below.

The store writes the rows (``Tx.add_flow``, ``claim_flow_for_attempt``, ``move_flow``,
``settle_attempt``), and is called for them from this module alone (a test reads the source
to hold it so); each move is audited with its event and the status it left (``flow.<status>``
and ``attempt.<outcome>`` entries), so that the history of a flow can be checked against the
tables. docs/architecture.md draws them.

Two rules the tables carry:
- A report is Chorus Pro's word on a flow: it applies whatever the gateway thought of the flow.
- An attempt ends whatever its flow became meanwhile; the flow moves with it only where the
  table has the move (it is ``sending``): a report that came first keeps the last word.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from types import MappingProxyType

import structlog

from gateway.domain import AttemptOutcome, FlowEvent, FlowStatus, InvoiceStatus
from gateway.errors import GatewayError, TransitionError
from gateway.store import Tx
from gateway.store.rows import AttemptRow, FlowRow

log = structlog.get_logger(__name__)

_REPORTED = {
    FlowEvent.REPORTED_INTEGRATED: FlowStatus.INTEGRATED,
    FlowEvent.REPORTED_PARTIALLY_INTEGRATED: FlowStatus.PARTIALLY_INTEGRATED,
    FlowEvent.REPORTED_REJECTED: FlowStatus.REJECTED,
    FlowEvent.REPORTED_FAILED: FlowStatus.FAILED,
}

#: (status, event) -> status of a flow; None: the flow does not exist yet.
FLOW_TRANSITIONS: Mapping[tuple[FlowStatus | None, FlowEvent], FlowStatus] = MappingProxyType({
    (None, FlowEvent.PACK): FlowStatus.PACKED,
    (FlowStatus.PACKED, FlowEvent.ATTEMPT): FlowStatus.SENDING,
    (FlowStatus.SENDING, FlowEvent.DELIVERED): FlowStatus.SENT,
    (FlowStatus.SENDING, FlowEvent.ATTEMPT_FAILED): FlowStatus.PACKED,
    (FlowStatus.SENDING, FlowEvent.GIVE_UP): FlowStatus.FAILED,
    (FlowStatus.FAILED, FlowEvent.RETRY): FlowStatus.PACKED,
    **{(status, event): target for event, target in _REPORTED.items() for status in FlowStatus},
})

#: (outcome, event) -> outcome of an attempt; None: the attempt does not exist yet.
ATTEMPT_TRANSITIONS: Mapping[tuple[AttemptOutcome | None, FlowEvent], AttemptOutcome] = MappingProxyType({
    (None, FlowEvent.ATTEMPT): AttemptOutcome.IN_PROGRESS,
    (AttemptOutcome.IN_PROGRESS, FlowEvent.DELIVERED): AttemptOutcome.SUCCEEDED,
    (AttemptOutcome.IN_PROGRESS, FlowEvent.ATTEMPT_FAILED): AttemptOutcome.FAILED,
    (AttemptOutcome.IN_PROGRESS, FlowEvent.GIVE_UP): AttemptOutcome.FAILED,
})

#: How an operator reads a refused event: "flow F is sent; only a failed flow is sent again".
_WHAT = {
    FlowEvent.PACK: "packed",
    FlowEvent.ATTEMPT: "sent",
    FlowEvent.DELIVERED: "settled as sent",
    FlowEvent.ATTEMPT_FAILED: "sent again later",
    FlowEvent.GIVE_UP: "failed",
    FlowEvent.RETRY: "sent again",
}


def flow_target(flow_id: str, status: str | None, event: FlowEvent) -> FlowStatus:
    """Where ``event`` takes a flow in ``status``; ``TransitionError`` when the table has no such move."""
    current = None if status is None else FlowStatus(status)
    target = FLOW_TRANSITIONS.get((current, event))
    if target is None:
        sources = " or ".join(sorted(str(s) for s, e in FLOW_TRANSITIONS if e is event and s is not None))
        raise TransitionError(f"flow {flow_id} is {status}; only a {sources} flow is {_WHAT.get(event, event)}")
    return target


def attempt_target(attempt: AttemptRow, event: FlowEvent) -> AttemptOutcome:
    target = ATTEMPT_TRANSITIONS.get((AttemptOutcome(attempt.outcome), event))
    if target is None:
        raise TransitionError(f"attempt {attempt.attempt} of flow #{attempt.flow_pk} is already {attempt.outcome}: "
                              f"it is settled once")
    return target


def is_open(attempt: AttemptRow) -> bool:
    """Whether the attempt still waits for its outcome (a receipt, or a look at the partner)."""
    return attempt.outcome == AttemptOutcome.IN_PROGRESS


# -- the moves ---------------------------------------------------------------------------------------------------


def open_flow(tx: Tx, *, now: datetime, **fields: object) -> FlowRow:
    """A new flow (its invoices are claimed by the caller, in the same transaction)."""
    flow_id = str(fields.get("flow_id"))
    return tx.add_flow(status=flow_target(flow_id, None, FlowEvent.PACK), event=FlowEvent.PACK, now=now, **fields)


def start_attempt(tx: Tx, flow: FlowRow, *, transport: str, remote_name: str, now: datetime) -> AttemptRow | None:
    """Claim a due flow for an attempt, recorded in progress before the bytes leave; None when another
    process claimed it first (or it is no longer due): the caller must not send."""
    event = FlowEvent.ATTEMPT
    sources = [s for s, e in FLOW_TRANSITIONS if e is event and s is not None]
    return tx.claim_flow_for_attempt(
        flow, expected=sources, status=FLOW_TRANSITIONS[(sources[0], event)],
        outcome=ATTEMPT_TRANSITIONS[(None, event)], event=event, transport=transport, remote_name=remote_name,
        now=now,
    )


def attempt_delivered(tx: Tx, flow_pk: int, attempt_id: int, *, now: datetime, receipt: str,
                      message_id: str | None = None, request: bytes | None = None,
                      response: bytes | None = None) -> bool:
    """The partner took the flow: the attempt succeeded and the flow and its invoices are ``sent``.
    False when the flow had moved on meanwhile (a report came first): the attempt alone is settled."""
    event = FlowEvent.DELIVERED
    attempt = tx.attempt(attempt_id)
    tx.settle_attempt(attempt, attempt_target(attempt, event), event=event, now=now, receipt=receipt,
                      message_id=message_id, request=request, response=response)
    flow = tx.flow(flow_pk)
    if not _moves(flow, event):
        return False
    tx.move_flow(flow, flow_target(flow.flow_id, flow.status, event), event=event, now=now, sent_at=now,
                 next_attempt_at=None)
    tx.mark_flow_invoices(flow, InvoiceStatus.SENT, now=now)
    return True


def attempt_failed(tx: Tx, flow_pk: int, attempt_id: int, *, error: str, retry_in: float | None, now: datetime,
                   reason: str | None = None, request: bytes | None = None,
                   response: bytes | None = None) -> FlowStatus:
    """The attempt failed: the flow is ``packed`` again, due in ``retry_in`` seconds, or ``failed`` when
    ``retry_in`` is None (``retry.next_retry`` decides). ``reason``: what the flow records, the error by
    default. Returns the flow's status after the move (unchanged when a report came first)."""
    event = FlowEvent.GIVE_UP if retry_in is None else FlowEvent.ATTEMPT_FAILED
    attempt = tx.attempt(attempt_id)
    tx.settle_attempt(attempt, attempt_target(attempt, event), event=event, now=now, error=error,
                      request=request, response=response)
    flow = tx.flow(flow_pk)
    if not _moves(flow, event):
        return FlowStatus(flow.status)
    target = flow_target(flow.flow_id, flow.status, event)
    due = None if retry_in is None else now + timedelta(seconds=retry_in)
    tx.move_flow(flow, target, event=event, now=now, reason=reason or error, next_attempt_at=due)
    return target


def retry(tx: Tx, flow_id: str, *, now: datetime) -> FlowRow:
    """The operator's ``flows retry``: a failed flow is sent again at the next pass, same bytes and name,
    with a fresh count of attempts."""
    flow = tx.find_flow(flow_id)
    if flow is None:
        raise GatewayError(f"no flow {flow_id}: see `gateway flows list`")
    event = FlowEvent.RETRY
    tx.move_flow(flow, flow_target(flow_id, flow.status, event), event=event, now=now,
                 reason="retry asked by the operator", attempts=0, next_attempt_at=None)
    return flow


def reported(tx: Tx, flow: FlowRow, event: FlowEvent, *, now: datetime, reason: str | None,
             report_id: int) -> FlowStatus:
    """A report settles the flow (``REPORTED_*`` events)."""
    target = flow_target(flow.flow_id, flow.status, event)
    tx.move_flow(flow, target, event=event, now=now, reason=reason, source="chorus", report_id=report_id)
    return target


def _moves(flow: FlowRow, event: FlowEvent) -> bool:
    """Whether an attempt's end moves its flow: only from where the table has the move."""
    if (FlowStatus(flow.status), event) in FLOW_TRANSITIONS:
        return True
    log.warning("flow.attempt_settled_after_report", flow=flow.flow_id, status=flow.status, attempt_event=event.value)
    return False
