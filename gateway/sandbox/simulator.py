"""Sandbox stage: what the simulated Chorus Pro decides about one deposited flow.

``process_flow`` takes a flow file's name and bytes and returns the verdict and the
files "Chorus Pro" sends back: an integration report (``CSO…``, a flow status 90 / 96 /
93 with one error line per rejection) and, when some invoice is integrated, a lifecycle
file (``FEN1201A…``, invoice statuses) with the statuses due at once; the outcome's
``schedule`` holds those due later. Answers are ``CPPStatut`` or ``CDAR``
(``SandboxSettings.report_format``).

What it checks, in order: the file name's shape, partner code and interface; the
archive (a readable, non-empty tar.gz of regular files, within the flow limits); then
per invoice, UBL or CII: the gateway's own validation (XSD, SIRETs); then, in the
``default`` scenario, the buyer's presence in the sandbox directory (and its service
code when the directory requires one) and duplicates of (supplier SIRET, invoice
number) against what was already integrated. Other scenarios replace these last
checks with a forced verdict (``scenarios.py``).

Pure: no I/O, no clock, no memory between calls (``runner.py`` keeps the state). It
does not run the EN 16931 Schematron nor Chorus Pro's undocumented checks: passing
the sandbox does not prove Chorus Pro will accept a flow.
"""

from __future__ import annotations

import io
import re
import tarfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, BinaryIO

from lxml import etree

from gateway.domain import CHANNEL_SYNTAXES, Syntax
from gateway.reports.model import ErrorLine
from gateway.sandbox.archive import ArchiveLimits, ArchiveRefused, read_members
from gateway.sandbox.cppstatut import flow_error_line, invoice_error_line
from gateway.sandbox.directory import SAMPLE_PUBLIC_STRUCTURES, PublicStructure
from gateway.sandbox.scenarios import (
    CODE_SCENARIO,
    LIFECYCLE_INTERFACE as LIFECYCLE_INTERFACE,  # re-exported: it used to live here
    REPORT_FORMAT_CPPSTATUT,
    SCENARIO_DEFAULT,
    SCENARIO_PARTIAL,
    SCENARIO_REJECTED,
    SCENARIO_SILENT,
    LifecycleSchedule,
    ScheduledInvoice,
    default_reject_label,
    flow_answers,
    settings_problem,
)
from gateway.validation import Finding, Severity, is_valid, validate_invoice
from gateway.validation.chorus import party_siret
from gateway.validation.invoice import parse_header
from gateway.xml import syntax

if TYPE_CHECKING:
    from gateway.config import SandboxConfig

#: ``{interface}_{partner}_{flow_id}.tar.gz``: 8, 6 and 25 characters (DOMAIN.md §1).
FLOW_NAME = re.compile(
    r"(?P<interface>[A-Z]{3}[0-9]{4}[A-Z])_(?P<partner>[A-Za-z0-9]{6})_(?P<flow_id>[A-Za-z0-9]{25})"
    r"(?P<layout>\.tar\.gz|\.xml)"
)
_LOOSE_NAME = re.compile(r"(?P<interface>[^_]*)_(?P<partner>[^_]*)_(?P<flow_id>.+?)(?:\.tar\.gz|\.xml)?")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: Interfaces the sandbox understands: those whose invoices ``validate_invoice`` reads.
# The simulator reads the E1 flows a channel can send; E2 flows (CPP, Factur-X) come later.
KNOWN_INTERFACES = frozenset(syntax.SYNTAXES[known].interface_code for known in CHANNEL_SYNTAXES)
#: Used in a report's name when the deposited name gave no usable interface code.
_UNKNOWN_REPORT_INTERFACE = "CSO0000A"
_MAX_FINDINGS_IN_LABEL = 5

# The sandbox's own error codes: Chorus Pro's catalogue is not public (research §4.3).
CODE_FILE_NAME = "NOM_FICHIER"
CODE_PARTNER = "PARTENAIRE"
CODE_INTERFACE = "INTERFACE"
CODE_ARCHIVE = "ARCHIVE"
CODE_VALIDATION = "VALIDATION"
CODE_DIRECTORY = "ANNUAIRE"
CODE_SERVICE = "CODE_SERVICE"
CODE_DUPLICATE = "DOUBLON"


