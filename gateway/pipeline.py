"""One pass of the gateway: the only place where the pure stages meet the store,
the filesystem and the transports.

Order of a pass: settle interrupted attempts → intake → pack → send → (sandbox) →
pick up and reconcile reports. Each step writes its rows before the side effect they
allow, so a crash at any point resumes without loss or double sending.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import structlog

from gateway import packaging
from gateway.clock import Clock
from gateway.config import Channel, Config, Partner
from gateway.domain import FLOW_KINDS, FlowStatus, InvoiceStatus, SourceFileStatus, Syntax
from gateway.errors import InputError, MappingError, PackagingError, TransportError, ValidatorError
from gateway.intake import files
from gateway.intake.csv_export import CsvOptions
from gateway.intake.readers import read_export, source_encoding
from gateway.intake.records import COLUMN_OF_RULE, ExportedInvoice, RejectedRecord
from gateway.mapping import compute_totals, map_invoice
from gateway.reports.reconcile import reconcile_report
from gateway.store import DuplicateInvoice, Store, Tx
from gateway.store.models import Flow, Invoice, SourceFile
from gateway.transport import Transport, open_transport
from gateway.transport.local import write_atomically
from gateway.validation import Finding, is_valid
from gateway.validation_gate import ValidationGate, is_retryable

log = structlog.get_logger(__name__)


@dataclass
class PassSummary:
    """What one pass did, for the CLI's table and for tests."""

    files: Counter[str] = field(default_factory=Counter)
    invoices: Counter[str] = field(default_factory=Counter)
    flows_packed: list[str] = field(default_factory=list)
    flows_sent: list[str] = field(default_factory=list)
    flows_failed: list[str] = field(default_factory=list)
    reports: Counter[str] = field(default_factory=Counter)


