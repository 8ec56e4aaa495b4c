"""Read models: what the CLI and the demo show, copied out of the rows as frozen dataclasses.

A view does not change when the store does, and changing it changes nothing: the commands
that only read get these, never the store's rows."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any, Self


class _View:
    @classmethod
    def of(cls, row: Any) -> Self:
        """The view of a row: its attributes of the same names."""
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True)
class FlowView(_View):
    id: int
    flow_id: str
    partner: str
    interface_code: str
    syntax: str
    file_name: str
    sha256: str
    size: int
    status: str
    reason: str | None
    invoice_count: int
    integrated_count: int
    rejected_count: int
    attempts: int
    validated_with: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None
    report_overdue_at: datetime | None


@dataclass(frozen=True)
class InvoiceView(_View):
    id: int
    supplier_siret: str | None
    invoice_number: str | None
    issue_year: int | None
    issue_date: date | None
    buyer_siret: str | None
    type_code: str | None
    currency: str | None
    total_with_vat: str | None
    status: str
    reason: str | None
    source_file_id: int
    source_line: int
    channel: str
    partner: str | None
    syntax: str | None
    payload_sha256: str | None
    validation_set_id: int | None
    validation_failure: str | None
    corrects_id: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ReportView(_View):
    """A stored report, without its bytes."""

    id: int
    sha256: str
    file_name: str
    partner: str
    kind: str | None
    outcome: str | None
    detail: str | None
    received_at: datetime


@dataclass(frozen=True)
class StatusEventView(_View):
    id: int
    invoice_id: int | None
    flow_pk: int | None
    code: str
    label: str | None
    source: str
    report_id: int | None
    occurred_at: datetime
    recorded_at: datetime


@dataclass(frozen=True)
class TimelineEntry:
    """A status of an invoice with the report that carried it, if one did."""

    event: StatusEventView
    report: ReportView | None


@dataclass(frozen=True)
class SourceFileView(_View):
    id: int
    channel: str
    name: str
    path: str
    sha256: str
    size: int
    status: str
    reason: str | None
    invoice_count: int
    quarantined_count: int
    received_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class DirectoryImportView(_View):
    id: int
    file_name: str
    sha256: str
    structures: int
    services: int
    imported_at: datetime