@dataclass(frozen=True)
class SandboxSettings:
    """How the simulated Chorus Pro behaves.

    ``lifecycle``: the invoice status codes sent, in order, for each integrated invoice
    (none: no lifecycle file); code k is due ``k × lifecycle_interval_seconds`` after
    integration (0: all at once). ``scenario``, ``reject``, ``reject_code`` and
    ``reject_label``: see ``scenarios.py``. Limits are Chorus Pro's documented ones
    (DOMAIN.md §1). Raises ``ValueError`` for a wrong combination.
    """

    partner_code: str = "AAA123"
    directory: tuple[PublicStructure, ...] = SAMPLE_PUBLIC_STRUCTURES
    lifecycle: tuple[str, ...] = ("01", "03")
    max_invoices: int = 500
    max_member_bytes: int = 120 * 1024 * 1024
    max_flow_bytes: int = 1024 * 1024 * 1024
    scenario: str = SCENARIO_DEFAULT
    reject: frozenset[str] = frozenset()
    reject_code: str = CODE_SCENARIO
    reject_label: str | None = None
    lifecycle_interval_seconds: float = 0.0
    report_format: str = REPORT_FORMAT_CPPSTATUT

    def __post_init__(self) -> None:
        problem = settings_problem(
            scenario=self.scenario,
            reject=sorted(self.reject),
            reject_code=self.reject_code,
            reject_label=self.reject_label,
            lifecycle=self.lifecycle,
            lifecycle_interval_seconds=self.lifecycle_interval_seconds,
            report_format=self.report_format,
        )
        if problem is not None:
            raise ValueError(f"{problem[0]}: {problem[1]}")

    @property
    def rejection_label(self) -> str:
        """The label of the rejections the scenario forces."""
        return self.reject_label or default_reject_label(self.scenario)

    @classmethod
    def from_config(cls, sandbox: SandboxConfig, **overrides: Any) -> SandboxSettings:
        """The settings of ``[sandbox]``, with per-run ``overrides`` (None: keep the file's).

        Naming invoices to ``reject`` without a scenario implies ``partial``; choosing
        another scenario than ``partial`` forgets the file's ``reject`` list.
        """
        chosen = {key: value for key, value in overrides.items() if value is not None}
        if chosen.get("reject") and "scenario" not in chosen:
            chosen["scenario"] = SCENARIO_PARTIAL
        fields: dict[str, Any] = {
            "partner_code": sandbox.partner_code,
            "scenario": sandbox.scenario,
            "reject": sandbox.reject,
            "reject_code": sandbox.reject_code,
            "reject_label": sandbox.reject_label,
            "lifecycle": sandbox.lifecycle,
            "lifecycle_interval_seconds": sandbox.lifecycle_interval_seconds,
            "report_format": sandbox.report_format,
            **chosen,
        }
        if fields["scenario"] != SCENARIO_PARTIAL and "reject" not in chosen:
            fields["reject"] = ()
        fields["reject"] = frozenset(fields["reject"])
        fields["lifecycle"] = tuple(fields["lifecycle"])
        return cls(**fields)


@dataclass(frozen=True)
class IntegratedInvoice:
    """An invoice the sandbox accepted."""

    member: str
    invoice_number: str
    supplier_siret: str
    buyer_siret: str
    issue_date: date | None


@dataclass(frozen=True)
class RejectedInvoice:
    """An invoice the sandbox refused; numbers and SIRETs are None when unreadable."""

    member: str
    invoice_number: str | None
    supplier_siret: str | None
    buyer_siret: str | None
    code: str
    reason: str


@dataclass(frozen=True)
class SandboxOutcome:
    """The verdict on one flow and the files sent back, as (file name, bytes)."""

    file_name: str
    flow_id: str
    status_code: str
    integrated: tuple[IntegratedInvoice, ...]
    rejected: tuple[RejectedInvoice, ...]
    files: tuple[tuple[str, bytes], ...]
    #: Why the whole flow was refused before its invoices were read (status 93 only).
    problem: str | None = None
    #: The lifecycle statuses still to come for the integrated invoices (None: none).
    schedule: LifecycleSchedule | None = None

    @property
    def answered(self) -> bool:
        """False when the scenario ``silent`` sent nothing back (``status_code`` is then "")."""
        return bool(self.files)

    @property
    def integrated_keys(self) -> frozenset[tuple[str, str]]:
        """(supplier SIRET, invoice number) of each integrated invoice."""
        return frozenset((i.supplier_siret, i.invoice_number) for i in self.integrated)


