"""Issue 13: an intake that never reads half a file, and loses nothing in quarantine.

Exports are taken only once complete (strategies settle, rename and done-file), claimed
before they are read, archived as read; names of any length or bytes, links and exports
that vanish never stop a pass; quarantined files never overwrite each other, and a fixed
invoice takes the place of the held-back one.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog

from cli_runner import PROJECT, gateway
from gateway.clock import FixedClock, SystemClock
from gateway.config import Config, default_config, ensure_layout, load_config, write_starter
from gateway.errors import ConfigError, StoreError
from gateway.intake import files
from gateway.intake.readers import read_export
from gateway.intake.sample import write_sample_export
from gateway.pipeline import PassSummary, Pipeline
from gateway.store import Store, db


def _site(tmp_path: Path, more: str = "", *, settle: str = "0") -> tuple[Path, dict[str, str]]:
    """What `gateway init` makes (written here: one process less), files taken at once."""
    config = write_starter(tmp_path / "site")
    config.write_text(config.read_text().replace("settle_seconds = 2", f"settle_seconds = {settle}") + more)
    return config, {"GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'g.db'}"}


def _export(path: Path, prefix: str, count: int = 2, *, broken: tuple[int, ...] = (), seed: int = 1) -> bytes:
    """A sample export whose invoices at the positions ``broken`` have a unit price that
    is not a number (held back at reading). Returns its bytes."""
    staging = io.StringIO()
    with tempfile.TemporaryDirectory() as directory:
        sample = Path(directory) / "sample.csv"
        write_sample_export(sample, count, seed=seed, with_errors=False, number_prefix=prefix)
        rows = list(csv.reader(sample.read_text(encoding="utf-8").splitlines(), delimiter=";"))
    numbers = sorted({row[0] for row in rows[1:]})
    price = rows[0].index("unit_price")
    for row in rows[1:]:
        if numbers.index(row[0]) in broken:
            row[price] = "12.5O"
    csv.writer(staging, delimiter=";", lineterminator="\n").writerows(rows)
    data = staging.getvalue().encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def _split_after_first_invoice(data: bytes) -> tuple[bytes, bytes]:
    lines = data.splitlines(keepends=True)
    first = lines[1].split(b";")[0]
    cut = next(i for i, line in enumerate(lines[1:], start=1) if not line.startswith(first + b";"))
    return b"".join(lines[:cut]), b"".join(lines[cut:])


def _invoices(env: dict[str, str]) -> list[tuple[str, str]]:
    """(number, status) of every invoice in the store, sorted."""
    store = Store(db.make_engine(env["GATEWAY_DATABASE_URL"]))
    try:
        with store.transaction() as tx:
            return sorted((i.invoice_number or "", i.status) for i in tx.list_invoices())
    finally:
        store.close()


def _wait_for(condition: Callable[[], bool], what: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


# -- settle: the daemon and a writer that pauses ----------------------------------

SHARE_CHANNEL = """
[channels.share]
watch_dir = "inbox/share"
partner = "sandbox"
settle_seconds = 0
watch = "poll"
"""


def test_the_daemon_leaves_an_export_alone_while_its_writer_holds_it_open(tmp_path: Path) -> None:
    """The ERP writes one invoice, pauses at a line boundary with the file open (its mtime
    long past settle_seconds), then writes two more and closes it: no pass takes the file
    while it is open, and once closed all three invoices are taken and the archive holds
    the whole file. A channel with watch = "poll" is taken too."""
    config, env = _site(tmp_path, SHARE_CHANNEL, settle="1")
    config.write_text(config.read_text().replace("poll_seconds = 5", "poll_seconds = 0.3"))
    inbox = tmp_path / "site" / "inbox"
    whole = _export(tmp_path / "whole.csv", "OPEN", 3)
    first, rest = _split_after_first_invoice(whole)
    _export(inbox / "share" / "shared.csv", "SHARE", 1)
    export = inbox / "erp" / "export.csv"
    writer = export.open("wb")
    writer.write(first)
    writer.flush()
    long_ago = time.time() - 3600
    os.utime(export, (long_ago, long_ago))

    log = tmp_path / "daemon.log"
    with log.open("w") as stderr:
        daemon = subprocess.Popen([sys.executable, "-m", "gateway", "--config", str(config), "run"],
                                  env={**os.environ, **env}, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=stderr)
    store = Store(db.make_engine(env["GATEWAY_DATABASE_URL"]))

    def numbers() -> list[str]:
        try:
            with store.transaction() as tx:
                return sorted(i.invoice_number or "" for i in tx.list_invoices())
        except StoreError:  # the daemon has not created its schema yet
            return []

    try:
        _wait_for(lambda: log.read_text().count('"intake.file_being_written"') >= 2, "two passes")
        _wait_for(lambda: "SHARE-2026-000001" in numbers(), "the polled channel's export")
        assert export.read_bytes() == first  # left where the ERP is writing it
        assert not [n for n in numbers() if n.startswith("OPEN")]

        writer.write(rest)
        writer.close()
        _wait_for(lambda: len([n for n in numbers() if n.startswith("OPEN")]) == 3, "the three invoices")
    finally:
        writer.close()
        store.close()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    [archived] = (tmp_path / "site" / "archive" / "erp").iterdir()
    assert archived.read_bytes() == whole
    assert not export.exists()
    assert daemon.returncode == 0, log.read_text()


# -- rename and done-file ----------------------------------------------------------

STRATEGY_CHANNELS = """
[channels.renamed]
watch_dir = "inbox/renamed"
partner = "sandbox"
completion = "rename"
settle_seconds = 3600

