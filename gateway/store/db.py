"""Engine creation and schema migrations (Alembic), for SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
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
