"""SFTP upload throughput of the gateway's transport against OpenSSH's own sftp client.

Both upload the same files to the same kind of server (a real sshd on 127.0.0.1, started
by tests/sshd.py), the same way: under a temporary name, then renamed.

    .venv/bin/python benchmarks/bench_sftp.py                     # 1,000 x 100 KB and one 500 MB flow
    .venv/bin/python benchmarks/bench_sftp.py --small 50 --big-mb 20

Prints MB/s for each, the ratio gateway/OpenSSH (target >= 0.7), and the memory the
gateway's process needed to send the big flow, measured in a child process: its resident
size once the payload is in memory (the pipeline holds a flow as bytes), and its peak
during the upload.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT / "tests"))
sys.path.insert(0, str(PROJECT))

from sshd import SshdServer, generate_key, public_line, sshd_available  # noqa: E402

from gateway.transport.sftp import PREFERRED_CIPHERS, SftpSettings, SftpTransport  # noqa: E402

MB = 1_000_000


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _settings(config: dict[str, str | int], outbound: str) -> SftpSettings:
    return SftpSettings(
        host="127.0.0.1",
        port=int(config["port"]),
        username=str(config["user"]),
        known_hosts=Path(str(config["known_hosts"])),
        key_file=Path(str(config["key"])),
        outbound_dir=outbound,
        inbound_dir=outbound,
        peer="bench",
    )


def child_big(config_json: str) -> None:
    """In a fresh process: load the big flow, reset the peak RSS, send it, report the figures as JSON."""
    config = json.loads(config_json)
    source = Path(config["file"])
    data = source.read_bytes()
    transport = SftpTransport(_settings(config, config["outbound"]))
    start = time.perf_counter()  # the connection is timed, as it is for OpenSSH's client
    transport.list_reports()  # connect before resetting the peak: the connection's memory is not the flow's
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (Linux >= 4.0)
        reset = True
    except OSError:
        reset = False
    before = _status_kib("VmRSS")
    transport.deposit(source.name, data)
    elapsed = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    transport.close()
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "rss_before_kib": before,
                "peak_kib": peak,
                "peak_reset": reset,
                "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        )
    )


def write_random(path: Path, size: int) -> None:
    with path.open("wb") as handle:
        left = size
        while left:
            block = os.urandom(min(left, 8 * 1024 * 1024))
            handle.write(block)
            left -= len(block)


#: ``-c`` for OpenSSH's client (--openssh-cipher); empty: its default (chacha20-poly1305 on 9.x).
OPENSSH_OPTIONS: list[str] = []


def openssh_upload(server: SshdServer, key: Path, known_hosts: Path, files: list[Path], remote: Path) -> float:
    batch = remote.parent / f"{remote.name}.batch"
    lines = []
    for file in files:
        temporary = remote / f".{file.name}.part"
        lines.append(f'put "{file}" "{temporary}"')
        lines.append(f'rename "{temporary}" "{remote / file.name}"')
    batch.write_text("\n".join(lines) + "\n")
    command = [
        "sftp",
        "-q",
        *OPENSSH_OPTIONS,
        "-b",
        str(batch),
        "-i",
        str(key),
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-P",
        str(server.port),
        f"{server.user}@{server.host}",
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _check_and_clear(remote: Path, files: list[Path]) -> None:
    for file in files:
        arrived = remote / file.name
        if arrived.stat().st_size != file.stat().st_size:
            raise SystemExit(f"{arrived} has the wrong size")
    if len(list(remote.iterdir())) != len(files):
        raise SystemExit(f"{remote} holds files it should not (temporaries?)")
    shutil.rmtree(remote)
    remote.mkdir()


def _summary(label: str, gateway: list[float], openssh: list[float], total: int) -> None:
    def rate(seconds: float) -> float:
        return total / MB / seconds

    best_g, best_o = min(gateway), min(openssh)
    med_g, med_o = statistics.median(gateway), statistics.median(openssh)
    print(f"  {label}: gateway {rate(best_g):.1f} MB/s best, {rate(med_g):.1f} median ({len(gateway)} runs)")
    print(f"  {' ' * len(label)}  OpenSSH {rate(best_o):.1f} MB/s best, {rate(med_o):.1f} median")
    print(f"  {' ' * len(label)}  ratio gateway/OpenSSH {best_o / best_g:.2f} (best), {med_o / med_g:.2f} (median)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1000, help="number of small flows (default 1000)")
    parser.add_argument("--small-kb", type=int, default=100, help="size of a small flow in KB (default 100)")
    parser.add_argument("--big-mb", type=int, default=500, help="size of the big flow in MB (default 500)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds, alternating gateway and OpenSSH (default 3)")
    parser.add_argument(
        "--openssh-cipher", help="cipher for OpenSSH's client, e.g. aes128-gcm@openssh.com, the gateway's first choice"
    )
    parser.add_argument("--child-big", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.openssh_cipher:
        OPENSSH_OPTIONS[:] = ["-c", args.openssh_cipher]
    if args.child_big:
        child_big(args.child_big)
        return
    if not sshd_available():
        raise SystemExit("needs /usr/sbin/sshd and ssh-keygen (Debian: apt-get install openssh-server)")

    with tempfile.TemporaryDirectory(prefix="bench-sftp-") as tmp:
        root = Path(tmp)
        key = generate_key(root / "id_ed25519")
        local_small, local_big, remote = root / "small", root / "big", root / "remote"
        for folder in (local_small, local_big, remote):
            folder.mkdir()
        small_files = []
        for number in range(args.small):
            path = local_small / f"FLOW_{number:05d}.zip"
            path.write_bytes(os.urandom(args.small_kb * 1000))
            small_files.append(path)
        big_file = local_big / "BIG_FLOW.zip"
        write_random(big_file, args.big_mb * MB)
        small_total = args.small * args.small_kb * 1000
        big_total = args.big_mb * MB
        payloads = [(path.name, path.read_bytes()) for path in small_files]

        with SshdServer(root / "sshd", log_level="ERROR") as server:
            server.authorize(public_line(key))
            known_hosts = root / "known_hosts"
            known_hosts.write_text("\n".join(server.known_hosts_lines()) + "\n")
            config = {
                "port": server.port,
                "user": server.user,
                "known_hosts": str(known_hosts),
                "key": str(key),
                "outbound": str(remote),
                "file": str(big_file),
            }

            def gateway_small() -> float:
                start = time.perf_counter()
                with SftpTransport(_settings(config, str(remote))) as transport:
                    for name, data in payloads:
                        transport.deposit(name, data)
                return time.perf_counter() - start

            def gateway_big() -> float:
                child = subprocess.run(
                    [sys.executable, __file__, "--child-big", json.dumps(config)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                figures = json.loads(child.stdout.strip().splitlines()[-1])
                memory.append(figures)
                return float(figures["seconds"])

            print(
                f"sshd {server.host}:{server.port}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
                "the gateway sends from memory, OpenSSH's sftp from files in the page cache"
            )
            print(f"ciphers: gateway {PREFERRED_CIPHERS[0]}, OpenSSH {args.openssh_cipher or 'its default'}")
            print(
                f"{args.small} flows of {args.small_kb} KB, then one of {args.big_mb} MB; "
                "each to a temporary name, then renamed"
            )
            memory: list[dict[str, int]] = []
            times: dict[str, list[float]] = {"gs": [], "os": [], "gb": [], "ob": []}
            for round_ in range(args.repeat):
                runs = [
                    ("gs", gateway_small, small_files, small_total),
                    (
                        "os",
                        lambda: openssh_upload(server, key, known_hosts, small_files, remote),
                        small_files,
                        small_total,
                    ),
                    ("gb", gateway_big, [big_file], big_total),
                    ("ob", lambda: openssh_upload(server, key, known_hosts, [big_file], remote), [big_file], big_total),
                ]
                if round_ % 2:  # alternate who goes first
                    runs = [runs[1], runs[0], runs[3], runs[2]]
                for code, run, files, total in runs:
                    seconds = run()
                    _check_and_clear(remote, files)
                    times[code].append(seconds)
                    who = "gateway" if code[0] == "g" else "OpenSSH"
                    print(
                        f"  round {round_ + 1} {who:<8} {'small' if code[1] == 's' else 'big':<6}"
                        f"{seconds:8.2f} s {total / MB / seconds:8.1f} MB/s",
                        flush=True,
                    )

            print("results:")
            _summary(f"{args.small} x {args.small_kb} KB", times["gs"], times["os"], small_total)
            _summary(f"1 x {args.big_mb} MB", times["gb"], times["ob"], big_total)
            worst = max(memory, key=lambda figures: figures["peak_kib"] - figures["rss_before_kib"])
            before = worst["rss_before_kib"] / 1024
            peak = worst["peak_kib"] / 1024
            print(
                f"  gateway process memory, {big_total / 2**20:.0f} MiB flow: {before:.0f} MiB resident once "
                f"the payload is loaded, peak {peak:.0f} MiB during the upload, "
                f"so {peak - before:+.0f} MiB for sending (worst run)"
                + ("" if worst["peak_reset"] else " (peak not reset: includes loading)")
            )


if __name__ == "__main__":
    main()
