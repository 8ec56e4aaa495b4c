"""What every CLI command shares: the configuration, read once, and the store."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from rich.console import Console

from gateway.config import ENV_CONFIG, ENV_DATA_DIR, ENV_DATABASE_URL, Config, ensure_layout, load_config
from gateway.log import configure_logging
from gateway.store import Store
from gateway.store.db import NoStore

#: Width of a table written to a pipe or a file: wide enough that no row is folded, so that
#: `grep` and `awk` see one row per line (rich would otherwise fold at 80 columns).
PIPE_WIDTH = 100_000


class State:
    """The options of the ``gateway`` group, resolved lazily by the subcommands."""

    def __init__(self, config_path: Path | None, data_dir: Path | None, log_format: str | None) -> None:
        self.config_path = config_path
        self.data_dir = data_dir
        self.log_format = log_format
        self._config: Config | None = None
        self._store: Store | None = None
        self._read_store: Store | None = None

    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path, data_dir=self.data_dir)
            configure_logging(self.log_format or self._config.log_format)
        return self._config

    def store(self) -> Store:
        """The store for a command that writes: created and migrated as needed."""
        if self._store is None:
            config = self.config()
            ensure_layout(config)
            self._store = Store.open(config.database_url)
        return self._store

    def read_store(self) -> Store:
        """The store for a command that only reads: it creates nothing (no directory, no
        database), migrates nothing, and answers from a read-only copy or role."""
        if self._read_store is None:
            config = self.config()
            try:
                self._read_store = Store.open_read_only(config.database_url)
            except NoStore as exc:
                raise NoStore(self._no_store(exc)) from None
        return self._read_store

    def points_at_a_store(self) -> bool:
        """Whether the operator said which store (an option or the environment), rather
        than the embedded default in the current directory."""
        return bool(self.config_path or self.data_dir or os.environ.get(ENV_CONFIG) or os.environ.get(ENV_DATA_DIR)
                    or os.environ.get(ENV_DATABASE_URL))

    def _no_store(self, exc: NoStore) -> str:
        if not self.points_at_a_store():
            return f"no gateway store here (give --config or --data-dir): {exc.message}"
        return (f"no gateway store ({exc.message}): check --config and --data-dir; if nothing has run with "
                "this configuration yet, `gateway db upgrade` creates the store")


def output_console() -> Console:
    """Rich's console for tables: on a terminal, its width; to a pipe, one row per line."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=PIPE_WIDTH)


pass_state = click.make_pass_decorator(State)
