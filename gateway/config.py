"""Configuration: ``gateway.toml`` read once into frozen dataclasses.

Defaults live here and nowhere else. A wrong file is reported with the key and the
reason before anything runs. This module reads the file; it creates no directory.
"""

from __future__ import annotations

import os
import re
import tomllib
from urllib.parse import SplitResult, urlsplit
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gateway.domain import CHANNEL_SYNTAXES, Syntax
from gateway.errors import ConfigError, MappingError
from gateway.intake.csv_export import encoding_problem
from gateway.intake.files import COMPLETION_STRATEGIES, WATCH_MODES
from gateway.intake.readers import INPUT_FORMATS, resolve_input_format
from gateway.intake.records import DEFAULT_MAX_INVOICE_BYTES, DEFAULT_MAX_LINES_PER_INVOICE, VAT_ROUNDING_POLICIES
from gateway.starter_config import STARTER_CONFIG
from gateway.validation.rulesets import DEFAULT_PROFILE, PROFILES
from gateway.xml.saxon import check_stylesheet

ENV_CONFIG = "GATEWAY_CONFIG"
ENV_DATABASE_URL = "GATEWAY_DATABASE_URL"
ENV_DATA_DIR = "GATEWAY_DATA_DIR"
DEFAULT_DATA_DIR = "gateway-data"

TRANSPORT_KINDS = ("local", "sftp", "as2")
#: Transports this version can run; the others are accepted in the file but refused by
#: ``config check`` so that nobody believes a flow went out over them.
AVAILABLE_TRANSPORTS = ("local", "sftp", "as2")
# DOMAIN.md §1: partner codes look like AAA999 (3–8 characters).
_PARTNER_CODE = re.compile(r"^[A-Z0-9]{3,8}$")
DEFAULT_FILE_NAME_TEMPLATE = "{interface}_{partner_code}_{flow_id}.tar.gz"
XML_FILE_NAME_TEMPLATE = "{interface}_{partner_code}_{flow_id}.xml"
_TEMPLATE_FIELDS = {"interface", "partner_code", "flow_id", "partner"}
#: AS2 outbound algorithms, defaults first (``gateway.transport.as2.SIGNING_DIGESTS`` and ``ENCRYPTIONS``).
AS2_SIGNING_DIGESTS = ("sha256", "sha1", "sha384", "sha512")
AS2_ENCRYPTIONS = ("aes256-cbc", "aes128-cbc", "aes128-gcm", "aes256-gcm", "3des")


@dataclass(frozen=True)
class CsvSettings:
    delimiter: str = ";"
    encoding: str = "utf-8"
    decimal: str = "."
    date_format: str = "%Y-%m-%d"


@dataclass(frozen=True)
class Channel:
    """A watched directory whose ERP exports go to one partner in one syntax."""

    name: str
    watch_dir: Path
    partner: str
    input_format: str = "csv"
    syntax: Syntax = Syntax.UBL
    csv: CsvSettings = field(default_factory=CsvSettings)
    #: The channel's own XSLT to export records (``input_format = "xslt"``), absolute.
    input_stylesheet: Path | None = None
    #: A file younger than this is left alone: the ERP may still be writing it.
    settle_seconds: float = 2.0
    #: How the ERP shows an export is complete: "settle", "rename" or "done-file"
    #: (``gateway.intake.files.COMPLETION_STRATEGIES``, docs/inputs.md).
    completion: str = "settle"
    #: "events": file events wake the daemon; "poll": every poll_seconds only (NFS, SMB).
    watch: str = "events"
    #: Schematron layers run on its invoices (``gateway.validation.rulesets.PROFILES``).
    validation_profile: str = DEFAULT_PROFILE
    #: The VAT the ERP states: sent when per-line rounding explains it ("erp"), or
    #: recomputed per rate and an invoice that differs held back ("recompute").
    vat_rounding: str = "erp"
    #: One invoice beyond these is held back unread (its lines; its bytes in the export).
    max_lines_per_invoice: int = DEFAULT_MAX_LINES_PER_INVOICE
    max_invoice_bytes: int = DEFAULT_MAX_INVOICE_BYTES


