"""Directory stage: read the published directory of public structures (CSV or XML)
into ``DirectoryEntry`` records, streaming.

Pure reading: no store, no clock. The caller writes the entries in one transaction, so
that any ``InputError`` raised while iterating leaves the previous directory in place.
The formats are described in ``docs/directory.md``.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

from lxml import etree

from gateway.directory import DirectoryEntry
from gateway.errors import InputError
from gateway.xml import safe

FORMATS = ("csv", "xml")

#: The store keeps service codes in a column of this width.
MAX_SERVICE_CODE = 100

_TRUE = frozenset({"true", "oui", "1", "o", "vrai"})
_FALSE = frozenset({"false", "non", "0", "n", "faux"})
_FLAG_HINT = "true/false, oui/non, 1/0, O/N or vrai/faux"
_SIRET_TYPES = frozenset({"SIRET", "1"})

# Canonical spellings, used in messages; matching is on the lower-cased name.
_IDENTIFIER_TYPE = "TypeIdentifiant"
_IDENTIFIER = "Identifiant"
_NAME = "RaisonSociale"
_COMMITMENT = "GestionEngagement"
_SERVICE = "GestionService"
_EITHER = "GestionServiceEngagement"
_ACTIVE = "StructureActive"
_REQUIRED = (_IDENTIFIER, _NAME, _COMMITMENT, _SERVICE, _EITHER)
_OPTIONAL = (_IDENTIFIER_TYPE, _ACTIVE)

# Services file columns: canonical name → the spellings accepted, first found wins.
_SERVICE_COLUMNS: dict[str, tuple[str, ...]] = {
    _IDENTIFIER: (_IDENTIFIER, "IdentifiantStructure", "SIRET"),
    "CodeService": ("CodeService", "Code"),
    "EstActif": ("EstActif", "ServiceActif", "Actif"),
    _IDENTIFIER_TYPE: (_IDENTIFIER_TYPE,),
}
_SERVICE_REQUIRED = (_IDENTIFIER, "CodeService")

# XML: the structure element and, inside <Services><Service>, the child names accepted.
_XML_STRUCTURE_TAGS = ("{*}Structure", "{*}structure", "{*}STRUCTURE")
_XML_SERVICE_CODE = ("code", "codeservice")
_XML_SERVICE_ACTIVE = ("actif", "estactif", "serviceactif")
_CANONICAL = {name.lower(): name for name in (*_REQUIRED, *_OPTIONAL)}


@dataclass
class Counts:
    """What an import read, filled while its entries are iterated."""

    structures: int = 0
    #: Rows whose TypeIdentifiant is not SIRET (RIDET, TAHITI, foreign…).
    skipped: int = 0
    #: SIRETs shorter than 14 digits, padded with leading zeros.
    padded: int = 0
    services: int = 0
    #: Services of a non-SIRET structure or of a structure absent from the directory.
    services_skipped: int = 0


def parse_flag(text: str) -> bool | None:
    """The flag as the portal writes it, or None when it is not one.

    >>> parse_flag("Oui"), parse_flag(" N "), parse_flag("VRAI"), parse_flag("peut-être")
    (True, False, True, None)
    """
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None


def directory_siret(text: str) -> str:
    """The 14-digit SIRET of a directory identifier; raises ``ValueError`` with the reason.

    Spreadsheets store the identifier as a number and drop its leading zeros, so a
    shorter one is padded. The Luhn key is not checked: real directory ids fail it.

    >>> directory_siret("2175001300019")
    '02175001300019'
    """
    value = text.strip()
    if not value:
        raise ValueError("the identifier is empty")
    if not (value.isascii() and value.isdigit()):
        raise ValueError(f"{value!r} is not a SIRET: digits only")
    if len(value) > 14:
        raise ValueError(f"{value!r} is not a SIRET: {len(value)} digits, at most 14")
    return value.zfill(14)


def detect_format(path: Path, fmt: str | None = None) -> str:
    """``fmt`` when given, else the format named by the file's extension."""
    if fmt is not None:
        return fmt
    suffix = path.suffix.lower()
    if suffix[1:] in FORMATS:
        return suffix[1:]
    if suffix in (".xlsx", ".xls", ".ods"):
        raise InputError(
            "spreadsheets are not read: save the structures sheet (and the services sheet) as CSV "
            "UTF-8 with ';' separators, or import the XML directory",
            file=path.name,
        )
    raise InputError(f"cannot tell the format from the extension {suffix!r}: pass --format csv or xml", file=path.name)


