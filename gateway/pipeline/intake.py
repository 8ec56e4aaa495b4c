"""The intake steps of a pass: read each settled export, map and validate every
invoice, record it (valid, quarantined or validation-error) and archive the file."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from gateway.config import Channel
from gateway.domain import InvoiceStatus, SourceFileStatus
from gateway.errors import GatewayError, InputError, MappingError, ValidatorError
from gateway.intake import files
from gateway.intake.csv_export import CsvOptions
from gateway.intake.readers import read_export, source_encoding
from gateway.intake.records import COLUMN_OF_RULE, ExportedInvoice, RejectedRecord
from gateway.log import escaped
from gateway.mapping import compute_totals, map_invoice
from gateway.pipeline.summary import PassSummary
from gateway.store import DuplicateInvoice, Tx
from gateway.store.models import Invoice, SourceFile
from gateway.validation import Finding, is_valid
from gateway.validation_gate import is_retryable

if TYPE_CHECKING:
    from gateway.clock import Clock
    from gateway.config import Config
    from gateway.store import Store
    from gateway.validation_gate import ValidationGate

log = structlog.get_logger("gateway.pipeline")

#: An export whose intake fails this many passes in a row (an unexpected error, not a
#: refusal of its content) is quarantined; until then it waits in the watched directory.
FAILED_PASSES_BEFORE_QUARANTINE = 3


class FileFailures:
    """Passes in a row in which each export's intake failed, kept by the running process.

    A file that changed (size or modification time) starts again from zero: the ERP wrote
    it again. A restart forgets the counts: the file gets its N tries again.
    """

    def __init__(self) -> None:
        self._failed: dict[tuple[str, Path], tuple[tuple[int, int] | None, int]] = {}

    def failed(self, channel: str, path: Path) -> int:
        signature = _signature(path)
        previous, count = self._failed.get((channel, path), (signature, 0))
        count = count + 1 if previous == signature else 1
        self._failed[(channel, path)] = (signature, count)
        return count

    def forget(self, channel: str, path: Path) -> None:
        self._failed.pop((channel, path), None)

    def forget_others(self, channel: str, present: list[Path]) -> None:
        """Drop the counts of files no longer waiting in the channel's directory."""
        waiting = set(present)
        for key in [key for key in self._failed if key[0] == channel and key[1] not in waiting]:
            del self._failed[key]


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


class IntakeSteps:
    """Steps of ``Pipeline``, which provides what is declared here."""

    config: Config
    store: Store
    clock: Clock
    gate: ValidationGate
    file_failures: FileFailures

    def intake_channel(self, channel: Channel, summary: PassSummary) -> None:
        settled = files.settled_files(channel.watch_dir, settle_seconds=channel.settle_seconds)
        self.file_failures.forget_others(channel.name, settled)
        for path in settled:
            if channel.name in self.gate.unhealthy:
                break
            try:
                status = self.intake_file(channel, path, summary)
            except Exception as exc:  # noqa: BLE001 - the per-file boundary: log, leave the file, go on
                status = self._file_failed(channel, path, exc)
            else:
                self.file_failures.forget(channel.name, path)
            summary.files[status] += 1

    def _file_failed(self, channel: Channel, path: Path, exc: Exception) -> str:
        """An export whose intake raised: left where it is for the next pass, quarantined
        once it has failed ``FAILED_PASSES_BEFORE_QUARANTINE`` passes in a row.

        Most such failures come from around the file (the store unreachable, a directory
        replaced, a disk full) and pass once that is fixed: quarantining at the first one
        would make the operator drop back files that were fine. One that keeps failing is
        moved aside, so that it stops raising an alert every pass.
        """
        error = escaped(exc.message if isinstance(exc, GatewayError) else f"{type(exc).__name__}: {exc}")
        failed = self.file_failures.failed(channel.name, path)
        # The traceback of what is not the gateway's own error is a bug's: kept in the JSON log.
        log.error("alert.file_failed", channel=channel.name, file=escaped(path.name), error=error,
                  failed_passes=failed, exc_info=not isinstance(exc, GatewayError))
        if failed < FAILED_PASSES_BEFORE_QUARANTINE:
            return "failed"
        reason = f"intake failed {failed} passes in a row, the last time with: {error}"
        try:
            status = self._quarantine_file(channel, path, reason)
        except Exception as again:  # noqa: BLE001 - the file stays; the next pass tries again
            log.error("alert.file_failed", channel=channel.name, file=escaped(path.name), failed_passes=failed,
                      error=escaped(f"could not be quarantined either: {type(again).__name__}: {again}"))
            return "failed"
        self.file_failures.forget(channel.name, path)
        log.error("intake.file_quarantined", channel=channel.name, file=escaped(path.name), reason=reason)
        return status

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
            exported = read_export(path, channel.input_format, options, channel.input_stylesheet,
                                   vat_rounding=channel.vat_rounding)
            for record in exported:
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
        for warning in invoice.warnings:
            log.warning("invoice.warning", channel=channel.name, file=source.name, line=invoice.first_line,
                        invoice=invoice.number, warning=warning)
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
        # The ERP's re-export of an invoice Chorus Pro rejected is its correction, not a
        # duplicate (an integrated one is refused above, CHORUS-DUPLICATE).
        corrected = tx.rejected_invoice(invoice.supplier_siret, invoice.number, invoice.issue_year)
        try:
            accepted = tx.add_invoice(
                now=self.clock.now(),
                status=InvoiceStatus.VALID,
                validation_set_id=tx.validation_set(validation.artefacts, now=self.clock.now()).id,
                corrects_id=corrected.id if corrected else None,
                **fields,
            )
        except DuplicateInvoice as exc:
            return InvoiceStatus.QUARANTINED, f"{where}: duplicate: {exc.message}"
        if corrected is not None:
            tx.add_status_event(invoice_id=corrected.id, code="corrected", label=f"corrected by invoice #{accepted.id}",
                                now=self.clock.now())
            log.info("invoice.correction", invoice=invoice.number, corrects=corrected.id, correction=accepted.id)
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
        "total_with_vat": str(compute_totals(invoice.lines, invoice.erp_vat).total_with_vat),
        "source_file_id": source.id,
        "source_line": invoice.first_line,
        "channel": channel.name,
        "partner": channel.partner,
    }
