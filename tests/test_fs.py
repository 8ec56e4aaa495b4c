"""gateway.fs: the one atomic write and the one list of temporary names."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from gateway import fs


def test_a_file_written_atomically_replaces_the_old_one_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "FSO1100A_AAA123_flow.tar.gz"
    target.write_bytes(b"old")
    fs.write_atomically(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")

    def no_space(_descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space"):
        fs.write_atomically(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_shared_writers_of_one_target_each_write_whole(tmp_path: Path) -> None:
    """Two processes compiling the same cache entry: every rename puts a whole file in place."""
    target = tmp_path / "PEPPOL-EN16931-UBL.0123456789abcdef.xslt"
    data = b"<xsl:stylesheet/>" * 50_000
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for _ in range(5):
                fs.write_atomically(target, data, shared=True)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert target.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_every_reader_skips_the_names_the_gateway_writes_under() -> None:
    written = fs.temporary_name("FSO1106A_AAA123_flow.tar.gz")
    assert fs.is_temporary(written)
    assert not fs.is_temporary("FSO1106A_AAA123_flow.tar.gz")