class Pipeline:
    """The gateway's stages wired to one configuration, store and clock."""

    def __init__(self, *, config: Config, store: Store, clock: Clock) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self._transports: dict[str, Transport] = {}
        self.gate = ValidationGate(config, store)

    def close(self) -> None:
        """Stop the validation worker (a daemon process: it also dies with this one)."""
        self.gate.close()

    def transport(self, partner: Partner) -> Transport:
        if partner.name not in self._transports:
            self._transports[partner.name] = open_transport(partner)
        return self._transports[partner.name]

    def run_pass(self) -> PassSummary:
        summary = PassSummary()
        self.settle_interrupted_attempts()
        self.gate.begin_pass()
        for channel in self.config.channels:
            if channel.name not in self.gate.unhealthy:
                self.revalidate(channel, summary)
            # A channel whose validator broke during revalidation takes in nothing either:
            # its files wait in the watched directory, nothing is lost.
            if channel.name not in self.gate.unhealthy:
                self.intake_channel(channel, summary)
        for partner in self.config.partners.values():
            self.pack(partner, summary)
            self.send(partner, summary)
        if self.config.sandbox.enabled:
            self.run_sandbox()
        for partner in self.config.partners.values():
            self.collect_reports(partner, summary)
        return summary

    # -- intake ------------------------------------------------------------------

    def intake_channel(self, channel: Channel, summary: PassSummary) -> None:
        for path in files.settled_files(channel.watch_dir, settle_seconds=channel.settle_seconds):
            if channel.name in self.gate.unhealthy:
                break
            bound = log.bind(channel=channel.name, file=path.name)
            try:
                status = self.intake_file(channel, path, summary)
            except Exception as exc:  # noqa: BLE001 - the per-file boundary: quarantine, go on
                bound.exception("intake.internal_error")
                status = self._quarantine_file(channel, path, f"internal error while reading: {exc!r}")
            summary.files[status] += 1

    def intake_file(self, channel: Channel, path: Path, summary: PassSummary) -> str:
        """Read, map and validate one export; record every invoice; archive the file."""
        bound = log.bind(channel=channel.name, file=path.name)
        digest, size = files.file_digest(path)
        with self.store.transaction() as tx:
            settled = tx.find_settled_source_file(channel.name, digest)
        if settled is not None:
            # Same bytes already dealt with: a crash came between the commit and the
            # move, or the ERP dropped the file twice. Never read it a second time.
            bound.warning("intake.already_processed", source_file=settled.id, sha256=digest)
            files.archive_source(path, self.config.archive_dir, channel=channel.name, when=self.clock.now())
            return "already processed"
        try:
            counts = self._intake_records(channel, path, digest, size)
        except InputError as exc:
            bound.error("intake.file_quarantined", reason=exc.message, line=exc.line, field=exc.field)
            return self._quarantine_file(channel, path, exc.message, digest=digest, size=size)
        summary.invoices.update(counts)
        files.archive_source(path, self.config.archive_dir, channel=channel.name, when=self.clock.now())
        bound.info("intake.file_processed", sha256=digest, **counts)
        return SourceFileStatus.PROCESSED.value

    def _intake_records(self, channel: Channel, path: Path, digest: str, size: int) -> Counter[str]:
        """All invoices of one file in one transaction: a file-level error leaves nothing."""
        counts: Counter[str] = Counter()
        options = CsvOptions(**vars(channel.csv))
        now = self.clock.now()
        with self.store.transaction() as tx:
            source = tx.add_source_file(
                channel=channel.name, name=path.name, path=str(path), sha256=digest, size=size, now=now
            )
            held: list[tuple[ExportedInvoice | RejectedRecord, str]] = []
            for record in read_export(path, channel.input_format, options, channel.input_stylesheet):
                counts["received"] += 1
                if isinstance(record, RejectedRecord):
                    held.append((record, "; ".join(error.message for error in record.errors)))
                    continue
                outcome, reason = self._accept(tx, channel, source, record)
                if outcome is InvoiceStatus.QUARANTINED:
                    held.append((record, reason or ""))
                elif outcome is InvoiceStatus.VALIDATION_ERROR:
                    counts[InvoiceStatus.VALIDATION_ERROR.value] += 1
            # Held-back invoices are written only once the whole file has been read: a
            # file-level error further down must leave nothing of this file behind.
            for record, reason in held:
                self._hold_back(tx, channel, source, record, reason, source_encoding(channel.input_format, options))
            counts["quarantined"] = len(held)
            counts["valid"] = counts["received"] - len(held) - counts[InvoiceStatus.VALIDATION_ERROR.value]
            tx.settle_source_file(
                source,
                status=SourceFileStatus.PROCESSED.value,
                reason=None,
                invoice_count=counts["received"],
                quarantined_count=counts["quarantined"],
                now=now,
            )
        return counts

    def _accept(
        self, tx: Tx, channel: Channel, source: SourceFile, invoice: ExportedInvoice
    ) -> tuple[InvoiceStatus, str | None]:
        """Map, validate and record one invoice: valid, validation-error (recorded here),
        or quarantined (with the reason; the caller holds it back)."""
        where = f"{source.name}, line {invoice.first_line}, invoice {invoice.number}"
        try:
            partner = self.config.partner(channel.partner)
            payload = map_invoice(invoice, channel.syntax, credit_note_as_invoice=partner.credit_note_as_invoice)
        except (InputError, MappingError) as exc:
            return InvoiceStatus.QUARANTINED, f"{where}: {exc.message}"
        fields = {
            "syntax": channel.syntax.value,
            "payload": payload,
            "payload_sha256": hashlib.sha256(payload).hexdigest(),
            **_invoice_fields(invoice, channel, source),
        }
        try:
            validation = self.gate.validate(tx, channel, payload)
        except ValidatorError as exc:
            # Neither valid nor invalid: kept with its document, validated again at the
            # next pass (see revalidate). Broken for this invoice, or for all of them?
            self.gate.check_health(channel)
            tx.add_invoice(now=self.clock.now(), status=InvoiceStatus.VALIDATION_ERROR, reason=exc.message, **fields)
            log.error("alert.validation_error", channel=channel.name, file=source.name, line=invoice.first_line,
                      invoice=invoice.number, reason=exc.message)
            return InvoiceStatus.VALIDATION_ERROR, exc.message
        if not is_valid(validation.findings):
            return InvoiceStatus.QUARANTINED, "; ".join(_finding_reason(where, f) for f in validation.findings)
        try:
            tx.add_invoice(
                now=self.clock.now(),
                status=InvoiceStatus.VALID,
                validation_set_id=tx.validation_set(validation.artefacts, now=self.clock.now()).id,
                **fields,
            )
        except DuplicateInvoice as exc:
            return InvoiceStatus.QUARANTINED, f"{where}: duplicate: {exc.message}"
        log.info(
            "invoice.valid", channel=channel.name, file=source.name, invoice=invoice.number, line=invoice.first_line,
            warnings=sum(1 for f in validation.findings if f.severity.value == "warning"),
        )
        return InvoiceStatus.VALID, None

    def revalidate(self, channel: Channel, summary: PassSummary) -> None:
        """Validate again the channel's validation-error invoices, now that its validator runs.

        Those that ran out of time are left for the operator: they would stall each pass.
        """
        with self.store.transaction() as tx:
            waiting = [i.id for i in tx.invoices_in_status(InvoiceStatus.VALIDATION_ERROR, channel=channel.name)
                       if is_retryable(i.reason)]
        for invoice_id in waiting:
            with self.store.transaction() as tx:
                invoice = tx.session.get(Invoice, invoice_id)
                assert invoice is not None and invoice.payload is not None
                try:
                    validation = self.gate.validate(tx, channel, invoice.payload)
                except ValidatorError as exc:
                    invoice.reason = exc.message
                    log.error("alert.validation_error", channel=channel.name, invoice=invoice.invoice_number,
                              reason=exc.message)
                    if not self.gate.check_health(channel):
                        return
                    continue
                now = self.clock.now()
                if is_valid(validation.findings):
                    invoice.validation_set_id = tx.validation_set(validation.artefacts, now=now).id
                    status, reason = InvoiceStatus.VALID, "validated again once the validator ran"
                else:
                    status = InvoiceStatus.QUARANTINED
                    where = f"invoice {invoice.invoice_number}, line {invoice.source_line}"
                    reason = "; ".join(_finding_reason(where, f) for f in validation.findings)
                try:
                    tx.move_invoice(invoice, status, now=now, reason=reason)
                except DuplicateInvoice as exc:
                    status = InvoiceStatus.QUARANTINED
                    tx.set_invoice_status(invoice, status, now=now, reason=f"duplicate: {exc.message}")
            summary.invoices[f"revalidated {status.value}"] += 1
            log.info("invoice.revalidated", channel=channel.name, invoice=invoice.invoice_number, status=status.value)

    def _hold_back(
        self,
        tx: Tx,
        channel: Channel,
        source: SourceFile,
        record: ExportedInvoice | RejectedRecord,
        reason: str,
        encoding: str,
    ) -> None:
        """Quarantine one invoice: a row with the reason, and its own text in a file of its own."""
        number = record.number if isinstance(record, ExportedInvoice) else record.invoice_number
        log.warning(
            "invoice.quarantined",
            channel=channel.name,
            file=source.name,
            line=record.first_line,
            invoice=number,
            reason=reason,
        )
        fields = (
            _invoice_fields(record, channel, source)
            if isinstance(record, ExportedInvoice)
            else {
                "supplier_siret": record.supplier_siret,
                "invoice_number": record.invoice_number,
                "source_file_id": source.id,
                "source_line": record.first_line,
                "channel": channel.name,
                "partner": channel.partner,
            }
        )
        tx.add_invoice(now=self.clock.now(), status=InvoiceStatus.QUARANTINED, reason=reason, **fields)
        files.quarantine_invoice(
            self.config.quarantine_dir,
            channel=channel.name,
            source_name=source.name,
            first_line=record.first_line,
            text=record.original,
            encoding=encoding,
            reason=reason,
        )

    def _quarantine_file(
        self, channel: Channel, path: Path, reason: str, *, digest: str | None = None, size: int | None = None
    ) -> str:
        if digest is None or size is None:
            digest, size = files.file_digest(path)
        now = self.clock.now()
        with self.store.transaction() as tx:
            source = tx.add_source_file(
                channel=channel.name, name=path.name, path=str(path), sha256=digest, size=size, now=now
            )
            tx.settle_source_file(
                source,
                status=SourceFileStatus.QUARANTINED.value,
                reason=reason,
                invoice_count=0,
                quarantined_count=0,
                now=now,
            )
        files.quarantine_source(path, self.config.quarantine_dir, channel=channel.name, reason=reason, when=now)
        return SourceFileStatus.QUARANTINED.value

    # -- packing -----------------------------------------------------------------

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
                    max_invoices=partner.max_invoices_per_flow,
                    max_bytes=partner.max_flow_bytes,
                )
                for group in groups:
                    flow, archive = self._pack_one(tx, partner, syntax, group, now)
                    written.append((flow.file_name, archive))
                    summary.flows_packed.append(flow.flow_id)
        self.config.flows_dir.mkdir(parents=True, exist_ok=True)
        for file_name, archive in written:
            write_atomically(self.config.flows_dir / file_name, archive)

    def _pack_one(
        self, tx: Tx, partner: Partner, syntax: Syntax, group: list[Invoice], now: datetime
    ) -> tuple[Flow, bytes]:
        interface = FLOW_KINDS[syntax].interface_code
        counter = tx.next_counter(f"flow:{partner.name}")
        flow_id = packaging.make_flow_id(partner.partner_code, interface, counter)
        members = [
            (packaging.member_name(position, invoice.invoice_number or str(invoice.id)), invoice)
            for position, invoice in enumerate(group, start=1)
        ]
        archive = packaging.build_archive([(name, invoice.payload or b"") for name, invoice in members])
        file_name = packaging.flow_file_name(
            partner.file_name_template,
            interface=interface,
            partner_code=partner.partner_code,
            flow_id=flow_id,
            partner=partner.name,
        )
        flow = tx.add_flow(
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

    def flow_archive(self, tx: Tx, flow: Flow) -> bytes:
        """The flow's bytes: from the flows directory, or rebuilt from the store."""
        path = self.config.flows_dir / flow.file_name
        if path.is_file():
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() == flow.sha256:
                return data
        data = packaging.build_archive(
            [(member.member_name, invoice.payload or b"") for member, invoice in tx.flow_members(flow)]
        )
        if hashlib.sha256(data).hexdigest() != flow.sha256:
            raise PackagingError(
                f"flow {flow.flow_id}: rebuilt archive does not match the recorded sha256 {flow.sha256}"
            )
        write_atomically(path, data)
        return data

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
                f.id
                for f in tx.flows_with_status(FlowStatus.PACKED)
                if f.partner == partner.name and not self._held(partner, f.syntax)
            ]
        for flow_pk in pending:
            self._send_one(partner, flow_pk, summary)

    def _send_one(self, partner: Partner, flow_pk: int, summary: PassSummary) -> None:
        transport = self.transport(partner)
        with self.store.transaction() as tx:
            flow = tx.session.get(Flow, flow_pk)
            assert flow is not None
            data = self.flow_archive(tx, flow)
            attempt = tx.start_transmission(
                flow, transport=transport.kind, remote_name=flow.file_name, now=self.clock.now()
            )
            attempt_id = attempt.id
        bound = log.bind(flow=flow.flow_id, partner=partner.name, attempt=attempt.attempt)
        try:
            receipt = transport.deposit(flow.file_name, data)
        except TransportError as exc:
            self._attempt_failed(partner, flow_pk, attempt_id, exc.message, summary)
            return
        with self.store.transaction() as tx:
            self._attempt_succeeded(tx, flow_pk, attempt_id, receipt)
        bound.info("flow.sent", file_name=flow.file_name, bytes=len(data), sha256=flow.sha256)
        summary.flows_sent.append(flow.flow_id)

    def _attempt_succeeded(self, tx: Tx, flow_pk: int, attempt_id: int, receipt: str) -> None:
        from gateway.store.models import Transmission

        now = self.clock.now()
        flow = tx.session.get(Flow, flow_pk)
        attempt = tx.session.get(Transmission, attempt_id)
        assert flow is not None and attempt is not None
        tx.finish_transmission(attempt, outcome="succeeded", receipt=receipt, now=now)
        flow.sent_at = now
        tx.set_flow_status(flow, FlowStatus.SENT, now=now)
        tx.mark_flow_invoices(flow, InvoiceStatus.SENT, now=now)

    def _attempt_failed(
        self, partner: Partner, flow_pk: int, attempt_id: int, error: str, summary: PassSummary
    ) -> None:
        from gateway.store.models import Transmission

        now = self.clock.now()
        with self.store.transaction() as tx:
            flow = tx.session.get(Flow, flow_pk)
            attempt = tx.session.get(Transmission, attempt_id)
            assert flow is not None and attempt is not None
            tx.finish_transmission(attempt, outcome="failed", error=error, now=now)
            if flow.attempts >= partner.max_attempts:
                tx.set_flow_status(flow, FlowStatus.FAILED, now=now, reason=error)
                log.error(
                    "alert.flow_failed", flow=flow.flow_id, partner=partner.name, attempts=flow.attempts, error=error
                )
                summary.flows_failed.append(flow.flow_id)
            else:
                tx.set_flow_status(
                    flow, FlowStatus.PACKED, now=now, reason=f"attempt {attempt.attempt} failed: {error}"
                )
                log.warning("flow.attempt_failed", flow=flow.flow_id, attempt=attempt.attempt, error=error)

    def settle_interrupted_attempts(self) -> None:
        """After a crash: an attempt left in progress is settled by looking at the partner."""
        with self.store.transaction() as tx:
            pending = [(a.id, f.id, f.partner) for a, f in tx.transmissions_in_progress()]
        for attempt_id, flow_pk, partner_name in pending:
            partner = self.config.partners.get(partner_name)
            if partner is None:
                continue
            with self.store.transaction() as tx:
                flow = tx.session.get(Flow, flow_pk)
                assert flow is not None
                remote = self.transport(partner).remote_size(flow.file_name)
                if remote == flow.size:
                    self._attempt_succeeded(tx, flow_pk, attempt_id, "settled after restart: found at the partner")
                    log.warning("flow.attempt_settled", flow=flow.flow_id, outcome="succeeded")
                    continue
            self._attempt_failed(partner, flow_pk, attempt_id, "interrupted; not found at the partner", PassSummary())

    # -- sandbox and reports -----------------------------------------------------

    def run_sandbox(self) -> None:
        from gateway.sandbox.runner import run_sandbox_once
        from gateway.sandbox.simulator import SandboxSettings

        settings = SandboxSettings(partner_code=self.config.sandbox.partner_code)
        for outcome in run_sandbox_once(self.config.sandbox.root, settings, self.clock):
            log.info("sandbox.flow_answered", flow=outcome.flow_id, status=outcome.status_code)

    def collect_reports(self, partner: Partner, summary: PassSummary) -> None:
        """Store each returned file durably, then remove it remotely, then reconcile."""
        transport = self.transport(partner)
        try:
            names = transport.list_reports()
        except TransportError as exc:
            log.error("reports.pickup_failed", partner=partner.name, error=exc.message)
            return
        for name in names:
            try:
                raw = transport.fetch_report(name)
            except TransportError as exc:
                log.error("reports.fetch_failed", partner=partner.name, file=name, error=exc.message)
                continue
            digest = hashlib.sha256(raw).hexdigest()
            with self.store.transaction() as tx:
                if tx.find_report(digest) is None:
                    tx.add_report(sha256=digest, file_name=name, partner=partner.name, raw=raw, now=self.clock.now())
            transport.acknowledge_report(name)
        self.reconcile_pending(summary)

    def reconcile_pending(self, summary: PassSummary) -> None:
        with self.store.transaction() as tx:
            pending = [report.id for report in tx.reports_to_reconcile()]
        for report_id in pending:
            with self.store.transaction() as tx:
                outcome = reconcile_report(tx, report_id, now=self.clock.now())
            summary.reports[outcome] += 1


