"""Source files: the ERP exports claimed, taken in, settled. A mixin of ``Tx``."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import and_, exists, func, insert, literal, select

from gateway.domain import SourceFileStatus
from gateway.store.models import Invoice, SourceFile
from gateway.store.base import TxBase
from gateway.store.rows import SourceFileRow
from gateway.store.views import SourceFileView


class SourceFiles(TxBase):
    def find_settled_source_file(self, channel: str, sha256: str) -> SourceFile | None:
        """A file of this channel with these bytes that was already dealt with."""
        return self.session.scalars(
            select(SourceFile)
            .where(SourceFile.channel == channel, SourceFile.sha256 == sha256)
            # Only a processed file is settled: one quarantined whole (wrong encoding, missing
            # column) must be read again when the operator fixes the setting and re-drops it.
            .where(SourceFile.status == "processed")
            .order_by(SourceFile.id.desc())
        ).first()

    def claim_source_file(
        self,
        *,
        channel: str,
        name: str,
        path: str,
        sha256: str,
        size: int,
        now: datetime,
        resumable: Collection[int] = (),
    ) -> SourceFile | None:
        """Claim an export for intake: one ``received`` row per channel, name and sha256.

        Returns the new row; or, when the file's intake was interrupted (its row is still
        ``received``) and that row's id is in ``resumable``, the row to resume; None when
        another process holds the file or has just processed it: the caller leaves it alone.
        """
        table = SourceFile.__table__
        self._serialize("source-file", channel, name, sha256)
        taken = and_(
            table.c.channel == channel,
            table.c.name == name,
            table.c.sha256 == sha256,
            table.c.status.in_([SourceFileStatus.RECEIVED.value, SourceFileStatus.PROCESSED.value]),
        )
        values = {
            "channel": channel, "name": name, "path": path, "sha256": sha256, "size": size,
            "status": SourceFileStatus.RECEIVED.value, "invoice_count": 0, "quarantined_count": 0,
            "received_at": now, "updated_at": now,
        }
        # Check and insert in one statement: on SQLite the statement runs under the write
        # lock; on PostgreSQL the advisory lock above orders the claimers of this file.
        unless_taken = select(*(literal(value, table.c[key].type).label(key) for key, value in values.items()))
        claimed = self.session.execute(
            insert(table).from_select(list(values), unless_taken.where(~exists().where(taken))).returning(table.c.id)
        ).scalar()
        if claimed is not None:
            return self.session.get(SourceFile, claimed)
        held = self.session.scalars(select(SourceFile).where(taken).order_by(SourceFile.id.desc())).first()
        if held is not None and held.status == SourceFileStatus.RECEIVED.value and held.id in resumable:
            return held
        return None

    def unfinished_source_files(self, channel: str) -> set[int]:
        """Ids of the channel's files whose intake began and did not end (``received``)."""
        return set(
            self.session.scalars(
                select(SourceFile.id).where(
                    SourceFile.channel == channel, SourceFile.status == SourceFileStatus.RECEIVED.value
                )
            )
        )

    def source_file_invoice_statuses(self, source_file_id: int) -> dict[str, int]:
        """How many of a file's invoices are in each status (its recorded invoices, counted)."""
        rows = self.session.execute(
            select(Invoice.status, func.count(Invoice.id))
            .where(Invoice.source_file_id == source_file_id)
            .group_by(Invoice.status)
        ).all()
        return {status: count for status, count in rows}

    def add_source_file(
        self, *, channel: str, name: str, path: str, sha256: str, size: int, now: datetime
    ) -> SourceFile:
        row = SourceFile(
            channel=channel,
            name=name,
            path=path,
            sha256=sha256,
            size=size,
            status="received",
            invoice_count=0,
            quarantined_count=0,
            received_at=now,
            updated_at=now,
        )
        self.session.add(row)
        self.session.flush()
        return row

    def settle_source_file(
        self,
        source: SourceFileRow,
        *,
        status: str,
        reason: str | None,
        invoice_count: int,
        quarantined_count: int,
        now: datetime,
    ) -> None:
        row = self._by_id(SourceFile, source.id, "source file")
        row.status = status
        row.reason = reason
        row.invoice_count = invoice_count
        row.quarantined_count = quarantined_count
        row.updated_at = now
        self.audit("source_file." + status, "source_file", row.id, now, reason=reason)

    def source_file(self, source_file_id: int) -> SourceFileRow:
        """The source file with this id; ``StoreError`` when there is none."""
        return self._by_id(SourceFile, source_file_id, "source file")

    def source_files(self) -> list[SourceFileView]:
        return [SourceFileView.of(row) for row in self.session.scalars(select(SourceFile).order_by(SourceFile.id))]