@dataclass(frozen=True)
class Partner:
    """Where flows go and where reports come back from."""

    name: str
    transport: str
    partner_code: str
    outbound_dir: Path | None = None  # local transport
    inbound_dir: Path | None = None  # local transport
    endpoint: str | None = None  # sftp host or AS2 URL
    credentials: Mapping[str, str] = field(default_factory=dict)
    file_name_template: str = DEFAULT_FILE_NAME_TEMPLATE
    # DOMAIN.md §1: one E1 flow holds at most 500 invoices and 1 GB.
    max_invoices_per_flow: int = 500
    max_flow_bytes: int = 1_000_000_000
    max_attempts: int = 5
    #: Write a UBL credit note (381) as an Invoice of type 381 rather than a CreditNote:
    #: refused when read (EN 16931 BR-CL-01), kept for code that passes it on.
    credit_note_as_invoice: bool = False
    #: "tar.gz": one XML per invoice in a tar.gz lot; "xml": one invoice per flow, sent
    #: as the XML file itself.
    packaging: str = "tar.gz"
    #: Retries: the n-th failed attempt waits initial × 2^(n-1) seconds (± 20 % jitter),
    #: at most retry_max_seconds; after max_attempts the flow is failed.
    retry_initial_seconds: float = 60.0
    retry_max_seconds: float = 3600.0
    #: Network timeout of one connection or request, in seconds.
    timeout_seconds: float = 60.0
    #: SFTP: remote directories (relative to the login directory).
    remote_outbound_dir: str = "."
    remote_inbound_dir: str = "reports"
    #: Where a picked-up report is moved remotely; empty: deleted.
    remote_done_dir: str | None = None
    #: AS2: identities, MDN mode ("sync" or "async"), the URL our endpoint answers async
    #: MDNs on, and compression (RFC 5402).
    as2_from: str | None = None
    as2_to: str | None = None
    mdn: str = "sync"
    mdn_url: str | None = None
    compress: bool = False
    #: AS2: the digest we sign with (also our micalg and the MIC we ask the MDN for), and the content
    #: encryption we send with; 3des and sha1 only for partners that cannot do better.
    as2_signing_digest: str = AS2_SIGNING_DIGESTS[0]
    as2_encryption: str = AS2_ENCRYPTIONS[0]
    #: Hours within which a sent flow's integration report is expected.
    report_deadline_hours: float = 4.0
    #: AS2: the largest request body (message or MDN) `gateway serve` reads from this partner. What comes in is
    #: MDNs (a few KB) and reports: a CR per flow of at most 500 invoices (well under 1 MB) or a batch of
    #: lifecycle statuses (hundreds of bytes each: 20 MB is some 40,000 of them in one file). Opening a
    #: message takes about 13 times its size in memory (benchmarks/bench_serve.py): the cap is that bound.
    as2_max_message_bytes: int = 20_000_000

    def credential(self, name: str) -> Path | None:
        """The file named by ``[partners.X.credentials] name`` (never a secret inline)."""
        value = self.credentials.get(name)
        return Path(value) if value else None


@dataclass(frozen=True)
class SandboxConfig:
    """The built-in Chorus Pro simulator, run in-process after each sending step."""

    enabled: bool = True
    root: Path = Path("sandbox")
    partner_code: str = "AAA123"
    #: What it makes of the invoices (docs/sandbox.md): default | all-integrated | partial | rejected | silent.
    scenario: str = "default"
    #: Scenario "partial": the invoice numbers rejected, with this code and label.
    reject: tuple[str, ...] = ()
    reject_code: str = "SCENARIO"
    reject_label: str | None = None
    #: Statuses each integrated invoice receives; status k is due k × the interval after integration.
    lifecycle: tuple[str, ...] = ("01", "03")
    lifecycle_interval_seconds: float = 0.0
    #: cppstatut | cdar
    report_format: str = "cppstatut"


