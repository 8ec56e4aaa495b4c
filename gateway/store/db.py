"""Engine creation and schema migrations (Alembic), for SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import NullPool

from gateway.errors import StoreError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets foreign keys, WAL and a busy timeout."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"database URL {url!r} is not valid: {exc}") from None
    try:
        if parsed.get_backend_name() == "sqlite":
            if parsed.database:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, poolclass=NullPool)
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except ImportError as exc:  # the driver: SQLAlchemy imports it when the engine is made
        raise StoreError(missing_driver_message(parsed, exc)) from None


def missing_driver_message(url: URL, exc: ImportError) -> str:
    """What to install when the driver of ``url`` cannot be imported."""
    module = exc.name or str(exc)
    if url.get_backend_name() == "postgresql":
        if url.get_driver_name() != "psycopg":
            return (f"the PostgreSQL driver {module} is not installed; the gateway uses psycopg 3: write the URL "
                    "postgresql+psycopg://… and pip install 'chorus-gateway[postgres]'")
        if isinstance(exc, ModuleNotFoundError):
            return f"the PostgreSQL driver {module} is not installed: pip install 'chorus-gateway[postgres]'"
        return f"the PostgreSQL driver psycopg cannot be loaded ({exc}): pip install 'chorus-gateway[postgres]'"
    return f"the database driver {module} of {url.drivername} cannot be imported: {exc}"


class NoStore(StoreError):
    """No gateway store where the configuration points: nothing has created it yet."""


def make_read_only_engine(url: str) -> Engine:
    """An engine that can only read, and creates nothing: not the database, not its directory.

    For the read commands, which must answer from a store they may not write: a copy of
    the SQLite file in a read-only directory, a PostgreSQL role granted SELECT only.
    Raises ``NoStore`` when the SQLite file does not exist.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"database URL {url!r} is not valid: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        path = Path(database)
        if database in ("", ":memory:") or not path.is_file():
            raise NoStore(f"{database or 'an in-memory database'} does not exist")
        uri = path.resolve().as_uri()
        # A file nobody may write (0444) is a copy or a backup: read as it is, with no
        # -wal/-shm beside it, even for root, whom the directory's mode does not stop.
        copy = not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
        return create_engine(url, poolclass=NullPool, creator=lambda: _open_sqlite_read_only(uri, immutable=copy))
    try:
        engine = create_engine(url, pool_pre_ping=True)
    except ImportError as exc:
        raise StoreError(missing_driver_message(parsed, exc)) from None
    event.listen(engine, "connect", _postgresql_read_only)
    return engine


def _open_sqlite_read_only(uri: str, *, immutable: bool) -> sqlite3.Connection:
    """``mode=ro``, which still sees what a running gateway commits; where that cannot open
    (a WAL database in a directory this user cannot write: SQLite cannot create the
    ``-shm`` file), ``immutable=1``, which reads the file as it is, without locks: right for
    a copy or a backup, which nothing writes meanwhile."""
    for query in ("mode=ro&immutable=1",) if immutable else ("mode=ro", "mode=ro&immutable=1"):
        connection = sqlite3.connect(f"{uri}?{query}", uri=True, check_same_thread=False, timeout=30)
        try:
            connection.execute("PRAGMA query_only=ON")
            connection.execute("SELECT count(*) FROM sqlite_master").fetchall()
        except sqlite3.OperationalError as exc:
            connection.close()
            if "immutable" not in query and exc.sqlite_errorname.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")):
                continue
            raise
        return connection
    raise AssertionError("unreachable: the last attempt returns or raises")


def _postgresql_read_only(dbapi_connection, _record) -> None:  # noqa: ANN001 (DBAPI objects)
    # Defence in depth: whatever a read command runs, the server refuses to write it.
    cursor = dbapi_connection.cursor()
    cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    cursor.close()
    dbapi_connection.commit()


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 (DBAPI objects)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _alembic_config() -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head() or ""


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except OperationalError as exc:
        raise StoreError(f"cannot reach the database {engine.url!r}: {exc.orig}") from None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to ``revision``."""
    config = _alembic_config()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except OperationalError as exc:
        raise StoreError(f"cannot migrate the database {engine.url!r}: {exc.orig}") from None


def require_current_schema(engine: Engine) -> None:
    """Refuse a store whose schema is not this gateway's, without changing it (read commands)."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if current is None:
        raise NoStore(f"{engine.url.render_as_string(hide_password=True)} has no gateway schema")
    try:
        ScriptDirectory.from_config(_alembic_config()).get_revision(current)
    except CommandError:
        raise StoreError(
            f"the store is at revision {current}, which this gateway does not know (it needs {head}): "
            "a newer gateway wrote it; run that version"
        ) from None
    raise StoreError(f"the store is at revision {current}, this gateway needs {head}: run `gateway db upgrade`")


def ensure_schema(engine: Engine) -> None:
    """Bring a SQLite database to head; refuse a PostgreSQL one that is behind.

    SQLite is the embedded default, created on first use. A shared PostgreSQL is
    migrated on purpose by an operator (``gateway db upgrade``), never as a side effect.
    """
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if engine.dialect.name == "sqlite":
        upgrade(engine)
        return
    raise StoreError(
        f"the database is at revision {current or 'none'}, the gateway needs {head}: run `gateway db upgrade`"
    )
