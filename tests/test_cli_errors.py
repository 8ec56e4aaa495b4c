"""What the real CLI prints when it cannot go on: one line and a documented exit code
(1: the operator can act on it; 70: a bug), never a traceback.

Each case here was a traceback from `run`, `doctor` or every command (issue 13), and the
configurations passed `config check`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cli_runner import PROJECT, gateway


def _starter(tmp_path: Path) -> Path:
    gateway("init", str(tmp_path / "site"))
    return tmp_path / "site" / "gateway.toml"


def _edit(config: Path, *replacements: tuple[str, str]) -> None:
    text = config.read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    config.write_text(text)


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The message of a failed command: its only stderr line that is not a JSON log line."""
    lines = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert len(lines) == 1 and "Traceback" not in lines[0], result.stderr
    return lines[0]


def test_a_file_where_a_directory_is_expected_and_missing_credentials_are_refused(tmp_path: Path) -> None:
    """`config check` lists each problem on a line naming its key; `run` and `doctor` stop at the
    first with the same line; a command reading the store gives one line too, or works."""
    config = _starter(tmp_path)
    site = config.parent
    (site / "quarantine").rmdir()
    (site / "quarantine").write_text("")
    (site / "inbox" / "erp").rmdir()
    (site / "inbox" / "erp").write_text("")
    # A second partner whose credential files are not there (a typo, a missing volume).
    _edit(config, ("[channels.erp]", '[partners.chorus]\ntransport = "sftp"\npartner_code = "AAA124"\n'
                   'endpoint = "sftp://aife@sftp.example:2222"\n[partners.chorus.credentials]\n'
                   'known_hosts = "keys/known_hosts"\npassword_file = "keys/password"\n\n[channels.erp]'))

    checked = gateway("--config", str(config), "config", "check", check=False)
    assert checked.returncode == 1
    lines = checked.stderr.strip().splitlines()
    assert [line.split(":")[1].strip() for line in lines] == [
        "gateway.data_dir", "channels.erp.watch_dir",
        "partners.chorus.credentials.known_hosts", "partners.chorus.credentials.password_file",
    ], lines
    assert lines[0] == (f"configuration error: gateway.data_dir: {site / 'quarantine'} (the quarantine) is a "
                        "regular file where a directory is expected: move it away")
    assert lines[3].endswith(f"{site / 'keys' / 'password'} does not exist")

    for command in (("run", "--once"), ("doctor",)):
        result = gateway("--config", str(config), *command, check=False)
        assert (result.returncode, _one_line(result)) == (1, lines[0]), command

    listed = gateway("--config", str(config), "invoices", "list", check=False)
    assert listed.returncode in (0, 1)
    if listed.returncode:  # nothing has run here: a read command creates no store (issue 13)
        assert any(part in _one_line(listed) for part in ("is in the way", "quarantine", "no gateway store"))


def test_sftp_settings_run_cannot_use_are_refused_before_anything_runs(tmp_path: Path) -> None:
    """A port out of range, and an SFTP partner with a pinned host key but nothing to log in
    with: both passed `config check`, then `run` and `doctor` died on a ValueError."""
    config = _starter(tmp_path)
    (config.parent / "keys").mkdir()
    (config.parent / "keys" / "known_hosts").write_text("")
    _edit(config, ('transport = "local"', 'transport = "sftp"\nendpoint = "sftp://aife@sftp.example:99999"'),
          ("[channels.erp]", '[partners.sandbox.credentials]\nknown_hosts = "keys/known_hosts"\n'
           'private_key = "keys/id_ed25519"\n\n[channels.erp]'))
    for command in (("run", "--once"), ("doctor",)):
        result = gateway("--config", str(config), *command, check=False)
        assert (result.returncode, _one_line(result)) == (
            1, "configuration error: partners.sandbox.endpoint: port 99999 is not a port number (1 to 65535)"
        ), command

    _edit(config, (":99999", ":2222"), ('private_key = "keys/id_ed25519"\n', ""))
    result = gateway("--config", str(config), "doctor", check=False)
    assert result.returncode == 1
    assert _one_line(result).startswith(
        "configuration error: partners.sandbox.credentials: needs private_key or password_file for sftp"
    )


def test_a_postgresql_url_without_the_postgres_extra_says_what_to_install(tmp_path: Path) -> None:
    """Every command that opens the store, and `config check`, print one line naming the extra.

    psycopg is installed here (tests need it): a module of that name that fails to import,
    first on the path, stands for an installation without the extra."""
    shadow = tmp_path / "without-postgres-extra"
    shadow.mkdir()
    (shadow / "psycopg.py").write_text('raise ModuleNotFoundError("No module named \'psycopg\'", name="psycopg")\n')
    env = {"PYTHONPATH": str(shadow), "GATEWAY_DATABASE_URL": "postgresql+psycopg://gateway@127.0.0.1:1/gateway"}
    data = ("--data-dir", str(tmp_path / "data"))
    expected = "the PostgreSQL driver psycopg is not installed: pip install 'chorus-gateway[postgres]'"
    for command in (("config", "check"), ("run", "--once"), ("db", "upgrade"), ("invoices", "list")):
        result = gateway(*data, *command, env=env, check=False)
        assert result.returncode == 1, (command, result.stderr)
        line = _one_line(result)
        assert line.endswith(expected), (command, line)
        if command[0] in ("config", "run"):
            assert line == f"configuration error: gateway.database_url: {expected}"


_FAILING_COMMAND = """
import sys
import click
from gateway.cli import cli, main

@cli.command("explode")
def explode() -> None:
    raise RuntimeError("a bug")

sys.argv = ["gateway", *sys.argv[1:]]
main()
"""


def test_an_unexpected_error_is_one_line_and_exit_70_with_the_traceback_in_the_log_or_with_debug() -> None:
    """A command raising what no code expected (stood for by a command added to the real CLI)."""
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", _FAILING_COMMAND, *args], capture_output=True, text=True,
                              cwd=PROJECT, timeout=120)

    plain = run("--log-format", "json", "explode")
    assert plain.returncode == 70
    assert _one_line(plain) == ("internal error (a bug; please report it): RuntimeError: a bug; "
                                "run again with --debug to see the traceback")
    [logged] = [json.loads(line) for line in plain.stderr.splitlines() if line.startswith("{")]
    assert logged["event"] == "cli.internal_error" and "in explode\nRuntimeError: a bug" in logged["exception"]

    console = run("--log-format", "console", "explode")
    assert console.returncode == 70 and "Traceback" not in console.stderr

    debug = run("--debug", "--log-format", "console", "explode")
    assert debug.returncode == 70
    assert "Traceback (most recent call last)" in debug.stderr and "in explode" in debug.stderr
    assert debug.stderr.splitlines()[-1] == "internal error (a bug; please report it): RuntimeError: a bug"
