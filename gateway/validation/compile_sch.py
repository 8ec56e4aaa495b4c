"""Compile an ISO Schematron source (``.sch``) to a validating XSLT, with saxonche.

The ISO pipeline (include → abstract expand → SVRL skeleton) is run with the XSLT 1
skeleton that lxml ships (``lxml/isoschematron/resources/xsl/iso-schematron-xslt1``):
no XSLT 2 skeleton is installed, and Saxon runs the XSLT 1 one unchanged. Two
adaptations make it serve ``queryBinding="xslt2"`` schemas such as Peppol BIS 3:

* the skeleton refuses any binding but ``xslt``; the expanded schema is handed to it
  with ``queryBinding="xslt"`` and the generated stylesheet's ``version`` is set back
  to the schema's (``2.0`` for ``xslt2``). Left at ``1.0``, Saxon runs the rules in
  backwards-compatible mode, where Peppol's ``u:gln`` crashes ("Cannot convert 11 to
  xs:integer": numbers are doubles there);
* ``allow-foreign=true`` passes the schema's ``xsl:function`` elements (``u:gln``,
  ``u:mod97-0208``, …) through to the stylesheet; ``xsl:key`` is handled by the skeleton
  itself; ``let`` becomes a global ``xsl:param`` (schema level), a global
  ``xsl:variable`` (pattern level) or a local one (rule level).

The output reports SVRL like the official compiled rule sets: ``svrl:fired-rule`` per
rule fired, ``svrl:failed-assert`` with ``@id``, ``@flag`` and ``@location`` (an XSLT 1
style path, ``/*[local-name()='Invoice' and namespace-uri()='…']/…``).

Compiled once per source: the cache file's name carries the source's sha256, and the
stylesheet opens with a comment naming the source and its sha256, so the compiled
file's sha256 (the one the registry checks) also pins the source.
"""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

import lxml.isoschematron
from lxml import etree
from saxonche import PySaxonApiError

from gateway.errors import ValidatorError
from gateway.fs import write_atomically
from gateway.xml import saxon

SKELETON_DIR = Path(lxml.isoschematron.__file__).resolve().parent / "resources" / "xsl" / "iso-schematron-xslt1"
_ISO_NS = "http://purl.oclc.org/dsdl/schematron"
#: queryBinding → the XSLT version the generated stylesheet must declare.
_XSLT_VERSION = {"": "1.0", "xslt": "1.0", "xslt1": "1.0", "xpath": "1.0", "xslt2": "2.0", "xslt3": "3.0"}
#: Bumped when the pipeline changes, so that older cache files are not reused.
_PIPELINE = "iso-xslt1-skeleton/1"


def _run(stylesheet: str, *, source_file: Path | None = None, source_text: str | None = None,
         parameters: dict[str, str] | None = None) -> str:
    with saxon.exclusive() as processor:
        compiler = processor.new_xslt30_processor()
        executable = compiler.compile_stylesheet(stylesheet_file=str(SKELETON_DIR / stylesheet))
        for name, value in (parameters or {}).items():
            executable.set_parameter(name, processor.make_string_value(value))
        # A file keeps its base URI, for the includes' relative hrefs.
        node = (processor.parse_xml(xml_file_name=str(source_file)) if source_file is not None
                else processor.parse_xml(xml_text=source_text))
        result = executable.transform_to_string(xdm_node=node)
    if not result:
        raise ValidatorError(f"{stylesheet} produced nothing")
    return result


def compile_schematron(source: Path) -> bytes:
    """The validating XSLT for the ISO Schematron ``source`` (UTF-8 bytes).

    Raises ``ValidatorError`` when the source is not ISO Schematron, names a query
    binding the skeleton cannot serve, or when a step or the result does not compile.
    """
    source = source.resolve()
    try:
        included = _run("iso_dsdl_include.xsl", source_file=source)
        expanded = etree.fromstring(_run("iso_abstract_expand.xsl", source_text=included).encode("utf-8"))
        if expanded.tag != f"{{{_ISO_NS}}}schema":
            raise ValidatorError(f"{source.name} is not an ISO Schematron schema (root {expanded.tag})")
        binding = (expanded.get("queryBinding") or "").lower()
        if binding not in _XSLT_VERSION:
            raise ValidatorError(f"{source.name}: queryBinding {binding!r} is not supported")
        expanded.set("queryBinding", "xslt")
        generated = _run("iso_svrl_for_xslt1.xsl", source_text=etree.tostring(expanded, encoding="unicode"),
                         parameters={"allow-foreign": "true"})
    except PySaxonApiError as exc:
        raise ValidatorError(f"{source.name} does not compile to XSLT: {exc}") from None
    stylesheet = etree.fromstring(generated.encode("utf-8"))
    stylesheet.set("version", _XSLT_VERSION[binding])
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    stylesheet.insert(0, etree.Comment(
        f" Compiled by chorus-gateway from {source.name} (sha256 {digest}) with {_PIPELINE}, "
        f"lxml {metadata.version('lxml')}; queryBinding {binding or 'xslt'} "
    ))
    compiled = etree.tostring(stylesheet, xml_declaration=True, encoding="UTF-8")
    _check_compiles(compiled, source.name)
    return compiled


def _check_compiles(compiled: bytes, name: str) -> None:
    with saxon.exclusive() as processor:
        try:
            processor.new_xslt30_processor().compile_stylesheet(stylesheet_text=compiled.decode("utf-8"))
        except PySaxonApiError as exc:
            raise ValidatorError(f"the XSLT compiled from {name} does not compile: {exc}") from None


def compiled_path(source: Path, cache_dir: Path) -> Path:
    """Where the XSLT compiled from ``source`` is kept in ``cache_dir``."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    key = hashlib.sha256(f"{_PIPELINE}\0{metadata.version('lxml')}\0{digest}".encode()).hexdigest()
    return cache_dir / f"{source.stem}.{key[:16]}.xslt"


def compile_to_cache(source: Path, cache_dir: Path) -> Path:
    """The XSLT compiled from ``source`` in ``cache_dir``, compiled now unless already there.

    ``cache_dir`` is created if needed; never the source's directory (it may be
    read-only, as the shared corpus is). The file is written atomically, by each
    process that compiles it at the same time (``gateway rules add`` twice) alike.
    """
    target = compiled_path(source, cache_dir)
    if target.is_file():
        return target
    compiled = compile_schematron(source)
    cache_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(target, compiled, shared=True)
    return target