def read_services(path: Path, counts: Counts) -> dict[str, dict[str, bool]]:
    """The services file, whole: SIRET → service code → active flag."""
    file = path.name
    services: dict[str, dict[str, bool]] = {}
    for line, values in _csv_rows(path, _SERVICE_COLUMNS, _SERVICE_REQUIRED):
        kind = values.get(_IDENTIFIER_TYPE)
        if kind is not None and kind.upper() not in _SIRET_TYPES:
            counts.services_skipped += 1
            continue
        siret = _siret(values[_IDENTIFIER], file=file, line=line, field=_IDENTIFIER)
        code = _service_code(values["CodeService"], file=file, line=line, field="CodeService")
        active = values.get("EstActif")
        codes = services.setdefault(siret, {})
        if code in codes:
            raise InputError(f"service {code!r} of {siret} is listed twice", file=file, line=line, field="CodeService")
        codes[code] = True if active is None else _flag(active, file=file, line=line, field="EstActif")
    return services


class DirectoryFile:
    """One directory to import: the structures file and, for CSV, its services file.

    The services file is read at construction (it is small and must be whole to be
    joined); the structures are streamed by ``entries()``, which fills ``counts``.
    """

    def __init__(self, path: Path, *, fmt: str | None = None, services: Path | None = None) -> None:
        self.path = path
        self.format = detect_format(path, fmt)
        if services is not None and self.format == "xml":
            raise InputError("the XML directory carries its services: --services goes with CSV", file=path.name)
        self.counts = Counts()
        self._services = read_services(services, self.counts) if services is not None else {}

    def entries(self) -> Iterator[DirectoryEntry]:
        """Every SIRET structure, with its services; raises ``InputError`` on the first bad value."""
        file = self.path.name
        if self.format == "csv":
            source = _csv_structures(self.path, lambda siret: self._services.pop(siret, _NONE))
        else:
            source = _xml_structures(self.path)
        seen: dict[str, int] = {}
        for line, raw_id, entry, dropped in source:
            if entry is None:
                self.counts.skipped += 1
                self.counts.services_skipped += dropped
                continue
            if entry.siret in seen:
                raise InputError(
                    f"SIRET {entry.siret} is already on line {seen[entry.siret]}",
                    file=file,
                    line=line,
                    field=_IDENTIFIER,
                )
            seen[entry.siret] = line
            if len(raw_id) < 14:
                self.counts.padded += 1
            self.counts.structures += 1
            self.counts.services += len(entry.services)
            yield entry
        if not seen:
            raise InputError(
                "no structure identified by SIRET: the directory was not replaced (see docs/directory.md)", file=file
            )
        self.counts.services_skipped += sum(len(codes) for codes in self._services.values())


# -- building an entry, whatever the syntax ------------------------------------------

#: (line, identifier as written, entry or None when not a SIRET structure, services dropped with it).
_Row = tuple[int, str, DirectoryEntry | None, int]
_NONE: Mapping[str, bool] = MappingProxyType({})


