"""``gateway run``: passes in a loop, woken early by file events, stopped by a signal.

A signal sets ``stop``; the pass in hand finishes (its rows and files stay
consistent) and the loop exits before starting another.
"""

from __future__ import annotations

import threading

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from gateway.errors import GatewayError
from gateway.pipeline import Pipeline

log = structlog.get_logger(__name__)


class _Wake(FileSystemEventHandler):
    def __init__(self, wake: threading.Event) -> None:
        self.wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self.wake.set()


def run_forever(pipeline: Pipeline, stop: threading.Event) -> None:
    """Run passes until ``stop`` is set; a failing pass is logged and retried later."""
    wake = threading.Event()
    observer = Observer()
    for channel in pipeline.config.channels:
        channel.watch_dir.mkdir(parents=True, exist_ok=True)
        observer.schedule(_Wake(wake), str(channel.watch_dir), recursive=False)
    observer.start()
    log.info("daemon.started", channels=[c.name for c in pipeline.config.channels])
    try:
        while not stop.is_set():
            wake.clear()
            try:
                pipeline.run_pass()
            except GatewayError as exc:
                log.error("alert.pass_failed", error=exc.message)
            # Sleep until a file arrives, the poll interval passes (reports, retries,
            # files still settling) or a signal asks us to stop.
            for _ in range(int(pipeline.config.poll_seconds * 10) or 1):
                if stop.is_set() or wake.wait(0.1):
                    break
    finally:
        observer.stop()
        observer.join()
        log.info("daemon.stopped")
