"""The SFTP transport against a real OpenSSH sshd on 127.0.0.1 (see tests/sshd.py).

The "remote" directories are on this machine, so a test looks at what arrived with plain
file operations.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.errors import TransportError
from gateway.transport.sftp import SftpSettings, SftpTransport
from sshd import (
    SshdServer,
    generate_key,
    password_namespace_unavailable,
    public_line,
    sshd_available,
)


def _require_sshd() -> None:
    if sshd_available():
        return
    reason = "/usr/sbin/sshd or ssh-keygen is absent (Debian: apt-get install openssh-server)"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the SFTP tests, but {reason}")
    pytest.skip(reason)


@dataclass
class UserKeys:
    ed25519: Path
    rsa: Path
    stranger: Path  # never authorized anywhere


@dataclass
class SftpLab:
    server: SshdServer
    keys: UserKeys
    known_hosts: Path
    outbound: Path
    inbound: Path
    done: Path

    def settings(self, **overrides: object) -> SftpSettings:
        values: dict[str, object] = {
            "host": self.server.host,
            "port": self.server.port,
            "username": self.server.user,
            "known_hosts": self.known_hosts,
            "key_file": self.keys.ed25519,
            "outbound_dir": str(self.outbound),
            "inbound_dir": str(self.inbound),
            "done_dir": str(self.done),
            "connect_timeout": 5.0,
            "io_timeout": 10.0,
            "peer": "chorus-test",
        }
        values.update(overrides)
        return SftpSettings(**values)  # type: ignore[arg-type]

    def transport(self, **overrides: object) -> SftpTransport:
        return SftpTransport(self.settings(**overrides))


@pytest.fixture(scope="module")
def user_keys(tmp_path_factory: pytest.TempPathFactory) -> UserKeys:
    _require_sshd()
    folder = tmp_path_factory.mktemp("user-keys")
    return UserKeys(
        ed25519=generate_key(folder / "id_ed25519", "ed25519"),
        rsa=generate_key(folder / "id_rsa", "rsa"),
        stranger=generate_key(folder / "id_stranger", "ed25519"),
    )


def _lab(tmp_path: Path, keys: UserKeys, server: SshdServer) -> SftpLab:
    server.authorize(public_line(keys.ed25519))
    server.authorize(public_line(keys.rsa))
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("\n".join(server.known_hosts_lines()) + "\n")
    remote = tmp_path / "remote"
    lab = SftpLab(server, keys, known_hosts, remote / "out", remote / "in", remote / "in" / "done")
    lab.outbound.mkdir(parents=True)
    lab.inbound.mkdir(parents=True)
    return lab


@pytest.fixture
def sshd_server(tmp_path: Path, user_keys: UserKeys) -> Iterator[SftpLab]:
    """A running sshd trusting both user keys, a known_hosts file pinning it, and empty remote directories."""
    server = SshdServer(tmp_path / "sshd")
    lab = _lab(tmp_path, user_keys, server)
    server.start()
    try:
        yield lab
    finally:
        server.stop()


@pytest.fixture
def transport(sshd_server: SftpLab) -> Iterator[SftpTransport]:
    client = sshd_server.transport()
    try:
        yield client
    finally:
        client.close()


def _host_fingerprint(server: SshdServer, index: int = 0) -> str:
    """The host key's fingerprint as OpenSSH's own ssh-keygen prints it."""
    pub = server.host_keys[index].with_name(server.host_keys[index].name + ".pub")
    output = subprocess.run(["ssh-keygen", "-l", "-f", str(pub)], capture_output=True, text=True, check=True).stdout
    return output.split()[1]


# -- deposit -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["ed25519", "rsa"])
def test_deposit_arrives_byte_identical_under_its_final_name(sshd_server: SftpLab, key: str) -> None:
    lab = sshd_server
    data = os.urandom(300_000 + 17)
    with lab.transport(key_file=getattr(lab.keys, key)) as client:
        receipt = client.deposit("FLOW_0001.zip", data).receipt
    assert (lab.outbound / "FLOW_0001.zip").read_bytes() == data
    assert sorted(os.listdir(lab.outbound)) == ["FLOW_0001.zip"]  # no temporary left behind
    assert f"{lab.outbound}/FLOW_0001.zip" in receipt
    assert f"size={len(data)}" in receipt
    assert f"sha256={hashlib.sha256(data).hexdigest()}" in receipt
    algorithm = "ED25519" if key == "ed25519" else "RSA"
    assert f"Accepted publickey for {lab.server.user} from 127.0.0.1" in lab.server.log_text()
    assert f"ssh2: {algorithm} SHA256:" in lab.server.log_text()


def test_deposit_replaces_a_leftover_temporary_file(sshd_server: SftpLab, transport: SftpTransport) -> None:
    leftover = sshd_server.outbound / ".FLOW.zip.part"
    leftover.write_bytes(b"x" * 5_000_000)  # an earlier, interrupted upload, longer than this one
    transport.deposit("FLOW.zip", b"small flow")
    assert (sshd_server.outbound / "FLOW.zip").read_bytes() == b"small flow"
    assert not leftover.exists()


def test_connection_cut_during_upload_leaves_no_final_file_and_the_next_attempt_completes(
    sshd_server: SftpLab, transport: SftpTransport
) -> None:
    lab = sshd_server
    data = os.urandom(64 * 1024 * 1024)
    temporary = lab.outbound / ".BIG.zip.part"
    cut: list[int] = []

    def cut_when_upload_started() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if temporary.exists() and temporary.stat().st_size > 0:
                # freeze first, so the upload cannot finish between seeing it and cutting it
                lab.server.signal_sessions(signal.SIGSTOP)
                cut.extend(lab.server.kill_sessions())
                return
            time.sleep(0.002)

    cutter = threading.Thread(target=cut_when_upload_started)
    cutter.start()
    try:
        with pytest.raises(TransportError) as caught:
            transport.deposit("BIG.zip", data)
    finally:
        cutter.join()
    assert cut, "the connection was not cut"
    assert caught.value.retryable is True
    assert "lost while depositing" in caught.value.message
    assert not (lab.outbound / "BIG.zip").exists()
    assert not transport.connected  # dropped, so the next call reconnects

    receipt = transport.deposit("BIG.zip", data).receipt
    assert (lab.outbound / "BIG.zip").read_bytes() == data
    assert sorted(os.listdir(lab.outbound)) == ["BIG.zip"]
    assert f"size={len(data)}" in receipt
    assert transport.connections_opened == 2


def test_server_restarted_between_calls_costs_one_retryable_failure_then_works(
    sshd_server: SftpLab, transport: SftpTransport
) -> None:
    transport.deposit("A.zip", b"a")
    sshd_server.server.restart()  # kills our session too; same port and host key
    time.sleep(0.2)
    # the dead connection is noticed before use, or at the latest on use; then a new one is made
    try:
        transport.deposit("B.zip", b"b")
    except TransportError as exc:
        assert exc.retryable
        transport.deposit("B.zip", b"b")
    assert (sshd_server.outbound / "B.zip").read_bytes() == b"b"
    assert transport.connections_opened == 2


def test_one_connection_serves_every_call_of_a_pass(sshd_server: SftpLab, transport: SftpTransport) -> None:
    for number in range(5):
        transport.deposit(f"FLOW_{number}.zip", os.urandom(10_000))
    assert transport.remote_size("FLOW_3.zip") == 10_000
    assert transport.list_reports() == []
    assert transport.connections_opened == 1
    assert sshd_server.server.accepted_logins() == 1
    assert len(os.listdir(sshd_server.outbound)) == 5

    transport.close()
    assert not transport.connected
    transport.deposit("FLOW_5.zip", b"after close")
    assert transport.connections_opened == 2
    assert sshd_server.server.accepted_logins() == 2


def test_server_extensions_are_used(transport: SftpTransport) -> None:
    transport.remote_size("ANY.zip")
    assert transport._connection is not None
    assert transport._connection.posix_rename is True  # OpenSSH announces posix-rename@openssh.com
    # and limits@openssh.com: requests larger than 32 KiB, which double paramiko's throughput
    assert transport._connection.write_size > 32768
    assert transport._connection.read_size > 32768


def test_empty_flow(sshd_server: SftpLab, transport: SftpTransport) -> None:
    receipt = transport.deposit("EMPTY.zip", b"").receipt
    assert (sshd_server.outbound / "EMPTY.zip").read_bytes() == b""
    assert "size=0 " in receipt


def test_write_error_is_reported_and_the_connection_survives(sshd_server: SftpLab, transport: SftpTransport) -> None:
    outbound = sshd_server.outbound
    (outbound / ".FULL.zip.part").symlink_to("/dev/full")  # every write fails: "no space left"
    with pytest.raises(TransportError) as caught:
        transport.deposit("FULL.zip", os.urandom(2 * 1024 * 1024))  # several write requests
    assert caught.value.retryable is True
    assert f"depositing {outbound}/FULL.zip" in caught.value.message
    assert not (outbound / "FULL.zip").exists()
    assert transport.connected  # a refused write does not cost the connection
    transport.deposit("NEXT.zip", b"next")
    assert (outbound / "NEXT.zip").read_bytes() == b"next"
    assert transport.connections_opened == 1


def test_size_check_after_upload(sshd_server: SftpLab, transport: SftpTransport) -> None:
    outbound = sshd_server.outbound
    (outbound / ".LOST.zip.part").symlink_to("/dev/null")  # writes "succeed", nothing is kept
    with pytest.raises(TransportError) as caught:
        transport.deposit("LOST.zip", b"x" * 1000)
    assert caught.value.retryable is True
    assert "holds 0 bytes after the upload of 1000" in caught.value.message
    assert sorted(os.listdir(outbound)) == []  # not renamed; the temporary name removed


def test_missing_outbound_dir(sshd_server: SftpLab, transport: SftpTransport) -> None:
    sshd_server.outbound.rmdir()
    with pytest.raises(TransportError) as caught:
        transport.deposit("FLOW.zip", b"x")
    assert f"depositing {sshd_server.outbound}/FLOW.zip" in caught.value.message
    assert "No such file" in caught.value.message
    assert transport.connected


def test_plain_rename_when_posix_rename_is_missing(sshd_server: SftpLab, transport: SftpTransport) -> None:
    outbound = sshd_server.outbound
    transport.remote_size("ANY.zip")  # connect
    assert transport._connection is not None
    transport._connection.posix_rename = False

    transport.deposit("NEW.zip", b"new flow")
    assert (outbound / "NEW.zip").read_bytes() == b"new flow"

    receipt = transport.deposit("NEW.zip", b"NEW FLOW").receipt  # same size: an earlier attempt got through
    assert "already delivered" in receipt
    assert (outbound / "NEW.zip").read_bytes() == b"new flow"

    with pytest.raises(TransportError) as caught:
        transport.deposit("NEW.zip", b"another, longer flow")
    assert caught.value.retryable is False
    assert "already exists with 8 bytes" in caught.value.message
    assert (outbound / "NEW.zip").read_bytes() == b"new flow"  # left alone
    assert sorted(os.listdir(outbound)) == ["NEW.zip"]  # temporaries removed


@pytest.mark.parametrize("name", ["", "../escape.zip", "sub/dir.zip", ".hidden.zip", "flow.zip.part"])
def test_unusable_names_are_refused_before_connecting(transport: SftpTransport, name: str) -> None:
    with pytest.raises(TransportError) as caught:
        transport.deposit(name, b"x")
    assert caught.value.retryable is False
    assert transport.connections_opened == 0


# -- host key ---------------------------------------------------------------------------------


def test_unknown_host_key_is_refused_with_its_fingerprint(sshd_server: SftpLab, tmp_path: Path) -> None:
    lab = sshd_server
    known_hosts = tmp_path / "known_hosts_without_server"
    # the same address without the port is another server for OpenSSH, and so for us
    known_hosts.write_text(f"127.0.0.1 {public_line(lab.server.host_keys[0])}\n")
    client = lab.transport(known_hosts=known_hosts)
    with pytest.raises(TransportError) as caught:
        client.deposit("FLOW.zip", b"secret invoices")
    message = caught.value.message
    assert caught.value.retryable is False
    assert "UNKNOWN" in message and "CHANGED" not in message
    assert f"127.0.0.1:{lab.server.port}" in message
    assert f"ED25519 key {_host_fingerprint(lab.server)}" in message
    assert f"[127.0.0.1]:{lab.server.port} ssh-ed25519 " in message  # the line to add once checked
    assert os.listdir(lab.outbound) == []
    assert lab.server.accepted_logins() == 0
    assert known_hosts.read_text().count("\n") == 1  # never added


def test_changed_host_key_is_refused_with_a_distinct_message(
    sshd_server: SftpLab, tmp_path: Path, user_keys: UserKeys
) -> None:
    lab = sshd_server
    known_hosts = tmp_path / "known_hosts_other_key"
    other = public_line(user_keys.stranger)  # any other ed25519 key
    known_hosts.write_text(f"[127.0.0.1]:{lab.server.port} {other}\n")
    client = lab.transport(known_hosts=known_hosts)
    with pytest.raises(TransportError) as caught:
        client.deposit("FLOW.zip", b"secret invoices")
    message = caught.value.message
    assert caught.value.retryable is False
    assert "CHANGED" in message and "UNKNOWN" not in message
    assert f"127.0.0.1:{lab.server.port}" in message
    assert f"offered the ED25519 key {_host_fingerprint(lab.server)}" in message
    stranger_fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-f", f"{user_keys.stranger}.pub"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert f"pins the ED25519 key {stranger_fingerprint}" in message
    assert os.listdir(lab.outbound) == []
    assert lab.server.accepted_logins() == 0
    assert known_hosts.read_text() == f"[127.0.0.1]:{lab.server.port} {other}\n"


def test_hashed_known_hosts_entries_are_understood(sshd_server: SftpLab) -> None:
    subprocess.run(["ssh-keygen", "-H", "-f", str(sshd_server.known_hosts)], capture_output=True, check=True)
    assert sshd_server.known_hosts.read_text().startswith("|1|")
    with sshd_server.transport() as client:
        client.deposit("FLOW.zip", b"hashed")
    assert (sshd_server.outbound / "FLOW.zip").read_bytes() == b"hashed"


def test_known_hosts_as_people_write_them(sshd_server: SftpLab, user_keys: UserKeys) -> None:
    server = sshd_server.server
    stranger = public_line(user_keys.stranger)
    sshd_server.known_hosts.write_text(
        "# partners\n\n"
        "this line is damaged\n"
        f"[127.0.0.1]:{server.port} ssh-ed25519 not-base64!!\n"
        f"@cert-authority *.example.com {stranger}\n"
        f"!{server.known_hosts_name},[127.0.0.*]:{server.port} {stranger}\n"  # negated: not for this server
        f"other.example.com,[127.0.0.?]:{server.port} {public_line(server.host_keys[0])}\n"  # wildcard
    )
    with sshd_server.transport() as client:
        client.deposit("FLOW.zip", b"pinned by a wildcard line")
    assert (sshd_server.outbound / "FLOW.zip").exists()

    # a negated name excludes the server even though the wildcard beside it matches
    own_key = public_line(server.host_keys[0])
    sshd_server.known_hosts.write_text(f"!{server.known_hosts_name},[127.0.0.*]:{server.port} {own_key}\n")
    with pytest.raises(TransportError) as caught:
        sshd_server.transport().deposit("OTHER.zip", b"x")
    assert "is UNKNOWN" in caught.value.message


def test_revoked_host_key_is_refused(sshd_server: SftpLab) -> None:
    server = sshd_server.server
    with sshd_server.known_hosts.open("a") as handle:
        handle.write(f"@revoked * {public_line(server.host_keys[0])}\n")
    with pytest.raises(TransportError) as caught:
        sshd_server.transport().deposit("FLOW.zip", b"x")
    assert caught.value.retryable is False
    assert f"host key of 127.0.0.1:{server.port} is REVOKED" in caught.value.message
    assert _host_fingerprint(server) in caught.value.message
    assert os.listdir(sshd_server.outbound) == []


def test_rsa_host_key_pinned_alone_is_negotiated(tmp_path: Path, user_keys: UserKeys) -> None:
    _require_sshd()
    server = SshdServer(tmp_path / "sshd", rsa_host_key=True)
    lab = _lab(tmp_path, user_keys, server)
    lab.known_hosts.write_text(server.known_hosts_lines()[1] + "\n")  # only the RSA key
    assert " ssh-rsa " in lab.known_hosts.read_text()
    with server, lab.transport() as client:
        client.deposit("FLOW.zip", b"over rsa host key")
    assert (lab.outbound / "FLOW.zip").read_bytes() == b"over rsa host key"


def test_missing_known_hosts_file_is_a_configuration_error(sshd_server: SftpLab, tmp_path: Path) -> None:
    client = sshd_server.transport(known_hosts=tmp_path / "absent")
    with pytest.raises(TransportError) as caught:
        client.list_reports()
    assert caught.value.retryable is False
    assert "known_hosts" in caught.value.message
    assert sshd_server.server.accepted_logins() == 0


# -- reachability and timeouts ------------------------------------------------------------------


def test_stopped_server_is_retryable_and_quick(sshd_server: SftpLab) -> None:
    sshd_server.server.stop()
    client = sshd_server.transport(connect_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        client.deposit("FLOW.zip", b"x")
    assert time.monotonic() - started < 3
    assert caught.value.retryable is True
    assert f"cannot reach 127.0.0.1:{sshd_server.server.port}" in caught.value.message
    assert caught.value.peer == "chorus-test"


def test_server_that_never_speaks_times_out(sshd_server: SftpLab) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        client = sshd_server.transport(port=silent.getsockname()[1], connect_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            client.list_reports()
        elapsed = time.monotonic() - started
    assert elapsed < 3
    assert caught.value.retryable is True
    assert "SSH handshake" in caught.value.message


def test_frozen_server_times_out_and_the_connection_is_remade(sshd_server: SftpLab) -> None:
    client = sshd_server.transport(io_timeout=0.5)
    try:
        assert client.remote_size("FLOW.zip") is None  # connected
        frozen = sshd_server.server.signal_sessions(signal.SIGSTOP)
        assert frozen
        started = time.monotonic()
        try:
            with pytest.raises(TransportError) as caught:
                client.remote_size("FLOW.zip")
            assert time.monotonic() - started < 3
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        assert caught.value.retryable is True
        assert not client.connected
        (sshd_server.outbound / "FLOW.zip").write_bytes(b"12345")
        assert client.remote_size("FLOW.zip") == 5
        assert client.connections_opened == 2
    finally:
        client.close()


# -- authentication ------------------------------------------------------------------------------


def test_unauthorized_key_is_refused_naming_user_and_key(sshd_server: SftpLab) -> None:
    key = sshd_server.keys.stranger
    client = sshd_server.transport(key_file=key)
    with pytest.raises(TransportError) as caught:
        client.deposit("FLOW.zip", b"x")
    message = caught.value.message
    assert caught.value.retryable is False
    assert f"refused the login of user {sshd_server.server.user!r}" in message
    assert str(key) in message and "ED25519 key SHA256:" in message
    assert os.listdir(sshd_server.outbound) == []


def test_password_is_not_tried_when_the_server_allows_only_keys(sshd_server: SftpLab) -> None:
    client = sshd_server.transport(key_file=None, password="not-the-password")
    with pytest.raises(TransportError) as caught:
        client.list_reports()
    assert caught.value.retryable is False
    assert "the password of the settings was not tried: the server allows only publickey" in caught.value.message
    assert "not-the-password" not in caught.value.message


def test_encrypted_key_needs_its_passphrase(sshd_server: SftpLab, tmp_path: Path) -> None:
    key = generate_key(tmp_path / "id_locked", "ed25519", passphrase="open sesame")
    sshd_server.server.authorize(public_line(key))
    with pytest.raises(TransportError) as caught:
        sshd_server.transport(key_file=key).list_reports()
    assert caught.value.retryable is False
    assert f"the key file {key} is encrypted" in caught.value.message
    with pytest.raises(TransportError) as caught:
        sshd_server.transport(key_file=key, key_passphrase="open sesame!").list_reports()
    assert caught.value.retryable is False
    assert f"cannot load the private key {key} (wrong passphrase?)" in caught.value.message
    assert "open sesame" not in caught.value.message
    assert sshd_server.server.accepted_logins() == 0
    with sshd_server.transport(key_file=key, key_passphrase="open sesame") as client:
        assert client.list_reports() == []


def test_password_authentication(tmp_path: Path, user_keys: UserKeys) -> None:
    _require_sshd()
    reason = password_namespace_unavailable()
    if reason:
        pytest.skip(reason)
    server = SshdServer(tmp_path / "sshd", password="correct horse battery staple")
    lab = _lab(tmp_path, user_keys, server)
    with server:
        with lab.transport(key_file=None, password="correct horse battery staple") as client:
            client.deposit("FLOW.zip", b"by password")
        assert (lab.outbound / "FLOW.zip").read_bytes() == b"by password"
        assert f"Accepted password for {server.user}" in server.log_text()

        with pytest.raises(TransportError) as caught:
            lab.transport(key_file=None, password="wrong").list_reports()
        assert caught.value.retryable is False
        assert f"user {server.user!r}: the password of the settings was not accepted" in caught.value.message
        assert "wrong" not in caught.value.message.replace("wrong passphrase", "")


def test_settings_need_a_credential() -> None:
    with pytest.raises(ValueError, match="key_file or a password"):
        SftpSettings(host="h", username="u", known_hosts=Path("k"), outbound_dir="/o", inbound_dir="/i")


def test_secrets_stay_out_of_the_settings_repr(sshd_server: SftpLab) -> None:
    text = repr(sshd_server.settings(password="hunter2", key_passphrase="swordfish"))
    assert "hunter2" not in text and "swordfish" not in text


# -- sizes and reports ---------------------------------------------------------------------------


def test_remote_size(sshd_server: SftpLab, transport: SftpTransport) -> None:
    assert transport.remote_size("FLOW.zip") is None
    transport.deposit("FLOW.zip", b"0123456789")
    assert transport.remote_size("FLOW.zip") == 10
    (sshd_server.outbound / ".OTHER.zip.part").write_bytes(b"half")
    assert transport.remote_size("OTHER.zip") is None  # an unfinished upload is not a delivered file


def test_reports_are_listed_fetched_and_moved_to_done(sshd_server: SftpLab, transport: SftpTransport) -> None:
    inbound = sshd_server.inbound
    big = os.urandom(3 * 1024 * 1024 + 5)  # several windows and prefetch requests
    (inbound / "b_report.xml").write_bytes(b"<b/>")
    (inbound / "a_report.xml").write_bytes(big)
    (inbound / ".c_report.xml.part").write_bytes(b"half")
    (inbound / "d_report.xml.tmp").write_bytes(b"half")
    (inbound / "subdir").mkdir()
    assert not sshd_server.done.exists()

    assert transport.list_reports() == ["a_report.xml", "b_report.xml"]
    assert transport.fetch_report("a_report.xml") == big
    assert transport.fetch_report("b_report.xml") == b"<b/>"

    transport.acknowledge_report("a_report.xml")
    assert not (inbound / "a_report.xml").exists()
    assert (sshd_server.done / "a_report.xml").read_bytes() == big  # done_dir was created
    assert transport.list_reports() == ["b_report.xml"]

    (sshd_server.done / "b_report.xml").write_bytes(b"older copy")
    transport.acknowledge_report("b_report.xml")
    assert (sshd_server.done / "b_report.xml").read_bytes() == b"<b/>"
    transport.acknowledge_report("b_report.xml")  # again, after an interrupted call: nothing to do
    assert transport.list_reports() == []


def test_reports_are_deleted_when_there_is_no_done_dir(sshd_server: SftpLab) -> None:
    (sshd_server.inbound / "report.xml").write_bytes(b"<r/>")
    with sshd_server.transport(done_dir=None) as client:
        assert client.list_reports() == ["report.xml"]
        assert client.fetch_report("report.xml") == b"<r/>"
        client.acknowledge_report("report.xml")
    assert sorted(os.listdir(sshd_server.inbound)) == []


def test_missing_report_and_missing_inbound_dir_are_transport_errors(sshd_server: SftpLab) -> None:
    with sshd_server.transport() as client:
        with pytest.raises(TransportError) as caught:
            client.fetch_report("absent.xml")
        assert "absent.xml" in caught.value.message
        assert client.connected  # a file error does not cost the connection
    with sshd_server.transport(inbound_dir="/nonexistent/in") as client:
        with pytest.raises(TransportError) as caught:
            client.list_reports()
        assert "listing /nonexistent/in: the server answered 'No such file'" in caught.value.message
        assert caught.value.retryable is True
