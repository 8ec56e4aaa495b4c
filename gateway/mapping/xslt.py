"""XSLT 3.0 stylesheets run with saxonche, compiled once per process and reused.

Saxon's processor is heavy to start and a compiled stylesheet is reusable, so both
live for the whole process; a stylesheet that fails to compile or to run raises
``MappingError`` naming the stylesheet, never returns a partial document.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

from saxonche import PySaxonApiError, PySaxonProcessor, PyXdmAtomicValue, PyXsltExecutable

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


def check_stylesheet(stylesheet: Path) -> None:
    """Compile ``stylesheet`` now, so that a user's stylesheet that does not compile is
    reported when the configuration is read rather than on the first export.

    Raises ``MappingError``; the compiled stylesheet is kept for ``transform``.
    """
    _compiled(stylesheet)


@functools.cache
def _string_value(value: str) -> PyXdmAtomicValue:
    # SaxonC never frees an XDM value made by make_string_value (~340 bytes each,
    # measured in benchmarks/bench_mapping.py): parameter values are made once.
    return _processor().make_string_value(value)


#: The parameters last set on each compiled stylesheet: set_parameter leaks too, so it
#: is called only when a value changes (and the values of a channel rarely do).
_SET: dict[Path, dict[str, str]] = {}


def transform(stylesheet: Path, document: bytes, parameters: dict[str, str] | None = None) -> bytes:
    """Run ``stylesheet`` over ``document`` and return the serialized result (UTF-8)."""
    executable = _compiled(stylesheet)
    processor = _processor()
    wanted = dict(parameters or {})
    with _LOCK:
        try:
            node = processor.parse_xml(xml_text=document.decode("utf-8"))
            if _SET.get(stylesheet) != wanted:
                _SET.pop(stylesheet, None)
                executable.clear_parameters()
                for name, value in wanted.items():
                    executable.set_parameter(name, _string_value(value))
                _SET[stylesheet] = wanted
            result = executable.transform_to_string(xdm_node=node)
        except PySaxonApiError as exc:
            raise MappingError(f"the stylesheet {stylesheet.name} failed: {exc}") from None
    if not result:
        raise MappingError(f"the stylesheet {stylesheet.name} produced an empty document")
    return result.encode("utf-8")
