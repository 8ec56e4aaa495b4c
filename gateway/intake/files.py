"""Intake's filesystem edge: find settled exports, archive them, quarantine them.

Reading and mapping the content is done elsewhere (``csv_export``, ``mapping``);
this module only moves files and writes reason files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from datetime import datetime
from pathlib import Path

from gateway.transport.local import is_temporary, write_atomically


def settled_files(directory: Path, *, settle_seconds: float, now: float | None = None) -> list[Path]:
    """Regular files old enough to be complete, oldest name first.

    Temporary names (``.x``, ``*.part``, ``*.tmp``) and files modified less than
    ``settle_seconds`` ago are left for a later pass: the ERP may still be writing.
    """
    if not directory.is_dir():
        return []
    now = time.time() if now is None else now
    found = []
    for entry in directory.iterdir():
        if not entry.is_file() or is_temporary(entry.name) or entry.name.endswith(".reason"):
            continue
        if now - entry.stat().st_mtime < settle_seconds:
            continue
        found.append(entry)
    return sorted(found)


def file_digest(path: Path) -> tuple[str, int]:
    """sha256 and size, read in chunks so that a large export does not fill memory."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _stamped(directory: Path, name: str, when: datetime) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{when.strftime('%Y%m%dT%H%M%S')}_{name}"


def archive_source(path: Path, archive_dir: Path, *, channel: str, when: datetime) -> Path:
    """Move a processed export out of the watched directory."""
    target = _stamped(archive_dir / channel, path.name, when)
    shutil.move(str(path), str(target))
    return target


def quarantine_source(path: Path, quarantine_dir: Path, *, channel: str, reason: str, when: datetime) -> Path:
    """Move a whole export to quarantine with a ``.reason`` file beside it."""
    target = _stamped(quarantine_dir / channel, path.name, when)
    write_atomically(target.with_name(target.name + ".reason"), (reason + "\n").encode("utf-8"))
    shutil.move(str(path), str(target))
    return target


def quarantine_invoice(
    quarantine_dir: Path,
    *,
    channel: str,
    source_name: str,
    first_line: int,
    text: str,
    encoding: str,
    reason: str,
) -> Path:
    """Write one held-back invoice as the ERP wrote it (a CSV keeps its header line),
    plus its ``.reason``.

    The operator fixes that small file and drops it back into the watched directory;
    the name is stable, so writing it twice (after a crash) gives the same file.
    """
    source = Path(source_name)
    target = quarantine_dir / channel / f"{source.stem}.line{first_line}{source.suffix or '.txt'}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if text:  # an invoice beyond the size limits was not kept: its reason says where it is
        write_atomically(target, text.encode(encoding, errors="replace"))
    write_atomically(target.with_name(target.name + ".reason"), (reason + "\n").encode("utf-8"))
    return target


def sync_directory(directory: Path) -> None:
    """Make renames in ``directory`` durable before the store says they happened."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
