"""The outbox steps of a pass: pack valid invoices into flows, send them with
idempotent attempts and backoff, settle attempts a crash left in progress."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from gateway import packaging
from gateway.config import Partner
from gateway.domain import FlowStatus, InvoiceStatus, Syntax
from gateway.errors import PackagingError, TransportError
from gateway.fs import write_atomically
from gateway.pipeline import attempts
from gateway.pipeline.retry import next_retry
from gateway.pipeline.summary import PassSummary
from gateway.store import Tx
from gateway.store.rows import FlowRow, InvoiceRow
from gateway.transport import Delivery
from gateway.xml.syntax import SYNTAXES

if TYPE_CHECKING:
    from gateway.clock import Clock
    from gateway.config import Config
    from gateway.store import Store
    from gateway.transport import Transport
    from gateway.validation_gate import ValidationGate

log = structlog.get_logger("gateway.pipeline")


class OutboxSteps:
    """Steps of ``Pipeline``, which provides what is declared here."""

    config: Config
    store: Store
    clock: Clock
    gate: ValidationGate

    def transport(self, partner: Partner) -> Transport: ...

    def pack(self, partner: Partner, summary: PassSummary) -> None:
        """Group the partner's valid invoices into flows; rows first, archive file after."""
        written: list[tuple[str, bytes]] = []
        now = self.clock.now()
        with self.store.transaction() as tx:
            for syntax in Syntax:
                if self._held(partner, syntax.value):
                    continue
                ready = tx.invoices_ready(partner=partner.name, syntax=syntax.value)
                groups = packaging.plan_flows(
                    [(invoice, len(invoice.payload or b"")) for invoice in ready],
                    # An XML flow is one invoice sent as itself.
                    max_invoices=1 if partner.packaging == "xml" else partner.max_invoices_per_flow,
                    max_bytes=partner.max_flow_bytes,
                )
                for group in groups:
                    packed = self._pack_one(tx, partner, syntax, group, now)
                    if packed is None:
                        continue
                    flow, archive = packed
                    written.append((flow.file_name, archive))
                    summary.flows_packed.append(flow.flow_id)
        self.config.flows_dir.mkdir(parents=True, exist_ok=True)
        for file_name, archive in written:
            write_atomically(self.config.flows_dir / file_name, archive)

    def _pack_one(
        self, tx: Tx, partner: Partner, syntax: Syntax, group: Sequence[InvoiceRow], now: datetime
    ) -> tuple[FlowRow, bytes] | None:
        """One flow of ``group``; None when another process packed any of its invoices first."""
        interface = SYNTAXES[syntax].interface_code
        # The number first: packers of one partner code then wait for each other on its
        # counter instead of locking invoices in different orders. A lost claim leaves a
        # gap in the numbers, which Chorus Pro does not mind (unique is all it asks).
        counter = tx.next_flow_counter(partner.partner_code)
        if not tx.claim_invoices_for_flow(group):
            log.debug("flow.claimed_elsewhere", partner=partner.name, invoices=len(group))
            return None
        flow_id = packaging.make_flow_id(partner.partner_code, interface, counter)
        members = [
            (packaging.member_name(position, invoice.invoice_number or str(invoice.id)), invoice)
            for position, invoice in enumerate(group, start=1)
        ]
        archive = packaging.pack_flow(partner.packaging, [(name, invoice.payload or b"") for name, invoice in members])
        file_name = packaging.flow_file_name(
            partner.file_name_template,
            interface=interface,
            partner_code=partner.partner_code,
            flow_id=flow_id,
            partner=partner.name,
        )
        flow = attempts.open_flow(
            tx,
            now=now,
            flow_id=flow_id,
            partner=partner.name,
            interface_code=interface,
            syntax=syntax.value,
            file_name=file_name,
            sha256=hashlib.sha256(archive).hexdigest(),
            size=len(archive),
            invoice_count=len(members),
            validated_with=_validated_with(tx, group),
        )
        for name, invoice in members:
            tx.add_flow_member(flow, invoice, member_name=name, sha256=invoice.payload_sha256 or "")
            tx.set_invoice_status(invoice, InvoiceStatus.PACKED, now=now, reason=f"flow {flow_id}")
        log.info("flow.packed", flow=flow_id, partner=partner.name, invoices=len(members), bytes=len(archive))
        return flow, archive

    # -- sending -----------------------------------------------------------------

    def _held(self, partner: Partner, syntax: str) -> bool:
        """True while a channel feeding this partner in this syntax has a validator that
        cannot run: it sends nothing until the validator is healthy again."""
        return any(
            channel.partner == partner.name and channel.syntax.value == syntax
            for channel in self.config.channels
            if channel.name in self.gate.unhealthy
        )

    def send(self, partner: Partner, summary: PassSummary) -> None:
        with self.store.transaction() as tx:
            pending = [
                f.id for f in tx.flows_due(partner.name, self.clock.now()) if not self._held(partner, f.syntax)
            ]
        if not pending:
            return
        try:
            self.transport(partner)
        except TransportError as exc:
            # A partner that cannot even be set up (a wrong endpoint) must not stop the pass.
            log.error("alert.transport_unavailable", partner=partner.name, error=exc.message, flows=len(pending))
            return
        for flow_pk in pending:
            self._send_one(partner, flow_pk, summary)

    def _send_one(self, partner: Partner, flow_pk: int, summary: PassSummary) -> None:
        transport = self.transport(partner)
        with self.store.transaction() as tx:
            flow = tx.flow(flow_pk)
            # The claim: only the process whose attempt row is written sends; the flow may
            # have been sent by another since `send` read it as due.
            attempt = attempts.start_attempt(
                tx, flow, transport=transport.kind, remote_name=flow.file_name, now=self.clock.now()
            )
            if attempt is None:
                log.debug("flow.claimed_elsewhere", flow=flow.flow_id, partner=partner.name)
                return
            data = flow_archive(tx, self.config.flows_dir, flow)
            attempt_id = attempt.id
        bound = log.bind(flow=flow.flow_id, partner=partner.name, attempt=attempt.attempt)
        try:
            delivery = transport.deposit(flow.file_name, data)
        except TransportError as exc:
            self._attempt_failed(partner, flow_pk, attempt_id, exc, summary)
            return
        if delivery.pending:
            # The receipt (an asynchronous MDN) comes later, to `gateway serve`: the
            # attempt stays in progress, with what was sent, until it arrives.
            with self.store.transaction() as tx:
                tx.record_attempt_evidence(attempt_id, message_id=delivery.message_id, request=delivery.request,
                                           receipt=delivery.receipt)
            bound.info("flow.awaiting_mdn", file_name=flow.file_name, message_id=delivery.message_id)
            return
        with self.store.transaction() as tx:
            self._attempt_succeeded(tx, flow_pk, attempt_id, delivery)
        bound.info("flow.sent", file_name=flow.file_name, bytes=len(data), sha256=flow.sha256)
        summary.flows_sent.append(flow.flow_id)

    def _attempt_succeeded(self, tx: Tx, flow_pk: int, attempt_id: int, delivery: Delivery) -> None:
        attempts.attempt_delivered(tx, flow_pk, attempt_id, now=self.clock.now(), receipt=delivery.receipt,
                                   message_id=delivery.message_id, request=delivery.request,
                                   response=delivery.response)

    def _attempt_failed(
        self, partner: Partner, flow_pk: int, attempt_id: int, error: TransportError, summary: PassSummary
    ) -> None:
        now = self.clock.now()
        with self.store.transaction() as tx:
            flow, attempt = tx.flow(flow_pk), tx.attempt(attempt_id)
            retry_in = next_retry(flow.attempts, retryable=error.retryable, max_attempts=partner.max_attempts,
                                  initial=partner.retry_initial_seconds, maximum=partner.retry_max_seconds)
            status = attempts.attempt_failed(
                tx, flow_pk, attempt_id, error=error.message, retry_in=retry_in, now=now,
                reason=None if retry_in is None else f"attempt {attempt.attempt} failed: {error.message}",
                request=error.request, response=error.response,
            )
            if retry_in is None and status is FlowStatus.FAILED:
                log.error("alert.flow_failed", flow=flow.flow_id, partner=partner.name, attempts=flow.attempts,
                          retryable=error.retryable, error=error.message,
                          action=f"fix the cause, then: gateway flows retry {flow.flow_id}")
                summary.flows_failed.append(flow.flow_id)
            elif retry_in is not None and status is FlowStatus.PACKED:
                log.warning("flow.attempt_failed", flow=flow.flow_id, attempt=attempt.attempt, error=error.message,
                            next_attempt_in_seconds=round(retry_in, 1))

    def settle_interrupted_attempts(self) -> None:
        """After a crash: an attempt left in progress is settled by looking at the partner."""
        with self.store.transaction() as tx:
            pending = [(a.id, f.id, f.partner) for a, f in tx.transmissions_in_progress()]
        for attempt_id, flow_pk, partner_name in pending:
            partner = self.config.partners.get(partner_name)
            if partner is None:
                continue
            with self.store.transaction() as tx:
                flow, attempt = tx.flow(flow_pk), tx.attempt(attempt_id)
                if partner.transport == "as2" and attempt.message_id is not None:
                    continue  # sent, its asynchronous MDN is awaited at `gateway serve`
                if partner.transport == "as2":
                    # Interrupted during a synchronous POST: whether the partner got it is
                    # unknown; a new attempt gets a new Message-ID, and Chorus Pro refuses
                    # a duplicate invoice, so sending again is the safe side.
                    self._attempt_failed(partner, flow_pk, attempt_id,
                                         TransportError("interrupted during the AS2 exchange"), PassSummary())
                    continue
                try:
                    remote = self.transport(partner).remote_size(flow.file_name)
                except TransportError as exc:
                    # Cannot look: leave it in progress, never resend blind.
                    log.warning("flow.attempt_unsettled", flow=flow.flow_id, error=exc.message)
                    continue
                if remote == flow.size:
                    self._attempt_succeeded(tx, flow_pk, attempt_id,
                                            Delivery("settled after restart: found at the partner"))
                    log.warning("flow.attempt_settled", flow=flow.flow_id, outcome="succeeded")
                    continue
            self._attempt_failed(partner, flow_pk, attempt_id,
                                 TransportError("interrupted; not found at the partner"), PassSummary())


