"""AS2 end to end through the real CLI: `gateway run` posts flows to a partner on 127.0.0.1 that opens
them with openssl cms, and `gateway serve` receives asynchronous MDNs and reports."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog.testing

from cli_runner import PROJECT, gateway
from gateway.clock import SystemClock
from gateway.config import AS2_ENCRYPTIONS, AS2_SIGNING_DIGESTS, load_config
from gateway.domain import AttemptOutcome, FlowEvent, FlowStatus
from gateway.errors import ConfigError
from gateway.intake.sample import write_sample_export
from gateway.pipeline import Pipeline, attempts
from gateway.pipeline.inbound import Receiver
from gateway.sandbox.simulator import SandboxSettings, process_flow
from gateway.store import Store, db
from gateway.store.models import InboundMessage, Transmission
from gateway.transport.as2 import (
    AUTHENTICATION_FAILED,
    DECRYPTION_FAILED,
    ENCRYPTIONS,
    MDN_OPTIONS,
    SIGNING_DIGESTS,
    AS2Error,
    InboundMessage as ParsedMessage,
    MdnRequest,
    OutboundMessage,
    build_mdn,
)
from gateway.transport.as2.http import AS2Endpoint, post_message
from gateway.transport.as2.transport import flow_mic, load_credentials
from test_as2 import OPENSSL, Party, _b64_mic, _party, _smime

PARTNER_AS2, OUR_AS2 = "AIFE-CPP", "CHORUS GATEWAY"


@dataclass(frozen=True)
class Pki:
    gateway: Party
    partner: Party
    stranger: Party


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if OPENSSL is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("as2-pki")
    return Pki(*(_party(directory, name) for name in ("gateway", "partner", "stranger")))


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode() + ", sha-256"


def _openssl(*args: object, stdin: bytes | None = None) -> bytes:
    assert OPENSSL is not None
    done = subprocess.run([OPENSSL, *map(str, args)], input=stdin, capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, f"openssl {' '.join(map(str, args))}: {done.stderr.decode('latin-1')}"
    return done.stdout


@dataclass(frozen=True)
class Opened:
    """What the partner read from a request with openssl alone."""

    filename: str
    payload: bytes
    mic: str  # base64 sha-256 of the signed entity, as openssl gave it back


class OpensslPartner:
    """The partner's AS2 server. It decrypts and verifies each request with `openssl cms` (an implementation
    independent of ours), then answers a signed MDN: processed, or with ``disposition``, the MDN written as libas2
    writes it and signed by openssl, with the right MIC. An asynchronous MDN is kept for the test to post."""

    def __init__(self, pki: Pki, workdir: Path, *, wrong_mic: bool = False, disposition: str | None = None) -> None:
        self.pki, self.workdir, self.wrong_mic, self.disposition = pki, workdir, wrong_mic, disposition
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.opened: list[Opened] = []
        self.answers: list[OutboundMessage] = []
        self.pending: list[tuple[str, ParsedMessage]] = []
        self.failures: list[str] = []
        self._count = itertools.count()
        workdir.mkdir(parents=True, exist_ok=True)

    def open(self, body: bytes, micalg: str = "sha-256") -> Opened:
        n = next(self._count)
        encrypted, signed, content = (self.workdir / f"{n}.{s}" for s in ("p7m", "signed.eml", "content.eml"))
        encrypted.write_bytes(body)
        _openssl("cms", "-decrypt", "-binary", "-inform", "DER", "-in", encrypted, "-recip", self.pki.partner.cert_path,
                 "-inkey", self.pki.partner.key_path, "-out", signed)
        _openssl("cms", "-verify", "-binary", "-crlfeol", "-in", signed, "-CAfile", self.pki.gateway.cert_path,
                 "-out", content)
        entity = content.read_bytes()
        mic = _b64_mic(entity, micalg.replace("-", ""))  # in the algorithm the sender asked for
        headers, inner = entity.split(b"\r\n\r\n", 1)
        if b"smime-type=compressed-data" in headers:  # openssl may lack zlib: read the CMS, inflate here
            dump = _openssl("asn1parse", "-inform", "DER", stdin=inner).decode()
            octets = re.search(r"OCTET STRING\s+\[HEX DUMP\]:([0-9A-F]+)", dump)
            assert octets is not None and ":zlib compression" in dump
            headers, inner = zlib.decompress(bytes.fromhex(octets.group(1))).split(b"\r\n\r\n", 1)
        name = re.search(rb'Content-Disposition: attachment; filename="([^"]+)"', headers)
        assert name is not None, headers
        return Opened(name.group(1).decode(), inner, mic)

    def signed_report(self, request: MdnRequest, mic: str) -> OutboundMessage:
        """An MDN written and signed without our code: the report by hand, the signature by `openssl cms -sign`."""
        fields = (f"Reporting-UA: libas2\r\nOriginal-Recipient: rfc822; {PARTNER_AS2}\r\nFinal-Recipient: rfc822; "
                  f"{PARTNER_AS2}\r\nOriginal-Message-ID: {request.message_id}\r\nDisposition: {self.disposition}\r\n"
                  f"Received-Content-MIC: {mic}\r\n")
        report = (b'Content-Type: multipart/report; report-type=disposition-notification; boundary="r"\r\n\r\n'
                  b"--r\r\nContent-Type: text/plain\r\n\r\nThe message could not be processed.\r\n"
                  b"--r\r\nContent-Type: message/disposition-notification\r\n\r\n" + fields.encode()
                  + b"\r\n--r--\r\n")
        (self.workdir / "report").write_bytes(report)
        smime = _openssl("cms", "-sign", "-binary", "-md", "sha256", "-in", self.workdir / "report",
                         "-signer", self.pki.partner.cert_path, "-inkey", self.pki.partner.key_path)
        head, body = smime.split(b"\n\n", 1)  # openssl's S/MIME headers become the HTTP headers
        headers = {"AS2-Version": "1.2", "AS2-From": PARTNER_AS2, "AS2-To": f'"{OUR_AS2}"',
                   "Message-ID": f"<{uuid.uuid4().hex}@libas2>",
                   **dict(line.split(": ", 1) for line in head.decode().split("\n") if ": " in line)}
        return OutboundMessage(headers, body, None, headers["Message-ID"])

    def __call__(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        self.received.append((headers, body))
        request = MdnRequest.from_headers(headers)
        sign = {"sign_key": self.pki.partner.key, "sign_cert": self.pki.partner.cert}
        try:
            opened = self.open(body, request.mic_algorithm)
        except AssertionError as exc:
            self.failures.append(str(exc))
            mdn = build_mdn(request, error=AS2Error("openssl refused it", disposition=DECRYPTION_FAILED), **sign)
            return 200, mdn.headers, mdn.body
        self.opened.append(opened)
        if self.disposition:
            mdn = self.signed_report(request, opened.mic)
        else:
            mic = _b64_sha256(b"other bytes") if self.wrong_mic else opened.mic
            inbound = ParsedMessage(opened.payload, opened.filename, "application/octet-stream", request.as2_from,
                                    request.as2_to, request.message_id, mic, True, True, False, request)
            if request.async_url:
                self.pending.append((request.async_url, inbound))
                return 200, {"Content-Type": "text/plain"}, b"accepted, MDN to follow\n"
            mdn = build_mdn(inbound, **sign)
        self.answers.append(mdn)
        return 200, mdn.headers, mdn.body


@dataclass
class Site:
    config: Path
    env: dict[str, str]
    inbox: Path
    flows: Path
    database_url: str


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _site(tmp_path: Path, pki: Pki, endpoint: str, **settings: object) -> Site:
    options = {"mdn": "sync", "compress": False, **settings}
    lines = "\n".join(f"{key} = {json.dumps(value)}" for key, value in options.items())
    config = tmp_path / "gateway.toml"
    config.write_text(f"""