[channels.marked]
watch_dir = "inbox/marked"
partner = "sandbox"
completion = "done-file"
settle_seconds = 3600
"""


def test_rename_and_done_file_channels_take_an_export_only_once_complete(tmp_path: Path) -> None:
    """rename: x.csv.tmp waits and x.csv is taken at once (no settling); done-file: x.csv
    waits for x.csv.done or x.done, and the marker is archived with it."""
    config, env = _site(tmp_path, STRATEGY_CHANNELS)
    inbox = tmp_path / "site" / "inbox"
    for name in ("renamed", "marked"):
        (inbox / name).mkdir(parents=True, exist_ok=True)
    _export(inbox / "renamed" / "a.csv.tmp", "RA", 1)
    _export(inbox / "renamed" / "b.csv", "RB", 1)
    _export(inbox / "marked" / "c.csv", "MC", 1)
    _export(inbox / "marked" / "d.csv", "MD", 1)
    (inbox / "marked" / "d.csv.done").touch()

    first = json.loads(gateway("--config", str(config), "run", "--once", env=env).stdout)
    assert first["files"] == {"processed": 2}
    assert sorted(p.name for p in (inbox / "renamed").iterdir()) == ["a.csv.tmp"]
    assert sorted(p.name for p in (inbox / "marked").iterdir()) == ["c.csv"]

    (inbox / "renamed" / "a.csv.tmp").rename(inbox / "renamed" / "a.csv")
    (inbox / "marked" / "c.done").touch()
    second = json.loads(gateway("--config", str(config), "run", "--once", env=env).stdout)
    assert second["files"] == {"processed": 2}
    assert [p.name for p in (inbox / "renamed").iterdir()] == []
    assert [p.name for p in (inbox / "marked").iterdir()] == []
    archived = sorted(p.name.split("_")[-1] for p in (tmp_path / "site" / "archive" / "marked").iterdir())
    assert archived == ["c.csv", "c.done", "d.csv", "d.csv.done"]
    assert [number[:2] for number, _ in _invoices(env)] == ["MC", "MD", "RA", "RB"]


def test_completion_and_watch_are_checked_with_their_key(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    for key, value in (("completion", "inotify"), ("watch", "rename")):
        config.write_text(f'[channels.erp]\npartner = "sandbox"\n{key} = "{value}"\n'
                          '[partners.sandbox]\ntransport = "local"\npartner_code = "AAA123"\n'
                          'outbound_dir = "o"\ninbound_dir = "i"\n')
        with pytest.raises(ConfigError) as raised:
            load_config(config, env={})
        assert raised.value.message.startswith(f"channels.erp.{key}: must be ")


# -- names, links and other hostile entries --------------------------------------


def test_odd_names_links_and_fifos_never_stop_a_pass(tmp_path: Path) -> None:
    """Through `gateway run --once`: a 250-byte name, a newline and bytes that are not UTF-8
    in names are taken, their names escaped in the store, the one-line reasons and the
    log; a symbolic link to /etc/passwd, a hard link to a file outside the channel and a
    FIFO are refused without being read."""
    config, env = _site(tmp_path)
    inbox = tmp_path / "site" / "inbox" / "erp"
    long_name = "x" * 246 + ".csv"
    _export(inbox / long_name, "LONG", 2, broken=(1,))
    _export(inbox / "line\nbreak.csv", "NL", 2, broken=(0,))
    _export(Path(os.fsdecode(os.fsencode(str(inbox)) + b"/caf\xe9.csv")), "LATIN", 1)
    (inbox / "passwd.csv").symlink_to("/etc/passwd")
    outside = tmp_path / "outside.csv"
    _export(outside, "OUT", 1)
    os.link(outside, inbox / "linked.csv")
    os.mkfifo(inbox / "pipe.csv")

    run = gateway("--config", str(config), "run", "--once", env=env)
    assert json.loads(run.stdout)["files"] == {"processed": 3, "quarantined": 3}
    logged = [json.loads(line) for line in run.stderr.splitlines()]  # log lines only, no traceback
    assert "root:" not in run.stderr
    assert os.listdir(inbox) == []

    quarantine = tmp_path / "site" / "quarantine" / "erp"
    reasons = {path.name: path.read_text(encoding="utf-8") for path in quarantine.glob("*.reason")}
    assert all(text.count("\n") == 1 for text in reasons.values()), reasons
    assert all(len(os.fsencode(name)) <= 255 for name in os.listdir(quarantine))
    refused = sorted(text for text in reasons.values() if "refused without being read" in text)
    assert [text.split(" ", 1)[0] for text in refused] == ["linked.csv", "passwd.csv", "pipe.csv"]
    assert "hard links" in refused[0] and "symbolic link (to '/etc/passwd')" in refused[1] and "FIFO" in refused[2]
    assert not any("root:" in text for text in reasons.values())
    assert (quarantine / next(n for n in os.listdir(quarantine) if n.endswith("_passwd.csv"))).is_symlink()
    [newline_reason] = [text for text in reasons.values() if text.startswith("line\\nbreak.csv, line 2")]
    assert "field 'unit_price'" in newline_reason
    [long_reason] = [text for name, text in reasons.items() if name.startswith("xxxx") and ".line" in name]
    assert long_reason.startswith(long_name + ", line ")

    assert _invoices(env) == [
        ("LATIN-2026-000001", "integrated"), ("LONG-2026-000001", "integrated"),
        ("LONG-2026-000002", "quarantined"), ("NL-2026-000001", "quarantined"), ("NL-2026-000002", "integrated")]
    files = {entry["file"] for entry in logged if entry["event"] == "intake.file_processed"}
    assert files == {long_name, "line\\nbreak.csv", "caf\\xe9.csv"}
    archived = sorted(name.split("_", 2)[2] for name in os.listdir(tmp_path / "site" / "archive" / "erp"))
    assert archived[:2] == ["caf\\xe9.csv", "line\\nbreak.csv"]
    assert archived[2].startswith("xxxx") and archived[2].endswith("x.csv") and "~" in archived[2]


# -- claimed, read, archived: in a pipeline of this process -----------------------


@pytest.fixture
def pipeline(tmp_path: Path, database_url: str) -> Iterator[Pipeline]:
    """The embedded defaults' channel, with completion "rename": the test itself plays the
    ERP, and its own open handles would make "settle" wait."""
    base = default_config(tmp_path / "data")
    channels = tuple(dataclasses.replace(c, completion="rename") for c in base.channels)
    config = dataclasses.replace(base, channels=channels, sandbox=dataclasses.replace(base.sandbox, enabled=False),
                                 database_url=database_url)
    ensure_layout(config)
    if database_url.startswith("postgresql"):
        engine = db.make_engine(database_url)
        db.upgrade(engine)
        engine.dispose()
    store = Store.open(config.database_url)
    pipeline = Pipeline(config=config, store=store, clock=SystemClock())
    yield pipeline
    pipeline.close()
    store.close()


def _intake(pipeline: Pipeline) -> tuple[PassSummary, list[dict]]:
    summary = PassSummary()
    with structlog.testing.capture_logs() as logs:
        pipeline.intake_channel(pipeline.config.channels[0], summary)
    return summary, logs


def test_the_archive_holds_the_bytes_read_and_a_vanished_export_is_passed_over(pipeline: Pipeline) -> None:
    """The ERP, which still holds a.csv open, appends an invoice to it while the gateway
    reads it, and removes b.csv before the gateway claims it: the archive holds exactly the
    bytes read (their sha256 is the one recorded), the changed file is kept beside it with
    an alert, and the pass goes on past b.csv."""
    config: Config = pipeline.config
    inbox = config.channels[0].watch_dir
    read = _export(inbox / "a.csv", "READ", 2)
    late = _export(config.data_dir / "late.csv", "LATE", 1).split(b"\n", 1)[1]
    _export(inbox / "b.csv", "GONE", 1)
    erp = (inbox / "a.csv").open("ab")
    validate = pipeline.gate.validate

    def validate_while_the_erp_writes(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the real one, called
        if not erp.closed:
            erp.write(late)
            erp.close()
            (inbox / "b.csv").unlink()
        return validate(*args, **kwargs)

    pipeline.gate.validate = validate_while_the_erp_writes  # type: ignore[method-assign]
    summary, logs = _intake(pipeline)

    assert summary.files == {"processed": 1, "vanished": 1}
    with pipeline.store.transaction() as tx:
        [source] = tx.source_files()
        assert sorted(i.invoice_number for i in tx.list_invoices()) == ["READ-2026-000001", "READ-2026-000002"]
    archive = config.archive_dir / "erp"
    [kept, changed] = sorted(archive.iterdir(), key=lambda path: path.name.endswith(".changed"))
    assert kept.read_bytes() == read and hashlib.sha256(read).hexdigest() == source.sha256
    assert changed.name == kept.name + ".changed" and changed.read_bytes() == read + late
    [alert] = [entry for entry in logs if entry["event"] == "alert.export_changed_while_read"]
    assert (alert["read"], alert["changed"]) == (str(kept), str(changed))
    [vanished] = [entry for entry in logs if entry["event"] == "intake.file_vanished"]
    assert vanished["file"] == "b.csv"
    assert [p for p in (config.processing_dir / "erp").rglob("*") if p.is_file()] == []


def test_exports_left_claimed_by_a_crash_are_taken_once(pipeline: Pipeline) -> None:
    """A crash after the claim leaves the export in processing/; one after the commit also
    leaves it there: the next pass reads the first and only archives the second."""
    config = pipeline.config
    claims = config.processing_dir / "erp"
    _export(config.channels[0].watch_dir / "recorded.csv", "DONE", 2)
    _intake(pipeline)
    [archived] = (config.archive_dir / "erp").iterdir()
    claims.mkdir(parents=True, exist_ok=True)
    os.replace(archived, claims / "recorded.csv")
    _export(claims / "claimed.csv", "LEFT", 1)

    summary, logs = _intake(pipeline)
    assert [entry["file"] for entry in logs if entry["event"] == "intake.claimed_file_resumed"] == [
        "recorded.csv", "claimed.csv"]
    assert summary.files == {"processed": 1, "already processed": 1}
    with pipeline.store.transaction() as tx:
        numbers = sorted(i.invoice_number for i in tx.list_invoices())
    assert numbers == ["DONE-2026-000001", "DONE-2026-000002", "LEFT-2026-000001"]
    assert [p for p in claims.rglob("*") if p.is_file()] == []


def test_quarantine_keeps_every_file_and_a_fixed_invoice_replaces_the_held_back_one(pipeline: Pipeline) -> None:
    """daily.csv twice within the same second, each with a held-back invoice Q-…01, and
    broken.csv twice, unreadable each time: four quarantined files, none overwritten. The
    second Q-…01 replaces the first in the list of invoices to fix (state corrected), and
    the fixed one, exported again under another name, replaces the second."""
    config = pipeline.config
    inbox = config.channels[0].watch_dir
    pipeline.clock = FixedClock(datetime(2026, 11, 2, 8, 30, tzinfo=UTC))
    quarantine = config.quarantine_dir / "erp"
    days = []
    for seed in (1, 2):
        days.append(_export(inbox / "daily.csv", "Q", 1, broken=(0,), seed=seed))
        (inbox / "broken.csv").write_text(f"invoice_number;issue_date\nF-{seed};2026-11-02\n")
        summary, _ = _intake(pipeline)
        assert summary.files == {"processed": 1, "quarantined": 1}

    held = sorted(quarantine.glob("daily.file*.line2.csv"))
    assert len(held) == 2 and [p.read_bytes() for p in held] != [held[0].read_bytes()] * 2
    assert all(p.with_name(p.name + ".reason").is_file() for p in held)
    whole = sorted(quarantine.glob("*_broken.csv"))
    assert [p.read_text().split("\n")[1] for p in whole] == ["F-1;2026-11-02", "F-2;2026-11-02"]

    def quarantined() -> list[tuple[int, int | None]]:
        with pipeline.store.transaction() as tx:
            return [(i.id, i.corrects_id) for i in tx.find_invoices(status="quarantined")]

    [(second, first)] = quarantined()
    assert first is not None and first < second
    fixed = days[1].replace(b"12.5O", b"12.50")
    (inbox / "fixed-by-the-erp.csv").write_bytes(fixed)
    _intake(pipeline)
    assert quarantined() == []
    with pipeline.store.transaction() as tx:
        [replacement] = [i for i in tx.find_invoices(number="Q-2026-000001") if i.status == "valid"]
        statuses = {i.id: i.status for i in tx.find_invoices(number="Q-2026-000001")}
        events = [(e.code, e.label) for e in tx.status_events(invoice_id=second)]
    assert replacement.corrects_id == second
    assert statuses == {first: "corrected", second: "corrected", replacement.id: "valid"}
    assert events[-1] == ("corrected", f"corrected by invoice #{replacement.id}")


def test_the_sample_export_of_the_docs_is_the_generators_and_reads_clean(tmp_path: Path) -> None:
    """docs/examples/erp-export.csv: what `write_sample_export(path, 3, seed=1,
    with_errors=False)` writes (regenerate it so if the generator changes); every
    invoice reads."""
    example = PROJECT / "docs" / "examples" / "erp-export.csv"
    write_sample_export(tmp_path / "erp-export.csv", 3, seed=1, with_errors=False)
    assert example.read_bytes() == (tmp_path / "erp-export.csv").read_bytes()
    assert [type(record).__name__ for record in read_export(example, "csv")] == ["ExportedInvoice"] * 3


def test_a_hard_link_is_refused_unless_its_other_name_is_a_temporary_one_beside_it(tmp_path: Path) -> None:
    """A writer that links its temporary file to the final name, then unlinks it, is
    waited for; a link to a file elsewhere is refused."""
    outside = tmp_path / "outside.csv"
    outside.write_text("root:x:0:0\n")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "x.csv.tmp").write_text("invoice_number\n")
    os.link(inbox / "x.csv.tmp", inbox / "x.csv")
    os.link(outside, inbox / "y.csv")
    [refused] = files.list_entries(inbox)
    assert refused.path.name == "y.csv" and refused.refusal and "2 hard links" in refused.refusal
    (inbox / "x.csv.tmp").unlink()
    assert [(e.path.name, e.refusal) for e in files.list_entries(inbox)][0] == ("x.csv", None)
