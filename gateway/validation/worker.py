"""The schema layers (parsing, XSD, Schematron) in a worker process with a time budget.

A pathological invoice (a 10^6-line document, a rule whose XPath explodes) must not
stall a batch, and SaxonC can neither be interrupted nor trusted not to crash. So the
layers run in a separate process; the parent waits at most the budget, then kills the
worker and reports a ``ValidatorError`` (fail closed: neither valid nor invalid). The
next document starts a fresh worker.

The worker is ``python -m gateway.validation.worker``, talking length-prefixed pickles
over its stdin and stdout: unlike multiprocessing's spawn it does not import the
caller's main module again, and unlike fork it does not inherit the parent's live
Saxon processor.
"""

from __future__ import annotations

import os
import pickle
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import structlog

from gateway.domain import ValidatorFailure
from gateway.errors import ValidatorError
from gateway.validation.invoice import Validation, schema_layers
from gateway.validation.rulesets import RuleRegistry, RuleSet
from gateway.xml.saxon import in_memory

log = structlog.get_logger(__name__)

DEFAULT_TIME_BUDGET = 60.0
#: A worker gets this long to import the gateway before its first document.
_START_BUDGET = 120.0
_HEADER = struct.Struct(">Q")


def _write(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    # Two writes rather than one concatenation: a 65 MB document would be copied once more.
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read_exactly(stream: IO[bytes], size: int) -> bytearray:
    data = bytearray(size)
    view = memoryview(data)
    done = 0
    while done < size:
        count = stream.readinto(view[done:])  # type: ignore[attr-defined]
        if not count:
            raise EOFError
        done += count
    return data


def _read(stream: IO[bytes]) -> Any:
    (size,) = _HEADER.unpack(_read_exactly(stream, _HEADER.size))
    return pickle.loads(_read_exactly(stream, size))


def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """The worker's loop: rule sets first, then (document, profile, own_output) until EOF or
    None; the document is the path of a file the caller wrote (or the bytes themselves)."""
    registry = RuleRegistry(_read(requests))
    _write(replies, ("ready", None))
    while True:
        try:
            request = _read(requests)
        except EOFError:
            return
        if request is None:
            return
        document, profile, own_output = request
        try:
            result = schema_layers(Path(document) if isinstance(document, str) else document, profile=profile,
                                   registry=registry, own_output=own_output)
            _write(replies, ("ok", result))
        except ValidatorError as exc:
            _write(replies, ("validator-error", exc.message))
        except Exception as exc:  # noqa: BLE001 - anything else is a validator fault, reported as such
            _write(replies, ("validator-error", f"the validator failed: {exc!r}"))


class ValidationWorker:
    """One worker process, restarted after a timeout or a crash."""

    def __init__(self, rule_sets: Sequence[RuleSet], *, time_budget: float = DEFAULT_TIME_BUDGET) -> None:
        if time_budget <= 0:
            raise ValueError("time_budget must be positive")
        self.rule_sets = list(rule_sets)
        self.time_budget = time_budget
        self._process: subprocess.Popen[bytes] | None = None
        #: Workers started so far, for the log and for tests.
        self.starts = 0
        # A big document goes to the worker as a file, not down the pipe: the worker then
        # reads it as a stream and Saxon from the file, never holding its bytes (a
        # 100,000-line invoice is some 50 MB; benchmarks/bench_big_invoice.py).
        self._directory = Path(tempfile.mkdtemp(prefix="gateway-validation-"))
        weakref.finalize(self, shutil.rmtree, self._directory, ignore_errors=True)

    def __enter__(self) -> ValidationWorker:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A worker forgotten by its owner must not outlive it.
        self._kill()

    def _start(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.validation.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # Its scratch files (Saxon's report…) inside ours: a worker killed at its time
            # budget cannot clean up, this process does.
            env={**os.environ, "TMPDIR": str(self._directory)},
        )
        self._process = process
        self.starts += 1
        assert process.stdin is not None
        try:
            _write(process.stdin, self.rule_sets)
        except (BrokenPipeError, OSError):
            self._kill()
            raise ValidatorError("the validator process died while starting") from None
        self._receive(_START_BUDGET, f"the validator process did not start within {_START_BUDGET:g} s")
        return process

    def _receive(self, budget: float, late: str, failure: ValidatorFailure = ValidatorFailure.UNAVAILABLE) -> Any:
        """The worker's next reply; after ``budget`` seconds, kill it and raise ``late`` (a ``failure``)."""
        process = self._process
        assert process is not None and process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], budget)
        if not ready:
            self._kill()
            raise ValidatorError(late, failure=failure)
        try:
            return _read(process.stdout)
        except (EOFError, pickle.UnpicklingError, struct.error):
            self._kill()
            raise ValidatorError("the validator process died while validating this document") from None

    def schema_layers(self, payload: bytes, profile: str | None, *, own_output: bool = True) -> Validation:
        """Parsing, XSD and the profile's Schematron, within the time budget (``own_output``:
        see ``invoice.schema_layers``; the choice travels with each document)."""
        process = self._process if self._process is not None and self._process.poll() is None else None
        if process is None:
            process = self._start()
        assert process.stdin is not None
        started = time.monotonic()
        document = self._directory / "document.xml"
        handed: bytes | str = payload
        if not in_memory(payload):
            try:
                document.write_bytes(payload)
            except OSError as exc:
                raise ValidatorError(f"the document could not be handed to the validator ({document}): "
                                     f"{exc.strerror}") from None
            handed = str(document)
        try:
            _write(process.stdin, (handed, profile, own_output))
        except (BrokenPipeError, OSError):
            self._kill()
            raise ValidatorError("the validator process died before this document") from None
        try:
            kind, value = self._receive(
                self.time_budget,
                f"validation exceeded its time budget of {self.time_budget:g} s (worker stopped); raise "
                "[validation] time_budget_seconds if such invoices are expected",
                ValidatorFailure.TIME_BUDGET,
            )
        finally:
            document.unlink(missing_ok=True)
        if kind == "validator-error":
            raise ValidatorError(value)
        log.debug("validation.schema_layers", seconds=round(time.monotonic() - started, 3))
        return value

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait(10)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()

    def close(self) -> None:
        """Stop the worker politely; kill it if it does not stop."""
        process = self._process
        if process is not None and process.poll() is None and process.stdin is not None:
            try:
                _write(process.stdin, None)
                process.wait(5)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                pass
        self._kill()


def main() -> None:
    # Replies get their own descriptor; whatever else writes to stdout (a log line,
    # SaxonC's native code) goes to stderr instead of corrupting the protocol.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
