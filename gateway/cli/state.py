"""What every CLI command shares: the configuration, read once, and the store."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.config import Config, ensure_layout, load_config
from gateway.log import configure_logging
from gateway.store import Store


class State:
    """The options of the ``gateway`` group, resolved lazily by the subcommands."""

    def __init__(self, config_path: Path | None, data_dir: Path | None, log_format: str | None) -> None:
        self.config_path = config_path
        self.data_dir = data_dir
        self.log_format = log_format
        self._config: Config | None = None
        self._store: Store | None = None

    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path, data_dir=self.data_dir)
            configure_logging(self.log_format or self._config.log_format)
        return self._config

    def store(self) -> Store:
        if self._store is None:
            config = self.config()
            ensure_layout(config)
            self._store = Store.open(config.database_url)
        return self._store


pass_state = click.make_pass_decorator(State)