[gateway]
data_dir = "data"
[sandbox]
enabled = false
[partners.chorus]
transport = "as2"
partner_code = "AAA123"
endpoint = "{endpoint}"
as2_from = "{OUR_AS2}"
as2_to = "{PARTNER_AS2}"
timeout_seconds = 10
max_attempts = 3
retry_initial_seconds = 0.2
retry_max_seconds = 1
{lines}
[partners.chorus.credentials]
own_key = "{pki.gateway.key_path}"
own_cert = "{pki.gateway.cert_path}"
partner_cert = "{pki.partner.cert_path}"
[channels.erp]
partner = "chorus"
settle_seconds = 0
""")
    url = f"sqlite:///{tmp_path / 'g.db'}"
    inbox = tmp_path / "data" / "inbox" / "erp"
    inbox.mkdir(parents=True)
    return Site(config, {"GATEWAY_DATABASE_URL": url}, inbox, tmp_path / "data" / "flows", url)


def _run(site: Site, code: int = 0) -> tuple[dict, list[dict]]:
    """One pass; ``code``: the exit code it must give (README, "Exit codes")."""
    result = gateway("--config", str(site.config), "--log-format", "json", "run", "--once", env=site.env, check=False)
    assert result.returncode == code, result.stderr
    return json.loads(result.stdout), [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]


def _flows(site: Site) -> list[dict]:
    return json.loads(gateway("--config", str(site.config), "flows", "list", "--json", env=site.env).stdout)


def _stored_flows(site: Site) -> list[dict]:
    """The flows as `flows list --json` shows them, read from the store directly (a CLI start costs seconds)."""
    with _store(site) as store, store.transaction() as tx:
        return [{"flow_id": f.flow_id, "file_name": f.file_name, "status": f.status, "attempts": f.attempts,
                 "reason": f.reason, "sha256": f.sha256, "sent_at": f.sent_at, "integrated": f.integrated_count,
                 "next_attempt_at": f.next_attempt_at} for f in tx.list_flows()]


@contextmanager
def _store(site: Site) -> Iterator[Store]:
    store = Store(db.make_engine(site.database_url))
    try:
        yield store
    finally:
        store.close()


def _attempts(site: Site, flow_id: str) -> list[Transmission]:
    with _store(site) as store, store.transaction() as tx:
        flow = tx.find_flow(flow_id)
        assert flow is not None
        return list(tx.transmissions(flow))


def _inbound(site: Site) -> list[InboundMessage]:
    with _store(site) as store, store.transaction() as tx:
        return list(tx.inbound_messages())


@pytest.fixture
def partner_server() -> Iterator[Callable[..., AS2Endpoint]]:
    started: list[AS2Endpoint] = []

    def start(handler: OpensslPartner, port: int = 0) -> AS2Endpoint:
        started.append(AS2Endpoint("127.0.0.1", port, handler).start())
        return started[-1]

    try:
        yield start
    finally:
        for endpoint in started:
            endpoint.stop()


@dataclass
class Served:
    url: str
    process: subprocess.Popen[str]
    stderr: str = ""


@contextmanager
def _gateway_serve(site: Site, port: int) -> Iterator[Served]:
    """`gateway serve` as its own process, as an operator runs it; SIGTERM at the end, whatever happened."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")} | site.env
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--config", str(site.config), "--log-format", "json", "serve",
         "--port", str(port), "--mdn-grace", "1"],
        env=env, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    served = Served(f"http://127.0.0.1:{port}/", process)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "gateway serve did not start listening"
                time.sleep(0.1)
        yield served
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, served.stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise


def _split(raw: bytes) -> tuple[list[str], bytes]:
    head, body = raw.split(b"\r\n\r\n", 1)
    return head.decode("latin-1").split("\r\n"), body


# --- sending -------------------------------------------------------------------------------------------------------


def test_a_flow_goes_out_signed_and_encrypted_and_a_signed_mdn_makes_it_sent(tmp_path: Path, pki: Pki,
                                                                            partner_server) -> None:
    partner = OpensslPartner(pki, tmp_path / "partner")
    endpoint = partner_server(partner)
    site = _site(tmp_path, pki, endpoint.url + "as2/receive")
    write_sample_export(site.inbox / "export.csv", 3, with_errors=False)

    summary, _ = _run(site)

    [flow] = _flows(site)
    assert flow["status"] == "sent" and summary["flows_sent"] == [flow["flow_id"]]
    # openssl, with the partner's key and our certificate only, finds the flow file we packed, under its name.
    assert partner.failures == []
    [opened] = partner.opened
    assert opened.filename == flow["file_name"]
    assert opened.payload == (site.flows / flow["file_name"]).read_bytes()
    assert hashlib.sha256(opened.payload).hexdigest() == flow["sha256"]

    [attempt] = _attempts(site, flow["flow_id"])
    [(headers, body)] = partner.received
    assert attempt.outcome == "succeeded" and attempt.message_id == headers["Message-ID"]
    assert headers["AS2-From"] == f'"{OUR_AS2}"' and headers["Disposition-Notification-Options"] == MDN_OPTIONS
    assert "Receipt-Delivery-Option" not in headers  # synchronous MDN asked for
    lines, sent_body = _split(attempt.request_raw or b"")
    assert lines[0] == "POST /as2/receive HTTP/1.1" and sent_body == body
    assert dict(line.split(": ", 1) for line in lines[1:]) == headers  # the request as the partner got it
    lines, answered = _split(attempt.response_raw or b"")
    assert lines[0] == "HTTP/1.1 200 OK" and answered == partner.answers[0].body
    # The MIC the partner computed from openssl's output is the one we expected back.
    assert f"MIC {opened.mic} matches" in (attempt.receipt or "") and "; processed" in (attempt.receipt or "")
    with _store(site) as store, store.transaction() as tx:
        assert {i.status for i in tx.list_invoices()} == {"sent"}


LIBAS2_ERROR = "automatic-action/MDN-sent-automatically; processed/error=decryption-failed"
LIBAS2_WARNING = "automatic-action/MDN-sent-automatically; processed/warning=duplicate-document"


@pytest.mark.parametrize(("answer", "reason"), [("error", "refused the message: decryption-failed"),
                                                ("wrong-mic", "not the one of what")])
