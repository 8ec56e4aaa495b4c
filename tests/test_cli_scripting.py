"""What operators script against (issue 13): exit codes, `--json` on every command that
prints a result, read commands that create and change nothing, tables that survive a pipe."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from cli_runner import gateway
from conftest import POSTGRES_URL
from gateway.cli import cli
from gateway.config import write_starter
from gateway.domain import Syntax
from gateway.intake.sample import write_sample_export
from gateway.store import db
from gateway.validation_gate import reference_invoice


def test_read_commands_create_nothing_and_migrate_nothing(tmp_path: Path) -> None:
    """Today a query in the wrong directory creates ./gateway-data/gateway.db and answers
    "nothing", and a store of an older schema is migrated by whoever reads it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = gateway("flows", "list", cwd=elsewhere, check=False)
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("error: no gateway store here (give --config or --data-dir)"), result.stderr
    # doctor says so too, and still checks the validators (with the built-in rule sets).
    doctor = gateway("doctor", "--json", cwd=elsewhere, check=False)
    checks = {(c["subject"], c["check"]): c for c in json.loads(doctor.stdout)}
    assert checks[("gateway", "store")]["status"] == "warning"
    assert "no gateway store here" in checks[("gateway", "store")]["detail"]
    assert checks[("channel:erp", "validator")]["status"] == "ok"
    assert list(elsewhere.iterdir()) == []

    behind = tmp_path / "behind"
    db.upgrade(db.make_engine(f"sqlite:///{behind / 'gateway.db'}"), "0003")
    result = gateway("--data-dir", str(behind), "invoices", "list", "--json", check=False)
    assert result.returncode == 1
    assert (f"error: the store is at revision 0003, this gateway needs {db.head_revision()}: "
            "run `gateway db upgrade`") in result.stderr
    assert db.current_revision(db.make_engine(f"sqlite:///{behind / 'gateway.db'}")) == "0003"
    assert not (behind / "inbox").exists() and not (behind / "quarantine").exists()


@pytest.fixture
def read_only_url(tmp_path: Path, database_url: str) -> Iterator[tuple[str, str]]:
    """(the URL the gateway writes with, a URL to the same store that can only read, once
    ``_make_read_only`` has run): a 0444 copy of the SQLite file in a 0555 directory, or a
    role granted SELECT only (roles belong to the server: dropped after the test)."""
    if database_url.startswith("sqlite"):
        copy = tmp_path / "copy"
        yield database_url, f"sqlite:///{copy / 'gateway.db'}"
        if copy.exists():
            copy.chmod(0o755)  # so that pytest can remove tmp_path
        return
    role = f"reader_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE ROLE "{role}" LOGIN'))
    try:
        yield database_url, sa.engine.make_url(database_url).set(username=role).render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP OWNED BY "{role}"'))
            connection.execute(sa.text(f'DROP ROLE "{role}"'))
        admin.dispose()


