"""One daemon per store: the lock a process that runs passes holds for its whole life.

``gateway run`` (and ``run --once``, ``demo``) take it at start and refuse to start
when another process holds it, naming that process. A pass assumes it is the only one
on its store (it settles the attempts and resumes the intakes it finds in progress), and
this lock is what makes that true until the scale-out work shares passes between
processes (issue 17). Commands that only read, or write in short transactions (``flows
retry``, ``reports ingest``, ``serve``), do not take it: they work beside the daemon.

- SQLite: an OS lock (``flock``, non-blocking) on ``<database>.lock`` beside the
  database file, which holds the holder's pid, host and start time as text. The OS
  releases it when the process dies, however it dies.
- PostgreSQL: a session-level advisory lock on a connection kept for the process's
  life. Its key is two numbers: one fixed for the gateway, one derived from the database
  and schema, so that gateways on different schemas of one database do not exclude each
  other. The holder is named by that connection's ``application_name``
  (``chorus-gateway pid=… host=…``, read from ``pg_stat_activity`` with the lock in
  ``pg_locks``) and its start by the connection's ``backend_start``. The server releases
  the lock when the connection ends; a daemon that loses its connection takes the lock
  again, or stops if another process took it meanwhile (``watch``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import threading
import zlib
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import structlog
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import NullPool

from gateway.errors import StoreError

log = structlog.get_logger(__name__)

#: Exit code of a command refused because another gateway holds the store: EX_TEMPFAIL
#: of sysexits.h (try again later), distinct from the 1 of every other error.
EXIT_STORE_HELD = 75

_APPLICATION = "chorus-gateway"
#: PostgreSQL cuts application_name at 63 bytes: the host goes last.
_APP_NAME_MAX = 63
#: First half of the advisory lock's key: the gateway's, whatever the store.
_LOCK_CLASS = zlib.crc32(b"chorus-gateway daemon") & 0x7FFFFFFF


class StoreHeld(StoreError):
    """Another gateway holds this store."""

    exit_code = EXIT_STORE_HELD


def hold_store(url: str) -> DaemonLock:
    """Take the store's daemon lock, or raise ``StoreHeld`` naming its holder."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"database URL {url!r} is not valid: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            return DaemonLock()  # a database of this process alone
        database = Path(parsed.database)
        database.parent.mkdir(parents=True, exist_ok=True)
        return _FileLock.take(database.with_name(database.name + ".lock"))
    if backend == "postgresql":
        return _AdvisoryLock.take(url)
    return DaemonLock()


def refusal(pid: str, host: str, started: str, *, sqlite: bool) -> str:
    """The one line an operator reads when a second gateway is refused.

    >>> refusal("4242", "erp-gw1", "2026-12-01T08:00:00+00:00", sqlite=True)
    'another gateway holds this store: pid 4242, host erp-gw1 (started 2026-12-01T08:00:00+00:00); \
stop it or use PostgreSQL for several (issue 17)'
    """
    advice = "stop it or use PostgreSQL for several (issue 17)" if sqlite else (
        "stop it (several gateways on one PostgreSQL store come with issue 17)"
    )
    return f"another gateway holds this store: pid {pid}, host {host} (started {started}); {advice}"


def _host() -> str:
    return socket.gethostname() or "unknown"


class DaemonLock:
    """A store's daemon lock, held until ``release`` (or the end of a ``with`` block).
    This base holds nothing: a database no other process can open (SQLite in memory)."""

    #: Set when the lock was lost to another process (``watch``): why the daemon stopped.
    lost: StoreHeld | None = None

    def release(self) -> None:
        """Nothing held."""

    def watch(self, stop: threading.Event) -> None:
        """Nothing to watch: the lock cannot be lost while the process lives."""

    def __enter__(self) -> DaemonLock:
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _traceback: TracebackType | None
    ) -> None:
        self.release()


class _FileLock(DaemonLock):
    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def take(cls, path: Path) -> _FileLock:
        # Opened without truncating: a refused process must not erase the holder's name.
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open the store's lock file {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StoreHeld(refusal(holder.get("pid", "unknown"), holder.get("host", "unknown"),
                                    holder.get("started", "unknown"), sqlite=True)) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock {path}: {exc.strerror}") from None
        started = datetime.now(UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid={os.getpid()}\nhost={_host()}\nstarted={started}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is None:
            return
        # Emptied, not removed: removing a lock file races with a process opening it.
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the only descriptor releases the flock
        self._fd = None


def _read_holder(fd: int) -> dict[str, str]:
    try:
        content = os.pread(fd, 4096, 0).decode("utf-8", "replace")
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in content.splitlines() if "=" in line)


