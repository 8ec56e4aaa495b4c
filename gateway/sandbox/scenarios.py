"""Sandbox stage: the scenarios, the lifecycle over time, and the answers' two formats.

- Scenarios (``SandboxSettings.scenario``) decide what "Chorus Pro" makes of the
  invoices that pass the technical checks: ``default`` runs the documented business
  checks (directory, service code, duplicates); ``all-integrated`` integrates them all;
  ``partial`` rejects the invoice numbers listed in ``reject`` and integrates the rest;
  ``rejected`` refuses the whole flow (93); ``silent`` answers nothing at all.
- The lifecycle: each integrated flow gets a ``LifecycleSchedule``; status k of
  ``steps`` is due at integration time + k × ``interval_seconds``. ``emit_due`` writes
  the statuses due since the last emission; the runner keeps the schedules.
- The answers (``flow_answers``, ``lifecycle_document``): ``CPPStatut``
  (``cppstatut.py``) or ``CDAR`` (``cdar.py``: flow 500/501, a rejected invoice is its
  own status 213, lifecycle codes mapped by ``CDAR_OF_CPP``). See docs/sandbox.md.

Pure: no I/O and no clock (every time is given).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from types import ModuleType
from typing import Any, Protocol

from gateway.domain import INVOICE_STATUS_LABELS
from gateway.errors import GatewayError
from gateway.reports.model import ErrorLine, InvoiceStatusEntry
from gateway.sandbox.cppstatut import CHORUS_SENDER_ID, flow_status_document, invoice_status_document

SCENARIO_DEFAULT = "default"
SCENARIO_ALL_INTEGRATED = "all-integrated"
SCENARIO_PARTIAL = "partial"
SCENARIO_REJECTED = "rejected"
SCENARIO_SILENT = "silent"
SCENARIOS = (SCENARIO_DEFAULT, SCENARIO_ALL_INTEGRATED, SCENARIO_PARTIAL, SCENARIO_REJECTED, SCENARIO_SILENT)

REPORT_FORMAT_CPPSTATUT = "cppstatut"
REPORT_FORMAT_CDAR = "cdar"
REPORT_FORMATS = (REPORT_FORMAT_CPPSTATUT, REPORT_FORMAT_CDAR)

#: The error code of the rejections a scenario forces, unless ``reject_code`` says otherwise.
CODE_SCENARIO = "SCENARIO"
_DEFAULT_REJECT_LABELS = {
    SCENARIO_PARTIAL: "invoice rejected by the sandbox (scenario partial)",
    SCENARIO_REJECTED: "flow rejected by the sandbox (scenario rejected)",
}
LIFECYCLE_INTERFACE = "FEN1201A"
#: CDAR statuses: a flow recevable or irrecevable, an invoice rejected by the platform.
CDAR_RECEVABLE, CDAR_IRRECEVABLE, CDAR_REJECTED = "500", "501", "213"
_CDAR_FLOW_LABELS = {CDAR_RECEVABLE: "Recevable", CDAR_IRRECEVABLE: "Irrecevable"}
_DURATION = re.compile(r"(?P<amount>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def settings_problem(
    *,
    scenario: str,
    reject: Sequence[str],
    reject_code: str,
    reject_label: str | None,
    lifecycle: Sequence[str],
    lifecycle_interval_seconds: float,
    report_format: str,
) -> tuple[str, str] | None:
    """The first wrong setting, as (name, reason), or None; names are the config keys.

    >>> settings_problem(scenario="partial", reject=[], reject_code="X", reject_label=None, lifecycle=["01"],
    ...                  lifecycle_interval_seconds=0, report_format="cppstatut")
    ('reject', 'scenario "partial" needs the invoice numbers to reject')
    """
    if scenario not in SCENARIOS:
        return "scenario", f"must be one of {', '.join(SCENARIOS)}, not {scenario!r}"
    if scenario == SCENARIO_PARTIAL and not reject:
        return "reject", 'scenario "partial" needs the invoice numbers to reject'
    if reject and scenario != SCENARIO_PARTIAL:
        return "reject", f'applies only to scenario "partial", not {scenario!r}'
    if any(not number.strip() for number in reject):
        return "reject", "an invoice number cannot be empty"
    if not reject_code.strip():
        return "reject_code", "cannot be empty"
    if reject_label is not None and not reject_label.strip():
        return "reject_label", "cannot be empty"
    for code in lifecycle:
        if not (re.fullmatch(r"[0-9]{2}", code) and 1 <= int(code) <= 41):
            return "lifecycle", f"{code!r} is not an invoice status code 01–41"
    if lifecycle_interval_seconds < 0:
        return "lifecycle_interval_seconds", f"must be 0 or more, got {lifecycle_interval_seconds}"
    if report_format not in REPORT_FORMATS:
        return "report_format", f"must be one of {', '.join(REPORT_FORMATS)}, not {report_format!r}"
    if report_format == REPORT_FORMAT_CDAR:
        unmapped = [code for code in lifecycle if code not in _cdar().CDAR_OF_CPP]
        if unmapped:
            return "lifecycle", f'{unmapped[0]!r} has no CDAR equivalent; with report_format = "cdar" use 01–12'
    return None


def default_reject_label(scenario: str) -> str:
    """The label of the rejections ``scenario`` forces when ``reject_label`` is not set."""
    return _DEFAULT_REJECT_LABELS.get(scenario, "rejected by the sandbox")


def parse_duration(text: str) -> timedelta:
    """A positive duration: seconds, or a number followed by s, m, h or d.

    >>> [parse_duration(t).total_seconds() for t in ("90", "90s", "30m", "2h", "1.5d")]
    [90.0, 90.0, 1800.0, 7200.0, 129600.0]
    """
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or float(match["amount"]) <= 0:
        raise ValueError(f"{text!r} is not a positive duration such as 90, 90s, 30m, 2h or 1d")
    return timedelta(seconds=float(match["amount"]) * _UNIT_SECONDS[match["unit"]])


# -- the lifecycle over time -------------------------------------------------------------


@dataclass(frozen=True)
class ScheduledInvoice:
    """What a lifecycle status names of one integrated invoice."""

    supplier_siret: str
    buyer_siret: str
    invoice_number: str
    issue_date: date | None


@dataclass(frozen=True)
class LifecycleSchedule:
    """The statuses the invoices of one integrated flow receive over time.

    Step k (``steps[k]``) is due at ``integrated_at`` + k × ``interval_seconds``;
    ``emitted`` steps were written already. With an interval of 0 every step is due at
    once, stamped one second apart, as Chorus Pro's statuses never share an instant.
    """

    flow_id: str
    integrated_at: datetime
    steps: tuple[str, ...]
    interval_seconds: float
    invoices: tuple[ScheduledInvoice, ...]
    emitted: int = 0

    def due_at(self, step: int) -> datetime:
        return self.integrated_at + timedelta(seconds=step * self.interval_seconds)

    def timestamp(self, step: int) -> datetime:
        return self.integrated_at + timedelta(seconds=step * (self.interval_seconds or 1))

    def due_count(self, now: datetime) -> int:
        """How many steps are due at ``now`` (emitted or not)."""
        return sum(1 for step in range(len(self.steps)) if self.due_at(step) <= now)

    def to_json(self) -> dict[str, Any]:
        return {
            "flow_id": self.flow_id,
            "integrated_at": self.integrated_at.isoformat(),
            "steps": list(self.steps),
            "interval_seconds": self.interval_seconds,
            "emitted": self.emitted,
            "invoices": [
                [i.supplier_siret, i.buyer_siret, i.invoice_number, i.issue_date and i.issue_date.isoformat()]
                for i in self.invoices
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LifecycleSchedule:
        """Read ``to_json``'s output back; raises ValueError, KeyError or TypeError when it is not."""
        integrated_at = datetime.fromisoformat(data["integrated_at"])
        if integrated_at.tzinfo is None:
            raise ValueError(f"integrated_at {data['integrated_at']!r} has no timezone")
        invoices = tuple(
            ScheduledInvoice(str(supplier), str(buyer), str(number), date.fromisoformat(issued) if issued else None)
            for supplier, buyer, number, issued in data["invoices"]
        )
        return cls(
            flow_id=str(data["flow_id"]),
            integrated_at=integrated_at,
            steps=tuple(str(code) for code in data["steps"]),
            interval_seconds=float(data["interval_seconds"]),
            invoices=invoices,
            emitted=int(data["emitted"]),
        )