@dataclass(frozen=True)
class ValidationSettings:
    """How the validation layers run for every channel."""

    #: Seconds one invoice may spend in the schema layers (worker process) before its
    #: outcome is validation-error.
    time_budget_seconds: float = 60.0
    #: Severity of a buyer SIRET absent from the imported directory of public structures.
    unknown_buyer: str = "warning"
    #: Chorus Pro E1 invoice numbers: at most 20 characters (DOMAIN.md §3).
    max_invoice_number_length: int = 20


@dataclass(frozen=True)
class ServeSettings:
    """What one client may cost `gateway serve` (docs/transport.md, "Limits of gateway serve")."""

    #: Connections open at once; the next one is answered 503 with Retry-After.
    max_connections: int = 16
    #: The whole request, headers and body, must arrive within this; else 408 and the connection is closed.
    request_deadline_seconds: float = 60.0
    #: The request line and headers, in bytes and in number of header lines; beyond: 431.
    max_header_bytes: int = 65_536
    max_headers: int = 100
    #: A refused request's body is kept up to this many bytes (its size and sha256 always).
    refused_body_keep_bytes: int = 1_048_576
    #: At SIGTERM, requests already read may finish within this; connections still sending are closed at once.
    shutdown_grace_seconds: float = 5.0


@dataclass(frozen=True)
class Config:
    data_dir: Path
    database_url: str
    channels: tuple[Channel, ...]
    partners: Mapping[str, Partner]
    sandbox: SandboxConfig
    log_format: str = "auto"
    poll_seconds: float = 5.0
    source: Path | None = None  # the file read, None for embedded defaults
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    serve: ServeSettings = field(default_factory=ServeSettings)

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"

    @property
    def archive_dir(self) -> Path:
        return self.data_dir / "archive"

    @property
    def processing_dir(self) -> Path:
        """Where exports wait, claimed, while they are read (one directory per channel)."""
        return self.data_dir / "processing"

    @property
    def flows_dir(self) -> Path:
        return self.data_dir / "flows"

    def partner(self, name: str) -> Partner:
        return self.partners[name]


def default_config(data_dir: Path) -> Config:
    """Embedded defaults: SQLite, local directories and the sandbox, all under data_dir."""
    return _build({}, base=data_dir.resolve(), source=None)


def load_config(
    path: Path | None = None,
    *,
    data_dir: Path | None = None,
    env: Mapping[str, str] = os.environ,
) -> Config:
    """Read the configuration: ``path``, else ``$GATEWAY_CONFIG``, else embedded defaults.

    ``$GATEWAY_DATABASE_URL`` overrides the database in either case.
    """
    if path is None and env.get(ENV_CONFIG):
        path = Path(env[ENV_CONFIG])
    if path is None:
        base = data_dir or Path(env.get(ENV_DATA_DIR, DEFAULT_DATA_DIR))
        config = default_config(base)
    else:
        config = _build(_read_toml(path), base=path.resolve().parent, source=path, data_dir=data_dir)
    if env.get(ENV_DATABASE_URL):
        config = replace(config, database_url=env[ENV_DATABASE_URL])
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


