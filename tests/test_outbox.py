"""The outbox through the real CLI: flows over SFTP to a real OpenSSH sshd, reports
picked up from it, retries with backoff, failure, the operator's retry; XML packaging."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cli_runner import gateway
from gateway.intake.sample import write_sample_export
from gateway.sandbox.simulator import SandboxSettings, process_flow
from sshd import SshdServer, generate_key, public_line


@dataclass
class Site:
    config: Path
    env: dict[str, str]
    inbox: Path
    remote_out: Path
    remote_in: Path
    flows: Path


def _site(tmp_path: Path, server: SshdServer, *, max_attempts: int = 5) -> Site:
    key = generate_key(tmp_path / "id_ed25519")
    server.authorize(public_line(key))
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("\n".join(server.known_hosts_lines()) + "\n")
    remote_out, remote_in = tmp_path / "remote" / "out", tmp_path / "remote" / "in"
    remote_out.mkdir(parents=True)
    remote_in.mkdir(parents=True)
    config = tmp_path / "gateway.toml"
    config.write_text(f"""
[gateway]
data_dir = "data"
[sandbox]
enabled = false
[partners.chorus]
transport = "sftp"
partner_code = "AAA123"
endpoint = "sftp://{server.user}@{server.host}:{server.port}"
remote_outbound_dir = "{remote_out}"
remote_inbound_dir = "{remote_in}"
remote_done_dir = "{remote_in / 'done'}"
timeout_seconds = 5
max_attempts = {max_attempts}
retry_initial_seconds = 0.2
retry_max_seconds = 1
[partners.chorus.credentials]
known_hosts = "{known_hosts}"
private_key = "{key}"
[channels.erp]
partner = "chorus"
settle_seconds = 0
""")
    env = {"GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'g.db'}"}
    inbox = tmp_path / "data" / "inbox" / "erp"
    inbox.mkdir(parents=True)
    return Site(config, env, inbox, remote_out, remote_in, tmp_path / "data" / "flows")


def _run(site: Site, code: int = 0) -> tuple[dict, list[dict]]:
    """One pass; ``code``: the exit code it must give (README, "Exit codes")."""
    result = gateway("--config", str(site.config), "--log-format", "json", "run", "--once", env=site.env, check=False)
    assert result.returncode == code, result.stderr
    return json.loads(result.stdout), [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]


def _flows(site: Site) -> list[dict]:
    return json.loads(gateway("--config", str(site.config), "flows", "list", "--json", env=site.env).stdout)


def test_a_flow_goes_over_sftp_and_its_report_comes_back(tmp_path: Path, sshd: SshdServer) -> None:
    site = _site(tmp_path, sshd)
    write_sample_export(site.inbox / "export.csv", 3, with_errors=False)

    summary, _ = _run(site)
    [flow] = _flows(site)
    assert summary["flows_sent"] == [flow["flow_id"]] and flow["status"] == "sent"
    delivered = site.remote_out / flow["file_name"]
    assert delivered.read_bytes() == (site.flows / flow["file_name"]).read_bytes()
    assert hashlib.sha256(delivered.read_bytes()).hexdigest() == flow["sha256"]
    assert [p.name for p in site.remote_out.iterdir()] == [flow["file_name"]]  # no temporary left

    # "Chorus Pro" answers on the partner's side; the next pass picks the report up,
    # keeps it, moves it to done/ remotely, and reconciles the flow.
    outcome = process_flow(flow["file_name"], delivered.read_bytes(), settings=SandboxSettings(),
                           now=datetime.now(UTC))
    for name, data in outcome.files:
        (site.remote_in / name).write_bytes(data)
    _run(site)
    [flow] = _flows(site)
    assert flow["status"] == "integrated" and flow["integrated"] == 3
    assert sorted(p.name for p in (site.remote_in / "done").iterdir()) == sorted(n for n, _ in outcome.files)
    assert not [p for p in site.remote_in.iterdir() if p.is_file()]


def test_a_stopped_server_means_retries_then_failed_then_the_operators_retry(tmp_path: Path,
                                                                              sshd: SshdServer) -> None:
    site = _site(tmp_path, sshd, max_attempts=2)
    write_sample_export(site.inbox / "export.csv", 2, with_errors=False)
    sshd.stop()

    summary, events = _run(site, code=5)  # the flow waits for its next attempt; the pickup failed
    assert summary["flows_sent"] == [] and summary["flows_failed"] == []
    assert "cannot reach" in summary["reports_pickup_failed"]["chorus"]
    [retry] = [e for e in events if e["event"] == "flow.attempt_failed"]
    assert 0.16 <= retry["next_attempt_in_seconds"] <= 0.24  # 0.2 s ± 20 % jitter
    time.sleep(0.3)
    summary, events = _run(site, code=3)  # failed: the most urgent
    [flow] = _flows(site)
    assert summary["flows_failed"] == [flow["flow_id"]] and flow["status"] == "failed"
    [alert] = [e for e in events if e["event"] == "alert.flow_failed"]
    assert alert["attempts"] == 2 and f"gateway flows retry {flow['flow_id']}" in alert["action"]
    assert not list(site.remote_out.iterdir())

    sshd.start()
    retried = gateway("--config", str(site.config), "flows", "retry", flow["flow_id"], env=site.env)
    assert "packed again" in retried.stdout
    summary, _ = _run(site)
    [flow] = _flows(site)
    assert summary["flows_sent"] == [flow["flow_id"]] and flow["status"] == "sent" and flow["attempts"] == 1
    assert hashlib.sha256((site.remote_out / flow["file_name"]).read_bytes()).hexdigest() == flow["sha256"]


def test_an_unknown_host_key_fails_the_flow_at_once_with_a_clear_reason(tmp_path: Path, sshd: SshdServer) -> None:
    site = _site(tmp_path, sshd)
    (tmp_path / "known_hosts").write_text("")  # nothing pinned: never learnt on the fly
    write_sample_export(site.inbox / "export.csv", 1, with_errors=False)
    summary, events = _run(site, code=3)
    [flow] = _flows(site)
    assert flow["status"] == "failed" and flow["attempts"] == 1  # not retryable: no point hammering
    assert "UNKNOWN" in flow["reason"] and "SHA256:" in flow["reason"]
    assert not list(site.remote_out.iterdir())


def test_xml_packaging_sends_each_invoice_as_its_own_flow(tmp_path: Path) -> None:
    env = {"GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'g.db'}"}
    gateway("init", str(tmp_path / "site"), env=env)
    config = tmp_path / "site" / "gateway.toml"
    text = config.read_text().replace("settle_seconds = 2", "settle_seconds = 0")
    text = text.replace('file_name_template = "{interface}_{partner_code}_{flow_id}.tar.gz"', 'packaging = "xml"')
    config.write_text(text)
    write_sample_export(tmp_path / "site" / "inbox" / "erp" / "export.csv", 3, with_errors=False)

    summary = json.loads(gateway("--config", str(config), "run", "--once", env=env).stdout)
    flows = json.loads(gateway("--config", str(config), "flows", "list", "--json", env=env).stdout)
    assert len(summary["flows_sent"]) == 3 and {f["status"] for f in flows} == {"integrated"}
    for flow in flows:
        assert flow["file_name"].endswith(".xml") and flow["invoices"] == 1
        sent = tmp_path / "site" / "flows" / flow["file_name"]
        assert sent.read_bytes().lstrip().startswith(b"<?xml")
        assert hashlib.sha256(sent.read_bytes()).hexdigest() == flow["sha256"]


def test_two_partners_with_one_partner_code_get_distinct_flow_ids(tmp_path: Path) -> None:
    """Issue 12 item 3: flow ids are unique per Chorus Pro partner code, whichever partner sends."""
    config = tmp_path / "gateway.toml"
    partners = "".join(f"""
[partners.{name}]
transport = "local"
partner_code = "AAA123"
outbound_dir = "{name}/out"
inbound_dir = "{name}/in"
[channels.{name}]
partner = "{name}"
settle_seconds = 0
""" for name in ("primary", "backup"))
    config.write_text(f'[gateway]\ndata_dir = "data"\n[sandbox]\nenabled = false\n{partners}')
    env = {"GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'g.db'}"}
    for name in ("primary", "backup"):
        (tmp_path / "data" / "inbox" / name).mkdir(parents=True)
        write_sample_export(tmp_path / "data" / "inbox" / name / "export.csv", 2, with_errors=False,
                            number_prefix=name[0].upper())
    gateway("--config", str(config), "run", "--once", env=env)
    flows = json.loads(gateway("--config", str(config), "flows", "list", "--json", env=env).stdout)
    assert sorted((flow["partner"], flow["status"]) for flow in flows) == [("backup", "sent"), ("primary", "sent")]
    assert sorted(flow["flow_id"][-3:] for flow in flows) == ["001", "002"]
    for name in ("primary", "backup"):
        deposited = [path.name for path in (tmp_path / "data" / name / "out").iterdir()]
        assert deposited == [next(f["file_name"] for f in flows if f["partner"] == name)]
