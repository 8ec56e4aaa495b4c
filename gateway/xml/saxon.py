"""The process's one Saxon processor (saxonche): XSLT 3.0 stylesheets compiled once and
reused, by the mapping, the XML intake and the Schematron layers alike.

Saxon's processor is heavy to start, SaxonC does not support several live at once,
and a compiled stylesheet is reusable: all three live for the whole process, and
whoever uses the processor holds it alone (``exclusive``). A stylesheet that fails to
compile or to run raises ``MappingError`` naming the stylesheet, never returns a
partial document.

SaxonC's native code reports a dynamic error (``error()``, ``xsl:message
terminate="yes"``) on the process's stderr, with the stylesheet's stack, before the
exception reaches Python. ``transform`` catches that report and puts what an operator
needs into the ``MappingError`` instead: the error's own text, or the terminating
message's.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from saxonche import PySaxonApiError, PySaxonProcessor, PyXdmAtomicValue, PyXsltExecutable

from gateway.errors import MappingError

# SaxonC's processor is not safe to use from two threads at once.
_LOCK = threading.Lock()


@functools.cache
def _processor() -> PySaxonProcessor:
    return PySaxonProcessor(license=False)


@contextlib.contextmanager
def exclusive() -> Iterator[PySaxonProcessor]:
    """The process's Saxon processor, held alone while the block runs.

    Everything that touches the processor or a compiled stylesheet runs inside it
    (``apply`` and what is done with its processor), tests too: a second processor
    in the same process is not supported by SaxonC.
    """
    with _LOCK:
        yield _processor()


@functools.cache
def compile_stylesheet(path: Path) -> PyXsltExecutable:
    """The stylesheet at ``path``, compiled once per process; ``MappingError`` if it does not compile."""
    with exclusive() as processor:
        compiler = processor.new_xslt30_processor()
        try:
            return compiler.compile_stylesheet(stylesheet_file=str(path))
        except PySaxonApiError as exc:
            raise MappingError(f"the stylesheet {path} does not compile: {exc}") from None


def check_stylesheet(stylesheet: Path) -> None:
    """Compile ``stylesheet`` now, so that a user's stylesheet that does not compile is
    reported when the configuration is read rather than on the first export.

    Raises ``MappingError``; the compiled stylesheet is kept for ``transform``.
    """
    compile_stylesheet(stylesheet)


@functools.cache
def scratch_directory() -> Path:
    """A directory of this process's own for the documents Saxon reads and writes.

    A big document is given to Saxon as a file, not a string: a string is copied into
    Python's memory, then into Saxon's as UTF-16, and its result back again; a
    100,000-line invoice cost hundreds of megabytes that way
    (benchmarks/bench_big_invoice.py). The files are used inside ``exclusive``.
    """
    directory = Path(tempfile.mkdtemp(prefix="gateway-saxon-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


#: Documents up to this size go to Saxon and back as strings, the faster way (some
#: milliseconds a document less); larger ones, or a document already in a file, as files.
IN_MEMORY_BYTES = 1024 * 1024


def in_memory(document: bytes | Path) -> bool:
    """Whether ``document`` goes to Saxon as a string (see ``IN_MEMORY_BYTES``)."""
    return isinstance(document, bytes) and len(document) <= IN_MEMORY_BYTES


def apply(executable: PyXsltExecutable, document: bytes | Path, result_name: str) -> bytes | Path:
    """Run ``executable`` over ``document`` (its bytes, or the file that holds them), inside
    ``exclusive``: the result's bytes, or for a document not ``in_memory`` the scratch file
    ``result_name`` that holds them (the caller reads and removes it). Raises
    ``PySaxonApiError``."""
    processor = _processor()
    if in_memory(document):
        assert isinstance(document, bytes)
        node = processor.parse_xml(xml_text=document.decode("utf-8"))
        return (executable.transform_to_string(xdm_node=node) or "").encode("utf-8")
    source = document if isinstance(document, Path) else scratch_directory() / "source.xml"
    if isinstance(document, bytes):
        source.write_bytes(document)
    result = scratch_directory() / result_name
    try:
        node = processor.parse_xml(xml_file_name=str(source))
        executable.transform_to_file(xdm_node=node, output_file=str(result))
    except BaseException:
        result.unlink(missing_ok=True)
        raise
    finally:
        if source != document:
            source.unlink()
    return result


@functools.cache
def _string_value(value: str) -> PyXdmAtomicValue:
    # SaxonC never frees an XDM value made by make_string_value (~340 bytes each,
    # measured in benchmarks/bench_mapping.py): parameter values are made once.
    return _processor().make_string_value(value)


#: The parameters last set on each compiled stylesheet: set_parameter leaks too, so it
#: is called only when a value changes (and the values of a channel rarely do).
_SET: dict[Path, dict[str, str]] = {}


#: Stylesheets whose xsl:message output is kept rather than printed by Saxon.
_SAVING_MESSAGES: set[Path] = set()


@functools.cache
def _stderr_sink() -> BinaryIO:
    sink = tempfile.TemporaryFile(prefix="gateway-saxon-")  # noqa: SIM115 - reused for the whole process
    atexit.register(sink.close)
    return sink


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[bytes]]:
    """Descriptor 2 points at a temporary file while the block runs (inside ``exclusive``);
    the list it yields then holds what was written there.

    Saxon writes from native code, so only the descriptor can catch it, not
    ``sys.stderr``. The caller decides what of it still belongs on stderr.
    """
    sink = _stderr_sink()
    sink.seek(0)
    sink.truncate()
    sys.stderr.flush()
    saved = os.dup(2)
    captured: list[bytes] = []
    try:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
    finally:
        os.close(saved)
    sink.seek(0)
    captured.append(sink.read())


def transform(stylesheet: Path, document: bytes | Path, parameters: dict[str, str] | None = None) -> bytes:
    """Run ``stylesheet`` over ``document`` (its bytes, or the file that holds them) and
    return the serialized result (UTF-8).

    ``MappingError`` if it fails, with the reason it gives (the text of ``error()`` or
    of a terminating ``xsl:message``), and nothing of Saxon's on stderr.
    """
    executable = compile_stylesheet(stylesheet)
    wanted = dict(parameters or {})
    failure: PySaxonApiError | None = None
    with exclusive():
        if stylesheet not in _SAVING_MESSAGES:
            executable.set_save_xsl_message(True)
            _SAVING_MESSAGES.add(stylesheet)
        with captured_stderr() as report:
            try:
                if _SET.get(stylesheet) != wanted:
                    _SET.pop(stylesheet, None)
                    executable.clear_parameters()
                    for name, value in wanted.items():
                        executable.set_parameter(name, _string_value(value))
                    _SET[stylesheet] = wanted
                output = apply(executable, document, "transform-result.xml")
                if isinstance(output, Path):
                    result = output.read_bytes()
                    output.unlink()
                else:
                    result = output
            except PySaxonApiError as exc:
                failure = exc
        messages = _messages(executable)
    if failure is None:
        # Nothing failed: whatever was written (Saxon's warnings, the stylesheet's own
        # messages) goes where it always went.
        _write_stderr(report[0] + b"".join(f"{message}\n".encode() for message in messages))
        if not result:
            raise MappingError(f"the stylesheet {stylesheet.name} produced an empty document")
        return result
    # Saxon's report (file positions, template stack) is replaced by its gist; the
    # stylesheet's own earlier messages stay the stylesheet's output, as does what
    # another thread wrote meanwhile.
    reason = " ".join(str(failure).split())
    terminated = bool(messages) and "terminated by xsl:message" in reason
    _write_stderr(_without_saxon_report(report[0]))
    _write_stderr(b"".join(f"{message}\n".encode() for message in messages[:-1] if terminated))
    if terminated:
        raise MappingError(f"the stylesheet {stylesheet.name} stopped: {' '.join(messages[-1].split())}")
    _write_stderr(b"".join(f"{message}\n".encode() for message in messages))
    raise MappingError(f"the stylesheet {stylesheet.name} failed: {reason}")


def _messages(executable: PyXsltExecutable) -> list[str]:
    """The text of each xsl:message of the last run, in order; forgotten by Saxon then."""
    saved = executable.get_xsl_messages()
    if saved is None:
        return []
    messages = [saved.item_at(index).string_value for index in range(saved.size)]
    executable.clear_xsl_messages()
    return messages


#: How the lines of Saxon's error report begin: a heading, or an indented detail.
_SAXON_REPORT = re.compile(rb"^(\s|(Static |Type |Dynamic |Fatal )?[Ee]rror\b|Warning\b)")


def _without_saxon_report(captured: bytes) -> bytes:
    r"""The captured lines that are not Saxon's report of the failure.

    >>> _without_saxon_report(b'Error on line 3 of x.xsl:\n  FOER0000  bang\n{"event": "x"}\n')
    b'{"event": "x"}\n'
    """
    return b"".join(line for line in captured.splitlines(keepends=True) if not _SAXON_REPORT.match(line))


def _write_stderr(data: bytes) -> None:
    sys.stderr.flush()
    while data:
        data = data[os.write(2, data):]