def test_an_error_mdn_fails_the_flow_at_once_with_an_alert_and_keeps_the_evidence(tmp_path: Path, pki: Pki,
                                                                                  partner_server, answer: str,
                                                                                  reason: str) -> None:
    """The error MDN returns the right MIC, and spells its modifier as libas2 does, `error=...` (RFC 4130 writes
    `error: ...`, read the same: tests/test_as2.py): a refusal all the same, named by the partner's error."""
    partner = OpensslPartner(pki, tmp_path / "partner", wrong_mic=answer == "wrong-mic",
                             disposition=LIBAS2_ERROR if answer == "error" else None)
    site = _site(tmp_path, pki, partner_server(partner).url)
    write_sample_export(site.inbox / "export.csv", 2, with_errors=False)

    summary, events = _run(site, code=3)

    [flow] = _stored_flows(site)
    assert flow["status"] == "failed" and flow["attempts"] == 1 and summary["flows_failed"] == [flow["flow_id"]]
    assert reason in flow["reason"]
    [alert] = [e for e in events if e["event"] == "alert.flow_failed"]
    assert alert["retryable"] is False and f"gateway flows retry {flow['flow_id']}" in alert["action"]
    [attempt] = _attempts(site, flow["flow_id"])
    assert attempt.outcome == "failed" and reason in (attempt.error or "")
    assert _split(attempt.request_raw or b"")[1] == partner.received[0][1]
    assert attempt.response_raw is not None and attempt.response_raw.endswith(partner.answers[0].body)
    assert (f"Disposition: {LIBAS2_ERROR}\r\n".encode() in attempt.response_raw) == (answer == "error")
    assert ("MIC" not in flow["reason"]) == (answer != "wrong-mic")  # the partner's error, not the MIC, is named


def test_the_outbound_algorithms_are_checked_by_the_configuration(tmp_path: Path, pki: Pki) -> None:
    site = _site(tmp_path, pki, "http://127.0.0.1:9/")
    partner = load_config(site.config, env={}).partner("chorus")
    assert (partner.as2_signing_digest, partner.as2_encryption) == ("sha256", "aes256-cbc")
    assert (tuple(SIGNING_DIGESTS), tuple(ENCRYPTIONS)) == (AS2_SIGNING_DIGESTS, AS2_ENCRYPTIONS)  # what as2 sends
    text = site.config.read_text()
    for key, value, allowed in (
        ("as2_signing_digest", "md5", "sha256, sha1, sha384, sha512"),
        ("as2_encryption", "AES256-GCM", "aes256-cbc, aes128-cbc, aes128-gcm, aes256-gcm, 3des"),
    ):
        site.config.write_text(text.replace("[partners.chorus.credentials]", f'{key} = "{value}"\n'
                                                                               f"[partners.chorus.credentials]"))
        with pytest.raises(ConfigError) as caught:
            load_config(site.config, env={})
        assert caught.value.key == f"partners.chorus.{key}"
        assert caught.value.message == f"partners.chorus.{key}: must be one of {allowed} (default " \
                                       f"{allowed.split(',')[0]}), got {value!r}"


def test_a_partner_down_is_retried_with_backoff_and_the_resend_carries_the_same_file(tmp_path: Path, pki: Pki,
                                                                                     partner_server) -> None:
    port = _free_port()
    partner = OpensslPartner(pki, tmp_path / "partner")
    site = _site(tmp_path, pki, f"http://127.0.0.1:{port}/", as2_encryption="3des", as2_signing_digest="sha1")
    write_sample_export(site.inbox / "export.csv", 2, with_errors=False)

    summary, events = _run(site)  # nobody listens on the port yet

    [flow] = _stored_flows(site)
    assert flow["status"] == "packed" and flow["attempts"] == 1 and summary["flows_failed"] == []
    [retry] = [e for e in events if e["event"] == "flow.attempt_failed"]
    assert 0.16 <= retry["next_attempt_in_seconds"] <= 0.24
    assert flow["next_attempt_at"] is not None
    [first] = _attempts(site, flow["flow_id"])
    assert first.outcome == "failed" and "POST to" in (first.error or "") and first.response_raw is None
    assert first.request_raw is not None and first.message_id is None

    partner_server(partner, port)
    time.sleep(0.3)
    summary, _ = _run(site)

    [flow] = _stored_flows(site)
    assert flow["status"] == "sent" and summary["flows_sent"] == [flow["flow_id"]]
    first, second = _attempts(site, flow["flow_id"])
    assert second.outcome == "succeeded" and second.message_id == partner.received[0][0]["Message-ID"]
    # The request kept from the failed attempt opens, with openssl, to the same file under the same name as
    # the one that went through: the resend is the same flow, under a new Message-ID.
    # An old partner: 3DES and SHA-1, as configured, and the MIC asked for and returned in SHA-1.
    headers, body = partner.received[0]
    assert headers["Disposition-Notification-Options"].endswith("signed-receipt-micalg=optional, sha-1")
    assert "algorithm: des-ede3-cbc " in _openssl("cms", "-cmsout", "-print", "-inform", "DER", stdin=body).decode()
    assert partner.opened[0].mic.endswith(", sha-1") and f"MIC {partner.opened[0].mic} matches" in second.receipt
    again = partner.open(_split(first.request_raw or b"")[1], "sha-1")
    assert (again.filename, again.payload, again.mic) == (partner.opened[0].filename, partner.opened[0].payload,
                                                          partner.opened[0].mic)
    first_id = [line for line in _split(first.request_raw or b"")[0] if line.startswith("Message-ID: ")]
    assert first_id and first_id != [f"Message-ID: {second.message_id}"]