class _FlowRefused(Exception):
    def __init__(self, code: str, label: str) -> None:
        super().__init__(label)
        self.code = code
        self.label = label


@dataclass
class _Facts:
    root: str | None = None  #: the root element's tag; None when the file does not parse
    number: str | None = None
    issue_date: date | None = None
    supplier: str | None = None
    buyer: str | None = None
    buyer_reference: str | None = None
    #: Named in the rejection, so the sender looks where its syntax puts BT-10.
    buyer_reference_element: str = "cbc:BuyerReference"


def process_flow(
    file_name: str,
    archive: bytes | BinaryIO,
    *,
    settings: SandboxSettings,
    now: datetime,
    already_integrated: frozenset[tuple[str, str]] = frozenset(),
) -> SandboxOutcome:
    """Decide on one flow and write what Chorus Pro would send back.

    Status 90: every invoice integrated; 96: some rejected; 93: the flow refused
    (bad name, partner, interface or archive) or every invoice rejected.
    ``already_integrated`` holds (supplier SIRET, invoice number) pairs from earlier
    flows; an invoice matching one, or an earlier invoice of the same flow, is a duplicate.
    ``archive``: the flow's bytes, or a seekable stream of them (read as it goes, see
    ``archive.read_members``).
    """
    if now.tzinfo is None:
        raise ValueError("process_flow needs a timezone-aware 'now'")
    if settings.scenario == SCENARIO_SILENT:
        return SandboxOutcome(file_name, _loose_name(file_name)[1], "", (), (), ())
    try:
        interface, flow_id = _check_name(file_name, settings)
        # A flow named .xml is one invoice sent as itself; .tar.gz is a lot.
        stream = io.BytesIO(archive) if isinstance(archive, bytes) else archive
        if file_name.endswith(".xml"):
            members = _single(file_name, stream, settings)
        else:
            members = _read_members(stream, settings)
        if settings.scenario == SCENARIO_REJECTED:
            raise _FlowRefused(settings.reject_code, settings.rejection_label)
        integrated, rejected = _check_members(members, interface, settings, already_integrated)
    except _FlowRefused as refused:
        interface, flow_id = _loose_name(file_name)
        return _refused_flow(file_name, interface, flow_id, refused, settings, now)
    status = "93" if not integrated else ("96" if rejected else "90")
    schedule = None
    if integrated and settings.lifecycle:
        invoices = tuple(
            ScheduledInvoice(i.supplier_siret, i.buyer_siret, i.invoice_number, i.issue_date) for i in integrated
        )
        schedule = LifecycleSchedule(flow_id, now, settings.lifecycle, settings.lifecycle_interval_seconds, invoices)
    files, schedule = flow_answers(
        report_format=settings.report_format,
        partner_code=settings.partner_code,
        report_name=_report_name(interface, settings, flow_id),
        flow_id=flow_id,
        status=status,
        comment=f"{len(integrated)} invoice(s) integrated, {len(rejected)} rejected",
        errors=[_rejection_line(r) for r in rejected],
        rejected=rejected,
        schedule=schedule,
        now=now,
    )
    return SandboxOutcome(
        file_name, flow_id, status, tuple(integrated), tuple(rejected), tuple(files), schedule=schedule
    )


# -- the flow as a whole ---------------------------------------------------------------


def _check_name(file_name: str, settings: SandboxSettings) -> tuple[str, str]:
    match = FLOW_NAME.fullmatch(file_name)
    if match is None:
        raise _FlowRefused(
            CODE_FILE_NAME,
            f"the file name {file_name!r} is not {{interface}}_{{partner}}_{{flow_id}}.tar.gz (or .xml) "
            "(8, 6 and 25 letters or digits)",
        )
    if match["partner"] != settings.partner_code:
        raise _FlowRefused(
            CODE_PARTNER, f"partner code {match['partner']!r} is not the sandbox's partner {settings.partner_code!r}"
        )
    if match["interface"] not in KNOWN_INTERFACES:
        known = ", ".join(sorted(KNOWN_INTERFACES))
        raise _FlowRefused(CODE_INTERFACE, f"interface {match['interface']!r} is not simulated (known: {known})")
    return match["interface"], match["flow_id"]


