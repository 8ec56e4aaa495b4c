"""The inbound AS2 receiver behind ``gateway serve``: asynchronous MDNs and reports alike.

The headers are judged before any byte of the body is read (``admit``): a request that names no
agreed partner is refused and kept with its headers only. A partner's body, read to disk by the
endpoint up to its ``as2_max_message_bytes``, is stored raw, in its own transaction, before anything
reads it (``receive``): what a partner sent survives a refusal, a bug or a crash. Then an MDN ends
the attempt it answers (``attempts``), and a message (a Chorus Pro report) is stored once
(``reports.store_report``), which the next pass of ``gateway run`` reconciles like a report picked up
from a directory. A refused body is kept up to ``[serve] refused_body_keep_bytes``, its size and
sha256 always.
"""

from __future__ import annotations

import email.message
import re
import threading
import time
from collections.abc import Mapping

import structlog
from structlog.typing import FilteringBoundLogger

from gateway.clock import Clock
from gateway.config import Config, Partner, ServeSettings
from gateway.domain import InboundOutcome
from gateway.errors import GatewayError, TransportError
from gateway.pipeline import attempts
from gateway.pipeline.outbox import flow_archive
from gateway.pipeline.reports import store_report
from gateway.store import Store, Tx
from gateway.store.rows import AttemptRow, FlowRow
from gateway.transport.as2 import (
    AUTHENTICATION_FAILED,
    SIGNING_DIGESTS,
    UNEXPECTED_ERROR,
    AS2Error,
    Mdn,
    MdnRequest,
    build_mdn,
    parse_mdn,
    parse_message,
    same_mic,
)
from gateway.transport.as2.http import Body, Limits, Refusal
from gateway.transport.as2.transport import AS2Credentials, flow_mic, load_credentials, mdn_problem, raw_message

log = structlog.get_logger("gateway.serve")

Reply = tuple[int, Mapping[str, str], bytes]
_TEXT = {"Content-Type": "text/plain; charset=utf-8"}
#: An MDN is answered 200 whatever became of it: it is kept, and sending it again would not change that.
_MDN_KEPT: Reply = (200, _TEXT, b"MDN received\n")


