"""``gateway run``: passes in a loop, woken early by file events, stopped by a signal.

A signal sets ``stop``; the pass in hand finishes (its rows and files stay
consistent) and the loop exits before starting another. ``daemon.stopping`` is logged
when the signal arrives, ``daemon.stopped`` once the pass in hand has ended.

A pass that fails, whatever the exception, is logged and the loop goes on: the daemon
dies only of a signal (or an exit of the interpreter). Failed passes in a row back off
(1 s, 2 s, 4 s … at most ``poll_seconds`` × ``BACKOFF_CAP_POLLS``); the first occurrence
of an error is logged in full (``alert.pass_failed``), its repetitions in one line each
(``alert.pass_failed_again``, with the repeat count), and the first pass that succeeds
after them logs ``daemon.recovered``.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable
from types import FrameType

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from gateway.config import Channel
from gateway.errors import GatewayError
from gateway.log import escaped
from gateway.pipeline import Pipeline

log = structlog.get_logger(__name__)

#: The longest wait between failed passes, in poll intervals.
BACKOFF_CAP_POLLS = 12


class Stop(threading.Event):
    """Set by SIGTERM or SIGINT (see :meth:`on_signals`); remembers which one came."""

    signal_name: str | None = None

    def on_signals(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        # Only set a flag here: logging from a handler could re-enter the stream the
        # interrupted code was writing to. The watcher thread of run_forever logs it.
        self.signal_name = signal.Signals(signum).name
        self.set()


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
            log.warning("daemon.events_unavailable", channel=channel.name, error=escaped(exc),
                        detail="this channel is polled every poll_seconds")
    if observer is not None:
        try:
            observer.start()
        except OSError as exc:
            log.warning("daemon.events_unavailable", error=escaped(exc), detail="every channel is polled")
            observer.stop()
            return None
    return observer


def next_look(pipeline: Pipeline) -> float:
    """Seconds to the next pass when no file event comes: the poll interval, or sooner
    when an export waiting to settle may then be complete."""
    due = pipeline.intake_due_in
    poll = pipeline.config.poll_seconds
    return poll if due is None else min(poll, max(due, 0.5))


class PassFailures:
    """Failed passes in a row: how long to wait before the next one, and what to log.

    The same error is the same type and message. The wait grows with every failed pass
    in a row, the same error or not, so that an error whose message changes each time
    (a timestamp, a counter) cannot bring back a pass per second.
    """

    def __init__(self, cap_seconds: float) -> None:
        self.cap_seconds = cap_seconds
        self.in_a_row = 0
        self.last: tuple[str, str] | None = None
        self.repeats = 0

    def failed(self, exc: Exception) -> float:
        """Log the failure; return the seconds to wait before the next pass."""
        self.in_a_row += 1
        delay = min(float(2 ** min(self.in_a_row - 1, 30)), self.cap_seconds)
        message = exc.message if isinstance(exc, GatewayError) else str(exc)
        error = (type(exc).__name__, message)
        text = escaped(message if isinstance(exc, GatewayError) else f"{error[0]}: {message}")
        if error == self.last:
            self.repeats += 1
            log.error("alert.pass_failed_again", error=text, repeats=self.repeats, retry_in_seconds=delay)
            return delay
        self.last, self.repeats = error, 0
        # An error of the gateway's own says what to fix; anything else is a bug, whose
        # traceback (in the JSON log, or on the console with --debug) is what to report.
        log.error("alert.pass_failed", error=text, error_type=error[0], retry_in_seconds=delay,
                  exc_info=not isinstance(exc, GatewayError))
        return delay

    def succeeded(self) -> None:
        if self.in_a_row:
            log.info("daemon.recovered", failed_passes=self.in_a_row)
        self.in_a_row, self.last, self.repeats = 0, None, 0


def run_forever(pipeline: Pipeline, stop: threading.Event) -> None:
    """Run passes until ``stop`` is set; a failing pass is logged and retried later."""
    wake = threading.Event()
    observer = watch_channels(pipeline.config.channels, wake)
    in_pass = threading.Event()
    finished = threading.Event()
    watcher = threading.Thread(target=_log_stopping, args=(stop, in_pass, finished), name="stop-watcher", daemon=True)
    watcher.start()
    failures = PassFailures(pipeline.config.poll_seconds * BACKOFF_CAP_POLLS)
    log.info("daemon.started", channels=[c.name for c in pipeline.config.channels])
    try:
        while not stop.is_set():
            wake.clear()
            pipeline.intake_due_in = None
            in_pass.set()
            try:
                pipeline.run_pass()
            except Exception as exc:  # noqa: BLE001 - the pass boundary: log, wait, go on
                delay = failures.failed(exc)
                _close_quietly(pipeline)
            else:
                failures.succeeded()
                # Sleep until a file arrives, the poll interval passes (reports, retries),
                # a file still settling may be complete, or a signal asks us to stop.
                delay = next_look(pipeline)
            finally:
                in_pass.clear()
            # While failing, file events do not shorten the wait: a busy inbox would
            # otherwise bring back the failing pass at once.
            _sleep(delay, stop, None if failures.in_a_row else wake)
    finally:
        finished.set()
        if observer is not None:
            observer.stop()
            observer.join()
        log.info("daemon.stopped", signal=getattr(stop, "signal_name", None))


def _sleep(seconds: float, stop: threading.Event, wake: threading.Event | None) -> None:
    for _ in range(int(seconds * 10) or 1):
        if stop.is_set() or (wake.wait(0.1) if wake is not None else stop.wait(0.1)):
            return


def _close_quietly(pipeline: Pipeline) -> None:
    """A failed pass may leave a connection half used: the next pass starts afresh."""
    try:
        pipeline.close_transports()
    except Exception as exc:  # noqa: BLE001 - already failing; the next pass reconnects
        log.warning("transport.close_failed", error=escaped(f"{type(exc).__name__}: {exc}"))


def _log_stopping(stop: threading.Event, in_pass: threading.Event, finished: threading.Event) -> None:
    while not stop.wait(0.5):
        if finished.is_set():  # the loop ended on an exception: nothing to announce
            return
    if not finished.is_set():
        log.info("daemon.stopping", signal=getattr(stop, "signal_name", None),
                 waiting_for="the pass in hand" if in_pass.is_set() else None)
