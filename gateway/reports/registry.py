"""Reports stage: which parser reads a returned file, chosen by its root element.

Chorus Pro answers EDI senders in ``CPPStatut`` today, and the reform's lifecycle
messages are CDAR D22B; both arrive in the same inbound directories. ``parse_any``
reads a file's root element safely (``gateway.xml.safe``: no DTD, no entity expansion,
no network, a size limit) and hands the file to the parser registered for that root:

- ``CPPStatut`` → ``cppstatut.parse_report``;
- ``{urn:un:unece:uncefact:data:standard:CrossDomainAcknowledgementAndResponse:100}``
  ``CrossDomainAcknowledgementAndResponse`` → ``cdar.parse_report``.

A root no parser reads raises ``ReportError``; the reconciler then marks the report
invalid, and the raw file stays in the store, so a parser added later can read it.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.errors import ReportError
from gateway.reports import cdar, cppstatut, model
from gateway.reports.model import ParsedReport
from gateway.xml import safe

Parser = Callable[[bytes], ParsedReport]

#: Root element (Clark name) → the parser of reports with that root.
PARSERS: dict[str, Parser] = {cppstatut.ROOT: cppstatut.parse_report, cdar.ROOT: cdar.parse_report}


def root_of(raw: bytes) -> str:
    """The Clark name of a report's root element, reading no further than its start tag."""
    try:
        return safe.root_tag(raw, limit=model.MAX_REPORT_BYTES, what="report")
    except safe.UnsafeXml as exc:
        raise ReportError(exc.message) from exc


def known_roots() -> tuple[str, ...]:
    """The root elements a parser is registered for."""
    return tuple(sorted(PARSERS))


def parse_any(raw: bytes) -> ParsedReport:
    """Parse a returned file with the parser registered for its root element.

    Raises ``ReportError`` for a file that is too large, not well-formed, carries a
    DOCTYPE, has a root no parser reads, or that its parser refuses.
    """
    root = root_of(raw)
    parser = PARSERS.get(root)
    if parser is None:
        known = ", ".join(known_roots())
        raise ReportError(f"no parser for reports of root {root}; the file is kept (roots read: {known})")
    return parser(raw)
