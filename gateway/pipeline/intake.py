"""The intake steps of a pass: claim each complete export, map and validate every
invoice, record it (valid, quarantined or validation-error) and archive the file as read."""

from __future__ import annotations

import collections
import hashlib
import itertools
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from gateway.config import Channel
from gateway.domain import InvoiceStatus, SourceFileStatus, ValidatorFailure
from gateway.errors import GatewayError, InputError, MappingError, ValidatorError
from gateway.intake import files
from gateway.intake.csv_export import CsvOptions
from gateway.intake.readers import read_export, source_encoding
from gateway.intake.records import COLUMN_OF_RULE, InvoiceLimits, RejectedRecord
from gateway.invoice import ExportedInvoice
from gateway.log import escaped
from gateway.mapping import compute_totals, map_invoice
from gateway.pipeline.summary import PassSummary
from gateway.store import DuplicateInvoice, Tx
from gateway.store.rows import InvoiceRow, SourceFileRow
from gateway.validation import Finding, is_valid

if TYPE_CHECKING:
    from gateway.clock import Clock
    from gateway.config import Config
    from gateway.store import Store
    from gateway.validation_gate import ValidationGate

log = structlog.get_logger("gateway.pipeline")

#: An export whose intake fails this many passes in a row (an unexpected error, not a
#: refusal of its content) is quarantined; until then it waits, claimed, in processing/.
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


@dataclass(frozen=True)
class Claim:
    """An export taken for reading: the claimed file and the snapshot the readers read."""

    #: In ``processing/<channel>/`` (the ERP can no longer reach it by its name).
    claimed: Path
    #: The copy that is read; its sha256 and size are those recorded.
    read: Path
    sha256: str
    size: int
    #: The export's name as the gateway writes it (``files.shown``, fitted).
    name: str
    #: Where it came from, shown.
    origin: str