class Receiver:
    """The endpoint's ``Intake``: ``admit(headers)`` before the body, ``receive(headers, body)`` after, one
    thread per request. Called as ``receiver(headers, body)`` it does both, on a body already in memory."""

    def __init__(self, config: Config, store: Store, clock: Clock, *, mdn_grace: float = 10.0,
                 stopping: threading.Event | None = None) -> None:
        self.config, self.store, self.clock, self.mdn_grace = config, store, clock, mdn_grace
        self.partners = [p for p in config.partners.values() if p.transport == "as2"]
        self.keep = config.serve.refused_body_keep_bytes
        #: Set at SIGTERM: an MDN stops waiting for its attempt to be recorded.
        self.stopping = stopping or threading.Event()

    def __call__(self, headers: dict[str, str], body: bytes) -> Reply:
        admitted = self.admit(headers)
        if not isinstance(admitted, int):
            return admitted
        if len(body) > admitted:
            refusal = Refusal(413, f"the body of {len(body)} bytes exceeds the {admitted} bytes accepted")
            return self.receive(headers, Body.of(body[:admitted + 1], refusal=refusal))
        return self.receive(headers, Body.of(body))

    def admit(self, headers: dict[str, str]) -> int | Reply:
        """A request that is not AS2, or names no agreed partner (AS2-From ours for it, AS2-To its), is refused
        here, kept with its headers only: anyone can POST, so a stranger's body is never read. No MDN answers
        it: an MDN is signed for a partner's agreement, and there is none."""
        try:
            request = MdnRequest.from_headers(headers)
        except AS2Error:
            error = "not an AS2 request (AS2-From, AS2-To or Message-ID missing)"
            self._refuse_unread(headers, "unknown", None, error)
            return 400, _TEXT, b"not an AS2 request: AS2-From, AS2-To and Message-ID are required\n"
        partner = self._partner(request)
        if partner is None:
            sender, recipient = _excerpt(request.as2_from), _excerpt(request.as2_to)
            error = f"no as2 partner has as2_to = {sender} and as2_from = {recipient} (AS2-From and AS2-To)"
            self._refuse_unread(headers, classify(headers, b""), request.message_id[:255], error)
            return 403, _TEXT, f"no AS2 agreement between AS2-From {sender} and AS2-To {recipient}\n".encode()
        return partner.as2_max_message_bytes

    def receive(self, headers: dict[str, str], body: Body) -> Reply:
        try:
            request: MdnRequest | None = MdnRequest.from_headers(headers)
        except AS2Error:
            request = None
        if body.refusal is not None:
            return self._refuse_body(headers, request, body, body.refusal)
        data = body.read()
        kind = "unknown" if request is None else classify(headers, data)
        with self.store.transaction() as tx:
            # "received" until judged: a row left so after a crash was never processed.
            row_id = tx.add_inbound_message(now=self.clock.now(), kind=kind, headers=headers, body=data,
                                            body_size=body.size, body_sha256=body.sha256,
                                            outcome=InboundOutcome.RECEIVED,
                                            message_id=request.message_id[:255] if request else None).id
        bound = log.bind(inbound=row_id, kind=kind, message_id=request.message_id[:255] if request else None,
                         as2_from=request.as2_from if request else None)
        if request is None:
            self._close(row_id, outcome=InboundOutcome.REFUSED,
                        error="not an AS2 request (AS2-From, AS2-To or Message-ID missing)")
            bound.error("alert.as2_refused", error="not an AS2 request")
            return 400, _TEXT, b"not an AS2 request: AS2-From, AS2-To and Message-ID are required\n"
        if kind == "mdn":
            return self._mdn(row_id, request, headers, data, bound)
        return self._message(row_id, request, headers, data, bound)

    def _refuse_unread(self, headers: dict[str, str], kind: str, message_id: str | None, error: str) -> None:
        with self.store.transaction() as tx:
            row = tx.add_inbound_message(now=self.clock.now(), kind=kind, headers=headers, body=b"",
                                         outcome=InboundOutcome.REFUSED, message_id=message_id, error=error)
        log.error("alert.as2_refused", inbound=row.id, error=error, body="not read")

    def _refuse_body(self, headers: dict[str, str], request: MdnRequest | None, body: Body,
                     refusal: Refusal) -> Reply:
        """A body the endpoint stopped reading (over the partner's size, cut at the deadline, malformed): kept up
        to ``refused_body_keep_bytes``, with the size and sha256 of what was read."""
        partner = self._partner(request) if request is not None else None
        error = refusal.reason
        if refusal.status == 413 and partner is not None:
            error += f" from partner {partner.name} ([partners.{partner.name}] as2_max_message_bytes)"
        with self.store.transaction() as tx:
            row = tx.add_inbound_message(now=self.clock.now(), kind=classify(headers, b""), headers=headers,
                                         body=body.read(self.keep), body_size=body.size, body_sha256=body.sha256,
                                         outcome=InboundOutcome.REFUSED, partner=partner.name if partner else None,
                                         message_id=request.message_id[:255] if request else None, error=error)
        log.error("alert.as2_refused", inbound=row.id, partner=partner.name if partner else None, status=refusal.status,
                  error=error, bytes_read=body.size)
        return refusal.response()

    # -- asynchronous MDNs -------------------------------------------------------------------------------------

    def _mdn(self, row_id: int, request: MdnRequest, headers: dict[str, str], body: bytes,
             bound: FilteringBoundLogger) -> Reply:
        partner = self._partner(request)
        if partner is None:
            return self._refuse_mdn(row_id, bound, None, f"no as2 partner has as2_to = {request.as2_from!r} and "
                                                         f"as2_from = {request.as2_to!r}")
        try:
            credentials = load_credentials(partner)
            # Verified before anything else: an MDN that is not the partner's must not settle, or fail,
            # any flow (anyone can POST here). The attempt stays in progress for the genuine one.
            mdn = parse_mdn(headers, body, verify_cert=credentials.partner_cert, expected_message_id=None,
                            expected_mic=None)
        except TransportError as exc:
            return self._refuse_mdn(row_id, bound, partner, f"the MDN is refused: {exc.message}")
        found = self._awaited(mdn.original_message_id)
        if found is None and self.stopping.is_set():
            # Answered 200 it would never come again, and the flow would wait for it for ever.
            problem = (f"serve was stopping before the attempt that sent {mdn.original_message_id} was found; "
                       f"the partner was answered 503 to send the MDN again")
            self._close(row_id, outcome=InboundOutcome.REFUSED, error=problem, partner=partner.name)
            bound.warning("as2.mdn_deferred", error=problem)
            return 503, {**_TEXT, "Retry-After": "60"}, b"the server is stopping: send the MDN again later\n"
        if found is None:
            return self._refuse_mdn(row_id, bound, partner, f"the MDN answers message {mdn.original_message_id}, "
                                                            f"which no attempt of ours sent")
        with self.store.transaction() as tx:
            attempt, flow = tx.attempt(found[0]), tx.flow(found[1])
            if flow.partner != partner.name or not attempts.is_open(attempt):
                problem = (f"the MDN from {partner.name} answers a message sent to {flow.partner}"
                           if flow.partner != partner.name else
                           f"the attempt it answers (flow {flow.flow_id}) is already {attempt.outcome}")
                self._close(row_id, tx=tx, outcome=InboundOutcome.REFUSED, error=problem, partner=partner.name,
                            transmission_id=attempt.id)
                bound.warning("as2.mdn_ignored", flow=flow.flow_id, reason=problem)
                return _MDN_KEPT
            try:
                data = flow_archive(tx, self.config.flows_dir, flow)
            except GatewayError as exc:  # the flow file is gone and cannot be rebuilt: nothing to check the MIC on
                problem = f"the MIC cannot be checked, flow {flow.flow_id} cannot be read: {exc.message}"
                self._close(row_id, tx=tx, outcome=InboundOutcome.REFUSED, error=problem, partner=partner.name,
                            transmission_id=attempt.id)
                bound.error("alert.as2_mdn_refused", flow=flow.flow_id, error=problem)
                return _MDN_KEPT
            self._settle(tx, partner, credentials, attempt, flow, mdn, data, raw_message(headers, body))
            self._close(row_id, tx=tx, outcome=InboundOutcome.ACCEPTED, partner=partner.name,
                        transmission_id=attempt.id)
        return _MDN_KEPT

    def _awaited(self, message_id: str) -> tuple[int, int] | None:
        """The attempt that sent ``message_id``. A partner may answer before `gateway run` has recorded the
        Message-ID (it does so as soon as the POST returns): wait ``mdn_grace`` seconds for it."""
        deadline = time.monotonic() + self.mdn_grace
        while True:
            with self.store.transaction() as tx:
                found = tx.transmission_by_message_id(message_id)
                if found is not None:
                    return found[0].id, found[1].id
            if time.monotonic() >= deadline or self.stopping.wait(0.2):
                return None

    def _settle(self, tx: Tx, partner: Partner, credentials: AS2Credentials, attempt: AttemptRow, flow: FlowRow,
                mdn: Mdn, data: bytes, raw: bytes) -> None:
        """End the attempt the MDN answers, as the outbox does for a synchronous one; an MDN error is never
        retried (the same bytes would get the same answer)."""
        now = self.clock.now()
        # Whether compression was on, and which digest we asked the MIC in, are not recorded: any of these
        # settings is our signature of these very bytes, so a `compress` or `as2_signing_digest` changed while
        # the MDN was on its way does not fail the flow. The MIC is taken in the algorithm the MDN names, if
        # it is one we sign with.
        named = (mdn.mic or "").rpartition(",")[2].strip().lower().replace("-", "")
        digest = named if named in SIGNING_DIGESTS else partner.as2_signing_digest
        mics = [flow_mic(partner, credentials, flow.file_name, data, compress=c, digest=digest)
                for c in (partner.compress, not partner.compress)]
        matches = mdn.mic is not None and any(same_mic(mdn.mic, mic) for mic in mics)
        problem = mdn_problem(mdn, mic_matches=matches)
        bound = log.bind(flow=flow.flow_id, partner=partner.name, attempt=attempt.attempt,
                         message_id=attempt.message_id)
        if problem is None:
            sent = attempts.attempt_delivered(tx, flow.id, attempt.id, now=now, response=raw,
                                              receipt=f"AS2 {attempt.message_id}: asynchronous MDN "
                                                      f"{mdn.message_id}: {mdn.disposition}; MIC {mdn.mic} matches")
            if sent:
                bound.info("flow.sent", file_name=flow.file_name, mdn=mdn.message_id)
            if mdn.warning is not None:
                bound.warning("as2.mdn_warning", warning=mdn.warning, mdn=mdn.message_id)
            return
        attempts.attempt_failed(tx, flow.id, attempt.id, error=problem, retry_in=None, now=now, response=raw)
        bound.error("alert.flow_failed", attempts=flow.attempts, retryable=False, error=problem,
                    action=f"fix the cause with the partner, then: gateway flows retry {flow.flow_id}")

    def _refuse_mdn(self, row_id: int, bound: FilteringBoundLogger, partner: Partner | None, problem: str) -> Reply:
        self._close(row_id, outcome=InboundOutcome.REFUSED, error=problem, partner=partner.name if partner else None)
        bound.error("alert.as2_mdn_refused", error=problem)
        return _MDN_KEPT

    # -- messages (reports) --------------------------------------------------------------------------------------

    def _message(self, row_id: int, request: MdnRequest, headers: dict[str, str], body: bytes,
                 bound: FilteringBoundLogger) -> Reply:
        partner = self._partner(request)
        credentials = None
        try:
            if partner is None:
                raise AS2Error(f"no partner is agreed with AS2 name {request.as2_from!r} sending to "
                               f"{request.as2_to!r}", disposition=AUTHENTICATION_FAILED)
            credentials = load_credentials(partner)
            inbound = parse_message(headers, body, decrypt_key=credentials.own_key, decrypt_cert=credentials.own_cert,
                                    verify_cert=credentials.partner_cert)
        except TransportError as exc:
            error = exc if isinstance(exc, AS2Error) else AS2Error(exc.message, disposition=UNEXPECTED_ERROR)
            self._close(row_id, outcome=InboundOutcome.REFUSED, error=error.message,
                        partner=partner.name if partner else None)
            bound.error("alert.as2_message_refused", error=error.message,
                        disposition=error.disposition)
            return self._error_reply(request, error, credentials)
        assert partner is not None and credentials is not None
        with self.store.transaction() as tx:
            report, stored = store_report(tx, inbound.payload, file_name=inbound.filename, partner=partner.name,
                                          now=self.clock.now())
            self._close(row_id, tx=tx, outcome=InboundOutcome.ACCEPTED, partner=partner.name, report_id=report.id)
        bound.info("as2.report_received", partner=partner.name, file=report.file_name,
                   report=report.id, duplicate=not stored, bytes=len(inbound.payload))
        if not request.wanted:
            return 200, _TEXT, b"received\n"
        if request.async_url:
            bound.warning("as2.async_mdn_not_supported", url=request.async_url)
        # A duplicate is answered "processed" like the first time (RFC 4130 9.3): a warning or an
        # error would make the partner send it again, and again.
        mdn = build_mdn(inbound, sign_key=credentials.own_key, sign_cert=credentials.own_cert)
        return 200, mdn.headers, mdn.body

    def _error_reply(self, request: MdnRequest, error: AS2Error, credentials: AS2Credentials | None) -> Reply:
        """An error MDN, signed with our key for that partner (or for the AS2 name the message was sent to)
        when there is one; a plain 400 when no MDN was asked for, or a signed one was and cannot be made."""
        if request.wanted:
            credentials = credentials or self._our_credentials(request.as2_to)
            try:
                mdn = build_mdn(request, error=error, sign_key=credentials.own_key if credentials else None,
                                sign_cert=credentials.own_cert if credentials else None)
                return 200, mdn.headers, mdn.body
            except (AS2Error, ValueError):
                pass
        return 400, _TEXT, f"refused: {error.message}\n".encode("utf-8", "replace")

    def _our_credentials(self, as2_name: str) -> AS2Credentials | None:
        for partner in self.partners:
            if partner.as2_from == as2_name:
                try:
                    return load_credentials(partner)
                except TransportError:
                    continue
        return None

    # -- shared ---------------------------------------------------------------------------------------------------

    def _partner(self, request: MdnRequest) -> Partner | None:
        """The partner whose AS2 names are the sender's and ours: both must match the agreement."""
        return next((p for p in self.partners if p.as2_to == request.as2_from and p.as2_from == request.as2_to),
                    None)

    def _close(self, row_id: int, *, tx: Tx | None = None, outcome: InboundOutcome, **fields: object) -> None:
        if tx is None:
            with self.store.transaction() as own:
                self._close(row_id, tx=own, outcome=outcome, **fields)
            return
        keep = self.keep if outcome is InboundOutcome.REFUSED else None
        tx.settle_inbound_message(row_id, outcome=outcome, keep_body_bytes=keep, **fields)


