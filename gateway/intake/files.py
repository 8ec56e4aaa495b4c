"""Intake's filesystem edge: which exports are complete, claiming them, and where they go.

Reading and mapping the content is done elsewhere (``csv_export``, ``mapping``);
this module only looks at, moves and copies files and writes reason files. Its
names for files are safe to print: a name as the filesystem gives it may hold bytes
that are not UTF-8 (kept by Python as surrogates), line breaks or any other control
character, and up to 255 bytes, which a prefix would push past the limit.

The life of an export (docs/inputs.md, *When a file is taken*):

1. listed in the watch directory and found complete by the channel's ``completion``;
2. claimed: renamed into ``processing/<channel>/``, so that the ERP can no longer open
   it by its name, and a crash leaves it where the next pass finds it;
3. copied to a snapshot under ``processing/<channel>/.read/`` while its sha256 is
   computed: the readers read the snapshot, so the bytes read are the bytes hashed;
4. put away: the snapshot goes to ``archive/`` or ``quarantine/``, and the claimed file
   is dropped once its sha256 is found equal; if a writer that still held it open
   changed it, it is kept beside the snapshot with a ``.changed`` suffix.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import stat
import sys
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gateway.fs import is_temporary, write_atomically
from gateway.log import escaped

#: How an ERP tells that an export is complete (``[channels.X] completion``).
COMPLETION_STRATEGIES = ("settle", "rename", "done-file")
#: How the daemon learns that a file arrived (``[channels.X] watch``).
WATCH_MODES = ("events", "poll")
#: Endings of the marker that says an export is complete (strategy ``done-file``):
#: ``x.csv.done`` or ``x.done`` for ``x.csv``.
DONE_SUFFIX = ".done"
#: Files the gateway itself writes beside quarantined files; never exports.
REASON_SUFFIX = ".reason"
#: A claimed export's snapshot directory, inside its channel's processing directory
#: (``Config.processing_dir``).
SNAPSHOTS = ".read"
#: The claim directory inside a watch directory that is on another filesystem than the
#: data directory (an NFS or SMB share): a rename is atomic only within one filesystem.
LOCAL_CLAIMS = ".gateway-processing"
#: Longest file name the gateway gives, in bytes: 255 (Linux, macOS, Windows) less what
#: may be added around it (``.<name>~2.reason.part`` while a reason file is written).
MAX_NAME_BYTES = 230
#: A reason or a log excerpt of input is cut after this many characters.
MAX_EXCERPT = 2000
#: The name of a held-back invoice's file (``quarantine_invoice``), as dropped back fixed:
#: which source file and line it came from.
HELD_BACK_NAME = re.compile(r"\.file(\d+)\.line(\d+)(?:~\d+)?(?:\.[^.]*)?$")
#: sha256 recorded for a refused entry, which is never read.
NEVER_READ = "0" * 64

_CHUNK = 1 << 20


# -- names and excerpts ---------------------------------------------------------


def excerpt(text: str) -> str:
    """A reason, or an excerpt of an export's content, on one printable line (control
    characters and bytes that are not UTF-8 escaped: hostile input cannot forge a log
    line or break a one-line ``.reason`` file) and at most ``MAX_EXCERPT`` characters.

    >>> excerpt("x.csv, line 1, field 'root:x:0:0\\n': unknown column")
    "x.csv, line 1, field 'root:x:0:0\\\\n': unknown column"
    """
    return escaped(text, MAX_EXCERPT)


def shown(name: str) -> str:
    """A file name as the gateway writes it in logs, reasons, the store and the names of
    its own files: bytes that are not UTF-8 as ``\\xNN``, control characters escaped.

    >>> shown(os.fsdecode(b"caf\\xe9\\n.csv"))
    'caf\\\\xe9\\\\n.csv'
    """
    return escaped(name, sys.maxsize)


def fit_name(name: str, limit: int = MAX_NAME_BYTES) -> str:
    """``name`` in at most ``limit`` bytes of UTF-8: the middle of a longer name gives way
    to a short hash of the whole, so that two long names stay apart; the extension stays.

    >>> fit_name("daily.csv")
    'daily.csv'
    >>> long = fit_name("x" * 300 + ".csv")
    >>> len(long.encode()), long.endswith(".csv"), "~" in long
    (230, True, True)
    """
    data = name.encode("utf-8", errors="surrogateescape")
    if len(data) <= limit:
        return name
    stem, dot, extension = name.rpartition(".")
    suffix = f".{extension}" if dot and stem and len(extension.encode()) <= 16 else ""
    body = name[: len(name) - len(suffix)]
    tag = "~" + hashlib.sha256(data).hexdigest()[:10] + "~"
    room = limit - len(suffix.encode()) - len(tag)
    head = _cut(body, room - room // 3)
    tail = _cut(body[::-1], room // 3)[::-1]
    return f"{head}{tag}{tail}{suffix}"


def _cut(text: str, size: int) -> str:
    """The longest start of ``text`` within ``size`` bytes, on a character boundary."""
    return text.encode("utf-8", errors="surrogateescape")[:size].decode("utf-8", errors="ignore")


# -- what is in a watch directory -------------------------------------------------


@dataclass(frozen=True)
class Look:
    """What a ``stat`` of an export says; two equal looks mean nothing was written between."""

    size: int
    mtime_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, status: os.stat_result) -> Look:
        return cls(status.st_size, status.st_mtime_ns, status.st_ino, status.st_dev)

    @property
    def mtime(self) -> float:
        return self.mtime_ns / 1e9


@dataclass(frozen=True)
class Entry:
    """A file of a watch directory that may be an export."""

    path: Path
    look: Look
    #: Why it is refused without being read (a symbolic link, a hard link, a FIFO…).
    refusal: str | None = None
    #: Strategy ``done-file``: the marker that says it is complete.
    marker: Path | None = None


def list_entries(directory: Path, *, markers: bool = False) -> list[Entry]:
    """Candidate exports of a watch directory, by name: temporary names, ``.reason`` files,
    directories (``attachments/``) and, with ``markers``, ``.done`` files left out.

    Nothing is opened: a symbolic link, a file with a hard link outside the directory
    (it may be any file of the filesystem: ``/etc/passwd``…) and anything but a regular
    file come back with a ``refusal`` instead. A file whose other name is a temporary
    one in the same directory (a writer that links, then unlinks, instead of renaming)
    is left for a later pass.
    """
    try:
        scanned = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    looked: list[tuple[str, os.stat_result]] = []
    names_of: dict[tuple[int, int], list[str]] = {}
    for item in scanned:
        try:
            status = item.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed since the listing
        looked.append((item.name, status))
        if stat.S_ISREG(status.st_mode):
            names_of.setdefault((status.st_dev, status.st_ino), []).append(item.name)
    entries = []
    for name, status in looked:
        if is_temporary(name) or name.endswith(REASON_SUFFIX) or (markers and name.endswith(DONE_SUFFIX)):
            continue
        path = directory / name
        refusal = None
        if stat.S_ISLNK(status.st_mode):
            if path.is_dir():
                continue  # a linked directory (attachments/) is not an export
            refusal = f"is a symbolic link (to {_link_target(path)})"
        elif stat.S_ISDIR(status.st_mode):
            continue
        elif not stat.S_ISREG(status.st_mode):
            refusal = f"is not a regular file ({_kind(status.st_mode)})"
        elif status.st_nlink > 1:
            here = names_of[(status.st_dev, status.st_ino)]
            if len(here) == status.st_nlink and any(is_temporary(other) for other in here):
                continue
            refusal = f"has {status.st_nlink} hard links: another name of it is elsewhere, maybe outside the channel"
        if refusal is not None:
            refusal += "; refused without being read: have the ERP write (or copy) the export itself here"
        entries.append(Entry(path, Look.of(status), refusal))
    return sorted(entries, key=lambda entry: entry.path.name)


def _link_target(path: Path) -> str:
    try:
        return repr(escaped(os.readlink(path), 200))
    except OSError:
        return "a target that cannot be read"


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device")):
        if test(mode):
            return kind
    return "an unknown kind of file"


def with_done_markers(directory: Path, entries: Iterable[Entry]) -> list[Entry]:
    """Strategy ``done-file``: the entries whose marker (``x.csv.done`` or ``x.done``) is
    there, each with its marker; refused entries stay (they are never read anyway)."""
    taken = []
    for entry in entries:
        if entry.refusal is not None:
            taken.append(entry)
            continue
        name = entry.path.name
        for marker_name in (name + DONE_SUFFIX, os.path.splitext(name)[0] + DONE_SUFFIX):
            marker = directory / marker_name
            if marker.is_file() and not marker.is_symlink():
                taken.append(Entry(entry.path, entry.look, marker=marker))
                break
    return taken


def unchanged(entry: Entry) -> bool:
    """Whether ``entry`` looks as it did when listed (or is gone: the claim will tell)."""
    try:
        return Look.of(os.lstat(entry.path)) == entry.look
    except FileNotFoundError:
        return True


class SettleWatch:
    """Strategy ``settle``: what this process saw of each file at its previous look.

    A file is complete when its mtime is older than ``settle_seconds``, when its size
    and mtime are those of the previous pass's look (a file first seen by this process
    counts its mtime as that earlier look: nothing was written since), and when no
    process holds it open for writing (``open_for_writing``). Looks are kept in memory:
    no pass ever sleeps to take a second one.
    """

    def __init__(self) -> None:
        #: Per watch directory, the look of each file at the previous pass.
        self._looks: dict[Path, dict[Path, Look]] = {}

    def settled(self, directory: Path, entries: Iterable[Entry], *, settle_seconds: float,
                now: float | None = None) -> tuple[list[Entry], float | None]:
        """The settled entries of ``directory``'s listing (writers not yet checked), and in
        how many seconds the earliest of the others could be; refused entries always are."""
        now = time.time() if now is None else now
        settled, wait = [], None
        before = self._looks.get(directory, {})
        # Replaced by this listing: a file gone from the directory is forgotten.
        looks = self._looks[directory] = {}
        for entry in entries:
            if entry.refusal is not None:
                settled.append(entry)
                continue
            previous = before.get(entry.path)
            looks[entry.path] = entry.look
            age = now - entry.look.mtime
            if age < settle_seconds or (previous is not None and previous != entry.look):
                # Looked at again after the mtime's age, or at the next pass.
                due = max(settle_seconds - age, 0.0)
                wait = due if wait is None else min(wait, due)
                continue
            settled.append(entry)
        return settled, wait


def open_for_writing(paths: Collection[Path], proc: Path = Path("/proc")) -> set[Path]:
    """Which of ``paths`` a process holds open for writing, read from ``/proc``.

    Linux only (elsewhere: an empty set). Only the processes whose ``/proc/<pid>/fd``
    this user may read are seen: those of the same user, or all of them for root. A
    writer on another machine (a share) is never seen: such an ERP needs ``rename`` or
    ``done-file``.
    """
    if not paths or not (proc / "self" / "fd").is_dir():
        return set()
    wanted = {os.path.realpath(path): path for path in paths}
    found: set[Path] = set()
    try:
        pids = [name for name in os.listdir(proc) if name.isdigit()]
    except OSError:
        return set()
    for pid in pids:
        fd_dir = proc / pid / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # gone, or another user's
        for fd in fds:
            try:
                target = os.readlink(fd_dir / fd)
            except OSError:
                continue
            if target in wanted and _writable(proc / pid / "fdinfo" / fd):
                found.add(wanted[target])
    return found


def _writable(fdinfo: Path) -> bool:
    try:
        text = fdinfo.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags:"):
            return int(line.split()[1], 8) & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)
    return False


# -- claiming, reading, putting away ---------------------------------------------


def claim(path: Path, claims: Path, fallback: Path) -> Path | None:
    """Move an export out of the watch directory into ``claims`` by an atomic rename.

    ``fallback`` (inside the watch directory) is used when ``claims`` is on another
    filesystem. None when the file is gone: the ERP removed or renamed it since the
    listing; nothing was read.
    """
    for directory in (claims, fallback):
        directory.mkdir(parents=True, exist_ok=True)
        # Not reserved by O_EXCL as in free_path: a crash would leave the empty
        # reservation to be taken for an export. One daemon claims at a time.
        target = directory / fit_name(path.name, 255)
        stem, ext = os.path.splitext(target.name)
        for attempt in range(2, 10_000):
            if not os.path.lexists(target):
                break
            target = directory / fit_name(f"{stem}~{attempt}{ext}", 255)
        try:
            os.rename(path, target)
        except FileNotFoundError:
            if not os.path.lexists(path):
                return None
            raise
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                continue
            raise
        return target
    raise OSError(errno.EXDEV, f"cannot rename {shown(str(path))} within its filesystem")


def claimed_files(*directories: Path) -> list[Path]:
    """Exports left claimed by a pass that did not end (a crash): taken first."""
    found: list[tuple[int, Path]] = []
    for directory in directories:
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            try:
                status = path.lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISREG(status.st_mode) and not path.name.startswith("."):
                found.append((status.st_mtime_ns, path))
    return [path for _, path in sorted(found)]


def snapshot(claimed: Path, directory: Path, name: str) -> tuple[Path, str, int]:
    """Copy a claimed export to ``directory/name``, computing its sha256 and size on the way."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    digest = hashlib.sha256()
    size = 0
    with claimed.open("rb") as source, target.open("wb") as copy:
        for chunk in iter(lambda: source.read(_CHUNK), b""):
            digest.update(chunk)
            copy.write(chunk)
            size += len(chunk)
    return target, digest.hexdigest(), size