class _Section:
    """A TOML table read key by key; remembers where it is to name keys in errors."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError("must be a table", key=path)
        self.data = data
        self.path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, kind: type | tuple[type, ...], default: Any) -> Any:
        self.used.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise ConfigError(f"expected a number, got {value!r}", key=self.key(name))
        if not isinstance(value, kind):
            expected = kind.__name__ if isinstance(kind, type) else "a number"
            raise ConfigError(f"expected {expected}, got {value!r}", key=self.key(name))
        return value

    def table(self, name: str) -> _Section:
        self.used.add(name)
        return _Section(self.data.get(name, {}), self.key(name))

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError("unknown key (misspelt?)", key=self.key(unknown[0]))


def _positive(section: _Section, name: str, default: float, kind: type = int) -> Any:
    value = section.get(name, kind if kind is int else (int, float), default)
    if value <= 0:
        raise ConfigError(f"must be greater than 0, got {value}", key=section.key(name))
    return value


def _build(raw: dict[str, Any], *, base: Path, source: Path | None, data_dir: Path | None = None) -> Config:
    top = _Section(raw, "")
    gw = top.table("gateway")
    data = (data_dir or base / gw.get("data_dir", str, ".")).resolve()
    database_url = gw.get("database_url", str, "") or f"sqlite:///{data / 'gateway.db'}"
    log_format = gw.get("log_format", str, "auto")
    if log_format not in ("auto", "json", "console"):
        raise ConfigError("must be one of auto, json, console", key=gw.key("log_format"))
    poll = _positive(gw, "poll_seconds", 5.0, float)
    gw.done()

    sandbox = _sandbox(top.table("sandbox"), data)
    validation = _validation(top.table("validation"))
    serve = _serve(top.table("serve"))
    partners = _partners(top.table("partners"), data, sandbox)
    channels = _channels(top.table("channels"), data, partners, base)
    top.done()
    return Config(
        data_dir=data,
        database_url=database_url,
        channels=channels,
        partners=partners,
        sandbox=sandbox,
        log_format=log_format,
        poll_seconds=poll,
        source=source,
        validation=validation,
        serve=serve,
    )


def _serve(section: _Section) -> ServeSettings:
    defaults = ServeSettings()
    keep = section.get("refused_body_keep_bytes", int, defaults.refused_body_keep_bytes)
    if keep < 0:
        raise ConfigError(f"must be 0 or more, got {keep}", key=section.key("refused_body_keep_bytes"))
    settings = ServeSettings(
        max_connections=_positive(section, "max_connections", defaults.max_connections),
        request_deadline_seconds=float(_positive(section, "request_deadline_seconds",
                                                 defaults.request_deadline_seconds, float)),
        max_header_bytes=_positive(section, "max_header_bytes", defaults.max_header_bytes),
        max_headers=_positive(section, "max_headers", defaults.max_headers),
        refused_body_keep_bytes=keep,
        shutdown_grace_seconds=float(_positive(section, "shutdown_grace_seconds", defaults.shutdown_grace_seconds,
                                               float)),
    )
    section.done()
    return settings


def _validation(section: _Section) -> ValidationSettings:
    defaults = ValidationSettings()
    budget = _positive(section, "time_budget_seconds", defaults.time_budget_seconds, float)
    unknown_buyer = section.get("unknown_buyer", str, defaults.unknown_buyer)
    if unknown_buyer not in ("warning", "error"):
        raise ConfigError("must be warning or error", key=section.key("unknown_buyer"))
    length = _positive(section, "max_invoice_number_length", defaults.max_invoice_number_length)
    section.done()
    return ValidationSettings(time_budget_seconds=float(budget), unknown_buyer=unknown_buyer,
                              max_invoice_number_length=length)


def _sandbox(section: _Section, data: Path) -> SandboxConfig:
    enabled = section.get("enabled", bool, True)
    root = data / section.get("dir", str, "sandbox")
    code = section.get("partner_code", str, "AAA123")
    if not _PARTNER_CODE.match(code):
        raise ConfigError("must be 3 to 8 capital letters or digits", key=section.key("partner_code"))
    defaults = SandboxConfig()
    behaviour: dict[str, Any] = {
        "scenario": section.get("scenario", str, defaults.scenario),
        "reject": _strings(section, "reject", defaults.reject),
        "reject_code": section.get("reject_code", str, defaults.reject_code),
        "reject_label": section.get("reject_label", str, defaults.reject_label),
        "lifecycle": _strings(section, "lifecycle", defaults.lifecycle),
        "lifecycle_interval_seconds": float(
            section.get("lifecycle_interval_seconds", (int, float), defaults.lifecycle_interval_seconds)
        ),
        "report_format": section.get("report_format", str, defaults.report_format),
    }
    from gateway.sandbox.scenarios import settings_problem  # here: the sandbox package imports much

    problem = settings_problem(**behaviour)
    if problem is not None:
        raise ConfigError(problem[1], key=section.key(problem[0]))
    section.done()
    return SandboxConfig(enabled=enabled, root=root, partner_code=code, **behaviour)


def _strings(section: _Section, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    values = section.get(name, list, list(default))
    if not all(isinstance(value, str) for value in values):
        raise ConfigError(f"expected a list of strings, got {values!r}", key=section.key(name))
    return tuple(values)


def _partners(section: _Section, data: Path, sandbox: SandboxConfig) -> dict[str, Partner]:
    if not section.data:
        # Embedded default: the sandbox, reached through two local directories.
        return {
            "sandbox": Partner(
                name="sandbox",
                transport="local",
                partner_code=sandbox.partner_code,
                outbound_dir=sandbox.root / "inbox",
                inbound_dir=sandbox.root / "outbox",
            )
        }
    partners = {}
    for name in section.data:
        partners[name] = _partner(section.table(name), name, data)
    section.done()
    return partners


def _partner(section: _Section, name: str, data: Path) -> Partner:
    transport = section.get("transport", str, "")
    if transport not in TRANSPORT_KINDS:
        raise ConfigError(f"must be one of {', '.join(TRANSPORT_KINDS)}", key=section.key("transport"))
    code = section.get("partner_code", str, "")
    if not _PARTNER_CODE.match(code):
        raise ConfigError(
            "must be the Chorus Pro partner code, 3 to 8 capital letters or digits (e.g. AAA123)",
            key=section.key("partner_code"),
        )
    layout = section.data.get("packaging", "tar.gz")
    default_template = XML_FILE_NAME_TEMPLATE if layout == "xml" else DEFAULT_FILE_NAME_TEMPLATE
    template = section.get("file_name_template", str, default_template)
    _check_template(template, section.key("file_name_template"))
    # The flow's bytes are read back by their name's suffix (pipeline.outbox.flow_archive).
    if (layout == "xml") == template.endswith(".tar.gz"):
        expected = ".xml" if layout == "xml" else ".tar.gz"
        raise ConfigError(f"must end with {expected} for packaging = {layout!r}", key=section.key("file_name_template"))
    outbound = section.get("outbound_dir", str, None)
    inbound = section.get("inbound_dir", str, None)
    if transport == "local":
        for key, value in (("outbound_dir", outbound), ("inbound_dir", inbound)):
            if not value:
                raise ConfigError("is required for the local transport", key=section.key(key))
    endpoint = section.get("endpoint", str, None)
    if transport != "local" and not endpoint:
        raise ConfigError(f"is required for the {transport} transport", key=section.key("endpoint"))
    credentials = section.table("credentials")
    for key, value in credentials.data.items():
        if not isinstance(value, str):
            raise ConfigError("must be a file path (string)", key=credentials.key(key))
        if key not in CREDENTIALS.get(transport, ()):
            known = ", ".join(CREDENTIALS.get(transport, ())) or "none"
            raise ConfigError(f"unknown credential for the {transport} transport (known: {known})",
                              key=credentials.key(key))
    if section.get("credit_note_as_invoice", bool, False):
        # Every validation profile applies EN 16931, so each credit note would be held back.
        raise ConfigError(
            "true is refused: EN 16931 allows type 381 only in a UBL CreditNote (BR-CL-01), which the gateway's "
            "validation applies; remove the key (credit notes are sent as UBL CreditNote)",
            key=section.key("credit_note_as_invoice"),
        )
    partner = Partner(
        name=name,
        transport=transport,
        partner_code=code,
        outbound_dir=data / outbound if outbound else None,
        inbound_dir=data / inbound if inbound else None,
        endpoint=endpoint,
        credentials={k: str(data / v) for k, v in credentials.data.items()},
        file_name_template=template,
        max_invoices_per_flow=_positive(section, "max_invoices_per_flow", 500),
        max_flow_bytes=_positive(section, "max_flow_bytes", 1_000_000_000),
        max_attempts=_positive(section, "max_attempts", 5),
        **_wire_settings(section, transport),
    )
    section.done()
    return partner


#: Credential files each transport reads (``[partners.X.credentials]``).
CREDENTIALS = {
    "local": (),
    "sftp": ("known_hosts", "private_key", "passphrase_file", "password_file"),
    "as2": ("own_key", "own_cert", "partner_cert", "ca_file"),
}


def _wire_settings(section: _Section, transport: str) -> dict[str, Any]:
    """Packaging, retries and the settings of the sftp and as2 transports."""
    packaging = section.get("packaging", str, "tar.gz")
    if packaging not in ("tar.gz", "xml"):
        raise ConfigError("must be tar.gz or xml", key=section.key("packaging"))
    mdn = section.get("mdn", str, "sync")
    if mdn not in ("sync", "async"):
        raise ConfigError("must be sync or async", key=section.key("mdn"))
    settings: dict[str, Any] = {
        "packaging": packaging,
        "retry_initial_seconds": float(_positive(section, "retry_initial_seconds", 60.0, float)),
        "retry_max_seconds": float(_positive(section, "retry_max_seconds", 3600.0, float)),
        "timeout_seconds": float(_positive(section, "timeout_seconds", 60.0, float)),
        "remote_outbound_dir": section.get("remote_outbound_dir", str, "."),
        "remote_inbound_dir": section.get("remote_inbound_dir", str, "reports"),
        "remote_done_dir": section.get("remote_done_dir", str, "") or None,
        "as2_from": section.get("as2_from", str, None),
        "as2_to": section.get("as2_to", str, None),
        "mdn": mdn,
        "mdn_url": section.get("mdn_url", str, None),
        "compress": section.get("compress", bool, False),
        "as2_signing_digest": _one_of(section, "as2_signing_digest", AS2_SIGNING_DIGESTS),
        "as2_encryption": _one_of(section, "as2_encryption", AS2_ENCRYPTIONS),
        "report_deadline_hours": float(_positive(section, "report_deadline_hours", 4.0, float)),
        "as2_max_message_bytes": _positive(section, "as2_max_message_bytes", 20_000_000),
    }
    if transport == "sftp":
        url = urlsplit(section.data.get("endpoint") or "")
        if url.scheme != "sftp" or not url.hostname or not url.username:
            raise ConfigError("must read sftp://user@host[:port]", key=section.key("endpoint"))
        _check_port(url, section.key("endpoint"))
        credentials = section.data.get("credentials", {})
        if "known_hosts" not in credentials:
            raise ConfigError("is required for sftp: the server's host key is pinned from it, never learnt",
                              key=section.key("credentials.known_hosts"))
        if "private_key" not in credentials and "password_file" not in credentials:
            raise ConfigError("needs private_key or password_file for sftp: the gateway logs in with nothing "
                              "else (no SSH agent, no ~/.ssh)", key=section.key("credentials"))
    if transport == "as2":
        for key in ("as2_from", "as2_to"):
            if not settings[key]:
                raise ConfigError("is required for the as2 transport", key=section.key(key))
        if mdn == "async" and not settings["mdn_url"]:
            raise ConfigError('is required with mdn = "async": the URL of `gateway serve`',
                              key=section.key("mdn_url"))
        if settings["mdn_url"]:
            _check_port(urlsplit(settings["mdn_url"]), section.key("mdn_url"))
        _check_as2(section)
    return settings


def _one_of(section: _Section, name: str, allowed: tuple[str, ...]) -> str:
    value = section.get(name, str, allowed[0])
    if value not in allowed:
        raise ConfigError(f"must be one of {', '.join(allowed)} (default {allowed[0]}), got {value!r}",
                          key=section.key(name))
    return value


def _check_as2(section: _Section) -> None:
    """The partner's AS2 URL and the three credential files AS2 cannot work without."""
    url = urlsplit(section.data.get("endpoint") or "")
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ConfigError("must be the partner's AS2 URL, http(s)://host[:port]/path", key=section.key("endpoint"))
    _check_port(url, section.key("endpoint"))
    for name in ("own_key", "own_cert", "partner_cert"):
        if name not in section.data.get("credentials", {}):
            raise ConfigError("is required for as2: our signing and decryption key, our certificate, the "
                              "partner's certificate (PEM files)", key=section.key(f"credentials.{name}"))


