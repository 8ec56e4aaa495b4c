"""Logging set-up, done once by the CLI: JSON lines for machines, readable lines for people."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(log_format: str = "auto", *, level: int = logging.INFO) -> None:
    """``auto`` renders readable lines on a terminal and JSON lines otherwise (to stderr)."""
    as_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