def file_digest(path: Path) -> tuple[str, int]:
    """sha256 and size, read in chunks so that a large export does not fill memory."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


@dataclass(frozen=True)
class PutAway:
    """Where an export ended up."""

    path: Path
    #: The claimed file, kept because it differs from what was read (a writer held it open).
    changed: Path | None = None


def put_away(read: Path, claimed: Path | None, digest: str, target: Path) -> PutAway:
    """Move the snapshot ``read`` onto ``target`` (a name reserved by ``free_path``), and
    drop the claimed file if it still holds the bytes that were read; keep it otherwise."""
    shutil.move(read, target)
    if claimed is None or not claimed.exists():
        return PutAway(target)
    if file_digest(claimed)[0] == digest:
        claimed.unlink()
        return PutAway(target)
    changed = free_path(target.parent, target.name + ".changed")
    shutil.move(claimed, changed)
    return PutAway(target, changed)


def move_entry(path: Path, target: Path, fallback: Path) -> Path:
    """Move a refused entry (the link itself, never its target) onto ``target`` (reserved
    by ``free_path``), or into ``fallback`` (in the watch directory) when ``target`` is on
    another filesystem: a copy would read it."""
    try:
        os.replace(path, target)
        return target
    except OSError as exc:
        target.unlink(missing_ok=True)
        if exc.errno != errno.EXDEV:
            raise
    reserved = free_path(fallback, target.name)
    try:
        os.replace(path, reserved)
    except BaseException:
        reserved.unlink(missing_ok=True)
        raise
    return reserved


def free_path(directory: Path, name: str) -> Path:
    """A name in ``directory`` that no file holds, reserved by creating it (``O_EXCL``):
    ``name``, else ``stem~2.ext``, ``stem~3.ext``…, each fitted to ``MAX_NAME_BYTES``."""
    directory.mkdir(parents=True, exist_ok=True)
    base = fit_name(name)
    for attempt in range(1, 10_000):
        candidate = base
        if attempt > 1:
            stem, ext = os.path.splitext(base)
            candidate = fit_name(f"{stem}~{attempt}{ext}")
        try:
            os.close(os.open(directory / candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            continue
        return directory / candidate
    raise OSError(errno.EEXIST, f"no free name for {shown(name)} in {directory}")


def stamped(name: str, when: datetime, source_id: int | None = None) -> str:
    """The name of an archived or quarantined export: time, the store's id of the file, name.

    >>> from datetime import datetime
    >>> stamped("daily.csv", datetime(2026, 11, 2, 8, 30), 17)
    '20261102T083000_file17_daily.csv'
    """
    ident = f"_file{source_id}" if source_id is not None else ""
    return fit_name(f"{when.strftime('%Y%m%dT%H%M%S')}{ident}_{name}")


def write_reason(target: Path, reason: str) -> Path:
    """The one-line ``.reason`` file beside ``target``."""
    path = target.with_name(target.name + REASON_SUFFIX)
    write_atomically(path, (excerpt(reason) + "\n").encode("utf-8"))
    return path


def quarantine_invoice(
    quarantine_dir: Path,
    *,
    channel: str,
    source_name: str,
    source_id: int,
    first_line: int,
    text: str,
    encoding: str,
    reason: str,
) -> Path:
    """Write one held-back invoice as the ERP wrote it (a CSV keeps its header line),
    plus its ``.reason``: ``<stem>.file<id>.line<N><suffix>``, never over another file.

    The operator fixes that small file and drops it back into the watched directory.
    ``source_name`` is a name as ``shown`` makes it.
    """
    source = Path(source_name)
    name = f"{source.stem}.file{source_id}.line{first_line}{source.suffix or '.txt'}"
    if not text:
        # An invoice beyond the size limits was not kept: only its reason is written, which
        # says where the invoice is. Its name is unique already (the file's id and line).
        target = quarantine_dir / channel / fit_name(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_reason(target, reason)
        return target
    target = free_path(quarantine_dir / channel, name)
    write_atomically(target, text.encode(encoding, errors="replace"))
    write_reason(target, reason)
    return target


def held_back_origin(name: str) -> tuple[int, int] | None:
    """The source file id and line of a held-back invoice's file dropped back, by its name.

    >>> held_back_origin("daily.file12.line4.csv"), held_back_origin("daily.csv")
    ((12, 4), None)
    """
    found = HELD_BACK_NAME.search(name)
    return (int(found[1]), int(found[2])) if found else None


def remove_quietly(path: Path | None) -> None:
    """Remove a file or a directory of the gateway's own (a snapshot, a marker) if it can:
    what is left is dealt with at the next pass."""
    if path is None:
        return
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError:
        pass