def _structure(
    values: Mapping[str, str],
    line_of: Callable[[str], int | None],
    file: str,
    services: Callable[[str], Mapping[str, bool]],
) -> _Row:
    kind = values.get(_IDENTIFIER_TYPE)
    raw_id = values[_IDENTIFIER].strip()
    line = line_of(_IDENTIFIER) or 0
    if kind is not None:
        if not kind:
            raise InputError(
                "the identifier type is empty", file=file, line=line_of(_IDENTIFIER_TYPE), field=_IDENTIFIER_TYPE
            )
        if kind.upper() not in _SIRET_TYPES:
            return line, raw_id, None, len(services(""))

    def flag(name: str) -> bool:
        return _flag(values[name], file=file, line=line_of(name), field=name)

    active = values.get(_ACTIVE)
    siret = _siret(raw_id, file=file, line=line, field=_IDENTIFIER)
    entry = DirectoryEntry(
        siret=siret,
        name=values[_NAME],
        active=True if active is None else flag(_ACTIVE),
        service_required=flag(_SERVICE),
        commitment_required=flag(_COMMITMENT),
        service_or_commitment=flag(_EITHER),
        services=services(siret),
    )
    return line, raw_id, entry, 0


def _flag(text: str, *, file: str, line: int | None, field: str) -> bool:
    value = parse_flag(text)
    if value is None:
        raise InputError(f"{text.strip()!r} is not a flag ({_FLAG_HINT})", file=file, line=line, field=field)
    return value


def _siret(text: str, *, file: str, line: int | None, field: str) -> str:
    try:
        return directory_siret(text)
    except ValueError as exc:
        raise InputError(str(exc), file=file, line=line, field=field) from None


def _service_code(text: str, *, file: str, line: int | None, field: str) -> str:
    code = text.strip()
    if not code:
        raise InputError("the service code is empty", file=file, line=line, field=field)
    if len(code) > MAX_SERVICE_CODE:
        raise InputError(
            f"the service code has {len(code)} characters, at most {MAX_SERVICE_CODE}",
            file=file,
            line=line,
            field=field,
        )
    return code


# -- CSV ---------------------------------------------------------------------------------


def _csv_structures(path: Path, services: Callable[[str], Mapping[str, bool]]) -> Iterator[_Row]:
    columns = {name: (name,) for name in (*_REQUIRED, *_OPTIONAL)}
    for line, values in _csv_rows(path, columns, _REQUIRED):
        yield _structure(values, lambda _name, line=line: line, path.name, services)


def _csv_rows(
    path: Path, columns: Mapping[str, tuple[str, ...]], required: Iterable[str]
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, canonical column → stripped value) for each non-blank row, the header being line 1.

    A row's line is the physical line it starts on; only the columns named are kept,
    and an optional column absent from the header is absent from every row.
    """
    file = path.name
    encoding = _csv_encoding(path)
    with path.open("rb") as handle:
        reader = csv.reader(_decoded_lines(handle, encoding, file), delimiter=";")
        try:
            header = next(reader, None)
            if header is None:
                raise InputError("the file is empty", file=file)
            index = _header_index(header, columns, required, file)
            width = len(header)
            previous = reader.line_num
            for row in reader:
                line, previous = previous + 1, reader.line_num
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != width:
                    raise InputError(
                        f"{len(row)} fields where the header has {width} (a ';' in an unquoted value?)",
                        file=file,
                        line=line,
                    )
                yield line, {name: row[position].strip() for name, position in index.items()}
        except csv.Error as exc:
            raise InputError(f"not readable as CSV: {exc}", file=file, line=reader.line_num) from None


def _header_index(
    header: list[str], columns: Mapping[str, tuple[str, ...]], required: Iterable[str], file: str
) -> dict[str, int]:
    positions: dict[str, int] = {}
    for position, name in enumerate(header):
        positions.setdefault(name.strip().lower(), position)
    index: dict[str, int] = {}
    for canonical, spellings in columns.items():
        found = next((positions[s.lower()] for s in spellings if s.lower() in positions), None)
        if found is not None:
            index[canonical] = found
    missing = [name for name in required if name not in index]
    if missing:
        hint = " (is the file ';'-separated?)" if len(header) == 1 else ""
        raise InputError(f"missing column {', '.join(missing)}{hint}", file=file, line=1, field=missing[0])
    return index


def _csv_encoding(path: Path) -> str:
    """UTF-8 when the whole file decodes as UTF-8, else cp1252 (the portal's exports have been both).

    One decision per file, made before reading: switching encoding mid-file would turn
    a single corrupt byte into silently garbled names for the rest of it.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as handle:
        if handle.read(4).startswith((b"\xff\xfe", b"\xfe\xff")):
            raise InputError("the file is UTF-16: save it as CSV UTF-8 (or cp1252) with ';'", file=path.name)
        handle.seek(0)
        try:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "cp1252"
    return "utf-8"


def _decoded_lines(handle: Iterable[bytes], encoding: str, file: str) -> Iterator[str]:
    for number, raw in enumerate(handle, start=1):
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            yield raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise InputError(
                f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1} is neither UTF-8 nor cp1252",
                file=file,
                line=number,
            ) from None


