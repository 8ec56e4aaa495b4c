"""Reports: files returned by Chorus Pro, stored once by sha256, settled. A mixin of ``Tx``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import defer

from gateway.domain import ReportOutcome
from gateway.errors import StoreError

from gateway.store.models import Report
from gateway.store.base import TxBase
from gateway.store.rows import ReportRow
from gateway.store.views import ReportView


class Reports(TxBase):
    def find_report(self, sha256: str) -> Report | None:
        return self.session.scalars(select(Report).where(Report.sha256 == sha256)).first()

    def report(self, report_id: int) -> ReportRow:
        """The stored report with this id; ``StoreError`` when there is none."""
        return self._by_id(Report, report_id, "report")

    def report_view(self, report_id: int) -> ReportView:
        return ReportView.of(self._by_id(Report, report_id, "report"))

    def store_report(
        self, *, sha256: str, file_name: str, partner: str, raw: bytes, now: datetime
    ) -> tuple[Report, bool]:
        """Store a returned file, and say whether this call stored it; one already stored (same sha256) is
        returned as it is. Two processes picking up the same file store it once: the second insert does
        nothing (no unique-key error). ``pipeline/reports.py`` (``store_report``) calls it."""
        stored = self._insert_unless_present(
            Report.__table__,
            {"sha256": sha256, "file_name": file_name, "partner": partner, "raw": raw, "received_at": now},
            "sha256",
        )
        report = self.find_report(sha256)
        if report is None:
            raise StoreError(f"report {file_name} (sha256 {sha256}) was stored and cannot be read back")
        if stored:
            self.audit("report.received", "report", report.id, now, file_name=file_name, sha256=sha256)
        return report, stored

    def settle_report(
        self, report: ReportRow, *, kind: str | None, outcome: str, detail: str | None, now: datetime
    ) -> None:
        row = self._by_id(Report, report.id, "report")
        row.kind = kind
        row.outcome = outcome
        row.detail = detail
        self.audit("report." + outcome, "report", row.id, now, detail=detail)

    def reports_to_reconcile(self) -> Sequence[Report]:
        """Reports stored but not yet reconciled (e.g. after a crash)."""
        return self.session.scalars(select(Report).where(Report.outcome.is_(None)).order_by(Report.id)).all()

    def list_reports(self, *, problems_only: bool = False) -> list[ReportView]:
        query = select(Report).options(defer(Report.raw)).order_by(Report.id)
        if problems_only:
            query = query.where(Report.outcome != ReportOutcome.APPLIED.value)
        return [ReportView.of(row) for row in self.session.scalars(query)]