def _excerpt(value: str, limit: int = 100) -> str:
    """A sender's value as it may appear in a message: quoted, escaped, and bounded."""
    return ascii(value[:limit]) + ("..." if len(value) > limit else "")


def classify(headers: Mapping[str, str], body: bytes) -> str:
    """``mdn`` for a disposition notification, signed or not; ``message`` for anything else AS2 carries."""
    value = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    parsed = email.message.Message()
    parsed["Content-Type"] = value
    ctype = parsed.get_content_type()
    if ctype == "multipart/report":
        return "mdn"
    boundary = parsed.get_param("boundary")
    if ctype == "multipart/signed" and isinstance(boundary, str):
        # A signed MDN is a multipart/signed whose first part is the multipart/report.
        first = re.search(rb"(?:^|\n)--" + re.escape(boundary.encode("latin-1")) + rb"[ \t]*\r?\n(.*?)\r?\n\r?\n",
                          body[:65536], re.S)
        if first and re.search(rb"(?im)^content-type:[ \t]*multipart/report", first.group(1)):
            return "mdn"
    return "message"


def endpoint_limits(settings: ServeSettings) -> Limits:
    """``[serve]`` as the endpoint takes it; the body size is each partner's (``Receiver.admit``)."""
    return Limits(max_connections=settings.max_connections, request_deadline=settings.request_deadline_seconds,
                  max_header_bytes=settings.max_header_bytes, max_headers=settings.max_headers,
                  shutdown_grace=settings.shutdown_grace_seconds)