def _validated_with(tx: Tx, invoices: Sequence[InvoiceRow]) -> str:
    """The XSDs and rule sets that validated a flow's invoices, each once (JSON)."""
    seen: dict[tuple[str, str, str], dict[str, str]] = {}
    for validation_set in tx.validation_sets(i.validation_set_id for i in invoices if i.validation_set_id):
        for artefact in json.loads(validation_set.artefacts):
            seen.setdefault((artefact["kind"], artefact["name"], artefact["sha256"]), artefact)
    return json.dumps([seen[key] for key in sorted(seen)], ensure_ascii=False)


def flow_archive(tx: Tx, flows_dir: Path, flow: FlowRow) -> bytes:
    """The flow's bytes as they were sent: from the flows directory, or rebuilt from the store (and written back)."""
    path = flows_dir / flow.file_name
    if path.is_file():
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() == flow.sha256:
            return data
    layout = "xml" if not flow.file_name.endswith(".tar.gz") else "tar.gz"
    data = packaging.pack_flow(
        layout, [(member.member_name, invoice.payload or b"") for member, invoice in tx.flow_members(flow)]
    )
    if hashlib.sha256(data).hexdigest() != flow.sha256:
        raise PackagingError(
            f"flow {flow.flow_id}: rebuilt archive does not match the recorded sha256 {flow.sha256}"
        )
    write_atomically(path, data)
    return data
