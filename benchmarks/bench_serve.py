"""`gateway serve` under hostile load: does its memory stay bounded whatever the clients send?

    .venv/bin/python benchmarks/bench_serve.py [--cap-mb 20] [--stranger-mb 250]

Starts a real `gateway serve` (SQLite store, keys made here), then, all at once:
3 clients naming no agreed partner, each sending a --stranger-mb body (the measurement of
issue 13: 3 × 250 MB took serve from 109 MB to 2.4 GB); 3 clients with the partner's AS2
names sending a chunked body over the cap; 3 sending junk of just the cap (read, stored,
refused: kept up to 1 MiB); and clients trickling headers until max_connections is full.
Then one genuine report of the cap's size (signed and encrypted), accepted and answered
with a signed MDN. Prints serve's RSS after start, its peak (VmHWM) after the hostile
load and after the genuine report, the size of the store, and what each client got.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from gateway.transport.as2 import build_message  # noqa: E402
from gateway.transport.as2.http import post_message  # noqa: E402

OURS, PARTNER = "CHORUS GATEWAY", "AIFE-CPP"


def _party(directory: Path, name: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    (directory / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                              serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()))
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def _memory(pid: int) -> dict[str, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {name: int(fields[name].split()[0]) // 1024 for name in ("VmRSS", "VmHWM")}


def _head(as2_from: str, framing: str) -> bytes:
    return (f"POST / HTTP/1.1\r\nHost: gateway\r\nAS2-From: {as2_from}\r\nAS2-To: {OURS}\r\n"
            f"Message-ID: <{time.monotonic_ns()}@b>\r\n"
            f"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n{framing}\r\n").encode()


def _client(port: int, head: bytes, size: int, chunked: bool, results: list[str], label: str) -> None:
    block = os.urandom(1 << 20)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
            sock.sendall(head)
            sent = 0
            while sent < size:
                piece = block[:min(len(block), size - sent)]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
            status_line = sock.recv(200).split(b"\r\n", 1)[0].decode()
            results.append(f"{label}: sent {sent >> 20} MB, answer {status_line}")
    except OSError as exc:
        results.append(f"{label}: {exc!r} (the server closed the connection)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cap-mb", type=int, default=20)
    parser.add_argument("--stranger-mb", type=int, default=250)
    args = parser.parse_args()
    cap, stranger = args.cap_mb * 1_000_000, args.stranger_mb * 1_000_000
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    own_key, own_cert = _party(work, "gateway")
    partner_key, partner_cert = _party(work, "partner")
    config = work / "gateway.toml"
    config.write_text(f"""
[gateway]
data_dir = "data"
[sandbox]
enabled = false
[partners.chorus]
transport = "as2"
partner_code = "AAA123"
endpoint = "http://127.0.0.1:9/"
as2_from = "{OURS}"
as2_to = "{PARTNER}"
as2_max_message_bytes = {cap}
[partners.chorus.credentials]
own_key = "{work / 'gateway.key'}"
own_cert = "{work / 'gateway.pem'}"
partner_cert = "{work / 'partner.pem'}"
[channels.erp]
partner = "chorus"
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    process = subprocess.Popen([sys.executable, "-m", "gateway", "--config", str(config), "serve", "--port", "0"],
                               cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    url = process.stdout.readline().rsplit(" ", 1)[1].strip()
    port = int(url.rsplit(":", 1)[1].rstrip("/"))
    print(f"serve started: {_memory(process.pid)['VmRSS']} MB RSS")

    results: list[str] = []
    clients = [
        *(threading.Thread(target=_client, args=(port, _head("STRANGER", f"Content-Length: {stranger}\r\n"),
                                                 stranger, False, results, f"stranger {i}")) for i in range(3)),
        *(threading.Thread(target=_client, args=(port, _head(PARTNER, "Transfer-Encoding: chunked\r\n"),
                                                 cap + 10_000_000, True, results, f"over the cap {i}"))
          for i in range(3)),
        *(threading.Thread(target=_client, args=(port, _head(PARTNER, f"Content-Length: {cap}\r\n"), cap, False,
                                                 results, f"junk of the cap {i}")) for i in range(3)),
    ]
    started = time.monotonic()
    for thread in clients:
        thread.start()
    time.sleep(0.5)  # the 9 clients above have their connections
    trickling = []
    for _ in range(20):  # more than max_connections: the last are refused
        sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        sock.sendall(b"POST / HTTP/1.1\r\nX-Slow: ")
        trickling.append(sock)
    held = 0
    for sock in trickling:
        sock.settimeout(0.5)
        try:
            held += not sock.recv(100).startswith(b"HTTP/1.1 503")
        except TimeoutError:
            held += 1
    results.append(f"trickling: {held} of {len(trickling)} held, the others refused with 503")
    for thread in clients:
        thread.join()
    print(f"hostile load done in {time.monotonic() - started:.1f} s: {_memory(process.pid)}")
    for line in sorted(results):
        print("  " + line)
    for sock in trickling:
        sock.close()

    payload = os.urandom(cap - 100_000)  # room for the S/MIME layers
    message = build_message(payload, filename="report.xml", as2_from=PARTNER, as2_to=OURS, sign_key=partner_key,
                            sign_cert=partner_cert, encrypt_cert=own_cert)
    started = time.monotonic()
    status, headers, _ = post_message(url, message, timeout=300)
    print(f"genuine report of {len(message.body) >> 20} MB: HTTP {status} "
          f"({headers.get('Content-Type', '').split(';')[0]}) in {time.monotonic() - started:.1f} s: "
          f"{_memory(process.pid)}")
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    print(f"store: {(work / 'data' / 'gateway.db').stat().st_size >> 20} MB; spool left: "
          f"{len(list((work / 'data' / 'spool').iterdir()))} files")


if __name__ == "__main__":
    main()
