"""Read an XML ERP export (SAP IDoc INVOIC02, or any format a channel's own stylesheet
maps): parse it safely, map it with XSLT into export records, judge each invoice.

An invoice is judged by ``records.assemble``, as a CSV or JSON Lines one is; only
where a problem is differs: the XPath of its source element (``SourceRow.xpath``).

Two kinds of problem, two outcomes, as for CSV:

- the file cannot be read as a whole (not well-formed XML, a DOCTYPE, the stylesheet
  fails on it or produces something that is not export records): ``InputError`` is
  raised, before any invoice is yielded, and the pipeline quarantines the file;
- one invoice has bad values or unknown fields: it is yielded as a ``RejectedRecord``
  with every problem, and the other invoices go on.

The file is read whole (not streamed): a huge IDoc file takes memory in proportion.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from copy import deepcopy
from dataclasses import replace
from pathlib import Path

from lxml import etree

from gateway.errors import InputError, MappingError
from gateway.intake.attachments import default_attachment_dir
from gateway.intake import records
from gateway.invoice import ExportedInvoice
from gateway.intake.export_records import RecordInvoice, Step, parse_path, read_records
from gateway.xml import safe
from gateway.xml.saxon import transform

def read_xml_export(
    path: Path,
    stylesheet: Path,
    attachment_dir: Path | None = None,
    vat_rounding: str = "erp",
    limits: records.InvoiceLimits | None = None,
) -> Iterator[ExportedInvoice | records.RejectedRecord]:
    """Yield the invoices of one XML export in the order the stylesheet wrote them.

    Raises ``InputError`` when the file cannot be read as a whole; then nothing has
    been yielded.
    """
    # Values in export records are written one way, whatever the source format.
    options = records.ReadOptions(
        decimal=".",
        date_format="%Y-%m-%d",
        attachment_dir=attachment_dir or default_attachment_dir(path),
        vat_rounding=vat_rounding,
        limits=limits or records.InvoiceLimits(),
    )
    source = SourceIndex(parse_source(path.read_bytes(), path.name))
    found = list(_records(source, path.name, stylesheet))
    taken: set[int] = set()
    for position, (invoice, element) in enumerate(found, start=1):
        yield judge(invoice, path.name, source.original(element), _first_line(element, position, taken), options)


def parse_source(data: bytes, file: str) -> etree._ElementTree:
    """The export as a tree; ``InputError`` with the line if it is not well-formed XML."""
    try:
        tree = etree.parse(io.BytesIO(data), safe.parser())
    except etree.XMLSyntaxError as exc:
        line = exc.position[0] if exc.position else None
        raise InputError(f"not well-formed XML: {exc.msg}", file=file, line=line or None) from None
    if tree.docinfo.doctype:
        raise InputError(
            "the file has a DOCTYPE, which exports may not have (entities could read local files)",
            file=file,
            line=1,
        )
    return tree


def _records(source: SourceIndex, file: str, stylesheet: Path) -> Iterator[tuple[RecordInvoice, etree._Element]]:
    """Each invoice of the stylesheet's output with its source element."""
    # The stylesheet gets the field vocabulary, so that it can leave out what this
    # version of the gateway does not read (e.g. totals), instead of failing on it.
    parameters = {"fields": " ".join((*records.HEADER_FIELDS, *records.LINE_FIELDS, "warning"))}
    document = etree.tostring(source.tree, encoding="UTF-8", xml_declaration=True)
    try:
        output = transform(stylesheet, document, parameters)
    except MappingError as exc:
        raise InputError(" ".join(exc.message.split()), file=file) from None
    try:
        result = etree.fromstring(output, safe.parser())
    except etree.XMLSyntaxError as exc:
        raise InputError(f"the stylesheet {stylesheet.name} did not produce XML: {exc.msg}", file=file) from None
    for position, invoice in enumerate(read_records(result, file=file, stylesheet=stylesheet.name), start=1):
        element = source.find(invoice.source)
        if element is None:
            raise InputError(
                f"the stylesheet {stylesheet.name} gave invoice {position} the source {invoice.source!r}, "
                f'which names no element of this file (write source="{{path()}}")',
                file=file,
            )
        yield invoice, element