class IntakeSteps:
    """Steps of ``Pipeline``, which provides what is declared here."""

    config: Config
    store: Store
    clock: Clock
    gate: ValidationGate
    file_failures: FileFailures
    #: Strategy ``settle``: this process's earlier looks at the watch directories.
    _settle_watch: files.SettleWatch | None = None
    #: Seconds after the last intake until a waiting export may be complete (None: none
    #: waits on time); the daemon looks again then rather than after a whole poll interval.
    intake_due_in: float | None = None
    #: Invoices recorded per transaction, and how long one goes on taking more: short
    #: transactions let operators' commands write during a long intake (SQLite has one
    #: writer at a time, and they wait for it up to the busy timeout, 30 s).
    intake_batch_invoices = 100
    intake_batch_seconds = 2.0
    #: The channel's files still ``received`` in the store when its intake began: left by
    #: an intake that was interrupted, they are resumed when met again (one daemon per store).
    _resumable_intakes: frozenset[int] = frozenset()

    def intake_channel(self, channel: Channel, summary: PassSummary) -> None:
        with self.store.transaction() as tx:
            self._resumable_intakes = frozenset(tx.unfinished_source_files(channel.name))
        claims = self.config.processing_dir / channel.name
        # What a pass that did not end left claimed, or whose intake failed, is taken
        # first; its snapshots are stale.
        files.remove_quietly(claims / files.SNAPSHOTS)
        resumed = files.claimed_files(claims, channel.watch_dir / files.LOCAL_CLAIMS)
        self.file_failures.forget_others(channel.name, resumed)
        for claimed in resumed:
            if channel.name in self.gate.unhealthy:
                return
            log.warning("intake.claimed_file_resumed", channel=channel.name, file=files.shown(claimed.name))
            summary.files[self._take(channel, claimed, claimed, summary)] += 1
        for entry in self._complete_entries(channel):
            if channel.name in self.gate.unhealthy:
                break
            if entry.refusal is not None:
                summary.files[self._refuse(channel, entry)] += 1
                continue
            if channel.completion == "settle" and not files.unchanged(entry):
                continue  # written to while earlier files were read: looked at again next pass
            claimed = files.claim(entry.path, claims, channel.watch_dir / files.LOCAL_CLAIMS)
            if claimed is None:
                log.warning("intake.file_vanished", channel=channel.name, file=files.shown(entry.path.name),
                            detail="removed or renamed by its writer before it was claimed; nothing was read")
                summary.files["vanished"] += 1
                continue
            if entry.marker is not None:
                self._archive_marker(channel, entry.marker)
            summary.files[self._take(channel, claimed, entry.path, summary)] += 1

    def _complete_entries(self, channel: Channel) -> list[files.Entry]:
        """The channel's exports that its completion strategy says are complete, plus those
        refused without being read."""
        done_file = channel.completion == "done-file"
        entries = files.list_entries(channel.watch_dir, markers=done_file)
        if done_file:
            return files.with_done_markers(channel.watch_dir, entries)
        if channel.completion == "rename":
            return entries
        if self._settle_watch is None:
            self._settle_watch = files.SettleWatch()
        settled, wait = self._settle_watch.settled(channel.watch_dir, entries, settle_seconds=channel.settle_seconds)
        writing = files.open_for_writing([e.path for e in settled if e.refusal is None])
        for path in sorted(writing):
            # Its writer closing it is a file event: no need to look again sooner.
            log.info("intake.file_being_written", channel=channel.name, file=files.shown(path.name))
        if wait is not None:
            self.intake_due_in = wait if self.intake_due_in is None else min(self.intake_due_in, wait)
        return [entry for entry in settled if entry.path not in writing]

    def _take(self, channel: Channel, claimed: Path, origin: Path, summary: PassSummary) -> str:
        """Read one claimed export, found at ``origin``: the per-file boundary, which catches
        everything but an exit of the interpreter. Returns what became of it."""
        # The name readers, reasons and the store give it; longer than any name the
        # gateway writes only when escaped.
        name = files.fit_name(files.shown(origin.name), 255)
        read: Path | None = None
        try:
            read, digest, size = files.snapshot(claimed, self.config.processing_dir / channel.name / files.SNAPSHOTS,
                                                name)
            status = self.intake_file(channel, Claim(claimed, read, digest, size, name, files.shown(str(origin))),
                                      summary)
        except Exception as exc:  # noqa: BLE001 - the per-file boundary: log, leave the file claimed, go on
            files.remove_quietly(read)
            return self._file_failed(channel, claimed, origin, exc)
        self.file_failures.forget(channel.name, claimed)
        return status

    def _file_failed(self, channel: Channel, claimed: Path, origin: Path, exc: Exception) -> str:
        """An export whose intake raised: left claimed for the next pass, quarantined once it
        has failed ``FAILED_PASSES_BEFORE_QUARANTINE`` passes in a row.

        Most such failures come from around the file (the store unreachable, a directory
        replaced, a disk full) and pass once that is fixed: quarantining at the first one
        would make the operator drop back files that were fine. One that keeps failing is
        moved aside, so that it stops raising an alert every pass.
        """
        name = files.fit_name(files.shown(origin.name), 255)
        error = escaped(exc.message if isinstance(exc, GatewayError) else f"{type(exc).__name__}: {exc}")
        failed = self.file_failures.failed(channel.name, claimed)
        # The traceback of what is not the gateway's own error is a bug's: kept in the JSON log.
        log.error("alert.file_failed", channel=channel.name, file=name, error=error, failed_passes=failed,
                  waiting_in=escaped(str(claimed.parent)), exc_info=not isinstance(exc, GatewayError))
        if failed < FAILED_PASSES_BEFORE_QUARANTINE:
            return "failed"
        reason = f"{name}: intake failed {failed} passes in a row, the last time with: {error}"
        try:
            digest, size = files.file_digest(claimed)
            status = self._quarantine_file(channel, Claim(claimed, claimed, digest, size, name,
                                                          files.shown(str(origin))), reason)
        except Exception as again:  # noqa: BLE001 - the file stays; the next pass tries again
            log.error("alert.file_failed", channel=channel.name, file=name, failed_passes=failed,
                      error=escaped(f"could not be quarantined either: {type(again).__name__}: {again}"))
            return "failed"
        self.file_failures.forget(channel.name, claimed)
        log.error("intake.file_quarantined", channel=channel.name, file=name, reason=reason)
        return status

    def intake_file(self, channel: Channel, claim: Claim, summary: PassSummary) -> str:
        """Read, map and validate one claimed export; record every invoice; archive the file."""
        bound = log.bind(channel=channel.name, file=claim.name)
        with self.store.transaction() as tx:
            settled = tx.find_settled_source_file(channel.name, claim.sha256)
        if settled is not None:
            # Same bytes already dealt with: a crash came between the commit and the
            # move, or the ERP dropped the file twice. Never read it a second time.
            bound.warning("intake.already_processed", source_file=settled.id, sha256=claim.sha256)
            self._put_away(channel, claim, self.config.archive_dir, settled.id)
            return "already processed"
        try:
            recorded = self._intake_records(channel, claim)
        except InputError as exc:
            reason = files.excerpt(exc.message)
            bound.error("intake.file_quarantined", reason=reason, line=exc.line,
                        field=None if exc.field is None else escaped(exc.field))
            return self._quarantine_file(channel, claim, reason)
        if recorded is None:
            # Another process holds these bytes under this name in the store: left claimed
            # here; a later pass finds them processed and archives them, or resumes them.
            bound.debug("intake.claimed_elsewhere", sha256=claim.sha256)
            if claim.read != claim.claimed:
                files.remove_quietly(claim.read)
            return "claimed elsewhere"
        counts, source_id = recorded
        summary.invoices.update(counts)
        self._put_away(channel, claim, self.config.archive_dir, source_id)
        bound.info("intake.file_processed", sha256=claim.sha256, **counts)
        return SourceFileStatus.PROCESSED.value

    def _intake_records(self, channel: Channel, claim: Claim) -> tuple[Counter[str], int] | None:
        """Record every invoice of one file, a batch per transaction, and the file's id;
        None when another process holds the file in the store. A file-level error leaves
        nothing of the file."""
        options = CsvOptions(**vars(channel.csv))

        def read() -> Iterator[ExportedInvoice | RejectedRecord]:
            # The snapshot is read, but attachments are beside the export in the channel.
            return read_export(claim.read, channel.input_format, options, channel.input_stylesheet,
                               attachment_dir=channel.watch_dir / "attachments", vat_rounding=channel.vat_rounding,
                               limits=InvoiceLimits(channel.max_lines_per_invoice, channel.max_invoice_bytes))

        # A file-level error (a byte not in the encoding, a malformed record) must leave
        # nothing of the file behind: a file longer than a batch is read through once
        # before anything is recorded, then read again, one invoice at a time in memory.
        records = read()
        head = list(itertools.islice(records, self.intake_batch_invoices + 1))
        if len(head) > self.intake_batch_invoices:
            collections.deque(records, maxlen=0)
            records = read()
        else:
            records = iter(head)
        with self.store.transaction() as tx:
            source = tx.claim_source_file(channel=channel.name, name=claim.name, path=claim.origin,
                                          sha256=claim.sha256, size=claim.size, now=self.clock.now(),
                                          resumable=self._resumable_intakes)
            if source is None:
                return None
            # Resuming an interrupted intake: batches are whole and the same bytes give the
            # same invoices in the same order, so the first ones recorded are skipped.
            recorded = sum(tx.source_file_invoice_statuses(source.id).values())
        remaining = itertools.islice(records, recorded, None)
        while self._record_batch(channel, source, remaining, source_encoding(channel.input_format, options)):
            pass
        with self.store.transaction() as tx:
            statuses = tx.source_file_invoice_statuses(source.id)
            received = sum(statuses.values())
            errors = statuses.get(InvoiceStatus.VALIDATION_ERROR.value, 0)
            counts = +Counter({"received": received, InvoiceStatus.VALIDATION_ERROR.value: errors})
            counts["quarantined"] = statuses.get(InvoiceStatus.QUARANTINED.value, 0)
            counts["valid"] = received - counts["quarantined"] - errors
            tx.settle_source_file(
                source,
                status=SourceFileStatus.PROCESSED.value,
                reason=None,
                invoice_count=counts["received"],
                quarantined_count=counts["quarantined"],
                now=self.clock.now(),
            )
        return counts, source.id

    def _record_batch(
        self,
        channel: Channel,
        source: SourceFileRow,
        records: Iterator[ExportedInvoice | RejectedRecord],
        encoding: str,
    ) -> bool:
        """Record the next invoices of ``records`` in one transaction, up to a batch's
        count or time; False when there was none left."""
        taken = 0
        deadline = time.monotonic() + self.intake_batch_seconds
        with self.store.transaction() as tx:
            held: list[tuple[ExportedInvoice | RejectedRecord, str]] = []
            for record in records:
                taken += 1
                if isinstance(record, RejectedRecord):
                    held.append((record, "; ".join(error.message for error in record.errors)))
                else:
                    outcome, reason = self._accept(tx, channel, source, record)
                    if outcome is InvoiceStatus.QUARANTINED:
                        held.append((record, reason or ""))
                if taken >= self.intake_batch_invoices or time.monotonic() >= deadline:
                    break
            for record, reason in held:
                self._hold_back(tx, channel, source, record, reason, encoding)
        return taken > 0

    def _accept(
        self, tx: Tx, channel: Channel, source: SourceFileRow, invoice: ExportedInvoice
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
                        invoice=invoice.number, warning=files.excerpt(warning))
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
            waiting = tx.add_invoice(now=self.clock.now(), status=InvoiceStatus.VALIDATION_ERROR, reason=exc.message,
                                     validation_failure=exc.failure.value, **fields)
            self._replace_quarantined(tx, waiting, source)
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
        self._replace_quarantined(tx, accepted, source)
        if corrected is not None:
            tx.add_status_event(invoice_id=corrected.id, code="corrected", label=f"corrected by invoice #{accepted.id}",
                                now=self.clock.now())
            log.info("invoice.correction", invoice=invoice.number, corrects=corrected.id, correction=accepted.id)
        log.info(
            "invoice.valid", channel=channel.name, file=source.name, invoice=invoice.number, line=invoice.first_line,
            warnings=sum(1 for f in validation.findings if f.severity.value == "warning"),
        )
        return InvoiceStatus.VALID, None

    def _replace_quarantined(self, tx: Tx, invoice: InvoiceRow, source: SourceFileRow) -> None:
        """A quarantined invoice dropped back fixed (or exported again) takes the place of
        the held-back one, which leaves the list of invoices to fix."""
        held_back = files.held_back_origin(source.name)
        for old in tx.correct_quarantined(invoice, now=self.clock.now(), held_back=held_back):
            log.info("invoice.quarantined_corrected", invoice=invoice.invoice_number, corrected=old.id,
                     correction=invoice.id, status=invoice.status)

    def revalidate(self, channel: Channel, summary: PassSummary) -> None:
        """Validate again the channel's validation-error invoices, now that its validator runs.

        Those that ran out of time are left for the operator: they would stall each pass.
        """
        with self.store.transaction() as tx:
            waiting = [i.id for i in tx.invoices_in_status(InvoiceStatus.VALIDATION_ERROR, channel=channel.name)
                       if i.validation_failure != ValidatorFailure.TIME_BUDGET]
        for invoice_id in waiting:
            with self.store.transaction() as tx:
                invoice = tx.invoice(invoice_id)
                try:
                    validation = self.gate.validate(tx, channel, tx.invoice_payload(invoice))
                except ValidatorError as exc:
                    tx.note_validator_failure(invoice, exc.message, exc.failure)
                    log.error("alert.validation_error", channel=channel.name, invoice=invoice.invoice_number,
                              reason=exc.message)
                    if not self.gate.check_health(channel):
                        return
                    continue
                now = self.clock.now()
                if is_valid(validation.findings):
                    tx.record_validation_set(invoice, tx.validation_set(validation.artefacts, now=now).id)
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
        source: SourceFileRow,
        record: ExportedInvoice | RejectedRecord,
        reason: str,
        encoding: str,
    ) -> None:
        """Quarantine one invoice: a row with the reason, and its own text in a file of its own."""
        number = record.number if isinstance(record, ExportedInvoice) else record.invoice_number
        reason = files.excerpt(reason)
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
        held = tx.add_invoice(now=self.clock.now(), status=InvoiceStatus.QUARANTINED, reason=reason, **fields)
        self._replace_quarantined(tx, held, source)
        files.quarantine_invoice(
            self.config.quarantine_dir,
            channel=channel.name,
            source_name=source.name,
            source_id=source.id,
            first_line=record.first_line,
            text=record.original,
            encoding=encoding,
            reason=reason,
        )

    def _quarantine_file(self, channel: Channel, claim: Claim, reason: str) -> str:
        """Record the export as quarantined whole and move it, as read, beside its reason."""
        now = self.clock.now()
        with self.store.transaction() as tx:
            source = tx.add_source_file(
                channel=channel.name, name=claim.name, path=claim.origin, sha256=claim.sha256, size=claim.size,
                now=now,
            )
            tx.settle_source_file(
                source,
                status=SourceFileStatus.QUARANTINED.value,
                reason=reason,
                invoice_count=0,
                quarantined_count=0,
                now=now,
            )
        self._put_away(channel, claim, self.config.quarantine_dir, source.id, reason=reason)
        return SourceFileStatus.QUARANTINED.value

    def _put_away(self, channel: Channel, claim: Claim, directory: Path, source_id: int, *,
                  reason: str | None = None) -> None:
        """Archive (or quarantine, with ``reason``) exactly the bytes that were read, under a
        name no other file has; alert if the claimed file changed since it was read."""
        target = files.free_path(directory / channel.name, files.stamped(claim.name, self.clock.now(), source_id))
        if reason is not None:
            files.write_reason(target, reason)
        claimed = None if claim.read == claim.claimed else claim.claimed
        done = files.put_away(claim.read, claimed, claim.sha256, target)
        if done.changed is not None:
            # A writer still held the file open (unseen: another user, another machine)
            # and wrote after it was claimed: what it added was not read.
            log.error("alert.export_changed_while_read", channel=channel.name, file=claim.name, source_file=source_id,
                      read=str(done.path), changed=str(done.changed), sha256=claim.sha256,
                      detail="the export changed after it was claimed; only the bytes kept as read were taken: "
                             "compare the two files and drop the missing invoices back")

    def _refuse(self, channel: Channel, entry: files.Entry) -> str:
        """Quarantine what must not be read (a symbolic link, a hard link, a FIFO…) without
        opening it: the entry itself is moved, with its reason."""
        name = files.fit_name(files.shown(entry.path.name), 255)
        reason = f"{name} {entry.refusal}"
        now = self.clock.now()
        try:
            with self.store.transaction() as tx:
                source = tx.add_source_file(channel=channel.name, name=name, path=files.shown(str(entry.path)),
                                            sha256=files.NEVER_READ, size=entry.look.size, now=now)
                tx.settle_source_file(source, status=SourceFileStatus.QUARANTINED.value, reason=reason,
                                      invoice_count=0, quarantined_count=0, now=now)
                # Moved inside the transaction: no row for an entry that is gone.
                target = files.free_path(self.config.quarantine_dir / channel.name,
                                         files.stamped(name, now, source.id))
                moved = files.move_entry(entry.path, target, channel.watch_dir / files.LOCAL_CLAIMS / "refused")
                files.write_reason(moved, reason)
        except FileNotFoundError:
            log.warning("intake.file_vanished", channel=channel.name, file=name,
                        detail="removed or renamed before it could be refused; nothing was read")
            return "vanished"
        except Exception as exc:  # noqa: BLE001 - left in place, refused again next pass
            log.error("alert.file_failed", channel=channel.name, file=name, reason=reason,
                      error=escaped(f"could not be moved aside: {type(exc).__name__}: {exc}"))
            return "failed"
        log.error("alert.export_refused", channel=channel.name, file=name, reason=reason, quarantined=str(moved))
        return SourceFileStatus.QUARANTINED.value

    def _archive_marker(self, channel: Channel, marker: Path) -> None:
        """Strategy ``done-file``: the marker goes to the archive as its export is claimed,
        so that a later export of the same name waits for a marker of its own."""
        try:
            target = files.free_path(self.config.archive_dir / channel.name,
                                     files.stamped(files.shown(marker.name), self.clock.now()))
            shutil.move(marker, target)
        except Exception as exc:  # noqa: BLE001 - removed rather than left to mark a later export complete
            log.warning("intake.marker_not_archived", channel=channel.name, file=files.shown(marker.name),
                        error=escaped(f"{type(exc).__name__}: {exc}"))
            files.remove_quietly(marker)


def _finding_reason(where: str, finding: Finding) -> str:
    column = COLUMN_OF_RULE.get(finding.rule_id)
    return f"{where}, field {column!r}: {finding}" if column else f"{where}: {finding}"


def _invoice_fields(invoice: ExportedInvoice, channel: Channel, source: SourceFileRow) -> dict[str, object]:
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
