"""The export-records XML: what an XML export is turned into by its stylesheet, before
its invoices are judged by ``records.assemble`` exactly like CSV or JSON Lines ones.

::

    <records xmlns="urn:chorus-gateway:export-records:1">
      <invoice source="/INVOIC02/IDOC[1]">           (XPath of the source element)
        <invoice_number>90000201</invoice_number>    (header fields)
        <line source="/INVOIC02/IDOC[1]/E1EDP01[1]"> (one per invoice line)
          <item_name>Ouvrages de référence</item_name>
        </line>
        <warning>IHREZ not taken: …</warning>        (any number: the invoice is
      </invoice>                                      taken, the operator told)
    </records>

Field elements are named after the fields of ``records.HEADER_FIELDS`` and
``records.LINE_FIELDS``, read at run time: a field added there is accepted here at
once. ``schemas/export-records.xsd`` describes the structure; docs/inputs.md the rest.

Two kinds of problem, as for CSV: output that is not export records at all (a
stylesheet bug that spoils every invoice) raises ``InputError`` naming the stylesheet;
a wrong element inside one invoice (unknown or misplaced field) holds that invoice
back, with the XPath of its source. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from lxml import etree

from gateway.errors import InputError
from gateway.intake import records

NAMESPACE = "urn:chorus-gateway:export-records:1"
_RECORDS = f"{{{NAMESPACE}}}records"
_INVOICE = f"{{{NAMESPACE}}}invoice"
_LINE = f"{{{NAMESPACE}}}line"
_WARNING = f"{{{NAMESPACE}}}warning"
_FIELDS_DOC = "the fields are listed in docs/inputs.md"
#: Makes the file-level error for output that is not export records.
_Garbage = Callable[[str], InputError]

# One step of an XPath as XPath 3 ``path()`` writes it (``/Q{uri}name[2]``) or as a
# person does (``/name[2]``, ``/prefix:name``). A namespace URI may hold slashes.
_STEP = re.compile(
    r"/(?:Q\{(?P<ns>[^}]*)\}|(?P<prefix>[^/\[\]{}:@()]+):)?(?P<local>[^/\[\]{}:@()]+)(?:\[(?P<index>\d+)\])?"
)


@dataclass(frozen=True)
class Step:
    """One step of a source path: the n-th child element of that name."""

    local: str
    #: The namespace URI, "" for none, or None when not given (any namespace matches).
    namespace: str | None
    index: int
    written_index: bool


@dataclass(frozen=True)
class RecordInvoice:
    """One ``<invoice>`` of the records, ready for ``records.assemble``."""

    #: The ``source`` attribute as the stylesheet wrote it, and as shown to operators.
    source: str
    location: str
    header: dict[str, str]
    rows: tuple[records.SourceRow, ...]
    #: Problems of this invoice's elements (unknown or misplaced fields…).
    errors: tuple[InputError, ...]
    #: What the stylesheet wants the operator to know (``<warning>``), the invoice taken.
    warnings: tuple[str, ...] = ()


def parse_path(path: str) -> tuple[Step, ...] | None:
    """The steps of an absolute element path, or None if it is not one.

    >>> [(s.local, s.namespace, s.index) for s in parse_path("/Q{}INVOIC02[1]/Q{urn:a/b}IDOC[2]")]
    [('INVOIC02', '', 1), ('IDOC', 'urn:a/b', 2)]
    >>> parse_path("INVOIC02/IDOC") is None, parse_path("/a/@b") is None
    (True, True)
    """
    steps = []
    position = 0
    while position < len(path):
        match = _STEP.match(path, position)
        if match is None:
            return None
        index = match["index"]
        steps.append(Step(match["local"], match["ns"], int(index or 1), index is not None))
        position = match.end()
    return tuple(steps) or None


def display_path(path: str) -> str:
    """A source path as an operator reads it: local names, no ``[1]`` on the root.

    >>> display_path("/Q{}INVOIC02[1]/Q{}IDOC[1]/Q{}E1EDP01[2]")
    '/INVOIC02/IDOC[1]/E1EDP01[2]'
    >>> display_path("not a path")
    'not a path'
    """
    steps = parse_path(path)
    if steps is None:
        return path
    shown = [steps[0].local] + [f"{s.local}[{s.index}]" if s.written_index else s.local for s in steps[1:]]
    return "/" + "/".join(shown)


def read_records(root: etree._Element, *, file: str, stylesheet: str) -> Iterator[RecordInvoice]:
    """The invoices of a records document, in order.

    Raises ``InputError`` (naming ``stylesheet``) if the document is not export records.
    """

    def garbage(message: str) -> InputError:
        return InputError(f"the stylesheet {stylesheet} {message}", file=file)

    if root.tag != _RECORDS:
        raise garbage(f"did not produce export records: its result is <{_shown(root.tag)}>, "
                      f'expected <records xmlns="{NAMESPACE}">')
    _no_text(root, garbage)
    for position, element in enumerate(_elements(root), start=1):
        if element.tag != _INVOICE:
            raise garbage(f"wrote <{_shown(element.tag)}> in <records>, where only <invoice> elements may be")
        source = (element.get("source") or "").strip()
        if not source:
            raise garbage(f'wrote invoice {position} without its source attribute (write source="{{path()}}")')
        yield _invoice(element, source, file, garbage)


def _invoice(element: etree._Element, source: str, file: str, garbage: _Garbage) -> RecordInvoice:
    location = display_path(source)
    errors: list[InputError] = []
    _no_text(element, garbage)
    header: dict[str, str] = {}
    lines: list[tuple[str, dict[str, str]]] = []
    warnings: list[str] = []
    for child in _elements(element):
        if child.tag == _WARNING:
            if len(child):
                errors.append(InputError("a warning holds text only, not elements", file=file, field="warning",
                                         xpath=location))
            elif " ".join((child.text or "").split()):
                warnings.append(" ".join((child.text or "").split()))
            continue
        if child.tag != _LINE:
            problem = _field(child, header, records.HEADER_FIELDS, records.LINE_FIELDS)
            if problem:
                errors.append(InputError(problem[0], file=file, field=problem[1], xpath=location))
            continue
        line_source = (child.get("source") or "").strip()
        line_location = display_path(line_source) if line_source else location
        _no_text(child, garbage)
        values: dict[str, str] = {}
        for field in _elements(child):
            problem = _field(field, values, records.LINE_FIELDS, records.HEADER_FIELDS)
            if problem:
                errors.append(InputError(problem[0], file=file, field=problem[1], xpath=line_location))
        lines.append((line_location, values))
    if not lines:
        errors.append(InputError("an invoice needs at least one <line>", file=file, field="line", xpath=location))
    rows = tuple(records.SourceRow(0, {**header, **values}, "", line_location) for line_location, values in lines)
    return RecordInvoice(source, location, header, rows, tuple(errors), tuple(warnings))


def _field(
    element: etree._Element, values: dict[str, str], allowed: tuple[str, ...], misplaced: tuple[str, ...]
) -> tuple[str, str] | None:
    """Put one field element's text into ``values``; else (why not, field name)."""
    name = etree.QName(element)
    label = name.localname
    if (name.namespace or "") != NAMESPACE:
        where = f"in namespace {name.namespace!r}" if name.namespace else "in no namespace"
        return f"unknown field: the element is {where}, not in {NAMESPACE} ({_FIELDS_DOC})", label
    if label in misplaced:
        where = "a line field: put it in a <line>" if label in records.LINE_FIELDS else (
            "an invoice field: put it in <invoice>, not in <line>")
        return f"is {where}", label
    if label not in allowed:
        return f"unknown field (misspelt? {_FIELDS_DOC})", label
    if label in values:
        return "the field appears twice", label
    if len(element):
        return "a field holds text only, not elements", label
    values[label] = (element.text or "").strip()
    return None


def _elements(parent: etree._Element) -> Iterator[etree._Element]:
    """Child elements; comments and processing instructions are ignored."""
    return (child for child in parent if isinstance(child.tag, str))


def _no_text(parent: etree._Element, garbage: _Garbage) -> None:
    # Stray text is the mark of XSLT's built-in template rules copying the source's
    # text: a stylesheet bug, not something one invoice could be blamed for.
    for text in [parent.text, *(child.tail for child in parent)]:
        if text and text.strip():
            snippet = " ".join(text.split())[:40]
            raise garbage(f"wrote the text {snippet!r} directly in <{etree.QName(parent).localname}> "
                          f'(add <xsl:mode on-no-match="shallow-skip"/> to the stylesheet?)')


def _shown(tag: str) -> str:
    name = etree.QName(tag)
    return f"{name.localname} xmlns={name.namespace!r}" if name.namespace else name.localname
