"""Logging set-up, done once by the CLI: JSON lines for machines, readable lines for people."""

from __future__ import annotations

import logging
import sys

import structlog

#: Set by ``gateway --debug``: tracebacks of unexpected errors are shown on the console too.
_debug = False


def configure_logging(log_format: str = "auto", *, level: int = logging.INFO, debug: bool | None = None) -> None:
    """``auto`` renders readable lines on a terminal and JSON lines otherwise (to stderr).

    A traceback attached to an event is kept in JSON (one line, field ``exception``); on the
    console it is dropped unless ``debug``: the event's own fields say what failed, and a
    person at a terminal is not meant to read a stack.
    """
    global _debug
    if debug is not None:
        _debug = debug
    as_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    tracebacks: list[structlog.typing.Processor] = [structlog.processors.format_exc_info]
    if not as_json and not _debug:
        tracebacks = [_drop_traceback]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *tracebacks,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries log through the standard logging module (watchdog, paramiko, alembic);
    # their warnings and errors go out in the same format, so that every line of
    # stderr is one JSON object when the log is JSON.
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _LibraryHandler)]:
        root.removeHandler(handler)
    root.addHandler(_LibraryHandler(logging.WARNING))
    # watchdog's inotify thread, stopped while it waits for an event, logs this error as it
    # ends: a race inside watchdog at every stop of the daemon, nothing an operator can act on.
    logging.getLogger("watchdog.observers.inotify").addFilter(
        lambda record: "called when the thread is inactive" not in record.getMessage())


class _LibraryHandler(logging.Handler):
    """A standard-logging record of a library, logged as a structlog event."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            structlog.get_logger(record.name).log(record.levelno, "library.log", library=record.name,
                                                  message=escaped(record.getMessage(), limit=2000))
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


def debugging() -> bool:
    """Whether ``--debug`` was given."""
    return _debug


def _drop_traceback(_logger: object, _name: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    event.pop("exc_info", None)
    return event


def escaped(text: object, limit: int = 300) -> str:
    """``text`` safe on one log line: bytes that are not UTF-8 (a file name read with
    surrogateescape) and control characters (a newline in a name) escaped, bounded.

    >>> escaped("daily\\n.csv")
    'daily\\\\n.csv'
    >>> escaped("caf\\udce9.csv")
    'caf\\\\xe9.csv'
    >>> escaped("\\ud800")
    '\\\\ud800'
    >>> escaped("x" * 10, limit=4)
    'xxxx…'
    """
    text = str(text)
    try:
        raw = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that no undecodable byte became
        raw = text.encode("utf-8", "backslashreplace").decode("utf-8")
    safe = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in raw)
    return safe if len(safe) <= limit else safe[:limit] + "…"