def _check_port(url: SplitResult, key: str) -> None:
    """A port written in a URL must be 1 to 65535 (urlsplit raises on the first read of a wrong one)."""
    try:
        port = url.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        written = url.netloc.rpartition(":")[2]
        raise ConfigError(f"port {written} is not a port number (1 to 65535)", key=key)


def _check_template(template: str, key: str) -> None:
    fields = set(re.findall(r"{(\w*)}", template))
    unknown = fields - _TEMPLATE_FIELDS
    if unknown:
        raise ConfigError(
            f"unknown placeholder {{{sorted(unknown)[0]}}}; use {', '.join(sorted(_TEMPLATE_FIELDS))}",
            key=key,
        )
    if "flow_id" not in fields:
        raise ConfigError("must contain {flow_id}, or two flows would get the same name", key=key)


def _channels(section: _Section, data: Path, partners: Mapping[str, Partner], base: Path) -> tuple[Channel, ...]:
    if not section.data:
        first = next(iter(partners))
        return (Channel(name="erp", watch_dir=data / "inbox" / "erp", partner=first),)
    channels = []
    for name in section.data:
        channels.append(_channel(section.table(name), name, data, partners, base))
    section.done()
    return tuple(channels)


def _channel(section: _Section, name: str, data: Path, partners: Mapping[str, Partner], base: Path) -> Channel:
    watch_dir = section.get("watch_dir", str, f"inbox/{name}")
    input_format, stylesheet = _input_format(section, base)
    syntax_name = section.get("syntax", str, "ubl")
    try:
        syntax = Syntax(syntax_name)
    except ValueError:
        choices = ", ".join(s.value for s in Syntax)
        raise ConfigError(f"must be one of {choices}", key=section.key("syntax")) from None
    if syntax not in CHANNEL_SYNTAXES:
        raise ConfigError(
            f"{syntax.value} is produced by `gateway map` only in this version; a channel sends "
            + ", ".join(s.value for s in CHANNEL_SYNTAXES),
            key=section.key("syntax"),
        )
    partner = section.get("partner", str, "")
    if partner not in partners:
        known = ", ".join(partners) or "none"
        raise ConfigError(f"names no declared partner (declared: {known})", key=section.key("partner"))
    settle = section.get("settle_seconds", (int, float), 2.0)
    if settle < 0:
        raise ConfigError("must be 0 or more", key=section.key("settle_seconds"))
    completion = section.get("completion", str, "settle")
    if completion not in COMPLETION_STRATEGIES:
        raise ConfigError('must be "settle" (unchanged for settle_seconds, no writer), "rename" (the ERP writes '
                          'x.csv.tmp, then renames it) or "done-file" (x.csv is taken once x.csv.done or x.done '
                          'appears); see docs/inputs.md', key=section.key("completion"))
    watch = section.get("watch", str, "events")
    if watch not in WATCH_MODES:
        raise ConfigError('must be "events" (file events, on a local disk) or "poll" (every poll_seconds, for a '
                          'network share: NFS, SMB)', key=section.key("watch"))
    profile = section.get("validation_profile", str, DEFAULT_PROFILE)
    if profile not in PROFILES:
        raise ConfigError(f"must be one of {', '.join(PROFILES)}", key=section.key("validation_profile"))
    vat_rounding = section.get("vat_rounding", str, "erp")
    if vat_rounding not in VAT_ROUNDING_POLICIES:
        raise ConfigError(
            'must be "erp" (send the ERP\'s VAT when rounding line by line explains its difference, EN 16931 '
            'BR-CO-17) or "recompute" (recompute the VAT per rate; hold back an invoice whose stated VAT differs)',
            key=section.key("vat_rounding"),
        )
    max_lines = _positive(section, "max_lines_per_invoice", DEFAULT_MAX_LINES_PER_INVOICE)
    max_bytes = _positive(section, "max_invoice_bytes", DEFAULT_MAX_INVOICE_BYTES)
    csv = _csv(section.table("csv"))
    section.done()
    return Channel(
        name=name,
        watch_dir=data / watch_dir,
        partner=partner,
        input_format=input_format,
        syntax=syntax,
        csv=csv,
        input_stylesheet=stylesheet,
        settle_seconds=float(settle),
        completion=completion,
        watch=watch,
        validation_profile=profile,
        vat_rounding=vat_rounding,
        max_lines_per_invoice=max_lines,
        max_invoice_bytes=max_bytes,
    )


