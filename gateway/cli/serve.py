"""``gateway serve``: the AS2 endpoint partners POST to, asynchronous MDNs and reports alike.

The options, the endpoint and the signals; what a request leads to is ``pipeline/inbound.py``'s.
"""

from __future__ import annotations

import signal
import threading

import click
import structlog

from gateway.cli.state import State, pass_state
from gateway.clock import SystemClock
from gateway.errors import GatewayError
from gateway.pipeline.inbound import Receiver, endpoint_limits
from gateway.transport.as2.http import AS2Endpoint

log = structlog.get_logger("gateway.serve")

@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=4080, show_default=True, type=click.IntRange(0, 65535), help="0: any free port.")
@click.option("--mdn-grace", default=10.0, show_default=True, type=click.FloatRange(0, 300),
              help="Seconds an asynchronous MDN waits for `gateway run` to record the message it answers.")
@pass_state
def serve_command(state: State, host: str, port: int, mdn_grace: float) -> None:
    """Receive AS2 POSTs from partners (asynchronous MDNs, reports) until SIGTERM or SIGINT."""
    config = state.config()
    if not any(p.transport == "as2" for p in config.partners.values()):
        raise GatewayError("no partner uses the as2 transport: there is nothing to serve")
    store = state.store()
    spool = config.data_dir / "spool"
    try:
        spool.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        store.close()
        raise GatewayError(f"cannot create {spool}, where request bodies are written while they arrive: "
                           f"{exc.strerror or exc}") from None
    stop = threading.Event()
    receiver = Receiver(config, store, SystemClock(), mdn_grace=mdn_grace, stopping=stop)
    endpoint = AS2Endpoint(host, port, receiver, limits=endpoint_limits(config.serve), spool_dir=spool)

    signals: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        signals.append(signal.Signals(signum).name)  # logged by the main loop: no logging inside a handler
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    try:
        endpoint.start()
    except OSError as exc:
        store.close()
        raise GatewayError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    log.info("serve.started", url=endpoint.url, partners=[p.name for p in config.partners.values()
                                                           if p.transport == "as2"])
    click.echo(f"serving AS2 on {endpoint.url}")
    try:
        while not stop.wait(0.5):
            pass
        log.info("serve.stopping", signal=signals[0] if signals else None,
                 grace_seconds=config.serve.shutdown_grace_seconds)
    finally:
        # Connections still sending are closed at once; requests already read finish within the grace, so
        # none is cut between its two transactions unless it overruns it (its row then stays "received").
        endpoint.stop()
        store.close()
        log.info("serve.stopped")