def lifecycle_name(partner_code: str, flow_id: str, first_step: int) -> str:
    """The first batch of a flow's statuses is named after the flow, as before; later ones get ``_<step>``.

    >>> lifecycle_name("AAA123", "F" * 25, 0), lifecycle_name("AAA123", "F" * 25, 2)[-10:]
    ('FEN1201A_AAA123_FFFFFFFFFFFFFFFFFFFFFFFFF.xml', 'FFF_02.xml')
    """
    suffix = f"_{first_step:02d}" if first_step else ""
    return f"{LIFECYCLE_INTERFACE}_{partner_code}_{flow_id}{suffix}.xml"


def emit_due(
    schedule: LifecycleSchedule, now: datetime, *, report_format: str, partner_code: str
) -> tuple[list[tuple[str, bytes]], LifecycleSchedule | None]:
    """The lifecycle file of the steps due since the last emission (none: no file), and
    the schedule left (None once every step is emitted)."""
    first = schedule.emitted
    entries, left = _due_entries(schedule, now, report_format)
    files = []
    if entries:
        document = lifecycle_document(
            report_format=report_format, partner_code=partner_code, flow_id=schedule.flow_id, entries=entries, now=now
        )
        files.append((lifecycle_name(partner_code, schedule.flow_id, first), document))
    return files, left


