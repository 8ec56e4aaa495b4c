"""Files written whole or not at all, and the names of files that are not whole yet.

A writer gives a file it has not finished a temporary name, and every reader of the
gateway (intake, the local and SFTP transports, the sandbox, ``gateway map``) skips such
names: a leading dot, or an ending an uploader uses while it writes. The gateway's own
files are written under ``.NAME.part`` and renamed (``write_atomically``), so a reader
of its directories, a partner's or the sandbox's, never sees half of one, and after a
crash finds either the old file or the new one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

#: Names a writer uses until the file is complete: a leading dot, or one of these
#: endings (``.filepart``: WinSCP; ``.partial``: several browsers and uploaders; ``~``: editors).
TEMPORARY_PREFIX = "."
TEMPORARY_SUFFIXES = (".tmp", ".part", ".partial", ".filepart", "~")


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a writer's unfinished file, which no reader takes.

    >>> [is_temporary(n) for n in (".x.tar.gz", "x.tar.gz.part", "x.tmp", "x.csv.filepart", "x~", "x.tar.gz")]
    [True, True, True, True, True, False]
    """
    return name.startswith(TEMPORARY_PREFIX) or name.endswith(TEMPORARY_SUFFIXES)


def temporary_name(name: str) -> str:
    """The name the gateway writes ``name`` under until it is complete.

    >>> temporary_name("FSO1100A_AAA123_x.tar.gz")
    '.FSO1100A_AAA123_x.tar.gz.part'
    """
    return f"{TEMPORARY_PREFIX}{name}.part"


def write_atomically(target: Path, data: bytes, *, shared: bool = False) -> None:
    """Write ``data`` under a temporary name beside ``target``, fsync it, rename it over
    ``target``, then fsync the directory, so that the rename itself survives a crash
    (without it the old name may come back after a power loss, although the store was
    told the file is there).

    The temporary name is ``temporary_name(target.name)``: one writer per target at a
    time (the daemon lock, the sandbox's lock or a name reserved beforehand see to it).
    ``shared``: several processes may write ``target`` at once (a cache of a file
    compiled from the same source): each gets a temporary file of its own, and the
    last rename wins.
    """
    if shared:
        handle, name = tempfile.mkstemp(dir=target.parent, prefix=temporary_name(target.name) + ".")
        temporary = Path(name)
        stream = os.fdopen(handle, "wb")
    else:
        temporary = target.with_name(temporary_name(target.name))
        stream = temporary.open("wb")
    try:
        with stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    sync_directory(target.parent)


def sync_directory(directory: Path) -> None:
    """Make the renames and removals done in ``directory`` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