# --- gateway serve -------------------------------------------------------------------------------------------------


def test_an_asynchronous_mdn_at_gateway_serve_settles_the_flow(tmp_path: Path, pki: Pki, partner_server) -> None:
    partner = OpensslPartner(pki, tmp_path / "partner")
    serve_port = _free_port()
    mdn_url = f"http://127.0.0.1:{serve_port}/"
    site = _site(tmp_path, pki, partner_server(partner).url, mdn="async", mdn_url=mdn_url, compress=True,
                 as2_encryption="aes256-gcm", as2_signing_digest="sha384")
    write_sample_export(site.inbox / "export.csv", 2, with_errors=False)

    with _gateway_serve(site, serve_port) as served:
        summary, events = _run(site)
        [flow] = _stored_flows(site)
        assert flow["status"] == "sending" and summary["flows_sent"] == []
        assert [e["event"] for e in events if e["event"] == "flow.awaiting_mdn"] == ["flow.awaiting_mdn"]
        [(headers, _)] = partner.received
        assert headers["Receipt-Delivery-Option"] == mdn_url
        assert "smime-type=authEnveloped-data" in headers["Content-Type"]  # AES-256-GCM, opened by openssl
        assert headers["Disposition-Notification-Options"].endswith(", sha-384")
        [(url, inbound)] = partner.pending
        assert url == mdn_url and partner.opened[0].payload == (site.flows / flow["file_name"]).read_bytes()
        [attempt] = _attempts(site, flow["flow_id"])
        assert attempt.outcome == "in_progress" and attempt.message_id == headers["Message-ID"]

        # A forged MDN (not the partner's certificate) and one for a message we never sent are kept and
        # refused: they settle nothing.
        forged = build_mdn(inbound, sign_key=pki.stranger.key, sign_cert=pki.stranger.cert)
        assert post_message(url, forged, timeout=30)[0] == 200
        stray_request = MdnRequest(f"<{uuid.uuid4().hex}@x>", OUR_AS2, PARTNER_AS2, True, True, True, "sha-256",
                                   None)
        stray = build_mdn(ParsedMessage(b"", None, "", OUR_AS2, PARTNER_AS2, stray_request.message_id,
                                        inbound.mic, True, True, False, stray_request),
                          sign_key=pki.partner.key, sign_cert=pki.partner.cert)
        assert post_message(url, stray, timeout=30)[0] == 200
        assert _stored_flows(site)[0]["status"] == "sending"

        genuine = build_mdn(inbound, sign_key=pki.partner.key, sign_cert=pki.partner.cert)
        assert post_message(url, genuine, timeout=30)[0] == 200

        [flow] = _stored_flows(site)
        assert flow["status"] == "sent" and flow["sent_at"]
    assert served.process.returncode == 0, served.stderr
    assert '"event": "serve.stopped"' in served.stderr

    [attempt] = _attempts(site, flow["flow_id"])
    assert attempt.outcome == "succeeded" and f"MIC {partner.opened[0].mic} matches" in (attempt.receipt or "")
    forged_row, stray_row, genuine_row = _inbound(site)
    assert (forged_row.kind, forged_row.outcome, forged_row.body) == ("mdn", "refused", forged.body)
    assert "signed with the certificate" in (forged_row.error or "") and forged_row.transmission_id is None
    assert stray_row.outcome == "refused" and "no attempt of ours sent" in (stray_row.error or "")
    assert (genuine_row.kind, genuine_row.outcome, genuine_row.body) == ("mdn", "accepted", genuine.body)
    assert genuine_row.transmission_id == attempt.id and genuine_row.partner == "chorus"
    assert attempt.response_raw is not None and attempt.response_raw.endswith(b"\r\n\r\n" + genuine.body)
    assert f"Message-ID: {genuine.message_id}\r\n".encode() in attempt.response_raw
    alerts = [json.loads(line)["event"] for line in served.stderr.splitlines() if line.startswith("{")]
    assert alerts.count("alert.as2_mdn_refused") == 2


