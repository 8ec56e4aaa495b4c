"""A real OpenSSH ``sshd`` on 127.0.0.1 for the SFTP tests and benchmark.

The server runs in the foreground (``-D -e``) from a generated ``sshd_config`` in a
temporary directory: its own host keys, its own ``authorized_keys`` file, its own pid
file and log, on a free loopback port. Nothing of the machine's own sshd set-up
(``/etc/ssh``) is read or changed.

Used as a context manager::

    with SshdServer(tmp_path / "sshd") as server:
        server.authorize(public_key_line)
        ... server.port, server.known_hosts_lines() ...

Password authentication without PAM checks the account's hash in ``/etc/shadow``.
The accounts' passwords are never changed: when asked for a password (``password=``),
the server is started in a private mount namespace (``unshare --mount``) where a
temporary shadow file holding a hash of that password for the current user is
bind-mounted over ``/etc/shadow``, visible to that sshd only. That needs root and
``unshare``; :func:`password_namespace_unavailable` says why it cannot be done here.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO

SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"
#: sshd refuses to start as root without its privilege separation directory.
PRIVSEP_DIR = Path("/run/sshd")


def sshd_available() -> bool:
    return SSHD.is_file() and os.access(SSHD, os.X_OK) and shutil.which(SSH_KEYGEN) is not None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def generate_key(path: Path, key_type: str = "ed25519", *, passphrase: str = "", comment: str = "test") -> Path:
    """Make an OpenSSH key pair with ``ssh-keygen``; return the private key's path (``.pub`` beside it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    args = [SSH_KEYGEN, "-q", "-t", key_type, "-N", passphrase, "-C", comment, "-f", str(path)]
    if key_type == "rsa":
        args[4:4] = ["-b", "3072"]
    subprocess.run(args, check=True, stdin=subprocess.DEVNULL, capture_output=True)
    return path


def public_line(private_key: Path) -> str:
    """``type base64`` of a key pair, without the comment."""
    fields = private_key.with_name(private_key.name + ".pub").read_text().split()
    return f"{fields[0]} {fields[1]}"


def password_namespace_unavailable() -> str | None:
    """Why a password-authenticating sshd cannot be started here, or None when it can."""
    if os.geteuid() != 0:
        return "password authentication needs root (to show sshd a test hash in a private mount namespace)"
    if shutil.which("unshare") is None or shutil.which("openssl") is None:
        return "password authentication needs unshare(1) and openssl(1)"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        return f"cannot create a private mount namespace: {probe.stderr.strip()}"
    return None


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state first, then the parent's pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    # the command name, in parentheses, may hold spaces and parentheses
    return stat[stat.rindex(")") + 2 :].split()


def _parent(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else 0


def _running(pid: int) -> bool:
    """Alive and not a zombie (a dead process its parent, or init, has yet to reap)."""
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] != "Z"