def emit_all_due(
    schedules: Iterable[LifecycleSchedule], now: datetime, *, report_format: str, partner_code: str
) -> tuple[list[tuple[str, bytes]], list[LifecycleSchedule]]:
    """``emit_due`` over every schedule: the files, and the schedules not finished yet."""
    files: list[tuple[str, bytes]] = []
    remaining: list[LifecycleSchedule] = []
    for schedule in schedules:
        written, left = emit_due(schedule, now, report_format=report_format, partner_code=partner_code)
        files += written
        if left is not None:
            remaining.append(left)
    return files, remaining


def _due_entries(
    schedule: LifecycleSchedule, now: datetime, report_format: str
) -> tuple[list[InvoiceStatusEntry], LifecycleSchedule | None]:
    due = max(schedule.due_count(now), schedule.emitted)
    steps = [step for step in range(schedule.emitted, due) if not _repeated(schedule.steps, step, report_format)]
    entries = [
        _status_entry(
            invoice.supplier_siret,
            invoice.buyer_siret,
            invoice.invoice_number,
            invoice.issue_date,
            code=schedule.steps[step],
            timestamp=schedule.timestamp(step),
            report_format=report_format,
        )
        for invoice in schedule.invoices
        for step in steps
    ]
    left = replace(schedule, emitted=due)
    return entries, (None if left.emitted >= len(left.steps) else left)


def _repeated(steps: Sequence[str], step: int, report_format: str) -> bool:
    """In CDAR, a step that maps to the same code as the one before it (07 and 08 are both
    204) is not sent again: the buyer's side says nothing new."""
    if report_format != REPORT_FORMAT_CDAR or step == 0:
        return False
    mapping = _cdar().CDAR_OF_CPP
    return bool(mapping.get(steps[step]) == mapping.get(steps[step - 1]))


def _status_entry(
    supplier: str,
    buyer: str | None,
    number: str,
    issued: date | None,
    *,
    code: str,
    timestamp: datetime,
    report_format: str,
    comment: str | None = None,
) -> InvoiceStatusEntry:
    """One invoice status; ``code`` is a CPPStatut code, mapped to its CDAR code when
    writing CDAR (``cdar.CDAR_OF_CPP``), except the CDAR-only rejection 213."""
    label = INVOICE_STATUS_LABELS.get(code)
    if report_format == REPORT_FORMAT_CDAR:
        from gateway.domain import CDAR_INVOICE_STATUS_LABELS

        code = _cdar().CDAR_OF_CPP.get(code, code)
        label = CDAR_INVOICE_STATUS_LABELS.get(code)
    return InvoiceStatusEntry(
        supplier_id=supplier,
        supplier_id_type="1",
        buyer_id=buyer or "",
        invoice_number=number,
        invoice_date=issued,
        code=code,
        label=label,
        comment=comment,
        timestamp=timestamp,
    )