def _partner_message(pki: Pki, workdir: Path, name: str, data: bytes, *,
                     modern: bool = False) -> tuple[OutboundMessage, str]:
    """A report as a Java AS2 server sends it, made by openssl: signed by the partner, encrypted to us; ``modern``:
    RSA-OAEP (SHA-256) and AES-256-GCM, signed with SHA-512 and asking the MDN's MIC in SHA-512."""
    entity = f'Content-Type: application/xml\r\nContent-Disposition: attachment; filename="{name}"\r\n\r\n'.encode()
    entity += data
    (workdir / "entity").write_bytes(entity)
    digest = "sha512" if modern else "sha256"
    signature = _openssl("cms", "-sign", "-binary", "-md", digest, "-in", workdir / "entity", "-outform", "DER",
                         "-signer", pki.partner.cert_path, "-inkey", pki.partner.key_path)
    signed = (b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; '
              b'boundary="b1"\r\n\r\n--b1\r\n' + entity + b"\r\n--b1\r\nContent-Type: application/pkcs7-signature"
              b"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
              + base64.encodebytes(signature).replace(b"\n", b"\r\n") + b"--b1--\r\n")
    (workdir / "signed").write_bytes(signed)
    modern_options = ["-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"] if modern else []
    body = _openssl("cms", "-encrypt", "-binary", "-aes-256-gcm" if modern else "-aes256", "-outform", "DER",
                    "-in", workdir / "signed", "-recip", pki.gateway.cert_path, *modern_options)
    smime_type = "authEnveloped-data" if modern else "enveloped-data"
    headers = {"AS2-Version": "1.2", "AS2-From": PARTNER_AS2, "AS2-To": f'"{OUR_AS2}"',
               "Message-ID": f"<{uuid.uuid4().hex}@aife>", "Subject": name,
               "Content-Type": f'application/pkcs7-mime; smime-type={smime_type}; name="smime.p7m"',
               "Disposition-Notification-To": "as2@aife",
               "Disposition-Notification-Options": MDN_OPTIONS.replace("sha-256", f"sha-{digest[3:]}")}
    mic = _b64_mic(entity, digest)
    return OutboundMessage(headers, body, mic, headers["Message-ID"]), mic


def _verified_mdn(pki: Pki, workdir: Path, headers: dict[str, str], body: bytes) -> bytes:
    """The MDN's report, as openssl verifies it against our certificate."""
    (workdir / "mdn.eml").write_bytes(_smime(headers, body))
    return _openssl("cms", "-verify", "-binary", "-crlfeol", "-in", workdir / "mdn.eml", "-CAfile",
                    pki.gateway.cert_path)


def test_a_report_posted_to_gateway_serve_is_kept_answered_and_reconciled(tmp_path: Path, pki: Pki,
                                                                         partner_server) -> None:
    partner = OpensslPartner(pki, tmp_path / "partner")
    site = _site(tmp_path, pki, partner_server(partner).url)
    write_sample_export(site.inbox / "export.csv", 3, with_errors=False)
    _run(site)
    [flow] = _stored_flows(site)
    assert flow["status"] == "sent"
    outcome = process_flow(flow["file_name"], (site.flows / flow["file_name"]).read_bytes(),
                           settings=SandboxSettings(), now=datetime.now(UTC))
    work = tmp_path / "aife"
    work.mkdir()
    port = _free_port()

    with _gateway_serve(site, port) as served:
        for i, (name, data) in enumerate(outcome.files):
            message, mic = _partner_message(pki, work, name, data, modern=i % 2 == 0)
            status, headers, body = post_message(served.url, message, timeout=30)
            assert status == 200
            report = _verified_mdn(pki, work, headers, body)
            assert b"Disposition: automatic-action/MDN-sent-automatically; processed\r\n" in report
            assert f"Received-Content-MIC: {mic}\r\n".encode() in report
            assert f"Original-Message-ID: {message.message_id}\r\n".encode() in report
        # Sent again (our MDN was lost, say): answered processed again, stored once.
        name, data = outcome.files[0]
        message, _ = _partner_message(pki, work, name, data, modern=True)
        assert b"; processed\r\n" in _verified_mdn(pki, work, *post_message(served.url, message, timeout=30)[1:])
        # Altered on the way: refused with an error MDN, and kept as received.
        tampered_body = bytearray(message.body)
        tampered_body[-17] ^= 0x01
        tampered = OutboundMessage({**message.headers, "Message-ID": "<tampered@aife>"}, bytes(tampered_body),
                                   None, "<tampered@aife>")
        status, headers, body = post_message(served.url, tampered, timeout=30)
        assert status == 200
        assert b"; processed/error: decryption-failed\r\n" in _verified_mdn(pki, work, headers, body)

    rows = _inbound(site)
    assert [(r.kind, r.outcome) for r in rows] == [("message", "accepted")] * (len(outcome.files) + 1) + [
        ("message", "refused")]
    assert rows[-1].body == bytes(tampered_body) and "decrypted" in (rows[-1].error or "")
    assert rows[0].report_id is not None and rows[0].report_id == rows[-2].report_id  # the duplicate
    reports = json.loads(gateway("--config", str(site.config), "reports", "list", "--json", env=site.env).stdout)
    assert sorted(r["file_name"] for r in reports) == sorted(name for name, _ in outcome.files)
    assert {r["partner"] for r in reports} == {"chorus"} and {r["outcome"] for r in reports} == {None}

    summary, _ = _run(site)  # the next pass reconciles what gateway serve stored

    assert summary["reports"] == {"applied": len(outcome.files)}
    [flow] = _stored_flows(site)
    assert flow["status"] == "integrated" and flow["integrated"] == 3