def _input_format(section: _Section, base: Path) -> tuple[str, Path | None]:
    """``input_format`` and, for ``xslt``, the stylesheet (relative to the config file),
    which must exist and compile."""
    text = section.get("input_format", str, "csv")
    given = section.get("input_stylesheet", str, None)
    try:
        input_format, stylesheet = resolve_input_format(text)
    except ValueError:
        if text != "xslt":
            raise ConfigError(
                f"must be one of {', '.join(INPUT_FORMATS)}, or the path of an .xsl stylesheet",
                key=section.key("input_format"),
            ) from None
        input_format, stylesheet = "xslt", None
    key = section.key("input_format" if stylesheet is not None else "input_stylesheet")
    if stylesheet is not None and given is not None:
        raise ConfigError("names a stylesheet, so input_stylesheet must be left out", key=key)
    if input_format != "xslt":
        if given is not None:
            raise ConfigError('applies only with input_format = "xslt"', key=key)
        return input_format, None
    if stylesheet is None and given is None:
        raise ConfigError('is required with input_format = "xslt": the path of your .xsl', key=key)
    path = (base / (stylesheet or Path(given or ""))).resolve()
    if not path.is_file():
        raise ConfigError(f"the stylesheet {path} does not exist", key=key)
    try:
        check_stylesheet(path)
    except MappingError as exc:
        raise ConfigError(" ".join(exc.message.split()), key=key) from None
    return "xslt", path


