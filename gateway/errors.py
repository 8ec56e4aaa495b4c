"""The project's own exceptions: one root, one subclass per stage.

The message defaults to the class docstring; every message is meant to be read by an
operator, who should know from it what to fix. The CLI prints it on one line.
"""

from __future__ import annotations

from gateway.domain import ValidatorFailure


class GatewayError(Exception):
    """The gateway failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(GatewayError):
    """The configuration is wrong."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class InputError(GatewayError):
    """An ERP export could not be read.

    Carries where the problem is, so that the quarantine reason and the log line name
    the file, the line and the field.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        xpath: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.field = field
        #: Where in an XML export (IDoc, custom XSLT input) the invoice or value came from.
        self.xpath = xpath
        self.reason = message
        super().__init__(_located(message, file=file, line=line, field=field, xpath=xpath))


def _located(message: str, *, file: str | None, line: int | None, field: str | None, xpath: str | None = None) -> str:
    where = []
    if file:
        where.append(file)
    if line is not None:
        where.append(f"line {line}")
    if xpath:
        where.append(f"at {xpath}")
    if field:
        where.append(f"field {field!r}")
    return f"{', '.join(where)}: {message}" if where else message


class MappingError(GatewayError):
    """An invoice could not be mapped to the target syntax."""


class ValidatorError(GatewayError):
    """A validation layer could not run; the invoice is neither valid nor invalid."""

    def __init__(self, message: str | None = None, *,
                 failure: ValidatorFailure = ValidatorFailure.UNAVAILABLE) -> None:
        #: Whether the same document is validated again at a later pass.
        self.failure = failure
        super().__init__(message)


class PackagingError(GatewayError):
    """A flow could not be packed."""


class TransportError(GatewayError):
    """A flow or a report could not cross the wire."""

    def __init__(
        self,
        message: str,
        *,
        peer: str | None = None,
        retryable: bool = True,
        request: bytes | None = None,
        response: bytes | None = None,
    ) -> None:
        self.peer = peer
        self.retryable = retryable
        #: What was sent and answered before it failed, kept as evidence (AS2).
        self.request = request
        self.response = response
        super().__init__(f"{peer}: {message}" if peer else message)


class ReportError(GatewayError):
    """A report returned by Chorus Pro could not be read."""


class TransitionError(GatewayError):
    """A flow or an attempt cannot make this move from the state it is in."""


class StoreError(GatewayError):
    """The store could not be reached or is in an unexpected state."""