class SshdServer:
    """One sshd process; ``start``/``stop`` may be repeated and keep the same port and keys."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        rsa_host_key: bool = False,
        password: str | None = None,
        log_level: str = "VERBOSE",
        extra_config: str = "",
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.password = password
        self.log_level = log_level
        self.extra_config = extra_config
        self.authorized_keys = workdir / "authorized_keys"
        self.authorized_keys.touch()
        self.config_file = workdir / "sshd_config"
        self.pid_file = workdir / "sshd.pid"
        self.log_file = workdir / "sshd.log"
        self.host_keys = [generate_key(workdir / "ssh_host_ed25519_key", "ed25519", comment="host")]
        if rsa_host_key:
            self.host_keys.append(generate_key(workdir / "ssh_host_rsa_key", "rsa", comment="host"))
        self.process: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None

    # -- set-up -------------------------------------------------------------------

    def authorize(self, public_key: str) -> None:
        with self.authorized_keys.open("a") as handle:
            handle.write(public_key.strip() + "\n")

    def known_hosts_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def known_hosts_lines(self) -> list[str]:
        """The lines a known_hosts file needs to trust this server."""
        return [f"{self.known_hosts_name()} {public_line(key)}" for key in self.host_keys]

    def _write_config(self) -> None:
        lines = [
            f"ListenAddress {self.host}:{self.port}",
            *(f"HostKey {key}" for key in self.host_keys),
            f"PidFile {self.pid_file}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "StrictModes no",
            "UsePAM no",
            "PubkeyAuthentication yes",
            f"PasswordAuthentication {'yes' if self.password is not None else 'no'}",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin yes",
            f"AllowUsers {self.user}",
            "Subsystem sftp internal-sftp",
            "X11Forwarding no",
            "AllowTcpForwarding no",
            "PrintMotd no",
            "UseDNS no",
            "MaxStartups 50:30:100",
            "MaxSessions 20",
            f"LogLevel {self.log_level}",
            self.extra_config,
        ]
        self.config_file.write_text("\n".join(lines) + "\n")

    def _shadow_file(self) -> Path:
        assert self.password is not None
        hashed = subprocess.run(
            ["openssl", "passwd", "-6", "-stdin"], input=self.password, capture_output=True, text=True, check=True
        ).stdout.strip()
        shadow = self.workdir / "shadow"
        shadow.write_text(f"{self.user}:{hashed}:19000:0:99999:7:::\n")
        shadow.chmod(0o600)
        return shadow

    # -- life cycle -----------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> SshdServer:
        if self.process is not None:
            raise RuntimeError("sshd already started")
        if os.geteuid() == 0:
            PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        self._write_config()
        command = [str(SSHD), "-D", "-e", "-f", str(self.config_file)]
        if self.password is not None:
            reason = password_namespace_unavailable()
            if reason:
                raise RuntimeError(reason)
            shadow = self._shadow_file()
            # exec keeps the pid: the process we hold is sshd itself.
            script = f'mount --bind "{shadow}" /etc/shadow && exec "$@"'
            command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *command]
        log = self.log_file.open("ab")
        self._log_handle = log
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._close_log()
                self.process = None
                raise RuntimeError(f"sshd exited at start-up:\n{self.log_text()}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.5):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not listen on {self.host}:{self.port} within {timeout} s:\n{self.log_text()}")

    def stop(self) -> None:
        """Stop the listener and every session it forked (terminate, wait, then kill)."""
        process, self.process = self.process, None
        if process is None:
            return
        # Sessions first, innermost first, while the listener still runs and can reap them.
        sessions = self.session_pids(process.pid)
        for pid in reversed(sessions):
            for signum in (signal.SIGKILL, signal.SIGCONT):  # SIGCONT: a stopped one dies at once
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and any(_running(pid) for pid in sessions):
            time.sleep(0.005)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self._close_log()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> SshdServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _close_log(self) -> None:
        handle, self._log_handle = self._log_handle, None
        if handle is not None:
            handle.close()

    # -- inspection and sabotage ------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def session_pids(self, root: int | None = None) -> list[int]:
        """Every live descendant of the listener: one monitor and one session process per connection."""
        root = root if root is not None else self.pid
        if root is None:
            return []
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            fields = _stat_fields(int(entry.name))
            if fields:
                parents[int(entry.name)] = int(fields[1])
        found: list[int] = []
        frontier = [root]
        while frontier:
            parent = frontier.pop()
            children = [pid for pid, ppid in parents.items() if ppid == parent]
            found.extend(children)
            frontier.extend(children)
        return found

    def signal_sessions(self, signum: int) -> list[int]:
        """Send ``signum`` to every session process (not the listener); return their pids."""
        pids = self.session_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        return pids

    def kill_sessions(self) -> list[int]:
        """Cut every open connection the way a crash or a network cut would."""
        return self.signal_sessions(signal.SIGKILL)

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def accepted_logins(self) -> int:
        """How many authentications the server has accepted (one per connection)."""
        return len(re.findall(r"^Accepted \S+ for ", self.log_text(), flags=re.MULTILINE))