# -- XML ---------------------------------------------------------------------------------


def _xml_structures(path: Path) -> Iterator[_Row]:
    """Each ``<Structure>`` element, cleared once read so that memory stays flat."""
    file = path.name
    context = safe.iterparse(path, events=("end",), tag=_XML_STRUCTURE_TAGS)
    checked = False
    try:
        for _event, element in context:
            if not checked:
                # The directory never carries a DTD; one in it is a sign of a wrong or hostile file.
                if element.getroottree().docinfo.doctype:
                    raise InputError("the XML has a DOCTYPE, which the directory never carries: refused", file=file)
                checked = True
            row = _xml_structure(element, file)
            element.clear(keep_tail=True)
            parent = element.getparent()
            if parent is not None:
                while element.getprevious() is not None:
                    del parent[0]
            yield row
    except etree.XMLSyntaxError as exc:
        raise InputError(f"not well-formed XML: {exc.msg}", file=file, line=exc.lineno) from None


def _xml_structure(element: etree._Element, file: str) -> _Row:
    values: dict[str, str] = {}
    found: dict[str, etree._Element] = {}
    services: dict[str, bool] = {}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = _local(child.tag)
        if name == "services":
            services = _xml_services(child, file)
        elif name in _CANONICAL and _CANONICAL[name] not in values:
            values[_CANONICAL[name]] = (child.text or "").strip()
            found[_CANONICAL[name]] = child
    missing = [name for name in _REQUIRED if name not in values]
    if missing:
        raise InputError(f"<Structure> has no <{missing[0]}>", file=file, line=element.sourceline, field=missing[0])

    def line_of(name: str) -> int | None:
        return found[name].sourceline if name in found else element.sourceline

    return _structure(values, line_of, file, lambda _siret: services)


@lru_cache(maxsize=256)
def _local(tag: str) -> str:
    """The lower-cased local name of a tag, with or without its ``{namespace}``.

    Cached: the same dozen tags come back for each of some 100,000 structures.
    """
    return tag[tag.rfind("}") + 1 :].lower()


def _xml_services(element: etree._Element, file: str) -> dict[str, bool]:
    services: dict[str, bool] = {}
    for service in element:
        if not isinstance(service.tag, str) or _local(service.tag) != "service":
            continue
        fields = {_local(child.tag): child for child in service if isinstance(child.tag, str)}
        code_element = next((fields[n] for n in _XML_SERVICE_CODE if n in fields), None)
        if code_element is None:
            raise InputError("<Service> has no <Code>", file=file, line=service.sourceline, field="Code")
        code = _service_code(code_element.text or "", file=file, line=code_element.sourceline, field="Code")
        if code in services:
            raise InputError(f"service {code!r} is listed twice", file=file, line=code_element.sourceline, field="Code")
        active_element = next((fields[n] for n in _XML_SERVICE_ACTIVE if n in fields), None)
        services[code] = active_element is None or _flag(
            active_element.text or "", file=file, line=active_element.sourceline, field="Actif"
        )
    return services


__all__ = ["FORMATS", "Counts", "DirectoryFile", "detect_format", "directory_siret", "parse_flag", "read_services"]
