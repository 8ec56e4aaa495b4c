"""``gateway run``: passes in a loop, woken early by file events, stopped by a signal.

A signal sets ``stop``; the pass in hand finishes (its rows and files stay
consistent) and the loop exits before starting another.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from gateway.config import Channel
from gateway.errors import GatewayError
from gateway.pipeline import Pipeline

log = structlog.get_logger(__name__)


class _Wake(FileSystemEventHandler):
    def __init__(self, wake: threading.Event) -> None:
        self.wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self.wake.set()


def watch_channels(channels: Iterable[Channel], wake: threading.Event) -> BaseObserver | None:
    """File events for the channels with ``watch = "events"``; the others (network shares,
    where inotify hears nothing of another machine's writes) are polled only. A channel
    whose events cannot be had (the inotify limits) is polled too, with a warning."""
    observer: BaseObserver | None = None
    for channel in channels:
        channel.watch_dir.mkdir(parents=True, exist_ok=True)
        if channel.watch != "events":
            continue
        try:
            observer = observer or Observer()
            observer.schedule(_Wake(wake), str(channel.watch_dir), recursive=False)
        except OSError as exc:
            log.warning("daemon.events_unavailable", channel=channel.name, error=str(exc),
                        detail="this channel is polled every poll_seconds")
    if observer is not None:
        try:
            observer.start()
        except OSError as exc:
            log.warning("daemon.events_unavailable", error=str(exc), detail="every channel is polled")
            observer.stop()
            return None
    return observer


def next_look(pipeline: Pipeline) -> float:
    """Seconds to the next pass when no file event comes: the poll interval, or sooner
    when an export waiting to settle may then be complete."""
    due = pipeline.intake_due_in
    poll = pipeline.config.poll_seconds
    return poll if due is None else min(poll, max(due, 0.5))


def run_forever(pipeline: Pipeline, stop: threading.Event) -> None:
    """Run passes until ``stop`` is set; a failing pass is logged and retried later."""
    wake = threading.Event()
    observer = watch_channels(pipeline.config.channels, wake)
    log.info("daemon.started", channels=[c.name for c in pipeline.config.channels])
    try:
        while not stop.is_set():
            wake.clear()
            pipeline.intake_due_in = None
            try:
                pipeline.run_pass()
            except GatewayError as exc:
                log.error("alert.pass_failed", error=exc.message)
            # Sleep until a file arrives, the poll interval passes (reports, retries),
            # a file still settling may be complete, or a signal asks us to stop.
            for _ in range(int(next_look(pipeline) * 10) or 1):
                if stop.is_set() or wake.wait(0.1):
                    break
    finally:
        if observer is not None:
            observer.stop()
            observer.join()
        log.info("daemon.stopped")
