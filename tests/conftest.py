"""Shared fixtures: a database URL for each store backend, and the shared corpus."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sshd import SshdServer, sshd_available

from gateway.store import Store, db

PROJECT = Path(__file__).resolve().parent.parent
CORPUS = PROJECT.parent / "shared" / "corpus"
POSTGRES_URL = os.environ.get("GATEWAY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _postgres_or_skip() -> None:
    try:
        engine = sa.create_engine(POSTGRES_URL)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means "no server here"
        if os.environ.get("GATEWAY_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL required but unreachable at {POSTGRES_URL}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {POSTGRES_URL}")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped after the test."""
    _postgres_or_skip()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gateway.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus is absent")
    return CORPUS


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshdServer]:
    """A real OpenSSH sshd on a free loopback port (tests/sshd.py), stopped afterwards.
    Skipped when sshd is not installed, except in CI, where .ci/run installs it."""
    if not sshd_available():
        if os.environ.get("CI"):
            pytest.fail("sshd is required in CI (.ci/run installs openssh-server)")
        pytest.skip("OpenSSH sshd is not installed")
    server = SshdServer(tmp_path / "sshd")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def open_store() -> Iterator[Callable[[str], Store]]:
    """Stores at head on a URL (PostgreSQL is migrated on purpose, never on open); every
    engine is disposed after the test."""
    opened: list[Store] = []

    def _open(url: str) -> Store:
        engine = db.make_engine(url)
        db.upgrade(engine)
        opened.append(Store(engine))
        return opened[-1]

    yield _open
    for store in opened:
        store.close()
