"""What a valid configuration needs from the machine: directories it can write, credential
files it can read, the database's driver installed.

``gateway.config`` decides what the file alone can tell; this module looks at the
filesystem and the installed packages. ``config check`` lists every problem; ``run`` and
``doctor`` stop at the first, with the same line. Nothing here creates or changes anything.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from gateway.config import Config, availability_problems
from gateway.errors import ConfigError
from gateway.store.db import missing_driver_message

def unusable_problems(config: Config) -> list[ConfigError]:
    """Everything in a configuration that ``run`` cannot use: what this version cannot do,
    then what the machine refuses."""
    return [*availability_problems(config), *environment_problems(config)]


def refuse_unusable(config: Config) -> None:
    """``run`` and ``doctor`` stop at the first problem, with the line ``config check`` prints for it."""
    problems = unusable_problems(config)
    if problems:
        raise problems[0]


def environment_problems(config: Config) -> list[ConfigError]:
    """Every problem, in the order of the configuration file; a file in the way of several
    directories is named once."""
    problems = []
    in_the_way: set[Path] = set()
    for key, path, what in _directories(config):
        problem, culprit = directory_problem(key, path, what)
        if problem is not None and culprit not in in_the_way:
            in_the_way.add(culprit)
            problems.append(problem)
    for partner in config.partners.values():
        for name in sorted(partner.credentials):
            problem = credential_problem(f"partners.{partner.name}.credentials.{name}", Path(partner.credentials[name]))
            if problem:
                problems.append(problem)
    driver = database_driver_problem(config.database_url)
    if driver:
        problems.append(driver)
    return problems


def _directories(config: Config) -> list[tuple[str, Path, str]]:
    """(key, directory, what it is for) of every directory the gateway writes into."""
    data = "gateway.data_dir"
    found = [
        (data, config.data_dir, "the data directory"),
        (data, config.quarantine_dir, "the quarantine"),
        (data, config.archive_dir, "the archive"),
        (data, config.flows_dir, "the flows directory"),
    ]
    for channel in config.channels:
        found += [
            (f"channels.{channel.name}.watch_dir", channel.watch_dir, f"channel {channel.name}'s watched directory"),
            (data, config.quarantine_dir / channel.name, f"channel {channel.name}'s quarantine"),
            (data, config.archive_dir / channel.name, f"channel {channel.name}'s archive"),
        ]
    for partner in config.partners.values():
        for name, directory in (("outbound_dir", partner.outbound_dir), ("inbound_dir", partner.inbound_dir)):
            if directory is not None:
                found.append((f"partners.{partner.name}.{name}", directory, f"partner {partner.name}'s {name}"))
    if config.sandbox.enabled:
        found.append(("sandbox.dir", config.sandbox.root, "the sandbox"))
    sqlite = _sqlite_file(config.database_url)
    if sqlite is not None:
        found.append(("gateway.database_url", sqlite.parent, "the SQLite database's directory"))
    return found


def directory_problem(key: str, path: Path, what: str) -> tuple[ConfigError | None, Path]:
    """Why the gateway could not create or write ``path`` (or None), and the path at fault.

    A missing directory is fine when its nearest existing parent is a directory the
    gateway can write: it is created on first use.
    """
    existing = path
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent
    if existing.is_symlink() and not existing.exists():
        return ConfigError(f"{existing} ({what}) is a broken symbolic link", key=key), existing
    if not existing.is_dir():
        kind = "a regular file" if existing.is_file() else "not a directory"
        where = f"{path} ({what})" if existing == path else f"{existing} (on the way to {path}, {what})"
        return ConfigError(f"{where} is {kind} where a directory is expected: move it away", key=key), existing
    if not os.access(existing, os.W_OK | os.X_OK):
        if existing == path:
            return ConfigError(f"{path} ({what}) cannot be written by this user", key=key), existing
        return ConfigError(f"{existing} cannot be written by this user, so {path} ({what}) cannot be created",
                           key=key), existing
    return None, existing


def credential_problem(key: str, path: Path) -> ConfigError | None:
    """Why the credential file ``path`` cannot be read, or None (its content is the transport's to judge)."""
    if not path.exists():
        return ConfigError(f"{path} does not exist", key=key)
    if not path.is_file():
        return ConfigError(f"{path} is not a regular file", key=key)
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        return ConfigError(f"{path} cannot be read: {exc.strerror or exc}", key=key)
    return None


def database_driver_problem(url: str) -> ConfigError | None:
    """Whether the driver of ``url`` can be imported (PostgreSQL needs the ``postgres`` extra)."""
    try:
        parsed = make_url(url)
        parsed.get_dialect().import_dbapi()
    except ArgumentError as exc:
        return ConfigError(f"{url!r} is not a database URL: {exc}", key="gateway.database_url")
    except NoSuchModuleError as exc:
        return ConfigError(f"unknown database in {url!r}: {exc}", key="gateway.database_url")
    except ImportError as exc:
        return ConfigError(missing_driver_message(parsed, exc), key="gateway.database_url")
    return None


def _sqlite_file(url: str) -> Path | None:
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).resolve()
