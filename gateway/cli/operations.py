"""Commands that change what the gateway will do: the operator's hand on the outbox."""

from __future__ import annotations

import json

import click
import structlog

from gateway.cli.queries import flows_group
from gateway.cli.state import State, pass_state
from gateway.clock import SystemClock
from gateway.domain import FlowStatus
from gateway.pipeline import attempts

log = structlog.get_logger(__name__)


@flows_group.command("retry")
@click.argument("flow_ids", metavar="FLOW_ID...", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True)
@pass_state
def flows_retry(state: State, flow_ids: tuple[str, ...], as_json: bool) -> None:
    """Send failed flows again at the next pass (same bytes, same name), with a fresh
    count of attempts: once the cause (host key, credentials, partner down) is fixed."""
    now = SystemClock().now()
    with state.store().transaction() as tx:
        for flow_id in flow_ids:
            attempts.retry(tx, flow_id, now=now)
            log.info("flow.retry_requested", flow=flow_id)
    # Printed once committed: a refused id above leaves every flow as it was.
    if as_json:
        click.echo(json.dumps([{"flow_id": flow_id, "status": FlowStatus.PACKED.value} for flow_id in flow_ids]))
        return
    for flow_id in flow_ids:
        click.echo(f"{flow_id}: packed again; it is sent at the next pass")
