"""Local directory transport: a directory is the partner (the sandbox, tests, a share)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from gateway.errors import TransportError
from gateway.fs import is_temporary, write_atomically
from gateway.transport.base import Delivery


class LocalTransport:
    kind = "local"

    def __init__(self, outbound_dir: Path, inbound_dir: Path, *, peer: str) -> None:
        self.outbound_dir = outbound_dir
        self.inbound_dir = inbound_dir
        self.done_dir = inbound_dir / "done"
        self.peer = peer

    def deposit(self, name: str, data: bytes) -> Delivery:
        target = self.outbound_dir / name
        try:
            self.outbound_dir.mkdir(parents=True, exist_ok=True)
            write_atomically(target, data)
        except OSError as exc:
            raise TransportError(f"cannot write {target}: {exc.strerror}", peer=self.peer) from exc
        return Delivery(f"{target} size={len(data)} sha256={hashlib.sha256(data).hexdigest()}")

    def remote_size(self, name: str) -> int | None:
        target = self.outbound_dir / name
        return target.stat().st_size if target.is_file() else None

    def list_reports(self) -> list[str]:
        if not self.inbound_dir.is_dir():
            return []
        return sorted(
            entry.name for entry in self.inbound_dir.iterdir() if entry.is_file() and not is_temporary(entry.name)
        )

    def fetch_report(self, name: str) -> bytes:
        try:
            return (self.inbound_dir / name).read_bytes()
        except OSError as exc:
            raise TransportError(f"cannot read {name}: {exc.strerror}", peer=self.peer) from exc

    def acknowledge_report(self, name: str) -> None:
        self.done_dir.mkdir(parents=True, exist_ok=True)
        try:
            shutil.move(str(self.inbound_dir / name), str(self.done_dir / name))
        except OSError as exc:
            raise TransportError(f"cannot move {name} to {self.done_dir}: {exc.strerror}", peer=self.peer) from exc

    def close(self) -> None:
        """Nothing to release: no connection."""