@pytest.mark.parametrize("answer", ["error", "wrong-mic", "libas2-error", "warning"])
def test_an_asynchronous_mdn_with_an_error_or_another_mic_fails_the_flow_and_a_warning_does_not(tmp_path: Path,
                                                                                                 pki: Pki,
                                                                                                 answer: str) -> None:
    """`gateway serve`'s handler in process, on a flow left `sending` as the outbox leaves it for an async MDN.
    A warning (processed all the same) is the one answer that sends the flow, its text kept and logged."""
    site = _site(tmp_path, pki, "http://127.0.0.1:9/", mdn="async", mdn_url="http://127.0.0.1:9/")
    config = load_config(site.config, env={})
    store = Store.open(site.database_url)
    name, data, message_id = "FSO1100A_AAA123_T1.xml", b"<Invoice/>\n", "<m1@chorus-gateway>"
    config.flows_dir.mkdir(parents=True)
    (config.flows_dir / name).write_bytes(data)
    now = datetime.now(UTC)
    try:
        with store.transaction() as tx:
            flow = attempts.open_flow(tx, now=now, flow_id="T1", partner="chorus", interface_code="FSO1100A",
                                      syntax="ubl", file_name=name, sha256=hashlib.sha256(data).hexdigest(),
                                      size=len(data), invoice_count=0, validated_with="[]")
            attempt = attempts.start_attempt(tx, flow, transport="as2", remote_name=name, now=now)
            tx.record_attempt_evidence(attempt.id, message_id=message_id, request=b"POST / HTTP/1.1\r\n\r\n")
        request = MdnRequest(message_id, OUR_AS2, PARTNER_AS2, True, True, True, "sha-256", None)
        credentials = load_credentials(config.partner("chorus"))
        right_mic = flow_mic(config.partner("chorus"), credentials, name, data, compress=False)
        sign = {"sign_key": pki.partner.key, "sign_cert": pki.partner.cert}
        if answer == "error":
            mdn = build_mdn(request, error=AS2Error("unknown signer", disposition=AUTHENTICATION_FAILED), **sign)
        elif answer in ("libas2-error", "warning"):
            disposition = LIBAS2_ERROR if answer == "libas2-error" else LIBAS2_WARNING
            mdn = OpensslPartner(pki, tmp_path / "libas2", disposition=disposition).signed_report(request, right_mic)
        else:
            assert right_mic == _b64_sha256(b'Content-Type: application/xml\r\nContent-Transfer-Encoding: binary\r\n'
                                            b'Content-Disposition: attachment; filename="' + name.encode()
                                            + b'"\r\n\r\n' + data)  # RFC 4130 7.3.1: the signed entity
            mdn = build_mdn(ParsedMessage(data, name, "application/xml", OUR_AS2, PARTNER_AS2, message_id,
                                          _b64_sha256(b"other bytes"), True, True, False, request), **sign)
        receiver = Receiver(config, store, SystemClock(), mdn_grace=0)

        with structlog.testing.capture_logs() as logs:
            assert receiver(mdn.headers, mdn.body)[0] == 200
            assert receiver({"Content-Type": "text/plain"}, b"hello")[0] == 400  # not AS2: kept, refused

        with store.transaction() as tx:
            flow = tx.find_flow("T1")
            assert flow is not None
            [attempt] = tx.transmissions(flow)
            rows = list(tx.inbound_messages())
            if answer == "warning":
                assert flow.status == "sent" and attempt.outcome == "succeeded"
                assert f"{LIBAS2_WARNING}; MIC {right_mic} matches" in (attempt.receipt or "")
                [warned] = [e for e in logs if e["event"] == "as2.mdn_warning"]
                assert warned["warning"] == "duplicate-document" and warned["flow"] == "T1"
                return
            assert flow.status == "failed" and attempt.outcome == "failed"
            expected = {"error": "authentication-failed", "wrong-mic": "not the one of what we signed",
                        "libas2-error": "refused the message: decryption-failed"}[answer]
            assert expected in (flow.reason or "") and expected in (attempt.error or "")
            assert attempt.response_raw is not None and attempt.response_raw.endswith(mdn.body)
            assert attempt.request_raw == b"POST / HTTP/1.1\r\n\r\n"  # what was sent is kept as it was
            assert [(r.kind, r.outcome, r.transmission_id) for r in rows] == [("mdn", "accepted", attempt.id),
                                                                              ("unknown", "refused", None)]
        [alert] = [e for e in logs if e["event"] == "alert.flow_failed"]
        assert alert["flow"] == "T1" and alert["retryable"] is False and "gateway flows retry T1" in alert["action"]
    finally:
        store.close()