# -- the answers in either format ----------------------------------------------------------


class Rejection(Protocol):
    """An invoice the sandbox rejected (``simulator.RejectedInvoice``)."""

    invoice_number: str | None
    supplier_siret: str | None
    buyer_siret: str | None
    code: str
    reason: str


def flow_answers(
    *,
    report_format: str,
    partner_code: str,
    report_name: str,
    flow_id: str,
    status: str,
    comment: str,
    errors: Sequence[ErrorLine],
    rejected: Sequence[Rejection] = (),
    schedule: LifecycleSchedule | None = None,
    now: datetime,
) -> tuple[list[tuple[str, bytes]], LifecycleSchedule | None]:
    """What goes back for one flow: the integration report, then the invoice statuses
    due at once (``lifecycle_name(…, 0)``); and the schedule left.

    ``CPPStatut``: the flow status (90, 96, 93) carries one error line per rejected
    invoice. ``CDAR``: the flow is 501 (irrecevable) when refused as a whole, else 500
    (recevable), and each rejected invoice gets its own status 213 "CODE: reason" in
    the lifecycle file, the profile having no invoice line in a flow status. An
    invoice whose number or supplier could not be read cannot be named in CDAR.
    """
    entries: list[InvoiceStatusEntry] = []
    if report_format == REPORT_FORMAT_CDAR:
        flow_errors = [error for error in errors if error.invoice_number is None]
        code = CDAR_IRRECEVABLE if flow_errors else CDAR_RECEVABLE
        report = _cdar().cdar_flow_status(
            flow_id=flow_id,
            code=code,
            label=_CDAR_FLOW_LABELS[code],
            errors=flow_errors,
            produced_at=now,
            sender=CHORUS_SENDER_ID,
            receiver=partner_code,
        )
        entries += [
            _status_entry(
                r.supplier_siret,
                r.buyer_siret,
                r.invoice_number,
                None,
                code=CDAR_REJECTED,
                timestamp=now,
                report_format=report_format,
                comment=f"{r.code}: {r.reason}",
            )
            for r in rejected
            if r.invoice_number and r.supplier_siret
        ]
    else:
        report = flow_status_document(
            flow_id=flow_id, code=status, comment=comment, timestamp=now, errors=errors, receiver_id=partner_code
        )
    files = [(report_name, report)]
    if schedule is not None:
        due, schedule = _due_entries(schedule, now, report_format)
        entries += due
    if entries:
        document = lifecycle_document(
            report_format=report_format, partner_code=partner_code, flow_id=flow_id, entries=entries, now=now
        )
        files.append((lifecycle_name(partner_code, flow_id, 0), document))
    return files, schedule


def lifecycle_document(
    *, report_format: str, partner_code: str, flow_id: str, entries: Sequence[InvoiceStatusEntry], now: datetime
) -> bytes:
    """Invoice statuses (codes already in the format's own): ``CPPStatut``
    ``CPPFactureStatuts``, or a ``CDAR`` message."""
    if report_format == REPORT_FORMAT_CDAR:
        return _cdar().cdar_invoice_statuses(
            flow_id=flow_id, entries=entries, produced_at=now, sender=CHORUS_SENDER_ID, receiver=partner_code
        )
    return invoice_status_document(entries=entries, flow_id=flow_id, produced_on=now.date(), receiver_id=partner_code)


def _cdar() -> ModuleType:
    try:
        from gateway.sandbox import cdar
    except ModuleNotFoundError as exc:
        if exc.name != "gateway.sandbox.cdar":
            raise
        raise GatewayError('report_format = "cdar" needs gateway/sandbox/cdar.py, absent from this version') from exc
    return cdar
