"""Reports stage: which parser reads a returned file, chosen by its root element.

Chorus Pro answers EDI senders in ``CPPStatut`` today, and the reform's lifecycle
messages are CDAR D22B; both arrive in the same inbound directories. ``parse_any``
reads a file's root element safely (no DTD, no entity expansion, no network, a size
limit) and hands the file to the parser registered for that root:

- ``CPPStatut`` → ``cppstatut.parse_report``;
- ``{urn:un:unece:uncefact:data:standard:CrossDomainAcknowledgementAndResponse:100}``
  ``CrossDomainAcknowledgementAndResponse`` → ``cdar.parse_report``.

A root no parser reads raises ``ReportError``; the reconciler then marks the report
invalid, and the raw file stays in the store, so a parser added later can read it.

``parse_safely`` and ``assert_valid`` are the reports stage's safe XML parse and XSD
check, shared by every parser.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable

from lxml import etree

from gateway.errors import ConfigError, ReportError
from gateway.reports.model import ParsedReport
from gateway.resources import schema_path

#: Larger files are refused before any parsing. A lifecycle file of a full flow (500
#: invoices, a few statuses each) weighs a few MB; 64 MiB leaves room, and bounds memory.
MAX_REPORT_BYTES = 64 * 1024 * 1024

CPPSTATUT_ROOT = "CPPStatut"
CDAR_ROOT = "{urn:un:unece:uncefact:data:standard:CrossDomainAcknowledgementAndResponse:100}" + (
    "CrossDomainAcknowledgementAndResponse"
)

Parser = Callable[[bytes], ParsedReport]


def _xml_parser_options() -> dict[str, bool]:
    return {"resolve_entities": False, "no_network": True, "load_dtd": False, "huge_tree": False}


def parse_safely(raw: bytes) -> etree._Element:
    """The root of a report's XML, parsed without DTD, entities or network access.

    Raises ``ReportError`` naming the line when the bytes are too large, not
    well-formed, or carry a DOCTYPE.
    """
    _check_size(raw)
    # A parser per call: lxml parsers keep state and must not be shared across threads.
    parser = etree.XMLParser(dtd_validation=False, **_xml_parser_options())
    try:
        root = etree.fromstring(raw, parser)
    except etree.XMLSyntaxError as exc:
        raise ReportError(f"not well-formed XML: line {max(exc.lineno, 1)}: {exc.msg}") from exc
    _refuse_doctype(root, raw)
    return root


def root_of(raw: bytes) -> str:
    """The Clark name of a report's root element, reading no further than its start tag."""
    _check_size(raw)
    events = etree.iterparse(io.BytesIO(raw), events=("start",), **_xml_parser_options())
    try:
        _event, root = next(events)
    except etree.XMLSyntaxError as exc:
        raise ReportError(f"not well-formed XML: line {max(exc.lineno, 1)}: {exc.msg}") from exc
    _refuse_doctype(root, raw)
    return root.tag


def known_roots() -> tuple[str, ...]:
    """The root elements a parser is registered for."""
    return tuple(sorted(_parsers()))


def parse_any(raw: bytes) -> ParsedReport:
    """Parse a returned file with the parser registered for its root element.

    Raises ``ReportError`` for a file that is too large, not well-formed, carries a
    DOCTYPE, has a root no parser reads, or that its parser refuses.
    """
    root = root_of(raw)
    parser = _parsers().get(root)
    if parser is None:
        known = ", ".join(known_roots())
        raise ReportError(f"no parser for reports of root {root}; the file is kept (roots read: {known})")
    return parser(raw)


@functools.cache
def _parsers() -> dict[str, Parser]:
    # Imported here, not at the top: the parsers import this module for parse_safely.
    from gateway.reports import cdar, cppstatut

    return {CPPSTATUT_ROOT: cppstatut.parse_report, CDAR_ROOT: cdar.parse_report}


#: Schema errors quoted in a report's outcome; the rest are counted.
MAX_SCHEMA_ERRORS = 3


@functools.cache
def _schema(name: str) -> etree.XMLSchema:
    """One of the project's report XSDs (``schemas/``), loaded once per process."""
    path = schema_path(name)
    try:
        return etree.XMLSchema(etree.parse(str(path)))
    except (OSError, etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
        # Not the report's fault: the installation is broken, so do not mark reports invalid.
        raise ConfigError(f"cannot load {path}: {exc}") from exc


def assert_valid(
    root: etree._Element, schema_name: str, what: str, tidy: Callable[[str], str] = lambda message: message
) -> None:
    """Raise ``ReportError`` naming the lines when ``root`` is not valid against the XSD."""
    try:
        # assertValid keeps the errors on the exception: no shared error_log to race on.
        _schema(schema_name).assertValid(root)
    except etree.DocumentInvalid as exc:
        errors = list(exc.error_log)
        shown = "; ".join(f"line {e.line}: {tidy(e.message)}" for e in errors[:MAX_SCHEMA_ERRORS])
        more = f" (and {len(errors) - MAX_SCHEMA_ERRORS} more)" if len(errors) > MAX_SCHEMA_ERRORS else ""
        raise ReportError(f"not a valid {what} document: {shown or exc}{more}") from exc


def _check_size(raw: bytes) -> None:
    if len(raw) > MAX_REPORT_BYTES:
        raise ReportError(f"the report is {len(raw)} bytes, over the {MAX_REPORT_BYTES}-byte limit for a report")


def _refuse_doctype(root: etree._Element, raw: bytes) -> None:
    if root.getroottree().docinfo.doctype:
        line = raw[: raw.find(b"<!DOCTYPE")].count(b"\n") + 1 if b"<!DOCTYPE" in raw else 1
        raise ReportError(f"line {line}: a DOCTYPE is not allowed in a report (DTDs and entities are refused)")
