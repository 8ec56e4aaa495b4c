"""Reports: files returned by Chorus Pro, stored once by sha256, settled. A mixin of ``Tx``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select

from gateway.store.models import Report
from gateway.store.base import TxBase


class Reports(TxBase):
    def find_report(self, sha256: str) -> Report | None:
        return self.session.scalars(select(Report).where(Report.sha256 == sha256)).first()

    def add_report(self, *, sha256: str, file_name: str, partner: str, raw: bytes, now: datetime) -> Report:
        """Store a returned file; one already stored (same sha256) is returned as it is."""
        return self.store_report(sha256=sha256, file_name=file_name, partner=partner, raw=raw, now=now)[0]

    def store_report(
        self, *, sha256: str, file_name: str, partner: str, raw: bytes, now: datetime
    ) -> tuple[Report, bool]:
        """``add_report``, and whether this call stored it. Two processes picking up the
        same file store it once: the second insert does nothing (no unique-key error)."""
        stored = self._insert_unless_present(
            Report.__table__,
            {"sha256": sha256, "file_name": file_name, "partner": partner, "raw": raw, "received_at": now},
            "sha256",
        )
        report = self.find_report(sha256)
        assert report is not None
        if stored:
            self.audit("report.received", "report", report.id, now, file_name=file_name, sha256=sha256)
        return report, stored

    def settle_report(
        self, report: Report, *, kind: str | None, outcome: str, detail: str | None, now: datetime
    ) -> None:
        report.kind = kind
        report.outcome = outcome
        report.detail = detail
        self.audit("report." + outcome, "report", report.id, now, detail=detail)

    def reports_to_reconcile(self) -> Sequence[Report]:
        """Reports stored but not yet reconciled (e.g. after a crash)."""
        return self.session.scalars(select(Report).where(Report.outcome.is_(None)).order_by(Report.id)).all()

    def list_reports(self, *, problems_only: bool = False) -> Sequence[Report]:
        query = select(Report).order_by(Report.id)
        if problems_only:
            query = query.where(Report.outcome != "applied")
        return self.session.scalars(query).all()