def _validated_with(tx: Tx, invoices: list[Invoice]) -> str:
    """The XSDs and rule sets that validated a flow's invoices, each once (JSON)."""
    seen: dict[tuple[str, str, str], dict[str, str]] = {}
    for validation_set in tx.validation_sets(i.validation_set_id for i in invoices if i.validation_set_id):
        for artefact in json.loads(validation_set.artefacts):
            seen.setdefault((artefact["kind"], artefact["name"], artefact["sha256"]), artefact)
    return json.dumps([seen[key] for key in sorted(seen)], ensure_ascii=False)


def _finding_reason(where: str, finding: Finding) -> str:
    column = COLUMN_OF_RULE.get(finding.rule_id)
    return f"{where}, field {column!r}: {finding}" if column else f"{where}: {finding}"


def _invoice_fields(invoice: ExportedInvoice, channel: Channel, source: SourceFile) -> dict[str, object]:
    return {
        "supplier_siret": invoice.supplier_siret,
        "invoice_number": invoice.number,
        "issue_year": invoice.issue_year,
        "issue_date": invoice.issue_date,
        "buyer_siret": invoice.buyer_siret,
        "type_code": invoice.type_code,
        "currency": invoice.currency,
        "total_with_vat": str(compute_totals(invoice.lines).total_with_vat),
        "source_file_id": source.id,
        "source_line": invoice.first_line,
        "channel": channel.name,
        "partner": channel.partner,
    }


__all__ = ["PassSummary", "Pipeline"]
