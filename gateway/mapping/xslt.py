"""XSLT 3.0 stylesheets run with saxonche, compiled once per process and reused.

Saxon's processor is heavy to start and a compiled stylesheet is reusable, so both
live for the whole process; a stylesheet that fails to compile or to run raises
``MappingError`` naming the stylesheet, never returns a partial document.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

from saxonche import PySaxonApiError, PySaxonProcessor, PyXsltExecutable

from gateway.errors import MappingError

# One Saxon processor per process: SaxonC does not support several live at once.
_LOCK = threading.Lock()


@functools.cache
def _processor() -> PySaxonProcessor:
    return PySaxonProcessor(license=False)


@functools.cache
def _compiled(path: Path) -> PyXsltExecutable:
    with _LOCK:
        compiler = _processor().new_xslt30_processor()
        try:
            return compiler.compile_stylesheet(stylesheet_file=str(path))
        except PySaxonApiError as exc:
            raise MappingError(f"the stylesheet {path} does not compile: {exc}") from None


def transform(stylesheet: Path, document: bytes, parameters: dict[str, str] | None = None) -> bytes:
    """Run ``stylesheet`` over ``document`` and return the serialized result (UTF-8)."""
    executable = _compiled(stylesheet)
    processor = _processor()
    with _LOCK:
        try:
            node = processor.parse_xml(xml_text=document.decode("utf-8"))
            executable.clear_parameters()
            for name, value in (parameters or {}).items():
                executable.set_parameter(name, processor.make_string_value(value))
            result = executable.transform_to_string(xdm_node=node)
        except PySaxonApiError as exc:
            raise MappingError(f"the stylesheet {stylesheet.name} failed: {exc}") from None
    if not result:
        raise MappingError(f"the stylesheet {stylesheet.name} produced an empty document")
    return result.encode("utf-8")