class _AdvisoryLock(DaemonLock):
    def __init__(self, url: str, engine: Engine, connection: Connection) -> None:
        self._url = url
        self._engine = engine
        self._connection: Connection | None = connection
        self._watcher: threading.Thread | None = None
        self._released = threading.Event()

    @classmethod
    def take(cls, url: str) -> _AdvisoryLock:
        name = f"{_APPLICATION} pid={os.getpid()} host={_host()}".encode()[:_APP_NAME_MAX].decode("utf-8", "ignore")
        # A connection of its own, outside any pool: the lock lives as long as it does.
        engine = create_engine(url, poolclass=NullPool, connect_args={"application_name": name})
        try:
            connection = engine.connect()
        except DBAPIError as exc:
            engine.dispose()
            raise StoreError(f"cannot reach the database {engine.url!r}: {exc.orig}") from None
        try:
            database, schema = connection.execute(
                text("SELECT current_database(), coalesce(current_schema(), '')")
            ).one()
            key = (_LOCK_CLASS, zlib.crc32(f"{database}/{schema}".encode()) & 0x7FFFFFFF)
            taken = connection.execute(text("SELECT pg_try_advisory_lock(:a, :b)"), {"a": key[0], "b": key[1]}).scalar()
            holder = None if taken else _advisory_holder(connection, key)
            connection.commit()  # the session's lock outlives the transaction; no idle-in-transaction
        except BaseException:
            connection.close()
            engine.dispose()
            raise
        if not taken:
            connection.close()
            engine.dispose()
            raise StoreHeld(refusal(*(holder or ("unknown", "unknown", "unknown")), sqlite=False))
        return cls(url, engine, connection)

    def watch(self, stop: threading.Event, interval: float = 15.0) -> None:
        """Look at the lock's connection every ``interval`` seconds from a thread of its
        own; when it was lost (the server restarted), take the lock again, or set
        ``stop`` when another process took it meanwhile."""

        def loop() -> None:
            while not self._released.wait(interval) and not stop.is_set():
                if not self._check():
                    stop.set()
                    return

        self._watcher = threading.Thread(target=loop, name="store-lock", daemon=True)
        self._watcher.start()

    def _check(self) -> bool:
        """True while this process holds the lock, or may still take it back."""
        if self._connection is not None:  # else lost earlier, not taken back yet
            try:
                self._connection.execute(text("SELECT 1")).scalar()
                self._connection.commit()
                return True
            except DBAPIError as exc:
                log.error("alert.store_lock_lost", error=str(exc.orig).strip())
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None
        try:
            retaken = _AdvisoryLock.take(self._url)
        except StoreHeld as exc:
            log.error("alert.store_lock_taken", error=exc.message, action="this gateway stops")
            self.lost = exc
            return False
        except StoreError as exc:
            log.warning("store_lock.retake_failed", error=exc.message)  # the server is still away: again later
            return True
        self._engine.dispose()
        self._engine, self._connection = retaken._engine, retaken._connection
        log.warning("store_lock.retaken")
        return True

    def release(self) -> None:
        self._released.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join()
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()  # ends the session, which releases its advisory locks
            self._connection = None
        self._engine.dispose()


def _advisory_holder(connection: Connection, key: tuple[int, int]) -> tuple[str, str, str] | None:
    """(pid, host, started) of the session holding the lock, from pg_locks and pg_stat_activity."""
    row = connection.execute(
        text(
            "SELECT a.application_name, a.backend_start FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 "
            "AND l.classid::bigint = :a AND l.objid::bigint = :b "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"a": key[0], "b": key[1]},
    ).first()
    if row is None:
        return None
    name, started = row
    found = re.fullmatch(rf"{_APPLICATION} pid=(\d+) host=(.*)", name or "")
    when = started.isoformat(timespec="seconds") if started else "unknown"
    if found is None:
        return "unknown", f"unknown (application_name {name!r})", when
    return found.group(1), found.group(2) or "unknown", when
