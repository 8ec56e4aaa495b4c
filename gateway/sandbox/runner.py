"""Sandbox stage, I/O edge: answer the flows waiting in the sandbox's inbox.

Layout under the sandbox root (created when missing)::

    inbox/       flows arrive here (the gateway's local transport deposits them)
    outbox/      integration reports and lifecycle files appear here
    received/    each answered flow is moved here
    state.json   (supplier SIRET, invoice number) of every integrated invoice, the
                 lifecycle statuses still to come, and the sandbox clock's offset

Every file is written under a temporary name (``.name.part``) and renamed, so a reader
never sees half of one; a writer's unfinished files (``gateway.fs.is_temporary``) are
left alone. The decisions are
``simulator.process_flow``'s and ``scenarios.emit_all_due``'s; this module only reads,
writes and moves files.

The sandbox's time is the given clock plus an offset kept in ``state.json``, which
``advance_clock`` (``gateway sandbox --advance``) moves forward: a rehearsal or a test
makes lifecycle statuses come due without waiting, across processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import structlog

from gateway.clock import Clock
from gateway.errors import GatewayError
from gateway.fs import is_temporary, write_atomically
from gateway.sandbox.scenarios import LifecycleSchedule, emit_all_due
from gateway.sandbox.simulator import SandboxOutcome, SandboxSettings, process_flow

log = structlog.get_logger(__name__)

INBOX = "inbox"
OUTBOX = "outbox"
RECEIVED = "received"
STATE_FILE = "state.json"
_LOCK_FILE = ".lock"
_STATE_VERSION = 2
_READABLE_VERSIONS = (1, 2)


@dataclass
class SandboxState:
    """What ``state.json`` holds between runs."""

    #: (supplier SIRET, invoice number) of every integrated invoice, for the duplicate check.
    integrated: set[tuple[str, str]] = field(default_factory=set)
    #: Added to the clock: how far ``advance_clock`` moved the sandbox's time.
    clock_offset: timedelta = timedelta(0)
    #: The lifecycle statuses not emitted yet, one schedule per integrated flow.
    schedules: list[LifecycleSchedule] = field(default_factory=list)


@dataclass(frozen=True)
class SandboxPass:
    """One run: the flows answered, the lifecycle files of statuses that came due, and when."""

    outcomes: list[SandboxOutcome]
    lifecycle_files: list[str]
    now: datetime


def run_sandbox_once(root: Path, settings: SandboxSettings, clock: Clock) -> list[SandboxOutcome]:
    """Answer every complete flow in ``root/inbox``, in name order, and emit the
    lifecycle statuses that came due; return the verdicts (see ``run_sandbox_pass``)."""
    return run_sandbox_pass(root, settings, clock).outcomes


def run_sandbox_pass(root: Path, settings: SandboxSettings, clock: Clock) -> SandboxPass:
    """Answer every complete flow in ``root/inbox``, in name order, then write the
    lifecycle statuses due since the last run (each one once, across processes).

    For each flow: the answer files are written to ``outbox/`` first, then the flow
    is moved to ``received/``, then ``state.json`` is updated. A crash before the move
    answers the flow again on the next run (same verdict); a crash after it only
    forgets that the flow's invoices were integrated. Lifecycle files, too, are
    written before ``state.json`` records them: a crash in between writes them again.
    """
    inbox, outbox, received = (root / name for name in (INBOX, OUTBOX, RECEIVED))
    for directory in (inbox, outbox, received):
        directory.mkdir(parents=True, exist_ok=True)
    outcomes: list[SandboxOutcome] = []
    with _exclusive(root):
        state = load_state(root / STATE_FILE)
        for path in _waiting_flows(inbox):
            try:
                archive = path.open("rb")
            except FileNotFoundError:
                continue  # taken away between listing and reading
            with archive:  # read as a stream: a flow is never held whole (archive.py)
                outcome = process_flow(
                    path.name,
                    archive,
                    settings=settings,
                    now=clock.now() + state.clock_offset,
                    already_integrated=frozenset(state.integrated),
                )
            for name, data in outcome.files:
                write_atomically(outbox / name, data)
            kept = _move_to_received(path, received)
            if outcome.integrated:
                state.integrated |= outcome.integrated_keys
                if outcome.schedule is not None:
                    state.schedules.append(outcome.schedule)
                save_state(root / STATE_FILE, state)
            log.info(
                "sandbox.flow_processed",
                file=path.name,
                status=outcome.status_code or "no answer",
                integrated=len(outcome.integrated),
                rejected=len(outcome.rejected),
                answers=[name for name, _ in outcome.files],
                kept_as=str(kept),
            )
            outcomes.append(outcome)
        now = clock.now() + state.clock_offset
        written = _emit_lifecycle(root, state, settings, now)
    return SandboxPass(outcomes, written, now)


def _emit_lifecycle(root: Path, state: SandboxState, settings: SandboxSettings, now: datetime) -> list[str]:
    files, state.schedules = emit_all_due(
        state.schedules, now, report_format=settings.report_format, partner_code=settings.partner_code
    )
    for name, data in files:
        write_atomically(root / OUTBOX / name, data)
    if files:
        save_state(root / STATE_FILE, state)
        log.info("sandbox.lifecycle_emitted", answers=[name for name, _ in files], pending=len(state.schedules))
    return [name for name, _ in files]


def advance_clock(root: Path, delta: timedelta) -> timedelta:
    """Move the sandbox's time forward by ``delta`` (kept in ``state.json``); return
    the offset from the real clock now in force."""
    if delta <= timedelta(0):
        raise ValueError(f"the sandbox clock only moves forward, not by {delta}")
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root):
        state = load_state(root / STATE_FILE)
        state.clock_offset += delta
        save_state(root / STATE_FILE, state)
    offset = state.clock_offset.total_seconds()
    log.info("sandbox.clock_advanced", by_seconds=delta.total_seconds(), offset_seconds=offset)
    return state.clock_offset


def _waiting_flows(inbox: Path) -> list[Path]:
    return sorted(
        (entry for entry in inbox.iterdir() if entry.is_file() and not is_temporary(entry.name)),
        key=lambda entry: entry.name,
    )


@contextlib.contextmanager
def _exclusive(root: Path) -> Iterator[None]:
    # The in-process sandbox and `gateway sandbox` may share a root: one answers at a time,
    # so that no flow is answered twice.
    with (root / _LOCK_FILE).open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _move_to_received(path: Path, received: Path) -> Path:
    """Move an answered flow aside; a name already there gets ``.1``, ``.2``… appended."""
    target = received / path.name
    counter = 0
    while target.exists():
        counter += 1
        target = received / f"{path.name}.{counter}"
    os.replace(path, target)
    return target


def load_state(path: Path) -> SandboxState:
    """The sandbox's memory; empty when there is no file. Reads versions 1 and 2."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        if content.get("version") not in _READABLE_VERSIONS:
            raise ValueError(f"version {content.get('version')!r} is not one of {_READABLE_VERSIONS}")
        return SandboxState(
            integrated={(str(supplier), str(number)) for supplier, number in content["integrated"]},
            clock_offset=timedelta(seconds=float(content.get("clock_offset_seconds", 0))),
            schedules=[LifecycleSchedule.from_json(item) for item in content.get("lifecycle", [])],
        )
    except FileNotFoundError:
        return SandboxState()
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise GatewayError(
            f"{path}: unreadable sandbox state ({exc}); repair it, or delete it to forget integrated invoices, "
            "the lifecycle statuses to come and the clock offset"
        ) from exc


def save_state(path: Path, state: SandboxState) -> None:
    """Write the state atomically, sorted so that the file diffs cleanly."""
    content = {
        "version": _STATE_VERSION,
        "integrated": sorted([s, n] for s, n in state.integrated),
        "clock_offset_seconds": state.clock_offset.total_seconds(),
        "lifecycle": [schedule.to_json() for schedule in state.schedules],
    }
    write_atomically(path, (json.dumps(content, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