def _csv(section: _Section) -> CsvSettings:
    defaults = CsvSettings()
    delimiter = section.get("delimiter", str, defaults.delimiter)
    if len(delimiter) != 1:
        raise ConfigError("must be one character", key=section.key("delimiter"))
    encoding = section.get("encoding", str, defaults.encoding)
    problem = encoding_problem(encoding)
    if problem:
        raise ConfigError(problem, key=section.key("encoding"))
    decimal = section.get("decimal", str, defaults.decimal)
    if decimal not in (".", ","):
        raise ConfigError("must be '.' or ','", key=section.key("decimal"))
    date_format = section.get("date_format", str, defaults.date_format)
    section.done()
    return CsvSettings(delimiter=delimiter, encoding=encoding, decimal=decimal, date_format=date_format)


def availability_problems(config: Config) -> list[ConfigError]:
    """What a valid file asks for that this version cannot do (reported by ``config check``)."""
    problems = []
    for partner in config.partners.values():
        if partner.transport not in AVAILABLE_TRANSPORTS:
            problems.append(
                ConfigError(
                    f"the {partner.transport} transport is not available in this version "
                    f"(available: {', '.join(AVAILABLE_TRANSPORTS)})",
                    key=f"partners.{partner.name}.transport",
                )
            )
    return problems




