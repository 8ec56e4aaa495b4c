"""What crossed the wire: transmissions found by AS2 Message-ID, inbound messages kept
raw, and the flows due for an attempt. A mixin of ``Tx``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import or_, select

from gateway.domain import FlowStatus
from gateway.store.base import TxBase
from gateway.store.models import Flow, InboundMessage, Transmission


class WireEvidence(TxBase):

    def flows_due(self, partner: str, now: datetime) -> Sequence[Flow]:
        """Packed flows of a partner whose retry time has come (or that never failed)."""
        return self.session.scalars(
            select(Flow)
            .where(Flow.partner == partner, Flow.status == FlowStatus.PACKED.value)
            .where(or_(Flow.next_attempt_at.is_(None), Flow.next_attempt_at <= now))
            .order_by(Flow.id)
        ).all()

    def record_attempt_evidence(
        self, attempt_id: int, *, message_id: str | None, request: bytes | None, receipt: str | None = None
    ) -> None:
        attempt = self._by_id(Transmission, attempt_id, "attempt")
        attempt.message_id = message_id
        attempt.request_raw = request
        attempt.receipt = receipt

    def transmission_by_message_id(self, message_id: str) -> tuple[Transmission, Flow] | None:
        row = self.session.execute(
            select(Transmission, Flow)
            .join(Flow, Flow.id == Transmission.flow_pk)
            .where(Transmission.message_id == message_id)
            .order_by(Transmission.id.desc())
        ).first()
        return None if row is None else (row[0], row[1])

    def add_inbound_message(
        self,
        *,
        now: datetime,
        kind: str,
        headers: Mapping[str, str],
        body: bytes,
        outcome: str,
        partner: str | None = None,
        message_id: str | None = None,
        error: str | None = None,
        body_size: int | None = None,
        body_sha256: str | None = None,
    ) -> InboundMessage:
        """Keep a request as received, before (or whatever) is made of it. ``body`` may be a prefix of what
        was read: ``body_size`` and ``body_sha256`` describe the whole of it."""
        row = InboundMessage(
            received_at=now,
            kind=kind,
            partner=partner,
            message_id=message_id,
            headers=json.dumps(dict(headers), ensure_ascii=False),
            body=body,
            body_size=body_size,
            body_sha256=body_sha256,
            outcome=outcome,
            error=error,
        )
        self.session.add(row)
        self.session.flush()
        return row

    def settle_inbound_message(self, row_id: int, *, outcome: str, keep_body_bytes: int | None = None,
                               **fields: object) -> None:
        """Judge a kept request: ``outcome`` and the rows it led to (``partner``, ``error``, ``report_id``,
        ``transmission_id``); ``keep_body_bytes`` cuts the body kept (a refused one), its size and hash stay."""
        row = self._by_id(InboundMessage, row_id, "inbound message")
        row.outcome = outcome
        for name, value in fields.items():
            setattr(row, name, value)
        if keep_body_bytes is not None and len(row.body) > keep_body_bytes:
            row.body = row.body[:keep_body_bytes]

    def inbound_messages(self) -> Sequence[InboundMessage]:
        return self.session.scalars(select(InboundMessage).order_by(InboundMessage.id)).all()