def _loose_name(file_name: str) -> tuple[str | None, str]:
    """Best-effort interface and flow id of a refused file, to name and key the report."""
    match = FLOW_NAME.fullmatch(file_name) or _LOOSE_NAME.fullmatch(file_name)
    if match is None:
        stem = file_name.removesuffix(".tar.gz").removesuffix(".xml")
        return None, _UNSAFE.sub("_", stem) or "unnamed"
    interface = match["interface"] if re.fullmatch(r"[A-Z]{3}[0-9]{4}[A-Z]", match["interface"]) else None
    return interface, _UNSAFE.sub("_", match["flow_id"]) or "unnamed"


def _read_members(archive: BinaryIO, settings: SandboxSettings) -> Iterable[tuple[str, bytes]]:
    """The (name, bytes) of each file of a tar.gz flow, in archive order, one at a time.

    Raises ``_FlowRefused`` when the archive is unreadable or truncated, empty, holds
    anything but regular files inside it, or breaks the flow limits: all checked
    before the first member is read (see ``archive``).
    """
    limits = ArchiveLimits(settings.max_invoices, settings.max_member_bytes, settings.max_flow_bytes)
    try:
        return _read_again(read_members(archive, limits))
    except ArchiveRefused as refused:
        raise _FlowRefused(CODE_ARCHIVE, refused.label) from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise _FlowRefused(CODE_ARCHIVE, f"the flow is not a readable tar.gz archive: {exc}") from exc