def judge(
    invoice: RecordInvoice, file: str, original: str, first_line: int, options: records.ReadOptions
) -> ExportedInvoice | records.RejectedRecord:
    """The invoice, or every reason it cannot be taken: its structure's and its values'."""
    limits = options.limits
    # The export is read whole (see above); an invoice beyond the limits is at least
    # never mapped nor validated.
    size = len(original.encode("utf-8"))
    if len(invoice.rows) > limits.max_lines or size > limits.max_bytes:
        first = records.SourceRow(first_line, invoice.header, "", invoice.location)
        lines = len(invoice.rows) if len(invoice.rows) > limits.max_lines else None
        return records.oversized(file, first, lines=lines, size=size, limits=limits,
                                 at=first, field=None, where=f"it is the element {invoice.location} of the export")
    errors = list(invoice.errors)
    result = records.assemble(file, list(invoice.rows), original, options) if invoice.rows else None
    if isinstance(result, records.RejectedRecord):
        errors += [_located_at_invoice(error, invoice.location) for error in result.errors]
    if isinstance(result, ExportedInvoice) and not errors:
        return replace(result, first_line=first_line, warnings=invoice.warnings)
    return records.RejectedRecord(
        file=file,
        first_line=first_line,
        invoice_number=invoice.header.get("invoice_number") or None,
        supplier_siret=invoice.header.get("supplier_siret") or None,
        errors=tuple(errors),
        original=original,
    )


def _located_at_invoice(error: InputError, location: str) -> InputError:
    """``assemble`` reports header fields at the first line's row; in XML they belong
    to the invoice element, so say so."""
    if error.field not in records.HEADER_FIELDS:
        return error
    return InputError(error.reason, file=error.file, line=error.line, field=error.field, xpath=location)


class SourceIndex:
    """The parsed export, with the lookups one invoice needs: its element from its
    source path, and its original text.

    Both look at the children of the elements on the invoice's path; each parent's are
    grouped once, so that an export of thousands of invoices is read in linear time.
    """

    def __init__(self, tree: etree._ElementTree) -> None:
        self.tree = tree
        self.root = tree.getroot()
        self._groups: dict[etree._Element, dict[tuple[str, str | None], list[etree._Element]]] = {}
        self._positions: dict[etree._Element, dict[etree._Element, int]] = {}
        self._other_children: dict[tuple[etree._Element, object], list[tuple[int, etree._Element]]] = {}

    def find(self, path: str) -> etree._Element | None:
        """The element ``path`` names, or None."""
        steps = parse_path(path)
        if steps is None or steps[0].index != 1 or not _matches(self.root, steps[0]):
            return None
        node = self.root
        for step in steps[1:]:
            same = self._named(node, step.local, step.namespace)
            if step.index > len(same):
                return None
            node = same[step.index - 1]
        return node

    def original(self, element: etree._Element) -> str:
        """The export reduced to this invoice, to be fixed and dropped back if held back.

        At each level from the invoice's element up to the root, the siblings with the
        same name as the kept element (the other invoices) are left out; everything
        else (a shared supplier block, the root's attributes, namespaces) is kept.
        """
        kept = deepcopy(element)
        kept.tail = "\n"
        node = element
        while (parent := node.getparent()) is not None:
            shell = etree.Element(parent.tag, attrib=dict(parent.attrib), nsmap=parent.nsmap)
            shell.text = parent.text
            position = self._position(parent, node)
            for index, child in self._others(parent, node.tag):
                if index > position and kept.getparent() is None:
                    shell.append(kept)
                shell.append(deepcopy(child))
            if kept.getparent() is None:
                shell.append(kept)
            kept, node = shell, parent
        return etree.tostring(kept, encoding="UTF-8", xml_declaration=True).decode("utf-8") + "\n"

    def _named(self, parent: etree._Element, local: str, namespace: str | None) -> list[etree._Element]:
        """The child elements of ``parent`` with that name (any namespace for None), in order."""
        if parent not in self._groups:
            groups: dict[tuple[str, str | None], list[etree._Element]] = {}
            for child in parent:
                if isinstance(child.tag, str):
                    name = etree.QName(child)
                    groups.setdefault((name.localname, name.namespace or ""), []).append(child)
                    groups.setdefault((name.localname, None), []).append(child)
            self._groups[parent] = groups
        return self._groups[parent].get((local, namespace), [])

    def _position(self, parent: etree._Element, child: etree._Element) -> int:
        if parent not in self._positions:
            self._positions[parent] = {node: index for index, node in enumerate(parent)}
        return self._positions[parent][child]

    def _others(self, parent: etree._Element, tag: object) -> list[tuple[int, etree._Element]]:
        """The children of ``parent`` not named ``tag`` (comments included), with their position."""
        key = (parent, tag)
        if key not in self._other_children:
            self._other_children[key] = [(index, child) for index, child in enumerate(parent) if child.tag != tag]
        return self._other_children[key]


def _matches(element: etree._Element, step: Step) -> bool:
    name = etree.QName(element)
    return name.localname == step.local and (step.namespace is None or (name.namespace or "") == step.namespace)


def _first_line(element: etree._Element, position: int, taken: set[int]) -> int:
    """The line of the invoice's element, unique within the file.

    The quarantine names a held-back invoice's file after its first line, and an
    export written on one line (as SAP's XML file port does) would give every invoice
    line 1: then the next free number is taken, so that invoices count 1, 2, 3….
    """
    line = element.sourceline or position
    while line in taken:
        line += 1
    taken.add(line)
    return line