# --- one state machine -------------------------------------------------------------------------------------------


def _transitions(store: Store, flow_id: str) -> tuple[list[tuple[str | None, str, str]], list[tuple[str, str, str]]]:
    """The moves the audit journal recorded: (previous, event, status) of the flow, then of its attempts."""
    with store.transaction() as tx:
        flow = tx.find_flow(flow_id)
        assert flow is not None
        attempt_ids = {str(a.id) for a in tx.transmissions(flow)}
        entries = list(tx.audit_events())
    moves, attempt_moves = [], []
    for entry in entries:
        detail = json.loads(entry.detail or "{}")
        if entry.subject_kind == "flow" and entry.subject_id == flow_id and "event" in detail:
            moves.append((detail.get("previous"), detail["event"], entry.action.removeprefix("flow.")))
        if entry.subject_kind == "transmission" and entry.subject_id in attempt_ids:
            attempt_moves.append((detail["previous"], detail["event"], entry.action.removeprefix("attempt.")))
    return moves, attempt_moves


def test_one_flow_through_run_serve_flows_retry_and_a_report_moves_by_the_one_table(tmp_path: Path, pki: Pki,
                                                                                   partner_server) -> None:
    """A pass sends (async MDN awaited), `gateway serve` gets an error MDN (failed), the operator's `flows retry`
    packs it again, a pass sends it again, serve gets the good MDN (sent), a report posted to serve is reconciled
    by the next pass (integrated): every move recorded is one of ``attempts``' tables, in that order."""
    partner = OpensslPartner(pki, tmp_path / "partner")
    site = _site(tmp_path, pki, partner_server(partner).url, mdn="async", mdn_url="http://127.0.0.1:9/")
    write_sample_export(site.inbox / "export.csv", 2, with_errors=False)
    config = load_config(site.config, env={})
    store = Store.open(site.database_url)
    pipeline = Pipeline(config=config, store=store, clock=SystemClock())
    receiver = Receiver(config, store, SystemClock(), mdn_grace=0)
    sign = {"sign_key": pki.partner.key, "sign_cert": pki.partner.cert}
    try:
        pipeline.run_pass()  # `run`
        [flow] = _stored_flows(site)
        assert flow["status"] == "sending"
        refused = build_mdn(partner.pending[-1][1], error=AS2Error("unknown signer",
                                                                   disposition=AUTHENTICATION_FAILED), **sign)
        assert receiver(refused.headers, refused.body)[0] == 200  # `serve`
        assert _stored_flows(site)[0]["status"] == "failed"

        gateway("--config", str(site.config), "flows", "retry", flow["flow_id"], env=site.env)
        pipeline.run_pass()
        genuine = build_mdn(partner.pending[-1][1], **sign)
        assert receiver(genuine.headers, genuine.body)[0] == 200
        assert _stored_flows(site)[0]["status"] == "sent"

        outcome = process_flow(flow["file_name"], (site.flows / flow["file_name"]).read_bytes(),
                               settings=SandboxSettings(), now=datetime.now(UTC))
        (tmp_path / "aife").mkdir()
        for name, data in outcome.files:
            message, _ = _partner_message(pki, tmp_path / "aife", name, data)
            assert receiver(message.headers, message.body)[0] == 200
        assert pipeline.run_pass().reports == {"applied": len(outcome.files)}
        assert _stored_flows(site)[0]["status"] == "integrated"

        moves, attempt_moves = _transitions(store, flow["flow_id"])
    finally:
        pipeline.close()
        store.close()
    assert [event for _previous, event, _status in moves] == [
        "pack", "attempt", "give_up", "retry", "attempt", "delivered", "reported_integrated"]
    for previous, event, status in moves:
        assert attempts.FLOW_TRANSITIONS[(previous and FlowStatus(previous), FlowEvent(event))] == status
    assert [(previous, event, outcome) for previous, event, outcome in attempt_moves] == [
        ("in_progress", "give_up", "failed"), ("in_progress", "delivered", "succeeded")]
    for previous, event, outcome in attempt_moves:
        assert attempts.ATTEMPT_TRANSITIONS[(AttemptOutcome(previous), FlowEvent(event))] == outcome