def write_starter(directory: Path) -> Path:
    """Write ``gateway.toml`` and the directory layout it names into ``directory``."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the directory {directory}: "
                          f"{'a file is in the way' if isinstance(exc, FileExistsError) else exc.strerror} "
                          f"({exc.filename or directory})") from None
    target = directory / "gateway.toml"
    if target.exists():
        raise ConfigError(f"{target} already exists; not overwriting it")
    target.write_text(STARTER_CONFIG, encoding="utf-8")
    config = load_config(target, env={})
    ensure_layout(config)
    return target


def ensure_layout(config: Config) -> None:
    """Create the working directories the configuration names."""
    dirs = [config.data_dir, config.quarantine_dir, config.archive_dir, config.flows_dir]
    dirs += [channel.watch_dir for channel in config.channels]
    for partner in config.partners.values():
        dirs += [d for d in (partner.outbound_dir, partner.inbound_dir) if d is not None]
    if config.sandbox.enabled:
        dirs.append(config.sandbox.root)
    for directory in dirs:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            # `config check` names the key; here the path is enough to act on.
            kind = "a file is in the way" if isinstance(exc, FileExistsError | NotADirectoryError) else exc.strerror
            raise ConfigError(f"cannot create the directory {directory}: {kind} "
                              f"({exc.filename or directory}); see `gateway config check`") from None