def _read_again(members: Iterable[tuple[str, bytes]]) -> Iterable[tuple[str, bytes]]:
    """The members, read again once the whole archive passed: an error now (the file
    changed meanwhile) refuses the flow as well."""
    try:
        yield from members
    except (ArchiveRefused, tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise _FlowRefused(CODE_ARCHIVE, f"the flow could not be read again: {exc}") from exc


def _single(file_name: str, archive: BinaryIO, settings: SandboxSettings) -> list[tuple[str, bytes]]:
    """An XML flow: one invoice, read only up to the limit of one file."""
    data = archive.read(settings.max_member_bytes + 1)
    if len(data) > settings.max_member_bytes:
        raise _FlowRefused(CODE_ARCHIVE, f"the flow exceeds {settings.max_member_bytes} bytes")
    return [(file_name, data)]


def _refused_flow(
    file_name: str,
    interface: str | None,
    flow_id: str,
    refused: _FlowRefused,
    settings: SandboxSettings,
    now: datetime,
) -> SandboxOutcome:
    files, _ = flow_answers(
        report_format=settings.report_format,
        partner_code=settings.partner_code,
        report_name=_report_name(interface, settings, flow_id),
        flow_id=flow_id,
        status="93",
        comment=refused.label,
        errors=[flow_error_line(code=refused.code, label=refused.label)],
        now=now,
    )
    return SandboxOutcome(file_name, flow_id, "93", (), (), tuple(files), problem=refused.label)


# -- one invoice -----------------------------------------------------------------------


def _check_members(
    members: Iterable[tuple[str, bytes]],
    interface: str,
    settings: SandboxSettings,
    already_integrated: frozenset[tuple[str, str]],
) -> tuple[list[IntegratedInvoice], list[RejectedInvoice]]:
    directory = {structure.siret: structure for structure in settings.directory}
    seen = set(already_integrated)
    integrated: list[IntegratedInvoice] = []
    rejected: list[RejectedInvoice] = []
    for name, payload in members:
        verdict = _check_invoice(name, payload, interface, settings, directory, seen)
        if isinstance(verdict, IntegratedInvoice):
            # Later invoices of the same flow with the same key are duplicates too.
            seen.add((verdict.supplier_siret, verdict.invoice_number))
            integrated.append(verdict)
        else:
            rejected.append(verdict)
    return integrated, rejected


def _check_invoice(
    name: str,
    payload: bytes,
    interface: str,
    settings: SandboxSettings,
    directory: dict[str, PublicStructure],
    seen: set[tuple[str, str]],
) -> IntegratedInvoice | RejectedInvoice:
    findings = validate_invoice(payload)
    facts = _facts(payload)

    def reject(code: str, reason: str) -> RejectedInvoice:
        return RejectedInvoice(name, facts.number, facts.supplier, facts.buyer, code, reason)

    expected = _roots_of(interface)
    if facts.root is not None and expected and facts.root not in expected:
        local_name = etree.QName(facts.root).localname
        return reject(CODE_INTERFACE, f"a {local_name} document does not belong in an {interface} flow")
    if not is_valid(findings):
        return reject(CODE_VALIDATION, _findings_label(findings))
    if facts.number is None or facts.supplier is None or facts.buyer is None:
        return reject(CODE_VALIDATION, "the invoice number, supplier SIRET or buyer SIRET cannot be read")
    if settings.scenario == SCENARIO_DEFAULT:
        problem = _business_problem(facts, directory, seen)
    else:  # the scenario decides: only "partial" names invoices to reject
        problem = (settings.reject_code, settings.rejection_label) if facts.number in settings.reject else None
    if problem is not None:
        return reject(*problem)
    return IntegratedInvoice(name, facts.number, facts.supplier, facts.buyer, facts.issue_date)


def _business_problem(
    facts: _Facts, directory: dict[str, PublicStructure], seen: set[tuple[str, str]]
) -> tuple[str, str] | None:
    """Chorus Pro's documented checks of a readable invoice: directory, service code, duplicates."""
    structure = directory.get(facts.buyer or "")
    if structure is None:
        return CODE_DIRECTORY, f"destinataire inconnu de l'annuaire: {facts.buyer}"
    if structure.service_required and not facts.buyer_reference:
        element = facts.buyer_reference_element
        return CODE_SERVICE, f"the buyer {facts.buyer} requires a service code ({element})"
    if (facts.supplier, facts.number) in seen:
        return CODE_DUPLICATE, (
            f"duplicate: invoice {facts.number!r} of supplier {facts.supplier} was already integrated"
        )
    return None


def _facts(payload: bytes) -> _Facts:
    """What the answer needs from an invoice, read as far as the document allows (its
    header: the lines are never needed)."""
    parsed = parse_header(payload)
    if isinstance(parsed, Finding):
        return _Facts()
    root = parsed.getroot()
    # Where the syntax writes BT-1, BT-2 and BT-10; a document of no known syntax is read as UBL.
    known = syntax.of_root(root.tag)
    terms = known.terms if known is not None and known.terms is not None else syntax.UBL_TERMS
    date_text = _child_text(root, terms.issue_date)
    return _Facts(
        root=root.tag,
        number=_child_text(root, terms.number),
        issue_date=_date_102(date_text) if known is not None and known.syntax is Syntax.CII else _iso_date(date_text),
        supplier=party_siret(parsed, "supplier"),
        buyer=party_siret(parsed, "buyer"),
        buyer_reference=_child_text(root, f"{terms.terms}/{terms.service}"),
        buyer_reference_element=terms.service,
    )


def _roots_of(interface: str) -> frozenset[str]:
    """The root elements a flow of ``interface`` may carry (empty: not checked). Chorus Pro
    reads a flow's files by its interface, so a UBL invoice in a CII flow (or the reverse)
    cannot be integrated."""
    known = syntax.of_interface(interface)
    return frozenset(known.roots) if known is not None else frozenset()


def _child_text(root: etree._Element, path: str) -> str | None:
    found = root.find(path, syntax.NS)
    if found is None:
        return None
    return (found.text or "").strip() or None


def _iso_date(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text[:10]) if text else None
    except ValueError:
        return None


def _date_102(text: str | None) -> date | None:
    """A CII date in format 102 (YYYYMMDD), the one EN 16931 reads (BR-03)."""
    try:
        return datetime.strptime(text, "%Y%m%d").date() if text else None
    except ValueError:
        return None


def _findings_label(findings: list[Finding]) -> str:
    errors = [f for f in findings if f.severity in (Severity.FATAL, Severity.ERROR)]
    shown = "; ".join(f.message for f in errors[:_MAX_FINDINGS_IN_LABEL])
    more = len(errors) - _MAX_FINDINGS_IN_LABEL
    return f"{shown} (and {more} more)" if more > 0 else shown


# -- what goes back --------------------------------------------------------------------


def _rejection_line(rejected: RejectedInvoice) -> ErrorLine:
    # With no readable invoice number, the member's file name stands in for it.
    return invoice_error_line(
        invoice_number=rejected.invoice_number or rejected.member,
        supplier_id=rejected.supplier_siret,
        buyer_id=rejected.buyer_siret,
        code=rejected.code,
        label=rejected.reason,
    )


def _report_name(interface: str | None, settings: SandboxSettings, flow_id: str) -> str:
    prefix = f"CSO{interface[3:]}" if interface else _UNKNOWN_REPORT_INTERFACE
    return f"{prefix}_{settings.partner_code}_{flow_id}.xml"
