"""Configuration: embedded defaults, the starter file, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import STARTER_CONFIG, availability_problems, load_config, write_starter
from gateway.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_embedded_defaults_put_everything_under_the_data_dir(tmp_path: Path) -> None:
    config = load_config(None, data_dir=tmp_path / "data", env={})
    assert config.database_url == f"sqlite:///{tmp_path / 'data' / 'gateway.db'}"
    assert [c.watch_dir for c in config.channels] == [tmp_path / "data" / "inbox" / "erp"]
    sandbox = config.partners["sandbox"]
    assert sandbox.transport == "local"
    assert sandbox.outbound_dir == config.sandbox.root / "inbox"
    assert sandbox.max_invoices_per_flow == 500


def test_environment_chooses_file_and_database(tmp_path: Path) -> None:
    path = _write(tmp_path, STARTER_CONFIG)
    config = load_config(None, env={"GATEWAY_CONFIG": str(path), "GATEWAY_DATABASE_URL": "sqlite:///x.db"})
    assert config.source == path
    assert config.database_url == "sqlite:///x.db"


def test_init_writes_a_starter_that_loads_and_its_directories(tmp_path: Path) -> None:
    target = write_starter(tmp_path / "site")
    config = load_config(target, env={})
    assert config.channels[0].watch_dir.is_dir()
    assert config.partners["sandbox"].inbound_dir.is_dir()
    assert availability_problems(config) == []
    with pytest.raises(ConfigError, match="already exists"):
        write_starter(tmp_path / "site")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError, match="a file is in the way"):
        write_starter(tmp_path / "a-file")


@pytest.mark.parametrize(
    ("edit", "key", "reason"),
    [
        (
            ("max_invoices_per_flow = 500", "max_invoices_per_flow = 0"),
            "partners.sandbox.max_invoices_per_flow",
            "greater than 0",
        ),
        (('partner = "sandbox"', 'partner = "chorus"'), "channels.erp.partner", "no declared partner"),
        (('transport = "local"', 'transport = "ftp"'), "partners.sandbox.transport", "one of local, sftp, as2"),
        (("{flow_id}.tar.gz", "batch.tar.gz"), "partners.sandbox.file_name_template", "{flow_id}"),
        (('encoding = "utf-8"', 'encoding = "utf-42"'), "channels.erp.csv.encoding", "unknown encoding"),
        (('syntax = "ubl"', 'syntx = "ubl"'), "channels.erp.syntx", "unknown key"),
        (
            ('partner_code = "AAA123"        #', 'partner_code = "aa"  #'),
            "partners.sandbox.partner_code",
            "partner code",
        ),
    ],
)
def test_a_wrong_value_is_reported_with_its_key(tmp_path: Path, edit, key, reason) -> None:  # noqa: ANN001
    old, new = edit
    assert old in STARTER_CONFIG
    path = _write(tmp_path, STARTER_CONFIG.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.key == key
    assert reason in caught.value.message


def test_an_sftp_partner_needs_a_user_a_host_and_a_pinned_host_key(tmp_path: Path) -> None:
    sftp = STARTER_CONFIG.replace('transport = "local"', 'transport = "sftp"\nendpoint = "sftp.example:22"')
    with pytest.raises(ConfigError) as bad_endpoint:
        load_config(_write(tmp_path, sftp), env={})
    assert bad_endpoint.value.key == "partners.sandbox.endpoint" and "sftp://user@host" in bad_endpoint.value.message
    sftp = sftp.replace('"sftp.example:22"', '"sftp://aife@sftp.example:2222"')
    with pytest.raises(ConfigError) as no_known_hosts:
        load_config(_write(tmp_path, sftp), env={})
    assert no_known_hosts.value.key == "partners.sandbox.credentials.known_hosts"
    pinned = sftp.replace("[channels.erp]", '[partners.sandbox.credentials]\nknown_hosts = "keys/known_hosts"\n\n'
                          "[channels.erp]")
    with pytest.raises(ConfigError) as no_login:
        load_config(_write(tmp_path, pinned), env={})
    assert no_login.value.key == "partners.sandbox.credentials"
    assert "private_key or password_file" in no_login.value.message
    with_password = pinned.replace('known_hosts = "keys/known_hosts"\n',
                                   'known_hosts = "keys/known_hosts"\npassword_file = "keys/password"\n')
    config = load_config(_write(tmp_path, with_password), env={})
    assert config.partners["sandbox"].credential("known_hosts") == tmp_path / "keys" / "known_hosts"
    assert availability_problems(config) == []


_AS2 = """
transport = "as2"
endpoint = "{endpoint}"
as2_from = "US"
as2_to = "THEM"
mdn = "async"
mdn_url = "{mdn_url}"
[partners.sandbox.credentials]
own_key = "k.pem"
own_cert = "c.pem"
partner_cert = "p.pem"
"""


@pytest.mark.parametrize(
    ("endpoint", "mdn_url", "key", "port"),
    [
        ("sftp://aife@sftp.example:99999", None, "endpoint", "99999"),
        ("sftp://aife@sftp.example:0", None, "endpoint", "0"),
        ("sftp://aife@sftp.example:ssh", None, "endpoint", "ssh"),
        ("https://as2.example:70000/as2", "https://gw.example/as2", "endpoint", "70000"),
        ("https://as2.example/as2", "https://gw.example:65536/as2", "mdn_url", "65536"),
    ],
)
def test_a_port_out_of_range_is_refused_when_the_file_is_read(tmp_path: Path, endpoint, mdn_url, key, port) -> None:  # noqa: ANN001
    """urlsplit accepts any digits and raises only when the port is read: in `run`, not here (issue 13)."""
    if endpoint.startswith("sftp"):
        partner = (f'transport = "sftp"\nendpoint = "{endpoint}"\n[partners.sandbox.credentials]\n'
                   'known_hosts = "kh"\nprivate_key = "id"\n')
    else:
        partner = _AS2.format(endpoint=endpoint, mdn_url=mdn_url)
    text = STARTER_CONFIG.replace('transport = "local"', "", 1).replace("[channels.erp]", partner + "\n[channels.erp]")
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text), env={})
    assert caught.value.key == f"partners.sandbox.{key}"
    assert caught.value.message.endswith(f"port {port} is not a port number (1 to 65535)")
