"""Sandbox stage, I/O edge: answer the flows waiting in the sandbox's inbox.

Layout under the sandbox root (created when missing)::

    inbox/       flows arrive here (the gateway's local transport deposits them)
    outbox/      integration reports and lifecycle files appear here
    received/    each answered flow is moved here
    state.json   (supplier SIRET, invoice number) of every integrated invoice

Every file is written under a temporary name (``.name.part``) and renamed, so a reader
never sees half of one; names starting with ``.`` or ending with ``.tmp`` / ``.part``
are a writer's unfinished files and are left alone. The decisions are
``simulator.process_flow``'s; this module only reads, writes and moves files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

import structlog

from gateway.clock import Clock
from gateway.errors import GatewayError
from gateway.sandbox.simulator import SandboxOutcome, SandboxSettings, process_flow

log = structlog.get_logger(__name__)

INBOX = "inbox"
OUTBOX = "outbox"
RECEIVED = "received"
STATE_FILE = "state.json"
_LOCK_FILE = ".lock"
_TEMP_PREFIX = "."
_TEMP_SUFFIXES = (".tmp", ".part")
_STATE_VERSION = 1


def is_temporary(name: str) -> bool:
    """Whether a name is a writer's unfinished upload (never read it).

    >>> [is_temporary(n) for n in (".x.tar.gz", "x.tar.gz.part", "x.tmp", "x.tar.gz")]
    [True, True, True, False]
    """
    return name.startswith(_TEMP_PREFIX) or name.endswith(_TEMP_SUFFIXES)


def run_sandbox_once(root: Path, settings: SandboxSettings, clock: Clock) -> list[SandboxOutcome]:
    """Answer every complete flow in ``root/inbox``, in name order; return the verdicts.

    For each flow: the answer files are written to ``outbox/`` first, then the flow
    is moved to ``received/``, then ``state.json`` is updated. A crash before the move
    answers the flow again on the next run (same verdict); a crash after it only
    forgets that the flow's invoices were integrated.
    """
    inbox, outbox, received = (root / name for name in (INBOX, OUTBOX, RECEIVED))
    for directory in (inbox, outbox, received):
        directory.mkdir(parents=True, exist_ok=True)
    outcomes: list[SandboxOutcome] = []
    with _exclusive(root):
        integrated = load_state(root / STATE_FILE)
        for path in _waiting_flows(inbox):
            try:
                archive = path.read_bytes()
            except FileNotFoundError:
                continue  # taken away between listing and reading
            outcome = process_flow(
                path.name, archive, settings=settings, now=clock.now(), already_integrated=frozenset(integrated)
            )
            for name, data in outcome.files:
                write_atomically(outbox / name, data)
            kept = _move_to_received(path, received)
            if outcome.integrated:
                integrated |= outcome.integrated_keys
                save_state(root / STATE_FILE, integrated)
            log.info(
                "sandbox.flow_processed",
                file=path.name,
                status=outcome.status_code,
                integrated=len(outcome.integrated),
                rejected=len(outcome.rejected),
                answers=[name for name, _ in outcome.files],
                kept_as=str(kept),
            )
            outcomes.append(outcome)
    return outcomes


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


def write_atomically(target: Path, data: bytes) -> None:
    """Write to ``.<name>.part`` beside ``target``, fsync, then rename over ``target``."""
    temporary = target.with_name(f"{_TEMP_PREFIX}{target.name}.part")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)
    _fsync_directory(target.parent)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; without it a crash may bring the old name back.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _move_to_received(path: Path, received: Path) -> Path:
    """Move an answered flow aside; a name already there gets ``.1``, ``.2``… appended."""
    target = received / path.name
    counter = 0
    while target.exists():
        counter += 1
        target = received / f"{path.name}.{counter}"
    os.replace(path, target)
    return target


def load_state(path: Path) -> set[tuple[str, str]]:
    """The (supplier SIRET, invoice number) pairs already integrated; empty when no file."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        return {(str(supplier), str(number)) for supplier, number in content["integrated"]}
    except FileNotFoundError:
        return set()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise GatewayError(
            f"{path}: unreadable sandbox state ({exc}); repair it, or delete it to forget integrated invoices"
        ) from exc


def save_state(path: Path, integrated: set[tuple[str, str]]) -> None:
    """Write the integrated pairs atomically, sorted so that the file diffs cleanly."""
    content = {"version": _STATE_VERSION, "integrated": sorted([s, n] for s, n in integrated)}
    write_atomically(path, (json.dumps(content, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