def _make_read_only(tmp_path: Path, writer_url: str, reader_url: str) -> None:
    """Freeze the store the gateway wrote: copy and chmod it, or grant the role SELECT."""
    if writer_url.startswith("sqlite"):
        copy = tmp_path / "copy"
        copy.mkdir()
        shutil.copyfile(writer_url.removeprefix("sqlite:///"), copy / "gateway.db")
        (copy / "gateway.db").chmod(0o444)
        copy.chmod(0o555)
        return
    schema = writer_url.rsplit("%3D", 1)[1]  # conftest's search_path option
    role = sa.engine.make_url(reader_url).username
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"'))
        connection.execute(sa.text(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"'))
    admin.dispose()


def _tree(root: Path) -> dict[str, int]:
    return {str(path.relative_to(root)): path.stat().st_mtime_ns for path in sorted(root.rglob("*"))}


def test_a_read_only_store_answers_every_read_command(tmp_path: Path, read_only_url: tuple[str, str]) -> None:
    """Today every read command creates the data directory's layout (and opens SQLite for
    writing): a read-only copy, or a SELECT-only role's data directory, is written into."""
    writer_url, reader_url = read_only_url
    site = tmp_path / "site"
    config = write_starter(site)
    config.write_text(config.read_text().replace("settle_seconds = 2", "settle_seconds = 0"))
    write_sample_export(site / "inbox" / "erp" / "export.csv", 2, with_errors=False)
    env = {"GATEWAY_DATABASE_URL": writer_url}
    if writer_url.startswith("postgresql"):
        engine = db.make_engine(writer_url)
        db.upgrade(engine)  # what `gateway db upgrade` does
        engine.dispose()
    sent = json.loads(gateway("--config", str(config), "run", "--once", env=env).stdout)["flows_sent"]
    _make_read_only(tmp_path, writer_url, reader_url)
    invoice = tmp_path / "invoice.xml"
    invoice.write_bytes(reference_invoice(Syntax.UBL))

    # A data directory of its own, made read-only too: nothing may appear in it.
    data = tmp_path / "reader"
    data.mkdir()
    before = _tree(tmp_path / "copy") if reader_url.startswith("sqlite") else {}
    data.chmod(0o555)
    reader = ["--data-dir", str(data)]
    env = {"GATEWAY_DATABASE_URL": reader_url}

    def read(*args: str, code: int = 0) -> object:
        result = gateway(*reader, *args, env=env, check=False)
        assert result.returncode == code, (args, result.stderr)
        return json.loads(result.stdout)

    try:
        assert [flow["flow_id"] for flow in read("flows", "list", "--json")] == sent
        assert read("invoices", "show", "1", "--json")["status"] == "integrated"
        assert read("rules", "list", "--json")["rule_sets"]
        [verdict] = read("validate", "--json", str(invoice))
        assert verdict["valid"] is True
    finally:
        data.chmod(0o755)
    assert list(data.iterdir()) == []
    if reader_url.startswith("sqlite"):
        assert _tree(tmp_path / "copy") == before  # no -wal, no -shm, not a byte written


def _free_port_refusing() -> socket.socket:
    """A bound socket that never listens: connecting to its port is refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def test_run_once_exit_code_names_what_went_wrong_and_tables_keep_one_row_per_line(tmp_path: Path) -> None:
    """Today `run --once` exits 0 whatever happened, `reports overdue` exits 0 with flows
    listed, `validate --json` is a usage error and a table piped to grep is folded at 80
    columns."""
    refusing = _free_port_refusing()
    port = refusing.getsockname()[1]
    key = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{port} {key}\n")
    (tmp_path / "password").write_text("secret\n")
    config = tmp_path / "gateway.toml"
    config.write_text(f"""
[sandbox]
enabled = true
dir = "sandbox"
partner_code = "AAA123"
scenario = "silent"

[partners.sandbox]
transport = "local"
partner_code = "AAA123"
outbound_dir = "sandbox/inbox"
inbound_dir = "sandbox/outbox"
report_deadline_hours = 0.000000001

[partners.remote]
transport = "sftp"
partner_code = "BBB123"
endpoint = "sftp://edi@127.0.0.1:{port}"
max_attempts = 1
[partners.remote.credentials]
known_hosts = "known_hosts"
password_file = "password"

[channels.erp]
watch_dir = "inbox/erp"
partner = "sandbox"
settle_seconds = 0

[channels.other]
watch_dir = "inbox/other"
partner = "remote"
settle_seconds = 0

[channels.cii]
watch_dir = "inbox/cii"
syntax = "cii"
partner = "sandbox"
settle_seconds = 0
""")
    write_sample_export(tmp_path / "inbox" / "erp" / "export.csv", 2, with_errors=False)
    write_sample_export(tmp_path / "inbox" / "other" / "export.csv", 2, with_errors=False, number_prefix="R")
    base = ["--config", str(config)]
    try:
        run = gateway(*base, "run", "--once", check=False)
    finally:
        refusing.close()
    summary = json.loads(run.stdout)
    # A failed flow, a halted channel and a failed pickup at once: the most urgent, 3.
    assert run.returncode == 3, run.stderr
    [failed] = summary["flows_failed"]
    [sent] = summary["flows_sent"]
    assert list(summary["channels_halted"]) == ["cii"] and "CII" in summary["channels_halted"]["cii"]
    assert list(summary["reports_pickup_failed"]) == ["remote"]
    assert "cannot reach 127.0.0.1" in summary["reports_pickup_failed"]["remote"]

    overdue = gateway(*base, "reports", "overdue", "--json", check=False)
    assert overdue.returncode == 1
    assert [row["flow_id"] for row in json.loads(overdue.stdout)] == [sent]

    checked = gateway(*base, "config", "check", "--json", check=False)
    assert checked.returncode == 1
    verdict = json.loads(checked.stdout)
    assert verdict["valid"] is False and any("CII" in problem for problem in verdict["problems"])

    table = gateway(*base, "flows", "list").stdout.splitlines()
    archives = sorted((tmp_path / "flows").iterdir())
    assert len(archives) == 2
    for archive in archives:
        [row] = [line for line in table if archive.name in line]
        assert hashlib.sha256(archive.read_bytes()).hexdigest() in row
        assert ("failed" if failed in archive.name else "sent") in row, row


#: Commands that print no result of their own: a daemon's log is its output.
_NO_RESULT = {"serve"}


def _commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def test_every_command_that_prints_a_result_has_json() -> None:
    """Today `config check`, `db upgrade`, `sandbox`, `flows retry`, `rules add`,
    `directory import`, `init`, `demo` and `validate` have no --json."""
    without = [name for name, command in _commands(cli)
               if name not in _NO_RESULT and not any("--json" in option.opts for option in command.params)]
    assert without == []
